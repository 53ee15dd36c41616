"""The hub: registry, ingest, storage, query API, web UI."""

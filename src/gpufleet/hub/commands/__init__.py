"""Remote commands: signed by the hub, fetched by agents over their own connection, audited.

The parts: extension.py (what hub/extensions.py loads), signing.py (the hub's Ed25519 key),
runs.py (runs and the per-node mailboxes agents long-poll), audit.py (the append-only log in
hub.db), api.py (the routes), cli.py and client.py (`gpufleet run`, `gpufleet audit`). The agent's
side is agent/commands.py. docs/commands.md describes it all. Nothing is imported here, so the
command-line tools load none of the hub.
"""

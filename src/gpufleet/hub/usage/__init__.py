"""Accounting: who used which GPU, for how long, how well, and at what cost.

Parts: holders.py (a snapshot's per-GPU holders), record.py (the occupancy record, the hub's
ingest hook: writes only on change), settle.py (background: per-hold figures from the store's
samples), report.py (any period, by user, group, job or node), jobs.py, api.py
(/api/v1/usage, /api/v1/jobs), extension.py (what hub/extensions.py loads), cli.py
(`gpufleet report`, `gpufleet jobs`). docs/accounting.md describes them for users. Nothing is
imported here, so the command-line tools (plain HTTP clients) run on an agent-only install.
"""

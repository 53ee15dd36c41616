"""Pull one target and turn what it says into a NodeSnapshot.

Four kinds of exporter are understood, one module each; names nobody maps are counted and
ignored:

- gpufleet agent (gpufleet_text.py): its JSON snapshot (/api/v1/snapshot) is fetched when the
  agent offers it, which is lossless; otherwise its gpufleet_* text is read back through the
  catalogue.
- dcgm-exporter (dcgm.py), all-smi (allsmi.py): through the catalogue's Compat entries.
- node_exporter (node_exporter.py): its common host series.

transport.py fetches (time and size limits), mapping.py detects the kind and runs its mapper
on a builder.py Builder, and state.py holds what a target's scrapes remember and export.
"""

from __future__ import annotations

from ...vendors import guess_vendor
from .mapping import detect_kind, from_agent_json, to_snapshot
from .state import ScrapeError, ScrapeState
from .transport import scrape_async

__all__ = ["ScrapeError", "ScrapeState", "detect_kind", "from_agent_json", "guess_vendor", "scrape_async",
           "to_snapshot"]

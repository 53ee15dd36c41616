"""One collection, rendered once into every form a client may ask for.

Requests only pick ready bytes; gzip copies are made on first demand and kept, so a
scrape never renders or compresses twice for the same collection.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence

from ..exposition import render
from ..snapshot import NodeSnapshot, to_json


class Rendered:
    __slots__ = ("snapshot", "timestamp", "_forms", "_compat")

    def __init__(self, snapshot: NodeSnapshot, compat: Sequence[str] = ()) -> None:
        self.snapshot = snapshot
        self.timestamp = snapshot.timestamp
        self._compat = tuple(compat)
        # Text is what nearly every scraper asks for: render it now, the rest on demand.
        self._forms: dict[tuple[str, bool], bytes] = {
            ("text", False): render(snapshot, compat=self._compat)
        }

    def body(self, form: str, gzipped: bool) -> bytes:
        key = (form, gzipped)
        data = self._forms.get(key)
        if data is None:
            plain = self._forms.get((form, False))
            if plain is None:
                plain = self._render(form)
                self._forms[(form, False)] = plain
            data = gzip.compress(plain, compresslevel=1, mtime=0) if gzipped else plain
            self._forms[key] = data  # a racing duplicate computes the same bytes
        return data

    def _render(self, form: str) -> bytes:
        if form == "openmetrics":
            return render(self.snapshot, openmetrics=True, compat=self._compat)
        if form == "json":
            return to_json(self.snapshot)
        return render(self.snapshot, compat=self._compat)

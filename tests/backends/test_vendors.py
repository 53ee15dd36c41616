"""One table of vendors: --backend choices, auto order, log titles and model-name guesses all come from it."""

from __future__ import annotations

import pytest

import gpufleet.vendors as vendors
from gpufleet.backends import AUTO_ORDER, BACKENDS, CHOICES
from gpufleet.vendors import VENDORS, guess_vendor


@pytest.mark.parametrize("model,vendor", [
    ("NVIDIA H100 80GB HBM3", "nvidia"), ("Tesla V100", "nvidia"), ("AMD Instinct MI300X", "amd"),
    ("Apple M2 Max", "apple"), ("Intel Gaudi 3", "intel"), ("RNGD", "furiosa"), ("Mystery 9000", "unknown"),
    ("Google TPU v5e", "google"), ("Tenstorrent Wormhole n300", "tenstorrent"), ("NVIDIA Jetson AGX Orin", "nvidia"),
])
def test_model_names_give_away_the_vendor(model: str, vendor: str) -> None:
    assert guess_vendor(model) == vendor


def test_backends_are_derived_from_the_table() -> None:
    assert CHOICES == ("auto", "nvml", "amdsmi", "all-smi", "sim", "none") and AUTO_ORDER == ("nvml", "amdsmi")
    assert set(BACKENDS) == {"nvml", "amdsmi", "all-smi", "sim"}  # all-smi: any vendor, through all-smi


def test_every_backend_entry_names_a_class_that_exists() -> None:
    import ast
    import importlib.util
    from pathlib import Path

    for v in VENDORS:
        if not v.backend:
            continue
        module, _, cls = v.factory.partition(":")
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin, v
        tree = ast.parse(Path(spec.origin).read_text())  # read, not imported: vendor libraries may be absent
        assert cls in {n.name for n in tree.body if isinstance(n, ast.ClassDef)}, v
    assert vendors.BY_BACKEND["nvml"].title == "NVIDIA (NVML)"

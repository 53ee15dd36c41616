from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

ARTIFACTS = Path(os.environ.get("GPUFLEET_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS



def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", default=False,
                     help="long runs of the property and reliability tests (minutes, not seconds)")


def pytest_configure(config: pytest.Config) -> None:
    # Read by test modules at import time (hypothesis settings are fixed when a class is built).
    if config.getoption("--slow"):
        os.environ["GPUFLEET_TEST_SLOW"] = "1"

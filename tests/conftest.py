"""What every test may use: the fixtures path, one way to wait for a condition, one fake clock.

Import them as `from conftest import FIXTURES, FakeClock, eventually` (tests/ is on sys.path;
test directories keep no conftest.py of their own, so the name stays unambiguous).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

ARTIFACTS = Path(os.environ.get("GPUFLEET_TEST_ARTIFACTS", TESTS.parent / "test-artifacts"))
FIXTURES = TESTS / "fixtures"  # proc/ (a fake /proc), exporters/ (scraped texts), store/ (old formats)

T = TypeVar("T")


def eventually(cond: Callable[[], T], timeout: float = 10.0, what: str = "the condition",
               interval: float = 0.05) -> T:
    """Wait until `cond()` returns something truthy and return it; fail naming `what` if it never
    does within `timeout` seconds. Tests wait on conditions, never on fixed sleeps."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class FakeClock:
    """A clock a test moves by hand: pass it where code takes `clock=time.time` (or monotonic)."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", default=False,
                     help="long runs of the property and reliability tests (minutes, not seconds)")
    parser.addoption("--nightly", action="store_true", default=False,
                     help="the hub load test for an hour instead of a minute (tests/hub/test_load.py)")


def pytest_configure(config: pytest.Config) -> None:
    # Read by test modules at import time (hypothesis settings are fixed when a class is built).
    if config.getoption("--slow"):
        os.environ["GPUFLEET_TEST_SLOW"] = "1"


@pytest.fixture
def hub_key():  # type: ignore[no-untyped-def]
    """make_api_key(data_dir, role="admin") -> a hub API key (tests/access.py)."""
    from access import make_api_key

    return make_api_key


async def pilot_until(pilot: Any, cond: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    """`eventually` for a Textual pilot: lets the app run between checks."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)

"""`--backend auto|nvml|amdsmi|sim|none` and `--simulate PROFILE`: backends.select/resolve."""

from __future__ import annotations

import importlib.util

import pytest

from gpufleet.backends import (
    BACKENDS, CHOICES, DEFAULT_PROFILE, Options, resolve, select,
)
from gpufleet.backends.base import BackendUnavailable
from gpufleet.backends.sim import SimBackend
from gpufleet.backends.sim_profiles import profile_names
from gpufleet.snapshot import Gpu


class FakeBackend:
    def __init__(self, name: str, error: Exception | None = None) -> None:
        self.name = name
        self.error = error
        self.opened = False

    def open(self) -> None:
        if self.error is not None:
            raise self.error
        self.opened = True

    def sample(self) -> list[Gpu]:
        return []

    def close(self) -> None:
        pass


def table(nvml: Exception | None = None, amdsmi: Exception | None = None) -> dict[str, object]:
    return {
        "nvml": lambda o: FakeBackend("nvml", nvml),
        "amdsmi": lambda o: FakeBackend("amdsmi", amdsmi),
        "sim": BACKENDS["sim"],
    }


NO_NVIDIA = BackendUnavailable("NVIDIA driver library (libnvidia-ml) not found")
NO_AMD = BackendUnavailable("AMD ROCm library (libamd_smi) not found")


def test_choices() -> None:
    assert CHOICES == ("auto", "nvml", "amdsmi", "all-smi", "sim", "none")


def test_auto_prefers_nvml() -> None:
    sel = resolve("auto", table=table())
    assert sel.backend is not None and sel.backend.name == "nvml" and sel.backend.opened
    assert sel.reason.startswith("auto: using nvml")


def test_auto_falls_back_to_amdsmi_and_says_why() -> None:
    sel = resolve("auto", table=table(nvml=NO_NVIDIA))
    assert sel.backend is not None and sel.backend.name == "amdsmi" and sel.backend.opened
    assert "amdsmi" in sel.reason and "libnvidia-ml" in sel.reason


def test_auto_with_nothing_serves_host_metrics_only() -> None:
    sel = resolve("auto", table=table(nvml=NO_NVIDIA, amdsmi=NO_AMD))
    assert sel.backend is None
    assert sel.reason.startswith("auto: no NVIDIA or AMD library found; serving host metrics only")
    assert "libnvidia-ml" in sel.reason and "libamd_smi" in sel.reason


def test_auto_survives_a_vendor_module_that_breaks_oddly() -> None:
    broken = table(amdsmi=NO_AMD)
    broken["nvml"] = lambda o: (_ for _ in ()).throw(ImportError("pynvml is broken"))
    sel = resolve("auto", table=broken)
    assert sel.backend is None and "pynvml is broken" in sel.reason


@pytest.mark.parametrize("name", ["nvml", "amdsmi"])
def test_explicit_vendor_opens_it(name: str) -> None:
    sel = resolve(name, table=table())
    assert sel.backend is not None and sel.backend.name == name and sel.backend.opened
    assert sel.reason.startswith(f"{name}: ")


@pytest.mark.parametrize("name", ["nvml", "amdsmi"])
def test_explicit_vendor_that_cannot_open_raises(name: str) -> None:
    with pytest.raises(BackendUnavailable, match="not found"):
        resolve(name, table=table(nvml=NO_NVIDIA, amdsmi=NO_AMD))


def test_none_turns_accelerators_off() -> None:
    sel = resolve("none", table=table())
    assert sel.backend is None and "host metrics only" in sel.reason


@pytest.mark.parametrize("profile", profile_names())
@pytest.mark.parametrize("name", ["auto", "sim"])
def test_simulate_every_profile(name: str, profile: str) -> None:
    sel = resolve(name, simulate=profile, seed=3, node="n7", table=table(nvml=NO_NVIDIA))
    b = sel.backend
    assert isinstance(b, SimBackend)
    assert (b.profile.name, b.seed, b.node) == (profile, 3, "n7")
    assert profile in sel.reason and "seed 3" in sel.reason
    assert len(b.sample()) == b.profile.gpus


def test_sim_without_profile_uses_the_default() -> None:
    sel = resolve("sim", seed=1)
    assert isinstance(sel.backend, SimBackend) and sel.backend.profile.name == DEFAULT_PROFILE
    assert DEFAULT_PROFILE in sel.reason


def test_sim_gets_the_clock() -> None:
    b = resolve("sim", simulate="8xH100", clock=lambda: 1_700_000_000.0).backend
    assert isinstance(b, SimBackend)
    assert b.sample() == b.sample()  # frozen clock: nothing moves


def test_unknown_backend_is_named_with_the_choices() -> None:
    with pytest.raises(ValueError) as e:
        resolve("cuda")
    msg = str(e.value)
    assert "'cuda'" in msg and all(c in msg for c in CHOICES)


def test_unknown_profile_is_named_with_the_profiles() -> None:
    with pytest.raises(ValueError) as e:
        resolve("auto", simulate="64xB200")
    msg = str(e.value)
    assert "64xB200" in msg and all(p in msg for p in profile_names())


@pytest.mark.parametrize("name", ["nvml", "amdsmi", "none"])
def test_simulate_with_a_real_backend_is_a_contradiction(name: str) -> None:
    with pytest.raises(ValueError, match="--backend sim"):
        resolve(name, simulate="8xH100", table=table())


def test_select_returns_the_backend_and_logs_the_reason() -> None:
    said: list[str] = []
    b = select("auto", simulate=None, seed=0, log=said.append, table=table(nvml=NO_NVIDIA))
    assert b is not None and b.name == "amdsmi"
    assert len(said) == 1 and said[0].startswith("auto: using amdsmi")
    assert select("none", simulate=None, seed=0) is None


def test_options_defaults() -> None:
    o = Options()
    assert (o.simulate, o.seed, o.node) == (None, 0, "")


def test_real_table_auto_never_raises() -> None:
    sel = resolve("auto")
    assert sel.reason.startswith("auto: ")
    if sel.backend is None:
        assert "serving host metrics only" in sel.reason
    else:
        sel.backend.close()


@pytest.mark.skipif(importlib.util.find_spec("amdsmi") is not None, reason="amdsmi is installed here")
def test_real_amdsmi_without_the_package_is_unavailable() -> None:
    with pytest.raises(BackendUnavailable, match="libamd_smi"):
        resolve("amdsmi")

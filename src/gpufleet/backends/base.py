"""The accelerator backend interface: one backend per vendor library, one file each."""

from __future__ import annotations

from typing import Protocol

from ..snapshot import Gpu


class BackendUnavailable(Exception):
    """The backend's library or devices are not present on this node (not a bug)."""


class Backend(Protocol):
    """An accelerator source.

    `open()` raises BackendUnavailable when the node lacks the library or devices.
    `sample()` returns one `Gpu` per device, filling only what the device offers; a
    device that stops answering comes back with `up=False` rather than raising.
    GpuProcess entries carry pid and memory; the agent joins them with the host's
    process table (user, command, container, pod, Slurm job) afterwards, unless the
    backend filled those itself (the simulator does).
    """

    name: str

    def open(self) -> None: ...

    def sample(self) -> list[Gpu]: ...

    def close(self) -> None: ...

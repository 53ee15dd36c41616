"""The one way gpufleet talks to NVML: a thin, forgiving wrapper over the `pynvml` module.

Every NVML call goes through `NvmlLib.call` / `NvmlLib.query`, which

- starts NVML lazily, once, under a lock (`init`), and stops it once (`shutdown`);
- turns a per-field NVMLError (not supported, no permission, not found, ...) into an
  absent value, so one unsupported reading never costs the rest of a device;
- turns "the GPU is gone" errors into `DeviceLost`, which the caller maps to `up=0`;
- probes versioned variants (`_v3`, `_v2`, plain, or `...V`) and remembers the first one
  that both this `pynvml` and this driver provide;
- logs a function this `pynvml` or driver lacks once, not once per collection;
- remembers (when asked through `sticky`) a reading a device said it does not support,
  so later collections skip that call instead of paying for it again.

The module is injected (tests hand in a fake); by default `pynvml` is imported only when
`init()` runs, so importing gpufleet never touches the NVIDIA library.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable, Sequence
from types import ModuleType
from typing import Any, NoReturn

from .base import BackendUnavailable

log = logging.getLogger("gpufleet.backends.nvml")

LIBRARY_MISSING = (
    "NVIDIA driver library (libnvidia-ml) not found: install the NVIDIA driver, or use --backend sim"
)

# NVML return codes (part of NVML's stable C ABI; the module's own constants are used where
# present, these are the fallbacks a partial or fake module may lack).
_SUCCESS = 0
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_TIMEOUT = 10
_LIBRARY_NOT_FOUND = 12
_FUNCTION_NOT_FOUND = 13
_GPU_IS_LOST = 15
_RESET_REQUIRED = 16
_UNINITIALIZED = 1
_DRIVER_NOT_LOADED = 9

# Errors after which nothing more can be read from the device this round.
_LOST = frozenset({_GPU_IS_LOST, _RESET_REQUIRED, _UNINITIALIZED, _DRIVER_NOT_LOADED})
# Answers that will not change while the process runs: worth remembering per device.
_PERMANENT = frozenset({_NOT_SUPPORTED, _FUNCTION_NOT_FOUND})

Names = str | Sequence[str]

_MEMORY_V2 = "nvmlDeviceGetMemoryInfo_v2"


class DeviceLost(Exception):
    """NVML said the GPU is lost, needs a reset, or the driver went away."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Absent(Exception):
    """The value is not available (not supported, no permission, function missing, ...)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def missing_function(self) -> bool:
        return self.code == _FUNCTION_NOT_FOUND

    @property
    def no_permission(self) -> bool:
        return self.code == _NO_PERMISSION

    @property
    def timeout(self) -> bool:
        return self.code == _TIMEOUT


class NvmlLib:
    """Lazy, lock-guarded access to one `pynvml`-shaped module."""

    def __init__(self, module: ModuleType | Any | None = None) -> None:
        self._module = module
        self._lock = threading.RLock()
        self._started = False
        # base name -> the variant that works here (or None: none does)
        self._resolved: dict[str, str | None] = {}
        # variants the driver answered FUNCTION_NOT_FOUND for
        self._driver_lacks: set[str] = set()
        self._logged_missing: set[str] = set()
        self._sticky_absent: set[Hashable] = set()

    # ---- lifecycle -----------------------------------------------------------------------
    @property
    def nvml(self) -> Any:
        """The module itself, for constants and structs (after `init`)."""
        if self._module is None:
            raise RuntimeError("NVML is not started")
        return self._module

    @property
    def started(self) -> bool:
        return self._started

    def init(self) -> None:
        """Load the module and start NVML once; BackendUnavailable says why it cannot."""
        with self._lock:
            if self._started:
                return
            if self._module is None:
                try:
                    import pynvml  # deferred: no NVIDIA code runs at gpufleet import time
                except Exception as exc:  # ImportError, or a broken install
                    raise BackendUnavailable(
                        f"nvidia-ml-py (pynvml) cannot be imported ({exc}): "
                        "pip install nvidia-ml-py, or use --backend sim"
                    ) from exc
                self._module = pynvml
            try:
                self._module.nvmlInit()
            except Exception as exc:
                raise BackendUnavailable(self._init_message(exc)) from exc
            self._started = True

    def _init_message(self, exc: Exception) -> str:
        code = self.error_code(exc)
        if code == _LIBRARY_NOT_FOUND or isinstance(exc, OSError) or code is None:
            return LIBRARY_MISSING
        if code == _DRIVER_NOT_LOADED:
            return "NVIDIA driver is installed but not loaded (nvidia kernel module): load it, or use --backend sim"
        if code == _NO_PERMISSION:
            return "NVML refused access to the GPUs (no permission on /dev/nvidia*): run with access to them"
        return f"NVML could not start: {exc}"

    def shutdown(self) -> None:
        """Stop NVML once; never raises (closing must not fail a shutting-down agent)."""
        with self._lock:
            if not self._started:
                return
            self._started = False
            try:
                self.nvml.nvmlShutdown()
            except Exception as exc:
                log.debug("nvmlShutdown failed: %s", exc)
            self._resolved.clear()
            self._driver_lacks.clear()
            self._sticky_absent.clear()

    # ---- calls ---------------------------------------------------------------------------
    def error_code(self, exc: BaseException) -> int | None:
        value = getattr(exc, "value", None)
        return value if isinstance(value, int) else None

    def has(self, name: str) -> bool:
        """Whether the module offers `name` (a function, constant or struct)."""
        return self._module is not None and hasattr(self._module, name)

    def _resolve(self, names: Names) -> str | None:
        variants = (names,) if isinstance(names, str) else tuple(names)
        key = variants[0]
        if key in self._resolved:
            return self._resolved[key]
        found = next((n for n in variants if n not in self._driver_lacks and self.has(n)), None)
        self._resolved[key] = found
        if found is None:
            self._log_missing(key)
        return found

    def _log_missing(self, name: str) -> None:
        if name not in self._logged_missing:
            self._logged_missing.add(name)
            log.info("NVML function %s is not available with this driver/nvidia-ml-py: its readings are absent", name)

    def _is_missing(self, exc: BaseException) -> bool:
        """The driver lacks this symbol (pynvml's unversioned wrappers say so differently)."""
        mismatch = getattr(self._module, "NVMLLibraryMismatchError", None)
        return self.error_code(exc) == _FUNCTION_NOT_FOUND or (
            isinstance(mismatch, type) and isinstance(exc, mismatch)
        )

    def _raise(self, name: str, exc: Exception, sticky: Hashable | None) -> NoReturn:
        code = self.error_code(exc)
        if code is None:
            raise exc  # not an NVML error: a bug, left for the device-level guard to report
        if code in _LOST:
            raise DeviceLost(code, f"{name}: {exc}") from exc
        if sticky is not None and code in _PERMANENT:
            self._sticky_absent.add(sticky)
        raise Absent(code, f"{name}: {exc}") from exc

    def call(self, names: Names, *args: Any, sticky: Hashable | None = None, **kwargs: Any) -> Any:
        """Call the first available variant; raise Absent or DeviceLost on NVML errors.

        `sticky` is a caller-chosen key (e.g. (gpu index, reading)): once NVML says that
        reading is not supported, the call is skipped from then on.
        """
        if sticky is not None and sticky in self._sticky_absent:
            raise Absent(_NOT_SUPPORTED, "not supported (remembered)")
        key = names if isinstance(names, str) else names[0]
        while True:
            name = self._resolve(names)
            if name is None:
                raise Absent(_FUNCTION_NOT_FOUND, f"{key} not available")
            try:
                return getattr(self.nvml, name)(*args, **kwargs)
            except Exception as exc:
                if not self._is_missing(exc):
                    self._raise(name, exc, sticky)
                # This driver lacks the symbol: fall through to the next variant, if any.
                self._driver_lacks.add(name)
                self._resolved.pop(key, None)

    def query(self, names: Names, *args: Any, sticky: Hashable | None = None, **kwargs: Any) -> Any:
        """Like `call`, but an absent value comes back as None."""
        try:
            return self.call(names, *args, sticky=sticky, **kwargs)
        except Absent as exc:
            log.debug("NVML value absent: %s", exc)
            return None

    def memory_info(self, handle: Any, sticky: Hashable | None = None) -> Any:
        """Memory info, v2 where this driver has it: v2's `used` leaves out the memory the
        driver reserves for itself, which v1 counts as used."""
        version = getattr(self._module, "nvmlMemory_v2", None)
        if version is not None and _MEMORY_V2 not in self._driver_lacks:
            if sticky is not None and sticky in self._sticky_absent:
                return None
            try:
                return self.nvml.nvmlDeviceGetMemoryInfo(handle, version=version)
            except Exception as exc:
                if not self._is_missing(exc):
                    try:
                        self._raise(_MEMORY_V2, exc, sticky)
                    except Absent:
                        return None
                # Same Python function, different C symbol: only v2 is missing, v1 may work.
                self._driver_lacks.add(_MEMORY_V2)
                self._log_missing(_MEMORY_V2)
        return self.query("nvmlDeviceGetMemoryInfo", handle, sticky=sticky)

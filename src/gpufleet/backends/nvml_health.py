"""GPU health and engine readings through NVML, beside the core ones in nvml.py.

Row remapping, page retirement, lifetime ECC totals, PCIe replays, throttle (violation) time
by reason, video encoder/decoder use and the vGPU license. Each is its own call (or field in
nvml.py's one nvmlDeviceGetFieldValues call), so a device that cannot say one of them (not
supported on this generation, no permission in this container) loses only that reading: it is
absent, never 0. "GPU lost" errors propagate as DeviceLost, as for every other reading.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from .nvml_lib import NvmlLib

Sticky = Callable[[str], Hashable]

# nvmlPerfPolicyType_t -> catalogue key. nvmlDeviceGetViolationStatus counts nanoseconds.
VIOLATIONS: tuple[tuple[int, str], ...] = (
    (0, "throttle_power_seconds_total"),  # NVML_PERF_POLICY_POWER
    (1, "throttle_thermal_seconds_total"),  # NVML_PERF_POLICY_THERMAL
    (2, "throttle_sync_boost_seconds_total"),  # NVML_PERF_POLICY_SYNC_BOOST
    (3, "throttle_board_limit_seconds_total"),  # NVML_PERF_POLICY_BOARD_LIMIT
    (4, "throttle_low_utilization_seconds_total"),  # NVML_PERF_POLICY_LOW_UTILIZATION
    (5, "throttle_reliability_seconds_total"),  # NVML_PERF_POLICY_RELIABILITY
)

# Field ids read in nvml.py's one nvmlDeviceGetFieldValues call: (id, key, scale).
FIELDS: tuple[tuple[int, str, float], ...] = (
    (5, "ecc_corrected_errors_aggregate_total", 1.0),  # NVML_FI_DEV_ECC_SBE_AGG_TOTAL
    (6, "ecc_uncorrected_errors_aggregate_total", 1.0),  # NVML_FI_DEV_ECC_DBE_AGG_TOTAL
    (29, "retired_pages_single_bit_total", 1.0),  # NVML_FI_DEV_RETIRED_SBE
    (30, "retired_pages_double_bit_total", 1.0),  # NVML_FI_DEV_RETIRED_DBE
    (31, "retired_pages_pending", 1.0),  # NVML_FI_DEV_RETIRED_PENDING (1 = yes)
    (94, "pcie_replays_total", 1.0),  # NVML_FI_DEV_PCIE_REPLAY_COUNTER
)

_AGGREGATE_ECC = 1  # NVML_AGGREGATE_ECC
_RETIRED_CAUSES = ((0, "retired_pages_single_bit_total"),  # NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS
                   (1, "retired_pages_double_bit_total"))  # NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR
_LICENSE_FEATURE_VGPU = 1  # NVML_GRID_LICENSE_FEATURE_CODE_VGPU


def read(lib: NvmlLib, h: Any, v: dict[str, float], sticky: Sticky) -> None:
    """The readings taken on every collection (all but those in the field-values call)."""
    q = lib.query
    rows = q("nvmlDeviceGetRemappedRows", h, sticky=sticky("remapped_rows"))
    if rows is not None:
        correctable, uncorrectable, pending, failure = (int(x) for x in rows[:4])
        v["remapped_rows_correctable_total"] = float(correctable)
        v["remapped_rows_uncorrectable_total"] = float(uncorrectable)
        v["remapped_rows_pending"] = 1.0 if pending else 0.0
        v["remapped_rows_failure"] = 1.0 if failure else 0.0
    for policy, key in VIOLATIONS:
        got = q("nvmlDeviceGetViolationStatus", h, policy, sticky=sticky(key))
        if got is not None:
            v[key] = int(got.violationTime) * 1e-9
    for fn, key in (("nvmlDeviceGetEncoderUtilization", "encoder_utilization_ratio"),
                    ("nvmlDeviceGetDecoderUtilization", "decoder_utilization_ratio")):
        got = q(fn, h, sticky=sticky(key))
        if got is not None:
            v[key] = min(max(float(got[0]) / 100.0, 0.0), 1.0)


def read_without_fields(lib: NvmlLib, h: Any, v: dict[str, float], sticky: Sticky) -> None:
    """FIELDS one call each, for drivers without nvmlDeviceGetFieldValues."""
    q = lib.query
    for key, error_type in (("ecc_corrected_errors_aggregate_total", 0), ("ecc_uncorrected_errors_aggregate_total", 1)):
        count = q("nvmlDeviceGetTotalEccErrors", h, error_type, _AGGREGATE_ECC, sticky=sticky(key))
        if count is not None:
            v[key] = float(count)
    for cause, key in _RETIRED_CAUSES:
        pages = q("nvmlDeviceGetRetiredPages", h, cause, sticky=sticky(key))
        if pages is not None:
            v[key] = float(len(pages))
    pending = q("nvmlDeviceGetRetiredPagesPendingStatus", h, sticky=sticky("retired_pages_pending"))
    if pending is not None:
        v["retired_pages_pending"] = 1.0 if int(pending) else 0.0
    replays = q("nvmlDeviceGetPcieReplayCounter", h, sticky=sticky("pcie_replays_total"))
    if replays is not None:
        v["pcie_replays_total"] = float(replays)


def read_slow(lib: NvmlLib, h: Any, v: dict[str, float], sticky: Sticky) -> None:
    """Readings that change rarely (read on the backend's slow cadence): the vGPU license."""
    got = lib.query("nvmlDeviceGetGridLicensableFeatures", h, sticky=sticky("vgpu_license"))
    if got is None or not int(getattr(got, "isGridLicenseSupported", 0)):
        return  # not a vGPU: the reading does not apply
    features = got.gridLicensableFeatures[: int(got.licensableFeaturesCount)]
    for feature in features:
        if int(feature.featureCode) == _LICENSE_FEATURE_VGPU:
            v["vgpu_licensed"] = 1.0 if int(feature.featureState) else 0.0

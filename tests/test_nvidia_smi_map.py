"""The nvidia-smi field table names only what the catalogue has, once each."""

from __future__ import annotations

from gpufleet.catalogue import SCOPE_LABELS, keys, metric, name_of
from gpufleet.nvidia_smi import FIELDS


def test_every_field_names_a_catalogue_reading_or_label() -> None:
    info_labels = metric(name_of("gpu", "info")).labels
    for f in FIELDS:
        if f.source == "identity":
            assert f.key in SCOPE_LABELS["gpu"], f.field
        elif f.source == "info":
            assert f.key in info_labels, f.field
        else:
            assert f.key in keys("gpu"), f.field
    assert len({f.field for f in FIELDS}) == len(FIELDS)


def test_the_fields_the_issue_names_are_all_mapped() -> None:
    fields = {f.field for f in FIELDS}
    for want in ("utilization.gpu", "utilization.memory", "memory.used", "memory.total", "temperature.gpu",
                 "temperature.memory", "power.draw", "power.limit", "clocks.sm", "clocks.mem", "pstate",
                 "fan.speed", "ecc.errors.corrected.volatile.total", "ecc.errors.uncorrected.aggregate.total",
                 "retired_pages.single_bit_ecc.count", "retired_pages.double_bit.count", "retired_pages.pending",
                 "remapped_rows.correctable", "remapped_rows.uncorrectable", "remapped_rows.pending",
                 "remapped_rows.failure", "clocks_event_reasons.sw_power_cap", "clocks_event_reasons.active"):
        assert want in fields, want

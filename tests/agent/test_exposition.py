from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpufleet.catalogue import CATALOGUE, SCOPE_LABELS
from gpufleet.exposition import parse_compat, render
from sample_snapshot import sample_snapshot


def samples(text: bytes) -> dict[tuple[str, frozenset], float]:
    out = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_catalogue_names_follow_conventions() -> None:
    for m in CATALOGUE:
        assert m.name.startswith("gpufleet_") and m.help
        assert (m.kind == "counter") == m.name.endswith("_total"), m.name
        assert m.scope in SCOPE_LABELS
        for unit in ("percent", "mib", "mhz", "milli", "kilo"):
            assert unit not in m.name.lower(), m.name


def test_text_values_and_labels() -> None:
    s = samples(render(sample_snapshot()))
    gpu0 = {("node", "n1"), ("gpu", "0"), ("uuid", "GPU-aaa"), ("model", "NVIDIA H100 80GB HBM3"), ("vendor", "nvidia")}
    assert s[("gpufleet_gpu_utilization_ratio", frozenset(gpu0))] == 0.87
    assert s[("gpufleet_gpu_power_watts", frozenset(gpu0))] == 512.25
    assert s[("gpufleet_node_memory_total_bytes", frozenset({("node", "n1")}))] == 64e9
    assert s[("gpufleet_cpu_utilization_ratio", frozenset({("node", "n1"), ("cpu", "1")}))] == 0.25
    # absent reading -> no series (GPU 1 has no temperature)
    assert not [k for k in s if k[0] == "gpufleet_gpu_temperature_celsius" and ("gpu", "1") in k[1]]
    proc = [k for k in s if k[0] == "gpufleet_gpu_process_memory_used_bytes"]
    assert len(proc) == 1 and ("user", "alice") in proc[0][1] and ("pod", "train-0") in proc[0][1]
    # quotes in label values are escaped and survive a round trip
    info = [k for k in s if k[0] == "gpufleet_node_info"]
    assert ("cpu_model", 'Xeon "Gold"') in info[0][1]
    fail = frozenset({("node", "n1"), ("collector", "disks")})
    assert s[("gpufleet_collector_success", fail)] == 0
    assert s[("gpufleet_collector_errors_total", fail)] == 3


def test_openmetrics_families() -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

    text = render(sample_snapshot(), openmetrics=True).decode()
    assert text.endswith("# EOF\n")
    fams = {f.name: f for f in om_parse(text)}
    assert fams["gpufleet_gpu_energy_joules"].type == "counter"
    assert fams["gpufleet_gpu"].type == "info"
    assert fams["gpufleet_gpu"].samples[0].name == "gpufleet_gpu_info"
    assert fams["gpufleet_gpu_energy_joules"].samples[0].name == "gpufleet_gpu_energy_joules_total"


def test_dcgm_compat_units_and_labels() -> None:
    s = samples(render(sample_snapshot(), compat=("dcgm",)))
    util = [(k, v) for k, v in s.items() if k[0] == "DCGM_FI_DEV_GPU_UTIL"]
    by_gpu = {dict(k[1])["gpu"]: v for k, v in util}
    assert by_gpu == {"0": 87.0, "1": 0.0}
    labels = dict(next(k for k, _ in util if dict(k[1])["gpu"] == "0")[1])
    assert labels["UUID"] == "GPU-aaa" and labels["device"] == "nvidia0"
    assert labels["modelName"] == "NVIDIA H100 80GB HBM3" and labels["Hostname"] == "n1"
    assert labels["DCGM_FI_DRIVER_VERSION"] == "550.54"
    fb = {dict(k[1]).get("GPU_I_ID", "-"): v for k, v in s.items() if k[0] == "DCGM_FI_DEV_FB_USED"}
    assert fb == {"-": 2048.0, "1": 3.0}  # MiB, whole GPU and MIG instance in one family
    # prometheus_client's parser appends `_total` to a counter's sample name; the text has none
    energy = [v for k, v in s.items() if k[0] == "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION_total"]
    assert energy == [1234500.0]  # mJ
    assert [v for k, v in s.items() if k[0] == "DCGM_FI_DEV_SM_CLOCK"] == [1980.0]


def test_dcgm_compat_types_totals_as_counters() -> None:
    # dcgm-exporter types energy and ECC totals as counters (names without `_total`); the text
    # format says so, and OpenMetrics, which cannot name such a counter, declares them unknown.
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

    snap = sample_snapshot()
    snap.gpus[0].values["ecc_corrected_errors_total"] = 2.0
    snap.gpus[0].values["last_xid"] = 79.0
    types = {f.name: f.type for f in text_string_to_metric_families(render(snap, compat=("dcgm",)).decode())}
    assert types["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] == "counter"
    assert types["DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"] == "counter"
    assert types["DCGM_FI_DEV_GPU_TEMP"] == "gauge" and types["DCGM_FI_DEV_XID_ERRORS"] == "gauge"
    om = {f.name: f for f in om_parse(render(snap, openmetrics=True, compat=("dcgm",)).decode())}
    assert om["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"].type == "unknown"
    assert om["DCGM_FI_DEV_GPU_TEMP"].type == "gauge"


def test_compat_table_is_the_one_list() -> None:
    from gpufleet.compat import MODES, prefers_text

    every = [m for m in MODES if m != "all-smi-legacy"]  # it and all-smi write the same names
    assert parse_compat(",".join(every)) == tuple(every)
    assert prefers_text(["dcgm"]) and not prefers_text(["all-smi"])


def test_allsmi_compat_speaks_v025_labels() -> None:
    s = samples(render(sample_snapshot(), compat=("all-smi",)))
    util = {dict(k[1])["gpu_index"]: v for k, v in s.items() if k[0] == "all_smi_gpu_utilization"}
    assert util == {"0": 87.0, "1": 0.0}
    lbl = dict(next(k[1] for k in s if k[0] == "all_smi_gpu_utilization"))
    assert lbl == {"gpu": "NVIDIA H100 80GB HBM3", "instance": "n1", "gpu_uuid": "GPU-aaa", "gpu_index": "0"}
    mem = {k[1]: v for k, v in s.items() if k[0] == "all_smi_memory_total_bytes"}
    assert mem == {frozenset({("instance", "n1"), ("hostname", "n1"), ("index", "0")}): 64e9}
    # the energy counter, labelled by scope as all-smi does (prometheus_client keeps the `_total` name)
    energy = {k[1]: v for k, v in s.items() if k[0] == "all_smi_energy_consumed_joules_total"}
    assert energy == {frozenset({("host", "n1"), ("scope", "gpu"), ("gpu_index", "0"), ("gpu_uuid", "GPU-aaa")}): 1234.5}
    types = {f.name: f.type for f in text_string_to_metric_families(render(sample_snapshot(), compat=("all-smi",)).decode())}
    assert types["all_smi_energy_consumed_joules"] == "counter"
    info = [dict(k[1]) for k in s if k[0] == "all_smi_gpu_info"]
    assert info[0]["type"] == "GPU" and info[0]["gpu_index"] == "0"
    snap = sample_snapshot()
    snap.values["cpu_utilization_ratio"] = 0.25
    cpu = samples(render(snap, compat=("all-smi",)))
    assert {k[1]: v for k, v in cpu.items() if k[0] == "all_smi_cpu_utilization"} == {frozenset(
        {("cpu_model", 'Xeon "Gold"'), ("instance", "n1"), ("hostname", "n1"), ("index", "0")}): 25.0}
    disk = dict(next(k[1] for k in s if k[0] == "all_smi_disk_total_bytes"))
    assert disk == {"instance": "n1", "mount_point": "/", "index": "0"}
    proc = dict(next(k[1] for k in s if k[0] == "all_smi_process_memory_used_bytes"))
    assert (proc["pid"], proc["name"], proc["gpu_index"], proc["device_uuid"]) == ("4242", "python", "0", "GPU-aaa")


def test_allsmi_legacy_compat_keeps_the_older_labels() -> None:
    s = samples(render(sample_snapshot(), compat=("all-smi-legacy",)))
    util = {dict(k[1])["index"]: v for k, v in s.items() if k[0] == "all_smi_gpu_utilization"}
    assert util == {"0": 87.0, "1": 0.0}
    lbl = dict(next(k[1] for k in s if k[0] == "all_smi_gpu_utilization"))
    assert set(lbl) == {"gpu", "instance", "uuid", "index"}
    assert {k[1]: v for k, v in s.items() if k[0] == "all_smi_memory_total_bytes"} == {
        frozenset({("instance", "n1")}): 64e9}
    # per-device series only (process rows keep all-smi's device_id / gpu_index in both eras)
    assert not [k for k in s if ("gpu_uuid" in dict(k[1]) or k[0].startswith("all_smi_energy"))]


def test_parse_compat() -> None:
    assert parse_compat("dcgm, all-smi,dcgm") == ("dcgm", "all-smi")
    assert parse_compat("") == ()
    with pytest.raises(ValueError, match="unknown compat mode 'nvsmi'"):
        parse_compat("nvsmi")
    with pytest.raises(ValueError, match="'all-smi' and 'all-smi-legacy' write the same names: keep one"):
        parse_compat("all-smi,all-smi-legacy")


def test_dcgm_vgpu_license_status_is_a_gauge_where_a_vgpu_reports_it() -> None:
    snap = sample_snapshot()
    snap.gpus[0].values["vgpu_licensed"] = 1.0
    text = render(snap, compat=("dcgm",)).decode()
    assert "# TYPE DCGM_FI_DEV_VGPU_LICENSE_STATUS gauge" in text
    assert 'DCGM_FI_DEV_VGPU_LICENSE_STATUS{gpu="0",' in text

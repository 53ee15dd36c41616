"""The /proc parsers, on strings taken from real hosts."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpufleet import procfs
from conftest import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES / "proc"


def test_parse_stat_counts_busy_without_guest_time() -> None:
    s = procfs.parse_stat(
        "cpu  100 10 50 800 20 5 5 10 40 0\ncpu0 100 10 50 800 20 5 5 10 40 0\nbtime 1700000000\n"
    )
    assert s.boot_time == 1700000000.0
    assert s.total is not None
    # guest (40) is inside user already; idle + iowait are not busy.
    assert s.total.total == 100 + 10 + 50 + 800 + 20 + 5 + 5 + 10
    assert s.total.busy == 100 + 10 + 50 + 5 + 5 + 10
    assert list(s.per_cpu) == [0]


def test_parse_stat_old_kernel_with_four_fields_and_gaps() -> None:
    s = procfs.parse_stat("cpu 1 2 3 4\ncpu0 1 2 3 4\ncpu2 5 5 5 5\nintr 1\n")
    assert sorted(s.per_cpu) == [0, 2]  # offline cpu1 is simply absent
    assert s.per_cpu[2] == procfs.CpuTimes(busy=15, total=20)
    assert s.boot_time is None


def test_parse_loadavg() -> None:
    assert procfs.parse_loadavg("0.52 0.58 0.59 2/612 7000\n") == (0.52, 0.58, 0.59)
    with pytest.raises(ValueError):
        procfs.parse_loadavg("")


def test_parse_meminfo_units() -> None:
    m = procfs.parse_meminfo("MemTotal:       16384000 kB\nHugePages_Total:       7\nbogus line\n")
    assert m == {"MemTotal": 16384000 * 1024, "HugePages_Total": 7}


def test_parse_net_dev_fields_and_headers() -> None:
    text = (FIXTURES / "net" / "dev").read_text()
    devs = {d.interface: d for d in procfs.parse_net_dev(text)}
    assert list(devs) == ["lo", "eth0", "ib0"]
    eth = devs["eth0"]
    rx = (eth.receive_bytes, eth.receive_packets, eth.receive_errors, eth.receive_drops)
    tx = (eth.transmit_bytes, eth.transmit_packets, eth.transmit_errors, eth.transmit_drops)
    assert rx == (9876543210, 6543210, 3, 4)
    assert tx == (1234567890, 3210987, 5, 6)
    # No space after the colon when the counter is wide: still parsed.
    assert devs["ib0"].receive_bytes == 1000 and devs["ib0"].transmit_drops == 1


def test_parse_diskstats_sectors_are_512_bytes() -> None:
    d = {x.name: x for x in procfs.parse_diskstats((FIXTURES / "diskstats").read_text())}
    assert d["dm-0"].major == 253 and d["dm-0"].minor == 0
    assert d["dm-0"].read_bytes == 28000000 * 512
    assert d["dm-0"].written_bytes == 18000000 * 512
    assert (d["dm-0"].reads, d["dm-0"].writes) == (140000, 85000)
    assert d["sda"].reads == 5000  # old 14-field format


def test_parse_mountinfo_unescapes_and_keeps_bind_root() -> None:
    mounts = procfs.parse_mountinfo((FIXTURES / "self" / "mountinfo").read_text())
    by_point = {m.mountpoint: m for m in mounts}
    assert by_point["/mnt/my disk"].source == "/dev/sdb1"
    assert by_point["/srv/projects"].root == "/projects"
    root = by_point["/"]
    assert (root.major, root.minor, root.fstype, root.source) == (253, 0, "ext4", "/dev/mapper/vg-root")
    # Optional fields (shared:N, master:N) vary in number: the " - " separator anchors the rest.
    m = procfs.parse_mountinfo("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:2 - ext3 /dev/root rw\n")[0]
    assert (m.mountpoint, m.fstype, m.source) == ("/mnt2", "ext3", "/dev/root")


def test_cpuinfo_models_across_architectures() -> None:
    x86 = procfs.parse_cpuinfo((FIXTURES / "cpuinfo").read_text())
    assert len(x86) == 2
    assert procfs.cpu_model(x86) == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    arm = procfs.parse_cpuinfo(
        "processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n\n"
        "processor\t: 1\nBogoMIPS\t: 50.00\n\nHardware\t: NVIDIA Grace\n"
    )
    assert procfs.cpu_model(arm) == "NVIDIA Grace"
    power = procfs.parse_cpuinfo("processor\t: 0\ncpu\t\t: POWER9, altivec supported\nclock\t\t: 3800.000000MHz\n")
    assert procfs.cpu_model(power) == "POWER9, altivec supported"
    assert procfs.cpu_model([]) == ""


def test_parse_os_release_quotes_and_comments() -> None:
    r = procfs.parse_os_release(
        '# comment\nNAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nPRETTY_NAME=\'Ubuntu 22.04 LTS\'\n'
    )
    assert r == {"NAME": "Ubuntu", "VERSION_ID": "22.04", "ID": "ubuntu", "PRETTY_NAME": "Ubuntu 22.04 LTS"}


def test_parse_pid_stat_with_parentheses_and_spaces_in_comm() -> None:
    s = procfs.parse_pid_stat((FIXTURES / "7000" / "stat").read_bytes())
    assert s.comm == "my (odd) proc)"
    assert (s.state, s.ppid, s.utime, s.stime, s.starttime, s.rss_pages) == ("Z", 1, 3, 4, 400000, 0)


@given(comm=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0\n"), max_size=15),
       ppid=st.integers(0, 2**22), utime=st.integers(0, 2**40), start=st.integers(0, 2**40))
def test_parse_pid_stat_any_comm(comm: str, ppid: int, utime: int, start: int) -> None:
    fields = ["77", f"({comm})", "S", str(ppid)] + ["0"] * 9 + [str(utime), "5"] + ["0"] * 6 + [str(start), "1", "42"]
    s = procfs.parse_pid_stat(" ".join(fields).encode())
    assert (s.comm, s.ppid, s.utime, s.stime, s.starttime, s.rss_pages) == (comm, ppid, utime, 5, start, 42)


def test_parse_cmdline_and_status() -> None:
    assert procfs.parse_cmdline(b"python3\0-m\0http.server\0") == ["python3", "-m", "http.server"]
    assert procfs.parse_cmdline(b"") == []
    # A process that rewrote its title with spaces and no NULs (nginx, postgres).
    assert procfs.parse_cmdline(b"nginx: worker process") == ["nginx: worker process"]
    assert procfs.parse_status_uid(b"Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t1\n") == 1000
    assert procfs.parse_status_uid(b"Name:\tx\n") is None


def test_readers_return_none_for_missing_files(tmp_path: Path) -> None:
    assert procfs.read_text(tmp_path / "nope") is None
    assert procfs.read_bytes(str(tmp_path / "nope")) is None
    assert procfs.read_boot_time(FIXTURES) == 1700000000.0
    assert procfs.read_boot_time(tmp_path) is None

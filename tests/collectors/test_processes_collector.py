"""The /proc process table: fields, caching, CPU shares, vanished and reused pids."""

from __future__ import annotations

import pwd
import shutil
from pathlib import Path

import pytest

from gpufleet import procfs
from gpufleet.collectors.base import CollectContext
from gpufleet.collectors.processes import ProcessCollector, command_line, process_name
from gpufleet.snapshot import NodeSnapshot, Owner, Process
from conftest import FIXTURES as ALL_FIXTURES, FakeClock

FIXTURES = ALL_FIXTURES / "proc"
TCK = procfs.CLOCK_TICKS
BOOT = 1700000000.0


def username(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    shutil.copytree(FIXTURES, root)
    return root


def write_stat(proc: Path, pid: int, comm: str, *, state: str = "S", ppid: int = 1, utime: int = 0,
               stime: int = 0, start: int = 0, rss: int = 0) -> None:
    fields = [str(pid), f"({comm})", state, str(ppid)] + ["0"] * 9 + [str(utime), str(stime)]
    fields += ["0"] * 6 + [str(start), "0", str(rss)] + ["0"] * 28
    d = proc / str(pid)
    d.mkdir(exist_ok=True)
    (d / "stat").write_text(" ".join(fields) + "\n")


def add_process(proc: Path, pid: int, comm: str, argv: list[str], uid: int = 0, **stat: int | str) -> None:
    write_stat(proc, pid, comm, **stat)  # type: ignore[arg-type]
    d = proc / str(pid)
    (d / "status").write_text(f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
    (d / "cgroup").write_text("0::/user.slice\n")
    (d / "environ").write_bytes(b"")


def collect(c: ProcessCollector) -> dict[int, Process]:
    s = NodeSnapshot(node="n", timestamp=0.0)
    c.collect(s)
    assert s.values["processes"] == float(len(s.processes))
    return {p.pid: p for p in s.processes}


def test_fixture_process_table() -> None:
    procs = collect(ProcessCollector(CollectContext(procfs=FIXTURES), clock=FakeClock(5000.0)))
    # 9999 has no stat (vanished); `self` and `sys` are not pids.
    assert sorted(procs) == [1, 2, 4242, 5150, 6000, 6001, 7000, 7001]
    web = procs[4242]
    assert web == Process(
        pid=4242, ppid=1, user=username(65534), name="python3", command="python3 -m http.server 8000",
        state="running", cpu_ratio=0.0, memory_bytes=2560 * procfs.PAGE_SIZE, cpu_seconds=200 / TCK,
        started=BOOT + 123456 / TCK, owner=Owner(container="4d2a6e1b9c3f", runtime="docker"),
    )
    assert procs[1].command == "/sbin/init splash" and procs[1].user == "root" and procs[1].owner is None
    assert procs[2].command == "[kthreadd]" and procs[2].ppid == 0
    pod = procs[5150]
    assert pod.user == "424242"  # no passwd entry: the uid itself
    assert pod.owner == Owner(container="f1e2d3c4b5a6", runtime="containerd", pod="trainer-7c9f8-abcde",
                              pod_uid="0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b", namespace="ml-team")
    assert pod.cpu_seconds == 10000 / TCK and pod.memory_bytes == 262144 * procfs.PAGE_SIZE
    assert procs[6000].owner == Owner(slurm_job="1234")
    assert procs[6001].owner == Owner(slurm_job="999") and procs[6001].state == "disk-sleep"
    assert procs[6001].command == "mpirun -np 4 ./a.out"
    odd = procs[7000]
    assert (odd.name, odd.state, odd.command) == ("my (odd) proc)", "zombie", "[my (odd) proc)]")
    assert procs[7001].name == "long_process_name_daemon"  # comm is cut at 15 bytes


def test_cpu_ratio_between_collections_and_for_new_processes(proc: Path) -> None:
    clock = FakeClock(5000.0)
    c = ProcessCollector(CollectContext(procfs=proc), clock=clock)  # baseline scan at t=5000
    write_stat(proc, 4242, "python3", state="R", utime=150 + TCK, stime=50 + TCK // 2, start=123456, rss=10)
    # Started 1 s before this round, after the baseline, and used half a second of CPU.
    add_process(proc, 8000, "worker", ["worker"], utime=TCK // 2, start=5001 * TCK)
    clock.t = 5002.0
    procs = collect(c)
    assert procs[4242].cpu_ratio == pytest.approx((TCK + TCK // 2) / TCK / 2.0)
    assert procs[4242].memory_bytes == 10 * procfs.PAGE_SIZE
    assert procs[8000].cpu_ratio == pytest.approx(0.5)
    assert procs[5150].cpu_ratio == 0.0  # unchanged counters


def test_old_process_without_baseline_gets_no_cpu_share(proc: Path) -> None:
    clock = FakeClock(5000.0)
    (proc / "4242" / "status").rename(proc / "4242" / "status.hidden")
    c = ProcessCollector(CollectContext(procfs=proc), clock=clock)  # 4242 unreadable at the baseline
    (proc / "4242" / "status.hidden").rename(proc / "4242" / "status")
    clock.t = 5002.0
    # It has run since long before the baseline: its 2 s lifetime CPU is not this round's.
    assert collect(c)[4242].cpu_ratio == 0.0


def test_static_fields_are_cached_per_pid_and_start_time(proc: Path) -> None:
    c = ProcessCollector(CollectContext(procfs=proc), clock=FakeClock(5000.0))
    # Same pid, start time and comm: cmdline and status are not read again.
    (proc / "4242" / "cmdline").write_bytes(b"changed\0")
    (proc / "4242" / "status").unlink()
    assert collect(c)[4242].command == "python3 -m http.server 8000"
    # exec(): comm changes, so the entry is refreshed.
    (proc / "4242" / "status").write_text("Uid:\t0\t0\t0\t0\n")
    write_stat(proc, 4242, "changed", start=123456)
    p = collect(c)[4242]
    assert (p.command, p.name, p.user) == ("changed", "changed", "root")
    # pid reuse: a new start time is a new process, even with the same comm.
    (proc / "4242" / "cmdline").write_bytes(b"changed\0--again\0")
    write_stat(proc, 4242, "changed", start=999999)
    assert collect(c)[4242].command == "changed --again"


def test_vanished_processes_are_dropped(proc: Path) -> None:
    c = ProcessCollector(CollectContext(procfs=proc), clock=FakeClock(5000.0))
    assert 6001 in c._cache
    shutil.rmtree(proc / "6001")
    procs = collect(c)
    assert 6001 not in procs and 6001 not in c._cache
    # A new process that vanishes between its stat and status read is skipped, not an error.
    write_stat(proc, 8100, "ghost")
    procs = collect(c)
    assert 8100 not in procs and 8100 not in c._cache


def test_unreadable_environ_and_cgroup_leave_owner_partial(proc: Path) -> None:
    (proc / "5150" / "environ").unlink()
    (proc / "6000" / "cgroup").unlink()
    (proc / "6001" / "environ").unlink()
    procs = collect(ProcessCollector(CollectContext(procfs=proc), clock=FakeClock(5000.0)))
    assert procs[5150].owner == Owner(container="f1e2d3c4b5a6", runtime="containerd",
                                      pod="0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
                                      pod_uid="0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b")
    assert procs[6000].owner == Owner(slurm_job="1234")  # from its environ
    assert procs[6001].owner is None


def test_environ_reading_can_be_turned_off(proc: Path) -> None:
    ctx = CollectContext(procfs=proc, options={"processes.environ": False})
    procs = collect(ProcessCollector(ctx, clock=FakeClock(5000.0)))
    assert procs[6001].owner is None
    assert procs[5150].owner is not None and procs[5150].owner.namespace == ""


def test_garbage_stat_is_skipped(proc: Path) -> None:
    (proc / "4242" / "stat").write_text("4242 (python3) R\n")
    (proc / "6000" / "stat").write_text("")
    procs = collect(ProcessCollector(CollectContext(procfs=proc), clock=FakeClock(5000.0)))
    assert 4242 not in procs and 6000 not in procs and 1 in procs


def test_missing_procfs_fails(tmp_path: Path) -> None:
    c = ProcessCollector(CollectContext(procfs=tmp_path / "nope"))
    with pytest.raises(RuntimeError, match="cannot list"):
        c.collect(NodeSnapshot(node="n", timestamp=0.0))


def test_name_and_command_helpers() -> None:
    assert process_name("python3", ["/usr/bin/python3", "x.py"]) == "python3"
    server = "gnome-shell-calendar-server"
    assert process_name("gnome-shell-cal", [f"/usr/libexec/{server}"]) == server
    assert process_name("gnome-shell-cal", ["/usr/bin/other"]) == "gnome-shell-cal"
    assert process_name("kworker/0:1-eve", []) == "kworker/0:1-eve"
    assert command_line("kthreadd", []) == "[kthreadd]"
    assert command_line("sh", ["sh", "-c", "echo hi"]) == "sh -c echo hi"

"""Check the agent against `nvidia-smi` on a machine with a real NVIDIA GPU (scripts/gpu-check).

    python -m gpufleet.gpucheck [--url http://127.0.0.1:9401] [--agent-args "--backend nvml"]
                                [--nvidia-smi PATH] [--json]

Starts an agent on NVML (or reads a running one with --url), asks nvidia-smi for every field of
nvidia_smi.FIELDS just before and just after it takes the agent's snapshot, and prints one row per
GPU and field: nvidia-smi's answer, the agent's reading in nvidia-smi's unit, the tolerance, and
whether they agree. A moving reading agrees when it is within tolerance of either nvidia-smi
answer; counts and identities must be equal; "[N/A]" must meet an absent reading. Exit 0 when
everything agrees, 1 on a mismatch, 2 when the check cannot run. Standard library only: it runs
from a bare `pip install gpufleet`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .nvidia_smi import FIELDS, SmiField

NOT_AVAILABLE = ("[n/a]", "n/a", "[not supported]", "not supported", "[unknown error]", "[insufficient permissions]",
                 "[gpu is lost]", "")
Reading = float | str | None


class CheckError(Exception):
    """The check cannot run (no nvidia-smi, the agent does not start, ...)."""


# ---- nvidia-smi ---------------------------------------------------------------------------------
def query_smi(fields: Sequence[str], nvidia_smi: str = "nvidia-smi") -> tuple[list[dict[str, str]], list[str]]:
    """One row per GPU (field -> raw answer), and the fields this nvidia-smi does not know
    (they are dropped and asked again without them: older drivers lack some)."""
    asked: list[str] = list(fields)
    unknown: list[str] = []
    while asked:
        try:
            r = subprocess.run([nvidia_smi, f"--query-gpu={','.join(asked)}", "--format=csv,noheader,nounits"],
                               capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise CheckError(f"{nvidia_smi} not found: install the NVIDIA driver, or pass --nvidia-smi PATH") from None
        except subprocess.TimeoutExpired:
            raise CheckError(f"{nvidia_smi} did not answer within 60 s") from None
        if r.returncode == 0:
            rows = [_split_csv(line) for line in r.stdout.splitlines() if line.strip()]
            return [dict(zip(asked, row)) for row in rows], unknown
        bad = next((f for f in asked if f'"{f}"' in r.stdout + r.stderr), None)
        if bad is None:
            raise CheckError(f"{nvidia_smi} failed: {(r.stderr or r.stdout).strip()[:300]}")
        asked.remove(bad)
        unknown.append(bad)
    return [], unknown


def _split_csv(line: str) -> list[str]:
    return [part.strip() for part in line.split(",")]


def parse_smi(f: SmiField, raw: str | None) -> Reading:
    """nvidia-smi's answer in our unit (or text), None where it cannot say."""
    if raw is None or raw.strip().lower() in NOT_AVAILABLE:
        return None
    text = raw.strip()
    if f.parse == "text":
        return text
    try:
        if f.parse == "number":
            return float(text) * f.scale
        if f.parse == "pstate":
            return float(text.upper().removeprefix("P"))
        if f.parse == "hex":
            return float(int(text, 16))
    except ValueError:
        return None
    if f.parse == "yesno":
        return {"yes": 1.0, "no": 0.0}.get(text.lower())
    if f.parse == "active":
        return {"active": 1.0, "not active": 0.0}.get(text.lower())
    return None


# ---- the agent's snapshot ------------------------------------------------------------------------
def ours(f: SmiField, gpu: dict[str, Any]) -> Reading:
    """The agent's reading for one field, from one GPU of its JSON snapshot."""
    if f.source == "identity":
        value = {"gpu": gpu.get("index"), "uuid": gpu.get("uuid"), "model": gpu.get("model")}.get(f.key)
        return None if value is None or value == "" else str(value)
    if f.source == "info":
        text = (gpu.get("info") or {}).get(f.key)
        return text or None
    v = (gpu.get("values") or {}).get(f.key)
    if v is None:
        return None
    if f.parse == "active":
        return 1.0 if int(v) & f.bit else 0.0
    return float(v)


# ---- comparing ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Row:
    gpu: str
    field: str
    smi: str
    gpufleet: str
    tolerance: str
    ok: bool | None  # None: not compared (this nvidia-smi lacks the field)


def _show(f: SmiField, v: Reading) -> str:
    """A value in nvidia-smi's unit, as it would print it."""
    if v is None:
        return "absent"
    if isinstance(v, str):
        return v
    if f.parse == "number":
        x = v / f.scale
    elif f.parse == "hex":
        return f"0x{int(v):016x}"
    elif f.parse in ("yesno", "active"):
        return {"yesno": ("No", "Yes"), "active": ("Not Active", "Active")}[f.parse][int(v != 0)]
    elif f.parse == "pstate":
        return f"P{int(v)}"
    else:
        x = v
    return f"{x:.6g}"


def tolerance(f: SmiField) -> str:
    if not (f.abs_tol or f.rel_tol):
        return "exact"
    parts = [f"±{f.abs_tol / f.scale:g}" if f.abs_tol else "", f"±{f.rel_tol:.0%}" if f.rel_tol else ""]
    return " or ".join(p for p in parts if p)


def agrees(f: SmiField, theirs: Sequence[Reading], mine: Reading) -> bool:
    """Within tolerance of any of nvidia-smi's answers; both absent counts as agreeing."""
    for t in theirs:
        if t is None or mine is None:
            if t is None and mine is None:
                return True
            continue
        if isinstance(t, str) or isinstance(mine, str):
            if str(t) == str(mine):
                return True
            continue
        if abs(mine - t) <= max(f.abs_tol, f.rel_tol * abs(t)):
            return True
    return False


def compare(before: list[dict[str, str]], after: list[dict[str, str]], snapshot: dict[str, Any],
            unknown: Sequence[str] = ()) -> list[Row]:
    """One row per GPU nvidia-smi lists and field; GPUs matched by UUID, else by index."""
    gpus = snapshot.get("gpus") or []
    by_uuid = {g.get("uuid"): g for g in gpus}
    by_index = {str(g.get("index")): g for g in gpus}
    rows: list[Row] = []
    for n, smi in enumerate(before):
        later = after[n] if n < len(after) else smi
        gpu = by_uuid.get(smi.get("uuid")) or by_index.get(smi.get("index", str(n))) or {}
        label = smi.get("index", str(n))
        for f in FIELDS:
            if f.field in unknown:
                rows.append(Row(label, f.field, "not in this nvidia-smi", _show(f, ours(f, gpu)), tolerance(f), None))
                continue
            theirs = [parse_smi(f, smi.get(f.field)), parse_smi(f, later.get(f.field))]
            mine = ours(f, gpu)
            shown = smi.get(f.field, "")
            if f.moving and later.get(f.field) != shown:
                shown = f"{shown} .. {later.get(f.field, '')}"
            rows.append(Row(label, f.field, shown, _show(f, mine), tolerance(f), agrees(f, theirs, mine)))
    return rows


def table(rows: Sequence[Row]) -> str:
    head = ("gpu", "field", "nvidia-smi", "gpufleet", "tolerance", "ok")
    cells = [head] + [(r.gpu, r.field, r.smi, r.gpufleet, r.tolerance,
                       "skip" if r.ok is None else "ok" if r.ok else "MISMATCH") for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(head))).rstrip() for c in cells]
    return "\n".join(lines[:1] + ["  ".join("-" * w for w in widths)] + lines[1:])


# ---- running it ------------------------------------------------------------------------------------
def fetch_snapshot(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/snapshot", timeout=10) as r:
            data: dict[str, Any] = json.loads(r.read())
    except ValueError as e:  # a malformed --url ('[::1', no scheme) or an answer that is not JSON
        raise CheckError(f"{url}: {e}: give a running agent's URL, e.g. http://127.0.0.1:9401") from None
    if not isinstance(data, dict):
        raise CheckError(f"{url} did not answer with a gpufleet snapshot: is it a gpufleet agent?")
    return data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def started_agent(agent_args: Sequence[str], timeout: float = 60.0) -> Iterator[str]:
    """An agent on a free loopback port, until the block ends; its URL once it reports GPUs."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "gpufleet", "agent", "--listen", f"127.0.0.1:{port}", "--interval", "1",
           *agent_args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read() if proc.stderr else ""
                raise CheckError(f"the agent exited ({proc.returncode}): {err.strip()[-500:]}")
            try:
                if any((g.get("values") or {}).get("up") for g in fetch_snapshot(url).get("gpus") or []):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise CheckError(f"the agent reported no GPU within {timeout:g} s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_check(url: str, nvidia_smi: str) -> list[Row]:
    fields = [f.field for f in FIELDS]
    before, unknown = query_smi(fields, nvidia_smi)
    if not before:
        raise CheckError(f"{nvidia_smi} lists no GPU")
    snapshot = fetch_snapshot(url)
    after, _ = query_smi([f for f in fields if f not in unknown], nvidia_smi)
    return compare(before, after, snapshot, unknown)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpu-check", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running agent to check (default: start one on NVML)")
    p.add_argument("--agent-args", default="--backend nvml", help='arguments for the agent it starts '
                   '(default: "--backend nvml")')
    p.add_argument("--nvidia-smi", default=os.environ.get("NVIDIA_SMI", "nvidia-smi"), help="nvidia-smi to ask")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = p.parse_args(argv)
    try:
        agent_args = shlex.split(args.agent_args)
    except ValueError as e:  # an unclosed quote
        print(f"gpu-check: --agent-args {args.agent_args!r}: {e}", file=sys.stderr)
        return 2
    try:
        if args.url:
            rows = run_check(args.url, args.nvidia_smi)
        else:
            with started_agent(agent_args) as url:
                rows = run_check(url, args.nvidia_smi)
    except (CheckError, OSError) as exc:
        print(f"gpu-check: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([_row_dict(r) for r in rows], indent=1))
    else:
        print(table(rows))
    bad = [r for r in rows if r.ok is False]
    compared = sum(1 for r in rows if r.ok is not None)
    print(f"\n{compared - len(bad)} of {compared} readings agree"
          + (f"; {len(bad)} MISMATCH: " + ", ".join(f"GPU {r.gpu} {r.field}" for r in bad) if bad else ""),
          file=sys.stderr)
    return 1 if bad else 0


def _row_dict(r: Row) -> dict[str, object]:
    return {"gpu": r.gpu, "field": r.field, "nvidia_smi": r.smi, "gpufleet": r.gpufleet, "tolerance": r.tolerance,
            "ok": r.ok}


if __name__ == "__main__":
    sys.exit(main())

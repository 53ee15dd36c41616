"""`gpufleet service install|uninstall agent|hub`: a systemd unit, its user and its secret.

Everything is planned first (and checked: root, systemd, a join token), then done, so a
refusal leaves nothing half-written; `--dry-run` prints the unit and the plan. The unit text
is service_unit.py's. Agent-side imports only: `scripts/install.sh` runs this on GPU nodes as
`gpufleet service install agent --hub URL --enable`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from .errors import UserError
from .service_unit import CONFIG_DIR, UNIT_DIR, USER, UnitSpec, render_unit

# Where systemd reads system units from (enable works only on a unit in one of them).
SYSTEM_UNIT_DIRS = (Path("/etc/systemd/system"), Path("/run/systemd/system"), Path("/usr/lib/systemd/system"),
                    Path("/lib/systemd/system"), Path("/usr/local/lib/systemd/system"))
KINDS = click.Choice(["agent", "hub"])


@dataclass(slots=True)
class Step:
    says: str  # what is done, as a command or a sentence
    do: Callable[[], None] | None = None  # None: a step for the user


def _systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir()  # what sd_booted() checks


def _run(*argv: str) -> Callable[[], None]:
    def go() -> None:
        try:
            r = subprocess.run(list(argv), capture_output=True, text=True, timeout=120)
        except OSError as e:
            raise UserError(f"`{shlex.join(argv)}` could not run: {e.strerror or e}") from None
        if r.returncode != 0:
            last = ((r.stderr or r.stdout).strip().splitlines() or [f"exit {r.returncode}"])[-1]
            raise UserError(f"`{shlex.join(argv)}` failed: {last}")
    return go


def _write(path: Path, text: str, mode: int) -> Callable[[], None]:
    def go() -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(tmp, mode)  # whatever the umask
            os.replace(tmp, path)
        except OSError as e:  # a directory that cannot be made or written: one line, no temp file left
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise UserError(f"cannot write {path}: {e.strerror or e}; pick a writable directory") from None
    return go


def _need_root(paths: list[Path]) -> None:
    """Refuse before anything is written when a directory cannot be written (not root)."""
    for p in paths:
        probe = p
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not os.access(probe, os.W_OK):
            again = shlex.join(["sudo", "gpufleet", *sys.argv[1:]])
            raise UserError(f"writing {p} needs root: run `{again}` (or add --dry-run to see what it does)")


def _command() -> list[str]:
    """How the unit runs gpufleet: this Python, so the unit uses the installation that wrote it."""
    return [sys.executable, "-m", "gpufleet"]


def _gpu_groups() -> list[str]:
    """The groups GPU device nodes often belong to (0660 root:video, root:render) that exist here."""
    import grp

    found = []
    for name in ("video", "render"):
        try:
            grp.getgrnam(name)
            found.append(name)
        except KeyError:
            pass
    return found


def _token_source(token_file: Path | None) -> str | None:
    if token_file is not None:
        from .config import read_token_file

        return read_token_file(token_file)  # one line naming the problem if it is not a token
    token = os.environ.get("GPUFLEET_TOKEN", "").strip()
    return token or None


def plan_install(kind: str, hub: str | None, listen: str | None, token_file: Path | None, enable: bool,
                 unit_dir: Path, config_dir: Path) -> tuple[str, list[Step], list[str]]:
    """(unit text, steps, notes); UserError for what must be fixed first."""
    if kind == "hub" and hub:
        raise UserError("--hub is for the agent's unit (the hub it pushes to); leave it out for the hub")
    if kind == "hub":
        import importlib.util

        def missing(module: str) -> bool:
            try:
                return importlib.util.find_spec(module) is None
            except (ImportError, ValueError):
                return True

        absent = [m for m in ("fastapi", "uvicorn", "numpy") if missing(m)]
        if absent:  # the unit would start a hub that cannot import itself, again and again
            raise UserError(f"the hub's unit runs `gpufleet hub`, which needs gpufleet's hub extra ({absent[0]} is "
                            "not installed): pip install 'gpufleet[hub]' first")
    if listen is not None:
        from .config import parse_listen

        try:
            parse_listen(listen)
        except ValueError as e:
            raise UserError(f"--listen: {e}") from None
    if hub:
        from .agent.hubs import parse_hubs
        from .syntax import no_credentials_in_url

        # Several hubs, comma-separated, go into the unit as one --hub (docs/scale.md).
        hub = ",".join(no_credentials_in_url(h, "--hub") for h in parse_hubs(hub))
    spec = UnitSpec(kind, _command(), listen or "", hub, token_file=config_dir / "agent.token",
                    env_file=config_dir / f"{kind}.env", groups=_gpu_groups() if kind == "agent" else [])
    unit = render_unit(spec)
    unit_path = unit_dir / spec.name
    system = unit_dir.resolve() in {d.resolve() for d in SYSTEM_UNIT_DIRS if d.exists()} or unit_dir == UNIT_DIR
    if enable and not system:
        raise UserError(f"--enable: systemd does not read units from {unit_dir}: leave --unit-dir out, or "
                        f"enable it yourself where systemd reads it")
    if enable and not _systemd_running():
        raise UserError("--enable: systemd is not running on this machine (no /run/systemd/system): "
                        "leave --enable out to write the unit only")
    steps: list[Step] = []
    notes: list[str] = []
    try:
        pwd.getpwnam(USER)
    except KeyError:
        useradd = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                   "--shell", "/usr/sbin/nologin", USER]
        # Only a real install creates a system user; a unit written elsewhere (an image) says how.
        steps.append(Step(shlex.join(useradd), _run(*useradd) if system else None))
    if kind == "agent" and hub:
        token = _token_source(token_file)
        if token is not None:
            steps.append(Step(f"write the join token to {spec.token_file} (mode 0600, root only; systemd hands "
                              "it to the agent)", _write(spec.token_file, token + "\n", 0o600)))
        elif spec.token_file.exists():
            notes.append(f"the join token stays in {spec.token_file}")
        elif enable:
            raise UserError(f"no join token: pass --token-file FILE (or GPUFLEET_TOKEN), or put the token from "
                            f"`gpufleet token create` in {spec.token_file} (mode 0600) first")
        else:
            steps.append(Step(f"put the join token (`gpufleet token create` on the hub) in {spec.token_file}, "
                              "mode 0600"))
    steps.append(Step(f"write {unit_path}", _write(unit_path, unit, 0o644)))
    reload, start = ["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", spec.name]
    steps.append(Step(shlex.join(reload), _run(*reload) if enable else None))
    steps.append(Step(shlex.join(start), _run(*start) if enable else None))
    if sys.executable.startswith(("/root/", "/home/")):
        notes.append(f"gpufleet runs from {sys.executable}: the {USER} user cannot read a home directory; "
                     "install it system-wide (python3 -m venv /opt/gpufleet && /opt/gpufleet/bin/pip install "
                     "gpufleet) and run that one's `gpufleet service install`")
    if kind == "hub":
        notes.append("the first join token is in the hub's log: `journalctl -u gpufleet-hub`; more with "
                     f"`sudo -u {USER} {shlex.join(_command())} token create --data /var/lib/gpufleet-hub`")
    else:
        notes.append(f"check it: `systemctl status {spec.name}`, `journalctl -u {spec.name}`")
    return unit, steps, notes


def _print_plan(steps: list[Step], notes: list[str], done: bool) -> None:
    """Before (dry run): every step. After: what is left for the user."""
    for s in steps:
        if not done:
            click.echo(f"step: {s.says}")
        elif s.do is None:
            click.echo(f"to do: {s.says}")
    for n in notes:
        click.echo(f"note: {n}")


@click.group()
def service() -> None:
    """systemd units for the agent and the hub (see docs/deploy.md)."""


@service.command("install")
@click.argument("kind", type=KINDS)
@click.option("--hub", metavar="URL", help="agent: the hub to push to (its join token via --token-file); "
                                          "several hubs comma-separated")
@click.option("--listen", metavar="HOST:PORT", help="listen address [default: agent 0.0.0.0:9401, hub 0.0.0.0:8080]")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
              help="agent: a file holding the join token, copied to /etc/gpufleet/agent.token (0600) "
                   "[or GPUFLEET_TOKEN]")
@click.option("--enable", is_flag=True, help="also systemctl daemon-reload and enable --now")
@click.option("--dry-run", is_flag=True, help="print the unit and the steps; change nothing")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), default=UNIT_DIR, show_default=True,
              help="where to write the unit (another directory: for an image or a review)")
@click.option("--config-dir", type=click.Path(file_okay=False, path_type=Path), default=CONFIG_DIR,
              show_default=True, help="where the token and the optional KIND.env (GPUFLEET_* settings) live")
def install(kind: str, hub: str | None, listen: str | None, token_file: Path | None, enable: bool, dry_run: bool,
            unit_dir: Path, config_dir: Path) -> None:
    """Write a systemd unit for KIND (agent or hub): Type=notify with a watchdog, Restart=always,
    its own user, hardened; with --enable, start it now and at boot."""
    unit, steps, notes = plan_install(kind, hub, listen, token_file, enable and not dry_run, unit_dir, config_dir)
    if dry_run:
        click.echo(f"# {unit_dir / f'gpufleet-{kind}.service'}")
        click.echo(unit)
        _print_plan(steps, notes, done=False)
        return
    _need_root([unit_dir] + ([config_dir] if any("join token to" in s.says for s in steps) else []))
    for s in steps:
        if s.do is not None:
            s.do()
            click.echo(f"done: {s.says}")
    _print_plan(steps, notes, done=True)


@service.command("uninstall")
@click.argument("kind", type=KINDS)
@click.option("--dry-run", is_flag=True, help="print the steps; change nothing")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), default=UNIT_DIR, show_default=True)
def uninstall(kind: str, dry_run: bool, unit_dir: Path) -> None:
    """Stop and disable KIND's unit and remove it; data, token and user stay (it says where)."""
    name = f"gpufleet-{kind}.service"
    path = unit_dir / name
    if not path.exists():
        click.echo(f"{name} is not installed (no {path})")
        return
    systemd = _systemd_running() and unit_dir == UNIT_DIR
    steps = []
    if systemd:
        steps.append(Step(f"systemctl disable --now {name}", _run("systemctl", "disable", "--now", name)))
    steps.append(Step(f"remove {path}", path.unlink))
    if systemd:
        steps.append(Step("systemctl daemon-reload", _run("systemctl", "daemon-reload")))
    kept = f"/var/lib/gpufleet-{kind}" if kind == "hub" else f"/var/lib/gpufleet-{kind} (spool, credential)"
    notes = [f"kept: {kept}, {CONFIG_DIR} and the {USER} user (`userdel {USER}` removes it)"]
    if dry_run:
        _print_plan(steps, notes, done=False)
        return
    _need_root([unit_dir])
    for s in steps:
        if s.do is not None:
            s.do()
            click.echo(f"done: {s.says}")
    for n in notes:
        click.echo(f"note: {n}")


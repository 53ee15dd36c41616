"""The `gpufleet` command. Errors a user can fix are one line on stderr and exit 2."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import __version__
from .config import AGENT_OPTIONS, load_agent_config
from .errors import UserError

if TYPE_CHECKING:  # the hub's modules load only for hub commands: the agent stays small
    import socket
    from collections.abc import Callable

    from .hub.auth.options import AccessOptions
    from .hub.service import Hub


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every request, whole URL included (webhook paths, remote-write keys), at INFO
    # and DEBUG: its loggers stay at WARNING, and every URL in a log line is redacted.
    from .logredact import install

    install()


class _LazyGroup(click.Group):
    """Commands of hub features are imported only when used: the agent stays small."""

    lazy = {"rules": "gpufleet.hub.alerts.cli:rules", "run": "gpufleet.hub.commands.cli:run",
            "audit": "gpufleet.hub.commands.cli:audit", "store": "gpufleet.cli_store:store",
            "user": "gpufleet.hub.auth.cli:user", "apikey": "gpufleet.hub.auth.cli:apikey",
            "stack": "gpufleet.stack.cli:stack",
            "status": "gpufleet.cli_status:status", "service": "gpufleet.cli_service:service",
            "k8s": "gpufleet.cli_k8s:k8s", "stress": "gpufleet.cli_stress:stress",
            "report": "gpufleet.hub.usage.cli:report", "jobs": "gpufleet.hub.usage.cli:jobs",
            "ls": "gpufleet.tui.cli:ls", "free": "gpufleet.tui.cli:free"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            import importlib

            module, _, attr = self.lazy[name].partition(":")
            try:
                return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
            except ModuleNotFoundError as e:  # an extra not installed (`pip install gpufleet` is the agent)
                from .missing import is_ours, stub_command

                if is_ours(e):
                    raise
                return stub_command(name, e)
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="gpufleet")
def cli() -> None:
    """gpufleet: watch every accelerator in a fleet, and who uses it."""


def _agent_options(f: Any) -> Any:
    """One click option per config Option; values stay raw so config.resolve owns precedence."""
    flags = {
        "labels": ("--label", "labels"),
        "collectors": ("--collectors", "collectors"),
    }
    for opt in reversed(AGENT_OPTIONS):
        flag, dest = flags.get(opt.name, (opt.flag, opt.name))
        if opt.name == "labels":
            f = click.option(flag, dest, multiple=True, metavar="NAME=VALUE",
                             help=f"{opt.help} [env {opt.env}]")(f)
        elif opt.name == "hub":  # repeatable: several hubs share the fleet (agent/hubs.py)
            f = click.option(flag, dest, multiple=True, metavar="URL",
                             help=f"{opt.help} [env {opt.env}, comma-separated]")(f)
        elif opt.name == "allow_commands":
            f = click.option(flag, dest, multiple=True, metavar="PATTERN",
                             help=f"{opt.help} [env {opt.env}, one per line]")(f)
        elif opt.name == "allow_root_commands":
            f = click.option(flag, dest, is_flag=True, default=None, help=f"{opt.help} [env {opt.env}]")(f)
        else:
            f = click.option(flag, dest, default=None, help=f"{opt.help} [env {opt.env}]")(f)
    return click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
                        default=None, help="YAML config file [env GPUFLEET_CONFIG]")(f)


@cli.command()
@_agent_options
def agent(config_file: Path | None, **raw: Any) -> None:
    """Run the node agent: /metrics, /api/v1/snapshot and /healthz on --listen."""
    from .agent.service import AgentService

    raw["labels"] = ",".join(raw["labels"]) if raw.get("labels") else None
    raw["allow_commands"] = list(raw["allow_commands"]) if raw.get("allow_commands") else None
    raw["hub"] = ",".join(raw["hub"]) if raw.get("hub") else None
    raw["allow_root_commands"] = True if raw.get("allow_root_commands") else None
    if config_file is None and os.environ.get("GPUFLEET_CONFIG"):
        config_file = Path(os.environ["GPUFLEET_CONFIG"])
    cfg = load_agent_config(raw, os.environ, config_file)
    _setup_logging(cfg.log_level)
    service = AgentService(cfg)
    service.run()


# ---- hub ----------------------------------------------------------------------------------------

def _duration(kw: dict[str, Any], key: str) -> float:
    from .syntax import parse_duration

    flag = "--" + key.replace("_", "-")
    try:
        seconds = parse_duration(kw[key])
    except ValueError as e:
        raise UserError(f"{flag}: {e}") from None
    if seconds <= 0:
        raise UserError(f"{flag}: must be more than zero, e.g. 2m or 1h30m")
    return seconds


HUB_COMPAT = ["ds01"]  # compat modes with hub-kept series (the agent renders the rest per node)


def _hub_options(f: Any) -> Any:
    opts = [
        click.option("--listen", default="127.0.0.1:8080", show_default=True, envvar="GPUFLEET_HUB_LISTEN",
                     help="HOST:PORT for the API and web UI (loopback unless told)"),
        click.option("--data", "data", default="gpufleet-data", show_default=True, envvar="GPUFLEET_DATA",
                     type=click.Path(file_okay=False, path_type=Path), help="data directory"),
        click.option("--public-url", envvar="GPUFLEET_PUBLIC_URL", metavar="URL",
                     help="the URL agents and browsers reach this hub at (a proxy's, say); shown in the join "
                          "command [default: the listen address; on 0.0.0.0 or ::, this machine's primary address]"),
        click.option("--targets", type=click.Path(dir_okay=False, path_type=Path), envvar="GPUFLEET_TARGETS",
                     help="YAML file of exporters to pull (file_sd format); reloaded when it changes"),
        click.option("--remote-write", envvar="GPUFLEET_REMOTE_WRITE",
                     help="also send every sample to this Prometheus remote-write URL"),
        click.option("--history", envvar="GPUFLEET_HISTORY",
                     help="read history from prometheus+http://HOST:PORT instead of the embedded store"),
        click.option("--retention-raw", default="2d", show_default=True, help="keep raw samples this long"),
        click.option("--retention-1m", default="30d", show_default=True, help="keep 1-minute rollups this long"),
        click.option("--retention-1h", default="400d", show_default=True, help="keep 1-hour rollups this long"),
        click.option("--rules", type=click.Path(dir_okay=False, path_type=Path), envvar="GPUFLEET_ALERT_RULES",
                     help="alert rules YAML (default: DATA/alerts.yaml if present); see docs/alerts.md"),
        click.option("--notify", type=click.Path(dir_okay=False, path_type=Path), envvar="GPUFLEET_NOTIFY",
                     help="notification routes YAML: apprise URLs, Alertmanager (default: DATA/notify.yaml)"),
        click.option("--groups-file", type=click.Path(dir_okay=False, path_type=Path), envvar="GPUFLEET_GROUPS_FILE",
                     help="users' groups (YAML or CSV); every per-user figure also rolls up by group "
                          "(default: the groups agents report); see docs/allocation.md"),
        click.option("--down-after", default="2m", show_default=True,
                     help="a silent node is down after this long (stale after 3 intervals)"),
        click.option("--min-free-space", default=None, envvar="GPUFLEET_MIN_FREE_SPACE",
                     help="stop writing (pushes get 503, agents spool) when the data disk has less free: "
                          "e.g. 500MiB, 2GiB, 5%  [default: 1GiB or 5%, whichever is smaller]"),
        click.option("--show-command-lines", is_flag=True, envvar="GPUFLEET_SHOW_COMMAND_LINES",
                     help="show processes' command lines to every viewer (default: admins only)"),
        click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), envvar="GPUFLEET_TLS_CERT",
                     help="serve HTTPS with this PEM certificate (chain); needs --tls-key"),
        click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), envvar="GPUFLEET_TLS_KEY",
                     help="the certificate's PEM private key"),
        click.option("--max-sample-age", default="7d", show_default=True,
                     help="refuse pushed samples older than this (an agent's full spool at the default interval)"),
        click.option("--max-clock-ahead", default="5m", show_default=True,
                     help="refuse pushed samples this far ahead of the hub's clock (a node's clock gone wrong)"),
        click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
                     help="also answer requests for this host name (repeatable; default: the listen address, "
                          "localhost and this machine's names); others get 421, against DNS rebinding"),
        click.option("--anonymous-read", is_flag=True, envvar="GPUFLEET_ANONYMOUS_READ",
                     help="let anyone view (as a viewer) without logging in: only for a trusted lab network"),
        click.option("--price-gpu-hour", type=click.FloatRange(min=0), default=None, envvar="GPUFLEET_PRICE_GPU_HOUR",
                     help="price of one GPU-hour in use: reports get a cost column (docs/accounting.md)"),
        click.option("--price-kwh", type=click.FloatRange(min=0), default=None, envvar="GPUFLEET_PRICE_KWH",
                     help="price of one kWh of GPU energy, added to the cost column"),
        click.option("--usage-visibility", type=click.Choice(["all", "own"]), default="all", show_default=True,
                     envvar="GPUFLEET_USAGE_VISIBILITY",
                     help="who reads usage reports and jobs: all (every reader sees everyone's) or own "
                          "(admins see all, others only their own)"),
        click.option("--compat", type=click.Choice(HUB_COMPAT), multiple=True, envvar="GPUFLEET_HUB_COMPAT",
                     help="also answer /metrics with another exporter's names for what only the hub keeps: "
                          "ds01 (ds01_events_24h_total); repeatable"),
        click.option("--log-level", default="info", envvar="GPUFLEET_LOG_LEVEL",
                     type=click.Choice(["debug", "info", "warning", "error"])),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _hub_setup(kw: dict[str, Any]) -> tuple[Hub, socket.socket]:
    from .config import parse_listen
    from .hub.run import bind, check_options, open_hub
    from .hub.service import HubOptions

    _setup_logging(kw["log_level"])
    try:
        host, port = parse_listen(kw["listen"])
    except ValueError as e:
        raise UserError(f"--listen: {e}") from None
    if kw["public_url"] is not None:
        kw["public_url"] = _check_public_url(kw["public_url"])
    for flag in ("targets", "rules", "notify"):
        if kw[flag] is not None and not kw[flag].exists():
            raise UserError(f"--{flag}: file {kw[flag]} does not exist")
    if kw["groups_file"] is not None:
        from .allocation.groups import GroupsError, load

        try:
            load(kw["groups_file"])
        except GroupsError as e:
            raise UserError(f"--groups-file: {e}") from None
    from .hub.diskspace import Floor, parse_floor

    try:
        floor = Floor() if kw["min_free_space"] is None else parse_floor(kw["min_free_space"])
    except ValueError as e:
        raise UserError(f"--min-free-space: {e}") from None
    opts = HubOptions(
        min_free_space=floor,
        max_sample_age=_duration(kw, "max_sample_age"), max_clock_ahead=_duration(kw, "max_clock_ahead"),
        data=kw["data"], targets=kw["targets"], remote_write=kw["remote_write"], history=kw["history"],
        rules=kw["rules"], notify=kw["notify"], show_command_lines=kw["show_command_lines"],
        price_gpu_hour=kw["price_gpu_hour"], price_kwh=kw["price_kwh"], usage_visibility=kw["usage_visibility"],
        down_after=_duration(kw, "down_after"), groups_file=kw["groups_file"], compat=tuple(kw["compat"]),
        retention={"raw": _duration(kw, "retention_raw"), "1m": _duration(kw, "retention_1m"),
                   "1h": _duration(kw, "retention_1h")},
    )
    from .tls import server_tls

    tls = server_tls(kw["tls_cert"], kw["tls_key"])  # a bad file is one line, before anything listens
    if tls is not None:
        opts.tls_cert, opts.tls_key = tls.cert, tls.key
    check_options(opts)
    sock = bind(host, port)
    try:
        hub = open_hub(opts)
    except BaseException:
        sock.close()
        raise
    return hub, sock


def _check_public_url(raw: str) -> str:
    from urllib.parse import urlsplit

    try:
        p = urlsplit(raw.strip())
        p.port  # noqa: B018  (raises on a bad port)
    except ValueError as e:
        raise UserError(f"--public-url: {raw!r} is not a URL: {e}") from None
    if p.scheme not in ("http", "https") or not p.hostname or p.query or p.fragment or p.username:
        raise UserError(f"--public-url: {raw!r} must be http(s)://HOST[:PORT][/PATH], e.g. https://gpus.example.org")
    from .netaddr import is_wildcard

    if is_wildcard(p.hostname):
        raise UserError(f"--public-url: {p.hostname} is not an address others can reach: give this machine's "
                        "name or address")
    return raw.strip().rstrip("/")


def _access(kw: dict[str, Any]) -> AccessOptions:
    from urllib.parse import urlsplit

    from .config import parse_listen
    from .hub.auth.options import AccessOptions

    allowed = list(kw["allowed_hosts"])
    if kw.get("public_url"):
        allowed.append(urlsplit(kw["public_url"]).hostname or "")  # requests through it name it as Host
    return AccessOptions(anonymous_read=kw["anonymous_read"], allowed_hosts=allowed,
                         listen_host=parse_listen(kw["listen"])[0])


def _reachable_url(kw: dict[str, Any], url: str) -> tuple[str, str]:
    """(the URL to show, a note or "") for the hub serving at `url` (its bound socket)."""
    from urllib.parse import urlsplit

    from .netaddr import host_port, is_loopback, is_wildcard, reachable_host

    if kw.get("public_url"):
        return kw["public_url"], ""
    p = urlsplit(url)
    host, port = p.hostname or "", p.port or 0
    if is_wildcard(host):
        return f"{p.scheme}://{host_port(reachable_host(host), port)}", ""
    if is_loopback(host):
        return url, (f"(this hub listens on {host} only: agents on other machines need `--listen "
                     f"0.0.0.0:{port}` here, or a proxy and --public-url)")
    return url, ""


def _announce(hub: Hub, what: str, kw: dict[str, Any],
              login: Callable[[str], None] | None = None) -> Callable[[str], None]:
    def announce(bound: str) -> None:
        url, note = _reachable_url(kw, bound)
        click.echo(f"gpufleet {what} {__version__}: web UI and API at {url}/  (data in {hub.opts.data})")
        if login is not None:
            login(url)
        token = hub.first_token()
        if token:
            click.echo("Agents join with this token (shown once; more with `gpufleet token create`). Put it in a")
            click.echo("file of mode 0600 (FILE) on each node and run:")
            click.echo(f"  gpufleet agent --hub {url} --token-file FILE --listen 0.0.0.0:9401")
            if note:
                click.echo(f"  {note}")
            click.echo(f"  {token}")
        elif note:
            click.echo(note)
    return announce


@cli.command()
@_hub_options
def hub(**kw: Any) -> None:
    """Run the hub: registry, ingest, history, API and web UI."""
    from .hub.run import serve

    from .hub.auth.local import no_account_hint

    h, sock = _hub_setup(kw)
    access = _access(kw)

    def login(url: str) -> None:
        hint = no_account_hint(h.opts.data, access.anonymous_read)
        if hint:
            click.echo(hint)

    serve(h, sock, _announce(h, "hub", kw, login), access=access)


@cli.command()
@_hub_options
@click.option("--simulate", "simulate", type=int, default=None, metavar="N",
              help="add N simulated nodes of mixed GPU profiles (the demo)")
@click.option("--simulate-if-no-gpu", "simulate_if_no_gpu", type=int, default=None, metavar="N",
              help="add N simulated nodes only when this machine has no accelerator (what `make up` does)")
@click.option("--no-agent", is_flag=True, help="do not run an agent for this machine")
@click.option("--interval", default=5.0, show_default=True, type=float, help="collection interval, seconds")
def up(simulate: int | None, simulate_if_no_gpu: int | None, no_agent: bool, interval: float, **kw: Any) -> None:
    """Hub + an agent for this machine in one process: the embedded default."""
    from .hub.run import serve
    from .up import start_local_feeds

    if simulate is not None and not 1 <= simulate <= 5000:
        raise UserError("--simulate takes a number of nodes from 1 to 5000")
    if not 0.5 <= interval <= 3600:
        raise UserError("--interval must be between 0.5 and 3600 seconds")
    h, sock = _hub_setup(kw)
    try:
        feeds, note = start_local_feeds(h, agent=not no_agent, simulate=simulate, interval=interval,
                                        simulate_if_no_gpu=simulate_if_no_gpu)
    except BaseException:
        sock.close()
        h.close()
        raise
    from .hub.auth.local import local_admin_link

    def login(url: str) -> None:
        click.echo(f"Log in (a one-time link, valid 10 minutes): {url}{local_admin_link(h.opts.data)}")

    announce = _announce(h, "up", kw, login)

    def _say(url: str) -> None:
        if note:
            click.echo(note)
        announce(url)

    serve(h, sock, _say, feeds.stop, access=_access(kw))


@cli.group()
def token() -> None:
    """Join tokens that let agents register with the hub."""


def _state(data: Path, *, new: bool = False) -> Any:
    """The hub's state in `data`; with `new`, an empty or missing directory becomes one."""
    from .hub.datadir import STATE_FILE, is_hub_data_dir
    from .hub.state import HubState

    if not is_hub_data_dir(data):
        if not new:
            raise UserError(f"no hub data in {data}: pass the hub's --data directory (start the hub once "
                            "first, or add --new to prepare a directory for a hub not started yet)")
        if data.exists() and (not data.is_dir() or any(data.iterdir())):
            raise UserError(f"--new: {data} is not empty and holds no hub data: pick a new or empty directory")
        from .hub.datadir import make_private_dir

        make_private_dir(data)
    return HubState(data / STATE_FILE)


@token.command("create")
@click.option("--data", default="gpufleet-data", show_default=True, envvar="GPUFLEET_DATA",
              type=click.Path(file_okay=False, path_type=Path), help="the hub's data directory")
@click.option("--note", default="", help="what the token is for")
@click.option("--new", is_flag=True, help="DATA is a new (or empty) directory for a hub not started yet")
@click.option("--uses", type=int, default=None, metavar="N",
              help="registrations it allows (default: any number until revoked)")
@click.option("--expires", default=None, metavar="DURATION",
              help="stop accepting it after this long, e.g. 30d or 12h (default: never)")
@click.option("--from-file", "from_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="accept the join token in FILE (made on another hub) instead of a new one: "
                                   "agents join several hubs with one token (docs/scale.md)")
def token_create(data: Path, note: str, new: bool, uses: int | None, expires: str | None,
                 from_file: Path | None) -> None:
    """Print a new join token (the last word of the output)."""
    import time

    value = None
    if from_file is not None:
        from .config import read_token_file

        try:
            value = read_token_file(from_file)
        except UserError as e:
            raise UserError(str(e).replace("--token-file", "--from-file", 1)) from None
    if uses is not None and uses < 1:
        raise UserError("--uses must be at least 1 (or left out for a token without a use limit)")
    until = None
    if expires is not None:
        until = time.time() + _duration({"expires": expires}, "expires")
    st = _state(data, new=new)
    try:
        t = st.create_token(note, uses=uses, expires=until, value=value)
    except ValueError as e:
        raise UserError(f"--from-file {from_file}: {e}") from None
    finally:
        st.close()
    if value is not None:  # the operator has the secret already: not echoed into a terminal log
        from .hub.state import PREFIX_LEN

        click.echo(f"join token {t[:PREFIX_LEN]}... from {from_file} now accepted by this hub")
        return
    click.echo(f"new join token: {t}")


@token.command("list")
@click.option("--data", default="gpufleet-data", show_default=True, envvar="GPUFLEET_DATA",
              type=click.Path(file_okay=False, path_type=Path))
def token_list(data: Path) -> None:
    """List join tokens (their first characters only)."""
    import datetime as dt

    import time

    def when(ts: object) -> str:
        return dt.datetime.fromtimestamp(float(ts)).isoformat(timespec="seconds")  # type: ignore[arg-type]

    st = _state(data)
    try:
        now = time.time()
        for t in st.tokens():
            expires, left = t["expires"], t["uses_left"]
            if t["revoked"]:
                state = "revoked"
            elif expires is not None and float(expires) <= now:
                state = "expired"
            elif left is not None and int(left) <= 0:
                state = "used-up"
            else:
                state = "active"
            uses = f"uses {t['used']}" + ("" if left is None else f"/{int(t['used']) + int(left)}")
            until = f"  expires {when(expires)}" if expires is not None else ""
            click.echo(f"{t['prefix']}...  {state:8} {when(t['created'])}  {uses}{until}  {t['note']}".rstrip())
    finally:
        st.close()


@token.command("revoke")
@click.argument("token_or_prefix")
@click.option("--data", default="gpufleet-data", show_default=True, envvar="GPUFLEET_DATA",
              type=click.Path(file_okay=False, path_type=Path))
def token_revoke(token_or_prefix: str, data: Path) -> None:
    """Revoke a join token (nodes that already joined keep their own credentials)."""
    st = _state(data)
    try:
        n = st.revoke_token(token_or_prefix)
    finally:
        st.close()
    if not n:
        raise UserError(f"no active token matches {token_or_prefix!r}: see `gpufleet token list`")
    click.echo(f"revoked {n} token(s)")


@cli.group()
def tls() -> None:
    """TLS certificates for the hub and agents."""


@tls.command("selfsigned")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="directory to write ca.pem, ca-key.pem, server.pem and server-key.pem to")
@click.option("--host", "hosts", multiple=True, metavar="NAME",
              help="a DNS name or IP the server is reached at (repeat; default: this host's name, "
                   "localhost, 127.0.0.1, ::1)")
def tls_selfsigned(out: Path, hosts: tuple[str, ...]) -> None:
    """Make a private CA and a server certificate it signed (keys mode 0600)."""
    from .tls import selfsigned

    paths = selfsigned(out, list(hosts))
    click.echo(f"wrote {paths['ca']} (give it to agents: --ca), {paths['cert']} and {paths['key']} "
               f"(--tls-cert / --tls-key), {paths['ca_key']} (keep it offline)")


@cli.group()
def node() -> None:
    """Registered nodes: list, revoke a node's credential, forget a node."""


_DATA_OPTION = click.option("--data", default="gpufleet-data", show_default=True, envvar="GPUFLEET_DATA",
                            type=click.Path(file_okay=False, path_type=Path), help="the hub's data directory")


@node.command("list")
@_DATA_OPTION
def node_list(data: Path) -> None:
    """Every node the hub knows: name, how it reports (push/pull), registered or revoked."""
    from .hub.sd import sd_problem

    st = _state(data)
    try:
        for rec in st.nodes():
            state = "revoked" if rec.revoked is not None else rec.status
            problem = sd_problem(rec)
            click.echo(f"{rec.name}  {rec.source}  {state}  {rec.agent_url or '-'}"
                       + (f"  (not in service discovery: {problem})" if problem else ""))
    finally:
        st.close()


def _change_node(data: Path, name: str, change: str) -> None:
    """Apply HubState's `change` (revoke_node / forget_node) to NAME; a name not known is one line."""
    st = _state(data)
    try:
        found = getattr(st, change)(name)
    finally:
        st.close()
    if not found:
        raise UserError(f"no node named {name!r}: see `gpufleet node list --data {data}`")


@node.command("revoke")
@click.argument("name")
@_DATA_OPTION
def node_revoke(name: str, data: Path) -> None:
    """Stop NAME's credential at once; its name stays taken until `node forget`."""
    _change_node(data, name, "revoke_node")
    click.echo(f"revoked node {name}: its agent is refused from now on; "
               f"`gpufleet node forget {name}` lets a new agent join under this name")


@node.command("forget")
@click.argument("name")
@_DATA_OPTION
def node_forget(name: str, data: Path) -> None:
    """Remove NAME (registration, credential, labels, latest snapshot); history stays in the store."""
    _change_node(data, name, "forget_node")
    click.echo(f"forgot node {name}: an agent with a join token may now register this name")


@cli.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="file_sd JSON file to write (atomically)")
@click.option("--data", default="gpufleet-data", show_default=True, envvar="GPUFLEET_DATA",
              type=click.Path(file_okay=False, path_type=Path), help="the hub's data directory")
def sd(out: Path, data: Path) -> None:
    """Write Prometheus file_sd targets for every registered agent."""
    import json
    import os
    import tempfile

    st = _state(data)
    try:
        from .hub.sd import sd_groups, sd_problem

        rows = st.nodes()
        groups = sd_groups(rows)
    finally:
        st.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".sd-")
    with os.fdopen(fd, "w") as f:
        json.dump(groups, f, indent=2)
    os.replace(tmp, out)
    click.echo(f"wrote {len(groups)} target(s) to {out}")
    for rec in rows:
        problem = sd_problem(rec)
        if problem and rec.revoked is None:
            click.echo(f"left out: {problem}", err=True)


@cli.command()
@click.argument("url", required=False)
@click.option("--hub", "hub_url", metavar="URL", help="read the whole fleet from this hub")
@click.option("--agent", "agent_url", metavar="URL", help="read one node from its agent")
@click.option("--api-key", envvar="GPUFLEET_API_KEY", metavar="KEY", help="hub API key (or GPUFLEET_API_KEY)")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(0.2, 3600), help="seconds")
@click.option("--once", is_flag=True, help="print once and exit (for scripts; see also `gpufleet ls`)")
def top(url: str | None, hub_url: str | None, agent_url: str | None, api_key: str | None,
        interval: float, once: bool) -> None:
    """The fleet in the terminal, live: every node and GPU, and who is on it.

    URL (or --hub/--agent; default http://127.0.0.1:8080) is a hub or an agent. Keys: ? for help."""
    from .tui.cli import run_top

    run_top(url, hub_url, agent_url, api_key, interval, once)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="gpufleet", standalone_mode=False)
    except UserError as e:
        click.echo(f"gpufleet: error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.UsageError as e:  # click's own three lines become one, like every other error
        where = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
        click.echo(f"gpufleet: error: {e.format_message()}{where}", err=True)
        sys.exit(2)
    except click.ClickException as e:
        click.echo(f"gpufleet: error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except ModuleNotFoundError as e:  # a hub-side command on an agent-only install: say what to install
        from .missing import hint

        click.echo(f"gpufleet: error: {hint(_command_name(argv), e)}", err=True)
        sys.exit(2)


def _command_name(argv: list[str] | None) -> str:
    """The subcommand given (first word that is not an option), for the one-line hints."""
    args = sys.argv[1:] if argv is None else argv
    return next((a for a in args if not a.startswith("-")), "")


if __name__ == "__main__":
    main()

"""The `gpufleet` command. Errors a user can fix are one line on stderr and exit 2."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .config import AGENT_OPTIONS, load_agent_config
from .errors import UserError


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    if config_file is None and os.environ.get("GPUFLEET_CONFIG"):
        config_file = Path(os.environ["GPUFLEET_CONFIG"])
    cfg = load_agent_config(raw, os.environ, config_file)
    _setup_logging(cfg.log_level)
    service = AgentService(cfg)
    service.run()


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="gpufleet", standalone_mode=False)
    except UserError as e:
        click.echo(f"gpufleet: error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

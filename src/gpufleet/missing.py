"""What to say when a command needs a package the install lacks (`pip install gpufleet` is the agent alone).

Hub-side commands import their libraries (fastapi, uvicorn, numpy, textual, ...) only when they run,
so on an agent-only install the first such import fails with ModuleNotFoundError. That is not a
bug to show as a traceback: it is one line naming the extra to install, and exit 2.
"""

from __future__ import annotations

import click

# Terminal clients (`top` extra); every other command but `agent` is hub-side (`hub` extra).
TOP_COMMANDS = frozenset({"top", "ls", "free"})


def extra_for(command: str) -> str:
    return "top" if command in TOP_COMMANDS else "hub"


def is_ours(e: ModuleNotFoundError) -> bool:
    """A module of gpufleet itself missing is a broken install, not a missing extra."""
    return (e.name or "").partition(".")[0] == "gpufleet"


def hint(command: str, e: ModuleNotFoundError) -> str:
    """The one line: which command, which module is missing, and the pip command that adds it."""
    what = f"`gpufleet {command}`" if command else "this command"
    module = (e.name or "?").partition(".")[0]
    if command == "agent" or is_ours(e):  # the agent's own dependencies are always installed
        return (f"{what} cannot import {module}: the gpufleet install is incomplete; "
                "reinstall it with `pip install --force-reinstall gpufleet`")
    extra = extra_for(command)
    return f"{what} needs gpufleet's {extra} extra ({module} is not installed): pip install 'gpufleet[{extra}]'"


def stub_command(name: str, e: ModuleNotFoundError) -> click.Command:
    """Stands in for a lazily imported command whose module cannot load, so `gpufleet --help`
    still lists it, and running it (any arguments) ends in cli.main's one line."""

    def run() -> None:
        raise e

    return click.Command(name, callback=run, help=f"(not installed) {hint(name, e)}", add_help_option=False,
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})

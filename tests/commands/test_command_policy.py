"""Allow-list patterns, whom commands run as, and the agent's command options."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gpufleet.agent.command_policy import allowed, compile_pattern, parse_patterns, resolve_user
from gpufleet.config import load_agent_config
from gpufleet.errors import UserError
from realparts import gpufleet


@pytest.mark.parametrize(("pattern", "argv", "ok"), [
    ("nvidia-smi", ["nvidia-smi"], True),
    ("nvidia-smi", ["nvidia-smi", "-L"], False),
    ("nvidia-smi -L", ["nvidia-smi", "-L"], True),
    ("nvidia-smi -L", ["nvidia-smi", "-q"], False),
    ("nvidia-smi *", ["nvidia-smi"], True),
    ("nvidia-smi *", ["nvidia-smi", "-q", "-d", "MEMORY"], True),
    ("nvidia-smi *", ["/usr/bin/nvidia-smi", "-L"], False),
    ("nvidia-smi *", ["nvidia-smi-evil"], False),
    ("systemctl status *", ["systemctl", "restart", "x"], False),
    ("dcgmi diag -r [123]", ["dcgmi", "diag", "-r", "2"], True),
    ("dcgmi diag -r [123]", ["dcgmi", "diag", "-r", "4"], False),
    ("echo *", ["echo", "a; rm -rf /"], True),  # no shell: just an argument to echo
    ("'echo' 'a b'", ["echo", "a b"], True),
    ("'echo' 'a b'", ["echo", "a", "b"], False),
    ("ls -l*", ["ls", "-la"], True),
    ("ls -l*", ["ls", "-la", "/"], False),
])
def test_patterns_match_word_by_word(pattern: str, argv: list[str], ok: bool) -> None:
    assert allowed(argv, [compile_pattern(pattern)]) is ok


def test_bad_patterns_are_errors() -> None:
    with pytest.raises(ValueError, match="not a command line"):
        compile_pattern("echo 'unclosed")
    with pytest.raises(ValueError, match="empty"):
        compile_pattern("   ")
    assert parse_patterns("nvidia-smi *\n\n systemctl status *\n") == ["nvidia-smi *", "systemctl status *"]
    assert allowed([], [compile_pattern("*")]) is False


def test_options_from_flags_env_and_file(tmp_path: Path) -> None:
    cfg = load_agent_config({"hub": "http://h:1", "allow_commands": ["echo *", "nvidia-smi *"]}, {})
    assert cfg.allow_commands == ["echo *", "nvidia-smi *"] and cfg.allow_root_commands is False
    env = {"GPUFLEET_HUB": "http://h:1", "GPUFLEET_ALLOW_COMMANDS": "echo *\nid -un",
           "GPUFLEET_ALLOW_ROOT_COMMANDS": "yes", "GPUFLEET_COMMAND_USER": "nobody"}
    cfg = load_agent_config({}, env)
    assert cfg.allow_commands == ["echo *", "id -un"] and cfg.allow_root_commands and cfg.command_user == "nobody"
    f = tmp_path / "agent.yaml"
    f.write_text("hub: http://h:1\nallow_commands:\n  - nvidia-smi *\nallow_root_commands: false\n")
    assert load_agent_config({}, {}, f).allow_commands == ["nvidia-smi *"]
    with pytest.raises(UserError, match="needs --hub"):
        load_agent_config({"allow_commands": ["echo *"]}, {})
    with pytest.raises(UserError, match="GPUFLEET_ALLOW_COMMANDS: allow-commands pattern"):
        load_agent_config({}, {"GPUFLEET_HUB": "http://h:1", "GPUFLEET_ALLOW_COMMANDS": "echo 'x"})


def test_whom_commands_run_as() -> None:
    with pytest.raises(UserError, match="no such user"):
        resolve_user("no-such-user-here", allow_root=False)
    if os.geteuid() != 0:  # an unprivileged agent runs commands as itself and cannot switch
        assert resolve_user(None, allow_root=False).uid == os.geteuid()
        with pytest.raises(UserError, match="cannot switch users"):
            resolve_user("nobody", allow_root=False)
        return
    with pytest.raises(UserError, match="--command-user USER"):
        resolve_user(None, allow_root=False)
    with pytest.raises(UserError, match="--allow-root-commands"):
        resolve_user("root", allow_root=False)
    u = resolve_user("nobody", allow_root=False)
    assert u.switch and u.name == "nobody"
    assert resolve_user(None, allow_root=True).uid == 0


def test_agent_process_refuses_a_command_user_it_cannot_use(tmp_path: Path) -> None:
    root = os.geteuid() == 0
    extra = [] if root else ["--command-user", "nobody"]
    out = subprocess.run(gpufleet("agent", "--simulate", "cpu-only", "--hub", "http://127.0.0.1:9", "--token", "t",
                                  "--spool", str(tmp_path), "--listen", "127.0.0.1:0", "--allow-commands", "echo *",
                                  *extra), capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    expected = "--allow-commands on an agent running as root" if root else "--command-user nobody: the agent runs as"
    assert out.stderr.strip().startswith(f"gpufleet: error: {expected}")

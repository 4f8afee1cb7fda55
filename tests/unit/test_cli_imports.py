"""The CLI loads only the command it runs (`console.cli.COMMANDS`): the commands that talk to
an engine never import numpy, DuckDB, Arrow, Polars or Textual, and `--help` still lists
every command."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from console.cli import COMMANDS, build_parser, modules_for
from console.commands.common import SHARED

HEAVY = ("numpy", "duckdb", "pyarrow", "polars", "textual")
ENGINE_COMMANDS = [["status"], ["whoami"], ["jobs", "--state", "queued"],
                   ["submit", "--gpus", "1", "--", "python", "train.py"], ["stop", "7"]]


def heavy_after(code: str, home: Path) -> list[str]:
    """The heavy packages in `sys.modules` once `code` ran in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETDECK_")}
    env["HOME"] = str(home)  # no user config: the embedded default
    probe = (f"{code}\nimport sys\nprint(__import__('json').dumps(sorted("
             f"m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout.splitlines()[-1]))


@pytest.mark.parametrize("argv", ENGINE_COMMANDS, ids=lambda a: a[0])
def test_parsing_an_engine_command_loads_nothing_heavy(argv: list[str], tmp_path: Path) -> None:
    code = ("from console.cli import build_parser\n"
            f"args = build_parser({argv!r}).parse_args({argv!r})\n"
            f"assert args.func.__module__ == 'console.commands.{COMMANDS[argv[0]]}', args")
    assert heavy_after(code, tmp_path) == []


def test_status_without_an_engine_loads_nothing_heavy(tmp_path: Path) -> None:
    # the whole command: config, the engine call refused (no socket), the one line, exit 3
    sock = tmp_path / "none.sock"
    code = ("from console.cli import main\n"
            f"assert main(['--engine', {str(sock)!r}, 'status']) == 3\n")
    assert heavy_after(code, tmp_path) == []


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        build_parser(["--help"]).parse_args(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert [c for c in COMMANDS if c not in text] == []


def test_the_table_names_each_module_s_commands() -> None:
    import importlib

    for module in dict.fromkeys(COMMANDS.values()):
        parser = argparse.ArgumentParser(parents=[SHARED], add_help=False)
        sub = parser.add_subparsers(dest="command")
        importlib.import_module(f"console.commands.{module}").register(sub)
        assert sorted(sub.choices) == sorted(c for c, m in COMMANDS.items() if m == module)


@pytest.mark.parametrize(("argv", "modules"), [
    (["status"], ["core"]),
    (["--store", "x.duckdb", "-v", "jobs", "--help"], ["jobs"]),
    (["--config=c.toml", "report", "chargeback"], ["fleet"]),
    ([], []),  # the console
    (["--demo"], []),
    (["-h", "status"], list(dict.fromkeys(COMMANDS.values()))),
    (["no-such-command"], list(dict.fromkeys(COMMANDS.values()))),
    (["--config"], list(dict.fromkeys(COMMANDS.values()))),  # the full parser says what is wrong
])
def test_a_command_line_loads_its_command_s_module(argv: list[str], modules: list[str]) -> None:
    assert modules_for(argv) == modules

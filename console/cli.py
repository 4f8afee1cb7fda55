"""The `fleetdeck` command."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from collectors.errors import FleetdeckError, InputError, clip
from console import __version__
from console.commands import common
from console.engine.client import RemoteError
from console.engine.protocol import ErrorCode


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: {clip(message, 400)} (see --help)\n")
        raise SystemExit(2)


# Each command and the module of console.commands that registers it, in `--help` order: a
# command imports only its own module (the reports, the simulator and the engine stay unloaded
# for `status`); `--help` and an unknown command load them all.
COMMANDS: dict[str, str] = {
    "config": "core", "db": "core", "serve": "core", "status": "core", "whoami": "core",
    "api": "core",
    "submit": "jobs", "jobs": "jobs", "stop": "jobs", "logs": "jobs", "explain": "jobs",
    "audit": "jobs",
    "collect": "fleet", "nodes": "fleet", "report": "fleet", "simulate": "fleet",
    "cordon": "policies", "uncordon": "policies", "snooze": "policies", "policies": "policies",
    "notify": "notify", "events": "notify",
}


class NotParsed(Exception):
    """The first look at the command line found it wrong: the full parser says how."""


class FirstLook(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise NotParsed(message)


def add_top_options(parser: argparse.ArgumentParser) -> None:
    """The options before the command."""
    parser.add_argument("--config", metavar="PATH",
                        help="config file (default: $FLEETDECK_CONFIG, then "
                             "~/.config/fleetdeck/config.toml, else the embedded default)")
    parser.add_argument("--store", metavar="PATH",
                        help="DuckDB store path (overrides [store] path)")
    parser.add_argument("--engine", metavar="ADDRESS", help=common.ENGINE_HELP)
    parser.add_argument("--readonly", action="store_true",
                        help="console: start a session that cannot change anything")
    parser.add_argument("--demo", action="store_true",
                        help="open the console (or `serve`) on a simulated 48-node fleet with "
                             "live work and six months of history, in a temporary store")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")


def modules_for(argv: Sequence[str]) -> list[str]:
    """The command modules a command line needs: its command's; none for the console; every
    one for `--help` before the command, an unknown command or a line the first look cannot
    read (the full parser lists the commands or says what is wrong)."""
    everything = list(dict.fromkeys(COMMANDS.values()))
    first = FirstLook(add_help=False)
    add_top_options(first)
    first.add_argument("rest", nargs=argparse.REMAINDER)
    try:
        ns, before = first.parse_known_args(argv)
    except NotParsed:
        return everything
    if any(a in ("-h", "--help") for a in before):
        return everything
    if not ns.rest:
        return []
    module = COMMANDS.get(ns.rest[0])
    return [module] if module is not None else everything


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv` (default: every command, as `fleetdeck --help` lists them)."""
    parser = Parser(
        prog="fleetdeck",
        description="Keyboard-driven operations console for GPU/CPU fleets. "
                    "With no command, opens the console.",
    )
    parser.add_argument("--version", action="version", version=f"fleetdeck {__version__}")
    add_top_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    names = list(dict.fromkeys(COMMANDS.values())) if argv is None else modules_for(argv)
    for name in names:
        importlib.import_module(f"console.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    line = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(line).parse_args(line)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    tunnel = None
    try:
        tunnel = common.open_engine_address(args)
        if args.demo:
            from console import demo

            if args.command is None:
                return demo.run_demo(args)
            if args.command == "serve":
                return demo.serve_demo(args)
            args.config = str(demo.running_config_or_exit())
            args.store = None
        if args.command is None:
            from console.app import run_console

            return run_console(args)
        return int(args.func(args))
    except InputError as e:
        _say(str(e))
        return e.exit_code
    except RemoteError as e:
        # the engine's words; a bad_request already names the source and key
        prefix = "" if e.code is ErrorCode.BAD_REQUEST else "fleetdeck: "
        _say(f"{prefix}{e}")
        return e.exit_code
    except FleetdeckError as e:
        _say(f"fleetdeck: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        if tunnel is not None:
            tunnel.close()


def _say(message: str) -> None:
    """An error as exactly one line on stderr (control characters escaped)."""
    sys.stderr.write(clip(message, 2000) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())

"""Shared CLI plumbing: output formats, engine-or-store access, one-line errors."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from collectors.errors import InputError
from collectors.formatting import grouped, number_text
from collectors.validate import check_store_path, user_path
from console.config import Loaded, load
from console.engine.api.methods import BY_REQUEST, conforms
from console.engine.api.replies import WhoAmI
from console.engine.api.requests import Request
from console.engine.client import EngineClient, NoEngine
from console.engine_address import ENGINE_ENV, parse_engine_address

if TYPE_CHECKING:  # the store (DuckDB, Arrow) and SSH load only where a command needs them
    from collectors.store import Store
    from console.remote import SshEngineTunnel

T = TypeVar("T")
R = TypeVar("R")
ENGINE_HELP = ("the engine to talk to: ssh://[user@]host[:port][/socket/path] (an engine on "
               "another machine, over SSH) or a socket path (default: $FLEETDECK_ENGINE, "
               "else [engine] socket)")


def shared_options() -> argparse.ArgumentParser:
    """--config and --store accepted after the subcommand too."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                   help="config file (see `fleetdeck --help`)")
    p.add_argument("--store", metavar="PATH", default=argparse.SUPPRESS,
                   help="DuckDB store path (overrides [store] path)")
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="log to stderr")
    p.add_argument("--engine", metavar="ADDRESS", default=argparse.SUPPRESS, help=ENGINE_HELP)
    return p


SHARED = shared_options()


def subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
               help: str, **kw: Any) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help, parents=[SHARED], **kw)


def add_format(parser: argparse.ArgumentParser, *choices: str) -> None:
    opts = choices or ("table", "json")
    parser.add_argument("--format", choices=opts, default=opts[0],
                        help=f"output format ({', '.join(opts)}; default {opts[0]})")


def loaded_config(args: argparse.Namespace) -> Loaded:
    store = getattr(args, "store", None)
    if store is not None:
        check_store_path(user_path(store, source="--store"), flag="--store")
    flags = {"store.path": ("--store", store),
             "engine.socket": ("--engine", getattr(args, "engine_socket", None))}
    return load(getattr(args, "config", None), flags=flags)


def open_engine_address(args: argparse.Namespace) -> SshEngineTunnel | None:
    """Apply `--engine` (else $FLEETDECK_ENGINE): a socket path replaces `[engine] socket`;
    an ssh:// address opens a tunnel whose local end does. The caller closes the tunnel."""
    flag = getattr(args, "engine", None)
    value = flag if flag is not None else os.environ.get(ENGINE_ENV)
    if not value:
        return None
    address = parse_engine_address(value, "--engine" if flag is not None else ENGINE_ENV)
    if getattr(args, "command", None) == "serve":
        raise InputError("--engine", None, "a command that talks to an engine (serve listens "
                         "on [engine] socket)", got=value)
    if not address.is_ssh:
        args.engine_socket = address.socket
        return None
    from console.remote import SshEngineTunnel

    tunnel = SshEngineTunnel(address, loaded_config(args).config.ssh)
    args.engine_socket = tunnel.open()
    return tunnel


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=_json_default, sort_keys=False)
    sys.stdout.write("\n")


def _json_default(o: object) -> Any:
    iso = getattr(o, "isoformat", None)
    if callable(iso):
        return iso()
    return str(o)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
    if not rows:
        print("(none)")
        return
    cols = list(columns or rows[0].keys())
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}"
    if isinstance(v, list | tuple):
        return ",".join(str(x) for x in v) or "-"
    iso = getattr(v, "isoformat", None)
    if callable(iso):
        return str(iso(sep=" ", timespec="seconds"))
    return str(v)


def run_async(coro: Awaitable[T]) -> T:
    return asyncio.run(_wrap(coro))


async def _wrap(coro: Awaitable[T]) -> T:
    return await coro


async def call_engine(loaded: Loaded, request: Request[R]) -> R:
    async with await EngineClient.connect(loaded.config.socket_path) as client:
        return await client.call(request)


def ask_engine(loaded: Loaded, request: Request[R]) -> R:
    """A typed call: the method's request Struct in, its reply type out."""
    return run_async(call_engine(loaded, request))


def engine_or_store(loaded: Loaded, request: Request[R], local: Callable[[Store], Any]) -> R:
    """Ask the running engine; with none running, open the store read-only and answer the
    same reply type from `local`'s plain data."""
    try:
        return ask_engine(loaded, request)
    except NoEngine:
        import duckdb

        from collectors.store import Store
        from collectors.store.db import StoreError, first_line

        with Store.open(loaded.config.store.path, read_only=True) as store:
            try:
                data = local(store)
            except duckdb.Error as e:  # a corrupt store: one line, exit 1
                raise StoreError(f"{store.path}: cannot read the store: {first_line(e)}"
                                 ) from None
        reply: Any = BY_REQUEST[type(request)].reply
        return data if conforms(data, reply) else msgspec.convert(data, reply, strict=False)


def plain(reply: Any) -> Any:
    """A reply as plain data for `--format json` and the table printer (times stay
    datetimes: the printers format them)."""
    return msgspec.to_builtins(reply, builtin_types=(datetime,))


def me_line(me: WhoAmI) -> str:
    """`you: 2 of 4 GPUs · 12.40 USD today` from a `whoami` reply (CLI and console header)."""
    used = number_text(float(me.gpus_in_use or 0.0))
    quota = me.gpu_quota
    gpus = f"{used} of {number_text(float(quota))} GPUs" if quota is not None else f"{used} GPUs"
    spend = grouped(float(me.spend_today or 0.0))
    return f"you: {gpus} · {spend} {me.currency or ''}".rstrip() + " today"

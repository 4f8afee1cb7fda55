"""config check, db info, serve, status."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import Any

from console.commands.common import (
    add_format,
    ask_engine,
    engine_or_store,
    loaded_config,
    me_line,
    plain,
    print_json,
    print_table,
    subcommand,
)
from console.config import Config
from console.engine.api.requests import DbInfoQuery, ReloadConfig, StatusQuery, WhoAmIQuery
from console.engine.client import NoEngine


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subcommand(sub, "config", "inspect the configuration")
    csub = p.add_subparsers(dest="config_cmd", metavar="COMMAND", required=True,
                            parser_class=type(p))
    chk = subcommand(csub, "check", "validate the config and show where each value came from")
    add_format(chk)
    chk.set_defaults(func=config_check)
    rel = subcommand(csub, "reload", "make the running engine re-read its config file "
                     "(policies, quotas, scheduler, rates apply at once; audited)")
    add_format(rel)
    rel.set_defaults(func=config_reload)

    p = subcommand(sub, "db", "inspect the store")
    dsub = p.add_subparsers(dest="db_cmd", metavar="COMMAND", required=True,
                            parser_class=type(p))
    info = subcommand(dsub, "info", "store path, schema version and row counts")
    add_format(info)
    info.set_defaults(func=db_info_cmd)

    p = subcommand(sub, "serve", "run the engine without a UI (for tmux or systemd)")
    p.set_defaults(func=serve_cmd)

    p = subcommand(sub, "status", "ask the running engine how it is")
    add_format(p)
    p.set_defaults(func=status_cmd)

    p = subcommand(sub, "whoami", "who the engine takes you for: user, role, GPUs your jobs "
                   "hold of your quota, spend today")
    add_format(p)
    p.set_defaults(func=whoami_cmd)

    p = subcommand(sub, "api", "the engine's methods: parameters, replies, least role "
                   "(docs/PROTOCOL.md is this, as markdown)")
    add_format(p, "md", "json")
    p.set_defaults(func=api_cmd)


def config_check(args: argparse.Namespace) -> int:
    loaded = loaded_config(args)
    values = _flatten(loaded.config)
    rows = []
    for key, value in values:
        generic = key.split("[")[0] + ("[]." + key.split("].", 1)[1] if "]." in key else "")
        origin = loaded.origins.get(key) or loaded.origins.get(generic, "default")
        if loaded.embedded and key.startswith("nodes["):
            origin = "embedded default"
        rows.append({"key": key, "value": value, "from": origin})
    if args.format == "json":
        print_json({"source": loaded.source, "valid": True, "embedded": loaded.embedded,
                    "values": rows})
        return 0
    print(f"config: {loaded.source} (valid)")
    print_table([{**r, "value": _show(r["value"])} for r in rows], ["key", "value", "from"])
    return 0


def config_reload(args: argparse.Namespace) -> int:
    loaded = loaded_config(args)

    result = ask_engine(loaded, ReloadConfig())
    if args.format == "json":
        print_json(plain(result))
    else:
        print(f"config reloaded: {result.reason}")
    return 0


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(v):
            out.extend(_flatten(v, f"{key}."))
        elif isinstance(v, tuple) and v and dataclasses.is_dataclass(v[0]):
            for i, item in enumerate(v):
                out.extend(_flatten(item, f"{key}[{i}]."))
        else:
            out.append((key, str(v) if isinstance(v, Path) else v))
    return out


def _show(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={x}" for k, x in v.items()) or "{}"
    if isinstance(v, tuple | list | frozenset):
        return ", ".join(str(x) for x in v) or "[]"
    return str(v)


def db_info_cmd(args: argparse.Namespace) -> int:
    from console.engine.host import db_info

    loaded = loaded_config(args)
    info = engine_or_store(loaded, DbInfoQuery(), db_info)
    if args.format == "json":
        print_json(plain(info))
        return 0
    print(f"store:   {info.path}")
    print(f"schema:  version {info.schema_version}")
    print(f"size:    {info.size_bytes / 1e6:.1f} MB")
    print_table([{"table": t, "rows": n} for t, n in info.tables.items()])
    return 0


def serve_cmd(args: argparse.Namespace) -> int:
    from console.engine.host import serve  # the engine: DuckDB, the collectors, the scheduler

    loaded = loaded_config(args)
    return asyncio.run(serve(loaded))


def whoami_cmd(args: argparse.Namespace) -> int:
    me = ask_engine(loaded_config(args), WhoAmIQuery())
    if args.format == "json":
        print_json(plain(me))
        return 0
    print(f"{me.user} ({me.role}): {me_line(me)}")
    return 0


def status_cmd(args: argparse.Namespace) -> int:
    loaded = loaded_config(args)

    try:
        reply = ask_engine(loaded, StatusQuery())
    except NoEngine as e:
        if args.format == "json":
            print_json({"running": False, "message": str(e)})
        else:
            print(str(e))
        return 3
    parts = ("notify", "metrics")  # only where the engine runs them
    info = {k: v for k, v in plain(reply).items() if v is not None or k not in parts}
    if args.format == "json":
        print_json({"running": True, **info})
        return 0
    for k, v in info.items():
        if k == "faults":  # "store: writes failing since ...", one line each
            for line in v or ["none"]:
                print(f"{'fault:':<20} {line}")
            continue
        print(f"{k + ':':<20} {v}")
    return 0


def api_cmd(args: argparse.Namespace) -> int:
    from console.engine.api.doc import table_json, table_markdown

    if args.format == "json":
        print_json(table_json())
    else:
        sys.stdout.write(table_markdown())
    return 0


__all__ = ["Config", "register"]

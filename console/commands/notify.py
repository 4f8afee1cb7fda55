"""notify test/status and events: thin clients of the engine's notify service."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from collectors.errors import InputError
from collectors.store import Store, outbox
from collectors.validate import arg_int
from console.commands.common import (
    add_format,
    ask_engine,
    engine_or_store,
    loaded_config,
    plain,
    print_json,
    print_table,
    run_async,
    subcommand,
)
from console.engine.api.requests import EventsQuery, NotifyStatusQuery, NotifyTestRequest
from console.engine.client import EngineClient, NoEngine


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subcommand(sub, "notify", "notification channels: send a test message, delivery status")
    nsub = p.add_subparsers(dest="notify_cmd", metavar="COMMAND", required=True,
                            parser_class=type(p))
    t = subcommand(nsub, "test", "send a test message through a channel")
    t.add_argument("channel", metavar="CHANNEL", help="a name from [[notify.channels]]")
    t.add_argument("--to", metavar="ADDRESS", help="email: where to (default: your email)")
    add_format(t)
    t.set_defaults(func=notify_test_cmd)
    s = subcommand(nsub, "status", "deliveries per channel and state, and the latest failures")
    add_format(s)
    s.set_defaults(func=notify_status_cmd)

    p = subcommand(sub, "events", "events as they happen (job.failed, idle.warned, ...)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    p.add_argument("--limit", type=arg_int(0, 1_000_000), default=50, metavar="N",
                   help="the newest N events first (default 50; 0: only new ones)")
    add_format(p, "text", "json")
    p.set_defaults(func=events_cmd)


def notify_test_cmd(args: argparse.Namespace) -> int:
    res = ask_engine(loaded_config(args), NotifyTestRequest(channel=args.channel,
                                                            to=args.to or ""))
    if args.format == "json":
        print_json(plain(res))
    else:
        print(f"test message sent through {res.channel} ({res.type}) to {res.to}")
    return 0


def notify_status_cmd(args: argparse.Namespace) -> int:
    loaded = loaded_config(args)

    def local(store: Any) -> dict[str, Any]:
        return {"deliveries": outbox.delivery_counts(store),
                "failures": outbox.failures(store, limit=20),
                "channels": [{"name": c.name, "type": c.type}
                             for c in loaded.config.notify.channels],
                "routed_until": outbox.routed_cursor(store), "in_flight": 0}

    res = plain(engine_or_store(loaded, NotifyStatusQuery(), local))
    if args.format == "json":
        print_json(res)
        return 0
    print("channels: " + (", ".join(f"{c['name']} ({c['type']})" for c in res["channels"])
                          or "none configured"))
    print("\ndeliveries:")
    print_table(res["deliveries"], ["channel", "state", "deliveries"])
    print("\nfailed (gave up after max_attempts):")
    print_table(res["failures"], ["event_id", "name", "ts", "channel", "address", "attempts",
                                  "last_error"])
    return 0


def format_event(e: dict[str, Any]) -> str:
    """One line per event for people: time, name, summary, why."""
    line = f"{e['ts']}  {e['name']:<16} {e['summary']}"
    return line + (f"  ({e['reason']})" if e.get("reason") else "")


def events_cmd(args: argparse.Namespace) -> int:
    loaded = loaded_config(args)
    if args.limit < 0:
        raise InputError("--limit", None, "a number of events >= 0", got=args.limit)

    async def stream(show: Callable[[dict[str, Any]], None]) -> None:
        async with await EngineClient.connect(loaded.config.socket_path) as c:
            async for e in c.stream(EventsQuery(follow=args.follow, limit=args.limit)):
                show(e)

    def show(e: dict[str, Any]) -> None:
        out = json.dumps(e, separators=(",", ":")) if args.format == "json" else format_event(e)
        sys.stdout.write(out + "\n")
        sys.stdout.flush()

    try:
        run_async(stream(show))
    except NoEngine:
        if args.follow:
            raise
        with Store.open(loaded.config.store.path, read_only=True) as store:
            for e in outbox.recent(store, limit=args.limit):
                show(e.to_json())
    except KeyboardInterrupt:
        pass
    return 0

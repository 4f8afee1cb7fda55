"""cordon, uncordon, snooze, policies: thin clients of the engine's policy service."""

from __future__ import annotations

import argparse
from typing import Any

import msgspec

from collectors.validate import arg_int, arg_number
from console.commands.common import (
    add_format,
    ask_engine,
    loaded_config,
    plain,
    print_json,
    print_table,
    subcommand,
)
from console.engine.api.requests import (
    CordonRequest,
    PoliciesQuery,
    SnoozeRequest,
    UncordonRequest,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subcommand(sub, "cordon", "stop new placements on a node (running jobs go on)")
    p.add_argument("node", metavar="NODE")
    p.add_argument("--reason", default="", help="recorded in the audit trail")
    add_format(p)
    p.set_defaults(func=cordon_cmd)

    p = subcommand(sub, "uncordon", "allow placements on a node again; also declares its "
                                    "GPUs healthy and lifts a health drain")
    p.add_argument("node", metavar="NODE")
    p.add_argument("--reason", default="", help="recorded in the audit trail")
    add_format(p)
    p.set_defaults(func=uncordon_cmd)

    p = subcommand(sub, "snooze", "exempt your job from idle stopping for a while")
    p.add_argument("job", type=arg_int(1, 2**62), metavar="JOB")
    p.add_argument("--hours", type=arg_number(0, 24 * 366, lo_open=True), required=True,
                   help="how long (may be fractional)")
    p.add_argument("--reason", required=True, help="why the job looks idle but is not")
    add_format(p)
    p.set_defaults(func=snooze_cmd)

    p = subcommand(sub, "policies", "idle warnings, burst nodes, cordoned and drained nodes")
    add_format(p)
    p.set_defaults(func=policies_cmd)


def cordon_cmd(args: argparse.Namespace) -> int:
    res = ask_engine(loaded_config(args), CordonRequest(node=args.node, reason=args.reason or ""))
    if args.format == "json":
        print_json(msgspec.to_builtins(res))
    else:
        print(f"node {res.node} cordoned: {res.reason}")
    return 0


def uncordon_cmd(args: argparse.Namespace) -> int:
    res = ask_engine(loaded_config(args),
                     UncordonRequest(node=args.node, reason=args.reason or ""))
    if args.format == "json":
        print_json(msgspec.to_builtins(res))
    else:
        gpus = res.recovered_gpus
        extra = f" (GPUs {','.join(map(str, gpus))} declared healthy)" if gpus else ""
        print(f"node {res.node} uncordoned{extra}")
    return 0


def snooze_cmd(args: argparse.Namespace) -> int:
    res = ask_engine(loaded_config(args),
                     SnoozeRequest(job=args.job, hours=args.hours, reason=args.reason or ""))
    if args.format == "json":
        print_json(msgspec.to_builtins(res))
    else:
        print(f"job {res.job} snoozed until {res.until}: {res.reason}")
    return 0


def policies_cmd(args: argparse.Namespace) -> int:
    res: dict[str, Any] = plain(ask_engine(loaded_config(args), PoliciesQuery()))
    if args.format == "json":
        print_json(res)
        return 0
    print("idle jobs:")
    print_table([{**r, **{k: v for k, v in r["evidence"].items()}} for r in res["idle"]],
                ["job", "name", "user", "node", "state", "dry_run", "window_s",
                 "mean_util_pct", "max_util_pct", "mem_held_bytes", "cpu_util_pct"])
    if res.get("idle_note"):
        print(f"\n{res['idle_note']}")
    if res.get("idle_unjudged"):
        print("\njobs the idle policy cannot judge:")
        print_table(res["idle_unjudged"], ["job", "reason"])
    if res.get("snoozed"):
        print("\nsnoozed jobs:")
        print_table(res["snoozed"], ["job", "user", "until", "reason"])
    print("\nburst nodes:")
    print_table(res["burst"], ["instance_id", "provider", "node", "state", "gpu_model",
                               "gpu_count", "price_per_hour", "cost", "launched_at"])
    print("\ncordoned nodes:")
    print_table(res["cordoned"], ["node", "reason"])
    if res.get("drained"):
        print("\ndrained nodes:")
        print_table(res["drained"], ["node", "gpus", "reason"])
    return 0

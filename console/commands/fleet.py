"""collect --once, nodes, nodes trust, report, simulate."""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path
from typing import Any

from collectors.errors import FleetdeckError, InputError
from collectors.fleet import collect_once
from collectors.health import format_view
from collectors.store import Store
from collectors.transport import SshOptions
from collectors.transport.hostkeys import (
    add_known_host,
    fetch_host_key,
    fingerprint,
    key_status,
)
from collectors.validate import arg_number
from console.commands.common import (
    add_format,
    engine_or_store,
    loaded_config,
    plain,
    print_json,
    print_table,
    run_async,
    subcommand,
)
from console.config import Config, NodeConfig
from console.engine.api.replies import ReportOutput
from console.engine.api.requests import NodesQuery, ReportRun, WhatifRequest
from console.engine.services import list_nodes
from console.engine.svc_jobs import class_book, membership, preemption_rules, quota_book
from console.engine.svc_reports import rendered, whatif_prices
from reports import command as report_command
from reports.sources import to_naive_utc
from scheduler.sim import command as sim_command
from scheduler.sim import whatif as sim_whatif
from scheduler.sim.quota_replay import QuotaScenario, run_quota_replay
from scheduler.sim.whatif import parse_change


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subcommand(sub, "collect", "collect telemetry from every node")
    p.add_argument("--once", action="store_true", required=True,
                   help="contact every node once and print the fleet (`serve` collects "
                        "continuously)")
    p.add_argument("--timeout", type=arg_number(0, 3600, lo_open=True), default=20.0, metavar="S",
                   help="seconds to wait for each node (default 20)")
    add_format(p)
    p.set_defaults(func=collect_cmd)

    p = subcommand(sub, "nodes", "list nodes, or trust a node's SSH host key")
    nsub = p.add_subparsers(dest="nodes_cmd", metavar="COMMAND", parser_class=type(p))
    add_format(p)
    p.set_defaults(func=nodes_cmd)
    t = subcommand(nsub, "trust", "show a node's host key and record it in known_hosts")
    t.add_argument("node", metavar="NODE")
    t.add_argument("--yes", action="store_true", help="record without asking")
    t.add_argument("--replace", action="store_true",
                   help="replace a recorded key that changed (only when the change is expected)")
    t.set_defaults(func=trust_cmd)

    p = subcommand(sub, "report", "chargeback, usage, forecast, rightsizing or all")
    report_command.add_arguments(p)
    p.set_defaults(func=report_cmd)

    p = subcommand(sub, "simulate", "run the real placement code on a fleet and job trace")
    sim_command.add_arguments(p)
    p.add_argument("--what-if", metavar="CHANGE", dest="what_if",
                   help='replay the store\'s recent jobs on the current fleet and on one '
                        'changed by CHANGE, e.g. "+16 A100" or "-8 T4, +4 H100"')
    p.add_argument("--days", type=arg_number(0, 3660, lo_open=True), default=30.0, metavar="N",
                   help="with --what-if: replay the jobs of the last N days (default 30)")
    p.set_defaults(func=simulate_cmd)


def collect_cmd(args: argparse.Namespace) -> int:
    cfg = loaded_config(args).config
    slurm = {p.name: p.login_node for p in cfg.pools if p.kind == "slurm" and p.login_node}
    view = run_async(collect_once(cfg.nodes, timeout_s=args.timeout, ssh=ssh_options(cfg),
                                  slurm_pools=slurm, disk_paths=cfg.collect.disk_paths,
                                  max_concurrent_connects=cfg.collect.max_concurrent_connects))
    sys.stdout.write(format_view(view, "json" if args.format == "json" else "table") + "\n")
    return 0


def ssh_options(cfg: Config) -> SshOptions:
    return SshOptions(known_hosts=cfg.ssh.known_hosts, config_file=cfg.ssh.config_file,
                      use_agent=cfg.ssh.use_agent, keepalive_s=cfg.ssh.keepalive_s,
                      connect_timeout_s=cfg.collect.connect_timeout_s)


def nodes_cmd(args: argparse.Namespace) -> int:
    loaded = loaded_config(args)
    rows = plain(engine_or_store(loaded, NodesQuery(), list_nodes))
    if args.format == "json":
        print_json(rows)
    else:
        print_table(rows, ["name", "host", "pool", "transport", "state", "gpu_count",
                           "gpu_model", "cordoned", "jobs_run_as", "state_reason"])
    return 0


def _node(cfg: Config, name: str) -> NodeConfig:
    for n in cfg.nodes:
        if n.name == name:
            return n
    known = ", ".join(n.name for n in cfg.nodes)
    raise InputError("command line", "NODE", f"a node from the config ({known})", got=name)


def trust_cmd(args: argparse.Namespace) -> int:
    cfg = loaded_config(args).config
    node = _node(cfg, args.node)
    if node.transport != "ssh":
        raise InputError("command line", "NODE", "an SSH node (this one uses the "
                         f"{node.transport} transport)", got=node.name)
    host = node.host or node.name
    key = run_async(fetch_host_key(host, node.port, cfg.collect.connect_timeout_s,
                                   config=cfg.ssh.config_file))
    known = cfg.ssh.known_hosts
    status = key_status(known, host, node.port, key)
    print(f"node {node.name} ({host}:{node.port}) offers {key.get_algorithm()} key "
          f"{fingerprint(key)}")
    if status == "trusted":
        print(f"already trusted in {known}")
        return 0
    if status == "changed" and not args.replace:
        raise FleetdeckError(f"{known} holds a DIFFERENT key for {host}:{node.port}; if the "
                             "node was reinstalled, run again with --replace")
    if not args.yes:
        if not sys.stdin.isatty():
            raise FleetdeckError("confirm with --yes (no terminal to ask on)")
        answer = input(f"Record this key in {known}? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("not recorded")
            return 1
    add_known_host(known, host, node.port, key, replace=args.replace)
    print(f"recorded in {known}")
    return 0


def report_cmd(args: argparse.Namespace) -> int:
    """The engine renders while it holds the store (else the store, read-only); the file or
    stdout is written here, as the caller."""
    report_command.check_flags(args, now=to_naive_utc(time.time()))  # before any store work
    loaded = loaded_config(args)
    rates = loaded.config.rates
    rargs = report_command.report_args(args)
    report_command.check_output(rargs.fmt, args.output, sys.stdout)
    req = ReportRun(name=rargs.name, start=rargs.start, end=rargs.end, by=rargs.by,
                    every=rargs.every, months=rargs.months, ceiling=rargs.ceiling,
                    format=rargs.fmt, user=rargs.user)

    def local(store: Store) -> ReportOutput:
        return rendered(report_command.render_args(rargs, store.cursor(), rates=rates),
                        rargs.fmt)

    out = engine_or_store(loaded, req, local)
    result: str | bytes = base64.b64decode(out.b64) if out.b64 is not None else out.text or ""
    output = str(Path(args.output).resolve()) if args.output else None
    report_command.deliver(result, fmt=rargs.fmt, output=output, out=sys.stdout)
    return 0


def quota_replay_cmd(args: argparse.Namespace) -> int:
    """`simulate --mode replay --config FILE`: the replay, then the same jobs under the
    config's team quotas, priority classes and preemption, per team."""
    cfg = loaded_config(args).config
    inputs = sim_command.resolve_inputs(args)
    # a trace job's team: its user's (or project's) in the config; jobs of nobody known are
    # dealt round-robin to the config's teams (the Alibaba traces name no users)
    named = [t.name for t in cfg.teams] or [""]
    teams = []
    for k, job in enumerate(inputs.jobs):
        _, team = membership(cfg, job.user)
        if team is None and job.project:
            team = next((p.team for p in cfg.projects if p.name == job.project), None)
        teams.append(team or named[k % len(named)])
    rules = preemption_rules(cfg)
    scenario = QuotaScenario("preemption on" if rules else "preemption off",
                             quota_book(cfg), rules, class_book(cfg))
    if not args.time_scale > 0:
        raise InputError("--time-scale", None, "a number > 0", got=args.time_scale)
    result = run_quota_replay(inputs.snapshot, inputs.jobs, teams, scenario,
                              policy=(args.policy or "fleetdeck").split(",")[0],
                              time_scale=args.time_scale, cycle_s=cfg.scheduler.cycle_s)
    if args.format == "json":
        print_json(sim_command.quota_json(result))
        return 0
    sim_command.run(args)
    sim_command.print_quota_replay(result, sys.stdout)
    return 0


def simulate_cmd(args: argparse.Namespace) -> int:
    if not args.what_if:
        if args.mode == "replay" and args.config:
            return quota_replay_cmd(args)
        return sim_command.run(args)
    changes = [str(c) for c in parse_change(args.what_if)]  # bad input fails before any work
    if args.days <= 0:
        raise InputError("command line", "--days", "a number of days > 0", got=args.days)
    loaded = loaded_config(args)
    cfg = loaded.config
    policy = args.policy or "fleetdeck"
    result = plain(engine_or_store(
        loaded, WhatifRequest(changes=changes, days=args.days, policy=policy),
        lambda s: run_whatif(s, cfg, changes=changes, days=args.days, policy=policy)))
    if args.format == "json":
        print_json(result)
        return 0
    print(f"what if {result['what_if']}: {result['jobs']} jobs of the last "
          f"{result['days']:g} days replayed")
    cur, new = result["current"], result["changed"]
    seen = result.get("observed") or {}  # what the window really had, beside the replay
    rows = []
    for key, label in (("gpus", "GPUs"), ("mean_queue_delay_s", "mean queue wait (s)"),
                       ("p95_queue_delay_s", "p95 queue wait (s)"),
                       ("mean_jct_s", "mean completion time (s)"),
                       ("mean_alloc_pct", "GPU allocation (%)"),
                       ("burst_gpu_h", "burst GPU-hours"), ("burst_cost", "burst cost")):
        a, b = cur[key], new[key]
        delta = None if a is None or b is None else round(b - a, 2)
        rows.append({"measure": label, "observed": seen.get(key), "current": a,
                     "changed": b, "change": delta})
    print_table(rows)
    return 0


def run_whatif(store: Store, cfg: Config, *, changes: list[str], days: float,
               policy: str) -> dict[str, Any]:
    """Replay the store's last `days` of jobs on the fleet and on the changed fleet."""
    import time

    wait_s, cloud = whatif_prices(cfg)
    now = time.time()
    result = sim_whatif.whatif(sim_whatif.history(store, days, now=now), changes=changes,
                               days=days, policy=policy, wait_threshold_s=wait_s,
                               cloud_gpu_hour=cloud)
    return {**result, "observed": sim_whatif.observed(store, days, now=now)}

"""`fleetdeck simulate`: argument parsing, running and printing (table or JSON).

The console's CLI wires this in with `add_arguments(subparser)` and `run(args)`. Inputs are
resolved by `resolve_inputs`, the extension point for `--config` (a fleetdeck fleet) and
`--what-if` (a changed fleet): today it reads `--nodes` and `--jobs` files. Bad input raises
`collectors.errors.InputError` (one line; the CLI prints it and exits 2).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from collectors.errors import InputError
from collectors.formatting import duration_short
from collectors.validate import arg_number
from scheduler.fit import POLICY_NAMES
from scheduler.models import FleetSnapshot
from scheduler.sim.fill import DEFAULT_RATIO, FillSummary, run_fill_seeds
from scheduler.sim.quota_replay import QuotaReplayResult
from scheduler.sim.replay import ReplaySummary, run_replay_seeds
from scheduler.sim.traces import TraceJob, load_alibaba_nodes, load_jobs

FILL_DEFAULT_POLICIES = "fleetdeck,fgd,best-fit,random-fit"
REPLAY_BASELINE = "first-fit"
CURVE_BINS = (50, 70, 80, 90, 95, 100, 105, 110, 120, 130)


@dataclass(frozen=True, slots=True)
class SimInputs:
    """What a simulation runs on: a fleet (empty of jobs) and a job list."""

    snapshot: FleetSnapshot
    jobs: list[TraceJob]
    fleet_label: str
    jobs_label: str


MAX_RATIO = 10.0  # fill work is proportional to the ratio: bound it
MAX_SEEDS = 1000  # one simulation per seed and policy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=Path, help="node list CSV (Alibaba format)")
    parser.add_argument(
        "--jobs", type=Path, help="job list CSV (Alibaba pod list or fleetdeck job trace)"
    )
    parser.add_argument(
        "--mode",
        choices=("fill", "replay"),
        default="fill",
        help="fill: the ATC'23 fragmentation protocol; replay: jobs in simulated time",
    )
    parser.add_argument(
        "--policy",
        default=None,
        help=f"policies to compare, comma-separated ({', '.join(POLICY_NAMES)}); "
        f"default fill: {FILL_DEFAULT_POLICIES}, replay: fleetdeck (+ {REPLAY_BASELINE} FIFO)",
    )
    parser.add_argument("--seeds", default="42", help="seeds: 42, 42,43 or 42-51 (default 42)")
    parser.add_argument(
        "--ratio",
        type=arg_number(0, MAX_RATIO, lo_open=True),
        default=DEFAULT_RATIO,
        help="fill: workload tuned to this multiple of GPU capacity (default 1.3)",
    )
    parser.add_argument(
        "--time-scale",
        type=arg_number(0, 1000, lo_open=True),
        default=1.0,
        help="replay: multiply submit times (e.g. 0.01 packs arrivals 100x closer)",
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")


def parse_seeds(text: str) -> list[int]:
    """`42`, `42,43` or `42-51` (inclusive) into a list of seeds."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo_s, hi_s = part.split("-", 1) if not part.startswith("-") else ("", "")
                lo, hi = int(lo_s), int(hi_s)
                if hi < lo or hi - lo + len(seeds) >= MAX_SEEDS:
                    raise ValueError(part)
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        seeds = []
    if not seeds or len(seeds) > MAX_SEEDS or any(not 0 <= s < 2**32 for s in seeds):
        raise InputError("--seeds", None, f"seeds like 42, 42,43 or 42-51 (0..2^32-1, at most "
                         f"{MAX_SEEDS} of them)", got=text)
    return seeds


def parse_policies(text: str) -> list[str]:
    names = [p.strip().lower() for p in text.split(",") if p.strip()]
    for n in names:
        if n not in POLICY_NAMES:
            raise InputError("--policy", None, f"one of {', '.join(POLICY_NAMES)}", got=n)
    if not names:
        raise InputError("--policy", None, "at least one policy name", got=text)
    return list(dict.fromkeys(names))


def resolve_inputs(args: argparse.Namespace) -> SimInputs:
    """The fleet and jobs to simulate. Extension point for `--config` / `--what-if`."""
    nodes: Path | None = getattr(args, "nodes", None)
    jobs: Path | None = getattr(args, "jobs", None)
    if nodes is None:
        raise InputError("simulate", "--nodes", "a node list file (--nodes FILE)")
    if jobs is None:
        raise InputError("simulate", "--jobs", "a job list file (--jobs FILE)")
    snapshot = FleetSnapshot(nodes=tuple(load_alibaba_nodes(nodes)))
    return SimInputs(snapshot, load_jobs(jobs), nodes.name, jobs.name)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the simulation the arguments describe and print the results; returns 0."""
    out = out or sys.stdout
    seeds = parse_seeds(args.seeds)
    inputs = resolve_inputs(args)
    if args.mode == "fill":
        if not args.ratio > 0:
            raise InputError("--ratio", None, "a number > 0", got=args.ratio)
        policies = parse_policies(args.policy or FILL_DEFAULT_POLICIES)
        fills = [
            run_fill_seeds(inputs.snapshot, inputs.jobs, p, seeds, ratio=args.ratio)
            for p in policies
        ]
        if args.format == "json":
            json.dump([fill_json(s) for s in fills], out, indent=2)
            out.write("\n")
        else:
            print_fill(fills, inputs, out)
        return 0
    if not args.time_scale > 0:
        raise InputError("--time-scale", None, "a number > 0", got=args.time_scale)
    policies = parse_policies(args.policy or "fleetdeck")
    if REPLAY_BASELINE not in policies:
        policies.append(REPLAY_BASELINE)
    replays = [
        run_replay_seeds(inputs.snapshot, inputs.jobs, p, seeds, time_scale=args.time_scale)
        for p in policies
    ]
    if args.format == "json":
        json.dump([replay_json(s) for s in replays], out, indent=2)
        out.write("\n")
    else:
        print_replay(replays, inputs, out)
    return 0


def _num(x: float, digits: int = 2) -> float | None:
    return None if math.isnan(x) else round(x, digits)


def fill_json(s: FillSummary) -> dict[str, object]:
    return {
        "policy": s.policy,
        "seeds": list(s.seeds),
        "unallocated_gpu_pct_at_100": _num(s.unallocated_gpu_pct_at_100),
        "unallocated_gpu_pct_stdev": _num(s.unallocated_gpu_pct_stdev),
        "per_seed_unallocated_gpu_pct_at_100": [_num(r.unallocated_pct_at_100) for r in s.runs],
        "fragmentation_rate_pct_at_100": _num(s.frag_rate_pct),
        "placed_fraction": _num(s.placed_fraction, 4),
        "seconds_per_seed": _num(s.seconds_per_seed, 3),
        "curve": {str(b): 100.0 - v for b, v in s.curve().items()},
    }


def replay_json(s: ReplaySummary) -> dict[str, object]:
    run0 = s.runs[0]
    return {
        "policy": s.policy,
        "seeds": list(s.seeds),
        "jobs": run0.jobs,
        "skipped_no_duration": run0.skipped,
        "never_fit": run0.never_fit,
        "mean_queue_delay_s": _num(s.mean_queue_delay_s),
        "median_queue_delay_s": _num(s.median_queue_delay_s),
        "p95_queue_delay_s": _num(s.p95_queue_delay_s),
        "mean_jct_s": _num(s.mean_jct_s),
        "median_jct_s": _num(s.median_jct_s),
        "p95_jct_s": _num(s.p95_jct_s),
        "makespan_s": _num(s.makespan_s),
        "mean_gpu_alloc_pct": _num(s.mean_alloc_pct),
        "gpu_alloc_pct_samples": [[_num(t, 1), _num(a)] for t, a in run0.alloc_samples],
        "seconds_per_seed": _num(s.seconds_per_seed, 3),
    }


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, r in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        out.write("  ".join(cells).rstrip() + "\n")
        if k == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


def _seeds_label(seeds: tuple[int, ...]) -> str:
    if len(seeds) > 2 and list(seeds) == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(str(s) for s in seeds)


def print_fill(fills: list[FillSummary], inputs: SimInputs, out: TextIO) -> None:
    seeds = _seeds_label(fills[0].seeds) if fills else ""
    out.write(
        f"fill mode: {inputs.fleet_label} x {inputs.jobs_label}, seeds {seeds}, "
        "jobs in random order, no departures, failed jobs dropped\n\n"
    )
    rows = [["policy", "unalloc GPU % @100", "stdev", "frag rate %", "placed %", "s/seed"]]
    for s in fills:
        rows.append(
            [
                s.policy,
                f"{s.unallocated_gpu_pct_at_100:.2f}",
                f"{s.unallocated_gpu_pct_stdev:.2f}",
                f"{s.frag_rate_pct:.1f}",
                f"{100 * s.placed_fraction:.1f}",
                f"{s.seconds_per_seed:.2f}",
            ]
        )
    _table(rows, out)
    out.write("\nunallocated GPU % by arrived workload (% of GPU capacity):\n\n")
    curve_rows = [["policy", *[f"{b}%" for b in CURVE_BINS]]]
    for s in fills:
        c = s.curve()
        curve_rows.append([s.policy, *[f"{100 - c[b]:.2f}" if b in c else "-" for b in CURVE_BINS]])
    _table(curve_rows, out)


def quota_json(r: QuotaReplayResult) -> dict[str, object]:
    return {"scenario": r.scenario, "alloc_pct": _num(r.alloc_pct),
            "gpu_hours": _num(r.gpu_hours), "started": r.started,
            "never_started": r.never_started, "preemptions": r.preemptions,
            "lost_gpu_hours": _num(r.lost_gpu_hours),
            "teams": [{"team": t.team, "jobs": t.jobs, "guaranteed_jobs": t.guaranteed_jobs,
                       "guaranteed_wait_p50_s": _num(t.guaranteed_wait_p50_s),
                       "guaranteed_wait_p95_s": _num(t.guaranteed_wait_p95_s),
                       "wait_p95_s": _num(t.wait_p95_s), "alloc_pct": _num(t.alloc_pct),
                       "gpu_hours": _num(t.gpu_hours), "preemptions": t.preemptions,
                       "lost_gpu_hours": _num(t.lost_gpu_hours)} for t in r.teams],
            "slow_guaranteed": r.slow_guaranteed,
            "slow_wait_s": {str(c): _num(v) for c, v in r.slow_wait_s.items()}}


def print_quota_replay(r: QuotaReplayResult, out: TextIO) -> None:
    """Per team: guaranteed-share queue wait, GPU allocation, preemptions, GPU-hours lost."""
    out.write(f"\nquotas and preemption from the config ({r.scenario}): {r.started} jobs "
              f"started, {r.preemptions} preemptions, {r.lost_gpu_hours:.1f} GPU-hours lost "
              "(no checkpoints), fleet GPU allocation "
              f"{r.alloc_pct:.1f} % over the arrival window\n\n")
    rows = [["team", "jobs", "within guarantee", "their wait p50", "p95", "all p95",
             "GPU alloc %", "GPU-hours", "preempted", "GPU-h lost"]]
    for t in r.teams:
        rows.append([t.team, str(t.jobs), str(t.guaranteed_jobs),
                     duration_short(t.guaranteed_wait_p50_s),
                     duration_short(t.guaranteed_wait_p95_s),
                     duration_short(t.wait_p95_s), f"{t.alloc_pct:.1f}", f"{t.gpu_hours:.0f}",
                     str(t.preemptions), f"{t.lost_gpu_hours:.1f}"])
    _table(rows, out)
    total = sum(r.slow_wait_s.values())
    if r.slow_guaranteed and total > 0:
        out.write(f"\n{r.slow_guaranteed} jobs within their guarantee waited over the grace "
                  "plus one cycle; their wait went to:\n")
        for cause, secs in sorted(r.slow_wait_s.items(), key=lambda kv: -kv[1]):
            out.write(f"  {secs / total * 100:5.1f} %  "
                      f"{duration_short(secs / r.slow_guaranteed)} per job  {cause}\n")


def print_replay(replays: list[ReplaySummary], inputs: SimInputs, out: TextIO) -> None:
    run0 = replays[0].runs[0]
    out.write(
        f"replay mode: {inputs.fleet_label} x {inputs.jobs_label}: {run0.jobs} jobs "
        f"({run0.skipped} skipped without a run time, {run0.never_fit} larger than any node), "
        "FIFO queue with EASY backfill (scheduler.placement.plan)\n\n"
    )
    rows = [
        [
            "policy",
            "delay mean",
            "median",
            "p95",
            "JCT mean",
            "median",
            "p95",
            "makespan",
            "GPU alloc %",
        ]
    ]
    for s in replays:
        rows.append(
            [
                s.policy,
                duration_short(s.mean_queue_delay_s),
                duration_short(s.median_queue_delay_s),
                duration_short(s.p95_queue_delay_s),
                duration_short(s.mean_jct_s),
                duration_short(s.median_jct_s),
                duration_short(s.p95_jct_s),
                duration_short(s.makespan_s),
                f"{s.mean_alloc_pct:.1f}",
            ]
        )
    _table(rows, out)
    out.write("\nGPU allocation % over time (time from first submit):\n\n")
    samples = run0.alloc_samples[:: max(1, len(run0.alloc_samples) // 8)]
    alloc_rows = [["policy", *[duration_short(t) for t, _ in samples]]]
    for s in replays:
        pts = s.runs[0].alloc_samples[:: max(1, len(run0.alloc_samples) // 8)]
        alloc_rows.append([s.policy, *[f"{a:.1f}" for _, a in pts]])
    _table(alloc_rows, out)

"""Guarantees side by side: reserved, lend-and-reclaim, no quotas, on the Alibaba openb trace.

The trace's jobs (`../shared/traces`, read in place, never copied) are split across three
teams (job k goes to team k mod 3) whose guarantees sum to the fleet (50 %, 30 %, 20 % of its
GPUs), and replayed three times with the real placement cycle (`scheduler.sim.quota_replay`):

- (a) reserved: each team may hold its guarantee and borrow only what nobody is guaranteed
  (none here), so a quiet team's GPUs sit idle;
- (b) lend-and-reclaim: no cap, guarantees lent when idle and reclaimed by preemption
  (grace 60 s, minimum runtime 300 s by default, at most 3 preemptions per job);
- (c) no quotas.

Prints per team and scenario: guaranteed-share queue wait p50/p95, GPU allocation, preemptions,
GPU-hours lost; then the targets: (b) allocates >= 95 % of (c), and (b)'s p95 wait of jobs
within their guarantee <= grace + one cycle, with where the wait of those over it went.

    .venv/bin/python benchmarks/bench_quota.py [--jobs 2000] [--fleet-nodes 200] [--load 1.2]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scheduler.models import FleetSnapshot  # noqa: E402
from scheduler.placement import PreemptionRules  # noqa: E402
from scheduler.quota import Quota, QuotaBook  # noqa: E402
from scheduler.sim.quota_replay import (  # noqa: E402
    QuotaReplayResult,
    QuotaScenario,
    run_quota_replay,
)
from scheduler.sim.traces import TraceJob, load_alibaba_nodes, load_jobs  # noqa: E402

TRACES = REPO.parent / "shared" / "traces"
TEAMS = (("alpha", 0.5), ("beta", 0.3), ("gamma", 0.2))


def scenarios(total_gpus: int, rules: PreemptionRules) -> list[QuotaScenario]:
    shares = {name: round(total_gpus * f) for name, f in TEAMS}
    shares[TEAMS[-1][0]] = total_gpus - sum(v for k, v in shares.items() if k != TEAMS[-1][0])
    reserved = QuotaBook(teams={t: Quota.of_gpus(g, g) for t, g in shares.items()},
                         borrowing=True)
    lend = QuotaBook(teams={t: Quota.of_gpus(None, g) for t, g in shares.items()})
    return [QuotaScenario("(a) reserved", reserved),
            QuotaScenario("(b) lend+reclaim", lend, rules),
            QuotaScenario("(c) no quotas", None)]


def time_scale_for(jobs: list[TraceJob], gpus: float) -> float:
    """The submit-time scale at which the jobs' mean GPU demand over the (scaled) arrival
    window is `gpus` (run time past the window does not count), by bisection."""
    span = max(j.submit_time_s for j in jobs) - min(j.submit_time_s for j in jobs)

    def demand(scale: float) -> float:
        window = span * scale
        return sum(j.request.gpu_count * j.request.gpu_milli / 1000
                   * min(j.duration_s or 0.0, window) for j in jobs) / window

    lo, hi = 1e-9, 1.0
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if demand(mid) > gpus else (lo, mid)
    return hi


def lead_in(jobs: list[TraceJob], pct: float) -> float:
    """The submit time below which `pct` % of `jobs` were submitted."""
    times = sorted(j.submit_time_s for j in jobs)
    if not times or pct <= 0:
        return -math.inf
    return times[min(len(times) - 1, int(len(times) * pct / 100))]


def hours(x: float) -> str:
    return "-" if math.isnan(x) else (f"{x:.0f}s" if x < 120 else f"{x / 60:.1f}m"
                                      if x < 7200 else f"{x / 3600:.1f}h")


def show(results: list[QuotaReplayResult]) -> None:
    head = ("scenario", "team", "jobs", "in-guar.", "guar. wait p50", "p95", "all p95",
            "GPU alloc %", "GPU-h", "preempted", "GPU-h lost")
    rows = [head]
    for r in results:
        for t in r.teams:
            rows.append((r.scenario, t.team, str(t.jobs), str(t.guaranteed_jobs),
                         hours(t.guaranteed_wait_p50_s), hours(t.guaranteed_wait_p95_s),
                         hours(t.wait_p95_s), f"{t.alloc_pct:.1f}", f"{t.gpu_hours:.0f}",
                         str(t.preemptions), f"{t.lost_gpu_hours:.1f}"))
        rows.append((r.scenario, "fleet", str(r.started), "", "", "", "", f"{r.alloc_pct:.1f}",
                     f"{r.gpu_hours:.0f}", str(r.preemptions), f"{r.lost_gpu_hours:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=Path, default=TRACES / "openb_node_list_gpu_node.csv")
    ap.add_argument("--jobs-file", type=Path, default=TRACES / "openb_pod_list_default.csv")
    ap.add_argument("--jobs", type=int, default=2000, help="the first N jobs of the trace")
    ap.add_argument("--fleet-nodes", type=int, default=200,
                    help="the first N GPU nodes of the trace (default 200)")
    ap.add_argument("--load", type=float, default=1.2,
                    help="arrivals packed so that GPU demand is this multiple of the fleet "
                         "(the trace alone leaves the fleet ~0.2 %% busy; default 1.2)")
    ap.add_argument("--cycle-s", type=float, default=10.0)
    ap.add_argument("--grace-s", type=float, default=60.0)
    ap.add_argument("--min-runtime-s", type=float, default=300.0)
    ap.add_argument("--gpus-only", action="store_true",
                    help="drop the jobs' CPU, memory and GPU model asks: GPUs are the only "
                         "contended resource, as guarantees assume")
    ap.add_argument("--policy", default="best-fit")
    ap.add_argument("--skip-lead-pct", type=float, default=1.0,
                    help="drop the trace's sparse lead-in: jobs submitted before this "
                         "percentile of submit times (openb: 70 jobs over 115 days before the "
                         "bulk; kept, they stretch the arrival window 10x and the rest arrive "
                         "as one burst in its last cycles; default 1, 0 keeps all)")
    args = ap.parse_args()
    nodes = load_alibaba_nodes(args.nodes)[: args.fleet_nodes]
    # GPU jobs only: guarantees are GPUs, and CPU-only pods would only compete for CPUs
    jobs = [j for j in load_jobs(args.jobs_file) if j.request.gpu_count > 0]
    jobs = [j for j in jobs if j.submit_time_s >= lead_in(jobs, args.skip_lead_pct)][: args.jobs]
    if args.gpus_only:
        jobs = [replace(j, request=replace(j.request, cpu_milli=0, mem_bytes=0,
                                           gpu_models=frozenset())) for j in jobs]
    snap = FleetSnapshot(nodes=tuple(nodes))
    total = sum(len(n.gpus) for n in nodes)
    args.time_scale = time_scale_for(jobs, args.load * total)
    teams = [TEAMS[k % len(TEAMS)][0] for k in range(len(jobs))]
    rules = PreemptionRules(grace_s=args.grace_s, min_runtime_s=args.min_runtime_s,
                            max_preemptions=3)
    print(f"{len(nodes)} nodes, {total} GPUs; {len(jobs)} jobs, demand {args.load:g} x the "
          f"fleet (time scale {args.time_scale:.3g}), "
          f"cycle {args.cycle_s:g}s, policy {args.policy}; guarantees "
          + ", ".join(f"{t} {f:.0%}" for t, f in TEAMS))
    results = []
    for sc in scenarios(total, rules):
        t0 = time.perf_counter()
        results.append(run_quota_replay(snap, jobs, teams, sc, policy=args.policy,
                                        time_scale=args.time_scale, cycle_s=args.cycle_s))
        print(f"  {sc.name}: {time.perf_counter() - t0:.1f}s wall", flush=True)
    print()
    show(results)
    a, b, c = results
    ratio = b.alloc_pct / c.alloc_pct * 100 if c.alloc_pct else float("nan")
    worst = max((t.guaranteed_wait_p95_s for t in b.teams
                 if not math.isnan(t.guaranteed_wait_p95_s)), default=float("nan"))
    bound = args.grace_s + args.cycle_s
    print(f"\ntarget 1: (b) allocates {ratio:.1f} % of (c) (target >= 95 %): "
          f"{'met' if ratio >= 95 else 'NOT met'}; (a) allocates "
          f"{a.alloc_pct / c.alloc_pct * 100 if c.alloc_pct else float('nan'):.1f} %")
    print(f"target 2: (b) worst team p95 wait within guarantee {hours(worst)} "
          f"(target <= grace + cycle = {bound:g}s): {'met' if worst <= bound else 'NOT met'}")
    slow_s = sum(b.slow_wait_s.values())
    print(f"  (b) within-guarantee jobs that waited over {bound:g}s: {b.slow_guaranteed}"
          + ("; their wait by cause:" if slow_s else ""))
    for cause, secs in sorted(b.slow_wait_s.items(), key=lambda kv: -kv[1]):
        print(f"    {secs / slow_s * 100:5.1f} %  {hours(secs / b.slow_guaranteed)} per job  "
              f"{cause}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

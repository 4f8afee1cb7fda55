"""Fill-mode speed and quality on the Alibaba 2023 GPU trace, per selection policy.

Runs the ATC'23 fill protocol (`fleetdeck simulate --mode fill`) on the default trace
(`openb_node_list_gpu_node.csv` + `openb_pod_list_default.csv`, 1,213 nodes, 6,212 GPUs) and
prints, per policy, the seconds one seed takes and the unallocated GPU % at arrived = 100%.
With several seeds it prints the comparison table (mean, stdev, per seed) next to the figures
the paper's artifact published. Target: under 30 s per seed for fleetdeck's default policy.

    .venv/bin/python benchmarks/bench_fill.py                  # one seed (42) per policy
    .venv/bin/python benchmarks/bench_fill.py --seeds 42-51    # the full comparison
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scheduler.fit import POLICY_NAMES  # noqa: E402
from scheduler.models import FleetSnapshot  # noqa: E402
from scheduler.sim.command import parse_seeds  # noqa: E402
from scheduler.sim.fill import run_fill, workload_mix  # noqa: E402
from scheduler.sim.traces import load_alibaba_nodes, load_jobs  # noqa: E402

TRACES = REPO.parent / "shared" / "traces"
# "Beware of Fragmentation" artifact, openb_pod_list_default, tune 1.3, seeds 42-51
PUBLISHED = {
    "random-fit": 13.70,
    "dot-product": 9.38,
    "gpu-clustering": 8.35,
    "gpu-packing": 8.22,
    "best-fit": 7.14,
    "fgd": 4.77,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=Path, default=TRACES / "openb_node_list_gpu_node.csv")
    ap.add_argument("--jobs", type=Path, default=TRACES / "openb_pod_list_default.csv")
    ap.add_argument("--seeds", default="42")
    ap.add_argument("--policy", nargs="+", default=[p for p in POLICY_NAMES if p != "first-fit"])
    args = ap.parse_args()
    seeds = parse_seeds(args.seeds)

    t0 = time.perf_counter()
    snap = FleetSnapshot(nodes=tuple(load_alibaba_nodes(args.nodes)))
    jobs = load_jobs(args.jobs)
    mix = workload_mix(jobs)
    n_gpus = sum(len(n.gpus) for n in snap.nodes)
    print(
        f"trace: {args.nodes.name} ({len(snap.nodes)} nodes, {n_gpus} GPUs) x {args.jobs.name} "
        f"({len(jobs)} jobs, {len(mix)} request shapes), loaded in {time.perf_counter() - t0:.2f} s"
    )
    print(f"seeds: {args.seeds}; workload tuned to 130% of GPU capacity\n")
    header = f"{'policy':<15} {'s/seed':>7} {'unalloc% @100':>13} {'stdev':>6} {'published':>9}"
    print(header + ("  per seed" if len(seeds) > 1 else ""))
    print("-" * (len(header) + (10 if len(seeds) > 1 else 0)))
    for name in args.policy:
        runs = [run_fill(snap, jobs, name, s, mix=mix) for s in seeds]
        u = [r.unallocated_pct_at_100 for r in runs]
        secs = statistics.mean(r.elapsed_s for r in runs)
        sd = statistics.pstdev(u) if len(u) > 1 else 0.0
        pub = f"{PUBLISHED[name]:.2f}" if name in PUBLISHED else "-"
        line = f"{name:<15} {secs:>7.2f} {statistics.mean(u):>13.2f} {sd:>6.2f} {pub:>9}"
        if len(seeds) > 1:
            line += "  " + " ".join(f"{x:.2f}" for x in u)
        print(line, flush=True)


if __name__ == "__main__":
    main()

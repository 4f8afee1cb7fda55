"""The demo's live workload: a realistic mix of jobs submitted through the engine protocol.

`drive(submit, rng, stop)` fills the fleet at once (`initial_jobs`), then submits one job
every few seconds (`next_job`): training runs of 1-8 GPUs with a max runtime, hyper-parameter
sweeps as job arrays, notebooks on a quarter or half GPU that go idle after a minute or two
(the idle policy warns and stops them), short dev jobs and CPU data preparation. Jobs are
real, cheap processes (a shell loop printing progress between `sleep`s) run by the process
executor on the sim nodes; their `SIM_*` environment tells the simulated GPUs how busy to look
(see `collectors.transport.sim`).

`submit` is any `async (spec_dict) -> result`; `engine_submit(client)` makes one that calls the
engine's `submit` method, exactly as `fleetdeck submit` does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from console.demo.fleet import H100, PROJECTS, USERS
from scheduler.jobspec import JobSpec

log = logging.getLogger(__name__)
GIB = 2**30
Submit = Callable[[dict[str, Any]], Awaitable[Any]]

_TEAM_OF_PROJECT = {p: t for p, t, _ in PROJECTS}
_RUN = ('echo "[$FLEETDECK_JOB_NAME] starting on $FLEETDECK_SIM_NODE GPUs '
        '${CUDA_VISIBLE_DEVICES:-none}"; i=0; n={steps}; while [ $i -lt $n ]; do i=$((i+1)); '
        'sleep {tick}; echo "step $((i*{stride})) loss $((2400/(i+4))).$((i*37%100)) '
        '{unit} $(({rate}+i*13%900))"; done; echo "finished {steps} steps"')
_NOTEBOOK = ('echo "[I] Jupyter Server 2.14 is running at http://$FLEETDECK_SIM_NODE:8888/lab"; '
             'exec sleep 7200')
ARCHS = {"llm-pretrain": ("llama-7b", "llama-13b", "mixtral-8x7b"),
         "vision": ("vit-l", "sam-h", "dinov2"), "speech": ("whisper-m", "conformer"),
         "recsys": ("dlrm", "two-tower"), "search": ("colbert", "bge-rerank"),
         "infra": ("nccl-test", "burn-in"), "evals": ("mmlu", "helm-lite")}


def _who(rng: random.Random, teams: tuple[str, ...] | None = None) -> tuple[str, str, str]:
    """(user, project, team), the user's first project twice as likely."""
    users = [u for u in USERS if teams is None or u[1] in teams]
    name, team, projects, _ = rng.choice(users)
    project = projects[0] if rng.random() < 0.6 or len(projects) == 1 else rng.choice(projects)
    return name, project, _TEAM_OF_PROJECT.get(project, team)


def _loop_script(duration_s: float, unit: str, rate: int, tick: int = 10) -> str:
    steps = max(1, round(duration_s / tick))
    return (_RUN.replace("{steps}", str(steps)).replace("{tick}", str(tick))
            .replace("{stride}", "50").replace("{unit}", unit).replace("{rate}", str(rate)))


def training(rng: random.Random, seq: int) -> JobSpec:
    user, project, team = _who(rng, ("research", "product", "platform"))
    gpus = rng.choices((8, 4, 2, 1), (0.55, 0.3, 0.1, 0.05))[0]
    duration = rng.uniform(240.0, 900.0)
    labels = rng.choice(({"gpu": "h100"}, {"gpu": "a100"}, {"gpu": "a100"}, {}))
    slow = rng.random() < 0.12  # asks for more GPUs than it keeps busy
    arch = rng.choice(ARCHS[project])
    return JobSpec(
        name=f"{arch}-{project}-{seq:04d}", command=(_loop_script(duration, "tok/s", 41000),),
        shell=True, user=user, project=project, team=team, executor="process",
        gpus=float(gpus), cpus=float(6 * gpus), mem_bytes=48 * GIB * gpus, labels=labels,
        pool="train", max_runtime_s=round(duration * 1.5 + 120),
        env={"SIM_UTIL_PCT": f"{rng.uniform(22, 38) if slow else rng.uniform(82, 97):.0f}",
             "SIM_MEM_FRAC": f"{rng.uniform(0.55, 0.92):.2f}"})


def sweep(rng: random.Random, seq: int) -> JobSpec:
    user, project, team = _who(rng)
    pool = rng.choice(("train", "interactive"))
    gpus = 1 if pool == "interactive" or rng.random() < 0.6 else 2
    duration = rng.uniform(60.0, 240.0)
    return JobSpec(
        name=f"sweep-{project}-lr-{seq:04d}", command=(_loop_script(duration, "img/s", 2900),),
        shell=True, user=user, project=project, team=team, executor="process",
        gpus=float(gpus), cpus=4.0 * gpus, mem_bytes=24 * GIB * gpus, pool=pool,
        max_runtime_s=round(duration * 2 + 60), array=rng.choice((3, 4, 4)),
        env={"SIM_UTIL_PCT": f"{rng.uniform(55, 90):.0f}",
             "SIM_MEM_FRAC": f"{rng.uniform(0.3, 0.7):.2f}"})


def notebook(rng: random.Random, seq: int) -> JobSpec:
    user, project, team = _who(rng)
    share = rng.choice((0.25, 0.25, 0.5))
    return JobSpec(
        name=f"nb-{user}-{seq:04d}", command=(_NOTEBOOK,), shell=True, user=user,
        project=project, team=team, executor="process", gpus=share, cpus=4.0,
        mem_bytes=32 * GIB, pool="interactive", max_runtime_s=7200.0, kind="notebook",
        env={"SIM_UTIL_PCT": f"{rng.uniform(20, 60):.0f}",
             "SIM_MEM_FRAC": f"{rng.uniform(0.3, 0.8):.2f}",
             "SIM_BUSY_S": f"{rng.uniform(20, 90):.0f}", "SIM_CPU_CORES": "1"})


def dev(rng: random.Random, seq: int) -> JobSpec:
    user, project, team = _who(rng)
    duration = rng.uniform(60.0, 200.0)
    return JobSpec(
        name=f"dev-{user}-{seq:04d}", command=(_loop_script(duration, "it/s", 120, tick=5),),
        shell=True, user=user, project=project, team=team, executor="process", gpus=1.0,
        cpus=8.0, mem_bytes=64 * GIB, pool="interactive", max_runtime_s=600.0,
        env={"SIM_UTIL_PCT": f"{rng.uniform(15, 70):.0f}"})


def etl(rng: random.Random, seq: int) -> JobSpec:
    user, project, team = _who(rng, ("product", "platform", "research"))
    duration = rng.uniform(90.0, 300.0)
    cpus = rng.choice((32, 48, 64, 96))
    return JobSpec(
        name=f"etl-{project}-{seq:04d}", command=(_loop_script(duration, "rows/s", 880000),),
        shell=True, user=user, project=project, team=team, executor="process", cpus=cpus,
        mem_bytes=4 * GIB * cpus, pool="cpu", max_runtime_s=900.0,
        env={"SIM_CPU_CORES": str(cpus * 0.8)})


def big_run(rng: random.Random, seq: int) -> JobSpec:
    """A priority 8 x H100 run in no particular pool: when the H100s are full it waits, and
    may trigger a burst (the cloud offer's nodes join pool `burst`)."""
    return dataclasses.replace(
        training(rng, seq), name=f"pretrain-llama-70b-{seq:04d}", gpus=8.0, cpus=48.0,
        mem_bytes=384 * GIB, labels={}, gpu_models=frozenset({H100.gpu_model}), pool=None,
        priority=10, user="alice", project="llm-pretrain", team="research")


MIX: tuple[tuple[Callable[[random.Random, int], JobSpec], float], ...] = (
    (training, 0.34), (sweep, 0.14), (notebook, 0.26), (dev, 0.12), (etl, 0.1),
    (big_run, 0.04),
)


def next_job(rng: random.Random, seq: int) -> JobSpec:
    make = rng.choices([m for m, _ in MIX], [w for _, w in MIX])[0]
    return make(rng, seq)


def initial_jobs(rng: random.Random) -> list[JobSpec]:
    """What the fleet runs when the demo opens: about two thirds of the GPUs busy."""
    makers = [training] * 24 + [sweep] * 3 + [notebook] * 8 + [dev] * 3 + [etl] * 2
    return [m(rng, i + 1) for i, m in enumerate(makers)]


def engine_submit(call: Callable[..., Awaitable[Any]]) -> Submit:
    """`submit` through an engine client's `call` (e.g. `EngineClient.call`)."""
    async def submit(spec: dict[str, Any]) -> Any:
        return await call("submit", spec=spec)
    return submit


async def drive(submit: Submit, rng: random.Random, stop: asyncio.Event, *,
                mean_gap_s: float = 8.0, initial: bool = True) -> int:
    """Submit the initial fill, then a job every `mean_gap_s` on average, until `stop` is set.
    Returns how many jobs were submitted; a refused submission is logged and skipped."""
    count = 0
    seq = 100

    async def one(spec: JobSpec) -> None:
        nonlocal count
        try:
            await submit(spec.to_dict())
            count += 1
        except Exception as e:  # the engine may refuse one (quota) or be going away
            log.info("demo workload: %s not submitted: %s", spec.name, e)

    if initial:
        for spec in initial_jobs(rng):
            await one(spec)
    while not stop.is_set():
        delay = rng.expovariate(1.0 / mean_gap_s)
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            seq += 1
            await one(next_job(rng, seq))
    return count

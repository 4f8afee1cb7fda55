"""The `jobs`, `job_events` and job `actions` of the generated history, as Arrow tables.

Every packed job (`console.demo.history.Packed`) becomes one `jobs` row with a valid stored
spec, four `job_events` (queued, starting, running, its end) and its audit rows (submit; idle
warn and stop for notebooks the idle policy ended; stop for jobs their owner stopped).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import console.demo.fleet as fleet
from console.demo.history import CPU_SLOTS, KIND_INDEX, KINDS, Packed
from scheduler.jobspec import JobSpec
from scheduler.states import JobState

US = 1_000_000
GIB = 2**30
STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.STOPPED, JobState.STOPPED, JobState.LOST,
          JobState.STOPPED)
OK, FAILED, IDLE_STOP, USER_STOP, LOST, CUT = range(6)
COMMANDS = {"train": ("python", "train.py"), "sweep": ("python", "sweep.py"),
            "dev": ("python", "dev.py"), "notebook": ("jupyter", "lab", "--no-browser"),
            "etl": ("python", "etl.py")}
MAX_RUNTIME_S = {"train": 5 * 86400.0, "sweep": 86400.0, "dev": 12 * 3600.0,
                 "notebook": 2 * 86400.0, "etl": 2 * 86400.0}
# team shares of each pool's jobs (research, product, platform)
TEAM_MIX = {"train": (0.6, 0.3, 0.1), "interactive": (0.4, 0.4, 0.2), "cpu": (0.3, 0.5, 0.2)}


def ts_array(start_hour: int, h: np.ndarray) -> pa.Array:
    us = np.round((start_hour + np.asarray(h, dtype=np.float64)) * 3600.0 * US)
    return pa.array(us.astype(np.int64)).cast(pa.timestamp("us"))


def dict_array(indices: np.ndarray, values: Sequence[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.asarray(indices, dtype=np.int32)),
                                          pa.array(list(values), pa.string()))


def _people(nodes: Sequence[fleet.DemoNode], jobs: Packed, burst_team: np.ndarray,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, project, team) indices per job."""
    teams = [t for t, _, _ in fleet.TEAMS]
    users = fleet.USERS
    projects = [p for p, _, _ in fleet.PROJECTS]
    n = len(jobs)
    pools = np.array([x.pool for x in nodes])[jobs.node]
    team = np.zeros(n, dtype=np.int64)
    for pool, mix in TEAM_MIX.items():
        sel = pools == pool
        team[sel] = rng.choice(len(teams), size=int(sel.sum()), p=mix)
    burst = pools == fleet.BURST_POOL
    team[burst] = burst_team
    members = [[i for i, u in enumerate(users) if u[1] == t] for t in teams]
    width = max(len(m) for m in members)
    table = np.array([m + [m[0]] * (width - len(m)) for m in members])
    counts = np.array([len(m) for m in members])
    user = table[team, (rng.random(n) * counts[team]).astype(np.int64)]
    own = [[projects.index(p) for p in u[2]] for u in users]
    pw = max(len(o) for o in own)
    ptable = np.array([o + [o[0]] * (pw - len(o)) for o in own])
    pcount = np.array([len(o) for o in own])
    # the first project is the user's main one: twice as likely
    pick = np.minimum((rng.random(n) ** 1.6 * pcount[user]).astype(np.int64), pcount[user] - 1)
    project = ptable[user, pick]
    burst_project = np.where(burst_team == 0, projects.index("llm-pretrain"),
                             projects.index("recsys"))
    project[burst] = burst_project
    return user, project, team


def _ends(jobs: Packed, hours: int, rng: np.random.Generator) -> np.ndarray:
    n = len(jobs)
    r = rng.random(n)
    state = np.full(n, OK)
    kind = jobs.kind
    nb = kind == KIND_INDEX["notebook"]
    state = np.where(nb & (r < 0.35), IDLE_STOP, state)
    state = np.where(nb & (r >= 0.35) & (r < 0.5), USER_STOP, state)
    train = kind == KIND_INDEX["train"]
    state = np.where(train & (r < 0.08), FAILED, state)
    state = np.where(train & (r >= 0.08) & (r < 0.12), USER_STOP, state)
    state = np.where(train & (r >= 0.12) & (r < 0.125), LOST, state)
    other = ~nb & ~train
    state = np.where(other & (r < 0.06), FAILED, state)
    return np.where(jobs.end_h > hours, CUT, state)


def job_tables(nodes: Sequence[fleet.DemoNode], jobs: Packed, burst_team: np.ndarray,
               hours: int, start_hour: int, rng: np.random.Generator) -> dict[str, pa.Table]:
    """`jobs`, `job_events` and `actions` tables (ids 1.. in submission order)."""
    n = len(jobs)
    user, project, team = _people(nodes, jobs, burst_team, rng)
    is_gpu = np.array([x.profile.gpu_count > 0 for x in nodes])[jobs.node]
    frac = np.clip(jobs.start_h / hours, 0.0, 1.0)
    wait = np.minimum(rng.exponential(0.03 + 0.5 * frac) * (jobs.size / 4.0 + 0.3), 12.0)
    submitted = jobs.start_h - wait
    order = np.argsort(submitted, kind="stable")
    jobs = jobs.take(order)
    user, project, team = user[order], project[order], team[order]
    is_gpu, submitted = is_gpu[order], submitted[order]
    ids = np.arange(1, n + 1, dtype=np.int64)
    end = np.minimum(jobs.end_h, float(hours))
    state = _ends(jobs, hours, rng)
    names = [x.name for x in nodes]
    users = [u for u, _, _, _ in fleet.USERS]
    projects = [p for p, _, _ in fleet.PROJECTS]
    teams = [t for t, _, _ in fleet.TEAMS]
    kinds = [k.name for k in KINDS]
    cpus = np.array([k.cpus_per_unit for k in KINDS])[jobs.kind] * jobs.size
    slot_cores = np.array([x.profile.cpu_count // CPU_SLOTS for x in nodes])[jobs.node]
    cpus = np.where(is_gpu, cpus, slot_cores * jobs.size).astype(np.int64)
    gpus = np.where(is_gpu, np.where(jobs.milli < 1000, jobs.milli / 1000.0, jobs.size), 0.0)
    pools = [x.pool for x in nodes]
    seq = pa.array(np.arange(n) % 100000).cast(pa.string())
    seq = pc.utf8_lpad(seq, width=5, padding="0")
    name = pc.binary_join_element_wise(pa.array(kinds).take(pa.array(jobs.kind)),
                                       pa.array(projects).take(pa.array(project)), seq, "-")
    spec = _specs(jobs, user, project, team, gpus, cpus, name, pools, users, projects,
                  teams, kinds)
    bits = ((jobs.mask[:, None] >> np.arange(8)[None, :]) & 1).astype(bool) & is_gpu[:, None]
    counts = bits.sum(axis=1)
    offsets = np.zeros(n + 1, dtype=np.int32)
    offsets[1:] = np.cumsum(counts)
    indices = pa.ListArray.from_arrays(pa.array(offsets),
                                       pa.array(np.nonzero(bits)[1].astype(np.int32)))
    models = sorted({x.profile.gpu_model for x in nodes if x.profile.gpu_count})
    model_of = np.array([models.index(x.profile.gpu_model) if x.profile.gpu_count else 0
                         for x in nodes])[jobs.node]
    exit_code = np.array([0, 1, 143, 143, -1, 143])[state]
    reason = _reasons(state, jobs, end, names, users, user)
    burst_pool = fleet.BURST_POOL
    job_node_names = np.array(names, dtype=object)[jobs.node]
    job_pools = np.array(pools, dtype=object)[jobs.node]
    mem_bytes = cpus * 4 * GIB
    max_rt = np.array([MAX_RUNTIME_S[k] for k in kinds])[jobs.kind]
    jobs_table = pa.table({
        "id": pa.array(ids),
        "name": name,
        "user": dict_array(user, users),
        "project": dict_array(project, projects),
        "team": dict_array(team, teams),
        "kind": dict_array(jobs.kind, [k.job_kind for k in KINDS]),
        "executor": pa.array(["process"] * n, pa.string()),
        "spec": spec,
        "state": dict_array(state, STATES),
        "reason": pa.array(reason, pa.string()),
        "priority": pa.array(np.zeros(n, dtype=np.int32)),
        "pool": pa.array(job_pools.tolist(), pa.string()),
        "node": pa.array(job_node_names.tolist(), pa.string()),
        "gpu_indices": indices,
        "gpu_count": pa.array(np.where(is_gpu, jobs.size, 0).astype(np.int32)),
        "gpu_milli": pa.array(np.where(is_gpu, jobs.milli, 0).astype(np.int32)),
        "gpu_model": pa.array([models[m] if g else None
                               for m, g in zip(model_of.tolist(), is_gpu.tolist(),
                                               strict=True)], pa.string()),
        "cpu_milli": pa.array((cpus * 1000).astype(np.int32)),
        "mem_bytes": pa.array(mem_bytes.astype(np.int64)),
        "max_runtime_s": pa.array(max_rt),
        "submitted_at": ts_array(start_hour, submitted),
        "started_at": ts_array(start_hour, jobs.start_h),
        "ended_at": ts_array(start_hour, end),
        "exit_code": pa.array(exit_code.astype(np.int32), mask=state == LOST),
        "external_id": pa.array(rng.integers(2000, 4_000_000, n)).cast(pa.string()),
        "attempt": pa.array(np.zeros(n, dtype=np.int32)),
        "burst": pa.array(job_pools == burst_pool),
    })
    events = _events(ids, submitted, jobs.start_h, end, state, user, users, reason,
                     job_node_names, start_hour)
    actions = _actions(ids, submitted, end, state, user, users, gpus, name, start_hour)
    return {"jobs": jobs_table, "job_events": events, "actions": actions}


def _specs(jobs: Packed, user: np.ndarray, project: np.ndarray, team: np.ndarray,
           gpus: np.ndarray, cpus: np.ndarray, name: pa.Array, pools: list[str],
           users: list[str], projects: list[str], teams: list[str],
           kinds: list[str]) -> pa.Array:
    """Stored spec JSON per job: one template per distinct combination, the name filled in.
    Fields left at their defaults are omitted (`JobSpec.from_dict` fills them)."""
    pool_names = sorted(set(pools))
    pool_idx = np.array([pool_names.index(p) for p in pools])[jobs.node]
    milli = np.round(gpus * 1000).astype(np.int64)
    code = jobs.kind
    for v, k in ((user, len(users)), (project, len(projects)), (team, len(teams)),
                 (milli, 8001), (cpus, 4096), (pool_idx, len(pool_names))):
        code = code * k + v
    _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    mark = "@@NAME@@"
    pre, post = [], []
    for i in first.tolist():
        k = int(jobs.kind[i])
        kind = kinds[k]
        c = int(cpus[i])
        spec = JobSpec(name="x", command=COMMANDS[kind], user=users[user[i]],
                       project=projects[project[i]], team=teams[team[i]], executor="process",
                       gpus=int(milli[i]) / 1000.0, cpus=float(c), mem_bytes=c * 4 * GIB,
                       pool=pool_names[pool_idx[i]], max_runtime_s=MAX_RUNTIME_S[kind],
                       kind=KINDS[k].job_kind)
        d = {k: v for k, v in spec.to_dict().items() if v != _DEFAULTS.get(k, ())}
        d["name"] = mark
        a, b = json.dumps(d).split(mark)
        pre.append(a)
        post.append(b)
    at = pa.array(inverse.ravel())
    return pc.binary_join_element_wise(pa.array(pre).take(at), name, pa.array(post).take(at),
                                       "")


_DEFAULTS = {k: v for k, v in JobSpec(name="x", command=("x",)).to_dict().items()
             if k not in ("name", "command")}


def _reasons(state: np.ndarray, jobs: Packed, end: np.ndarray, names: list[str],
             users: list[str], user: np.ndarray) -> list[str]:
    fixed = {OK: "exited with code 0", FAILED: "exited with code 1",
             CUT: "stopped when the demo fleet started"}
    out: list[str] = []
    node_of = jobs.node.tolist()
    user_of = user.tolist()
    for i, s in enumerate(state.tolist()):
        if s in fixed:
            out.append(fixed[s])
        elif s == IDLE_STOP:
            out.append("idle: GPU utilization under 5% for 2h; stopped by the idle policy")
        elif s == USER_STOP:
            out.append(f"stopped by {users[user_of[i]]}")
        else:
            out.append(f"node {names[node_of[i]]} has no trace of it")
    return out


def _events(ids: np.ndarray, submitted: np.ndarray, start: np.ndarray, end: np.ndarray,
            state: np.ndarray, user: np.ndarray, users: list[str], reason: list[str],
            node_names: np.ndarray, start_hour: int) -> pa.Table:
    n = len(ids)
    nodes = pa.array(node_names.tolist(), pa.string())
    placed = pc.binary_join_element_wise("placed on ", nodes, "")
    started = pc.binary_join_element_wise("started on ", nodes, "")
    why = np.empty((n, 4), dtype=object)
    why[:, 0] = "submitted"
    why[:, 1] = placed.to_numpy(zero_copy_only=False)
    why[:, 2] = started.to_numpy(zero_copy_only=False)
    why[:, 3] = reason
    ts = np.stack([submitted, start - 1.0 / 3600, start, end], axis=1).ravel()
    # states: 0 queued, 1 starting, 2 running, 3.. the end states
    names = [JobState.QUEUED, JobState.STARTING, JobState.RUNNING, *STATES]
    from_code = np.tile(np.array([-1, 0, 1, 2]), n)
    to_code = np.stack([np.zeros(n, np.int64), np.ones(n, np.int64), np.full(n, 2),
                        3 + state], axis=1).ravel()
    actors = [*users, "scheduler", "policy:idle"]
    last_actor = np.where(state == IDLE_STOP, len(users) + 1,
                          np.where(state == USER_STOP, user, len(users)))
    actor = np.stack([user, np.full(n, len(users)), np.full(n, len(users)), last_actor],
                     axis=1).ravel()
    return pa.table({
        "ts": ts_array(start_hour, ts),
        "job_id": pa.array(np.repeat(ids, 4)),
        "from_state": pa.DictionaryArray.from_arrays(
            pa.array(np.maximum(from_code, 0).astype(np.int32), mask=from_code < 0),
            pa.array(names)),
        "to_state": dict_array(to_code, names),
        "reason": pa.array(why.ravel(), pa.string()),
        "actor": dict_array(actor, actors),
    })


def _actions(ids: np.ndarray, submitted: np.ndarray, end: np.ndarray, state: np.ndarray,
             user: np.ndarray, users: list[str], gpus: np.ndarray, name: pa.Array,
             start_hour: int) -> pa.Table:
    user_names = [users[u] for u in user.tolist()]
    ts: list[float] = submitted.tolist()
    actor = list(user_names)
    action = ["submit"] * len(ids)
    target = [str(i) for i in ids.tolist()]
    reason = pc.binary_join_element_wise(name, ": 1 task(s)", "").to_pylist()
    evidence = [f'{{"gpus": {g}, "executor": "process"}}' for g in gpus.tolist()]
    for i in np.nonzero(state == IDLE_STOP)[0].tolist():
        ts += [float(end[i]) - 0.5, float(end[i])]
        actor += ["policy:idle", "policy:idle"]
        action += ["idle_warn", "idle_stop"]
        target += [str(ids[i])] * 2
        reason += ["idle 1h30m: GPU utilization under 5%; stop in 30m",
                   "idle 2h, warned 30m ago: GPU utilization under 5%"]
        evidence += ['{"window_s": 1800, "gpu_util_threshold_pct": 5.0}'] * 2
    for i in np.nonzero(state == USER_STOP)[0].tolist():
        ts.append(float(end[i]))
        actor.append(user_names[i])
        action.append("stop")
        target.append(str(ids[i]))
        reason.append(f"stopped by {user_names[i]}")
        evidence.append("{}")
    k = len(ts)
    return pa.table({
        "ts": ts_array(start_hour, np.array(ts)),
        "actor": pa.array(actor, pa.string()),
        "action": pa.array(action, pa.string()),
        "target_kind": pa.array(["job"] * k, pa.string()),
        "target": pa.array(target, pa.string()),
        "reason": pa.array(reason, pa.string()),
        "evidence": pa.array(evidence, pa.string()),
        "dry_run": pa.array(np.zeros(k, dtype=bool)),
    })

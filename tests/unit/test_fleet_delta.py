"""`fleet_delta`'s versions (`svc_fleet.FleetAnswer`): a node that changes is stamped with a
new version and only it is in the next delta; a node gone is named; a cursor older than the
names kept, or from an earlier engine run, gets the whole fleet."""

from __future__ import annotations

import random

import msgspec

from console.engine import svc_fleet
from console.engine.api.replies import FleetNode, GpuInfo
from console.engine.svc_fleet import FleetAnswer
from console.fleet_mirror import FleetMirror


def node(name: str, util: float = 0.0, gpus: list[GpuInfo] | None = None) -> FleetNode:
    return FleetNode(name=name, pool=None, state="up", state_reason=None, cordoned=False,
                     drained_reason=None, cpu_count=8, cpu_util_pct=util, mem_used_bytes=1,
                     mem_total_bytes=2, gpus=gpus or [], jobs=[], processes=[], containers=[])


def gpu(index: int, util: float = 0.0, jobs: tuple[int, ...] = ()) -> GpuInfo:
    return GpuInfo(index=index, model="H100", util_pct=util, mem_used_bytes=10,
                   mem_total_bytes=80, alloc_milli=1000 * len(jobs), jobs=list(jobs),
                   idle=False, healthy=True, uuid=f"GPU-{index}", temp_c=40.0, power_w=100.0)


def test_delta_carries_the_changed_node_and_names_the_removed_one() -> None:
    answer = FleetAnswer(start_version=1000)
    fleet = [node("a"), node("b"), node("c")]
    answer.get(0.0, "k", lambda: fleet)
    first = answer.delta(None)
    assert first.full and [n.name for n in first.nodes] == ["a", "b", "c"]

    answer.get(2.0, "k", lambda: [node("a"), node("b"), node("c")])  # equal: same version
    assert answer.delta(first.cursor).cursor == first.cursor
    assert answer.delta(first.cursor).nodes == []

    answer.get(5.0, "k", lambda: [node("a"), node("b")])
    gone = answer.delta(first.cursor)
    assert not gone.full and gone.cursor > first.cursor
    assert gone.nodes == [] and gone.removed == ["c"]

    answer.get(10.0, "k", lambda: [node("a"), node("b", util=50.0)])
    changed = answer.delta(first.cursor)
    assert changed.cursor > first.cursor and not changed.full
    assert [(n.name, n.cpu_util_pct) for n in changed.nodes] == [("b", 50.0)]
    assert changed.removed == ["c"]
    assert answer.delta(first.cursor) is changed  # shared: encoded once for every caller
    assert answer.delta(changed.cursor).nodes == []


def test_old_or_foreign_cursor_gets_the_whole_fleet(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(svc_fleet, "MAX_REMOVED", 2)
    answer = FleetAnswer(start_version=1000)
    names = ["a", "b", "c", "d", "e"]
    answer.get(0.0, 0, lambda: [node(n) for n in names])
    old = answer.delta(None).cursor
    for i in range(1, 5):  # four removals, two names kept
        answer.get(float(i * 10), i, lambda k=i: [node(n) for n in names[k:]])
    whole = answer.delta(old)
    assert whole.full and [n.name for n in whole.nodes] == ["e"] and whole.removed == []
    assert answer.delta(1).full  # a cursor from an earlier run is older than this run's
    assert answer.delta(whole.cursor + 5).full  # nor one this engine never gave
    recent = answer.delta(whole.cursor - 1)
    assert not recent.full and recent.removed == ["d"]


def test_list_answers_and_deltas_leave_out_processes_and_containers() -> None:
    """The Fleet screen's answers (a list without `detail`, every delta) carry no processes
    or containers; `detail` (the Node screen) does. A light node is the same object while
    its node is, so the server's encoded copy is reused."""
    proc = {"pid": 7, "gpu_index": 0, "gpu_mem_used_bytes": 1, "command": "python train.py",
            "container_id": None, "job_id": None}
    busy = msgspec.structs.replace(node("a"), processes=[proc])
    answer = FleetAnswer(start_version=1000)
    answer.get(0.0, "k", lambda: [busy, node("b")])
    light = answer.get(0.5, "k", lambda: [], detail=False)
    assert [(n.name, n.processes) for n in light] == [("a", []), ("b", [])]
    assert answer.get(0.6, "k", lambda: [])[0].processes == [proc]
    first = answer.delta(None)
    assert first.nodes == light and first.nodes[0] is light[0]
    answer.get(2.0, "k", lambda: [busy, node("b", util=9.0)])  # a unchanged, b changed
    again = answer.get(2.1, "k", lambda: [], detail=False)
    assert again[0] is light[0] and again[1].cpu_util_pct == 9.0
    assert [n.name for n in answer.delta(first.cursor).nodes] == ["b"]
    assert answer.delta(first.cursor).nodes[0].processes == []


def test_a_mirror_follows_the_engine_through_deltas_and_a_full_answer() -> None:
    """The Fleet screen's copy (`FleetMirror`): merged by name, removed names dropped, and a
    `full` answer (a new engine run) replacing it; it reads like `fleet`, by name."""
    answer = FleetAnswer(start_version=1000)
    mirror = FleetMirror()
    answer.get(0.0, 0, lambda: [node("b"), node("a"), node("c")])
    mirror.apply(answer.delta(mirror.cursor))
    answer.get(2.0, 1, lambda: [node("a", util=5.0), node("c"), node("d")])
    mirror.apply(answer.delta(mirror.cursor))
    assert [(n.name, n.cpu_util_pct) for n in mirror.by_name()] == [
        ("a", 5.0), ("c", 0.0), ("d", 0.0)]
    restarted = FleetAnswer(start_version=2000)
    restarted.get(0.0, 0, lambda: [node("z")])
    mirror.apply(restarted.delta(mirror.cursor))
    assert [n.name for n in mirror.by_name()] == ["z"]


def test_a_node_that_only_took_a_sample_comes_as_its_readings() -> None:
    """Asked with `readings`, a node whose record changed only in its readings (utilization,
    memory used, temperature, power, load, last seen) since the cursor comes as those
    readings, a quarter of its bytes; one whose jobs or flags changed comes whole, as does
    every changed node without `readings`."""
    answer = FleetAnswer(start_version=1000)
    answer.get(0.0, 0, lambda: [node("a", gpus=[gpu(0), gpu(1)]), node("b", gpus=[gpu(0)])])
    first = answer.delta(None, readings=True)
    assert first.full and first.readings == []
    sampled = node("a", util=30.0, gpus=[gpu(0, util=99.0), gpu(1)])
    placed = node("b", gpus=[gpu(0, jobs=(7,))])
    answer.get(2.0, 1, lambda: [sampled, placed])
    d = answer.delta(first.cursor, readings=True)
    assert [n.name for n in d.nodes] == ["b"] and [r.name for r in d.readings] == ["a"]
    (r,) = d.readings
    assert r.cpu_util_pct == 30.0 and [g.util_pct for g in r.gpus] == [99.0, 0.0]
    whole = answer.delta(first.cursor)
    assert [n.name for n in whole.nodes] == ["a", "b"] and whole.readings == []
    assert answer.delta(first.cursor, readings=True) is d  # shared: encoded once

    cordoned = msgspec.structs.replace(sampled, cordoned=True, cpu_util_pct=5.0)
    answer.get(4.0, 2, lambda: [cordoned, placed])
    assert [n.name for n in answer.delta(d.cursor, readings=True).nodes] == ["a"]
    since_first = answer.delta(first.cursor, readings=True)  # a's shape changed after it
    assert [n.name for n in since_first.nodes] == ["a", "b"] and since_first.readings == []


def test_a_mirror_kept_by_readings_reads_as_the_fleet() -> None:
    """Through random samples, placements, cordons, nodes joining and leaving, and polls
    every few builds, a copy kept by `readings` deltas is always the fleet list."""
    rng = random.Random(7)
    answer = FleetAnswer(start_version=1000)
    fleet = {f"n{i}": node(f"n{i}", gpus=[gpu(0), gpu(1)]) for i in range(12)}
    mirror = FleetMirror()
    carried = {"nodes": 0, "readings": 0}
    for step in range(300):
        name = rng.choice(sorted(fleet))
        n, roll = fleet[name], rng.random()
        if roll < 0.6:  # a new sample
            fleet[name] = msgspec.structs.replace(
                n, cpu_util_pct=rng.uniform(0, 100), last_seen=float(step),
                gpus=[msgspec.structs.replace(g, util_pct=rng.uniform(0, 100)) for g in n.gpus])
        elif roll < 0.8:  # a placement on GPU 0
            fleet[name] = msgspec.structs.replace(
                n, jobs=[step], gpus=[gpu(0, util=n.gpus[0].util_pct or 0.0, jobs=(step,)),
                                      *n.gpus[1:]])
        elif roll < 0.9:
            fleet[name] = msgspec.structs.replace(n, cordoned=not n.cordoned)
        elif roll < 0.95 and len(fleet) > 2:
            del fleet[name]
        else:
            fleet[f"m{step}"] = node(f"m{step}", gpus=[gpu(0)])
        answer.get(float(step), step, lambda: [fleet[k] for k in sorted(fleet)])
        if rng.random() < 0.3:
            delta = answer.delta(mirror.cursor, readings=True)
            carried["nodes"] += len(delta.nodes) if not delta.full else 0
            carried["readings"] += len(delta.readings)
            mirror.apply(delta)
            assert mirror.by_name() == answer.get(float(step), step, lambda: [], detail=False)
    assert carried["nodes"] > 20 and carried["readings"] > 20  # both kinds were followed

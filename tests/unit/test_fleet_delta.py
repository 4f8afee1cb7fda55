"""`fleet_delta`'s versions (`svc_fleet.FleetAnswer`): a node that changes is stamped with a
new version and only it is in the next delta; a node gone is named; a cursor older than the
names kept, or from an earlier engine run, gets the whole fleet."""

from __future__ import annotations

import msgspec

from console.engine import svc_fleet
from console.engine.api.replies import FleetNode
from console.engine.svc_fleet import FleetAnswer
from console.fleet_mirror import FleetMirror


def node(name: str, util: float = 0.0) -> FleetNode:
    return FleetNode(name=name, pool=None, state="up", state_reason=None, cordoned=False,
                     drained_reason=None, cpu_count=8, cpu_util_pct=util, mem_used_bytes=1,
                     mem_total_bytes=2, gpus=[], jobs=[], processes=[], containers=[])


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

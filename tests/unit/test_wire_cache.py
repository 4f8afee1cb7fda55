"""The server encodes a large answer shared between callers once (by identity)."""

from __future__ import annotations

import msgspec

from console.engine.api.replies import FleetDelta, FleetNode, GpuInfo, Submitted
from console.engine.protocol import encode
from console.engine.server import WireCache
from console.engine.svc_fleet import readings_of


def test_a_shared_list_is_encoded_once_and_reads_the_same() -> None:
    cache = WireCache()
    shared = [Submitted(ids=[i]) for i in range(WireCache.MIN_ITEMS)]
    first = cache.raw(shared)
    assert isinstance(first, msgspec.Raw) and cache.raw(shared) is first
    assert encode({"id": 1, "result": first}) == encode({"id": 1, "result": shared})
    copy = list(shared)  # an equal answer built anew is encoded anew
    assert cache.raw(copy) is not first
    small = shared[:3]
    assert cache.raw(small) is small  # small answers go as they are
    for _ in range(WireCache.KEEP + 1):  # bounded: the oldest entries go
        cache.raw(list(shared))
    assert cache.raw(shared) is not first


def _node(i: int, util: float = 0.0) -> FleetNode:
    gpu = GpuInfo(index=0, model="H100", util_pct=util, mem_used_bytes=1, mem_total_bytes=2,
                  alloc_milli=0, jobs=[], idle=False, healthy=True)
    return FleetNode(name=f"n{i:04d}", pool=None, state="up", state_reason=None,
                     cordoned=False, drained_reason=None, cpu_count=8, cpu_util_pct=1.0,
                     mem_used_bytes=1, mem_total_bytes=2, gpus=[gpu], jobs=[i],
                     processes=[], containers=[], labels={"rack": 'r"1'})


def test_fleet_answers_are_joined_from_nodes_encoded_once() -> None:
    """A fleet list and a delta read exactly as encoding them whole, removed names with
    quotes included; a node that is the same object is not encoded again."""
    cache = WireCache()
    nodes = [_node(i) for i in range(WireCache.MIN_ITEMS + 10)]
    whole = cache.raw(nodes)
    assert encode({"id": 1, "result": whole}) == encode({"id": 1, "result": nodes})
    nodes2 = [*nodes[:-1], _node(len(nodes) - 1, util=50.0)]
    delta = FleetDelta(cursor=7, full=False, nodes=nodes2, removed=['x"nodes":[]', "gone"])
    raw = cache.raw(delta)
    assert encode({"id": 2, "result": raw}) == encode({"id": 2, "result": delta})
    assert msgspec.json.decode(bytes(raw), type=FleetDelta) == delta
    first = cache._items[id(nodes[0])][1]
    cache.raw(FleetDelta(cursor=8, full=True, nodes=nodes2))
    assert cache._items[id(nodes[0])][1] is first  # reused, not encoded again


def test_a_delta_with_readings_reads_as_encoded_whole() -> None:
    """A delta's `readings` (nodes that only took a new sample) are spliced in beside its
    `nodes`: it decodes to the same delta; a small one goes as it is."""
    cache = WireCache()
    nodes = [_node(i, util=float(i)) for i in range(WireCache.MIN_ITEMS)]
    delta = FleetDelta(cursor=9, full=False, nodes=nodes[:2], removed=['"readings":[]'],
                       readings=[readings_of(n) for n in nodes[2:]])
    raw = cache.raw(delta)
    assert isinstance(raw, msgspec.Raw)
    assert encode({"id": 3, "result": raw}) == encode({"id": 3, "result": delta})
    assert msgspec.json.decode(bytes(raw), type=FleetDelta) == delta
    small = FleetDelta(cursor=9, full=False, nodes=[], readings=[readings_of(nodes[0])])
    assert cache.raw(small) is small

"""`fleet_delta` on a real engine over two bed sshd nodes: the first call is the whole fleet;
after one node is cordoned the delta from that cursor carries that node only; a cursor from
before this engine run gets the whole fleet again; asked with `readings`, a node that only
took a new sample comes as its readings, and a copy kept so reads as the whole fleet.
(Removal is covered in tests/unit/test_fleet_delta.py: nodes leave the config only across a
restart.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from console.engine.api.replies import FleetDelta
from console.fleet_mirror import FleetMirror
from tests.bed.fake_nvml import FakeGpu
from tests.integration.policies_bed import Engine, node_toml

pytestmark = [pytest.mark.ssh]


def test_delta_after_a_cordon_carries_that_node_only(ssh_nodes: Any, tmp_path: Path) -> None:
    a, b = ssh_nodes(2, fake_nvml={0: [FakeGpu()] * 2, 1: [FakeGpu()] * 2})
    # one sample per node, then none for the test's length: only the cordon changes a record
    eng = Engine(tmp_path, node_toml(a) + node_toml(b), known_hosts=a.known_hosts,
                 interval_s=3600)
    with eng.serving():
        sampled = eng.wait("a sample of each node", lambda: (
            d := eng.call("fleet_delta"))["full"] and len(d["nodes"]) == 2
            and all(n["last_seen"] and n["gpus"] for n in d["nodes"]) and d)
        cursor = sampled["cursor"]
        assert sorted(n["name"] for n in sampled["nodes"]) == sorted([a.name, b.name])
        unchanged = eng.call("fleet_delta", since=cursor)
        assert not unchanged["full"] and unchanged["nodes"] == [] and unchanged["removed"] == []

        eng.cli("cordon", a.name, "--reason", "delta test")
        delta = eng.wait("the cordon in a delta", lambda: (
            d := eng.call("fleet_delta", since=cursor))["nodes"] and d)
        assert not delta["full"] and delta["cursor"] > cursor and delta["removed"] == []
        assert [(n["name"], n["cordoned"]) for n in delta["nodes"]] == [(a.name, True)]
        fleet = {n["name"]: n for n in eng.call("fleet")}
        assert delta["nodes"][0] == fleet[a.name]  # the same record `fleet` answers

        old = eng.call("fleet_delta", since=1)  # a cursor from before this engine run
        assert old["full"] and old["cursor"] == delta["cursor"]
        assert sorted(n["name"] for n in old["nodes"]) == sorted([a.name, b.name])


def test_new_samples_come_as_readings(ssh_nodes: Any, tmp_path: Path) -> None:
    a, b = ssh_nodes(2, fake_nvml={0: [FakeGpu()] * 2, 1: [FakeGpu()]})
    eng = Engine(tmp_path, node_toml(a) + node_toml(b), known_hosts=a.known_hosts,
                 interval_s=1)
    mirror = FleetMirror()

    def poll() -> FleetDelta:
        d = msgspec.convert(eng.call("fleet_delta", since=mirror.cursor, readings=True),
                            FleetDelta)
        mirror.apply(d)
        return d

    with eng.serving():
        eng.wait("a sample of each node", lambda: (d := poll()) and len(mirror.nodes) == 2
                 and all(n.last_seen and n.gpus for n in mirror.nodes.values()) and d)
        seen = {n.name: n.last_seen for n in mirror.nodes.values()}
        d = eng.wait("a later sample as readings", lambda: (
            d := poll()) and not d.full and d.readings and d)
        assert d.nodes == [] and {r.name for r in d.readings} <= {a.name, b.name}
        for r in d.readings:
            assert r.last_seen is not None and r.last_seen > (seen[r.name] or 0)
            assert len(r.gpus) == len(mirror.nodes[r.name].gpus)

        def same_as_whole() -> bool:
            poll()
            whole = msgspec.convert(eng.call("fleet_delta"), FleetDelta)
            return whole.cursor == mirror.cursor and whole.nodes == mirror.by_name()

        eng.wait("the copy reads as the whole fleet", same_as_whole)

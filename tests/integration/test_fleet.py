"""The fleet collector on real sshd bed nodes: records reach DuckDB, a killed node goes
unreachable within two intervals while the others keep their interval and comes back without a
restart, a killed probe is restarted, a frozen probe degrades only its own node, and
`collect_once` + its formatter report the fleet."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest

from collectors.fleet import FleetCollector, collect_once, format_view
from collectors.health import Backoff, FleetView
from collectors.ingest import IngestBuffer
from collectors.models import ProbeRecord
from collectors.store import Store
from collectors.transport import NodeTarget
from tests.bed.fake_nvml import GIB, FakeGpu
from tests.bed.ssh import SshNode

pytestmark = [pytest.mark.ssh, pytest.mark.slow]

INTERVAL_S = 1.0


def target(node: SshNode, *, docker: bool = False) -> NodeTarget:
    return NodeTarget(
        name=node.name, host=node.host, port=node.port, user=node.user,
        identity_file=node.identity_file,
        docker_socket=str(node.docker_socket) if docker and node.docker_socket else "",
    )


def process_exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def state(view: FleetView, name: str) -> str:
    return view.nodes[name].health.state


def all_up(view: FleetView) -> bool:
    return all(n.health.state == "up" for n in view.nodes.values())


class Arrivals:
    """When each node's records arrived (local clock)."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)
        self.records: list[ProbeRecord] = []

    def __call__(self, rec: ProbeRecord) -> None:
        self.times[rec.node].append(time.time())
        self.records.append(rec)


async def test_records_reach_duckdb_and_a_killed_node_recovers(
    ssh_nodes, tmp_path: Path
) -> None:
    gpus = [FakeGpu(util_pct=70, mem_used_bytes=10 * GIB), FakeGpu()]
    nodes = ssh_nodes(3, fake_nvml={0: gpus}, fresh=True)
    gpu_node, victim, other = nodes
    buf = IngestBuffer()
    arrivals = Arrivals()

    def on_record(rec: ProbeRecord) -> None:
        arrivals(rec)
        buf.add(rec)

    fc = FleetCollector([target(n) for n in nodes], interval_s=INTERVAL_S,
                        known_hosts=gpu_node.known_hosts, on_record=on_record,
                        on_rows=buf.add_rows, docker=False,
                        backoff=Backoff(base_s=0.2, max_s=1.0))
    async with fc:
        view = await fc.wait_for(all_up, timeout_s=60)
        assert view.counts()["up"] == 3
        # Let every node deliver a few samples at its interval.
        await fc.wait_for(lambda v: all(n.record is not None and n.record.seq >= 3
                                        for n in v.nodes.values()), timeout_s=30)

        connects_before = fc.view().nodes[victim.name].connects
        victim.stop()
        view = await fc.wait_for(lambda v: state(v, victim.name) == "unreachable",
                                 timeout_s=30)
        assert victim.name in view.nodes[victim.name].health.reason
        assert state(view, gpu_node.name) == "up" and state(view, other.name) == "up"

        # the others keep delivering while the victim is down: 3 more samples each (an event,
        # not a cadence measured against the clock)
        before = {name: len(arrivals.times[name]) for name in (gpu_node.name, other.name)}
        await fc.wait_for(lambda v: all(len(arrivals.times[n]) >= k + 3
                                        for n, k in before.items()), timeout_s=60)
        for name in (gpu_node.name, other.name):
            assert state(fc.view(), name) == "up"
        assert state(fc.view(), victim.name) == "unreachable"

        victim.start()
        seen = len(arrivals.times[victim.name])
        view = await fc.wait_for(
            lambda v: state(v, victim.name) == "up"
            and len(arrivals.times[victim.name]) > seen, timeout_s=30)
        assert view.nodes[victim.name].connects > connects_before

    # The GPU node's fake GPUs and every node's host samples are in the records...
    gpu_rec = next(r for r in reversed(arrivals.records) if r.node == gpu_node.name)
    assert gpu_rec.gpu_source == "nvml"
    assert [g.model for g in gpu_rec.gpus] == ["NVIDIA A100-SXM4-80GB"] * 2
    assert gpu_rec.gpus[0].util_pct == 70 and gpu_rec.gpus[0].mem_used_bytes == 10 * GIB
    plain = next(r for r in reversed(arrivals.records) if r.node == other.name)
    assert plain.gpus == () and plain.host.mem_total_bytes and plain.host.cpu_count

    # ...and in DuckDB after one batched flush.
    with Store.open(tmp_path / "fleet.duckdb") as store:
        buf.flush(store)
        per_node = dict(store.con.execute(
            "SELECT node, count(*) FROM node_samples GROUP BY node").fetchall())
        assert set(per_node) == {n.name for n in nodes}
        assert all(count >= 3 for count in per_node.values())
        gpu_rows = store.con.execute(
            "SELECT DISTINCT node, gpu_index, model FROM gpu_samples ORDER BY gpu_index"
        ).fetchall()
        assert gpu_rows == [(gpu_node.name, 0, "NVIDIA A100-SXM4-80GB"),
                            (gpu_node.name, 1, "NVIDIA A100-SXM4-80GB")]


async def test_a_killed_probe_is_restarted_on_the_same_connection(ssh_nodes) -> None:
    (node,) = ssh_nodes(1)
    fc = FleetCollector([target(node)], interval_s=INTERVAL_S, known_hosts=node.known_hosts,
                        docker=False)
    async with fc:
        view = await fc.wait_for(lambda v: v.nodes[node.name].record is not None, 60)
        first = view.nodes[node.name]
        assert first.hello is not None and first.hello.pid and first.probe_mode == "python"
        os.kill(first.hello.pid, signal.SIGKILL)
        view = await fc.wait_for(
            lambda v: (n := v.nodes[node.name]).hello is not None
            and n.hello.pid != first.hello.pid and n.record is not None
            and n.record.ts > (first.record.ts if first.record else 0)
            and n.health.state == "up", timeout_s=30)
        again = view.nodes[node.name]
        assert again.probe_restarts >= 1
        assert again.connects == first.connects  # no reconnect was needed


async def test_a_frozen_probe_degrades_only_its_node(ssh_nodes) -> None:
    slow, fine = ssh_nodes(2)
    arrivals = Arrivals()
    fc = FleetCollector([target(slow), target(fine)], interval_s=INTERVAL_S,
                        known_hosts=slow.known_hosts, on_record=arrivals, docker=False)
    async with fc:
        view = await fc.wait_for(lambda v: all(n.record is not None
                                               for n in v.nodes.values()), 60)
        await fc.wait_for(all_up, 30)
        pid = fc.view().nodes[slow.name].hello.pid  # type: ignore[union-attr]
        assert pid
        os.kill(pid, signal.SIGSTOP)
        try:
            view = await fc.wait_for(lambda v: state(v, slow.name) == "degraded", 10)
            assert "no sample for" in view.nodes[slow.name].health.reason
            assert state(view, fine.name) == "up"
            # the frozen node holds nobody up: the fine one keeps delivering samples meanwhile
            seen = len(arrivals.times[fine.name])
            view = await fc.wait_for(lambda v: len(arrivals.times[fine.name]) >= seen + 3, 30)
            assert state(view, slow.name) == "degraded" and state(view, fine.name) == "up"
        finally:
            os.kill(pid, signal.SIGCONT)
        await fc.wait_for(lambda v: state(v, slow.name) == "up", 20)


async def test_collect_once_reports_every_node_and_formats(ssh_nodes) -> None:
    up_a, up_b = ssh_nodes(2)
    (down,) = ssh_nodes(1, fresh=True)
    down.stop()
    nodes = [target(up_a), target(up_b), target(down),
             NodeTarget("here", transport="local", docker_socket="")]
    # a node that is down is reported as such, it does not hold the others: no clock needed,
    # collect_once returning with every node's state is the event
    view = await collect_once(nodes, known_hosts=up_a.known_hosts, timeout_s=20,
                              docker=False)
    assert state(view, up_a.name) == "up" and state(view, up_b.name) == "up"
    assert state(view, "here") == "up"
    assert state(view, down.name) == "unreachable"
    assert "connection refused" in view.nodes[down.name].health.reason
    rec = view.nodes[up_a.name].record
    assert rec is not None and rec.host.mem_total_bytes and rec.host.cpu_count

    table = format_view(view, "table")
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["NODE", "STATE"]
    assert any(line.startswith(down.name) and "unreachable" in line for line in lines)
    assert "3 up, 1 unreachable" in table

    data = json.loads(format_view(view, "json"))
    assert data["nodes"][up_b.name]["health"]["state"] == "up"
    assert data["nodes"][up_b.name]["record"]["host"]["mem_total_bytes"] == \
        view.nodes[up_b.name].record.host.mem_total_bytes  # type: ignore[union-attr]


async def test_nodes_join_and_leave_while_running(ssh_nodes) -> None:
    first, joiner = ssh_nodes(2)
    fc = FleetCollector([target(first)], interval_s=INTERVAL_S, known_hosts=first.known_hosts,
                        docker=False)
    async with fc:
        await fc.wait_for(all_up, 60)
        await fc.add_node(target(joiner))
        view = await fc.wait_for(lambda v: joiner.name in v.nodes and all_up(v), 60)
        assert set(view.nodes) == {first.name, joiner.name}
        with pytest.raises(ValueError):
            await fc.add_node(target(joiner))
        pid = view.nodes[joiner.name].hello.pid  # type: ignore[union-attr]
        transport = fc.transport(joiner.name)
        await fc.remove_node(joiner.name)
        assert set(fc.view().nodes) == {first.name}
        assert not transport.connected
        for _ in range(50):  # the probe exits as soon as its channel closes
            if pid is None or not process_exists(pid):
                break
            await asyncio.sleep(0.1)
        assert pid is not None and not process_exists(pid)
        await fc.wait_for(lambda v: (r := v.nodes[first.name].record) is not None
                          and r.ts > time.time() - 2 * INTERVAL_S, 10)


def path_without_python(folder: Path) -> str:
    """A PATH holding only what the shell probe uses: a node without python3."""
    folder.mkdir()
    for tool in ("sh", "awk", "cat", "date", "df", "kill", "sleep", "uname", "stat"):
        found = next((Path(d) / tool for d in ("/usr/bin", "/bin") if (Path(d) / tool).exists()),
                     None)
        assert found is not None, tool
        (folder / tool).symlink_to(found.resolve())
    return str(folder)


async def test_a_node_without_python3_gets_the_shell_probe(ssh_nodes, tmp_path: Path) -> None:
    (node,) = ssh_nodes(1)
    env = {"PATH": path_without_python(tmp_path / "bin")}
    fc = FleetCollector([target(node)], interval_s=INTERVAL_S, known_hosts=node.known_hosts,
                        docker=False, probe_env={node.name: env})
    async with fc:
        view = await fc.wait_for(lambda v: (r := v.nodes[node.name].record) is not None
                                 and r.seq >= 2, 60)
    got = view.nodes[node.name]
    assert got.probe_mode == "shell" and got.hello is not None and got.hello.mode == "shell"
    assert got.health.state == "up", got.health.reason
    assert got.record is not None and got.record.host.mem_total_bytes
    assert got.record.host.cpu_util_pct is not None and got.record.gpus == ()

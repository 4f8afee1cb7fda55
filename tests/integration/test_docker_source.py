"""Docker through the SSH-forwarded socket: a container started on a bed node's own dockerd
appears with its labels, job id, stats and requested GPU devices, in the fleet view and in
DuckDB."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker.types import DeviceRequest

from collectors.fleet import FleetCollector, collect_once
from collectors.health import FleetView
from collectors.ingest import IngestBuffer
from collectors.sources.docker import ContainerSample, DockerError, DockerSource
from collectors.store import Store
from collectors.transport import NodeTarget, SshOptions, SshTransport
from tests.bed.ssh import SshNode

pytestmark = [pytest.mark.ssh, pytest.mark.docker, pytest.mark.slow]

INTERVAL_S = 1.0
LABELS = {"fleetdeck.job": "7", "fleetdeck.user": "alice", "team": "vision"}


def target(node: SshNode) -> NodeTarget:
    return NodeTarget(name=node.name, host=node.host, port=node.port, user=node.user,
                      identity_file=node.identity_file, docker_socket=str(node.docker_socket))


@pytest.fixture
def docker_node(ssh_nodes, docker_image) -> Iterator[tuple[SshNode, Any, str]]:
    (node,) = ssh_nodes(1, docker=True)
    image = docker_image(node)
    client = node.docker.client()
    try:
        yield node, client, image
    finally:
        for c in client.containers.list(all=True, filters={"label": "fleetdeck.test"}):
            c.remove(force=True)
        client.close()


def start_containers(client: Any, image: str) -> tuple[Any, Any]:
    busy = client.containers.run(
        image, ["sh", "-c", "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; sleep 600"],
        detach=True, name=f"train-{time.time_ns()}", mem_limit="64m",
        labels={**LABELS, "fleetdeck.test": "1"},
    )
    # Created, not started: no GPU runtime here, but the device request is recorded.
    gpu = client.containers.create(
        image, ["sleep", "600"], name=f"gpu-{time.time_ns()}",
        labels={"fleetdeck.test": "1"},
        device_requests=[DeviceRequest(driver="nvidia", device_ids=["0", "2"],
                                       capabilities=[["gpu"]])],
    )
    return busy, gpu


def find(view: FleetView, node: str, cid: str) -> ContainerSample | None:
    containers = view.nodes[node].containers or ()
    return next((c for c in containers if c.container_id == cid), None)


async def test_container_appears_with_labels_stats_and_gpus(docker_node, tmp_path: Path) -> None:
    node, client, image = docker_node
    busy, gpu = start_containers(client, image)
    buf = IngestBuffer()
    fc = FleetCollector([target(node)], interval_s=INTERVAL_S, known_hosts=node.known_hosts,
                        on_record=buf.add, on_rows=buf.add_rows)
    async with fc:
        view = await fc.wait_for(
            lambda v: (c := find(v, node.name, busy.id)) is not None
            and c.cpu_util_pct is not None and find(v, node.name, gpu.id) is not None,
            timeout_s=60)
    running = find(view, node.name, busy.id)
    assert running is not None
    assert running.name == busy.name and running.state == "running"
    assert running.image.startswith("fleetdeck-test/busybox")
    assert {k: running.labels[k] for k in LABELS} == LABELS
    assert running.job_id == 7
    assert running.started_at is not None and abs(running.started_at - time.time()) < 120
    assert running.cpu_util_pct is not None and running.cpu_util_pct >= 0
    assert running.mem_used_bytes is not None and running.mem_used_bytes > 0
    assert running.mem_limit_bytes == 64 * 1024 * 1024
    assert running.gpu_devices == ()
    created = find(view, node.name, gpu.id)
    assert created is not None
    assert created.state == "created" and created.gpu_devices == ("0", "2")
    assert created.job_id is None and created.cpu_util_pct is None
    assert view.nodes[node.name].docker_error is None

    with Store.open(tmp_path / "d.duckdb") as store:
        buf.flush(store)
        rows = store.con.execute(
            "SELECT labels, job_id, state, gpu_devices FROM container_samples "
            "WHERE container_id = ? ORDER BY ts DESC LIMIT 1", [busy.id]).fetchall()
        labels, job_id, state, devices = rows[0]
        assert json.loads(labels)["team"] == "vision"
        assert (job_id, state, devices) == (7, "running", [])
        (devices,) = store.con.execute(
            "SELECT gpu_devices FROM container_samples WHERE container_id = ? LIMIT 1",
            [gpu.id]).fetchone()
        assert devices == ["0", "2"]


async def test_source_follows_state_changes_and_reports_a_missing_daemon(
    docker_node, tmp_path: Path
) -> None:
    node, client, image = docker_node
    busy, _gpu = start_containers(client, image)
    t = SshTransport(target(node), SshOptions(known_hosts=node.known_hosts, use_agent=False))
    source = DockerSource(node.name, t, str(node.docker_socket))
    try:
        first = {c.container_id: c for c in await source.sample(time.time())}
        assert first[busy.id].state == "running"
        assert first[busy.id].cpu_util_pct is not None  # first sight: full stats read
        busy.stop(timeout=0)
        after = {c.container_id: c for c in await source.sample(time.time())}
        assert after[busy.id].state == "exited" and after[busy.id].mem_used_bytes is None
        busy.remove()
        gone = {c.container_id for c in await source.sample(time.time())}
        assert busy.id not in gone

        missing = DockerSource(node.name, t, str(tmp_path / "no-docker.sock"))
        with pytest.raises(DockerError) as info:
            await missing.sample(time.time())
        assert "no Docker daemon answers" in str(info.value) and node.name in str(info.value)
        missing.close()
    finally:
        source.close()
        await t.close()


async def test_collect_once_includes_containers(docker_node) -> None:
    node, client, image = docker_node
    busy, _gpu = start_containers(client, image)
    view = await collect_once([target(node)], known_hosts=node.known_hosts, timeout_s=30)
    found = find(view, node.name, busy.id)
    assert found is not None and found.labels["team"] == "vision"
    assert found.cpu_util_pct is not None

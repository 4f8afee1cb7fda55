"""A Slurm pool read over SSH from its login node: partitions, nodes with GRES, running and
pending jobs with user, GPUs, start time and the fleetdeck job id, in the view and in DuckDB."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from collectors.fleet import FleetCollector, collect_once, format_view
from collectors.health import FleetView
from collectors.ingest import IngestBuffer
from collectors.sources.slurm import SlurmSource
from collectors.store import Store
from collectors.transport import NodeTarget, SshOptions, SshTransport, TransportError
from tests.bed.ssh import SshNode

pytestmark = [pytest.mark.ssh, pytest.mark.slurm, pytest.mark.slow]

INTERVAL_S = 1.0


def target(node: SshNode) -> NodeTarget:
    return NodeTarget(name=node.name, host=node.host, port=node.port, user=node.user,
                      identity_file=node.identity_file, docker_socket="", pool="hpc")


def jobs_seen(view: FleetView, *ids: int) -> bool:
    pool = view.slurm["hpc"]
    return {str(i) for i in ids} <= {j.slurm_id for j in pool.jobs} and any(
        j.state == "RUNNING" for j in pool.jobs if j.slurm_id == str(ids[0]))


async def test_slurm_jobs_and_gres_appear(ssh_nodes, slurm_cluster, tmp_path: Path) -> None:
    (login,) = ssh_nodes(1, slurm=True)
    cluster = slurm_cluster
    train = cluster.sbatch("--gres=gpu:2", "--job-name=train run|1",
                           "--comment=fleetdeck.job=42", wrap="sleep 120")
    big = cluster.sbatch(f"--gres=gpu:{cluster.gpus}", "--job-name=fleetdeck-43",
                         wrap="sleep 120")
    buf = IngestBuffer()
    try:
        cluster.wait_job(train, states=("RUNNING",))
        fc = FleetCollector([target(login)], interval_s=INTERVAL_S,
                            known_hosts=login.known_hosts, on_record=buf.add,
                            on_rows=buf.add_rows, slurm_pools={"hpc": login.name},
                            docker=False)
        async with fc:
            view = await fc.wait_for(lambda v: jobs_seen(v, train, big), timeout_s=60)
    finally:
        cluster.run("scancel", str(train), str(big), check=False)

    pool = view.slurm["hpc"]
    assert pool.error is None and pool.login_node == login.name
    (snode,) = [n for n in pool.nodes if n.node == cluster.node_name]
    assert snode.partitions == (cluster.partition,)
    assert snode.gpus == cluster.gpus and snode.gres is not None and "gpu" in snode.gres
    assert snode.gpus_alloc is not None and snode.gpus_alloc >= 2
    assert snode.cpus == cluster.cpus and snode.cpus_alloc is not None and snode.cpus_alloc >= 1
    assert snode.mem_bytes == 8000 * 1024 * 1024
    assert snode.state in ("MIXED", "ALLOCATED", "MIXED+DRAIN") or "MIX" in snode.state

    jobs = {j.slurm_id: j for j in pool.jobs}
    running, pending = jobs[str(train)], jobs[str(big)]
    assert running.name == "train run|1" and running.user == "root"
    assert running.state == "RUNNING" and running.gpus == 2 and running.job_id == 42
    assert running.partition == cluster.partition and running.nodes == cluster.node_name
    assert running.started_at is not None and abs(running.started_at - time.time()) < 300
    assert running.submitted_at is not None and running.submitted_at <= running.started_at
    assert pending.state == "PENDING" and pending.gpus == cluster.gpus
    assert pending.started_at is None and pending.nodes is None and pending.job_id == 43

    with Store.open(tmp_path / "s.duckdb") as store:
        buf.flush(store)
        (count,) = store.con.execute(
            "SELECT count(*) FROM slurm_job_samples WHERE pool = 'hpc' AND slurm_id = ? "
            "AND gpus = 2 AND job_id = 42", [str(train)]).fetchone()
        assert count >= 1
        (gpus,) = store.con.execute(
            "SELECT max(gpus) FROM slurm_node_samples WHERE pool = 'hpc'").fetchone()
        assert gpus == cluster.gpus


async def test_source_reads_the_pool_and_fails_in_one_line(ssh_nodes, slurm_cluster) -> None:
    (login,) = ssh_nodes(1, slurm=True)
    (plain,) = ssh_nodes(1)  # no SLURM_CONF in its sessions: the query must fail clearly
    opts = SshOptions(known_hosts=login.known_hosts, use_agent=False)
    t = SshTransport(target(login), opts)
    bad = SshTransport(target(plain), opts)
    try:
        snap = await SlurmSource("hpc", t).sample(time.time())
        assert any(n.node == slurm_cluster.node_name for n in snap.nodes)
        with pytest.raises(TransportError) as info:
            await SlurmSource("hpc", bad, timeout_s=20).sample(time.time())
        msg = str(info.value)
        assert "\n" not in msg and "slurm pool hpc" in msg and plain.name in msg
    finally:
        await t.close()
        await bad.close()

    view = await collect_once([target(login)], known_hosts=login.known_hosts, timeout_s=30,
                              slurm_pools={"hpc": login.name}, docker=False)
    assert view.slurm["hpc"].error is None
    assert "slurm pool hpc:" in format_view(view, "table")

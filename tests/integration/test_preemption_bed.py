"""Issue #14 on the bed: guarantees lent and reclaimed by preemption, through the real engine.

One fake-NVML node with 2 GPUs (and dockerd) serves the module. Team `borrowers` (bob) fills
both GPUs; team `owners` (alice, 2 GPUs guaranteed) submits; one of bob's jobs gets its
notice (`$FLEETDECK_PREEMPT_FILE`), SIGTERM, writes its checkpoint, is requeued and later
resumes with `FLEETDECK_RESUME=1`; alice's job runs. Then a Docker victim, a Slurm victim (the
bed's one-node Slurm cluster as a pool), then a kill -9 of the engine in the middle of a
preemption. Short grace and minimum runtime keep it quick.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.store import Store
from tests.bed.fake_nvml import FakeGpu
from tests.bed.plugin import BedAccounts, ImageLoader, NodeFactory
from tests.bed.require import require_docker, require_gcc
from tests.bed.ssh import SshBed, SshNode
from tests.helpers import one_line_error
from tests.integration.jobs_e2e import Fleet, fleet_toml

pytestmark = [pytest.mark.ssh]

GRACE_S = 4.0
ALICE, BOB = "fdbed-alice", "fdbed-bob"  # real accounts: jobs run as their owner
TEAMS = f"""
[[teams]]
name = "owners"
gpu_quota = 2
gpu_guaranteed = 2
[[teams]]
name = "borrowers"
gpu_quota = 2
[[users]]
name = "{ALICE}"
team = "owners"
[[users]]
name = "{BOB}"
team = "borrowers"
"""


def config(node: SshNode, grace_s: float = GRACE_S) -> str:
    preemption = (f"preemption = true\npreempt_grace_s = {grace_s}\n"
                  "min_runtime_before_preempt_s = 1.0\nmax_preemptions_per_job = 3\n")
    return fleet_toml([node], extra=TEAMS).replace("[scheduler]\n",
                                                    "[scheduler]\n" + preemption, 1)


def trainer(ckpt: Path, *, stubborn: bool = False) -> str:
    """A training loop: resumes from its checkpoint, or runs until told to stop; on SIGTERM
    with the preempt file present it checkpoints (a stubborn one then ignores the SIGTERM
    and is killed after the grace)."""
    on_term = (f'if [ -e "$FLEETDECK_PREEMPT_FILE" ]; then '
               f'echo "step-7 attempt-$FLEETDECK_ATTEMPT" > {ckpt}-$FLEETDECK_JOB_ID; fi; '
               + ("trap '' TERM" if stubborn else "exit 143"))
    return (f'echo "start $FLEETDECK_JOB_ID $FLEETDECK_ATTEMPT" >> {ckpt}-ledger; '
            'if [ "$FLEETDECK_RESUME" = 1 ]; then '
            f'echo "resumed attempt $FLEETDECK_ATTEMPT from $(cat {ckpt}-$FLEETDECK_JOB_ID)"; '
            "exit 0; fi; "
            f"trap '{on_term}' TERM; echo running; while :; do sleep 0.2; done")


@pytest.fixture(scope="module")
def gpu_node(ssh_bed: SshBed) -> SshNode:
    require_docker()
    require_gcc()
    [node] = ssh_bed.nodes(1, docker=True, fake_nvml={0: [FakeGpu()] * 2})
    return node


@pytest.fixture(scope="module")
def fleet(gpu_node: SshNode, tmp_path_factory: pytest.TempPathFactory,
          bed_accounts: BedAccounts) -> Iterator[Fleet]:
    bed_accounts.user("alice")
    bed_accounts.user("bob")
    yield Fleet(tmp_path_factory.mktemp("preempt"), config(gpu_node))


def fill_with_bob(fleet: Fleet, node: SshNode, script: str, *extra: str) -> list[int]:
    ids = [fleet.submit("--user", BOB, "--gpus", "1", "--cpus", "0.2", "--node", node.name,
                        *extra, "--", "sh", "-c", script)[0] for _ in range(2)]
    fleet.wait_states(ids, ("running",), timeout=180)
    for job in ids:
        fleet.wait_logs(job, "running")
    return ids


def events_of(fleet: Fleet, job: int) -> list[str]:
    with Store.open(fleet.store, read_only=True) as store:
        return [r[0] for r in store.con.execute(
            "SELECT name FROM events WHERE job_id = ? ORDER BY id", [job]).fetchall()]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the jobs' owners may write (pytest's tmp folders are root's alone)."""
    d = Path("/tmp") / f"fdbed-preempt-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    d.chmod(0o1777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.timeout(600)
def test_owner_reclaims_a_gpu_from_process_jobs(fleet: Fleet, gpu_node: SshNode,
                                                shared_dir: Path) -> None:
    ckpt = shared_dir / "ck"
    with fleet.serving():
        res = fleet.run("submit", "--class", "nope", "--", "true")
        assert res.returncode == 2
        assert "class: expected a priority class of the config (batch), got \"nope\"" in \
            one_line_error(res)
        bob = fill_with_bob(fleet, gpu_node, trainer(ckpt), "--executor", "process")
        [alice] = fleet.submit("--user", ALICE, "--gpus", "1", "--cpus", "0.2",
                               "--executor", "process", "--", "sh", "-c",
                               "echo owner-ran; sleep 1")
        rows = fleet.wait_done([alice], timeout=180)
        assert rows[alice]["state"] == "succeeded", rows
        # exactly one of bob's jobs was preempted (one GPU was needed), and resumes
        victim = next(r for r in fleet.jobs() if r["id"] in bob and r["attempt"] == 1)
        other = next(j for j in bob if j != victim["id"])
        done = fleet.wait_done([victim["id"]], timeout=180)[victim["id"]]
        assert (done["state"], done["attempt"], done["preemptions"]) == ("succeeded", 1, 1)
        assert fleet.logs(victim["id"]) == "resumed attempt 1 from step-7 attempt-0\n"
        assert fleet.job(other)["state"] == "running" and fleet.job(other)["attempt"] == 0
        # explain on both says who preempted whom, and why
        for job in (alice, victim["id"]):
            info = fleet.json("explain", str(job))
            [pre] = info["preemptions"]
            assert (pre["victim"], pre["beneficiary"]) == (str(victim["id"]), str(alice))
            assert "team owners is under its guarantee: 0/2 GPUs in use, asks 1" in pre["reason"]
            assert "team borrowers holds 2 GPUs, 0 guaranteed" in pre["reason"]
        assert fleet.run("stop", str(other)).returncode == 0
        fleet.wait_done([other])
    assert events_of(fleet, victim["id"])[:3] == ["job.started", "job.preempted", "job.requeued"]


@pytest.mark.timeout(600)
def test_owner_reclaims_a_gpu_from_a_docker_job(fleet: Fleet, gpu_node: SshNode,
                                                docker_image: ImageLoader) -> None:
    image = docker_image(gpu_node)
    # inside the container the checkpoint goes next to the preempt file (/tmp)
    script = ('if [ "$FLEETDECK_RESUME" = 1 ]; then echo resumed; exit 0; fi; '
              "trap 'test -e \"$FLEETDECK_PREEMPT_FILE\" && echo notice-seen; exit 143' TERM; "
              "echo running; while :; do sleep 0.2; done")
    with fleet.serving():
        bob = fill_with_bob(fleet, gpu_node, script, "--executor", "docker", "--image", image)
        [alice] = fleet.submit("--user", ALICE, "--gpus", "1", "--cpus", "0.2",
                               "--executor", "process", "--", "sh", "-c", "sleep 1")
        assert fleet.wait_done([alice], timeout=180)[alice]["state"] == "succeeded"
        [victim] = [r["id"] for r in fleet.jobs() if r["id"] in bob and r["attempt"] == 1]
        row = fleet.wait_done([victim], timeout=180)[victim]
        assert (row["state"], row["executor"]) == ("succeeded", "docker"), row
        assert fleet.logs(victim) == "resumed\n"
        # the first attempt's container saw the notice before its SIGTERM
        assert gpu_node.docker is not None
        client = gpu_node.docker.client()
        try:
            [first] = client.containers.list(
                all=True, filters={"label": [f"fleetdeck.job={victim}", "fleetdeck.attempt=0"]})
            assert b"notice-seen" in first.logs()
        finally:
            client.close()
        for job in bob:
            fleet.run("stop", str(job))
        fleet.wait_done(bob)


@pytest.mark.timeout(600)
def test_kill_9_in_the_middle_of_a_preemption(fleet: Fleet, gpu_node: SshNode,
                                              shared_dir: Path) -> None:
    ckpt = shared_dir / "ck"
    # a long grace: the stop is still under way when the engine dies
    fleet.reconfigure(config(gpu_node, grace_s=30.0))
    with fleet.serving() as first:
        bob = fill_with_bob(fleet, gpu_node, trainer(ckpt, stubborn=True),
                            "--executor", "process")
        [alice] = fleet.submit("--user", ALICE, "--gpus", "1", "--cpus", "0.2",
                               "--executor", "process", "--", "sh", "-c", "sleep 1")
        # the stubborn victim ignores SIGTERM: it stays `preempted` for the whole grace
        fleet.wait("a victim being preempted",
                   lambda rs: any(r["id"] in bob and r["state"] == "preempted" for r in rs),
                   every_s=0.2)
        first.kill()  # kill -9 mid-stop
        first.wait(30)
    [victim] = [r["id"] for r in fleet.jobs() if r["state"] == "preempted"]
    with fleet.serving():
        assert fleet.wait_done([alice], timeout=180)[alice]["state"] == "succeeded"
        row = fleet.wait_done([victim], timeout=180)[victim]
        assert (row["state"], row["attempt"]) == ("succeeded", 1), row
        assert fleet.logs(victim) == "resumed attempt 1 from step-7 attempt-0\n"
        for job in bob:
            fleet.run("stop", str(job))
        fleet.wait_done(bob)
    # nothing started twice: each attempt of each job started once
    starts = (Path(f"{ckpt}-ledger")).read_text().splitlines()
    assert sorted(starts) == sorted({*starts}), starts
    assert f"start {victim} 0" in starts and f"start {victim} 1" in starts
    with Store.open(fleet.store, read_only=True) as store:
        [(n,)] = store.con.execute("SELECT count(*) FROM actions WHERE action = 'preempt' "
                                   "AND target = ?", [str(victim)]).fetchall()
    assert n == 1


@pytest.mark.slurm
@pytest.mark.timeout(600)
def test_owner_reclaims_a_gpu_from_a_slurm_job(ssh_nodes: NodeFactory, tmp_path: Path,
                                               bed_accounts: BedAccounts,
                                               shared_dir: Path) -> None:
    """The Slurm pool (one Slurm node, its GPUs as GRES) is a node of the plan: bob's Slurm
    jobs fill it, alice's Slurm job reclaims one with `scancel --signal=TERM` and notice."""
    bed_accounts.user("alice")
    bed_accounts.user("bob")
    [login] = ssh_nodes(1, slurm=True)
    assert login.slurm is not None
    gpus = login.slurm.gpus
    pools = f'[[pools]]\nname = "hpc"\nkind = "slurm"\nlogin_node = "{login.name}"\n'
    teams = TEAMS.replace("gpu_quota = 2", f"gpu_quota = {gpus}")
    toml = fleet_toml([login], extra=teams + pools).replace(
        "[scheduler]\n", f"[scheduler]\npreemption = true\npreempt_grace_s = {GRACE_S}\n"
        "min_runtime_before_preempt_s = 1.0\n", 1)
    fleet = Fleet(tmp_path, toml)
    ckpt = shared_dir / "ck"
    slurm = ("--pool", "hpc", "--executor", "slurm", "--gpus", "1", "--cpus", "0.2")
    with fleet.serving():
        bob = [fleet.submit("--user", BOB, *slurm, "--", "sh", "-c", trainer(ckpt))[0]
               for _ in range(gpus)]
        fleet.wait_states(bob, ("running",), timeout=180)
        for job in bob:
            fleet.wait_logs(job, "running", timeout=120)
        [alice] = fleet.submit("--user", ALICE, *slurm, "--", "sh", "-c", "echo owner-ran")
        rows = fleet.wait_done([alice], timeout=180)
        assert (rows[alice]["state"], rows[alice]["executor"]) == ("succeeded", "slurm"), rows
        assert fleet.logs(alice) == "owner-ran\n"
        # one of bob's jobs (one GPU was needed) got the notice, was requeued and resumes
        [victim] = [r["id"] for r in fleet.jobs() if r["id"] in bob and r["attempt"] == 1]
        done = fleet.wait_done([victim], timeout=180)[victim]
        assert (done["state"], done["preemptions"], done["executor"]) == \
            ("succeeded", 1, "slurm"), done
        assert fleet.logs(victim) == "resumed attempt 1 from step-7 attempt-0\n"
        info = fleet.json("explain", str(alice))
        [pre] = info["preemptions"]
        assert (pre["victim"], pre["beneficiary"]) == (str(victim), str(alice))
        assert "team owners is under its guarantee: 0/2 GPUs in use, asks 1" in pre["reason"]
        assert f"team borrowers holds {gpus} GPUs, 0 guaranteed" in pre["reason"]
        others = [j for j in bob if j != victim]
        assert {fleet.job(j)["attempt"] for j in others} == {0}
        for job in others:
            assert fleet.run("stop", str(job)).returncode == 0
        fleet.wait_done(others)
    assert events_of(fleet, victim)[:3] == ["job.started", "job.preempted", "job.requeued"]

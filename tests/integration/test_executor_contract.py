"""The executor contract, one suite for every executor (process, docker, slurm; a new executor
adds a `kit` branch): exit codes, env, workdir and logs; the status of many jobs in one call;
arguments reach the program verbatim; start is idempotent; a fresh executor discovers jobs and
cleans them up; output streams while a job runs; stop is TERM, a grace, then KILL; a preempted
job gets its notice and resumes.

What only one executor has (Docker labels, limits and device requests, Slurm resources and
pending jobs, process max runtimes and SSH drops, logins as job owners) stays in
test_exec_<kind>.py. No assertion reads a clock except the lower bound of a grace that must be
waited out, which holds at any speed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from collectors.transport import SshTransport
from scheduler.executors import (
    Discovered,
    DockerExecutor,
    Executor,
    ExecutorError,
    Handle,
    Launch,
    ProcessExecutor,
    SlurmExecutor,
)
from tests.bed.plugin import NodeFactory
from tests.bed.ssh import SshNode
from tests.integration.executor_kit import (
    HOSTILE,
    read_logs,
    transport_for,
    wait_done,
    wait_log,
    wait_state,
)

pytestmark = [pytest.mark.ssh]

# Slurm remembers finished jobs by name for a while and the cluster lives for the session:
# every job here gets a fresh fleetdeck id.
_IDS = itertools.count(random.randint(1, 10**6) * 1000 + 500)

KINDS = [
    "process",
    pytest.param("docker", marks=pytest.mark.docker),
    pytest.param("slurm", marks=pytest.mark.slurm),
]


@dataclass
class Kit:
    """One executor on one bed node, and how a test talks to its jobs."""

    kind: str
    executor: Executor
    transport: SshTransport
    node: SshNode
    user: str  # whom jobs run as
    image: str | None  # docker only
    gate: str  # a path a job can wait for
    open_gate: Callable[[Handle], None]
    make: Callable[[], Executor]  # a fresh executor on the same jobs, as after a restart
    workdir: str  # a directory jobs may run in
    scratch: str  # a directory jobs may write in
    shared: Path | None  # `scratch` as the test sees it (None: inside the job only)
    gpu_env: str | None  # the variable a job's GPU indices reach it in (None: not set)
    ordered: bool = True  # stdout and stderr share one pipe (docker: separate, order varies)
    hostile: dict[str, Any] = field(default_factory=dict)  # hostile fields it accepts too
    # Slurm: one cluster serves the session, so discover lists other tests' jobs too, and it
    # remembers a job after its cleanup
    cluster: bool = False

    async def discover(self, ex: Executor, t: SshTransport, *mine: int) -> list[Discovered]:
        """What `ex` discovers: of `mine` only in a cluster."""
        found = await ex.discover(t)
        return [d for d in found if d.job_id in mine] if self.cluster else found

    def launch(self, argv: tuple[str, ...], job_id: int | None = None, **kw: Any) -> Launch:
        job_id = next(_IDS) if job_id is None else job_id
        kw.setdefault("user", self.user)
        kw.setdefault("project", "vision")
        kw.setdefault("name", f"job{job_id}")
        return Launch(job_id=job_id, attempt=0, argv=argv, image=self.image, **kw)


def _touch(path: Path) -> Callable[[Handle], None]:
    return lambda _h: path.touch()


def _docker_touch(node: SshNode, path: str) -> Callable[[Handle], None]:
    def touch(h: Handle) -> None:
        client = docker.DockerClient(base_url=f"unix://{node.docker_socket}")
        try:
            client.containers.get(h.external_id).exec_run(["touch", path])
        finally:
            client.close()

    return touch


@pytest.fixture(params=KINDS)
async def kit(request: pytest.FixtureRequest, ssh_nodes: NodeFactory,
              tmp_path: Path) -> AsyncIterator[Kit]:
    kind: str = request.param
    # a gate every job user can see: /tmp is world-readable, tmp_path is root's alone
    host_gate = Path("/tmp") / f"fd-gate-{uuid.uuid4().hex}"
    made: list[Executor] = []

    def keep(ex: Executor) -> Executor:
        made.append(ex)
        return ex

    if kind == "docker":
        node = ssh_nodes(1, docker=True)[0]
        assert node.docker is not None
        node.docker.remove_all_containers()
        image = request.getfixturevalue("docker_image")(node)
        kw: dict[str, Any] = dict(
            user="root", image=image, gate="/tmp/gate", open_gate=_docker_touch(node, "/tmp/gate"),
            make=lambda: keep(DockerExecutor(gpu_runtime=False)), workdir="/tmp",
            scratch="/tmp", shared=None, gpu_env="NVIDIA_VISIBLE_DEVICES", ordered=False)
    elif kind == "slurm":
        node = ssh_nodes(1, slurm=True)[0]
        jobs_dir = str(tmp_path / "slurm")
        kw = dict(
            user="alice", image=None, gate=str(host_gate), open_gate=_touch(host_gate),
            make=lambda: keep(SlurmExecutor(jobs_dir=jobs_dir, poll_s=0.5)),
            workdir=str(tmp_path), scratch=str(tmp_path), shared=tmp_path, gpu_env=None,
            hostile={"user": "a;b", "partition": "debug"}, cluster=True)
    else:
        node = ssh_nodes(1)[0]
        # bed nodes all log in as root on this machine: a private jobs dir per test
        jobs_dir = str(tmp_path / "jobs")
        kw = dict(
            user="root", image=None, gate=str(host_gate), open_gate=_touch(host_gate),
            make=lambda: keep(ProcessExecutor(jobs_dir=jobs_dir, kill_after_s=1.0)),
            workdir="/tmp", scratch=str(tmp_path), shared=tmp_path,
            gpu_env="CUDA_VISIBLE_DEVICES")
    transport = transport_for(node)
    try:
        yield Kit(kind, kw["make"](), transport, node, **kw)
    finally:
        await transport.close()
        for ex in made:
            if isinstance(ex, DockerExecutor):
                ex.close()
        host_gate.unlink(missing_ok=True)


async def test_exit_codes_env_and_logs(kit: Kit) -> None:
    ex, t = kit.executor, kit.transport
    gpus = f"gpus=${kit.gpu_env} " if kit.gpu_env else ""
    ok_launch = kit.launch(
        ("sh", "-c", f'echo out; echo err >&2; echo "{gpus}job=$FLEETDECK_JOB_ID $MY_VAR"; pwd'),
        env={"MY_VAR": "hello"}, workdir=kit.workdir,
        gpu_indices=(1, 3) if kit.gpu_env else ())
    ok = await ex.start(ok_launch, t)
    bad = await ex.start(kit.launch(("sh", "-c", "echo failing; exit 3")), t)
    assert ok.kind == kit.kind and ok.node == kit.node.name
    if kit.kind != "docker":  # a pid, a Slurm job id (docker: a container id)
        assert ok.external_id.isdigit()

    st_ok = await wait_done(ex, ok, t)
    st_bad = await wait_done(ex, bad, t)
    assert (st_ok.state, st_ok.exit_code) == ("exited", 0)
    assert (st_bad.state, st_bad.exit_code) == ("exited", 3)
    assert st_ok.started_at is not None and st_ok.ended_at is not None
    assert st_ok.ended_at >= st_ok.started_at
    out = await read_logs(ex, ok, t)
    seen_gpus = "gpus=1,3 " if kit.gpu_env else ""
    want = [b"out", b"err", f"{seen_gpus}job={ok_launch.job_id} hello".encode(),
            kit.workdir.encode()]
    if kit.ordered:
        assert out.splitlines() == want
    else:
        assert sorted(out.splitlines()) == sorted(want)
    assert await read_logs(ex, ok, t, tail_lines=1) == out.splitlines()[-1] + b"\n"
    assert await read_logs(ex, ok, t, tail_lines=2) == b"".join(
        line + b"\n" for line in out.splitlines()[-2:])
    assert await read_logs(ex, bad, t) == b"failing\n"
    # follow on a finished job prints the log and ends
    assert await read_logs(ex, bad, t, follow=True) == b"failing\n"


async def test_status_many_answers_like_status_one_by_one(kit: Kit) -> None:
    """The poll's batch: one call for a running, a succeeded, a failed and an unknown job
    gives, in order, what `status` gives for each."""
    ex, t = kit.executor, kit.transport
    running = await ex.start(kit.launch(("sleep", "60")), t)
    ok = await ex.start(kit.launch(("true",)), t)
    bad = await ex.start(kit.launch(("sh", "-c", "exit 3")), t)
    unknown = dataclasses.replace(bad, job_id=next(_IDS),
                                  external_id="9" * (64 if kit.kind == "docker" else 9))
    try:
        assert (await wait_done(ex, ok, t)).exit_code == 0
        assert (await wait_done(ex, bad, t)).exit_code == 3
        await wait_state(ex, running, t, "running")
        handles = [running, ok, bad, unknown]
        many = await ex.status_many(handles, t)
        one_by_one = [await ex.status(h, t) for h in handles]

        def seen(st: Any) -> tuple[Any, ...]:
            return st.state, st.exit_code, st.started_at, st.ended_at

        assert [seen(s) for s in many] == [seen(s) for s in one_by_one]
        assert [(s.state, s.exit_code) for s in many[:3]] == [
            ("running", None), ("exited", 0), ("exited", 3)]
        assert many[3].state != "running"
        assert await ex.status_many([], t) == []
    finally:
        await ex.stop(running, t, grace_s=1.0)


async def test_hostile_arguments_cannot_inject(kit: Kit) -> None:
    ex, t = kit.executor, kit.transport
    marker = f"{kit.scratch}/pwned"
    args = tuple(a.format(m=marker) for a in HOSTILE)
    name = f'"; touch {marker} # $(touch {marker}) `touch {marker}`'
    # The program receives the exact argv: printf prints each argument NUL-terminated; then
    # the job itself looks for the marker (in a container only the job can see it).
    check = f"[ -e {marker} ] && echo PWNED; exit 0"
    fields = {"name": name, "project": "$(id)", **kit.hostile}
    h = await ex.start(kit.launch(("sh", "-c", f'printf "%s\\0" "$@"; {check}', "sh", *args),
                                  env={"HOSTILE": args[0], "H2": args[2]},
                                  workdir=kit.scratch, **fields), t)
    assert (await wait_done(ex, h, t)).exit_code == 0
    out = await read_logs(ex, h, t)
    assert out.split(b"\0")[:-1] == [a.encode() for a in args]
    assert b"PWNED" not in out
    # Env values and the job name reach a shell script as data, not code.
    h2 = await ex.start(
        kit.launch((f'printf "%s\\0" "$FLEETDECK_JOB_NAME" "$HOSTILE" "$H2"; {check}',),
                   shell=True, env={"HOSTILE": args[0], "H2": args[2]}, name=name,
                   project="p"), t)
    assert (await wait_done(ex, h2, t)).exit_code == 0
    assert (await read_logs(ex, h2, t)).split(b"\0") == [
        name.encode(), args[0].encode(), args[2].encode(), b""]
    if kit.shared is not None:
        assert not (kit.shared / "pwned").exists()


async def test_start_is_idempotent(kit: Kit) -> None:
    ex, t = kit.executor, kit.transport
    counter = f"{kit.scratch}/runs"
    job = kit.launch(("sh", "-c", f"echo run; echo run >> {counter}; sleep 1"))
    first, second = await asyncio.gather(ex.start(job, t), ex.start(job, t))
    assert first == second
    assert await ex.start(job, t) == first  # later, e.g. after a restart
    assert (await wait_done(ex, first, t)).exit_code == 0
    assert await ex.start(job, t) == first  # finished: adopted, not rerun
    await asyncio.sleep(0.5)  # room for a wrong restart to show
    assert (await ex.status(first, t)).state == "exited"
    assert await read_logs(ex, first, t) == b"run\n"
    if kit.shared is not None:
        assert (kit.shared / "runs").read_text() == "run\n"
    # a new attempt is a new run
    again = await ex.start(dataclasses.replace(job, attempt=1), t)
    assert again.external_id != first.external_id
    assert (await wait_done(ex, again, t)).exit_code == 0
    assert await read_logs(ex, again, t) == b"run\n"
    if kit.shared is not None:
        assert (kit.shared / "runs").read_text() == "run\nrun\n"


async def test_discover_after_restart_and_cleanup(kit: Kit) -> None:
    t1 = kit.transport
    ex1 = kit.executor
    running = await ex1.start(kit.launch(("sleep", "60")), t1)
    done = await ex1.start(kit.launch(("sh", "-c", "exit 5")), t1)
    assert (await wait_done(ex1, done, t1)).exit_code == 5
    await wait_state(ex1, running, t1, "running")
    await t1.close()

    # A fresh executor and connection, as after fleetdeck restarts, knows nothing else.
    t2 = transport_for(kit.node)
    ex2 = kit.make()
    try:
        mine = (running.job_id, done.job_id)
        found = {(d.job_id, d.attempt): d for d in await kit.discover(ex2, t2, *mine)}
        assert set(found) == {(running.job_id, 0), (done.job_id, 0)}
        assert found[(running.job_id, 0)].handle == running
        assert found[(running.job_id, 0)].status.state == "running"
        d = found[(done.job_id, 0)]
        assert (d.external_id, d.status.state, d.status.exit_code) == (
            done.external_id, "exited", 5)
        # starting the running one again adopts it
        assert await ex2.start(kit.launch(("sleep", "60"), job_id=running.job_id), t2) == running
        with pytest.raises(ExecutorError, match=r"still (runs|RUNNING)"):
            await ex2.cleanup(running, t2)
        await ex2.stop(found[(running.job_id, 0)].handle, t2, grace_s=2.0)
        st = await ex2.status(running, t2)
        assert (st.state, st.exit_code) == ("exited", 143)  # sleep died of SIGTERM
        await ex2.cleanup(running, t2)
        if not kit.cluster:
            assert (await ex2.status(running, t2)).state == "missing"
            assert [d.job_id for d in await kit.discover(ex2, t2, *mine)] == [done.job_id]
            await ex2.cleanup(done, t2)
            assert await kit.discover(ex2, t2, *mine) == []
    finally:
        await t2.close()


async def test_follow_streams_until_the_job_ends(kit: Kit) -> None:
    # The job prints tick1, then waits for a gate the test opens only once tick1 has arrived:
    # output streams while the job runs, not all at its end (no clock involved).
    script = (f"echo tick1; while [ ! -e {kit.gate} ]; do sleep 0.05; done; "
              "echo tick2; echo tick3; echo tick4")
    ex, t = kit.executor, kit.transport
    h = await ex.start(kit.launch(("sh", "-c", script)), t)
    await wait_state(ex, h, t, "running")
    got: list[bytes] = []
    async for chunk in ex.logs(h, t, follow=True):
        if not got:
            assert chunk.startswith(b"tick1")
            assert (await ex.status(h, t)).state == "running"
            kit.open_gate(h)
        got.append(chunk)
    assert b"".join(got) == b"tick1\ntick2\ntick3\ntick4\n"
    assert (await ex.status(h, t)).exit_code == 0


async def test_stop_graceful_then_forced(kit: Kit) -> None:
    ex, t = kit.executor, kit.transport
    polite = await ex.start(kit.launch(
        ("sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo ready; "
                     "while :; do sleep 0.1; done")), t)
    stubborn = await ex.start(kit.launch(
        ("sh", "-c", "trap 'echo ignoring TERM' TERM; echo ready; "
                     "while :; do sleep 0.1; done")), t)
    await wait_log(ex, polite, t, b"ready")
    await wait_log(ex, stubborn, t, b"ready")

    # a polite job ends on TERM: stop returns without waiting out a grace no test could sit
    # through (it would hit the test timeout)
    await ex.stop(polite, t, grace_s=3600.0)
    t0 = time.monotonic()
    await ex.stop(stubborn, t, grace_s=2.0)
    stubborn_s = time.monotonic() - t0

    st = await ex.status(polite, t)
    assert (st.state, st.exit_code) == ("exited", 0), st
    assert b"got TERM" in await read_logs(ex, polite, t)
    st = await ex.status(stubborn, t)
    assert (st.state, st.exit_code) == ("exited", 137), st  # SIGKILL
    assert b"ignoring TERM" in await read_logs(ex, stubborn, t)  # TERM came first
    assert stubborn_s >= 2.0  # the grace was waited out
    # stopping a finished job is a no-op
    await ex.stop(polite, t, grace_s=1.0)


async def test_stop_with_notice_creates_the_preempt_file(kit: Kit) -> None:
    """Preemption: `$FLEETDECK_PREEMPT_FILE` appears before the SIGTERM, so the job
    checkpoints; its next attempt is told to resume."""
    ex, t = kit.executor, kit.transport
    h = await ex.start(kit.launch((
        "sh", "-c", "trap 'test -e \"$FLEETDECK_PREEMPT_FILE\" && echo checkpoint; exit 0' TERM;"
                    " echo ready; while :; do sleep 0.1; done")), t)
    await wait_log(ex, h, t, b"ready")
    await ex.stop(h, t, grace_s=10.0, notice=True)
    assert b"checkpoint" in await read_logs(ex, h, t)
    again = await ex.start(
        kit.launch(("sh", "-c", 'echo "resume=$FLEETDECK_RESUME"'), resume=True), t)
    st = await wait_done(ex, again, t)
    assert (st.state, st.exit_code) == ("exited", 0), st
    assert await read_logs(ex, again, t) == b"resume=1\n"

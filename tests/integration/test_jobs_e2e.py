"""Issue #4 end to end: jobs through the real engine (`fleetdeck serve`) and CLI on bed nodes.

Docker, process and Slurm jobs run for real and report exit codes and logs; whole and
fractional GPUs on fake-NVML nodes; hostile names and arguments; stop with its audit row.
The array drain and kill -9 recovery live in `test_jobs_e2e_scale.py`; bad input in
`test_jobs_e2e_input.py`.
"""

from __future__ import annotations

import getpass
import re
import time
from pathlib import Path

import pytest

from tests.bed.fake_nvml import FakeGpu
from tests.bed.plugin import ImageLoader, NodeFactory
from tests.helpers import one_line_error
from tests.integration.jobs_e2e import Fleet, fleet_toml, remote

pytestmark = [pytest.mark.ssh]

ECHO_EXIT = "echo hi from $FLEETDECK_JOB_ID; echo oops >&2; exit 3"


def test_process_job_reports_exit_code_and_logs(ssh_nodes: NodeFactory, tmp_path: Path) -> None:
    node = ssh_nodes(1)[0]
    fleet = Fleet(tmp_path, fleet_toml([node]))
    with fleet.serving():
        [job] = fleet.submit("--executor", "process", "--", "sh", "-c", ECHO_EXIT)
        row = fleet.wait_done([job])[job]
        assert (row["state"], row["exit_code"], row["node"]) == ("failed", 3, node.name), row
        assert row["executor"] == "process"
        assert row["reason"].startswith("exited with code 3")
        logs = fleet.logs(job)
        assert f"hi from {job}\n" in logs and "oops\n" in logs
        table = fleet.run("jobs")
        assert table.returncode == 0
        assert re.search(rf"^\s*{job}\s+sh\s+failed\b", table.stdout, re.M), table.stdout



def test_a_job_ended_before_its_start_returned_still_runs_forward(ssh_nodes: NodeFactory,
                                                                 tmp_path: Path) -> None:
    """`true` ends (by the node's whole-second clock) before the engine's start call returns:
    the record must not end before it starts, or the chargeback bills it nothing."""
    node = ssh_nodes(1)[0]
    fleet = Fleet(tmp_path, fleet_toml([node]))
    with fleet.serving():
        jobs = [j for _ in range(4) for j in fleet.submit("--executor", "process", "--", "true")]
        for job, row in fleet.wait_done(jobs).items():
            assert row["state"] == "succeeded", row
            assert row["started_at"] and row["ended_at"], row
            assert row["started_at"] <= row["ended_at"], (job, row["started_at"], row["ended_at"])


def test_jobs_match_finds_jobs_by_words_and_fields_from_engine_and_store(
        ssh_nodes: NodeFactory, tmp_path: Path) -> None:
    """`fleetdeck jobs --match` filters as the console's filter box does: through the engine
    while it serves, from the store when it does not; a field that is no job field is one
    line and exit 2."""
    node = ssh_nodes(1)[0]
    fleet = Fleet(tmp_path, fleet_toml([node]))
    with fleet.serving():
        [ok] = fleet.submit("--executor", "process", "--name", "prep-data", "--", "true")
        [bad] = fleet.submit("--executor", "process", "--name", "train-big", "--", "false")
        fleet.wait_done([ok, bad])
        assert [r["id"] for r in fleet.jobs("--match", "train")] == [bad]
        assert [r["id"] for r in fleet.jobs("--match", "state:succeeded PREP")] == [ok]
        assert {r["id"] for r in fleet.jobs("--match", f"node:{node.name}")} == {ok, bad}
        assert fleet.jobs("--match", "state:succeeded train") == []
    # no engine: the store answers the same
    assert [r["id"] for r in fleet.jobs("--match", "state:failed")] == [bad]
    res = fleet.run("jobs", "--match", "gpus:4")
    assert res.returncode == 2
    assert one_line_error(res).startswith("--match: expected words or FIELD:word"), res.stderr

def test_docker_job_reports_exit_code_and_logs(ssh_nodes: NodeFactory,
                                               docker_image: ImageLoader,
                                               tmp_path: Path) -> None:
    node = ssh_nodes(1, docker=True)[0]
    image = docker_image(node)
    fleet = Fleet(tmp_path, fleet_toml([node]))
    with fleet.serving():
        [job] = fleet.submit("--executor", "docker", "--image", image, "--name", "dock",
                             "--", "sh", "-c", ECHO_EXIT)
        row = fleet.wait_done([job])[job]
        assert (row["state"], row["exit_code"], row["executor"]) == ("failed", 3, "docker"), row
        logs = fleet.logs(job)
        assert f"hi from {job}\n" in logs and "oops\n" in logs
        # the container is real, on the node's dockerd, labelled with the job
        assert node.docker is not None
        client = node.docker.client()
        try:
            [c] = client.containers.list(all=True, filters={"label": f"fleetdeck.job={job}"})
            assert c.attrs["State"]["ExitCode"] == 3
            assert c.labels["fleetdeck.user"] == row["user"]
        finally:
            client.close()
        # a zero exit succeeds
        [ok] = fleet.submit("--executor", "docker", "--image", image, "--", "true")
        assert fleet.wait_done([ok])[ok]["state"] == "succeeded"


def test_slurm_job_reports_exit_code_and_logs(ssh_nodes: NodeFactory, tmp_path: Path) -> None:
    login = ssh_nodes(1, slurm=True)[0]
    pools = f'[[pools]]\nname = "hpc"\nkind = "slurm"\nlogin_node = "{login.name}"\n'
    fleet = Fleet(tmp_path, fleet_toml([login], extra=pools))
    with fleet.serving():
        [job] = fleet.submit("--pool", "hpc", "--gpus", "1", "--max-runtime", "5m",
                             "--", "sh", "-c", ECHO_EXIT)
        row = fleet.wait_done([job], timeout=180)[job]
        assert (row["state"], row["exit_code"], row["executor"]) == ("failed", 3, "slurm"), row
        assert row["external_id"] and row["external_id"].isdigit()  # the Slurm job id
        logs = fleet.logs(job)
        assert f"hi from {job}\n" in logs and "oops\n" in logs
        assert login.slurm is not None
        info = login.slurm.job(int(row["external_id"]))
        assert info.get("JobName") == f"fd-{job}-0", info
        explain = fleet.run("explain", str(job))
        assert "runs as root (Slurm jobs are submitted as the login account)" in \
            explain.stdout, (explain.stdout, explain.stderr)


def test_two_gpus_are_two_distinct_gpu_ids(ssh_nodes: NodeFactory, tmp_path: Path) -> None:
    node = ssh_nodes(1, fake_nvml={0: [FakeGpu()] * 4})[0]
    fleet = Fleet(tmp_path, fleet_toml([node]))
    show = 'echo "CVD=$CUDA_VISIBLE_DEVICES IDX=$FLEETDECK_GPU_INDICES"'
    with fleet.serving():
        [job] = fleet.submit("--executor", "process", "--gpus", "2", "--", "sh", "-c", show)
        row = fleet.wait_done([job])[job]
        assert row["state"] == "succeeded", row
        gpus = row["gpu_indices"]
        assert len(gpus) == 2 and len(set(gpus)) == 2 and set(gpus) <= {0, 1, 2, 3}, row
        assert row["gpus"] == 2
        ids = ",".join(map(str, gpus))
        assert fleet.logs(job) == f"CVD={ids} IDX={ids}\n"


def test_quarter_gpus_share_one_gpu_and_a_fifth_waits(ssh_nodes: NodeFactory,
                                                     tmp_path: Path) -> None:
    node = ssh_nodes(1, fake_nvml={0: [FakeGpu()]})[0]
    fleet = Fleet(tmp_path, fleet_toml([node]))
    args = ("--executor", "process", "--gpus", "0.25", "--cpus", "0.1", "--node", node.name)
    with fleet.serving():
        four = [fleet.submit(*args, "--", "sh", "-c", 'echo "CVD=$CUDA_VISIBLE_DEVICES"; '
                             "exec sleep 600")[0] for _ in range(4)]
        rows = fleet.wait_states(four, ("running",), timeout=180)
        assert {tuple(r["gpu_indices"]) for r in rows.values()} == {(0,)}, rows
        assert {r["gpu_milli"] for r in rows.values()} == {250}
        for job in four:
            assert fleet.wait_logs(job, "CVD=") == "CVD=0\n"
        [fifth] = fleet.submit(*args, "--", "true")
        # give the scheduler several cycles: the fifth must still be waiting, with a reason
        fleet.wait("the fifth job's pending reason",
                   lambda rs: any(r["id"] == fifth and r["reason"] != "waiting for the next "
                                  "placement cycle" for r in rs), timeout=60)
        assert fleet.job(fifth)["state"] == "queued"
        res = fleet.run("explain", str(fifth))
        assert res.returncode == 0, res.stderr
        assert f"job {fifth} (true): queued" in res.stdout, res.stdout
        assert re.search(r"waiting: needs 0\.25 GPU on node \S+, no eligible GPU has any share "
                         "free", res.stdout), res.stdout
        info = fleet.json("explain", str(fifth))
        assert info["state"] == "queued" and "placement" not in info
        assert info["reason"].startswith("waiting: needs 0.25 GPU"), info
        # freeing one share lets the fifth run on the same GPU
        res = fleet.run("stop", str(four[0]))
        assert res.returncode == 0, res.stderr
        row = fleet.wait_done([fifth], timeout=120)[fifth]
        assert (row["state"], row["gpu_indices"]) == ("succeeded", [0]), row
        for job in four[1:]:
            res = fleet.run("stop", str(job))
            assert res.returncode == 0, (res.stderr, fleet.json("explain", str(job)))


HOSTILE_ARGS = (
    "'; touch {m}1 #",
    '"; touch {m}2 #',
    "$(touch {m}3)",
    "`touch {m}4`",
    "x && touch {m}5",
    "| touch {m}6",
    "a\ntouch {m}7",
    "$(id)",
    "${{IFS}}* ?",
    "",
    "-n",
    "--",
    "unicode ☃ é",
)


def test_hostile_name_and_args_do_not_inject(ssh_nodes: NodeFactory, tmp_path: Path) -> None:
    node = ssh_nodes(1)[0]
    fleet = Fleet(tmp_path, fleet_toml([node]))
    marker = tmp_path / "pwned"
    args = [a.format(m=marker) for a in HOSTILE_ARGS]
    with fleet.serving():
        for name in ("x; touch /tmp/pwned", "$(id)", "-rf", "a" * 65, "a/b"):
            res = fleet.run("submit", f"--name={name}", "--", "true")
            assert res.returncode == 2, (name, res.stdout, res.stderr)
            line = one_line_error(res)
            assert "--name" in line and "expected a name of letters" in line, line
        assert fleet.jobs() == []
        env = f"HOSTILE=$(touch {marker}8)"
        [job] = fleet.submit("--executor", "process", "--name", "ok.name_1-x", "--env", env,
                             "--", "printf", "[%s]\\n", *args)
        row = fleet.wait_done([job])[job]
        assert row["state"] == "succeeded", row
        assert fleet.logs(job) == "".join(f"[{a}]\n" for a in args)
        # after `--` a flag is part of the command, not an option
        [shown] = fleet.submit("--executor", "process", "--", "sh", "-c", 'printf "%s|" "$@"',
                               "sh", "--env", env)
        assert fleet.wait_done([shown])[shown]["state"] == "succeeded"
        assert fleet.logs(shown) == f"--env|{env}|"
        [envd] = fleet.submit("--executor", "process", "--env", env,
                              "--", "sh", "-c", 'printf %s "$HOSTILE"')
        assert fleet.wait_done([envd])[envd]["state"] == "succeeded"
        assert fleet.logs(envd) == f"$(touch {marker}8)"
    assert not list(tmp_path.glob("pwned*"))


def test_stop_is_graceful_then_forced_and_audited(ssh_nodes: NodeFactory,
                                                 tmp_path: Path) -> None:
    node = ssh_nodes(1)[0]
    fleet = Fleet(tmp_path, fleet_toml([node]))
    loop = "echo ready; while :; do sleep 0.1; done"
    with fleet.serving():
        [polite] = fleet.submit("--executor", "process", "--cpus", "0.1", "--",
                                "sh", "-c", f"trap 'echo got TERM; exit 0' TERM; {loop}")
        [stubborn] = fleet.submit("--executor", "process", "--cpus", "0.1", "--",
                                  "sh", "-c", f"trap 'echo ignoring TERM' TERM; {loop}")
        rows = fleet.wait_states([polite, stubborn], ("running",))
        for job in (polite, stubborn):
            fleet.wait_logs(job, "ready")

        res = fleet.run("stop", str(polite), "--reason", "maintenance window")
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith(f"job {polite} stopped: maintenance window"), res.stdout
        assert "got TERM" in fleet.logs(polite)

        t0 = time.monotonic()
        stopped = fleet.json("stop", str(stubborn))
        forced_s = time.monotonic() - t0
        assert stopped["state"] == "stopped", stopped
        assert stopped["reason"] == f"stopped by {getpass.getuser()}"
        assert "ignoring TERM" in fleet.logs(stubborn)
        # the forced stop waited out the grace period (a lower bound holds at any speed); the
        # polite one ended on TERM ("got TERM" above), stopped before its grace ran out
        assert forced_s >= 9, forced_s
        # SIGKILL is asynchronous: the group's last members may still be being reaped
        pid = rows[stubborn]["external_id"]
        check = (f"for i in $(seq 50); do kill -0 -- -{pid} 2>/dev/null || "
                 "{ echo gone; exit; }; sleep 0.1; done; echo alive")
        assert remote(node, check).strip() == "gone"

        # stopping again is refused with one line; nothing changes
        again = fleet.run("stop", str(polite))
        assert again.returncode != 0
        assert "is stopped" in one_line_error(again)

        audit = fleet.json("audit")
        stops = {r["target"]: r for r in audit if r["action"] == "stop"}
        assert set(stops) == {str(polite), str(stubborn)}, audit
        assert stops[str(polite)]["actor"] == getpass.getuser()
        assert stops[str(polite)]["reason"] == "maintenance window"
        assert stops[str(stubborn)]["target_kind"] == "job"
        submits = [r for r in audit if r["action"] == "submit"]
        assert {r["target"] for r in submits} == {str(polite), str(stubborn)}
        assert all(r["actor"] == getpass.getuser() for r in submits)
        for job in (polite, stubborn):
            assert fleet.job(job)["state"] == "stopped"


def test_job_on_a_node_gone_after_restart_is_lost_then_requeued(ssh_nodes: NodeFactory,
                                                                tmp_path: Path) -> None:
    a, b = ssh_nodes(2)
    fleet = Fleet(tmp_path, fleet_toml([a]))
    show = 'echo "attempt $FLEETDECK_ATTEMPT"; exec sleep 600'
    with fleet.serving():
        [again] = fleet.submit("--executor", "process", "--cpus", "0.1", "--retries", "1",
                               "--", "sh", "-c", show)
        [once] = fleet.submit("--executor", "process", "--cpus", "0.1", "--", "sh", "-c", show)
        rows = fleet.wait_states([again, once], ("running",))
        assert {r["node"] for r in rows.values()} == {a.name}
    pids = [rows[j]["external_id"] for j in (again, once)]
    try:
        fleet.reconfigure(fleet_toml([b]))  # node a left the fleet while no engine ran
        with fleet.serving():
            row = fleet.wait_states([again], ("running",))[again]
            assert (row["node"], row["attempt"]) == (b.name, 1), row
            assert fleet.wait_logs(again, "attempt") == "attempt 1\n"
            lost = fleet.job(once)
            assert lost["state"] == "lost", lost
            assert lost["reason"] == f"node {a.name} is gone from the fleet"
            events = [(e["from_state"], e["to_state"], e["reason"])
                      for e in fleet.json("explain", str(again))["events"]]
            assert events[3:] == [
                ("running", "lost", f"node {a.name} is gone from the fleet"),
                ("lost", "queued", f"requeued after loss: node {a.name} is gone from the fleet"),
                ("queued", "starting", f"placed on {b.name}"),
                ("starting", "running", f"started on {b.name}")], events
            assert fleet.run("stop", str(again)).returncode == 0
    finally:
        for pid in pids:  # what ran on node a is out of fleetdeck's reach now
            if pid:
                remote(a, f"kill -9 -- -{pid} 2>/dev/null; true")

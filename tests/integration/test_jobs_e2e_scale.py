"""Issue #4 end to end, at scale and across a crash: a 500-task array drains, and a kill -9 of
the engine while jobs run and wait loses nothing and starts nothing twice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.bed.plugin import ImageLoader, NodeFactory
from tests.integration.jobs_e2e import Fleet, fleet_toml, remote

pytestmark = [pytest.mark.ssh]

ARRAY = 500


@pytest.mark.timeout(900)
def test_array_of_500_is_accepted_and_drained(ssh_nodes: NodeFactory, tmp_path: Path) -> None:
    node = ssh_nodes(1)[0]
    fleet = Fleet(tmp_path, fleet_toml([node]))
    with fleet.serving():
        t0 = time.monotonic()
        ids = fleet.submit("--executor", "process", "--cpus", "0.01", "--name", "sweep",
                           "--array", str(ARRAY), "--", "sh", "-c",
                           "echo ${FLEETDECK_ARRAY_INDEX}")
        accepted_s = time.monotonic() - t0
        assert len(ids) == ARRAY and len(set(ids)) == ARRAY
        assert ids == list(range(ids[0], ids[0] + ARRAY))
        rows = fleet.wait_done(ids, timeout=900, every_s=3)
        drained_s = time.monotonic() - t0
        print(f"\narray of {ARRAY}: accepted in {accepted_s:.2f}s, drained in {drained_s:.1f}s "
              f"({ARRAY / drained_s:.1f} tasks/s)")
        bad = [r for r in rows.values() if r["state"] != "succeeded"]
        assert not bad, bad[:5]
        assert sorted(r["array_index"] for r in rows.values()) == list(range(ARRAY))
        assert {r["array_parent"] for r in rows.values()} == {ids[0]}
        assert {r["name"] for r in rows.values()} == {f"sweep[{i}]" for i in range(ARRAY)}
        for job in (ids[0], ids[137], ids[-1]):
            assert fleet.logs(job) == f"{rows[job]['array_index']}\n"


@pytest.mark.timeout(600)
def test_kill_9_loses_nothing_and_starts_nothing_twice(ssh_nodes: NodeFactory,
                                                       docker_image: ImageLoader,
                                                       tmp_path: Path) -> None:
    plain = ssh_nodes(1)[0]
    dock = ssh_nodes(1, docker=True)[0]
    image = docker_image(dock)
    fleet = Fleet(tmp_path, fleet_toml([plain, dock]))
    ledger = tmp_path / "ledger"
    # each process job appends its id once, then runs a while and exits with id % 3
    body = (f'echo "$FLEETDECK_JOB_ID" >> {ledger}; sleep 15; '
            'exit $((FLEETDECK_JOB_ID % 3))')
    with fleet.serving() as first:
        # arrays: all tasks queued at once (4 process tasks fit on the node at a time)
        docks = fleet.submit("--executor", "docker", "--image", image, "--node", dock.name,
                             "--cpus", "0.5", "--array", "2", "--", "sh", "-c",
                             'echo "run $FLEETDECK_JOB_ID"; sleep 15; exit 5')
        procs = fleet.submit("--executor", "process", "--node", plain.name, "--cpus", "0.5",
                             "--array", "12", "--", "sh", "-c", body)
        every = procs + docks
        fleet.wait("some jobs running while others wait",
                   lambda rows: sum(r["state"] == "running" for r in rows) >= 2
                   and sum(r["state"] == "queued" for r in rows) >= 2, every_s=0.3)
        first.kill()  # kill -9: no cleanup, no goodbye
        first.wait(30)
    before = {r["id"]: r["state"] for r in fleet.jobs()}  # the store, read with no engine
    assert set(before) == set(every), before
    assert {"running", "queued"} <= set(before.values()), before

    with fleet.serving():
        fleet_id = fleet.json("status")["fleet_id"]
        rows = fleet.wait_done(every, timeout=300)
        for job in procs:
            r = rows[job]
            want = job % 3
            assert (r["state"], r["exit_code"]) == (
                "succeeded" if want == 0 else "failed", want), r
            assert r["attempt"] == 0, r
        for job in docks:
            assert (rows[job]["state"], rows[job]["exit_code"]) == ("failed", 5), rows[job]
            assert fleet.logs(job) == f"run {job}\n"
        for job in every:
            info = fleet.json("explain", str(job))
            starts = [e for e in info["events"] if e["to_state"] == "starting"]
            assert len(starts) == 1, info["events"]

    # nothing ran twice: one ledger line per process job, one job dir (attempt 0) each,
    # one container per docker job
    lines = ledger.read_text().split()
    assert sorted(lines) == sorted(str(j) for j in procs), lines
    dirs = remote(plain, f"ls ~/.fleetdeck/jobs/{fleet_id}").split()
    for job in procs:
        assert [d for d in dirs if d.startswith(f"{job}-")] == [f"{job}-0"], dirs
    assert dock.docker is not None
    client = dock.docker.client()
    try:
        for job in docks:
            found = client.containers.list(all=True, filters={"label": f"fleetdeck.job={job}"})
            assert [c.name for c in found] == [f"fleetdeck-{fleet_id}-{job}-0"]
    finally:
        client.close()

"""Stops survive kills (#17): the engine is killed -9 while it stops 10 jobs; after a restart
every one is `stopped` with the reason given, with exactly one audit row, never `failed 137`."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.bed.plugin import NodeFactory
from tests.helpers import FLEETDECK, REPO
from tests.integration.jobs_e2e import Fleet, fleet_toml

pytestmark = [pytest.mark.ssh]

JOBS = 10
REASON = "maintenance window"


@pytest.mark.timeout(600)
def test_kill_9_while_stopping_10_jobs(ssh_nodes: NodeFactory, tmp_path: Path) -> None:
    node = ssh_nodes(1)[0]
    fleet = Fleet(tmp_path, fleet_toml([node]))
    termed = tmp_path / "termed"
    # each job notes the graceful signal and keeps running: the stop waits out its grace
    body = (f'trap \'echo "$FLEETDECK_JOB_ID" >> {termed}\' TERM; '
            "while true; do sleep 0.2; done")
    with fleet.serving() as first:
        ids = fleet.submit("--executor", "process", "--node", node.name, "--cpus", "0.05",
                           "--array", str(JOBS), "--", "sh", "-c", body)
        fleet.wait_states(ids, ["running"], timeout=240)
        stops = [subprocess.Popen([*FLEETDECK, "--config", str(fleet.config), "stop", str(j),
                                   "--reason", REASON], cwd=REPO, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for j in ids]
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # every job got SIGTERM: all stops in flight
                got = set(termed.read_text().split()) if termed.exists() else set()
                if got >= {str(j) for j in ids}:
                    break
                time.sleep(0.2)
            else:
                pytest.fail(f"only {termed.read_text() if termed.exists() else 'no'} jobs "
                            "were signalled")
            first.kill()  # kill -9 mid-stop: no stop got to record its end
            first.wait(30)
        finally:
            for p in stops:
                p.wait(60)
    before = {r["id"]: r["state"] for r in fleet.jobs()}
    # the kill came within the stops' grace: (nearly) no end was written
    assert sum(s in ("running", "starting") for s in before.values()) >= JOBS // 2, before

    with fleet.serving():
        rows = fleet.wait_done(ids, timeout=240)
        for job in ids:
            assert (rows[job]["state"], rows[job]["reason"]) == ("stopped", REASON), rows[job]
            assert rows[job]["exit_code"] is None, rows[job]
        audit = fleet.json("audit", "--limit", "100000")
    stops_by_job: dict[str, int] = {}
    for a in audit:
        if a["action"] == "stop" and a["target_kind"] == "job":
            stops_by_job[a["target"]] = stops_by_job.get(a["target"], 0) + 1
    assert stops_by_job == {str(j): 1 for j in ids}, stops_by_job

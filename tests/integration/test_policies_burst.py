"""Bursting end to end: with every on-prem GPU allocated, a waiting job makes the `command`
provider start a new real sshd node (tests/integration/burst_node.py); the node joins the fleet,
the job runs there, the node is torn down after its idle time and its cost is recorded; a second
burst over the budget is refused with the reason in `fleetdeck explain`. A spot interruption
requeues the job, which bursts again."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.store import Store
from tests.bed.fake_nvml import FakeGpu
from tests.bed.procs import kill_mentioning
from tests.helpers import REPO
from tests.integration import burst_node
from tests.integration.policies_bed import Engine, node_toml

pytestmark = [pytest.mark.ssh, pytest.mark.slow]

A100 = "NVIDIA A100-SXM4-80GB"


def burst_toml(node: Any, burst_dir: Path, *, per_day: float) -> str:
    assert node.nvml is not None
    script = [sys.executable, "-m", "tests.integration.burst_node"]
    env = {"FDTEST_BURST_DIR": str(burst_dir), "FDTEST_AUTHORIZED_KEYS":
           str(node.bed.authorized_keys), "FDTEST_NVML_LIB": str(node.nvml.lib_dir),
           "PYTHONPATH": str(REPO)}
    return f"""
[policies.burst]
enabled = true
wait_threshold_s = 1
idle_teardown_s = 3
ready_timeout_s = 120
min_billed_hours = 1
max_nodes = 2
budget.per_day = {per_day}

[[policies.burst.providers]]
name = "lab"
type = "command"
command.provision_command = {json.dumps([*script, "provision", "{request_id}"])}
command.status_command = {json.dumps([*script, "status"])}
command.terminate_command = {json.dumps([*script, "terminate"])}
command.env = {{ {", ".join(f'{k} = {json.dumps(v)}' for k, v in env.items())} }}

[[policies.burst.offers]]
name = "lab-a100"
provider = "lab"
instance_type = "fake.a100"
gpu_model = "{A100}"
gpu_count = 1
price_per_hour = 1.0
max_nodes = 2
options = {{ identity_file = {json.dumps(str(node.identity_file))} }}
"""


@pytest.fixture
def burst_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The stand-in cloud's folder (also for calling the helper from the test)."""
    d = tmp_path / "cloud"
    d.mkdir()
    monkeypatch.setenv("FDTEST_BURST_DIR", str(d))
    yield d
    kill_mentioning(d)  # whatever node a failed test left running


@pytest.fixture
def onprem(ssh_nodes: Any, tmp_path: Path) -> tuple[Any, Path]:
    """One on-prem node with one fake GPU, and a known_hosts the engine may add burst keys to."""
    (node,) = ssh_nodes(1, fake_nvml={0: [FakeGpu()]})
    known = tmp_path / "known_hosts"
    shutil.copy(node.known_hosts, known)
    return node, known


def on_burst_node(eng: Engine, job_id: int) -> dict[str, Any] | None:
    row = eng.job(job_id)
    ok = row["state"] == "running" and str(row["node"]).startswith("burst-")
    return row if ok else None


def instances(eng: Engine) -> list[dict[str, Any]]:
    return list(eng.call("policies")["burst"])


def test_a_waiting_job_bursts_runs_and_the_node_is_torn_down_under_budget(
        onprem: tuple[Any, Path], burst_dir: Path, tmp_path: Path) -> None:
    node, known = onprem
    eng = Engine(tmp_path, node_toml(node) + burst_toml(node, burst_dir, per_day=1.5),
                 known_hosts=known)
    with eng.serving():
        holder = eng.submit("sleep", "600", name="holder")
        eng.wait_state(holder, "running")
        job = eng.submit("sh", "-c", "sleep 4; echo done-on-$FLEETDECK_BED_NODE",
                         name="burster", project="vision", team="research")
        rid = f"fd-{job}-0"
        prov = eng.wait("provision", lambda: eng.actions("burst_provision", rid))[0]
        assert prov["actor"] == "policy:burst" and prov["evidence"]["offer"] == "lab-a100"
        assert prov["evidence"]["onprem_alloc_pct"] == 100
        row = eng.wait("job on the burst node", lambda: on_burst_node(eng, job), timeout=180)
        burst_name = row["node"]
        (inst,) = [i for i in instances(eng) if i["node"] == burst_name]
        assert inst["state"] == "ready" and inst["provider"] == "lab"
        assert inst["gpu_model"] == A100 and inst["price_per_hour"] == 1.0
        assert any(n["name"] == burst_name for n in eng.call("fleet"))
        done = eng.wait_state(job, "succeeded", timeout=120)
        assert done["node"] == burst_name and done["burst"] is True

        # torn down after idle_teardown_s without a job: sshd gone, node left the fleet
        term = eng.wait("teardown", lambda: eng.actions("burst_terminate", inst["instance_id"]),
                        timeout=120)[0]
        assert "idle" in term["reason"]
        gone = eng.wait("terminated", lambda: [i for i in instances(eng) if
                                               i["instance_id"] == inst["instance_id"]
                                               and i["state"] == "terminated"])[0]
        assert gone["cost"] == pytest.approx(1.0)  # one billed hour minimum at 1.0/h
        assert burst_node.status(inst["instance_id"])["state"] == "terminated"
        eng.wait("node left", lambda: all(n["name"] != burst_name for n in eng.call("fleet")))

        # a second burst would cost 1.0 more than the 1.5 daily budget allows: refused
        late = eng.submit("sleep", "600", name="late")
        refuse = eng.wait("refusal", lambda: eng.actions("burst_refuse", late))[0]
        assert "global daily budget 1.50 would be exceeded" in refuse["reason"]
        res = eng.cli("explain", str(late))
        assert res.returncode == 0, res.stderr
        assert "burst: burst refused: global daily budget 1.50 would be exceeded" in res.stdout
        info = eng.cli_json("explain", str(late))
        assert info["state"] == "queued" and any("budget" in x for x in info["burst"])
        assert len(eng.actions("burst_refuse", late)) == 1  # announced once
        assert not [i for i in instances(eng) if i["state"] != "terminated"]
        for j in (holder, late):
            eng.call("stop", job=j, reason="test over")
        explained = eng.cli_json("explain", str(job))
        assert any("burst_provision" in x for x in explained["burst"])

    with Store.open(eng.store, read_only=True) as store:
        rows = store.con.execute(
            "SELECT instance_id, request_id, node, state, team, project, cost, ready_at "
            "IS NOT NULL, terminated_at > launched_at FROM burst_instances").fetchall()
        assert rows == [(inst["instance_id"], rid, burst_name, "terminated", "research",
                         "vision", pytest.approx(1.0), True, True)]
        spend = store.con.execute(
            "SELECT instance_id, provider, team, project, sum(hours), sum(amount) FROM spend "
            "GROUP BY ALL").fetchall()
        assert spend == [(inst["instance_id"], "lab", "research", "vision", pytest.approx(1.0),
                          pytest.approx(1.0))]
        (pool,) = store.con.execute("SELECT pool FROM nodes WHERE name = ?",
                                    [burst_name]).fetchall()[0]
        assert pool == "burst"


def test_a_spot_interruption_requeues_the_job_which_bursts_again(
        onprem: tuple[Any, Path], burst_dir: Path, tmp_path: Path) -> None:
    node, known = onprem
    eng = Engine(tmp_path, node_toml(node) + burst_toml(node, burst_dir, per_day=10),
                 known_hosts=known)
    with eng.serving():
        holder = eng.submit("sleep", "600", name="holder")
        eng.wait_state(holder, "running")
        job = eng.submit("sleep", "600", name="spot-victim")
        first = eng.wait("first burst node", lambda: on_burst_node(eng, job), timeout=180)
        (inst,) = [i for i in instances(eng) if i["node"] == first["node"]]

        burst_node.kill(inst["instance_id"])  # the cloud takes the spot node away
        lost = eng.wait("loss", lambda: eng.actions("burst_lost", inst["instance_id"]))[0]
        assert "spot interruption" in lost["reason"]
        requeue = eng.wait("requeue", lambda: eng.actions("burst_requeue", job),
                           context=lambda: eng.job(job))[0]
        assert requeue["evidence"]["instance_id"] == inst["instance_id"]
        again = eng.wait("second burst node", lambda: (
            (r := on_burst_node(eng, job)) and r["node"] != first["node"] and r), timeout=180)
        assert again["attempt"] == 1
        assert eng.actions("burst_provision", f"fd-{job}-1")
        states = {i["instance_id"]: i["state"] for i in instances(eng)}
        assert states[inst["instance_id"]] == "lost"

    # an engine restart: the burst node rejoins and its job is adopted, not lost
    with eng.serving():
        eng.wait("node rejoined", lambda: any(n["name"] == again["node"] and n["gpus"]
                                              for n in eng.call("fleet")), timeout=120)
        row = eng.job(job)
        assert (row["state"], row["node"], row["attempt"]) == ("running", again["node"], 1)
        for j in (holder, job):
            eng.call("stop", job=j, reason="test over")
        eng.wait("second node torn down", lambda: all(
            i["state"] in ("terminated", "lost") for i in instances(eng)), timeout=120)

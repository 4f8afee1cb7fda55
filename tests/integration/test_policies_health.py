"""GPU health and cordons end to end: a fake-NVML ECC error drains the node (no new placements,
the job on the broken GPU is requeued, the broken time is recorded), `fleetdeck uncordon`
declares it healthy again, `fleetdeck cordon` stops placements by hand, a critical Xid drains
again; every step is an audit row."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.bed.fake_nvml import FakeGpu
from tests.integration.policies_bed import Engine, node_toml

pytestmark = [pytest.mark.ssh, pytest.mark.slow]

HEALTH_TOML = """
[policies.health]
on_unhealthy = "requeue"
"""


def stays_queued(eng: Engine, job_id: int, seconds: float) -> None:
    """The job is still waiting after several placement cycles."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = eng.job(job_id)
        assert row["state"] == "queued", row
        time.sleep(0.3)


def test_ecc_error_drains_the_node_and_cordon_uncordon_work(ssh_nodes: Any,
                                                            tmp_path: Path) -> None:
    (node,) = ssh_nodes(1, fake_nvml={0: [FakeGpu()] * 4})
    assert node.nvml is not None
    eng = Engine(tmp_path, node_toml(node) + HEALTH_TOML, known_hosts=node.known_hosts)
    with eng.serving():
        j1 = eng.submit("sleep", "600", name="victim")
        (g,) = eng.wait_state(j1, "running")["gpu_indices"]
        # the health policy needs a clean sample before the counter moves
        eng.wait("health samples", lambda: any(
            n["name"] == node.name and n["gpus"] for n in eng.call("fleet")))
        time.sleep(2)

        node.nvml.set(g, ecc_uncorrected=2)
        drain = eng.wait("drain", lambda: eng.actions("drain", node.name), timeout=60)[0]
        assert drain["actor"] == "policy:health" and drain["evidence"]["gpus"] == [g]
        (bad,) = eng.actions("gpu_unhealthy", f"{node.name}:{g}")
        assert "uncorrected (double-bit) ECC" in bad["reason"]
        assert bad["evidence"]["broken_from"]
        requeued = eng.wait("requeue", lambda: eng.actions("health_requeue", j1))[0]
        assert requeued["actor"] == "policy:health"
        row = eng.wait_state(j1, "queued")
        assert row["attempt"] == 1
        shown = eng.call("policies")
        assert [(d["node"], d["gpus"]) for d in shown["drained"]] == [(node.name, [g])]
        nodes = {n["name"]: n for n in eng.call("nodes")}
        assert nodes[node.name]["state"] is not None

        # no new placements on the drained node
        j2 = eng.submit("sleep", "600", name="newcomer")
        stays_queued(eng, j2, 3)
        stays_queued(eng, j1, 0.5)

        # an admin declares it healthy: intervals closed, drain lifted, jobs placed
        res = eng.cli_json("uncordon", node.name, "--reason", "GPU reset by hand")
        assert res["recovered_gpus"] == [g]
        eng.wait_state(j1, "running")
        eng.wait_state(j2, "running")
        trail = eng.audit()
        un = [r for r in trail if r["action"] == "uncordon"]
        rec = [r for r in trail if r["action"] == "gpu_recovered"]
        und = [r for r in trail if r["action"] == "undrain"]
        assert len(un) == len(rec) == len(und) == 1
        assert un[0]["reason"] == "GPU reset by hand"
        assert un[0]["actor"] == rec[0]["actor"] == und[0]["actor"] != "policy:health"
        assert rec[0]["evidence"]["broken_until"] > rec[0]["evidence"]["broken_from"]
        assert eng.call("policies")["drained"] == []

        # a manual cordon: no new placements until uncordoned
        res = eng.cli_json("cordon", node.name, "--reason", "maintenance window")
        # cordon and uncordon share one reply type: a cordon recovers no GPU
        assert res == {"node": node.name, "cordoned": True, "reason": "maintenance window",
                       "recovered_gpus": []}
        shown = eng.cli_json("policies")
        assert shown["cordoned"] == [{"node": node.name, "reason": "maintenance window"}]
        j3 = eng.submit("sleep", "600", name="late")
        stays_queued(eng, j3, 3)
        (co,) = eng.actions("cordon", node.name)
        assert co["reason"] == "maintenance window" and co["actor"] == un[0]["actor"]
        res = eng.cli("uncordon", node.name)
        assert res.returncode == 0, res.stderr
        (g3,) = eng.wait_state(j3, "running")["gpu_indices"]
        assert len(eng.actions("uncordon", node.name)) == 2
        res = eng.cli("uncordon", node.name)  # nothing to lift: refused with one line
        assert res.returncode == 1 and "is not cordoned or drained" in res.stderr

        # a critical Xid on the free GPU drains the node again; its jobs go on (other GPUs)
        (free,) = set(range(4)) - {g, g3, *eng.job(j1)["gpu_indices"],
                                   *eng.job(j2)["gpu_indices"]}
        node.nvml.xid(free, 79)
        eng.wait("second drain", lambda: len(eng.actions("drain", node.name)) == 2, timeout=60)
        (xid,) = eng.actions("gpu_unhealthy", f"{node.name}:{free}")
        assert "critical Xid 79" in xid["reason"]
        for j in (j1, j2, j3):
            assert eng.job(j)["state"] == "running"
            eng.call("stop", job=j, reason="test over")
        trail = eng.cli_json("audit", "--limit", "1000")  # the same rows through the CLI
        seen = {(r["action"], r["target"]) for r in trail}
        assert {("gpu_unhealthy", f"{node.name}:{g}"), ("drain", node.name),
                ("health_requeue", str(j1)), ("uncordon", node.name),
                ("gpu_recovered", f"{node.name}:{g}"), ("undrain", node.name),
                ("cordon", node.name), ("gpu_unhealthy", f"{node.name}:{free}"),
                ("stop", str(j3))} <= seen

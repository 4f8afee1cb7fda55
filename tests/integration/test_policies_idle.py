"""Idle GPU jobs end to end: process jobs on a fake-NVML bed node, utilization driven through the
fake NVML, a real engine deciding. Busy and flapping jobs are never touched; an idle job is
warned then stopped (audit rows with evidence); a job that gets busy again after its warning is
cleared and keeps running; dry-run only records; requeue puts the job back; a snooze exempts.
With Docker jobs the container's CPU is a second signal: idle GPUs but a busy CPU is work."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bed.fake_nvml import GIB, FakeGpu, FakeNvml
from tests.integration.policies_bed import Engine, node_toml

pytestmark = [pytest.mark.ssh, pytest.mark.slow]

GPUS = 12
BUSY_PCT = 80
HELD_BYTES = 20 * GIB

IDLE_TOML = """
[policies.idle]
enabled = true
window_s = 4
gpu_util_threshold_pct = 5
check_cpu = false          # process jobs have no per-job CPU samples
grace_s = 0
stop_after_s = 2
stop_timeout_s = 2
min_samples = 3
max_gap_s = 2.5

[[policies.idle.rules]]
project = "dry"
dry_run = true

[[policies.idle.rules]]
project = "ib"             # idle, then busy again: a long stop delay leaves time to get busy
stop_after_s = 60

[[policies.idle.rules]]
project = "rq"
requeue = true
"""


class Gpus:
    """The node's fake GPUs, changed from several threads."""

    def __init__(self, nvml: FakeNvml) -> None:
        self.nvml = nvml
        self.lock = threading.Lock()

    def util(self, indices: list[int], pct: int) -> None:
        with self.lock:
            for i in indices:
                self.nvml.set(i, util_pct=pct)


@pytest.fixture
def gpus_node(ssh_nodes: Any) -> Iterator[Any]:
    gpu = FakeGpu(util_pct=BUSY_PCT, mem_used_bytes=HELD_BYTES)
    (node,) = ssh_nodes(1, fake_nvml={0: [gpu] * GPUS})
    yield node


def test_idle_jobs_are_warned_then_stopped_and_busy_ones_never(gpus_node: Any,
                                                               tmp_path: Path) -> None:
    node = gpus_node
    assert node.nvml is not None
    gpus = Gpus(node.nvml)
    eng = Engine(tmp_path, node_toml(node) + IDLE_TOML, known_hosts=node.known_hosts)
    stop_flap = threading.Event()
    with eng.serving():
        ids = {p: eng.submit("sleep", "600", gpus=2, project=p, name=f"idle-{p}")
               for p in ("busy", "idle", "ib", "flap", "dry", "rq")}
        rows = {p: eng.wait_state(j, "running", timeout=120) for p, j in ids.items()}
        held = {p: list(r["gpu_indices"]) for p, r in rows.items()}
        assert sorted(i for g in held.values() for i in g) == list(range(GPUS))

        def flap() -> None:  # around the 5% threshold: some sample in every window is busy
            high = True
            while not stop_flap.is_set():
                gpus.util(held["flap"], 9 if high else 2)
                high = not high
                stop_flap.wait(0.6)

        flapper = threading.Thread(target=flap, daemon=True)
        flapper.start()
        started = time.monotonic()
        try:
            gpus.util(held["idle"] + held["ib"] + held["dry"] + held["rq"], 0)

            # idle: warned with evidence, then stopped through the runner
            warn = eng.wait("idle warning", lambda: eng.actions("idle_warn", ids["idle"]),
                            timeout=90)[0]
            ev = warn["evidence"]
            assert warn["actor"] == "policy:idle" and not warn["dry_run"]
            assert ev["window_s"] == 4 and ev["gpu_util_max_pct"] < 5
            assert ev["gpu_mem_held_bytes"] == HELD_BYTES
            assert sorted(ev["gpus"]) == sorted(held["idle"])
            eng.wait_state(ids["idle"], "stopped", timeout=60)
            (stop,) = eng.actions("idle_stop", ids["idle"])
            assert stop["actor"] == "policy:idle" and stop["id"] > warn["id"]
            assert stop["evidence"]["warned_at"] and stop["evidence"]["gpu_util_max_pct"] < 5

            # idle then busy again: the warning is shown, then cleared; no stop
            eng.wait("ib warning", lambda: eng.actions("idle_warn", ids["ib"]), timeout=60)
            shown = eng.call("policies")
            (entry,) = [e for e in shown["idle"] if e["job"] == ids["ib"]]
            assert entry["state"] == "warned" and entry["node"] == node.name
            assert entry["evidence"]["max_util_pct"] < 5
            assert entry["evidence"]["mem_held_bytes"] == HELD_BYTES
            gpus.util(held["ib"], BUSY_PCT)
            clear = eng.wait("ib cleared", lambda: eng.actions("idle_clear", ids["ib"]),
                             timeout=60)[0]
            assert "GPU util reached" in clear["reason"]

            # dry run: warn and stop rows marked dry_run, the job keeps running
            eng.wait("dry-run stop", lambda: eng.actions("idle_stop", ids["dry"]), timeout=60)
            dry = eng.actions("idle_warn", ids["dry"]) + eng.actions("idle_stop", ids["dry"])
            assert len(dry) == 2 and all(r["dry_run"] for r in dry)

            # requeue: stopped, requeued (audited), placed again
            eng.wait("requeue", lambda: eng.actions("idle_requeue", ids["rq"]), timeout=60)
            assert eng.actions("idle_stop", ids["rq"])
            assert eng.job(ids["rq"])["attempt"] >= 1

            # a snooze (owner, reason) exempts the dry-run job: its warning is cleared
            res = eng.cli_json("snooze", str(ids["dry"]), "--hours", "1", "--reason",
                               "loading a large dataset")
            assert res["job"] == ids["dry"]
            (sn,) = eng.actions("snooze", ids["dry"])
            assert sn["reason"] == "loading a large dataset" and sn["evidence"]["until"]
            cleared = eng.wait("snoozed job cleared",
                               lambda: eng.actions("idle_clear", ids["dry"]), timeout=60)
            assert "snoozed by" in cleared[0]["reason"]
            shown = eng.cli_json("policies")
            assert [s["job"] for s in shown["snoozed"]] == [ids["dry"]]

            # long enough for several windows and stop delays of the busy and flapping jobs
            time.sleep(max(0.0, 16 - (time.monotonic() - started)))
        finally:
            stop_flap.set()
            flapper.join(5)
        for p in ("busy", "flap", "ib", "dry"):
            assert eng.job(ids[p])["state"] == "running", p
            assert not eng.actions("idle_stop", ids[p]) or p == "dry", p
        for p in ("busy", "flap"):
            assert not eng.actions("idle_warn", ids[p]), p
        assert not [r for r in eng.actions("idle_stop", ids["dry"]) if not r["dry_run"]]
        for j in ids.values():
            if eng.job(j)["state"] in ("queued", "starting", "running"):
                eng.call("stop", job=j, reason="test over")


CPU_TOML = """
[policies.idle]
enabled = true
window_s = 4
gpu_util_threshold_pct = 5
check_cpu = true
cpu_util_threshold_pct = 3
grace_s = 0
stop_after_s = 1
stop_timeout_s = 2
min_samples = 3
max_gap_s = 2.5
"""

# a little CPU work in bursts: well above 3% of a core, far from a whole one
CPU_LOOP = "while :; do i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; sleep 0.1; done"


def test_container_cpu_keeps_a_job_with_idle_gpus_alive(
        ssh_nodes: Any, docker_image: Callable[[Any], str], tmp_path: Path) -> None:
    gpu = FakeGpu(util_pct=0, mem_used_bytes=HELD_BYTES)
    (node,) = ssh_nodes(1, docker=True, fake_nvml={0: [gpu] * 2})
    image = docker_image(node)
    eng = Engine(tmp_path, node_toml(node) + CPU_TOML, known_hosts=node.known_hosts)
    with eng.serving():
        quiet = eng.submit("sleep", "600", name="quiet", executor="docker", image=image)
        busy = eng.submit("sh", "-c", CPU_LOOP, name="cpu-bound", executor="docker",
                          image=image)
        eng.wait_state(quiet, "running")
        eng.wait_state(busy, "running")
        warn = eng.wait("quiet warned", lambda: eng.actions("idle_warn", quiet), timeout=90)[0]
        assert warn["evidence"]["cpu_util_max_pct"] < 3
        eng.wait_state(quiet, "stopped", timeout=60)
        (stop,) = eng.actions("idle_stop", quiet)
        assert stop["evidence"]["stop_timeout_s"] == 2
        info = eng.call("explain", job=busy)
        assert info["idle"]["summary"].startswith("busy: CPU reached"), info.get("idle")
        assert not eng.actions("idle_warn", busy)
        assert eng.job(busy)["state"] == "running"
        eng.call("stop", job=busy, reason="test over")

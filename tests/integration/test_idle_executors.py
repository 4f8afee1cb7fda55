"""Idle GPU jobs are found and stopped on every executor with config.example.toml's idle
defaults (check_cpu = true, missing_signal = gpu_only), only the window, grace and stop delays
shortened and stopping switched from dry run to real.

Each test runs a real engine over a fake-NVML bed node: an idle 1-GPU job is warned, then
stopped, both audited, its evidence naming the CPU signal the probe read from /proc; a job
beside it that is busy (GPU above the threshold, or a CPU loop) keeps running; a job the policy
cannot judge says "not enough data" with the reason in `explain` and `policies`."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from console.engine.api.replies import Explanation
from tests.bed.fake_nvml import GIB, FakeGpu
from tests.integration.policies_bed import Engine, node_toml

pytestmark = [pytest.mark.ssh, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
SHORTENED = {"enabled": True, "dry_run": False, "window_s": 4.0, "grace_s": 0.0,
             "stop_after_s": 2.0, "stop_timeout_s": 2.0}
CPU_LOOP = "while :; do :; done"


def idle_toml() -> str:
    """`[policies.idle]` as in config.example.toml (rules aside), delays shortened, plus a
    rule that leaves project `nd` without enough samples to judge."""
    example = tomllib.loads(EXAMPLE.read_text())["policies"]["idle"]
    settings = {k: v for k, v in example.items() if k != "rules"}
    assert settings["check_cpu"] is True and settings["missing_signal"] == "gpu_only"
    settings.update(SHORTENED)
    lines = ["[policies.idle]"]
    for k, v in settings.items():
        lines.append(f"{k} = {_toml(v)}")
    lines += ["", "[[policies.idle.rules]]", 'project = "nd"', "min_samples = 100000"]
    # a busy loop gets what the machine's scheduler gives it: on 2 loaded cores that can be
    # under the default 20 % of a core, so its project judges CPU from 5 %
    lines += ["", "[[policies.idle.rules]]", 'project = "cpu"', "cpu_util_threshold_pct = 5.0"]
    return "\n".join(lines) + "\n"


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)


def check_idle_stopped(eng: Engine, job: int) -> dict[str, Any]:
    """The idle job: warned with CPU evidence, then stopped; one audit row each."""
    warn = eng.wait("idle warning", lambda: eng.actions("idle_warn", job), timeout=120)[0]
    ev = warn["evidence"]
    assert warn["actor"] == "policy:idle" and not warn["dry_run"]
    assert ev["signals"] == ["gpu", "cpu"], ev
    assert ev["gpu_util_max_pct"] < 5 and ev["cpu_util_max_pct"] < 20
    assert "fallback" not in ev
    eng.wait_state(job, "stopped", timeout=90)
    (stop,) = eng.actions("idle_stop", job)
    assert stop["id"] > warn["id"] and stop["actor"] == "policy:idle"
    return ev


def check_busy(eng: Engine, job: int, why: str) -> None:
    info = eng.wait("busy verdict", lambda: (eng.call("explain", job=job).get("idle") or {})
                    .get("status") == "busy" and eng.call("explain", job=job), timeout=90)
    assert info["idle"]["summary"].startswith(f"busy: {why}"), info["idle"]
    assert not eng.actions("idle_warn", job)
    assert eng.job(job)["state"] == "running"


def test_process_jobs_idle_stopped_busy_kept_unjudged_said(ssh_nodes: Any,
                                                           tmp_path: Path) -> None:
    (node,) = ssh_nodes(1, fake_nvml={0: [FakeGpu(util_pct=0, mem_used_bytes=4 * GIB)] * 4})
    assert node.nvml is not None
    eng = Engine(tmp_path, node_toml(node) + idle_toml(), known_hosts=node.known_hosts)
    with eng.serving():
        idle = eng.submit("sleep", "600", name="idle")
        cpu = eng.submit("sh", "-c", CPU_LOOP, name="cpu-bound", project="cpu")
        gpu = eng.submit("sleep", "600", name="gpu-bound")
        nd = eng.submit("sleep", "600", name="unjudged", project="nd")
        rows = {j: eng.wait_state(j, "running", timeout=120) for j in (idle, cpu, gpu, nd)}
        for i in rows[gpu]["gpu_indices"]:
            node.nvml.set(i, util_pct=80)

        ev = check_idle_stopped(eng, idle)
        assert ev["gpu_mem_held_bytes"] == 4 * GIB
        check_busy(eng, cpu, "CPU reached")
        check_busy(eng, gpu, "GPU util reached 80.0%")

        info = eng.call("explain", job=nd)
        assert info["idle"]["status"] == "no_data"
        assert info["idle"]["summary"].startswith("not enough data: GPU "), info["idle"]
        assert "need 100000" in info["idle"]["summary"]
        assert info["usage"]["procs"] >= 1 and info["usage"]["node"] == node.name
        typed = msgspec.convert(info, Explanation, strict=False)  # the table's reply type
        assert typed.idle is not None and typed.idle.status == "no_data"
        listed = eng.call("policies")["idle_unjudged"]
        assert [u["job"] for u in listed] == [nd]
        out = eng.cli("explain", str(nd))
        assert out.returncode == 0 and "idle: not enough data: GPU" in out.stdout, out.stdout
        for j in (cpu, gpu, nd):
            eng.call("stop", job=j, reason="test over")


def test_docker_jobs_idle_stopped_busy_kept(
        ssh_nodes: Any, docker_image: Callable[[Any], str], tmp_path: Path) -> None:
    (node,) = ssh_nodes(1, docker=True,
                        fake_nvml={0: [FakeGpu(util_pct=0, mem_used_bytes=4 * GIB)] * 2})
    image = docker_image(node)
    eng = Engine(tmp_path, node_toml(node) + idle_toml(), known_hosts=node.known_hosts)
    with eng.serving():
        idle = eng.submit("sleep", "600", name="idle", executor="docker", image=image)
        busy = eng.submit("sh", "-c", CPU_LOOP, name="cpu-bound", executor="docker",
                          image=image, project="cpu")
        eng.wait_state(idle, "running", timeout=120)
        eng.wait_state(busy, "running", timeout=120)
        check_idle_stopped(eng, idle)
        check_busy(eng, busy, "CPU reached")
        eng.call("stop", job=busy, reason="test over")


def test_slurm_jobs_idle_stopped_busy_kept(ssh_nodes: Any, tmp_path: Path) -> None:
    (login,) = ssh_nodes(1, slurm=True,
                         fake_nvml={0: [FakeGpu(util_pct=0, mem_used_bytes=4 * GIB)] * 4})
    pools = f'[[pools]]\nname = "hpc"\nkind = "slurm"\nlogin_node = "{login.name}"\n'
    eng = Engine(tmp_path, node_toml(login, pool="hpc") + pools + idle_toml(),
                 known_hosts=login.known_hosts)
    with eng.serving():
        idle = eng.submit("sleep", "600", name="idle", executor="slurm", pool="hpc")
        busy = eng.submit("sh", "-c", CPU_LOOP, name="cpu-bound", executor="slurm",
                          pool="hpc", project="cpu")
        eng.wait_state(idle, "running", timeout=120)
        eng.wait_state(busy, "running", timeout=120)
        check_idle_stopped(eng, idle)
        check_busy(eng, busy, "CPU reached")
        eng.call("stop", job=busy, reason="test over")

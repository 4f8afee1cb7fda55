"""`fleetdeck --demo` headless: the real engine on the demo config (48 sim nodes), the live
workload through the engine protocol, the history written on the engine's store thread."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collectors.transport.sim import sandbox_pids
from console.demo import fleet
from console.demo.session import Demo, embedded_store_runner
from console.engine.client import EngineClient
from console.engine.host import EmbeddedEngine
from scheduler.jobspec import JobSpec
from tests.helpers import cli, one_line_error

NODES = len(fleet.nodes())
GPUS = sum(n.profile.gpu_count for n in fleet.nodes())


async def until(client: EngineClient, method: str, pred: Any, timeout_s: float,
                **params: Any) -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = await client.call(method, **params)
        if pred(last):
            return last
        await asyncio.sleep(0.3)
    raise AssertionError(f"{method} never satisfied the condition; last answer: {last}")


async def check_live_fleet(socket: Path, history_jobs: int) -> None:
    c = await EngineClient.connect(socket)
    try:
        status = await c.call("status")
        assert status["nodes_configured"] == NODES
        summary = await until(c, "summary", lambda s: s["nodes_up"] == NODES
                              and s["running_jobs"] > 0, 90)
        assert summary["gpus_total"] == GPUS
        nodes = await c.call("nodes")
        assert {n["name"] for n in nodes} == {n.name for n in fleet.nodes()}
        assert {n["transport"] for n in nodes} == {"sim"}
        # the workload lands on GPUs, and the simulated GPUs show it
        busy = await until(c, "fleet", lambda f: any(
            g["jobs"] and (g["util_pct"] or 0) > 5 for n in f for g in n["gpus"]), 60)
        by_name = {n["name"]: n for n in busy}
        assert len(by_name["h100-01"]["gpus"]) == 8 and len(by_name["l40s-01"]["gpus"]) == 4
        assert by_name["cpu-01"]["gpus"] == []
        running = await c.call("jobs", states=["running"], limit=500)
        assert running and all(j["id"] > history_jobs for j in running)
        assert all(j["node"] in by_name for j in running)
        # a job of our own, through the same protocol as the workload
        spec = JobSpec(name="demo-test-probe", command=("sleep", "30"), user="heidi",
                       project="evals", team="platform", executor="process", gpus=1.0,
                       pool="interactive", labels={"gpu": "l40s"}, max_runtime_s=120.0)
        ids = (await c.call("submit", spec=spec.to_dict()))["ids"]
        mine = await until(c, "jobs", lambda js: any(
            j["id"] == ids[0] and j["state"] == "running" for j in js), 60, limit=200)
        job = next(j for j in mine if j["id"] == ids[0])
        assert job["node"].startswith("l40s-") and len(job["gpu_indices"]) == 1
    finally:
        await c.close()


def test_demo_engine_runs_the_sim_fleet(tmp_path: Path) -> None:
    with Demo(root=tmp_path / "demo", interval_s=1.0) as demo:
        started = datetime.fromtimestamp(time.time() - 5, UTC).replace(tzinfo=None).isoformat()
        loaded = demo.prepare()
        assert demo.history is not None
        history_jobs = demo.history.job_count
        assert all(n.transport == "sim" for n in loaded.config.nodes)
        engine = EmbeddedEngine(loaded)
        engine.start()
        try:
            demo.start(embedded_store_runner(engine))
            asyncio.run(check_live_fleet(loaded.config.socket_path, history_jobs))
            assert demo.wait_history(300)
            counts = asyncio.run(_db_counts(loaded.config.socket_path))
            assert counts["gpu_samples_1h"] >= GPUS * 182 * 24
            assert counts["jobs"] > history_jobs
            # the history took ids below the live ones: the newest audit rows are live
            newest = asyncio.run(_call(loaded.config.socket_path, "audit", limit=5))
            assert min(str(a["ts"]) for a in newest) >= started
        finally:
            demo.stop_workload()
            engine.stop()
        pids = [p for box in demo.sandboxes() for p in sandbox_pids(box)]
        assert pids
    # leaving the block killed what the demo's jobs still ran
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{p}").exists() and _home_in(p, tmp_path) for p in pids):
        assert time.monotonic() < deadline, "demo job processes survived close()"
        time.sleep(0.1)


def test_demo_without_root_removes_its_folder() -> None:
    demo = Demo(history_days=2)
    root = demo.root
    with demo:
        demo.prepare(defer_history=False)
        assert demo.wait_history(1)
        assert (root / "config.toml").exists()
    assert not root.exists()


async def _call(socket: Path, method: str, **params: Any) -> Any:
    c = await EngineClient.connect(socket)
    try:
        return await c.call(method, **params)
    finally:
        await c.close()


async def _db_counts(socket: Path) -> dict[str, int]:
    return dict((await _call(socket, "db_info"))["tables"])


def _home_in(pid: int, root: Path) -> bool:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"HOME={root}".encode() in env


def test_demo_ignores_store_and_engine_settings_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user_store = tmp_path / "user" / "fleetdeck.duckdb"
    monkeypatch.setenv("FLEETDECK__STORE__PATH", str(user_store))
    monkeypatch.setenv("FLEETDECK__ENGINE__SOCKET", str(tmp_path / "user" / "engine.sock"))
    monkeypatch.setenv("FLEETDECK__ENGINE__COLLECT", "false")
    with Demo(root=tmp_path / "demo", history_days=2) as demo:
        cfg = demo.prepare(defer_history=False).config
        assert cfg.store.path == tmp_path / "demo" / "store" / "demo.duckdb"
        assert cfg.socket_path.parent == tmp_path / "demo" / "store"
        assert cfg.engine.collect and cfg.engine.schedule
    assert not user_store.parent.exists()


def test_cli_with_demo_reaches_the_running_demo(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`fleetdeck --demo COMMAND` uses the config of the demo running now (found through
    the pointer the demo writes); with no demo running it says so in one line."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    res = cli("--demo", "config", "check", env=env)
    assert res.returncode == 1 and one_line_error(res).startswith(
        "fleetdeck: no fleetdeck demo is running: start one with `fleetdeck --demo`")
    demo = Demo(history_days=2)
    with demo:
        demo.prepare(defer_history=False)
        res = cli("--demo", "config", "check", env=env)
        assert res.returncode == 0, res.stderr
        assert f"config: {demo.root / 'config.toml'} (valid)" in res.stdout
    gone = cli("--demo", "config", "check", env=env)
    assert gone.returncode == 1, "the pointer goes with the demo"

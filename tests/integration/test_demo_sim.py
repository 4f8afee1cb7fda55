"""The simulated-node transport against the real probe parser, fleet collector, process
executor and command burst provider: only the node is fake."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.fleet import FleetCollector, collect_once
from collectors.models import ProbeHello, ProbeRecord
from collectors.probe import parse_line, python_command, stdin_payload
from collectors.sources.probe import probe_command
from collectors.transport import NodeTarget, TransportError, make_transport
from collectors.transport.sim import (
    SimProfile,
    SimTransport,
    set_down,
    stop_sandbox_jobs,
    write_profile,
)
from console.demo import fleet
from console.typed import build
from scheduler.executors.base import Launch
from scheduler.executors.process import ProcessExecutor
from scheduler.policies.burst import BurstConfig
from scheduler.providers.command import CommandProvider

GIB = 2**30
PROFILE = SimProfile(cpu_count=16, mem_total_bytes=64 * GIB, gpu_count=4, gpu_model="NVIDIA L40S",
                     gpu_mem_total_bytes=48 * GIB, gpu_power_limit_w=350.0,
                     gpu_idle_power_w=35.0, gpu_sm_clock_mhz=2520, driver_version="550.90.07")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeTarget]:
    sandbox = tmp_path / "sim-1"
    write_profile(sandbox, PROFILE)
    yield NodeTarget(name="sim-1", host=str(sandbox), transport="sim", docker_socket="",
                     pool="gpu")
    stop_sandbox_jobs(sandbox)


def launch(job_id: int, gpus: tuple[int, ...], *, milli: int = 1000,
           env: dict[str, str] | None = None) -> Launch:
    return Launch(job_id=job_id, attempt=0, name=f"job-{job_id}", user="alice", project="p",
                  argv=("sleep", "60"), gpu_indices=gpus, gpu_milli=milli,
                  env=env or {}, max_runtime_s=120.0)


async def samples(t: SimTransport, count: int) -> list[ProbeRecord | ProbeHello]:
    command, payload = probe_command(0.3)
    out: list[ProbeRecord | ProbeHello] = []
    async with t.stream_shell(command, input=payload, keep_stdin_open=True) as lines:
        async for raw in lines:
            out.append(parse_line(t.node.name, raw))
            if len(out) > count:
                break
    return out


def test_factory_makes_a_sim_transport_that_runs_commands_in_its_sandbox(
        node: NodeTarget) -> None:
    t = make_transport(node)
    assert isinstance(t, SimTransport)

    async def go() -> None:
        res = await t.run(["sh", "-c", 'echo "$HOME"; pwd'], timeout=10)
        assert res.ok
        assert res.text().split() == [node.host, node.host]
        shell = await t.run_shell("echo $FLEETDECK_SIM_NODE", timeout=10)
        assert shell.text().strip() == "sim-1"
        async with t.stream(["sh", "-c", "echo a; echo b"]) as lines:
            assert [x async for x in lines] == [b"a", b"b"]
        with pytest.raises(TransportError, match="no Docker"):
            await t.forward_unix("/var/run/docker.sock")
        # the bare Python bootstrap (no shell fallback words): settings from its payload
        async with t.stream_shell(python_command(), input=stdin_payload(0.2),
                                  keep_stdin_open=True) as lines:
            kinds = []
            async for raw in lines:
                kinds.append(type(parse_line(node.name, raw)).__name__)
                if len(kinds) == 2:
                    break
        assert kinds == ["ProbeHello", "ProbeRecord"]

    asyncio.run(go())


def test_probe_lines_parse_and_follow_the_jobs_running_there(node: NodeTarget) -> None:
    t = SimTransport(node)
    ex = ProcessExecutor()

    async def go() -> None:
        idle = await samples(t, 1)
        assert isinstance(idle[0], ProbeHello) and idle[0].probe_version.startswith("sim")
        rec = idle[1]
        assert isinstance(rec, ProbeRecord)
        assert [g.util_pct for g in rec.gpus] == [0.0] * 4
        assert rec.host.cpu_count == 16 and rec.host.mem_total_bytes == 64 * GIB
        assert {g.model for g in rec.gpus} == {"NVIDIA L40S"}

        busy = await ex.start(launch(41, (1, 2), env={"SIM_UTIL_PCT": "90"}), t)
        notebook = await ex.start(launch(42, (3,), milli=250,
                                         env={"SIM_BUSY_S": "1", "SIM_MEM_FRAC": "0.8"}), t)
        await asyncio.sleep(1.5)  # past the notebook's busy second
        got = [r for r in await samples(t, 3) if isinstance(r, ProbeRecord)]
        last = got[-1]
        util = {g.gpu_index: g.util_pct or 0.0 for g in last.gpus}
        assert util[1] > 20 and util[2] > 20  # ramping up towards 90
        assert util[0] == 0.0 and util[3] == 0.0  # unheld / an idle notebook
        mem = {g.gpu_index: g.mem_used_bytes or 0 for g in last.gpus}
        assert mem[0] == 0 and GIB < mem[3] <= 0.25 * 48 * GIB  # the notebook keeps memory
        owners = {(p.gpu_index, p.job_id) for p in last.processes}
        assert owners == {(1, 41), (2, 41), (3, 42)}
        assert last.host.cpu_util_pct is not None and last.host.cpu_util_pct > 1.0
        assert [r.seq for r in got] == sorted(r.seq for r in got)

        await ex.stop(busy, t, grace_s=1.0)
        await ex.stop(notebook, t, grace_s=1.0)
        after = [r for r in await samples(t, 1) if isinstance(r, ProbeRecord)][-1]
        assert all(g.util_pct == 0.0 and g.mem_used_bytes == 0 for g in after.gpus)
        assert after.processes == ()

    asyncio.run(go())


def test_collectors_see_sim_nodes_and_a_node_going_down(tmp_path: Path,
                                                        node: NodeTarget) -> None:
    other_box = tmp_path / "sim-2"
    write_profile(other_box, SimProfile(cpu_count=8))
    other = NodeTarget(name="sim-2", host=str(other_box), transport="sim", docker_socket="")

    async def go() -> None:
        view = await collect_once([node, other], timeout_s=10)
        assert {n: v.health.state for n, v in view.nodes.items()} == {"sim-1": "up",
                                                                     "sim-2": "up"}
        async with FleetCollector([node, other], interval_s=0.3) as fc:
            await fc.wait_for(lambda v: all(n.health.state == "up" for n in v.nodes.values()),
                              10)
            set_down(other_box, True)
            v = await fc.wait_for(lambda v: v.nodes["sim-2"].health.state == "unreachable", 10)
            assert "down" in v.nodes["sim-2"].health.reason or "lost" in \
                v.nodes["sim-2"].health.reason
            assert v.nodes["sim-1"].health.state == "up"
            set_down(other_box, False)
            await fc.wait_for(lambda v: v.nodes["sim-2"].health.state == "up", 15)

    asyncio.run(go())


def test_stop_sandbox_jobs_kills_only_that_sandboxes_jobs(node: NodeTarget) -> None:
    t = SimTransport(node)
    ex = ProcessExecutor()

    async def go() -> None:
        h = await ex.start(launch(7, ()), t)
        assert (await ex.status(h, t)).state == "running"
        assert stop_sandbox_jobs(t.sandbox) >= 1
        deadline = time.monotonic() + 10
        while (await ex.status(h, t)).state == "running":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)

    asyncio.run(go())


def test_demo_cloud_scripts_through_the_command_provider(tmp_path: Path) -> None:
    data = fleet.burst_policy(tmp_path, enabled=True)
    cfg = build(BurstConfig, data, source="demo burst")
    p = cfg.providers[0]
    assert p.command is not None
    provider = CommandProvider(p.name, p.command, cfg.offers)
    offer = cfg.offers[0]

    async def go() -> None:
        inst = await provider.provision(offer, request_id="fd-12-0", tags={})
        again = await provider.provision(offer, request_id="fd-12-0", tags={})
        assert again.instance_id == inst.instance_id  # idempotent by request id
        assert inst.extra["transport"] == offer.options["transport"] == "sim"
        assert inst.host is not None
        joined = NodeTarget(name=str(inst.extra["node_name"]), host=inst.host,
                            transport="sim", docker_socket="", pool=offer.pool)
        view = await collect_once([joined], timeout_s=10)
        rec = view.nodes[joined.name].record
        assert rec is not None and len(rec.gpus) == offer.gpu_count
        assert {g.model for g in rec.gpus} == {offer.gpu_model}
        await provider.terminate(inst.instance_id)
        gone = await collect_once([joined], timeout_s=10)
        assert gone.nodes[joined.name].health.state == "unreachable"

    asyncio.run(go())
    state = list((tmp_path / "cloud" / "state").iterdir())
    assert state and json.loads(state[0].read_text())

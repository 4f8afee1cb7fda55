"""Hostile clients against one real `fleetdeck serve` (collecting the local node): idle
connections, a burst of connects, a 100 MB line, half messages. The engine keeps collecting
and answering `status`; nothing reaches a user or the log as a traceback. Also: a second
engine never takes a live engine's socket, and connection caps refuse with one line."""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console.config import load
from console.engine.client import EngineClient
from console.engine.host import Engine
from console.engine.protocol import PROTOCOL_VERSION, ErrorCode, encode
from tests.helpers import FLEETDECK, REPO, cli, one_line_error, serve, write_config

HELLO = encode({"id": 1, "method": "hello", "params": {"protocol": PROTOCOL_VERSION}})


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    tmp = tmp_path_factory.mktemp("hostile")
    config = write_config(tmp / "config.toml", tmp / "store.duckdb",
                          "[collect]\ninterval_s = 0.5\n")
    with serve(config) as proc:
        yield config, proc
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def socket_of(config: Path) -> Path:
    return config.parent / "store.duckdb.sock"


async def status(sock: Path) -> dict[str, Any]:
    async with await EngineClient.connect(sock, timeout=10) as c:
        return dict(await c.call("status"))


async def last_seen(sock: Path) -> float:
    async with await EngineClient.connect(sock, timeout=10) as c:
        return max(float(n["last_seen"] or 0) for n in await c.call("fleet"))


async def wait_collected_after(sock: Path, mark: float) -> None:
    """Until the local node's newest sample is newer than `mark` (the engine collects)."""
    for _ in range(600):  # bounded: a wait for a state, not a timing assert
        if await last_seen(sock) > mark:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the engine stopped collecting")


def test_idle_burst_oversized_and_half_messages(engine: tuple[Path, Any]) -> None:
    config, proc = engine
    sock = socket_of(config)

    async def attack() -> None:
        mark = await last_seen(sock)
        # 1,000 connections that never say hello: status still answers
        idle = [await asyncio.open_unix_connection(str(sock)) for _ in range(1000)]
        assert (await status(sock))["pid"] == proc.pid
        # 200 clients at once, each connecting and asking status
        answers = await asyncio.gather(*(status(sock) for _ in range(200)))
        assert {a["pid"] for a in answers} == {proc.pid}
        # a 100 MB line (after hello) and a half message: refused or left waiting
        r, w = await asyncio.open_unix_connection(str(sock))
        w.write(HELLO)
        await r.readline()
        chunk = b"x" * (1 << 20)
        try:
            for _ in range(100):
                w.write(chunk)
                await w.drain()
        except ConnectionError:
            pass  # the engine hung up once the line passed its limit
        half_r, half_w = await asyncio.open_unix_connection(str(sock))
        half_w.write(HELLO + b'{"id": 2, "method": "sta')
        await half_w.drain()
        assert json.loads(await half_r.readline())["result"]["protocol"] == PROTOCOL_VERSION
        assert (await status(sock))["pid"] == proc.pid
        # the idle ones are dropped once their hello is 5 s late (EOF on each)
        assert set(await asyncio.gather(*(ir.read() for ir, _ in idle))) == {b""}
        for _, iw in idle:
            iw.close()
        await wait_collected_after(sock, mark)
        w.close()
        half_w.close()

    asyncio.run(attack())


def test_second_engine_on_a_live_socket_refuses(engine: tuple[Path, Any],
                                                 tmp_path: Path) -> None:
    config, proc = engine
    sock = socket_of(config)
    inode = sock.stat().st_ino
    other = write_config(tmp_path / "other.toml", tmp_path / "other.duckdb",
                         f'[engine]\nsocket = "{sock}"\n')
    res = subprocess.run([*FLEETDECK, "--config", str(other), "serve"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    line = one_line_error(res)
    assert f"is served by a running fleetdeck engine (pid {proc.pid}, store " in line
    assert str(config.parent / "store.duckdb") in line
    assert sock.stat().st_ino == inode  # the first engine keeps its socket
    assert cli("--config", str(config), "status").returncode == 0


def test_engine_log_counts_connection_errors_without_tracebacks(
        engine: tuple[Path, Any]) -> None:
    _, proc = engine
    proc.terminate()
    proc.wait(30)
    err = proc.stderr.read() if proc.stderr else ""
    assert "Traceback" not in err
    tallies = [ln for ln in err.splitlines() if "control connections in the last" in ln]
    assert tallies and len(tallies) <= 3, err[-2000:]
    assert "no hello within 5s" in tallies[-1]


async def test_connection_cap_refuses_with_one_line(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", tmp_path / "store.duckdb",
                       "[engine]\ncollect = false\nschedule = false\nmax_connections = 16\n")
    eng = Engine(load(str(cfg)))
    await eng.start()
    try:
        sock = cfg.parent / "store.duckdb.sock"
        held = [await asyncio.open_unix_connection(str(sock)) for _ in range(17)]
        r, w = await asyncio.open_unix_connection(str(sock))
        err = json.loads(await r.readline())["error"]
        assert err["code"] == ErrorCode.BUSY
        assert err["message"] == "engine busy: 16 connections open; try again"
        assert await r.read() == b""
        w.close()
        for _, hw in held:
            hw.close()
        for _ in range(600):  # until the engine saw them go
            if not sum(eng.server.per_uid.values()):
                break
            await asyncio.sleep(0.05)
        async with await EngineClient.connect(sock) as c:
            assert (await c.call("status"))["caller"]
    finally:
        eng.request_stop()
        await eng.wait_stopped()

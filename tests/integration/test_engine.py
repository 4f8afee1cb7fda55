"""The engine: one per store, a versioned protocol, CLI processes talking to it."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from console.engine.client import EngineClient, RemoteError
from console.engine.protocol import ErrorCode, encode
from tests.helpers import FLEETDECK, REPO, cli, one_line_error, serve, write_config
from tests.integration.policies_bed import Engine


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "config.toml", tmp_path / "store.duckdb")


def test_status_without_engine(config: Path) -> None:
    res = cli("--config", str(config), "status", "--format", "json")
    assert res.returncode == 3
    assert json.loads(res.stdout)["running"] is False


def test_two_cli_processes_talk_to_one_engine(config: Path) -> None:
    with serve(config) as proc:
        def ask(_: int) -> dict[str, object]:
            res = cli("--config", str(config), "status", "--format", "json")
            assert res.returncode == 0, res.stderr
            return json.loads(res.stdout)  # type: ignore[no-any-return]

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(ask, range(2)))
        assert {a["pid"] for a in answers} == {proc.pid}
        assert all(a["caller"] == "root" or a["caller"] for a in answers)
        # read-only commands go through the engine while it holds the store
        res = cli("--config", str(config), "db", "info", "--format", "json")
        assert res.returncode == 0, res.stderr
        info = json.loads(res.stdout)
        assert info["schema_version"] >= 1
        assert info["tables"]["nodes"] == 1  # the embedded local node


def test_second_engine_on_same_store_is_refused(config: Path) -> None:
    with serve(config) as proc:
        res = subprocess.run([*FLEETDECK, "--config", str(config), "serve"], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 1
        line = one_line_error(res)
        assert "store is in use by another fleetdeck engine" in line
        assert f"pid {proc.pid}" in line
        # the first engine is unharmed
        assert cli("--config", str(config), "status").returncode == 0


def test_socket_is_owner_only(config: Path, tmp_path: Path) -> None:
    with serve(config):
        mode = stat.S_IMODE((tmp_path / "store.duckdb.sock").stat().st_mode)
        assert mode == 0o600


def test_protocol_mismatch_is_refused(config: Path, tmp_path: Path) -> None:
    async def talk() -> dict[str, object]:
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "store.duckdb.sock"))
        writer.write(encode({"id": 1, "method": "hello", "params": {"protocol": 99}}))
        await writer.drain()
        reply = json.loads(await reader.readline())
        eof = await reader.readline()
        writer.close()
        return {"reply": reply, "closed": eof == b""}

    with serve(config):
        out = asyncio.run(talk())
    err = out["reply"]["error"]  # type: ignore[index]
    assert err["code"] == "protocol_mismatch"
    assert "engine speaks protocol 1" in err["message"]
    assert "client speaks 99" in err["message"]
    assert out["closed"]


def test_unknown_method_has_its_own_code(config: Path, tmp_path: Path) -> None:
    async def talk() -> None:
        client = await EngineClient.connect(tmp_path / "store.duckdb.sock")
        try:
            with pytest.raises(RemoteError) as e:
                await client.call("no_such_method")
            assert e.value.code is ErrorCode.UNKNOWN_METHOD
            assert (await client.call("status"))["engine"]  # connection still usable
        finally:
            await client.close()

    with serve(config):
        asyncio.run(talk())


def test_engine_stops_on_sigterm_and_frees_the_store(config: Path, tmp_path: Path) -> None:
    with serve(config) as proc:
        proc.terminate()
        assert proc.wait(20) == 0
    assert not (tmp_path / "store.duckdb.sock").exists()
    res = cli("--config", str(config), "db", "info", "--format", "json")
    assert res.returncode == 0, res.stderr


def test_readonly_session_is_refused_changes(config: Path, tmp_path: Path) -> None:
    async def talk() -> None:
        client = await EngineClient.connect(tmp_path / "store.duckdb.sock", readonly=True)
        try:
            assert client.hello.readonly is True
            spec = {"name": "x", "command": ["true"]}
            with pytest.raises(RemoteError) as e:
                await client.call("submit", spec=spec)
            assert e.value.code == "readonly"
            assert await client.call("jobs") == []  # reads still work
        finally:
            await client.close()

    with serve(config):
        asyncio.run(talk())


def test_config_reload_applies_policies_and_is_audited(config: Path, tmp_path: Path) -> None:
    with serve(config) as proc:
        # a bad file changes nothing: one line, exit 2
        good = config.read_text()
        config.write_text(good + "\n[policies.idle]\nwindow_s = -5\n")
        bad = cli("--config", str(config), "config", "reload")
        assert bad.returncode == 2
        assert "policies.idle.window_s: expected" in one_line_error(bad)

        config.write_text(good + "\n[policies.idle]\nenabled = true\nwindow_s = 600.0\n"
                          "\n[[nodes]]\nname = \"extra\"\nhost = \"127.0.0.9\"\n")
        res = cli("--config", str(config), "config", "reload", "--format", "json")
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["applied"] == ["policies"]
        assert out["needs_restart"] == ["nodes"]

        # SIGHUP reloads too (nothing new to apply now)
        import signal
        proc.send_signal(signal.SIGHUP)
        import time
        deadline = time.monotonic() + 20
        rows: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            audit = cli("--config", str(config), "audit", "--format", "json")
            rows = [r for r in json.loads(audit.stdout) if r["action"] == "config_reload"]
            if len(rows) == 2:
                break
            time.sleep(0.3)
        import getpass
        hup, by_cli = rows  # newest first
        assert (hup["actor"], hup["reason"]) == (
            "signal:SIGHUP", "nothing to apply; restart to apply nodes")
        assert (by_cli["actor"], by_cli["reason"]) == (
            getpass.getuser(), "applied policies; restart to apply nodes")


def test_jobs_by_id_and_by_page(config: Path, tmp_path: Path) -> None:
    """`job` and `jobs ids=` look jobs up by key; `limit`/`offset` page newest first; bad
    paging params are refused naming the key."""
    async def talk() -> None:
        client = await EngineClient.connect(tmp_path / "store.duckdb.sock")
        try:
            for i in range(5):
                await client.call("submit", spec={"name": f"p{i}", "command": ["true"]})
            page1 = await client.call("jobs", limit=2)
            page2 = await client.call("jobs", limit=2, offset=2)
            assert [j["id"] for j in page1] == [5, 4]
            assert [j["id"] for j in page2] == [3, 2]
            assert [j["id"] for j in await client.call("jobs", ids=[1, 4, 99])] == [4, 1]
            one = await client.call("job", job=3)
            assert (one["id"], one["name"]) == (3, "p2")
            with pytest.raises(RemoteError) as e:
                await client.call("job", job=99)
            assert e.value.code == "not_found"
            for bad in ({"limit": -1}, {"offset": "x"}, {"ids": "1"}, {"states": ["done"]}):
                with pytest.raises(RemoteError) as e:
                    await client.call("jobs", **bad)
                assert e.value.code == "bad_request" and next(iter(bad)) in str(e.value)
        finally:
            await client.close()

    with serve(config):
        asyncio.run(talk())


def test_preview_while_no_node_is_up_waits_not_never(tmp_path: Path) -> None:
    """A node not reached yet (or down) comes back: the preview says the job would wait, not
    that it never fits, and the engine takes the job."""
    eng = Engine(tmp_path, '[[nodes]]\nname = "gone"\nhost = "127.0.0.1"\nport = 1\n')
    spec = {"command": ["true"], "executor": "process"}
    with eng.serving():
        seen = eng.wait("the node tried", lambda: eng.call("fleet"))
        assert seen[0]["name"] == "gone" and seen[0]["state"] != "up", seen
        answer = eng.call("preview", spec=spec)
        assert not answer["placeable"], answer
        assert answer["reason"] == "no node that could take it is up now", answer
        assert eng.call("submit", spec=spec)["ids"]

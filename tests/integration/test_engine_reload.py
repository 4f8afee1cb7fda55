"""`config reload` applies each key it claims to, on a real engine (DuckDB store, no
collection): one test per key, each checking the live object that uses it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from console.config import load
from console.engine.access import Caller, Peer
from console.engine.host import Engine
from console.engine.protocol import encode
from console.engine.svc_jobs import JobService
from scheduler.quota import Quota
from tests.helpers import write_config

BASE = """
[engine]
collect = false
schedule = false

[access]
members = ["mia"]

[[users]]
name = "mia"
default_project = "alpha"
gpu_quota = 4

[[projects]]
name = "alpha"

[[projects]]
name = "beta"
"""
MIA = Peer(uid=62001, gid=62001, pid=1, user="mia", groups=frozenset())
ROOT = Peer(uid=0, gid=0, pid=1, user="root", groups=frozenset())


@dataclass
class Live:
    engine: Engine
    config: Path

    async def call(self, peer: Peer, method: str, **params: Any) -> Any:
        caller = Caller(uid=peer.uid, pid=1, user=peer.user)
        last: dict[str, Any] = {}
        async for msg in self.engine.server.handle(peer, caller, method, params):
            last = msg
        assert "error" not in last, last
        return json.loads(encode(last["result"]))  # as a client reads it

    async def reload(self, body: str) -> list[str]:
        """Rewrite the config file with `body` after [store], reload, say what applied."""
        head = self.config.read_text().split("\n\n", 1)[0]
        self.config.write_text(head + "\n\n" + body)
        out = await self.call(ROOT, "reload_config")
        return list(out["applied"])

    @property
    def jobs(self) -> JobService:
        return next(s for s in self.engine.services if isinstance(s, JobService))


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    cfg = write_config(tmp_path / "config.toml", tmp_path / "store.duckdb", BASE)
    eng = Engine(load(str(cfg)))
    await eng.start()
    try:
        yield Live(eng, cfg)
    finally:
        eng.request_stop()
        await eng.wait_stopped()


CASES: dict[str, tuple[str, str, Callable[[Live], bool]]] = {
    "policy": ("scheduler", '[scheduler]\npolicy = "best-fit"\n',
               lambda lv: type(lv.engine.runner.policy).__name__ == "BestFit"),
    "cycle_s": ("scheduler", "[scheduler]\ncycle_s = 7.5\n", lambda lv: lv.jobs.cycle_s == 7.5),
    "backfill": ("scheduler", "[scheduler]\nbackfill = false\n",
                 lambda lv: lv.engine.runner.settings.backfill is False),
    "borrowing": ("scheduler", "[scheduler]\nborrowing = false\n",
                  lambda lv: lv.engine.runner.quotas.borrowing is False),
    "quotas": ("users", BASE.replace("gpu_quota = 4", "gpu_quota = 1"),
               lambda lv: lv.engine.runner.quotas.users["mia"] == Quota.of_gpus(1)),
    "rates": ("rates", '[rates]\ncurrency = "EUR"\n',
              lambda lv: lv.engine.config.rates.currency == "EUR"),
    "idle": ("policies", "[policies.idle]\nenabled = true\nwindow_s = 900.0\n",
             lambda lv: lv.engine.policies.cfg.idle.window_s == 900.0),
    "burst": ("policies", "[policies.burst]\nwait_threshold_s = 42.0\n",
              lambda lv: lv.engine.policies.burst.cfg.wait_threshold_s == 42.0),
    "health": ("policies", "[policies.health]\nenabled = false\n",
               lambda lv: lv.engine.policies.cfg.health.enabled is False),
}


@pytest.mark.parametrize("key", sorted(CASES))
async def test_reload_applies(live: Live, key: str) -> None:
    section, extra, applied = CASES[key]
    assert not applied(live)
    got = await live.reload(extra if "[engine]" in extra else BASE + extra)
    assert section in got
    assert applied(live), key


async def test_reload_applies_membership(live: Live) -> None:
    spec = {"name": "m", "command": ["true"]}
    first = (await live.call(MIA, "submit", spec=spec))["ids"][0]
    await live.reload(BASE.replace('default_project = "alpha"', 'default_project = "beta"'))
    second = (await live.call(MIA, "submit", spec=spec))["ids"][0]
    rows = {r["id"]: r for r in await live.call(MIA, "jobs")}
    assert (rows[first]["project"], rows[second]["project"]) == ("alpha", "beta")


async def test_reload_applies_access(live: Live) -> None:
    assert (await live.call(MIA, "status"))["role"] == "member"
    await live.reload(BASE.replace('members = ["mia"]', 'viewers = ["mia"]'))
    assert (await live.call(MIA, "status"))["role"] == "viewer"

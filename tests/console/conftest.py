"""Engines for the console tests.

- `fixed_link`: one engine for the whole session on the fixed fleet (collection and scheduling
  off, engine clock pinned to FIXED_NOW); snapshot tests share it.
- `live_link`: a fresh engine per test on the embedded default node (this machine, local
  transport), collecting and scheduling for real.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from console.app import EngineLink, FleetdeckApp
from console.config import load
from console.engine.host import EmbeddedEngine
from tests.console import fixed_fleet
from tests.helpers import write_config

SNAP_SIZE = (140, 36)


@pytest.fixture(scope="session")
def fixed_link(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineLink]:
    root = tmp_path_factory.mktemp("fixed")
    with fixed_engine(fixed_fleet.build(root / "store.duckdb")) as link:
        yield link


@contextmanager
def fixed_engine(store: Path) -> Iterator[EngineLink]:
    """An engine on a fixed-fleet store (collection and scheduling off, clock pinned)."""
    cfg = store.parent / "config.toml"
    cfg.write_text(fixed_fleet.config_text(store))
    loaded = load(str(cfg))
    engine = EmbeddedEngine(loaded, clock=lambda: fixed_fleet.FIXED_NOW)
    engine.start()
    try:
        yield EngineLink(loaded, engine)
    finally:
        engine.stop()


@pytest.fixture
def live_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EngineLink]:
    # The process executor keeps job directories under ~/.fleetdeck/jobs/<id>-<attempt> on the
    # node; every engine numbers jobs from 1, so each test gets its own home for the local node.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    cfg = write_config(tmp_path / "config.toml", tmp_path / "store.duckdb",
                       "[collect]\ninterval_s = 1.0\n[scheduler]\ncycle_s = 0.2\n")
    loaded = load(str(cfg))
    engine = EmbeddedEngine(loaded)
    engine.start()
    try:
        yield EngineLink(loaded, engine)
    finally:
        engine.stop()


def fixed_app(link: EngineLink, start: str = "fleet", *, readonly: bool = False,
              ) -> FleetdeckApp:
    if readonly:
        link = EngineLink(link.loaded, link.embedded, True)
    return FleetdeckApp(link, clock=lambda: fixed_fleet.FIXED_NOW, start=start, user="ann")


async def wait_for(pilot: Pilot[int], cond: Callable[[], bool], *, timeout: float = 15.0,
                   what: str | Callable[[], str] = "condition") -> None:
    """Let the app run until `cond()` holds; `what` (or what it returns) names it on failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        await pilot.pause(0.05)


def settle(*steps: Callable[[Pilot[int]], Awaitable[None]]) -> Callable[[Pilot[int]],
                                                                       Awaitable[None]]:
    """A snapshot `run_before` running `steps` in order, then letting the screen settle."""
    async def run(pilot: Pilot[int]) -> None:
        for step in steps:
            await step(pilot)
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False  # a blinking cursor would make the picture flaky
        await pilot.pause(0.3)
        await pilot.wait_for_scheduled_animations()

    return run

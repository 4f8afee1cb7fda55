"""A slow engine (every read held 3 s by a relay, longer than the 2 s poll interval) still
refreshes every screen: polls are never cancelled by the next tick, so each screen completes
its polls and its header says when; an engine that stops answering in time is marked
stale."""

from __future__ import annotations

import tempfile
from pathlib import Path

from textual.pilot import Pilot
from textual.screen import Screen

from console.app import EngineLink
from console.screens.audit import AuditScreen
from console.screens.base import FleetdeckScreen
from console.screens.fleet import FleetScreen
from console.screens.job import JobScreen
from console.screens.jobs import JobsScreen
from console.screens.node import NodeScreen
from console.screens.policies import PoliciesScreen
from console.widgets.summary import SummaryBar
from tests.console.conftest import fixed_app, wait_for
from tests.console.slow_link import SlowRelay, via

READ_S = 3.0


def header(screen: FleetdeckScreen) -> str:
    return str(screen.query_one(SummaryBar).render())


async def test_slow_engine_still_refreshes_every_screen(fixed_link: EngineLink) -> None:
    with tempfile.TemporaryDirectory(prefix="fd-slow-") as tmp:
        relay_path = Path(tmp) / "slow.sock"
        async with SlowRelay(fixed_link.loaded.config.socket_path, relay_path, READ_S) as relay:
            app = fixed_app(via(fixed_link, relay_path))
            async with app.run_test(size=(140, 36)) as pilot:
                steps = (("1", FleetScreen), ("2", JobsScreen), ("3", PoliciesScreen),
                         ("5", AuditScreen))
                for key, kind in steps:
                    await pilot.press(key)
                    await wait_for(pilot, lambda kind=kind: type(app.screen) is kind,  # type: ignore[misc]
                                   what=kind.__name__)
                    await refreshed(pilot, app.screen, 2 if kind is JobsScreen else 1)
                app.open_node("gpu-a01")
                await wait_for(pilot, lambda: isinstance(app.screen, NodeScreen), what="node")
                await refreshed(pilot, app.screen, 1)
                app.open_job(1)
                await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), what="job")
                await refreshed(pilot, app.screen, 1)
                assert relay.requests > 0

                # the engine stops answering in time: the screen says its data is stale
                relay.delay_s = 120.0
                screen = app.screen
                assert isinstance(screen, FleetdeckScreen)
                await wait_for(pilot, lambda: "STALE" in header(screen), timeout=60,
                               what=lambda: f"a stale mark, header {header(screen)!r}")


async def refreshed(pilot: Pilot[int], screen: Screen[object], polls: int) -> None:
    """`polls` complete polls after the screen showed up (with polls cancelled by the next
    tick, as before, not one would ever complete), and the header says as of when."""
    assert isinstance(screen, FleetdeckScreen)
    start = screen.polls_done
    await wait_for(pilot, lambda: screen.polls_done >= start + polls, timeout=60,
                   what=lambda: f"{polls} polls of {type(screen).__name__}, "
                                f"done {screen.polls_done - start}")
    assert "as of 12:00:00" in header(screen) or "STALE" in header(screen)

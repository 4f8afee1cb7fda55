"""The console for everyone: a member's console opens on their own jobs and does not offer
what the role may not do (cordon); a viewer is not offered Submit; an admin's is unchanged.
The role is what the engine's hello said (`EngineLink.role`)."""

from __future__ import annotations

from dataclasses import replace

from console.app import EngineLink, FleetdeckApp
from console.commands.common import me_line
from console.engine.api.replies import WhoAmI
from console.screens.fleet import FleetScreen
from console.screens.jobs import JobsScreen
from console.widgets.keyed_table import KeyedTable
from console.widgets.summary import SummaryBar
from tests.console import fixed_fleet
from tests.console.conftest import wait_for


def app_as(link: EngineLink, role: str, user: str, start: str) -> FleetdeckApp:
    return FleetdeckApp(replace(link, role=role, user=user),
                        clock=lambda: fixed_fleet.FIXED_NOW, start=start)


def offered(app: FleetdeckApp) -> set[str]:
    """Actions the footer offers now."""
    return {b.binding.action for b in app.active_bindings.values() if b.binding.show
            and app.check_action(b.binding.action, ()) is not False}


async def test_member_opens_on_own_jobs_without_node_actions(fixed_link: EngineLink) -> None:
    app = app_as(fixed_link, "member", "bob", "jobs")
    async with app.run_test(size=(140, 36)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), what="Jobs")
        table = app.screen.query_one(KeyedTable)
        await wait_for(pilot, lambda: table.row_count > 0, what="jobs")
        assert app.screen.filter_text == "user:bob"
        users = {table.data_of(k)["user"] for k in table.shown_keys}
        assert users == {"bob"}
        assert "stop" in offered(app) and "submit" in offered(app)
        assert "bob (member)" in app.screen.query_one(SummaryBar).mode
        await pilot.press("1")
        await wait_for(pilot, lambda: isinstance(app.screen, FleetScreen), what="Fleet")
        assert "cordon" not in offered(app)


async def test_viewer_is_not_offered_submit_or_stop(fixed_link: EngineLink) -> None:
    app = app_as(fixed_link, "viewer", "ann", "jobs")
    async with app.run_test(size=(140, 36)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), what="Jobs")
        assert not {"submit", "stop"} & offered(app)


async def test_admin_console_is_unchanged(fixed_link: EngineLink) -> None:
    app = app_as(fixed_link, "admin", "ann", "jobs")
    async with app.run_test(size=(140, 36)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), what="Jobs")
        assert app.screen.filter_text == ""
        assert {"submit", "stop"} <= offered(app)
        await pilot.press("1")
        await wait_for(pilot, lambda: isinstance(app.screen, FleetScreen), what="Fleet")
        assert "cordon" in offered(app)


def test_me_line() -> None:
    me = WhoAmI(user="bob", role="member", gpus_in_use=2, gpu_quota=4, gpu_h_today=1.0,
                spend_today=12.4, currency="USD")
    assert me_line(me) == "you: 2 of 4 GPUs · 12.40 USD today"
    me = WhoAmI(user="bob", role="member", gpus_in_use=0.5, gpu_quota=None, gpu_h_today=0.0,
                spend_today=0, currency="EUR")
    assert me_line(me) == "you: 0.5 GPUs · 0.00 EUR today"

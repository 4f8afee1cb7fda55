"""Audit: every action (submit, stop, idle warn/stop, snooze, burst, cordon...), newest first;
`/` filters (e.g. `actor:policy action:idle`), the highlighted row's evidence shows below."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Static

from console.engine.api.replies import AuditRow
from console.engine.api.requests import AuditQuery
from console.screens.base import MISSING, FleetdeckScreen
from console.widgets import fmt
from console.widgets.keyed_table import Column, KeyedTable, Row

AUDIT_LIMIT = 2000
COLUMNS = (
    Column("id", "ID", 6), Column("ts", "Time (UTC)", 19), Column("actor", "Actor", 16),
    Column("action", "Action", 16), Column("target", "Target", 18), Column("dry", "Dry", 3),
    Column("reason", "Reason"),
)


def audit_row(a: AuditRow) -> Row:
    action = a.action or ""
    style = "bold red" if "stop" in action else ("yellow" if "warn" in action else "")
    return (
        str(a.id), fmt.clock_text(fmt.epoch(a.ts)), a.actor or "",
        Text(action, style=style), f"{a.target_kind or ''}:{a.target or ''}",
        "yes" if a.dry_run else "", a.reason or "",
    )


def evidence_text(a: AuditRow) -> Text:
    ev: Any = a.evidence
    if isinstance(ev, str):
        try:
            ev = json.loads(ev)
        except ValueError:
            pass
    t = Text()
    t.append(f"#{a.id} {a.action} {a.target_kind}:{a.target}", style="bold")
    t.append(f" by {a.actor}")
    if a.reason:
        t.append(f": {a.reason}")
    if ev:
        t.append("\nevidence ", style="bold")
        t.append(json.dumps(ev, sort_keys=True) if not isinstance(ev, str) else ev,
                 style="dim")
    return t


class AuditScreen(FleetdeckScreen):
    """The audit trail."""

    TITLE_TEXT = "Audit"
    CHANNEL = "audit"
    POLL_S = 5.0
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open target"),
    ]

    class AuditLoaded(Message):
        """The engine's `audit` rows."""

        def __init__(self, rows: list[AuditRow]) -> None:
            super().__init__()
            self.rows = rows

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, AuditRow] = {}

    def compose_body(self) -> ComposeResult:
        yield KeyedTable(COLUMNS, id="audit-table")
        yield Static("", id="audit-detail")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(KeyedTable).focus()

    async def poll_once(self) -> None:
        rows = await self.fetch(AuditQuery(limit=AUDIT_LIMIT))
        if rows is not MISSING:
            self.post_message(self.AuditLoaded(rows))

    @on(AuditLoaded)
    def show(self, message: AuditLoaded) -> None:
        self.show_notice("")
        ordered = sorted(message.rows, key=lambda a: -a.id)
        self.rows = {str(a.id): a for a in ordered}
        self.query_one(KeyedTable).sync({k: audit_row(a) for k, a in self.rows.items()})
        self._detail()

    @on(KeyedTable.Highlighted)
    def _highlighted(self, event: KeyedTable.Highlighted) -> None:
        self._detail()

    def _detail(self) -> None:
        key = self.query_one(KeyedTable).current_key
        a = self.rows.get(key) if key is not None else None
        self.query_one("#audit-detail", Static).update(evidence_text(a) if a else "")

    def action_open(self) -> None:
        """Open the job or node the highlighted action was about."""
        key = self.query_one(KeyedTable).current_key
        a = self.rows.get(key) if key is not None else None
        if a is None:
            return
        kind, target = a.target_kind, a.target or ""
        if kind == "job" and target.isdigit():
            self.fd.open_job(int(target))
        elif kind == "node" and target:
            self.fd.open_node(target)

    @on(KeyedTable.Drill)
    def _drill(self, message: KeyedTable.Drill) -> None:
        self.action_open()

"""Audit: every action (submit, stop, idle warn/stop, snooze, burst, cordon...), newest first;
`/` filters (e.g. `actor:policy action:idle`), the highlighted row's evidence shows below."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Static

from console.screens.base import MISSING, FleetdeckScreen
from console.widgets import fmt
from console.widgets.keyed_table import Column, KeyedTable, Row

AUDIT_LIMIT = 2000
COLUMNS = (
    Column("id", "ID", 6), Column("ts", "Time (UTC)", 19), Column("actor", "Actor", 16),
    Column("action", "Action", 16), Column("target", "Target", 18), Column("dry", "Dry", 3),
    Column("reason", "Reason"),
)


def audit_row(a: Mapping[str, Any]) -> Row:
    action = str(a.get("action") or "")
    style = "bold red" if "stop" in action else ("yellow" if "warn" in action else "")
    return (
        str(a.get("id")), fmt.clock_text(fmt.epoch(a.get("ts"))), str(a.get("actor") or ""),
        Text(action, style=style), f"{a.get('target_kind') or ''}:{a.get('target') or ''}",
        "yes" if a.get("dry_run") else "", str(a.get("reason") or ""),
    )


def evidence_text(a: Mapping[str, Any]) -> Text:
    ev = a.get("evidence")
    if isinstance(ev, str):
        try:
            ev = json.loads(ev)
        except ValueError:
            pass
    t = Text()
    t.append(f"#{a.get('id')} {a.get('action')} {a.get('target_kind')}:{a.get('target')}",
             style="bold")
    t.append(f" by {a.get('actor')}")
    if a.get("reason"):
        t.append(f": {a['reason']}")
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

        def __init__(self, rows: list[dict[str, Any]]) -> None:
            super().__init__()
            self.rows = rows

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, Any]] = {}

    def compose_body(self) -> ComposeResult:
        yield KeyedTable(COLUMNS, id="audit-table")
        yield Static("", id="audit-detail")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(KeyedTable).focus()

    async def poll_once(self) -> None:
        rows = await self.fetch("audit", limit=AUDIT_LIMIT)
        if rows is not MISSING:
            self.post_message(self.AuditLoaded(list(rows or [])))

    @on(AuditLoaded)
    def show(self, message: AuditLoaded) -> None:
        self.show_notice("")
        ordered = sorted(message.rows, key=lambda a: -int(a.get("id") or 0))
        self.rows = {str(a.get("id")): a for a in ordered}
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
        kind, target = a.get("target_kind"), str(a.get("target") or "")
        if kind == "job" and target.isdigit():
            self.fd.open_job(int(target))
        elif kind == "node" and target:
            self.fd.open_node(target)

    @on(KeyedTable.Drill)
    def _drill(self, message: KeyedTable.Drill) -> None:
        self.action_open()

"""`?`: every key the current screen answers to, with what it does (the action's docstring)."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.table import Table
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static

EXTRA = (
    ("↑ ↓ PgUp PgDn Home End", "move in a table"),
    ("Enter", "open the row under the cursor"),
    ("Tab", "next table or field"),
    ("ctrl+p", "command palette (same as :)"),
)


def key_name(app: Any, key: str) -> str:
    return str(app.get_key_display(Binding(key, "")))


def describe(namespace: Any, action: str, fallback: str) -> str:
    """The first line of the action's docstring (fleetdeck's own actions), else the binding's
    description."""
    name = action.split("(")[0].removeprefix("app.").removeprefix("screen.")
    method = getattr(namespace, f"action_{name}", None)
    if method is None or str(getattr(method, "__module__", "")).startswith("textual"):
        return fallback
    doc = (getattr(method, "__doc__", None) or "").strip().splitlines()
    return doc[0] if doc else fallback


class KeysScreen(ModalScreen[None]):
    """All bindings of the screen below."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "Close"),
    ]

    def __init__(self, under: Screen[Any]) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        table = Table(box=None, expand=True, show_header=True, header_style="bold")
        table.add_column("Key", style="bold cyan", no_wrap=True)
        table.add_column("Does")
        table.add_column("Where", style="dim")
        seen: set[str] = set()
        for key, active in sorted(self.under.active_bindings.items(),
                                  key=lambda kv: isinstance(kv[1].node, App)):
            binding = active.binding
            shown = key_name(self.app, key)
            if not isinstance(active.node, Screen | App) or binding.action.startswith("focus_"):
                continue  # widget navigation: summarised below
            if shown in seen or binding.action in ("", "noop", "copy_text", "help_quit"):
                continue
            seen.add(shown)
            where = ("everywhere" if isinstance(active.node, App)
                     else type(active.node).__name__.removesuffix("Screen"))
            text = describe(active.node, binding.action, binding.description)
            if not active.enabled:
                text += " (disabled here)"
            table.add_row(shown, text, where)
        for key, text in EXTRA:
            table.add_row(key, text, "everywhere")
        with Vertical(id="keys-dialog"):
            yield Label("Keys   [dim]Esc or ? closes[/]", classes="dialog-title")
            yield VerticalScroll(Static(table))

    def action_close(self) -> None:
        """Close this list."""
        self.app.pop_screen()

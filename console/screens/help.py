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
    ("Shift+letter > < click", "sort by the column (underlined letter; again reverses)"),
    ("ctrl+p", "command palette (same as :)"),
)


# Textual's own screen bindings (focus moves, copy) and quit aliases: not worth a line
SKIP = frozenset({"", "noop", "focus_next", "focus_previous", "copy_text", "help_quit",
                  "open_submitted"})


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
        # one line per (where, action); keys bound to the same action share it
        lines: dict[tuple[bool, str, str], tuple[list[str], str]] = {}
        for key, active in self.under.active_bindings.items():
            binding = active.binding
            if (not isinstance(active.node, Screen | App)
                    or binding.action.split(".")[-1] in SKIP):
                continue  # widget navigation is summarised below
            everywhere = isinstance(active.node, App)
            where = ("everywhere" if everywhere
                     else type(active.node).__name__.removesuffix("Screen"))
            text = describe(active.node, binding.action, binding.description)
            if binding.tooltip:  # a parameterised action says what this key of it does
                text = binding.tooltip
            elif "(" in binding.action and binding.description:
                text = f"{binding.description}: {text}"
            if not active.enabled:
                text += " (disabled here)"
            entry = lines.setdefault((everywhere, where, binding.action), ([], text))
            entry[0].append(key_name(self.app, key))
        for (_, where, _action), (keys, text) in sorted(lines.items(), key=lambda kv: kv[0][0]):
            table.add_row(" ".join(keys), text, where)
        for key, text in EXTRA:
            table.add_row(key, text, "tables")
        with Vertical(id="keys-dialog"):
            yield Label("Keys   [dim]Esc or ? closes[/]", classes="dialog-title")
            yield VerticalScroll(Static(table))

    def action_close(self) -> None:
        """Close this list."""
        self.app.pop_screen()

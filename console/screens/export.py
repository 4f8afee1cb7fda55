"""Export prompt: where to write a report and in which format (from the extension by default).

Relative paths are taken from the console's working directory and sent to the engine absolute.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select

AUTO = "from extension"


class ExportScreen(ModalScreen[tuple[str, str] | None]):
    """Ask for a path and a format; answers (absolute path, format) or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, default_name: str) -> None:
        super().__init__()
        from reports.export import EXTENSIONS, FORMATS

        self.formats = tuple(FORMATS)
        self.extensions = dict(EXTENSIONS)
        self.default_path = str(Path.cwd() / default_name)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Export report", classes="dialog-title")
            yield Input(value=self.default_path, placeholder="path", id="path")
            yield Select([(AUTO, AUTO), *((f, f) for f in self.formats)], value=AUTO,
                         allow_blank=False, id="format")
            yield Label(f"extensions: {', '.join(sorted(self.extensions))}",
                        classes="dialog-detail")
            yield Label("", id="export-error", classes="field-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Export", variant="primary", id="yes")
                yield Button("Cancel", id="no")

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    def answer(self) -> tuple[str, str] | str:
        """(path, format), or an error line."""
        text = self.query_one("#path", Input).value.strip()
        if not text:
            return "path: expected a file path"
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        chosen = str(self.query_one("#format", Select).value)
        if chosen == AUTO:
            fmt_name = self.extensions.get(path.suffix.lower())
            if fmt_name is None:
                return (f"path: expected an extension ({', '.join(sorted(self.extensions))}) "
                        "or pick a format")
            return str(path), fmt_name
        return str(path), chosen

    def action_confirm(self) -> None:
        """Export to this path."""
        result = self.answer()
        if isinstance(result, str):
            self.query_one("#export-error", Label).update(result)
            return
        self.dismiss(result)

    def action_cancel(self) -> None:
        """Don't export."""
        self.dismiss(None)

    @on(Input.Submitted, "#path")
    def _enter(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_confirm()

    @on(Button.Pressed, "#yes")
    def _yes(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#no")
    def _no(self) -> None:
        self.action_cancel()

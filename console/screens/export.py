"""Export prompt: where to write a report and in which format (from the extension by default).

Relative paths are taken from the console's working directory and sent to the engine absolute.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Label, Select

from console.screens.dialog import DialogScreen, dialog_buttons

AUTO = "from extension"


class ExportScreen(DialogScreen[tuple[str, str]]):
    """Ask for a path and a format; answers (absolute path, format) or None."""

    FOCUS = "#path"

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
            yield dialog_buttons("Export", "primary")

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

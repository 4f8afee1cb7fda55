"""Live job logs: appends text chunks as they stream, follows the tail, searches.

`append(chunk)` takes any text (partial lines are joined with the next chunk). `search` shows
only the lines containing the term, with each match highlighted; an empty search shows all.
"""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import RichLog

MAX_LINES = 20_000


class LogView(RichLog):
    """The job's output."""

    DEFAULT_CSS = """
    LogView { height: 1fr; }
    """

    search: reactive[str] = reactive("")
    follow: reactive[bool] = reactive(True)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, wrap=False, markup=False, highlight=False, max_lines=MAX_LINES,
                         auto_scroll=True)
        self.lines_seen: list[str] = []
        self._partial = ""

    def append(self, chunk: str) -> None:
        text = self._partial + chunk
        parts = text.split("\n")
        self._partial = parts.pop()
        if not parts:
            return
        self.lines_seen.extend(parts)
        if len(self.lines_seen) > MAX_LINES:
            del self.lines_seen[: len(self.lines_seen) - MAX_LINES]
        for line in parts:
            if self._matches(line):
                self.write(self._styled(line), scroll_end=self.follow)

    def flush_partial(self) -> None:
        """The stream ended: show a last line without newline."""
        if self._partial:
            self.append("\n")

    def reset(self) -> None:
        self.lines_seen = []
        self._partial = ""
        self.clear()

    def _matches(self, line: str) -> bool:
        return not self.search or self.search.lower() in line.lower()

    def _styled(self, line: str) -> Text:
        text = Text(line)
        if self.search:
            text.highlight_words([self.search], style="bold black on yellow",
                                 case_sensitive=False)
        return text

    @property
    def match_count(self) -> int:
        return sum(1 for line in self.lines_seen if self._matches(line)) if self.search else 0

    def watch_search(self, old: str, new: str) -> None:
        self.clear()
        for line in self.lines_seen:
            if self._matches(line):
                self.write(self._styled(line), scroll_end=False)
        if self.follow:
            self.scroll_end(animate=False)

    def watch_follow(self, follow: bool) -> None:
        self.auto_scroll = follow
        if follow:
            self.scroll_end(animate=False)

"""What a KeyedTable's filter box means: `user:ann gpu` terms, matched against cells' text."""

from __future__ import annotations

from rich.text import Text

from scheduler.job_match import split_terms as parse_filter

__all__ = ["Cell", "parse_filter", "plain"]

Cell = str | Text


def plain(cell: Cell) -> str:
    """A cell's text without styles."""
    return cell.plain if isinstance(cell, Text) else str(cell)


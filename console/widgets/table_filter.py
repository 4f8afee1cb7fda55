"""What a KeyedTable's filter box means: `user:ann gpu` terms, matched against cells' text."""

from __future__ import annotations

from rich.text import Text

Cell = str | Text


def plain(cell: Cell) -> str:
    """A cell's text without styles."""
    return cell.plain if isinstance(cell, Text) else str(cell)


def parse_filter(text: str) -> tuple[tuple[str | None, str], ...]:
    """`user:ann gpu` -> (("user", "ann"), (None, "gpu"))."""
    terms: list[tuple[str | None, str]] = []
    for word in text.lower().split():
        key, sep, value = word.partition(":")
        if sep and key and value:
            terms.append((key, value))
        elif word:
            terms.append((None, word))
    return tuple(terms)

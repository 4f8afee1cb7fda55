"""A text match on jobs, as the console's filter box writes it: `ann pretrain` (every word in
some field) or `user:ann state:queue` (the word in that field); case-insensitive substrings.

The same terms answer a live row (`matches`) and the store (`sql`), so the engine's `jobs`
method filters every job, not just a loaded page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# the fields a `key:word` term may name: JobRow attributes and store columns alike
FIELDS = ("id", "name", "user", "project", "team", "state", "node", "pool", "reason")
ANY_FIELDS = tuple(f for f in FIELDS if f != "team")  # a free word: what the Jobs table shows


@dataclass(frozen=True, slots=True)
class JobMatch:
    """Terms that must all hold: (field, word), field None for any field."""

    terms: tuple[tuple[str | None, str], ...]

    def matches(self, row: object) -> bool:
        """`row`: a `journal.JobRow` (read by field name; no import, journal imports us)."""
        for field, word in self.terms:
            fields = (field,) if field else ANY_FIELDS
            if not any(word in str(getattr(row, f) or "").lower() for f in fields):
                return False
        return True

    def sql(self) -> tuple[list[str], list[Any]]:
        """WHERE clauses (to AND together) and their arguments for the `jobs` table."""
        where: list[str] = []
        args: list[Any] = []
        for field, word in self.terms:
            fields = (field,) if field else ANY_FIELDS
            where.append("(" + " OR ".join(
                f'contains(lower(coalesce(CAST("{f}" AS VARCHAR), \'\')), ?)'
                for f in fields) + ")")
            args.extend(word for _ in fields)
        return where, args


def split_terms(text: str) -> tuple[tuple[str | None, str], ...]:
    """`user:ann gpu` -> (("user", "ann"), (None, "gpu")), lower-cased."""
    terms: list[tuple[str | None, str]] = []
    for word in text.lower().split():
        key, sep, value = word.partition(":")
        if sep and key and value:
            terms.append((key, value))
        elif word:
            terms.append((None, word))
    return tuple(terms)


def parse_match(text: str) -> JobMatch:
    """The match for `text`; a key that is not a job field is a ValueError naming the keys."""
    terms = split_terms(text)
    for key, _ in terms:
        if key is not None and key not in FIELDS:
            raise ValueError(f"unknown field {key!r}; expected one of {', '.join(FIELDS)}")
    return JobMatch(terms)


def engine_part(text: str) -> str:
    """The terms of a filter that the engine can match (free words and job fields); the
    others (a table's own columns, e.g. `gpus:4`) are left for the table."""
    return " ".join(f"{k}:{w}" if k else w for k, w in split_terms(text)
                    if k is None or k in FIELDS)

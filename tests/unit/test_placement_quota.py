"""Quota ledger: O(1) bookkeeping agrees with a from-scratch computation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.models import Assignment, RunningAllocation
from scheduler.quota import LEVELS, Quota, QuotaBook, QuotaLedger, check_quota, gpus_text

USERS = ("ann", "bob", "")
PROJECTS = ("vision", "nlp", "")
TEAMS = ("red", "blue", "")


def _quota(limit: int | None, guaranteed: int, borrowing: bool | None) -> Quota:
    return Quota(limit, guaranteed if limit is None else min(guaranteed, limit), borrowing)


quotas = st.builds(
    _quota, st.none() | st.integers(0, 8000), st.integers(0, 4000), st.none() | st.booleans()
)


def tables(names: tuple[str, ...]) -> st.SearchStrategy[dict[str, Quota]]:
    return st.dictionaries(st.sampled_from([n for n in names if n]), quotas, max_size=2)


books = st.builds(QuotaBook, tables(USERS), tables(PROJECTS), tables(TEAMS), st.booleans())
charges = st.lists(
    st.tuples(
        st.sampled_from(USERS),
        st.sampled_from(PROJECTS),
        st.sampled_from(TEAMS),
        st.sampled_from([0, 250, 1000, 2000]),
    ),
    max_size=12,
)


def naive_check(
    book: QuotaBook,
    used: dict[tuple[str, str], int],
    idle: int,
    who: tuple[str, str, str],
    milli: int,
) -> bool:
    """True when the request is allowed, recomputed from the definitions."""
    if milli <= 0:
        return True
    mine = {(lvl, n) for lvl, n in zip(LEVELS, who, strict=True) if n}
    others = sum(
        max(0, g - used.get((lvl, n), 0)) for lvl, n, g in book.guarantees() if (lvl, n) not in mine
    )
    for lvl, name in zip(LEVELS, who, strict=True):
        q = book.quota(lvl, name)
        if q is None or q.limit_milli is None or used.get((lvl, name), 0) + milli <= q.limit_milli:
            continue
        if not book.may_borrow(q) or milli > idle - others:
            return False
    return True


@settings(max_examples=200, deadline=None)
@given(books, charges, charges)
def test_ledger_matches_naive(
    book: QuotaBook,
    history: list[tuple[str, str, str, int]],
    probes: list[tuple[str, str, str, int]],
) -> None:
    running = [
        RunningAllocation(f"r{i}", u, p, t, Assignment("n", (0,), m), 0.0)
        for i, (u, p, t, m) in enumerate(history)
    ]
    idle = 16_000
    ledger = QuotaLedger(book, running, idle)
    used: dict[tuple[str, str], int] = {}
    for u, p, t, m in history:
        for key in zip(LEVELS, (u, p, t), strict=True):
            if key[1] and m:
                used[key] = used.get(key, 0) + m
    for u, p, t, m in probes:
        allowed = ledger.check(u, p, t, m) is None
        assert allowed == naive_check(book, used, idle, (u, p, t), m)
        if allowed:
            ledger.charge(u, p, t, m)
            idle -= m
            for key in zip(LEVELS, (u, p, t), strict=True):
                if key[1] and m:
                    used[key] = used.get(key, 0) + m
        for (lvl, name), milli in used.items():
            assert ledger.used_milli(lvl, name) == milli  # type: ignore[arg-type]


def test_default_quota_applies_to_unlisted_names_only() -> None:
    book = QuotaBook(users={"*": Quota.of_gpus(1), "ann": Quota.of_gpus(4)})
    run = [RunningAllocation("r", "bob", "", "", Assignment("n", (0,), 1000), 0.0)]
    assert check_quota(book, run, user="bob", project="", team="", milli=500, idle_milli=8000) == (
        "user bob over quota 1/1 GPUs"
    )
    assert (
        check_quota(book, run, user="ann", project="", team="", milli=4000, idle_milli=8000) is None
    )


def test_quota_validation_and_text() -> None:
    with pytest.raises(ValueError):
        Quota(1000, 2000)
    with pytest.raises(ValueError):
        QuotaBook(projects={"*": Quota(8000, 1000)})
    assert Quota.of_gpus(0.5, 0.25) == Quota(500, 250)
    assert [gpus_text(m) for m in (8000, 2500, 250, 0)] == ["8", "2.5", "0.25", "0"]

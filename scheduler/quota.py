"""GPU quotas per user, project and team, with guaranteed shares and borrowing.

All amounts are milli-GPU (a whole GPU is 1000). An entity (one user, project or team) may have:

- `limit_milli`: the most it may hold; `None` means no cap;
- `guaranteed_milli`: a share nobody *borrowing* may take while the entity does not use it;
- `borrowing`: whether it may go over its limit using idle capacity that is not guaranteed to
  anyone else (`None` falls back to the book-wide `QuotaBook.borrowing`).

A name `"*"` in a level's table is the default for names not listed (no guarantee allowed there:
a guarantee for every possible name means nothing). Empty names (no project) carry no quota.

A borrowing request is allowed when the *whole* request fits in the idle capacity left after
setting aside every other entity's unused guarantee (at every level; overlapping guarantees are
counted twice, which only makes borrowing more cautious). With `lend=True` (preemption on)
nothing is set aside: idle guarantees are lent to anyone and reclaimed by preemption
(`scheduler.placement.preemption`), so a borrower may use any idle GPU.

Checks are pure: `QuotaLedger.check` returns `None` or a one-line reason such as
`project vision over quota 8/8 GPUs`; `QuotaLedger.charge` records a placement so that later
checks in the same cycle see it. Both are O(1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from scheduler.models import MILLI_PER_GPU, Assignment, RunningAllocation

Level = Literal["user", "project", "team"]
LEVELS: tuple[Level, ...] = ("user", "project", "team")
DEFAULT_NAME = "*"

Usage = dict[tuple[str, str], int]  # (level, name) -> milli-GPU held


@dataclass(frozen=True, slots=True)
class Quota:
    """One entity's GPU quota."""

    limit_milli: int | None = None
    guaranteed_milli: int = 0
    borrowing: bool | None = None

    def __post_init__(self) -> None:
        if self.limit_milli is not None and self.limit_milli < 0:
            raise ValueError(f"negative quota limit {self.limit_milli}")
        if self.guaranteed_milli < 0:
            raise ValueError(f"negative guaranteed share {self.guaranteed_milli}")
        if self.limit_milli is not None and self.guaranteed_milli > self.limit_milli:
            raise ValueError(
                f"guaranteed share {self.guaranteed_milli} above limit {self.limit_milli}"
            )

    @classmethod
    def of_gpus(
        cls, limit_gpus: float | None, guaranteed_gpus: float = 0.0, borrowing: bool | None = None
    ) -> Quota:
        """From GPU counts as configured (may be fractional): `Quota.of_gpus(8, 4)`."""
        limit = None if limit_gpus is None else round(limit_gpus * MILLI_PER_GPU)
        return cls(limit, round(guaranteed_gpus * MILLI_PER_GPU), borrowing)


@dataclass(frozen=True, slots=True)
class QuotaBook:
    """Quotas by level and name; `borrowing` is the default for entities that do not say."""

    users: Mapping[str, Quota] = field(default_factory=dict)
    projects: Mapping[str, Quota] = field(default_factory=dict)
    teams: Mapping[str, Quota] = field(default_factory=dict)
    borrowing: bool = False

    def __post_init__(self) -> None:
        for level in LEVELS:
            default = self.table(level).get(DEFAULT_NAME)
            if default is not None and default.guaranteed_milli:
                raise ValueError(f"default {level} quota cannot carry a guaranteed share")

    @property
    def empty(self) -> bool:
        return not (self.users or self.projects or self.teams)

    def table(self, level: Level) -> Mapping[str, Quota]:
        if level == "user":
            return self.users
        if level == "project":
            return self.projects
        return self.teams

    def quota(self, level: Level, name: str) -> Quota | None:
        """The quota that applies to `name` at `level` (its own, else the `"*"` default)."""
        if not name:
            return None
        table = self.table(level)
        q = table.get(name)
        return q if q is not None else table.get(DEFAULT_NAME)

    def may_borrow(self, q: Quota) -> bool:
        return self.borrowing if q.borrowing is None else q.borrowing

    def guarantees(self) -> Iterable[tuple[Level, str, int]]:
        for level in LEVELS:
            for name, q in self.table(level).items():
                if q.guaranteed_milli > 0 and name != DEFAULT_NAME:
                    yield level, name, q.guaranteed_milli


def gpus_text(milli: int) -> str:
    """Milli-GPU as a short GPU count: 8000 -> "8", 2500 -> "2.5", 250 -> "0.25"."""
    return f"{milli / MILLI_PER_GPU:g}"


def assignment_milli(a: Assignment) -> int:
    return a.gpu_milli * len(a.gpu_indices)


def usage_from_running(running: Iterable[RunningAllocation]) -> Usage:
    """Milli-GPU held per (level, name) by running allocations."""
    used: Usage = {}
    for r in running:
        m = assignment_milli(r.assignment)
        if m <= 0:
            continue
        for level, name in (("user", r.user), ("project", r.project), ("team", r.team)):
            if name:
                used[(level, name)] = used.get((level, name), 0) + m
    return used


class QuotaLedger:
    """Usage during one placement cycle: O(1) checks and charges.

    `idle_milli` is the fleet's free GPU capacity at the start of the cycle; each charge takes
    from it (charge every placement, also of entities without quotas).
    """

    __slots__ = (
        "_book",
        "_capped",
        "_empty",
        "_guaranteed",
        "_limits",
        "_unused_total",
        "_used",
        "idle_milli",
        "lend",
    )

    def __init__(
        self,
        book: QuotaBook,
        running: Iterable[RunningAllocation],
        idle_milli: int,
        *,
        lend: bool = False,
    ) -> None:
        self._book = book
        self.lend = lend
        self._empty = book.empty
        self.idle_milli = idle_milli
        # Per level (user, project, team): name -> milli held / guaranteed / capped quota.
        self._used: tuple[dict[str, int], ...] = ({}, {}, {})
        for (level, name), m in usage_from_running(running).items():
            self._used[LEVELS.index(level)][name] = m
        self._guaranteed: tuple[dict[str, int], ...] = ({}, {}, {})
        for level, name, g in book.guarantees():
            self._guaranteed[LEVELS.index(level)][name] = g
        self._limits: tuple[dict[str, Quota | None], ...] = ({}, {}, {})
        # levels (indices) where some quota has a limit: only those can refuse a request
        self._capped = tuple(
            li for li, level in enumerate(LEVELS)
            if any(q.limit_milli is not None for q in book.table(level).values())
        )
        self._unused_total = sum(
            max(0, g - self._used[li].get(name, 0))
            for li in range(3)
            for name, g in self._guaranteed[li].items()
        )

    def used_milli(self, level: Level, name: str) -> int:
        return self._used[LEVELS.index(level)].get(name, 0)

    def guaranteed_milli(self, level: Level, name: str) -> int:
        return self._guaranteed[LEVELS.index(level)].get(name, 0) if name else 0

    def under_guarantee(
        self, user: str, project: str, team: str, milli: int
    ) -> tuple[Level, str, int, int] | None:
        """The first level whose entity stays within its guarantee with `milli` more, as
        (level, name, used, guaranteed); None when no entity of the job has room left in one."""
        for li, name in enumerate((user, project, team)):
            g = self._guaranteed[li].get(name, 0) if name else 0
            used = self._used[li].get(name, 0)
            if g > 0 and used + milli <= g:
                return LEVELS[li], name, used, g
        return None

    def guarantee_kept(
        self, user: str, project: str, team: str, milli: int, removed: Usage
    ) -> tuple[Level, str, int, int] | None:
        """None when taking `milli` away (beyond `removed`) leaves every guaranteed entity of
        the job at or above its guarantee; else the first that would drop below, as
        (level, name, used after `removed`, guaranteed)."""
        for li, name in enumerate((user, project, team)):
            g = self._guaranteed[li].get(name, 0) if name else 0
            if g <= 0:
                continue
            level = LEVELS[li]
            used = self._used[li].get(name, 0) - removed.get((level, name), 0)
            if used - milli < g:
                return level, name, used, g
        return None

    def _limit(self, li: int, name: str) -> Quota | None:
        q = self._book.quota(LEVELS[li], name)
        if q is not None and q.limit_milli is None:
            q = None
        self._limits[li][name] = q
        return q

    def _unused(self, li: int, name: str) -> int:
        g = self._guaranteed[li].get(name, 0)
        return max(0, g - self._used[li].get(name, 0)) if g else 0

    def borrowable_milli(self, user: str, project: str, team: str) -> int:
        """Idle capacity not guaranteed to anyone but these entities."""
        if self.lend:
            return self.idle_milli
        own = self._unused(0, user) + self._unused(1, project) + self._unused(2, team)
        return self.idle_milli - (self._unused_total - own)

    def guarantee_rooms(self) -> tuple[dict[str, int], ...]:
        """Per level (user, project, team): name -> the most milli a job of that entity may
        add and stay within its guarantee, for entities with one. A job's
        `under_guarantee(..., milli)` is not None exactly when 0 < milli <= the largest of
        its entities' rooms (until the next charge)."""
        return tuple(
            {name: g - self._used[li].get(name, 0) for name, g in gd.items() if g > 0 and name}
            for li, gd in enumerate(self._guaranteed)
        )

    def check(self, user: str, project: str, team: str, milli: int) -> str | None:
        """`None` when a request of `milli` fits the quotas, else why not."""
        if milli <= 0 or self._empty:
            return None
        names = (user, project, team)
        for li in self._capped:
            name = names[li]
            if not name:
                continue
            limits = self._limits[li]
            q = limits[name] if name in limits else self._limit(li, name)
            if q is None:
                continue
            used = self._used[li].get(name, 0)
            limit = q.limit_milli
            assert limit is not None
            if used + milli <= limit:
                continue
            free = (self.borrowable_milli(user, project, team) if self._book.may_borrow(q)
                    else None)
            if free is not None and milli <= free:
                continue  # borrows idle capacity
            level = LEVELS[li]
            if used >= limit:
                why = f"{level} {name} over quota {gpus_text(used)}/{gpus_text(limit)} GPUs"
            else:
                why = (
                    f"{level} {name} would exceed quota: {gpus_text(used)}/"
                    f"{gpus_text(limit)} GPUs in use, asks {gpus_text(milli)}"
                )
            if free is None:
                return why
            return (
                f"{why}; cannot borrow: {gpus_text(max(0, free))} idle GPUs"
                + ("" if self.lend else " not guaranteed to others")
            )
        return None

    def charge(self, user: str, project: str, team: str, milli: int) -> None:
        """Record a placement of `milli` GPU for these entities."""
        if milli <= 0:
            return
        self.idle_milli -= milli
        for li, name in enumerate((user, project, team)):
            if not name:
                continue
            used = self._used[li]
            if name in self._guaranteed[li]:
                before = self._unused(li, name)
                used[name] = used.get(name, 0) + milli
                self._unused_total -= before - self._unused(li, name)
            else:
                used[name] = used.get(name, 0) + milli


def check_quota(
    book: QuotaBook,
    running: Iterable[RunningAllocation],
    *,
    user: str,
    project: str,
    team: str,
    milli: int,
    idle_milli: int,
) -> str | None:
    """One-off check against running allocations (builds a ledger; use one for many checks)."""
    return QuotaLedger(book, running, idle_milli).check(user, project, team, milli)

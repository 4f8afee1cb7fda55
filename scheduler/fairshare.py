"""Fair share: queue order within a priority from each user's and project's recent GPU use.

As Slurm's multifactor plugin: usage is GPU-hours decayed with a half-life (an hour of use
`half_life_s` ago counts half), normalized over the level (user or project), and compared with
the entity's normalized share: `factor = 2 ** -(usage_share / share)`, in (0, 1]; 1 is an
entity that used nothing lately, 0.5 one that used exactly its share. A job's factor is its
user's times its project's (1 without a project). Pure: usage records and the clock in.

An entity's share is its guaranteed GPUs, else its GPU quota, else the mean share of its level
(everyone equal when nobody has a quota).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scheduler.quota import QuotaBook

Entity = tuple[str, str]  # (level, name), level "user" or "project"


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One job's GPU hold over time: `gpus` from `start_s` until `end_s` (None: still runs)."""

    user: str
    project: str
    gpus: float
    start_s: float
    end_s: float | None


def decayed_gpu_hours(records: Iterable[UsageRecord], now: float,
                      half_life_s: float) -> dict[Entity, float]:
    """Per (level, name): GPU-hours, each second weighted 2 ** -(age / half_life_s)."""
    if not math.isfinite(half_life_s) or half_life_s <= 0:
        raise ValueError(f"half_life_s must be a finite number > 0, got {half_life_s}")
    k = math.log(2) / half_life_s
    out: dict[Entity, float] = {}
    for r in records:
        end = now if r.end_s is None else min(r.end_s, now)
        if r.gpus <= 0 or end <= r.start_s:
            continue
        # integral of gpus * exp(-k (now - t)) dt over [start, end], in hours
        hours = r.gpus * (math.exp(-k * (now - end)) - math.exp(-k * (now - r.start_s))) / k
        hours /= 3600.0
        for key in (("user", r.user), ("project", r.project)):
            if key[1]:
                out[key] = out.get(key, 0.0) + hours
    return out


class FairShare:
    """Factors per job from decayed usage and the quota book's shares."""

    __slots__ = ("_factors",)

    def __init__(self, usage: Mapping[Entity, float], book: QuotaBook | None) -> None:
        self._factors: dict[Entity, float] = {}
        for level in ("user", "project"):
            names = {name for (lv, name) in usage if lv == level}
            if book is not None:
                names |= {n for n in book.table(level) if n != "*"}
            if not names:
                continue
            total_use = sum(usage.get((level, n), 0.0) for n in names)
            shares = {n: _share(book, level, n) for n in names}
            known = [s for s in shares.values() if s is not None and s > 0]
            mean = sum(known) / len(known) if known else 1.0
            sized = {n: (s if s is not None and s > 0 else mean) for n, s in shares.items()}
            total_share = sum(sized.values())
            for n in names:
                used = usage.get((level, n), 0.0)
                if used <= 0 or total_use <= 0:
                    continue  # factor 1
                ratio = (used / total_use) / (sized[n] / total_share)
                self._factors[(level, n)] = 2.0 ** -ratio

    def factor(self, user: str, project: str) -> float:
        f = self._factors.get(("user", user), 1.0)
        if project:
            f *= self._factors.get(("project", project), 1.0)
        return f

    def entity_factor(self, level: str, name: str) -> float:
        return self._factors.get((level, name), 1.0)


def _share(book: QuotaBook | None, level: str, name: str) -> float | None:
    if book is None:
        return None
    q = book.table(level).get(name)  # type: ignore[arg-type]
    if q is None:
        return None
    if q.guaranteed_milli > 0:
        return float(q.guaranteed_milli)
    return None if q.limit_milli is None else float(q.limit_milli)

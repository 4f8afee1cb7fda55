"""Priority classes: a named priority and whether jobs of the class may be preempted.

A job names its class (`fleetdeck submit --class NAME`, `class` in a job file); a job that
names none gets the default class (the one marked `default`, else the built-in `batch`:
priority 0, preemptible). Placement orders the queue by class priority first; with preemption
on, a job within its quota may preempt preemptible jobs of lower classes
(`scheduler.placement.preemption`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PriorityClass:
    name: str
    priority: int = 0
    preemptible: bool = True


BATCH = PriorityClass("batch", 0, True)


@dataclass(frozen=True, slots=True)
class ClassBook:
    """The configured classes by name, and the default for jobs that name none."""

    classes: tuple[PriorityClass, ...] = ()
    default_name: str | None = None

    def __post_init__(self) -> None:
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise ValueError("priority class names must be unique")
        if self.default_name is not None and self.default_name not in names:
            raise ValueError(f"default priority class {self.default_name!r} is not defined")

    @classmethod
    def of(cls, classes: Sequence[PriorityClass], defaults: Sequence[bool]) -> ClassBook:
        """From configured classes and their `default` flags (at most one may be set)."""
        marked = [c.name for c, d in zip(classes, defaults, strict=True) if d]
        if len(marked) > 1:
            raise ValueError(f"more than one default priority class: {', '.join(marked)}")
        return cls(tuple(classes), marked[0] if marked else None)

    @property
    def default(self) -> PriorityClass:
        if self.default_name is not None:
            return self.get(self.default_name) or BATCH
        return BATCH

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes) or (BATCH.name,)

    def get(self, name: str) -> PriorityClass | None:
        for c in self.classes:
            if c.name == name:
                return c
        if not self.classes and name == BATCH.name:
            return BATCH
        return None

    def resolve(self, name: str | None) -> PriorityClass:
        """The class a job runs in: its own when defined, else the default (a class removed
        from the config after the job was queued falls back to the default too)."""
        if name is None:
            return self.default
        return self.get(name) or self.default

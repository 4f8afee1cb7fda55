"""`[policies.idle]`: the idle policy's settings, the per pool / project / kind rules, and the
job they are resolved for (`IdleConfig.settings_for`). No numpy: the config schema loads this
(`console.config`); the policy itself is `scheduler.policies.idle`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from collectors.config_schema import doc

JobKind = Literal["batch", "notebook", "service"]
MissingSignal = Literal["skip", "gpu_only"]


@dataclass(frozen=True, slots=True)
class IdleSettings:
    """Idle settings that apply to one job (the `[policies.idle]` defaults, after rules)."""

    enabled: bool = field(default=False, metadata=doc("run the idle policy for these jobs"))
    window_s: float = field(default=1800.0, metadata=doc(
        "observation window: idle means idle for all of it", min=1))
    gpu_util_threshold_pct: float = field(default=5.0, metadata=doc(
        "a GPU sample at or above this utilization makes the job busy", min=0, max=100))
    check_cpu: bool = field(default=True, metadata=doc(
        "require job CPU samples under cpu_util_threshold_pct (false: GPU signals only)"))
    missing_signal: MissingSignal = field(default="gpu_only", metadata=doc(
        "when a job's CPU samples are missing: gpu_only judges on GPU util and GPU memory "
        "growth alone, skip leaves the job unjudged (not enough data)"))
    cpu_util_threshold_pct: float = field(default=20.0, metadata=doc(
        "a job CPU sample at or above this (100 = one core) makes the job busy", min=0))
    grace_s: float = field(default=900.0, metadata=doc(
        "never idle within this long after the job started", min=0))
    warn_after_s: float = field(default=0.0, metadata=doc(
        "continuous idle time before the warning (at least window_s)", min=0))
    stop_after_s: float = field(default=1800.0, metadata=doc(
        "delay between the warning and the stop", min=0))
    stop_timeout_s: float = field(default=30.0, metadata=doc(
        "grace between SIGTERM/docker stop and SIGKILL", min=0))
    requeue: bool = field(default=False, metadata=doc("requeue the job after stopping it"))
    dry_run: bool = field(default=False, metadata=doc(
        "record what would happen (warn/stop marked dry_run), change nothing"))
    min_samples: int = field(default=3, metadata=doc(
        "fewest samples per GPU in the window to judge it", min=1))
    max_gap_s: float = field(default=120.0, metadata=doc(
        "a longer gap between samples means not enough data", min=1))


@dataclass(frozen=True, slots=True)
class IdleRule:
    """One `[[policies.idle.rules]]` entry: matchers (unset matches all) and overrides
    (unset inherits)."""

    name: str = field(default="", metadata=doc("label shown in evidence"))
    pool: str | None = field(default=None, metadata=doc("match jobs in this pool"))
    project: str | None = field(default=None, metadata=doc("match jobs of this project"))
    kind: JobKind | None = field(default=None, metadata=doc(
        "match jobs of this kind: batch, notebook or service"))
    enabled: bool | None = field(default=None, metadata=doc("override enabled"))
    window_s: float | None = field(default=None, metadata=doc("override window_s", min=1))
    gpu_util_threshold_pct: float | None = field(default=None, metadata=doc(
        "override gpu_util_threshold_pct", min=0, max=100))
    check_cpu: bool | None = field(default=None, metadata=doc("override check_cpu"))
    missing_signal: MissingSignal | None = field(default=None, metadata=doc(
        "override missing_signal: skip or gpu_only"))
    cpu_util_threshold_pct: float | None = field(default=None, metadata=doc(
        "override cpu_util_threshold_pct", min=0))
    grace_s: float | None = field(default=None, metadata=doc("override grace_s", min=0))
    warn_after_s: float | None = field(default=None, metadata=doc("override warn_after_s",
                                                                  min=0))
    stop_after_s: float | None = field(default=None, metadata=doc("override stop_after_s",
                                                                  min=0))
    stop_timeout_s: float | None = field(default=None, metadata=doc(
        "override stop_timeout_s", min=0))
    requeue: bool | None = field(default=None, metadata=doc("override requeue"))
    dry_run: bool | None = field(default=None, metadata=doc("override dry_run"))
    min_samples: int | None = field(default=None, metadata=doc("override min_samples", min=1))
    max_gap_s: float | None = field(default=None, metadata=doc("override max_gap_s", min=1))

    def matches(self, job: IdleJob) -> bool:
        return ((self.pool is None or self.pool == job.pool)
                and (self.project is None or self.project == job.project)
                and (self.kind is None or self.kind == job.kind))

    def specificity(self) -> tuple[int, int]:
        set_ = (self.project is not None, self.pool is not None, self.kind is not None)
        return sum(set_), 4 * set_[0] + 2 * set_[1] + set_[2]

    def label(self) -> str:
        if self.name:
            return self.name
        parts = [f"{k}={v}" for k, v in (("pool", self.pool), ("project", self.project),
                                          ("kind", self.kind)) if v is not None]
        return ",".join(parts) or "all"


_SETTING_NAMES = tuple(f.name for f in dataclasses.fields(IdleSettings))


@dataclass(frozen=True, slots=True)
class IdleConfig(IdleSettings):
    """`[policies.idle]`: default settings (fields of `IdleSettings`) plus rules."""

    protect_label: str = field(default="fleetdeck.protect", metadata=doc(
        "job label that exempts a job when set to anything but false/0/no"))
    rules: tuple[IdleRule, ...] = field(default=(), metadata=doc(
        "per pool / project / kind overrides, most specific wins"))

    def settings_for(self, job: IdleJob) -> tuple[IdleSettings, tuple[str, ...]]:
        """Resolved settings for a job and the labels of the rules applied."""
        values: dict[str, Any] = {n: getattr(self, n) for n in _SETTING_NAMES}
        matching = [(r.specificity(), i, r) for i, r in enumerate(self.rules) if r.matches(job)]
        matching.sort(key=lambda t: (t[0], t[1]))
        for _, _, rule in matching:
            for n in _SETTING_NAMES:
                v = getattr(rule, n)
                if v is not None:
                    values[n] = v
        return IdleSettings(**values), tuple(r.label() for _, _, r in matching)


@dataclass(frozen=True, slots=True)
class IdleJob:
    """A running job as the idle policy sees it (a `jobs` row plus labels)."""

    job_id: str
    node: str
    gpu_indices: tuple[int, ...]
    started_at: float
    user: str = ""
    project: str | None = None
    pool: str | None = None
    kind: str = "batch"
    labels: Mapping[str, str] = field(default_factory=dict)
    protect: bool = False

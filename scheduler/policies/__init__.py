"""Pure policies: idle GPU jobs, cloud bursting under budget, GPU health.

Each takes immutable inputs (snapshots, sample windows, config, the previous state) and
`now: float`, and returns decisions as `Action`s (plus typed decisions where the engine needs
more than a row) with the state to pass next time. No I/O: the engine executes and audits.

`PoliciesConfig` is the `[policies]` table of the config file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from collectors import lazy
from collectors.config_schema import doc
from scheduler.policies.audit import Action, Snooze, snooze_action
from scheduler.policies.burst import BudgetLimits, BurstConfig, BurstState, evaluate_burst
from scheduler.policies.health import HealthConfig, HealthState, evaluate_health
from scheduler.policies.idle_config import IdleConfig, IdleRule

if TYPE_CHECKING:
    from scheduler.policies.idle import IdleState, evaluate_idle
else:  # the idle policy loads numpy: on first use (`collectors.lazy`), not for the config
    __getattr__ = lazy.exports(__name__, {"IdleState": "idle", "evaluate_idle": "idle"})


@dataclass(frozen=True, slots=True)
class PoliciesConfig:
    """`[policies]`: `[policies.idle]`, `[policies.burst]`, `[policies.health]`."""

    idle: IdleConfig = field(default_factory=IdleConfig, metadata=doc(
        "stop idle GPU jobs in stages"))
    burst: BurstConfig = field(default_factory=BurstConfig, metadata=doc(
        "rent cloud nodes for waiting jobs, under budget"))
    health: HealthConfig = field(default_factory=HealthConfig, metadata=doc(
        "mark broken GPUs and drain their nodes"))


__all__ = [
    "Action", "BudgetLimits", "BurstConfig", "BurstState", "HealthConfig", "HealthState",
    "IdleConfig", "IdleRule", "IdleState", "PoliciesConfig", "Snooze", "evaluate_burst",
    "evaluate_health", "evaluate_idle", "snooze_action",
]

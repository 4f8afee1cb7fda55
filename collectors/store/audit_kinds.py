"""What an audit row says was done (`actions.action`) and to what (`actions.target_kind`).

Members are `str`s equal to the stored values. `scheduler.policies.audit` says, per kind,
which policy decides it and what the engine does.
"""

from __future__ import annotations

from enum import StrEnum


class ActionKind(StrEnum):
    # a person, through the CLI, console or API
    SUBMIT = "submit"
    STOP = "stop"
    SNOOZE = "snooze"
    CORDON = "cordon"
    UNCORDON = "uncordon"
    CONFIG_RELOAD = "config_reload"
    NOTIFY_TEST = "notify_test"
    # the runner
    TIMEOUT = "timeout"
    PREEMPT = "preempt"
    # policy:idle
    IDLE_WARN = "idle_warn"
    IDLE_CLEAR = "idle_clear"
    IDLE_STOP = "idle_stop"
    IDLE_REQUEUE = "idle_requeue"
    # policy:burst
    BURST_PROVISION = "burst_provision"
    BURST_REFUSE = "burst_refuse"
    BURST_TERMINATE = "burst_terminate"
    BURST_REQUEUE = "burst_requeue"
    BURST_FAILED = "burst_failed"
    BURST_LOST = "burst_lost"
    # policy:health
    GPU_UNHEALTHY = "gpu_unhealthy"
    GPU_RECOVERED = "gpu_recovered"
    DRAIN = "drain"
    UNDRAIN = "undrain"
    HEALTH_REQUEUE = "health_requeue"
    # engine API calls (console.engine.server): a changing call, a refused call
    CALL = "call"
    REFUSED = "refused"


class TargetKind(StrEnum):
    JOB = "job"
    NODE = "node"
    GPU = "gpu"
    INSTANCE = "instance"
    CONFIG = "config"
    METHOD = "method"  # an engine API method, for CALL and REFUSED rows

"""Executors: run placed jobs as Docker containers, detached processes over SSH, or Slurm jobs.

See `scheduler.executors.base` for the `Executor` protocol and the value types.
"""

from __future__ import annotations

from scheduler.executors.base import (
    Discovered,
    Executor,
    ExecutorError,
    ExecutorKind,
    Handle,
    Launch,
    RunState,
    Status,
)
from scheduler.executors.docker import DockerExecutor
from scheduler.executors.process import ProcessExecutor
from scheduler.executors.slurm import SlurmExecutor

__all__ = [
    "Discovered",
    "DockerExecutor",
    "Executor",
    "ExecutorError",
    "ExecutorKind",
    "Handle",
    "Launch",
    "ProcessExecutor",
    "RunState",
    "SlurmExecutor",
    "Status",
]

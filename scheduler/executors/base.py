"""What every executor offers: start, status, stop, logs, discover, cleanup a job on a node.

An executor turns a placed job (`Launch`) into something running on a node, reached through
the node's `collectors.transport.Transport`. Executors keep no state of their own that matters
across a restart: everything needed to find a job again lives on the node (container labels,
the per-job directory with pid and exit files, Slurm job names), so a fresh executor object
(after a fleetdeck restart, even `kill -9`) finds running jobs with `discover` and never starts
one twice (`start` is idempotent per job id and attempt).

Commands never pass through a shell unless the launch says so (`shell=True`); where an
executor needs a shell on the node (the process and Slurm wrappers), every value in it is
quoted with `shlex.quote`.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol

from collectors.errors import FleetdeckError
from collectors.transport.base import CommandResult, Transport

ExecutorKind = Literal["docker", "process", "slurm"]

# Set in a job's environment: the file that appears when the job is preempted (checkpoint
# now; SIGTERM follows and the forced kill after the grace), and "1" when resuming after one.
PREEMPT_FILE_ENV = "FLEETDECK_PREEMPT_FILE"
RESUME_ENV = "FLEETDECK_RESUME"



class RunState(StrEnum):
    """A job's run as its executor sees it (not the engine's `scheduler.states.JobState`)."""

    PENDING = "pending"
    RUNNING = "running"
    EXITED = "exited"
    MISSING = "missing"


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class ExecutorError(FleetdeckError):
    """An executor could not act on a node; one line naming the node, the job and why."""


@dataclass(frozen=True, slots=True)
class Launch:
    """One attempt of one job, placed on a node, as the executor needs it.

    `argv` is the program and its arguments, run as is (no shell). With `shell=True`, `argv`
    holds exactly one element, a POSIX shell script run as `sh -c SCRIPT`. `gpu_indices` are
    the node's GPUs placement chose (docker, process); a Slurm job asks for `gpu_count` GPUs and
    Slurm picks them. `gpu_milli` is the share of each chosen GPU (1000 whole, 250 a quarter).
    Limits of 0 (and `max_runtime_s` None) mean none. `secret_env` joins the job's
    environment like `env` but never a command line on the node (stdin or a 0600 file).
    """

    job_id: int
    attempt: int
    name: str
    user: str
    project: str
    argv: tuple[str, ...]
    shell: bool = False
    image: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    gpu_indices: tuple[int, ...] = ()
    gpu_count: int | None = None  # None: len(gpu_indices)
    gpu_milli: int = 1000
    cpu_milli: int = 0
    mem_bytes: int = 0
    max_runtime_s: float | None = None
    partition: str | None = None  # slurm
    account: str | None = None  # slurm
    secret_env: Mapping[str, str] = field(default_factory=dict)
    resume: bool = False  # an earlier attempt was preempted: FLEETDECK_RESUME=1

    def __post_init__(self) -> None:
        if self.job_id < 0 or self.attempt < 0:
            raise ValueError("job_id and attempt must be >= 0")
        if not self.argv:
            raise ValueError("argv is empty")
        if self.shell and len(self.argv) != 1:
            raise ValueError("shell=True takes exactly one element in argv: the script")
        values = (*self.argv, *self.env.values(), *self.secret_env.values(), self.workdir or "",
                  self.image or "")
        if any("\0" in v for v in values):
            raise ValueError("arguments, env values, workdir and image cannot contain NUL")
        for name in (*self.env, *self.secret_env):
            if not ENV_NAME.match(name):
                raise ValueError(f"env name {name!r} is not a valid variable name")
        if self.max_runtime_s is not None and self.max_runtime_s <= 0:
            raise ValueError("max_runtime_s must be positive")

    @property
    def command(self) -> tuple[str, ...]:
        """The argument list actually executed: `argv`, or `("sh", "-c", script)`."""
        return ("sh", "-c", self.argv[0]) if self.shell else self.argv

    @property
    def gpus(self) -> int:
        """Number of GPUs the job holds (a fractional share counts as one)."""
        return len(self.gpu_indices) if self.gpu_count is None else self.gpu_count

    @property
    def cpus(self) -> int:
        """Whole CPUs for executors that cannot take a fraction (Slurm): at least 1."""
        return max(1, math.ceil(self.cpu_milli / 1000))

    @property
    def tag(self) -> str:
        """`<job_id>-<attempt>`: the key that makes `start` idempotent."""
        return f"{self.job_id}-{self.attempt}"

    def fleetdeck_env(self) -> dict[str, str]:
        """Variables every job gets, before the spec's own `env` (which may not override them)."""
        env = {
            "FLEETDECK_JOB_ID": str(self.job_id),
            "FLEETDECK_ATTEMPT": str(self.attempt),
            "FLEETDECK_JOB_NAME": self.name,
        }
        if self.resume:
            env[RESUME_ENV] = "1"
        if self.gpu_indices:
            env["FLEETDECK_GPU_INDICES"] = ",".join(str(i) for i in self.gpu_indices)
            env["FLEETDECK_GPU_MILLI"] = str(self.gpu_milli)
        return env

    def merged_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The spec's env, then `extra` (executor-chosen, e.g. CUDA_VISIBLE_DEVICES), then ours."""
        env = dict(self.env)
        env.update(extra or {})
        env.update(self.fleetdeck_env())
        return env


@dataclass(frozen=True, slots=True)
class Handle:
    """Where a started job lives: executor kind, node, and its id there.

    `external_id` is the container id (docker), the pid of the job's process group leader on
    the node (process) or the Slurm job id (slurm); it is what the store's `jobs.external_id`
    holds.
    """

    kind: ExecutorKind
    node: str
    external_id: str
    job_id: int
    attempt: int


@dataclass(frozen=True, slots=True)
class Status:
    """A job as its executor sees it now.

    `pending`: accepted but not running yet (a created container, a queued Slurm job);
    `running`; `exited` (`exit_code` None when the node kept no code, e.g. a killed wrapper or
    a node reboot); `missing`: the node has no trace of it. Exit codes of jobs killed by a
    signal are 128 + the signal number. Times are epoch seconds. `detail` is the executor's own
    word (docker state, Slurm state, "timeout") for messages. `deadline_at` is when the job's
    max runtime ends where the executor does not enforce it itself (docker): the engine stops
    the job once it is past.
    """

    state: RunState
    exit_code: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    detail: str = ""
    deadline_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.state in (RunState.EXITED, RunState.MISSING)


@dataclass(frozen=True, slots=True)
class Discovered:
    """A fleetdeck job found on a node by `Executor.discover`."""

    handle: Handle
    status: Status

    @property
    def job_id(self) -> int:
        return self.handle.job_id

    @property
    def attempt(self) -> int:
        return self.handle.attempt

    @property
    def external_id(self) -> str:
        return self.handle.external_id


class Executor(Protocol):
    """Runs jobs of one kind on nodes reached through a `Transport`.

    All methods are safe to call again after a fleetdeck restart: state lives on the node.
    Errors are raised as `ExecutorError` (or the transport's `TransportError`), one line each.
    """

    kind: ExecutorKind

    async def start(self, launch: Launch, transport: Transport) -> Handle:
        """Start `launch` on the transport's node and return its handle.

        Idempotent: a second call for the same `job_id` and `attempt` (concurrently, or after a
        restart) adopts the job the first call started and returns its handle; it never starts
        the job twice, even when the first one has already finished.
        """
        ...

    async def status(self, handle: Handle, transport: Transport) -> Status:
        """The job's state, exit code and times now."""
        ...

    async def status_many(self, handles: Sequence[Handle],
                          transport: Transport) -> list[Status]:
        """`status` of several jobs on the transport's node, in the order of `handles`, in one
        round trip (one shell, one API session) whatever their number: a poll costs one call
        per node, not one per job."""
        ...

    async def stop(self, handle: Handle, transport: Transport, *, grace_s: float,
                   notice: bool = False) -> None:
        """Stop the job: a graceful signal (SIGTERM), then after `grace_s` a forced kill.

        Returns once the job has ended (or was already gone). A pending job is just cancelled.
        With `notice` (a preemption) the file named by `$FLEETDECK_PREEMPT_FILE` is created
        first, so the job can checkpoint during the grace.
        """
        ...

    def logs(self, handle: Handle, transport: Transport, *, tail_lines: int | None = None,
             follow: bool = False) -> AsyncIterator[bytes]:
        """The job's output (stdout and stderr together) as byte chunks.

        `tail_lines` limits the output to its last lines; `follow` keeps yielding new output
        until the job ends.
        """
        ...

    async def discover(self, transport: Transport) -> list[Discovered]:
        """Every fleetdeck job of this kind the node knows, running or finished, with status.

        This is reconciliation after a restart: the engine matches them to its store by
        `job_id` and `attempt`.
        """
        ...

    async def cleanup(self, handle: Handle, transport: Transport) -> None:
        """Remove what the finished job left on the node (container, job directory).

        Exit code and logs are gone afterwards; call it once they are recorded.
        """
        ...


def check(result: CommandResult, transport: Transport, what: str) -> CommandResult:
    """`result` if it succeeded, else an `ExecutorError` naming the node and stderr's last line."""
    if result.exit_status != 0:
        raise ExecutorError(f"node {transport.node.name}: {what}: {result.error_line()}")
    return result


async def run_checked(transport: Transport, script: str, what: str, *, timeout: float,
                      input: bytes | None = None) -> CommandResult:
    """Run a shell script on the node; its result, or an `ExecutorError` (see `check`)."""
    return check(await transport.run_shell(script, input=input, timeout=timeout), transport, what)


def started_handle(kind: ExecutorKind, reply: CommandResult, transport: Transport,
                   launch: Launch, what: str) -> Handle:
    """The handle a start script's reply names: "<tag> <numeric id>" (a pid, a Slurm id)."""
    parts = reply.text().split()
    if len(parts) != 2 or not parts[1].isdigit():
        raise ExecutorError(f"node {transport.node.name}: {what}: unexpected reply "
                            f"{reply.text()[:80]!r}")
    return Handle(kind, transport.node.name, parts[1], launch.job_id, launch.attempt)


class ShellLogs:
    """`logs` for executors whose jobs write their output to a file on the node (process,
    Slurm): the executor gives the scripts, `logs` runs them."""

    command_timeout_s: float

    def log_scripts(self, handle: Handle, tail: str) -> tuple[str, str, str]:
        """(print the log once, follow it until the job ends, what for messages); `tail` is
        the `tail -n` argument."""
        raise NotImplementedError

    async def logs(self, handle: Handle, transport: Transport, *, tail_lines: int | None = None,
                   follow: bool = False) -> AsyncIterator[bytes]:
        """See `Executor.logs`."""
        tail = "+1" if tail_lines is None else str(max(0, tail_lines))
        once, follow_script, what = self.log_scripts(handle, tail)
        if not follow:
            res = await run_checked(transport, once, what, timeout=self.command_timeout_s)
            if res.stdout:
                yield res.stdout
            return
        async with transport.stream(["sh", "-c", follow_script]) as lines:
            async for line in lines:
                yield line + b"\n"
            if lines.exit_status not in (0, None):
                raise ExecutorError(
                    f"node {transport.node.name}: {what}: "
                    f"{lines.stderr_tail.decode('utf-8', 'replace').strip()}"
                )


TAG = re.compile(r"(\d+)-(\d+)\Z")


def parse_tag(text: str) -> tuple[int, int] | None:
    """`(job_id, attempt)` from `<job_id>-<attempt>`, or None."""
    m = TAG.match(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def jobs_dir_expr(jobs_dir: str) -> str:
    """A shell expression for a jobs directory: `~/x` becomes `"$HOME"/'x'`, others are quoted.

    >>> jobs_dir_expr("~/.fleetdeck/jobs")
    '"$HOME"/.fleetdeck/jobs'
    >>> jobs_dir_expr("/tmp/a b")
    "'/tmp/a b'"
    """
    if jobs_dir == "~":
        return '"$HOME"'
    if jobs_dir.startswith("~/"):
        return '"$HOME"/' + shlex.quote(jobs_dir[2:])
    if not jobs_dir.startswith("/"):
        raise ValueError(f"jobs_dir must be absolute or start with ~/, got {jobs_dir!r}")
    return shlex.quote(jobs_dir)


def sh_exports(env: Mapping[str, str]) -> str:
    """`export NAME='value'` lines for a POSIX shell; names are checked, values quoted."""
    lines = []
    for name, value in env.items():
        if not ENV_NAME.match(name):
            raise ValueError(f"env name {name!r} is not a valid variable name")
        lines.append(f"export {name}={shlex.quote(value)}")
    return "\n".join(lines)


def sh_words(argv: tuple[str, ...] | list[str]) -> str:
    """The argument list as shell words, each quoted (never expanded by the shell)."""
    return " ".join(shlex.quote(a) for a in argv)

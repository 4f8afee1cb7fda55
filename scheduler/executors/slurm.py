"""Slurm executor: `sbatch` on the pool's login node, state from `squeue`/`scontrol`/`sacct`.

A job attempt is the Slurm job named `fd-<job_id>-<attempt>` (comment
`fleetdeck:<job_id>:<attempt>`), with a directory `<jobs_dir>/<job_id>-<attempt>` (default
`~/.fleetdeck/slurm`, which must be on a file system the compute nodes share, as home usually
is). `start` creates the directory with an atomic `mkdir` and checks `squeue` for the name
before `sbatch`, so a second start adopts the first job. The directory holds:

- `slurm_id`: the Slurm job id; `slurm-<id>.out`: the job's stdout and stderr;
- `started_at`, `ended_at`, `exit_code`: written by the batch wrapper (128 + N when the job was
  killed by signal N), so the exit code survives without Slurm accounting.

The batch script (sent on sbatch's stdin) exports the `FLEETDECK_*` variables and the spec's
env, then runs the argument list, every word quoted; Slurm sets `CUDA_VISIBLE_DEVICES` from
`--gres=gpu:N`. State: `squeue -t all` (running and recently finished jobs, for MinJobAge);
for a finished job the exit code comes from the wrapper's file, else `scontrol show job`, else
`sacct` (when accounting storage is configured). Stop: `scancel --signal=TERM --full`, then
after the grace `scancel --signal=KILL --full` and `scancel`; a pending job is just cancelled.
A stop with notice (preemption) first creates `<dir>/preempt`, the job's
`$FLEETDECK_PREEMPT_FILE`.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import scheduler.executors.base as base
from collectors.transport.base import Transport
from scheduler.executors.base import Discovered, ExecutorError, Handle, Launch, RunState, Status

DEFAULT_JOBS_DIR = "~/.fleetdeck/slurm"
PENDING_STATES = frozenset(
    {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD"}
)
RUNNING_STATES = frozenset(
    {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING",
     "SPECIAL_EXIT"}
)
_NAME = re.compile(r"fd-(\d+)-(\d+)\Z")
_EXIT = re.compile(r"\bExitCode=(\d+):(\d+)")


def job_name(launch: Launch) -> str:
    return f"fd-{launch.tag}"


def sbatch_argv(launch: Launch, *, partition: str | None = None, account: str | None = None
                ) -> list[str]:
    """sbatch's options (without `--output`, which the start script adds with the job dir)."""
    argv = [
        "sbatch",
        "--parsable",
        "--export=ALL",
        f"--job-name={job_name(launch)}",
        f"--comment=fleetdeck:{launch.job_id}:{launch.attempt}",
        "--ntasks=1",
        f"--cpus-per-task={launch.cpus}",
    ]
    if launch.mem_bytes > 0:
        argv.append(f"--mem={math.ceil(launch.mem_bytes / 2**20)}M")
    if launch.max_runtime_s is not None:
        argv.append(f"--time={max(1, math.ceil(launch.max_runtime_s / 60))}")
    if launch.gpus > 0:
        argv.append(f"--gres=gpu:{launch.gpus}")
    part = launch.partition or partition
    if part:
        argv.append(f"--partition={part}")
    acct = launch.account or account
    if acct:
        argv.append(f"--account={acct}")
    if launch.workdir:
        argv.append(f"--chdir={launch.workdir}")
    return argv


def batch_script(launch: Launch) -> str:
    """The batch script: record times and the exit code in $FLEETDECK_JOB_DIR around the job.

    A trapped TERM (scancel --signal=TERM --full reaches this shell too) lets the wrapper
    outlive the job and record its exit code; the job itself keeps SIGTERM's default.
    """
    return "\n".join(
        [
            "#!/bin/sh",
            'd=$FLEETDECK_JOB_DIR',
            "trap 'fd_term=1' TERM",
            'date +%s > "$d/started_at"',
            base.sh_exports(launch.merged_env()),
            base.sh_exports(launch.secret_env),  # the script reaches sbatch on stdin
            f'export {base.PREEMPT_FILE_ENV}="$d/preempt"',
            base.sh_words(list(launch.command)) + " < /dev/null",
            "rc=$?",
            'date +%s > "$d/ended_at"',
            'echo "$rc" > "$d/exit_code.tmp" && mv -f "$d/exit_code.tmp" "$d/exit_code"',
            'exit "$rc"',
            "",
        ]
    )


def start_script(
    launch: Launch,
    jobs_dir: str = DEFAULT_JOBS_DIR,
    *,
    partition: str | None = None,
    account: str | None = None,
    wait_s: float = 10.0,
) -> str:
    """mkdir the job dir atomically, look for the job name in squeue, sbatch (stdin: script).

    Prints `1 ID` (submitted now) or `0 ID` (adopted).
    """
    ticks = max(1, math.ceil(wait_s * 10))
    sbatch = base.sh_words(sbatch_argv(launch, partition=partition, account=account))
    return "\n".join(
        [
            "trap '' HUP",
            f"base={base.jobs_dir_expr(jobs_dir)}",
            'mkdir -p -- "$base" || exit 3',
            f'd="$base"/{launch.tag}',
            f"name={job_name(launch)}",
            'found() { squeue -h -t all -u "$(id -un)" -n "$name" -o %i 2>/dev/null | head -n 1; }',
            'if mkdir -- "$d" 2>/dev/null; then',
            "  id=$(found); new=0",
            '  if [ -z "$id" ]; then',
            f'    if ! id=$(FLEETDECK_JOB_DIR="$d" {sbatch} --output="$d/slurm-%j.out"); then',
            '      rm -rf -- "$d"; exit 5',
            "    fi",
            "    id=${id%%;*}; new=1",
            "  fi",
            '  echo "$id" > "$d/slurm_id.tmp" && mv -f "$d/slurm_id.tmp" "$d/slurm_id"',
            "else",
            '  [ -d "$d" ] || exit 3',
            "  i=0; new=0",
            '  while [ ! -s "$d/slurm_id" ] && [ "$i" -lt ' + str(ticks) + " ]; do",
            "    sleep 0.1; i=$((i+1))",
            "  done",
            '  id=$(cat "$d/slurm_id" 2>/dev/null)',
            '  [ -n "$id" ] || id=$(found)',
            '  [ -n "$id" ] || { echo "no Slurm job id in $d" >&2; exit 4; }',
            "fi",
            'echo "$new $id"',
        ]
    )


def _slurm_time(text: str) -> float | None:
    """Epoch seconds from Slurm's local `YYYY-MM-DDTHH:MM:SS` (None for N/A, Unknown, None)."""
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        return None


def _exit_from_scontrol(line: str) -> int | None:
    m = _EXIT.search(line)
    if m is None:
        return None
    code, sig = int(m.group(1)), int(m.group(2))
    return 128 + sig if sig else code


def _int(text: str) -> int | None:
    t = text.strip()
    return int(t) if t.lstrip("-").isdigit() else None


def status_from_report(report: str) -> Status:
    """A `Status` from the status script's `Q|`, `F|`, `C|`, `A|` lines (pure, tested)."""
    q = f = c = a = ""
    for line in report.splitlines():
        kind, _, rest = line.partition("|")
        if kind == "Q" and not q:
            q = rest
        elif kind == "F":
            f = rest
        elif kind == "C":
            c = rest
        elif kind == "A" and not a:
            a = rest
    qstate, _, qtimes = q.partition("|")
    qstart, _, qend = qtimes.partition("|")
    fcode, _, ftimes = f.partition("|")
    fstart, _, fend = ftimes.partition("|")
    started = _slurm_time(qstart) if qstart else None
    ended = _slurm_time(qend) if qend else None
    if started is None and _int(fstart) is not None:
        started = float(fstart)
    if ended is None and _int(fend) is not None:
        ended = float(fend)
    state = qstate.split("+")[0].strip()  # "CANCELLED+" and "CANCELLED by 0" forms
    state = state.split(" ")[0]
    if state in PENDING_STATES:
        return Status(RunState.PENDING, detail=state)
    if state in RUNNING_STATES:
        return Status(RunState.RUNNING, None, started, None, detail=state)
    code = _int(fcode)
    if state:
        if code is None and c:
            code = _exit_from_scontrol(c)
        return Status(RunState.EXITED, code, started, ended, detail=state)
    if a:  # sacct: State|ExitCode|Start|End
        parts = a.split("|")
        if len(parts) >= 4:
            astate = parts[0].split(" ")[0].rstrip("+")
            ec, _, sig = parts[1].partition(":")
            acode = 128 + int(sig) if sig.isdigit() and int(sig) else _int(ec)
            if astate in PENDING_STATES:
                return Status(RunState.PENDING, detail=astate)
            if astate in RUNNING_STATES:
                return Status(RunState.RUNNING, None, _slurm_time(parts[2]), None, detail=astate)
            return Status(
                RunState.EXITED,
                code if code is not None else acode,
                _slurm_time(parts[2]),
                _slurm_time(parts[3]),
                detail=astate,
            )
    if code is not None:
        return Status(RunState.EXITED, code, started, ended, detail="exited")
    return Status(RunState.MISSING, detail="Slurm no longer knows the job and it left no exit code")


@dataclass
class SlurmExecutor(base.ShellLogs):
    """`Executor` for Slurm, through a transport to the pool's login node.

    `partition` and `account` are defaults a `Launch` may override.
    """

    jobs_dir: str = DEFAULT_JOBS_DIR
    partition: str | None = None
    account: str | None = None
    start_wait_s: float = 10.0
    command_timeout_s: float = 30.0
    poll_s: float = 1.0
    kind: base.ExecutorKind = field(default="slurm", init=False)

    def __post_init__(self) -> None:
        base.jobs_dir_expr(self.jobs_dir)

    def _dir(self, handle: Handle) -> str:
        return f"{base.jobs_dir_expr(self.jobs_dir)}/{handle.job_id}-{handle.attempt}"

    def _id(self, handle: Handle) -> str:
        if not handle.external_id.isdigit():
            raise ExecutorError(f"node {handle.node}: {handle.external_id!r} is no Slurm job id")
        return handle.external_id

    async def start(self, launch: Launch, transport: Transport) -> Handle:
        script = start_script(
            launch,
            self.jobs_dir,
            partition=self.partition,
            account=self.account,
            wait_s=self.start_wait_s,
        )
        what = f"sbatch job {launch.tag}"
        res = await base.run_checked(transport, script, what, input=batch_script(launch).encode(),
                                     timeout=self.start_wait_s + self.command_timeout_s)
        return base.started_handle("slurm", res, transport, launch, what)

    def _status_script(self, handle: Handle) -> str:
        """Prints the `Q|`, `F|`, `C|`, `A|` lines `status_from_report` reads."""
        jid = self._id(handle)
        active = "|".join(sorted(PENDING_STATES | RUNNING_STATES))
        return "\n".join(
            [
                f"id={jid}; d={self._dir(handle)}",
                "q=$(squeue -h -t all -j \"$id\" -o '%T|%S|%e' 2>/dev/null | head -n 1)",
                'echo "Q|$q"',
                f'case "${{q%%|*}}" in {active}) exit 0;; esac',
                'echo "F|$(cat "$d/exit_code" 2>/dev/null)|$(cat "$d/started_at" 2>/dev/null)'
                '|$(cat "$d/ended_at" 2>/dev/null)"',
                'if [ -n "$q" ]; then',
                '  [ -s "$d/exit_code" ] || echo "C|$(scontrol -o show job "$id" 2>/dev/null)"',
                "else",
                "  sacct -n -P -X -j \"$id\" -o State,ExitCode,Start,End 2>/dev/null"
                " | sed 's/^/A|/'",
                "fi",
                "exit 0",
            ]
        )

    async def status(self, handle: Handle, transport: Transport) -> Status:
        res = await base.run_checked(transport, self._status_script(handle),
                                     f"status of Slurm job {self._id(handle)}",
                                     timeout=self.command_timeout_s)
        return status_from_report(res.text())

    async def status_many(self, handles: Sequence[Handle],
                          transport: Transport) -> list[Status]:
        """Each job's status script in a subshell of one shell, its report after an `@|`
        line."""
        if not handles:
            return []
        script = "\n".join(f'echo "@|{i}"\n(\n{self._status_script(h)}\n)'
                           for i, h in enumerate(handles))
        res = await base.run_checked(transport, script + "\nexit 0",
                                     f"status of {len(handles)} Slurm jobs",
                                     timeout=self.command_timeout_s)
        reports = [""] * len(handles)
        at = -1
        for line in res.text().splitlines():
            if line.startswith("@|") and line[2:].isdigit():
                at = int(line[2:])
            elif 0 <= at < len(reports):
                reports[at] += line + "\n"
        return [status_from_report(r) for r in reports]

    async def stop(self, handle: Handle, transport: Transport, *, grace_s: float,
                   notice: bool = False) -> None:
        jid = self._id(handle)
        ticks = max(0, math.ceil(grace_s / 0.2))
        pending = "|".join(sorted(PENDING_STATES))
        script = "\n".join(
            [
                f"id={jid}",
                "st() { squeue -h -j \"$id\" -o %T 2>/dev/null | head -n 1; }",
                "s=$(st)",
                'case "$s" in',
                '  "") exit 0;;',
                f'  {pending}) scancel "$id"; exit 0;;',
                "esac",
                f': > {self._dir(handle)}/preempt' if notice else ":",
                'scancel --signal=TERM --full "$id" 2>/dev/null',
                "i=0",
                'while [ -n "$(st)" ]; do',
                f'  if [ "$i" -ge {ticks} ]; then',
                '    scancel --signal=KILL --full "$id" 2>/dev/null; scancel "$id" 2>/dev/null',
                "    break",
                "  fi",
                "  sleep 0.2; i=$((i+1))",
                "done",
                "j=0",
                'while [ -n "$(st)" ] && [ "$j" -lt 100 ]; do sleep 0.2; j=$((j+1)); done',
                "exit 0",
            ]
        )
        await base.run_checked(transport, script, f"scancel {jid}",
                               timeout=grace_s + self.command_timeout_s + 20.0)

    def log_scripts(self, handle: Handle, tail: str) -> tuple[str, str, str]:
        jid = self._id(handle)
        head = f'id={jid}; f={self._dir(handle)}/slurm-"$id".out\n'
        once = head + '[ -e "$f" ] || exit 0\nexec tail -n ' + tail + ' -- "$f"'
        follow = head + "\n".join(
            [
                f'tail -n {tail} -F -s {self.poll_s / 2:g} -- "$f" 2>/dev/null & t=$!',
                'while [ -n "$(squeue -h -j "$id" -o %i 2>/dev/null)" ]; do',
                f"  sleep {self.poll_s:g}",
                "done",
                f"sleep {self.poll_s:g}",
                'kill "$t" 2>/dev/null',
                "exit 0",
            ]
        )
        return once, follow, f"logs of Slurm job {jid}"

    async def discover(self, transport: Transport) -> list[Discovered]:
        script = "\n".join(
            [
                "squeue -h -t all -u \"$(id -un)\" -o '%i|%j|%T|%S|%e' 2>/dev/null"
                " | sed 's/^/Q|/'",
                f"base={base.jobs_dir_expr(self.jobs_dir)}",
                'for d in "$base"/*-*; do',
                '  [ -d "$d" ] || continue',
                "  printf 'D|%s|%s|%s|%s|%s\\n' \"${d##*/}\" \"$(cat \"$d/slurm_id\" 2>/dev/null)\""
                ' "$(cat "$d/exit_code" 2>/dev/null)" "$(cat "$d/started_at" 2>/dev/null)"'
                ' "$(cat "$d/ended_at" 2>/dev/null)"',
                "done",
                "exit 0",
            ]
        )
        res = await base.run_checked(transport, script, "discover Slurm jobs",
                                     timeout=self.command_timeout_s)
        queued: dict[tuple[int, int], tuple[str, str]] = {}  # key -> (slurm id, Q report)
        dirs: dict[tuple[int, int], tuple[str, str]] = {}  # key -> (slurm id, F report)
        for line in res.text().splitlines():
            parts = line.split("|")
            if parts[0] == "Q" and len(parts) == 6:
                m = _NAME.match(parts[2])
                if m and parts[1].isdigit():
                    key = (int(m.group(1)), int(m.group(2)))
                    queued[key] = (parts[1], "|".join(parts[3:]))
            elif parts[0] == "D" and len(parts) == 6:
                tag = base.parse_tag(parts[1])
                if tag is not None:
                    dirs[tag] = (parts[2].strip(), "|".join(parts[3:]))
        found = []
        for key in sorted(set(queued) | set(dirs)):
            sid_q, q = queued.get(key, ("", ""))
            sid_d, f = dirs.get(key, ("", ""))
            sid = sid_q or sid_d
            if not sid.isdigit():
                continue
            handle = Handle("slurm", transport.node.name, sid, key[0], key[1])
            status = status_from_report(f"Q|{q}\nF|{f}" if q else f"F|{f}")
            if status.state in (RunState.EXITED, RunState.MISSING) and status.exit_code is None:
                with contextlib.suppress(ExecutorError):
                    status = await self.status(handle, transport)
            found.append(Discovered(handle, status))
        return found

    async def cleanup(self, handle: Handle, transport: Transport) -> None:
        status = await self.status(handle, transport)
        if status.state in (RunState.PENDING, RunState.RUNNING):
            raise ExecutorError(
                f"node {transport.node.name}: Slurm job {handle.external_id} is still "
                f"{status.detail}; stop it before cleaning up"
            )
        await base.run_checked(transport, f"rm -rf -- {self._dir(handle)}",
                               f"clean up Slurm job {handle.external_id}",
                               timeout=self.command_timeout_s)


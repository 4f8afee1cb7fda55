"""Process executor: a plain program started over SSH, detached from the session.

Each job attempt owns a directory on the node, `<jobs_dir>/<job_id>-<attempt>` (default
`~/.fleetdeck/jobs`). `start` creates it with an atomic `mkdir` (a second `start` finds it and
adopts the job) and launches a small POSIX sh wrapper with `setsid`, its output sent to
/dev/null and SIGHUP ignored (nohup style), so the job survives the SSH connection closing.
The wrapper starts the job in its own session and process group (the group `stop` signals),
under `timeout` when the job has a max runtime, and records in the directory:

- `runner_pid`: the wrapper's pid; `pid`: the job's pid, which is also its process group id;
- `boot_id`: the node's boot id at start (after a reboot the pids mean nothing);
- `started_at`, `ended_at`: epoch seconds;
- `output.log`: the job's stdout and stderr together;
- `exit_code`: written when the job's main process ends (128 + N when killed by signal N; 124
  when its max runtime ran out and it obeyed SIGTERM, 137 when it had to be killed); whatever
  it left running in its process group is killed first, as Docker and Slurm do.

The job gets `CUDA_VISIBLE_DEVICES` set to its GPUs (empty when it holds none) and the
`FLEETDECK_*` variables; `FLEETDECK_PREEMPT_FILE` is `<dir>/preempt` (for a job run as its
owner `~owner/.fleetdeck/preempt/<fleet>-<tag>`, created as the owner), created by a stop with
notice (preemption) before the SIGTERM. Every value placed in a script is quoted with `shlex.quote`.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

import scheduler.executors.base as base
from collectors.transport.base import Transport
from scheduler.executors.base import Discovered, ExecutorError, Handle, Launch, RunState, Status
from scheduler.executors.identity import engine_user, job_identity, resolve_owner_sh

DEFAULT_JOBS_DIR = "~/.fleetdeck/jobs"

# Prints one tab-separated line per job directory: tag, pid, exit code, alive, started, ended.
# Only shell builtins (`read`, `kill`, `printf`): no process per file, so a poll of every job
# on a node is one shell (`status_many`).
_DESCRIBE = r"""
rd() { r=; { read -r r < "$1"; } 2>/dev/null; }
rd /proc/sys/kernel/random/boot_id; boot=$r
describe() {
  d=$1
  rd "$d/pid"; pid=$r; rd "$d/runner_pid"; rp=$r
  rd "$d/exit_code"; ec=$r; rd "$d/boot_id"; b=$r
  rd "$d/started_at"; st=$r; rd "$d/ended_at"; en=$r
  alive=0
  if [ -z "$ec" ] && [ "$b" = "$boot" ]; then
    if [ -n "$rp" ] && kill -0 "$rp" 2>/dev/null; then alive=1
    elif [ -n "$pid" ] && kill -0 -"$pid" 2>/dev/null; then alive=1
    fi
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "${d##*/}" "$pid" "$ec" "$alive" "$st" "$en"
}
"""

def runner_script(launch: Launch, *, kill_after_s: float = 10.0,
                  run_as: str | None = None) -> str:
    """The wrapper run as `sh -c RUNNER fleetdeck-runner JOBDIR [UID GID HOME]` (detached, in
    its own session).

    It starts the job (in a new session: its pid is its process group id), records pid, times
    and the exit code in JOBDIR, and sends the job's output to JOBDIR/output.log. With
    `run_as`, the job runs as that user (`setpriv` with the uid, gid and groups the start
    script resolved), from their home unless the launch names a workdir. Secret variables come
    from JOBDIR/secret_env (written 0600 by the start script), removed once the job runs.
    """
    gpus = ",".join(str(i) for i in launch.gpu_indices)
    env = launch.merged_env({"CUDA_VISIBLE_DEVICES": gpus})
    prefix = "setsid -- "
    if run_as is not None:
        env.update(USER=run_as, LOGNAME=run_as)
        prefix += 'setpriv --reuid="$2" --regid="$3" --init-groups -- '
    cmd: list[str] = []
    if launch.max_runtime_s is not None:
        cmd += ["timeout", "-k", f"{kill_after_s:g}", f"{launch.max_runtime_s:g}"]
    cmd += launch.command
    if launch.workdir:
        cd = f"cd -- {shlex.quote(launch.workdir)} || exit 127; "
    else:
        cd = 'cd -- "$4" 2>/dev/null; ' if run_as is not None else ""
    return "\n".join(
        [
            'd=$1',
            'echo "$$" > "$d/runner_pid"',
            'date +%s > "$d/started_at"',
            base.sh_exports(env),
            'if [ -n "$4" ]; then export HOME="$4"; fi',
            'if [ -e "$d/secret_env" ]; then . "$d/secret_env"; fi',
            # the job dir is 0700: a job run as its owner gets its notice file in its own home
            'if [ -n "$2" ]; then f="$4/.fleetdeck/preempt/$(basename "${d%/*}")-${d##*/}"; '
            'echo "$2 $3 $f" > "$d/notice_to"; else f="$d/preempt"; fi',
            f'export {base.PREEMPT_FILE_ENV}="$f"',
            f'({cd}exec {prefix}{base.sh_words(cmd)}) > "$d/output.log" 2>&1 < /dev/null &',
            "pid=$!",
            'echo "$pid" > "$d/pid.tmp" && mv -f "$d/pid.tmp" "$d/pid"',
            'rm -f -- "$d/secret_env"',
            'wait "$pid"; rc=$?',
            # Like a container or a Slurm job: what the job left running in its group ends too.
            'kill -KILL -"$pid" 2>/dev/null',
            'date +%s > "$d/ended_at"',
            'echo "$rc" > "$d/exit_code.tmp" && mv -f "$d/exit_code.tmp" "$d/exit_code"',
        ]
    )


def start_script(
    launch: Launch,
    jobs_dir: str = DEFAULT_JOBS_DIR,
    *,
    kill_after_s: float = 10.0,
    wait_s: float = 10.0,
    run_as: str | None = None,
    node: str = "",
) -> str:
    """Create the job directory atomically and launch the wrapper, or adopt an existing one.

    Prints `1 PID` (started now) or `0 PID` (adopted); exits 4 when an existing directory got
    no pid within `wait_s` (a start that died half-way), NO_SUCH_USER_EXIT when `run_as` has no
    account on the node. With secret variables, stdin carries their `export` lines: they go to
    a 0600 file in the job directory, never into a command line.
    """
    runner = runner_script(launch, kill_after_s=kill_after_s, run_as=run_as)
    ticks = max(1, math.ceil(wait_s * 10))
    owner = [resolve_owner_sh(run_as, node)] if run_as is not None else []
    owner_args = ' "$uid" "$gid" "$home"' if run_as is not None else ""
    secret = ['  (umask 077; cat > "$d/secret_env")'] if launch.secret_env else []
    return "\n".join(
        [
            "trap '' HUP",
            *owner,
            f"base={base.jobs_dir_expr(jobs_dir)}",
            'mkdir -p -- "$base" || exit 3',
            f'd="$base"/{launch.tag}',
            'if mkdir -m 700 -- "$d" 2>/dev/null; then',
            "  new=1",
            *secret,
            '  cat /proc/sys/kernel/random/boot_id > "$d/boot_id" 2>/dev/null',
            f'  setsid sh -c {shlex.quote(runner)} fleetdeck-runner "$d"{owner_args}'
            " < /dev/null > /dev/null 2>&1 &",
            "else",
            '  [ -d "$d" ] || exit 3',
            "  new=0",
            "fi",
            "i=0",
            'while [ ! -s "$d/pid" ]; do',
            f'  if [ "$i" -ge {ticks} ]; then echo "no pid in $d" >&2; exit 4; fi',
            "  sleep 0.1; i=$((i+1))",
            "done",
            'echo "$new $(cat "$d/pid")"',
        ]
    )


# Create the preempt file: as the job's owner when it runs as one (in their home, so a link
# they planted cannot make root write elsewhere), else in the job dir.
_NOTICE = ('if [ -s "$d/notice_to" ]; then read -r u g f < "$d/notice_to"; '
           'setpriv --reuid="$u" --regid="$g" --init-groups -- '
           """sh -c 'mkdir -p -- "${1%/*}" && : > "$1"' fd-notice "$f"; """
           'else : > "$d/preempt"; fi')


def stop_script(jobs_dir: str, tag: str, grace_s: float, *, notice: bool = False) -> str:
    """SIGTERM the job's process group, SIGKILL it after `grace_s`, wait for the exit code.
    `notice`: create the job's preempt file first (`$FLEETDECK_PREEMPT_FILE`)."""
    ticks = max(0, math.ceil(grace_s * 10))
    return "\n".join(
        [
            f'd={base.jobs_dir_expr(jobs_dir)}/{shlex.quote(tag)}',
            'pid=$(cat "$d/pid" 2>/dev/null)',
            '[ -n "$pid" ] || exit 0',
            '[ -e "$d/exit_code" ] && exit 0',
            'b=$(cat "$d/boot_id" 2>/dev/null)',
            '[ "$b" = "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)" ] || exit 0',
            _NOTICE if notice else ":",
            'kill -TERM -"$pid" 2>/dev/null && kill -CONT -"$pid" 2>/dev/null',
            "i=0",
            'while kill -0 -"$pid" 2>/dev/null; do',
            f'  if [ "$i" -ge {ticks} ]; then kill -KILL -"$pid" 2>/dev/null; break; fi',
            "  sleep 0.1; i=$((i+1))",
            "done",
            "j=0",
            'while [ ! -e "$d/exit_code" ] && [ "$j" -lt 50 ]; do sleep 0.1; j=$((j+1)); done',
        ]
    )


def _status_from(fields: list[str]) -> Status:
    _tag, _pid, ec, alive, st, en = fields
    started = float(st) if st.strip().isdigit() else None
    ended = float(en) if en.strip().isdigit() else None
    if ec.strip().lstrip("-").isdigit():
        return Status(RunState.EXITED, int(ec), started, ended, detail="exited")
    if alive == "1":
        return Status(RunState.RUNNING, None, started, None, detail="running")
    return Status(
        RunState.EXITED,
        None,
        started,
        ended,
        detail="the job's wrapper ended without recording an exit code "
        "(node rebooted or wrapper killed)",
    )


@dataclass
class ProcessExecutor(base.ShellLogs):
    """`Executor` for plain processes over SSH. See the module docstring for the layout."""

    jobs_dir: str = DEFAULT_JOBS_DIR
    kill_after_s: float = 10.0  # max runtime: SIGKILL this long after SIGTERM
    start_wait_s: float = 10.0
    command_timeout_s: float = 30.0
    poll_s: float = 0.5
    kind: base.ExecutorKind = field(default="process", init=False)

    def __post_init__(self) -> None:
        base.jobs_dir_expr(self.jobs_dir)  # validates

    def _dir(self, tag: str) -> str:
        return f"{base.jobs_dir_expr(self.jobs_dir)}/{shlex.quote(tag)}"

    async def start(self, launch: Launch, transport: Transport) -> Handle:
        run_as = job_identity(transport.node, engine_user()).run_as(launch.user)
        script = start_script(
            launch, self.jobs_dir, kill_after_s=self.kill_after_s, wait_s=self.start_wait_s,
            run_as=run_as, node=transport.node.name,
        )
        secrets = base.sh_exports(launch.secret_env).encode() + b"\n" if launch.secret_env else None
        what = f"start job {launch.tag}"
        res = await base.run_checked(transport, script, what, input=secrets,
                                     timeout=self.start_wait_s + self.command_timeout_s)
        return base.started_handle("process", res, transport, launch, what)

    async def status(self, handle: Handle, transport: Transport) -> Status:
        return (await self.status_many([handle], transport))[0]

    async def status_many(self, handles: Sequence[Handle],
                          transport: Transport) -> list[Status]:
        """Every job's directory described by one shell on the node."""
        if not handles:
            return []
        tags = [f"{h.job_id}-{h.attempt}" for h in handles]
        script = "\n".join([
            _DESCRIBE,
            f"base={base.jobs_dir_expr(self.jobs_dir)}",
            f'for t in {base.sh_words(tags)}; do d="$base/$t"; [ -d "$d" ] && describe "$d"; done',
            "exit 0",
        ])
        what = f"status of job {tags[0]}" if len(tags) == 1 else f"status of {len(tags)} jobs"
        res = await base.run_checked(transport, script, what, timeout=self.command_timeout_s)
        found = {}
        for line in res.text().splitlines():
            fields = line.split("\t")
            if len(fields) == 6:
                found[fields[0]] = _status_from(fields)
        return [found.get(tag) or Status(RunState.MISSING,
                                         detail=f"no directory for job {tag} on the node")
                for tag in tags]

    async def stop(self, handle: Handle, transport: Transport, *, grace_s: float,
                   notice: bool = False) -> None:
        tag = f"{handle.job_id}-{handle.attempt}"
        script = stop_script(self.jobs_dir, tag, grace_s, notice=notice)
        await base.run_checked(transport, script, f"stop job {tag}",
                               timeout=grace_s + self.command_timeout_s)

    def log_scripts(self, handle: Handle, tail: str) -> tuple[str, str, str]:
        tag = f"{handle.job_id}-{handle.attempt}"
        head = f'd={self._dir(tag)}\n[ -d "$d" ] || {{ echo "no job directory $d" >&2; exit 3; }}\n'
        once = head + f'[ -e "$d/output.log" ] || exit 0\nexec tail -n {tail} -- "$d/output.log"'
        # Follow until the wrapper ends (GNU tail --pid), or print once if it already has.
        follow = head + "\n".join(
            [
                'rp=$(cat "$d/runner_pid" 2>/dev/null)',
                'if [ -e "$d/exit_code" ] || [ -z "$rp" ] || ! kill -0 "$rp" 2>/dev/null; then',
                f'  [ -e "$d/output.log" ] || exit 0; exec tail -n {tail} -- "$d/output.log"',
                "fi",
                f'exec tail -n {tail} -F --pid="$rp" -s {self.poll_s:g} -- "$d/output.log"'
                " 2>/dev/null",
            ]
        )
        return once, follow, f"logs of job {tag}"

    async def discover(self, transport: Transport) -> list[Discovered]:
        script = "\n".join(
            [
                _DESCRIBE,
                f"base={base.jobs_dir_expr(self.jobs_dir)}",
                'for d in "$base"/*-*; do [ -d "$d" ] && describe "$d"; done',
                "exit 0",
            ]
        )
        res = await base.run_checked(transport, script, "discover process jobs",
                                     timeout=self.command_timeout_s)
        found = []
        for line in res.text().splitlines():
            fields = line.split("\t")
            if len(fields) != 6:
                continue
            key = base.parse_tag(fields[0])
            if key is None:
                continue
            handle = Handle("process", transport.node.name, fields[1], key[0], key[1])
            found.append(Discovered(handle, _status_from(fields)))
        return sorted(found, key=lambda d: (d.job_id, d.attempt))

    async def cleanup(self, handle: Handle, transport: Transport) -> None:
        status = await self.status(handle, transport)
        if status.state == RunState.RUNNING:
            raise ExecutorError(
                f"node {transport.node.name}: job {handle.job_id}-{handle.attempt} still runs; "
                "stop it before cleaning up"
            )
        tag = f"{handle.job_id}-{handle.attempt}"
        await base.run_checked(transport, f"rm -rf -- {self._dir(tag)}", f"clean up job {tag}",
                               timeout=self.command_timeout_s)

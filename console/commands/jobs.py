"""submit, jobs, stop, logs, explain, audit: thin clients of the engine."""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import Any

from collectors.errors import InputError
from collectors.validate import arg_int, arg_iso_time, read_text_file
from console.commands.common import (
    add_format,
    ask_engine,
    engine_or_store,
    loaded_config,
    plain,
    print_json,
    print_table,
    run_async,
    subcommand,
)
from console.engine.api.requests import (
    AuditQuery,
    ExplainRequest,
    JobsQuery,
    LogsRequest,
    StopRequest,
    SubmitRequest,
)
from console.engine.client import EngineClient
from scheduler.job_match import FIELDS, JobMatch, parse_match
from scheduler.jobspec import CLI_FLAGS, JobSpec
from scheduler.states import STATES

SOURCE = "command line"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subcommand(sub, "submit", "queue a job: fleetdeck submit [OPTIONS] -- COMMAND ARGS...")
    p.add_argument("-f", "--file", metavar="JOB.toml", help="read the job from a TOML file; "
                   "flags override its keys")
    p.add_argument("--name")
    p.add_argument("--user", help="submit as this user (default: you)")
    p.add_argument("--project")
    p.add_argument("--team")
    p.add_argument("--executor", help="docker | process | slurm | auto (default auto)")
    p.add_argument("--image", help="container image (docker executor)")
    p.add_argument("--gpus", help="GPUs: a whole number, or a fraction of one GPU (0.25)")
    p.add_argument("--gpu-model", action="append", dest="gpu_models", metavar="MODEL",
                   help="allowed GPU model (repeat for several)")
    p.add_argument("--min-gpu-mem", metavar="SIZE", help="minimum GPU memory, e.g. 40GiB")
    p.add_argument("--cpus", help="CPUs (may be fractional)")
    p.add_argument("--mem", metavar="SIZE", help="memory, e.g. 16GiB")
    p.add_argument("--label", action="append", dest="labels", metavar="K=V",
                   help="only nodes with this label (repeat for several)")
    p.add_argument("--pool")
    p.add_argument("--node")
    p.add_argument("--priority", help="higher runs first (integer)")
    p.add_argument("--class", dest="priority_class", metavar="NAME",
                   help="priority class ([[scheduler.priority_classes]]; default: the default)")
    p.add_argument("--max-runtime", metavar="DURATION", help="e.g. 2h; enables backfill")
    p.add_argument("--env", action="append", metavar="K=V", help="environment variable")
    p.add_argument("--secret-env", action="append", metavar="K=V",
                   help="environment variable shown only to you and admins (never in audit "
                        "rows, reports or logs)")
    p.add_argument("--workdir")
    p.add_argument("--retries", help="times to retry after a lost node or failed start")
    p.add_argument("--array", metavar="N", help="N tasks with ${FLEETDECK_ARRAY_INDEX}")
    p.add_argument("--kind", help="batch | notebook | service (idle rules differ)")
    p.add_argument("--protect", action="store_true", default=None,
                   help="exempt from idle stopping and preemption")
    p.add_argument("--notify", action="append", metavar="EVENT",
                   help="tell me of job.failed / job.succeeded (repeat; job. for both)")
    p.add_argument("--shell", action="store_true", default=None,
                   help="run COMMAND as one shell string")
    p.add_argument("--dry-run", action="store_true", help="validate and print, queue nothing")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    add_format(p)
    p.set_defaults(func=submit_cmd)

    p = subcommand(sub, "jobs", "list jobs")
    p.add_argument("--state", action="append", choices=STATES,
                   help="only jobs in this state (repeat for several)")
    p.add_argument("--user")
    p.add_argument("--match", metavar="TEXT",
                   help="as the console's filter: words every job must contain in some field, "
                        "or FIELD:word (id, name, user, project, team, state, node, pool, "
                        "reason); case-insensitive")
    p.add_argument("--limit", type=arg_int(1, 1_000_000), default=200)
    add_format(p)
    p.set_defaults(func=jobs_cmd)

    p = subcommand(sub, "stop", "stop a job (graceful, then forced)")
    p.add_argument("job", type=arg_int(1, 2**62), metavar="JOB")
    p.add_argument("--reason", default="", help="recorded in the audit trail")
    add_format(p)
    p.set_defaults(func=stop_cmd)

    p = subcommand(sub, "logs", "a job's output")
    p.add_argument("job", type=arg_int(1, 2**62), metavar="JOB")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    p.add_argument("--tail", type=arg_int(0, 10_000_000), metavar="N", help="only the last N lines")
    p.set_defaults(func=logs_cmd)

    p = subcommand(sub, "explain", "why a job waits, or where it runs")
    p.add_argument("job", type=arg_int(1, 2**62), metavar="JOB")
    add_format(p)
    p.set_defaults(func=explain_cmd)

    p = subcommand(sub, "audit", "the action log: who did what, why, when")
    p.add_argument("--since", metavar="TIME", type=arg_iso_time,
                   help="ISO time, e.g. 2026-11-01 or 2026-11-01T12:00")
    p.add_argument("--limit", type=arg_int(1, 1_000_000), default=200)
    add_format(p)
    p.set_defaults(func=audit_cmd)


def _pairs(flag: str, items: list[str] | None) -> dict[str, str] | None:
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(SOURCE, flag, "KEY=VALUE", got=item)
        out[key] = value
    return out


def spec_mapping(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The job as a mapping from a job file and flags, and the source to name in errors."""
    data: dict[str, Any] = {}
    source = SOURCE
    if args.file:
        text = read_text_file(Path(args.file), source="-f", what="job file")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise InputError(args.file, None, f"valid TOML ({e})") from None
        except ValueError:  # an integer beyond Python's digit limit
            raise InputError(args.file, None, "valid TOML (a number there is absurdly long)"
                             ) from None
        source = args.file
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    flags: dict[str, Any] = {
        "name": args.name, "user": args.user, "project": args.project, "team": args.team,
        "executor": args.executor, "image": args.image, "gpus": args.gpus,
        "gpu_models": args.gpu_models, "min_gpu_mem": args.min_gpu_mem,
        "cpus": args.cpus, "mem": args.mem,
        "labels": _pairs("--label", args.labels), "pool": args.pool, "node": args.node,
        "priority": args.priority, "max_runtime": args.max_runtime,
        "env": _pairs("--env", args.env), "secret_env": _pairs("--secret-env", args.secret_env),
        "workdir": args.workdir,
        "retries": args.retries, "array": args.array,
        "kind": args.kind, "protect": args.protect, "shell": args.shell,
        "notify": getattr(args, "notify", None),
        "class": args.priority_class,
    }
    if command:
        flags["command"] = " ".join(command) if (args.shell or data.get("shell")) else command
    for k, v in flags.items():
        if v is not None:
            data[k] = v
            source = SOURCE if source == SOURCE else f"{source} + flags"
    if "command" not in data:
        if args.file:
            raise InputError(source, "command", "a command (or one after -- on the command line)")
        raise InputError(source, "COMMAND", "a command after -- (or `command` in the job file)")
    return data, source


def submit_cmd(args: argparse.Namespace) -> int:
    data, source = spec_mapping(args)
    flags = CLI_FLAGS if source == SOURCE else None
    spec = JobSpec.from_mapping(data, source, flags=flags)  # validate before anything is sent
    if args.dry_run:
        print_json({"valid": True, "spec": spec.to_dict()})
        return 0
    loaded = loaded_config(args)
    ids = ask_engine(loaded, SubmitRequest(spec=spec.to_dict())).ids
    if args.format == "json":
        print_json(ids)
    else:
        shown = str(ids[0]) if len(ids) == 1 else f"{ids[0]}-{ids[-1]} ({len(ids)} tasks)"
        print(f"submitted job {shown}")
    return 0


JOB_COLUMNS = ["id", "name", "state", "user", "project", "gpus", "node", "gpu_indices",
               "executor", "exit_code", "reason"]


def jobs_cmd(args: argparse.Namespace) -> int:
    match = _match_flag(args.match)  # a bad field fails here, before any engine or store work
    loaded = loaded_config(args)
    states = args.state or []

    def local(store: Any) -> list[dict[str, Any]]:  # no engine: the store (DuckDB) itself
        from scheduler import journal

        return [r.to_json() for r in journal.list_jobs(
            store, states=states, user=args.user, limit=args.limit, newest_first=True,
            match=match)]

    rows = plain(engine_or_store(
        loaded, JobsQuery(states=states, user=args.user, limit=args.limit, match=args.match),
        local))
    if args.format == "json":
        print_json([_job_json(r) for r in rows])
    else:
        print_table(rows, JOB_COLUMNS)
    return 0


def _match_flag(text: str | None) -> JobMatch | None:
    if text is None:
        return None
    try:
        return parse_match(text)
    except ValueError:  # a FIELD:word whose field is not a job field
        raise InputError("--match", None, "words or FIELD:word with FIELD one of "
                         + ", ".join(FIELDS), got=text) from None


def _job_json(row: dict[str, Any]) -> dict[str, Any]:
    """A job row for `--format json`: the spec's environment, not the whole spec."""
    spec = row.get("spec") or {}
    out = {k: v for k, v in row.items() if k != "spec"}
    out["env"] = spec.get("env", {})
    out["secret_env"] = spec.get("secret_env", {})  # masked unless the caller may see it
    return out


def stop_cmd(args: argparse.Namespace) -> int:
    loaded = loaded_config(args)
    row = ask_engine(loaded, StopRequest(job=args.job, reason=args.reason))
    if args.format == "json":
        print_json({k: v for k, v in plain(row).items() if k != "spec"})
    else:
        print(f"job {row.id} {row.state}: {row.reason}")
    return 0


def logs_cmd(args: argparse.Namespace) -> int:
    loaded = loaded_config(args)

    async def stream() -> None:
        async with await EngineClient.connect(loaded.config.socket_path) as c:
            async for chunk in c.stream(LogsRequest(job=args.job, tail=args.tail,
                                                    follow=args.follow)):
                sys.stdout.write(chunk)
                sys.stdout.flush()

    run_async(stream())
    return 0


def explain_cmd(args: argparse.Namespace) -> int:
    loaded = loaded_config(args)
    info = plain(ask_engine(loaded, ExplainRequest(job=args.job)))
    if args.format == "json":
        print_json(info)
        return 0
    print(f"job {info['id']} ({info['name']}): {info['state']}")
    print(f"  {info['reason']}")
    if info.get("placement"):
        p = info["placement"]
        gpus = ",".join(str(i) for i in p["gpu_indices"]) or "-"
        print(f"  on {p['node']} GPUs {gpus} via {p['executor']}")
        if p.get("runs_as"):
            print(f"  runs as {p['runs_as']}")
    if info.get("priority_class"):
        c = info["priority_class"]
        print(f"  class {c['name']} (priority {c['priority']}"
              + ("" if c["preemptible"] else ", not preemptible")
              + f"), fair share {info.get('fair_share', 1.0):g}")
    for p in info.get("preemptions", []):
        print(f"  preemption: job {p['victim']} for job {p['beneficiary']} at {p['ts']}: "
              f"{p['reason']}")
    for e in info.get("burst", []):
        print(f"  burst: {e}")
    if info.get("idle"):
        from scheduler.policies.idle import verdict_numbers  # numpy: not for the other commands

        print(f"  idle: {info['idle']['summary']}")
        numbers = verdict_numbers(info["idle"])
        if numbers:
            print(f"        {numbers}")
    print("events:")
    print_table(info["events"], ["ts", "from_state", "to_state", "reason", "actor"])
    return 0


def audit_cmd(args: argparse.Namespace) -> int:
    from console.engine.services import list_actions

    loaded = loaded_config(args)
    rows = plain(engine_or_store(
        loaded, AuditQuery(since=args.since, limit=args.limit),
        lambda s: list_actions(s, since=args.since, limit=args.limit)))
    if args.format == "json":
        print_json(rows)
    else:
        print_table(rows, ["id", "ts", "actor", "action", "target_kind", "target", "reason"])
    return 0

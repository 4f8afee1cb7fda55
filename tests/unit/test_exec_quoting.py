"""The command lines executors build: user values stay data (quoted), never shell code.

Also the executors' pure parsers (Docker times and states, Slurm reports).
"""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.executors import Launch
from scheduler.executors.base import jobs_dir_expr, sh_exports
from scheduler.executors.docker import create_kwargs, parse_docker_time, status_of
from scheduler.executors.process import runner_script, start_script, stop_script
from scheduler.executors.slurm import (
    batch_script,
    sbatch_argv,
    status_from_report,
)
from scheduler.executors.slurm import (
    start_script as slurm_start_script,
)

HOSTILE = [
    '"; touch /tmp/pwned #',
    "'; touch /tmp/pwned; '",
    "$(touch /tmp/pwned)",
    "`touch /tmp/pwned`",
    "a\ntouch /tmp/pwned\n",
    "x && touch /tmp/pwned",
    "| touch /tmp/pwned",
    "$HOME ${IFS} * ?",
    "  spaces  ",
    "",
    "-n",
    "--",
    "\\\"'\\''",
    "unicode ☃ 日本語 é",
    ") ; touch /tmp/pwned ; (",
]

args = st.lists(st.text(alphabet=st.characters(exclude_characters="\0",
                                               exclude_categories=["Cs"])),
                min_size=0, max_size=6)


def make(argv: tuple[str, ...], **kw: object) -> Launch:
    base: dict[str, object] = {"job_id": 7, "attempt": 2, "name": HOSTILE[0], "user": HOSTILE[2],
                               "project": HOSTILE[3]}
    base.update(kw)
    return Launch(argv=argv, **base)  # type: ignore[arg-type]


def sh_tokens(line: str) -> list[str]:
    """Split a shell line the way sh does for quoting and operators (no expansions)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def find(tokens: list[str], seq: list[str]) -> int:
    """Index of the first occurrence of `seq` in `tokens`."""
    for i in range(len(tokens) - len(seq) + 1):
        if tokens[i:i + len(seq)] == seq:
            return i
    raise AssertionError(f"{seq} not in {tokens}")


def exec_argv_ok(runner: str, expected: list[str]) -> bool:
    """The runner's `( ... exec ARGV )` runs exactly `expected`, then closes the subshell."""
    tokens = sh_tokens(runner)
    start = tokens.index("exec") + 1
    return tokens[start:start + len(expected) + 1] == [*expected, ")"]


def exports(script: str, stop: str) -> dict[str, str]:
    """`export NAME=value` assignments before the first `stop` token, values unquoted."""
    tokens = sh_tokens(script)
    tokens = tokens[:tokens.index(stop)]
    out = {}
    for i, tok in enumerate(tokens[:-1]):
        if tok == "export":
            name, _, value = tokens[i + 1].partition("=")
            out[name] = value
    return out


# ---- Launch validation ---------------------------------------------------------------------

def test_launch_rejects_what_cannot_be_passed_safely() -> None:
    with pytest.raises(ValueError, match="NUL"):
        make(("echo", "a\0b"))
    with pytest.raises(ValueError, match="NUL"):
        make(("echo",), env={"X": "a\0"})
    with pytest.raises(ValueError, match="variable name"):
        make(("echo",), env={"X; touch /tmp/pwned": "1"})
    with pytest.raises(ValueError, match="variable name"):
        sh_exports({"A B": "1"})
    with pytest.raises(ValueError, match="exactly one"):
        make(("echo hi", "extra"), shell=True)
    with pytest.raises(ValueError, match="empty"):
        make(())


def test_shell_only_when_asked() -> None:
    assert make(("echo", "$(id)")).command == ("echo", "$(id)")
    assert make(("echo $(id)",), shell=True).command == ("sh", "-c", "echo $(id)")


# ---- process executor ----------------------------------------------------------------------

@given(args)
@settings(max_examples=200, deadline=None)
def test_process_runner_passes_any_argv_verbatim(extra: list[str]) -> None:
    launch = make(("prog", *extra), workdir="/tmp/x y")
    runner = runner_script(launch)
    assert exec_argv_ok(runner, ["setsid", "--", "prog", *extra])
    for value in extra:
        assert shlex.quote(value) in runner


@pytest.mark.parametrize("value", HOSTILE)
def test_process_scripts_quote_every_user_value(value: str) -> None:
    launch = make(("prog", value), env={"HOSTILE": value}, workdir=value or "/w",
                  gpu_indices=(0, 3), max_runtime_s=60)
    runner = runner_script(launch, kill_after_s=5)
    assert exec_argv_ok(runner, ["setsid", "--", "timeout", "-k", "5", "60", "prog", value])
    env = exports(runner, "exec")
    assert env["HOSTILE"] == value
    assert env["FLEETDECK_JOB_NAME"] == HOSTILE[0]
    assert env["CUDA_VISIBLE_DEVICES"] == "0,3"
    assert env["FLEETDECK_JOB_ID"] == "7" and env["FLEETDECK_ATTEMPT"] == "2"
    tokens = sh_tokens(runner)
    i = tokens.index("(")
    assert tokens[i:i + 5] == ["(", "cd", "--", value or "/w", "||"]
    # The start script embeds the runner as one quoted word: `sh -c RUNNER name "$d"`.
    start = start_script(launch, "/tmp/jobs dir", kill_after_s=5)
    tokens = sh_tokens(start)
    i = find(tokens, ["setsid", "sh", "-c"])
    assert tokens[i + 3:i + 6] == [runner, "fleetdeck-runner", "$d"]
    assert "base='/tmp/jobs dir'" in start
    assert 'd="$base"/7-2' in start


def test_spec_env_cannot_override_fleetdeck_variables() -> None:
    env = exports(runner_script(make(("x",), env={"FLEETDECK_JOB_ID": "99", "A": "1"})), "exec")
    assert env["FLEETDECK_JOB_ID"] == "7" and env["A"] == "1"
    assert env["CUDA_VISIBLE_DEVICES"] == ""  # no GPUs held: none visible


def test_process_stop_and_dirs() -> None:
    assert "d='/srv/fd jobs'/7-2" in stop_script("/srv/fd jobs", "7-2", 2.5)
    assert "-ge 25 ]" in stop_script("/srv/fd jobs", "7-2", 2.5)
    assert jobs_dir_expr("~/.fleetdeck/jobs") == '"$HOME"/.fleetdeck/jobs'
    assert jobs_dir_expr("~/a b/$(id)") == "\"$HOME\"/'a b/$(id)'"
    with pytest.raises(ValueError):
        jobs_dir_expr("relative/dir")


# ---- docker executor -----------------------------------------------------------------------

@pytest.mark.parametrize("value", HOSTILE)
def test_docker_command_is_a_list_never_a_shell_string(value: str) -> None:
    kw = create_kwargs(make(("prog", value), image="img:1", env={"V": value}), gpu_runtime=False)
    assert kw["command"] == ["prog", value]
    assert kw["name"] == "fleetdeck-7-2"
    assert kw["environment"]["V"] == value
    assert kw["labels"]["fleetdeck.name"] == HOSTILE[0]
    assert kw["labels"]["fleetdeck.user"] == HOSTILE[2]
    shell = create_kwargs(make((value,), shell=True, image="img"), gpu_runtime=False)
    assert shell["command"] == ["sh", "-c", value]


def test_docker_gpus_limits_and_labels() -> None:
    launch = make(("x",), image="img", gpu_indices=(1, 3), cpu_milli=2500, mem_bytes=2**30,
                  max_runtime_s=90)
    with_runtime = create_kwargs(launch, gpu_runtime=True)
    [req] = with_runtime["device_requests"]
    assert (req["Driver"], req["DeviceIDs"], req["Capabilities"]) == ("nvidia", ["1", "3"],
                                                                     [["gpu"]])
    assert with_runtime["labels"]["fleetdeck.gpu_mode"] == "device_request"
    assert "NVIDIA_VISIBLE_DEVICES" not in with_runtime["environment"]
    env_only = create_kwargs(launch, gpu_runtime=False)
    assert "device_requests" not in env_only
    assert env_only["environment"]["NVIDIA_VISIBLE_DEVICES"] == "1,3"
    assert env_only["labels"]["fleetdeck.gpu_mode"] == "env"
    assert env_only["labels"]["fleetdeck.gpus"] == "1,3"
    assert env_only["labels"]["fleetdeck.max_runtime_s"] == "90"
    assert env_only["nano_cpus"] == 2_500_000_000 and env_only["mem_limit"] == 2**30
    none = create_kwargs(make(("x",), image="img"), gpu_runtime=True)
    assert "device_requests" not in none and none["labels"]["fleetdeck.gpu_mode"] == "none"
    with pytest.raises(ValueError, match="image"):
        create_kwargs(make(("x",)), gpu_runtime=False)


def test_docker_times_and_states() -> None:
    assert parse_docker_time("1970-01-01T00:00:01.500000000Z") == 1.5
    assert parse_docker_time("1970-01-01T01:00:02+01:00") == 2.0
    assert parse_docker_time("0001-01-01T00:00:00Z") is None
    assert parse_docker_time("garbage") is None
    running = status_of({"State": {"Status": "running", "StartedAt": "1970-01-01T00:00:10Z"},
                         "Config": {"Labels": {"fleetdeck.max_runtime_s": "5"}}})
    assert (running.state, running.started_at, running.deadline_at) == ("running", 10.0, 15.0)
    oom = status_of({"State": {"Status": "exited", "ExitCode": 137, "OOMKilled": True,
                               "StartedAt": "1970-01-01T00:00:10Z",
                               "FinishedAt": "1970-01-01T00:00:12Z"}})
    assert (oom.state, oom.exit_code, oom.detail, oom.ended_at) == ("exited", 137, "oom-killed",
                                                                   12.0)
    assert status_of({"State": {"Status": "created"}}).state == "pending"


# ---- slurm executor ------------------------------------------------------------------------

@given(args)
@settings(max_examples=200, deadline=None)
def test_slurm_batch_script_passes_any_argv_verbatim(extra: list[str]) -> None:
    tokens = sh_tokens(batch_script(make(("prog", *extra))))
    i = tokens.index("prog")
    assert tokens[i:i + len(extra) + 3] == ["prog", *extra, "<", "/dev/null"]


@pytest.mark.parametrize("value", HOSTILE)
def test_slurm_batch_script_and_sbatch_argv(value: str) -> None:
    launch = make(("prog", value), env={"V": value}, gpu_count=2, cpu_milli=1500,
                  mem_bytes=3 * 2**30 + 1, max_runtime_s=61, workdir=value or "/w",
                  partition=value or "p")
    script = batch_script(launch)
    tokens = sh_tokens(script)
    i = tokens.index("prog")
    assert tokens[i:i + 4] == ["prog", value, "<", "/dev/null"]
    assert exports(script, "prog")["V"] == value
    argv = sbatch_argv(launch)
    assert argv[:3] == ["sbatch", "--parsable", "--export=ALL"]
    assert "--job-name=fd-7-2" in argv and "--comment=fleetdeck:7:2" in argv
    assert {"--cpus-per-task=2", "--mem=3073M", "--time=2", "--gres=gpu:2"} <= set(argv)
    assert f"--partition={value or 'p'}" in argv and f"--chdir={value or '/w'}" in argv
    # In the start script every sbatch option is one quoted word.
    start = slurm_start_script(launch, "/srv/jobs")
    tokens = sh_tokens(start)
    i = tokens.index("sbatch")
    assert tokens[i:i + len(argv)] == argv
    assert tokens[i + len(argv)] == "--output=$d/slurm-%j.out"
    assert "name=fd-7-2" in start


def test_slurm_argv_defaults() -> None:
    argv = sbatch_argv(make(("x",)), partition="gpu", account="acme")
    assert "--partition=gpu" in argv and "--account=acme" in argv
    assert not any(a.startswith(("--gres", "--mem=", "--time")) for a in argv)
    assert "--cpus-per-task=1" in argv


def test_slurm_status_reports() -> None:
    assert status_from_report("Q|PENDING|N/A|N/A").state == "pending"
    run = status_from_report("Q|RUNNING|2024-05-01T10:00:00|2024-05-01T11:00:00")
    assert run.state == "running" and run.started_at is not None
    done = status_from_report("Q|COMPLETED|2024-05-01T10:00:00|2024-05-01T10:05:00\nF|0|1|2")
    assert (done.state, done.exit_code, done.detail) == ("exited", 0, "COMPLETED")
    assert done.ended_at is not None and done.started_at is not None
    assert done.ended_at - done.started_at == 300
    killed = status_from_report("Q|CANCELLED|a|b\nF|||\nC|JobId=5 JobState=CANCELLED "
                                "ExitCode=0:9 RunTime=00:00:03")
    assert (killed.exit_code, killed.detail) == (137, "CANCELLED")
    failed = status_from_report("Q|FAILED|a|b\nF|||\nC|JobId=5 ExitCode=3:0")
    assert failed.exit_code == 3
    acct = status_from_report("Q|\nF|||\nA|TIMEOUT|0:15|2024-05-01T10:00:00|2024-05-01T10:01:00")
    assert (acct.state, acct.exit_code, acct.detail) == ("exited", 143, "TIMEOUT")
    wrapper_only = status_from_report("Q|\nF|4|100|160")
    assert (wrapper_only.exit_code, wrapper_only.started_at, wrapper_only.ended_at) == (
        4, 100.0, 160.0)
    assert status_from_report("Q|\nF|||").state == "missing"

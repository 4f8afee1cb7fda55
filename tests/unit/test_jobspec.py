"""Job specs: parsing job files and CLI values, one-line errors, arrays, JSON round trip."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.errors import InputError
from scheduler.jobspec import (
    CLI_FLAGS,
    JobSpec,
    expand_array,
    parse_bytes,
    parse_duration,
)
from scheduler.models import ResourceRequest

GIB = 1 << 30

JOB_TOML = """
name = "train-resnet"
command = ["python", "train.py", "--shard", "${FLEETDECK_ARRAY_INDEX}"]
executor = "docker"
image = "nvcr.io/nvidia/pytorch:24.05-py3"
gpus = 2
gpu_models = ["A100", "H100"]
min_gpu_mem = "40GiB"
cpus = 16
mem = "128GiB"
pool = "onprem"
priority = 5
max_runtime = "12h"
workdir = "/data/runs"
retries = 2
array = 4
kind = "batch"
protect = true

[labels]
ib = "true"

[env]
WANDB_MODE = "offline"
OMP_NUM_THREADS = 8
"""


def test_job_file() -> None:
    spec = JobSpec.from_toml(JOB_TOML, "train.toml")
    assert spec.name == "train-resnet"
    assert spec.command == ("python", "train.py", "--shard", "${FLEETDECK_ARRAY_INDEX}")
    assert (spec.executor, spec.image) == ("docker", "nvcr.io/nvidia/pytorch:24.05-py3")
    assert spec.gpus == 2 and spec.gpu_models == frozenset({"A100", "H100"})
    assert spec.min_gpu_mem_bytes == 40 * GIB and spec.mem_bytes == 128 * GIB
    assert (spec.cpus, spec.pool, spec.priority, spec.max_runtime_s) == (16, "onprem", 5, 43200)
    assert (spec.workdir, spec.retries, spec.array, spec.protect) == ("/data/runs", 2, 4, True)
    assert spec.labels == {"ib": "true"}
    assert spec.env == {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "8"}
    assert spec.user == spec.project == spec.team == ""
    assert spec.to_request() == ResourceRequest(
        cpu_milli=16_000,
        mem_bytes=128 * GIB,
        gpu_count=2,
        gpu_milli=1000,
        gpu_models=frozenset({"A100", "H100"}),
        min_gpu_mem_bytes=40 * GIB,
        pool="onprem",
        labels={"ib": "true"},
    )


def test_cli_values_as_strings() -> None:
    values: dict[str, Any] = {
        "command": ["bash", "-c", "nvidia-smi"],
        "gpus": "0.25",
        "gpu_models": "A100,L40S",
        "cpus": "2",
        "mem": "512M",
        "max_runtime": "1h30m",
        "env": ["A=1", "URL=http://x/?a=b"],
        "labels": ["zone=a", "ib=true"],
        "priority": "-3",
        "array": "2",
        "protect": False,
        "image": None,  # an unset flag
        "node": None,
    }
    spec = JobSpec.from_mapping(values, "command line", flags=CLI_FLAGS)
    assert spec.name == "bash"
    assert spec.gpus == 0.25 and spec.gpu_milli == 250
    assert spec.gpu_models == frozenset({"A100", "L40S"})
    assert (spec.cpus, spec.mem_bytes, spec.max_runtime_s) == (2, 512 << 20, 5400)
    assert spec.env == {"A": "1", "URL": "http://x/?a=b"}
    assert spec.labels == {"zone": "a", "ib": "true"}
    assert (spec.priority, spec.array, spec.image, spec.node) == (-3, 2, None, None)
    req = spec.to_request()
    assert (req.gpu_count, req.gpu_milli, req.cpu_milli, req.fractional) == (1, 250, 2000, True)


def test_shell_command_and_string_command() -> None:
    shell = JobSpec.from_mapping({"command": "make -j8 | tee log", "shell": True}, "j.toml")
    assert shell.command == ("make -j8 | tee log",) and shell.name == "make"
    joined = JobSpec.from_mapping({"command": ["echo", "$HOME"], "shell": "true"}, "j.toml")
    assert joined.command == ("echo $HOME",)
    split = JobSpec.from_mapping({"command": "python 'my script.py' -v"}, "j.toml")
    assert split.command == ("python", "my script.py", "-v")
    assert JobSpec.from_mapping({"command": ["./bin/run.sh"]}, "j.toml").name == "run.sh"


def test_with_defaults_fills_only_empty_fields() -> None:
    spec = JobSpec.from_mapping({"command": ["x"], "project": "vision"}, "j.toml")
    filled = spec.with_defaults(user="ann", project="nlp", team="cv")
    assert (filled.user, filled.project, filled.team) == ("ann", "vision", "cv")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16GiB", 16 * GIB),
        ("16Gi", 16 * GIB),
        ("16G", 16 * GIB),
        ("16gb", 16_000_000_000),
        ("512M", 512 << 20),
        ("1.5GiB", 3 * GIB // 2),
        ("100", 100),
        (2048, 2048),
        ("2 TiB", 2 << 40),
        ("1.5", None),
        ("16 gigs", None),
        (-1, None),
        (True, None),
        (1.5, None),
    ],
)
def test_parse_bytes(text: object, expected: int | None) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", 7200.0),
        ("30m", 1800.0),
        ("1h30m", 5400.0),
        ("90s", 90.0),
        ("1d", 86400.0),
        ("2:00:00", 7200.0),
        ("05:30", 330.0),
        ("3600", 3600.0),
        (120, 120.0),
        (0.5, 0.5),
        ("0", None),
        (-5, None),
        ("2 hours", None),
        ("h", None),
        (True, None),
    ],
)
def test_parse_duration(text: object, expected: float | None) -> None:
    assert parse_duration(text) == expected


BASE: dict[str, Any] = {"command": ["python", "train.py"]}

BAD_FILE = [
    ({"gpus": 1.5}, "job.toml: gpus: expected 0, a whole number of GPUs, or a fraction of one "
     "GPU (e.g. 0.25), got 1.5"),
    ({"gpus": -1}, "job.toml: gpus: expected 0, a whole number of GPUs, or a fraction of one "
     "GPU (e.g. 0.25), got -1"),
    ({"gpu": 1}, "job.toml: gpu: expected a job key (did you mean gpus?)"),
    ({"mem": "16 gigs"}, 'job.toml: mem: expected a size like "16GiB", "512M" or a number of '
     'bytes, got "16 gigs"'),
    ({"max_runtime": "2 hours"}, 'job.toml: max_runtime: expected a duration like "2h", "30m", '
     '"1h30m", "2:00:00" or seconds > 0 (at most ten years), got "2 hours"'),
    ({"executor": "docker"}, 'job.toml: image: expected an image name (executor "docker" runs '
     "in a container)"),
    ({"executor": "process", "image": "ubuntu"}, 'job.toml: image: expected no image with '
     'executor "process" (use docker or auto), got "ubuntu"'),
    ({"executor": "k8s"}, 'job.toml: executor: expected one of docker, process, slurm, auto, '
     'got "k8s"'),
    ({"gpu_models": ["A100"]}, 'job.toml: gpu_models: expected only with gpus > 0, got an array'),
    ({"array": 0}, "job.toml: array: expected an integer 1..100000, got 0"),
    ({"retries": 1.5}, "job.toml: retries: expected an integer 0..100, got 1.5"),
    ({"cpus": 0}, "job.toml: cpus: expected a number of CPUs > 0 (e.g. 4 or 0.5), got 0"),
    ({"env": {"FLEETDECK_ARRAY_INDEX": "3"}}, "job.toml: env: expected a variable not starting "
     'with FLEETDECK_ (reserved), got "FLEETDECK_ARRAY_INDEX"'),
    ({"env": {"PATH": ["a"]}}, "job.toml: env.PATH: expected a string value, got an array"),
    ({"labels": "zone"}, 'job.toml: labels: expected a label KEY=VALUE (KEY=VALUE), got "zone"'),
    ({"workdir": "runs"}, 'job.toml: workdir: expected an absolute path (or one starting with '
     '~), got "runs"'),
    ({"kind": "cron"}, 'job.toml: kind: expected one of batch, notebook, service, got "cron"'),
    ({"name": "my job"}, "job.toml: name: expected a name of letters, digits, '.', '_', '-' "
     '(max 64), got "my job"'),
    ({"protect": "maybe"}, 'job.toml: protect: expected true or false, got "maybe"'),
    ({"command": []}, "job.toml: command: expected a command: a list of strings or one string, "
     "got an array"),
    ({"command": "python 'x"}, "job.toml: command: expected a command line with balanced "
     """quotes, got "python 'x\""""),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "message"), BAD_FILE)
def test_bad_job_file_values(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as err:
        JobSpec.from_mapping({**BASE, **extra}, "job.toml")
    assert str(err.value) == message
    assert "\n" not in str(err.value)


BAD_FLAGS = [
    ({"gpus": "1.5"}, 'command line: --gpus: expected 0, a whole number of GPUs, or a fraction '
     'of one GPU (e.g. 0.25), got "1.5"'),
    ({"gpus": "two"}, 'command line: --gpus: expected 0, a whole number of GPUs, or a fraction '
     'of one GPU (e.g. 0.25), got "two"'),
    ({"mem": "lots"}, 'command line: --mem: expected a size like "16GiB", "512M" or a number '
     'of bytes, got "lots"'),
    ({"gpu_models": "A100"}, 'command line: --gpu-model: expected only with --gpus > 0, '
     'got "A100"'),
    ({"labels": ["zone"]}, 'command line: --label: expected a label KEY=VALUE (KEY=VALUE), '
     'got "zone"'),
    ({"env": ["1X=2"]}, 'command line: --env: expected an environment variable with a valid '
     'KEY, got "1X"'),
    ({"max_runtime": "soon"}, 'command line: --max-runtime: expected a duration like "2h", '
     '"30m", "1h30m", "2:00:00" or seconds > 0 (at most ten years), got "soon"'),
    ({"priority": "high"}, 'command line: --priority: expected an integer -1000000..1000000, '
     'got "high"'),
    ({"min_gpu_mem": "80GiB"}, 'command line: --min-gpu-mem: expected only with --gpus > 0, '
     'got "80GiB"'),
    ({"command": None}, "command line: COMMAND: expected a command to run"),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "message"), BAD_FLAGS)
def test_bad_cli_values_name_the_flag(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as err:
        JobSpec.from_mapping({**BASE, **extra}, "command line", flags=CLI_FLAGS)
    assert str(err.value) == message


def test_bad_toml_syntax() -> None:
    with pytest.raises(InputError) as err:
        JobSpec.from_toml('command = ["x"]\ngpus = = 2\n', "job.toml")
    assert str(err.value).startswith("job.toml: expected valid TOML (")
    assert "line 2" in str(err.value)


def test_array_expansion() -> None:
    spec = JobSpec.from_mapping(
        {
            "command": ["python", "sweep.py", "--seed=${FLEETDECK_ARRAY_INDEX}"],
            "array": 3,
            "env": {"A": "x"},
        },
        "sweep.toml",
    )
    tasks = expand_array(spec)
    assert [t.index for t in tasks] == [0, 1, 2]
    assert [t.name for t in tasks] == ["python[0]", "python[1]", "python[2]"]
    assert tasks[2].command == ("python", "sweep.py", "--seed=2")
    assert tasks[2].env == {"A": "x", "FLEETDECK_ARRAY_INDEX": "2", "FLEETDECK_ARRAY_COUNT": "3"}
    assert spec.command[2] == "--seed=${FLEETDECK_ARRAY_INDEX}"  # the spec is unchanged
    single = expand_array(JobSpec.from_mapping({"command": "echo hi"}, "j.toml"))
    assert len(single) == 1 and single[0].name == "echo"
    assert single[0].env["FLEETDECK_ARRAY_INDEX"] == "0"


def test_shell_array_substitutes_the_shell_string() -> None:
    spec = JobSpec.from_mapping(
        {"command": "run --part ${FLEETDECK_ARRAY_INDEX} > out.${FLEETDECK_ARRAY_INDEX}",
         "shell": True, "array": 2},
        "j.toml",
    )  # fmt: skip
    assert expand_array(spec)[1].command == ("run --part 1 > out.1",)


def test_round_trip_through_json() -> None:
    for spec in (
        JobSpec.from_toml(JOB_TOML, "train.toml").with_defaults(user="ann", project="cv"),
        JobSpec.from_mapping({"command": "echo hi"}, "j.toml"),
        JobSpec.from_mapping({"command": ["x"], "gpus": 0.5, "max_runtime": 90}, "j.toml"),
    ):
        data = json.loads(json.dumps(spec.to_dict()))
        assert JobSpec.from_dict(data) == spec


def test_from_dict_is_validated() -> None:
    data = JobSpec.from_mapping({"command": ["x"]}, "j.toml").to_dict()
    with pytest.raises(InputError) as err:
        JobSpec.from_dict({**data, "mem_bytes": "lots"}, "job 17")
    assert str(err.value).startswith('job 17: mem_bytes: expected a size like "16GiB"')
    with pytest.raises(InputError):
        JobSpec.from_dict({**data, "colour": "red"}, "job 17")


NO_NUL = st.characters(exclude_characters="\x00")  # argv and env cannot hold NUL
gpu_amounts = st.one_of(
    st.just(0.0),
    st.integers(1, 64).map(float),
    st.integers(1, 999).map(lambda m: m / 1000),
)


@settings(max_examples=200, deadline=None)
@given(
    gpus=gpu_amounts,
    cpus=st.integers(1, 64_000).map(lambda m: m / 1000),
    mem=st.integers(0, 1 << 42),
    runtime=st.none() | st.floats(1, 1e7),
    priority=st.integers(-1000, 1000),
    env=st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True).filter(
        lambda k: not k.startswith("FLEETDECK_")), st.text(NO_NUL, max_size=8), max_size=3),
    command=st.lists(st.text(NO_NUL, min_size=1, max_size=10), min_size=1, max_size=4),
)  # fmt: skip
def test_round_trip_property(
    gpus: float,
    cpus: float,
    mem: int,
    runtime: float | None,
    priority: int,
    env: dict[str, str],
    command: list[str],
) -> None:
    data: dict[str, Any] = {"command": command, "gpus": gpus, "cpus": cpus, "mem": mem,
                            "priority": priority, "env": env, "max_runtime": runtime}  # fmt: skip
    if gpus:
        data["gpu_models"] = ["A100"]
    spec = JobSpec.from_mapping(data, "j.toml")
    assert JobSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    req = spec.to_request()
    assert req.total_gpu_milli == round(gpus * 1000)
    assert req.fractional == (0 < gpus < 1)


def test_shell_job_default_name_is_its_program() -> None:
    """A shell job is named for the program it runs, not the shell word it starts with."""
    def name(line: str) -> str:
        return JobSpec.from_mapping({"command": line, "shell": True}, "t").name

    assert name("for i in 1 2; do python train.py; done") == "python"
    assert name("while true; do nvidia-smi; sleep 1; done") == "nvidia-smi"
    assert name("FOO=1 ./run.sh --fast") == "run.sh"
    assert name("echo hi") == "echo"

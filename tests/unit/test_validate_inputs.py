"""Every malformed input of issue #17: one line naming the flag or file and key, exit 2; a
corrupt store: one line, exit 1. Run in-process through the real `fleetdeck` entry point."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from collectors.errors import InputError
from collectors.store import Store
from collectors.validate import read_text_file
from console.config import load
from tests.helpers import run_main

BIG = "9" * 5000
HUGE_MEM = "1" + "0" * 400 + "G"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("FLEETDECK_CONFIG", raising=False)
    for name in list(os.environ):
        if name.startswith("FLEETDECK__"):
            monkeypatch.delenv(name)
    yield


def one_line(rc: int, err: str, code: int = 2) -> str:
    assert rc == code, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert len(lines[0]) < 600, lines[0]
    return lines[0]


SUBMIT_FLAGS = [
    (["--gpus", "inf"], "--gpus"),
    (["--gpus", "1e309"], "--gpus"),
    (["--gpus", "nan"], "--gpus"),
    (["--mem", HUGE_MEM], "--mem"),
    (["--mem", BIG], "--mem"),
    (["--priority", "nan"], "--priority"),
    (["--priority", BIG], "--priority"),
    (["--retries", "inf"], "--retries"),
    (["--array", "1e9"], "--array"),
    (["--cpus", "inf"], "--cpus"),
    (["--max-runtime", "1e309"], "--max-runtime"),
    (["--max-runtime", BIG + "h"], "--max-runtime"),
    (["--name", "a\nb"], "--name"),
    (["--name", "x" * 10_000_000], "--name"),
    (["--env", "A=" + "x" * 200_000], "--env"),
]


@pytest.mark.parametrize(("flags", "key"), SUBMIT_FLAGS, ids=[f[1] for f in SUBMIT_FLAGS])
@pytest.mark.parametrize("dry_run", [True, False])
def test_submit_flags(flags: list[str], key: str, dry_run: bool) -> None:
    rc, _, err = run_main("submit", *(["--dry-run"] if dry_run else []), *flags, "--", "true")
    line = one_line(rc, err)
    assert line.startswith(f"command line: {key}: expected "), line


@pytest.mark.parametrize("arg", ["a\x00b", "x" * 140_000])
def test_submit_command_argument_nul_or_huge(arg: str) -> None:
    line = one_line(*run_main("submit", "--dry-run", "--", "echo", arg)[::2])
    assert "COMMAND: expected" in line


JOB_FILES = [
    ("gpus = inf", "gpus"), ("gpus = 1e309", "gpus"), ("array = inf", "array"),
    ("priority = inf", "priority"), ("priority = nan", "priority"), ("retries = nan", "retries"),
    (f'mem = "{HUGE_MEM}"', "mem"), (f'mem = "{BIG}"', "mem"), ("cpus = nan", "cpus"),
    ('labels = { a = nan }', "labels.a"), ('command = "echo \\u0000"', "command"),
]


@pytest.mark.parametrize(("line", "key"), JOB_FILES, ids=[j[0][:20] for j in JOB_FILES])
def test_job_file_values(tmp_path: Path, line: str, key: str) -> None:
    job = tmp_path / "job.toml"
    job.write_text(("" if line.startswith("command") else 'command = "true"\n') + line + "\n")
    msg = one_line(*run_main("submit", "--dry-run", "-f", job)[::2])
    assert msg.startswith(f"{job}: {key}: expected "), msg


def test_job_file_digit_flood(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text(f'command = "true"\nmem = {BIG}\n')
    assert one_line(*run_main("submit", "--dry-run", "-f", job)[::2]).startswith(f"{job}: ")


def test_job_file_not_a_text_file(tmp_path: Path) -> None:
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00\x01" * 50)
    unreadable = tmp_path / "secret.toml"
    unreadable.write_text('command = "true"\n')
    unreadable.chmod(0)
    cases = [(tmp_path, "not a directory"), (binary, "binary"), (tmp_path / "no.toml", "not found")]
    if os.geteuid() != 0:  # root reads anything
        cases.append((unreadable, "Permission denied"))
    for path, why in cases:
        line = one_line(*run_main("submit", "--dry-run", "-f", path)[::2])
        assert line.startswith(f"-f {path}: expected "), line
        assert why in line


def test_read_text_file_refuses_unreadable(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="a regular job file"):
        read_text_file(fifo, source="-f", what="job file")


@pytest.mark.parametrize("command", [["jobs"], ["audit"]])
def test_limit_must_be_positive(command: list[str]) -> None:
    line = one_line(*run_main(*command, "--limit", "-1")[::2])
    assert "--limit: expected an integer 1..1000000" in line


@pytest.mark.parametrize("days", ["nan", "1e308", "inf", "-1"])
def test_simulate_what_if_days(days: str) -> None:
    line = one_line(*run_main("simulate", "--what-if", "+1 A100", "--days", days)[::2])
    assert "--days: expected a number > 0" in line


@pytest.mark.parametrize(("flag", "value"), [("--ratio", "inf"), ("--ratio", "nan"),
                                             ("--ratio", "1e9"), ("--seeds", "0-100000000"),
                                             ("--seeds", BIG), ("--time-scale", "inf")])
def test_simulate_bounded_work(tmp_path: Path, flag: str, value: str) -> None:
    nodes, jobs = tmp_path / "n.csv", tmp_path / "j.csv"
    nodes.write_text("x\n")
    jobs.write_text("x\n")
    line = one_line(*run_main("simulate", "--nodes", nodes, "--jobs", jobs, flag, value)[::2])
    assert flag in line


def test_report_output_is_a_directory(tmp_path: Path) -> None:
    line = one_line(*run_main("report", "chargeback", "-o", tmp_path)[::2])
    assert line.startswith("-o: expected a file path, not a directory"), line


@pytest.mark.parametrize(("flag", "value"), [("--from", ""), ("--from", "garbage"),
                                             ("--from", "99999999999y"), ("--to", "9999-12"),
                                             ("--ceiling", "nan"), ("--months", BIG)])
def test_report_flags(flag: str, value: str) -> None:
    line = one_line(*run_main("report", "chargeback", flag, value)[::2])
    assert f"{flag}: expected" in line


@pytest.mark.parametrize("since", ["garbage", "", "2026-13-45"])
def test_audit_since(since: str) -> None:
    line = one_line(*run_main("audit", "--since", since)[::2])
    assert "--since: expected an ISO time" in line


def test_bad_store_path(tmp_path: Path) -> None:
    afile = tmp_path / "f"
    afile.write_text("")
    for path in (tmp_path, afile / "x.duckdb"):
        line = one_line(*run_main("--store", path, "jobs")[::2])
        assert line.startswith("--store: expected "), line


CONFIGS = [
    ("[collect]\ninterval_s = nan\n", "collect.interval_s: expected a finite number"),
    ("[collect]\ninterval_s = inf\n", "collect.interval_s: expected a finite number"),
    (f"[collect]\ninterval_s = {BIG}\n", "expected valid TOML"),
    ("[collect]\nraw_retention_s = inf\n", "collect.raw_retention_s: expected a finite"),
    ("[scheduler]\ncycle_s = nan\n", "scheduler.cycle_s: expected a finite"),
    ('[scheduler]\npolicy = "nonexistent"\n', 'scheduler.policy: expected one of "fleetdeck"'),
    ('[[users]]\nname = "bob"\ngpu_quota = nan\n', "users[0].gpu_quota: expected a finite"),
    ("[collect]\nmax_concurrent_connects = 12345678901234567890\n",
     "collect.max_concurrent_connects: expected an integer 1-4096"),
    (f'[[nodes]]\nname = "{"n" * 1_000_000}"\n', "nodes[0].name: expected a name of"),
    ('[[nodes]]\nname = "a\\nb"\n', "nodes[0].name: expected a name of"),
    ('[store]\npath = "a\\u0000b"\n', "store.path: expected text without NUL"),
]


@pytest.mark.parametrize(("text", "message"), CONFIGS, ids=[c[1][:30] for c in CONFIGS])
def test_config_values(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    line = one_line(*run_main("--config", cfg, "config", "check")[::2])
    assert line.startswith(f"{cfg}: "), line
    assert message in line


def test_env_override_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETDECK__COLLECT__INTERVAL_S", "nan")
    line = one_line(*run_main("config", "check")[::2])
    assert line.startswith("FLEETDECK__COLLECT__INTERVAL_S: collect.interval_s: expected"), line


def test_serve_refuses_what_check_refuses(tmp_path: Path) -> None:
    """`serve` builds the config with the same `load`, so `config check` catches it first."""
    cfg = tmp_path / "config.toml"
    cfg.write_text('[scheduler]\npolicy = "nonexistent"\n')
    with pytest.raises(InputError, match=r"scheduler\.policy"):
        load(str(cfg))
    assert one_line(*run_main("--config", cfg, "serve")[::2]).startswith(f"{cfg}: ")


@pytest.mark.parametrize("version", ["abc", "", "-1", "99999999999"])
@pytest.mark.parametrize("command", [["db", "info"], ["jobs"], ["audit"]])
def test_store_schema_version_corrupt(tmp_path: Path, version: str, command: list[str]) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path):
        pass
    con = duckdb.connect(str(path))
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [version])
    con.close()
    line = one_line(*run_main("--store", path, *command)[::2], code=1)
    assert str(path) in line


@pytest.mark.parametrize("command", [["db", "info"], ["jobs"], ["audit"], ["serve"]])
def test_store_blocks_overwritten(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        store.con.execute("CHECKPOINT")
    size = path.stat().st_size
    with path.open("r+b") as f:
        for offset in range(8192, size, 3 * 4096):
            f.seek(offset)
            f.write(os.urandom(1024))
    line = one_line(*run_main("--store", path, *command)[::2], code=1)
    assert str(path) in line


def test_error_values_shortened_and_escaped() -> None:
    err = InputError("f.toml", "k", "a name", got="x\n" * 1_000_000)
    assert "\n" not in str(err) and len(str(err)) < 200
    assert "(2000000 characters)" in str(err)
    assert "an integer of more than" in str(InputError("f", "k", "x", got=10**5000))


def test_unknown_home_directory(tmp_path: Path) -> None:
    """`~name` of no such user (found by the fuzz test): one line, not a RuntimeError."""
    line = one_line(*run_main("--config", "~fd-no-such-user/c.toml", "config", "check")[::2])
    assert line.startswith("--config: expected a path whose ~user exists"), line
    cfg = tmp_path / "config.toml"
    cfg.write_text('[store]\npath = "~fd-no-such-user/s.duckdb"\n')
    line = one_line(*run_main("--config", cfg, "config", "check")[::2])
    assert line.startswith(f"{cfg}: store.path: expected a path whose ~user exists"), line
    line = one_line(*run_main("--store", "~fd-no-such-user/s.duckdb", "jobs")[::2])
    assert line.startswith("--store: expected a path whose ~user exists"), line

"""Fuzzing every input surface (#17): config tables and env overrides from the real config
schema, job files from the real job keys, and argument vectors from the real argparse tables,
filled with hostile scalars (NaN, inf, 1e309, huge ints, huge strings, NUL, newlines, unicode,
wrong types), run through the real `fleetdeck` entry point in-process (and a subprocess sample).

Every run must end with exit 0 or 2 (1 only for a one-line environment error such as "no
engine is running"), at most one line on stderr, no traceback and no hang. Bounded to about a
minute or two on a loaded 2-core machine (`max_examples` below).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.store import Store
from console.cli import build_parser
from console.config import SINGLE_SECTIONS, Config
from console.typed import field_paths
from scheduler.jobspec import JOB_KEYS
from tests.helpers import FLEETDECK, REPO, run_main

PER_RUN_S = 30  # a run over this is a hang
# commands that serve, reach the network or send messages: not for a fuzzer
EXCLUDED = {("serve",), ("collect",), ("nodes", "trust"), ("notify", "test")}
EXCLUDED_OPTIONS = {"--follow", "-f"}  # -f of logs/events follows forever; submit's is kept


class Raw(str):
    """TOML text written as is (numbers Python cannot hold: 1e309, 5,000 digits)."""


HOSTILE_SCALARS: list[Any] = [
    math.nan, math.inf, -math.inf, Raw("1e309"), Raw("-1e309"), 10**30, -(10**30), 2**63,
    Raw("9" * 5000), -1, 0, "", " ", "x" * 200_000, "a\x00b", "a\nb", "\u2028", "é☃🚀",
    "nan", "inf", "1e309", "-1", "9" * 5000, "../../etc/passwd", "2026-13-45", True, [], {},
    [math.nan], {"k": math.inf},
]
HOSTILE_TEXT: list[str] = [
    "nan", "inf", "-inf", "1e309", "-1", "0", "", " ", "9" * 5000, "x" * 200_000, "a\x00b",
    "a\nb", "é☃🚀", "/", "..", "2026-13-45", "1" + "0" * 400 + "G", "--", "-", "0x10",
    "+16 A100", "1-100000000", "true",
]

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
plausible = st.one_of(st.integers(-5, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                      st.booleans(), text)
scalars = st.one_of(st.sampled_from(HOSTILE_SCALARS), plausible)
values = st.one_of(scalars, st.lists(scalars, max_size=3),
                   st.dictionaries(text, scalars, max_size=2))
hostile_text = st.one_of(st.sampled_from(HOSTILE_TEXT), text)


def toml_value(v: Any) -> str:
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)} = {toml_value(x)}"
                           for k, x in v.items()) + "}"


def toml_doc(data: Mapping[str, Any]) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in data.items())


def nest(paths: Mapping[str, Any]) -> dict[str, Any]:
    """{"nodes[].port": 1} -> {"nodes": [{"port": 1}]} (one table per array of tables)."""
    out: dict[str, Any] = {}
    for path, value in paths.items():
        node = out
        parts = path.split(".")
        for part in parts[:-1]:
            if part.endswith("[]"):
                node = node.setdefault(part[:-2], [{}])[0]
            else:
                node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


CONFIG_PATHS = field_paths(Config)
# a valid node keeps the embedded default out of the way when nodes[] keys are drawn
config_tables = st.dictionaries(st.sampled_from(CONFIG_PATHS), values, min_size=1, max_size=4)
env_overrides = st.dictionaries(
    st.sampled_from([p for p in CONFIG_PATHS if p.split(".")[0] in SINGLE_SECTIONS
                     and p.count(".") == 1]), hostile_text, max_size=2)
job_tables = st.dictionaries(st.sampled_from(JOB_KEYS), values, min_size=1, max_size=5)


def commands() -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every leaf (sub)command of the real parser, with its parser."""
    out: list[tuple[tuple[str, ...], argparse.ArgumentParser]] = []

    def walk(p: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs and path and path not in EXCLUDED:
            out.append((path, p))
        for a in subs:
            for name, sp in a.choices.items():
                walk(sp, (*path, name))

    walk(build_parser(), ())
    return out


COMMANDS = commands()


@st.composite
def argvs(draw: st.DrawFn) -> list[str]:
    path, parser = draw(st.sampled_from(COMMANDS))
    argv = list(path)
    options = [a for a in parser._actions
               if a.option_strings and not isinstance(a, argparse._HelpAction)
               and not (set(a.option_strings) & EXCLUDED_OPTIONS and path != ("submit",))]
    for action in draw(st.lists(st.sampled_from(options), max_size=4, unique_by=id)):
        argv.append(action.option_strings[-1])
        if action.nargs != 0:
            argv.append(draw(hostile_text))
    for action in parser._actions:
        if not action.option_strings and action.nargs != argparse.REMAINDER:
            argv.append(draw(hostile_text))  # positionals (JOB, NODE, NAME)
    if path == ("submit",):
        argv += ["--", draw(hostile_text)]
    return argv


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty store (so read commands can succeed) under private XDG folders."""
    root = tmp_path_factory.mktemp("fuzz")
    saved = dict(os.environ)
    os.environ.update(XDG_DATA_HOME=str(root / "data"), XDG_CONFIG_HOME=str(root / "cfg"))
    for name in list(os.environ):
        if name.startswith(("FLEETDECK__", "FLEETDECK_CONFIG", "FLEETDECK_ENGINE")):
            del os.environ[name]
    with Store.open(root / "data" / "fleetdeck" / "fleetdeck.duckdb"):
        pass
    yield root
    os.environ.clear()
    os.environ.update(saved)


def _hang(signum: int, frame: types.FrameType | None) -> None:
    raise TimeoutError(f"a fleetdeck run took over {PER_RUN_S}s")


def check_run(*argv: str | Path, env: Mapping[str, str] | None = None) -> None:
    """Run in-process; assert the outcome contract."""
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    old = signal.signal(signal.SIGALRM, _hang)
    signal.alarm(PER_RUN_S)
    try:
        rc, _, err = run_main(*argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert_contract(rc, err, argv)


def assert_contract(rc: int, err: str, argv: Any) -> None:
    assert "Traceback" not in err, (argv, err)
    lines = err.splitlines()
    assert len(lines) <= 1, (argv, err[:2000])
    # 3: `status` with no engine running (documented, like `systemctl status`)
    assert rc in (0, 1, 2) or (rc == 3 and "status" in argv), (argv, rc, err)
    if rc == 1:  # only an environment error the user can act on, as one fleetdeck line
        assert lines and lines[0].startswith("fleetdeck: "), (argv, err)
    if lines:
        assert len(lines[0]) <= 2100, (argv, lines[0][:200])


FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@FUZZ
@given(table=config_tables, env=env_overrides)
def test_fuzz_config(world: Path, table: dict[str, Any], env: dict[str, str]) -> None:
    cfg = world / "config.toml"
    cfg.write_text(toml_doc(nest(table)), encoding="utf-8")
    names = {f"FLEETDECK__{p.replace('.', '__').upper()}": v.replace("\x00", "")
             for p, v in env.items()}  # the environment cannot hold NUL
    check_run("--config", cfg, "config", "check", env=names)


@FUZZ
@given(table=job_tables)
def test_fuzz_job_file(world: Path, table: dict[str, Any]) -> None:
    job = world / "job.toml"
    job.write_text(toml_doc(table), encoding="utf-8")
    check_run("submit", "--dry-run", "-f", job)


@settings(FUZZ, max_examples=300)
@given(argv=argvs())
def test_fuzz_argv(world: Path, argv: list[str]) -> None:
    check_run(*argv)


@settings(FUZZ, max_examples=6)
@given(argv=argvs())
def test_fuzz_argv_subprocess_sample(world: Path, argv: list[str]) -> None:
    """The same contract as a real process (argv cannot hold NUL nor pass 128 KiB)."""
    argv = [a.replace("\x00", "") if len(a) < 100_000 else a[:100_000] for a in argv]
    res = subprocess.run([*FLEETDECK, *argv], capture_output=True, text=True, cwd=REPO,
                         env=dict(os.environ), timeout=120)
    assert_contract(res.returncode, res.stderr, argv)

"""Helpers for tests that drive the real `fleetdeck` command and engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FLEETDECK = [sys.executable, "-m", "console.cli"]
REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("FLEETDECK_CONFIG", None) if env is None or "FLEETDECK_CONFIG" not in env else None
    return subprocess.run([*FLEETDECK, *args], capture_output=True, text=True, timeout=timeout,
                          env=full_env, cwd=REPO, input=input)


def cli_json(*args: str, **kw: Any) -> Any:
    res = cli(*args, "--format", "json", **kw)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def write_config(path: Path, store: Path, extra: str = "") -> Path:
    path.write_text(f'[store]\npath = "{store}"\n\n{extra}\n')
    return path


@contextmanager
def serve(config: Path, *, timeout: float = 30) -> Iterator[subprocess.Popen[str]]:
    """Run `fleetdeck serve` with `config` until the block ends."""
    proc = subprocess.Popen([*FLEETDECK, "--config", str(config), "serve"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = proc.stderr.read() if proc.stderr else ""
                raise AssertionError(f"engine exited {proc.returncode}: {err}")
            res = cli("--config", str(config), "status", "--format", "json")
            if res.returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("engine did not start")
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    """The single error line of a failed command (asserting it is one line, no traceback)."""
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    return lines[0]


def argv(*parts: str | Path) -> Sequence[str]:
    return [str(p) for p in parts]


def run_main(*args: str | Path) -> tuple[int, str, str]:
    """Run `fleetdeck ARGS` in this process (fast, for many inputs): (exit code, stdout,
    stderr). An uncaught exception propagates, so a traceback fails the test."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from console.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 2
    return rc, out.getvalue(), err.getvalue()

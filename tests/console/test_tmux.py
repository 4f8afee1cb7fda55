"""End to end: the installed `fleetdeck` command in a real terminal (tmux), attached to a
`fleetdeck serve` engine; a job is submitted with keys only and seen to finish."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import serve, write_config

FLEETDECK = Path(sys.executable).with_name("fleetdeck")
MARK = "tmux-e2e-ok"


class Tmux:
    """One tmux server on its own socket, one session running `command`."""

    def __init__(self, socket: Path, command: list[str], env: dict[str, str]) -> None:
        self.socket = socket
        self.env = env
        self.run("new-session", "-d", "-s", "fd", "-x", "140", "-y", "40", *command)

    def run(self, *args: str) -> str:
        res = subprocess.run(["tmux", "-S", str(self.socket), *args], capture_output=True,
                             text=True, timeout=20, env=self.env)
        assert res.returncode == 0, res.stderr
        return res.stdout

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.run("send-keys", "-t", "fd", *(["-l"] if literal else []), *keys)
        time.sleep(0.3)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "fd")

    def wait(self, cond: Callable[[str], bool], what: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if cond(text):
                return text
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}; screen:\n{text}")

    def alive(self) -> bool:
        res = subprocess.run(["tmux", "-S", str(self.socket), "has-session", "-t", "fd"],
                             capture_output=True, env=self.env)
        return res.returncode == 0

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True,
                       env=self.env)


@pytest.fixture
def tmux_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    if shutil.which("tmux") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tmux is not installed")
        pytest.skip("tmux is not installed")
    if not FLEETDECK.exists():
        pytest.skip(f"{FLEETDECK} is not installed (pip install -e .)")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # the engine's job directories live under ~
    yield {**os.environ, "TERM": "xterm-256color", "HOME": str(home)}


def job_line(screen: str) -> str:
    return next((ln for ln in screen.splitlines() if "e2e" in ln and " 1 " in f" {ln} "), "")


def test_submit_with_keys_and_see_it_finish(tmp_path: Path, tmux_env: dict[str, str]) -> None:
    cfg = write_config(tmp_path / "config.toml", tmp_path / "store.duckdb",
                       "[collect]\ninterval_s = 1.0\n[scheduler]\ncycle_s = 0.2\n")
    with serve(cfg):
        tmux = Tmux(tmp_path / "tmux.sock", [str(FLEETDECK), "--config", str(cfg)], tmux_env)
        try:
            tmux.wait(lambda s: "Fleet" in s and "nodes" in s and "1 up" in s, "the console")
            assert "attached" in tmux.screen()  # it found the running engine
            tmux.keys("s")
            tmux.wait(lambda s: "Submit a job" in s, "the submit form")
            tmux.keys(f"sh -c 'sleep 2; echo {MARK}'", literal=True)
            tmux.keys("Tab")
            tmux.keys("e2e", literal=True)
            tmux.wait(lambda s: "would start now" in s, "the placement preview")
            tmux.keys("Enter")
            tmux.wait(lambda s: "Submit a job" not in s, "the form to close")
            tmux.keys("2")
            tmux.wait(lambda s: bool(job_line(s)), "job 1 in Jobs")
            tmux.wait(lambda s: "succeeded" in job_line(s), "job 1 to finish", timeout=90)
            tmux.keys("l")
            tmux.wait(lambda s: MARK in s, "the job's output in its logs")
            tmux.keys("q")
            deadline = time.monotonic() + 20
            while tmux.alive() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not tmux.alive(), "q did not quit the console"
        finally:
            tmux.kill()

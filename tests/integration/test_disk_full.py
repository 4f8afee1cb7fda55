"""Faults said once (#17): a small tmpfs holding the store fills up under a running engine.
Submit gets one line, `status` shows the failing store, the log says it without tracebacks,
and the telemetry of the failing period is written once space returns."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collectors.store import Store
from tests.bed.require import unavailable
from tests.helpers import FLEETDECK, REPO, cli, one_line_error


@contextlib.contextmanager
def small_disk(path: Path, size_mb: int) -> Iterator[Path]:
    if os.geteuid() != 0:
        unavailable("a tmpfs for the disk-full test needs root (mount -t tmpfs)")
    path.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        unavailable(f"mount -t tmpfs refused: {res.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


class Filler(threading.Thread):
    """Keeps the disk full until stopped: the engine's checkpoints truncate its WAL and free
    space, which the filler takes back at once (a disk filled once would not stay full)."""

    def __init__(self, disk: Path) -> None:
        super().__init__(daemon=True)
        self.path = disk / "filler"
        self.full = threading.Event()  # set once the first write met ENOSPC
        self.halt = threading.Event()

    def run(self) -> None:
        with self.path.open("wb", buffering=0) as f:
            while not self.halt.is_set():
                try:
                    f.write(b"\0" * (64 * 1024))
                except OSError:
                    self.full.set()
                    self.halt.wait(0.02)

    def stop(self) -> None:
        self.halt.set()
        self.join(30)
        self.path.unlink()


def wait_for(what: str, cond: object, timeout: float = 120) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()  # type: ignore[operator]
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def status(config: Path) -> dict[str, object]:
    res = cli("--config", str(config), "status", "--format", "json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


@pytest.mark.timeout(600)
def test_store_on_a_full_disk(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", 48) as disk:
        store = disk / "store.duckdb"
        config = tmp_path / "config.toml"
        config.write_text(f'[store]\npath = "{store}"\n[engine]\nsocket = "{tmp_path}/s.sock"\n'
                          "[collect]\ninterval_s = 0.5\n"
                          '[[nodes]]\nname = "here"\nhost = "localhost"\ntransport = "local"\n')
        log_path = tmp_path / "engine.log"
        with log_path.open("w") as log:
            engine = subprocess.Popen([*FLEETDECK, "--config", str(config), "serve"], cwd=REPO,
                                      stdout=log, stderr=subprocess.STDOUT)
        filler = Filler(disk)
        try:
            wait_for("the engine", lambda: cli("--config", str(config), "status").returncode == 0)
            wait_for("samples", lambda: cli("--config", str(config), "db", "info", "--format",
                                            "json").stdout.count('"node_samples": 0') == 0)
            filler.start()
            assert filler.full.wait(60), "the filler never met a full disk"
            failing_from = datetime.now(UTC).replace(tzinfo=None)

            def refused() -> subprocess.CompletedProcess[str] | None:
                # a submit that got in before the space freed by a checkpoint was taken back
                # was stored: it is no fault; the next one meets the full disk
                r = cli("--config", str(config), "submit", "--cpus", "0.1", "--", "true")
                assert r.returncode in (0, 1), r
                return r if r.returncode == 1 else None

            res = wait_for("a submit refused on the full disk", refused)
            assert isinstance(res, subprocess.CompletedProcess)
            line = one_line_error(res)
            assert line == (f"fleetdeck: store write failed: no space left on device at {store}; "
                            "nothing was queued"), line
            faults = wait_for("a failing store in status",
                              lambda: status(config).get("faults"))
            assert any(str(f).startswith("store: writes failing since ") for f in faults), faults
            human = cli("--config", str(config), "status").stdout
            assert "store: writes failing since" in human, human
            other = disk / "other.duckdb"  # starting serve on the full disk: one line
            res = cli("--store", str(other), "--config", str(config), "serve", timeout=120)
            assert res.returncode == 1, res
            assert one_line_error(res).startswith(f"fleetdeck: {other}: cannot open"), res.stderr
            assert "no space left on device" in res.stderr.lower(), res.stderr
            time.sleep(3)  # several collection intervals on a full disk
            failing_to = datetime.now(UTC).replace(tzinfo=None)
            filler.stop()
            wait_for("the store fault to clear", lambda: not status(config).get("faults"))
            wait_for("the held telemetry",
                     lambda: "held while the store failed is written" in log_path.read_text())
        finally:
            filler.halt.set()  # a failed assertion must not leave it writing
            engine.terminate()
            engine.wait(30)
        text = log_path.read_text()
        assert "Traceback" not in text, text[-3000:]
        assert text.count("store: writes failing since") <= 3, text  # once, then once a minute
        assert "nothing dropped" in text, text
        with Store.open(store, read_only=True) as s:
            [(held,)] = s.con.execute("SELECT count(*) FROM node_samples WHERE ts BETWEEN ? "
                                      "AND ?", [failing_from, failing_to]).fetchall()
        assert held >= 2, held  # samples taken while the disk was full were kept and written

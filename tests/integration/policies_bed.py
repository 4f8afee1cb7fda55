"""Support for the policy end-to-end tests: an engine over bed nodes, asked through its socket.

The engine is a real `fleetdeck serve`; the tests poll it through the control protocol (the
same requests the CLI sends, without a Python start per poll) and use the `fleetdeck` CLI
where the command itself is under test (cordon, explain, audit).
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from collectors.store import Store
from console.engine.client import EngineClient
from tests.bed.ssh import SshNode, fleet_config_toml
from tests.helpers import cli, serve, write_config

T = TypeVar("T")


def node_toml(node: SshNode, *, pool: str | None = None) -> str:
    """The node's `[[nodes]]` table; no Docker socket unless the node has a dockerd."""
    text = node.config_toml() + "docker_gpu_runtime = false\n"
    if node.docker_socket is None:
        text += 'docker_socket = ""\n'
    if pool is not None:
        text += f'pool = "{pool}"\n'
    return text


def offset_job_ids(path: Path) -> None:
    """Start the store's job ids at a random offset: executors key a job's files and names on
    the node by `<job id>-<attempt>`, and bed nodes share root's home across tests and runs."""
    with Store.open(path) as store:
        store.con.execute("SELECT max(nextval('job_id_seq')) FROM range(?)",
                          [random.randrange(100_000, 3_000_000)]).fetchall()


class Engine:
    """One config, its store and (inside `serving`) its engine."""

    def __init__(self, tmp: Path, toml: str, *, known_hosts: Path | None = None,
                 interval_s: float = 0.5, cycle_s: float = 0.3) -> None:
        self.store = tmp / "store.duckdb"
        head = f"[collect]\ninterval_s = {interval_s}\n\n[scheduler]\ncycle_s = {cycle_s}\n\n"
        if known_hosts is not None:
            head += fleet_config_toml([], known_hosts=known_hosts) + "\n"
        self.config = write_config(tmp / "config.toml", self.store, head + toml)
        self.socket = self.store.with_name(self.store.name + ".sock")
        self.proc: subprocess.Popen[str] | None = None
        offset_job_ids(self.store)

    @contextmanager
    def serving(self) -> Iterator[subprocess.Popen[str]]:
        with serve(self.config, timeout=90) as proc:
            self.proc = proc
            try:
                yield proc
            finally:
                self.proc = None

    def call(self, method: str, **params: Any) -> Any:
        async def ask() -> Any:
            async with await EngineClient.connect(self.socket, timeout=30) as c:
                return await c.call(method, **params)

        return asyncio.run(ask())

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return cli("--config", str(self.config), *args, timeout=120)

    def cli_json(self, *args: str) -> Any:
        res = self.cli(*args, "--format", "json")
        assert res.returncode == 0, f"fleetdeck {' '.join(args)}: {res.stderr}"
        return json.loads(res.stdout)

    # -- jobs -------------------------------------------------------------------------------
    def submit(self, *argv: str, gpus: float = 1, **fields: Any) -> int:
        spec = {"command": list(argv), "gpus": gpus, "executor": "process", "cpus": 0.1,
                **fields}
        ids = self.call("submit", spec=spec)["ids"]
        return int(ids[0])

    def job(self, job_id: int) -> dict[str, Any]:
        for row in self.call("jobs", limit=100000):
            if row["id"] == job_id:
                return dict(row)
        raise AssertionError(f"no job {job_id}")

    def audit(self) -> list[dict[str, Any]]:
        """The audit trail, oldest first, evidence parsed."""
        rows = self.call("audit", limit=100000)
        for r in rows:
            r["evidence"] = json.loads(r["evidence"] or "{}")
        return sorted(rows, key=lambda r: r["id"])

    def actions(self, action: str, target: str | int | None = None) -> list[dict[str, Any]]:
        return [r for r in self.audit() if r["action"] == action
                and (target is None or r["target"] == str(target))]

    def wait(self, what: str, cond: Callable[[], T | None], *, timeout: float = 120,
             every_s: float = 0.3, context: Callable[[], Any] | None = None) -> T:
        """Poll `cond()` until it returns something truthy; fail naming `what` (and showing
        `context()`, by default the last audit rows)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"engine exited {self.proc.returncode} waiting for "
                                     f"{what}: {err[-3000:]}")
            got = cond()
            if got:
                return got
            if time.monotonic() > deadline:
                shown = context() if context else [
                    (r["action"], r["target"], r["reason"]) for r in self.audit()[-8:]]
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; {shown}")
            time.sleep(every_s)

    def wait_state(self, job_id: int, *states: str, timeout: float = 120) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def check() -> dict[str, Any] | None:
            nonlocal last
            last = self.job(job_id)
            return last if last["state"] in states else None

        try:
            return self.wait(f"job {job_id} in {states}", check, timeout=timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}; last: state {last.get('state')}, reason "
                                 f"{last.get('reason')!r}") from None

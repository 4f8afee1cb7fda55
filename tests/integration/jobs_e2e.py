"""Support for the end-to-end job tests: a config over bed nodes and a `fleetdeck` CLI driver.

Everything goes through the real `fleetdeck` command and a real `fleetdeck serve` engine; the
helpers only poll `fleetdeck jobs --format json` until a condition holds.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from collectors.store import Store
from tests.bed.ssh import SshNode, fleet_config_toml
from tests.helpers import cli, serve, write_config

TERMINAL = ("succeeded", "failed", "stopped", "lost")


def node_toml(node: SshNode, *, pool: str | None = None,
              labels: dict[str, str] | None = None) -> str:
    """The node's `[[nodes]]` table without the NVIDIA container runtime (the bed has none)."""
    text = node.config_toml() + "docker_gpu_runtime = false\n"
    if pool is not None:
        text += f'pool = "{pool}"\n'
    if labels:
        text += "labels = { " + ", ".join(f'{k} = "{v}"' for k, v in labels.items()) + " }\n"
    return text


def fleet_toml(nodes: Sequence[SshNode], *, pools: dict[str, str] | None = None,
               extra: str = "", interval_s: float = 0.5, cycle_s: float = 0.2) -> str:
    """`[collect]`, `[scheduler]`, `[ssh]` and `[[nodes]]`; `pools` maps node name -> pool."""
    pools = pools or {}
    head = fleet_config_toml([], known_hosts=nodes[0].known_hosts)
    body = "\n".join(node_toml(n, pool=pools.get(n.name)) for n in nodes)
    return (f"[collect]\ninterval_s = {interval_s}\n\n"
            f"[scheduler]\ncycle_s = {cycle_s}\n\n{head}\n{body}\n{extra}\n")


def offset_job_ids(path: Path) -> None:
    """Start this store's job ids at a random offset.

    Job ids restart at 1 in every store. Job dirs and container names on nodes carry the
    store's fleet id, but a Slurm attempt is still found by its name `fd-<id>-<attempt>`
    alone, and every test (and concurrent test runs) shares the bed's one Slurm cluster, which
    remembers finished jobs for 300 s: a fresh store's job 1 would adopt an earlier one.
    """
    with Store.open(path) as store:
        store.con.execute("SELECT max(nextval('job_id_seq')) FROM range(?)",
                          [random.randrange(100_000, 3_000_000)]).fetchall()


class Fleet:
    """The `fleetdeck` CLI against one config (and its engine, while `serving`)."""

    def __init__(self, tmp: Path, toml: str) -> None:
        self.tmp = tmp
        self.store = tmp / "store.duckdb"
        self.config = write_config(tmp / "config.toml", self.store, toml)
        self.proc: subprocess.Popen[str] | None = None
        offset_job_ids(self.store)

    def reconfigure(self, toml: str) -> None:
        """Rewrite the config (same store); the next engine started reads it."""
        write_config(self.config, self.store, toml)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return cli("--config", str(self.config), *args, timeout=timeout)

    def json(self, *args: str, timeout: float = 120) -> Any:
        res = self.run(*args, "--format", "json", timeout=timeout)
        assert res.returncode == 0, f"fleetdeck {' '.join(args)}: {res.stderr}"
        return json.loads(res.stdout)

    @contextmanager
    def serving(self, *, timeout: float = 60) -> Iterator[subprocess.Popen[str]]:
        with serve(self.config, timeout=timeout) as proc:
            self.proc = proc
            try:
                yield proc
            finally:
                self.proc = None

    # -- jobs --------------------------------------------------------------------------------
    def submit(self, *args: str) -> list[int]:
        # `--format` goes before the command: everything after `--` is the job's argv
        res = self.run("submit", "--format", "json", *args)
        assert res.returncode == 0, f"fleetdeck submit {' '.join(args)}: {res.stderr}"
        ids = json.loads(res.stdout)
        assert isinstance(ids, list) and ids, ids
        return [int(i) for i in ids]

    def jobs(self, *args: str) -> list[dict[str, Any]]:
        rows = self.json("jobs", "--limit", "100000", *args)
        assert isinstance(rows, list)
        return rows

    def job(self, job_id: int) -> dict[str, Any]:
        for row in self.jobs():
            if row["id"] == job_id:
                return row
        raise AssertionError(f"no job {job_id} in `fleetdeck jobs`")

    def wait(self, what: str, cond: Callable[[list[dict[str, Any]]], bool], *,
             timeout: float = 120, every_s: float = 0.5) -> list[dict[str, Any]]:
        """Poll `fleetdeck jobs` until `cond(rows)`; fail naming `what` with the last rows."""
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        busy = 0
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"engine exited {self.proc.returncode} waiting for {what}: "
                                     f"{self.proc.stderr.read() if self.proc.stderr else ''}")
            try:
                rows = self.jobs()
            except AssertionError as e:
                # this 2-core machine is shared: an engine too busy for the 5 s handshake
                # is retried a few times while waiting, never in a test's own assertions
                busy += 1
                if "did not answer" not in str(e) or busy > 5:
                    raise
                continue
            busy = 0
            if cond(rows):
                return rows
            time.sleep(every_s)
        brief = [{k: r.get(k) for k in ("id", "name", "state", "node", "reason", "exit_code")}
                 for r in rows[:20]]
        raise AssertionError(f"timed out after {timeout}s waiting for {what}: {brief}")

    def wait_states(self, ids: Sequence[int], states: Sequence[str], *,
                    timeout: float = 120, every_s: float = 0.5) -> dict[int, dict[str, Any]]:
        """Wait until every job in `ids` is in one of `states`; their rows by id."""
        want = set(ids)

        def done(rows: list[dict[str, Any]]) -> bool:
            hits = [r for r in rows if r["id"] in want and r["state"] in states]
            return len(hits) == len(want)

        rows = self.wait(f"jobs {sorted(want)[:5]}... in {states}", done, timeout=timeout,
                         every_s=every_s)
        return {r["id"]: r for r in rows if r["id"] in want}

    def wait_done(self, ids: Sequence[int], *, timeout: float = 120,
                  every_s: float = 0.5) -> dict[int, dict[str, Any]]:
        return self.wait_states(ids, TERMINAL, timeout=timeout, every_s=every_s)

    def logs(self, job_id: int) -> str:
        res = self.run("logs", str(job_id))
        assert res.returncode == 0, res.stderr
        return res.stdout

    def wait_logs(self, job_id: int, needle: str, *, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        out = ""
        while time.monotonic() < deadline:
            res = self.run("logs", str(job_id))
            out = res.stdout
            if res.returncode == 0 and needle in out:
                return out
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} logs never showed {needle!r}: {out!r}")


def remote(node: SshNode, command: str) -> str:
    """Run a shell command on the node over SSH; its stdout."""
    res = node.run(command)
    out: str = res.stdout if isinstance(res.stdout, str) else res.stdout.decode()
    return out

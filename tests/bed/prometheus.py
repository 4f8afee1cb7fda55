"""A real Prometheus server (Debian `prometheus`) scraping given targets every second."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.bed.receivers import free_port
from tests.bed.require import unavailable


def require_prometheus() -> str:
    path = shutil.which("prometheus")
    if path is None:
        unavailable("prometheus not available (Debian package prometheus); run .ci/services.sh "
                    "as root to install the test bed")
    return path


class Prometheus:
    """`prometheus` with a generated config; `query(promql)` through its HTTP API."""

    def __init__(self, root: Path, targets: list[str], *, interval_s: float = 1.0) -> None:
        self.binary = require_prometheus()
        self.root = root
        self.port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "prometheus.yml"
        self.config.write_text(
            "global:\n"
            f"  scrape_interval: {round(interval_s * 1000)}ms\n"
            f"  scrape_timeout: {round(interval_s * 1000)}ms\n"
            "scrape_configs:\n"
            "  - job_name: fleetdeck\n"
            "    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        log = (self.root / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.config}",
             f"--storage.tsdb.path={self.root / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready",
                                            timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"prometheus not ready: {self.log()[-2000:]}")

    def log(self) -> str:
        return (self.root / "prometheus.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector's samples: [{"metric": {...}, "value": [ts, "v"]}, ...]."""
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": promql}))
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.loads(r.read())
        assert doc["status"] == "success", doc
        return list(doc["data"]["result"])

    def targets_health(self) -> list[str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/targets",
                                    timeout=10) as r:
            doc = json.loads(r.read())
        return [t["health"] for t in doc["data"]["activeTargets"]]

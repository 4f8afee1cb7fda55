"""Notifications end to end: a real engine on a fake-NVML bed node, a real SMTP server
(aiosmtpd) and a real HTTP receiver; Prometheus (Debian `prometheus`) scraping the engine.

One engine life covers the notify contract: an idle job's owner is mailed idle.warned (with the
snooze command and the stop time) then idle.stopped; failed jobs post job.failed to a webhook
that is down, the engine is killed with -9 before it could deliver, and once it is back and the
receiver is up every event arrives with a valid HMAC signature, and no delivered mail is sent
again."""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from console.engine.metrics import EXPORTED
from tests.bed.fake_nvml import GIB, FakeGpu
from tests.bed.prometheus import Prometheus, require_prometheus
from tests.bed.receivers import HttpReceiver, SmtpServer, free_port, wait_for
from tests.helpers import FLEETDECK, REPO, one_line_error
from tests.integration.policies_bed import Engine, node_toml

pytestmark = [pytest.mark.ssh, pytest.mark.slow]

SECRET = b"s3cret-key"
OWNER_MAIL = "owner@example.org"

IDLE_TOML = """
[policies.idle]
enabled = true
window_s = 3
gpu_util_threshold_pct = 5
check_cpu = false          # process jobs: judged on their GPUs only
grace_s = 0
stop_after_s = 2
stop_timeout_s = 2
min_samples = 3
max_gap_s = 2.5
"""


def notify_toml(smtp: SmtpServer, hook: HttpReceiver, secret: Path) -> str:
    return f"""
[[users]]
name = "{getpass.getuser()}"
email = "{OWNER_MAIL}"
notify = ["job.failed"]    # opted in: failures of their jobs are mailed to them

[notify]
tick_s = 0.2
batch_s = 0.2
backoff_s = 0.2
backoff_max_s = 1.0        # a receiver down for a minute: retries keep coming, short here
max_attempts = 1000

[[notify.channels]]
name = "mail"
type = "email"
smtp_host = "127.0.0.1"
smtp_port = {smtp.port}
from = "fleetdeck@example.org"
timeout_s = 5

[[notify.channels]]
name = "ops"
type = "webhook"
url = "{hook.url}"
secret_file = "{secret}"
timeout_s = 2

[[notify.routes]]
events = ["idle."]
to = ["owner"]

[[notify.channels]]
name = "chat"
type = "slack"
url = "{hook.url}"
timeout_s = 2

[[notify.routes]]
events = ["job.failed"]
to = ["owner", "ops", "chat"]
"""


@pytest.fixture
def idle_node(ssh_nodes: Any) -> Any:
    (node,) = ssh_nodes(1, fake_nvml={0: [FakeGpu(util_pct=0, mem_used_bytes=20 * GIB)] * 4})
    return node


def _subjects(smtp: SmtpServer) -> list[str]:
    return [str(m["Subject"]) for m in smtp.to(OWNER_MAIL)]


def test_idle_mail_failed_webhook_down_receiver_and_kill_9(idle_node: Any,
                                                            tmp_path: Path) -> None:
    smtp = SmtpServer().start()
    hook = HttpReceiver()  # down until the engine was killed
    secret = tmp_path / "hook.secret"
    secret.write_bytes(SECRET + b"\n")
    eng = Engine(tmp_path, node_toml(idle_node) + IDLE_TOML + notify_toml(smtp, hook, secret),
                 known_hosts=idle_node.known_hosts)
    try:
        with eng.serving() as proc:
            follow = subprocess.Popen(
                [*FLEETDECK, "--config", str(eng.config), "events", "-f", "--limit", "100",
                 "--format", "json"], cwd=REPO, stdout=subprocess.PIPE, text=True)
            streamed: list[dict[str, Any]] = []

            def read() -> None:
                for line in follow.stdout or ():
                    streamed.append(json.loads(line))

            threading.Thread(target=read, daemon=True).start()
            failed = [eng.submit("sh", "-c", "exit 3", gpus=0, name=f"bad-{i}")
                      for i in range(2)]
            for j in failed:
                eng.wait_state(j, "failed")
            wait_for("job.failed on `fleetdeck events -f`", lambda: {
                e["job_id"] for e in list(streamed) if e["name"] == "job.failed"} == set(failed))
            wait_for("the opted-in owner mailed of both failures", lambda: all(
                any(f"job {j} (bad-" in m.get_content() for m in smtp.to(OWNER_MAIL)
                    if "job.failed" in m.get_content()) for j in failed))
            idle = eng.submit("sleep", "600", gpus=1, name="idle-job")
            warned = wait_for("the idle.warned mail", lambda: [
                m for m in smtp.to(OWNER_MAIL) if "idle.warned" in str(m["Subject"])])
            body = warned[0].get_content()
            assert f"fleetdeck snooze {idle} --hours 2" in body
            assert "will be stopped at" in str(warned[0]["Subject"])
            assert "GPU utilization at most 0.0%" in body
            stopped = wait_for("the idle.stopped mail", lambda: [
                m for m in smtp.to(OWNER_MAIL) if "idle.stopped" in str(m["Subject"])])
            assert f"job {idle} (idle-job) was stopped for being idle" in stopped[0]["Subject"]
            wait_for("idle.stopped followed live on `fleetdeck events -f`", lambda: [
                e for e in list(streamed) if e["name"] == "idle.stopped"])
            # the webhook is down: its deliveries are pending (tried, failing), not lost
            status = eng.call("notify_status")
            ops = {d["state"]: d["deliveries"] for d in status["deliveries"]
                   if d["channel"] == "ops"}
            assert ops.get("pending") == 2 and "sent" not in ops, status
            proc.kill()  # kill -9 between the events and their delivery
            proc.wait()
            follow.wait(30)  # the stream ends with its engine
        hook.up()
        mails_before = _subjects(smtp)
        with eng.serving():
            got = wait_for("job.failed on the webhook after the restart", lambda: (
                {e["job_id"] for e in hook.events() if e["name"] == "job.failed"}
                >= set(failed)))
            assert got
            webhook = [p for p in hook.posts if "events" in p.json]
            for post in webhook:
                assert post.headers["X-Fleetdeck-Signature"] == "sha256=" + hmac.new(
                    SECRET, post.body, hashlib.sha256).hexdigest()
                assert post.headers["X-Fleetdeck-Id"] == post.json["id"]
            wait_for("job.failed in the Slack channel", lambda: [
                p for p in hook.posts if "job.failed" in p.json.get("text", "")])
            eng.wait("deliveries marked sent", lambda: all(
                d["state"] == "sent" for d in eng.call("notify_status")["deliveries"]))
            res = eng.cli("events", "--limit", "100", "--format", "json")  # JSON lines
            assert res.returncode == 0, res.stderr
            names = [json.loads(line)["name"] for line in res.stdout.splitlines()]
            assert names.count("job.failed") == 2 and "idle.warned" in names
            assert _subjects(smtp) == mails_before  # delivered mails are not sent again
            res = eng.cli("notify", "test", "mail", "--to", "tester@example.org")
            assert res.returncode == 0, res.stderr
            assert "notify.test" in str(smtp.to("tester@example.org")[0]["Subject"])
            res = eng.cli("notify", "test", "ops")
            assert res.returncode == 0, res.stderr
            assert hook.events()[-1]["name"] == "notify.test"
            bad = eng.cli("notify", "test", "pager")
            assert bad.returncode == 2 and "no channel 'pager'" in one_line_error(bad)
    finally:
        hook.down()
        smtp.stop()


def test_prometheus_scrapes_the_engine_and_sees_the_fake_gpus(ssh_nodes: Any,
                                                             tmp_path: Path) -> None:
    require_prometheus()
    gpus = [FakeGpu(util_pct=10 * i + 7, mem_used_bytes=i * GIB) for i in range(4)]
    (node,) = ssh_nodes(1, fake_nvml={0: gpus})
    assert node.nvml is not None
    port = free_port()
    eng = Engine(tmp_path, f'[engine]\nmetrics_listen = "127.0.0.1:{port}"\n\n'
                 + node_toml(node), known_hosts=node.known_hosts)
    prom = Prometheus(tmp_path / "prom", [f"127.0.0.1:{port}"])
    with eng.serving():
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                      timeout=10).read().decode()
        for name in EXPORTED:
            assert f"# TYPE {name.removesuffix('_total')}" in text or f"\n{name}" in text, name
        prom.start()
        try:
            query = f'fleetdeck_gpu_utilization_ratio{{node="{node.name}",gpu="2"}}'

            def value() -> float | None:
                res = prom.query(query)
                return float(res[0]["value"][1]) if res else None

            assert wait_for(f"{query} in Prometheus", value) == pytest.approx(0.27)
            node.nvml.set(2, util_pct=55)
            wait_for(f"{query} to follow the GPU to 0.55",
                     lambda: value() == pytest.approx(0.55))
            up = prom.query(f'fleetdeck_node_up{{node="{node.name}"}}')
            assert float(up[0]["value"][1]) == 1.0
            wait_for("collection sweeps counted", lambda: [
                r for r in prom.query("fleetdeck_collect_sweep_seconds_count")
                if float(r["value"][1]) > 0])
        finally:
            prom.stop()

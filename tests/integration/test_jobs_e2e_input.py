"""Issue #4 end to end: bad `fleetdeck submit` input gives one line naming the flag or key,
exit code 2, and queues nothing (checked against the running engine's job list)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bed.plugin import NodeFactory
from tests.helpers import one_line_error
from tests.integration.jobs_e2e import Fleet, fleet_toml

pytestmark = [pytest.mark.ssh]

# (arguments before `--`, the flag or key the one-line error must name)
BAD_FLAGS = [
    (["--gpus", "1.5"], "--gpus"),
    (["--gpus", "-2"], "--gpus"),
    (["--cpus", "0"], "--cpus"),
    (["--mem", "lots"], "--mem"),
    (["--executor", "kubernetes"], "--executor"),
    (["--executor", "docker"], "--image"),  # docker needs an image
    (["--executor", "process", "--image", "busybox"], "--image"),
    (["--max-runtime", "forever"], "--max-runtime"),
    (["--env", "FLEETDECK_JOB_ID=1"], "--env"),  # reserved
    (["--env", "NOVALUE"], "--env"),
    (["--array", "0"], "--array"),
    (["--label", "novalue"], "--label"),
    (["--priority", "high"], "--priority"),
    (["--retries", "1000"], "--retries"),
    (["--gpu-model", "A100"], "--gpu-model"),  # a model only with GPUs
    (["--min-gpu-mem", "big", "--gpus", "1"], "--min-gpu-mem"),
    (["--workdir", "relative/dir"], "--workdir"),
    (["--name", "two words"], "--name"),
    (["--kind", "daemon"], "--kind"),
    (["--user", "a b"], "--user"),
]


def test_bad_submit_input_names_the_flag_and_queues_nothing(ssh_nodes: NodeFactory,
                                                            tmp_path: Path) -> None:
    node = ssh_nodes(1)[0]
    fleet = Fleet(tmp_path, fleet_toml([node]))
    with fleet.serving():
        [good] = fleet.submit("--executor", "process", "--", "true")
        before = fleet.jobs()
        assert [r["id"] for r in before] == [good]

        for args, flag in BAD_FLAGS:
            res = fleet.run("submit", *args, "--", "true")
            assert res.returncode == 2, (args, res.stdout, res.stderr)
            line = one_line_error(res)
            assert line.startswith(f"command line: {flag}: expected "), (args, line)
            assert res.stdout == ""

        # no command at all
        res = fleet.run("submit", "--gpus", "1")
        assert res.returncode == 2
        assert one_line_error(res).startswith("command line: COMMAND: expected ")

        # names the fleet does not have are refused by the engine, naming the key
        for args, key in ((["--node", "nosuch"], "node"), (["--pool", "nosuch"], "pool"),
                          (["--executor", "slurm"], "executor")):
            res = fleet.run("submit", *args, "--", "true")
            assert res.returncode == 2, (args, res.stdout, res.stderr)
            line = one_line_error(res)
            assert line.startswith(f"submitted spec: {key}: expected "), (args, line)
            assert '"nosuch"' in line or key == "executor", line

        # a job file: errors name the file and the key
        job_files: list[tuple[str, str | None]] = [
            ('command = ["true"]\ngpu = 2\n', "gpu"),
            ('command = ["true"]\ngpus = "two"\n', "gpus"),
            ('command = ["true"]\n[env]\nFLEETDECK_X = "1"\n', "env"),
            ("gpus = 1\n", "command"),
            ('command = ["true"\n', None),
        ]
        for text, file_key in job_files:
            job = tmp_path / "job.toml"
            job.write_text(text)
            res = fleet.run("submit", "-f", str(job))
            assert res.returncode == 2, (text, res.stdout, res.stderr)
            line = one_line_error(res)
            want = (f"{job}: {file_key}: expected " if file_key
                    else f"{job}: expected valid TOML")
            assert line.startswith(want), (text, line)
        res = fleet.run("submit", "-f", str(tmp_path / "missing.toml"))
        assert res.returncode == 2 and "missing.toml" in one_line_error(res)

        # larger than any node the engine knows: refused with the placement's reason
        fleet.wait_done([good])  # the node is known (the good job ran on it)
        res = fleet.run("submit", "--gpus", "64", "--", "true")
        assert res.returncode == 2, (res.stdout, res.stderr)
        assert "never fits: no node has 64 GPUs" in one_line_error(res), res.stderr

        # --dry-run validates and queues nothing either
        res = fleet.run("submit", "--dry-run", "--gpus", "0.5", "--", "true")
        assert res.returncode == 0 and '"valid": true' in res.stdout

        after = fleet.jobs()
        assert [r["id"] for r in after] == [good], after
        audit = fleet.json("audit")
        assert [r["target"] for r in audit if r["action"] == "submit"] == [str(good)]

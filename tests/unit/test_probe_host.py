"""Host metrics as the probe reads them: from a prepared /proc tree (exact numbers) and from
this machine's real /proc (plausible numbers), plus the bundle's shape."""

from __future__ import annotations

import ast
import json
import os
import shlex
import shutil
from pathlib import Path

import pynvml
import pytest

from collectors.models import ProbeRecord
from collectors.probe import (
    BOOTSTRAP,
    SHELL_FALLBACK,
    bundle,
    launch_command,
    parse_line,
    python_command,
    shell_command,
    stdin_payload,
)
from collectors.probe.node import HostReader, Probe

from .test_probe_parsers import CPUINFO_X86, MEMINFO, NET_DEV, STAT, STAT_LATER


def fake_proc(root: Path, stat: str) -> None:
    (root / "net").mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text(stat)
    (root / "meminfo").write_text(MEMINFO)
    (root / "cpuinfo").write_text(CPUINFO_X86)
    (root / "uptime").write_text("12345.67 23456.78\n")
    (root / "net" / "dev").write_text(NET_DEV)


def test_host_reader_on_a_prepared_proc_tree(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    fake_proc(proc, STAT)
    reader = HostReader(["/", str(tmp_path / "missing")], proc_root=str(proc))
    reader.physical = ["eth0"]
    reader.prime()
    (proc / "stat").write_text(STAT_LATER)
    errors: list[str] = []
    host, disks = reader.read(errors)
    assert host["cpu_model"] == "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz"
    assert host["uptime_s"] == 12345.67
    assert host["cpu_count"] == 2
    assert host["cpu_util_pct"] == pytest.approx(66.67, abs=0.01)
    assert host["per_core_util_pct"] == [100.0, 50.0]
    assert host["mem_total_bytes"] == 16303428 * 1024
    assert host["mem_used_bytes"] == (16303428 - 10215408) * 1024
    assert host["swap_used_bytes"] == (2097148 - 2000000) * 1024
    assert (host["net_rx_bytes"], host["net_tx_bytes"]) == (1000000, 500000)
    root = shutil.disk_usage("/")
    assert [d["path"] for d in disks] == ["/"]
    assert disks[0]["total_bytes"] == root.total
    assert disks[0]["used_bytes"] == pytest.approx(root.used, rel=0.01)
    assert errors == [f"disk {tmp_path / 'missing'}: No such file or directory"]


def test_unreadable_proc_files_become_nulls_and_notes(tmp_path: Path) -> None:
    reader = HostReader([], proc_root=str(tmp_path / "nothing"))
    reader.prime()
    errors: list[str] = []
    host, disks = reader.read(errors)
    assert host["uptime_s"] is None and host["cpu_util_pct"] is None
    assert host["mem_total_bytes"] is None and host["net_rx_bytes"] is None
    assert disks == []
    assert {e.split(":")[0] for e in errors} == {"host uptime", "host cpu", "host memory",
                                                   "host net"}


def test_probe_sample_on_this_machine_round_trips_through_parse_line() -> None:
    probe = Probe({"interval_s": 5.0, "disk_paths": ["/"]}, pynvml)
    probe.host.prime()
    os.sched_yield()
    line = json.dumps(probe.sample())
    rec = parse_line("here", line)
    assert isinstance(rec, ProbeRecord)
    h = rec.host
    assert h.hostname == os.uname().nodename
    assert h.cpu_count == len(h.per_core_util_pct) or h.per_core_util_pct == ()
    assert h.cpu_count is not None and h.cpu_count >= 1
    assert h.mem_total_bytes is not None and h.mem_total_bytes > 0
    assert h.mem_used_bytes is not None and 0 < h.mem_used_bytes <= h.mem_total_bytes
    assert h.uptime_s is not None and h.uptime_s > 0
    assert h.load1 is not None and h.load1 >= 0
    assert rec.disks[0].path == "/" and rec.disks[0].total_bytes == shutil.disk_usage("/").total
    if os.environ.get("FAKE_NVML_STATE") is None and shutil.which("nvidia-smi") is None:
        # pynvml loads but finds no libnvidia-ml: a CPU node reports no GPUs, cleanly
        assert rec.gpu_source == "none" and rec.gpus == () and rec.errors == ()


def test_bundle_is_python_3_6_source_with_pynvml_inside() -> None:
    src = bundle(5.0, disk_paths=["/", "/data"]).decode()
    ast.parse(src, feature_version=(3, 6))
    assert "_FD_PYNVML = None" not in src
    assert '"disk_paths": ["/", "/data"]' in src
    # compressed source and this Python's bytecode of every module: about 270 kB in all
    assert len(src) < 300_000
    payload = stdin_payload(5.0)
    size, _, rest = payload.partition(b"\n")
    assert int(size) == len(rest)


def test_commands_quote_everything() -> None:
    assert shlex.split(python_command()) == ["python3", "-u", "-S", "-c", BOOTSTRAP]
    cmd = shell_command(2.5, disk_paths=["/", "/data dir"], once=True, env={"A_B": "x y"})
    assert cmd.startswith("env 'A_B=x y' sh -c ")
    assert cmd.endswith("fleetdeck-probe 2.5 once / '/data dir'")
    assert "@GPU_QUERY@" not in SHELL_FALLBACK and "memory.total" in SHELL_FALLBACK
    with pytest.raises(ValueError, match="bad variable name"):
        python_command(env={"A;rm": "x"})
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        bundle(0)
    sh, dash_c, script = shlex.split(launch_command(5, python="/opt/py 3/python3"))
    assert (sh, dash_c) == ("sh", "-c")
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = list(lexer)
    assert words[:4] == ["if", "command", "-v", "/opt/py 3/python3"]
    start = words.index("exec")
    assert words[start + 1:start + 6] == ["/opt/py 3/python3", "-u", "-S", "-c", BOOTSTRAP]


def test_bundle_compiles_the_source_where_its_bytecode_does_not_fit() -> None:
    """A node whose Python has another bytecode version runs the shipped source: same lines."""
    import subprocess
    import sys

    src = bundle(5.0, once=True).decode()
    magic = next(ln for ln in src.splitlines() if ln.startswith("_FD_MAGIC = "))
    other = src.replace(magic, "_FD_MAGIC = b'\\x00\\x00\\r\\n'")
    assert other != src
    samples = []
    for text in (src, other):
        p = subprocess.run([sys.executable, "-u", "-S", "-"], input=text.encode(),
                           capture_output=True, timeout=60, check=True)
        hello, sample = p.stdout.decode().splitlines()
        assert json.loads(hello)["type"] == "hello"
        rec = parse_line("local", sample)
        assert isinstance(rec, ProbeRecord)
        samples.append(json.loads(sample))
    assert samples[0].keys() == samples[1].keys()
    assert samples[0]["host"].keys() == samples[1]["host"].keys()

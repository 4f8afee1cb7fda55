"""The /proc and nvidia-smi parsers the probe ships to nodes, on captured text."""
# ruff: noqa: E501 (captured /proc/net/dev and nvidia-smi lines are kept verbatim)

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from collectors.parsers import nvidia_smi, procfs

STAT = """\
cpu  4705 150 1120 16250 520 0 37 0 0 0
cpu0 2355 75 560 8125 260 0 18 0 0 0
cpu1 2350 75 560 8125 260 0 19 0 0 0
intr 1462898 0 0 0
ctxt 2329482
btime 1700000000
"""

STAT_LATER = """\
cpu  4805 150 1220 16350 520 0 37 0 0 0
cpu0 2455 75 560 8125 260 0 18 0 0 0
cpu1 2350 75 660 8225 260 0 19 0 0 0
intr 1462898 0 0 0
"""

MEMINFO = """\
MemTotal:       16303428 kB
MemFree:         1034760 kB
MemAvailable:   10215408 kB
Buffers:          433400 kB
Cached:          8312304 kB
SwapTotal:       2097148 kB
SwapFree:        2000000 kB
HugePages_Total:       0
"""

NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 9999999   10000    0    0    0     0          0         0  9999999   10000    0    0    0     0       0          0
  eth0: 1000000    2000    0    0    0     0          0         0   500000    1000    0    0    0     0       0          0
docker0:  300000     400    0    0    0     0          0         0   200000     300    0    0    0     0       0          0
vethab12:  300000     400    0    0    0     0          0         0   200000     300    0    0    0     0       0          0
"""

CPUINFO_X86 = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R)   Gold 6248 CPU @ 2.50GHz
processor\t: 1
model name\t: Intel(R) Xeon(R)   Gold 6248 CPU @ 2.50GHz
"""

CPUINFO_ARM = """\
processor\t: 0
BogoMIPS\t: 50.00
CPU implementer\t: 0x41

Hardware\t: NVIDIA Jetson AGX Orin
"""

CID = "4f9c1c3b6d1e2a7f8b9c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c"


def test_proc_stat_busy_and_total_per_cpu() -> None:
    total, cores = procfs.parse_proc_stat(STAT)
    # busy = all - idle - iowait over the first 8 columns
    assert total == (4705 + 150 + 1120 + 37, 4705 + 150 + 1120 + 16250 + 520 + 37)
    assert len(cores) == 2
    assert cores[0] == (2355 + 75 + 560 + 18, 2355 + 75 + 560 + 8125 + 260 + 18)


def test_cpu_util_from_two_readings() -> None:
    t0, c0 = procfs.parse_proc_stat(STAT)
    t1, c1 = procfs.parse_proc_stat(STAT_LATER)
    # total: +100 user, +100 system, +100 idle -> 200 busy of 300
    assert procfs.cpu_util_pct(t0, t1) == pytest.approx(66.67, abs=0.01)
    assert procfs.cpu_util_pct(c0[0], c1[0]) == 100.0  # only user time moved
    assert procfs.cpu_util_pct(c0[1], c1[1]) == 50.0  # system +100, idle +100
    assert procfs.cpu_util_pct(None, t1) is None
    assert procfs.cpu_util_pct(t1, t1) is None  # no time passed: unknown, not 0


def test_meminfo_in_bytes_and_summary() -> None:
    info = procfs.parse_meminfo(MEMINFO)
    assert info["MemTotal"] == 16303428 * 1024
    assert info["HugePages_Total"] == 0
    s = procfs.memory_summary(info)
    assert s["mem_total_bytes"] == 16303428 * 1024
    assert s["mem_available_bytes"] == 10215408 * 1024
    assert s["mem_used_bytes"] == (16303428 - 10215408) * 1024
    assert s["swap_used_bytes"] == (2097148 - 2000000) * 1024


def test_meminfo_without_memavailable_uses_free_buffers_cached() -> None:
    old = "\n".join(ln for ln in MEMINFO.splitlines() if not ln.startswith("MemAvailable"))
    s = procfs.memory_summary(procfs.parse_meminfo(old))
    assert s["mem_available_bytes"] == (1034760 + 433400 + 8312304) * 1024


def test_net_totals_prefer_physical_interfaces() -> None:
    per = procfs.parse_net_dev(NET_DEV)
    assert per["eth0"] == (1000000, 500000)
    assert procfs.net_totals(per, ["eth0"]) == (1000000, 500000)
    # unknown physical set: everything but loopback
    assert procfs.net_totals(per, None) == (1600000, 900000)


def test_cpu_model_x86_and_arm() -> None:
    assert procfs.parse_cpu_model(CPUINFO_X86) == "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz"
    assert procfs.parse_cpu_model(CPUINFO_ARM) == "NVIDIA Jetson AGX Orin"
    assert procfs.parse_cpu_model("") is None


@pytest.mark.parametrize(
    "cgroup",
    [
        f"12:pids:/docker/{CID}\n11:memory:/docker/{CID}\n",  # cgroup v1
        f"0::/system.slice/docker-{CID}.scope\n",  # cgroup v2, systemd driver
        f"0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{CID}.scope\n",
        f"0::/machine.slice/libpod-{CID}.scope/container\n",
    ],
)
def test_container_id_from_cgroup(cgroup: str) -> None:
    assert procfs.container_id_from_cgroup(cgroup) == CID


def test_no_container_for_host_processes() -> None:
    assert procfs.container_id_from_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n") \
        is None
    assert procfs.container_id_from_cgroup("12:pids:/\n0::/\n") is None


def test_job_id_and_command_from_proc_bytes() -> None:
    env = b"PATH=/usr/bin\0FLEETDECK_JOB_ID=42\0HOME=/root\0"
    assert procfs.job_id_from_environ(env) == 42
    assert procfs.job_id_from_environ(b"PATH=/usr/bin\0") is None
    assert procfs.job_id_from_environ(b"FLEETDECK_JOB_ID=abc\0") is None
    assert procfs.command_from_cmdline(b"python\0train.py\0--lr\0\n0.1\0") == \
        "python train.py --lr 0.1"
    assert procfs.command_from_cmdline(b"") is None


SMI_GPUS = """\
0, GPU-11111111-2222-3333-4444-555555555555, NVIDIA A100-SXM4-80GB, 81920, 1024, 97, 45, 61, 312.55, 400.00, 1410, 3, 0, 1, 2, No, Disabled
1, GPU-66666666-7777-8888-9999-000000000000, Tesla T4, 15360, 0, 0, 0, 35, [N/A], 70.00, 300, [Not Supported], [Not Supported], [N/A], [N/A], [N/A], [N/A]
"""

SMI_APPS = """\
GPU-11111111-2222-3333-4444-555555555555, 4242, 1000
GPU-11111111-2222-3333-4444-555555555555, 4343, [N/A]
"""


def test_nvidia_smi_query_gpu() -> None:
    a, t4 = nvidia_smi.parse_query_gpu(SMI_GPUS)
    assert a == {
        "index": 0, "uuid": "GPU-11111111-2222-3333-4444-555555555555",
        "model": "NVIDIA A100-SXM4-80GB", "mem_total_bytes": 81920 * 2**20,
        "mem_used_bytes": 1024 * 2**20, "util_pct": 97.0, "mem_util_pct": 45.0, "temp_c": 61.0,
        "power_w": 312.55, "power_limit_w": 400.0, "sm_clock_mhz": 1410, "ecc_corrected": 3,
        "ecc_uncorrected": 0, "retired_pages": 3, "retired_pending": False,
        "remap_failure": None, "mig_mode": False, "remap_pending": None,
    }
    assert t4["power_w"] is None and t4["ecc_corrected"] is None
    assert t4["retired_pages"] is None and t4["retired_pending"] is None
    assert t4["mig_mode"] is None and t4["power_limit_w"] == 70.0


def test_nvidia_smi_apps_and_errors() -> None:
    procs = nvidia_smi.parse_query_apps(SMI_APPS)
    assert procs == [
        {"uuid": "GPU-11111111-2222-3333-4444-555555555555", "pid": 4242,
         "gpu_mem_used_bytes": 1000 * 2**20},
        {"uuid": "GPU-11111111-2222-3333-4444-555555555555", "pid": 4343,
         "gpu_mem_used_bytes": None},
    ]
    assert nvidia_smi.parse_query_apps("No running processes found\n") == []
    with pytest.raises(ValueError, match="expected 17 fields"):
        nvidia_smi.parse_query_gpu("NVIDIA-SMI has failed because it couldn't communicate\n")


@pytest.mark.parametrize(
    "path",
    ["collectors/parsers/procfs.py", "collectors/parsers/nvidia_smi.py",
     "collectors/probe/gpus.py", "collectors/probe/node.py"],
)
def test_node_side_modules_parse_as_python_3_6(path: str) -> None:
    src = (Path(__file__).resolve().parents[2] / path).read_text()
    tree = ast.parse(src, feature_version=(3, 6))
    futures = [a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and node.module == "__future__" for a in node.names]
    assert "annotations" not in futures  # a SyntaxError on 3.6

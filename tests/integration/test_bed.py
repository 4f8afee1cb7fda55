"""The test bed itself: real sshd nodes, per-node dockerd, one-node Slurm, fake NVML."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import asyncssh
import pynvml
import pytest

from tests.bed.dockerd import DockerDaemon
from tests.bed.fake_nvml import GIB, FakeGpu, FakeNvml, FakeNvmlState
from tests.bed.plugin import ImageLoader, NodeFactory
from tests.bed.procs import make_bed_dir, pid_alive, reap_stale_beds
from tests.bed.require import unavailable
from tests.bed.slurm import SlurmCluster
from tests.bed.ssh import fleet_config_toml

PYNVML_SOURCE = Path(str(pynvml.__file__)).read_text()

# Reads everything the fake library serves through the real pynvml API and prints JSON.
NVML_DUMP = r'''
import json, sys
import pynvml as n

def attempt(fn, *args):
    try:
        return fn(*args)
    except n.NVMLError as e:
        return "error:" + type(e).__name__

def text(value):
    return value.decode() if isinstance(value, bytes) else value

n.nvmlInit()
out = {"driver": n.nvmlSystemGetDriverVersion(), "cuda": n.nvmlSystemGetCudaDriverVersion(),
       "gpus": []}
for i in range(n.nvmlDeviceGetCount()):
    h = n.nvmlDeviceGetHandleByIndex(i)
    mem = n.nvmlDeviceGetMemoryInfo(h)
    mem2 = n.nvmlDeviceGetMemoryInfo(h, version=n.nvmlMemory_v2)
    util = n.nvmlDeviceGetUtilizationRates(h)
    out["gpus"].append({
        "name": n.nvmlDeviceGetName(h), "uuid": n.nvmlDeviceGetUUID(h),
        "serial": n.nvmlDeviceGetSerial(h), "bus_id": text(n.nvmlDeviceGetPciInfo(h).busId),
        "mem": [mem.total, mem.used, mem.free], "mem_v2": [mem2.total, mem2.used, mem2.reserved],
        "util": [util.gpu, util.memory],
        "temp": n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU),
        "power_mw": attempt(n.nvmlDeviceGetPowerUsage, h),
        "limit_mw": n.nvmlDeviceGetEnforcedPowerLimit(h),
        "sm_mhz": n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM),
        "ecc": [n.nvmlDeviceGetTotalEccErrors(h, e, c) for e in (0, 1) for c in (0, 1)],
        "retired": [len(n.nvmlDeviceGetRetiredPages(h, 0)), len(n.nvmlDeviceGetRetiredPages(h, 1)),
                    n.nvmlDeviceGetRetiredPagesPendingStatus(h)],
        "remap": list(n.nvmlDeviceGetRemappedRows(h)),
        "mig": attempt(n.nvmlDeviceGetMigMode, h),
        "procs": [[p.pid, p.usedGpuMemory] for p in n.nvmlDeviceGetComputeRunningProcesses(h)],
        "procs_v2": [[p.pid, p.usedGpuMemory]
                     for p in n.nvmlDeviceGetComputeRunningProcesses_v2(h)],
        "gprocs": [[p.pid, p.usedGpuMemory] for p in n.nvmlDeviceGetGraphicsRunningProcesses(h)],
        "fan": n.nvmlDeviceGetFanSpeed(h), "pstate": n.nvmlDeviceGetPerformanceState(h),
    })
n.nvmlShutdown()
print(json.dumps(out))
'''

GPU0 = FakeGpu(
    name="NVIDIA H100 80GB HBM3", mem_total_bytes=80 * GIB, mem_used_bytes=30 * GIB,
    util_pct=87, mem_util_pct=41, temp_c=71, power_w=512.5, power_limit_w=700,
    sm_clock_mhz=1980, ecc_corrected=3, ecc_uncorrected=1, ecc_corrected_aggregate=10,
    retired_pages_sbe=2, retired_pending=True, remapped_rows_corrected=4, remap_failure=True,
    processes=((4242, 20 * GIB), (4343, 10 * GIB)), graphics_processes=((77, GIB),),
    fan_pct=55, pstate=2,
)
GPU1 = FakeGpu(util_pct=3, errors={"power": "NOT_SUPPORTED", "mig_mode": "NOT_SUPPORTED"})


def expected_dump(state: FakeNvmlState) -> dict[str, object]:
    gpus = []
    for i, raw in enumerate(state.gpus):
        g = raw.derived(i)
        err = dict(g.errors)
        gpus.append({
            "name": g.name, "uuid": g.uuid, "serial": g.serial, "bus_id": g.pci_bus_id,
            "mem": [g.mem_total_bytes, g.mem_used_bytes, g.mem_total_bytes - g.mem_used_bytes],
            "mem_v2": [g.mem_total_bytes, g.mem_used_bytes, g.mem_reserved_bytes],
            "util": [g.util_pct, g.mem_util_pct], "temp": g.temp_c,
            "power_mw": "error:NVMLError_NotSupported" if "power" in err
            else round(g.power_w * 1000),
            "limit_mw": round(g.power_limit_w * 1000), "sm_mhz": g.sm_clock_mhz,
            "ecc": [g.ecc_corrected,
                    g.ecc_corrected if g.ecc_corrected_aggregate is None
                    else g.ecc_corrected_aggregate,
                    g.ecc_uncorrected,
                    g.ecc_uncorrected if g.ecc_uncorrected_aggregate is None
                    else g.ecc_uncorrected_aggregate],
            "retired": [g.retired_pages_sbe, g.retired_pages_dbe, int(g.retired_pending)],
            "remap": [g.remapped_rows_corrected, g.remapped_rows_uncorrected,
                      int(g.remap_pending), int(g.remap_failure)],
            "mig": "error:NVMLError_NotSupported" if "mig_mode" in err
            else [int(g.mig_mode), int(g.mig_mode)],
            "procs": [list(p) for p in g.processes],
            "procs_v2": [list(p) for p in g.processes],
            "gprocs": [list(p) for p in g.graphics_processes],
            "fan": g.fan_pct, "pstate": g.pstate,
        })
    return {"driver": state.driver_version, "cuda": state.cuda_driver_version, "gpus": gpus}


def run_python(code: str, env: dict[str, str], stdin: str | None = None) -> str:
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                            input=stdin, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


# ---------------------------------------------------------------- ssh


@pytest.mark.ssh
async def test_ssh_login_with_known_hosts(ssh_nodes: NodeFactory) -> None:
    a, b = ssh_nodes(2)
    assert a.host != b.host and a.host.startswith("127.0.0.")
    for node in (a, b):
        async with asyncssh.connect(**node.asyncssh_options()) as conn:
            result = await conn.run("echo $FLEETDECK_BED_NODE; id -u", check=True)
            assert result.stdout == f"{node.name}\n0\n"
            host_key = conn.get_server_host_key()
            assert host_key is not None
            assert host_key.get_fingerprint("sha256") == node.host_key_fingerprint


@pytest.mark.ssh
async def test_wrong_host_key_is_refused(ssh_nodes: NodeFactory, tmp_path: Path) -> None:
    a, b = ssh_nodes(2)
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[{a.host}]:{a.port} {b.host_public_key}\n")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await asyncssh.connect(**{**a.asyncssh_options(), "known_hosts": str(wrong)})
    openssh = await asyncio.to_thread(
        subprocess.run,
        ["ssh", "-p", str(a.port), "-i", str(a.identity_file), "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={wrong}", "-o", "StrictHostKeyChecking=yes",
         f"root@{a.host}", "true"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert openssh.returncode == 255
    assert "HOST IDENTIFICATION HAS CHANGED" in openssh.stderr


@pytest.mark.ssh
def test_known_hosts_fingerprint_and_config(ssh_nodes: NodeFactory) -> None:
    nodes = ssh_nodes(2)
    lines = nodes[0].known_hosts.read_text().splitlines()
    for node in nodes:
        assert node.known_hosts_line in lines
        listed = subprocess.run(["ssh-keygen", "-lf", f"{node.host_key_path}.pub"],
                                capture_output=True, text=True, check=True).stdout
        assert listed.split()[1] == node.host_key_fingerprint
    config = tomllib.loads(fleet_config_toml(nodes))
    assert config["ssh"]["known_hosts"] == str(nodes[0].known_hosts)
    assert [(n["name"], n["host"], n["port"], n["user"], n["transport"])
            for n in config["nodes"]] == [
        (n.name, n.host, n.port, "root", "ssh") for n in nodes]
    assert all("docker_socket" not in n for n in config["nodes"])


@pytest.mark.ssh
async def test_stop_kills_sessions_and_start_restores(ssh_nodes: NodeFactory) -> None:
    (node,) = ssh_nodes(1, fresh=True)
    conn = await asyncssh.connect(**node.asyncssh_options())
    proc = await conn.create_process("sleep 60")
    node.stop()
    assert not node.is_running
    await asyncio.wait_for(conn.wait_closed(), timeout=10)
    assert proc.exit_status is None
    with pytest.raises(OSError):
        await asyncssh.connect(**node.asyncssh_options())
    port = node.port
    node.start()
    assert node.is_running and node.port == port
    async with asyncssh.connect(**node.asyncssh_options()) as again:
        assert (await again.run("echo back", check=True)).stdout == "back\n"


# ---------------------------------------------------------------- docker


@pytest.mark.docker
def test_docker_run_on_node_daemon(ssh_nodes: NodeFactory, docker_image: ImageLoader) -> None:
    import docker

    (node,) = ssh_nodes(1, docker=True)
    assert node.docker_socket is not None
    image = docker_image(node)
    client = docker.DockerClient(base_url=f"unix://{node.docker_socket}", version="auto")
    try:
        assert client.containers.run(image, ["echo", "hello"], remove=True) == b"hello\n"
        container = client.containers.run(image, ["sleep", "60"], detach=True)
        try:
            container.reload()
            pid = container.attrs["State"]["Pid"]
            assert pid > 0 and pid_alive(pid)
            cgroup = Path(f"/proc/{pid}/cgroup").read_text()
            assert container.id in cgroup
        finally:
            container.remove(force=True)
    finally:
        client.close()
    toml = tomllib.loads(fleet_config_toml([node]))
    assert toml["nodes"][0]["docker_socket"] == str(node.docker_socket)


@pytest.mark.docker
def test_two_node_daemons_are_independent(
    ssh_nodes: NodeFactory, docker_image: ImageLoader
) -> None:
    a, b = ssh_nodes(2, docker=True)
    assert isinstance(a.docker, DockerDaemon) and isinstance(b.docker, DockerDaemon)
    assert a.docker_socket != b.docker_socket
    image = docker_image(a)
    docker_image(b)
    ca, cb = a.docker.client(), b.docker.client()
    try:
        container = ca.containers.run(image, ["sleep", "60"], detach=True, name="only-on-a")
        try:
            assert "only-on-a" in [c.name for c in ca.containers.list()]
            assert "only-on-a" not in [c.name for c in cb.containers.list(all=True)]
        finally:
            container.remove(force=True)
    finally:
        ca.close()
        cb.close()


@pytest.mark.docker
@pytest.mark.ssh
def test_docker_cli_over_ssh_uses_node_daemon(
    ssh_nodes: NodeFactory, docker_image: ImageLoader
) -> None:
    (node,) = ssh_nodes(1, docker=True)
    image = docker_image(node)
    result = node.run(f"echo $DOCKER_HOST; docker run --rm {image} echo from-container")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"unix://{node.docker_socket}\nfrom-container\n"


# ---------------------------------------------------------------- slurm


@pytest.mark.slurm
def test_slurm_gres_job_runs_to_completion(slurm_cluster: SlurmCluster) -> None:
    c = slurm_cluster
    job = c.sbatch("--gres=gpu:1", wrap="echo gpus=$CUDA_VISIBLE_DEVICES")
    info = c.wait_job(job)
    assert (info["JobState"], info["ExitCode"], info["NodeList"]) == (
        "COMPLETED", "0:0", c.node_name)
    assert info["TresPerNode"] == "gres:gpu:1"
    out = (c.jobs_dir / f"slurm-{job}.out").read_text()
    assert out == ("gpus=0\n" if c.gpu_devices else "gpus=\n")
    failed = c.wait_job(c.sbatch(wrap="exit 3"))
    assert (failed["JobState"], failed["ExitCode"]) == ("FAILED", "3:0")
    records = {r["JobId"]: r for r in c.jobcomp_records()}
    assert records[str(job)]["JobState"] == "COMPLETED"
    assert records[failed["JobId"]]["ExitCode"] == "3:0"


@pytest.mark.slurm
def test_slurm_squeue_and_scancel(slurm_cluster: SlurmCluster) -> None:
    c = slurm_cluster
    job = c.sbatch("--gres=gpu:2", wrap="sleep 60")
    c.wait_job(job, states=("RUNNING",))
    queue = c.run("squeue", "-h", "-j", str(job), "-o", "%i|%T|%b|%P").stdout.strip()
    assert queue == f"{job}|RUNNING|gres:gpu:2|{c.partition}"
    c.run("scancel", str(job))
    assert c.wait_job(job)["JobState"] == "CANCELLED"
    sacct = c.run("sacct", "-j", str(job), check=False)
    assert "accounting storage is disabled" in (sacct.stdout + sacct.stderr)


@pytest.mark.slurm
@pytest.mark.ssh
def test_slurm_commands_over_ssh(ssh_nodes: NodeFactory, slurm_cluster: SlurmCluster) -> None:
    (node,) = ssh_nodes(1, slurm=True)
    submitted = node.run("sbatch --parsable --gres=gpu:1 --wrap 'echo over-ssh'")
    assert submitted.returncode == 0, submitted.stderr
    job = int(submitted.stdout.strip())
    assert slurm_cluster.wait_job(job)["JobState"] == "COMPLETED"
    seen = node.run(f"squeue -h -t all -j {job} -o %T; sinfo -h -o %P")
    assert seen.stdout.split() == ["COMPLETED", f"{slurm_cluster.partition}*"]
    assert (slurm_cluster.jobs_dir / f"slurm-{job}.out").read_text() == "over-ssh\n"


# ---------------------------------------------------------------- fake NVML


def test_pynvml_reads_back_fake_state(fake_nvml: FakeNvml) -> None:
    state = FakeNvmlState(gpus=(GPU0, GPU1), driver_version="535.129.03",
                          cuda_driver_version=12020)
    fake_nvml.replace(state)
    assert json.loads(run_python(NVML_DUMP, fake_nvml.env)) == expected_dump(state)


def test_pynvml_sees_live_changes(fake_nvml: FakeNvml) -> None:
    code = (
        "import pynvml as n, sys\n"
        "n.nvmlInit(); h = n.nvmlDeviceGetHandleByIndex(0)\n"
        "print(n.nvmlDeviceGetUtilizationRates(h).gpu, flush=True)\n"
        "sys.stdin.readline()\n"
        "print(n.nvmlDeviceGetUtilizationRates(h).gpu)\n"
        "print([p.pid for p in n.nvmlDeviceGetComputeRunningProcesses(h)])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **fake_nvml.env},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline() == "0\n"
    fake_nvml.set(0, util_pct=93, processes=((1001, GIB),))
    out, _ = proc.communicate("go\n", timeout=30)
    assert out == "93\n[1001]\n"


def test_pynvml_errors_map_to_exceptions(fake_nvml: FakeNvml) -> None:
    fake_nvml.set(init_error="DRIVER_NOT_LOADED")
    code = (
        "import pynvml as n\n"
        "try:\n    n.nvmlInit()\n"
        "except n.NVMLError_DriverNotLoaded as e:\n    print('driver-not-loaded', e)\n"
    )
    assert run_python(code, fake_nvml.env) == "driver-not-loaded Driver Not Loaded\n"
    fake_nvml.set(init_error=None)
    fake_nvml.set(1, errors={"handle": "GPU_IS_LOST", "memory": "NOT_SUPPORTED"})
    fake_nvml.set(0, errors={"memory": "NOT_SUPPORTED"})
    code = (
        "import pynvml as n\n"
        "n.nvmlInit()\n"
        "try:\n    n.nvmlDeviceGetMemoryInfo(n.nvmlDeviceGetHandleByIndex(0))\n"
        "except n.NVMLError_NotSupported:\n    print('not-supported')\n"
        "try:\n    n.nvmlDeviceGetHandleByIndex(1)\n"
        "except n.NVMLError_GpuIsLost:\n    print('lost')\n"
    )
    assert run_python(code, fake_nvml.env) == "not-supported\nlost\n"


def test_pynvml_xid_events(fake_nvml: FakeNvml) -> None:
    code = (
        "import pynvml as n\n"
        "n.nvmlInit(); es = n.nvmlEventSetCreate()\n"
        "n.nvmlDeviceRegisterEvents(n.nvmlDeviceGetHandleByIndex(1),"
        " n.nvmlEventTypeXidCriticalError, es)\n"
        "for _ in range(2):\n"
        "    d = n.nvmlEventSetWait(es, 5000)\n"
        "    print(n.nvmlDeviceGetIndex(d.device), d.eventType, d.eventData)\n"
        "try:\n    n.nvmlEventSetWait(es, 50)\n"
        "except n.NVMLError_Timeout:\n    print('timeout')\n"
    )
    fake_nvml.xid(0, 13)  # GPU 0 is not registered: never delivered
    fake_nvml.xid(1, 79)
    fake_nvml.xid(1, 48)
    assert run_python(code, fake_nvml.env) == "1 8 79\n1 8 48\ntimeout\n"


def test_pynvml_events_without_replay_start_at_registration(fake_nvml: FakeNvml) -> None:
    fake_nvml.set(event_replay=False)
    fake_nvml.xid(0, 31)  # queued before the event set exists: not delivered
    code = (
        "import pynvml as n, sys\n"
        "n.nvmlInit(); es = n.nvmlEventSetCreate()\n"
        "n.nvmlDeviceRegisterEvents(n.nvmlDeviceGetHandleByIndex(0),"
        " n.nvmlEventTypeXidCriticalError, es)\n"
        "print('registered', flush=True); sys.stdin.readline()\n"
        "print(n.nvmlEventSetWait(es, 5000).eventData)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **fake_nvml.env},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "registered\n"
    fake_nvml.xid(0, 94)
    out, _ = proc.communicate("go\n", timeout=30)
    assert out == "94\n"


def test_no_library_without_fake_env() -> None:
    code = (
        "import pynvml as n\n"
        "try:\n    n.nvmlInit()\n"
        "except n.NVMLError_LibraryNotFound:\n    print('no-library')\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "FAKE_NVML_STATE")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.stdout == "no-library\n"


@pytest.mark.ssh
def test_fake_gpus_over_ssh_with_shipped_pynvml(ssh_nodes: NodeFactory) -> None:
    state = FakeNvmlState(gpus=(GPU0, GPU1))
    gpu_node, plain_node = ssh_nodes(2, fake_nvml={0: state})
    assert gpu_node.nvml is not None and plain_node.nvml is None
    # Ship pynvml on stdin the way the probe will: the node's python has no pynvml installed.
    shipped = (
        "import sys, types\n"
        "mod = sys.modules['pynvml'] = types.ModuleType('pynvml')\n"
        f"exec({PYNVML_SOURCE!r}, mod.__dict__)\n"
    )
    result = gpu_node.run("python3 -", input_text=shipped + NVML_DUMP)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected_dump(state)
    gpu_node.nvml.set(0, util_pct=12)
    again = json.loads(gpu_node.run("python3 -", input_text=shipped + NVML_DUMP).stdout)
    assert again["gpus"][0]["util"] == [12, GPU0.mem_util_pct]
    probe = shipped + (
        "import pynvml as n\n"
        "try:\n    n.nvmlInit()\n"
        "except n.NVMLError_LibraryNotFound:\n    print('no-gpus')\n"
    )
    assert plain_node.run("python3 -", input_text=probe).stdout == "no-gpus\n"


# ---------------------------------------------------------------- housekeeping


def test_unavailable_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        unavailable("thing missing")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="thing missing"):
        unavailable("thing missing")


def test_stale_bed_daemons_are_reaped() -> None:
    bed = make_bed_dir()
    daemon = subprocess.Popen(["sh", "-c", "sleep 300; :", str(bed)], start_new_session=True)
    (bed / "x.pid").write_text(f"{daemon.pid}\n")
    orphan_owner = subprocess.Popen(["true"])
    orphan_owner.wait()
    (bed / "owner.pid").write_text(f"{orphan_owner.pid}\n")
    assert bed in reap_stale_beds()
    assert daemon.wait(timeout=10) != 0
    deadline = time.monotonic() + 5
    while bed.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not bed.exists()


@pytest.mark.ssh
@pytest.mark.docker
def test_crash_kills_detached_processes_and_containers(
    ssh_nodes: NodeFactory, docker_image: ImageLoader
) -> None:
    (node,) = ssh_nodes(1, docker=True, fresh=True)
    assert node.docker is not None
    image = docker_image(node)
    started = node.run("setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!")
    detached = int(started.stdout.strip())
    container = node.docker.cli("run", "-d", image, "sleep", "300").strip()
    container_pid = int(node.docker.cli("inspect", "-f", "{{.State.Pid}}", container))
    node.stop()
    assert pid_alive(detached) and pid_alive(container_pid)  # sshd died, the host did not
    node.crash()
    deadline = time.monotonic() + 10
    while (pid_alive(detached) or pid_alive(container_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(detached) and not pid_alive(container_pid)
    node.start()
    assert node.is_running and node.docker.is_running
    assert node.run("echo up").stdout == "up\n"

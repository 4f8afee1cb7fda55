"""The real probe bundle, run as a node would run it (`python3 -u -`, `sh -c`), against the fake
libnvidia-ml from the test bed: every GPU field arrives, unsupported ones as None, a driver that
is not loaded gives no GPUs and a note, GPU processes are attributed to their job and container.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collectors.ingest import IngestBuffer
from collectors.local import LocalProbe
from collectors.models import GpuSample, ProbeHello, ProbeRecord
from collectors.probe import bundle, parse_line, shell_command
from collectors.store import Store
from tests.bed.fake_nvml import GIB, FakeGpu, FakeNvml, FakeNvmlState, build
from tests.bed.require import require_gcc

PYTHON = shutil.which("python3") or sys.executable  # the "node's" python, not the venv's
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
UNSUPPORTED = {area: "NOT_SUPPORTED" for area in (
    "memory", "utilization", "temperature", "power", "power_limit", "clock", "ecc",
    "retired_pages", "retired_pending", "remapped_rows", "mig_mode", "processes",
    "graphics_processes", "events")}
H100 = FakeGpu(
    name="NVIDIA H100 80GB HBM3", mem_total_bytes=80 * GIB, mem_used_bytes=12 * GIB,
    util_pct=87, mem_util_pct=33, temp_c=71, power_w=512.5, power_limit_w=700.0,
    sm_clock_mhz=1980, ecc_corrected=5, ecc_uncorrected=2, retired_pages_sbe=1,
    retired_pages_dbe=2, retired_pending=True, remap_failure=True, mig_mode=True,
    remap_pending=True,
)


@pytest.fixture(scope="module")
def nvml_lib() -> Path:
    require_gcc()
    return build()


@pytest.fixture
def fake(nvml_lib: Path, tmp_path: Path) -> FakeNvml:
    return FakeNvml(tmp_path / "nvml.state", nvml_lib, FakeNvmlState(gpus=(FakeGpu(),)))


def node_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_LIBRARY_PATH", "FAKE_NVML_STATE", "PYTHONPATH")}
    env["PATH"] = BASE_PATH + ":" + str(Path(PYTHON).parent)
    env.update(extra)
    return env


def run_once(extra_env: Mapping[str, str], disk_paths: tuple[str, ...] = ("/",)) -> ProbeRecord:
    """The bundle via `python3 -u -` in a scratch dir (nothing of the repo importable)."""
    with contextlib.chdir("/"):
        res = subprocess.run([PYTHON, "-u", "-"], input=bundle(1.0, disk_paths=disk_paths,
                                                             once=True),
                             capture_output=True, env=node_env(extra_env), timeout=60)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    lines = res.stdout.splitlines()
    assert len(lines) == 2, res.stdout[-2000:]
    hello = parse_line("n1", lines[0])
    assert isinstance(hello, ProbeHello) and hello.mode == "python"
    rec = parse_line("n1", lines[1])
    assert isinstance(rec, ProbeRecord)
    return rec


@contextlib.contextmanager
def child(env: Mapping[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "300"], env={**os.environ, **(env or {})})
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_every_gpu_field_arrives_and_unsupported_fields_are_none(fake: FakeNvml) -> None:
    fake.replace([H100, FakeGpu(errors=UNSUPPORTED),
                  FakeGpu(name="Tesla T4", errors={"power": "GPU_IS_LOST"})])
    fake.xid(1, 79)  # GPU 1 cannot register for events: not visible
    fake.xid(2, 31)
    rec = run_once(fake.env)
    assert rec.gpu_source == "nvml" and rec.driver_version == "550.54.15"
    g0, g1, g2 = rec.gpus
    assert g0 == GpuSample(
        ts=rec.ts, node="n1", gpu_index=0, uuid="GPU-fdbed000-0000-4000-8000-000000000000",
        model="NVIDIA H100 80GB HBM3", mem_total_bytes=80 * GIB, mem_used_bytes=12 * GIB,
        util_pct=87.0, mem_util_pct=33.0, temp_c=71.0, power_w=512.5, power_limit_w=700.0,
        sm_clock_mhz=1980, ecc_corrected=5, ecc_uncorrected=2, retired_pages=3,
        retired_pending=True, remap_failure=True, mig_mode=True, remap_pending=True,
    )
    # NOT_SUPPORTED everywhere: identity known, every measurement None, and no noise
    assert (g1.gpu_index, g1.uuid, g1.model) == (1, "GPU-fdbed000-0000-4000-8000-000000000001",
                                                 "NVIDIA A100-SXM4-80GB")
    for field in ("mem_total_bytes", "mem_used_bytes", "util_pct", "mem_util_pct", "temp_c",
                  "power_w", "power_limit_w", "sm_clock_mhz", "ecc_corrected",
                  "ecc_uncorrected", "retired_pages", "retired_pending", "remap_failure",
                  "mig_mode", "remap_pending"):
        assert getattr(g1, field) is None, field
    # a real failure is None as well, and said once
    assert g2.power_w is None and g2.model == "Tesla T4" and g2.temp_c == 35.0
    assert rec.errors == ("gpu2: GPU is lost (power_w)",)
    kinds = {(e.gpu_index, e.kind, e.code) for e in rec.events}
    assert kinds == {(2, "xid", 31), (0, "retired_pending", None), (0, "remap_failure", None)}


def test_driver_not_loaded_gives_no_gpus_and_a_note(fake: FakeNvml) -> None:
    if shutil.which("nvidia-smi", path=BASE_PATH):
        pytest.skip("a real nvidia-smi is installed here; the fallback would answer")
    fake.set(init_error="DRIVER_NOT_LOADED")
    rec = run_once(fake.env)
    assert rec.gpu_source == "none" and rec.gpus == () and rec.processes == ()
    assert rec.errors == ("nvml: Driver Not Loaded",)
    assert rec.host.mem_total_bytes and rec.host.cpu_count  # host telemetry still there


def test_a_node_without_nvml_or_nvidia_smi_reports_no_gpus_cleanly(tmp_path: Path) -> None:
    if shutil.which("nvidia-smi", path=BASE_PATH):
        pytest.skip("a real nvidia-smi is installed here")
    rec = run_once({"LD_LIBRARY_PATH": str(tmp_path)}, disk_paths=("/", str(tmp_path)))
    assert (rec.gpu_source, rec.gpus, rec.errors) == ("none", (), ())
    assert [d.path for d in rec.disks] == ["/", str(tmp_path)]


def test_gpu_processes_are_attributed_to_their_job(fake: FakeNvml) -> None:
    with child({"FLEETDECK_JOB_ID": "1234"}) as job, child() as stray:
        fake.replace([FakeGpu(processes=((job.pid, 3 * GIB),)),
                      FakeGpu(processes=((stray.pid, GIB),),
                              graphics_processes=((stray.pid, GIB), (999_999_999, 5)))])
        rec = run_once(fake.env)
    by_pid = {p.pid: p for p in rec.processes}
    assert set(by_pid) == {job.pid, stray.pid, 999_999_999}
    p = by_pid[job.pid]
    assert (p.gpu_index, p.uuid, p.gpu_mem_used_bytes, p.job_id, p.command) == \
        (0, rec.gpus[0].uuid, 3 * GIB, 1234, "sleep 300")
    assert by_pid[stray.pid].job_id is None and by_pid[stray.pid].gpu_index == 1
    gone = by_pid[999_999_999]  # NVML lists a pid this host's /proc does not have
    assert (gone.command, gone.container_id, gone.job_id) == (None, None, None)


def _docker_like_cgroup(cid: str) -> Path | None:
    """A real cgroup whose path looks like Docker's (cgroup v1 `.../docker/<id>`, or v2
    `docker-<id>.scope`), or None when this machine does not let us make one."""
    root = Path("/sys/fs/cgroup")
    candidates = [(root / "pids", root / "pids" / f"fdtest-{cid[:8]}" / "docker" / cid),
                  (root, root / f"fdtest-{cid[:8]}" / f"docker-{cid}.scope")]
    for hierarchy, path in candidates:
        if not (hierarchy / "cgroup.procs").exists():
            continue
        try:
            path.mkdir(parents=True)
        except OSError:
            continue
        return path
    return None


def test_gpu_process_in_a_container_cgroup_gets_the_container_id(fake: FakeNvml) -> None:
    cid = secrets.token_hex(32)
    cg = _docker_like_cgroup(cid)
    if cg is None:
        pytest.skip("no writable cgroup hierarchy here (needs root)")
    try:
        with child() as proc:
            (cg / "cgroup.procs").write_text(f"{proc.pid}\n")
            fake.replace([FakeGpu(processes=((proc.pid, GIB),))])
            rec = run_once(fake.env)
            buf = IngestBuffer()
            buf.add(rec)
            buf.add_rows("container_samples", [{"ts": rec.ts, "node": "n1", "container_id": cid,
                                                "labels": {"fleetdeck.job": "77"}}])
            with Store.open(Path(fake.state_path).parent / "fd.duckdb") as store:
                buf.flush(store)
                got = store.con.execute("SELECT pid, container_id, job_id "
                                        "FROM gpu_processes").fetchall()
    finally:
        for path in (cg, *cg.parents[:2]):
            if path.name.startswith(("fdtest-", "docker", cid)):
                with contextlib.suppress(OSError):
                    path.rmdir()
    assert rec.processes[0].container_id == cid
    assert got == [(proc.pid, cid, 77)]


def write_fake_nvidia_smi(bin_dir: Path) -> None:
    """A stand-in `nvidia-smi` binary printing what a 2-GPU node's driver would."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        "  --query-gpu=driver_version) echo 535.104.05 ;;\n"
        "  --query-gpu=*) cat <<'EOF'\n"
        "0, GPU-aaaaaaaa-0000-0000-0000-000000000000, NVIDIA L40S, 46068, 2048, 64, 12, 58, "
        "201.37, 350.00, 2520, 0, 0, 0, 0, No, [N/A]\n"
        "1, GPU-bbbbbbbb-0000-0000-0000-000000000000, NVIDIA L40S, 46068, 0, 0, 0, 31, "
        "[N/A], 350.00, 210, [N/A], [N/A], [N/A], [N/A], [N/A], Disabled\n"
        "EOF\n"
        "  ;;\n"
        "  --query-compute-apps=*) echo \"GPU-bbbbbbbb-0000-0000-0000-000000000000, $FD_PID, "
        "512\" ;;\n"
        "  *) echo 'unknown args' >&2; exit 2 ;;\n"
        "esac\n"
    )
    script.chmod(0o755)


def test_nvidia_smi_fallback_in_the_python_and_the_shell_probe(tmp_path: Path) -> None:
    write_fake_nvidia_smi(tmp_path / "bin")
    with child({"FLEETDECK_JOB_ID": "5"}) as proc:
        env = {"LD_LIBRARY_PATH": str(tmp_path), "FD_PID": str(proc.pid),
               "PATH": f"{tmp_path / 'bin'}:{BASE_PATH}:{Path(PYTHON).parent}"}
        py = run_once(env)
        with contextlib.chdir("/"):
            res = subprocess.run(["sh", "-c", shell_command(1.0, once=True)], env=node_env(env),
                                 capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr.decode()
    hello, line = res.stdout.splitlines()
    sh_hello = parse_line("n1", hello)
    assert isinstance(sh_hello, ProbeHello) and sh_hello.mode == "shell"
    sh = parse_line("n1", line)
    assert isinstance(sh, ProbeRecord)
    assert py.gpu_source == sh.gpu_source == "nvidia-smi"
    assert py.driver_version == "535.104.05"
    a = py.gpus[0]
    assert (a.model, a.mem_total_bytes, a.mem_used_bytes, a.util_pct, a.temp_c, a.power_w,
            a.sm_clock_mhz, a.retired_pages, a.retired_pending, a.mig_mode) == \
        ("NVIDIA L40S", 46068 * 2**20, 2048 * 2**20, 64.0, 58.0, 201.37, 2520, 0, False, None)
    assert py.gpus[1].power_w is None and py.gpus[1].mig_mode is False
    for g_py, g_sh in zip(py.gpus, sh.gpus, strict=True):  # both probes agree field by field
        assert g_py == GpuSample(**{**{f: getattr(g_sh, f) for f in GpuSample.__slots__},
                                    "ts": g_py.ts})
    for rec in (py, sh):
        (p,) = rec.processes
        assert (p.pid, p.gpu_index, p.gpu_mem_used_bytes) == (proc.pid, 1, 512 * 2**20)
    assert py.processes[0].job_id == 5 and py.processes[0].command == "sleep 300"
    assert sh.host.mem_total_bytes == py.host.mem_total_bytes
    assert sh.host.cpu_count == py.host.cpu_count


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out |= {int(x) for x in (task / "children").read_text().split()}
    return out


async def test_local_probe_streams_samples_sees_changes_and_stops(fake: FakeNvml,
                                                                  tmp_path: Path) -> None:
    fake.replace([FakeGpu(ecc_uncorrected=1), FakeGpu(errors={"power": "NOT_SUPPORTED"})])
    probe = LocalProbe(0.3, node="local", env={**fake.env, "PATH": BASE_PATH})
    seen: list[ProbeRecord] = []
    async with probe:
        stream = probe.records()
        hello = await asyncio.wait_for(anext(stream), 30)
        assert isinstance(hello, ProbeHello) and hello.pid == probe.pid
        while len(seen) < 3:
            rec = await asyncio.wait_for(anext(stream), 30)
            assert isinstance(rec, ProbeRecord)
            seen.append(rec)
        assert _children(probe.pid or 0) == set()  # no process started per sample
        fake.set(0, ecc_uncorrected=4, util_pct=55)
        fake.xid(1, 48)
        while True:
            rec = await asyncio.wait_for(anext(stream), 30)
            assert isinstance(rec, ProbeRecord)
            seen.append(rec)
            if rec.gpus[0].ecc_uncorrected == 4:
                break
    # closing stdin stopped it: it exited by itself (0), it was not killed
    assert probe.returncode == 0, probe.stderr_tail
    assert [r.seq for r in seen] == list(range(1, len(seen) + 1))
    assert all(b.ts - a.ts == pytest.approx(0.3, abs=0.25) for a, b in itertools.pairwise(seen))
    last = seen[-1]
    assert last.gpus[0].util_pct == 55.0 and last.gpus[1].power_w is None
    events = [e for r in seen for e in r.events]
    assert sorted((e.gpu_index, e.kind, e.code) for e in events) == \
        [(0, "ecc_uncorrected", 3), (1, "xid", 48)]
    # and into the store: one batch, NULL where the driver had no answer
    buf = IngestBuffer()
    buf.add_many(seen)
    with Store.open(tmp_path / "fd.duckdb") as store:
        written = buf.flush(store)
        assert written["gpu_samples"] == 2 * len(seen)
        assert written["gpu_events"] == 2
        nulls = store.con.execute(
            "SELECT count(*) FROM gpu_samples WHERE gpu_index = 1 AND power_w IS NULL "
            "AND temp_c IS NOT NULL").fetchone()
        assert nulls == (len(seen),)
        ev = store.con.execute("SELECT kind, code, ts FROM gpu_events ORDER BY kind").fetchall()
        assert [(k, c) for k, c, _ in ev] == [("ecc_uncorrected", 3), ("xid", 48)]
        assert ev[0][2] == datetime.fromtimestamp(last.ts, UTC).replace(tzinfo=None)


def test_plain_bundle_exits_when_its_reader_goes_away() -> None:
    proc = subprocess.Popen([PYTHON, "-u", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=node_env({}), cwd="/")
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(bundle(0.2))
    proc.stdin.close()  # `python3 -u -` needs EOF before it runs the script
    assert json.loads(proc.stdout.readline())["type"] == "hello"
    proc.stdout.close()  # the SSH channel went away
    assert proc.wait(timeout=10) == 0  # EPIPE on the next line ends it quietly
    assert proc.stderr is not None and proc.stderr.read() == b""


def test_shell_probe_in_link_mode_loops_and_stops_with_stdin(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sh", "-c", shell_command(0.2, stdin_link=True)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=node_env({"PATH": BASE_PATH}), cwd="/")
    assert proc.stdin is not None and proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(4)]
    recs = [parse_line("n", ln) for ln in lines[1:]]
    assert [r.seq for r in recs if isinstance(r, ProbeRecord)] == [1, 2, 3]
    assert all(isinstance(r, ProbeRecord) and r.host.cpu_util_pct is not None for r in recs)
    proc.stdin.close()
    assert proc.wait(timeout=5) == 128 + signal.SIGTERM  # its stdin watcher ended it

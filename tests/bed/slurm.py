"""A one-node Slurm cluster on this machine: munged + slurmctld + slurmd, all under one dir.

Nothing global is touched: slurm.conf lives under the cluster dir and is found through the
SLURM_CONF environment variable (SSH bed nodes created with slurm=True get it via sshd SetEnv),
munged listens on its own socket (slurm.conf AuthInfo=socket=...), ports are picked free.

The node declares `gpus` GPUs as gres (`Gres=gpu:N`) backed by fake character devices
(<dir>/dev/nvidiaN, major 195) so jobs get CUDA_VISIBLE_DEVICES/SLURM_JOB_GPUS; where mknod is
not allowed the gres is count-only. Without slurmdbd there is no `sacct` data: finished jobs stay
visible to `scontrol show job` / `squeue -t all` for MinJobAge (300 s) and every finished job is
appended to the jobcomp/filetxt file (`jobcomp_path`, `jobcomp_records()`), which carries
JobState and ExitCode. start() runs one warm-up job (name fdbed-warmup) so the scheduler is live.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.bed.procs import Daemon, free_port, kill_mentioning, wait_for

PARTITION = "debug"
FINISHED_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
     "BOOT_FAIL", "DEADLINE"}
)
_KV = re.compile(r"(\S+?)=(\S*)")


def parse_kv(text: str) -> dict[str, str]:
    """Parse Slurm's `Key=Value Key=Value` one-line records (values without spaces)."""
    return {m.group(1): m.group(2) for m in _KV.finditer(text)}


class SlurmCluster:
    def __init__(self, root: Path, *, node_name: str = "fdbed1", gpus: int = 4, cpus: int = 8,
                 partition: str = PARTITION) -> None:
        self.root = root
        self.node_name = node_name
        self.gpus = gpus
        self.cpus = cpus
        self.partition = partition
        self.conf_path = root / "slurm.conf"
        self.munge_socket = root / "munge" / "munge.sock"
        self.jobcomp_path = root / "jobcomp.txt"
        self.jobs_dir = root / "jobs"
        self.log_dir = root / "log"
        self.ctld_port = 0
        self.slurmd_port = 0
        self.gpu_devices: list[Path] = []
        self._munged: Daemon | None = None
        self._slurmctld: Daemon | None = None
        self._slurmd: Daemon | None = None

    # ---- environment ----

    @property
    def env(self) -> dict[str, str]:
        """Variables a Slurm client needs (also what bed nodes get through sshd SetEnv).

        SBATCH_OUTPUT keeps job output files in `jobs_dir` instead of the submitter's cwd;
        an explicit --output still wins.
        """
        return {
            "SLURM_CONF": str(self.conf_path),
            "SBATCH_OUTPUT": str(self.jobs_dir / "slurm-%j.out"),
        }

    def full_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    # ---- lifecycle ----

    def start(self, *, timeout_s: float = 60.0) -> None:
        for d in (self.root, self.jobs_dir, self.log_dir, self.root / "state",
                  self.root / "spool", self.root / "munge"):
            d.mkdir(parents=True, exist_ok=True)
        (self.root / "munge").chmod(0o711)
        if self._slurmctld is None:
            self.ctld_port = free_port()
            self.slurmd_port = free_port()
            self._make_gpu_devices()
            self._write_munge_key()
            self._write_conf()
        self._start_munged(timeout_s)
        self._start_slurmctld(timeout_s)
        self._start_slurmd(timeout_s)
        self._warm_up(timeout_s)

    def _warm_up(self, timeout_s: float) -> None:
        """Run one tiny job: slurmctld's scheduler only starts working a few seconds after
        start-up, and tests should not pay that on their first job."""
        job_id = self.sbatch("--job-name=fdbed-warmup", "--output=/dev/null", wrap="true")
        self.wait_job(job_id, timeout_s=timeout_s)

    def stop(self) -> None:
        """Cancel all jobs, stop the daemons and kill leftover job steps."""
        if self._slurmctld is not None and self._slurmctld.is_running:
            self.cancel_all()
        for daemon in (self._slurmd, self._slurmctld, self._munged):
            if daemon is not None:
                daemon.stop(graceful_s=5.0)
        kill_mentioning(self.root)  # slurmstepd and job processes carry SLURM_CONF

    @property
    def is_running(self) -> bool:
        return all(d is not None and d.is_running
                   for d in (self._munged, self._slurmctld, self._slurmd))

    def _make_gpu_devices(self) -> None:
        dev = self.root / "dev"
        dev.mkdir(exist_ok=True)
        self.gpu_devices = []
        try:
            for i in range(self.gpus):
                path = dev / f"nvidia{i}"
                if not path.exists():
                    os.mknod(path, 0o666 | 0o020000, os.makedev(195, i))  # S_IFCHR
                self.gpu_devices.append(path)
        except OSError:
            self.gpu_devices = []  # fall back to count-only gres

    def _write_munge_key(self) -> None:
        key = self.root / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(128))
            key.chmod(0o600)

    def _write_conf(self) -> None:
        host = socket.gethostname().split(".")[0]
        r = self.root
        lines = [
            "ClusterName=fdbed",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.log_dir / 'slurmctld.log'}",
            f"SlurmdLogFile={self.log_dir / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            # No systemd and cgroup v1 here: track processes through /proc, no task binding.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "GresTypes=gpu",
            "SchedulerType=sched/backfill",
            # Schedule batch jobs at submit time instead of up to 3 s later.
            "SchedulerParameters=batch_sched_delay=0",
            "JobAcctGatherType=jobacct_gather/linux",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={self.jobcomp_path}",
            "MinJobAge=300",
            "KillWait=2",
            "ReturnToService=2",
            "SlurmdParameters=config_overrides",
            "MpiDefault=none",
            "MailProg=/bin/true",
            f"NodeName={self.node_name} NodeHostname={host} NodeAddr=127.0.0.1 "
            f"CPUs={self.cpus} RealMemory=8000 Gres=gpu:{self.gpus} State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={self.node_name} Default=YES "
            "MaxTime=INFINITE State=UP",
        ]
        self.conf_path.write_text("\n".join(lines) + "\n")
        if self.gpu_devices:
            files = f"File={self.root / 'dev'}/nvidia[0-{self.gpus - 1}]"
        else:
            files = f"Count={self.gpus}"
        (self.root / "gres.conf").write_text(f"NodeName={self.node_name} Name=gpu {files}\n")

    def _start_munged(self, timeout_s: float) -> None:
        m = self.root / "munge"
        if self._munged is None:
            self._munged = Daemon(
                "munged",
                ["munged", "-F", "-f", f"--socket={self.munge_socket}",
                 f"--key-file={m / 'munge.key'}", f"--pid-file={m / 'munged.pid'}",
                 f"--log-file={self.log_dir / 'munged.log'}", f"--seed-file={m / 'munged.seed'}"],
                log_path=self.log_dir / "munged.out", pidfile=m / "munged.pid",
            )
        if self._munged.is_running:
            return
        self.munge_socket.unlink(missing_ok=True)
        self._munged.start()

        def ready() -> bool:
            assert self._munged is not None
            self._munged.ensure_alive()
            return self.munge_socket.exists()

        wait_for(ready, timeout_s=timeout_s, what="munged socket")

    def _start_slurmctld(self, timeout_s: float) -> None:
        if self._slurmctld is None:
            self._slurmctld = Daemon(
                "slurmctld", ["slurmctld", "-D", "-f", str(self.conf_path)],
                log_path=self.log_dir / "slurmctld.out", env=self.full_env(),
                pidfile=self.root / "slurmctld.pid",
            )
        if self._slurmctld.is_running:
            return
        self._slurmctld.start()

        def ready() -> bool:
            assert self._slurmctld is not None
            self._slurmctld.ensure_alive()
            ping = self.run("scontrol", "ping", check=False, timeout_s=10)
            return "is UP" in ping.stdout

        wait_for(ready, timeout_s=timeout_s, what="slurmctld ping", interval_s=0.2)

    def _start_slurmd(self, timeout_s: float) -> None:
        if self._slurmd is None:
            self._slurmd = Daemon(
                "slurmd", ["slurmd", "-D", "-N", self.node_name, "-f", str(self.conf_path)],
                log_path=self.log_dir / "slurmd.out", env=self.full_env(),
                pidfile=self.root / "slurmd.pid",
            )
        if self._slurmd.is_running:
            return
        self._slurmd.start()

        def ready() -> bool:
            assert self._slurmd is not None
            self._slurmd.ensure_alive()
            state = self.run("sinfo", "-h", "-N", "-n", self.node_name, "-o", "%T", check=False)
            return state.stdout.strip().rstrip("*") in {"idle", "mixed", "allocated"}

        wait_for(ready, timeout_s=timeout_s, what=f"node {self.node_name} idle", interval_s=0.2)

    # ---- client helpers ----

    def run(self, *argv: str, check: bool = True, timeout_s: float = 30.0,
            input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command with this cluster's environment."""
        result = subprocess.run(
            list(argv), env=self.full_env(), capture_output=True, text=True,
            timeout=timeout_s, check=False, input=input_text,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr}")
        return result

    def sbatch(self, *args: str, wrap: str | None = None) -> int:
        """Submit a batch job (`args` are sbatch options); returns the job id."""
        argv = ["sbatch", "--parsable", *args]
        if wrap is not None:
            argv += ["--wrap", wrap]
        out = self.run(*argv).stdout.strip()
        return int(out.split(";")[0])

    def job(self, job_id: int) -> dict[str, str]:
        """`scontrol show job -o` fields (JobState, ExitCode, NodeList, TRES, ...)."""
        out = self.run("scontrol", "show", "job", "-o", str(job_id)).stdout
        return parse_kv(out)

    def wait_job(self, job_id: int, *, timeout_s: float = 30.0,
                 states: Sequence[str] = tuple(FINISHED_STATES)) -> dict[str, str]:
        """Wait until the job reaches one of `states` (default: any finished state)."""
        info: dict[str, str] = {}

        def reached() -> bool:
            nonlocal info
            info = self.job(job_id)
            return info.get("JobState") in states

        wait_for(reached, timeout_s=timeout_s, what=f"job {job_id} in {sorted(states)}",
                 interval_s=0.2)
        return info

    def jobcomp_records(self) -> list[dict[str, str]]:
        """Finished-job records from the jobcomp/filetxt file, oldest first."""
        try:
            text = self.jobcomp_path.read_text()
        except FileNotFoundError:
            return []
        return [parse_kv(line) for line in text.splitlines() if line.strip()]

    def cancel_all(self) -> None:
        with contextlib.suppress(Exception):
            self.run("scancel", "--user=root", check=False)

    def describe(self) -> str:
        return (f"SlurmCluster(conf={self.conf_path}, node={self.node_name}, "
                f"partition={self.partition}, gpus={self.gpus})")


def slurm_binaries_present() -> bool:
    return all(shutil.which(b) for b in ("slurmctld", "slurmd", "munged", "sbatch"))

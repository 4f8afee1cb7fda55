"""Probe start-up CPU on a node: what one `collect --once` costs the node, probe side.

Starts two bed sshd nodes (tests/bed: needs the installed test services), one without GPUs
and one with 8 fake NVML GPUs, and runs the Python probe there through OpenSSH with the node's
/usr/bin/python3 in `once` mode (start-up, hello, the first sample), as the SSH transport
does: `python3 -u -c BOOTSTRAP` reading `stdin_payload(...)`. A small wrapper on the node
starts the probe and prints the probe process's user + system CPU seconds (getrusage of its
child), so sshd, the shell and the wrapper are not counted. Target (issue #13): under 0.1 CPU-s.

    .venv/bin/python benchmarks/bench_probe.py [--runs 7] [--local]

`--local` runs the same on this machine without SSH (no bed needed; the fake NVML library
from .bed/lib when present).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collectors.probe import parse_line, python_command, stdin_payload  # noqa: E402

PYTHON = "/usr/bin/python3"
# Runs the probe command as a child and reports the child's CPU time on stderr.
_WRAP = (
    "import os,resource,shlex,sys;a=shlex.split(sys.argv[1]);"
    "os.spawnvp(os.P_WAIT,a[0],a);r=resource.getrusage(resource.RUSAGE_CHILDREN);"
    "sys.stderr.write('FDCPU %.6f\\n'%(r.ru_utime+r.ru_stime))"
)


def wrapped_command() -> str:
    return f"{PYTHON} -c {shlex.quote(_WRAP)} {shlex.quote(python_command(PYTHON))}"


def one_run(argv: list[str], payload: bytes, env: dict[str, str] | None = None
            ) -> tuple[float, int]:
    """(probe CPU seconds, GPUs in its sample)."""
    p = subprocess.run(argv, input=payload, capture_output=True, timeout=60, check=False,
                       env=env)
    lines = p.stdout.decode().splitlines()
    cpu = [ln for ln in p.stderr.decode().splitlines() if ln.startswith("FDCPU ")]
    if p.returncode != 0 or len(lines) != 2 or not cpu:
        raise SystemExit(f"probe run failed (exit {p.returncode}): {p.stderr.decode()[-400:]}")
    rec = parse_line("bench", lines[1])
    if getattr(rec, "errors", ()):
        print(f"  probe errors: {rec.errors}")
    return float(cpu[0].split()[1]), len(getattr(rec, "gpus", ()))


def report(label: str, runs: list[tuple[float, int]]) -> None:
    cpus = [c for c, _ in runs]
    gpus = runs[-1][1]
    print(f"{label:>22}: probe CPU median {statistics.median(cpus):.3f} s, min {min(cpus):.3f}"
          f" s over {len(cpus)} runs ({gpus} GPUs in the sample)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--local", action="store_true", help="on this machine, without SSH")
    args = ap.parse_args()
    payload = stdin_payload(5.0, once=True, stdin_link=False)
    print(f"payload {len(payload):,} bytes; {PYTHON} on the node")
    argv = ["sh", "-c", wrapped_command()]
    if args.local:
        lib = REPO / ".bed" / "lib"
        env = dict(os.environ, LD_LIBRARY_PATH=str(lib)) if lib.is_dir() else None
        report("local", [one_run(argv, payload, env) for _ in range(args.runs)])
        return
    from tests.bed.fake_nvml import FakeGpu
    from tests.bed.ssh import SshBed

    with tempfile.TemporaryDirectory(prefix="fdbench-probe-") as root:
        bed = SshBed(Path(root))
        try:
            for label, nvml in (("CPU node", None), ("GPU node (fake NVML)", [FakeGpu()] * 8)):
                node = bed.new_node(nvml=nvml)
                ssh = node.ssh_argv(wrapped_command())
                one_run(ssh, payload)  # warm the node's page cache
                report(label, [one_run(ssh, payload) for _ in range(args.runs)])
        finally:
            bed.close()


if __name__ == "__main__":
    main()

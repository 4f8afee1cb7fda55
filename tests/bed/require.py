"""Requirement checks: a missing service skips the test, or fails it under CI=true.

Run `.ci/services.sh` (as root) to install everything these check for.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

SSHD = Path("/usr/sbin/sshd")
DOCKERD = Path("/usr/sbin/dockerd")
CHROMIUM = Path("/usr/bin/chromium")
_HINT = "; run .ci/services.sh as root to install the test bed"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def unavailable(reason: str) -> NoReturn:
    """Fail under CI=true, skip elsewhere."""
    if in_ci():
        pytest.fail(f"test bed: {reason} (CI=true: fails instead of skipping)", pytrace=False)
    pytest.skip(f"test bed: {reason}")


def _missing(paths: list[str]) -> list[str]:
    out = []
    for p in paths:
        if p.startswith("/"):
            found = Path(p).is_file() and os.access(p, os.X_OK)
        else:
            found = shutil.which(p) is not None
        if not found:
            out.append(p)
    return out


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        unavailable(f"{what} needs root (the bed logs in as root and runs system daemons)")


def require_sshd() -> None:
    missing = _missing([str(SSHD), "ssh-keygen", "ssh"])
    if missing:
        unavailable(f"sshd not available: missing {', '.join(missing)}{_HINT}")
    _need_root("the sshd bed")


def require_docker() -> None:
    missing = _missing([str(DOCKERD), "containerd", "runc", "docker"])
    if missing:
        unavailable(f"docker not available: missing {', '.join(missing)}{_HINT}")
    _need_root("dockerd")
    if not Path("/sys/fs/cgroup").is_dir():
        unavailable("docker needs /sys/fs/cgroup")


def require_slurm() -> None:
    missing = _missing(["slurmctld", "slurmd", "munged", "sbatch", "squeue", "scontrol"])
    if missing:
        unavailable(f"slurm not available: missing {', '.join(missing)}{_HINT}")
    _need_root("the Slurm bed")


def require_gcc() -> None:
    if _missing(["gcc"]):
        unavailable(f"gcc not available (needed to build the fake NVML){_HINT}")


def require_busybox() -> None:
    if not Path("/bin/busybox").is_file():
        unavailable(f"/bin/busybox (busybox-static) not available{_HINT}")


def require_chromium() -> None:
    if _missing([str(CHROMIUM)]):
        unavailable(f"headless Chromium not available at {CHROMIUM} (apt-get install chromium)")

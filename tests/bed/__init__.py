"""fleetdeck test bed: real sshd / dockerd / Slurm services and a fake NVML for tests.

Fixtures live in `tests.bed.plugin` (registered from tests/conftest.py); the classes below are
what they hand out.
"""

from tests.bed.dockerd import BUSYBOX_TAG, DockerDaemon
from tests.bed.fake_nvml import (
    EVENT_XID,
    FakeEvent,
    FakeGpu,
    FakeGpuState,
    FakeNvml,
    FakeNvmlState,
    write_state,
)
from tests.bed.require import (
    require_chromium,
    require_docker,
    require_gcc,
    require_slurm,
    require_sshd,
)
from tests.bed.slurm import SlurmCluster
from tests.bed.ssh import SshBed, SshNode, fleet_config_toml

__all__ = [
    "BUSYBOX_TAG",
    "EVENT_XID",
    "DockerDaemon",
    "FakeEvent",
    "FakeGpu",
    "FakeGpuState",
    "FakeNvml",
    "FakeNvmlState",
    "SlurmCluster",
    "SshBed",
    "SshNode",
    "fleet_config_toml",
    "require_chromium",
    "require_docker",
    "require_gcc",
    "require_slurm",
    "require_sshd",
    "write_state",
]

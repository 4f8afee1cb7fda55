"""pytest plugin with the test bed fixtures: register with `pytest_plugins = ["tests.bed.plugin"]`.

Fixtures
  bed_root        session  Path of this session's bed dir (/tmp/fdbed-XXXX), removed at the end
  ssh_bed         session  SshBed: client key, known_hosts, every node (use from session fixtures)
  ssh_nodes       function factory(n, *, docker=False, fake_nvml=None, slurm=False, fresh=False)
                           -> list[SshNode]; fresh nodes are destroyed when the test ends
  docker_image    session  factory(node_or_daemon) -> image tag (busybox imported there)
  slurm_cluster   session  SlurmCluster (munged + slurmctld + slurmd), started once
  fake_nvml_lib   session  Path of the dir holding the fake libnvidia-ml.so.1
  fake_nvml       function FakeNvml with two default GPUs in a per-test state file
  bed_accounts    session  BedAccounts: .user(name, groups=()) / .group(name): real fdbed-*
                           Linux accounts (useradd, groupadd; reused, see tests/bed/users.py)
  user_cli        session  Path of a `fleetdeck` command every bed user can run
Set FDBED_KEEP=1 to keep the bed dir (logs, configs) after the session.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import pytest

from tests.bed.dockerd import DockerDaemon, busybox_tarball
from tests.bed.fake_nvml import FakeGpu, FakeNvml, FakeNvmlState, build
from tests.bed.procs import (
    kill_mentioning,
    make_bed_dir,
    reap_stale_beds,
    remove_tree,
    stop_all,
)
from tests.bed.require import (
    require_busybox,
    require_docker,
    require_gcc,
    require_slurm,
    require_sshd,
    unavailable,
)
from tests.bed.slurm import SlurmCluster
from tests.bed.ssh import SshBed, SshNode
from tests.bed.users import BedUser, accounts_available, ensure_group, ensure_user, user_install


class NodeFactory(Protocol):
    def __call__(
        self,
        n: int,
        *,
        docker: bool = False,
        fake_nvml: Mapping[int, FakeNvmlState | Sequence[FakeGpu]] | None = None,
        slurm: bool = False,
        fresh: bool = False,
    ) -> list[SshNode]: ...


ImageLoader = Callable[[SshNode | DockerDaemon], str]


@pytest.fixture(scope="session")
def bed_root() -> Iterator[Path]:
    reap_stale_beds()
    root = make_bed_dir()
    try:
        yield root
    finally:
        stop_all()
        kill_mentioning(root)  # stragglers, e.g. containerd shims of a dockerd that crashed
        if not os.environ.get("FDBED_KEEP"):
            remove_tree(root)


@pytest.fixture(scope="session")
def fake_nvml_lib() -> Path:
    require_gcc()
    return build()


@pytest.fixture(scope="session")
def ssh_bed(bed_root: Path) -> Iterator[SshBed]:
    require_sshd()
    bed = SshBed(bed_root / "ssh")
    try:
        yield bed
    finally:
        bed.close()


@pytest.fixture
def ssh_nodes(ssh_bed: SshBed, request: pytest.FixtureRequest) -> Iterator[NodeFactory]:
    fresh_nodes: list[SshNode] = []

    def factory(
        n: int,
        *,
        docker: bool = False,
        fake_nvml: Mapping[int, FakeNvmlState | Sequence[FakeGpu]] | None = None,
        slurm: bool = False,
        fresh: bool = False,
    ) -> list[SshNode]:
        if docker:
            require_docker()
        if fake_nvml:
            require_gcc()
        cluster: SlurmCluster | None = (
            request.getfixturevalue("slurm_cluster") if slurm else None
        )
        if not fresh:
            return ssh_bed.nodes(n, docker=docker, fake_nvml=fake_nvml, slurm=cluster)
        states = fake_nvml or {}
        nodes: list[SshNode] = []
        for i in range(n):
            node = ssh_bed.new_node(docker=docker, nvml=states.get(i), slurm=cluster)
            fresh_nodes.append(node)
            nodes.append(node)
        return nodes

    yield factory
    for node in fresh_nodes:
        ssh_bed.destroy(node)


@pytest.fixture(scope="session")
def docker_image(bed_root: Path) -> ImageLoader:
    require_docker()
    require_busybox()
    tarball = busybox_tarball(bed_root / "busybox-rootfs.tar")

    def load(target: SshNode | DockerDaemon) -> str:
        daemon = target.docker if isinstance(target, SshNode) else target
        if daemon is None:
            raise ValueError(f"{target!r} has no dockerd; ask ssh_nodes(..., docker=True)")
        return daemon.import_busybox(tarball)

    return load


@pytest.fixture(scope="session")
def slurm_cluster(bed_root: Path) -> Iterator[SlurmCluster]:
    require_slurm()
    cluster = SlurmCluster(bed_root / "slurm")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def fake_nvml(fake_nvml_lib: Path, tmp_path: Path) -> FakeNvml:
    return FakeNvml(tmp_path / "nvml.state", fake_nvml_lib,
                    FakeNvmlState(gpus=(FakeGpu(), FakeGpu())))


class BedAccounts:
    """Real Linux accounts for role tests (see tests/bed/users.py)."""

    def user(self, name: str, groups: Sequence[str] = ()) -> BedUser:
        return ensure_user(name, [ensure_group(g) for g in groups])

    def group(self, name: str) -> str:
        return ensure_group(name)


@pytest.fixture(scope="session")
def bed_accounts() -> BedAccounts:
    why = accounts_available()
    if why is not None:
        unavailable(why)
    return BedAccounts()


@pytest.fixture(scope="session")
def user_cli(bed_root: Path, bed_accounts: BedAccounts) -> Path:
    try:
        return user_install(bed_root)
    except RuntimeError as e:
        unavailable(f"an install other users can run: {e}")

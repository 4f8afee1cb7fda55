"""Shared fixtures: the test bed of real services (sshd, dockerd, Slurm, fake NVML)."""

pytest_plugins = ["tests.bed.plugin"]

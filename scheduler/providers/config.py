"""Config of burst providers: `[[policies.burst.providers]]` entries and their settings.

```toml
[[policies.burst.providers]]
name = "lab"
type = "command"
command.provision_command = ["/opt/burst/up.sh", "{offer}", "{request_id}"]
command.terminate_command = ["/opt/burst/down.sh"]     # the instance id is appended

[[policies.burst.providers]]
name = "aws"
type = "aws"
aws.region = "us-east-1"
aws.image_id = "ami-0123456789abcdef0"
aws.key_name = "fleetdeck"
```

Plain dataclasses with no cloud SDK imported, so config loads without `boto3`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from collectors.config_schema import doc

ProviderType = Literal["command", "aws"]


@dataclass(frozen=True, slots=True)
class CommandSettings:
    """The admin's own scripts. Placeholders `{request_id}`, `{offer}`, `{instance_type}`,
    `{gpu_model}`, `{gpu_count}`, `{market}`, `{price_per_hour}` (provision) and
    `{instance_id}` (status, terminate) are replaced in every argument; without an
    `{instance_id}` placeholder the id is appended as the last argument."""

    provision_command: tuple[str, ...] = field(default=(), metadata=doc(
        "argv run to rent a node; prints one JSON object: instance_id, host, port, user, "
        "price_per_hour, state (pending|running)", nonempty=True))
    terminate_command: tuple[str, ...] = field(default=(), metadata=doc(
        "argv run to release a node; gets the instance id", nonempty=True))
    status_command: tuple[str, ...] = field(default=(), metadata=doc(
        "optional argv printing JSON {state, host, port, user} for an instance id; "
        "without it an instance is running as soon as provision printed a host"))
    provision_timeout_s: float = field(default=600.0, metadata=doc(
        "kill provision_command after this many seconds", min=0.1))
    status_timeout_s: float = field(default=30.0, metadata=doc(
        "kill status_command after this many seconds", min=0.1))
    terminate_timeout_s: float = field(default=300.0, metadata=doc(
        "kill terminate_command after this many seconds", min=0.1))
    state_dir: Path | None = field(default=None, metadata=doc(
        "folder remembering request_id -> instance so provisioning stays idempotent across "
        "engine restarts (default: memory only)"))
    env: dict[str, str] = field(default_factory=dict, metadata=doc(
        "extra environment for the scripts"))
    default_user: str | None = field(default=None, metadata=doc(
        "SSH user when the script prints none"))
    default_port: int = field(default=22, metadata=doc(
        "SSH port when the script prints none", min=1, max=65535))


@dataclass(frozen=True, slots=True)
class AwsSettings:
    """EC2 through boto3 (`pip install 'fleetdeck[aws]'`). Credentials come from the usual
    boto3 chain (environment, profile, instance role)."""

    region: str = field(default="us-east-1", metadata=doc("AWS region"))
    image_id: str = field(default="", metadata=doc(
        "AMI every node boots (an offer's options.image_id overrides it)"))
    key_name: str | None = field(default=None, metadata=doc("EC2 key pair for SSH"))
    subnet_id: str | None = field(default=None, metadata=doc("subnet to launch in"))
    security_group_ids: tuple[str, ...] = field(default=(), metadata=doc(
        "security groups; must allow SSH from fleetdeck"))
    iam_instance_profile: str | None = field(default=None, metadata=doc(
        "instance profile name attached to nodes"))
    ssh_user: str = field(default="ubuntu", metadata=doc("SSH user of the AMI"))
    ssh_port: int = field(default=22, metadata=doc("SSH port", min=1, max=65535))
    use_private_ip: bool = field(default=False, metadata=doc(
        "connect to the private address (fleetdeck runs inside the VPC)"))
    user_data: str | None = field(default=None, metadata=doc("cloud-init user data"))
    extra_tags: dict[str, str] = field(default_factory=dict, metadata=doc(
        "more tags on every node and volume"))
    profile: str | None = field(default=None, metadata=doc("boto3 profile name"))
    endpoint_url: str | None = field(default=None, metadata=doc(
        "EC2 endpoint override (tests, private endpoints)"))
    call_timeout_s: float = field(default=60.0, metadata=doc(
        "timeout of each EC2 API call", min=1))


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One `[[policies.burst.providers]]` entry: a name offers refer to, a type and its table."""

    name: str = field(metadata=doc("provider name offers refer to", nonempty=True))
    type: ProviderType = field(metadata=doc("command (your scripts) or aws (EC2)"))
    command: CommandSettings | None = field(default=None, metadata=doc(
        "settings when type = command"))
    aws: AwsSettings | None = field(default=None, metadata=doc("settings when type = aws"))

    def __post_init__(self) -> None:
        if self.type == "command":
            c = self.command
            if c is None or not c.provision_command or not c.terminate_command:
                raise ValueError(f"provider {self.name!r} of type command to have a command "
                                 "table with provision_command and terminate_command")
        if self.type == "aws" and self.aws is None:
            self_aws = AwsSettings()
            object.__setattr__(self, "aws", self_aws)

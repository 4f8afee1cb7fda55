"""The provider interface: how fleetdeck rents nodes from a cloud, and the values it trades in.

A provider is the edge between burst policy decisions and a cloud (I/O lives here, never in
`scheduler.policies`). Every provider implements `Provider`:

- `offers()` lists what it can rent (from config; no I/O).
- `await provision(offer, request_id=..., tags=...)` asks for one node and returns at once with
  an `Instance` (usually `pending`). Idempotent by `request_id`: a second call with the same id
  returns the same instance and rents nothing new, also after an engine restart where the
  provider can find its own instances again (tags, a state folder).
- `await status(instance_id)` says `pending | running | terminated | lost`, with the SSH address
  once running. Callers poll it; nothing blocks until a node is up.
- `await terminate(instance_id)` releases the node. Idempotent: terminating a terminated or
  unknown instance is not an error.

Errors a person should read (bad script output, cloud refusal, timeout) are `ProviderError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

from collectors.config_schema import doc
from collectors.errors import FleetdeckError

Market = Literal["spot", "on-demand"]


class ProviderError(FleetdeckError):
    """A provider failed in a way a person can act on; the message names provider and step."""

    exit_code = 1


class InstanceState(StrEnum):
    """Where a rented node is in its life."""

    PENDING = "pending"  # asked for, not reachable yet
    RUNNING = "running"  # up; host/port/user known
    TERMINATED = "terminated"  # released by fleetdeck
    LOST = "lost"  # gone without fleetdeck asking (spot interruption, deleted outside)


@dataclass(frozen=True, slots=True)
class Offer:
    """One `[[policies.burst.offers]]` entry: a kind of node a provider rents, at a price.

    The list order in config is the priority order in which the burst policy tries offers.
    """

    name: str = field(metadata=doc("unique offer name, shown in decisions", nonempty=True))
    provider: str = field(metadata=doc("name of a `[[policies.burst.providers]]` entry",
                                       nonempty=True))
    instance_type: str = field(metadata=doc("cloud instance type, e.g. g5.xlarge",
                                            nonempty=True))
    gpu_model: str = field(metadata=doc("GPU model the node has, as placement names it",
                                        nonempty=True))
    gpu_count: int = field(metadata=doc("GPUs per node", min=1))
    price_per_hour: float = field(metadata=doc(
        "price per node-hour; for spot, the maximum price bid (budgets use it)", min=0))
    market: Market = field(default="on-demand", metadata=doc("spot or on-demand"))
    max_nodes: int = field(default=1, metadata=doc("nodes of this offer at once", min=0))
    pool: str = field(default="burst", metadata=doc("pool the node joins"))
    cpu_milli: int = field(default=0, metadata=doc("CPU per node in milli-cores (0: unknown)",
                                                   min=0))
    mem_bytes: int = field(default=0, metadata=doc("memory per node in bytes (0: unknown)", min=0))
    gpu_mem_bytes: int = field(default=0, metadata=doc("memory per GPU in bytes (0: unknown)",
                                                       min=0))
    options: dict[str, str] = field(default_factory=dict, metadata=doc(
        "provider-specific settings for this offer (e.g. aws image_id, subnet_id)"))

    def describe(self) -> str:
        return (f"{self.name} ({self.instance_type} {self.market}, {self.gpu_count}x"
                f"{self.gpu_model}, {self.price_per_hour:.2f}/h)")


@dataclass(frozen=True, slots=True)
class Instance:
    """A node a provider rented (or is renting) for one `request_id`."""

    instance_id: str
    provider: str
    offer: str
    request_id: str
    state: InstanceState
    price_per_hour: float
    launched_at: float  # epoch seconds, as the provider saw the request
    host: str | None = None
    port: int = 22
    user: str | None = None
    market: Market = "on-demand"
    extra: Mapping[str, Any] = field(default_factory=dict)  # provider output kept as is


@dataclass(frozen=True, slots=True)
class InstanceStatus:
    """One poll of an instance; host/port/user are set when `state` is running."""

    instance_id: str
    state: InstanceState
    host: str | None = None
    port: int = 22
    user: str | None = None
    reason: str | None = None  # why it is terminated or lost, when the provider says


@runtime_checkable
class Provider(Protocol):
    """What the engine calls on a provider. See the module docstring for the contract."""

    name: str

    def offers(self) -> list[Offer]:
        """Offers of this provider, in config priority order. No I/O."""
        ...

    async def provision(self, offer: Offer, *, request_id: str,
                        tags: Mapping[str, str]) -> Instance:
        """Rent one node of `offer`; same `request_id` gives the same instance."""
        ...

    async def status(self, instance_id: str) -> InstanceStatus:
        """Current state of an instance this provider rented."""
        ...

    async def terminate(self, instance_id: str) -> None:
        """Release an instance; a no-op when it is already gone."""
        ...


class RequestLocks:
    """One provision at a time per request id: a retried request waits for the first and
    then finds its instance instead of renting a second."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, request_id: str) -> asyncio.Lock:
        if not request_id:
            raise ProviderError(f'provider "{self.provider}": provision needs a request id')
        return self._locks.setdefault(request_id, asyncio.Lock())


def fleetdeck_tags(request_id: str, *, team: str | None = None, project: str | None = None,
                   offer: str | None = None) -> dict[str, str]:
    """Tags every rented node carries: ownership, the request and who it is billed to."""
    tags = {"fleetdeck:managed": "true", "fleetdeck:request": request_id}
    if team:
        tags["fleetdeck:team"] = team
    if project:
        tags["fleetdeck:project"] = project
    if offer:
        tags["fleetdeck:offer"] = offer
    return tags

"""Node connections: SSH (asyncssh, one persistent connection per node) and local subprocesses.

`make_transport(node, options)` picks the implementation from the node's `transport` key.
"""

from __future__ import annotations

import asyncio

from collectors.transport.base import (
    CommandResult,
    CommandTimeout,
    ConnectError,
    Disconnected,
    HostKeyError,
    LineStream,
    NodeLike,
    NodeTarget,
    Transport,
    TransportError,
    address,
)
from collectors.transport.local import LocalTransport
from collectors.transport.ssh import DEFAULT_CONNECT_CONCURRENCY, SshOptions, SshTransport


def make_transport(
    node: NodeLike,
    options: SshOptions | None = None,
    *,
    connect_limit: asyncio.Semaphore | None = None,
) -> Transport:
    """The transport for `node`: local for `transport = "local"`, a simulated node for
    `"sim"` (`collectors.transport.sim`), SSH otherwise."""
    if node.transport == "local":
        return LocalTransport(node)
    if node.transport == "sim":
        from collectors.transport.sim import SimTransport

        return SimTransport(node)
    if node.transport != "ssh":
        raise ValueError(f"node {node.name}: unknown transport {node.transport!r}")
    return SshTransport(node, options, connect_limit=connect_limit)


__all__ = [
    "DEFAULT_CONNECT_CONCURRENCY",
    "CommandResult",
    "CommandTimeout",
    "ConnectError",
    "Disconnected",
    "HostKeyError",
    "LineStream",
    "LocalTransport",
    "NodeLike",
    "NodeTarget",
    "SshOptions",
    "SshTransport",
    "Transport",
    "TransportError",
    "address",
    "make_transport",
]

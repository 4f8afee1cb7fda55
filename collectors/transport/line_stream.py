"""What the transports share: `NodeTransport` (the node and where it is, for messages) and
`CommandLineStream`, the base of the local and SSH line streams
(`collectors.transport.base.LineStream`).

A stream starts its command on entry (or on first iteration), yields stdout one line at a
time, keeps the tail of stderr in a bounded buffer, and stops the command on exit.
Subclasses start and stop the command; this class holds the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Self

from collectors.transport.base import NodeLike

STDERR_KEEP = 16384  # bytes of stderr held at most; trimmed to the last 4 KiB beyond it


class NodeTransport:
    """A transport's node, and `where` it is for messages: "node gpu01 (10.0.0.5:22)"."""

    def __init__(self, node: NodeLike) -> None:
        self._node = node

    @property
    def node(self) -> NodeLike:
        return self._node

    @property
    def place(self) -> str:
        """How this transport reaches the node (in `where`)."""
        raise NotImplementedError

    @property
    def where(self) -> str:
        return f"node {self._node.name} ({self.place})"


class CommandLineStream:
    """Base of `LocalLineStream` and `SshLineStream`."""

    def __init__(self, input: bytes | None, keep_stdin_open: bool) -> None:
        self._input = input
        self._keep_open = keep_stdin_open
        self._stderr = bytearray()
        self.exit_status: int | None = None
        self.stderr_tail = b""

    async def __aenter__(self) -> Self:
        await self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _start(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def _keep_stderr(self, read: Callable[[int], Awaitable[bytes]]) -> None:
        """Read stderr to its end, keeping its tail."""
        while chunk := await read(4096):
            self._stderr += chunk
            if len(self._stderr) > STDERR_KEEP:
                del self._stderr[:-4096]

    @staticmethod
    async def _lines(readline: Callable[[], Awaitable[bytes]]) -> AsyncIterator[bytes]:
        """Lines from `readline` until end of file, newline stripped."""
        while True:
            line = await readline()
            if not line:
                return
            yield line[:-1] if line.endswith(b"\n") else line

"""What the executor suites share: a transport to a bed node and waits on a job's state and log
(polls that end on a state or a log line, with a deadline only as a safety net)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from collectors.transport import NodeTarget, SshOptions, SshTransport
from scheduler.executors import Executor, Handle, Status
from tests.bed.ssh import SshNode

# Arguments that must reach a job's program verbatim, never run by a shell; `{m}` is a marker
# path a successful injection would create.
HOSTILE = (
    '"; touch {m} #',
    "'; touch {m}; '",
    "$(touch {m})",
    "`touch {m}`",
    "a\ntouch {m}\n",
    "x && touch {m}",
    "| touch {m}",
    "$HOME ${{IFS}} * ?",
    "  spaces  inside  ",
    "",
    "-n",
    "--",
    "\\\"'\\''",
    "unicode ☃ 日本語 é",
)


def transport_for(node: SshNode) -> SshTransport:
    target = NodeTarget(
        name=node.name,
        host=node.host,
        port=node.port,
        user=node.user,
        identity_file=node.identity_file,
        docker_socket=str(node.docker_socket or "/var/run/docker.sock"),
    )
    return SshTransport(target, SshOptions(known_hosts=node.known_hosts, use_agent=False))


async def wait_done(ex: Executor, h: Handle, t: SshTransport, timeout_s: float = 60.0) -> Status:
    """The job's status once it is neither running nor pending (or at the deadline)."""
    deadline = time.monotonic() + timeout_s
    while True:
        st = await ex.status(h, t)
        if st.state not in ("running", "pending") or time.monotonic() > deadline:
            return st
        await asyncio.sleep(0.2)


async def wait_state(ex: Executor, h: Handle, t: SshTransport, state: str,
                     timeout_s: float = 60.0) -> Status:
    deadline = time.monotonic() + timeout_s
    while True:
        st = await ex.status(h, t)
        if st.state == state:
            return st
        assert time.monotonic() < deadline, f"job never reached {state}: {st}"
        await asyncio.sleep(0.2)


async def read_logs(ex: Executor, h: Handle, t: SshTransport, **kw: Any) -> bytes:
    return b"".join([c async for c in ex.logs(h, t, **kw)])


async def wait_log(ex: Executor, h: Handle, t: SshTransport, text: bytes,
                   timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in await read_logs(ex, h, t):
        if time.monotonic() > deadline:
            st = await ex.status(h, t)
            raise AssertionError(f"{text!r} never appeared in the log; {st}")
        await asyncio.sleep(0.1)

"""Starting the probe on a node over its transport (the probe itself is `collectors.probe`).

One exec per connection: `launch_command` runs the Python probe when `python3` exists on the
node and the shell fallback otherwise; its stdin carries the bundle and then stays open, so the
probe exits the moment the channel closes.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence

from collectors.models import ProbeHello, ProbeRecord
from collectors.probe import ProbeFormatError, launch_command, parse_line, stdin_payload
from collectors.transport.base import Transport

__all__ = ["ProbeFormatError", "exit_reason", "parse_line", "probe_command", "run_once"]


def probe_command(
    interval_s: float,
    disk_paths: Sequence[str] = ("/",),
    *,
    once: bool = False,
    env: Mapping[str, str] | None = None,
) -> tuple[str, bytes]:
    """(shell command line, stdin payload) that start the probe on any node.

    Streaming (`once=False`) links the probe to its stdin: keep stdin open after the payload.
    Built once per distinct setting (the payload is a compressed bundle, not cheap to make).
    """
    return _probe_command(float(interval_s), tuple(disk_paths), once,
                          tuple(sorted((env or {}).items())))


@functools.lru_cache(maxsize=32)
def _probe_command(interval_s: float, disk_paths: tuple[str, ...], once: bool,
                   env: tuple[tuple[str, str], ...]) -> tuple[str, bytes]:
    link = not once
    command = launch_command(interval_s, disk_paths=disk_paths, once=once, stdin_link=link,
                             env=dict(env) or None)
    payload = stdin_payload(interval_s, disk_paths=disk_paths, once=once, stdin_link=link)
    return command, payload


def exit_reason(status: int | None, stderr: bytes) -> str:
    """One line on why a probe stopped."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    tail = f": {lines[-1][:160]}" if lines else ""
    if status is None:
        return f"probe stopped{tail}"
    return f"probe exited with status {status}{tail}"


async def run_once(
    node: str,
    transport: Transport,
    timeout_s: float,
    disk_paths: Sequence[str] = ("/",),
    env: Mapping[str, str] | None = None,
) -> tuple[ProbeHello | None, ProbeRecord | None, str | None]:
    """Run the probe for one sample: (hello, record, problem or None)."""
    command, payload = probe_command(1.0, disk_paths, once=True, env=env)
    hello: ProbeHello | None = None
    record: ProbeRecord | None = None
    problem: str | None = None
    async with asyncio.timeout(timeout_s):
        async with transport.stream_shell(command, input=payload) as lines:
            async for raw in lines:
                if not raw.strip():
                    continue
                try:
                    msg = parse_line(node, raw)
                except ProbeFormatError as e:
                    problem = str(e)
                    continue
                if isinstance(msg, ProbeHello):
                    hello = msg
                else:
                    record = msg
            status, stderr = lines.exit_status, lines.stderr_tail
    if record is None and problem is None:
        problem = exit_reason(status, stderr)
    elif record is not None and record.errors:
        problem = "; ".join(record.errors)
    return hello, record, problem

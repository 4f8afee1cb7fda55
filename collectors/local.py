"""Run the probe on this machine (the embedded default fleet): no SSH, same line stream.

The child is `python -u -S -c BOOTSTRAP` fed `stdin_payload(...)`; its stdin stays open, so the
probe exits as soon as we close it (or die). Lines are bytes without the newline, exactly what
an SSH channel yields; `records()` parses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence

from collectors.models import ProbeMessage
from collectors.probe import BOOTSTRAP, PYTHON_FLAGS, parse_line, stdin_payload

LINE_LIMIT_BYTES = 8 * 1024 * 1024  # one sample line (many cores, many GPU processes) fits


class LocalProbe:
    """A probe child process. Use `async with LocalProbe(5.0) as p: async for line in p: ...`."""

    def __init__(
        self,
        interval_s: float,
        *,
        node: str = "local",
        disk_paths: Sequence[str] = ("/",),
        once: bool = False,
        env: Mapping[str, str] | None = None,
        python: str | None = None,
    ) -> None:
        self.node = node
        self.interval_s = interval_s
        self.once = once
        self._payload = stdin_payload(interval_s, disk_paths=disk_paths, once=once,
                                      stdin_link=not once)
        self._env = {**os.environ, **env} if env else None
        self._python = python or sys.executable or "python3"
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr: deque[bytes] = deque(maxlen=50)
        self._stderr_task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    @property
    def stderr_tail(self) -> str:
        return b"".join(self._stderr).decode("utf-8", "replace")

    async def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("probe already started")
        self._proc = await asyncio.create_subprocess_exec(
            self._python, *PYTHON_FLAGS, "-c", BOOTSTRAP,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._env,
            limit=LINE_LIMIT_BYTES,
        )
        assert self._proc.stdin is not None
        self._proc.stdin.write(self._payload)
        await self._proc.stdin.drain()
        if self.once:
            self._proc.stdin.close()
        self._stderr_task = asyncio.create_task(self._drain_stderr())

    async def _drain_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        while chunk := await self._proc.stderr.read(4096):
            self._stderr.append(chunk)

    async def readline(self) -> bytes | None:
        """The next line without its newline; None when the probe has exited."""
        if self._proc is None:
            await self.start()
        assert self._proc is not None and self._proc.stdout is not None
        line = await self._proc.stdout.readline()
        if not line:
            return None
        return line.rstrip(b"\n")

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[bytes]:
        while (line := await self.readline()) is not None:
            yield line

    async def records(self) -> AsyncIterator[ProbeMessage]:
        """Parsed lines (`ProbeHello`, then `ProbeRecord`s); raises `ProbeFormatError`."""
        async for line in self:
            yield parse_line(self.node, line)

    async def stop(self, timeout_s: float = 3.0) -> int | None:
        """Close stdin (the probe exits at once), then terminate/kill if it lingers."""
        proc = self._proc
        if proc is None:
            return None
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if self._stderr_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._stderr_task, 1.0)
        return proc.returncode

    async def __aenter__(self) -> LocalProbe:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

"""The local transport: the machine fleetdeck runs on, through subprocesses (no SSH).

The same `Transport` protocol as SSH, so collectors and executors treat this machine as any
other node; `forward_unix` returns the socket path itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Sequence
from typing import Any

from collectors.private_files import child_umask
from collectors.transport.base import (
    CommandResult,
    CommandTimeout,
    TransportError,
    quote_argv,
    tail,
)
from collectors.transport.line_stream import CommandLineStream, NodeTransport

_LINE_LIMIT = 16 * 1024 * 1024


class LocalTransport(NodeTransport):
    """`Transport` for this machine. See `collectors.transport.base.Transport`."""

    place = "local"

    @property
    def connected(self) -> bool:
        return True

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def run(self, argv: Sequence[str], *, input: bytes | None = None,
                  timeout: float) -> CommandResult:
        quote_argv(argv)  # same argument checks as SSH
        return await self._run(list(argv), input, timeout)

    async def run_shell(self, script: str, *, input: bytes | None = None,
                        timeout: float) -> CommandResult:
        return await self._run(["sh", "-c", script], input, timeout)

    async def _run(self, argv: list[str], input: bytes | None, limit_s: float) -> CommandResult:
        # the engine's own files are private; a job's are not
        return await run_local(argv, input, limit_s, self.where, umask=child_umask())

    def stream(
        self, argv: Sequence[str], *, input: bytes | None = None, keep_stdin_open: bool = False
    ) -> LocalLineStream:
        quote_argv(argv)
        return LocalLineStream(self, list(argv), input, keep_stdin_open)

    def stream_shell(
        self, command: str, *, input: bytes | None = None, keep_stdin_open: bool = False
    ) -> LocalLineStream:
        return LocalLineStream(self, ["sh", "-c", command], input, keep_stdin_open)

    async def forward_unix(self, remote_path: str) -> str:
        return remote_path


class LocalLineStream(CommandLineStream):
    """`LineStream` over a local subprocess."""

    def __init__(self, transport: LocalTransport, argv: list[str], input: bytes | None,
                 keep_stdin_open: bool = False) -> None:
        super().__init__(input, keep_stdin_open)
        self._transport = transport
        self._argv = argv
        self._proc: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    async def _start(self) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=_LINE_LIMIT,
                start_new_session=True,
                umask=child_umask(),  # the engine's own files are private; a job's are not
            )
        except OSError as e:
            raise TransportError(f"{self._transport.where}: {self._argv[0]}: {e}") from None
        self._proc = proc
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._feed(proc)))
        self._tasks.append(loop.create_task(self._drain_stderr(proc)))

    async def _feed(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            if self._input:
                proc.stdin.write(self._input)
                await proc.stdin.drain()
            if not self._keep_open:
                proc.stdin.close()

    async def _drain_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        await self._keep_stderr(proc.stderr.read)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._proc is None:
            await self._start()
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        async for line in self._lines(proc.stdout.readline):
            yield line
        await self._finish()

    async def _finish(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await proc.wait()
        if proc.returncode is None:
            _kill_group(proc)
            await proc.wait()
        self.exit_status = proc.returncode
        for task in self._tasks:
            with contextlib.suppress(TimeoutError, OSError):
                async with asyncio.timeout(0.5):
                    await task
        self.stderr_tail = tail(bytes(self._stderr))

    async def aclose(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()
            _kill_group(proc, signal.SIGTERM)
        await self._finish()
        self._proc = None
        for task in self._tasks:
            task.cancel()


async def run_local(argv: list[str], input: bytes | None, limit_s: float, where: str,
                    **popen: Any) -> CommandResult:
    """Run `argv` as a local subprocess in a session of its own (`popen`: more
    `create_subprocess_exec` arguments); its process group is killed on a timeout or a cancel."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            **popen,
        )
    except OSError as e:
        # Same shape as a remote shell's "command not found".
        msg = f"{argv[0]}: {e.strerror or e}\n".encode()
        return CommandResult(127 if isinstance(e, FileNotFoundError) else 126, b"", msg)
    try:
        async with asyncio.timeout(limit_s):
            out, err = await proc.communicate(input)
    except TimeoutError:
        _kill_group(proc)
        await proc.wait()
        raise CommandTimeout(
            f"{where}: `{quote_argv(argv)[:60]}` did not finish within {limit_s:g} s"
        ) from None
    except BaseException:
        _kill_group(proc)
        raise
    assert proc.returncode is not None
    return CommandResult(proc.returncode, out, err)


def _kill_group(proc: asyncio.subprocess.Process, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)

"""The SSH and local transports against real sshd bed nodes: host-key refusal and trust,
argument quoting, exit codes, timeouts, streaming, unix-socket forwarding, bounded connects."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncssh
import pytest

from collectors.transport import (
    CommandTimeout,
    ConnectError,
    HostKeyError,
    LocalTransport,
    NodeTarget,
    SshOptions,
    SshTransport,
)
from collectors.transport.hostkeys import (
    HostKeyChangedError,
    add_known_host,
    fetch_host_key,
    fingerprint,
    key_status,
)
from tests.bed.ssh import SshNode

pytestmark = [pytest.mark.ssh]


def target(node: SshNode, **changes: object) -> NodeTarget:
    fields: dict[str, object] = {
        "name": node.name, "host": node.host, "port": node.port, "user": node.user,
        "identity_file": node.identity_file,
    }
    fields.update(changes)
    return NodeTarget(**fields)  # type: ignore[arg-type]


def options(known_hosts: Path, **changes: object) -> SshOptions:
    return SshOptions(known_hosts=known_hosts, use_agent=False, connect_timeout_s=5.0,
                      **changes)  # type: ignore[arg-type]


def socket_exists(path: str) -> bool:
    return Path(path).exists()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(
        f"/proc/{pid}/status").read_text().lower()


async def test_unknown_host_key_is_refused_with_fingerprint_then_trusted(
    ssh_nodes, tmp_path: Path
) -> None:
    (node,) = ssh_nodes(1)
    known = tmp_path / "known_hosts"  # does not exist yet: nothing is trusted
    t = SshTransport(target(node), options(known))
    with pytest.raises(HostKeyError) as info:
        await t.connect()
    err = info.value
    assert err.fingerprint == node.host_key_fingerprint
    assert not err.changed
    msg = str(err)
    assert "\n" not in msg
    assert node.host_key_fingerprint in msg
    assert f"fleetdeck nodes trust {node.name}" in msg
    assert not t.connected

    key = await fetch_host_key(node.host, node.port, 5.0)
    assert fingerprint(key) == node.host_key_fingerprint
    assert add_known_host(known, node.host, node.port, key) is True
    assert add_known_host(known, node.host, node.port, key) is False  # already there
    assert known.stat().st_mode & 0o777 == 0o600
    assert key_status(known, node.host, node.port, key) == "trusted"

    await t.connect()
    try:
        res = await t.run(["echo", "hello"], timeout=10)
        assert res.ok and res.stdout == b"hello\n"
    finally:
        await t.close()


async def test_changed_host_key_is_refused_and_replaced_only_when_asked(
    ssh_nodes, tmp_path: Path
) -> None:
    (node,) = ssh_nodes(1)
    impostor = asyncssh.generate_private_key("ssh-ed25519").convert_to_public()
    other = asyncssh.generate_private_key("ssh-ed25519").convert_to_public()
    known = tmp_path / "known_hosts"
    add_known_host(known, node.host, node.port, impostor)
    add_known_host(known, "10.9.9.9", 2222, other)  # another host: must survive a replace

    t = SshTransport(target(node), options(known))
    with pytest.raises(HostKeyError) as info:
        await t.connect()
    assert info.value.changed
    assert "CHANGED" in str(info.value) and node.host_key_fingerprint in str(info.value)

    key = await fetch_host_key(node.host, node.port, 5.0)
    assert key_status(known, node.host, node.port, key) == "changed"
    with pytest.raises(HostKeyChangedError):
        add_known_host(known, node.host, node.port, key)
    assert add_known_host(known, node.host, node.port, key, replace=True)
    text = known.read_text()
    assert impostor.export_public_key().decode().split()[1] not in text
    assert other.export_public_key().decode().split()[1] in text
    await t.connect()
    await t.close()


async def test_run_passes_arguments_verbatim_and_reports_status(ssh_nodes) -> None:
    (node,) = ssh_nodes(1)
    t = SshTransport(target(node), options(node.known_hosts))
    try:
        hostile = ["a b", "$HOME", "`id`", "'q'", '"d"', "x;y", "*", ""]
        res = await t.run(["printf", "%s|", *hostile], timeout=10)
        assert res.exit_status == 0
        assert res.stdout.decode() == "".join(f"{a}|" for a in hostile)

        res = await t.run(["sh", "-c", "echo out; echo err >&2; exit 7"], timeout=10)
        assert (res.exit_status, res.stdout, res.stderr) == (7, b"out\n", b"err\n")
        assert res.error_line() == "err"

        res = await t.run(["cat"], input=b"\x00binary\xff", timeout=10)
        assert res.stdout == b"\x00binary\xff"

        res = await t.run_shell("echo $((6 * 7)) | tr 4 X", timeout=10)
        assert res.stdout == b"X2\n"

        res = await t.run(["sh", "-c", "kill -9 $$"], timeout=10)
        assert res.exit_status == -9

        with pytest.raises(ValueError):
            await t.run([], timeout=1)
        with pytest.raises(TypeError):
            await t.run("echo hi", timeout=1)  # type: ignore[arg-type]
    finally:
        await t.close()


async def test_timeout_kills_the_remote_command(ssh_nodes, tmp_path: Path) -> None:
    (node,) = ssh_nodes(1)
    pidfile = tmp_path / "sleeper.pid"
    t = SshTransport(target(node), options(node.known_hosts))
    try:
        # connected first, and a timeout a loaded machine still starts the command within: the
        # test is about what happens after the deadline, not how fast sshd answers
        assert (await t.run(["true"], timeout=60)).ok
        with pytest.raises(CommandTimeout) as info:
            await t.run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 300"], timeout=5.0)
        assert "did not finish within 5 s" in str(info.value)
        pid = int(pidfile.read_text())
        for _ in range(50):
            if not pid_alive(pid):
                break
            await asyncio.sleep(0.1)
        assert not pid_alive(pid), "the timed-out command is still running on the node"
        assert (await t.run(["true"], timeout=10)).ok  # the connection is still usable
    finally:
        await t.close()


async def test_stream_yields_lines_and_stops_the_command_on_close(
    ssh_nodes, tmp_path: Path
) -> None:
    (node,) = ssh_nodes(1)
    t = SshTransport(target(node), options(node.known_hosts))
    script = b"import os, sys, time\nprint(os.getpid(), flush=True)\n" \
             b"i = 0\nwhile True:\n    print('line', i, flush=True); i += 1; time.sleep(0.05)\n"
    try:
        lines: list[bytes] = []
        async with t.stream(["python3", "-u", "-"], input=script) as stream:
            async for line in stream:
                lines.append(line)
                if len(lines) == 4:
                    break
        pid = int(lines[0])
        assert lines[1:] == [b"line 0", b"line 1", b"line 2"]
        for _ in range(50):
            if not pid_alive(pid):
                break
            await asyncio.sleep(0.1)
        assert not pid_alive(pid)

        async with t.stream(["sh", "-c", "echo a; echo b; echo oops >&2; exit 3"]) as stream:
            got = [line async for line in stream]
        assert got == [b"a", b"b"]
        assert stream.exit_status == 3
        assert stream.stderr_tail == b"oops\n"

        # keep_stdin_open: the command sees EOF only when the stream is closed.
        marker = tmp_path / "saw-eof"
        cmd = f"echo ready; cat >/dev/null; touch {marker}"
        async with t.stream_shell(cmd, input=b"payload", keep_stdin_open=True) as stream:
            async for line in stream:
                assert line == b"ready"
                await asyncio.sleep(0.3)
                assert not marker.exists()
                break
        for _ in range(50):
            if marker.exists():
                break
            await asyncio.sleep(0.1)
        assert marker.exists()
    finally:
        await t.close()


async def test_forward_unix_reaches_a_socket_on_the_node(ssh_nodes, tmp_path: Path) -> None:
    (node,) = ssh_nodes(1)
    remote = tmp_path / "echo.sock"

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readline()
        writer.write(b"echo:" + data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(echo, path=str(remote))
    t = SshTransport(target(node), options(node.known_hosts))
    try:
        local = await t.forward_unix(str(remote))
        assert local != str(remote)
        assert Path(local).parent.stat().st_mode & 0o777 == 0o700
        assert await t.forward_unix(str(remote)) == local  # one forward per remote path
        reader, writer = await asyncio.open_unix_connection(local)
        writer.write(b"ping\n")
        await writer.drain()
        assert await reader.readline() == b"echo:ping\n"
        writer.close()
        await t.close()
        assert not socket_exists(local)
    finally:
        server.close()
        await t.close()


async def test_connect_errors_are_one_line(ssh_nodes, tmp_path: Path) -> None:
    (node,) = ssh_nodes(1)
    wrong_key = tmp_path / "wrong_key"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(wrong_key))
    t = SshTransport(target(node, identity_file=wrong_key), options(node.known_hosts))
    with pytest.raises(ConnectError) as info:
        await t.connect()
    assert "authentication failed" in str(info.value) and node.name in str(info.value)

    closed_port = target(node, port=1)
    with pytest.raises(ConnectError) as info:
        await SshTransport(closed_port, options(node.known_hosts)).connect()
    assert str(info.value).endswith("connection refused")


class _CountingSemaphore(asyncio.Semaphore):
    """A semaphore that remembers how many holders it had at once."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.active = 0
        self.peak = 0

    async def acquire(self) -> bool:
        await super().acquire()
        self.active += 1
        self.peak = max(self.peak, self.active)
        return True

    def release(self) -> None:
        self.active -= 1
        super().release()


async def test_connects_share_a_bound(ssh_nodes) -> None:
    nodes = ssh_nodes(3)
    limit = _CountingSemaphore(2)
    ts = [SshTransport(target(n), options(n.known_hosts), connect_limit=limit)
          for n in nodes for _ in range(3)]
    try:
        await asyncio.gather(*(t.connect() for t in ts))
        assert all(t.connected for t in ts)
        assert limit.peak == 2
        results = await asyncio.gather(*(t.run(["hostname"], timeout=10) for t in ts))
        assert all(r.ok for r in results)
    finally:
        await asyncio.gather(*(t.close() for t in ts))


async def test_local_transport_has_the_same_behaviour(tmp_path: Path) -> None:
    t = LocalTransport(NodeTarget("here", transport="local"))
    res = await t.run(["printf", "%s|", "a b", "$HOME"], timeout=10)
    assert res.stdout == b"a b|$HOME|"
    res = await t.run(["no-such-command-fd"], timeout=10)
    assert res.exit_status == 127
    res = await t.run_shell("exit 4", timeout=10)
    assert res.exit_status == 4
    with pytest.raises(CommandTimeout):
        await t.run(["sleep", "30"], timeout=0.5)
    async with t.stream(["sh", "-c", "echo 1; echo 2; exit 5"]) as stream:
        assert [line async for line in stream] == [b"1", b"2"]
    assert stream.exit_status == 5
    sock = str(tmp_path / "x.sock")
    assert await t.forward_unix(sock) == sock

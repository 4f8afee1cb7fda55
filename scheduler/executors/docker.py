"""Docker executor: a container on the node's dockerd, reached through the SSH-forwarded socket.

The node's Docker socket (`transport.node.docker_socket`) is forwarded by the transport and
driven with the docker SDK; its blocking calls run in a thread (`asyncio.to_thread`).

A job attempt is the container `fleetdeck-<job_id>-<attempt>`: creating it a second time hits
a name conflict and the existing container is adopted, so `start` never runs a job twice. The
command is the launch's argument list as is (a shell only with `shell=True`: `sh -c SCRIPT`).
Containers carry the labels `fleetdeck.job`, `fleetdeck.attempt`, `fleetdeck.user`,
`fleetdeck.project`, `fleetdeck.name`, `fleetdeck.gpus` (the chosen host GPU indices),
`fleetdeck.gpu_mode` (`device_request`, or `env` where the node has no GPU runtime) and
`fleetdeck.max_runtime_s`; they run under docker's init (signals reach the job, zombies are
reaped), with `nano_cpus` and memory limits. Containers are not removed on exit, so exit code
and logs survive; `cleanup` removes one.

GPUs: with `gpu_runtime` (the node's dockerd has the NVIDIA container toolkit) the chosen GPUs
are a device request; without, the container only gets `NVIDIA_VISIBLE_DEVICES` (which a
default nvidia runtime would honour) and `FLEETDECK_GPU_INDICES`. `CUDA_VISIBLE_DEVICES` is not
set: inside a container the visible GPUs are renumbered from 0 and CUDA sees exactly them.
Docker has no runtime limit: `Status.deadline_at` says when the engine should stop the job.
A stop with notice (preemption) first creates `$FLEETDECK_PREEMPT_FILE` in the container.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import shlex
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container
from docker.types import DeviceRequest

import scheduler.executors.base as base
from collectors.transport.base import Transport
from scheduler.executors.base import Discovered, ExecutorError, Handle, Launch, RunState, Status
from scheduler.executors.identity import engine_user, job_identity, resolve_owner_sh

LABEL_JOB = "fleetdeck.job"
LABEL_ATTEMPT = "fleetdeck.attempt"
LABEL_FLEET = "fleetdeck.fleet"
# The container's $FLEETDECK_PREEMPT_FILE: a stop with notice creates it (`docker exec`)
# before `docker stop -t GRACE`.
CONTAINER_PREEMPT_FILE = "/tmp/fleetdeck-preempt"


def container_name(job_id: int, attempt: int, fleet: str = "") -> str:
    """`fleetdeck-<fleet>-<job>-<attempt>`: job ids are per store, so two stores driving one
    node (tests, a demo beside production) never adopt each other's containers."""
    return f"fleetdeck-{fleet}-{job_id}-{attempt}" if fleet else f"fleetdeck-{job_id}-{attempt}"


def create_kwargs(launch: Launch, *, gpu_runtime: bool, init: bool = True,
                  fleet: str = "") -> dict[str, Any]:
    """The keyword arguments for `client.containers.create` (pure; tested without dockerd)."""
    if not launch.image:
        raise ValueError(f"job {launch.tag}: a docker job needs an image")
    gpus = ",".join(str(i) for i in launch.gpu_indices)
    extra: dict[str, str] = {base.PREEMPT_FILE_ENV: CONTAINER_PREEMPT_FILE}
    mode = "none"
    device_requests: list[DeviceRequest] = []
    if launch.gpu_indices:
        if gpu_runtime:
            mode = "device_request"
            device_requests.append(
                DeviceRequest(
                    driver="nvidia",
                    device_ids=[str(i) for i in launch.gpu_indices],
                    capabilities=[["gpu"]],
                )
            )
        else:
            mode = "env"
            extra["NVIDIA_VISIBLE_DEVICES"] = gpus
    labels = {
        LABEL_JOB: str(launch.job_id),
        LABEL_ATTEMPT: str(launch.attempt),
        "fleetdeck.user": launch.user,
        "fleetdeck.project": launch.project,
        "fleetdeck.name": launch.name,
        "fleetdeck.gpus": gpus,
        "fleetdeck.gpu_milli": str(launch.gpu_milli) if launch.gpu_indices else "0",
        "fleetdeck.gpu_mode": mode,
    }
    if fleet:
        labels[LABEL_FLEET] = fleet
    if launch.max_runtime_s is not None:
        labels["fleetdeck.max_runtime_s"] = f"{launch.max_runtime_s:g}"
    kwargs: dict[str, Any] = {
        "image": launch.image,
        "command": list(launch.command),
        "name": container_name(launch.job_id, launch.attempt, fleet),
        "labels": labels,
        "environment": {**launch.secret_env, **launch.merged_env(extra)},
        "init": init,
        "stdin_open": False,
        "tty": False,
    }
    if launch.workdir:
        kwargs["working_dir"] = launch.workdir
    if device_requests:
        kwargs["device_requests"] = device_requests
    if launch.cpu_milli > 0:
        kwargs["nano_cpus"] = launch.cpu_milli * 1_000_000
    if launch.mem_bytes > 0:
        kwargs["mem_limit"] = launch.mem_bytes
    return kwargs


_DOCKER_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)\Z")


def parse_docker_time(text: str | None) -> float | None:
    """Epoch seconds from Docker's RFC 3339 nanosecond times; None for its zero time.

    >>> parse_docker_time("1970-01-01T00:00:01.500000000Z")
    1.5
    """
    m = _DOCKER_TIME.match((text or "").strip())
    if m is None or m.group(1).startswith("0001-"):
        return None
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    frac = (m.group(2) or "0")[:6]
    return datetime.fromisoformat(f"{m.group(1)}.{frac.ljust(6, '0')}{zone}").timestamp()


def status_of(attrs: dict[str, Any]) -> Status:
    """A `Status` from a container's inspect data."""
    state = attrs.get("State") or {}
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    docker_state = str(state.get("Status", ""))
    started = parse_docker_time(state.get("StartedAt"))
    ended = parse_docker_time(state.get("FinishedAt"))
    if started is not None and ended is not None:
        ended = max(ended, started)  # dockerd can stamp a very short run's end before its start
    deadline = None
    limit = labels.get("fleetdeck.max_runtime_s")
    if limit and started is not None:
        with contextlib.suppress(ValueError):
            deadline = started + float(limit)
    if docker_state == "created":
        return Status(RunState.PENDING, detail="created", deadline_at=None)
    if docker_state in ("running", "paused", "restarting"):
        return Status(RunState.RUNNING, None, started, None, detail=docker_state,
                      deadline_at=deadline)
    code = state.get("ExitCode")
    detail = "oom-killed" if state.get("OOMKilled") else docker_state
    if state.get("Error"):
        detail = f"{detail}: {state['Error']}"
    return Status(
        RunState.EXITED, int(code) if code is not None else None, started, ended, detail=detail
    )


@dataclass
class DockerExecutor:
    """`Executor` for Docker containers. See the module docstring.

    `gpu_runtime`: the node's dockerd can honour NVIDIA device requests. `init`: run the job
    under docker's init. `api_timeout_s`: the SDK's HTTP timeout.
    """

    gpu_runtime: bool = True
    init: bool = True
    fleet: str = ""  # the store's fleet id: names and discovery are scoped to it
    api_timeout_s: float = 60.0
    adopt_wait_s: float = 3.0
    kind: base.ExecutorKind = field(default="docker", init=False)
    _clients: dict[str, docker.DockerClient] = field(default_factory=dict, repr=False)

    async def _client(self, transport: Transport) -> docker.DockerClient:
        path = await transport.forward_unix(transport.node.docker_socket)
        client = self._clients.get(path)
        if client is None:
            where = transport.node.name

            def make() -> docker.DockerClient:
                try:
                    return docker.DockerClient(
                        base_url=f"unix://{path}", version="auto", timeout=int(self.api_timeout_s)
                    )
                except docker.errors.DockerException as e:
                    raise ExecutorError(f"node {where}: docker: {_reason(e)}") from None

            client = await asyncio.to_thread(make)
            self._clients[path] = client
        return client

    async def _call(self, transport: Transport, what: str, fn: Any, *args: Any) -> Any:
        client = await self._client(transport)
        try:
            return await asyncio.to_thread(fn, client, *args)
        except docker.errors.DockerException as e:
            raise ExecutorError(f"node {transport.node.name}: {what}: {_reason(e)}") from None

    async def start(self, launch: Launch, transport: Transport) -> Handle:
        kwargs = create_kwargs(launch, gpu_runtime=self.gpu_runtime, init=self.init,
                               fleet=self.fleet)
        run_as = job_identity(transport.node, engine_user()).run_as(launch.user)
        if run_as is not None:
            kwargs.update(await owner_ids(run_as, transport, self.api_timeout_s))
        cid = await self._call(transport, f"start job {launch.tag}", self._start_sync, kwargs)
        return Handle("docker", transport.node.name, cid, launch.job_id, launch.attempt)

    def _start_sync(
        self, client: docker.DockerClient, kwargs: dict[str, Any], *, pulled: bool = False
    ) -> str:
        name = kwargs["name"]
        try:
            container = client.containers.create(**kwargs)
        except docker.errors.ImageNotFound:
            if pulled:
                raise
            client.images.pull(kwargs["image"])
            return self._start_sync(client, kwargs, pulled=True)
        except docker.errors.APIError as e:
            if e.status_code != 409:
                raise
            return self._adopt(self._get_reserved(client, name), kwargs)
        container.start()
        return str(container.id)

    def _get_reserved(self, client: docker.DockerClient, name: str) -> Container:
        """The container holding `name`; dockerd reserves a name before the container shows."""
        deadline = time.monotonic() + self.adopt_wait_s
        while True:
            try:
                return client.containers.get(name)
            except docker.errors.NotFound:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _adopt(self, container: Container, kwargs: dict[str, Any]) -> str:
        """Another start created this container: wait for it to leave `created`, else start it."""
        labels = container.labels
        want = kwargs["labels"]
        if (labels.get(LABEL_JOB), labels.get(LABEL_ATTEMPT)) != (
            want[LABEL_JOB],
            want[LABEL_ATTEMPT],
        ):
            raise docker.errors.DockerException(
                f"container {container.name} exists but is not job {want[LABEL_JOB]} "
                f"attempt {want[LABEL_ATTEMPT]}"
            )
        deadline = time.monotonic() + self.adopt_wait_s
        while container.status == "created" and time.monotonic() < deadline:
            time.sleep(0.1)
            container.reload()
        if container.status == "created":
            container.start()  # the creator died between create and start
        return str(container.id)

    async def status(self, handle: Handle, transport: Transport) -> Status:
        return (await self.status_many([handle], transport))[0]

    async def status_many(self, handles: Sequence[Handle],
                          transport: Transport) -> list[Status]:
        """Every container inspected in one worker thread, over one client."""
        def get(client: docker.DockerClient) -> list[Status]:
            out = []
            for h in handles:
                try:
                    out.append(status_of(client.containers.get(h.external_id).attrs))
                except docker.errors.NotFound:
                    out.append(Status(RunState.MISSING,
                                      detail=f"no container {h.external_id[:12]}"))
            return out

        if not handles:
            return []
        result: list[Status] = await self._call(transport, "container status", get)
        return result

    async def stop(self, handle: Handle, transport: Transport, *, grace_s: float,
                   notice: bool = False) -> None:
        def stop(client: docker.DockerClient) -> None:
            try:
                c = client.containers.get(handle.external_id)
            except docker.errors.NotFound:
                return
            if c.status == "created":
                c.remove(force=True)  # never ran: nothing to keep, and nobody may start it
                return
            if notice and c.status == "running":
                # best effort: an image without sh still gets the SIGTERM
                with contextlib.suppress(docker.errors.APIError):
                    c.exec_run(["sh", "-c", f': > "${base.PREEMPT_FILE_ENV}"'], detach=False)
            if c.status in ("running", "paused", "restarting"):
                c.stop(timeout=math.ceil(grace_s))
                c.wait(timeout=int(self.api_timeout_s))

        await self._call(transport, f"stop job {handle.job_id}-{handle.attempt}", stop)

    async def logs(self, handle: Handle, transport: Transport, *, tail_lines: int | None = None,
                   follow: bool = False) -> AsyncIterator[bytes]:
        tail: int | str = "all" if tail_lines is None else max(0, tail_lines)
        what = f"logs of job {handle.job_id}-{handle.attempt}"
        if not follow:

            def once(client: docker.DockerClient) -> bytes:
                c = client.containers.get(handle.external_id)
                return bytes(c.logs(stdout=True, stderr=True, tail=tail))

            data: bytes = await self._call(transport, what, once)
            if data:
                yield data
            return

        def open_stream(client: docker.DockerClient) -> Iterator[bytes]:
            c = client.containers.get(handle.external_id)
            stream: Iterator[bytes] = c.logs(
                stdout=True, stderr=True, tail=tail, stream=True, follow=True
            )
            return stream

        stream = await self._call(transport, what, open_stream)
        try:
            while True:
                try:
                    chunk = await asyncio.to_thread(next, stream, None)
                except docker.errors.DockerException as e:
                    where = transport.node.name
                    raise ExecutorError(f"node {where}: {what}: {_reason(e)}") from None
                if chunk is None:
                    break
                yield chunk
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    async def discover(self, transport: Transport) -> list[Discovered]:
        def find(client: docker.DockerClient) -> list[Discovered]:
            found = []
            selector = f"{LABEL_FLEET}={self.fleet}" if self.fleet else LABEL_JOB
            for c in client.containers.list(all=True, filters={"label": selector}):
                labels = c.labels
                job, attempt = labels.get(LABEL_JOB, ""), labels.get(LABEL_ATTEMPT, "")
                if not (job.isdigit() and attempt.isdigit()):
                    continue
                handle = Handle("docker", transport.node.name, str(c.id), int(job), int(attempt))
                found.append(Discovered(handle, status_of(c.attrs)))
            return sorted(found, key=lambda d: (d.job_id, d.attempt))

        result: list[Discovered] = await self._call(transport, "discover containers", find)
        return result

    async def cleanup(self, handle: Handle, transport: Transport) -> None:
        def remove(client: docker.DockerClient) -> None:
            try:
                c = client.containers.get(handle.external_id)
            except docker.errors.NotFound:
                return
            if c.status in ("running", "paused", "restarting"):
                raise docker.errors.DockerException("the container still runs; stop it first")
            c.remove()

        await self._call(transport, f"clean up job {handle.job_id}-{handle.attempt}", remove)

    def close(self) -> None:
        """Close the SDK clients (their forwarded sockets belong to the transports)."""
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()


async def owner_ids(user: str, transport: Transport, timeout_s: float) -> dict[str, Any]:
    """`user` (uid:gid) and `group_add` for a container run as `user` as the node knows them;
    one line when the node has no such account."""
    script = (resolve_owner_sh(user, transport.node.name)
              + f'\necho "$uid $gid $(id -G -- {shlex.quote(user)})"')
    res = base.check(await transport.run_shell(script, timeout=timeout_s), transport,
                     f"run as {user}")
    uid, gid, *groups = res.text().split()
    return {"user": f"{uid}:{gid}", "group_add": [g for g in groups if g != gid]}


def _reason(e: BaseException) -> str:
    if isinstance(e, docker.errors.APIError):
        return str(e.explanation or e)
    return str(e) or type(e).__name__

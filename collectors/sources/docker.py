"""Docker containers of one node, through its Docker socket reached over the node's transport.

The socket (path from the node's config) is forwarded to a local unix socket by the SSH
transport and read with the docker SDK; the SDK blocks, so each sample runs in a thread.
CPU % comes from the difference between two samples of the container's CPU counters (one-shot
stats are cheap); a container seen for the first time is asked for a full stats read, which
waits about a second in the daemon, so it has a CPU figure at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import docker
import docker.errors
import requests.exceptions

from collectors.transport.base import Transport, TransportError

JOB_LABEL = "fleetdeck.job"
_STATS_THREADS = 8


@dataclass(frozen=True, slots=True)
class ContainerSample:
    """One container at one instant: a `container_samples` row. Times are epoch seconds."""

    ts: float
    node: str
    container_id: str
    name: str
    image: str
    state: str  # created | running | paused | restarting | exited | dead
    labels: Mapping[str, str]
    started_at: float | None
    cpu_util_pct: float | None  # of one core = 100; None until two counter readings exist
    mem_used_bytes: int | None
    mem_limit_bytes: int | None
    gpu_devices: tuple[str, ...]  # device ids from DeviceRequests ("all", "count=2" if no ids)
    job_id: int | None  # from the `fleetdeck.job` label


class DockerError(TransportError):
    """The node's Docker daemon could not be read; one line saying why."""


@dataclass(slots=True)
class _Known:
    state: str
    started_at: float | None
    gpu_devices: tuple[str, ...]
    cpu_total_ns: int | None = None
    system_ns: int | None = None


class DockerSource:
    """Samples one node's containers. Call `sample(ts)` once per interval; `close()` at the end."""

    def __init__(self, node: str, transport: Transport, socket_path: str, *,
                 timeout_s: float = 10.0) -> None:
        self.node = node
        self.transport = transport
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self._client: docker.DockerClient | None = None
        self._local_path: str | None = None
        self._known: dict[str, _Known] = {}
        self._pool: ThreadPoolExecutor | None = None

    async def sample(self, ts: float) -> list[ContainerSample]:
        """All containers (running or not) with their stats; raises `DockerError`."""
        local = await self.transport.forward_unix(self.socket_path)
        try:
            return await asyncio.to_thread(self._sample_blocking, local, ts)
        except (docker.errors.DockerException, requests.exceptions.RequestException,
                OSError) as e:
            self._close_client()
            raise DockerError(
                f"node {self.node}: docker at {self.socket_path}: {_reason(e)}"
            ) from None

    def close(self) -> None:
        self._close_client()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _close_client(self) -> None:
        client, self._client, self._local_path = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    # -- blocking part (runs in a thread) ---------------------------------------------------
    def _sample_blocking(self, local: str, ts: float) -> list[ContainerSample]:
        if local != self._local_path or self._client is None:
            self._close_client()
            self._client = _client(local, self.timeout_s)  # asks the daemon its API version
            self._local_path = local
        api = self._client.api
        listed: list[dict[str, Any]] = api.containers(all=True)
        seen: set[str] = set()
        infos: list[tuple[dict[str, Any], _Known]] = []
        for entry in listed:
            cid = str(entry["Id"])
            seen.add(cid)
            state = str(entry.get("State") or "unknown")
            known = self._known.get(cid)
            if known is None or known.state != state:
                try:
                    inspect = api.inspect_container(cid)
                except docker.errors.NotFound:
                    continue  # removed between list and inspect
                prev = known
                known = _Known(state, _parse_time((inspect.get("State") or {}).get("StartedAt")),
                               _gpu_devices(inspect.get("HostConfig") or {}))
                if prev is not None and prev.started_at == known.started_at:
                    known.cpu_total_ns, known.system_ns = prev.cpu_total_ns, prev.system_ns
                self._known[cid] = known
            infos.append((entry, known))
        for gone in set(self._known) - seen:
            del self._known[gone]
        running = [(e, k) for e, k in infos if k.state == "running"]
        stats: dict[str, dict[str, Any] | None] = {}
        if running:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(_STATS_THREADS, thread_name_prefix="fd-docker")
            futures = {
                str(e["Id"]): self._pool.submit(_read_stats, api, str(e["Id"]),
                                                k.cpu_total_ns is not None)
                for e, k in running
            }
            for cid, fut in futures.items():
                stats[cid] = fut.result()
        out: list[ContainerSample] = []
        for entry, known in infos:
            cid = str(entry["Id"])
            labels = {str(k): str(v) for k, v in (entry.get("Labels") or {}).items()}
            cpu_pct, mem_used, mem_limit = self._usage(known, stats.get(cid))
            names = entry.get("Names") or []
            out.append(ContainerSample(
                ts=ts, node=self.node, container_id=cid,
                name=str(names[0]).lstrip("/") if names else cid[:12],
                image=str(entry.get("Image") or ""),
                state=known.state, labels=labels, started_at=known.started_at,
                cpu_util_pct=cpu_pct, mem_used_bytes=mem_used, mem_limit_bytes=mem_limit,
                gpu_devices=known.gpu_devices, job_id=_job_id(labels),
            ))
        return out

    @staticmethod
    def _usage(known: _Known, stats: dict[str, Any] | None
               ) -> tuple[float | None, int | None, int | None]:
        if not stats:
            return None, None, None
        cpu = stats.get("cpu_stats") or {}
        total = (cpu.get("cpu_usage") or {}).get("total_usage")
        system = cpu.get("system_cpu_usage")
        ncpu = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage")
                                            or []) or 1
        pct: float | None = None
        pre = stats.get("precpu_stats") or {}
        pre_total = (pre.get("cpu_usage") or {}).get("total_usage")
        pre_system = pre.get("system_cpu_usage")
        if pre_total is None or pre_system is None:
            pre_total, pre_system = known.cpu_total_ns, known.system_ns
        if None not in (total, system, pre_total, pre_system):
            d_cpu = int(total) - int(pre_total)  # type: ignore[arg-type]
            d_sys = int(system) - int(pre_system)  # type: ignore[arg-type]
            if d_sys > 0 and d_cpu >= 0:
                pct = round(d_cpu / d_sys * ncpu * 100.0, 2)
        if total is not None and system is not None:
            known.cpu_total_ns, known.system_ns = int(total), int(system)
        mem = stats.get("memory_stats") or {}
        used = mem.get("usage")
        if used is not None:
            detail = mem.get("stats") or {}
            cache = detail.get("inactive_file", detail.get("total_inactive_file", 0)) or 0
            used = max(0, int(used) - int(cache))
        limit = mem.get("limit")
        return pct, used, int(limit) if limit is not None else None


def _client(local: str, timeout_s: float) -> docker.DockerClient:
    return docker.DockerClient(base_url=f"unix://{local}", timeout=int(max(1, timeout_s)),
                               version="auto")


def _read_stats(api: Any, cid: str, one_shot: bool) -> dict[str, Any] | None:
    try:
        if one_shot:
            return dict(api.stats(cid, stream=False, one_shot=True))
        return dict(api.stats(cid, stream=False))
    except docker.errors.NotFound:
        return None


def _gpu_devices(host_config: Mapping[str, Any]) -> tuple[str, ...]:
    out: list[str] = []
    for req in host_config.get("DeviceRequests") or []:
        caps = [c for group in (req.get("Capabilities") or []) for c in group]
        if req.get("Driver") not in (None, "", "nvidia") and "gpu" not in caps:
            continue
        ids = req.get("DeviceIDs") or []
        if ids:
            out.extend(str(i) for i in ids)
        elif req.get("Count") == -1:
            out.append("all")
        elif req.get("Count"):
            out.append(f"count={req['Count']}")
    return tuple(out)


def _job_id(labels: Mapping[str, str]) -> int | None:
    raw = labels.get(JOB_LABEL)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _parse_time(raw: object) -> float | None:
    """Docker's RFC 3339 UTC time with nanoseconds -> epoch seconds; the zero time -> None."""
    if not isinstance(raw, str) or not raw or raw.startswith("0001-"):
        return None
    text, frac = raw.rstrip("Z"), ""
    if "." in text:
        text, frac = text.split(".", 1)
        frac = "".join(ch for ch in frac if ch.isdigit())[:6]
    try:
        base = datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        return None
    return base.timestamp() + (int(frac) / 10 ** len(frac) if frac else 0.0)


def container_rows(samples: Sequence[ContainerSample]) -> list[dict[str, Any]]:
    """`container_samples` rows (ts and started_at stay epoch seconds; ingest converts)."""
    return [
        {
            "ts": s.ts, "node": s.node, "container_id": s.container_id, "name": s.name,
            "image": s.image, "state": s.state, "labels": dict(s.labels),
            "started_at": s.started_at, "cpu_util_pct": s.cpu_util_pct,
            "mem_used_bytes": s.mem_used_bytes, "mem_limit_bytes": s.mem_limit_bytes,
            "gpu_devices": list(s.gpu_devices), "job_id": s.job_id,
        }
        for s in samples
    ]


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "Connection aborted" in text or "Connection refused" in text:
        return "no Docker daemon answers on that socket"
    if "Read timed out" in text:
        return "the Docker daemon did not answer in time"
    return text[:200]

"""The `command` provider: the admin's own scripts rent and release nodes (any cloud, Terraform).

Protocol (see `CommandSettings` for placeholders):

- `provision_command` prints one JSON object on stdout (logs go to stderr; when stdout has
  several lines, the last non-empty one must be the object):
  `{"instance_id": "i-1", "host": "10.0.0.7", "port": 22, "user": "ubuntu",
  "price_per_hour": 1.2, "state": "running"}`. Only `instance_id` is required; `state`
  defaults to running when a host is given, else pending (then `status_command` must say
  when it runs). Other keys are kept in `Instance.extra`.
- `status_command` (optional) gets the id and prints `{"state": "pending|running|terminated|
  lost", "host": ..., "port": ..., "user": ..., "reason": ...}`.
- `terminate_command` gets the id; exit status 0 means released.

The environment also carries FLEETDECK_REQUEST_ID, FLEETDECK_OFFER, FLEETDECK_INSTANCE_TYPE,
FLEETDECK_MARKET, FLEETDECK_TAGS (JSON) and FLEETDECK_OFFER_OPTIONS (JSON).
Provisioning is idempotent by request id: the provider remembers each request (in memory, and
in `state_dir` when set) and never runs the script twice for one id.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from collectors.private_files import PRIVATE_FILE_MODE, describe, private_folder, tighten_files
from scheduler.providers.base import (
    Instance,
    InstanceState,
    InstanceStatus,
    Offer,
    ProviderError,
    RequestLocks,
)
from scheduler.providers.config import CommandSettings

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_STATES = {s.value for s in InstanceState}


class CommandProvider:
    """Provider backed by `CommandSettings` scripts."""

    type_name = "command"

    def __init__(self, name: str, settings: CommandSettings, offers: Sequence[Offer] = (),
                 *, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.settings = settings
        self._offers = [o for o in offers if o.provider == name]
        self._clock = clock
        self._by_request: dict[str, Instance] = {}
        self._terminated: set[str] = set()
        self._provisioning = RequestLocks(name)
        if settings.state_dir is not None:
            d = settings.state_dir
            if note := describe(private_folder(d) + tighten_files(d.glob("*.json"))):
                log.warning("provider %s: %s", name, note)

    def offers(self) -> list[Offer]:
        return list(self._offers)

    async def provision(self, offer: Offer, *, request_id: str,
                        tags: Mapping[str, str]) -> Instance:
        async with self._provisioning.lock(request_id):
            known = self._by_request.get(request_id) or self._load(request_id)
            if known is not None:
                self._by_request[request_id] = known
                return known
            subs = {
                "request_id": request_id, "offer": offer.name,
                "instance_type": offer.instance_type, "gpu_model": offer.gpu_model,
                "gpu_count": str(offer.gpu_count), "market": offer.market,
                "price_per_hour": f"{offer.price_per_hour:g}",
            }
            env = {
                "FLEETDECK_REQUEST_ID": request_id, "FLEETDECK_OFFER": offer.name,
                "FLEETDECK_INSTANCE_TYPE": offer.instance_type,
                "FLEETDECK_MARKET": offer.market,
                "FLEETDECK_TAGS": json.dumps(dict(tags), sort_keys=True),
                "FLEETDECK_OFFER_OPTIONS": json.dumps(dict(offer.options), sort_keys=True),
            }
            argv = _fill(self.settings.provision_command, subs)
            out = await self._run("provision_command", argv, env,
                                  self.settings.provision_timeout_s)
            data = _parse_object(out, self.name, "provision_command")
            inst = self._instance_from(data, offer, request_id)
            self._by_request[request_id] = inst
            self._save(inst)
            return inst

    async def status(self, instance_id: str) -> InstanceStatus:
        inst = self._find(instance_id)
        if instance_id in self._terminated:
            return InstanceStatus(instance_id, InstanceState.TERMINATED,
                                  reason="terminated by fleetdeck")
        if self.settings.status_command:
            argv = _fill(self.settings.status_command, {"instance_id": instance_id},
                         append=instance_id)
            out = await self._run("status_command", argv, {"FLEETDECK_INSTANCE_ID": instance_id},
                                  self.settings.status_timeout_s)
            st = self._status_from(_parse_object(out, self.name, "status_command"), instance_id,
                                   inst)
            if inst is not None and st.state is InstanceState.RUNNING and st.host != inst.host:
                inst = replace(inst, state=st.state, host=st.host, port=st.port, user=st.user)
                self._by_request[inst.request_id] = inst
                self._save(inst)
            return st
        if inst is None:
            raise ProviderError(f'provider "{self.name}": unknown instance {instance_id!r} '
                                "(no status_command to ask)")
        return InstanceStatus(instance_id, inst.state, inst.host, inst.port, inst.user)

    async def terminate(self, instance_id: str) -> None:
        self._find(instance_id)  # loads the terminated mark from state_dir
        if instance_id in self._terminated:
            return
        argv = _fill(self.settings.terminate_command, {"instance_id": instance_id},
                     append=instance_id)
        await self._run("terminate_command", argv, {"FLEETDECK_INSTANCE_ID": instance_id},
                        self.settings.terminate_timeout_s)
        self._terminated.add(instance_id)
        inst = self._find(instance_id)
        if inst is not None:
            self._save(inst)

    # -- scripts -----------------------------------------------------------------------------

    async def _run(self, what: str, argv: Sequence[str], extra_env: Mapping[str, str],
                   timeout_s: float) -> str:
        env = {**os.environ, **self.settings.env, **extra_env}
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True)
        except OSError as e:
            raise ProviderError(f'provider "{self.name}": cannot run {what} {argv[0]!r}: '
                                f"{e.strerror or e}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise ProviderError(f'provider "{self.name}": {what} timed out after '
                                f"{timeout_s:g}s and was killed") from None
        if proc.returncode != 0:
            last = _last_line(err.decode(errors="replace")) or "no message on stderr"
            raise ProviderError(f'provider "{self.name}": {what} exited with status '
                                f"{proc.returncode}: {last}")
        return out.decode(errors="replace")

    # -- output validation -------------------------------------------------------------------

    def _instance_from(self, data: Mapping[str, Any], offer: Offer, request_id: str) -> Instance:
        where = "provision_command"
        iid = data.get("instance_id")
        if isinstance(iid, int) and not isinstance(iid, bool):
            iid = str(iid)
        if not isinstance(iid, str) or not iid.strip():
            raise _bad(self.name, where, "instance_id", "a non-empty string", iid,
                       "instance_id" in data)
        host, port, user = self._address(data, where)
        price = data.get("price_per_hour", offer.price_per_hour)
        if isinstance(price, bool) or not isinstance(price, int | float) or price < 0:
            raise _bad(self.name, where, "price_per_hour", "a number >= 0", price, True)
        state = self._state(data, where, host, allowed=("pending", "running"))
        known = {"instance_id", "host", "port", "user", "price_per_hour", "state"}
        return Instance(
            instance_id=iid, provider=self.name, offer=offer.name, request_id=request_id,
            state=state, price_per_hour=float(price), launched_at=self._clock(), host=host,
            port=port, user=user, market=offer.market,
            extra={k: v for k, v in data.items() if k not in known},
        )

    def _status_from(self, data: Mapping[str, Any], instance_id: str,
                     inst: Instance | None) -> InstanceStatus:
        where = "status_command"
        host, port, user = self._address(data, where)
        if host is None and inst is not None:
            host, port, user = inst.host, inst.port, inst.user
        if "state" not in data:
            raise _bad(self.name, where, "state", "one of " + ", ".join(sorted(_STATES)),
                       None, False)
        state = self._state(data, where, host, allowed=tuple(_STATES))
        if state is InstanceState.RUNNING and not host:
            raise _bad(self.name, where, "host", "a host for a running instance", None, False)
        reason = data.get("reason")
        return InstanceStatus(instance_id, state, host, port, user,
                              reason=str(reason) if reason is not None else None)

    def _address(self, data: Mapping[str, Any], where: str) -> tuple[str | None, int, str | None]:
        host = data.get("host")
        if host is not None and (not isinstance(host, str) or not host.strip()):
            raise _bad(self.name, where, "host", "a non-empty string", host, True)
        port = data.get("port", self.settings.default_port)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise _bad(self.name, where, "port", "an integer 1-65535", port, True)
        user = data.get("user", self.settings.default_user)
        if user is not None and (not isinstance(user, str) or not user):
            raise _bad(self.name, where, "user", "a non-empty string", user, True)
        return host, port, user

    def _state(self, data: Mapping[str, Any], where: str, host: str | None,
               allowed: tuple[str, ...]) -> InstanceState:
        raw = data.get("state", "running" if host else "pending")
        if raw not in allowed:
            raise _bad(self.name, where, "state", "one of " + ", ".join(sorted(allowed)), raw,
                       True)
        if raw == "running" and not host and where == "provision_command":
            raise _bad(self.name, where, "host", "a host when state is running", None, False)
        return InstanceState(raw)

    # -- memory ------------------------------------------------------------------------------

    def _find(self, instance_id: str) -> Instance | None:
        for inst in self._by_request.values():
            if inst.instance_id == instance_id:
                return inst
        d = self.settings.state_dir
        if d is None:
            return None
        for p in sorted(d.glob("*.json")):
            found = self._read(p)
            if found is not None and found.instance_id == instance_id:
                self._by_request[found.request_id] = found
                return found
        return None

    def _path(self, request_id: str) -> Path | None:
        d = self.settings.state_dir
        if d is None:
            return None
        name = request_id if _SAFE_NAME.match(request_id) else (
            "h-" + hashlib.sha256(request_id.encode()).hexdigest()[:32])
        return d / f"{self.name}.{name}.json"

    def _load(self, request_id: str) -> Instance | None:
        p = self._path(request_id)
        return self._read(p) if p is not None and p.exists() else None

    def _read(self, p: Path) -> Instance | None:
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(rec, dict) or rec.get("provider") != self.name:
            return None
        inst = Instance(
            instance_id=rec["instance_id"], provider=self.name, offer=rec["offer"],
            request_id=rec["request_id"], state=InstanceState(rec["state"]),
            price_per_hour=float(rec["price_per_hour"]), launched_at=float(rec["launched_at"]),
            host=rec.get("host"), port=int(rec.get("port", 22)), user=rec.get("user"),
            market=rec.get("market", "on-demand"), extra=rec.get("extra", {}),
        )
        if rec.get("terminated"):
            self._terminated.add(inst.instance_id)
        return inst

    def _save(self, inst: Instance) -> None:
        p = self._path(inst.request_id)
        if p is None:
            return
        rec = {
            "provider": self.name, "instance_id": inst.instance_id, "offer": inst.offer,
            "request_id": inst.request_id, "state": inst.state.value,
            "price_per_hour": inst.price_per_hour, "launched_at": inst.launched_at,
            "host": inst.host, "port": inst.port, "user": inst.user, "market": inst.market,
            "extra": dict(inst.extra), "terminated": inst.instance_id in self._terminated,
        }
        tmp = p.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(rec, sort_keys=True))
        tmp.replace(p)


def _fill(argv: Sequence[str], subs: Mapping[str, str], *, append: str | None = None) -> list[str]:
    out: list[str] = []
    used = False
    for arg in argv:
        for key, value in subs.items():
            token = "{" + key + "}"
            if token in arg:
                arg = arg.replace(token, value)
                used = used or key == "instance_id"
        out.append(arg)
    if append is not None and not used:
        out.append(append)
    return out


def _parse_object(out: str, provider: str, what: str) -> dict[str, Any]:
    text = out.strip()
    candidates = [text]
    last = _last_line(text)
    if last and last != text:
        candidates.append(last)
    for c in candidates:
        try:
            data = json.loads(c)
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    shown = (last or "nothing")[:120]
    raise ProviderError(f'provider "{provider}": {what} must print a JSON object on stdout '
                        f'(e.g. {{"instance_id": "i-1", "host": "10.0.0.7"}}), got {shown!r}')


def _bad(provider: str, where: str, key: str, expected: str, got: object,
         has_got: bool) -> ProviderError:
    msg = f'provider "{provider}": {where} output: "{key}": expected {expected}'
    if has_got:
        msg += f", got {json.dumps(got)}"
    return ProviderError(msg)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""

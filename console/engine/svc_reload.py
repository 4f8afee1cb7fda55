"""`config reload` (also SIGHUP to `fleetdeck serve`): apply what can change live, audited.

Policies, quotas and membership, scheduler settings and rates apply at once. Nodes, pools,
the store, collection, SSH and the engine's socket need a restart: a reload says so and leaves
them as they are. A bad file changes nothing and answers with its one-line error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

from collectors.errors import InputError
from collectors.store import Store
from collectors.store.audit import AuditEntry, record
from collectors.store.audit_kinds import ActionKind, TargetKind
from console.config import Config, load
from console.engine.access import Caller
from console.engine.api.replies import Reloaded
from console.engine.api.requests import ReloadConfig
from console.engine.protocol import ErrorCode, RequestError
from console.engine.server import Handler
from console.engine.service_base import BaseService

if TYPE_CHECKING:
    from console.engine.hosting import Host

LIVE = ("policies", "users", "projects", "teams", "scheduler", "rates", "access")
RESTART = ("store", "collect", "ssh", "engine", "nodes", "pools", "notify")


def diff(old: Config, new: Config) -> tuple[list[str], list[str]]:
    """Sections that changed: (applied live, needing a restart)."""
    live = [k for k in LIVE if getattr(old, k) != getattr(new, k)]
    restart = [k for k in RESTART if getattr(old, k) != getattr(new, k)]
    return live, restart


class ReloadService(BaseService):
    """`config reload` (and SIGHUP): every service gets the new config."""

    def __init__(self, engine: Host) -> None:
        self.engine = engine

    def handlers(self) -> Mapping[str, Handler]:
        return {"reload_config": self.reload}

    async def reload(self, caller: Caller, req: ReloadConfig) -> Reloaded:
        return await reload_config(self.engine, actor=caller.user)


async def reload_config(engine: Host, *, actor: str) -> Reloaded:
    if engine.loaded.embedded and engine.loaded.source == "embedded default":
        raise RequestError(ErrorCode.REFUSED, "the engine runs on the embedded default; "
                                      "there is no config file to reload")
    try:
        new = load(engine.loaded.source).config
    except InputError as e:
        raise RequestError(ErrorCode.BAD_REQUEST, str(e)) from None
    old = engine.config
    # the store and socket stay what the engine was started with (they may come from flags)
    new = dataclasses.replace(new, store=old.store, engine=old.engine)
    live, restart = diff(old, new)
    if live:
        _apply(engine, dataclasses.replace(old, **{k: getattr(new, k) for k in LIVE}))
    evidence = {"applied": live, "needs_restart": restart, "file": engine.loaded.source}
    reason = (f"applied {', '.join(live)}" if live else "nothing to apply") + (
        f"; restart to apply {', '.join(restart)}" if restart else "")

    def audit(store: Store) -> None:
        with store.transaction() as con:
            record(con, [AuditEntry(actor, ActionKind.CONFIG_RELOAD, TargetKind.CONFIG,
                                    engine.loaded.source,
                                    reason, evidence)], now=engine.clock())

    await engine.db.run(audit)
    return Reloaded(applied=live, needs_restart=restart, reason=reason)


def _apply(engine: Host, new: Config) -> None:
    """Each service takes what it can apply live, then the engine holds the new config."""
    for svc in engine.services:
        svc.reconfigure(new)
    engine.config = new
    engine.loaded = dataclasses.replace(engine.loaded, config=new)

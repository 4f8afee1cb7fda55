"""`config reload` (also SIGHUP to `fleetdeck serve`): apply what can change live, audited.

Policies, quotas and membership, scheduler settings and rates apply at once. Nodes, pools,
the store, collection, SSH and the engine's socket need a restart: a reload says so and leaves
them as they are. A bad file changes nothing and answers with its one-line error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from collectors.errors import InputError
from collectors.store import Store
from collectors.store.audit import AuditEntry, record
from collectors.store.audit_kinds import ActionKind, TargetKind
from console.config import Config, load
from console.engine.protocol import RequestError
from console.engine.server import Caller

if TYPE_CHECKING:
    from console.engine.host import Engine

LIVE = ("policies", "users", "projects", "teams", "scheduler", "rates")
RESTART = ("store", "collect", "ssh", "engine", "nodes", "pools")


def diff(old: Config, new: Config) -> tuple[list[str], list[str]]:
    """Sections that changed: (applied live, needing a restart)."""
    live = [k for k in LIVE if getattr(old, k) != getattr(new, k)]
    restart = [k for k in RESTART if getattr(old, k) != getattr(new, k)]
    return live, restart


def attach(engine: Engine) -> None:
    async def reload(caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        if caller.readonly:
            raise RequestError("readonly", "this session is read-only")
        return await reload_config(engine, actor=caller.user)

    engine.handlers["reload_config"] = reload


async def reload_config(engine: Engine, *, actor: str) -> dict[str, Any]:
    if engine.loaded.embedded and engine.loaded.source == "embedded default":
        raise RequestError("refused", "the engine runs on the embedded default; "
                                      "there is no config file to reload")
    try:
        new = load(engine.loaded.source).config
    except InputError as e:
        raise RequestError("bad_request", str(e)) from None
    old = engine.config
    # the store and socket stay what the engine was started with (they may come from flags)
    new = dataclasses.replace(new, store=old.store, engine=old.engine)
    live, restart = diff(old, new)
    if live:
        engine.config = dataclasses.replace(old, **{k: getattr(new, k) for k in LIVE})
        engine.loaded = dataclasses.replace(engine.loaded, config=engine.config)
        _apply(engine)
    evidence = {"applied": live, "needs_restart": restart, "file": engine.loaded.source}
    reason = (f"applied {', '.join(live)}" if live else "nothing to apply") + (
        f"; restart to apply {', '.join(restart)}" if restart else "")

    def audit(store: Store) -> None:
        with store.transaction() as con:
            record(con, [AuditEntry(actor, ActionKind.CONFIG_RELOAD, TargetKind.CONFIG,
                                    engine.loaded.source,
                                    reason, evidence)], now=engine.clock())

    await engine.db.run(audit)
    return {"applied": live, "needs_restart": restart, "reason": reason}


def _apply(engine: Engine) -> None:
    from console.engine.svc_jobs import class_book, preemption_rules, quota_book

    cfg = engine.config
    runner = engine.runner
    if runner is not None:
        runner.quotas = quota_book(cfg)
        runner.settings = dataclasses.replace(
            runner.settings, backfill=cfg.scheduler.backfill,
            preemption=preemption_rules(cfg), classes=class_book(cfg),
            fair_share_half_life_s=cfg.scheduler.fair_share_half_life_s)
    policies = engine.policies
    if policies is not None:
        policies.cfg = cfg.policies
        burst = getattr(policies, "burst", None)
        if burst is not None and burst.cfg.providers == cfg.policies.burst.providers:
            burst.cfg = cfg.policies.burst
            burst.offers = {o.name: o for o in cfg.policies.burst.offers}

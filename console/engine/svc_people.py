"""The caller's own view of the fleet: `whoami` (who the engine takes them for, their role,
the GPUs their jobs hold against their quota, and what they spent today), for a member's
console header."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from console.engine.access import Caller
from console.engine.api.replies import WhoAmI
from console.engine.api.requests import WhoAmIQuery
from console.engine.server import Handler
from console.engine.service_base import BaseService
from scheduler import journal

if TYPE_CHECKING:
    from console.engine.hosting import Host


class PeopleService(BaseService):
    """`whoami`: the caller's user, role, GPUs in use of their quota and spend today."""

    def __init__(self, engine: Host) -> None:
        self.engine = engine

    def handlers(self) -> Mapping[str, Handler]:
        return {"whoami": self.whoami}

    async def whoami(self, caller: Caller, req: WhoAmIQuery) -> WhoAmI:
        from reports.personal import user_day  # polars loads with the first report

        cfg, user = self.engine.config, caller.user
        quota = next((u.gpu_quota for u in cfg.users if u.name == user), None)
        now = self.engine.clock()
        live = self.engine.runner.live if self.engine.runner is not None else None
        if live is not None and live.loaded:  # the jobs holding GPUs are in memory
            holding = live.page(journal.HOLDING, user=user)
            day = await self.engine.reads.run(
                lambda s: user_day(s.con, user, now=now, rates=cfg.rates))
        else:  # one reader call for both
            holding, day = await self.engine.reads.run(lambda s: (
                journal.list_jobs(s, states=journal.HOLDING, user=user),
                user_day(s.con, user, now=now, rates=cfg.rates)))
        return WhoAmI(user=user, role=caller.role.label,
                      gpus_in_use=round(sum(r.spec.gpus for r in holding), 3),
                      gpu_quota=quota, gpu_h_today=round(day.gpu_h_today, 3),
                      spend_today=round(day.spend_today, 2), currency=cfg.rates.currency)

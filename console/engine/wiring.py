"""The engine's services, started in order: each registers its table methods' handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from console.engine import svc_metrics
from console.engine.service_base import Service
from console.engine.services import InventoryService
from console.engine.svc_fleet import FleetService
from console.engine.svc_jobs import JobService
from console.engine.svc_notify import NotifyService
from console.engine.svc_people import PeopleService
from console.engine.svc_policies import PolicyService
from console.engine.svc_reload import ReloadService
from console.engine.svc_reports import ReportService
from console.engine.svc_telemetry import Telemetry

if TYPE_CHECKING:
    from console.engine.hosting import Host


async def attach_all(engine: Host) -> None:
    async def add(svc: Service) -> None:
        await svc.start()
        engine.services.append(svc)
        engine.on_close(svc.stop)
        engine.handlers.update(svc.handlers())
        engine.streams.update(svc.streams())

    await add(InventoryService(engine))
    await add(NotifyService(engine))
    telemetry = Telemetry(engine)
    await add(telemetry)
    await svc_metrics.attach(engine, telemetry)
    for svc in (JobService(engine, telemetry), PolicyService(engine, telemetry),
                FleetService(engine, telemetry), ReportService(engine), ReloadService(engine),
                PeopleService(engine)):
        await add(svc)

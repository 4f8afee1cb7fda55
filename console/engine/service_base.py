"""What an engine service is: it starts, stops, exposes its handlers and takes a new config.

`handlers()` (and `streams()`) map method names of the table (`console.engine.api`) to bound
methods `async def name(self, caller, req) -> reply`; `reconfigure(config)` is called by
`config reload` with the new config, before the engine holds it (so `engine.config` is still
the old one there).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from console.config import Config
from console.engine.server import Handler, StreamHandler


class Service(Protocol):
    def handlers(self) -> Mapping[str, Handler]: ...

    def streams(self) -> Mapping[str, StreamHandler]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def reconfigure(self, config: Config) -> None: ...


class BaseService:
    """Defaults for services without streams, loops or live settings."""

    def handlers(self) -> Mapping[str, Handler]:
        return {}

    def streams(self) -> Mapping[str, StreamHandler]:
        return {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def reconfigure(self, config: Config) -> None:
        return None

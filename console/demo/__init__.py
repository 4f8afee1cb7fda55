"""`fleetdeck --demo`: the console on a simulated fleet with live work and generated history.

Only the nodes are simulated (`collectors.transport.sim`): the fleet collector, ingest,
scheduler, executors, policies and reports are the real code, on a temporary store that is
deleted at exit. Modules: `fleet` (48 nodes, teams, quotas, rates, policies, config file),
`history*` (six months of consistent history), `workload` (the live job mix), `cloud` (the
burst provider's scripts), `session` (`Demo`: one run's folder, threads and cleanup).

Entry points: `run_demo(args)` (console) and `serve_demo(args)` (headless engine, like
`fleetdeck serve`); `start_demo(demo)` is what `run_demo` does before the console opens.
Neither reads or writes the user's config, store or engine.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.engine.client import NoEngine

if TYPE_CHECKING:
    from collectors.store import Store
    from console.app import EngineLink
    from console.demo.session import Demo
    from console.engine.host import EmbeddedEngine


def _seed(args: argparse.Namespace) -> int:
    seed = getattr(args, "demo_seed", None)
    return int(seed) if seed is not None else 7


def start_demo(demo: Demo, *, readonly: bool = False) -> tuple[EngineLink, EmbeddedEngine]:
    """Prepare the demo, start its embedded engine (Textual loads meanwhile), start the
    history writer and the workload; returns the console's link and the engine to stop."""
    from console.demo.session import embedded_store_runner
    from console.engine.host import EmbeddedEngine

    loaded = demo.prepare()
    engine = EmbeddedEngine(loaded)
    with ThreadPoolExecutor(1, thread_name_prefix="demo-engine-start") as pool:
        started = pool.submit(engine.start)
        from console.app import EngineLink  # the console's imports overlap the engine's start

        started.result()
    demo.start(embedded_store_runner(engine))
    label = f"demo · store {loaded.config.store.path}"
    return EngineLink(loaded, engine, readonly, label=label), engine


def run_demo(args: argparse.Namespace) -> int:
    """Open the console on a fresh demo fleet; everything is removed at exit."""
    from console.demo.session import Demo

    with Demo(seed=_seed(args)) as demo:
        link, engine = start_demo(demo, readonly=bool(getattr(args, "readonly", False)))
        try:
            from console.app import FleetdeckApp
            from console.engine.gc_tuning import tune_gc

            tune_gc()  # see console/engine/gc_tuning.py
            FleetdeckApp(link).run()
        finally:
            demo.stop_workload()
            engine.stop()
    return 0


def serve_demo(args: argparse.Namespace) -> int:
    """The demo engine without a console, until SIGINT/SIGTERM (prints its socket)."""
    from console.demo.session import Demo
    from console.engine.host import Engine

    async def main(demo: Demo) -> None:
        engine = Engine(demo.prepare())
        await engine.start()
        loop = asyncio.get_running_loop()

        def on_store(fn: Callable[[Store], Any]) -> Any:
            return asyncio.run_coroutine_threadsafe(engine.db.run(fn), loop).result()

        demo.start(on_store)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, engine.request_stop)
        from console.engine.banner import start_line

        sys.stdout.write(start_line(demo.config, what="fleetdeck demo engine")
                         + f" · `fleetdeck --demo COMMAND` reaches it (config "
                         f"{demo.root / 'config.toml'})\n")
        sys.stdout.flush()
        try:
            await engine.wait_stopped()
        finally:
            demo.stop_workload()

    with Demo(seed=_seed(args)) as demo:
        asyncio.run(main(demo))
    return 0


def running_config_or_exit() -> Path:
    """The running demo's config, for `fleetdeck --demo COMMAND`; none running is an error."""
    from console.demo.pointer import running_config

    path = running_config()
    if path is None:
        raise NoEngine("no fleetdeck demo is running: start one with `fleetdeck --demo` "
                       "(console) or `fleetdeck --demo serve`")
    return path


__all__ = ["run_demo", "running_config_or_exit", "serve_demo", "start_demo"]

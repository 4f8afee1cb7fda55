"""Faults said once (#17): a fault is logged when it begins, then once a minute with the count
of failures since, and once when it ends; status lines say since when."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from collectors.health import FleetView, NodeHealth, NodeView
from collectors.store.db import StoreWriteError
from console.engine.faults import Faults, QuietFaults, node_faults


class Clock:
    def __init__(self) -> None:
        self.now = 1_764_655_200.0  # 2025-12-02 06:00:00 UTC

    def __call__(self) -> float:
        return self.now


def test_logged_once_a_minute_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    faults = Faults(clock)
    with caplog.at_level(logging.WARNING, logger="console.engine.faults"):
        for _ in range(600):  # ten failures a second for a minute
            faults.fail("store", "writes failing", "no space left on device")
            clock.now += 0.1
        clock.now = 1_764_655_260.0  # a minute after the first
        faults.fail("store", "writes failing", "no space left on device")
        assert faults.lines() == ["store: writes failing since 2025-12-02 06:00:00 UTC "
                                  "(no space left on device, 601 times)"]
        assert faults.headlines() == ["store: writes failing since 06:00:00 UTC"]
        faults.ok("store")
        faults.ok("store")  # already over: nothing more to say
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages
    assert messages[0].endswith("(no space left on device, once)")
    assert "; 600 more in the last 60s" in messages[1]
    assert messages[2].startswith("store: working again after 60s (601 failures)")
    assert not faults.failing("store") and faults.lines() == []


def test_connection_faults_stay_out_of_the_header() -> None:
    faults = Faults(Clock())
    faults.fail("connect:gpu-01", "unreachable", "connection refused")
    faults.fail("docker:gpu-02", "socket unreachable", "connection refused")
    assert faults.headlines() == ["docker:gpu-02: socket unreachable since 06:00:00 UTC"]
    assert len(faults.lines()) == 2


def test_quiet_filter_drops_store_write_tracebacks() -> None:
    quiet = QuietFaults()

    def record(exc: BaseException) -> logging.LogRecord:
        return logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None,
                                 (type(exc), exc, None))

    assert not quiet.filter(record(StoreWriteError(Path("/s"), "no space left on device")))
    assert quiet.filter(record(ValueError("a real bug keeps its traceback")))


def node(name: str, **kw: object) -> NodeView:
    return NodeView(name=name, pool="default", transport="ssh", labels={},
                    health=NodeHealth("up"), **kw)  # type: ignore[arg-type]


def test_docker_and_connection_faults_from_the_fleet_view() -> None:
    clock = Clock()
    faults = Faults(clock)
    never_docker = node("plain", docker_error="no docker here")  # never answered: no fault
    stopped = node("dock", containers=(), docker_error="connection refused")
    gone = replace(node("far"), health=NodeHealth("unreachable", "connection timed out"))
    node_faults(faults, FleetView(ts=0.0, interval_s=5.0, nodes={
        n.name: n for n in (never_docker, stopped, gone)}))
    assert faults.lines() == [
        "docker:dock: socket unreachable since 2025-12-02 06:00:00 UTC "
        "(connection refused, once)",
        "connect:far: unreachable since 2025-12-02 06:00:00 UTC (connection timed out, once)"]
    node_faults(faults, FleetView(ts=1.0, interval_s=5.0, nodes={
        "dock": replace(stopped, docker_error=None), "far": node("far")}))
    assert faults.lines() == []

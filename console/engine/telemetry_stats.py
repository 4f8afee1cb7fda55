"""How the engine's telemetry keeps up: sweep latency, store write lag, rollup time.

Bounded (the last `KEEP` of each) and cheap to feed from the loop; `summary()` is the
`ingest` part of the engine's `status`, which `benchmarks/bench_serve.py` reads.

- sweep latency: per probe tick (a record's `ts`), the latest arrival minus the tick; with
  nodes sampling on aligned ticks (the simulator, most cron-like setups) that is the time the
  whole fleet's interval took to arrive.
- write lag: a batch handed to the store thread until committed (waiting behind other store
  work included). Under one interval means the writer keeps up.
- data age: commit time minus the oldest sample in the batch (at most an interval + lag).
- rollup: seconds per rollup pass.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Any

from console.engine.api.replies import IngestStatsReply, Percentiles

KEEP = 720


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


class IngestStats:
    def __init__(self) -> None:
        self._ticks: OrderedDict[float, float] = OrderedDict()  # tick -> latest arrival - tick
        self.write_lag_s: deque[float] = deque(maxlen=KEEP)
        self.data_age_s: deque[float] = deque(maxlen=KEEP)
        self.rollup_s: deque[float] = deque(maxlen=KEEP)
        self.rows_written = 0

    def arrived(self, tick: float, now: float) -> None:
        key = round(tick, 3)
        late = now - tick
        if late > self._ticks.get(key, float("-inf")):
            self._ticks[key] = late
        while len(self._ticks) > KEEP:
            self._ticks.popitem(last=False)

    def flushed(self, *, handed_at: float, committed_at: float, oldest_ts: float | None,
                rows: int) -> None:
        self.write_lag_s.append(committed_at - handed_at)
        if oldest_ts is not None:
            self.data_age_s.append(committed_at - oldest_ts)
        self.rows_written += rows

    def sweeps_after(self, tick: float) -> list[tuple[float, float]]:
        """(tick, sweep latency) of the ticks after `tick` whose samples all arrived (all but
        the newest), oldest first: for the /metrics histogram."""
        done = list(self._ticks.items())[:-1]
        return [(t, late) for t, late in done if t > tick]

    def rolled_up(self, seconds: float) -> None:
        self.rollup_s.append(seconds)

    def summary(self) -> IngestStatsReply:
        """The `ingest_stats` reply, the engine's threads included."""
        sweeps = list(self._ticks.values())[:-1]  # the newest tick may still be arriving

        def stats(values: list[float]) -> Percentiles:
            return Percentiles(n=len(values), p50_s=percentile(values, 50),
                               p99_s=percentile(values, 99), max_s=max(values, default=None))

        return IngestStatsReply(
            sweep=stats(sweeps), write_lag=stats(list(self.write_lag_s)),
            data_age=stats(list(self.data_age_s)), rollup=stats(list(self.rollup_s)),
            rows_written=self.rows_written, threads=threads())


def threads() -> list[dict[str, Any]]:
    """This process's Python threads: native id and name (DuckDB's own threads are not
    among them), so a bench can split CPU by thread from /proc."""
    return [{"tid": t.native_id, "name": t.name} for t in threading.enumerate()
            if t.native_id is not None]

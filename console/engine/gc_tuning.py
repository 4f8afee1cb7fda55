"""Garbage collection for a long-running process (the engine, a console): rare, short full
collections.

At 1,000 nodes the engine keeps about 350,000 objects alive (modules, the fleet's views and
answers, SSH sessions) and makes thousands a second that live a second or two (samples
waiting for the store, requests in flight). With CPython's default thresholds (700, 10, 10)
those are promoted before they die, and a full collection, which walks every live object
with every thread stopped, ran about every 2.5 s (20 in 50 s, p50 183 ms, up to 1 s on a
busy machine): the largest single source of read latency tails (`bench_engine.py`).

So once the engine has started:
- what is alive then (modules, configuration, the first views) is frozen (`gc.freeze`, as
  pre-forking servers do): no collection walks it again;
- the young generation holds `YOUNG` objects before a collection, so short-lived objects
  die before any collection sees them and few reach the old generation.
Cyclic garbage is still collected; only objects alive at start are exempt. A console does the
same: it decodes megabyte fleet answers (`bench_engine.py`'s clients, which do as the console
does, spent 30 % of a core instead of 42 %, and their fleet p99 fell from 125-141 to 99 ms).
"""

from __future__ import annotations

import gc

YOUNG = 50_000  # CPython's default is 700


def tune_gc() -> None:
    """Call once, after start-up, in a long-running process (the engine, a console)."""
    gc.collect()  # what start-up left behind goes before the rest is frozen
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG, older, oldest)

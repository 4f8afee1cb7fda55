"""The one line `fleetdeck serve` (and `fleetdeck --demo serve`) prints when it starts: where
the store and the control socket are and what the engine collects and runs."""

from __future__ import annotations

from collections import Counter

from console.config import Config


def start_line(config: Config, *, what: str = "fleetdeck engine") -> str:
    """`fleetdeck engine: store /var/lib/fleetdeck/store.duckdb · socket ....sock ·
    collecting 12 nodes (10 ssh, 2 local) every 5s · scheduling on · Ctrl-C stops it`."""
    parts = [f"store {config.store.path}", f"socket {config.socket_path}"]
    nodes = config.nodes
    if not config.engine.collect:
        parts.append("not collecting (serving stored data)")
    elif nodes:
        kinds = Counter(n.transport for n in nodes)
        mix = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        parts.append(f"collecting {len(nodes)} node{'s' if len(nodes) != 1 else ''} ({mix}) "
                     f"every {config.collect.interval_s:g}s")
    else:
        parts.append("no nodes configured")
    burst = [p.name for p in config.pools if p.kind == "burst"]
    if burst:
        parts.append(f"burst pools {', '.join(burst)}")
    parts.append("scheduling " + ("on" if config.engine.schedule else "off"))
    return f"{what}: " + " · ".join(parts) + " · Ctrl-C stops it"

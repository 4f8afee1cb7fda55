"""A client's copy of the live fleet, kept by `fleet_delta` answers (docs/PROTOCOL.md).

The first call (no cursor) answers the whole fleet; each later one passes the last cursor and
gets only the nodes that changed (whole, replacing theirs by name) and the names of nodes gone.
An answer marked `full` (no cursor, one too old, or from an earlier engine run) replaces the
copy. The Fleet screen polls this way, and so do `benchmarks/benchclients.py`'s clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from console.engine.api.replies import FleetDelta, FleetNode


@dataclass
class FleetMirror:
    cursor: int | None = None  # pass as `since` next time
    nodes: dict[str, FleetNode] = field(default_factory=dict)

    def apply(self, delta: FleetDelta) -> None:
        if delta.full:
            self.nodes = {}
        for name in delta.removed:
            self.nodes.pop(name, None)
        for n in delta.nodes:
            self.nodes[n.name] = n
        self.cursor = delta.cursor

    def by_name(self) -> list[FleetNode]:
        """Every node, by name (as `fleet` answers)."""
        return [self.nodes[k] for k in sorted(self.nodes)]

"""A client's copy of the live fleet, kept by `fleet_delta` answers (docs/PROTOCOL.md).

The first call (no cursor) answers the whole fleet; each later one passes the last cursor and
gets only the nodes that changed (whole, replacing theirs by name), the names of nodes gone,
and, since the copy asks for `readings`, each node whose only change is a new sample as those
readings (set on the copy's node). An answer marked `full` (no cursor, one too old, or from an
earlier engine run) replaces the copy. The Fleet screen polls this way, and so do
`benchmarks/benchclients.py`'s clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from console.engine.api.replies import NODE_READINGS, FleetDelta, FleetNode, NodeReadings
from console.engine.api.requests import FleetDeltaQuery


@dataclass
class FleetMirror:
    cursor: int | None = None  # pass as `since` next time
    nodes: dict[str, FleetNode] = field(default_factory=dict)

    def query(self) -> FleetDeltaQuery:
        """The next poll: what changed since this copy's cursor."""
        return FleetDeltaQuery(since=self.cursor, readings=True)

    def apply(self, delta: FleetDelta) -> None:
        if delta.full:
            self.nodes = {}
        for name in delta.removed:
            self.nodes.pop(name, None)
        for n in delta.nodes:
            self.nodes[n.name] = n
        self.cursor = delta.cursor
        for r in delta.readings:
            node = self.nodes.get(r.name)
            if node is None or len(node.gpus) != len(r.gpus):  # not this copy's node: an
                self.cursor = None  # answer it cannot follow; the next poll gets all
                continue
            self.nodes[r.name] = with_readings(node, r)

    def by_name(self) -> list[FleetNode]:
        """Every node, by name (as `fleet` answers)."""
        return [self.nodes[k] for k in sorted(self.nodes)]


def with_readings(node: FleetNode, r: NodeReadings) -> FleetNode:
    """`node` with the live readings of `r` (its GPUs' in order)."""
    gpus = [msgspec.structs.replace(g, **msgspec.structs.asdict(gr))
            for g, gr in zip(node.gpus, r.gpus, strict=True)]
    return msgspec.structs.replace(node, gpus=gpus,
                                   **{f: getattr(r, f) for f in NODE_READINGS})

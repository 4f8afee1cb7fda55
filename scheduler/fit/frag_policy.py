"""What the fragmentation-aware policies (FGD, fleetdeck) share: the workload model they
score against, learned from the requests seen unless given, and seeded tie-breaks.

Without a given mix the model is rebuilt after 1, 4, 16, 128, 1024, ... requests; each rebuild
changes `token` (memoized scores keyed by it go stale) and calls `model_changed`.
"""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np

from scheduler.fit.fragmentation import FragModel
from scheduler.fit.state import FleetState
from scheduler.fit.workload import TaskShape, WorkloadMix
from scheduler.models import ResourceRequest

_tokens = itertools.count(1)
MEMO_LIMIT = 2048  # memoized entries (request shapes, requests) kept at most


class FragPolicy:
    """Base of FGD and fleetdeck: workload model and random generator for tie-breaks."""

    name: str = ""

    def __init__(self, seed: int = 0, workload: WorkloadMix | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self._fixed_mix = workload
        self._seen: Counter[TaskShape] = Counter()
        self._seen_n = 0
        self._next_rebuild = 1
        self._model: FragModel | None = None
        self.token = next(_tokens)  # changes with the model

    def model_for(self, state: FleetState, req: ResourceRequest) -> FragModel:
        """The model to score `req` with on `state`'s fleet (observes `req` first)."""
        static = state.static
        if self._fixed_mix is None:
            self._observe(req)
        model = self._model
        if model is None or model.static is not static:
            model = self._model = FragModel(static, self._current_mix())
            self.token = next(_tokens)
            self.model_changed()
        return model

    def model_changed(self) -> None:
        """Called when the model is rebuilt: drop what was scored with the old one."""

    def _observe(self, req: ResourceRequest) -> None:
        self._seen[TaskShape.of(req)] += 1
        self._seen_n += 1
        if self._seen_n >= self._next_rebuild:
            self._next_rebuild *= 4 if self._next_rebuild < 16 else 8
            self._model = None

    def _current_mix(self) -> WorkloadMix:
        if self._fixed_mix is not None:
            return self._fixed_mix
        return WorkloadMix.from_counts(self._seen)

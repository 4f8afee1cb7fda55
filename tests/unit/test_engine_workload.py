"""The engine learns the placement workload mix from the store's recent jobs."""

from __future__ import annotations

import time
from pathlib import Path

from collectors.store import Store
from console.engine.svc_jobs import workload_mix
from scheduler import journal
from scheduler.jobspec import JobSpec


def test_mix_comes_from_recent_jobs(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        assert workload_mix(store) is None  # no history: the policy learns as it goes
        now = time.time()
        for gpus in (0.25, 0.25, 0.25, 2):
            spec = JobSpec.from_mapping({"name": "j", "command": ["x"], "gpus": gpus}, "t")
            journal.submit(store, spec, actor="u", now=now)
        old = JobSpec.from_mapping({"name": "old", "command": ["x"], "gpus": 8}, "t")
        journal.submit(store, old, actor="u", now=now - 90 * 86400)  # outside the window
        mix = workload_mix(store)
        assert mix is not None
        weights = {(s.gpu_count, s.gpu_milli): w for s, w in zip(mix.shapes, mix.weights,
                                                                  strict=True)}
        assert weights == {(1, 250): 0.75, (2, 1000): 0.25}


def test_suggestion_is_the_users_usual_gpu_shape(tmp_path: Path) -> None:
    from console.engine.api.replies import Suggestion
    from console.engine.svc_jobs import suggest

    with Store.open(tmp_path / "s.duckdb") as store:
        assert suggest(store, "ann") is None
        now = time.time()
        ids = []
        for gpus in (2, 2, 0.25, 2):
            spec = JobSpec.from_mapping({"name": "j", "command": ["x"], "gpus": gpus,
                                         "user": "ann"}, "t")
            ids += journal.submit(store, spec, actor="ann", now=now)
        for jid in ids:
            journal.transition(store, jid, "starting", reason="placed", actor="s", now=now,
                               node="n1", gpu_model="A100")
            journal.transition(store, jid, "running", reason="up", actor="s", now=now)
            journal.transition(store, jid, "succeeded", reason="done", actor="s", now=now)
        assert suggest(store, "ann") == Suggestion(gpus=2.0, gpu_model="A100", based_on=3,
                                                   of=4)
        assert suggest(store, "bob") is None

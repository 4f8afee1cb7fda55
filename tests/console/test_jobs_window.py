"""Between full pages the Jobs screen asks only for live jobs and, by id, the ones that left
the live set or were born and ended in between (console/screens/jobs_window.py)."""

from __future__ import annotations

import msgspec

from console.engine.api.replies import JobInfo
from console.screens.jobs_window import AHEAD, MAX_IDS, ids_ahead, ids_to_ask, merge


def job(i: int, state: str) -> JobInfo:
    return msgspec.convert({
        "id": i, "state": state, "name": f"j{i}", "user": "ann", "project": None,
        "team": None, "reason": None, "priority": 0, "pool": None, "node": None,
        "gpu_indices": [], "gpu_count": 0, "gpu_milli": 0, "gpus": 0.0, "executor": None,
        "submitted_at": None, "started_at": None, "ended_at": None, "exit_code": None,
        "attempt": 1, "spec": {}}, JobInfo)


def test_ended_and_skipped_jobs_are_asked_by_id_and_merged() -> None:
    shown = {str(j.id): j for j in (job(5, "running"), job(4, "queued"), job(3, "running"),
                                       job(2, "succeeded"), job(1, "failed"))}
    # 4 started, 3 ended; 6 was born and ended between polls, 7 is queued
    live = [job(7, "queued"), job(4, "running")]
    ask = ids_to_ask(shown, live)
    assert ask == [3, 5, 6]
    found = [job(6, "succeeded"), job(5, "stopped"), job(3, "succeeded")]
    merged = merge(shown, live, ask or [], found, page=5)
    assert [(j.id, j.state) for j in merged] == [
        (7, "queued"), (6, "succeeded"), (5, "stopped"), (4, "running"), (3, "succeeded")]


def test_an_id_asked_and_not_found_leaves_and_too_many_ask_for_a_page() -> None:
    shown = {"2": job(2, "running"), "1": job(1, "succeeded")}
    merged = merge(shown, [], [2], [], page=10)  # 2 no longer matches the filter
    assert [j.id for j in merged] == [1]
    assert ids_to_ask(shown, [job(2, "running")]) == []
    assert ids_to_ask(shown, [job(MAX_IDS + 10, "queued")]) is None


def test_ids_after_the_newest_are_asked_so_a_short_new_job_shows_at_the_next_poll() -> None:
    shown = {"3": job(3, "running"), "2": job(2, "succeeded")}
    live = [job(3, "running")]
    ahead = ids_ahead(shown, live)
    assert ahead == list(range(4, 4 + AHEAD))
    assert ids_ahead({}, [job(9, "queued")])[0] == 10
    # 4 was submitted and ended between polls; 5 onwards do not exist yet
    merged = merge(shown, live, ids_to_ask(shown, live) or [], [job(4, "succeeded")], page=10)
    assert [(j.id, j.state) for j in merged] == [
        (4, "succeeded"), (3, "running"), (2, "succeeded")]

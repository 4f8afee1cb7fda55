"""The `:` command palette's provider: go to a node, a job or a user's jobs by name.

On opening it asks the engine for the current fleet and jobs (falling back to what the screens
last showed), so a name typed right after start is found too.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from console.app import FleetdeckApp

MAX_HITS = 40


class FleetdeckCommands(Provider):
    """Nodes, jobs and users."""

    async def startup(self) -> None:
        app: FleetdeckApp = self.app  # type: ignore[assignment]
        self.nodes: list[str] = [str(n.get("name")) for n in app.last_fleet]
        self.jobs: list[tuple[int, str, str]] = [
            (int(j["id"]), str(j.get("name") or ""), str(j.get("state") or ""))
            for j in app.last_jobs]
        try:
            try:
                nodes = await app.remote.call("fleet", channel="palette")
            except Exception:
                nodes = await app.remote.call("nodes", channel="palette")
            self.nodes = [str(n.get("name")) for n in nodes or []]
        except Exception:
            pass
        try:
            jobs = await app.remote.call("jobs", channel="palette", limit=10_000)
            self.jobs = [(int(j["id"]), str(j.get("name") or ""), str(j.get("state") or ""))
                         for j in jobs or []]
            users = {str(j.get("user")) for j in jobs or [] if j.get("user")}
        except Exception:
            users = {str(j.get("user")) for j in app.last_jobs if j.get("user")}
        users.update(u.name for u in app.link.loaded.config.users)
        self.users = sorted(users)

    def _candidates(self) -> list[tuple[str, Any, str]]:
        app: FleetdeckApp = self.app  # type: ignore[assignment]
        out: list[tuple[str, Any, str]] = []
        for name in self.nodes:
            out.append((f"node {name}", partial(app.open_node, name), "open the node"))
        for job_id, name, state in sorted(self.jobs, reverse=True):
            out.append((f"job {job_id} {name}", partial(app.open_job, job_id),
                        f"open the job ({state})"))
        for user in self.users:
            out.append((f"user {user}", partial(app.open_jobs_filtered, f"user:{user}"),
                        "show this user's jobs"))
        return out

    async def discover(self) -> Hits:
        for text, command, help_text in self._candidates()[:MAX_HITS]:
            yield DiscoveryHit(text, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        hits = 0
        for text, command, help_text in self._candidates():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), command, text=text, help=help_text)
                hits += 1
                if hits >= 200:
                    return

"""The `:` command palette's provider: go to a node, a job or a user's jobs by name.

Opening never waits for the engine: the names come from what the screens last loaded, and a
background refresh (`FleetdeckApp.refresh_names`) brings them up to date while the palette is
open, so a name typed right after start is found too.
"""

from __future__ import annotations

import weakref
from functools import partial
from typing import Any, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from console.screens.host import ConsoleHost

MAX_HITS = 40
Candidate = tuple[str, Any, str]  # (text, command, help)


class _Names:
    """The candidates built from an app's names, kept until those lists are replaced (a new
    palette opens with them at once; Textual makes a new provider per opening)."""

    def __init__(self) -> None:
        self.source: tuple[object, object, object] | None = None
        self.items: list[Candidate] = []
        self.lower: list[str] = []


_NAMES: weakref.WeakKeyDictionary[object, _Names] = weakref.WeakKeyDictionary()


class FleetdeckCommands(Provider):
    """Nodes, jobs and users."""

    async def startup(self) -> None:
        cast(ConsoleHost, self.app).refresh_names()

    def _names(self) -> _Names:
        """Candidates from the app's latest names, rebuilt only when those changed."""
        app = cast(ConsoleHost, self.app)
        names = _NAMES.setdefault(app, _Names())
        source = (app.last_fleet, app.last_jobs, app.known_users)
        if names.source is not None and all(a is b for a, b in zip(source, names.source,
                                                                   strict=True)):
            return names
        out: list[Candidate] = []
        for n in app.last_fleet:
            name = str(n.get("name"))
            out.append((f"node {name}", partial(app.open_node, name), "open the node"))
        users = set(app.known_users)
        users.update(u.name for u in app.link.loaded.config.users)
        for j in sorted(app.last_jobs, key=lambda j: -int(j["id"])):
            job_id = int(j["id"])
            out.append((f"job {job_id} {j.get('name') or ''}", partial(app.open_job, job_id),
                        f"open the job ({j.get('state') or ''})"))
            if j.get("user"):
                users.add(str(j["user"]))
        for user in sorted(users):
            out.append((f"user {user}", partial(app.open_jobs_filtered, f"user:{user}"),
                        "show this user's jobs"))
        names.source, names.items, names.lower = source, out, [c[0].lower() for c in out]
        return names

    async def discover(self) -> Hits:
        for text, command, help_text in self._names().items[:MAX_HITS]:
            yield DiscoveryHit(text, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        needle = set(query.lower().replace(" ", ""))
        names = self._names()
        hits = 0
        for (text, command, help_text), low in zip(names.items, names.lower, strict=True):
            if not needle.issubset(low):  # a fuzzy match needs every letter: skip cheaply
                continue
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), command, text=text, help=help_text)
                hits += 1
                if hits >= 200:
                    return

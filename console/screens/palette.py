"""The `:` command palette: go to a node, a job or a user's jobs by name.

Opening never waits for the engine and builds little: the first screenful of names comes
straight from what the screens last loaded (nodes, then the newest jobs), the full list is
built only when a search needs it (and kept until the names change), and a hit's command is
made only for what is shown. A background refresh (`FleetdeckApp.refresh_names`) brings the
names up to date a moment after the palette shows, when they are older than `NAMES_FRESH_S`.
"""

from __future__ import annotations

import asyncio
import itertools
import weakref
from collections.abc import AsyncGenerator, Callable, Iterator
from functools import partial
from typing import Any, NamedTuple, cast

from textual.command import CommandPalette, DiscoveryHit, Hit, Hits, Provider

from console.screens.host import ConsoleHost

MAX_HITS = 24  # discovery: about two palette screenfuls
MAX_SEARCH_HITS = 200
NAMES_DELAY_S = 0.3  # the background name refresh starts after the palette's first paint


class Candidate(NamedTuple):
    text: str
    kind: str  # "node", "job" or "user"
    key: str
    help: str


def _command(app: ConsoleHost, c: Candidate) -> Callable[[], Any]:
    if c.kind == "node":
        return partial(app.open_node, c.key)
    if c.kind == "job":
        return partial(app.open_job, int(c.key))
    return partial(app.open_jobs_filtered, f"user:{c.key}")


def _candidates(app: ConsoleHost) -> Iterator[Candidate]:
    """Nodes, the newest jobs first, then users; lazily, so discovery takes only a few."""
    for n in app.last_fleet:
        yield Candidate(f"node {n.name}", "node", n.name, "open the node")
    for j in app.last_jobs:  # the Jobs screen keeps them newest first
        yield Candidate(f"job {j.id} {j.name or ''}", "job", str(j.id),
                        f"open the job ({j.state or ''})")
    users = set(app.known_users)
    users.update(u.name for u in app.link.loaded.config.users)
    users.update(j.user for j in app.last_jobs if j.user)
    for user in sorted(users):
        yield Candidate(f"user {user}", "user", user, "show this user's jobs")


class _Names:
    """The full candidate list of an app's names, kept until those lists are replaced."""

    def __init__(self) -> None:
        self.source: tuple[object, object, object] | None = None
        self.items: list[Candidate] = []
        self.lower: list[str] = []


_NAMES: weakref.WeakKeyDictionary[object, _Names] = weakref.WeakKeyDictionary()


class FleetdeckCommands(Provider):
    """Nodes, jobs and users."""

    async def startup(self) -> None:
        app = cast(ConsoleHost, self.app)
        self.app.set_timer(NAMES_DELAY_S, app.refresh_names)

    def _names(self) -> _Names:
        """All candidates from the app's latest names, rebuilt only when those changed."""
        app = cast(ConsoleHost, self.app)
        names = _NAMES.setdefault(app, _Names())
        source = (app.last_fleet, app.last_jobs, app.known_users)
        if names.source is None or any(a is not b for a, b in zip(source, names.source,
                                                                  strict=True)):
            names.items = list(_candidates(app))
            names.lower = [c.text.lower() for c in names.items]
            names.source = source
        return names

    async def discover(self) -> Hits:
        app = cast(ConsoleHost, self.app)
        for c in itertools.islice(_candidates(app), MAX_HITS):
            yield DiscoveryHit(c.text, _command(app, c), help=c.help)

    async def search(self, query: str) -> Hits:
        app = cast(ConsoleHost, self.app)
        matcher = self.matcher(query)
        needle = set(query.lower().replace(" ", ""))
        names = self._names()
        hits = 0
        for c, low in zip(names.items, names.lower, strict=True):
            if not needle.issubset(low):  # a fuzzy match needs every letter: skip cheaply
                continue
            score = matcher.match(c.text)
            if score > 0:
                yield Hit(score, matcher.highlight(c.text), _command(app, c), text=c.text,
                          help=c.help)
                hits += 1
                if hits >= MAX_SEARCH_HITS:
                    return


class QuickPalette(CommandPalette):
    """Textual's command palette, less its wait: Textual polls its providers' hit queue with
    a 0.1 s timeout and only then sees they are done, so every opening and keystroke showed
    its hits up to 0.1 s late. Here each provider says when it is done, and the list is
    drawn the moment the last one is."""

    async def _search_for(self, search_value: str) -> AsyncGenerator[DiscoveryHit | Hit, bool]:
        queue: asyncio.Queue[DiscoveryHit | Hit | None] = asyncio.Queue()

        async def feed(provider: Provider) -> None:
            try:
                async for hit in provider._search(search_value):
                    queue.put_nowait(hit)
            except Exception as e:  # a failing provider is logged, as Textual does
                self.app.log.error(f"command provider {type(provider).__name__}: {e!r}")
            finally:
                queue.put_nowait(None)

        # Textual's private names (8.x): its providers and the busy indicator's countdown
        providers: list[Provider] = self._providers
        tasks = [asyncio.create_task(feed(p)) for p in providers]
        self._start_busy_countdown()
        left, aborted = len(tasks), False
        try:
            while left and not aborted:
                hit = await queue.get()
                if hit is None:
                    left -= 1
                else:
                    aborted = bool((yield hit))
        finally:
            for task in tasks:
                task.cancel()
        if not aborted:
            self._stop_busy_countdown()

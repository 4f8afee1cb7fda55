"""Notifications in the engine: route new events, send due messages, stream events.

Every `tick_s` the service reads events written since its cursor (by job transitions, policies,
telemetry: `collectors.store.outbox`), routes them into deliveries (cursor and rows in one
transaction), hands them to `fleetdeck events -f` subscribers, and sends what is due on its own
threads (`notify_send`): a slow or dead receiver holds those threads and nothing else, so
scheduling and collection never wait on it. Failed attempts back off exponentially; after
`max_attempts` a delivery is marked failed (`fleetdeck notify status`, the engine status).

Handlers: `notify_status`, `notify_test`; stream: `events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from collectors.events import Event, EventName
from collectors.notify.route import Directory, Message, Person, plan, recipients, retry_at
from collectors.store import Store, outbox
from collectors.store.audit import AuditEntry, record
from collectors.store.audit_kinds import ActionKind, TargetKind
from collectors.store.outbox import Recipient
from console.config import Config
from console.engine.access import Caller
from console.engine.api.replies import NotifyStatus, NotifyTested
from console.engine.api.requests import EventsQuery, NotifyStatusQuery, NotifyTestRequest
from console.engine.notify_send import SendError, send
from console.engine.protocol import ErrorCode, RequestError
from console.engine.server import Handler, StreamHandler
from console.engine.service_base import BaseService

if TYPE_CHECKING:
    from console.engine.hosting import Host

log = logging.getLogger(__name__)
HISTORY_MAX = 10_000  # events `fleetdeck events` may ask for at once
KEEP_SENT_S = 30 * 86400.0  # sent deliveries are dropped after this (events are kept)
PRUNE_EVERY_S = 3600.0


class NotifyService(BaseService):
    """Routes events, delivers messages, serves the event stream."""

    def __init__(self, engine: Host) -> None:
        self.engine = engine
        self.cfg = engine.config.notify
        self.people = Directory({u.name: Person(u.name, u.email, u.notify)
                                 for u in engine.config.users})
        self._pool = ThreadPoolExecutor(max_workers=self.cfg.concurrency,
                                        thread_name_prefix="fleetdeck-notify")
        self._seen = 0  # the newest event id routed and streamed
        self._busy: set[Recipient] = set()  # a message to each is in flight
        self._sends: set[asyncio.Task[None]] = set()
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._pruned_at = 0.0
        self.sent_messages = 0
        self.failed_messages = 0
        self.failed_deliveries = 0  # given up on, in the store (shown in the console header)

    def handlers(self) -> Mapping[str, Handler]:
        return {"notify_status": self.status, "notify_test": self.test}

    def streams(self) -> Mapping[str, StreamHandler]:
        return {"events": self.events}

    def reconfigure(self, config: Config) -> None:
        return None  # channels and routes need a restart (svc_reload.RESTART)

    async def start(self) -> None:
        self._seen = await self.engine.db.run(outbox.routed_cursor)
        self.failed_deliveries = await self.engine.db.run(outbox.failed_count)
        self.engine.spawn(self._loop(), "notify")
        self.engine.status_parts["notify"] = self._status_part
        self.engine.notify = self

    async def _status_part(self) -> dict[str, Any]:
        return self.summary()

    async def stop(self) -> None:
        """Stop sending: an attempt cut short is retried after a restart (same key)."""
        sends = list(self._sends)
        for t in sends:
            t.cancel()
        await asyncio.gather(*sends, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("notify pass failed")
            await asyncio.sleep(self.cfg.tick_s)

    # -- one pass ---------------------------------------------------------------------------
    async def tick(self) -> None:
        while await self._route():
            pass
        if self.cfg.channels:
            await self._send_due()
        now = self.engine.clock()
        if now - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = now
            await self.engine.db.run(lambda s: outbox.prune_sent(s, now - KEEP_SENT_S))

    async def _route(self) -> bool:
        """Route (and stream) events newer than the cursor; True when there may be more."""
        after = self._seen
        new = await self.engine.db.run(lambda s: outbox.since(s, after, limit=1000))
        if not new:
            return False
        rows = [(e.seq, r, e.ts + self.cfg.batch_s)
                for e in new for r in recipients(e, self.cfg, self.people)]
        cursor = new[-1].seq
        await self.engine.db.run(lambda s: outbox.add_deliveries(s, rows, cursor))
        self._seen = cursor
        for q in self._subscribers:
            for e in new:
                q.put_nowait(e)
        return len(new) == 1000

    async def _send_due(self) -> None:
        now = self.engine.clock()
        window = now - self.cfg.rate_window_s

        def read(s: Store) -> tuple[list[outbox.Pending], dict[Recipient, int]]:
            return outbox.due(s, now), outbox.sent_since(s, window)

        due, sent = await self.engine.db.run(read)
        free = self.cfg.concurrency - len(self._busy)
        for m in plan(due, sent, self.cfg, busy=self._busy)[:max(0, free)]:
            channel = self.cfg.channel(m.to.channel)
            if channel is None:  # a channel removed from the config: give up on it
                await self.engine.db.run(_give_up(m))
                continue
            # in flight until then; after a crash it is retried under the same key
            guard = now + 2 * channel.timeout_s + self.cfg.backoff_s
            await self.engine.db.run(_claim(m, guard))
            self._busy.add(m.to)
            task = asyncio.create_task(self._deliver(m), name=f"notify-{m.to.channel}")
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    async def _deliver(self, m: Message) -> None:
        channel = self.cfg.channel(m.to.channel)
        assert channel is not None
        loop = asyncio.get_running_loop()
        try:
            try:
                await asyncio.wait_for(loop.run_in_executor(self._pool, send, channel, m),
                                       timeout=2 * channel.timeout_s + 1.0)
            except (SendError, TimeoutError) as e:
                error = str(e) or f"{channel.name}: timed out"
                at = retry_at(m.attempts + 1, self.engine.clock(), self.cfg)
                await self.engine.db.run(lambda s: outbox.mark_failed_attempt(
                    s, m.to, m.key, error, retry_at=at))
                if at is None:
                    self.failed_messages += 1
                    self.failed_deliveries += len(m.events)
                    log.warning("notify: gave up on %s to %s after %d attempts: %s",
                                m.key, m.to, m.attempts + 1, error)
                return
            now = self.engine.clock()
            await self.engine.db.run(lambda s: outbox.mark_sent(s, m.to, m.key, now))
            self.sent_messages += 1
        finally:
            self._busy.discard(m.to)

    # -- handlers ---------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """For the engine status: what was sent and given up on since start."""
        return {"channels": len(self.cfg.channels), "sent": self.sent_messages,
                "failed": self.failed_messages, "in_flight": len(self._busy),
                "failed_deliveries": self.failed_deliveries}

    async def status(self, caller: Caller, req: NotifyStatusQuery) -> NotifyStatus:
        def read(s: Store) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            return outbox.delivery_counts(s), outbox.failures(s, limit=20)

        deliveries, failures = await self.engine.db.run(read)
        return NotifyStatus(
            deliveries=deliveries, failures=failures,
            channels=[{"name": c.name, "type": c.type} for c in self.cfg.channels],
            routed_until=self._seen, in_flight=len(self._busy))

    async def test(self, caller: Caller, req: NotifyTestRequest) -> NotifyTested:
        name = req.channel
        channel = self.cfg.channel(name)
        if channel is None:
            known = ", ".join(c.name for c in self.cfg.channels) or "none configured"
            raise RequestError(ErrorCode.NOT_FOUND, f"no channel {name!r} in [[notify.channels]] "
                                            f"({known})")
        address = ""
        if channel.type == "email":
            address = req.to or self.people.email(caller.user) or (
                channel.to[0] if channel.to else "")
            if "@" not in address:
                raise RequestError(ErrorCode.BAD_REQUEST, f"channel {name} is email: give --to "
                                   f"ADDRESS ({caller.user} has no email in [[users]])")
        now = self.engine.clock()
        event = Event(EventName.TEST, now, f"test message from fleetdeck to channel {name}",
                      reason=f"{caller.user} ran fleetdeck notify test {name}",
                      owner=caller.user, actions=("fleetdeck notify status",))
        m = Message(Recipient(name, address), (event,), event.key)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(self._pool, send, channel, m),
                                   timeout=2 * channel.timeout_s + 1.0)
        except (SendError, TimeoutError) as e:
            raise RequestError(ErrorCode.FAILED, str(e) or f"{name}: timed out") from None
        entry = AuditEntry(caller.user, ActionKind.NOTIFY_TEST, TargetKind.CONFIG, name,
                           f"test message to {address or channel.url}")

        def audit(s: Store) -> None:
            with s.transaction() as con:
                record(con, [entry], now=now)

        await self.engine.db.run(audit)
        return NotifyTested(channel=name, type=channel.type, to=address or channel.url,
                            id=event.key)

    async def events(self, caller: Caller, req: EventsQuery) -> AsyncIterator[dict[str, Any]]:
        """The newest `limit` events, then (with `follow`) each new one as it is written."""
        limit, follow = req.limit, req.follow
        queue: asyncio.Queue[Event] = asyncio.Queue()
        if follow:
            self._subscribers.add(queue)
        try:
            history = await self.engine.db.run(lambda s: outbox.recent(s, limit=limit))
            last = max((e.seq for e in history),
                       default=await self.engine.db.run(outbox.last_id))
            for e in history:
                yield e.to_json()
            while follow:
                e = await queue.get()
                if e.seq > last:
                    last = e.seq
                    yield e.to_json()
        finally:
            with contextlib.suppress(KeyError):
                self._subscribers.remove(queue)


def _claim(m: Message, until: float) -> Callable[[Store], None]:
    return lambda s: outbox.claim(s, m.to, m.event_ids, m.key, until)


def _give_up(m: Message) -> Callable[[Store], None]:
    def run(store: Store) -> None:
        outbox.claim(store, m.to, m.event_ids, m.key, 0.0)
        outbox.mark_failed_attempt(store, m.to, m.key, f"no channel {m.to.channel!r}",
                                   retry_at=None)

    return run

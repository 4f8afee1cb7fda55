"""Who hears of an event, and which messages to send now (pure).

`recipients` applies the routes to one event. `plan` turns due deliveries into messages: all
of a recipient's due events go out as one message (a digest when more than one), a message
already tried keeps its events and key, and a recipient over its rate limit waits, so a
500-task array that fails sends one message, not 500. `retry_at` is the exponential backoff.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from collectors.events import OPT_IN, Event, matches
from collectors.notify.config import NotifyConfig
from collectors.store.outbox import Pending, Recipient


@dataclass(frozen=True, slots=True)
class Person:
    """A user as notifications know them (`[[users]]`: email, opt-in events)."""

    name: str
    email: str = ""
    notify: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Message:
    """One message to one recipient: one event, or a digest of several."""

    to: Recipient
    events: tuple[Event, ...]
    key: str  # idempotency key: the event's for one event, a digest of the keys else
    attempts: int = 0  # attempts made so far
    retry: bool = False  # a message tried before (same events, same key)

    @property
    def digest(self) -> bool:
        return len(self.events) > 1

    @property
    def event_ids(self) -> list[int]:
        return [e.seq for e in self.events]


@dataclass(frozen=True, slots=True)
class Directory:
    """The people routes can reach, by user name."""

    people: Mapping[str, Person] = field(default_factory=dict)

    def email(self, user: str | None) -> str:
        p = self.people.get(user or "")
        return p.email if p is not None else ""


def wants(event: Event, person: Person | None) -> bool:
    """Owners hear of opt-in events (job.succeeded, job.failed) only when they asked."""
    if event.name not in OPT_IN:
        return True
    asked = (*(person.notify if person else ()), *event.opt_in)
    return matches(str(event.name), asked)


def recipients(event: Event, cfg: NotifyConfig, people: Directory) -> list[Recipient]:
    """Every recipient the routes give `event`, each once, in route order."""
    out: dict[Recipient, None] = {}
    mail = cfg.email_channel()
    for route in cfg.routes:
        if not matches(str(event.name), route.events):
            continue
        for target in route.to:
            if target == "owner":
                person = people.people.get(event.owner or "")
                addr = people.email(event.owner)
                if mail is not None and addr and wants(event, person):
                    out[Recipient(mail.name, addr)] = None
            elif target == "admins":
                for admin in cfg.admins:
                    addr = people.email(admin)
                    if mail is not None and addr:
                        out[Recipient(mail.name, addr)] = None
            else:
                ch = cfg.channel(target)
                if ch is None:
                    continue
                if ch.type == "email":
                    for addr in ch.to:
                        out[Recipient(ch.name, addr)] = None
                else:
                    out[Recipient(ch.name)] = None
    return list(out)


def message_key(events: Sequence[Event]) -> str:
    """The event's key, or for a digest a key derived from its events' keys."""
    if len(events) == 1:
        return events[0].key
    h = hashlib.sha256("\n".join(sorted(e.key for e in events)).encode())
    return "digest-" + h.hexdigest()[:32]


def plan(due: Sequence[Pending], sent_in_window: Mapping[Recipient, int], cfg: NotifyConfig,
         busy: Collection[Recipient] = ()) -> list[Message]:
    """Messages to send now from due deliveries. Recipients in `busy` (a message in flight)
    wait; retries go out as they were; new events of a recipient under its rate limit go
    out together as one message."""
    by_to: dict[Recipient, list[Pending]] = {}
    for p in due:
        if p.to not in busy:
            by_to.setdefault(p.to, []).append(p)
    out: list[Message] = []
    for to, items in by_to.items():
        keyed: dict[str, list[Pending]] = {}
        fresh: list[Pending] = []
        for p in items:
            if p.message_key:
                keyed.setdefault(p.message_key, []).append(p)
            else:
                fresh.append(p)
        if keyed:  # retries first, one at a time per recipient: order is kept
            key, group = next(iter(keyed.items()))
            out.append(Message(to, tuple(p.event for p in group), key,
                               max(p.attempts for p in group), retry=True))
            continue
        if fresh and sent_in_window.get(to, 0) < cfg.rate_limit:
            events = tuple(p.event for p in fresh)
            out.append(Message(to, events, message_key(events)))
    return out


def retry_at(attempts: int, now: float, cfg: NotifyConfig) -> float | None:
    """When to try again after `attempts` failed attempts, or None to give up."""
    if attempts >= cfg.max_attempts:
        return None
    return now + min(cfg.backoff_max_s, cfg.backoff_s * 2.0 ** max(0, attempts - 1))

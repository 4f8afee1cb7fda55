"""`[notify]`: channels (email, webhook, slack), routes, retries, batching and rate limits.

Checked once at load (`check`): every route names known events and recipients, every channel
has what its type needs. Secrets stay in files (`password_file`, `secret_file`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlparse

from collectors.config_schema import doc
from collectors.errors import InputError
from collectors.events import is_pattern

ROUTE_TARGETS = ("owner", "admins")  # besides channel names


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """One `[[notify.channels]]` entry."""

    name: str = field(metadata=doc("channel name routes refer to", nonempty=True))
    type: Literal["email", "webhook", "slack"] = field(metadata=doc(
        "email (SMTP), webhook (JSON POST) or slack (incoming-webhook JSON)"))
    smtp_host: str = field(default="localhost", metadata=doc("email: SMTP server"))
    smtp_port: int = field(default=25, metadata=doc("email: SMTP port", min=1, max=65535))
    starttls: bool = field(default=False, metadata=doc("email: STARTTLS before sending"))
    username: str = field(default="", metadata=doc("email: SMTP login (empty: none)"))
    password_file: str = field(default="", metadata=doc(
        "email: file holding the SMTP password"))
    sender: str = field(default="", metadata=doc("email: From address", key="from"))
    to: tuple[str, ...] = field(default=(), metadata=doc(
        "email: addresses a route naming this channel mails"))
    url: str = field(default="", metadata=doc("webhook, slack: the URL to POST to"))
    secret_file: str = field(default="", metadata=doc(
        "webhook: file holding the key of the body's HMAC-SHA256 (X-Fleetdeck-Signature)"))
    timeout_s: float = field(default=10.0, metadata=doc(
        "seconds one delivery attempt may take", min=0.1, max=300))


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """One `[[notify.routes]]` entry: which events go to whom."""

    events: tuple[str, ...] = field(metadata=doc(
        'event names or prefixes ("job.", "*" for all)', nonempty=True))
    to: tuple[str, ...] = field(metadata=doc(
        '"owner" (the job owner\'s email), "admins", or channel names', nonempty=True))


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    """`[notify]`."""

    channels: tuple[ChannelConfig, ...] = ()
    routes: tuple[RouteConfig, ...] = ()
    admins: tuple[str, ...] = field(default=(), metadata=doc(
        'user names (from [[users]]) a route to "admins" mails'))
    max_attempts: int = field(default=10, metadata=doc(
        "attempts per message before it is marked failed", min=1, max=1000))
    backoff_s: float = field(default=5.0, metadata=doc(
        "wait before the first retry; doubles with each attempt", min=0.01, max=86400))
    backoff_max_s: float = field(default=900.0, metadata=doc(
        "longest wait between retries", min=0.01, max=86400))
    batch_s: float = field(default=2.0, metadata=doc(
        "an event waits this long so a recipient's events close together go out as one "
        "message", min=0, max=3600))
    rate_limit: int = field(default=6, metadata=doc(
        "messages per recipient per rate_window_s; beyond it events wait and go out as one "
        "digest", min=1, max=100000))
    rate_window_s: float = field(default=3600.0, metadata=doc(
        "the rate limit's window", min=1, max=7 * 86400))
    tick_s: float = field(default=1.0, metadata=doc(
        "how often the sender looks for events and due deliveries", min=0.05, max=600))
    concurrency: int = field(default=4, metadata=doc(
        "messages in flight at once (each has its channel's timeout)", min=1, max=64))

    def channel(self, name: str) -> ChannelConfig | None:
        return next((c for c in self.channels if c.name == name), None)

    def email_channel(self) -> ChannelConfig | None:
        """The channel "owner" and "admins" are mailed through (the first email one)."""
        return next((c for c in self.channels if c.type == "email"), None)


def check(cfg: NotifyConfig, users: Sequence[str], source: str) -> None:
    """Cross-checks `build` cannot do: names, URLs, addresses, route targets."""
    seen: set[str] = set()
    for i, c in enumerate(cfg.channels):
        key = f"notify.channels[{i}]"
        if c.name in seen or c.name in ROUTE_TARGETS:
            raise InputError(source, f"{key}.name",
                             'a unique channel name other than "owner" and "admins"',
                             got=c.name)
        seen.add(c.name)
        if c.type == "email":
            if "@" not in c.sender:
                raise InputError(source, f"{key}.from", "an email address to send from",
                                 got=c.sender or None)
            for j, addr in enumerate(c.to):
                if "@" not in addr:
                    raise InputError(source, f"{key}.to[{j}]", "an email address", got=addr)
        else:
            url = urlparse(c.url)
            if url.scheme not in ("http", "https") or not url.netloc:
                raise InputError(source, f"{key}.url", f"an http(s) URL for a {c.type} channel",
                                 got=c.url or None)
    for j, name in enumerate(cfg.admins):
        if name not in users:
            raise InputError(source, f"notify.admins[{j}]", "a user name from [[users]]",
                             got=name)
    for i, r in enumerate(cfg.routes):
        for j, ev in enumerate(r.events):
            if not is_pattern(ev):
                raise InputError(source, f"notify.routes[{i}].events[{j}]",
                                 'an event name (job.failed, idle.warned, ...), a prefix '
                                 '("job.") or "*"', got=ev)
        for j, to in enumerate(r.to):
            if to not in ROUTE_TARGETS and to not in seen:
                raise InputError(source, f"notify.routes[{i}].to[{j}]",
                                 '"owner", "admins" or a channel name from [[notify.channels]]',
                                 got=to)
            if to in ROUTE_TARGETS and cfg.email_channel() is None:
                raise InputError(source, f"notify.routes[{i}].to[{j}]",
                                 f'an email channel in [[notify.channels]] to reach "{to}"',
                                 got=to)
            ch = cfg.channel(to)
            if ch is not None and ch.type == "email" and not ch.to:
                raise InputError(source, f"notify.channels[{cfg.channels.index(ch)}].to",
                                 "addresses to mail when a route names this channel")

"""Senders: one message out over SMTP or HTTP, blocking, bounded by the channel's timeout.

They run on the notify service's own threads, so a slow or dead receiver holds only those.
Every message carries its idempotency key (mail `Message-ID`, HTTP `X-Fleetdeck-Id`); a
webhook with `secret_file` gets `X-Fleetdeck-Signature: sha256=<HMAC-SHA256 of the body>`.
"""

from __future__ import annotations

import hashlib
import hmac
import smtplib
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from collectors.notify import render
from collectors.notify.config import ChannelConfig
from collectors.notify.route import Message
from console import __version__


class SendError(Exception):
    """One attempt failed; the message says why (kept as the delivery's last error)."""


def _secret(path: str, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes().strip()
    except OSError as e:
        raise SendError(f"{what} {path}: {e.strerror}") from None


def signature(secret: bytes, body: bytes) -> str:
    """The `X-Fleetdeck-Signature` header value for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def send(channel: ChannelConfig, m: Message) -> None:
    """Deliver `m` through `channel` or raise `SendError`."""
    if channel.type == "email":
        send_email(channel, m)
    elif channel.type == "webhook":
        body = render.webhook_body(m)
        headers = {"Content-Type": "application/json", "X-Fleetdeck-Id": m.key,
                   "X-Fleetdeck-Event": str(m.events[0].name) if not m.digest else "digest"}
        if channel.secret_file:
            headers["X-Fleetdeck-Signature"] = signature(
                _secret(channel.secret_file, "secret_file"), body)
        post(channel, body, headers)
    else:
        post(channel, render.slack_body(m), {"Content-Type": "application/json"})


def post(channel: ChannelConfig, body: bytes, headers: dict[str, str]) -> None:
    req = urllib.request.Request(channel.url, data=body, method="POST", headers={
        "User-Agent": f"fleetdeck/{__version__}", **headers})
    try:
        with urllib.request.urlopen(req, timeout=channel.timeout_s) as resp:
            resp.read(65536)
    except urllib.error.HTTPError as e:
        raise SendError(f"{channel.name}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        why = getattr(e, "reason", None) or e
        raise SendError(f"{channel.name}: {why}") from None


def send_email(channel: ChannelConfig, m: Message) -> None:
    msg = EmailMessage()
    msg["From"] = channel.sender
    msg["To"] = m.to.address
    msg["Subject"] = render.subject(m)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = f"<{m.key}@fleetdeck>"
    msg["X-Fleetdeck-Id"] = m.key
    msg.set_content(render.text(m))
    try:
        with smtplib.SMTP(channel.smtp_host, channel.smtp_port,
                          timeout=channel.timeout_s) as smtp:
            if channel.starttls:
                smtp.starttls()
            if channel.username:
                password = _secret(channel.password_file, "password_file").decode()
                smtp.login(channel.username, password)
            smtp.send_message(msg)
    except (TimeoutError, smtplib.SMTPException, OSError) as e:
        raise SendError(f"{channel.name}: {e}") from None

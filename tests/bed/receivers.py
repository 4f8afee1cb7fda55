"""Receivers for notifications: a real SMTP server (aiosmtpd) and a real HTTP receiver.

Both listen on loopback ports and record what arrives; the HTTP receiver can be stopped and
started again on the same port (a webhook that is down for a while).
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from tests.bed.require import unavailable

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, cond: Callable[[], T | None], timeout: float = 90) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


class SmtpServer:
    """aiosmtpd on 127.0.0.1; `messages` are the parsed mails, in arrival order."""

    def __init__(self) -> None:
        try:
            from aiosmtpd.controller import Controller
        except ImportError:
            unavailable("aiosmtpd not installed (pip install -e '.[test]')")
        self.messages: list[EmailMessage] = []
        self.port = free_port()
        outer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
                assert isinstance(msg, EmailMessage)
                outer.messages.append(msg)
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


@dataclass
class Post:
    """One request the HTTP receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    json: Any = field(default=None)


class HttpReceiver:
    """A webhook receiver on a fixed loopback port; `down()` / `up()` stop and restart it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.posts: list[Post] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> HttpReceiver:
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                posts.append(Post(self.path, dict(self.headers.items()), body,
                                  json.loads(body or b"null")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self) -> list[dict[str, Any]]:
        """Every event received (digests unpacked), in arrival order."""
        return [e for p in self.posts if isinstance(p.json, dict)
                for e in p.json.get("events", [])]

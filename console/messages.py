"""Messages shared by the console's screens; screen-specific ones are nested in their screens.

Workers only post these; `@on` handlers on the screens and the app own the state.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message

from console.engine.api.replies import Summary


class SummaryLoaded(Message):
    """The engine answered a `summary` poll (the header's numbers)."""

    def __init__(self, summary: Summary) -> None:
        super().__init__()
        self.summary = summary


class EngineDown(Message):
    """The engine did not answer at all (gone, restarting, socket removed)."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class EngineUp(Message):
    """The engine answered again after being down."""


class Unsupported(Message):
    """The engine does not know `method` yet (older engine or feature not built)."""

    def __init__(self, method: str) -> None:
        super().__init__()
        self.method = method


class RequestFailed(Message):
    """The engine answered `method` with an error (one line, fit to show)."""

    def __init__(self, method: str, code: str, text: str) -> None:
        super().__init__()
        self.method = method
        self.code = code
        self.text = text


class ActionDone(Message):
    """A changing action (stop, cordon, snooze, export...) finished; `text` says what happened."""

    def __init__(self, action: str, text: str, result: Any = None) -> None:
        super().__init__()
        self.action = action
        self.text = text
        self.result = result


class JobsSubmitted(Message):
    """The submit form queued jobs."""

    def __init__(self, ids: list[int]) -> None:
        super().__init__()
        self.ids = ids

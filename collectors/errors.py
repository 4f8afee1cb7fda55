"""Errors meant for people: one clear line, no traceback.

Every package raises these for bad input; the CLI prints `str(err)` and exits with `exit_code`.
They live in `collectors` because it is the lowest layer every other package may import.
"""

from __future__ import annotations

import re

SHOW_MAX_CHARS = 60
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class FleetdeckError(Exception):
    """An error whose message is fit to show a user as is."""

    exit_code = 1


class InputError(FleetdeckError):
    """Bad input (config, job spec, CLI flag, trace file): names the source, the key and
    what was expected. Exit code 2.

    >>> str(InputError("config.toml", "nodes[2].port", "an integer 1-65535", got="22a"))
    'config.toml: nodes[2].port: expected an integer 1-65535, got "22a"'
    """

    exit_code = 2

    def __init__(
        self,
        source: str,
        key: str | None,
        expected: str,
        *,
        got: object = None,
        has_got: bool | None = None,
    ) -> None:
        self.source = source
        self.key = key
        self.expected = expected
        self.got = got
        self.has_got = got is not None if has_got is None else has_got
        super().__init__(self._format())

    def _format(self) -> str:
        source, key = clip(self.source, 200), clip(self.key, 200) if self.key else None
        where = f"{source}: {key}" if key else source
        msg = f"{where}: expected {self.expected}"
        if self.has_got:
            msg += f", got {show(self.got)}"
        return msg


class NotFoundError(FleetdeckError):
    """A named thing (job, node, report) does not exist. Exit code 2."""

    exit_code = 2


class EngineError(FleetdeckError):
    """The engine refused or failed a request; the message says why."""

    exit_code = 1


def show(value: object, limit: int = SHOW_MAX_CHARS) -> str:
    """A value for a one-line message: strings quoted, control characters escaped,
    anything long cut to `limit` characters with its full length said."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, str):
        return '"' + clip(value, limit).replace('"', '\\"') + '"'
    if isinstance(value, int) and abs(value) > 10**limit:
        return f"an integer of more than {limit} digits"
    return clip(repr(value), limit)


def clip(text: str, limit: int = SHOW_MAX_CHARS) -> str:
    """`text` on one line: control characters escaped, cut to `limit` characters."""
    cut = text[:limit]
    escaped = _CONTROL_RE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), cut)
    if len(text) > limit:
        escaped += f"... ({len(text)} characters)"
    return escaped

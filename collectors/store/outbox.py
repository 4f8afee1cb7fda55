"""The outbox: events written with the change they report, and their deliveries.

`append` runs inside the caller's transaction (a job transition, an idle stop), so a crash
keeps both or neither. The engine's sender routes new events into `deliveries` (one row per
recipient, with the routing cursor in `meta` in the same transaction), claims due ones under a
message key, sends, and marks them sent or schedules a retry. A delivery claimed but not
confirmed before a crash is sent again under the same key: at least once, idempotent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

from collectors.events import Event
from collectors.store.db import Store, insert_rows

_CURSOR = "notify_routed"  # meta key: the last event id routed into deliveries


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)


def _epoch(ts: datetime) -> float:
    return ts.replace(tzinfo=UTC).timestamp()


def append(con: duckdb.DuckDBPyConnection, events: Sequence[Event]) -> None:
    """Write events; the caller owns the transaction (the change and its events commit
    together)."""
    if not events:
        return
    first = int(con.execute("SELECT nextval('event_id_seq')").fetchall()[0][0])
    ids = [first]
    if len(events) > 1:
        ids += [int(r[0]) for r in con.execute(
            "SELECT nextval('event_id_seq') FROM range(?)", [len(events) - 1]).fetchall()]
    insert_rows(con, "events", [
        {"id": i, "key": e.key, "ts": _utc(e.ts), "name": str(e.name), "job_id": e.job_id,
         "node": e.node, "team": e.team, "owner": e.owner, "opt_in": list(e.opt_in),
         "body": json.dumps(e.to_json(), default=str)}
        for i, e in zip(ids, events, strict=True)])


def emit(store: Store, events: Sequence[Event]) -> None:
    """Write events in a transaction of their own (events that report no stored change)."""
    if events:
        with store.transaction() as con:
            append(con, events)


_EVENT_COLS = "id, body, opt_in"


def _event(row: Sequence[Any]) -> Event:
    body = json.loads(row[1])
    body["seq"] = int(row[0])
    return Event.from_json(body, opt_in=tuple(row[2] or ()))


def since(store: Store, after: int, *, limit: int = 1000) -> list[Event]:
    """Events with id > `after`, oldest first."""
    rows = store.con.execute(
        f"SELECT {_EVENT_COLS} FROM events WHERE id > ? ORDER BY id LIMIT ?",
        [after, limit]).fetchall()
    return [_event(r) for r in rows]


def recent(store: Store, *, limit: int = 100) -> list[Event]:
    """The newest `limit` events, oldest first."""
    rows = store.con.execute(
        f"SELECT * FROM (SELECT {_EVENT_COLS} FROM events ORDER BY id DESC LIMIT ?) "
        "ORDER BY id", [limit]).fetchall()
    return [_event(r) for r in rows]


def evidence_keys(store: Store, name: str) -> set[str]:
    """`evidence.key` of every stored event named `name` (events told once per key)."""
    rows = store.con.execute(
        "SELECT json_extract_string(body, '$.evidence.key') FROM events WHERE name = ?",
        [name]).fetchall()
    return {str(r[0]) for r in rows if r[0] is not None}


def last_id(store: Store) -> int:
    return int(store.con.execute("SELECT coalesce(max(id), 0) FROM events").fetchall()[0][0])


# -- deliveries ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Recipient:
    """Where a message goes: a channel and, for email, an address."""

    channel: str
    address: str = ""


@dataclass(frozen=True, slots=True)
class Pending:
    """A delivery not yet sent: its event, recipient, attempts so far and message key."""

    event: Event
    to: Recipient
    attempts: int
    next_at: float
    message_key: str | None


def routed_cursor(store: Store) -> int:
    rows = store.con.execute("SELECT value FROM meta WHERE key = ?", [_CURSOR]).fetchall()
    return int(rows[0][0]) if rows else 0


def add_deliveries(store: Store, rows: Sequence[tuple[int, Recipient, float]],
                   cursor: int) -> None:
    """Record (event id, recipient, not before) deliveries and advance the routing cursor
    to `cursor`, in one transaction: an event is routed exactly once."""
    with store.transaction() as con:
        insert_rows(con, "deliveries", [
            {"event_id": eid, "channel": r.channel, "address": r.address, "state": "pending",
             "attempts": 0, "next_at": _utc(at)} for eid, r, at in rows])
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [_CURSOR, str(cursor)])


def due(store: Store, now: float, *, per_recipient: int = 2000) -> list[Pending]:
    """Pending deliveries whose time has come, oldest event first, at most `per_recipient`
    for each recipient (one held back by its rate limit never starves the others)."""
    rows = store.con.execute(
        "SELECT e.id, e.body, e.opt_in, d.channel, d.address, d.attempts, d.next_at, "
        "d.message_key FROM deliveries d JOIN events e ON e.id = d.event_id "
        "WHERE d.state = 'pending' AND d.next_at <= ? "
        "QUALIFY row_number() OVER (PARTITION BY d.channel, d.address ORDER BY e.id) <= ? "
        "ORDER BY e.id", [_utc(now), per_recipient]).fetchall()
    return [Pending(_event(r[:3]), Recipient(r[3], r[4]), int(r[5]), _epoch(r[6]), r[7])
            for r in rows]


def sent_since(store: Store, since_ts: float) -> dict[Recipient, int]:
    """Messages (distinct message keys) sent per recipient since `since_ts`."""
    rows = store.con.execute(
        "SELECT channel, address, count(DISTINCT message_key) FROM deliveries "
        "WHERE state = 'sent' AND sent_at >= ? GROUP BY ALL", [_utc(since_ts)]).fetchall()
    return {Recipient(c, a): int(n) for c, a, n in rows}


def claim(store: Store, to: Recipient, event_ids: Sequence[int], message_key: str,
          retry_at: float) -> None:
    """Bind deliveries to one message before it is sent; `retry_at` keeps them from being
    claimed again while the attempt is in flight (and retries it after a crash)."""
    store.con.execute(
        "UPDATE deliveries SET message_key = ?, next_at = ? WHERE state = 'pending' "
        "AND channel = ? AND address = ? AND event_id IN (SELECT unnest(?::BIGINT[]))",
        [message_key, _utc(retry_at), to.channel, to.address, list(event_ids)])


def mark_sent(store: Store, to: Recipient, message_key: str, now: float) -> None:
    store.con.execute(
        "UPDATE deliveries SET state = 'sent', sent_at = ?, attempts = attempts + 1, "
        "last_error = NULL WHERE message_key = ? AND channel = ? AND address = ?",
        [_utc(now), message_key, to.channel, to.address])


def mark_failed_attempt(store: Store, to: Recipient, message_key: str, error: str, *,
                        retry_at: float | None) -> None:
    """Count a failed attempt: retry at `retry_at`, or give up (state failed) when None."""
    store.con.execute(
        "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, "
        "state = CASE WHEN ? THEN 'failed' ELSE state END, "
        "next_at = coalesce(?::TIMESTAMP, next_at) "
        "WHERE message_key = ? AND channel = ? AND address = ? AND state = 'pending'",
        [error[:500], retry_at is None, _utc(retry_at) if retry_at is not None else None,
         message_key, to.channel, to.address])


def delivery_counts(store: Store) -> list[dict[str, Any]]:
    """Per channel and state: deliveries, and the oldest pending one's age basis."""
    cur = store.con.execute(
        "SELECT channel, state, count(*) AS deliveries, min(next_at) AS oldest_next_at "
        "FROM deliveries GROUP BY ALL ORDER BY channel, state")
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def prune_sent(store: Store, before: float) -> int:
    """Drop deliveries sent before `before` (events stay: they are the history)."""
    rows = store.con.execute(
        "DELETE FROM deliveries WHERE state = 'sent' AND sent_at < ? RETURNING 1",
        [_utc(before)]).fetchall()
    return len(rows)


def failed_count(store: Store) -> int:
    """Deliveries given up on (after max_attempts)."""
    return int(store.con.execute(
        "SELECT count(*) FROM deliveries WHERE state = 'failed'").fetchall()[0][0])


def failures(store: Store, *, limit: int = 20) -> list[dict[str, Any]]:
    """The newest deliveries given up on, with their last error."""
    cur = store.con.execute(
        "SELECT e.id AS event_id, e.name, e.ts, d.channel, d.address, d.attempts, "
        "d.last_error FROM deliveries d JOIN events e ON e.id = d.event_id "
        "WHERE d.state = 'failed' ORDER BY e.id DESC LIMIT ?", [limit])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

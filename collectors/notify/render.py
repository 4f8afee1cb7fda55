"""Messages as people and programs read them (pure): mail subject and text, webhook JSON,
Slack JSON. Short: what happened, to which job or node, why, what to do.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from collectors.events import Event
from collectors.notify.route import Message

DIGEST_LINES = 50  # events listed one per line in a digest; the rest are counted


def _subject_one(e: Event) -> str:
    return f"[fleetdeck] {e.name}: {e.summary}"


def _counts(m: Message) -> str:
    return ", ".join(f"{n} {name}" for name, n in Counter(str(e.name) for e in m.events)
                     .most_common())


def subject(m: Message) -> str:
    if not m.digest:
        return _subject_one(m.events[0])
    return f"[fleetdeck] {len(m.events)} events: {_counts(m)}"


def _about(e: Event) -> str:
    parts = []
    if e.job_id is not None:
        parts.append(f"job {e.job_id}" + (f" ({e.job_name})" if e.job_name else ""))
    if e.owner:
        parts.append(f"owner {e.owner}")
    if e.team:
        parts.append(f"team {e.team}")
    if e.node:
        parts.append(f"node {e.node}")
    return ", ".join(parts)


def _evidence(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def text_one(e: Event) -> str:
    lines = [e.summary, ""]
    if e.reason:
        lines.append(f"Why: {e.reason}")
    about = _about(e)
    if about:
        lines.append(f"About: {about}")
    if e.actions:
        lines += ["", "What you can do:", *(f"  {a}" for a in e.actions)]
    if e.evidence:
        lines += ["", "Evidence:", *(f"  {k}: {_evidence(v)}" for k, v in e.evidence.items())]
    lines += ["", f"-- fleetdeck {e.name} at {e.to_json()['ts']}, event {e.key}"]
    return "\n".join(lines) + "\n"


def text(m: Message) -> str:
    """The plain-text mail body."""
    if not m.digest:
        return text_one(m.events[0])
    lines = [f"{len(m.events)} events: {_counts(m)}", ""]
    for e in m.events[:DIGEST_LINES]:
        lines.append(f"- {e.to_json()['ts']} {e.name}: {e.summary}"
                     + (f" ({e.reason})" if e.reason else ""))
    if len(m.events) > DIGEST_LINES:
        lines.append(f"... and {len(m.events) - DIGEST_LINES} more (fleetdeck events)")
    actions = list(dict.fromkeys(a for e in m.events for a in e.actions))[:10]
    if actions:
        lines += ["", "What you can do:", *(f"  {a}" for a in actions)]
    lines += ["", f"-- fleetdeck digest {m.key}"]
    return "\n".join(lines) + "\n"


def webhook_body(m: Message) -> bytes:
    """`{"id": key, "digest": bool, "events": [...]}`: receivers drop an id they have seen."""
    doc = {"id": m.key, "digest": m.digest, "count": len(m.events),
           "events": [e.to_json() for e in m.events]}
    return json.dumps(doc, separators=(",", ":"), default=str).encode()


def slack_body(m: Message) -> bytes:
    """Slack incoming-webhook JSON (Mattermost and Teams accept it too)."""
    if not m.digest:
        e = m.events[0]
        lines = [f"*{e.name}*: {e.summary}"]
        if e.reason:
            lines.append(f"Why: {e.reason}")
        lines += [f"`{a}`" for a in e.actions]
    else:
        lines = [f"*{len(m.events)} events*: {_counts(m)}"]
        lines += [f"• {e.name}: {e.summary}" for e in m.events[:DIGEST_LINES]]
        if len(m.events) > DIGEST_LINES:
            lines.append(f"… and {len(m.events) - DIGEST_LINES} more")
    return json.dumps({"text": "\n".join(lines)}).encode()

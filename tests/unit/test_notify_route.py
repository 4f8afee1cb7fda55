"""Routing, opt-in, digests, rate limits, backoff and rendering of notifications (pure)."""

from __future__ import annotations

import json

import pytest

from collectors.errors import InputError
from collectors.events import Event, EventName
from collectors.notify import render
from collectors.notify.config import ChannelConfig, NotifyConfig, RouteConfig, check
from collectors.notify.route import Directory, Person, plan, recipients, retry_at
from collectors.store.outbox import Pending, Recipient

MAIL = ChannelConfig(name="mail", type="email", sender="fd@example.org")
HOOK = ChannelConfig(name="ops", type="webhook", url="http://127.0.0.1:9/x")
CFG = NotifyConfig(
    channels=(MAIL, HOOK),
    routes=(RouteConfig(events=("idle.warned", "job."), to=("owner", "ops")),
            RouteConfig(events=("node.",), to=("admins",))),
    admins=("root",), rate_limit=2)
PEOPLE = Directory({"alice": Person("alice", "alice@example.org"),
                    "bob": Person("bob", "bob@example.org", notify=("job.failed",)),
                    "root": Person("root", "root@example.org")})


def ev(name: EventName, seq: int, owner: str = "alice", **kw: object) -> Event:
    return Event(name, 1000.0 + seq, f"job {seq} {name}", job_id=seq, owner=owner, seq=seq,
                 **kw)  # type: ignore[arg-type]


def test_routes_reach_owner_channels_and_admins() -> None:
    assert recipients(ev(EventName.IDLE_WARNED, 1), CFG, PEOPLE) == [
        Recipient("mail", "alice@example.org"), Recipient("ops")]
    assert recipients(Event(EventName.NODE_DRAINED, 1.0, "n1 drained", node="n1"), CFG,
                      PEOPLE) == [Recipient("mail", "root@example.org")]
    assert recipients(Event(EventName.BURST_STARTED, 1.0, "x"), CFG, PEOPLE) == []


def test_job_end_mail_is_opt_in_per_user_or_per_job() -> None:
    # the webhook hears of every failure; owners only when they asked
    assert recipients(ev(EventName.JOB_FAILED, 1), CFG, PEOPLE) == [Recipient("ops")]
    assert Recipient("mail", "bob@example.org") in recipients(
        ev(EventName.JOB_FAILED, 2, owner="bob"), CFG, PEOPLE)
    assert Recipient("mail", "bob@example.org") not in recipients(
        ev(EventName.JOB_SUCCEEDED, 3, owner="bob"), CFG, PEOPLE)
    assert Recipient("mail", "alice@example.org") in recipients(
        ev(EventName.JOB_SUCCEEDED, 4, opt_in=("job.",)), CFG, PEOPLE)


def test_an_array_failing_is_one_digest_and_the_rate_limit_holds_the_rest() -> None:
    to = Recipient("ops")
    due = [Pending(ev(EventName.JOB_FAILED, i), to, 0, 1000.0, None) for i in range(1, 501)]
    [m] = plan(due, {}, CFG)
    assert m.digest and len(m.events) == 500 and m.key.startswith("digest-")
    assert plan(due, {to: 2}, CFG) == []  # over the limit: they wait for the window
    assert plan(due, {}, CFG, busy={to}) == []  # one message in flight per recipient
    body = json.loads(render.webhook_body(m))
    assert body["id"] == m.key and body["count"] == 500 and body["digest"] is True
    assert render.subject(m) == "[fleetdeck] 500 events: 500 job.failed"
    assert "... and 450 more" in render.text(m)


def test_a_retry_keeps_its_events_and_key() -> None:
    to = Recipient("ops")
    old = [Pending(ev(EventName.JOB_LOST, i), to, 3, 1000.0, "k-old") for i in (1, 2)]
    new = Pending(ev(EventName.JOB_LOST, 3), to, 0, 1000.0, None)
    [m] = plan([*old, new], {to: 99}, CFG)  # retries are not held by the rate limit
    assert (m.key, m.event_ids, m.attempts, m.retry) == ("k-old", [1, 2], 3, True)


def test_backoff_doubles_to_the_cap_then_gives_up() -> None:
    cfg = NotifyConfig(backoff_s=1.0, backoff_max_s=5.0, max_attempts=5)
    assert [retry_at(a, 0.0, cfg) for a in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, None]


def test_mail_text_says_what_why_and_what_to_do() -> None:
    e = Event(EventName.IDLE_WARNED, 0.0, "job 7 (train) is idle and will be stopped at X",
              reason="GPU utilization at most 0.0% over 30m", job_id=7, job_name="train",
              owner="alice", actions=('fleetdeck snooze 7 --hours 2 --reason "..."',))
    [m] = plan([Pending(e, Recipient("mail", "a@x"), 0, 0.0, None)], {}, CFG)
    body = render.text(m)
    assert body.startswith("job 7 (train) is idle")
    assert "Why: GPU utilization" in body and "fleetdeck snooze 7 --hours 2" in body
    assert json.loads(render.slack_body(m))["text"].startswith("*idle.warned*")


@pytest.mark.parametrize(("cfg", "key"), [
    (NotifyConfig(routes=(RouteConfig(events=("job.done",), to=("ops",)),),
                  channels=(HOOK,)), "notify.routes[0].events[0]"),
    (NotifyConfig(routes=(RouteConfig(events=("job.",), to=("pager",)),), channels=(HOOK,)),
     "notify.routes[0].to[0]"),
    (NotifyConfig(routes=(RouteConfig(events=("job.",), to=("owner",)),), channels=(HOOK,)),
     "notify.routes[0].to[0]"),
    (NotifyConfig(channels=(ChannelConfig(name="ops", type="webhook", url="ftp://x"),)),
     "notify.channels[0].url"),
    (NotifyConfig(channels=(ChannelConfig(name="m", type="email"),)), "notify.channels[0].from"),
    (NotifyConfig(admins=("nobody",)), "notify.admins[0]"),
])
def test_bad_config_names_the_key(cfg: NotifyConfig, key: str) -> None:
    with pytest.raises(InputError, match=key.replace("[", r"\[").replace("]", r"\]")):
        check(cfg, ["alice"], "config.toml")

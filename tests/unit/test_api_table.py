"""The method table: one entry per method, typed requests, the generated protocol document."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import msgspec
import pytest

from console.engine.api import requests as rq
from console.engine.api.doc import table_json, table_markdown
from console.engine.api.methods import BY_NAME, BY_REQUEST, TABLE, Role, declared_reply
from console.engine.protocol import ErrorCode

REPO = Path(__file__).resolve().parents[2]


def test_protocol_document_is_generated_from_the_table() -> None:
    doc = (REPO / "docs" / "PROTOCOL.md").read_text()
    assert doc == table_markdown(), "run: fleetdeck api --format md > docs/PROTOCOL.md"


def test_every_method_is_declared_once_with_typed_request_and_reply() -> None:
    assert len(BY_NAME) == len(TABLE)
    for m in TABLE:
        assert issubclass(m.request, rq.Request), m.name
        assert m.reply is not None or m.name == "suggest", m.name
        assert m.doc and "\n" not in m.doc, m.name
        assert isinstance(m.role, Role)
        if m.others is not None:
            assert m.others >= m.role, m.name
    assert {m["name"] for m in table_json()["methods"]} == set(BY_NAME)


def test_each_method_has_a_request_type_of_its_own_declaring_its_reply() -> None:
    """`EngineClient.call(request)` finds the method by the request's type and decodes the
    reply the request declares (`Request[R]`), which is the table's reply."""
    assert len(BY_REQUEST) == len(TABLE)
    for m in TABLE:
        assert BY_REQUEST[m.request] is m
        assert declared_reply(m.request) == m.reply, m.name


def test_changing_methods_need_more_than_viewer() -> None:
    for m in TABLE:
        if m.changes:
            assert m.role > Role.VIEWER, m.name
    assert BY_NAME["shutdown"].role is Role.ADMIN and BY_NAME["export"].role is Role.ADMIN
    assert BY_NAME["export"].changes and BY_NAME["shutdown"].changes


@pytest.mark.parametrize(("method", "params", "names"), [
    ("stop", {}, "job"),
    ("stop", {"job": "seven"}, "$.job"),
    ("snooze", {"job": 1, "hours": float("nan"), "reason": "x"}, "$.hours"),
    ("snooze", {"job": 1, "hours": 1e9, "reason": "x"}, "$.hours"),
    ("jobs", {"limit": -1}, "$.limit"),
    ("jobs", {"states": ["sleeping"]}, "$.states[0]"),
    ("cordon", {"node": "a", "resaon": "typo"}, "resaon"),
    ("whatif", {"days": 7}, "changes"),
])
def test_bad_params_name_the_parameter(method: str, params: dict[str, object],
                                       names: str) -> None:
    with pytest.raises(msgspec.ValidationError) as e:
        msgspec.convert(params, BY_NAME[method].request)
    assert names in str(e.value)


def test_report_params_use_from_and_to() -> None:
    req = msgspec.convert({"name": "usage", "from": "7d", "to": "now"}, rq.ReportQuery)
    assert (req.start, req.end) == ("7d", "now")
    assert msgspec.to_builtins(req)["from"] == "7d"


def test_error_codes_are_an_enum_with_exit_codes() -> None:
    codes = {e["code"]: e["exit"] for e in table_json()["errors"]}
    assert codes["bad_request"] == 2 and codes["forbidden"] == 1
    assert set(codes) == {c.value for c in ErrorCode}


def test_requests_are_frozen() -> None:
    req = rq.StopRequest(job=1)
    with pytest.raises((AttributeError, dataclasses.FrozenInstanceError)):
        req.job = 2  # type: ignore[misc]

"""Every protocol error about a parameter names it, and what the method takes instead."""

from __future__ import annotations

import msgspec
import pytest

from console.engine.api.methods import BY_NAME, TABLE
from console.engine.api.requests import JobRef
from console.engine.server import bad_params


def refusal(method: str, params: dict[str, object]) -> str:
    m = BY_NAME[method]
    with pytest.raises(msgspec.ValidationError) as e:
        msgspec.convert(params, m.request)
    return bad_params(m.name, m.request, e.value)


def test_explain_takes_job_like_every_job_method() -> None:
    job_methods = [m.name for m in TABLE if m.request is JobRef or ("job" in {
        f.encode_name for f in msgspec.structs.fields(m.request)} and m.name != "submit")]
    assert "explain" in job_methods and "stop" in job_methods and "logs" in job_methods
    for name in job_methods:
        assert "job" in {f.encode_name for f in msgspec.structs.fields(BY_NAME[name].request)}
    assert refusal("explain", {"job_id": 7}) == \
        "explain: unknown parameter job_id; it takes: job"
    assert refusal("explain", {}) == "explain: missing parameter job; it takes: job"
    assert refusal("explain", {"job": 0}) == "explain: Expected `int` >= 1 - at `$.job`"


@pytest.mark.parametrize("method", [m.name for m in TABLE
                                    if msgspec.structs.fields(m.request)])
def test_an_unknown_parameter_names_what_the_method_takes(method: str) -> None:
    text = refusal(method, {"no_such_parameter": 1})
    takes = [f.encode_name for f in msgspec.structs.fields(BY_NAME[method].request)]
    assert text == (f"{method}: unknown parameter no_such_parameter; it takes: "
                    f"{', '.join(takes)}")
    assert "\n" not in text

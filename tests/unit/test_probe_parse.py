"""parse_line: probe JSON lines -> frozen samples, and clear errors for anything else."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.models import GpuEvent, GpuProcess, GpuSample, ProbeHello, ProbeRecord
from collectors.probe import ProbeFormatError, parse_line

UUID0 = "GPU-fdbed000-0000-4000-8000-000000000000"
UUID1 = "GPU-fdbed000-0000-4000-8000-000000000001"
CID = "ab" * 32

HOST: dict[str, Any] = {
    "hostname": "gpu01", "kernel": "6.1.0-18-amd64", "cpu_model": "AMD EPYC 7763",
    "uptime_s": 86400.5, "cpu_count": 4, "cpu_util_pct": 37.5,
    "per_core_util_pct": [10.0, 20.0, 50.0, 70], "load1": 1.5, "load5": 1.25, "load15": 1.0,
    "mem_total_bytes": 256 * 2**30, "mem_used_bytes": 100 * 2**30,
    "mem_available_bytes": 156 * 2**30, "swap_total_bytes": 0, "swap_used_bytes": 0,
    "net_rx_bytes": 123456789012, "net_tx_bytes": 98765,
}
GPU0: dict[str, Any] = {
    "index": 0, "uuid": UUID0, "model": "NVIDIA A100-SXM4-80GB",
    "mem_total_bytes": 80 * 2**30, "mem_used_bytes": 20 * 2**30, "util_pct": 97.0,
    "mem_util_pct": 40.0, "temp_c": 61.0, "power_w": 312.5, "power_limit_w": 400.0,
    "sm_clock_mhz": 1410, "ecc_corrected": 3, "ecc_uncorrected": 1, "retired_pages": 2,
    "retired_pending": True, "remap_failure": False, "mig_mode": False, "remap_pending": True,
}
GPU1 = dict.fromkeys(GPU0) | {"index": 1, "uuid": UUID1}  # a GPU whose every query failed


def sample(**over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "sample", "v": 1, "seq": 7, "ts": 1700000000.25, "interval_s": 5.0,
        "host": HOST, "disks": [{"path": "/", "total_bytes": 1000, "used_bytes": 400}],
        "gpu_source": "nvml", "driver_version": "550.54.15", "gpus": [GPU0, GPU1],
        "procs": [{"gpu_index": 0, "uuid": UUID0, "pid": 4242, "gpu_mem_used_bytes": 2**30,
                   "command": "python train.py", "container_id": CID, "job_id": 17}],
        "events": [{"gpu_index": 1, "uuid": UUID1, "kind": "xid", "code": 79,
                    "detail": "Xid 79"}],
        "errors": ["gpu1: GPU is lost (power_w)"],
    }
    obj.update(over)
    return obj


def test_sample_line_to_frozen_record() -> None:
    rec = parse_line("gpu01", json.dumps(sample()).encode())
    assert isinstance(rec, ProbeRecord)
    assert (rec.node, rec.ts, rec.seq, rec.gpu_source, rec.driver_version) == \
        ("gpu01", 1700000000.25, 7, "nvml", "550.54.15")
    h = rec.host
    for key, value in HOST.items():
        got = getattr(h, key)
        assert (list(got) if key == "per_core_util_pct" else got) == value, key
    assert h.per_core_util_pct == (10.0, 20.0, 50.0, 70.0)
    assert all(type(v) is float for v in h.per_core_util_pct)
    g0, g1 = rec.gpus
    assert g0 == GpuSample(ts=1700000000.25, node="gpu01", gpu_index=0, **{
        k: v for k, v in GPU0.items() if k != "index"})
    assert g1.gpu_index == 1 and g1.uuid == UUID1
    assert all(getattr(g1, f.name) is None for f in dataclasses.fields(g1)
               if f.name not in ("ts", "node", "gpu_index", "uuid"))
    assert rec.processes == (GpuProcess(1700000000.25, "gpu01", 0, UUID0, 4242, 2**30,
                                        "python train.py", CID, 17),)
    assert rec.events == (GpuEvent(1700000000.25, "gpu01", 1, UUID1, "xid", 79, "Xid 79"),)
    assert rec.disks[0].used_bytes == 400 and rec.disks[0].total_bytes == 1000
    assert rec.errors == ("gpu1: GPU is lost (power_w)",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.host.cpu_util_pct = 1.0  # type: ignore[misc]


def test_ts_override_applies_to_every_sample() -> None:
    rec = parse_line("n", json.dumps(sample()), ts=1800000000.0)
    assert isinstance(rec, ProbeRecord)
    stamps = {rec.ts, rec.host.ts, *(g.ts for g in rec.gpus), *(p.ts for p in rec.processes),
              *(e.ts for e in rec.events), *(d.ts for d in rec.disks)}
    assert stamps == {1800000000.0}


def test_hello_line() -> None:
    hello = parse_line("n", b'{"type":"hello","v":1,"probe_version":"1","mode":"shell",'
                            b'"ts":1700000000,"python_version":null,"hostname":"h",'
                            b'"kernel":"k","pid":99,"interval_s":5}')
    assert hello == ProbeHello("n", 1700000000.0, "1", "shell", None, "h", "k", 99, 5.0)


def test_shell_probe_process_gets_its_gpu_index_from_the_uuid() -> None:
    proc = {"gpu_index": None, "uuid": UUID1, "pid": 5, "gpu_mem_used_bytes": None,
            "command": None, "container_id": None, "job_id": None}
    rec = parse_line("n", json.dumps(sample(procs=[proc])))
    assert isinstance(rec, ProbeRecord)
    assert rec.processes[0].gpu_index == 1


def test_minimal_sample_from_an_empty_node() -> None:
    rec = parse_line("n", '{"type":"sample","ts":1.5,"host":{}}')
    assert isinstance(rec, ProbeRecord)
    assert rec.gpus == () and rec.processes == () and rec.disks == () and rec.errors == ()
    assert rec.host.mem_total_bytes is None and rec.host.per_core_util_pct == ()
    assert rec.gpu_source == "none"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"Traceback (most recent call last):", "not JSON"),
        (b"\xff\xfe{", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"type": "bye"}', "unknown probe line type 'bye'"),
        (b'{"type": "sample", "host": {}}', "missing field 'ts'"),
        (b'{"type": "sample", "ts": 1}', "missing field 'host'"),
        (b'{"type": "sample", "ts": "yesterday", "host": {}}', "expected a number"),
        (b'{"type": "sample", "ts": 1, "host": []}', "host is not an object"),
        (b'{"type": "sample", "ts": 1, "host": {}, "gpus": [{"index": "0"}]}',
         "index: '0' is not an integer"),
        (b'{"type": "sample", "ts": 1, "host": {"mem_total_bytes": 1.5}}',
         "expected an integer"),
        (b'{"type": "sample", "ts": 1, "host": {}, "gpus": [{"index": 0, "mig_mode": 1}]}',
         "expected true/false"),
        (b'{"type": "sample", "ts": 1, "host": {}, "events": [{"kind": "fire"}]}',
         "unknown GPU event kind 'fire'"),
        (b'{"type": "sample", "ts": 1, "host": {}, "procs": [{"pid": null}]}',
         "pid: None is not an integer"),
        (b'{"type": "sample", "ts": 1, "host": {"per_core_util_pct": [1, "2"]}}',
         "per_core_util_pct: unsupported operand"),
        (b'{"type": "sample", "ts": 1, "host": {}, "disks": {"path": "/"}}',
         "disks is not a list"),
        (b'{"type": "hello", "ts": 1}', "missing field 'probe_version'"),
    ],
)
def test_malformed_lines_raise_one_clear_error(line: bytes, message: str) -> None:
    with pytest.raises(ProbeFormatError) as info:
        parse_line("gpu07", line)
    text = str(info.value)
    assert text.startswith("gpu07: ")
    assert message in text
    assert "\n" not in text


def test_oversized_line_is_refused() -> None:
    with pytest.raises(ProbeFormatError, match="too long"):
        parse_line("n", b"{" + b" " * (9 * 1024 * 1024) + b"}")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=8,
)
SLOTS = ("host", "gpus", "procs", "events", "disks", "errors", "seq", "ts", "gpu_source")


@settings(max_examples=300, deadline=None)
@given(slot=st.sampled_from(SLOTS), value=json_values,
       gpu_key=st.sampled_from([*GPU0, "index"]), gpu_value=json_values)
def test_any_json_gives_a_record_or_a_probe_format_error(
    slot: str, value: Any, gpu_key: str, gpu_value: Any
) -> None:
    for obj in (sample(**{slot: value}), sample(gpus=[GPU0 | {gpu_key: gpu_value}])):
        try:
            rec = parse_line("n", json.dumps(obj))
        except ProbeFormatError:
            continue
        assert isinstance(rec, ProbeRecord)

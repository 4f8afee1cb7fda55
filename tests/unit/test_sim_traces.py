"""Trace loaders: both formats parse, and every malformed file gets a one-line InputError."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.errors import InputError
from scheduler.sim.traces import (
    JOB_COLUMNS,
    NODE_COLUMNS,
    POD_COLUMNS,
    load_alibaba_nodes,
    load_alibaba_pods,
    load_job_csv,
    load_jobs,
)

NODE_HEADER = ",".join(NODE_COLUMNS)
POD_HEADER = ",".join(POD_COLUMNS)
JOB_HEADER = ",".join(JOB_COLUMNS)


def write(tmp_path: Path, name: str, *lines: str) -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def test_alibaba_nodes_and_pods_parse(tmp_path: Path) -> None:
    nodes = load_alibaba_nodes(
        write(tmp_path, "n.csv", NODE_HEADER, "g1,64000,262144,2,T4", "c1,32000,65536,0,")
    )
    assert [n.name for n in nodes] == ["g1", "c1"]
    assert nodes[0].cpu_milli == 64000 and nodes[0].mem_bytes == 262144 << 20
    assert [g.model for g in nodes[0].gpus] == ["T4", "T4"] and nodes[1].gpus == ()
    assert nodes[0].gpus[0].mem_total_bytes == 16 << 30
    pods = load_alibaba_pods(
        write(
            tmp_path,
            "p.csv",
            POD_HEADER,
            "p0,12000,16384,1,460,T4|P100,LS,Running,10,110,20",
            "p1,4000,1024,0,0,,BE,Pending,30,40,",
            "p2,8000,1024,2,1000,,LS,Succeeded,0,50,5",
        ),
    )
    assert pods[0].request.gpu_milli == 460 and pods[0].request.fractional
    assert pods[0].request.gpu_models == frozenset({"T4", "P100"})
    assert pods[0].submit_time_s == 10 and pods[0].duration_s == 90
    assert pods[1].duration_s is None and pods[1].request.gpu_count == 0
    assert pods[2].request.total_gpu_milli == 2000 and pods[2].duration_s == 45


def test_fleetdeck_job_csv_parses(tmp_path: Path) -> None:
    jobs = load_jobs(
        write(
            tmp_path,
            "j.csv",
            JOB_HEADER,
            "train,0,3600,4,A100|H100,16,68719476736,alice,vision",
            "nb,60.5,600,0.25,,2,0,bob,",
        )
    )
    assert jobs[0].request.gpu_count == 4 and jobs[0].request.cpu_milli == 16000
    assert jobs[0].request.gpu_models == frozenset({"A100", "H100"})
    assert jobs[0].user == "alice" and jobs[0].project == "vision"
    assert jobs[1].request.gpu_count == 1 and jobs[1].request.gpu_milli == 250
    assert jobs[1].submit_time_s == 60.5 and jobs[1].duration_s == 600


@pytest.mark.parametrize(
    ("loader", "lines", "message"),
    [
        (load_alibaba_nodes, [], "row 1: expected a header sn,cpu_milli"),
        (load_alibaba_nodes, ["sn,cpu,memory_mib,gpu,model"], "row 1: expected the header"),
        (load_alibaba_nodes, [NODE_HEADER], "expected at least one node"),
        (load_alibaba_nodes, [NODE_HEADER, "a,1,2,3"], "row 2: expected 5 columns, got 4"),
        (
            load_alibaba_nodes,
            [NODE_HEADER, "a,64000,x,2,T4"],
            'row 2, column memory_mib: expected an integer >= 0, got "x"',
        ),
        (
            load_alibaba_nodes,
            [NODE_HEADER, "a,1,1,1,T4", "a,1,1,1,T4"],
            'row 3, column sn: expected a unique node name, got "a"',
        ),
        (
            load_alibaba_nodes,
            [NODE_HEADER, "a,1,1,2,"],
            "row 2, column model: expected a GPU model for a node with GPUs",
        ),
        (
            load_alibaba_pods,
            [POD_HEADER, "p,1000,10,1,1200,,LS,Running,0,1,0"],
            'row 2, column gpu_milli: expected 1-1000 when num_gpu is 1, got "1200"',
        ),
        (
            load_alibaba_pods,
            [POD_HEADER, "p,1000,10,2,500,,LS,Running,0,1,0"],
            "column gpu_milli: expected 1000 when num_gpu > 1",
        ),
        (
            load_alibaba_pods,
            [POD_HEADER, "p,1000,10,1,500,,LS,Running,0,5,9"],
            'row 2, column deletion_time: expected a time >= scheduled_time, got "5"',
        ),
        (
            load_alibaba_pods,
            [POD_HEADER, "p,1000,10,-1,500,,LS,Running,0,5,0"],
            "column num_gpu: expected an integer >= 0",
        ),
        (
            load_job_csv,
            [JOB_HEADER, "j,0,10,1.5,,1,0,u,p"],
            'row 2, column gpus: expected a whole number of GPUs, or a fraction below 1, got "1.5"',
        ),
        (
            load_job_csv,
            [JOB_HEADER, "j,0,0,1,,1,0,u,p"],
            'row 2, column duration_s: expected a number > 0, got "0"',
        ),
        (
            load_job_csv,
            [JOB_HEADER, ",0,10,1,,1,0,u,p"],
            "row 2, column name: expected a non-empty name",
        ),
        (
            load_job_csv,
            [JOB_HEADER, "j,soon,10,1,,1,0,u,p"],
            'row 2, column submit_time_s: expected a number >= 0, got "soon"',
        ),
    ],
)
def test_bad_files_name_file_row_column_and_expectation(
    tmp_path: Path, loader: object, lines: list[str], message: str
) -> None:
    p = write(tmp_path, "bad.csv", *lines) if lines else tmp_path / "bad.csv"
    if not lines:
        p.write_text("")
    assert callable(loader)
    with pytest.raises(InputError) as err:
        loader(p)
    text = str(err.value)
    assert text.startswith(f"{p}: ") and "\n" not in text
    assert message in text
    assert err.value.exit_code == 2


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="expected a readable node list"):
        load_alibaba_nodes(tmp_path / "nope.csv")
    b = tmp_path / "bin.csv"
    b.write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(InputError, match="UTF-8 text"):
        load_alibaba_pods(b)


def test_load_jobs_tells_the_formats_apart(tmp_path: Path) -> None:
    pods = write(tmp_path, "p.csv", POD_HEADER, "p,1000,10,1,500,,LS,Running,0,5,0")
    assert load_jobs(pods)[0].request.gpu_milli == 500
    bad = write(tmp_path, "x.csv", "a,b,c", "1,2,3")
    with pytest.raises(InputError, match="row 1: expected the header name,submit_time_s"):
        load_jobs(bad)

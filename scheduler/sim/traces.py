"""Trace files the simulator reads: node lists and job lists.

Alibaba GPU trace 2023 (github.com/alibaba/clusterdata, cluster-trace-gpu-v2023), as is:

- node list `sn,cpu_milli,memory_mib,gpu,model`: one node per row; `gpu` GPUs of `model`.
- pod list `name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,
  deletion_time,scheduled_time`: `num_gpu` whole GPUs, or with `num_gpu == 1` a share of
  `gpu_milli` thousandths of one GPU; `gpu_spec` allowed models separated by `|` (empty: any);
  times in seconds from the trace start; the run time is `deletion_time - scheduled_time`
  (empty `scheduled_time`: never ran, no known duration).

fleetdeck job trace CSV, a header row then one job per row:

==================  ====================================================================
column              meaning
==================  ====================================================================
``name``            job name (non-empty)
``submit_time_s``   submission time in seconds (>= 0, any epoch)
``duration_s``      run time in seconds once started (> 0)
``gpus``            GPUs: an integer count, or a fraction of one GPU below 1 (``0.25``)
``gpu_model``       allowed GPU models separated by ``|``; empty means any
``cpus``            CPU cores (a decimal number >= 0)
``mem_bytes``       memory in bytes (an integer >= 0)
``user``            submitting user (may be empty)
``project``         project (may be empty)
==================  ====================================================================

Every malformed file raises `InputError` naming the file, the row (1-based line number, the
header is row 1) and column, and what was expected.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from collectors.errors import InputError
from collectors.validate import MAX_INT, check_text, parse_number
from scheduler.models import MILLI_PER_GPU, GpuSlot, NodeCapacity, ResourceRequest

MIB = 1 << 20
GIB = 1 << 30

# Memory of the GPU models that appear in the Alibaba trace (G1-G3 are undisclosed: 0).
GPU_MEM_BYTES: dict[str, int] = {
    "T4": 16 * GIB,
    "P100": 16 * GIB,
    "V100M16": 16 * GIB,
    "V100M32": 32 * GIB,
    "A10": 24 * GIB,
    "A100": 80 * GIB,
}

NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = (
    "name",
    "cpu_milli",
    "memory_mib",
    "num_gpu",
    "gpu_milli",
    "gpu_spec",
    "qos",
    "pod_phase",
    "creation_time",
    "deletion_time",
    "scheduled_time",
)
JOB_COLUMNS = (
    "name",
    "submit_time_s",
    "duration_s",
    "gpus",
    "gpu_model",
    "cpus",
    "mem_bytes",
    "user",
    "project",
)


@dataclass(frozen=True, slots=True)
class TraceJob:
    """One job of a trace: what it asks for, when it arrives and how long it runs."""

    name: str
    request: ResourceRequest
    submit_time_s: float
    duration_s: float | None  # None: unknown (never ran in the trace)
    user: str = ""
    project: str = ""


class _Reader:
    """A CSV file with an exact header; cells parsed with errors naming row and column."""

    def __init__(self, path: Path, columns: tuple[str, ...], what: str) -> None:
        self.path = path
        self.source = str(path)
        self.columns = columns
        self.what = what

    def rows(self) -> Iterator[tuple[int, dict[str, str]]]:
        try:
            f = self.path.open(newline="", encoding="utf-8")
        except OSError as e:
            raise InputError(self.source, None, f"a readable {self.what}", got=e.strerror) from e
        except ValueError:  # a NUL byte in the path
            raise InputError(self.source, None, f"a {self.what} path without NUL bytes") from None
        with f:
            reader = csv.reader(f)
            try:
                header = next(reader, None)
                if header is None:
                    raise InputError(self.source, "row 1", f"a header {','.join(self.columns)}")
                header = [h.strip() for h in header]
                if tuple(header) != self.columns:
                    raise InputError(
                        self.source,
                        "row 1",
                        f"the header {','.join(self.columns)}",
                        got=",".join(header),
                    )
                for cells in reader:
                    line = reader.line_num
                    if not cells or all(not c.strip() for c in cells):
                        continue
                    if len(cells) != len(self.columns):
                        raise InputError(
                            self.source,
                            f"row {line}",
                            f"{len(self.columns)} columns",
                            got=len(cells),
                        )
                    yield line, {k: v.strip() for k, v in zip(self.columns, cells, strict=True)}
            except UnicodeDecodeError as e:
                raise InputError(self.source, None, "UTF-8 text", got="binary data") from e
            except csv.Error as e:
                raise InputError(
                    self.source, f"row {reader.line_num}", "valid CSV", got=str(e)
                ) from e

    def fail(self, line: int, col: str, expected: str, value: str) -> InputError:
        return InputError(self.source, f"row {line}, column {col}", expected, got=value)

    def int_cell(self, line: int, row: dict[str, str], col: str, lo: int = 0) -> int:
        v = row[col]
        try:
            n = int(v) if len(v) <= 20 else lo - 1
        except ValueError:
            n = lo - 1
        if not lo <= n <= MAX_INT:
            raise self.fail(line, col, f"an integer >= {lo}", v)
        return n

    def float_cell(self, line: int, row: dict[str, str], col: str, lo: float = 0.0) -> float:
        v = row[col]
        x = parse_number(v)
        if x is None or x < lo:
            raise self.fail(line, col, f"a number >= {lo:g}", v)
        return x

    def name_cell(self, line: int, row: dict[str, str], col: str) -> str:
        v = row[col]
        if not v:
            raise self.fail(line, col, "a non-empty name", v)
        return check_text(v, source=self.source, key=f"row {line}, column {col}", max_len=256)


def _models(spec: str) -> frozenset[str]:
    return frozenset(m.strip() for m in spec.split("|") if m.strip())


def load_alibaba_nodes(path: Path, *, pool: str = "default") -> list[NodeCapacity]:
    """Nodes of an Alibaba node list; each GPU gets its model's memory (0 if unknown)."""
    r = _Reader(path, NODE_COLUMNS, "node list")
    nodes: list[NodeCapacity] = []
    seen: set[str] = set()
    for line, row in r.rows():
        name = r.name_cell(line, row, "sn")
        if name in seen:
            raise r.fail(line, "sn", "a unique node name", name)
        seen.add(name)
        n_gpu = r.int_cell(line, row, "gpu")
        model = row["model"]
        if n_gpu > 0 and not model:
            raise r.fail(line, "model", "a GPU model for a node with GPUs", model)
        slot_mem = GPU_MEM_BYTES.get(model, 0)
        gpus = tuple(GpuSlot(index=j, model=model, mem_total_bytes=slot_mem) for j in range(n_gpu))
        nodes.append(
            NodeCapacity(
                name=name,
                pool=pool,
                cpu_milli=r.int_cell(line, row, "cpu_milli"),
                mem_bytes=r.int_cell(line, row, "memory_mib") * MIB,
                gpus=gpus,
            )
        )
    if not nodes:
        raise InputError(str(path), None, "at least one node")
    return nodes


def load_alibaba_pods(path: Path) -> list[TraceJob]:
    """Jobs of an Alibaba pod list, in file order."""
    r = _Reader(path, POD_COLUMNS, "pod list")
    jobs: list[TraceJob] = []
    for line, row in r.rows():
        name = r.name_cell(line, row, "name")
        n_gpu = r.int_cell(line, row, "num_gpu")
        milli = r.int_cell(line, row, "gpu_milli")
        if n_gpu == 0:
            if milli != 0:
                raise r.fail(line, "gpu_milli", "0 when num_gpu is 0", row["gpu_milli"])
            milli = MILLI_PER_GPU
        elif n_gpu == 1:
            if not 0 < milli <= MILLI_PER_GPU:
                raise r.fail(line, "gpu_milli", "1-1000 when num_gpu is 1", row["gpu_milli"])
        elif milli != MILLI_PER_GPU:
            raise r.fail(line, "gpu_milli", "1000 when num_gpu > 1", row["gpu_milli"])
        created = r.float_cell(line, row, "creation_time")
        duration: float | None = None
        if row["scheduled_time"] and row["deletion_time"]:
            start = r.float_cell(line, row, "scheduled_time")
            end = r.float_cell(line, row, "deletion_time")
            if end < start:
                raise r.fail(
                    line, "deletion_time", "a time >= scheduled_time", row["deletion_time"]
                )
            duration = end - start
        req = ResourceRequest(
            cpu_milli=r.int_cell(line, row, "cpu_milli"),
            mem_bytes=r.int_cell(line, row, "memory_mib") * MIB,
            gpu_count=n_gpu,
            gpu_milli=milli,
            gpu_models=_models(row["gpu_spec"]),
        )
        jobs.append(TraceJob(name, req, created, duration))
    return jobs


def load_job_csv(path: Path) -> list[TraceJob]:
    """Jobs of a fleetdeck job trace CSV (see the module docstring), in file order."""
    r = _Reader(path, JOB_COLUMNS, "job trace")
    jobs: list[TraceJob] = []
    for line, row in r.rows():
        name = r.name_cell(line, row, "name")
        gpus = r.float_cell(line, row, "gpus")
        if gpus >= 1 and gpus != int(gpus):
            raise r.fail(line, "gpus", "a whole number of GPUs, or a fraction below 1", row["gpus"])
        if 0 < gpus < 1:
            milli = round(gpus * MILLI_PER_GPU)
            if milli < 1:
                raise r.fail(line, "gpus", "at least 0.001 of a GPU", row["gpus"])
            count = 1
        else:
            count, milli = int(gpus), MILLI_PER_GPU
        duration = r.float_cell(line, row, "duration_s")
        if duration <= 0:
            raise r.fail(line, "duration_s", "a number > 0", row["duration_s"])
        req = ResourceRequest(
            cpu_milli=round(r.float_cell(line, row, "cpus") * 1000),
            mem_bytes=r.int_cell(line, row, "mem_bytes"),
            gpu_count=count,
            gpu_milli=milli,
            gpu_models=_models(row["gpu_model"]),
        )
        jobs.append(
            TraceJob(
                name,
                req,
                r.float_cell(line, row, "submit_time_s"),
                duration,
                user=row["user"],
                project=row["project"],
            )
        )
    return jobs


def load_jobs(path: Path) -> list[TraceJob]:
    """A job list in either format, told apart by its header."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError, ValueError):
        return load_job_csv(path)  # raises the proper InputError
    header = tuple(h.strip() for h in first.strip().split(","))
    if header == POD_COLUMNS:
        return load_alibaba_pods(path)
    return load_job_csv(path)

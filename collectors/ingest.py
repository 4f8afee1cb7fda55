"""Buffer samples and write them to the store in batches: one Arrow table per store table per
flush, all in one transaction (a crash loses at most the unflushed interval).

Probe records (`ProbeRecord`) and the other sources' rows (`add_rows(table, [dict])`: Docker,
Slurm) go through the same path. Column types come from the store's own schema, so a row dict
may hold `ts` as epoch seconds or `datetime`, JSON columns as dicts, list columns as tuples.

GPU processes carry the host pid's container id; the buffer maps it to a fleetdeck job from
(in order) the process's own FLEETDECK_JOB_ID, `map_container`, `container_samples` rows seen
(`job_id` or the `fleetdeck.job` label) and the `job_for_container` hook.

Not thread-safe: fill and flush from one thread (the engine's loop owns the writer).
"""

from __future__ import annotations

import itertools
import json
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from collectors.errors import FleetdeckError
from collectors.models import ProbeRecord
from collectors.store.db import Store, StoreWriteError, write_failure
from collectors.store.schema import TABLES

JOB_LABEL = "fleetdeck.job"
_MAX_CONTAINER_MAP = 100_000

_ARROW_TYPES: dict[str, pa.DataType] = {
    "TIMESTAMP": pa.timestamp("us"), "VARCHAR": pa.string(), "JSON": pa.string(),
    "BIGINT": pa.int64(), "INTEGER": pa.int32(), "SMALLINT": pa.int16(),
    "DOUBLE": pa.float64(), "FLOAT": pa.float32(), "BOOLEAN": pa.bool_(),
    "VARCHAR[]": pa.list_(pa.string()), "FLOAT[]": pa.list_(pa.float32()),
    "INTEGER[]": pa.list_(pa.int32()), "DOUBLE[]": pa.list_(pa.float64()),
    "BIGINT[]": pa.list_(pa.int64()),
}

# Store columns filled from the probe's frozen samples (same names as the dataclass fields).
_PROBE_COLUMNS: dict[str, tuple[str, ...]] = {
    "node_samples": (
        "ts", "node", "uptime_s", "cpu_count", "cpu_util_pct", "per_core_util_pct", "load1",
        "load5", "load15", "mem_total_bytes", "mem_used_bytes", "mem_available_bytes",
        "swap_total_bytes", "swap_used_bytes", "net_rx_bytes", "net_tx_bytes",
    ),
    "disk_samples": ("ts", "node", "path", "used_bytes", "total_bytes"),
    "gpu_samples": (
        "ts", "node", "gpu_index", "uuid", "model", "mem_total_bytes", "mem_used_bytes",
        "util_pct", "mem_util_pct", "temp_c", "power_w", "power_limit_w", "sm_clock_mhz",
        "ecc_corrected", "ecc_uncorrected", "retired_pages", "retired_pending", "remap_failure",
        "mig_mode", "remap_pending",
    ),
    "gpu_processes": (
        "ts", "node", "gpu_index", "uuid", "pid", "gpu_mem_used_bytes", "command",
        "container_id", "job_id",
    ),
    "gpu_events": ("ts", "node", "gpu_index", "uuid", "kind", "code", "detail"),
    "job_samples": ("ts", "node", "job_id", "procs", "cpu_time_s", "cpu_util_pct", "rss_bytes",
                    "gpu_indices"),
}


class IngestError(FleetdeckError):
    """Some buffered rows could not be written; `written` has what was written anyway."""

    def __init__(self, message: str, written: Mapping[str, int]) -> None:
        super().__init__(message)
        self.written = dict(written)


def _epoch_to_us(v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        if v.tzinfo is not None:
            v = v.astimezone(UTC).replace(tzinfo=None)
        return int((v - _EPOCH).total_seconds() * 1_000_000)
    seconds = float(v)
    whole = math.floor(seconds)
    # the fraction alone times 1e6, as `datetime.fromtimestamp` rounds: ts * 1e6 would lose
    # the last microsecond to the float's precision
    return whole * 1_000_000 + round((seconds - whole) * 1_000_000)


_EPOCH = datetime(1970, 1, 1)


def _json_text(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, separators=(",", ":"), sort_keys=True, default=str)


def arrow_column(values: Sequence[Any], duckdb_type: str) -> pa.Array:
    """Values of one column as an Arrow array of the store's type."""
    t = _ARROW_TYPES.get(duckdb_type)
    if t is None:
        raise TypeError(f"no Arrow type for DuckDB type {duckdb_type}")
    if duckdb_type == "TIMESTAMP":
        if all(v.__class__ is float for v in values):  # probe samples: epoch seconds
            seconds = pa.array(values, pa.float64())
            whole = pc.floor(seconds)
            frac_us = pc.round(pc.multiply(pc.subtract(seconds, whole), 1_000_000.0))
            us = pc.add(pc.multiply(whole.cast(pa.int64()), 1_000_000), frac_us.cast(pa.int64()))
            return us.cast(t)
        return pa.array([_epoch_to_us(v) for v in values], pa.int64()).cast(t)
    if duckdb_type == "JSON":
        return pa.array([_json_text(v) for v in values], t)
    return pa.array(values, t)


def _float_lists(values: Sequence[Sequence[float]]) -> pa.Array:
    """Per-row float sequences as one Arrow list<float32> array (flat values + offsets)."""
    offsets = [0]
    flat: list[float] = []
    for v in values:
        flat.extend(v)
        offsets.append(len(flat))
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()),
                                    pa.array(flat, pa.float32()))


def job_from_labels(labels: Any) -> int | None:
    """The fleetdeck job id in a container's labels (dict or JSON text), if any."""
    if isinstance(labels, str):
        try:
            labels = json.loads(labels)
        except ValueError:
            return None
    if not isinstance(labels, Mapping):
        return None
    raw = labels.get(JOB_LABEL)
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def node_inventory(record: ProbeRecord) -> dict[str, Any]:
    """The `nodes` table's host facts from a record (for the collector's upsert)."""
    h = record.host
    models = sorted({g.model for g in record.gpus if g.model})
    return {
        "name": record.node, "hostname": h.hostname, "kernel": h.kernel,
        "cpu_model": h.cpu_model, "cpu_count": h.cpu_count,
        "mem_total_bytes": h.mem_total_bytes, "gpu_count": len(record.gpus),
        "gpu_model": ",".join(models) if models else None,
        "last_seen": datetime.fromtimestamp(record.ts, UTC).replace(tzinfo=None),
    }


class IngestBuffer:
    """Collects records and rows between flushes; `flush(store)` writes them in one batch."""

    def __init__(self, *, job_for_container: Callable[[str], int | None] | None = None) -> None:
        self._job_hook = job_for_container
        self._records: list[ProbeRecord] = []
        self._rows: dict[str, list[Mapping[str, Any]]] = {}
        self._container_jobs: dict[str, int] = {}
        self._types: dict[str, dict[str, str]] = {}
        self._types_for: int | None = None

    # -- filling ----------------------------------------------------------------------------
    def add(self, record: ProbeRecord) -> None:
        self._records.append(record)

    def add_many(self, records: Iterable[ProbeRecord]) -> None:
        self._records.extend(records)

    def add_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Rows for any store table (column name -> value); checked against the schema at
        flush. `container_samples` rows also teach the container -> job map."""
        if table not in TABLES:
            raise ValueError(f"ingest: unknown table {table!r}")
        if not rows:
            return
        self._rows.setdefault(table, []).extend(rows)
        if table == "container_samples":
            for r in rows:
                cid = r.get("container_id")
                job = r.get("job_id")
                if job is None:
                    job = job_from_labels(r.get("labels"))
                if cid and job is not None:
                    self.map_container(str(cid), int(job))

    def map_container(self, container_id: str, job_id: int | None) -> None:
        """Record (or forget, with None) the fleetdeck job a container runs."""
        self._container_jobs.pop(container_id, None)
        if job_id is not None:
            self._container_jobs[container_id] = job_id
            if len(self._container_jobs) > _MAX_CONTAINER_MAP:
                self._container_jobs.pop(next(iter(self._container_jobs)))

    def job_for_container(self, container_id: str | None) -> int | None:
        if not container_id:
            return None
        job = self._container_jobs.get(container_id)
        if job is None and self._job_hook is not None:
            job = self._job_hook(container_id)
        return job

    def pending(self) -> dict[str, int]:
        """Rows waiting per table."""
        out = {t: len(rows) for t, rows in self._rows.items() if rows}
        for table, n in (
            ("node_samples", len(self._records)),
            ("disk_samples", sum(len(r.disks) for r in self._records)),
            ("gpu_samples", sum(len(r.gpus) for r in self._records)),
            ("gpu_processes", sum(len(r.processes) for r in self._records)),
            ("gpu_events", sum(len(r.events) for r in self._records)),
            ("job_samples", sum(len(r.jobs) for r in self._records)),
        ):
            if n:
                out[table] = out.get(table, 0) + n
        return out

    def __len__(self) -> int:
        return sum(self.pending().values())

    def absorb(self, newer: IngestBuffer) -> None:
        """Append what `newer` holds after what this one holds (newer is left empty)."""
        self._records.extend(newer._records)
        for table, rows in newer._rows.items():
            self._rows.setdefault(table, []).extend(rows)
        newer._records, newer._rows = [], {}

    def trim(self, max_records: int, max_rows: int) -> int:
        """Drop the oldest records and rows beyond the bounds; how many were dropped."""
        dropped = max(0, len(self._records) - max_records)
        del self._records[:dropped]
        for rows in self._rows.values():
            over = max(0, len(rows) - max_rows)
            del rows[:over]
            dropped += over
        return dropped

    # -- writing ----------------------------------------------------------------------------
    def _schema(self, con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
        if self._types_for != id(con) or not self._types:
            rows = con.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position"
            ).fetchall()
            types: dict[str, dict[str, str]] = {}
            for table, col, dtype in rows:
                types.setdefault(str(table), {})[str(col)] = str(dtype)
            self._types, self._types_for = types, id(con)
        return self._types

    def _probe_tables(self, records: list[ProbeRecord],
                      types: Mapping[str, Mapping[str, str]]) -> dict[str, pa.Table]:
        """The records' samples as one Arrow table per store table, built column by column
        straight from the frozen samples (no row dicts; timestamps converted vectorised)."""
        def flat(field: str) -> list[Any]:
            return list(itertools.chain.from_iterable(map(operator.attrgetter(field), records)))

        sources: dict[str, list[Any]] = {
            "node_samples": list(map(operator.attrgetter("host"), records)),
            "disk_samples": flat("disks"),
            "gpu_samples": flat("gpus"),
            "gpu_processes": flat("processes"),
            "gpu_events": flat("events"),
            "job_samples": flat("jobs"),
        }
        out: dict[str, pa.Table] = {}
        for table, objs in sources.items():
            table_types = types.get(table)
            if not objs or table_types is None:
                continue
            names = _PROBE_COLUMNS[table]
            # one C-level getter per column: rows never become dicts or tuples (a tuple per
            # row costs more in the garbage collector's passes than in building it)
            columns = [list(map(operator.attrgetter(col), objs)) for col in names]
            arrays: list[pa.Array] = []
            for col, values in zip(names, columns, strict=True):
                if table == "gpu_processes" and col == "job_id":
                    values = [j if j is not None else self.job_for_container(p.container_id)
                              for j, p in zip(values, objs, strict=True)]
                if col == "per_core_util_pct":
                    arrays.append(_float_lists(values))
                elif col == "gpu_indices":  # job_samples: tuples (or None) -> INTEGER[]
                    arrays.append(arrow_column([list(v) if v else None for v in values],
                                               table_types[col]))
                else:
                    arrays.append(arrow_column(values, table_types[col]))
            out[table] = pa.Table.from_arrays(arrays, names=names)
        return out

    def _rows_table(self, table: str, types: Mapping[str, str],
                    rows: list[Mapping[str, Any]]) -> pa.Table:
        names: list[str] = []
        seen: set[str] = set()
        for r in rows:
            for k in r:
                if k not in seen:
                    if k not in types:
                        raise ValueError(f"{table}: unknown column {k!r}")
                    seen.add(k)
                    names.append(k)
        arrays = [arrow_column([r.get(col) for r in rows], types[col]) for col in names]
        return pa.Table.from_arrays(arrays, names=names)

    def _build(self, table: str, types: Mapping[str, str], probe: pa.Table | None,
               rows: list[Mapping[str, Any]]) -> pa.Table:
        parts = [t for t in (probe, self._rows_table(table, types, rows) if rows else None)
                 if t is not None]
        if len(parts) == 1:
            return parts[0]
        return pa.concat_tables(parts, promote_options="default")

    def flush(self, store: Store) -> dict[str, int]:
        """Write everything buffered: one Arrow batch per table, one transaction.

        Returns rows written per table. Rows that do not fit the schema are dropped and
        reported by an `IngestError` raised after the rest was committed.
        """
        records, self._records = self._records, []
        rows_by_table, self._rows = self._rows, {}
        schema = self._schema(store.con)
        problems: list[str] = []
        try:
            probe_tables = self._probe_tables(records, schema) if records else {}
        except (ValueError, TypeError, pa.ArrowException) as e:
            probe_tables = {}
            problems.append(f"probe samples: {e}")
        batches: dict[str, pa.Table] = {}
        for table in sorted(set(probe_tables) | set(rows_by_table)):
            types = schema.get(table)
            if types is None:
                problems.append(f"{table}: not in the store")
                continue
            try:
                batches[table] = self._build(table, types, probe_tables.get(table),
                                             list(rows_by_table.get(table, ())))
            except (ValueError, TypeError, pa.ArrowException) as e:
                problems.append(f"{table}: {e}")
        written: dict[str, int] = {}
        if batches:
            try:
                with store.transaction():
                    for table, batch in batches.items():
                        written[table] = store.append(table, batch)
            except duckdb.Error as e:
                reason = write_failure(e)
                if reason is not None:  # the disk, not the rows: keep them for the next try
                    self._records = records + self._records
                    for table, rows in rows_by_table.items():
                        self._rows[table] = [*rows, *self._rows.get(table, ())]
                    raise StoreWriteError(store.path, reason) from None
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                n = sum(b.num_rows for b in batches.values())
                raise IngestError(f"ingest: batch of {n} rows not written: {msg}", {}) from e
        if problems:
            raise IngestError("ingest: rows dropped: " + "; ".join(problems), written)
        return written

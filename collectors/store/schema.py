"""The store's schema: the one place it is documented.

Times are `TIMESTAMP` in UTC. Units are in column names (`_bytes`, `_pct`, `_w`, `_c`, `_mhz`,
`_s`, `_milli`). Sample tables are append-only and written in batches from Arrow frames; the
`*_1m` / `*_1h` rollups keep min/mean/max so reports stay honest after raw rows expire.

Migrations only move forward: `MIGRATIONS[i]` takes a store from version i to i + 1.
`SCHEMA_VERSION` is the version this code writes; a store with a higher version is refused.
"""

from __future__ import annotations

# Version 1: inventory, samples, jobs, audit.
_V1 = """
CREATE TABLE meta (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

-- One row per node fleetdeck knows (configured, Slurm-discovered or burst).
CREATE TABLE nodes (
    name            VARCHAR PRIMARY KEY,
    host            VARCHAR,
    pool            VARCHAR,
    transport       VARCHAR,            -- ssh | local | sim
    labels          JSON,
    state           VARCHAR,            -- up | degraded | unreachable | unknown
    state_reason    VARCHAR,
    cordoned        BOOLEAN DEFAULT false,
    drained_reason  VARCHAR,            -- set when health drained it
    hostname        VARCHAR,
    kernel          VARCHAR,
    cpu_model       VARCHAR,
    cpu_count       INTEGER,
    mem_total_bytes BIGINT,
    gpu_count       INTEGER,
    gpu_model       VARCHAR,
    first_seen      TIMESTAMP,
    last_seen       TIMESTAMP
);

-- Host telemetry, one row per node per interval.
CREATE TABLE node_samples (
    ts                  TIMESTAMP NOT NULL,
    node                VARCHAR NOT NULL,
    uptime_s            DOUBLE,
    cpu_count           INTEGER,
    cpu_util_pct        FLOAT,
    per_core_util_pct   FLOAT[],
    load1               FLOAT,
    load5               FLOAT,
    load15              FLOAT,
    mem_total_bytes     BIGINT,
    mem_used_bytes      BIGINT,
    mem_available_bytes BIGINT,
    swap_total_bytes    BIGINT,
    swap_used_bytes     BIGINT,
    net_rx_bytes        BIGINT,             -- counters since boot
    net_tx_bytes        BIGINT
);

-- Disk use of the paths configured per node.
CREATE TABLE disk_samples (
    ts          TIMESTAMP NOT NULL,
    node        VARCHAR NOT NULL,
    path        VARCHAR NOT NULL,
    used_bytes  BIGINT,
    total_bytes BIGINT
);

-- GPU telemetry, one row per GPU per interval. NULL where the driver does not support a field.
CREATE TABLE gpu_samples (
    ts               TIMESTAMP NOT NULL,
    node             VARCHAR NOT NULL,
    gpu_index        SMALLINT NOT NULL,
    uuid             VARCHAR,
    model            VARCHAR,
    mem_total_bytes  BIGINT,
    mem_used_bytes   BIGINT,
    util_pct         FLOAT,
    mem_util_pct     FLOAT,
    temp_c           FLOAT,
    power_w          FLOAT,
    power_limit_w    FLOAT,
    sm_clock_mhz     INTEGER,
    ecc_corrected    BIGINT,             -- volatile counts since driver load
    ecc_uncorrected  BIGINT,
    retired_pages    INTEGER,
    retired_pending  BOOLEAN,
    remap_failure    BOOLEAN,
    mig_mode         BOOLEAN
);

-- Critical GPU events (Xid and the like) as seen by the probe.
CREATE TABLE gpu_events (
    ts        TIMESTAMP NOT NULL,
    node      VARCHAR NOT NULL,
    gpu_index SMALLINT,
    uuid      VARCHAR,
    kind      VARCHAR NOT NULL,          -- xid | ecc_uncorrected | retired_pending | remap_failure
    code      BIGINT,
    detail    VARCHAR
);

-- Processes holding GPU memory, attributed to a container and a fleetdeck job when known.
CREATE TABLE gpu_processes (
    ts                 TIMESTAMP NOT NULL,
    node               VARCHAR NOT NULL,
    gpu_index          SMALLINT,
    uuid               VARCHAR,
    pid                BIGINT NOT NULL,    -- host pid
    gpu_mem_used_bytes BIGINT,
    command            VARCHAR,
    container_id       VARCHAR,
    job_id             BIGINT
);

-- Docker containers per interval.
CREATE TABLE container_samples (
    ts              TIMESTAMP NOT NULL,
    node            VARCHAR NOT NULL,
    container_id    VARCHAR NOT NULL,
    name            VARCHAR,
    image           VARCHAR,
    state           VARCHAR,
    labels          JSON,
    started_at      TIMESTAMP,
    cpu_util_pct    FLOAT,             -- of one core = 100
    mem_used_bytes  BIGINT,
    mem_limit_bytes BIGINT,
    gpu_devices     VARCHAR[],         -- device ids from DeviceRequests
    job_id          BIGINT
);

-- Slurm pools: nodes and jobs as the pool's controller reports them, one query per interval.
CREATE TABLE slurm_node_samples (
    ts             TIMESTAMP NOT NULL,
    pool           VARCHAR NOT NULL,
    node           VARCHAR NOT NULL,
    state          VARCHAR,
    partitions     VARCHAR[],
    cpus           INTEGER,
    cpus_alloc     INTEGER,
    mem_bytes      BIGINT,
    mem_alloc_bytes BIGINT,
    gpus           INTEGER,
    gpus_alloc     INTEGER,
    gres           VARCHAR
);

CREATE TABLE slurm_job_samples (
    ts          TIMESTAMP NOT NULL,
    pool        VARCHAR NOT NULL,
    slurm_id    VARCHAR NOT NULL,
    name        VARCHAR,
    user        VARCHAR,
    account     VARCHAR,
    partition   VARCHAR,
    state       VARCHAR,
    nodes       VARCHAR,
    gpus        INTEGER,
    cpus        INTEGER,
    submitted_at TIMESTAMP,
    started_at  TIMESTAMP,
    job_id      BIGINT                   -- fleetdeck job when it submitted this one
);

CREATE SEQUENCE job_id_seq START 1;

-- Jobs submitted to fleetdeck's scheduler. Array tasks are jobs with array_parent set.
CREATE TABLE jobs (
    id            BIGINT PRIMARY KEY,
    name          VARCHAR NOT NULL,
    user          VARCHAR NOT NULL,
    project       VARCHAR,
    team          VARCHAR,
    kind          VARCHAR,            -- batch | notebook | service
    executor      VARCHAR NOT NULL,   -- docker | process | slurm
    spec          JSON NOT NULL,      -- the full job spec as submitted
    -- queued | starting | running | succeeded | failed | stopped | lost
    state         VARCHAR NOT NULL,
    reason        VARCHAR,            -- pending reason or end reason
    priority      INTEGER DEFAULT 0,
    pool          VARCHAR,
    node          VARCHAR,
    gpu_indices   INTEGER[],
    gpu_count     INTEGER DEFAULT 0,
    gpu_milli     INTEGER DEFAULT 0,  -- per GPU held: 1000 whole, 250 a quarter
    gpu_model     VARCHAR,
    cpu_milli     INTEGER,
    mem_bytes     BIGINT,
    max_runtime_s DOUBLE,
    submitted_at  TIMESTAMP NOT NULL,
    started_at    TIMESTAMP,
    ended_at      TIMESTAMP,
    exit_code     INTEGER,
    external_id   VARCHAR,            -- container id, node pid, or Slurm job id
    attempt       INTEGER DEFAULT 0,
    array_parent  BIGINT,
    array_index   INTEGER,
    burst         BOOLEAN DEFAULT false
);

-- Every job state change with its reason.
CREATE TABLE job_events (
    ts         TIMESTAMP NOT NULL,
    job_id     BIGINT NOT NULL,
    from_state VARCHAR,
    to_state   VARCHAR NOT NULL,
    reason     VARCHAR,
    actor      VARCHAR
);

CREATE SEQUENCE action_id_seq START 1;

-- The audit trail: every action on a job, node or budget. One row per action.
CREATE TABLE actions (
    id          BIGINT PRIMARY KEY DEFAULT nextval('action_id_seq'),
    ts          TIMESTAMP NOT NULL,
    actor       VARCHAR NOT NULL,      -- a user name, or policy:<name>
    -- submit | stop | idle_warn | idle_stop | snooze | burst_provision | cordon | ...
    action      VARCHAR NOT NULL,
    target_kind VARCHAR NOT NULL,      -- job | node | gpu | instance | config
    target      VARCHAR NOT NULL,
    reason      VARCHAR,
    evidence    JSON,
    dry_run     BOOLEAN DEFAULT false
);
"""

# Version 2: rollups, GPU health intervals, burst instances and spend.
_V2 = """
CREATE TABLE node_samples_1m (
    ts TIMESTAMP NOT NULL, node VARCHAR NOT NULL, samples INTEGER,
    cpu_util_pct_min FLOAT, cpu_util_pct_mean FLOAT, cpu_util_pct_max FLOAT,
    mem_used_bytes_min BIGINT, mem_used_bytes_mean DOUBLE, mem_used_bytes_max BIGINT,
    mem_total_bytes BIGINT
);
CREATE TABLE node_samples_1h AS SELECT * FROM node_samples_1m WITH NO DATA;

CREATE TABLE gpu_samples_1m (
    ts TIMESTAMP NOT NULL, node VARCHAR NOT NULL, gpu_index SMALLINT NOT NULL,
    uuid VARCHAR, model VARCHAR, samples INTEGER,
    util_pct_min FLOAT, util_pct_mean FLOAT, util_pct_max FLOAT,
    mem_used_bytes_min BIGINT, mem_used_bytes_mean DOUBLE, mem_used_bytes_max BIGINT,
    mem_total_bytes BIGINT,
    power_w_min FLOAT, power_w_mean FLOAT, power_w_max FLOAT,
    temp_c_max FLOAT
);
CREATE TABLE gpu_samples_1h AS SELECT * FROM gpu_samples_1m WITH NO DATA;

-- Time a GPU was unhealthy; chargeback does not bill it. broken_until NULL while still broken.
CREATE TABLE gpu_health (
    node         VARCHAR NOT NULL,
    gpu_index    SMALLINT NOT NULL,
    uuid         VARCHAR,
    broken_from  TIMESTAMP NOT NULL,
    broken_until TIMESTAMP,
    reason       VARCHAR
);

-- Cloud instances fleetdeck provisioned.
CREATE TABLE burst_instances (
    instance_id    VARCHAR PRIMARY KEY,
    provider       VARCHAR NOT NULL,
    offer          VARCHAR,           -- the offer name from config
    instance_type  VARCHAR,
    market         VARCHAR,           -- spot | on-demand
    gpu_model      VARCHAR,
    gpu_count      INTEGER,
    node           VARCHAR,           -- fleet node name once it joined
    pool           VARCHAR,
    team           VARCHAR,
    project        VARCHAR,
    price_per_hour DOUBLE,
    state          VARCHAR,           -- provisioning | ready | terminating | terminated | lost
    launched_at    TIMESTAMP,
    ready_at       TIMESTAMP,
    terminated_at  TIMESTAMP,
    cost           DOUBLE             -- recorded when terminated (or accrued so far)
);

-- Money actually spent, as recorded per instance and period.
CREATE TABLE spend (
    ts          TIMESTAMP NOT NULL,
    provider    VARCHAR NOT NULL,
    instance_id VARCHAR,
    team        VARCHAR,
    project     VARCHAR,
    hours       DOUBLE,
    amount      DOUBLE NOT NULL
);
"""

# Version 3: burst request ids (idempotent provisioning), remap-pending GPUs, driver version.
_V3 = """
ALTER TABLE burst_instances ADD COLUMN request_id VARCHAR;
ALTER TABLE gpu_samples ADD COLUMN remap_pending BOOLEAN;
ALTER TABLE nodes ADD COLUMN driver_version VARCHAR;
"""

# Version 4: events (the outbox, written with the change they report) and their deliveries.
_V4 = """
CREATE SEQUENCE event_id_seq START 1;

-- Every event, in order; `body` is the full event (collectors.events.Event.to_json).
CREATE TABLE events (
    id      BIGINT PRIMARY KEY,
    key     VARCHAR NOT NULL,        -- idempotency key receivers see
    ts      TIMESTAMP NOT NULL,
    name    VARCHAR NOT NULL,        -- job.failed, idle.warned, ... (collectors.events)
    job_id  BIGINT,
    node    VARCHAR,
    team    VARCHAR,
    owner   VARCHAR,
    opt_in  VARCHAR[],               -- events the job's submitter asked for
    body    JSON NOT NULL
);

-- One row per event per recipient; routed from `events` by the engine's sender.
CREATE TABLE deliveries (
    event_id    BIGINT NOT NULL,
    channel     VARCHAR NOT NULL,
    address     VARCHAR NOT NULL,    -- an email address; '' for webhook and slack
    state       VARCHAR NOT NULL,    -- pending | sent | failed
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     TIMESTAMP NOT NULL,  -- not before (batching, backoff)
    message_key VARCHAR,             -- set when first tried: the message's idempotency key
    sent_at     TIMESTAMP,
    last_error  VARCHAR
);
"""

# Version 5: per-job CPU, memory and GPUs on each node, from the probe (every executor).
_V5 = """
CREATE TABLE job_samples (
    ts           TIMESTAMP NOT NULL,
    node         VARCHAR NOT NULL,
    job_id       BIGINT NOT NULL,
    procs        INTEGER,
    cpu_time_s   DOUBLE,            -- CPU seconds of the job's live processes
    cpu_util_pct FLOAT,             -- over the last interval, of one core = 100
    rss_bytes    BIGINT,
    gpu_indices  INTEGER[]          -- from CUDA_VISIBLE_DEVICES / SLURM_JOB_GPUS
);
"""

# Version 6: how often each job was preempted (requeues after a preemption are no retries).
_V6 = """
ALTER TABLE jobs ADD COLUMN preemptions INTEGER DEFAULT 0;
"""

# Version 7: stop intents, journaled before an executor is asked to stop a job, so a stop
# whose engine died midway is finished (as `stopped`, with its reason and audit) on restart.
_V7 = """
CREATE TABLE stop_intents (
    job_id       BIGINT PRIMARY KEY,
    attempt      INTEGER NOT NULL,
    actor        VARCHAR NOT NULL,
    action       VARCHAR NOT NULL,   -- stop | timeout | idle_stop | preempt ...
    reason       VARCHAR NOT NULL,
    evidence     JSON NOT NULL,
    grace_s      DOUBLE NOT NULL,
    requeue      BOOLEAN NOT NULL,   -- put back in the queue instead of `stopped`
    requested_at TIMESTAMP NOT NULL
);
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7)
SCHEMA_VERSION = len(MIGRATIONS)

# Tables listed by `fleetdeck db info`, in display order.
TABLES: tuple[str, ...] = (
    "nodes", "node_samples", "disk_samples", "gpu_samples", "gpu_events", "gpu_processes",
    "container_samples", "job_samples", "slurm_node_samples", "slurm_job_samples", "jobs",
    "job_events",
    "actions", "node_samples_1m", "node_samples_1h", "gpu_samples_1m", "gpu_samples_1h",
    "gpu_health", "burst_instances", "spend", "events", "deliveries", "stop_intents",
)

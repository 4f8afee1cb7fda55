"""fleetdeck's one typed configuration model, loaded from TOML.

Where the file comes from: `--config PATH`, then `$FLEETDECK_CONFIG`, then
`~/.config/fleetdeck/config.toml` (`$XDG_CONFIG_HOME` honoured). With no file at all fleetdeck
runs on the embedded default: this machine as the only node (local transport) and a store
under the XDG data folder.

Scalar keys of single tables can also come from the environment as
`FLEETDECK__SECTION__KEY` (e.g. `FLEETDECK__COLLECT__INTERVAL_S=2`), and a few from flags.
`Loaded.origins` says, for every key path, where its value came from.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from collectors.config_schema import doc
from collectors.errors import InputError
from collectors.notify.config import NotifyConfig
from collectors.notify.config import check as check_notify
from collectors.validate import user_path
from console.typed import build, field_paths, present_paths
from reports.rates import Rates
from scheduler.fit import POLICY_NAMES
from scheduler.policies import PoliciesConfig


def xdg_data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def xdg_config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def default_store_path() -> Path:
    return xdg_data_home() / "fleetdeck" / "fleetdeck.duckdb"


@dataclass(frozen=True, slots=True)
class StoreConfig:
    path: Path = field(
        default_factory=default_store_path,
        metadata=doc("DuckDB file holding history, jobs and the audit trail"),
    )
    memory_limit_mb: int = field(
        default=384,
        metadata=doc("DuckDB memory the engine's store may hold (MB); bigger queries spill "
                     "to disk beside the store", min=64, max=1_048_576),
    )


@dataclass(frozen=True, slots=True)
class CollectConfig:
    interval_s: float = field(
        default=5.0, metadata=doc("seconds between samples on every node", min=0.2, max=3600)
    )
    raw_retention_s: float = field(
        default=2 * 86400.0, metadata=doc("keep raw samples this long, then only rollups", min=60)
    )
    minute_retention_s: float = field(
        default=30 * 86400.0, metadata=doc("keep 1-minute rollups this long", min=3600)
    )
    hour_retention_s: float = field(
        default=5 * 365 * 86400.0, metadata=doc("keep 1-hour rollups this long", min=86400)
    )
    disk_paths: tuple[str, ...] = field(
        default=("/",), metadata=doc("paths whose disk use each node reports")
    )
    connect_timeout_s: float = field(
        default=10.0, metadata=doc("SSH connect timeout per node", min=0.5, max=600)
    )
    max_concurrent_connects: int = field(
        default=32, metadata=doc("SSH handshakes in flight at once (sshd MaxStartups)", min=1,
                                max=4096)
    )


@dataclass(frozen=True, slots=True)
class SshConfig:
    known_hosts: Path = field(
        default_factory=lambda: Path.home() / ".ssh" / "known_hosts",
        metadata=doc("host keys nodes are verified against"),
    )
    config_file: Path | None = field(
        default=None, metadata=doc("OpenSSH client config to honour (default ~/.ssh/config)")
    )
    use_agent: bool = field(default=True, metadata=doc("offer keys from ssh-agent"))
    keepalive_s: float = field(
        default=15.0, metadata=doc("keepalive interval on node connections", min=1)
    )


@dataclass(frozen=True, slots=True)
class EngineConfig:
    socket: Path | None = field(
        default=None,
        metadata=doc("control socket (default: next to the store, `<store>.sock`)"),
    )
    collect: bool = field(
        default=True, metadata=doc("collect telemetry from nodes (false: serve stored data)")
    )
    schedule: bool = field(
        default=True, metadata=doc("place and start queued jobs, run policies")
    )
    metrics_listen: str = field(
        default="",
        metadata=doc('serve Prometheus /metrics on HOST:PORT, e.g. "127.0.0.1:9464" '
                     "(empty: off)"),
    )
    max_connections: int = field(
        default=4096, metadata=doc("open control connections at most, all users", min=16,
                                   max=1_000_000))
    max_connections_per_user: int = field(
        default=256, metadata=doc("open control connections at most per user (the engine's "
                                  "owner and root are not limited)", min=4, max=1_000_000))


def _check_principals(names: tuple[str, ...]) -> None:
    for name in names:
        bare = name.removeprefix("@")
        if not bare or any(c.isspace() for c in bare) or (name == "@*"):
            raise ValueError(f"a user name, \"@group\" or \"*\" (got {name!r})")


@dataclass(frozen=True, slots=True)
class AccessConfig:
    """Who may use the engine: user names, "@group" for a Unix group, "*" for every local
    user. The engine's owner and root are always admins; empty lists: owner only."""

    admins: tuple[str, ...] = field(
        default=(), metadata=doc("everything: reload, shutdown, exports, any job"))
    operators: tuple[str, ...] = field(
        default=(), metadata=doc("cordon/uncordon, stop/snooze any job, every report, audit"))
    members: tuple[str, ...] = field(
        default=(), metadata=doc("submit as themselves; stop/snooze/logs/explain their own jobs"))
    viewers: tuple[str, ...] = field(
        default=(), metadata=doc("read only: fleet, queue, reports; no other user's logs, env "
                                 "or command lines"))

    def __post_init__(self) -> None:
        for names in (self.admins, self.operators, self.members, self.viewers):
            _check_principals(names)

    @property
    def grants_others(self) -> bool:
        return bool(self.admins or self.operators or self.members or self.viewers)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str = field(metadata=doc("unique node name", nonempty=True))
    host: str = field(default="", metadata=doc("address or ssh config alias (default: name)"))
    port: int = field(default=22, metadata=doc("SSH port", min=1, max=65535))
    user: str | None = field(default=None, metadata=doc("SSH user (default: ssh config/$USER)"))
    identity_file: Path | None = field(default=None, metadata=doc("private key file"))
    transport: Literal["ssh", "local", "sim"] = field(
        default="ssh",
        metadata=doc("ssh; local for the machine fleetdeck runs on; sim for a simulated node"),
    )
    labels: dict[str, str] = field(
        default_factory=dict, metadata=doc("free-form labels jobs can select on")
    )
    pool: str = field(default="default", metadata=doc("pool this node belongs to"))
    docker_socket: str = field(
        default="/var/run/docker.sock", metadata=doc("Docker socket path on the node")
    )
    docker_gpu_runtime: bool = field(
        default=True,
        metadata=doc("pass GPUs to containers as device requests (needs the NVIDIA runtime); "
                     "false: only NVIDIA_VISIBLE_DEVICES is set"),
    )


@dataclass(frozen=True, slots=True)
class PoolConfig:
    name: str = field(metadata=doc("pool name nodes refer to", nonempty=True))
    kind: Literal["static", "slurm", "burst"] = field(
        default="static", metadata=doc("static nodes, a Slurm cluster, or cloud burst nodes")
    )
    login_node: str | None = field(
        default=None, metadata=doc("slurm: node name (from [[nodes]]) to run Slurm commands on")
    )
    partition: str | None = field(default=None, metadata=doc("slurm: partition for jobs"))
    description: str = field(default="", metadata=doc("shown in the console"))


@dataclass(frozen=True, slots=True)
class UserConfig:
    name: str = field(metadata=doc("login name", nonempty=True))
    team: str | None = field(default=None, metadata=doc("team the user belongs to"))
    projects: tuple[str, ...] = field(default=(), metadata=doc("projects the user works on"))
    default_project: str | None = field(
        default=None, metadata=doc("project jobs are charged to when none is given")
    )
    gpu_quota: float | None = field(
        default=None, metadata=doc("GPUs the user may hold at once", min=0)
    )
    email: str = field(default="", metadata=doc('where notifications to "owner" reach the user'))
    notify: tuple[str, ...] = field(
        default=(), metadata=doc("opt-in events the user is told of: job.succeeded, job.failed")
    )


@dataclass(frozen=True, slots=True)
class ProjectConfig:
    name: str = field(metadata=doc("project name", nonempty=True))
    team: str | None = field(default=None, metadata=doc("team that owns the project"))
    gpu_quota: float | None = field(
        default=None, metadata=doc("GPUs the project may hold at once", min=0)
    )
    gpu_guaranteed: float = field(
        default=0.0, metadata=doc("GPUs reserved for the project when it asks", min=0)
    )


@dataclass(frozen=True, slots=True)
class TeamConfig:
    name: str = field(metadata=doc("team name", nonempty=True))
    gpu_quota: float | None = field(
        default=None, metadata=doc("GPUs the team may hold at once", min=0)
    )
    gpu_guaranteed: float = field(
        default=0.0, metadata=doc("GPUs reserved for the team when it asks", min=0)
    )


@dataclass(frozen=True, slots=True)
class PriorityClassConfig:
    name: str = field(metadata=doc("class name jobs ask for (submit --class)", nonempty=True))
    priority: int = field(
        default=0, metadata=doc("higher classes go first and may preempt lower ones",
                                min=-1_000_000, max=1_000_000)
    )
    preemptible: bool = field(default=True, metadata=doc("jobs of the class may be preempted"))
    default: bool = field(default=False, metadata=doc("the class of jobs that name none"))


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    policy: str = field(default="fleetdeck",
                        metadata=doc("GPU placement policy", choices=POLICY_NAMES))
    backfill: bool = field(default=True, metadata=doc("let short jobs run ahead of a blocked head"))
    borrowing: bool = field(
        default=True, metadata=doc("let quota holders borrow idle, unguaranteed GPUs")
    )
    cycle_s: float = field(default=1.0, metadata=doc("seconds between placement cycles", min=0.05))
    preemption: bool = field(
        default=False,
        metadata=doc("lend idle guarantees and reclaim them by preemption; let higher priority "
                     "classes preempt lower ones"),
    )
    preempt_grace_s: float = field(
        default=60.0, metadata=doc("notice a preempted job gets before the forced kill",
                                   min=0, max=86400)
    )
    min_runtime_before_preempt_s: float = field(
        default=300.0, metadata=doc("no job is preempted before it ran this long",
                                    min=0, max=30 * 86400)
    )
    max_preemptions_per_job: int = field(
        default=3, metadata=doc("then the job is no longer preempted", min=0, max=1000)
    )
    fair_share_half_life_s: float = field(
        default=7 * 86400.0,
        metadata=doc("GPU use this long ago counts half in the fair-share order",
                     min=60, max=365 * 86400),
    )
    priority_classes: tuple[PriorityClassConfig, ...] = field(
        default=(), metadata=doc("named priority classes (default: one class, batch)")
    )


@dataclass(frozen=True, slots=True)
class Config:
    store: StoreConfig = field(default_factory=StoreConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    ssh: SshConfig = field(default_factory=SshConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    nodes: tuple[NodeConfig, ...] = ()
    pools: tuple[PoolConfig, ...] = ()
    users: tuple[UserConfig, ...] = ()
    projects: tuple[ProjectConfig, ...] = ()
    teams: tuple[TeamConfig, ...] = ()
    policies: PoliciesConfig = field(default_factory=PoliciesConfig)
    rates: Rates = field(default_factory=Rates)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    access: AccessConfig = field(default_factory=AccessConfig)

    @property
    def socket_path(self) -> Path:
        if self.engine.socket is not None:
            return self.engine.socket
        return self.store.path.with_name(self.store.path.name + ".sock")


SINGLE_SECTIONS = ("store", "collect", "ssh", "engine", "scheduler")
# [policies.*] tables are too deep for FLEETDECK__SECTION__KEY; set them in the file.
ENV_PREFIX = "FLEETDECK__"


@dataclass(frozen=True, slots=True)
class Loaded:
    """A config and where it came from."""

    config: Config
    source: str  # the file, or "embedded default"
    origins: Mapping[str, str]  # key path -> default | file | env NAME | flag --NAME
    embedded: bool


def locate(explicit: str | None) -> Path | None:
    """The config file to read, or None for the embedded default."""
    if explicit:
        return user_path(explicit, source="--config")
    env = os.environ.get("FLEETDECK_CONFIG")
    if env:
        return user_path(env, source="environment FLEETDECK_CONFIG")
    default = xdg_config_home() / "fleetdeck" / "config.toml"
    return default if default.exists() else None


def load(explicit: str | None = None, *,
         flags: Mapping[str, tuple[str, Any]] | None = None) -> Loaded:
    """Load, validate and finish the config. Raises InputError (exit 2) on bad input.

    `flags` maps key paths to (flag name, value) for command-line overrides.
    """
    path = locate(explicit)
    data: dict[str, Any] = {}
    source = "embedded default"
    if path is not None:
        source = explicit or str(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise InputError(str(path), None, "a readable config file (not found)") from None
        except OSError as e:
            raise InputError(str(path), None, f"a readable config file ({e.strerror})") from None
        except ValueError:  # a NUL byte in the path
            raise InputError(str(path), None, "a config file path without NUL bytes") from None
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise InputError(str(path), None, "UTF-8 text") from None
        except tomllib.TOMLDecodeError as e:
            raise InputError(str(path), None, f"valid TOML ({e})") from None
        except ValueError:  # an integer beyond Python's digit limit
            raise InputError(str(path), None, "valid TOML (a number there is absurdly long)"
                             ) from None
    origins = {p: "default" for p in field_paths(Config)}
    for key in present_paths(Config, data):
        origins[key] = "file"
    _apply_env(data, origins, source)
    for key, (flag, value) in (flags or {}).items():
        if value is None:
            continue
        section, name = key.split(".", 1)
        data.setdefault(section, {})[name] = value
        origins[key] = f"flag {flag}"
    try:
        config = build(Config, data, source=source)
    except InputError as e:
        origin = origins.get(e.key or "", "")
        if not origin.startswith(("env ", "flag ")):
            raise
        # name the variable or flag the bad value came from, not the file
        raise InputError(origin.split(" ", 1)[1], e.key, e.expected, got=e.got,
                         has_got=e.has_got) from None
    _check_references(config, source)
    embedded = not config.nodes
    if embedded:
        config = dataclasses.replace(config, nodes=(embedded_node(),))
    return Loaded(config=config, source=source, origins=origins, embedded=embedded)


def embedded_node() -> NodeConfig:
    """This machine, collected without SSH."""
    return NodeConfig(name=socket.gethostname() or "localhost", host="localhost",
                      transport="local", pool="local")


def _apply_env(data: dict[str, Any], origins: dict[str, str], source: str) -> None:
    for name, raw in os.environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX):].lower().split("__")
        if len(parts) != 2 or parts[0] not in SINGLE_SECTIONS:
            raise InputError(f"environment {name}", None,
                             "FLEETDECK__<SECTION>__<KEY> with SECTION one of "
                             + ", ".join(SINGLE_SECTIONS))
        section, key = parts
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except (tomllib.TOMLDecodeError, ValueError):
            value = raw  # bare strings need no quotes
        data.setdefault(section, {})[key] = value
        origins[f"{section}.{key}"] = f"env {name}"


def _check_references(config: Config, source: str) -> None:
    seen: dict[str, int] = {}
    for i, node in enumerate(config.nodes):
        if node.name in seen:
            raise InputError(source, f"nodes[{i}].name",
                             f'a unique node name (nodes[{seen[node.name]}] is also "{node.name}")',
                             got=node.name)
        seen[node.name] = i
    pool_names = {p.name for p in config.pools}
    named: dict[str, list[str]] = {
        "pools": [p.name for p in config.pools], "users": [u.name for u in config.users],
        "projects": [p.name for p in config.projects], "teams": [t.name for t in config.teams],
    }
    for kind, item_names in named.items():
        names: set[str] = set()
        for i, name in enumerate(item_names):
            if name in names:
                raise InputError(source, f"{kind}[{i}].name", f"a unique {kind[:-1]} name",
                                 got=name)
            names.add(name)
    for i, pool in enumerate(config.pools):
        if pool.kind == "slurm" and pool.login_node is None:
            raise InputError(source, f"pools[{i}].login_node",
                             "a node name for a slurm pool's login node")
        if pool.login_node is not None and pool.login_node not in seen:
            raise InputError(source, f"pools[{i}].login_node",
                             "the name of a node in [[nodes]]", got=pool.login_node)
    if config.pools:
        for i, node in enumerate(config.nodes):
            if node.pool not in pool_names and node.pool != "default":
                raise InputError(source, f"nodes[{i}].pool",
                                 "the name of a pool in [[pools]]", got=node.pool)
    classes = config.scheduler.priority_classes
    class_names: set[str] = set()
    for i, pc in enumerate(classes):
        if pc.name in class_names:
            raise InputError(source, f"scheduler.priority_classes[{i}].name",
                             "a unique priority class name", got=pc.name)
        class_names.add(pc.name)
    defaults = [i for i, pc in enumerate(classes) if pc.default]
    if len(defaults) > 1:
        raise InputError(source, f"scheduler.priority_classes[{defaults[1]}].default",
                         "at most one default priority class", got=True)
    team_names = {t.name for t in config.teams}
    project_names = {p.name for p in config.projects}
    for i, u in enumerate(config.users):
        if team_names and u.team is not None and u.team not in team_names:
            raise InputError(source, f"users[{i}].team", "the name of a team in [[teams]]",
                             got=u.team)
        for j, pr in enumerate(u.projects):
            if project_names and pr not in project_names:
                raise InputError(source, f"users[{i}].projects[{j}]",
                                 "the name of a project in [[projects]]", got=pr)
    for i, p in enumerate(config.projects):
        if team_names and p.team is not None and p.team not in team_names:
            raise InputError(source, f"projects[{i}].team", "the name of a team in [[teams]]",
                             got=p.team)
    _check_notify(config, source)


def _check_notify(config: Config, source: str) -> None:
    for i, u in enumerate(config.users):
        if u.email and "@" not in u.email:
            raise InputError(source, f"users[{i}].email", "an email address", got=u.email)
        for j, name in enumerate(u.notify):
            if name not in ("job.succeeded", "job.failed", "job."):
                raise InputError(source, f"users[{i}].notify[{j}]",
                                 'job.succeeded, job.failed or "job."', got=name)
    check_notify(config.notify, [u.name for u in config.users], source)
    listen = config.engine.metrics_listen
    if listen and parse_listen(listen) is None:
        raise InputError(source, "engine.metrics_listen", 'HOST:PORT like "127.0.0.1:9464"',
                         got=listen)


def parse_listen(text: str) -> tuple[str, int] | None:
    """("127.0.0.1", 9464) from "127.0.0.1:9464" ("[::1]:9464" for IPv6), None if invalid."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return None
    return host, int(port)

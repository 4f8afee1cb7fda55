"""Job specifications: what a user submits, validated once, stored as JSON.

`JobSpec.from_mapping(data, source)` parses a TOML job file (source: the file name) or CLI flags
(source: "command line", with `flags=CLI_FLAGS` so errors name `--gpus` instead of `gpus`).
Human units are accepted: memory "16GiB", "512M" (binary), "16GB" (decimal) or bytes;
durations "2h", "30m", "1h30m", "2:00:00" or seconds. Every problem is an `InputError` naming
the key, e.g. `job.toml: gpus: expected 0, a whole number of GPUs, or ..., got 1.5`.

`to_dict`/`from_dict` round-trip through JSON (field names, bytes and seconds).
`expand_array` turns an array job into its tasks.
"""

from __future__ import annotations

import difflib
import math
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from collectors.errors import InputError
from collectors.validate import MAX_INT, MAX_TEXT_LEN, check_text, parse_number
from scheduler.models import MILLI_PER_GPU, ResourceRequest

EXECUTORS = ("docker", "process", "slurm", "auto")
KINDS = ("batch", "notebook", "service")
ARRAY_INDEX_ENV = "FLEETDECK_ARRAY_INDEX"
ARRAY_COUNT_ENV = "FLEETDECK_ARRAY_COUNT"
RESERVED_ENV_PREFIX = "FLEETDECK_"
MAX_ARRAY = 100_000
SECRET_MASK = "<secret>"
MAX_DURATION_S = 10 * 366 * 86400.0  # ten years: longer is a typo

# Keys of a job file / CLI mapping, in the order they are checked.
JOB_KEYS: tuple[str, ...] = (
    "name", "user", "project", "team", "shell", "command", "executor", "image", "gpus",
    "gpu_models", "min_gpu_mem", "cpus", "mem", "labels", "pool", "node", "priority",
    "max_runtime", "env", "workdir", "retries", "array", "kind", "protect", "notify", "class",
    "secret_env",
)  # fmt: skip
# How errors name keys given on the command line (`fleetdeck submit`).
CLI_FLAGS: Mapping[str, str] = {
    **{k: "--" + k.replace("_", "-") for k in JOB_KEYS},
    "gpu_models": "--gpu-model",
    "labels": "--label",
    "command": "COMMAND",
}
# JSON (field) names that differ from the human keys.
_DICT_KEYS = {
    "mem_bytes": "mem",
    "min_gpu_mem_bytes": "min_gpu_mem",
    "max_runtime_s": "max_runtime",
    "priority_class": "class",
}

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_IDENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@-]{0,63}")
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
_BYTES_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:([kmgtp])(i)?)?(b)?", re.IGNORECASE)
_DUR_RE = re.compile(r"(?:\d+(?:\.\d+)?\s*[dhms]\s*)+", re.IGNORECASE)
_DUR_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])", re.IGNORECASE)
_CLOCK_RE = re.compile(r"(?:(\d+):)?(\d+):(\d{2})")
_UNIT_POW = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_DUR_S = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}

BYTES_EXPECTED = 'a size like "16GiB", "512M" or a number of bytes'
DURATION_EXPECTED = ('a duration like "2h", "30m", "1h30m", "2:00:00" or seconds > 0'
                     " (at most ten years)")
GPUS_EXPECTED = "0, a whole number of GPUs, or a fraction of one GPU (e.g. 0.25)"


def parse_bytes(value: object) -> int | None:
    """Bytes from an int or "16GiB"/"16Gi"/"16G" (binary), "16GB" (decimal); None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= MAX_INT else None
    if not isinstance(value, str) or len(value) > 64:
        return None
    m = _BYTES_RE.fullmatch(value.strip())
    if m is None:
        return None
    number, unit, binary, b = m.groups()
    if unit is None:
        if "." in number or int(number) > MAX_INT:
            return None
        return int(number)
    base = 1024 if binary or not b else 1000
    n = float(number) * base ** _UNIT_POW[unit.lower()]
    return round(n) if n <= MAX_INT else None


def parse_duration(value: object) -> float | None:
    """Seconds from a number or "2h", "30m", "1h30m", "90s", "1d", "2:00:00"; None if invalid
    or not positive."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if isinstance(value, int) and abs(value) > MAX_INT:
            return None
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > 64:
            return None
        if _DUR_RE.fullmatch(text):
            seconds = sum(float(n) * _DUR_S[u.lower()] for n, u in _DUR_PART.findall(text))
        elif (m := _CLOCK_RE.fullmatch(text)) is not None:
            h, mins, secs = m.groups()
            seconds = int(h or 0) * 3600.0 + int(mins) * 60.0 + int(secs)
        else:
            number = parse_number(text)
            if number is None:
                return None
            seconds = number
    else:
        return None
    return seconds if 0 < seconds <= MAX_DURATION_S else None


def _gpus_ok(g: float) -> bool:
    if g == 0:
        return True
    if 0 < g < 1:
        return round(g * MILLI_PER_GPU) >= 1
    return g >= 1 and g == int(g)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A validated job. `command` is argv, or one shell string when `shell` is true."""

    name: str
    command: tuple[str, ...]
    shell: bool = False
    user: str = ""
    project: str = ""
    team: str = ""
    executor: str = "auto"
    image: str | None = None
    gpus: float = 0.0  # whole GPUs (1, 2, ...) or a share of one (0 < gpus < 1)
    gpu_models: frozenset[str] = frozenset()
    min_gpu_mem_bytes: int = 0
    cpus: float = 1.0
    mem_bytes: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    pool: str | None = None
    node: str | None = None
    priority: int = 0
    max_runtime_s: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    retries: int = 0
    array: int = 1
    kind: str = "batch"
    protect: bool = False
    notify: tuple[str, ...] = ()  # events the owner wants told (job.succeeded, job.failed)
    priority_class: str | None = None  # `class` in job files; None: the default class
    # passed to the job like env; shown only to its owner and admins (`redacted`)
    secret_env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.command:
            raise ValueError("empty command")
        if not _gpus_ok(self.gpus):
            raise ValueError(f"invalid GPU amount {self.gpus}")
        if self.executor not in EXECUTORS or self.kind not in KINDS:
            raise ValueError(f"invalid executor {self.executor!r} or kind {self.kind!r}")
        if not 1 <= self.array <= MAX_ARRAY:
            raise ValueError(f"invalid array size {self.array}")

    # ---- derived ------------------------------------------------------------------------

    @property
    def gpu_milli(self) -> int:
        """Total milli-GPU asked for."""
        return round(self.gpus * MILLI_PER_GPU)

    def to_request(self) -> ResourceRequest:
        """The resources one task of this job needs (a share of a GPU: gpu_count 1)."""
        g = self.gpus
        if 0 < g < 1:
            count, milli = 1, round(g * MILLI_PER_GPU)
        else:
            count, milli = int(g), MILLI_PER_GPU
        return ResourceRequest(
            cpu_milli=max(1, round(self.cpus * 1000)),
            mem_bytes=self.mem_bytes,
            gpu_count=count,
            gpu_milli=milli,
            gpu_models=self.gpu_models if count else frozenset(),
            min_gpu_mem_bytes=self.min_gpu_mem_bytes if count else 0,
            pool=self.pool,
            node=self.node,
            labels=dict(self.labels),
        )

    def with_defaults(
        self, *, user: str | None = None, project: str | None = None, team: str | None = None
    ) -> JobSpec:
        """Fill user/project/team left empty (from the caller's identity and membership)."""
        return replace(
            self,
            user=self.user or user or "",
            project=self.project or project or "",
            team=self.team or team or "",
        )

    # ---- parsing ------------------------------------------------------------------------

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], source: str, *, flags: Mapping[str, str] | None = None
    ) -> JobSpec:
        """Validate a job file's table or CLI values. `None` values count as absent (unset
        flags). With `flags` (e.g. `CLI_FLAGS`), errors name keys by their flag."""
        return _Parser(source, flags).parse(data)

    @classmethod
    def from_toml(cls, text: str, source: str) -> JobSpec:
        """Parse a TOML job file's text (the caller reads the file)."""
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise InputError(source, None, f"valid TOML ({err})") from None
        return cls.from_mapping(data, source)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of all fields (bytes and seconds, sorted GPU models)."""
        return {
            "name": self.name,
            "command": list(self.command),
            "shell": self.shell,
            "user": self.user,
            "project": self.project,
            "team": self.team,
            "executor": self.executor,
            "image": self.image,
            "gpus": self.gpus,
            "gpu_models": sorted(self.gpu_models),
            "min_gpu_mem_bytes": self.min_gpu_mem_bytes,
            "cpus": self.cpus,
            "mem_bytes": self.mem_bytes,
            "labels": dict(self.labels),
            "pool": self.pool,
            "node": self.node,
            "priority": self.priority,
            "max_runtime_s": self.max_runtime_s,
            "env": dict(self.env),
            "workdir": self.workdir,
            "retries": self.retries,
            "array": self.array,
            "kind": self.kind,
            "protect": self.protect,
            "notify": list(self.notify),
            "priority_class": self.priority_class,
            **({"secret_env": dict(self.secret_env)} if self.secret_env else {}),
        }

    def redacted(self) -> JobSpec:
        """This spec with each secret value replaced by SECRET_MASK (names stay visible)."""
        if not self.secret_env:
            return self
        return replace(self, secret_env={k: SECRET_MASK for k in self.secret_env})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "stored job spec") -> JobSpec:
        """Inverse of `to_dict`, validated like a job file."""
        human: dict[str, Any] = {}
        for k, v in data.items():
            if k in ("mem", "min_gpu_mem", "max_runtime"):
                raise InputError(source, k, "a stored field name", got=k)
            human[_DICT_KEYS.get(k, k)] = v
        return _Parser(source, None, dict_keys=True).parse(human)


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task of a job: `index` in 0..count-1, command and env with the index filled in."""

    spec: JobSpec
    index: int
    command: tuple[str, ...]
    env: Mapping[str, str]

    @property
    def name(self) -> str:
        return f"{self.spec.name}[{self.index}]" if self.spec.array > 1 else self.spec.name

    def to_request(self) -> ResourceRequest:
        return self.spec.to_request()


def expand_array(spec: JobSpec) -> list[TaskSpec]:
    """The job's tasks: `array` of them (1 for a plain job). Each gets env
    FLEETDECK_ARRAY_INDEX / FLEETDECK_ARRAY_COUNT, and `${FLEETDECK_ARRAY_INDEX}` (and
    `${FLEETDECK_ARRAY_COUNT}`) in the command replaced by the values."""
    count = spec.array
    idx_token, count_token = "${" + ARRAY_INDEX_ENV + "}", "${" + ARRAY_COUNT_ENV + "}"
    uses = any(idx_token in arg or count_token in arg for arg in spec.command)
    out = []
    for i in range(count):
        env = {**spec.env, ARRAY_INDEX_ENV: str(i), ARRAY_COUNT_ENV: str(count)}
        cmd = spec.command
        if uses:
            cmd = tuple(a.replace(idx_token, str(i)).replace(count_token, str(count)) for a in cmd)
        out.append(TaskSpec(spec, i, cmd, env))
    return out


# ---- validation ---------------------------------------------------------------------------


class _Parser:
    def __init__(
        self, source: str, flags: Mapping[str, str] | None, *, dict_keys: bool = False
    ) -> None:
        self.source = source
        self.flags = flags
        self.dict_keys = dict_keys  # name keys by their stored (JSON) names

    def key(self, k: str, sub: str | None = None) -> str:
        if self.flags is not None:
            return self.flags.get(k, "--" + k.replace("_", "-"))
        if self.dict_keys:
            k = {v: f for f, v in _DICT_KEYS.items()}.get(k, k)
        return f"{k}.{sub}" if sub is not None else k

    def fail(self, k: str, expected: str, got: object = None, sub: str | None = None) -> InputError:
        return InputError(self.source, self.key(k, sub), expected, got=got)

    def parse(self, data: Mapping[str, Any]) -> JobSpec:
        if not isinstance(data, Mapping):
            raise InputError(self.source, None, "a table of job keys", got=data)
        for k in data:
            if k not in JOB_KEYS:
                raise self._unknown(str(k))
        d = {k: v for k, v in data.items() if v is not None}
        out: dict[str, Any] = {}
        shell = self.boolean("shell", d.get("shell", False))
        if "command" not in d:
            raise InputError(self.source, self.key("command"), "a command to run")
        command = self.command(d["command"], shell)
        out["name"] = self.name(d["name"]) if "name" in d else _default_name(command, shell)
        for k in ("user", "project", "team"):
            if d.get(k, "") != "":  # empty: filled in later by `with_defaults`
                out[k] = self.ident(k, d[k])
        out["executor"] = self.choice("executor", d.get("executor", "auto"), EXECUTORS)
        if "image" in d:
            out["image"] = self.text("image", d["image"], no_space=True)
        gpus = self.gpus(d["gpus"]) if "gpus" in d else 0.0
        for k, field_name, conv in (
            ("gpu_models", "gpu_models", self.models),
            ("min_gpu_mem", "min_gpu_mem_bytes", self.size),
        ):
            if k in d and d[k] not in ([], (), "", 0):
                if gpus == 0:
                    raise self.fail(k, f"only with {self.key('gpus')} > 0", d[k])
                out[field_name] = conv(k, d[k])
        out["cpus"] = self.cpus(d["cpus"]) if "cpus" in d else 1.0
        if "mem" in d:
            out["mem_bytes"] = self.size("mem", d["mem"])
        if "labels" in d:
            out["labels"] = self.pairs("labels", d["labels"], _LABEL_RE, "a label KEY=VALUE")
        for k in ("pool", "node"):
            if k in d:
                out[k] = self.ident(k, d[k])
        if "priority" in d:
            out["priority"] = self.integer("priority", d["priority"], -1_000_000, 1_000_000)
        if "max_runtime" in d:
            seconds = parse_duration(d["max_runtime"])
            if seconds is None:
                raise self.fail("max_runtime", DURATION_EXPECTED, d["max_runtime"])
            out["max_runtime_s"] = seconds
        if "env" in d:
            out["env"] = self.env(d["env"])
        if "secret_env" in d:
            out["secret_env"] = self.env(d["secret_env"], "secret_env")
            both = sorted(set(out["secret_env"]) & set(out.get("env", {})))
            if both:
                raise self.fail("secret_env", "names not also given in env", both[0])
        if "workdir" in d:
            out["workdir"] = self.workdir(d["workdir"])
        if "retries" in d:
            out["retries"] = self.integer("retries", d["retries"], 0, 100)
        if "array" in d:
            out["array"] = self.integer("array", d["array"], 1, MAX_ARRAY)
        out["kind"] = self.choice("kind", d.get("kind", "batch"), KINDS)
        if "protect" in d:
            out["protect"] = self.boolean("protect", d["protect"])
        if d.get("notify"):
            out["notify"] = self.notify(d["notify"])
        if "class" in d:
            out["priority_class"] = self.ident("class", d["class"])
        executor, image = out["executor"], out.get("image")
        if executor == "docker" and image is None:
            raise self.fail("image", 'an image name (executor "docker" runs in a container)')
        if executor == "process" and image is not None:
            raise self.fail("image", 'no image with executor "process" (use docker or auto)', image)
        return JobSpec(command=command, shell=shell, gpus=gpus, **out)

    def _unknown(self, k: str) -> InputError:
        close = difflib.get_close_matches(k, JOB_KEYS, n=1)
        if self.flags is not None:
            return InputError(self.source, k, "a job option", has_got=False)
        hint = f"a job key (did you mean {close[0]}?)" if close else "one of " + ", ".join(JOB_KEYS)
        return InputError(self.source, k, hint)

    # ---- field converters -----------------------------------------------------------------
    def notify(self, v: object) -> tuple[str, ...]:
        """Event names the owner opts in to (`job.failed`, or a list; `job.` for both)."""
        from collectors.events import OPT_IN, matches

        items = v.split(",") if isinstance(v, str) else v
        names = sorted(str(n) for n in OPT_IN)
        expected = "event names to be told of: " + ", ".join(names) + ' or "job."'
        if not isinstance(items, list | tuple) or not items:
            raise self.fail("notify", expected, v)
        out: list[str] = []
        for item in items:
            text = item.strip() if isinstance(item, str) else item
            if not isinstance(text, str) or not any(matches(n, (text,)) for n in names):
                raise self.fail("notify", expected, item)
            out.append(text)
        return tuple(dict.fromkeys(out))


    def text(self, k: str, v: object, *, no_space: bool = False) -> str:
        if not isinstance(v, str) or not v.strip() or (no_space and any(c.isspace() for c in v)):
            raise self.fail(k, "a non-empty string" + (" without spaces" if no_space else ""), v)
        return self.bounded(k, v)

    def bounded(self, k: str, v: str) -> str:
        """Text of a bounded length without NUL bytes (it ends up in argv and env)."""
        return check_text(v, source=self.source, key=self.key(k), max_len=MAX_TEXT_LEN)

    def name(self, v: object) -> str:
        if not isinstance(v, str) or not _NAME_RE.fullmatch(v):
            raise self.fail("name", "a name of letters, digits, '.', '_', '-' (max 64)", v)
        return v

    def ident(self, k: str, v: object) -> str:
        if not isinstance(v, str) or not _IDENT_RE.fullmatch(v):
            raise self.fail(k, "a name of letters, digits, '.', '_', '@', '-' (max 64)", v)
        return v

    def choice(self, k: str, v: object, options: tuple[str, ...]) -> str:
        if not isinstance(v, str) or v not in options:
            raise self.fail(k, "one of " + ", ".join(options), v)
        return v

    def boolean(self, k: str, v: object) -> bool:
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.lower() in ("true", "false", "yes", "no", "1", "0"):
            return v.lower() in ("true", "yes", "1")
        raise self.fail(k, "true or false", v)

    def number(self, k: str, v: object, expected: str) -> float:
        if isinstance(v, bool):
            raise self.fail(k, expected, v)
        if isinstance(v, int) and abs(v) <= MAX_INT:
            return float(v)
        if isinstance(v, float) and math.isfinite(v):
            return v
        if isinstance(v, str) and (x := parse_number(v)) is not None:
            return x
        raise self.fail(k, expected, v)

    def integer(self, k: str, v: object, lo: int, hi: int) -> int:
        expected = f"an integer {lo}..{hi}"
        x = self.number(k, v, expected)
        if x != int(x) or not lo <= x <= hi or isinstance(v, float):
            raise self.fail(k, expected, v)
        return int(x)

    def gpus(self, v: object) -> float:
        g = self.number("gpus", v, GPUS_EXPECTED)
        if not _gpus_ok(g) or g > 1024:
            raise self.fail("gpus", GPUS_EXPECTED, v)
        return g

    def cpus(self, v: object) -> float:
        expected = "a number of CPUs > 0 (e.g. 4 or 0.5)"
        c = self.number("cpus", v, expected)
        if not 0 < c <= 100_000 or round(c * 1000) < 1:
            raise self.fail("cpus", expected, v)
        return c

    def size(self, k: str, v: object) -> int:
        n = parse_bytes(v)
        if n is None:
            raise self.fail(k, BYTES_EXPECTED, v)
        return n

    def models(self, k: str, v: object) -> frozenset[str]:
        items = v.split(",") if isinstance(v, str) else v
        if not isinstance(items, list | tuple | set | frozenset) or not items:
            raise self.fail(k, 'GPU model names ("A100" or a list)', v)
        out = set()
        for item in items:
            if not isinstance(item, str) or not item.strip():
                raise self.fail(k, "non-empty GPU model names", item)
            out.add(self.bounded(k, item.strip()))
        return frozenset(out)

    def pairs(
        self, k: str, v: object, key_re: re.Pattern[str], what: str,
        check: Callable[[str], None] | None = None,
    ) -> dict[str, str]:  # fmt: skip
        if isinstance(v, str):
            v = [p for p in v.split(",") if p.strip()] if k == "labels" else [v]
        if isinstance(v, list | tuple):
            table: dict[str, object] = {}
            for item in v:
                if not isinstance(item, str) or "=" not in item:
                    raise self.fail(k, f"{what} (KEY=VALUE)", item)
                name, _, value = item.partition("=")
                table[name.strip()] = value
            v = table
        if not isinstance(v, Mapping):
            raise self.fail(k, f"a table of {what}s", v)
        out: dict[str, str] = {}
        for name, value in v.items():
            if not isinstance(name, str) or not key_re.fullmatch(name):
                raise self.fail(k, f"{what} with a valid KEY", name)
            if check is not None:
                check(name)
            if isinstance(value, bool):
                value = "true" if value else "false"
            if not isinstance(value, str | int | float):
                raise self.fail(k, "a string value", value, sub=name)
            if isinstance(value, float) and not math.isfinite(value):
                raise self.fail(k, "a finite number or a string", value, sub=name)
            out[name] = self.bounded(k, str(value))
        return out

    def env(self, v: object, key: str = "env") -> dict[str, str]:
        def check(name: str) -> None:
            if name.startswith(RESERVED_ENV_PREFIX):
                raise self.fail(key, f"a variable not starting with {RESERVED_ENV_PREFIX}"
                                " (reserved)", name)  # fmt: skip

        return self.pairs(key, v, _ENV_RE, "an environment variable", check)

    def workdir(self, v: object) -> str:
        if not isinstance(v, str) or not (v.startswith("/") or v.startswith("~")):
            raise self.fail("workdir", "an absolute path (or one starting with ~)", v)
        return self.bounded("workdir", v)

    def command(self, v: object, shell: bool) -> tuple[str, ...]:
        if isinstance(v, list | tuple) and len(v) > 10_000:
            raise self.fail("command", "at most 10000 arguments", v)
        for arg in v if isinstance(v, list | tuple) else [v]:
            if isinstance(arg, str):
                self.bounded("command", arg)
        if isinstance(v, str):
            if not v.strip():
                raise self.fail("command", "a non-empty command", v)
            if shell:
                return (v,)
            try:
                args = shlex.split(v)
            except ValueError:
                raise self.fail("command", "a command line with balanced quotes", v) from None
            return tuple(args)
        if isinstance(v, list | tuple) and v and all(isinstance(a, str) for a in v) and v[0]:
            return (" ".join(v),) if shell else tuple(v)
        raise self.fail("command", "a command: a list of strings or one string", v)


_SHELL_WORDS = frozenset({"do", "then", "else", "fi", "done", "esac", "{", "}", "(", ")", "!",
                          "time", "exec", "env", "nohup", "nice"})
# a segment starting so is a loop header or a condition, not the job's program
_SHELL_SKIP = frozenset({"for", "case", "select", "function", "if", "elif", "while", "until"})


def _shell_program(line: str) -> str:
    """The first program a shell line runs: `for i in 1 2; do python t.py; done` -> python."""
    for segment in re.split(r"[;&|\n]+", line):
        words = segment.split()
        if not words or words[0] in _SHELL_SKIP:
            continue
        for word in words:
            if word in _SHELL_WORDS or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", word):
                continue
            return word
    return line.split()[0] if line.split() else ""


def _default_name(command: tuple[str, ...], shell: bool) -> str:
    first = _shell_program(command[0]) if shell else command[0]
    base = first.rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9._-]", "-", base).lstrip("._-")[:64]
    return name or "job"

"""Fake NVML: a C library (`libnvidia-ml.so.1`) that real pynvml loads, fed by a state file.

`build()` compiles fake_nvml.c + state.c into `<repo>/.bed/lib/` when stale and returns that
directory.
A process sees the fake GPUs when its environment has `LD_LIBRARY_PATH=<lib dir>` and
`FAKE_NVML_STATE=<state file>`; `FakeNvml.env` gives both. The library re-reads the state file
whenever it changes, so `FakeNvml.set(...)` is visible to an already running process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).parent
SOURCES = (HERE / "fake_nvml.c", HERE / "state.c", HERE / "fake_nvml.h")  # hashed in this order
C_FILES = SOURCES[:2]
LIB_DIR = REPO_ROOT / ".bed" / "lib"
LIB_NAME = "libnvidia-ml.so.1"
STAMP_NAME = "fake_nvml.sha256"  # sha256 of the SOURCES the library was built from
GCC_FLAGS = ("-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-fvisibility=hidden")

# Event type bits (nvmlEventType*).
EVENT_SINGLE_BIT_ECC = 0x1
EVENT_DOUBLE_BIT_ECC = 0x2
EVENT_PSTATE = 0x4
EVENT_XID = 0x8

# NVML error names accepted in `errors` / `init_error` (NVML_ERROR_<NAME>).
ERROR_CODES: dict[str, int] = {
    "UNINITIALIZED": 1, "INVALID_ARGUMENT": 2, "NOT_SUPPORTED": 3, "NO_PERMISSION": 4,
    "ALREADY_INITIALIZED": 5, "NOT_FOUND": 6, "INSUFFICIENT_SIZE": 7, "INSUFFICIENT_POWER": 8,
    "DRIVER_NOT_LOADED": 9, "TIMEOUT": 10, "IRQ_ISSUE": 11, "LIBRARY_NOT_FOUND": 12,
    "FUNCTION_NOT_FOUND": 13, "CORRUPTED_INFOROM": 14, "GPU_IS_LOST": 15, "RESET_REQUIRED": 16,
    "OPERATING_SYSTEM": 17, "LIB_RM_VERSION_MISMATCH": 18, "IN_USE": 19, "MEMORY": 20,
    "NO_DATA": 21, "VGPU_ECC_NOT_SUPPORTED": 22, "INSUFFICIENT_RESOURCES": 23,
    "FREQ_NOT_SUPPORTED": 24, "ARGUMENT_VERSION_MISMATCH": 25, "DEPRECATED": 26,
    "NOT_READY": 27, "GPU_NOT_FOUND": 28, "INVALID_STATE": 29, "RESET_TYPE_NOT_SUPPORTED": 30,
    "UNKNOWN": 999,
}

# Areas whose calls can be made to fail: area -> NVML functions affected.
ERROR_AREAS: dict[str, str] = {
    "handle": "GetHandleByIndex/UUID/Serial/PciBusId, GetIndex",
    "name": "GetName", "uuid": "GetUUID", "serial": "GetSerial", "pci": "GetPciInfo_v3",
    "memory": "GetMemoryInfo, GetMemoryInfo_v2", "utilization": "GetUtilizationRates",
    "temperature": "GetTemperature, GetTemperatureV, GetTemperatureThreshold",
    "power": "GetPowerUsage",
    "power_limit": "GetEnforcedPowerLimit, GetPowerManagementLimit, ...DefaultLimit",
    "energy": "GetTotalEnergyConsumption",
    "clock": "GetClockInfo, GetMaxClockInfo, GetClock", "fan": "GetFanSpeed",
    "pstate": "GetPerformanceState, GetPowerState",
    "throttle": "GetCurrentClocksEventReasons / ThrottleReasons",
    "ecc": "GetTotalEccErrors, GetMemoryErrorCounter", "ecc_mode": "GetEccMode",
    "retired_pages": "GetRetiredPages(_v2)", "retired_pending": "GetRetiredPagesPendingStatus",
    "remapped_rows": "GetRemappedRows", "mig_mode": "GetMigMode",
    "processes": "GetComputeRunningProcesses(_v2/_v3)",
    "graphics_processes": "GetGraphicsRunningProcesses(_v2/_v3)",
    "events": "GetSupportedEventTypes, RegisterEvents",
    "compute_capability": "GetCudaComputeCapability", "architecture": "GetArchitecture",
    "brand": "GetBrand", "persistence": "GetPersistenceMode", "compute_mode": "GetComputeMode",
    "minor": "GetMinorNumber",
}

GIB = 1024**3


@dataclass(frozen=True, slots=True)
class FakeGpu:
    """One fake GPU. Empty uuid/serial/pci_bus_id are derived from the GPU's index."""

    name: str = "NVIDIA A100-SXM4-80GB"
    uuid: str = ""
    serial: str = ""
    pci_bus_id: str = ""
    mem_total_bytes: int = 80 * GIB
    mem_used_bytes: int = 0
    mem_reserved_bytes: int = 0
    util_pct: int = 0
    mem_util_pct: int = 0
    temp_c: int = 35
    temp_slowdown_c: int = 90
    temp_shutdown_c: int = 95
    power_w: float = 60.0
    power_limit_w: float = 400.0
    power_default_limit_w: float | None = None  # None: same as power_limit_w
    energy_mj: int = 0
    sm_clock_mhz: int = 1410
    mem_clock_mhz: int = 1593
    video_clock_mhz: int = 1275
    max_sm_clock_mhz: int = 1410
    max_mem_clock_mhz: int = 1593
    fan_pct: int = 0
    pstate: int = 0
    throttle_reasons: int = 0
    ecc_enabled: bool = True
    ecc_corrected: int = 0  # volatile counters
    ecc_uncorrected: int = 0
    ecc_corrected_aggregate: int | None = None  # None: same as the volatile counter
    ecc_uncorrected_aggregate: int | None = None
    retired_pages_sbe: int = 0  # pages retired for multiple single-bit errors
    retired_pages_dbe: int = 0  # pages retired for double-bit errors
    retired_pending: bool = False
    remapped_rows_corrected: int = 0
    remapped_rows_uncorrected: int = 0
    remap_pending: bool = False
    remap_failure: bool = False
    mig_mode: bool = False
    persistence_mode: bool = True
    compute_mode: int = 0
    brand: int = 14  # NVML_BRAND_NVIDIA
    architecture: int = 7  # NVML_DEVICE_ARCH_AMPERE
    cuda_capability: tuple[int, int] = (8, 0)
    processes: tuple[tuple[int, int], ...] = ()  # compute: (pid, used_gpu_mem_bytes)
    graphics_processes: tuple[tuple[int, int], ...] = ()
    errors: Mapping[str, str] = field(default_factory=dict)  # area -> NVML error name

    def derived(self, index: int) -> FakeGpu:
        """This GPU with identity fields filled in from `index` where left empty."""
        return dataclasses.replace(
            self,
            uuid=self.uuid or f"GPU-fdbed000-0000-4000-8000-{index:012x}",
            serial=self.serial or f"FD{index:011d}",
            pci_bus_id=self.pci_bus_id or f"00000000:{0x10 + index:02X}:00.0",
        )


@dataclass(frozen=True, slots=True)
class FakeEvent:
    seq: int
    gpu_index: int
    event_type: int = EVENT_XID
    data: int = 0  # the Xid number for EVENT_XID


@dataclass(frozen=True, slots=True)
class FakeNvmlState:
    """Everything one node's NVML reports. `init_error` makes nvmlInit fail with that error."""

    gpus: tuple[FakeGpu, ...] = ()
    init_error: str | None = None
    driver_version: str = "550.54.15"
    nvml_version: str = "12.550.54.15"
    cuda_driver_version: int = 12040
    events: tuple[FakeEvent, ...] = ()
    event_replay: bool = True  # True: a new event set also sees events queued before it


FakeGpuState = FakeNvmlState  # the name used in the bed brief


def as_state(value: FakeNvmlState | Sequence[FakeGpu]) -> FakeNvmlState:
    if isinstance(value, FakeNvmlState):
        return value
    return FakeNvmlState(gpus=tuple(value))


def _check_error(name: str, where: str) -> None:
    if name not in ERROR_CODES:
        raise ValueError(
            f"{where}: unknown NVML error {name!r}; expected one of {sorted(ERROR_CODES)}"
        )


def _clean(value: object, where: str) -> str:
    text = str(value)
    if "\n" in text or "\r" in text:
        raise ValueError(f"{where}: value must be one line, got {text!r}")
    return text


def render_state(state: FakeNvmlState) -> str:
    """The state file text the C library parses."""
    lines: list[str] = [f"gpu_count={len(state.gpus)}"]
    if state.init_error is not None:
        _check_error(state.init_error, "init_error")
        lines.append(f"init_error={state.init_error}")
    lines += [
        f"driver_version={_clean(state.driver_version, 'driver_version')}",
        f"nvml_version={_clean(state.nvml_version, 'nvml_version')}",
        f"cuda_driver_version={int(state.cuda_driver_version)}",
        f"event_replay={int(state.event_replay)}",
    ]
    for index, raw in enumerate(state.gpus):
        gpu = raw.derived(index)
        p = f"gpu.{index}."
        bus = gpu.pci_bus_id.split(":")
        values: dict[str, object] = {
            "name": gpu.name, "uuid": gpu.uuid, "serial": gpu.serial,
            "pci_bus_id": gpu.pci_bus_id,
            "pci_domain": int(bus[0], 16) if len(bus) == 3 else 0,
            "pci_bus": int(bus[1], 16) if len(bus) == 3 else 0,
            "pci_device": int(bus[2].split(".")[0], 16) if len(bus) == 3 else 0,
            "pci_device_id": 0x20B210DE, "pci_subsystem_id": 0x147F10DE,
            "mem_total_bytes": gpu.mem_total_bytes, "mem_used_bytes": gpu.mem_used_bytes,
            "mem_reserved_bytes": gpu.mem_reserved_bytes,
            "util_pct": gpu.util_pct, "mem_util_pct": gpu.mem_util_pct, "temp_c": gpu.temp_c,
            "temp_slowdown_c": gpu.temp_slowdown_c, "temp_shutdown_c": gpu.temp_shutdown_c,
            "power_mw": round(gpu.power_w * 1000),
            "power_limit_mw": round(gpu.power_limit_w * 1000),
            "power_default_limit_mw": round(
                (gpu.power_default_limit_w if gpu.power_default_limit_w is not None
                 else gpu.power_limit_w) * 1000
            ),
            "energy_mj": gpu.energy_mj,
            "graphics_clock_mhz": gpu.sm_clock_mhz, "sm_clock_mhz": gpu.sm_clock_mhz,
            "mem_clock_mhz": gpu.mem_clock_mhz, "video_clock_mhz": gpu.video_clock_mhz,
            "max_sm_clock_mhz": gpu.max_sm_clock_mhz, "max_mem_clock_mhz": gpu.max_mem_clock_mhz,
            "fan_pct": gpu.fan_pct, "pstate": gpu.pstate,
            "throttle_reasons": gpu.throttle_reasons, "ecc_enabled": int(gpu.ecc_enabled),
            "ecc_corrected": gpu.ecc_corrected, "ecc_uncorrected": gpu.ecc_uncorrected,
            "ecc_corrected_aggregate": gpu.ecc_corrected
            if gpu.ecc_corrected_aggregate is None else gpu.ecc_corrected_aggregate,
            "ecc_uncorrected_aggregate": gpu.ecc_uncorrected
            if gpu.ecc_uncorrected_aggregate is None else gpu.ecc_uncorrected_aggregate,
            "retired_pages_sbe": gpu.retired_pages_sbe, "retired_pages_dbe": gpu.retired_pages_dbe,
            "retired_pending": int(gpu.retired_pending),
            "remapped_rows_corrected": gpu.remapped_rows_corrected,
            "remapped_rows_uncorrected": gpu.remapped_rows_uncorrected,
            "remap_pending": int(gpu.remap_pending), "remap_failure": int(gpu.remap_failure),
            "mig_mode": int(gpu.mig_mode), "mig_mode_pending": int(gpu.mig_mode),
            "persistence_mode": int(gpu.persistence_mode), "compute_mode": gpu.compute_mode,
            "minor_number": index, "brand": gpu.brand, "architecture": gpu.architecture,
            "cc_major": gpu.cuda_capability[0], "cc_minor": gpu.cuda_capability[1],
        }
        lines += [f"{p}{key}={_clean(value, p + key)}" for key, value in values.items()]
        for k, (pid, used) in enumerate(gpu.processes):
            lines.append(f"{p}proc.{k}={int(pid)},{int(used)}")
        for k, (pid, used) in enumerate(gpu.graphics_processes):
            lines.append(f"{p}gproc.{k}={int(pid)},{int(used)}")
        for area, error in gpu.errors.items():
            if area not in ERROR_AREAS:
                raise ValueError(
                    f"{p}errors: unknown area {area!r}; expected one of {sorted(ERROR_AREAS)}"
                )
            _check_error(error, f"{p}errors[{area}]")
            lines.append(f"{p}error.{area}={error}")
    for event in state.events:
        lines.append(f"event.{event.seq}={event.gpu_index},{event.event_type},{event.data}")
    return "\n".join(lines) + "\n"


def write_state(path: Path, gpus: FakeNvmlState | Sequence[FakeGpu], **overrides: Any) -> None:
    """Atomically write the state file. `overrides` replace FakeNvmlState fields."""
    state = as_state(gpus)
    if overrides:
        state = dataclasses.replace(state, **overrides)
    text = render_state(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".nvml-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp = Path(name)
    tmp.chmod(0o644)
    tmp.replace(path)  # a new inode: the library notices even within one mtime tick


def build(lib_dir: Path = LIB_DIR) -> Path:
    """Compile the fake library into `lib_dir` unless it was built from this source."""
    lib = lib_dir / LIB_NAME
    stamp = lib_dir / STAMP_NAME
    digest = hashlib.sha256(b"".join(src.read_bytes() for src in SOURCES)).hexdigest()
    if lib.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return lib_dir
    lib_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".libnvml-", suffix=".so", dir=lib_dir)
    os.close(fd)
    tmp = Path(name)
    try:
        result = subprocess.run(
            ["gcc", *GCC_FLAGS, "-o", str(tmp), *map(str, C_FILES), "-lpthread"],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"building the fake NVML failed:\n{result.stderr}")
        tmp.chmod(0o755)
        tmp.replace(lib)
        stamp.write_text(digest + "\n")
    finally:
        tmp.unlink(missing_ok=True)
    return lib_dir


class FakeNvml:
    """Handle on one fake NVML state file; changes are written through immediately."""

    def __init__(self, state_path: Path, lib_dir: Path, state: FakeNvmlState) -> None:
        self.state_path = state_path
        self.lib_dir = lib_dir
        self._state = state
        self._next_seq = max((e.seq for e in state.events), default=0) + 1
        write_state(state_path, state)

    @property
    def state(self) -> FakeNvmlState:
        return self._state

    @property
    def env(self) -> dict[str, str]:
        return {"LD_LIBRARY_PATH": str(self.lib_dir), "FAKE_NVML_STATE": str(self.state_path)}

    def replace(self, state: FakeNvmlState | Sequence[FakeGpu], **overrides: Any) -> None:
        """Swap the whole state (GPU list and/or global fields)."""
        new = as_state(state)
        if overrides:
            new = dataclasses.replace(new, **overrides)
        self._write(new)

    def set(self, gpu_index: int | None = None, **changes: Any) -> None:
        """Change fields of GPU `gpu_index` (FakeGpu fields), or global fields when None."""
        if gpu_index is None:
            self._write(dataclasses.replace(self._state, **changes))
            return
        gpus = list(self._state.gpus)
        gpus[gpu_index] = dataclasses.replace(gpus[gpu_index], **changes)
        self._write(dataclasses.replace(self._state, gpus=tuple(gpus)))

    def add_event(self, gpu_index: int, event_type: int = EVENT_XID, data: int = 0) -> int:
        """Queue an NVML event (e.g. an Xid); returns its sequence number."""
        event = FakeEvent(self._next_seq, gpu_index, event_type, data)
        self._next_seq += 1
        self._write(dataclasses.replace(self._state, events=(*self._state.events, event)))
        return event.seq

    def xid(self, gpu_index: int, xid: int) -> int:
        return self.add_event(gpu_index, EVENT_XID, xid)

    def clear_events(self) -> None:
        self._write(dataclasses.replace(self._state, events=()))

    def _write(self, state: FakeNvmlState) -> None:
        write_state(self.state_path, state)
        self._state = state


__all__ = [
    "ERROR_AREAS", "ERROR_CODES", "EVENT_DOUBLE_BIT_ECC", "EVENT_PSTATE", "EVENT_SINGLE_BIT_ECC",
    "EVENT_XID", "GIB", "LIB_DIR", "LIB_NAME", "FakeEvent", "FakeGpu", "FakeGpuState", "FakeNvml",
    "FakeNvmlState", "as_state", "build", "render_state", "write_state",
]

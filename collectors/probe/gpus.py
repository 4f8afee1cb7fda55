"""GPU readers that run on the node: NVML through pynvml, else `nvidia-smi` CSV, else none.

Shipped to nodes inside the probe bundle: standard library + the bundled `pynvml` only,
Python 3.6 syntax. Every query is guarded: a field the driver does not support becomes None
(nvitop-style), an unexpected error becomes a one-line note, nothing raises out of `read`.

NVML calls used (the fake libnvidia-ml in tests/bed must export these symbols):
nvmlInitWithFlags, nvmlShutdown, nvmlErrorString, nvmlSystemGetDriverVersion,
nvmlDeviceGetCount_v2, nvmlDeviceGetHandleByIndex_v2, nvmlDeviceGetUUID, nvmlDeviceGetName,
nvmlDeviceGetMemoryInfo, nvmlDeviceGetUtilizationRates, nvmlDeviceGetTemperature,
nvmlDeviceGetPowerUsage, nvmlDeviceGetEnforcedPowerLimit, nvmlDeviceGetClockInfo,
nvmlDeviceGetTotalEccErrors, nvmlDeviceGetRetiredPages, nvmlDeviceGetRetiredPagesPendingStatus,
nvmlDeviceGetRemappedRows, nvmlDeviceGetMigMode, nvmlDeviceGetComputeRunningProcesses_v3
(else _v2), nvmlDeviceGetGraphicsRunningProcesses_v3 (else _v2), nvmlEventSetCreate,
nvmlDeviceGetSupportedEventTypes, nvmlDeviceRegisterEvents, nvmlEventSetWait_v2,
nvmlEventSetFree, nvmlDeviceGetIndex (only for an event on an unknown handle).
"""
# Runs on nodes with Python >= 3.6: typing generics, os.path, no zip(strict=).
# ruff: noqa: UP006, UP035, UP045, PTH113, PTH118

import ctypes
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from collectors.parsers import nvidia_smi, procfs

Row = Dict[str, Any]

NVML_RETRY_S = 60.0  # retry NVML init this often while it fails (driver loaded later)
_MAX_EVENTS = 64  # per sample, so an event storm cannot stall the probe
_SMI_TIMEOUT_S = 10.0


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def attribute(pid: int, proc_root: str = "/proc") -> Tuple[Optional[str], Optional[int],
                                                            Optional[str]]:
    """(container id, fleetdeck job id, command) of a host pid; None where unreadable."""
    base = f"{proc_root}/{pid}"
    container = job = command = None
    try:
        with open(base + "/cgroup") as f:
            container = procfs.container_id_from_cgroup(f.read())
    except OSError:
        pass
    try:
        with open(base + "/environ", "rb") as f:
            job = procfs.job_id_from_environ(f.read())
    except OSError:
        pass
    try:
        with open(base + "/cmdline", "rb") as f:
            command = procfs.command_from_cmdline(f.read())
        if command is None:
            with open(base + "/comm") as f:
                command = f.read().strip() or None
    except OSError:
        pass
    return container, job, command


class _Notes:
    """Per-GPU error notes, grouped so a lost GPU gives one line, not twenty."""

    def __init__(self) -> None:
        self.by_gpu = {}  # type: Dict[int, Dict[str, List[str]]]

    def add(self, index: int, field: str, message: str) -> None:
        self.by_gpu.setdefault(index, {}).setdefault(message, []).append(field)

    def lines(self) -> List[str]:
        out = []
        for index in sorted(self.by_gpu):
            for message, fields in self.by_gpu[index].items():
                out.append(f"gpu{index}: {message} ({', '.join(fields)})")
        return out


class NvmlGpus:
    """Reads GPUs through the pynvml module (the bundled copy on a node)."""

    source = "nvml"

    def __init__(self, nv: Any) -> None:
        self.nv = nv
        self.handles = []  # type: List[Any]
        self.static = {}  # type: Dict[int, Tuple[Optional[str], Optional[str]]]
        self.addr_to_index = {}  # type: Dict[int, int]
        self.evset = None  # type: Any
        self.driver_version = None  # type: Optional[str]
        self.quiet = (nv.NVML_ERROR_NOT_SUPPORTED, nv.NVML_ERROR_FUNCTION_NOT_FOUND)
        self.setup_notes = []  # type: List[str]

    def open(self) -> None:
        """nvmlInit and device discovery; raises the NVMLError when NVML is unusable."""
        nv = self.nv
        nv.nvmlInit()
        try:
            self.driver_version = _text(nv.nvmlSystemGetDriverVersion())
        except nv.NVMLError:
            self.driver_version = None
        count = nv.nvmlDeviceGetCount()
        self.handles = []
        for i in range(count):
            try:
                h = nv.nvmlDeviceGetHandleByIndex(i)
            except nv.NVMLError as e:
                self.setup_notes.append(f"gpu{i}: no handle: {e}")
                h = None
            self.handles.append(h)
            if h is not None:
                self.addr_to_index[ctypes.cast(h, ctypes.c_void_p).value or 0] = i
        self._setup_events()

    def _setup_events(self) -> None:
        nv = self.nv
        want = nv.nvmlEventTypeXidCriticalError | nv.nvmlEventTypeDoubleBitEccError
        try:
            self.evset = nv.nvmlEventSetCreate()
        except nv.NVMLError:
            self.evset = None  # events not visible here (not supported, or no permission)
            return
        registered = 0
        for h in self.handles:
            if h is None:
                continue
            try:
                mask = nv.nvmlDeviceGetSupportedEventTypes(h) & want
            except nv.NVMLError:
                mask = want
            if not mask:
                continue
            try:
                nv.nvmlDeviceRegisterEvents(h, mask, self.evset)
                registered += 1
            except nv.NVMLError:
                continue
        if not registered:
            self._free_events()

    def _free_events(self) -> None:
        if self.evset is not None:
            try:
                self.nv.nvmlEventSetFree(self.evset)
            except self.nv.NVMLError:
                pass
            self.evset = None

    def close(self) -> None:
        self._free_events()
        try:
            self.nv.nvmlShutdown()
        except Exception:
            pass

    def _q(self, notes: _Notes, index: int, field: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self.nv.NVMLError as e:
            if getattr(e, "value", None) not in self.quiet:
                notes.add(index, field, str(e))
        except Exception as e:  # a binding or ctypes surprise must not kill the probe
            notes.add(index, field, f"{type(e).__name__}: {e}")
        return None

    def read(self) -> Tuple[List[Row], List[Row], List[Row], List[str]]:
        nv = self.nv
        notes = _Notes()
        gpus = []  # type: List[Row]
        procs = []  # type: List[Row]
        for i, h in enumerate(self.handles):
            if h is None:
                gpus.append(_empty_gpu(i))
                continue
            q = self._q
            if i not in self.static:
                uuid = q(notes, i, "uuid", nv.nvmlDeviceGetUUID, h)
                name = q(notes, i, "model", nv.nvmlDeviceGetName, h)
                if uuid is not None and name is not None:
                    self.static[i] = (_text(uuid), _text(name))
                else:
                    uuid = _text(uuid) if uuid is not None else None
                    name = _text(name) if name is not None else None
            if i in self.static:
                uuid, name = self.static[i]
            mem = q(notes, i, "mem", nv.nvmlDeviceGetMemoryInfo, h)
            util = q(notes, i, "util", nv.nvmlDeviceGetUtilizationRates, h)
            power_mw = q(notes, i, "power_w", nv.nvmlDeviceGetPowerUsage, h)
            limit_mw = q(notes, i, "power_limit_w", nv.nvmlDeviceGetEnforcedPowerLimit, h)
            sbe = q(notes, i, "retired_pages", nv.nvmlDeviceGetRetiredPages, h,
                    nv.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS)
            dbe = q(notes, i, "retired_pages", nv.nvmlDeviceGetRetiredPages, h,
                    nv.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)
            pending = q(notes, i, "retired_pending",
                        nv.nvmlDeviceGetRetiredPagesPendingStatus, h)
            remap = q(notes, i, "remap_failure", nv.nvmlDeviceGetRemappedRows, h)
            mig = q(notes, i, "mig_mode", nv.nvmlDeviceGetMigMode, h)
            gpus.append({
                "index": i,
                "uuid": uuid,
                "model": name,
                "mem_total_bytes": int(mem.total) if mem is not None else None,
                "mem_used_bytes": int(mem.used) if mem is not None else None,
                "util_pct": float(util.gpu) if util is not None else None,
                "mem_util_pct": float(util.memory) if util is not None else None,
                "temp_c": _float(q(notes, i, "temp_c", nv.nvmlDeviceGetTemperature, h,
                                   nv.NVML_TEMPERATURE_GPU)),
                "power_w": power_mw / 1000.0 if power_mw is not None else None,
                "power_limit_w": limit_mw / 1000.0 if limit_mw is not None else None,
                "sm_clock_mhz": q(notes, i, "sm_clock_mhz", nv.nvmlDeviceGetClockInfo, h,
                                  nv.NVML_CLOCK_SM),
                "ecc_corrected": q(notes, i, "ecc_corrected", nv.nvmlDeviceGetTotalEccErrors,
                                   h, nv.NVML_MEMORY_ERROR_TYPE_CORRECTED,
                                   nv.NVML_VOLATILE_ECC),
                "ecc_uncorrected": q(notes, i, "ecc_uncorrected",
                                     nv.nvmlDeviceGetTotalEccErrors, h,
                                     nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                                     nv.NVML_VOLATILE_ECC),
                "retired_pages": (len(sbe or ()) + len(dbe or ())
                                  if sbe is not None or dbe is not None else None),
                "retired_pending": bool(pending) if pending is not None else None,
                "remap_failure": bool(remap[3]) if remap is not None else None,
                "mig_mode": bool(mig[0]) if mig is not None else None,
                "remap_pending": bool(remap[2]) if remap is not None else None,
            })
            procs.extend(self._processes(notes, i, uuid, h))
        events = self._poll_events(notes)
        return gpus, procs, events, self.setup_notes + notes.lines()

    def _processes(self, notes: _Notes, index: int, uuid: Optional[str], h: Any) -> List[Row]:
        nv = self.nv
        seen = {}  # type: Dict[int, Row]
        for kind in ("Compute", "Graphics"):
            found = None
            for suffix in ("_v3", "_v2"):
                fn = getattr(nv, f"nvmlDeviceGet{kind}RunningProcesses{suffix}", None)
                if fn is None:
                    continue
                try:
                    found = fn(h)
                    break
                except nv.NVMLError as e:
                    if getattr(e, "value", None) == nv.NVML_ERROR_FUNCTION_NOT_FOUND:
                        continue
                    if getattr(e, "value", None) != nv.NVML_ERROR_NOT_SUPPORTED:
                        notes.add(index, kind.lower() + "_processes", str(e))
                    break
            for p in found or ():
                pid = int(p.pid)
                used = p.usedGpuMemory
                if pid in seen:
                    continue
                seen[pid] = {"gpu_index": index, "uuid": uuid, "pid": pid,
                             "gpu_mem_used_bytes": int(used) if used is not None else None}
        return list(seen.values())

    def _poll_events(self, notes: _Notes) -> List[Row]:
        if self.evset is None:
            return []
        nv = self.nv
        events = []  # type: List[Row]
        for _ in range(_MAX_EVENTS):
            try:
                data = nv.nvmlEventSetWait_v2(self.evset, 0)
            except nv.NVMLError as e:
                if getattr(e, "value", None) != nv.NVML_ERROR_TIMEOUT:
                    notes.add(-1, "events", str(e))
                break
            index = self.addr_to_index.get(ctypes.cast(data.device, ctypes.c_void_p).value or 0)
            if index is None:
                try:
                    index = nv.nvmlDeviceGetIndex(data.device)
                except nv.NVMLError:
                    index = None
            uuid = self.static.get(index, (None, None))[0] if index is not None else None
            if data.eventType & nv.nvmlEventTypeXidCriticalError:
                events.append({"gpu_index": index, "uuid": uuid, "kind": "xid",
                               "code": int(data.eventData),
                               "detail": f"Xid {data.eventData}"})
            elif data.eventType & nv.nvmlEventTypeDoubleBitEccError:
                events.append({"gpu_index": index, "uuid": uuid, "kind": "ecc_uncorrected",
                               "code": None, "detail": "NVML double-bit ECC event"})
        return events


class SmiGpus:
    """Reads GPUs by running `nvidia-smi --query-gpu` (the fallback when NVML won't load)."""

    source = "nvidia-smi"

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.driver_version = None  # type: Optional[str]

    def _run(self, args: List[str]) -> str:
        import subprocess  # only here: nodes with NVML never pay for the import

        proc = subprocess.Popen([self.binary, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True)
        try:
            out, err = proc.communicate(timeout=_SMI_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise RuntimeError(f"nvidia-smi timed out after {_SMI_TIMEOUT_S:.0f} s") from None
        if proc.returncode != 0:
            msg = (err or out).strip().splitlines()
            raise RuntimeError(f"nvidia-smi exit {proc.returncode}: "
                               f"{msg[0] if msg else 'no output'}")
        return out

    def open(self) -> None:
        self._run(nvidia_smi.QUERY_GPU_ARGS)  # fails like read would: let the chooser decide
        try:
            out = self._run(["--query-gpu=driver_version", "--format=csv,noheader"])
            self.driver_version = out.strip().splitlines()[0].strip() or None
        except (RuntimeError, IndexError, OSError):
            self.driver_version = None

    def close(self) -> None:
        pass

    def read(self) -> Tuple[List[Row], List[Row], List[Row], List[str]]:
        errors = []  # type: List[str]
        gpus = nvidia_smi.parse_query_gpu(self._run(nvidia_smi.QUERY_GPU_ARGS))
        by_uuid = {g["uuid"]: g["index"] for g in gpus if g["uuid"]}
        procs = []  # type: List[Row]
        try:
            for p in nvidia_smi.parse_query_apps(self._run(nvidia_smi.QUERY_APPS_ARGS)):
                p["gpu_index"] = by_uuid.get(p["uuid"])
                procs.append(p)
        except (RuntimeError, ValueError, OSError) as e:
            errors.append(f"nvidia-smi processes: {e}")
        return gpus, procs, [], errors


def _float(value: Any) -> Optional[float]:
    return float(value) if value is not None else None


def _empty_gpu(index: int) -> Row:
    row = {f: None for _, f in nvidia_smi.GPU_FIELDS if not f.startswith("_")}  # type: Row
    row.update(index=index, retired_pages=None, remap_failure=None, remap_pending=None)
    return row


def nvml_present() -> bool:
    """Whether libnvidia-ml opens here, as pynvml would load it (cheap: no pynvml needed)."""
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def _which(name: str) -> Optional[str]:
    for d in [*os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep), "/usr/bin"]:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


class GpuReader:
    """Picks NVML, else nvidia-smi, else none; retries while GPUs seem present but unreadable.

    Also turns state changes into events: new uncorrected ECC errors, retired pages pending,
    remap failure (a condition already true when the probe starts counts as new).
    """

    def __init__(self, pynvml: Any, proc_root: str = "/proc") -> None:
        self.pynvml = pynvml
        self.proc_root = proc_root
        self.impl = None  # type: Any
        self.source = "none"
        self.last_try = None  # type: Optional[float]
        self.failure = []  # type: List[str]
        self.prev = {}  # type: Dict[str, Tuple[Any, Any, Any]]
        self.load_error = None  # type: Optional[str]
        # builds the bundled pynvml when first needed (see nvml); None: nothing to build
        self.pynvml_loader: Optional[Callable[[], Any]] = None

    def nvml(self) -> Any:
        """The pynvml module, built on first need and only where libnvidia-ml opens:
        compiling the bundled pynvml is most of the probe's start-up, wasted on CPU nodes."""
        if self.pynvml is None and self.pynvml_loader is not None and nvml_present():
            loader, self.pynvml_loader = self.pynvml_loader, None
            try:
                self.pynvml = loader()
            except Exception as e:  # e.g. a Python too old for the bundled pynvml
                self.load_error = ("nvml: bundled pynvml failed to load: "
                                   f"{type(e).__name__}: {e}")
        return self.pynvml

    def _choose(self) -> None:
        self.failure = []
        if self.nvml() is not None:
            nvml = NvmlGpus(self.pynvml)
            try:
                nvml.open()
                self.impl, self.source = nvml, nvml.source
                return
            except self.pynvml.NVMLError as e:
                if getattr(e, "value", None) != self.pynvml.NVML_ERROR_LIBRARY_NOT_FOUND:
                    self.failure.append(f"nvml: {e}")  # a GPU node whose NVML is unusable
                nvml.close()
            except Exception as e:
                self.failure.append(f"nvml: {type(e).__name__}: {e}")
        elif self.pynvml_loader is None:  # pending loader: no libnvidia-ml here, as not found
            self.failure.append(self.load_error or "nvml: pynvml not bundled")
        smi = _which("nvidia-smi")
        if smi is not None:
            impl = SmiGpus(smi)
            try:
                impl.open()
                self.impl, self.source = impl, impl.source
                self.failure = []
                return
            except (RuntimeError, OSError, ValueError) as e:
                self.failure.append(f"nvidia-smi: {e}")
        self.impl, self.source = None, "none"

    def read(self, ts: float) -> Dict[str, Any]:
        now = time.monotonic()
        if self.impl is None and (self.last_try is None or now - self.last_try >= NVML_RETRY_S):
            self.last_try = now
            self._choose()
        if self.impl is None:
            return {"gpu_source": "none", "driver_version": None, "gpus": [], "procs": [],
                    "events": [], "errors": list(self.failure)}
        try:
            gpus, procs, events, errors = self.impl.read()
        except Exception as e:  # nvidia-smi broke mid-run: report and re-choose next time
            self.impl.close()
            self.impl, self.last_try = None, now
            return {"gpu_source": "none", "driver_version": None, "gpus": [], "procs": [],
                    "events": [], "errors": [f"{self.source}: {e}"]}
        for p in procs:
            p["container_id"], p["job_id"], p["command"] = attribute(p["pid"], self.proc_root)
        events.extend(self._transitions(gpus, events))
        return {"gpu_source": self.source, "driver_version": self.impl.driver_version,
                "gpus": gpus, "procs": procs, "events": events, "errors": errors}

    def _transitions(self, gpus: List[Row], seen_events: List[Row]) -> List[Row]:
        out = []  # type: List[Row]
        dbe_event = {e["gpu_index"] for e in seen_events if e["kind"] == "ecc_uncorrected"}
        for g in gpus:
            key = g["uuid"] or str(g["index"])
            unc, pend, fail = g["ecc_uncorrected"], g["retired_pending"], g["remap_failure"]
            prev = self.prev.get(key)
            self.prev[key] = (unc, pend, fail)
            base = {"gpu_index": g["index"], "uuid": g["uuid"]}
            if (prev is not None and unc is not None and prev[0] is not None and unc > prev[0]
                    and g["index"] not in dbe_event):
                out.append(dict(base, kind="ecc_uncorrected", code=unc - prev[0],
                                detail=f"volatile uncorrected ECC {prev[0]} -> {unc}"))
            if pend and (prev is None or not prev[1]):
                out.append(dict(base, kind="retired_pending", code=None,
                                detail="retired pages pending (reset needed)"))
            if fail and (prev is None or not prev[2]):
                out.append(dict(base, kind="remap_failure", code=None,
                                detail="row remapping failed"))
        return out

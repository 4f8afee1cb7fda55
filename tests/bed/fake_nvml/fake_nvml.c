/*
 * Fake libnvidia-ml.so.1 for the fleetdeck test bed.
 *
 * Exports the NVML entry points pynvml (nvidia-ml-py) looks up, with the real
 * struct layouts and error codes. GPU state comes from a line-oriented text file
 * named by the environment variable FAKE_NVML_STATE (written by
 * tests/bed/fake_nvml/__init__.py); the file is re-parsed whenever its inode,
 * size or mtime changes, so a test can change a value while a process runs.
 *
 * State format, one `key=value` per line:
 *   init_error=DRIVER_NOT_LOADED      driver_version=550.54.15
 *   nvml_version=12.550.54.15         cuda_driver_version=12040
 *   event_replay=1                    gpu_count=2
 *   gpu.<i>.<field>=<value>           gpu.<i>.error.<area>=<NVML error name>
 *   gpu.<i>.proc.<k>=<pid>,<used_bytes>   gpu.<i>.gproc.<k>=<pid>,<used_bytes>
 *   event.<seq>=<gpu index>,<event type bits>,<event data>
 */
#include "fake_nvml.h"

/* ---- common prologue for device calls ---- */

static nvmlReturn_t enter(void) {
    pthread_mutex_lock(&lock);
    if (init_count == 0) { pthread_mutex_unlock(&lock); return NVML_ERROR_UNINITIALIZED; }
    reload();
    return NVML_SUCCESS;
}

static nvmlReturn_t enter_device(nvmlDevice_t dev, enum area a, gpu_t **out) {
    nvmlReturn_t r = enter();
    if (r != NVML_SUCCESS) return r;
    if (!dev || dev < handles || dev >= handles + MAX_GPUS || dev->index >= st.gpu_count) {
        pthread_mutex_unlock(&lock);
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    gpu_t *g = &st.gpus[dev->index];
    if (g->error[a] != NVML_SUCCESS) { r = g->error[a]; pthread_mutex_unlock(&lock); return r; }
    *out = g;
    return NVML_SUCCESS;
}

#define DEVICE_CALL(dev, area)                               \
    gpu_t *g;                                                \
    nvmlReturn_t rc_ = enter_device((dev), (area), &g);      \
    if (rc_ != NVML_SUCCESS) return rc_;
#define LEAVE(code) do { pthread_mutex_unlock(&lock); return (code); } while (0)

static nvmlReturn_t put_str(char *dst, unsigned len, const char *src) {
    if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(dst, src, strlen(src) + 1);
    return NVML_SUCCESS;
}

/* ---- init / system ---- */

EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned flags) {
    (void)flags;
    pthread_mutex_lock(&lock);
    nvmlReturn_t r = reload();
    if (r == NVML_SUCCESS && st.init_error) r = st.init_error;
    if (r == NVML_SUCCESS) {
        init_count++;
        for (unsigned i = 0; i < MAX_GPUS; i++) handles[i].index = i;
    }
    pthread_mutex_unlock(&lock);
    return r;
}
EXPORT nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
EXPORT nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }

EXPORT nvmlReturn_t nvmlShutdown(void) {
    pthread_mutex_lock(&lock);
    nvmlReturn_t r = init_count > 0 ? NVML_SUCCESS : NVML_ERROR_UNINITIALIZED;
    if (init_count > 0) init_count--;
    pthread_mutex_unlock(&lock);
    return r;
}

EXPORT const char *nvmlErrorString(nvmlReturn_t result) { return error_text(result); }

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned len) {
    nvmlReturn_t r = enter();
    if (r != NVML_SUCCESS) return r;
    LEAVE(put_str(version, len, st.driver_version));
}

EXPORT nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned len) {
    nvmlReturn_t r = enter();
    if (r != NVML_SUCCESS) return r;
    LEAVE(put_str(version, len, st.nvml_version));
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *version) {
    if (!version) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = enter();
    if (r != NVML_SUCCESS) return r;
    *version = st.cuda_driver_version;
    LEAVE(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *version) {
    return nvmlSystemGetCudaDriverVersion(version);
}

EXPORT nvmlReturn_t nvmlSystemGetProcessName(unsigned pid, char *name, unsigned len) {
    if (!name || len == 0) return NVML_ERROR_INVALID_ARGUMENT;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%u/cmdline", pid);
    FILE *f = fopen(path, "r");
    if (!f) return NVML_ERROR_NOT_FOUND;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return put_str(name, len, buf);
}

/* ---- device enumeration ---- */

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned *count) {
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = enter();
    if (r != NVML_SUCCESS) return r;
    *count = st.gpu_count;
    LEAVE(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned *count) { return nvmlDeviceGetCount_v2(count); }

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned index, nvmlDevice_t *device) {
    if (!device) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = enter();
    if (r != NVML_SUCCESS) return r;
    if (index >= st.gpu_count) LEAVE(NVML_ERROR_INVALID_ARGUMENT);
    if (st.gpus[index].error[A_HANDLE]) LEAVE(st.gpus[index].error[A_HANDLE]);
    *device = &handles[index];
    LEAVE(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned index, nvmlDevice_t *device) {
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

static nvmlReturn_t handle_by_string(size_t off, const char *key, nvmlDevice_t *device) {
    if (!key || !device) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = enter();
    if (r != NVML_SUCCESS) return r;
    for (unsigned i = 0; i < st.gpu_count; i++) {
        if (strcasecmp((const char *)&st.gpus[i] + off, key) == 0) {
            if (st.gpus[i].error[A_HANDLE]) LEAVE(st.gpus[i].error[A_HANDLE]);
            *device = &handles[i];
            LEAVE(NVML_SUCCESS);
        }
    }
    LEAVE(NVML_ERROR_NOT_FOUND);
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    return handle_by_string(offsetof(gpu_t, uuid), uuid, device);
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleBySerial(const char *serial, nvmlDevice_t *device) {
    return handle_by_string(offsetof(gpu_t, serial), serial, device);
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *bus_id, nvmlDevice_t *device) {
    return handle_by_string(offsetof(gpu_t, pci_bus_id), bus_id, device);
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByPciBusId(const char *bus_id, nvmlDevice_t *device) {
    return nvmlDeviceGetHandleByPciBusId_v2(bus_id, device);
}

EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t dev, unsigned *index) {
    if (!index) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, A_HANDLE);
    (void)g;
    *index = dev->index;
    LEAVE(NVML_SUCCESS);
}

/* ---- identity ---- */

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t dev, char *name, unsigned len) {
    DEVICE_CALL(dev, A_NAME);
    LEAVE(put_str(name, len, g->name));
}
EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t dev, char *uuid, unsigned len) {
    DEVICE_CALL(dev, A_UUID);
    LEAVE(put_str(uuid, len, g->uuid));
}
EXPORT nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t dev, char *serial, unsigned len) {
    DEVICE_CALL(dev, A_SERIAL);
    LEAVE(put_str(serial, len, g->serial));
}

#define UINT_GETTER(fn, area, member)                                  \
    EXPORT nvmlReturn_t fn(nvmlDevice_t dev, unsigned *out) {          \
        if (!out) return NVML_ERROR_INVALID_ARGUMENT;                  \
        DEVICE_CALL(dev, area);                                        \
        *out = g->member;                                              \
        LEAVE(NVML_SUCCESS);                                           \
    }
UINT_GETTER(nvmlDeviceGetMinorNumber, A_MINOR, minor_number)
UINT_GETTER(nvmlDeviceGetBrand, A_BRAND, brand)
UINT_GETTER(nvmlDeviceGetArchitecture, A_ARCHITECTURE, architecture)
UINT_GETTER(nvmlDeviceGetPersistenceMode, A_PERSISTENCE, persistence_mode)
UINT_GETTER(nvmlDeviceGetComputeMode, A_COMPUTE_MODE, compute_mode)
UINT_GETTER(nvmlDeviceGetPowerUsage, A_POWER, power_mw)
UINT_GETTER(nvmlDeviceGetEnforcedPowerLimit, A_POWER_LIMIT, power_limit_mw)
UINT_GETTER(nvmlDeviceGetPowerManagementLimit, A_POWER_LIMIT, power_limit_mw)
UINT_GETTER(nvmlDeviceGetPowerManagementDefaultLimit, A_POWER_LIMIT, power_default_limit_mw)
UINT_GETTER(nvmlDeviceGetFanSpeed, A_FAN, fan_pct)
UINT_GETTER(nvmlDeviceGetPerformanceState, A_PSTATE, pstate)
UINT_GETTER(nvmlDeviceGetPowerState, A_PSTATE, pstate)
UINT_GETTER(nvmlDeviceGetRetiredPagesPendingStatus, A_RETIRED_PENDING, retired_pending)

EXPORT nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t dev, int *major, int *minor) {
    if (!major || !minor) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, A_COMPUTE_CAPABILITY);
    *major = g->cc_major;
    *minor = g->cc_minor;
    LEAVE(NVML_SUCCESS);
}

static void fill_pci(const gpu_t *g, nvmlPciInfo_t *p) {
    memset(p, 0, sizeof *p);
    snprintf(p->busIdLegacy, sizeof p->busIdLegacy, "%04x:%02x:%02x.0", g->pci_domain & 0xffff,
             g->pci_bus & 0xff, g->pci_device & 0xff);
    copy_str(p->busId, sizeof p->busId, g->pci_bus_id);
    p->domain = g->pci_domain;
    p->bus = g->pci_bus;
    p->device = g->pci_device;
    p->pciDeviceId = g->pci_device_id;
    p->pciSubSystemId = g->pci_subsystem_id;
}
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t dev, nvmlPciInfo_t *pci) {
    if (!pci) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, A_PCI);
    fill_pci(g, pci);
    LEAVE(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t dev, nvmlPciInfo_t *pci) {
    return nvmlDeviceGetPciInfo_v3(dev, pci);
}

/* ---- memory / utilization / thermals / power / clocks ---- */

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t dev, nvmlMemory_t *mem) {
    if (!mem) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, A_MEMORY);
    mem->total = g->mem_total_bytes;
    mem->used = g->mem_used_bytes;
    mem->free = g->mem_total_bytes > g->mem_used_bytes ? g->mem_total_bytes - g->mem_used_bytes : 0;
    LEAVE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t dev, nvmlMemory_v2_t *mem) {
    if (!mem) return NVML_ERROR_INVALID_ARGUMENT;
    if (mem->version != NVML_MEMORY_V2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    DEVICE_CALL(dev, A_MEMORY);
    unsigned long long taken = g->mem_used_bytes + g->mem_reserved_bytes;
    mem->total = g->mem_total_bytes;
    mem->reserved = g->mem_reserved_bytes;
    mem->used = g->mem_used_bytes;
    mem->free = g->mem_total_bytes > taken ? g->mem_total_bytes - taken : 0;
    LEAVE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t dev, nvmlUtilization_t *util) {
    if (!util) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, A_UTILIZATION);
    util->gpu = g->util_pct;
    util->memory = g->mem_util_pct;
    LEAVE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t dev, unsigned sensor, unsigned *temp) {
    if (!temp || sensor != 0) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, A_TEMPERATURE);
    *temp = g->temp_c;
    LEAVE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t dev, nvmlTemperature_t *temp) {
    if (!temp || temp->sensorType != 0) return NVML_ERROR_INVALID_ARGUMENT;
    if (temp->version != NVML_TEMPERATURE_V1) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    DEVICE_CALL(dev, A_TEMPERATURE);
    temp->temperature = (int)g->temp_c;
    LEAVE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperatureThreshold(nvmlDevice_t dev, unsigned kind,
                                                      unsigned *temp) {
    if (!temp) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, A_TEMPERATURE);
    if (kind == 0) *temp = g->temp_shutdown_c;
    else if (kind == 1) *temp = g->temp_slowdown_c;
    else LEAVE(NVML_ERROR_NOT_SUPPORTED);
    LEAVE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t dev,
                                                        unsigned long long *energy_mj) {
    if (!energy_mj) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, A_ENERGY);
    *energy_mj = g->energy_mj;
    LEAVE(NVML_SUCCESS);
}

static nvmlReturn_t clock_of(const gpu_t *g, unsigned type, int max, unsigned *out) {
    switch (type) {
    case 0: *out = max ? g->max_sm_clock_mhz : g->graphics_clock_mhz; return NVML_SUCCESS;
    case 1: *out = max ? g->max_sm_clock_mhz : g->sm_clock_mhz; return NVML_SUCCESS;
    case 2: *out = max ? g->max_mem_clock_mhz : g->mem_clock_mhz; return NVML_SUCCESS;
    case 3: *out = g->video_clock_mhz; return NVML_SUCCESS;
    default: return NVML_ERROR_INVALID_ARGUMENT;
    }
}
EXPORT nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t dev, unsigned type, unsigned *clock) {
    if (!clock) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, A_CLOCK);
    LEAVE(clock_of(g, type, 0, clock));
}
EXPORT nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t dev, unsigned type, unsigned *clock) {
    if (!clock) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, A_CLOCK);
    LEAVE(clock_of(g, type, 1, clock));
}
EXPORT nvmlReturn_t nvmlDeviceGetClock(nvmlDevice_t dev, unsigned type, unsigned id,
                                       unsigned *clock) {
    if (!clock) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, A_CLOCK);
    if (id != 0) LEAVE(NVML_ERROR_NOT_SUPPORTED); /* only NVML_CLOCK_ID_CURRENT */
    LEAVE(clock_of(g, type, 0, clock));
}

EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t dev,
                                                           unsigned long long *reasons) {
    if (!reasons) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, A_THROTTLE);
    *reasons = g->throttle_reasons;
    LEAVE(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t dev,
                                                              unsigned long long *reasons) {
    return nvmlDeviceGetCurrentClocksEventReasons(dev, reasons);
}

/* ---- ECC, retired pages, remapped rows, MIG ---- */

EXPORT nvmlReturn_t nvmlDeviceGetEccMode(nvmlDevice_t dev, unsigned *current, unsigned *pending) {
    if (!current || !pending) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, A_ECC_MODE);
    *current = *pending = g->ecc_enabled;
    LEAVE(NVML_SUCCESS);
}

static nvmlReturn_t ecc_count(const gpu_t *g, unsigned error_type, unsigned counter_type,
                              unsigned long long *count) {
    if (error_type > 1 || counter_type > 1) return NVML_ERROR_INVALID_ARGUMENT;
    if (!g->ecc_enabled) return NVML_ERROR_NOT_SUPPORTED;
    if (counter_type == 0)
        *count = error_type == 0 ? g->ecc_corrected : g->ecc_uncorrected;
    else
        *count = error_type == 0 ? g->ecc_corrected_aggregate : g->ecc_uncorrected_aggregate;
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t dev, unsigned error_type,
                                                unsigned counter_type, unsigned long long *count) {
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, A_ECC);
    LEAVE(ecc_count(g, error_type, counter_type, count));
}
EXPORT nvmlReturn_t nvmlDeviceGetMemoryErrorCounter(nvmlDevice_t dev, unsigned error_type,
                                                    unsigned counter_type, unsigned location,
                                                    unsigned long long *count) {
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, A_ECC);
    nvmlReturn_t r = ecc_count(g, error_type, counter_type, count);
    if (r == NVML_SUCCESS && location != 2) *count = 0; /* all errors are in device memory */
    LEAVE(r);
}

static nvmlReturn_t retired_pages(nvmlDevice_t dev, unsigned cause, unsigned *count,
                                  unsigned long long *addresses, unsigned long long *timestamps) {
    if (!count || cause > 1) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, A_RETIRED_PAGES);
    unsigned n = cause == 0 ? g->retired_pages_sbe : g->retired_pages_dbe;
    if (*count < n || (!addresses && n > 0)) { *count = n; LEAVE(NVML_ERROR_INSUFFICIENT_SIZE); }
    for (unsigned i = 0; i < n; i++) {
        addresses[i] = 0x100000ull * (cause + 1) + 0x1000ull * i;
        if (timestamps) timestamps[i] = 1700000000ull * 1000000ull + i;
    }
    *count = n;
    LEAVE(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetRetiredPages(nvmlDevice_t dev, unsigned cause, unsigned *count,
                                              unsigned long long *addresses) {
    return retired_pages(dev, cause, count, addresses, NULL);
}
EXPORT nvmlReturn_t nvmlDeviceGetRetiredPages_v2(nvmlDevice_t dev, unsigned cause,
                                                 unsigned *count, unsigned long long *addresses,
                                                 unsigned long long *timestamps) {
    return retired_pages(dev, cause, count, addresses, timestamps);
}

EXPORT nvmlReturn_t nvmlDeviceGetRemappedRows(nvmlDevice_t dev, unsigned *corr, unsigned *unc,
                                              unsigned *pending, unsigned *failure) {
    if (!corr || !unc || !pending || !failure) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, A_REMAPPED_ROWS);
    *corr = g->remapped_rows_corrected;
    *unc = g->remapped_rows_uncorrected;
    *pending = g->remap_pending;
    *failure = g->remap_failure;
    LEAVE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t dev, unsigned *current, unsigned *pending) {
    if (!current || !pending) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, A_MIG_MODE);
    *current = g->mig_mode;
    *pending = g->mig_mode_pending;
    LEAVE(NVML_SUCCESS);
}

/* ---- running processes ---- */

static nvmlReturn_t processes(nvmlDevice_t dev, int graphics, unsigned *count, void *infos,
                              int v1) {
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, graphics ? A_GRAPHICS_PROCESSES : A_PROCESSES);
    unsigned n = graphics ? g->ngprocs : g->nprocs;
    const proc_t *list = graphics ? g->gprocs : g->procs;
    if (*count < n || (!infos && n > 0)) { *count = n; LEAVE(NVML_ERROR_INSUFFICIENT_SIZE); }
    for (unsigned i = 0; i < n; i++) {
        if (v1) {
            nvmlProcessInfo_v1_t *p = (nvmlProcessInfo_v1_t *)infos + i;
            p->pid = list[i].pid;
            p->usedGpuMemory = list[i].used_bytes;
        } else {
            nvmlProcessInfo_t *p = (nvmlProcessInfo_t *)infos + i;
            p->pid = list[i].pid;
            p->usedGpuMemory = list[i].used_bytes;
            p->gpuInstanceId = g->mig_mode ? 0 : NOT_AVAILABLE_U32;
            p->computeInstanceId = g->mig_mode ? 0 : NOT_AVAILABLE_U32;
        }
    }
    *count = n;
    LEAVE(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned *c,
                                                            nvmlProcessInfo_t *i) {
    return processes(d, 0, c, i, 0);
}
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t d, unsigned *c,
                                                            nvmlProcessInfo_t *i) {
    return processes(d, 0, c, i, 0);
}
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t d, unsigned *c,
                                                         nvmlProcessInfo_v1_t *i) {
    return processes(d, 0, c, i, 1);
}
EXPORT nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t d, unsigned *c,
                                                             nvmlProcessInfo_t *i) {
    return processes(d, 1, c, i, 0);
}
EXPORT nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v2(nvmlDevice_t d, unsigned *c,
                                                             nvmlProcessInfo_t *i) {
    return processes(d, 1, c, i, 0);
}
EXPORT nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses(nvmlDevice_t d, unsigned *c,
                                                          nvmlProcessInfo_v1_t *i) {
    return processes(d, 1, c, i, 1);
}

/* ---- events (Xid etc.) ---- */

EXPORT nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t dev,
                                                     unsigned long long *types) {
    if (!types) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, A_EVENTS);
    (void)g;
    *types = EVENT_SUPPORTED_MASK;
    LEAVE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
    if (!set) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = enter();
    if (r != NVML_SUCCESS) return r;
    nvmlEventSet_t s = calloc(1, sizeof *s);
    if (!s) LEAVE(20); /* NVML_ERROR_MEMORY */
    if (!st.event_replay)
        for (unsigned i = 0; i < st.nevents; i++)
            if (st.events[i].seq > s->cursor) s->cursor = st.events[i].seq;
    *set = s;
    LEAVE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t dev, unsigned long long types,
                                             nvmlEventSet_t set) {
    if (!set) return NVML_ERROR_INVALID_ARGUMENT;
    DEVICE_CALL(dev, A_EVENTS);
    (void)g;
    if (types & ~EVENT_SUPPORTED_MASK) LEAVE(NVML_ERROR_NOT_SUPPORTED);
    set->mask[dev->index] |= types;
    LEAVE(NVML_SUCCESS);
}

static int next_event(nvmlEventSet_t set, nvmlEventData_t *data) {
    const event_t *best = NULL;
    for (unsigned i = 0; i < st.nevents; i++) {
        const event_t *e = &st.events[i];
        if (e->seq <= set->cursor || e->gpu >= st.gpu_count) continue;
        if (!(set->mask[e->gpu] & e->type)) continue;
        if (!best || e->seq < best->seq) best = e;
    }
    if (!best) return 0;
    set->cursor = best->seq;
    memset(data, 0, sizeof *data);
    data->device = &handles[best->gpu];
    data->eventType = best->type;
    data->eventData = best->data;
    data->gpuInstanceId = NOT_AVAILABLE_U32;
    data->computeInstanceId = NOT_AVAILABLE_U32;
    return 1;
}

EXPORT nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data,
                                        unsigned timeout_ms) {
    if (!set || !data) return NVML_ERROR_INVALID_ARGUMENT;
    struct timespec start, now, pause = {0, 10 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        nvmlReturn_t r = enter();
        if (r != NVML_SUCCESS) return r;
        int found = next_event(set, data);
        pthread_mutex_unlock(&lock);
        if (found) return NVML_SUCCESS;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long elapsed_ms = (now.tv_sec - start.tv_sec) * 1000LL +
                               (now.tv_nsec - start.tv_nsec) / 1000000LL;
        if (elapsed_ms >= (long long)timeout_ms) return NVML_ERROR_TIMEOUT;
        nanosleep(&pause, NULL);
    }
}
/* v1 event data lacks the two instance ids at the end. */
EXPORT nvmlReturn_t nvmlEventSetWait(nvmlEventSet_t set, void *data, unsigned timeout_ms) {
    if (!data) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlEventData_t full;
    nvmlReturn_t r = nvmlEventSetWait_v2(set, &full, timeout_ms);
    if (r == NVML_SUCCESS) memcpy(data, &full, offsetof(nvmlEventData_t, gpuInstanceId));
    return r;
}

EXPORT nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    if (!set) return NVML_ERROR_INVALID_ARGUMENT;
    free(set);
    return NVML_SUCCESS;
}

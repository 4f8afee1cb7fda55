/* State file parsing for the fake NVML library (format described in fake_nvml.c). */
#include "fake_nvml.h"

static const char *const area_names[A_COUNT] = {
    "handle", "name", "uuid", "serial", "pci", "memory", "utilization",
    "temperature", "power", "power_limit", "energy", "clock", "fan", "pstate",
    "throttle", "ecc", "ecc_mode", "retired_pages", "retired_pending",
    "remapped_rows", "mig_mode", "processes", "graphics_processes", "events",
    "compute_capability", "architecture", "brand", "persistence", "compute_mode",
    "minor",
};

static const struct { const char *name; int code; const char *text; } errors[] = {
    {"SUCCESS", 0, "Success"},
    {"UNINITIALIZED", 1, "Uninitialized"},
    {"INVALID_ARGUMENT", 2, "Invalid Argument"},
    {"NOT_SUPPORTED", 3, "Not Supported"},
    {"NO_PERMISSION", 4, "Insufficient Permissions"},
    {"ALREADY_INITIALIZED", 5, "Already Initialized"},
    {"NOT_FOUND", 6, "Not Found"},
    {"INSUFFICIENT_SIZE", 7, "Insufficient Size"},
    {"INSUFFICIENT_POWER", 8, "Insufficient External Power"},
    {"DRIVER_NOT_LOADED", 9, "Driver Not Loaded"},
    {"TIMEOUT", 10, "Timeout"},
    {"IRQ_ISSUE", 11, "Interrupt Request Issue"},
    {"LIBRARY_NOT_FOUND", 12, "NVML Shared Library Not Found"},
    {"FUNCTION_NOT_FOUND", 13, "Function Not Found"},
    {"CORRUPTED_INFOROM", 14, "Corrupted infoROM"},
    {"GPU_IS_LOST", 15, "GPU is lost"},
    {"RESET_REQUIRED", 16, "GPU requires restart"},
    {"OPERATING_SYSTEM", 17, "The operating system has blocked the request."},
    {"LIB_RM_VERSION_MISMATCH", 18, "RM has detected an NVML/RM version mismatch."},
    {"IN_USE", 19, "In use by another client"},
    {"MEMORY", 20, "Insufficient Memory"},
    {"NO_DATA", 21, "No data"},
    {"VGPU_ECC_NOT_SUPPORTED", 22, "vGPU ECC not supported"},
    {"INSUFFICIENT_RESOURCES", 23, "Insufficient resources"},
    {"FREQ_NOT_SUPPORTED", 24, "Frequency not supported"},
    {"ARGUMENT_VERSION_MISMATCH", 25, "Argument version mismatch"},
    {"DEPRECATED", 26, "Deprecated"},
    {"NOT_READY", 27, "Not ready"},
    {"GPU_NOT_FOUND", 28, "GPU not found"},
    {"INVALID_STATE", 29, "Invalid state"},
    {"RESET_TYPE_NOT_SUPPORTED", 30, "Reset type not supported"},
    {"UNKNOWN", 999, "Unknown Error"},
};

pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
state_t st;
int init_count;
struct nvmlDevice_st handles[MAX_GPUS];
static struct stat loaded_stat;
static int loaded;

const char *error_text(int code) {
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
        if (errors[i].code == code) return errors[i].text;
    return "Unknown Error";
}

/* ---- state file parsing ---- */

enum ftype { F_STR, F_U32, F_U64, F_I32 };
typedef struct { const char *key; enum ftype type; size_t off; size_t size; } field_t;
#define FS(k, m) {#k, F_STR, offsetof(gpu_t, m), sizeof(((gpu_t *)0)->m)}
#define FU(k) {#k, F_U32, offsetof(gpu_t, k), 0}
#define FL(k) {#k, F_U64, offsetof(gpu_t, k), 0}
#define FI(k) {#k, F_I32, offsetof(gpu_t, k), 0}
static const field_t gpu_fields[] = {
    FS(name, name), FS(uuid, uuid), FS(serial, serial), FS(pci_bus_id, pci_bus_id),
    FU(pci_domain), FU(pci_bus), FU(pci_device), FU(pci_device_id), FU(pci_subsystem_id),
    FL(mem_total_bytes), FL(mem_used_bytes), FL(mem_reserved_bytes),
    FU(util_pct), FU(mem_util_pct), FU(temp_c), FU(temp_slowdown_c), FU(temp_shutdown_c),
    FU(power_mw), FU(power_limit_mw), FU(power_default_limit_mw), FL(energy_mj),
    FU(graphics_clock_mhz), FU(sm_clock_mhz), FU(mem_clock_mhz), FU(video_clock_mhz),
    FU(max_sm_clock_mhz), FU(max_mem_clock_mhz), FU(fan_pct), FU(pstate),
    FL(throttle_reasons), FU(ecc_enabled), FL(ecc_corrected), FL(ecc_uncorrected),
    FL(ecc_corrected_aggregate), FL(ecc_uncorrected_aggregate),
    FU(retired_pages_sbe), FU(retired_pages_dbe), FU(retired_pending),
    FU(remapped_rows_corrected), FU(remapped_rows_uncorrected), FU(remap_pending),
    FU(remap_failure), FU(mig_mode), FU(mig_mode_pending), FU(persistence_mode),
    FU(compute_mode), FU(minor_number), FU(brand), FU(architecture),
    FI(cc_major), FI(cc_minor),
};

static int error_code(const char *name) {
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
        if (strcmp(errors[i].name, name) == 0) return errors[i].code;
    char *end;
    long v = strtol(name, &end, 10);
    return (*name && !*end) ? (int)v : NVML_ERROR_UNKNOWN;
}

void copy_str(char *dst, size_t size, const char *src) {
    size_t n = strlen(src);
    if (n >= size) n = size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void parse_proc(proc_t *list, unsigned *n, const char *value) {
    if (*n >= MAX_PROCS) return;
    unsigned pid;
    unsigned long long used;
    if (sscanf(value, "%u,%llu", &pid, &used) == 2) {
        list[*n].pid = pid;
        list[*n].used_bytes = used;
        (*n)++;
    }
}

static void parse_gpu_line(const char *rest, const char *value) {
    char *end;
    unsigned long idx = strtoul(rest, &end, 10);
    if (end == rest || *end != '.' || idx >= MAX_GPUS) return;
    gpu_t *g = &st.gpus[idx];
    const char *key = end + 1;
    if (strncmp(key, "error.", 6) == 0) {
        for (int a = 0; a < A_COUNT; a++)
            if (strcmp(area_names[a], key + 6) == 0) g->error[a] = error_code(value);
        return;
    }
    if (strncmp(key, "proc.", 5) == 0) { parse_proc(g->procs, &g->nprocs, value); return; }
    if (strncmp(key, "gproc.", 6) == 0) { parse_proc(g->gprocs, &g->ngprocs, value); return; }
    for (size_t i = 0; i < sizeof gpu_fields / sizeof gpu_fields[0]; i++) {
        const field_t *f = &gpu_fields[i];
        if (strcmp(f->key, key) != 0) continue;
        char *p = (char *)g + f->off;
        switch (f->type) {
        case F_STR: copy_str(p, f->size, value); break;
        case F_U32: *(unsigned *)p = (unsigned)strtoul(value, NULL, 10); break;
        case F_U64: *(unsigned long long *)p = strtoull(value, NULL, 10); break;
        case F_I32: *(int *)p = (int)strtol(value, NULL, 10); break;
        }
        return;
    }
}

static void parse_line(char *line) {
    char *eq = strchr(line, '=');
    if (!eq) return;
    *eq = '\0';
    const char *key = line, *value = eq + 1;
    if (strcmp(key, "init_error") == 0) st.init_error = error_code(value);
    else if (strcmp(key, "driver_version") == 0)
        copy_str(st.driver_version, sizeof st.driver_version, value);
    else if (strcmp(key, "nvml_version") == 0)
        copy_str(st.nvml_version, sizeof st.nvml_version, value);
    else if (strcmp(key, "cuda_driver_version") == 0)
        st.cuda_driver_version = (int)strtol(value, NULL, 10);
    else if (strcmp(key, "event_replay") == 0)
        st.event_replay = (unsigned)strtoul(value, NULL, 10);
    else if (strcmp(key, "gpu_count") == 0) {
        unsigned long n = strtoul(value, NULL, 10);
        st.gpu_count = n > MAX_GPUS ? MAX_GPUS : (unsigned)n;
    } else if (strncmp(key, "gpu.", 4) == 0) parse_gpu_line(key + 4, value);
    else if (strncmp(key, "event.", 6) == 0 && st.nevents < MAX_EVENTS) {
        event_t *e = &st.events[st.nevents];
        e->seq = strtoull(key + 6, NULL, 10);
        if (sscanf(value, "%u,%llu,%llu", &e->gpu, &e->type, &e->data) == 3) st.nevents++;
    }
}

/* Re-parse the state file if it changed. Caller holds `lock`. */
int reload(void) {
    const char *path = getenv("FAKE_NVML_STATE");
    struct stat sb;
    if (!path || stat(path, &sb) != 0) return loaded ? NVML_SUCCESS : NVML_ERROR_DRIVER_NOT_LOADED;
    if (loaded && sb.st_ino == loaded_stat.st_ino && sb.st_size == loaded_stat.st_size &&
        sb.st_mtim.tv_sec == loaded_stat.st_mtim.tv_sec &&
        sb.st_mtim.tv_nsec == loaded_stat.st_mtim.tv_nsec)
        return NVML_SUCCESS;
    FILE *f = fopen(path, "r");
    if (!f) return loaded ? NVML_SUCCESS : NVML_ERROR_DRIVER_NOT_LOADED;
    memset(&st, 0, sizeof st);
    st.event_replay = 1;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        parse_line(line);
    }
    fclose(f);
    loaded_stat = sb;
    loaded = 1;
    return NVML_SUCCESS;
}

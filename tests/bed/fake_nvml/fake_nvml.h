/* Shared types of the fake NVML library (see fake_nvml.c). */
#ifndef FAKE_NVML_H
#define FAKE_NVML_H

#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define EXPORT __attribute__((visibility("default")))

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_TIMEOUT = 10,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999,
};

#define MAX_GPUS 16
#define MAX_PROCS 64
#define MAX_EVENTS 256
#define NOT_AVAILABLE_U32 0xFFFFFFFFu

/* Areas a test can make fail with a chosen error code. */
enum area {
    A_HANDLE, A_NAME, A_UUID, A_SERIAL, A_PCI, A_MEMORY, A_UTILIZATION,
    A_TEMPERATURE, A_POWER, A_POWER_LIMIT, A_ENERGY, A_CLOCK, A_FAN, A_PSTATE,
    A_THROTTLE, A_ECC, A_ECC_MODE, A_RETIRED_PAGES, A_RETIRED_PENDING,
    A_REMAPPED_ROWS, A_MIG_MODE, A_PROCESSES, A_GRAPHICS_PROCESSES, A_EVENTS,
    A_COMPUTE_CAPABILITY, A_ARCHITECTURE, A_BRAND, A_PERSISTENCE, A_COMPUTE_MODE,
    A_MINOR, A_COUNT
};
typedef struct { unsigned pid; unsigned long long used_bytes; } proc_t;

typedef struct {
    char name[96], uuid[96], serial[32], pci_bus_id[32];
    unsigned pci_domain, pci_bus, pci_device, pci_device_id, pci_subsystem_id;
    unsigned long long mem_total_bytes, mem_used_bytes, mem_reserved_bytes;
    unsigned util_pct, mem_util_pct, temp_c, temp_slowdown_c, temp_shutdown_c;
    unsigned power_mw, power_limit_mw, power_default_limit_mw;
    unsigned long long energy_mj;
    unsigned graphics_clock_mhz, sm_clock_mhz, mem_clock_mhz, video_clock_mhz;
    unsigned max_sm_clock_mhz, max_mem_clock_mhz, fan_pct, pstate;
    unsigned long long throttle_reasons;
    unsigned ecc_enabled;
    unsigned long long ecc_corrected, ecc_uncorrected;
    unsigned long long ecc_corrected_aggregate, ecc_uncorrected_aggregate;
    unsigned retired_pages_sbe, retired_pages_dbe, retired_pending;
    unsigned remapped_rows_corrected, remapped_rows_uncorrected, remap_pending, remap_failure;
    unsigned mig_mode, mig_mode_pending, persistence_mode, compute_mode, minor_number;
    unsigned brand, architecture;
    int cc_major, cc_minor;
    unsigned nprocs, ngprocs;
    proc_t procs[MAX_PROCS], gprocs[MAX_PROCS];
    int error[A_COUNT];
} gpu_t;

typedef struct { unsigned long long seq, type, data; unsigned gpu; } event_t;

typedef struct {
    int init_error;
    char driver_version[80], nvml_version[80];
    int cuda_driver_version;
    unsigned event_replay;
    unsigned gpu_count;
    gpu_t gpus[MAX_GPUS];
    unsigned nevents;
    event_t events[MAX_EVENTS];
} state_t;

struct nvmlDevice_st { unsigned index; };
typedef struct nvmlDevice_st *nvmlDevice_t;

struct nvmlEventSet_st { unsigned long long mask[MAX_GPUS]; unsigned long long cursor; };
typedef struct nvmlEventSet_st *nvmlEventSet_t;

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct {
    unsigned version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;
#define NVML_MEMORY_V2 0x02000028u
typedef struct { unsigned gpu, memory; } nvmlUtilization_t;
typedef struct {
    char busIdLegacy[16];
    unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;
typedef struct { unsigned version; unsigned sensorType; int temperature; } nvmlTemperature_t;
#define NVML_TEMPERATURE_V1 0x0100000Cu
typedef struct { unsigned pid; unsigned long long usedGpuMemory; } nvmlProcessInfo_v1_t;
typedef struct {
    unsigned pid;
    unsigned long long usedGpuMemory;
    unsigned gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;
typedef struct {
    nvmlDevice_t device;
    unsigned long long eventType, eventData;
    unsigned gpuInstanceId, computeInstanceId;
} nvmlEventData_t;

#define EVENT_SUPPORTED_MASK 0x0Full /* single/double bit ECC, pstate, Xid */

/* Defined in state.c. */
extern pthread_mutex_t lock;      /* guards everything below */
extern state_t st;                /* the parsed state file */
extern int init_count;            /* nvmlInit calls minus nvmlShutdown calls */
extern struct nvmlDevice_st handles[MAX_GPUS];
int reload(void);                 /* re-parse the state file if it changed; caller holds lock */
void copy_str(char *dst, size_t size, const char *src);
const char *error_text(int code);

#endif

/*
 * cuda.c - the CUDA runtime table of device.c, over the CUDA driver API.
 *
 * Built when the CUDA toolkit is found.  The driver (libcuda.so.1) is
 * opened at the first use, not linked: the library, its static form and
 * the Python extension run on machines without it, where a CUDA tensor
 * gets TSNAP_ENOCUDA saying so (the toolkit's stub library too, by name).
 * Each device's primary context is the one used, the context the CUDA
 * runtime (and so PyTorch, CuPy, JAX) uses, so their streams and pointers
 * are ours to use; it is made current only between enter() and leave(),
 * which give the calling thread back the context it had.  A reset of the
 * device (its context gets a new id) drops the kernels and, through the
 * generation, device.c's pinned buffers.  A fork()ed child of a process
 * that had initialised the driver is refused: the driver cannot serve it.
 * The packing kernels are kernels.cu, compiled into a fat binary that is
 * part of this library; a driver too old for it is named in the error,
 * with the CUDA version the library was built with.
 */
#include <cuda.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

extern const unsigned char tsnap_kernels_fatbin[];

#define MAX_DEVICES 64
/* Not CUresults (those are 0..999): why the driver cannot be used. */
#define NO_DRIVER (-1)  /* libcuda.so.1 did not load */
#define FORKED (-2)     /* a child of a process that had initialised CUDA */
#define NO_KERNELS (-3) /* the packing kernels cannot be loaded: kernels_why says why */

#define STR2(x) #x
#define STR(x) STR2(x)
#define FN(name) __typeof__(name) *name
static struct driver {
    FN(cuInit);
    FN(cuDriverGetVersion);
    FN(cuDeviceGetCount);
    FN(cuDeviceGet);
    FN(cuDevicePrimaryCtxRetain);
    FN(cuCtxGetCurrent);
    FN(cuCtxSetCurrent);
    FN(cuCtxGetDevice);
    FN(cuCtxGetId); /* drivers for CUDA 12.0 and later; NULL before */
    FN(cuPointerGetAttributes);
    FN(cuStreamCreate);
    FN(cuStreamDestroy);
    FN(cuStreamSynchronize);
    FN(cuStreamWaitEvent);
    FN(cuEventCreate);
    FN(cuEventDestroy);
    FN(cuEventRecord);
    FN(cuEventSynchronize);
    FN(cuMemHostAlloc);
    FN(cuMemFreeHost);
    FN(cuMemAlloc);
    FN(cuMemFree);
    FN(cuMemcpyDtoHAsync);
    FN(cuMemcpyHtoDAsync);
    FN(cuModuleLoadData);
    FN(cuModuleGetFunction);
    FN(cuLaunchKernel);
    FN(cuGetErrorString);
} D;
#undef FN

/* The state below, and loading the driver, under `mu`. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static void *(*resolver)(const char *symbol); /* a test's driver; NULL: libcuda.so.1 */
static bool loaded, forked;
static CUresult init_result = CUDA_ERROR_NOT_INITIALIZED;
static int driver_version; /* 12040 for CUDA 12.4; 0 if unknown */
static char driver_why[256];
static __thread char kernels_why[512], unnamed_why[96];
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static struct device_state {
    CUcontext ctx;              /* the primary context, retained for the process */
    unsigned long long ctx_id;  /* cuCtxGetId's: a reset gives the context a new one */
    unsigned generation;        /* the resets seen */
    CUfunction gather, scatter; /* NULL until loaded */
} devices[MAX_DEVICES];

/* A fork()ed child of a process that had initialised the driver cannot use
 * it, and the lock may have been held by a thread the child does not have. */
static void forked_child(void)
{
    pthread_mutex_init(&mu, NULL);
    forked = forked || (loaded && init_result == CUDA_SUCCESS);
}

static void register_fork_handler(void) { pthread_atfork(NULL, NULL, forked_child); }

static void *driver_symbol(void *h, const char *name)
{
    return resolver ? resolver(name) : dlsym(h, name);
}

static void load_driver_locked(void)
{
    void *h = NULL;
    loaded = true;
    memset(&D, 0, sizeof D);
    driver_version = 0;
    if (!resolver && !(h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL))) {
        snprintf(driver_why, sizeof driver_why,
                 "the NVIDIA driver's libcuda.so.1 cannot be loaded (%s)", dlerror());
        init_result = (CUresult)NO_DRIVER;
        return;
    }
#define LOAD(name)                                                                 \
    if (!(*(void **)&D.name = driver_symbol(h, STR(name)))) {                      \
        snprintf(driver_why, sizeof driver_why, "libcuda.so.1 has no %s", STR(name)); \
        init_result = (CUresult)NO_DRIVER;                                         \
        return;                                                                    \
    }
    LOAD(cuInit)
    LOAD(cuDriverGetVersion)
    LOAD(cuDeviceGetCount)
    LOAD(cuDeviceGet)
    LOAD(cuDevicePrimaryCtxRetain)
    LOAD(cuCtxGetCurrent)
    LOAD(cuCtxSetCurrent)
    LOAD(cuCtxGetDevice)
    LOAD(cuPointerGetAttributes)
    LOAD(cuStreamCreate)
    LOAD(cuStreamDestroy)
    LOAD(cuStreamSynchronize)
    LOAD(cuStreamWaitEvent)
    LOAD(cuEventCreate)
    LOAD(cuEventDestroy)
    LOAD(cuEventRecord)
    LOAD(cuEventSynchronize)
    LOAD(cuMemHostAlloc)
    LOAD(cuMemFreeHost)
    LOAD(cuMemAlloc)
    LOAD(cuMemFree)
    LOAD(cuMemcpyDtoHAsync)
    LOAD(cuMemcpyHtoDAsync)
    LOAD(cuModuleLoadData)
    LOAD(cuModuleGetFunction)
    LOAD(cuLaunchKernel)
    LOAD(cuGetErrorString)
#undef LOAD
    *(void **)&D.cuCtxGetId = driver_symbol(h, STR(cuCtxGetId));
    if (D.cuDriverGetVersion(&driver_version) != CUDA_SUCCESS)
        driver_version = 0;
    init_result = D.cuInit(0);
}

void tsnap__cuda_set_driver(void *(*symbol)(const char *name))
{
    pthread_mutex_lock(&mu);
    resolver = symbol;
    loaded = forked = false;
    init_result = CUDA_ERROR_NOT_INITIALIZED;
    memset(devices, 0, sizeof devices);
    pthread_mutex_unlock(&mu);
}

static const char *error_string(int err)
{
    const char *s = NULL;
    switch (err) {
    case NO_DRIVER: return driver_why;
    case NO_KERNELS: return kernels_why;
    case FORKED:
        return "this process is a fork() of one that had initialised CUDA, and the CUDA driver "
               "cannot be used in such a child (start it with spawn, or use CUDA in the parent "
               "only)";
    case CUDA_ERROR_STUB_LIBRARY:
        return "the libcuda.so loaded is the CUDA toolkit's stub, not the NVIDIA driver "
               "(CUDA_ERROR_STUB_LIBRARY): the driver is not installed, or a stubs folder comes "
               "first on the library path";
    default: break;
    }
    if (err > 0 && D.cuGetErrorString && D.cuGetErrorString((CUresult)err, &s) == CUDA_SUCCESS &&
        s)
        return s;
    snprintf(unnamed_why, sizeof unnamed_why, "CUDA error %d, which the driver does not name",
             err);
    return unnamed_why;
}

/* The driver, loaded at the first call; FORKED in a fork()ed child. */
static CUresult driver(void)
{
    CUresult rc;
    pthread_once(&fork_once, register_fork_handler);
    pthread_mutex_lock(&mu);
    if (!loaded)
        load_driver_locked();
    rc = forked ? (CUresult)FORKED : init_result;
    pthread_mutex_unlock(&mu);
    return rc;
}

static int device_count(int *n)
{
    CUresult rc = driver();
    *n = 0;
    if (rc != CUDA_SUCCESS)
        return (int)rc;
    return (int)D.cuDeviceGetCount(n);
}

/* With `ctx` current: a reset (cuDevicePrimaryCtxReset, cudaDeviceReset)
 * destroyed the context's module and pinned buffers and gave it a new id:
 * the kernels are loaded again, and the new generation tells device.c. */
static void notice_reset(int device, CUcontext ctx)
{
    unsigned long long id = 0;
    if (!D.cuCtxGetId || D.cuCtxGetId(ctx, &id) != CUDA_SUCCESS)
        return;
    pthread_mutex_lock(&mu);
    struct device_state *d = &devices[device];
    if (d->ctx_id && d->ctx_id != id) {
        d->gather = d->scatter = NULL;
        d->generation++;
    }
    d->ctx_id = id;
    pthread_mutex_unlock(&mu);
}

/* After a reset that destroyed the context `ctx` we had for `device`:
 * what it held is gone, the kernels and device.c's pinned buffers with it. */
static void forget_context(int device, CUcontext ctx)
{
    pthread_mutex_lock(&mu);
    struct device_state *d = &devices[device];
    if (d->ctx == ctx) {
        d->ctx = NULL;
        d->ctx_id = 0;
        d->gather = d->scatter = NULL;
        d->generation++;
    }
    pthread_mutex_unlock(&mu);
}

/* Makes `device`'s primary context current on this thread; *saved is the
 * context it had, for leave(). */
static int enter(int device, void **saved)
{
    CUcontext prev = NULL, ctx = NULL;
    CUresult rc;

    *saved = NULL;
    if ((rc = driver()) != CUDA_SUCCESS)
        return (int)rc;
    if (device < 0 || device >= MAX_DEVICES)
        return (int)CUDA_ERROR_INVALID_DEVICE;
    if ((rc = D.cuCtxGetCurrent(&prev)) != CUDA_SUCCESS)
        return (int)rc;
    for (int tries = 0; tries < 2; tries++) {
        pthread_mutex_lock(&mu);
        struct device_state *d = &devices[device];
        if (!d->ctx) {
            CUdevice dev;
            if ((rc = D.cuDeviceGet(&dev, device)) == CUDA_SUCCESS)
                rc = D.cuDevicePrimaryCtxRetain(&d->ctx, dev); /* kept for the process */
            if (rc != CUDA_SUCCESS)
                d->ctx = NULL;
        }
        ctx = d->ctx;
        pthread_mutex_unlock(&mu);
        if (rc == CUDA_SUCCESS && ctx != prev)
            rc = D.cuCtxSetCurrent(ctx);
        if (rc != CUDA_ERROR_CONTEXT_IS_DESTROYED && rc != CUDA_ERROR_INVALID_CONTEXT)
            break;
        forget_context(device, ctx); /* a reset that destroyed it: retain it anew */
    }
    if (rc != CUDA_SUCCESS)
        return (int)rc;
    notice_reset(device, ctx);
    *saved = prev;
    return 0;
}

/* Back to the context the thread had before enter(). */
static void leave(void *saved)
{
    CUcontext now = NULL;
    if (D.cuCtxGetCurrent && D.cuCtxGetCurrent(&now) == CUDA_SUCCESS && now != saved)
        D.cuCtxSetCurrent((CUcontext)saved);
}

/* The device of the thread's current context; -1 with none. */
static int current_device(int *device)
{
    CUcontext ctx = NULL;
    CUdevice dev = 0;
    CUresult rc;
    *device = -1;
    if ((rc = driver()) != CUDA_SUCCESS || (rc = D.cuCtxGetCurrent(&ctx)) != CUDA_SUCCESS)
        return (int)rc;
    if (ctx && (rc = D.cuCtxGetDevice(&dev)) == CUDA_SUCCESS)
        *device = (int)dev;
    return (int)rc;
}

static unsigned generation(int device)
{
    unsigned g = 0;
    if (device >= 0 && device < MAX_DEVICES) {
        pthread_mutex_lock(&mu);
        g = devices[device].generation;
        pthread_mutex_unlock(&mu);
    }
    return g;
}

/* What the driver knows of the memory at `p`: a TSNAP_CUDA_MEM_* and the
 * device it belongs to. */
static int pointer_kind(const void *p, int *kind, int *device)
{
    CUpointer_attribute at[3] = {CU_POINTER_ATTRIBUTE_MEMORY_TYPE, CU_POINTER_ATTRIBUTE_IS_MANAGED,
                                 CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL};
    unsigned int type = 0, managed = 0;
    int ordinal = -1;
    void *data[3] = {&type, &managed, &ordinal};
    CUresult rc = D.cuPointerGetAttributes(3, at, data, (CUdeviceptr)(uintptr_t)p);
    *kind = managed                        ? TSNAP_CUDA_MEM_MANAGED
            : type == CU_MEMORYTYPE_DEVICE ? TSNAP_CUDA_MEM_DEVICE
            : type == CU_MEMORYTYPE_HOST   ? TSNAP_CUDA_MEM_PINNED
                                           : TSNAP_CUDA_MEM_UNKNOWN;
    *device = ordinal;
    return (int)rc;
}

static int stream_create(void **s)
{
    return (int)D.cuStreamCreate((CUstream *)s, CU_STREAM_NON_BLOCKING);
}
static int stream_destroy(void *s) { return (int)D.cuStreamDestroy((CUstream)s); }
static int stream_sync(void *s) { return (int)D.cuStreamSynchronize((CUstream)s); }
static int stream_wait_event(void *s, void *e)
{
    return (int)D.cuStreamWaitEvent((CUstream)s, (CUevent)e, 0);
}
static int event_create(void **e) { return (int)D.cuEventCreate((CUevent *)e, CU_EVENT_DISABLE_TIMING); }
static int event_destroy(void *e) { return (int)D.cuEventDestroy((CUevent)e); }
static int event_record(void *e, void *s) { return (int)D.cuEventRecord((CUevent)e, (CUstream)s); }
static int event_sync(void *e) { return (int)D.cuEventSynchronize((CUevent)e); }
static int host_alloc(void **p, size_t n)
{
    return (int)D.cuMemHostAlloc(p, n, CU_MEMHOSTALLOC_PORTABLE);
}
static int host_free(void *p) { return (int)D.cuMemFreeHost(p); }
static int dev_alloc(void **p, size_t n)
{
    CUdeviceptr d = 0;
    CUresult rc = D.cuMemAlloc(&d, n);
    *p = (void *)(uintptr_t)d;
    return (int)rc;
}
static int dev_free(void *p) { return (int)D.cuMemFree((CUdeviceptr)(uintptr_t)p); }

static int copy(void *dst, const void *src, size_t n, int kind, void *s)
{
    if (kind == TSNAP_CUDA_D2H)
        return (int)D.cuMemcpyDtoHAsync(dst, (CUdeviceptr)(uintptr_t)src, n, (CUstream)s);
    return (int)D.cuMemcpyHtoDAsync((CUdeviceptr)(uintptr_t)dst, src, n, (CUstream)s);
}

/* The packing kernels of the current device, loaded at their first use.
 * A failure is not kept: a later call may succeed (memory freed since). */
static CUresult kernels(int device, CUfunction *gather, CUfunction *scatter)
{
    CUresult rc = CUDA_SUCCESS;
    CUmodule m;
    pthread_mutex_lock(&mu);
    struct device_state *d = &devices[device];
    if (!d->gather || !d->scatter) {
        if ((rc = D.cuModuleLoadData(&m, tsnap_kernels_fatbin)) == CUDA_SUCCESS &&
            (rc = D.cuModuleGetFunction(&d->gather, m, "tsnap_gather")) == CUDA_SUCCESS)
            rc = D.cuModuleGetFunction(&d->scatter, m, "tsnap_scatter");
        if (rc != CUDA_SUCCESS)
            d->gather = d->scatter = NULL;
    }
    *gather = d->gather;
    *scatter = d->scatter;
    pthread_mutex_unlock(&mu);
    if (rc == CUDA_SUCCESS)
        return rc;
    snprintf(kernels_why, sizeof kernels_why,
             "the packing kernels (for strided tensors) cannot be loaded: %s; the driver runs "
             "CUDA %d.%d, this library was built with CUDA %d.%d%s",
             error_string((int)rc), driver_version / 1000, driver_version % 1000 / 10,
             CUDA_VERSION / 1000, CUDA_VERSION % 1000 / 10,
             driver_version && driver_version / 1000 < CUDA_VERSION / 1000
                 ? " (a driver for that CUDA or newer runs them; contiguous tensors need none)"
                 : "");
    return (CUresult)NO_KERNELS;
}

/* After a reset that cuCtxGetId could not show: the function handles are
 * dead; forget them so that the next launch loads the kernels again. */
static void forget_kernels(int device)
{
    pthread_mutex_lock(&mu);
    devices[device].gather = devices[device].scatter = NULL;
    pthread_mutex_unlock(&mu);
}

static int launch(const tsnap_view *v, uint64_t first, uint64_t n, void *buf, void *s,
                  bool gather)
{
    CUfunction fg, fs;
    CUresult rc;
    tsnap_kview kv;
    bool repeats = false;

    if (v->ndim > TSNAP_KVIEW_MAX_NDIM)
        return (int)CUDA_ERROR_INVALID_VALUE;
    memset(&kv, 0, sizeof kv);
    kv.base = v->base;
    kv.ndim = v->ndim;
    kv.itemsize = (int)v->itemsize;
    for (int k = 0; k < v->ndim; k++) {
        kv.shape[k] = v->shape[k];
        kv.strides[k] = v->strides[k];
        repeats = repeats || (v->strides[k] == 0 && v->shape[k] > 1);
    }
    /* The widest word that every address and the element size allow. */
    uintptr_t bits = (uintptr_t)v->base | (uintptr_t)buf | v->itemsize;
    for (int k = 0; k < v->ndim; k++)
        bits |= (uintptr_t)(v->strides[k] * (int64_t)v->itemsize);
    kv.word = bits % 8 == 0 ? 8 : bits % 4 == 0 ? 4 : bits % 2 == 0 ? 2 : 1;
    unsigned long long f = first, count = n;
    void *args[] = {&kv, &f, &count, &buf};
    unsigned threads = 256, blocks = (unsigned)((n + threads - 1) / threads);
    blocks = blocks > 4096 ? 4096 : blocks ? blocks : 1;
    if (!gather && repeats) /* one element for many: in order, so the last one wins */
        threads = blocks = 1;
    for (int tries = 0; tries < 2; tries++) {
        if ((rc = kernels(v->device, &fg, &fs)) != CUDA_SUCCESS)
            break;
        rc = D.cuLaunchKernel(gather ? fg : fs, blocks, 1, 1, threads, 1, 1, 0, (CUstream)s,
                              args, NULL);
        if (rc != CUDA_ERROR_INVALID_HANDLE && rc != CUDA_ERROR_CONTEXT_IS_DESTROYED)
            break;
        forget_kernels(v->device);
    }
    return (int)rc;
}

static int gather(const tsnap_view *v, uint64_t first, uint64_t n, void *dst, void *s)
{
    return launch(v, first, n, dst, s, true);
}

static int scatter(const tsnap_view *v, uint64_t first, uint64_t n, const void *src, void *s)
{
    return launch(v, first, n, (void *)src, s, false);
}

static const tsnap_cuda_ops RUNTIME = {
    "CUDA driver", device_count, enter, leave, current_device, generation, pointer_kind,
    stream_create, stream_destroy, stream_sync,
    stream_wait_event, event_create, event_destroy, event_record, event_sync, host_alloc,
    host_free, dev_alloc, dev_free, copy, gather, scatter, error_string,
};

const tsnap_cuda_ops *tsnap__cuda_runtime(void) { return &RUNTIME; }

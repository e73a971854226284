/*
 * cuda.c - the CUDA runtime table of device.c, over the CUDA driver API.
 *
 * Built when the CUDA toolkit is found.  The driver (libcuda.so.1) is
 * opened at the first use, not linked: the library, its static form and
 * the Python extension run on machines without it, where a CUDA tensor
 * gets TSNAP_ENOCUDA saying so.  Each device's primary context is the one
 * used, the context the CUDA runtime (and so PyTorch, CuPy, JAX) uses, so
 * their streams and pointers are ours to use.  The packing kernels are
 * kernels.cu, compiled into a fat binary that is part of this library.
 */
#include <cuda.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

extern const unsigned char tsnap_kernels_fatbin[];

#define KVIEW_MAX_NDIM 32
#define MAX_DEVICES 64
#define NO_DRIVER 999 /* not a CUresult: libcuda.so.1 did not load */

/* kernels.cu's argument, field for field. */
typedef struct tsnap_kview {
    char *base;
    long long shape[KVIEW_MAX_NDIM];
    long long strides[KVIEW_MAX_NDIM];
    int ndim;
    int itemsize;
    int word;
} tsnap_kview;

#define STR2(x) #x
#define STR(x) STR2(x)
#define FN(name) __typeof__(name) *name
static struct driver {
    FN(cuInit);
    FN(cuDeviceGetCount);
    FN(cuDeviceGet);
    FN(cuDevicePrimaryCtxRetain);
    FN(cuCtxSetCurrent);
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

static pthread_once_t once = PTHREAD_ONCE_INIT;
static CUresult init_result = CUDA_ERROR_NOT_INITIALIZED;
static char driver_why[256];

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct device_state {
    CUcontext ctx;
    CUfunction gather, scatter;
    CUresult kernels_result; /* 0 until tried */
    bool kernels_tried;
} devices[MAX_DEVICES];

static void load_driver(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(driver_why, sizeof driver_why,
                 "the NVIDIA driver's libcuda.so.1 cannot be loaded (%s)", dlerror());
        init_result = (CUresult)NO_DRIVER;
        return;
    }
#define LOAD(name)                                                                 \
    if (!(*(void **)&D.name = dlsym(h, STR(name)))) {                              \
        snprintf(driver_why, sizeof driver_why, "libcuda.so.1 has no %s", STR(name)); \
        init_result = (CUresult)NO_DRIVER;                                         \
        return;                                                                    \
    }
    LOAD(cuInit)
    LOAD(cuDeviceGetCount)
    LOAD(cuDeviceGet)
    LOAD(cuDevicePrimaryCtxRetain)
    LOAD(cuCtxSetCurrent)
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
    init_result = D.cuInit(0);
}

static const char *error_string(int err)
{
    const char *s = NULL;
    if (err == NO_DRIVER)
        return driver_why;
    if (D.cuGetErrorString && D.cuGetErrorString((CUresult)err, &s) == CUDA_SUCCESS && s)
        return s;
    return "unknown CUDA error";
}

static int device_count(int *n)
{
    pthread_once(&once, load_driver);
    *n = 0;
    if (init_result != CUDA_SUCCESS)
        return (int)init_result;
    return (int)D.cuDeviceGetCount(n);
}

static int set_device(int device)
{
    CUresult rc = CUDA_SUCCESS;
    if (device < 0 || device >= MAX_DEVICES)
        return (int)CUDA_ERROR_INVALID_DEVICE;
    pthread_mutex_lock(&mu);
    struct device_state *d = &devices[device];
    if (!d->ctx) {
        CUdevice dev;
        if ((rc = D.cuDeviceGet(&dev, device)) == CUDA_SUCCESS)
            rc = D.cuDevicePrimaryCtxRetain(&d->ctx, dev); /* kept for the process */
    }
    pthread_mutex_unlock(&mu);
    return rc != CUDA_SUCCESS ? (int)rc : (int)D.cuCtxSetCurrent(d->ctx);
}

static int stream_create(void **s) { return (int)D.cuStreamCreate((CUstream *)s, CU_STREAM_NON_BLOCKING); }
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

/* The packing kernels of the current device, loaded on first use. */
static CUresult kernels(int device, CUfunction *gather, CUfunction *scatter)
{
    CUresult rc;
    pthread_mutex_lock(&mu);
    struct device_state *d = &devices[device];
    if (!d->kernels_tried) {
        CUmodule m;
        d->kernels_tried = true;
        d->kernels_result = D.cuModuleLoadData(&m, tsnap_kernels_fatbin);
        if (d->kernels_result == CUDA_SUCCESS)
            d->kernels_result = D.cuModuleGetFunction(&d->gather, m, "tsnap_gather");
        if (d->kernels_result == CUDA_SUCCESS)
            d->kernels_result = D.cuModuleGetFunction(&d->scatter, m, "tsnap_scatter");
    }
    rc = d->kernels_result;
    *gather = d->gather;
    *scatter = d->scatter;
    pthread_mutex_unlock(&mu);
    return rc;
}

static int launch(const tsnap_view *v, uint64_t first, uint64_t n, void *buf, void *s,
                  bool gather)
{
    CUfunction fg, fs;
    CUresult rc;
    tsnap_kview kv;
    bool repeats = false;

    if (v->ndim > KVIEW_MAX_NDIM)
        return (int)CUDA_ERROR_INVALID_VALUE;
    if ((rc = kernels(v->device, &fg, &fs)) != CUDA_SUCCESS)
        return (int)rc;
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
    return (int)D.cuLaunchKernel(gather ? fg : fs, blocks, 1, 1, threads, 1, 1, 0, (CUstream)s,
                                 args, NULL);
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
    "CUDA driver", device_count, set_device, stream_create, stream_destroy, stream_sync,
    stream_wait_event, event_create, event_destroy, event_record, event_sync, host_alloc,
    host_free, dev_alloc, dev_free, copy, gather, scatter, error_string,
};

const tsnap_cuda_ops *tsnap__cuda_runtime(void) { return &RUNTIME; }

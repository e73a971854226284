/*
 * test_device.c - tensors in CUDA memory, through a fake CUDA driver that
 * runs on the CPU, so that the staging and cuda.c run on every machine
 * with the toolkit.
 *
 * cuda.c takes its driver functions from fake_symbol() instead of
 * libcuda.so.1.  The fake keeps the driver's contracts strictly:
 *  - contexts: a stack per thread; every call but the device, context and
 *    pointer queries fails with CUDA_ERROR_INVALID_CONTEXT when the thread
 *    has none current, and a stream, module or allocation of another
 *    device's context is refused;
 *  - sticky errors: reading or writing memory that is not an allocation of
 *    the current device (or a buffer the test adopted as one) faults the
 *    context: from then on its calls fail with CUDA_ERROR_ILLEGAL_ADDRESS;
 *  - every allocation (pinned, device, streams, events) can be made to
 *    fail: the Nth, or at random; copies and waits likewise;
 *  - the stub library: every call returns CUDA_ERROR_STUB_LIBRARY (34);
 *  - cuPointerGetAttributes answers from the allocations, per device;
 *  - a reset (fake_reset, as cuDevicePrimaryCtxReset) frees everything of
 *    the device, gives its context a new id and kills its module;
 *  - streams: work queued on a stream runs only when something waits for
 *    it (an event or stream sync), and a stream waiting on another's event
 *    first runs that stream up to the event: a library that read a pinned
 *    buffer before waiting for its copy sees stale bytes.
 * The "device memory" is host memory.  fake_off() checks that nothing
 * handed out is left: pinned buffers, device buffers, streams, events.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

static DLTensor on_device(DLTensor t, int device)
{
    t.device.device_type = kDLCUDA;
    t.device.device_id = device;
    return t;
}

#ifdef TSNAP_TEST_GPU
#include <cuda.h>

/* ---- the fake driver ------------------------------------------------ */

#define FAKE_DEVICES 4
#define STR2(x) #x
#define STR(x) STR2(x)
#define FAKE_COPY_FAILURE CUDA_ERROR_ECC_UNCORRECTABLE

enum op_kind { OP_COPY, OP_GATHER, OP_SCATTER, OP_RECORD, OP_WAIT, OP_FILL };

typedef struct fstream fstream;
typedef struct fevent {
    int device;
    bool dead; /* freed by a reset */
    fstream *stream; /* where it was last recorded (NULL: done) */
    unsigned long seq;
    struct fevent *next;
} fevent;

typedef struct fop {
    enum op_kind kind;
    void *dst;
    const void *src;
    size_t n;
    tsnap_view v;
    uint64_t first, count;
    fstream *wait_on; /* OP_WAIT: that stream, through record `seq` */
    unsigned long seq;
    int fill;
} fop;

struct fstream {
    int device;
    bool dead;
    bool counted; /* the library's (not a test's): counts as live */
    fop ops[4096];
    size_t head, tail;  /* queued: [head, tail) */
    unsigned long done; /* the last record seq executed */
    struct fstream *next;
};

typedef struct fctx {
    int device;
    unsigned long long id;
    CUresult sticky; /* 0, or the error every call gets from now on */
    bool destroyed;  /* by a reset, until retained again */
} fctx;

typedef struct fmodule {
    int device;
    unsigned long long ctx_id; /* dead once the context has another id */
} fmodule;

typedef struct ffunc {
    fmodule *module;
    bool gather;
} ffunc;

enum alloc_kind { A_DEVICE, A_PINNED, A_ADOPTED };
typedef struct falloc {
    enum alloc_kind kind;
    char *p;
    size_t n;
    int device;
} falloc;

static struct fake {
    int devices;
    CUresult count_error, init_error, module_error;
    bool stub;
    int driver_version;
    int fail_copy_after; /* the copy after this many fails (-1: never) */
    CUresult copy_error; /* what it fails with (0: FAKE_COPY_FAILURE) */
    int copies;
    bool fail_sync;      /* event waits fail */
    long allocs;         /* allocations asked for (pinned, device, streams, events) */
    long fail_alloc_at;  /* that one fails (0: none) */
    unsigned fail_permille; /* allocations, copies and waits fail at random */
    unsigned seed;
    long host_live, dev_live, streams_live, events_live, pinned_made;
    long pinned_made_over_64k;
    unsigned long seq;
    unsigned long long next_id;
    fctx prim[FAKE_DEVICES];
    fmodule modules[FAKE_DEVICES * 64];
    int nmodules;
    ffunc funcs[FAKE_DEVICES * 64 * 2];
    falloc al[4096];
    int nal;
    fstream *streams;
    fevent *events;
    const char *missing; /* a symbol the "driver" lacks */
    bool reset_destroys; /* a reset destroys the context (else: a new id) */
    volatile int block_module, in_module; /* the fork test's */
} F;

static __thread fctx *stack[8];
static __thread int depth;

/* One lock for the fake's state: workers wait while the caller queues. */
static pthread_mutex_t fake_mu = PTHREAD_MUTEX_INITIALIZER;
#define LOCK() pthread_mutex_lock(&fake_mu)
#define UNLOCK() pthread_mutex_unlock(&fake_mu)

static fctx *current(void) { return depth ? stack[depth - 1] : NULL; }

/* What every call in a context does first (the lock held). */
static CUresult need_ctx(fctx **c)
{
    if (F.stub)
        return CUDA_ERROR_STUB_LIBRARY;
    if (!(*c = current()))
        return CUDA_ERROR_INVALID_CONTEXT;
    return (*c)->sticky;
}

/* need_ctx, and a live event. */
static CUresult need_event(fctx **c, const fevent *e)
{
    CUresult rc = need_ctx(c);
    return rc ? rc : !e || e->dead ? CUDA_ERROR_INVALID_HANDLE : CUDA_SUCCESS;
}

static bool random_failure(void)
{
    return F.fail_permille && (unsigned)rand_r(&F.seed) % 1000 < F.fail_permille;
}

static bool alloc_fails(void)
{
    F.allocs++;
    return (F.fail_alloc_at && F.allocs == F.fail_alloc_at) || random_failure();
}

static falloc *find_alloc(const void *p, size_t n)
{
    const char *c = p;
    for (int i = 0; i < F.nal; i++)
        if (c >= F.al[i].p && c + n <= F.al[i].p + F.al[i].n && (n || c < F.al[i].p + F.al[i].n))
            return &F.al[i];
    return NULL;
}

static void drop_alloc(falloc *a) { *a = F.al[--F.nal]; }

static CUresult add_alloc(enum alloc_kind kind, void *p, size_t n, int device)
{
    if (F.nal == (int)(sizeof F.al / sizeof F.al[0]))
        return CUDA_ERROR_OUT_OF_MEMORY;
    F.al[F.nal++] = (falloc){kind, p, n, device};
    return CUDA_SUCCESS;
}

/* Device memory of the current context's device: else the context faults. */
static bool on_device_or_fault(fctx *c, const void *p, size_t n)
{
    falloc *a = find_alloc(p, n);
    if (a && a->kind != A_PINNED && a->device == c->device)
        return true;
    c->sticky = CUDA_ERROR_ILLEGAL_ADDRESS;
    return false;
}

static bool pinned(const void *p, size_t n)
{
    falloc *a = find_alloc(p, n);
    return a && a->kind == A_PINNED;
}

static void run_stream(fstream *s, unsigned long upto);

static void run_op(fop *o)
{
    switch (o->kind) {
    case OP_COPY: memcpy(o->dst, o->src, o->n); break;
    case OP_GATHER: tsnap__gather(&o->v, o->first, o->count, o->dst); break;
    case OP_SCATTER: tsnap__scatter(&o->v, o->first, o->count, o->src); break;
    case OP_FILL: memset(o->dst, o->fill, o->n); break;
    case OP_RECORD: break;
    case OP_WAIT:
        if (o->wait_on)
            run_stream(o->wait_on, o->seq);
        break;
    }
}

/* Runs `s`'s queue through the record numbered `upto` (0: everything). */
static void run_stream(fstream *s, unsigned long upto)
{
    while (s->head < s->tail && (upto == 0 || s->done < upto)) {
        fop *o = &s->ops[s->head % 4096];
        s->head++;
        run_op(o);
        if (o->kind == OP_RECORD)
            s->done = o->seq;
    }
}

/* A stream the context may use: its own, or the legacy default (NULL). */
static CUresult check_stream(fctx *c, fstream *s)
{
    return !s || (!s->dead && s->device == c->device) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

static CUresult enqueue_locked(fstream *s, fop o)
{
    if (!s) { /* the legacy default stream: runs at once */
        run_op(&o);
        return CUDA_SUCCESS;
    }
    if (s->tail - s->head >= 4096)
        return CUDA_ERROR_OUT_OF_MEMORY;
    s->ops[s->tail++ % 4096] = o;
    return CUDA_SUCCESS;
}

static CUresult fk_cuInit(unsigned flags)
{
    (void)flags;
    return F.stub ? CUDA_ERROR_STUB_LIBRARY : F.init_error;
}

static CUresult fk_cuDriverGetVersion(int *v)
{
    if (F.stub)
        return CUDA_ERROR_STUB_LIBRARY;
    *v = F.driver_version;
    return CUDA_SUCCESS;
}

static CUresult fk_cuDeviceGetCount(int *n)
{
    if (F.stub)
        return CUDA_ERROR_STUB_LIBRARY;
    *n = F.devices;
    return F.count_error;
}

static CUresult fk_cuDeviceGet(CUdevice *d, int ordinal)
{
    if (ordinal < 0 || ordinal >= F.devices)
        return CUDA_ERROR_INVALID_DEVICE;
    *d = ordinal;
    return CUDA_SUCCESS;
}

static CUresult fk_cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice d)
{
    if (d < 0 || d >= F.devices)
        return CUDA_ERROR_INVALID_DEVICE;
    LOCK();
    F.prim[d].destroyed = false;
    UNLOCK();
    *ctx = (CUcontext)&F.prim[d];
    return CUDA_SUCCESS;
}

static CUresult fk_cuCtxGetCurrent(CUcontext *ctx)
{
    *ctx = (CUcontext)current();
    return CUDA_SUCCESS;
}

/* The top of the thread's stack becomes `ctx`; NULL pops it. */
static CUresult fk_cuCtxSetCurrent(CUcontext ctx)
{
    if (ctx && ((fctx *)ctx)->destroyed)
        return CUDA_ERROR_CONTEXT_IS_DESTROYED;
    if (!ctx) {
        if (depth)
            depth--;
    } else if (depth) {
        stack[depth - 1] = (fctx *)ctx;
    } else {
        stack[depth++] = (fctx *)ctx;
    }
    return CUDA_SUCCESS;
}

static CUresult fk_cuCtxGetDevice(CUdevice *d)
{
    fctx *c = current();
    if (!c)
        return CUDA_ERROR_INVALID_CONTEXT;
    *d = c->device;
    return CUDA_SUCCESS;
}

static CUresult fk_cuCtxGetId(CUcontext ctx, unsigned long long *id)
{
    LOCK();
    *id = ((fctx *)ctx)->id;
    UNLOCK();
    return CUDA_SUCCESS;
}

static CUresult fk_cuPointerGetAttributes(unsigned n, CUpointer_attribute *at, void **data,
                                          CUdeviceptr p)
{
    LOCK();
    falloc *a = find_alloc((void *)(uintptr_t)p, 0);
    for (unsigned i = 0; i < n; i++)
        switch (at[i]) {
        case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
            *(unsigned *)data[i] = !a ? 0 : a->kind == A_PINNED ? CU_MEMORYTYPE_HOST
                                                                : CU_MEMORYTYPE_DEVICE;
            break;
        case CU_POINTER_ATTRIBUTE_IS_MANAGED: *(unsigned *)data[i] = 0; break;
        case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL: *(int *)data[i] = a ? a->device : -2; break;
        default: break;
        }
    UNLOCK();
    return F.stub ? CUDA_ERROR_STUB_LIBRARY : CUDA_SUCCESS;
}

static CUresult fk_cuStreamCreate(CUstream *out, unsigned flags)
{
    fctx *c;
    fstream *s = NULL;
    (void)flags;
    LOCK();
    CUresult rc = need_ctx(&c);
    if (!rc && (alloc_fails() || !(s = calloc(1, sizeof *s))))
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    if (!rc) {
        s->device = c->device;
        s->counted = true;
        s->next = F.streams;
        F.streams = s;
        F.streams_live++;
        *out = (CUstream)s;
    }
    UNLOCK();
    return rc;
}

static void unlink_stream(fstream *s)
{
    for (fstream **p = &F.streams; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            return;
        }
}

static CUresult fk_cuStreamDestroy(CUstream h)
{
    fctx *c;
    fstream *s = (fstream *)h;
    LOCK();
    CUresult rc = need_ctx(&c);
    if (!rc && (!s || s->dead))
        rc = CUDA_ERROR_INVALID_HANDLE;
    if (!rc) {
        run_stream(s, 0); /* what is queued still runs */
        unlink_stream(s);
        F.streams_live -= s->counted;
        free(s);
    }
    UNLOCK();
    return rc;
}

static CUresult fk_cuStreamSynchronize(CUstream h)
{
    fctx *c;
    LOCK();
    CUresult rc = need_ctx(&c);
    if (!rc && !(rc = check_stream(c, (fstream *)h)) && h)
        run_stream((fstream *)h, 0);
    if (!rc)
        rc = c->sticky;
    UNLOCK();
    return rc;
}

static CUresult fk_cuEventCreate(CUevent *out, unsigned flags)
{
    fctx *c;
    fevent *e = NULL;
    (void)flags;
    LOCK();
    CUresult rc = need_ctx(&c);
    if (!rc && (alloc_fails() || !(e = calloc(1, sizeof *e))))
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    if (!rc) {
        e->device = c->device;
        e->next = F.events;
        F.events = e;
        F.events_live++;
        *out = (CUevent)e;
    }
    UNLOCK();
    return rc;
}

static CUresult fk_cuEventDestroy(CUevent h)
{
    fctx *c;
    fevent *e = (fevent *)h;
    LOCK();
    CUresult rc = need_event(&c, e);
    if (!rc) {
        for (fevent **p = &F.events; *p; p = &(*p)->next)
            if (*p == e) {
                *p = e->next;
                break;
            }
        F.events_live--;
        free(e);
    }
    UNLOCK();
    return rc;
}

static CUresult fk_cuEventRecord(CUevent h, CUstream sh)
{
    fctx *c;
    fevent *e = (fevent *)h;
    LOCK();
    CUresult rc = need_event(&c, e);
    if (!rc && e->device != c->device)
        rc = CUDA_ERROR_INVALID_HANDLE;
    if (!rc && !(rc = check_stream(c, (fstream *)sh))) {
        e->stream = (fstream *)sh;
        e->seq = ++F.seq;
        rc = enqueue_locked((fstream *)sh, (fop){.kind = OP_RECORD, .seq = e->seq});
    }
    UNLOCK();
    return rc;
}

static CUresult fk_cuEventSynchronize(CUevent h)
{
    fctx *c;
    fevent *e = (fevent *)h;
    LOCK();
    CUresult rc = need_event(&c, e);
    if (!rc && (F.fail_sync || random_failure()))
        rc = FAKE_COPY_FAILURE;
    if (!rc && e->stream)
        run_stream(e->stream, e->seq);
    if (!rc)
        rc = c->sticky;
    UNLOCK();
    return rc;
}

/* Like cuStreamWaitEvent: what the event stands for now, not later. */
static CUresult fk_cuStreamWaitEvent(CUstream sh, CUevent h, unsigned flags)
{
    fctx *c;
    fevent *e = (fevent *)h;
    (void)flags;
    LOCK();
    CUresult rc = need_event(&c, e);
    if (!rc && !(rc = check_stream(c, (fstream *)sh)))
        rc = enqueue_locked((fstream *)sh,
                            (fop){.kind = OP_WAIT, .wait_on = e->stream, .seq = e->seq});
    UNLOCK();
    return rc;
}

static CUresult alloc_memory(void **p, size_t n, enum alloc_kind kind)
{
    fctx *c;
    LOCK();
    CUresult rc = need_ctx(&c);
    *p = NULL;
    if (!rc && (alloc_fails() || !(*p = malloc(n))))
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    if (!rc && (rc = add_alloc(kind, *p, n, c->device)) != CUDA_SUCCESS) {
        free(*p);
        *p = NULL;
    }
    if (!rc && kind == A_PINNED) {
        F.host_live++;
        F.pinned_made++;
        F.pinned_made_over_64k += n > 65536;
    } else if (!rc) {
        F.dev_live++;
    }
    UNLOCK();
    return rc;
}

static CUresult free_memory(void *p, enum alloc_kind kind)
{
    fctx *c;
    LOCK();
    CUresult rc = need_ctx(&c);
    falloc *a = rc ? NULL : find_alloc(p, 0);
    if (!rc && (!a || a->p != p || a->kind != kind))
        rc = CUDA_ERROR_INVALID_VALUE;
    if (!rc) {
        drop_alloc(a);
        free(p);
        if (kind == A_PINNED)
            F.host_live--;
        else
            F.dev_live--;
    }
    UNLOCK();
    return rc;
}

static CUresult fk_cuMemHostAlloc(void **p, size_t n, unsigned flags)
{
    (void)flags;
    return alloc_memory(p, n, A_PINNED);
}

static CUresult fk_cuMemFreeHost(void *p) { return free_memory(p, A_PINNED); }

static CUresult fk_cuMemAlloc(CUdeviceptr *p, size_t n)
{
    void *q = NULL;
    CUresult rc = alloc_memory(&q, n, A_DEVICE);
    *p = (CUdeviceptr)(uintptr_t)q;
    return rc;
}

static CUresult fk_cuMemFree(CUdeviceptr p) { return free_memory((void *)(uintptr_t)p, A_DEVICE); }

/* A copy between pinned host memory and device memory of the current
 * device; anything else faults (the device side) or is refused. */
static CUresult copy(void *dst, const void *src, size_t n, CUstream sh, bool to_host)
{
    fctx *c;
    LOCK();
    CUresult rc = need_ctx(&c);
    if (!rc)
        rc = check_stream(c, (fstream *)sh);
    if (!rc && ((F.fail_copy_after >= 0 && F.copies++ >= F.fail_copy_after) || random_failure()))
        rc = F.copy_error ? F.copy_error : FAKE_COPY_FAILURE;
    if (!rc && !pinned(to_host ? dst : src, n))
        rc = CUDA_ERROR_INVALID_VALUE;
    if (!rc && on_device_or_fault(c, to_host ? src : dst, n))
        rc = enqueue_locked((fstream *)sh, (fop){.kind = OP_COPY, .dst = dst, .src = src, .n = n});
    UNLOCK();
    return rc;
}

static CUresult fk_cuMemcpyDtoHAsync(void *dst, CUdeviceptr src, size_t n, CUstream s)
{
    return copy(dst, (const void *)(uintptr_t)src, n, s, true);
}

static CUresult fk_cuMemcpyHtoDAsync(CUdeviceptr dst, const void *src, size_t n, CUstream s)
{
    return copy((void *)(uintptr_t)dst, src, n, s, false);
}

static CUresult fk_cuModuleLoadData(CUmodule *m, const void *image)
{
    fctx *c;
    (void)image;
    F.in_module = 1;
    while (F.block_module) /* the fork test forks meanwhile */
        usleep(1000);
    LOCK();
    CUresult rc = need_ctx(&c);
    if (!rc && F.module_error)
        rc = F.module_error;
    if (!rc && F.nmodules == (int)(sizeof F.modules / sizeof F.modules[0]))
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    if (!rc) {
        fmodule *fm = &F.modules[F.nmodules++];
        fm->device = c->device;
        fm->ctx_id = c->id;
        *m = (CUmodule)fm;
    }
    UNLOCK();
    return rc;
}

static bool module_alive(const fmodule *m) { return m && F.prim[m->device].id == m->ctx_id; }

static CUresult fk_cuModuleGetFunction(CUfunction *f, CUmodule h, const char *name)
{
    fctx *c;
    fmodule *m = (fmodule *)h;
    LOCK();
    CUresult rc = need_ctx(&c);
    if (!rc && !module_alive(m))
        rc = CUDA_ERROR_INVALID_HANDLE;
    if (!rc && strcmp(name, "tsnap_gather") != 0 && strcmp(name, "tsnap_scatter") != 0)
        rc = CUDA_ERROR_NOT_FOUND;
    if (!rc) {
        ffunc *fn = &F.funcs[2 * (m - F.modules) + (name[6] == 's')];
        fn->module = m;
        fn->gather = name[6] == 'g';
        *f = (CUfunction)fn;
    }
    UNLOCK();
    return rc;
}

static CUresult fk_cuLaunchKernel(CUfunction h, unsigned gx, unsigned gy, unsigned gz,
                                  unsigned bx, unsigned by, unsigned bz, unsigned shared,
                                  CUstream sh, void **args, void **extra)
{
    fctx *c;
    ffunc *fn = (ffunc *)h;
    (void)gx, (void)gy, (void)gz, (void)bx, (void)by, (void)bz, (void)shared, (void)extra;
    LOCK();
    CUresult rc = need_ctx(&c);
    if (!rc && (!fn || !module_alive(fn->module) || fn->module->device != c->device))
        rc = CUDA_ERROR_INVALID_HANDLE;
    if (!rc)
        rc = check_stream(c, (fstream *)sh);
    if (!rc) {
        const tsnap_kview *kv = args[0];
        uint64_t first = *(unsigned long long *)args[1], n = *(unsigned long long *)args[2];
        void *buf = *(void **)args[3];
        tsnap_view v;
        memset(&v, 0, sizeof v);
        v.base = kv->base;
        v.ndim = kv->ndim;
        v.itemsize = (size_t)kv->itemsize;
        v.nelems = 1;
        for (int k = 0; k < kv->ndim; k++) {
            v.shape[k] = kv->shape[k];
            v.strides[k] = kv->strides[k];
            v.nelems *= (uint64_t)kv->shape[k];
        }
        if (on_device_or_fault(c, buf, (size_t)(n * v.itemsize)) &&
            on_device_or_fault(c, kv->base, 1))
            rc = enqueue_locked((fstream *)sh, fn->gather ? (fop){.kind = OP_GATHER, .dst = buf,
                                                                  .v = v, .first = first,
                                                                  .count = n}
                                                          : (fop){.kind = OP_SCATTER, .src = buf,
                                                                  .v = v, .first = first,
                                                                  .count = n});
    }
    UNLOCK();
    return rc;
}

static CUresult fk_cuGetErrorString(CUresult e, const char **s)
{
    if (F.stub)
        return CUDA_ERROR_STUB_LIBRARY;
    switch ((int)e) {
    case FAKE_COPY_FAILURE: *s = "fake copy failure"; break;
    case CUDA_ERROR_NO_DEVICE: *s = "fake: no CUDA-capable device is detected"; break;
    case CUDA_ERROR_INVALID_DEVICE: *s = "fake: invalid device ordinal"; break;
    case CUDA_ERROR_ILLEGAL_ADDRESS: *s = "fake: an illegal memory access was encountered"; break;
    case CUDA_ERROR_INVALID_HANDLE: *s = "fake: invalid resource handle"; break;
    case CUDA_ERROR_INVALID_CONTEXT: *s = "fake: invalid device context"; break;
    case CUDA_ERROR_OUT_OF_MEMORY: *s = "fake: out of memory"; break;
    case CUDA_ERROR_INVALID_VALUE: *s = "fake: invalid argument"; break;
    case CUDA_ERROR_UNSUPPORTED_PTX_VERSION:
        *s = "fake: the provided PTX was compiled with an unsupported toolchain";
        break;
    case CUDA_ERROR_UNKNOWN: *s = "fake: unknown error"; break;
    case CUDA_ERROR_CONTEXT_IS_DESTROYED: *s = "fake: context is destroyed"; break;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

#define SYM(name, fn) {STR(name), (void *)fn}
static const struct {
    const char *name;
    void *fn;
} SYMBOLS[] = {
    SYM(cuInit, fk_cuInit),
    SYM(cuDriverGetVersion, fk_cuDriverGetVersion),
    SYM(cuDeviceGetCount, fk_cuDeviceGetCount),
    SYM(cuDeviceGet, fk_cuDeviceGet),
    SYM(cuDevicePrimaryCtxRetain, fk_cuDevicePrimaryCtxRetain),
    SYM(cuCtxGetCurrent, fk_cuCtxGetCurrent),
    SYM(cuCtxSetCurrent, fk_cuCtxSetCurrent),
    SYM(cuCtxGetDevice, fk_cuCtxGetDevice),
    SYM(cuCtxGetId, fk_cuCtxGetId),
    SYM(cuPointerGetAttributes, fk_cuPointerGetAttributes),
    SYM(cuStreamCreate, fk_cuStreamCreate),
    SYM(cuStreamDestroy, fk_cuStreamDestroy),
    SYM(cuStreamSynchronize, fk_cuStreamSynchronize),
    SYM(cuStreamWaitEvent, fk_cuStreamWaitEvent),
    SYM(cuEventCreate, fk_cuEventCreate),
    SYM(cuEventDestroy, fk_cuEventDestroy),
    SYM(cuEventRecord, fk_cuEventRecord),
    SYM(cuEventSynchronize, fk_cuEventSynchronize),
    SYM(cuMemHostAlloc, fk_cuMemHostAlloc),
    SYM(cuMemFreeHost, fk_cuMemFreeHost),
    SYM(cuMemAlloc, fk_cuMemAlloc),
    SYM(cuMemFree, fk_cuMemFree),
    SYM(cuMemcpyDtoHAsync, fk_cuMemcpyDtoHAsync),
    SYM(cuMemcpyHtoDAsync, fk_cuMemcpyHtoDAsync),
    SYM(cuModuleLoadData, fk_cuModuleLoadData),
    SYM(cuModuleGetFunction, fk_cuModuleGetFunction),
    SYM(cuLaunchKernel, fk_cuLaunchKernel),
    SYM(cuGetErrorString, fk_cuGetErrorString),
};

static void *fake_symbol(const char *name)
{
    if (F.missing && strcmp(name, F.missing) == 0)
        return NULL;
    for (size_t i = 0; i < sizeof SYMBOLS / sizeof SYMBOLS[0]; i++)
        if (strcmp(SYMBOLS[i].name, name) == 0)
            return SYMBOLS[i].fn;
    return NULL;
}

/* ---- what the tests do to the fake ----------------------------------- */

/* A fresh driver with one device and nothing to fail. */
static void fake_on(void)
{
    /* the pinned buffers kept from the real driver go back to it */
    tsnap__cuda_set_ops(NULL);
    LOCK();
    memset(&F, 0, sizeof F);
    F.devices = 1;
    F.fail_copy_after = -1;
    F.driver_version = CUDA_VERSION;
    for (int d = 0; d < FAKE_DEVICES; d++)
        F.prim[d] = (fctx){d, ++F.next_id, CUDA_SUCCESS, false};
    UNLOCK();
    depth = 0;
    tsnap__cuda_set_driver(fake_symbol);
}

/* Memory of the test's that stands for device memory of `device`. */
static void fake_adopt(const void *p, size_t n, int device)
{
    LOCK();
    if (p && n)
        add_alloc(A_ADOPTED, (void *)p, n, device);
    UNLOCK();
}

static void fake_adopt_caseset(const caseset *cs, int device)
{
    for (size_t i = 0; i < cs->n; i++)
        fake_adopt(cs->v[i].base, cs->v[i].base_bytes, device);
}

/* A stream of the test's own (a framework's) on `device`. */
static fstream *fake_stream(int device)
{
    fstream *s = calloc(1, sizeof *s);
    LOCK();
    s->device = device;
    s->next = F.streams;
    F.streams = s;
    UNLOCK();
    return s;
}

/* As cuDevicePrimaryCtxReset: everything of the device is freed. */
static void fake_reset(int device)
{
    LOCK();
    for (int i = F.nal - 1; i >= 0; i--)
        if (F.al[i].device == device && F.al[i].kind != A_ADOPTED) {
            if (F.al[i].kind == A_PINNED)
                F.host_live--;
            else
                F.dev_live--;
            free(F.al[i].p);
            drop_alloc(&F.al[i]);
        }
    for (fstream *s = F.streams; s; s = s->next)
        if (s->device == device && !s->dead) {
            s->dead = true;
            F.streams_live -= s->counted;
        }
    for (fevent *e = F.events; e; e = e->next)
        if (e->device == device && !e->dead) {
            e->dead = true;
            F.events_live--;
        }
    F.prim[device].id = ++F.next_id;
    F.prim[device].sticky = CUDA_SUCCESS;
    F.prim[device].destroyed = F.reset_destroys;
    UNLOCK();
}

/* Makes `device`'s context current on this thread, as a framework would
 * (-1: none). */
static void fake_make_current(int device)
{
    depth = 0;
    if (device >= 0)
        stack[depth++] = &F.prim[device];
}

static int fake_current_device(void) { return depth ? stack[depth - 1]->device : -1; }

/* Back to the real driver; everything the fake handed out came back. */
static void fake_off(void)
{
    tsnap__cuda_set_ops(NULL); /* frees the pinned buffers kept */
    CHECK_MSG(F.host_live == 0 && F.dev_live == 0 && F.streams_live == 0 && F.events_live == 0,
              "left over: %ld pinned, %ld device buffers, %ld streams, %ld events", F.host_live,
              F.dev_live, F.streams_live, F.events_live);
    LOCK();
    while (F.streams) {
        fstream *s = F.streams;
        F.streams = s->next;
        free(s);
    }
    while (F.events) {
        fevent *e = F.events;
        F.events = e->next;
        free(e);
    }
    for (int i = 0; i < F.nal; i++)
        if (F.al[i].kind != A_ADOPTED)
            free(F.al[i].p);
    F.nal = 0;
    UNLOCK();
    depth = 0;
    tsnap__cuda_set_driver(NULL);
}

/* ---- puts ---------------------------------------------------------- */

static void check_puts_from_device_memory(const optset *o, const char *label, int threads)
{
    rng r;
    rng_init(&r, label);
    caseset cs;
    caseset_build(&cs, &r);
    const char *path = tpath("dev.h5");
    tsnap_write_options opts;
    optset_apply(o, &opts);
    opts.threads = threads;
    tsnap_writer *w = NULL;
    fake_on();
    fake_adopt_caseset(&cs, 0);
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, &opts));
    for (size_t i = 0; i < cs.n; i++) {
        ctx_set("%s [%s]", cs.v[i].name, o->label);
        DLTensor t = on_device(cs.v[i].t, 0);
        CHECK_OK(tsnap_writer_put(w, cs.v[i].name, &t));
    }
    ctx_clear();
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    fake_off();
    caseset_check_file(&cs, path, o->label); /* read back on the host, checksums included */
    caseset_free(&cs);
}

static void test_every_case_saves_from_device_memory_uncompressed(void)
{
    check_puts_from_device_memory(&OPT_PLAIN, __func__, 2);
}

static void test_every_case_saves_from_device_memory_in_tiny_deflate_chunks(void)
{
    check_puts_from_device_memory(&OPT_TINY_DEFLATE, __func__, 4);
}

static void test_every_case_saves_from_device_memory_on_one_thread(void)
{
    check_puts_from_device_memory(&OPT_SMALL, __func__, 1);
}

/* A kernel queued on the caller's stream writes the tensor; the put on
 * that stream must see what it wrote. */
static void test_a_put_on_the_callers_stream_sees_its_queued_work(void)
{
    fake_on();
    enum { N = 300000 }; /* several chunks */
    unsigned char *dev = alloc_filled(N, 1);
    int64_t shape[1] = {N};
    DLTensor t = on_device(cpu_tensor(dev, TSNAP_UINT8, 1, shape, NULL, 0), 0);
    fake_adopt(dev, N, 0);
    fstream *caller = fake_stream(0);
    LOCK();
    CHECK_FATAL(enqueue_locked(caller, (fop){.kind = OP_FILL, .dst = dev, .n = N, .fill = 0x7e}) ==
                0);
    UNLOCK();
    const char *path = tpath("ordered.h5");
    tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
    o.chunk_bytes = 65536;
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, &o));
    CHECK_OK(tsnap_writer_put_stream(w, "x", &t, caller));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    fake_off();
    unsigned char *got = alloc_filled(N, 0), *want = alloc_filled(N, 0x7e);
    tsnap_reader *rd = open_reader(path);
    DLTensor dst = cpu_tensor(got, TSNAP_UINT8, 1, shape, NULL, 0);
    CHECK_OK(tsnap_reader_read(rd, "x", NULL, NULL, NULL, &dst));
    CHECK_MEM(got, want, N, "what the caller's stream wrote before the put");
    tsnap_reader_free(rd);
    free(got);
    free(want);
    free(dev);
}

/* Pinned host memory (kDLCUDAHost) is read and written by the CPU after
 * the work queued on the caller's stream, as device memory is copied. */
static void test_pinned_host_memory_is_ordered_on_the_callers_stream(void)
{
    enum { N = 100000 };
    int64_t shape[1] = {N};
    unsigned char *want = alloc_filled(N, 0x7e), *got = alloc_filled(N, 0);
    const char *path = tpath("pinned-host.h5");
    fake_on();
    void *pin = NULL, *saved = NULL;
    const tsnap_cuda_ops *ops = tsnap__cuda_runtime();
    CHECK_FATAL(ops->enter(0, &saved) == 0 && ops->host_alloc(&pin, N) == 0);
    ops->leave(saved);
    memset(pin, 0x11, N);
    DLTensor t = cpu_tensor(pin, TSNAP_UINT8, 1, shape, NULL, 0);
    t.device.device_type = kDLCUDAHost;
    fstream *caller = fake_stream(0);
    LOCK();
    enqueue_locked(caller, (fop){.kind = OP_FILL, .dst = pin, .n = N, .fill = 0x7e});
    UNLOCK();
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_OK(tsnap_writer_put_stream(w, "x", &t, caller));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    /* a read into it comes after what is queued (a fill with zeros) too */
    LOCK();
    enqueue_locked(caller, (fop){.kind = OP_FILL, .dst = pin, .n = N, .fill = 0});
    UNLOCK();
    tsnap_reader *rd = open_reader(path);
    CHECK_OK(tsnap_reader_read_stream(rd, "x", NULL, NULL, NULL, &t, caller));
    LOCK();
    run_stream(caller, 0);
    UNLOCK();
    CHECK_MEM(pin, want, N, "read into pinned memory after the stream's work");
    DLTensor h = cpu_tensor(got, TSNAP_UINT8, 1, shape, NULL, 0);
    CHECK_OK(tsnap_reader_read(rd, "x", NULL, NULL, NULL, &h));
    CHECK_MEM(got, want, N, "what the caller's stream wrote before the put");
    tsnap_reader_free(rd);
    CHECK_FATAL(ops->enter(0, &saved) == 0);
    ops->host_free(pin);
    ops->leave(saved);
    fake_off();
    /* where CUDA cannot be used, it is host memory as before */
    fake_on();
    F.devices = 0;
    F.count_error = CUDA_ERROR_NO_DEVICE;
    t.data = got;
    tsnap_writer *w2 = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w2, tpath("no-device.h5"), NULL));
    CHECK_OK(tsnap_writer_put_stream(w2, "x", &t, NULL));
    CHECK_OK(tsnap_writer_commit(w2));
    tsnap_writer_free(w2);
    fake_off();
    free(want);
    free(got);
}

/* ---- asynchronous puts ------------------------------------------------ */

/* Every case put asynchronously, waited for, then overwritten: the file
 * holds what the tensors held when they were staged. */
static void test_async_puts_write_what_the_tensors_held_before_the_wait_returned(void)
{
    rng r;
    rng_init(&r, __func__);
    caseset cs;
    caseset_build(&cs, &r);
    const char *path = tpath("async.h5");
    tsnap_write_options opts;
    optset_apply(&OPT_SMALL_DEFLATE, &opts);
    tsnap_writer *w = NULL;
    fake_on();
    fake_adopt_caseset(&cs, 0);
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, &opts));
    for (size_t i = 0; i < cs.n; i++) {
        ctx_set("%s", cs.v[i].name);
        DLTensor t = on_device(cs.v[i].t, 0);
        CHECK_OK(tsnap_writer_put_async(w, cs.v[i].name, &t, NULL));
    }
    ctx_clear();
    CHECK_OK(tsnap_writer_wait(w));
    for (size_t i = 0; i < cs.n; i++) /* the caller reuses its memory */
        memset(cs.v[i].base, 0xee, cs.v[i].base_bytes);
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    fake_off();
    caseset_check_file(&cs, path, "as it was when staged");
    caseset_free(&cs);
}

static void test_async_puts_are_written_at_commit_and_their_names_are_taken(void)
{
    rng r;
    rng_init(&r, __func__);
    enum { N = 100000 };
    float *a = malloc(N * 4), *b = malloc(N * 4), *got = malloc(N * 4);
    rng_fill(&r, a, N * 4);
    rng_fill(&r, b, N * 4);
    int64_t shape[1] = {N};
    DLTensor ta = on_device(cpu_tensor(a, TSNAP_FLOAT32, 1, shape, NULL, 0), 0);
    DLTensor tb = cpu_tensor(b, TSNAP_FLOAT32, 1, shape, NULL, 0);
    const char *path = tpath("names.h5");
    tsnap_writer *w = NULL;
    fake_on();
    fake_adopt(a, N * 4, 0);
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_OK(tsnap_writer_put_async(w, "g/a", &ta, NULL));
    CHECK_ERR(tsnap_writer_put_async(w, "g/a", &ta, NULL), TSNAP_EEXISTS);
    CHECK_ERRMSG_HAS("pending");
    CHECK_ERR(tsnap_writer_put(w, "g/a/deeper", &tb), TSNAP_EEXISTS);
    CHECK_ERR(tsnap_writer_put_async(w, "g", &ta, NULL), TSNAP_EEXISTS);
    CHECK_OK(tsnap_writer_put_async(w, "g/b", &tb, NULL)); /* host memory: written now */
    CHECK_OK(tsnap_writer_commit(w)); /* waits for g/a itself */
    tsnap_writer_free(w);
    fake_off();
    tsnap_reader *rd = open_reader(path);
    CHECK_I64(tsnap_reader_count(rd), 2);
    DLTensor dst = cpu_tensor(got, TSNAP_FLOAT32, 1, shape, NULL, 0);
    CHECK_OK(tsnap_reader_read_verified(rd, "g/a", &dst));
    CHECK_MEM(got, a, N * 4, "g/a");
    CHECK_OK(tsnap_reader_read_verified(rd, "g/b", &dst));
    CHECK_MEM(got, b, N * 4, "g/b");
    tsnap_reader_free(rd);
    free(a);
    free(b);
    free(got);
}

static void test_async_put_failures_surface_at_the_call_the_wait_or_the_commit(void)
{
    enum { N = 5000 };
    float *a = malloc(N * 4);
    for (int i = 0; i < N; i++)
        a[i] = (float)i * 0.5f;
    int64_t shape[1] = {N};
    DLTensor t = on_device(cpu_tensor(a, TSNAP_FLOAT32, 1, shape, NULL, 0), 0);
    DLTensor host = cpu_tensor(a, TSNAP_FLOAT32, 1, shape, NULL, 0);
    const char *path = tpath("fails.h5");
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_OK(tsnap_writer_put(w, "kept", &host));
    CHECK_OK_FATAL(tsnap_writer_commit(w));
    tsnap_writer_free(w);

    fake_on();
    fake_adopt(a, N * 4, 0);
    tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
    o.overwrite = 1;
    /* the copy cannot be queued: refused at once, nothing pending */
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, &o));
    F.fail_copy_after = 0;
    CHECK_ERR(tsnap_writer_put_async(w, "x", &t, NULL), TSNAP_ECUDA);
    CHECK_ERRMSG_HAS("x");
    F.fail_copy_after = -1;
    CHECK_OK(tsnap_writer_put_async(w, "x", &t, NULL));
    /* it fails later: the wait says so, and the commit is refused */
    F.fail_sync = 1;
    CHECK_ERR(tsnap_writer_wait(w), TSNAP_ECUDA);
    CHECK_ERRMSG_HAS("waiting for a copy");
    CHECK_NEG(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    /* failing only at commit */
    F.fail_sync = 0;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, &o));
    CHECK_OK(tsnap_writer_put_async(w, "y", &t, NULL));
    F.fail_sync = 1;
    CHECK_ERR(tsnap_writer_commit(w), TSNAP_ECUDA);
    tsnap_writer_free(w);
    F.fail_sync = 0;
    /* abandoned with a put pending: nothing leaks (fake_off checks) */
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, &o));
    CHECK_OK(tsnap_writer_put_async(w, "z", &t, NULL));
    CHECK_OK(tsnap_writer_abort(w));
    tsnap_writer_free(w);
    fake_off();
    /* the earlier snapshot is whole and alone */
    tsnap_reader *rd = open_reader(path);
    CHECK_I64(tsnap_reader_count(rd), 1);
    CHECK_STR(tsnap_reader_name(rd, 0), "kept");
    CHECK_OK(tsnap_reader_verify(rd, NULL));
    tsnap_reader_free(rd);
    free(a);
}

/* ---- reads --------------------------------------------------------- */

static void test_every_case_reads_into_device_memory_contiguous_and_strided(void)
{
    rng r;
    rng_init(&r, __func__);
    caseset cs;
    caseset_build(&cs, &r);
    const char *path = tpath("host.h5");
    if (caseset_write(&cs, path, &OPT_SMALL_DEFLATE) != 0) {
        caseset_free(&cs);
        return;
    }
    fake_on();
    tsnap_reader *rd = open_reader(path);
    for (size_t i = 0; i < cs.n; i++) {
        const tcase *c = &cs.v[i];
        ctx_set("%s", c->name);
        int64_t shape[TSNAP_MAX_NDIM], strides[TSNAP_MAX_NDIM];
        memcpy(shape, c->shape, sizeof shape);
        unsigned char *got = alloc_filled(c->nbytes + 1, 0x5a);
        fake_adopt(got, c->nbytes + 1, 0);
        DLTensor dst = on_device(cpu_tensor(got, c->dtype, c->ndim, shape, NULL, 0), 0);
        if (CHECK_OK(tsnap_reader_read(rd, c->name, NULL, NULL, NULL, &dst)))
            CHECK_MEM(got, c->expected, c->nbytes, "read into device memory");
        /* into a Fortran-order destination: unpacked on the device */
        if (c->ndim >= 2 && c->nbytes > 0) {
            int64_t s = 1;
            for (int k = 0; k < c->ndim; k++) {
                strides[k] = s;
                s *= shape[k];
            }
            memset(got, 0x5a, c->nbytes);
            dst = on_device(cpu_tensor(got, c->dtype, c->ndim, shape, strides, 0), 0);
            if (CHECK_OK(tsnap_reader_read(rd, c->name, NULL, NULL, NULL, &dst))) {
                tsnap_view fv;
                CHECK_OK(tsnap__view_init(&fv, &dst, NULL, NULL));
                fv.device = -1;
                unsigned char *back = alloc_filled(c->nbytes, 0);
                tsnap__gather(&fv, 0, fv.nelems, back);
                CHECK_MEM(back, c->expected, c->nbytes, "read into a strided device tensor");
                free(back);
            }
        }
        LOCK();
        falloc *adopted = find_alloc(got, 0);
        if (adopted)
            drop_alloc(adopted);
        UNLOCK();
        free(got);
    }
    ctx_clear();
    tsnap_reader_free(rd);
    fake_off();
    caseset_free(&cs);
}

/* Selections larger than a slab: whole, a hyperslab with steps, and rows
 * longer than a slab (split inside the row). */
static void test_big_selections_read_into_device_memory_in_slabs(void)
{
    rng r;
    rng_init(&r, __func__);
    struct {
        int ndim;
        int64_t shape[3], start[3], count[3], step[3];
    } cases[] = {
        {3, {12, 1024, 1024}, {0, 0, 0}, {12, 1024, 1024}, {1, 1, 1}},
        {3, {12, 1024, 1024}, {1, 3, 2}, {10, 1000, 340}, {1, 1, 3}},
        {2, {2, 9000001}, {0, 0}, {2, 9000001}, {1, 1}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ctx_set("case %zu", c);
        int nd = cases[c].ndim;
        size_t n = (size_t)nelems(nd, cases[c].shape), m = (size_t)nelems(nd, cases[c].count);
        float *src = malloc(n * 4), *got = malloc(m * 4), *want = malloc(m * 4);
        CHECK_FATAL(src && got && want);
        rng_fill(&r, src, n * 4);
        const char *path = tpath("big.h5");
        tsnap_writer *w = NULL;
        DLTensor t = cpu_tensor(src, TSNAP_FLOAT32, nd, cases[c].shape, NULL, 0);
        CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
        CHECK_OK(tsnap_writer_put(w, "x", &t));
        CHECK_OK_FATAL(tsnap_writer_commit(w));
        tsnap_writer_free(w);
        tsnap_reader *rd = open_reader(path);
        /* the host read is the reference */
        DLTensor dst = cpu_tensor(want, TSNAP_FLOAT32, nd, cases[c].count, NULL, 0);
        CHECK_OK(tsnap_reader_read(rd, "x", cases[c].start, cases[c].count, cases[c].step, &dst));
        fake_on();
        fake_adopt(got, m * 4, 0);
        memset(got, 0, m * 4);
        dst = on_device(cpu_tensor(got, TSNAP_FLOAT32, nd, cases[c].count, NULL, 0), 0);
        CHECK_OK(tsnap_reader_read_stream(rd, "x", cases[c].start, cases[c].count,
                                          cases[c].step, &dst, NULL));
        CHECK_MEM(got, want, m * 4, "the selection, read into device memory in slabs");
        fake_off();
        tsnap_reader_free(rd);
        free(src);
        free(got);
        free(want);
    }
    ctx_clear();
}

/* ---- what goes wrong ------------------------------------------------ */

static void test_no_device_gives_enocuda_and_leaves_the_writer_usable(void)
{
    fake_on();
    F.devices = 0;
    F.count_error = CUDA_ERROR_NO_DEVICE;
    float v[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {2, 3};
    DLTensor host = cpu_tensor(v, TSNAP_FLOAT32, 2, shape, NULL, 0);
    DLTensor dev = on_device(host, 0);
    const char *path = tpath("nodev.h5");
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_ERR(tsnap_writer_put(w, "gpu/x", &dev), TSNAP_ENOCUDA);
    CHECK_ERRMSG_HAS("gpu/x");
    CHECK_ERRMSG_HAS("no CUDA-capable device");
    F.devices = 1;
    F.count_error = 0;
    DLTensor dev3 = on_device(host, 3);
    CHECK_ERR(tsnap_writer_put(w, "gpu/x", &dev3), TSNAP_ENOCUDA);
    CHECK_ERRMSG_HAS("device 3");
    CHECK_ERR(tsnap_writer_set_attr(w, NULL, "k", &dev), TSNAP_ENOCUDA);
    CHECK_ERRMSG_HAS("host memory");
    CHECK_OK(tsnap_writer_put(w, "gpu/x", &host));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    tsnap_reader *rd = open_reader(path);
    float got[6] = {0};
    DLTensor gd = on_device(cpu_tensor(got, TSNAP_FLOAT32, 2, shape, NULL, 0), 0);
    fake_adopt(v, sizeof v, 0);
    fake_adopt(got, sizeof got, 0);
    F.devices = 0;
    F.count_error = CUDA_ERROR_NO_DEVICE;
    CHECK_ERR(tsnap_reader_read(rd, "gpu/x", NULL, NULL, NULL, &gd), TSNAP_ENOCUDA);
    CHECK_ERRMSG_HAS("gpu/x");
    F.devices = 1;
    F.count_error = 0;
    CHECK_OK(tsnap_reader_read(rd, "gpu/x", NULL, NULL, NULL, &gd));
    CHECK_MEM(got, v, sizeof v, "read into device memory");
    tsnap_reader_free(rd);
    fake_off();
}

static void test_a_failing_copy_gives_ecuda_and_the_earlier_snapshot_survives(void)
{
    rng r;
    rng_init(&r, __func__);
    enum { N = 1 << 18 };
    float *v = malloc(N * 4);
    rng_fill(&r, v, N * 4);
    int64_t shape[1] = {N};
    DLTensor host = cpu_tensor(v, TSNAP_FLOAT32, 1, shape, NULL, 0);
    const char *path = tpath("kept.h5");
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_OK(tsnap_writer_put(w, "x", &host));
    CHECK_OK_FATAL(tsnap_writer_commit(w));
    tsnap_writer_free(w);

    fake_on();
    fake_adopt(v, N * 4, 0);
    F.fail_copy_after = 3;
    tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
    o.overwrite = 1;
    o.chunk_bytes = 65536;
    DLTensor dev = on_device(host, 0);
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, &o));
    CHECK_ERR(tsnap_writer_put(w, "weights", &dev), TSNAP_ECUDA);
    CHECK_ERRMSG_HAS("weights");
    CHECK_ERRMSG_HAS("fake copy failure");
    CHECK_NEG(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    /* reading into device memory fails the same way */
    tsnap_reader *rd = open_reader(path);
    float *got = malloc(N * 4);
    DLTensor gd = on_device(cpu_tensor(got, TSNAP_FLOAT32, 1, shape, NULL, 0), 0);
    fake_adopt(got, N * 4, 0);
    F.copies = 0;
    F.fail_copy_after = 0;
    CHECK_ERR(tsnap_reader_read(rd, "x", NULL, NULL, NULL, &gd), TSNAP_ECUDA);
    CHECK_ERRMSG_HAS("x");
    fake_off();
    /* the earlier snapshot is whole */
    DLTensor hd = cpu_tensor(got, TSNAP_FLOAT32, 1, shape, NULL, 0);
    CHECK_OK(tsnap_reader_verify(rd, NULL));
    CHECK_OK(tsnap_reader_read(rd, "x", NULL, NULL, NULL, &hd));
    CHECK_MEM(got, v, N * 4, "the snapshot from before");
    CHECK_I64(tsnap_reader_count(rd), 1);
    tsnap_reader_free(rd);
    free(got);
    free(v);
}

/* ---- the driver's contracts ------------------------------------------ */

/* rows x cols float32 on device `device`, every other row skipped: packed
 * by the kernels.  The buffer (2 * rows * cols floats) is adopted. */
static DLTensor strided_on(float *buf, int64_t *shape, int64_t *strides, int device)
{
    strides[0] = 2 * shape[1];
    strides[1] = 1;
    fake_adopt(buf, (size_t)(2 * shape[0] * shape[1]) * sizeof *buf, device);
    return on_device(cpu_tensor(buf, TSNAP_FLOAT32, 2, shape, strides, 0), device);
}

static float *random_floats(rng *r, size_t n)
{
    float *p = malloc(n * sizeof *p);
    CHECK_FATAL(p != NULL);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(rng_next(r) % 100000) / 7.0f;
    return p;
}

/* Random floats for a rows x cols strided_on() tensor, seeded from `label`. */
static float *strided_floats(const char *label, int64_t rows, int64_t cols)
{
    rng r;
    rng_init(&r, label);
    return random_floats(&r, (size_t)(2 * rows * cols));
}

/* The thread's current context, whatever it was, is the same after every
 * call: a save of cuda:0 is not a hidden cudaSetDevice(0). */
static void test_every_call_leaves_the_callers_context_current(void)
{
    rng r;
    rng_init(&r, __func__);
    enum { ROWS = 300, COLS = 77 };
    int64_t shape[2] = {ROWS, COLS}, strides[2];
    float *a = random_floats(&r, 2 * ROWS * COLS), *b = random_floats(&r, ROWS * COLS);
    const char *path = tpath("ctx.h5"), *dir = tpath("ctx-store");
    fake_on();
    F.devices = 3;
    DLTensor strided = strided_on(a, shape, strides, 0);
    fake_adopt(b, ROWS * COLS * sizeof *b, 0);
    DLTensor flat = on_device(cpu_tensor(b, TSNAP_FLOAT32, 2, shape, NULL, 0), 0);
    tsnap_store *s = NULL;
    CHECK_OK_FATAL(tsnap_store_open(&s, dir, NULL));
    const char *names[2] = {"strided", "flat"};
    DLTensor both[2] = {strided, flat};
    int64_t step = 0;
    for (int cur = -1; cur <= 2; cur++) {
        ctx_set("the caller's current device %d", cur);
        fake_make_current(cur);
        tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
        o.overwrite = 1;
        o.chunk_bytes = 4096;
        tsnap_writer *w = NULL;
        CHECK_OK_FATAL(tsnap_writer_create(&w, path, &o));
        CHECK_OK(tsnap_writer_put(w, "strided", &strided));
        CHECK_I64(fake_current_device(), cur);
        CHECK_OK(tsnap_writer_put_async(w, "flat", &flat, NULL));
        CHECK_I64(fake_current_device(), cur);
        CHECK_OK(tsnap_writer_wait(w));
        CHECK_I64(fake_current_device(), cur);
        CHECK_OK(tsnap_writer_commit(w));
        tsnap_writer_free(w);
        CHECK_I64(fake_current_device(), cur);
        tsnap_reader *rd = open_reader(path);
        CHECK_OK(tsnap_reader_read(rd, "flat", NULL, NULL, NULL, &strided));
        CHECK_I64(fake_current_device(), cur);
        tsnap_reader_free(rd);
        CHECK_OK(tsnap_store_save(s, step++, names, both, 2, NULL, 0, 0));
        CHECK_I64(fake_current_device(), cur);
        CHECK_OK(tsnap_store_save(s, step++, names, both, 2, NULL, 0, 1));
        CHECK_I64(fake_current_device(), cur);
        CHECK_OK(tsnap_store_wait(s));
        CHECK_I64(fake_current_device(), cur);
    }
    ctx_clear();
    tsnap_store_free(s);
    fake_off();
    free(a);
    free(b);
}

/* Every allocation of a staging's set-up failing in turn: the error names
 * the tensor, and nothing allocated before it is left (the whole tensor's
 * pinned buffer, for an asynchronous put). */
static void test_a_failed_staging_set_up_leaks_nothing(void)
{
    enum { ROWS = 64, COLS = 33 };
    int64_t shape[2] = {ROWS, COLS}, strides[2];
    float *a = strided_floats(__func__, ROWS, COLS);
    for (long k = 1; k <= 6; k++) {
        ctx_set("allocation %ld fails", k);
        fake_on();
        DLTensor t = strided_on(a, shape, strides, 0);
        tsnap_writer *w = NULL;
        tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
        o.overwrite = 1;
        CHECK_OK_FATAL(tsnap_writer_create(&w, tpath("setup.h5"), &o));
        F.fail_alloc_at = F.allocs + k;
        int err = tsnap_writer_put_async(w, "t", &t, NULL);
        if (F.allocs >= F.fail_alloc_at) {
            CHECK_I64(err, TSNAP_ECUDA);
            CHECK_ERRMSG_HAS("'t'");
            CHECK_ERRMSG_HAS("out of memory");
        } else {
            CHECK_OK(err);
        }
        tsnap_writer_free(w);
        fake_off();
    }
    ctx_clear();
    free(a);
}

/* device="cuda" without a number: the thread's current device. */
static void test_cuda_without_a_number_is_the_threads_current_device(void)
{
    fake_on();
    F.devices = 3;
    CHECK_I64(tsnap__cuda_current_device(), 0); /* none current */
    fake_make_current(2);
    CHECK_I64(tsnap__cuda_current_device(), 2);
    CHECK_I64(fake_current_device(), 2);
    fake_make_current(1);
    CHECK_I64(tsnap__cuda_current_device(), 1);
    fake_off();
    F.stub = true; /* no driver to ask: device 0 */
    CHECK_I64(tsnap__cuda_current_device(), 0);
}

static void check_refused(DLTensor *t, int code, const char *why)
{
    tsnap_writer *w = NULL;
    tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
    o.overwrite = 1;
    CHECK_OK_FATAL(tsnap_writer_create(&w, tpath("refused.h5"), &o));
    CHECK_ERR(tsnap_writer_put(w, "x", t), code);
    CHECK_ERRMSG_HAS("'x'");
    CHECK_ERRMSG_HAS(why);
    tsnap_writer_free(w);
}

/* The stub library, a driver without a function, an error the driver
 * calls unknown, kernels a driver cannot load: each says what it is. */
static void test_driver_failures_name_their_cause(void)
{
    enum { ROWS = 40, COLS = 9 };
    int64_t shape[2] = {ROWS, COLS}, strides[2];
    float *a = strided_floats(__func__, ROWS, COLS);

    fake_on();
    F.stub = true;
    DLTensor t = strided_on(a, shape, strides, 0);
    check_refused(&t, TSNAP_ENOCUDA, "CUDA_ERROR_STUB_LIBRARY");
    check_refused(&t, TSNAP_ENOCUDA, "stub");
    fake_off();

    fake_on();
    F.missing = STR(cuMemcpyDtoHAsync);
    t = strided_on(a, shape, strides, 0);
    check_refused(&t, TSNAP_ENOCUDA, "has no cuMemcpyDtoHAsync");
    fake_off();

    fake_on();
    F.fail_copy_after = 0;
    F.copy_error = CUDA_ERROR_UNKNOWN;
    t = strided_on(a, shape, strides, 0);
    check_refused(&t, TSNAP_ECUDA, "fake: unknown error");
    fake_off();

    /* a driver for CUDA 12.4 and kernels built with a newer CUDA */
    fake_on();
    F.driver_version = 12040;
    F.module_error = CUDA_ERROR_UNSUPPORTED_PTX_VERSION;
    t = strided_on(a, shape, strides, 0);
    check_refused(&t, TSNAP_ECUDA, "CUDA 12.4");
    char build[32];
    snprintf(build, sizeof build, "built with CUDA %d.%d", CUDA_VERSION / 1000,
             CUDA_VERSION % 1000 / 10);
    check_refused(&t, TSNAP_ECUDA, build);
    check_refused(&t, TSNAP_ECUDA, "unsupported toolchain");
    /* contiguous tensors need no kernels */
    DLTensor flat = on_device(cpu_tensor(a, TSNAP_FLOAT32, 1, &shape[1], NULL, 0), 0);
    tsnap_writer *w = NULL;
    tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
    o.overwrite = 1;
    CHECK_OK_FATAL(tsnap_writer_create(&w, tpath("flat.h5"), &o));
    CHECK_OK(tsnap_writer_put(w, "flat", &flat));
    /* the failure is not kept: loadable now, loaded now */
    F.module_error = CUDA_SUCCESS;
    CHECK_OK(tsnap_writer_put(w, "strided", &t));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    fake_off();
    free(a);
}

/* A pointer of another device, or host memory, labelled as device memory:
 * refused before any copy, so the shared context is not faulted. */
static void test_pointers_are_checked_with_the_driver_before_use(void)
{
    rng r;
    rng_init(&r, __func__);
    enum { N = 5000 };
    int64_t shape[1] = {N};
    float *on1 = random_floats(&r, N), *host = random_floats(&r, N), *good = random_floats(&r, N);
    fake_on();
    F.devices = 2;
    fake_adopt(on1, N * sizeof(float), 1);
    fake_adopt(good, N * sizeof(float), 0);
    DLTensor t = on_device(cpu_tensor(on1, TSNAP_FLOAT32, 1, shape, NULL, 0), 0);
    check_refused(&t, TSNAP_EINVAL, "memory of CUDA device 1");
    t = on_device(cpu_tensor(host, TSNAP_FLOAT32, 1, shape, NULL, 0), 0);
    check_refused(&t, TSNAP_EINVAL, "ordinary host memory");
    void *pin = NULL, *saved = NULL;
    const tsnap_cuda_ops *ops = tsnap__cuda_runtime();
    CHECK_FATAL(ops->enter(0, &saved) == 0);
    CHECK_FATAL(ops->host_alloc(&pin, N * sizeof(float)) == 0);
    t = on_device(cpu_tensor(pin, TSNAP_FLOAT32, 1, shape, NULL, 0), 0);
    check_refused(&t, TSNAP_EINVAL, "pinned host memory");
    /* reading into them is refused the same way */
    tsnap_writer *w = NULL;
    DLTensor ok = on_device(cpu_tensor(good, TSNAP_FLOAT32, 1, shape, NULL, 0), 0);
    CHECK_OK_FATAL(tsnap_writer_create(&w, tpath("checked.h5"), NULL));
    CHECK_OK(tsnap_writer_put(w, "x", &ok)); /* device 0's context still works */
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    tsnap_reader *rd = open_reader(tpath("checked.h5"));
    t = on_device(cpu_tensor(on1, TSNAP_FLOAT32, 1, shape, NULL, 0), 0);
    CHECK_ERR(tsnap_reader_read(rd, "x", NULL, NULL, NULL, &t), TSNAP_EINVAL);
    CHECK_ERRMSG_HAS("memory of CUDA device 1");
    memset(good, 0, N * sizeof(float));
    CHECK_OK(tsnap_reader_read(rd, "x", NULL, NULL, NULL, &ok));
    CHECK_OK(tsnap_reader_verify(rd, NULL));
    tsnap_reader_free(rd);
    CHECK_I64(F.prim[0].sticky, 0);
    CHECK_I64(F.prim[1].sticky, 0);
    ops->host_free(pin);
    ops->leave(saved);
    fake_off();
    free(on1);
    free(host);
    free(good);
}

struct free_args {
    tsnap_writer *w;
};

static void *free_writer(void *arg)
{
    tsnap_writer_free(((struct free_args *)arg)->w);
    return NULL;
}

/* Freed on a thread with no context current, a writer's pending staging
 * is still released; a store's background save holds no stream, event or
 * device scratch once its copy has landed. */
static void test_staging_is_released_in_the_devices_context_on_any_thread(void)
{
    enum { ROWS = 100, COLS = 31 };
    int64_t shape[2] = {ROWS, COLS}, strides[2];
    float *a = strided_floats(__func__, ROWS, COLS);
    fake_on();
    DLTensor t = strided_on(a, shape, strides, 0);
    struct free_args fa = {NULL};
    CHECK_OK_FATAL(tsnap_writer_create(&fa.w, tpath("abandoned.h5"), NULL));
    CHECK_OK(tsnap_writer_put_async(fa.w, "t", &t, NULL));
    pthread_t th;
    CHECK_FATAL(pthread_create(&th, NULL, free_writer, &fa) == 0);
    pthread_join(th, NULL);
    CHECK_I64(F.streams_live, 0);
    CHECK_I64(F.events_live, 0);
    CHECK_I64(F.dev_live, 0);

    tsnap_store *s = NULL;
    CHECK_OK_FATAL(tsnap_store_open(&s, tpath("released-store"), NULL));
    const char *names[1] = {"t"};
    for (int step = 0; step < 3; step++) {
        CHECK_OK(tsnap_store_save(s, step, names, &t, 1, NULL, 0, 0));
        CHECK_I64(F.streams_live, 0);
        CHECK_I64(F.events_live, 0);
        CHECK_I64(F.dev_live, 0);
    }
    CHECK_OK(tsnap_store_wait(s));
    tsnap_store_free(s);
    fake_off();
    free(a);
}

/* After cuDevicePrimaryCtxReset the module, its functions and the pinned
 * buffers kept are gone: the next put loads and allocates anew. */
static void test_a_device_reset_is_noticed_and_the_next_put_works(void)
{
    rng r;
    rng_init(&r, __func__);
    enum { ROWS = 120, COLS = 13 };
    int64_t shape[2] = {ROWS, COLS}, strides[2];
    float *a = random_floats(&r, 2 * ROWS * COLS), *got = malloc(ROWS * COLS * sizeof *got);
    const char *path = tpath("reset.h5");
    tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
    o.overwrite = 1;
    fake_on();
    DLTensor t = strided_on(a, shape, strides, 0);
    for (int round = 0; round < 6; round++) {
        ctx_set("after %d resets", round);
        F.reset_destroys = round >= 3; /* as a driver that makes a new context */
        tsnap_writer *w = NULL;
        CHECK_OK_FATAL(tsnap_writer_create(&w, path, &o));
        CHECK_OK(tsnap_writer_put(w, "t", &t));
        CHECK_OK(tsnap_writer_commit(w));
        tsnap_writer_free(w);
        tsnap_reader *rd = open_reader(path);
        DLTensor h = cpu_tensor(got, TSNAP_FLOAT32, 2, shape, NULL, 0);
        CHECK_OK(tsnap_reader_read(rd, "t", NULL, NULL, NULL, &h));
        for (int i = 0; i < ROWS; i++)
            CHECK_MEM(got + i * COLS, a + 2 * i * COLS, COLS * sizeof *got, "row");
        tsnap_reader_free(rd);
        fake_reset(0);
    }
    ctx_clear();
    fake_off();
    free(a);
    free(got);
}

/* A store keeps its pinned staging from save to save (within its staging
 * budget), whatever the process-wide cache keeps. */
static void test_store_saves_reuse_their_pinned_staging(void)
{
    rng r;
    rng_init(&r, __func__);
    enum { N = 70000 };
    int64_t shape[1] = {N};
    float *a = random_floats(&r, N), *got = malloc(N * sizeof *got);
    fake_on();
    tsnap__cuda_pinned_keep(0); /* as for a tensor larger than the cache */
    fake_adopt(a, N * sizeof *a, 0);
    DLTensor t = on_device(cpu_tensor(a, TSNAP_FLOAT32, 1, shape, NULL, 0), 0);
    tsnap_store_options so = TSNAP_STORE_OPTIONS_INIT;
    so.staging_bytes = 3 * N * sizeof *a;
    tsnap_store *s = NULL;
    const char *dir = tpath("pinned-store"), *names[1] = {"a"};
    CHECK_OK_FATAL(tsnap_store_open(&s, dir, &so));
    for (int step = 0; step < 6; step++) {
        a[0] = (float)step;
        CHECK_OK(tsnap_store_save(s, step, names, &t, 1, NULL, 0, 0));
        if (step % 2)
            CHECK_OK(tsnap_store_wait(s));
    }
    CHECK_OK(tsnap_store_wait(s));
    CHECK_MSG(F.pinned_made <= 2, "%ld pinned buffers made for 6 saves", F.pinned_made);
    char path[4096];
    CHECK_OK(tsnap_store_path(s, 5, path, sizeof path));
    tsnap_store_free(s);
    tsnap__cuda_pinned_keep((size_t)256 << 20);
    fake_off();
    tsnap_reader *rd = open_reader(path);
    DLTensor h = cpu_tensor(got, TSNAP_FLOAT32, 1, shape, NULL, 0);
    CHECK_OK(tsnap_reader_read_verified(rd, "a", &h));
    CHECK_MEM(got, a, N * sizeof *got, "step 5");
    tsnap_reader_free(rd);
    free(a);
    free(got);
}

/* Asynchronous puts each step of a tensor larger than the pinned cache
 * pin it once, not every step, while smaller buffers fill the cache. */
static void test_async_puts_of_a_tensor_larger_than_the_cache_pin_it_once(void)
{
    rng r;
    rng_init(&r, __func__);
    enum { N = 50000, SMALL = 900 };
    int64_t shape[1] = {N}, small_shape[1] = {SMALL};
    float *a = random_floats(&r, N), *b = random_floats(&r, SMALL);
    fake_on();
    tsnap__cuda_pinned_keep(4096);
    fake_adopt(a, N * sizeof *a, 0);
    fake_adopt(b, SMALL * sizeof *b, 0);
    DLTensor t = on_device(cpu_tensor(a, TSNAP_FLOAT32, 1, shape, NULL, 0), 0);
    DLTensor small = on_device(cpu_tensor(b, TSNAP_FLOAT32, 1, small_shape, NULL, 0), 0);
    tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
    o.overwrite = 1;
    for (int step = 0; step < 4; step++) {
        tsnap_writer *w = NULL;
        CHECK_OK_FATAL(tsnap_writer_create(&w, tpath("big-async.h5"), &o));
        CHECK_OK(tsnap_writer_put(w, "small", &small)); /* its buffers stay in the cache */
        CHECK_OK(tsnap_writer_put_async(w, "a", &t, NULL));
        CHECK_OK(tsnap_writer_commit(w));
        tsnap_writer_free(w);
    }
    CHECK_MSG(F.pinned_made_over_64k == 1, "the large buffer was pinned %ld times in 4 steps",
              F.pinned_made_over_64k);
    tsnap__cuda_pinned_keep((size_t)256 << 20);
    fake_off();
    free(a);
    free(b);
}

struct stage_args {
    tsnap_view v;
    int err;
};

/* Loads the kernels (which the fake holds up) through a staging. */
static void *stage_strided(void *arg)
{
    struct stage_args *sa = arg;
    tsnap_stage st;
    sa->err = tsnap__stage_open(&st, 0, NULL, 1, (size_t)sa->v.nbytes, true, "f", "t");
    if (sa->err == 0) {
        sa->err = tsnap__stage_fetch(&st, 0, &sa->v, 0, sa->v.nelems);
        if (sa->err == 0)
            sa->err = tsnap__stage_wait(&st, 0);
        tsnap__stage_close(&st);
    }
    return NULL;
}

/* fork() while another thread is inside the driver, holding tsnap's lock:
 * the child gets TSNAP_ENOCUDA saying why, not a deadlock. */
static void test_a_forked_child_gets_enocuda_not_a_deadlock(void)
{
    enum { ROWS = 16, COLS = 5 };
    int64_t shape[2] = {ROWS, COLS}, strides[2];
    float *a = strided_floats(__func__, ROWS, COLS);
    struct stage_args sa;
    fake_on();
    DLTensor t = strided_on(a, shape, strides, 0);
    CHECK_OK_FATAL(tsnap__view_init(&sa.v, &t, "f", "t"));
    F.block_module = 1;
    pthread_t th;
    CHECK_FATAL(pthread_create(&th, NULL, stage_strided, &sa) == 0);
    while (!F.in_module)
        usleep(1000);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(20); /* a deadlock ends here */
        int err = tsnap__cuda_check(0, "child.h5", "x");
        _exit(err == TSNAP_ENOCUDA && strstr(tsnap_errmsg(), "fork()") ? 0 : 3);
    }
    F.block_module = 0;
    pthread_join(th, NULL);
    CHECK_OK(sa.err);
    int status = 0;
    CHECK_FATAL(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the child %s %d", WIFEXITED(status) ? "exited with" : "was killed by signal",
              WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    fake_off();
    free(a);
}

/* 1,000 puts, asynchronous puts, reads and store saves with allocations,
 * copies and waits failing at random, the caller's current device changing
 * and the device reset now and then: every failure is an error naming its
 * cause, and nothing the driver handed out is left afterwards. */
static void test_soak_with_random_failures_leaves_nothing_behind(void)
{
    rng r;
    rng_init(&r, __func__);
    enum { ROWS = 96, COLS = 41, ROUNDS = 1000 };
    int64_t shape[2] = {ROWS, COLS}, strides[2];
    float *a = random_floats(&r, 2 * ROWS * COLS), *b = random_floats(&r, ROWS * COLS);
    float *dst = malloc(2 * ROWS * COLS * sizeof *dst);
    const char *path = tpath("soak.h5"), *source = tpath("soak-source.h5");
    int ok = 0, failed = 0, resets = 0;

    tsnap_writer *w = NULL;
    DLTensor hb = cpu_tensor(b, TSNAP_FLOAT32, 2, shape, NULL, 0);
    CHECK_OK_FATAL(tsnap_writer_create(&w, source, NULL));
    CHECK_OK(tsnap_writer_put(w, "b", &hb));
    CHECK_OK_FATAL(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    tsnap_reader *rd = open_reader(source);

    fake_on();
    F.devices = 2;
    F.seed = (unsigned)rng_next(&r);
    DLTensor strided = strided_on(a, shape, strides, 1);
    fake_adopt(b, ROWS * COLS * sizeof *b, 1);
    fake_adopt(dst, 2 * ROWS * COLS * sizeof *dst, 1);
    DLTensor flat = on_device(hb, 1);
    int64_t dstrides[2];
    DLTensor into_strided = strided_on(dst, shape, dstrides, 1);
    DLTensor into_flat = on_device(cpu_tensor(dst, TSNAP_FLOAT32, 2, shape, NULL, 0), 1);
    tsnap_store_options so = TSNAP_STORE_OPTIONS_INIT;
    so.keep_last = 2;
    tsnap_store *s = NULL;
    CHECK_OK_FATAL(tsnap_store_open(&s, tpath("soak-store"), &so));
    tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
    o.overwrite = 1;
    o.chunk_bytes = 4096;
    F.fail_permille = 25;
    for (int i = 0; i < ROUNDS; i++) {
        int err = 0;
        DLTensor *t = rng_below(&r, 2) ? &strided : &flat;
        fake_make_current((int)rng_below(&r, 3) - 1);
        if (rng_below(&r, 50) == 0) { /* a framework resets the device, the store idle */
            tsnap_store_wait(s);
            fake_reset(1);
            resets++;
        }
        switch (rng_below(&r, 4)) {
        case 0:
            if ((err = tsnap_writer_create(&w, path, &o)) == 0) {
                if ((err = tsnap_writer_put(w, "t", t)) == 0)
                    err = tsnap_writer_commit(w);
                tsnap_writer_free(w);
            }
            break;
        case 1:
            if ((err = tsnap_writer_create(&w, path, &o)) == 0) {
                if ((err = tsnap_writer_put_async(w, "s", &strided, NULL)) == 0 &&
                    (err = tsnap_writer_put_async(w, "f", &flat, NULL)) == 0 && rng_below(&r, 2))
                    err = tsnap_writer_wait(w);
                if (err == 0 && rng_below(&r, 4))
                    err = tsnap_writer_commit(w);
                tsnap_writer_free(w);
            }
            break;
        case 2:
            err = tsnap_reader_read(rd, "b", NULL, NULL, NULL,
                                    rng_below(&r, 2) ? &into_strided : &into_flat);
            break;
        default: {
            const char *names[2] = {"strided", "flat"};
            DLTensor both[2] = {strided, flat};
            err = tsnap_store_save(s, i, names, both, 2, NULL, 0, (int)rng_below(&r, 2));
            if (err == 0 && rng_below(&r, 3) == 0)
                err = tsnap_store_wait(s);
        }
        }
        if (err == 0) {
            ok++;
        } else {
            failed++;
            if (err != TSNAP_ECUDA && err != TSNAP_ENOMEM && err != TSNAP_EIO)
                CHECK_MSG(0, "round %d: error %d: %s", i, err, tsnap_errmsg());
            if (!*tsnap_errmsg())
                CHECK_MSG(0, "round %d: error %d without a message", i, err);
        }
    }
    F.fail_permille = 0;
    fake_make_current(-1);
    tsnap_store_wait(s);
    tsnap_store_free(s);
    tsnap_reader_free(rd);
    printf("\n    %d calls succeeded, %d failed as injected, %d device resets; %ld "
           "allocations\n", ok, failed, resets, F.allocs);
    CHECK_MSG(ok > ROUNDS / 10 && failed > ROUNDS / 10, "%d succeeded, %d failed", ok, failed);
    fake_off();
    free(a);
    free(b);
    free(dst);
}

#endif /* TSNAP_TEST_GPU */

/* The real runtime (or none) on this machine: without a device, a CUDA
 * tensor is refused with the reason. */
static void test_without_a_device_the_real_runtime_refuses_with_the_reason(void)
{
    const tsnap_cuda_ops *real = tsnap__cuda_runtime();
    int n = 0;
    if (real && real->device_count(&n) == 0 && n > 0) {
        printf("\n    skipped: this machine has %d CUDA device(s); the GPU suite tests them\n", n);
        return;
    }
    float v[2] = {1, 2};
    int64_t shape[1] = {2};
    DLTensor dev = on_device(cpu_tensor(v, TSNAP_FLOAT32, 1, shape, NULL, 0), 0);
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, tpath("nocuda.h5"), NULL));
    CHECK_ERR(tsnap_writer_put(w, "x", &dev), TSNAP_ENOCUDA);
    CHECK_ERRMSG_HAS("CUDA");
    if (!real)
        CHECK_ERRMSG_HAS("built without CUDA");
    else
        CHECK_ERRMSG_HAS("no CUDA device can be used here");
    printf("\n    %s\n", tsnap_errmsg());
    dev.device.device_type = kDLCUDAManaged;
    CHECK_ERR(tsnap_writer_put(w, "x", &dev), TSNAP_ENOCUDA);
    DLTensor host = cpu_tensor(v, TSNAP_FLOAT32, 1, shape, NULL, 0);
    CHECK_OK(tsnap_writer_put(w, "x", &host));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
}

const test_entry device_tests[] = {
#ifdef TSNAP_TEST_GPU
    TEST(test_every_case_saves_from_device_memory_uncompressed),
    TEST(test_every_case_saves_from_device_memory_in_tiny_deflate_chunks),
    TEST(test_every_case_saves_from_device_memory_on_one_thread),
    TEST(test_a_put_on_the_callers_stream_sees_its_queued_work),
    TEST(test_pinned_host_memory_is_ordered_on_the_callers_stream),
    TEST(test_async_puts_write_what_the_tensors_held_before_the_wait_returned),
    TEST(test_async_puts_are_written_at_commit_and_their_names_are_taken),
    TEST(test_async_put_failures_surface_at_the_call_the_wait_or_the_commit),
    TEST(test_every_case_reads_into_device_memory_contiguous_and_strided),
    TEST(test_big_selections_read_into_device_memory_in_slabs),
    TEST(test_no_device_gives_enocuda_and_leaves_the_writer_usable),
    TEST(test_a_failing_copy_gives_ecuda_and_the_earlier_snapshot_survives),
    TEST(test_every_call_leaves_the_callers_context_current),
    TEST(test_a_failed_staging_set_up_leaks_nothing),
    TEST(test_cuda_without_a_number_is_the_threads_current_device),
    TEST(test_driver_failures_name_their_cause),
    TEST(test_pointers_are_checked_with_the_driver_before_use),
    TEST(test_staging_is_released_in_the_devices_context_on_any_thread),
    TEST(test_a_device_reset_is_noticed_and_the_next_put_works),
    TEST(test_store_saves_reuse_their_pinned_staging),
    TEST(test_async_puts_of_a_tensor_larger_than_the_cache_pin_it_once),
    TEST(test_a_forked_child_gets_enocuda_not_a_deadlock),
    TEST(test_soak_with_random_failures_leaves_nothing_behind),
#endif
    TEST(test_without_a_device_the_real_runtime_refuses_with_the_reason),
    TEST_END,
};

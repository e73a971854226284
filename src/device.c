/*
 * device.c - tensors in CUDA memory, reached through pinned staging.
 *
 * A put copies each chunk of a device tensor into a pinned host buffer on
 * a stream of tsnap's own, ordered after the caller's stream; the chunk
 * then goes through the same pipeline as host memory (writer.c), so the
 * copies of later chunks overlap the checksum, compression and write of
 * earlier ones.  A strided tensor is packed on the device first (kernels.cu's
 * gather kernel).  A read fills pinned slabs from the file and copies them
 * to the device, one slab's copy overlapping the next slab's read.
 *
 * Everything goes through a table of CUDA runtime calls (tsnap_cuda_ops):
 * cuda.c's in a build with CUDA, none without, or a test's own.  Each
 * call into it makes the tensor's device current and then restores the
 * caller's context, on whatever thread it runs: saving a tensor of cuda:1
 * never changes the device PyTorch or CuPy sees as current.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PINNED_CACHE 32

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static const tsnap_cuda_ops *override;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

/* Pinned buffers kept after use: pinning is slow (the pages are locked),
 * as slow as copying them a few times over.  Up to pinned_keep bytes of
 * them, and besides one larger than that (the last one used), so that an
 * asynchronous put of a large tensor each step pins it once.  Each belongs
 * to the device whose context allocated it, in the device's generation
 * then: a reset frees it with everything else. */
static struct pinned {
    const tsnap_cuda_ops *ops;
    void *p;
    size_t cap;
    int device;
    unsigned gen;
} cache[PINNED_CACHE];
static size_t cached_bytes, pinned_keep = (size_t)256 << 20; /* the large one not counted */

/* In a fork()ed child the buffers are not ours to free, and the lock may
 * have been held by a thread that the child does not have. */
static void forked_child(void)
{
    pthread_mutex_init(&mu, NULL);
    memset(cache, 0, sizeof cache);
    cached_bytes = 0;
}

static void register_fork_handler(void) { pthread_atfork(NULL, NULL, forked_child); }

/* Makes `device` current for the calls that follow; leave() restores
 * the caller's context. */
static int enter(const tsnap_cuda_ops *ops, int device, void **saved)
{
    return ops->enter(device, saved);
}

static void leave(const tsnap_cuda_ops *ops, void *saved) { ops->leave(saved); }

/* Frees a kept buffer in its device's context; one a reset freed is only
 * forgotten. */
static void pinned_release(const struct pinned *b)
{
    void *saved;
    if (b->ops->generation(b->device) != b->gen || enter(b->ops, b->device, &saved) != 0)
        return;
    b->ops->host_free(b->p);
    leave(b->ops, saved);
}

static void cache_flush_locked(void)
{
    for (int i = 0; i < PINNED_CACHE; i++)
        if (cache[i].p) {
            pinned_release(&cache[i]);
            cache[i].p = NULL;
        }
    cached_bytes = 0;
}

void tsnap__cuda_set_ops(const tsnap_cuda_ops *ops)
{
    pthread_mutex_lock(&mu);
    cache_flush_locked();
    override = ops;
    pthread_mutex_unlock(&mu);
}

void tsnap__cuda_pinned_keep(size_t bytes)
{
    pthread_mutex_lock(&mu);
    cache_flush_locked();
    pinned_keep = bytes;
    pthread_mutex_unlock(&mu);
}

static const tsnap_cuda_ops *current_ops(void)
{
    pthread_once(&fork_once, register_fork_handler);
    pthread_mutex_lock(&mu);
    const tsnap_cuda_ops *ops = override ? override : tsnap__cuda_runtime();
    pthread_mutex_unlock(&mu);
    return ops;
}

/* A pinned buffer for `device` (current): a kept one or a new one. */
static int pinned_get(const tsnap_cuda_ops *ops, int device, size_t size, void **out)
{
    unsigned gen = ops->generation(device);
    pthread_mutex_lock(&mu);
    for (int i = 0; i < PINNED_CACHE; i++) {
        struct pinned *b = &cache[i];
        if (b->p && b->ops == ops && b->device == device && b->gen != gen) {
            cached_bytes -= b->cap > pinned_keep ? 0 : b->cap; /* freed by a reset */
            b->p = NULL;
        }
        if (b->p && b->ops == ops && b->device == device && b->cap >= size &&
            b->cap / 2 <= size) {
            *out = b->p;
            b->p = NULL;
            cached_bytes -= b->cap > pinned_keep ? 0 : b->cap;
            pthread_mutex_unlock(&mu);
            return 0;
        }
    }
    pthread_mutex_unlock(&mu);
    return ops->host_alloc(out, size);
}

/* Keeps a buffer of `device`'s generation `gen` for the next call, or frees
 * it (with `device` current). */
static void pinned_put(const tsnap_cuda_ops *ops, int device, unsigned gen, void *p, size_t cap)
{
    struct pinned old = {NULL, NULL, 0, 0, 0};
    bool large = cap > pinned_keep, kept = false;
    if (!p || ops->generation(device) != gen)
        return;
    pthread_mutex_lock(&mu);
    for (int i = 0; large && pinned_keep > 0 && i < PINNED_CACHE; i++)
        if (cache[i].p && cache[i].cap > pinned_keep) { /* the large one before: this one now */
            old = cache[i];
            cache[i] = (struct pinned){ops, p, cap, device, gen};
            kept = true;
        }
    if (!kept && pinned_keep > 0 && (large || cached_bytes + cap <= pinned_keep))
        for (int i = 0; i < PINNED_CACHE && !kept; i++)
            if (!cache[i].p) {
                cache[i] = (struct pinned){ops, p, cap, device, gen};
                cached_bytes += large ? 0 : cap;
                kept = true;
            }
    pthread_mutex_unlock(&mu);
    if (!kept)
        ops->host_free(p);
    if (old.p)
        pinned_release(&old);
}

static int cuda_err(const tsnap_stage *st, int rc, const char *what)
{
    return tsnap__err(TSNAP_ECUDA, st->file, st->name, "%s failed on CUDA device %d: %s", what,
                      st->device, st->ops->error_string(rc));
}

/* The table to use for `device`, once it is known to be there. */
static int ops_for(int device, const char *file, const char *name, const tsnap_cuda_ops **out)
{
    const tsnap_cuda_ops *ops = current_ops();
    int n = 0, rc;
    *out = NULL;
    if (!ops)
        return tsnap__err(TSNAP_ENOCUDA, file, name,
                          "CUDA memory was given, which this build of tsnap cannot reach "
                          "(built without CUDA)");
    if ((rc = ops->device_count(&n)) != 0)
        return tsnap__err(TSNAP_ENOCUDA, file, name,
                          "CUDA memory was given, but no CUDA device can be used here: %s",
                          ops->error_string(rc));
    if (device >= n)
        return tsnap__err(TSNAP_ENOCUDA, file, name,
                          "CUDA device %d was given, but this machine has %d", device, n);
    *out = ops;
    return 0;
}

/* ops_for, then `device` made current (leave() puts the caller's back). */
static int ops_enter(int device, const char *file, const char *name, const tsnap_cuda_ops **out,
                     void **saved)
{
    int err, rc;
    if ((err = ops_for(device, file, name, out)) < 0)
        return err;
    if ((rc = enter(*out, device, saved)) != 0) {
        err = tsnap__err(TSNAP_ECUDA, file, name, "cannot use CUDA device %d: %s", device,
                         (*out)->error_string(rc));
        *out = NULL;
    }
    return err;
}

int tsnap__cuda_check(int device, const char *file, const char *name)
{
    const tsnap_cuda_ops *ops;
    void *saved;
    int err = ops_enter(device, file, name, &ops, &saved);
    if (err == 0)
        leave(ops, saved);
    return err;
}

int tsnap__cuda_current_device(void)
{
    const tsnap_cuda_ops *ops = current_ops();
    int n = 0, device = -1;
    if (!ops || ops->device_count(&n) != 0 || ops->current_device(&device) != 0 || device < 0)
        return 0;
    return device;
}

int tsnap__cuda_alloc(int device, size_t n, void **p, const char *file, const char *name)
{
    const tsnap_cuda_ops *ops;
    void *saved;
    int err, rc;
    *p = NULL;
    if ((err = ops_enter(device, file, name, &ops, &saved)) < 0)
        return err;
    if ((rc = ops->dev_alloc(p, n ? n : 1)) != 0) {
        *p = NULL;
        err = tsnap__err(TSNAP_ECUDA, file, name,
                         "allocating %zu bytes on CUDA device %d failed: %s", n, device,
                         ops->error_string(rc));
    }
    leave(ops, saved);
    return err;
}

void tsnap__cuda_free(int device, void *p)
{
    const tsnap_cuda_ops *ops = current_ops();
    void *saved;
    if (ops && p && enter(ops, device, &saved) == 0) {
        ops->dev_free(p);
        leave(ops, saved);
    }
}

int tsnap__cuda_order_host(const DLTensor *t, void *stream, const char *file, const char *name)
{
    const tsnap_cuda_ops *ops = current_ops();
    void *saved;
    int n = 0, err, rc;
    /* Without CUDA here (this build, the driver or the device) no work can
     * be queued on it: the CPU reads it at once, as host memory. */
    if (!t || t->device.device_type != kDLCUDAHost || !ops || ops->device_count(&n) != 0 ||
        t->device.device_id >= n)
        return 0;
    if ((err = ops_enter(t->device.device_id, file, name, &ops, &saved)) < 0)
        return err;
    if ((rc = ops->stream_sync(stream)) != 0)
        err = tsnap__err(TSNAP_ECUDA, file, name,
                         "waiting for the work queued on the stream failed on CUDA device %d: %s",
                         (int)t->device.device_id, ops->error_string(rc));
    leave(ops, saved);
    return err;
}

int tsnap__pinned_alloc(int device, size_t n, void **p, unsigned *gen, const char *file,
                        const char *name)
{
    const tsnap_cuda_ops *ops;
    void *saved;
    int err, rc;
    *p = NULL;
    if ((err = ops_enter(device, file, name, &ops, &saved)) < 0)
        return err;
    *gen = ops->generation(device);
    if ((rc = ops->host_alloc(p, n ? n : 1)) != 0) {
        *p = NULL;
        err = tsnap__err(TSNAP_ECUDA, file, name,
                         "allocating %zu bytes of pinned host memory failed: %s", n,
                         ops->error_string(rc));
    }
    leave(ops, saved);
    return err;
}

bool tsnap__pinned_alive(int device, unsigned gen)
{
    const tsnap_cuda_ops *ops = current_ops();
    return ops && ops->generation(device) == gen;
}

void tsnap__pinned_free(int device, unsigned gen, void *p)
{
    const tsnap_cuda_ops *ops = current_ops();
    if (ops && p)
        pinned_release(&(struct pinned){ops, p, 0, device, gen});
}

/* Frees what a staging holds, with its device current. */
static void stage_release(tsnap_stage *st)
{
    if (st->stream)
        st->ops->stream_sync(st->stream);
    for (unsigned i = 0; i < st->nslots; i++) {
        struct tsnap_stage_slot *sl = &st->slot[i];
        if (!(st->borrowed && i == 0))
            pinned_put(st->ops, st->device, st->generation, sl->host, st->bytes);
        if (sl->scratch)
            st->ops->dev_free(sl->scratch);
        if (sl->event)
            st->ops->event_destroy(sl->event);
    }
    if (st->stream)
        st->ops->stream_destroy(st->stream);
    st->ops = NULL;
    st->nslots = 0;
    st->stream = NULL;
}

/* stage_open with the device current; slot 0's host buffer is `host` when
 * given.  On failure nothing is left open. */
static int stage_setup(tsnap_stage *st, void *caller_stream, unsigned nslots, bool scratch,
                       void *host)
{
    void *start = NULL;
    int err = 0, rc;

    st->generation = st->ops->generation(st->device);
    st->borrowed = host != NULL;
    if ((rc = st->ops->stream_create(&st->stream)) != 0) {
        st->stream = NULL;
        err = cuda_err(st, rc, "creating a stream");
        goto fail;
    }
    for (unsigned i = 0; i < nslots; i++) {
        struct tsnap_stage_slot *sl = &st->slot[st->nslots++]; /* freed with the rest */
        if (i == 0 && host)
            sl->host = host;
        else if ((rc = pinned_get(st->ops, st->device, st->bytes, &sl->host)) != 0) {
            sl->host = NULL;
            err = cuda_err(st, rc, "allocating pinned host memory");
            goto fail;
        }
        if (scratch && (rc = st->ops->dev_alloc(&sl->scratch, st->bytes)) != 0) {
            sl->scratch = NULL;
            err = cuda_err(st, rc, "allocating device memory for packing");
            goto fail;
        }
        if ((rc = st->ops->event_create(&sl->event)) != 0) {
            sl->event = NULL;
            err = cuda_err(st, rc, "creating an event");
            goto fail;
        }
    }
    /* Our copies start after what the caller has queued on its stream. */
    if ((rc = st->ops->event_create(&start)) != 0) {
        err = cuda_err(st, rc, "creating an event");
        goto fail;
    }
    rc = st->ops->event_record(start, caller_stream);
    if (rc == 0)
        rc = st->ops->stream_wait_event(st->stream, start);
    st->ops->event_destroy(start);
    if (rc != 0) {
        err = cuda_err(st, rc, "ordering after the caller's stream");
        goto fail;
    }
    return 0;
fail:
    stage_release(st);
    return err;
}

static int stage_begin(tsnap_stage *st, int device, unsigned nslots, size_t bytes,
                       const char *file, const char *name, void **saved)
{
    memset(st, 0, sizeof *st);
    st->device = device;
    st->file = file;
    st->name = name;
    st->bytes = bytes ? bytes : 1;
    if (nslots < 1 || nslots > sizeof st->slot / sizeof st->slot[0])
        return tsnap__err(TSNAP_EINVAL, file, name, "%u staging slots", nslots);
    return ops_enter(device, file, name, &st->ops, saved);
}

int tsnap__stage_open(tsnap_stage *st, int device, void *caller_stream, unsigned nslots,
                      size_t bytes, bool scratch, const char *file, const char *name)
{
    const tsnap_cuda_ops *ops;
    void *saved;
    int err;
    if ((err = stage_begin(st, device, nslots, bytes, file, name, &saved)) < 0)
        return err;
    ops = st->ops;
    err = stage_setup(st, caller_stream, nslots, scratch, NULL);
    leave(ops, saved);
    return err;
}

void tsnap__stage_close(tsnap_stage *st)
{
    const tsnap_cuda_ops *ops = st->ops;
    void *saved;
    if (!ops)
        return;
    /* Any thread, the caller's context or none current: the device's. */
    if (enter(ops, st->device, &saved) != 0) {
        st->ops = NULL; /* the driver is gone (a fork); nothing can be freed */
        st->nslots = 0;
        return;
    }
    stage_release(st);
    leave(ops, saved);
}

/* The driver's word that `p`, given as memory of CUDA device st->device,
 * is: a pointer of another device, or host memory, would be read as stale
 * data or fault the context that every framework in the process shares. */
static int check_pointer(tsnap_stage *st, const void *p)
{
    int kind = TSNAP_CUDA_MEM_UNKNOWN, device = -1, rc;
    if (st->checked == p)
        return 0;
    if ((rc = st->ops->pointer_kind(p, &kind, &device)) != 0)
        return cuda_err(st, rc, "asking the driver about the tensor's pointer");
    if (kind == TSNAP_CUDA_MEM_UNKNOWN || kind == TSNAP_CUDA_MEM_PINNED)
        return tsnap__err(TSNAP_EINVAL, st->file, st->name,
                          "the tensor is labelled CUDA device %d, but its data (%p) is %s host "
                          "memory; label it kDLCPU%s",
                          st->device, p, kind == TSNAP_CUDA_MEM_PINNED ? "pinned" : "ordinary",
                          kind == TSNAP_CUDA_MEM_PINNED ? " or kDLCUDAHost" : "");
    if (kind == TSNAP_CUDA_MEM_DEVICE && device != st->device)
        return tsnap__err(TSNAP_EINVAL, st->file, st->name,
                          "the tensor is labelled CUDA device %d, but its data (%p) is memory of "
                          "CUDA device %d",
                          st->device, p, device);
    st->checked = p;
    return 0;
}

/* Queues a copy between slot `i`'s pinned buffer and logical elements
 * [first, first+n) of device view `v`: to the host (fetch) or back
 * (store); a strided view is packed or unpacked in the slot's scratch.
 * The device is current. */
static int stage_move_in(tsnap_stage *st, unsigned i, const tsnap_view *v, uint64_t first,
                         uint64_t n, bool fetch)
{
    struct tsnap_stage_slot *sl = &st->slot[i];
    size_t bytes = (size_t)(n * v->itemsize);
    int kind = fetch ? TSNAP_CUDA_D2H : TSNAP_CUDA_H2D, rc, err;
    const char *copying = fetch ? "copying device memory to the host"
                                : "copying host memory to the device";

    if (i >= st->nslots || bytes > st->bytes)
        return tsnap__err(TSNAP_EINVAL, st->file, st->name,
                          "staging slot %u cannot hold %llu elements", i, (unsigned long long)n);
    if (!v->contiguous && !sl->scratch)
        return tsnap__err(TSNAP_EINVAL, st->file, st->name, "no buffer to pack a strided tensor");
    if ((err = check_pointer(st, v->base)) < 0)
        return err;
    char *range = v->base + first * v->itemsize;
    if (v->contiguous)
        rc = fetch ? st->ops->copy(sl->host, range, bytes, kind, st->stream)
                   : st->ops->copy(range, sl->host, bytes, kind, st->stream);
    else if (fetch && (rc = st->ops->gather(v, first, n, sl->scratch, st->stream)) != 0)
        return cuda_err(st, rc, "packing the strided tensor on the device");
    else
        rc = fetch ? st->ops->copy(sl->host, sl->scratch, bytes, kind, st->stream)
                   : st->ops->copy(sl->scratch, sl->host, bytes, kind, st->stream);
    if (rc != 0)
        return cuda_err(st, rc, copying);
    if (!fetch && !v->contiguous && (rc = st->ops->scatter(v, first, n, sl->scratch, st->stream)))
        return cuda_err(st, rc, "unpacking into the strided tensor on the device");
    if ((rc = st->ops->event_record(sl->event, st->stream)) != 0)
        return cuda_err(st, rc, "recording an event");
    sl->queued = true;
    return 0;
}

static int stage_move(tsnap_stage *st, unsigned i, const tsnap_view *v, uint64_t first,
                      uint64_t n, bool fetch)
{
    void *saved;
    int err, rc;
    if (!st->ops)
        return tsnap__err(TSNAP_ESTATE, st->file, st->name, "the staging is closed");
    if ((rc = enter(st->ops, st->device, &saved)) != 0)
        return cuda_err(st, rc, "making the device current");
    err = stage_move_in(st, i, v, first, n, fetch);
    leave(st->ops, saved);
    return err;
}

/* Waits for slot `i`'s copy, the device current. */
static int stage_wait_in(tsnap_stage *st, unsigned i)
{
    int rc;
    if ((rc = st->ops->event_sync(st->slot[i].event)) != 0)
        return cuda_err(st, rc, "waiting for a copy");
    st->slot[i].queued = false;
    return 0;
}

int tsnap__stage_into(const tsnap_view *v, void *caller_stream, void *host, const char *file,
                      const char *name)
{
    const tsnap_cuda_ops *ops;
    tsnap_stage st;
    void *saved;
    int err;
    if ((err = stage_begin(&st, v->device, 1, (size_t)v->nbytes, file, name, &saved)) < 0)
        return err;
    ops = st.ops;
    if ((err = stage_setup(&st, caller_stream, 1, !v->contiguous, host)) == 0) {
        if ((err = stage_move_in(&st, 0, v, 0, v->nelems, true)) == 0)
            err = stage_wait_in(&st, 0);
        stage_release(&st);
    }
    leave(ops, saved);
    return err;
}

int tsnap__stage_fetch(tsnap_stage *st, unsigned i, const tsnap_view *v, uint64_t first,
                       uint64_t n)
{
    return stage_move(st, i, v, first, n, true);
}

int tsnap__stage_store(tsnap_stage *st, unsigned i, const tsnap_view *v, uint64_t first,
                       uint64_t n)
{
    return stage_move(st, i, v, first, n, false);
}

int tsnap__stage_whole(tsnap_stage *st, const tsnap_view *v, void *caller_stream,
                       const char *file, const char *name)
{
    int err = tsnap__stage_open(st, v->device, caller_stream, 1, (size_t)v->nbytes,
                                !v->contiguous, file, name);
    if (err == 0 && (err = tsnap__stage_fetch(st, 0, v, 0, v->nelems)) < 0)
        tsnap__stage_close(st);
    return err;
}

int tsnap__stage_wait(tsnap_stage *st, unsigned i)
{
    void *saved;
    int err, rc;
    if (i >= st->nslots || !st->slot[i].queued)
        return 0;
    /* A worker thread may wait too: the device must be its current one. */
    if ((rc = enter(st->ops, st->device, &saved)) != 0)
        return cuda_err(st, rc, "waiting for a copy");
    err = stage_wait_in(st, i);
    leave(st->ops, saved);
    return err;
}

#ifndef TSNAP_HAVE_CUDA
const tsnap_cuda_ops *tsnap__cuda_runtime(void) { return NULL; }
#endif

/*
 * device.c - tensors in CUDA memory, reached through pinned staging.
 *
 * A put copies each chunk of a device tensor into a pinned host buffer on
 * a stream of tsnap's own, ordered after the caller's stream; the chunk
 * then goes through the same pipeline as host memory (writer.c), so the
 * copies of later chunks overlap the checksum, compression and write of
 * earlier ones.  A strided tensor is packed on the device first (cuda.cu's
 * gather kernel).  A read fills pinned slabs from the file and copies them
 * to the device, one slab's copy overlapping the next slab's read.
 *
 * Everything goes through a table of CUDA runtime calls (tsnap_cuda_ops):
 * cuda.cu's in a build with CUDA, none without, or a test's own.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PINNED_KEEP ((size_t)256 << 20) /* pinned bytes kept for the next call */
#define PINNED_CACHE 32

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static const tsnap_cuda_ops *override;

/* Pinned buffers kept after use: pinning is slow (the pages are locked). */
static struct pinned {
    const tsnap_cuda_ops *ops;
    void *p;
    size_t cap;
} cache[PINNED_CACHE];
static size_t cached_bytes;

static void cache_flush_locked(void)
{
    for (int i = 0; i < PINNED_CACHE; i++)
        if (cache[i].p) {
            cache[i].ops->host_free(cache[i].p);
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

static const tsnap_cuda_ops *current_ops(void)
{
    pthread_mutex_lock(&mu);
    const tsnap_cuda_ops *ops = override ? override : tsnap__cuda_runtime();
    pthread_mutex_unlock(&mu);
    return ops;
}

static int pinned_get(const tsnap_cuda_ops *ops, size_t size, void **out)
{
    pthread_mutex_lock(&mu);
    for (int i = 0; i < PINNED_CACHE; i++)
        if (cache[i].p && cache[i].ops == ops && cache[i].cap >= size &&
            cache[i].cap / 2 <= size) {
            *out = cache[i].p;
            cache[i].p = NULL;
            cached_bytes -= cache[i].cap;
            pthread_mutex_unlock(&mu);
            return 0;
        }
    pthread_mutex_unlock(&mu);
    return ops->host_alloc(out, size);
}

static void pinned_put(const tsnap_cuda_ops *ops, void *p, size_t cap)
{
    if (!p)
        return;
    pthread_mutex_lock(&mu);
    if (cached_bytes + cap <= PINNED_KEEP)
        for (int i = 0; i < PINNED_CACHE; i++)
            if (!cache[i].p) {
                cache[i] = (struct pinned){ops, p, cap};
                cached_bytes += cap;
                pthread_mutex_unlock(&mu);
                return;
            }
    pthread_mutex_unlock(&mu);
    ops->host_free(p);
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
    if ((rc = ops->set_device(device)) != 0)
        return tsnap__err(TSNAP_ECUDA, file, name, "cannot use CUDA device %d: %s", device,
                          ops->error_string(rc));
    *out = ops;
    return 0;
}

int tsnap__cuda_check(int device, const char *file, const char *name)
{
    const tsnap_cuda_ops *ops;
    return ops_for(device, file, name, &ops);
}

int tsnap__cuda_alloc(int device, size_t n, void **p, const char *file, const char *name)
{
    const tsnap_cuda_ops *ops;
    int err, rc;
    *p = NULL;
    if ((err = ops_for(device, file, name, &ops)) < 0)
        return err;
    if ((rc = ops->dev_alloc(p, n ? n : 1)) != 0) {
        *p = NULL;
        return tsnap__err(TSNAP_ECUDA, file, name,
                          "allocating %zu bytes on CUDA device %d failed: %s", n, device,
                          ops->error_string(rc));
    }
    return 0;
}

void tsnap__cuda_free(int device, void *p)
{
    const tsnap_cuda_ops *ops = current_ops();
    if (ops && p && ops->set_device(device) == 0)
        ops->dev_free(p);
}

int tsnap__stage_open(tsnap_stage *st, int device, void *caller_stream, unsigned nslots,
                      size_t bytes, bool scratch, const char *file, const char *name)
{
    void *start = NULL;
    int err, rc;

    memset(st, 0, sizeof *st);
    st->device = device;
    st->file = file;
    st->name = name;
    st->bytes = bytes ? bytes : 1;
    if (nslots < 1 || nslots > sizeof st->slot / sizeof st->slot[0])
        return tsnap__err(TSNAP_EINVAL, file, name, "%u staging slots", nslots);
    if ((err = ops_for(device, file, name, &st->ops)) < 0)
        return err;
    if ((rc = st->ops->stream_create(&st->stream)) != 0) {
        err = cuda_err(st, rc, "creating a stream");
        st->stream = NULL;
        goto fail;
    }
    for (unsigned i = 0; i < nslots; i++, st->nslots++) {
        struct tsnap_stage_slot *sl = &st->slot[i];
        if ((rc = pinned_get(st->ops, st->bytes, &sl->host)) != 0) {
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
    tsnap__stage_close(st);
    return err;
}

void tsnap__stage_close(tsnap_stage *st)
{
    if (!st->ops)
        return;
    if (st->stream)
        st->ops->stream_sync(st->stream);
    for (unsigned i = 0; i < st->nslots; i++) {
        struct tsnap_stage_slot *sl = &st->slot[i];
        pinned_put(st->ops, sl->host, st->bytes);
        if (sl->scratch)
            st->ops->dev_free(sl->scratch);
        if (sl->event)
            st->ops->event_destroy(sl->event);
    }
    if (st->stream)
        st->ops->stream_destroy(st->stream);
    st->ops = NULL;
    st->nslots = 0;
}

/* Queues a copy between slot `i`'s pinned buffer and logical elements
 * [first, first+n) of device view `v`: to the host (fetch) or back
 * (store); a strided view is packed or unpacked in the slot's scratch. */
static int stage_move(tsnap_stage *st, unsigned i, const tsnap_view *v, uint64_t first,
                      uint64_t n, bool fetch)
{
    struct tsnap_stage_slot *sl = &st->slot[i];
    size_t bytes = (size_t)(n * v->itemsize);
    int kind = fetch ? TSNAP_CUDA_D2H : TSNAP_CUDA_H2D, rc;
    const char *copying = fetch ? "copying device memory to the host"
                                : "copying host memory to the device";

    if (i >= st->nslots || bytes > st->bytes)
        return tsnap__err(TSNAP_EINVAL, st->file, st->name,
                          "staging slot %u cannot hold %llu elements", i, (unsigned long long)n);
    if (!v->contiguous && !sl->scratch)
        return tsnap__err(TSNAP_EINVAL, st->file, st->name, "no buffer to pack a strided tensor");
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
    struct tsnap_stage_slot *sl = &st->slot[i];
    int rc;
    if (i >= st->nslots || !sl->queued)
        return 0;
    /* A worker thread may wait too: the device must be its current one. */
    if ((rc = st->ops->set_device(st->device)) != 0 || (rc = st->ops->event_sync(sl->event)) != 0)
        return cuda_err(st, rc, "waiting for a copy");
    sl->queued = false;
    return 0;
}

#ifndef TSNAP_HAVE_CUDA
const tsnap_cuda_ops *tsnap__cuda_runtime(void) { return NULL; }
#endif

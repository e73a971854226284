/*
 * test_device.c - tensors in CUDA memory, through a fake CUDA runtime that
 * runs on the CPU, so that the staging runs on every machine.
 *
 * The fake's "device memory" is host memory.  Its streams are strict:
 * work queued on a stream runs only when something waits for it (an event
 * or stream sync), and a stream waiting on another's event first runs
 * that stream up to the event.  A library that read a pinned buffer before
 * waiting for its copy, or copied before the caller's stream got there,
 * sees stale bytes and fails these tests.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

/* ---- the fake runtime ------------------------------------------------ */

enum op_kind { OP_COPY, OP_GATHER, OP_SCATTER, OP_RECORD, OP_WAIT, OP_FILL };

typedef struct fstream fstream;
typedef struct fevent {
    fstream *stream; /* where it was last recorded (NULL: done) */
    unsigned long seq;
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
    fop ops[4096];
    size_t head, tail; /* queued: [head, tail) */
    unsigned long done; /* the last record seq executed */
};

static struct fake {
    int devices, count_error;
    int fail_copy_after; /* the copy after this many fails (-1: never) */
    int fail_sync;       /* event waits fail */
    int copies;
    long host_live, dev_live, streams_live, events_live;
    unsigned long seq;
} F;

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

/* Workers wait on events while the caller queues: one lock for it all. */
static pthread_mutex_t fake_mu = PTHREAD_MUTEX_INITIALIZER;

static int enqueue_locked(fstream *s, fop o)
{
    if (!s) { /* the legacy default stream: runs at once */
        run_op(&o);
        return 0;
    }
    if (s->tail - s->head >= 4096)
        return 99;
    s->ops[s->tail++ % 4096] = o;
    return 0;
}

static int enqueue(void *stream, fop o)
{
    pthread_mutex_lock(&fake_mu);
    int rc = enqueue_locked(stream, o);
    pthread_mutex_unlock(&fake_mu);
    return rc;
}

static void run_locked(fstream *s, unsigned long upto)
{
    pthread_mutex_lock(&fake_mu);
    run_stream(s, upto);
    pthread_mutex_unlock(&fake_mu);
}

static int f_device_count(int *n)
{
    *n = F.devices;
    return F.count_error;
}
static int f_set_device(int d) { return d < F.devices ? 0 : 101; }
static int f_stream_create(void **s)
{
    *s = calloc(1, sizeof(fstream));
    F.streams_live++;
    return *s ? 0 : 2;
}
static int f_stream_destroy(void *s)
{
    free(s);
    F.streams_live--;
    return 0;
}
static int f_stream_sync(void *s)
{
    if (s)
        run_locked(s, 0);
    return 0;
}
static int f_event_create(void **e)
{
    *e = calloc(1, sizeof(fevent));
    F.events_live++;
    return *e ? 0 : 2;
}
static int f_event_destroy(void *e)
{
    free(e);
    F.events_live--;
    return 0;
}
static int f_event_record(void *e, void *stream)
{
    fevent *ev = e;
    pthread_mutex_lock(&fake_mu);
    ev->stream = stream;
    ev->seq = ++F.seq;
    int rc = enqueue_locked(stream, (fop){.kind = OP_RECORD, .seq = ev->seq});
    pthread_mutex_unlock(&fake_mu);
    return rc;
}
static int f_event_sync(void *e)
{
    fevent *ev = e;
    if (F.fail_sync)
        return 77;
    pthread_mutex_lock(&fake_mu);
    if (ev->stream)
        run_stream(ev->stream, ev->seq);
    pthread_mutex_unlock(&fake_mu);
    return 0;
}
/* Like cudaStreamWaitEvent: what the event stands for now, not later. */
static int f_stream_wait_event(void *stream, void *e)
{
    fevent *ev = e;
    pthread_mutex_lock(&fake_mu);
    int rc = enqueue_locked(stream, (fop){.kind = OP_WAIT, .wait_on = ev->stream, .seq = ev->seq});
    pthread_mutex_unlock(&fake_mu);
    return rc;
}
static int f_host_alloc(void **p, size_t n)
{
    *p = malloc(n);
    F.host_live++;
    return *p ? 0 : 2;
}
static int f_host_free(void *p)
{
    free(p);
    F.host_live--;
    return 0;
}
static int f_dev_alloc(void **p, size_t n)
{
    *p = malloc(n);
    F.dev_live++;
    return *p ? 0 : 2;
}
static int f_dev_free(void *p)
{
    free(p);
    F.dev_live--;
    return 0;
}
static int f_copy(void *dst, const void *src, size_t n, int kind, void *stream)
{
    (void)kind;
    if (F.fail_copy_after >= 0 && F.copies++ >= F.fail_copy_after)
        return 77;
    return enqueue(stream, (fop){.kind = OP_COPY, .dst = dst, .src = src, .n = n});
}
static int f_gather(const tsnap_view *v, uint64_t first, uint64_t n, void *dst, void *stream)
{
    return enqueue(stream, (fop){.kind = OP_GATHER, .dst = dst, .v = *v, .first = first,
                                 .count = n});
}
static int f_scatter(const tsnap_view *v, uint64_t first, uint64_t n, const void *src,
                     void *stream)
{
    return enqueue(stream, (fop){.kind = OP_SCATTER, .src = src, .v = *v, .first = first,
                                 .count = n});
}
static const char *f_error_string(int err)
{
    switch (err) {
    case 77: return "fake copy failure";
    case 100: return "fake: no CUDA-capable device is detected";
    case 101: return "fake: invalid device ordinal";
    default: return "fake error";
    }
}

static const tsnap_cuda_ops FAKE = {
    "fake CUDA", f_device_count, f_set_device, f_stream_create, f_stream_destroy, f_stream_sync,
    f_stream_wait_event, f_event_create, f_event_destroy, f_event_record, f_event_sync,
    f_host_alloc, f_host_free, f_dev_alloc, f_dev_free, f_copy, f_gather, f_scatter,
    f_error_string,
};

static void fake_on(void)
{
    memset(&F, 0, sizeof F);
    F.devices = 1;
    F.fail_copy_after = -1;
    tsnap__cuda_set_ops(&FAKE);
}

/* Back to the real runtime; everything the fake handed out came back. */
static void fake_off(void)
{
    tsnap__cuda_set_ops(NULL); /* frees the pinned buffers kept */
    CHECK_MSG(F.host_live == 0 && F.dev_live == 0 && F.streams_live == 0 && F.events_live == 0,
              "left over: %ld pinned, %ld device buffers, %ld streams, %ld events", F.host_live,
              F.dev_live, F.streams_live, F.events_live);
}

static DLTensor on_device(DLTensor t, int device)
{
    t.device.device_type = kDLCUDA;
    t.device.device_id = device;
    return t;
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
    void *caller = NULL;
    CHECK_FATAL(f_stream_create(&caller) == 0);
    CHECK_FATAL(enqueue(caller, (fop){.kind = OP_FILL, .dst = dev, .n = N, .fill = 0x7e}) == 0);
    const char *path = tpath("ordered.h5");
    tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
    o.chunk_bytes = 65536;
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, &o));
    CHECK_OK(tsnap_writer_put_stream(w, "x", &t, caller));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    f_stream_destroy(caller);
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
    F.count_error = 100;
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
    F.devices = 0;
    F.count_error = 100;
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
    TEST(test_every_case_saves_from_device_memory_uncompressed),
    TEST(test_every_case_saves_from_device_memory_in_tiny_deflate_chunks),
    TEST(test_every_case_saves_from_device_memory_on_one_thread),
    TEST(test_a_put_on_the_callers_stream_sees_its_queued_work),
    TEST(test_async_puts_write_what_the_tensors_held_before_the_wait_returned),
    TEST(test_async_puts_are_written_at_commit_and_their_names_are_taken),
    TEST(test_async_put_failures_surface_at_the_call_the_wait_or_the_commit),
    TEST(test_every_case_reads_into_device_memory_contiguous_and_strided),
    TEST(test_big_selections_read_into_device_memory_in_slabs),
    TEST(test_no_device_gives_enocuda_and_leaves_the_writer_usable),
    TEST(test_a_failing_copy_gives_ecuda_and_the_earlier_snapshot_survives),
    TEST(test_without_a_device_the_real_runtime_refuses_with_the_reason),
    TEST_END,
};

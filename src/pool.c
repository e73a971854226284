/*
 * pool.c - the worker threads, and jobs: items (chunks) moving through
 * up to four steps with a bounded number in flight.
 *
 *   produce  in the calling thread, in item order (e.g. read a chunk);
 *   work     on any worker, in parallel (e.g. compress, decompress);
 *   serial   one item at a time, in item order, after work (the checksum,
 *            which is one stream over the whole tensor);
 *   consume  in the calling thread, in item order, after work (e.g. write
 *            the chunk); it runs while later items are still in work or
 *            serial.
 *
 * Only the calling thread runs produce and consume, so only it calls
 * HDF5; workers only compute.  An item's slot (its buffers) is free again
 * when all its steps are done, so at most `window` items are in flight
 * and memory stays bounded.  One pool serves every job in the process.
 */
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define THREADS_MAX 256

typedef struct task {
    struct job *job;
    uint64_t item;
    struct task *next;
} task;

typedef struct pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    task *head, *tail;
    int nthreads;
} pool;

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pool *the_pool;   /* made on first use; kept for the process */
static int threads_set;  /* tsnap_set_threads; 0: the default */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* ---- threads ------------------------------------------------------ */

static int cores(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int tsnap_threads(void)
{
    int n = __atomic_load_n(&threads_set, __ATOMIC_RELAXED);
    if (n > 0)
        return n;
    const char *env = getenv("TSNAP_NUM_THREADS");
    if (env && *env) {
        long v = strtol(env, NULL, 10);
        if (v >= 1 && v <= THREADS_MAX)
            return (int)v;
    }
    n = cores();
    return n < THREADS_MAX ? n : THREADS_MAX;
}

int tsnap_set_threads(int n)
{
    tsnap__begin();
    if (n < 0 || n > THREADS_MAX)
        return tsnap__err(TSNAP_EINVAL, NULL, NULL, "threads %d is outside 0..%d", n,
                          THREADS_MAX);
    __atomic_store_n(&threads_set, n, __ATOMIC_RELAXED);
    return 0;
}

static void *worker_main(void *arg)
{
    pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head)
            pthread_cond_wait(&p->cv, &p->mu);
        task *t = p->head;
        p->head = t->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        tsnap__job_task(t->job, t->item);
        pthread_mutex_lock(&p->mu);
    }
    return NULL;
}

/* A forked child has none of the parent's workers: it starts a pool of
 * its own when it needs one (the parent's is left behind, unused). */
static void atfork_child(void)
{
    pthread_mutex_init(&pool_mu, NULL);
    the_pool = NULL;
}

static void atfork_register(void) { pthread_atfork(NULL, NULL, atfork_child); }

/* The pool with at least `want` workers (it grows, never shrinks); NULL
 * if no thread can be started, and the job then runs in the caller. */
static pool *pool_get(int want)
{
    pool *p;
    pthread_once(&atfork_once, atfork_register);
    pthread_mutex_lock(&pool_mu);
    if (!the_pool && (the_pool = calloc(1, sizeof *the_pool))) {
        pthread_mutex_init(&the_pool->mu, NULL);
        pthread_cond_init(&the_pool->cv, NULL);
    }
    p = the_pool;
    while (p && p->nthreads < want) {
        pthread_t th;
        pthread_attr_t attr;
        int rc;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        rc = pthread_create(&th, &attr, worker_main, p);
        pthread_attr_destroy(&attr);
        if (rc != 0)
            break;
        p->nthreads++;
    }
    if (p && p->nthreads == 0)
        p = NULL;
    pthread_mutex_unlock(&pool_mu);
    return p;
}

static void pool_submit(pool *p, task *t)
{
    pthread_mutex_lock(&p->mu);
    t->next = NULL;
    if (p->tail)
        p->tail->next = t;
    else
        p->head = t;
    p->tail = t;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* ---- staging buffers ---------------------------------------------- */

/*
 * Fresh memory is slow to touch the first time (a fault per 4 KiB page),
 * and chunk buffers are large: buffers are kept for the next call, up to
 * a bound, and big ones asked for transparent huge pages.
 */
#define BUF_CACHE_COUNT 32
#define BUF_CACHE_BYTES ((size_t)256 << 20)
#define BUF_ALIGN ((size_t)2 << 20)

static pthread_mutex_t buf_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    void *p;
    size_t cap;
} buf_cache[BUF_CACHE_COUNT];
static size_t buf_cached;

void *tsnap__buf_get(size_t size, size_t *cap)
{
    int best = -1;
    void *p;

    pthread_mutex_lock(&buf_mu);
    for (int i = 0; i < BUF_CACHE_COUNT; i++)
        if (buf_cache[i].p && buf_cache[i].cap >= size &&
            (best < 0 || buf_cache[i].cap < buf_cache[best].cap))
            best = i;
    if (best >= 0) {
        p = buf_cache[best].p;
        *cap = buf_cache[best].cap;
        buf_cached -= *cap;
        buf_cache[best].p = NULL;
        pthread_mutex_unlock(&buf_mu);
        return p;
    }
    pthread_mutex_unlock(&buf_mu);
    if (size < BUF_ALIGN) {
        *cap = size ? size : 1;
        return malloc(*cap);
    }
    *cap = (size + BUF_ALIGN - 1) / BUF_ALIGN * BUF_ALIGN;
    p = aligned_alloc(BUF_ALIGN, *cap);
    if (p)
        madvise(p, *cap, MADV_HUGEPAGE);
    return p;
}

void tsnap__buf_put(void *p, size_t cap)
{
    if (!p)
        return;
    pthread_mutex_lock(&buf_mu);
    if (cap >= BUF_ALIGN && buf_cached + cap <= BUF_CACHE_BYTES) {
        for (int i = 0; i < BUF_CACHE_COUNT; i++) {
            if (!buf_cache[i].p) {
                buf_cache[i].p = p;
                buf_cache[i].cap = cap;
                buf_cached += cap;
                pthread_mutex_unlock(&buf_mu);
                return;
            }
        }
    }
    pthread_mutex_unlock(&buf_mu);
    free(p);
}

int tsnap__buf_reserve(tsnap_buf *b, size_t size)
{
    if (b->cap >= size && b->p)
        return 0;
    tsnap__buf_put(b->p, b->cap);
    b->cap = 0;
    b->p = tsnap__buf_get(size, &b->cap);
    return b->p ? 0 : TSNAP_ENOMEM;
}

void tsnap__buf_release(tsnap_buf *b)
{
    tsnap__buf_put(b->p, b->cap);
    b->p = NULL;
    b->cap = 0;
}

/* ---- jobs --------------------------------------------------------- */

typedef struct job {
    const tsnap_job_spec *s;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t produced, consumed, serialed, retired;
    unsigned char *worked; /* per slot: the slot's item finished work */
    task *tasks;           /* per slot */
    unsigned inflight;     /* tasks submitted and not finished */
    bool serial_busy;
    int err;
    char msg[1024];
} job;

static void set_err(job *j, int err)
{
    if (j->err)
        return;
    j->err = err;
    snprintf(j->msg, sizeof j->msg, "%s", tsnap_errmsg());
}

static void retire(job *j)
{
    const tsnap_job_spec *s = j->s;
    while (j->retired < j->produced && j->worked[j->retired % s->window] &&
           (!s->serial || j->serialed > j->retired) && (!s->consume || j->consumed > j->retired))
        j->retired++;
}

/* Runs serial steps while the next item is ready and nobody else is at
 * it.  Called with j->mu held; returns whether it ran any. */
static bool run_serial(job *j)
{
    const tsnap_job_spec *s = j->s;
    bool ran = false;
    while (s->serial && !j->err && !j->serial_busy && j->serialed < j->produced &&
           j->worked[j->serialed % s->window]) {
        uint64_t item = j->serialed;
        int rc;
        j->serial_busy = true;
        pthread_mutex_unlock(&j->mu);
        rc = s->serial(s->ctx, item, (unsigned)(item % s->window));
        pthread_mutex_lock(&j->mu);
        j->serial_busy = false;
        if (rc < 0)
            set_err(j, rc);
        j->serialed++;
        retire(j);
        pthread_cond_broadcast(&j->cv);
        ran = true;
    }
    return ran;
}

void tsnap__job_task(struct job *j, uint64_t item)
{
    const tsnap_job_spec *s = j->s;
    unsigned slot = (unsigned)(item % s->window);
    int rc = 0;

    if (s->work && !__atomic_load_n(&j->err, __ATOMIC_RELAXED))
        rc = s->work(s->ctx, item, slot);
    pthread_mutex_lock(&j->mu);
    if (rc < 0)
        set_err(j, rc);
    j->worked[slot] = 1;
    retire(j);
    pthread_cond_broadcast(&j->cv);
    run_serial(j);
    j->inflight--;
    pthread_cond_broadcast(&j->cv);
    /* The last touch of the job: the caller may return once it sees
     * inflight at 0, which it can only do after this unlock. */
    pthread_mutex_unlock(&j->mu);
}

/* Everything in the calling thread, item by item. */
static int run_inline(const tsnap_job_spec *s)
{
    int err = 0;
    for (uint64_t i = 0; i < s->n && !err; i++) {
        unsigned slot = (unsigned)(i % s->window);
        if ((s->produce && (err = s->produce(s->ctx, i, slot)) < 0) ||
            (s->work && (err = s->work(s->ctx, i, slot)) < 0) ||
            (s->serial && (err = s->serial(s->ctx, i, slot)) < 0) ||
            (s->consume && (err = s->consume(s->ctx, i, slot)) < 0))
            break;
    }
    return err;
}

int tsnap__job_run(const tsnap_job_spec *s)
{
    job j;
    pool *p = NULL;
    int rc;

    if (s->n == 0)
        return 0;
    if (s->threads > 1 && s->n > 1 && (s->work || s->serial))
        p = pool_get((int)s->threads);
    if (!p || s->window < 2)
        return run_inline(s);

    memset(&j, 0, sizeof j);
    j.s = s;
    j.worked = calloc(s->window, 1);
    j.tasks = calloc(s->window, sizeof *j.tasks);
    if (!j.worked || !j.tasks) {
        free(j.worked);
        free(j.tasks);
        return run_inline(s);
    }
    pthread_mutex_init(&j.mu, NULL);
    pthread_cond_init(&j.cv, NULL);

    pthread_mutex_lock(&j.mu);
    for (;;) {
        /* Done (or failed), once no worker still holds the job. */
        if (j.err || j.retired == s->n) {
            if (j.inflight == 0 && !j.serial_busy)
                break;
            pthread_cond_wait(&j.cv, &j.mu);
            continue;
        }
        if (j.produced < s->n && j.produced - j.retired < s->window) {
            uint64_t item = j.produced;
            unsigned slot = (unsigned)(item % s->window);
            pthread_mutex_unlock(&j.mu);
            rc = s->produce ? s->produce(s->ctx, item, slot) : 0;
            pthread_mutex_lock(&j.mu);
            if (rc < 0) {
                set_err(&j, rc);
                continue;
            }
            j.worked[slot] = 0;
            j.produced++;
            j.inflight++;
            j.tasks[slot].job = &j;
            j.tasks[slot].item = item;
            pthread_mutex_unlock(&j.mu);
            pool_submit(p, &j.tasks[slot]);
            pthread_mutex_lock(&j.mu);
            continue;
        }
        if (s->consume && j.consumed < j.produced &&
            j.worked[j.consumed % s->window]) {
            uint64_t item = j.consumed;
            pthread_mutex_unlock(&j.mu);
            rc = s->consume(s->ctx, item, (unsigned)(item % s->window));
            pthread_mutex_lock(&j.mu);
            if (rc < 0)
                set_err(&j, rc);
            j.consumed++;
            retire(&j);
            continue;
        }
        if (run_serial(&j)) /* the caller helps when it has nothing else to do */
            continue;
        pthread_cond_wait(&j.cv, &j.mu);
    }
    pthread_mutex_unlock(&j.mu);
    pthread_cond_destroy(&j.cv);
    pthread_mutex_destroy(&j.mu);
    free(j.worked);
    free(j.tasks);
    if (j.err)
        /* A worker's message is in the job, not in this thread's. */
        return tsnap__err(j.err, NULL, NULL, "%s", j.msg);
    return 0;
}

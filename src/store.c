/*
 * store.c - a directory of step-numbered snapshots.
 *
 * Each step is one ordinary tsnap file, step-<step, 12+ digits>.h5,
 * written by a tsnap_writer under a temporary name and renamed into
 * place, so a listing of the directory only ever shows complete steps.
 * A writing handle holds an exclusive flock on .tsnap-store.lock (the
 * kernel drops it when the process dies, so a killed writer leaves no
 * stale lock); with it held, the temporary files a killed writer left
 * behind are removed.  Readers take no lock.
 *
 * Background saves: tsnap_store_save(wait 0) copies the tensors into host
 * staging memory (the budget, staging_bytes, makes it wait for room), and
 * tsnap_store_save_items the strings, group names and recorded types too,
 * and queues the step; the store's one background thread writes the queued
 * steps in order, each through begin/put/commit exactly as a waiting save
 * does.  HDF5 (built thread-safe) serialises its calls with the caller's.
 */
#define TSNAP_STORE_HOOKS
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define LOCK_NAME ".tsnap-store.lock"
#define STEP_PREFIX "step-"
#define STEP_SUFFIX ".h5"
#define TEMP_SUFFIX ".tsnap-tmp"

/* One item of a queued step, in host memory: a tensor (C order), a
 * string or a group. */
typedef struct staged {
    char *name;
    tsnap_store_item_kind kind;
    char *data; /* a string's bytes (len of them); an attribute's, NUL-terminated */
    size_t len;
    int string_kind;
    char *pytype; /* NULL: none recorded */
    DLTensor t;
    int64_t shape[TSNAP_MAX_NDIM];
    void *heap;        /* the bytes: pinned for CUDA tensors */
    size_t heap_cap;
    int pin_device;    /* pinned for that CUDA device's staging; -1: malloc'ed */
    unsigned pin_gen;  /* the device's generation then (see tsnap__pinned_alloc) */
} staged;

typedef struct job {
    int64_t step;
    size_t n, bytes;
    staged *items;
    size_t nattrs;
    staged *attrs;      /* `name` is the key; a string value in `data` */
    struct job *next;
} job;

struct tsnap_store {
    char *dir;
    int lock_fd; /* -1: read only */
    tsnap_store_options opts;
    bool threadsafe; /* HDF5's calls may come from the background thread */
    bool hooked;     /* hooks.write writes the steps */
    tsnap_store_hooks hooks;
    /* the background saves */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool started, stopping, busy;
    job *head, *tail;
    size_t staged_bytes; /* held by queued and running jobs */
    int bg_err;
    char bg_msg[1024];
    int bg_errno;       /* its tsnap_errno() */
    char bg_path[1024]; /* its tsnap_errpath() */
    /* staging buffers kept for the next save: touching fresh memory costs
     * a page fault per page, more than the copy itself */
    struct spare {
        void *p;
        size_t cap;
        int device; /* pinned for this CUDA device; -1: malloc'ed */
        unsigned gen;
    } spare[16];
    size_t spare_bytes;
};

static void staging_free(struct spare *sp);

/* The step a file name stands for, or -1: exactly the name
 * tsnap_store_path gives (so that each step has one name). */
static int64_t step_of(const char *name)
{
    size_t n = strlen(name), np = strlen(STEP_PREFIX), ns = strlen(STEP_SUFFIX);
    char canonical[64];
    int64_t step = 0;

    if (n <= np + ns || n - np - ns > 19 || strncmp(name, STEP_PREFIX, np) != 0 ||
        strcmp(name + n - ns, STEP_SUFFIX) != 0)
        return -1;
    for (size_t i = np; i < n - ns; i++) {
        if (name[i] < '0' || name[i] > '9')
            return -1;
        int d = name[i] - '0';
        if (step > (INT64_MAX - d) / 10)
            return -1;
        step = step * 10 + d;
    }
    snprintf(canonical, sizeof canonical, STEP_PREFIX "%012" PRId64 STEP_SUFFIX, step);
    return strcmp(canonical, name) == 0 ? step : -1;
}

/* A temporary file of a step's writer: "." + step name + ... + ".tsnap-tmp". */
static bool is_step_temp(const char *name)
{
    size_t n = strlen(name), ns = strlen(TEMP_SUFFIX);
    return name[0] == '.' && strncmp(name + 1, STEP_PREFIX, strlen(STEP_PREFIX)) == 0 &&
           n > ns && strcmp(name + n - ns, TEMP_SUFFIX) == 0;
}

static int cmp_step(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Every committed step, ascending, malloc'ed into *out. */
static int list_steps(const tsnap_store *s, int64_t **out, size_t *count)
{
    DIR *d = opendir(s->dir);
    size_t n = 0, cap = 0;
    int64_t *v = NULL;
    struct dirent *e;

    *out = NULL;
    *count = 0;
    if (!d)
        return tsnap__err(errno == ENOENT ? TSNAP_ENOTFOUND : TSNAP_EIO, s->dir, NULL,
                          "cannot list the store's directory: %s", strerror(errno));
    errno = 0;
    while ((e = readdir(d))) {
        int64_t step = step_of(e->d_name);
        if (step < 0)
            continue;
        if (n == cap) {
            int64_t *grown = realloc(v, (cap = cap ? 2 * cap : 64) * sizeof *v);
            if (!grown) {
                free(v);
                closedir(d);
                return tsnap__err(TSNAP_ENOMEM, s->dir, NULL, "out of memory");
            }
            v = grown;
        }
        v[n++] = step;
    }
    int failed = errno;
    closedir(d);
    if (failed) {
        free(v);
        return tsnap__err(TSNAP_EIO, s->dir, NULL, "cannot list the store's directory: %s",
                          strerror(failed));
    }
    if (n > 1)
        qsort(v, n, sizeof *v, cmp_step);
    *out = v;
    *count = n;
    return 0;
}

/* With the lock held: what a killed writer left. */
static void remove_leftovers(const tsnap_store *s)
{
    DIR *d = opendir(s->dir);
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d)))
        if (is_step_temp(e->d_name))
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
}

static int take_lock(tsnap_store *s)
{
    size_t len = strlen(s->dir) + sizeof LOCK_NAME + 1;
    char *path = malloc(len);
    int err = 0;

    if (!path)
        return tsnap__err(TSNAP_ENOMEM, s->dir, NULL, "out of memory");
    snprintf(path, len, "%s/" LOCK_NAME, s->dir);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->lock_fd < 0)
        err = tsnap__syserr(TSNAP_EIO, errno, s->dir, NULL,
                            "the store cannot be written: cannot create its lock file %s",
                            LOCK_NAME);
    else if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0)
        err = tsnap__err(errno == EWOULDBLOCK ? TSNAP_ESTATE : TSNAP_EIO, s->dir, NULL,
                         errno == EWOULDBLOCK
                             ? "another writer has this store open (it holds %s)"
                             : "cannot lock %s: %s",
                         LOCK_NAME, strerror(errno));
    free(path);
    return err;
}

int tsnap_store_open(tsnap_store **out, const char *dir, const tsnap_store_options *opts)
{
    return tsnap_store_open_hooked(out, dir, opts, NULL);
}

int tsnap_store_open_hooked(tsnap_store **out, const char *dir, const tsnap_store_options *opts,
                            const tsnap_store_hooks *hooks)
{
    static const tsnap_store_options defaults = TSNAP_STORE_OPTIONS_INIT;
    tsnap_store *s;
    struct stat st;
    int err;

    tsnap__begin();
    TSNAP_CHECK_ARG(out != NULL);
    *out = NULL;
    TSNAP_CHECK_ARG(dir != NULL && *dir);
    if (opts && opts->version != TSNAP_STORE_OPTIONS_VERSION)
        return tsnap__err(TSNAP_EINVAL, dir, NULL, "unknown store options version %u",
                          opts->version);
    if (opts && opts->keep_last < 0)
        return tsnap__err(TSNAP_EINVAL, dir, NULL, "keep_last is %d; it must be 0 (all) or more",
                          opts->keep_last);
    if (hooks && !hooks->write)
        return tsnap__err(TSNAP_EINVAL, dir, NULL, "the store's hooks have no write function");
    if (!(s = calloc(1, sizeof *s)) || !(s->dir = strdup(dir))) {
        free(s);
        return tsnap__err(TSNAP_ENOMEM, dir, NULL, "out of memory");
    }
    /* "run/" names the store "run": its paths are "run/step-...", not "run//step-...". */
    for (size_t k = strlen(s->dir); k > 1 && s->dir[k - 1] == '/'; k--)
        s->dir[k - 1] = '\0';
    s->lock_fd = -1;
    s->opts = opts ? *opts : defaults;
    if (hooks) {
        s->hooked = true;
        s->hooks = *hooks;
    }
    if (!s->opts.staging_bytes)
        s->opts.staging_bytes = TSNAP_DEFAULT_STAGING_BYTES;
    hbool_t ts = 0;
    s->threadsafe = H5is_library_threadsafe(&ts) >= 0 && ts;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (s->opts.writable && mkdir(dir, 0777) < 0 && errno != EEXIST) {
        err = tsnap__syserr(errno == ENOENT ? TSNAP_ENOTFOUND : TSNAP_EIO, errno, dir, NULL,
                            "cannot make the store's directory");
        goto fail;
    }
    if (stat(dir, &st) < 0) {
        err = tsnap__err(errno == ENOENT ? TSNAP_ENOTFOUND : TSNAP_EIO, dir, NULL,
                         "no store here: %s", strerror(errno));
        goto fail;
    }
    if (!S_ISDIR(st.st_mode)) {
        err = tsnap__err(TSNAP_ENOTFOUND, dir, NULL, "no store here: not a directory");
        goto fail;
    }
    if (s->opts.writable && (!s->hooked || s->hooks.lock)) {
        if ((err = take_lock(s)) < 0)
            goto fail;
        remove_leftovers(s);
    }
    *out = s;
    return 0;
fail:
    tsnap_store_free(s);
    return err;
}

void tsnap_store_free(tsnap_store *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true; /* the thread finishes what is queued first */
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->started)
        pthread_join(s->thread, NULL);
    for (int i = 0; i < 16; i++)
        staging_free(&s->spare[i]);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    if (s->lock_fd >= 0)
        close(s->lock_fd); /* and with it the lock */
    free(s->dir);
    free(s);
}

int tsnap_store_steps(tsnap_store *s, int64_t *steps, size_t cap, size_t *count)
{
    int64_t *v;
    size_t n;
    int err;

    tsnap__begin();
    TSNAP_CHECK_ARG(s != NULL && count != NULL && (cap == 0 || steps != NULL));
    if ((err = list_steps(s, &v, &n)) < 0)
        return err;
    if (n && cap)
        memcpy(steps, v, (n < cap ? n : cap) * sizeof *v);
    *count = n;
    free(v);
    return 0;
}

int tsnap_store_latest(tsnap_store *s, int64_t *step)
{
    int64_t *v;
    size_t n;
    int err;

    tsnap__begin();
    TSNAP_CHECK_ARG(s != NULL && step != NULL);
    if ((err = list_steps(s, &v, &n)) < 0)
        return err;
    if (n == 0)
        err = tsnap__err(TSNAP_ENOTFOUND, s->dir, NULL, "the store has no steps yet");
    else
        *step = v[n - 1];
    free(v);
    return err;
}

int tsnap_store_path(const tsnap_store *s, int64_t step, char *buf, size_t len)
{
    tsnap__begin();
    TSNAP_CHECK_ARG(s != NULL && buf != NULL);
    if (step < 0)
        return tsnap__err(TSNAP_EINVAL, s->dir, NULL, "step %" PRId64 " is negative", step);
    int n = snprintf(buf, len, "%s/" STEP_PREFIX "%012" PRId64 STEP_SUFFIX, s->dir, step);
    if (n < 0 || (size_t)n >= len)
        return tsnap__err(TSNAP_EINVAL, s->dir, NULL, "a buffer of %zu bytes is too short", len);
    return 0;
}

int tsnap_store_begin(tsnap_store *s, int64_t step, tsnap_writer **w)
{
    char path[4096];
    int err;

    tsnap__begin();
    TSNAP_CHECK_ARG(s != NULL && w != NULL);
    *w = NULL;
    if (!s->opts.writable)
        return tsnap__err(TSNAP_ESTATE, s->dir, NULL, "the store was opened read only");
    if ((err = tsnap_store_path(s, step, path, sizeof path)) < 0)
        return err;
    tsnap_write_options o = s->opts.write;
    o.overwrite = 0; /* a committed step is never replaced */
    if ((err = tsnap_writer_create(w, path, &o)) == TSNAP_EEXISTS)
        return tsnap__syserr(err, EEXIST, path, NULL, "step %" PRId64 " is saved already", step);
    if (err < 0)
        return err;
    DLTensor t = tsnap__host_tensor(&step, TSNAP_INT64, 0, NULL);
    if ((err = tsnap_writer_set_attr(*w, NULL, "step", &t)) < 0) {
        tsnap_writer_free(*w);
        *w = NULL;
    }
    return err;
}

int tsnap_store_commit(tsnap_store *s, tsnap_writer *w)
{
    char path[4096];
    const char *base;
    int64_t step, *v;
    size_t n;
    int err;

    tsnap__begin();
    TSNAP_CHECK_ARG(s != NULL && w != NULL);
    const char *wpath = tsnap__writer_path(w);
    base = strrchr(wpath, '/');
    step = step_of(base ? base + 1 : wpath);
    if (step < 0 || tsnap_store_path(s, step, path, sizeof path) < 0 || strcmp(path, wpath) != 0)
        return tsnap__err(TSNAP_EINVAL, wpath, NULL,
                          "not a snapshot of the store in %s (make it with tsnap_store_begin)",
                          s->dir);
    if ((err = tsnap_writer_commit(w)) < 0)
        return err;
    if (s->opts.keep_last <= 0 || (err = list_steps(s, &v, &n)) < 0)
        return err;
    /* The newest keep_last stay, and so does the step just written. */
    for (size_t i = 0; i + (size_t)s->opts.keep_last < n; i++) {
        if (v[i] == step || tsnap_store_path(s, v[i], path, sizeof path) < 0)
            continue;
        if ((err = tsnap_snapshot_remove(path)) == TSNAP_ENOTFOUND) {
            err = 0;
        } else if (err < 0) {
            err = tsnap__err(err, path, NULL, "cannot delete an old step: %s", tsnap_errmsg());
            break;
        }
    }
    free(v);
    if (err == 0 && s->opts.write.durable)
        err = tsnap__fsync_path(s->dir, true, s->dir);
    return err;
}

/* ---- saves ---------------------------------------------------------- */

/* One item into the step's writer, then its recorded type. */
static int put_item(tsnap_writer *w, const tsnap_store_item *it)
{
    int err;
    if (it->kind == TSNAP_STORE_STRING)
        err = tsnap_writer_put_string(w, it->name, it->data, it->len,
                                      (tsnap_string_kind)it->string_kind);
    else if (it->kind == TSNAP_STORE_GROUP)
        err = tsnap_writer_put_group(w, it->name);
    else
        err = tsnap_writer_put(w, it->name, it->tensor);
    if (err == 0 && it->pytype)
        err = tsnap_writer_set_pytype(w, it->name, it->pytype);
    return err;
}

/* The hooks' write of a step of tensors (save_items checked that every
 * item is one). */
static int write_hooked(tsnap_store *s, int64_t step, const tsnap_store_item *items, size_t n,
                        const tsnap_store_attr *attrs, size_t nattrs)
{
    const char **names = malloc((n ? n : 1) * sizeof *names);
    DLTensor *ts = malloc((n ? n : 1) * sizeof *ts);
    int err;
    if (!names || !ts) {
        err = tsnap__err(TSNAP_ENOMEM, s->dir, NULL, "out of memory");
    } else {
        for (size_t i = 0; i < n; i++) {
            names[i] = items[i].name;
            ts[i] = *items[i].tensor;
        }
        err = s->hooks.write(s->hooks.ctx, s, step, names, ts, n, attrs, nattrs);
    }
    free(names);
    free(ts);
    return err;
}

/* begin, the items, the attributes, commit: a whole step (the caller's
 * memory, or staged). */
static int write_step(tsnap_store *s, int64_t step, const tsnap_store_item *items, size_t n,
                      const tsnap_store_attr *attrs, size_t nattrs)
{
    if (s->hooked)
        return write_hooked(s, step, items, n, attrs, nattrs);
    tsnap_writer *w = NULL;
    int err = tsnap_store_begin(s, step, &w);
    for (size_t i = 0; i < n && err == 0; i++)
        err = put_item(w, &items[i]);
    for (size_t i = 0; i < nattrs && err == 0; i++)
        err = attrs[i].string ? tsnap_writer_set_attr_string(w, NULL, attrs[i].key, attrs[i].string)
                              : tsnap_writer_set_attr(w, NULL, attrs[i].key, attrs[i].value);
    if (err == 0)
        err = tsnap_store_commit(s, w);
    tsnap_writer_free(w);
    return err;
}

/* A spare's memory back to the system (or the driver). */
static void staging_free(struct spare *sp)
{
    if (sp->device >= 0)
        tsnap__pinned_free(sp->device, sp->gen, sp->p);
    else
        free(sp->p);
    sp->p = NULL;
}

/* A staging buffer of at least `size` bytes into out->heap: a kept one or a
 * new one, pinned when it is for CUDA `device` (-1: host). */
static int staging_get(tsnap_store *s, size_t size, int device, staged *out)
{
    int best = -1, err = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < 16; i++) {
        struct spare *sp = &s->spare[i];
        if (sp->p && sp->device >= 0 && !tsnap__pinned_alive(sp->device, sp->gen)) {
            s->spare_bytes -= sp->cap; /* a device reset freed it */
            sp->p = NULL;
        }
        if (sp->p && sp->device == device && sp->cap >= size &&
            (best < 0 || sp->cap < s->spare[best].cap))
            best = i;
    }
    if (best >= 0) {
        struct spare *sp = &s->spare[best];
        out->heap = sp->p;
        out->heap_cap = sp->cap;
        out->pin_gen = sp->gen;
        s->spare_bytes -= sp->cap;
        sp->p = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    out->pin_device = device;
    if (best >= 0)
        return 0;
    out->heap_cap = size;
    if (device >= 0)
        err = tsnap__pinned_alloc(device, size, &out->heap, &out->pin_gen, s->dir, out->name);
    else if (!(out->heap = malloc(size)))
        err = tsnap__err(TSNAP_ENOMEM, s->dir, out->name,
                         "out of memory for %zu bytes of staging", size);
    return err;
}

/* Keeps the buffer for the next save while the spares stay within the
 * staging budget; frees it otherwise. */
static void staging_put(tsnap_store *s, staged *st)
{
    struct spare sp = {st->heap, st->heap_cap, st->pin_device, st->pin_gen};
    if (!sp.p)
        return;
    pthread_mutex_lock(&s->mu);
    if (s->spare_bytes + sp.cap <= s->opts.staging_bytes)
        for (int i = 0; i < 16; i++)
            if (!s->spare[i].p) {
                s->spare[i] = sp;
                s->spare_bytes += sp.cap;
                pthread_mutex_unlock(&s->mu);
                return;
            }
    pthread_mutex_unlock(&s->mu);
    staging_free(&sp);
}

static void staged_free(tsnap_store *s, staged *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++) {
        staging_put(s, &list[i]);
        free(list[i].name);
        free(list[i].data);
        free(list[i].pytype);
    }
    free(list);
}

static void job_free(tsnap_store *s, job *j)
{
    if (!j)
        return;
    staged_free(s, j->items, j->n);
    staged_free(s, j->attrs, j->nattrs);
    free(j);
}

static int run_job(tsnap_store *s, job *j)
{
    tsnap_store_item *items = calloc(j->n ? j->n : 1, sizeof *items);
    tsnap_store_attr *as = calloc(j->nattrs ? j->nattrs : 1, sizeof *as);
    int err;
    if (!items || !as) {
        err = tsnap__err(TSNAP_ENOMEM, s->dir, NULL, "out of memory");
    } else {
        for (size_t i = 0; i < j->n; i++) {
            const staged *st = &j->items[i];
            items[i] = (tsnap_store_item){st->name, st->kind,   &st->t,   st->data,
                                          st->len,  st->string_kind, st->pytype};
        }
        for (size_t i = 0; i < j->nattrs; i++) {
            as[i].key = j->attrs[i].name;
            as[i].string = j->attrs[i].data;
            as[i].value = &j->attrs[i].t;
        }
        err = write_step(s, j->step, items, j->n, as, j->nattrs);
    }
    free(items);
    free(as);
    return err;
}

static void *background(void *arg)
{
    tsnap_store *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->stopping)
            pthread_cond_wait(&s->cv, &s->mu);
        if (!s->head)
            break;
        job *j = s->head;
        s->head = j->next;
        if (!s->head)
            s->tail = NULL;
        s->busy = true;
        pthread_mutex_unlock(&s->mu);
        tsnap__begin();
        int err = run_job(s, j);
        char msg[sizeof s->bg_msg], failed_path[sizeof s->bg_path];
        int failed_errno = tsnap_errno();
        snprintf(msg, sizeof msg, "%s", err < 0 ? tsnap_errmsg() : "");
        snprintf(failed_path, sizeof failed_path, "%s", tsnap_errpath());
        size_t bytes = j->bytes;
        job_free(s, j);
        pthread_mutex_lock(&s->mu);
        s->staged_bytes -= bytes;
        s->busy = false;
        if (err < 0 && !s->bg_err) {
            s->bg_err = err;
            snprintf(s->bg_msg, sizeof s->bg_msg, "%s", msg);
            s->bg_errno = failed_errno;
            snprintf(s->bg_path, sizeof s->bg_path, "%s", failed_path);
        }
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* With s->mu held: the background failure not reported yet, as this
 * thread's error (0 if none). */
static int take_bg_error_locked(tsnap_store *s)
{
    int err = s->bg_err;
    if (err) {
        tsnap__err(err, NULL, NULL, "a background save failed: %s", s->bg_msg);
        if (s->bg_errno)
            tsnap__set_errno(s->bg_errno, s->bg_path);
    }
    s->bg_err = 0;
    return err;
}

static void wait_idle_locked(tsnap_store *s)
{
    while (s->head || s->busy)
        pthread_cond_wait(&s->cv, &s->mu);
}

/* A copy of tensor `t` in host memory that stays valid after the call. */
static int stage_tensor(tsnap_store *s, const char *name, const DLTensor *t, staged *out)
{
    tsnap_view v;
    int err;
    memset(out, 0, sizeof *out);
    if ((err = tsnap__view_init(&v, t, s->dir, name)) < 0)
        return err;
    if (!(out->name = strdup(name)))
        return tsnap__err(TSNAP_ENOMEM, s->dir, name, "out of memory");
    memcpy(out->shape, v.shape, (size_t)v.ndim * sizeof *v.shape);
    out->t = tsnap__host_tensor(NULL, v.dtype, v.ndim, out->shape);
    /* from the device: into pinned memory that the next saves reuse */
    if ((err = staging_get(s, v.nbytes ? (size_t)v.nbytes : 1, v.nelems > 0 ? v.device : -1,
                           out)) < 0)
        return err;
    if (v.device >= 0 && v.nelems > 0)
        err = tsnap__stage_into(&v, NULL, out->heap, s->dir, out->name);
    else if (v.nelems > 0 && (err = tsnap__cuda_order_host(t, NULL, s->dir, name)) == 0)
        tsnap__gather(&v, 0, v.nelems, out->heap);
    out->t.data = out->heap;
    return err;
}

/* A copy of item `it` that stays valid after the call: a tensor staged,
 * a string's bytes and the recorded type copied. */
static int stage_item(tsnap_store *s, const tsnap_store_item *it, staged *out)
{
    int err = 0;
    if (it->kind == TSNAP_STORE_TENSOR) {
        err = stage_tensor(s, it->name, it->tensor, out);
    } else {
        bool string = it->kind == TSNAP_STORE_STRING;
        memset(out, 0, sizeof *out);
        out->pin_device = -1;
        if (!(out->name = strdup(it->name)) ||
            (string && !(out->data = malloc(it->len ? it->len : 1))))
            err = tsnap__err(TSNAP_ENOMEM, s->dir, it->name, "out of memory");
        else if (string && it->len)
            memcpy(out->data, it->data, it->len);
        out->len = string ? it->len : 0;
        out->string_kind = it->string_kind;
    }
    out->kind = it->kind;
    if (err == 0 && it->pytype && !(out->pytype = strdup(it->pytype)))
        err = tsnap__err(TSNAP_ENOMEM, s->dir, it->name, "out of memory");
    return err;
}

/* What an item will hold in staging, checked: 0, or a refusal naming it. */
static int check_item(tsnap_store *s, const tsnap_store_item *it, size_t i, uint64_t *bytes)
{
    tsnap_view v;
    int err;
    if (!it->name)
        return tsnap__err(TSNAP_EINVAL, s->dir, NULL, "item %zu has no name", i);
    if (s->hooked && (it->kind != TSNAP_STORE_TENSOR || it->pytype))
        return tsnap__err(TSNAP_EINVAL, s->dir, it->name,
                          "this store saves tensors only, without recorded types");
    switch (it->kind) {
    case TSNAP_STORE_TENSOR:
        if (!it->tensor)
            return tsnap__err(TSNAP_EINVAL, s->dir, it->name, "the item has no tensor");
        if ((err = tsnap__view_init(&v, it->tensor, s->dir, it->name)) < 0)
            return err;
        *bytes += v.nbytes;
        return 0;
    case TSNAP_STORE_STRING:
        if (!it->data && it->len)
            return tsnap__err(TSNAP_EINVAL, s->dir, it->name, "the string has no bytes");
        if (it->string_kind != TSNAP_STRING_UTF8 && it->string_kind != TSNAP_STRING_BYTES)
            return tsnap__err(TSNAP_EINVAL, s->dir, it->name, "unknown string kind %d",
                              it->string_kind);
        *bytes += it->len;
        return 0;
    case TSNAP_STORE_GROUP:
        return 0;
    }
    return tsnap__err(TSNAP_EINVAL, s->dir, it->name, "unknown item kind %d", (int)it->kind);
}

int tsnap_store_save_items(tsnap_store *s, int64_t step, const tsnap_store_item *items, size_t n,
                           const tsnap_store_attr *attrs, size_t nattrs, int wait)
{
    uint64_t bytes = 0;
    job *j = NULL;
    int err;

    tsnap__begin();
    TSNAP_CHECK_ARG(s != NULL && (n == 0 || items != NULL) && (nattrs == 0 || attrs != NULL));
    for (size_t i = 0; i < nattrs; i++) {
        tsnap_view v;
        if (!attrs[i].key || (!attrs[i].string && !attrs[i].value))
            return tsnap__err(TSNAP_EINVAL, s->dir, NULL, "attribute %zu has no key or value", i);
        if (!attrs[i].string && (err = tsnap__view_init_host(&v, attrs[i].value, s->dir,
                                                             attrs[i].key)) < 0)
            return err;
    }
    if (!s->opts.writable)
        return tsnap__err(TSNAP_ESTATE, s->dir, NULL, "the store was opened read only");
    if (step < 0)
        return tsnap__err(TSNAP_EINVAL, s->dir, NULL, "step %" PRId64 " is negative", step);
    for (size_t i = 0; i < n; i++)
        if ((err = check_item(s, &items[i], i, &bytes)) < 0)
            return err;
    pthread_mutex_lock(&s->mu);
    if ((err = take_bg_error_locked(s)) < 0) {
        pthread_mutex_unlock(&s->mu);
        return err;
    }
    bool background_ok = !wait && s->threadsafe && bytes <= s->opts.staging_bytes;
    if (!background_ok) { /* in order: after what is queued */
        wait_idle_locked(s);
        err = take_bg_error_locked(s);
        pthread_mutex_unlock(&s->mu);
        return err < 0 ? err : write_step(s, step, items, n, attrs, nattrs);
    }
    while (s->staged_bytes + bytes > s->opts.staging_bytes && (s->head || s->busy))
        pthread_cond_wait(&s->cv, &s->mu);
    s->staged_bytes += (size_t)bytes;
    pthread_mutex_unlock(&s->mu);

    if (!(j = calloc(1, sizeof *j)) || !(j->items = calloc(n ? n : 1, sizeof *j->items))) {
        err = tsnap__err(TSNAP_ENOMEM, s->dir, NULL, "out of memory");
        goto fail;
    }
    j->step = step;
    j->bytes = (size_t)bytes;
    for (size_t i = 0; i < n; i++, j->n++)
        if ((err = stage_item(s, &items[i], &j->items[i])) < 0) {
            j->n++; /* its half-made staging is freed with the rest */
            goto fail;
        }
    if (nattrs && !(j->attrs = calloc(nattrs, sizeof *j->attrs))) {
        err = tsnap__err(TSNAP_ENOMEM, s->dir, NULL, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < nattrs; i++) {
        j->nattrs++; /* from here on, what it holds is freed with the job */
        if (!attrs[i].string) {
            if ((err = stage_tensor(s, attrs[i].key, attrs[i].value, &j->attrs[i])) < 0)
                goto fail;
        } else if (!(j->attrs[i].data = strdup(attrs[i].string)) ||
                   !(j->attrs[i].name = strdup(attrs[i].key))) {
            err = tsnap__err(TSNAP_ENOMEM, s->dir, NULL, "out of memory");
            goto fail;
        }
    }
    pthread_mutex_lock(&s->mu);
    if (!s->started) {
        if (pthread_create(&s->thread, NULL, background, s) != 0) {
            pthread_mutex_unlock(&s->mu);
            err = tsnap__err(TSNAP_ENOMEM, s->dir, NULL, "cannot start the background writer");
            goto fail;
        }
        s->started = true;
    }
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
fail:
    job_free(s, j);
    pthread_mutex_lock(&s->mu);
    s->staged_bytes -= (size_t)bytes;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return err;
}

int tsnap_store_save(tsnap_store *s, int64_t step, const char *const *names,
                     const DLTensor *tensors, size_t n, const tsnap_store_attr *attrs,
                     size_t nattrs, int wait)
{
    tsnap_store_item *items;
    int err;

    tsnap__begin();
    TSNAP_CHECK_ARG(s != NULL && (n == 0 || (names != NULL && tensors != NULL)));
    if (!(items = calloc(n ? n : 1, sizeof *items)))
        return tsnap__err(TSNAP_ENOMEM, s->dir, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        items[i].name = names[i];
        items[i].kind = TSNAP_STORE_TENSOR;
        items[i].tensor = &tensors[i];
    }
    err = tsnap_store_save_items(s, step, items, n, attrs, nattrs, wait);
    free(items);
    return err;
}

int tsnap_store_wait(tsnap_store *s)
{
    tsnap__begin();
    TSNAP_CHECK_ARG(s != NULL);
    pthread_mutex_lock(&s->mu);
    wait_idle_locked(s);
    int err = take_bg_error_locked(s);
    pthread_mutex_unlock(&s->mu);
    return err;
}

/* ---- deleting a snapshot -------------------------------------------- */

/* Removes what lies in directory `fd` (closed here), `depth` levels down
 * at most: a parts folder holds save folders of part files. */
static int remove_tree_at(int fd, const char *path, int depth)
{
    DIR *d = fdopendir(fd);
    struct dirent *e;
    int err = 0;

    if (!d) {
        close(fd);
        return tsnap__err(TSNAP_EIO, path, NULL, "cannot list the parts: %s", strerror(errno));
    }
    while ((e = readdir(d)) && err == 0) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0 || errno == ENOENT)
            continue;
        if ((errno != EISDIR && errno != EPERM) || depth == 0) {
            err = tsnap__err(TSNAP_EIO, path, NULL, "cannot delete %s: %s", e->d_name,
                             strerror(errno));
            break;
        }
        int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (sub < 0)
            err = tsnap__err(TSNAP_EIO, path, NULL, "cannot open %s: %s", e->d_name,
                             strerror(errno));
        else if ((err = remove_tree_at(sub, path, depth - 1)) == 0 &&
                 unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT)
            err = tsnap__err(TSNAP_EIO, path, NULL, "cannot delete %s: %s", e->d_name,
                             strerror(errno));
    }
    closedir(d);
    return err;
}

int tsnap_snapshot_remove(const char *path)
{
    char *parts = NULL;
    int err = 0, fd;
    bool had_file;

    tsnap__begin();
    TSNAP_CHECK_ARG(path != NULL && *path);
    if (!(had_file = unlink(path) == 0) && errno != ENOENT)
        return tsnap__err(TSNAP_EIO, path, NULL, "cannot delete the snapshot: %s",
                          strerror(errno));
    size_t len = strlen(path) + sizeof ".parts";
    if (!(parts = malloc(len)))
        return tsnap__err(TSNAP_ENOMEM, path, NULL, "out of memory");
    snprintf(parts, len, "%s.parts", path);
    if ((fd = open(parts, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        /* The snapshot's name goes first, durably: a reader must never
         * find a snapshot whose parts are gone. */
        if (had_file && (err = tsnap__fsync_dir_of(path, path)) < 0)
            close(fd);
        else if ((err = remove_tree_at(fd, parts, 2)) == 0 && rmdir(parts) < 0 &&
                 errno != ENOENT)
            err = tsnap__err(TSNAP_EIO, parts, NULL, "cannot delete the parts folder: %s",
                             strerror(errno));
    } else if (errno != ENOENT && errno != ENOTDIR) {
        err = tsnap__err(TSNAP_EIO, parts, NULL, "cannot open the parts folder: %s",
                         strerror(errno));
    }
    free(parts);
    if (err == 0 && !had_file)
        err = tsnap__err(TSNAP_ENOTFOUND, path, NULL, "no such snapshot");
    return err;
}

int tsnap_set_error(int code, const char *message)
{
    return tsnap__err(code, NULL, NULL, "%s", message ? message : "");
}

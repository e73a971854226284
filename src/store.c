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
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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

struct tsnap_store {
    char *dir;
    int lock_fd; /* -1: read only */
    tsnap_store_options opts;
};

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
        err = tsnap__err(TSNAP_EIO, s->dir, NULL,
                         "the store cannot be written: cannot create its lock file %s: %s",
                         LOCK_NAME, strerror(errno));
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
    if (!(s = calloc(1, sizeof *s)) || !(s->dir = strdup(dir))) {
        free(s);
        return tsnap__err(TSNAP_ENOMEM, dir, NULL, "out of memory");
    }
    s->lock_fd = -1;
    s->opts = opts ? *opts : defaults;
    if (s->opts.writable && mkdir(dir, 0777) < 0 && errno != EEXIST) {
        err = tsnap__err(errno == ENOENT ? TSNAP_ENOTFOUND : TSNAP_EIO, dir, NULL,
                         "cannot make the store's directory: %s", strerror(errno));
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
    if (s->opts.writable) {
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
    if ((err = tsnap_writer_create(w, path, &o)) < 0)
        return err;
    int64_t shape0[1];
    DLTensor t;
    memset(&t, 0, sizeof t);
    t.data = &step;
    t.device.device_type = kDLCPU;
    t.shape = shape0;
    tsnap_dtype_to_dlpack(&t.dtype, TSNAP_INT64);
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
        if (unlink(path) < 0 && errno != ENOENT) {
            err = tsnap__err(TSNAP_EIO, path, NULL, "cannot delete an old step: %s",
                             strerror(errno));
            break;
        }
    }
    free(v);
    if (err == 0 && s->opts.write.durable)
        err = tsnap__fsync_path(s->dir, true, s->dir);
    return err;
}

/*
 * test_store.c - the store: steps named and listed as docs say, each an
 * ordinary verified snapshot with its `step`; keep_last deletes only
 * older steps and only after the new one is committed; one writer at a
 * time, readers never blocked; a killed writer's temporary files are
 * ignored by readers and removed by the next writer.
 */
#define TSNAP_STORE_HOOKS
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

enum { ELEMS = 3000 };

/* Saves `step` with one float64 tensor "state/u" of fresh values. */
static void save_step(tsnap_store *s, int64_t step, rng *r, double *u)
{
    int64_t shape[2] = {ELEMS / 30, 30};
    rng_fill_dtype(r, u, ELEMS, TSNAP_FLOAT64);
    DLTensor t = cpu_tensor(u, TSNAP_FLOAT64, 2, shape, NULL, 0);
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_store_begin(s, step, &w));
    CHECK_OK(tsnap_writer_put(w, "state/u", &t));
    CHECK_OK(tsnap_store_commit(s, w));
    tsnap_writer_free(w);
}

/* The step's file holds `u` and the root attribute step, and verifies. */
static void check_step(tsnap_store *s, int64_t step, const double *u)
{
    char path[4096];
    CHECK_OK_FATAL(tsnap_store_path(s, step, path, sizeof path));
    tsnap_reader *rd = open_reader(path);
    CHECK_OK(tsnap_reader_verify(rd, NULL));
    tsnap_attr a;
    if (CHECK_OK(tsnap_reader_attr_find(rd, NULL, "step", &a))) {
        CHECK_I64(a.kind, TSNAP_ATTR_NUMERIC);
        CHECK_I64(a.value.dtype.bits, 64);
        CHECK_I64(*(const int64_t *)a.value.data, step);
    }
    double *got = malloc(ELEMS * 8);
    int64_t shape[2] = {ELEMS / 30, 30};
    DLTensor dst = cpu_tensor(got, TSNAP_FLOAT64, 2, shape, NULL, 0);
    CHECK_OK(tsnap_reader_read(rd, "state/u", NULL, NULL, NULL, &dst));
    CHECK_MEM(got, u, ELEMS * 8, "the step's tensor");
    free(got);
    tsnap_reader_free(rd);
}

static size_t steps_of(tsnap_store *s, int64_t *steps, size_t cap)
{
    size_t n = 0;
    CHECK_OK(tsnap_store_steps(s, steps, cap, &n));
    return n;
}

static void test_steps_are_named_listed_in_order_and_each_an_ordinary_snapshot(void)
{
    rng r;
    rng_init(&r, __func__);
    const char *dir = tpath("run");
    tsnap_store *s = NULL;
    CHECK_OK_FATAL(tsnap_store_open(&s, dir, NULL)); /* makes the directory */
    int64_t latest = -1;
    CHECK_ERR(tsnap_store_latest(s, &latest), TSNAP_ENOTFOUND);
    static double u[5][ELEMS];
    int64_t order[5] = {20, 0, 10, 1000000000000LL, 7}; /* saved out of order */
    for (int i = 0; i < 5; i++)
        save_step(s, order[i], &r, u[i]);
    int64_t steps[8];
    size_t n = steps_of(s, steps, 8);
    CHECK_I64(n, 5);
    int64_t want[5] = {0, 7, 10, 20, 1000000000000LL};
    for (int i = 0; i < 5 && i < (int)n; i++)
        CHECK_I64(steps[i], want[i]);
    CHECK_OK(tsnap_store_latest(s, &latest));
    CHECK_I64(latest, 1000000000000LL);
    /* sizing call, and a short array */
    CHECK_I64(steps_of(s, NULL, 0), 5);
    CHECK_I64(steps_of(s, steps, 2), 5);
    CHECK_I64(steps[1], 7);
    for (int i = 0; i < 5; i++)
        check_step(s, order[i], u[i]);
    char path[4096];
    CHECK_OK(tsnap_store_path(s, 42, path, sizeof path));
    CHECK_STR(base_name(path), "step-000000000042.h5");
    CHECK_ERR(tsnap_store_path(s, -1, path, sizeof path), TSNAP_EINVAL);
    CHECK_ERR(tsnap_store_path(s, 42, path, 10), TSNAP_EINVAL);
    /* the same directory, named with trailing slashes, makes the same paths */
    char slashed[4096], want_path[4096];
    snprintf(slashed, sizeof slashed, "%s//", dir);
    snprintf(want_path, sizeof want_path, "%s/step-000000000042.h5", dir);
    tsnap_store_options ro = TSNAP_STORE_OPTIONS_INIT;
    ro.writable = 0;
    tsnap_store *again = NULL;
    if (CHECK_OK(tsnap_store_open(&again, slashed, &ro))) {
        CHECK_OK(tsnap_store_path(again, 42, path, sizeof path));
        CHECK_STR(path, want_path);
        CHECK_I64(steps_of(again, NULL, 0), 5);
    }
    tsnap_store_free(again);
    /* a step is never replaced, a negative one never made */
    tsnap_writer *w = NULL;
    CHECK_ERR(tsnap_store_begin(s, 10, &w), TSNAP_EEXISTS);
    CHECK(w == NULL);
    CHECK_ERR(tsnap_store_begin(s, -3, &w), TSNAP_EINVAL);
    check_step(s, 10, u[2]);
    tsnap_store_free(s);
}

static void test_keep_last_deletes_only_older_steps_after_the_new_one_is_committed(void)
{
    rng r;
    rng_init(&r, __func__);
    const char *dir = tpath("kept");
    tsnap_store_options o = TSNAP_STORE_OPTIONS_INIT;
    o.keep_last = 3;
    tsnap_store *s = NULL;
    CHECK_OK_FATAL(tsnap_store_open(&s, dir, &o));
    static double u[8][ELEMS];
    int64_t steps[16];
    for (int i = 0; i < 6; i++) {
        save_step(s, 10 * i, &r, u[i]);
        size_t n = steps_of(s, steps, 16);
        CHECK_I64(n, i + 1 < 3 ? i + 1 : 3);
        CHECK_I64(steps[n - 1], 10 * i);
    }
    int64_t want[3] = {30, 40, 50};
    for (int i = 0; i < 3; i++) {
        CHECK_I64(steps[i], want[i]);
        check_step(s, want[i], u[3 + i]);
    }
    /* an older step saved late is kept (it was just written) */
    save_step(s, 5, &r, u[6]);
    CHECK_I64(steps_of(s, steps, 16), 4);
    CHECK_I64(steps[0], 5);
    check_step(s, 5, u[6]);
    /* a failed snapshot deletes nothing and adds nothing */
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_store_begin(s, 60, &w));
    CHECK_OK(tsnap_writer_abort(w));
    CHECK_NEG(tsnap_store_commit(s, w));
    tsnap_writer_free(w);
    CHECK_I64(steps_of(s, steps, 16), 4);
    CHECK_I64(count_temp_files(dir, "step-000000000060.h5"), 0);
    CHECK_I64(count_entries(dir), 5); /* four steps and the lock file */
    tsnap_store_free(s);
}

static void test_one_writer_at_a_time_and_readers_are_never_blocked(void)
{
    rng r;
    rng_init(&r, __func__);
    const char *dir = tpath("locked");
    static double u[ELEMS];
    tsnap_store *a = NULL, *b = NULL, *reader = NULL;
    CHECK_OK_FATAL(tsnap_store_open(&a, dir, NULL));
    save_step(a, 1, &r, u);
    CHECK_ERR(tsnap_store_open(&b, dir, NULL), TSNAP_ESTATE);
    CHECK_ERRMSG_HAS("another writer");
    CHECK(b == NULL);
    tsnap_store_options ro = TSNAP_STORE_OPTIONS_INIT;
    ro.writable = 0;
    CHECK_OK_FATAL(tsnap_store_open(&reader, dir, &ro));
    int64_t latest = -1;
    CHECK_OK(tsnap_store_latest(reader, &latest));
    CHECK_I64(latest, 1);
    tsnap_writer *w = NULL;
    CHECK_ERR(tsnap_store_begin(reader, 2, &w), TSNAP_ESTATE);
    CHECK_ERRMSG_HAS("read only");
    /* a writer of another store cannot commit into this one */
    tsnap_store *other = NULL;
    CHECK_OK_FATAL(tsnap_store_open(&other, tpath("elsewhere"), NULL));
    CHECK_OK_FATAL(tsnap_store_begin(other, 2, &w));
    CHECK_ERR(tsnap_store_commit(a, w), TSNAP_EINVAL);
    tsnap_writer_free(w);
    tsnap_store_free(other);
    tsnap_store_free(a);
    /* the lock went with the handle */
    CHECK_OK(tsnap_store_open(&b, dir, NULL));
    tsnap_store_free(b);
    tsnap_store_free(reader);
    /* read only, a store must exist; writable, its parent must */
    CHECK_ERR(tsnap_store_open(&reader, tpath("absent"), &ro), TSNAP_ENOTFOUND);
    CHECK_ERR(tsnap_store_open(&b, tpath("absent/deeper"), NULL), TSNAP_ENOTFOUND);
    tsnap_store_options bad = TSNAP_STORE_OPTIONS_INIT;
    bad.keep_last = -1;
    CHECK_ERR(tsnap_store_open(&b, dir, &bad), TSNAP_EINVAL);
}

static void test_a_killed_writers_leftovers_are_ignored_then_removed_by_the_next_writer(void)
{
    rng r;
    rng_init(&r, __func__);
    const char *dir = tpath("crashed");
    static double u[ELEMS];
    tsnap_store *s = NULL;
    CHECK_OK_FATAL(tsnap_store_open(&s, dir, NULL));
    save_step(s, 3, &r, u);
    tsnap_store_free(s);
    /* what a writer killed mid-save leaves: its temporary file, possibly
     * partial; and files that are none of the store's business */
    char path[4096];
    const char *junk[] = {".step-000000000004.h5.00112233aabbccdd.tsnap-tmp", "notes.txt",
                          "step-4.h5", "step-000000000004.h5.bak", "step-00000000000x.h5"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, junk[i]);
        CHECK(spit(path, "partial", 7) == 0);
    }
    tsnap_store_options ro = TSNAP_STORE_OPTIONS_INIT;
    ro.writable = 0;
    CHECK_OK_FATAL(tsnap_store_open(&s, dir, &ro));
    int64_t steps[4];
    CHECK_I64(steps_of(s, steps, 4), 1);
    CHECK_I64(steps[0], 3);
    tsnap_store_free(s);
    CHECK_I64(count_temp_files(dir, "step-000000000004.h5"), 1); /* readers leave it */
    CHECK_OK_FATAL(tsnap_store_open(&s, dir, NULL));
    CHECK_I64(count_temp_files(dir, "step-000000000004.h5"), 0);
    for (size_t i = 1; i < sizeof junk / sizeof junk[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, junk[i]);
        CHECK_MSG(path_exists(path), "%s is not the store's to remove", junk[i]);
    }
    save_step(s, 4, &r, u);
    CHECK_I64(steps_of(s, steps, 4), 2);
    check_step(s, 4, u);
    tsnap_store_free(s);
}

/* ---- distributed snapshots' files and the hooks ------------------ */

/* A parts folder as a distributed save leaves it: PATH.parts/<id>/rank-*.h5 */
static void make_parts(const char *path, const char *id)
{
    char p[4200];
    snprintf(p, sizeof p, "%s.parts", path);
    mkdir(p, 0777);
    snprintf(p, sizeof p, "%s.parts/%s", path, id);
    CHECK(mkdir(p, 0777) == 0);
    for (int rank = 0; rank < 3; rank++) {
        snprintf(p, sizeof p, "%s.parts/%s/rank-%06d.h5", path, id, rank);
        CHECK(spit(p, "part", 4) == 0);
    }
}

static void test_snapshot_remove_deletes_the_file_then_its_parts(void)
{
    rng r;
    rng_init(&r, __func__);
    const char *dir = tpath("removed");
    static double u[ELEMS];
    char path[4096], parts[4200];
    tsnap_store *s = NULL;
    CHECK_OK_FATAL(tsnap_store_open(&s, dir, NULL));
    save_step(s, 1, &r, u);
    CHECK_OK(tsnap_store_path(s, 1, path, sizeof path));
    snprintf(parts, sizeof parts, "%s.parts", path);
    make_parts(path, "0123456789abcdef");
    make_parts(path, "fedcba9876543210");
    CHECK_OK(tsnap_snapshot_remove(path));
    CHECK(!path_exists(path));
    CHECK(!path_exists(parts));
    CHECK_ERR(tsnap_snapshot_remove(path), TSNAP_ENOTFOUND);
    /* a failed save's leftover alone: removed, and still "not found" */
    make_parts(path, "0123456789abcdef");
    CHECK_ERR(tsnap_snapshot_remove(path), TSNAP_ENOTFOUND);
    CHECK(!path_exists(parts));
    /* an ordinary snapshot has no parts */
    save_step(s, 2, &r, u);
    CHECK_OK(tsnap_store_path(s, 2, path, sizeof path));
    CHECK_OK(tsnap_snapshot_remove(path));
    CHECK(!path_exists(path));
    CHECK_ERR(tsnap_snapshot_remove(NULL), TSNAP_EINVAL);
    tsnap_store_free(s);
}

static void test_a_parts_folder_is_no_step_and_keep_last_removes_a_steps_parts(void)
{
    rng r;
    rng_init(&r, __func__);
    const char *dir = tpath("parts");
    tsnap_store_options o = TSNAP_STORE_OPTIONS_INIT;
    static double u[3][ELEMS];
    char path[4096], parts[4200];
    int64_t steps[8];
    o.keep_last = 2;
    tsnap_store *s = NULL;
    CHECK_OK_FATAL(tsnap_store_open(&s, dir, &o));
    save_step(s, 0, &r, u[0]);
    CHECK_OK(tsnap_store_path(s, 0, path, sizeof path));
    snprintf(parts, sizeof parts, "%s.parts", path);
    make_parts(path, "0123456789abcdef");
    CHECK_I64(steps_of(s, steps, 8), 1); /* step-000000000000.h5.parts is not a step */
    save_step(s, 1, &r, u[1]);
    CHECK(path_exists(parts));
    save_step(s, 2, &r, u[2]);
    CHECK_I64(steps_of(s, steps, 8), 2);
    CHECK_I64(steps[0], 1);
    CHECK(!path_exists(path));
    CHECK_MSG(!path_exists(parts), "keep_last left the parts of a deleted step");
    tsnap_store_free(s);
}

typedef struct hook_log {
    int calls, fail_step;
    int64_t steps[8];
    size_t n[8], nattrs[8];
    double first[8];
    char name[64];
} hook_log;

static int logging_hook(void *ctx, tsnap_store *s, int64_t step, const char *const *names,
                        const DLTensor *tensors, size_t n, const tsnap_store_attr *attrs,
                        size_t nattrs)
{
    hook_log *log = ctx;
    (void)s;
    (void)attrs;
    if (log->calls < 8) {
        log->steps[log->calls] = step;
        log->n[log->calls] = n;
        log->nattrs[log->calls] = nattrs;
        log->first[log->calls] = n ? ((const double *)tensors[0].data)[0] : 0;
        if (n)
            snprintf(log->name, sizeof log->name, "%s", names[0]);
    }
    log->calls++;
    if (step == log->fail_step)
        return tsnap_set_error(TSNAP_EIO, "the hook refused this step");
    return 0;
}

static void test_hooks_replace_the_write_and_lock_0_takes_no_lock(void)
{
    const char *dir = tpath("hooked");
    hook_log log;
    memset(&log, 0, sizeof log);
    log.fail_step = 7;
    tsnap_store_hooks hooks = {logging_hook, &log, 1};
    tsnap_store *s = NULL, *other = NULL, *plain = NULL;
    CHECK_OK_FATAL(tsnap_store_open_hooked(&s, dir, NULL, &hooks));
    /* lock 1 holds the writer's lock as usual; lock 0 takes none */
    CHECK_ERR(tsnap_store_open(&plain, dir, NULL), TSNAP_ESTATE);
    tsnap_store_hooks unlocked = hooks;
    unlocked.lock = 0;
    CHECK_OK(tsnap_store_open_hooked(&other, dir, NULL, &unlocked));
    tsnap_store_free(other);
    hooks.write = NULL;
    CHECK_ERR(tsnap_store_open_hooked(&other, dir, NULL, &hooks), TSNAP_EINVAL);
    /* waiting and background saves reach the hook in order, staged */
    double u[4] = {1.5, 2, 3, 4};
    int64_t shape[1] = {4};
    DLTensor t = cpu_tensor(u, TSNAP_FLOAT64, 1, shape, NULL, 0);
    const char *name = "state/u";
    tsnap_store_attr attr = {"note", "hooked", NULL};
    CHECK_OK(tsnap_store_save(s, 5, &name, &t, 1, &attr, 1, 1));
    CHECK_OK(tsnap_store_save(s, 6, &name, &t, 1, NULL, 0, 0));
    u[0] = 9; /* after the save returned: the staged copy keeps 1.5 */
    CHECK_OK(tsnap_store_save(s, 7, &name, &t, 1, NULL, 0, 0));
    CHECK_ERR(tsnap_store_wait(s), TSNAP_EIO);
    CHECK_ERRMSG_HAS("the hook refused this step");
    CHECK_I64(log.calls, 3);
    CHECK_I64(log.steps[0], 5);
    CHECK_I64(log.steps[1], 6);
    CHECK_I64(log.steps[2], 7);
    CHECK_I64(log.n[0], 1);
    CHECK_I64(log.nattrs[0], 1);
    CHECK(log.first[1] == 1.5);
    CHECK(log.first[2] == 9);
    CHECK_STR(log.name, "state/u");
    int64_t steps[4];
    CHECK_I64(steps_of(s, steps, 4), 0); /* the hook wrote no file */
    tsnap_store_free(s);
}

/* ---- background saves -------------------------------------------- */

static void test_background_saves_write_what_the_tensors_held_when_save_returned(void)
{
    rng r;
    rng_init(&r, __func__);
    const char *dir = tpath("bg");
    tsnap_store_options o = TSNAP_STORE_OPTIONS_INIT;
    o.staging_bytes = 3 * ELEMS * 8 + 100; /* room for three steps: later saves wait */
    tsnap_store *s = NULL;
    CHECK_OK_FATAL(tsnap_store_open(&s, dir, &o));
    static double u[12][ELEMS], live[ELEMS];
    int16_t flags[7] = {1, -2, 3, -4, 5, -6, 7};
    int64_t shape[2] = {ELEMS / 30, 30}, fshape[1] = {7}, fstride[1] = {-1};
    const char *names[2] = {"state/u", "flags"};
    for (int i = 0; i < 12; i++) {
        rng_fill_dtype(&r, live, ELEMS, TSNAP_FLOAT64);
        memcpy(u[i], live, sizeof live);
        DLTensor ts[2] = {cpu_tensor(live, TSNAP_FLOAT64, 2, shape, NULL, 0),
                          cpu_tensor(flags + 6, TSNAP_INT16, 1, fshape, fstride, 0)};
        double when = 0.25 * i;
        DLTensor tv = cpu_tensor(&when, TSNAP_FLOAT64, 0, NULL, NULL, 0);
        tsnap_store_attr at[2] = {{"time", NULL, &tv}, {"note", "background", NULL}};
        CHECK_OK(tsnap_store_save(s, i, names, ts, 2, at, 2, 0));
        memset(live, 0xab, sizeof live); /* the caller goes on with its memory */
        when = -1;
    }
    /* one larger than all the staging memory is written before it returns */
    static double huge[ELEMS * 4];
    rng_fill_dtype(&r, huge, ELEMS * 4, TSNAP_FLOAT64);
    int64_t hshape[1] = {ELEMS * 4};
    DLTensor h = cpu_tensor(huge, TSNAP_FLOAT64, 1, hshape, NULL, 0);
    const char *hname = "huge";
    CHECK_OK(tsnap_store_save(s, 100, &hname, &h, 1, NULL, 0, 0));
    char path[4096];
    CHECK_OK(tsnap_store_path(s, 100, path, sizeof path));
    CHECK(path_exists(path));
    CHECK_OK(tsnap_store_wait(s));
    int64_t steps[16];
    CHECK_I64(steps_of(s, steps, 16), 13);
    for (int i = 0; i < 12; i++) {
        ctx_set("step %d", i);
        check_step(s, i, u[i]);
        CHECK_OK(tsnap_store_path(s, i, path, sizeof path));
        tsnap_reader *rd = open_reader(path);
        int16_t got[7], want[7] = {7, -6, 5, -4, 3, -2, 1};
        DLTensor d = cpu_tensor(got, TSNAP_INT16, 1, fshape, NULL, 0);
        CHECK_OK(tsnap_reader_read(rd, "flags", NULL, NULL, NULL, &d));
        CHECK_MEM(got, want, sizeof want, "a reversed view, staged in C order");
        tsnap_attr a;
        if (CHECK_OK(tsnap_reader_attr_find(rd, NULL, "time", &a)))
            CHECK(*(const double *)a.value.data == 0.25 * i);
        if (CHECK_OK(tsnap_reader_attr_find(rd, NULL, "note", &a)))
            CHECK_STR(a.string, "background");
        tsnap_reader_free(rd);
    }
    ctx_clear();
    tsnap_store_free(s);
}

static void test_a_background_failure_is_returned_by_the_next_save_or_wait(void)
{
    rng r;
    rng_init(&r, __func__);
    const char *dir = tpath("bgfail");
    static double u[ELEMS], v[ELEMS];
    int64_t shape[2] = {ELEMS / 30, 30};
    const char *name = "state/u";
    tsnap_store *s = NULL;
    CHECK_OK_FATAL(tsnap_store_open(&s, dir, NULL));
    save_step(s, 1, &r, u);
    rng_fill_dtype(&r, v, ELEMS, TSNAP_FLOAT64);
    DLTensor t = cpu_tensor(v, TSNAP_FLOAT64, 2, shape, NULL, 0);
    /* step 1 exists: accepted now, refused in the background */
    CHECK_OK(tsnap_store_save(s, 1, &name, &t, 1, NULL, 0, 0));
    CHECK_ERR(tsnap_store_wait(s), TSNAP_EEXISTS);
    CHECK_ERRMSG_HAS("background save failed");
    CHECK_ERRMSG_HAS("step-000000000001.h5");
    CHECK_OK(tsnap_store_wait(s)); /* reported once */
    /* now seen by the next save, which then writes nothing */
    CHECK_OK(tsnap_store_save(s, 1, &name, &t, 1, NULL, 0, 0));
    CHECK_ERR(tsnap_store_save(s, 2, &name, &t, 1, NULL, 0, 1), TSNAP_EEXISTS);
    int64_t steps[4];
    CHECK_I64(steps_of(s, steps, 4), 1);
    check_step(s, 1, u); /* the failed step replaced nothing */
    CHECK_OK(tsnap_store_save(s, 2, &name, &t, 1, NULL, 0, 1));
    check_step(s, 2, v);
    /* arguments are checked before anything is staged */
    DLTensor bad = t;
    bad.dtype.bits = 24;
    CHECK_ERR(tsnap_store_save(s, 3, &name, &bad, 1, NULL, 0, 0), TSNAP_ETYPE);
    CHECK_ERR(tsnap_store_save(s, -1, &name, &t, 1, NULL, 0, 0), TSNAP_EINVAL);
    CHECK_OK(tsnap_store_wait(s));
    CHECK_I64(steps_of(s, steps, 4), 2);
    /* closing waits for what is queued */
    CHECK_OK(tsnap_store_save(s, 5, &name, &t, 1, NULL, 0, 0));
    tsnap_store_free(s);
    tsnap_store_options ro = TSNAP_STORE_OPTIONS_INIT;
    ro.writable = 0;
    CHECK_OK_FATAL(tsnap_store_open(&s, dir, &ro));
    check_step(s, 5, v);
    CHECK_ERR(tsnap_store_save(s, 6, &name, &t, 1, NULL, 0, 0), TSNAP_ESTATE);
    tsnap_store_free(s);
}

/* ---- crashes ------------------------------------------------------ */

enum { BIG = 1 << 20 }; /* elements of a crash test's step: 4 MiB of float32 */

/* The data of `step`, a function of the step alone. */
static void step_data(int64_t step, float *v)
{
    uint64_t x = 0x9e3779b97f4a7c15ULL * (uint64_t)(step + 1);
    for (size_t i = 0; i < BIG; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        v[i] = (float)(int32_t)(x >> 32) * 1e-6f;
    }
}

/* A child that saves step after step until it is killed. */
_Noreturn static void saver(const char *dir, int64_t first, int wait)
{
    float *v = malloc(BIG * 4);
    int64_t shape[2] = {BIG / 1024, 1024};
    tsnap_store_options o = TSNAP_STORE_OPTIONS_INIT;
    o.keep_last = 4;
    o.write.chunk_bytes = 256 << 10; /* many chunks: many moments to be killed at */
    tsnap_store *s = NULL;
    if (!v || tsnap_store_open(&s, dir, &o) < 0)
        _exit(3);
    for (int64_t step = first;; step++) {
        step_data(step, v);
        DLTensor t = cpu_tensor(v, TSNAP_FLOAT32, 2, shape, NULL, 0);
        const char *name = "field";
        if (tsnap_store_save(s, step, &name, &t, 1, NULL, 0, wait) < 0)
            _exit(4);
    }
}

/* Entries of `dir` whose names end with `suffix`. */
static int count_suffix(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (strlen(e->d_name) > strlen(suffix) &&
            strcmp(e->d_name + strlen(e->d_name) - strlen(suffix), suffix) == 0)
            n++;
    closedir(d);
    return n;
}

/* Every listed step loads, verifies and holds its data; returns the
 * latest and sets *listed to how many there are. */
static int64_t check_committed(const char *dir, float *want, float *got, size_t *listed)
{
    tsnap_store_options ro = TSNAP_STORE_OPTIONS_INIT;
    ro.writable = 0;
    tsnap_store *s = NULL;
    int64_t steps[64], latest = -1;
    size_t n = 0;
    CHECK_OK_FATAL(tsnap_store_open(&s, dir, &ro));
    CHECK_OK(tsnap_store_steps(s, steps, 64, &n));
    *listed = n;
    for (size_t i = 0; i < n && i < 64; i++) {
        char path[4096];
        CHECK_OK(tsnap_store_path(s, steps[i], path, sizeof path));
        tsnap_reader *rd = NULL;
        if (!CHECK_OK(tsnap_reader_open(&rd, path)))
            continue;
        int64_t shape[2] = {BIG / 1024, 1024};
        DLTensor dst = cpu_tensor(got, TSNAP_FLOAT32, 2, shape, NULL, 0);
        CHECK_OK(tsnap_reader_verify(rd, NULL));
        if (CHECK_OK(tsnap_reader_read(rd, "field", NULL, NULL, NULL, &dst))) {
            step_data(steps[i], want);
            CHECK_MEM(got, want, BIG * 4, "a committed step after a kill");
        }
        tsnap_reader_free(rd);
        latest = steps[i];
    }
    tsnap_store_free(s);
    return latest;
}

static void test_a_writer_killed_at_random_moments_never_loses_a_committed_step(void)
{
    rng r;
    rng_init(&r, __func__);
    const char *dir = tpath("killed");
    float *want = malloc(BIG * 4), *got = malloc(BIG * 4);
    int64_t next = 0, committed = 0;
    size_t listed = 0;
    for (int run = 0; run < 30; run++) {
        pid_t pid = fork();
        CHECK_FATAL(pid >= 0);
        if (pid == 0)
            saver(dir, next, run % 2); /* background saves, then waiting ones */
        struct timespec ts = {0, (long)(rng_below(&r, 60) * 1000000)};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status = 0;
        CHECK_FATAL(waitpid(pid, &status, 0) == pid);
        CHECK_MSG(WIFSIGNALED(status), "the saver exited by itself (status %d)", status);
        /* keep_last runs after each rename, so a kill between the two
         * leaves one step too many, until a later save completes: a run
         * that committed two steps or more leaves at most 4 + 1, one that
         * committed one at most one more than before. */
        size_t before = listed;
        int64_t latest = check_committed(dir, want, got, &listed);
        int64_t made = latest >= next ? latest + 1 - next : 0;
        size_t most = made >= 2 ? 5 : (before > 4 ? before : 4) + (size_t)made;
        CHECK_MSG(listed <= most, "%zu steps listed with keep_last 4 after %lld new ones (at "
                  "most %zu expected)", listed, (long long)made, most);
        if (latest >= 0) {
            committed += latest + 1 > next ? latest + 1 - next : 0;
            next = latest + 1;
        }
    }
    /* the next writer cleans up and goes on */
    tsnap_store *s = NULL;
    CHECK_OK_FATAL(tsnap_store_open(&s, dir, NULL));
    tsnap_store_free(s);
    CHECK_I64(count_suffix(dir, ".tsnap-tmp"), 0);
    CHECK_MSG(committed > 0, "no step was committed in 30 runs");
    printf("\n    %lld steps committed over 30 kills\n", (long long)committed);
    free(want);
    free(got);
}

/* A file-size limit stops a save with a clear error; the steps before it
 * stay whole, no partial step is listed, and the process exits cleanly
 * (HDF5 1.10.8 would crash at exit over a file whose close failed). */
static void test_a_file_size_limit_fails_the_save_and_keeps_the_earlier_steps(void)
{
    const char *dir = tpath("limited");
    float *v = malloc(BIG * 4), *got = malloc(BIG * 4);
    int64_t shape[2] = {BIG / 1024, 1024};
    tsnap_store *s = NULL;
    CHECK_OK_FATAL(tsnap_store_open(&s, dir, NULL));
    step_data(0, v);
    DLTensor t = cpu_tensor(v, TSNAP_FLOAT32, 2, shape, NULL, 0);
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_store_begin(s, 0, &w));
    CHECK_OK(tsnap_writer_put(w, "field", &t));
    CHECK_OK(tsnap_store_commit(s, w));
    tsnap_writer_free(w);
    tsnap_store_free(s);

    int pipefd[2];
    CHECK_FATAL(pipe(pipefd) == 0);
    pid_t pid = fork();
    CHECK_FATAL(pid >= 0);
    if (pid == 0) { /* a child, so that the limit is its own */
        struct rlimit lim = {1 << 20, 1 << 20};
        signal(SIGXFSZ, SIG_IGN);
        close(pipefd[0]);
        if (setrlimit(RLIMIT_FSIZE, &lim) < 0 || tsnap_store_open(&s, dir, NULL) < 0)
            _exit(3);
        step_data(1, v);
        int err = tsnap_store_begin(s, 1, &w);
        if (err == 0 && (err = tsnap_writer_put(w, "field", &t)) == 0)
            err = tsnap_store_commit(s, w);
        dprintf(pipefd[1], "%d %s", err, tsnap_errmsg());
        tsnap_writer_free(w);
        tsnap_store_free(s);
        exit(0); /* with HDF5's exit handler, which must not trip on the failed file */
    }
    close(pipefd[1]);
    char msg[2048] = "";
    ssize_t k = read(pipefd[0], msg, sizeof msg - 1);
    msg[k > 0 ? k : 0] = '\0';
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed (%d)", status);
    CHECK_MSG(atoi(msg) == TSNAP_EIO, "the save under a 1 MiB limit gave: %s", msg);
    CHECK_MSG(strstr(msg, "step-000000000001.h5") != NULL, "the message names the file: %s",
              msg);
    printf("\n    %s\n", msg);
    size_t listed = 0;
    check_committed(dir, v, got, &listed);
    tsnap_store_options ro = TSNAP_STORE_OPTIONS_INIT;
    ro.writable = 0;
    CHECK_OK_FATAL(tsnap_store_open(&s, dir, &ro));
    int64_t steps[4];
    CHECK_I64(steps_of(s, steps, 4), 1);
    CHECK_I64(steps[0], 0);
    tsnap_store_free(s);
    free(v);
    free(got);
}

/* ---- steps of strings, groups and recorded types ------------------ */

/* A step of every item kind, in heap memory that the caller changes and
 * frees as soon as the save returns. */
typedef struct item_step {
    char *text, *raw;
    int64_t *count;
    float *field;
    DLTensor ts[2];
    tsnap_store_item items[8];
} item_step;

static void item_step_make(item_step *st, rng *r, int i, int64_t *fshape)
{
    static const char text[] = "Lauf \xc3\xa9\xe4\xb8\xad";
    st->text = malloc(sizeof text);
    memcpy(st->text, text, sizeof text);
    st->raw = malloc(5);
    memcpy(st->raw, "\0\xff\x01\0", 5); /* NULs, a trailing one too */
    st->count = malloc(sizeof *st->count);
    *st->count = 1000 + i;
    st->field = malloc(35 * sizeof *st->field);
    rng_fill_dtype(r, st->field, 35, TSNAP_FLOAT32);
    st->ts[0] = cpu_tensor(st->count, TSNAP_INT64, 0, NULL, NULL, 0);
    st->ts[1] = cpu_tensor(st->field, TSNAP_FLOAT32, 2, fshape, NULL, 0);
    tsnap_store_item items[8] = {
        {"meta", TSNAP_STORE_GROUP, NULL, NULL, 0, 0, NULL},
        {"meta/none", TSNAP_STORE_GROUP, NULL, NULL, 0, 0, "none"},
        {"meta/name", TSNAP_STORE_STRING, NULL, st->text, sizeof text - 1, TSNAP_STRING_UTF8, NULL},
        {"meta/raw", TSNAP_STORE_STRING, NULL, st->raw, 4, TSNAP_STRING_BYTES, "bytes"},
        {"meta/empty", TSNAP_STORE_STRING, NULL, NULL, 0, TSNAP_STRING_BYTES, "bytes"},
        {"hist", TSNAP_STORE_GROUP, NULL, NULL, 0, 0, "list"},
        {"hist/0", TSNAP_STORE_TENSOR, &st->ts[0], NULL, 0, 0, "int"},
        {"u", TSNAP_STORE_TENSOR, &st->ts[1], NULL, 0, 0, NULL},
    };
    memcpy(st->items, items, sizeof items);
}

/* What the caller does with its memory once the save returned. */
static void item_step_spoil(item_step *st)
{
    memset(st->text, 'x', 3);
    memset(st->raw, 'y', 4);
    *st->count = -1;
    memset(st->field, 0xab, 35 * sizeof *st->field);
    free(st->text);
    free(st->raw);
    free(st->count);
    free(st->field);
}

static void check_pytype(tsnap_reader *rd, const char *name, const char *want)
{
    tsnap_attr a;
    if (!want)
        CHECK_ERR(tsnap_reader_attr_find(rd, name, "tsnap_pytype", &a), TSNAP_ENOTFOUND);
    else if (CHECK_OK(tsnap_reader_attr_find(rd, name, "tsnap_pytype", &a)))
        CHECK_STR(a.string, want);
}

static void check_string(tsnap_reader *rd, const char *name, const char *want, size_t len,
                         tsnap_string_kind kind)
{
    char buf[64];
    size_t got = 0;
    tsnap_string_kind k = TSNAP_STRING_NONE;
    if (CHECK_OK(tsnap_reader_read_string(rd, name, buf, sizeof buf, &got, &k))) {
        CHECK_I64(got, len);
        CHECK_I64(k, kind);
        if (got == len)
            CHECK_MEM(buf, want, len, name);
    }
}

static void test_strings_groups_and_pytypes_are_staged_and_written_in_order(void)
{
    rng r;
    rng_init(&r, __func__);
    const char *dir = tpath("items");
    tsnap_store *s = NULL;
    CHECK_OK_FATAL(tsnap_store_open(&s, dir, NULL));
    int64_t fshape[2] = {5, 7};
    float want[6][35];
    for (int i = 0; i < 6; i++) {
        item_step st;
        item_step_make(&st, &r, i, fshape);
        memcpy(want[i], st.field, sizeof want[i]);
        tsnap_store_attr note = {"note", "items", NULL};
        CHECK_OK(tsnap_store_save_items(s, i, st.items, 8, &note, 1, i % 3 == 2));
        item_step_spoil(&st);
    }
    CHECK_OK(tsnap_store_wait(s));
    int64_t steps[8];
    CHECK_I64(steps_of(s, steps, 8), 6);
    for (int i = 0; i < 6; i++) {
        char path[4096];
        ctx_set("step %d", i);
        CHECK_OK(tsnap_store_path(s, i, path, sizeof path));
        tsnap_reader *rd = open_reader(path);
        CHECK_OK(tsnap_reader_verify(rd, NULL));
        CHECK_I64(tsnap_reader_group_count(rd), 3);
        const char *groups[] = {"hist", "meta", "meta/none"};
        for (size_t g = 0; g < 3; g++) {
            const char *name = tsnap_reader_group_name(rd, g);
            CHECK_STR(name ? name : "(null)", groups[g]);
        }
        check_pytype(rd, "meta", NULL);
        check_pytype(rd, "meta/none", "none");
        check_pytype(rd, "hist", "list");
        check_pytype(rd, "hist/0", "int");
        check_pytype(rd, "u", NULL);
        check_pytype(rd, "meta/raw", "bytes");
        check_string(rd, "meta/name", "Lauf \xc3\xa9\xe4\xb8\xad", 10, TSNAP_STRING_UTF8);
        check_string(rd, "meta/raw", "\0\xff\x01\0", 4, TSNAP_STRING_BYTES);
        check_string(rd, "meta/empty", "", 0, TSNAP_STRING_BYTES);
        int64_t count = 0;
        float field[35];
        DLTensor c = cpu_tensor(&count, TSNAP_INT64, 0, NULL, NULL, 0);
        DLTensor f = cpu_tensor(field, TSNAP_FLOAT32, 2, fshape, NULL, 0);
        CHECK_OK(tsnap_reader_read(rd, "hist/0", NULL, NULL, NULL, &c));
        CHECK_OK(tsnap_reader_read(rd, "u", NULL, NULL, NULL, &f));
        CHECK_I64(count, 1000 + i);
        CHECK_MEM(field, want[i], sizeof field, "the staged tensor");
        tsnap_attr a;
        if (CHECK_OK(tsnap_reader_attr_find(rd, NULL, "note", &a)))
            CHECK_STR(a.string, "items");
        tsnap_reader_free(rd);
    }
    ctx_clear();
    tsnap_store_free(s);
}

static void test_bad_items_are_refused_and_bad_strings_fail_like_any_background_save(void)
{
    const char *dir = tpath("baditems");
    double v = 0.5;
    DLTensor t = cpu_tensor(&v, TSNAP_FLOAT64, 0, NULL, NULL, 0);
    tsnap_store *s = NULL;
    CHECK_OK_FATAL(tsnap_store_open(&s, dir, NULL));
    tsnap_store_item bad[] = {
        {NULL, TSNAP_STORE_GROUP, NULL, NULL, 0, 0, NULL},
        {"t", TSNAP_STORE_TENSOR, NULL, NULL, 0, 0, NULL},
        {"s", TSNAP_STORE_STRING, NULL, NULL, 3, TSNAP_STRING_UTF8, NULL},
        {"s", TSNAP_STORE_STRING, NULL, "abc", 3, 7, NULL},
        {"k", (tsnap_store_item_kind)9, NULL, NULL, 0, 0, NULL},
    };
    const char *why[] = {"no name", "no tensor", "no bytes", "string kind", "item kind"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ctx_set("bad item %zu", i);
        CHECK_ERR(tsnap_store_save_items(s, 1, &bad[i], 1, NULL, 0, 0), TSNAP_EINVAL);
        CHECK_ERRMSG_HAS(why[i]);
    }
    ctx_clear();
    CHECK_ERR(tsnap_store_save_items(s, 1, NULL, 1, NULL, 0, 0), TSNAP_EINVAL);
    /* the writer's own checks, in the background: returned by the wait */
    tsnap_store_item later[][2] = {
        {{"g", TSNAP_STORE_GROUP, NULL, NULL, 0, 0, "Not A Type"},
         {"x", TSNAP_STORE_TENSOR, &t, NULL, 0, 0, NULL}},
        {{"s", TSNAP_STORE_STRING, NULL, "a\0b", 3, TSNAP_STRING_UTF8, NULL},
         {"x", TSNAP_STORE_TENSOR, &t, NULL, 0, 0, NULL}},
        {{"x", TSNAP_STORE_TENSOR, &t, NULL, 0, 0, NULL},
         {"x", TSNAP_STORE_GROUP, NULL, NULL, 0, 0, NULL}},
    };
    const char *fails[] = {"[a-z0-9_]", "NUL", "exists"};
    for (int i = 0; i < 3; i++) {
        ctx_set("background failure %d", i);
        CHECK_OK(tsnap_store_save_items(s, 2 + i, later[i], 2, NULL, 0, 0));
        CHECK_ERR(tsnap_store_wait(s), i == 2 ? TSNAP_EEXISTS : TSNAP_EINVAL);
        CHECK_ERRMSG_HAS("background save failed");
        CHECK_ERRMSG_HAS(fails[i]);
    }
    ctx_clear();
    int64_t steps[4];
    CHECK_I64(steps_of(s, steps, 4), 0); /* no failed step is listed */
    /* a step saved already: the system's EEXIST, naming its file */
    tsnap_store_item one = {"x", TSNAP_STORE_TENSOR, &t, NULL, 0, 0, "float"};
    CHECK_OK(tsnap_store_save_items(s, 7, &one, 1, NULL, 0, 1));
    CHECK_ERR(tsnap_store_save_items(s, 7, &one, 1, NULL, 0, 1), TSNAP_EEXISTS);
    CHECK_ERRMSG_HAS("step 7 is saved already");
    CHECK_I64(tsnap_errno(), EEXIST);
    CHECK(strstr(tsnap_errpath(), "step-000000000007.h5") != NULL);
    tsnap_store_free(s);
    /* a hooked store (a distributed one) takes plain tensors only */
    hook_log log;
    memset(&log, 0, sizeof log);
    log.fail_step = -1;
    tsnap_store_hooks hooks = {logging_hook, &log, 1};
    CHECK_OK_FATAL(tsnap_store_open_hooked(&s, tpath("hookeditems"), NULL, &hooks));
    tsnap_store_item group = {"g", TSNAP_STORE_GROUP, NULL, NULL, 0, 0, NULL};
    CHECK_ERR(tsnap_store_save_items(s, 1, &group, 1, NULL, 0, 0), TSNAP_EINVAL);
    CHECK_ERRMSG_HAS("tensors only");
    CHECK_ERR(tsnap_store_save_items(s, 1, &one, 1, NULL, 0, 0), TSNAP_EINVAL);
    one.pytype = NULL;
    CHECK_OK(tsnap_store_save_items(s, 1, &one, 1, NULL, 0, 0));
    CHECK_OK(tsnap_store_wait(s));
    CHECK_I64(log.calls, 1);
    CHECK(log.first[0] == 0.5);
    CHECK_STR(log.name, "x");
    tsnap_store_free(s);
}

const test_entry store_tests[] = {
    TEST(test_steps_are_named_listed_in_order_and_each_an_ordinary_snapshot),
    TEST(test_keep_last_deletes_only_older_steps_after_the_new_one_is_committed),
    TEST(test_one_writer_at_a_time_and_readers_are_never_blocked),
    TEST(test_a_killed_writers_leftovers_are_ignored_then_removed_by_the_next_writer),
    TEST(test_snapshot_remove_deletes_the_file_then_its_parts),
    TEST(test_a_parts_folder_is_no_step_and_keep_last_removes_a_steps_parts),
    TEST(test_hooks_replace_the_write_and_lock_0_takes_no_lock),
    TEST(test_background_saves_write_what_the_tensors_held_when_save_returned),
    TEST(test_a_background_failure_is_returned_by_the_next_save_or_wait),
    TEST(test_a_writer_killed_at_random_moments_never_loses_a_committed_step),
    TEST(test_a_file_size_limit_fails_the_save_and_keeps_the_earlier_steps),
    TEST(test_strings_groups_and_pytypes_are_staged_and_written_in_order),
    TEST(test_bad_items_are_refused_and_bad_strings_fail_like_any_background_save),
    TEST_END,
};

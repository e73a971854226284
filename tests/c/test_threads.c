/*
 * test_threads.c - different handles work from different threads at once,
 * tsnap_errmsg() is per thread, and the pool never races on a destination.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

enum { NTHREADS = 4, ROUNDS = 5 };

typedef struct worker {
    int id;
    char path[4096];
    uint64_t seed;
    int failures;  /* counted here; CUnit assertions stay on the main thread */
    char why[256];
} worker;

static void fail(worker *w, const char *what)
{
    if (!w->failures++)
        snprintf(w->why, sizeof w->why, "thread %d: %s: %s", w->id, what, tsnap_errmsg());
}

/* Writes, reads back, maps and verifies its own snapshots. */
static void *write_and_read(void *arg)
{
    worker *w = arg;
    rng r;
    char label[32];
    snprintf(label, sizeof label, "thread%d", w->id);
    rng_init(&r, label);
    int64_t shape[2] = {64 + w->id, 129};
    size_t n = (size_t)(shape[0] * shape[1]) * 4;
    unsigned char *src = malloc(n), *got = malloc(n);
    for (int round = 0; round < ROUNDS; round++) {
        rng_fill(&r, src, n);
        DLTensor t = cpu_tensor(src, TSNAP_FLOAT32, 2, shape, NULL, 0);
        tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
        o.codec = round % 2 ? TSNAP_CODEC_DEFLATE : TSNAP_CODEC_NONE;
        o.chunk_bytes = 4096;
        tsnap_writer *wr = NULL;
        if (tsnap_writer_create(&wr, w->path, &o) != 0) {
            fail(w, "create");
            break;
        }
        if (tsnap_writer_put(wr, "g/x", &t) != 0)
            fail(w, "put");
        if (tsnap_writer_set_attr_string(wr, "g/x", "owner", label) != 0)
            fail(w, "set_attr_string");
        if (tsnap_writer_commit(wr) != 0)
            fail(w, "commit");
        tsnap_writer_free(wr);

        tsnap_reader *rd = NULL;
        if (tsnap_reader_open(&rd, w->path) != 0) {
            fail(w, "open");
            break;
        }
        DLTensor dst = cpu_tensor(got, TSNAP_FLOAT32, 2, shape, NULL, 0);
        if (tsnap_reader_read(rd, "g/x", NULL, NULL, NULL, &dst) != 0)
            fail(w, "read");
        else if (memcmp(got, src, n) != 0)
            fail(w, "read-back bytes differ");
        if (tsnap_reader_verify(rd, NULL) != 0)
            fail(w, "verify");
        tsnap_attr a;
        if (tsnap_reader_attr_find(rd, "g/x", "owner", &a) != 0 || !a.string ||
            strcmp(a.string, label) != 0)
            fail(w, "attribute");
        if (o.codec == TSNAP_CODEC_NONE) {
            tsnap_mapping *m = NULL;
            if (tsnap_mapping_create(&m, rd, "g/x") != 0) {
                fail(w, "map");
            } else {
                const DLTensor *mt = tsnap_mapping_tensor(m);
                if (memcmp((const unsigned char *)mt->data + mt->byte_offset, src, n) != 0)
                    fail(w, "mapped bytes differ");
                tsnap_mapping_free(m);
            }
        }
        /* an error on this thread, with its own message */
        tsnap_tensor_info info;
        char missing[32];
        snprintf(missing, sizeof missing, "missing-%d", w->id);
        if (tsnap_reader_describe(rd, missing, &info) != TSNAP_ENOTFOUND)
            fail(w, "describe of a missing tensor");
        else if (!strstr(tsnap_errmsg(), w->path))
            fail(w, "errmsg names another thread's file");
        tsnap_reader_free(rd);
    }
    free(src);
    free(got);
    return NULL;
}

static void test_threads_write_and_read_their_own_snapshots_at_once(void)
{
    worker ws[NTHREADS];
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        memset(&ws[i], 0, sizeof ws[i]);
        ws[i].id = i;
        char name[32];
        snprintf(name, sizeof name, "thread%d.h5", i);
        snprintf(ws[i].path, sizeof ws[i].path, "%s", tpath(name));
        CHECK_FATAL(pthread_create(&th[i], NULL, write_and_read, &ws[i]) == 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK_MSG(ws[i].failures == 0, "%d failure(s), first: %s", ws[i].failures, ws[i].why);
    }
    CHECK_I64(count_entries(tdir()), NTHREADS);
}

static void *provoke_error(void *arg)
{
    char *msg = arg;
    tsnap_reader *r = NULL;
    tsnap_reader_open(&r, "/nonexistent-dir-for-tsnap/other-thread.h5");
    snprintf(msg, 512, "%s", tsnap_errmsg());
    return NULL;
}

static void test_errmsg_is_per_thread(void)
{
    tsnap_reader *r = NULL;
    CHECK_ERR(tsnap_reader_open(&r, tpath("main-thread.h5")), TSNAP_ENOTFOUND);
    char before[512];
    snprintf(before, sizeof before, "%s", tsnap_errmsg());
    char other[512] = "";
    pthread_t th;
    CHECK_FATAL(pthread_create(&th, NULL, provoke_error, other) == 0);
    pthread_join(th, NULL);
    CHECK_STR(tsnap_errmsg(), before);
    CHECK_MSG(strstr(other, "other-thread.h5") != NULL, "the other thread's message is \"%s\"",
              other);
    CHECK_MSG(strstr(before, "main-thread.h5") != NULL, "this thread's message is \"%s\"", before);
}

/* A destination with a zero stride holds one element for many: reads on
 * the pool must still give the last one in C order, every time. */
static void test_a_read_into_a_zero_stride_destination_keeps_the_last_row(void)
{
    rng r;
    rng_init(&r, __func__);
    enum { ROWS = 1280, COLS = 8192 }; /* 40 MiB: several pieces and chunks */
    size_t n = (size_t)ROWS * COLS * 4;
    unsigned char *src = alloc_filled(n, 0);
    rng_fill(&r, src, n);
    int64_t shape[2] = {ROWS, COLS};
    DLTensor t = cpu_tensor(src, TSNAP_FLOAT32, 2, shape, NULL, 0);
    const optset *opts[] = {&OPT_PLAIN, &OPT_DEFLATE};
    float *row = malloc(COLS * 4);
    int64_t strides[2] = {0, 1};
    CHECK_OK(tsnap_set_threads(4));
    for (int o = 0; o < 2; o++) {
        ctx_set("%s", opts[o]->label);
        tsnap_write_options wo;
        optset_apply(opts[o], &wo);
        const char *path = tpath("zs.h5");
        tsnap_writer *w = NULL;
        CHECK_OK_FATAL(tsnap_writer_create(&w, path, &wo));
        CHECK_OK(tsnap_writer_put(w, "x", &t));
        CHECK_OK_FATAL(tsnap_writer_commit(w));
        tsnap_writer_free(w);
        tsnap_reader *rd = open_reader(path);
        DLTensor dst = cpu_tensor(row, TSNAP_FLOAT32, 2, shape, strides, 0);
        for (int round = 0; round < 3; round++) {
            memset(row, 0, COLS * 4);
            CHECK_OK(tsnap_reader_read(rd, "x", NULL, NULL, NULL, &dst));
            CHECK_MEM(row, src + n - COLS * 4, COLS * 4, "the last row");
        }
        tsnap_reader_free(rd);
    }
    ctx_clear();
    CHECK_OK(tsnap_set_threads(0));
    free(row);
    free(src);
}

const test_entry threads_tests[] = {
    TEST(test_threads_write_and_read_their_own_snapshots_at_once),
    TEST(test_errmsg_is_per_thread),
    TEST(test_a_read_into_a_zero_stride_destination_keeps_the_last_row),
    TEST_END,
};

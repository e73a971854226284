/*
 * test_roundtrip.c - every dtype × every layout (0-d, empty, (1,), primes,
 * 5-D, strided, transposed, negative and zero strides, byte offsets, 32
 * dimensions) written under each codec/shuffle/chunk setting reads back
 * bit-exact, equal to a naive index-loop gather of the source tensor.
 */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void read_back_every_case(const caseset *cs, const char *path, const optset *o)
{
    tsnap_reader *r = open_reader(path);
    CHECK_I64(tsnap_reader_count(r), cs->n);
    CHECK_I64(tsnap_reader_format_version(r), TSNAP_FORMAT_VERSION);
    for (size_t i = 0; i < cs->n; i++) {
        const tcase *c = &cs->v[i];
        ctx_set("%s [%s]", c->name, o->label);
        unsigned char *buf = alloc_filled(c->nbytes, 0xa5);
        DLTensor dst = cpu_tensor(buf, c->dtype, c->ndim, (int64_t *)c->shape, NULL, 0);
        if (CHECK_OK(tsnap_reader_read(r, c->name, NULL, NULL, NULL, &dst)))
            CHECK_MEM(buf, c->expected, c->nbytes, "read-back bytes");
        free(buf);
    }
    ctx_clear();
    tsnap_reader_free(r);
}

static void round_trip_every_case(const optset *o, const char *label)
{
    rng r;
    rng_init(&r, label);
    caseset cs;
    caseset_build(&cs, &r);
    const char *path = tpath("snap.h5");
    if (caseset_write(&cs, path, o) == 0)
        read_back_every_case(&cs, path, o);
    caseset_free(&cs);
}

static void test_every_dtype_and_layout_round_trips_uncompressed(void)
{
    round_trip_every_case(&OPT_PLAIN, __func__);
}

static void test_every_dtype_and_layout_round_trips_with_deflate(void)
{
    round_trip_every_case(&OPT_DEFLATE, __func__);
}

static void test_every_dtype_and_layout_round_trips_with_deflate_and_shuffle_off(void)
{
    round_trip_every_case(&OPT_DEFLATE_NO_SHUFFLE, __func__);
}

static void test_every_dtype_and_layout_round_trips_with_deflate_and_shuffle_on(void)
{
    round_trip_every_case(&OPT_DEFLATE_SHUFFLE, __func__);
}

static void test_every_dtype_and_layout_round_trips_with_deflate_level_9(void)
{
    round_trip_every_case(&OPT_DEFLATE_9, __func__);
}

static void test_every_dtype_and_layout_round_trips_across_many_small_chunks(void)
{
    round_trip_every_case(&OPT_SMALL, __func__);
}

static void test_every_dtype_and_layout_round_trips_across_many_small_deflated_chunks(void)
{
    round_trip_every_case(&OPT_SMALL_DEFLATE, __func__);
}

static void test_every_dtype_and_layout_round_trips_with_chunks_smaller_than_one_row(void)
{
    round_trip_every_case(&OPT_TINY, __func__);
}

static void test_every_dtype_and_layout_round_trips_with_deflated_chunks_smaller_than_one_row(void)
{
    round_trip_every_case(&OPT_TINY_DEFLATE, __func__);
}

/* Writes `t` as "x" under `o`, reads it back whole into a fresh buffer. */
static unsigned char *put_and_read_back(const DLTensor *t, size_t nbytes, const optset *o)
{
    const char *path = tpath("one.h5");
    tsnap_write_options opts;
    optset_apply(o, &opts);
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, &opts));
    CHECK_OK(tsnap_writer_put(w, "x", t));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    tsnap_reader *r = open_reader(path);
    unsigned char *buf = alloc_filled(nbytes, 0xa5);
    DLTensor dst = *t;
    dst.data = buf;
    dst.strides = NULL;
    dst.byte_offset = 0;
    CHECK_OK(tsnap_reader_read(r, "x", NULL, NULL, NULL, &dst));
    tsnap_reader_free(r);
    return buf;
}

static void test_bool_input_bytes_read_back_as_zero_or_one(void)
{
    unsigned char src[12] = {0, 1, 2, 0x80, 0xff, 0x7f, 0x10, 0, 0xfe, 1, 0, 0x40};
    const unsigned char want[12] = {0, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1};
    int64_t shape[2] = {3, 4};
    DLTensor t = cpu_tensor(src, TSNAP_BOOL, 2, shape, NULL, 0);
    const optset *opts[] = {&OPT_PLAIN, &OPT_DEFLATE, &OPT_TINY};
    for (size_t i = 0; i < 3; i++) {
        ctx_set("%s", opts[i]->label);
        unsigned char *got = put_and_read_back(&t, sizeof src, opts[i]);
        CHECK_MEM(got, want, sizeof want, "bool bytes");
        free(got);
    }
    /* the same through a transposed view */
    int64_t tshape[2] = {4, 3}, tstrides[2] = {1, 4};
    const unsigned char twant[12] = {0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1};
    DLTensor tt = cpu_tensor(src, TSNAP_BOOL, 2, tshape, tstrides, 0);
    ctx_set("transposed");
    unsigned char *got = put_and_read_back(&tt, sizeof src, &OPT_PLAIN);
    CHECK_MEM(got, twant, sizeof twant, "transposed bool bytes");
    free(got);
}

static void test_float_nan_payloads_and_signalling_nans_read_back_bit_exact(void)
{
    static const uint16_t f16[] = {0x7c01, 0x7e00, 0xfd55, 0x7fff, 0xfc00, 0x8000, 0x0001, 0x7d00};
    static const uint16_t bf16[] = {0x7f81, 0xffc1, 0x7fc0, 0xff80, 0x8000, 0x0001, 0x7fa5, 0xffff};
    static const uint32_t f32[] = {0x7f800001u, 0xffbadbadu, 0x7fc12345u, 0xff800000u,
                                   0x80000000u, 0x00000001u, 0x7fffffffu, 0xffc00000u};
    static const uint64_t f64[] = {0x7ff0000000000001ull, 0xfff8deadbeef0001ull,
                                   0x7ff4000000000000ull, 0xfff0000000000000ull,
                                   0x8000000000000000ull, 0x0000000000000001ull,
                                   0x7fffffffffffffffull, 0xfff0000000000badull};
    static const uint8_t e5m2[] = {0x7d, 0x7e, 0x7f, 0xfd, 0xfe, 0xff, 0x7c, 0x80};
    static const uint8_t e4m3[] = {0x7f, 0xff, 0x7e, 0x78, 0xfe, 0x80, 0x01, 0x00};
    struct {
        tsnap_dtype dtype;
        const void *bits;
        size_t nbytes;
    } sets[] = {
        {TSNAP_FLOAT16, f16, sizeof f16},       {TSNAP_BFLOAT16, bf16, sizeof bf16},
        {TSNAP_FLOAT32, f32, sizeof f32},       {TSNAP_FLOAT64, f64, sizeof f64},
        {TSNAP_FLOAT8_E5M2, e5m2, sizeof e5m2}, {TSNAP_FLOAT8_E4M3FN, e4m3, sizeof e4m3},
        {TSNAP_COMPLEX32, f16, sizeof f16},     {TSNAP_COMPLEX64, f32, sizeof f32},
        {TSNAP_COMPLEX128, f64, sizeof f64},
    };
    const optset *opts[] = {&OPT_PLAIN, &OPT_DEFLATE, &OPT_TINY_DEFLATE};
    for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++) {
        size_t itemsize = dtype_row_of(sets[s].dtype)->size;
        int64_t shape[1] = {(int64_t)(sets[s].nbytes / itemsize)};
        unsigned char *src = alloc_filled(sets[s].nbytes, 0);
        memcpy(src, sets[s].bits, sets[s].nbytes);
        DLTensor t = cpu_tensor(src, sets[s].dtype, 1, shape, NULL, 0);
        for (size_t o = 0; o < 3; o++) {
            ctx_set("%s [%s]", tsnap_dtype_name(sets[s].dtype), opts[o]->label);
            unsigned char *got = put_and_read_back(&t, sets[s].nbytes, opts[o]);
            CHECK_MEM(got, sets[s].bits, sets[s].nbytes, "special float bits");
            free(got);
        }
        free(src);
    }
}

static void test_tensor_memory_may_change_once_put_returns(void)
{
    rng r;
    rng_init(&r, __func__);
    int64_t shape[2] = {37, 19};
    size_t n = 37 * 19 * 8;
    unsigned char *src = alloc_filled(n, 0), *want = alloc_filled(n, 0);
    rng_fill(&r, src, n);
    memcpy(want, src, n);
    DLTensor t = cpu_tensor(src, TSNAP_FLOAT64, 2, shape, NULL, 0);
    const char *path = tpath("snap.h5");
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_OK(tsnap_writer_put(w, "x", &t));
    rng_fill(&r, src, n); /* scribble over the source before commit */
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    tsnap_reader *rd = open_reader(path);
    unsigned char *got = alloc_filled(n, 0);
    DLTensor dst = cpu_tensor(got, TSNAP_FLOAT64, 2, shape, NULL, 0);
    CHECK_OK(tsnap_reader_read(rd, "x", NULL, NULL, NULL, &dst));
    CHECK_MEM(got, want, n, "bytes as they were at put");
    tsnap_reader_free(rd);
    free(src);
    free(want);
    free(got);
}

static void test_an_empty_snapshot_commits_and_opens_with_no_tensors(void)
{
    const char *path = tpath("empty.h5");
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    tsnap_reader *r = open_reader(path);
    CHECK_I64(tsnap_reader_count(r), 0);
    CHECK(tsnap_reader_name(r, 0) == NULL);
    CHECK_I64(tsnap_reader_format_version(r), TSNAP_FORMAT_VERSION);
    CHECK_OK(tsnap_reader_verify(r, NULL));
    tsnap_reader_free(r);
}

static void test_a_tensor_larger_than_one_default_chunk_round_trips(void)
{
    /* 10 MiB of float32: three default (4 MiB) chunks of 2 × 512 × 1024, the last partial */
    rng r;
    rng_init(&r, __func__);
    int64_t shape[3] = {5, 512, 1024};
    size_t n = (size_t)5 * 512 * 1024 * 4;
    unsigned char *src = alloc_filled(n, 0);
    rng_fill(&r, src, n);
    DLTensor t = cpu_tensor(src, TSNAP_FLOAT32, 3, shape, NULL, 0);
    const optset *opts[] = {&OPT_PLAIN, &OPT_DEFLATE};
    for (size_t o = 0; o < 2; o++) {
        ctx_set("%s", opts[o]->label);
        unsigned char *got = put_and_read_back(&t, n, opts[o]);
        CHECK_MEM(got, src, n, "10 MiB float32");
        free(got);
    }
    free(src);
}

static void test_many_tensors_in_one_snapshot_keep_their_own_bytes(void)
{
    rng r;
    rng_init(&r, __func__);
    enum { N = 300 };
    const char *path = tpath("many.h5");
    unsigned char *data[N];
    int64_t shapes[N][2];
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    for (int i = 0; i < N; i++) {
        shapes[i][0] = 1 + (int64_t)rng_below(&r, 9);
        shapes[i][1] = 1 + (int64_t)rng_below(&r, 17);
        size_t n = (size_t)(shapes[i][0] * shapes[i][1]) * 4;
        data[i] = alloc_filled(n, 0);
        rng_fill(&r, data[i], n);
        DLTensor t = cpu_tensor(data[i], TSNAP_INT32, 2, shapes[i], NULL, 0);
        char name[32];
        snprintf(name, sizeof name, "layer%03d/w", i);
        CHECK_OK(tsnap_writer_put(w, name, &t));
    }
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    tsnap_reader *rd = open_reader(path);
    CHECK_I64(tsnap_reader_count(rd), N);
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "layer%03d/w", i);
        ctx_set("%s", name);
        CHECK_STR(tsnap_reader_name(rd, (size_t)i), name);
        size_t n = (size_t)(shapes[i][0] * shapes[i][1]) * 4;
        unsigned char *got = alloc_filled(n, 0);
        DLTensor dst = cpu_tensor(got, TSNAP_INT32, 2, shapes[i], NULL, 0);
        CHECK_OK(tsnap_reader_read(rd, name, NULL, NULL, NULL, &dst));
        CHECK_MEM(got, data[i], n, "tensor bytes");
        free(got);
        free(data[i]);
    }
    tsnap_reader_free(rd);
}

const test_entry roundtrip_tests[] = {
    TEST(test_every_dtype_and_layout_round_trips_uncompressed),
    TEST(test_every_dtype_and_layout_round_trips_with_deflate),
    TEST(test_every_dtype_and_layout_round_trips_with_deflate_and_shuffle_off),
    TEST(test_every_dtype_and_layout_round_trips_with_deflate_and_shuffle_on),
    TEST(test_every_dtype_and_layout_round_trips_with_deflate_level_9),
    TEST(test_every_dtype_and_layout_round_trips_across_many_small_chunks),
    TEST(test_every_dtype_and_layout_round_trips_across_many_small_deflated_chunks),
    TEST(test_every_dtype_and_layout_round_trips_with_chunks_smaller_than_one_row),
    TEST(test_every_dtype_and_layout_round_trips_with_deflated_chunks_smaller_than_one_row),
    TEST(test_bool_input_bytes_read_back_as_zero_or_one),
    TEST(test_float_nan_payloads_and_signalling_nans_read_back_bit_exact),
    TEST(test_tensor_memory_may_change_once_put_returns),
    TEST(test_an_empty_snapshot_commits_and_opens_with_no_tensors),
    TEST(test_a_tensor_larger_than_one_default_chunk_round_trips),
    TEST(test_many_tensors_in_one_snapshot_keep_their_own_bytes),
    TEST_END,
};

/*
 * test_args.c - bad arguments give the documented negative code and a
 * non-empty one-line message, never a crash, and leave the writer usable:
 * after all of them a valid put + commit works and the file holds only the
 * valid tensors.
 */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static float g_data[64];

static tsnap_writer *new_writer(const char *path)
{
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    return w;
}

static DLTensor good_tensor(int64_t *shape)
{
    shape[0] = 4;
    shape[1] = 3;
    return cpu_tensor(g_data, TSNAP_FLOAT32, 2, shape, NULL, 0);
}

/* Writes a snapshot at `path` holding good_tensor() as "x". */
static void write_good_snapshot(const char *path, int64_t *shape)
{
    tsnap_writer *w = new_writer(path);
    DLTensor t = good_tensor(shape);
    CHECK_OK(tsnap_writer_put(w, "x", &t));
    CHECK_OK_FATAL(tsnap_writer_commit(w));
    tsnap_writer_free(w);
}

/* Commits `w` and checks the file holds exactly the tensors `names`. */
static void commit_and_expect(tsnap_writer *w, const char *path, const char **names, size_t n)
{
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    tsnap_reader *r = open_reader(path);
    CHECK_I64(tsnap_reader_count(r), n);
    for (size_t i = 0; i < n; i++)
        CHECK_STR(tsnap_reader_name(r, i), names[i]);
    CHECK_OK(tsnap_reader_verify(r, NULL));
    tsnap_reader_free(r);
}

static void test_put_refuses_null_writer_name_and_tensor(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path);
    int64_t shape[2];
    DLTensor t = good_tensor(shape);
    CHECK_ERR(tsnap_writer_put(NULL, "x", &t), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_put(w, NULL, &t), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_put(w, "x", NULL), TSNAP_EINVAL);
    CHECK_OK(tsnap_writer_put(w, "x", &t));
    const char *names[] = {"x"};
    commit_and_expect(w, path, names, 1);
}

static void test_put_refuses_negative_ndim_and_more_than_32_dimensions(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path);
    int64_t shape[40];
    for (int i = 0; i < 40; i++)
        shape[i] = 1;
    DLTensor t = cpu_tensor(g_data, TSNAP_FLOAT32, -1, shape, NULL, 0);
    CHECK_ERR(tsnap_writer_put(w, "neg", &t), TSNAP_EINVAL);
    t.ndim = INT32_MIN;
    CHECK_ERR(tsnap_writer_put(w, "neg", &t), TSNAP_EINVAL);
    t.ndim = TSNAP_MAX_NDIM + 1;
    CHECK_ERR(tsnap_writer_put(w, "big", &t), TSNAP_EINVAL);
    t.ndim = 40;
    CHECK_ERR(tsnap_writer_put(w, "big", &t), TSNAP_EINVAL);
    t.ndim = TSNAP_MAX_NDIM; /* exactly the limit is fine */
    CHECK_OK(tsnap_writer_put(w, "max", &t));
    const char *names[] = {"max"};
    commit_and_expect(w, path, names, 1);
}

static void test_complex32_with_32_dimensions_is_refused_cleanly(void)
{
    /* complex32 is stored with one more axis, and HDF5 allows 32 at most */
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path);
    int64_t shape[TSNAP_MAX_NDIM];
    for (int i = 0; i < TSNAP_MAX_NDIM; i++)
        shape[i] = 1;
    DLTensor t = cpu_tensor(g_data, TSNAP_COMPLEX32, TSNAP_MAX_NDIM, shape, NULL, 0);
    int rc = tsnap_writer_put(w, "c32", &t);
    /* a tensor the format cannot hold: a bad argument (or an unrepresentable type) */
    CHECK_MSG(rc == TSNAP_EINVAL || rc == TSNAP_ETYPE,
              "put returned %d (%s), expected TSNAP_EINVAL or TSNAP_ETYPE; errmsg: \"%s\"", rc,
              tsnap_strerror(rc), tsnap_errmsg());
    CHECK(tsnap_errmsg()[0] != '\0');
    t.ndim = TSNAP_MAX_NDIM - 1;
    CHECK_OK(tsnap_writer_put(w, "c31", &t));
    const char *names[] = {"c31"};
    commit_and_expect(w, path, names, 1);
}

static void test_put_refuses_negative_dimensions(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path);
    int64_t shapes[][3] = {{-1, 3, 4}, {4, -3, 1}, {0, -1, 2}, {2, 2, INT64_MIN}};
    for (size_t i = 0; i < 4; i++) {
        ctx_set("shape (%lld,%lld,%lld)", (long long)shapes[i][0], (long long)shapes[i][1],
                (long long)shapes[i][2]);
        DLTensor t = cpu_tensor(g_data, TSNAP_FLOAT32, 3, shapes[i], NULL, 0);
        CHECK_ERR(tsnap_writer_put(w, "neg", &t), TSNAP_EINVAL);
    }
    ctx_clear();
    int64_t shape[2];
    DLTensor t = good_tensor(shape);
    CHECK_OK(tsnap_writer_put(w, "neg", &t));
    const char *names[] = {"neg"};
    commit_and_expect(w, path, names, 1);
}

static void test_put_refuses_shapes_whose_byte_size_overflows(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path);
    struct {
        tsnap_dtype dtype;
        int ndim;
        int64_t shape[4];
    } bad[] = {
        {TSNAP_INT8, 2, {INT64_MAX / 2, 3}},          /* elements overflow */
        {TSNAP_INT8, 2, {(int64_t)1 << 62, 4}},        /* elements overflow to 0 */
        {TSNAP_FLOAT64, 1, {(int64_t)1 << 61}},        /* × itemsize overflows int64 */
        {TSNAP_COMPLEX128, 1, {(int64_t)1 << 60}},     /* × 16 wraps to 0 */
        {TSNAP_FLOAT32, 1, {INT64_MAX}},               /* × 4 overflows */
        {TSNAP_UINT8, 4, {1 << 16, 1 << 16, 1 << 16, 1 << 16}}, /* 2^64 wraps to 0 */
        {TSNAP_INT16, 3, {(int64_t)1 << 31, (int64_t)1 << 31, 2}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ctx_set("case %zu (%s)", i, tsnap_dtype_name(bad[i].dtype));
        DLTensor t = cpu_tensor(g_data, bad[i].dtype, bad[i].ndim, bad[i].shape, NULL, 0);
        CHECK_ERR(tsnap_writer_put(w, "huge", &t), TSNAP_EINVAL);
    }
    ctx_clear();
    const char *names[] = {"ok"};
    int64_t shape[2];
    DLTensor t = good_tensor(shape);
    CHECK_OK(tsnap_writer_put(w, "ok", &t));
    commit_and_expect(w, path, names, 1);
}

static void test_put_refuses_null_data_with_elements_and_null_shape(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path);
    int64_t shape[2];
    DLTensor t = good_tensor(shape);
    t.data = NULL;
    CHECK_ERR(tsnap_writer_put(w, "x", &t), TSNAP_EINVAL);
    DLTensor s = cpu_tensor(NULL, TSNAP_INT32, 0, NULL, NULL, 0); /* 0-d has one element */
    CHECK_ERR(tsnap_writer_put(w, "s", &s), TSNAP_EINVAL);
    t = good_tensor(shape);
    t.shape = NULL;
    CHECK_ERR(tsnap_writer_put(w, "x", &t), TSNAP_EINVAL);
    t = good_tensor(shape);
    CHECK_OK(tsnap_writer_put(w, "x", &t));
    const char *names[] = {"x"};
    commit_and_expect(w, path, names, 1);
}

static void test_put_accepts_null_data_for_an_empty_tensor(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path);
    int64_t shape[2] = {0, 5};
    DLTensor t = cpu_tensor(NULL, TSNAP_FLOAT64, 2, shape, NULL, 0);
    CHECK_OK(tsnap_writer_put(w, "nothing", &t));
    const char *names[] = {"nothing"};
    commit_and_expect(w, path, names, 1);
}

static void test_put_refuses_unknown_dtype_codes_with_etype(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path);
    const DLDataType bad[] = {{kDLFloat, 24, 1}, {kDLFloat, 32, 2}, {kDLInt, 7, 1},
                              {kDLOpaqueHandle, 64, 1}, {kDLBfloat, 32, 1}, {kDLComplex, 16, 1},
                              {TSNAP_DL_BOOL, 1, 1}, {250, 8, 1}, {kDLFloat, 32, 0}};
    int64_t shape[2];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ctx_set("code %d bits %d lanes %d", bad[i].code, bad[i].bits, bad[i].lanes);
        DLTensor t = good_tensor(shape);
        t.dtype = bad[i];
        CHECK_ERR(tsnap_writer_put(w, "odd", &t), TSNAP_ETYPE);
    }
    ctx_clear();
    DLTensor t = good_tensor(shape);
    CHECK_OK(tsnap_writer_put(w, "odd", &t));
    const char *names[] = {"odd"};
    commit_and_expect(w, path, names, 1);
}

static void test_put_refuses_empty_and_malformed_names(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path);
    const char *bad[] = {"",     "/",      "/a",   "a/",    "a//b",   "a/./b", "../x", "./x",
                         "a/..", "a/../b", ".",    "..",    "//",     "a/b/",  "/a/b", "x/."};
    int64_t shape[2];
    DLTensor t = good_tensor(shape);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ctx_set("name \"%s\"", bad[i]);
        CHECK_ERR(tsnap_writer_put(w, bad[i], &t), TSNAP_EINVAL);
    }
    ctx_clear();
    CHECK_OK(tsnap_writer_put(w, "a/b", &t));
    const char *names[] = {"a/b"};
    commit_and_expect(w, path, names, 1);
}

static void test_put_refuses_names_with_control_characters(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path);
    const char *bad[] = {"a\x01" "b", "tab\there", "new\nline", "\x1f", "cr\r", "esc\x1b[0m",
                         "a/b\x07", "del\x7f"};
    int64_t shape[2];
    DLTensor t = good_tensor(shape);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ctx_set("name %zu", i);
        CHECK_ERR(tsnap_writer_put(w, bad[i], &t), TSNAP_EINVAL);
    }
    ctx_clear();
    const char *names[] = {"a"};
    CHECK_OK(tsnap_writer_put(w, "a", &t));
    commit_and_expect(w, path, names, 1);
}

static void test_put_accepts_names_of_1024_bytes_and_refuses_longer(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path);
    char name[1100];
    memset(name, 'n', sizeof name);
    int64_t shape[2];
    DLTensor t = good_tensor(shape);
    name[1025] = '\0';
    CHECK_ERR(tsnap_writer_put(w, name, &t), TSNAP_EINVAL);
    name[1099] = '\0';
    CHECK_ERR(tsnap_writer_put(w, name, &t), TSNAP_EINVAL);
    memset(name, 'n', sizeof name);
    name[1024] = '\0';
    CHECK_OK(tsnap_writer_put(w, name, &t));
    const char *names[] = {name};
    commit_and_expect(w, path, names, 1);
}

static void test_put_refuses_a_duplicate_name_with_eexists(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path);
    int64_t shape[2];
    DLTensor t = good_tensor(shape);
    CHECK_OK(tsnap_writer_put(w, "x", &t));
    CHECK_ERR(tsnap_writer_put(w, "x", &t), TSNAP_EEXISTS);
    CHECK_ERRMSG_HAS("x");
    CHECK_OK(tsnap_writer_put(w, "g/y", &t));
    CHECK_ERR(tsnap_writer_put(w, "g/y", &t), TSNAP_EEXISTS);
    const char *names[] = {"g/y", "x"};
    commit_and_expect(w, path, names, 2);
}

static void test_put_refuses_a_name_whose_group_path_is_taken(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path);
    int64_t shape[2];
    DLTensor t = good_tensor(shape);
    CHECK_OK(tsnap_writer_put(w, "a", &t));
    CHECK_ERR(tsnap_writer_put(w, "a/b", &t), TSNAP_EEXISTS);   /* a is a tensor */
    CHECK_OK(tsnap_writer_put(w, "g/h/i", &t));
    CHECK_ERR(tsnap_writer_put(w, "g", &t), TSNAP_EEXISTS);     /* g is a group */
    CHECK_ERR(tsnap_writer_put(w, "g/h", &t), TSNAP_EEXISTS);
    CHECK_OK(tsnap_writer_put(w, "g/j", &t));
    const char *names[] = {"a", "g/h/i", "g/j"};
    commit_and_expect(w, path, names, 3);
}

static void test_put_refuses_a_cuda_tensor_with_enocuda(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path);
    int64_t shape[2];
    DLTensor t = good_tensor(shape);
    t.device.device_type = kDLCUDA;
    CHECK_ERR(tsnap_writer_put(w, "gpu", &t), TSNAP_ENOCUDA);
    t.device.device_type = kDLOpenCL;
    CHECK_NEG(tsnap_writer_put(w, "gpu", &t));
    t = good_tensor(shape);
    CHECK_OK(tsnap_writer_put(w, "gpu", &t));
    const char *names[] = {"gpu"};
    commit_and_expect(w, path, names, 1);
}

static void test_put_after_commit_returns_estate(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path);
    int64_t shape[2];
    DLTensor t = good_tensor(shape);
    CHECK_OK(tsnap_writer_put(w, "x", &t));
    CHECK_OK(tsnap_writer_commit(w));
    CHECK_ERR(tsnap_writer_put(w, "y", &t), TSNAP_ESTATE);
    tsnap_writer_free(w);
    tsnap_reader *r = open_reader(path);
    CHECK_I64(tsnap_reader_count(r), 1);
    tsnap_reader_free(r);
}

static void test_argument_errors_leave_the_writer_usable(void)
{
    /* every kind of refused call on one writer, then a valid put + commit */
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path);
    int64_t shape[2], neg[2] = {-1, 2};
    DLTensor t = good_tensor(shape);
    CHECK_OK(tsnap_writer_put(w, "first", &t));
    DLTensor bad = t;
    bad.ndim = -1;
    CHECK_ERR(tsnap_writer_put(w, "b", &bad), TSNAP_EINVAL);
    bad = t;
    bad.shape = neg;
    CHECK_ERR(tsnap_writer_put(w, "b", &bad), TSNAP_EINVAL);
    bad = t;
    bad.dtype.bits = 24;
    CHECK_ERR(tsnap_writer_put(w, "b", &bad), TSNAP_ETYPE);
    bad = t;
    bad.device.device_type = kDLCUDA;
    CHECK_ERR(tsnap_writer_put(w, "b", &bad), TSNAP_ENOCUDA);
    CHECK_ERR(tsnap_writer_put(w, "a//b", &t), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_put(w, "first", &t), TSNAP_EEXISTS);
    CHECK_ERR(tsnap_writer_set_attr_string(w, NULL, "tsnap_format", "x"), TSNAP_EINVAL);
    CHECK_OK(tsnap_writer_put(w, "second", &t));
    const char *names[] = {"first", "second"};
    commit_and_expect(w, path, names, 2);
}

static void test_error_messages_are_one_line_naming_the_tensor(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path);
    int64_t shape[2], neg[2] = {3, -2};
    DLTensor t = good_tensor(shape);
    t.shape = neg;
    CHECK_ERR(tsnap_writer_put(w, "weights", &t), TSNAP_EINVAL);
    CHECK_ERRMSG_HAS("weights");
    CHECK_ERRMSG_HAS("snap.h5");
    CHECK(strchr(tsnap_errmsg(), '\n') == NULL);
    t = good_tensor(shape);
    t.dtype.lanes = 4;
    CHECK_ERR(tsnap_writer_put(w, "biases", &t), TSNAP_ETYPE);
    CHECK_ERRMSG_HAS("biases");
    CHECK(strchr(tsnap_errmsg(), '\n') == NULL);
    tsnap_writer_free(w);
}

static void test_writer_create_refuses_null_out_and_path(void)
{
    tsnap_writer *w = (tsnap_writer *)&w;
    CHECK_ERR(tsnap_writer_create(NULL, tpath("snap.h5"), NULL), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_create(&w, NULL, NULL), TSNAP_EINVAL);
    CHECK(w == NULL);
    w = (tsnap_writer *)&w;
    CHECK_ERR(tsnap_writer_create(&w, "", NULL), TSNAP_EINVAL);
    CHECK(w == NULL);
    CHECK_I64(count_entries(tdir()), 0);
}

static void test_writer_create_refuses_bad_options(void)
{
    tsnap_write_options o;
    tsnap_writer *w;

    tsnap_write_options init = TSNAP_WRITE_OPTIONS_INIT;
    o = init;
    o.version = 0;
    w = (tsnap_writer *)&w;
    ctx_set("version 0");
    CHECK_ERR(tsnap_writer_create(&w, tpath("snap.h5"), &o), TSNAP_EINVAL);
    CHECK(w == NULL);
    o = init;
    o.version = TSNAP_WRITE_OPTIONS_VERSION + 1;
    ctx_set("a newer options version");
    CHECK_ERR(tsnap_writer_create(&w, tpath("snap.h5"), &o), TSNAP_EINVAL);
    o = init;
    o.codec = (tsnap_codec)42;
    ctx_set("unknown codec");
    CHECK_ERR(tsnap_writer_create(&w, tpath("snap.h5"), &o), TSNAP_EINVAL);
    o = init;
    o.codec = TSNAP_CODEC_OTHER;
    ctx_set("codec OTHER is read-only");
    CHECK_ERR(tsnap_writer_create(&w, tpath("snap.h5"), &o), TSNAP_EINVAL);
    o = init;
    o.chunk_bytes = ((size_t)2 << 30) + 1;
    ctx_set("chunk_bytes over 2 GiB");
    CHECK_ERR(tsnap_writer_create(&w, tpath("snap.h5"), &o), TSNAP_EINVAL);
    o = init;
    o.shuffle = 3; /* 2 is bit shuffle */
    ctx_set("shuffle 3");
    CHECK_ERR(tsnap_writer_create(&w, tpath("snap.h5"), &o), TSNAP_EINVAL);
    o = init;
    o.codec = TSNAP_CODEC_DEFLATE;
    o.level = 10;
    ctx_set("deflate level 10");
    CHECK_ERR(tsnap_writer_create(&w, tpath("snap.h5"), &o), TSNAP_EINVAL);
    ctx_clear();
    CHECK_I64(count_entries(tdir()), 0);

    struct {
        tsnap_codec codec;
        int level;
        const char *what;
    } bad_levels[] = {{TSNAP_CODEC_ZSTD, 23, "zstd level 23"},
                      {TSNAP_CODEC_ZSTD, -8, "zstd level -8"},
                      {TSNAP_CODEC_LZ4, 1, "lz4 with a level"},
                      {TSNAP_CODEC_NONE, 3, "no codec with a level"}};
    for (size_t i = 0; i < sizeof bad_levels / sizeof bad_levels[0]; i++) {
        o = init;
        o.codec = bad_levels[i].codec;
        o.level = bad_levels[i].level;
        ctx_set("%s", bad_levels[i].what);
        CHECK_ERR(tsnap_writer_create(&w, tpath("snap.h5"), &o), TSNAP_EINVAL);
    }
    o = init;
    o.threads = 257;
    ctx_set("threads 257");
    CHECK_ERR(tsnap_writer_create(&w, tpath("snap.h5"), &o), TSNAP_EINVAL);
    ctx_clear();
    CHECK_I64(count_entries(tdir()), 0);

    /* A version 1 struct: everything before `threads`. */
    tsnap_write_options v1;
    CHECK_OK(tsnap_write_options_init(&v1, 1));
    v1.codec = TSNAP_CODEC_ZSTD;
    CHECK_OK(tsnap_writer_create(&w, tpath("v1.h5"), &v1));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);

    o = init;
    o.chunk_bytes = (size_t)2 << 30; /* exactly 2 GiB is allowed */
    CHECK_OK(tsnap_writer_create(&w, tpath("snap.h5"), &o));
    tsnap_writer_free(w);
}

static void test_reader_calls_refuse_null_arguments(void)
{
    const char *path = tpath("snap.h5");
    int64_t shape[2];
    write_good_snapshot(path, shape);

    tsnap_reader *r = (tsnap_reader *)&r;
    CHECK_ERR(tsnap_reader_open(NULL, path), TSNAP_EINVAL);
    CHECK_ERR(tsnap_reader_open(&r, NULL), TSNAP_EINVAL);
    CHECK(r == NULL);
    r = open_reader(path);
    tsnap_tensor_info info;
    float buf[12];
    DLTensor dst = good_tensor(shape);
    dst.data = buf;
    CHECK_ERR(tsnap_reader_describe(NULL, "x", &info), TSNAP_EINVAL);
    CHECK_ERR(tsnap_reader_describe(r, NULL, &info), TSNAP_EINVAL);
    CHECK_ERR(tsnap_reader_describe(r, "x", NULL), TSNAP_EINVAL);
    CHECK_ERR(tsnap_reader_read(NULL, "x", NULL, NULL, NULL, &dst), TSNAP_EINVAL);
    CHECK_ERR(tsnap_reader_read(r, NULL, NULL, NULL, NULL, &dst), TSNAP_EINVAL);
    CHECK_ERR(tsnap_reader_verify(NULL, NULL), TSNAP_EINVAL);
    tsnap_mapping *m = (tsnap_mapping *)&m;
    CHECK_ERR(tsnap_mapping_create(NULL, r, "x"), TSNAP_EINVAL);
    CHECK_ERR(tsnap_mapping_create(&m, NULL, "x"), TSNAP_EINVAL);
    CHECK(m == NULL);
    m = (tsnap_mapping *)&m;
    CHECK_ERR(tsnap_mapping_create(&m, r, NULL), TSNAP_EINVAL);
    CHECK(m == NULL);
    size_t count;
    CHECK_ERR(tsnap_reader_attr_count(NULL, NULL, &count), TSNAP_EINVAL);
    CHECK(tsnap_reader_name(r, 1) == NULL);
    CHECK(tsnap_reader_name(r, (size_t)-1) == NULL);
    tsnap_reader_free(NULL);
    /* and still fine */
    CHECK_OK(tsnap_reader_read(r, "x", NULL, NULL, NULL, &dst));
    tsnap_reader_free(r);
}

static void test_reading_into_a_cuda_tensor_gives_enocuda(void)
{
    const char *path = tpath("snap.h5");
    int64_t shape[2];
    write_good_snapshot(path, shape);
    tsnap_reader *r = open_reader(path);
    float buf[12];
    memset(buf, 0, sizeof buf);
    DLTensor dst = good_tensor(shape);
    dst.data = buf;
    dst.device.device_type = kDLCUDA;
    CHECK_ERR(tsnap_reader_read(r, "x", NULL, NULL, NULL, &dst), TSNAP_ENOCUDA);
    dst.device.device_type = kDLCPU;
    CHECK_OK(tsnap_reader_read(r, "x", NULL, NULL, NULL, &dst));
    tsnap_reader_free(r);
}

static void test_queries_on_null_handles_return_nothing(void)
{
    CHECK_I64(tsnap_reader_count(NULL), 0);
    CHECK(tsnap_reader_name(NULL, 0) == NULL);
    CHECK_I64(tsnap_reader_format_version(NULL), 0);
    CHECK(tsnap_mapping_tensor(NULL) == NULL);
    tsnap_reader_free(NULL);
    tsnap_writer_free(NULL);
    tsnap_mapping_free(NULL);
    CHECK_ERR(tsnap_writer_commit(NULL), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_abort(NULL), TSNAP_EINVAL);
}

const test_entry args_tests[] = {
    TEST(test_put_refuses_null_writer_name_and_tensor),
    TEST(test_put_refuses_negative_ndim_and_more_than_32_dimensions),
    TEST(test_complex32_with_32_dimensions_is_refused_cleanly),
    TEST(test_put_refuses_negative_dimensions),
    TEST(test_put_refuses_shapes_whose_byte_size_overflows),
    TEST(test_put_refuses_null_data_with_elements_and_null_shape),
    TEST(test_put_accepts_null_data_for_an_empty_tensor),
    TEST(test_put_refuses_unknown_dtype_codes_with_etype),
    TEST(test_put_refuses_empty_and_malformed_names),
    TEST(test_put_refuses_names_with_control_characters),
    TEST(test_put_accepts_names_of_1024_bytes_and_refuses_longer),
    TEST(test_put_refuses_a_duplicate_name_with_eexists),
    TEST(test_put_refuses_a_name_whose_group_path_is_taken),
    TEST(test_put_refuses_a_cuda_tensor_with_enocuda),
    TEST(test_put_after_commit_returns_estate),
    TEST(test_argument_errors_leave_the_writer_usable),
    TEST(test_error_messages_are_one_line_naming_the_tensor),
    TEST(test_writer_create_refuses_null_out_and_path),
    TEST(test_writer_create_refuses_bad_options),
    TEST(test_reader_calls_refuse_null_arguments),
    TEST(test_reading_into_a_cuda_tensor_gives_enocuda),
    TEST(test_queries_on_null_handles_return_nothing),
    TEST_END,
};

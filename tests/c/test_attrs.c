/*
 * test_attrs.c - root and dataset attributes: tsnap's own (`tsnap_format`,
 * `tsnap_version`, `created`, `producer`, `step`, `time`, `tsnap_dtype`)
 * and user ones (numeric scalars, small arrays, strings), read back with
 * tsnap_reader_attr_find / tsnap_reader_attr and checked in HDF5 itself.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

/* The attribute is numeric of `dtype`, shape (ndim, shape) and bytes. */
static void check_numeric(tsnap_reader *r, const char *tensor, const char *key, tsnap_dtype dtype,
                          int ndim, const int64_t *shape, const void *bytes)
{
    tsnap_attr a;
    memset(&a, 0, sizeof a);
    ctx_set("attribute %s of %s", key, tensor ? tensor : "(root)");
    if (!CHECK_OK(tsnap_reader_attr_find(r, tensor, key, &a)))
        return;
    CHECK_STR(a.key, key);
    if (!CHECK_RC(a.kind, TSNAP_ATTR_NUMERIC))
        return;
    DLDataType want = dl_type(dtype);
    CHECK_I64(a.value.dtype.code, want.code);
    CHECK_I64(a.value.dtype.bits, want.bits);
    CHECK_I64(a.value.dtype.lanes, 1);
    CHECK_I64(a.value.device.device_type, kDLCPU);
    if (!CHECK_RC(a.value.ndim, ndim))
        return;
    for (int d = 0; d < ndim; d++)
        CHECK_I64(a.value.shape[d], shape[d]);
    int64_t n = nelems(ndim, shape);
    size_t itemsize = dtype_row_of(dtype)->size;
    unsigned char *got = alloc_filled((size_t)n * itemsize, 0);
    naive_gather(&a.value, itemsize, 0, got);
    CHECK_MEM(got, bytes, (size_t)n * itemsize, "attribute value");
    free(got);
    ctx_clear();
}

static void check_string(tsnap_reader *r, const char *tensor, const char *key, const char *want)
{
    tsnap_attr a;
    memset(&a, 0, sizeof a);
    ctx_set("attribute %s of %s", key, tensor ? tensor : "(root)");
    if (CHECK_OK(tsnap_reader_attr_find(r, tensor, key, &a))) {
        CHECK_STR(a.key, key);
        CHECK_I64(a.kind, TSNAP_ATTR_STRING);
        CHECK_STR(a.string, want);
    }
    ctx_clear();
}

static tsnap_writer *new_writer(const char *path, const tsnap_write_options *o)
{
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, o));
    return w;
}

static tsnap_reader *commit_and_open(tsnap_writer *w, const char *path)
{
    CHECK_OK_FATAL(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    return open_reader(path);
}

static void put_tensor(tsnap_writer *w, const char *name)
{
    static float v[4] = {1.5f, -2.25f, 3.0f, 0.0f};
    int64_t shape[1] = {4};
    DLTensor t = cpu_tensor(v, TSNAP_FLOAT32, 1, shape, NULL, 0);
    CHECK_OK(tsnap_writer_put(w, name, &t));
}

static void test_root_records_format_version_created_and_producer(void)
{
    const char *path = tpath("snap.h5");
    tsnap_reader *r = commit_and_open(new_writer(path, NULL), path);
    check_string(r, NULL, "tsnap_format", "tsnap");
    check_string(r, "", "tsnap_format", "tsnap");
    int64_t one = 1;
    check_numeric(r, NULL, "tsnap_version", TSNAP_INT64, 0, NULL, &one);
    check_string(r, NULL, "producer", "tsnap " TSNAP_VERSION_STRING);
    tsnap_attr a;
    CHECK_OK(tsnap_reader_attr_find(r, NULL, "created", &a));
    CHECK_I64(a.kind, TSNAP_ATTR_STRING);
    CHECK_ERR(tsnap_reader_attr_find(r, NULL, "step", &a), TSNAP_ENOTFOUND);
    CHECK_ERR(tsnap_reader_attr_find(r, NULL, "time", &a), TSNAP_ENOTFOUND);
    size_t count = 0;
    CHECK_OK(tsnap_reader_attr_count(r, NULL, &count));
    CHECK_I64(count, 4);
    tsnap_reader_free(r);
}

static void test_created_is_iso8601_utc_with_microseconds_near_now(void)
{
    const char *path = tpath("snap.h5");
    time_t before = time(NULL);
    tsnap_reader *r = commit_and_open(new_writer(path, NULL), path);
    tsnap_attr a;
    CHECK_OK_FATAL(tsnap_reader_attr_find(r, NULL, "created", &a));
    const char *s = a.string;
    CHECK_FATAL(s != NULL);
    /* YYYY-MM-DDTHH:MM:SS.ffffffZ */
    const char *pattern = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    int shape_ok = strlen(s) == strlen(pattern);
    for (size_t i = 0; shape_ok && pattern[i]; i++)
        shape_ok = pattern[i] == 'd' ? (s[i] >= '0' && s[i] <= '9') : s[i] == pattern[i];
    CHECK_MSG(shape_ok, "created is \"%s\", expected the form %s", s, pattern);
    if (shape_ok) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        tm.tm_year = atoi(s) - 1900;
        tm.tm_mon = atoi(s + 5) - 1;
        tm.tm_mday = atoi(s + 8);
        tm.tm_hour = atoi(s + 11);
        tm.tm_min = atoi(s + 14);
        tm.tm_sec = atoi(s + 17);
        time_t t = timegm(&tm);
        /* UTC, not local time: within a minute of the clock around the write */
        CHECK_MSG(t >= before - 60 && t <= time(NULL) + 60,
                  "created %s is not the current UTC time", s);
    }
    tsnap_reader_free(r);
}

static void test_producer_option_is_copied_and_recorded(void)
{
    const char *path = tpath("snap.h5");
    char producer[32];
    snprintf(producer, sizeof producer, "my simulation 2.3");
    tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
    o.producer = producer;
    tsnap_writer *w = new_writer(path, &o);
    memset(producer, 'X', sizeof producer - 1); /* "Copied." */
    tsnap_reader *r = commit_and_open(w, path);
    check_string(r, NULL, "producer", "my simulation 2.3");
    tsnap_reader_free(r);
}

static void set_scalars_and_strings(tsnap_writer *w, const char *tensor)
{
    int64_t i64 = -9007199254740993LL;
    int32_t i32 = -123;
    double f64 = 3.141592653589793;
    float f32 = -0.15625f;
    uint16_t u16 = 65535;
    DLTensor t;
    t = cpu_tensor(&i64, TSNAP_INT64, 0, NULL, NULL, 0);
    CHECK_OK(tsnap_writer_set_attr(w, tensor, "an_int64", &t));
    t = cpu_tensor(&i32, TSNAP_INT32, 0, NULL, NULL, 0);
    CHECK_OK(tsnap_writer_set_attr(w, tensor, "an_int32", &t));
    t = cpu_tensor(&f64, TSNAP_FLOAT64, 0, NULL, NULL, 0);
    CHECK_OK(tsnap_writer_set_attr(w, tensor, "a_float64", &t));
    t = cpu_tensor(&f32, TSNAP_FLOAT32, 0, NULL, NULL, 0);
    CHECK_OK(tsnap_writer_set_attr(w, tensor, "a_float32", &t));
    t = cpu_tensor(&u16, TSNAP_UINT16, 0, NULL, NULL, 0);
    CHECK_OK(tsnap_writer_set_attr(w, tensor, "a_uint16", &t));
    CHECK_OK(tsnap_writer_set_attr_string(w, tensor, "note", "hello"));
    CHECK_OK(tsnap_writer_set_attr_string(w, tensor, "unicode", "π ≈ 3.14159, naïve café"));
    CHECK_OK(tsnap_writer_set_attr_string(w, tensor, "empty", ""));
}

static void check_scalars_and_strings(tsnap_reader *r, const char *tensor)
{
    int64_t i64 = -9007199254740993LL;
    int32_t i32 = -123;
    double f64 = 3.141592653589793;
    float f32 = -0.15625f;
    uint16_t u16 = 65535;
    check_numeric(r, tensor, "an_int64", TSNAP_INT64, 0, NULL, &i64);
    check_numeric(r, tensor, "an_int32", TSNAP_INT32, 0, NULL, &i32);
    check_numeric(r, tensor, "a_float64", TSNAP_FLOAT64, 0, NULL, &f64);
    check_numeric(r, tensor, "a_float32", TSNAP_FLOAT32, 0, NULL, &f32);
    check_numeric(r, tensor, "a_uint16", TSNAP_UINT16, 0, NULL, &u16);
    check_string(r, tensor, "note", "hello");
    check_string(r, tensor, "unicode", "π ≈ 3.14159, naïve café");
    check_string(r, tensor, "empty", "");
}

static void test_root_numeric_and_string_attributes_read_back(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path, NULL);
    set_scalars_and_strings(w, NULL);
    tsnap_reader *r = commit_and_open(w, path);
    check_scalars_and_strings(r, NULL);
    check_scalars_and_strings(r, "");
    size_t count = 0;
    CHECK_OK(tsnap_reader_attr_count(r, NULL, &count));
    CHECK_I64(count, 4 + 8);
    tsnap_reader_free(r);
}

static void test_dataset_attributes_read_back(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path, NULL);
    put_tensor(w, "layer/w");
    put_tensor(w, "top");
    set_scalars_and_strings(w, "layer/w");
    CHECK_OK(tsnap_writer_set_attr_string(w, "", "root_note", "at the root"));
    tsnap_reader *r = commit_and_open(w, path);
    check_scalars_and_strings(r, "layer/w");
    check_string(r, "layer/w", "tsnap_dtype", "float32");
    check_string(r, NULL, "root_note", "at the root");
    tsnap_attr a;
    CHECK_ERR(tsnap_reader_attr_find(r, "top", "note", &a), TSNAP_ENOTFOUND);
    CHECK_ERR(tsnap_reader_attr_find(r, NULL, "note", &a), TSNAP_ENOTFOUND);
    size_t count = 0;
    CHECK_OK(tsnap_reader_attr_count(r, "layer/w", &count));
    CHECK_I64(count, 2 + 8); /* tsnap_dtype, tsnap_checksum and ours */
    CHECK_OK(tsnap_reader_attr_count(r, "top", &count));
    CHECK_I64(count, 2);
    tsnap_reader_free(r);
}

static void test_small_arrays_of_several_dtypes_read_back(void)
{
    rng g;
    rng_init(&g, __func__);
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path, NULL);
    put_tensor(w, "x");
    struct {
        const char *key;
        tsnap_dtype dtype;
        int ndim;
        int64_t shape[2];
        unsigned char bytes[64];
    } arr[] = {
        {"i8", TSNAP_INT8, 1, {2}, {0}},       {"i16", TSNAP_INT16, 1, {5}, {0}},
        {"u8", TSNAP_UINT8, 1, {4}, {0}},      {"u64", TSNAP_UINT64, 1, {3}, {0}},
        {"f16", TSNAP_FLOAT16, 1, {4}, {0}},   {"bf16", TSNAP_BFLOAT16, 1, {2}, {0}},
        {"f32", TSNAP_FLOAT32, 1, {3}, {0}},   {"f64_2d", TSNAP_FLOAT64, 2, {2, 3}, {0}},
        {"c64", TSNAP_COMPLEX64, 1, {2}, {0}}, {"c128", TSNAP_COMPLEX128, 1, {1}, {0}},
        {"one", TSNAP_INT32, 1, {1}, {0}},
    };
    size_t narr = sizeof arr / sizeof arr[0];
    for (size_t i = 0; i < narr; i++) {
        rng_fill_dtype(&g, arr[i].bytes, (size_t)nelems(arr[i].ndim, arr[i].shape), arr[i].dtype);
        DLTensor t = cpu_tensor(arr[i].bytes, arr[i].dtype, arr[i].ndim, arr[i].shape, NULL, 0);
        ctx_set("%s", arr[i].key);
        CHECK_OK(tsnap_writer_set_attr(w, NULL, arr[i].key, &t));
        CHECK_OK(tsnap_writer_set_attr(w, "x", arr[i].key, &t));
    }
    /* bool bytes are stored as 0/1 */
    unsigned char bools[5] = {0, 1, 7, 0x80, 0};
    const unsigned char bools01[5] = {0, 1, 1, 1, 0};
    int64_t bshape[1] = {5};
    DLTensor bt = cpu_tensor(bools, TSNAP_BOOL, 1, bshape, NULL, 0);
    CHECK_OK(tsnap_writer_set_attr(w, NULL, "flags", &bt));
    ctx_clear();
    tsnap_reader *r = commit_and_open(w, path);
    for (size_t i = 0; i < narr; i++) {
        check_numeric(r, NULL, arr[i].key, arr[i].dtype, arr[i].ndim, arr[i].shape, arr[i].bytes);
        check_numeric(r, "x", arr[i].key, arr[i].dtype, arr[i].ndim, arr[i].shape, arr[i].bytes);
    }
    check_numeric(r, NULL, "flags", TSNAP_BOOL, 1, bshape, bools01);
    tsnap_reader_free(r);
}

static void test_complex32_and_float8_e4m3fn_attributes_keep_their_bytes(void)
{
    /* Attributes carry no tsnap_dtype, so these two read back as what HDF5
     * holds (float16 pairs, uint8); their bytes must survive unchanged. */
    const char *path = tpath("snap.h5");
    unsigned char c32[8] = {0x00, 0x3c, 0x00, 0xc0, 0x01, 0x7c, 0xff, 0x7b};
    unsigned char e4[3] = {0x7e, 0x7f, 0x81};
    int64_t s2[1] = {2}, s3[1] = {3};
    DLTensor tc = cpu_tensor(c32, TSNAP_COMPLEX32, 1, s2, NULL, 0);
    DLTensor te = cpu_tensor(e4, TSNAP_FLOAT8_E4M3FN, 1, s3, NULL, 0);
    tsnap_writer *w = new_writer(path, NULL);
    CHECK_OK(tsnap_writer_set_attr(w, NULL, "c32", &tc));
    CHECK_OK(tsnap_writer_set_attr(w, NULL, "e4", &te));
    tsnap_reader *r = commit_and_open(w, path);
    struct {
        const char *key;
        const unsigned char *bytes;
        size_t n;
    } want[2] = {{"c32", c32, sizeof c32}, {"e4", e4, sizeof e4}};
    for (int i = 0; i < 2; i++) {
        tsnap_attr a;
        ctx_set("%s", want[i].key);
        if (!CHECK_OK(tsnap_reader_attr_find(r, NULL, want[i].key, &a)) ||
            !CHECK_RC(a.kind, TSNAP_ATTR_NUMERIC))
            continue;
        int64_t n = nelems(a.value.ndim, a.value.shape);
        size_t size = (size_t)(a.value.dtype.bits / 8) * a.value.dtype.lanes;
        if (CHECK_I64((size_t)n * size, want[i].n)) {
            unsigned char got[8];
            naive_gather(&a.value, size, 0, got);
            CHECK_MEM(got, want[i].bytes, want[i].n, "attribute bytes");
        }
    }
    ctx_clear();
    tsnap_reader_free(r);
}

static void test_attribute_from_a_strided_tensor_stores_its_logical_order(void)
{
    const char *path = tpath("snap.h5");
    float src[6] = {0, 1, 2, 3, 4, 5};
    int64_t shape[2] = {2, 3}, strides[2] = {-3, -1};
    DLTensor t = cpu_tensor(src, TSNAP_FLOAT32, 2, shape, strides, 5 * sizeof(float));
    const float want[6] = {5, 4, 3, 2, 1, 0};
    int64_t bshape[2] = {2, 2}, bstrides[2] = {0, 2};
    DLTensor b = cpu_tensor(src, TSNAP_FLOAT32, 2, bshape, bstrides, 4);
    const float bwant[4] = {1, 3, 1, 3};
    tsnap_writer *w = new_writer(path, NULL);
    CHECK_OK(tsnap_writer_set_attr(w, NULL, "reversed", &t));
    CHECK_OK(tsnap_writer_set_attr(w, NULL, "broadcast", &b));
    tsnap_reader *r = commit_and_open(w, path);
    check_numeric(r, NULL, "reversed", TSNAP_FLOAT32, 2, shape, want);
    check_numeric(r, NULL, "broadcast", TSNAP_FLOAT32, 2, bshape, bwant);
    tsnap_reader_free(r);
}

static void test_step_and_time_are_stored_as_int64_and_float64(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path, NULL);
    int32_t step = 7;
    float time_ = 0.5f;
    DLTensor s = cpu_tensor(&step, TSNAP_INT32, 0, NULL, NULL, 0);
    DLTensor t = cpu_tensor(&time_, TSNAP_FLOAT32, 0, NULL, NULL, 0);
    CHECK_OK(tsnap_writer_set_attr(w, NULL, "step", &s));
    CHECK_OK(tsnap_writer_set_attr(w, NULL, "time", &t));
    tsnap_reader *r = commit_and_open(w, path);
    int64_t step64 = 7;
    double time64 = 0.5;
    check_numeric(r, NULL, "step", TSNAP_INT64, 0, NULL, &step64);
    check_numeric(r, NULL, "time", TSNAP_FLOAT64, 0, NULL, &time64);
    tsnap_reader_free(r);

    /* and in HDF5 itself */
    hid_t f = h5_open(path);
    CHECK_FATAL(f >= 0);
    const char *keys[2] = {"step", "time"};
    hid_t want[2] = {H5T_STD_I64LE, H5T_IEEE_F64LE};
    for (int i = 0; i < 2; i++) {
        ctx_set("%s in HDF5", keys[i]);
        hid_t a = H5Aopen(f, keys[i], H5P_DEFAULT);
        CHECK_FATAL(a >= 0);
        hid_t ty = H5Aget_type(a), sp = H5Aget_space(a);
        CHECK(H5Tequal(ty, want[i]) > 0);
        CHECK(H5Sget_simple_extent_type(sp) == H5S_SCALAR);
        H5Sclose(sp);
        H5Tclose(ty);
        H5Aclose(a);
    }
    H5Fclose(f);
}

static void test_step_takes_only_an_integer_scalar_and_time_only_a_real_scalar(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path, NULL);
    double d = 1.0;
    int64_t i = 3, arr[2] = {1, 2}, shape[1] = {2};
    DLTensor real = cpu_tensor(&d, TSNAP_FLOAT64, 0, NULL, NULL, 0);
    DLTensor integer_array = cpu_tensor(arr, TSNAP_INT64, 1, shape, NULL, 0);
    DLTensor integer = cpu_tensor(&i, TSNAP_INT64, 0, NULL, NULL, 0);
    ctx_set("step = 1.0");
    CHECK_NEG(tsnap_writer_set_attr(w, NULL, "step", &real));
    ctx_set("step = [1, 2]");
    CHECK_NEG(tsnap_writer_set_attr(w, NULL, "step", &integer_array));
    ctx_set("step = \"3\"");
    CHECK_NEG(tsnap_writer_set_attr_string(w, NULL, "step", "3"));
    ctx_set("time = [1, 2]");
    CHECK_NEG(tsnap_writer_set_attr(w, NULL, "time", &integer_array));
    ctx_set("time = \"now\"");
    CHECK_NEG(tsnap_writer_set_attr_string(w, NULL, "time", "now"));
    ctx_clear();
    CHECK_OK(tsnap_writer_set_attr(w, NULL, "step", &integer));
    tsnap_reader *r = commit_and_open(w, path);
    check_numeric(r, NULL, "step", TSNAP_INT64, 0, NULL, &i);
    tsnap_attr a;
    CHECK_ERR(tsnap_reader_attr_find(r, NULL, "time", &a), TSNAP_ENOTFOUND);
    tsnap_reader_free(r);
}

static void test_reserved_keys_are_refused_with_einval(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path, NULL);
    put_tensor(w, "t");
    int64_t v = 2;
    DLTensor t = cpu_tensor(&v, TSNAP_INT64, 0, NULL, NULL, 0);
    const char *root_keys[] = {"tsnap_format", "tsnap_version", "tsnap_", "tsnap_anything",
                               "tsnap_dtype", "tsnap_checksum", "created", "producer"};
    for (size_t i = 0; i < sizeof root_keys / sizeof root_keys[0]; i++) {
        ctx_set("root key %s", root_keys[i]);
        CHECK_ERR(tsnap_writer_set_attr(w, NULL, root_keys[i], &t), TSNAP_EINVAL);
        CHECK_ERR(tsnap_writer_set_attr_string(w, NULL, root_keys[i], "x"), TSNAP_EINVAL);
        CHECK_ERR(tsnap_writer_set_attr_string(w, "", root_keys[i], "x"), TSNAP_EINVAL);
    }
    const char *ds_keys[] = {"tsnap_dtype", "tsnap_checksum", "tsnap_", "tsnap_other"};
    for (size_t i = 0; i < sizeof ds_keys / sizeof ds_keys[0]; i++) {
        ctx_set("dataset key %s", ds_keys[i]);
        CHECK_ERR(tsnap_writer_set_attr(w, "t", ds_keys[i], &t), TSNAP_EINVAL);
        CHECK_ERR(tsnap_writer_set_attr_string(w, "t", ds_keys[i], "int64"), TSNAP_EINVAL);
    }
    ctx_clear();
    /* the writer is still usable and nothing was overwritten */
    CHECK_OK(tsnap_writer_set_attr_string(w, NULL, "tsnapshot", "not reserved"));
    tsnap_reader *r = commit_and_open(w, path);
    check_string(r, NULL, "tsnap_format", "tsnap");
    int64_t one = 1;
    check_numeric(r, NULL, "tsnap_version", TSNAP_INT64, 0, NULL, &one);
    check_string(r, NULL, "producer", "tsnap " TSNAP_VERSION_STRING);
    check_string(r, "t", "tsnap_dtype", "float32");
    check_string(r, NULL, "tsnapshot", "not reserved");
    CHECK_OK(tsnap_reader_verify(r, NULL));
    tsnap_reader_free(r);
}

static void test_created_and_producer_are_ordinary_keys_on_datasets(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path, NULL);
    put_tensor(w, "t");
    CHECK_OK(tsnap_writer_set_attr_string(w, "t", "created", "by hand"));
    CHECK_OK(tsnap_writer_set_attr_string(w, "t", "producer", "someone"));
    tsnap_reader *r = commit_and_open(w, path);
    check_string(r, "t", "created", "by hand");
    check_string(r, "t", "producer", "someone");
    tsnap_reader_free(r);
}

static void test_setting_an_attribute_again_replaces_it(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path, NULL);
    put_tensor(w, "t");
    int32_t a = 1;
    double b = 2.5;
    int64_t s1 = 10, s2 = 20;
    DLTensor ta = cpu_tensor(&a, TSNAP_INT32, 0, NULL, NULL, 0);
    DLTensor tb = cpu_tensor(&b, TSNAP_FLOAT64, 0, NULL, NULL, 0);
    DLTensor t1 = cpu_tensor(&s1, TSNAP_INT64, 0, NULL, NULL, 0);
    DLTensor t2 = cpu_tensor(&s2, TSNAP_INT64, 0, NULL, NULL, 0);
    CHECK_OK(tsnap_writer_set_attr(w, NULL, "k", &ta));
    CHECK_OK(tsnap_writer_set_attr(w, NULL, "k", &tb));
    CHECK_OK(tsnap_writer_set_attr_string(w, NULL, "s", "first"));
    CHECK_OK(tsnap_writer_set_attr_string(w, NULL, "s", "second, longer than the first"));
    CHECK_OK(tsnap_writer_set_attr(w, "t", "m", &ta));
    CHECK_OK(tsnap_writer_set_attr_string(w, "t", "m", "now a string"));
    CHECK_OK(tsnap_writer_set_attr(w, NULL, "step", &t1));
    CHECK_OK(tsnap_writer_set_attr(w, NULL, "step", &t2));
    tsnap_reader *r = commit_and_open(w, path);
    check_numeric(r, NULL, "k", TSNAP_FLOAT64, 0, NULL, &b);
    check_string(r, NULL, "s", "second, longer than the first");
    check_string(r, "t", "m", "now a string");
    check_numeric(r, NULL, "step", TSNAP_INT64, 0, NULL, &s2);
    size_t count = 0;
    CHECK_OK(tsnap_reader_attr_count(r, NULL, &count));
    CHECK_I64(count, 4 + 3);
    tsnap_reader_free(r);
}

static void test_attribute_arrays_up_to_64_kib_are_accepted_and_larger_refused(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path, NULL);
    unsigned char *buf = alloc_filled(65537 + 8, 0x3c);
    int64_t ok_shape[1] = {65536}, big_shape[1] = {65537}, f64_shape[1] = {8193};
    DLTensor ok = cpu_tensor(buf, TSNAP_UINT8, 1, ok_shape, NULL, 0);
    DLTensor big = cpu_tensor(buf, TSNAP_UINT8, 1, big_shape, NULL, 0);
    DLTensor big64 = cpu_tensor(buf, TSNAP_FLOAT64, 1, f64_shape, NULL, 0);
    CHECK_OK(tsnap_writer_set_attr(w, NULL, "exactly_64k", &ok));
    CHECK_ERR(tsnap_writer_set_attr(w, NULL, "too_big", &big), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_set_attr(w, NULL, "too_big64", &big64), TSNAP_EINVAL);
    tsnap_reader *r = commit_and_open(w, path);
    check_numeric(r, NULL, "exactly_64k", TSNAP_UINT8, 1, ok_shape, buf);
    tsnap_attr a;
    CHECK_ERR(tsnap_reader_attr_find(r, NULL, "too_big", &a), TSNAP_ENOTFOUND);
    tsnap_reader_free(r);
    free(buf);
}

static void test_attribute_on_a_tensor_not_yet_put_is_refused(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path, NULL);
    put_tensor(w, "g/x");
    CHECK_NEG(tsnap_writer_set_attr_string(w, "later", "k", "v"));
    CHECK_NEG(tsnap_writer_set_attr_string(w, "g", "k", "v")); /* a group, not a tensor */
    CHECK_NEG(tsnap_writer_set_attr_string(w, "g/x/y", "k", "v"));
    CHECK_OK(tsnap_writer_set_attr_string(w, "g/x", "k", "v"));
    tsnap_reader *r = commit_and_open(w, path);
    check_string(r, "g/x", "k", "v");
    tsnap_reader_free(r);
}

static void test_attribute_calls_refuse_bad_arguments(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path, NULL);
    put_tensor(w, "t");
    int64_t v = 1;
    DLTensor t = cpu_tensor(&v, TSNAP_INT64, 0, NULL, NULL, 0);
    CHECK_ERR(tsnap_writer_set_attr(NULL, NULL, "k", &t), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_set_attr(w, NULL, NULL, &t), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_set_attr(w, NULL, "", &t), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_set_attr(w, NULL, "k", NULL), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_set_attr_string(NULL, NULL, "k", "v"), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_set_attr_string(w, NULL, NULL, "v"), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_set_attr_string(w, NULL, "", "v"), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_set_attr_string(w, NULL, "k", NULL), TSNAP_EINVAL);

    DLTensor bad = t;
    bad.dtype.bits = 24;
    bad.dtype.code = kDLFloat;
    CHECK_ERR(tsnap_writer_set_attr(w, NULL, "k", &bad), TSNAP_ETYPE);
    bad = t;
    bad.dtype.lanes = 2;
    CHECK_ERR(tsnap_writer_set_attr(w, NULL, "k", &bad), TSNAP_ETYPE);
    bad = t;
    bad.data = NULL;
    CHECK_ERR(tsnap_writer_set_attr(w, NULL, "k", &bad), TSNAP_EINVAL);
    int64_t neg[1] = {-1};
    bad = cpu_tensor(&v, TSNAP_INT64, 1, neg, NULL, 0);
    CHECK_ERR(tsnap_writer_set_attr(w, NULL, "k", &bad), TSNAP_EINVAL);
    bad = t;
    bad.ndim = -1;
    CHECK_ERR(tsnap_writer_set_attr(w, NULL, "k", &bad), TSNAP_EINVAL);
    bad = t;
    bad.ndim = 1;
    bad.shape = NULL;
    CHECK_ERR(tsnap_writer_set_attr(w, NULL, "k", &bad), TSNAP_EINVAL);
    bad = t;
    bad.device.device_type = kDLCUDA;
    CHECK_ERR(tsnap_writer_set_attr(w, NULL, "k", &bad), TSNAP_ENOCUDA);

    CHECK_OK(tsnap_writer_set_attr(w, NULL, "k", &t));
    tsnap_reader *r = commit_and_open(w, path);
    check_numeric(r, NULL, "k", TSNAP_INT64, 0, NULL, &v);
    tsnap_reader_free(r);
}

static void test_attributes_are_listed_in_name_order(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path, NULL);
    put_tensor(w, "t");
    const char *keys[] = {"zeta", "alpha", "Mid", "beta_2", "beta", "_x"};
    for (size_t i = 0; i < 6; i++) {
        CHECK_OK(tsnap_writer_set_attr_string(w, NULL, keys[i], keys[i]));
        CHECK_OK(tsnap_writer_set_attr_string(w, "t", keys[i], keys[i]));
    }
    tsnap_reader *r = commit_and_open(w, path);
    const char *tensors[2] = {NULL, "t"};
    size_t want_count[2] = {4 + 6, 2 + 6};
    for (int k = 0; k < 2; k++) {
        size_t count = 0;
        ctx_set("%s", tensors[k] ? tensors[k] : "(root)");
        CHECK_OK(tsnap_reader_attr_count(r, tensors[k], &count));
        CHECK_I64(count, want_count[k]);
        const char *prev = NULL;
        for (size_t i = 0; i < count; i++) {
            tsnap_attr a, b;
            if (!CHECK_OK(tsnap_reader_attr(r, tensors[k], i, &a)))
                continue;
            CHECK_FATAL(a.key != NULL);
            if (prev)
                CHECK_MSG(strcmp(prev, a.key) < 0, "attribute %zu \"%s\" after \"%s\"", i, a.key,
                          prev);
            prev = a.key;
            if (CHECK_OK(tsnap_reader_attr_find(r, tensors[k], a.key, &b))) {
                CHECK_I64(b.kind, a.kind);
                if (a.kind == TSNAP_ATTR_STRING)
                    CHECK_STR(b.string, a.string);
            }
        }
        tsnap_attr a;
        CHECK_NEG(tsnap_reader_attr(r, tensors[k], count, &a));
    }
    ctx_clear();
    tsnap_reader_free(r);
}

static void test_reader_attribute_calls_on_a_missing_tensor_give_enotfound(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path, NULL);
    put_tensor(w, "t");
    tsnap_reader *r = commit_and_open(w, path);
    size_t count;
    tsnap_attr a;
    CHECK_ERR(tsnap_reader_attr_count(r, "nope", &count), TSNAP_ENOTFOUND);
    CHECK_ERR(tsnap_reader_attr(r, "nope", 0, &a), TSNAP_ENOTFOUND);
    CHECK_ERR(tsnap_reader_attr_find(r, "nope", "tsnap_dtype", &a), TSNAP_ENOTFOUND);
    CHECK_ERR(tsnap_reader_attr_find(r, "t", "nope", &a), TSNAP_ENOTFOUND);
    CHECK_ERR(tsnap_reader_attr_count(r, NULL, NULL), TSNAP_EINVAL);
    CHECK_ERR(tsnap_reader_attr_find(r, NULL, NULL, &a), TSNAP_EINVAL);
    CHECK_ERR(tsnap_reader_attr_find(r, NULL, "producer", NULL), TSNAP_EINVAL);
    CHECK_ERR(tsnap_reader_attr(r, NULL, 0, NULL), TSNAP_EINVAL);
    tsnap_reader_free(r);
}

static void test_tsnap_dtype_attribute_names_every_dtype(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path, NULL);
    unsigned char buf[64] = {0};
    int64_t shape[1] = {3};
    for (int i = 0; i < NDTYPES; i++) {
        DLTensor t = cpu_tensor(buf, DTYPES[i].dtype, 1, shape, NULL, 0);
        CHECK_OK(tsnap_writer_put(w, DTYPES[i].name, &t));
    }
    tsnap_reader *r = commit_and_open(w, path);
    for (int i = 0; i < NDTYPES; i++)
        check_string(r, DTYPES[i].name, "tsnap_dtype", DTYPES[i].name);
    tsnap_reader_free(r);
}

static void test_user_attributes_have_the_documented_hdf5_types(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = new_writer(path, NULL);
    int32_t i32 = 5;
    float f3[3] = {1, 2, 3};
    unsigned char b2[2] = {1, 0};
    int64_t s3[1] = {3}, s2[1] = {2};
    DLTensor t;
    t = cpu_tensor(&i32, TSNAP_INT32, 0, NULL, NULL, 0);
    CHECK_OK(tsnap_writer_set_attr(w, NULL, "i32", &t));
    t = cpu_tensor(f3, TSNAP_FLOAT32, 1, s3, NULL, 0);
    CHECK_OK(tsnap_writer_set_attr(w, NULL, "f32x3", &t));
    t = cpu_tensor(b2, TSNAP_BOOL, 1, s2, NULL, 0);
    CHECK_OK(tsnap_writer_set_attr(w, NULL, "flags", &t));
    CHECK_OK(tsnap_writer_set_attr_string(w, NULL, "note", "ünïcode"));
    CHECK_OK_FATAL(tsnap_writer_commit(w));
    tsnap_writer_free(w);

    hid_t f = h5_open(path);
    CHECK_FATAL(f >= 0);
    hid_t a, ty, sp;

    a = H5Aopen(f, "i32", H5P_DEFAULT);
    ty = H5Aget_type(a);
    sp = H5Aget_space(a);
    CHECK(H5Tequal(ty, H5T_STD_I32LE) > 0);
    CHECK(H5Sget_simple_extent_type(sp) == H5S_SCALAR);
    H5Sclose(sp), H5Tclose(ty), H5Aclose(a);

    a = H5Aopen(f, "f32x3", H5P_DEFAULT);
    ty = H5Aget_type(a);
    sp = H5Aget_space(a);
    hsize_t dims[2] = {0, 0};
    CHECK(H5Tequal(ty, H5T_IEEE_F32LE) > 0);
    CHECK(H5Sget_simple_extent_ndims(sp) == 1);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    CHECK_I64(dims[0], 3);
    H5Sclose(sp), H5Tclose(ty), H5Aclose(a);

    a = H5Aopen(f, "flags", H5P_DEFAULT);
    ty = H5Aget_type(a);
    CHECK(H5Tget_class(ty) == H5T_ENUM);
    H5Tclose(ty), H5Aclose(a);

    a = H5Aopen(f, "note", H5P_DEFAULT);
    ty = H5Aget_type(a);
    sp = H5Aget_space(a);
    CHECK(H5Tget_class(ty) == H5T_STRING);
    CHECK(H5Tis_variable_str(ty) > 0);
    CHECK(H5Tget_cset(ty) == H5T_CSET_UTF8);
    CHECK(H5Sget_simple_extent_type(sp) == H5S_SCALAR);
    H5Sclose(sp), H5Tclose(ty), H5Aclose(a);
    char *note = h5_get_string_attr(f, "note");
    CHECK_STR(note, "ünïcode");
    free(note);
    H5Fclose(f);
}

const test_entry attrs_tests[] = {
    TEST(test_root_records_format_version_created_and_producer),
    TEST(test_created_is_iso8601_utc_with_microseconds_near_now),
    TEST(test_producer_option_is_copied_and_recorded),
    TEST(test_root_numeric_and_string_attributes_read_back),
    TEST(test_dataset_attributes_read_back),
    TEST(test_small_arrays_of_several_dtypes_read_back),
    TEST(test_complex32_and_float8_e4m3fn_attributes_keep_their_bytes),
    TEST(test_attribute_from_a_strided_tensor_stores_its_logical_order),
    TEST(test_step_and_time_are_stored_as_int64_and_float64),
    TEST(test_step_takes_only_an_integer_scalar_and_time_only_a_real_scalar),
    TEST(test_reserved_keys_are_refused_with_einval),
    TEST(test_created_and_producer_are_ordinary_keys_on_datasets),
    TEST(test_setting_an_attribute_again_replaces_it),
    TEST(test_attribute_arrays_up_to_64_kib_are_accepted_and_larger_refused),
    TEST(test_attribute_on_a_tensor_not_yet_put_is_refused),
    TEST(test_attribute_calls_refuse_bad_arguments),
    TEST(test_attributes_are_listed_in_name_order),
    TEST(test_reader_attribute_calls_on_a_missing_tensor_give_enotfound),
    TEST(test_tsnap_dtype_attribute_names_every_dtype),
    TEST(test_user_attributes_have_the_documented_hdf5_types),
    TEST_END,
};

/*
 * test_damaged.c - damaged, foreign and missing files are refused cleanly
 * by tsnap_reader_open: TSNAP_EFORMAT (or TSNAP_ENOTFOUND) with a message
 * naming the file, *out set to NULL, no crash.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

/* A valid snapshot of a few hundred KiB; returns its size. */
static size_t write_valid(const char *path, rng *r)
{
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    int64_t shape[2] = {128, 257};
    size_t n = 128 * 257 * 4;
    unsigned char *buf = alloc_filled(n, 0);
    for (int i = 0; i < 3; i++) {
        rng_fill(r, buf, n);
        DLTensor t = cpu_tensor(buf, TSNAP_FLOAT32, 2, shape, NULL, 0);
        char name[16];
        snprintf(name, sizeof name, "g/t%d", i);
        CHECK_OK(tsnap_writer_put(w, name, &t));
    }
    CHECK_OK(tsnap_writer_set_attr_string(w, NULL, "note", "a valid file"));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    free(buf);
    struct stat st;
    CHECK_FATAL(stat(path, &st) == 0);
    return (size_t)st.st_size;
}

/* tsnap_reader_open(path) fails with `want`, names the file, sets *out NULL. */
static void check_refused(const char *path, int want)
{
    tsnap_reader *r = (tsnap_reader *)&r; /* must become NULL */
    CHECK_ERR(tsnap_reader_open(&r, path), want);
    CHECK(r == NULL);
    CHECK_ERRMSG_HAS(base_name(path));
    CHECK_MSG(strchr(tsnap_errmsg(), '\n') == NULL, "message is not one line: \"%s\"",
              tsnap_errmsg());
}

static void test_truncated_file_is_refused_with_eformat_naming_the_file(void)
{
    rng r;
    rng_init(&r, __func__);
    const char *good = tpath("good.h5");
    size_t size = write_valid(good, &r);
    size_t cuts[] = {size / 2, size - 1, size * 9 / 10, 2048, 100, 8};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        ctx_set("truncated to %zu of %zu bytes", cuts[i], size);
        char name[64];
        snprintf(name, sizeof name, "cut%zu.h5", cuts[i]);
        const char *path = tpath(name);
        size_t n;
        unsigned char *bytes = slurp(good, &n);
        CHECK_FATAL(bytes != NULL && spit(path, bytes, cuts[i]) == 0);
        free(bytes);
        check_refused(path, TSNAP_EFORMAT);
    }
}

static void test_random_bytes_file_is_refused_with_eformat_naming_the_file(void)
{
    rng r;
    rng_init(&r, __func__);
    size_t sizes[] = {1, 7, 512, 4096, 100000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        ctx_set("%zu random bytes", sizes[i]);
        unsigned char *buf = alloc_filled(sizes[i], 0);
        rng_fill(&r, buf, sizes[i]);
        const char *path = tpath("noise.bin");
        CHECK_FATAL(spit(path, buf, sizes[i]) == 0);
        free(buf);
        check_refused(path, TSNAP_EFORMAT);
    }
}

static void test_empty_file_is_refused_with_eformat_naming_the_file(void)
{
    const char *path = tpath("empty.h5");
    CHECK_FATAL(spit(path, "", 0) == 0);
    check_refused(path, TSNAP_EFORMAT);
}

static void test_hdf5_signature_followed_by_garbage_is_refused_with_eformat(void)
{
    rng r;
    rng_init(&r, __func__);
    unsigned char buf[4096];
    for (int k = 0; k < 8; k++) {
        ctx_set("variant %d", k);
        rng_fill(&r, buf, sizeof buf);
        memcpy(buf, "\x89HDF\r\n\x1a\n", 8);
        buf[8] = (unsigned char)(k % 4); /* superblock versions 0-3 */
        const char *path = tpath("garbage.h5");
        CHECK_FATAL(spit(path, buf, sizeof buf) == 0);
        check_refused(path, TSNAP_EFORMAT);
    }
}

static void test_missing_file_gives_enotfound_naming_the_file(void)
{
    check_refused(tpath("no-such-file.h5"), TSNAP_ENOTFOUND);
    check_refused(tpath("no-such-dir/snap.h5"), TSNAP_ENOTFOUND);
}

static void test_a_directory_is_refused_cleanly(void)
{
    tsnap_reader *r = (tsnap_reader *)&r;
    CHECK_NEG(tsnap_reader_open(&r, tdir()));
    CHECK(r == NULL);
}

static void test_file_claiming_a_newer_tsnap_format_is_refused_with_eformat(void)
{
    const char *path = tpath("future.h5");
    hid_t f = h5_create(path);
    CHECK_FATAL(f >= 0);
    CHECK(h5_put_string_attr(f, "tsnap_format", "tsnap") == 0);
    CHECK(h5_put_i64_attr(f, "tsnap_version", TSNAP_FORMAT_VERSION + 1) == 0);
    int32_t v[4] = {1, 2, 3, 4};
    hsize_t shape[1] = {4};
    CHECK(h5_put_dataset(f, "v", H5T_STD_I32LE, 1, shape, H5P_DEFAULT, H5T_NATIVE_INT32, v) == 0);
    H5Fclose(f);
    check_refused(path, TSNAP_EFORMAT);
}

static void test_file_of_the_current_tsnap_format_written_by_hdf5_opens(void)
{
    const char *path = tpath("current.h5");
    hid_t f = h5_create(path);
    CHECK_FATAL(f >= 0);
    CHECK(h5_put_string_attr(f, "tsnap_format", "tsnap") == 0);
    CHECK(h5_put_i64_attr(f, "tsnap_version", TSNAP_FORMAT_VERSION) == 0);
    H5Fclose(f);
    tsnap_reader *r = NULL;
    CHECK_OK(tsnap_reader_open(&r, path));
    if (r)
        CHECK_I64(tsnap_reader_format_version(r), TSNAP_FORMAT_VERSION);
    tsnap_reader_free(r);
}

/* A dataset whose `tsnap_dtype` attribute contradicts its HDF5 type is
 * `want`, at open or when it is described and read. */
static void check_contradiction(const char *file, const char *attr, int want)
{
    const char *path = tpath(file);
    hid_t f = h5_create(path);
    CHECK_FATAL(f >= 0);
    int32_t v[4] = {1, 2, 3, 4};
    hsize_t shape[1] = {4};
    CHECK(h5_put_dataset(f, "v", H5T_STD_I32LE, 1, shape, H5P_DEFAULT, H5T_NATIVE_INT32, v) == 0);
    hid_t d = H5Dopen2(f, "v", H5P_DEFAULT);
    CHECK(h5_put_string_attr(d, "tsnap_dtype", attr) == 0);
    H5Dclose(d);
    H5Fclose(f);

    ctx_set("int32 dataset labelled \"%s\"", attr);
    tsnap_reader *r = NULL;
    int rc = tsnap_reader_open(&r, path);
    if (rc == want) {
        CHECK_ERR(rc, want);
        return;
    }
    CHECK_OK(rc);
    if (!r)
        return;
    tsnap_tensor_info info;
    CHECK_ERR(tsnap_reader_describe(r, "v", &info), want);
    CHECK_ERRMSG_HAS("v");
    int32_t got[4];
    int64_t gs[1] = {4};
    DLTensor dst = cpu_tensor(got, TSNAP_INT32, 1, gs, NULL, 0);
    CHECK_ERR(tsnap_reader_read(r, "v", NULL, NULL, NULL, &dst), want);
    tsnap_reader_free(r);
}

static void test_tsnap_dtype_attribute_contradicting_the_hdf5_type_is_eformat(void)
{
    check_contradiction("liar.h5", "float32", TSNAP_EFORMAT);
    check_contradiction("liar2.h5", "uint32", TSNAP_EFORMAT);
    check_contradiction("liar3.h5", "int64", TSNAP_EFORMAT);
}

static void test_tsnap_dtype_attribute_naming_an_unknown_dtype_is_etype(void)
{
    /* perhaps a newer tsnap's dtype: one this library cannot represent */
    check_contradiction("unknown.h5", "float7", TSNAP_ETYPE);
}

const test_entry damaged_tests[] = {
    TEST(test_truncated_file_is_refused_with_eformat_naming_the_file),
    TEST(test_random_bytes_file_is_refused_with_eformat_naming_the_file),
    TEST(test_empty_file_is_refused_with_eformat_naming_the_file),
    TEST(test_hdf5_signature_followed_by_garbage_is_refused_with_eformat),
    TEST(test_missing_file_gives_enotfound_naming_the_file),
    TEST(test_a_directory_is_refused_cleanly),
    TEST(test_file_claiming_a_newer_tsnap_format_is_refused_with_eformat),
    TEST(test_file_of_the_current_tsnap_format_written_by_hdf5_opens),
    TEST(test_tsnap_dtype_attribute_contradicting_the_hdf5_type_is_eformat),
    TEST(test_tsnap_dtype_attribute_naming_an_unknown_dtype_is_etype),
    TEST_END,
};

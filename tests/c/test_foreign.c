/*
 * test_foreign.c - HDF5 files other programs write, made here with HDF5's
 * own calls: chunks never written read as the fill value (whole, in
 * hyperslabs, verified), enums load as their integer type with their
 * members, bitfields as unsigned integers, and a filter HDF5 has not got
 * is TSNAP_ENOFILTER naming it.
 */
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "testutil.h"

#define N 40
#define CHUNK 8

/* A 1-d dataset of N int32 in chunks of CHUNK, deflated when `deflate`,
 * with fill value `fill`, of which only elements [lo, hi) are written. */
static void write_partial(hid_t file, const char *name, int deflate, int32_t fill, int lo, int hi,
                          const int32_t *data)
{
    hsize_t dims[1] = {N}, chunk[1] = {CHUNK}, start[1] = {(hsize_t)lo},
            count[1] = {(hsize_t)(hi - lo)};
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), space = H5Screate_simple(1, dims, NULL);
    CHECK_FATAL(dcpl >= 0 && space >= 0);
    CHECK(H5Pset_chunk(dcpl, 1, chunk) >= 0);
    if (deflate)
        CHECK(H5Pset_deflate(dcpl, 4) >= 0);
    CHECK(H5Pset_fill_value(dcpl, H5T_NATIVE_INT32, &fill) >= 0);
    CHECK(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_INCR) >= 0);
    hid_t d = H5Dcreate2(file, name, H5T_STD_I32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    CHECK_FATAL(d >= 0);
    hid_t mspace = H5Screate_simple(1, count, NULL);
    CHECK(H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL) >= 0);
    CHECK(H5Dwrite(d, H5T_NATIVE_INT32, mspace, space, H5P_DEFAULT, data) >= 0);
    H5Sclose(mspace);
    H5Dclose(d);
    H5Sclose(space);
    H5Pclose(dcpl);
}

static void test_unwritten_chunks_read_as_the_fill_value(void)
{
    const char *path = tpath("partial.h5");
    int32_t data[N], got[N], want[N];
    rng r;
    rng_init(&r, __func__);
    rng_fill(&r, data, sizeof data);
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CHECK_FATAL(file >= 0);
    write_partial(file, "deflate", 1, -77, 10, 19, data);
    write_partial(file, "plain", 0, 12345, 30, 33, data);
    H5Fclose(file);

    tsnap_reader *rd = NULL;
    CHECK_OK_FATAL(tsnap_reader_open(&rd, path));
    for (int k = 0; k < 2; k++) {
        const char *name = k ? "plain" : "deflate";
        int lo = k ? 30 : 10, hi = k ? 33 : 19;
        ctx_set("%s", name);
        for (int i = 0; i < N; i++)
            want[i] = i >= lo && i < hi ? data[i - lo] : (k ? 12345 : -77);
        int64_t shape[1] = {N};
        DLTensor t = {got, {kDLCPU, 0}, 1, {kDLInt, 32, 1}, shape, NULL, 0};
        memset(got, 0xab, sizeof got);
        CHECK_OK(tsnap_reader_read(rd, name, NULL, NULL, NULL, &t));
        CHECK_MEM(got, want, sizeof want, "whole");
        /* a hyperslab with a step across written and unwritten chunks */
        int64_t start[1] = {3}, count[1] = {12}, step[1] = {3}, sub[1] = {12};
        DLTensor s = {got, {kDLCPU, 0}, 1, {kDLInt, 32, 1}, sub, NULL, 0};
        CHECK_OK(tsnap_reader_read(rd, name, start, count, step, &s));
        for (int i = 0; i < 12; i++)
            CHECK_I64(got[i], want[3 + 3 * i]);
        CHECK_OK(tsnap_reader_read_verified(rd, name, &t));
        CHECK_OK(tsnap_reader_verify(rd, name));
        tsnap_tensor_info info;
        CHECK_OK(tsnap_reader_describe(rd, name, &info));
        CHECK(info.map_status != TSNAP_MAP_OK);
        if (k)
            CHECK_I64(info.map_status, TSNAP_MAP_NOT_ALLOCATED);
        ctx_clear();
    }
    tsnap_reader_free(rd);
}

static hid_t enum_over(hid_t base)
{
    hid_t e = H5Tenum_create(base);
    long long values[3] = {-5, 0, 300};
    const char *names[3] = {"LOW", "ZERO", "HIGH"};
    for (int i = 0; i < 3; i++) {
        unsigned char raw[8];
        long long v = values[i];
        memcpy(raw, &v, sizeof v);
        CHECK(H5Tconvert(H5T_NATIVE_LLONG, base, 1, raw, NULL, H5P_DEFAULT) >= 0);
        CHECK(H5Tenum_insert(e, names[i], raw) >= 0);
    }
    return e;
}

static void test_enums_and_bitfields_load_as_integers(void)
{
    const char *path = tpath("enum.h5");
    hsize_t dims[1] = {4};
    int16_t evals[4] = {300, -5, 0, 300};
    uint32_t bits[4] = {0, 1, 0xdeadbeef, 0x80000000u};
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t ebe = enum_over(H5T_STD_I16BE), ene = enum_over(H5T_NATIVE_INT16);
    hid_t d = H5Dcreate2(file, "enum_be", ebe, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(d >= 0 && H5Dwrite(d, ene, H5S_ALL, H5S_ALL, H5P_DEFAULT, evals) >= 0);
    H5Dclose(d);
    d = H5Dcreate2(file, "bits_be", H5T_STD_B32BE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(d >= 0 && H5Dwrite(d, H5T_NATIVE_B32, H5S_ALL, H5S_ALL, H5P_DEFAULT, bits) >= 0);
    H5Dclose(d);
    H5Tclose(ebe);
    H5Tclose(ene);
    H5Sclose(space);
    H5Fclose(file);

    tsnap_reader *rd = NULL;
    tsnap_tensor_info info;
    const tsnap_enum_member *m = NULL;
    size_t n = 0;
    CHECK_OK_FATAL(tsnap_reader_open(&rd, path));
    CHECK_OK(tsnap_reader_describe(rd, "enum_be", &info));
    CHECK_I64(info.dtype, TSNAP_INT16);
    CHECK_OK(tsnap_reader_enum(rd, "enum_be", &m, &n));
    CHECK_I64(n, 3);
    for (size_t i = 0; i < n; i++) {
        long long want = !strcmp(m[i].name, "LOW") ? -5 : !strcmp(m[i].name, "ZERO") ? 0 : 300;
        CHECK_MSG(!strcmp(m[i].name, "LOW") || !strcmp(m[i].name, "ZERO") ||
                      !strcmp(m[i].name, "HIGH"),
                  "member %s", m[i].name);
        CHECK_I64(m[i].value, want);
    }
    int16_t e[4];
    int64_t shape[1] = {4};
    DLTensor t = {e, {kDLCPU, 0}, 1, {kDLInt, 16, 1}, shape, NULL, 0};
    CHECK_OK(tsnap_reader_read(rd, "enum_be", NULL, NULL, NULL, &t));
    CHECK_MEM(e, evals, sizeof evals, "enum values");

    uint32_t b[4];
    DLTensor u = {b, {kDLCPU, 0}, 1, {kDLUInt, 32, 1}, shape, NULL, 0};
    CHECK_OK(tsnap_reader_describe(rd, "bits_be", &info));
    CHECK_I64(info.dtype, TSNAP_UINT32);
    CHECK_OK(tsnap_reader_read(rd, "bits_be", NULL, NULL, NULL, &u));
    CHECK_MEM(b, bits, sizeof bits, "bitfield values");
    CHECK_OK(tsnap_reader_enum(rd, "bits_be", &m, &n));
    CHECK_I64(n, 0);
    CHECK_ERR(tsnap_reader_enum(rd, "nope", &m, &n), TSNAP_ENOTFOUND);
    tsnap_reader_free(rd);
}

static void test_a_filter_hdf5_has_not_got_is_enofilter_naming_it(void)
{
    const char *path = tpath("filter.h5");
    hsize_t dims[1] = {N}, chunk[1] = {CHUNK};
    int32_t data[N];
    unsigned cd[1] = {0};
    for (int i = 0; i < N; i++)
        data[i] = i * 7;
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), space = H5Screate_simple(1, dims, NULL);
    CHECK(H5Pset_chunk(dcpl, 1, chunk) >= 0);
    /* an optional filter HDF5 lacks: HDF5 writes the chunks without it */
    CHECK(H5Pset_filter(dcpl, 32123, H5Z_FLAG_OPTIONAL, 1, cd) >= 0);
    hid_t d = H5Dcreate2(file, "odd", H5T_STD_I32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    CHECK_FATAL(d >= 0);
    CHECK(H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Fclose(file);
    H5Eclear2(H5E_DEFAULT);

    tsnap_reader *rd = NULL;
    int32_t got[N];
    int64_t shape[1] = {N};
    DLTensor t = {got, {kDLCPU, 0}, 1, {kDLInt, 32, 1}, shape, NULL, 0};
    tsnap_tensor_info info;
    CHECK_OK_FATAL(tsnap_reader_open(&rd, path));
    CHECK_OK(tsnap_reader_describe(rd, "odd", &info)); /* described: ls shows it */
    CHECK_I64(info.nfilters, 1);
    CHECK_I64(info.filters[0], 32123);
    CHECK_ERR(tsnap_reader_read(rd, "odd", NULL, NULL, NULL, &t), TSNAP_ENOFILTER);
    CHECK_ERRMSG_HAS("filter.h5");
    CHECK_ERRMSG_HAS("'odd'");
    CHECK_ERRMSG_HAS("32123");
    CHECK_ERRMSG_HAS("HDF5_PLUGIN_PATH");
    CHECK_OK(tsnap_reader_verify(rd, "odd")); /* no checksum recorded: nothing read */
    tsnap_reader_free(rd);
    CHECK_STR(tsnap_strerror(TSNAP_ENOFILTER), "HDF5 filter not available");
}

static void test_filter_names_are_the_registered_ones(void)
{
    static const struct {
        int id;
        const char *name;
    } want[] = {{1, "deflate"},     {2, "shuffle"},      {3, "fletcher32"}, {4, "szip"},
                {5, "nbit"},        {6, "scaleoffset"},  {307, "bzip2"},    {32000, "lzf"},
                {32001, "blosc"},   {32004, "lz4"},      {32008, "bitshuffle"},
                {32013, "zfp"},     {32015, "zstd"},     {32017, "sz"},     {32026, "blosc2"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK_STR(tsnap_filter_name(want[i].id), want[i].name);
    CHECK(tsnap_filter_name(0) == NULL);
    CHECK(tsnap_filter_name(32123) == NULL);
    CHECK_ERR(tsnap_plugin_path_append(NULL), TSNAP_EINVAL);
    CHECK_ERR(tsnap_plugin_path_append(""), TSNAP_EINVAL);
    /* kept until a filter is missing; a directory that is gone then is skipped */
    CHECK_OK(tsnap_plugin_path_append(tpath("plugins")));
    CHECK_OK(tsnap_plugin_path_append(tpath("plugins"))); /* once only */
}

const test_entry foreign_tests[] = {
    TEST(test_unwritten_chunks_read_as_the_fill_value),
    TEST(test_enums_and_bitfields_load_as_integers),
    TEST(test_a_filter_hdf5_has_not_got_is_enofilter_naming_it),
    TEST(test_filter_names_are_the_registered_ones),
    TEST_END,
};

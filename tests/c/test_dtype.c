/* test_dtype.c - the dtype API: names, sizes and DLPack codes both ways. */
#include <stddef.h>
#include <string.h>

#include "testutil.h"

static void test_every_dtype_has_its_canonical_name_both_ways(void)
{
    for (int i = 0; i < NDTYPES; i++) {
        ctx_set("%s", DTYPES[i].name);
        CHECK_STR(tsnap_dtype_name(DTYPES[i].dtype), DTYPES[i].name);
        tsnap_dtype got = TSNAP_DTYPE_INVALID;
        CHECK_OK(tsnap_dtype_from_name(&got, DTYPES[i].name));
        CHECK_I64(got, DTYPES[i].dtype);
    }
}

static void test_every_dtype_has_its_element_size(void)
{
    for (int i = 0; i < NDTYPES; i++) {
        ctx_set("%s", DTYPES[i].name);
        CHECK_I64(tsnap_dtype_size(DTYPES[i].dtype), DTYPES[i].size);
    }
}

static void test_every_dtype_maps_to_its_dlpack_type_both_ways(void)
{
    for (int i = 0; i < NDTYPES; i++) {
        ctx_set("%s", DTYPES[i].name);
        DLDataType dl = {99, 99, 99};
        CHECK_OK(tsnap_dtype_to_dlpack(&dl, DTYPES[i].dtype));
        CHECK_I64(dl.code, DTYPES[i].code);
        CHECK_I64(dl.bits, DTYPES[i].bits);
        CHECK_I64(dl.lanes, 1);
        DLDataType in = {DTYPES[i].code, DTYPES[i].bits, 1};
        tsnap_dtype got = TSNAP_DTYPE_INVALID;
        CHECK_OK(tsnap_dtype_from_dlpack(&got, in));
        CHECK_I64(got, DTYPES[i].dtype);
    }
}

static void test_dtype_codes_are_the_fixed_values(void)
{
    /* The header promises the values are fixed forever. */
    CHECK_I64(TSNAP_DTYPE_COUNT, 19);
    for (int i = 0; i < NDTYPES; i++)
        CHECK_I64(DTYPES[i].dtype, i + 1);
}

static void test_invalid_dtypes_have_no_name_size_or_dlpack_type(void)
{
    tsnap_dtype bad[] = {TSNAP_DTYPE_INVALID, (tsnap_dtype)TSNAP_DTYPE_COUNT, (tsnap_dtype)-1,
                         (tsnap_dtype)1000};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ctx_set("dtype %d", (int)bad[i]);
        CHECK(tsnap_dtype_name(bad[i]) == NULL);
        CHECK_I64(tsnap_dtype_size(bad[i]), 0);
        DLDataType dl;
        CHECK_ERR(tsnap_dtype_to_dlpack(&dl, bad[i]), TSNAP_EINVAL);
    }
}

static void test_unknown_dtype_names_are_refused_with_etype(void)
{
    const char *bad[] = {"", "float", "Float32", "float32 ", " float32", "int128", "complex256",
                         "bool8", "float8", "float8_e4m3", "bfloat", "f4", "<f4"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ctx_set("name \"%s\"", bad[i]);
        tsnap_dtype got = TSNAP_FLOAT32;
        CHECK_ERR(tsnap_dtype_from_name(&got, bad[i]), TSNAP_ETYPE);
    }
}

static void test_dtype_calls_refuse_null_pointers(void)
{
    tsnap_dtype got;
    DLDataType dl = {kDLFloat, 32, 1};
    CHECK_ERR(tsnap_dtype_from_name(NULL, "float32"), TSNAP_EINVAL);
    CHECK_ERR(tsnap_dtype_from_name(&got, NULL), TSNAP_EINVAL);
    CHECK_ERR(tsnap_dtype_from_dlpack(NULL, dl), TSNAP_EINVAL);
    CHECK_ERR(tsnap_dtype_to_dlpack(NULL, TSNAP_FLOAT32), TSNAP_EINVAL);
}

static void test_dlpack_types_without_a_tsnap_dtype_are_refused_with_etype(void)
{
    const DLDataType bad[] = {
        {kDLFloat, 24, 1},  {kDLFloat, 32, 2},  {kDLFloat, 32, 0},  {kDLFloat, 8, 1},
        {kDLFloat, 128, 1}, {kDLInt, 7, 1},     {kDLInt, 128, 1},   {kDLInt, 4, 1},
        {kDLUInt, 12, 1},   {kDLUInt, 4, 1},    {kDLInt, 32, 4},    {kDLOpaqueHandle, 64, 1},
        {kDLBfloat, 32, 1}, {kDLBfloat, 8, 1},  {kDLComplex, 16, 1}, {kDLComplex, 8, 1},
        {kDLComplex, 64, 2}, {TSNAP_DL_BOOL, 1, 1}, {TSNAP_DL_BOOL, 16, 1},
        {TSNAP_DL_FLOAT8_E4M3FN, 16, 1}, {TSNAP_DL_FLOAT8_E5M2, 16, 1}, {7, 8, 1},
        {200, 32, 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ctx_set("code %d bits %d lanes %d", bad[i].code, bad[i].bits, bad[i].lanes);
        tsnap_dtype got = TSNAP_FLOAT32;
        CHECK_ERR(tsnap_dtype_from_dlpack(&got, bad[i]), TSNAP_ETYPE);
    }
}

static void test_version_string_is_the_header_version(void)
{
    CHECK_STR(tsnap_version(), TSNAP_VERSION_STRING);
    CHECK_I64(TSNAP_FORMAT_VERSION, 1);
}

static void test_strerror_describes_every_code(void)
{
    for (int code = TSNAP_ESTATE; code <= TSNAP_OK; code++) {
        ctx_set("code %d", code);
        const char *s = tsnap_strerror(code);
        CHECK(s != NULL && s[0] != '\0');
    }
    for (int a = TSNAP_ESTATE; a < TSNAP_OK; a++)
        for (int b = a + 1; b < TSNAP_OK; b++)
            CHECK_MSG(strcmp(tsnap_strerror(a), tsnap_strerror(b)) != 0,
                      "codes %d and %d share the description \"%s\"", a, b, tsnap_strerror(a));
    ctx_clear();
    CHECK(tsnap_strerror(-1000) != NULL);
    CHECK(tsnap_strerror(7) != NULL);
    CHECK(tsnap_errmsg() != NULL);
}

static void test_map_status_str_describes_every_status(void)
{
    for (int s = TSNAP_MAP_OK; s <= TSNAP_MAP_TRUNCATED; s++) {
        ctx_set("status %d", s);
        const char *str = tsnap_map_status_str((tsnap_map_status)s);
        CHECK(str != NULL && str[0] != '\0');
    }
    ctx_clear();
    CHECK(tsnap_map_status_str((tsnap_map_status)1000) != NULL);
}

static void test_write_options_init_gives_the_documented_defaults(void)
{
    tsnap_write_options o;
    memset(&o, 0x5a, sizeof o);
    CHECK_OK(tsnap_write_options_init(&o, TSNAP_WRITE_OPTIONS_VERSION));
    CHECK_I64(o.version, TSNAP_WRITE_OPTIONS_VERSION);
    CHECK_I64(o.codec, TSNAP_CODEC_NONE);
    CHECK_I64(o.level, 0);
    CHECK_I64(o.shuffle, -1);
    CHECK_I64(o.chunk_bytes, 0);
    CHECK_I64(o.checksum, 1);
    CHECK_I64(o.durable, 1);
    CHECK_I64(o.overwrite, 1);
    CHECK(o.producer == NULL);
    CHECK_I64(o.threads, 0);

    tsnap_write_options init = TSNAP_WRITE_OPTIONS_INIT;
    CHECK_I64(init.version, o.version);
    CHECK_I64(init.shuffle, o.shuffle);
    CHECK_I64(init.checksum, o.checksum);
    CHECK_I64(init.durable, o.durable);
    CHECK_I64(init.overwrite, o.overwrite);
}

/* A program built against version 1 of the struct (which ends before
 * `threads`) keeps working: init fills only its fields. */
static void test_write_options_init_of_version_1_writes_only_the_version_1_fields(void)
{
    struct {
        tsnap_write_options o;
        unsigned char guard[64];
    } v;
    memset(&v, 0x5a, sizeof v);
    CHECK_OK(tsnap_write_options_init(&v.o, 1));
    CHECK_I64(v.o.version, 1);
    CHECK_I64(v.o.checksum, 1);
    CHECK_I64(v.o.shuffle, -1);
    const unsigned char *after = (const unsigned char *)&v.o.threads;
    size_t rest = sizeof v - offsetof(tsnap_write_options, threads);
    for (size_t i = 0; i < rest; i++)
        CHECK_MSG(after[i] == 0x5a, "byte %zu after the version 1 fields was written", i);
}

static void test_threads_are_settable_within_1_to_256_and_0_restores_the_default(void)
{
    int def = tsnap_threads();
    CHECK(def >= 1 && def <= 256);
    CHECK_OK(tsnap_set_threads(7));
    CHECK_I64(tsnap_threads(), 7);
    CHECK_ERR(tsnap_set_threads(-1), TSNAP_EINVAL);
    CHECK_ERR(tsnap_set_threads(257), TSNAP_EINVAL);
    CHECK_I64(tsnap_threads(), 7);
    CHECK_OK(tsnap_set_threads(0));
    CHECK_I64(tsnap_threads(), def);
}

static void test_write_options_init_refuses_an_unknown_version(void)
{
    tsnap_write_options o;
    CHECK_ERR(tsnap_write_options_init(&o, 0), TSNAP_EINVAL);
    CHECK_ERR(tsnap_write_options_init(&o, TSNAP_WRITE_OPTIONS_VERSION + 1), TSNAP_EINVAL);
    CHECK_ERR(tsnap_write_options_init(NULL, TSNAP_WRITE_OPTIONS_VERSION), TSNAP_EINVAL);
}

const test_entry dtype_tests[] = {
    TEST(test_every_dtype_has_its_canonical_name_both_ways),
    TEST(test_every_dtype_has_its_element_size),
    TEST(test_every_dtype_maps_to_its_dlpack_type_both_ways),
    TEST(test_dtype_codes_are_the_fixed_values),
    TEST(test_invalid_dtypes_have_no_name_size_or_dlpack_type),
    TEST(test_unknown_dtype_names_are_refused_with_etype),
    TEST(test_dtype_calls_refuse_null_pointers),
    TEST(test_dlpack_types_without_a_tsnap_dtype_are_refused_with_etype),
    TEST(test_version_string_is_the_header_version),
    TEST(test_strerror_describes_every_code),
    TEST(test_map_status_str_describes_every_status),
    TEST(test_write_options_init_gives_the_documented_defaults),
    TEST(test_write_options_init_refuses_an_unknown_version),
    TEST(test_write_options_init_of_version_1_writes_only_the_version_1_fields),
    TEST(test_threads_are_settable_within_1_to_256_and_0_restores_the_default),
    TEST_END,
};

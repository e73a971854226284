/*
 * test_names.c - tensors named with '/' nest in groups and read back;
 * the reader lists every dataset at any depth by full name in byte order;
 * a missing name (or a group) is TSNAP_ENOTFOUND everywhere.
 */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Writes an int32 tensor of 3 values (seeded by its index) per name. */
static void write_named(const char *path, const char **names, size_t n)
{
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    for (size_t i = 0; i < n; i++) {
        int32_t v[3] = {(int32_t)i, (int32_t)(i * 100), -(int32_t)i};
        int64_t shape[1] = {3};
        DLTensor t = cpu_tensor(v, TSNAP_INT32, 1, shape, NULL, 0);
        ctx_set("%s", names[i]);
        CHECK_OK(tsnap_writer_put(w, names[i], &t));
    }
    ctx_clear();
    CHECK_OK_FATAL(tsnap_writer_commit(w));
    tsnap_writer_free(w);
}

static void check_value(tsnap_reader *r, const char *name, size_t i)
{
    int32_t want[3] = {(int32_t)i, (int32_t)(i * 100), -(int32_t)i}, got[3] = {0, 0, 0};
    int64_t shape[1] = {3};
    DLTensor dst = cpu_tensor(got, TSNAP_INT32, 1, shape, NULL, 0);
    ctx_set("%s", name);
    if (CHECK_OK(tsnap_reader_read(r, name, NULL, NULL, NULL, &dst)))
        CHECK_MEM(got, want, sizeof want, "values");
    ctx_clear();
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void test_nested_names_create_groups_and_read_back(void)
{
    const char *path = tpath("snap.h5");
    const char *names[] = {"a/b/c", "a/b/d", "a/x", "z", "deep/er/and/deeper/still/leaf"};
    write_named(path, names, 5);
    tsnap_reader *r = open_reader(path);
    for (size_t i = 0; i < 5; i++)
        check_value(r, names[i], i);
    tsnap_reader_free(r);

    /* in HDF5: a and a/b are groups, a/b/c a dataset */
    hid_t f = h5_open(path);
    CHECK_FATAL(f >= 0);
    H5O_info_t oi;
    CHECK(H5Oget_info_by_name2(f, "a", &oi, H5O_INFO_BASIC, H5P_DEFAULT) >= 0 &&
          oi.type == H5O_TYPE_GROUP);
    CHECK(H5Oget_info_by_name2(f, "a/b", &oi, H5O_INFO_BASIC, H5P_DEFAULT) >= 0 &&
          oi.type == H5O_TYPE_GROUP);
    CHECK(H5Oget_info_by_name2(f, "a/b/c", &oi, H5O_INFO_BASIC, H5P_DEFAULT) >= 0 &&
          oi.type == H5O_TYPE_DATASET);
    H5Fclose(f);
}

static void test_listing_is_sorted_by_full_name_bytes(void)
{
    /* A depth-first walk in per-group name order would list "a/b" before
     * "a.b"; sorting full names by bytes puts '.' (0x2e) before '/' (0x2f). */
    const char *path = tpath("snap.h5");
    const char *names[] = {"a0", "a/b", "a.b", "A", "b", "a/a/z", "a/a-", "_", "Z/9", "é"};
    size_t n = sizeof names / sizeof names[0];
    write_named(path, names, n);
    const char *sorted[sizeof names / sizeof names[0]];
    memcpy(sorted, names, sizeof names);
    qsort(sorted, n, sizeof sorted[0], cmp_str);
    tsnap_reader *r = open_reader(path);
    CHECK_I64(tsnap_reader_count(r), n);
    for (size_t i = 0; i < n; i++) {
        ctx_set("index %zu", i);
        CHECK_STR(tsnap_reader_name(r, i), sorted[i]);
    }
    ctx_clear();
    CHECK(tsnap_reader_name(r, n) == NULL);
    for (size_t i = 0; i < n; i++)
        check_value(r, names[i], i);
    tsnap_reader_free(r);
}

static void test_names_with_spaces_utf8_and_dots_inside_round_trip(void)
{
    const char *path = tpath("snap.h5");
    const char *names[] = {"with space", "température/été", ".hidden", "a/.b", "a/...", "x.y.z",
                           "trailing.", "-dash", "semi;colon"};
    size_t n = sizeof names / sizeof names[0];
    write_named(path, names, n);
    tsnap_reader *r = open_reader(path);
    CHECK_I64(tsnap_reader_count(r), n);
    for (size_t i = 0; i < n; i++)
        check_value(r, names[i], i);
    tsnap_reader_free(r);
}

static void test_missing_tensor_name_gives_enotfound(void)
{
    const char *path = tpath("snap.h5");
    const char *names[] = {"g/t"};
    write_named(path, names, 1);
    tsnap_reader *r = open_reader(path);
    const char *missing[] = {"nope", "g", "g/t/u", "g/x", "G/t", "g/t "};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        ctx_set("name \"%s\"", missing[i]);
        tsnap_tensor_info info;
        int32_t buf[3];
        int64_t shape[1] = {3};
        DLTensor dst = cpu_tensor(buf, TSNAP_INT32, 1, shape, NULL, 0);
        tsnap_mapping *m = (tsnap_mapping *)&m;
        size_t count;
        CHECK_ERR(tsnap_reader_describe(r, missing[i], &info), TSNAP_ENOTFOUND);
        CHECK_ERRMSG_HAS(missing[i]);
        CHECK_ERR(tsnap_reader_read(r, missing[i], NULL, NULL, NULL, &dst), TSNAP_ENOTFOUND);
        CHECK_ERR(tsnap_reader_verify(r, missing[i]), TSNAP_ENOTFOUND);
        CHECK_ERR(tsnap_mapping_create(&m, r, missing[i]), TSNAP_ENOTFOUND);
        CHECK(m == NULL);
        /* a group has attributes too (tsnap_pytype): "g" has none */
        if (strcmp(missing[i], "g") == 0) {
            CHECK_OK(tsnap_reader_attr_count(r, missing[i], &count));
            CHECK_I64(count, 0);
        } else {
            CHECK_ERR(tsnap_reader_attr_count(r, missing[i], &count), TSNAP_ENOTFOUND);
        }
    }
    ctx_clear();
    check_value(r, "g/t", 0);
    tsnap_reader_free(r);
}

static void test_reader_lists_datasets_at_any_depth_in_a_foreign_file(void)
{
    /* groups and datasets made by HDF5 directly, with no tsnap attributes */
    const char *path = tpath("foreign.h5");
    hid_t f = h5_create(path);
    CHECK_FATAL(f >= 0);
    hid_t g1 = H5Gcreate2(f, "outer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g2 = H5Gcreate2(g1, "inner", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g3 = H5Gcreate2(f, "empty_group", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int32_t v[3] = {0, 0, 0};
    hsize_t shape[1] = {3};
    CHECK(h5_put_dataset(g2, "leaf", H5T_STD_I32LE, 1, shape, H5P_DEFAULT, H5T_NATIVE_INT32, v) == 0);
    v[0] = 1, v[1] = 100, v[2] = -1;
    CHECK(h5_put_dataset(g1, "mid", H5T_STD_I32LE, 1, shape, H5P_DEFAULT, H5T_NATIVE_INT32, v) == 0);
    v[0] = 2, v[1] = 200, v[2] = -2;
    CHECK(h5_put_dataset(f, "top", H5T_STD_I32LE, 1, shape, H5P_DEFAULT, H5T_NATIVE_INT32, v) == 0);
    H5Gclose(g3), H5Gclose(g2), H5Gclose(g1), H5Fclose(f);

    tsnap_reader *r = open_reader(path);
    CHECK_I64(tsnap_reader_format_version(r), 0);
    CHECK_I64(tsnap_reader_count(r), 3);
    CHECK_STR(tsnap_reader_name(r, 0), "outer/inner/leaf");
    CHECK_STR(tsnap_reader_name(r, 1), "outer/mid");
    CHECK_STR(tsnap_reader_name(r, 2), "top");
    check_value(r, "outer/inner/leaf", 0);
    check_value(r, "outer/mid", 1);
    check_value(r, "top", 2);
    CHECK_OK(tsnap_reader_verify(r, NULL)); /* no checksums: passes */
    tsnap_reader_free(r);
}

const test_entry names_tests[] = {
    TEST(test_nested_names_create_groups_and_read_back),
    TEST(test_listing_is_sorted_by_full_name_bytes),
    TEST(test_names_with_spaces_utf8_and_dots_inside_round_trip),
    TEST(test_missing_tensor_name_gives_enotfound),
    TEST(test_reader_lists_datasets_at_any_depth_in_a_foreign_file),
    TEST_END,
};

/*
 * test_strings.c - single string datasets, groups and tsnap_pytype as the
 * writer stores them (checked with HDF5 itself) and the reader reads them,
 * foreign strings of every padding and character set, and the errno a
 * failed system call leaves for tsnap_errno().
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

/* Reads string `name` whole into a malloc'ed buffer (NUL added). */
static char *read_string(tsnap_reader *r, const char *name, size_t *len, tsnap_string_kind *kind)
{
    size_t n = 0, got = 0;
    char *buf;
    if (!CHECK_OK(tsnap_reader_read_string(r, name, NULL, 0, &n, kind)))
        return NULL;
    buf = calloc(1, n + 1);
    CHECK_FATAL(buf != NULL);
    CHECK_OK(tsnap_reader_read_string(r, name, buf, n, &got, kind));
    CHECK_I64(got, n);
    *len = n;
    return buf;
}

static void check_string(tsnap_reader *r, const char *name, const void *want, size_t want_len,
                         tsnap_string_kind want_kind)
{
    tsnap_string_kind kind = TSNAP_STRING_NONE;
    size_t len = 0;
    ctx_set("%s", name);
    char *got = read_string(r, name, &len, &kind);
    if (got) {
        CHECK_I64(len, want_len);
        if (len == want_len)
            CHECK_MEM(got, want, len, "string bytes");
        CHECK_I64(kind, want_kind);
    }
    free(got);
    ctx_clear();
}

static void test_strings_round_trip_and_are_what_h5py_writes(void)
{
    const char *path = tpath("s.h5");
    const char text[] = "h\xc3\xa9llo, \xe4\xb8\xad \xf0\x9f\x99\x82";
    const unsigned char raw[] = {0, 1, 0xff, 'a', 0, 0};
    rng r;
    unsigned char blob[300];
    tsnap_writer *w = NULL;

    rng_init(&r, __func__);
    rng_fill(&r, blob, sizeof blob);
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_OK(tsnap_writer_put_string(w, "text", text, strlen(text), TSNAP_STRING_UTF8));
    CHECK_OK(tsnap_writer_put_string(w, "g/raw", (const char *)raw, sizeof raw,
                                     TSNAP_STRING_BYTES));
    CHECK_OK(tsnap_writer_put_string(w, "g/blob", (const char *)blob, sizeof blob,
                                     TSNAP_STRING_BYTES));
    CHECK_OK(tsnap_writer_put_string(w, "empty_text", "", 0, TSNAP_STRING_UTF8));
    CHECK_OK(tsnap_writer_put_string(w, "empty_bytes", NULL, 0, TSNAP_STRING_BYTES));
    CHECK_OK_FATAL(tsnap_writer_commit(w));
    tsnap_writer_free(w);

    tsnap_reader *rd = open_reader(path);
    CHECK_I64(tsnap_reader_count(rd), 5);
    check_string(rd, "text", text, strlen(text), TSNAP_STRING_UTF8);
    check_string(rd, "g/raw", raw, sizeof raw, TSNAP_STRING_BYTES);
    check_string(rd, "g/blob", blob, sizeof blob, TSNAP_STRING_BYTES);
    check_string(rd, "empty_text", "", 0, TSNAP_STRING_UTF8);
    check_string(rd, "empty_bytes", "", 0, TSNAP_STRING_BYTES);
    /* a short buffer gets the first bytes, and the whole length */
    char four[4] = {0};
    size_t len = 0;
    CHECK_OK(tsnap_reader_read_string(rd, "g/blob", four, sizeof four, &len, NULL));
    CHECK_I64(len, sizeof blob);
    CHECK_MEM(four, blob, sizeof four, "first bytes");
    /* describe refuses a string, saying which kind it is */
    tsnap_tensor_info info;
    CHECK_ERR(tsnap_reader_describe(rd, "text", &info), TSNAP_ETYPE);
    CHECK_ERRMSG_HAS("'text': a single string (text), not a tensor");
    CHECK_I64(info.string, TSNAP_STRING_UTF8);
    CHECK_ERR(tsnap_reader_describe(rd, "g/raw", &info), TSNAP_ETYPE);
    CHECK_I64(info.string, TSNAP_STRING_BYTES);
    CHECK_OK(tsnap_reader_verify(rd, NULL)); /* strings have no checksum: skipped */
    tsnap_reader_free(rd);

    /* the HDF5 types h5py gives a str and bytes */
    hid_t f = h5_open(path);
    CHECK_FATAL(f >= 0);
    hid_t d = H5Dopen2(f, "text", H5P_DEFAULT), t = H5Dget_type(d), s = H5Dget_space(d);
    CHECK(H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0);
    CHECK(H5Tget_cset(t) == H5T_CSET_UTF8 && H5Tget_strpad(t) == H5T_STR_NULLTERM);
    CHECK(H5Sget_simple_extent_type(s) == H5S_SCALAR);
    H5Sclose(s), H5Tclose(t), H5Dclose(d);
    d = H5Dopen2(f, "g/raw", H5P_DEFAULT), t = H5Dget_type(d);
    CHECK(H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) == 0);
    CHECK_I64(H5Tget_size(t), sizeof raw);
    CHECK(H5Tget_cset(t) == H5T_CSET_ASCII && H5Tget_strpad(t) == H5T_STR_NULLPAD);
    H5Tclose(t), H5Dclose(d);
    d = H5Dopen2(f, "empty_bytes", H5P_DEFAULT), t = H5Dget_type(d);
    CHECK(H5Tis_variable_str(t) > 0 && H5Tget_cset(t) == H5T_CSET_ASCII);
    H5Tclose(t), H5Dclose(d);
    CHECK(H5Aexists_by_name(f, "text", "tsnap_checksum", H5P_DEFAULT) == 0);
    H5Fclose(f);
}

static void test_bad_strings_are_refused_and_the_writer_goes_on(void)
{
    const char *path = tpath("s.h5");
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_ERR(tsnap_writer_put_string(w, "nul", "a\0b", 3, TSNAP_STRING_UTF8), TSNAP_EINVAL);
    CHECK_ERRMSG_HAS("NUL");
    CHECK_ERRMSG_HAS("'nul'");
    CHECK_ERR(tsnap_writer_put_string(w, "bad", "\xc3\x28", 2, TSNAP_STRING_UTF8), TSNAP_EINVAL);
    CHECK_ERRMSG_HAS("UTF-8");
    CHECK_ERR(tsnap_writer_put_string(w, "kind", "x", 1, (tsnap_string_kind)7), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_put_string(w, "null", NULL, 3, TSNAP_STRING_BYTES), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_put_string(w, "a//b", "x", 1, TSNAP_STRING_UTF8), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_put_string(NULL, "x", "x", 1, TSNAP_STRING_UTF8), TSNAP_EINVAL);
    CHECK_OK(tsnap_writer_put_string(w, "ok", "x", 1, TSNAP_STRING_UTF8));
    CHECK_ERR(tsnap_writer_put_string(w, "ok", "y", 1, TSNAP_STRING_UTF8), TSNAP_EEXISTS);
    CHECK_ERR(tsnap_writer_put_string(w, "ok/under", "y", 1, TSNAP_STRING_UTF8), TSNAP_EEXISTS);
    CHECK_OK_FATAL(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    tsnap_reader *r = open_reader(path);
    CHECK_I64(tsnap_reader_count(r), 1);
    check_string(r, "ok", "x", 1, TSNAP_STRING_UTF8);
    tsnap_reader_free(r);
}

static void test_groups_and_pytypes_are_listed_and_read_back(void)
{
    const char *path = tpath("g.h5");
    int64_t v = 42;
    DLTensor t = cpu_tensor(&v, TSNAP_INT64, 0, NULL, NULL, 0);
    tsnap_writer *w = NULL;
    tsnap_attr a;

    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_OK(tsnap_writer_put_group(w, "empty"));
    CHECK_OK(tsnap_writer_put_group(w, "deep/er/still"));
    CHECK_OK(tsnap_writer_put_group(w, "list"));
    CHECK_OK(tsnap_writer_put(w, "list/0", &t));
    CHECK_OK(tsnap_writer_put_string(w, "list/1", "b", 1, TSNAP_STRING_BYTES));
    CHECK_ERR(tsnap_writer_put_group(w, "list"), TSNAP_EEXISTS);
    CHECK_ERR(tsnap_writer_put_group(w, "list/0/x"), TSNAP_EEXISTS);
    CHECK_OK(tsnap_writer_set_pytype(w, "list", "list"));
    CHECK_OK(tsnap_writer_set_pytype(w, "list/0", "int"));
    CHECK_OK(tsnap_writer_set_pytype(w, "list/1", "bytes"));
    CHECK_OK(tsnap_writer_set_pytype(w, "list/1", "bytes_again")); /* replaces */
    CHECK_ERR(tsnap_writer_set_pytype(w, "missing", "int"), TSNAP_ENOTFOUND);
    CHECK_ERR(tsnap_writer_set_pytype(w, "list", ""), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_set_pytype(w, "list", "Int"), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_set_pytype(w, "list", "a very long type name of 40 chars"),
              TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_set_pytype(w, "list", NULL), TSNAP_EINVAL);
    CHECK_OK_FATAL(tsnap_writer_commit(w));
    tsnap_writer_free(w);

    tsnap_reader *r = open_reader(path);
    const char *want[] = {"deep", "deep/er", "deep/er/still", "empty", "list"};
    CHECK_I64(tsnap_reader_group_count(r), 5);
    for (size_t i = 0; i < 5; i++) {
        const char *g = tsnap_reader_group_name(r, i);
        CHECK_STR(g ? g : "(null)", want[i]);
    }
    CHECK(tsnap_reader_group_name(r, 5) == NULL);
    CHECK_I64(tsnap_reader_count(r), 2);
    if (CHECK_OK(tsnap_reader_attr_find(r, "list", "tsnap_pytype", &a)))
        CHECK_STR(a.string, "list");
    if (CHECK_OK(tsnap_reader_attr_find(r, "list/0", "tsnap_pytype", &a)))
        CHECK_STR(a.string, "int");
    if (CHECK_OK(tsnap_reader_attr_find(r, "list/1", "tsnap_pytype", &a)))
        CHECK_STR(a.string, "bytes_again");
    CHECK_ERR(tsnap_reader_attr_find(r, "empty", "tsnap_pytype", &a), TSNAP_ENOTFOUND);
    tsnap_reader_free(r);
    CHECK(tsnap_reader_group_count(NULL) == 0 && tsnap_reader_group_name(NULL, 0) == NULL);
}

/* A string dataset of `type` with one value, written by HDF5 itself. */
static void put_h5_string(hid_t f, const char *name, hid_t type, const void *value)
{
    CHECK(h5_put_dataset(f, name, type, 0, NULL, H5P_DEFAULT, type, value) == 0);
}

static hid_t fixed_type(size_t size, H5T_str_t pad, H5T_cset_t cset)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, size);
    H5Tset_strpad(t, pad);
    H5Tset_cset(t, cset);
    return t;
}

static void test_foreign_strings_of_every_padding_read_as_stored(void)
{
    const char *path = tpath("foreign.h5");
    hid_t f = h5_create(path);
    CHECK_FATAL(f >= 0);
    hid_t nullterm = fixed_type(6, H5T_STR_NULLTERM, H5T_CSET_ASCII);
    hid_t nullpad = fixed_type(6, H5T_STR_NULLPAD, H5T_CSET_UTF8);
    hid_t spacepad = fixed_type(6, H5T_STR_SPACEPAD, H5T_CSET_ASCII);
    hid_t vlen = H5Tcopy(H5T_C_S1);
    H5Tset_size(vlen, H5T_VARIABLE);
    const char *v = "variable ascii";
    put_h5_string(f, "nullterm", nullterm, "ab\0cd\0");
    put_h5_string(f, "nullpad", nullpad, "\xc3\xa9" "a\0\0\0");
    put_h5_string(f, "spacepad", spacepad, "ab    ");
    put_h5_string(f, "vlen", vlen, &v);
    { /* never written: nothing stored, it reads as the fill value */
        hid_t space = H5Screate(H5S_SCALAR);
        hid_t d = H5Dcreate2(f, "unwritten", nullpad, space, H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT);
        CHECK(d >= 0 && H5Dclose(d) >= 0 && H5Sclose(space) >= 0);
    }
    hsize_t two = 2;
    char pair[12] = "abcdefghijkl";
    CHECK(h5_put_dataset(f, "array", nullpad, 1, &two, H5P_DEFAULT, nullpad, pair) == 0);
    int32_t num = 5;
    CHECK(h5_put_dataset(f, "number", H5T_STD_I32LE, 0, NULL, H5P_DEFAULT, H5T_NATIVE_INT32,
                         &num) == 0);
    H5Tclose(nullterm), H5Tclose(nullpad), H5Tclose(spacepad), H5Tclose(vlen);
    H5Fclose(f);

    tsnap_reader *r = open_reader(path);
    check_string(r, "nullterm", "ab", 2, TSNAP_STRING_BYTES);
    check_string(r, "nullpad", "\xc3\xa9" "a\0\0\0", 6, TSNAP_STRING_UTF8);
    check_string(r, "spacepad", "ab    ", 6, TSNAP_STRING_BYTES);
    check_string(r, "vlen", v, strlen(v), TSNAP_STRING_BYTES);
    check_string(r, "unwritten", "\0\0\0\0\0\0", 6, TSNAP_STRING_UTF8);
    size_t len;
    tsnap_tensor_info info;
    CHECK_ERR(tsnap_reader_read_string(r, "array", NULL, 0, &len, NULL), TSNAP_ETYPE);
    CHECK_ERRMSG_HAS("array of strings");
    CHECK_ERR(tsnap_reader_describe(r, "array", &info), TSNAP_ETYPE);
    CHECK_I64(info.string, TSNAP_STRING_NONE);
    CHECK_ERR(tsnap_reader_read_string(r, "number", NULL, 0, &len, NULL), TSNAP_ETYPE);
    CHECK_ERRMSG_HAS("not a string");
    CHECK_ERR(tsnap_reader_read_string(r, "missing", NULL, 0, &len, NULL), TSNAP_ENOTFOUND);
    CHECK_ERR(tsnap_reader_read_string(r, "vlen", NULL, 4, &len, NULL), TSNAP_EINVAL);
    CHECK_ERR(tsnap_reader_read_string(NULL, "vlen", NULL, 0, &len, NULL), TSNAP_EINVAL);
    tsnap_reader_free(r);
}

/* In a child: a save past a 64 KiB file-size limit.  Exits 0 when the
 * failure is TSNAP_EIO with errno EFBIG, the final path and one line in
 * the system's words; 10 + which check failed otherwise. */
static int efbig_child(const char *path)
{
    struct rlimit lim = {64 << 10, 64 << 10};
    static double big[1 << 16];
    int64_t n = 1 << 16;
    DLTensor t = cpu_tensor(big, TSNAP_FLOAT64, 1, &n, NULL, 0);
    tsnap_writer *w = NULL;
    int err;

    signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &lim) < 0)
        return 10;
    for (size_t i = 0; i < (size_t)n; i++)
        big[i] = (double)i * 0.5;
    if (tsnap_writer_create(&w, path, NULL) < 0)
        return 11;
    err = tsnap_writer_put(w, "big", &t);
    if (err == 0)
        err = tsnap_writer_commit(w);
    if (err != TSNAP_EIO)
        return 12;
    if (tsnap_errno() != EFBIG)
        return 13;
    if (strcmp(tsnap_errpath(), path) != 0)
        return 14;
    const char *msg = tsnap_errmsg(), *tail = strerror(EFBIG);
    size_t ml = strlen(msg), tl = strlen(tail);
    if (strncmp(msg, path, strlen(path)) != 0 || ml < tl || strcmp(msg + ml - tl, tail) != 0)
        return 15;
    if (strchr(msg, '\n') || strstr(msg, "HDF5") || strstr(msg, "errno ="))
        return 16;
    tsnap_writer_free(w);
    return 0;
}

static void test_a_system_failure_keeps_its_errno_and_says_it_in_one_line(void)
{
    const char *path = tpath("limited.h5");
    pid_t pid = fork();
    int status = 0;

    CHECK_FATAL(pid >= 0);
    if (pid == 0)
        _exit(efbig_child(path));
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child exited with %d",
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    CHECK_I64(count_entries(tdir()), 0); /* the temporary file is gone */

    /* no errno for failures that are not the system's, nor after success */
    tsnap_writer *w = NULL;
    CHECK_ERR(tsnap_writer_create(&w, tpath("no/such/dir.h5"), NULL), TSNAP_ENOTFOUND);
    CHECK_I64(tsnap_errno(), 0);
    CHECK_STR(tsnap_errpath(), "");
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_ERR(tsnap_writer_put_string(w, "bad", "\xff", 1, TSNAP_STRING_UTF8), TSNAP_EINVAL);
    CHECK_I64(tsnap_errno(), 0);
    CHECK_OK(tsnap_writer_commit(w));
    CHECK_I64(tsnap_errno(), 0);
    tsnap_writer_free(w);
}

const test_entry strings_tests[] = {
    TEST(test_strings_round_trip_and_are_what_h5py_writes),
    TEST(test_bad_strings_are_refused_and_the_writer_goes_on),
    TEST(test_groups_and_pytypes_are_listed_and_read_back),
    TEST(test_foreign_strings_of_every_padding_read_as_stored),
    TEST(test_a_system_failure_keeps_its_errno_and_says_it_in_one_line),
    TEST_END,
};

/*
 * test_vlen_fill.c - foreign variable-length datasets (sequences, strings)
 * with a fill value, which HDF5 keeps in the global heap and converts
 * whenever it is asked for the dataset's creation properties.  Damaged
 * there, it crashed HDF5 1.10 inside tsnap's open of the dataset; tsnap
 * now never asks for them of a type it cannot read, and reads a single
 * string never written without converting its fill value.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

/* A file of the kind the fuzz test damaged: a sequence of int32, an array
 * of strings and a single string never written, each with a fill value
 * (`seq`, `text`) in the global heap, and a plain float64 tensor `plain`.
 * 0, or -1 when HDF5 fails. */
static int write_vlen_fills_here(const char *path, const int32_t *seq, size_t nseq,
                                 const char *text, const double *plain)
{
    hid_t f, vtype, stype, dcpl = H5I_INVALID_HID, one = H5I_INVALID_HID;
    hid_t space = H5I_INVALID_HID, scalar = H5I_INVALID_HID, six = H5I_INVALID_HID;
    hsize_t dims = 10, maxdims = H5S_UNLIMITED, chunk = 4, n = 6;
    hvl_t fill_seq = {nseq, (void *)seq};
    const char *fill_text = text;
    int ok;

    f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    vtype = H5Tvlen_create(H5T_NATIVE_INT32);
    stype = H5Tcopy(H5T_C_S1);
    ok = f >= 0 && vtype >= 0 && stype >= 0 && H5Tset_size(stype, H5T_VARIABLE) >= 0 &&
         (dcpl = H5Pcreate(H5P_DATASET_CREATE)) >= 0 && H5Pset_chunk(dcpl, 1, &chunk) >= 0 &&
         (one = H5Pcreate(H5P_DATASET_CREATE)) >= 0 &&
         (space = H5Screate_simple(1, &dims, &maxdims)) >= 0 &&
         (scalar = H5Screate(H5S_SCALAR)) >= 0 && (six = H5Screate_simple(1, &n, NULL)) >= 0;
    ok = ok && H5Pset_fill_value(dcpl, vtype, &fill_seq) >= 0 &&
         H5Dclose(H5Dcreate2(f, "vl", vtype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)) >= 0;
    ok = ok && H5Pset_fill_value(dcpl, stype, &fill_text) >= 0 &&
         H5Dclose(H5Dcreate2(f, "strings", stype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)) >= 0;
    ok = ok && H5Pset_fill_value(one, stype, &fill_text) >= 0 &&
         H5Dclose(H5Dcreate2(f, "one", stype, scalar, H5P_DEFAULT, one, H5P_DEFAULT)) >= 0;
    if (ok) {
        hid_t d = H5Dcreate2(f, "plain", H5T_IEEE_F64LE, six, H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT);
        ok = d >= 0 && H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, plain) >= 0;
        ok = H5Dclose(d) >= 0 && ok;
    }
    H5Sclose(six);
    H5Sclose(scalar);
    H5Sclose(space);
    H5Pclose(one);
    H5Pclose(dcpl);
    H5Tclose(stype);
    H5Tclose(vtype);
    ok = H5Fclose(f) >= 0 && ok;
    return ok ? 0 : -1;
}

/* HDF5 1.10 leaks the converted fill value of every variable-length
 * dataset it creates (not tsnap's to free): the file is written by a
 * child, which ends with _exit, before any leak check. */
static void write_vlen_fills(const char *path, const int32_t *seq, size_t nseq,
                             const char *text, const double *plain)
{
    int status = 0;
    pid_t pid = fork();

    CHECK_FATAL(pid >= 0);
    if (pid == 0)
        _exit(write_vlen_fills_here(path, seq, nseq, text, plain) == 0 ? 0 : 1);
    CHECK_FATAL(waitpid(pid, &status, 0) == pid);
    CHECK_FATAL(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The global heap's first object claims 65,520 bytes in a heap of 4,096:
 * converting a fill value there copies past the heap. */
static void damage_the_heap(const char *path)
{
    size_t size = 0;
    unsigned char *bytes = slurp(path, &size), *gcol;
    uint64_t claim = 0xfff0;

    CHECK_FATAL(bytes != NULL);
    gcol = memmem(bytes, size, "GCOL", 4);
    CHECK_FATAL(gcol != NULL && (size_t)(gcol - bytes) + 32 <= size);
    memcpy(gcol + 24, &claim, sizeof claim); /* object 1: index, refs, reserved, size */
    CHECK_FATAL(spit(path, bytes, size) == 0);
    free(bytes);
}

static void fresh_fills(int32_t *seq, size_t nseq, char *text, size_t ntext, double *plain)
{
    rng g;
    rng_init(&g, "vlen fill");
    rng_fill(&g, seq, nseq * sizeof *seq);
    for (size_t i = 0; i + 1 < ntext; i++)
        text[i] = (char)('a' + rng_below(&g, 26));
    text[ntext - 1] = '\0';
    for (int i = 0; i < 6; i++)
        plain[i] = (double)(int64_t)rng_next(&g) / 3.0;
}

static void test_recipe_holds_its_fill_values_where_hdf5_reads_them(void)
{
    const char *path = tpath("fills.h5");
    int32_t seq[3];
    char text[8];
    double plain[6];
    hid_t f, d, vtype;
    hvl_t got[10];
    hsize_t ten = 10;

    fresh_fills(seq, 3, text, sizeof text, plain);
    write_vlen_fills(path, seq, 3, text, plain);
    CHECK_FATAL((f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) >= 0);
    CHECK_FATAL((d = H5Dopen2(f, "vl", H5P_DEFAULT)) >= 0);
    CHECK_FATAL((vtype = H5Tvlen_create(H5T_NATIVE_INT32)) >= 0);
    CHECK_FATAL(H5Dread(d, vtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, got) >= 0);
    CHECK_I64(got[9].len, 3);
    if (got[9].len == 3)
        CHECK_MEM(got[9].p, seq, sizeof seq, "the fill value");
    hid_t space = H5Screate_simple(1, &ten, NULL);
    H5Dvlen_reclaim(vtype, space, H5P_DEFAULT, got);
    H5Sclose(space);
    H5Tclose(vtype);
    H5Dclose(d);
    H5Fclose(f);
}

static void test_damaged_vlen_fill_values_are_refused_or_skipped_never_converted(void)
{
    const char *path = tpath("damaged.h5");
    const char *unreadable[] = {"vl", "strings"};
    int32_t seq[3];
    char text[8], buf[16];
    double plain[6], back[6] = {0};
    int64_t six = 6;
    tsnap_reader *r = NULL;
    tsnap_tensor_info info;
    tsnap_string_kind kind = TSNAP_STRING_NONE;
    size_t len = 99;
    DLTensor t;

    fresh_fills(seq, 3, text, sizeof text, plain);
    write_vlen_fills(path, seq, 3, text, plain);
    damage_the_heap(path);
    CHECK_OK_FATAL(tsnap_reader_open(&r, path));
    CHECK_I64(tsnap_reader_count(r), 4);
    for (size_t i = 0; i < 2; i++) {
        ctx_set("%s", unreadable[i]);
        CHECK_ERR(tsnap_reader_describe(r, unreadable[i], &info), TSNAP_ETYPE);
        CHECK_ERRMSG_HAS(unreadable[i]);
        CHECK_ERRMSG_HAS("has no tsnap dtype");
        CHECK_I64(info.string, TSNAP_STRING_NONE);
        CHECK_ERR(tsnap_reader_verify(r, unreadable[i]), TSNAP_ETYPE);
    }
    ctx_clear();
    CHECK_ERR(tsnap_reader_describe(r, "one", &info), TSNAP_ETYPE);
    CHECK(info.string != TSNAP_STRING_NONE);
    /* never written: empty, the fill value unread */
    CHECK_OK(tsnap_reader_read_string(r, "one", buf, sizeof buf, &len, &kind));
    CHECK_I64(len, 0);
    CHECK(kind != TSNAP_STRING_NONE);
    CHECK_OK(tsnap_reader_verify(r, NULL));
    CHECK_OK(tsnap_reader_describe(r, "plain", &info));
    CHECK_I64(info.dtype, TSNAP_FLOAT64);
    t = cpu_tensor(back, TSNAP_FLOAT64, 1, &six, NULL, 0);
    CHECK_OK(tsnap_reader_read(r, "plain", NULL, NULL, NULL, &t));
    CHECK_MEM(back, plain, sizeof plain, "plain");
    tsnap_reader_free(r);
}

const test_entry vlen_fill_tests[] = {
    TEST(test_recipe_holds_its_fill_values_where_hdf5_reads_them),
    TEST(test_damaged_vlen_fill_values_are_refused_or_skipped_never_converted),
    TEST_END,
};

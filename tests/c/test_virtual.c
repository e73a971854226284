/*
 * test_virtual.c - virtual tensors: blocks written by tsnap's writer into
 * part files in a folder next to the snapshot, the snapshot a virtual
 * dataset over them (tsnap_writer_put_virtual).  HDF5 itself reads the
 * global tensor equal to the assembled array, from another working
 * directory and after the snapshot and its folder move; every dtype,
 * uneven blocks along any axis, 2-D decompositions; blocks outside the
 * shape or overlapping are refused, naming the tensor and the blocks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

/* A decomposition of a global shape into blocks. */
typedef struct layout {
    const char *label;
    int ndim;
    int64_t shape[3];
    int nblocks;
    int64_t offset[6][3];
    int64_t block[6][3];
} layout;

static const layout LAYOUTS[] = {
    {"1-D uneven", 1, {11}, 3, {{0}, {5}, {6}}, {{5}, {1}, {5}}},
    {"rows uneven", 2, {7, 5}, 3, {{0, 0}, {3, 0}, {4, 0}}, {{3, 5}, {1, 5}, {3, 5}}},
    {"columns", 2, {4, 9}, 3, {{0, 0}, {0, 2}, {0, 7}}, {{4, 2}, {4, 5}, {4, 2}}},
    {"2x2 grid", 2, {6, 7}, 4, {{0, 0}, {0, 3}, {4, 0}, {4, 3}}, {{4, 3}, {4, 4}, {2, 3}, {2, 4}}},
    {"3-D last axis", 3, {2, 3, 13}, 2, {{0, 0, 0}, {0, 0, 6}}, {{2, 3, 6}, {2, 3, 7}}},
    {"one block", 2, {3, 4}, 1, {{0, 0}}, {{3, 4}}},
};
#define NLAYOUTS (sizeof LAYOUTS / sizeof LAYOUTS[0])

/* The part file of block i of a snapshot named `base`, relative to the
 * snapshot's folder (as the distributed writer names them). */
static void part_name(char *buf, size_t len, const char *base, int i)
{
    snprintf(buf, len, "%s.parts/0123456789abcdef/rank-%06d.h5", base, i);
}

/* The block of `data` (C-order, global `shape`) at `offset`: a strided
 * view of the global buffer. */
static DLTensor block_view(unsigned char *data, tsnap_dtype dtype, int ndim, const int64_t *shape,
                           const int64_t *offset, int64_t *bshape, int64_t *strides)
{
    int64_t s = 1, first = 0;
    for (int d = ndim - 1; d >= 0; d--) {
        strides[d] = s;
        first += offset[d] * s;
        s *= shape[d];
    }
    return cpu_tensor(data, dtype, ndim, bshape, strides,
                      (uint64_t)first * dtype_row_of(dtype)->size);
}

static int make_dir(const char *path)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    return system(cmd);
}

/* Writes `data` as snapshot "<tdir>/<base>" whose tensor `name` is virtual
 * over the layout's blocks, each in a part file of its own written with
 * options `o`.  Returns 0 when every call succeeded. */
static int write_split(const char *base, const char *name, tsnap_dtype dtype, const layout *l,
                       unsigned char *data, const optset *o)
{
    tsnap_part parts[6];
    char files[6][256];
    tsnap_write_options opts;
    int bad = 0;

    optset_apply(o, &opts);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s.parts/0123456789abcdef", tdir(), base);
    if (make_dir(dir) != 0)
        return -1;
    for (int i = 0; i < l->nblocks; i++) {
        int64_t bshape[3], strides[3];
        memcpy(bshape, l->block[i], sizeof bshape);
        DLTensor t = block_view(data, dtype, l->ndim, l->shape, l->offset[i], bshape, strides);
        part_name(files[i], sizeof files[i], base, i);
        tsnap_writer *w = NULL;
        bad |= !CHECK_OK(tsnap_writer_create(&w, tpath(files[i]), &opts));
        bad |= !CHECK_OK(tsnap_writer_put(w, name, &t));
        bad |= !CHECK_OK(tsnap_writer_commit(w));
        tsnap_writer_free(w);
        memset(&parts[i], 0, sizeof parts[i]);
        parts[i].file = files[i];
        parts[i].dataset = name;
        memcpy(parts[i].offset, l->offset[i], (size_t)l->ndim * sizeof(int64_t));
        memcpy(parts[i].shape, l->block[i], (size_t)l->ndim * sizeof(int64_t));
    }
    tsnap_writer *w = NULL;
    bad |= !CHECK_OK(tsnap_writer_create(&w, tpath(base), NULL));
    bad |= !CHECK_OK(tsnap_writer_put_virtual(w, name, dtype, l->ndim, l->shape, parts,
                                              (size_t)l->nblocks));
    bad |= !CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    return bad ? -1 : 0;
}

/* HDF5's own read of the whole dataset (the stored bytes: tsnap's types
 * are little-endian, so the file type is the memory type). */
static unsigned char *h5_read_all(const char *path, const char *name, size_t nbytes)
{
    unsigned char *buf = alloc_filled(nbytes, 0x5a);
    hid_t f = h5_open(path), d = H5I_INVALID_HID, t = H5I_INVALID_HID;
    int ok = f >= 0 && (d = H5Dopen2(f, name, H5P_DEFAULT)) >= 0 && (t = H5Dget_type(d)) >= 0 &&
             H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0;
    CHECK_MSG(ok, "HDF5 reads %s:%s", path, name);
    if (t >= 0)
        H5Tclose(t);
    if (d >= 0)
        H5Dclose(d);
    if (f >= 0)
        H5Fclose(f);
    return buf;
}

static unsigned char *random_tensor(rng *r, tsnap_dtype dtype, const layout *l, size_t *nbytes)
{
    size_t n = (size_t)nelems(l->ndim, l->shape), itemsize = dtype_row_of(dtype)->size;
    unsigned char *data = alloc_filled(n * itemsize, 0);
    rng_fill_dtype(r, data, n, dtype);
    if (dtype == TSNAP_BOOL) /* stored as 0/1 */
        for (size_t i = 0; i < n; i++)
            data[i] = data[i] != 0;
    *nbytes = n * itemsize;
    return data;
}

static void test_hdf5_reads_the_global_tensor_of_every_dtype_and_layout(void)
{
    rng r;
    rng_init(&r, __func__);
    for (size_t k = 0; k < NDTYPES; k++) {
        tsnap_dtype dtype = DTYPES[k].dtype;
        for (size_t li = 0; li < NLAYOUTS; li++) {
            const layout *l = &LAYOUTS[li];
            const optset *o = li % 2 ? &OPT_DEFLATE : &OPT_TINY;
            char base[64];
            size_t nbytes;
            ctx_set("%s/%s", DTYPES[k].name, l->label);
            snprintf(base, sizeof base, "s-%zu-%zu.h5", k, li);
            unsigned char *data = random_tensor(&r, dtype, l, &nbytes);
            if (write_split(base, "fields/u", dtype, l, data, o) == 0) {
                unsigned char *got = h5_read_all(tpath(base), "fields/u", nbytes);
                CHECK_MEM(got, data, nbytes, "HDF5's read of the virtual dataset");
                free(got);
                hid_t f = h5_open(tpath(base)), d = H5Dopen2(f, "fields/u", H5P_DEFAULT);
                char *tag = h5_get_string_attr(d, "tsnap_dtype");
                CHECK_STR(tag, DTYPES[k].name);
                free(tag);
                hid_t dcpl = H5Dget_create_plist(d);
                CHECK_I64(H5Pget_layout(dcpl), H5D_VIRTUAL);
                size_t count = 0;
                H5Pget_virtual_count(dcpl, &count);
                CHECK_I64(count, l->nblocks);
                H5Pclose(dcpl);
                H5Dclose(d);
                H5Fclose(f);
            }
            free(data);
        }
    }
    ctx_clear();
}

static void test_relative_sources_read_from_another_directory_after_a_move(void)
{
    rng r;
    rng_init(&r, __func__);
    const layout *l = &LAYOUTS[3];
    size_t nbytes;
    unsigned char *data = random_tensor(&r, TSNAP_FLOAT32, l, &nbytes);
    CHECK_OK_FATAL(write_split("snap.h5", "u", TSNAP_FLOAT32, l, data, &OPT_PLAIN));
    char moved[4200], cmd[9000], cwd[4096];
    snprintf(moved, sizeof moved, "%s/elsewhere", tdir());
    snprintf(cmd, sizeof cmd, "mkdir '%s' && mv '%s' '%s.parts' '%s/'", moved, tpath("snap.h5"),
             tpath("snap.h5"), moved);
    CHECK_FATAL(system(cmd) == 0);
    CHECK_FATAL(getcwd(cwd, sizeof cwd) != NULL);
    CHECK_FATAL(chdir("/") == 0);
    char path[4300];
    snprintf(path, sizeof path, "%s/snap.h5", moved);
    unsigned char *got = h5_read_all(path, "u", nbytes);
    CHECK_MEM(got, data, nbytes, "HDF5's read after the move, from /");
    free(got);
    CHECK(chdir(cwd) == 0);
    free(data);
}

/* A writer refusing a virtual tensor stays usable: put and commit work. */
static void check_still_usable(tsnap_writer *w)
{
    int64_t shape[1] = {3};
    int32_t v[3] = {1, 2, 3};
    DLTensor t = cpu_tensor(v, TSNAP_INT32, 1, shape, NULL, 0);
    CHECK_OK(tsnap_writer_put(w, "plain", &t));
    CHECK_OK(tsnap_writer_commit(w));
}

static tsnap_part part_of(const char *file, int64_t o0, int64_t o1, int64_t s0, int64_t s1)
{
    tsnap_part p;
    memset(&p, 0, sizeof p);
    p.file = file;
    p.dataset = "u";
    p.offset[0] = o0;
    p.offset[1] = o1;
    p.shape[0] = s0;
    p.shape[1] = s1;
    return p;
}

static void test_blocks_outside_the_shape_or_overlapping_are_refused_naming_them(void)
{
    int64_t shape[2] = {8, 8};
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, tpath("bad.h5"), NULL));

    tsnap_part over[3] = {part_of("a.h5", 0, 0, 4, 8), part_of("b.h5", 6, 0, 2, 8),
                          part_of("c.h5", 3, 0, 1, 8)};
    CHECK_ERR(tsnap_writer_put_virtual(w, "u", TSNAP_FLOAT32, 2, shape, over, 3), TSNAP_EINVAL);
    CHECK_ERRMSG_HAS("tensor 'u'");
    CHECK_ERRMSG_HAS("blocks 0 [0:4, 0:8] (a.h5) and 2 [3:4, 0:8] (c.h5) overlap at [3:4, 0:8]");

    tsnap_part grid[2] = {part_of("a.h5", 0, 0, 8, 5), part_of("b.h5", 2, 4, 2, 4)};
    CHECK_ERR(tsnap_writer_put_virtual(w, "u", TSNAP_FLOAT32, 2, shape, grid, 2), TSNAP_EINVAL);
    CHECK_ERRMSG_HAS("overlap at [2:4, 4:5]");

    tsnap_part out[2] = {part_of("a.h5", 0, 0, 4, 8), part_of("b.h5", 4, 1, 4, 8)};
    CHECK_ERR(tsnap_writer_put_virtual(w, "u", TSNAP_FLOAT32, 2, shape, out, 2), TSNAP_EINVAL);
    CHECK_ERRMSG_HAS("block 1 [4:8, 1:9] (b.h5) lies outside the tensor's shape");

    tsnap_part neg[1] = {part_of("a.h5", -1, 0, 4, 8)};
    CHECK_ERR(tsnap_writer_put_virtual(w, "u", TSNAP_FLOAT32, 2, shape, neg, 1), TSNAP_EINVAL);
    CHECK_ERRMSG_HAS("outside");

    tsnap_part empty[1] = {part_of("a.h5", 0, 0, 0, 8)};
    CHECK_ERR(tsnap_writer_put_virtual(w, "u", TSNAP_FLOAT32, 2, shape, empty, 1), TSNAP_EINVAL);
    CHECK_ERRMSG_HAS("empty");

    tsnap_part nofile[1] = {part_of(NULL, 0, 0, 8, 8)};
    CHECK_ERR(tsnap_writer_put_virtual(w, "u", TSNAP_FLOAT32, 2, shape, nofile, 1), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_put_virtual(w, "u", TSNAP_FLOAT32, 2, shape, over, 0), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_put_virtual(w, "u", TSNAP_FLOAT32, 2, NULL, over, 1), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_put_virtual(w, "u", TSNAP_DTYPE_INVALID, 2, shape, over, 1),
              TSNAP_ETYPE);
    CHECK_ERR(tsnap_writer_put_virtual(w, "u", TSNAP_FLOAT32, 0, shape, over, 1), TSNAP_EINVAL);
    CHECK_ERRMSG_HAS("0-d");
    int64_t zero[2] = {0, 8};
    CHECK_ERR(tsnap_writer_put_virtual(w, "u", TSNAP_FLOAT32, 2, zero, over, 1), TSNAP_EINVAL);
    CHECK_ERRMSG_HAS("empty tensor");
    int64_t negshape[2] = {-1, 8};
    CHECK_ERR(tsnap_writer_put_virtual(w, "u", TSNAP_FLOAT32, 2, negshape, over, 1),
              TSNAP_EINVAL);
    CHECK_ERRMSG_HAS("tensor 'u'");
    CHECK_ERR(tsnap_writer_put_virtual(w, "u", TSNAP_FLOAT32, 33, shape, over, 1), TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_put_virtual(w, "a//b", TSNAP_FLOAT32, 2, shape, over, 1),
              TSNAP_EINVAL);
    CHECK_ERR(tsnap_writer_put_virtual(NULL, "u", TSNAP_FLOAT32, 2, shape, over, 1), TSNAP_EINVAL);
    check_still_usable(w);
    tsnap_writer_free(w);
}

static void test_a_taken_name_or_a_finished_writer_is_refused(void)
{
    int64_t shape[2] = {8, 8};
    tsnap_part whole[1] = {part_of("a.h5", 0, 0, 8, 8)};
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, tpath("taken.h5"), NULL));
    CHECK_OK(tsnap_writer_put_virtual(w, "g/u", TSNAP_FLOAT64, 2, shape, whole, 1));
    CHECK_ERR(tsnap_writer_put_virtual(w, "g/u", TSNAP_FLOAT64, 2, shape, whole, 1),
              TSNAP_EEXISTS);
    CHECK_ERR(tsnap_writer_put_virtual(w, "g/u/v", TSNAP_FLOAT64, 2, shape, whole, 1),
              TSNAP_EEXISTS);
    /* user attributes go on a virtual tensor as on any other */
    CHECK_OK(tsnap_writer_set_attr_string(w, "g/u", "units", "m/s"));
    CHECK_OK(tsnap_writer_commit(w));
    CHECK_ERR(tsnap_writer_put_virtual(w, "v", TSNAP_FLOAT64, 2, shape, whole, 1), TSNAP_ESTATE);
    tsnap_writer_free(w);
    hid_t f = h5_open(tpath("taken.h5")), d = H5Dopen2(f, "g/u", H5P_DEFAULT);
    char *units = h5_get_string_attr(d, "units");
    CHECK_STR(units, "m/s");
    free(units);
    H5Dclose(d);
    H5Fclose(f);
}

static void test_percent_signs_in_source_names_are_taken_literally(void)
{
    rng r;
    rng_init(&r, __func__);
    int64_t shape[1] = {6};
    double v[6];
    rng_fill_dtype(&r, v, 6, TSNAP_FLOAT64);
    DLTensor t = cpu_tensor(v, TSNAP_FLOAT64, 1, shape, NULL, 0);
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, tpath("100%b.h5"), NULL));
    CHECK_OK(tsnap_writer_put(w, "a%b", &t));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    tsnap_part p;
    memset(&p, 0, sizeof p);
    p.file = "100%b.h5";
    p.dataset = "a%b";
    p.shape[0] = 6;
    CHECK_OK_FATAL(tsnap_writer_create(&w, tpath("pct.h5"), NULL));
    CHECK_OK(tsnap_writer_put_virtual(w, "x", TSNAP_FLOAT64, 1, shape, &p, 1));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    unsigned char *got = h5_read_all(tpath("pct.h5"), "x", sizeof v);
    CHECK_MEM(got, v, sizeof v, "the source named with '%'");
    free(got);
}

const test_entry virtual_tests[] = {
    TEST(test_hdf5_reads_the_global_tensor_of_every_dtype_and_layout),
    TEST(test_relative_sources_read_from_another_directory_after_a_move),
    TEST(test_blocks_outside_the_shape_or_overlapping_are_refused_naming_them),
    TEST(test_a_taken_name_or_a_finished_writer_is_refused),
    TEST(test_percent_signs_in_source_names_are_taken_literally),
    TEST_END,
};

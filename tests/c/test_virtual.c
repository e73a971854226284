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

/* ---- reading with tsnap -------------------------------------------- */

/* The elements start + k*step of C-order `data` of `shape`, in C order. */
static void naive_slice(const unsigned char *data, size_t itemsize, int ndim,
                        const int64_t *shape, const int64_t *start, const int64_t *count,
                        const int64_t *step, unsigned char *out)
{
    int64_t cstride[TSNAP_MAX_NDIM], s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        cstride[d] = s;
        s *= shape[d];
    }
    int64_t n = nelems(ndim, count);
    for (int64_t i = 0; i < n; i++) {
        int64_t rem = i, src = 0;
        for (int d = ndim - 1; d >= 0; d--) {
            src += (start[d] + (rem % count[d]) * step[d]) * cstride[d];
            rem /= count[d];
        }
        memcpy(out + i * (int64_t)itemsize, data + src * (int64_t)itemsize, itemsize);
    }
}

/* Reads a selection into a destination with reversed strides (so every
 * block lands through a strided sub-view) and compares it with `want`. */
static void check_read(tsnap_reader *rd, const char *name, tsnap_dtype dtype, int ndim,
                       const int64_t *start, int64_t *count, const int64_t *step,
                       const unsigned char *want)
{
    size_t itemsize = dtype_row_of(dtype)->size, n = (size_t)nelems(ndim, count);
    int64_t strides[3], s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        strides[d] = -s;
        s *= count[d];
    }
    unsigned char *buf = alloc_filled(n * itemsize, 0xa5), *got = alloc_filled(n * itemsize, 0);
    DLTensor dst = cpu_tensor(buf, dtype, ndim, count, strides, n ? (n - 1) * itemsize : 0);
    if (CHECK_OK(tsnap_reader_read(rd, name, start, count, step, &dst))) {
        naive_gather(&dst, itemsize, 0, got);
        CHECK_MEM(got, want, n * itemsize, "the selection, into reversed strides");
    }
    free(buf);
    free(got);
}

static void check_parts(tsnap_reader *rd, const char *name, const char *base, const layout *l)
{
    tsnap_tensor_info info;
    CHECK_OK(tsnap_reader_describe(rd, name, &info));
    CHECK_I64(info.map_status, TSNAP_MAP_VIRTUAL);
    CHECK_I64(info.nparts, l->nblocks);
    CHECK_I64(info.ndim, l->ndim);
    for (int d = 0; d < l->ndim; d++)
        CHECK_I64(info.shape[d], l->shape[d]);
    CHECK_STR(tsnap_map_status_str(info.map_status), "virtual dataset over other files");
    for (int i = 0; i < l->nblocks; i++) {
        tsnap_part p;
        char file[256];
        part_name(file, sizeof file, base, i);
        if (!CHECK_OK(tsnap_reader_part(rd, name, (size_t)i, &p)))
            continue;
        CHECK_STR(p.file, file);
        CHECK_STR(p.path, tpath(file));
        CHECK_STR(p.dataset, name);
        for (int d = 0; d < l->ndim; d++) {
            CHECK_I64(p.offset[d], l->offset[i][d]);
            CHECK_I64(p.shape[d], l->block[i][d]);
        }
    }
    tsnap_part p;
    CHECK_ERR(tsnap_reader_part(rd, name, (size_t)l->nblocks, &p), TSNAP_EINVAL);
}

static void test_tsnap_reads_every_dtype_and_layout_whole_and_in_slices_across_blocks(void)
{
    rng r;
    rng_init(&r, __func__);
    for (size_t k = 0; k < NDTYPES; k++) {
        tsnap_dtype dtype = DTYPES[k].dtype;
        size_t itemsize = DTYPES[k].size;
        for (size_t li = 0; li < NLAYOUTS; li++) {
            const layout *l = &LAYOUTS[li];
            const optset *o = li % 3 == 0 ? &OPT_PLAIN : li % 3 == 1 ? &OPT_DEFLATE : &OPT_TINY;
            char base[64];
            size_t nbytes;
            ctx_set("%s/%s", DTYPES[k].name, l->label);
            snprintf(base, sizeof base, "r-%zu-%zu.h5", k, li);
            unsigned char *data = random_tensor(&r, dtype, l, &nbytes);
            if (write_split(base, "g/u", dtype, l, data, o) != 0) {
                free(data);
                continue;
            }
            tsnap_reader *rd = open_reader(tpath(base));
            check_parts(rd, "g/u", base, l);
            int64_t zero[3] = {0, 0, 0}, one[3] = {1, 1, 1}, whole[3];
            memcpy(whole, l->shape, sizeof whole);
            check_read(rd, "g/u", dtype, l->ndim, zero, whole, one, data);
            unsigned char *got = alloc_filled(nbytes, 0);
            DLTensor dst = cpu_tensor(got, dtype, l->ndim, whole, NULL, 0);
            CHECK_OK(tsnap_reader_read_verified(rd, "g/u", &dst));
            CHECK_MEM(got, data, nbytes, "read_verified");
            CHECK_OK(tsnap_reader_verify(rd, "g/u"));
            CHECK_OK(tsnap_reader_verify(rd, NULL));
            free(got);
            /* random selections with steps, crossing the block borders */
            for (int trial = 0; trial < 12; trial++) {
                int64_t start[3], count[3], step[3];
                for (int d = 0; d < l->ndim; d++) {
                    start[d] = (int64_t)rng_below(&r, (uint64_t)l->shape[d]);
                    step[d] = 1 + (int64_t)rng_below(&r, 3);
                    int64_t most = (l->shape[d] - 1 - start[d]) / step[d] + 1;
                    count[d] = trial == 0 ? 0 : 1 + (int64_t)rng_below(&r, (uint64_t)most);
                }
                size_t n = (size_t)nelems(l->ndim, count);
                unsigned char *want = alloc_filled(n * itemsize, 0);
                naive_slice(data, itemsize, l->ndim, l->shape, start, count, step, want);
                check_read(rd, "g/u", dtype, l->ndim, start, count, step, want);
                free(want);
            }
            tsnap_reader_free(rd);
            free(data);
        }
    }
    ctx_clear();
}

/* Flips one byte of tensor `name`'s data in a (flat) tsnap file. */
static void damage(const char *path, const char *name)
{
    tsnap_reader *rd = open_reader(path);
    tsnap_tensor_info info;
    CHECK_OK_FATAL(tsnap_reader_describe(rd, name, &info));
    CHECK_FATAL(info.map_status == TSNAP_MAP_OK);
    tsnap_reader_free(rd);
    size_t size;
    unsigned char *bytes = slurp(path, &size);
    CHECK_FATAL(bytes != NULL);
    bytes[info.offset + info.length / 2] ^= 0x10;
    CHECK(spit(path, bytes, size) == 0);
    free(bytes);
}

static void test_a_damaged_or_missing_part_is_an_error_naming_the_tensor_and_the_part(void)
{
    rng r;
    rng_init(&r, __func__);
    const layout *l = &LAYOUTS[1]; /* rows [0:3], [3:4], [4:7] of (7, 5) */
    size_t nbytes;
    unsigned char *data = random_tensor(&r, TSNAP_INT32, l, &nbytes);
    CHECK_OK_FATAL(write_split("d.h5", "u", TSNAP_INT32, l, data, &OPT_PLAIN));
    char part2[256], part1[256];
    part_name(part2, sizeof part2, "d.h5", 2);
    part_name(part1, sizeof part1, "d.h5", 1);
    damage(tpath(part2), "u");

    tsnap_reader *rd = open_reader(tpath("d.h5"));
    CHECK_ERR(tsnap_reader_verify(rd, "u"), TSNAP_ECHECKSUM);
    CHECK_ERRMSG_HAS("tensor 'u'");
    CHECK_ERRMSG_HAS(part2);
    CHECK_ERR(tsnap_reader_verify(rd, NULL), TSNAP_ECHECKSUM);
    int32_t got[35];
    int64_t shape[2] = {7, 5};
    DLTensor dst = cpu_tensor(got, TSNAP_INT32, 2, shape, NULL, 0);
    CHECK_ERR(tsnap_reader_read_verified(rd, "u", &dst), TSNAP_ECHECKSUM);
    CHECK_ERRMSG_HAS(part2);
    tsnap_reader_free(rd);

    CHECK_FATAL(unlink(tpath(part1)) == 0);
    rd = open_reader(tpath("d.h5"));
    CHECK_ERR(tsnap_reader_read(rd, "u", NULL, NULL, NULL, &dst), TSNAP_EFORMAT);
    CHECK_ERRMSG_HAS("tensor 'u'");
    CHECK_ERRMSG_HAS(part1);
    CHECK_ERRMSG_HAS("is missing");
    CHECK_ERR(tsnap_reader_verify(rd, NULL), TSNAP_EFORMAT);
    /* a region inside block 0 still reads */
    int64_t start[2] = {1, 0}, count[2] = {2, 5};
    DLTensor two = cpu_tensor(got, TSNAP_INT32, 2, count, NULL, 0);
    CHECK_OK(tsnap_reader_read(rd, "u", start, count, NULL, &two));
    CHECK_MEM(got, data + 5 * 4, 10 * 4, "rows 1:3 from block 0");
    tsnap_reader_free(rd);
    free(data);
}

static void test_elements_no_block_covers_read_as_zero_as_in_hdf5(void)
{
    rng r;
    rng_init(&r, __func__);
    int64_t shape[2] = {4, 6}, bshape[2] = {2, 6};
    int16_t block[12], got[24];
    rng_fill_dtype(&r, block, 12, TSNAP_INT16);
    DLTensor t = cpu_tensor(block, TSNAP_INT16, 2, bshape, NULL, 0);
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, tpath("p.h5"), NULL));
    CHECK_OK(tsnap_writer_put(w, "u", &t));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    tsnap_part p = part_of("p.h5", 1, 0, 2, 6);
    CHECK_OK_FATAL(tsnap_writer_create(&w, tpath("gap.h5"), NULL));
    CHECK_OK(tsnap_writer_put_virtual(w, "u", TSNAP_INT16, 2, shape, &p, 1));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    unsigned char *want = h5_read_all(tpath("gap.h5"), "u", sizeof got);
    tsnap_reader *rd = open_reader(tpath("gap.h5"));
    memset(got, 0x5a, sizeof got);
    DLTensor dst = cpu_tensor(got, TSNAP_INT16, 2, shape, NULL, 0);
    CHECK_OK(tsnap_reader_read(rd, "u", NULL, NULL, NULL, &dst));
    CHECK_MEM(got, want, sizeof got, "HDF5's read, fill value included");
    CHECK_MEM(got + 6, block, sizeof block, "the block");
    CHECK(got[0] == 0 && got[23] == 0);
    tsnap_reader_free(rd);
    free(want);
}

/* A virtual dataset made with HDF5 directly, mapping part of a source
 * and with a fill value: HDF5 reads it for tsnap, slowly but right. */
static void test_mappings_tsnap_cannot_follow_are_read_by_hdf5(void)
{
    rng r;
    rng_init(&r, __func__);
    double src[10];
    hsize_t n10 = 10, n8 = 8;
    rng_fill_dtype(&r, src, 10, TSNAP_FLOAT64);
    hid_t f = h5_create(tpath("src.h5"));
    CHECK_FATAL(h5_put_dataset(f, "s", H5T_IEEE_F64LE, 1, &n10, H5P_DEFAULT, H5T_NATIVE_DOUBLE,
                               src) == 0);
    H5Fclose(f);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), vs = H5Screate_simple(1, &n8, NULL),
          ss = H5Screate_simple(1, &n10, NULL);
    hsize_t vstart = 1, sstart = 2, cnt = 6;
    double fill = -1.5;
    H5Pset_fill_value(dcpl, H5T_NATIVE_DOUBLE, &fill);
    H5Sselect_hyperslab(vs, H5S_SELECT_SET, &vstart, NULL, &cnt, NULL);
    H5Sselect_hyperslab(ss, H5S_SELECT_SET, &sstart, NULL, &cnt, NULL);
    H5Pset_virtual(dcpl, vs, "src.h5", "s", ss);
    f = h5_create(tpath("v.h5"));
    hid_t space = H5Screate_simple(1, &n8, NULL);
    hid_t d = H5Dcreate2(f, "v", H5T_IEEE_F64LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    CHECK_FATAL(d >= 0);
    H5Dclose(d);
    H5Sclose(space);
    H5Fclose(f);
    H5Sclose(vs);
    H5Sclose(ss);
    H5Pclose(dcpl);

    tsnap_reader *rd = open_reader(tpath("v.h5"));
    tsnap_tensor_info info;
    CHECK_OK(tsnap_reader_describe(rd, "v", &info));
    CHECK_I64(info.map_status, TSNAP_MAP_LAYOUT);
    CHECK_I64(info.nparts, 1);
    tsnap_part p;
    CHECK_ERR(tsnap_reader_part(rd, "v", 0, &p), TSNAP_EFORMAT);
    CHECK_ERRMSG_HAS("part of a source");
    double got[8], want[8] = {fill, src[2], src[3], src[4], src[5], src[6], src[7], fill};
    int64_t shape[1] = {8};
    DLTensor dst = cpu_tensor(got, TSNAP_FLOAT64, 1, shape, NULL, 0);
    CHECK_OK(tsnap_reader_read(rd, "v", NULL, NULL, NULL, &dst));
    CHECK_MEM(got, want, sizeof want, "HDF5's read through tsnap");
    CHECK_OK(tsnap_reader_verify(rd, NULL));
    int32_t i32[3] = {1, 2, 3};
    int64_t three[1] = {3};
    DLTensor plain = cpu_tensor(i32, TSNAP_INT32, 1, three, NULL, 0);
    CHECK_ERR(tsnap_reader_part(rd, "nope", 0, &p), TSNAP_ENOTFOUND);
    (void)plain;
    /* HDF5 would now read fill values: tsnap names the missing source */
    CHECK_FATAL(unlink(tpath("src.h5")) == 0);
    CHECK_ERR(tsnap_reader_read(rd, "v", NULL, NULL, NULL, &dst), TSNAP_EFORMAT);
    CHECK_ERRMSG_HAS("the source file 'src.h5' of mapping 0 is missing");
    tsnap_reader_free(rd);
}

static void test_a_tensor_of_more_parts_than_the_reader_keeps_open_reads_whole(void)
{
    enum { N = 150 };
    rng r;
    rng_init(&r, __func__);
    static uint64_t v[N], got[N];
    static tsnap_part parts[N];
    static char files[N][64];
    rng_fill_dtype(&r, v, N, TSNAP_UINT64);
    for (int i = 0; i < N; i++) {
        int64_t one[1] = {1};
        DLTensor t = cpu_tensor(&v[i], TSNAP_UINT64, 1, one, NULL, 0);
        tsnap_writer *w = NULL;
        snprintf(files[i], sizeof files[i], "part-%03d.h5", i);
        CHECK_OK_FATAL(tsnap_writer_create(&w, tpath(files[i]), NULL));
        CHECK_OK(tsnap_writer_put(w, "x", &t));
        CHECK_OK(tsnap_writer_commit(w));
        tsnap_writer_free(w);
        parts[i] = part_of(files[i], N - 1 - i, 0, 1, 0);
        parts[i].dataset = "/x";
    }
    int64_t shape[1] = {N};
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, tpath("many.h5"), NULL));
    CHECK_OK(tsnap_writer_put_virtual(w, "x", TSNAP_UINT64, 1, shape, parts, N));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    tsnap_reader *rd = open_reader(tpath("many.h5"));
    DLTensor dst = cpu_tensor(got, TSNAP_UINT64, 1, shape, NULL, 0);
    for (int pass = 0; pass < 2; pass++) {
        memset(got, 0, sizeof got);
        CHECK_OK(tsnap_reader_read(rd, "x", NULL, NULL, NULL, &dst));
        for (int i = 0; i < N; i++)
            CHECK_MSG(got[N - 1 - i] == v[i], "element %d", N - 1 - i);
    }
    CHECK_OK(tsnap_reader_verify(rd, NULL));
    tsnap_reader_free(rd);
}

/* A hostile file: a virtual dataset whose one block is itself. */
static void test_a_virtual_dataset_whose_source_is_itself_is_refused_not_followed_forever(void)
{
    hsize_t n = 8;
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), vs = H5Screate_simple(1, &n, NULL),
          ss = H5Screate_simple(1, &n, NULL);
    CHECK_FATAL(H5Pset_virtual(dcpl, vs, ".", "v", ss) >= 0);
    hid_t f = h5_create(tpath("loop.h5"));
    hid_t d = H5Dcreate2(f, "v", H5T_IEEE_F64LE, vs, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    CHECK_FATAL(d >= 0);
    H5Dclose(d);
    H5Fclose(f);
    H5Sclose(vs);
    H5Sclose(ss);
    H5Pclose(dcpl);
    tsnap_reader *rd = open_reader(tpath("loop.h5"));
    tsnap_tensor_info info;
    CHECK_OK(tsnap_reader_describe(rd, "v", &info));
    CHECK_I64(info.map_status, TSNAP_MAP_VIRTUAL);
    double got[8];
    int64_t shape[1] = {8};
    DLTensor dst = cpu_tensor(got, TSNAP_FLOAT64, 1, shape, NULL, 0);
    CHECK_ERR(tsnap_reader_read(rd, "v", NULL, NULL, NULL, &dst), TSNAP_EFORMAT);
    CHECK_ERRMSG_HAS("itself a virtual dataset");
    CHECK_ERR(tsnap_reader_verify(rd, NULL), TSNAP_EFORMAT);
    tsnap_mapping *m = NULL;
    CHECK_ERR(tsnap_mapping_create(&m, rd, "v"), TSNAP_ENOTMAPPABLE);
    CHECK_ERRMSG_HAS("itself a virtual dataset");
    tsnap_reader_free(rd);
}

static void test_a_tensor_of_one_block_maps_it_and_of_several_cannot_be_mapped(void)
{
    rng r;
    rng_init(&r, __func__);
    const layout *one = &LAYOUTS[5], *rows = &LAYOUTS[1];
    size_t nbytes1, nbytes2;
    unsigned char *d1 = random_tensor(&r, TSNAP_BFLOAT16, one, &nbytes1);
    unsigned char *d2 = random_tensor(&r, TSNAP_FLOAT32, rows, &nbytes2);
    CHECK_OK_FATAL(write_split("one.h5", "u", TSNAP_BFLOAT16, one, d1, &OPT_PLAIN));
    CHECK_OK_FATAL(write_split("rows.h5", "u", TSNAP_FLOAT32, rows, d2, &OPT_PLAIN));
    tsnap_reader *rd = open_reader(tpath("one.h5"));
    tsnap_mapping *m = NULL;
    if (CHECK_OK(tsnap_mapping_create(&m, rd, "u"))) {
        const DLTensor *t = tsnap_mapping_tensor(m);
        CHECK_I64(t->ndim, 2);
        CHECK_I64(t->shape[0], 3);
        CHECK_I64(t->shape[1], 4);
        CHECK_MEM(t->data, d1, nbytes1, "the mapped block");
    }
    tsnap_reader_free(rd); /* the mapping outlives the reader */
    if (m)
        CHECK_MEM(tsnap_mapping_tensor(m)->data, d1, nbytes1, "the mapping after the reader");
    tsnap_mapping_free(m);
    m = NULL;
    rd = open_reader(tpath("rows.h5"));
    CHECK_ERR(tsnap_mapping_create(&m, rd, "u"), TSNAP_ENOTMAPPABLE);
    CHECK_ERRMSG_HAS("3 part files");
    CHECK(m == NULL);
    tsnap_reader_free(rd);
    free(d1);
    free(d2);
}

const test_entry virtual_tests[] = {
    TEST(test_hdf5_reads_the_global_tensor_of_every_dtype_and_layout),
    TEST(test_relative_sources_read_from_another_directory_after_a_move),
    TEST(test_blocks_outside_the_shape_or_overlapping_are_refused_naming_them),
    TEST(test_a_taken_name_or_a_finished_writer_is_refused),
    TEST(test_percent_signs_in_source_names_are_taken_literally),
    TEST(test_tsnap_reads_every_dtype_and_layout_whole_and_in_slices_across_blocks),
    TEST(test_a_damaged_or_missing_part_is_an_error_naming_the_tensor_and_the_part),
    TEST(test_elements_no_block_covers_read_as_zero_as_in_hdf5),
    TEST(test_mappings_tsnap_cannot_follow_are_read_by_hdf5),
    TEST(test_a_tensor_of_more_parts_than_the_reader_keeps_open_reads_whole),
    TEST(test_a_tensor_of_one_block_maps_it_and_of_several_cannot_be_mapped),
    TEST(test_a_virtual_dataset_whose_source_is_itself_is_refused_not_followed_forever),
    TEST_END,
};

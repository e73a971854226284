/*
 * test_hyperslab.c - tsnap_reader_read with start/count/step equals the
 * naive slice of the expected logical bytes, into contiguous and strided
 * destinations (which must be written only inside the view); bad
 * selections and mismatching destinations give TSNAP_EINVAL and leave the
 * destination untouched.
 */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define SENTINEL 0xa5

/* The elements start + i*step of the case's logical bytes, in C order. */
static void naive_slice(const tcase *c, const int64_t *start, const int64_t *count,
                        const int64_t *step, unsigned char *out)
{
    int64_t cstride[TSNAP_MAX_NDIM], s = 1;
    for (int d = c->ndim - 1; d >= 0; d--) {
        cstride[d] = s;
        s *= c->shape[d];
    }
    int64_t n = nelems(c->ndim, count);
    for (int64_t i = 0; i < n; i++) {
        int64_t rem = i, src = 0;
        for (int d = c->ndim - 1; d >= 0; d--) {
            int64_t k = rem % count[d];
            rem /= count[d];
            src += (start[d] + k * (step ? step[d] : 1)) * cstride[d];
        }
        memcpy(out + i * (int64_t)c->itemsize, c->expected + src * (int64_t)c->itemsize,
               c->itemsize);
    }
}

typedef enum {
    DST_CONTIGUOUS,
    DST_REVERSED,
    DST_PADDED,
    DST_COLUMN_MAJOR,
    DST_UNALIGNED,
    DST_KINDS
} dst_kind;
static const char *DST_NAMES[] = {"contiguous", "reversed", "padded", "column-major",
                                  "unaligned (byte_offset 1)"};

/* A destination view of shape `count` in a buffer filled with SENTINEL. */
typedef struct dst_view {
    unsigned char *buf;
    size_t buf_bytes;
    int64_t shape[TSNAP_MAX_NDIM];
    int64_t strides[TSNAP_MAX_NDIM];
    DLTensor t;
} dst_view;

static void dst_make(dst_view *v, dst_kind kind, tsnap_dtype dtype, int ndim, const int64_t *count)
{
    size_t itemsize = dtype_row_of(dtype)->size;
    int64_t n = nelems(ndim, count);
    memcpy(v->shape, count, sizeof(int64_t) * (size_t)ndim);
    int64_t s = 1;
    uint64_t byte_offset = 0;
    size_t elems = (size_t)n;
    switch (kind) {
    case DST_CONTIGUOUS:
        for (int d = ndim - 1; d >= 0; d--) {
            v->strides[d] = s;
            s *= count[d];
        }
        break;
    case DST_REVERSED:
        for (int d = ndim - 1; d >= 0; d--) {
            v->strides[d] = -s;
            s *= count[d];
        }
        byte_offset = n > 0 ? (uint64_t)(n - 1) * itemsize : 0;
        break;
    case DST_PADDED: /* every other element, one spare element per row */
        s = 2;
        for (int d = ndim - 1; d >= 0; d--) {
            v->strides[d] = s;
            s *= d == ndim - 1 ? count[d] + 1 : count[d];
        }
        elems = (size_t)(s > 0 ? s : 1) + 1;
        break;
    case DST_COLUMN_MAJOR:
        for (int d = 0; d < ndim; d++) {
            v->strides[d] = s;
            s *= count[d];
        }
        break;
    default: /* C order, one byte past an element boundary */
        for (int d = ndim - 1; d >= 0; d--) {
            v->strides[d] = s;
            s *= count[d];
        }
        byte_offset = 1;
        elems += 1;
        break;
    }
    v->buf_bytes = elems * itemsize;
    v->buf = alloc_filled(v->buf_bytes, SENTINEL);
    v->t = cpu_tensor(v->buf, dtype, ndim, v->shape,
                      kind == DST_CONTIGUOUS || kind == DST_UNALIGNED ? NULL : v->strides,
                      byte_offset);
}

/* The view holds `want` and every byte outside it is still SENTINEL. */
static void dst_check(const dst_view *v, const unsigned char *want, size_t itemsize)
{
    int64_t n = nelems(v->t.ndim, v->shape);
    unsigned char *got = alloc_filled((size_t)n * itemsize, 0);
    naive_gather(&v->t, itemsize, 0, got);
    CHECK_MEM(got, want, (size_t)n * itemsize, "destination view");
    free(got);

    unsigned char *covered = alloc_filled(v->buf_bytes, 0);
    int64_t cstride[TSNAP_MAX_NDIM], s = 1;
    for (int d = v->t.ndim - 1; d >= 0; d--) {
        cstride[d] = s;
        s *= v->shape[d];
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t rem = i, off = 0;
        for (int d = 0; d < v->t.ndim; d++) {
            off += (rem / cstride[d]) * (v->t.strides ? v->t.strides[d] : cstride[d]);
            rem %= cstride[d];
        }
        memset(covered + v->t.byte_offset + off * (int64_t)itemsize, 1, itemsize);
    }
    size_t outside = 0;
    for (size_t b = 0; b < v->buf_bytes; b++)
        outside += !covered[b] && v->buf[b] != SENTINEL;
    CHECK_MSG(outside == 0, "%zu bytes outside the destination view were written", outside);
    free(covered);
}

static void check_slice(tsnap_reader *r, const tcase *c, const int64_t *start,
                        const int64_t *count, const int64_t *step)
{
    int64_t n = nelems(c->ndim, count);
    unsigned char *want = alloc_filled((size_t)n * c->itemsize, 0);
    naive_slice(c, start, count, step, want);
    for (int k = 0; k < DST_KINDS; k++) {
        dst_view v;
        dst_make(&v, (dst_kind)k, c->dtype, c->ndim, count);
        char sel[256];
        size_t off = 0;
        for (int d = 0; d < c->ndim && off < sizeof sel; d++)
            off += (size_t)snprintf(sel + off, sizeof sel - off, "%s%lld:%lld:%lld", d ? "," : "",
                                    (long long)start[d], (long long)count[d],
                                    (long long)(step ? step[d] : 1));
        ctx_set("%s [%s] into %s", c->name, sel, DST_NAMES[k]);
        if (CHECK_OK(tsnap_reader_read(r, c->name, start, count, step, &v.t)))
            dst_check(&v, want, c->itemsize);
        free(v.buf);
    }
    ctx_clear();
    free(want);
}

static int hyperslab_worthy(const tcase *c)
{
    return c->ndim >= 1 && c->nbytes > 0 && c->ndim <= 5;
}

static void slices_of_every_case(const optset *o, const char *label)
{
    rng r;
    rng_init(&r, label);
    caseset cs;
    caseset_build(&cs, &r);
    const char *path = tpath("snap.h5");
    if (caseset_write(&cs, path, o) != 0) {
        caseset_free(&cs);
        return;
    }
    tsnap_reader *rd = open_reader(path);
    for (size_t i = 0; i < cs.n; i++) {
        const tcase *c = &cs.v[i];
        if (!hyperslab_worthy(c))
            continue;
        int64_t start[TSNAP_MAX_NDIM], count[TSNAP_MAX_NDIM], step[TSNAP_MAX_NDIM];
        /* the whole tensor, as a selection */
        for (int d = 0; d < c->ndim; d++) {
            start[d] = 0;
            count[d] = c->shape[d];
        }
        check_slice(rd, c, start, count, NULL);
        /* the last element alone */
        for (int d = 0; d < c->ndim; d++) {
            start[d] = c->shape[d] - 1;
            count[d] = 1;
        }
        check_slice(rd, c, start, count, NULL);
        /* random boxes, with and without steps */
        for (int k = 0; k < 4; k++) {
            for (int d = 0; d < c->ndim; d++) {
                start[d] = (int64_t)rng_below(&r, (uint64_t)c->shape[d]);
                step[d] = 1 + (int64_t)rng_below(&r, 3);
                int64_t room = (c->shape[d] - 1 - start[d]) / step[d] + 1;
                count[d] = 1 + (int64_t)rng_below(&r, (uint64_t)room);
            }
            check_slice(rd, c, start, count, (k & 1) ? step : NULL);
        }
    }
    tsnap_reader_free(rd);
    caseset_free(&cs);
}

static void test_hyperslabs_equal_the_naive_slice_for_every_dtype_uncompressed(void)
{
    slices_of_every_case(&OPT_PLAIN, __func__);
}

static void test_hyperslabs_equal_the_naive_slice_across_many_deflated_chunks(void)
{
    slices_of_every_case(&OPT_SMALL_DEFLATE, __func__);
}

static void test_hyperslabs_equal_the_naive_slice_with_chunks_smaller_than_one_row(void)
{
    slices_of_every_case(&OPT_TINY, __func__);
}

/* One (7,11,13) float32 tensor "t" and a 0-d int64 "s" in a fresh file. */
typedef struct small_file {
    tcase c;
    int64_t scalar;
    tsnap_reader *r;
} small_file;

static void small_file_open(small_file *f, const char *label)
{
    rng r;
    rng_init(&r, label);
    memset(f, 0, sizeof *f);
    tcase *c = &f->c;
    snprintf(c->name, sizeof c->name, "t");
    c->dtype = TSNAP_FLOAT32;
    c->itemsize = 4;
    c->ndim = 3;
    c->shape[0] = 7;
    c->shape[1] = 11;
    c->shape[2] = 13;
    c->nbytes = c->base_bytes = 1001 * 4;
    c->base = alloc_filled(c->nbytes, 0);
    rng_fill(&r, c->base, c->nbytes);
    c->expected = c->base;
    c->t = cpu_tensor(c->base, c->dtype, 3, c->shape, NULL, 0);
    f->scalar = (int64_t)rng_next(&r);
    DLTensor s = cpu_tensor(&f->scalar, TSNAP_INT64, 0, NULL, NULL, 0);

    const char *path = tpath("small.h5");
    tsnap_write_options o;
    optset_apply(&OPT_SMALL, &o);
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, &o));
    CHECK_OK(tsnap_writer_put(w, "t", &c->t));
    CHECK_OK(tsnap_writer_put(w, "s", &s));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    f->r = open_reader(path);
}

static void small_file_close(small_file *f)
{
    tsnap_reader_free(f->r);
    free(f->c.base);
}

static void test_zero_count_selection_reads_nothing(void)
{
    small_file f;
    small_file_open(&f, __func__);
    int64_t start[3] = {2, 0, 0}, count[3] = {0, 11, 13};
    unsigned char buf[8];
    memset(buf, SENTINEL, sizeof buf);
    DLTensor dst = cpu_tensor(buf, TSNAP_FLOAT32, 3, count, NULL, 0);
    CHECK_OK(tsnap_reader_read(f.r, "t", start, count, NULL, &dst));
    for (size_t i = 0; i < sizeof buf; i++)
        CHECK(buf[i] == SENTINEL);
    small_file_close(&f);
}

static void test_a_0d_tensor_reads_with_empty_selection_arrays(void)
{
    small_file f;
    small_file_open(&f, __func__);
    int64_t none[1] = {0};
    int64_t got = 0;
    DLTensor dst = cpu_tensor(&got, TSNAP_INT64, 0, none, NULL, 0);
    CHECK_OK(tsnap_reader_read(f.r, "s", none, none, none, &dst));
    CHECK_I64(got, f.scalar);
    got = 0;
    CHECK_OK(tsnap_reader_read(f.r, "s", NULL, NULL, NULL, &dst));
    CHECK_I64(got, f.scalar);
    small_file_close(&f);
}

static void test_bad_selections_return_einval_and_leave_the_destination_untouched(void)
{
    small_file f;
    small_file_open(&f, __func__);
    const int64_t BIG = INT64_MAX;
    struct {
        const char *what;
        int64_t start[3], count[3], step[3];
    } bad[] = {
        {"negative start", {-1, 0, 0}, {1, 1, 1}, {1, 1, 1}},
        {"start at the end", {7, 0, 0}, {1, 1, 1}, {1, 1, 1}},
        {"count past the end", {0, 0, 0}, {8, 1, 1}, {1, 1, 1}},
        {"start + count past the end", {6, 0, 0}, {2, 1, 1}, {1, 1, 1}},
        {"last stepped index past the end", {0, 0, 0}, {4, 1, 1}, {3, 1, 1}},
        {"zero step", {0, 0, 0}, {2, 1, 1}, {0, 1, 1}},
        {"negative step", {6, 0, 0}, {2, 1, 1}, {-1, 1, 1}},
        {"negative count", {0, 0, 0}, {-1, 1, 1}, {1, 1, 1}},
        {"huge start", {0, 0, BIG}, {1, 1, 1}, {1, 1, 1}},
        {"start + count overflows", {0, 0, 5}, {1, 1, BIG}, {1, 1, 1}},
        {"count × step overflows", {0, 0, 0}, {1, 1, 3}, {1, 1, BIG / 2 + 1}},
        {"huge count and step", {0, 0, 0}, {1, 1, BIG}, {1, 1, BIG}},
    };
    float buf[64];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ctx_set("%s", bad[i].what);
        int64_t dshape[3] = {1, 1, 1};
        /* a destination that fits whatever count (clamped: it must not be used) */
        for (int d = 0; d < 3; d++)
            dshape[d] = bad[i].count[d];
        memset(buf, SENTINEL, sizeof buf);
        DLTensor dst = cpu_tensor(buf, TSNAP_FLOAT32, 3, dshape, NULL, 0);
        CHECK_ERR(tsnap_reader_read(f.r, "t", bad[i].start, bad[i].count, bad[i].step, &dst),
                  TSNAP_EINVAL);
        const unsigned char *b = (const unsigned char *)buf;
        size_t touched = 0;
        for (size_t k = 0; k < sizeof buf; k++)
            touched += b[k] != SENTINEL;
        CHECK_MSG(touched == 0, "%zu destination bytes changed", touched);
    }
    ctx_clear();
    /* still usable */
    int64_t start[3] = {1, 2, 3}, count[3] = {2, 3, 4};
    float got[24], want[24];
    naive_slice(&f.c, start, count, NULL, (unsigned char *)want);
    DLTensor dst = cpu_tensor(got, TSNAP_FLOAT32, 3, count, NULL, 0);
    CHECK_OK(tsnap_reader_read(f.r, "t", start, count, NULL, &dst));
    CHECK_MEM(got, want, sizeof want, "slice after the refused ones");
    small_file_close(&f);
}

static void test_mismatching_destinations_return_einval(void)
{
    small_file f;
    small_file_open(&f, __func__);
    int64_t start[3] = {0, 0, 0}, count[3] = {2, 2, 2};
    double buf[64];
    memset(buf, SENTINEL, sizeof buf);

    int64_t wrong_shape[3] = {2, 2, 3};
    DLTensor dst = cpu_tensor(buf, TSNAP_FLOAT32, 3, wrong_shape, NULL, 0);
    ctx_set("dst shape differs from count");
    CHECK_ERR(tsnap_reader_read(f.r, "t", start, count, NULL, &dst), TSNAP_EINVAL);

    dst = cpu_tensor(buf, TSNAP_FLOAT32, 2, count, NULL, 0);
    ctx_set("dst has fewer dimensions");
    CHECK_ERR(tsnap_reader_read(f.r, "t", start, count, NULL, &dst), TSNAP_EINVAL);

    dst = cpu_tensor(buf, TSNAP_FLOAT64, 3, count, NULL, 0);
    ctx_set("dst is float64 for a float32 tensor");
    CHECK_ERR(tsnap_reader_read(f.r, "t", start, count, NULL, &dst), TSNAP_EINVAL);

    dst = cpu_tensor(buf, TSNAP_INT32, 3, count, NULL, 0);
    ctx_set("dst is int32 for a float32 tensor");
    CHECK_ERR(tsnap_reader_read(f.r, "t", start, count, NULL, &dst), TSNAP_EINVAL);

    dst = cpu_tensor(NULL, TSNAP_FLOAT32, 3, count, NULL, 0);
    ctx_set("dst data NULL");
    CHECK_ERR(tsnap_reader_read(f.r, "t", start, count, NULL, &dst), TSNAP_EINVAL);

    dst = cpu_tensor(buf, TSNAP_FLOAT32, 3, NULL, NULL, 0);
    ctx_set("dst shape NULL");
    CHECK_ERR(tsnap_reader_read(f.r, "t", start, count, NULL, &dst), TSNAP_EINVAL);

    ctx_set("dst NULL");
    CHECK_ERR(tsnap_reader_read(f.r, "t", start, count, NULL, NULL), TSNAP_EINVAL);

    int64_t whole_wrong[3] = {7, 11, 12};
    dst = cpu_tensor(buf, TSNAP_FLOAT32, 3, whole_wrong, NULL, 0);
    ctx_set("whole read into a smaller dst");
    CHECK_ERR(tsnap_reader_read(f.r, "t", NULL, NULL, NULL, &dst), TSNAP_EINVAL);

    dst = cpu_tensor(buf, TSNAP_FLOAT32, 3, count, NULL, 0);
    ctx_set("start without count");
    CHECK_ERR(tsnap_reader_read(f.r, "t", start, NULL, NULL, &dst), TSNAP_EINVAL);
    ctx_set("count without start");
    CHECK_ERR(tsnap_reader_read(f.r, "t", NULL, count, NULL, &dst), TSNAP_EINVAL);

    int64_t one[1] = {1};
    dst = cpu_tensor(buf, TSNAP_INT64, 1, one, NULL, 0);
    ctx_set("1-d dst for a 0-d tensor");
    CHECK_ERR(tsnap_reader_read(f.r, "s", NULL, NULL, NULL, &dst), TSNAP_EINVAL);
    ctx_clear();

    const unsigned char *b = (const unsigned char *)buf;
    size_t touched = 0;
    for (size_t k = 0; k < sizeof buf; k++)
        touched += b[k] != SENTINEL;
    CHECK_MSG(touched == 0, "%zu destination bytes changed", touched);
    small_file_close(&f);
}

const test_entry hyperslab_tests[] = {
    TEST(test_hyperslabs_equal_the_naive_slice_for_every_dtype_uncompressed),
    TEST(test_hyperslabs_equal_the_naive_slice_across_many_deflated_chunks),
    TEST(test_hyperslabs_equal_the_naive_slice_with_chunks_smaller_than_one_row),
    TEST(test_zero_count_selection_reads_nothing),
    TEST(test_a_0d_tensor_reads_with_empty_selection_arrays),
    TEST(test_bad_selections_return_einval_and_leave_the_destination_untouched),
    TEST(test_mismatching_destinations_return_einval),
    TEST_END,
};

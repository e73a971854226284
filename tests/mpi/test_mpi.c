/*
 * test_mpi.c - distributed snapshots under a real mpirun launch.
 *
 *   mpirun -n N tsnap_mpi_tests [TEST...]   runs the tests (all: none named)
 *
 * Every rank runs every test.  The global arrays are made from a seed
 * rank 0 draws (printed; TSNAP_TEST_SEED=<seed> repeats a run), so each
 * rank holds the whole oracle and puts its own block of it, as a strided
 * view into it; rank 0 then reads the snapshot back on its own with
 * tsnap_reader_read (the whole tensor and random hyperslabs) and compares
 * with the oracle.  A failed check prints rank, line and cause and aborts
 * the job (MPI_Abort), so that no rank waits forever.
 */
#define TSNAP_STORE_HOOKS
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tsnap_mpi.h"

static int g_rank, g_size;
static char g_dir[4096];
static uint64_t g_seed;
static const char *g_test = "";
static bool g_background; /* MPI_THREAD_MULTIPLE: store saves in the background */

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (!(cond))                                                                      \
            fail_at(__LINE__, #cond, __VA_ARGS__);                                        \
    } while (0)
#define CHECK_OK(call)                                                                    \
    do {                                                                                  \
        int rc_ = (call);                                                                 \
        if (rc_ != 0)                                                                     \
            fail_at(__LINE__, #call, "returned %d: %s", rc_, tsnap_errmsg());             \
    } while (0)

static void fail_at(int line, const char *what, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "FAIL rank %d, %s, line %d: %s: ", g_rank, g_test, line, what);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (seed %" PRIu64 ")\n", g_seed);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* ---- random data ---------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_below(rng *r, uint64_t n) { return n ? rng_next(r) % n : 0; }

/* The same generator on every rank: the seed, the test and `k`. */
static rng rng_for(const char *label, uint64_t k)
{
    rng r = {g_seed ^ (k * 0x2545f4914f6cdd1dull)};
    for (const char *p = label; *p; p++)
        r.s = r.s * 31 + (unsigned char)*p;
    rng_next(&r);
    return r;
}

static void fill(rng *r, void *buf, size_t nelems, tsnap_dtype dtype)
{
    size_t es = tsnap_dtype_size(dtype);
    unsigned char *p = buf;
    for (size_t i = 0; i < nelems * es; i++)
        p[i] = (unsigned char)rng_next(r);
    if (dtype == TSNAP_BOOL)
        for (size_t i = 0; i < nelems; i++)
            p[i] &= 1;
}

/* ---- tensors -------------------------------------------------------- */

static DLTensor host(void *data, tsnap_dtype dtype, int ndim, int64_t *shape, int64_t *strides)
{
    DLTensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.device.device_type = kDLCPU;
    t.ndim = ndim;
    t.shape = shape;
    t.strides = strides;
    CHECK(tsnap_dtype_to_dlpack(&t.dtype, dtype) == 0, "dtype %d", (int)dtype);
    return t;
}

static void c_strides(int ndim, const int64_t *shape, int64_t *strides)
{
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        strides[d] = s;
        s *= shape[d];
    }
}

static int64_t count_of(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= shape[d];
    return n;
}

/* The view of global C-order array `g` for the block at offset/shape. */
static DLTensor view(void *g, tsnap_dtype dtype, int ndim, const int64_t *gshape,
                     const int64_t *offset, int64_t *bshape, int64_t *strides)
{
    c_strides(ndim, gshape, strides);
    int64_t first = 0;
    for (int d = 0; d < ndim; d++)
        first += offset[d] * strides[d];
    DLTensor t = host(g, dtype, ndim, bshape, strides);
    t.byte_offset = (uint64_t)first * tsnap_dtype_size(dtype);
    return t;
}

/* Reads the selection start/count/step of `name` and compares with the
 * same selection of the oracle `g`. */
static void check_read(tsnap_reader *r, const char *name, const void *g, tsnap_dtype dtype,
                       int ndim, const int64_t *gshape, const int64_t *start,
                       const int64_t *count, const int64_t *step)
{
    size_t es = tsnap_dtype_size(dtype);
    int64_t n = count_of(ndim, count), strides[TSNAP_MAX_NDIM], idx[TSNAP_MAX_NDIM] = {0};
    char *got = malloc((size_t)n * es + 1), *want = malloc((size_t)n * es + 1);
    CHECK(got && want, "out of memory");
    DLTensor dst = host(got, dtype, ndim, (int64_t *)count, NULL);
    CHECK_OK(tsnap_reader_read(r, name, start, count, step, &dst));
    c_strides(ndim, gshape, strides);
    for (int64_t k = 0; k < n; k++) {
        int64_t flat = 0;
        for (int d = 0; d < ndim; d++)
            flat += (start[d] + idx[d] * (step ? step[d] : 1)) * strides[d];
        memcpy(want + k * (int64_t)es, (const char *)g + flat * (int64_t)es, es);
        for (int d = ndim - 1; d >= 0; d--) {
            if (++idx[d] < count[d])
                break;
            idx[d] = 0;
        }
    }
    CHECK(memcmp(got, want, (size_t)n * es) == 0, "tensor '%s' (%s) differs from the oracle",
          name, tsnap_dtype_name(dtype));
    free(got);
    free(want);
}

/* The whole tensor and a few random hyperslabs. */
static void check_tensor(tsnap_reader *r, const char *name, const void *g, tsnap_dtype dtype,
                         int ndim, const int64_t *gshape, rng *rr)
{
    tsnap_tensor_info info;
    int64_t start[TSNAP_MAX_NDIM] = {0}, count[TSNAP_MAX_NDIM], step[TSNAP_MAX_NDIM];
    CHECK_OK(tsnap_reader_describe(r, name, &info));
    CHECK(info.dtype == dtype, "'%s': dtype %s, not %s", name, tsnap_dtype_name(info.dtype),
          tsnap_dtype_name(dtype));
    CHECK(info.ndim == ndim, "'%s': %d dimensions", name, info.ndim);
    for (int d = 0; d < ndim; d++)
        CHECK(info.shape[d] == gshape[d], "'%s': axis %d is %lld", name, d,
              (long long)info.shape[d]);
    memcpy(count, gshape, (size_t)ndim * sizeof *count);
    check_read(r, name, g, dtype, ndim, gshape, start, count, NULL);
    if (count_of(ndim, gshape) == 0)
        return;
    for (int k = 0; k < 4; k++) {
        for (int d = 0; d < ndim; d++) {
            start[d] = (int64_t)rng_below(rr, (uint64_t)gshape[d]);
            step[d] = 1 + (int64_t)rng_below(rr, 3);
            int64_t room = (gshape[d] - start[d] + step[d] - 1) / step[d];
            count[d] = 1 + (int64_t)rng_below(rr, (uint64_t)room);
        }
        check_read(r, name, g, dtype, ndim, gshape, start, count, k % 2 ? step : NULL);
    }
}

/* ---- files ---------------------------------------------------------- */

static void path_of(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", g_dir, name);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The entries of a folder ("." and ".." aside); -1 when there is none. */
static int entries_of(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* No file left under `path`: neither the snapshot nor any part. */
static void check_no_file(const char *path)
{
    char parts[4200];
    snprintf(parts, sizeof parts, "%s.parts", path);
    CHECK(!exists(path), "%s exists", path);
    CHECK(entries_of(parts) <= 0, "%s holds %d entries", parts, entries_of(parts));
}

/* The same code and message on every rank. */
static void check_same_everywhere(int rc, const char *msg)
{
    char root[1024];
    int code = rc;
    snprintf(root, sizeof root, "%s", msg);
    MPI_Bcast(&code, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Bcast(root, sizeof root, MPI_CHAR, 0, MPI_COMM_WORLD);
    CHECK(code == rc, "code %d here, %d on rank 0", rc, code);
    CHECK(strcmp(root, msg) == 0, "message '%s' here, '%s' on rank 0", msg, root);
}

/* ---- the collective writer ------------------------------------------ */

/* A decomposition: this rank's block of a tensor of `gshape`. */
typedef enum split {
    ALONG_FIRST, /* uneven row blocks; rank 1 (of 3+) holds none */
    ALONG_LAST,  /* uneven column blocks */
    GRID,        /* a px x py grid of blocks over the first two axes */
} split;

static int64_t cut(int64_t n, int parts, int i, bool uneven)
{
    /* the start of part i of n: uneven ones skew towards the last parts */
    if (!uneven || parts < 2)
        return n * i / parts;
    int64_t w = (int64_t)parts * (parts + 1) / 2, acc = 0;
    for (int k = 0; k < i; k++)
        acc += k + 1;
    return n * acc / w;
}

static void block_of(split how, int ndim, const int64_t *gshape, int rank, int size,
                     int64_t *offset, int64_t *bshape)
{
    for (int d = 0; d < ndim; d++) {
        offset[d] = 0;
        bshape[d] = gshape[d];
    }
    if (how == ALONG_FIRST || (how == GRID && ndim < 2)) {
        /* rank 1 of 3+ gets none: it comes before rank 2's start */
        int parts = size;
        int64_t a = cut(gshape[0], parts, rank, true), b = cut(gshape[0], parts, rank + 1, true);
        if (size >= 3 && rank == 1)
            b = a;
        if (size >= 3 && rank == 0)
            b = cut(gshape[0], parts, 2, true);
        offset[0] = a;
        bshape[0] = b - a;
    } else if (how == ALONG_LAST) {
        int d = ndim - 1;
        int64_t a = cut(gshape[d], size, rank, true), b = cut(gshape[d], size, rank + 1, true);
        offset[d] = a;
        bshape[d] = b - a;
    } else {
        int px = size >= 4 ? 2 : 1, py = size / px;
        int extra = size - px * py; /* ranks beyond the grid hold nothing */
        if (rank >= px * py) {
            offset[0] = 0;
            bshape[0] = 0;
            (void)extra;
            return;
        }
        int i = rank / py, j = rank % py;
        offset[0] = cut(gshape[0], px, i, false);
        bshape[0] = cut(gshape[0], px, i + 1, false) - offset[0];
        offset[1] = cut(gshape[1], py, j, true);
        bshape[1] = cut(gshape[1], py, j + 1, true) - offset[1];
    }
}

static void *make_global(const char *label, uint64_t k, tsnap_dtype dtype, int ndim,
                         const int64_t *gshape)
{
    rng r = rng_for(label, k);
    size_t n = (size_t)count_of(ndim, gshape);
    void *g = malloc(n * tsnap_dtype_size(dtype) + 1);
    CHECK(g != NULL, "out of memory");
    fill(&r, g, n, dtype);
    return g;
}

/* Every dtype, each in another decomposition, compressed or not. */
static void test_every_dtype(void)
{
    char path[4200];
    tsnap_mpi_writer *w;
    tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
    static const tsnap_codec codecs[] = {TSNAP_CODEC_NONE, TSNAP_CODEC_ZSTD, TSNAP_CODEC_DEFLATE,
                                         TSNAP_CODEC_LZ4};
    void *g[TSNAP_DTYPE_COUNT] = {0};
    int64_t gshape[TSNAP_DTYPE_COUNT][3];
    int ndims[TSNAP_DTYPE_COUNT];

    for (int pass = 0; pass < 2; pass++) {
        o.codec = codecs[pass * 2 + (g_size % 2)];
        o.chunk_bytes = 256; /* several chunks per block */
        path_of(path, sizeof path, pass ? "dtypes-compressed.h5" : "dtypes.h5");
        if (pass == 0)
            o.codec = TSNAP_CODEC_NONE;
        CHECK_OK(tsnap_mpi_writer_create(&w, MPI_COMM_WORLD, path, &o));
        for (int dt = 1; dt < TSNAP_DTYPE_COUNT; dt++) {
            char name[64];
            rng r = rng_for("shape", (uint64_t)dt);
            int ndim = 1 + dt % 3;
            ndims[dt] = ndim;
            for (int d = 0; d < ndim; d++)
                gshape[dt][d] = 1 + (int64_t)rng_below(&r, 13) + (d == 0 ? 2 * g_size : 0);
            if (ndim >= 2)
                gshape[dt][1] += g_size;
            g[dt] = make_global("dtype", (uint64_t)(dt + 100 * pass), (tsnap_dtype)dt, ndim,
                                gshape[dt]);
            int64_t off[3], bs[3], st[3];
            block_of((split)((dt + pass) % 3), ndim, gshape[dt], g_rank, g_size, off, bs);
            DLTensor t = view(g[dt], (tsnap_dtype)dt, ndim, gshape[dt], off, bs, st);
            snprintf(name, sizeof name, "dtypes/%s", tsnap_dtype_name((tsnap_dtype)dt));
            CHECK_OK(tsnap_mpi_writer_put_block(w, name, &t, gshape[dt], off, NULL));
        }
        CHECK_OK(tsnap_mpi_writer_commit(w));
        tsnap_mpi_writer_free(w);
        if (g_rank == 0) {
            tsnap_reader *r;
            rng rr = rng_for("slabs", (uint64_t)pass);
            CHECK_OK(tsnap_reader_open(&r, path));
            CHECK_OK(tsnap_reader_verify(r, NULL));
            for (int dt = 1; dt < TSNAP_DTYPE_COUNT; dt++) {
                char name[64];
                snprintf(name, sizeof name, "dtypes/%s", tsnap_dtype_name((tsnap_dtype)dt));
                check_tensor(r, name, g[dt], (tsnap_dtype)dt, ndims[dt], gshape[dt], &rr);
            }
            tsnap_reader_free(r);
        }
        for (int dt = 1; dt < TSNAP_DTYPE_COUNT; dt++)
            free(g[dt]);
        MPI_Barrier(MPI_COMM_WORLD);
    }
}

/* Blocks along the first and the last axis, a 2-D grid, a 3-D tensor cut
 * along its middle axis by the last-axis rule of its transpose, an empty
 * global tensor; replicated tensors and attributes. */
static void test_decompositions_and_replicated(void)
{
    char path[4200];
    tsnap_mpi_writer *w;
    int64_t shapes[4][3] = {{37, 5, 0}, {3, 29 + g_size, 0}, {11, 17, 0}, {0, 4, 0}};
    int ndims[4] = {2, 2, 2, 2};
    split hows[4] = {ALONG_FIRST, ALONG_LAST, GRID, ALONG_FIRST};
    const char *names[4] = {"rows", "cols", "grid", "empty"};
    void *g[4];
    path_of(path, sizeof path, "decompositions.h5");
    CHECK_OK(tsnap_mpi_writer_create(&w, MPI_COMM_WORLD, path, NULL));
    for (int i = 0; i < 4; i++) {
        int64_t off[3], bs[3], st[3];
        g[i] = make_global("decomp", (uint64_t)i, TSNAP_FLOAT32, ndims[i], shapes[i]);
        block_of(hows[i], ndims[i], shapes[i], g_rank, g_size, off, bs);
        DLTensor t = view(g[i], TSNAP_FLOAT32, ndims[i], shapes[i], off, bs, st);
        CHECK_OK(tsnap_mpi_writer_put_block(w, names[i], &t, shapes[i], off, NULL));
    }
    /* replicated: a scalar and a vector (rank 0's is written) */
    double scalar = 2.5;
    int64_t pshape[1] = {7};
    int32_t param[7];
    for (int i = 0; i < 7; i++)
        param[i] = i * 3 - 5;
    DLTensor ts = host(&scalar, TSNAP_FLOAT64, 0, NULL, NULL);
    DLTensor tp = host(param, TSNAP_INT32, 1, pshape, NULL);
    CHECK_OK(tsnap_mpi_writer_put(w, "params/scale", &ts, NULL));
    CHECK_OK(tsnap_mpi_writer_put(w, "params/weights", &tp, NULL));
    int64_t step = 42;
    DLTensor tstep = host(&step, TSNAP_INT64, 0, NULL, NULL);
    CHECK_OK(tsnap_mpi_writer_set_attr(w, NULL, "step", &tstep));
    CHECK_OK(tsnap_mpi_writer_set_attr_string(w, NULL, "run", "heat"));
    CHECK_OK(tsnap_mpi_writer_set_attr_string(w, "rows", "units", "kelvin"));
    CHECK_OK(tsnap_mpi_writer_set_attr(w, "grid", "scale", &ts));
    CHECK_OK(tsnap_mpi_writer_set_attr_string(w, "params/weights", "kind", "int"));
    CHECK_OK(tsnap_mpi_writer_commit(w));
    tsnap_mpi_writer_free(w);
    if (g_rank == 0) {
        tsnap_reader *r;
        tsnap_attr a;
        rng rr = rng_for("decomp-slabs", 0);
        CHECK_OK(tsnap_reader_open(&r, path));
        for (int i = 0; i < 4; i++)
            check_tensor(r, names[i], g[i], TSNAP_FLOAT32, ndims[i], shapes[i], &rr);
        double got_scalar = 0;
        int32_t got_param[7];
        DLTensor ds = host(&got_scalar, TSNAP_FLOAT64, 0, NULL, NULL);
        DLTensor dp = host(got_param, TSNAP_INT32, 1, pshape, NULL);
        CHECK_OK(tsnap_reader_read(r, "params/scale", NULL, NULL, NULL, &ds));
        CHECK_OK(tsnap_reader_read(r, "params/weights", NULL, NULL, NULL, &dp));
        CHECK(got_scalar == 2.5 && memcmp(got_param, param, sizeof param) == 0,
              "replicated tensors differ");
        CHECK_OK(tsnap_reader_attr_find(r, NULL, "run", &a));
        CHECK(strcmp(a.string, "heat") == 0, "root attribute run is '%s'", a.string);
        CHECK_OK(tsnap_reader_attr_find(r, NULL, "step", &a));
        CHECK(*(int64_t *)a.value.data == 42, "root attribute step");
        CHECK_OK(tsnap_reader_attr_find(r, "rows", "units", &a));
        CHECK(strcmp(a.string, "kelvin") == 0, "attribute units of rows is '%s'", a.string);
        CHECK_OK(tsnap_reader_attr_find(r, "grid", "scale", &a));
        CHECK(*(double *)a.value.data == 2.5, "attribute scale of grid");
        CHECK_OK(tsnap_reader_attr_find(r, "params/weights", "kind", &a));
        CHECK(strcmp(a.string, "int") == 0, "attribute kind of params/weights");
        tsnap_reader_free(r);
    }
    for (int i = 0; i < 4; i++)
        free(g[i]);
    MPI_Barrier(MPI_COMM_WORLD);
}

/* A refused commit: the same code and message everywhere, naming the
 * tensor and `needle`, and no file left. */
static void check_refused(const char *path, int rc, const char *tensor, const char *needle)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
    CHECK(rc < 0, "the commit of %s was not refused", path);
    if (g_rank == 0)
        printf("  refused as it should be: %s\n", msg);
    check_same_everywhere(rc, msg);
    CHECK(strstr(msg, tensor) != NULL, "'%s' does not name tensor %s", msg, tensor);
    CHECK(strstr(msg, needle) != NULL, "'%s' does not say '%s'", msg, needle);
    MPI_Barrier(MPI_COMM_WORLD);
    check_no_file(path);
    MPI_Barrier(MPI_COMM_WORLD);
}

/* A refused call: the same code and message everywhere, naming the tensor. */
static void check_refused_quiet(int rc, const char *tensor)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
    CHECK(rc < 0, "not refused");
    check_same_everywhere(rc, msg);
    CHECK(strstr(msg, tensor) != NULL, "'%s' does not name tensor %s", msg, tensor);
}

typedef enum refusal { OVERLAP, GAP, OUTSIDE, DTYPE, SHAPE, MISSING, PUT_FAILS } refusal;

static void test_refusals(void)
{
    static const char *what[] = {"overlap", "gap", "outside", "dtype", "shape", "missing",
                                 "put-fails"};
    static const char *needles[] = {"overlap", "gap", "outside", "float64", "global shape",
                                    "missing on rank", "rank"};
    for (int k = OVERLAP; k <= PUT_FAILS; k++) {
        char path[4200], label[64];
        int last = g_size - 1;
        if (g_size == 1 && (k == OVERLAP || k == DTYPE || k == SHAPE || k == MISSING))
            continue; /* one rank cannot disagree with itself */
        snprintf(label, sizeof label, "refused-%s.h5", what[k]);
        path_of(path, sizeof path, label);
        int64_t gshape[2] = {4 * g_size, 6}, off[2], bs[2], st[2];
        void *g = make_global(label, 0, TSNAP_FLOAT32, 2, gshape);
        double other[64] = {0};
        tsnap_mpi_writer *w;
        CHECK_OK(tsnap_mpi_writer_create(&w, MPI_COMM_WORLD, path, NULL));
        /* a good tensor too: refusing one refuses all */
        block_of(ALONG_FIRST, 2, gshape, g_rank, g_size, off, bs);
        DLTensor good = view(g, TSNAP_FLOAT32, 2, gshape, off, bs, st);
        CHECK_OK(tsnap_mpi_writer_put_block(w, "good", &good, gshape, off, NULL));
        off[0] = 4 * g_rank;
        off[1] = 0;
        bs[0] = 4;
        bs[1] = 6;
        int64_t gs[2] = {gshape[0], gshape[1]};
        tsnap_dtype dt = TSNAP_FLOAT32;
        if (k == OVERLAP && g_rank == 1)
            off[0] -= 1;
        if (k == GAP && g_rank == last)
            bs[0] -= 1;
        if (k == OUTSIDE && g_rank == last)
            off[1] = 1;
        if (k == DTYPE && g_rank == last)
            dt = TSNAP_FLOAT64;
        if (k == SHAPE && g_rank == last)
            gs[1] = 7;
        /* a block that is not the oracle's (another dtype, or outside it)
         * comes from a buffer of its own */
        bool own = g_rank == last && (k == DTYPE || k == OUTSIDE);
        DLTensor t = own ? host(other, dt, 2, bs, NULL) : view(g, dt, 2, gshape, off, bs, st);
        if (k == PUT_FAILS && g_rank == last) {
            CHECK(tsnap_mpi_writer_put_block(w, "u//bad", &t, gs, off, NULL) == TSNAP_EINVAL,
                  "a bad name was accepted");
        } else if (!(k == MISSING && g_rank == last)) {
            CHECK_OK(tsnap_mpi_writer_put_block(w, "u", &t, gs, off, NULL));
        }
        int rc = tsnap_mpi_writer_commit(w);
        tsnap_mpi_writer_free(w);
        check_refused(path, rc, k == PUT_FAILS ? "u//bad" : "'u'", needles[k]);
        free(g);
    }
}

/* Overwriting PATH: the old snapshot stays readable until the new one is
 * committed; then only the new one's parts remain. */
static void test_overwrite(void)
{
    char path[4200], parts[4300];
    int64_t gshape[1] = {10 + 3 * g_size}, off[1], bs[1], st[1];
    void *a = make_global("overwrite", 1, TSNAP_INT16, 1, gshape);
    void *b = make_global("overwrite", 2, TSNAP_INT16, 1, gshape);
    tsnap_mpi_writer *w;
    rng rr = rng_for("overwrite", 3);
    path_of(path, sizeof path, "overwrite.h5");
    snprintf(parts, sizeof parts, "%s.parts", path);
    block_of(ALONG_FIRST, 1, gshape, g_rank, g_size, off, bs);
    for (int round = 0; round < 2; round++) {
        DLTensor t = view(round ? b : a, TSNAP_INT16, 1, gshape, off, bs, st);
        CHECK_OK(tsnap_mpi_writer_create(&w, MPI_COMM_WORLD, path, NULL));
        CHECK_OK(tsnap_mpi_writer_put_block(w, "x", &t, gshape, off, NULL));
        MPI_Barrier(MPI_COMM_WORLD);
        if (round == 1 && g_rank == 0) {
            /* the new parts are written; the old snapshot still reads */
            tsnap_reader *r;
            CHECK_OK(tsnap_reader_open(&r, path));
            check_tensor(r, "x", a, TSNAP_INT16, 1, gshape, &rr);
            tsnap_reader_free(r);
        }
        CHECK_OK(tsnap_mpi_writer_commit(w));
        tsnap_mpi_writer_free(w);
    }
    if (g_rank == 0) {
        tsnap_reader *r;
        CHECK_OK(tsnap_reader_open(&r, path));
        check_tensor(r, "x", b, TSNAP_INT16, 1, gshape, &rr);
        CHECK_OK(tsnap_reader_verify(r, NULL));
        tsnap_reader_free(r);
        CHECK(entries_of(parts) == 1, "%s holds %d save folders, not 1", parts,
              entries_of(parts));
    }
    free(a);
    free(b);
    MPI_Barrier(MPI_COMM_WORLD);
}

/* ---- the distributed store ------------------------------------------ */

/* The tensors of `step` in the store tests: u cut into row blocks, v into
 * column blocks (uneven, some empty), a replicated scalar. */
typedef struct step_data {
    int64_t ushape[2], vshape[2], uoff[2], ub[2], ust[2], voff[2], vb[2], vst[2];
    void *u, *v;
    double dt;
    DLTensor tu, tv, tdt, ttime;
    tsnap_mpi_tensor t[3];
    tsnap_store_attr attrs[3];
    double time;
    int64_t nranks;
    DLTensor tnranks;
} step_data;

/* `wsize`: the number of ranks that save it (the shapes depend on it). */
static void step_make(step_data *d, const char *label, int64_t step, int64_t rows, int wsize)
{
    memset(d, 0, sizeof *d);
    d->ushape[0] = rows + wsize;
    d->ushape[1] = 33;
    d->vshape[0] = 5;
    d->vshape[1] = 17 + 2 * wsize;
    d->nranks = wsize;
    d->u = make_global(label, (uint64_t)step * 2, TSNAP_FLOAT64, 2, d->ushape);
    d->v = make_global(label, (uint64_t)step * 2 + 1, TSNAP_UINT8, 2, d->vshape);
    block_of(ALONG_FIRST, 2, d->ushape, g_rank, g_size, d->uoff, d->ub);
    block_of(ALONG_LAST, 2, d->vshape, g_rank, g_size, d->voff, d->vb);
    d->tu = view(d->u, TSNAP_FLOAT64, 2, d->ushape, d->uoff, d->ub, d->ust);
    d->tv = view(d->v, TSNAP_UINT8, 2, d->vshape, d->voff, d->vb, d->vst);
    d->dt = 0.5 * (double)step;
    d->time = 10.0 * (double)step;
    d->tdt = host(&d->dt, TSNAP_FLOAT64, 0, NULL, NULL);
    d->ttime = host(&d->time, TSNAP_FLOAT64, 0, NULL, NULL);
    d->t[0] = (tsnap_mpi_tensor){"fields/u", &d->tu, d->ushape, d->uoff};
    d->t[1] = (tsnap_mpi_tensor){"fields/v", &d->tv, d->vshape, d->voff};
    d->t[2] = (tsnap_mpi_tensor){"dt", &d->tdt, NULL, NULL};
    d->attrs[0] = (tsnap_store_attr){"time", NULL, &d->ttime};
    d->attrs[1] = (tsnap_store_attr){"run", "heat", NULL};
    d->tnranks = host(&d->nranks, TSNAP_INT64, 0, NULL, NULL);
    d->attrs[2] = (tsnap_store_attr){"nranks", NULL, &d->tnranks};
}

static void step_free(step_data *d)
{
    free(d->u);
    free(d->v);
}

/* Rank 0 alone: the snapshot of `step` holds what step_make made. */
static void step_check(const char *path, const char *label, int64_t step, int64_t rows)
{
    step_data d;
    tsnap_reader *r;
    tsnap_attr a;
    rng rr = rng_for("step-slabs", (uint64_t)step);
    CHECK_OK(tsnap_reader_open(&r, path));
    CHECK_OK(tsnap_reader_attr_find(r, NULL, "nranks", &a));
    step_make(&d, label, step, rows, (int)*(int64_t *)a.value.data);
    CHECK_OK(tsnap_reader_verify(r, NULL));
    check_tensor(r, "fields/u", d.u, TSNAP_FLOAT64, 2, d.ushape, &rr);
    check_tensor(r, "fields/v", d.v, TSNAP_UINT8, 2, d.vshape, &rr);
    double dt = -1;
    DLTensor tdt = host(&dt, TSNAP_FLOAT64, 0, NULL, NULL);
    CHECK_OK(tsnap_reader_read(r, "dt", NULL, NULL, NULL, &tdt));
    CHECK(dt == d.dt, "dt of step %lld is %g", (long long)step, dt);
    CHECK_OK(tsnap_reader_attr_find(r, NULL, "step", &a));
    CHECK(*(int64_t *)a.value.data == step, "attribute step of step %lld", (long long)step);
    CHECK_OK(tsnap_reader_attr_find(r, NULL, "time", &a));
    CHECK(*(double *)a.value.data == d.time, "attribute time of step %lld", (long long)step);
    tsnap_reader_free(r);
    step_free(&d);
}

/* The same listing on every rank, equal to want[n]. */
static void check_steps(tsnap_mpi_store *s, const int64_t *want, size_t n)
{
    int64_t got[64], latest = -1;
    size_t count = 0;
    CHECK_OK(tsnap_mpi_store_steps(s, got, 64, &count));
    CHECK(count == n, "%zu steps listed, not %zu", count, n);
    for (size_t i = 0; i < n; i++)
        CHECK(got[i] == want[i], "step %zu is %lld, not %lld", i, (long long)got[i],
              (long long)want[i]);
    int rc = tsnap_mpi_store_latest(s, &latest);
    if (n == 0) {
        CHECK(rc == TSNAP_ENOTFOUND, "latest of an empty store: %d", rc);
    } else {
        CHECK_OK(rc);
        CHECK(latest == want[n - 1], "latest is %lld", (long long)latest);
    }
    int64_t root = latest;
    MPI_Bcast(&root, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
    CHECK(root == latest, "latest %lld here, %lld on rank 0", (long long)latest, (long long)root);
}

static void test_store_background(void)
{
    char dir[4200], path[4300], parts[4400];
    tsnap_store_options o = TSNAP_STORE_OPTIONS_INIT;
    tsnap_mpi_store *s;
    step_data d[6];
    o.keep_last = 2;
    o.write.codec = TSNAP_CODEC_ZSTD;
    path_of(dir, sizeof dir, "store-bg");
    CHECK_OK(tsnap_mpi_store_open(&s, MPI_COMM_WORLD, dir, &o));
    check_steps(s, NULL, 0);
    for (int64_t step = 0; step < 6; step++) {
        step_make(&d[step], "store", step * 10, 40, g_size);
        CHECK_OK(tsnap_mpi_store_save(s, step * 10, d[step].t, 3, d[step].attrs, 3, step % 3 == 2));
    }
    CHECK_OK(tsnap_mpi_store_wait(s));
    for (int64_t step = 0; step < 6; step++)
        step_free(&d[step]);
    check_steps(s, (int64_t[]){40, 50}, 2);
    if (g_rank == 0) {
        for (int64_t step = 0; step < 6; step++) {
            CHECK_OK(tsnap_mpi_store_path(s, step * 10, path, sizeof path));
            snprintf(parts, sizeof parts, "%s.parts", path);
            if (step < 4) {
                CHECK(!exists(path) && !exists(parts), "step %lld or its parts remain",
                      (long long)step * 10);
            } else {
                CHECK(entries_of(parts) == 1, "%s holds %d save folders", parts, entries_of(parts));
                step_check(path, "store", step * 10, 40);
            }
        }
    }
    tsnap_mpi_store_free(s);
    /* read only: the same listing, and no save */
    o.writable = 0;
    CHECK_OK(tsnap_mpi_store_open(&s, MPI_COMM_WORLD, dir, &o));
    check_steps(s, (int64_t[]){40, 50}, 2);
    step_make(&d[0], "store", 60, 40, g_size);
    int rc = tsnap_mpi_store_save(s, 60, d[0].t, 3, d[0].attrs, 3, 0);
    CHECK(rc == TSNAP_ESTATE, "a read-only store saved: %d", rc);
    check_same_everywhere(rc, tsnap_errmsg());
    step_free(&d[0]);
    tsnap_mpi_store_free(s);
}

static void test_store_failures(void)
{
    char dir[4200], path[4300];
    tsnap_store_options o = TSNAP_STORE_OPTIONS_INIT;
    tsnap_mpi_store *s;
    step_data d;
    struct rlimit old, small;
    path_of(dir, sizeof dir, "store-fail");
    CHECK_OK(tsnap_mpi_store_open(&s, MPI_COMM_WORLD, dir, &o));
    step_make(&d, "fail", 1, 200, g_size);
    CHECK_OK(tsnap_mpi_store_save(s, 1, d.t, 3, d.attrs, 3, 1));
    /* a refusal: checked before anything is written */
    if (g_rank == g_size - 1)
        d.uoff[1] = 1; /* outside */
    int rc = tsnap_mpi_store_save(s, 2, d.t, 3, d.attrs, 3, 0);
    check_refused_quiet(rc, "fields/u");
    d.uoff[1] = 0;
    CHECK_OK(tsnap_mpi_store_path(s, 2, path, sizeof path));
    check_no_file(path);
    /* a full disk on the last rank: its part cannot be written */
    signal(SIGXFSZ, SIG_IGN);
    getrlimit(RLIMIT_FSIZE, &old);
    small = old;
    small.rlim_cur = 256 << 10; /* step 2's part is larger, step 3's smaller */
    if (g_rank == g_size - 1)
        CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0, "setrlimit: %s", strerror(errno));
    /* the failure comes back once, on every rank alike: from this save
     * when saves wait, else from the next save or the wait */
    int rcs[3];
    char msgs[3][1024];
    step_data big, tiny;
    step_make(&big, "fail-big", 2, 8000 * g_size, g_size);
    step_make(&tiny, "fail-tiny", 3, 4, g_size);
    rcs[0] = tsnap_mpi_store_save(s, 2, big.t, 3, big.attrs, 3, 0);
    snprintf(msgs[0], sizeof msgs[0], "%s", rcs[0] < 0 ? tsnap_errmsg() : "");
    CHECK((rcs[0] == 0) == g_background, "save: %d (%s)", rcs[0], msgs[0]);
    MPI_Barrier(MPI_COMM_WORLD);
    rcs[1] = tsnap_mpi_store_save(s, 3, tiny.t, 3, tiny.attrs, 3, 0);
    snprintf(msgs[1], sizeof msgs[1], "%s", rcs[1] < 0 ? tsnap_errmsg() : "");
    rcs[2] = tsnap_mpi_store_wait(s);
    snprintf(msgs[2], sizeof msgs[2], "%s", rcs[2] < 0 ? tsnap_errmsg() : "");
    int failures = 0;
    char needle[32];
    snprintf(needle, sizeof needle, "rank %d", g_size - 1);
    for (int k = 0; k < 3; k++) {
        check_same_everywhere(rcs[k], msgs[k]);
        if (rcs[k] < 0) {
            failures++;
            CHECK(strstr(msgs[k], needle) != NULL, "'%s' does not name %s", msgs[k], needle);
            CHECK(strstr(msgs[k], "step-000000000002") != NULL, "'%s' does not name the step",
                  msgs[k]);
            if (g_rank == 0)
                printf("  failed as it should: %s\n", msgs[k]);
        }
    }
    CHECK(failures == 1, "the failure came back %d times", failures);
    if (g_rank == g_size - 1)
        CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0, "setrlimit: %s", strerror(errno));
    MPI_Barrier(MPI_COMM_WORLD);
    check_no_file(path);
    CHECK_OK(tsnap_mpi_store_wait(s)); /* reported once */
    /* step 3 was saved unless its save returned step 2's failure */
    if (rcs[1] < 0)
        check_steps(s, (int64_t[]){1}, 1);
    else
        check_steps(s, (int64_t[]){1, 3}, 2);
    /* and the store goes on */
    CHECK_OK(tsnap_mpi_store_save(s, 2, d.t, 3, d.attrs, 3, 0));
    CHECK_OK(tsnap_mpi_store_wait(s));
    if (rcs[1] < 0)
        check_steps(s, (int64_t[]){1, 2}, 2);
    else
        check_steps(s, (int64_t[]){1, 2, 3}, 3);
    if (g_rank == 0) {
        CHECK_OK(tsnap_mpi_store_path(s, 1, path, sizeof path));
        step_check(path, "fail", 1, 200);
    }
    step_free(&d);
    step_free(&big);
    step_free(&tiny);
    tsnap_mpi_store_free(s);
}

/* ---- killed saves (tests/mpi/kill.sh runs these modes) ----------------- */

#define KILL_ROWS 300

/* Saves steps into the store in g_dir until killed (or 400 steps). */
static void mode_store_loop(void)
{
    char pidfile[4300];
    tsnap_store_options o = TSNAP_STORE_OPTIONS_INIT;
    tsnap_mpi_store *s;
    int64_t start = 0;
    o.keep_last = 3;
    CHECK_OK(tsnap_mpi_store_open(&s, MPI_COMM_WORLD, g_dir, &o));
    if (tsnap_mpi_store_latest(s, &start) == 0)
        start++;
    snprintf(pidfile, sizeof pidfile, "%s/pid-%d", g_dir, g_rank);
    FILE *f = fopen(pidfile, "w");
    CHECK(f != NULL, "cannot write %s", pidfile);
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
    for (int64_t step = start; step < start + 400; step++) {
        step_data d;
        step_make(&d, "kill", step, KILL_ROWS, g_size);
        CHECK_OK(tsnap_mpi_store_save(s, step, d.t, 3, d.attrs, 3, step % 2));
        step_free(&d);
    }
    CHECK_OK(tsnap_mpi_store_wait(s));
    tsnap_mpi_store_free(s);
}

/* One process, no writer: every listed step is whole and holds its data. */
static void mode_store_check(void)
{
    tsnap_store_options o = TSNAP_STORE_OPTIONS_INIT;
    tsnap_store *s;
    int64_t steps[64];
    size_t n = 0;
    char path[4300];
    o.writable = 0;
    CHECK(g_size == 1, "store_check runs on one rank");
    CHECK_OK(tsnap_store_open(&s, g_dir, &o));
    CHECK_OK(tsnap_store_steps(s, steps, 64, &n));
    for (size_t i = 0; i < n && i < 64; i++) {
        CHECK_OK(tsnap_store_path(s, steps[i], path, sizeof path));
        step_check(path, "kill", steps[i], KILL_ROWS);
    }
    printf("  %zu committed steps whole after the kill\n", n);
    tsnap_store_free(s);
}

/* Reopens the store (which removes what the killed saves left), checks
 * that nothing is left, and saves on. */
static void mode_store_reopen(void)
{
    tsnap_store_options o = TSNAP_STORE_OPTIONS_INIT;
    tsnap_mpi_store *s;
    int64_t start = 0;
    o.keep_last = 3;
    CHECK_OK(tsnap_mpi_store_open(&s, MPI_COMM_WORLD, g_dir, &o));
    if (g_rank == 0) {
        DIR *d = opendir(g_dir);
        struct dirent *e;
        CHECK(d != NULL, "cannot list %s", g_dir);
        while ((e = readdir(d))) {
            char full[4400], snap[4400];
            size_t len = strlen(e->d_name);
            snprintf(full, sizeof full, "%s/%s", g_dir, e->d_name);
            CHECK(strstr(e->d_name, "tsnap-tmp") == NULL, "%s was left", full);
            if (len > 6 && strcmp(e->d_name + len - 6, ".parts") == 0) {
                snprintf(snap, sizeof snap, "%s/%.*s", g_dir, (int)(len - 6), e->d_name);
                CHECK(exists(snap), "%s has no snapshot", full);
                CHECK(entries_of(full) == 1, "%s holds %d save folders", full, entries_of(full));
            }
        }
        closedir(d);
    }
    if (tsnap_mpi_store_latest(s, &start) == 0)
        start++;
    for (int64_t step = start; step < start + 2; step++) {
        step_data d;
        step_make(&d, "kill", step, KILL_ROWS, g_size);
        CHECK_OK(tsnap_mpi_store_save(s, step, d.t, 3, d.attrs, 3, 0));
        step_free(&d);
    }
    CHECK_OK(tsnap_mpi_store_wait(s));
    tsnap_mpi_store_free(s);
    if (g_rank == 0) {
        char path[4300];
        snprintf(path, sizeof path, "%s/step-%012lld.h5", g_dir, (long long)start + 1);
        step_check(path, "kill", start + 1, KILL_ROWS);
    }
}

/* ---- main ----------------------------------------------------------- */

typedef struct test {
    const char *name;
    void (*fn)(void);
} test;

static const test tests[] = {
    {"every_dtype", test_every_dtype},
    {"decompositions_and_replicated", test_decompositions_and_replicated},
    {"refusals", test_refusals},
    {"overwrite", test_overwrite},
    {"store_background", test_store_background},
    {"store_failures", test_store_failures},
};

int main(int argc, char **argv)
{
    int provided;
    /* TSNAP_TEST_MPI_THREADS=serialized: an MPI without MPI_THREAD_MULTIPLE,
     * where every store save waits */
    const char *level = getenv("TSNAP_TEST_MPI_THREADS");
    bool serialized = level && strcmp(level, "serialized") == 0;
    MPI_Init_thread(&argc, &argv, serialized ? MPI_THREAD_SERIALIZED : MPI_THREAD_MULTIPLE,
                    &provided);
    g_background = provided >= MPI_THREAD_MULTIPLE;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    static const test modes[] = {
        {"store_loop", mode_store_loop},
        {"store_check", mode_store_check},
        {"store_reopen", mode_store_reopen},
    };
    for (size_t i = 0; argc == 3 && i < sizeof modes / sizeof *modes; i++)
        if (strcmp(argv[1], modes[i].name) == 0) {
            const char *seed = getenv("TSNAP_TEST_SEED");
            g_seed = seed ? strtoull(seed, NULL, 10) : 1;
            snprintf(g_dir, sizeof g_dir, "%s", argv[2]);
            g_test = modes[i].name;
            modes[i].fn();
            MPI_Finalize();
            return 0;
        }
    if (g_rank == 0) {
        const char *s = getenv("TSNAP_TEST_SEED");
        const char *tmp = getenv("TMPDIR");
        g_seed = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
        snprintf(g_dir, sizeof g_dir, "%s/tsnap-mpi-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(g_dir)) {
            fprintf(stderr, "cannot make a temporary folder: %s\n", strerror(errno));
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        printf("tsnap_mpi_tests: %d ranks, seed %" PRIu64 " (TSNAP_TEST_SEED), in %s; store saves "
               "%s\n",
               g_size, g_seed, g_dir,
               provided >= MPI_THREAD_MULTIPLE ? "in the background (MPI_THREAD_MULTIPLE)"
                                               : "waiting (no MPI_THREAD_MULTIPLE)");
        fflush(stdout);
    }
    MPI_Bcast(&g_seed, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    MPI_Bcast(g_dir, sizeof g_dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    for (size_t i = 0; i < sizeof tests / sizeof *tests; i++) {
        bool chosen = argc < 2;
        for (int a = 1; a < argc; a++)
            chosen |= strcmp(argv[a], tests[i].name) == 0;
        if (!chosen)
            continue;
        g_test = tests[i].name;
        tests[i].fn();
        MPI_Barrier(MPI_COMM_WORLD);
        if (g_rank == 0) {
            printf("ok %s\n", tests[i].name);
            fflush(stdout);
        }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank == 0 && !getenv("TSNAP_TEST_KEEP")) {
        char cmd[4200 + 16];
        snprintf(cmd, sizeof cmd, "rm -rf -- '%s'", g_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", g_dir);
    }
    MPI_Finalize();
    return 0;
}

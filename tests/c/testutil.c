/* testutil.c - shared helpers of the CUnit suites (see testutil.h). */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

uint64_t g_seed;

/* ------------------------------------------------------------------ */
/* Random data: xoshiro256** seeded by splitmix64                       */
/* ------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void rng_init(rng *r, const char *label)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a of the label */
    for (const char *p = label; p && *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
    uint64_t x = g_seed ^ h;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t rng_below(rng *r, uint64_t n) { return n ? rng_next(r) % n : 0; }

void rng_fill(rng *r, void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n >= 8) {
        uint64_t v = rng_next(r);
        memcpy(p, &v, 8);
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t v = rng_next(r);
        memcpy(p, &v, n);
    }
}

void rng_fill_dtype(rng *r, void *buf, size_t nelems, tsnap_dtype dtype)
{
    const dtype_row *row = dtype_row_of(dtype);
    rng_fill(r, buf, nelems * row->size);
    if (dtype == TSNAP_BOOL) {
        unsigned char *p = buf;
        for (size_t i = 0; i < nelems; i++) {
            uint64_t v = rng_next(r);
            p[i] = (v % 5 == 0) ? 0 : (v % 7 == 0) ? 1 : (unsigned char)(2 + (v >> 8) % 254);
        }
    }
}

/* ------------------------------------------------------------------ */
/* Checks                                                              */
/* ------------------------------------------------------------------ */

static char g_ctx[256];

void ctx_set(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_ctx, sizeof g_ctx, fmt, ap);
    va_end(ap);
}

void ctx_clear(void) { g_ctx[0] = '\0'; }

void check_pass(const char *file, int line)
{
    CU_assertImplementation(CU_TRUE, (unsigned)line, "", file, "", CU_FALSE);
}

void check_fail(const char *file, int line, int fatal, const char *fmt, ...)
{
    char msg[2048];
    size_t off = 0;
    if (g_ctx[0])
        off = (size_t)snprintf(msg, sizeof msg, "[%s] ", g_ctx);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + off, sizeof msg - off, fmt, ap);
    va_end(ap);
    CU_assertImplementation(CU_FALSE, (unsigned)line, msg, file, "", fatal ? CU_TRUE : CU_FALSE);
}

int check_rc(int got, int want, int need_msg, const char *expr, const char *wname,
             const char *file, int line, int fatal)
{
    if (got != want) {
        check_fail(file, line, fatal, "%s returned %d (%s), expected %s (%d); errmsg: \"%s\"",
                   expr, got, tsnap_strerror(got), wname, want, tsnap_errmsg());
        return 0;
    }
    if (need_msg && tsnap_errmsg()[0] == '\0') {
        check_fail(file, line, fatal, "%s returned %s but tsnap_errmsg() is empty", expr, wname);
        return 0;
    }
    check_pass(file, line);
    return 1;
}

int check_neg(int got, const char *expr, const char *file, int line)
{
    if (got >= 0) {
        check_fail(file, line, 0, "%s returned %d, expected a negative TSNAP_E* code", expr, got);
        return 0;
    }
    if (tsnap_errmsg()[0] == '\0') {
        check_fail(file, line, 0, "%s returned %d (%s) but tsnap_errmsg() is empty", expr, got,
                   tsnap_strerror(got));
        return 0;
    }
    check_pass(file, line);
    return 1;
}

int check_str(const char *got, const char *want, const char *expr, const char *file, int line)
{
    if (!got || !want || strcmp(got, want) != 0) {
        check_fail(file, line, 0, "%s is \"%s\", expected \"%s\"", expr, got ? got : "(null)",
                   want ? want : "(null)");
        return 0;
    }
    check_pass(file, line);
    return 1;
}

int check_i64(int64_t got, int64_t want, const char *expr, const char *file, int line)
{
    if (got != want) {
        check_fail(file, line, 0, "%s is %lld, expected %lld", expr, (long long)got,
                   (long long)want);
        return 0;
    }
    check_pass(file, line);
    return 1;
}

int check_mem(const void *got, const void *want, size_t n, const char *what, const char *file,
              int line)
{
    if (n == 0 || memcmp(got, want, n) == 0) {
        check_pass(file, line);
        return 1;
    }
    const unsigned char *g = got, *w = want;
    size_t i = 0, ndiff = 0;
    while (g[i] == w[i])
        i++;
    for (size_t j = i; j < n; j++)
        ndiff += g[j] != w[j];
    check_fail(file, line, 0,
               "%s: %zu of %zu bytes differ; first at byte %zu: got 0x%02x, expected 0x%02x",
               what, ndiff, n, i, g[i], w[i]);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Temporary directories                                               */
/* ------------------------------------------------------------------ */

static char g_tdir[PATH_MAX];

void test_setup(void)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    snprintf(g_tdir, sizeof g_tdir, "%s/tsnap-test-XXXXXX", base);
    if (!mkdtemp(g_tdir)) {
        fprintf(stderr, "mkdtemp(%s): %s\n", g_tdir, strerror(errno));
        g_tdir[0] = '\0';
    }
    ctx_clear();
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0)
        fprintf(stderr, "remove(%s): %s\n", path, strerror(errno));
    return 0;
}

void test_teardown(void)
{
    ctx_clear();
    if (!g_tdir[0])
        return;
    const char *keep = getenv("TSNAP_TEST_KEEP");
    if (keep && *keep && strcmp(keep, "0") != 0)
        fprintf(stderr, "(kept %s)\n", g_tdir);
    else
        nftw(g_tdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    g_tdir[0] = '\0';
}

const char *tdir(void) { return g_tdir; }

const char *tpath(const char *name)
{
    static char ring[64][PATH_MAX];
    static unsigned next;
    char *p = ring[next++ % 64];
    snprintf(p, PATH_MAX, "%s/%s", g_tdir, name);
    return p;
}

int path_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

unsigned char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf && size)
        *size = (size_t)n;
    return buf;
}

int spit(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

int count_temp_files(const char *dir, const char *base)
{
    char prefix[PATH_MAX];
    snprintf(prefix, sizeof prefix, ".%s.", base);
    const char *suffix = ".tsnap-tmp";
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name), pl = strlen(prefix), sl = strlen(suffix);
        if (len > pl + sl && strncmp(e->d_name, prefix, pl) == 0 &&
            strcmp(e->d_name + len - sl, suffix) == 0)
            n++;
    }
    closedir(d);
    return n;
}

int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* ------------------------------------------------------------------ */
/* Data types                                                          */
/* ------------------------------------------------------------------ */

const dtype_row DTYPES[NDTYPES] = {
    {TSNAP_BOOL, "bool", 1, TSNAP_DL_BOOL, 8},
    {TSNAP_INT8, "int8", 1, kDLInt, 8},
    {TSNAP_INT16, "int16", 2, kDLInt, 16},
    {TSNAP_INT32, "int32", 4, kDLInt, 32},
    {TSNAP_INT64, "int64", 8, kDLInt, 64},
    {TSNAP_UINT8, "uint8", 1, kDLUInt, 8},
    {TSNAP_UINT16, "uint16", 2, kDLUInt, 16},
    {TSNAP_UINT32, "uint32", 4, kDLUInt, 32},
    {TSNAP_UINT64, "uint64", 8, kDLUInt, 64},
    {TSNAP_FLOAT16, "float16", 2, kDLFloat, 16},
    {TSNAP_BFLOAT16, "bfloat16", 2, kDLBfloat, 16},
    {TSNAP_FLOAT32, "float32", 4, kDLFloat, 32},
    {TSNAP_FLOAT64, "float64", 8, kDLFloat, 64},
    {TSNAP_FLOAT8_E4M3FN, "float8_e4m3fn", 1, TSNAP_DL_FLOAT8_E4M3FN, 8},
    {TSNAP_FLOAT8_E5M2, "float8_e5m2", 1, TSNAP_DL_FLOAT8_E5M2, 8},
    {TSNAP_COMPLEX32, "complex32", 4, kDLComplex, 32},
    {TSNAP_COMPLEX64, "complex64", 8, kDLComplex, 64},
    {TSNAP_COMPLEX128, "complex128", 16, kDLComplex, 128},
};

const dtype_row *dtype_row_of(tsnap_dtype dtype)
{
    for (int i = 0; i < NDTYPES; i++)
        if (DTYPES[i].dtype == dtype)
            return &DTYPES[i];
    return NULL;
}

DLDataType dl_type(tsnap_dtype dtype)
{
    const dtype_row *row = dtype_row_of(dtype);
    DLDataType t = {row->code, row->bits, 1};
    return t;
}

int is_float_dtype(tsnap_dtype d)
{
    return d == TSNAP_FLOAT16 || d == TSNAP_BFLOAT16 || d == TSNAP_FLOAT32 ||
           d == TSNAP_FLOAT64 || d == TSNAP_FLOAT8_E4M3FN || d == TSNAP_FLOAT8_E5M2 ||
           d == TSNAP_COMPLEX32 || d == TSNAP_COMPLEX64 || d == TSNAP_COMPLEX128;
}

/* ------------------------------------------------------------------ */
/* Tensors and oracles                                                 */
/* ------------------------------------------------------------------ */

int64_t nelems(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    return n;
}

DLTensor cpu_tensor(void *data, tsnap_dtype dtype, int ndim, int64_t *shape, int64_t *strides,
                    uint64_t byte_offset)
{
    DLTensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.device.device_type = kDLCPU;
    t.device.device_id = 0;
    t.ndim = ndim;
    t.dtype = dl_type(dtype);
    t.shape = shape;
    t.strides = strides;
    t.byte_offset = byte_offset;
    return t;
}

void naive_gather(const DLTensor *t, size_t itemsize, int is_bool, unsigned char *out)
{
    int64_t n = nelems(t->ndim, t->shape);
    int64_t cstride[TSNAP_MAX_NDIM + 1];
    int64_t idx[TSNAP_MAX_NDIM + 1];
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        cstride[d] = s;
        s *= t->shape[d];
    }
    const unsigned char *base = (const unsigned char *)t->data + t->byte_offset;
    for (int64_t i = 0; i < n; i++) {
        int64_t rem = i, off = 0;
        for (int d = 0; d < t->ndim; d++) {
            idx[d] = rem / cstride[d];
            rem %= cstride[d];
            off += idx[d] * (t->strides ? t->strides[d] : cstride[d]);
        }
        const unsigned char *src = base + off * (int64_t)itemsize;
        if (is_bool)
            out[i] = src[0] != 0;
        else
            memcpy(out + i * (int64_t)itemsize, src, itemsize);
    }
}

void xxh3_tag(const void *p, size_t n, char out[40])
{
    XXH64_hash_t h = XXH3_64bits(p, n);
    snprintf(out, 40, "xxh3-64:%016llx", (unsigned long long)h);
}

int chunk_rule(int ndim, const int64_t *shape, size_t itemsize, size_t chunk_bytes, int unfiltered,
               int64_t *chunk)
{
    if (chunk_bytes == 0)
        chunk_bytes = TSNAP_DEFAULT_CHUNK_BYTES;
    int a = ndim - 1;
    for (int d = 0; d < ndim; d++) {
        uint64_t inner = itemsize;
        for (int e = d + 1; e < ndim; e++)
            inner *= (uint64_t)shape[e];
        if (inner > chunk_bytes && d < ndim - 1) {
            chunk[d] = 1;
            continue;
        }
        int64_t k = (int64_t)(chunk_bytes / inner);
        if (k < 1)
            k = 1;
        if (k > shape[d])
            k = shape[d];
        int64_t before = 1;
        for (int e = 0; e < d; e++)
            before *= shape[e];
        /* Unfiltered: k divides the axis unless it is the first that is not 1. */
        while (unfiltered && before > 1 && shape[d] % k != 0)
            k--;
        chunk[d] = k;
        a = d;
        for (int e = d + 1; e < ndim; e++)
            chunk[e] = shape[e];
        break;
    }
    /* Flat iff the only partial chunk along axis a is the very last chunk. */
    int64_t before = 1;
    for (int d = 0; d < a; d++)
        before *= shape[d];
    return ndim == 0 || shape[a] % chunk[a] == 0 || before == 1;
}

/* ------------------------------------------------------------------ */
/* The dtype × layout matrix                                           */
/* ------------------------------------------------------------------ */

typedef struct layout_def {
    const char *label;
    int ndim;
    int64_t shape[5];
    int64_t strides[5];
    int has_strides;
    int64_t offset_elems;
    int64_t base_elems;
    int64_t offset_bytes; /* added to byte_offset: not a multiple of the itemsize */
} layout_def;

static const layout_def LAYOUTS[] = {
    {"scalar", 0, {0}, {0}, 0, 0, 1, 0},
    {"scalar_at_offset", 0, {0}, {0}, 0, 3, 5, 0},
    {"empty", 1, {0}, {0}, 0, 0, 0, 0},
    {"empty_3d", 3, {3, 0, 2}, {0}, 0, 0, 0, 0},
    {"one", 1, {1}, {0}, 0, 0, 1, 0},
    {"primes", 3, {7, 11, 13}, {0}, 0, 0, 1001, 0},
    {"primes_explicit_strides", 3, {7, 11, 13}, {143, 13, 1}, 1, 0, 1001, 0},
    {"five_d", 5, {2, 3, 1, 5, 7}, {0}, 0, 0, 210, 0},
    /* every other along axes 0 and 4, axis 1 reversed, of a (4,3,2,5,14) block */
    {"five_d_strided", 5, {2, 3, 1, 5, 7}, {840, -140, 70, 14, 2}, 1, 280, 1680, 0},
    /* every other element of a (14,22) block */
    {"every_other", 2, {7, 11}, {44, 2}, 1, 0, 308, 0},
    /* the transpose of a (7,13) block */
    {"transposed", 2, {13, 7}, {1, 13}, 1, 0, 91, 0},
    /* axes (2,0,1) of a (7,11,13) block */
    {"permuted", 3, {13, 7, 11}, {1, 143, 13}, 1, 0, 1001, 0},
    /* both axes reversed: byte_offset points at the last element */
    {"negative", 2, {7, 11}, {-11, -1}, 1, 76, 77, 0},
    /* rows reversed: byte_offset points at the last row */
    {"negative_rows", 2, {7, 11}, {-11, 1}, 1, 66, 77, 0},
    /* one row broadcast to 5 */
    {"broadcast_rows", 2, {5, 7}, {0, 1}, 1, 0, 7, 0},
    /* one element broadcast to (4,3) */
    {"broadcast_all", 2, {4, 3}, {0, 0}, 1, 0, 1, 0},
    /* rows 2-4, columns 5-8 of a (7,11) block */
    {"subblock", 2, {3, 4}, {11, 1}, 1, 27, 77, 0},
    {"long", 1, {1000}, {0}, 0, 0, 1000, 0},
    /* data one byte past an element boundary: no aligned loads allowed */
    {"unaligned", 2, {5, 3}, {0}, 0, 0, 16, 1},
    {"unaligned_transposed", 2, {3, 5}, {1, 3}, 1, 0, 16, 1},
};
#define NLAYOUTS (sizeof LAYOUTS / sizeof LAYOUTS[0])

unsigned char *alloc_filled(size_t n, int fill)
{
    unsigned char *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    memset(p, fill, n ? n : 1);
    return p;
}

static void case_finish(tcase *c, rng *r)
{
    c->base = alloc_filled(c->base_bytes, 0);
    rng_fill_dtype(r, c->base, c->base_bytes / c->itemsize, c->dtype);
    c->t = cpu_tensor(c->base, c->dtype, c->ndim, c->shape, c->has_strides ? c->strides : NULL,
                      c->byte_offset);
    c->nbytes = (size_t)nelems(c->ndim, c->shape) * c->itemsize;
    c->expected = alloc_filled(c->nbytes, 0);
    naive_gather(&c->t, c->itemsize, c->dtype == TSNAP_BOOL, c->expected);
}

void caseset_build(caseset *cs, rng *r)
{
    size_t cap = NDTYPES * (NLAYOUTS + 1);
    cs->v = calloc(cap, sizeof *cs->v);
    cs->n = 0;
    for (int di = 0; di < NDTYPES; di++) {
        const dtype_row *row = &DTYPES[di];
        for (size_t li = 0; li < NLAYOUTS; li++) {
            const layout_def *L = &LAYOUTS[li];
            tcase *c = &cs->v[cs->n++];
            snprintf(c->name, sizeof c->name, "%s/%s", row->name, L->label);
            c->layout = L->label;
            c->dtype = row->dtype;
            c->itemsize = row->size;
            c->ndim = L->ndim;
            for (int d = 0; d < L->ndim; d++) {
                c->shape[d] = L->shape[d];
                c->strides[d] = L->strides[d];
            }
            c->has_strides = L->has_strides;
            c->byte_offset = (uint64_t)L->offset_elems * row->size + (uint64_t)L->offset_bytes;
            c->base_bytes = (size_t)L->base_elems * row->size;
            case_finish(c, r);
        }
        /* 32 dimensions: HDF5's limit.  complex32 needs one more axis in
         * the file, so it cannot have 32 (test_args covers that). */
        if (row->dtype != TSNAP_COMPLEX32) {
            tcase *c = &cs->v[cs->n++];
            snprintf(c->name, sizeof c->name, "%s/ndim32", row->name);
            c->layout = "ndim32";
            c->dtype = row->dtype;
            c->itemsize = row->size;
            c->ndim = TSNAP_MAX_NDIM;
            for (int d = 0; d < TSNAP_MAX_NDIM; d++)
                c->shape[d] = 1;
            c->shape[0] = 2;
            c->shape[TSNAP_MAX_NDIM - 1] = 3;
            c->has_strides = 0;
            c->byte_offset = 0;
            c->base_bytes = 6 * row->size;
            case_finish(c, r);
        }
    }
}

void caseset_free(caseset *cs)
{
    for (size_t i = 0; i < cs->n; i++) {
        free(cs->v[i].base);
        free(cs->v[i].expected);
    }
    free(cs->v);
    cs->v = NULL;
    cs->n = 0;
}

const tcase *caseset_find(const caseset *cs, const char *name)
{
    for (size_t i = 0; i < cs->n; i++)
        if (strcmp(cs->v[i].name, name) == 0)
            return &cs->v[i];
    return NULL;
}

void optset_apply(const optset *o, tsnap_write_options *opts)
{
    tsnap_write_options init = TSNAP_WRITE_OPTIONS_INIT;
    *opts = init;
    if (!o)
        return;
    opts->codec = o->codec;
    opts->level = o->level;
    opts->shuffle = o->shuffle;
    opts->chunk_bytes = o->chunk_bytes;
    opts->checksum = !o->no_checksum;
}

int caseset_write(const caseset *cs, const char *path, const optset *o)
{
    tsnap_write_options opts;
    optset_apply(o, &opts);
    tsnap_writer *w = NULL;
    if (!CHECK_OK(tsnap_writer_create(&w, path, &opts)))
        return -1;
    int ok = 1;
    for (size_t i = 0; i < cs->n; i++) {
        ctx_set("%s [%s]", cs->v[i].name, o ? o->label : "defaults");
        ok &= CHECK_OK(tsnap_writer_put(w, cs->v[i].name, &cs->v[i].t));
    }
    ctx_clear();
    ok &= CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    return ok ? 0 : -1;
}

int case_chunked(const tcase *c) { return c->ndim > 0 && c->nbytes > 0; }

int case_filtered(const tcase *c, const optset *o)
{
    return o && o->codec != TSNAP_CODEC_NONE && case_chunked(c);
}

int case_shuffled(const tcase *c, const optset *o)
{
    if (!case_filtered(c, o))
        return 0;
    return o->shuffle == 1 || (o->shuffle == -1 && c->itemsize > 1);
}

const optset OPT_PLAIN = {"uncompressed", TSNAP_CODEC_NONE, 0, -1, 0, 0};
const optset OPT_DEFLATE = {"deflate", TSNAP_CODEC_DEFLATE, 0, -1, 0, 0};
const optset OPT_DEFLATE_NO_SHUFFLE = {"deflate, shuffle off", TSNAP_CODEC_DEFLATE, 0, 0, 0, 0};
const optset OPT_DEFLATE_SHUFFLE = {"deflate, shuffle on", TSNAP_CODEC_DEFLATE, 0, 1, 0, 0};
const optset OPT_DEFLATE_9 = {"deflate level 9", TSNAP_CODEC_DEFLATE, 9, -1, 0, 0};
const optset OPT_SMALL = {"uncompressed, 256-byte chunks", TSNAP_CODEC_NONE, 0, -1, 256, 0};
const optset OPT_SMALL_DEFLATE = {"deflate, 256-byte chunks", TSNAP_CODEC_DEFLATE, 0, -1, 256, 0};
const optset OPT_TINY = {"uncompressed, 6-byte chunks", TSNAP_CODEC_NONE, 0, -1, 6, 0};
const optset OPT_TINY_DEFLATE = {"deflate, 6-byte chunks", TSNAP_CODEC_DEFLATE, 0, 1, 6, 0};

tsnap_reader *open_reader(const char *path)
{
    tsnap_reader *r = NULL;
    CHECK_OK_FATAL(tsnap_reader_open(&r, path));
    return r;
}

/* ------------------------------------------------------------------ */
/* HDF5 helpers                                                        */
/* ------------------------------------------------------------------ */

hid_t h5_open(const char *path)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    return f;
}

hid_t h5_create(const char *path)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    return f;
}

int h5_put_string_attr(hid_t obj, const char *key, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, key, t, s, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Awrite(a, t, &value);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
    return e < 0 ? -1 : 0;
}

int h5_put_i64_attr(hid_t obj, const char *key, int64_t value)
{
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, key, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT64, &value);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(s);
    return e < 0 ? -1 : 0;
}

int h5_put_dataset(hid_t loc, const char *name, hid_t type, int ndim, const hsize_t *shape,
                   hid_t dcpl, hid_t mtype, const void *buf)
{
    hid_t s = ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndim, shape, NULL);
    hid_t d = H5Dcreate2(loc, name, type, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    herr_t e = d < 0 ? -1 : buf ? H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : 0;
    if (d >= 0)
        H5Dclose(d);
    H5Sclose(s);
    return e < 0 ? -1 : 0;
}

char *h5_get_string_attr(hid_t obj, const char *key)
{
    hid_t a = H5Aopen(obj, key, H5P_DEFAULT);
    if (a < 0)
        return NULL;
    hid_t ft = H5Aget_type(a);
    char *out = NULL;
    if (H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(ft));
        char *v = NULL;
        if (H5Aread(a, mt, &v) >= 0 && v) {
            out = strdup(v);
            H5free_memory(v);
        }
        H5Tclose(mt);
    }
    H5Tclose(ft);
    H5Aclose(a);
    return out;
}

void caseset_check_file(const caseset *cs, const char *path, const char *what)
{
    tsnap_reader *rd = open_reader(path);
    CHECK_OK(tsnap_reader_verify(rd, NULL));
    CHECK_I64(tsnap_reader_count(rd), cs->n);
    for (size_t i = 0; i < cs->n; i++) {
        const tcase *c = &cs->v[i];
        ctx_set("%s", c->name);
        unsigned char *got = alloc_filled(c->nbytes + 1, 0x5a);
        int64_t shape[TSNAP_MAX_NDIM];
        memcpy(shape, c->shape, sizeof shape);
        DLTensor dst = cpu_tensor(got, c->dtype, c->ndim, shape, NULL, 0);
        if (CHECK_OK(tsnap_reader_read(rd, c->name, NULL, NULL, NULL, &dst)))
            CHECK_MEM(got, c->expected, c->nbytes, what);
        free(got);
    }
    ctx_clear();
    tsnap_reader_free(rd);
}

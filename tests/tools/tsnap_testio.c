/*
 * tsnap_testio - a test helper that drives the public C API for pytest.
 *
 *   tsnap_testio write OUT.h5 DIR [--codec C | --deflate] [--level L] [--chunk-bytes N]
 *                                 [--seed S] [--no-checksum]
 *       Writes one tensor per tsnap dtype and shape case with random data
 *       (never all zeros), root and dataset attributes, and commits.  Into
 *       DIR goes, per tensor, the expected logical C-order bytes computed by
 *       a naive index loop here (not the library's packer), and
 *       DIR/manifest.jsonl describing tensors and attributes.
 *
 *   tsnap_testio read IN.h5 DIR
 *       Opens any HDF5 file with the reader and writes, per tensor,
 *       DIR/<escaped name>.bin (the bytes tsnap_reader_read gives) and a
 *       manifest line (dtype, shape, layout, map status, or the error code
 *       and message of a tensor tsnap refuses).  A mapping whose bytes
 *       differ from the read, or a strided hyperslab read that differs from
 *       the whole read, fails the run (exit 3).
 *
 *   tsnap_testio roundtrip DIR [--codec C | --deflate] [--chunk-bytes N] [--seed S]
 *       write then read, and compares every tensor's bytes with the
 *       expected ones (a check that needs no Python; run by CTest).
 *
 *   tsnap_testio virtual OUT.h5 NAME DTYPE SHAPE FILE:DATASET:OFFSET:BLOCK...
 *       Writes OUT.h5 whose tensor NAME (DTYPE, SHAPE as "7,5") is a
 *       virtual tensor over the given blocks (tsnap_writer_put_virtual);
 *       FILE is relative to OUT.h5's folder, OFFSET and BLOCK as SHAPE.
 *
 * Exit status: 0 good, 1 a library call failed, 2 usage or the file could
 * not be opened (read), 3 an inconsistency between the library's answers.
 * The seed is printed on stderr; env TSNAP_TEST_SEED sets the default.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tsnap.h"

/* ------------------------------------------------------------------ */
/* The dtype table of this test: our own, not the library's.          */
/* ------------------------------------------------------------------ */

typedef struct dtype_row {
    tsnap_dtype id;
    const char *name;
    uint8_t code; /* DLPack type code */
    uint8_t bits;
    size_t size;
} dtype_row;

static const dtype_row DTYPES[] = {
    {TSNAP_BOOL, "bool", TSNAP_DL_BOOL, 8, 1},
    {TSNAP_INT8, "int8", kDLInt, 8, 1},
    {TSNAP_INT16, "int16", kDLInt, 16, 2},
    {TSNAP_INT32, "int32", kDLInt, 32, 4},
    {TSNAP_INT64, "int64", kDLInt, 64, 8},
    {TSNAP_UINT8, "uint8", kDLUInt, 8, 1},
    {TSNAP_UINT16, "uint16", kDLUInt, 16, 2},
    {TSNAP_UINT32, "uint32", kDLUInt, 32, 4},
    {TSNAP_UINT64, "uint64", kDLUInt, 64, 8},
    {TSNAP_FLOAT16, "float16", kDLFloat, 16, 2},
    {TSNAP_BFLOAT16, "bfloat16", kDLBfloat, 16, 2},
    {TSNAP_FLOAT32, "float32", kDLFloat, 32, 4},
    {TSNAP_FLOAT64, "float64", kDLFloat, 64, 8},
    {TSNAP_FLOAT8_E4M3FN, "float8_e4m3fn", TSNAP_DL_FLOAT8_E4M3FN, 8, 1},
    {TSNAP_FLOAT8_E5M2, "float8_e5m2", TSNAP_DL_FLOAT8_E5M2, 8, 1},
    {TSNAP_COMPLEX32, "complex32", kDLComplex, 32, 4},
    {TSNAP_COMPLEX64, "complex64", kDLComplex, 64, 8},
    {TSNAP_COMPLEX128, "complex128", kDLComplex, 128, 16},
};
#define NDTYPES (sizeof DTYPES / sizeof DTYPES[0])

static const dtype_row *dtype_by_id(tsnap_dtype id)
{
    for (size_t i = 0; i < NDTYPES; i++)
        if (DTYPES[i].id == id)
            return &DTYPES[i];
    return NULL;
}

static DLDataType dl_of(const dtype_row *d)
{
    DLDataType t;
    t.code = d->code;
    t.bits = d->bits;
    t.lanes = 1;
    return t;
}

/* ------------------------------------------------------------------ */
/* Small utilities                                                     */
/* ------------------------------------------------------------------ */

static const char *g_prog = "tsnap_testio";

static void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", g_prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(status);
}

/* A failed library call: the code, its name and the thread's message. */
static void die_lib(int err, const char *what)
{
    die(1, "%s failed: %d (%s): %s", what, err, tsnap_strerror(err), tsnap_errmsg());
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die(1, "out of memory (%zu bytes)", n);
    return p;
}

static void *xcalloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p)
        die(1, "out of memory (%zu bytes)", n);
    return p;
}

static char *path_join(const char *dir, const char *base)
{
    size_t n = strlen(dir) + strlen(base) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, base);
    return p;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        die(1, "cannot create %s: %s", path, strerror(errno));
    if (n && fwrite(data, 1, n, f) != n)
        die(1, "cannot write %s: %s", path, strerror(errno));
    if (fclose(f) != 0)
        die(1, "cannot close %s: %s", path, strerror(errno));
}

static void *read_whole_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(1, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb)
                die(1, "out of memory");
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    *len = n;
    return buf;
}

/* mkdir -p */
static void make_dir(const char *dir)
{
    char *p = xmalloc(strlen(dir) + 1);
    strcpy(p, dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            die(1, "cannot create directory %s: %s", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0777) != 0 && errno != EEXIST)
        die(1, "cannot create directory %s: %s", p, strerror(errno));
    free(p);
}

/* A file name for a tensor name: bytes outside [A-Za-z0-9_.-] become %XX,
 * so "a/b" is "a%2Fb".bin and no two names collide. */
static char *escape_name(const char *name)
{
    size_t n = strlen(name);
    char *out = xmalloc(3 * n + 5);
    char *o = out;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '_' || *p == '-' || (*p == '.' && p != (const unsigned char *)name))
            *o++ = (char)*p;
        else
            o += sprintf(o, "%%%02X", *p);
    }
    if (o - out > 160) {
        /* too long for a file name: a prefix and a hash of the whole name */
        uint64_t h = 0xcbf29ce484222325ULL;
        for (const unsigned char *p = (const unsigned char *)name; *p; p++)
            h = (h ^ *p) * 0x100000001b3ULL;
        o = out + 120;
        o += sprintf(o, "~%016" PRIx64, h);
    }
    strcpy(o, ".bin");
    return out;
}

/* ---- JSON output (one object per line) --------------------------- */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f); /* UTF-8 passes through as is */
    }
    fputc('"', f);
}

static void json_shape(FILE *f, int ndim, const int64_t *shape)
{
    fputc('[', f);
    for (int i = 0; i < ndim; i++)
        fprintf(f, "%s%" PRId64, i ? "," : "", shape[i]);
    fputc(']', f);
}

static void json_hex(FILE *f, const void *data, size_t n)
{
    const unsigned char *b = data;
    fputc('"', f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%02x", b[i]);
    fputc('"', f);
}

static const char *error_name(int code)
{
    switch (code) {
    case TSNAP_OK: return "OK";
    case TSNAP_EINVAL: return "EINVAL";
    case TSNAP_ENOTFOUND: return "ENOTFOUND";
    case TSNAP_EEXISTS: return "EEXISTS";
    case TSNAP_EFORMAT: return "EFORMAT";
    case TSNAP_ECHECKSUM: return "ECHECKSUM";
    case TSNAP_ENOTMAPPABLE: return "ENOTMAPPABLE";
    case TSNAP_ENOCUDA: return "ENOCUDA";
    case TSNAP_ECUDA: return "ECUDA";
    case TSNAP_EIO: return "EIO";
    case TSNAP_ENOMEM: return "ENOMEM";
    case TSNAP_ETYPE: return "ETYPE";
    case TSNAP_ESTATE: return "ESTATE";
    default: return "UNKNOWN";
    }
}

/* `"key":{"code":c,"error":"E...","message":"..."}` */
static void json_error(FILE *f, const char *key, int code)
{
    fprintf(f, "\"%s\":{\"code\":%d,\"error\":\"%s\",\"message\":", key, code, error_name(code));
    json_str(f, tsnap_errmsg());
    fputc('}', f);
}

/* ---- random numbers: splitmix64, seeded per run ------------------ */

static uint64_t g_rng;

static uint64_t rnd(void)
{
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void fill_random(unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(rnd() >> 56);
}

static uint64_t pick_seed(const char *arg)
{
    const char *env = getenv("TSNAP_TEST_SEED");
    if (arg)
        return strtoull(arg, NULL, 0);
    if (env && *env)
        return strtoull(env, NULL, 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000000007ULL) ^ (uint64_t)ts.tv_nsec ^
           ((uint64_t)getpid() << 32);
}

/* ------------------------------------------------------------------ */
/* The naive oracle: logical C-order bytes of a strided tensor.        */
/* ------------------------------------------------------------------ */

/* Copies every element of (base, ndim, shape, strides in elements) in
 * C order into out, one index at a time.  strides NULL: C-contiguous. */
static void naive_gather(const unsigned char *base, size_t itemsize, int ndim,
                         const int64_t *shape, const int64_t *strides, unsigned char *out)
{
    int64_t cstrides[TSNAP_MAX_NDIM];
    int64_t idx[TSNAP_MAX_NDIM] = {0};
    int64_t n = 1;
    for (int k = ndim - 1; k >= 0; k--) {
        cstrides[k] = n;
        n *= shape[k];
    }
    if (!strides)
        strides = cstrides;
    for (int64_t e = 0; e < n; e++) {
        int64_t off = 0;
        for (int k = 0; k < ndim; k++)
            off += idx[k] * strides[k];
        memcpy(out + (size_t)e * itemsize, base + off * (int64_t)itemsize, itemsize);
        for (int k = ndim - 1; k >= 0; k--) {
            if (++idx[k] < shape[k])
                break;
            idx[k] = 0;
        }
    }
}

/* ------------------------------------------------------------------ */
/* write                                                               */
/* ------------------------------------------------------------------ */

/* Shape cases.  `buf_elems` is the source buffer's length in elements;
 * `offset` the element where index 0 lies (byte_offset = offset*size). */
typedef struct shape_case {
    const char *label;
    int ndim;
    int64_t shape[5];
    int has_strides;
    int64_t strides[5];
    int64_t buf_elems;
    int64_t offset;
} shape_case;

static const shape_case CASES[] = {
    {"scalar", 0, {0}, 0, {0}, 1, 0},
    {"empty", 1, {0}, 0, {0}, 0, 0},
    {"empty3d", 3, {3, 0, 5}, 0, {0}, 0, 0},
    {"one", 1, {1}, 0, {0}, 1, 0},
    {"prime3d", 3, {7, 11, 13}, 0, {0}, 7 * 11 * 13, 0},
    {"rank5", 5, {2, 3, 1, 4, 5}, 0, {0}, 120, 0},
    {"rows", 2, {64, 33}, 0, {0}, 64 * 33, 0},
    /* a (6, 11) C-order buffer seen transposed as (11, 6) */
    {"transposed", 2, {11, 6}, 1, {1, 11}, 66, 0},
    /* every other element, last first: negative stride, byte_offset */
    {"reversed", 1, {9}, 1, {-2}, 18, 16},
    /* a row broadcast over 4 rows: zero stride */
    {"broadcast", 2, {4, 6}, 1, {0, 1}, 6, 0},
    /* a column slice with a gap between rows and a byte_offset */
    {"strided", 2, {5, 3}, 1, {8, 2}, 40, 1},
};
#define NCASES (sizeof CASES / sizeof CASES[0])

/* Extra tensors (int32, shape (3,)) that exercise names. */
#define NEXTRA 5
static const char *extra_name(size_t i)
{
    static char longname[1025];
    static const char *fixed[] = {"names/with space", "names/\xc3\xbcn\xc3\xaf" "code \xe2\x9c\x93",
                                  "names/.hidden", "names/a/b/c/d/e/f/g/h"};
    if (i < 4)
        return fixed[i];
    /* the longest name allowed: 1024 bytes */
    memcpy(longname, "names/", 6);
    memset(longname + 6, 'L', 1024 - 6);
    longname[1024] = '\0';
    return longname;
}

static const char *codec_name(tsnap_codec c);

typedef struct write_args {
    const char *out;
    const char *dir;
    tsnap_codec codec;
    int level;
    size_t chunk_bytes;
    int checksum;
    const char *seed_arg;
} write_args;

static int parse_write_flags(int argc, char **argv, int i, write_args *a)
{
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--deflate"))
            a->codec = TSNAP_CODEC_DEFLATE;
        else if (!strcmp(argv[i], "--codec") && i + 1 < argc) {
            const char *c = argv[++i];
            if (!strcmp(c, "none")) a->codec = TSNAP_CODEC_NONE;
            else if (!strcmp(c, "deflate")) a->codec = TSNAP_CODEC_DEFLATE;
            else if (!strcmp(c, "zstd")) a->codec = TSNAP_CODEC_ZSTD;
            else if (!strcmp(c, "lz4")) a->codec = TSNAP_CODEC_LZ4;
            else return -1;
        }
        else if (!strcmp(argv[i], "--no-checksum"))
            a->checksum = 0;
        else if (!strcmp(argv[i], "--level") && i + 1 < argc)
            a->level = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--chunk-bytes") && i + 1 < argc)
            a->chunk_bytes = (size_t)strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            a->seed_arg = argv[++i];
        else
            return -1;
    }
    return 0;
}

/* Sets one numeric attribute from little-endian bytes and records it. */
static void put_attr(tsnap_writer *w, FILE *man, const char *on, const char *key,
                     tsnap_dtype dt, int ndim, const int64_t *shape, const void *bytes)
{
    const dtype_row *d = dtype_by_id(dt);
    int64_t s[TSNAP_MAX_NDIM];
    size_t n = d->size;
    for (int k = 0; k < ndim; k++) {
        s[k] = shape[k];
        n *= (size_t)shape[k];
    }
    DLTensor t;
    memset(&t, 0, sizeof t);
    t.data = (void *)bytes;
    t.device.device_type = kDLCPU;
    t.ndim = ndim;
    t.dtype = dl_of(d);
    t.shape = s;
    int err = tsnap_writer_set_attr(w, on, key, &t);
    if (err < 0)
        die_lib(err, "tsnap_writer_set_attr");
    fprintf(man, "{\"kind\":\"attr\",\"on\":");
    json_str(man, on ? on : "");
    fprintf(man, ",\"key\":");
    json_str(man, key);
    fprintf(man, ",\"dtype\":\"%s\",\"shape\":", d->name);
    json_shape(man, ndim, shape);
    fprintf(man, ",\"hex\":");
    json_hex(man, bytes, n);
    fprintf(man, "}\n");
}

static void put_attr_string(tsnap_writer *w, FILE *man, const char *on, const char *key,
                            const char *value)
{
    int err = tsnap_writer_set_attr_string(w, on, key, value);
    if (err < 0)
        die_lib(err, "tsnap_writer_set_attr_string");
    fprintf(man, "{\"kind\":\"attr\",\"on\":");
    json_str(man, on ? on : "");
    fprintf(man, ",\"key\":");
    json_str(man, key);
    fprintf(man, ",\"dtype\":\"string\",\"value\":");
    json_str(man, value);
    fprintf(man, "}\n");
}

static int cmd_write(const write_args *a)
{
    uint64_t seed = pick_seed(a->seed_arg);
    g_rng = seed;
    fprintf(stderr, "%s: seed %" PRIu64 " (set TSNAP_TEST_SEED or --seed to repeat)\n", g_prog,
            seed);
    make_dir(a->dir);
    char *manpath = path_join(a->dir, "manifest.jsonl");
    FILE *man = fopen(manpath, "w");
    if (!man)
        die(1, "cannot create %s: %s", manpath, strerror(errno));

    tsnap_write_options opts;
    int err = tsnap_write_options_init(&opts, TSNAP_WRITE_OPTIONS_VERSION);
    if (err < 0)
        die_lib(err, "tsnap_write_options_init");
    opts.codec = a->codec;
    opts.level = a->level;
    opts.chunk_bytes = a->chunk_bytes;
    opts.checksum = a->checksum;
    opts.durable = 0; /* tests need the rename, not the fsyncs */

    tsnap_writer *w = NULL;
    if ((err = tsnap_writer_create(&w, a->out, &opts)) < 0)
        die_lib(err, "tsnap_writer_create");

    fprintf(man, "{\"kind\":\"file\",\"seed\":%" PRIu64 ",\"codec\":\"%s\",\"level\":%d,"
                 "\"chunk_bytes\":%zu,\"checksum\":%d}\n",
            seed, codec_name(a->codec), a->level,
            a->chunk_bytes ? a->chunk_bytes : TSNAP_DEFAULT_CHUNK_BYTES, a->checksum);

    for (size_t di = 0; di < NDTYPES; di++) {
        const dtype_row *d = &DTYPES[di];
        DLDataType lib;
        if ((err = tsnap_dtype_to_dlpack(&lib, d->id)) < 0)
            die_lib(err, "tsnap_dtype_to_dlpack");
        if (lib.code != d->code || lib.bits != d->bits || lib.lanes != 1)
            die(3, "tsnap_dtype_to_dlpack(%s) gives code %u bits %u lanes %u, expected %u/%u/1",
                d->name, lib.code, lib.bits, lib.lanes, d->code, d->bits);
        if (tsnap_dtype_size(d->id) != d->size)
            die(3, "tsnap_dtype_size(%s) = %zu, expected %zu", d->name,
                tsnap_dtype_size(d->id), d->size);

        for (size_t ci = 0; ci < NCASES; ci++) {
            const shape_case *c = &CASES[ci];
            int64_t nelem = 1;
            for (int k = 0; k < c->ndim; k++)
                nelem *= c->shape[k];
            size_t bufbytes = (size_t)c->buf_elems * d->size;
            unsigned char *src = xmalloc(bufbytes);
            fill_random(src, bufbytes);
            if (d->id == TSNAP_BOOL) {
                /* about half false; true as any non-zero byte, which the
                 * writer must store as 1 */
                for (size_t i = 0; i < bufbytes; i++)
                    if (src[i] & 1)
                        src[i] = 0;
            }
            /* never all zeros: the element at index 0 gets a set bit */
            if (nelem > 0) {
                int64_t first = c->offset;
                int zero = 1;
                for (size_t i = 0; i < bufbytes; i++)
                    zero &= src[i] == 0;
                if (zero || d->id == TSNAP_BOOL)
                    src[first * (int64_t)d->size] |= 0x02;
            }

            unsigned char *expect = xmalloc((size_t)nelem * d->size);
            naive_gather(src + c->offset * (int64_t)d->size, d->size, c->ndim, c->shape,
                         c->has_strides ? c->strides : NULL, expect);
            if (d->id == TSNAP_BOOL)
                for (int64_t i = 0; i < nelem; i++)
                    expect[i] = expect[i] != 0;

            int64_t shape[5], strides[5];
            memcpy(shape, c->shape, sizeof shape);
            memcpy(strides, c->strides, sizeof strides);
            DLTensor t;
            memset(&t, 0, sizeof t);
            t.data = nelem ? (void *)src : NULL;
            t.device.device_type = kDLCPU;
            t.ndim = c->ndim;
            t.dtype = dl_of(d);
            t.shape = shape;
            t.strides = c->has_strides ? strides : NULL;
            t.byte_offset = (uint64_t)(c->offset * (int64_t)d->size);

            char name[128];
            snprintf(name, sizeof name, "%s/%s", d->name, c->label);
            if ((err = tsnap_writer_put(w, name, &t)) < 0) {
                fprintf(stderr, "%s: while putting %s\n", g_prog, name);
                die_lib(err, "tsnap_writer_put");
            }
            /* the writer must have read the memory already */
            memset(src, 0xA5, bufbytes);

            char *fname = escape_name(name);
            char *fpath = path_join(a->dir, fname);
            write_file(fpath, expect, (size_t)nelem * d->size);
            fprintf(man, "{\"kind\":\"tensor\",\"name\":");
            json_str(man, name);
            fprintf(man, ",\"dtype\":\"%s\",\"shape\":", d->name);
            json_shape(man, c->ndim, c->shape);
            fprintf(man, ",\"case\":\"%s\",\"file\":", c->label);
            json_str(man, fname);
            fprintf(man, "}\n");
            free(fpath);
            free(fname);
            free(expect);
            free(src);
        }
    }

    /* Names: spaces, UTF-8, a leading dot, deep nesting, the longest. */
    for (size_t i = 0; i < NEXTRA; i++) {
        const dtype_row *d = dtype_by_id(TSNAP_INT32);
        int32_t vals[3];
        fill_random((unsigned char *)vals, sizeof vals);
        vals[0] |= 1;
        int64_t shape[1] = {3};
        DLTensor t;
        memset(&t, 0, sizeof t);
        t.data = vals;
        t.device.device_type = kDLCPU;
        t.ndim = 1;
        t.dtype = dl_of(d);
        t.shape = shape;
        if ((err = tsnap_writer_put(w, extra_name(i), &t)) < 0) {
            fprintf(stderr, "%s: while putting %s\n", g_prog, extra_name(i));
            die_lib(err, "tsnap_writer_put");
        }
        char *fname = escape_name(extra_name(i));
        char *fpath = path_join(a->dir, fname);
        write_file(fpath, vals, sizeof vals);
        fprintf(man, "{\"kind\":\"tensor\",\"name\":");
        json_str(man, extra_name(i));
        fprintf(man, ",\"dtype\":\"int32\",\"shape\":[3],\"case\":\"name\",\"file\":");
        json_str(man, fname);
        fprintf(man, "}\n");
        free(fpath);
        free(fname);
    }

    /* Root attributes: step, time, strings, small arrays of several types. */
    int64_t step = (int64_t)(rnd() >> 20) + 1;
    put_attr(w, man, NULL, "step", TSNAP_INT64, 0, NULL, &step);
    double time_v = (double)(rnd() >> 11) / 9007199254740992.0 * 1000.0 + 0.5;
    put_attr(w, man, NULL, "time", TSNAP_FLOAT64, 0, NULL, &time_v);
    put_attr_string(w, man, NULL, "note", "snapshot \xe2\x9c\x93 na\xc3\xafve \"quoted\"");
    put_attr_string(w, man, "", "empty_note", "");
    int32_t small[3] = {(int32_t)(rnd() >> 40) + 1, -7, 2147483647};
    int64_t s3[1] = {3};
    put_attr(w, man, NULL, "small", TSNAP_INT32, 1, s3, small);
    float grid[2][2] = {{1.5f, -2.25f}, {(float)(rnd() >> 40) / 3.0f, 1e-30f}};
    int64_t s22[2] = {2, 2};
    put_attr(w, man, "", "grid", TSNAP_FLOAT32, 2, s22, grid);
    uint8_t flag = 1;
    put_attr(w, man, NULL, "flag", TSNAP_BOOL, 0, NULL, &flag);
    double z[2] = {0.25, -(double)(rnd() >> 40)};
    put_attr(w, man, NULL, "z", TSNAP_COMPLEX128, 0, NULL, z);
    uint16_t bf[2] = {0x3fc0, 0xc049}; /* 1.5, -3.140625 */
    int64_t s2[1] = {2};
    put_attr(w, man, NULL, "bf", TSNAP_BFLOAT16, 1, s2, bf);
    uint64_t big = 0xfedcba9876543210ULL;
    put_attr(w, man, NULL, "big", TSNAP_UINT64, 0, NULL, &big);

    /* Dataset attributes. */
    put_attr_string(w, man, "float32/prime3d", "units", "m/s");
    double scale = 0.5;
    put_attr(w, man, "float32/prime3d", "scale", TSNAP_FLOAT64, 0, NULL, &scale);
    int16_t window[3] = {-1, 0, (int16_t)(rnd() >> 50)};
    put_attr(w, man, "float32/prime3d", "window", TSNAP_INT16, 1, s3, window);
    int64_t lone = 42;
    put_attr(w, man, "bool/scalar", "answer", TSNAP_INT64, 0, NULL, &lone);

    if ((err = tsnap_writer_commit(w)) < 0)
        die_lib(err, "tsnap_writer_commit");
    tsnap_writer_free(w);
    if (fclose(man) != 0)
        die(1, "cannot write %s", manpath);
    free(manpath);
    return 0;
}

/* ------------------------------------------------------------------ */
/* read                                                                */
/* ------------------------------------------------------------------ */

static const char *codec_name(tsnap_codec c)
{
    switch (c) {
    case TSNAP_CODEC_NONE: return "none";
    case TSNAP_CODEC_DEFLATE: return "deflate";
    case TSNAP_CODEC_ZSTD: return "zstd";
    case TSNAP_CODEC_LZ4: return "lz4";
    case TSNAP_CODEC_OTHER: return "other";
    }
    return "invalid";
}

/* Writes `"attrs":{...}` for tensor `name` (NULL: root). */
static int json_attrs(FILE *man, tsnap_reader *r, const char *name)
{
    size_t n = 0;
    int err = tsnap_reader_attr_count(r, name, &n);
    if (err < 0) {
        json_error(man, "attrs_error", err);
        return err;
    }
    fprintf(man, "\"attrs\":{");
    for (size_t i = 0; i < n; i++) {
        tsnap_attr at;
        memset(&at, 0, sizeof at);
        if (i)
            fputc(',', man);
        if ((err = tsnap_reader_attr(r, name, i, &at)) < 0) {
            fprintf(man, "\"#%zu\":{", i);
            json_error(man, "error", err);
            fputc('}', man);
            continue;
        }
        json_str(man, at.key ? at.key : "(null)");
        fputc(':', man);
        if (at.kind == TSNAP_ATTR_STRING) {
            fprintf(man, "{\"kind\":\"string\",\"value\":");
            json_str(man, at.string ? at.string : "");
            fputc('}', man);
        } else if (at.kind == TSNAP_ATTR_NUMERIC) {
            tsnap_dtype dt = TSNAP_DTYPE_INVALID;
            int e2 = tsnap_dtype_from_dlpack(&dt, at.value.dtype);
            const dtype_row *d = e2 < 0 ? NULL : dtype_by_id(dt);
            uint64_t count = 1;
            for (int k = 0; k < at.value.ndim; k++)
                count *= (uint64_t)at.value.shape[k];
            fprintf(man, "{\"kind\":\"numeric\",\"dtype\":\"%s\",\"shape\":",
                    d ? d->name : "invalid");
            json_shape(man, at.value.ndim, at.value.shape);
            if (d) {
                fprintf(man, ",\"hex\":");
                json_hex(man, (const char *)at.value.data + at.value.byte_offset,
                         (size_t)count * d->size);
            }
            fputc('}', man);
        } else {
            fprintf(man, "{\"kind\":\"other\",\"value\":");
            json_str(man, at.string ? at.string : "");
            fputc('}', man);
        }
    }
    fputc('}', man);
    return 0;
}

/* Reads a strided hyperslab (start 1 where possible, step 2) into a
 * Fortran-order destination and compares it with the whole read.
 * Returns 0 if equal, 1 if different, or a negative library error. */
static int check_hyperslab(tsnap_reader *r, const char *name, const tsnap_tensor_info *info,
                           const dtype_row *d, const unsigned char *whole)
{
    int nd = info->ndim;
    int64_t start[TSNAP_MAX_NDIM], count[TSNAP_MAX_NDIM], step[TSNAP_MAX_NDIM];
    int64_t fstrides[TSNAP_MAX_NDIM], wstrides[TSNAP_MAX_NDIM];
    uint64_t n = 1;
    for (int k = 0; k < nd; k++) {
        start[k] = info->shape[k] > 1 ? 1 : 0;
        step[k] = 2;
        count[k] = (info->shape[k] - start[k] + 1) / 2;
        n *= (uint64_t)count[k];
    }
    /* destination strides: column-major, so the library must scatter */
    int64_t acc = 1;
    for (int k = 0; k < nd; k++) {
        fstrides[k] = acc;
        acc *= count[k] > 0 ? count[k] : 1;
    }
    acc = 1;
    for (int k = nd - 1; k >= 0; k--) {
        wstrides[k] = acc;
        acc *= info->shape[k];
    }
    unsigned char *dst = xcalloc((size_t)n * d->size);
    DLTensor t;
    memset(&t, 0, sizeof t);
    t.data = dst;
    t.device.device_type = kDLCPU;
    t.ndim = nd;
    t.dtype = dl_of(d);
    t.shape = count;
    t.strides = fstrides;
    int err = tsnap_reader_read(r, name, start, count, step, &t);
    if (err < 0) {
        free(dst);
        return err;
    }
    /* expected: the naive gather of the whole read at those indices */
    unsigned char *want = xmalloc((size_t)n * d->size);
    unsigned char *got = xmalloc((size_t)n * d->size);
    int64_t sel[TSNAP_MAX_NDIM];
    int64_t origin = 0;
    for (int k = 0; k < nd; k++) {
        sel[k] = wstrides[k] * step[k];
        origin += start[k] * wstrides[k];
    }
    naive_gather(whole + origin * (int64_t)d->size, d->size, nd, count, sel, want);
    naive_gather(dst, d->size, nd, count, fstrides, got);
    int diff = memcmp(want, got, (size_t)n * d->size) != 0;
    free(want);
    free(got);
    free(dst);
    return diff;
}

static int cmd_read(const char *in, const char *dir, int *inconsistent)
{
    make_dir(dir);
    char *manpath = path_join(dir, "manifest.jsonl");
    FILE *man = fopen(manpath, "w");
    if (!man)
        die(1, "cannot create %s: %s", manpath, strerror(errno));

    tsnap_reader *r = NULL;
    int err = tsnap_reader_open(&r, in);
    if (err < 0) {
        if (r != NULL)
            die(3, "tsnap_reader_open failed but did not set *out to NULL");
        fprintf(man, "{\"kind\":\"open_error\",");
        json_error(man, "error", err);
        fprintf(man, "}\n");
        fclose(man);
        fprintf(stderr, "%s: cannot open %s: %d (%s): %s\n", g_prog, in, err,
                tsnap_strerror(err), tsnap_errmsg());
        free(manpath);
        return 2;
    }

    size_t count = tsnap_reader_count(r);
    fprintf(man, "{\"kind\":\"file\",\"format_version\":%d,\"count\":%zu,",
            tsnap_reader_format_version(r), count);
    json_attrs(man, r, NULL);
    fprintf(man, "}\n");
    if (tsnap_reader_name(r, count) != NULL)
        die(3, "tsnap_reader_name(count) is not NULL");

    const char *prev = NULL;
    for (size_t i = 0; i < count; i++) {
        const char *name = tsnap_reader_name(r, i);
        if (!name)
            die(3, "tsnap_reader_name(%zu) is NULL, count %zu", i, count);
        if (prev && strcmp(prev, name) >= 0) {
            fprintf(stderr, "%s: names not in sorted order: '%s' then '%s'\n", g_prog, prev,
                    name);
            *inconsistent = 1;
        }
        prev = name;
        fprintf(man, "{\"kind\":\"tensor\",\"name\":");
        json_str(man, name);

        tsnap_tensor_info info;
        memset(&info, 0, sizeof info);
        if ((err = tsnap_reader_describe(r, name, &info)) < 0) {
            fputc(',', man);
            json_error(man, "error", err);
            /* a refused tensor must be refused by read too */
            unsigned char one[16];
            DLTensor t;
            memset(&t, 0, sizeof t);
            t.data = one;
            t.device.device_type = kDLCPU;
            t.dtype = dl_of(&DTYPES[1]);
            int err2 = tsnap_reader_read(r, name, NULL, NULL, NULL, &t);
            fprintf(man, ",\"read_refused\":%s}\n", err2 < 0 ? "true" : "false");
            continue;
        }
        const dtype_row *d = dtype_by_id(info.dtype);
        if (!d) {
            fprintf(man, ",\"bad_dtype\":%d}\n", (int)info.dtype);
            *inconsistent = 1;
            fprintf(stderr, "%s: %s: describe gives invalid dtype %d\n", g_prog, name,
                    (int)info.dtype);
            continue;
        }
        uint64_t nelem = 1;
        for (int k = 0; k < info.ndim; k++)
            nelem *= (uint64_t)info.shape[k];
        uint64_t nbytes = nelem * d->size;
        fprintf(man, ",\"dtype\":\"%s\",\"shape\":", d->name);
        json_shape(man, info.ndim, info.shape);
        fprintf(man, ",\"chunked\":%d,\"chunk\":", info.chunked);
        json_shape(man, info.chunked ? info.ndim : 0, info.chunk);
        fprintf(man, ",\"codec\":\"%s\",\"shuffle\":%d,\"filters\":[", codec_name(info.codec),
                info.shuffle);
        for (int k = 0; k < info.nfilters && k < 8; k++)
            fprintf(man, "%s%d", k ? "," : "", info.filters[k]);
        fprintf(man, "],\"nbytes\":%" PRIu64 ",\"stored_bytes\":%" PRIu64
                     ",\"big_endian\":%d,\"map_status\":%d,\"map_status_str\":",
                info.nbytes, info.stored_bytes, info.big_endian, (int)info.map_status);
        json_str(man, tsnap_map_status_str(info.map_status));
        fprintf(man, ",\"offset\":%" PRIu64 ",\"length\":%" PRIu64 ",\"checksum\":", info.offset,
                info.length);
        json_str(man, info.checksum);
        if (info.nbytes != nbytes) {
            fprintf(stderr, "%s: %s: nbytes %" PRIu64 " but shape x size is %" PRIu64 "\n",
                    g_prog, name, info.nbytes, nbytes);
            *inconsistent = 1;
        }

        /* whole read into a C-contiguous buffer */
        unsigned char *buf = xcalloc((size_t)nbytes);
        int64_t shape[TSNAP_MAX_NDIM];
        memcpy(shape, info.shape, sizeof shape);
        DLTensor t;
        memset(&t, 0, sizeof t);
        t.data = buf;
        t.device.device_type = kDLCPU;
        t.ndim = info.ndim;
        t.dtype = dl_of(d);
        t.shape = shape;
        err = tsnap_reader_read(r, name, NULL, NULL, NULL, &t);
        char *fname = escape_name(name);
        fprintf(man, ",\"file\":");
        json_str(man, fname);
        if (err < 0) {
            fputc(',', man);
            json_error(man, "read_error", err);
        } else {
            char *fpath = path_join(dir, fname);
            write_file(fpath, buf, (size_t)nbytes);
            free(fpath);
        }
        free(fname);

        int verr = tsnap_reader_verify(r, name);
        if (verr < 0) {
            fputc(',', man);
            json_error(man, "verify_error", verr);
        }

        /* hyperslab read vs whole read */
        if (err == 0 && nelem > 0 && info.ndim > 0) {
            int h = check_hyperslab(r, name, &info, d, buf);
            if (h < 0) {
                fputc(',', man);
                json_error(man, "slab_error", h);
            } else if (h > 0) {
                fprintf(stderr, "%s: %s: strided hyperslab read differs from the whole read\n",
                        g_prog, name);
                *inconsistent = 1;
            }
            fprintf(man, ",\"slab\":\"%s\"", h == 0 ? "ok" : h > 0 ? "differs" : "error");
        }

        /* mapping: must agree with describe and with the read */
        tsnap_mapping *m = NULL;
        int merr = tsnap_mapping_create(&m, r, name);
        int mappable = info.map_status == TSNAP_MAP_OK || info.map_status == TSNAP_MAP_EMPTY;
        if (merr < 0) {
            if (m != NULL)
                die(3, "%s: tsnap_mapping_create failed but did not set *out to NULL", name);
            fprintf(man, ",");
            json_error(man, "map_error", merr);
            if (mappable) {
                fprintf(stderr, "%s: %s: describe says mappable, mapping fails: %s\n", g_prog,
                        name, tsnap_errmsg());
                *inconsistent = 1;
            } else if (merr != TSNAP_ENOTMAPPABLE) {
                fprintf(stderr, "%s: %s: mapping an unmappable tensor gives %d, not "
                                "TSNAP_ENOTMAPPABLE\n", g_prog, name, merr);
                *inconsistent = 1;
            }
        } else {
            const DLTensor *mt = tsnap_mapping_tensor(m);
            int ok = mappable && mt && mt->ndim == info.ndim &&
                     mt->dtype.code == d->code && mt->dtype.bits == d->bits &&
                     mt->dtype.lanes == 1 && mt->device.device_type == kDLCPU;
            for (int k = 0; ok && k < info.ndim; k++)
                ok = mt->shape[k] == info.shape[k];
            if (ok && mt->strides) {
                int64_t acc = 1;
                for (int k = info.ndim - 1; k >= 0; k--) {
                    if (info.shape[k] != 1 && mt->strides[k] != acc)
                        ok = 0;
                    acc *= info.shape[k];
                }
            }
            if (!ok) {
                fprintf(stderr, "%s: %s: mapping's tensor does not match describe "
                                "(map_status %d)\n", g_prog, name, (int)info.map_status);
                *inconsistent = 1;
            } else if (err == 0 && nbytes &&
                       memcmp((const char *)mt->data + mt->byte_offset, buf, (size_t)nbytes)) {
                fprintf(stderr, "%s: %s: MAPPED BYTES DIFFER FROM tsnap_reader_read\n", g_prog,
                        name);
                *inconsistent = 1;
                fprintf(man, ",\"map\":\"differs\"");
            } else {
                fprintf(man, ",\"map\":\"ok\"");
            }
            tsnap_mapping_free(m);
        }
        free(buf);
        fputc(',', man);
        json_attrs(man, r, name);
        fprintf(man, "}\n");
    }
    tsnap_reader_free(r);
    if (fclose(man) != 0)
        die(1, "cannot write %s", manpath);
    free(manpath);
    return 0;
}

/* ------------------------------------------------------------------ */
/* roundtrip: write, read, compare (for CTest)                         */
/* ------------------------------------------------------------------ */

static int cmd_roundtrip(const write_args *a)
{
    char *wdir = path_join(a->dir, "expected");
    char *rdir = path_join(a->dir, "read");
    char *file = path_join(a->dir, "roundtrip.h5");
    write_args wa = *a;
    wa.out = file;
    wa.dir = wdir;
    make_dir(a->dir);
    cmd_write(&wa);
    int inconsistent = 0;
    int rc = cmd_read(file, rdir, &inconsistent);
    if (rc)
        return rc;
    if (inconsistent)
        die(3, "the reader's answers disagree (see above)");
    int bad = 0, n = 0;
    for (size_t di = 0; di < NDTYPES; di++) {
        for (size_t ci = 0; ci < NCASES; ci++) {
            char name[128];
            snprintf(name, sizeof name, "%s/%s", DTYPES[di].name, CASES[ci].label);
            char *fname = escape_name(name);
            char *pw = path_join(wdir, fname), *pr = path_join(rdir, fname);
            size_t lw = 0, lr = 0;
            char *bw = read_whole_file(pw, &lw);
            struct stat st;
            if (stat(pr, &st) != 0) {
                fprintf(stderr, "%s: %s was not read back\n", g_prog, name);
                bad++;
            } else {
                char *br = read_whole_file(pr, &lr);
                if (lw != lr || memcmp(bw, br, lw)) {
                    fprintf(stderr, "%s: %s differs after the round trip\n", g_prog, name);
                    bad++;
                }
                free(br);
            }
            free(bw);
            free(pw);
            free(pr);
            free(fname);
            n++;
        }
    }
    for (size_t i = 0; i < NEXTRA; i++) {
        char *fname = escape_name(extra_name(i));
        char *pw = path_join(wdir, fname), *pr = path_join(rdir, fname);
        size_t lw = 0, lr = 0;
        char *bw = read_whole_file(pw, &lw);
        char *br = read_whole_file(pr, &lr);
        if (lw != lr || memcmp(bw, br, lw)) {
            fprintf(stderr, "%s: %s differs after the round trip\n", g_prog, extra_name(i));
            bad++;
        }
        free(bw);
        free(br);
        free(pw);
        free(pr);
        free(fname);
        n++;
    }
    fprintf(stderr, "%s: roundtrip: %d tensors, %d bad\n", g_prog, n, bad);
    free(wdir);
    free(rdir);
    free(file);
    return bad ? 3 : 0;
}

/* ------------------------------------------------------------------ */

/* "7,5" into dims; the number of them, or -1. */
static int parse_dims(const char *s, int64_t *dims)
{
    int n = 0;
    char *end;
    while (*s && n < TSNAP_MAX_NDIM) {
        dims[n++] = strtoll(s, &end, 10);
        if (end == s || (*end && *end != ','))
            return -1;
        s = *end ? end + 1 : end;
    }
    return *s ? -1 : n;
}

static int cmd_virtual(int argc, char **argv)
{
    int64_t shape[TSNAP_MAX_NDIM];
    tsnap_dtype dtype;
    size_t n = (size_t)(argc - 6);
    tsnap_part *parts = calloc(n ? n : 1, sizeof *parts);
    char **specs = calloc(n ? n : 1, sizeof *specs);
    tsnap_writer *w = NULL;
    int ndim = parse_dims(argv[5], shape), rc = 0;

    if (!parts || !specs)
        die(1, "out of memory");
    if (ndim < 0 || tsnap_dtype_from_name(&dtype, argv[4]) < 0)
        die(2, "bad dtype or shape: %s %s", argv[4], argv[5]);
    for (size_t i = 0; i < n; i++) {
        char *f = specs[i] = strdup(argv[6 + i]), *d, *o, *b;
        if (!f || !(d = strchr(f, ':')) || !(o = strchr(d + 1, ':')) || !(b = strchr(o + 1, ':')))
            die(2, "bad block %s (FILE:DATASET:OFFSET:BLOCK)", argv[6 + i]);
        *d++ = *o++ = *b++ = '\0';
        parts[i].file = f;
        parts[i].dataset = d;
        if (parse_dims(o, parts[i].offset) != ndim || parse_dims(b, parts[i].shape) != ndim)
            die(2, "block %s: offset and shape need %d numbers", argv[6 + i], ndim);
    }
    if (tsnap_writer_create(&w, argv[2], NULL) < 0 ||
        tsnap_writer_put_virtual(w, argv[3], dtype, ndim, shape, parts, n) < 0 ||
        tsnap_writer_commit(w) < 0) {
        fprintf(stderr, "%s\n", tsnap_errmsg());
        rc = 1;
    }
    tsnap_writer_free(w);
    for (size_t i = 0; i < n; i++)
        free(specs[i]);
    free(specs);
    free(parts);
    return rc;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: %s write OUT.h5 DIR [--codec none|deflate|zstd|lz4] [--level L] [--chunk-bytes N] [--seed S]"
            " [--no-checksum]\n"
            "       %s read IN.h5 DIR\n"
            "       %s roundtrip DIR [--codec C] [--chunk-bytes N] [--seed S]\n"
            "       %s virtual OUT.h5 NAME DTYPE SHAPE FILE:DATASET:OFFSET:BLOCK...\n",
            g_prog, g_prog, g_prog, g_prog);
    exit(2);
}

int main(int argc, char **argv)
{
    const uint16_t probe = 1;
    if (*(const unsigned char *)&probe != 1)
        die(2, "this helper assumes a little-endian machine");
    if (argc < 3)
        usage();
    write_args a;
    memset(&a, 0, sizeof a);
    a.checksum = 1;
    if (!strcmp(argv[1], "write")) {
        if (argc < 4)
            usage();
        a.out = argv[2];
        a.dir = argv[3];
        if (parse_write_flags(argc, argv, 4, &a) < 0)
            usage();
        return cmd_write(&a);
    }
    if (!strcmp(argv[1], "read")) {
        if (argc != 4)
            usage();
        int inconsistent = 0;
        int rc = cmd_read(argv[2], argv[3], &inconsistent);
        if (rc == 0 && inconsistent)
            die(3, "%s: the reader's answers disagree (see above)", argv[2]);
        return rc;
    }
    if (!strcmp(argv[1], "virtual")) {
        if (argc < 6)
            usage();
        return cmd_virtual(argc, argv);
    }
    if (!strcmp(argv[1], "roundtrip")) {
        a.dir = argv[2];
        if (parse_write_flags(argc, argv, 3, &a) < 0)
            usage();
        return cmd_roundtrip(&a);
    }
    usage();
}

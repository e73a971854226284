/*
 * every_dtype: a tensor of every tsnap dtype, there and back.
 *
 * Writes one snapshot holding a tensor of each dtype (random values; some
 * of them 2-D views with strides: every other column, transposed, rows
 * reversed) plus a 0-d and an empty tensor, commits it, then reopens the
 * file, lists, describes and reads every tensor back, compares its bytes
 * with what was put, maps the ones that can be mapped and verifies the
 * checksums.  Prints a table; exits 1 on any mismatch or error.
 *
 * Usage: every_dtype [-z] [FILE]
 *   FILE  the snapshot to write (default every_dtype.h5)
 *   -z    compress with deflate (the tensors are then not mappable)
 * TSNAP_TEST_SEED=N repeats a run's random values; each run prints its seed.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tsnap.h>

/* Prints the failed call with tsnap's message and jumps to `done`. */
#define TRY(call)                                                            \
    do {                                                                     \
        int rc_ = (call);                                                    \
        if (rc_ < 0) {                                                       \
            fprintf(stderr, "every_dtype: %s failed: %s: %s\n", #call,       \
                    tsnap_strerror(rc_), tsnap_errmsg());                    \
            goto done;                                                       \
        }                                                                    \
    } while (0)

/* ------------------------------------------------------------------ */
/* Random values (splitmix64)                                          */
/* ------------------------------------------------------------------ */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Uniform in [-1000, 1000). */
static double rng_real(void)
{
    return (double)(rng_next() >> 11) / 9007199254740992.0 * 2000.0 - 1000.0;
}

static void store_u16(unsigned char *p, uint16_t v) { memcpy(p, &v, sizeof v); }

/* A finite IEEE half: any sign, exponent 0..30, any mantissa. */
static uint16_t random_half(void)
{
    uint64_t b = rng_next();
    return (uint16_t)((b & 0x8000u) | (((b >> 16) % 31u) << 10) | (b & 0x3ffu));
}

/* Writes one random, finite element of `dtype` at p, in native order. */
static void random_element(tsnap_dtype dtype, unsigned char *p)
{
    uint64_t bits = rng_next();
    float f;
    double d;
    uint32_t u;

    switch (dtype) {
    case TSNAP_BOOL:
        p[0] = (unsigned char)(bits & 1u);
        break;
    case TSNAP_FLOAT16:
        store_u16(p, random_half());
        break;
    case TSNAP_COMPLEX32:
        store_u16(p, random_half());
        store_u16(p + 2, random_half());
        break;
    case TSNAP_BFLOAT16: /* the top half of a float32 */
        f = (float)rng_real();
        memcpy(&u, &f, sizeof u);
        store_u16(p, (uint16_t)(u >> 16));
        break;
    case TSNAP_FLOAT32:
        f = (float)rng_real();
        memcpy(p, &f, sizeof f);
        break;
    case TSNAP_COMPLEX64:
        f = (float)rng_real();
        memcpy(p, &f, sizeof f);
        f = (float)rng_real();
        memcpy(p + 4, &f, sizeof f);
        break;
    case TSNAP_FLOAT64:
        d = rng_real();
        memcpy(p, &d, sizeof d);
        break;
    case TSNAP_COMPLEX128:
        d = rng_real();
        memcpy(p, &d, sizeof d);
        d = rng_real();
        memcpy(p + 8, &d, sizeof d);
        break;
    case TSNAP_FLOAT8_E4M3FN: /* S1111111 is its only NaN */
        p[0] = (unsigned char)bits;
        if ((p[0] & 0x7fu) == 0x7fu)
            p[0] &= 0xfeu;
        break;
    case TSNAP_FLOAT8_E5M2: /* exponent 11111 is Inf/NaN */
        p[0] = (unsigned char)bits;
        if ((p[0] & 0x7cu) == 0x7cu)
            p[0] &= 0xfbu;
        break;
    default: /* integers: any bits */
        memcpy(p, &bits, tsnap_dtype_size(dtype));
        break;
    }
}

/* ------------------------------------------------------------------ */
/* The tensors                                                         */
/* ------------------------------------------------------------------ */

/* How a tensor lies in its buffer (all in elements). */
typedef struct layout {
    int ndim;
    int64_t shape[3];
    int64_t strides[3];   /* used when `strided` */
    int strided;
    int64_t offset;       /* of element (0, ...) from the buffer start */
    int64_t buffer_elems; /* size of the buffer */
} layout;

static const layout layouts[] = {
    /* a vector */
    {1, {1000}, {1}, 0, 0, 1000},
    /* every other column of a 40 x 60 matrix */
    {2, {40, 30}, {60, 2}, 1, 0, 40 * 60},
    /* the transpose of a 25 x 36 matrix */
    {2, {36, 25}, {1, 36}, 1, 0, 25 * 36},
    /* a 24 x 32 matrix with its rows in reverse order (via byte_offset) */
    {2, {24, 32}, {-32, 1}, 1, 23 * 32, 24 * 32},
    /* a 3-D block */
    {3, {6, 7, 8}, {0}, 0, 0, 6 * 7 * 8},
};
static const layout scalar_layout = {0, {0}, {0}, 0, 0, 1};
static const layout empty_layout = {2, {0, 5}, {0}, 0, 0, 0};

/* One tensor put into the snapshot, and what it must read back as. */
typedef struct entry {
    char name[64];
    tsnap_dtype dtype;
    layout lay;
    unsigned char *buffer;   /* the tensor's memory, as put */
    unsigned char *expected; /* its logical C-order bytes */
    size_t nbytes;
} entry;

#define MAX_ENTRIES (TSNAP_DTYPE_COUNT + 2)

static int64_t element_count(const layout *lay)
{
    int64_t n = 1;
    int i;
    for (i = 0; i < lay->ndim; i++)
        n *= lay->shape[i];
    return n;
}

/*
 * The logical C-order bytes of a tensor, by walking every index and
 * addressing the element through its strides: deliberately the naive way,
 * to check the library's own packing against.
 */
static void gather(const entry *e, size_t itemsize)
{
    const layout *lay = &e->lay;
    int64_t idx[3] = {0, 0, 0}, cstride[3], n = element_count(lay), k;
    int i;

    for (i = lay->ndim - 1; i >= 0; i--)
        cstride[i] = i == lay->ndim - 1 ? 1 : cstride[i + 1] * lay->shape[i + 1];
    for (k = 0; k < n; k++) {
        int64_t at = lay->offset;
        for (i = 0; i < lay->ndim; i++)
            at += idx[i] * (lay->strided ? lay->strides[i] : cstride[i]);
        memcpy(e->expected + (size_t)k * itemsize, e->buffer + (size_t)at * itemsize, itemsize);
        for (i = lay->ndim - 1; i >= 0; i--) {
            if (++idx[i] < lay->shape[i])
                break;
            idx[i] = 0;
        }
    }
}

/* Fills e's buffer with random elements and computes its expected bytes. */
static int make_entry(entry *e, const char *name, tsnap_dtype dtype, const layout *lay)
{
    size_t itemsize = tsnap_dtype_size(dtype), i;

    snprintf(e->name, sizeof e->name, "%s", name);
    e->dtype = dtype;
    e->lay = *lay;
    e->nbytes = (size_t)element_count(lay) * itemsize;
    /* +1: malloc(0) may return NULL */
    e->buffer = malloc((size_t)lay->buffer_elems * itemsize + 1);
    e->expected = malloc(e->nbytes + 1);
    if (!e->buffer || !e->expected) {
        fprintf(stderr, "every_dtype: out of memory\n");
        return -1;
    }
    for (i = 0; i < (size_t)lay->buffer_elems; i++)
        random_element(dtype, e->buffer + i * itemsize);
    gather(e, itemsize);
    return 0;
}

/* The DLTensor of entry e, as put (tensor-owned arrays live in e). */
static int entry_tensor(DLTensor *t, entry *e)
{
    int rc;
    memset(t, 0, sizeof *t);
    if ((rc = tsnap_dtype_to_dlpack(&t->dtype, e->dtype)) < 0)
        return rc;
    t->data = e->buffer;
    t->device.device_type = kDLCPU;
    t->device.device_id = 0;
    t->ndim = e->lay.ndim;
    t->shape = e->lay.shape;
    t->strides = e->lay.strided ? e->lay.strides : NULL;
    t->byte_offset = (uint64_t)e->lay.offset * tsnap_dtype_size(e->dtype);
    return 0;
}

/* "(40, 30)", "(1000,)", "()" */
static const char *format_shape(char *buf, size_t size, int ndim, const int64_t *shape)
{
    size_t len = 0;
    int i;
    len += (size_t)snprintf(buf + len, size - len, "(");
    for (i = 0; i < ndim && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (len < size)
        snprintf(buf + len, size - len, ndim == 1 ? ",)" : ")");
    return buf;
}

static entry *find_entry(entry *entries, int n, const char *name)
{
    int i;
    for (i = 0; i < n; i++)
        if (strcmp(entries[i].name, name) == 0)
            return &entries[i];
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Reading back                                                        */
/* ------------------------------------------------------------------ */

/*
 * Describes, reads and (when it can) maps tensor `name`, compares it with
 * `e` and prints its table row.  Returns the number of problems found.
 */
static int check_tensor(tsnap_reader *r, const char *name, const entry *e)
{
    tsnap_tensor_info info;
    tsnap_mapping *m = NULL;
    DLTensor dst;
    unsigned char *out = NULL;
    char shape[64], chunks[64], mappable[64];
    int rc, i, problems = 0;

    if (!e) {
        fprintf(stderr, "every_dtype: the file lists '%s', which was never put\n", name);
        return 1;
    }
    if ((rc = tsnap_reader_describe(r, name, &info)) < 0) {
        fprintf(stderr, "every_dtype: describe %s: %s: %s\n", name, tsnap_strerror(rc),
                tsnap_errmsg());
        return 1;
    }
    if (info.dtype != e->dtype || info.ndim != e->lay.ndim || info.nbytes != e->nbytes) {
        fprintf(stderr, "every_dtype: %s: described as %s, %d-D, %" PRIu64 " bytes; put as %s, %d-D, %zu bytes\n",
                name, tsnap_dtype_name(info.dtype) ? tsnap_dtype_name(info.dtype) : "?", info.ndim,
                info.nbytes, tsnap_dtype_name(e->dtype), e->lay.ndim, e->nbytes);
        return 1;
    }
    for (i = 0; i < info.ndim; i++) {
        if (info.shape[i] != e->lay.shape[i]) {
            fprintf(stderr, "every_dtype: %s: shape %s read back, not as put\n", name,
                    format_shape(shape, sizeof shape, info.ndim, info.shape));
            return 1;
        }
    }

    /* Read the whole tensor into a C-contiguous buffer. */
    out = malloc(e->nbytes + 1);
    if (!out) {
        fprintf(stderr, "every_dtype: out of memory\n");
        return 1;
    }
    memset(&dst, 0, sizeof dst);
    dst.data = out;
    dst.device.device_type = kDLCPU;
    dst.ndim = info.ndim;
    dst.shape = info.shape;
    if ((rc = tsnap_dtype_to_dlpack(&dst.dtype, info.dtype)) < 0 ||
        (rc = tsnap_reader_read(r, name, NULL, NULL, NULL, &dst)) < 0) {
        fprintf(stderr, "every_dtype: read %s: %s: %s\n", name, tsnap_strerror(rc), tsnap_errmsg());
        problems++;
    } else if (memcmp(out, e->expected, e->nbytes) != 0) {
        fprintf(stderr, "every_dtype: %s: the bytes read back differ from those put\n", name);
        problems++;
    }

    /* Map it where the file says it can be mapped, and compare again. */
    if (info.map_status == TSNAP_MAP_OK) {
        if ((rc = tsnap_mapping_create(&m, r, name)) < 0) {
            fprintf(stderr, "every_dtype: map %s: %s: %s\n", name, tsnap_strerror(rc), tsnap_errmsg());
            problems++;
        } else {
            const DLTensor *mt = tsnap_mapping_tensor(m);
            if (memcmp((const unsigned char *)mt->data + mt->byte_offset, e->expected, e->nbytes) != 0) {
                fprintf(stderr, "every_dtype: %s: the mapped bytes differ from those put\n", name);
                problems++;
            }
        }
        snprintf(mappable, sizeof mappable, "yes, at byte %" PRIu64, info.offset);
    } else if (info.map_status == TSNAP_MAP_EMPTY) {
        snprintf(mappable, sizeof mappable, "yes (empty)");
    } else {
        snprintf(mappable, sizeof mappable, "no: %s", tsnap_map_status_str(info.map_status));
    }

    if (info.chunked)
        format_shape(chunks, sizeof chunks, info.ndim, info.chunk);
    else
        snprintf(chunks, sizeof chunks, "not chunked");
    printf("%-16s %-14s %-12s %-12s %s%s\n", name, tsnap_dtype_name(info.dtype),
           format_shape(shape, sizeof shape, info.ndim, info.shape), chunks, mappable,
           problems ? "  MISMATCH" : "");

    tsnap_mapping_free(m);
    free(out);
    return problems;
}

/* Checks the attributes set on the file and on one tensor. */
static int check_attributes(tsnap_reader *r)
{
    tsnap_attr a;
    int rc, problems = 0;

    if ((rc = tsnap_reader_attr_find(r, NULL, "step", &a)) < 0) {
        fprintf(stderr, "every_dtype: attribute step: %s: %s\n", tsnap_strerror(rc), tsnap_errmsg());
        problems++;
    } else if (a.kind != TSNAP_ATTR_NUMERIC || a.value.ndim != 0 || a.value.dtype.code != kDLInt ||
               a.value.dtype.bits != 64 ||
               *(const int64_t *)(const void *)((const char *)a.value.data + a.value.byte_offset) != 42) {
        fprintf(stderr, "every_dtype: root attribute step is not the int64 42 that was set\n");
        problems++;
    }
    if ((rc = tsnap_reader_attr_find(r, "float32", "units", &a)) < 0) {
        fprintf(stderr, "every_dtype: attribute float32/units: %s: %s\n", tsnap_strerror(rc),
                tsnap_errmsg());
        problems++;
    } else if (a.kind != TSNAP_ATTR_STRING || !a.string || strcmp(a.string, "m/s") != 0) {
        fprintf(stderr, "every_dtype: attribute units of float32 is not the string \"m/s\" that was set\n");
        problems++;
    }
    return problems;
}

/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    const char *path = "every_dtype.h5";
    const char *seed_env = getenv("TSNAP_TEST_SEED");
    uint64_t seed;
    tsnap_write_options opts;
    tsnap_writer *w = NULL;
    tsnap_reader *r = NULL;
    entry entries[MAX_ENTRIES];
    int nentries = 0, problems = 0, ok = 0, i, dt;
    int64_t step = 42, no_shape = 0;
    double time_value = 0.125;
    DLTensor t;
    size_t count, k;

    memset(entries, 0, sizeof entries);
    if (tsnap_write_options_init(&opts, TSNAP_WRITE_OPTIONS_VERSION) < 0) {
        fprintf(stderr, "every_dtype: %s\n", tsnap_errmsg());
        return 1;
    }
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-z") == 0) {
            opts.codec = TSNAP_CODEC_DEFLATE;
        } else if (argv[i][0] == '-' || i != argc - 1) {
            fprintf(stderr, "usage: every_dtype [-z] [FILE]\n");
            return 2;
        } else {
            path = argv[i];
        }
    }
    seed = seed_env ? strtoull(seed_env, NULL, 0)
                    : (uint64_t)time(NULL) * UINT64_C(2654435761) ^ (uint64_t)clock();
    rng_state = seed;
    printf("every_dtype: tsnap %s, seed %" PRIu64 " (TSNAP_TEST_SEED=%" PRIu64 " repeats it)\n",
           tsnap_version(), seed, seed);

    /* Small chunks, so that the table shows the chunk rule at work. */
    opts.chunk_bytes = 1024;
    opts.producer = "tsnap example every_dtype";

    /* One tensor per dtype, the layouts taken in turn; a 0-d and an empty one. */
    for (dt = 1; dt < TSNAP_DTYPE_COUNT; dt++) {
        const layout *lay = &layouts[(dt - 1) % (int)(sizeof layouts / sizeof layouts[0])];
        if (make_entry(&entries[nentries++], tsnap_dtype_name((tsnap_dtype)dt), (tsnap_dtype)dt, lay) < 0)
            goto done;
    }
    if (make_entry(&entries[nentries++], "special/scalar", TSNAP_FLOAT64, &scalar_layout) < 0 ||
        make_entry(&entries[nentries++], "special/empty", TSNAP_INT32, &empty_layout) < 0)
        goto done;

    /* Write. */
    TRY(tsnap_writer_create(&w, path, &opts));
    for (i = 0; i < nentries; i++) {
        TRY(entry_tensor(&t, &entries[i]));
        TRY(tsnap_writer_put(w, entries[i].name, &t));
    }
    memset(&t, 0, sizeof t);
    t.device.device_type = kDLCPU;
    t.shape = &no_shape;
    t.dtype.code = kDLInt;
    t.dtype.bits = 64;
    t.dtype.lanes = 1;
    t.data = &step;
    TRY(tsnap_writer_set_attr(w, NULL, "step", &t));
    t.dtype.code = kDLFloat;
    t.data = &time_value;
    TRY(tsnap_writer_set_attr(w, NULL, "time", &t));
    TRY(tsnap_writer_set_attr_string(w, NULL, "example", "every_dtype"));
    TRY(tsnap_writer_set_attr_string(w, "float32", "units", "m/s"));
    TRY(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    w = NULL;
    printf("every_dtype: wrote %d tensors to %s (%s)\n\n", nentries, path,
           opts.codec == TSNAP_CODEC_DEFLATE ? "deflate" : "uncompressed");

    /* Read back: list, describe, read, map, compare. */
    TRY(tsnap_reader_open(&r, path));
    if (tsnap_reader_format_version(r) != TSNAP_FORMAT_VERSION) {
        fprintf(stderr, "every_dtype: %s: format version %d, expected %d\n", path,
                tsnap_reader_format_version(r), TSNAP_FORMAT_VERSION);
        problems++;
    }
    count = tsnap_reader_count(r);
    if (count != (size_t)nentries) {
        fprintf(stderr, "every_dtype: %s lists %zu tensors; %d were put\n", path, count, nentries);
        problems++;
    }
    printf("%-16s %-14s %-12s %-12s %s\n", "name", "dtype", "shape", "chunks", "mappable");
    for (k = 0; k < count; k++) {
        const char *name = tsnap_reader_name(r, k);
        if (!name) {
            fprintf(stderr, "every_dtype: tensor %zu of %zu has no name\n", k, count);
            problems++;
            continue;
        }
        if (k > 0 && strcmp(tsnap_reader_name(r, k - 1), name) >= 0) {
            fprintf(stderr, "every_dtype: names not in sorted order at '%s'\n", name);
            problems++;
        }
        problems += check_tensor(r, name, find_entry(entries, nentries, name));
    }
    problems += check_attributes(r);
    TRY(tsnap_reader_verify(r, NULL));

    if (problems) {
        printf("\nevery_dtype: %d problem(s); seed %" PRIu64 "\n", problems, seed);
    } else {
        printf("\nevery_dtype: all %d tensors read back byte for byte; checksums verified\n",
               nentries);
        ok = 1;
    }

done:
    tsnap_reader_free(r);
    tsnap_writer_free(w);
    for (i = 0; i < nentries; i++) {
        free(entries[i].buffer);
        free(entries[i].expected);
    }
    return ok ? 0 : 1;
}

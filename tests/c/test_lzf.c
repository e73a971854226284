/*
 * test_lzf.c - h5py's LZF filter (32000) reads with no plug-in: every
 * dataset of the golden file h5py wrote (tests/data/h5py_lzf.h5) reads as
 * h5py wrote it, and damaged or hostile LZF data, given to the decoder or
 * written into a file's chunks, is an error, never a read or write outside
 * a buffer (the suite runs under AddressSanitizer too).
 *
 * The decoder is called directly: this binary compiles src/lzf.c itself,
 * since the shared library exports only the API.  Chunks are crafted with
 * H5Dwrite_chunk into a copy of the golden file's "crafted" dataset: HDF5
 * refuses to create LZF datasets once tsnap's decode-only filter is
 * registered, which the first reader in the process does.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

#define GOLDEN TSNAP_TEST_DATA_DIR "/h5py_lzf.h5"

/* ------------------------------------------------------------------ */
/* The decoder, on buffers of exactly the given sizes                  */
/* ------------------------------------------------------------------ */

enum { GUARD = 16 };

typedef struct decoded {
    tsnap_lzf_status st;
    size_t len;
    unsigned char *out; /* out_cap bytes and a guard after them */
    size_t cap;
} decoded;

/* Decodes a copy of in[0, n) (its own allocation, so that AddressSanitizer
 * sees any read past it) into out_cap bytes followed by guard bytes that
 * must come back untouched. */
static decoded decode(const void *in, size_t n, size_t out_cap)
{
    decoded d = {TSNAP_LZF_OK, 0, malloc(out_cap + GUARD), out_cap};
    unsigned char *copy = malloc(n ? n : 1);
    CHECK_FATAL(d.out != NULL && copy != NULL);
    if (n)
        memcpy(copy, in, n);
    memset(d.out, 0xA5, out_cap + GUARD);
    d.st = tsnap__lzf_decompress(copy, n, d.out, out_cap, &d.len);
    free(copy);
    for (size_t k = 0; k < GUARD; k++)
        if (d.out[out_cap + k] != 0xA5) {
            CHECK_MSG(0, "the decoder wrote %zu bytes past an output of %zu", k + 1, out_cap);
            break;
        }
    CHECK_MSG(d.st == TSNAP_LZF_OK ? d.len <= out_cap : d.len == 0,
              "status %d with out_len %zu of %zu", (int)d.st, d.len, out_cap);
    return d;
}

static void decoded_free(decoded *d) { free(d->out); }

/* The decoder gives exactly `want` for `in`, and OUTPUT_FULL with a byte
 * less room. */
static void check_decodes(const void *in, size_t n, const void *want, size_t want_len)
{
    decoded d = decode(in, n, want_len);
    if (CHECK_RC(d.st, TSNAP_LZF_OK) && CHECK_I64(d.len, want_len))
        CHECK_MEM(d.out, want, want_len, "decoded bytes");
    decoded_free(&d);
    d = decode(in, n, want_len - 1);
    CHECK_RC(d.st, TSNAP_LZF_OUTPUT_FULL);
    decoded_free(&d);
}

static void check_malformed(const void *in, size_t n, size_t out_cap)
{
    decoded d = decode(in, n, out_cap);
    CHECK_RC(d.st, TSNAP_LZF_MALFORMED);
    decoded_free(&d);
}

/*
 * A naive LZF encoder of this test's own: the longest match (3 to 264
 * bytes, up to 8192 back) found by brute force, else a literal; literal
 * runs of up to 32 bytes.  `out` needs n + n / 32 + 1 bytes.
 */
static size_t naive_encode(const unsigned char *in, size_t n, unsigned char *out)
{
    size_t i = 0, o = 0, lit = 0;
    while (i < n) {
        size_t best = 0, best_back = 0, maxback = i < 8192 ? i : 8192;
        for (size_t back = 1; back <= maxback && best < 264; back++) {
            size_t len = 0;
            while (len < 264 && i + len < n && in[i + len] == in[i + len - back])
                len++;
            if (len > best) {
                best = len;
                best_back = back;
            }
        }
        if (best >= 3) {
            if (lit) {
                out[o++] = (unsigned char)(lit - 1);
                memcpy(out + o, in + i - lit, lit);
                o += lit;
                lit = 0;
            }
            size_t l = best - 2, off = best_back - 1;
            if (l < 7) {
                out[o++] = (unsigned char)(l << 5 | off >> 8);
            } else {
                out[o++] = (unsigned char)(7 << 5 | off >> 8);
                out[o++] = (unsigned char)(l - 7);
            }
            out[o++] = (unsigned char)(off & 0xff);
            i += best;
        } else {
            i++;
            if (++lit == 32) {
                out[o++] = 31;
                memcpy(out + o, in + i - 32, 32);
                o += 32;
                lit = 0;
            }
        }
    }
    if (lit) {
        out[o++] = (unsigned char)(lit - 1);
        memcpy(out + o, in + n - lit, lit);
        o += lit;
    }
    return o;
}

/* Random bytes from a small alphabet, with repeats of earlier stretches. */
static void compressible(rng *r, unsigned char *buf, size_t n)
{
    size_t alpha = 2 + rng_below(r, 30);
    for (size_t i = 0; i < n;) {
        if (i > 8 && rng_below(r, 3) == 0) {
            size_t back = 1 + rng_below(r, i < 9000 ? i : 9000), len = 1 + rng_below(r, 300);
            for (size_t k = 0; k < len && i < n; k++, i++)
                buf[i] = buf[i - back];
        } else {
            buf[i++] = (unsigned char)('a' + rng_below(r, alpha));
        }
    }
}

static void test_literal_runs_and_back_references_decode_as_the_format_says(void)
{
    ctx_set("a literal run");
    check_decodes("\x02" "abc", 4, "abc", 3);
    ctx_set("a 3-byte reference 2 back, overlapping what it writes");
    check_decodes("\x01" "ab" "\x20\x01", 5, "ababa", 5);
    ctx_set("an extra length byte: 7 + 5 + 2 copies of one byte");
    check_decodes("\x00" "x" "\xe0\x05\x00", 5, "xxxxxxxxxxxxxxx", 15);

    ctx_set("the longest reference, 264 bytes");
    unsigned char want[8192 + 264];
    memset(want, 'z', 265);
    check_decodes("\x00" "z" "\xe0\xff\x00", 5, want, 265);

    ctx_set("the farthest reference, 8192 back");
    unsigned char in[8192 / 32 * 33 + 2];
    size_t n = 0;
    rng r;
    rng_init(&r, __func__);
    rng_fill(&r, want, 8192);
    for (size_t i = 0; i < 8192; i += 32) {
        in[n++] = 31;
        memcpy(in + n, want + i, 32);
        n += 32;
    }
    in[n++] = 0x3f; /* 3 bytes from (0x1f << 8 | 0xff) + 1 = 8192 back */
    in[n++] = 0xff;
    memcpy(want + 8192, want, 3);
    check_decodes(in, n, want, 8192 + 3);
    ctx_clear();
}

static void test_what_a_naive_encoder_writes_decodes_back(void)
{
    rng r;
    rng_init(&r, __func__);
    size_t sizes[] = {1, 2, 3, 31, 32, 33, 100, 1000, 4096, 12000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (int round = 0; round < 3; round++) {
            size_t n = sizes[s];
            unsigned char *data = malloc(n), *enc = malloc(n + n / 32 + 1);
            CHECK_FATAL(data && enc);
            if (round == 2)
                rng_fill(&r, data, n); /* incompressible: all literals */
            else
                compressible(&r, data, n);
            size_t m = naive_encode(data, n, enc);
            ctx_set("%zu bytes, round %d, %zu encoded", n, round, m);
            check_decodes(enc, m, data, n);
            free(data);
            free(enc);
        }
    }
    ctx_clear();
}

static void test_truncated_literal_run_is_malformed(void)
{
    check_malformed("\x05" "ab", 3, 100);      /* 6 promised, 2 there */
    check_malformed("\x00", 1, 100);           /* 1 promised, none there */
    check_malformed("\x02" "abc" "\x1f", 5, 100); /* the second run is cut */
}

static void test_truncated_back_reference_is_malformed(void)
{
    check_malformed("\x00" "a" "\x20", 3, 100);         /* no offset byte */
    check_malformed("\x00" "a" "\xe0", 3, 100);         /* no extra length byte */
    check_malformed("\x00" "a" "\xe0\x01", 4, 100);     /* no offset after it */
}

static void test_every_truncation_of_a_valid_stream_is_malformed_or_a_prefix(void)
{
    rng r;
    rng_init(&r, __func__);
    unsigned char data[600], enc[600 + 600 / 32 + 1];
    compressible(&r, data, sizeof data);
    size_t m = naive_encode(data, sizeof data, enc);
    for (size_t cut = 0; cut < m; cut++) {
        decoded d = decode(enc, cut, sizeof data);
        CHECK_MSG(d.st == TSNAP_LZF_MALFORMED ||
                      (d.st == TSNAP_LZF_OK && d.len < sizeof data &&
                       memcmp(d.out, data, d.len) == 0),
                  "cut at %zu of %zu: status %d, %zu bytes", cut, m, (int)d.st, d.len);
        decoded_free(&d);
    }
}

static void test_back_reference_before_the_start_of_the_output_is_malformed(void)
{
    check_malformed("\x20\x00", 2, 100);               /* 1 back from nothing */
    check_malformed("\x01" "ab" "\x20\x02", 5, 100);   /* 3 back from 2 bytes */
    check_malformed("\x00" "a" "\x3f\xff", 4, 100);    /* 8192 back from 1 byte */
    check_malformed("\x00" "a" "\xff\xff\xff", 5, 10000);
}

static void test_output_overflow_is_output_full_at_every_smaller_size(void)
{
    rng r;
    rng_init(&r, __func__);
    unsigned char data[300], enc[300 + 300 / 32 + 1];
    compressible(&r, data, sizeof data);
    size_t m = naive_encode(data, sizeof data, enc);
    for (size_t cap = 0; cap < sizeof data; cap++) {
        decoded d = decode(enc, m, cap);
        CHECK_MSG(d.st == TSNAP_LZF_OUTPUT_FULL, "room for %zu of %zu bytes: status %d", cap,
                  sizeof data, (int)d.st);
        decoded_free(&d);
    }
    /* one literal longer than the whole output */
    decoded d = decode("\x1f" "0123456789abcdef0123456789abcdef", 33, 8);
    CHECK_RC(d.st, TSNAP_LZF_OUTPUT_FULL);
    decoded_free(&d);
}

static void test_empty_input_is_malformed(void)
{
    size_t len = 99;
    unsigned char out[4];
    CHECK_RC(tsnap__lzf_decompress("", 0, out, sizeof out, &len), TSNAP_LZF_MALFORMED);
    CHECK_I64(len, 0);
    CHECK_RC(tsnap__lzf_decompress(NULL, 0, out, sizeof out, &len), TSNAP_LZF_MALFORMED);
    check_malformed("", 0, 0);
}

static void test_random_garbage_decodes_or_fails_and_never_leaves_its_buffers(void)
{
    rng r;
    rng_init(&r, __func__);
    unsigned char in[400], valid[400], enc[400 + 400 / 32 + 1];
    int ok = 0, malformed = 0, full = 0;
    for (int round = 0; round < 20000; round++) {
        size_t n;
        if (round % 2) { /* raw noise */
            n = 1 + rng_below(&r, sizeof in);
            rng_fill(&r, in, n);
        } else {         /* a valid stream with a few bytes changed */
            size_t vn = 1 + rng_below(&r, sizeof valid);
            compressible(&r, valid, vn);
            n = naive_encode(valid, vn, enc);
            if (n > sizeof in)
                n = sizeof in;
            memcpy(in, enc, n);
            for (uint64_t k = 1 + rng_below(&r, 3); k > 0; k--)
                in[rng_below(&r, n)] = (unsigned char)rng_next(&r);
            n -= rng_below(&r, 2) ? rng_below(&r, n) : 0;
        }
        size_t cap = rng_below(&r, 1200);
        decoded d = decode(in, n, cap);
        if (d.st == TSNAP_LZF_OK) {
            ok++;
            /* a decoding is the same with exactly the room it needs, and
             * does not fit in less */
            decoded e = decode(in, n, d.len);
            CHECK_MSG(e.st == TSNAP_LZF_OK && e.len == d.len && !memcmp(e.out, d.out, d.len),
                      "round %d: decodes differently with exact room", round);
            decoded_free(&e);
            if (d.len > 0) {
                e = decode(in, n, d.len - 1);
                CHECK_MSG(e.st == TSNAP_LZF_OUTPUT_FULL, "round %d: fits in less room", round);
                decoded_free(&e);
            }
        } else if (d.st == TSNAP_LZF_MALFORMED) {
            malformed++;
        } else {
            CHECK_FATAL(d.st == TSNAP_LZF_OUTPUT_FULL);
            full++;
        }
        decoded_free(&d);
    }
    CHECK_MSG(ok > 100 && malformed > 100 && full > 100,
              "garbage should reach every outcome: %d decoded, %d malformed, %d too big", ok,
              malformed, full);
}

/* ------------------------------------------------------------------ */
/* The golden file h5py wrote                                          */
/* ------------------------------------------------------------------ */

/* What tests/data/make_golden.py (write_lzf) asked h5py to write, in the
 * reader's (sorted) order. */
static const struct {
    const char *name;
    tsnap_dtype dtype;
    int ndim;
    int64_t shape[3];
} LZF_DATASETS[] = {
    {"crafted", TSNAP_UINT8, 2, {4, 64}},
    {"float32_random", TSNAP_FLOAT32, 2, {61, 47}},
    {"float32_smooth", TSNAP_FLOAT32, 2, {64, 64}},
    {"float64_one", TSNAP_FLOAT64, 1, {1}},
    {"int16_shuffle", TSNAP_INT16, 2, {50, 40}},
    {"int32_primes", TSNAP_INT32, 3, {7, 11, 13}},
    {"uint8", TSNAP_UINT8, 1, {1000}},
    {"uint8_incompressible", TSNAP_UINT8, 2, {3, 2048}},
};
#define NLZF (sizeof LZF_DATASETS / sizeof LZF_DATASETS[0])

/* Reads a whole tensor; 0 and the xxh3 tag of its bytes, or the error. */
static int read_tagged(tsnap_reader *r, size_t i, char tag[40])
{
    size_t n = dtype_row_of(LZF_DATASETS[i].dtype)->size;
    int64_t shape[3];
    memcpy(shape, LZF_DATASETS[i].shape, sizeof shape);
    for (int k = 0; k < LZF_DATASETS[i].ndim; k++)
        n *= (size_t)shape[k];
    unsigned char *buf = alloc_filled(n, 0);
    DLTensor t = cpu_tensor(buf, LZF_DATASETS[i].dtype, LZF_DATASETS[i].ndim, shape, NULL, 0);
    int err = tsnap_reader_read(r, LZF_DATASETS[i].name, NULL, NULL, NULL, &t);
    if (err == 0)
        xxh3_tag(buf, n, tag);
    free(buf);
    return err;
}

static const char *expected_tag(tsnap_reader *r, const char *name)
{
    tsnap_attr a;
    if (tsnap_reader_attr_find(r, name, "expected_xxh3", &a) != 0 || a.kind != TSNAP_ATTR_STRING)
        return NULL;
    return a.string;
}

typedef struct reader_thread {
    int failures;
    char why[256];
} reader_thread;

static void *read_golden(void *arg)
{
    reader_thread *w = arg;
    for (int round = 0; round < 4; round++) {
        tsnap_reader *r = NULL;
        if (tsnap_reader_open(&r, GOLDEN) != 0) {
            w->failures++;
            snprintf(w->why, sizeof w->why, "open: %s", tsnap_errmsg());
            break;
        }
        for (size_t i = 0; i < NLZF; i++) {
            char tag[40];
            const char *want = expected_tag(r, LZF_DATASETS[i].name);
            if (read_tagged(r, i, tag) != 0 || !want || strcmp(tag, want) != 0) {
                if (!w->failures++)
                    snprintf(w->why, sizeof w->why, "%s: %s", LZF_DATASETS[i].name,
                             tsnap_errmsg());
            }
        }
        tsnap_reader_free(r);
    }
    return NULL;
}

/* First in the suite, so that (run alone) the filter's registration is
 * raced by the first readers of the process. */
static void test_readers_opened_on_many_threads_at_once_all_decode_lzf(void)
{
    enum { N = 6 };
    pthread_t th[N];
    reader_thread w[N];
    memset(w, 0, sizeof w);
    for (int i = 0; i < N; i++)
        CHECK_FATAL(pthread_create(&th[i], NULL, read_golden, &w[i]) == 0);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++)
        CHECK_MSG(w[i].failures == 0, "thread %d: %d failures; first: %s", i, w[i].failures,
                  w[i].why);
}

static void test_every_dataset_h5py_wrote_with_lzf_reads_as_h5py_wrote_it(void)
{
    tsnap_reader *r = open_reader(GOLDEN);
    CHECK_I64(tsnap_reader_count(r), NLZF);
    for (size_t i = 0; i < NLZF; i++) {
        const char *name = LZF_DATASETS[i].name;
        ctx_set("%s", name);
        CHECK_STR(tsnap_reader_name(r, i), name);
        tsnap_tensor_info info;
        if (!CHECK_OK(tsnap_reader_describe(r, name, &info)))
            continue;
        CHECK(info.dtype == LZF_DATASETS[i].dtype);
        CHECK_I64(info.ndim, LZF_DATASETS[i].ndim);
        for (int k = 0; k < info.ndim; k++)
            CHECK_I64(info.shape[k], LZF_DATASETS[i].shape[k]);
        CHECK(info.nfilters >= 1 && info.filters[info.nfilters - 1] == TSNAP_LZF_FILTER_ID);
        CHECK(info.map_status == TSNAP_MAP_FILTERED);

        char tag[40];
        const char *want = expected_tag(r, name);
        CHECK_FATAL(want != NULL);
        if (CHECK_OK(read_tagged(r, i, tag)))
            CHECK_STR(tag, want);
    }
    ctx_clear();
    tsnap_reader_free(r);
}

static void test_strided_reads_of_lzf_datasets_equal_the_whole_read(void)
{
    tsnap_reader *r = open_reader(GOLDEN);
    int32_t whole[7][11][13], part[3][4][5];
    int64_t shape[3] = {7, 11, 13}, start[3] = {1, 2, 0}, count[3] = {3, 4, 5},
            step[3] = {2, 2, 3};
    DLTensor t = cpu_tensor(whole, TSNAP_INT32, 3, shape, NULL, 0);
    CHECK_OK_FATAL(tsnap_reader_read(r, "int32_primes", NULL, NULL, NULL, &t));
    DLTensor p = cpu_tensor(part, TSNAP_INT32, 3, count, NULL, 0);
    CHECK_OK_FATAL(tsnap_reader_read(r, "int32_primes", start, count, step, &p));
    int same = 1;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 5; c++)
                same &= part[a][b][c] == whole[1 + 2 * a][2 + 2 * b][3 * c];
    CHECK_MSG(same, "the strided read differs from the whole read");
    tsnap_reader_free(r);
}

/* HDF5 as the oracle of what the golden file exercises: h5py's
 * cd_values (the chunk's bytes last, which the filter relies on), and
 * chunks both compressed and stored raw with the filter's mask bit. */
static void test_the_golden_file_holds_raw_and_compressed_lzf_chunks(void)
{
    hid_t f = h5_open(GOLDEN), d = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    CHECK_FATAL(f >= 0);
    CHECK_FATAL((d = H5Dopen2(f, "uint8_incompressible", H5P_DEFAULT)) >= 0);
    CHECK_FATAL((dcpl = H5Dget_create_plist(d)) >= 0);
    unsigned flags = 0, cd[8] = {0};
    size_t ncd = 8;
    CHECK(H5Pget_filter_by_id2(dcpl, TSNAP_LZF_FILTER_ID, &flags, &ncd, cd, 0, NULL, NULL) >= 0);
    CHECK(flags & H5Z_FLAG_OPTIONAL);
    CHECK_I64(ncd, 3);
    CHECK_I64(cd[2], 2048);
    int raw = 0, compressed = 0;
    for (hsize_t row = 0; row < 3; row++) {
        hsize_t off[2] = {row, 0}, size = 0;
        haddr_t addr;
        unsigned mask = 0;
        CHECK_FATAL(H5Dget_chunk_info_by_coord(d, off, &mask, &addr, &size) >= 0);
        raw += (mask & 1) && size == 2048;
        compressed += !(mask & 1) && size < 2048;
    }
    CHECK_MSG(raw >= 1 && compressed >= 1, "%d raw and %d compressed chunks", raw, compressed);
    H5Pclose(dcpl);
    H5Dclose(d);
    H5Fclose(f);
}

/* ------------------------------------------------------------------ */
/* Crafted chunks in a file                                            */
/* ------------------------------------------------------------------ */

/* A copy of the golden file to write chunks into. */
static const char *golden_copy(void)
{
    size_t n;
    unsigned char *bytes = slurp(GOLDEN, &n);
    const char *path = tpath("lzf.h5");
    CHECK_FATAL(bytes != NULL && spit(path, bytes, n) == 0);
    free(bytes);
    return path;
}

/* Stores `n` bytes as row `row`'s chunk of "crafted" ((4, 64) uint8, one
 * row a chunk, cd_values[2] = 64), as they are: no filter runs. */
static void put_chunk(const char *path, int row, uint32_t mask, const void *bytes, size_t n)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), d = H5I_INVALID_HID;
    CHECK_FATAL(f >= 0);
    CHECK_FATAL((d = H5Dopen2(f, "crafted", H5P_DEFAULT)) >= 0);
    hsize_t off[2] = {(hsize_t)row, 0};
    CHECK_FATAL(H5Dwrite_chunk(d, H5P_DEFAULT, mask, off, n, bytes) >= 0);
    H5Dclose(d);
    CHECK_FATAL(H5Fclose(f) >= 0);
}

/* Row `row` of "crafted" as h5py wrote it. */
static void written_row(int row, unsigned char out[64])
{
    static const char text[] = "tsnap reads lzf. ";
    for (int i = 0; i < 64; i++)
        out[i] = (unsigned char)text[(row * 64 + i) % (sizeof text - 1)];
}

static int read_row(tsnap_reader *r, int row, unsigned char out[64])
{
    int64_t start[2] = {row, 0}, count[2] = {1, 64};
    DLTensor t = cpu_tensor(out, TSNAP_UINT8, 2, count, NULL, 0);
    return tsnap_reader_read(r, "crafted", start, count, NULL, &t);
}

/* Reading row `row` fails with TSNAP_EFORMAT (a damaged file) and a message naming the file,
 * the tensor and LZF. */
static void check_row_refused(tsnap_reader *r, const char *path, int row)
{
    unsigned char out[64];
    CHECK_ERR(read_row(r, row, out), TSNAP_EFORMAT);
    CHECK_ERRMSG_HAS(base_name(path));
    CHECK_ERRMSG_HAS("crafted");
    CHECK_ERRMSG_HAS("LZF");
}

/* "tsnap " then a 58-byte reference 6 back: 64 bytes of "tsnap tsnap ...". */
static const unsigned char TSNAP_RUN[] = {0x05, 't', 's', 'n', 'a', 'p', ' ', 0xe0, 58 - 2 - 7, 5};

static void test_crafted_chunks_of_literals_and_references_read_back(void)
{
    const char *path = golden_copy();
    put_chunk(path, 1, 0, TSNAP_RUN, sizeof TSNAP_RUN);
    unsigned char want[64], got[64];
    for (int i = 0; i < 64; i++)
        want[i] = (unsigned char)"tsnap "[i % 6];
    tsnap_reader *r = open_reader(path);
    if (CHECK_OK(read_row(r, 1, got)))
        CHECK_MEM(got, want, 64, "row 1");
    /* the rows h5py wrote are untouched */
    written_row(0, want);
    if (CHECK_OK(read_row(r, 0, got)))
        CHECK_MEM(got, want, 64, "row 0");
    tsnap_reader_free(r);
}

static void test_a_chunk_stored_raw_with_the_lzf_mask_bit_reads_as_is(void)
{
    rng r;
    rng_init(&r, __func__);
    unsigned char raw[64], got[64];
    rng_fill(&r, raw, sizeof raw);
    const char *path = golden_copy();
    put_chunk(path, 2, 1, raw, sizeof raw);
    tsnap_reader *rd = open_reader(path);
    if (CHECK_OK(read_row(rd, 2, got)))
        CHECK_MEM(got, raw, 64, "row 2");
    tsnap_reader_free(rd);
}

static void test_damaged_lzf_chunks_fail_the_read_naming_lzf_and_spare_other_rows(void)
{
    const char *path = golden_copy();
    /* a literal run cut short */
    put_chunk(path, 0, 0, "\x1f" "tsnap", 6);
    /* a reference before the start of the chunk */
    put_chunk(path, 1, 0, "\x01" "ts" "\x20\x05", 5);
    /* 65 bytes: one more than a chunk */
    static const unsigned char more[] = {0x05, 't', 's', 'n', 'a', 'p', ' ', 0xe0, 59 - 2 - 7, 5};
    put_chunk(path, 2, 0, more, sizeof more);
    tsnap_reader *r = open_reader(path);
    for (int row = 0; row < 3; row++) {
        ctx_set("row %d", row);
        check_row_refused(r, path, row);
    }
    ctx_clear();
    unsigned char got[64], want[64];
    written_row(3, want);
    if (CHECK_OK(read_row(r, 3, got)))
        CHECK_MEM(got, want, 64, "row 3");
    tsnap_reader_free(r);

    /* 63 bytes: one fewer than a chunk */
    static const unsigned char fewer[] = {0x05, 't', 's', 'n', 'a', 'p', ' ', 0xe0, 57 - 2 - 7, 5};
    put_chunk(path, 3, 0, fewer, sizeof fewer);
    r = open_reader(path);
    check_row_refused(r, path, 3);
    tsnap_reader_free(r);
}

static void test_garbage_chunks_read_exactly_when_they_decode_to_a_whole_chunk(void)
{
    rng r;
    rng_init(&r, __func__);
    int decoded_ok = 0, refused = 0;
    for (int round = 0; round < 48; round++) {
        const char *path = golden_copy();
        unsigned char chunks[4][120];
        size_t sizes[4];
        for (int row = 0; row < 4; row++) {
            unsigned char *c = chunks[row];
            if (row % 2) {
                sizes[row] = 1 + rng_below(&r, sizeof chunks[row]);
                rng_fill(&r, c, sizes[row]);
            } else { /* a whole chunk's encoding, a byte or two changed */
                unsigned char data[64];
                compressible(&r, data, sizeof data);
                sizes[row] = naive_encode(data, sizeof data, c);
                for (uint64_t k = rng_below(&r, 3); k > 0; k--)
                    c[rng_below(&r, sizes[row])] = (unsigned char)rng_next(&r);
            }
            put_chunk(path, row, 0, c, sizes[row]);
        }
        tsnap_reader *rd = open_reader(path);
        for (int row = 0; row < 4; row++) {
            ctx_set("round %d, row %d, %zu bytes", round, row, sizes[row]);
            decoded d = decode(chunks[row], sizes[row], 64);
            unsigned char got[64];
            if (d.st == TSNAP_LZF_OK && d.len == 64) {
                decoded_ok++;
                if (CHECK_OK(read_row(rd, row, got)))
                    CHECK_MEM(got, d.out, 64, "the chunk's decoding");
            } else {
                refused++;
                check_row_refused(rd, path, row);
            }
            decoded_free(&d);
        }
        tsnap_reader_free(rd);
    }
    ctx_clear();
    CHECK_MSG(decoded_ok > 10 && refused > 10, "%d chunks decoded, %d refused", decoded_ok,
              refused);
}

const test_entry lzf_tests[] = {
    TEST(test_readers_opened_on_many_threads_at_once_all_decode_lzf),
    TEST(test_literal_runs_and_back_references_decode_as_the_format_says),
    TEST(test_what_a_naive_encoder_writes_decodes_back),
    TEST(test_truncated_literal_run_is_malformed),
    TEST(test_truncated_back_reference_is_malformed),
    TEST(test_every_truncation_of_a_valid_stream_is_malformed_or_a_prefix),
    TEST(test_back_reference_before_the_start_of_the_output_is_malformed),
    TEST(test_output_overflow_is_output_full_at_every_smaller_size),
    TEST(test_empty_input_is_malformed),
    TEST(test_random_garbage_decodes_or_fails_and_never_leaves_its_buffers),
    TEST(test_every_dataset_h5py_wrote_with_lzf_reads_as_h5py_wrote_it),
    TEST(test_strided_reads_of_lzf_datasets_equal_the_whole_read),
    TEST(test_the_golden_file_holds_raw_and_compressed_lzf_chunks),
    TEST(test_crafted_chunks_of_literals_and_references_read_back),
    TEST(test_a_chunk_stored_raw_with_the_lzf_mask_bit_reads_as_is),
    TEST(test_damaged_lzf_chunks_fail_the_read_naming_lzf_and_spare_other_rows),
    TEST(test_garbage_chunks_read_exactly_when_they_decode_to_a_whole_chunk),
    TEST_END,
};

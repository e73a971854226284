/*
 * test_table.c - the bit shuffle of src/codec.c against a naive bit loop
 * (the bitshuffle filter's layout, block by block), its decoder on the
 * filter's LZ4 and zstd forms and on damaged chunks, every dtype and
 * layout written with it; and the index of src/table.c: what a reader
 * describes from it equals what it describes walking the file, and a file
 * whose modification time changed is walked.
 */
#include <fcntl.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zstd.h>

#include "internal.h"
#include "testutil.h"

static const size_t ELEMS[] = {1, 2, 3, 4, 8, 16};
static const size_t COUNTS[] = {0, 1, 7, 8, 9, 127, 128, 1023, 2048, 2049, 4100, 8195};

/* The filter's default block: 8 KiB of elements, a multiple of 8, >= 128. */
static size_t naive_block(size_t elem)
{
    size_t n = 8192 / elem / 8 * 8;
    return n < 128 ? 128 : n;
}

/* Bit k of byte j of element i of each block goes to bit i % 8 of byte
 * (8j + k) * n / 8 + i / 8 of the block; the last block is cut to a
 * multiple of 8 elements and the elements after it are copied. */
static void naive_bitshuffle(uint8_t *dst, const uint8_t *src, size_t nelem, size_t elem)
{
    size_t block = naive_block(elem), done = 0;
    memset(dst, 0, nelem * elem);
    while (nelem - done >= 8) {
        size_t n = nelem - done < block ? nelem - done : block;
        n -= n % 8;
        const uint8_t *in = src + done * elem;
        uint8_t *out = dst + done * elem;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < elem; j++)
                for (size_t k = 0; k < 8; k++)
                    if (in[i * elem + j] >> k & 1)
                        out[(8 * j + k) * (n / 8) + i / 8] |= (uint8_t)(1u << (i % 8));
        done += n;
    }
    memcpy(dst + done * elem, src + done * elem, (nelem - done) * elem);
}

static void test_bit_shuffle_is_the_bitshuffle_filters_transpose_and_inverts(void)
{
    rng r;
    rng_init(&r, __func__);
    for (size_t e = 0; e < sizeof ELEMS / sizeof *ELEMS; e++) {
        for (size_t c = 0; c < sizeof COUNTS / sizeof *COUNTS; c++) {
            size_t elem = ELEMS[e], n = COUNTS[c] * elem;
            uint8_t *src = alloc_filled(n, 0), *want = alloc_filled(n, 0),
                    *got = alloc_filled(n, 0xA5), *back = alloc_filled(n, 0x5A);
            rng_fill(&r, src, n);
            ctx_set("element %zu, %zu elements", elem, COUNTS[c]);
            naive_bitshuffle(want, src, COUNTS[c], elem);
            CHECK_OK(tsnap__bitshuffle(got, src, n, elem, false));
            CHECK_MEM(got, want, n, "bit shuffled");
            CHECK_OK(tsnap__bitshuffle(back, got, n, elem, true));
            CHECK_MEM(back, src, n, "unshuffled");
            unsigned cd[5] = {0, 5, (unsigned)elem, 0, 0};
            memset(back, 0x5A, n);
            CHECK(tsnap__bitshuffle_decode(cd, 5, got, n, back, n) == NULL);
            CHECK_MEM(back, src, n, "decoded as the filter without compression");
            free(src), free(want), free(got), free(back);
        }
    }
    ctx_clear();
    uint8_t b[6] = {0};
    CHECK_RC(tsnap__bitshuffle(b, b, 5, 2, false), TSNAP_EINVAL); /* not whole elements */
    CHECK_RC(tsnap__bitshuffle(b, b, 4, 0, false), TSNAP_EINVAL);
}

static void put_be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* A chunk in the filter's compressed form (comp 2: LZ4, 3: zstd) with
 * blocks of `block` elements, built here from the naive shuffle. */
static uint8_t *packed_chunk(const uint8_t *src, size_t nelem, size_t elem, size_t block,
                             int comp, size_t *len)
{
    size_t cap = 12 + (nelem / 8 + 2) * 4 + 2 * nelem * elem + 1024, pos = 12, done = 0;
    uint8_t *out = malloc(cap), *tmp = malloc(block * elem + 1);
    put_be(out, nelem * elem, 8);
    put_be(out + 8, block * elem, 4);
    while (nelem - done >= 8) {
        size_t n = nelem - done < block ? nelem - done : block, c;
        n -= n % 8;
        naive_bitshuffle(tmp, src + done * elem, n, elem);
        if (comp == 2)
            c = (size_t)LZ4_compress_default((const char *)tmp, (char *)out + pos + 4,
                                             (int)(n * elem), (int)(cap - pos - 4));
        else
            c = ZSTD_compress(out + pos + 4, cap - pos - 4, tmp, n * elem, 3);
        put_be(out + pos, c, 4);
        pos += 4 + c;
        done += n;
    }
    memcpy(out + pos, src + done * elem, (nelem - done) * elem);
    *len = pos + (nelem - done) * elem;
    free(tmp);
    return out;
}

static void test_the_filters_lz4_and_zstd_forms_decode_and_damage_is_refused(void)
{
    rng r;
    rng_init(&r, __func__);
    static const size_t blocks[] = {0, 8, 256};
    for (int comp = 2; comp <= 3; comp++) {
        for (size_t e = 0; e < sizeof ELEMS / sizeof *ELEMS; e++) {
            for (size_t b = 0; b < 3; b++) {
                size_t elem = ELEMS[e], nelem = 1000 + 3 * e + b, n = nelem * elem, len;
                size_t block = blocks[b] ? blocks[b] : naive_block(elem);
                uint8_t *src = alloc_filled(n, 0), *got = alloc_filled(n, 0xA5);
                rng_fill(&r, src, n / 2); /* half random, half zeros */
                uint8_t *chunk = packed_chunk(src, nelem, elem, block, comp, &len);
                unsigned cd[6] = {0, 5, (unsigned)elem, (unsigned)blocks[b], (unsigned)comp, 3};
                ctx_set("%s, element %zu, block %zu", comp == 2 ? "lz4" : "zstd", elem, block);
                CHECK(tsnap__bitshuffle_decode(cd, 6, chunk, len, got, n) == NULL);
                CHECK_MEM(got, src, n, "decoded");
                /* another size than the chunk's, truncations, flipped bits:
                 * refused or decoded, never out of bounds (sanitizers) */
                CHECK(tsnap__bitshuffle_decode(cd, 6, chunk, len, got, n - elem) != NULL);
                for (size_t cut = 0; cut < len; cut += 1 + len / 17)
                    CHECK(tsnap__bitshuffle_decode(cd, 6, chunk, cut, got, n) != NULL);
                for (int k = 0; k < 64; k++) {
                    size_t at = (size_t)rng_below(&r, len);
                    chunk[at] ^= (uint8_t)(1u << rng_below(&r, 8));
                    (void)tsnap__bitshuffle_decode(cd, 6, chunk, len, got, n);
                }
                free(src), free(got), free(chunk);
            }
        }
    }
    ctx_clear();
    uint8_t junk[64] = {0}, out[64];
    unsigned bad[6] = {0, 5, 4, 0, 9, 0}; /* a compression the filter does not have */
    CHECK(tsnap__bitshuffle_decode(bad, 6, junk, 64, out, 64) != NULL);
    unsigned zero[3] = {0, 5, 0}; /* element size 0 */
    CHECK(tsnap__bitshuffle_decode(zero, 3, junk, 64, out, 64) != NULL);
}

/* Every dtype x layout case, with fresh values for option set `o`. */
static void cases_for(caseset *cs, const optset *o)
{
    rng r;
    rng_init(&r, o->label);
    caseset_build(cs, &r);
}

static void every_case_round_trips(const optset *o)
{
    caseset cs;
    cases_for(&cs, o);
    const char *path = tpath("bits.h5");
    if (caseset_write(&cs, path, o) == 0)
        caseset_check_file(&cs, path, o->label);
    tsnap_reader *rd = open_reader(path);
    tsnap_tensor_info info;
    for (size_t i = 0; rd && i < cs.n; i++) {
        if (!CHECK_OK(tsnap_reader_describe(rd, cs.v[i].name, &info)))
            continue;
        int shuffled = cs.v[i].nbytes > 0 && cs.v[i].ndim > 0;
        CHECK_MSG(info.shuffle == (shuffled ? 2 : 0), "%s: shuffle %d", cs.v[i].name,
                  info.shuffle);
        if (shuffled)
            CHECK_MSG(info.filters[0] == TSNAP_BITSHUFFLE_FILTER_ID, "%s: filter %d",
                      cs.v[i].name, info.filters[0]);
    }
    tsnap_reader_free(rd);
    caseset_free(&cs);
}

static void test_every_dtype_and_layout_round_trips_bit_shuffled_before_zstd_and_lz4(void)
{
    optset zstd = {"zstd+bitshuffle", TSNAP_CODEC_ZSTD, 3, TSNAP_SHUFFLE_BIT, 64, 0};
    optset lz4 = {"lz4+bitshuffle", TSNAP_CODEC_LZ4, 0, TSNAP_SHUFFLE_BIT, 0, 0};
    every_case_round_trips(&zstd);
    every_case_round_trips(&lz4);
}

static void test_a_shuffle_outside_its_values_is_refused(void)
{
    tsnap_write_options o;
    tsnap_writer *w = NULL;
    tsnap_write_options_init(&o, TSNAP_WRITE_OPTIONS_VERSION);
    o.codec = TSNAP_CODEC_ZSTD;
    o.shuffle = 3;
    CHECK_ERR(tsnap_writer_create(&w, tpath("x.h5"), &o), TSNAP_EINVAL);
    CHECK_ERRMSG_HAS("shuffle");
    CHECK(w == NULL);
}

/* Every field a description has, from the index and from the walk. */
static void check_index_describes_as_the_walk(const caseset *cs, const char *path)
{
    tsnap_reader *fast = open_reader(path), *walk;
    CHECK_FATAL(fast != NULL);
    CHECK_I64(tsnap_reader_indexed(fast), 1);
    setenv("TSNAP_NO_INDEX", "1", 1);
    walk = open_reader(path);
    unsetenv("TSNAP_NO_INDEX");
    CHECK_FATAL(walk != NULL);
    CHECK_I64(tsnap_reader_indexed(walk), 0);
    CHECK_I64(tsnap_reader_count(fast), tsnap_reader_count(walk));
    CHECK_I64(tsnap_reader_count(fast), cs->n);
    for (size_t i = 0; i < tsnap_reader_count(fast) && i < tsnap_reader_count(walk); i++) {
        tsnap_tensor_info a, b;
        const char *name = tsnap_reader_name(fast, i);
        CHECK_STR(name, tsnap_reader_name(walk, i));
        if (!CHECK_OK(tsnap_reader_describe(fast, name, &a)) ||
            !CHECK_OK(tsnap_reader_describe(walk, name, &b)))
            continue;
        ctx_set("%s", name);
        CHECK_I64(a.dtype, b.dtype);
        CHECK_I64(a.ndim, b.ndim);
        CHECK_MEM(a.shape, b.shape, sizeof a.shape, "shape");
        CHECK_I64(a.chunked, b.chunked);
        CHECK_MEM(a.chunk, b.chunk, sizeof a.chunk, "chunk");
        CHECK_I64(a.codec, b.codec);
        CHECK_I64(a.nbytes, b.nbytes);
        CHECK_I64(a.stored_bytes, b.stored_bytes);
        CHECK_I64(a.map_status, b.map_status);
        CHECK_I64(a.offset, b.offset);
        CHECK_I64(a.length, b.length);
        CHECK_STR(a.checksum, b.checksum);
    }
    ctx_clear();
    tsnap_reader_free(fast);
    tsnap_reader_free(walk);
}

static void index_case(const optset *o)
{
    caseset cs;
    cases_for(&cs, o);
    const char *path = tpath("ix.h5");
    if (caseset_write(&cs, path, o) == 0) {
        check_index_describes_as_the_walk(&cs, path);
        caseset_check_file(&cs, path, o->label);
        /* anything that writes to the file gives it another time */
        CHECK_FATAL(utimensat(AT_FDCWD, path, NULL, 0) == 0);
        tsnap_reader *rd = open_reader(path);
        if (rd) {
            CHECK_I64(tsnap_reader_indexed(rd), 0);
            CHECK_I64(tsnap_reader_count(rd), cs.n);
            tsnap_reader_free(rd);
        }
        caseset_check_file(&cs, path, "walked");
    }
    caseset_free(&cs);
}

static void test_the_index_describes_every_dtype_and_layout_as_the_walk_does(void)
{
    index_case(&OPT_PLAIN);
    index_case(&OPT_SMALL);
    index_case(&OPT_DEFLATE);
    optset nosum = OPT_PLAIN;
    nosum.no_checksum = 1;
    nosum.label = "no checksums";
    index_case(&nosum);
}

static void test_a_damaged_index_is_not_used(void)
{
    float v[16] = {1, 2, 3};
    int64_t shape[1] = {16};
    DLTensor t = {v, {kDLCPU, 0}, 1, {kDLFloat, 32, 1}, shape, NULL, 0};
    tsnap_writer *w = NULL;
    const char *path = tpath("d.h5");
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_OK(tsnap_writer_put(w, "a/b", &t));
    CHECK_OK(tsnap_writer_put(w, "c", &t));
    CHECK_OK_FATAL(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    /* flip one byte of the index's entries, keeping the file's time */
    struct stat st;
    CHECK_FATAL(stat(path, &st) == 0);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK_FATAL(f >= 0);
    hid_t a = H5Aopen(f, "tsnap_index", H5P_DEFAULT), sp = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    uint8_t *blob = malloc((size_t)n);
    CHECK_FATAL(H5Aread(a, H5T_NATIVE_UINT8, blob) >= 0);
    blob[n - 3] ^= 1;
    CHECK_FATAL(H5Awrite(a, H5T_NATIVE_UINT8, blob) >= 0);
    H5Sclose(sp), H5Aclose(a), H5Fclose(f), free(blob);
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    CHECK_FATAL(utimensat(AT_FDCWD, path, times, 0) == 0);
    tsnap_reader *rd = open_reader(path);
    if (rd) {
        CHECK_I64(tsnap_reader_indexed(rd), 0);
        CHECK_I64(tsnap_reader_count(rd), 2);
        CHECK_STR(tsnap_reader_name(rd, 0), "a/b");
        size_t nattrs = 0;
        CHECK_OK(tsnap_reader_attr_count(rd, NULL, &nattrs));
        CHECK_I64(nattrs, 4); /* the index is not a root attribute to readers */
        tsnap_reader_free(rd);
    }
}

const test_entry table_tests[] = {
    TEST(test_bit_shuffle_is_the_bitshuffle_filters_transpose_and_inverts),
    TEST(test_the_filters_lz4_and_zstd_forms_decode_and_damage_is_refused),
    TEST(test_every_dtype_and_layout_round_trips_bit_shuffled_before_zstd_and_lz4),
    TEST(test_a_shuffle_outside_its_values_is_refused),
    TEST(test_the_index_describes_every_dtype_and_layout_as_the_walk_does),
    TEST(test_a_damaged_index_is_not_used),
    TEST_END,
};

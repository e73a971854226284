/*
 * test_codecs.c - the chunk codecs of src/codec.c, tested directly: shuffle
 * against a naive byte loop, encode/decode round trips of every codec at
 * odd sizes, the lz4 framing byte for byte, zstd frames HDF5's zstd filter
 * would misread, and decoders fed garbage, truncations and bit flips (they
 * decode exactly or refuse, and never touch memory outside their buffers:
 * the sanitizer build checks that).
 */
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "internal.h"
#include "testutil.h"

static const tsnap_codec CODECS[] = {TSNAP_CODEC_DEFLATE, TSNAP_CODEC_ZSTD, TSNAP_CODEC_LZ4};
static const char *const CODEC_NAMES[] = {"deflate", "zstd", "lz4"};
#define NCODECS 3

static const size_t SIZES[] = {0, 1, 2, 3, 7, 64, 1000, 4093, 65536, 100003};
#define NSIZES (sizeof SIZES / sizeof SIZES[0])

/* Half compressible (small values), half random. */
static void fill_mixed(rng *r, uint8_t *p, size_t n)
{
    rng_fill(r, p, n);
    for (size_t i = 0; i < n / 2; i++)
        p[i] &= 0x07;
}

static void naive_shuffle(uint8_t *dst, const uint8_t *src, size_t nbytes, size_t elem)
{
    size_t n = nbytes / elem;
    if (n <= 1) {
        memcpy(dst, src, nbytes);
        return;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < elem; j++)
            dst[j * n + i] = src[i * elem + j];
    memcpy(dst + n * elem, src + n * elem, nbytes - n * elem);
}

static void test_shuffle_equals_the_byte_transpose_hdf5_defines_and_inverts(void)
{
    rng r;
    rng_init(&r, __func__);
    static const size_t elems[] = {1, 2, 3, 4, 8, 16};
    for (size_t e = 0; e < sizeof elems / sizeof elems[0]; e++) {
        for (size_t s = 0; s < NSIZES; s++) {
            size_t n = SIZES[s] + (s % 3); /* also sizes that are not whole elements */
            uint8_t *src = malloc(n + 1), *want = malloc(n + 1), *got = malloc(n + 1),
                    *back = malloc(n + 1);
            rng_fill(&r, src, n);
            ctx_set("element %zu, %zu bytes", elems[e], n);
            naive_shuffle(want, src, n, elems[e]);
            tsnap__shuffle(got, src, n, elems[e], false);
            CHECK_MEM(got, want, n, "shuffled");
            tsnap__shuffle(back, got, n, elems[e], true);
            CHECK_MEM(back, src, n, "unshuffled");
            free(src), free(want), free(got), free(back);
        }
    }
    ctx_clear();
}

static void test_every_codec_round_trips_odd_sizes_within_its_bound(void)
{
    rng r;
    rng_init(&r, __func__);
    for (int c = 0; c < NCODECS; c++) {
        for (size_t s = 0; s < NSIZES; s++) {
            size_t n = SIZES[s], cap = tsnap__codec_bound(CODECS[c], n), len = 0;
            uint8_t *src = malloc(n + 1), *enc = malloc(cap), *dec = malloc(n + 1);
            fill_mixed(&r, src, n);
            ctx_set("%s, %zu bytes", CODEC_NAMES[c], n);
            int level = tsnap__codec_default_level(CODECS[c]);
            CHECK_OK(tsnap__codec_encode(CODECS[c], level, src, n, enc, cap, &len));
            CHECK(len <= cap);
            const char *why = tsnap__codec_decode(CODECS[c], enc, len, dec, n);
            CHECK_MSG(why == NULL, "decode: %s", why ? why : "");
            CHECK_MEM(dec, src, n, "decoded");
            if (n > 0) { /* a decoder given the wrong chunk size refuses */
                CHECK(tsnap__codec_decode(CODECS[c], enc, len, dec, n - 1) != NULL);
            }
            free(src), free(enc), free(dec);
        }
    }
    ctx_clear();
}

static void test_lz4_chunks_are_the_plugins_framing_and_incompressible_blocks_go_raw(void)
{
    rng r;
    rng_init(&r, __func__);
    size_t n = 5000, cap = tsnap__codec_bound(TSNAP_CODEC_LZ4, n), len = 0;
    uint8_t *src = malloc(n), *enc = malloc(cap);

    rng_fill(&r, src, n); /* random: lz4 cannot shrink it */
    CHECK_OK(tsnap__codec_encode(TSNAP_CODEC_LZ4, 0, src, n, enc, cap, &len));
    static const uint8_t header[16] = {0, 0, 0, 0, 0, 0, 0x13, 0x88,  /* 5000, BE64 */
                                       0, 0, 0x13, 0x88,              /* block 5000 */
                                       0, 0, 0x13, 0x88};             /* stored raw */
    CHECK_I64(len, 16 + n);
    CHECK_MEM(enc, header, 16, "header");
    CHECK_MEM(enc + 16, src, n, "the raw block");

    memset(src, 'a', n); /* compressible: one real block */
    CHECK_OK(tsnap__codec_encode(TSNAP_CODEC_LZ4, 0, src, n, enc, cap, &len));
    uint32_t clen = (uint32_t)enc[12] << 24 | (uint32_t)enc[13] << 16 | (uint32_t)enc[14] << 8 |
                    enc[15];
    CHECK(clen < n);
    CHECK_I64(len, 16 + clen);
    free(src), free(enc);
}

static void test_zstd_frames_hdf5s_filter_would_misread_are_refused(void)
{
    rng r;
    rng_init(&r, __func__);
    size_t n = 3000, cap = ZSTD_compressBound(n) * 2 + 64, len;
    uint8_t *src = malloc(n), *enc = malloc(cap), *dec = malloc(2 * n);
    fill_mixed(&r, src, n);

    /* A frame without its content size (a streamed one). */
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
    ZSTD_outBuffer out = {enc, cap, 0};
    ZSTD_inBuffer in = {src, n, 0};
    CHECK(ZSTD_compressStream2(cc, &out, &in, ZSTD_e_end) == 0);
    ZSTD_freeCCtx(cc);
    const char *why = tsnap__codec_decode(TSNAP_CODEC_ZSTD, enc, out.pos, dec, n);
    CHECK_MSG(why && strstr(why, "size"), "streamed frame: %s", why ? why : "(decoded)");

    /* Two frames of half the chunk each. */
    len = ZSTD_compress(enc, cap, src, n / 2, 1);
    len += ZSTD_compress(enc + len, cap - len, src + n / 2, n - n / 2, 1);
    CHECK(tsnap__codec_decode(TSNAP_CODEC_ZSTD, enc, len, dec, n) != NULL);
    free(src), free(enc), free(dec);
}

static void test_decoders_fed_garbage_truncations_and_flips_decode_exactly_or_refuse(void)
{
    rng r;
    rng_init(&r, __func__);
    static const tsnap_codec all[] = {TSNAP_CODEC_DEFLATE, TSNAP_CODEC_ZSTD, TSNAP_CODEC_LZ4,
                                      TSNAP_CODEC_LZF};
    static const char *const names[] = {"deflate", "zstd", "lz4", "lzf"};
    size_t n = 2048;
    uint8_t *src = malloc(n), *out = malloc(n);
    int refused = 0, decoded = 0;

    for (int c = 0; c < 4; c++) {
        size_t cap = c < 3 ? tsnap__codec_bound(all[c], n) : 2 * n + 64, len = 0;
        uint8_t *enc = malloc(cap), *bad = malloc(cap);
        fill_mixed(&r, src, n);
        if (c < 3) {
            CHECK_OK(tsnap__codec_encode(all[c], 1, src, n, enc, cap, &len));
        } else {
            len = 0; /* an LZF literal run per 32 bytes: valid, simple */
            for (size_t i = 0; i < n; i += 32) {
                enc[len++] = 31;
                memcpy(enc + len, src + i, 32);
                len += 32;
            }
        }
        for (int round = 0; round < 300; round++) {
            size_t blen;
            ctx_set("%s, round %d", names[c], round);
            if (round % 3 == 0) { /* garbage */
                blen = 1 + rng_below(&r, cap - 1);
                rng_fill(&r, bad, blen);
            } else if (round % 3 == 1) { /* a truncation */
                blen = rng_below(&r, len);
                memcpy(bad, enc, blen);
            } else { /* flips */
                blen = len;
                memcpy(bad, enc, len);
                for (uint64_t k = 1 + rng_below(&r, 4); k > 0; k--)
                    bad[rng_below(&r, len)] ^= (uint8_t)(1 + rng_below(&r, 255));
            }
            /* Exactly the bytes given, in a buffer of their own size, so
             * the sanitizer sees any read past them. */
            uint8_t *exact = malloc(blen ? blen : 1);
            memcpy(exact, bad, blen);
            if (tsnap__codec_decode(all[c], exact, blen, out, n))
                refused++;
            else
                decoded++;
            free(exact);
        }
        free(enc), free(bad);
    }
    ctx_clear();
    CHECK(refused > 0);
    (void)decoded; /* a flip in a literal decodes, to other bytes */
    free(src), free(out);
}

const test_entry codecs_tests[] = {
    TEST(test_shuffle_equals_the_byte_transpose_hdf5_defines_and_inverts),
    TEST(test_every_codec_round_trips_odd_sizes_within_its_bound),
    TEST(test_lz4_chunks_are_the_plugins_framing_and_incompressible_blocks_go_raw),
    TEST(test_zstd_frames_hdf5s_filter_would_misread_are_refused),
    TEST(test_decoders_fed_garbage_truncations_and_flips_decode_exactly_or_refuse),
    TEST_END,
};

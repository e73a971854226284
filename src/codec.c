/*
 * codec.c - one chunk through the filters tsnap implements itself, in
 * exactly the byte formats of the HDF5 filters, so that the same chunk
 * reads through HDF5 (h5py, h5dump) as through tsnap:
 *
 *   shuffle (2)   byte transpose by element size, before the codec;
 *   deflate (1)   one zlib stream (RFC 1950), by libdeflate;
 *   zstd (32015)  one zstd frame that records its content size;
 *   lz4 (32004)   the HDF5 plug-in's framing: u64 BE chunk size, u32 BE
 *                 block size, then per block u32 BE compressed size and a
 *                 raw LZ4 block (stored as is when it would not shrink);
 *   bitshuffle (32008)  bit transpose in blocks of 8 KiB, before the
 *                 codec (hdf5plugin's Bitshuffle without compression); its
 *                 LZ4 and zstd forms are read too;
 *   lzf (32000)   decode only (lzf.c).
 *
 * Encoders and decoders run on any thread and never call HDF5; each thread
 * keeps its own compressor state.  Decoders check every length against the
 * chunk size they expect, so no input makes them read or write outside
 * their buffers.  The zstd and lz4 HDF5 filters are registered from here,
 * so HDF5's own pipeline (hyperslab reads, type conversion, creating the
 * datasets) works with no plug-in.
 */
#include <lz4.h>
#include <libdeflate.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "internal.h"

#define LZ4_BLOCK_MAX ((size_t)1 << 30) /* the plug-in's default block size */
#define LZ4_HEADER 12

/* ---- shuffle ------------------------------------------------------ */

/* Constant element sizes let the compiler turn the strided loops into
 * vector code; blocks keep both sides in cache. */
#define SHUFFLE_BLOCK 1024

#define DEFINE_SHUFFLE(S)                                                                   \
    static void shuffle_##S(uint8_t *restrict dst, const uint8_t *restrict src, size_t n)  \
    {                                                                                       \
        for (size_t b = 0; b < n; b += SHUFFLE_BLOCK) {                                     \
            size_t m = n - b < SHUFFLE_BLOCK ? n - b : SHUFFLE_BLOCK;                       \
            for (size_t j = 0; j < S; j++)                                                  \
                for (size_t i = 0; i < m; i++)                                              \
                    dst[j * n + b + i] = src[(b + i) * S + j];                              \
        }                                                                                   \
    }                                                                                       \
    static void unshuffle_##S(uint8_t *restrict dst, const uint8_t *restrict src, size_t n) \
    {                                                                                       \
        for (size_t b = 0; b < n; b += SHUFFLE_BLOCK) {                                     \
            size_t m = n - b < SHUFFLE_BLOCK ? n - b : SHUFFLE_BLOCK;                       \
            for (size_t j = 0; j < S; j++)                                                  \
                for (size_t i = 0; i < m; i++)                                              \
                    dst[(b + i) * S + j] = src[j * n + b + i];                              \
        }                                                                                   \
    }
DEFINE_SHUFFLE(2)
DEFINE_SHUFFLE(4)
DEFINE_SHUFFLE(8)
DEFINE_SHUFFLE(16)
#undef DEFINE_SHUFFLE

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/*
 * Elements of S = 2, 4 or 8 bytes, 16 at a time (S vectors of 16 bytes):
 * within each vector a byte shuffle groups the bytes of its 16 / S
 * elements by byte position, then a transpose of (16 / S)-byte lanes
 * across the S vectors gives 16 bytes of each of the S byte planes.  The
 * transposes are their own inverse; unshuffling runs the inverse byte
 * shuffle after them.
 */
static const char GROUP_2[16] = {0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15};
static const char UNGROUP_2[16] = {0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15};
static const char GROUP_4[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};
#define GROUP_8 UNGROUP_2
#define UNGROUP_8 GROUP_2
#define UNGROUP_4 GROUP_4

__attribute__((target("ssse3"))) static void transpose(__m128i *v, int s)
{
    if (s == 2) { /* 2 x 2 of 64-bit lanes */
        __m128i a = _mm_unpacklo_epi64(v[0], v[1]), b = _mm_unpackhi_epi64(v[0], v[1]);
        v[0] = a, v[1] = b;
    } else if (s == 4) { /* 4 x 4 of 32-bit lanes */
        __m128i a = _mm_unpacklo_epi32(v[0], v[1]), b = _mm_unpackhi_epi32(v[0], v[1]);
        __m128i c = _mm_unpacklo_epi32(v[2], v[3]), d = _mm_unpackhi_epi32(v[2], v[3]);
        v[0] = _mm_unpacklo_epi64(a, c), v[1] = _mm_unpackhi_epi64(a, c);
        v[2] = _mm_unpacklo_epi64(b, d), v[3] = _mm_unpackhi_epi64(b, d);
    } else { /* 8 x 8 of 16-bit lanes */
        __m128i a[8], b[8];
        for (int k = 0; k < 8; k += 2) {
            a[k] = _mm_unpacklo_epi16(v[k], v[k + 1]);
            a[k + 1] = _mm_unpackhi_epi16(v[k], v[k + 1]);
        }
        for (int k = 0; k < 8; k += 4) {
            b[k] = _mm_unpacklo_epi32(a[k], a[k + 2]);
            b[k + 1] = _mm_unpackhi_epi32(a[k], a[k + 2]);
            b[k + 2] = _mm_unpacklo_epi32(a[k + 1], a[k + 3]);
            b[k + 3] = _mm_unpackhi_epi32(a[k + 1], a[k + 3]);
        }
        for (int k = 0; k < 4; k++) {
            v[2 * k] = _mm_unpacklo_epi64(b[k], b[k + 4]);
            v[2 * k + 1] = _mm_unpackhi_epi64(b[k], b[k + 4]);
        }
    }
}

/* The first n - n % 16 elements of size s; returns how many it did. */
__attribute__((target("ssse3"))) static size_t shuffle_ssse3(uint8_t *dst, const uint8_t *src,
                                                              size_t n, int s, bool reverse)
{
    const char *group = s == 2 ? GROUP_2 : s == 4 ? GROUP_4 : GROUP_8;
    const char *ungroup = s == 2 ? UNGROUP_2 : s == 4 ? UNGROUP_4 : UNGROUP_8;
    const __m128i fwd = _mm_loadu_si128((const __m128i *)group);
    const __m128i back = _mm_loadu_si128((const __m128i *)ungroup);
    size_t done = n - n % 16;
    for (size_t i = 0; i < done; i += 16) {
        __m128i v[8];
        if (!reverse) {
            for (int k = 0; k < s; k++)
                v[k] = _mm_shuffle_epi8(
                    _mm_loadu_si128((const __m128i *)(src + (size_t)s * i + 16 * (size_t)k)), fwd);
            transpose(v, s);
            for (int k = 0; k < s; k++)
                _mm_storeu_si128((__m128i *)(dst + (size_t)k * n + i), v[k]);
        } else {
            for (int k = 0; k < s; k++)
                v[k] = _mm_loadu_si128((const __m128i *)(src + (size_t)k * n + i));
            transpose(v, s);
            for (int k = 0; k < s; k++)
                _mm_storeu_si128((__m128i *)(dst + (size_t)s * i + 16 * (size_t)k),
                                 _mm_shuffle_epi8(v[k], back));
        }
    }
    return done;
}

static bool have_ssse3(void)
{
    static int known = -1; /* any thread may find it out; all find the same */
    int k = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (k < 0) {
        k = __builtin_cpu_supports("ssse3") ? 1 : 0;
        __atomic_store_n(&known, k, __ATOMIC_RELAXED);
    }
    return k;
}
#endif

/* The rest of a shuffle of n elements of size s, elements [from, n). */
static void shuffle_tail(uint8_t *dst, const uint8_t *src, size_t n, size_t s, size_t from,
                         bool reverse)
{
    for (size_t i = from; i < n; i++)
        for (size_t j = 0; j < s; j++) {
            if (reverse)
                dst[i * s + j] = src[j * n + i];
            else
                dst[j * n + i] = src[i * s + j];
        }
}

/* HDF5's shuffle: byte j of element i goes to j * n + i; the bytes after
 * the last whole element stay where they are. */
void tsnap__shuffle(void *dst, const void *src, size_t nbytes, size_t elem, bool reverse)
{
    const uint8_t *s = src;
    uint8_t *d = dst;
    size_t n = elem > 1 ? nbytes / elem : 0;

    if (n <= 1) {
        memcpy(d, s, nbytes);
        return;
    }
#if defined(__x86_64__) && defined(__GNUC__)
    if ((elem == 2 || elem == 4 || elem == 8) && have_ssse3()) {
        shuffle_tail(d, s, n, elem, shuffle_ssse3(d, s, n, (int)elem, reverse), reverse);
        memcpy(d + n * elem, s + n * elem, nbytes - n * elem);
        return;
    }
#endif
    switch (elem) {
    case 2: (reverse ? unshuffle_2 : shuffle_2)(d, s, n); break;
    case 4: (reverse ? unshuffle_4 : shuffle_4)(d, s, n); break;
    case 8: (reverse ? unshuffle_8 : shuffle_8)(d, s, n); break;
    case 16: (reverse ? unshuffle_16 : shuffle_16)(d, s, n); break;
    default:
        for (size_t j = 0; j < elem; j++)
            for (size_t i = 0; i < n; i++) {
                if (reverse)
                    d[i * elem + j] = s[j * n + i];
                else
                    d[j * n + i] = s[i * elem + j];
            }
    }
    memcpy(d + n * elem, s + n * elem, nbytes - n * elem);
}

/* ---- per-thread codec state --------------------------------------- */

typedef struct codec_state {
    struct libdeflate_compressor *deflate[10]; /* by level */
    struct libdeflate_decompressor *inflate;
    ZSTD_CCtx *zc;
    ZSTD_DCtx *zd;
} codec_state;

static pthread_key_t state_key;
static pthread_once_t state_once = PTHREAD_ONCE_INIT;
static int state_key_ok;

static void state_free(void *p)
{
    codec_state *st = p;
    if (!st)
        return;
    for (int i = 0; i < 10; i++)
        libdeflate_free_compressor(st->deflate[i]);
    libdeflate_free_decompressor(st->inflate);
    ZSTD_freeCCtx(st->zc);
    ZSTD_freeDCtx(st->zd);
    free(st);
}

static void state_key_create(void) { state_key_ok = pthread_key_create(&state_key, state_free) == 0; }

/* This thread's state, made on first use and freed when the thread ends. */
static codec_state *thread_state(void)
{
    codec_state *st;
    pthread_once(&state_once, state_key_create);
    if (!state_key_ok)
        return NULL;
    st = pthread_getspecific(state_key);
    if (!st && (st = calloc(1, sizeof *st)) && pthread_setspecific(state_key, st) != 0) {
        free(st);
        st = NULL;
    }
    return st;
}

/* ---- big-endian fields of the lz4 framing --------------------------- */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

static uint64_t get_be64(const uint8_t *p) { return (uint64_t)get_be32(p) << 32 | get_be32(p + 4); }

/* ---- encoding ------------------------------------------------------ */

size_t tsnap__codec_bound(tsnap_codec codec, size_t nbytes)
{
    size_t blocks;
    switch (codec) {
    case TSNAP_CODEC_DEFLATE:
        /* libdeflate's bound with no compressor at hand (NULL: any level). */
        return libdeflate_zlib_compress_bound(NULL, nbytes);
    case TSNAP_CODEC_ZSTD: return ZSTD_compressBound(nbytes);
    case TSNAP_CODEC_LZ4:
        /* Whole blocks of LZ4_BLOCK_MAX, then the rest. */
        blocks = nbytes / LZ4_BLOCK_MAX;
        return LZ4_HEADER + blocks * (4 + (size_t)LZ4_compressBound((int)LZ4_BLOCK_MAX)) +
               (nbytes % LZ4_BLOCK_MAX
                    ? 4 + (size_t)LZ4_compressBound((int)(nbytes % LZ4_BLOCK_MAX))
                    : 0);
    default: return nbytes;
    }
}

int tsnap__codec_default_level(tsnap_codec codec)
{
    switch (codec) {
    case TSNAP_CODEC_DEFLATE: return 1;
    case TSNAP_CODEC_ZSTD: return -1; /* on bit-shuffled floats, level 1's ratio at twice its speed */
    default: return 0;
    }
}

static int lz4_encode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap, size_t *out)
{
    size_t block = n < LZ4_BLOCK_MAX ? n : LZ4_BLOCK_MAX, pos = LZ4_HEADER;

    if (cap < LZ4_HEADER)
        return -1;
    put_be64(dst, n);
    put_be32(dst + 8, (uint32_t)block);
    for (size_t done = 0; done < n; done += block) {
        size_t len = n - done < block ? n - done : block;
        int c;
        if (cap - pos < 4 + len)
            return -1;
        c = LZ4_compress_default((const char *)src + done, (char *)dst + pos + 4, (int)len,
                                 (int)(cap - pos - 4 > (size_t)INT32_MAX ? INT32_MAX
                                                                         : cap - pos - 4));
        if (c <= 0 || (size_t)c >= len) { /* no gain: the block goes in raw */
            memcpy(dst + pos + 4, src + done, len);
            c = (int)len;
        }
        put_be32(dst + pos, (uint32_t)c);
        pos += 4 + (size_t)c;
    }
    *out = pos;
    return 0;
}

int tsnap__codec_encode(tsnap_codec codec, int level, const void *src, size_t n, void *dst,
                        size_t cap, size_t *out)
{
    codec_state *st = thread_state();
    size_t got;

    if (!st)
        return TSNAP_ENOMEM;
    switch (codec) {
    case TSNAP_CODEC_DEFLATE:
        if (level < 0 || level > 9)
            return TSNAP_EINVAL;
        /* libdeflate's level 0 is not a zlib stream HDF5 expects from
         * level 0 (stored blocks); both inflate the same, which is all the
         * format asks. */
        if (!st->deflate[level] && !(st->deflate[level] = libdeflate_alloc_compressor(level)))
            return TSNAP_ENOMEM;
        got = libdeflate_zlib_compress(st->deflate[level], src, n, dst, cap);
        if (!got)
            return TSNAP_ENOMEM; /* the bound was too small: cannot happen */
        *out = got;
        return 0;
    case TSNAP_CODEC_ZSTD:
        if (!st->zc && !(st->zc = ZSTD_createCCtx()))
            return TSNAP_ENOMEM;
        got = ZSTD_compressCCtx(st->zc, dst, cap, src, n, level);
        if (ZSTD_isError(got))
            return TSNAP_ENOMEM;
        *out = got;
        return 0;
    case TSNAP_CODEC_LZ4:
        return lz4_encode(src, n, dst, cap, out) < 0 ? TSNAP_ENOMEM : 0;
    default:
        return TSNAP_EINVAL;
    }
}

/* ---- decoding ------------------------------------------------------ */

static const char *lz4_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t expect)
{
    uint64_t orig;
    size_t block, pos = LZ4_HEADER;

    if (len < LZ4_HEADER)
        return "lz4 chunk shorter than its header";
    orig = get_be64(src);
    block = get_be32(src + 8);
    if (orig != expect)
        return "lz4 chunk records another size than the chunk's";
    if (block > orig)
        block = (size_t)orig;
    if (orig && !block)
        return "lz4 chunk has block size 0";
    for (size_t done = 0; done < expect; done += block) {
        size_t want = expect - done < block ? expect - done : block, c;
        if (len - pos < 4)
            return "lz4 chunk is truncated";
        c = get_be32(src + pos);
        pos += 4;
        if (c > len - pos)
            return "lz4 block runs past the chunk";
        if (c == want) {
            memcpy(dst + done, src + pos, want);
        } else if (c > (size_t)INT32_MAX || want > (size_t)INT32_MAX ||
                   LZ4_decompress_safe((const char *)src + pos, (char *)dst + done, (int)c,
                                       (int)want) != (int)want) {
            return "lz4 block is corrupt";
        }
        pos += c;
    }
    return NULL;
}

/* Decodes `src` into exactly `expect` bytes at dst; NULL on success, else
 * what is wrong with the chunk. */
static const char *decode(tsnap_codec codec, const void *src, size_t len, void *dst,
                          size_t expect, codec_state *st)
{
    size_t got = 0;
    unsigned long long content;

    switch ((int)codec) {
    case TSNAP_CODEC_DEFLATE:
        if (!st->inflate && !(st->inflate = libdeflate_alloc_decompressor()))
            return "out of memory";
        if (libdeflate_zlib_decompress(st->inflate, src, len, dst, expect, &got) !=
                LIBDEFLATE_SUCCESS ||
            got != expect)
            return got != expect ? "deflate stream does not decode to the chunk size"
                                 : "deflate stream is corrupt";
        return NULL;
    case TSNAP_CODEC_ZSTD:
        if (!st->zd && !(st->zd = ZSTD_createDCtx()))
            return "out of memory";
        content = ZSTD_getFrameContentSize(src, len);
        if (content == ZSTD_CONTENTSIZE_ERROR)
            return "zstd chunk is not a zstd frame";
        if (content == ZSTD_CONTENTSIZE_UNKNOWN)
            return "zstd frame does not record its size (HDF5's zstd filter needs it)";
        if (content != expect)
            return "zstd frame records another size than the chunk's";
        if (ZSTD_findFrameCompressedSize(src, len) != len)
            return "zstd chunk is not exactly one frame";
        got = ZSTD_decompressDCtx(st->zd, dst, expect, src, len);
        if (ZSTD_isError(got) || got != expect)
            return "zstd frame is corrupt";
        return NULL;
    case TSNAP_CODEC_LZ4:
        return lz4_decode(src, len, dst, expect);
    case TSNAP_CODEC_LZF:
        if (tsnap__lzf_decompress(src, len, dst, expect, &got) != TSNAP_LZF_OK || got != expect)
            return "LZF: malformed chunk data, or it decodes to another size than the chunk's";
        return NULL;
    default:
        return "unknown codec";
    }
}

const char *tsnap__codec_decode(tsnap_codec codec, const void *src, size_t len, void *dst,
                                size_t expect)
{
    codec_state *st = thread_state();
    return st ? decode(codec, src, len, dst, expect, st) : "out of memory";
}

/* ---- bit shuffle (the bitshuffle filter, 32008) -------------------- */

/* The bitshuffle library's default block (bshuf_default_block_size): 8 KiB
 * of elements, a multiple of 8 of them, at least 128. */
static size_t bshuf_block(size_t elem)
{
    size_t n = (8192 / elem) / 8 * 8;
    return n < 128 ? 128 : n;
}

/* The 8 x 8 bit matrix in x (byte r = row r, bit c = column c), transposed. */
static uint64_t transpose8(uint64_t x)
{
    uint64_t t;
    t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAULL;
    x = x ^ t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCULL;
    x = x ^ t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ULL;
    x = x ^ t ^ (t << 28);
    return x;
}

/* The bit rows of one byte row: `row` holds byte j of n elements (n a
 * multiple of 8); bit k of row[i] goes to bit i % 8 of out[k * n/8 + i/8].
 * The first g0 groups of 8 are done by a vector path; these are the rest. */
static void bitrows_fwd_tail(uint8_t *restrict out, const uint8_t *restrict row, size_t ng,
                             size_t g)
{
#ifdef __SSE2__
    for (; g + 2 <= ng; g += 2) {
        __m128i v = _mm_loadu_si128((const __m128i *)(row + 8 * g));
        for (int k = 7; k >= 0; k--) {
            uint16_t m = (uint16_t)_mm_movemask_epi8(v);
            memcpy(out + (size_t)k * ng + g, &m, 2);
            v = _mm_add_epi8(v, v);
        }
    }
#endif
    for (; g < ng; g++) {
        uint64_t x;
        memcpy(&x, row + 8 * g, 8);
        x = transpose8(x);
        for (int k = 0; k < 8; k++)
            out[(size_t)k * ng + g] = (uint8_t)(x >> (8 * k));
    }
}

/* The inverse: out[i] (n bytes) from the bit rows at in. */
static void bitrows_rev_tail(uint8_t *restrict row, const uint8_t *restrict in, size_t ng,
                             size_t g)
{
    for (; g < ng; g++) {
        uint64_t x = 0;
        for (int k = 0; k < 8; k++)
            x |= (uint64_t)in[(size_t)k * ng + g] << (8 * k);
        x = transpose8(x);
        memcpy(row + 8 * g, &x, 8);
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
/* AVX-512BW: 64 elements at a time, a bit row's 8 bytes from one mask. */
__attribute__((target("avx512f,avx512bw"))) static void
bitrows_fwd_avx512(uint8_t *restrict out, const uint8_t *restrict row, size_t ng)
{
    size_t g = 0;
    for (; g + 8 <= ng; g += 8) {
        __m512i v = _mm512_loadu_si512((const void *)(row + 8 * g));
        for (int k = 7; k >= 0; k--) {
            uint64_t m = (uint64_t)_mm512_movepi8_mask(v);
            memcpy(out + (size_t)k * ng + g, &m, 8);
            v = _mm512_add_epi8(v, v);
        }
    }
    bitrows_fwd_tail(out, row, ng, g);
}

__attribute__((target("avx512f,avx512bw"))) static void
bitrows_rev_avx512(uint8_t *restrict row, const uint8_t *restrict in, size_t ng)
{
    size_t g = 0;
    for (; g + 8 <= ng; g += 8) {
        __m512i v = _mm512_setzero_si512();
        for (int k = 0; k < 8; k++) {
            uint64_t m;
            memcpy(&m, in + (size_t)k * ng + g, 8);
            v = _mm512_or_si512(v, _mm512_maskz_set1_epi8((__mmask64)m, (char)(1u << k)));
        }
        _mm512_storeu_si512((void *)(row + 8 * g), v);
    }
    bitrows_rev_tail(row, in, ng, g);
}

static bool have_avx512bw(void)
{
    static int known = -1; /* any thread may find it out; all find the same */
    int k = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (k < 0) {
        k = __builtin_cpu_supports("avx512bw") ? 1 : 0;
        __atomic_store_n(&known, k, __ATOMIC_RELAXED);
    }
    return k;
}
#endif

static void bitrows_fwd(uint8_t *restrict out, const uint8_t *restrict row, size_t ng)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (have_avx512bw()) {
        bitrows_fwd_avx512(out, row, ng);
        return;
    }
#endif
    bitrows_fwd_tail(out, row, ng, 0);
}

static void bitrows_rev(uint8_t *restrict row, const uint8_t *restrict in, size_t ng)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (have_avx512bw()) {
        bitrows_rev_avx512(row, in, ng);
        return;
    }
#endif
    bitrows_rev_tail(row, in, ng, 0);
}

/* One block of n elements (a multiple of 8) of `elem` bytes: bit k of byte
 * j of element i goes to bit i % 8 of byte (8j + k) * n / 8 + i / 8 (the
 * bitshuffle library's bshuf_trans_bit_elem); `tmp` holds n * elem bytes. */
static void bshuf_block_fwd(uint8_t *restrict dst, const uint8_t *restrict src, size_t n,
                            size_t elem, uint8_t *restrict tmp)
{
    const uint8_t *rows = src;
    if (elem > 1) { /* the bytes of each position together, then their bits */
        tsnap__shuffle(tmp, src, n * elem, elem, false);
        rows = tmp;
    }
    for (size_t j = 0; j < elem; j++)
        bitrows_fwd(dst + j * n, rows + j * n, n / 8);
}

static void bshuf_block_rev(uint8_t *restrict dst, const uint8_t *restrict src, size_t n,
                            size_t elem, uint8_t *restrict tmp)
{
    uint8_t *rows = elem > 1 ? tmp : dst;
    for (size_t j = 0; j < elem; j++)
        bitrows_rev(rows + j * n, src + j * n, n / 8);
    if (elem > 1)
        tsnap__shuffle(dst, tmp, n * elem, elem, true);
}

/* Blocks of `block` elements; the last one cut to a multiple of 8; the
 * elements after that (under 8) copied as they are. */
static int bshuf_run(uint8_t *dst, const uint8_t *src, size_t nelem, size_t elem, size_t block,
                     bool reverse)
{
    uint8_t stack[16384], *tmp = stack;
    size_t done = 0;
    if (block * elem > sizeof stack && !(tmp = malloc(block * elem)))
        return TSNAP_ENOMEM;
    while (nelem - done >= 8) {
        size_t n = nelem - done < block ? nelem - done : block;
        n -= n % 8;
        (reverse ? bshuf_block_rev : bshuf_block_fwd)(dst + done * elem, src + done * elem, n,
                                                      elem, tmp);
        done += n;
    }
    memcpy(dst + done * elem, src + done * elem, (nelem - done) * elem);
    if (tmp != stack)
        free(tmp);
    return 0;
}

int tsnap__bitshuffle(void *dst, const void *src, size_t nbytes, size_t elem, bool reverse)
{
    if (elem == 0 || nbytes % elem)
        return TSNAP_EINVAL;
    return bshuf_run(dst, src, nbytes / elem, elem, bshuf_block(elem), reverse);
}

/* The filter's compressed forms (cd_values[4] 2: LZ4, 3: zstd): a u64 BE
 * size and a u32 BE block size in bytes, then per block a u32 BE length
 * and the LZ4 block or zstd frame of the bitshuffled block, then the
 * elements after the last multiple of 8, as they are. */
static const char *bshuf_decode_packed(int comp, const uint8_t *src, size_t len, uint8_t *dst,
                                       size_t expect, size_t elem, uint8_t *scratch,
                                       size_t scratch_cap, codec_state *st)
{
    size_t nelem = expect / elem, done = 0, pos = 12, block;
    if (len < 12)
        return "bitshuffle chunk shorter than its header";
    if (get_be64(src) != expect)
        return "bitshuffle chunk records another size than the chunk's";
    block = get_be32(src + 8);
    if (block % elem || (block /= elem) == 0 || block % 8 || block * elem > scratch_cap)
        return "bitshuffle chunk has a bad block size";
    while (nelem - done >= 8) {
        size_t n = nelem - done < block ? nelem - done : block, c, got;
        n -= n % 8;
        if (len - pos < 4)
            return "bitshuffle chunk is truncated";
        c = get_be32(src + pos);
        pos += 4;
        if (c > len - pos)
            return "bitshuffle block runs past the chunk";
        if (comp == 2) {
            if (c > (size_t)INT32_MAX ||
                LZ4_decompress_safe((const char *)src + pos, (char *)scratch, (int)c,
                                    (int)(n * elem)) != (int)(n * elem))
                return "bitshuffle lz4 block is corrupt";
        } else {
            if (!st->zd && !(st->zd = ZSTD_createDCtx()))
                return "out of memory";
            got = ZSTD_decompressDCtx(st->zd, scratch, n * elem, src + pos, c);
            if (ZSTD_isError(got) || got != n * elem)
                return "bitshuffle zstd block is corrupt";
        }
        bshuf_block_rev(dst + done * elem, scratch, n, elem, scratch + n * elem);
        pos += c;
        done += n;
    }
    if (len - pos != (nelem - done) * elem)
        return "bitshuffle chunk has another length than its blocks";
    memcpy(dst + done * elem, src + pos, (nelem - done) * elem);
    return NULL;
}

const char *tsnap__bitshuffle_decode(const unsigned *cd, size_t ncd, const void *src, size_t len,
                                     void *dst, size_t expect)
{
    codec_state *st = thread_state();
    size_t elem = ncd > 2 ? cd[2] : 0, block = ncd > 3 ? cd[3] : 0;
    unsigned comp = ncd > 4 ? cd[4] : 0;
    const char *why = NULL;
    uint8_t *scratch;

    if (!st)
        return "out of memory";
    if (elem == 0 || expect % elem)
        return "bitshuffle parameters do not fit the chunk (element size)";
    if (comp == 0) {
        if (block == 0)
            block = bshuf_block(elem);
        if (len != expect)
            return "bitshuffle chunk has another size than the chunk's";
        if (block % 8 || block > ((size_t)1 << 26) / elem)
            return "bitshuffle parameters give a bad block size";
        return bshuf_run(dst, src, expect / elem, elem, block, true) < 0 ? "out of memory" : NULL;
    }
    if (comp != 2 && comp != 3)
        return "bitshuffle compression other than none, LZ4 and zstd";
    /* A block is at most 64 MiB: scratch for it and for its transpose. */
    if (len >= 12) {
        size_t b = get_be32((const uint8_t *)src + 8);
        if (b > ((size_t)1 << 26))
            return "bitshuffle chunk has a bad block size";
        if (!(scratch = malloc(2 * (b ? b : 1))))
            return "out of memory";
        why = bshuf_decode_packed((int)comp, src, len, dst, expect, elem, scratch, b, st);
        free(scratch);
        return why;
    }
    return "bitshuffle chunk shorter than its header";
}

/* ---- the HDF5 filters for zstd and lz4 ------------------------------ */

/* HDF5's filter callback: the chunk in *buf (nbytes of *buf_size) is
 * replaced by its encoding or decoding; returns the new length, 0 on
 * failure. */
static size_t h5_filter(tsnap_codec codec, unsigned int flags, size_t cd_nelmts,
                        const unsigned int cd_values[], size_t nbytes, size_t *buf_size, void **buf)
{
    void *out = NULL;
    size_t len = 0;

    if (flags & H5Z_FLAG_REVERSE) {
        size_t expect;
        if (codec == TSNAP_CODEC_LZ4) {
            if (nbytes < LZ4_HEADER)
                return 0;
            expect = (size_t)get_be64(*buf);
        } else {
            unsigned long long c = ZSTD_getFrameContentSize(*buf, nbytes);
            if (c == ZSTD_CONTENTSIZE_ERROR || c == ZSTD_CONTENTSIZE_UNKNOWN)
                return 0;
            expect = (size_t)c;
        }
        /* HDF5 gives no chunk size here; refuse what no chunk can be. */
        if (expect > ((size_t)4 << 30) || !(out = H5allocate_memory(expect ? expect : 1, 0)))
            return 0;
        if (tsnap__codec_decode(codec, *buf, nbytes, out, expect)) {
            H5free_memory(out);
            return 0;
        }
        len = expect;
    } else {
        int level = codec == TSNAP_CODEC_ZSTD && cd_nelmts > 0 ? (int)cd_values[0]
                                                               : tsnap__codec_default_level(codec);
        size_t cap = tsnap__codec_bound(codec, nbytes);
        if (!(out = H5allocate_memory(cap, 0)))
            return 0;
        if (tsnap__codec_encode(codec, level, *buf, nbytes, out, cap, &len) < 0) {
            H5free_memory(out);
            return 0;
        }
    }
    H5free_memory(*buf);
    *buf = out;
    *buf_size = len ? len : 1;
    return len;
}

static size_t zstd_filter(unsigned int flags, size_t cd_nelmts, const unsigned int cd_values[],
                          size_t nbytes, size_t *buf_size, void **buf)
{
    return h5_filter(TSNAP_CODEC_ZSTD, flags, cd_nelmts, cd_values, nbytes, buf_size, buf);
}

static size_t lz4_filter(unsigned int flags, size_t cd_nelmts, const unsigned int cd_values[],
                         size_t nbytes, size_t *buf_size, void **buf)
{
    return h5_filter(TSNAP_CODEC_LZ4, flags, cd_nelmts, cd_values, nbytes, buf_size, buf);
}

static const H5Z_class2_t zstd_class = {
    H5Z_CLASS_T_VERS, (H5Z_filter_t)TSNAP_ZSTD_FILTER_ID, 1, 1, "zstd", NULL, NULL, zstd_filter,
};

static const H5Z_class2_t lz4_class = {
    H5Z_CLASS_T_VERS, (H5Z_filter_t)TSNAP_LZ4_FILTER_ID, 1, 1, "lz4", NULL, NULL, lz4_filter,
};

/* Bitshuffle through HDF5's pipeline: every form read, the form without
 * compression written (HDF5 gives the element size in cd_values[2]). */
static size_t bshuf_filter(unsigned int flags, size_t cd_nelmts, const unsigned int cd_values[],
                           size_t nbytes, size_t *buf_size, void **buf)
{
    size_t expect = nbytes, elem = cd_nelmts > 2 ? cd_values[2] : 0;
    bool packed = cd_nelmts > 4 && cd_values[4] != 0;
    void *out;

    if (packed) {
        if (!(flags & H5Z_FLAG_REVERSE) || nbytes < 12)
            return 0;
        expect = (size_t)get_be64(*buf);
    }
    if (elem == 0 || expect > ((size_t)4 << 30) || !(out = H5allocate_memory(expect ? expect : 1, 0)))
        return 0;
    if ((flags & H5Z_FLAG_REVERSE)
            ? tsnap__bitshuffle_decode(cd_values, cd_nelmts, *buf, nbytes, out, expect) != NULL
            : (cd_nelmts > 3 && cd_values[3] != 0) ||
                  tsnap__bitshuffle(out, *buf, nbytes, elem, false) < 0) {
        H5free_memory(out);
        return 0;
    }
    H5free_memory(*buf);
    *buf = out;
    *buf_size = expect ? expect : 1;
    return expect;
}

static const H5Z_class2_t bshuf_class = {
    H5Z_CLASS_T_VERS, (H5Z_filter_t)TSNAP_BITSHUFFLE_FILTER_ID, 1, 1, "bitshuffle", NULL, NULL,
    bshuf_filter,
};

static pthread_once_t filters_once = PTHREAD_ONCE_INIT;

static void register_one(const H5Z_class2_t *cls)
{
    unsigned int flags = 0;
    /* A filter the program registered itself (hdf5plugin, a plug-in HDF5
     * already loaded) stays: it writes the same bytes.  H5Zget_filter_info
     * looks only at registered filters and never loads a plug-in. */
    if (H5Zget_filter_info(cls->id, &flags) >= 0 && (flags & H5Z_FILTER_CONFIG_ENCODE_ENABLED))
        return;
    H5Eclear2(H5E_DEFAULT);
    if (H5Zregister(cls) < 0)
        H5Eclear2(H5E_DEFAULT);
}

static void filters_register_once(void)
{
    register_one(&zstd_class);
    register_one(&lz4_class);
    register_one(&bshuf_class);
}

void tsnap__filters_register(void)
{
    tsnap__lzf_register();
    (void)pthread_once(&filters_once, filters_register_once);
}

/*
 * lzf.c - the LZF filter (HDF5 filter 32000), decode only, so that files
 * h5py writes with compression="lzf" read without a plug-in.
 *
 * h5py compiles its LZF filter into itself rather than shipping a plug-in
 * libhdf5 could load, so a C reader has to bring its own.  The data format
 * is liblzf's: a chunk is a sequence of
 *
 *   literal run      000LLLLL, then L + 1 bytes to copy;
 *   back-reference   NNNooooo [E] oooooooo: copy N + 2 bytes (N = 7 means
 *                    7 + E, E an extra length byte) from the output,
 *                    starting (ooooo oooooooo) + 1 bytes back; the copy
 *                    may overlap what it writes (that is how runs repeat).
 *
 * Chunks come from files, and a file may be damaged or made to hurt: every
 * read and write below is checked against the end of its buffer first, and
 * malformed input is an error, never a guess.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

/* One input byte yields at most 88 output bytes: the longest reference,
 * 7 + 255 + 2 = 264 bytes, takes 3 input bytes.  A chunk claiming more is
 * refused before anything is allocated for it. */
#define LZF_MAX_RATIO 88

/* HDF5 1.10 keeps a chunk's size in 32 bits, so no chunk decodes to more. */
#define LZF_MAX_OUTPUT ((size_t)UINT32_MAX)

tsnap_lzf_status tsnap__lzf_decompress(const void *in, size_t in_len, void *out, size_t out_cap,
                                       size_t *out_len)
{
    const unsigned char *src = in;
    unsigned char *dst = out;
    size_t i = 0, o = 0;

    /* Indices, not pointers, walk the buffers: a pointer past a buffer's
     * end is undefined even before it is dereferenced. */
    *out_len = 0;
    /* liblzf never writes an empty chunk, and HDF5 never asks for one. */
    if (!src || in_len == 0)
        return TSNAP_LZF_MALFORMED;
    while (i < in_len) {
        unsigned ctrl = src[i++];

        if (ctrl < 32) {
            size_t run = (size_t)ctrl + 1;
            /* Malformed input is told before a full output: only the
             * latter is worth retrying with a bigger buffer. */
            if (run > in_len - i)
                return TSNAP_LZF_MALFORMED;
            if (run > out_cap - o)
                return TSNAP_LZF_OUTPUT_FULL;
            memcpy(dst + o, src + i, run);
            i += run;
            o += run;
        } else {
            size_t len = ctrl >> 5, back;

            if (len == 7) {
                if (i >= in_len)
                    return TSNAP_LZF_MALFORMED;
                len += src[i++];
            }
            if (i >= in_len)
                return TSNAP_LZF_MALFORMED;
            back = (((size_t)(ctrl & 0x1f) << 8) | src[i++]) + 1;
            len += 2;
            if (back > o)
                return TSNAP_LZF_MALFORMED; /* before the start of the output */
            if (len > out_cap - o)
                return TSNAP_LZF_OUTPUT_FULL;
            if (back >= len) {
                memcpy(dst + o, dst + o - back, len);
                o += len;
            } else {
                /* Overlapping: each byte may be one this copy just wrote. */
                for (size_t k = 0; k < len; k++, o++)
                    dst[o] = dst[o - back];
            }
        }
    }
    *out_len = o;
    return TSNAP_LZF_OK;
}

/* ---- the HDF5 filter ---------------------------------------------- */

#define LZF_FAIL(...)                                                                      \
    H5Epush2(H5E_DEFAULT, __FILE__, __func__, __LINE__, H5E_ERR_CLS, H5E_PLINE, H5E_CALLBACK, \
             __VA_ARGS__)

/*
 * HDF5's filter callback.  h5py stores cd_values {filter revision, liblzf
 * version, bytes of one chunk}; the last is the exact size every chunk
 * decodes to (HDF5 passes edge chunks whole), so a chunk decoding to any
 * other size is damaged.  Without it (a writer that did not record it) the
 * output starts at the input's size and grows, as in h5py's filter.
 * Buffers come from H5allocate_memory because HDF5 frees them.
 */
static size_t lzf_filter(unsigned flags, size_t cd_nelmts, const unsigned cd_values[],
                         size_t nbytes, size_t *buf_size, void **buf)
{
    size_t expected = 0, limit, cap, got = 0, result = 0;
    void *out = NULL;
    tsnap_lzf_status st;

    if (!(flags & H5Z_FLAG_REVERSE)) {
        /* tsnap never writes LZF.  Unreachable through HDF5's API, which
         * refuses to create or write a dataset whose filter has no encoder;
         * kept for any other way in. */
        LZF_FAIL("LZF: compressing is not supported (decode-only filter)");
        goto done;
    }
    if (nbytes == 0 || !buf || !*buf) {
        LZF_FAIL("LZF: empty chunk");
        goto done;
    }
    if (cd_nelmts >= 3 && cd_values[2] != 0)
        expected = cd_values[2];
    limit = nbytes > LZF_MAX_OUTPUT / LZF_MAX_RATIO ? LZF_MAX_OUTPUT : nbytes * LZF_MAX_RATIO;
    if (expected > limit) {
        LZF_FAIL("LZF: %zu stored bytes cannot decode to a %zu-byte chunk", nbytes, expected);
        goto done;
    }
    cap = expected ? expected : nbytes;
    for (;;) {
        if (!(out = H5allocate_memory(cap, 0))) {
            LZF_FAIL("LZF: out of memory for a %zu-byte chunk", cap);
            goto done;
        }
        st = tsnap__lzf_decompress(*buf, nbytes, out, cap, &got);
        if (st == TSNAP_LZF_OK)
            break;
        if (st == TSNAP_LZF_MALFORMED) {
            LZF_FAIL("LZF: malformed chunk data");
            goto done;
        }
        if (expected || cap >= limit) {
            LZF_FAIL("LZF: chunk decodes to more than %zu bytes", cap);
            goto done;
        }
        /* Doubling, where h5py adds the input size each round: the same
         * result in fewer passes over the input. */
        H5free_memory(out);
        out = NULL;
        cap = cap > limit / 2 ? limit : 2 * cap;
    }
    if (expected && got != expected) {
        /* HDF5 would read the chunk's full size out of the buffer. */
        LZF_FAIL("LZF: chunk decodes to %zu bytes, not the %zu of a chunk", got, expected);
        goto done;
    }
    H5free_memory(*buf);
    *buf = out;
    *buf_size = cap;
    out = NULL;
    result = got;
done:
    H5free_memory(out);
    return result;
}

static const H5Z_class2_t lzf_class = {
    H5Z_CLASS_T_VERS,
    (H5Z_filter_t)TSNAP_LZF_FILTER_ID,
    0, /* encoder_present: HDF5 then refuses to create or write LZF datasets */
    1, /* decoder_present */
    "lzf",
    NULL, /* can_apply */
    NULL, /* set_local: h5py's sets cd_values when it writes; reading needs none */
    lzf_filter,
};

static pthread_once_t lzf_once = PTHREAD_ONCE_INIT;

static void lzf_register_once(void)
{
    unsigned int flags = 0;

    /* A program that shares this libhdf5 with a full LZF filter (Debian's
     * h5py registers one that also compresses) keeps it: replacing it with
     * ours, which cannot encode, would stop that program writing LZF.
     * H5Zget_filter_info looks only at registered filters, never loads a
     * plug-in. */
    if (H5Zget_filter_info(TSNAP_LZF_FILTER_ID, &flags) >= 0 &&
        (flags & H5Z_FILTER_CONFIG_ENCODE_ENABLED))
        return;
    H5Eclear2(H5E_DEFAULT);
    /* Otherwise ours is registered, and a registered filter is never looked
     * up among plug-ins: LZF chunks go through the checked decoder above.
     * On failure reading goes on; only an LZF dataset fails, HDF5 finding
     * no filter for it. */
    if (H5Zregister(&lzf_class) < 0)
        H5Eclear2(H5E_DEFAULT);
}

void tsnap__lzf_register(void)
{
    /* Nothing to do if it fails: the once routine did not run, and the
     * filter is missing exactly as if registering had failed. */
    (void)pthread_once(&lzf_once, lzf_register_once);
}

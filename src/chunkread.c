/*
 * chunkread.c - reading a tensor's bytes without HDF5's data pipeline.
 *
 * Two paths, both chosen by reader.c from what the file says:
 *  - a flat tensor (its bytes lie in one range of the file, reader.c
 *    found from the chunk addresses) is read with pread straight into the
 *    destination, in large pieces, several at once;
 *  - a chunked tensor whose filters tsnap implements (shuffle, deflate,
 *    zstd, lz4, lzf) is read chunk by chunk with H5Dread_chunk in the
 *    calling thread, while workers decode the chunks and copy the part the
 *    selection wants into the destination.
 * Either way the checksum, when asked for, is computed on the way through.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "xxh.h"

#define PIECE_BYTES ((size_t)16 << 20) /* one pread of a flat tensor */
#define WINDOW_MAX 64

/* ---- copying a box of elements -------------------------------------- */

/* Copies an n-d box of `count` elements of `item` bytes from src to dst;
 * strides in bytes.  The innermost axis is one memcpy where both sides
 * are packed. */
static void copy_box(int ndim, const uint64_t *count, const uint8_t *src, const int64_t *sstride,
                     uint8_t *dst, const int64_t *dstride, size_t item)
{
    uint64_t idx[TSNAP_MAX_NDIM + 1] = {0};
    int last = ndim - 1;

    for (int i = 0; i < ndim; i++)
        if (count[i] == 0)
            return;
    if (ndim == 0) {
        memcpy(dst, src, item);
        return;
    }
    bool packed = sstride[last] == (int64_t)item && dstride[last] == (int64_t)item;
    for (;;) {
        const uint8_t *s = src;
        uint8_t *d = dst;
        for (int i = 0; i < last; i++) {
            s += (int64_t)idx[i] * sstride[i];
            d += (int64_t)idx[i] * dstride[i];
        }
        if (packed) {
            memcpy(d, s, (size_t)count[last] * item);
        } else {
            for (uint64_t j = 0; j < count[last]; j++)
                memcpy(d + (int64_t)j * dstride[last], s + (int64_t)j * sstride[last], item);
        }
        int a = last - 1;
        while (a >= 0 && ++idx[a] == count[a])
            idx[a--] = 0;
        if (a < 0)
            return;
    }
}

/* ---- flat tensors --------------------------------------------------- */

typedef struct flat_job {
    const tsnap_dset *t;
    int fd;
    uint64_t offset;
    const tsnap_view *dst; /* NULL: the checksum only */
    XXH3_state_t *hash;
    uint64_t nbytes;
    tsnap_buf bounce[WINDOW_MAX];
    bool direct; /* dst is C-contiguous: read into it */
} flat_job;

static int pread_all(const tsnap_dset *t, int fd, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return tsnap__err(TSNAP_EIO, t->path, t->name, "reading %zu bytes at %llu failed: %s",
                              len, (unsigned long long)(off + done),
                              n < 0 ? strerror(errno) : "the file ended early");
        done += (size_t)n;
    }
    return 0;
}

static size_t piece_len(const flat_job *j, uint64_t item)
{
    uint64_t start = item * PIECE_BYTES;
    return (size_t)(j->nbytes - start < PIECE_BYTES ? j->nbytes - start : PIECE_BYTES);
}

static void *piece_buf(flat_job *j, uint64_t item, unsigned slot)
{
    return j->direct ? (uint8_t *)j->dst->base + item * PIECE_BYTES : j->bounce[slot].p;
}

static int flat_work(void *ctx, uint64_t item, unsigned slot)
{
    flat_job *j = ctx;
    size_t len = piece_len(j, item);
    int err;
    if (!j->direct && tsnap__buf_reserve(&j->bounce[slot], len) < 0)
        return tsnap__err(TSNAP_ENOMEM, j->t->path, j->t->name, "out of memory");
    if ((err = pread_all(j->t, j->fd, piece_buf(j, item, slot), len,
                         j->offset + item * PIECE_BYTES)) < 0)
        return err;
    if (j->dst && !j->direct) /* pieces are whole elements: PIECE_BYTES is a multiple of 16 */
        tsnap__scatter(j->dst, item * PIECE_BYTES / j->t->itemsize, len / j->t->itemsize,
                       j->bounce[slot].p);
    return 0;
}

static int flat_hash(void *ctx, uint64_t item, unsigned slot)
{
    flat_job *j = ctx;
    XXH3_64bits_update(j->hash, piece_buf(j, item, slot), piece_len(j, item));
    return 0;
}

int tsnap__read_flat(const tsnap_dset *t, int fd, uint64_t offset, const tsnap_view *dst,
                     XXH3_state_t *hash, int threads)
{
    flat_job j;
    int err;

    memset(&j, 0, sizeof j);
    j.t = t;
    j.fd = fd;
    j.offset = offset;
    j.dst = dst;
    j.hash = hash;
    j.nbytes = t->nelems * t->itemsize;
    j.direct = dst && dst->contiguous;
    unsigned window = (unsigned)threads + 1 < WINDOW_MAX ? (unsigned)threads + 1 : WINDOW_MAX;
    tsnap_job_spec spec = {(j.nbytes + PIECE_BYTES - 1) / PIECE_BYTES, window, (unsigned)threads,
                           NULL, flat_work, hash ? flat_hash : NULL, NULL, &j};
    err = tsnap__job_run(&spec);
    for (int i = 0; i < WINDOW_MAX; i++)
        tsnap__buf_release(&j.bounce[i]);
    return err;
}

/* ---- filtered chunks ------------------------------------------------ */

/* The filters tsnap decodes itself, as codecs (shuffle: TSNAP_CODEC_NONE
 * with *shuffle set); false for any other. */
static bool known_filter(int id, tsnap_codec *codec)
{
    switch (id) {
    case H5Z_FILTER_SHUFFLE: *codec = TSNAP_CODEC_NONE; return true;
    case H5Z_FILTER_DEFLATE: *codec = TSNAP_CODEC_DEFLATE; return true;
    case TSNAP_ZSTD_FILTER_ID: *codec = TSNAP_CODEC_ZSTD; return true;
    case TSNAP_LZ4_FILTER_ID: *codec = TSNAP_CODEC_LZ4; return true;
    case TSNAP_LZF_FILTER_ID: *codec = TSNAP_CODEC_LZF; return true;
    case TSNAP_BITSHUFFLE_FILTER_ID: *codec = TSNAP_CODEC_BITSHUFFLE; return true;
    default: return false;
    }
}

typedef struct chunk_job {
    const tsnap_dset *t;
    const tsnap_selection *s;
    const tsnap_view *dst;
    XXH3_state_t *hash;
    int nfilters;
    int filters[8];
    tsnap_codec codecs[8];
    unsigned cd[8][8];                 /* each filter's parameters (bitshuffle's) */
    size_t ncd[8];
    int rank;                          /* file rank */
    int ndim;                          /* logical */
    hsize_t cdims[TSNAP_MAX_NDIM + 1]; /* chunk, file dims */
    uint64_t glo[TSNAP_MAX_NDIM + 1];  /* chunk grid box the selection touches */
    uint64_t gcount[TSNAP_MAX_NDIM + 1];
    size_t chunk_bytes;                /* decoded size of a chunk */
    size_t item;                       /* logical element size */
    size_t felem;                      /* HDF5 element size (shuffle) */
    uint8_t fill[16];                  /* one logical element of the fill value */
    tsnap_buf fillbuf;                 /* a whole chunk of it, made at the first
                                          chunk that was never written */
    int64_t cstride[TSNAP_MAX_NDIM];   /* chunk buffer strides, bytes, logical dims */
    bool direct;                       /* a whole chunk is one range of dst: decode into it */
    struct cslot {
        tsnap_buf raw, a, b;
        tsnap_buf direct_buf; /* points into the destination, never released */
        size_t rawlen;
        unsigned mask;
        bool skip;
        bool unwritten; /* no storage: the chunk reads as the fill value */
        hsize_t off[TSNAP_MAX_NDIM + 1];
        uint64_t lo[TSNAP_MAX_NDIM], cnt[TSNAP_MAX_NDIM]; /* selection indices it holds */
        const uint8_t *decoded;
    } slots[WINDOW_MAX];
} chunk_job;

bool tsnap__chunks_decodable(const tsnap_dset *t)
{
    int nf;
    tsnap_codec c;
    if (H5Pget_layout(t->dcpl) != H5D_CHUNKED || !t->canonical || t->big_endian || t->rank == 0)
        return false;
    nf = H5Pget_nfilters(t->dcpl);
    if (nf <= 0 || nf > 8)
        return false;
    for (int i = 0; i < nf; i++) {
        unsigned flags, conf;
        size_t ncd = 0;
        H5Z_filter_t id = H5Pget_filter2(t->dcpl, (unsigned)i, &flags, &ncd, NULL, 0, NULL, &conf);
        if (!known_filter((int)id, &c))
            return false;
    }
    if (t->pairs) { /* complex32: the pair axis must be whole in every chunk */
        hsize_t cd[TSNAP_MAX_NDIM + 1];
        if (H5Pget_chunk(t->dcpl, t->rank, cd) != t->rank || cd[t->rank - 1] != 2)
            return false;
    }
    return true;
}

/* "(i, j, ...)": where a chunk starts, for messages. */
static const char *chunk_at(const chunk_job *j, const hsize_t *off, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int a = 0; a < j->ndim && n < len; a++)
        n += (size_t)snprintf(buf + n, len - n, "%s%llu", a ? ", " : "(",
                              (unsigned long long)off[a]);
    if (n < len)
        snprintf(buf + n, len - n, ")");
    return buf;
}

/* A chunk that was never written: it decodes to a whole chunk of the
 * fill value, made once (produce runs in the calling thread, in order). */
static int fill_chunk(chunk_job *j, struct cslot *sl)
{
    if (!j->fillbuf.p) {
        if (tsnap__buf_reserve(&j->fillbuf, j->chunk_bytes) < 0)
            return tsnap__err(TSNAP_ENOMEM, j->t->path, j->t->name, "out of memory");
        for (size_t k = 0; k + j->item <= j->chunk_bytes; k += j->item)
            memcpy((uint8_t *)j->fillbuf.p + k, j->fill, j->item);
    }
    sl->unwritten = true;
    return 0;
}

/* Produce: which selected elements chunk `item` of the grid box holds,
 * and its stored bytes. */
static int chunk_produce(void *ctx, uint64_t item, unsigned si)
{
    chunk_job *j = ctx;
    struct cslot *sl = &j->slots[si];
    const tsnap_selection *s = j->s;
    uint64_t rest = item;
    hsize_t size = 0;

    sl->skip = false;
    for (int a = j->rank - 1; a >= 0; a--) {
        uint64_t g = j->glo[a] + rest % j->gcount[a];
        rest /= j->gcount[a];
        sl->off[a] = g * j->cdims[a];
    }
    for (int a = 0; a < j->ndim; a++) {
        /* Selection indices i with start + i*step in [off, off + cdim). */
        uint64_t c0 = sl->off[a], c1 = c0 + j->cdims[a], st = s->start[a], sp = s->step[a];
        uint64_t lo = c0 > st ? (c0 - st + sp - 1) / sp : 0;
        uint64_t hi = c1 > st ? (c1 - st - 1) / sp + 1 : 0;
        if (hi > s->count[a])
            hi = s->count[a];
        if (lo >= hi) {
            sl->skip = true;
            return 0;
        }
        sl->lo[a] = lo;
        sl->cnt[a] = hi - lo;
    }
    char at[256];
    sl->unwritten = false;
    if (H5Dget_chunk_storage_size(j->t->dset, sl->off, &size) < 0 || size == 0) {
        /* Never written (HDF5 1.10 fails, later ones say 0 bytes): HDF5
         * reads the fill value there. */
        unsigned mask = 0;
        haddr_t addr = 0;
        if (H5Dget_chunk_info_by_coord(j->t->dset, sl->off, &mask, &addr, &size) >= 0 &&
            addr == HADDR_UNDEF) {
            H5Eclear2(H5E_DEFAULT);
            return fill_chunk(j, sl);
        }
        return tsnap__h5err(TSNAP_EFORMAT, j->t->path, j->t->name,
                            "the chunk at %s has no storage", chunk_at(j, sl->off, at, sizeof at));
    }
    if (size > (hsize_t)8 << 30)
        return tsnap__err(TSNAP_EFORMAT, j->t->path, j->t->name,
                          "the chunk at %s claims %llu stored bytes",
                          chunk_at(j, sl->off, at, sizeof at), (unsigned long long)size);
    if (tsnap__buf_reserve(&sl->raw, (size_t)size) < 0)
        return tsnap__err(TSNAP_ENOMEM, j->t->path, j->t->name, "out of memory");
    sl->mask = 0;
    if (H5Dread_chunk(j->t->dset, H5P_DEFAULT, sl->off, &sl->mask, sl->raw.p) < 0)
        return tsnap__h5err(TSNAP_EIO, j->t->path, j->t->name, "reading the chunk at %s failed",
                            chunk_at(j, sl->off, at, sizeof at));
    sl->rawlen = (size_t)size;
    return 0;
}

/* Work: undo the filters (last first, skipping those the chunk's mask
 * says were not applied), then copy the selected part out. */
static int chunk_work(void *ctx, uint64_t item, unsigned si)
{
    chunk_job *j = ctx;
    struct cslot *sl = &j->slots[si];
    const uint8_t *cur = sl->raw.p;
    size_t len = sl->rawlen;
    tsnap_buf *next = &sl->a;
    uint8_t *into = NULL;
    char at[256];

    (void)item;
    if (sl->skip)
        return 0;
    if (sl->unwritten) {
        cur = j->fillbuf.p;
        len = j->chunk_bytes;
        goto decoded;
    }
    /* A chunk wholly inside a whole read into C-contiguous memory is one
     * range of the destination: its last filter decodes straight into it. */
    int last = -1; /* the last filter to undo */
    if (j->direct) {
        bool full = true;
        int64_t first = 0;
        for (int a = 0; a < j->ndim; a++) {
            full = full && sl->cnt[a] == j->cdims[a];
            first += (int64_t)sl->off[a] * j->dst->strides[a];
        }
        if (full)
            into = (uint8_t *)j->dst->base + first * (int64_t)j->item;
    }
    for (int f = 0; f < j->nfilters && last < 0; f++)
        if (!(sl->mask & (1u << f)))
            last = f;
    for (int f = j->nfilters - 1; f >= 0; f--) {
        if (sl->mask & (1u << f))
            continue;
        if (f == last && into && len <= j->chunk_bytes) {
            next = &sl->direct_buf;
            next->p = into;
            next->cap = j->chunk_bytes;
        } else if (tsnap__buf_reserve(next, j->chunk_bytes) < 0) {
            return tsnap__err(TSNAP_ENOMEM, j->t->path, j->t->name, "out of memory");
        }
        if (j->filters[f] == H5Z_FILTER_SHUFFLE) {
            if (len != j->chunk_bytes)
                return tsnap__err(TSNAP_EFORMAT, j->t->path, j->t->name,
                                  "the chunk at %s: shuffled data of %zu bytes, not %zu",
                                  chunk_at(j, sl->off, at, sizeof at), len, j->chunk_bytes);
            tsnap__shuffle(next->p, cur, len, j->felem, true);
        } else {
            const char *why =
                j->filters[f] == TSNAP_BITSHUFFLE_FILTER_ID
                    ? tsnap__bitshuffle_decode(j->cd[f], j->ncd[f], cur, len, next->p,
                                               j->chunk_bytes)
                    : tsnap__codec_decode(j->codecs[f], cur, len, next->p, j->chunk_bytes);
            if (why)
                return tsnap__err(TSNAP_EFORMAT, j->t->path, j->t->name, "the chunk at %s: %s",
                                  chunk_at(j, sl->off, at, sizeof at), why);
        }
        cur = next->p;
        len = j->chunk_bytes;
        next = next == &sl->a ? &sl->b : &sl->a;
    }
    if (len != j->chunk_bytes)
        return tsnap__err(TSNAP_EFORMAT, j->t->path, j->t->name,
                          "the chunk at %s holds %zu bytes, not the %zu of a chunk",
                          chunk_at(j, sl->off, at, sizeof at), len, j->chunk_bytes);
decoded:
    sl->decoded = cur;
    if (!j->dst || cur == into)
        return 0;

    /* The box: chunk element (lo*step + start - off) goes to dst index lo. */
    const tsnap_selection *s = j->s;
    const uint8_t *src = cur;
    uint8_t *dst = (uint8_t *)j->dst->base;
    int64_t sstride[TSNAP_MAX_NDIM + 1], dstride[TSNAP_MAX_NDIM + 1];
    for (int a = 0; a < j->ndim; a++) {
        uint64_t first = s->start[a] + sl->lo[a] * s->step[a] - sl->off[a];
        src += (int64_t)first * j->cstride[a];
        dst += (int64_t)sl->lo[a] * j->dst->strides[a] * (int64_t)j->item;
        sstride[a] = j->cstride[a] * (int64_t)s->step[a];
        dstride[a] = j->dst->strides[a] * (int64_t)j->item;
    }
    copy_box(j->ndim, sl->cnt, src, sstride, dst, dstride, j->item);
    return 0;
}

/* Serial (checksum of a whole read in chunk order = logical order): the
 * decoded chunk's elements that lie inside the tensor. */
static int chunk_hash(void *ctx, uint64_t item, unsigned si)
{
    chunk_job *j = ctx;
    struct cslot *sl = &j->slots[si];
    uint64_t n = 1;
    (void)item;
    for (int a = 0; a < j->ndim; a++)
        n *= sl->cnt[a];
    XXH3_64bits_update(j->hash, sl->decoded, (size_t)(n * j->item));
    return 0;
}

int tsnap__read_chunks(const tsnap_dset *t, const tsnap_selection *s, const tsnap_view *dst,
                       XXH3_state_t *hash, int threads)
{
    chunk_job *j = calloc(1, sizeof *j);
    uint64_t nitems = 1;
    size_t felem = H5Tget_size(t->ftype);
    int err = 0;

    if (!j)
        return tsnap__err(TSNAP_ENOMEM, t->path, t->name, "out of memory");
    j->t = t;
    j->s = s;
    j->dst = dst;
    j->hash = hash;
    j->rank = t->rank;
    j->ndim = t->ndim;
    j->item = t->itemsize;
    j->felem = felem;
    j->nfilters = H5Pget_nfilters(t->dcpl);
    for (int i = 0; i < j->nfilters; i++) {
        unsigned flags, conf;
        j->ncd[i] = 8;
        j->filters[i] = (int)H5Pget_filter2(t->dcpl, (unsigned)i, &flags, &j->ncd[i], j->cd[i],
                                             0, NULL, &conf);
        if (j->ncd[i] > 8)
            j->ncd[i] = 8;
        known_filter(j->filters[i], &j->codecs[i]);
    }
    if (H5Pget_chunk(t->dcpl, t->rank, j->cdims) != t->rank) {
        err = tsnap__h5err(TSNAP_EFORMAT, t->path, t->name, "cannot get the chunk shape");
        goto done;
    }
    j->chunk_bytes = felem;
    for (int a = 0; a < t->rank; a++)
        j->chunk_bytes *= j->cdims[a];
    if ((err = tsnap__fill_value(t, j->fill)) < 0)
        goto done;
    /* Chunk buffer strides in logical dims (complex32's pair is the item). */
    int64_t st = (int64_t)t->itemsize;
    for (int a = t->ndim - 1; a >= 0; a--) {
        j->cstride[a] = st;
        st *= (int64_t)j->cdims[a];
    }
    /* The chunk grid box the selection touches (the pair axis: chunk 0). */
    for (int a = 0; a < t->rank; a++) {
        j->glo[a] = 0;
        j->gcount[a] = 1;
    }
    for (int a = 0; a < t->ndim; a++) {
        uint64_t last = s->start[a] + (s->count[a] - 1) * s->step[a];
        j->glo[a] = s->start[a] / j->cdims[a];
        j->gcount[a] = last / j->cdims[a] - j->glo[a] + 1;
        nitems *= j->gcount[a];
    }
    if (dst && dst->contiguous && s->whole) {
        /* Chunks of shape (1, ..., 1, k, whole, ...) are C-order ranges. */
        int split = t->rank - 1;
        while (split > 0 && j->cdims[split] == t->dims[split])
            split--;
        j->direct = true;
        for (int a = 0; a < split; a++)
            j->direct = j->direct && j->cdims[a] == 1;
    }
    unsigned window = (unsigned)threads + 2 < WINDOW_MAX ? (unsigned)threads + 2 : WINDOW_MAX;
    tsnap_job_spec spec = {nitems, window, (unsigned)threads, chunk_produce, chunk_work,
                           hash ? chunk_hash : NULL, NULL, j};
    err = tsnap__job_run(&spec);
done:
    for (int i = 0; i < WINDOW_MAX; i++) {
        tsnap__buf_release(&j->slots[i].raw);
        tsnap__buf_release(&j->slots[i].a);
        tsnap__buf_release(&j->slots[i].b);
    }
    tsnap__buf_release(&j->fillbuf);
    free(j);
    return err;
}

/* ---- unwritten storage --------------------------------------------- */

int tsnap__fill_value(const tsnap_dset *t, uint8_t *out)
{
    H5D_fill_value_t status = H5D_FILL_VALUE_UNDEFINED;
    H5D_fill_time_t when = H5D_FILL_TIME_IFSET;
    size_t felem = H5Tget_size(t->ftype);
    int err = 0;

    memset(out, 0, t->itemsize);
    /* What HDF5 does where nothing was written: the dataset's fill value,
     * zeros when it has none (or says never to write one). */
    if (H5Pfill_value_defined(t->dcpl, &status) < 0 || H5Pget_fill_time(t->dcpl, &when) < 0) {
        err = tsnap__h5err(TSNAP_EFORMAT, t->path, t->name, "cannot read the fill value");
    } else if (status == H5D_FILL_VALUE_USER_DEFINED && when != H5D_FILL_TIME_NEVER) {
        if (felem == 0 || felem > t->itemsize || t->itemsize % felem != 0)
            err = tsnap__err(TSNAP_EFORMAT, t->path, t->name,
                             "a fill value of %zu bytes for elements of %zu", felem,
                             t->itemsize);
        else if (H5Pget_fill_value(t->dcpl, t->ftype, out) < 0)
            err = tsnap__h5err(TSNAP_EFORMAT, t->path, t->name, "cannot read the fill value");
        /* complex32 as float16 pairs: the fill value is each half's */
        for (size_t k = felem; err == 0 && k < t->itemsize; k += felem)
            memcpy(out + k, out, felem);
    }
    H5Eclear2(H5E_DEFAULT);
    return err;
}

/* ---- filters tsnap does not decode ---------------------------------- */

static const struct {
    int id;
    const char *name;
} FILTER_NAMES[] = {
    {1, "deflate"},      {2, "shuffle"},     {3, "fletcher32"},  {4, "szip"},
    {5, "nbit"},         {6, "scaleoffset"}, {305, "lzo"},       {307, "bzip2"},
    {32000, "lzf"},      {32001, "blosc"},   {32002, "mafisc"},  {32003, "snappy"},
    {32004, "lz4"},      {32005, "apax"},    {32006, "cbf"},     {32007, "jpeg-xr"},
    {32008, "bitshuffle"}, {32009, "spdp"},  {32010, "lpc-rice"}, {32011, "ccsds-123"},
    {32012, "jpeg-ls"},  {32013, "zfp"},     {32014, "fpzip"},   {32015, "zstd"},
    {32016, "b3d"},      {32017, "sz"},      {32018, "fcidecomp"}, {32019, "jpeg"},
    {32020, "vbz"},      {32021, "fapec"},   {32022, "bitgroom"}, {32023, "granularbr"},
    {32024, "sz3"},      {32025, "delta-rice"}, {32026, "blosc2"}, {32027, "flac"},
    {32028, "sperr"},    {32029, "htj2k"},
};

const char *tsnap_filter_name(int id)
{
    for (size_t i = 0; i < sizeof FILTER_NAMES / sizeof FILTER_NAMES[0]; i++)
        if (FILTER_NAMES[i].id == id)
            return FILTER_NAMES[i].name;
    return NULL;
}

/* Plug-in directories added by tsnap_plugin_path_append, handed to HDF5
 * when a dataset first needs a filter HDF5 has not got: adding them costs
 * nothing until then. */
static pthread_mutex_t plugin_lock = PTHREAD_MUTEX_INITIALIZER;
static char *plugin_dirs[16];
static size_t plugin_ndirs, plugin_applied;

int tsnap_plugin_path_append(const char *dir)
{
    int err = 0;
    tsnap__begin();
    TSNAP_CHECK_ARG(dir != NULL && *dir != '\0');
    pthread_mutex_lock(&plugin_lock);
    bool seen = false;
    for (size_t i = 0; i < plugin_ndirs && !seen; i++)
        seen = strcmp(plugin_dirs[i], dir) == 0;
    if (!seen && plugin_ndirs == sizeof plugin_dirs / sizeof plugin_dirs[0])
        err = tsnap__err(TSNAP_EINVAL, NULL, NULL, "too many plug-in directories (at most %zu)",
                         sizeof plugin_dirs / sizeof plugin_dirs[0]);
    else if (!seen && !(plugin_dirs[plugin_ndirs] = strdup(dir)))
        err = tsnap__err(TSNAP_ENOMEM, NULL, NULL, "out of memory");
    else if (!seen)
        plugin_ndirs++;
    pthread_mutex_unlock(&plugin_lock);
    return err;
}

/* Hands HDF5 the directories added since the last call that exist;
 * whether there were any.  An entry of HDF5's list that is no directory
 * goes first:
 * HDF5 1.10 stops searching at a directory it cannot open, and its
 * default one (where HDF5_PLUGIN_PATH is not set) often does not exist. */
static bool plugin_path_apply(void)
{
    bool added = false;
    pthread_mutex_lock(&plugin_lock);
    if (plugin_applied < plugin_ndirs) {
        unsigned n = 0;
        if (H5PLsize(&n) < 0)
            n = 0;
        for (unsigned i = n; i-- > 0;) {
            char dir[4096];
            struct stat st;
            ssize_t len = H5PLget(i, dir, sizeof dir);
            if (len > 0 && (size_t)len < sizeof dir && (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)))
                H5PLremove(i);
        }
    }
    for (; plugin_applied < plugin_ndirs; plugin_applied++) {
        struct stat st;
        if (stat(plugin_dirs[plugin_applied], &st) == 0 && S_ISDIR(st.st_mode))
            added |= H5PLappend(plugin_dirs[plugin_applied]) >= 0;
    }
    pthread_mutex_unlock(&plugin_lock);
    H5Eclear2(H5E_DEFAULT);
    return added;
}

static bool filter_available(int id)
{
    htri_t avail = H5Zfilter_avail((H5Z_filter_t)id);
    if (avail <= 0 && plugin_path_apply())
        avail = H5Zfilter_avail((H5Z_filter_t)id);
    H5Eclear2(H5E_DEFAULT);
    return avail > 0;
}

int tsnap__filters_check(const tsnap_dset *t)
{
    int nf = H5Pget_nfilters(t->dcpl);
    for (int i = 0; i < nf; i++) {
        unsigned flags = 0, conf = 0;
        size_t ncd = 0;
        char name[64] = "";
        H5Z_filter_t id = H5Pget_filter2(t->dcpl, (unsigned)i, &flags, &ncd, NULL, sizeof name,
                                         name, &conf);
        if (id < 0)
            return tsnap__h5err(TSNAP_EFORMAT, t->path, t->name, "cannot read filter %d", i);
        if (filter_available((int)id))
            continue;
        const char *known = tsnap_filter_name((int)id);
        return tsnap__err(TSNAP_ENOFILTER, t->path, t->name,
                          "HDF5 filter %d (%s) is not available: install hdf5plugin (pip "
                          "install hdf5plugin; tsnap's Python package then uses its "
                          "plug-ins), or set HDF5_PLUGIN_PATH to a directory of HDF5 filter "
                          "plug-ins that has it",
                          (int)id, known ? known : *name ? name : "an unregistered filter");
    }
    H5Eclear2(H5E_DEFAULT);
    return 0;
}

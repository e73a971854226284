/*
 * writer.c - one snapshot file: create under a temporary name, put
 * tensors chunk by chunk, commit by rename.
 *
 * The data path of a put, one chunk at a time: the caller's memory is
 * used in place when it already is the chunk's C-order bytes, else packed
 * into a staging buffer; shuffled and compressed (codec.c); checksummed in
 * order; written with H5Dwrite_chunk as exactly the chunk HDF5's filters
 * would store.  Worker threads (pool.c) pack, compress and checksum while
 * the calling thread writes, with a few chunks per thread in flight.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "xxh.h"

#define CHUNK_BYTES_MAX ((size_t)2 << 30)
#define RESERVE_MIN ((uint64_t)1 << 20) /* below, a tensor's blocks are not reserved */
#define WINDOW_MAX 64

enum writer_state { W_OPEN, W_FAILED, W_DONE };

/* Version 1 of tsnap_write_options: everything before `threads`. */
#define OPTIONS_V1_SIZE offsetof(tsnap_write_options, threads)

/* The buffers of one chunk in flight. */
typedef struct slot {
    tsnap_buf packed;   /* the chunk's C-order bytes, padded to full size */
    tsnap_buf shuffled;
    tsnap_buf encoded;
    const void *logical; /* what the checksum reads: caller memory or packed */
    const void *data;    /* what is written */
    size_t len;
    hsize_t offset[TSNAP_MAX_NDIM + 1];
} slot;

struct tsnap_writer {
    char *path; /* final name */
    char *tmp;  /* where the data goes until commit */
    hid_t file;
    tsnap_write_options opts;
    char *producer;
    enum writer_state state;
    slot *slots; /* WINDOW_MAX, made on the first chunked put */
    hid_t lcpl;  /* link creation: intermediate groups */
    tsnap_table table; /* the index of the tensors put (table.c) */
    /* The last dataset creation properties, reused by the next tensor of
     * the same chunking (many small tensors share one). */
    hid_t dcpl;
    int dcpl_rank; /* -1: contiguous */
    int dcpl_shuffle;
    size_t dcpl_elem; /* the element size bitshuffle's parameters name */
    hsize_t dcpl_chunk[TSNAP_MAX_NDIM + 1];
    /* Asynchronous puts of CUDA tensors: copied to pinned host memory,
     * written at commit, in order. */
    struct pending {
        char *name;
        tsnap_view v;      /* the device tensor's shape and dtype */
        tsnap_stage stage; /* one slot: the whole tensor */
    } *pending;
    size_t npending, cap_pending;
};

int tsnap_write_options_init(tsnap_write_options *opts, unsigned int version)
{
    static const tsnap_write_options defaults = TSNAP_WRITE_OPTIONS_INIT;
    tsnap__begin();
    TSNAP_CHECK_ARG(opts != NULL);
    if (version == 1) {
        memcpy(opts, &defaults, OPTIONS_V1_SIZE);
        opts->version = 1;
        return 0;
    }
    if (version != TSNAP_WRITE_OPTIONS_VERSION)
        return tsnap__err(TSNAP_EINVAL, NULL, NULL, "unknown write options version %u", version);
    *opts = defaults;
    return 0;
}

/* The caller's options as the current version: a version 1 struct ends
 * before `threads`, which then keeps its default. */
static int upgrade_options(const tsnap_write_options *in, tsnap_write_options *out,
                           const char *path)
{
    static const tsnap_write_options defaults = TSNAP_WRITE_OPTIONS_INIT;
    *out = defaults;
    if (!in)
        return 0;
    if (in->version == 1) {
        memcpy(out, in, OPTIONS_V1_SIZE);
    } else if (in->version == TSNAP_WRITE_OPTIONS_VERSION) {
        *out = *in;
    } else {
        return tsnap__err(TSNAP_EINVAL, path, NULL, "unknown write options version %u",
                          in->version);
    }
    out->version = TSNAP_WRITE_OPTIONS_VERSION;
    return 0;
}

static int check_options(const tsnap_write_options *o, const char *path)
{
    if (o->codec != TSNAP_CODEC_NONE && o->codec != TSNAP_CODEC_DEFLATE &&
        o->codec != TSNAP_CODEC_ZSTD && o->codec != TSNAP_CODEC_LZ4)
        return tsnap__err(TSNAP_EINVAL, path, NULL, "unknown codec %d", (int)o->codec);
    if (o->codec == TSNAP_CODEC_DEFLATE && (o->level < 0 || o->level > 9))
        return tsnap__err(TSNAP_EINVAL, path, NULL, "deflate level %d is outside 0..9",
                          o->level);
    if (o->codec == TSNAP_CODEC_ZSTD && (o->level < -7 || o->level > 22))
        return tsnap__err(TSNAP_EINVAL, path, NULL, "zstd level %d is outside -7..22",
                          o->level);
    if ((o->codec == TSNAP_CODEC_LZ4 || o->codec == TSNAP_CODEC_NONE) && o->level != 0)
        return tsnap__err(TSNAP_EINVAL, path, NULL, "%s takes no level (got %d)",
                          o->codec == TSNAP_CODEC_LZ4 ? "lz4" : "no compression", o->level);
    if (o->threads < 0 || o->threads > 256)
        return tsnap__err(TSNAP_EINVAL, path, NULL, "threads %d is outside 0..256",
                          o->threads);
    if (o->shuffle < TSNAP_SHUFFLE_AUTO || o->shuffle > TSNAP_SHUFFLE_BIT)
        return tsnap__err(TSNAP_EINVAL, path, NULL,
                          "shuffle must be -1 (auto), 0 (none), 1 (byte) or 2 (bit), not %d",
                          o->shuffle);
    if (o->chunk_bytes > CHUNK_BYTES_MAX)
        return tsnap__err(TSNAP_EINVAL, path, NULL, "chunk_bytes %zu is over 2 GiB",
                          o->chunk_bytes);
    return 0;
}

/* ISO-8601 UTC with microseconds. */
static void now_iso8601(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
}

static int write_root_attrs(tsnap_writer *w)
{
    char created[64];
    int64_t version = TSNAP_FORMAT_VERSION;
    int64_t shape0 = 0;
    DLTensor t = {&version, {kDLCPU, 0}, 0, {kDLInt, 64, 1}, &shape0, NULL, 0};
    tsnap_view v;
    int err;

    now_iso8601(created, sizeof created);
    if ((err = tsnap__attr_write_string(w->file, "tsnap_format", "tsnap", w->path, NULL)) < 0 ||
        (err = tsnap__view_init(&v, &t, w->path, NULL)) < 0 ||
        (err = tsnap__attr_write_tensor(w->file, "tsnap_version", &v, w->path, NULL)) < 0 ||
        (err = tsnap__attr_write_string(w->file, "created", created, w->path, NULL)) < 0 ||
        (err = tsnap__attr_write_string(w->file, "producer", w->producer, w->path, NULL)) < 0)
        return err;
    return 0;
}

static int check_target(const char *path, const tsnap_write_options *o)
{
    const char *slash = strrchr(path, '/');
    struct stat st;

    if (slash && slash[1] == '\0')
        return tsnap__err(TSNAP_EINVAL, path, NULL, "path names a directory, not a file");
    if (slash && slash != path) {
        char *dir = strndup(path, (size_t)(slash - path));
        int rc;
        if (!dir)
            return tsnap__err(TSNAP_ENOMEM, path, NULL, "out of memory");
        rc = stat(dir, &st);
        free(dir);
        if (rc < 0 || !S_ISDIR(st.st_mode))
            return tsnap__err(TSNAP_ENOTFOUND, path, NULL, "the directory does not exist");
    }
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return tsnap__err(TSNAP_EEXISTS, path, NULL, "a directory of that name exists");
        if (!o->overwrite)
            return tsnap__err(TSNAP_EEXISTS, path, NULL,
                              "the file exists and overwrite is off");
    }
    return 0;
}

int tsnap_writer_create(tsnap_writer **out, const char *path, const tsnap_write_options *opts)
{
    tsnap_writer *w = NULL;
    tsnap_write_options o;
    hid_t fapl = H5I_INVALID_HID;
    int err;

    tsnap__begin();
    TSNAP_CHECK_ARG(out != NULL);
    *out = NULL;
    TSNAP_CHECK_ARG(path != NULL && *path != '\0');
    if ((err = upgrade_options(opts, &o, path)) < 0 || (err = check_options(&o, path)) < 0 ||
        (err = check_target(path, &o)) < 0)
        return err;
    opts = &o;
    tsnap__filters_register();
    tsnap__save_begins(path); /* the file the last save here replaced goes now */

    w = calloc(1, sizeof *w);
    if (!w)
        return tsnap__err(TSNAP_ENOMEM, path, NULL, "out of memory");
    w->file = w->lcpl = w->dcpl = H5I_INVALID_HID;
    w->state = W_DONE; /* nothing to abort until the file exists */
    w->opts = *opts;
    if (!w->opts.chunk_bytes)
        w->opts.chunk_bytes = TSNAP_DEFAULT_CHUNK_BYTES;
    if (w->opts.level == 0)
        w->opts.level = tsnap__codec_default_level(w->opts.codec);
    if (w->opts.threads == 0)
        w->opts.threads = tsnap_threads();
    w->path = strdup(path);
    w->producer = strdup(opts->producer ? opts->producer : "tsnap " TSNAP_VERSION_STRING);
    w->opts.producer = w->producer;
    if (!w->path || !w->producer) {
        err = tsnap__err(TSNAP_ENOMEM, path, NULL, "out of memory");
        goto fail;
    }
    if ((err = tsnap__temp_path(path, &w->tmp)) < 0)
        goto fail;

    /* v110 bounds: the Fixed Array chunk index, which lays an
     * early-allocated dataset's chunks back to back. */
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    w->lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (fapl < 0 || tsnap__vfd_set(fapl) < 0 ||
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) < 0 ||
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 || w->lcpl < 0 ||
        H5Pset_create_intermediate_group(w->lcpl, 1) < 0) {
        err = tsnap__h5err(TSNAP_ENOMEM, path, NULL, "cannot set up file access");
        goto fail;
    }
    w->file = H5Fcreate(w->tmp, H5F_ACC_EXCL, H5P_DEFAULT, fapl);
    if (w->file < 0) {
        err = tsnap__h5err(TSNAP_EIO, path, NULL, "cannot create the temporary file");
        goto fail;
    }
    w->state = W_OPEN;
    if ((err = write_root_attrs(w)) < 0)
        goto fail;
    H5Pclose(fapl);
    *out = w;
    return 0;

fail:
    tsnap__h5close(fapl);
    tsnap_writer_free(w);
    return err;
}

static int check_open(tsnap_writer *w, const char *name)
{
    if (w->state == W_DONE)
        return tsnap__err(TSNAP_ESTATE, w->path, name,
                          "the snapshot is already committed or aborted");
    if (w->state == W_FAILED)
        return tsnap__err(TSNAP_ESTATE, w->path, name,
                          "an earlier write failed; the snapshot can only be aborted");
    return 0;
}

/* Refuses a name that is taken, or whose path crosses a tensor. */
/* 1 when `a` names `b` or a group above it. */
static bool names_or_contains(const char *a, const char *b)
{
    size_t n = strlen(a);
    return strncmp(a, b, n) == 0 && (b[n] == '\0' || b[n] == '/');
}

static int check_free_name(tsnap_writer *w, const char *name)
{
    char prefix[1025];
    size_t len = strlen(name);
    for (size_t i = 0; i < w->npending; i++)
        if (names_or_contains(w->pending[i].name, name) ||
            names_or_contains(name, w->pending[i].name))
            return tsnap__err(TSNAP_EEXISTS, w->path, name,
                              "an asynchronous put of '%s' is pending", w->pending[i].name);
    for (size_t i = 0; i <= len; i++) {
        if (name[i] != '/' && name[i] != '\0')
            continue;
        memcpy(prefix, name, i);
        prefix[i] = '\0';
        htri_t exists = H5Lexists(w->file, prefix, H5P_DEFAULT);
        if (exists < 0)
            return tsnap__h5err(TSNAP_EIO, w->path, name, "cannot look up '%s'", prefix);
        if (!exists)
            return 0;
        if (name[i] == '\0')
            return tsnap__err(TSNAP_EEXISTS, w->path, name, "a tensor or group of that name exists");
        H5O_info_t info;
        if (H5Oget_info_by_name2(w->file, prefix, &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0)
            return tsnap__h5err(TSNAP_EIO, w->path, name, "cannot look up '%s'", prefix);
        if (info.type != H5O_TYPE_GROUP)
            return tsnap__err(TSNAP_EEXISTS, w->path, name, "'%s' is a tensor, not a group",
                              prefix);
    }
    return 0;
}

static hid_t make_dcpl(const tsnap_writer *w, bool contiguous, int shuffle, size_t elem,
                       int rank, const hsize_t *cdims);

/* Shuffle runs on the HDF5 element: for complex32 one float16. */
static size_t file_elem_size(const tsnap_view *v)
{
    return v->dtype == TSNAP_COMPLEX32 ? 2 : v->itemsize;
}

/* The shuffle a tensor gets (TSNAP_SHUFFLE_NONE, _BYTE or _BIT).  Auto:
 * none for one-byte elements, bit shuffle before zstd (a better ratio at
 * zstd's speed on floats), byte shuffle before deflate and lz4. */
static int use_shuffle(const tsnap_writer *w, const tsnap_view *v)
{
    if (w->opts.shuffle != TSNAP_SHUFFLE_AUTO)
        return w->opts.shuffle;
    if (file_elem_size(v) == 1)
        return TSNAP_SHUFFLE_NONE;
    return w->opts.codec == TSNAP_CODEC_ZSTD ? TSNAP_SHUFFLE_BIT : TSNAP_SHUFFLE_BYTE;
}

/* The dataset creation properties (layout, chunking, filters) for v, and
 * its chunk shape; owned by the writer. */
static hid_t dcpl_for(tsnap_writer *w, const tsnap_view *v, int rank, const hsize_t *dims,
                      int64_t *chunk)
{
    bool filtered = w->opts.codec != TSNAP_CODEC_NONE;
    int shuffle = use_shuffle(w, v);
    size_t elem = file_elem_size(v);
    bool contiguous = v->ndim == 0 || v->nelems == 0; /* HDF5 cannot chunk these */
    hsize_t cdims[TSNAP_MAX_NDIM + 1];
    hid_t dcpl;

    if (!contiguous) {
        tsnap__chunk_shape(v->ndim, v->shape, v->itemsize, w->opts.chunk_bytes, !filtered,
                           chunk);
        for (int i = 0; i < v->ndim; i++)
            cdims[i] = (hsize_t)chunk[i];
        if (rank > v->ndim) /* complex32's pair axis */
            cdims[rank - 1] = dims[rank - 1];
    }
    if (w->dcpl >= 0 && w->dcpl_rank == (contiguous ? -1 : rank) &&
        (contiguous || (w->dcpl_shuffle == shuffle && w->dcpl_elem == elem &&
                        memcmp(w->dcpl_chunk, cdims, (size_t)rank * sizeof *cdims) == 0)))
        return w->dcpl;
    tsnap__h5close(w->dcpl);
    w->dcpl = H5I_INVALID_HID;
    if ((dcpl = make_dcpl(w, contiguous, shuffle, elem, rank, cdims)) < 0)
        return dcpl;
    w->dcpl = dcpl;
    w->dcpl_rank = contiguous ? -1 : rank;
    w->dcpl_shuffle = shuffle;
    w->dcpl_elem = elem;
    if (!contiguous)
        memcpy(w->dcpl_chunk, cdims, (size_t)rank * sizeof *cdims);
    return dcpl;
}

static hid_t make_dcpl(const tsnap_writer *w, bool contiguous, int shuffle, size_t elem,
                       int rank, const hsize_t *cdims)
{
    /* hdf5plugin's Bitshuffle without its own compression: version 0.5,
     * the element size, the default block, no compression. */
    unsigned bshuf[5] = {0, 5, (unsigned)elem, 0, 0};
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    bool filtered = w->opts.codec != TSNAP_CODEC_NONE;

    if (dcpl < 0 || H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0)
        goto fail;
    if (contiguous) {
        if (H5Pset_layout(dcpl, H5D_CONTIGUOUS) < 0 ||
            H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) < 0)
            goto fail;
        return dcpl;
    }
    if (H5Pset_chunk(dcpl, rank, cdims) < 0)
        goto fail;
    if (!filtered) {
        if (H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) < 0)
            goto fail;
        return dcpl;
    }
    if (shuffle == TSNAP_SHUFFLE_BYTE && H5Pset_shuffle(dcpl) < 0)
        goto fail;
    if (shuffle == TSNAP_SHUFFLE_BIT &&
        H5Pset_filter(dcpl, TSNAP_BITSHUFFLE_FILTER_ID, H5Z_FLAG_OPTIONAL, 5, bshuf) < 0)
        goto fail;
    /* The codecs as h5py writes them (hdf5plugin's filters are optional,
     * with the level or the lz4 block size, 0: the default, as cd_values). */
    unsigned cd = (unsigned)w->opts.level;
    if (w->opts.codec == TSNAP_CODEC_DEFLATE ? H5Pset_deflate(dcpl, cd) < 0
        : w->opts.codec == TSNAP_CODEC_ZSTD
            ? H5Pset_filter(dcpl, TSNAP_ZSTD_FILTER_ID, H5Z_FLAG_OPTIONAL, 1, &cd) < 0
            : H5Pset_filter(dcpl, TSNAP_LZ4_FILTER_ID, H5Z_FLAG_OPTIONAL, 1, &cd) < 0)
        goto fail;
    return dcpl;
fail:
    tsnap__h5close(dcpl);
    return H5I_INVALID_HID;
}

/* One tensor's chunks: the geometry of the chunk rule and what the
 * steps of the job share. */
typedef struct put_job {
    tsnap_writer *w;
    const char *name;
    const tsnap_view *v;
    hid_t dset;
    XXH3_state_t *hash;
    int shuffle;          /* TSNAP_SHUFFLE_NONE, _BYTE or _BIT */
    size_t elem;          /* HDF5 element size (shuffle) */
    int rank, split;      /* file rank; the axis the chunk rule splits */
    uint64_t inner;       /* logical elements of one index of `split` */
    uint64_t nsplit;      /* chunks along `split` */
    uint64_t k;           /* chunk length along `split` */
    size_t chunk_bytes;   /* bytes of a full chunk */
    tsnap_stage *stage;   /* a tensor in CUDA memory: its chunks' host copies */
} put_job;

/* Chunk `item`'s logical elements [*first, *first + *n). */
static void chunk_range(const put_job *j, uint64_t item, uint64_t *first, uint64_t *n)
{
    const tsnap_view *v = j->v;
    uint64_t o = item / j->nsplit, k0 = (item % j->nsplit) * j->k;
    uint64_t k = (uint64_t)v->shape[j->split] - k0 < j->k ? (uint64_t)v->shape[j->split] - k0
                                                           : j->k;
    *first = (o * (uint64_t)v->shape[j->split] + k0) * j->inner;
    *n = k * j->inner;
}

/* Produce, for a tensor in CUDA memory: queue the copy of the chunk into
 * its slot's pinned buffer. */
static int put_fetch(void *ctx, uint64_t item, unsigned si)
{
    put_job *j = ctx;
    uint64_t first, n;
    chunk_range(j, item, &first, &n);
    return tsnap__stage_fetch(j->stage, si, j->v, first, n);
}

/* Work: the bytes of chunk `item`, packed, padded, shuffled, compressed. */
static int put_work(void *ctx, uint64_t item, unsigned si)
{
    put_job *j = ctx;
    const tsnap_view *v = j->v;
    slot *sl = &j->w->slots[si];
    uint64_t o = item / j->nsplit, k0 = (item % j->nsplit) * j->k, first, n;
    chunk_range(j, item, &first, &n);
    size_t bytes = (size_t)(n * v->itemsize);
    const uint8_t *chunk;
    int err;

    /* Where the chunk starts in the file's dims (complex32's pair axis,
     * the last, starts at 0). */
    uint64_t rest = o;
    memset(sl->offset, 0, sizeof sl->offset);
    for (int i = j->split - 1; i >= 0; i--) {
        sl->offset[i] = rest % (uint64_t)v->shape[i];
        rest /= (uint64_t)v->shape[i];
    }
    sl->offset[j->split] = k0;

    if (j->stage) { /* the chunk's C-order bytes, once its copy has landed */
        if ((err = tsnap__stage_wait(j->stage, si)) < 0)
            return err;
        uint8_t *staged = j->stage->slot[si].host;
        if (v->dtype == TSNAP_BOOL)
            for (size_t i = 0; i < bytes; i++)
                staged[i] = staged[i] != 0;
        memset(staged + bytes, 0, j->chunk_bytes - bytes);
        chunk = staged;
    } else if (v->contiguous && v->dtype != TSNAP_BOOL && bytes == j->chunk_bytes) {
        chunk = (const uint8_t *)v->base + first * v->itemsize; /* in place */
    } else {
        if (tsnap__buf_reserve(&sl->packed, j->chunk_bytes) < 0)
            return tsnap__err(TSNAP_ENOMEM, j->w->path, j->name,
                              "out of memory for a %zu-byte chunk", j->chunk_bytes);
        if (v->contiguous)
            memcpy(sl->packed.p, v->base + first * v->itemsize, bytes);
        else
            tsnap__gather(v, first, n, sl->packed.p);
        if (v->dtype == TSNAP_BOOL) /* HDF5's enum holds 0 and 1 only */
            for (size_t i = 0; i < bytes; i++)
                ((uint8_t *)sl->packed.p)[i] = ((uint8_t *)sl->packed.p)[i] != 0;
        /* HDF5 stores an edge chunk at full size; the rest is padding. */
        memset((uint8_t *)sl->packed.p + bytes, 0, j->chunk_bytes - bytes);
        chunk = sl->packed.p;
    }
    sl->logical = chunk;
    sl->data = chunk;
    sl->len = j->chunk_bytes;
    if (j->w->opts.codec == TSNAP_CODEC_NONE)
        return 0;
    if (j->shuffle) {
        if (tsnap__buf_reserve(&sl->shuffled, j->chunk_bytes) < 0)
            return tsnap__err(TSNAP_ENOMEM, j->w->path, j->name,
                              "out of memory for a %zu-byte chunk", j->chunk_bytes);
        if (j->shuffle == TSNAP_SHUFFLE_BIT) {
            if (tsnap__bitshuffle(sl->shuffled.p, chunk, j->chunk_bytes, j->elem, false) < 0)
                return tsnap__err(TSNAP_ENOMEM, j->w->path, j->name,
                                  "out of memory for a %zu-byte chunk", j->chunk_bytes);
        } else {
            tsnap__shuffle(sl->shuffled.p, chunk, j->chunk_bytes, j->elem, false);
        }
        chunk = sl->shuffled.p;
    }
    size_t cap = tsnap__codec_bound(j->w->opts.codec, j->chunk_bytes);
    if (tsnap__buf_reserve(&sl->encoded, cap) < 0)
        return tsnap__err(TSNAP_ENOMEM, j->w->path, j->name,
                          "out of memory for a %zu-byte chunk", cap);
    if ((err = tsnap__codec_encode(j->w->opts.codec, j->w->opts.level, chunk, j->chunk_bytes,
                                   sl->encoded.p, cap, &sl->len)) < 0)
        return tsnap__err(err, j->w->path, j->name, "compressing chunk %llu failed",
                          (unsigned long long)item);
    sl->data = sl->encoded.p;
    return 0;
}

/* Serial: the checksum reads the logical bytes, padding left out. */
static int put_hash(void *ctx, uint64_t item, unsigned si)
{
    put_job *j = ctx;
    uint64_t k0 = (item % j->nsplit) * j->k, len = (uint64_t)j->v->shape[j->split] - k0;
    if (len > j->k)
        len = j->k;
    XXH3_64bits_update(j->hash, j->w->slots[si].logical,
                       (size_t)(len * j->inner * j->v->itemsize));
    return 0;
}

/* Consume: the chunk goes to the file as stored bytes, all filters
 * applied (mask 0). */
static int put_write(void *ctx, uint64_t item, unsigned si)
{
    put_job *j = ctx;
    slot *sl = &j->w->slots[si];
    if (H5Dwrite_chunk(j->dset, H5P_DEFAULT, 0, sl->offset, sl->len, sl->data) < 0)
        return tsnap__h5err(TSNAP_EIO, j->w->path, j->name, "writing chunk %llu failed",
                            (unsigned long long)item);
    return 0;
}

/*
 * An uncompressed tensor's chunks were all allocated when the dataset was
 * created, back to back; the file system is told to reserve those blocks
 * now (FALLOC_FL_KEEP_SIZE: the file's size does not change), which makes
 * the writes into the page cache markedly faster than allocating block by
 * block as they land, as np.save does too.  Only a hint: failures are
 * ignored.
 */
static void reserve_blocks(tsnap_writer *w, hid_t dset, uint64_t bytes)
{
    hsize_t origin[TSNAP_MAX_NDIM + 1] = {0}, size = 0;
    haddr_t addr = HADDR_UNDEF;
    unsigned mask = 0;
    hid_t fapl = H5Fget_access_plist(w->file);
    int *fd = NULL;
    if (fapl >= 0 && H5Pget_driver(fapl) == tsnap__vfd_id() &&
        H5Fget_vfd_handle(w->file, fapl, (void **)&fd) >= 0 && fd &&
        H5Dget_chunk_info_by_coord(dset, origin, &mask, &addr, &size) >= 0 &&
        addr != HADDR_UNDEF)
        (void)fallocate(*fd, FALLOC_FL_KEEP_SIZE, (off_t)addr, (off_t)bytes);
    tsnap__h5close(fapl);
    H5Eclear2(H5E_DEFAULT);
}

/* Writes every chunk of the tensor in order, hashing as it goes. */
static int write_chunks(tsnap_writer *w, hid_t dset, const tsnap_view *v, int rank,
                        const int64_t *chunk, XXH3_state_t *hash, const char *name,
                        void *stream)
{
    put_job j = {w, name, v, dset, hash, use_shuffle(w, v), file_elem_size(v), rank,
                 v->ndim - 1, 1, 1, 1, 0, NULL};
    uint64_t outer = 1;

    /* The chunk rule makes axes after `split` whole, `split` hold k and
     * axes before it 1: find the first axis after which all are whole. */
    while (j.split > 0 && chunk[j.split] == v->shape[j.split])
        j.split--;
    for (int i = 0; i < j.split; i++)
        outer *= (uint64_t)v->shape[i];
    for (int i = j.split + 1; i < v->ndim; i++)
        j.inner *= (uint64_t)v->shape[i];
    j.k = (uint64_t)chunk[j.split];
    j.nsplit = ((uint64_t)v->shape[j.split] + j.k - 1) / j.k;
    j.chunk_bytes = (size_t)(j.k * j.inner * v->itemsize);

    if (!w->slots && !(w->slots = calloc(WINDOW_MAX, sizeof *w->slots)))
        return tsnap__err(TSNAP_ENOMEM, w->path, name, "out of memory");
    if (w->opts.codec == TSNAP_CODEC_NONE && outer * j.nsplit * j.chunk_bytes >= RESERVE_MIN)
        reserve_blocks(w, dset, outer * j.nsplit * j.chunk_bytes);
    unsigned threads = (unsigned)w->opts.threads;
    unsigned window = threads + 1 < WINDOW_MAX ? threads + 1 : WINDOW_MAX;
    tsnap_job_spec spec = {outer * j.nsplit, window, threads, NULL, put_work,
                           w->opts.checksum ? put_hash : NULL, put_write, &j};
    if (v->device < 0)
        return tsnap__job_run(&spec);
    /* In CUDA memory: each chunk is copied to the host as it is produced,
     * a few chunks ahead of the ones being compressed and written. */
    tsnap_stage stage;
    int err;
    window = window < 4 ? 4 : window;
    if ((err = tsnap__stage_open(&stage, v->device, stream, window, j.chunk_bytes, !v->contiguous,
                                 w->path, name)) < 0)
        return err;
    j.stage = &stage;
    spec.window = window;
    spec.produce = put_fetch;
    err = tsnap__job_run(&spec);
    tsnap__stage_close(&stage);
    return err;
}

/* The one element of a 0-d tensor, in host memory. */
static int scalar_bytes(tsnap_writer *w, const char *name, const tsnap_view *v, void *stream,
                        uint8_t *one)
{
    tsnap_stage stage;
    int err;
    if (v->device < 0) {
        tsnap__gather(v, 0, 1, one);
        return 0;
    }
    if ((err = tsnap__stage_whole(&stage, v, stream, w->path, name)) < 0)
        return err;
    if ((err = tsnap__stage_wait(&stage, 0)) == 0)
        memcpy(one, stage.slot[0].host, v->itemsize);
    tsnap__stage_close(&stage);
    return err;
}

int tsnap_writer_put(tsnap_writer *w, const char *name, const DLTensor *tensor)
{
    return tsnap_writer_put_stream(w, name, tensor, NULL);
}

/* Records a tensor just written in the index: an uncompressed one with
 * where its bytes lie (its first chunk, whose followers HDF5 lays back to
 * back, or a 0-d tensor's contiguous storage). */
static void index_tensor(tsnap_writer *w, const char *name, hid_t dset, const tsnap_view *v,
                         const int64_t *chunk, const uint64_t *sum)
{
    tsnap_tensor_info info;
    bool flat = w->opts.codec == TSNAP_CODEC_NONE;
    memset(&info, 0, sizeof info);
    info.dtype = v->dtype;
    info.ndim = v->ndim;
    info.nbytes = v->nbytes;
    info.stored_bytes = v->nbytes;
    info.chunked = v->ndim > 0 && v->nelems > 0;
    for (int i = 0; i < v->ndim; i++) {
        info.shape[i] = v->shape[i];
        if (info.chunked) {
            info.chunk[i] = chunk[i];
            if (i == 0)
                info.stored_bytes = v->itemsize;
            info.stored_bytes *= (uint64_t)((v->shape[i] + chunk[i] - 1) / chunk[i] * chunk[i]);
        }
    }
    if (flat && v->nelems > 0) {
        hsize_t origin[TSNAP_MAX_NDIM + 1] = {0}, size = 0;
        haddr_t addr = HADDR_UNDEF;
        unsigned mask = 0;
        if (!info.chunked)
            addr = H5Dget_offset(dset);
        else if (H5Dget_chunk_info_by_coord(dset, origin, &mask, &addr, &size) < 0)
            addr = HADDR_UNDEF;
        H5Eclear2(H5E_DEFAULT);
        flat = addr != HADDR_UNDEF;
        info.offset = flat ? (uint64_t)addr : 0;
    }
    tsnap__table_add(&w->table, name, &info, flat, sum);
}

int tsnap_writer_put_stream(tsnap_writer *w, const char *name, const DLTensor *tensor,
                            void *cuda_stream)
{
    tsnap_view v;
    hsize_t dims[TSNAP_MAX_NDIM + 1];
    int64_t chunk[TSNAP_MAX_NDIM];
    int rank, err;
    /* ftype is shared and dcpl the writer's: neither is closed here. */
    hid_t ftype = H5I_INVALID_HID, space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    hid_t dset = H5I_INVALID_HID;
    XXH3_state_t *hash = NULL;

    tsnap__begin();
    TSNAP_CHECK_ARG(w != NULL);
    if ((err = check_open(w, name)) < 0 || (err = tsnap__check_name(w->path, name)) < 0 ||
        (err = tsnap__view_init(&v, tensor, w->path, name)) < 0 ||
        (err = check_free_name(w, name)) < 0 ||
        (v.device >= 0 && (err = tsnap__cuda_check(v.device, w->path, name)) < 0) ||
        (err = tsnap__cuda_order_host(tensor, cuda_stream, w->path, name)) < 0)
        return err;

    rank = v.ndim;
    for (int i = 0; i < v.ndim; i++)
        dims[i] = (hsize_t)v.shape[i];
    if (v.dtype == TSNAP_COMPLEX32)
        dims[rank++] = 2;

    hash = XXH3_createState();
    if (!hash || XXH3_64bits_reset(hash) == XXH_ERROR) {
        err = tsnap__err(TSNAP_ENOMEM, w->path, name, "out of memory");
        goto done;
    }
    ftype = tsnap__h5type_shared(v.dtype);
    space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, NULL);
    dcpl = dcpl_for(w, &v, rank, dims, chunk);
    if (ftype < 0 || space < 0 || dcpl < 0) {
        err = tsnap__h5err(TSNAP_EIO, w->path, name, "cannot set up the dataset");
        goto done;
    }
    /* From here on a failure leaves a partial dataset: the writer fails. */
    dset = H5Dcreate2(w->file, name, ftype, space, w->lcpl, dcpl, H5P_DEFAULT);
    if (dset < 0) {
        err = tsnap__h5err(TSNAP_EIO, w->path, name, "cannot create the dataset");
        w->state = W_FAILED;
        goto done;
    }
    if (v.nelems > 0) {
        if (v.ndim == 0) { /* contiguous: one element, bool normalised */
            uint8_t one[16];
            if ((err = scalar_bytes(w, name, &v, cuda_stream, one)) < 0)
                goto fail;
            if (v.dtype == TSNAP_BOOL)
                one[0] = one[0] != 0;
            XXH3_64bits_update(hash, one, v.itemsize);
            if (H5Dwrite(dset, ftype, H5S_ALL, H5S_ALL, H5P_DEFAULT, one) < 0) {
                err = tsnap__h5err(TSNAP_EIO, w->path, name, "writing failed");
                goto fail;
            }
        } else if ((err = write_chunks(w, dset, &v, rank, chunk, hash, name, cuda_stream)) < 0) {
            goto fail;
        }
    }
    if ((err = tsnap__attr_create_string(dset, "tsnap_dtype", tsnap_dtype_name(v.dtype),
                                         w->path, name)) < 0)
        goto fail;
    uint64_t digest = 0;
    if (w->opts.checksum) {
        char sum[40];
        digest = XXH3_64bits_digest(hash);
        tsnap__checksum_format(digest, sum, sizeof sum);
        if ((err = tsnap__attr_create_string(dset, "tsnap_checksum", sum, w->path, name)) < 0)
            goto fail;
    }
    index_tensor(w, name, dset, &v, chunk, w->opts.checksum ? &digest : NULL);
    goto done;
fail:
    w->state = W_FAILED;
done:
    tsnap__h5close(dset);
    tsnap__h5close(space);
    XXH3_freeState(hash);
    return err;
}

/* ---- asynchronous puts ------------------------------------------- */

int tsnap_writer_put_async(tsnap_writer *w, const char *name, const DLTensor *tensor,
                           void *cuda_stream)
{
    tsnap_view v;
    int err;

    tsnap__begin();
    TSNAP_CHECK_ARG(w != NULL);
    if ((err = check_open(w, name)) < 0 || (err = tsnap__check_name(w->path, name)) < 0 ||
        (err = tsnap__view_init(&v, tensor, w->path, name)) < 0)
        return err;
    if (v.device < 0 || v.nelems == 0) /* nothing to wait for: written now */
        return tsnap_writer_put_stream(w, name, tensor, cuda_stream);
    if ((err = check_free_name(w, name)) < 0 ||
        (err = tsnap__cuda_check(v.device, w->path, name)) < 0)
        return err;
    if (w->npending == w->cap_pending) {
        size_t cap = w->cap_pending ? 2 * w->cap_pending : 8;
        struct pending *grown = realloc(w->pending, cap * sizeof *grown);
        if (!grown)
            return tsnap__err(TSNAP_ENOMEM, w->path, name, "out of memory");
        w->pending = grown;
        w->cap_pending = cap;
    }
    struct pending *p = &w->pending[w->npending];
    memset(p, 0, sizeof *p);
    if (!(p->name = strdup(name)))
        return tsnap__err(TSNAP_ENOMEM, w->path, name, "out of memory");
    p->v = v;
    /* The name lives in the writer: the staging's messages may outlive the call. */
    if ((err = tsnap__stage_whole(&p->stage, &v, cuda_stream, w->path, p->name)) < 0) {
        free(p->name);
        return err;
    }
    w->npending++;
    return 0;
}

int tsnap_writer_wait(tsnap_writer *w)
{
    int err = 0;
    tsnap__begin();
    TSNAP_CHECK_ARG(w != NULL);
    for (size_t i = 0; i < w->npending && err == 0; i++)
        err = tsnap__stage_wait(&w->pending[i].stage, 0);
    if (err < 0)
        w->state = W_FAILED;
    return err;
}

static void pending_close(struct pending *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tsnap__stage_close(&list[i].stage);
        free(list[i].name);
    }
}

static void pending_free(tsnap_writer *w)
{
    pending_close(w->pending, w->npending);
    w->npending = 0;
}

/* Writes the pending tensors from their host copies, in put order. */
static int pending_write(tsnap_writer *w)
{
    struct pending *list = w->pending;
    size_t n = w->npending;
    int err = 0;

    w->npending = 0; /* their names are no longer taken by the list */
    for (size_t i = 0; i < n && err == 0; i++) {
        struct pending *p = &list[i];
        DLTensor t = tsnap__host_tensor(p->stage.slot[0].host, p->v.dtype, p->v.ndim, p->v.shape);
        if ((err = tsnap__stage_wait(&p->stage, 0)) == 0)
            err = tsnap_writer_put(w, p->name, &t);
        if (err < 0)
            w->state = W_FAILED;
    }
    pending_close(list, n);
    return err;
}

/* ---- attributes --------------------------------------------------- */

static bool reserved_key(const char *key, bool root)
{
    if (strncmp(key, "tsnap_", 6) == 0)
        return true;
    return root && (strcmp(key, "created") == 0 || strcmp(key, "producer") == 0);
}

/* Opens the object an attribute goes on: the root or a tensor. */
static int attr_target(tsnap_writer *w, const char *tensor, const char *key, hid_t *obj)
{
    bool root = !tensor || !*tensor;
    int err;
    *obj = H5I_INVALID_HID;
    if ((err = check_open(w, tensor)) < 0)
        return err;
    if (!key || !*key)
        return tsnap__err(TSNAP_EINVAL, w->path, tensor, "attribute key is NULL or empty");
    if (reserved_key(key, root))
        return tsnap__err(TSNAP_EINVAL, w->path, tensor, "attribute key '%s' is reserved", key);
    if (root) {
        *obj = w->file;
        return 0;
    }
    if ((err = tsnap__check_name(w->path, tensor)) < 0)
        return err;
    htri_t exists = H5Lexists(w->file, tensor, H5P_DEFAULT);
    H5Eclear2(H5E_DEFAULT);
    if (exists <= 0)
        return tsnap__err(TSNAP_ENOTFOUND, w->path, tensor, "no such tensor (put it first)");
    *obj = H5Dopen2(w->file, tensor, H5P_DEFAULT);
    if (*obj < 0)
        return tsnap__h5err(TSNAP_ENOTFOUND, w->path, tensor, "not a tensor");
    return 0;
}

static void attr_target_close(tsnap_writer *w, hid_t obj)
{
    if (obj != w->file)
        tsnap__h5close(obj);
}

/* Root `step` and `time` have fixed types: int64 and float64. */
static int typed_root_value(const tsnap_view *v, const char *key, const char *path,
                            int64_t *i64, double *f64, DLTensor *t)
{
    bool is_step = strcmp(key, "step") == 0;
    union {
        int8_t i8; int16_t i16; int32_t i32; int64_t i64;
        uint8_t u8; uint16_t u16; uint32_t u32; uint64_t u64;
        float f32; double f64;
    } x;
    double d;
    bool integral = true;

    if (v->ndim != 0)
        return tsnap__err(TSNAP_EINVAL, path, NULL, "root attribute '%s' must be a scalar", key);
    tsnap__gather(v, 0, 1, &x);
    switch (v->dtype) {
    case TSNAP_INT8: d = x.i8; *i64 = x.i8; break;
    case TSNAP_INT16: d = x.i16; *i64 = x.i16; break;
    case TSNAP_INT32: d = x.i32; *i64 = x.i32; break;
    case TSNAP_INT64: d = (double)x.i64; *i64 = x.i64; break;
    case TSNAP_UINT8: d = x.u8; *i64 = x.u8; break;
    case TSNAP_UINT16: d = x.u16; *i64 = x.u16; break;
    case TSNAP_UINT32: d = x.u32; *i64 = x.u32; break;
    case TSNAP_UINT64:
        if (is_step && x.u64 > (uint64_t)INT64_MAX)
            return tsnap__err(TSNAP_EINVAL, path, NULL, "step %llu does not fit in int64",
                              (unsigned long long)x.u64);
        d = (double)x.u64;
        *i64 = (int64_t)x.u64;
        break;
    case TSNAP_FLOAT32: d = x.f32; integral = false; break;
    case TSNAP_FLOAT64: d = x.f64; integral = false; break;
    default:
        return tsnap__err(TSNAP_EINVAL, path, NULL,
                          "root attribute '%s' must be an integer or float32/float64 scalar, "
                          "not %s",
                          key, tsnap_dtype_name(v->dtype));
    }
    if (is_step && !integral)
        return tsnap__err(TSNAP_EINVAL, path, NULL, "root attribute 'step' must be an integer");
    memset(t, 0, sizeof *t);
    t->device.device_type = kDLCPU;
    if (is_step) {
        t->data = i64;
        t->dtype = (DLDataType){kDLInt, 64, 1};
    } else {
        *f64 = d;
        t->data = f64;
        t->dtype = (DLDataType){kDLFloat, 64, 1};
    }
    return 0;
}

int tsnap_writer_set_attr(tsnap_writer *w, const char *tensor, const char *key,
                          const DLTensor *value)
{
    tsnap_view v;
    hid_t obj;
    int err;
    int64_t i64 = 0;
    double f64 = 0;
    DLTensor typed;

    tsnap__begin();
    TSNAP_CHECK_ARG(w != NULL);
    if ((err = attr_target(w, tensor, key, &obj)) < 0)
        return err;
    if ((err = tsnap__view_init_host(&v, value, w->path, tensor)) < 0)
        goto done;
    if ((!tensor || !*tensor) && (strcmp(key, "step") == 0 || strcmp(key, "time") == 0) &&
        ((err = typed_root_value(&v, key, w->path, &i64, &f64, &typed)) < 0 ||
         (err = tsnap__view_init(&v, &typed, w->path, NULL)) < 0))
        goto done;
    err = tsnap__attr_write_tensor(obj, key, &v, w->path, tensor);
done:
    attr_target_close(w, obj);
    return err;
}

/* Strict UTF-8 (no overlongs, no surrogates), as h5py will decode it. */
static bool valid_utf8(const unsigned char *s)
{
    while (*s) {
        unsigned c = *s, n, cp;
        if (c < 0x80) {
            s++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) { n = 1; cp = c & 0x1F; }
        else if ((c & 0xF0) == 0xE0) { n = 2; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0) { n = 3; cp = c & 0x07; }
        else return false;
        for (unsigned i = 1; i <= n; i++) {
            if ((s[i] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        s += n + 1;
    }
    return true;
}

int tsnap_writer_set_attr_string(tsnap_writer *w, const char *tensor, const char *key,
                                 const char *value)
{
    hid_t obj;
    int err;

    tsnap__begin();
    TSNAP_CHECK_ARG(w != NULL);
    if ((err = attr_target(w, tensor, key, &obj)) < 0)
        return err;
    if (!value)
        err = tsnap__err(TSNAP_EINVAL, w->path, tensor, "attribute '%s': value is NULL", key);
    else if (!valid_utf8((const unsigned char *)value))
        err = tsnap__err(TSNAP_EINVAL, w->path, tensor, "attribute '%s': value is not UTF-8",
                         key);
    else if ((!tensor || !*tensor) && (strcmp(key, "step") == 0 || strcmp(key, "time") == 0))
        err = tsnap__err(TSNAP_EINVAL, w->path, NULL, "root attribute '%s' must be a number",
                         key);
    else
        err = tsnap__attr_write_string(obj, key, value, w->path, tensor);
    attr_target_close(w, obj);
    return err;
}

/* ---- commit and abort --------------------------------------------- */

/* Renames without replacing: fails with EEXIST if the target exists. */
static int rename_noreplace(const char *from, const char *to)
{
#ifdef RENAME_NOREPLACE
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
#endif
    if (link(from, to) < 0)
        return -1;
    unlink(from);
    return 0;
}

static void discard(tsnap_writer *w)
{
    if (w->file >= 0) {
        tsnap__vfd_doom(w->file); /* so that this close cannot fail (vfd.c) */
        H5Fclose(w->file);
        H5Eclear2(H5E_DEFAULT);
        w->file = H5I_INVALID_HID;
    }
    if (w->tmp)
        unlink(w->tmp);
    w->state = W_DONE;
}

int tsnap_writer_commit(tsnap_writer *w)
{
    int err;
    herr_t closed;

    tsnap__begin();
    TSNAP_CHECK_ARG(w != NULL);
    if (w->npending && check_open(w, NULL) == 0 && (err = pending_write(w)) < 0) {
        discard(w);
        return err;
    }
    if ((err = check_open(w, NULL)) < 0) {
        pending_free(w);
        if (w->state == W_FAILED)
            discard(w);
        return err;
    }
    struct timespec stamp;
    if ((err = tsnap__table_write(&w->table, w->file, w->path, &stamp)) < 0)
        goto fail;
    /* The flush that can fail comes first: a close whose own flush fails
     * would leave HDF5 unable to close the file (vfd.c). */
    if (H5Fflush(w->file, H5F_SCOPE_LOCAL) < 0) {
        err = tsnap__h5err(TSNAP_EIO, w->path, NULL, "writing the file failed");
        goto fail;
    }
    closed = H5Fclose(w->file);
    w->file = H5I_INVALID_HID;
    if (closed < 0) {
        err = tsnap__h5err(TSNAP_EIO, w->path, NULL, "writing the file failed");
        goto fail;
    }
    /* The index holds the modification time the file now gets: a reader
     * trusts it only while the file keeps that time (table.c). */
    if (!w->table.off && tsnap__table_stamp(w->tmp, &stamp) < 0)
        w->table.off = true; /* readers then walk the file */
    if (w->opts.durable && (err = tsnap__fsync_path(w->tmp, false, w->path)) < 0)
        goto fail;
    /* An existing file's teardown goes to a thread of its own (fileio.c). */
    if (w->opts.overwrite ? tsnap__replace(w->tmp, w->path) < 0
                          : rename_noreplace(w->tmp, w->path) < 0) {
        err = tsnap__syserr(errno == EEXIST ? TSNAP_EEXISTS : TSNAP_EIO, errno, w->path, NULL,
                            "cannot rename the temporary file into place");
        goto fail;
    }
    w->state = W_DONE;
    if (w->opts.durable && (err = tsnap__fsync_dir_of(w->path, w->path)) < 0)
        return err;
    return 0;
fail:
    discard(w);
    return err;
}

const char *tsnap__writer_path(const tsnap_writer *w) { return w->path; }

int tsnap__writer_target(tsnap_writer *w, const char *name, hid_t *file, hid_t *lcpl)
{
    int err;
    w->table.off = true; /* a virtual tensor: readers walk the file */
    if ((err = check_open(w, name)) < 0 || (err = tsnap__check_name(w->path, name)) < 0 ||
        (err = check_free_name(w, name)) < 0)
        return err;
    *file = w->file;
    *lcpl = w->lcpl;
    return 0;
}

void tsnap__writer_fail(tsnap_writer *w) { w->state = W_FAILED; }

int tsnap_writer_abort(tsnap_writer *w)
{
    tsnap__begin();
    TSNAP_CHECK_ARG(w != NULL);
    pending_free(w);
    discard(w);
    return 0;
}

void tsnap_writer_free(tsnap_writer *w)
{
    if (!w)
        return;
    pending_free(w);
    free(w->pending);
    if (w->state != W_DONE)
        discard(w);
    if (w->slots) {
        for (int i = 0; i < WINDOW_MAX; i++) {
            tsnap__buf_release(&w->slots[i].packed);
            tsnap__buf_release(&w->slots[i].shuffled);
            tsnap__buf_release(&w->slots[i].encoded);
        }
        free(w->slots);
    }
    tsnap__h5close(w->dcpl);
    tsnap__h5close(w->lcpl);
    tsnap__table_clear(&w->table);
    free(w->tmp);
    free(w->path);
    free(w->producer);
    free(w);
}

/* ---- strings, groups and the program's types ---------------------- */

/* Writes `value` (NUL-terminated, or `len` bytes for a fixed-length
 * string: fixed) as 0-d dataset `name` of string type `type`. */
static int write_string(tsnap_writer *w, const char *name, hid_t type, const void *value)
{
    hid_t file, lcpl, space = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    int err;

    if ((err = tsnap__writer_target(w, name, &file, &lcpl)) < 0)
        return err;
    if ((space = H5Screate(H5S_SCALAR)) < 0 ||
        (dset = H5Dcreate2(file, name, type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, value) < 0) {
        err = tsnap__h5err(TSNAP_EIO, w->path, name, "writing the string failed");
        w->state = W_FAILED;
    }
    tsnap__h5close(dset);
    tsnap__h5close(space);
    return err;
}

int tsnap_writer_put_string(tsnap_writer *w, const char *name, const char *data, size_t len,
                            tsnap_string_kind kind)
{
    hid_t type = H5I_INVALID_HID;
    char *text = NULL;
    int err = 0;

    tsnap__begin();
    TSNAP_CHECK_ARG(w != NULL);
    TSNAP_CHECK_ARG(data != NULL || len == 0);
    TSNAP_CHECK_ARG(kind == TSNAP_STRING_UTF8 || kind == TSNAP_STRING_BYTES);
    if ((err = check_open(w, name)) < 0 || (err = tsnap__check_name(w->path, name)) < 0)
        return err;
    bool fixed = kind == TSNAP_STRING_BYTES && len > 0;
    if (!fixed) { /* variable-length: NUL-terminated */
        if (!(text = malloc(len + 1)))
            return tsnap__err(TSNAP_ENOMEM, w->path, name, "out of memory");
        if (len)
            memcpy(text, data, len);
        text[len] = '\0';
    }
    if (kind == TSNAP_STRING_UTF8 && memchr(text, '\0', len)) {
        err = tsnap__err(TSNAP_EINVAL, w->path, name,
                         "the string holds a NUL character, which an HDF5 string cannot");
        goto done;
    }
    if (kind == TSNAP_STRING_UTF8 && !valid_utf8((const unsigned char *)text)) {
        err = tsnap__err(TSNAP_EINVAL, w->path, name, "the string is not valid UTF-8");
        goto done;
    }
    if ((type = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_size(type, fixed ? len : H5T_VARIABLE) < 0 ||
        H5Tset_strpad(type, fixed ? H5T_STR_NULLPAD : H5T_STR_NULLTERM) < 0 ||
        H5Tset_cset(type, kind == TSNAP_STRING_UTF8 ? H5T_CSET_UTF8 : H5T_CSET_ASCII) < 0) {
        err = tsnap__h5err(TSNAP_ENOMEM, w->path, name, "cannot make the string type");
        goto done;
    }
    err = write_string(w, name, type, fixed ? (const void *)data : (const void *)&text);
done:
    tsnap__h5close(type);
    free(text);
    return err;
}

int tsnap_writer_put_group(tsnap_writer *w, const char *name)
{
    hid_t file, lcpl, group;
    int err;

    tsnap__begin();
    TSNAP_CHECK_ARG(w != NULL);
    if ((err = tsnap__writer_target(w, name, &file, &lcpl)) < 0)
        return err;
    if ((group = H5Gcreate2(file, name, lcpl, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Gclose(group) < 0) {
        w->state = W_FAILED;
        return tsnap__h5err(TSNAP_EIO, w->path, name, "creating the group failed");
    }
    return 0;
}

int tsnap_writer_set_pytype(tsnap_writer *w, const char *name, const char *type)
{
    hid_t obj;
    int err;

    tsnap__begin();
    TSNAP_CHECK_ARG(w != NULL);
    TSNAP_CHECK_ARG(type != NULL);
    if ((err = check_open(w, name)) < 0 || (err = tsnap__check_name(w->path, name)) < 0)
        return err;
    size_t n = strspn(type, "abcdefghijklmnopqrstuvwxyz0123456789_");
    if (n == 0 || n > 31 || type[n] != '\0')
        return tsnap__err(TSNAP_EINVAL, w->path, name,
                          "a type is 1 to 31 characters of [a-z0-9_], not '%.40s'", type);
    htri_t exists = H5Lexists(w->file, name, H5P_DEFAULT);
    H5Eclear2(H5E_DEFAULT);
    if (exists <= 0)
        return tsnap__err(TSNAP_ENOTFOUND, w->path, name, "no such tensor or group (put it first)");
    if ((obj = H5Oopen(w->file, name, H5P_DEFAULT)) < 0)
        return tsnap__h5err(TSNAP_EIO, w->path, name, "cannot open it");
    err = tsnap__attr_write_string(obj, "tsnap_pytype", type, w->path, name);
    if (H5Oclose(obj) < 0 && err == 0)
        err = tsnap__h5err(TSNAP_EIO, w->path, name, "cannot close it");
    return err;
}

/*
 * internal.h - declarations shared by the library's source files.
 * Nothing here is API: include/tsnap.h is.
 */
#ifndef TSNAP_INTERNAL_H
#define TSNAP_INTERNAL_H

#include <hdf5.h>
#include <stdarg.h>
#include <stdbool.h>
#include <time.h>

#include "tsnap.h"

/* The file format is little-endian and tensors arrive in native order:
 * the copy paths rely on the two being the same. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tsnap supports little-endian machines only"
#endif

/* ---- errors.c ---------------------------------------------------- */

/*
 * Records the thread's error message and returns `code`.  The message is
 * "<file>: tensor '<tensor>': <cause>"; file or tensor may be NULL.
 */
int tsnap__err(int code, const char *file, const char *tensor, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * As tsnap__err, and appends the innermost message of HDF5's error stack
 * of this thread, then clears that stack.
 */
int tsnap__h5err(int code, const char *file, const char *tensor, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Clears the thread's message (and errno); turns HDF5's own error
 * printing off for this thread (HDF5 keeps that setting per thread). */
void tsnap__begin(void);

/*
 * As tsnap__err for a failed system call: appends ": <strerror(errnum)>"
 * and keeps errnum and `file` for tsnap_errno() and tsnap_errpath().
 */
int tsnap__syserr(int code, int errnum, const char *file, const char *tensor, const char *fmt,
                  ...) __attribute__((format(printf, 5, 6)));

/* Sets what tsnap_errno() and tsnap_errpath() give (file NULL: keeps the
 * path); for failures carried from another thread. */
void tsnap__set_errno(int errnum, const char *file);

/* vfd.c: the errno a file driver call failed with, for the next
 * tsnap__h5err on this thread. */
void tsnap__driver_errno(int errnum);

/* Checked arguments: return TSNAP_EINVAL with a message, never crash. */
#define TSNAP_CHECK_ARG(expr)                                                              \
    do {                                                                                   \
        if (!(expr))                                                                       \
            return tsnap__err(TSNAP_EINVAL, NULL, NULL, "invalid argument: %s", #expr);     \
    } while (0)

/* Closes an HDF5 id if valid; keeps the error state of the caller. */
void tsnap__h5close(hid_t id);

/* ---- dtype.c ----------------------------------------------------- */

/* A new HDF5 type of a dtype as it is stored (little-endian, h5py's
 * conventions); for complex32 the float16 element.  Caller closes it. */
hid_t tsnap__h5type_file(tsnap_dtype dtype);

/* The same type, shared by the process and locked: never close it. */
hid_t tsnap__h5type_shared(tsnap_dtype dtype);

/*
 * The dtype of an HDF5 type, and the type to read it into memory with
 * (native byte order), which the caller closes.  *mappable tells whether
 * the stored type is exactly the canonical one, so bytes need no change.
 * Returns TSNAP_ETYPE with a description of the type in `why`.
 */
int tsnap__dtype_of_h5(hid_t h5type, tsnap_dtype *dtype, hid_t *memtype, bool *mappable,
                       bool *big_endian, char *why, size_t whylen);

/* The members of an enum type that loads as its integer type (none for
 * tsnap's bool or any other type); *out is freed with
 * tsnap__enum_members_free.  0, TSNAP_ENOMEM or TSNAP_EFORMAT, with no
 * message set. */
int tsnap__enum_members(hid_t h5type, tsnap_enum_member **out, size_t *count);
void tsnap__enum_members_free(tsnap_enum_member *m, size_t count);

/* ---- layout.c ---------------------------------------------------- */

/* A tensor checked and simplified for copying. */
typedef struct tsnap_view {
    tsnap_dtype dtype;
    size_t itemsize;
    int ndim;                       /* logical dims (complex32: without the 2) */
    int64_t shape[TSNAP_MAX_NDIM];
    int64_t strides[TSNAP_MAX_NDIM]; /* in elements */
    char *base;                     /* data + byte_offset */
    uint64_t nelems;
    uint64_t nbytes;
    bool contiguous;                /* C-contiguous: one memcpy */
    int device;                     /* -1: host memory; else the CUDA device */
} tsnap_view;

/* Checks a DLTensor (shape, strides, dtype, device) into a view.  CUDA
 * device and managed memory give a view with `device` set, whose bytes
 * only device.c touches. `file`/`name` are for messages. */
int tsnap__view_init(tsnap_view *v, const DLTensor *t, const char *file, const char *name);

/* A C-contiguous tensor of `dtype` and `shape` (which it points to) at
 * `data` in host memory. */
DLTensor tsnap__host_tensor(void *data, tsnap_dtype dtype, int ndim, int64_t *shape);

/* The same, refusing memory the CPU cannot read (attribute values). */
int tsnap__view_init_host(tsnap_view *v, const DLTensor *t, const char *file, const char *name);

/* Checks that ndim dims are non-negative and their product times
 * itemsize fits in int64; stores both counts. */
int tsnap__shape_size(int ndim, const int64_t *shape, size_t itemsize, uint64_t *nelems,
                      uint64_t *nbytes);

/* Copies logical elements [first, first+n) of v to dst (contiguous). */
void tsnap__gather(const tsnap_view *v, uint64_t first, uint64_t n, void *dst);

/* Copies n contiguous elements from src into logical positions
 * [first, first+n) of v. */
void tsnap__scatter(const tsnap_view *v, uint64_t first, uint64_t n, const void *src);

/* The chunk shape of the chunk rule, in logical dims; `flat` asks for a
 * k that keeps the chunks free of padding (for unfiltered tensors, so
 * that they can be mapped). */
void tsnap__chunk_shape(int ndim, const int64_t *shape, size_t itemsize, size_t chunk_bytes,
                        bool flat, int64_t *chunk);

/* Checks a name ("a/b/c"). */
int tsnap__check_name(const char *file, const char *name);

/* ---- fileio.c ---------------------------------------------------- */

/* Makes "<dir>/.<base>.<random>.tsnap-tmp" for path; caller frees. */
int tsnap__temp_path(const char *path, char **out);
int tsnap__fsync_path(const char *path, bool directory, const char *file);
int tsnap__fsync_dir_of(const char *path, const char *file);

/* Puts file `tmp` in place under `path`, atomically, replacing what is
 * there; the replaced file's teardown (freeing its pages and blocks) runs
 * on a closer thread, not in the caller.  0, or -1 with errno set (nothing
 * changed). */
int tsnap__replace(const char *tmp, const char *path);
/* A save to `path` begins: the closer lets go of the file it replaced
 * there last, if it still holds it (fileio.c). */
void tsnap__save_begins(const char *path);

/* ---- attrs.c ----------------------------------------------------- */

int tsnap__attr_write_string(hid_t obj, const char *key, const char *value, const char *file,
                             const char *tensor);
/* The same on an object that has no attribute `key` (just created). */
int tsnap__attr_create_string(hid_t obj, const char *key, const char *value, const char *file,
                              const char *tensor);
int tsnap__attr_write_tensor(hid_t obj, const char *key, const tsnap_view *v, const char *file,
                             const char *tensor);
/* Reads a string attribute into a malloc'ed string; *out NULL if absent. */
int tsnap__attr_read_string(hid_t obj, const char *key, char **out, const char *file,
                            const char *tensor);

/* All attributes of an object, read once and kept. */
typedef struct tsnap_attr_set {
    size_t count;
    tsnap_attr *attrs;
    void **blocks; /* owned memory */
    size_t nblocks;
} tsnap_attr_set;

int tsnap__attr_set_load(tsnap_attr_set *set, hid_t obj, const char *file, const char *tensor);
void tsnap__attr_set_clear(tsnap_attr_set *set);

/* ---- checksum ---------------------------------------------------- */

#define TSNAP_CHECKSUM_PREFIX "xxh3-64:"

/* Formats a 64-bit hash as "xxh3-64:%016x" into buf (>= 25 bytes). */
void tsnap__checksum_format(uint64_t h, char *buf, size_t len);

/* ---- lzf.c ------------------------------------------------------- */

/* h5py's LZF filter id (compression="lzf"). */
#define TSNAP_LZF_FILTER_ID 32000

typedef enum tsnap_lzf_status {
    TSNAP_LZF_OK = 0,
    TSNAP_LZF_MALFORMED = -1,   /* the input is not LZF (truncated, a reference
                                 * before the start of the output, empty) */
    TSNAP_LZF_OUTPUT_FULL = -2, /* valid so far, but out_cap is too small */
} tsnap_lzf_status;

/*
 * Decodes the LZF block in[0, in_len) into out[0, out_cap), setting
 * *out_len to the bytes written (0 unless TSNAP_LZF_OK).  Reads and writes
 * nothing outside the two buffers, whatever the input.
 */
tsnap_lzf_status tsnap__lzf_decompress(const void *in, size_t in_len, void *out, size_t out_cap,
                                       size_t *out_len);

/*
 * Registers the decode-only LZF filter with HDF5, once per process; every
 * call after the first does nothing.  A failure is not reported here: it
 * must not stop files without LZF from reading, and reading an LZF dataset
 * then fails as it would without tsnap, HDF5 finding no filter 32000.
 */
void tsnap__lzf_register(void);

/* ---- codec.c ----------------------------------------------------- */

#define TSNAP_ZSTD_FILTER_ID 32015
#define TSNAP_LZ4_FILTER_ID 32004
/* Decode only, and never named to users: h5py's LZF. */
#define TSNAP_CODEC_LZF ((tsnap_codec)100)

/* HDF5's shuffle filter (reverse: its inverse) of nbytes at src into dst;
 * the buffers do not overlap. */
void tsnap__shuffle(void *dst, const void *src, size_t nbytes, size_t elem, bool reverse);

/* The bitshuffle filter (hdf5plugin's Bitshuffle): its id, and the
 * filter without its own compression, in blocks of the library's default
 * size (8 KiB of elements), of nbytes (whole elements) at src into dst
 * (reverse: its inverse).  0, or TSNAP_EINVAL / TSNAP_ENOMEM. */
#define TSNAP_BITSHUFFLE_FILTER_ID 32008
#define TSNAP_CODEC_BITSHUFFLE ((tsnap_codec)101)
int tsnap__bitshuffle(void *dst, const void *src, size_t nbytes, size_t elem, bool reverse);

/* Decodes a bitshuffle chunk of any of the filter's forms (cd_values as
 * stored: [2] element size, [3] block, [4] 0 none, 2 LZ4, 3 zstd) into
 * exactly `expect` bytes; NULL, or what is wrong with the chunk. */
const char *tsnap__bitshuffle_decode(const unsigned *cd, size_t ncd, const void *src, size_t len,
                                     void *dst, size_t expect);

/* The most bytes encoding nbytes can give. */
size_t tsnap__codec_bound(tsnap_codec codec, size_t nbytes);

/* The level a codec gets when asked for 0 (deflate 1, zstd -1). */
int tsnap__codec_default_level(tsnap_codec codec);

/* Encodes n bytes into dst (cap bytes, at least the bound) in the HDF5
 * filter's exact format; *out is the length.  Any thread.  Returns 0 or
 * a negative TSNAP_E* code, without setting a message. */
int tsnap__codec_encode(tsnap_codec codec, int level, const void *src, size_t n, void *dst,
                        size_t cap, size_t *out);

/* Decodes a chunk into exactly `expect` bytes.  NULL on success, else a
 * constant description of what is wrong with the data.  Any thread; reads
 * and writes nothing outside the two buffers, whatever the input. */
const char *tsnap__codec_decode(tsnap_codec codec, const void *src, size_t len, void *dst,
                                size_t expect);

/* Registers tsnap's zstd, lz4 and LZF filters with HDF5 where the program
 * has none of its own; once per process. */
void tsnap__filters_register(void);

/* ---- pool.c ------------------------------------------------------ */

/* A job's step on item `item`, whose buffers are those of `slot`.  Returns
 * 0 or a negative TSNAP_E* code with the thread's message set. */
typedef int (*tsnap_step_fn)(void *ctx, uint64_t item, unsigned slot);

/* n items through produce -> work -> serial / consume (see pool.c). */
typedef struct tsnap_job_spec {
    uint64_t n;
    unsigned window;       /* slots, >= 1; item i uses slot i % window */
    unsigned threads;      /* <= 1: every step in the calling thread */
    tsnap_step_fn produce; /* caller, in order; may be NULL */
    tsnap_step_fn work;    /* any thread, in parallel; may be NULL */
    tsnap_step_fn serial;  /* one at a time, in order, after work; may be NULL */
    tsnap_step_fn consume; /* caller, in order, after work; may be NULL */
    void *ctx;
} tsnap_job_spec;

/* Runs a job to its end; the first failure stops it (items in flight
 * finish, no new ones start) and is returned with its message. */
int tsnap__job_run(const tsnap_job_spec *spec);

struct job;
void tsnap__job_task(struct job *j, uint64_t item);

/* A reusable buffer of at least `cap` bytes; big ones are kept for the
 * next user (touching fresh memory costs a page fault per page). */
typedef struct tsnap_buf {
    void *p;
    size_t cap;
} tsnap_buf;
void *tsnap__buf_get(size_t size, size_t *cap);
void tsnap__buf_put(void *p, size_t cap);
/* Makes b hold at least size bytes (its old contents are lost). */
int tsnap__buf_reserve(tsnap_buf *b, size_t size);
void tsnap__buf_release(tsnap_buf *b);

/* ---- reader internals -------------------------------------------- */

/* One open dataset and what it is as a tensor. */
typedef struct tsnap_dset {
    const char *path;               /* for messages */
    const char *name;
    hid_t dset, ftype, memtype, dcpl;
    tsnap_dtype dtype;
    size_t itemsize;
    int ndim;                       /* logical */
    int rank;                       /* in the file: ndim + 1 for paired complex32 */
    hsize_t dims[TSNAP_MAX_NDIM + 1]; /* in the file */
    bool pairs;                     /* complex32 stored as float16 pairs */
    bool canonical;                 /* stored type is exactly tsnap's */
    bool big_endian;
    uint64_t nelems;
} tsnap_dset;

/* A hyperslab of a tensor, in logical dims (complex32's pair axis, when
 * stored, is the last entry: start 0, count 2). */
typedef struct tsnap_selection {
    hsize_t start[TSNAP_MAX_NDIM + 1], count[TSNAP_MAX_NDIM + 1], step[TSNAP_MAX_NDIM + 1];
    uint64_t nelems;
    bool whole;
} tsnap_selection;

/* chunkread.c.  Reads a whole flat tensor, whose bytes lie at `offset` of
 * the file open as fd, into dst (NULL: only the checksum), hashing into
 * `hash` when it is not NULL. */
struct XXH3_state_s;
int tsnap__read_flat(const tsnap_dset *t, int fd, uint64_t offset, const tsnap_view *dst,
                     struct XXH3_state_s *hash, int threads);

/* Whether every filter of a chunked tensor is one tsnap decodes itself
 * and the stored type needs no conversion. */
bool tsnap__chunks_decodable(const tsnap_dset *t);

/* Reads selection s of such a tensor into dst (NULL: only the checksum,
 * which needs a whole selection of chunks that are C-order ranges). */
int tsnap__read_chunks(const tsnap_dset *t, const tsnap_selection *s, const tsnap_view *dst,
                       struct XXH3_state_s *hash, int threads);

/* The value an element of `t` that was never written reads as, in the
 * stored type (canonical: the tensor's bytes), into out (itemsize bytes):
 * the dataset's fill value, else zeros, as HDF5 gives it. */
int tsnap__fill_value(const tsnap_dset *t, uint8_t *out);

/* TSNAP_ENOFILTER naming the first filter of t's pipeline that HDF5 has
 * not got (after trying the plug-in directories added), else 0. */
int tsnap__filters_check(const tsnap_dset *t);

/* For mapping.c: the reader's path, its open file and the description of
 * a tensor (cached: describing it again costs nothing). */
const char *tsnap__reader_path(const tsnap_reader *r);
int tsnap__reader_fd(const tsnap_reader *r);

/* ---- virtual.c: virtual datasets ------------------------------------ */

/* A virtual tensor's blocks, and the part files a reader keeps open. */
typedef struct tsnap_vds tsnap_vds;
typedef struct tsnap_vds_cache tsnap_vds_cache;

/* Reads the mappings of virtual tensor t (open) for its description:
 * map_status TSNAP_MAP_VIRTUAL when tsnap can follow them, nparts.  *out
 * (freed first) is kept by the reader; it stays NULL only when memory
 * runs out, and the tensor is then read by HDF5 as are mappings tsnap
 * cannot follow. */
void tsnap__vds_load(tsnap_reader *r, const tsnap_dset *t, tsnap_tensor_info *info,
                     tsnap_vds **out);
void tsnap__vds_free(tsnap_vds *v);
void tsnap__vds_cache_free(tsnap_vds_cache *c);
/* Reads selection s of a followable virtual tensor into host view dst,
 * block by block from the part files; `verify` (a whole read) checks
 * each part's checksum on the way. */
int tsnap__vds_read(tsnap_reader *r, const tsnap_dset *t, const tsnap_vds *v,
                    const tsnap_selection *s, const tsnap_view *dst, bool verify);
/* Checks the checksum of every block's part. */
int tsnap__vds_verify(tsnap_reader *r, const tsnap_dset *t, const tsnap_vds *v);
/* For a virtual dataset that HDF5 reads: TSNAP_EFORMAT naming a source
 * file (of a plain name) that does not exist, where HDF5 would read fill
 * values. */
int tsnap__vds_check_sources(tsnap_reader *r, const tsnap_dset *t);

/* reader.c, for virtual.c: the part files a reader holds, and a
 * tensor's description with its blocks (*vds NULL: not virtual). */
tsnap_vds_cache **tsnap__reader_vds_cache(tsnap_reader *r);
int tsnap__reader_vds(tsnap_reader *r, const char *name, tsnap_tensor_info *info,
                      tsnap_vds **vds);

/* ---- device.c: CUDA memory ---------------------------------------- */

/*
 * What tsnap asks of the CUDA runtime.  Every call returns 0 or the
 * runtime's error code (error_string names it).  The real table is
 * cuda.c's, in builds with CUDA; tests may install a table of their own.
 * Device pointers and streams are opaque here.
 */
enum { TSNAP_CUDA_D2H = 2, TSNAP_CUDA_H2D = 1 };
/* What the driver says a pointer is. */
enum {
    TSNAP_CUDA_MEM_UNKNOWN = 0, /* memory the driver does not know: pageable host */
    TSNAP_CUDA_MEM_PINNED = 1,  /* page-locked host memory */
    TSNAP_CUDA_MEM_DEVICE = 2,
    TSNAP_CUDA_MEM_MANAGED = 3,
};
typedef struct tsnap_cuda_ops {
    const char *name;
    int (*device_count)(int *n);
    /* Makes `device` current on the calling thread, keeping in *saved what
     * was current; leave(saved) puts that back.  Every other call but
     * error_string, generation and pointer_kind runs between the two. */
    int (*enter)(int device, void **saved);
    void (*leave)(void *saved);
    int (*current_device)(int *device); /* the thread's; -1: none */
    /* Changes when the device is reset: what it had (pinned buffers
     * included) is gone. */
    unsigned (*generation)(int device);
    int (*pointer_kind)(const void *p, int *kind, int *device);
    int (*stream_create)(void **stream);
    int (*stream_destroy)(void *stream);
    int (*stream_sync)(void *stream);
    int (*stream_wait_event)(void *stream, void *event);
    int (*event_create)(void **event);
    int (*event_destroy)(void *event);
    int (*event_record)(void *event, void *stream);
    int (*event_sync)(void *event);
    int (*host_alloc)(void **p, size_t n); /* pinned */
    int (*host_free)(void *p);
    int (*dev_alloc)(void **p, size_t n);
    int (*dev_free)(void *p);
    int (*copy)(void *dst, const void *src, size_t n, int kind, void *stream);
    /* Logical elements [first, first+n) of the device view `v` to the
     * device buffer `dst`, C order (gather), or back (scatter). */
    int (*gather)(const tsnap_view *v, uint64_t first, uint64_t n, void *dst, void *stream);
    int (*scatter)(const tsnap_view *v, uint64_t first, uint64_t n, const void *src,
                   void *stream);
    const char *(*error_string)(int err);
} tsnap_cuda_ops;

/* cuda.c's table; NULL in a build without CUDA. */
const tsnap_cuda_ops *tsnap__cuda_runtime(void);
/* Replaces the table (NULL: back to the runtime's); for tests. */
void tsnap__cuda_set_ops(const tsnap_cuda_ops *ops);
/* cuda.c takes the driver's functions from `symbol` instead of
 * libcuda.so.1 (NULL: libcuda.so.1 again), from its next call; for tests. */
void tsnap__cuda_set_driver(void *(*symbol)(const char *name));
/* For tests: the pinned bytes kept between calls (256 MiB by default, and
 * one larger buffer besides; 0: none at all). */
void tsnap__cuda_pinned_keep(size_t bytes);

/* kernels.cu's launch argument, field for field. */
#define TSNAP_KVIEW_MAX_NDIM 32
typedef struct tsnap_kview {
    char *base;
    long long shape[TSNAP_KVIEW_MAX_NDIM];
    long long strides[TSNAP_KVIEW_MAX_NDIM];
    int ndim;
    int itemsize;
    int word; /* bytes per load: 1, 2, 4 or 8, dividing itemsize */
} tsnap_kview;

/*
 * Staging between CUDA memory and the host: `nslots` pinned host buffers
 * of `bytes`, each with an event, on a stream of tsnap's own that is
 * ordered after the work already queued on the caller's stream.
 */
typedef struct tsnap_stage {
    const tsnap_cuda_ops *ops;
    int device;
    unsigned generation; /* the device's, when the pinned buffers were had */
    void *stream;
    const char *file, *name;
    unsigned nslots;
    size_t bytes;
    bool borrowed;           /* slot 0's host buffer is the caller's */
    const void *checked;     /* the device pointer the driver vouched for */
    struct tsnap_stage_slot {
        void *host;    /* pinned */
        void *scratch; /* device: for strided tensors */
        void *event;
        bool queued;
    } slot[64];
} tsnap_stage;

/* 0 when CUDA `device` can be used, else TSNAP_ENOCUDA saying why. */
int tsnap__cuda_check(int device, const char *file, const char *name);
/* Device memory for a result (the Python extension's DeviceArray). */
int tsnap__cuda_alloc(int device, size_t n, void **p, const char *file, const char *name);
void tsnap__cuda_free(int device, void *p);
/* The device of the calling thread's current CUDA context ("cuda" without
 * a number); 0 when it has none or CUDA cannot be used. */
int tsnap__cuda_current_device(void);
/* For a tensor labelled kDLCUDAHost (pinned host memory that CUDA work may
 * use, which the CPU reads and writes directly): waits for the work queued
 * on `stream` (NULL: the legacy default stream) of its device, so that the
 * CPU comes after it, as a device tensor's copies do.  0 for other memory,
 * and where CUDA cannot be used (then nothing can be queued on it). */
int tsnap__cuda_order_host(const DLTensor *t, void *stream, const char *file, const char *name);
/* Pinned host memory of at least `n` bytes, for staging from `device`,
 * tagged with the device's generation (*gen) for tsnap__pinned_free. */
int tsnap__pinned_alloc(int device, size_t n, void **p, unsigned *gen, const char *file,
                        const char *name);
/* Frees it; only forgets it when the device was reset since (the reset
 * freed it). */
void tsnap__pinned_free(int device, unsigned gen, void *p);
/* Whether a reset has freed a buffer of tsnap__pinned_alloc's. */
bool tsnap__pinned_alive(int device, unsigned gen);
/* Copies all of device view `v` into `host` (pinned, v->nbytes), after the
 * work queued on the caller's stream, and waits for it; everything else
 * it needed (stream, event, device scratch) is released on return. */
int tsnap__stage_into(const tsnap_view *v, void *caller_stream, void *host, const char *file,
                      const char *name);

int tsnap__stage_open(tsnap_stage *st, int device, void *caller_stream, unsigned nslots,
                      size_t bytes, bool scratch, const char *file, const char *name);
/* Ends the staging: waits for what is queued, frees everything. */
void tsnap__stage_close(tsnap_stage *st);
/* Queues the copy of logical elements [first, first+n) of device view `v`
 * into slot `i`'s host buffer. */
int tsnap__stage_fetch(tsnap_stage *st, unsigned i, const tsnap_view *v, uint64_t first,
                       uint64_t n);
/* Queues the copy of slot `i`'s host buffer into logical elements
 * [first, first+n) of device view `v`. */
int tsnap__stage_store(tsnap_stage *st, unsigned i, const tsnap_view *v, uint64_t first,
                       uint64_t n);
/* Waits until slot `i`'s queued copy is done (any thread). */
int tsnap__stage_wait(tsnap_stage *st, unsigned i);
/* A one-slot staging of all of device view `v`, its copy to the host
 * queued (wait for slot 0); on failure nothing is left open. */
int tsnap__stage_whole(tsnap_stage *st, const tsnap_view *v, void *caller_stream,
                       const char *file, const char *name);

/* ---- table.c: the index of a file's tensors ------------------------- */

/* What a writer records, entry by entry, for the root attribute
 * `tsnap_index` (docs/FORMAT.md §16); `off`: no index for this file. */
typedef struct tsnap_table {
    uint8_t *buf;
    size_t len, cap, count;
    bool off;
} tsnap_table;

/* Records a tensor: its description (dtype, shape, chunk, nbytes,
 * stored_bytes, and offset when `flat`: its bytes lie at offset as they
 * are) and its XXH3 checksum (NULL: none).  Never fails: a table
 * that cannot grow is turned off. */
int tsnap__table_add(tsnap_table *t, const char *name, const tsnap_tensor_info *info, bool flat,
                     const uint64_t *checksum);
/* Writes the index as a root attribute, stamped with the time now, which
 * is put in *mtime for tsnap__table_stamp.  Nothing when off. */
int tsnap__table_write(tsnap_table *t, hid_t file, const char *path, struct timespec *mtime);
/* Gives the closed file `tmp` that modification time; -1 (errno) if not. */
int tsnap__table_stamp(const char *tmp, const struct timespec *mtime);
void tsnap__table_clear(tsnap_table *t);

/* A file's index, checked: entry k (in the writer's order) is named
 * names[k] (malloc'ed; a taker sets it NULL) and starts at blob + at[k]. */
typedef struct tsnap_table_loaded {
    uint8_t *buf;
    const uint8_t *blob;
    size_t len, count;
    size_t *at;
    char **names;
} tsnap_table_loaded;
/* The index of an open file, when it has one that still describes it
 * (file: HDF5's, fd: its descriptor); false: walk the file. */
bool tsnap__table_load(hid_t file, int fd, tsnap_table_loaded *out);
/* Entry k's description; *flat: complete, its bytes lying at offset. */
void tsnap__table_entry(const tsnap_table_loaded *t, size_t k, tsnap_tensor_info *info,
                        bool *flat);
void tsnap__table_loaded_clear(tsnap_table_loaded *t);

/* ---- writer.c, for the store ---------------------------------------- */

/* The final path a writer commits to. */
const char *tsnap__writer_path(const tsnap_writer *w);

/* For virtual.c: checks that the writer is open and `name` free, and
 * gives the file and the link creation properties to create it with. */
int tsnap__writer_target(tsnap_writer *w, const char *name, hid_t *file, hid_t *lcpl);
/* A partial dataset was left: the writer can only be aborted. */
void tsnap__writer_fail(tsnap_writer *w);

/* ---- vfd.c: the writers' file driver ------------------------------------ */

/* sec2, whose files can be doomed: writes, flushes and truncates then do
 * nothing, so that closing a file being discarded cannot fail. */
hid_t tsnap__vfd_id(void);
int tsnap__vfd_set(hid_t fapl);
void tsnap__vfd_doom(hid_t file);

#endif

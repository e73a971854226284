/*
 * tsnap.h - tensor snapshots in HDF5 files.
 *
 * One snapshot is one HDF5 file; each tensor is a chunked dataset whose
 * HDF5 type follows h5py's conventions, so h5py, h5dump and HDFView read
 * it with no tsnap installed.  docs/FORMAT.md is the file format.
 *
 * Conventions (the same for every call):
 *  - Every function that can fail returns 0 on success or a negative
 *    TSNAP_E* code.  tsnap_errmsg() then gives a one-line message naming
 *    the file, the tensor and the cause.
 *  - Constructors take their `out` argument first and set `*out = NULL` on
 *    failure.  Destructors return void and accept NULL.
 *  - Tensors are DLPack DLTensors, used unchanged: strides are in elements
 *    (NULL means C-contiguous, any sign and zero are allowed), byte_offset
 *    is honoured, data is in the machine's native byte order.
 *  - A handle may be used by one thread at a time; different handles may be
 *    used from different threads at once.
 */
#ifndef TSNAP_H
#define TSNAP_H

#include <stddef.h>
#include <stdint.h>

#include <dlpack/dlpack.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(TSNAP_SHARED_BUILD)
#define TSNAP_API __declspec(dllexport)
#elif defined(__GNUC__) && __GNUC__ >= 4
#define TSNAP_API __attribute__((visibility("default")))
#else
#define TSNAP_API
#endif

#define TSNAP_VERSION_MAJOR 0
#define TSNAP_VERSION_MINOR 1
#define TSNAP_VERSION_PATCH 0
#define TSNAP_VERSION_STRING "0.1.0"

/** The file format version this library writes (root attribute
 *  `tsnap_version`).  It reads this version and every earlier one. */
#define TSNAP_FORMAT_VERSION 1

/** The most dimensions a tensor may have (HDF5's own limit). */
#define TSNAP_MAX_NDIM 32

/** Returns TSNAP_VERSION_STRING of the library actually linked. */
TSNAP_API const char *tsnap_version(void);

/* ------------------------------------------------------------------ */
/* Threads                                                             */
/* ------------------------------------------------------------------ */

/*
 * Chunks are packed, compressed, decompressed and checksummed by a pool of
 * worker threads shared by every handle in the process, while the calling
 * thread does the file I/O (HDF5 is only ever called from the calling
 * thread).  Memory stays bounded: a call has at most a few chunks per
 * thread in flight, and up to 256 MiB of those staging buffers are kept
 * for the next call (touching fresh memory costs a page fault per page).
 */

/** The number of threads a call uses: the last tsnap_set_threads(), else
 *  the environment variable TSNAP_NUM_THREADS, else the cores this
 *  process may run on. */
TSNAP_API int tsnap_threads(void);

/** Sets the number of threads (1..256) calls use from now on; 0 restores
 *  the default.  TSNAP_EINVAL outside 0..256.  Any thread. */
TSNAP_API int tsnap_set_threads(int n);

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

/** Return codes.  The values are fixed forever. */
typedef enum tsnap_error {
    TSNAP_OK = 0,
    TSNAP_EINVAL = -1,       /**< a bad argument (NULL, bad shape, bad name...) */
    TSNAP_ENOTFOUND = -2,    /**< no such file or tensor */
    TSNAP_EEXISTS = -3,      /**< a tensor or file of that name exists */
    TSNAP_EFORMAT = -4,      /**< not an HDF5 file, damaged, or inconsistent */
    TSNAP_ECHECKSUM = -5,    /**< data does not match its recorded checksum */
    TSNAP_ENOTMAPPABLE = -6, /**< the tensor's bytes do not lie flat in the file */
    TSNAP_ENOCUDA = -7,      /**< CUDA memory given, but no CUDA support or device */
    TSNAP_ECUDA = -8,        /**< a CUDA call failed */
    TSNAP_EIO = -9,          /**< the operating system or HDF5 failed to read or write */
    TSNAP_ENOMEM = -10,      /**< out of memory */
    TSNAP_ETYPE = -11,       /**< a data type tsnap cannot represent */
    TSNAP_ESTATE = -12,      /**< the handle cannot do this now (e.g. put after commit) */
    TSNAP_ENOFILTER = -13    /**< a dataset's HDF5 filter is not available (a plug-in
                                  tsnap does not carry; see tsnap_filter_name) */
} tsnap_error;

/**
 * The message of the last failed call on this thread: one line naming the
 * file, the tensor and the cause.  Valid until the next tsnap call on this
 * thread; never NULL ("" when there was no error).
 */
TSNAP_API const char *tsnap_errmsg(void);

/** A short constant description of a return code, e.g. "not found". */
TSNAP_API const char *tsnap_strerror(int code);

/* ------------------------------------------------------------------ */
/* Data types                                                          */
/* ------------------------------------------------------------------ */

/** The element types tsnap stores.  The values are fixed forever. */
typedef enum tsnap_dtype {
    TSNAP_DTYPE_INVALID = 0,
    TSNAP_BOOL = 1,
    TSNAP_INT8 = 2,
    TSNAP_INT16 = 3,
    TSNAP_INT32 = 4,
    TSNAP_INT64 = 5,
    TSNAP_UINT8 = 6,
    TSNAP_UINT16 = 7,
    TSNAP_UINT32 = 8,
    TSNAP_UINT64 = 9,
    TSNAP_FLOAT16 = 10,
    TSNAP_BFLOAT16 = 11,
    TSNAP_FLOAT32 = 12,
    TSNAP_FLOAT64 = 13,
    TSNAP_FLOAT8_E4M3FN = 14,
    TSNAP_FLOAT8_E5M2 = 15,
    TSNAP_COMPLEX32 = 16,  /**< two float16: real, imaginary */
    TSNAP_COMPLEX64 = 17,
    TSNAP_COMPLEX128 = 18
} tsnap_dtype;

/** The number of tsnap_dtype values, TSNAP_DTYPE_INVALID included. */
#define TSNAP_DTYPE_COUNT 19

/*
 * DLPack type codes newer than some installed dlpack.h (0.6 has neither).
 * These are the values of DLPack 1.1's kDLBool, kDLFloat8_e4m3fn and
 * kDLFloat8_e5m2.
 */
#define TSNAP_DL_BOOL 6
#define TSNAP_DL_FLOAT8_E4M3FN 10
#define TSNAP_DL_FLOAT8_E5M2 12

/** The canonical name ("float32", "bfloat16", ...), or NULL if invalid. */
TSNAP_API const char *tsnap_dtype_name(tsnap_dtype dtype);

/** The size of one element in bytes, or 0 if invalid. */
TSNAP_API size_t tsnap_dtype_size(tsnap_dtype dtype);

/** Parses a canonical name.  TSNAP_ETYPE if unknown. */
TSNAP_API int tsnap_dtype_from_name(tsnap_dtype *out, const char *name);

/**
 * The tsnap type of a DLPack type.  Lanes must be 1.  Bool is accepted as
 * TSNAP_DL_BOOL with 8 bits; bfloat16 as kDLBfloat with 16 bits; complex32
 * as kDLComplex with 32 bits.  TSNAP_ETYPE if there is none.
 */
TSNAP_API int tsnap_dtype_from_dlpack(tsnap_dtype *out, DLDataType type);

/** The DLPack type of a tsnap type.  TSNAP_EINVAL if invalid. */
TSNAP_API int tsnap_dtype_to_dlpack(DLDataType *out, tsnap_dtype dtype);

/* ------------------------------------------------------------------ */
/* Writing a snapshot                                                  */
/* ------------------------------------------------------------------ */

/** Chunk codecs.  The values are fixed forever. */
typedef enum tsnap_codec {
    TSNAP_CODEC_NONE = 0,
    TSNAP_CODEC_DEFLATE = 1, /**< HDF5 filter 1 (a zlib stream); h5py reads it as is */
    TSNAP_CODEC_ZSTD = 2,    /**< HDF5 filter 32015 (one zstd frame); h5py needs hdf5plugin */
    TSNAP_CODEC_LZ4 = 3,     /**< HDF5 filter 32004 (the plug-in's framing); h5py needs
                                  hdf5plugin */
    TSNAP_CODEC_OTHER = 99   /**< read only: a filter tsnap does not name */
} tsnap_codec;

/** Values of tsnap_write_options.shuffle. */
#define TSNAP_SHUFFLE_AUTO (-1)
#define TSNAP_SHUFFLE_NONE 0
#define TSNAP_SHUFFLE_BYTE 1
#define TSNAP_SHUFFLE_BIT 2

/** The default target size of one chunk: 4 MiB. */
#define TSNAP_DEFAULT_CHUNK_BYTES ((size_t)4 << 20)

/** Options for tsnap_writer_create.  NULL means all defaults. */
typedef struct tsnap_write_options {
    unsigned int version;  /**< TSNAP_WRITE_OPTIONS_VERSION */
    tsnap_codec codec;     /**< default TSNAP_CODEC_NONE */
    int level;             /**< codec level; 0 picks the codec's default.  deflate
                                1..9 (default 1), zstd -7..22 (default -1); lz4 has
                                no levels (only 0) */
    int shuffle;           /**< TSNAP_SHUFFLE_*: the shuffle before the codec:
                                -1 auto (default: bit shuffle for zstd, byte
                                shuffle for deflate and lz4, when compressing
                                elements wider than one byte), 0 off, 1 byte
                                shuffle (HDF5's filter 2), 2 bit shuffle (the
                                bitshuffle filter 32008, hdf5plugin's) */
    size_t chunk_bytes;    /**< target chunk size; 0 means
                                TSNAP_DEFAULT_CHUNK_BYTES.  At most 2 GiB. */
    int checksum;          /**< record an xxh3-64 checksum per tensor (default 1) */
    int durable;           /**< fsync the file and its directory on commit
                                (default 1); 0 keeps the atomic rename only */
    int overwrite;         /**< commit replaces an existing file of the final
                                name (default 1); 0 makes create and commit
                                fail with TSNAP_EEXISTS instead */
    const char *producer;  /**< root attribute `producer`; NULL means
                                "tsnap <version>".  Copied. */
    /* Version 2: */
    int threads;           /**< threads that pack, compress and checksum
                                chunks; 0 (the default) means tsnap_threads(),
                                1 does everything in the calling thread */
} tsnap_write_options;

#define TSNAP_WRITE_OPTIONS_VERSION 2
#define TSNAP_WRITE_OPTIONS_INIT \
    { TSNAP_WRITE_OPTIONS_VERSION, TSNAP_CODEC_NONE, 0, -1, 0, 1, 1, 1, NULL, 0 }

/** Fills *opts with the defaults of `version` (1 or 2).  TSNAP_EINVAL for
 *  an unknown version.  Structs of version 1 (without `threads`) are
 *  accepted everywhere. */
TSNAP_API int tsnap_write_options_init(tsnap_write_options *opts, unsigned int version);

typedef struct tsnap_writer tsnap_writer;

/**
 * Starts a snapshot to be committed under `path`.  The data goes to a
 * temporary file in the same directory ("." + basename + ".<random>" +
 * ".tsnap-tmp"); nothing appears under `path` before tsnap_writer_commit.
 * `opts` is copied; NULL means defaults.
 * Returns TSNAP_ENOTFOUND if the directory does not exist, TSNAP_EEXISTS if
 * `path` exists and opts->overwrite is 0, TSNAP_EIO if the temporary file
 * cannot be created.
 */
TSNAP_API int tsnap_writer_create(tsnap_writer **out, const char *path,
                                  const tsnap_write_options *opts);

/**
 * Writes one tensor under `name` ("a/b/c" nests groups a and b).  The
 * tensor's memory is read before the call returns and may then change.
 * Names are non-empty, at most 1024 bytes, without leading, trailing or
 * doubled '/', without "." or ".." parts or control characters.
 * Returns TSNAP_EINVAL for a bad name or tensor (NULL data with elements,
 * ndim outside 0..TSNAP_MAX_NDIM, negative or overflowing shape),
 * TSNAP_ETYPE for a type with no tsnap dtype, TSNAP_ENOCUDA for CUDA
 * memory when this build has no CUDA or the machine no device,
 * TSNAP_ECUDA if a CUDA call fails, TSNAP_EEXISTS if the name (or a group
 * on its path) is taken, TSNAP_EIO if writing fails.  A failed write
 * leaves the writer unable to commit; argument errors do not.
 *
 * A tensor in CUDA memory (kDLCUDA, kDLCUDAManaged; any strides) is read
 * after the work queued on the legacy default stream, as
 * tsnap_writer_put_stream with a NULL stream does.  The driver is asked
 * first what the pointer is: memory of another device than the tensor's
 * device_id, or host memory labelled CUDA, is TSNAP_EINVAL (nothing is
 * copied, so no fault reaches the context the process shares).  The
 * calling thread's current CUDA context is the same on return as it was
 * on entry, for this and every other call of the library.  Pinned host
 * memory (kDLCUDAHost) is read by the CPU after the work queued on the
 * stream, as device memory is copied after it.
 */
TSNAP_API int tsnap_writer_put(tsnap_writer *w, const char *name, const DLTensor *tensor);

/**
 * tsnap_writer_put for a tensor that work on `cuda_stream` (a
 * cudaStream_t; NULL: the legacy default stream) writes: the device
 * memory is read after what is queued on that stream when the call is
 * made.  Chunks move to the host through pinned buffers on a stream of
 * tsnap's own, overlapping the checksum, compression and writing; a
 * strided tensor is packed on the device.  Host memory ignores the stream.
 */
TSNAP_API int tsnap_writer_put_stream(tsnap_writer *w, const char *name, const DLTensor *tensor,
                                      void *cuda_stream);

/**
 * An asynchronous put of a tensor in CUDA memory: queues the copy of all
 * of it into pinned host memory (as much as the tensor; a strided one is
 * packed on the device first, in as much device memory) after the work
 * queued on `cuda_stream`, and returns without waiting.  The process keeps
 * pinned buffers for the next call: up to 256 MiB of them, and besides the
 * last one used that is larger than that, so that a put of the same large
 * tensor each step pins its memory once.  The caller may
 * overwrite the tensor once tsnap_writer_wait has returned 0; the tensor
 * is written to the file by tsnap_writer_commit, in the order of the puts.
 * Host memory, and an empty tensor, are put at once, as
 * tsnap_writer_put_stream does.  The errors of tsnap_writer_put_stream; a
 * CUDA failure after the call returned is reported by tsnap_writer_wait
 * or tsnap_writer_commit, and the writer then cannot commit.
 */
TSNAP_API int tsnap_writer_put_async(tsnap_writer *w, const char *name, const DLTensor *tensor,
                                     void *cuda_stream);

/**
 * Waits until the copies of every asynchronous put so far are complete:
 * from then on the caller may change those tensors.  Returns the first
 * CUDA failure (TSNAP_ECUDA), which also makes the writer unable to commit.
 */
TSNAP_API int tsnap_writer_wait(tsnap_writer *w);

/**
 * Sets a numeric attribute: a 0-d tensor is a scalar, a 1-d or larger one a
 * small array (at most 64 KiB).  `tensor` NULL or "" sets it on the file's
 * root, otherwise on that tensor, which must have been put already.  Keys
 * starting with "tsnap_" and the root keys "created" and "producer" are
 * reserved; the root key "step" takes an integer scalar (stored as int64)
 * and "time" a real scalar (stored as float64).  Setting a key again
 * replaces it.
 */
TSNAP_API int tsnap_writer_set_attr(tsnap_writer *w, const char *tensor, const char *key,
                                    const DLTensor *value);

/** Sets a UTF-8 string attribute; otherwise as tsnap_writer_set_attr. */
TSNAP_API int tsnap_writer_set_attr_string(tsnap_writer *w, const char *tensor,
                                           const char *key, const char *value);

/**
 * One block of a virtual tensor: a whole dataset of another file that
 * holds the tensor's elements [offset, offset + shape).  A distributed
 * snapshot (include/tsnap_mpi.h) is made of such tensors, one block per
 * rank that holds one, each in that rank's part file.
 */
typedef struct tsnap_part {
    const char *file;                /**< the source file as the snapshot names
                                          it: relative to the snapshot's own
                                          folder (HDF5's rule), or absolute */
    const char *path;                /**< reading: `file` resolved against the
                                          snapshot's folder; writing: ignored */
    const char *dataset;             /**< the dataset in that file, e.g. "/u" */
    int64_t offset[TSNAP_MAX_NDIM];  /**< where the block starts in the tensor */
    int64_t shape[TSNAP_MAX_NDIM];   /**< the block's shape: the whole source */
} tsnap_part;

/**
 * Writes tensor `name` as an HDF5 virtual dataset of `dtype` and `shape`
 * whose `nparts` blocks are whole datasets of other files (`parts[i].file`,
 * relative to the folder of the writer's final path, `.dataset`,
 * `.offset`, `.shape`; `.path` is ignored).  h5py and h5dump read it as an
 * ordinary dataset; tsnap reads each block straight from its file.  The
 * blocks must be nonempty, lie inside `shape` and not overlap; elements
 * outside every block read as zero.  The tensor must have at least one
 * dimension and one element (put a 0-d or empty tensor as an ordinary
 * one).  The source files are neither opened nor checked here: write
 * them first.  Errors as tsnap_writer_put; TSNAP_EINVAL, naming the
 * blocks, for one outside the shape, empty, or overlapping another.
 */
TSNAP_API int tsnap_writer_put_virtual(tsnap_writer *w, const char *name, tsnap_dtype dtype,
                                       int ndim, const int64_t *shape, const tsnap_part *parts,
                                       size_t nparts);

/**
 * Closes the file, fsyncs it (unless durable is 0), renames it to its final
 * name and fsyncs the directory.  On failure the temporary file is removed
 * and an existing file under the final name is left untouched.  Either way
 * the writer is finished: only tsnap_writer_free remains.
 */
TSNAP_API int tsnap_writer_commit(tsnap_writer *w);

/** Discards the snapshot: removes the temporary file.  Nothing changes
 *  under the final name.  The writer is finished. */
TSNAP_API int tsnap_writer_abort(tsnap_writer *w);

/** Frees the writer; one not committed is aborted first.  Accepts NULL. */
TSNAP_API void tsnap_writer_free(tsnap_writer *w);

/* ------------------------------------------------------------------ */
/* Reading a snapshot (or any HDF5 file of numeric datasets)           */
/* ------------------------------------------------------------------ */

typedef struct tsnap_reader tsnap_reader;

/**
 * Opens a file for reading.  Any HDF5 file opens; its datasets are the
 * tensors.  Returns TSNAP_ENOTFOUND if it does not exist, TSNAP_EIO if it
 * cannot be read, TSNAP_EFORMAT if it is not a readable HDF5 file
 * (truncated, damaged, foreign) or claims a newer tsnap format.
 */
TSNAP_API int tsnap_reader_open(tsnap_reader **out, const char *path);

/** Closes the reader.  Mappings made from it stay valid.  Accepts NULL. */
TSNAP_API void tsnap_reader_free(tsnap_reader *r);

/** The file's tsnap format version, or 0 for a file tsnap did not write. */
TSNAP_API int tsnap_reader_format_version(const tsnap_reader *r);

/** The number of datasets in the file, at any depth. */
TSNAP_API size_t tsnap_reader_count(const tsnap_reader *r);

/**
 * The full name ("a/b/c", no leading '/') of dataset `index`, in sorted
 * byte order, or NULL if out of range.  Owned by the reader.
 */
TSNAP_API const char *tsnap_reader_name(const tsnap_reader *r, size_t index);

/** Why a tensor cannot be memory-mapped (TSNAP_MAP_OK if it can). */
typedef enum tsnap_map_status {
    TSNAP_MAP_OK = 0,
    TSNAP_MAP_EMPTY = 1,         /**< mappable, no bytes (length 0) */
    TSNAP_MAP_FILTERED = 2,      /**< compressed or otherwise filtered */
    TSNAP_MAP_BYTE_ORDER = 3,    /**< stored in non-native byte order */
    TSNAP_MAP_TYPE = 4,          /**< stored type differs from the in-memory one */
    TSNAP_MAP_NOT_ALLOCATED = 5, /**< storage not (fully) written */
    TSNAP_MAP_SCATTERED = 6,     /**< chunks do not lie back to back in order */
    TSNAP_MAP_LAYOUT = 7,        /**< compact, virtual or external storage */
    TSNAP_MAP_TRUNCATED = 8,     /**< the file is shorter than the data */
    TSNAP_MAP_VIRTUAL = 9        /**< a virtual dataset whose blocks lie in
                                      other files (tsnap_reader_part) */
} tsnap_map_status;

/** A description of one tensor, filled by tsnap_reader_describe. */
typedef struct tsnap_tensor_info {
    tsnap_dtype dtype;
    int ndim;
    int64_t shape[TSNAP_MAX_NDIM];
    int chunked;                     /**< 1 if the dataset is chunked */
    int64_t chunk[TSNAP_MAX_NDIM];   /**< chunk shape (in the tensor's own
                                          dimensions) when chunked */
    tsnap_codec codec;               /**< the compression filter, if any */
    int shuffle;                     /**< 1 if the shuffle filter is on, 2 the
                                          bitshuffle filter */
    int nfilters;                    /**< HDF5 filters in the pipeline */
    int filters[8];                  /**< their HDF5 filter ids */
    uint64_t nbytes;                 /**< logical size: elements x dtype size */
    uint64_t stored_bytes;           /**< bytes allocated in the file */
    int big_endian;                  /**< stored big-endian */
    tsnap_map_status map_status;     /**< TSNAP_MAP_OK/EMPTY when mappable */
    uint64_t offset;                 /**< when mappable: where the bytes start */
    uint64_t length;                 /**< when mappable: nbytes */
    char checksum[40];               /**< "xxh3-64:<16 hex digits>", or "" */
    size_t nparts;                   /**< a virtual dataset: its blocks
                                          (tsnap_reader_part); 0 otherwise */
    int string;                      /**< a tsnap_string_kind: nonzero for a
                                          0-d string dataset, which
                                          tsnap_reader_describe refuses with
                                          TSNAP_ETYPE (it is no tensor) and
                                          tsnap_reader_read_string reads */
} tsnap_tensor_info;

/** A short constant description of a map status, e.g. "compressed". */
TSNAP_API const char *tsnap_map_status_str(tsnap_map_status status);

/**
 * Block `index` (< info.nparts, in the order the file lists them) of a
 * virtual tensor.  The strings are owned by the reader.  The part file is
 * not opened here.  TSNAP_ENOTFOUND for no such tensor, TSNAP_EINVAL for
 * an index out of range or a tensor that is not virtual, TSNAP_EFORMAT
 * for a mapping tsnap cannot follow (a part of a source, a printf-style
 * name, overlapping blocks: HDF5 still reads it, slowly).
 */
TSNAP_API int tsnap_reader_part(tsnap_reader *r, const char *name, size_t index,
                                tsnap_part *part);

/**
 * Describes tensor `name`.  For a mappable tensor the file offset and
 * length of its C-order bytes are computed from the chunk addresses that
 * HDF5 reports and checked against the file size, never assumed.
 * Returns TSNAP_ENOTFOUND if there is no such dataset, TSNAP_ETYPE if its
 * HDF5 type has no tsnap dtype (the message names the type),
 * TSNAP_EFORMAT if the file contradicts itself.
 */
TSNAP_API int tsnap_reader_describe(tsnap_reader *r, const char *name, tsnap_tensor_info *info);

/**
 * Reads a hyperslab of tensor `name` into `dst`, a tensor of the
 * tensor's dtype (any strides).  `start` and `count` have one entry per
 * dimension of the tensor; `step` may be NULL (all 1) and otherwise holds
 * positive steps.  `dst->shape` must equal `count`.  Passing NULL for
 * `start` and `count` reads the whole tensor.  Returns TSNAP_EINVAL for a
 * selection outside the tensor or a mismatching `dst`.
 * TSNAP_EFORMAT if HDF5 finds the stored bytes damaged (a metadata
 * checksum, or a filter that rejects a chunk), TSNAP_EIO if the system
 * fails to read.  `dst` in host memory, or in CUDA memory as
 * tsnap_reader_read_stream with a NULL stream reads it.  A virtual tensor
 * (TSNAP_MAP_VIRTUAL) is read block by block, each block's share of the
 * selection straight from its part file; a part file that is missing or
 * does not hold its block is TSNAP_EFORMAT naming it.
 */
TSNAP_API int tsnap_reader_read(tsnap_reader *r, const char *name, const int64_t *start,
                                const int64_t *count, const int64_t *step, const DLTensor *dst);

/**
 * tsnap_reader_read into memory that work on `cuda_stream` (a
 * cudaStream_t; NULL: the legacy default stream) uses.  `dst` may be CUDA
 * memory (kDLCUDA, kDLCUDAManaged; any strides): the selection is read in
 * slabs into pinned host buffers and copied to the device, each copy
 * overlapping the next slab's read, after what is queued on the stream;
 * the copies are complete when the call returns.  TSNAP_ENOCUDA when this
 * build has no CUDA or the machine no device, TSNAP_ECUDA if a CUDA call
 * fails.  tsnap_reader_read does the same on the legacy default stream.
 */
TSNAP_API int tsnap_reader_read_stream(tsnap_reader *r, const char *name, const int64_t *start,
                                       const int64_t *count, const int64_t *step,
                                       const DLTensor *dst, void *cuda_stream);

/**
 * Reads the whole of tensor `name` into `dst` (as tsnap_reader_read with
 * NULL `start` and `count`) and checks its recorded checksum on the way,
 * in the same pass over the data: what tsnap_reader_verify then
 * tsnap_reader_read do, reading the data once.  TSNAP_ECHECKSUM, naming
 * the tensor, when the data does not match or cannot be decoded (`dst`
 * then holds whatever was read); a tensor without a recorded checksum is
 * just read.
 */
TSNAP_API int tsnap_reader_read_verified(tsnap_reader *r, const char *name, const DLTensor *dst);

/**
 * Recomputes the checksum of tensor `name` (NULL: of every tensor that has
 * one) from the file.  TSNAP_ECHECKSUM names the first tensor that does
 * not match; a tensor without a recorded checksum passes.
 */
TSNAP_API int tsnap_reader_verify(tsnap_reader *r, const char *name);

/** A kind of attribute value. */
typedef enum tsnap_attr_kind {
    TSNAP_ATTR_STRING = 1,  /**< `string` holds it */
    TSNAP_ATTR_NUMERIC = 2, /**< `value` holds it: 0-d for scalars */
    TSNAP_ATTR_OTHER = 3    /**< a type tsnap does not read; `string`
                                 describes it */
} tsnap_attr_kind;

/** One attribute.  All pointers are owned by the reader. */
typedef struct tsnap_attr {
    const char *key;
    tsnap_attr_kind kind;
    const char *string;
    DLTensor value;  /**< numeric values, CPU memory */
} tsnap_attr;

/**
 * The number of attributes of tensor `name` (NULL or "": of the root),
 * tsnap's own (`tsnap_*`) included, into *count.  The root's `tsnap_index`
 * (the index of the tensors, docs/FORMAT.md §16) is not an attribute here.
 */
TSNAP_API int tsnap_reader_attr_count(tsnap_reader *r, const char *name, size_t *count);

/**
 * Attribute `index` (in name order) of tensor `name` (NULL or "": the
 * root).  The pointers in *attr stay valid until the reader is freed.
 */
TSNAP_API int tsnap_reader_attr(tsnap_reader *r, const char *name, size_t index,
                                tsnap_attr *attr);

/** Finds an attribute by key; TSNAP_ENOTFOUND if there is none. */
TSNAP_API int tsnap_reader_attr_find(tsnap_reader *r, const char *name, const char *key,
                                     tsnap_attr *attr);

/* ------------------------------------------------------------------ */
/* Memory mapping                                                      */
/* ------------------------------------------------------------------ */

typedef struct tsnap_mapping tsnap_mapping;

/**
 * Maps tensor `name` read-only from the file with no copy.  The mapping
 * outlives the reader.  Returns TSNAP_ENOTMAPPABLE, with the reason in the
 * message, when the bytes do not lie flat in the file.  A virtual tensor
 * of one block that covers it maps that block from its part file; one of
 * several blocks is TSNAP_ENOTMAPPABLE (map a block: tsnap_reader_part).
 */
TSNAP_API int tsnap_mapping_create(tsnap_mapping **out, tsnap_reader *r, const char *name);

/** The mapped tensor: C-contiguous, CPU, read-only. Owned by the mapping. */
TSNAP_API const DLTensor *tsnap_mapping_tensor(const tsnap_mapping *m);

/** Unmaps.  Accepts NULL. */
TSNAP_API void tsnap_mapping_free(tsnap_mapping *m);

/* ------------------------------------------------------------------ */
/* The store: a directory of step-numbered snapshots                   */
/* ------------------------------------------------------------------ */

/*
 * One snapshot per step, named "step-" + the step as at least 12 decimal
 * digits (zero-padded) + ".h5", e.g. step-000000000042.h5, each written
 * under a temporary name and renamed into place when complete.  One
 * process writes to a store at a time (it holds an exclusive lock on the
 * file ".tsnap-store.lock" in the directory); any number read it, never
 * blocked.  Files of other names are ignored.
 */
typedef struct tsnap_store tsnap_store;

typedef struct tsnap_store_options {
    unsigned int version;       /**< TSNAP_STORE_OPTIONS_VERSION */
    int writable;               /**< 1 (default): this handle saves, so it takes
                                     the writer's lock, makes the directory if
                                     it is missing and removes the temporary
                                     files a killed writer left; 0: read only */
    int keep_last;              /**< > 0: after each save only the newest
                                     keep_last steps remain (older ones are
                                     deleted once the new one is durable);
                                     0 (default): all are kept */
    tsnap_write_options write;  /**< how each snapshot is written; `overwrite`
                                     is the store's (a step is never replaced) */
    size_t staging_bytes;       /**< host memory that background saves may hold
                                     (tsnap_store_save with wait 0); 0 means
                                     TSNAP_DEFAULT_STAGING_BYTES */
} tsnap_store_options;

#define TSNAP_DEFAULT_STAGING_BYTES ((size_t)4 << 30)
#define TSNAP_STORE_OPTIONS_VERSION 1
#define TSNAP_STORE_OPTIONS_INIT \
    { TSNAP_STORE_OPTIONS_VERSION, 1, 0, TSNAP_WRITE_OPTIONS_INIT, 0 }

/**
 * Opens the store in directory `dir` (opts NULL: the defaults).
 * TSNAP_ENOTFOUND if `dir` (read only) or its parent (writable) does not
 * exist, TSNAP_ESTATE if another handle, in this process or another,
 * writes to it, TSNAP_EIO if the directory cannot be written or read.
 */
TSNAP_API int tsnap_store_open(tsnap_store **out, const char *dir,
                               const tsnap_store_options *opts);

/** Waits for the background saves, then closes the store (releasing the
 *  writer's lock); a failure they had is lost: call tsnap_store_wait
 *  first to see it.  Accepts NULL. */
TSNAP_API void tsnap_store_free(tsnap_store *s);

/**
 * The committed steps, ascending: fills `steps` with up to `cap` of them
 * and sets *count to how many there are (call with cap 0 to size the
 * array).  Temporary files and other names are not steps.
 */
TSNAP_API int tsnap_store_steps(tsnap_store *s, int64_t *steps, size_t cap, size_t *count);

/** The newest committed step; TSNAP_ENOTFOUND when there is none. */
TSNAP_API int tsnap_store_latest(tsnap_store *s, int64_t *step);

/**
 * The file of `step` (whether or not it exists) in `buf` of `len` bytes;
 * TSNAP_EINVAL for a negative step or a short buffer.
 */
TSNAP_API int tsnap_store_path(const tsnap_store *s, int64_t step, char *buf, size_t len);

/**
 * Starts the snapshot of `step` (>= 0): a writer for its file, with the
 * root attribute `step` set.  Put tensors and attributes into it, then
 * tsnap_store_commit (or tsnap_writer_abort); free it with
 * tsnap_writer_free either way.  TSNAP_EEXISTS if the step is committed
 * already (with tsnap_errno() EEXIST and tsnap_errpath() its file, as
 * when a save or tsnap_store_wait returns it), TSNAP_ESTATE for a
 * read-only store.
 */
TSNAP_API int tsnap_store_begin(tsnap_store *s, int64_t step, tsnap_writer **w);

/**
 * Commits the snapshot begun with tsnap_store_begin, then applies
 * keep_last: older steps are deleted only now that the new one is
 * complete (durable, unless the write options say otherwise).  On
 * failure no step is added and none is deleted.  TSNAP_EINVAL for a
 * writer that tsnap_store_begin of this store did not make.
 */
TSNAP_API int tsnap_store_commit(tsnap_store *s, tsnap_writer *w);

/** A root attribute of a store save: `string` when not NULL, else the
 *  numeric `value` (host memory), as tsnap_writer_set_attr takes them. */
typedef struct tsnap_store_attr {
    const char *key;
    const char *string;
    const DLTensor *value;
} tsnap_store_attr;

/**
 * Saves `step` with the `n` tensors `tensors[i]` under `names[i]`, in host
 * or CUDA memory, and the `nattrs` root attributes `attrs` (NULL when 0),
 * as tsnap_store_begin, puts, attributes and tsnap_store_commit would.
 * wait 1: returns when the step is committed.  wait 0: returns as soon as
 * the tensors are copied into host staging memory (from the device, for
 * CUDA tensors, into pinned memory: the caller may then change them), and
 * a background thread of the store writes, commits and applies keep_last.
 * Staging memory is bounded by staging_bytes: a save waits for earlier
 * background saves to make room, and one larger than all of it is written
 * before the call returns.  The staging buffers are kept for the next
 * saves, up to staging_bytes in all, until tsnap_store_free: a store that
 * saves CUDA tensors holds up to staging_bytes of pinned (page-locked)
 * host memory, and one that saves host tensors as much ordinary memory.
 * The device copies' stream, event and device scratch are released as
 * soon as the copy has landed.  A background failure is never lost: the next tsnap_store_save
 * or tsnap_store_wait returns it (and the failed step is not listed).
 * With an HDF5 that is not thread-safe, every save waits.
 */
TSNAP_API int tsnap_store_save(tsnap_store *s, int64_t step, const char *const *names,
                               const DLTensor *tensors, size_t n, const tsnap_store_attr *attrs,
                               size_t nattrs, int wait);

/** What an item of tsnap_store_save_items is. */
typedef enum tsnap_store_item_kind {
    TSNAP_STORE_TENSOR = 0, /**< `tensor`, as tsnap_writer_put takes it */
    TSNAP_STORE_STRING = 1, /**< `len` bytes at `data`, as tsnap_writer_put_string takes them */
    TSNAP_STORE_GROUP = 2   /**< an empty group, as tsnap_writer_put_group makes it */
} tsnap_store_item_kind;

/** One dataset or group of a step saved with tsnap_store_save_items. */
typedef struct tsnap_store_item {
    const char *name;              /**< names as tsnap_writer_put */
    tsnap_store_item_kind kind;
    const DLTensor *tensor;        /**< TSNAP_STORE_TENSOR: host or CUDA memory */
    const char *data;              /**< TSNAP_STORE_STRING (NULL only when len is 0) */
    size_t len;
    int string_kind;               /**< TSNAP_STRING_UTF8 or TSNAP_STRING_BYTES */
    const char *pytype;            /**< NULL, or what tsnap_writer_set_pytype records */
} tsnap_store_item;

/**
 * tsnap_store_save of a step that also holds strings, groups and recorded
 * types: the items are written in order, each put and then given its
 * `pytype`, exactly as a writer would (a group comes before what is put
 * into it).  With wait 0 the strings are copied too and everything is
 * staged: the caller may change or free it when the call returns.  A
 * store opened with hooks (a distributed store) takes tensors without a
 * pytype only (TSNAP_EINVAL).  A bad string or pytype is found when the
 * step is written: by this call with wait 1, else by the next save or
 * tsnap_store_wait, as any background failure.
 */
TSNAP_API int tsnap_store_save_items(tsnap_store *s, int64_t step, const tsnap_store_item *items,
                                     size_t n, const tsnap_store_attr *attrs, size_t nattrs,
                                     int wait);

/**
 * Waits until every background save has finished; returns the first
 * failure among them not returned yet (0: all committed).
 */
TSNAP_API int tsnap_store_wait(tsnap_store *s);

/**
 * Deletes the snapshot at `path`: the file first, then the folder of its
 * parts (`path` + ".parts") when it is a distributed snapshot, so that a
 * reader never finds a snapshot whose parts are gone.  TSNAP_ENOTFOUND
 * when there is no such file (a parts folder alone, a failed save's
 * leftover, is still removed), TSNAP_EIO when the system refuses.
 */
TSNAP_API int tsnap_snapshot_remove(const char *path);

#ifdef TSNAP_STORE_HOOKS
/*
 * Experimental, for stores whose steps are not one file written by this
 * process (the distributed store of include/tsnap_mpi.h is one): the store
 * keeps its staging, background thread, ordering and error reporting,
 * and `write` replaces begin / puts / attributes / commit / keep_last.
 */
typedef struct tsnap_store_hooks {
    /* Writes and commits `step`.  Called in the order of the saves: on
     * the caller's thread for a waiting save, else on the store's
     * background thread with the tensors in the store's staging (host
     * memory, C order).  Returns 0 or a TSNAP_E* code with the thread's
     * message set; a failure is reported as any background failure is. */
    int (*write)(void *ctx, tsnap_store *s, int64_t step, const char *const *names,
                 const DLTensor *tensors, size_t n, const tsnap_store_attr *attrs,
                 size_t nattrs);
    void *ctx;
    int lock;  /* 1: a writable store's lock and clean-up, as usual; 0: neither
                  (another process of the same job holds them) */
} tsnap_store_hooks;

/** tsnap_store_open with `hooks` (copied). */
TSNAP_API int tsnap_store_open_hooked(tsnap_store **out, const char *dir,
                                      const tsnap_store_options *opts,
                                      const tsnap_store_hooks *hooks);

/** Sets this thread's error message (what tsnap_errmsg() returns next) to
 *  `message` and returns `code`: how a hook, or a library built on this
 *  API, reports a failure as tsnap's own calls do. */
TSNAP_API int tsnap_set_error(int code, const char *message);
#endif

/* ------------------------------------------------------------------ */
/* System errors, strings and groups                                    */
/* ------------------------------------------------------------------ */

/**
 * The errno of the last failed call on this thread when the operating
 * system failed it (a read, write, open, fsync or rename: ENOSPC, EDQUOT,
 * EACCES, EROFS, EIO, EFBIG...), else 0.  Such a failure is TSNAP_EIO (or
 * TSNAP_EEXISTS, TSNAP_ENOTFOUND where those say more) and its message
 * ends in the system's words, strerror(tsnap_errno()).  A background
 * failure of a store keeps the errno it had.  Valid until the next tsnap
 * call on this thread.
 */
TSNAP_API int tsnap_errno(void);

/** The file that failure is about: a writer's final name, never its
 *  temporary one ("" when tsnap_errno() is 0).  Valid as tsnap_errno(). */
TSNAP_API const char *tsnap_errpath(void);

/** What a string dataset holds. */
typedef enum tsnap_string_kind {
    TSNAP_STRING_NONE = 0,  /**< not a string */
    TSNAP_STRING_UTF8 = 1,  /**< text: HDF5's UTF-8 character set (h5py: str) */
    TSNAP_STRING_BYTES = 2  /**< bytes: HDF5's ASCII character set (h5py: bytes) */
} tsnap_string_kind;

/**
 * Writes a 0-d string dataset `name` (names as tsnap_writer_put) holding
 * the `len` bytes at `data`.  TSNAP_STRING_UTF8: valid UTF-8 without NUL
 * characters, stored as a variable-length UTF-8 string, as h5py stores a
 * Python str.  TSNAP_STRING_BYTES: any bytes, stored as a fixed-length
 * string of exactly `len` bytes (null-padded, ASCII), as h5py stores a
 * Python bytes object; an empty one as an empty variable-length ASCII
 * string.  Strings carry no checksum.  Errors as tsnap_writer_put;
 * TSNAP_EINVAL for text that is not UTF-8 or holds a NUL.
 */
TSNAP_API int tsnap_writer_put_string(tsnap_writer *w, const char *name, const char *data,
                                      size_t len, tsnap_string_kind kind);

/**
 * Creates group `name` (and the groups above it), empty: how an empty
 * mapping is stored.  TSNAP_EEXISTS if the name is taken.
 */
TSNAP_API int tsnap_writer_put_group(tsnap_writer *w, const char *name);

/**
 * Records what kind of value of the program's language the tensor,
 * string or group `name` (put already) holds, as its string attribute
 * `tsnap_pytype` (docs/FORMAT.md §3.1 lists the values Python's package
 * writes: "int", "float", "bool", "complex", "list", "tuple", "intkeys",
 * "none", "bytes").  `type` is 1 to 31 characters of [a-z0-9_].  Setting
 * it again replaces it.
 */
TSNAP_API int tsnap_writer_set_pytype(tsnap_writer *w, const char *name, const char *type);

/**
 * Reads the 0-d string dataset `name` (any string dataset of one element:
 * variable-length or fixed-length, either character set): copies up to
 * `cap` bytes of it into `buf` (no terminating NUL added; `buf` may be
 * NULL when `cap` is 0) and sets *len to its whole length and *kind to
 * its character set.  A fixed-length string gives all its bytes, padding
 * included, except one padded with NULs up to a terminating NUL
 * (H5T_STR_NULLTERM), which ends there.  TSNAP_ENOTFOUND for no such
 * dataset, TSNAP_ETYPE for one that is not a single string.
 */
TSNAP_API int tsnap_reader_read_string(tsnap_reader *r, const char *name, char *buf, size_t cap,
                                       size_t *len, tsnap_string_kind *kind);

/** The number of groups of the file (the root not counted), at any depth,
 *  empty ones included. */
TSNAP_API size_t tsnap_reader_group_count(const tsnap_reader *r);

/** The full name of group `index`, in sorted byte order, or NULL if out of
 *  range.  Owned by the reader.  tsnap_reader_attr* take group names too. */
TSNAP_API const char *tsnap_reader_group_name(const tsnap_reader *r, size_t index);

/** One member of an HDF5 enum: its name and its value (for an enum over
 *  uint64, the value's bits: cast to uint64_t). */
typedef struct tsnap_enum_member {
    const char *name;
    int64_t value;
} tsnap_enum_member;

/**
 * The members of tensor `name`'s HDF5 enum type, in the order the type
 * lists them: *members (owned by the reader, valid until it is freed) and
 * *count.  An enum over an integer type loads as that integer type (as
 * h5py reads it); these are its names.  *count is 0 for any other type,
 * tsnap's bool (an enum FALSE = 0, TRUE = 1 over int8) included.
 * TSNAP_ENOTFOUND for no such tensor, TSNAP_ETYPE for a type with no
 * tsnap dtype.
 */
TSNAP_API int tsnap_reader_enum(tsnap_reader *r, const char *name,
                                const tsnap_enum_member **members, size_t *count);

/**
 * The name of HDF5 filter `id` in the registry of filters (1 "deflate",
 * 2 "shuffle", 3 "fletcher32", 4 "szip", 5 "nbit", 6 "scaleoffset",
 * 307 "bzip2", 32000 "lzf", 32001 "blosc", 32004 "lz4", 32008
 * "bitshuffle", 32013 "zfp", 32015 "zstd", 32026 "blosc2", ...), or NULL
 * for an id it does not know.  Any thread.
 */
TSNAP_API const char *tsnap_filter_name(int id);

/**
 * Adds `dir` to the end of the directories HDF5 loads filter plug-ins
 * from (after those of HDF5_PLUGIN_PATH, which HDF5 reads by itself): a
 * dataset with a filter tsnap does not decode (blosc, bzip2, ...) reads
 * when a plug-in there provides it, and is TSNAP_ENOFILTER otherwise.  A
 * directory already added is not added twice.  The Python package adds
 * hdf5plugin's plug-ins where hdf5plugin is installed.
 */
TSNAP_API int tsnap_plugin_path_append(const char *dir);

/**
 * 1 when the reader listed and described the tensors from the file's index
 * (the `tsnap_index` root attribute, docs/FORMAT.md §16), which a file
 * keeps only until anything else writes to it; 0 when it walked the file.
 */
TSNAP_API int tsnap_reader_indexed(const tsnap_reader *r);

#ifdef __cplusplus
}
#endif

#endif /* TSNAP_H */

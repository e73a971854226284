/*
 * tsnap_mpi.h - distributed snapshots of MPI jobs.
 *
 * Each rank of a communicator holds a block of every global tensor.  A
 * distributed snapshot is still one HDF5 file, `path`: each global tensor
 * in it is a virtual dataset over the blocks, which every rank writes with
 * tsnap's own writer into a part file of its own, in the folder
 * `path` + ".parts" that belongs to the snapshot.  h5py, h5dump and
 * tsnap_reader_open (no MPI needed) read `path` as ordinary datasets, from
 * any working directory, once the file and its folder are moved together.
 *
 * Commit: when every rank's part is durable (all ranks agree; one failure
 * fails all), rank 0 writes `path` under a temporary name and renames it
 * into place.  A reader that finds `path` finds every part complete; a
 * failed or killed save leaves no file under `path` and earlier snapshots
 * whole, and the next writer removes its leftovers.  docs/DISTRIBUTED.md
 * has the layout and the protocol step by step.
 *
 * Link with tsnap::mpi (libtsnap_mpi); programs without MPI never need it.
 * Calls marked "collective" must be made by every rank of the
 * communicator, in the same order; the others are local.  Errors are
 * those of include/tsnap.h, with tsnap_errmsg() naming the file, the
 * tensor, the cause and the ranks.  A collective call returns the same
 * result on every rank: a refusal of the blocks names the tensor and the
 * ranks ("tensor 'u': the blocks of ranks 1 and 2 overlap at [3:4, 0:8]"),
 * and a failure on some rank is that rank's message, prefixed with
 * "rank N: ".
 */
#ifndef TSNAP_MPI_H
#define TSNAP_MPI_H

#include <mpi.h>

#include "tsnap.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* The collective writer                                               */
/* ------------------------------------------------------------------ */

typedef struct tsnap_mpi_writer tsnap_mpi_writer;

/**
 * Collective.  Starts a distributed snapshot to be committed under `path`
 * (the same on every rank; `opts` too, NULL meaning defaults; every part
 * file and the snapshot file are written with them).  Nothing appears
 * under `path` before tsnap_mpi_writer_commit; the parts go into a fresh
 * folder `path`.parts/<save id>/.  The communicator is duplicated: the
 * caller may free its own.  Errors of tsnap_writer_create, from any rank
 * (TSNAP_EEXISTS when `path` exists and opts->overwrite is 0).
 */
TSNAP_API int tsnap_mpi_writer_create(tsnap_mpi_writer **out, MPI_Comm comm, const char *path,
                                      const tsnap_write_options *opts);

/**
 * This rank's block of global tensor `name`: `block` (host or CUDA
 * memory, any strides) holds the elements [offset, offset + block->shape)
 * of a tensor of shape `shape` (block->ndim entries each).  Every rank
 * puts every sharded tensor: a rank that holds none of it puts an empty
 * block (a zero in its shape).  The blocks of all ranks must tile the
 * tensor exactly, with one dtype and one shape: tsnap_mpi_writer_commit
 * checks that.  A 0-d tensor cannot be sharded (put it replicated).
 * Local; the errors of tsnap_writer_put_stream, returned here and kept:
 * any failed put makes the commit fail on every rank.
 */
TSNAP_API int tsnap_mpi_writer_put_block(tsnap_mpi_writer *w, const char *name,
                                         const DLTensor *block, const int64_t *shape,
                                         const int64_t *offset, void *cuda_stream);

/**
 * A replicated tensor (a parameter, a scalar): every rank puts it under
 * the same name, and rank 0's is written, once.  Local.
 */
TSNAP_API int tsnap_mpi_writer_put(tsnap_mpi_writer *w, const char *name,
                                   const DLTensor *tensor, void *cuda_stream);

/**
 * Attributes, as tsnap_writer_set_attr / _string take them: on the root
 * (`tensor` NULL) or on a tensor put already.  Every rank sets the same;
 * rank 0's are written.  Local.
 */
TSNAP_API int tsnap_mpi_writer_set_attr(tsnap_mpi_writer *w, const char *tensor,
                                        const char *key, const DLTensor *value);
TSNAP_API int tsnap_mpi_writer_set_attr_string(tsnap_mpi_writer *w, const char *tensor,
                                               const char *key, const char *value);

/**
 * Collective: commits the snapshot, or fails on every rank.  Call it on
 * every rank even after a failed put (that rank's failure then fails the
 * commit everywhere, rather than leaving the others waiting).  Refused on
 * every rank, naming the tensor and the ranks, with no file left: blocks
 * that overlap, leave a gap or lie outside the shape; a dtype, shape or
 * name that differs between ranks.  Either way the writer is finished.
 */
TSNAP_API int tsnap_mpi_writer_commit(tsnap_mpi_writer *w);

/** Frees the writer; one not committed is discarded (its part file
 *  removed).  Call it on every rank: it frees the writer's duplicate of
 *  the communicator, which MPI counts as collective (Open MPI and MPICH
 *  do not wait for the other ranks there).  Accepts NULL. */
TSNAP_API void tsnap_mpi_writer_free(tsnap_mpi_writer *w);

/* ------------------------------------------------------------------ */
/* The distributed store                                               */
/* ------------------------------------------------------------------ */

typedef struct tsnap_mpi_store tsnap_mpi_store;

/** One tensor of a distributed save. */
typedef struct tsnap_mpi_tensor {
    const char *name;
    const DLTensor *tensor;  /**< this rank's block, or the replicated tensor */
    const int64_t *shape;    /**< the global shape; NULL: replicated */
    const int64_t *offset;   /**< where the block starts; NULL: replicated */
} tsnap_mpi_tensor;

/**
 * Collective: opens the store in `dir` (the same on every rank) as
 * tsnap_store_open does, its steps being distributed snapshots.  Rank 0
 * holds the writer's lock and removes what failed saves left.
 */
TSNAP_API int tsnap_mpi_store_open(tsnap_mpi_store **out, MPI_Comm comm, const char *dir,
                                   const tsnap_store_options *opts);

/** Collective: waits for the background saves, then closes the store (a
 *  failure not returned yet is lost: call tsnap_mpi_store_wait first to
 *  see it).  Accepts NULL (on every rank). */
TSNAP_API void tsnap_mpi_store_free(tsnap_mpi_store *s);

/**
 * Collective: saves `step` from the `n` tensors (the same names on every
 * rank; blocks checked as tsnap_mpi_writer_commit checks them, before
 * anything is written) and the root attributes (rank 0's are written).
 * wait 1: returns when the step is committed on every rank.  wait 0:
 * returns once this rank's tensors are in the store's staging memory; the
 * write and the commit (one agreement, one rename) run on a background
 * thread of each rank, which needs MPI_THREAD_MULTIPLE (without it, every
 * save waits).  A failure on any rank is returned on every rank, by this
 * call or by the next save, wait or free.
 */
TSNAP_API int tsnap_mpi_store_save(tsnap_mpi_store *s, int64_t step,
                                   const tsnap_mpi_tensor *tensors, size_t n,
                                   const tsnap_store_attr *attrs, size_t nattrs, int wait);

/** Collective: waits for every background save; the first failure not
 *  returned yet (the same on every rank). */
TSNAP_API int tsnap_mpi_store_wait(tsnap_mpi_store *s);

/** Collective: the committed steps (rank 0 lists, every rank gets its
 *  answer), as tsnap_store_steps. */
TSNAP_API int tsnap_mpi_store_steps(tsnap_mpi_store *s, int64_t *steps, size_t cap,
                                    size_t *count);

/** Collective: the newest committed step; TSNAP_ENOTFOUND when none. */
TSNAP_API int tsnap_mpi_store_latest(tsnap_mpi_store *s, int64_t *step);

/** Local: the snapshot file of `step`, as tsnap_store_path. */
TSNAP_API int tsnap_mpi_store_path(const tsnap_mpi_store *s, int64_t step, char *buf,
                                   size_t len);

#ifdef __cplusplus
}
#endif

#endif /* TSNAP_MPI_H */

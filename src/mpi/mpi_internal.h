/*
 * mpi_internal.h - what the files of libtsnap_mpi share.
 *
 * plan.c:   the blocks' metadata, packed for the agreement, and the check
 *           that the blocks of all ranks tile every tensor.
 * commit.c: the agreement (one gather to rank 0, one broadcast of the
 *           outcome), the snapshot file rank 0 writes, the parts folders.
 * writer.c: the collective writer.  store.c: the distributed store.
 *
 * Only libtsnap's public API is used (include/tsnap.h): its own symbols
 * are hidden.
 */
#ifndef TSNAP_MPI_INTERNAL_H
#define TSNAP_MPI_INTERNAL_H

#define TSNAP_STORE_HOOKS
#include <stdbool.h>

#include "tsnap_mpi.h"

#define TM_MSG_LEN 1024
#define TM_ID_LEN 16 /* hex digits of a save id */

/* One tensor as one rank gave it.  Small: rank 0 holds one per tensor
 * and rank. */
typedef struct tm_entry {
    char *name;
    int replicated; /* 1: put without a block */
    int dtype;
    int ndim;
    int64_t *shape;  /* the global shape (replicated: its shape) */
    int64_t *offset; /* sharded: where the block starts */
    int64_t *block;  /* sharded: the block's shape; the three share shape's allocation */
} tm_entry;

/* What one rank brings to an agreement: its status (a failure with the
 * sequence number of the save it belongs to, so that an older failure is
 * reported first) and its tensors. */
typedef struct tm_record {
    int err;
    int shared; /* the failure is an agreed outcome already: its message says it all */
    int64_t seq;
    char msg[TM_MSG_LEN];
    size_t n;
    tm_entry *e;
} tm_record;

/* A tensor of the snapshot, from the blocks of all ranks. */
typedef struct tm_tensor {
    const tm_entry *e; /* the first rank's entry: name, dtype, shapes */
    size_t nblocks;    /* nonempty blocks, by rank */
    int *ranks;
    const tm_entry **blocks;
} tm_tensor;

/* ---- plan.c --------------------------------------------------------- */

/* Fills `e` (whose name is strdup'ed) for a block or, with shape NULL, a
 * replicated tensor; checks what one rank can check on its own. */
int tm_entry_init(tm_entry *e, const char *file, const char *name, const DLTensor *t,
                  const int64_t *shape, const int64_t *offset);
/* Frees what an entry holds and zeroes it. */
void tm_entry_clear(tm_entry *e);
void tm_entries_free(tm_entry *e, size_t n);
/* Gives `e` ndim dimensions: room for its shape, offset and block, zeroed.
 * -1 when out of memory. */
int tm_entry_dims(tm_entry *e, int ndim);
/* 1 if the block holds no element. */
bool tm_block_empty(const tm_entry *e);

/* Rank 0: checks that the tensors of all `nranks` records agree and that
 * the blocks tile each tensor; fills *out (sorted by name) or returns the
 * error with its message set.  `file` starts the messages. */
int tm_plan(const char *file, tm_record *recs, int nranks, tm_tensor **out, size_t *count);
void tm_plan_free(tm_tensor *t, size_t count);

/* "[a:b, c:d]" */
void tm_format_box(char *buf, size_t len, int ndim, const int64_t *lo, const int64_t *n);

/* ---- commit.c ------------------------------------------------------- */

/* A communicator of our own (*out), with this rank and the size. */
int tm_comm_dup(MPI_Comm comm, MPI_Comm *out, int *rank, int *size);

/* Collective: gathers every rank's record to rank 0 (into recs[nranks],
 * entries included when `entries`).  On the others *recs is NULL. */
int tm_gather(MPI_Comm comm, const tm_record *mine, bool entries, tm_record **recs);
void tm_records_free(tm_record *recs, int nranks);
/* Rank 0: the failure to report among the records (the oldest, then the
 * lowest rank): its code, its message in msg and its save in *seq (when
 * not NULL); 0 if none failed. */
int tm_first_failure(const tm_record *recs, int nranks, char *msg, size_t len, int64_t *seq);
/* Collective: rank 0's outcome to every rank, as the return value and
 * the thread's message (plus `extra`, bytes rank 0 adds, e.g. a save id). */
int tm_outcome(MPI_Comm comm, int err, const char *msg, char *extra, size_t extra_len);
/* Collective: every rank's status; the same outcome everywhere. */
int tm_agree(MPI_Comm comm, int err, const char *msg);

/* A fresh save id: 16 hex digits. */
void tm_new_id(char id[TM_ID_LEN + 1]);
/* "<path>.parts" and "<path>.parts/<id>", malloc'ed. */
char *tm_parts_dir(const char *path);
char *tm_save_dir(const char *path, const char *id);
/* Makes "<path>.parts/<id>" (and its parent). */
int tm_make_save_dir(const char *path, const char *id);
/* Part file of `rank`, malloc'ed: relative (to path's folder) or full. */
char *tm_part_file(const char *path, const char *id, int rank, bool relative);
/* Removes "<path>.parts/<keep>"'s siblings (keep NULL: every save folder),
 * then the parts folder itself when it is left empty. */
int tm_clean_parts(const char *path, const char *keep);
/* Removes the folder of save `id` (a failed save's parts), then the parts
 * folder itself when it is left empty. */
int tm_remove_save(const char *path, const char *id);
/* The save that snapshot `path` refers to, into id; false when it cannot
 * tell (no virtual tensor, an unreadable file). */
bool tm_referred_save(const char *path, char id[TM_ID_LEN + 1]);
/* Rank 0, after a commit: what PATH refers to stays, other save folders
 * go (`err` 0), or this save's parts go (the commit failed). */
void tm_settle_parts(const char *path, const char *id, int err);
/* Fsyncs "<path>.parts", so that the save folders in it are durable. */
int tm_sync_parts(const char *path);

/* Rank 0: puts the sharded tensors of `plan` into snapshot `w`: virtual
 * datasets over the parts of save `id`, empty global tensors as empty
 * datasets.  Replicated tensors are the caller's. */
int tm_put_virtuals(tsnap_writer *w, const char *path, const char *id, const tm_tensor *plan,
                    size_t count);

/* A message into a buffer and this thread's error. */
int tm_fail(int err, char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Keeps the first failure: err, tsnap_errmsg(). */
void tm_keep(int *err, char *msg, size_t len, int e);

#endif

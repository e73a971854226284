/*
 * writer.c - the collective writer.
 *
 * create: rank 0 draws the save id, starts the snapshot file (a
 * tsnap_writer under a temporary name) and makes PATH.parts/<id>/; every
 * rank learns the outcome and the id.  put_block: this rank's block goes
 * into its part file (a tsnap_writer of its own, made at the first
 * nonempty block) at once, so the caller's memory may change after the
 * call.  put: a replicated tensor, written by rank 0 into the snapshot
 * file.  commit: every part file is committed (durable), then the one
 * agreement: rank 0 checks the tiling, writes the virtual datasets and
 * commits the snapshot file, and the outcome goes to every rank.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi_internal.h"

/* An attribute of a sharded tensor, kept by rank 0 until the virtual
 * dataset it belongs to exists. */
typedef struct tm_attr {
    char *tensor, *key, *string;
    DLTensor value;
    int64_t shape[TSNAP_MAX_NDIM];
    void *data;
} tm_attr;

struct tsnap_mpi_writer {
    MPI_Comm comm;
    int rank, size;
    char *path;
    char id[TM_ID_LEN + 1];
    tsnap_write_options opts;
    char *producer;
    tsnap_writer *part; /* this rank's blocks, once it has one */
    tsnap_writer *snap; /* rank 0: the snapshot file */
    tm_entry *e;
    size_t n, cap;
    tm_attr *attrs;
    size_t nattrs;
    int err; /* the first failure of a put on this rank */
    char msg[TM_MSG_LEN];
    bool finished;
};

static int failed(tsnap_mpi_writer *w, int err)
{
    tm_keep(&w->err, w->msg, sizeof w->msg, err);
    return err;
}

int tsnap_mpi_writer_create(tsnap_mpi_writer **out, MPI_Comm comm, const char *path,
                            const tsnap_write_options *opts)
{
    char msg[TM_MSG_LEN] = "", extra[TM_ID_LEN + 1] = "";
    tsnap_mpi_writer *w;
    int err = 0;

    if (!out)
        return tsnap_set_error(TSNAP_EINVAL, "invalid argument: out != NULL");
    *out = NULL;
    if (!(w = calloc(1, sizeof *w)))
        return tsnap_set_error(TSNAP_ENOMEM, "out of memory");
    if ((err = tm_comm_dup(comm, &w->comm, &w->rank, &w->size)) < 0) {
        free(w);
        return err;
    }
    if (opts)
        w->opts = *opts;
    else
        tsnap_write_options_init(&w->opts, TSNAP_WRITE_OPTIONS_VERSION);
    if (!path || !*path)
        err = tm_fail(TSNAP_EINVAL, msg, sizeof msg, "invalid argument: the path is NULL or empty");
    else if (!(w->path = strdup(path)) ||
             (w->opts.producer && !(w->producer = strdup(w->opts.producer))))
        err = tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "%s: out of memory", path);
    w->opts.producer = w->producer;
    if (w->rank == 0 && err == 0) {
        tm_new_id(w->id);
        memcpy(extra, w->id, sizeof extra);
        if ((err = tsnap_writer_create(&w->snap, path, &w->opts)) < 0 ||
            (err = tm_make_save_dir(path, w->id)) < 0)
            snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
    }
    /* rank 0's outcome decides; a failure elsewhere (out of memory) is
     * kept and fails the commit */
    if (w->rank != 0 && err < 0)
        failed(w, err);
    err = tm_outcome(w->comm, w->rank == 0 ? err : 0, msg, extra, sizeof extra);
    if (err < 0) {
        snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
        w->finished = true;
        tsnap_mpi_writer_free(w);
        return tsnap_set_error(err, msg);
    }
    memcpy(w->id, extra, sizeof w->id);
    w->id[TM_ID_LEN] = '\0';
    *out = w;
    return 0;
}

/* The entry of `name`, or NULL. */
static tm_entry *find(tsnap_mpi_writer *w, const char *name)
{
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0)
            return &w->e[i];
    return NULL;
}

/* Records the tensor's metadata for the agreement. */
static int add_entry(tsnap_mpi_writer *w, const char *name, const DLTensor *t,
                     const int64_t *shape, const int64_t *offset, tm_entry **out)
{
    char msg[TM_MSG_LEN];
    tm_entry e;
    int err;

    if ((err = tm_entry_init(&e, w->path, name, t, shape, offset)) < 0)
        return err;
    if (find(w, name)) {
        tm_entry_clear(&e);
        return tm_fail(TSNAP_EEXISTS, msg, sizeof msg, "%s: tensor '%s': put twice", w->path,
                       name);
    }
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 16;
        tm_entry *grown = realloc(w->e, cap * sizeof *grown);
        if (!grown) {
            tm_entry_clear(&e);
            return tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "%s: out of memory", w->path);
        }
        w->e = grown;
        w->cap = cap;
    }
    w->e[w->n] = e;
    *out = &w->e[w->n++];
    return 0;
}

/* A writer that takes puts: 0, or the error (not the writer's failure). */
static int usable(const tsnap_mpi_writer *w)
{
    if (!w)
        return tsnap_set_error(TSNAP_EINVAL, "invalid argument: w != NULL");
    if (w->finished)
        return tsnap_set_error(TSNAP_ESTATE, "the distributed writer is finished");
    return 0;
}

int tsnap_mpi_writer_put_block(tsnap_mpi_writer *w, const char *name, const DLTensor *block,
                               const int64_t *shape, const int64_t *offset, void *cuda_stream)
{
    tm_entry *e;
    int err;

    if ((err = usable(w)) < 0)
        return err;
    if (!shape)
        return failed(w, tsnap_set_error(TSNAP_EINVAL, "invalid argument: shape != NULL"));
    if ((err = add_entry(w, name, block, shape, offset, &e)) < 0)
        return failed(w, err);
    if (tm_block_empty(e))
        return 0;
    if (!w->part) {
        char *file = tm_part_file(w->path, w->id, w->rank, false);
        if (!file)
            return failed(w, tsnap_set_error(TSNAP_ENOMEM, "out of memory"));
        err = tsnap_writer_create(&w->part, file, &w->opts);
        free(file);
        if (err < 0)
            return failed(w, err);
    }
    return failed(w, tsnap_writer_put_stream(w->part, name, block, cuda_stream));
}

int tsnap_mpi_writer_put(tsnap_mpi_writer *w, const char *name, const DLTensor *tensor,
                         void *cuda_stream)
{
    tm_entry *e;
    int err;

    if ((err = usable(w)) < 0)
        return err;
    if ((err = add_entry(w, name, tensor, NULL, NULL, &e)) < 0)
        return failed(w, err);
    if (w->rank == 0)
        return failed(w, tsnap_writer_put_stream(w->snap, name, tensor, cuda_stream));
    return 0;
}

/* Copies the host tensor `v` (any strides) into a C-order buffer. */
static void copy_strided(char *dst, const char *src, const DLTensor *v, size_t esize, int d,
                         size_t *k)
{
    for (int64_t i = 0; i < v->shape[d]; i++) {
        int64_t stride = v->strides ? v->strides[d] : 1;
        if (!v->strides)
            for (int j = d + 1; j < v->ndim; j++)
                stride *= v->shape[j];
        const char *p = src + i * stride * (int64_t)esize;
        if (d == v->ndim - 1) {
            memcpy(dst + *k * esize, p, esize);
            (*k)++;
        } else {
            copy_strided(dst, p, v, esize, d + 1, k);
        }
    }
}

static int keep_attr(tsnap_mpi_writer *w, const char *tensor, const char *key,
                     const DLTensor *value, const char *string)
{
    char msg[TM_MSG_LEN];
    tsnap_dtype dtype;
    tm_attr *grown = realloc(w->attrs, (w->nattrs + 1) * sizeof *grown);
    if (!grown)
        return tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "%s: out of memory", w->path);
    w->attrs = grown;
    tm_attr *a = &w->attrs[w->nattrs++];
    memset(a, 0, sizeof *a);
    if (!(a->tensor = strdup(tensor)) || !(a->key = strdup(key)) ||
        (string && !(a->string = strdup(string))))
        return tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "%s: out of memory", w->path);
    if (string)
        return 0;
    if (!value || value->ndim < 0 || value->ndim > TSNAP_MAX_NDIM ||
        (value->ndim && !value->shape) || tsnap_dtype_from_dlpack(&dtype, value->dtype) < 0 ||
        value->device.device_type != kDLCPU)
        return tm_fail(TSNAP_EINVAL, msg, sizeof msg,
                       "%s: tensor '%s': attribute '%s': not a host tensor of a tsnap dtype",
                       w->path, tensor, key);
    size_t esize = tsnap_dtype_size(dtype), count = 1;
    for (int d = 0; d < value->ndim; d++) {
        if (value->shape[d] < 0 || value->shape[d] > (1 << 16))
            return tm_fail(TSNAP_EINVAL, msg, sizeof msg,
                           "%s: tensor '%s': attribute '%s': a bad shape", w->path, tensor, key);
        a->shape[d] = value->shape[d];
        count *= (size_t)value->shape[d];
    }
    if (count * esize > ((size_t)64 << 10))
        return tm_fail(TSNAP_EINVAL, msg, sizeof msg,
                       "%s: tensor '%s': attribute '%s' is larger than 64 KiB", w->path, tensor,
                       key);
    if (!(a->data = malloc(count * esize + 1)))
        return tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "%s: out of memory", w->path);
    const char *src = (const char *)value->data + value->byte_offset;
    if (value->ndim == 0) {
        memcpy(a->data, src, esize);
    } else if (count) {
        size_t k = 0;
        copy_strided(a->data, src, value, esize, 0, &k);
    }
    a->value = *value;
    a->value.data = a->data;
    a->value.byte_offset = 0;
    a->value.strides = NULL;
    a->value.shape = a->shape;
    return 0;
}

static int set_attr(tsnap_mpi_writer *w, const char *tensor, const char *key,
                    const DLTensor *value, const char *string)
{
    char msg[TM_MSG_LEN];
    const tm_entry *e = NULL;
    int err;

    if ((err = usable(w)) < 0)
        return err;
    if (!key || !*key)
        return failed(w, tm_fail(TSNAP_EINVAL, msg, sizeof msg, "%s: an attribute has no key",
                                 w->path));
    if (tensor && *tensor && !(e = find(w, tensor)))
        return failed(w, tm_fail(TSNAP_ENOTFOUND, msg, sizeof msg,
                                 "%s: tensor '%s': no such tensor put yet (attribute '%s')",
                                 w->path, tensor, key));
    if (w->rank != 0)
        return 0;
    if (e && !e->replicated)
        return failed(w, keep_attr(w, tensor, key, value, string));
    return failed(w, string ? tsnap_writer_set_attr_string(w->snap, tensor, key, string)
                            : tsnap_writer_set_attr(w->snap, tensor, key, value));
}

int tsnap_mpi_writer_set_attr(tsnap_mpi_writer *w, const char *tensor, const char *key,
                              const DLTensor *value)
{
    return set_attr(w, tensor, key, value, NULL);
}

int tsnap_mpi_writer_set_attr_string(tsnap_mpi_writer *w, const char *tensor, const char *key,
                                     const char *value)
{
    if (!value)
        return w ? failed(w, tsnap_set_error(TSNAP_EINVAL, "invalid argument: value != NULL"))
                 : tsnap_set_error(TSNAP_EINVAL, "invalid argument: w != NULL");
    return set_attr(w, tensor, key, NULL, value);
}

/* Rank 0, everything agreed: the snapshot file. */
static int write_snapshot(tsnap_mpi_writer *w, const tm_tensor *plan, size_t count)
{
    int err = tm_put_virtuals(w->snap, w->path, w->id, plan, count);
    for (size_t i = 0; i < w->nattrs && err == 0; i++) {
        const tm_attr *a = &w->attrs[i];
        err = a->string ? tsnap_writer_set_attr_string(w->snap, a->tensor, a->key, a->string)
                        : tsnap_writer_set_attr(w->snap, a->tensor, a->key, &a->value);
    }
    if (err == 0)
        err = tm_sync_parts(w->path);
    if (err == 0)
        err = tsnap_writer_commit(w->snap);
    return err;
}

int tsnap_mpi_writer_commit(tsnap_mpi_writer *w)
{
    char msg[TM_MSG_LEN] = "";
    tm_record mine = {0}, *recs = NULL;
    tm_tensor *plan = NULL;
    size_t count = 0;
    int err = 0;

    if ((err = usable(w)) < 0)
        return err;
    w->finished = true;
    /* this rank's part, durable before the agreement */
    if (w->part && w->err == 0)
        failed(w, tsnap_writer_commit(w->part));
    else if (w->part)
        tsnap_writer_abort(w->part);
    mine.err = w->err;
    snprintf(mine.msg, sizeof mine.msg, "%s", w->msg);
    mine.n = w->n;
    mine.e = w->e;
    if ((err = tm_gather(w->comm, &mine, true, &recs)) < 0)
        snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
    if (w->rank == 0) {
        if (err == 0)
            err = tm_first_failure(recs, w->size, msg, sizeof msg, NULL);
        if (err == 0 && (err = tm_plan(w->path, recs, w->size, &plan, &count)) < 0)
            snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
        if (err == 0 && (err = write_snapshot(w, plan, count)) < 0)
            snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
        if (err < 0) {
            /* no file left once any rank returns */
            tsnap_writer_abort(w->snap);
            tm_settle_parts(w->path, w->id, err);
        }
    }
    tm_plan_free(plan, count);
    tm_records_free(recs, recs ? w->size : 0);
    int outcome = tm_outcome(w->comm, err, msg, NULL, 0);
    /* committed: what PATH referred to before goes, the others need not wait */
    if (w->rank == 0 && err == 0)
        tm_settle_parts(w->path, w->id, 0);
    return outcome;
}

void tsnap_mpi_writer_free(tsnap_mpi_writer *w)
{
    if (!w)
        return;
    tsnap_writer_free(w->part);
    tsnap_writer_free(w->snap);
    if (!w->finished && w->rank == 0 && w->path) {
        /* only what is empty by now: the other ranks free their own */
        char *save = tm_save_dir(w->path, w->id), *parts = tm_parts_dir(w->path);
        if (save)
            rmdir(save);
        if (parts)
            rmdir(parts);
        free(save);
        free(parts);
    }
    for (size_t i = 0; i < w->nattrs; i++) {
        free(w->attrs[i].tensor);
        free(w->attrs[i].key);
        free(w->attrs[i].string);
        free(w->attrs[i].data);
    }
    free(w->attrs);
    tm_entries_free(w->e, w->n);
    if (w->comm != MPI_COMM_NULL)
        MPI_Comm_free(&w->comm);
    free(w->producer);
    free(w->path);
    free(w);
}

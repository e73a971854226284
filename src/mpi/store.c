/*
 * store.c - the distributed store: tsnap's store, opened with hooks on
 * every rank, whose steps are distributed snapshots.
 *
 * A save: the blocks are checked on the caller's thread (one gather, one
 * broadcast, before anything is written; rank 0 keeps the plan and draws
 * the save id); then each rank hands its nonempty blocks (rank 0 also the
 * replicated tensors) to its own tsnap_store, which stages them and calls
 * the hook, in the order of the saves, on its background thread (or on
 * the caller's, for a waiting save).  The hook writes this rank's part
 * file and runs the agreement on a communicator of its own; rank 0's
 * writes the snapshot file through tsnap_store_begin / tsnap_store_commit
 * (so keep_last deletes old steps, parts included, once the new one is
 * committed).
 *
 * Failures: each save has a sequence number, the same on every rank.  The
 * hook's outcome is agreed, so every rank records the same failures; the
 * next save or wait reports the oldest one not reported yet, chosen by
 * rank 0 from what every rank has seen by then, so that all ranks return
 * it at the same call.  The hook itself never fails the core store: its
 * own error path would report on one rank before another.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include "mpi_internal.h"

/* One agreed save on its way to the hook. */
typedef struct item {
    int64_t seq, step;
    char id[TM_ID_LEN + 1];
    tm_entry *e; /* this rank's tensors, in the order handed to the store */
    size_t n;
    tm_record *recs; /* rank 0: everyone's blocks, and the plan made of them */
    int nrecs;
    tm_tensor *plan;
    size_t count;
    int err; /* a failure of this rank after the check (staging) */
    char msg[TM_MSG_LEN];
    struct item *next;
} item;

typedef struct failure {
    int64_t seq;
    int err;
    char msg[TM_MSG_LEN];
} failure;

struct tsnap_mpi_store {
    MPI_Comm comm; /* the caller's collectives: checks, listings, waits */
    MPI_Comm bg;   /* the hooks' agreements */
    int rank, size;
    bool multiple; /* MPI_THREAD_MULTIPLE: saves may run in the background */
    tsnap_store *core;
    char *dir;
    tsnap_write_options wopts; /* how the part files are written */
    bool writable;
    char *producer;
    pthread_mutex_t mu;
    item *head, *tail;
    int64_t seq;       /* saves agreed so far */
    int64_t reported;  /* failures of saves up to this one were returned */
    failure *failures; /* recorded by the hook, not returned yet, by seq */
    size_t nfailures;
};

static void item_free(item *it)
{
    if (!it)
        return;
    tm_entries_free(it->e, it->n);
    tm_plan_free(it->plan, it->count);
    tm_records_free(it->recs, it->nrecs);
    free(it);
}

/* The oldest failure not returned yet (0: none), under the lock. */
static int oldest_failure(tsnap_mpi_store *s, int64_t upto, tm_record *rec)
{
    int err = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nfailures; i++)
        if (s->failures[i].seq > s->reported && s->failures[i].seq <= upto) {
            rec->err = err = s->failures[i].err;
            rec->seq = s->failures[i].seq;
            rec->shared = 1;
            snprintf(rec->msg, sizeof rec->msg, "%s", s->failures[i].msg);
            break;
        }
    pthread_mutex_unlock(&s->mu);
    return err;
}

/* Failures of saves up to `seq` are returned: forget them. */
static void mark_reported(tsnap_mpi_store *s, int64_t seq)
{
    size_t kept = 0;
    pthread_mutex_lock(&s->mu);
    if (seq > s->reported)
        s->reported = seq;
    for (size_t i = 0; i < s->nfailures; i++)
        if (s->failures[i].seq > s->reported)
            s->failures[kept++] = s->failures[i];
    s->nfailures = kept;
    pthread_mutex_unlock(&s->mu);
}

static void record_failure(tsnap_mpi_store *s, int64_t seq, int err, const char *msg)
{
    pthread_mutex_lock(&s->mu);
    failure *grown = realloc(s->failures, (s->nfailures + 1) * sizeof *grown);
    if (grown) { /* out of memory: the step is still not listed */
        s->failures = grown;
        failure *f = &s->failures[s->nfailures++];
        f->seq = seq;
        f->err = err;
        snprintf(f->msg, sizeof f->msg, "%s", msg);
    }
    pthread_mutex_unlock(&s->mu);
}

/* Collective on s->comm: every rank's oldest unreported failure up to
 * save `upto`; the same one returned everywhere, then forgotten. */
static int report_failures(tsnap_mpi_store *s, int64_t upto)
{
    tm_record mine = {0}, *recs = NULL;
    char msg[TM_MSG_LEN] = "", extra[sizeof(int64_t)];
    int64_t seq = 0;
    int err;

    oldest_failure(s, upto, &mine);
    if ((err = tm_gather(s->comm, &mine, false, &recs)) < 0)
        snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
    else if (s->rank == 0)
        err = tm_first_failure(recs, s->size, msg, sizeof msg, &seq);
    tm_records_free(recs, recs ? s->size : 0);
    memcpy(extra, &seq, sizeof seq);
    err = tm_outcome(s->comm, err, msg, extra, sizeof extra);
    memcpy(&seq, extra, sizeof seq);
    if (err < 0 && seq > 0) {
        snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
        mark_reported(s, seq);
        tsnap_set_error(err, msg);
    }
    return err;
}

/* ---- the hook ------------------------------------------------------- */

/* The tensors of save `it` this rank hands to its store, in order: its
 * nonempty blocks, and on rank 0 the replicated tensors. */
static bool handed(const tsnap_mpi_store *s, const tm_entry *e)
{
    return e->replicated ? s->rank == 0 : !tm_block_empty(e);
}

/* This rank's part file of the step: its nonempty blocks. */
static int write_part(tsnap_mpi_store *s, const char *path, const item *it,
                      const DLTensor *tensors, size_t n)
{
    tsnap_writer *w = NULL;
    char *file = NULL;
    size_t k = 0;
    int err = 0;
    bool any = false;

    for (size_t i = 0; i < it->n; i++)
        any |= !it->e[i].replicated && !tm_block_empty(&it->e[i]);
    if (!any)
        return 0;
    if ((err = tm_make_save_dir(path, it->id)) < 0)
        return err;
    if (!(file = tm_part_file(path, it->id, s->rank, false)))
        return tsnap_set_error(TSNAP_ENOMEM, "out of memory");
    err = tsnap_writer_create(&w, file, &s->wopts);
    for (size_t i = 0; i < it->n && err == 0; i++) {
        if (!handed(s, &it->e[i]))
            continue;
        if (k >= n) {
            err = tsnap_set_error(TSNAP_ESTATE, "the store handed fewer tensors than were saved");
            break;
        }
        if (!it->e[i].replicated)
            err = tsnap_writer_put(w, it->e[i].name, &tensors[k]);
        k++;
    }
    if (err == 0)
        err = tsnap_writer_commit(w);
    tsnap_writer_free(w);
    free(file);
    return err;
}

/* Rank 0, while the parts are written: the snapshot file of the step
 * begun, with its replicated tensors and root attributes. */
static int start_snapshot(tsnap_mpi_store *s, tsnap_store *core, const item *it,
                          const DLTensor *tensors, size_t n, const tsnap_store_attr *attrs,
                          size_t nattrs, tsnap_writer **w)
{
    size_t k = 0;
    int err = tsnap_store_begin(core, it->step, w);
    for (size_t i = 0; i < it->n && err == 0; i++) {
        if (!handed(s, &it->e[i]))
            continue;
        if (k >= n)
            err = tsnap_set_error(TSNAP_ESTATE, "the store handed fewer tensors than were saved");
        else if (it->e[i].replicated)
            err = tsnap_writer_put(*w, it->e[i].name, &tensors[k]);
        k++;
    }
    for (size_t i = 0; i < nattrs && err == 0; i++)
        err = attrs[i].string ? tsnap_writer_set_attr_string(*w, NULL, attrs[i].key, attrs[i].string)
                              : tsnap_writer_set_attr(*w, NULL, attrs[i].key, attrs[i].value);
    return err;
}

/* Rank 0, every part durable and every block checked: the virtual
 * datasets, and the commit through the core store (keep_last included). */
static int finish_snapshot(tsnap_store *core, const char *path, const item *it, tsnap_writer *w)
{
    int err = tm_put_virtuals(w, path, it->id, it->plan, it->count);
    if (err == 0)
        err = tm_sync_parts(path);
    if (err == 0)
        err = tsnap_store_commit(core, w);
    return err;
}

static int hook(void *ctx, tsnap_store *core, int64_t step, const char *const *names,
                const DLTensor *tensors, size_t n, const tsnap_store_attr *attrs, size_t nattrs)
{
    tsnap_mpi_store *s = ctx;
    char path[4096], msg[TM_MSG_LEN] = "";
    tm_record mine = {0}, *recs = NULL;
    tsnap_writer *w = NULL;
    item *it;
    int err = 0;

    (void)names;
    pthread_mutex_lock(&s->mu);
    it = s->head;
    if (it) {
        s->head = it->next;
        if (!s->head)
            s->tail = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    if (!it || it->step != step) /* cannot happen: every save queues its item first */
        return tsnap_set_error(TSNAP_ESTATE, "a distributed save lost its plan");
    err = it->err;
    snprintf(msg, sizeof msg, "%s", it->msg);
    int path_err = tsnap_store_path(core, step, path, sizeof path);
    if (err == 0 && (err = path_err) < 0)
        snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
    if (err == 0 && s->rank == 0 &&
        (err = start_snapshot(s, core, it, tensors, n, attrs, nattrs, &w)) < 0)
        snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
    if (err == 0 && (err = write_part(s, path, it, tensors, n)) < 0)
        snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
    mine.err = err;
    mine.seq = it->seq;
    snprintf(mine.msg, sizeof mine.msg, "%s", msg);
    if ((err = tm_gather(s->bg, &mine, false, &recs)) < 0)
        snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
    if (s->rank == 0) {
        if (err == 0)
            err = tm_first_failure(recs, s->size, msg, sizeof msg, NULL);
        if (err == 0 && (err = finish_snapshot(core, path, it, w)) < 0)
            snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
        tsnap_writer_free(w); /* a snapshot not committed is discarded */
        if (err < 0 && path_err == 0)
            tm_settle_parts(path, it->id, err); /* no file left once any rank returns */
    }
    tm_records_free(recs, recs ? s->size : 0);
    int outcome = tm_outcome(s->bg, err, msg, NULL, 0);
    if (outcome < 0)
        record_failure(s, it->seq, outcome, tsnap_errmsg());
    else if (s->rank == 0)
        tm_settle_parts(path, it->id, 0); /* stale save folders of this step */
    item_free(it);
    return 0;
}

/* ---- opening -------------------------------------------------------- */

/* Rank 0, holding the lock: what failed or killed saves left.  A parts
 * folder whose snapshot is missing goes; so do the save folders a
 * snapshot does not refer to. */
static void remove_leftovers(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        char path[4096], parts[4200], id[TM_ID_LEN + 1];
        if (strncmp(e->d_name, "step-", 5) != 0 || len < 9 ||
            strcmp(e->d_name + len - 9, ".h5.parts") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%.*s", dir, (int)(len - 6), e->d_name);
        snprintf(parts, sizeof parts, "%s/%s", dir, e->d_name);
        if (access(path, F_OK) != 0) {
            tm_clean_parts(path, NULL);
            continue;
        }
        DIR *p = opendir(parts);
        int saves = 0;
        struct dirent *f;
        while (p && (f = readdir(p)))
            saves += strcmp(f->d_name, ".") != 0 && strcmp(f->d_name, "..") != 0;
        if (p)
            closedir(p);
        if (saves > 1 && tm_referred_save(path, id))
            tm_clean_parts(path, id);
    }
    closedir(d);
}

int tsnap_mpi_store_open(tsnap_mpi_store **out, MPI_Comm comm, const char *dir,
                         const tsnap_store_options *opts)
{
    static const tsnap_store_options defaults = TSNAP_STORE_OPTIONS_INIT;
    char msg[TM_MSG_LEN] = "";
    tsnap_mpi_store *s;
    int err = 0, level = MPI_THREAD_SINGLE;

    if (!out)
        return tsnap_set_error(TSNAP_EINVAL, "invalid argument: out != NULL");
    *out = NULL;
    if (!(s = calloc(1, sizeof *s)))
        return tsnap_set_error(TSNAP_ENOMEM, "out of memory");
    s->comm = s->bg = MPI_COMM_NULL;
    pthread_mutex_init(&s->mu, NULL);
    if ((err = tm_comm_dup(comm, &s->comm, &s->rank, &s->size)) < 0 ||
        (err = tm_comm_dup(comm, &s->bg, &s->rank, &s->size)) < 0) {
        snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
        tsnap_mpi_store_free(s);
        return tsnap_set_error(err, msg);
    }
    s->multiple = MPI_Query_thread(&level) == MPI_SUCCESS && level >= MPI_THREAD_MULTIPLE;
    tsnap_store_options o = opts ? *opts : defaults;
    s->wopts = o.write;
    s->writable = o.writable != 0;
    if (!dir || !*dir)
        err = tm_fail(TSNAP_EINVAL, msg, sizeof msg, "invalid argument: the directory is NULL or empty");
    else if (!(s->dir = strdup(dir)) ||
             (o.write.producer && !(s->producer = strdup(o.write.producer))))
        err = tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "%s: out of memory", dir);
    s->wopts.producer = s->producer;
    tsnap_store_hooks hooks = {hook, s, 1};
    /* rank 0 first: it makes the directory, takes the lock, cleans up */
    if (s->rank == 0 && err == 0) {
        if ((err = tsnap_store_open_hooked(&s->core, dir, &o, &hooks)) < 0)
            snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
        else if (o.writable)
            remove_leftovers(dir);
    }
    if ((err = tm_outcome(s->comm, s->rank == 0 ? err : 0, msg, NULL, 0)) == 0) {
        hooks.lock = 0;
        if (s->rank != 0 && (err = tsnap_store_open_hooked(&s->core, dir, &o, &hooks)) < 0)
            snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
        err = tm_agree(s->comm, s->rank != 0 ? err : 0, msg);
    }
    if (err < 0) {
        snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
        tsnap_store_free(s->core);
        s->core = NULL;
        tsnap_mpi_store_free(s);
        return tsnap_set_error(err, msg);
    }
    *out = s;
    return 0;
}

void tsnap_mpi_store_free(tsnap_mpi_store *s)
{
    if (!s)
        return;
    if (s->core) {
        tsnap_mpi_store_wait(s); /* collective: every rank's saves end together */
        tsnap_store_free(s->core);
    }
    while (s->head) {
        item *next = s->head->next;
        item_free(s->head);
        s->head = next;
    }
    free(s->failures);
    if (s->comm != MPI_COMM_NULL)
        MPI_Comm_free(&s->comm);
    if (s->bg != MPI_COMM_NULL)
        MPI_Comm_free(&s->bg);
    pthread_mutex_destroy(&s->mu);
    free(s->producer);
    free(s->dir);
    free(s);
}

/* ---- saving --------------------------------------------------------- */

/* Rank 0: the agreed plan of a save, or the refusal. */
static int plan_save(tsnap_mpi_store *s, int64_t step, item *it, char *msg, size_t len)
{
    char path[4096];
    int err;
    if ((err = tsnap_store_path(s->core, step, path, sizeof path)) < 0 ||
        (err = tm_plan(path, it->recs, s->size, &it->plan, &it->count)) < 0) {
        snprintf(msg, len, "%s", tsnap_errmsg());
        return err;
    }
    if (access(path, F_OK) == 0)
        return tm_fail(TSNAP_EEXISTS, msg, len, "%s: step %lld is committed already", path,
                       (long long)step);
    return 0;
}

int tsnap_mpi_store_save(tsnap_mpi_store *s, int64_t step, const tsnap_mpi_tensor *tensors,
                         size_t n, const tsnap_store_attr *attrs, size_t nattrs, int wait)
{
    char msg[TM_MSG_LEN] = "", extra[TM_ID_LEN + 1 + sizeof(int64_t)];
    tm_record mine = {0};
    const char **names = NULL;
    DLTensor *ts = NULL;
    item *it = NULL;
    int64_t chosen = 0;
    int err = 0;

    if (!s)
        return tsnap_set_error(TSNAP_EINVAL, "invalid argument: s != NULL");
    if (!(it = calloc(1, sizeof *it)) || (n && !(it->e = calloc(n, sizeof *it->e))) ||
        !(names = calloc(n ? n : 1, sizeof *names)) || !(ts = calloc(n ? n : 1, sizeof *ts)))
        err = tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "%s: out of memory", s->dir);
    else if (!s->writable)
        err = tm_fail(TSNAP_ESTATE, msg, sizeof msg, "%s: the store was opened read only", s->dir);
    else if (step < 0)
        err = tm_fail(TSNAP_EINVAL, msg, sizeof msg, "%s: step %lld is negative", s->dir,
                      (long long)step);
    else if (n && !tensors)
        err = tm_fail(TSNAP_EINVAL, msg, sizeof msg, "invalid argument: tensors != NULL");
    for (size_t i = 0; i < n && err == 0; i++, it->n++) {
        if ((err = tm_entry_init(&it->e[i], s->dir, tensors[i].name, tensors[i].tensor,
                                 tensors[i].shape, tensors[i].offset)) < 0) {
            snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
            break;
        }
        for (size_t j = 0; j < i && err == 0; j++)
            if (strcmp(it->e[j].name, it->e[i].name) == 0)
                err = tm_fail(TSNAP_EEXISTS, msg, sizeof msg, "%s: tensor '%s': given twice",
                              s->dir, it->e[i].name);
    }
    /* a failure of an earlier save comes first; then this one's check */
    if (oldest_failure(s, s->seq, &mine) == 0) {
        mine.err = err;
        mine.seq = s->seq + 1;
        snprintf(mine.msg, sizeof mine.msg, "%s", msg);
        mine.n = err == 0 && it ? it->n : 0;
        mine.e = mine.n ? it->e : NULL;
    }
    tm_record *recs = NULL;
    if ((err = tm_gather(s->comm, &mine, true, &recs)) < 0)
        snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
    if (it) {
        it->recs = recs;
        it->nrecs = recs ? s->size : 0;
    } else {
        tm_records_free(recs, recs ? s->size : 0);
    }
    if (s->rank == 0) {
        if (err == 0 && !it)
            err = tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "%s: out of memory", s->dir);
        if (err == 0)
            err = tm_first_failure(it->recs, s->size, msg, sizeof msg, &chosen);
        if (err == 0 && (err = plan_save(s, step, it, msg, sizeof msg)) < 0)
            chosen = 0;
        tm_new_id(extra);
        memcpy(extra + TM_ID_LEN + 1, &chosen, sizeof chosen);
    }
    err = tm_outcome(s->comm, err, msg, extra, sizeof extra);
    if (err < 0) {
        memcpy(&chosen, extra + TM_ID_LEN + 1, sizeof chosen);
        snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
        if (chosen > 0 && chosen <= s->seq)
            mark_reported(s, chosen);
        item_free(it);
        free(names);
        free(ts);
        return tsnap_set_error(err, msg);
    }
    memcpy(it->id, extra, TM_ID_LEN);
    it->id[TM_ID_LEN] = '\0';
    it->seq = ++s->seq;
    it->step = step;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (handed(s, &it->e[i])) {
            names[k] = tensors[i].name;
            ts[k++] = *tensors[i].tensor;
        }
    pthread_mutex_lock(&s->mu);
    if (s->tail)
        s->tail->next = it;
    else
        s->head = it;
    s->tail = it;
    pthread_mutex_unlock(&s->mu);
    bool waits = wait || !s->multiple;
    if ((err = tsnap_store_save(s->core, step, names, ts, k, s->rank == 0 ? attrs : NULL,
                                s->rank == 0 ? nattrs : 0, waits)) < 0) {
        /* this rank cannot stage its blocks: it still takes part in the
         * step's agreement, failing it everywhere */
        it->err = err;
        snprintf(it->msg, sizeof it->msg, "%s", tsnap_errmsg());
        tsnap_store_wait(s->core);
        hook(s, s->core, step, NULL, NULL, 0, NULL, 0);
    }
    free(names);
    free(ts);
    if (!waits)
        return 0;
    return report_failures(s, s->seq);
}

int tsnap_mpi_store_wait(tsnap_mpi_store *s)
{
    if (!s)
        return tsnap_set_error(TSNAP_EINVAL, "invalid argument: s != NULL");
    tsnap_store_wait(s->core);
    return report_failures(s, s->seq);
}

/* ---- listing -------------------------------------------------------- */

/* Collective: rank 0's listing, on every rank (malloc'ed into *out). */
static int list_steps(tsnap_mpi_store *s, int64_t **out, size_t *count)
{
    char msg[TM_MSG_LEN] = "";
    int64_t *all = NULL, n = 0;
    int err = 0;

    *out = NULL;
    *count = 0;
    if (s->rank == 0) {
        size_t have = 0, room = 64;
        for (;;) {
            int64_t *grown = realloc(all, room * sizeof *all);
            if (!grown) {
                err = tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "%s: out of memory", s->dir);
                break;
            }
            all = grown;
            if ((err = tsnap_store_steps(s->core, all, room, &have)) < 0) {
                snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
                break;
            }
            if (have <= room)
                break;
            room = have + 64; /* steps came meanwhile */
        }
        n = err == 0 ? (int64_t)have : 0;
    }
    if ((err = tm_outcome(s->comm, err, msg, (char *)&n, sizeof n)) < 0 || n == 0) {
        free(all);
        return err;
    }
    if (s->rank != 0 && !(all = malloc((size_t)n * sizeof *all))) {
        /* cannot take part: the job ends here rather than hang */
        MPI_Abort(s->comm, 1);
    }
    if (MPI_Bcast(all, (int)n, MPI_INT64_T, 0, s->comm) != MPI_SUCCESS) {
        free(all);
        return tsnap_set_error(TSNAP_EIO, "MPI_Bcast failed");
    }
    *out = all;
    *count = (size_t)n;
    return 0;
}

int tsnap_mpi_store_steps(tsnap_mpi_store *s, int64_t *steps, size_t cap, size_t *count)
{
    int64_t *all;
    size_t n;
    int err;

    if (!s || !count || (cap && !steps))
        return tsnap_set_error(TSNAP_EINVAL, "invalid argument: s, count or steps is NULL");
    if ((err = list_steps(s, &all, &n)) < 0)
        return err;
    if (cap && n)
        memcpy(steps, all, (n < cap ? n : cap) * sizeof *all);
    *count = n;
    free(all);
    return 0;
}

int tsnap_mpi_store_latest(tsnap_mpi_store *s, int64_t *step)
{
    char msg[TM_MSG_LEN];
    int64_t *all;
    size_t n;
    int err;

    if (!s || !step)
        return tsnap_set_error(TSNAP_EINVAL, "invalid argument: s or step is NULL");
    if ((err = list_steps(s, &all, &n)) < 0)
        return err;
    if (n == 0)
        err = tm_fail(TSNAP_ENOTFOUND, msg, sizeof msg, "%s: the store has no steps yet", s->dir);
    else
        *step = all[n - 1];
    free(all);
    return err;
}

int tsnap_mpi_store_path(const tsnap_mpi_store *s, int64_t step, char *buf, size_t len)
{
    if (!s)
        return tsnap_set_error(TSNAP_EINVAL, "invalid argument: s != NULL");
    return tsnap_store_path(s->core, step, buf, len);
}

/*
 * commit.c - the agreement, the snapshot file and the parts folders.
 *
 * One agreement per commit: every rank's record (its status, its message
 * when it failed, and, where rank 0 has not seen them yet, its blocks)
 * goes to rank 0 in one gather; rank 0 decides, writes the snapshot file
 * if everything holds, and broadcasts the outcome, so that every rank
 * returns the same code and message.
 *
 * Layout: the parts of a snapshot PATH lie in PATH.parts/<save id>/, one
 * file per rank that holds a nonempty block (rank-000003.h5); the save id
 * is fresh for each save, so that overwriting PATH swaps folders with one
 * rename and a failed or killed save never touches the committed one.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mpi_internal.h"

static int mpi_failed(int rc, const char *call)
{
    char text[MPI_MAX_ERROR_STRING], msg[TM_MSG_LEN];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "error %d", rc);
    return tm_fail(TSNAP_EIO, msg, sizeof msg, "%s failed: %s", call, text);
}

int tm_comm_dup(MPI_Comm comm, MPI_Comm *out, int *rank, int *size)
{
    int rc;
    *out = MPI_COMM_NULL;
    if ((rc = MPI_Comm_dup(comm, out)) != MPI_SUCCESS)
        return mpi_failed(rc, "MPI_Comm_dup");
    if ((rc = MPI_Comm_rank(*out, rank)) != MPI_SUCCESS ||
        (rc = MPI_Comm_size(*out, size)) != MPI_SUCCESS) {
        MPI_Comm_free(out);
        return mpi_failed(rc, "MPI_Comm_rank");
    }
    return 0;
}

/* ---- packing records ------------------------------------------------ */

typedef struct buf {
    char *p;
    size_t len, cap;
    bool failed;
} buf;

static void put(buf *b, const void *data, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        char *grown = realloc(b->p, cap);
        if (!grown) {
            b->failed = true;
            return;
        }
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put_i32(buf *b, int32_t v) { put(b, &v, sizeof v); }
static void put_i64(buf *b, int64_t v) { put(b, &v, sizeof v); }
static void put_str(buf *b, const char *s)
{
    uint32_t n = (uint32_t)strlen(s);
    put(b, &n, sizeof n);
    put(b, s, n);
}

typedef struct reader {
    const char *p, *end;
    bool failed;
} reader;

static void get(reader *r, void *out, size_t n)
{
    if (r->failed || (size_t)(r->end - r->p) < n) {
        r->failed = true;
        memset(out, 0, n);
        return;
    }
    memcpy(out, r->p, n);
    r->p += n;
}

static int32_t get_i32(reader *r)
{
    int32_t v;
    get(r, &v, sizeof v);
    return v;
}

static int64_t get_i64(reader *r)
{
    int64_t v;
    get(r, &v, sizeof v);
    return v;
}

/* A string of at most `cap` - 1 bytes into out, or malloc'ed when out is NULL. */
static char *get_str(reader *r, char *out, size_t cap)
{
    uint32_t n = 0;
    get(r, &n, sizeof n);
    if (r->failed || (size_t)(r->end - r->p) < n) {
        r->failed = true;
        return NULL;
    }
    if (!out) {
        if (!(out = malloc((size_t)n + 1))) {
            r->failed = true;
            return NULL;
        }
        cap = (size_t)n + 1;
    }
    size_t k = n < cap ? n : cap - 1;
    memcpy(out, r->p, k);
    out[k] = '\0';
    r->p += n;
    return out;
}

static void pack(buf *b, const tm_record *rec, bool entries)
{
    size_t n = entries ? rec->n : 0;
    put_i32(b, rec->err);
    put_i32(b, rec->shared);
    put_i64(b, rec->seq);
    put_str(b, rec->err < 0 ? rec->msg : "");
    put_i64(b, (int64_t)n);
    for (size_t i = 0; i < n; i++) {
        const tm_entry *e = &rec->e[i];
        put_str(b, e->name);
        put_i32(b, e->replicated);
        put_i32(b, e->dtype);
        put_i32(b, e->ndim);
        put(b, e->shape, (size_t)e->ndim * sizeof *e->shape);
        put(b, e->offset, (size_t)e->ndim * sizeof *e->offset);
        put(b, e->block, (size_t)e->ndim * sizeof *e->block);
    }
}

static bool unpack(reader *r, tm_record *rec)
{
    rec->err = get_i32(r);
    rec->shared = get_i32(r);
    rec->seq = get_i64(r);
    get_str(r, rec->msg, sizeof rec->msg);
    int64_t n = get_i64(r);
    if (r->failed || n < 0 || (size_t)n > (size_t)(r->end - r->p))
        return false;
    if (n && !(rec->e = calloc((size_t)n, sizeof *rec->e)))
        return false;
    for (int64_t i = 0; i < n && !r->failed; i++, rec->n++) {
        tm_entry *e = &rec->e[i];
        e->name = get_str(r, NULL, 0);
        e->replicated = get_i32(r);
        e->dtype = get_i32(r);
        int ndim = get_i32(r);
        if (ndim < 0 || ndim > TSNAP_MAX_NDIM || tm_entry_dims(e, ndim) < 0) {
            r->failed = true;
            break;
        }
        get(r, e->shape, (size_t)e->ndim * sizeof *e->shape);
        get(r, e->offset, (size_t)e->ndim * sizeof *e->offset);
        get(r, e->block, (size_t)e->ndim * sizeof *e->block);
    }
    return !r->failed;
}

void tm_records_free(tm_record *recs, int nranks)
{
    for (int r = 0; recs && r < nranks; r++)
        tm_entries_free(recs[r].e, recs[r].n);
    free(recs);
}

int tm_gather(MPI_Comm comm, const tm_record *mine, bool entries, tm_record **recs)
{
    char msg[TM_MSG_LEN];
    buf b = {0};
    int rank, size, rc, len, err = 0;
    int *lens = NULL, *displs = NULL;
    char *all = NULL;
    tm_record *out = NULL;

    *recs = NULL;
    if ((rc = MPI_Comm_rank(comm, &rank)) != MPI_SUCCESS ||
        (rc = MPI_Comm_size(comm, &size)) != MPI_SUCCESS)
        return mpi_failed(rc, "MPI_Comm_rank");
    pack(&b, mine, entries);
    if (b.failed) {
        /* still take part, saying so */
        tm_record oom = {.err = TSNAP_ENOMEM, .seq = mine->seq};
        snprintf(oom.msg, sizeof oom.msg, "out of memory");
        b.len = 0;
        b.failed = false;
        pack(&b, &oom, false);
    }
    len = (int)b.len;
    if (rank == 0 && (!(lens = malloc((size_t)size * sizeof *lens)) ||
                      !(displs = malloc((size_t)size * sizeof *displs))))
        err = tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "out of memory");
    /* the gather goes ahead regardless: the other ranks are in it */
    int dummy[1];
    if ((rc = MPI_Gather(&len, 1, MPI_INT, lens ? lens : dummy, 1, MPI_INT, 0, comm)) !=
        MPI_SUCCESS) {
        err = mpi_failed(rc, "MPI_Gather");
        goto done;
    }
    size_t total = 0;
    if (rank == 0 && lens) {
        for (int r = 0; r < size; r++) {
            displs[r] = (int)total;
            total += (size_t)lens[r];
        }
        if (total > (size_t)0x7fffffff)
            err = tm_fail(TSNAP_ENOMEM, msg, sizeof msg,
                          "the blocks' metadata exceeds 2 GiB (%zu bytes)", total);
        else if (!(all = malloc(total ? total : 1)))
            err = tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "out of memory");
    }
    if (rank == 0 && !all) {
        /* receive nothing, but the others still send */
        for (int r = 0; lens && r < size; r++) {
            lens[r] = 0;
            displs[r] = 0;
        }
    }
    if ((rc = MPI_Gatherv(b.p ? b.p : (char *)dummy, len, MPI_BYTE, all, lens, displs, MPI_BYTE,
                          0, comm)) != MPI_SUCCESS) {
        err = mpi_failed(rc, "MPI_Gatherv");
        goto done;
    }
    if (rank != 0 || err < 0)
        goto done;
    if (!(out = calloc((size_t)size, sizeof *out))) {
        err = tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "out of memory");
        goto done;
    }
    for (int r = 0; r < size && err == 0; r++) {
        reader rd = {all + displs[r], all + displs[r] + lens[r], false};
        if (!unpack(&rd, &out[r]))
            err = tm_fail(TSNAP_ENOMEM, msg, sizeof msg,
                          "the record of rank %d cannot be read (out of memory?)", r);
    }
done:
    if (err < 0) {
        tm_records_free(out, size);
        out = NULL;
    }
    *recs = out;
    free(b.p);
    free(lens);
    free(displs);
    free(all);
    return err;
}

int tm_first_failure(const tm_record *recs, int nranks, char *msg, size_t len, int64_t *seq)
{
    int first = -1, nfailed = 0;
    for (int r = 0; r < nranks; r++) {
        if (recs[r].err >= 0)
            continue;
        nfailed++;
        if (first < 0 || recs[r].seq < recs[first].seq)
            first = r;
    }
    if (first < 0)
        return 0;
    if (seq)
        *seq = recs[first].seq;
    if (recs[first].shared)
        snprintf(msg, len, "%s", recs[first].msg);
    else if (nfailed == 1 || nranks == 1)
        snprintf(msg, len, "rank %d: %s", first, recs[first].msg);
    else
        snprintf(msg, len, "rank %d: %s (%d ranks failed)", first, recs[first].msg, nfailed);
    return recs[first].err;
}

int tm_outcome(MPI_Comm comm, int err, const char *msg, char *extra, size_t extra_len)
{
    size_t n = sizeof(int32_t) + TM_MSG_LEN + extra_len;
    char stack[sizeof(int32_t) + TM_MSG_LEN + 64], *b = stack;
    int rank, rc;
    int32_t code = err;

    if (n > sizeof stack && !(b = malloc(n)))
        return tsnap_set_error(TSNAP_ENOMEM, "out of memory");
    if ((rc = MPI_Comm_rank(comm, &rank)) != MPI_SUCCESS) {
        err = mpi_failed(rc, "MPI_Comm_rank");
        goto done;
    }
    if (rank == 0) {
        memcpy(b, &code, sizeof code);
        memset(b + sizeof code, 0, TM_MSG_LEN);
        snprintf(b + sizeof code, TM_MSG_LEN, "%s", err < 0 && msg ? msg : "");
        if (extra_len)
            memcpy(b + sizeof code + TM_MSG_LEN, extra, extra_len);
    }
    if ((rc = MPI_Bcast(b, (int)n, MPI_BYTE, 0, comm)) != MPI_SUCCESS) {
        err = mpi_failed(rc, "MPI_Bcast");
        goto done;
    }
    memcpy(&code, b, sizeof code);
    err = code;
    if (extra_len)
        memcpy(extra, b + sizeof code + TM_MSG_LEN, extra_len);
    if (err < 0) {
        b[sizeof code + TM_MSG_LEN - 1] = '\0';
        tsnap_set_error(err, b + sizeof code);
    }
done:
    if (b != stack)
        free(b);
    return err;
}

int tm_agree(MPI_Comm comm, int err, const char *msg)
{
    tm_record mine = {.err = err < 0 ? err : 0};
    tm_record *recs = NULL;
    char out[TM_MSG_LEN] = "";
    int size, rc;

    if (err < 0)
        snprintf(mine.msg, sizeof mine.msg, "%s", msg ? msg : "");
    if ((rc = MPI_Comm_size(comm, &size)) != MPI_SUCCESS)
        return mpi_failed(rc, "MPI_Comm_size");
    int e = tm_gather(comm, &mine, false, &recs);
    if (e < 0)
        snprintf(out, sizeof out, "%s", tsnap_errmsg());
    else if (recs)
        e = tm_first_failure(recs, size, out, sizeof out, NULL);
    tm_records_free(recs, recs ? size : 0);
    return tm_outcome(comm, e, out, NULL, 0);
}

/* ---- the parts folders ---------------------------------------------- */

void tm_new_id(char id[TM_ID_LEN + 1])
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^
            ((uint64_t)getpid() << 32);
    }
    snprintf(id, TM_ID_LEN + 1, "%016llx", (unsigned long long)v);
}

static char *concat(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s%s", a, b, c);
    return s;
}

char *tm_parts_dir(const char *path) { return concat(path, ".parts", ""); }

char *tm_save_dir(const char *path, const char *id) { return concat(path, ".parts/", id); }

char *tm_part_file(const char *path, const char *id, int rank, bool relative)
{
    const char *base = strrchr(path, '/');
    char tail[64];
    snprintf(tail, sizeof tail, "/rank-%06d.h5", rank);
    char *dir = concat(relative ? (base ? base + 1 : path) : path, ".parts/", id);
    char *s = dir ? concat(dir, tail, "") : NULL;
    free(dir);
    return s;
}

int tm_make_save_dir(const char *path, const char *id)
{
    char msg[TM_MSG_LEN];
    char *parts = tm_parts_dir(path), *save = tm_save_dir(path, id);
    int err = 0;
    if (!parts || !save)
        err = tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "%s: out of memory", path);
    else if ((mkdir(parts, 0777) < 0 && errno != EEXIST) ||
             (mkdir(save, 0777) < 0 && errno != EEXIST))
        err = tm_fail(errno == ENOENT ? TSNAP_ENOTFOUND : TSNAP_EIO, msg, sizeof msg,
                      "%s: cannot make the folder of the parts: %s", path, strerror(errno));
    free(parts);
    free(save);
    return err;
}

static int remove_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if ((flag == FTW_DP ? rmdir(p) : unlink(p)) < 0 && errno != ENOENT)
        return -1;
    return 0;
}

int tm_clean_parts(const char *path, const char *keep)
{
    char msg[TM_MSG_LEN];
    char *parts = tm_parts_dir(path);
    DIR *d = NULL;
    struct dirent *e;
    int err = 0;
    bool kept = false;

    if (!parts)
        return tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "%s: out of memory", path);
    if (!(d = opendir(parts))) {
        if (errno != ENOENT && errno != ENOTDIR)
            err = tm_fail(TSNAP_EIO, msg, sizeof msg, "%s: cannot list the parts: %s", parts,
                          strerror(errno));
        goto done;
    }
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (keep && strcmp(e->d_name, keep) == 0) {
            kept = true;
            continue;
        }
        char *victim = concat(parts, "/", e->d_name);
        if (!victim || nftw(victim, remove_one, 8, FTW_DEPTH | FTW_PHYS) < 0) {
            if (errno != ENOENT && err == 0)
                err = tm_fail(TSNAP_EIO, msg, sizeof msg, "%s: cannot delete %s: %s", parts,
                              e->d_name, strerror(errno));
        }
        free(victim);
    }
    if (!kept && rmdir(parts) < 0 && errno != ENOENT && errno != ENOTEMPTY && errno != EEXIST &&
        err == 0)
        err = tm_fail(TSNAP_EIO, msg, sizeof msg, "%s: cannot delete the parts folder: %s",
                      parts, strerror(errno));
done:
    if (d)
        closedir(d);
    free(parts);
    return err;
}

int tm_remove_save(const char *path, const char *id)
{
    char msg[TM_MSG_LEN];
    char *parts = tm_parts_dir(path), *save = tm_save_dir(path, id);
    int err = 0;
    if (!parts || !save)
        err = tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "%s: out of memory", path);
    else if (nftw(save, remove_one, 8, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
        err = tm_fail(TSNAP_EIO, msg, sizeof msg, "%s: cannot delete the parts of a failed save: %s",
                      save, strerror(errno));
    else
        rmdir(parts); /* only when empty: it may hold the committed snapshot's parts */
    free(parts);
    free(save);
    return err;
}

int tm_sync_parts(const char *path)
{
    char msg[TM_MSG_LEN];
    char *parts = tm_parts_dir(path);
    int err = 0, fd;
    if (!parts)
        return tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "%s: out of memory", path);
    if ((fd = open(parts, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        if (errno != ENOENT)
            err = tm_fail(TSNAP_EIO, msg, sizeof msg, "%s: cannot open: %s", parts,
                          strerror(errno));
    } else {
        if (fsync(fd) < 0 && errno != EINVAL)
            err = tm_fail(TSNAP_EIO, msg, sizeof msg, "%s: fsync failed: %s", parts,
                          strerror(errno));
        close(fd);
    }
    free(parts);
    return err;
}

/* The save folder that snapshot `path` refers to, into id; false when it
 * cannot tell (no virtual tensor, or an unreadable file). */
bool tm_referred_save(const char *path, char id[TM_ID_LEN + 1])
{
    tsnap_reader *r = NULL;
    bool found = false;
    if (tsnap_reader_open(&r, path) < 0)
        return false;
    for (size_t i = 0; i < tsnap_reader_count(r) && !found; i++) {
        const char *name = tsnap_reader_name(r, i);
        tsnap_tensor_info info;
        tsnap_part p;
        if (tsnap_reader_describe(r, name, &info) < 0 || info.nparts == 0 ||
            tsnap_reader_part(r, name, 0, &p) < 0 || !p.file)
            continue;
        /* "<base>.parts/<id>/rank-...h5" */
        const char *a = strstr(p.file, ".parts/");
        if (!a)
            continue;
        a += strlen(".parts/");
        const char *b = strchr(a, '/');
        if (b && b - a == TM_ID_LEN) {
            memcpy(id, a, TM_ID_LEN);
            id[TM_ID_LEN] = '\0';
            found = true;
        }
    }
    tsnap_reader_free(r);
    return found;
}

void tm_settle_parts(const char *path, const char *id, int err)
{
    char current[TM_ID_LEN + 1];
    /* a commit that failed after its rename (say, the folder's fsync)
     * left PATH referring to this save: its parts stay */
    if (err == 0 || (access(path, F_OK) == 0 && tm_referred_save(path, current) &&
                     strcmp(current, id) == 0))
        tm_clean_parts(path, id); /* the folders of what PATH was before */
    else
        tm_remove_save(path, id);
}

/* ---- the snapshot file ---------------------------------------------- */

int tm_put_virtuals(tsnap_writer *w, const char *path, const char *id, const tm_tensor *plan,
                    size_t count)
{
    char msg[TM_MSG_LEN];
    int err = 0;
    for (size_t i = 0; i < count && err == 0; i++) {
        const tm_tensor *t = &plan[i];
        const tm_entry *e = t->e;
        if (e->replicated)
            continue;
        if (t->nblocks == 0) {
            /* an empty global tensor: an ordinary empty dataset */
            DLTensor empty;
            memset(&empty, 0, sizeof empty);
            empty.device.device_type = kDLCPU;
            empty.ndim = e->ndim;
            empty.shape = (int64_t *)e->shape;
            if ((err = tsnap_dtype_to_dlpack(&empty.dtype, (tsnap_dtype)e->dtype)) == 0)
                err = tsnap_writer_put(w, e->name, &empty);
            continue;
        }
        tsnap_part *parts = calloc(t->nblocks, sizeof *parts);
        char *dataset = concat("/", e->name, "");
        if (!parts || !dataset)
            err = tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "%s: out of memory", path);
        for (size_t k = 0; k < t->nblocks && err == 0; k++) {
            char *file = tm_part_file(path, id, t->ranks[k], true);
            if (!file) {
                err = tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "%s: out of memory", path);
                break;
            }
            parts[k].file = file;
            parts[k].dataset = dataset;
            memcpy(parts[k].offset, t->blocks[k]->offset, (size_t)e->ndim * sizeof(int64_t));
            memcpy(parts[k].shape, t->blocks[k]->block, (size_t)e->ndim * sizeof(int64_t));
        }
        if (err == 0)
            err = tsnap_writer_put_virtual(w, e->name, (tsnap_dtype)e->dtype, e->ndim, e->shape,
                                           parts, t->nblocks);
        for (size_t k = 0; parts && k < t->nblocks; k++)
            free((char *)parts[k].file);
        free(parts);
        free(dataset);
    }
    return err;
}

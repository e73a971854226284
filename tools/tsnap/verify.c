/*
 * verify.c - `tsnap verify`: recomputes the checksum of every tensor of
 * files and stores, several files at once.
 *
 * HDF5 may be built without thread safety, so the parallelism is in
 * processes: each file is checked by a forked worker, which sends its
 * findings to the parent through a pipe as records; the parent prints
 * them in the order of the paths given.  A worker that crashes, or is
 * killed, costs the answer for its file only.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hdf5.h>

#include "cli.h"

static const char help[] =
    "usage: tsnap verify [-j N] [-q] [--json] PATH...\n"
    "\n"
    "Recomputes the checksum of every tensor in each PATH (a snapshot file, or\n"
    "a store: a directory, whose committed steps are all checked) and compares\n"
    "it with the one recorded when the file was written.  Every damaged tensor\n"
    "is named, not only the first.  A tensor with no recorded checksum (files\n"
    "written by h5py, or with checksums off) is read through once instead, so\n"
    "that chunks which no longer decode and data cut off by truncation are\n"
    "still found; datasets tsnap cannot read (strings, say) are skipped with a\n"
    "note.  Files are checked in parallel, each in a process of its own.\n"
    "\n"
    "Prints one line per file, in the order given:\n"
    "  PATH: OK (3 tensors, 12.0 MiB)\n"
    "or one line per damaged tensor:\n"
    "  PATH: DAMAGED: tensor 'u': checksum mismatch: recorded ..., data gives ...\n"
    "and a summary line when there are several files.\n"
    "\n"
    "Options:\n"
    "  -j, --jobs N   check up to N files at once (default: one per core)\n"
    "  -q, --quiet    print only the damage found; the exit status answers\n"
    "  --json         a JSON array, one object per file: path, status (\"ok\",\n"
    "                 \"damaged\" or \"error\"), the counts tensors, checked,\n"
    "                 no_checksum, skipped and bytes, and the lists damaged,\n"
    "                 notes (skipped datasets) and errors of {tensor, message}\n"
    "  -h, --help     this text\n"
    "\n"
    "Exit status: 0 every file intact; 1 damage found (a tensor that does not\n"
    "match its checksum or cannot be decoded, a truncated or corrupt file);\n"
    "2 a usage error or trouble (a path that does not exist or cannot be\n"
    "read), which wins over 1.\n"
    "\n"
    "Examples:\n"
    "  tsnap verify step0.h5\n"
    "  tsnap verify checkpoints/            # every step of a store\n"
    "  tsnap verify -j 8 run*/step-*.h5 || echo 'damage found'\n";

/* How much memory reading a tensor without a checksum through may take. */
#define READ_BUDGET ((uint64_t)16 << 20)

/* ---- findings ---------------------------------------------------- */

/* What a worker found, record by record. */
enum {
    REC_DAMAGED = 'D', /* a damaged tensor, or file ("" tensor) */
    REC_SKIPPED = 'S', /* a dataset tsnap cannot read */
    REC_ERROR = 'E',   /* trouble: no answer for a tensor or the file */
    REC_COUNTS = 'C'   /* the last record: what was checked */
};

typedef struct note {
    char kind;
    char *tensor;  /* "" for the file itself */
    char *msg;     /* the cause, without file and tensor */
} note;

typedef struct counts {
    uint64_t tensors, checked, unchecked, skipped, bytes;
} counts;

typedef struct item {
    char *path;
    uint64_t size;     /* of the file, for the progress bar */
    int empty_store;   /* a store without committed steps */
    int status;        /* CLI_OK, CLI_FAIL (damaged), CLI_USAGE (trouble) */
    int done;          /* the answer is in */
    int reported;      /* its trouble is on stderr already */
    int complete;      /* the worker sent its counts */
    int oom;           /* a finding was lost for want of memory */
    pid_t pid;         /* while a worker checks it */
    int fd;
    char *buf;         /* the worker's records so far */
    size_t len, cap;
    counts c;
    note *notes;
    size_t nnotes;
} item;

static void item_free(item *it)
{
    for (size_t i = 0; i < it->nnotes; i++) {
        free(it->notes[i].tensor);
        free(it->notes[i].msg);
    }
    free(it->notes);
    free(it->buf);
    free(it->path);
}

/* Notes a finding; without the memory to keep it, the file's answer is
 * lost (trouble, told as "out of memory"). */
static void add_note(item *it, char kind, const char *tensor, const char *msg)
{
    note *grown = realloc(it->notes, (it->nnotes + 1) * sizeof *grown);
    note *n;

    if (kind == REC_ERROR)
        it->status = CLI_USAGE;
    else if (kind == REC_DAMAGED && it->status == CLI_OK)
        it->status = CLI_FAIL;
    if (!grown) {
        it->oom = 1;
        it->status = CLI_USAGE;
        return;
    }
    it->notes = grown;
    n = &it->notes[it->nnotes];
    n->kind = kind;
    n->tensor = strdup(tensor);
    n->msg = strdup(msg);
    if (!n->tensor || !n->msg) {
        free(n->tensor);
        free(n->msg);
        it->oom = 1;
        it->status = CLI_USAGE;
        return;
    }
    it->nnotes++;
}

/* The cause in a library message, without its "file: tensor 'x': " head. */
static const char *cause(const char *msg, const char *path, const char *tensor)
{
    char head[1200];
    size_t n = strlen(path);
    if (!strncmp(msg, path, n) && !strncmp(msg + n, ": ", 2))
        msg += n + 2;
    snprintf(head, sizeof head, "tensor '%s': ", tensor);
    if (*tensor && !strncmp(msg, head, strlen(head)))
        msg += strlen(head);
    return msg;
}

/* ---- the worker -------------------------------------------------- */

/* A record: its kind, then two length-prefixed strings. */
static int send_record(FILE *f, char kind, const char *a, const char *b)
{
    uint32_t la = (uint32_t)strlen(a), lb = (uint32_t)strlen(b);
    fputc(kind, f);
    fwrite(&la, sizeof la, 1, f);
    fwrite(a, 1, la, f);
    fwrite(&lb, sizeof lb, 1, f);
    fwrite(b, 1, lb, f);
    return ferror(f) ? -1 : 0;
}

/* What a failure of the library says of a tensor or a file. */
static char kind_of(int err)
{
    switch (err) {
    case TSNAP_ETYPE: return REC_SKIPPED;
    case TSNAP_ECHECKSUM: case TSNAP_EFORMAT: case TSNAP_EIO: return REC_DAMAGED;
    default: return REC_ERROR;  /* out of memory, and what should not happen */
    }
}

/* Reads the box of `count` elements at `origin` of a tensor with no
 * checksum through, slab by slab: HDF5 then decodes every chunk and finds
 * what truncation cut off. */
static int read_box(tsnap_reader *r, const char *name, const tsnap_tensor_info *info,
                    const int64_t *origin, const int64_t *count, void **buf, size_t *cap)
{
    size_t itemsize = tsnap_dtype_size(info->dtype);
    tsnap_tensor_info box = *info;
    cli_slabs s;
    int err = 0;

    memcpy(box.shape, count, sizeof box.shape[0] * (size_t)info->ndim);
    cli_slabs_init(&s, &box, READ_BUDGET);
    while (err == 0 && cli_slabs_next(&s)) {
        size_t need = (size_t)s.n * itemsize;
        cli_slabs at = s;
        if (need > *cap) {
            void *grown = realloc(*buf, need);
            if (!grown) {
                err = TSNAP_ENOMEM;
                break;
            }
            *buf = grown;
            *cap = need;
        }
        for (int k = 0; k < s.ndim; k++)
            at.start[k] += origin[k];
        err = cli_slabs_read(&at, r, name, info->dtype, *buf);
    }
    return err;
}

/* ---- chunks never written ---------------------------------------- */

/*
 * A chunk never written holds no bytes to check: it reads as the fill
 * value by definition.  A foreign tensor written in part (or one whose
 * damaged dimension now spans terabytes of unwritten chunks) is read
 * through chunk by chunk, only where chunks are stored.  tsnap's API does
 * not say which are, so the worker asks HDF5.  HDF5 1.10 lists them one
 * by one only by walking its chunk index again for each (n^2/2 steps), and
 * tells of one chunk at a time by looking it up: a tensor with more
 * stored chunks than LIST_MAX and more chunks in its grid than GRID_MAX
 * is read through whole, as before.
 */
#define LIST_MAX 4096
#define GRID_MAX ((uint64_t)1 << 22)

typedef struct stored {
    tsnap_reader *r;
    const char *name;
    const tsnap_tensor_info *info;
    void *buf;
    size_t cap;
} stored;

/* Reads the chunk at `offset` (HDF5's, of `rank` axes: a complex32's has
 * one more than the tensor), clipped to the tensor. */
static int read_chunk(stored *st, const hsize_t *offset)
{
    int64_t origin[TSNAP_MAX_NDIM], count[TSNAP_MAX_NDIM];
    const tsnap_tensor_info *info = st->info;

    for (int k = 0; k < info->ndim; k++) {
        origin[k] = (int64_t)offset[k];
        if (offset[k] >= (hsize_t)info->shape[k])
            return 0; /* a damaged index: HDF5 itself never reads it */
        count[k] = info->shape[k] - origin[k] < info->chunk[k] ? info->shape[k] - origin[k]
                                                               : info->chunk[k];
    }
    return read_box(st->r, st->name, info, origin, count, &st->buf, &st->cap);
}

/* Reads the stored chunks of dataset `d`; *listed 0 when they cannot be
 * told from the unwritten ones in reasonable time. */
static int read_stored_chunks(stored *st, hid_t d, int *listed)
{
    hsize_t dims[H5S_MAX_RANK], cdims[H5S_MAX_RANK], off[H5S_MAX_RANK] = {0};
    hsize_t nstored = 0, size = 0;
    hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    uint64_t grid = 1;
    int rank, err = 0;

    *listed = 0;
    if ((space = H5Dget_space(d)) < 0 || (rank = H5Sget_simple_extent_ndims(space)) < 1 ||
        rank < st->info->ndim || H5Sget_simple_extent_dims(space, dims, NULL) != rank ||
        (dcpl = H5Dget_create_plist(d)) < 0 || H5Pget_chunk(dcpl, rank, cdims) != rank ||
        H5Dget_num_chunks(d, space, &nstored) < 0)
        goto done;
    for (int k = 0; k < rank; k++) {
        uint64_t across = cdims[k] ? (dims[k] + cdims[k] - 1) / cdims[k] : 0;
        grid = across && grid > UINT64_MAX / across ? UINT64_MAX : grid * across;
    }
    if (nstored >= grid)
        goto done; /* every chunk stored: nothing to skip */
    if (nstored <= LIST_MAX) {
        *listed = 1;
        for (hsize_t i = 0; i < nstored && err == 0 && *listed; i++) {
            unsigned mask = 0;
            haddr_t addr = HADDR_UNDEF;
            if (H5Dget_chunk_info(d, space, i, off, &mask, &addr, &size) < 0)
                *listed = 0; /* a damaged index: the whole read says how */
            else
                err = read_chunk(st, off);
        }
    } else if (grid <= GRID_MAX) {
        *listed = 1;
        for (uint64_t c = 0; c < grid && err == 0; c++) {
            uint64_t rest = c;
            for (int k = rank - 1; k >= 0; k--) {
                uint64_t across = (dims[k] + cdims[k] - 1) / cdims[k];
                off[k] = rest % across * cdims[k];
                rest /= across;
            }
            /* HDF5 1.10 fails for a chunk never written, later ones say 0 */
            if (H5Dget_chunk_storage_size(d, off, &size) >= 0 && size > 0)
                err = read_chunk(st, off);
        }
    }
done:
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (space >= 0)
        H5Sclose(space);
    H5Eclear2(H5E_DEFAULT);
    return err;
}

/* Reads a tensor with no checksum through: its stored chunks where some
 * were never written, else all of it. */
static int read_through(tsnap_reader *r, const char *path, const char *name,
                        const tsnap_tensor_info *info)
{
    stored st = {r, name, info, NULL, 0};
    int listed = 0, err = 0;
    hid_t f = H5I_INVALID_HID, d = H5I_INVALID_HID;

    if (!info->chunked && info->map_status == TSNAP_MAP_NOT_ALLOCATED)
        return 0; /* contiguous, never written: nothing stored */
    if (info->chunked && info->ndim > 0 && info->nbytes > READ_BUDGET) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        if ((f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) >= 0 &&
            (d = H5Dopen2(f, name, H5P_DEFAULT)) >= 0)
            err = read_stored_chunks(&st, d, &listed);
        if (d >= 0)
            H5Dclose(d);
        if (f >= 0)
            H5Fclose(f);
        H5Eclear2(H5E_DEFAULT);
    }
    if (!listed && err == 0)
        err = read_box(r, name, info, (const int64_t[TSNAP_MAX_NDIM]){0}, info->shape, &st.buf,
                       &st.cap);
    free(st.buf);
    return err;
}

static int check_file(const char *path, FILE *out)
{
    tsnap_reader *r = NULL;
    counts c = {0};
    char line[200];
    int err;

    if ((err = tsnap_reader_open(&r, path)) < 0) {
        /* Only a file that HDF5 reads as broken is damaged; a missing or
         * unreadable one is trouble. */
        if (send_record(out, err == TSNAP_EFORMAT ? REC_DAMAGED : REC_ERROR, "",
                        cause(tsnap_errmsg(), path, "")) < 0)
            return -1;
    }
    for (size_t i = 0; r && i < tsnap_reader_count(r); i++) {
        const char *name = tsnap_reader_name(r, i);
        tsnap_tensor_info info;
        char kind;

        c.tensors++;
        if ((err = tsnap_reader_describe(r, name, &info)) == 0) {
            c.bytes += info.nbytes;
            /* a virtual tensor: the checksums of its blocks' part files */
            if (info.checksum[0] || info.map_status == TSNAP_MAP_VIRTUAL) {
                c.checked++;
                err = tsnap_reader_verify(r, name);
            } else {
                c.unchecked++;
                err = read_through(r, path, name, &info);
            }
        } else if (err == TSNAP_ETYPE && info.string) { /* a string: read, no checksum */
            c.unchecked++;
            err = cli_read_string(r, name, NULL, NULL, NULL);
        }
        if (err == 0)
            continue;
        if ((kind = kind_of(err)) == REC_SKIPPED)
            c.skipped++;
        if (send_record(out, kind, name,
                        *tsnap_errmsg() ? cause(tsnap_errmsg(), path, name)
                                        : tsnap_strerror(err)) < 0) {
            tsnap_reader_free(r);
            return -1;
        }
    }
    tsnap_reader_free(r);
    snprintf(line, sizeof line, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64,
             c.tensors, c.checked, c.unchecked, c.skipped, c.bytes);
    return send_record(out, REC_COUNTS, line, "");
}

/* ---- the parent -------------------------------------------------- */

/* A length-prefixed string at *at of the records, if all of it is there;
 * *out is NULL when there is no memory for it. */
static int take_string(const item *it, size_t *at, char **out)
{
    uint32_t n;
    if (it->len - *at < sizeof n)
        return 0;
    memcpy(&n, it->buf + *at, sizeof n);
    if (it->len - *at - sizeof n < n)
        return 0;
    *out = strndup(it->buf + *at + sizeof n, n);
    *at += sizeof n + n;
    return 1;
}

/* Takes the records a worker sent into `it`. */
static void take_records(item *it)
{
    size_t at = 0;
    while (at < it->len) {
        char kind = it->buf[at++], *a = NULL, *b = NULL;
        counts *c = &it->c;

        if (!take_string(it, &at, &a) || !take_string(it, &at, &b)) {
            free(a);
            break;
        }
        if (!a || !b)
            add_note(it, REC_ERROR, "", "out of memory");
        else if (kind == REC_COUNTS)
            it->complete = sscanf(a, "%" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64,
                                  &c->tensors, &c->checked, &c->unchecked, &c->skipped,
                                  &c->bytes) == 5;
        else if (kind == REC_DAMAGED || kind == REC_SKIPPED || kind == REC_ERROR)
            add_note(it, kind, a, b);
        free(a);
        free(b);
    }
}

/* The worker of `it` is gone (`wstatus` from waitpid): its answer. */
static void finish(item *it, int wstatus)
{
    char msg[160];

    take_records(it);
    free(it->buf);
    it->buf = NULL;
    it->len = it->cap = 0;
    it->done = 1;
    it->pid = 0;
    if (it->complete)
        return;
    if (WIFSIGNALED(wstatus))
        snprintf(msg, sizeof msg, "the process checking it was killed by signal %d (%s)",
                 WTERMSIG(wstatus), strsignal(WTERMSIG(wstatus)));
    else
        snprintf(msg, sizeof msg, "the process checking it ended without an answer (exit %d)",
                 WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1);
    add_note(it, REC_ERROR, "", msg);
}

/* Reads what a worker has written; at its end, waits for it. */
static int drain(item *it)
{
    char chunk[65536];
    ssize_t k = read(it->fd, chunk, sizeof chunk);
    int wstatus = 0;

    if (k < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (k > 0) {
        if (it->len + (size_t)k > it->cap) {
            size_t cap = it->cap ? it->cap : sizeof chunk;
            char *grown;
            while (cap < it->len + (size_t)k)
                cap *= 2;
            if (!(grown = realloc(it->buf, cap))) {
                it->oom = 1;
                it->status = CLI_USAGE;
                return 0;  /* dropped: the answer will be incomplete */
            }
            it->buf = grown;
            it->cap = cap;
        }
        memcpy(it->buf + it->len, chunk, (size_t)k);
        it->len += (size_t)k;
        return 0;
    }
    close(it->fd);
    it->fd = -1;
    while (waitpid(it->pid, &wstatus, 0) < 0 && errno == EINTR)
        ;
    finish(it, wstatus);
    return 1;
}

/* Forks a worker for `it`.  Returns 1 in the worker once it is done, 0
 * in the parent (`it` then done if no worker could start). */
static int start(item *it, item *items, const size_t *running, size_t nrunning,
                 int threads)
{
    int p[2];
    pid_t pid;
    FILE *out;

    if (pipe(p) < 0) {
        add_note(it, REC_ERROR, "", strerror(errno));
        it->done = 1;
        return 0;
    }
    /* Whatever stdio holds would be written twice, by both processes. */
    fflush(stdout);
    fflush(stderr);
    if ((pid = fork()) < 0) {
        add_note(it, REC_ERROR, "", strerror(errno));
        it->done = 1;
        close(p[0]);
        close(p[1]);
        return 0;
    }
    if (pid == 0) {
        for (size_t k = 0; k < nrunning; k++) {
            close(items[running[k]].fd);
            items[running[k]].fd = -1;
        }
        close(p[0]);
        tsnap_set_threads(threads);
        if (!(out = fdopen(p[1], "w"))) {
            close(p[1]);
            return 1;  /* no answer: the parent says so */
        }
        check_file(it->path, out);
        fclose(out);
        return 1;
    }
    close(p[1]);
    it->pid = pid;
    it->fd = p[0];
    return 0;
}

static item *add_item(item **items, size_t *n, size_t *cap, const char *path)
{
    item *it;
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 16;
        item *grown = realloc(*items, c * sizeof *grown);
        if (!grown)
            return NULL;
        *items = grown;
        *cap = c;
    }
    it = &(*items)[*n];
    memset(it, 0, sizeof *it);
    it->fd = -1;
    if (!(it->path = strdup(path)))
        return NULL;
    (*n)++;
    return it;
}

/* Trouble known before any worker starts. */
static void trouble(item *it, const char *msg)
{
    add_note(it, REC_ERROR, "", msg);
    it->done = 1;
}

/* The files that `arg` names: itself, or the committed steps of a store. */
static int expand(const char *arg, item **items, size_t *n, size_t *cap)
{
    struct stat st;
    cli_steps list;
    item *it;

    if (stat(arg, &st) < 0) {
        const char *why = strerror(errno);
        if (!(it = add_item(items, n, cap, arg)))
            return -1;
        trouble(it, why);
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (!(it = add_item(items, n, cap, arg)))
            return -1;
        it->size = (uint64_t)st.st_size;
        /* A FIFO or a device would block the worker, or never end. */
        if (!S_ISREG(st.st_mode))
            trouble(it, "not a regular file");
        return 0;
    }
    if (cli_store_steps(arg, &list) < 0) {
        if (!(it = add_item(items, n, cap, arg)))
            return -1;
        trouble(it, cause(tsnap_errmsg(), arg, ""));
        it->reported = 1;
        return 0;
    }
    if (list.count == 0) {
        if (!(it = add_item(items, n, cap, arg)))
            return -1;
        it->empty_store = 1;
        it->done = 1;
    }
    for (size_t i = 0; i < list.count; i++) {
        if (!(it = add_item(items, n, cap, list.paths[i]))) {
            cli_steps_free(&list);
            return -1;
        }
        if (stat(list.paths[i], &st) == 0)
            it->size = (uint64_t)st.st_size;
    }
    cli_steps_free(&list);
    return 0;
}

/* ---- output ------------------------------------------------------ */

/* Trouble goes to stderr, whatever the format of the answers. */
static void print_trouble(const item *it)
{
    for (size_t i = 0; i < it->nnotes && !it->reported; i++) {
        const note *nt = &it->notes[i];
        if (nt->kind == REC_ERROR)
            cli_error("%s: %s%s%s%s", it->path, *nt->tensor ? "tensor '" : "", nt->tensor,
                      *nt->tensor ? "': " : "", nt->msg);
    }
    if (it->oom)
        cli_error("%s: out of memory: what was found in it is not all told", it->path);
}

static void print_text(const item *it, int quiet)
{
    char size[16];

    print_trouble(it);
    for (size_t i = 0; i < it->nnotes; i++) {
        const note *nt = &it->notes[i];
        const char *head = *nt->tensor ? "tensor '" : "", *tail = *nt->tensor ? "': " : "";
        if (nt->kind == REC_DAMAGED)
            printf("%s: DAMAGED: %s%s%s%s\n", it->path, head, nt->tensor, tail, nt->msg);
        else if (nt->kind == REC_SKIPPED && !quiet)
            printf("%s: skipped: %s%s%s%s\n", it->path, head, nt->tensor, tail, nt->msg);
    }
    if (quiet || it->status != CLI_OK)
        return;
    if (it->empty_store) {
        printf("%s: no committed steps\n", it->path);
        return;
    }
    printf("%s: OK (%" PRIu64 " tensor%s, %s", it->path, it->c.tensors,
           it->c.tensors == 1 ? "" : "s", cli_bytes_str(it->c.bytes, size, sizeof size));
    if (it->c.unchecked)
        printf("; %" PRIu64 " with no checksum, read through", it->c.unchecked);
    if (it->c.skipped)
        printf("; %" PRIu64 " skipped", it->c.skipped);
    printf(")\n");
}

static void json_notes(const item *it, const char *key, char kind)
{
    int first = 1;
    printf(", \"%s\": [", key);
    for (size_t i = 0; i < it->nnotes; i++) {
        if (it->notes[i].kind != kind)
            continue;
        fputs(first ? "{\"tensor\": " : ", {\"tensor\": ", stdout);
        if (*it->notes[i].tensor)
            cli_json_string(stdout, it->notes[i].tensor);
        else
            fputs("null", stdout);
        fputs(", \"message\": ", stdout);
        cli_json_string(stdout, it->notes[i].msg);
        fputc('}', stdout);
        first = 0;
    }
    fputc(']', stdout);
}

static void print_json(const item *it, int first)
{
    static const char *const status[] = {"ok", "damaged", "error"};

    print_trouble(it);
    fputs(first ? "\n  {\"path\": " : ",\n  {\"path\": ", stdout);
    cli_json_string(stdout, it->path);
    printf(", \"status\": \"%s\", \"tensors\": %" PRIu64 ", \"checked\": %" PRIu64
           ", \"no_checksum\": %" PRIu64 ", \"skipped\": %" PRIu64 ", \"bytes\": %" PRIu64,
           status[it->status], it->c.tensors, it->c.checked, it->c.unchecked, it->c.skipped,
           it->c.bytes);
    if (it->empty_store)
        fputs(", \"steps\": 0", stdout);
    json_notes(it, "damaged", REC_DAMAGED);
    json_notes(it, "notes", REC_SKIPPED);
    json_notes(it, "errors", REC_ERROR);
    fputc('}', stdout);
}

static void print_summary(const item *items, size_t n)
{
    uint64_t files = 0, ok = 0, damaged = 0, errors = 0, tensors = 0, bytes = 0, unchecked = 0;
    char size[16];

    for (size_t i = 0; i < n; i++) {
        if (items[i].empty_store)
            continue;
        files++;
        ok += items[i].status == CLI_OK;
        damaged += items[i].status == CLI_FAIL;
        errors += items[i].status == CLI_USAGE;
        tensors += items[i].c.tensors;
        bytes += items[i].c.bytes;
        unchecked += items[i].c.unchecked;
    }
    if (files < 2)
        return;
    printf("%" PRIu64 " files: %" PRIu64 " OK, %" PRIu64 " damaged, %" PRIu64
           " with errors (%" PRIu64 " tensors, %s",
           files, ok, damaged, errors, tensors, cli_bytes_str(bytes, size, sizeof size));
    if (unchecked)
        printf("; %" PRIu64 " with no checksum", unchecked);
    printf(")\n");
}

/* ---- the command ------------------------------------------------- */

static int options(int argc, char **argv, long *jobs, int *quiet, int *json, int *done)
{
    static const struct option longopts[] = {
        {"jobs", required_argument, NULL, 'j'}, {"quiet", no_argument, NULL, 'q'},
        {"json", no_argument, NULL, 'J'},       {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;

    while ((c = cli_getopt(argc, argv, "hj:q", longopts, done)) != -1) {
        switch (c) {
        case 'j':
            if (cli_parse_int("--jobs", optarg, 256, jobs) < 0)
                return CLI_USAGE;
            break;
        case 'q': *quiet = 1; break;
        case 'J': *json = 1; break;
        default: return CLI_USAGE;
        }
    }
    if (*done)
        return CLI_OK;
    if (optind >= argc)
        return cli_usage("which files or stores? (tsnap verify PATH...)");
    return -1;
}

static int run(int argc, char **argv)
{
    long jobs = 0;
    int quiet = 0, json = 0, done = 0, status, worker = 0, threads;
    item *items = NULL;
    size_t n = 0, cap = 0, next_start = 0, next_print = 0, nrunning = 0;
    uint64_t total = 0;
    cli_progress progress;
    struct pollfd *fds = NULL;
    size_t *running = NULL;  /* the items that workers check now */

    if ((status = options(argc, argv, &jobs, &quiet, &json, &done)) >= 0)
        return status;
    status = CLI_OK;
    for (int i = optind; i < argc; i++)
        if (expand(argv[i], &items, &n, &cap) < 0) {
            status = cli_error("out of memory");
            goto done;
        }
    if (jobs == 0)
        jobs = tsnap_threads();
    if ((size_t)jobs > n)
        jobs = (long)(n ? n : 1);
    /* Each worker's share of the cores, for the library's own threads. */
    threads = tsnap_threads() / (int)jobs > 1 ? tsnap_threads() / (int)jobs : 1;
    if (!(fds = calloc((size_t)jobs, sizeof *fds)) ||
        !(running = calloc((size_t)jobs, sizeof *running))) {
        status = cli_error("out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        total += items[i].size;
    cli_progress_start(&progress, "verify", total);
    if (json)
        fputc('[', stdout);
    while (next_print < n) {
        while (nrunning < (size_t)jobs && next_start < n) {
            item *it = &items[next_start++];
            if (it->done)
                continue;
            if ((worker = start(it, items, running, nrunning, threads)) != 0)
                goto done;
            if (it->done)
                cli_progress_add(&progress, it->size);
            else
                running[nrunning++] = (size_t)(it - items);
        }
        /* Answers in the order of the paths, each as soon as it can be. */
        for (; next_print < n && items[next_print].done; next_print++) {
            const item *it = &items[next_print];
            cli_progress_clear(&progress);
            if (json)
                print_json(it, next_print == 0);
            else
                print_text(it, quiet);
            if (it->status > status)
                status = it->status;
        }
        if (next_print == n)
            break;
        for (size_t k = 0; k < nrunning; k++) {
            fds[k].fd = items[running[k]].fd;
            fds[k].events = POLLIN;
            fds[k].revents = 0;
        }
        if (poll(fds, nrunning, -1) < 0) {
            if (errno == EINTR)
                continue;
            status = cli_error("poll: %s", strerror(errno));
            break;
        }
        /* From the end, so that a finished worker's place takes the last. */
        for (size_t k = nrunning; k-- > 0;)
            if (fds[k].revents && drain(&items[running[k]])) {
                cli_progress_add(&progress, items[running[k]].size);
                running[k] = running[--nrunning];
            }
    }
    cli_progress_end(&progress);
    if (json)
        fputs(n ? "\n]\n" : "]\n", stdout);
    else if (!quiet)
        print_summary(items, n);
done:
    for (size_t i = 0; i < n; i++) {
        if (items[i].fd >= 0)
            close(items[i].fd);
        if (items[i].pid > 0 && !worker) {
            /* Only after a failure above: stop it rather than leave it. */
            kill(items[i].pid, SIGKILL);
            while (waitpid(items[i].pid, NULL, 0) < 0 && errno == EINTR)
                ;
        }
        item_free(&items[i]);
    }
    free(items);
    free(fds);
    free(running);
    return worker ? CLI_OK : status;
}

const cli_command cli_verify = {"verify", "recompute every checksum of files and stores", help,
                                run};

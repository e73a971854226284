/*
 * cp.c - `tsnap cp`: any HDF5 file of numeric datasets (h5py's too) copied
 * into a tsnap snapshot, re-chunked and recompressed by the writer.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "cli.h"

static const char help[] =
    "usage: tsnap cp [OPTIONS] SRC DST\n"
    "\n"
    "Copies the snapshot SRC, or any HDF5 file of numeric datasets (h5py's\n"
    "included), to the tsnap snapshot DST: every dataset becomes a tensor of\n"
    "the same name, dtype and values, laid out and compressed as the options\n"
    "say.  By default DST is uncompressed, so every tensor in it can be\n"
    "memory-mapped (tsnap.load(DST, mmap=True)).  If DST is a directory the\n"
    "copy is DST/<name of SRC>.\n"
    "\n"
    "Attributes come along: the root's numbers, strings and small arrays\n"
    "(`step` and `time` as tsnap defines them; tsnap's own, `created` and\n"
    "`producer` are written afresh) and each dataset's.  One that cannot be\n"
    "copied is named in a warning and skipped; so are the attributes of\n"
    "groups, which the tsnap format does not hold (but for tsnap_pytype, and\n"
    "empty groups come along too).  A single string (str or bytes) is copied\n"
    "as a string.  A dataset tsnap cannot represent (arrays of strings,\n"
    "compounds other than complex) fails the copy, unless\n"
    "--skip-unsupported.  The recorded checksums of SRC are checked on the\n"
    "way (unless --no-verify): a damaged SRC is never copied into a good DST.\n"
    "\n"
    "DST appears only when complete (written under a temporary name, then\n"
    "renamed); an existing DST is left alone unless --force.  A tensor that\n"
    "lies flat in SRC goes from a memory mapping of SRC straight to the\n"
    "writer; any other is read into memory first, one tensor at a time: up to\n"
    "--memory bytes (default: half the physical memory) in anonymous memory,\n"
    "larger ones in a temporary file in DST's directory (deleted when done)\n"
    "whose pages the system writes back instead of running out of memory;\n"
    "that file needs as much free disk space as the tensor.\n"
    "\n"
    "Options:\n"
    "  --compression C[:LEVEL]  none (default), deflate (gzip), zstd or lz4;\n"
    "                           levels: deflate 1..9, zstd -7..22, lz4 none\n"
    "  --chunk-bytes N          target chunk size (default 4M; at most 2G)\n"
    "  --shuffle on|off|auto|bit  byte shuffle (on), bit shuffle (bit) or neither\n"
    "                           before compressing (default auto: bit before zstd,\n"
    "                           byte otherwise, for types wider than a byte)\n"
    "  --no-checksum            record no checksums in DST\n"
    "  --no-verify              do not check SRC's recorded checksums\n"
    "  --skip-unsupported       skip datasets tsnap cannot represent, warning\n"
    "  --memory N               tensors larger than N are held in a temporary\n"
    "                           file (default: half the physical memory)\n"
    "  -f, --force              replace an existing DST\n"
    "  -q, --quiet              print only warnings and errors\n"
    "  -h, --help               this text\n"
    "\n"
    "Exit status: 0 copied, 1 nothing written (SRC missing or unreadable, DST\n"
    "exists, a dataset unsupported or damaged), 2 a usage error.\n"
    "\n"
    "Examples:\n"
    "  tsnap cp from_h5py.h5 mappable.h5        # gzip'ed h5py file -> mappable\n"
    "  tsnap cp --compression zstd:3 step0.h5 archive/\n"
    "  tsnap cp --chunk-bytes 64M --force big.h5 big.h5   # re-chunk in place\n";

typedef struct options {
    tsnap_write_options write;
    uint64_t memory;
    int verify, skip_unsupported, quiet;
} options;

typedef struct job {
    const char *src, *dst;
    char dst_dir[4200];  /* for the temporary files of large tensors */
    tsnap_reader *r;
    tsnap_writer *w;
    char *skip;          /* skip[i]: dataset i is not copied */
    const options *o;
    uint64_t copied;     /* bytes of the tensors copied so far */
    cli_progress p;
} job;

/* ---- memory for a tensor that cannot be mapped ---- */

typedef struct holding {
    void *data;
    size_t len;
} holding;

/*
 * `n` bytes of zeroed memory: anonymous up to o->memory, beyond that a
 * shared mapping of an unlinked file in DST's directory, so that pages
 * the writer has read can go back to the disk instead of filling memory.
 * The file's blocks are reserved first: a full disk is an error here, not
 * a SIGBUS later.
 */
static int hold(holding *h, uint64_t n, job *j, const char *name)
{
    char tmpl[4300];
    int fd, e;

    cli_progress_clear(&j->p);
    h->data = NULL;
    h->len = (size_t)(n ? n : 1);
    if ((uint64_t)h->len != (n ? n : 1))
        return cli_error("%s: tensor '%s' is too large for this machine", j->src, name), -1;
    if (n <= j->o->memory) {
        h->data = mmap(NULL, h->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (h->data != MAP_FAILED)
            return 0;
        h->data = NULL;
        if (errno != ENOMEM)
            return cli_error("%s: tensor '%s': cannot allocate memory: %s", j->src, name,
                             strerror(errno)), -1;
        /* no room in memory after all: fall through to a file */
    }
    fd = open(j->dst_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        /* a file system without O_TMPFILE */
        snprintf(tmpl, sizeof tmpl, "%s/.tsnap-cp-XXXXXX", j->dst_dir);
        if ((fd = mkstemp(tmpl)) >= 0)
            unlink(tmpl);
    }
    if (fd < 0)
        return cli_error("%s: tensor '%s': cannot create a temporary file in %s: %s", j->src,
                         name, j->dst_dir, strerror(errno)), -1;
    if ((e = posix_fallocate(fd, 0, (off_t)h->len)) != 0) {
        char size[16];
        close(fd);
        return cli_error("%s: tensor '%s': no room for its %s temporary copy in %s: %s", j->src,
                         name, cli_bytes_str(n, size, sizeof size), j->dst_dir, strerror(e)), -1;
    }
    h->data = mmap(NULL, h->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    e = errno;
    close(fd);  /* the mapping keeps the file; it goes when unmapped */
    if (h->data == MAP_FAILED) {
        h->data = NULL;
        return cli_error("%s: tensor '%s': cannot map a temporary file in %s: %s", j->src, name,
                         j->dst_dir, strerror(e)), -1;
    }
    return 0;
}

static void release(holding *h)
{
    if (h->data)
        munmap(h->data, h->len);
    h->data = NULL;
}

/* ---- attributes ---- */

static int reserved_root_key(const char *key)
{
    return !strcmp(key, "created") || !strcmp(key, "producer");
}

/* Copies the attributes of `tensor` (NULL: the root's). */
static void copy_attrs(job *j, const char *tensor)
{
    size_t n = 0;

    if (tsnap_reader_attr_count(j->r, tensor, &n) < 0) {
        cli_progress_clear(&j->p);
        cli_warn("%s; its attributes are not copied", tsnap_errmsg());
        return;
    }
    for (size_t i = 0; i < n; i++) {
        tsnap_attr a;
        int err = 0;
        if (tsnap_reader_attr(j->r, tensor, i, &a) < 0) {
            cli_progress_clear(&j->p);
            cli_warn("%s; skipped", tsnap_errmsg());
            continue;
        }
        if (!strncmp(a.key, "tsnap_", 6))
            continue;  /* the writer writes its own */
        if (!tensor && reserved_root_key(a.key)) {
            if (tsnap_reader_format_version(j->r) == 0) {
                cli_progress_clear(&j->p);
                cli_warn("%s: root attribute '%s' is reserved in tsnap files; not copied",
                         j->src, a.key);
            }
            continue;
        }
        if (a.kind == TSNAP_ATTR_STRING)
            err = tsnap_writer_set_attr_string(j->w, tensor, a.key, a.string);
        else if (a.kind == TSNAP_ATTR_NUMERIC)
            err = tsnap_writer_set_attr(j->w, tensor, a.key, &a.value);
        cli_progress_clear(&j->p);
        if (a.kind == TSNAP_ATTR_OTHER)
            cli_warn("%s: %s%s%sattribute '%s' (%s) cannot be copied; skipped", j->src,
                     tensor ? "tensor '" : "root ", tensor ? tensor : "", tensor ? "': " : "",
                     a.key, a.string ? a.string : "an unknown type");
        else if (err < 0)
            cli_warn("%s; attribute '%s' skipped", tsnap_errmsg(), a.key);
    }
}

static int lib_error(job *j);

/* The tsnap_pytype of `name` (a tensor, string or group), if it has one. */
static void copy_pytype(job *j, const char *name)
{
    tsnap_attr a;

    if (tsnap_reader_attr_find(j->r, name, "tsnap_pytype", &a) == 0 &&
        a.kind == TSNAP_ATTR_STRING && tsnap_writer_set_pytype(j->w, name, a.string) < 0) {
        cli_progress_clear(&j->p);
        cli_warn("%s; its tsnap_pytype is not copied", tsnap_errmsg());
    }
}

/* Whether a sorted list of n names holds one under group `g` ("g/..."). */
static int has_member(const char *(*name)(const tsnap_reader *, size_t), const tsnap_reader *r,
                      size_t n, const char *g)
{
    size_t lo = 0, hi = n, len = strlen(g);
    while (lo < hi) { /* the first name not below "g/" */
        size_t mid = lo + (hi - lo) / 2;
        const char *m = name(r, mid);
        int c = strncmp(m, g, len);
        if (c < 0 || (c == 0 && (unsigned char)m[len] < '/'))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && strncmp(name(r, lo), g, len) == 0 && name(r, lo)[len] == '/';
}

/* The groups that hold nothing, which no tensor's name would make. */
static int copy_empty_groups(job *j)
{
    size_t ng = tsnap_reader_group_count(j->r), nt = tsnap_reader_count(j->r);
    for (size_t i = 0; i < ng; i++) {
        const char *g = tsnap_reader_group_name(j->r, i);
        if (has_member(tsnap_reader_group_name, j->r, ng, g) ||
            has_member(tsnap_reader_name, j->r, nt, g))
            continue;
        if (tsnap_writer_put_group(j->w, g) < 0)
            return lib_error(j);
    }
    return 0;
}

/* A single string dataset.  0 copied, -1 failed (after the message). */
static int copy_string(job *j, const char *name)
{
    tsnap_string_kind kind = TSNAP_STRING_UTF8;
    char *data = NULL;
    size_t len = 0;
    int err = 0;

    if (cli_read_string(j->r, name, &data, &len, &kind) < 0 ||
        (err = tsnap_writer_put_string(j->w, name, data, len, kind)) < 0) {
        free(data);
        return lib_error(j);
    }
    free(data);
    copy_attrs(j, name);
    copy_pytype(j, name);
    if (!j->o->quiet) {
        char size[16];
        cli_progress_clear(&j->p);
        printf("%s: %s, %s\n", name, cli_string_kind(kind),
               cli_bytes_str(len, size, sizeof size));
    }
    return 0;
}

/* Groups other than the root with attributes: the format has no place for
 * them.  HDF5 itself is asked, as the library lists datasets only. */
typedef struct group_attrs {
    size_t groups;
    char first[1100];
} group_attrs;

static herr_t visit_group(hid_t obj, const char *name, const H5O_info_t *info, void *data)
{
    group_attrs *g = data;
    /* tsnap_pytype, the one attribute a group may have, is copied */
    hsize_t own = info->num_attrs == 1 && strcmp(name, ".") &&
                  H5Aexists_by_name(obj, name, "tsnap_pytype", H5P_DEFAULT) > 0;
    if (info->type == H5O_TYPE_GROUP && strcmp(name, ".") && info->num_attrs > own &&
        g->groups++ == 0)
        snprintf(g->first, sizeof g->first, "%s", name);
    return 0;
}

static void warn_group_attrs(const char *src)
{
    group_attrs g = {0, ""};
    hid_t f;

    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if ((f = H5Fopen(src, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0)
        return;
    H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_INC, visit_group, &g, H5O_INFO_BASIC | H5O_INFO_NUM_ATTRS);
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    if (g.groups)
        cli_warn("%s: the attributes of %zu group%s ('%s'%s) are not copied: tsnap files keep "
                 "attributes on the root and on tensors only", src, g.groups,
                 g.groups == 1 ? "" : "s", g.first, g.groups > 1 ? " and others" : "");
}

/* ---- tensors ---- */

/* Fills `t` as a C-contiguous host tensor of `info` at `data`. */
static void host_tensor(DLTensor *t, void *data, tsnap_tensor_info *info)
{
    memset(t, 0, sizeof *t);
    t->data = data;
    t->device.device_type = kDLCPU;
    t->ndim = info->ndim;
    t->shape = info->shape;
    tsnap_dtype_to_dlpack(&t->dtype, info->dtype);
}

/* The library's message for a failed copy.  Returns -1. */
static int lib_error(job *j)
{
    cli_progress_end(&j->p);
    cli_error("%s; nothing written to %s", tsnap_errmsg(), j->dst);
    return -1;
}

/* Reads all of `name` into memory: in one verifying pass when it has a
 * checksum to check, else in slabs that move the progress bar. */
static int read_whole(job *j, const char *name, tsnap_tensor_info *info, holding *h)
{
    size_t itemsize = tsnap_dtype_size(info->dtype);
    DLTensor t;
    cli_slabs s;

    if (hold(h, info->nbytes, j, name) < 0)
        return -1;
    if (j->o->verify && (info->checksum[0] || info->map_status == TSNAP_MAP_VIRTUAL)) {
        host_tensor(&t, h->data, info);
        if (tsnap_reader_read_verified(j->r, name, &t) < 0)
            return lib_error(j);
        cli_progress_add(&j->p, info->nbytes / 2);
        return 0;
    }
    cli_slabs_init(&s, info, (uint64_t)64 << 20);
    while (cli_slabs_next(&s)) {
        if (cli_slabs_read(&s, j->r, name, info->dtype, (char *)h->data + s.offset * itemsize) < 0)
            return lib_error(j);
        cli_progress_add(&j->p, s.n * itemsize / 2);
    }
    return 0;
}

/* 0 copied, 1 skipped (after a warning), -1 failed (after the message). */
static int copy_tensor(job *j, const char *name)
{
    tsnap_tensor_info info;
    tsnap_mapping *m = NULL;
    holding h = {NULL, 0};
    const DLTensor *src;
    DLTensor t;
    uint64_t before = j->p.done;
    int err;

    if (tsnap_reader_describe(j->r, name, &info) < 0)
        return lib_error(j);
    if (info.map_status == TSNAP_MAP_OK || info.map_status == TSNAP_MAP_EMPTY) {
        /* The put reads the mapping; a bad checksum must stop it first. */
        if (j->o->verify && info.checksum[0] && tsnap_reader_verify(j->r, name) < 0)
            return lib_error(j);
        if (tsnap_mapping_create(&m, j->r, name) < 0)
            m = NULL;  /* describe said yes; read it instead */
    }
    if (m) {
        src = tsnap_mapping_tensor(m);
    } else {
        if (read_whole(j, name, &info, &h) < 0) {
            release(&h);
            return -1;
        }
        host_tensor(&t, h.data, &info);
        src = &t;
    }
    err = tsnap_writer_put(j->w, name, src);
    tsnap_mapping_free(m);
    release(&h);
    if (err == TSNAP_EINVAL && j->o->skip_unsupported) {
        /* a name HDF5 took and tsnap does not; the writer can go on */
        char shown[1100];
        size_t k = 0;
        for (const char *c = name; *c && k + 5 < sizeof shown; c++)
            k += (size_t)snprintf(shown + k, sizeof shown - k,
                                  (unsigned char)*c < 0x20 ? "\\x%02x" : "%c", *c);
        cli_progress_clear(&j->p);
        cli_warn("%s: dataset '%s' skipped: %s", j->src, shown, tsnap_errmsg());
        return 1;
    }
    if (err < 0)
        return lib_error(j);
    j->copied += info.nbytes;
    cli_progress_add(&j->p, info.nbytes - (j->p.done - before));
    copy_attrs(j, name);
    copy_pytype(j, name);
    if (!j->o->quiet) {
        char dims[400], size[16];
        cli_progress_clear(&j->p);
        printf("%s: %s %s, %s\n", name, tsnap_dtype_name(info.dtype),
               cli_shape_str(info.ndim, info.shape, dims, sizeof dims),
               cli_bytes_str(info.nbytes, size, sizeof size));
    }
    return 0;
}

/*
 * Before anything is written: every dataset must be one tsnap can
 * represent (or be skipped).  Returns the bytes to copy, or -1.
 */
static int64_t plan(job *j)
{
    size_t n = tsnap_reader_count(j->r);
    int64_t total = 0;

    if (n && !(j->skip = calloc(n, 1)))
        return cli_error("out of memory"), -1;
    for (size_t i = 0; i < n; i++) {
        tsnap_tensor_info info;
        int err = tsnap_reader_describe(j->r, tsnap_reader_name(j->r, i), &info);
        if (err == TSNAP_ETYPE && info.string) {
            j->skip[i] = 2; /* a string: copied as one */
        } else if (err == TSNAP_ETYPE && j->o->skip_unsupported) {
            cli_warn("%s; skipped", tsnap_errmsg());
            j->skip[i] = 1;
        } else if (err < 0) {
            cli_error("%s%s", tsnap_errmsg(),
                      err == TSNAP_ETYPE ? " (--skip-unsupported copies the rest)" : "");
            return -1;
        } else {
            total += (int64_t)info.nbytes;
        }
    }
    return total;
}

/* DST, or DST/<basename of SRC> when DST is a directory; and the
 * directory the copy lands in. */
static int destination(const char *src, const char *dst, char *path, size_t len, char *dir,
                       size_t dlen)
{
    char *copy;
    int n;

    if (cli_is_dir(dst) == 1) {
        const char *base = strrchr(src, '/');
        n = snprintf(path, len, "%s%s%s", dst, dst[strlen(dst) - 1] == '/' ? "" : "/",
                     base ? base + 1 : src);
        if (n < 0 || (size_t)n >= len || (size_t)snprintf(dir, dlen, "%s", dst) >= dlen)
            return -1;
        return 0;
    }
    if ((size_t)snprintf(path, len, "%s", dst) >= len || !(copy = strdup(dst)))
        return -1;
    n = snprintf(dir, dlen, "%s", dirname(copy));
    free(copy);
    return n < 0 || (size_t)n >= dlen ? -1 : 0;
}

static int cp(const char *src, const char *dst_arg, const options *o)
{
    char dst[4200];
    job j;
    int64_t total;
    size_t n, copied = 0;
    int status = CLI_FAIL, err;
    struct stat st;

    memset(&j, 0, sizeof j);
    j.src = src;
    j.dst = dst;
    j.o = o;
    if (destination(src, dst_arg, dst, sizeof dst, j.dst_dir, sizeof j.dst_dir) < 0)
        return cli_error("%s: path too long", dst_arg);
    if (stat(dst, &st) == 0 && !S_ISREG(st.st_mode))
        return cli_error("%s is not a regular file; not replaced", dst);
    if (cli_open(&j.r, src) < 0)
        return CLI_FAIL;
    if ((err = tsnap_writer_create(&j.w, dst, &o->write)) < 0) {
        if (err == TSNAP_EEXISTS)
            cli_error("%s exists; --force replaces it", dst);
        else
            cli_error("%s", tsnap_errmsg());
        goto done;
    }
    if ((total = plan(&j)) < 0)
        goto done;
    warn_group_attrs(src);
    copy_attrs(&j, NULL);
    if (copy_empty_groups(&j) < 0)
        goto done;
    cli_progress_start(&j.p, "cp", (uint64_t)total);
    n = tsnap_reader_count(j.r);
    for (size_t i = 0; i < n; i++) {
        int one;
        if (j.skip[i] == 1)
            continue;
        one = j.skip[i] == 2 ? copy_string(&j, tsnap_reader_name(j.r, i))
                             : copy_tensor(&j, tsnap_reader_name(j.r, i));
        if (one < 0) {
            cli_progress_end(&j.p);
            goto done;
        }
        copied += one == 0;
    }
    for (size_t i = 0; i < tsnap_reader_group_count(j.r); i++)
        copy_pytype(&j, tsnap_reader_group_name(j.r, i));
    cli_progress_end(&j.p);
    if (tsnap_writer_commit(j.w) < 0) {
        cli_error("%s", tsnap_errmsg());
        goto done;
    }
    if (!o->quiet) {
        char a[16], b[16];
        printf("%s -> %s: %zu tensor%s, %s (%s in the file)\n", src, dst, copied,
               copied == 1 ? "" : "s", cli_bytes_str(j.copied, a, sizeof a),
               cli_bytes_str(stat(dst, &st) == 0 ? (uint64_t)st.st_size : 0, b, sizeof b));
    }
    status = CLI_OK;
done:
    tsnap_writer_free(j.w);  /* aborts an uncommitted one: nothing under DST */
    tsnap_reader_free(j.r);
    free(j.skip);
    return status;
}

/* ---- options ---- */

static int parse_compression(const char *s, tsnap_write_options *w)
{
    static const struct { const char *name; tsnap_codec codec; int lo, hi; } codecs[] = {
        {"none", TSNAP_CODEC_NONE, 0, 0},     {"deflate", TSNAP_CODEC_DEFLATE, 1, 9},
        {"gzip", TSNAP_CODEC_DEFLATE, 1, 9},  {"zstd", TSNAP_CODEC_ZSTD, -7, 22},
        {"lz4", TSNAP_CODEC_LZ4, 0, 0},
    };
    const char *colon = strchr(s, ':');
    size_t len = colon ? (size_t)(colon - s) : strlen(s);

    for (size_t i = 0; i < sizeof codecs / sizeof codecs[0]; i++) {
        char *end;
        long level;
        if (strlen(codecs[i].name) != len || strncmp(s, codecs[i].name, len))
            continue;
        w->codec = codecs[i].codec;
        w->level = 0;
        if (!colon)
            return 0;
        if (codecs[i].lo == codecs[i].hi)
            return cli_usage("--compression %s takes no level", codecs[i].name), -1;
        errno = 0;
        level = strtol(colon + 1, &end, 10);
        if (!colon[1] || *end || errno || level < codecs[i].lo || level > codecs[i].hi)
            return cli_usage("--compression %s wants a level from %d to %d, not '%s'",
                             codecs[i].name, codecs[i].lo, codecs[i].hi, colon + 1), -1;
        w->level = (int)level;
        return 0;
    }
    return cli_usage("--compression wants none, deflate, zstd or lz4 (with :LEVEL), not '%s'",
                     s), -1;
}

static int parse(int argc, char **argv, options *o, int *done)
{
    static const struct option longopts[] = {
        {"compression", required_argument, NULL, 'c'},
        {"chunk-bytes", required_argument, NULL, 'b'},
        {"shuffle", required_argument, NULL, 's'},
        {"no-checksum", no_argument, NULL, 'n'},
        {"no-verify", no_argument, NULL, 'V'},
        {"skip-unsupported", no_argument, NULL, 'u'},
        {"memory", required_argument, NULL, 'm'},
        {"force", no_argument, NULL, 'f'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    uint64_t bytes;
    int c;

    while ((c = cli_getopt(argc, argv, "hfq", longopts, done)) != -1) {
        switch (c) {
        case 'c':
            if (parse_compression(optarg, &o->write) < 0)
                return -1;
            break;
        case 'b':
            if (cli_parse_bytes("--chunk-bytes", optarg, &bytes) < 0)
                return -1;
            if (bytes == 0 || bytes > ((uint64_t)2 << 30))
                return cli_usage("--chunk-bytes wants 1 byte to 2G, not '%s'", optarg), -1;
            o->write.chunk_bytes = (size_t)bytes;
            break;
        case 's':
            if (!strcmp(optarg, "on"))
                o->write.shuffle = 1;
            else if (!strcmp(optarg, "off"))
                o->write.shuffle = 0;
            else if (!strcmp(optarg, "auto"))
                o->write.shuffle = -1;
            else if (!strcmp(optarg, "bit"))
                o->write.shuffle = TSNAP_SHUFFLE_BIT;
            else
                return cli_usage("--shuffle wants on, off, auto or bit, not '%s'", optarg), -1;
            break;
        case 'n': o->write.checksum = 0; break;
        case 'V': o->verify = 0; break;
        case 'u': o->skip_unsupported = 1; break;
        case 'm':
            if (cli_parse_bytes("--memory", optarg, &o->memory) < 0)
                return -1;
            break;
        case 'f': o->write.overwrite = 1; break;
        case 'q': o->quiet = 1; break;
        default: return -1;
        }
    }
    return 0;
}

static int run(int argc, char **argv)
{
    options o;
    int done = 0;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);

    memset(&o, 0, sizeof o);
    tsnap_write_options_init(&o.write, TSNAP_WRITE_OPTIONS_VERSION);
    o.write.overwrite = 0;
    o.verify = 1;
    o.memory = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page / 2 : (uint64_t)1 << 30;
    if (parse(argc, argv, &o, &done) < 0)
        return CLI_USAGE;
    if (done)
        return CLI_OK;
    if (argc - optind != 2)
        return cli_usage(argc - optind < 2 ? "copy what where? (tsnap cp SRC DST)"
                                           : "one SRC and one DST (tsnap cp SRC DST)");
    return cp(argv[optind], argv[optind + 1], &o);
}

const cli_command cli_cp = {"cp", "copy any HDF5 file into a tsnap snapshot, re-chunked and "
                            "recompressed", help, run};

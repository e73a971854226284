/*
 * export.c - `tsnap export`: tensors to .npy files, in bounded slabs, so
 * that a tensor of any size exports in a few tens of MiB of memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const char help[] =
    "usage: tsnap export [--raw] [--force] [-q] PATH NAME -o OUT.npy\n"
    "       tsnap export [--raw] [--force] [-q] PATH [NAME...] -o DIR\n"
    "\n"
    "Writes tensors of a snapshot (or of any HDF5 file of numeric datasets) as\n"
    "NumPy .npy files that np.load reads, C order, native byte order.  With one\n"
    "NAME, OUT is the file to write (or, if it is a directory, OUT/NAME.npy);\n"
    "with no NAME every tensor, with several the named ones, go to DIR/NAME.npy,\n"
    "where each '/' in a name makes a subdirectory.\n"
    "\n"
    "NumPy has no bfloat16, float8 or complex32: bfloat16, float8_e4m3fn and\n"
    "float8_e5m2 are widened to float32 and complex32 to complex64, exactly\n"
    "(every value, NaN, infinity and -0.0 included, is the same number), and\n"
    "stderr says so.  With --raw they keep their bits instead: bfloat16 as\n"
    "uint16, float8 as uint8, complex32 as float16 with a trailing axis of 2\n"
    "(view them with ml_dtypes: np.load(f).view(ml_dtypes.bfloat16)).\n"
    "\n"
    "Each file is written under a temporary name in its directory and renamed\n"
    "when complete; an existing file is left alone unless --force.  The data\n"
    "goes through slabs of bounded size, never the whole tensor in memory.  A\n"
    "tensor that cannot be read is named on stderr; the others are still\n"
    "written, and the exit status is 1.\n"
    "\n"
    "Options:\n"
    "  -o, --output OUT    the .npy file (one NAME) or the directory to write\n"
    "  --raw               store bfloat16, float8 and complex32 as their bits\n"
    "  -f, --force         replace existing files\n"
    "  --slab-bytes N      memory for one slab of values (default 16M)\n"
    "  -q, --quiet         print only errors\n"
    "  -h, --help          this text\n"
    "\n"
    "Exit status: 0 all written, 1 a file or tensor failed, 2 a usage error.\n"
    "\n"
    "Examples:\n"
    "  tsnap export step0.h5 fields/u -o u.npy\n"
    "  tsnap export step0.h5 -o step0/        # step0/fields/u.npy, ...\n"
    "  tsnap export --raw weights.h5 w_bf16 -o w_bits.npy\n"
    "  python -c \"import numpy as np; print(np.load('u.npy').shape)\"\n";

typedef struct options {
    const char *output;
    int raw, force, quiet;
    uint64_t slab_bytes;
} options;

/* What a tensor becomes in the file: its .npy type and element size. */
typedef struct npy_type {
    char descr[8];
    size_t elem_bytes;  /* bytes of one tensor element in the file */
    int pair_axis;  /* 1: a trailing axis of 2 (complex32 --raw) */
    int widened;    /* converted to a wider type */
} npy_type;

static int little_endian(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

static void npy_type_of(tsnap_dtype dt, int raw, npy_type *t)
{
    char order = little_endian() ? '<' : '>';
    char kind;
    size_t size = tsnap_dtype_size(dt);

    memset(t, 0, sizeof *t);
    switch (dt) {
    case TSNAP_BOOL: kind = 'b'; break;
    case TSNAP_INT8: case TSNAP_INT16: case TSNAP_INT32: case TSNAP_INT64: kind = 'i'; break;
    case TSNAP_UINT8: case TSNAP_UINT16: case TSNAP_UINT32: case TSNAP_UINT64: kind = 'u'; break;
    case TSNAP_COMPLEX64: case TSNAP_COMPLEX128: kind = 'c'; break;
    case TSNAP_BFLOAT16: case TSNAP_FLOAT8_E4M3FN: case TSNAP_FLOAT8_E5M2:
        kind = raw ? 'u' : 'f';
        t->widened = !raw;
        size = raw ? size : 4;
        break;
    case TSNAP_COMPLEX32:
        kind = raw ? 'f' : 'c';
        t->widened = !raw;
        t->pair_axis = raw;
        size = raw ? 2 : 8;
        break;
    default: kind = 'f';
    }
    /* One-byte types have no byte order: NumPy writes '|'. */
    snprintf(t->descr, sizeof t->descr, "%c%c%zu", size == 1 ? '|' : order, kind, size);
    t->elem_bytes = t->pair_axis ? 2 * size : size;
}

/* Converts n elements of `dt` to their widened type (exactly). */
static void widen(tsnap_dtype dt, const void *in, void *out, uint64_t n)
{
    float *f = out;
    if (dt == TSNAP_COMPLEX32) {
        for (uint64_t i = 0; i < 2 * n; i++)
            f[i] = cli_half_to_float(((const uint16_t *)in)[i]);
        return;
    }
    for (uint64_t i = 0; i < n; i++)
        f[i] = (float)cli_value(dt, in, i);
}

/*
 * The .npy header as NumPy writes it: magic, version, length, then the
 * dict padded with spaces and a newline so that the data starts at a
 * multiple of 64.  Version 1.0 unless the header needs more than 64 KiB.
 */
static size_t npy_header(char *buf, size_t cap, const npy_type *t, const tsnap_tensor_info *info)
{
    int64_t shape[TSNAP_MAX_NDIM + 1];
    char dims[800], dict[1000];
    int ndim = info->ndim, n;
    size_t pre, total;

    memcpy(shape, info->shape, (size_t)ndim * sizeof *shape);
    if (t->pair_axis)
        shape[ndim++] = 2;
    cli_shape_str(ndim, shape, dims, sizeof dims);
    n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                 t->descr, dims);
    if (n < 0 || (size_t)n >= sizeof dict)
        return 0;
    /* 2.0 only past 64 KiB of header, which 32 dimensions never reach */
    pre = 10;
    total = (pre + (size_t)n + 1 + 63) / 64 * 64;
    if (total - pre > 65535) {
        pre = 12;
        total = (pre + (size_t)n + 1 + 63) / 64 * 64;
    }
    if (total > cap)
        return 0;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = pre == 10 ? 1 : 2;
    buf[7] = 0;
    for (size_t i = 0; i < pre - 8; i++)  /* the header length, little-endian */
        buf[8 + i] = (char)(((total - pre) >> (8 * i)) & 0xff);
    memcpy(buf + pre, dict, (size_t)n);
    memset(buf + pre + n, ' ', total - pre - (size_t)n - 1);
    buf[total - 1] = '\n';
    return total;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Creates the directories above `path` (like mkdir -p). */
static int make_parents(char *path)
{
    for (char *p = strchr(path + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        if (mkdir(path, 0777) < 0 && errno != EEXIST) {
            int e = errno;
            *p = '/';
            errno = e;
            return -1;
        }
        *p = '/';
    }
    return 0;
}

/* Moves the finished temporary file to `dst`; without `force`, never over
 * an existing file, even one that appeared while we wrote. */
static int publish(const char *tmp, const char *dst, int force)
{
    if (force)
        return rename(tmp, dst);
#ifdef RENAME_NOREPLACE
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
#endif
    /* A file system without RENAME_NOREPLACE: link() never replaces either. */
    if (link(tmp, dst) < 0)
        return -1;
    unlink(tmp);
    return 0;
}

/* The slab walk into the open file: header, then each slab as it comes. */
static int write_data(int fd, tsnap_reader *r, const char *path, const char *name,
                      const char *dst, const tsnap_tensor_info *info, const npy_type *t,
                      const options *o, cli_progress *p)
{
    size_t in_size = tsnap_dtype_size(info->dtype);
    /* The slab budget covers both buffers of a widening conversion. */
    uint64_t budget = o->slab_bytes / (t->widened ? 1 + t->elem_bytes / in_size : 1);
    void *in = NULL, *out = NULL;
    cli_slabs s;
    int err = 0;

    cli_slabs_init(&s, info, budget ? budget : 1);
    while (!err && cli_slabs_next(&s)) {
        if (!in) {
            /* The first slab is the largest. */
            in = malloc(s.n * in_size);
            out = t->widened ? malloc(s.n * t->elem_bytes) : in;
            if (!in || !out) {
                cli_progress_clear(p);
                err = cli_error("%s: tensor '%s': out of memory for a slab of %" PRIu64 " bytes",
                                path, name, s.n * in_size);
                break;
            }
        }
        if (cli_slabs_read(&s, r, name, info->dtype, in) < 0) {
            cli_progress_clear(p);
            err = cli_error("%s", tsnap_errmsg());
            break;
        }
        if (t->widened)
            widen(info->dtype, in, out, s.n);
        if (write_all(fd, out, s.n * t->elem_bytes) < 0) {
            cli_progress_clear(p);
            err = cli_error("cannot write %s (tensor '%s' of %s): %s", dst, name, path,
                            strerror(errno));
            break;
        }
        cli_progress_add(p, s.n * in_size);
    }
    if (out != in)
        free(out);
    free(in);
    return err ? -1 : 0;
}

/* Exports one tensor to `dst`.  0 or -1 (after the message). */
static int export_one(tsnap_reader *r, const char *path, const char *name, const char *dst,
                      const options *o, cli_progress *p)
{
    tsnap_tensor_info info;
    npy_type t;
    char header[1100], *tmp = NULL, size[16];
    const char *slash = strrchr(dst, '/');
    size_t len;
    int fd = -1, err = -1, created = 0, e;
    struct stat st;
    mode_t mask;

    if (tsnap_reader_describe(r, name, &info) < 0) {
        cli_progress_clear(p);
        return cli_error("%s", tsnap_errmsg()), -1;
    }
    if (lstat(dst, &st) == 0 && (!o->force || (stat(dst, &st) == 0 && !S_ISREG(st.st_mode)))) {
        cli_progress_clear(p);
        if (o->force)
            cli_error("%s is not a regular file; not replaced by tensor '%s' of %s", dst, name,
                      path);
        else
            cli_error("%s exists (tensor '%s' of %s); --force replaces it", dst, name, path);
        goto done;
    }
    npy_type_of(info.dtype, o->raw, &t);
    if (!(len = npy_header(header, sizeof header, &t, &info))) {
        cli_error("%s: tensor '%s': shape too long for a .npy header", path, name);
        goto done;
    }
    /* The temporary file sits beside its final name, so that rename is atomic. */
    if (!(tmp = malloc(strlen(dst) + 32))) {
        cli_error("out of memory");
        goto done;
    }
    sprintf(tmp, "%.*s.%s.XXXXXX", slash ? (int)(slash - dst + 1) : 0, dst,
            slash ? slash + 1 : dst);
    if ((fd = mkstemp(tmp)) < 0) {
        cli_progress_clear(p);
        cli_error("cannot create %s: %s", dst, strerror(errno));
        goto done;
    }
    created = 1;
    mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) < 0 || write_all(fd, header, len) < 0) {
        cli_progress_clear(p);
        cli_error("cannot write %s: %s", dst, strerror(errno));
        goto done;
    }
    if (write_data(fd, r, path, name, dst, &info, &t, o, p) < 0)
        goto done;
    /* A close that fails may have lost data too. */
    e = fsync(fd) < 0 ? errno : 0;
    if (close(fd) < 0 && !e)
        e = errno;
    fd = -1;
    if (e) {
        cli_progress_clear(p);
        cli_error("cannot write %s: %s", dst, strerror(e));
        goto done;
    }
    if (publish(tmp, dst, o->force) < 0) {
        cli_progress_clear(p);
        if (errno == EEXIST)
            cli_error("%s exists (tensor '%s' of %s); --force replaces it", dst, name, path);
        else
            cli_error("cannot write %s: %s", dst, strerror(errno));
        goto done;
    }
    err = 0;
    cli_progress_clear(p);
    if (t.widened)
        cli_warn("%s: tensor '%s': %s widened exactly to %s (NumPy has none; --raw keeps the "
                 "bits)", path, name, tsnap_dtype_name(info.dtype),
                 info.dtype == TSNAP_COMPLEX32 ? "complex64" : "float32");
    if (!o->quiet) {
        char dims[400];
        printf("%s -> %s  (%s %s, %s)\n", name, dst, tsnap_dtype_name(info.dtype),
               cli_shape_str(info.ndim, info.shape, dims, sizeof dims),
               cli_bytes_str(info.nbytes, size, sizeof size));
    }
done:
    if (fd >= 0)
        close(fd);
    if (err < 0 && created)
        unlink(tmp);
    free(tmp);
    return err;
}

/* DIR/NAME.npy, or NULL (after the message) for a name that would leave
 * DIR: an empty, "." or ".." part, which a foreign HDF5 file may hold. */
static char *path_in(const char *path, const char *dir, const char *name)
{
    size_t dlen = strlen(dir);
    char *out;

    for (const char *p = name; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return cli_error("%s: tensor '%s': its name cannot be a path under %s", path, name,
                             dir), NULL;
        p += n + (p[n] == '/');
    }
    if (!*name)
        return cli_error("%s: a tensor with an empty name cannot be a path under %s", path, dir),
               NULL;
    while (dlen > 1 && dir[dlen - 1] == '/')
        dlen--;
    if (!(out = malloc(dlen + strlen(name) + 6)))
        return cli_error("out of memory"), NULL;
    sprintf(out, "%.*s/%s.npy", (int)dlen, dir, name);
    return out;
}

static int export_to_dir(tsnap_reader *r, const char *path, char **names, size_t n,
                         const options *o)
{
    uint64_t total = 0;
    size_t failed = 0, strings = 0, count = names ? n : tsnap_reader_count(r);
    char *below = malloc(strlen(o->output) + 3);
    cli_progress p;

    if (!below)
        return cli_error("out of memory");
    sprintf(below, "%s/.", o->output);
    if (make_parents(below) < 0) {
        cli_error("cannot create %s: %s", o->output, strerror(errno));
        free(below);
        return CLI_FAIL;
    }
    free(below);
    if (cli_is_dir(o->output) != 1)
        return cli_error("%s is not a directory", o->output);
    for (size_t i = 0; i < count; i++) {
        tsnap_tensor_info info;
        if (tsnap_reader_describe(r, names ? names[i] : tsnap_reader_name(r, i), &info) == 0)
            total += info.nbytes;
    }
    cli_progress_start(&p, "export", total);
    for (size_t i = 0; i < count; i++) {
        const char *name = names ? names[i] : tsnap_reader_name(r, i);
        tsnap_tensor_info info;
        if (tsnap_reader_describe(r, name, &info) == TSNAP_ETYPE && info.string) {
            cli_progress_clear(&p);
            cli_warn("%s: '%s' is a string (%s), not a tensor: not exported", path, name,
                     cli_string_kind(info.string));
            strings++;
            continue;
        }
        char *dst = path_in(path, o->output, name);
        if (!dst || make_parents(dst) < 0) {
            if (dst)
                cli_error("cannot create the directories of %s: %s", dst, strerror(errno));
            failed++;
        } else if (export_one(r, path, name, dst, o, &p) < 0) {
            failed++;
        }
        free(dst);
    }
    cli_progress_end(&p);
    if (!o->quiet)
        printf("%zu tensor%s written to %s\n", count - failed - strings,
               count - failed - strings == 1 ? "" : "s", o->output);
    if (failed)
        cli_error("%zu of %zu tensors not exported", failed, count);
    return failed ? CLI_FAIL : CLI_OK;
}

static int export_file(const char *path, char **names, size_t n, const options *o)
{
    tsnap_reader *r;
    int status;

    if (cli_open(&r, path) < 0)
        return CLI_FAIL;
    if (n == 1 && cli_is_dir(o->output) != 1 && o->output[strlen(o->output) - 1] != '/') {
        tsnap_tensor_info info;
        cli_progress p;
        /* Describe first, so that a missing tensor is named as such. */
        if (tsnap_reader_describe(r, names[0], &info) < 0) {
            status = cli_error("%s", tsnap_errmsg());
        } else {
            cli_progress_start(&p, "export", info.nbytes);
            status = export_one(r, path, names[0], o->output, o, &p) < 0 ? CLI_FAIL : CLI_OK;
            cli_progress_end(&p);
        }
    } else {
        status = export_to_dir(r, path, n ? names : NULL, n, o);
    }
    tsnap_reader_free(r);
    return status;
}

static int run(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"output", required_argument, NULL, 'o'}, {"raw", no_argument, NULL, 'r'},
        {"force", no_argument, NULL, 'f'},        {"slab-bytes", required_argument, NULL, 's'},
        {"quiet", no_argument, NULL, 'q'},        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    options o = {NULL, 0, 0, 0, (uint64_t)16 << 20};
    int done = 0, c;

    while ((c = cli_getopt(argc, argv, "ho:fq", longopts, &done)) != -1) {
        switch (c) {
        case 'o': o.output = optarg; break;
        case 'r': o.raw = 1; break;
        case 'f': o.force = 1; break;
        case 'q': o.quiet = 1; break;
        case 's':
            if (cli_parse_bytes("--slab-bytes", optarg, &o.slab_bytes) < 0)
                return CLI_USAGE;
            if (o.slab_bytes == 0)
                return cli_usage("--slab-bytes must be at least 1");
            break;
        default: return CLI_USAGE;
        }
    }
    if (done)
        return CLI_OK;
    if (optind >= argc)
        return cli_usage("which file? (tsnap export PATH [NAME...] -o OUT)");
    if (!o.output || !*o.output)
        return cli_usage("where to? -o OUT.npy for one tensor, -o DIR for several");
    return export_file(argv[optind], argv + optind + 1, (size_t)(argc - optind - 1), &o);
}

const cli_command cli_export = {"export", "write tensors as NumPy .npy files", help, run};

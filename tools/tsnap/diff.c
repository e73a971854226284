/*
 * diff.c - `tsnap diff`: compares two snapshots tensor by tensor, in
 * bounded slabs, so that files of any size compare in a few tens of MiB.
 */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: tsnap diff [--rtol R] [--atol A] [--names N1,N2] [-q | -v] A B\n"
    "\n"
    "Compares two snapshots tensor by tensor: the names each holds, then for\n"
    "each tensor in both its dtype, its shape and its values.  A store (a\n"
    "directory) stands for its latest step; the file used is named.\n"
    "\n"
    "Values compare as NumPy's isclose with B as the reference:\n"
    "  |a - b| <= atol + rtol * |b|\n"
    "in double precision (float16, bfloat16 and float8 widen exactly); NaN\n"
    "equals NaN in the same place, an infinity only the same infinity, 0.0\n"
    "equals -0.0.  Integers and bools compare as integers, exactly, whatever\n"
    "their size; complex values by the modulus of their difference.  The\n"
    "defaults, rtol 0 and atol 0, ask for equal values.\n"
    "\n"
    "For each tensor that differs one line: the elements outside tolerance\n"
    "(and their fraction), the largest absolute error |a - b| and the largest\n"
    "relative error |a - b| / |b|, each with the index where it first occurs\n"
    "and the two values there (a NaN against a number is an error of nan, the\n"
    "largest).  Then \"N tensors compared, K differ\".\n"
    "\n"
    "Options:\n"
    "  --rtol R            relative tolerance (default 0)\n"
    "  --atol A            absolute tolerance (default 0)\n"
    "  --names N1,N2       compare only these tensors (repeatable); a name\n"
    "                      missing from either side is a difference\n"
    "  --slab-bytes N      memory for each side's slab of values (default 32M)\n"
    "  -q, --quiet         print nothing; the exit status answers\n"
    "  -v, --verbose       name the tensors that are the same too\n"
    "  -h, --help          this text\n"
    "\n"
    "Exit status: 0 the same, 1 different, 2 a usage error or trouble (a file\n"
    "missing or unreadable, a tensor that cannot be read).\n"
    "\n"
    "Examples:\n"
    "  tsnap diff run1/step-000000000100.h5 run2/step-000000000100.h5\n"
    "  tsnap diff --rtol 1e-6 --atol 1e-12 before.h5 after.h5\n"
    "  tsnap diff --names fields/u,fields/v gpu.h5 cpu.h5\n"
    "  tsnap diff -q restart/ original/ && echo same   # latest steps of two stores\n";

typedef struct options {
    double rtol, atol;
    uint64_t slab_bytes;
    int quiet, verbose;
    char **names;  /* --names, in order, without repeats */
    size_t nnames;
} options;

/* One side of the comparison. */
typedef struct side {
    const char *arg;
    char path[4200];
    tsnap_reader *r;
} side;

/* ---- values ---- */

enum kind { SIGNED, UNSIGNED, REAL, COMPLEX };

static enum kind kind_of(tsnap_dtype dt)
{
    switch (dt) {
    case TSNAP_INT8: case TSNAP_INT16: case TSNAP_INT32: case TSNAP_INT64: return SIGNED;
    case TSNAP_BOOL: case TSNAP_UINT8: case TSNAP_UINT16: case TSNAP_UINT32: case TSNAP_UINT64:
        return UNSIGNED;
    case TSNAP_COMPLEX32: case TSNAP_COMPLEX64: case TSNAP_COMPLEX128: return COMPLEX;
    default: return REAL;
    }
}

static int64_t int_at(tsnap_dtype dt, const void *p, uint64_t i)
{
    switch (dt) {
    case TSNAP_INT8: return ((const int8_t *)p)[i];
    case TSNAP_INT16: return ((const int16_t *)p)[i];
    case TSNAP_INT32: return ((const int32_t *)p)[i];
    default: return ((const int64_t *)p)[i];
    }
}

static uint64_t uint_at(tsnap_dtype dt, const void *p, uint64_t i)
{
    switch (dt) {
    case TSNAP_BOOL: return ((const uint8_t *)p)[i] != 0;
    case TSNAP_UINT8: return ((const uint8_t *)p)[i];
    case TSNAP_UINT16: return ((const uint16_t *)p)[i];
    case TSNAP_UINT32: return ((const uint32_t *)p)[i];
    default: return ((const uint64_t *)p)[i];
    }
}

/* Where an error is largest: the first such element, as np.argmax finds
 * it (a NaN, once seen, stays the largest). */
typedef struct worst {
    int seen;       /* 0 before any element */
    double err;
    uint64_t ierr;  /* the exact |a - b| of integers */
    uint64_t at;    /* C-order index */
    unsigned char a[16], b[16];  /* the two elements there */
} worst;

typedef struct tally {
    tsnap_dtype dtype;
    size_t itemsize;
    uint64_t bad;  /* elements outside tolerance */
    worst abs, rel;
} tally;

static void keep(worst *w, double err, uint64_t ierr, uint64_t at, const tally *t,
                 const unsigned char *a, const unsigned char *b, uint64_t i)
{
    if (w->seen && (isnan(w->err) || !(isnan(err) || err > w->err ||
                                        (err == w->err && ierr > w->ierr))))
        return;
    w->seen = 1;
    w->err = err;
    w->ierr = ierr;
    w->at = at;
    memcpy(w->a, a + i * t->itemsize, t->itemsize);
    memcpy(w->b, b + i * t->itemsize, t->itemsize);
}

/* Within tolerance?  An integer difference `d` against |b|, exactly when
 * there is no tolerance (long double holds every 64-bit integer on x86). */
static int int_close(uint64_t d, uint64_t absb, const options *o)
{
    if (d == 0)
        return 1;
    if (o->atol == 0 && o->rtol == 0)
        return 0;
    return (long double)d <= (long double)o->atol + (long double)o->rtol * (long double)absb;
}

static void compare_ints(tally *t, const void *a, const void *b, uint64_t n, uint64_t offset,
                         const options *o)
{
    int is_signed = kind_of(t->dtype) == SIGNED;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t d, absb;
        double rel;
        if (is_signed) {
            int64_t x = int_at(t->dtype, a, i), y = int_at(t->dtype, b, i);
            /* in uint64, where |x - y| always fits */
            d = x >= y ? (uint64_t)x - (uint64_t)y : (uint64_t)y - (uint64_t)x;
            absb = y < 0 ? 0 - (uint64_t)y : (uint64_t)y;
        } else {
            uint64_t x = uint_at(t->dtype, a, i), y = uint_at(t->dtype, b, i);
            d = x >= y ? x - y : y - x;
            absb = y;
        }
        if (!int_close(d, absb, o))
            t->bad++;
        rel = d == 0 ? 0 : absb == 0 ? INFINITY : (double)((long double)d / (long double)absb);
        keep(&t->abs, (double)d, d, offset + i, t, a, b, i);
        keep(&t->rel, rel, 0, offset + i, t, a, b, i);
    }
}

static void compare_floats(tally *t, const void *a, const void *b, uint64_t n, uint64_t offset,
                           const options *o)
{
    int cplx = kind_of(t->dtype) == COMPLEX;
    for (uint64_t i = 0; i < n; i++) {
        double xr = cli_value(t->dtype, a, i), yr = cli_value(t->dtype, b, i);
        double xi = cplx ? cli_value_imag(t->dtype, a, i) : 0;
        double yi = cplx ? cli_value_imag(t->dtype, b, i) : 0;
        int xnan = isnan(xr) || isnan(xi), ynan = isnan(yr) || isnan(yi);
        double err = cplx ? hypot(xr - yr, xi - yi) : fabs(xr - yr);
        double absb = cplx ? hypot(yr, yi) : fabs(yr), rel;
        int close;

        /* As np.isclose(equal_nan=True): non-finite values only equal, and
         * equal ones are no error (inf - inf is NaN). */
        if (xnan || ynan) {
            close = xnan && ynan;
            err = close ? 0 : err;
        } else if (!isfinite(xr) || !isfinite(xi) || !isfinite(yr) || !isfinite(yi)) {
            close = xr == yr && xi == yi;
            err = close ? 0 : err;
        } else {
            close = err <= o->atol + o->rtol * absb;
        }
        if (!close)
            t->bad++;
        rel = err == 0 ? 0 : err / absb;
        keep(&t->abs, err, 0, offset + i, t, a, b, i);
        keep(&t->rel, rel, 0, offset + i, t, a, b, i);
    }
}

/* ---- output ---- */

static const char *index_str(const tsnap_tensor_info *info, uint64_t flat, char *buf,
                             size_t len)
{
    int64_t idx[TSNAP_MAX_NDIM];
    for (int k = info->ndim - 1; k >= 0; k--) {
        uint64_t d = (uint64_t)info->shape[k];
        idx[k] = d ? (int64_t)(flat % d) : 0;
        flat = d ? flat / d : 0;
    }
    return cli_shape_str(info->ndim, idx, buf, len);
}

static void print_worst(const char *what, const worst *w, const tally *t,
                        const tsnap_tensor_info *info, int exact_int)
{
    char at[400];
    printf("; max %s error ", what);
    if (exact_int)
        printf("%" PRIu64, w->ierr);
    else
        cli_print_value(stdout, TSNAP_FLOAT64, &w->err, 0);
    printf(" at %s: ", index_str(info, w->at, at, sizeof at));
    cli_print_value(stdout, t->dtype, w->a, 0);
    fputs(" vs ", stdout);
    cli_print_value(stdout, t->dtype, w->b, 0);
}

static void print_tally(const char *name, const tally *t, const tsnap_tensor_info *info,
                        uint64_t total)
{
    int ints = kind_of(t->dtype) == SIGNED || kind_of(t->dtype) == UNSIGNED;
    if (t->bad)
        printf("%s: %" PRIu64 " of %" PRIu64 " elements differ (%.3g%%)", name, t->bad, total,
               100.0 * (double)t->bad / (double)total);
    else
        printf("%s: within tolerance", name);
    print_worst("abs", &t->abs, t, info, ints);
    print_worst("rel", &t->rel, t, info, 0);
    fputc('\n', stdout);
}

/* ---- one tensor ---- */

enum { SAME, DIFFERENT, TROUBLE };

static int filtered(const tsnap_tensor_info *info)
{
    return info->chunked && (info->codec != TSNAP_CODEC_NONE || info->nfilters > 0);
}

static int compare_values(side *sa, side *sb, const char *name, const tsnap_tensor_info *ia,
                          const tsnap_tensor_info *ib, const options *o, cli_progress *p)
{
    cli_slabs s;
    tally t;
    void *a = NULL, *b = NULL;
    int status = SAME;

    memset(&t, 0, sizeof t);
    t.dtype = ia->dtype;
    t.itemsize = tsnap_dtype_size(ia->dtype);
    /* Slabs cut along the chunks of a compressed side decode each chunk once. */
    cli_slabs_init(&s, filtered(ib) && !filtered(ia) ? ib : ia, o->slab_bytes);
    while (cli_slabs_next(&s)) {
        if (!a) {
            /* The first slab is the largest. */
            a = malloc(s.n * t.itemsize);
            b = malloc(s.n * t.itemsize);
            if (!a || !b) {
                cli_progress_clear(p);
                cli_error("%s: tensor '%s': out of memory for a slab of %" PRIu64 " elements",
                          sa->path, name, s.n);
                status = TROUBLE;
                break;
            }
        }
        if (cli_slabs_read(&s, sa->r, name, t.dtype, a) < 0 ||
            cli_slabs_read(&s, sb->r, name, t.dtype, b) < 0) {
            cli_progress_clear(p);
            cli_error("%s", tsnap_errmsg());
            status = TROUBLE;
            break;
        }
        /* Identical bytes are errors of 0, which no reported maximum needs:
         * a tensor that differs has a larger error elsewhere. */
        if (memcmp(a, b, s.n * t.itemsize) == 0)
            ;
        else if (kind_of(t.dtype) == SIGNED || kind_of(t.dtype) == UNSIGNED)
            compare_ints(&t, a, b, s.n, s.offset, o);
        else
            compare_floats(&t, a, b, s.n, s.offset, o);
        cli_progress_add(p, 2 * s.n * t.itemsize);
    }
    free(a);
    free(b);
    if (status == TROUBLE)
        return TROUBLE;
    if (t.bad)
        status = DIFFERENT;
    cli_progress_clear(p);
    if (!o->quiet && (t.bad || (o->verbose && t.abs.err > 0)))
        print_tally(name, &t, ia, s.total);
    else if (!o->quiet && o->verbose)
        printf("%s: same\n", name);
    return status;
}

/* 1 if the reader holds `name`: its names are sorted in byte order. */
static int holds(const tsnap_reader *r, const char *name)
{
    size_t lo = 0, hi = tsnap_reader_count(r);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(tsnap_reader_name(r, mid), name);
        if (c == 0)
            return 1;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static int describe(side *sd, const char *name, tsnap_tensor_info *info, cli_progress *p)
{
    if (tsnap_reader_describe(sd->r, name, info) < 0) {
        cli_progress_clear(p);
        cli_error("%s", tsnap_errmsg());
        return -1;
    }
    return 0;
}

/* Compares single strings: the same bytes and the same kind. */
static int compare_strings(side *sa, side *sb, const char *name, const tsnap_tensor_info *ia,
                           const tsnap_tensor_info *ib, const options *o, cli_progress *p)
{
    char *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    int status = SAME;

    cli_progress_clear(p);
    if (cli_read_string(sa->r, name, &a, &la, NULL) < 0 ||
        cli_read_string(sb->r, name, &b, &lb, NULL) < 0) {
        cli_error("%s", *tsnap_errmsg() ? tsnap_errmsg() : "out of memory");
        status = TROUBLE;
    } else if (ia->string != ib->string || la != lb || memcmp(a, b, la) != 0) {
        status = DIFFERENT;
        if (!o->quiet)
            printf("%s: strings differ (%s of %zu bytes in %s, %s of %zu bytes in %s)\n", name,
                   cli_string_kind(ia->string), la, sa->path, cli_string_kind(ib->string), lb,
                   sb->path);
    } else if (!o->quiet && o->verbose) {
        printf("%s: same\n", name);
    }
    free(a);
    free(b);
    return status;
}

/* Compares tensor `name`, which is in at least one of the files. */
static int compare_tensor(side *sa, side *sb, const char *name, const options *o,
                          cli_progress *p)
{
    int in_a = holds(sa->r, name), in_b = holds(sb->r, name);
    tsnap_tensor_info ia, ib;
    char x[400], y[400];
    int same_shape = 1;

    if (!in_a || !in_b) {
        cli_progress_clear(p);
        if (!o->quiet && !in_a && !in_b)
            printf("%s: in neither file\n", name);
        else if (!o->quiet)
            printf("%s: only in %s\n", name, in_a ? sa->path : sb->path);
        return DIFFERENT;
    }
    if (tsnap_reader_describe(sa->r, name, &ia) == TSNAP_ETYPE && ia.string &&
        tsnap_reader_describe(sb->r, name, &ib) == TSNAP_ETYPE && ib.string)
        return compare_strings(sa, sb, name, &ia, &ib, o, p);
    if (describe(sa, name, &ia, p) < 0 || describe(sb, name, &ib, p) < 0)
        return TROUBLE;
    if (ia.dtype != ib.dtype) {
        cli_progress_add(p, ia.nbytes + ib.nbytes);
        cli_progress_clear(p);
        if (!o->quiet)
            printf("%s: dtypes differ: %s in %s, %s in %s\n", name, tsnap_dtype_name(ia.dtype),
                   sa->path, tsnap_dtype_name(ib.dtype), sb->path);
        return DIFFERENT;
    }
    same_shape = ia.ndim == ib.ndim;
    for (int k = 0; same_shape && k < ia.ndim; k++)
        same_shape = ia.shape[k] == ib.shape[k];
    if (!same_shape) {
        cli_progress_add(p, ia.nbytes + ib.nbytes);
        cli_progress_clear(p);
        if (!o->quiet)
            printf("%s: shapes differ: %s in %s, %s in %s\n", name,
                   cli_shape_str(ia.ndim, ia.shape, x, sizeof x), sa->path,
                   cli_shape_str(ib.ndim, ib.shape, y, sizeof y), sb->path);
        return DIFFERENT;
    }
    return compare_values(sa, sb, name, &ia, &ib, o, p);
}

/* ---- the files ---- */

/* Opens A or B; a store stands for its latest step, said on stdout. */
static int open_side(side *sd, const char *label, const options *o)
{
    int dir = cli_is_dir(sd->arg);

    snprintf(sd->path, sizeof sd->path, "%s", sd->arg);
    if (dir == 1) {
        cli_steps list;
        if (cli_store_steps(sd->arg, &list) < 0)
            return -1;
        if (list.count == 0) {
            cli_error("%s: the store has no committed steps", sd->arg);
            return -1;
        }
        if (snprintf(sd->path, sizeof sd->path, "%s", list.paths[list.count - 1]) >=
            (int)sizeof sd->path) {
            cli_steps_free(&list);
            cli_error("%s: path too long", sd->arg);
            return -1;
        }
        if (!o->quiet)
            printf("%s: %s is a store; comparing its latest step %" PRId64 ", %s\n", label,
                   sd->arg, list.steps[list.count - 1], sd->path);
        cli_steps_free(&list);
    }
    return cli_open(&sd->r, sd->path);
}

/* The names to compare: --names, else the sorted union of both files'. */
static int name_list(const side *sa, const side *sb, const options *o, const char ***out,
                     size_t *count)
{
    size_t na = tsnap_reader_count(sa->r), nb = tsnap_reader_count(sb->r), n = 0, i = 0, j = 0;
    const char **names;

    if (o->nnames) {
        *out = (const char **)o->names;
        *count = o->nnames;
        return 0;
    }
    if (!(names = malloc((na + nb + 1) * sizeof *names)))
        return cli_error("out of memory"), -1;
    while (i < na || j < nb) {
        const char *x = i < na ? tsnap_reader_name(sa->r, i) : NULL;
        const char *y = j < nb ? tsnap_reader_name(sb->r, j) : NULL;
        int c = !x ? 1 : !y ? -1 : strcmp(x, y);
        names[n++] = c <= 0 ? x : y;
        i += c <= 0;
        j += c >= 0;
    }
    *out = names;
    *count = n;
    return 0;
}

static uint64_t bytes_to_compare(const side *sa, const side *sb, const char *const *names,
                                 size_t n)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        tsnap_tensor_info ia, ib;
        if (holds(sa->r, names[i]) && holds(sb->r, names[i]) &&
            tsnap_reader_describe(sa->r, names[i], &ia) == 0 &&
            tsnap_reader_describe(sb->r, names[i], &ib) == 0)
            total += ia.nbytes + ib.nbytes;
    }
    return total;
}

static int diff(side *sa, side *sb, const options *o)
{
    const char **names = NULL;
    size_t n = 0, differ = 0, trouble = 0;
    cli_progress p;

    if (name_list(sa, sb, o, &names, &n) < 0)
        return CLI_USAGE;
    cli_progress_start(&p, "diff", bytes_to_compare(sa, sb, names, n));
    for (size_t i = 0; i < n; i++) {
        int st = compare_tensor(sa, sb, names[i], o, &p);
        differ += st == DIFFERENT;
        trouble += st == TROUBLE;
    }
    cli_progress_end(&p);
    if (names != (const char **)o->names)
        free(names);
    if (!o->quiet) {
        printf("%zu tensor%s compared, %zu differ", n, n == 1 ? "" : "s", differ);
        if (trouble)
            printf(", %zu could not be read", trouble);
        fputc('\n', stdout);
    }
    return trouble ? CLI_USAGE : differ ? CLI_FAIL : CLI_OK;
}

/* ---- options ---- */

/* Adds the comma-separated names of one --names, skipping repeats. */
static int add_names(options *o, const char *list)
{
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char *name, **grown;
        int seen = 0;

        while (len && *p == '/') /* "/fields/u" is "fields/u" */
            p++, len--;
        if (len == 0)
            return cli_usage("--names wants tensor names separated by commas, not '%s'", list),
                   -1;
        if (!(name = strndup(p, len)))
            return cli_error("out of memory"), -1;
        for (size_t i = 0; i < o->nnames && !seen; i++)
            seen = !strcmp(o->names[i], name);
        if (seen) {
            free(name);
        } else if (!(grown = realloc(o->names, (o->nnames + 1) * sizeof *grown))) {
            free(name);
            return cli_error("out of memory"), -1;
        } else {
            o->names = grown;
            o->names[o->nnames++] = name;
        }
        if (!end)
            return 0;
        p = end + 1;
    }
}

static int parse(int argc, char **argv, options *o, int *done)
{
    enum { RTOL = 256, ATOL, NAMES, SLAB };
    static const struct option longopts[] = {
        {"rtol", required_argument, NULL, RTOL},
        {"atol", required_argument, NULL, ATOL},
        {"names", required_argument, NULL, NAMES},
        {"slab-bytes", required_argument, NULL, SLAB},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;

    while ((c = cli_getopt(argc, argv, "hqv", longopts, done)) != -1) {
        switch (c) {
        case RTOL:
            if (cli_parse_double("--rtol", optarg, &o->rtol) < 0)
                return -1;
            break;
        case ATOL:
            if (cli_parse_double("--atol", optarg, &o->atol) < 0)
                return -1;
            break;
        case NAMES:
            if (add_names(o, optarg) < 0)
                return -1;
            break;
        case SLAB:
            if (cli_parse_bytes("--slab-bytes", optarg, &o->slab_bytes) < 0)
                return -1;
            if (o->slab_bytes == 0)
                return cli_usage("--slab-bytes wants at least 1 byte"), -1;
            break;
        case 'q': o->quiet = 1; break;
        case 'v': o->verbose = 1; break;
        default: return -1;
        }
    }
    if (*done)
        return 0;
    if (o->quiet && o->verbose)
        return cli_usage("--quiet and --verbose contradict each other"), -1;
    if (argc - optind != 2)
        return cli_usage(argc - optind < 2 ? "which two snapshots? (tsnap diff A B)"
                                           : "too many arguments: diff compares two snapshots"),
               -1;
    return 0;
}

static int run(int argc, char **argv)
{
    options o = {0, 0, (uint64_t)32 << 20, 0, 0, NULL, 0};
    side sa = {0}, sb = {0};
    int done = 0, status;

    if (parse(argc, argv, &o, &done) < 0) {
        status = CLI_USAGE;
        goto out;
    }
    if (done) {
        status = CLI_OK;
        goto out;
    }
    sa.arg = argv[optind];
    sb.arg = argv[optind + 1];
    if (open_side(&sa, "A", &o) < 0 || open_side(&sb, "B", &o) < 0)
        status = CLI_USAGE;  /* trouble, not an answer */
    else
        status = diff(&sa, &sb, &o);
out:
    tsnap_reader_free(sa.r);
    tsnap_reader_free(sb.r);
    for (size_t i = 0; i < o.nnames; i++)
        free(o.names[i]);
    free(o.names);
    return status;
}

const cli_command cli_diff = {"diff", "compare two snapshots tensor by tensor, within tolerance",
                              help, run};

/*
 * common.c - messages, option parsing, formatting, value conversion, slabs
 * and the progress bar that the subcommands share.
 */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

const char *cli_name = "";

/* ---- messages ---------------------------------------------------- */

static void vmessage(const char *prefix, const char *fmt, va_list ap)
{
    fprintf(stderr, "tsnap%s%s: %s", *cli_name ? " " : "", cli_name, prefix);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int cli_error(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    va_start(ap, fmt);
    vmessage("", fmt, ap);
    va_end(ap);
    return CLI_FAIL;
}

int cli_warn(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    va_start(ap, fmt);
    vmessage("warning: ", fmt, ap);
    va_end(ap);
    return 0;
}

int cli_usage(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    va_start(ap, fmt);
    vmessage("", fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try 'tsnap %s --help'.\n", cli_name);
    return CLI_USAGE;
}

/* ---- options ----------------------------------------------------- */

extern const cli_command *cli_current;

int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
               int *done)
{
    char opts[64];
    int c, index = -1;

    /* A leading ':' tells a missing value (':') from an unknown option ('?'). */
    snprintf(opts, sizeof opts, ":%s", shortopts);
    opterr = 0;
    c = getopt_long(argc, argv, opts, longopts, &index);
    if (c == 'h') {
        fputs(cli_current->help, stdout);
        *done = 1;
        return -1;
    }
    if (c == '?' || c == ':') {
        const char *bad = argv[optind - 1];
        if (!strncmp(bad, "--", 2)) {
            const char *eq = strchr(bad, '=');
            if (c == ':')
                cli_usage("option '%s' needs a value", bad);
            else if (eq && optopt)
                cli_usage("option '%.*s' takes no value", (int)(eq - bad), bad);
            else
                cli_usage("unknown option '%s'", bad);
        } else if (c == ':') {
            cli_usage("option '-%c' needs a value", optopt);
        } else {
            cli_usage("unknown option '-%c'", optopt);
        }
        return '?';
    }
    return c;
}

int cli_json_options(int argc, char **argv, int *json)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int done = 0, c;

    *json = 0;
    while ((c = cli_getopt(argc, argv, "h", longopts, &done)) != -1) {
        if (c != 'j')
            return CLI_USAGE;
        *json = 1;
    }
    return done ? CLI_OK : -1;
}

int cli_parse_double(const char *opt, const char *s, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    if (!*s || *end || errno || !(*out >= 0) || isinf(*out)) {
        cli_usage("%s wants a non-negative number, not '%s'", opt, s);
        return -1;
    }
    return 0;
}

int cli_parse_int(const char *opt, const char *s, long max, long *out)
{
    char *end;
    errno = 0;
    *out = strtol(s, &end, 10);
    if (!*s || *end || errno || *out < 1 || *out > max) {
        cli_usage("%s wants a whole number from 1 to %ld, not '%s'", opt, max, s);
        return -1;
    }
    return 0;
}

int cli_parse_bytes(const char *opt, const char *s, uint64_t *out)
{
    static const char *const units[] = {"", "K", "M", "G", "T"};
    char *end;
    double v;
    int shift = -1;

    errno = 0;
    v = strtod(s, &end);
    if (*s && !errno && v >= 0) {
        /* "4M", "4MiB", "4 MB", "4k": powers of 1024 */
        while (*end == ' ')
            end++;
        for (int i = 0; i < 5 && shift < 0; i++) {
            size_t n = strlen(units[i]);
            if (strncasecmp(end, units[i], n) == 0) {
                const char *rest = end + n;
                if (!strcasecmp(rest, "") || (i && (!strcasecmp(rest, "ib") || !strcasecmp(rest, "b"))) ||
                    (!i && !strcasecmp(rest, "b")))
                    shift = 10 * i;
            }
        }
    }
    if (shift < 0 || v * (double)((uint64_t)1 << shift) >= 18446744073709551616.0) {
        cli_usage("%s wants a size in bytes such as 4096, 64K or 4M, not '%s'", opt, s);
        return -1;
    }
    *out = (uint64_t)(v * (double)((uint64_t)1 << shift));
    return 0;
}

/* ---- formatting -------------------------------------------------- */

const char *cli_bytes_str(uint64_t n, char *buf, size_t len)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    int u = -1;

    if (n < 1024) {
        snprintf(buf, len, "%" PRIu64 " B", n);
        return buf;
    }
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(buf, len, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, units[u]);
    return buf;
}

const char *cli_shape_str(int ndim, const int64_t *shape, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    n += (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < ndim && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (n < len)
        snprintf(buf + n, len - n, ndim == 1 ? ",)" : ")");
    return buf;
}

const char *cli_codec_str(const tsnap_tensor_info *info, char *buf, size_t len)
{
    static const char *const names[] = {"none", "deflate", "zstd", "lz4"};
    size_t n;

    if (info->codec == TSNAP_CODEC_OTHER || info->codec < 0 || info->codec > TSNAP_CODEC_LZ4) {
        /* a filter tsnap does not decode: by its registered name */
        n = 0;
        buf[0] = '\0';
        for (int i = 0; i < info->nfilters && n < len; i++) {
            const char *fname = tsnap_filter_name(info->filters[i]);
            n += fname ? (size_t)snprintf(buf + n, len - n, "%s%s", i ? "+" : "", fname)
                       : (size_t)snprintf(buf + n, len - n, "%sfilter %d", i ? "+" : "",
                                          info->filters[i]);
        }
        return buf;
    }
    const char *shuffle = info->shuffle == 2 ? "bitshuffle" : info->shuffle ? "shuffle" : "";
    if (info->codec == TSNAP_CODEC_NONE && info->shuffle)
        snprintf(buf, len, "%s", shuffle);
    else
        snprintf(buf, len, "%s%s%s", names[info->codec], *shuffle ? "+" : "", shuffle);
    return buf;
}

size_t cli_enum_print(FILE *f, tsnap_reader *r, const char *name, int json)
{
    const tsnap_enum_member *m = NULL;
    size_t n = 0;
    tsnap_tensor_info info;

    if (tsnap_reader_describe(r, name, &info) < 0 || tsnap_reader_enum(r, name, &m, &n) < 0)
        n = 0;
    if (json && n == 0)
        fputs("null", f);
    for (size_t i = 0; i < n; i++) {
        if (json) {
            fputs(i ? ", " : "{", f);
            cli_json_string(f, m[i].name);
            fputs(": ", f);
        } else {
            fprintf(f, "%s%s=", i ? ", " : "", m[i].name);
        }
        if (info.dtype == TSNAP_UINT64)
            fprintf(f, "%" PRIu64, (uint64_t)m[i].value);
        else
            fprintf(f, "%" PRId64, m[i].value);
    }
    if (json && n)
        fputc('}', f);
    return n;
}

void cli_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

/* The shortest text that reads back as the same value (as Python's repr). */
static void print_real(FILE *f, double v, int single, int json)
{
    char buf[40];
    if (isnan(v) || isinf(v)) {
        if (json)
            fputs("null", f);
        else
            fputs(isnan(v) ? "nan" : v > 0 ? "inf" : "-inf", f);
        return;
    }
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, v);
        if (single ? (float)strtod(buf, NULL) == (float)v : strtod(buf, NULL) == v)
            break;
    }
    fputs(buf, f);
    /* Keep a real looking real: "1.0", not "1". */
    if (!strpbrk(buf, ".eEn"))
        fputs(".0", f);
}

static void print_element(FILE *f, tsnap_dtype dt, const void *data, uint64_t i, int json)
{
    int single = dt != TSNAP_FLOAT64 && dt != TSNAP_COMPLEX128;
    switch (dt) {
    case TSNAP_BOOL:
        fputs(((const uint8_t *)data)[i] ? (json ? "true" : "True") : (json ? "false" : "False"),
              f);
        break;
    case TSNAP_INT64: fprintf(f, "%" PRId64, ((const int64_t *)data)[i]); break;
    case TSNAP_UINT64: fprintf(f, "%" PRIu64, ((const uint64_t *)data)[i]); break;
    case TSNAP_INT8: case TSNAP_INT16: case TSNAP_INT32:
    case TSNAP_UINT8: case TSNAP_UINT16: case TSNAP_UINT32:
        fprintf(f, "%.0f", cli_value(dt, data, i));
        break;
    case TSNAP_COMPLEX32: case TSNAP_COMPLEX64: case TSNAP_COMPLEX128:
        if (json) {
            fputc('[', f);
            print_real(f, cli_value(dt, data, i), single, json);
            fputs(", ", f);
            print_real(f, cli_value_imag(dt, data, i), single, json);
            fputc(']', f);
        } else {
            double im = cli_value_imag(dt, data, i);
            fputc('(', f);
            print_real(f, cli_value(dt, data, i), single, json);
            /* "(1-0j)" as Python writes it; print_real writes no sign on a NaN */
            fputs(signbit(im) && !isnan(im) ? "" : "+", f);
            print_real(f, im, single, json);
            fputs("j)", f);
        }
        break;
    default:
        print_real(f, cli_value(dt, data, i), single, json);
    }
}

void cli_attr_value(FILE *f, const tsnap_attr *a, int json)
{
    tsnap_dtype dt;
    uint64_t n = 1;

    if (a->kind != TSNAP_ATTR_NUMERIC) {
        if (json)
            cli_json_string(f, a->string ? a->string : "");
        else if (a->kind == TSNAP_ATTR_STRING)
            fprintf(f, "'%s'", a->string ? a->string : "");
        else
            fprintf(f, "<%s>", a->string ? a->string : "unreadable");
        return;
    }
    if (tsnap_dtype_from_dlpack(&dt, a->value.dtype) < 0) {
        fputs(json ? "null" : "<unknown type>", f);
        return;
    }
    for (int k = 0; k < a->value.ndim; k++)
        n *= (uint64_t)a->value.shape[k];
    if (a->value.ndim == 0) {
        print_element(f, dt, a->value.data, 0, json);
        return;
    }
    /* Arrays of attributes are small (at most 64 KiB): print them flat. */
    fputc('[', f);
    for (uint64_t i = 0; i < n; i++) {
        if (i)
            fputs(", ", f);
        print_element(f, dt, a->value.data, i, json);
    }
    fputc(']', f);
}

void cli_print_value(FILE *f, tsnap_dtype dtype, const void *data, uint64_t i)
{
    print_element(f, dtype, data, i, 0);
}

/* ---- paths ------------------------------------------------------- */

int cli_is_dir(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -1;
    return S_ISDIR(st.st_mode) ? 1 : 0;
}

/* Adds up the sizes of the regular files under a folder (nftw's callback
 * has no context argument: one walk at a time). */
static uint64_t walk_total;
static int add_size(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)path;
    (void)ftw;
    if (type == FTW_F && S_ISREG(st->st_mode))
        walk_total += (uint64_t)st->st_size;
    return 0;
}

uint64_t cli_snapshot_size(const char *path)
{
    struct stat st;
    size_t n = strlen(path);
    char *parts = malloc(n + sizeof ".parts");
    uint64_t size = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;

    if (parts) {
        memcpy(parts, path, n);
        memcpy(parts + n, ".parts", sizeof ".parts");
        walk_total = 0;
        if (cli_is_dir(parts) == 1 && nftw(parts, add_size, 16, FTW_PHYS) == 0)
            size += walk_total;
        free(parts);
    }
    return size;
}

int cli_open(tsnap_reader **r, const char *path)
{
    if (tsnap_reader_open(r, path) < 0) {
        cli_error("%s", tsnap_errmsg());
        return -1;
    }
    return 0;
}

int cli_store_steps(const char *dir, cli_steps *out)
{
    tsnap_store_options opts = TSNAP_STORE_OPTIONS_INIT;
    tsnap_store *s = NULL;
    size_t n = 0, len = strlen(dir) + 32;  /* "/step-" + 12 or more digits + ".h5" */
    int err;

    memset(out, 0, sizeof *out);
    opts.writable = 0;
    if ((err = tsnap_store_open(&s, dir, &opts)) < 0 ||
        (err = tsnap_store_steps(s, NULL, 0, &n)) < 0)
        goto done;
    if (n && (!(out->steps = malloc(n * sizeof *out->steps)) ||
              !(out->paths = calloc(n, sizeof *out->paths)))) {
        err = TSNAP_ENOMEM;
        goto done;
    }
    if (n && (err = tsnap_store_steps(s, out->steps, n, &n)) < 0)
        goto done;
    for (size_t i = 0; i < n; i++) {
        if (!(out->paths[i] = malloc(len))) {
            err = TSNAP_ENOMEM;
            goto done;
        }
        out->count = i + 1;  /* what cli_steps_free frees */
        if ((err = tsnap_store_path(s, out->steps[i], out->paths[i], len)) < 0)
            goto done;
    }
done:
    if (err < 0) {
        if (err == TSNAP_ENOMEM)
            cli_error("%s: out of memory", dir);
        else
            cli_error("%s", tsnap_errmsg());
        cli_steps_free(out);
    }
    tsnap_store_free(s);
    return err < 0 ? -1 : 0;
}

void cli_steps_free(cli_steps *s)
{
    for (size_t i = 0; s->paths && i < s->count; i++)
        free(s->paths[i]);
    free(s->paths);
    free(s->steps);
    memset(s, 0, sizeof *s);
}

/* ---- values ------------------------------------------------------ */

float cli_half_to_float(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float v = e == 0 ? ldexpf((float)m, -24)
            : e == 31 ? (m ? NAN : INFINITY)
            : ldexpf((float)(m | 0x400), e - 25);
    return h & 0x8000 ? -v : v;
}

float cli_bfloat16_to_float(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

float cli_e4m3fn_to_float(uint8_t b)
{
    /* No infinities; S.1111.111 is NaN; exponent bias 7. */
    int e = (b >> 3) & 0xf, m = b & 7;
    float v = e == 15 && m == 7 ? NAN
            : e == 0 ? ldexpf((float)m, -9)
            : ldexpf((float)(m | 8), e - 10);
    return b & 0x80 ? -v : v;
}

float cli_e5m2_to_float(uint8_t b)
{
    return cli_half_to_float((uint16_t)(b << 8));  /* the top byte of a half */
}

double cli_value(tsnap_dtype dtype, const void *data, uint64_t i)
{
    switch (dtype) {
    case TSNAP_BOOL: return ((const uint8_t *)data)[i] != 0;
    case TSNAP_INT8: return ((const int8_t *)data)[i];
    case TSNAP_INT16: return ((const int16_t *)data)[i];
    case TSNAP_INT32: return ((const int32_t *)data)[i];
    case TSNAP_INT64: return (double)((const int64_t *)data)[i];
    case TSNAP_UINT8: return ((const uint8_t *)data)[i];
    case TSNAP_UINT16: return ((const uint16_t *)data)[i];
    case TSNAP_UINT32: return ((const uint32_t *)data)[i];
    case TSNAP_UINT64: return (double)((const uint64_t *)data)[i];
    case TSNAP_FLOAT16: return cli_half_to_float(((const uint16_t *)data)[i]);
    case TSNAP_BFLOAT16: return cli_bfloat16_to_float(((const uint16_t *)data)[i]);
    case TSNAP_FLOAT32: return ((const float *)data)[i];
    case TSNAP_FLOAT64: return ((const double *)data)[i];
    case TSNAP_FLOAT8_E4M3FN: return cli_e4m3fn_to_float(((const uint8_t *)data)[i]);
    case TSNAP_FLOAT8_E5M2: return cli_e5m2_to_float(((const uint8_t *)data)[i]);
    case TSNAP_COMPLEX32: return cli_half_to_float(((const uint16_t *)data)[2 * i]);
    case TSNAP_COMPLEX64: return ((const float *)data)[2 * i];
    case TSNAP_COMPLEX128: return ((const double *)data)[2 * i];
    default: return NAN;
    }
}

double cli_value_imag(tsnap_dtype dtype, const void *data, uint64_t i)
{
    switch (dtype) {
    case TSNAP_COMPLEX32: return cli_half_to_float(((const uint16_t *)data)[2 * i + 1]);
    case TSNAP_COMPLEX64: return ((const float *)data)[2 * i + 1];
    case TSNAP_COMPLEX128: return ((const double *)data)[2 * i + 1];
    default: return 0;
    }
}

/* ---- slabs ------------------------------------------------------- */

void cli_slabs_init(cli_slabs *s, const tsnap_tensor_info *info, uint64_t budget)
{
    uint64_t itemsize = tsnap_dtype_size(info->dtype), inner = 1;

    memset(s, 0, sizeof *s);
    s->ndim = info->ndim;
    s->total = 1;
    for (int k = 0; k < info->ndim; k++) {
        s->shape[k] = info->shape[k];
        s->total *= (uint64_t)info->shape[k];
    }
    if (itemsize == 0)
        itemsize = 1;
    if (s->ndim == 0 || s->total == 0)
        return;
    /*
     * From the last axis outwards: take as many rows of axis k as fit (in
     * whole chunk extents), and move out to axis k - 1 only while all of
     * axis k fits, so that every slab stays one C-order range.
     */
    s->axis = s->ndim - 1;
    s->rows = (int64_t)(budget / itemsize) > 0 ? (int64_t)(budget / itemsize) : 1;
    for (int k = s->ndim - 1; k >= 0; k--) {
        int64_t unit = info->chunked && info->chunk[k] > 0 ? info->chunk[k] : 1;
        uint64_t fit = budget / (inner * itemsize);
        if (unit > s->shape[k])
            unit = s->shape[k];
        if (fit < (uint64_t)unit)
            break;  /* keep the axis after k, whole */
        s->axis = k;
        s->rows = (int64_t)(fit / (uint64_t)unit) * unit;
        if (s->rows < s->shape[k])
            break;
        inner *= (uint64_t)s->shape[k];
    }
}

int cli_slabs_next(cli_slabs *s)
{
    int a = s->axis;

    if (s->finished || s->total == 0) {
        s->finished = 1;
        return 0;
    }
    if (s->ndim == 0) {
        s->n = 1;
        s->offset = 0;
        s->finished = s->started;
        s->started = 1;
        return !s->finished;
    }
    if (!s->started) {
        s->started = 1;
    } else {
        /* Advance along `axis`, carrying into the axes before it. */
        int k = a;
        s->start[a] += s->count[a];
        while (k > 0 && s->start[k] >= s->shape[k]) {
            s->start[k] = 0;
            s->start[--k]++;
        }
        if (s->start[k] >= s->shape[k]) {
            s->finished = 1;
            return 0;
        }
    }
    s->n = 1;
    for (int k = 0; k < s->ndim; k++) {
        if (k < a)
            s->count[k] = 1;
        else if (k == a)
            s->count[k] = s->rows < s->shape[a] - s->start[a] ? s->rows : s->shape[a] - s->start[a];
        else
            s->count[k] = s->shape[k];
        s->n *= (uint64_t)s->count[k];
    }
    s->offset = 0;
    for (int k = 0; k < s->ndim; k++)
        s->offset = s->offset * (uint64_t)s->shape[k] + (uint64_t)s->start[k];
    return 1;
}

int cli_slabs_read(const cli_slabs *s, tsnap_reader *r, const char *name, tsnap_dtype dtype,
                   void *buf)
{
    DLTensor t = {0};
    t.data = buf;
    t.device.device_type = kDLCPU;
    t.ndim = s->ndim;
    t.shape = (int64_t *)s->count;
    if (tsnap_dtype_to_dlpack(&t.dtype, dtype) < 0)
        return TSNAP_ETYPE;
    if (s->ndim == 0)
        return tsnap_reader_read(r, name, NULL, NULL, NULL, &t);
    return tsnap_reader_read(r, name, s->start, s->count, NULL, &t);
}

/* ---- progress ---------------------------------------------------- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void draw(cli_progress *p)
{
    char done[16], total[16];
    double frac = p->total ? (double)p->done / (double)p->total : 1, t = now() - p->t0;
    int width = 30, fill = (int)(frac * width + 0.5);

    if (fill > width)
        fill = width;
    fprintf(stderr, "\r%s [", p->label);
    for (int i = 0; i < width; i++)
        fputc(i < fill ? '#' : ' ', stderr);
    fprintf(stderr, "] %3.0f%%  %s / %s", frac * 100, cli_bytes_str(p->done, done, sizeof done),
            cli_bytes_str(p->total, total, sizeof total));
    if (t > 0.5 && p->done)
        fprintf(stderr, "  %.0f MB/s", (double)p->done / t / 1e6);
    fputs("\033[K", stderr);
    fflush(stderr);
    p->drawn = now();
}

void cli_progress_start(cli_progress *p, const char *label, uint64_t total)
{
    const char *off = getenv("TSNAP_NO_PROGRESS");
    memset(p, 0, sizeof *p);
    p->label = label;
    p->total = total;
    p->on = isatty(STDOUT_FILENO) && isatty(STDERR_FILENO) && !(off && *off);
    p->t0 = now();
    if (p->on)
        draw(p);
}

void cli_progress_add(cli_progress *p, uint64_t n)
{
    p->done += n;
    if (p->on && now() - p->drawn >= 0.1)
        draw(p);
}

void cli_progress_clear(cli_progress *p)
{
    if (p->on) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        p->drawn = 0;  /* redraw at the next step */
    }
}

void cli_progress_end(cli_progress *p)
{
    cli_progress_clear(p);
    p->on = 0;
}

/* ---- strings ---- */

const char *cli_string_kind(int kind) { return kind == TSNAP_STRING_UTF8 ? "str" : "bytes"; }

int cli_read_string(tsnap_reader *r, const char *name, char **data, size_t *len,
                    tsnap_string_kind *kind)
{
    size_t n = 0, got = 0;
    char *buf;
    int err;

    if (data)
        *data = NULL;
    if ((err = tsnap_reader_read_string(r, name, NULL, 0, &n, NULL)) < 0)
        return err;
    if (!(buf = malloc(n + 1)))
        return TSNAP_ENOMEM; /* the message is empty: tsnap_strerror says it */
    if ((err = tsnap_reader_read_string(r, name, buf, n, &got, kind)) == 0 && got != n)
        err = TSNAP_EFORMAT;
    if (err < 0 || !data) {
        free(buf);
        return err;
    }
    buf[n] = '\0';
    *data = buf;
    if (len)
        *len = n;
    return 0;
}

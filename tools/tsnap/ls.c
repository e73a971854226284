/*
 * ls.c - `tsnap ls`: the tensors of a snapshot, or the steps of a store.
 */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"

static const char help[] =
    "usage: tsnap ls [--json] PATH...\n"
    "\n"
    "Lists what a snapshot holds: each tensor's name, dtype, shape, chunk shape,\n"
    "codec, compression ratio (logical bytes / stored bytes) and whether it can\n"
    "be memory-mapped, or why not.  For a store (a directory), lists its\n"
    "committed steps with their size, creation time, simulation time and\n"
    "number of tensors.  Any HDF5 file lists; datasets tsnap cannot read say why.\n"
    "\n"
    "Options:\n"
    "  --json      one JSON object per PATH (an array of them for several)\n"
    "  -h, --help  this text\n"
    "\n"
    "Examples:\n"
    "  tsnap ls step0.h5\n"
    "  tsnap ls checkpoints/                 # the steps of a store\n"
    "  tsnap ls --json step0.h5 | jq '.tensors[] | select(.mappable | not)'\n";

/* The cause of a library message, without its "file: tensor 'x': " head. */
static const char *cause(const char *msg, const char *name)
{
    char head[1200];
    const char *p;
    snprintf(head, sizeof head, "tensor '%s': ", name);
    p = strstr(msg, head);
    return p ? p + strlen(head) : msg;
}

typedef struct row {
    char name[1100], dtype[24], shape[400], chunks[400], codec[64], ratio[24], map[160];
} row;

/* Fills `w`; returns the description's status, `info` valid when 0. */
static int describe_row(tsnap_reader *r, const char *name, row *w, tsnap_tensor_info *info)
{
    int err = tsnap_reader_describe(r, name, info);

    snprintf(w->name, sizeof w->name, "%s", name);
    if (err == TSNAP_ETYPE && info->string) { /* a single string, not a tensor */
        snprintf(w->dtype, sizeof w->dtype, "%s", cli_string_kind(info->string));
        snprintf(w->shape, sizeof w->shape, "()");
        snprintf(w->chunks, sizeof w->chunks, "-");
        snprintf(w->codec, sizeof w->codec, "-");
        snprintf(w->ratio, sizeof w->ratio, "-");
        snprintf(w->map, sizeof w->map, "no: a string");
        return err;
    }
    if (err < 0) {
        snprintf(w->dtype, sizeof w->dtype, "?");
        snprintf(w->shape, sizeof w->shape, "-");
        snprintf(w->chunks, sizeof w->chunks, "-");
        snprintf(w->codec, sizeof w->codec, "-");
        snprintf(w->ratio, sizeof w->ratio, "-");
        snprintf(w->map, sizeof w->map, "unreadable: %.140s", cause(tsnap_errmsg(), name));
        return err;
    }
    const tsnap_enum_member *members;
    size_t nmembers = 0;
    if (tsnap_reader_enum(r, name, &members, &nmembers) < 0)
        nmembers = 0;
    snprintf(w->dtype, sizeof w->dtype, "%s%s", tsnap_dtype_name(info->dtype),
             nmembers ? " enum" : ""); /* its members follow the table */
    cli_shape_str(info->ndim, info->shape, w->shape, sizeof w->shape);
    if (info->map_status == TSNAP_MAP_VIRTUAL) /* its blocks are in part files */
        snprintf(w->chunks, sizeof w->chunks, "virtual, %zu part%s", info->nparts,
                 info->nparts == 1 ? "" : "s");
    else if (info->chunked)
        cli_shape_str(info->ndim, info->chunk, w->chunks, sizeof w->chunks);
    else
        snprintf(w->chunks, sizeof w->chunks, "contiguous");
    if (info->map_status == TSNAP_MAP_VIRTUAL)
        snprintf(w->codec, sizeof w->codec, "-");
    else
        cli_codec_str(info, w->codec, sizeof w->codec);
    if (info->stored_bytes)
        snprintf(w->ratio, sizeof w->ratio, "%.2f",
                 (double)info->nbytes / (double)info->stored_bytes);
    else
        snprintf(w->ratio, sizeof w->ratio, "-");
    if (info->map_status == TSNAP_MAP_OK || info->map_status == TSNAP_MAP_EMPTY)
        snprintf(w->map, sizeof w->map, "yes");
    else
        snprintf(w->map, sizeof w->map, "no: %s", tsnap_map_status_str(info->map_status));
    return 0;
}

static void json_shape(FILE *f, int ndim, const int64_t *shape)
{
    fputc('[', f);
    for (int i = 0; i < ndim; i++)
        fprintf(f, "%s%" PRId64, i ? ", " : "", shape[i]);
    fputc(']', f);
}

static void json_tensor(tsnap_reader *r, const char *name)
{
    static const char *const codecs[] = {"none", "deflate", "zstd", "lz4"};
    tsnap_tensor_info info;
    int err = tsnap_reader_describe(r, name, &info);

    fputs("{\"name\": ", stdout);
    cli_json_string(stdout, name);
    if (err == TSNAP_ETYPE && info.string) {
        printf(", \"dtype\": \"%s\", \"shape\": [], \"string\": true}",
               cli_string_kind(info.string));
        return;
    }
    if (err < 0) {
        fputs(", \"error\": ", stdout);
        cli_json_string(stdout, cause(tsnap_errmsg(), name));
        fputc('}', stdout);
        return;
    }
    printf(", \"dtype\": \"%s\", \"shape\": ", tsnap_dtype_name(info.dtype));
    json_shape(stdout, info.ndim, info.shape);
    fputs(", \"chunks\": ", stdout);
    if (info.chunked)
        json_shape(stdout, info.ndim, info.chunk);
    else
        fputs("null", stdout);
    printf(", \"virtual\": %s, \"parts\": %zu",
           info.map_status == TSNAP_MAP_VIRTUAL ? "true" : "false", info.nparts);
    if (info.map_status == TSNAP_MAP_VIRTUAL) /* each part has its own */
        printf(", \"codec\": null, \"shuffle\": null, \"bitshuffle\": null, \"filters\": [");
    else
        printf(", \"codec\": \"%s\", \"shuffle\": %s, \"bitshuffle\": %s, \"filters\": [",
               info.codec >= 0 && info.codec <= TSNAP_CODEC_LZ4 ? codecs[info.codec] : "other",
               info.shuffle == 1 ? "true" : "false", info.shuffle == 2 ? "true" : "false");
    for (int i = 0; i < info.nfilters; i++)
        printf("%s%d", i ? ", " : "", info.filters[i]);
    printf("], \"nbytes\": %" PRIu64 ", \"stored_bytes\": %" PRIu64, info.nbytes, info.stored_bytes);
    if (info.stored_bytes)
        printf(", \"ratio\": %.4f", (double)info.nbytes / (double)info.stored_bytes);
    else
        fputs(", \"ratio\": null", stdout);
    if (info.map_status == TSNAP_MAP_OK || info.map_status == TSNAP_MAP_EMPTY)
        printf(", \"mappable\": true, \"why_not\": null, \"offset\": %" PRIu64, info.offset);
    else
        printf(", \"mappable\": false, \"why_not\": \"%s\"", tsnap_map_status_str(info.map_status));
    fputs(", \"checksum\": ", stdout);
    if (info.checksum[0])
        cli_json_string(stdout, info.checksum);
    else
        fputs("null", stdout);
    fputs(", \"enum\": ", stdout);
    cli_enum_print(stdout, r, name, 1);
    fputc('}', stdout);
}

static int ls_file(const char *path, int json)
{
    tsnap_reader *r;
    size_t n;
    row *rows;
    int width[7] = {4, 5, 5, 6, 5, 5, 0};
    uint64_t nbytes = 0, stored = 0;
    size_t virt = 0;

    if (cli_open(&r, path) < 0)
        return CLI_FAIL;
    n = tsnap_reader_count(r);
    if (json) {
        fputs("{\"path\": ", stdout);
        cli_json_string(stdout, path);
        printf(", \"kind\": \"file\", \"format_version\": %d, \"tensors\": [",
               tsnap_reader_format_version(r));
        for (size_t i = 0; i < n; i++) {
            fputs(i ? ",\n  " : "\n  ", stdout);
            json_tensor(r, tsnap_reader_name(r, i));
        }
        fputs("]}", stdout);
        tsnap_reader_free(r);
        return CLI_OK;
    }
    if (!(rows = calloc(n ? n : 1, sizeof *rows))) {
        tsnap_reader_free(r);
        return cli_error("%s: out of memory", path);
    }
    for (size_t i = 0; i < n; i++) {
        const char *cols[6];
        tsnap_tensor_info info;
        if (describe_row(r, tsnap_reader_name(r, i), &rows[i], &info) == 0) {
            nbytes += info.nbytes;
            stored += info.stored_bytes;
            virt += info.map_status == TSNAP_MAP_VIRTUAL;
        }
        cols[0] = rows[i].name, cols[1] = rows[i].dtype, cols[2] = rows[i].shape;
        cols[3] = rows[i].chunks, cols[4] = rows[i].codec, cols[5] = rows[i].ratio;
        for (int c = 0; c < 6; c++)
            if ((int)strlen(cols[c]) > width[c])
                width[c] = (int)strlen(cols[c]);
    }
    printf("%-*s  %-*s  %-*s  %-*s  %-*s  %*s  %s\n", width[0], "NAME", width[1], "DTYPE",
           width[2], "SHAPE", width[3], "CHUNKS", width[4], "CODEC", width[5], "RATIO", "MAPPABLE");
    for (size_t i = 0; i < n; i++)
        printf("%-*s  %-*s  %-*s  %-*s  %-*s  %*s  %s\n", width[0], rows[i].name, width[1],
               rows[i].dtype, width[2], rows[i].shape, width[3], rows[i].chunks, width[4],
               rows[i].codec, width[5], rows[i].ratio, rows[i].map);
    for (size_t i = 0; i < n; i++) { /* the names of enums' values */
        if (!strstr(rows[i].dtype, " enum"))
            continue;
        printf("enum %s: ", rows[i].name);
        cli_enum_print(stdout, r, rows[i].name, 0);
        fputc('\n', stdout);
    }
    {
        char a[16], b[16];
        printf("%zu tensor%s, %s (%s stored", n, n == 1 ? "" : "s",
               cli_bytes_str(nbytes, a, sizeof a), cli_bytes_str(stored, b, sizeof b));
        if (virt)
            printf("; %zu virtual, stored in part files", virt);
        printf(")\n");
    }
    free(rows);
    tsnap_reader_free(r);
    return CLI_OK;
}

/* One step of a store: its size, `created`, `time` and tensor count. */
typedef struct step_row {
    int64_t step;
    char path[4200];
    uint64_t size;
    char created[64];
    int has_time;
    double time;
    long tensors;  /* -1: unreadable */
    char error[400];
} step_row;

static void read_step(int64_t step, const char *path, step_row *s)
{
    tsnap_reader *r;
    tsnap_attr a;

    memset(s, 0, sizeof *s);
    s->step = step;
    s->tensors = -1;
    snprintf(s->path, sizeof s->path, "%s", path);
    s->size = cli_snapshot_size(s->path);
    if (tsnap_reader_open(&r, s->path) < 0) {
        snprintf(s->error, sizeof s->error, "%s", tsnap_errmsg());
        return;
    }
    s->tensors = (long)tsnap_reader_count(r);
    if (tsnap_reader_attr_find(r, NULL, "created", &a) == 0 && a.kind == TSNAP_ATTR_STRING)
        snprintf(s->created, sizeof s->created, "%s", a.string);
    if (tsnap_reader_attr_find(r, NULL, "time", &a) == 0 && a.kind == TSNAP_ATTR_NUMERIC &&
        a.value.ndim == 0) {
        tsnap_dtype dt;
        if (tsnap_dtype_from_dlpack(&dt, a.value.dtype) == 0) {
            s->has_time = 1;
            s->time = cli_value(dt, a.value.data, 0);
        }
    }
    tsnap_reader_free(r);
}

static int ls_store(const char *dir, int json)
{
    cli_steps list;
    uint64_t total = 0;
    step_row s;
    size_t n;
    const int64_t *steps;

    if (cli_store_steps(dir, &list) < 0)
        return CLI_FAIL;
    n = list.count;
    steps = list.steps;
    if (json) {
        fputs("{\"path\": ", stdout);
        cli_json_string(stdout, dir);
        fputs(", \"kind\": \"store\", \"steps\": [", stdout);
    } else {
        printf("%-12s  %10s  %-27s  %12s  %s\n", "STEP", "SIZE", "CREATED", "TIME", "TENSORS");
    }
    for (size_t i = 0; i < n; i++) {
        char size[16], time[32];
        read_step(steps[i], list.paths[i], &s);
        total += s.size;
        if (json) {
            printf("%s{\"step\": %" PRId64 ", \"path\": ", i ? ",\n  " : "\n  ", s.step);
            cli_json_string(stdout, s.path);
            printf(", \"size\": %" PRIu64 ", \"created\": ", s.size);
            if (s.created[0])
                cli_json_string(stdout, s.created);
            else
                fputs("null", stdout);
            if (s.has_time && isfinite(s.time))
                printf(", \"time\": %.17g", s.time);
            else
                fputs(", \"time\": null", stdout);
            if (s.tensors >= 0)
                printf(", \"tensors\": %ld}", s.tensors);
            else {
                fputs(", \"tensors\": null, \"error\": ", stdout);
                cli_json_string(stdout, s.error);
                fputc('}', stdout);
            }
            continue;
        }
        if (s.has_time)
            snprintf(time, sizeof time, "%.6g", s.time);
        else
            snprintf(time, sizeof time, "-");
        if (s.tensors >= 0)
            printf("%-12" PRId64 "  %10s  %-27s  %12s  %ld\n", s.step,
                   cli_bytes_str(s.size, size, sizeof size), s.created[0] ? s.created : "-", time,
                   s.tensors);
        else
            printf("%-12" PRId64 "  %10s  unreadable: %s\n", s.step,
                   cli_bytes_str(s.size, size, sizeof size), s.error);
    }
    if (json) {
        fputs("], \"latest\": ", stdout);
        if (n)
            printf("%" PRId64, steps[n - 1]);
        else
            fputs("null", stdout);
        fputc('}', stdout);
    } else {
        char t[16];
        if (n)
            printf("%zu step%s, %s; latest %" PRId64 "\n", n, n == 1 ? "" : "s",
                   cli_bytes_str(total, t, sizeof t), steps[n - 1]);
        else
            printf("no committed steps\n");
    }
    cli_steps_free(&list);
    return CLI_OK;
}

static int run(int argc, char **argv)
{
    int json, status = cli_json_options(argc, argv, &json);

    if (status >= 0)
        return status;
    status = CLI_OK;
    if (optind >= argc)
        return cli_usage("which file or store? (tsnap ls PATH...)");
    if (json && argc - optind > 1)
        fputs("[", stdout);
    for (int i = optind; i < argc; i++) {
        int dir = cli_is_dir(argv[i]), st;
        if (!json && argc - optind > 1)
            printf("%s%s:\n", i > optind ? "\n" : "", argv[i]);
        if (json && i > optind)
            fputs(",\n", stdout);
        st = dir == 1 ? ls_store(argv[i], json) : ls_file(argv[i], json);
        if (json && st != CLI_OK)
            fputs("null", stdout);
        if (st != CLI_OK)
            status = st;
    }
    if (json)
        fputs(argc - optind > 1 ? "]\n" : "\n", stdout);
    return status;
}

const cli_command cli_ls = {"ls", "list the tensors of a snapshot or the steps of a store", help,
                            run};

/*
 * info.c - `tsnap info`: a snapshot's attributes and format details, or
 * one tensor's, as the library and HDF5 itself report them.
 */
#include <dirent.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <hdf5.h>
#ifdef TSNAP_CLI_HAVE_H5LT
#include <hdf5_hl.h>
#endif

#include "cli.h"

static const char help[] =
    "usage: tsnap info [--json] PATH [NAME...]\n"
    "\n"
    "Shows a snapshot's format details (tsnap format version, producer, creation\n"
    "time, step and time, HDF5 superblock and file size, totals) and its root\n"
    "attributes; with NAMEs, each tensor's details instead: dtype and HDF5 type,\n"
    "shape, layout and chunks, filters, logical and stored bytes, where it lies\n"
    "when it can be memory-mapped (or why it cannot), checksum and attributes.\n"
    "For a store (a directory): its steps, their total size, temporary files a\n"
    "killed writer left, and the details of the latest step.\n"
    "\n"
    "Options:\n"
    "  --json      one JSON object\n"
    "  -h, --help  this text\n"
    "\n"
    "Examples:\n"
    "  tsnap info step0.h5\n"
    "  tsnap info step0.h5 fields/u fields/v\n"
    "  tsnap info --json checkpoints/\n";

/* HDF5's own view of the file: what h5dump would say. */
typedef struct h5_details {
    unsigned superblock;
    uint64_t file_size, free_space, userblock;
} h5_details;

static int file_details(const char *path, h5_details *d)
{
    H5F_info2_t fi;
    hid_t f, fcpl = -1;
    hsize_t ub = 0, size = 0;
    hssize_t space;
    int ok;

    memset(d, 0, sizeof *d);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if ((f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0)
        return -1;
    ok = H5Fget_info2(f, &fi) >= 0 && H5Fget_filesize(f, &size) >= 0 &&
         (space = H5Fget_freespace(f)) >= 0 && (fcpl = H5Fget_create_plist(f)) >= 0 &&
         H5Pget_userblock(fcpl, &ub) >= 0;
    if (ok) {
        d->superblock = fi.super.version;
        d->file_size = size;
        d->free_space = (uint64_t)space;
        d->userblock = ub;
    }
    if (fcpl >= 0)
        H5Pclose(fcpl);
    H5Fclose(f);
    return ok ? 0 : -1;
}

/* The HDF5 type and chunk count of a dataset, for `info NAME`. */
static void dataset_details(const char *path, const char *name, char *type, size_t len,
                            long long *nchunks, const char **layout)
{
    hid_t f, d = -1, t = -1, s = -1, dcpl;
    hsize_t n;

    snprintf(type, len, "?");
    *nchunks = -1;
    *layout = "?";
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if ((f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0)
        return;
    if ((d = H5Dopen2(f, name, H5P_DEFAULT)) >= 0 && (t = H5Dget_type(d)) >= 0) {
#ifdef TSNAP_CLI_HAVE_H5LT
        size_t need = 0;
        if (H5LTdtype_to_text(t, NULL, H5LT_DDL, &need) >= 0 && need) {
            char *text = malloc(need + 1);
            if (text && H5LTdtype_to_text(t, text, H5LT_DDL, &need) >= 0) {
                /* One line: the DDL text spreads compounds over lines. */
                size_t o = 0;
                for (char *p = text; *p && o + 1 < len; p++) {
                    if (*p == '\n' || *p == '\t' || *p == ' ') {
                        if (o && type[o - 1] != ' ')
                            type[o++] = ' ';
                    } else {
                        type[o++] = *p;
                    }
                }
                while (o && type[o - 1] == ' ')
                    o--;
                type[o] = '\0';
            }
            free(text);
        }
#else
        H5T_class_t c = H5Tget_class(t);
        snprintf(type, len, "HDF5 class %d, %zu bytes", (int)c, H5Tget_size(t));
#endif
        /* HDF5 1.10 converts the fill value to give the creation
         * properties: a damaged one of a variable-length type crashes it. */
        if (H5Tdetect_class(t, H5T_VLEN) == 0 && (dcpl = H5Dget_create_plist(d)) >= 0) {
            switch (H5Pget_layout(dcpl)) {
            case H5D_COMPACT: *layout = "compact"; break;
            case H5D_CONTIGUOUS: *layout = "contiguous"; break;
            case H5D_CHUNKED: *layout = "chunked"; break;
            case H5D_VIRTUAL: *layout = "virtual"; break;
            default: break;
            }
            H5Pclose(dcpl);
        }
        if ((s = H5Dget_space(d)) >= 0 && H5Dget_num_chunks(d, s, &n) >= 0) {
            *nchunks = (long long)n;
            *layout = "chunked";
        }
    }
    if (s >= 0)
        H5Sclose(s);
    if (t >= 0)
        H5Tclose(t);
    if (d >= 0)
        H5Dclose(d);
    H5Fclose(f);
}

/* ---- attributes ---- */

static void print_attrs(tsnap_reader *r, const char *name, int json)
{
    size_t n = 0;
    tsnap_attr a;

    if (tsnap_reader_attr_count(r, name, &n) < 0) {
        if (json)
            fputs("null", stdout);
        else
            printf("  (unreadable: %s)\n", tsnap_errmsg());
        return;
    }
    if (json)
        fputc('{', stdout);
    else if (!n)
        printf("  (none)\n");
    for (size_t i = 0; i < n; i++) {
        if (tsnap_reader_attr(r, name, i, &a) < 0)
            continue;
        if (json) {
            fputs(i ? ", " : "", stdout);
            cli_json_string(stdout, a.key);
            fputs(": ", stdout);
        } else {
            printf("  %s = ", a.key);
        }
        cli_attr_value(stdout, &a, json);
        if (!json)
            fputc('\n', stdout);
    }
    if (json)
        fputc('}', stdout);
}

static const char *root_string(tsnap_reader *r, const char *key)
{
    tsnap_attr a;
    if (tsnap_reader_attr_find(r, NULL, key, &a) == 0 && a.kind == TSNAP_ATTR_STRING)
        return a.string;
    return NULL;
}

/* ---- a file ---- */

static int info_file(const char *path, int json)
{
    tsnap_reader *r;
    h5_details h5;
    uint64_t nbytes = 0, stored = 0;
    size_t n, mappable = 0, unreadable = 0, virt = 0, strings = 0;
    const char *producer, *created;
    char a[16], b[16], c[16];
    int version;

    if (cli_open(&r, path) < 0)
        return CLI_FAIL;
    if (file_details(path, &h5) < 0) {
        tsnap_reader_free(r);
        return cli_error("%s: HDF5 cannot describe the file", path);
    }
    n = tsnap_reader_count(r);
    for (size_t i = 0; i < n; i++) {
        tsnap_tensor_info info;
        if (tsnap_reader_describe(r, tsnap_reader_name(r, i), &info) < 0) {
            strings += info.string != TSNAP_STRING_NONE;
            unreadable += info.string == TSNAP_STRING_NONE;
            continue;
        }
        nbytes += info.nbytes;
        stored += info.stored_bytes;
        mappable += info.map_status == TSNAP_MAP_OK || info.map_status == TSNAP_MAP_EMPTY;
        virt += info.map_status == TSNAP_MAP_VIRTUAL;
    }
    uint64_t with_parts = cli_snapshot_size(path);
    version = tsnap_reader_format_version(r);
    producer = root_string(r, "producer");
    created = root_string(r, "created");
    if (json) {
        fputs("{\"path\": ", stdout);
        cli_json_string(stdout, path);
        printf(", \"kind\": \"file\", \"format_version\": %d, \"producer\": ", version);
        producer ? cli_json_string(stdout, producer) : (void)fputs("null", stdout);
        fputs(", \"created\": ", stdout);
        created ? cli_json_string(stdout, created) : (void)fputs("null", stdout);
        printf(", \"file_size\": %" PRIu64 ", \"hdf5\": {\"superblock_version\": %u, "
               "\"free_space\": %" PRIu64 ", \"userblock\": %" PRIu64 "}",
               h5.file_size, h5.superblock, h5.free_space, h5.userblock);
        printf(", \"tensors\": %zu, \"unreadable\": %zu, \"strings\": %zu, \"mappable\": %zu"
               ", \"virtual\": %zu, \"size_with_parts\": %" PRIu64 ", \"nbytes\": %" PRIu64
               ", \"stored_bytes\": %" PRIu64 ", \"attrs\": ",
               n, unreadable, strings, mappable, virt, with_parts, nbytes, stored);
        print_attrs(r, NULL, 1);
        fputc('}', stdout);
        tsnap_reader_free(r);
        return CLI_OK;
    }
    printf("file:        %s\n", path);
    printf("size:        %s (%" PRIu64 " bytes)", cli_bytes_str(h5.file_size, a, sizeof a),
           h5.file_size);
    if (with_parts > h5.file_size)
        printf(", %s with its parts folder", cli_bytes_str(with_parts, b, sizeof b));
    printf("\n");
    if (version)
        printf("format:      tsnap %d, written by %s\n", version, producer ? producer : "?");
    else
        printf("format:      HDF5 (not written by tsnap: no checksums, dtypes from HDF5 types)\n");
    if (created)
        printf("created:     %s\n", created);
    printf("HDF5:        superblock version %u, %s free, userblock %" PRIu64 " bytes\n",
           h5.superblock, cli_bytes_str(h5.free_space, b, sizeof b), h5.userblock);
    printf("tensors:     %zu: %s logical, %s stored", n, cli_bytes_str(nbytes, a, sizeof a),
           cli_bytes_str(stored, c, sizeof c));
    if (stored)
        printf(" (ratio %.2f)", (double)nbytes / (double)stored);
    printf("; %zu mappable", mappable);
    if (virt)
        printf("; %zu virtual (their blocks in part files: tsnap info PATH NAME)", virt);
    if (strings)
        printf("; %zu single string%s", strings, strings == 1 ? "" : "s");
    if (unreadable)
        printf("; %zu tsnap cannot read", unreadable);
    printf("\nattributes:\n");
    print_attrs(r, NULL, 0);
    tsnap_reader_free(r);
    return CLI_OK;
}

/* ---- one tensor ---- */

/* The blocks of a virtual tensor, each with what its part file says of
 * it (codec, stored bytes) or why it cannot be read; the stored bytes of
 * all of them into *stored (0 if one is unreadable). */
static void print_parts(tsnap_reader *r, const char *name, const tsnap_tensor_info *t, int json,
                        uint64_t *stored)
{
    *stored = 0;
    if (json)
        fputs(", \"parts\": [", stdout);
    else
        printf("parts:       %zu\n", t->nparts);
    int all = 1;
    for (size_t i = 0; i < t->nparts; i++) {
        tsnap_part p;
        tsnap_tensor_info pi;
        tsnap_reader *pr = NULL;
        char at[800], codec[64], sz[16], why[600] = "";
        int64_t end[TSNAP_MAX_NDIM];
        size_t o = 0;
        if (tsnap_reader_part(r, name, i, &p) < 0)
            break;
        for (int d = 0; d < t->ndim && o + 48 < sizeof at; d++) {
            end[d] = p.offset[d] + p.shape[d];
            o += (size_t)snprintf(at + o, sizeof at - o, "%s%" PRId64 ":%" PRId64, d ? ", " : "[",
                                  p.offset[d], end[d]);
        }
        snprintf(at + o, sizeof at - o, "]");
        if (tsnap_reader_open(&pr, p.path) < 0 ||
            tsnap_reader_describe(pr, p.dataset + strspn(p.dataset, "/"), &pi) < 0)
            snprintf(why, sizeof why, "%s", tsnap_errmsg());
        else
            cli_codec_str(&pi, codec, sizeof codec);
        tsnap_reader_free(pr);
        if (why[0])
            all = 0;
        else
            *stored += pi.stored_bytes;
        if (json) {
            fputs(i ? ", {\"file\": " : "{\"file\": ", stdout);
            cli_json_string(stdout, p.file);
            fputs(", \"path\": ", stdout);
            cli_json_string(stdout, p.path);
            fputs(", \"dataset\": ", stdout);
            cli_json_string(stdout, p.dataset);
            fputs(", \"offset\": [", stdout);
            for (int d = 0; d < t->ndim; d++)
                printf("%s%" PRId64, d ? ", " : "", p.offset[d]);
            fputs("], \"shape\": [", stdout);
            for (int d = 0; d < t->ndim; d++)
                printf("%s%" PRId64, d ? ", " : "", p.shape[d]);
            fputs("], ", stdout);
            if (why[0]) {
                fputs("\"error\": ", stdout);
                cli_json_string(stdout, why);
            } else {
                fputs("\"codec\": ", stdout);
                cli_json_string(stdout, codec);
                printf(", \"stored_bytes\": %" PRIu64, pi.stored_bytes);
            }
            fputc('}', stdout);
        } else if (why[0]) {
            printf("  %s  %s:%s  unreadable: %s\n", at, p.file, p.dataset, why);
        } else {
            printf("  %s  %s:%s  %s, %s stored\n", at, p.file, p.dataset, codec,
                   cli_bytes_str(pi.stored_bytes, sz, sizeof sz));
        }
    }
    if (json)
        fputc(']', stdout);
    if (!all)
        *stored = 0;
}

/* A virtual tensor: the global tensor, then its blocks. */
static int info_virtual(tsnap_reader *r, const char *path, const char *name,
                        const tsnap_tensor_info *t, int json)
{
    char shape[400], type[512], a[16], b[16];
    const char *layout;
    long long nchunks;
    uint64_t stored;

    dataset_details(path, name, type, sizeof type, &nchunks, &layout);
    cli_shape_str(t->ndim, t->shape, shape, sizeof shape);
    if (json) {
        fputs("{\"name\": ", stdout);
        cli_json_string(stdout, name);
        printf(", \"dtype\": \"%s\", \"hdf5_type\": ", tsnap_dtype_name(t->dtype));
        cli_json_string(stdout, type);
        fputs(", \"shape\": [", stdout);
        for (int i = 0; i < t->ndim; i++)
            printf("%s%" PRId64, i ? ", " : "", t->shape[i]);
        printf("], \"chunks\": null, \"layout\": \"virtual\", \"nbytes\": %" PRIu64, t->nbytes);
        print_parts(r, name, t, 1, &stored);
        printf(", \"stored_bytes\": %" PRIu64 ", \"mappable\": false, \"why_not\": \"%s\"", stored,
               tsnap_map_status_str(t->map_status));
        fputs(", \"checksum\": null, \"attrs\": ", stdout);
        print_attrs(r, name, 1);
        fputc('}', stdout);
        return CLI_OK;
    }
    printf("tensor:      %s\n", name);
    printf("dtype:       %s (HDF5 %s)\n", tsnap_dtype_name(t->dtype), type);
    printf("shape:       %s\n", shape);
    printf("layout:      virtual, %zu part%s: each block the whole of a dataset in a part file\n",
           t->nparts, t->nparts == 1 ? "" : "s");
    print_parts(r, name, t, 0, &stored);
    printf("bytes:       %s logical, %s stored in the parts", cli_bytes_str(t->nbytes, a, sizeof a),
           stored ? cli_bytes_str(stored, b, sizeof b) : "?");
    if (stored)
        printf(" (ratio %.2f)", (double)t->nbytes / (double)stored);
    printf("\nmappable:    no: %s (a region inside one block maps)\n",
           tsnap_map_status_str(t->map_status));
    printf("checksum:    one per block, in its part file\n");
    printf("attributes:\n");
    print_attrs(r, name, 0);
    return CLI_OK;
}

static int info_tensor(tsnap_reader *r, const char *path, const char *name, int json)
{
    tsnap_tensor_info t;
    char shape[400], chunks[400], codec[64], type[512], a[16], b[16];
    const char *layout;
    long long nchunks;

    if (tsnap_reader_describe(r, name, &t) < 0)
        return cli_error("%s", tsnap_errmsg());
    if (t.map_status == TSNAP_MAP_VIRTUAL)
        return info_virtual(r, path, name, &t, json);
    dataset_details(path, name, type, sizeof type, &nchunks, &layout);
    cli_shape_str(t.ndim, t.shape, shape, sizeof shape);
    cli_shape_str(t.ndim, t.chunk, chunks, sizeof chunks);
    cli_codec_str(&t, codec, sizeof codec);
    if (json) {
        fputs("{\"name\": ", stdout);
        cli_json_string(stdout, name);
        printf(", \"dtype\": \"%s\", \"hdf5_type\": ", tsnap_dtype_name(t.dtype));
        cli_json_string(stdout, type);
        fputs(", \"shape\": [", stdout);
        for (int i = 0; i < t.ndim; i++)
            printf("%s%" PRId64, i ? ", " : "", t.shape[i]);
        fputs("], \"chunks\": ", stdout);
        if (t.chunked) {
            fputc('[', stdout);
            for (int i = 0; i < t.ndim; i++)
                printf("%s%" PRId64, i ? ", " : "", t.chunk[i]);
            fputc(']', stdout);
        } else {
            fputs("null", stdout);
        }
        printf(", \"layout\": \"%s\", \"chunks_stored\": %lld, \"filters\": [", layout,
               nchunks);
        for (int i = 0; i < t.nfilters; i++)
            printf("%s%d", i ? ", " : "", t.filters[i]);
        printf("], \"codec\": ");
        cli_json_string(stdout, codec);
        printf(", \"big_endian\": %s, \"nbytes\": %" PRIu64 ", \"stored_bytes\": %" PRIu64,
               t.big_endian ? "true" : "false", t.nbytes, t.stored_bytes);
        if (t.map_status == TSNAP_MAP_OK || t.map_status == TSNAP_MAP_EMPTY)
            printf(", \"mappable\": true, \"offset\": %" PRIu64 ", \"length\": %" PRIu64, t.offset,
                   t.length);
        else
            printf(", \"mappable\": false, \"why_not\": \"%s\"", tsnap_map_status_str(t.map_status));
        fputs(", \"checksum\": ", stdout);
        t.checksum[0] ? cli_json_string(stdout, t.checksum) : (void)fputs("null", stdout);
        fputs(", \"enum\": ", stdout);
        cli_enum_print(stdout, r, name, 1);
        fputs(", \"attrs\": ", stdout);
        print_attrs(r, name, 1);
        fputc('}', stdout);
        return CLI_OK;
    }
    printf("tensor:      %s\n", name);
    printf("dtype:       %s (HDF5 %s%s)\n", tsnap_dtype_name(t.dtype), type,
           t.big_endian ? ", stored big-endian" : "");
    fputs("enum:        ", stdout);
    if (cli_enum_print(stdout, r, name, 0))
        fputc('\n', stdout);
    else
        fputs("-\n", stdout);
    printf("shape:       %s\n", shape);
    if (t.chunked)
        printf("layout:      chunked, chunks %s, %lld stored\n", chunks, nchunks);
    else
        printf("layout:      %s\n", layout);
    printf("filters:     %s", codec);
    for (int i = 0; i < t.nfilters; i++)
        printf("%s%d", i ? "," : " (HDF5 filter ids ", t.filters[i]);
    printf("%s\n", t.nfilters ? ")" : "");
    printf("bytes:       %s logical, %s stored", cli_bytes_str(t.nbytes, a, sizeof a),
           cli_bytes_str(t.stored_bytes, b, sizeof b));
    if (t.stored_bytes)
        printf(" (ratio %.2f)", (double)t.nbytes / (double)t.stored_bytes);
    if (t.map_status == TSNAP_MAP_OK || t.map_status == TSNAP_MAP_EMPTY)
        printf("\nmappable:    yes, %" PRIu64 " bytes at offset %" PRIu64 "\n", t.length, t.offset);
    else
        printf("\nmappable:    no: %s\n", tsnap_map_status_str(t.map_status));
    printf("checksum:    %s\n", t.checksum[0] ? t.checksum : "none recorded");
    printf("attributes:\n");
    print_attrs(r, name, 0);
    return CLI_OK;
}

static int info_tensors(const char *path, char **names, int n, int json)
{
    tsnap_reader *r;
    int status = CLI_OK;

    if (cli_open(&r, path) < 0)
        return CLI_FAIL;
    if (json && n > 1)
        fputc('[', stdout);
    for (int i = 0; i < n; i++) {
        int st;
        if (i)
            fputs(json ? ",\n" : "\n", stdout);
        st = info_tensor(r, path, names[i], json);
        if (st != CLI_OK) {
            status = st;
            if (json)
                fputs("null", stdout);
        }
    }
    if (json && n > 1)
        fputc(']', stdout);
    tsnap_reader_free(r);
    return status;
}

/* ---- a store ---- */

static size_t leftover_temporaries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;
    if (!d)
        return 0;
    while ((e = readdir(d))) {
        static const char suffix[] = ".tsnap-tmp";
        size_t len = strlen(e->d_name), k = sizeof suffix - 1;
        if (e->d_name[0] == '.' && len > k && !strcmp(e->d_name + len - k, suffix))
            n++;
    }
    closedir(d);
    return n;
}

static int info_store(const char *dir, int json)
{
    cli_steps list;
    const int64_t *steps;
    size_t n, tmp;
    uint64_t total = 0;
    char a[16];
    int status = CLI_OK;

    if (cli_store_steps(dir, &list) < 0)
        return CLI_FAIL;
    n = list.count;
    steps = list.steps;
    for (size_t i = 0; i < n; i++)
        total += cli_snapshot_size(list.paths[i]);
    tmp = leftover_temporaries(dir);
    if (json) {
        fputs("{\"path\": ", stdout);
        cli_json_string(stdout, dir);
        printf(", \"kind\": \"store\", \"steps\": %zu, \"first\": ", n);
        n ? printf("%" PRId64, steps[0]) : fputs("null", stdout);
        fputs(", \"latest\": ", stdout);
        n ? printf("%" PRId64, steps[n - 1]) : fputs("null", stdout);
        printf(", \"size\": %" PRIu64 ", \"temporary_files\": %zu, \"latest_step\": ", total, tmp);
    } else {
        printf("store:       %s\n", dir);
        if (n)
            printf("steps:       %zu, from %" PRId64 " to %" PRId64 ", %s\n", n, steps[0],
                   steps[n - 1], cli_bytes_str(total, a, sizeof a));
        else
            printf("steps:       none committed\n");
        if (tmp)
            printf("temporaries: %zu left by an interrupted writer (removed when it next opens)\n",
                   tmp);
    }
    if (n) {
        if (!json)
            printf("\nlatest step %" PRId64 ":\n", steps[n - 1]);
        status = info_file(list.paths[n - 1], json);
        if (json && status != CLI_OK)
            fputs("null", stdout);
    } else if (json) {
        fputs("null", stdout);
    }
    if (json)
        fputc('}', stdout);
    cli_steps_free(&list);
    return status;
}

static int run(int argc, char **argv)
{
    int json, status;

    if ((status = cli_json_options(argc, argv, &json)) >= 0)
        return status;
    if (optind >= argc)
        return cli_usage("which file or store? (tsnap info PATH [NAME...])");
    if (argc - optind > 1) {
        if (cli_is_dir(argv[optind]) == 1)
            return cli_usage("%s is a store: name one of its step files to see its tensors",
                             argv[optind]);
        status = info_tensors(argv[optind], argv + optind + 1, argc - optind - 1, json);
    } else if (cli_is_dir(argv[optind]) == 1) {
        status = info_store(argv[optind], json);
    } else {
        status = info_file(argv[optind], json);
    }
    if (json)
        fputc('\n', stdout);
    return status;
}

const cli_command cli_info = {"info", "show a snapshot's or a tensor's attributes and format details",
                              help, run};

/*
 * cli.h - what the subcommands of the `tsnap` command share.
 *
 * Each subcommand is one file (ls.c, info.c, verify.c, diff.c, export.c,
 * cp.c) defining a cli_command; main.c dispatches to them.  They use the
 * public API of the library only, plus HDF5 itself where a command shows
 * HDF5's own details.
 *
 * Exit codes, for every command: 0 success, 1 a failure (for verify: a
 * damaged file; for diff: the snapshots differ), 2 a usage error (and, for
 * verify and diff, trouble that kept them from answering: a missing file).
 */
#ifndef TSNAP_CLI_H
#define TSNAP_CLI_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include <tsnap.h>

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

typedef struct cli_command {
    const char *name;
    const char *summary;  /* one line for `tsnap --help` */
    const char *help;     /* the whole `tsnap NAME --help` text */
    /* argv[0] is the command's name; getopt state is reset before. */
    int (*run)(int argc, char **argv);
} cli_command;

extern const cli_command cli_ls, cli_info, cli_verify, cli_diff, cli_export, cli_cp;

/* ---- messages ---- */

/** "tsnap CMD: <message>\n" on stderr.  Returns CLI_FAIL. */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** As cli_error, prefixed "warning: ".  Returns 0. */
int cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** A usage error: the message, then "try 'tsnap CMD --help'".  Returns
 *  CLI_USAGE. */
int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** The command being run, for messages ("ls"). */
extern const char *cli_name;

/* ---- options ---- */

/**
 * getopt_long for a command: `shortopts` and `longopts` as getopt_long
 * takes them; "--help" and "-h" print the command's help and make it
 * return CLI_OK (*done set to 1).  Returns the option character, -1 at
 * the end, or '?' after printing a usage error (the caller returns
 * CLI_USAGE).
 */
struct option;
int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
               int *done);

/**
 * The options of a command whose only option is --json (ls, info): sets
 * *json, and returns -1 to go on with the operands from optind, or the
 * exit status (CLI_OK after --help, CLI_USAGE).
 */
int cli_json_options(int argc, char **argv, int *json);

/** Parses a non-negative double ("1e-6"); -1 with a usage message if not. */
int cli_parse_double(const char *opt, const char *s, double *out);

/** Parses a byte count with an optional K, M, G or T suffix (powers of
 *  1024, "KiB" and "k" accepted too). */
int cli_parse_bytes(const char *opt, const char *s, uint64_t *out);

/** Parses a positive integer no larger than `max`. */
int cli_parse_int(const char *opt, const char *s, long max, long *out);

/* ---- formatting ---- */

/** "1.5 GiB", "312 B" into buf (at least 16 bytes). */
const char *cli_bytes_str(uint64_t n, char *buf, size_t len);

/** "(3, 4, 5)" (with a trailing comma for one dimension: "(7,)") into buf. */
const char *cli_shape_str(int ndim, const int64_t *shape, char *buf, size_t len);

/** The codec of a description, as `tsnap ls` shows it: "none", "zstd",
 *  "deflate+shuffle", "filters 32008,2" ... */
const char *cli_codec_str(const tsnap_tensor_info *info, char *buf, size_t len);

/** Writes `s` as a JSON string (quoted, escaped). */
void cli_json_string(FILE *f, const char *s);
/* The members of tensor `name`'s enum ("a=0, b=1", or a JSON object, or
 * JSON null when it is no enum); how many. */
size_t cli_enum_print(FILE *f, tsnap_reader *r, const char *name, int json);

/** Writes an attribute's value: JSON (numbers, strings, arrays of
 *  numbers) when json is 1, else as Python would print it. */
void cli_attr_value(FILE *f, const tsnap_attr *a, int json);

/** Writes element `i` of a buffer of `dtype` as Python would print it: the
 *  shortest text that reads back as the same value ("1.5", "-3", "True",
 *  "(1.0+2.0j)"). */
void cli_print_value(FILE *f, tsnap_dtype dtype, const void *data, uint64_t i);

/* ---- paths ---- */

/** 1 if `path` is a directory (a store), 0 if not, -1 if it does not
 *  exist (errno set). */
int cli_is_dir(const char *path);

/** The bytes a snapshot takes: its file, and for a distributed one the
 *  files of its parts folder (PATH + ".parts"). */
uint64_t cli_snapshot_size(const char *path);

/** Opens a reader, printing the library's message on failure. */
int cli_open(tsnap_reader **r, const char *path);

/** The committed steps of a store, ascending, and their files' paths as
 *  the store names them (tsnap_store_path). */
typedef struct cli_steps {
    size_t count;
    int64_t *steps;
    char **paths;
} cli_steps;

/** Lists the store in `dir` read only.  Prints the error and returns -1
 *  on failure (*out then empty). */
int cli_store_steps(const char *dir, cli_steps *out);

void cli_steps_free(cli_steps *s);

/* ---- values ---- */

/** Element `i` of a buffer of `dtype` as a double (the real part for a
 *  complex type); exact for every type but 64-bit integers beyond 2^53. */
double cli_value(tsnap_dtype dtype, const void *data, uint64_t i);

/** The imaginary part of element `i`, 0 for a real type. */
double cli_value_imag(tsnap_dtype dtype, const void *data, uint64_t i);

float cli_half_to_float(uint16_t h);
float cli_bfloat16_to_float(uint16_t b);
float cli_e4m3fn_to_float(uint8_t b);
float cli_e5m2_to_float(uint8_t b);

/* ---- reading big tensors in pieces ---- */

/**
 * A walk over a tensor in slabs of bounded size, each a C-order range of
 * its elements: axes before `axis` have count 1, axis `axis` a run of
 * rows (a multiple of the chunk's extent where it has one, so that each
 * chunk is decoded once when the chunk spans the later axes), later axes
 * whole.
 */
typedef struct cli_slabs {
    int ndim;
    int64_t shape[TSNAP_MAX_NDIM];
    int axis;                       /* the axis the slabs split */
    int64_t rows;                   /* slab extent along `axis` */
    int64_t start[TSNAP_MAX_NDIM];  /* the current slab */
    int64_t count[TSNAP_MAX_NDIM];
    uint64_t offset;                /* its first element, in C order */
    uint64_t n;                     /* its elements */
    uint64_t total;                 /* elements of the tensor */
    int started, finished;
} cli_slabs;

/** Plans slabs of at most `budget` bytes (at least one row of `axis`). */
void cli_slabs_init(cli_slabs *s, const tsnap_tensor_info *info, uint64_t budget);

/** Moves to the next slab: 1 when there is one, 0 at the end.  A 0-d
 *  tensor is one slab of one element, an empty one has none. */
int cli_slabs_next(cli_slabs *s);

/** Reads the current slab of `name` into `buf` (s->n elements, C order). */
int cli_slabs_read(const cli_slabs *s, tsnap_reader *r, const char *name, tsnap_dtype dtype,
                   void *buf);

/* ---- progress ---- */

/**
 * A progress bar on stderr, drawn only when stdout and stderr are both
 * terminals (and TSNAP_NO_PROGRESS is unset), at most ten times a second;
 * otherwise it does nothing and the command's plain lines are the record.
 */
typedef struct cli_progress {
    int on;
    const char *label;
    uint64_t total, done;
    double t0, drawn;
} cli_progress;

void cli_progress_start(cli_progress *p, const char *label, uint64_t total);
void cli_progress_add(cli_progress *p, uint64_t n);
/** Clears the bar's line, so that a message may be printed. */
void cli_progress_clear(cli_progress *p);
void cli_progress_end(cli_progress *p);

/* ---- strings ---- */

/** "str" for text, "bytes" for a byte string. */
const char *cli_string_kind(int kind);

/**
 * Reads the single string dataset `name` into a malloc'ed buffer *data
 * of *len bytes (NUL added after them) when `data` is not NULL, or only
 * reads it through; *kind (when not NULL) is its kind.  Returns the
 * library's code (its message set).
 */
int cli_read_string(tsnap_reader *r, const char *name, char **data, size_t *len,
                    tsnap_string_kind *kind);

#endif /* TSNAP_CLI_H */

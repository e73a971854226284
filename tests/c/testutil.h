/*
 * testutil.h - shared helpers of the CUnit suites.
 *
 * The oracles here are deliberately naive and independent of the library:
 * a per-element index loop gathers a DLTensor's logical bytes, the chunk
 * rule is recomputed from docs/FORMAT.md, checksums come straight from xxhash.
 */
#ifndef TSNAP_TESTUTIL_H
#define TSNAP_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include <CUnit/CUnit.h>
#include <hdf5.h>

#include "tsnap.h"

/* ------------------------------------------------------------------ */
/* Suites                                                              */
/* ------------------------------------------------------------------ */

typedef struct test_entry {
    const char *name;
    void (*fn)(void);
} test_entry;

#define TEST(fn) { #fn, fn }
#define TEST_END { NULL, NULL }

/* ------------------------------------------------------------------ */
/* Random data                                                         */
/* ------------------------------------------------------------------ */

extern uint64_t g_seed;

typedef struct rng {
    uint64_t s[4];
} rng;

/* A generator seeded from the run's seed and `label` (use __func__), so a
 * single test reproduces alone under the same TSNAP_TEST_SEED. */
void rng_init(rng *r, const char *label);
uint64_t rng_next(rng *r);
uint64_t rng_below(rng *r, uint64_t n);
void rng_fill(rng *r, void *buf, size_t n);
/* Random elements of `dtype`: raw random bytes (so every bit pattern,
 * NaN payloads included, occurs), and for bool arbitrary bytes, most of
 * them neither 0 nor 1, some 0. */
void rng_fill_dtype(rng *r, void *buf, size_t nelems, tsnap_dtype dtype);

/* ------------------------------------------------------------------ */
/* Checks (CUnit assertions with a useful message)                     */
/* ------------------------------------------------------------------ */

/* A context string prefixed to failure messages ("float32/negative"). */
void ctx_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ctx_clear(void);

void check_pass(const char *file, int line);
void check_fail(const char *file, int line, int fatal, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int check_rc(int got, int want, int need_msg, const char *expr, const char *wname,
             const char *file, int line, int fatal);
int check_neg(int got, const char *expr, const char *file, int line);
int check_str(const char *got, const char *want, const char *expr, const char *file, int line);
int check_i64(int64_t got, int64_t want, const char *expr, const char *file, int line);
int check_mem(const void *got, const void *want, size_t n, const char *what, const char *file,
              int line);

#define CHECK(cond) \
    do { if (cond) check_pass(__FILE__, __LINE__); \
         else check_fail(__FILE__, __LINE__, 0, "%s", #cond); } while (0)
#define CHECK_FATAL(cond) \
    do { if (cond) check_pass(__FILE__, __LINE__); \
         else check_fail(__FILE__, __LINE__, 1, "%s", #cond); } while (0)
#define CHECK_MSG(cond, ...) \
    do { if (cond) check_pass(__FILE__, __LINE__); \
         else check_fail(__FILE__, __LINE__, 0, __VA_ARGS__); } while (0)
/* rc == want */
#define CHECK_RC(expr, want) check_rc((expr), (want), 0, #expr, #want, __FILE__, __LINE__, 0)
#define CHECK_OK(expr) check_rc((expr), 0, 0, #expr, "TSNAP_OK", __FILE__, __LINE__, 0)
#define CHECK_OK_FATAL(expr) check_rc((expr), 0, 0, #expr, "TSNAP_OK", __FILE__, __LINE__, 1)
/* rc == want and tsnap_errmsg() is not empty */
#define CHECK_ERR(expr, want) check_rc((expr), (want), 1, #expr, #want, __FILE__, __LINE__, 0)
/* rc < 0 and tsnap_errmsg() is not empty */
#define CHECK_NEG(expr) check_neg((expr), #expr, __FILE__, __LINE__)
#define CHECK_STR(got, want) check_str((got), (want), #got, __FILE__, __LINE__)
#define CHECK_I64(got, want) check_i64((int64_t)(got), (int64_t)(want), #got, __FILE__, __LINE__)
#define CHECK_MEM(got, want, n, what) check_mem((got), (want), (n), (what), __FILE__, __LINE__)

/* The error message contains `needle`. */
#define CHECK_ERRMSG_HAS(needle) \
    CHECK_MSG(strstr(tsnap_errmsg(), (needle)) != NULL, \
              "tsnap_errmsg() \"%s\" does not contain \"%s\"", tsnap_errmsg(), (needle))

/* ------------------------------------------------------------------ */
/* Per-test temporary directory                                        */
/* ------------------------------------------------------------------ */

void test_setup(void);     /* creates the directory */
void test_teardown(void);  /* removes it with everything in it */
const char *tdir(void);
/* "<tdir>/<name>"; from a ring of 64 buffers, so copy it to keep it long. */
const char *tpath(const char *name);

int path_exists(const char *path);
/* The whole file, malloc'ed (at least 1 byte); NULL if it cannot be read. */
unsigned char *slurp(const char *path, size_t *size);
int spit(const char *path, const void *data, size_t n);
/* The number of entries of `dir` named "." + base + "." ... ".tsnap-tmp". */
int count_temp_files(const char *dir, const char *base);
/* The number of entries of `dir` other than "." and "..". */
int count_entries(const char *dir);
const char *base_name(const char *path);

/* ------------------------------------------------------------------ */
/* Data types, written out from docs/FORMAT.md (not asked of the library)   */
/* ------------------------------------------------------------------ */

typedef struct dtype_row {
    tsnap_dtype dtype;
    const char *name;
    size_t size;
    uint8_t code;  /* DLPack type code */
    uint8_t bits;
} dtype_row;

#define NDTYPES 18
extern const dtype_row DTYPES[NDTYPES];
const dtype_row *dtype_row_of(tsnap_dtype dtype);
DLDataType dl_type(tsnap_dtype dtype);
int is_float_dtype(tsnap_dtype dtype);

/* ------------------------------------------------------------------ */
/* Tensors and oracles                                                 */
/* ------------------------------------------------------------------ */

int64_t nelems(int ndim, const int64_t *shape);
DLTensor cpu_tensor(void *data, tsnap_dtype dtype, int ndim, int64_t *shape, int64_t *strides,
                    uint64_t byte_offset);
/* The logical C-order bytes of `t` by a plain index loop; bool bytes
 * become 0/1.  `out` holds nelems × itemsize bytes. */
void naive_gather(const DLTensor *t, size_t itemsize, int is_bool, unsigned char *out);
/* "xxh3-64:" + 16 lowercase hex digits of XXH3_64bits(p, n). */
void xxh3_tag(const void *p, size_t n, char out[40]);

/* The chunk rule: leading axes 1 while the inner block exceeds
 * chunk_bytes, then k = clamp(chunk_bytes / inner, 1, dim), then full.
 * Returns 1 if those chunks, each allocated whole and laid back to back in
 * index order, put the logical bytes flat in the file (no partial chunk
 * but the last). */
int chunk_rule(int ndim, const int64_t *shape, size_t itemsize, size_t chunk_bytes, int unfiltered,
               int64_t *chunk);

/* ------------------------------------------------------------------ */
/* The dtype × layout matrix                                           */
/* ------------------------------------------------------------------ */

typedef struct tcase {
    char name[64];           /* "<dtype>/<layout>" */
    const char *layout;
    tsnap_dtype dtype;
    size_t itemsize;
    int ndim;
    int64_t shape[TSNAP_MAX_NDIM];
    int64_t strides[TSNAP_MAX_NDIM];
    int has_strides;
    uint64_t byte_offset;
    unsigned char *base;     /* the source buffer, exactly base_bytes long */
    size_t base_bytes;
    unsigned char *expected; /* logical bytes (naive_gather) */
    size_t nbytes;
    DLTensor t;              /* the tensor given to tsnap_writer_put */
} tcase;

typedef struct caseset {
    tcase *v;
    size_t n;
} caseset;

/* Every dtype × every layout (0-d, empty, (1,), primes, 5-D, strided,
 * transposed, negative and zero strides, byte offsets, 32 dimensions). */
void caseset_build(caseset *cs, rng *r);
void caseset_free(caseset *cs);
const tcase *caseset_find(const caseset *cs, const char *name);

/* A fresh copy of a case's logical bytes in a C-contiguous tensor of its
 * dtype; returns a buffer of at least one byte filled with `fill`. */
unsigned char *alloc_filled(size_t n, int fill);

typedef struct optset {
    const char *label;
    tsnap_codec codec;
    int level;
    int shuffle;
    size_t chunk_bytes;
    int no_checksum;
} optset;

/* The option sets the matrix runs under.  TINY chunks (6 bytes) are
 * smaller than one row of every (…, 13) tensor. */
extern const optset OPT_PLAIN, OPT_DEFLATE, OPT_DEFLATE_NO_SHUFFLE, OPT_DEFLATE_SHUFFLE,
    OPT_DEFLATE_9, OPT_SMALL, OPT_SMALL_DEFLATE, OPT_TINY, OPT_TINY_DEFLATE;

void optset_apply(const optset *o, tsnap_write_options *opts);
/* Puts every case under its name and commits; CHECKs each call. */
int caseset_write(const caseset *cs, const char *path, const optset *o);
/* Opens `path`, verifies every checksum and CHECKs that each case reads
 * back whole as its logical bytes (`what` names the check). */
void caseset_check_file(const caseset *cs, const char *path, const char *what);

/* Expected HDF5-level facts of a case written under `o`. */
int case_chunked(const tcase *c);
int case_shuffled(const tcase *c, const optset *o);
int case_filtered(const tcase *c, const optset *o);

/* Opens `path` with tsnap; CHECKs (fatal) that it opens. */
tsnap_reader *open_reader(const char *path);

/* ------------------------------------------------------------------ */
/* HDF5 as an independent writer and oracle                            */
/* ------------------------------------------------------------------ */

/* Opens read-only with H5F_CLOSE_STRONG, as tsnap's reader and h5py do
 * (HDF5 refuses to open one file twice with different close degrees). */
hid_t h5_open(const char *path);
/* A new file with libver bounds (V110, V110), like tsnap's. */
hid_t h5_create(const char *path);
/* Scalar attributes: a variable-length UTF-8 string, an int64. */
int h5_put_string_attr(hid_t obj, const char *key, const char *value);
int h5_put_i64_attr(hid_t obj, const char *key, int64_t value);
/* A dataset of `type` and `shape` (ndim 0: scalar) written from `buf` in
 * memory type `mtype` (H5P_DEFAULT layout unless `dcpl`). */
int h5_put_dataset(hid_t loc, const char *name, hid_t type, int ndim, const hsize_t *shape,
                   hid_t dcpl, hid_t mtype, const void *buf);
/* Reads a scalar variable-length string attribute into a malloc'ed string. */
char *h5_get_string_attr(hid_t obj, const char *key);

#endif /* TSNAP_TESTUTIL_H */

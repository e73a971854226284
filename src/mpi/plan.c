/*
 * plan.c - the blocks of all ranks, checked on rank 0.
 *
 * Every rank describes what it put (name, dtype, global shape, offset,
 * block shape); rank 0 groups the descriptions by name and refuses, with
 * one message naming the tensor and the ranks: a name some ranks lack, a
 * tensor sharded on some ranks and replicated on others, a dtype or
 * global shape that differs, a block outside the shape, two blocks that
 * overlap, a gap.  Overlaps are found by a sweep along the axis the
 * blocks are split most along (only blocks that meet there are
 * compared), gaps by counting elements, so that 10,000 ranks stay cheap.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_internal.h"

int tm_fail(int err, char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return tsnap_set_error(err, buf);
}

void tm_keep(int *err, char *msg, size_t len, int e)
{
    if (e < 0 && *err == 0) {
        *err = e;
        snprintf(msg, len, "%s", tsnap_errmsg());
    }
}

void tm_format_box(char *buf, size_t len, int ndim, const int64_t *lo, const int64_t *n)
{
    size_t used = 0;
    buf[0] = '\0';
    if (ndim == 0)
        snprintf(buf, len, "[]");
    for (int d = 0; d < ndim && used + 1 < len; d++) {
        int k = snprintf(buf + used, len - used, "%s%lld:%lld%s", d ? ", " : "[",
                         (long long)lo[d], (long long)(lo[d] + n[d]), d == ndim - 1 ? "]" : "");
        if (k < 0)
            break;
        used += (size_t)k;
    }
}

static void format_shape(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t used = 0;
    snprintf(buf, len, "[]");
    for (int d = 0; d < ndim && used + 1 < len; d++) {
        int k = snprintf(buf + used, len - used, "%s%lld%s", d ? ", " : "[",
                         (long long)shape[d], d == ndim - 1 ? "]" : "");
        if (k < 0)
            break;
        used += (size_t)k;
    }
}

/* "rank 3" or "ranks 0-2, 5" of the ascending ranks `r[n]`. */
static void format_ranks(char *buf, size_t len, const int *r, size_t n)
{
    size_t used = 0, ranges = 0;
    int k = snprintf(buf, len, "%s", n == 1 ? "rank " : "ranks ");
    used = k > 0 ? (size_t)k : 0;
    for (size_t i = 0; i < n && used + 1 < len; ranges++) {
        size_t j = i;
        while (j + 1 < n && r[j + 1] == r[j] + 1)
            j++;
        if (ranges == 16) {
            snprintf(buf + used, len - used, ", ... (%zu ranks)", n);
            return;
        }
        if (j == i)
            k = snprintf(buf + used, len - used, "%s%d", ranges ? ", " : "", r[i]);
        else
            k = snprintf(buf + used, len - used, "%s%d-%d", ranges ? ", " : "", r[i], r[j]);
        if (k < 0)
            return;
        used += (size_t)k;
        i = j + 1;
    }
}

bool tm_block_empty(const tm_entry *e)
{
    for (int d = 0; d < e->ndim; d++)
        if (e->block[d] == 0)
            return true;
    return false;
}

int tm_entry_init(tm_entry *e, const char *file, const char *name, const DLTensor *t,
                  const int64_t *shape, const int64_t *offset)
{
    char msg[TM_MSG_LEN];
    tsnap_dtype dtype;

    memset(e, 0, sizeof *e);
    if (!name || !*name)
        return tm_fail(TSNAP_EINVAL, msg, sizeof msg, "%s: a tensor has no name", file);
    if (!t)
        return tm_fail(TSNAP_EINVAL, msg, sizeof msg, "%s: tensor '%s': the tensor is NULL",
                       file, name);
    if (t->ndim < 0 || t->ndim > TSNAP_MAX_NDIM)
        return tm_fail(TSNAP_EINVAL, msg, sizeof msg,
                       "%s: tensor '%s': %d dimensions (0..%d allowed)", file, name, t->ndim,
                       TSNAP_MAX_NDIM);
    if (tsnap_dtype_from_dlpack(&dtype, t->dtype) < 0)
        return tm_fail(TSNAP_ETYPE, msg, sizeof msg,
                       "%s: tensor '%s': DLPack type (code %u, %u bits, %u lanes) has no tsnap dtype",
                       file, name, t->dtype.code, t->dtype.bits, t->dtype.lanes);
    for (int d = 0; d < t->ndim; d++)
        if (!t->shape || t->shape[d] < 0)
            return tm_fail(TSNAP_EINVAL, msg, sizeof msg,
                           "%s: tensor '%s': a negative or missing shape", file, name);
    if (shape && !offset)
        return tm_fail(TSNAP_EINVAL, msg, sizeof msg, "%s: tensor '%s': a block needs its offset",
                       file, name);
    if (shape && t->ndim == 0)
        return tm_fail(TSNAP_EINVAL, msg, sizeof msg,
                       "%s: tensor '%s': a 0-d tensor cannot be sharded (put it replicated)", file,
                       name);
    for (int d = 0; shape && d < t->ndim; d++)
        if (shape[d] < 0)
            return tm_fail(TSNAP_EINVAL, msg, sizeof msg,
                           "%s: tensor '%s': the global shape has a negative size", file, name);
    if (tm_entry_dims(e, t->ndim) < 0 || !(e->name = strdup(name))) {
        tm_entry_clear(e);
        return tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "%s: out of memory", file);
    }
    e->replicated = shape == NULL;
    e->dtype = (int)dtype;
    for (int d = 0; d < t->ndim; d++) {
        e->shape[d] = shape ? shape[d] : t->shape[d];
        e->offset[d] = shape ? offset[d] : 0;
        e->block[d] = shape ? t->shape[d] : 0;
    }
    return 0;
}

int tm_entry_dims(tm_entry *e, int ndim)
{
    e->ndim = ndim;
    if (!(e->shape = calloc(3 * (size_t)(ndim > 0 ? ndim : 1), sizeof *e->shape)))
        return -1;
    e->offset = e->shape + ndim;
    e->block = e->shape + 2 * ndim;
    return 0;
}

void tm_entry_clear(tm_entry *e)
{
    free(e->name);
    free(e->shape);
    memset(e, 0, sizeof *e);
}

void tm_entries_free(tm_entry *e, size_t n)
{
    for (size_t i = 0; e && i < n; i++)
        tm_entry_clear(&e[i]);
    free(e);
}

void tm_plan_free(tm_tensor *t, size_t count)
{
    for (size_t i = 0; t && i < count; i++) {
        free(t[i].ranks);
        free(t[i].blocks);
    }
    free(t);
}

/* ---- grouping ------------------------------------------------------- */

typedef struct ref {
    const tm_entry *e;
    int rank;
} ref;

static int cmp_ref(const void *a, const void *b)
{
    const ref *x = a, *y = b;
    int c = strcmp(x->e->name, y->e->name);
    return c ? c : (x->rank > y->rank) - (x->rank < y->rank);
}

/* The ranks of g[0..n) whose entries `same` groups with g[first]'s, or
 * all others: "dtype float32 on ranks 0-2, float64 on rank 3". */
typedef bool (*same_fn)(const tm_entry *a, const tm_entry *b);
typedef void (*describe_fn)(const tm_entry *e, char *buf, size_t len);

static bool same_kind(const tm_entry *a, const tm_entry *b) { return a->replicated == b->replicated; }
static bool same_dtype(const tm_entry *a, const tm_entry *b) { return a->dtype == b->dtype; }
static bool same_shape(const tm_entry *a, const tm_entry *b)
{
    return a->ndim == b->ndim && memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof *a->shape) == 0;
}
static void describe_kind(const tm_entry *e, char *buf, size_t len)
{
    snprintf(buf, len, "%s", e->replicated ? "replicated" : "sharded");
}
static void describe_dtype(const tm_entry *e, char *buf, size_t len)
{
    const char *n = tsnap_dtype_name((tsnap_dtype)e->dtype);
    snprintf(buf, len, "dtype %s", n ? n : "?");
}
static void describe_shape(const tm_entry *e, char *buf, size_t len)
{
    char s[256];
    format_shape(s, sizeof s, e->ndim, e->shape);
    snprintf(buf, len, "%s %s", e->replicated ? "shape" : "global shape", s);
}

/* 0 when every entry of g[n] is `same`; else the message lists each
 * distinct value with its ranks, in the order of their first rank. */
static int check_same(const char *file, const ref *g, size_t n, same_fn same, describe_fn describe,
                      int *scratch, bool *done)
{
    char msg[TM_MSG_LEN], what[300], ranks[300];
    size_t used;
    size_t i = 1;
    while (i < n && same(g[0].e, g[i].e))
        i++;
    if (i == n)
        return 0;
    used = (size_t)snprintf(msg, sizeof msg, "%s: tensor '%s': ", file, g[0].e->name);
    memset(done, 0, n * sizeof *done);
    for (size_t a = 0, groups = 0; a < n && used + 1 < sizeof msg; a++) {
        size_t k = 0;
        if (done[a])
            continue;
        for (size_t b = a; b < n; b++)
            if (!done[b] && same(g[a].e, g[b].e)) {
                done[b] = true;
                scratch[k++] = g[b].rank;
            }
        describe(g[a].e, what, sizeof what);
        format_ranks(ranks, sizeof ranks, scratch, k);
        int w = snprintf(msg + used, sizeof msg - used, "%s%s on %s", groups++ ? ", " : "", what,
                         ranks);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return tsnap_set_error(TSNAP_EINVAL, msg);
}

/* ---- the blocks of one tensor --------------------------------------- */

static bool boxes_meet(int ndim, const tm_entry *a, const tm_entry *b, int64_t *lo, int64_t *n)
{
    for (int d = 0; d < ndim; d++) {
        int64_t s = a->offset[d] > b->offset[d] ? a->offset[d] : b->offset[d];
        int64_t ea = a->offset[d] + a->block[d], eb = b->offset[d] + b->block[d];
        int64_t e = ea < eb ? ea : eb;
        if (e <= s)
            return false;
        lo[d] = s;
        n[d] = e - s;
    }
    return true;
}


typedef struct blk {
    const tm_entry *e;
    int rank;
    int64_t start, end; /* along the sweep's axis: sorting touches no entry */
} blk;

static int cmp_blk(const void *a, const void *b)
{
    const blk *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Where the blocks leave a gap: the first cell of the grid their edges
 * make that none covers (when that grid is small enough to paint). */
static bool find_gap(int ndim, const int64_t *shape, const blk *b, size_t nb, int64_t *lo,
                     int64_t *n)
{
    int64_t *edges[TSNAP_MAX_NDIM] = {0};
    size_t ne[TSNAP_MAX_NDIM], cells = 1;
    unsigned char *painted = NULL;
    bool found = false;

    for (int d = 0; d < ndim; d++) {
        if (!(edges[d] = malloc((2 * nb + 2) * sizeof **edges)))
            goto done;
        size_t k = 0;
        edges[d][k++] = 0;
        edges[d][k++] = shape[d];
        for (size_t i = 0; i < nb; i++) {
            edges[d][k++] = b[i].e->offset[d];
            edges[d][k++] = b[i].e->offset[d] + b[i].e->block[d];
        }
        qsort(edges[d], k, sizeof **edges, cmp_i64);
        size_t u = 0;
        for (size_t i = 0; i < k; i++)
            if (u == 0 || edges[d][i] != edges[d][u - 1])
                edges[d][u++] = edges[d][i];
        ne[d] = u - 1; /* cells along d */
        if (ne[d] == 0 || cells > ((size_t)1 << 22) / ne[d])
            goto done;
        cells *= ne[d];
    }
    if (!(painted = calloc(cells, 1)))
        goto done;
    for (size_t i = 0; i < nb; i++) {
        size_t first[TSNAP_MAX_NDIM], last[TSNAP_MAX_NDIM], idx[TSNAP_MAX_NDIM];
        for (int d = 0; d < ndim; d++) {
            int64_t s = b[i].e->offset[d], e = s + b[i].e->block[d];
            const int64_t *p = bsearch(&s, edges[d], ne[d] + 1, sizeof *p, cmp_i64);
            const int64_t *q = bsearch(&e, edges[d], ne[d] + 1, sizeof *q, cmp_i64);
            first[d] = (size_t)(p - edges[d]);
            last[d] = (size_t)(q - edges[d]); /* exclusive */
            idx[d] = first[d];
        }
        for (;;) {
            size_t flat = 0;
            for (int d = 0; d < ndim; d++)
                flat = flat * ne[d] + idx[d];
            painted[flat] = 1;
            int d = ndim - 1;
            while (d >= 0 && ++idx[d] == last[d]) {
                idx[d] = first[d];
                d--;
            }
            if (d < 0)
                break;
        }
    }
    for (size_t c = 0; c < cells && !found; c++) {
        if (painted[c])
            continue;
        size_t rest = c;
        for (int d = ndim - 1; d >= 0; d--) {
            size_t i = rest % ne[d];
            rest /= ne[d];
            lo[d] = edges[d][i];
            n[d] = edges[d][i + 1] - edges[d][i];
        }
        found = true;
    }
done:
    free(painted);
    for (int d = 0; d < ndim; d++)
        free(edges[d]);
    return found;
}

/* The nonempty blocks b[nb] (by rank) of a tensor whose entries agree:
 * inside the shape, no two overlapping, no gap. */
static int check_tiling(const char *file, const tm_entry *t, blk *b, size_t nb)
{
    char msg[TM_MSG_LEN], box[256], shp[256];
    int ndim = t->ndim, err = 0;
    int64_t lo[TSNAP_MAX_NDIM], n[TSNAP_MAX_NDIM];
    uint64_t total = 1, covered = 0;
    size_t *active = NULL, nactive = 0;

    format_shape(shp, sizeof shp, ndim, t->shape);
    for (size_t i = 0; i < nb; i++) {
        const tm_entry *e = b[i].e;
        uint64_t v = 1;
        for (int d = 0; d < ndim; d++) {
            if (e->offset[d] < 0 || e->offset[d] > t->shape[d] ||
                e->block[d] > t->shape[d] - e->offset[d]) {
                tm_format_box(box, sizeof box, ndim, e->offset, e->block);
                return tm_fail(TSNAP_EINVAL, msg, sizeof msg,
                               "%s: tensor '%s': the block of rank %d, %s, lies outside the "
                               "shape %s",
                               file, t->name, b[i].rank, box, shp);
            }
            v *= (uint64_t)e->block[d];
        }
        covered += v;
    }
    /* the sweep: along the axis with the most distinct block starts */
    int best = 0;
    size_t best_distinct = 0;
    int64_t *starts = malloc((nb ? nb : 1) * sizeof *starts);
    if (!starts || !(active = malloc((nb ? nb : 1) * sizeof *active))) {
        free(starts);
        return tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "%s: out of memory", file);
    }
    for (int d = 0; d < ndim && nb > 1; d++) {
        for (size_t i = 0; i < nb; i++)
            starts[i] = b[i].e->offset[d];
        qsort(starts, nb, sizeof *starts, cmp_i64);
        size_t distinct = 1;
        for (size_t i = 1; i < nb; i++)
            distinct += starts[i] != starts[i - 1];
        if (distinct > best_distinct) {
            best_distinct = distinct;
            best = d;
        }
    }
    free(starts);
    for (size_t i = 0; i < nb; i++) {
        b[i].start = b[i].e->offset[best];
        b[i].end = b[i].start + b[i].e->block[best];
    }
    qsort(b, nb, sizeof *b, cmp_blk);
    for (size_t i = 0; i < nb && err == 0; i++) {
        int64_t s = b[i].start;
        size_t kept = 0;
        for (size_t k = 0; k < nactive; k++) {
            const tm_entry *a = b[active[k]].e;
            if (b[active[k]].end <= s)
                continue; /* ends before this one starts: done with it */
            active[kept++] = active[k];
            if (err == 0 && boxes_meet(ndim, a, b[i].e, lo, n)) {
                int r1 = b[active[k]].rank, r2 = b[i].rank;
                tm_format_box(box, sizeof box, ndim, lo, n);
                err = tm_fail(TSNAP_EINVAL, msg, sizeof msg,
                              "%s: tensor '%s': the blocks of ranks %d and %d overlap at %s", file,
                              t->name, r1 < r2 ? r1 : r2, r1 < r2 ? r2 : r1, box);
            }
        }
        nactive = kept;
        active[nactive++] = i;
    }
    free(active);
    if (err < 0)
        return err;
    for (int d = 0; d < ndim; d++)
        total *= (uint64_t)t->shape[d];
    if (covered < total) {
        if (find_gap(ndim, t->shape, b, nb, lo, n)) {
            tm_format_box(box, sizeof box, ndim, lo, n);
            return tm_fail(TSNAP_EINVAL, msg, sizeof msg,
                           "%s: tensor '%s': the blocks leave a gap: no rank holds %s (%llu of "
                           "%llu elements are not covered)",
                           file, t->name, box, (unsigned long long)(total - covered),
                           (unsigned long long)total);
        }
        return tm_fail(TSNAP_EINVAL, msg, sizeof msg,
                       "%s: tensor '%s': the blocks leave a gap: %llu of %llu elements are not "
                       "covered",
                       file, t->name, (unsigned long long)(total - covered),
                       (unsigned long long)total);
    }
    return 0;
}

/* ---- the plan ------------------------------------------------------- */

typedef struct named {
    const char *name;
    size_t index;
} named;

static int cmp_named(const void *a, const void *b)
{
    const named *x = a, *y = b;
    return strcmp(x->name, y->name);
}

/* Every rank's entries, grouped by name (sorted) and by rank within a
 * name.  Ranks usually list the same names in the same order: then the
 * groups are made by position, with no sort of all ranks' entries.
 * Returns how many names there are (at most). */
static size_t group_refs(tm_record *recs, int nranks, ref *refs)
{
    size_t n = recs[0].n, k = 0;
    bool aligned = true;
    named *order = NULL;
    for (int r = 1; r < nranks && aligned; r++) {
        aligned = recs[r].n == n;
        for (size_t i = 0; i < n && aligned; i++)
            aligned = strcmp(recs[r].e[i].name, recs[0].e[i].name) == 0;
    }
    if (aligned && n && (order = malloc(n * sizeof *order))) {
        for (size_t i = 0; i < n; i++) {
            order[i].name = recs[0].e[i].name;
            order[i].index = i;
        }
        qsort(order, n, sizeof *order, cmp_named);
        for (size_t i = 0; i < n; i++)
            for (int r = 0; r < nranks; r++) {
                refs[k].e = &recs[r].e[order[i].index];
                refs[k++].rank = r;
            }
        free(order);
        return n; /* a rank refused a name put twice */
    }
    for (int r = 0; r < nranks; r++)
        for (size_t i = 0; i < recs[r].n; i++) {
            refs[k].e = &recs[r].e[i];
            refs[k++].rank = r;
        }
    qsort(refs, k, sizeof *refs, cmp_ref);
    size_t names = k ? 1 : 0;
    for (size_t i = 1; i < k; i++)
        names += strcmp(refs[i].e->name, refs[i - 1].e->name) != 0;
    return names;
}

int tm_plan(const char *file, tm_record *recs, int nranks, tm_tensor **out, size_t *count)
{
    char msg[TM_MSG_LEN], ranks[300];
    size_t nrefs = 0, ntensors = 0;
    ref *refs = NULL;
    int *scratch = NULL;
    bool *done = NULL;
    tm_tensor *tensors = NULL;
    blk *blocks = NULL;
    int err = 0;

    *out = NULL;
    *count = 0;
    for (int r = 0; r < nranks; r++)
        nrefs += recs[r].n;
    if (!(refs = malloc((nrefs ? nrefs : 1) * sizeof *refs)) ||
        !(scratch = malloc((size_t)nranks * sizeof *scratch)) ||
        !(done = malloc((nrefs > (size_t)nranks ? nrefs : (size_t)nranks) * sizeof *done + 1)) ||
        !(blocks = malloc((size_t)nranks * sizeof *blocks))) {
        err = tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "%s: out of memory", file);
        goto done;
    }
    size_t names = group_refs(recs, nranks, refs);
    if (!(tensors = calloc(names ? names : 1, sizeof *tensors))) {
        err = tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "%s: out of memory", file);
        goto done;
    }
    for (size_t a = 0; a < nrefs && err == 0;) {
        size_t z = a + 1;
        while (z < nrefs && strcmp(refs[z].e->name, refs[a].e->name) == 0)
            z++;
        const ref *g = &refs[a];
        size_t n = z - a;
        const tm_entry *e = g[0].e;
        /* one entry per rank (a rank that put a name twice was refused there) */
        if (n < (size_t)nranks) {
            size_t k = 0;
            for (int r = 0, j = 0; r < nranks; r++) {
                if ((size_t)j < n && g[j].rank == r)
                    j++;
                else
                    scratch[k++] = r;
            }
            format_ranks(ranks, sizeof ranks, scratch, k);
            err = tm_fail(TSNAP_EINVAL, msg, sizeof msg, "%s: tensor '%s' is missing on %s",
                          file, e->name, ranks);
            break;
        }
        if ((err = check_same(file, g, n, same_kind, describe_kind, scratch, done)) < 0 ||
            (err = check_same(file, g, n, same_dtype, describe_dtype, scratch, done)) < 0 ||
            (err = check_same(file, g, n, same_shape, describe_shape, scratch, done)) < 0)
            break;
        tm_tensor *t = &tensors[ntensors++];
        t->e = e;
        if (!e->replicated) {
            size_t nb = 0;
            for (size_t i = 0; i < n; i++)
                if (!tm_block_empty(g[i].e)) {
                    blocks[nb].e = g[i].e;
                    blocks[nb++].rank = g[i].rank;
                }
            if ((err = check_tiling(file, e, blocks, nb)) < 0)
                break;
            if (nb && (!(t->ranks = malloc(nb * sizeof *t->ranks)) ||
                       !(t->blocks = malloc(nb * sizeof *t->blocks)))) {
                err = tm_fail(TSNAP_ENOMEM, msg, sizeof msg, "%s: out of memory", file);
                break;
            }
            /* by rank: the order the snapshot lists them in */
            size_t k = 0;
            for (size_t i = 0; i < n; i++)
                if (!tm_block_empty(g[i].e)) {
                    t->ranks[k] = g[i].rank;
                    t->blocks[k++] = g[i].e;
                }
            t->nblocks = nb;
        }
        a = z;
    }
done:
    free(refs);
    free(scratch);
    free(done);
    free(blocks);
    if (err < 0) {
        tm_plan_free(tensors, ntensors);
        return err;
    }
    *out = tensors;
    *count = ntensors;
    return 0;
}

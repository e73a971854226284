/*
 * virtual.c - tensors whose blocks live in other files: HDF5 virtual
 * datasets (VDS), each block the whole of a dataset in a part file.
 *
 * Writing: tsnap_writer_put_virtual maps each block onto its source with
 * H5Pset_virtual (the source file named as given, relative to the
 * snapshot's folder, so that the snapshot and its parts move together).
 *
 * Reading: a selection is read block by block, each block's share of it
 * straight from its part file into its place in the destination, with
 * tsnap's own reader of that file (parallel chunk decoding, checksums)
 * rather than HDF5's element-wise virtual dataset path; and a missing
 * part is an error, where HDF5 would quietly give the fill value.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* ---- block geometry ----------------------------------------------- */

/* "[a:b, c:d]" of a block, into buf. */
static void format_block(int ndim, const int64_t *offset, const int64_t *shape, char *buf,
                         size_t len)
{
    size_t used = 0;
    int n;
    buf[0] = '\0';
    for (int d = 0; d < ndim && used < len; d++) {
        n = snprintf(buf + used, len - used, "%s%lld:%lld", d ? ", " : "[",
                     (long long)offset[d], (long long)(offset[d] + shape[d]));
        if (n < 0)
            return;
        used += (size_t)n;
    }
    if (used < len)
        snprintf(buf + used, len - used, "]");
}

/* Checks every block of a virtual tensor of `shape`: nonempty, inside. */
static int check_blocks(const char *file, const char *name, int ndim, const int64_t *shape,
                        const tsnap_part *parts, size_t nparts)
{
    char where[256];
    for (size_t i = 0; i < nparts; i++) {
        const tsnap_part *p = &parts[i];
        if (!p->file || !*p->file || !p->dataset || !*p->dataset)
            return tsnap__err(TSNAP_EINVAL, file, name, "block %zu: the source %s is NULL or empty",
                              i, !p->file || !*p->file ? "file" : "dataset");
        for (int d = 0; d < ndim; d++) {
            if (p->offset[d] < 0 || p->shape[d] < 0 || p->offset[d] > shape[d] ||
                p->shape[d] > shape[d] - p->offset[d]) {
                format_block(ndim, p->offset, p->shape, where, sizeof where);
                return tsnap__err(TSNAP_EINVAL, file, name,
                                  "block %zu %s (%s) lies outside the tensor's shape (axis %d "
                                  "has %lld)",
                                  i, where, p->file, d, (long long)shape[d]);
            }
            if (p->shape[d] == 0) {
                format_block(ndim, p->offset, p->shape, where, sizeof where);
                return tsnap__err(TSNAP_EINVAL, file, name,
                                  "block %zu %s (%s) is empty; leave it out", i, where, p->file);
            }
        }
    }
    return 0;
}

typedef struct block_key {
    int64_t first; /* offset along axis 0 */
    size_t index;
} block_key;

static int compare_keys(const void *a, const void *b)
{
    const block_key *x = a, *y = b;
    if (x->first != y->first)
        return x->first < y->first ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* 1 when blocks a and b share an element; their intersection in *lo, *n. */
static bool blocks_meet(int ndim, const tsnap_part *a, const tsnap_part *b, int64_t *lo,
                        int64_t *n)
{
    for (int d = 0; d < ndim; d++) {
        int64_t s = a->offset[d] > b->offset[d] ? a->offset[d] : b->offset[d];
        int64_t ea = a->offset[d] + a->shape[d], eb = b->offset[d] + b->shape[d];
        int64_t e = ea < eb ? ea : eb;
        if (e <= s)
            return false;
        lo[d] = s;
        n[d] = e - s;
    }
    return true;
}

/* Finds two blocks that share an element: *ia < *ib, their intersection
 * in lo, n.  Sorted along axis 0, a block is compared only with those
 * that start before it ends there, which for the usual row
 * decompositions is its neighbour.  TSNAP_ENOMEM (no message) or 0/1. */
static int find_overlap(int ndim, const tsnap_part *parts, size_t nparts, size_t *ia, size_t *ib,
                        int64_t *lo, int64_t *n)
{
    block_key *keys;
    int found = 0;

    if (nparts < 2)
        return 0;
    keys = malloc(nparts * sizeof *keys);
    if (!keys)
        return TSNAP_ENOMEM;
    for (size_t i = 0; i < nparts; i++)
        keys[i] = (block_key){parts[i].offset[0], i};
    qsort(keys, nparts, sizeof *keys, compare_keys);
    for (size_t i = 0; i < nparts && !found; i++) {
        const tsnap_part *a = &parts[keys[i].index];
        for (size_t j = i + 1; j < nparts && !found; j++) {
            const tsnap_part *b = &parts[keys[j].index];
            if (b->offset[0] >= a->offset[0] + a->shape[0])
                break;
            if (!blocks_meet(ndim, a, b, lo, n))
                continue;
            *ia = keys[i].index < keys[j].index ? keys[i].index : keys[j].index;
            *ib = keys[i].index < keys[j].index ? keys[j].index : keys[i].index;
            found = 1;
        }
    }
    free(keys);
    return found;
}

/* Refuses overlapping blocks, naming the first two found. */
static int check_overlaps(const char *file, const char *name, int ndim, const tsnap_part *parts,
                          size_t nparts)
{
    int64_t lo[TSNAP_MAX_NDIM], n[TSNAP_MAX_NDIM];
    char wa[128], wb[128], wi[128];
    size_t ia = 0, ib = 0;
    int found = find_overlap(ndim, parts, nparts, &ia, &ib, lo, n);

    if (found < 0)
        return tsnap__err(TSNAP_ENOMEM, file, name, "out of memory");
    if (!found)
        return 0;
    format_block(ndim, parts[ia].offset, parts[ia].shape, wa, sizeof wa);
    format_block(ndim, parts[ib].offset, parts[ib].shape, wb, sizeof wb);
    format_block(ndim, lo, n, wi, sizeof wi);
    return tsnap__err(TSNAP_EINVAL, file, name, "blocks %zu %s (%s) and %zu %s (%s) overlap at %s",
                      ia, wa, parts[ia].file, ib, wb, parts[ib].file, wi);
}

/* A VDS source name: '%' is HDF5's printf-style escape ("%b"), so a
 * literal one is doubled.  Caller frees. */
static char *vds_escape(const char *s)
{
    size_t n = strlen(s), extra = 0;
    for (size_t i = 0; i < n; i++)
        extra += s[i] == '%';
    char *out = malloc(n + extra + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        *o++ = s[i];
        if (s[i] == '%')
            *o++ = '%';
    }
    *o = '\0';
    return out;
}

/* The mappings of the blocks onto `dcpl`: logical axes [0, ndim) from
 * the blocks, complex32's pair axis (rank > ndim) whole. */
static int set_mappings(hid_t dcpl, const char *file, const char *name, int ndim, int rank,
                        const hsize_t *dims, const tsnap_part *parts, size_t nparts)
{
    hid_t vspace = H5Screate_simple(rank, dims, NULL), src = H5I_INVALID_HID;
    char *sfile = NULL, *sdset = NULL;
    int err = 0;

    if (vspace < 0)
        return tsnap__h5err(TSNAP_EIO, file, name, "cannot make the dataspace");
    for (size_t i = 0; i < nparts && err == 0; i++) {
        hsize_t start[TSNAP_MAX_NDIM + 1], count[TSNAP_MAX_NDIM + 1];
        for (int d = 0; d < rank; d++) {
            start[d] = d < ndim ? (hsize_t)parts[i].offset[d] : 0;
            count[d] = d < ndim ? (hsize_t)parts[i].shape[d] : dims[d];
        }
        sfile = vds_escape(parts[i].file);
        sdset = vds_escape(parts[i].dataset);
        if (!sfile || !sdset) {
            err = tsnap__err(TSNAP_ENOMEM, file, name, "out of memory");
        } else if ((src = H5Screate_simple(rank, count, NULL)) < 0 ||
                   H5Sselect_hyperslab(vspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
                   H5Pset_virtual(dcpl, vspace, sfile, sdset, src) < 0) {
            err = tsnap__h5err(TSNAP_EIO, file, name, "cannot map block %zu onto %s:%s", i,
                               parts[i].file, parts[i].dataset);
        }
        tsnap__h5close(src);
        src = H5I_INVALID_HID;
        free(sfile);
        free(sdset);
        sfile = sdset = NULL;
    }
    tsnap__h5close(vspace);
    return err;
}

int tsnap_writer_put_virtual(tsnap_writer *w, const char *name, tsnap_dtype dtype, int ndim,
                             const int64_t *shape, const tsnap_part *parts, size_t nparts)
{
    const char *path;
    hid_t file, lcpl, space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    hid_t ftype; /* shared: not closed */
    hsize_t dims[TSNAP_MAX_NDIM + 1];
    uint64_t nelems, nbytes;
    int rank = ndim, err;

    tsnap__begin();
    TSNAP_CHECK_ARG(w != NULL);
    path = tsnap__writer_path(w);
    if ((err = tsnap__writer_target(w, name, &file, &lcpl)) < 0)
        return err;
    if (tsnap_dtype_size(dtype) == 0)
        return tsnap__err(TSNAP_ETYPE, path, name, "invalid dtype %d", (int)dtype);
    if (ndim == 0)
        return tsnap__err(TSNAP_EINVAL, path, name,
                          "a 0-d tensor cannot be virtual; put it as an ordinary tensor");
    if (ndim < 0 || ndim > TSNAP_MAX_NDIM || (dtype == TSNAP_COMPLEX32 && ndim == TSNAP_MAX_NDIM))
        return tsnap__err(TSNAP_EINVAL, path, name, "ndim %d is outside 1..%d", ndim,
                          TSNAP_MAX_NDIM - (dtype == TSNAP_COMPLEX32));
    if (!shape || (nparts > 0 && !parts))
        return tsnap__err(TSNAP_EINVAL, path, name, "%s is NULL", !shape ? "shape" : "parts");
    if ((err = tsnap__shape_size(ndim, shape, tsnap_dtype_size(dtype), &nelems, &nbytes)) < 0) {
        char cause[256];
        snprintf(cause, sizeof cause, "%s", tsnap_errmsg());
        return tsnap__err(err, path, name, "%s", cause);
    }
    if (nelems == 0)
        return tsnap__err(TSNAP_EINVAL, path, name,
                          "an empty tensor cannot be virtual; put it as an ordinary tensor");
    if (nparts == 0)
        return tsnap__err(TSNAP_EINVAL, path, name, "a virtual tensor needs at least one block");
    if ((err = check_blocks(path, name, ndim, shape, parts, nparts)) < 0 ||
        (err = check_overlaps(path, name, ndim, parts, nparts)) < 0)
        return err;

    for (int d = 0; d < ndim; d++)
        dims[d] = (hsize_t)shape[d];
    if (dtype == TSNAP_COMPLEX32)
        dims[rank++] = 2;
    ftype = tsnap__h5type_shared(dtype);
    space = H5Screate_simple(rank, dims, NULL);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (ftype < 0 || space < 0 || dcpl < 0) {
        err = tsnap__h5err(TSNAP_EIO, path, name, "cannot set up the dataset");
        goto done;
    }
    if ((err = set_mappings(dcpl, path, name, ndim, rank, dims, parts, nparts)) < 0)
        goto done;
    /* From here on a failure leaves a partial dataset: the writer fails. */
    dset = H5Dcreate2(file, name, ftype, space, lcpl, dcpl, H5P_DEFAULT);
    if (dset < 0) {
        err = tsnap__h5err(TSNAP_EIO, path, name, "cannot create the virtual dataset");
        tsnap__writer_fail(w);
        goto done;
    }
    if ((err = tsnap__attr_create_string(dset, "tsnap_dtype", tsnap_dtype_name(dtype), path,
                                         name)) < 0)
        tsnap__writer_fail(w);
done:
    tsnap__h5close(dset);
    tsnap__h5close(dcpl);
    tsnap__h5close(space);
    return err;
}

/* ---- reading: the blocks of a virtual dataset ----------------------- */

/*
 * A virtual tensor tsnap can follow has mappings that each take the whole
 * of a source dataset, named plainly (no printf-style "%b"), to one box
 * of the tensor, with no two boxes overlapping.  Its reads go block by
 * block straight to the part files, through readers of their own that the
 * main reader keeps open.  Any other mapping is read by HDF5 (H5Dread).
 */
struct tsnap_vds {
    size_t nparts;
    tsnap_part *parts; /* strings owned */
    char *why;         /* not NULL: tsnap cannot follow the mappings, why */
    unsigned char fill[16];
    bool fill_zero;
};

/* The part files a reader holds open, the least recently used closed
 * first when there are too many (a snapshot of thousands of ranks). */
#define OPEN_PARTS_MAX 64
struct tsnap_vds_cache {
    struct open_part {
        char *path;
        tsnap_reader *r;
        uint64_t used;
    } e[OPEN_PARTS_MAX];
    size_t n;
    uint64_t tick;
};

void tsnap__vds_free(tsnap_vds *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->nparts; i++) {
        free((char *)v->parts[i].file);
        free((char *)v->parts[i].path);
        free((char *)v->parts[i].dataset);
    }
    free(v->parts);
    free(v->why);
    free(v);
}

void tsnap__vds_cache_free(tsnap_vds_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        tsnap_reader_free(c->e[i].r);
        free(c->e[i].path);
    }
    free(c);
}

/* A source name as stored, unescaped ("%%" is '%'); NULL with *printf
 * set when it holds another '%' sequence (HDF5's "%b"). */
static char *vds_unescape(const char *s, bool *printf_style)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    if (!out)
        return NULL;
    for (; *s; s++) {
        if (*s == '%') {
            if (s[1] != '%') {
                *printf_style = true;
                free(out);
                return NULL;
            }
            s++;
        }
        *o++ = *s;
    }
    *o = '\0';
    return out;
}

static char *join_path(const char *dir, size_t dirlen, const char *name)
{
    size_t n = strlen(name);
    char *out = malloc(dirlen + n + 2);
    if (!out)
        return NULL;
    memcpy(out, dir, dirlen);
    out[dirlen] = '/';
    memcpy(out + dirlen + 1, name, n + 1);
    return out;
}

static bool file_exists(const char *path) { return access(path, F_OK) == 0; }

/*
 * Where HDF5 finds a source file named `file` of the virtual dataset in
 * `snapshot`: "." is the snapshot itself; an absolute name is itself; a
 * relative one is tried under HDF5_VDS_PREFIX ("${ORIGIN}" the
 * snapshot's folder), then in the snapshot's folder, then as given;
 * when none exists, the snapshot's folder (to name it as missing).
 */
static char *resolve_source(const char *snapshot, const char *file)
{
    const char *slash = strrchr(snapshot, '/');
    const char *dir = slash ? snapshot : ".";
    size_t dirlen = slash ? (size_t)(slash - snapshot) : 1;
    const char *prefix = getenv("HDF5_VDS_PREFIX");
    char *found;

    if (strcmp(file, ".") == 0)
        return strdup(snapshot);
    if (file[0] == '/')
        return strdup(file);
    if (slash == snapshot) /* a snapshot in "/" */
        dirlen = 0;
    if (prefix && *prefix) {
        char pre[4096];
        if (strncmp(prefix, "${ORIGIN}", 9) == 0)
            snprintf(pre, sizeof pre, "%.*s%s", (int)dirlen, dir, prefix + 9);
        else
            snprintf(pre, sizeof pre, "%s", prefix);
        if ((found = join_path(pre, strlen(pre), file)) && file_exists(found))
            return found;
        free(found);
    }
    found = join_path(dir, dirlen, file);
    if (found && !file_exists(found) && file_exists(file)) {
        free(found);
        return strdup(file);
    }
    return found;
}

/* The box a dataspace's selection is: its bounds, when it selects every
 * element between them.  False for anything else. */
static bool selection_box(hid_t space, int rank, hsize_t *lo, hsize_t *n)
{
    hsize_t hi[TSNAP_MAX_NDIM + 1];
    hssize_t points;
    H5S_sel_type type = H5Sget_select_type(space);
    uint64_t box = 1;

    if (type != H5S_SEL_ALL && type != H5S_SEL_HYPERSLABS)
        return false;
    if (type == H5S_SEL_HYPERSLABS && H5Sis_regular_hyperslab(space) <= 0)
        return false;
    if ((points = H5Sget_select_npoints(space)) < 0 || H5Sget_select_bounds(space, lo, hi) < 0)
        return false;
    for (int d = 0; d < rank; d++) {
        n[d] = hi[d] - lo[d] + 1;
        box *= n[d];
    }
    return points > 0 && (uint64_t)points == box;
}

/* Why mapping i cannot be followed (a constant), or NULL; fills part i. */
static const char *load_mapping(const tsnap_dset *t, size_t i, const char *snapshot,
                                tsnap_part *p)
{
    hid_t vspace = H5Pget_virtual_vspace(t->dcpl, i), src = H5Pget_virtual_srcspace(t->dcpl, i);
    hsize_t lo[TSNAP_MAX_NDIM + 1], n[TSNAP_MAX_NDIM + 1], slo[TSNAP_MAX_NDIM + 1],
        sn[TSNAP_MAX_NDIM + 1], sdims[TSNAP_MAX_NDIM + 1];
    char *raw = NULL, *file = NULL;
    const char *why = NULL;
    bool printf_style = false;
    ssize_t len;

    if (vspace < 0 || src < 0) {
        why = "HDF5 cannot give its mapping";
    } else if (!selection_box(vspace, t->rank, lo, n)) {
        why = "a mapping onto a selection that is not one box";
    } else if (H5Sget_select_type(src) == H5S_SEL_ALL) {
        /* The whole source, whose extent HDF5 learns when it opens it
         * (open_block checks that it is the box's). */
    } else if (H5Sget_simple_extent_ndims(src) != t->rank ||
               H5Sget_simple_extent_dims(src, sdims, NULL) < 0) {
        why = "a source of another rank";
    } else if (!selection_box(src, t->rank, slo, sn)) {
        why = "a mapping from a selection that is not one box";
    } else {
        for (int d = 0; d < t->rank && !why; d++)
            if (slo[d] != 0 || sn[d] != sdims[d] || sn[d] != n[d])
                why = "a mapping from part of a source dataset";
        if (t->pairs && !why && (lo[t->rank - 1] != 0 || n[t->rank - 1] != 2))
            why = "a mapping that splits complex32's pairs";
    }
    if (!why) {
        for (int d = 0; d < t->ndim; d++) {
            p->offset[d] = (int64_t)lo[d];
            p->shape[d] = (int64_t)n[d];
        }
        if ((len = H5Pget_virtual_filename(t->dcpl, i, NULL, 0)) < 0 ||
            !(raw = calloc(1, (size_t)len + 1)) ||
            H5Pget_virtual_filename(t->dcpl, i, raw, (size_t)len + 1) < 0 ||
            !(file = vds_unescape(raw, &printf_style)) ||
            !(p->path = resolve_source(snapshot, file)))
            why = printf_style ? "a printf-style source file name" : "its source file name";
        p->file = file;
        free(raw);
        raw = NULL;
        if (!why && ((len = H5Pget_virtual_dsetname(t->dcpl, i, NULL, 0)) < 0 ||
                     !(raw = calloc(1, (size_t)len + 1)) ||
                     H5Pget_virtual_dsetname(t->dcpl, i, raw, (size_t)len + 1) < 0 ||
                     !(p->dataset = vds_unescape(raw, &printf_style))))
            why = printf_style ? "a printf-style source dataset name" : "its source dataset name";
        free(raw);
    }
    tsnap__h5close(vspace);
    tsnap__h5close(src);
    H5Eclear2(H5E_DEFAULT);
    return why;
}

/* The fill value of the tensor's elements that no block covers. */
static void load_fill(const tsnap_dset *t, tsnap_vds *v)
{
    H5D_fill_value_t defined = H5D_FILL_VALUE_UNDEFINED;
    size_t elem = H5Tget_size(t->memtype);
    memset(v->fill, 0, sizeof v->fill);
    v->fill_zero = true;
    if (H5Pfill_value_defined(t->dcpl, &defined) < 0 || defined == H5D_FILL_VALUE_UNDEFINED ||
        elem == 0 || elem * (t->pairs ? 2 : 1) > sizeof v->fill ||
        H5Pget_fill_value(t->dcpl, t->memtype, v->fill) < 0) {
        memset(v->fill, 0, sizeof v->fill);
    } else {
        if (t->pairs)
            memcpy(v->fill + elem, v->fill, elem);
        for (size_t k = 0; k < t->itemsize; k++)
            v->fill_zero &= v->fill[k] == 0;
    }
    H5Eclear2(H5E_DEFAULT);
}

void tsnap__vds_load(tsnap_reader *r, const tsnap_dset *t, tsnap_tensor_info *info,
                     tsnap_vds **out)
{
    const char *snapshot = tsnap__reader_path(r), *why = NULL;
    size_t count = 0, ia, ib;
    int64_t lo[TSNAP_MAX_NDIM], n[TSNAP_MAX_NDIM];
    tsnap_vds *v;

    tsnap__vds_free(*out);
    *out = NULL;
    if (H5Pget_virtual_count(t->dcpl, &count) < 0 || !(v = calloc(1, sizeof *v))) {
        H5Eclear2(H5E_DEFAULT);
        return; /* read by HDF5 */
    }
    if (count == 0 || t->ndim == 0 || t->nelems == 0)
        why = count == 0 ? "no mappings" : "no elements";
    else if (!(v->parts = calloc(count, sizeof *v->parts)))
        why = "out of memory";
    for (size_t i = 0; i < count && !why; i++) {
        v->nparts = i + 1; /* what to free */
        why = load_mapping(t, i, snapshot, &v->parts[i]);
    }
    if (!why) {
        int found = find_overlap(t->ndim, v->parts, count, &ia, &ib, lo, n);
        why = found < 0 ? "out of memory" : found ? "blocks that overlap" : NULL;
    }
    load_fill(t, v);
    if (why) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s", why);
        v->why = strdup(buf);
        if (!v->why) {
            tsnap__vds_free(v);
            return;
        }
    } else {
        info->map_status = TSNAP_MAP_VIRTUAL;
    }
    info->nparts = count;
    *out = v;
}

/* The reader of a part file, opened now or kept from before. */
static int part_reader(tsnap_reader *r, const char *name, const tsnap_vds *v, size_t i,
                       tsnap_reader **out)
{
    tsnap_vds_cache **cp = tsnap__reader_vds_cache(r), *c = *cp;
    const tsnap_part *p = &v->parts[i];
    struct open_part *e;
    size_t k;
    int err;

    if (!c && !(c = *cp = calloc(1, sizeof *c)))
        return tsnap__err(TSNAP_ENOMEM, tsnap__reader_path(r), name, "out of memory");
    for (k = 0; k < c->n; k++) {
        if (strcmp(c->e[k].path, p->path) == 0) {
            c->e[k].used = ++c->tick;
            *out = c->e[k].r;
            return 0;
        }
    }
    if (c->n < OPEN_PARTS_MAX) {
        e = &c->e[c->n];
    } else { /* close the least recently used */
        e = &c->e[0];
        for (k = 1; k < c->n; k++)
            if (c->e[k].used < e->used)
                e = &c->e[k];
        tsnap_reader_free(e->r);
        free(e->path);
        c->n--;
        *e = c->e[c->n];
        e = &c->e[c->n];
    }
    memset(e, 0, sizeof *e);
    if (!(e->path = strdup(p->path)))
        return tsnap__err(TSNAP_ENOMEM, tsnap__reader_path(r), name, "out of memory");
    if ((err = tsnap_reader_open(&e->r, p->path)) < 0) {
        char cause[768];
        snprintf(cause, sizeof cause, "%s", tsnap_errmsg());
        free(e->path);
        /* A snapshot whose part is gone (or is a folder) is damaged, not
         * a missing tensor or a bad argument. */
        return tsnap__err(err == TSNAP_ENOTFOUND || err == TSNAP_EINVAL ? TSNAP_EFORMAT : err,
                          tsnap__reader_path(r), name, "the part file '%s' of block %zu %s: %s",
                          p->file, i, err == TSNAP_ENOTFOUND ? "is missing" : "cannot be read",
                          cause);
    }
    e->used = ++c->tick;
    c->n++;
    *out = e->r;
    return 0;
}

/* A part's dataset without the leading '/' that tsnap's names lack. */
static const char *part_dataset(const tsnap_part *p)
{
    const char *d = p->dataset;
    while (*d == '/')
        d++;
    return d;
}

/* Opens block i's part and checks that its dataset is the block: the
 * tensor's dtype and the block's shape. */
static int open_block(tsnap_reader *r, const tsnap_dset *t, const tsnap_vds *v, size_t i,
                      tsnap_reader **sub)
{
    const tsnap_part *p = &v->parts[i];
    tsnap_tensor_info info;
    char cause[768];
    int err;
    bool same;

    if ((err = part_reader(r, t->name, v, i, sub)) < 0)
        return err;
    if ((err = tsnap_reader_describe(*sub, part_dataset(p), &info)) < 0) {
        snprintf(cause, sizeof cause, "%s", tsnap_errmsg());
        return tsnap__err(err == TSNAP_ENOTFOUND ? TSNAP_EFORMAT : err, t->path, t->name,
                          "block %zu, dataset '%s' of the part file '%s': %s", i, p->dataset,
                          p->file, cause);
    }
    /* A block that is itself virtual could lead back here (a file whose
     * source is itself): tsnap follows one level. */
    if (info.map_status == TSNAP_MAP_VIRTUAL || info.nparts > 0)
        return tsnap__err(TSNAP_EFORMAT, t->path, t->name,
                          "block %zu: dataset '%s' of the part file '%s' is itself a virtual "
                          "dataset",
                          i, p->dataset, p->file);
    same = info.dtype == t->dtype && info.ndim == t->ndim;
    for (int d = 0; same && d < t->ndim; d++)
        same = info.shape[d] == p->shape[d];
    if (!same) {
        char want[128], got[128];
        int64_t zero[TSNAP_MAX_NDIM] = {0};
        format_block(t->ndim, zero, p->shape, want, sizeof want);
        format_block(info.ndim, zero, info.shape, got, sizeof got);
        return tsnap__err(TSNAP_EFORMAT, t->path, t->name,
                          "block %zu: dataset '%s' of the part file '%s' is %s %s; the block is "
                          "%s %s",
                          i, p->dataset, p->file, tsnap_dtype_name(info.dtype), got,
                          tsnap_dtype_name(t->dtype), want);
    }
    return 0;
}

/* Where selection s meets block p, per axis: the selection's indices
 * [k0, k0 + n) fall in the block.  False when they do not meet. */
static bool meet(int ndim, const tsnap_selection *s, const tsnap_part *p, int64_t *k0,
                 int64_t *n)
{
    for (int d = 0; d < ndim; d++) {
        int64_t start = (int64_t)s->start[d], step = (int64_t)s->step[d],
                cnt = (int64_t)s->count[d];
        int64_t lo = p->offset[d], hi = p->offset[d] + p->shape[d] - 1; /* inclusive */
        int64_t first = lo <= start ? 0 : (lo - start + step - 1) / step;
        int64_t last = hi < start ? -1 : (hi - start) / step;
        if (last > cnt - 1)
            last = cnt - 1;
        if (cnt == 0 || first > last)
            return false;
        k0[d] = first;
        n[d] = last - first + 1;
    }
    return true;
}

/* Sets every element of dst to the fill value. */
static void fill_view(const tsnap_view *dst, const unsigned char *fill)
{
    enum { BATCH = 4096 };
    unsigned char *buf = malloc(BATCH * dst->itemsize);
    unsigned char one[16];
    uint64_t n = BATCH;

    if (!buf) { /* element by element */
        buf = one;
        n = 1;
    }
    for (uint64_t k = 0; k < n; k++)
        memcpy(buf + k * dst->itemsize, fill, dst->itemsize);
    for (uint64_t first = 0; first < dst->nelems; first += n)
        tsnap__scatter(dst, first, dst->nelems - first < n ? dst->nelems - first : n, buf);
    if (buf != one)
        free(buf);
}

int tsnap__vds_read(tsnap_reader *r, const tsnap_dset *t, const tsnap_vds *v,
                    const tsnap_selection *s, const tsnap_view *dst, bool verify)
{
    uint64_t covered = 0;
    DLDataType dl;
    int err = 0;

    if (s->nelems == 0)
        return 0;
    for (size_t i = 0; i < v->nparts; i++) {
        int64_t k0[TSNAP_MAX_NDIM], n[TSNAP_MAX_NDIM];
        uint64_t m = 1;
        if (!meet(t->ndim, s, &v->parts[i], k0, n))
            continue;
        for (int d = 0; d < t->ndim; d++)
            m *= (uint64_t)n[d];
        covered += m;
    }
    if (covered < s->nelems) /* a gap between the blocks: HDF5's fill value */
        fill_view(dst, v->fill);
    tsnap_dtype_to_dlpack(&dl, t->dtype);
    for (size_t i = 0; i < v->nparts && err == 0; i++) {
        const tsnap_part *p = &v->parts[i];
        int64_t k0[TSNAP_MAX_NDIM], n[TSNAP_MAX_NDIM], start[TSNAP_MAX_NDIM],
            step[TSNAP_MAX_NDIM];
        int64_t at = 0;
        tsnap_reader *sub;
        if (!meet(t->ndim, s, p, k0, n))
            continue;
        for (int d = 0; d < t->ndim; d++) {
            step[d] = (int64_t)s->step[d];
            start[d] = (int64_t)s->start[d] + k0[d] * step[d] - p->offset[d];
            at += k0[d] * dst->strides[d];
        }
        /* The block's elements go straight to their place in dst. */
        DLTensor part = {dst->base + at * (int64_t)dst->itemsize, {kDLCPU, 0}, t->ndim, dl, n,
                         (int64_t *)dst->strides, 0};
        if ((err = open_block(r, t, v, i, &sub)) < 0)
            break;
        err = verify ? tsnap_reader_read_verified(sub, part_dataset(p), &part)
                     : tsnap_reader_read(sub, part_dataset(p), start, n, step, &part);
        if (err < 0) {
            char cause[768];
            snprintf(cause, sizeof cause, "%s", tsnap_errmsg());
            err = tsnap__err(err, t->path, t->name, "block %zu (%s): %s", i, p->file, cause);
        }
    }
    return err;
}

int tsnap__vds_verify(tsnap_reader *r, const tsnap_dset *t, const tsnap_vds *v)
{
    int err = 0;
    for (size_t i = 0; i < v->nparts && err == 0; i++) {
        tsnap_reader *sub;
        if ((err = open_block(r, t, v, i, &sub)) < 0)
            break;
        if ((err = tsnap_reader_verify(sub, part_dataset(&v->parts[i]))) < 0) {
            char cause[768];
            snprintf(cause, sizeof cause, "%s", tsnap_errmsg());
            err = tsnap__err(err, t->path, t->name, "block %zu (%s): %s", i, v->parts[i].file,
                             cause);
        }
    }
    return err;
}

int tsnap__vds_check_sources(tsnap_reader *r, const tsnap_dset *t)
{
    size_t count = 0;
    int err = 0;

    if (H5Pget_virtual_count(t->dcpl, &count) < 0) {
        H5Eclear2(H5E_DEFAULT);
        return 0;
    }
    for (size_t i = 0; i < count && err == 0; i++) {
        ssize_t len = H5Pget_virtual_filename(t->dcpl, i, NULL, 0);
        char *raw = len < 0 ? NULL : calloc(1, (size_t)len + 1), *file = NULL, *path = NULL;
        bool printf_style = false;
        if (raw && H5Pget_virtual_filename(t->dcpl, i, raw, (size_t)len + 1) >= 0 &&
            (file = vds_unescape(raw, &printf_style)) &&
            (path = resolve_source(tsnap__reader_path(r), file)) && !file_exists(path))
            err = tsnap__err(TSNAP_EFORMAT, t->path, t->name,
                             "the source file '%s' of mapping %zu is missing (%s)", file, i,
                             path);
        free(path);
        free(file);
        free(raw);
    }
    H5Eclear2(H5E_DEFAULT);
    return err;
}

int tsnap_reader_part(tsnap_reader *r, const char *name, size_t index, tsnap_part *part)
{
    tsnap_tensor_info info;
    tsnap_vds *v;
    int err;

    tsnap__begin();
    TSNAP_CHECK_ARG(r != NULL);
    TSNAP_CHECK_ARG(part != NULL);
    memset(part, 0, sizeof *part);
    if ((err = tsnap__reader_vds(r, name, &info, &v)) < 0)
        return err;
    if (!v)
        return tsnap__err(TSNAP_EINVAL, tsnap__reader_path(r), name,
                          "not a virtual tensor (%s)", tsnap_map_status_str(info.map_status));
    if (v->why)
        return tsnap__err(TSNAP_EFORMAT, tsnap__reader_path(r), name,
                          "a virtual dataset tsnap cannot follow (%s); HDF5 reads it", v->why);
    if (index >= v->nparts)
        return tsnap__err(TSNAP_EINVAL, tsnap__reader_path(r), name,
                          "block %zu is out of range (%zu blocks)", index, v->nparts);
    *part = v->parts[index];
    return 0;
}

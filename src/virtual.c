/*
 * virtual.c - tensors whose blocks live in other files: HDF5 virtual
 * datasets (VDS), each block the whole of a dataset in a part file.
 *
 * Writing: tsnap_writer_put_virtual maps each block onto its source with
 * H5Pset_virtual (the source file named as given, relative to the
 * snapshot's folder, so that the snapshot and its parts move together).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Refuses overlapping blocks, naming the first two found.  Sorted along
 * axis 0, a block is compared only with those that start before it ends
 * there, which for the usual row decompositions is its neighbour. */
static int check_overlaps(const char *file, const char *name, int ndim, const tsnap_part *parts,
                          size_t nparts)
{
    block_key *keys;
    int err = 0;

    if (nparts < 2)
        return 0;
    keys = malloc(nparts * sizeof *keys);
    if (!keys)
        return tsnap__err(TSNAP_ENOMEM, file, name, "out of memory");
    for (size_t i = 0; i < nparts; i++)
        keys[i] = (block_key){parts[i].offset[0], i};
    qsort(keys, nparts, sizeof *keys, compare_keys);
    for (size_t i = 0; i < nparts && err == 0; i++) {
        const tsnap_part *a = &parts[keys[i].index];
        for (size_t j = i + 1; j < nparts && err == 0; j++) {
            const tsnap_part *b = &parts[keys[j].index];
            int64_t lo[TSNAP_MAX_NDIM], n[TSNAP_MAX_NDIM];
            char wa[128], wb[128], wi[128];
            if (b->offset[0] >= a->offset[0] + a->shape[0])
                break;
            if (!blocks_meet(ndim, a, b, lo, n))
                continue;
            size_t ia = keys[i].index < keys[j].index ? keys[i].index : keys[j].index;
            size_t ib = keys[i].index < keys[j].index ? keys[j].index : keys[i].index;
            format_block(ndim, parts[ia].offset, parts[ia].shape, wa, sizeof wa);
            format_block(ndim, parts[ib].offset, parts[ib].shape, wb, sizeof wb);
            format_block(ndim, lo, n, wi, sizeof wi);
            err = tsnap__err(TSNAP_EINVAL, file, name,
                             "blocks %zu %s (%s) and %zu %s (%s) overlap at %s", ia, wa,
                             parts[ia].file, ib, wb, parts[ib].file, wi);
        }
    }
    free(keys);
    return err;
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

/*
 * attrs.c - attributes on the root and on datasets, both ways.
 *
 * Strings are scalar variable-length UTF-8 strings (h5py reads them as
 * str).  Numbers are scalars or small arrays of the dtype table's HDF5
 * types.  Reading accepts what other writers produce too: fixed-length
 * strings, either byte order; a type tsnap cannot read is listed as
 * TSNAP_ATTR_OTHER with a description, never dropped silently.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ATTR_MAX_BYTES (64 * 1024)

static int delete_existing(hid_t obj, const char *key, const char *file, const char *tensor)
{
    htri_t exists = H5Aexists(obj, key);
    if (exists < 0)
        return tsnap__h5err(TSNAP_EIO, file, tensor, "cannot look up attribute '%s'", key);
    if (exists > 0 && H5Adelete(obj, key) < 0)
        return tsnap__h5err(TSNAP_EIO, file, tensor, "cannot replace attribute '%s'", key);
    return 0;
}

/* The vlen UTF-8 string type and the scalar dataspace of every string
 * attribute, made once per process (the type locked: never closed). */
static hid_t vlen_utf8 = H5I_INVALID_HID, scalar = H5I_INVALID_HID;
static pthread_once_t shared_once = PTHREAD_ONCE_INIT;

static void make_shared(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0 ||
                   H5Tlock(t) < 0)) {
        H5Tclose(t);
        t = H5I_INVALID_HID;
    }
    vlen_utf8 = t;
    scalar = H5Screate(H5S_SCALAR);
    H5Eclear2(H5E_DEFAULT);
}

int tsnap__attr_create_string(hid_t obj, const char *key, const char *value, const char *file,
                              const char *tensor)
{
    hid_t attr = H5I_INVALID_HID;
    int err = 0;

    pthread_once(&shared_once, make_shared);
    if (vlen_utf8 < 0 || scalar < 0 ||
        (attr = H5Acreate2(obj, key, vlen_utf8, scalar, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(attr, vlen_utf8, &value) < 0)
        err = tsnap__h5err(TSNAP_EIO, file, tensor, "cannot write attribute '%s'", key);
    tsnap__h5close(attr);
    return err;
}

int tsnap__attr_write_string(hid_t obj, const char *key, const char *value, const char *file,
                             const char *tensor)
{
    int err = delete_existing(obj, key, file, tensor);
    return err < 0 ? err : tsnap__attr_create_string(obj, key, value, file, tensor);
}

int tsnap__attr_write_tensor(hid_t obj, const char *key, const tsnap_view *v, const char *file,
                             const char *tensor)
{
    hsize_t dims[TSNAP_MAX_NDIM + 1];
    int rank = v->ndim;
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID, attr = H5I_INVALID_HID;
    void *buf = NULL;
    int err;

    if (v->nbytes > ATTR_MAX_BYTES)
        return tsnap__err(TSNAP_EINVAL, file, tensor,
                          "attribute '%s' is %llu bytes; attributes hold at most %d bytes "
                          "(store it as a tensor)",
                          key, (unsigned long long)v->nbytes, ATTR_MAX_BYTES);
    for (int i = 0; i < v->ndim; i++)
        dims[i] = (hsize_t)v->shape[i];
    if (v->dtype == TSNAP_COMPLEX32)
        dims[rank++] = 2;
    if ((err = delete_existing(obj, key, file, tensor)) < 0)
        return err;
    buf = malloc(v->nbytes ? v->nbytes : 1);
    if (!buf)
        return tsnap__err(TSNAP_ENOMEM, file, tensor, "out of memory");
    tsnap__gather(v, 0, v->nelems, buf);
    if (v->dtype == TSNAP_BOOL)
        for (uint64_t i = 0; i < v->nelems; i++)
            ((uint8_t *)buf)[i] = ((uint8_t *)buf)[i] != 0;
    type = tsnap__h5type_file(v->dtype);
    space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, NULL);
    if (type < 0 || space < 0 ||
        (attr = H5Acreate2(obj, key, type, space, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(attr, type, buf) < 0)
        err = tsnap__h5err(TSNAP_EIO, file, tensor, "cannot write attribute '%s'", key);
    tsnap__h5close(attr);
    tsnap__h5close(space);
    tsnap__h5close(type);
    free(buf);
    return err;
}

/* Reads a scalar string attribute (variable or fixed length) into a new
 * NUL-terminated string.  Returns 1 if the attribute is not a scalar
 * string (and sets nothing). */
static int read_string(hid_t attr, char **out, const char *file, const char *tensor,
                       const char *key)
{
    hid_t ftype = H5Aget_type(attr), space = H5Aget_space(attr), mtype = H5I_INVALID_HID;
    int err = 0;

    *out = NULL;
    if (ftype < 0 || space < 0) {
        err = tsnap__h5err(TSNAP_EFORMAT, file, tensor, "cannot read attribute '%s'", key);
        goto done;
    }
    if (H5Tget_class(ftype) != H5T_STRING || H5Sget_simple_extent_type(space) != H5S_SCALAR) {
        err = 1;
        goto done;
    }
    mtype = H5Tcopy(ftype);
    if (mtype < 0) {
        err = tsnap__h5err(TSNAP_EFORMAT, file, tensor, "cannot read attribute '%s'", key);
        goto done;
    }
    if (H5Tis_variable_str(ftype) > 0) {
        char *s = NULL;
        if (H5Aread(attr, mtype, &s) < 0) {
            err = tsnap__h5err(TSNAP_EFORMAT, file, tensor, "cannot read attribute '%s'", key);
            goto done;
        }
        *out = strdup(s ? s : "");
        H5free_memory(s);
    } else {
        size_t n = H5Tget_size(ftype);
        char *s = calloc(1, n + 1);
        if (s && H5Aread(attr, mtype, s) < 0) {
            free(s);
            err = tsnap__h5err(TSNAP_EFORMAT, file, tensor, "cannot read attribute '%s'", key);
            goto done;
        }
        if (s && H5Tget_strpad(ftype) == H5T_STR_SPACEPAD)
            for (size_t i = n; i > 0 && (s[i - 1] == ' ' || s[i - 1] == '\0'); i--)
                s[i - 1] = '\0';
        *out = s;
    }
    if (!*out)
        err = tsnap__err(TSNAP_ENOMEM, file, tensor, "out of memory");
done:
    tsnap__h5close(mtype);
    tsnap__h5close(space);
    tsnap__h5close(ftype);
    return err;
}

int tsnap__attr_read_string(hid_t obj, const char *key, char **out, const char *file,
                            const char *tensor)
{
    htri_t exists;
    hid_t attr;
    int err;

    *out = NULL;
    exists = H5Aexists(obj, key);
    if (exists < 0)
        return tsnap__h5err(TSNAP_EFORMAT, file, tensor, "cannot look up attribute '%s'", key);
    if (exists == 0)
        return 0;
    attr = H5Aopen(obj, key, H5P_DEFAULT);
    if (attr < 0)
        return tsnap__h5err(TSNAP_EFORMAT, file, tensor, "cannot open attribute '%s'", key);
    err = read_string(attr, out, file, tensor, key);
    H5Aclose(attr);
    if (err == 1)
        return tsnap__err(TSNAP_EFORMAT, file, tensor, "attribute '%s' is not a string", key);
    return err;
}

/* ---- the attribute set of one object ------------------------------ */

struct load_ctx {
    tsnap_attr_set *set;
    const char *file;
    const char *tensor;
    int err;
};

static void *keep(tsnap_attr_set *set, void *p)
{
    void **grown;
    if (!p)
        return NULL;
    grown = realloc(set->blocks, (set->nblocks + 1) * sizeof *grown);
    if (!grown) {
        free(p);
        return NULL;
    }
    set->blocks = grown;
    set->blocks[set->nblocks++] = p;
    return p;
}

static int load_numeric(tsnap_attr_set *set, tsnap_attr *a, hid_t attr, hid_t ftype,
                        const char *file, const char *tensor)
{
    hid_t space = H5Aget_space(attr), mtype = H5I_INVALID_HID;
    tsnap_dtype dtype;
    bool mappable, be;
    char why[200] = "";
    int rank, err = 0;
    hsize_t dims[TSNAP_MAX_NDIM];
    int64_t *shape = NULL;
    uint64_t n = 1;
    void *data;

    if (space < 0)
        return tsnap__h5err(TSNAP_EFORMAT, file, tensor, "cannot read attribute '%s'", a->key);
    rank = H5Sget_simple_extent_ndims(space);
    if (rank < 0 || rank > TSNAP_MAX_NDIM ||
        H5Sget_simple_extent_type(space) == H5S_NULL ||
        tsnap__dtype_of_h5(ftype, &dtype, &mtype, &mappable, &be, why, sizeof why) < 0) {
        a->kind = TSNAP_ATTR_OTHER;
        a->string = keep(set, strdup(mtype < 0 && why[0] ? why : "an empty or unreadable value"));
        tsnap__h5close(mtype);
        H5Sclose(space);
        return a->string ? 0 : tsnap__err(TSNAP_ENOMEM, file, tensor, "out of memory");
    }
    H5Sget_simple_extent_dims(space, dims, NULL);
    shape = keep(set, calloc((size_t)rank + 1, sizeof *shape));
    for (int i = 0; shape && i < rank; i++) {
        shape[i] = (int64_t)dims[i];
        n *= dims[i];
    }
    data = shape ? keep(set, malloc(n * tsnap_dtype_size(dtype) + 1)) : NULL;
    if (!data) {
        err = tsnap__err(TSNAP_ENOMEM, file, tensor, "out of memory");
    } else if (H5Aread(attr, mtype, data) < 0) {
        err = tsnap__h5err(TSNAP_EFORMAT, file, tensor, "cannot read attribute '%s'", a->key);
    } else {
        a->kind = TSNAP_ATTR_NUMERIC;
        a->value.data = data;
        a->value.device.device_type = kDLCPU;
        a->value.ndim = rank;
        a->value.shape = shape;
        tsnap_dtype_to_dlpack(&a->value.dtype, dtype);
    }
    H5Tclose(mtype);
    H5Sclose(space);
    return err;
}

static herr_t load_one(hid_t obj, const char *key, const H5A_info_t *info, void *data)
{
    struct load_ctx *ctx = data;
    tsnap_attr_set *set = ctx->set;
    tsnap_attr *grown, *a;
    hid_t attr, ftype = H5I_INVALID_HID;
    char *s = NULL;
    int err;
    (void)info;

    grown = realloc(set->attrs, (set->count + 1) * sizeof *grown);
    if (!grown) {
        ctx->err = tsnap__err(TSNAP_ENOMEM, ctx->file, ctx->tensor, "out of memory");
        return -1;
    }
    set->attrs = grown;
    a = &set->attrs[set->count];
    memset(a, 0, sizeof *a);
    a->key = keep(set, strdup(key));
    if (!a->key) {
        ctx->err = tsnap__err(TSNAP_ENOMEM, ctx->file, ctx->tensor, "out of memory");
        return -1;
    }
    attr = H5Aopen(obj, key, H5P_DEFAULT);
    if (attr < 0) {
        ctx->err = tsnap__h5err(TSNAP_EFORMAT, ctx->file, ctx->tensor,
                                "cannot open attribute '%s'", key);
        return -1;
    }
    err = read_string(attr, &s, ctx->file, ctx->tensor, key);
    if (err == 0) {
        a->kind = TSNAP_ATTR_STRING;
        a->string = keep(set, s);
        if (!a->string)
            err = tsnap__err(TSNAP_ENOMEM, ctx->file, ctx->tensor, "out of memory");
    } else if (err == 1) {
        ftype = H5Aget_type(attr);
        if (ftype < 0)
            err = tsnap__h5err(TSNAP_EFORMAT, ctx->file, ctx->tensor,
                               "cannot read the type of attribute '%s'", key);
        else if (H5Tget_class(ftype) == H5T_STRING) {
            a->kind = TSNAP_ATTR_OTHER;
            a->string = keep(set, strdup("an array of strings"));
            err = a->string ? 0 : tsnap__err(TSNAP_ENOMEM, ctx->file, ctx->tensor, "out of memory");
        } else
            err = load_numeric(set, a, attr, ftype, ctx->file, ctx->tensor);
        tsnap__h5close(ftype);
    }
    H5Aclose(attr);
    H5Eclear2(H5E_DEFAULT);
    if (err < 0) {
        ctx->err = err;
        return -1;
    }
    set->count++;
    return 0;
}

int tsnap__attr_set_load(tsnap_attr_set *set, hid_t obj, const char *file, const char *tensor)
{
    struct load_ctx ctx = {set, file, tensor, 0};
    hsize_t idx = 0;
    memset(set, 0, sizeof *set);
    if (H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, load_one, &ctx) < 0) {
        if (ctx.err == 0)
            ctx.err = tsnap__h5err(TSNAP_EFORMAT, file, tensor, "cannot list attributes");
        tsnap__attr_set_clear(set);
    }
    H5Eclear2(H5E_DEFAULT);
    return ctx.err;
}

void tsnap__attr_set_clear(tsnap_attr_set *set)
{
    for (size_t i = 0; i < set->nblocks; i++)
        free(set->blocks[i]);
    free(set->blocks);
    free(set->attrs);
    memset(set, 0, sizeof *set);
}

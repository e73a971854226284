/*
 * layout.c - tensors in memory and datasets in the file: checking a
 * DLTensor, copying between strided memory and C-order runs of elements,
 * and the chunk rule.
 *
 * Every chunk tsnap writes has the shape (1, ..., 1, k, full, ..., full),
 * so it covers one contiguous range of the tensor's logical C-order
 * elements, and chunks in index order follow each other in that order.
 * Copies therefore always move "logical elements [first, first+n)".
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

int tsnap__shape_size(int ndim, const int64_t *shape, size_t itemsize, uint64_t *nelems,
                      uint64_t *nbytes)
{
    uint64_t n = 1;
    bool empty = false;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return tsnap__err(TSNAP_EINVAL, NULL, NULL, "dimension %d is negative (%lld)", i,
                              (long long)shape[i]);
        if (shape[i] == 0)
            empty = true;
    }
    /* Even an empty tensor's other dimensions must be representable. */
    for (int i = 0; i < ndim; i++) {
        uint64_t d = shape[i] ? (uint64_t)shape[i] : 1;
        if (n > (uint64_t)INT64_MAX / d)
            return tsnap__err(TSNAP_EINVAL, NULL, NULL, "shape overflows: too many elements");
        n *= d;
    }
    if (n > (uint64_t)INT64_MAX / (itemsize ? itemsize : 1))
        return tsnap__err(TSNAP_EINVAL, NULL, NULL, "shape overflows: too many bytes");
    *nelems = empty ? 0 : n;
    *nbytes = *nelems * itemsize;
    return 0;
}

static bool c_contiguous(int ndim, const int64_t *shape, const int64_t *strides)
{
    int64_t expect = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        if (shape[i] != 1 && strides[i] != expect)
            return false;
        expect *= shape[i];
    }
    return true;
}

int tsnap__view_init(tsnap_view *v, const DLTensor *t, const char *file, const char *name)
{
    int err;
    memset(v, 0, sizeof *v);
    v->device = -1;
    if (!t)
        return tsnap__err(TSNAP_EINVAL, file, name, "tensor is NULL");
    switch (t->device.device_type) {
    case kDLCPU:
    case kDLCUDAHost: /* pinned host memory: the CPU reads it directly */
        break;
    case kDLCUDA:
    case kDLCUDAManaged:
        if (t->device.device_id < 0)
            return tsnap__err(TSNAP_EINVAL, file, name, "CUDA device id %d is negative",
                              (int)t->device.device_id);
        v->device = t->device.device_id;
        break;
    default:
        return tsnap__err(TSNAP_EINVAL, file, name, "unsupported DLPack device type %d",
                          (int)t->device.device_type);
    }
    if (t->ndim < 0 || t->ndim > TSNAP_MAX_NDIM)
        return tsnap__err(TSNAP_EINVAL, file, name, "ndim %d is outside 0..%d", t->ndim,
                          TSNAP_MAX_NDIM);
    if (t->ndim > 0 && !t->shape)
        return tsnap__err(TSNAP_EINVAL, file, name, "shape is NULL with ndim %d", t->ndim);
    if ((err = tsnap_dtype_from_dlpack(&v->dtype, t->dtype)) < 0)
        return tsnap__err(err, file, name,
                          "unsupported dtype (DLPack code %u, bits %u, lanes %u)",
                          (unsigned)t->dtype.code, (unsigned)t->dtype.bits,
                          (unsigned)t->dtype.lanes);
    if (v->dtype == TSNAP_COMPLEX32 && t->ndim == TSNAP_MAX_NDIM)
        return tsnap__err(TSNAP_EINVAL, file, name,
                          "complex32 is stored with one more axis, so it may have at most %d "
                          "dimensions",
                          TSNAP_MAX_NDIM - 1);
    v->itemsize = tsnap_dtype_size(v->dtype);
    v->ndim = t->ndim;
    if ((err = tsnap__shape_size(t->ndim, t->shape, v->itemsize, &v->nelems, &v->nbytes)) < 0) {
        char cause[256];
        snprintf(cause, sizeof cause, "%s", tsnap_errmsg());
        return tsnap__err(err, file, name, "%s", cause);
    }
    for (int i = 0; i < t->ndim; i++)
        v->shape[i] = t->shape[i];
    if (t->strides) {
        /* The farthest byte reached must be addressable. */
        uint64_t reach = 0;
        for (int i = 0; i < t->ndim; i++) {
            uint64_t s = t->strides[i] < 0 ? (uint64_t)0 - (uint64_t)t->strides[i]
                                           : (uint64_t)t->strides[i];
            uint64_t d = t->shape[i] > 0 ? (uint64_t)t->shape[i] - 1 : 0;
            if (t->strides[i] == INT64_MIN || (d && s > (uint64_t)INT64_MAX / v->itemsize / d))
                return tsnap__err(TSNAP_EINVAL, file, name, "stride %d overflows", i);
            reach += d * s * v->itemsize;
            if (reach > (uint64_t)INT64_MAX)
                return tsnap__err(TSNAP_EINVAL, file, name, "strides overflow");
            v->strides[i] = t->strides[i];
        }
    } else {
        int64_t s = 1;
        for (int i = t->ndim - 1; i >= 0; i--) {
            v->strides[i] = s;
            s *= t->shape[i] ? t->shape[i] : 1;
        }
    }
    if (v->nelems > 0 && !t->data)
        return tsnap__err(TSNAP_EINVAL, file, name, "data is NULL for %llu elements",
                          (unsigned long long)v->nelems);
    v->base = (char *)t->data + t->byte_offset;
    v->contiguous = c_contiguous(v->ndim, v->shape, v->strides);
    return 0;
}

DLTensor tsnap__host_tensor(void *data, tsnap_dtype dtype, int ndim, int64_t *shape)
{
    DLTensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.device.device_type = kDLCPU;
    t.ndim = ndim;
    t.shape = shape;
    tsnap_dtype_to_dlpack(&t.dtype, dtype);
    return t;
}

int tsnap__view_init_host(tsnap_view *v, const DLTensor *t, const char *file, const char *name)
{
    int err = tsnap__view_init(v, t, file, name);
    if (err == 0 && v->device >= 0)
        return tsnap__err(TSNAP_ENOCUDA, file, name,
                          "the value is in CUDA memory; attribute values must be in host memory");
    return err;
}

/* The view's dims with size-1 dims dropped and mergeable neighbours
 * merged; the same elements in the same C order. */
struct cdims {
    int n;
    int64_t shape[TSNAP_MAX_NDIM];
    int64_t strides[TSNAP_MAX_NDIM];
};

static void coalesce(const tsnap_view *v, struct cdims *c)
{
    c->n = 0;
    for (int i = 0; i < v->ndim; i++) {
        if (v->shape[i] == 1)
            continue;
        if (c->n > 0 && c->strides[c->n - 1] == v->strides[i] * v->shape[i]) {
            c->shape[c->n - 1] *= v->shape[i];
            c->strides[c->n - 1] = v->strides[i];
            continue;
        }
        c->shape[c->n] = v->shape[i];
        c->strides[c->n] = v->strides[i];
        c->n++;
    }
    if (c->n == 0) { /* a scalar, or all dims 1 */
        c->n = 1;
        c->shape[0] = 1;
        c->strides[0] = 1;
    }
}

/* Moves `run` elements between strided memory and a packed buffer. */
static void copy_run(char *packed, char *strided, int64_t stride, size_t itemsize, int64_t run,
                     bool to_packed)
{
    if (stride == 1) {
        if (to_packed)
            memcpy(packed, strided, (size_t)run * itemsize);
        else
            memcpy(strided, packed, (size_t)run * itemsize);
        return;
    }
    int64_t step = stride * (int64_t)itemsize;
#define COPY_LOOP(T)                                                                       \
    for (int64_t j = 0; j < run; j++) {                                                    \
        if (to_packed)                                                                     \
            memcpy(packed + j * (int64_t)sizeof(T), strided + j * step, sizeof(T));        \
        else                                                                               \
            memcpy(strided + j * step, packed + j * (int64_t)sizeof(T), sizeof(T));        \
    }
    switch (itemsize) {
    case 1: COPY_LOOP(uint8_t) break;
    case 2: COPY_LOOP(uint16_t) break;
    case 4: COPY_LOOP(uint32_t) break;
    case 8: COPY_LOOP(uint64_t) break;
    default:
        for (int64_t j = 0; j < run; j++) {
            if (to_packed)
                memcpy(packed + j * (int64_t)itemsize, strided + j * step, itemsize);
            else
                memcpy(strided + j * step, packed + j * (int64_t)itemsize, itemsize);
        }
    }
#undef COPY_LOOP
}

static void transfer(const tsnap_view *v, uint64_t first, uint64_t n, char *packed, bool to_packed)
{
    struct cdims c;
    int64_t idx[TSNAP_MAX_NDIM];
    uint64_t rem = first;
    int last;

    if (n == 0)
        return;
    coalesce(v, &c);
    last = c.n - 1;
    for (int i = last; i >= 0; i--) {
        idx[i] = (int64_t)(rem % (uint64_t)c.shape[i]);
        rem /= (uint64_t)c.shape[i];
    }
    while (n > 0) {
        int64_t off = 0, run;
        for (int i = 0; i < c.n; i++)
            off += idx[i] * c.strides[i];
        run = c.shape[last] - idx[last];
        if ((uint64_t)run > n)
            run = (int64_t)n;
        copy_run(packed, v->base + off * (int64_t)v->itemsize, c.strides[last], v->itemsize, run,
                 to_packed);
        packed += run * (int64_t)v->itemsize;
        n -= (uint64_t)run;
        idx[last] += run;
        for (int i = last; i > 0 && idx[i] == c.shape[i]; i--) {
            idx[i] = 0;
            idx[i - 1]++;
        }
    }
}

void tsnap__gather(const tsnap_view *v, uint64_t first, uint64_t n, void *dst)
{
    transfer(v, first, n, dst, true);
}

void tsnap__scatter(const tsnap_view *v, uint64_t first, uint64_t n, const void *src)
{
    transfer(v, first, n, (char *)src, false);
}

/* The largest divisor of n that is at most k, or 0 if n is too large to
 * search (past 2^40, an axis no real tensor has beyond its first). */
static uint64_t largest_divisor_upto(uint64_t n, uint64_t k)
{
    uint64_t best = 1;
    if (n > ((uint64_t)1 << 40))
        return 0;
    for (uint64_t i = 1; i * i <= n; i++) {
        if (n % i)
            continue;
        if (i <= k && i > best)
            best = i;
        if (n / i <= k && n / i > best)
            best = n / i;
    }
    return best;
}

void tsnap__chunk_shape(int ndim, const int64_t *shape, size_t itemsize, size_t chunk_bytes,
                        bool flat, int64_t *chunk)
{
    uint64_t inner = itemsize; /* bytes of one index of axis a */
    int a;

    for (a = ndim - 1; a >= 0; a--)
        chunk[a] = shape[a];
    /* Find the first axis whose inner block fits; axes before it get 1. */
    for (a = 0; a < ndim; a++) {
        inner = itemsize;
        for (int b = a + 1; b < ndim; b++)
            inner *= (uint64_t)shape[b];
        if (inner <= chunk_bytes)
            break;
        chunk[a] = 1;
    }
    if (a == ndim) { /* one element is larger than a chunk */
        a = ndim - 1;
        inner = itemsize;
    }
    if (a >= 0) {
        uint64_t k = chunk_bytes / inner;
        if (k < 1)
            k = 1;
        if (k > (uint64_t)shape[a])
            k = (uint64_t)shape[a];
        /* HDF5 pads a partial chunk to full size.  On the first axis that
         * padding comes after all the data; on a later axis it would fall
         * between chunks, so a flat layout needs k to divide the axis. */
        uint64_t outer = 1;
        for (int b = 0; b < a; b++)
            outer *= (uint64_t)shape[b];
        if (flat && outer > 1 && (uint64_t)shape[a] % k != 0) {
            uint64_t d = largest_divisor_upto((uint64_t)shape[a], k);
            if (d)
                k = d;
        }
        chunk[a] = (int64_t)k;
    }
}

int tsnap__check_name(const char *file, const char *name)
{
    size_t len, part = 0;
    if (!name)
        return tsnap__err(TSNAP_EINVAL, file, NULL, "tensor name is NULL");
    len = strlen(name);
    if (len == 0)
        return tsnap__err(TSNAP_EINVAL, file, NULL, "tensor name is empty");
    if (len > 1024)
        return tsnap__err(TSNAP_EINVAL, file, NULL, "tensor name is longer than 1024 bytes");
    for (size_t i = 0; i <= len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch == '/' || ch == '\0') {
            const char *p = name + i - part;
            if (part == 0)
                return tsnap__err(TSNAP_EINVAL, file, name,
                                  "bad tensor name: empty part (leading, trailing or doubled '/')");
            if ((part == 1 && p[0] == '.') || (part == 2 && p[0] == '.' && p[1] == '.'))
                return tsnap__err(TSNAP_EINVAL, file, name, "bad tensor name: '.' or '..' part");
            part = 0;
        } else if (ch < 0x20 || ch == 0x7f) {
            return tsnap__err(TSNAP_EINVAL, file, NULL, "bad tensor name: control character");
        } else {
            part++;
        }
    }
    return 0;
}

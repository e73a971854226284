/*
 * table.c - the index of a file's tensors (docs/FORMAT.md, §16).
 *
 * A writer records every tensor it puts (name, dtype, shape, chunk shape,
 * where its bytes lie when they lie flat, its checksum) and stores the
 * list at commit as one root attribute, `tsnap_index`, with the time it
 * then gives the file as its modification time.  A reader that finds the
 * attribute, its checksum right and the file's modification time still
 * that one (nothing has written to the file since: any HDF5 writer,
 * h5repack, a copy) lists and describes the tensors from it in one read,
 * instead of opening every dataset; in any other case it walks the file.
 * The datasets are the same either way: the index only saves the walk.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "internal.h"
#include "xxh.h"

#define MAGIC "TSNAPIX1"
#define HEADER 48 /* magic, count, mtime s, mtime ns, entries' hash, size */

static int grow(tsnap_table *t, size_t more)
{
    if (t->len + more <= t->cap)
        return 0;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->len + more)
        cap *= 2;
    uint8_t *p = realloc(t->buf, cap);
    if (!p)
        return -1;
    t->buf = p;
    t->cap = cap;
    return 0;
}

static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); } /* little-endian machines */
static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

int tsnap__table_add(tsnap_table *t, const char *name, const tsnap_tensor_info *info,
                     bool flat, const uint64_t *checksum)
{
    size_t n = strlen(name), need = 2 + n + 4 + 16 * (size_t)info->ndim + 8 * 4 + 1;
    if (t->off)
        return 0;
    if (n > 0xFFFF || grow(t, need) < 0) {
        t->off = true; /* no index: readers walk the file */
        return 0;
    }
    uint8_t *p = t->buf + t->len;
    p[0] = (uint8_t)(n & 0xFF);
    p[1] = (uint8_t)(n >> 8);
    memcpy(p + 2, name, n);
    p += 2 + n;
    p[0] = (uint8_t)info->dtype;
    p[1] = (uint8_t)info->ndim;
    p[2] = (uint8_t)((flat ? 1 : 0) | (info->chunked ? 2 : 0) | (checksum ? 4 : 0));
    p[3] = 0;
    p += 4;
    for (int i = 0; i < info->ndim; i++, p += 16) {
        put_u64(p, (uint64_t)info->shape[i]);
        put_u64(p + 8, (uint64_t)info->chunk[i]);
    }
    put_u64(p, info->nbytes);
    put_u64(p + 8, info->stored_bytes);
    put_u64(p + 16, info->offset);
    put_u64(p + 24, checksum ? *checksum : 0);
    p[32] = 0;
    t->len += need;
    t->count++;
    return 0;
}

void tsnap__table_clear(tsnap_table *t)
{
    free(t->buf);
    memset(t, 0, sizeof *t);
}

int tsnap__table_write(tsnap_table *t, hid_t file, const char *path, struct timespec *mtime)
{
    uint8_t head[HEADER];
    hid_t space = H5I_INVALID_HID, attr = H5I_INVALID_HID;
    hsize_t dims[1];
    int err = 0;

    if (t->off)
        return 0;
    clock_gettime(CLOCK_REALTIME, mtime);
    if (grow(t, HEADER) < 0) {
        t->off = true;
        return 0;
    }
    memmove(t->buf + HEADER, t->buf, t->len);
    memcpy(head, MAGIC, 8);
    put_u64(head + 8, t->count);
    put_u64(head + 16, (uint64_t)mtime->tv_sec);
    put_u64(head + 24, (uint64_t)mtime->tv_nsec);
    put_u64(head + 32, XXH3_64bits(t->buf + HEADER, t->len));
    put_u64(head + 40, t->len);
    memcpy(t->buf, head, HEADER);
    dims[0] = HEADER + t->len;
    if ((space = H5Screate_simple(1, dims, NULL)) < 0 ||
        (attr = H5Acreate2(file, "tsnap_index", H5T_STD_U8LE, space, H5P_DEFAULT, H5P_DEFAULT)) <
            0 ||
        H5Awrite(attr, H5T_NATIVE_UINT8, t->buf) < 0)
        err = tsnap__h5err(TSNAP_EIO, path, NULL, "cannot write the tensor index");
    tsnap__h5close(attr);
    tsnap__h5close(space);
    return err;
}

int tsnap__table_stamp(const char *tmp, const struct timespec *mtime)
{
    struct timespec times[2] = {{0, UTIME_OMIT}, *mtime};
    return utimensat(AT_FDCWD, tmp, times, 0);
}

/* Decodes the entry at b[pos..len) into *info (*flat: its bytes lie at
 * info->offset); returns the position after it, or 0 when it is damaged. */
static size_t decode_entry(const uint8_t *b, size_t pos, size_t len, tsnap_tensor_info *info,
                           bool *flat, size_t *name_at, size_t *name_len, bool want_sum)
{
    if (len - pos < 2)
        return 0;
    size_t n = (size_t)b[pos] | (size_t)b[pos + 1] << 8;
    pos += 2;
    if (n == 0 || len - pos < n + 4 || memchr(b + pos, 0, n))
        return 0;
    *name_at = pos;
    *name_len = n;
    pos += n;
    int dtype = b[pos], ndim = b[pos + 1], flags = b[pos + 2];
    pos += 4;
    if (ndim > TSNAP_MAX_NDIM || tsnap_dtype_size((tsnap_dtype)dtype) == 0 ||
        len - pos < 16 * (size_t)ndim + 33)
        return 0;
    memset(info, 0, sizeof *info);
    info->dtype = (tsnap_dtype)dtype;
    info->ndim = ndim;
    for (int k = 0; k < ndim; k++, pos += 16) {
        info->shape[k] = (int64_t)get_u64(b + pos);
        info->chunk[k] = (int64_t)get_u64(b + pos + 8);
        if (info->shape[k] < 0)
            return 0;
    }
    info->chunked = (flags & 2) != 0;
    info->nbytes = get_u64(b + pos);
    info->stored_bytes = get_u64(b + pos + 8);
    info->offset = get_u64(b + pos + 16);
    if ((flags & 4) && want_sum) /* "xxh3-64:" and 16 lowercase hex digits */
        tsnap__checksum_format(get_u64(b + pos + 24), info->checksum, sizeof info->checksum);
    pos += 33;
    *flat = (flags & 1) != 0;
    uint64_t nelems, nbytes;
    if (tsnap__shape_size(ndim, info->shape, tsnap_dtype_size(info->dtype), &nelems, &nbytes) <
            0 ||
        nbytes != info->nbytes)
        return 0;
    info->codec = TSNAP_CODEC_NONE;
    if (*flat) {
        info->map_status = nbytes ? TSNAP_MAP_OK : TSNAP_MAP_EMPTY;
        info->length = nbytes;
        if (!nbytes)
            info->offset = 0;
    }
    return pos;
}

/* Checks every entry of an index blob and notes where each starts, with
 * its name; false when anything is off. */
static bool parse(const uint8_t *b, size_t len, size_t count, tsnap_table_loaded *out)
{
    size_t pos = 0;
    tsnap_tensor_info info;
    bool flat;
    if (count > len / 38 + 1 || !(out->at = malloc((count ? count : 1) * sizeof *out->at)) ||
        !(out->names = calloc(count ? count : 1, sizeof *out->names)))
        return false;
    for (size_t i = 0; i < count; i++) {
        size_t name_at, name_len, next = decode_entry(b, pos, len, &info, &flat, &name_at,
                                                      &name_len, false);
        if (!next || !(out->names[i] = strndup((const char *)b + name_at, name_len)))
            return false;
        out->at[i] = pos;
        out->count = i + 1;
        pos = next;
    }
    return pos == len;
}

void tsnap__table_entry(const tsnap_table_loaded *t, size_t k, tsnap_tensor_info *info,
                        bool *flat)
{
    size_t name_at, name_len;
    (void)decode_entry(t->blob, t->at[k], t->len, info, flat, &name_at, &name_len, true);
}

void tsnap__table_loaded_clear(tsnap_table_loaded *t)
{
    for (size_t i = 0; t->names && i < t->count; i++)
        free(t->names[i]);
    free(t->names);
    free(t->at);
    free(t->buf);
    memset(t, 0, sizeof *t);
}

bool tsnap__table_load(hid_t file, int fd, tsnap_table_loaded *out)
{
    hid_t attr = H5I_INVALID_HID, space = H5I_INVALID_HID, type = H5I_INVALID_HID;
    struct stat st;
    bool ok = false;
    hssize_t n;

    memset(out, 0, sizeof *out);
    if (getenv("TSNAP_NO_INDEX") || fd < 0 || fstat(fd, &st) < 0)
        return false;
    /* One lookup: a file without an index fails the open (its error is
     * cleared below). */
    if ((attr = H5Aopen(file, "tsnap_index", H5P_DEFAULT)) < 0 ||
        (space = H5Aget_space(attr)) < 0 || (type = H5Aget_type(attr)) < 0 ||
        H5Tget_class(type) != H5T_INTEGER || H5Tget_size(type) != 1 ||
        H5Sget_simple_extent_ndims(space) != 1 ||
        (n = H5Sget_simple_extent_npoints(space)) < HEADER || !(out->buf = malloc((size_t)n)) ||
        H5Aread(attr, H5T_NATIVE_UINT8, out->buf) < 0)
        goto done;
    /* The file is as the writer left it: its modification time is still
     * the one the writer gave it, after writing the index. */
    const uint8_t *b = out->buf;
    if (memcmp(b, MAGIC, 8) != 0 || get_u64(b + 40) != (uint64_t)n - HEADER ||
        (int64_t)get_u64(b + 16) != (int64_t)st.st_mtim.tv_sec ||
        (int64_t)get_u64(b + 24) != (int64_t)st.st_mtim.tv_nsec ||
        XXH3_64bits(b + HEADER, (size_t)n - HEADER) != get_u64(b + 32))
        goto done;
    out->blob = b + HEADER;
    out->len = (size_t)n - HEADER;
    ok = parse(out->blob, out->len, get_u64(b + 8), out);
done:
    if (!ok)
        tsnap__table_loaded_clear(out);
    tsnap__h5close(type);
    tsnap__h5close(space);
    tsnap__h5close(attr);
    H5Eclear2(H5E_DEFAULT);
    return ok;
}

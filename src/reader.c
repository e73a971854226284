/*
 * reader.c - opening any HDF5 file and reading its datasets as tensors.
 *
 * A dataset's tsnap dtype comes from its HDF5 type (dtype.c), reconciled
 * with the `tsnap_dtype` attribute where tsnap wrote one: that attribute
 * is what turns raw uint8 into float8_e4m3fn and float16 pairs into
 * complex32, and a contradiction between the two is a damaged file.
 * Whether a tensor can be mapped is computed from where HDF5 says its
 * chunks are, never assumed from how tsnap writes them.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "xxh.h"

/* Bytes read at a time when a read has to go through a buffer. */
#define BOUNCE_BYTES ((size_t)4 << 20)

struct attr_cache_entry {
    char *name; /* "" for the root */
    tsnap_attr_set set;
};

/* A description, made once per tensor: a file open for reading does not
 * change under the reader. */
struct described {
    bool done;
    bool indexed; /* listed from the file's index: a type of tsnap's own */
    tsnap_tensor_info info;
    tsnap_vds *vds; /* a virtual dataset's blocks */
    bool enums_done;
    tsnap_enum_member *enums; /* an enum's members (tsnap_reader_enum) */
    size_t nenums;
};

struct tsnap_reader {
    char *path;
    hid_t file;
    int fd; /* HDF5's descriptor of the file, for pread and mmap; -1: none */
    int format_version;
    char **names;
    size_t count, cap;
    char **groups; /* every group but the root, sorted, once listed */
    size_t ngroups, gcap;
    bool groups_listed;
    struct described *desc; /* parallel to names */
    hsize_t bias;           /* chunk_address_bias, once known */
    bool bias_known;
    struct attr_cache_entry *attrs;
    size_t nattrs;
    tsnap_vds_cache *parts; /* the part files of virtual tensors, open */
    bool indexed;           /* listed from the file's index (table.c) */
};

typedef tsnap_dset tensor;
typedef tsnap_selection selection;

/* ---- open and list ------------------------------------------------ */

static herr_t collect_group(tsnap_reader *r, const char *name)
{
    if (r->ngroups == r->gcap) {
        size_t cap = r->gcap ? 2 * r->gcap : 16;
        char **grown = realloc(r->groups, cap * sizeof *grown);
        if (!grown)
            return -1;
        r->groups = grown;
        r->gcap = cap;
    }
    if (!(r->groups[r->ngroups] = strdup(name)))
        return -1;
    r->ngroups++;
    return 0;
}

static herr_t collect(hid_t obj, const char *name, const H5O_info_t *info, void *data)
{
    tsnap_reader *r = data;
    (void)obj;
    if (info->type != H5O_TYPE_DATASET)
        return 0;
    if (r->count == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        char **grown = realloc(r->names, cap * sizeof *grown);
        if (!grown)
            return -1;
        r->names = grown;
        r->cap = cap;
    }
    if (!(r->names[r->count] = strdup(name)))
        return -1;
    r->count++;
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* An entry of the index: its name and where it is in the index. */
struct named_entry {
    char *name;
    size_t k;
};

static int cmp_entries(const void *a, const void *b)
{
    return strcmp(((const struct named_entry *)a)->name, ((const struct named_entry *)b)->name);
}

/* Lists the tensors from the file's index, when it has one that still
 * describes the file (table.c): no walk, and the tensors that lie flat
 * come described.  false: walk the file instead. */
static bool list_from_index(tsnap_reader *r)
{
    tsnap_table_loaded ix;
    struct named_entry *order = NULL;
    bool ok, flat;
    if (!tsnap__table_load(r->file, r->fd, &ix))
        return false;
    ok = (order = malloc((ix.count + 1) * sizeof *order)) &&
         (r->names = malloc((ix.count + 1) * sizeof *r->names)) &&
         (r->desc = calloc(ix.count + 1, sizeof *r->desc));
    for (size_t k = 0; ok && k < ix.count; k++)
        order[k] = (struct named_entry){ix.names[k], k};
    if (ok)
        qsort(order, ix.count, sizeof *order, cmp_entries);
    for (size_t i = 0; ok && i < ix.count; i++) {
        ok = i == 0 || strcmp(order[i].name, r->names[i - 1]) != 0; /* one entry per name */
        r->names[r->count++] = order[i].name;
        ix.names[order[i].k] = NULL;
        tsnap__table_entry(&ix, order[i].k, &r->desc[i].info, &flat);
        r->desc[i].done = flat;
        r->desc[i].indexed = true;
    }
    r->cap = r->count;
    free(order);
    tsnap__table_loaded_clear(&ix);
    if (!ok) {
        for (size_t i = 0; i < r->count; i++)
            free(r->names[i]);
        free(r->names);
        free(r->desc);
        r->names = NULL;
        r->desc = NULL;
        r->count = r->cap = 0;
    }
    return ok;
}

/* Reads attribute `key` of obj if it is a 64-bit signed integer scalar
 * (either byte order); false otherwise. */
static bool read_int64_scalar(hid_t obj, const char *key, int64_t *value)
{
    hid_t attr = H5Aopen(obj, key, H5P_DEFAULT), type = H5I_INVALID_HID,
          space = H5I_INVALID_HID;
    bool ok = attr >= 0 && (type = H5Aget_type(attr)) >= 0 &&
              (space = H5Aget_space(attr)) >= 0 && H5Tget_class(type) == H5T_INTEGER &&
              H5Tget_size(type) == 8 && H5Tget_sign(type) == H5T_SGN_2 &&
              H5Sget_simple_extent_type(space) == H5S_SCALAR &&
              H5Aread(attr, H5T_NATIVE_INT64, value) >= 0;
    tsnap__h5close(space);
    tsnap__h5close(type);
    tsnap__h5close(attr);
    H5Eclear2(H5E_DEFAULT);
    return ok;
}

static int read_format_version(tsnap_reader *r)
{
    char *format = NULL;
    int err = tsnap__attr_read_string(r->file, "tsnap_format", &format, r->path, NULL);
    H5Eclear2(H5E_DEFAULT);
    if (err < 0 || !format || strcmp(format, "tsnap") != 0) {
        free(format); /* not ours: a foreign HDF5 file, read as such */
        return 0;
    }
    free(format);
    int64_t version = 0;
    if (!read_int64_scalar(r->file, "tsnap_version", &version))
        return tsnap__err(TSNAP_EFORMAT, r->path, NULL,
                          "tsnap_version is missing or not an int64 scalar");
    if (version < 1 || version > TSNAP_FORMAT_VERSION)
        return tsnap__err(TSNAP_EFORMAT, r->path, NULL,
                          "written in tsnap format version %lld; this tsnap reads up to %d",
                          (long long)version, TSNAP_FORMAT_VERSION);
    r->format_version = (int)version;
    return 0;
}

/* The descriptor HDF5 reads the file through (the sec2 driver's, which
 * H5P_DEFAULT gives), or -1: reads and maps through it see exactly the
 * file HDF5 describes, even if the path is renamed over meanwhile.  It
 * must be the file that was stat'ed as `st`, which also tells that the
 * handle is a descriptor at all. */
static int hdf5_fd(hid_t file, const struct stat *st)
{
    int *handle = NULL;
    struct stat fst;
    if (H5Fget_vfd_handle(file, H5P_DEFAULT, (void **)&handle) < 0 || !handle) {
        H5Eclear2(H5E_DEFAULT);
        return -1;
    }
    if (fstat(*handle, &fst) < 0 || fst.st_dev != st->st_dev || fst.st_ino != st->st_ino)
        return -1;
    return *handle;
}

int tsnap_reader_open(tsnap_reader **out, const char *path)
{
    tsnap_reader *r = NULL;
    struct stat st;
    int err = 0;

    tsnap__begin();
    TSNAP_CHECK_ARG(out != NULL);
    *out = NULL;
    TSNAP_CHECK_ARG(path != NULL && *path != '\0');
    if (stat(path, &st) < 0)
        return tsnap__syserr(errno == ENOENT || errno == ENOTDIR ? TSNAP_ENOTFOUND : TSNAP_EIO,
                             errno, path, NULL, "cannot open");
    if (S_ISDIR(st.st_mode))
        return tsnap__err(TSNAP_EINVAL, path, NULL, "is a directory, not a file");
    /* A file this process may not read is not a damaged one: say so before
     * HDF5 folds the cause into "unable to open file". */
    {
        int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            return tsnap__syserr(errno == ENOENT ? TSNAP_ENOTFOUND : TSNAP_EIO, errno, path,
                                 NULL, "cannot open");
        close(fd);
    }

    tsnap__filters_register(); /* before any dataset is read: LZF, zstd and lz4 built in */
    r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        return tsnap__err(TSNAP_ENOMEM, path, NULL, "out of memory");
    }
    r->fd = -1;
    r->file = H5I_INVALID_HID;
    /* Default access properties: HDF5 refuses to open one file twice in a
     * process with different ones, and h5py may share this libhdf5. */
    r->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (r->file < 0) {
        err = tsnap__h5err(TSNAP_EFORMAT, path, NULL, "not a readable HDF5 file");
        goto fail;
    }
    r->fd = hdf5_fd(r->file, &st);
    if ((r->indexed = list_from_index(r)))
        goto listed;
    if (H5Ovisit2(r->file, H5_INDEX_NAME, H5_ITER_INC, collect, r, H5O_INFO_BASIC) < 0) {
        err = tsnap__h5err(TSNAP_EFORMAT, path, NULL, "cannot list the datasets");
        goto fail;
    }
    if (r->count > 1)
        qsort(r->names, r->count, sizeof *r->names, cmp_names);
    if (r->count && !(r->desc = calloc(r->count, sizeof *r->desc))) {
        err = tsnap__err(TSNAP_ENOMEM, path, NULL, "out of memory");
        goto fail;
    }
listed:
    if ((err = read_format_version(r)) < 0)
        goto fail;
    *out = r;
    return 0;
fail:
    tsnap_reader_free(r);
    return err;
}

void tsnap_reader_free(tsnap_reader *r)
{
    if (!r)
        return;
    if (r->file >= 0) {
        H5Fclose(r->file);
        H5Eclear2(H5E_DEFAULT);
    }
    for (size_t i = 0; r->desc && i < r->count; i++) {
        tsnap__vds_free(r->desc[i].vds);
        tsnap__enum_members_free(r->desc[i].enums, r->desc[i].nenums);
    }
    tsnap__vds_cache_free(r->parts);
    free(r->desc); /* r->fd is HDF5's, closed with the file */
    for (size_t i = 0; i < r->count; i++)
        free(r->names[i]);
    free(r->names);
    for (size_t i = 0; i < r->ngroups; i++)
        free(r->groups[i]);
    free(r->groups);
    for (size_t i = 0; i < r->nattrs; i++) {
        free(r->attrs[i].name);
        tsnap__attr_set_clear(&r->attrs[i].set);
    }
    free(r->attrs);
    free(r->path);
    free(r);
}

const char *tsnap__reader_path(const tsnap_reader *r) { return r->path; }

int tsnap__reader_fd(const tsnap_reader *r) { return r->fd; }

tsnap_vds_cache **tsnap__reader_vds_cache(tsnap_reader *r) { return &r->parts; }

int tsnap_reader_format_version(const tsnap_reader *r) { return r ? r->format_version : 0; }

int tsnap_reader_indexed(const tsnap_reader *r) { return r && r->indexed; }

size_t tsnap_reader_count(const tsnap_reader *r) { return r ? r->count : 0; }

const char *tsnap_reader_name(const tsnap_reader *r, size_t index)
{
    return r && index < r->count ? r->names[index] : NULL;
}

/* The index of a tensor's name, or -1. */
static ptrdiff_t find_name(const tsnap_reader *r, const char *name)
{
    char **hit;
    if (r->count == 0)
        return -1;
    hit = bsearch(&name, r->names, r->count, sizeof *r->names, cmp_names);
    return hit ? hit - r->names : -1;
}

static bool has_name(const tsnap_reader *r, const char *name) { return find_name(r, name) >= 0; }

static int list_groups(tsnap_reader *r);

static bool has_group(tsnap_reader *r, const char *name)
{
    return list_groups(r) == 0 && r->ngroups &&
           bsearch(&name, r->groups, r->ngroups, sizeof *r->groups, cmp_names) != NULL;
}

/* ---- one tensor --------------------------------------------------- */

static void tensor_close(tensor *t)
{
    tsnap__h5close(t->memtype);
    tsnap__h5close(t->ftype);
    tsnap__h5close(t->dcpl);
    tsnap__h5close(t->dset);
    t->memtype = t->ftype = t->dcpl = t->dset = H5I_INVALID_HID;
}

/* Applies the `tsnap_dtype` attribute, which names what the bytes are. */
static int reconcile(tsnap_reader *r, tensor *t)
{
    char *said = NULL;
    tsnap_dtype d;
    int err = tsnap__attr_read_string(t->dset, "tsnap_dtype", &said, r->path, t->name);
    if (err < 0 || !said)
        return err;
    if (tsnap_dtype_from_name(&d, said) < 0) {
        err = tsnap__err(TSNAP_ETYPE, r->path, t->name,
                         "unknown tsnap_dtype '%s' (written by a newer tsnap?)", said);
    } else if (d == t->dtype) {
        /* as the HDF5 type says */
    } else if (d == TSNAP_FLOAT8_E4M3FN && t->dtype == TSNAP_UINT8) {
        t->dtype = d;
    } else if (d == TSNAP_COMPLEX32 && t->dtype == TSNAP_FLOAT16 && t->rank >= 1 &&
               t->dims[t->rank - 1] == 2) {
        t->dtype = d;
        t->pairs = true;
        t->ndim = t->rank - 1;
    } else {
        err = tsnap__err(TSNAP_EFORMAT, r->path, t->name,
                         "tsnap_dtype says %s but the HDF5 type holds %s%s", said,
                         tsnap_dtype_name(t->dtype),
                         d == TSNAP_COMPLEX32 ? " without a trailing axis of 2" : "");
    }
    free(said);
    return err;
}

/* Dataset access for strided selections: a chunk cache that holds a few
 * of tsnap's 4 MiB chunks.  In HDF5's default of 1 MiB none fits, and a
 * strided selection then goes back to the file for every run of elements
 * of a chunk (four times slower); a selection of whole runs is better off
 * without (HDF5 then reads straight into the destination).  Made once,
 * never closed. */
static hid_t strided_access;
static void make_strided_access(void)
{
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    if (dapl >= 0 && H5Pset_chunk_cache(dapl, H5D_CHUNK_CACHE_NSLOTS_DEFAULT, (size_t)16 << 20,
                                        H5D_CHUNK_CACHE_W0_DEFAULT) < 0) {
        H5Pclose(dapl);
        dapl = H5I_INVALID_HID;
    }
    H5Eclear2(H5E_DEFAULT);
    strided_access = dapl >= 0 ? dapl : H5P_DEFAULT;
}

/* tensor_open, with the dataset access properties for a selection with
 * steps when `strided`. */
static int tensor_open_for(tsnap_reader *r, const char *name, tensor *t, bool strided);

static int tensor_open(tsnap_reader *r, const char *name, tensor *t)
{
    return tensor_open_for(r, name, t, false);
}

static int tensor_open_for(tsnap_reader *r, const char *name, tensor *t, bool strided)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    hid_t space = H5I_INVALID_HID;
    char why[256];
    int err = 0;
    bool mappable;

    memset(t, 0, sizeof *t);
    t->path = r->path;
    t->name = name;
    t->dset = t->ftype = t->memtype = t->dcpl = H5I_INVALID_HID;
    if (!name)
        return tsnap__err(TSNAP_EINVAL, r->path, NULL, "tensor name is NULL");
    if (!has_name(r, name))
        return tsnap__err(TSNAP_ENOTFOUND, r->path, name, "no such tensor");
    if (strided)
        pthread_once(&once, make_strided_access);
    /* The creation properties come last, for a type tsnap reads: HDF5
     * 1.10 converts the fill value to get them, and a damaged one of a
     * variable-length type crashes it in the global heap. */
    if ((t->dset = H5Dopen2(r->file, name, strided ? strided_access : H5P_DEFAULT)) < 0 ||
        (t->ftype = H5Dget_type(t->dset)) < 0 || (space = H5Dget_space(t->dset)) < 0) {
        err = tsnap__h5err(TSNAP_EFORMAT, r->path, name, "cannot open the dataset");
        goto done;
    }
    if (H5Sget_simple_extent_type(space) == H5S_NULL) {
        err = tsnap__err(TSNAP_ETYPE, r->path, name, "dataset has a null dataspace (no shape)");
        goto done;
    }
    t->rank = H5Sget_simple_extent_ndims(space);
    if (t->rank < 0 || t->rank > TSNAP_MAX_NDIM ||
        H5Sget_simple_extent_dims(space, t->dims, NULL) < 0) {
        err = tsnap__h5err(TSNAP_EFORMAT, r->path, name, "bad dataspace");
        goto done;
    }
    t->ndim = t->rank;
    if (tsnap__dtype_of_h5(t->ftype, &t->dtype, &t->memtype, &mappable, &t->big_endian, why,
                           sizeof why) < 0) {
        err = tsnap__err(TSNAP_ETYPE, r->path, name, "%s", why);
        goto done;
    }
    t->canonical = mappable;
    if ((t->dcpl = H5Dget_create_plist(t->dset)) < 0) {
        err = tsnap__h5err(TSNAP_EFORMAT, r->path, name, "cannot open the dataset");
        goto done;
    }
    if ((err = reconcile(r, t)) < 0)
        goto done;
    t->itemsize = tsnap_dtype_size(t->dtype);
    {
        int64_t shape[TSNAP_MAX_NDIM];
        for (int i = 0; i < t->ndim; i++) {
            if (t->dims[i] > (hsize_t)INT64_MAX) {
                err = tsnap__err(TSNAP_EFORMAT, r->path, name, "dimension %d is too large", i);
                goto done;
            }
            shape[i] = (int64_t)t->dims[i];
        }
        uint64_t nbytes;
        if ((err = tsnap__shape_size(t->ndim, shape, t->itemsize, &t->nelems, &nbytes)) < 0) {
            char cause[256];
            snprintf(cause, sizeof cause, "%s", tsnap_errmsg());
            err = tsnap__err(TSNAP_EFORMAT, r->path, name, "%s", cause);
            goto done;
        }
    }
done:
    tsnap__h5close(space);
    if (err < 0)
        tensor_close(t);
    H5Eclear2(H5E_DEFAULT);
    return err;
}

/* ---- where the bytes are ------------------------------------------ */

/* The axis k sits on when the chunk has the shape (1, ..., 1, k, whole,
 * ..., whole), or -1 for any other shape. */
static int range_split(const tensor *t, const hsize_t *chunk)
{
    int split = t->rank - 1;
    while (split > 0 && chunk[split] == t->dims[split])
        split--;
    for (int i = 0; i < split; i++)
        if (chunk[i] != 1)
            return -1;
    return split;
}

/* HDF5 before 1.14.4 reports chunk addresses without the userblock
 * (HDFGroup/hdf5#3003), while H5Dget_offset includes it. */
static hsize_t chunk_address_bias(tsnap_reader *r)
{
    unsigned maj = 0, min = 0, rel = 0;
    hsize_t ub = 0;
    hid_t fcpl;
    if (r->bias_known)
        return r->bias;
    H5get_libversion(&maj, &min, &rel);
    if (maj == 1 && (min < 14 || (min == 14 && rel < 4)) &&
        (fcpl = H5Fget_create_plist(r->file)) >= 0) {
        H5Pget_userblock(fcpl, &ub);
        H5Pclose(fcpl);
    }
    r->bias = ub;
    r->bias_known = true;
    return ub;
}

/* Finds the bytes of an unfiltered chunked tensor: every chunk must be
 * allocated, of full size, and lie right after the one before it in
 * C order of the data. */
static tsnap_map_status locate_chunks(tsnap_reader *r, tensor *t, uint64_t *offset)
{
    hsize_t chunk[TSNAP_MAX_NDIM + 1], coord[TSNAP_MAX_NDIM + 1] = {0};
    hsize_t nchunks = 0, expect = 1, chunk_bytes, first = 0;
    hid_t space = H5I_INVALID_HID;
    tsnap_map_status st = TSNAP_MAP_OK;
    int rank = t->rank, split;
    size_t elem = H5Tget_size(t->ftype);

    if (H5Pget_chunk(t->dcpl, rank, chunk) != rank)
        return TSNAP_MAP_LAYOUT;
    /* Chunks in index order are in data order only for chunk shapes
     * (1, ..., 1, k, whole, ..., whole). */
    if ((split = range_split(t, chunk)) < 0)
        return TSNAP_MAP_SCATTERED;
    uint64_t outer = 1;
    for (int i = 0; i < split; i++)
        outer *= t->dims[i];
    /* A partial chunk on the split axis is padded in the file: only the
     * very last chunk may be partial. */
    if (outer > 1 && t->dims[split] % chunk[split] != 0)
        return TSNAP_MAP_SCATTERED;
    hsize_t nsplit = (t->dims[split] + chunk[split] - 1) / chunk[split];
    expect = outer * nsplit;
    chunk_bytes = elem;
    for (int i = 0; i < rank; i++)
        chunk_bytes *= chunk[i];

    /* With the implicit index (what HDF5 uses for early-allocated,
     * unfiltered, fixed-size datasets) and the single-chunk index, HDF5
     * itself finds chunk i at chunk 0's address + i x the chunk size: one
     * lookup establishes where every chunk is.  Other indexes are asked
     * chunk by chunk (a lookup in 1.10 walks the index: quadratic). */
    H5D_chunk_index_t index;
    if (H5Dget_chunk_index_type(t->dset, &index) >= 0 &&
        (index == H5D_CHUNK_IDX_NONE || (index == H5D_CHUNK_IDX_SINGLE && expect == 1))) {
        unsigned mask = 0;
        haddr_t addr = HADDR_UNDEF;
        hsize_t size = 0;
        if (H5Dget_chunk_info_by_coord(t->dset, coord, &mask, &addr, &size) < 0 ||
            addr == HADDR_UNDEF)
            st = TSNAP_MAP_NOT_ALLOCATED;
        else if (size != chunk_bytes)
            st = TSNAP_MAP_SCATTERED;
        else
            *offset = addr + chunk_address_bias(r);
        goto done;
    }
    H5Eclear2(H5E_DEFAULT);
    space = H5Dget_space(t->dset);
    if (space < 0 || H5Dget_num_chunks(t->dset, space, &nchunks) < 0) {
        st = TSNAP_MAP_NOT_ALLOCATED;
        goto done;
    }
    if (nchunks != expect) {
        st = TSNAP_MAP_NOT_ALLOCATED;
        goto done;
    }
    for (hsize_t i = 0; i < expect; i++) {
        unsigned mask = 0;
        haddr_t addr = HADDR_UNDEF;
        hsize_t size = 0, rest = i / nsplit;
        coord[split] = (i % nsplit) * chunk[split];
        for (int a = split - 1; a >= 0; a--) {
            coord[a] = rest % t->dims[a];
            rest /= t->dims[a];
        }
        if (H5Dget_chunk_info_by_coord(t->dset, coord, &mask, &addr, &size) < 0 ||
            addr == HADDR_UNDEF) {
            st = TSNAP_MAP_NOT_ALLOCATED;
            goto done;
        }
        if (i == 0)
            first = addr;
        if (size != chunk_bytes || addr != first + i * chunk_bytes) {
            st = TSNAP_MAP_SCATTERED;
            goto done;
        }
    }
    *offset = first + chunk_address_bias(r);
done:
    tsnap__h5close(space);
    H5Eclear2(H5E_DEFAULT);
    return st;
}

static tsnap_map_status locate(tsnap_reader *r, tensor *t, uint64_t *offset)
{
    H5D_layout_t layout = H5Pget_layout(t->dcpl);
    uint64_t size;
    tsnap_map_status st;

    *offset = 0;
    if (t->nelems == 0)
        return TSNAP_MAP_EMPTY;
    if (H5Pget_nfilters(t->dcpl) > 0)
        return TSNAP_MAP_FILTERED;
    if (t->big_endian)
        return TSNAP_MAP_BYTE_ORDER;
    if (!t->canonical)
        return TSNAP_MAP_TYPE;
    if (layout == H5D_CONTIGUOUS) {
        if (H5Pget_external_count(t->dcpl) > 0)
            return TSNAP_MAP_LAYOUT;
        haddr_t addr = H5Dget_offset(t->dset);
        H5Eclear2(H5E_DEFAULT);
        if (addr == HADDR_UNDEF)
            return TSNAP_MAP_NOT_ALLOCATED;
        *offset = addr;
    } else if (layout == H5D_CHUNKED) {
        if ((st = locate_chunks(r, t, offset)) != TSNAP_MAP_OK)
            return st;
    } else {
        return TSNAP_MAP_LAYOUT;
    }
    struct stat st_file;
    if (r->fd < 0)
        return TSNAP_MAP_LAYOUT; /* another file driver: no descriptor to map through */
    if (fstat(r->fd, &st_file) < 0)
        return TSNAP_MAP_TRUNCATED;
    size = (uint64_t)st_file.st_size;
    if (size < *offset || size - *offset < t->nelems * t->itemsize)
        return TSNAP_MAP_TRUNCATED;
    return TSNAP_MAP_OK;
}

const char *tsnap_map_status_str(tsnap_map_status status)
{
    switch (status) {
    case TSNAP_MAP_OK: return "mappable";
    case TSNAP_MAP_EMPTY: return "mappable (empty)";
    case TSNAP_MAP_FILTERED: return "compressed or filtered";
    case TSNAP_MAP_BYTE_ORDER: return "stored in non-native byte order";
    case TSNAP_MAP_TYPE: return "stored type differs from the in-memory type";
    case TSNAP_MAP_NOT_ALLOCATED: return "storage not (fully) allocated";
    case TSNAP_MAP_SCATTERED: return "chunks do not lie back to back in C order";
    case TSNAP_MAP_LAYOUT: return "compact, virtual or external storage";
    case TSNAP_MAP_TRUNCATED: return "the file is shorter than the data";
    case TSNAP_MAP_VIRTUAL: return "virtual dataset over other files";
    default: return "unknown";
    }
}

static tsnap_codec codec_of(int filter)
{
    switch (filter) {
    case H5Z_FILTER_DEFLATE: return TSNAP_CODEC_DEFLATE;
    case 32015: return TSNAP_CODEC_ZSTD;
    case 32004: return TSNAP_CODEC_LZ4;
    case H5Z_FILTER_SHUFFLE:
    case TSNAP_BITSHUFFLE_FILTER_ID:
    case H5Z_FILTER_FLETCHER32: return TSNAP_CODEC_NONE;
    default: return TSNAP_CODEC_OTHER;
    }
}

/* Bytes allocated in the file.  HDF5 counts them by walking the chunk
 * index; with the implicit index every chunk of the grid is allocated at
 * full size, so the product is the same number, found in no time. */
static uint64_t stored_bytes(const tensor *t)
{
    H5D_chunk_index_t index;
    hsize_t chunk[TSNAP_MAX_NDIM + 1];
    if (H5Pget_layout(t->dcpl) == H5D_CHUNKED && H5Dget_chunk_index_type(t->dset, &index) >= 0 &&
        index == H5D_CHUNK_IDX_NONE && H5Pget_chunk(t->dcpl, t->rank, chunk) == t->rank) {
        uint64_t n = H5Tget_size(t->ftype);
        for (int i = 0; i < t->rank; i++)
            n *= (t->dims[i] + chunk[i] - 1) / chunk[i] * chunk[i];
        return n;
    }
    H5Eclear2(H5E_DEFAULT);
    return H5Dget_storage_size(t->dset);
}

/* Describes an open tensor (tsnap_reader_describe without the cache). */
static void describe_open(tsnap_reader *r, tensor *t, tsnap_tensor_info *info);

static int string_kind(tsnap_reader *r, const char *name);

int tsnap_reader_describe(tsnap_reader *r, const char *name, tsnap_tensor_info *info)
{
    tensor t;
    int err;
    ptrdiff_t i;

    tsnap__begin();
    TSNAP_CHECK_ARG(r != NULL);
    TSNAP_CHECK_ARG(info != NULL);
    memset(info, 0, sizeof *info);
    if (name && (i = find_name(r, name)) >= 0 && r->desc[i].done) {
        *info = r->desc[i].info;
        return 0;
    }
    if ((err = tensor_open(r, name, &t)) < 0) {
        if (err == TSNAP_ETYPE)
            info->string = string_kind(r, name);
        return err;
    }
    describe_open(r, &t, info);
    tensor_close(&t);
    i = find_name(r, name);
    r->desc[i].info = *info;
    r->desc[i].done = true;
    return 0;
}

int tsnap__reader_vds(tsnap_reader *r, const char *name, tsnap_tensor_info *info,
                      tsnap_vds **vds)
{
    int err = tsnap_reader_describe(r, name, info);
    *vds = err < 0 ? NULL : r->desc[find_name(r, name)].vds;
    return err;
}

static void describe_open(tsnap_reader *r, tensor *t, tsnap_tensor_info *info)
{
    char *sum = NULL;
    const char *name = t->name;
    info->dtype = t->dtype;
    info->ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++)
        info->shape[i] = (int64_t)t->dims[i];
    if (H5Pget_layout(t->dcpl) == H5D_CHUNKED) {
        hsize_t chunk[TSNAP_MAX_NDIM + 1];
        info->chunked = 1;
        if (H5Pget_chunk(t->dcpl, t->rank, chunk) == t->rank)
            for (int i = 0; i < t->ndim; i++)
                info->chunk[i] = (int64_t)chunk[i];
    }
    int nf = H5Pget_nfilters(t->dcpl);
    for (int i = 0; i < nf && i < 8; i++) {
        unsigned flags, conf;
        size_t ncd = 0;
        H5Z_filter_t id = H5Pget_filter2(t->dcpl, (unsigned)i, &flags, &ncd, NULL, 0, NULL, &conf);
        info->filters[info->nfilters++] = (int)id;
        if (id == H5Z_FILTER_SHUFFLE)
            info->shuffle = 1;
        if (id == TSNAP_BITSHUFFLE_FILTER_ID)
            info->shuffle = 2;
        if (info->codec == TSNAP_CODEC_NONE)
            info->codec = codec_of((int)id);
    }
    info->nbytes = t->nelems * t->itemsize;
    info->stored_bytes = stored_bytes(t);
    info->big_endian = t->big_endian;
    info->map_status = locate(r, t, &info->offset);
    if (H5Pget_layout(t->dcpl) == H5D_VIRTUAL)
        tsnap__vds_load(r, t, info, &r->desc[find_name(r, name)].vds);
    if (info->map_status == TSNAP_MAP_OK || info->map_status == TSNAP_MAP_EMPTY)
        info->length = info->nbytes;
    else
        info->offset = 0;
    if (tsnap__attr_read_string(t->dset, "tsnap_checksum", &sum, r->path, name) == 0 && sum &&
        strlen(sum) < sizeof info->checksum)
        snprintf(info->checksum, sizeof info->checksum, "%s", sum);
    free(sum);
    tsnap__begin(); /* a missing or odd checksum attribute is not an error here */
    H5Eclear2(H5E_DEFAULT);
}

int tsnap_reader_enum(tsnap_reader *r, const char *name, const tsnap_enum_member **members,
                      size_t *count)
{
    struct described *d;
    tensor t;
    int err;

    tsnap__begin();
    TSNAP_CHECK_ARG(r != NULL);
    TSNAP_CHECK_ARG(members != NULL && count != NULL);
    *members = NULL;
    *count = 0;
    ptrdiff_t i = name ? find_name(r, name) : -1;
    if (i >= 0 && r->desc[i].indexed) /* tsnap wrote it: no enum but its bool */
        return 0;
    if ((err = tensor_open(r, name, &t)) < 0) /* the name checked, the type too */
        return err;
    d = &r->desc[find_name(r, name)];
    if (!d->enums_done) {
        if ((err = tsnap__enum_members(t.ftype, &d->enums, &d->nenums)) < 0)
            err = err == TSNAP_ENOMEM
                      ? tsnap__err(err, r->path, name, "out of memory")
                      : tsnap__h5err(err, r->path, name, "cannot read the enum's members");
        d->enums_done = err == 0;
    }
    tensor_close(&t);
    if (err == 0) {
        *members = d->enums;
        *count = d->nenums;
    }
    return err;
}

/* ---- reading ------------------------------------------------------ */

/* The description of an open tensor: from the cache, or made now. */
static const tsnap_tensor_info *described(tsnap_reader *r, tensor *t)
{
    struct described *d = &r->desc[find_name(r, t->name)];
    if (!d->done) {
        describe_open(r, t, &d->info);
        d->done = true;
    }
    return &d->info;
}

/* A tensor as far as its description says, with no dataset open: enough
 * for selections and for reading a flat tensor. */
static void tensor_of_info(tsnap_reader *r, const char *name, const tsnap_tensor_info *info,
                           tensor *t)
{
    memset(t, 0, sizeof *t);
    t->path = r->path;
    t->name = name;
    t->dset = t->ftype = t->memtype = t->dcpl = H5I_INVALID_HID;
    t->dtype = info->dtype;
    t->itemsize = tsnap_dtype_size(info->dtype);
    t->ndim = t->rank = info->ndim;
    for (int i = 0; i < info->ndim; i++)
        t->dims[i] = (hsize_t)info->shape[i];
    t->nelems = info->nbytes / (t->itemsize ? t->itemsize : 1);
}

static bool is_flat(const tsnap_tensor_info *info) { return info->map_status == TSNAP_MAP_OK; }

/* Chunks of shape (1, ..., 1, k, whole, ..., whole): each one a range of
 * the C-order elements, in order. */
static bool chunks_are_ranges(const tensor *t)
{
    hsize_t chunk[TSNAP_MAX_NDIM + 1];
    return H5Pget_chunk(t->dcpl, t->rank, chunk) == t->rank && range_split(t, chunk) >= 0;
}

static int make_selection(tsnap_reader *r, const tensor *t, const int64_t *start,
                          const int64_t *count, const int64_t *step, selection *s)
{
    memset(s, 0, sizeof *s);
    s->nelems = 1;
    s->whole = true;
    if ((start == NULL) != (count == NULL))
        return tsnap__err(TSNAP_EINVAL, r->path, t->name,
                          "start and count must both be given or both be NULL");
    for (int i = 0; i < t->ndim; i++) {
        int64_t st = start ? start[i] : 0, n = count ? count[i] : (int64_t)t->dims[i],
                sp = step ? step[i] : 1;
        if (st < 0 || n < 0 || sp < 1)
            return tsnap__err(TSNAP_EINVAL, r->path, t->name,
                              "selection on axis %d: start %lld, count %lld, step %lld must be "
                              "non-negative and step positive",
                              i, (long long)st, (long long)n, (long long)sp);
        if (n > 0 && ((uint64_t)st >= t->dims[i] ||
                      (uint64_t)(n - 1) > (t->dims[i] - 1 - (uint64_t)st) / (uint64_t)sp))
            return tsnap__err(TSNAP_EINVAL, r->path, t->name,
                              "selection on axis %d (start %lld, count %lld, step %lld) is "
                              "outside the dimension of %llu",
                              i, (long long)st, (long long)n, (long long)sp,
                              (unsigned long long)t->dims[i]);
        s->start[i] = (hsize_t)st;
        s->count[i] = (hsize_t)n;
        s->step[i] = (hsize_t)sp;
        s->nelems *= (uint64_t)n;
        if (st != 0 || (uint64_t)n != t->dims[i] || (sp != 1 && n > 1))
            s->whole = false;
    }
    if (t->pairs) {
        s->start[t->ndim] = 0;
        s->count[t->ndim] = 2;
        s->step[t->ndim] = 1;
    }
    return 0;
}

/* Whether a selection skips elements (a step over 1 on an axis it takes
 * more than one index of). */
static bool has_steps(const selection *s, int ndim)
{
    for (int k = 0; k < ndim; k++)
        if (s->step[k] > 1 && s->count[k] > 1)
            return true;
    return false;
}

/* Reads a selection into contiguous C-order memory. */
static int read_contiguous(tsnap_reader *r, const tensor *t, const selection *s, void *dst)
{
    hid_t fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
    int err = 0;

    if (s->nelems == 0)
        return 0;
    /* Storage never written, of a dataset that says never to fill it: HDF5
     * leaves the memory as it was; h5py and tsnap give zeros there. */
    H5D_fill_time_t when = H5D_FILL_TIME_IFSET;
    if (H5Pget_fill_time(t->dcpl, &when) >= 0 && when == H5D_FILL_TIME_NEVER)
        memset(dst, 0, (size_t)(s->nelems * t->itemsize));
    if (t->rank == 0) {
        if (H5Dread(t->dset, t->memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
            err = tsnap__h5err(TSNAP_EIO, r->path, t->name, "reading failed");
        return err;
    }
    if ((fspace = H5Dget_space(t->dset)) < 0 ||
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, s->start, s->step, s->count, NULL) < 0 ||
        /* Same shape as the selection, so HDF5 moves blocks, not elements. */
        (mspace = H5Screate_simple(t->rank, s->count, NULL)) < 0 ||
        H5Dread(t->dset, t->memtype, mspace, fspace, H5P_DEFAULT, dst) < 0)
        err = tsnap__h5err(TSNAP_EIO, r->path, t->name, "reading failed");
    tsnap__h5close(mspace);
    tsnap__h5close(fspace);
    return err;
}

/* Reads a selection in blocks of whole rows of its first axis, handing
 * each block's C-order elements to `use`. */
typedef int (*block_fn)(void *ctx, const void *data, uint64_t first, uint64_t n);

static int read_blocks(tsnap_reader *r, const tensor *t, const selection *s, block_fn use,
                       void *ctx)
{
    uint64_t row = s->nelems, rows = 1, per;
    void *buf;
    int err = 0;

    if (s->nelems == 0)
        return 0;
    if (t->ndim > 0) {
        rows = s->count[0];
        row = s->nelems / rows;
    }
    per = BOUNCE_BYTES / (row * t->itemsize);
    if (per < 1)
        per = 1;
    if (per > rows)
        per = rows;
    buf = malloc((size_t)(per * row * t->itemsize));
    if (!buf)
        return tsnap__err(TSNAP_ENOMEM, r->path, t->name, "out of memory");
    for (uint64_t r0 = 0; r0 < rows && !err; r0 += per) {
        selection b = *s;
        uint64_t n = rows - r0 < per ? rows - r0 : per;
        if (t->ndim > 0) {
            b.start[0] = s->start[0] + r0 * s->step[0];
            b.count[0] = n;
        }
        b.nelems = n * row;
        if ((err = read_contiguous(r, t, &b, buf)) == 0)
            err = use(ctx, buf, r0 * row, b.nelems);
    }
    free(buf);
    return err;
}

static int scatter_block(void *ctx, const void *data, uint64_t first, uint64_t n)
{
    tsnap__scatter(ctx, first, n, data);
    return 0;
}

static int hash_block(void *ctx, const void *data, uint64_t first, uint64_t n)
{
    const tensor *t = ((void **)ctx)[1];
    (void)first;
    XXH3_64bits_update(((void **)ctx)[0], data, (size_t)(n * t->itemsize));
    return 0;
}

/* The checksum tensor `t` records (*recorded NULL: none), and a fresh hash
 * state for recomputing it. */
static int checksum_begin(tsnap_reader *r, const tensor *t, char **recorded, XXH3_state_t **hash)
{
    int err;
    *recorded = NULL;
    *hash = NULL;
    if ((err = tsnap__attr_read_string(t->dset, "tsnap_checksum", recorded, r->path, t->name)) <
            0 ||
        !*recorded)
        return err;
    if (strncmp(*recorded, TSNAP_CHECKSUM_PREFIX, strlen(TSNAP_CHECKSUM_PREFIX)) != 0)
        return tsnap__err(TSNAP_EFORMAT, r->path, t->name, "unknown checksum algorithm in '%s'",
                          *recorded);
    if (!(*hash = XXH3_createState()) || XXH3_64bits_reset(*hash) == XXH_ERROR)
        return tsnap__err(TSNAP_ENOMEM, r->path, t->name, "out of memory");
    return 0;
}

/* What a hashed pass over the data (ending in `err`) says of `recorded`:
 * data that cannot be decoded fails the check too. */
static int checksum_end(tsnap_reader *r, const char *name, XXH3_state_t *hash,
                        const char *recorded, int err)
{
    char computed[40];
    if (err < 0) {
        char cause[512];
        snprintf(cause, sizeof cause, "%s", tsnap_errmsg());
        return tsnap__err(TSNAP_ECHECKSUM, NULL, NULL, "%s (the data cannot be decoded)", cause);
    }
    tsnap__checksum_format(XXH3_64bits_digest(hash), computed, sizeof computed);
    if (strcmp(computed, recorded) != 0)
        return tsnap__err(TSNAP_ECHECKSUM, r->path, name,
                          "checksum mismatch: recorded %s, data gives %s", recorded, computed);
    return 0;
}

static int read_tensor(tsnap_reader *r, const char *name, const int64_t *start,
                       const int64_t *count, const int64_t *step, const DLTensor *dst, bool verify,
                       void *stream);
static int verify_one(tsnap_reader *r, const char *name);

#define SLAB_BYTES ((uint64_t)32 << 20)

/*
 * A read into CUDA memory (`v`): the selection `s` in slabs of at most
 * SLAB_BYTES, each a C-order range of it, read into one of two pinned
 * buffers and copied to the device while the next slab is read.
 */
static int read_to_device(tsnap_reader *r, const char *name, int ndim, const selection *s,
                          const tsnap_view *v, void *stream)
{
    tsnap_stage stage;
    int64_t start[TSNAP_MAX_NDIM], count[TSNAP_MAX_NDIM], step[TSNAP_MAX_NDIM];
    uint64_t inner = 1, outer = 1, rows = 1;
    int a = ndim - 1, err;

    /* Axis `a`: the first whose inner block fits in a slab. */
    for (int k = 0; k < ndim; k++)
        step[k] = (int64_t)s->step[k];
    while (a >= 0 && inner * s->count[a] * v->itemsize <= SLAB_BYTES) {
        inner *= s->count[a];
        a--;
    }
    if (a >= 0) {
        rows = SLAB_BYTES / (inner * v->itemsize);
        rows = rows < s->count[a] ? rows : s->count[a];
        for (int k = 0; k < a; k++)
            outer *= s->count[k];
    } else {
        a = 0; /* it all fits: one slab */
        rows = ndim ? s->count[0] : 1;
        inner = ndim ? inner / s->count[0] : 1;
    }
    uint64_t per_row = ndim ? s->count[a] : 1;
    uint64_t slabs_per_outer = (per_row + rows - 1) / rows;
    size_t bytes = (size_t)(rows * inner * v->itemsize);
    if ((err = tsnap__stage_open(&stage, v->device, stream, 2, bytes, !v->contiguous, r->path,
                                 name)) < 0)
        return err;
    DLTensor host = tsnap__host_tensor(NULL, v->dtype, ndim, count);
    for (uint64_t i = 0; i < outer * slabs_per_outer && err == 0; i++) {
        unsigned slot = (unsigned)(i % 2);
        uint64_t o = i / slabs_per_outer, r0 = (i % slabs_per_outer) * rows;
        uint64_t nr = per_row - r0 < rows ? per_row - r0 : rows, rest = o;
        for (int k = ndim - 1; k >= 0; k--) {
            start[k] = (int64_t)s->start[k];
            count[k] = (int64_t)s->count[k];
            if (k < a) { /* one index of the outer axes */
                start[k] += (int64_t)(rest % s->count[k]) * step[k];
                count[k] = 1;
                rest /= s->count[k];
            }
        }
        if (ndim) {
            start[a] += (int64_t)r0 * step[a];
            count[a] = (int64_t)nr;
        }
        host.data = stage.slot[slot].host;
        if ((err = tsnap__stage_wait(&stage, slot)) < 0 ||
            (err = read_tensor(r, name, ndim ? start : NULL, ndim ? count : NULL,
                               ndim ? step : NULL, &host, false, NULL)) < 0)
            break;
        err = tsnap__stage_store(&stage, slot, v, (o * per_row + r0) * inner, nr * inner);
    }
    for (unsigned k = 0; k < 2 && err == 0; k++)
        err = tsnap__stage_wait(&stage, k);
    tsnap__stage_close(&stage);
    return err;
}

/* One pass over selection `s` of `t`: into `dst` and into `hash`, either
 * of which may be NULL; both in one read of the data where the layout
 * allows it. */
static int data_pass(tsnap_reader *r, tensor *t, const selection *s,
                     const tsnap_tensor_info *info, const tsnap_view *dst, XXH3_state_t *hash,
                     int threads)
{
    int err = 0;
    if (s->whole && is_flat(info))
        return tsnap__read_flat(t, r->fd, info->offset, dst, hash, threads);
    if ((err = tsnap__filters_check(t)) < 0) /* a plug-in that is missing */
        return err;
    if (tsnap__chunks_decodable(t) && (!hash || chunks_are_ranges(t)))
        return tsnap__read_chunks(t, s, dst, hash, threads);
    if (dst)
        err = dst->contiguous ? read_contiguous(r, t, s, dst->base)
                              : read_blocks(r, t, s, scatter_block, (void *)dst);
    if (hash && err == 0) { /* chunks that are not ranges: a pass in C order */
        void *ctx[2] = {hash, t};
        err = read_blocks(r, t, s, hash_block, ctx);
    }
    return err;
}

/* Reads a selection into `dst`; with `verify` (a whole read), also checks
 * the recorded checksum on the way, in the same pass over the data where
 * the layout allows it. */
static int read_tensor(tsnap_reader *r, const char *name, const int64_t *start,
                       const int64_t *count, const int64_t *step, const DLTensor *dst, bool verify,
                       void *stream)
{
    tensor t;
    selection s;
    tsnap_view v;
    const tsnap_tensor_info *info = NULL;
    char *recorded = NULL;
    XXH3_state_t *hash = NULL;
    ptrdiff_t i;
    int err;

    /* A flat tensor described before is read with no dataset open, and so
     * is a virtual one (opening it decodes every mapping: 66 ms for 10,000
     * with HDF5 1.10). */
    if (!verify && name && (i = find_name(r, name)) >= 0 && r->desc[i].done &&
        (is_flat(&r->desc[i].info) || r->desc[i].info.map_status == TSNAP_MAP_VIRTUAL)) {
        info = &r->desc[i].info;
        tensor_of_info(r, name, info, &t);
    } else if ((err = tensor_open(r, name, &t)) < 0) {
        return err;
    }
    if ((err = make_selection(r, &t, start, count, step, &s)) < 0 ||
        (err = tsnap__view_init(&v, dst, r->path, name)) < 0 ||
        (err = tsnap__cuda_order_host(dst, stream, r->path, name)) < 0)
        goto done;
    if (v.dtype != t.dtype) {
        err = tsnap__err(TSNAP_EINVAL, r->path, name,
                         "destination has dtype %s; the tensor is %s", tsnap_dtype_name(v.dtype),
                         tsnap_dtype_name(t.dtype));
        goto done;
    }
    bool same = v.ndim == t.ndim;
    for (int k = 0; same && k < t.ndim; k++)
        same = (uint64_t)v.shape[k] == s.count[k];
    if (!same) {
        err = tsnap__err(TSNAP_EINVAL, r->path, name,
                         "destination shape does not match the selection");
        goto done;
    }
    if (v.device >= 0) { /* CUDA memory: checked first, then read in slabs */
        if ((err = tsnap__cuda_check(v.device, r->path, name)) < 0 ||
            (verify && (err = verify_one(r, name)) < 0))
            goto done;
        if (s.nelems > 0)
            err = read_to_device(r, name, t.ndim, &s, &v, stream);
        goto done;
    }
    if (verify && (err = checksum_begin(r, &t, &recorded, &hash)) < 0)
        goto done;
    if (s.nelems == 0)
        goto checked;
    /* Threads write disjoint parts of the destination, unless it repeats
     * elements (a zero stride): then one thread, so the last one wins. */
    int threads = tsnap_threads();
    for (int k = 0; k < v.ndim; k++)
        if (v.strides[k] == 0 && v.shape[k] > 1)
            threads = 1;
    if (!info)
        info = described(r, &t);
    if (info->map_status == TSNAP_MAP_VIRTUAL) { /* block by block from the part files */
        err = tsnap__vds_read(r, &t, r->desc[find_name(r, name)].vds, &s, &v, verify);
        goto done;
    }
    if (t.dset >= 0 && H5Pget_layout(t.dcpl) == H5D_VIRTUAL && /* read by HDF5 */
        (err = tsnap__vds_check_sources(r, &t)) < 0)
        goto done;
    /* Only a flat whole read goes without the dataset open. */
    if (!(s.whole && is_flat(info)) && t.dset < 0 &&
        ((err = tensor_open(r, name, &t)) < 0 ||
         (err = make_selection(r, &t, start, count, step, &s)) < 0))
        goto done;
    /* Steps through chunks that HDF5 reads: with a chunk cache. */
    if (t.dset >= 0 && has_steps(&s, t.ndim) && H5Pget_layout(t.dcpl) == H5D_CHUNKED &&
        !tsnap__chunks_decodable(&t)) {
        tensor_close(&t);
        if ((err = tensor_open_for(r, name, &t, true)) < 0 ||
            (err = make_selection(r, &t, start, count, step, &s)) < 0)
            goto done;
    }
    err = data_pass(r, &t, &s, info, &v, hash, threads);
checked:
    if (hash)
        err = checksum_end(r, name, hash, recorded, err);
done:
    XXH3_freeState(hash);
    free(recorded);
    tensor_close(&t);
    return err;
}

int tsnap_reader_read(tsnap_reader *r, const char *name, const int64_t *start,
                      const int64_t *count, const int64_t *step, const DLTensor *dst)
{
    return tsnap_reader_read_stream(r, name, start, count, step, dst, NULL);
}

int tsnap_reader_read_stream(tsnap_reader *r, const char *name, const int64_t *start,
                             const int64_t *count, const int64_t *step, const DLTensor *dst,
                             void *cuda_stream)
{
    tsnap__begin();
    TSNAP_CHECK_ARG(r != NULL);
    return read_tensor(r, name, start, count, step, dst, false, cuda_stream);
}

int tsnap_reader_read_verified(tsnap_reader *r, const char *name, const DLTensor *dst)
{
    tsnap__begin();
    TSNAP_CHECK_ARG(r != NULL);
    return read_tensor(r, name, NULL, NULL, NULL, dst, true, NULL);
}

/* ---- verification ------------------------------------------------- */

static int verify_one(tsnap_reader *r, const char *name)
{
    tensor t;
    selection s;
    char *recorded = NULL;
    XXH3_state_t *hash = NULL;
    int err;

    if ((err = tensor_open(r, name, &t)) < 0)
        return err;
    if (described(r, &t)->map_status == TSNAP_MAP_VIRTUAL) {
        err = tsnap__vds_verify(r, &t, r->desc[find_name(r, name)].vds);
        goto done;
    }
    if ((err = checksum_begin(r, &t, &recorded, &hash)) < 0 || !recorded ||
        (err = make_selection(r, &t, NULL, NULL, NULL, &s)) < 0)
        goto done;
    if (s.nelems > 0)
        err = data_pass(r, &t, &s, described(r, &t), NULL, hash, tsnap_threads());
    err = checksum_end(r, name, hash, recorded, err);
done:
    XXH3_freeState(hash);
    free(recorded);
    tensor_close(&t);
    return err;
}

int tsnap_reader_verify(tsnap_reader *r, const char *name)
{
    int err = 0;
    tsnap__begin();
    TSNAP_CHECK_ARG(r != NULL);
    if (name)
        return verify_one(r, name);
    for (size_t i = 0; i < r->count && !err; i++) {
        err = verify_one(r, r->names[i]);
        if (err == TSNAP_ETYPE) { /* a foreign dataset tsnap cannot read has no checksum */
            err = 0;
            tsnap__begin();
        }
    }
    return err;
}

/* ---- attributes --------------------------------------------------- */

static int attr_set(tsnap_reader *r, const char *name, tsnap_attr_set **out)
{
    const char *key = name ? name : "";
    struct attr_cache_entry *grown, *e;
    hid_t obj;
    int err;

    for (size_t i = 0; i < r->nattrs; i++) {
        if (strcmp(r->attrs[i].name, key) == 0) {
            *out = &r->attrs[i].set;
            return 0;
        }
    }
    if (*key && !has_name(r, key) && !has_group(r, key))
        return tsnap__err(TSNAP_ENOTFOUND, r->path, key, "no such tensor");
    grown = realloc(r->attrs, (r->nattrs + 1) * sizeof *grown);
    if (!grown)
        return tsnap__err(TSNAP_ENOMEM, r->path, key, "out of memory");
    r->attrs = grown;
    e = &r->attrs[r->nattrs];
    if (!(e->name = strdup(key)))
        return tsnap__err(TSNAP_ENOMEM, r->path, key, "out of memory");
    obj = *key ? H5Oopen(r->file, key, H5P_DEFAULT) : r->file;
    if (obj < 0) {
        free(e->name);
        return tsnap__h5err(TSNAP_EFORMAT, r->path, key, "cannot open");
    }
    err = tsnap__attr_set_load(&e->set, obj, r->path, *key ? key : NULL);
    if (obj != r->file)
        H5Oclose(obj);
    if (err < 0) {
        free(e->name);
        return err;
    }
    for (size_t i = 0; !*key && i < e->set.count; i++) { /* the index is not an attribute */
        if (strcmp(e->set.attrs[i].key, "tsnap_index") == 0) {
            memmove(&e->set.attrs[i], &e->set.attrs[i + 1],
                    (e->set.count - i - 1) * sizeof *e->set.attrs);
            e->set.count--;
            break;
        }
    }
    r->nattrs++;
    *out = &e->set;
    return 0;
}

int tsnap_reader_attr_count(tsnap_reader *r, const char *name, size_t *count)
{
    tsnap_attr_set *set;
    int err;
    tsnap__begin();
    TSNAP_CHECK_ARG(r != NULL);
    TSNAP_CHECK_ARG(count != NULL);
    *count = 0;
    if ((err = attr_set(r, name, &set)) < 0)
        return err;
    *count = set->count;
    return 0;
}

int tsnap_reader_attr(tsnap_reader *r, const char *name, size_t index, tsnap_attr *attr)
{
    tsnap_attr_set *set;
    int err;
    tsnap__begin();
    TSNAP_CHECK_ARG(r != NULL);
    TSNAP_CHECK_ARG(attr != NULL);
    if ((err = attr_set(r, name, &set)) < 0)
        return err;
    if (index >= set->count)
        return tsnap__err(TSNAP_EINVAL, r->path, name, "attribute index %zu out of range (%zu)",
                          index, set->count);
    *attr = set->attrs[index];
    return 0;
}

int tsnap_reader_attr_find(tsnap_reader *r, const char *name, const char *key, tsnap_attr *attr)
{
    tsnap_attr_set *set;
    int err;
    tsnap__begin();
    TSNAP_CHECK_ARG(r != NULL);
    TSNAP_CHECK_ARG(key != NULL);
    TSNAP_CHECK_ARG(attr != NULL);
    if ((err = attr_set(r, name, &set)) < 0)
        return err;
    for (size_t i = 0; i < set->count; i++) {
        if (strcmp(set->attrs[i].key, key) == 0) {
            *attr = set->attrs[i];
            return 0;
        }
    }
    return tsnap__err(TSNAP_ENOTFOUND, r->path, name, "no attribute '%s'", key);
}

/* ---- strings and groups ------------------------------------------- */

static herr_t visit_group(hid_t obj, const char *name, const H5O_info_t *info, void *data)
{
    (void)obj;
    if (info->type != H5O_TYPE_GROUP || strcmp(name, ".") == 0)
        return 0;
    return collect_group(data, name);
}

/* Every group, empty ones included (those above a tensor may be known
 * already), walked when first asked for: a nested load asks, most
 * readers never do.  A failure lists none and is not reported: the
 * datasets are what a reader is for. */
static int list_groups(tsnap_reader *r)
{
    if (r->groups_listed)
        return 0;
    r->groups_listed = true;
    for (size_t i = 0; i < r->ngroups; i++)
        free(r->groups[i]);
    r->ngroups = 0;
    if (H5Ovisit2(r->file, H5_INDEX_NAME, H5_ITER_INC, visit_group, r, H5O_INFO_BASIC) < 0) {
        for (size_t i = 0; i < r->ngroups; i++)
            free(r->groups[i]);
        r->ngroups = 0;
        H5Eclear2(H5E_DEFAULT);
        return -1;
    }
    if (r->ngroups > 1)
        qsort(r->groups, r->ngroups, sizeof *r->groups, cmp_names);
    return 0;
}

/* The reader is const to its callers; the list is made on first use. */
size_t tsnap_reader_group_count(const tsnap_reader *r)
{
    return r && list_groups((tsnap_reader *)r) == 0 ? r->ngroups : 0;
}

const char *tsnap_reader_group_name(const tsnap_reader *r, size_t index)
{
    return index < tsnap_reader_group_count(r) ? r->groups[index] : NULL;
}

/* Opens dataset `name` as a single string: its dataset and file type.
 * TSNAP_ETYPE (with a message) for anything else. */
static int string_open(tsnap_reader *r, const char *name, hid_t *dset, hid_t *type)
{
    hid_t space = H5I_INVALID_HID;
    int err = 0;

    *type = H5I_INVALID_HID;
    if (!has_name(r, name))
        return tsnap__err(TSNAP_ENOTFOUND, r->path, name, "no such dataset");
    if ((*dset = H5Dopen2(r->file, name, H5P_DEFAULT)) < 0 ||
        (*type = H5Dget_type(*dset)) < 0 || (space = H5Dget_space(*dset)) < 0) {
        err = tsnap__h5err(TSNAP_EFORMAT, r->path, name, "cannot open the dataset");
        goto done;
    }
    if (H5Tget_class(*type) != H5T_STRING)
        err = tsnap__err(TSNAP_ETYPE, r->path, name, "not a string");
    else if (H5Sget_simple_extent_type(space) == H5S_NULL ||
             H5Sget_simple_extent_npoints(space) != 1)
        err = tsnap__err(TSNAP_ETYPE, r->path, name,
                         "an array of strings (tsnap reads single strings only)");
done:
    tsnap__h5close(space);
    if (err < 0) {
        tsnap__h5close(*type);
        tsnap__h5close(*dset);
        *type = *dset = H5I_INVALID_HID;
    }
    H5Eclear2(H5E_DEFAULT);
    return err;
}

static tsnap_string_kind cset_kind(hid_t type)
{
    return H5Tget_cset(type) == H5T_CSET_UTF8 ? TSNAP_STRING_UTF8 : TSNAP_STRING_BYTES;
}

/* The kind of a dataset describe refused: a single string, or none.
 * Leaves the thread's message (describe's) as it was. */
static int string_kind(tsnap_reader *r, const char *name)
{
    char msg[1024];
    hid_t dset, type;
    int kind = TSNAP_STRING_NONE;

    snprintf(msg, sizeof msg, "%s", tsnap_errmsg());
    if (string_open(r, name, &dset, &type) == 0) {
        kind = (int)cset_kind(type);
        tsnap__h5close(type);
        tsnap__h5close(dset);
    }
    if (kind)
        tsnap__err(TSNAP_ETYPE, r->path, name, "a single string (%s), not a tensor",
                   kind == TSNAP_STRING_UTF8 ? "text" : "bytes");
    else
        tsnap__err(TSNAP_ETYPE, NULL, NULL, "%s", msg);
    return kind;
}

int tsnap_reader_read_string(tsnap_reader *r, const char *name, char *buf, size_t cap,
                             size_t *len, tsnap_string_kind *kind)
{
    hid_t dset = H5I_INVALID_HID, type = H5I_INVALID_HID, mem = H5I_INVALID_HID;
    char *text = NULL, *fixed = NULL;
    const char *bytes = "";
    size_t n = 0;
    int err;

    tsnap__begin();
    TSNAP_CHECK_ARG(r != NULL);
    TSNAP_CHECK_ARG(name != NULL);
    TSNAP_CHECK_ARG(len != NULL);
    TSNAP_CHECK_ARG(buf != NULL || cap == 0);
    if ((err = string_open(r, name, &dset, &type)) < 0)
        return err;
    if ((mem = H5Tcopy(type)) < 0) {
        err = tsnap__h5err(TSNAP_ENOMEM, r->path, name, "cannot copy the string type");
        goto done;
    }
    if (H5Tis_variable_str(type) > 0) {
        H5D_space_status_t status = H5D_SPACE_STATUS_ERROR;
        /* Never written, it would read as the fill value, which HDF5 1.10
         * converts through the global heap: a damaged one crashes it.  Read
         * as empty, h5py's default fill, without asking. */
        if ((H5Dget_space_status(dset, &status) < 0 ||
             status != H5D_SPACE_STATUS_NOT_ALLOCATED) &&
            H5Dread(dset, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, &text) < 0) {
            err = tsnap__h5err(TSNAP_EIO, r->path, name, "cannot read the string");
            goto done;
        }
        bytes = text ? text : "";
        n = strlen(bytes);
    } else {
        size_t size = H5Tget_size(type);
        hsize_t stored = H5Dget_storage_size(dset);
        /* A scalar dataset is never chunked, so never compressed: stored
         * bytes that are not the type's size mean a damaged type, not one
         * to allocate (none stored: never written, it reads as fill). */
        if (size == 0 || (stored != 0 && stored != size)) {
            err = tsnap__err(TSNAP_EFORMAT, r->path, name,
                             "a fixed-length string of %zu bytes stored in %llu", size,
                             (unsigned long long)stored);
            goto done;
        }
        if (!(fixed = malloc(size))) {
            err = tsnap__err(TSNAP_ENOMEM, r->path, name, "out of memory");
            goto done;
        }
        if (H5Dread(dset, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, fixed) < 0) {
            err = tsnap__h5err(TSNAP_EIO, r->path, name, "cannot read the string");
            goto done;
        }
        bytes = fixed;
        n = size;
        if (H5Tget_strpad(type) == H5T_STR_NULLTERM) {
            const char *end = memchr(fixed, '\0', size);
            n = end ? (size_t)(end - fixed) : size;
        }
    }
    *len = n;
    if (kind)
        *kind = cset_kind(type);
    if (cap)
        memcpy(buf, bytes, n < cap ? n : cap);
done:
    if (text)
        H5free_memory(text);
    free(fixed);
    tsnap__h5close(mem);
    tsnap__h5close(type);
    tsnap__h5close(dset);
    return err;
}

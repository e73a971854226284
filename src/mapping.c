/*
 * mapping.c - a tensor's bytes mapped read-only from its file, no copy.
 *
 * Only what tsnap_reader_describe has found to lie flat in the file and
 * within its size is mapped, so touching the mapping cannot fault on a
 * truncated file (unless the file shrinks later, as with any mmap).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

struct tsnap_mapping {
    void *base; /* what mmap returned */
    size_t len;
    DLTensor tensor;
    int64_t shape[TSNAP_MAX_NDIM];
};

/* DLTensor.data of an empty mapping: valid, never dereferenced. */
static const char empty_data[16];

/* A virtual tensor whose one block is all of it maps that block from its
 * part file; one of several blocks cannot be mapped as the tensor. */
static int map_virtual(tsnap_mapping **out, tsnap_reader *r, const char *name,
                       const tsnap_tensor_info *info)
{
    tsnap_part p;
    tsnap_reader *part = NULL;
    bool whole = info->nparts == 1;
    int err;

    if (!whole)
        return tsnap__err(TSNAP_ENOTMAPPABLE, tsnap__reader_path(r), name,
                          "cannot map: its blocks lie in %zu part files (map a block of one)",
                          info->nparts);
    if ((err = tsnap_reader_part(r, name, 0, &p)) < 0)
        return err;
    for (int d = 0; d < info->ndim; d++)
        whole = whole && p.offset[d] == 0 && p.shape[d] == info->shape[d];
    if (!whole)
        return tsnap__err(TSNAP_ENOTMAPPABLE, tsnap__reader_path(r), name,
                          "cannot map: its one block does not cover it");
    tsnap_tensor_info pi;
    const char *dataset = p.dataset + strspn(p.dataset, "/");
    if ((err = tsnap_reader_open(&part, p.path)) == 0 &&
        (err = tsnap_reader_describe(part, dataset, &pi)) == 0 && pi.nparts > 0)
        err = tsnap__err(TSNAP_ENOTMAPPABLE, p.path, dataset, "cannot map: its block is itself "
                         "a virtual dataset");
    if (err == 0 && (err = tsnap_mapping_create(out, part, dataset)) == 0) {
        const DLTensor *t = tsnap_mapping_tensor(*out);
        tsnap_dtype dtype = TSNAP_DTYPE_INVALID;
        bool same = tsnap_dtype_from_dlpack(&dtype, t->dtype) == 0 && dtype == info->dtype &&
                    t->ndim == info->ndim;
        for (int d = 0; same && d < info->ndim; d++)
            same = t->shape[d] == info->shape[d];
        if (!same) {
            tsnap_mapping_free(*out);
            *out = NULL;
            err = tsnap__err(TSNAP_EFORMAT, p.path, p.dataset,
                             "the dataset is not the block: another dtype or shape");
        }
    }
    if (err < 0) {
        char cause[768];
        snprintf(cause, sizeof cause, "%s", tsnap_errmsg());
        err = tsnap__err(err, tsnap__reader_path(r), name, "its block (%s): %s", p.file, cause);
    }
    tsnap_reader_free(part);
    return err;
}

int tsnap_mapping_create(tsnap_mapping **out, tsnap_reader *r, const char *name)
{
    tsnap_tensor_info info;
    tsnap_mapping *m;
    const char *path;
    int err, fd;

    tsnap__begin();
    TSNAP_CHECK_ARG(out != NULL);
    *out = NULL;
    TSNAP_CHECK_ARG(r != NULL);
    if ((err = tsnap_reader_describe(r, name, &info)) < 0)
        return err;
    path = tsnap__reader_path(r);
    if (info.map_status == TSNAP_MAP_VIRTUAL)
        return map_virtual(out, r, name, &info);
    if (info.map_status != TSNAP_MAP_OK && info.map_status != TSNAP_MAP_EMPTY)
        return tsnap__err(TSNAP_ENOTMAPPABLE, path, name, "cannot map: %s",
                          tsnap_map_status_str(info.map_status));
    m = calloc(1, sizeof *m);
    if (!m)
        return tsnap__err(TSNAP_ENOMEM, path, name, "out of memory");
    memcpy(m->shape, info.shape, sizeof m->shape);
    m->tensor.ndim = info.ndim;
    m->tensor.shape = m->shape;
    m->tensor.device.device_type = kDLCPU;
    tsnap_dtype_to_dlpack(&m->tensor.dtype, info.dtype);
    m->tensor.data = (void *)empty_data;
    if (info.length == 0) {
        *out = m;
        return 0;
    }

    long page = sysconf(_SC_PAGESIZE);
    uint64_t start = info.offset - info.offset % (uint64_t)page;
    /* The reader's own descriptor of the file (describe found the bytes
     * through it); the mapping stays when the reader closes it. */
    fd = tsnap__reader_fd(r);
    m->len = (size_t)(info.offset - start + info.length);
    m->base = mmap(NULL, m->len, PROT_READ, MAP_SHARED, fd, (off_t)start);
    if (m->base == MAP_FAILED) {
        err = tsnap__err(errno == ENOMEM ? TSNAP_ENOMEM : TSNAP_EIO, path, name,
                         "mmap failed: %s", strerror(errno));
        free(m);
        return err;
    }
    m->tensor.data = (char *)m->base + (info.offset - start);
    *out = m;
    return 0;
}

const DLTensor *tsnap_mapping_tensor(const tsnap_mapping *m) { return m ? &m->tensor : NULL; }

void tsnap_mapping_free(tsnap_mapping *m)
{
    if (!m)
        return;
    if (m->base && m->len)
        munmap(m->base, m->len);
    free(m);
}

/*
 * vfd.c - the file driver of tsnap's writers: HDF5's sec2 driver, passed
 * through, except that a file being discarded takes every further write,
 * flush and truncate as done.
 *
 * Why: when the flush that H5Fclose does fails (a full disk, a file-size
 * limit), HDF5 1.10.8 frees the file but keeps its ID, and its exit
 * handler later closes that ID again and crashes the process (fixed in
 * HDF5 1.14.1, HDFGroup/hdf5#2496).  A writer that fails throws its
 * temporary file away, so nothing it would write matters: doomed, the
 * file closes cleanly and the process lives on.
 *
 * The inner file is an ordinary sec2 file opened through HDF5's public
 * H5FD* calls, so the bytes on disk are exactly sec2's.  When one of them
 * fails, the errno it left is kept (tsnap__driver_errno), so that the
 * failure can be told in the system's words (errors.c).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

#define DOOM_PROPERTY "tsnap.discard"

/* A driver call's result `rc`, keeping the errno a failure left. */
static herr_t kept(herr_t rc)
{
    if (rc < 0)
        tsnap__driver_errno(errno);
    return rc;
}

typedef struct keep {
    H5FD_t pub; /* first: HDF5 fills it */
    H5FD_t *inner;
    bool doomed;
} keep;

static H5FD_t *k_open(const char *name, unsigned flags, hid_t fapl, haddr_t maxaddr)
{
    hid_t inner_fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5FD_t *inner = NULL;
    keep *k;
    (void)fapl;
    if (inner_fapl >= 0 && H5Pset_fapl_sec2(inner_fapl) >= 0) {
        errno = 0;
        inner = H5FDopen(name, flags, inner_fapl, maxaddr);
        if (!inner)
            tsnap__driver_errno(errno);
    }
    if (inner_fapl >= 0)
        H5Pclose(inner_fapl);
    if (!inner)
        return NULL;
    if (!(k = calloc(1, sizeof *k))) {
        H5FDclose(inner);
        return NULL;
    }
    k->inner = inner;
    return &k->pub;
}

static herr_t k_close(H5FD_t *f)
{
    keep *k = (keep *)f;
    bool doomed = k->doomed;
    herr_t rc = kept(H5FDclose(k->inner));
    free(k);
    return doomed ? 0 : rc;
}

static int k_cmp(const H5FD_t *a, const H5FD_t *b)
{
    return H5FDcmp(((const keep *)a)->inner, ((const keep *)b)->inner);
}

/* HDF5 also asks with no file, for the driver's features: sec2's. */
static herr_t k_query(const H5FD_t *f, unsigned long *flags)
{
    if (!f)
        return H5FDdriver_query(H5FD_SEC2, flags);
    return H5FDquery(((const keep *)f)->inner, flags) < 0 ? -1 : 0;
}

static haddr_t k_get_eoa(const H5FD_t *f, H5FD_mem_t type)
{
    return H5FDget_eoa(((const keep *)f)->inner, type);
}

static herr_t k_set_eoa(H5FD_t *f, H5FD_mem_t type, haddr_t addr)
{
    return H5FDset_eoa(((keep *)f)->inner, type, addr);
}

static haddr_t k_get_eof(const H5FD_t *f, H5FD_mem_t type)
{
    return H5FDget_eof(((const keep *)f)->inner, type);
}

/* Also how a writer dooms its file: a file-access list that carries
 * DOOM_PROPERTY (tsnap__vfd_doom). */
static herr_t k_get_handle(H5FD_t *f, hid_t fapl, void **handle)
{
    keep *k = (keep *)f;
    if (fapl >= 0 && fapl != H5P_DEFAULT && H5Pexist(fapl, DOOM_PROPERTY) > 0)
        k->doomed = true;
    return H5FDget_vfd_handle(k->inner, H5P_DEFAULT, handle);
}

static herr_t k_read(H5FD_t *f, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size,
                     void *buf)
{
    return kept(H5FDread(((keep *)f)->inner, type, dxpl, addr, size, buf));
}

static herr_t k_write(H5FD_t *f, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size,
                      const void *buf)
{
    keep *k = (keep *)f;
    return k->doomed ? 0 : kept(H5FDwrite(k->inner, type, dxpl, addr, size, buf));
}

static herr_t k_flush(H5FD_t *f, hid_t dxpl, hbool_t closing)
{
    keep *k = (keep *)f;
    return k->doomed ? 0 : kept(H5FDflush(k->inner, dxpl, closing));
}

static herr_t k_truncate(H5FD_t *f, hid_t dxpl, hbool_t closing)
{
    keep *k = (keep *)f;
    return k->doomed ? 0 : kept(H5FDtruncate(k->inner, dxpl, closing));
}

static herr_t k_lock(H5FD_t *f, hbool_t rw) { return H5FDlock(((keep *)f)->inner, rw); }

static herr_t k_unlock(H5FD_t *f) { return H5FDunlock(((keep *)f)->inner); }

static const H5FD_class_t KEEP = {
    "tsnap-sec2",
    ((haddr_t)1 << (8 * sizeof(off_t) - 1)) - 1,
    H5F_CLOSE_WEAK,
    NULL,                 /* terminate */
    NULL, NULL, NULL,     /* superblock: none of its own */
    0, NULL, NULL, NULL,  /* fapl */
    0, NULL, NULL,        /* dxpl */
    k_open, k_close, k_cmp, k_query,
    NULL,                 /* get_type_map */
    NULL, NULL,           /* alloc, free: HDF5's own */
    k_get_eoa, k_set_eoa, k_get_eof, k_get_handle, k_read, k_write, k_flush, k_truncate,
    k_lock, k_unlock,
    H5FD_FLMAP_DICHOTOMY,
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static hid_t driver = H5I_INVALID_HID;

static void register_driver(void) { driver = H5FDregister(&KEEP); }

hid_t tsnap__vfd_id(void)
{
    pthread_once(&once, register_driver);
    return driver;
}

int tsnap__vfd_set(hid_t fapl)
{
    hid_t id = tsnap__vfd_id();
    return id >= 0 && H5Pset_driver(fapl, id, NULL) >= 0 ? 0 : -1;
}

void tsnap__vfd_doom(hid_t file)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    int one = 1;
    void *handle = NULL;
    if (fapl >= 0 && H5Pinsert2(fapl, DOOM_PROPERTY, sizeof one, &one, NULL, NULL, NULL, NULL,
                                NULL, NULL) >= 0)
        H5Fget_vfd_handle(file, fapl, &handle);
    if (fapl >= 0)
        H5Pclose(fapl);
    H5Eclear2(H5E_DEFAULT);
}

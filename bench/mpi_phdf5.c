/*
 * mpi_phdf5.c - parallel HDF5, the peer of tsnap's distributed snapshots
 * in bench/mpi.py: every rank of an MPI job writes its row block of one
 * global float32 array collectively (H5FD_MPIO, H5FD_MPIO_COLLECTIVE)
 * into one dataset of one shared file, then reads its block back
 * collectively, as a restart on the same ranks would.
 *
 *   mpirun -n P tsnap_mpi_phdf5 DIR ROWS COLS SEED LAYOUT... [--fsync] [--keep]
 *
 * LAYOUT is "chunked" (chunks of whole rows, about 4 MiB, as tsnap's) or
 * "contiguous"; each one given is measured in turn into DIR/phdf5-LAYOUT.h5.
 * --fsync makes each save durable (rank 0 fsyncs the file after the
 * collective close, as np.save + fsync and tsnap's durable save do);
 * --keep leaves the files (else each is deleted once measured).  Rank 0
 * prints one JSON object per layout on stdout:
 *   {"layout": ..., "ranks": P, "save_s": ..., "read_s": ..., "ok": true|false}
 * save_s is from the barrier before H5Fcreate to the barrier after the
 * close (and the fsync); read_s from the barrier before H5Fopen to the
 * barrier after the close, into a freshly allocated buffer (nothing
 * prefaulted); ok says every rank read back what it wrote.
 *
 * Element (i, j) of the array is splitmix64(SEED + i * COLS + j) >> 40,
 * times 2^-24 (uniform in [0, 1), exact in float32): bench/mpi.py fills
 * tsnap's and np.save's blocks with the same values, so every system
 * writes the same global array.  Row blocks as tsnap_mpi's users split
 * them: rank r holds rows [r*ROWS/P + min(r, ROWS%P), ...), the first
 * ROWS%P ranks one row more.
 *
 * Built against Debian's parallel HDF5 (pkg-config hdf5-openmpi), never in
 * a process that loads tsnap's serial HDF5.  Exit 0 when every layout ran
 * and round-tripped, 1 otherwise (the message on stderr), 2 for usage.
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>
#include <mpi.h>

#define CHUNK_BYTES (4u << 20)

static int rank, nranks;

static uint64_t splitmix64(uint64_t x)
{
    uint64_t z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Rank r's rows: [*first, *first + *count). */
static void row_block(int64_t rows, int r, int p, int64_t *first, int64_t *count)
{
    int64_t base = rows / p, extra = rows % p;
    *first = r * base + (r < extra ? r : extra);
    *count = base + (r < extra);
}

static void fill(float *block, int64_t first, int64_t count, int64_t cols, uint64_t seed)
{
    for (int64_t i = 0; i < count; i++)
        for (int64_t j = 0; j < cols; j++) {
            uint64_t k = (uint64_t)((first + i) * cols + j);
            block[i * cols + j] = (float)(splitmix64(seed + k) >> 40) * (1.0f / 16777216.0f);
        }
}

/* Says what failed, on this rank; returns -1. */
static int failed(const char *path, const char *what)
{
    fprintf(stderr, "tsnap_mpi_phdf5: rank %d: %s: %s failed\n", rank, path, what);
    return -1;
}

/* The file access list of every open: the MPI-IO driver on `comm`. */
static hid_t mpio_fapl(MPI_Comm comm)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL) < 0) {
        H5Pclose(fapl);
        fapl = -1;
    }
    return fapl;
}

/* This rank's block as a selection of the file's dataspace and a memory
 * space of its own; both closed by the caller. */
static int select_block(hid_t dset, int64_t first, int64_t count, int64_t cols, hid_t *fspace,
                        hid_t *mspace)
{
    hsize_t start[2] = {(hsize_t)first, 0}, n[2] = {(hsize_t)count, (hsize_t)cols};
    *mspace = H5Screate_simple(2, n, NULL);
    *fspace = H5Dget_space(dset);
    if (*mspace < 0 || *fspace < 0)
        return -1;
    /* a rank with no rows still takes part in the collective call */
    if (count == 0)
        return H5Sselect_none(*fspace) < 0 || H5Sselect_none(*mspace) < 0 ? -1 : 0;
    return H5Sselect_hyperslab(*fspace, H5S_SELECT_SET, start, NULL, n, NULL) < 0 ? -1 : 0;
}

/* The HDF5 objects of one save or load, closed together (-1: none). */
typedef struct handles {
    hid_t fapl, file, space, dcpl, dxpl, dset, fspace, mspace;
} handles;

#define HANDLES_INIT {-1, -1, -1, -1, -1, -1, -1, -1}

/* Closes what is open; returns `err`, or -1 when a close fails (a failed
 * collective close is a failed save). */
static int close_handles(handles *h, const char *path, int err)
{
    hid_t *props[3] = {&h->fapl, &h->dcpl, &h->dxpl}, *spaces[3] = {&h->space, &h->fspace, &h->mspace};
    for (int i = 0; i < 3; i++)
        if (*spaces[i] >= 0)
            H5Sclose(*spaces[i]);
    if (h->dset >= 0 && H5Dclose(h->dset) < 0)
        err = failed(path, "H5Dclose");
    if (h->file >= 0 && H5Fclose(h->file) < 0)
        err = failed(path, "H5Fclose");
    for (int i = 0; i < 3; i++)
        if (*props[i] >= 0)
            H5Pclose(*props[i]);
    return err;
}

/* A collective transfer of this rank's block (the selections set up). */
static int collective(handles *h, int64_t first, int64_t count, int64_t cols)
{
    if ((h->dxpl = H5Pcreate(H5P_DATASET_XFER)) < 0 ||
        H5Pset_dxpl_mpio(h->dxpl, H5FD_MPIO_COLLECTIVE) < 0)
        return -1;
    return select_block(h->dset, first, count, cols, &h->fspace, &h->mspace);
}

static int save(const char *path, const char *layout, const float *block, int64_t rows,
                int64_t cols, int64_t first, int64_t count, int durable)
{
    handles h = HANDLES_INIT;
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
    hsize_t chunk[2] = {CHUNK_BYTES / ((hsize_t)cols * sizeof(float)), (hsize_t)cols};
    int err = -1, fd;
    if (chunk[0] < 1)
        chunk[0] = 1;
    if (chunk[0] > dims[0])
        chunk[0] = dims[0];
    if ((h.fapl = mpio_fapl(MPI_COMM_WORLD)) < 0 ||
        (h.file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, h.fapl)) < 0) {
        failed(path, "H5Fcreate with H5FD_MPIO");
        goto done;
    }
    if ((h.space = H5Screate_simple(2, dims, NULL)) < 0 ||
        (h.dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0 ||
        H5Pset_fill_time(h.dcpl, H5D_FILL_TIME_NEVER) < 0 ||
        (!strcmp(layout, "chunked") && H5Pset_chunk(h.dcpl, 2, chunk) < 0) ||
        (h.dset = H5Dcreate2(h.file, "u", H5T_IEEE_F32LE, h.space, H5P_DEFAULT, h.dcpl,
                             H5P_DEFAULT)) < 0) {
        failed(path, "creating dataset u");
        goto done;
    }
    if (collective(&h, first, count, cols) < 0 ||
        H5Dwrite(h.dset, H5T_NATIVE_FLOAT, h.mspace, h.fspace, h.dxpl, block) < 0) {
        failed(path, "the collective H5Dwrite");
        goto done;
    }
    err = 0;
done:
    err = close_handles(&h, path, err);
    if (!err && durable && rank == 0) {
        if ((fd = open(path, O_RDONLY)) < 0)
            err = failed(path, "open for fsync");
        else {
            if (fsync(fd) < 0)
                err = failed(path, "fsync");
            close(fd);
        }
    }
    return err;
}

/* Reads this rank's block back collectively into a new buffer (*out). */
static int load(const char *path, int64_t cols, int64_t first, int64_t count, float **out)
{
    handles h = HANDLES_INIT;
    size_t nbytes = (size_t)count * (size_t)cols * sizeof(float);
    int err = -1;
    *out = malloc(nbytes ? nbytes : 1);
    if (!*out) {
        failed(path, "malloc of the read buffer");
        goto done;
    }
    if ((h.fapl = mpio_fapl(MPI_COMM_WORLD)) < 0 ||
        (h.file = H5Fopen(path, H5F_ACC_RDONLY, h.fapl)) < 0 ||
        (h.dset = H5Dopen2(h.file, "u", H5P_DEFAULT)) < 0) {
        failed(path, "opening dataset u with H5FD_MPIO");
        goto done;
    }
    if (collective(&h, first, count, cols) < 0 ||
        H5Dread(h.dset, H5T_NATIVE_FLOAT, h.mspace, h.fspace, h.dxpl, *out) < 0) {
        failed(path, "the collective H5Dread");
        goto done;
    }
    err = 0;
done:
    return close_handles(&h, path, err);
}

/* 0 when every rank's `mine` is 0 (every rank calls it). */
static int all_ok(int mine)
{
    int bad = mine != 0, any = 1;
    if (MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD) != MPI_SUCCESS)
        return -1;
    return any ? -1 : 0;
}

static int measure(const char *dir, const char *layout, const float *block, int64_t rows,
                   int64_t cols, int64_t first, int64_t count, int durable, int keep)
{
    char path[4096];
    float *back = NULL;
    double t0, t_save = 0, t_read = 0;
    int err, same = 0;
    snprintf(path, sizeof path, "%s/phdf5-%s.h5", dir, layout);

    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    err = all_ok(save(path, layout, block, rows, cols, first, count, durable));
    MPI_Barrier(MPI_COMM_WORLD);
    t_save = MPI_Wtime() - t0;
    if (err < 0)
        goto done;

    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    err = all_ok(load(path, cols, first, count, &back));
    MPI_Barrier(MPI_COMM_WORLD);
    t_read = MPI_Wtime() - t0;
    if (err < 0)
        goto done;
    same = memcmp(back, block, (size_t)count * (size_t)cols * sizeof(float)) == 0;
    if (!same)
        fprintf(stderr, "tsnap_mpi_phdf5: rank %d: %s: the block read back differs\n", rank,
                path);
    err = all_ok(!same);
done:
    free(back);
    if (rank == 0) {
        if (!keep)
            remove(path);
        printf("{\"layout\": \"%s\", \"ranks\": %d, \"rows\": %lld, \"cols\": %lld, "
               "\"durable\": %s, \"save_s\": %.6f, \"read_s\": %.6f, \"ok\": %s}\n",
               layout, nranks, (long long)rows, (long long)cols, durable ? "true" : "false",
               t_save, t_read, err < 0 ? "false" : "true");
        fflush(stdout);
    }
    return err;
}

int main(int argc, char **argv)
{
    const char *layouts[8];
    int nlayouts = 0, durable = 0, keep = 0, status = 1, bad = 0;
    float *block = NULL;
    int64_t first, count;
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS)
        return 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    for (int i = 5; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--fsync"))
            durable = 1;
        else if (!strcmp(argv[i], "--keep"))
            keep = 1;
        else if ((!strcmp(argv[i], "chunked") || !strcmp(argv[i], "contiguous")) && nlayouts < 8)
            layouts[nlayouts++] = argv[i];
        else
            bad = 1;
    }
    int64_t rows = argc > 5 ? atoll(argv[2]) : 0, cols = argc > 5 ? atoll(argv[3]) : 0;
    uint64_t seed = argc > 5 ? strtoull(argv[4], NULL, 10) : 0;
    if (bad || argc < 6 || rows < 1 || cols < 1 || !nlayouts) {
        if (rank == 0)
            fprintf(stderr, "usage: mpirun -n P tsnap_mpi_phdf5 DIR ROWS COLS SEED "
                            "chunked|contiguous... [--fsync] [--keep]\n");
        MPI_Finalize();
        return 2;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* failures are said once, by failed() */
    row_block(rows, rank, nranks, &first, &count);
    block = malloc((size_t)count * (size_t)cols * sizeof(float) + 1);
    if (all_ok(block ? 0 : failed(argv[1], "malloc of the block")) < 0)
        goto done;
    fill(block, first, count, cols, seed);
    status = 0;
    for (int i = 0; i < nlayouts; i++)
        if (measure(argv[1], layouts[i], block, rows, cols, first, count, durable, keep) < 0)
            status = 1;
done:
    free(block);
    MPI_Finalize();
    return status;
}

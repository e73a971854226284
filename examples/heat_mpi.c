/*
 * heat_mpi.c - heat.c's simulation as an MPI job: the field split into
 * row blocks across the ranks, one halo exchange per step, checkpoints
 * into a distributed store, and a restart on any number of ranks.
 *
 *   mpirun -n P heat_mpi DIR [--steps N] [--every K] [--size S] [--keep K]
 *
 * The options are heat's, and so is the result: the same initial field
 * (heat.h's heat_initial), the same update of every point (heat.h's
 * heat_point, compiled without fused multiply-adds), so that with the
 * same options every checkpoint and the final field equal the serial
 * program's, bit for bit, whatever P.
 *
 * Rank r holds rows [first, first + rows) of the S x S float64 field (the
 * first S % P ranks one row more than the others), with one halo row
 * above and one below that MPI_Sendrecv fills from the neighbours before
 * each step.  Every K steps tsnap_mpi_store_save (wait 0) copies each
 * rank's rows into the store's staging memory and returns; a background
 * thread on every rank writes its part file, the ranks agree, and rank 0
 * commits DIR/step-<n>.h5: one HDF5 file whose "u" is a virtual dataset
 * of the global field over the parts, with the root attribute "time", as
 * heat's checkpoints have.  Killed at any moment and started again on the
 * same DIR with any number of ranks, each rank reads its own rows of the
 * latest committed step (a hyperslab read: only the parts that hold those
 * rows are read) and the job goes on.
 *
 * Rank 0 prints what happens; at the end it gathers the field and prints
 * its total heat as heat does (the same sum in the same order).  Exits 0,
 * 1 on failure (every rank says what failed on its side), 2 for bad
 * options.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>
#include <tsnap_mpi.h>

#include "heat.h"

const char heat_program[] = "heat_mpi";

/* This rank's part of the field: rows [first, first + rows) of n x n, each
 * array with a halo row above and below (rows + 2 rows of n). */
typedef struct block {
    int n;
    int64_t first, rows;
    double *u, *v;
    int up, down; /* the neighbours' ranks, MPI_PROC_NULL at the border */
} block;

static int rank, nranks;

/* 0 when `mine` is 0 on every rank, else -1 (every rank calls it, so that
 * a failure on one rank ends the job on all rather than leaving the others
 * waiting). */
static int agree(int mine)
{
    int bad = mine < 0, any = 1;
    if (MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD) != MPI_SUCCESS) {
        fprintf(stderr, "%s: rank %d: MPI_Allreduce failed\n", heat_program, rank);
        return -1;
    }
    return any ? -1 : 0;
}

/* Says what failed with tsnap's message; returns -1. */
static int failed(const char *what)
{
    fprintf(stderr, "%s: rank %d: %s: %s\n", heat_program, rank, what, tsnap_errmsg());
    return -1;
}

static int mpi_failed(const char *what)
{
    fprintf(stderr, "%s: rank %d: %s failed\n", heat_program, rank, what);
    return -1;
}

static DLTensor f64(void *data, int ndim, int64_t *shape)
{
    DLDevice host = {kDLCPU, 0};
    return heat_f64(data, host, ndim, shape);
}

static int block_init(block *b, int n)
{
    int64_t base = n / nranks, extra = n % nranks;
    memset(b, 0, sizeof *b);
    b->n = n;
    b->first = rank * base + (rank < extra ? rank : extra);
    b->rows = base + (rank < extra);
    b->up = rank > 0 ? rank - 1 : MPI_PROC_NULL;
    b->down = rank + 1 < nranks ? rank + 1 : MPI_PROC_NULL;
    /* calloc: the border columns and rows are 0 in both arrays, and stay so */
    b->u = calloc((size_t)(b->rows + 2) * n, sizeof *b->u);
    b->v = calloc((size_t)(b->rows + 2) * n, sizeof *b->v);
    if (!b->u || !b->v) {
        fprintf(stderr, "%s: rank %d: out of memory for %lld rows of %d\n", heat_program, rank,
                (long long)b->rows, n);
        return -1;
    }
    return 0;
}

static void block_destroy(block *b)
{
    free(b->u);
    free(b->v);
}

/* Fills the halo rows: this rank's first row goes up, its last row down. */
static int exchange(block *b)
{
    size_t n = (size_t)b->n, last = (size_t)b->rows;
    if (MPI_Sendrecv(b->u + n, b->n, MPI_DOUBLE, b->up, 0, b->u + (last + 1) * n, b->n,
                     MPI_DOUBLE, b->down, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS ||
        MPI_Sendrecv(b->u + last * n, b->n, MPI_DOUBLE, b->down, 1, b->u, b->n, MPI_DOUBLE,
                     b->up, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS)
        return mpi_failed("the halo exchange (MPI_Sendrecv)");
    return 0;
}

/* One step: heat_cpu.c's loop over this rank's inner rows. */
static int step_block(block *b)
{
    const double *restrict u = b->u;
    double *restrict v = b->v;
    size_t n = (size_t)b->n;
    if (exchange(b) < 0)
        return -1;
    for (size_t i = 1; i <= (size_t)b->rows; i++) {
        int64_t g = b->first + (int64_t)i - 1; /* the global row */
        if (g == 0 || g == b->n - 1)
            continue; /* the border stays 0 */
        for (size_t j = 1; j + 1 < n; j++)
            v[i * n + j] = heat_point(u, i * n + j, n);
    }
    b->v = b->u;
    b->u = v;
    return 0;
}

/* Loads this rank's rows of the latest committed step: 1 with the step in
 * *step, 0 if the store has none, -1 on failure (on every rank). */
static int resume(tsnap_mpi_store *s, block *b, int64_t *step)
{
    char path[4096];
    tsnap_reader *r = NULL;
    int64_t start[2] = {b->first, 0}, count[2] = {b->rows, b->n};
    DLTensor t = f64(b->u + b->n, 2, count);
    int err = tsnap_mpi_store_latest(s, step); /* the same answer on every rank */
    if (err == TSNAP_ENOTFOUND)
        return 0;
    if (err < 0)
        return failed("finding the latest step");
    if ((err = tsnap_mpi_store_path(s, *step, path, sizeof path)) < 0 ||
        (err = tsnap_reader_open(&r, path)) < 0 ||
        (err = tsnap_reader_read(r, "u", start, count, NULL, &t)) < 0)
        failed("reading this rank's rows of the latest step");
    tsnap_reader_free(r);
    return agree(err) < 0 ? -1 : 1;
}

/* Saves `step` in the background: returns once this rank's rows are in
 * the store's staging memory (the same result on every rank). */
static int checkpoint(tsnap_mpi_store *s, const block *b, int64_t step)
{
    int64_t shape[2] = {b->n, b->n}, offset[2] = {b->first, 0}, rows[2] = {b->rows, b->n};
    double time = (double)step * HEAT_ALPHA; /* in units of dx^2 / alpha */
    DLTensor t = f64(b->u + b->n, 2, rows), tv = f64(&time, 0, NULL);
    tsnap_mpi_tensor u = {"u", &t, shape, offset};
    tsnap_store_attr at = {"time", NULL, &tv};
    if (tsnap_mpi_store_save(s, step, &u, 1, &at, 1, 0) < 0)
        return failed("saving a checkpoint");
    return 0;
}

/* Gathers the field on rank 0 and prints its total heat, summed as heat
 * sums it (every point in order). */
static int report(const block *b, long steps)
{
    double *all = NULL;
    int *counts = NULL, *displs = NULL, err = -1;
    size_t n = (size_t)b->n;
    if (rank == 0) {
        all = malloc(n * n * sizeof *all);
        counts = malloc((size_t)nranks * sizeof *counts);
        displs = malloc((size_t)nranks * sizeof *displs);
    }
    if (agree(rank == 0 && (!all || !counts || !displs) ? -1 : 0) < 0) {
        if (rank == 0)
            fprintf(stderr, "%s: out of memory for the gathered field\n", heat_program);
        goto done;
    }
    for (int r = 0; rank == 0 && r < nranks; r++) {
        int64_t base = b->n / nranks, extra = b->n % nranks;
        counts[r] = (int)((base + (r < extra)) * b->n);
        displs[r] = (int)((r * base + (r < extra ? r : extra)) * b->n);
    }
    if (MPI_Gatherv(b->u + n, (int)(b->rows * b->n), MPI_DOUBLE, all, counts, displs,
                    MPI_DOUBLE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
        mpi_failed("gathering the field (MPI_Gatherv)");
        goto done;
    }
    if (rank == 0) {
        double total = 0;
        for (size_t k = 0; k < n * n; k++)
            total += all[k];
        printf("%s: step %ld done, total heat %.6f\n", heat_program, steps, total);
    }
    err = 0;
done:
    free(all);
    free(counts);
    free(displs);
    return err;
}

int main(int argc, char **argv)
{
    heat_options opt;
    int status = 1, provided;
    block b;
    tsnap_mpi_store *s = NULL;
    tsnap_store_options o = TSNAP_STORE_OPTIONS_INIT;
    memset(&b, 0, sizeof b);
    setvbuf(stdout, NULL, _IOLBF, 0); /* what it said before a kill is not lost */
    /* background saves write and agree on a thread of their own */
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "%s: MPI_Init_thread failed\n", heat_program);
        return 1;
    }
    if (MPI_Comm_rank(MPI_COMM_WORLD, &rank) != MPI_SUCCESS ||
        MPI_Comm_size(MPI_COMM_WORLD, &nranks) != MPI_SUCCESS) {
        mpi_failed("MPI_Comm_rank or MPI_Comm_size");
        goto finalize;
    }
    int bad = heat_parse_options(argc, argv, 0, &opt) < 0;
    const char *dir = opt.dir;
    long steps = opt.steps, every = opt.every, size = opt.size, keep = opt.keep;
    if (bad || !dir || size > 40000 || size < nranks) {
        if (rank == 0)
            fprintf(stderr, "usage: mpirun -n P %s DIR [--steps N] [--every K] [--size S] "
                            "[--keep K]\n(3 <= S <= 40000, and at least one row per rank: "
                            "S >= P)\n", heat_program);
        status = 2;
        goto finalize;
    }
    if (agree(block_init(&b, (int)size)) < 0)
        goto done;
    o.keep_last = (int)keep;
    if (tsnap_mpi_store_open(&s, MPI_COMM_WORLD, dir, &o) < 0) {
        failed("opening the store");
        goto done;
    }
    int64_t first = 0;
    int resumed = resume(s, &b, &first);
    if (resumed < 0)
        goto done;
    if (!resumed) {
        for (int64_t i = 0; i < b.rows; i++)
            for (int j = 0; j < b.n; j++)
                b.u[(size_t)(i + 1) * b.n + j] = heat_initial((int)(b.first + i), j, b.n);
        if (rank == 0)
            printf("%s: starting a %ldx%ld run in %s on %d ranks\n", heat_program, size, size,
                   dir, nranks);
    } else if (rank == 0) {
        printf("%s: resuming from step %lld on %d ranks\n", heat_program, (long long)first,
               nranks);
    }
    for (int64_t step = first; step <= steps; step++) {
        /* every K steps, but not the step it resumed from: that one is saved */
        if (every && step % every == 0 && !(resumed && step == first) &&
            checkpoint(s, &b, step) < 0)
            goto done;
        if (step == steps)
            break;
        if (step_block(&b) < 0)
            goto done;
    }
    if (tsnap_mpi_store_wait(s) < 0) {
        failed("finishing the checkpoints");
        goto done;
    }
    if (report(&b, steps) < 0)
        goto done;
    status = 0;
done:
    tsnap_mpi_store_free(s); /* collective: every rank gets here */
    block_destroy(&b);
finalize:
    MPI_Finalize();
    return status;
}

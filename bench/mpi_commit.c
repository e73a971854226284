/*
 * mpi_commit.c - what a distributed commit costs per step.
 *
 *   mpirun -n N tsnap_mpi_commit_bench [DIR] [STEPS]
 *       for 1, 10 and 100 tensors, durable and not: the collective commit
 *       (tsnap_mpi_writer_commit, the slowest rank) against the part
 *       file's own commit alone (a tsnap_writer of the same blocks, the
 *       slowest rank), whose difference is what distribution adds: the
 *       agreement, the snapshot file of virtual datasets and its rename.
 *   tsnap_mpi_commit_bench --plan RANKS
 *       rank 0's check of the blocks (gathered metadata, in memory) for
 *       RANKS ranks holding one block each of 10 tensors, split by rows,
 *       by columns and in a 2-D grid.
 *
 * Medians over STEPS steps (default 30) of small blocks (1 KiB per tensor
 * and rank), so that the fixed costs show.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../src/mpi/mpi_internal.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, tsnap_errmsg());
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* The slowest rank's time. */
static double slowest(double t)
{
    double m = 0;
    MPI_Allreduce(&t, &m, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return m;
}

static void bench_commits(const char *dir, int steps)
{
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    enum { ROWS = 16, COLS = 16 }; /* float32: 1 KiB per tensor and rank */
    float *block = malloc(ROWS * COLS * sizeof *block);
    for (int i = 0; i < ROWS * COLS; i++)
        block[i] = (float)(i + rank);
    int64_t bshape[2] = {ROWS, COLS}, gshape[2] = {(int64_t)ROWS * size, COLS};
    int64_t offset[2] = {(int64_t)ROWS * rank, 0};
    DLTensor t;
    memset(&t, 0, sizeof t);
    t.data = block;
    t.device.device_type = kDLCPU;
    t.ndim = 2;
    t.shape = bshape;
    t.dtype.code = kDLFloat;
    t.dtype.bits = 32;
    t.dtype.lanes = 1;
    double *dist = malloc((size_t)steps * sizeof *dist), *part = malloc((size_t)steps * sizeof *part);
    if (rank == 0)
        printf("%5s %7s %8s %14s %14s %14s\n", "ranks", "tensors", "durable", "commit ms",
               "part only ms", "added ms");
    static const int counts[] = {1, 10, 100};
    for (int durable = 1; durable >= 0; durable--) {
        for (int c = 0; c < 3; c++) {
            int n = counts[c];
            tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
            o.durable = durable;
            o.threads = 1;
            for (int s = 0; s < steps; s++) {
                char path[4096], name[32];
                tsnap_mpi_writer *w;
                snprintf(path, sizeof path, "%s/step-%d-%d.h5", dir, n, s % 3);
                if (tsnap_mpi_writer_create(&w, MPI_COMM_WORLD, path, &o) < 0)
                    die("tsnap_mpi_writer_create");
                for (int k = 0; k < n; k++) {
                    snprintf(name, sizeof name, "fields/t%03d", k);
                    if (tsnap_mpi_writer_put_block(w, name, &t, gshape, offset, NULL) < 0)
                        die("tsnap_mpi_writer_put_block");
                }
                MPI_Barrier(MPI_COMM_WORLD);
                double t0 = now();
                if (tsnap_mpi_writer_commit(w) < 0)
                    die("tsnap_mpi_writer_commit");
                dist[s] = slowest(now() - t0);
                tsnap_mpi_writer_free(w);

                /* the same part alone */
                tsnap_writer *pw;
                snprintf(path, sizeof path, "%s/part-%d-%d.h5", dir, rank, s % 3);
                if (tsnap_writer_create(&pw, path, &o) < 0)
                    die("tsnap_writer_create");
                for (int k = 0; k < n; k++) {
                    snprintf(name, sizeof name, "fields/t%03d", k);
                    if (tsnap_writer_put(pw, name, &t) < 0)
                        die("tsnap_writer_put");
                }
                MPI_Barrier(MPI_COMM_WORLD);
                t0 = now();
                if (tsnap_writer_commit(pw) < 0)
                    die("tsnap_writer_commit");
                part[s] = slowest(now() - t0);
                tsnap_writer_free(pw);
            }
            double d = 1e3 * median(dist, steps), p = 1e3 * median(part, steps);
            if (rank == 0)
                printf("%5d %7d %8s %14.2f %14.2f %14.2f\n", size, n, durable ? "yes" : "no", d,
                       p, d - p);
            fflush(stdout);
        }
    }
    free(dist);
    free(part);
    free(block);
}

/* Rank 0's check of `nranks` ranks' blocks, without launching them. */
static void bench_plan(int nranks)
{
    static const char *names[3] = {"rows", "columns", "2-D grid"};
    enum { TENSORS = 10 };
    int px = 1;
    while ((px + 1) * (px + 1) <= nranks)
        px++;
    printf("rank 0 checks the blocks of %d ranks, %d tensors each:\n", nranks, TENSORS);
    for (int how = 0; how < 3; how++) {
        tm_record *recs = calloc((size_t)nranks, sizeof *recs);
        int cols = how == 2 ? nranks / px : nranks;
        int ranks = how == 2 ? px * cols : nranks;
        for (int r = 0; r < ranks; r++) {
            recs[r].n = TENSORS;
            recs[r].e = calloc(TENSORS, sizeof *recs[r].e);
            for (int k = 0; k < TENSORS; k++) {
                tm_entry *e = &recs[r].e[k];
                char name[32];
                snprintf(name, sizeof name, "t%02d", k);
                e->name = strdup(name);
                e->dtype = TSNAP_FLOAT32;
                tm_entry_dims(e, 2);
                if (how == 0) {
                    e->shape[0] = 8 * (int64_t)ranks, e->shape[1] = 64;
                    e->offset[0] = 8 * (int64_t)r, e->block[0] = 8, e->block[1] = 64;
                } else if (how == 1) {
                    e->shape[0] = 64, e->shape[1] = 8 * (int64_t)ranks;
                    e->offset[1] = 8 * (int64_t)r, e->block[0] = 64, e->block[1] = 8;
                } else {
                    e->shape[0] = 8 * (int64_t)px, e->shape[1] = 8 * (int64_t)cols;
                    e->offset[0] = 8 * (int64_t)(r / cols), e->offset[1] = 8 * (int64_t)(r % cols);
                    e->block[0] = 8, e->block[1] = 8;
                }
            }
        }
        tm_tensor *plan;
        size_t count;
        double t0 = now();
        int err = tm_plan("bench.h5", recs, ranks, &plan, &count);
        double dt = now() - t0;
        printf("  %-8s %6d ranks: %8.1f ms (%s)\n", names[how], ranks, 1e3 * dt,
               err < 0 ? tsnap_errmsg() : "tiled");
        tm_plan_free(plan, count);
        tm_records_free(recs, nranks);
    }
}

int main(int argc, char **argv)
{
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    if (argc == 3 && strcmp(argv[1], "--plan") == 0) {
        bench_plan(atoi(argv[2]));
    } else {
        char dir[4096];
        int rank;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        bool given = argc > 1 && *argv[1];
        if (given) {
            snprintf(dir, sizeof dir, "%s", argv[1]);
        } else {
            snprintf(dir, sizeof dir, "/tmp/tsnap-commit-bench-XXXXXX");
            if (rank == 0 && !mkdtemp(dir))
                die("mkdtemp");
            MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
        }
        bench_commits(dir, argc > 2 ? atoi(argv[2]) : 30);
        MPI_Barrier(MPI_COMM_WORLD);
        if (rank == 0 && !given) {
            char cmd[4200];
            snprintf(cmd, sizeof cmd, "rm -rf -- '%s'", dir);
            if (system(cmd) != 0)
                fprintf(stderr, "cannot remove %s\n", dir);
        }
    }
    MPI_Finalize();
    return 0;
}

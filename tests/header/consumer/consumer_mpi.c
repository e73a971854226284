/*
 * A program of an MPI job that saves a distributed snapshot through an
 * installed tsnap (tsnap::mpi): every rank puts its row of a global
 * matrix.  Built by the install test; run it under mpirun:
 *   mpirun -n N consumer_mpi DIR
 */
#include <stdio.h>

#include "tsnap_mpi.h"

int main(int argc, char **argv)
{
    int rank, size, err;
    char path[4096];
    float row[8];
    int64_t shape[2], offset[2] = {0, 0}, bshape[2] = {1, 8};
    tsnap_mpi_writer *w = NULL;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    for (int i = 0; i < 8; i++)
        row[i] = (float)(rank * 8 + i);
    shape[0] = size;
    shape[1] = 8;
    offset[0] = rank;
    DLTensor t = {row, {kDLCPU, 0}, 2, {kDLFloat, 32, 1}, bshape, NULL, 0};
    snprintf(path, sizeof path, "%s/consumer_mpi.h5", argc > 1 ? argv[1] : ".");
    if ((err = tsnap_mpi_writer_create(&w, MPI_COMM_WORLD, path, NULL)) == 0 &&
        (err = tsnap_mpi_writer_put_block(w, "matrix", &t, shape, offset, NULL)) == 0)
        err = tsnap_mpi_writer_commit(w);
    if (err < 0 && rank == 0)
        fprintf(stderr, "consumer_mpi: %s\n", tsnap_errmsg());
    tsnap_mpi_writer_free(w);
    MPI_Finalize();
    return err < 0;
}

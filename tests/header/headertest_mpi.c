/*
 * tsnap_mpi.h compiled alone as C99 and as C++11 with every warning an
 * error (CMakeLists.txt here), twice for its include guard, touching the
 * types a user's code touches.
 */
#include "tsnap_mpi.h"
#include "tsnap_mpi.h"

int tsnap_mpi_headertest(void);

int tsnap_mpi_headertest(void)
{
    tsnap_mpi_writer *w = NULL;
    tsnap_mpi_store *s = NULL;
    int64_t shape[1] = {4}, offset[1] = {0};
    tsnap_mpi_tensor t = {"u", NULL, shape, offset};
    tsnap_store_options opts = TSNAP_STORE_OPTIONS_INIT;
    MPI_Comm comm = MPI_COMM_WORLD;

    (void)w;
    (void)s;
    (void)comm;
    return (int)opts.version + (t.shape ? 1 : 0);
}

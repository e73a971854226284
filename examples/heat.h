/*
 * heat.h - where the field of heat.c lives and how it steps: host memory
 * (heat_cpu.c, the program `heat`) or the memory of a CUDA device
 * (heat_cuda.cu, the program `heat_cuda`).  heat.c does the rest the same
 * way for both: the options, the initial field, the checkpoints and the
 * restart, handing tsnap the field as a DLTensor on `device`.
 */
#ifndef HEAT_H
#define HEAT_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <dlpack/dlpack.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HEAT_ALPHA 0.24 /* diffusion number alpha*dt/dx^2: stable below 0.25 */
#define HEAT_ENODEV (-2) /* heat_field_init: no device to run on */

#ifdef __CUDACC__
#define HEAT_HOST_DEVICE __host__ __device__
#else
#define HEAT_HOST_DEVICE
#endif

/*
 * The update of inner point k of an n x n field u: one expression for both
 * programs, compiled without contracting a multiply and an add into one
 * fused operation (-ffp-contract=off, nvcc --fmad=false), so that host and
 * device round every operation alike and their fields agree bit for bit.
 */
static inline HEAT_HOST_DEVICE double heat_point(const double *u, size_t k, size_t n)
{
    return u[k] + HEAT_ALPHA * (u[k - 1] + u[k + 1] + u[k - n] + u[k + n] - 4 * u[k]);
}

/* The initial value of point (i, j) of an n x n field: two hot spots,
 * 0 on the border (heat.c and heat_mpi.c start from the same field). */
static inline double heat_initial(int i, int j, int n)
{
    double x = (double)j / (n - 1), y = (double)i / (n - 1);
    double a = (x - 0.3) * (x - 0.3) + (y - 0.35) * (y - 0.35);
    double b = (x - 0.7) * (x - 0.7) + (y - 0.6) * (y - 0.6);
    int border = i == 0 || j == 0 || i == n - 1 || j == n - 1;
    return border ? 0 : 100.0 * (a < 0.01) + 60.0 * (b < 0.02);
}

/* The options of heat and heat_mpi:
 *   DIR [--steps N] [--every K] [--size S] [--keep K]   (heat: or --probe) */
typedef struct heat_options {
    const char *dir;
    long steps, every, size, keep;
    int probe;
} heat_options;

/* Parses the options into *o (the defaults for those not given); -1 for
 * an unknown option, a second DIR, or --probe where `probe_ok` is 0. */
static inline int heat_parse_options(int argc, char **argv, int probe_ok, heat_options *o)
{
    memset(o, 0, sizeof *o);
    o->steps = 2000;
    o->every = 100;
    o->size = 256;
    for (int i = 1; i < argc; i++) {
        long *opt = !strcmp(argv[i], "--steps") ? &o->steps
                    : !strcmp(argv[i], "--every") ? &o->every
                    : !strcmp(argv[i], "--size")  ? &o->size
                    : !strcmp(argv[i], "--keep")  ? &o->keep
                                                  : NULL;
        if (opt && i + 1 < argc)
            *opt = atol(argv[++i]);
        else if (!opt && probe_ok && !strcmp(argv[i], "--probe"))
            o->probe = 1;
        else if (!opt && !o->dir && argv[i][0] != '-')
            o->dir = argv[i];
        else
            return -1;
    }
    return o->steps < 0 || o->every < 0 || o->size < 3 || o->keep < 0 ? -1 : 0;
}

/* A float64 DLTensor over `data` (C order). */
static inline DLTensor heat_f64(void *data, DLDevice device, int ndim, int64_t *shape)
{
    DLTensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.device = device;
    t.ndim = ndim;
    t.shape = shape;
    t.dtype.code = kDLFloat;
    t.dtype.bits = 64;
    t.dtype.lanes = 1;
    return t;
}

/* The program's name, for its messages. */
extern const char heat_program[];

/* An n x n float64 field, 0 on the border: u now, v the next step's. */
typedef struct heat_field {
    int n;
    double *u, *v; /* in the memory of `device` */
    DLDevice device;
    char where[160]; /* says where the field is, for the messages */
} heat_field;

/*
 * Every call returns 0, or -1 having said on stderr what failed; none
 * exits.  heat_field_init returns HEAT_ENODEV, having said why, when there
 * is no device to run on.  After it, v is 0 and u undefined until
 * heat_field_set or a read into it.
 */
int heat_field_init(heat_field *f, int n);
int heat_field_set(heat_field *f, const double *host); /* u = host's n*n values */
int heat_field_get(const heat_field *f, double *host); /* host = u, after the steps so far */
int heat_field_step(heat_field *f);                    /* u = one step of the stencil on u */
void heat_field_destroy(heat_field *f);                /* after a failed init too */

#ifdef __cplusplus
}
#endif

#endif /* HEAT_H */

/*
 * heat.c - a 2-D heat-diffusion simulation that checkpoints into a tsnap
 * store and, started again, carries on from its latest checkpoint.
 *
 *   heat DIR [--steps N] [--every K] [--size S] [--keep K]
 *   heat --probe
 *
 * (--every 0: no checkpoints at all, for measuring what they cost.)
 * The field u (S x S float64, 0 on the border) starts as two hot spots and
 * diffuses with the explicit five-point stencil.  Every K steps the state
 * is saved in the background (tsnap_store_save with wait 0: the copy takes
 * about a memcpy, the write overlaps the next steps) as step-<n>.h5 with
 * the tensor "u" and the root attribute "time".  Killed at any moment and
 * started again with the same DIR, it reloads the latest committed step
 * and goes on; as the stencil is deterministic, the run ends with the same
 * field, bit for bit, as a run that was never interrupted.
 *
 * Where the field lives is heat.h's heat_field: host memory in `heat`
 * (heat_cpu.c), GPU memory in `heat_cuda` (heat_cuda.cu).  tsnap takes the
 * device tensor as it is: heat_cuda's checkpoints are copied from the GPU
 * and written while it keeps stepping, and its restart reads the latest
 * step straight into device memory.  Both programs compute every point
 * alike, so with the same options they write the same checkpoints, bit
 * for bit.  --probe checks that the program can run here (heat_cuda: a
 * CUDA device that runs its kernel) and exits 0, or 77 saying why not; a
 * run with no device to run on exits 77 likewise, before touching DIR.
 * Otherwise it exits 1 on failure, 2 for bad options.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tsnap.h>

#include "heat.h"

#define EXIT_NODEVICE 77 /* the exit status that tells a test harness "skip" */

/* Says what failed with tsnap's message; returns -1. */
static int failed(const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", heat_program, what, tsnap_errmsg());
    return -1;
}

static void initial(double *u, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            u[(size_t)i * n + j] = heat_initial(i, j, n);
}

/* Loads the latest committed step into f->u (on its device): 1 with the
 * step in *step, 0 if the store has none, -1 on failure. */
static int resume(tsnap_store *s, heat_field *f, int64_t *shape, int64_t *step)
{
    char path[4096];
    tsnap_reader *r = NULL;
    DLTensor t = heat_f64(f->u, f->device, 2, shape);
    int err = tsnap_store_latest(s, step);
    if (err == TSNAP_ENOTFOUND)
        return 0;
    if (err < 0 || (err = tsnap_store_path(s, *step, path, sizeof path)) < 0 ||
        (err = tsnap_reader_open(&r, path)) < 0 ||
        (err = tsnap_reader_read_verified(r, "u", &t)) < 0)
        failed("reading the latest step");
    tsnap_reader_free(r);
    return err < 0 ? -1 : 1;
}

/* Saves `step` in the background: returns once u is copied into the
 * store's staging memory (from the device, for heat_cuda). */
static int checkpoint(tsnap_store *s, const heat_field *f, int64_t *shape, int64_t step)
{
    static const char *const names[1] = {"u"};
    DLDevice host = {kDLCPU, 0};
    double time = (double)step * HEAT_ALPHA; /* in units of dx^2 / alpha */
    DLTensor t = heat_f64(f->u, f->device, 2, shape), tv = heat_f64(&time, host, 0, NULL);
    tsnap_store_attr at = {"time", NULL, &tv};
    if (tsnap_store_save(s, step, names, &t, 1, &at, 1, 0) < 0)
        return failed("saving a checkpoint");
    return 0;
}

int main(int argc, char **argv)
{
    heat_options opt;
    int status = 1;
    setvbuf(stdout, NULL, _IOLBF, 0); /* what it said before a kill is not lost */
    int bad = heat_parse_options(argc, argv, 1, &opt) < 0;
    const char *dir = opt.dir;
    long steps = opt.steps, every = opt.every, size = opt.size, keep = opt.keep;
    int probe = opt.probe;
    if (bad || !dir == !probe) {
        fprintf(stderr, "usage: %s DIR [--steps N] [--every K] [--size S] [--keep K]\n"
                        "       %s --probe\n", heat_program, heat_program);
        return 2;
    }
    int n = probe ? 3 : (int)size;
    int64_t shape[2] = {n, n};
    heat_field f;
    int err = heat_field_init(&f, n);
    if (err < 0)
        return err == HEAT_ENODEV ? EXIT_NODEVICE : 1;
    tsnap_store *s = NULL;
    tsnap_store_options o = TSNAP_STORE_OPTIONS_INIT;
    double *host = calloc((size_t)n * n, sizeof *host);
    if (!host) {
        fprintf(stderr, "%s: out of memory\n", heat_program);
        goto done;
    }
    if (probe) { /* a step of a 3x3 field, and back: the device runs the kernel */
        if (heat_field_set(&f, host) == 0 && heat_field_step(&f) == 0 &&
            heat_field_get(&f, host) == 0) {
            printf("%s: can run here, the field in %s\n", heat_program, f.where);
            status = 0;
        }
        goto done;
    }

    o.keep_last = (int)keep;
    if (tsnap_store_open(&s, dir, &o) < 0) {
        failed("opening the store");
        goto done;
    }
    int64_t first = 0;
    int resumed = resume(s, &f, shape, &first);
    if (resumed < 0)
        goto done;
    if (!resumed) {
        initial(host, n);
        if (heat_field_set(&f, host) < 0)
            goto done;
        printf("%s: starting a %dx%d run in %s, the field in %s\n", heat_program, n, n, dir,
               f.where);
    } else {
        printf("%s: resuming from step %lld\n", heat_program, (long long)first);
    }
    for (int64_t step = first; step <= steps; step++) {
        /* every K steps, but not the step it resumed from: that one is saved */
        if (every && step % every == 0 && !(resumed && step == first) &&
            checkpoint(s, &f, shape, step) < 0)
            goto done;
        if (step == steps)
            break;
        if (heat_field_step(&f) < 0)
            goto done;
    }
    if (tsnap_store_wait(s) < 0) {
        failed("finishing the checkpoints");
        goto done;
    }
    if (heat_field_get(&f, host) < 0)
        goto done;
    double total = 0;
    for (size_t k = 0; k < (size_t)n * n; k++)
        total += host[k];
    printf("%s: step %ld done, total heat %.6f\n", heat_program, steps, total);
    status = 0;
done:
    tsnap_store_free(s);
    heat_field_destroy(&f);
    free(host);
    return status;
}

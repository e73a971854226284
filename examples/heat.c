/*
 * heat.c - a 2-D heat-diffusion simulation that checkpoints into a tsnap
 * store and, started again, carries on from its latest checkpoint.
 *
 *   heat DIR [--steps N] [--every K] [--size S] [--keep K]
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
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tsnap.h>

#define ALPHA 0.24 /* diffusion number alpha*dt/dx^2: stable below 0.25 */

static void die(const char *what)
{
    fprintf(stderr, "heat: %s: %s\n", what, tsnap_errmsg());
    exit(1);
}

static DLTensor field(double *u, int64_t *shape)
{
    DLTensor t;
    memset(&t, 0, sizeof t);
    t.data = u;
    t.device.device_type = kDLCPU;
    t.ndim = 2;
    t.shape = shape;
    t.dtype.code = kDLFloat;
    t.dtype.bits = 64;
    t.dtype.lanes = 1;
    return t;
}

static void initial(double *u, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double x = (double)j / (n - 1), y = (double)i / (n - 1);
            double a = (x - 0.3) * (x - 0.3) + (y - 0.35) * (y - 0.35);
            double b = (x - 0.7) * (x - 0.7) + (y - 0.6) * (y - 0.6);
            int border = i == 0 || j == 0 || i == n - 1 || j == n - 1;
            u[(size_t)i * n + j] = border ? 0 : 100.0 * (a < 0.01) + 60.0 * (b < 0.02);
        }
}

static void step_once(const double *u, double *v, int n)
{
    for (int i = 1; i < n - 1; i++)
        for (int j = 1; j < n - 1; j++) {
            size_t k = (size_t)i * n + j;
            v[k] = u[k] + ALPHA * (u[k - 1] + u[k + 1] + u[k - n] + u[k + n] - 4 * u[k]);
        }
}

/* Loads the latest committed step into u; returns it, or -1 for none. */
static int64_t resume(tsnap_store *s, double *u, int64_t *shape)
{
    int64_t step;
    char path[4096];
    if (tsnap_store_latest(s, &step) < 0)
        return -1;
    if (tsnap_store_path(s, step, path, sizeof path) < 0)
        die("naming the latest step");
    tsnap_reader *r = NULL;
    DLTensor t = field(u, shape);
    if (tsnap_reader_open(&r, path) < 0 || tsnap_reader_read_verified(r, "u", &t) < 0)
        die("reading the latest step");
    tsnap_reader_free(r);
    return step;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    long steps = 2000, every = 100, size = 256, keep = 0;
    setvbuf(stdout, NULL, _IOLBF, 0); /* what it said before a kill is not lost */
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        long *opt = !strcmp(argv[i], "--steps") ? &steps
                    : !strcmp(argv[i], "--every") ? &every
                    : !strcmp(argv[i], "--size")  ? &size
                    : !strcmp(argv[i], "--keep")  ? &keep
                                                  : NULL;
        if (opt && i + 1 < argc)
            *opt = atol(argv[++i]);
        else if (!opt && !dir && argv[i][0] != '-')
            dir = argv[i];
        else
            bad = 1;
    }
    if (bad || !dir || steps < 0 || every < 0 || size < 3 || keep < 0) {
        fprintf(stderr, "usage: heat DIR [--steps N] [--every K] [--size S] [--keep K]\n");
        return 2;
    }
    int n = (int)size;
    int64_t shape[2] = {n, n};
    double *u = calloc((size_t)n * n, sizeof *u), *v = calloc((size_t)n * n, sizeof *v);
    if (!u || !v) {
        fprintf(stderr, "heat: out of memory\n");
        return 1;
    }
    tsnap_store_options o = TSNAP_STORE_OPTIONS_INIT;
    o.keep_last = (int)keep;
    tsnap_store *s = NULL;
    if (tsnap_store_open(&s, dir, &o) < 0)
        die("opening the store");

    int64_t first = resume(s, u, shape);
    int resumed = first >= 0;
    if (!resumed) {
        initial(u, n);
        first = 0;
        printf("heat: starting a %dx%d run in %s\n", n, n, dir);
    } else {
        printf("heat: resuming from step %lld\n", (long long)first);
    }
    const char *names[1] = {"u"};
    for (int64_t step = first; step <= steps; step++) {
        /* every K steps, but not the step it resumed from: that one is saved */
        if (every && step % every == 0 && !(resumed && step == first)) {
            double time = (double)step * ALPHA; /* in units of dx^2 / alpha */
            DLTensor t = field(u, shape), tv = field(&time, shape);
            tv.ndim = 0;
            tsnap_store_attr at = {"time", NULL, &tv};
            if (tsnap_store_save(s, step, names, &t, 1, &at, 1, 0) < 0)
                die("saving a checkpoint");
        }
        if (step == steps)
            break;
        step_once(u, v, n);
        /* the inner rows; v's border columns are never written, so stay 0 */
        memcpy(u + n, v + n, (size_t)(n - 2) * n * sizeof *u);
    }
    if (tsnap_store_wait(s) < 0)
        die("finishing the checkpoints");
    tsnap_store_free(s);
    double total = 0;
    for (size_t k = 0; k < (size_t)n * n; k++)
        total += u[k];
    printf("heat: step %ld done, total heat %.6f\n", steps, total);
    free(u);
    free(v);
    return 0;
}

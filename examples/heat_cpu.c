/*
 * heat_cpu.c - heat.c's field in host memory: the program `heat`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heat.h"

const char heat_program[] = "heat";

int heat_field_init(heat_field *f, int n)
{
    memset(f, 0, sizeof *f);
    f->n = n;
    f->device.device_type = kDLCPU;
    snprintf(f->where, sizeof f->where, "host memory");
    f->u = calloc((size_t)n * n, sizeof *f->u);
    f->v = calloc((size_t)n * n, sizeof *f->v);
    if (!f->u || !f->v) {
        fprintf(stderr, "heat: out of memory for a %dx%d field\n", n, n);
        heat_field_destroy(f);
        return -1;
    }
    return 0;
}

int heat_field_set(heat_field *f, const double *host)
{
    memcpy(f->u, host, (size_t)f->n * f->n * sizeof *f->u);
    return 0;
}

int heat_field_get(const heat_field *f, double *host)
{
    memcpy(host, f->u, (size_t)f->n * f->n * sizeof *f->u);
    return 0;
}

int heat_field_step(heat_field *f)
{
    /* Local restrict pointers: the compiler may keep them in registers and
     * vectorise, which it cannot through f->u and f->v. */
    const double *restrict u = f->u;
    double *restrict v = f->v;
    size_t n = (size_t)f->n;
    for (size_t i = 1; i + 1 < n; i++)
        for (size_t j = 1; j + 1 < n; j++)
            v[i * n + j] = heat_point(u, i * n + j, n);
    /* v's border is 0 like u's, so v is the whole next field. */
    f->v = f->u;
    f->u = v;
    return 0;
}

void heat_field_destroy(heat_field *f)
{
    free(f->u);
    free(f->v);
    f->u = f->v = NULL;
}

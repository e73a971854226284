/*
 * heat_cuda.cu - heat.c's field in the memory of CUDA device 0: the
 * program `heat_cuda`.
 *
 * A step is one kernel launch on the legacy default stream, the stream
 * after whose work tsnap's plain calls order their copies: a checkpoint
 * (tsnap_store_save of the kDLCUDA tensor u) copies u once the steps
 * before it are done and returns, the store's thread writes the copy, and
 * meanwhile the next steps are already queued on the GPU.  With no device
 * to run on (no NVIDIA driver, or no device) heat_field_init says why and
 * returns HEAT_ENODEV.
 */
#include <stdio.h>
#include <string.h>

#include <cuda_runtime.h>

#include "heat.h"

const char heat_program[] = "heat_cuda";

/* 0 for cudaSuccess; otherwise says which call failed and why, and -1. */
static int check(cudaError_t rc, const char *call)
{
    if (rc == cudaSuccess)
        return 0;
    fprintf(stderr, "heat_cuda: %s: %s (%s)\n", call, cudaGetErrorString(rc), cudaGetErrorName(rc));
    return -1;
}
#define CUDA(call) check((call), #call)

/* Says why there is no device: cudaGetDeviceCount's answer, where
 * "insufficient driver" also stands for no driver at all. */
static void no_device(cudaError_t rc)
{
    int driver = 0, runtime = 0;
    const char *name = cudaGetErrorName(rc);
    if (rc == cudaErrorInsufficientDriver && cudaDriverGetVersion(&driver) == cudaSuccess &&
        cudaRuntimeGetVersion(&runtime) == cudaSuccess) {
        if (driver == 0)
            fprintf(stderr, "heat_cuda: no CUDA device to run on: no NVIDIA driver (%s)\n", name);
        else
            fprintf(stderr, "heat_cuda: no CUDA device to run on: the NVIDIA driver supports CUDA "
                            "%d.%d, this program's runtime is %d.%d (%s)\n", driver / 1000,
                    driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10, name);
    } else if (rc == cudaSuccess) {
        fprintf(stderr, "heat_cuda: no CUDA device to run on: the NVIDIA driver reports none\n");
    } else {
        fprintf(stderr, "heat_cuda: no CUDA device to run on (cudaGetDeviceCount: %s, %s)\n",
                cudaGetErrorString(rc), name);
    }
}

__global__ static void stencil(const double *u, double *v, int n)
{
    int i = (int)(blockIdx.y * blockDim.y + threadIdx.y) + 1;
    int j = (int)(blockIdx.x * blockDim.x + threadIdx.x) + 1;
    if (i < n - 1 && j < n - 1) {
        size_t k = (size_t)i * n + j;
        v[k] = heat_point(u, k, (size_t)n);
    }
}

int heat_field_init(heat_field *f, int n)
{
    size_t bytes = (size_t)n * n * sizeof *f->u;
    cudaDeviceProp prop;
    int count = 0;

    memset(f, 0, sizeof *f);
    f->n = n;
    f->device.device_type = kDLCUDA;
    f->device.device_id = 0;
    cudaError_t rc = cudaGetDeviceCount(&count);
    if (rc != cudaSuccess || count == 0) {
        no_device(rc);
        return HEAT_ENODEV;
    }
    /* v's border stays 0: the kernel writes the inner points only. */
    if (CUDA(cudaSetDevice(0)) < 0 || CUDA(cudaGetDeviceProperties(&prop, 0)) < 0 ||
        CUDA(cudaMalloc(&f->u, bytes)) < 0 || CUDA(cudaMalloc(&f->v, bytes)) < 0 ||
        CUDA(cudaMemset(f->v, 0, bytes)) < 0) {
        heat_field_destroy(f);
        return -1;
    }
    snprintf(f->where, sizeof f->where, "the memory of CUDA device 0 (%.100s)", prop.name);
    return 0;
}

int heat_field_set(heat_field *f, const double *host)
{
    size_t bytes = (size_t)f->n * f->n * sizeof *f->u;
    return CUDA(cudaMemcpy(f->u, host, bytes, cudaMemcpyHostToDevice));
}

int heat_field_get(const heat_field *f, double *host)
{
    size_t bytes = (size_t)f->n * f->n * sizeof *f->u;
    return CUDA(cudaMemcpy(host, f->u, bytes, cudaMemcpyDeviceToHost));
}

int heat_field_step(heat_field *f)
{
    dim3 threads(32, 8), blocks((f->n - 2 + 31) / 32, (f->n - 2 + 7) / 8);
    stencil<<<blocks, threads>>>(f->u, f->v, f->n);
    if (check(cudaGetLastError(), "launching the stencil kernel") < 0)
        return -1;
    /* v's border is 0 like u's, so v is the whole next field. */
    double *next = f->v;
    f->v = f->u;
    f->u = next;
    return 0;
}

void heat_field_destroy(heat_field *f)
{
    if (f->u)
        CUDA(cudaFree(f->u));
    if (f->v)
        CUDA(cudaFree(f->v));
    f->u = f->v = NULL;
}

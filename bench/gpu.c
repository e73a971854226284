/*
 * gpu.c - tsnap's snapshots of CUDA memory against the plain copies they
 * are made of, in one run, on the same device buffers:
 *
 *   save     tsnap_writer_put of a device tensor (uncompressed, into the
 *            page cache, checksum on) + commit, against cudaMemcpy of
 *            the same bytes into pinned host memory;
 *   blocked  how long the caller waits with tsnap_writer_put_async +
 *            tsnap_writer_wait (until it may overwrite the tensor), against
 *            the same copy;
 *   restore  tsnap_reader_read into device memory, against cudaMemcpy of
 *            the same bytes from pinned host memory.
 *
 *   build/bench/tsnap_gpu_bench [DIR [GiB...]]   (default: /tmp, 1 and 4 GiB)
 *
 * Each measurement is the median of 5, the systems interleaved; the ratio
 * is the copy's time over tsnap's (tsnap's share of the copy's speed).
 */
#define _POSIX_C_SOURCE 200809L
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tsnap.h>

#define REPEATS 5

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v)
{
    qsort(v, REPEATS, sizeof *v, cmp);
    return v[REPEATS / 2];
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "tsnap_gpu_bench: %s: %s\n", what, why);
    exit(1);
}

#define CUDA(call)                                                  \
    do {                                                            \
        cudaError_t rc_ = (call);                                   \
        if (rc_ != cudaSuccess)                                     \
            die(#call, cudaGetErrorString(rc_));                    \
    } while (0)
#define TSNAP(call)                                                 \
    do {                                                            \
        if ((call) < 0)                                             \
            die(#call, tsnap_errmsg());                             \
    } while (0)

static void bench(const char *dir, size_t gib)
{
    size_t n = gib << 30;
    int64_t shape[2] = {(int64_t)(n / 4 / 16384), 16384};
    void *dev = NULL, *pinned = NULL;
    char path[4096];
    double copy_out[REPEATS], save[REPEATS], copy_in[REPEATS], restore[REPEATS];
    double blocked[REPEATS], returned[REPEATS];

    CUDA(cudaMalloc(&dev, n));
    CUDA(cudaHostAlloc(&pinned, n, cudaHostAllocDefault));
    CUDA(cudaMemset(dev, 0x3f, n));
    CUDA(cudaDeviceSynchronize());
    snprintf(path, sizeof path, "%s/tsnap-gpu-bench.h5", dir);
    DLTensor t;
    memset(&t, 0, sizeof t);
    t.data = dev;
    t.device.device_type = kDLCUDA;
    t.ndim = 2;
    t.shape = shape;
    t.dtype.code = kDLFloat;
    t.dtype.bits = 32;
    t.dtype.lanes = 1;
    tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
    o.durable = 0;
    o.overwrite = 1;
    for (int r = 0; r < REPEATS; r++) {
        double t0 = now();
        CUDA(cudaMemcpy(pinned, dev, n, cudaMemcpyDeviceToHost));
        copy_out[r] = now() - t0;

        unlink(path);
        tsnap_writer *w = NULL;
        t0 = now();
        TSNAP(tsnap_writer_create(&w, path, &o));
        TSNAP(tsnap_writer_put(w, "state", &t));
        TSNAP(tsnap_writer_commit(w));
        save[r] = now() - t0;
        tsnap_writer_free(w);

        unlink(path);
        TSNAP(tsnap_writer_create(&w, path, &o));
        t0 = now();
        TSNAP(tsnap_writer_put_async(w, "state", &t, NULL));
        returned[r] = now() - t0;
        TSNAP(tsnap_writer_wait(w));
        blocked[r] = now() - t0;
        TSNAP(tsnap_writer_commit(w));
        tsnap_writer_free(w);

        t0 = now();
        CUDA(cudaMemcpy(dev, pinned, n, cudaMemcpyHostToDevice));
        copy_in[r] = now() - t0;

        tsnap_reader *rd = NULL;
        TSNAP(tsnap_reader_open(&rd, path));
        t0 = now();
        TSNAP(tsnap_reader_read(rd, "state", NULL, NULL, NULL, &t));
        restore[r] = now() - t0;
        tsnap_reader_free(rd);
    }
    unlink(path);
    double co = median(copy_out), s = median(save), ci = median(copy_in), rs = median(restore);
    printf("%zu GiB  save %.3f s (%.2f GB/s)  pinned D2H %.3f s (%.2f GB/s)  tsnap/copy %.2f\n",
           gib, s, n / s / 1e9, co, n / co / 1e9, co / s);
    double b = median(blocked), ret = median(returned);
    printf("%zu GiB  async put blocks %.3f s (returns in %.1f us)  pinned D2H %.3f s  "
           "blocked/copy %.2f\n", gib, b, ret * 1e6, co, b / co);
    printf("%zu GiB  restore %.3f s (%.2f GB/s)  pinned H2D %.3f s (%.2f GB/s)  tsnap/copy %.2f\n",
           gib, rs, n / rs / 1e9, ci, n / ci / 1e9, ci / rs);
    cudaFreeHost(pinned);
    cudaFree(dev);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    struct cudaDeviceProp p;
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
        die("no CUDA device", "nothing to measure");
    CUDA(cudaGetDeviceProperties(&p, 0));
    printf("tsnap %s, GPU %s, %d threads, files in %s\n", tsnap_version(), p.name,
           tsnap_threads(), dir);
    if (argc <= 2) {
        bench(dir, 1);
        bench(dir, 4);
    }
    for (int i = 2; i < argc; i++)
        bench(dir, (size_t)atoi(argv[i]));
    return 0;
}

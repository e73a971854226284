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
 *   store    how long tsnap_store_save (wait 0: a background save) blocks
 *            the caller per step, its staging pinned once and reused,
 *            against the same copy (the first step, which pins, apart);
 *   restore  tsnap_reader_read into device memory, against cudaMemcpy of
 *            the same bytes from pinned host memory.
 *
 *   build/bench/tsnap_gpu_bench [DIR [GiB...]]   (default: /tmp, 1 and 4 GiB)
 *
 * Each measurement is the median of 5, the systems interleaved; the ratio
 * is the copy's time over tsnap's (tsnap's share of the copy's speed) for
 * the save and restore, tsnap's blocked time over the copy's for the
 * asynchronous put and the store.  The last lines hold the ratios against
 * the targets: save and restore >= 0.8, blocked <= 1.2.
 */
#define _POSIX_C_SOURCE 200809L
#include <cuda.h>
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

static int missed; /* targets missed */

static void target(size_t gib, const char *what, double ratio, double limit, int at_least)
{
    int met = at_least ? ratio >= limit : ratio <= limit;
    printf("target %zu GiB %-34s %.2f (%s %.1f: %s)\n", gib, what, ratio, at_least ? ">=" : "<=",
           limit, met ? "met" : "MISSED");
    missed += !met;
}

/* Background store saves, one per step, the store idle before each (as
 * after a step's compute): the median time a save blocks, and the first. */
static void store_steps(const char *dir, DLTensor *t, double *first, double *steady)
{
    char sdir[4096], path[4096];
    double blocked[REPEATS + 1];
    tsnap_store *s = NULL;
    tsnap_store_options so = TSNAP_STORE_OPTIONS_INIT;
    const char *names[1] = {"state"};
    so.keep_last = 1;
    so.write.durable = 0;
    so.staging_bytes = TSNAP_DEFAULT_STAGING_BYTES > ((size_t)5 << 30) ? TSNAP_DEFAULT_STAGING_BYTES
                                                                      : (size_t)5 << 30;
    snprintf(sdir, sizeof sdir, "%s/tsnap-gpu-bench-store", dir);
    TSNAP(tsnap_store_open(&s, sdir, &so));
    for (int step = 0; step <= REPEATS; step++) {
        double t0 = now();
        TSNAP(tsnap_store_save(s, step, names, t, 1, NULL, 0, 0));
        blocked[step] = now() - t0;
        TSNAP(tsnap_store_wait(s));
    }
    *first = blocked[0];
    *steady = median(blocked + 1);
    TSNAP(tsnap_store_path(s, REPEATS, path, sizeof path));
    tsnap_store_free(s);
    unlink(path);
    snprintf(path, sizeof path, "%s/.tsnap-store.lock", sdir);
    unlink(path);
    rmdir(sdir);
}

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
    double store_first, store_steady;
    store_steps(dir, &t, &store_first, &store_steady);
    double co = median(copy_out), s = median(save), ci = median(copy_in), rs = median(restore);
    printf("%zu GiB  save %.3f s (%.2f GB/s)  pinned D2H %.3f s (%.2f GB/s)  tsnap/copy %.2f\n",
           gib, s, n / s / 1e9, co, n / co / 1e9, co / s);
    double b = median(blocked), ret = median(returned);
    printf("%zu GiB  async put blocks %.3f s (returns in %.1f us)  pinned D2H %.3f s  "
           "blocked/copy %.2f\n", gib, b, ret * 1e6, co, b / co);
    printf("%zu GiB  store save blocks %.3f s per step (first step %.3f s)  pinned D2H %.3f s  "
           "blocked/copy %.2f\n", gib, store_steady, store_first, co, store_steady / co);
    printf("%zu GiB  restore %.3f s (%.2f GB/s)  pinned H2D %.3f s (%.2f GB/s)  tsnap/copy %.2f\n",
           gib, rs, n / rs / 1e9, ci, n / ci / 1e9, ci / rs);
    target(gib, "snapshot / pinned D2H speed", co / s, 0.8, 1);
    target(gib, "async put blocked / pinned D2H time", b / co, 1.2, 0);
    target(gib, "store save blocked / pinned D2H time", store_steady / co, 1.2, 0);
    target(gib, "restore / pinned H2D speed", ci / rs, 0.8, 1);
    cudaFreeHost(pinned);
    cudaFree(dev);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    struct cudaDeviceProp p;
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        fprintf(stderr, "tsnap_gpu_bench: no CUDA device: nothing to measure\n");
        return 77; /* skipped, as the tests say it */
    }
    int driver = 0, runtime = 0;
    CUDA(cudaGetDeviceProperties(&p, 0));
    CUDA(cudaDriverGetVersion(&driver));
    CUDA(cudaRuntimeGetVersion(&runtime));
    printf("tsnap %s, GPU %s (sm_%d%d, %.1f GiB), driver for CUDA %d.%d, runtime CUDA %d.%d, "
           "built with CUDA %d.%d, %d threads, files in %s\n",
           tsnap_version(), p.name, p.major, p.minor, p.totalGlobalMem / 1073741824.0,
           driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10,
           CUDA_VERSION / 1000, CUDA_VERSION % 1000 / 10, tsnap_threads(), dir);
    if (argc <= 2) {
        bench(dir, 1);
        bench(dir, 4);
    }
    for (int i = 2; i < argc; i++)
        bench(dir, (size_t)atoi(argv[i]));
    printf("targets missed: %d\n", missed);
    return 0;
}

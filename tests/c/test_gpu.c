/*
 * test_gpu.c - tensors in real CUDA memory (built with the CUDA toolkit;
 * every test prints why it skips when the machine has no CUDA device).
 *
 * Device memory is made with the CUDA runtime here, independently of
 * tsnap; what tsnap writes from it is read back on the host and compared
 * with the logical bytes of the same tensor in host memory.
 */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static int have_gpu(void)
{
    int n = 0;
    cudaError_t rc = cudaGetDeviceCount(&n);
    if (rc != cudaSuccess || n == 0) {
        printf("\n    skipped: no CUDA device (%s)\n",
               rc != cudaSuccess ? cudaGetErrorString(rc) : "none found");
        return 0;
    }
    return 1;
}

#define CUDA_OK(call) CHECK_MSG((call) == cudaSuccess, "%s: %s", #call, \
                                cudaGetErrorString(cudaGetLastError()))

/* The case's whole source buffer copied to the device; `t` then describes
 * the same tensor there (same strides and byte offset). */
static void *to_device(const tcase *c, DLTensor *t)
{
    void *dev = NULL;
    CUDA_OK(cudaMalloc(&dev, c->base_bytes ? c->base_bytes : 1));
    if (c->base_bytes)
        CUDA_OK(cudaMemcpy(dev, c->base, c->base_bytes, cudaMemcpyHostToDevice));
    *t = c->t;
    t->data = (char *)dev + ((char *)c->t.data - (char *)c->base);
    t->device.device_type = kDLCUDA;
    t->device.device_id = 0;
    return dev;
}

static void check_every_case_round_trips_through_device_memory(const optset *o,
                                                               const char *label)
{
    if (!have_gpu())
        return;
    rng r;
    rng_init(&r, label);
    caseset cs;
    caseset_build(&cs, &r);
    const char *path = tpath("gpu.h5");
    tsnap_write_options opts;
    optset_apply(o, &opts);
    tsnap_writer *w = NULL;
    void **dev = calloc(cs.n, sizeof *dev);
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, &opts));
    for (size_t i = 0; i < cs.n; i++) {
        ctx_set("%s [%s]", cs.v[i].name, o->label);
        DLTensor t;
        dev[i] = to_device(&cs.v[i], &t);
        CHECK_OK(tsnap_writer_put(w, cs.v[i].name, &t));
    }
    ctx_clear();
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);

    tsnap_reader *rd = open_reader(path);
    CHECK_OK(tsnap_reader_verify(rd, NULL));
    for (size_t i = 0; i < cs.n; i++) {
        const tcase *c = &cs.v[i];
        ctx_set("%s [%s]", c->name, o->label);
        int64_t shape[TSNAP_MAX_NDIM];
        memcpy(shape, c->shape, sizeof shape);
        unsigned char *got = alloc_filled(c->nbytes + 1, 0x5a);
        DLTensor host = cpu_tensor(got, c->dtype, c->ndim, shape, NULL, 0);
        if (CHECK_OK(tsnap_reader_read(rd, c->name, NULL, NULL, NULL, &host)))
            CHECK_MEM(got, c->expected, c->nbytes, "saved from device memory");
        /* and back into device memory */
        void *back = NULL;
        CUDA_OK(cudaMalloc(&back, c->nbytes + 1));
        DLTensor d = cpu_tensor(back, c->dtype, c->ndim, shape, NULL, 0);
        d.device.device_type = kDLCUDA;
        memset(got, 0x5a, c->nbytes);
        if (CHECK_OK(tsnap_reader_read(rd, c->name, NULL, NULL, NULL, &d))) {
            CUDA_OK(cudaMemcpy(got, back, c->nbytes, cudaMemcpyDeviceToHost));
            CHECK_MEM(got, c->expected, c->nbytes, "read into device memory");
        }
        cudaFree(back);
        cudaFree(dev[i]);
        free(got);
    }
    ctx_clear();
    tsnap_reader_free(rd);
    free(dev);
    caseset_free(&cs);
}

static void test_gpu_every_case_round_trips_uncompressed(void)
{
    check_every_case_round_trips_through_device_memory(&OPT_PLAIN, __func__);
}

static void test_gpu_every_case_round_trips_in_tiny_deflate_chunks(void)
{
    check_every_case_round_trips_through_device_memory(&OPT_TINY_DEFLATE, __func__);
}

/* Work queued on the caller's stream (a device-side fill behind a long
 * one) writes the tensor; a put on that stream sees what it wrote. */
static void test_gpu_a_put_on_a_stream_follows_the_work_queued_on_it(void)
{
    if (!have_gpu())
        return;
    size_t n = (size_t)64 << 20, big = (size_t)1 << 30;
    void *x = NULL, *slow = NULL;
    cudaStream_t s;
    CUDA_OK(cudaMalloc(&x, n));
    CUDA_OK(cudaMalloc(&slow, big));
    CUDA_OK(cudaMemset(x, 0x11, n));
    CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    for (int i = 0; i < 8; i++) /* keeps the stream busy for a while */
        CUDA_OK(cudaMemsetAsync(slow, i, big, s));
    CUDA_OK(cudaMemsetAsync(x, 0x7e, n, s));
    int64_t shape[1] = {(int64_t)n};
    DLTensor t = cpu_tensor(x, TSNAP_UINT8, 1, shape, NULL, 0);
    t.device.device_type = kDLCUDA;
    const char *path = tpath("stream.h5");
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_OK(tsnap_writer_put_stream(w, "x", &t, s));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    unsigned char *got = malloc(n), *want = malloc(n);
    memset(want, 0x7e, n);
    tsnap_reader *rd = open_reader(path);
    DLTensor h = cpu_tensor(got, TSNAP_UINT8, 1, shape, NULL, 0);
    CHECK_OK(tsnap_reader_read(rd, "x", NULL, NULL, NULL, &h));
    CHECK_MEM(got, want, n, "the bytes the stream's last fill wrote");
    tsnap_reader_free(rd);
    cudaStreamDestroy(s);
    cudaFree(x);
    cudaFree(slow);
    free(got);
    free(want);
}

/* An asynchronous put, waited for, then the tensor overwritten on the
 * device: the file holds the bytes from before. */
static void test_gpu_an_async_put_keeps_what_the_tensor_held_when_staged(void)
{
    if (!have_gpu())
        return;
    rng r;
    rng_init(&r, __func__);
    size_t n = (size_t)48 << 20;
    unsigned char *src = malloc(n), *got = malloc(n);
    rng_fill(&r, src, n);
    void *x = NULL;
    CUDA_OK(cudaMalloc(&x, n));
    CUDA_OK(cudaMemcpy(x, src, n, cudaMemcpyHostToDevice));
    int64_t shape[2] = {(int64_t)(n / 4096), 4096};
    DLTensor t = cpu_tensor(x, TSNAP_UINT8, 2, shape, NULL, 0);
    t.device.device_type = kDLCUDA;
    const char *path = tpath("async.h5");
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_OK(tsnap_writer_put_async(w, "x", &t, NULL));
    CHECK_OK(tsnap_writer_wait(w));
    CUDA_OK(cudaMemset(x, 0, n));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    tsnap_reader *rd = open_reader(path);
    DLTensor h = cpu_tensor(got, TSNAP_UINT8, 2, shape, NULL, 0);
    CHECK_OK(tsnap_reader_read_verified(rd, "x", &h));
    CHECK_MEM(got, src, n, "the tensor as it was at the wait");
    tsnap_reader_free(rd);
    cudaFree(x);
    free(src);
    free(got);
}

/* A hyperslab with steps, restored into a transposed device tensor. */
static void test_gpu_a_hyperslab_restores_into_a_strided_device_tensor(void)
{
    if (!have_gpu())
        return;
    rng r;
    rng_init(&r, __func__);
    int64_t shape[2] = {1031, 777}, start[2] = {5, 3}, count[2] = {500, 250}, step[2] = {2, 3};
    size_t n = (size_t)shape[0] * shape[1];
    double *src = malloc(n * 8), *want = malloc(500 * 250 * 8), *got = malloc(500 * 250 * 8);
    rng_fill_dtype(&r, src, n, TSNAP_FLOAT64);
    const char *path = tpath("slab.h5");
    tsnap_writer *w = NULL;
    DLTensor t = cpu_tensor(src, TSNAP_FLOAT64, 2, shape, NULL, 0);
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_OK(tsnap_writer_put(w, "x", &t));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    for (int i = 0; i < 500; i++)
        for (int j = 0; j < 250; j++)
            want[i * 250 + j] = src[(5 + 2 * i) * 777 + 3 + 3 * j];
    void *dev = NULL;
    CUDA_OK(cudaMalloc(&dev, 500 * 250 * 8));
    int64_t fstrides[2] = {1, 500}; /* Fortran order */
    DLTensor d = cpu_tensor(dev, TSNAP_FLOAT64, 2, count, fstrides, 0);
    d.device.device_type = kDLCUDA;
    tsnap_reader *rd = open_reader(path);
    CHECK_OK(tsnap_reader_read(rd, "x", start, count, step, &d));
    CUDA_OK(cudaMemcpy(got, dev, 500 * 250 * 8, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int i = 0; i < 500 && !bad; i++)
        for (int j = 0; j < 250 && !bad; j++)
            bad = memcmp(&got[i + 500 * j], &want[i * 250 + j], 8) != 0;
    CHECK_MSG(!bad, "the hyperslab as restored into a Fortran-order device tensor");
    tsnap_reader_free(rd);
    cudaFree(dev);
    free(src);
    free(want);
    free(got);
}

/* Writes `t` as "x" and checks that the file holds `want` (n bytes). */
static void put_and_compare(const DLTensor *t, void *stream, const void *want, size_t n,
                            const char *what)
{
    const char *path = tpath("put.h5");
    tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
    o.overwrite = 1;
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, &o));
    CHECK_OK(tsnap_writer_put_stream(w, "x", t, stream));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    unsigned char *got = malloc(n ? n : 1);
    int64_t shape[1] = {(int64_t)n};
    tsnap_reader *rd = open_reader(path);
    DLTensor h = cpu_tensor(got, TSNAP_UINT8, 1, shape, NULL, 0);
    h.dtype = t->dtype; /* the same bytes, read as the tensor's dtype */
    h.shape = t->shape;
    h.ndim = t->ndim;
    CHECK_OK(tsnap_reader_read(rd, "x", NULL, NULL, NULL, &h));
    CHECK_MEM(got, want, n, what);
    tsnap_reader_free(rd);
    free(got);
}

/* cudaDeviceReset between puts: the kernels and pinned buffers tsnap kept
 * are gone with the context, and the next puts work. */
static void test_gpu_puts_work_after_a_device_reset(void)
{
    if (!have_gpu())
        return;
    rng r;
    rng_init(&r, __func__);
    int64_t shape[2] = {513, 257}, fstrides[2] = {1, 513};
    size_t n = 513 * 257 * 4;
    float *src = malloc(n), *want = malloc(n);
    rng_fill_dtype(&r, src, 513 * 257, TSNAP_FLOAT32);
    for (int i = 0; i < 513; i++) /* the Fortran-order tensor in C order */
        for (int j = 0; j < 257; j++)
            want[i * 257 + j] = src[i + 513 * j];
    for (int round = 0; round < 3; round++) {
        ctx_set("after %d resets", round);
        void *dev = NULL;
        CUDA_OK(cudaMalloc(&dev, n));
        CUDA_OK(cudaMemcpy(dev, src, n, cudaMemcpyHostToDevice));
        DLTensor t = cpu_tensor(dev, TSNAP_FLOAT32, 2, shape, fstrides, 0);
        t.device.device_type = kDLCUDA;
        put_and_compare(&t, NULL, want, n, "a strided tensor packed on the device");
        CUDA_OK(cudaFree(dev));
        CUDA_OK(cudaDeviceReset());
    }
    ctx_clear();
    free(src);
    free(want);
}

/* What the driver says the pointer is decides: host memory labelled CUDA
 * is refused, managed memory is read, pinned host memory (kDLCUDAHost) is
 * read after the work queued on the stream. */
static void test_gpu_pointers_are_checked_and_pinned_memory_is_ordered(void)
{
    if (!have_gpu())
        return;
    size_t n = (size_t)16 << 20;
    int64_t shape[1] = {(int64_t)n};
    unsigned char *host = malloc(n), *want = malloc(n), *pinned = NULL, *managed = NULL;
    memset(host, 0x21, n);
    DLTensor t = cpu_tensor(host, TSNAP_UINT8, 1, shape, NULL, 0);
    t.device.device_type = kDLCUDA;
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, tpath("refused.h5"), NULL));
    CHECK_ERR(tsnap_writer_put(w, "host", &t), TSNAP_EINVAL);
    CHECK_ERRMSG_HAS("host memory");
    CUDA_OK(cudaMallocHost((void **)&pinned, n));
    t.data = pinned;
    CHECK_ERR(tsnap_writer_put(w, "pinned", &t), TSNAP_EINVAL);
    CHECK_ERRMSG_HAS("pinned host memory");
    tsnap_writer_free(w);

    CUDA_OK(cudaMallocManaged((void **)&managed, n, cudaMemAttachGlobal));
    memset(managed, 0x5c, n);
    memset(want, 0x5c, n);
    t.data = managed;
    t.device.device_type = kDLCUDAManaged;
    put_and_compare(&t, NULL, want, n, "managed memory");

    /* pinned memory that a stream fills behind a long job */
    void *slow = NULL;
    size_t big = (size_t)1 << 30;
    cudaStream_t s;
    CUDA_OK(cudaMalloc(&slow, big));
    CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    memset(pinned, 0x11, n);
    for (int i = 0; i < 8; i++)
        CUDA_OK(cudaMemsetAsync(slow, i, big, s));
    CUDA_OK(cudaMemcpyAsync(pinned, managed, n, cudaMemcpyDefault, s));
    t.data = pinned;
    t.device.device_type = kDLCUDAHost;
    put_and_compare(&t, s, want, n, "pinned memory, after the stream's copy into it");
    CUDA_OK(cudaStreamDestroy(s));
    cudaFree(slow);
    cudaFree(managed);
    cudaFreeHost(pinned);
    free(host);
    free(want);
}

const test_entry gpu_tests[] = {
    TEST(test_gpu_every_case_round_trips_uncompressed),
    TEST(test_gpu_every_case_round_trips_in_tiny_deflate_chunks),
    TEST(test_gpu_a_put_on_a_stream_follows_the_work_queued_on_it),
    TEST(test_gpu_an_async_put_keeps_what_the_tensor_held_when_staged),
    TEST(test_gpu_a_hyperslab_restores_into_a_strided_device_tensor),
    TEST(test_gpu_puts_work_after_a_device_reset),
    TEST(test_gpu_pointers_are_checked_and_pinned_memory_is_ordered),
    TEST_END,
};

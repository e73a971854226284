/*
 * test_describe.c - tsnap_reader_describe for every dtype × layout × codec
 * setting: dtype, shape, the chunk shape of the rule of docs/FORMAT.md (recomputed
 * here), codec and shuffle, sizes, the recorded checksum, and whether the
 * tensor can be mapped.  A mappable tensor's offset/length is checked
 * against the file's bytes read with pread, and tsnap_mapping_create must
 * give the same bytes as the read.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static int shapes_equal(int ndim, const int64_t *a, const int64_t *b)
{
    for (int d = 0; d < ndim; d++)
        if (a[d] != b[d])
            return 0;
    return 1;
}

static const char *shape_str(int ndim, const int64_t *s, char *buf, size_t n)
{
    size_t off = (size_t)snprintf(buf, n, "(");
    for (int d = 0; d < ndim && off < n; d++)
        off += (size_t)snprintf(buf + off, n - off, "%lld%s", (long long)s[d],
                                d + 1 < ndim ? "," : "");
    if (off < n)
        snprintf(buf + off, n - off, ")");
    return buf;
}

#define CHECK_SHAPE(ndim, got, want)                                                   \
    do {                                                                               \
        char g_[400], w_[400];                                                         \
        CHECK_MSG(shapes_equal((ndim), (got), (want)), "%s is %s, expected %s", #got, \
                  shape_str((ndim), (got), g_, sizeof g_),                             \
                  shape_str((ndim), (want), w_, sizeof w_));                           \
    } while (0)

/* The mapping of `name` has the case's dtype, shape and bytes. */
static void check_mapping_bytes(tsnap_reader *r, const tcase *c)
{
    tsnap_mapping *m = NULL;
    if (!CHECK_OK(tsnap_mapping_create(&m, r, c->name)))
        return;
    const DLTensor *t = tsnap_mapping_tensor(m);
    CHECK_FATAL(t != NULL);
    DLDataType want = dl_type(c->dtype);
    CHECK_I64(t->dtype.code, want.code);
    CHECK_I64(t->dtype.bits, want.bits);
    CHECK_I64(t->dtype.lanes, 1);
    CHECK_I64(t->device.device_type, kDLCPU);
    CHECK_I64(t->ndim, c->ndim);
    if (t->ndim == c->ndim && c->ndim > 0) {
        CHECK_SHAPE(c->ndim, t->shape, c->shape);
        if (t->strides) {
            int64_t s = 1, cs[TSNAP_MAX_NDIM];
            for (int d = c->ndim - 1; d >= 0; d--) {
                cs[d] = s;
                s *= c->shape[d];
            }
            for (int d = 0; d < c->ndim; d++)
                if (c->shape[d] > 1)
                    CHECK_MSG(t->strides[d] == cs[d], "mapped stride %d is %lld, expected %lld",
                              d, (long long)t->strides[d], (long long)cs[d]);
        }
    }
    if (c->nbytes)
        CHECK_MEM((const unsigned char *)t->data + t->byte_offset, c->expected, c->nbytes,
                  "mapped bytes");
    tsnap_mapping_free(m);
}

static void check_describe_case(tsnap_reader *r, int fd, const tcase *c, const optset *o)
{
    tsnap_tensor_info info;
    memset(&info, 0x5a, sizeof info);
    if (!CHECK_OK(tsnap_reader_describe(r, c->name, &info)))
        return;
    CHECK_I64(info.dtype, c->dtype);
    CHECK_I64(info.ndim, c->ndim);
    if (info.ndim == c->ndim)
        CHECK_SHAPE(c->ndim, info.shape, c->shape);

    int chunked = case_chunked(c), filtered = case_filtered(c, o), shuffled = case_shuffled(c, o);
    int64_t chunk[TSNAP_MAX_NDIM];
    int flat = 1;
    CHECK_I64(info.chunked, chunked);
    if (chunked) {
        flat = chunk_rule(c->ndim, c->shape, c->itemsize, o->chunk_bytes,
                          o->codec == TSNAP_CODEC_NONE, chunk);
        CHECK_SHAPE(c->ndim, info.chunk, chunk);
    }
    CHECK_I64(info.codec, filtered ? TSNAP_CODEC_DEFLATE : TSNAP_CODEC_NONE);
    CHECK_I64(info.shuffle, shuffled);
    CHECK_I64(info.nfilters, filtered ? 1 + shuffled : 0);
    if (filtered && info.nfilters == 1 + shuffled) {
        if (shuffled)
            CHECK_I64(info.filters[0], 2);
        CHECK_I64(info.filters[shuffled], 1);
    }
    CHECK_I64(info.nbytes, c->nbytes);
    CHECK_I64(info.big_endian, 0);

    if (!filtered) {
        /* unfiltered storage is allocated whole: every chunk at full size */
        uint64_t stored = c->nbytes;
        if (chunked) {
            stored = c->itemsize;
            for (int d = 0; d < c->ndim; d++)
                stored *= (uint64_t)(((c->shape[d] + chunk[d] - 1) / chunk[d]) * chunk[d]);
        }
        CHECK_I64(info.stored_bytes, stored);
    }

    char tag[40] = "";
    if (!o->no_checksum)
        xxh3_tag(c->expected, c->nbytes, tag);
    CHECK_STR(info.checksum, tag);

    if (c->nbytes == 0) {
        CHECK_I64(info.map_status, TSNAP_MAP_EMPTY);
        CHECK_I64(info.length, 0);
    } else if (filtered) {
        CHECK_I64(info.map_status, TSNAP_MAP_FILTERED);
    } else if (flat) {
        CHECK_I64(info.map_status, TSNAP_MAP_OK);
    } else {
        /* chunks partial in the middle of the tensor leave gaps in the file */
        CHECK_MSG(info.map_status != TSNAP_MAP_OK && info.map_status != TSNAP_MAP_EMPTY,
                  "map_status is %d (%s) though partial chunks inside the tensor leave gaps",
                  info.map_status, tsnap_map_status_str(info.map_status));
    }

    if (info.map_status == TSNAP_MAP_OK) {
        CHECK_I64(info.length, c->nbytes);
        if (info.length == c->nbytes) {
            unsigned char *buf = alloc_filled(c->nbytes, 0);
            ssize_t got = pread(fd, buf, c->nbytes, (off_t)info.offset);
            CHECK_I64(got, c->nbytes);
            CHECK_MEM(buf, c->expected, c->nbytes, "file bytes at [offset, offset+length)");
            free(buf);
        }
        check_mapping_bytes(r, c);
    } else if (info.map_status == TSNAP_MAP_EMPTY) {
        check_mapping_bytes(r, c);
    } else {
        tsnap_mapping *m = (tsnap_mapping *)&info; /* must become NULL */
        CHECK_ERR(tsnap_mapping_create(&m, r, c->name), TSNAP_ENOTMAPPABLE);
        CHECK(m == NULL);
    }
}

static void describe_every_case(const optset *o, const char *label)
{
    rng r;
    rng_init(&r, label);
    caseset cs;
    caseset_build(&cs, &r);
    const char *path = tpath("snap.h5");
    if (caseset_write(&cs, path, o) == 0) {
        tsnap_reader *rd = open_reader(path);
        int fd = open(path, O_RDONLY);
        CHECK_FATAL(fd >= 0);
        for (size_t i = 0; i < cs.n; i++) {
            ctx_set("%s [%s]", cs.v[i].name, o->label);
            check_describe_case(rd, fd, &cs.v[i], o);
        }
        ctx_clear();
        close(fd);
        tsnap_reader_free(rd);
    }
    caseset_free(&cs);
}

static void test_describe_matches_every_dtype_and_layout_uncompressed(void)
{
    describe_every_case(&OPT_PLAIN, __func__);
}

static void test_describe_matches_every_dtype_and_layout_with_deflate(void)
{
    describe_every_case(&OPT_DEFLATE, __func__);
}

static void test_describe_matches_every_dtype_and_layout_with_deflate_and_shuffle_off(void)
{
    describe_every_case(&OPT_DEFLATE_NO_SHUFFLE, __func__);
}

static void test_describe_matches_every_dtype_and_layout_with_deflate_and_shuffle_on(void)
{
    describe_every_case(&OPT_DEFLATE_SHUFFLE, __func__);
}

static void test_describe_matches_every_dtype_and_layout_across_many_small_chunks(void)
{
    describe_every_case(&OPT_SMALL, __func__);
}

static void test_describe_matches_every_dtype_and_layout_across_many_small_deflated_chunks(void)
{
    describe_every_case(&OPT_SMALL_DEFLATE, __func__);
}

static void test_describe_matches_every_dtype_and_layout_with_chunks_smaller_than_one_row(void)
{
    describe_every_case(&OPT_TINY, __func__);
}

static void test_describe_matches_every_dtype_and_layout_without_checksums(void)
{
    optset o = OPT_PLAIN;
    o.label = "uncompressed, no checksums";
    o.no_checksum = 1;
    describe_every_case(&o, __func__);
}

static void test_default_chunks_split_the_leading_axis_of_a_large_tensor(void)
{
    rng r;
    rng_init(&r, __func__);
    tcase c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "big");
    c.dtype = TSNAP_FLOAT32;
    c.itemsize = 4;
    c.ndim = 3;
    c.shape[0] = 5;
    c.shape[1] = 512;
    c.shape[2] = 1024;
    c.nbytes = c.base_bytes = (size_t)5 * 512 * 1024 * 4;
    c.base = alloc_filled(c.nbytes, 0);
    rng_fill(&r, c.base, c.nbytes);
    c.expected = c.base;
    c.t = cpu_tensor(c.base, c.dtype, 3, c.shape, NULL, 0);

    const char *path = tpath("big.h5");
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_OK(tsnap_writer_put(w, "big", &c.t));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);

    tsnap_reader *rd = open_reader(path);
    tsnap_tensor_info info;
    CHECK_OK(tsnap_reader_describe(rd, "big", &info));
    CHECK_I64(info.chunk[0], 2); /* 4 MiB / (512 × 1024 × 4 bytes) */
    CHECK_I64(info.chunk[1], 512);
    CHECK_I64(info.chunk[2], 1024);
    CHECK_I64(info.stored_bytes, (uint64_t)3 * (4 << 20));
    int fd = open(path, O_RDONLY);
    check_describe_case(rd, fd, &c, &OPT_PLAIN);
    close(fd);
    tsnap_reader_free(rd);
    free(c.base);
}

static void test_mapping_outlives_the_reader(void)
{
    rng r;
    rng_init(&r, __func__);
    int64_t shape[2] = {64, 33};
    size_t n = 64 * 33 * 2;
    unsigned char *src = alloc_filled(n, 0);
    rng_fill(&r, src, n);
    DLTensor t = cpu_tensor(src, TSNAP_FLOAT16, 2, shape, NULL, 0);
    const char *path = tpath("snap.h5");
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_OK(tsnap_writer_put(w, "h", &t));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);

    tsnap_reader *rd = open_reader(path);
    tsnap_mapping *m1 = NULL, *m2 = NULL;
    CHECK_OK_FATAL(tsnap_mapping_create(&m1, rd, "h"));
    CHECK_OK_FATAL(tsnap_mapping_create(&m2, rd, "h"));
    tsnap_reader_free(rd);
    const DLTensor *mt = tsnap_mapping_tensor(m1);
    CHECK_MEM((const unsigned char *)mt->data + mt->byte_offset, src, n, "mapping 1 after the reader");
    tsnap_mapping_free(m1);
    mt = tsnap_mapping_tensor(m2);
    CHECK_MEM((const unsigned char *)mt->data + mt->byte_offset, src, n, "mapping 2 after mapping 1");
    tsnap_mapping_free(m2);
    tsnap_mapping_free(NULL);
    free(src);
}

static void test_mapping_a_deflated_tensor_is_refused_with_enotmappable(void)
{
    int32_t v[100];
    for (int i = 0; i < 100; i++)
        v[i] = i * 7;
    int64_t shape[1] = {100};
    DLTensor t = cpu_tensor(v, TSNAP_INT32, 1, shape, NULL, 0);
    const char *path = tpath("z.h5");
    tsnap_write_options o;
    optset_apply(&OPT_DEFLATE, &o);
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, &o));
    CHECK_OK(tsnap_writer_put(w, "packed", &t));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    tsnap_reader *rd = open_reader(path);
    tsnap_tensor_info info;
    CHECK_OK(tsnap_reader_describe(rd, "packed", &info));
    CHECK_I64(info.map_status, TSNAP_MAP_FILTERED);
    tsnap_mapping *m = (tsnap_mapping *)&info;
    CHECK_ERR(tsnap_mapping_create(&m, rd, "packed"), TSNAP_ENOTMAPPABLE);
    CHECK(m == NULL);
    CHECK_ERRMSG_HAS("packed");
    tsnap_reader_free(rd);
}

static void write_one(const char *path, const char *name, const DLTensor *t)
{
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_OK(tsnap_writer_put(w, name, t));
    CHECK_OK_FATAL(tsnap_writer_commit(w));
    tsnap_writer_free(w);
}

static void test_a_3d_tensor_split_on_its_second_axis_still_maps(void)
{
    /* A 8 MB row is over the 4 MiB chunk, so the split falls on axis 1;
     * floor(4 MiB / 8000) = 524 would leave padded chunks between rows,
     * so the writer picks 500, which divides 1000. */
    int64_t shape[3] = {3, 1000, 1000};
    size_t n = 3 * 1000 * 1000;
    double *v = malloc(n * sizeof *v);
    CHECK_FATAL(v != NULL);
    rng g;
    rng_init(&g, __func__);
    rng_fill_dtype(&g, v, n, TSNAP_FLOAT64);
    DLTensor t = cpu_tensor(v, TSNAP_FLOAT64, 3, shape, NULL, 0);
    const char *path = tpath("snap.h5");
    write_one(path, "field", &t);
    tsnap_reader *r = open_reader(path);
    tsnap_tensor_info info;
    CHECK_OK_FATAL(tsnap_reader_describe(r, "field", &info));
    CHECK_I64(info.chunk[0], 1);
    CHECK_I64(info.chunk[1], 500);
    CHECK_I64(info.chunk[2], 1000);
    CHECK_MSG(info.map_status == TSNAP_MAP_OK, "map status: %s",
              tsnap_map_status_str(info.map_status));
    tsnap_mapping *m = NULL;
    if (CHECK_RC(tsnap_mapping_create(&m, r, "field"), TSNAP_OK)) {
        const DLTensor *mt = tsnap_mapping_tensor(m);
        CHECK_MEM((const char *)mt->data + mt->byte_offset, v, n * sizeof *v, "mapped bytes");
    }
    tsnap_mapping_free(m);
    tsnap_reader_free(r);
    free(v);
}

static void test_mapped_memory_is_read_only(void)
{
    int64_t v[16];
    for (int i = 0; i < 16; i++)
        v[i] = i * i;
    int64_t shape[1] = {16};
    DLTensor t = cpu_tensor(v, TSNAP_INT64, 1, shape, NULL, 0);
    const char *path = tpath("snap.h5");
    write_one(path, "v", &t);
    tsnap_reader *r = open_reader(path);
    tsnap_mapping *m = NULL;
    CHECK_OK_FATAL(tsnap_mapping_create(&m, r, "v"));
    const DLTensor *mt = tsnap_mapping_tensor(m);
    /* The kernel's own record of the mapping: readable, not writable. */
    uintptr_t addr = (uintptr_t)mt->data + mt->byte_offset;
    FILE *maps = fopen("/proc/self/maps", "r");
    CHECK_FATAL(maps != NULL);
    char line[512], perms[8] = "";
    while (fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        char p[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, p) == 3 && addr >= lo && addr < hi)
            snprintf(perms, sizeof perms, "%s", p);
    }
    fclose(maps);
    CHECK_MSG(perms[0] == 'r' && perms[1] == '-', "mapping permissions are '%s'", perms);
#if !defined(__SANITIZE_ADDRESS__)
    /* And a write really faults (AddressSanitizer would catch the fault
     * itself and report it, so this part runs in plain builds only). */
    fflush(NULL);
    pid_t pid = fork();
    CHECK_FATAL(pid >= 0);
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        volatile unsigned char *p = (unsigned char *)addr;
        p[0] ^= 1; /* must fault */
        _exit(0);
    }
    int status = 0;
    CHECK_FATAL(waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFSIGNALED(status) && (WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS),
              "writing to the mapping did not fault (status 0x%x)", status);
#endif
    CHECK_MEM((const unsigned char *)mt->data + mt->byte_offset, v, sizeof v, "mapped bytes");
    tsnap_mapping_free(m);
    tsnap_reader_free(r);
    r = open_reader(path);
    CHECK_OK(tsnap_reader_verify(r, NULL)); /* the file did not change either */
    tsnap_reader_free(r);
}

static void test_a_mapping_keeps_its_bytes_when_a_new_snapshot_replaces_the_file(void)
{
    int32_t a[100], b[100];
    for (int i = 0; i < 100; i++) {
        a[i] = i;
        b[i] = -i - 1;
    }
    int64_t shape[1] = {100};
    DLTensor ta = cpu_tensor(a, TSNAP_INT32, 1, shape, NULL, 0);
    DLTensor tb = cpu_tensor(b, TSNAP_INT32, 1, shape, NULL, 0);
    const char *p = tpath("snap.h5");
    char path[4096];
    snprintf(path, sizeof path, "%s", p);
    write_one(path, "v", &ta);
    tsnap_reader *r = open_reader(path);
    tsnap_mapping *m = NULL;
    CHECK_OK_FATAL(tsnap_mapping_create(&m, r, "v"));
    tsnap_reader_free(r);
    write_one(path, "v", &tb); /* commit renames a new file over the old name */
    const DLTensor *mt = tsnap_mapping_tensor(m);
    CHECK_MEM((const unsigned char *)mt->data + mt->byte_offset, a, sizeof a,
              "the old snapshot's mapped bytes");
    tsnap_mapping_free(m);
    r = open_reader(path);
    int32_t got[100];
    DLTensor dst = cpu_tensor(got, TSNAP_INT32, 1, shape, NULL, 0);
    CHECK_OK(tsnap_reader_read(r, "v", NULL, NULL, NULL, &dst));
    CHECK_MEM(got, b, sizeof b, "the new snapshot");
    tsnap_reader_free(r);
}

const test_entry describe_tests[] = {
    TEST(test_describe_matches_every_dtype_and_layout_uncompressed),
    TEST(test_describe_matches_every_dtype_and_layout_with_deflate),
    TEST(test_describe_matches_every_dtype_and_layout_with_deflate_and_shuffle_off),
    TEST(test_describe_matches_every_dtype_and_layout_with_deflate_and_shuffle_on),
    TEST(test_describe_matches_every_dtype_and_layout_across_many_small_chunks),
    TEST(test_describe_matches_every_dtype_and_layout_across_many_small_deflated_chunks),
    TEST(test_describe_matches_every_dtype_and_layout_with_chunks_smaller_than_one_row),
    TEST(test_describe_matches_every_dtype_and_layout_without_checksums),
    TEST(test_default_chunks_split_the_leading_axis_of_a_large_tensor),
    TEST(test_mapping_outlives_the_reader),
    TEST(test_mapping_a_deflated_tensor_is_refused_with_enotmappable),
    TEST(test_a_3d_tensor_split_on_its_second_axis_still_maps),
    TEST(test_mapped_memory_is_read_only),
    TEST(test_a_mapping_keeps_its_bytes_when_a_new_snapshot_replaces_the_file),
    TEST_END,
};

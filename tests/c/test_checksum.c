/*
 * test_checksum.c - the `tsnap_checksum` attribute is "xxh3-64:%016llx" of
 * XXH3_64bits over the logical bytes (recomputed here), verify and
 * read_verified pass on an intact file, and a flipped data byte makes both
 * fail naming the tensor.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static void check_checksum_attributes(const optset *o, const char *label)
{
    rng r;
    rng_init(&r, label);
    caseset cs;
    caseset_build(&cs, &r);
    const char *path = tpath("snap.h5");
    if (caseset_write(&cs, path, o) == 0) {
        tsnap_reader *rd = open_reader(path);
        for (size_t i = 0; i < cs.n; i++) {
            const tcase *c = &cs.v[i];
            ctx_set("%s [%s]", c->name, o->label);
            char want[40];
            xxh3_tag(c->expected, c->nbytes, want);
            tsnap_attr a;
            if (CHECK_OK(tsnap_reader_attr_find(rd, c->name, "tsnap_checksum", &a))) {
                CHECK_I64(a.kind, TSNAP_ATTR_STRING);
                CHECK_STR(a.string, want);
            }
            CHECK_OK(tsnap_reader_verify(rd, c->name));
            /* and read back with the check on the way */
            unsigned char *got = alloc_filled(c->nbytes + 1, 0xa5);
            int64_t shape[TSNAP_MAX_NDIM];
            memcpy(shape, c->shape, sizeof shape);
            DLTensor dst = cpu_tensor(got, c->dtype, c->ndim, shape, NULL, 0);
            if (CHECK_OK(tsnap_reader_read_verified(rd, c->name, &dst)))
                CHECK_MEM(got, c->expected, c->nbytes, "read with its checksum checked");
            free(got);
        }
        ctx_clear();
        CHECK_OK(tsnap_reader_verify(rd, NULL));
        tsnap_reader_free(rd);
    }
    caseset_free(&cs);
}

static void test_checksum_attribute_is_xxh3_64_of_the_logical_bytes_uncompressed(void)
{
    check_checksum_attributes(&OPT_PLAIN, __func__);
}

static void test_checksum_attribute_is_xxh3_64_of_the_logical_bytes_with_deflate(void)
{
    check_checksum_attributes(&OPT_SMALL_DEFLATE, __func__);
}

static const optset OPT_SMALL_ZSTD = {"zstd, 256-byte chunks", TSNAP_CODEC_ZSTD, 0, -1, 256, 0};
static const optset OPT_LZ4 = {"lz4", TSNAP_CODEC_LZ4, 0, -1, 0, 0};

static void test_checksum_attribute_is_xxh3_64_of_the_logical_bytes_in_small_chunks(void)
{
    check_checksum_attributes(&OPT_SMALL, __func__);
}

static void test_checksum_attribute_is_xxh3_64_of_the_logical_bytes_with_zstd_and_lz4(void)
{
    check_checksum_attributes(&OPT_SMALL_ZSTD, __func__);
    check_checksum_attributes(&OPT_LZ4, __func__);
}

static void test_checksum_of_an_empty_tensor_is_xxh3_of_no_bytes(void)
{
    /* XXH3_64bits of zero bytes, written out as a constant */
    const char *want = "xxh3-64:2d06800538d394c2";
    char got[40];
    xxh3_tag("", 0, got);
    CHECK_STR(got, want);
    int64_t shape[2] = {0, 5};
    DLTensor t = cpu_tensor(got, TSNAP_FLOAT32, 2, shape, NULL, 0);
    const char *path = tpath("e.h5");
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_OK(tsnap_writer_put(w, "e", &t));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    tsnap_reader *rd = open_reader(path);
    tsnap_attr a;
    CHECK_OK(tsnap_reader_attr_find(rd, "e", "tsnap_checksum", &a));
    CHECK_STR(a.string, want);
    CHECK_OK(tsnap_reader_verify(rd, "e"));
    tsnap_reader_free(rd);
}

/* Three uncompressed tensors; returns the path. */
static const char *write_three(rng *r, unsigned char *data[3], size_t *n)
{
    static const char *names[3] = {"alpha", "deep/inside/beta", "gamma"};
    int64_t shape[2] = {40, 25};
    *n = 40 * 25 * 8;
    const char *path = tpath("three.h5");
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    for (int i = 0; i < 3; i++) {
        data[i] = alloc_filled(*n, 0);
        rng_fill(r, data[i], *n);
        DLTensor t = cpu_tensor(data[i], TSNAP_FLOAT64, 2, shape, NULL, 0);
        CHECK_OK(tsnap_writer_put(w, names[i], &t));
    }
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    return path;
}

static void flip_byte_of(const char *path, const char *name, uint64_t at)
{
    tsnap_reader *rd = open_reader(path);
    tsnap_tensor_info info;
    CHECK_OK_FATAL(tsnap_reader_describe(rd, name, &info));
    CHECK_FATAL(info.map_status == TSNAP_MAP_OK && at < info.length);
    tsnap_reader_free(rd);
    int fd = open(path, O_RDWR);
    CHECK_FATAL(fd >= 0);
    unsigned char b;
    CHECK_FATAL(pread(fd, &b, 1, (off_t)(info.offset + at)) == 1);
    b ^= 0x10;
    CHECK_FATAL(pwrite(fd, &b, 1, (off_t)(info.offset + at)) == 1);
    close(fd);
}

static void test_verify_passes_for_every_tensor_of_an_intact_file(void)
{
    rng r;
    rng_init(&r, __func__);
    unsigned char *data[3];
    size_t n;
    const char *path = write_three(&r, data, &n);
    tsnap_reader *rd = open_reader(path);
    CHECK_OK(tsnap_reader_verify(rd, NULL));
    CHECK_OK(tsnap_reader_verify(rd, "alpha"));
    CHECK_OK(tsnap_reader_verify(rd, "deep/inside/beta"));
    CHECK_OK(tsnap_reader_verify(rd, "gamma"));
    CHECK_ERR(tsnap_reader_verify(rd, "delta"), TSNAP_ENOTFOUND);
    tsnap_reader_free(rd);
    for (int i = 0; i < 3; i++)
        free(data[i]);
}

static void test_flipped_byte_in_tensor_data_makes_verify_and_read_verified_fail_naming_it(void)
{
    rng r;
    rng_init(&r, __func__);
    unsigned char *data[3];
    size_t n;
    const char *path = write_three(&r, data, &n);
    flip_byte_of(path, "deep/inside/beta", rng_below(&r, n));

    tsnap_reader *rd = open_reader(path);
    CHECK_ERR(tsnap_reader_verify(rd, "deep/inside/beta"), TSNAP_ECHECKSUM);
    CHECK_ERRMSG_HAS("deep/inside/beta");
    CHECK_ERR(tsnap_reader_verify(rd, NULL), TSNAP_ECHECKSUM);
    CHECK_ERRMSG_HAS("deep/inside/beta");
    CHECK_OK(tsnap_reader_verify(rd, "alpha"));
    CHECK_OK(tsnap_reader_verify(rd, "gamma"));

    /* read_verified fails the same way */
    unsigned char *got = alloc_filled(n, 0);
    int64_t shape[2] = {40, 25}, strides[2] = {1, 40}; /* a transposed destination too */
    DLTensor dst = cpu_tensor(got, TSNAP_FLOAT64, 2, shape, NULL, 0);
    CHECK_ERR(tsnap_reader_read_verified(rd, "deep/inside/beta", &dst), TSNAP_ECHECKSUM);
    CHECK_ERRMSG_HAS("deep/inside/beta");
    CHECK_ERRMSG_HAS("checksum mismatch");
    dst = cpu_tensor(got, TSNAP_FLOAT64, 2, shape, strides, 0);
    CHECK_ERR(tsnap_reader_read_verified(rd, "deep/inside/beta", &dst), TSNAP_ECHECKSUM);
    /* the intact ones read, into either destination */
    CHECK_OK(tsnap_reader_read_verified(rd, "gamma", &dst));
    for (int i = 0; i < 40; i++)
        for (int j = 0; j < 25; j++)
            CHECK(memcmp(got + 8 * (i + 40 * j), data[2] + 8 * (25 * i + j), 8) == 0);
    dst = cpu_tensor(got, TSNAP_FLOAT64, 2, shape, NULL, 0);
    CHECK_OK(tsnap_reader_read_verified(rd, "alpha", &dst));
    CHECK_MEM(got, data[0], n, "alpha");
    /* a plain read does not check */
    CHECK_OK(tsnap_reader_read(rd, "deep/inside/beta", NULL, NULL, NULL, &dst));
    CHECK(memcmp(got, data[1], n) != 0);
    /* nor does a mismatching destination get as far as the data */
    int64_t wrong[2] = {25, 40};
    dst = cpu_tensor(got, TSNAP_FLOAT64, 2, wrong, NULL, 0);
    CHECK_ERR(tsnap_reader_read_verified(rd, "deep/inside/beta", &dst), TSNAP_EINVAL);
    CHECK_ERR(tsnap_reader_read_verified(rd, "delta", &dst), TSNAP_ENOTFOUND);
    CHECK_ERR(tsnap_reader_read_verified(NULL, "alpha", &dst), TSNAP_EINVAL);
    tsnap_reader_free(rd);
    free(got);
    for (int i = 0; i < 3; i++)
        free(data[i]);
}

static void test_flipped_first_and_last_bytes_are_both_caught(void)
{
    rng r;
    rng_init(&r, __func__);
    unsigned char *data[3];
    size_t n;
    const char *path = write_three(&r, data, &n);
    flip_byte_of(path, "alpha", 0);
    flip_byte_of(path, "gamma", n - 1);
    tsnap_reader *rd = open_reader(path);
    CHECK_ERR(tsnap_reader_verify(rd, "alpha"), TSNAP_ECHECKSUM);
    CHECK_ERRMSG_HAS("alpha");
    CHECK_ERR(tsnap_reader_verify(rd, "gamma"), TSNAP_ECHECKSUM);
    CHECK_ERRMSG_HAS("gamma");
    CHECK_OK(tsnap_reader_verify(rd, "deep/inside/beta"));
    /* the first bad tensor in name order */
    CHECK_ERR(tsnap_reader_verify(rd, NULL), TSNAP_ECHECKSUM);
    CHECK_ERRMSG_HAS("alpha");
    tsnap_reader_free(rd);
    for (int i = 0; i < 3; i++)
        free(data[i]);
}

static void test_flipped_byte_in_a_0d_tensor_makes_verify_fail(void)
{
    double v = 2.718281828459045;
    DLTensor t = cpu_tensor(&v, TSNAP_FLOAT64, 0, NULL, NULL, 0);
    const char *path = tpath("s.h5");
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_OK(tsnap_writer_put(w, "euler", &t));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    flip_byte_of(path, "euler", 7);
    tsnap_reader *rd = open_reader(path);
    CHECK_ERR(tsnap_reader_verify(rd, NULL), TSNAP_ECHECKSUM);
    CHECK_ERRMSG_HAS("euler");
    tsnap_reader_free(rd);
}

static void test_checksums_off_records_no_attribute_and_verify_passes(void)
{
    int16_t v[30];
    for (int i = 0; i < 30; i++)
        v[i] = (int16_t)(i * 1000 - 7);
    int64_t shape[1] = {30};
    DLTensor t = cpu_tensor(v, TSNAP_INT16, 1, shape, NULL, 0);
    tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
    o.checksum = 0;
    const char *path = tpath("nock.h5");
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, &o));
    CHECK_OK(tsnap_writer_put(w, "v", &t));
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    flip_byte_of(path, "v", 3);
    tsnap_reader *rd = open_reader(path);
    tsnap_attr a;
    CHECK_ERR(tsnap_reader_attr_find(rd, "v", "tsnap_checksum", &a), TSNAP_ENOTFOUND);
    tsnap_tensor_info info;
    CHECK_OK(tsnap_reader_describe(rd, "v", &info));
    CHECK_STR(info.checksum, "");
    CHECK_OK(tsnap_reader_verify(rd, "v"));
    CHECK_OK(tsnap_reader_verify(rd, NULL));
    /* read_verified just reads it, flipped byte and all */
    int16_t got[30];
    DLTensor dst = cpu_tensor(got, TSNAP_INT16, 1, shape, NULL, 0);
    CHECK_OK(tsnap_reader_read_verified(rd, "v", &dst));
    ((unsigned char *)v)[3] ^= 0x10;
    CHECK_MEM(got, v, sizeof v, "the data as it now is");
    tsnap_reader_free(rd);
}

static void test_corrupted_deflate_chunk_makes_verify_fail_naming_the_tensor(void)
{
    rng r;
    rng_init(&r, __func__);
    int64_t shape[2] = {64, 64};
    size_t n = 64 * 64 * 4;
    unsigned char *data = alloc_filled(n, 0);
    for (size_t i = 0; i < n / 4; i++) { /* compressible, not trivial */
        uint32_t v = (uint32_t)(i % 97) * 2654435761u >> 20;
        memcpy(data + 4 * i, &v, 4);
    }
    DLTensor t = cpu_tensor(data, TSNAP_INT32, 2, shape, NULL, 0);
    const char *path = tpath("z.h5");
    tsnap_write_options o;
    optset_apply(&OPT_DEFLATE, &o);
    o.chunk_bytes = 4096;
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, &o));
    CHECK_OK(tsnap_writer_put(w, "packed/weights", &t));
    CHECK_OK(tsnap_writer_put(w, "other", &t));
    CHECK_OK_FATAL(tsnap_writer_commit(w));
    tsnap_writer_free(w);

    /* the third chunk's bytes, found by HDF5 */
    hid_t f = h5_open(path);
    CHECK_FATAL(f >= 0);
    hid_t d = H5Dopen2(f, "packed/weights", H5P_DEFAULT);
    hsize_t coff[2] = {32, 0}, size = 0;
    haddr_t addr = HADDR_UNDEF;
    unsigned mask = 0;
    CHECK_FATAL(H5Dget_chunk_info_by_coord(d, coff, &mask, &addr, &size) >= 0);
    H5Dclose(d);
    H5Fclose(f);
    CHECK_FATAL(addr != HADDR_UNDEF && size > 8);

    size_t fsize = 0;
    unsigned char *file = slurp(path, &fsize);
    CHECK_FATAL(file != NULL && addr + size <= fsize);
    file[addr + size / 2] ^= 0x5a;
    CHECK_FATAL(spit(path, file, fsize) == 0);
    free(file);

    tsnap_reader *rd = open_reader(path);
    CHECK_NEG(tsnap_reader_verify(rd, "packed/weights"));
    CHECK_ERRMSG_HAS("packed/weights");
    CHECK_NEG(tsnap_reader_verify(rd, NULL));
    CHECK_ERRMSG_HAS("packed/weights");
    CHECK_OK(tsnap_reader_verify(rd, "other"));
    unsigned char *got = alloc_filled(n, 0);
    DLTensor dst = cpu_tensor(got, TSNAP_INT32, 2, shape, NULL, 0);
    /* reading the damaged chunk fails cleanly (zlib's adler32 catches it) */
    CHECK_NEG(tsnap_reader_read(rd, "packed/weights", NULL, NULL, NULL, &dst));
    CHECK_ERRMSG_HAS("packed/weights");
    CHECK_ERR(tsnap_reader_read_verified(rd, "packed/weights", &dst), TSNAP_ECHECKSUM);
    CHECK_ERRMSG_HAS("packed/weights");
    CHECK_OK(tsnap_reader_read_verified(rd, "other", &dst));
    CHECK_MEM(got, data, n, "the undamaged tensor");
    /* the undamaged chunks still read */
    int64_t start[2] = {0, 0}, count[2] = {16, 64};
    dst = cpu_tensor(got, TSNAP_INT32, 2, count, NULL, 0);
    CHECK_OK(tsnap_reader_read(rd, "packed/weights", start, count, NULL, &dst));
    CHECK_MEM(got, data, 16 * 64 * 4, "the first, undamaged chunk");
    tsnap_reader_free(rd);
    free(got);
    free(data);
}

/* ---- reading and verifying in one pass ---------------------------- */

/* Column chunks (not ranges of the C order) written by HDF5, with a
 * checksum attribute added by hand: the check takes a second pass. */
static void test_read_verified_checks_chunks_that_are_not_ranges(void)
{
    rng r;
    rng_init(&r, __func__);
    float v[12][10], got[12][10];
    rng_fill(&r, v, sizeof v);
    const char *path = tpath("cols.h5");
    hid_t f = h5_create(path);
    CHECK_FATAL(f >= 0);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk[2] = {5, 3}, s[2] = {12, 10};
    H5Pset_chunk(dcpl, 2, chunk);
    H5Pset_deflate(dcpl, 1);
    char good[40], bad[40];
    xxh3_tag(v, sizeof v, good);
    xxh3_tag(v, sizeof v - 1, bad);
    const char *names[2] = {"good", "bad"}, *tags[2] = {good, bad};
    for (int i = 0; i < 2; i++) {
        CHECK(h5_put_dataset(f, names[i], H5T_IEEE_F32LE, 2, s, dcpl, H5T_NATIVE_FLOAT, v) == 0);
        hid_t d = H5Dopen2(f, names[i], H5P_DEFAULT);
        CHECK(d >= 0 && h5_put_string_attr(d, "tsnap_checksum", tags[i]) == 0);
        H5Dclose(d);
    }
    H5Pclose(dcpl);
    H5Fclose(f);

    tsnap_reader *rd = open_reader(path);
    int64_t shape[2] = {12, 10};
    DLTensor dst = cpu_tensor(got, TSNAP_FLOAT32, 2, shape, NULL, 0);
    CHECK_OK(tsnap_reader_read_verified(rd, "good", &dst));
    CHECK_MEM(got, v, sizeof v, "column chunks");
    CHECK_ERR(tsnap_reader_read_verified(rd, "bad", &dst), TSNAP_ECHECKSUM);
    CHECK_ERRMSG_HAS("bad");
    CHECK_OK(tsnap_reader_verify(rd, "good"));
    CHECK_ERR(tsnap_reader_verify(rd, "bad"), TSNAP_ECHECKSUM);
    tsnap_reader_free(rd);
}

const test_entry checksum_tests[] = {
    TEST(test_checksum_attribute_is_xxh3_64_of_the_logical_bytes_uncompressed),
    TEST(test_checksum_attribute_is_xxh3_64_of_the_logical_bytes_with_deflate),
    TEST(test_checksum_attribute_is_xxh3_64_of_the_logical_bytes_in_small_chunks),
    TEST(test_checksum_attribute_is_xxh3_64_of_the_logical_bytes_with_zstd_and_lz4),
    TEST(test_checksum_of_an_empty_tensor_is_xxh3_of_no_bytes),
    TEST(test_verify_passes_for_every_tensor_of_an_intact_file),
    TEST(test_flipped_byte_in_tensor_data_makes_verify_and_read_verified_fail_naming_it),
    TEST(test_flipped_first_and_last_bytes_are_both_caught),
    TEST(test_flipped_byte_in_a_0d_tensor_makes_verify_fail),
    TEST(test_checksums_off_records_no_attribute_and_verify_passes),
    TEST(test_corrupted_deflate_chunk_makes_verify_fail_naming_the_tensor),
    TEST(test_read_verified_checks_chunks_that_are_not_ranges),
    TEST_END,
};

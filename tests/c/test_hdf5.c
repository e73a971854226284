/*
 * test_hdf5.c - HDF5 itself as the oracle: the file tsnap writes has the
 * types of docs/FORMAT.md (class, size, float fields and bias, bool enum members,
 * complex compound members, complex32's trailing axis, e4m3fn as U8),
 * layouts (chunk shape, allocation, filters), attributes and bytes; and
 * files HDF5 writes with no tsnap (big-endian, contiguous, gzip, odd
 * types) read correctly through tsnap.
 */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void check_float_type(hid_t ty, size_t size, size_t spos, size_t epos, size_t esize,
                             size_t mpos, size_t msize, size_t ebias)
{
    CHECK(H5Tget_class(ty) == H5T_FLOAT);
    CHECK_I64(H5Tget_size(ty), size);
    CHECK(H5Tget_order(ty) == H5T_ORDER_LE);
    size_t f[5] = {0, 0, 0, 0, 0};
    H5Tget_fields(ty, &f[0], &f[1], &f[2], &f[3], &f[4]);
    CHECK_MSG(f[0] == spos && f[1] == epos && f[2] == esize && f[3] == mpos && f[4] == msize,
              "float fields (%zu,%zu,%zu,%zu,%zu), expected (%zu,%zu,%zu,%zu,%zu)", f[0], f[1],
              f[2], f[3], f[4], spos, epos, esize, mpos, msize);
    CHECK_I64(H5Tget_ebias(ty), ebias);
    CHECK(H5Tget_norm(ty) == H5T_NORM_IMPLIED);
}

static void check_complex_type(hid_t ty, hid_t member, size_t size)
{
    CHECK(H5Tget_class(ty) == H5T_COMPOUND);
    CHECK_I64(H5Tget_size(ty), size);
    if (!CHECK_RC(H5Tget_nmembers(ty), 2))
        return;
    const char *names[2] = {"r", "i"};
    for (unsigned m = 0; m < 2; m++) {
        char *name = H5Tget_member_name(ty, m);
        CHECK_STR(name, names[m]);
        H5free_memory(name);
        CHECK_I64(H5Tget_member_offset(ty, m), m * size / 2);
        hid_t mt = H5Tget_member_type(ty, m);
        CHECK(H5Tequal(mt, member) > 0);
        H5Tclose(mt);
    }
}

static void check_bool_type(hid_t ty)
{
    CHECK(H5Tget_class(ty) == H5T_ENUM);
    CHECK_I64(H5Tget_size(ty), 1);
    hid_t super = H5Tget_super(ty);
    CHECK(H5Tequal(super, H5T_STD_I8LE) > 0);
    H5Tclose(super);
    CHECK_I64(H5Tget_nmembers(ty), 2);
    int8_t v = 99;
    CHECK(H5Tenum_valueof(ty, "FALSE", &v) >= 0 && v == 0);
    v = 99;
    CHECK(H5Tenum_valueof(ty, "TRUE", &v) >= 0 && v == 1);
}

/* The stored type of `c` is the one in the table in docs/FORMAT.md. */
static void check_type(hid_t ty, tsnap_dtype dtype)
{
    switch (dtype) {
    case TSNAP_BOOL: check_bool_type(ty); break;
    case TSNAP_INT8: CHECK(H5Tequal(ty, H5T_STD_I8LE) > 0); break;
    case TSNAP_INT16: CHECK(H5Tequal(ty, H5T_STD_I16LE) > 0); break;
    case TSNAP_INT32: CHECK(H5Tequal(ty, H5T_STD_I32LE) > 0); break;
    case TSNAP_INT64: CHECK(H5Tequal(ty, H5T_STD_I64LE) > 0); break;
    case TSNAP_UINT8: CHECK(H5Tequal(ty, H5T_STD_U8LE) > 0); break;
    case TSNAP_UINT16: CHECK(H5Tequal(ty, H5T_STD_U16LE) > 0); break;
    case TSNAP_UINT32: CHECK(H5Tequal(ty, H5T_STD_U32LE) > 0); break;
    case TSNAP_UINT64: CHECK(H5Tequal(ty, H5T_STD_U64LE) > 0); break;
    case TSNAP_FLOAT16:
    case TSNAP_COMPLEX32: check_float_type(ty, 2, 15, 10, 5, 0, 10, 15); break;
    case TSNAP_BFLOAT16: check_float_type(ty, 2, 15, 7, 8, 0, 7, 127); break;
    case TSNAP_FLOAT32: CHECK(H5Tequal(ty, H5T_IEEE_F32LE) > 0); break;
    case TSNAP_FLOAT64: CHECK(H5Tequal(ty, H5T_IEEE_F64LE) > 0); break;
    case TSNAP_FLOAT8_E5M2: check_float_type(ty, 1, 7, 2, 5, 0, 2, 15); break;
    case TSNAP_FLOAT8_E4M3FN: CHECK(H5Tequal(ty, H5T_STD_U8LE) > 0); break;
    case TSNAP_COMPLEX64: check_complex_type(ty, H5T_IEEE_F32LE, 8); break;
    case TSNAP_COMPLEX128: check_complex_type(ty, H5T_IEEE_F64LE, 16); break;
    default: CHECK_MSG(0, "unexpected dtype %d", dtype);
    }
}

static void check_dataset(hid_t f, const tcase *c, const optset *o)
{
    hid_t d = H5Dopen2(f, c->name, H5P_DEFAULT);
    if (!CHECK_RC(d >= 0, 1))
        return;
    hid_t ty = H5Dget_type(d), sp = H5Dget_space(d), dcpl = H5Dget_create_plist(d);
    check_type(ty, c->dtype);

    /* dataspace: scalar for 0-d (complex32: (2,)), else the shape (+ (2,)) */
    int extra = c->dtype == TSNAP_COMPLEX32;
    int rank = c->ndim + extra;
    hsize_t dims[TSNAP_MAX_NDIM + 1], maxdims[TSNAP_MAX_NDIM + 1];
    if (rank == 0) {
        CHECK(H5Sget_simple_extent_type(sp) == H5S_SCALAR);
    } else {
        CHECK(H5Sget_simple_extent_type(sp) == H5S_SIMPLE);
        if (CHECK_RC(H5Sget_simple_extent_ndims(sp), rank)) {
            H5Sget_simple_extent_dims(sp, dims, maxdims);
            for (int k = 0; k < rank; k++) {
                hsize_t want = k < c->ndim ? (hsize_t)c->shape[k] : 2;
                CHECK_MSG(dims[k] == want, "dim %d is %llu, expected %llu", k,
                          (unsigned long long)dims[k], (unsigned long long)want);
                CHECK_MSG(maxdims[k] == dims[k], "maxdim %d is %llu, not fixed at %llu", k,
                          (unsigned long long)maxdims[k], (unsigned long long)dims[k]);
            }
        }
    }

    /* layout */
    H5D_layout_t layout = H5Pget_layout(dcpl);
    int nfilters = H5Pget_nfilters(dcpl);
    H5D_alloc_time_t alloc = H5D_ALLOC_TIME_ERROR;
    H5Pget_alloc_time(dcpl, &alloc);
    if (!case_chunked(c)) {
        CHECK_MSG(layout == H5D_CONTIGUOUS, "layout %d, expected contiguous", layout);
        CHECK_I64(nfilters, 0);
        if (c->ndim == 0) {
            CHECK(alloc == H5D_ALLOC_TIME_EARLY);
            CHECK(H5Dget_offset(d) != HADDR_UNDEF);
        }
    } else {
        CHECK_MSG(layout == H5D_CHUNKED, "layout %d, expected chunked", layout);
        int64_t chunk[TSNAP_MAX_NDIM];
        chunk_rule(c->ndim, c->shape, c->itemsize, o->chunk_bytes, o->codec == TSNAP_CODEC_NONE,
                   chunk);
        hsize_t cdims[TSNAP_MAX_NDIM + 1];
        if (CHECK_RC(H5Pget_chunk(dcpl, rank, cdims), rank)) {
            for (int k = 0; k < rank; k++) {
                hsize_t want = k < c->ndim ? (hsize_t)chunk[k] : 2;
                CHECK_MSG(cdims[k] == want, "chunk dim %d is %llu, expected %llu", k,
                          (unsigned long long)cdims[k], (unsigned long long)want);
            }
        }
        if (case_filtered(c, o)) {
            int shuffled = case_shuffled(c, o);
            CHECK_I64(nfilters, 1 + shuffled);
            for (int i = 0; i < nfilters && i < 2; i++) {
                unsigned flags, cd[8];
                size_t ncd = 8;
                char name[64];
                unsigned cfg;
                H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, sizeof name,
                                                 name, &cfg);
                H5Z_filter_t want = (shuffled && i == 0) ? H5Z_FILTER_SHUFFLE : H5Z_FILTER_DEFLATE;
                CHECK_MSG(id == want, "filter %d is %d, expected %d", i, (int)id, (int)want);
                if (id == H5Z_FILTER_DEFLATE && ncd >= 1)
                    CHECK_I64(cd[0], o->level ? o->level : 1);
            }
            CHECK(alloc == H5D_ALLOC_TIME_INCR);
        } else {
            CHECK_I64(nfilters, 0);
            CHECK(alloc == H5D_ALLOC_TIME_EARLY);
            H5D_fill_time_t fill = H5D_FILL_TIME_ERROR;
            H5Pget_fill_time(dcpl, &fill);
            CHECK(fill == H5D_FILL_TIME_NEVER);
        }
    }

    /* the bytes, read by HDF5 in the stored type: no conversion */
    if (c->nbytes) {
        unsigned char *buf = alloc_filled(c->nbytes, 0xa5);
        if (CHECK_RC(H5Dread(d, ty, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0, 1))
            CHECK_MEM(buf, c->expected, c->nbytes, "bytes HDF5 reads");
        free(buf);
    }

    /* tsnap_dtype and tsnap_checksum: variable-length UTF-8 string scalars */
    const char *keys[2] = {"tsnap_dtype", "tsnap_checksum"};
    char tag[40];
    xxh3_tag(c->expected, c->nbytes, tag);
    const char *want[2] = {dtype_row_of(c->dtype)->name, tag};
    for (int k = 0; k < 2; k++) {
        hid_t a = H5Aopen(d, keys[k], H5P_DEFAULT);
        CHECK_MSG(a >= 0, "no %s attribute", keys[k]);
        if (a < 0)
            continue;
        hid_t at = H5Aget_type(a), as = H5Aget_space(a);
        CHECK(H5Tget_class(at) == H5T_STRING && H5Tis_variable_str(at) > 0);
        CHECK(H5Tget_cset(at) == H5T_CSET_UTF8);
        CHECK(H5Sget_simple_extent_type(as) == H5S_SCALAR);
        H5Sclose(as), H5Tclose(at), H5Aclose(a);
        char *s = h5_get_string_attr(d, keys[k]);
        CHECK_STR(s, want[k]);
        free(s);
    }
    H5Pclose(dcpl), H5Sclose(sp), H5Tclose(ty), H5Dclose(d);
}

static void check_every_case_in_hdf5(const optset *o, const char *label)
{
    rng r;
    rng_init(&r, label);
    caseset cs;
    caseset_build(&cs, &r);
    const char *path = tpath("snap.h5");
    if (caseset_write(&cs, path, o) == 0) {
        hid_t f = h5_open(path);
        CHECK_FATAL(f >= 0);
        for (size_t i = 0; i < cs.n; i++) {
            ctx_set("%s [%s]", cs.v[i].name, o->label);
            check_dataset(f, &cs.v[i], o);
        }
        ctx_clear();
        H5Fclose(f);
    }
    caseset_free(&cs);
}

static void test_every_dtype_is_stored_as_the_documented_hdf5_type_and_layout(void)
{
    check_every_case_in_hdf5(&OPT_PLAIN, __func__);
}

static void test_deflate_and_shuffle_are_in_the_hdf5_pipeline_with_default_level_1(void)
{
    check_every_case_in_hdf5(&OPT_DEFLATE, __func__);
}

static void test_deflate_level_and_forced_shuffle_are_in_the_hdf5_pipeline(void)
{
    check_every_case_in_hdf5(&OPT_DEFLATE_9, __func__);
    test_teardown();
    test_setup();
    check_every_case_in_hdf5(&OPT_TINY_DEFLATE, __func__);
}

static void test_small_chunk_shapes_in_the_file_follow_the_chunk_rule(void)
{
    check_every_case_in_hdf5(&OPT_SMALL, __func__);
    test_teardown();
    test_setup();
    check_every_case_in_hdf5(&OPT_TINY, __func__);
}

static void test_file_has_a_v110_superblock_root_attributes_and_no_userblock(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK_OK_FATAL(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    size_t n = 0;
    unsigned char *bytes = slurp(path, &n);
    CHECK_FATAL(bytes && n >= 8);
    CHECK_MEM(bytes, "\x89HDF\r\n\x1a\n", 8, "signature at byte 0");
    free(bytes);

    hid_t f = h5_open(path);
    CHECK_FATAL(f >= 0);
    H5F_info2_t fi;
    CHECK(H5Fget_info2(f, &fi) >= 0);
    CHECK_I64(fi.super.version, 3); /* libver low bound V110 */
    hid_t fcpl = H5Fget_create_plist(f);
    hsize_t ub = 1;
    H5Pget_userblock(fcpl, &ub);
    CHECK_I64(ub, 0);
    H5Pclose(fcpl);

    char *s = h5_get_string_attr(f, "tsnap_format");
    CHECK_STR(s, "tsnap");
    free(s);
    s = h5_get_string_attr(f, "producer");
    CHECK_STR(s, "tsnap " TSNAP_VERSION_STRING);
    free(s);
    s = h5_get_string_attr(f, "created");
    CHECK(s != NULL);
    free(s);
    hid_t a = H5Aopen(f, "tsnap_version", H5P_DEFAULT);
    CHECK_FATAL(a >= 0);
    hid_t ty = H5Aget_type(a), sp = H5Aget_space(a);
    CHECK(H5Tequal(ty, H5T_STD_I64LE) > 0);
    CHECK(H5Sget_simple_extent_type(sp) == H5S_SCALAR);
    int64_t v = 0;
    CHECK(H5Aread(a, H5T_NATIVE_INT64, &v) >= 0);
    CHECK_I64(v, 1);
    H5Sclose(sp), H5Tclose(ty), H5Aclose(a);
    const char *strs[3] = {"tsnap_format", "created", "producer"};
    for (int i = 0; i < 3; i++) {
        ctx_set("%s", strs[i]);
        a = H5Aopen(f, strs[i], H5P_DEFAULT);
        ty = H5Aget_type(a);
        sp = H5Aget_space(a);
        CHECK(H5Tis_variable_str(ty) > 0 && H5Tget_cset(ty) == H5T_CSET_UTF8);
        CHECK(H5Sget_simple_extent_type(sp) == H5S_SCALAR);
        H5Sclose(sp), H5Tclose(ty), H5Aclose(a);
    }
    H5Fclose(f);
}

static void test_mappable_offset_is_where_hdf5_puts_the_data(void)
{
    rng r;
    rng_init(&r, __func__);
    caseset cs;
    caseset_build(&cs, &r);
    const char *path = tpath("snap.h5");
    if (caseset_write(&cs, path, &OPT_SMALL) != 0) {
        caseset_free(&cs);
        return;
    }
    /* tsnap's offsets first; the reader is closed before HDF5 opens the
     * file, since the two open it with different file-locking flags */
    uint64_t *offset = calloc(cs.n, sizeof *offset);
    int *mappable = calloc(cs.n, sizeof *mappable);
    tsnap_reader *rd = open_reader(path);
    for (size_t i = 0; i < cs.n; i++) {
        tsnap_tensor_info info;
        ctx_set("%s", cs.v[i].name);
        if (CHECK_OK(tsnap_reader_describe(rd, cs.v[i].name, &info)) &&
            info.map_status == TSNAP_MAP_OK) {
            mappable[i] = 1;
            offset[i] = info.offset;
        }
    }
    tsnap_reader_free(rd);

    hid_t f = h5_open(path);
    CHECK_FATAL(f >= 0);
    size_t nmappable = 0;
    for (size_t i = 0; i < cs.n; i++) {
        const tcase *c = &cs.v[i];
        if (!mappable[i])
            continue;
        nmappable++;
        ctx_set("%s", c->name);
        hid_t d = H5Dopen2(f, c->name, H5P_DEFAULT);
        haddr_t addr = HADDR_UNDEF;
        if (!case_chunked(c)) {
            addr = H5Dget_offset(d);
        } else {
            hid_t sp = H5Dget_space(d);
            hsize_t nchunks = 0, coff[TSNAP_MAX_NDIM + 1], size = 0;
            unsigned mask = 0;
            H5Dget_num_chunks(d, sp, &nchunks);
            CHECK(nchunks >= 1);
            /* the chunk at the origin holds the first bytes */
            memset(coff, 0, sizeof coff);
            H5Dget_chunk_info_by_coord(d, coff, &mask, &addr, &size);
            H5Sclose(sp);
        }
        CHECK_MSG(offset[i] == addr, "offset %llu, HDF5 says %llu", (unsigned long long)offset[i],
                  (unsigned long long)addr);
        H5Dclose(d);
    }
    ctx_clear();
    CHECK(nmappable > cs.n / 2);
    H5Fclose(f);
    free(offset);
    free(mappable);
    caseset_free(&cs);
}

/* ---- files written by HDF5 alone ---------------------------------- */

static void test_reader_converts_big_endian_data_written_by_hdf5_to_native(void)
{
    const char *path = tpath("be.h5");
    hid_t f = h5_create(path);
    CHECK_FATAL(f >= 0);
    int32_t i32[15];
    double f64[4] = {1.5, -2.25, 1e300, -0.0};
    float c64[6] = {1, 2, 3, 4, -5, 6.5f};
    for (int i = 0; i < 15; i++)
        i32[i] = (i - 7) * 1234567;
    hsize_t s2[2] = {5, 3}, s1[1] = {4}, s3[1] = {3};
    CHECK(h5_put_dataset(f, "i32", H5T_STD_I32BE, 2, s2, H5P_DEFAULT, H5T_NATIVE_INT32, i32) == 0);
    CHECK(h5_put_dataset(f, "f64", H5T_IEEE_F64BE, 1, s1, H5P_DEFAULT, H5T_NATIVE_DOUBLE, f64) == 0);
    hid_t cbe = H5Tcreate(H5T_COMPOUND, 8), cle = H5Tcreate(H5T_COMPOUND, 8);
    H5Tinsert(cbe, "r", 0, H5T_IEEE_F32BE);
    H5Tinsert(cbe, "i", 4, H5T_IEEE_F32BE);
    H5Tinsert(cle, "r", 0, H5T_NATIVE_FLOAT);
    H5Tinsert(cle, "i", 4, H5T_NATIVE_FLOAT);
    CHECK(h5_put_dataset(f, "c64", cbe, 1, s3, H5P_DEFAULT, cle, c64) == 0);
    H5Tclose(cbe), H5Tclose(cle), H5Fclose(f);

    tsnap_reader *r = open_reader(path);
    CHECK_I64(tsnap_reader_format_version(r), 0);
    struct {
        const char *name;
        tsnap_dtype dtype;
        int ndim;
        int64_t shape[2];
        const void *want;
        size_t n;
    } ds[] = {
        {"c64", TSNAP_COMPLEX64, 1, {3}, c64, sizeof c64},
        {"f64", TSNAP_FLOAT64, 1, {4}, f64, sizeof f64},
        {"i32", TSNAP_INT32, 2, {5, 3}, i32, sizeof i32},
    };
    for (int i = 0; i < 3; i++) {
        ctx_set("%s", ds[i].name);
        CHECK_STR(tsnap_reader_name(r, (size_t)i), ds[i].name);
        tsnap_tensor_info info;
        if (CHECK_OK(tsnap_reader_describe(r, ds[i].name, &info))) {
            CHECK_I64(info.dtype, ds[i].dtype);
            CHECK_I64(info.big_endian, 1);
            CHECK_I64(info.map_status, TSNAP_MAP_BYTE_ORDER);
            CHECK_STR(info.checksum, "");
        }
        unsigned char *buf = alloc_filled(ds[i].n, 0);
        DLTensor dst = cpu_tensor(buf, ds[i].dtype, ds[i].ndim, ds[i].shape, NULL, 0);
        if (CHECK_OK(tsnap_reader_read(r, ds[i].name, NULL, NULL, NULL, &dst)))
            CHECK_MEM(buf, ds[i].want, ds[i].n, "native values");
        free(buf);
        tsnap_mapping *m = NULL;
        CHECK_ERR(tsnap_mapping_create(&m, r, ds[i].name), TSNAP_ENOTMAPPABLE);
    }
    ctx_clear();
    /* a hyperslab converts too */
    int64_t start[2] = {1, 1}, count[2] = {3, 2}, step[2] = {1, 1};
    int32_t got[6], want[6] = {i32[4], i32[5], i32[7], i32[8], i32[10], i32[11]};
    DLTensor dst = cpu_tensor(got, TSNAP_INT32, 2, count, NULL, 0);
    CHECK_OK(tsnap_reader_read(r, "i32", start, count, step, &dst));
    CHECK_MEM(got, want, sizeof want, "big-endian hyperslab");
    tsnap_reader_free(r);
}

static void test_reader_maps_a_contiguous_dataset_written_by_hdf5(void)
{
    rng g;
    rng_init(&g, __func__);
    const char *path = tpath("contig.h5");
    double v[100];
    rng_fill(&g, v, sizeof v);
    hid_t f = h5_create(path);
    CHECK_FATAL(f >= 0);
    hsize_t s[2] = {10, 10};
    CHECK(h5_put_dataset(f, "v", H5T_IEEE_F64LE, 2, s, H5P_DEFAULT, H5T_NATIVE_DOUBLE, v) == 0);
    /* never written: no storage allocated */
    CHECK(h5_put_dataset(f, "unwritten", H5T_IEEE_F64LE, 2, s, H5P_DEFAULT, 0, NULL) == 0);
    hid_t d = H5Dopen2(f, "v", H5P_DEFAULT);
    haddr_t addr = H5Dget_offset(d);
    H5Dclose(d), H5Fclose(f);

    tsnap_reader *r = open_reader(path);
    tsnap_tensor_info info;
    CHECK_OK(tsnap_reader_describe(r, "v", &info));
    CHECK_I64(info.chunked, 0);
    CHECK_I64(info.map_status, TSNAP_MAP_OK);
    CHECK_I64(info.offset, addr);
    CHECK_I64(info.length, sizeof v);
    tsnap_mapping *m = NULL;
    if (CHECK_OK(tsnap_mapping_create(&m, r, "v"))) {
        const DLTensor *t = tsnap_mapping_tensor(m);
        CHECK_MEM((const unsigned char *)t->data + t->byte_offset, v, sizeof v, "mapped bytes");
        tsnap_mapping_free(m);
    }
    CHECK_OK(tsnap_reader_describe(r, "unwritten", &info));
    CHECK_I64(info.map_status, TSNAP_MAP_NOT_ALLOCATED);
    m = (tsnap_mapping *)&m;
    CHECK_ERR(tsnap_mapping_create(&m, r, "unwritten"), TSNAP_ENOTMAPPABLE);
    CHECK(m == NULL);
    tsnap_reader_free(r);
}

static void test_reader_reads_shuffled_gzip_datasets_written_by_hdf5(void)
{
    const char *path = tpath("gzip.h5");
    int16_t v[10][10];
    for (int i = 0; i < 10; i++)
        for (int j = 0; j < 10; j++)
            v[i][j] = (int16_t)(i * 1000 - j * 37);
    hid_t f = h5_create(path);
    CHECK_FATAL(f >= 0);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk[2] = {3, 4}, s[2] = {10, 10};
    H5Pset_chunk(dcpl, 2, chunk);
    H5Pset_shuffle(dcpl);
    H5Pset_deflate(dcpl, 6);
    CHECK(h5_put_dataset(f, "z", H5T_STD_I16LE, 2, s, dcpl, H5T_NATIVE_INT16, v) == 0);
    H5Pclose(dcpl), H5Fclose(f);

    tsnap_reader *r = open_reader(path);
    tsnap_tensor_info info;
    if (CHECK_OK(tsnap_reader_describe(r, "z", &info))) {
        CHECK_I64(info.dtype, TSNAP_INT16);
        CHECK_I64(info.chunked, 1);
        CHECK_I64(info.chunk[0], 3);
        CHECK_I64(info.chunk[1], 4);
        CHECK_I64(info.codec, TSNAP_CODEC_DEFLATE);
        CHECK_I64(info.shuffle, 1);
        CHECK_I64(info.nfilters, 2);
        CHECK_I64(info.filters[0], 2);
        CHECK_I64(info.filters[1], 1);
        CHECK_I64(info.map_status, TSNAP_MAP_FILTERED);
    }
    int16_t got[10][10];
    int64_t shape[2] = {10, 10};
    DLTensor dst = cpu_tensor(got, TSNAP_INT16, 2, shape, NULL, 0);
    CHECK_OK(tsnap_reader_read(r, "z", NULL, NULL, NULL, &dst));
    CHECK_MEM(got, v, sizeof v, "gzip dataset");
    int64_t start[2] = {2, 3}, count[2] = {4, 3}, step[2] = {2, 3};
    int16_t sl[12], want[12];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++)
            want[i * 3 + j] = v[2 + 2 * i][3 + 3 * j];
    dst = cpu_tensor(sl, TSNAP_INT16, 2, count, NULL, 0);
    CHECK_OK(tsnap_reader_read(r, "z", start, count, step, &dst));
    CHECK_MEM(sl, want, sizeof want, "gzip hyperslab");
    tsnap_reader_free(r);
}

static void test_reader_recognises_h5py_style_types_written_by_hdf5(void)
{
    const char *path = tpath("h5py.h5");
    hid_t f = h5_create(path);
    CHECK_FATAL(f >= 0);
    hsize_t s[1] = {4};
    /* bool as h5py writes it, over int8; and over uint8, which h5py also reads as bool */
    hid_t b8 = H5Tenum_create(H5T_NATIVE_INT8), bu8 = H5Tenum_create(H5T_NATIVE_UINT8);
    int8_t fv = 0, tv = 1;
    uint8_t ufv = 0, utv = 1;
    H5Tenum_insert(b8, "FALSE", &fv);
    H5Tenum_insert(b8, "TRUE", &tv);
    H5Tenum_insert(bu8, "FALSE", &ufv);
    H5Tenum_insert(bu8, "TRUE", &utv);
    uint8_t bools[4] = {1, 0, 0, 1};
    CHECK(h5_put_dataset(f, "b", b8, 1, s, H5P_DEFAULT, b8, bools) == 0);
    CHECK(h5_put_dataset(f, "bu", bu8, 1, s, H5P_DEFAULT, bu8, bools) == 0);
    /* float16 built the way h5py builds it */
    hid_t f16 = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(f16, 15, 10, 5, 0, 10);
    H5Tset_size(f16, 2);
    H5Tset_ebias(f16, 15);
    uint16_t h[4] = {0x3c00, 0xc000, 0x7c00, 0x0001};
    CHECK(h5_put_dataset(f, "h", f16, 1, s, H5P_DEFAULT, f16, h) == 0);
    /* complex128 as h5py writes it */
    hid_t c = H5Tcreate(H5T_COMPOUND, 16);
    H5Tinsert(c, "r", 0, H5T_IEEE_F64LE);
    H5Tinsert(c, "i", 8, H5T_IEEE_F64LE);
    double z[8] = {1, -1, 2, -2, 3.5, 0, -0.0, 1e-300};
    CHECK(h5_put_dataset(f, "z", c, 1, s, H5P_DEFAULT, c, z) == 0);
    H5Tclose(b8), H5Tclose(bu8), H5Tclose(f16), H5Tclose(c), H5Fclose(f);

    tsnap_reader *r = open_reader(path);
    struct {
        const char *name;
        tsnap_dtype dtype;
        const void *want;
        size_t n;
    } ds[] = {{"b", TSNAP_BOOL, bools, 4},
              {"bu", TSNAP_BOOL, bools, 4},
              {"h", TSNAP_FLOAT16, h, 8},
              {"z", TSNAP_COMPLEX128, z, 64}};
    for (int i = 0; i < 4; i++) {
        ctx_set("%s", ds[i].name);
        tsnap_tensor_info info;
        if (CHECK_OK(tsnap_reader_describe(r, ds[i].name, &info)))
            CHECK_I64(info.dtype, ds[i].dtype);
        unsigned char buf[64];
        int64_t shape[1] = {4};
        DLTensor dst = cpu_tensor(buf, ds[i].dtype, 1, shape, NULL, 0);
        if (CHECK_OK(tsnap_reader_read(r, ds[i].name, NULL, NULL, NULL, &dst)))
            CHECK_MEM(buf, ds[i].want, ds[i].n, "values");
    }
    ctx_clear();
    tsnap_reader_free(r);
}

static void test_reader_refuses_types_it_cannot_represent_with_etype(void)
{
    const char *path = tpath("odd.h5");
    hid_t f = h5_create(path);
    CHECK_FATAL(f >= 0);
    hsize_t s[1] = {2};
    /* variable-length strings */
    hid_t vs = H5Tcopy(H5T_C_S1);
    H5Tset_size(vs, H5T_VARIABLE);
    const char *strs[2] = {"a", "bc"};
    CHECK(h5_put_dataset(f, "strings", vs, 1, s, H5P_DEFAULT, vs, strs) == 0);
    /* a compound that is not {r, i} */
    hid_t pt = H5Tcreate(H5T_COMPOUND, 8);
    H5Tinsert(pt, "x", 0, H5T_IEEE_F32LE);
    H5Tinsert(pt, "y", 4, H5T_IEEE_F32LE);
    float pts[4] = {1, 2, 3, 4};
    CHECK(h5_put_dataset(f, "points", pt, 1, s, H5P_DEFAULT, pt, pts) == 0);
    /* opaque bytes */
    hid_t op = H5Tcreate(H5T_OPAQUE, 2);
    H5Tset_tag(op, "NUMPY:<V2");
    uint16_t o[2] = {1, 2};
    CHECK(h5_put_dataset(f, "opaque", op, 1, s, H5P_DEFAULT, op, o) == 0);
    /* an enum that is not bool: not refused, read as its integer type */
    hid_t en = H5Tenum_create(H5T_NATIVE_INT8);
    int8_t e0 = 0, e1 = 1, e2 = 2;
    H5Tenum_insert(en, "RED", &e0);
    H5Tenum_insert(en, "GREEN", &e1);
    H5Tenum_insert(en, "BLUE", &e2);
    int8_t colours[2] = {2, 0};
    CHECK(h5_put_dataset(f, "colours", en, 1, s, H5P_DEFAULT, en, colours) == 0);
    /* one good dataset beside them */
    int32_t good[2] = {5, 6};
    CHECK(h5_put_dataset(f, "good", H5T_STD_I32LE, 1, s, H5P_DEFAULT, H5T_NATIVE_INT32, good) == 0);
    H5Tclose(vs), H5Tclose(pt), H5Tclose(op), H5Tclose(en), H5Fclose(f);

    tsnap_reader *r = open_reader(path);
    CHECK_I64(tsnap_reader_count(r), 5);
    const char *odd[3] = {"strings", "points", "opaque"};
    for (int i = 0; i < 3; i++) {
        ctx_set("%s", odd[i]);
        tsnap_tensor_info info;
        CHECK_ERR(tsnap_reader_describe(r, odd[i], &info), TSNAP_ETYPE);
        CHECK_ERRMSG_HAS(odd[i]);
        unsigned char buf[64];
        int64_t shape[1] = {2};
        DLTensor dst = cpu_tensor(buf, TSNAP_UINT8, 1, shape, NULL, 0);
        CHECK_ERR(tsnap_reader_read(r, odd[i], NULL, NULL, NULL, &dst), TSNAP_ETYPE);
        tsnap_mapping *m = NULL;
        CHECK_NEG(tsnap_mapping_create(&m, r, odd[i]));
    }
    ctx_clear();
    int8_t hues[2] = {0, 0};
    int64_t shape[1] = {2};
    DLTensor hue = cpu_tensor(hues, TSNAP_INT8, 1, shape, NULL, 0);
    CHECK_OK(tsnap_reader_read(r, "colours", NULL, NULL, NULL, &hue));
    CHECK_MEM(hues, colours, sizeof colours, "enum values");
    int32_t got[2] = {0, 0};
    DLTensor dst = cpu_tensor(got, TSNAP_INT32, 1, shape, NULL, 0);
    CHECK_OK(tsnap_reader_read(r, "good", NULL, NULL, NULL, &dst));
    CHECK_MEM(got, good, sizeof good, "the good dataset");
    tsnap_reader_free(r);
}

/* Writes `v` (rows × cols float32) as dataset "d" of a new file with the
 * given HDF5 settings; cols are contiguous in memory. */
typedef struct foreign_layout {
    const char *label;
    int earliest;        /* libver bounds (earliest, latest) instead of V110 */
    hsize_t userblock;   /* 0: none */
    int chunked;
    hsize_t chunk[2];
    int early;           /* H5D_ALLOC_TIME_EARLY */
    int unlimited;       /* maxdims unlimited along axis 0 */
    int expect;          /* 1: must be mappable, 0: must not, -1: either */
} foreign_layout;

static void write_foreign(const char *path, const foreign_layout *L, const float *v, hsize_t rows,
                          hsize_t cols)
{
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (L->userblock)
        H5Pset_userblock(fcpl, L->userblock);
    if (!L->earliest)
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl);
    CHECK_FATAL(f >= 0);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (L->chunked) {
        H5Pset_chunk(dcpl, 2, L->chunk);
        H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    }
    if (L->early)
        H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
    hsize_t dims[2] = {rows, cols}, maxdims[2] = {L->unlimited ? H5S_UNLIMITED : rows, cols};
    hid_t sp = H5Screate_simple(2, dims, maxdims);
    hid_t d = H5Dcreate2(f, "d", H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    CHECK_FATAL(d >= 0);
    /* row by row, in order, as a simulation would */
    hsize_t start[2] = {0, 0}, count[2] = {1, cols};
    hid_t msp = H5Screate_simple(2, count, NULL);
    for (hsize_t i = 0; i < rows; i++) {
        start[0] = i;
        H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, count, NULL);
        CHECK_FATAL(H5Dwrite(d, H5T_NATIVE_FLOAT, msp, sp, H5P_DEFAULT, v + i * cols) >= 0);
    }
    H5Sclose(msp), H5Sclose(sp), H5Dclose(d), H5Pclose(dcpl), H5Pclose(fapl), H5Pclose(fcpl);
    H5Fclose(f);
}

static void test_reader_maps_foreign_datasets_only_where_the_bytes_lie_flat(void)
{
    const foreign_layout layouts[] = {
        {"V110, early, row slabs", 0, 0, 1, {16, 100}, 1, 0, 1},
        {"V110, early, 3x4 chunks", 0, 0, 1, {3, 4}, 1, 0, 0},
        {"V110, early, one row per chunk, 100 wide chunks of 64", 0, 0, 1, {1, 64}, 1, 0, 0},
        {"V110, early, row slabs, 4 KiB userblock", 0, 4096, 1, {16, 100}, 1, 0, 1},
        {"contiguous, 512-byte userblock", 0, 512, 0, {0, 0}, 0, 0, 1},
        {"earliest format (v1 B-tree), early, one row per chunk", 1, 0, 1, {1, 100}, 1, 0, -1},
        {"V110, incremental allocation, row slabs", 0, 0, 1, {16, 100}, 0, 0, -1},
        {"V110, unlimited rows, row slabs", 0, 0, 1, {16, 100}, 1, 1, -1},
    };
    rng g;
    rng_init(&g, __func__);
    const hsize_t rows = 2000, cols = 100;
    size_t n = (size_t)(rows * cols) * sizeof(float);
    float *v = malloc(n);
    rng_fill(&g, v, n);
    for (size_t k = 0; k < sizeof layouts / sizeof layouts[0]; k++) {
        const foreign_layout *L = &layouts[k];
        ctx_set("%s", L->label);
        char name[32];
        snprintf(name, sizeof name, "foreign%zu.h5", k);
        const char *path = tpath(name);
        write_foreign(path, L, v, rows, cols);
        tsnap_reader *r = open_reader(path);
        tsnap_tensor_info info;
        if (!CHECK_OK(tsnap_reader_describe(r, "d", &info))) {
            tsnap_reader_free(r);
            continue;
        }
        if (L->expect == 1)
            CHECK_MSG(info.map_status == TSNAP_MAP_OK, "map_status %d (%s), expected mappable",
                      info.map_status, tsnap_map_status_str(info.map_status));
        else if (L->expect == 0)
            CHECK_MSG(info.map_status != TSNAP_MAP_OK, "reported mappable, but the bytes have gaps");
        tsnap_mapping *m = NULL;
        if (info.map_status == TSNAP_MAP_OK) {
            /* whatever tsnap maps must be exactly the data */
            CHECK_I64(info.length, n);
            size_t fsize = 0;
            unsigned char *file = slurp(path, &fsize);
            CHECK_FATAL(file != NULL);
            CHECK(info.offset + info.length <= fsize);
            if (info.offset + info.length <= fsize)
                CHECK_MEM(file + info.offset, v, n, "file bytes at the reported offset");
            free(file);
            if (CHECK_OK(tsnap_mapping_create(&m, r, "d"))) {
                const DLTensor *t = tsnap_mapping_tensor(m);
                CHECK_MEM((const unsigned char *)t->data + t->byte_offset, v, n, "mapped bytes");
                tsnap_mapping_free(m);
            }
        } else {
            CHECK_ERR(tsnap_mapping_create(&m, r, "d"), TSNAP_ENOTMAPPABLE);
        }
        /* and a plain read is right either way */
        float *got = malloc(n);
        int64_t shape[2] = {(int64_t)rows, (int64_t)cols};
        DLTensor dst = cpu_tensor(got, TSNAP_FLOAT32, 2, shape, NULL, 0);
        if (CHECK_OK(tsnap_reader_read(r, "d", NULL, NULL, NULL, &dst)))
            CHECK_MEM(got, v, n, "read bytes");
        free(got);
        tsnap_reader_free(r);
    }
    ctx_clear();
    free(v);
}

static void test_reader_presents_foreign_attributes_as_strings_numbers_or_other(void)
{
    const char *path = tpath("attrs.h5");
    hid_t f = h5_create(path);
    CHECK_FATAL(f >= 0);
    hid_t scalar = H5Screate(H5S_SCALAR);
    /* a variable-length ASCII string, as h5py writes a str under its old default */
    hid_t vs = H5Tcopy(H5T_C_S1);
    H5Tset_size(vs, H5T_VARIABLE);
    const char *hello = "hello";
    hid_t a = H5Acreate2(f, "vlen_ascii", vs, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, vs, &hello);
    H5Aclose(a);
    /* a fixed-length string, as h5py writes numpy bytes */
    hid_t fs = H5Tcopy(H5T_C_S1);
    H5Tset_size(fs, 8);
    H5Tset_strpad(fs, H5T_STR_NULLPAD);
    char fixed[8] = {'a', 'b', 'c', 0, 0, 0, 0, 0};
    a = H5Acreate2(f, "fixed", fs, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, fs, fixed);
    H5Aclose(a);
    /* a compound that is not complex */
    hid_t pt = H5Tcreate(H5T_COMPOUND, 8);
    H5Tinsert(pt, "x", 0, H5T_NATIVE_FLOAT);
    H5Tinsert(pt, "y", 4, H5T_NATIVE_FLOAT);
    float xy[2] = {1, 2};
    a = H5Acreate2(f, "point", pt, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, pt, xy);
    H5Aclose(a);
    /* a big-endian int16 array */
    hsize_t three[1] = {3};
    hid_t sp3 = H5Screate_simple(1, three, NULL);
    int16_t i16[3] = {-1, 300, 7};
    a = H5Acreate2(f, "be_i16", H5T_STD_I16BE, sp3, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT16, i16);
    H5Aclose(a);
    H5Sclose(sp3), H5Tclose(pt), H5Tclose(fs), H5Tclose(vs), H5Sclose(scalar), H5Fclose(f);

    tsnap_reader *r = open_reader(path);
    tsnap_attr at;
    if (CHECK_OK(tsnap_reader_attr_find(r, NULL, "vlen_ascii", &at))) {
        CHECK_I64(at.kind, TSNAP_ATTR_STRING);
        CHECK_STR(at.string, "hello");
    }
    if (CHECK_OK(tsnap_reader_attr_find(r, NULL, "fixed", &at))) {
        CHECK_I64(at.kind, TSNAP_ATTR_STRING);
        CHECK_STR(at.string, "abc");
    }
    if (CHECK_OK(tsnap_reader_attr_find(r, NULL, "point", &at))) {
        CHECK_I64(at.kind, TSNAP_ATTR_OTHER);
        CHECK(at.string != NULL && at.string[0] != '\0');
    }
    if (CHECK_OK(tsnap_reader_attr_find(r, NULL, "be_i16", &at)) &&
        CHECK_RC(at.kind, TSNAP_ATTR_NUMERIC)) {
        CHECK_I64(at.value.dtype.code, kDLInt);
        CHECK_I64(at.value.dtype.bits, 16);
        CHECK_I64(at.value.ndim, 1);
        if (at.value.ndim == 1 && at.value.shape[0] == 3) {
            int16_t got[3];
            naive_gather(&at.value, 2, 0, (unsigned char *)got);
            CHECK_MEM(got, i16, sizeof i16, "big-endian attribute in native order");
        }
    }
    size_t count = 0;
    CHECK_OK(tsnap_reader_attr_count(r, NULL, &count));
    CHECK_I64(count, 4);
    tsnap_reader_free(r);
}

const test_entry hdf5_tests[] = {
    TEST(test_every_dtype_is_stored_as_the_documented_hdf5_type_and_layout),
    TEST(test_deflate_and_shuffle_are_in_the_hdf5_pipeline_with_default_level_1),
    TEST(test_deflate_level_and_forced_shuffle_are_in_the_hdf5_pipeline),
    TEST(test_small_chunk_shapes_in_the_file_follow_the_chunk_rule),
    TEST(test_file_has_a_v110_superblock_root_attributes_and_no_userblock),
    TEST(test_mappable_offset_is_where_hdf5_puts_the_data),
    TEST(test_reader_converts_big_endian_data_written_by_hdf5_to_native),
    TEST(test_reader_maps_a_contiguous_dataset_written_by_hdf5),
    TEST(test_reader_reads_shuffled_gzip_datasets_written_by_hdf5),
    TEST(test_reader_recognises_h5py_style_types_written_by_hdf5),
    TEST(test_reader_refuses_types_it_cannot_represent_with_etype),
    TEST(test_reader_maps_foreign_datasets_only_where_the_bytes_lie_flat),
    TEST(test_reader_presents_foreign_attributes_as_strings_numbers_or_other),
    TEST_END,
};

/*
 * dtype.c - the one table that maps tsnap dtypes to DLPack and HDF5 types,
 * read in both directions.
 *
 * HDF5 types follow h5py (h5t.pyx) so that h5py returns the same NumPy
 * dtype: bool is an enum {FALSE, TRUE} over int8, complex is a compound
 * {r, i}, float16 is IEEE_F32LE reshaped to 2 bytes.  bfloat16 and
 * float8_e5m2 are custom HDF5 floats of their own bit layout, which h5py
 * widens exactly to float32 / float16.  float8_e4m3fn has no Inf and uses
 * the all-ones exponent for numbers, which HDF5's IEEE-style float model
 * would turn into Inf and NaN, so its raw bits are stored as uint8 and
 * the `tsnap_dtype` attribute says what they are.  complex32 is float16
 * with a trailing axis of 2 (h5py 3.7 cannot read an f2 {r, i} compound).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum kind { K_NONE, K_BOOL, K_INT, K_UINT, K_FLOAT, K_RAW8, K_COMPLEX };

/* A float's bit layout as HDF5 describes it. */
struct fbits {
    size_t spos, epos, esize, mpos, msize, ebias;
};

static const struct dtype_row {
    const char *name;
    size_t size;
    enum kind kind;
    uint8_t dl_code;
    uint8_t dl_bits;
    struct fbits f; /* K_FLOAT only; K_COMPLEX: that of each part */
} TABLE[TSNAP_DTYPE_COUNT] = {
    [TSNAP_DTYPE_INVALID] = {NULL, 0, K_NONE, 0, 0, {0}},
    [TSNAP_BOOL] = {"bool", 1, K_BOOL, TSNAP_DL_BOOL, 8, {0}},
    [TSNAP_INT8] = {"int8", 1, K_INT, kDLInt, 8, {0}},
    [TSNAP_INT16] = {"int16", 2, K_INT, kDLInt, 16, {0}},
    [TSNAP_INT32] = {"int32", 4, K_INT, kDLInt, 32, {0}},
    [TSNAP_INT64] = {"int64", 8, K_INT, kDLInt, 64, {0}},
    [TSNAP_UINT8] = {"uint8", 1, K_UINT, kDLUInt, 8, {0}},
    [TSNAP_UINT16] = {"uint16", 2, K_UINT, kDLUInt, 16, {0}},
    [TSNAP_UINT32] = {"uint32", 4, K_UINT, kDLUInt, 32, {0}},
    [TSNAP_UINT64] = {"uint64", 8, K_UINT, kDLUInt, 64, {0}},
    [TSNAP_FLOAT16] = {"float16", 2, K_FLOAT, kDLFloat, 16, {15, 10, 5, 0, 10, 15}},
    [TSNAP_BFLOAT16] = {"bfloat16", 2, K_FLOAT, kDLBfloat, 16, {15, 7, 8, 0, 7, 127}},
    [TSNAP_FLOAT32] = {"float32", 4, K_FLOAT, kDLFloat, 32, {31, 23, 8, 0, 23, 127}},
    [TSNAP_FLOAT64] = {"float64", 8, K_FLOAT, kDLFloat, 64, {63, 52, 11, 0, 52, 1023}},
    [TSNAP_FLOAT8_E4M3FN] = {"float8_e4m3fn", 1, K_RAW8, TSNAP_DL_FLOAT8_E4M3FN, 8, {0}},
    [TSNAP_FLOAT8_E5M2] = {"float8_e5m2", 1, K_FLOAT, TSNAP_DL_FLOAT8_E5M2, 8, {7, 2, 5, 0, 2, 15}},
    [TSNAP_COMPLEX32] = {"complex32", 4, K_COMPLEX, kDLComplex, 32, {15, 10, 5, 0, 10, 15}},
    [TSNAP_COMPLEX64] = {"complex64", 8, K_COMPLEX, kDLComplex, 64, {31, 23, 8, 0, 23, 127}},
    [TSNAP_COMPLEX128] = {"complex128", 16, K_COMPLEX, kDLComplex, 128, {63, 52, 11, 0, 52, 1023}},
};

static const struct dtype_row *row(tsnap_dtype d)
{
    if ((int)d <= 0 || (int)d >= TSNAP_DTYPE_COUNT)
        return NULL;
    return &TABLE[d];
}

const char *tsnap_dtype_name(tsnap_dtype dtype)
{
    const struct dtype_row *r = row(dtype);
    return r ? r->name : NULL;
}

size_t tsnap_dtype_size(tsnap_dtype dtype)
{
    const struct dtype_row *r = row(dtype);
    return r ? r->size : 0;
}

int tsnap_dtype_from_name(tsnap_dtype *out, const char *name)
{
    tsnap__begin();
    TSNAP_CHECK_ARG(out != NULL);
    *out = TSNAP_DTYPE_INVALID;
    TSNAP_CHECK_ARG(name != NULL);
    for (int d = 1; d < TSNAP_DTYPE_COUNT; d++) {
        if (strcmp(TABLE[d].name, name) == 0) {
            *out = (tsnap_dtype)d;
            return 0;
        }
    }
    return tsnap__err(TSNAP_ETYPE, NULL, NULL, "unknown dtype name '%s'", name);
}

int tsnap_dtype_from_dlpack(tsnap_dtype *out, DLDataType type)
{
    tsnap__begin();
    TSNAP_CHECK_ARG(out != NULL);
    *out = TSNAP_DTYPE_INVALID;
    if (type.lanes == 1) {
        for (int d = 1; d < TSNAP_DTYPE_COUNT; d++) {
            if (TABLE[d].dl_code == type.code && TABLE[d].dl_bits == type.bits) {
                *out = (tsnap_dtype)d;
                return 0;
            }
        }
    }
    return tsnap__err(TSNAP_ETYPE, NULL, NULL,
                      "unsupported DLPack dtype (code %u, bits %u, lanes %u)",
                      (unsigned)type.code, (unsigned)type.bits, (unsigned)type.lanes);
}

int tsnap_dtype_to_dlpack(DLDataType *out, tsnap_dtype dtype)
{
    const struct dtype_row *r;
    tsnap__begin();
    TSNAP_CHECK_ARG(out != NULL);
    r = row(dtype);
    if (!r)
        return tsnap__err(TSNAP_EINVAL, NULL, NULL, "invalid dtype %d", (int)dtype);
    out->code = r->dl_code;
    out->bits = r->dl_bits;
    out->lanes = 1;
    return 0;
}

/* ---- HDF5 types --------------------------------------------------- */

static hid_t float_type(const struct fbits *f, size_t size)
{
    hid_t t;
    if (size == 4)
        return H5Tcopy(H5T_IEEE_F32LE);
    if (size == 8)
        return H5Tcopy(H5T_IEEE_F64LE);
    /* h5py's recipe for float16, generalised: reshape a copy of F32. */
    t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0)
        return t;
    if (H5Tset_fields(t, f->spos, f->epos, f->esize, f->mpos, f->msize) < 0 ||
        H5Tset_size(t, size) < 0 || H5Tset_ebias(t, f->ebias) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

static hid_t int_type(size_t size, bool is_signed)
{
    switch (size) {
    case 1: return H5Tcopy(is_signed ? H5T_STD_I8LE : H5T_STD_U8LE);
    case 2: return H5Tcopy(is_signed ? H5T_STD_I16LE : H5T_STD_U16LE);
    case 4: return H5Tcopy(is_signed ? H5T_STD_I32LE : H5T_STD_U32LE);
    case 8: return H5Tcopy(is_signed ? H5T_STD_I64LE : H5T_STD_U64LE);
    default: return H5I_INVALID_HID;
    }
}

static hid_t bool_type(void)
{
    int8_t no = 0, yes = 1;
    hid_t t = H5Tenum_create(H5T_STD_I8LE);
    if (t < 0)
        return t;
    if (H5Tenum_insert(t, "FALSE", &no) < 0 || H5Tenum_insert(t, "TRUE", &yes) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

static hid_t complex_type(const struct fbits *f, size_t size)
{
    hid_t part = float_type(f, size / 2), t = H5I_INVALID_HID;
    if (part < 0)
        return part;
    t = H5Tcreate(H5T_COMPOUND, size);
    if (t < 0 || H5Tinsert(t, "r", 0, part) < 0 || H5Tinsert(t, "i", size / 2, part) < 0) {
        tsnap__h5close(t);
        t = H5I_INVALID_HID;
    }
    H5Tclose(part);
    return t;
}

static hid_t build_file_type(tsnap_dtype dtype)
{
    const struct dtype_row *r = row(dtype);
    if (!r)
        return H5I_INVALID_HID;
    switch (r->kind) {
    case K_BOOL: return bool_type();
    case K_INT: return int_type(r->size, true);
    case K_UINT:
    case K_RAW8: return int_type(r->size, false);
    case K_FLOAT: return float_type(&r->f, r->size);
    case K_COMPLEX:
        if (dtype == TSNAP_COMPLEX32) /* stored as float16 pairs */
            return float_type(&r->f, 2);
        return complex_type(&r->f, r->size);
    default: return H5I_INVALID_HID;
    }
}

/* Each file type is built once per process and kept, locked (HDF5 refuses
 * to change or close a locked type): building an enum or a compound costs
 * more than the rest of a small tensor's description. */
static hid_t shared_types[TSNAP_DTYPE_COUNT];
static pthread_once_t shared_once = PTHREAD_ONCE_INIT;

static void build_shared_types(void)
{
    for (int d = 1; d < TSNAP_DTYPE_COUNT; d++) {
        hid_t t = build_file_type((tsnap_dtype)d);
        if (t >= 0 && H5Tlock(t) < 0) {
            H5Tclose(t);
            t = H5I_INVALID_HID;
        }
        shared_types[d] = t;
    }
    H5Eclear2(H5E_DEFAULT);
}

hid_t tsnap__h5type_shared(tsnap_dtype dtype)
{
    if (dtype <= TSNAP_DTYPE_INVALID || dtype >= TSNAP_DTYPE_COUNT)
        return H5I_INVALID_HID;
    pthread_once(&shared_once, build_shared_types);
    return shared_types[dtype] >= 0 ? shared_types[dtype] : H5I_INVALID_HID;
}

hid_t tsnap__h5type_file(tsnap_dtype dtype)
{
    hid_t t = tsnap__h5type_shared(dtype);
    return t >= 0 ? H5Tcopy(t) : build_file_type(dtype);
}

/* ---- HDF5 type -> dtype ------------------------------------------- */

static bool float_matches(hid_t t, const struct fbits *f, size_t size)
{
    size_t spos, epos, esize, mpos, msize;
    if (H5Tget_size(t) != size || H5Tget_precision(t) != size * 8 || H5Tget_offset(t) != 0)
        return false;
    if (H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize) < 0)
        return false;
    return spos == f->spos && epos == f->epos && esize == f->esize && mpos == f->mpos &&
           msize == f->msize && H5Tget_ebias(t) == f->ebias && H5Tget_norm(t) == H5T_NORM_IMPLIED;
}

/* The float dtype whose layout t has, or INVALID. */
static tsnap_dtype float_dtype(hid_t t)
{
    static const tsnap_dtype floats[] = {TSNAP_FLOAT16, TSNAP_BFLOAT16, TSNAP_FLOAT32,
                                         TSNAP_FLOAT64, TSNAP_FLOAT8_E5M2};
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++)
        if (float_matches(t, &TABLE[floats[i]].f, TABLE[floats[i]].size))
            return floats[i];
    return TSNAP_DTYPE_INVALID;
}

static tsnap_dtype int_dtype(size_t size, bool is_signed)
{
    switch (size) {
    case 1: return is_signed ? TSNAP_INT8 : TSNAP_UINT8;
    case 2: return is_signed ? TSNAP_INT16 : TSNAP_UINT16;
    case 4: return is_signed ? TSNAP_INT32 : TSNAP_UINT32;
    case 8: return is_signed ? TSNAP_INT64 : TSNAP_UINT64;
    default: return TSNAP_DTYPE_INVALID;
    }
}

/* Whether an integer, bitfield or float type (an enum: its base) holds
 * its bits inside its bytes: HDF5 converts a damaged one (precision or
 * offset beyond its size) by writing past its buffers. */
static bool atom_is_sane(hid_t t)
{
    H5T_class_t c = H5Tget_class(t);
    hid_t base;
    bool ok;
    if (c == H5T_ENUM) {
        if ((base = H5Tget_super(t)) < 0)
            return false;
        ok = H5Tget_class(base) == H5T_INTEGER && atom_is_sane(base) &&
             H5Tget_size(base) == H5Tget_size(t);
        H5Tclose(base);
        return ok;
    }
    if (c != H5T_INTEGER && c != H5T_BITFIELD && c != H5T_FLOAT)
        return true;
    size_t size = H5Tget_size(t), prec = H5Tget_precision(t);
    int off = H5Tget_offset(t);
    return size >= 1 && size <= 16 && prec >= 1 && off >= 0 && (size_t)off + prec <= 8 * size;
}

/* Member i of enum t (of integer type `base`): its name in *name (free it
 * with H5free_memory) and its value converted to `to` in value.  0; -1
 * when the name cannot be had (*name NULL); -2 when the value cannot. */
static int enum_member(hid_t t, hid_t base, unsigned i, hid_t to, unsigned char value[16],
                       char **name)
{
    memset(value, 0, 16);
    if (!(*name = H5Tget_member_name(t, i)))
        return -1;
    if (H5Tget_size(t) > 16 || H5Tget_member_value(t, i, value) < 0 ||
        H5Tconvert(base, to, 1, value, NULL, H5P_DEFAULT) < 0)
        return -2;
    return 0;
}

/* True if the enum's members are exactly FALSE=0 and TRUE=1 (h5py's test).
 * Its callers have checked atom_is_sane(t). */
static bool enum_is_bool(hid_t t)
{
    int n = H5Tget_nmembers(t);
    bool seen_false = false, seen_true = false;
    hid_t super;
    if (n != 2 || (super = H5Tget_super(t)) < 0) {
        H5Eclear2(H5E_DEFAULT);
        return false;
    }
    /* Compare values as native long long whatever the base's order or size. */
    for (unsigned i = 0; i < 2; i++) {
        unsigned char value[16];
        char *name;
        long long v = -1;
        int got = enum_member(t, super, i, H5T_NATIVE_LLONG, value, &name);
        if (got == -1)
            break;
        if (got == 0)
            memcpy(&v, value, sizeof v);
        if (strcmp(name, "FALSE") == 0 && v == 0)
            seen_false = true;
        if (strcmp(name, "TRUE") == 0 && v == 1)
            seen_true = true;
        H5free_memory(name);
    }
    H5Tclose(super);
    H5Eclear2(H5E_DEFAULT);
    return seen_false && seen_true;
}

static const char *class_name(H5T_class_t c)
{
    switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_TIME: return "time";
    case H5T_STRING: return "string";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_COMPOUND: return "compound";
    case H5T_REFERENCE: return "reference";
    case H5T_ENUM: return "enum";
    case H5T_VLEN: return "variable-length";
    case H5T_ARRAY: return "array";
    default: return "unknown";
    }
}

static void describe_type(hid_t t, char *why, size_t len)
{
    H5T_class_t c = H5Tget_class(t);
    size_t size = H5Tget_size(t);
    if (c == H5T_FLOAT) {
        size_t spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0;
        H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize);
        snprintf(why, len,
                 "HDF5 float type of %zu bytes (precision %zu, exponent %zu bits, mantissa %zu "
                 "bits, bias %zu) has no tsnap dtype",
                 size, H5Tget_precision(t), esize, msize, H5Tget_ebias(t));
    } else if (c == H5T_COMPOUND) {
        snprintf(why, len,
                 "HDF5 compound type of %zu bytes with %d members is not a complex number "
                 "{r, i} of two equal floats",
                 size, H5Tget_nmembers(t));
    } else {
        snprintf(why, len, "HDF5 %s type of %zu bytes has no tsnap dtype", class_name(c), size);
    }
}

/* Is t stored big-endian?  For compounds and enums, look inside. */
static bool type_big_endian(hid_t t)
{
    H5T_class_t c = H5Tget_class(t);
    bool be = false;
    if (c == H5T_COMPOUND) {
        hid_t m = H5Tget_member_type(t, 0);
        if (m >= 0) {
            be = type_big_endian(m);
            H5Tclose(m);
        }
    } else if (c == H5T_ENUM) {
        hid_t s = H5Tget_super(t);
        if (s >= 0) {
            be = type_big_endian(s);
            H5Tclose(s);
        }
    } else if (c == H5T_INTEGER || c == H5T_FLOAT) {
        be = H5Tget_order(t) == H5T_ORDER_BE;
    }
    return be;
}

/* The complex dtype of a compound {r, i} of two equal floats, or INVALID. */
static tsnap_dtype complex_dtype(hid_t t)
{
    tsnap_dtype part = TSNAP_DTYPE_INVALID, other = TSNAP_DTYPE_INVALID;
    hid_t mr = H5I_INVALID_HID, mi = H5I_INVALID_HID;
    int ir, ii;

    if (H5Tget_nmembers(t) != 2)
        return TSNAP_DTYPE_INVALID;
    ir = H5Tget_member_index(t, "r");
    ii = H5Tget_member_index(t, "i");
    H5Eclear2(H5E_DEFAULT);
    if (ir < 0 || ii < 0)
        return TSNAP_DTYPE_INVALID;
    mr = H5Tget_member_type(t, (unsigned)ir);
    mi = H5Tget_member_type(t, (unsigned)ii);
    if (mr >= 0 && mi >= 0 && H5Tget_class(mr) == H5T_FLOAT && H5Tget_class(mi) == H5T_FLOAT) {
        /* Byte order does not matter to the layout test: compare LE copies. */
        hid_t cr = H5Tcopy(mr), ci = H5Tcopy(mi);
        if (cr >= 0 && ci >= 0 && H5Tset_order(cr, H5T_ORDER_LE) >= 0 &&
            H5Tset_order(ci, H5T_ORDER_LE) >= 0) {
            part = float_dtype(cr);
            other = float_dtype(ci);
        }
        tsnap__h5close(cr);
        tsnap__h5close(ci);
    }
    tsnap__h5close(mr);
    tsnap__h5close(mi);
    if (part != other)
        return TSNAP_DTYPE_INVALID;
    switch (part) {
    case TSNAP_FLOAT16: return TSNAP_COMPLEX32;
    case TSNAP_FLOAT32: return TSNAP_COMPLEX64;
    case TSNAP_FLOAT64: return TSNAP_COMPLEX128;
    default: return TSNAP_DTYPE_INVALID;
    }
}

/* The memory type to read dtype d into: the canonical type in native
 * (little-endian) order; for complex32 the {r, i} compound of float16. */
static hid_t memory_type(tsnap_dtype d)
{
    if (d == TSNAP_COMPLEX32)
        return complex_type(&TABLE[d].f, TABLE[d].size);
    return tsnap__h5type_file(d);
}

/* ---- enums and bitfields ------------------------------------------ */

/* An enum's or a bitfield's type in little-endian order, to read it with:
 * HDF5 converts neither to an integer, so an enum is read as an enum of
 * the same members (the same values, in native order), a bitfield as a
 * bitfield.  `base` is an enum's integer type. */
static hid_t bits_memory_type(hid_t t, hid_t base)
{
    hid_t out = H5I_INVALID_HID, le = H5I_INVALID_HID;
    int n;

    if (base < 0) { /* a bitfield */
        out = H5Tcopy(t);
        if (out >= 0 && H5Tset_order(out, H5T_ORDER_LE) < 0)
            tsnap__h5close(out), out = H5I_INVALID_HID;
        return out;
    }
    if (H5Tget_order(base) != H5T_ORDER_BE)
        return H5Tcopy(t);
    if ((le = H5Tcopy(base)) < 0 || H5Tset_order(le, H5T_ORDER_LE) < 0 ||
        (out = H5Tenum_create(le)) < 0 || (n = H5Tget_nmembers(t)) < 0)
        goto fail;
    for (unsigned i = 0; i < (unsigned)n; i++) {
        unsigned char value[16];
        char *name;
        bool ok = enum_member(t, base, i, le, value, &name) == 0 &&
                  H5Tenum_insert(out, name, value) >= 0;
        if (name)
            H5free_memory(name);
        if (!ok)
            goto fail;
    }
    tsnap__h5close(le);
    return out;
fail:
    tsnap__h5close(le);
    tsnap__h5close(out);
    return H5I_INVALID_HID;
}

int tsnap__enum_members(hid_t t, tsnap_enum_member **out, size_t *count)
{
    hid_t base = H5I_INVALID_HID;
    int n, err = 0;

    *out = NULL;
    *count = 0;
    if (H5Tget_class(t) != H5T_ENUM || !atom_is_sane(t) || enum_is_bool(t))
        return 0;
    if ((base = H5Tget_super(t)) < 0 || (n = H5Tget_nmembers(t)) < 0) {
        err = TSNAP_EFORMAT;
        goto done;
    }
    if (n > 0 && !(*out = calloc((size_t)n, sizeof **out))) {
        err = TSNAP_ENOMEM;
        goto done;
    }
    bool is_signed = H5Tget_sign(base) == H5T_SGN_2;
    for (unsigned i = 0; i < (unsigned)n; i++) {
        unsigned char value[16];
        char *name;
        tsnap_enum_member *m = &(*out)[i];
        if (enum_member(t, base, i, is_signed ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64, value,
                        &name) < 0 ||
            !(m->name = strdup(name))) {
            err = name ? TSNAP_EFORMAT : TSNAP_ENOMEM;
            if (name)
                H5free_memory(name);
            break;
        }
        H5free_memory(name);
        memcpy(&m->value, value, sizeof m->value);
        *count = i + 1;
    }
done:
    tsnap__h5close(base);
    H5Eclear2(H5E_DEFAULT);
    if (err < 0) {
        tsnap__enum_members_free(*out, *count);
        *out = NULL;
        *count = 0;
    }
    return err;
}

void tsnap__enum_members_free(tsnap_enum_member *m, size_t count)
{
    for (size_t i = 0; m && i < count; i++)
        free((char *)m[i].name);
    free(m);
}

int tsnap__dtype_of_h5(hid_t t, tsnap_dtype *dtype, hid_t *memtype, bool *mappable,
                       bool *big_endian, char *why, size_t whylen)
{
    H5T_class_t c = H5Tget_class(t);
    tsnap_dtype d = TSNAP_DTYPE_INVALID;
    hid_t canon, le = H5I_INVALID_HID, base = H5I_INVALID_HID;
    bool bits = false;

    *memtype = H5I_INVALID_HID;
    *mappable = false;
    *big_endian = type_big_endian(t);
    why[0] = '\0';
    if (!atom_is_sane(t)) {
        snprintf(why, whylen, "HDF5 %s type of %zu bytes is damaged (its bits lie outside it)",
                 class_name(c), H5Tget_size(t));
        H5Eclear2(H5E_DEFAULT);
        return TSNAP_ETYPE;
    }

    switch (c) {
    case H5T_INTEGER:
        d = int_dtype(H5Tget_size(t), H5Tget_sign(t) == H5T_SGN_2);
        break;
    case H5T_FLOAT:
        le = H5Tcopy(t);
        if (le >= 0 && H5Tset_order(le, H5T_ORDER_LE) >= 0)
            d = float_dtype(le);
        tsnap__h5close(le);
        break;
    case H5T_ENUM:
        if (enum_is_bool(t)) {
            d = TSNAP_BOOL;
        } else if ((base = H5Tget_super(t)) >= 0 && H5Tget_class(base) == H5T_INTEGER) {
            d = int_dtype(H5Tget_size(base), H5Tget_sign(base) == H5T_SGN_2);
            bits = true;
        }
        break;
    case H5T_BITFIELD:
        d = int_dtype(H5Tget_size(t), false);
        bits = true;
        break;
    case H5T_COMPOUND:
        d = complex_dtype(t);
        break;
    default:
        break;
    }
    H5Eclear2(H5E_DEFAULT);
    if (d == TSNAP_DTYPE_INVALID) {
        tsnap__h5close(base);
        describe_type(t, why, whylen);
        return TSNAP_ETYPE;
    }
    *dtype = d;
    if (bits) { /* enum or bitfield: read as itself, in native order */
        *memtype = bits_memory_type(t, base);
        canon = tsnap__h5type_shared(d);
        *mappable = *memtype >= 0 && canon >= 0 &&
                    H5Tequal(base >= 0 ? base : t, c == H5T_ENUM ? canon : *memtype) > 0;
        tsnap__h5close(base);
        H5Eclear2(H5E_DEFAULT);
        return *memtype < 0 ? TSNAP_ENOMEM : 0;
    }
    *memtype = memory_type(d);
    if (*memtype < 0)
        return TSNAP_ENOMEM;
    /* complex32 in a compound: the canonical storage is float16 pairs,
     * which have a different dataspace, so that layout never maps as is. */
    canon = tsnap__h5type_shared(d);
    if (canon >= 0)
        *mappable = d != TSNAP_COMPLEX32 && H5Tequal(canon, t) > 0;
    H5Eclear2(H5E_DEFAULT);
    return 0;
}

/*
 * reader.c - tsnap._core.Reader (an open file) and tsnap._core.Mapping
 * (the owner of a mapped tensor, the base of the arrays over it).
 */
#include "ext.h"

#include <sys/sysinfo.h>

typedef struct {
    PyObject_HEAD
    tsnap_reader *r;
    PyObject *path; /* bytes, for messages the library cannot word */
    unsigned long long memory; /* memory and swap, bytes (0: not asked yet) */
} ReaderObject;

typedef struct {
    PyObject_HEAD
    tsnap_mapping *m;
} MappingObject;

/* ---------------------------------------------------------------- Mapping */

static void mapping_dealloc(MappingObject *self)
{
    /* munmap only: no library lock needed. */
    tsnap_mapping_free(self->m);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyTypeObject tsnap_ext_MappingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tsnap._core.Mapping",
    .tp_basicsize = sizeof(MappingObject),
    .tp_dealloc = (destructor)mapping_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A tensor mapped read-only from its file; unmapped when the last array over it goes.",
};

/* ----------------------------------------------------------------- Reader */

static void reader_release(ReaderObject *self)
{
    tsnap_reader *r = self->r;

    self->r = NULL;
    Py_CLEAR(self->path);
    if (r)
        TSNAP_EXT_CALL(tsnap_reader_free(r));
}

static int reader_init(ReaderObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"path", NULL};
    PyObject *path = NULL;
    int err;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&", kwlist, PyUnicode_FSConverter, &path))
        return -1;
    reader_release(self);
    const char *cpath = PyBytes_AS_STRING(path);
    TSNAP_EXT_CALL(err = tsnap_reader_open(&self->r, cpath));
    if (err < 0) {
        Py_DECREF(path);
        tsnap_ext_raise(err, TSNAP_EXT_FILE);
        return -1;
    }
    self->path = path;
    return 0;
}

static void reader_dealloc(ReaderObject *self)
{
    reader_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int reader_check(ReaderObject *self)
{
    if (self->r)
        return 0;
    PyErr_SetString(PyExc_ValueError, "tsnap: the file is closed");
    return -1;
}

static PyObject *reader_close(ReaderObject *self, PyObject *unused)
{
    (void)unused;
    reader_release(self);
    Py_RETURN_NONE;
}

static PyObject *reader_names(ReaderObject *self, PyObject *unused)
{
    PyObject *names;
    size_t n;

    (void)unused;
    if (reader_check(self) < 0)
        return NULL;
    /* The names were listed when the file was opened: no library I/O. */
    n = tsnap_reader_count(self->r);
    if (!(names = PyTuple_New((Py_ssize_t)n)))
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *name = tsnap_reader_name(self->r, i);
        /* surrogateescape: a foreign file's non-UTF-8 name survives the
         * round trip back into bytes. */
        PyObject *s = PyUnicode_DecodeUTF8(name, (Py_ssize_t)strlen(name), "surrogateescape");
        if (!s) {
            Py_DECREF(names);
            return NULL;
        }
        PyTuple_SET_ITEM(names, (Py_ssize_t)i, s);
    }
    return names;
}

static PyObject *reader_indexed(ReaderObject *self, void *closure)
{
    (void)closure;
    if (reader_check(self) < 0)
        return NULL;
    return PyBool_FromLong(tsnap_reader_indexed(self->r));
}

static PyObject *reader_format_version(ReaderObject *self, void *closure)
{
    (void)closure;
    if (reader_check(self) < 0)
        return NULL;
    return PyLong_FromLong(tsnap_reader_format_version(self->r));
}

/* The tensor named by a method's one argument, described; -1 with an
 * exception set. */
static int describe_arg(ReaderObject *self, PyObject *args, const char **name,
                        tsnap_tensor_info *info)
{
    int err;
    if (!PyArg_ParseTuple(args, "y", name) || reader_check(self) < 0)
        return -1;
    TSNAP_EXT_CALL(err = tsnap_reader_describe(self->r, *name, info));
    if (err < 0) {
        tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
        return -1;
    }
    return 0;
}

/* describe(name) -> dict of tsnap_tensor_info's fields. */
static PyObject *reader_describe(ReaderObject *self, PyObject *args)
{
    const char *name;
    tsnap_tensor_info info;
    PyObject *shape = NULL, *chunks = NULL, *filters = NULL, *out = NULL;

    if (describe_arg(self, args, &name, &info) < 0)
        return NULL;
    if (!(shape = tsnap_ext_int64_tuple(info.shape, info.ndim)))
        goto done;
    if (info.chunked) {
        if (!(chunks = tsnap_ext_int64_tuple(info.chunk, info.ndim)))
            goto done;
    } else {
        chunks = Py_NewRef(Py_None);
    }
    if (!(filters = PyTuple_New(info.nfilters)))
        goto done;
    for (int i = 0; i < info.nfilters; i++) {
        PyObject *f = PyLong_FromLong(info.filters[i]);
        if (!f)
            goto done;
        PyTuple_SET_ITEM(filters, i, f);
    }
    out = Py_BuildValue(
        "{s:i,s:O,s:O,s:i,s:O,s:O,s:K,s:K,s:O,s:i,s:s,s:K,s:K,s:n,s:N}",
        "dtype", (int)info.dtype, "shape", shape, "chunks", chunks, "codec", (int)info.codec,
        "shuffle", info.shuffle ? Py_True : Py_False, "filters", filters,
        "nbytes", (unsigned long long)info.nbytes,
        "stored_bytes", (unsigned long long)info.stored_bytes,
        "big_endian", info.big_endian ? Py_True : Py_False,
        "map_status", (int)info.map_status, "map_reason", tsnap_map_status_str(info.map_status),
        "offset", (unsigned long long)info.offset, "length", (unsigned long long)info.length,
        "nparts", (Py_ssize_t)info.nparts, "checksum",
        PyUnicode_DecodeUTF8(info.checksum, (Py_ssize_t)strlen(info.checksum), "backslashreplace"));
done:
    Py_XDECREF(shape);
    Py_XDECREF(chunks);
    Py_XDECREF(filters);
    return out;
}

/* enum(name) -> {member name: value} of an enum that loads as its integer
 * type, None for any other type. */
static PyObject *reader_enum(ReaderObject *self, PyObject *args)
{
    const char *name;
    tsnap_tensor_info info;
    const tsnap_enum_member *m = NULL;
    size_t n = 0;
    PyObject *out = NULL;
    int err;

    if (describe_arg(self, args, &name, &info) < 0)
        return NULL;
    TSNAP_EXT_CALL(err = tsnap_reader_enum(self->r, name, &m, &n));
    if (err < 0)
        return tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
    if (n == 0)
        Py_RETURN_NONE;
    if (!(out = PyDict_New()))
        return NULL;
    for (size_t i = 0; i < n; i++) { /* names as the file has them: not always UTF-8 */
        PyObject *k = PyUnicode_DecodeUTF8(m[i].name, (Py_ssize_t)strlen(m[i].name),
                                           "backslashreplace");
        PyObject *v = info.dtype == TSNAP_UINT64
                          ? PyLong_FromUnsignedLongLong((unsigned long long)(uint64_t)m[i].value)
                          : PyLong_FromLongLong((long long)m[i].value);
        if (!k || !v || PyDict_SetItem(out, k, v) < 0) {
            Py_XDECREF(k);
            Py_XDECREF(v);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(k);
        Py_DECREF(v);
    }
    return out;
}

/* parts(name) -> [(file, path, dataset, offset, shape), ...]: the blocks
 * of a virtual tensor, as tsnap_reader_part gives them. */
static PyObject *reader_parts(ReaderObject *self, PyObject *args)
{
    const char *name;
    tsnap_tensor_info info;
    PyObject *out = NULL;
    int err;

    if (describe_arg(self, args, &name, &info) < 0)
        return NULL;
    if (!(out = PyList_New((Py_ssize_t)info.nparts)))
        return NULL;
    for (size_t i = 0; i < info.nparts; i++) {
        tsnap_part p;
        PyObject *item;
        TSNAP_EXT_CALL(err = tsnap_reader_part(self->r, name, i, &p));
        if (err < 0) {
            Py_DECREF(out);
            return tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
        }
        item = Py_BuildValue("(O&O&O&NN)", PyUnicode_DecodeFSDefault, p.file,
                             PyUnicode_DecodeFSDefault, p.path, PyUnicode_DecodeFSDefault,
                             p.dataset, tsnap_ext_int64_tuple(p.offset, info.ndim),
                             tsnap_ext_int64_tuple(p.shape, info.ndim));
        if (!item) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, item);
    }
    return out;
}

/* Reads a sequence of `ndim` ints into v; None leaves *given 0. */
static int int64_seq(PyObject *obj, int ndim, int64_t *v, int *given, const char *what)
{
    PyObject *seq;

    *given = 0;
    if (obj == Py_None)
        return 0;
    if (!(seq = PySequence_Fast(obj, "start, count and step must be sequences")))
        return -1;
    if (PySequence_Fast_GET_SIZE(seq) != ndim) {
        PyErr_Format(PyExc_ValueError, "%s has %zd entries for %d dimensions", what,
                     PySequence_Fast_GET_SIZE(seq), ndim);
        Py_DECREF(seq);
        return -1;
    }
    for (int i = 0; i < ndim; i++) {
        v[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (v[i] == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    *given = 1;
    return 0;
}

/* A new array of `shape` for tensor `name`; a MemoryError that names the
 * file and the tensor when there is no memory for it (NumPy's words name
 * neither, and a damaged dimension may ask for terabytes). */
static PyObject *new_host_array(ReaderObject *self, const char *name, tsnap_dtype dtype,
                                int ndim, const int64_t *shape)
{
    PyObject *arr = NULL;
    unsigned long long nbytes = tsnap_dtype_size(dtype);
    struct sysinfo si;

    for (int i = 0; i < ndim; i++)
        if (__builtin_mul_overflow(nbytes, (unsigned long long)shape[i], &nbytes))
            nbytes = ULLONG_MAX;
    /* More than memory and swap hold could only be had by overcommitting:
     * the read would then touch its pages until the system kills us.
     * Asked once per open file, not once per tensor read. */
    if (!self->memory)
        self->memory = sysinfo(&si) == 0
                           ? ((unsigned long long)si.totalram + si.totalswap) * si.mem_unit
                           : ULLONG_MAX;
    if (nbytes <= self->memory &&
        ((arr = tsnap_ext_new_array(dtype, ndim, shape, NULL)) ||
         !PyErr_ExceptionMatches(PyExc_MemoryError)))
        return arr;
    PyErr_Clear();
    return tsnap_ext_raise_msg(TSNAP_ENOMEM, TSNAP_EXT_TENSOR,
                               "%s: tensor '%s': out of memory (%llu bytes)",
                               PyBytes_AS_STRING(self->path), name, nbytes);
}

/*
 * read(name, dtype, shape, start=None, step=None, device=-1) -> a new
 * array.  `dtype` and `shape` (the full shape, or the count of a selection
 * when `start` is given) come from describe(); the array is in the storage
 * type.  device >= 0: a DeviceArray on that CUDA device instead.
 */
static PyObject *reader_read(ReaderObject *self, PyObject *args)
{
    const char *name;
    int dtype, ndim, has_start, has_step, has_count, err, device = -1;
    PyObject *shape_obj, *start_obj = Py_None, *step_obj = Py_None, *arr;
    int64_t count[TSNAP_MAX_NDIM], start[TSNAP_MAX_NDIM], step[TSNAP_MAX_NDIM];
    DLTensor t;

    if (!PyArg_ParseTuple(args, "yiO|OOi", &name, &dtype, &shape_obj, &start_obj, &step_obj,
                          &device) ||
        reader_check(self) < 0)
        return NULL;
    if ((ndim = (int)PyObject_Length(shape_obj)) < 0)
        return NULL;
    if (ndim > TSNAP_MAX_NDIM) {
        PyErr_SetString(PyExc_ValueError, "too many dimensions");
        return NULL;
    }
    if (int64_seq(shape_obj, ndim, count, &has_count, "shape") < 0 ||
        int64_seq(start_obj, ndim, start, &has_start, "start") < 0 ||
        int64_seq(step_obj, ndim, step, &has_step, "step") < 0)
        return NULL;
    for (int i = 0; i < ndim; i++) {
        if (count[i] < 0) {
            PyErr_SetString(PyExc_ValueError, "negative count");
            return NULL;
        }
    }
    memset(&t, 0, sizeof t);
    if (device >= 0) {
        if (!(arr = tsnap_ext_device_array((tsnap_dtype)dtype, ndim, count, device,
                                           PyBytes_AS_STRING(self->path), name, &t.data)))
            return NULL;
        t.device.device_type = kDLCUDA;
        t.device.device_id = device;
    } else {
        if (!(arr = new_host_array(self, name, (tsnap_dtype)dtype, ndim, count)))
            return NULL;
        /* The array is new and C-contiguous (complex32's pair axis is the
         * storage's, not the tensor's), so the tensor needs no strides. */
        t.data = PyArray_DATA((PyArrayObject *)arr);
        t.device.device_type = kDLCPU;
    }
    t.ndim = ndim;
    t.shape = count;
    tsnap_dtype_to_dlpack(&t.dtype, (tsnap_dtype)dtype);
    /* Only this thread knows the new array, so it may be filled unlocked. */
    TSNAP_EXT_CALL(err = tsnap_reader_read(self->r, name, has_start ? start : NULL,
                                           has_start ? count : NULL, has_step ? step : NULL, &t));
    if (err < 0) {
        Py_DECREF(arr);
        return tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
    }
    return arr;
}

/* An array over a mapping, which it owns (freed on failure too). */
static PyObject *mapped_array(tsnap_mapping *m)
{
    const DLTensor *t;
    tsnap_dtype dtype;
    MappingObject *owner;
    PyObject *arr;

    t = tsnap_mapping_tensor(m);
    if (tsnap_dtype_from_dlpack(&dtype, t->dtype) < 0) {
        tsnap_mapping_free(m);
        PyErr_SetString(PyExc_SystemError, "tsnap: a mapping of no known dtype");
        return NULL;
    }
    if (!(owner = PyObject_New(MappingObject, &tsnap_ext_MappingType))) {
        tsnap_mapping_free(m);
        return NULL;
    }
    owner->m = m;
    if (!(arr = tsnap_ext_new_array(dtype, t->ndim, t->shape, t->data))) {
        Py_DECREF(owner);
        return NULL;
    }
    /* Steals the reference to owner, also on failure. */
    if (PyArray_SetBaseObject((PyArrayObject *)arr, (PyObject *)owner) < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

/* map(name) -> a read-only array over the file's pages, in the storage
 * type; its base is a Mapping that unmaps when the last array goes. */
static PyObject *reader_map(ReaderObject *self, PyObject *args)
{
    const char *name;
    tsnap_mapping *m = NULL;
    int err;

    if (!PyArg_ParseTuple(args, "y", &name) || reader_check(self) < 0)
        return NULL;
    TSNAP_EXT_CALL(err = tsnap_mapping_create(&m, self->r, name));
    if (err < 0)
        return tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
    return mapped_array(m);
}

/* A new array holding the whole of tensor `name` (described as `info`),
 * its checksum checked on the way when `verify`. */
static PyObject *read_whole(ReaderObject *self, const char *name, const tsnap_tensor_info *info,
                            int verify)
{
    PyObject *arr = new_host_array(self, name, info->dtype, info->ndim, info->shape);
    DLTensor t;
    int err;

    if (!arr)
        return NULL;
    memset(&t, 0, sizeof t);
    t.data = PyArray_DATA((PyArrayObject *)arr);
    t.device.device_type = kDLCPU;
    t.ndim = info->ndim;
    t.shape = (int64_t *)info->shape;
    tsnap_dtype_to_dlpack(&t.dtype, info->dtype);
    TSNAP_EXT_CALL(err = verify ? tsnap_reader_read_verified(self->r, name, &t)
                                : tsnap_reader_read(self->r, name, NULL, NULL, NULL, &t));
    if (err < 0) {
        Py_DECREF(arr);
        return tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
    }
    return arr;
}

/* (bytes, -kind) of the single string `name`, or NULL with an exception. */
static PyObject *string_entry(ReaderObject *self, const char *name)
{
    tsnap_string_kind kind = TSNAP_STRING_NONE;
    PyObject *bytes = NULL;
    size_t len = 0, got = 0;
    int err;

    TSNAP_EXT_CALL(err = tsnap_reader_read_string(self->r, name, NULL, 0, &len, &kind));
    if (err < 0)
        return tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
    if (len > (size_t)PY_SSIZE_T_MAX)
        return PyErr_NoMemory();
    if (!(bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len)))
        return NULL;
    TSNAP_EXT_CALL(err = tsnap_reader_read_string(self->r, name, PyBytes_AS_STRING(bytes), len,
                                                  &got, &kind));
    if (err < 0 || got != len) {
        Py_DECREF(bytes);
        if (err < 0)
            return tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
        return tsnap_ext_raise_msg(TSNAP_EFORMAT, TSNAP_EXT_TENSOR,
                                   "tsnap: string '%s' changed length while read", name);
    }
    PyObject *pair = Py_BuildValue("(Ni)", bytes, -(int)kind);
    return pair;
}

/* read_string(name) -> (bytes, kind) */
static PyObject *reader_read_string(ReaderObject *self, PyObject *args)
{
    const char *name;
    PyObject *pair, *out;

    if (!PyArg_ParseTuple(args, "y", &name) || reader_check(self) < 0)
        return NULL;
    if (!(pair = string_entry(self, name)))
        return NULL;
    out = Py_BuildValue("(Oi)", PyTuple_GET_ITEM(pair, 0),
                        -(int)PyLong_AsLong(PyTuple_GET_ITEM(pair, 1)));
    Py_DECREF(pair);
    return out;
}

/* string_kind(name) -> the tsnap_string_kind of a single string dataset,
 * 0 for anything else (a tensor, a type tsnap does not read, no such
 * dataset): nothing is read. */
static PyObject *reader_string_kind(ReaderObject *self, PyObject *args)
{
    const char *name;
    tsnap_tensor_info info;
    int err;

    if (!PyArg_ParseTuple(args, "y", &name) || reader_check(self) < 0)
        return NULL;
    TSNAP_EXT_CALL(err = tsnap_reader_describe(self->r, name, &info));
    return PyLong_FromLong(err == TSNAP_ETYPE ? (long)info.string : 0);
}

/* groups() -> tuple of the groups' full names, sorted */
static PyObject *reader_groups(ReaderObject *self, PyObject *unused)
{
    (void)unused;
    if (reader_check(self) < 0)
        return NULL;
    size_t n = tsnap_reader_group_count(self->r);
    PyObject *groups = PyTuple_New((Py_ssize_t)n);
    for (size_t i = 0; groups && i < n; i++) {
        const char *name = tsnap_reader_group_name(self->r, i);
        PyObject *s = PyUnicode_DecodeUTF8(name, (Py_ssize_t)strlen(name), "surrogateescape");
        if (!s) {
            Py_CLEAR(groups);
            break;
        }
        PyTuple_SET_ITEM(groups, (Py_ssize_t)i, s);
    }
    return groups;
}

/*
 * read_many(names, mode, noview, verify=False) -> [(array or None, dtype
 * code), ...]: every tensor of `names` (bytes) whole, in one call; a
 * single string dataset gives (bytes, -tsnap_string_kind).  mode 0
 * copies, 1 maps (a tensor that does not lie flat raises
 * NotMappableError), 2 maps what lies flat and copies the rest.  Tensors
 * whose dtype code is in `noview` are never mapped: under mode 1 their
 * entry is None (the package says why), under mode 2 they are copied.
 * verify: checksums checked, in the same pass as the copy, or before the
 * map.
 */
static PyObject *reader_read_many(ReaderObject *self, PyObject *args)
{
    PyObject *names, *noview, *seq = NULL, *out = NULL;
    int mode, verify = 0;

    if (!PyArg_ParseTuple(args, "OiO|p", &names, &mode, &noview, &verify) ||
        reader_check(self) < 0)
        return NULL;
    if (!(seq = PySequence_Fast(names, "names must be a sequence of bytes")))
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (!(out = PyList_New(n)))
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i), *arr = NULL, *code, *pair;
        const char *name = PyBytes_AsString(item);
        tsnap_tensor_info info;
        tsnap_mapping *m = NULL;
        int err, blocked;

        if (!name)
            goto fail;
        TSNAP_EXT_CALL(err = tsnap_reader_describe(self->r, name, &info));
        if (err == TSNAP_ETYPE && info.string) { /* (bytes, -kind) */
            if (!(pair = string_entry(self, name)))
                goto fail;
            PyList_SET_ITEM(out, i, pair);
            continue;
        }
        if (err < 0) {
            tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
            goto fail;
        }
        if (!(code = PyLong_FromLong((long)info.dtype)))
            goto fail;
        if ((blocked = PySequence_Contains(noview, code)) < 0) {
            Py_DECREF(code);
            goto fail;
        }
        int flat = info.map_status == TSNAP_MAP_OK || info.map_status == TSNAP_MAP_EMPTY;
        /* a virtual tensor maps when its one block is all of it */
        int virt = info.map_status == TSNAP_MAP_VIRTUAL && info.nparts == 1;
        int mapped = mode == 1 || (mode == 2 && !blocked && (flat || virt));
        err = 0;
        if (mapped && verify) /* the pages are checked before they are handed out */
            TSNAP_EXT_CALL(err = tsnap_reader_verify(self->r, name));
        if (err < 0) {
            arr = tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
        } else if (mode == 1 && blocked) {
            arr = Py_NewRef(Py_None);
        } else if (mapped) {
            /* mode 1 and not flat: the library says why it cannot map */
            TSNAP_EXT_CALL(err = tsnap_mapping_create(&m, self->r, name));
            if (err == TSNAP_ENOTMAPPABLE && mode == 2) /* that one block does not lie flat */
                arr = read_whole(self, name, &info, verify);
            else
                arr = err < 0 ? tsnap_ext_raise(err, TSNAP_EXT_TENSOR) : mapped_array(m);
        } else {
            arr = read_whole(self, name, &info, verify);
        }
        if (!arr || !(pair = PyTuple_Pack(2, arr, code))) {
            Py_XDECREF(arr);
            Py_DECREF(code);
            goto fail;
        }
        Py_DECREF(arr);
        Py_DECREF(code);
        PyList_SET_ITEM(out, i, pair);
    }
    Py_DECREF(seq);
    return out;
fail:
    Py_XDECREF(seq);
    Py_XDECREF(out);
    return NULL;
}

static PyObject *reader_verify(ReaderObject *self, PyObject *args)
{
    const char *name = NULL;
    int err;

    if (!PyArg_ParseTuple(args, "|y", &name) || reader_check(self) < 0)
        return NULL;
    TSNAP_EXT_CALL(err = tsnap_reader_verify(self->r, name));
    if (err < 0)
        return tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
    Py_RETURN_NONE;
}

/* A copy of a numeric attribute value as an array of its storage type. */
static PyObject *attr_array(const tsnap_attr *a)
{
    tsnap_dtype dtype;
    PyObject *arr;
    int64_t n = 1;

    if (tsnap_dtype_from_dlpack(&dtype, a->value.dtype) < 0)
        Py_RETURN_NONE;
    for (int i = 0; i < a->value.ndim; i++)
        n *= a->value.shape[i];
    if (!(arr = tsnap_ext_new_array(dtype, a->value.ndim, a->value.shape, NULL)))
        return NULL;
    /* The reader gives attribute values C-contiguous. */
    memcpy(PyArray_DATA((PyArrayObject *)arr), (char *)a->value.data + a->value.byte_offset,
           (size_t)n * tsnap_dtype_size(dtype));
    return arr;
}

/* attrs(name=None) -> {key: str | ndarray (0-d for a scalar)}.  Values of
 * types tsnap does not read are left out.  Names, here and in every other
 * method, are bytes: UTF-8, with the undecodable bytes of a foreign file
 * carried as surrogates by the package (see names()). */
static PyObject *reader_attrs(ReaderObject *self, PyObject *args)
{
    const char *name = NULL;
    size_t count = 0;
    PyObject *d;
    int err;

    if (!PyArg_ParseTuple(args, "|y", &name) || reader_check(self) < 0)
        return NULL;
    TSNAP_EXT_CALL(err = tsnap_reader_attr_count(self->r, name, &count));
    if (err < 0)
        return tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
    if (!(d = PyDict_New()))
        return NULL;
    for (size_t i = 0; i < count; i++) {
        tsnap_attr a;
        PyObject *v;

        TSNAP_EXT_CALL(err = tsnap_reader_attr(self->r, name, i, &a));
        if (err < 0) {
            Py_DECREF(d);
            return tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
        }
        if (a.kind == TSNAP_ATTR_STRING)
            v = PyUnicode_DecodeUTF8(a.string, (Py_ssize_t)strlen(a.string), "surrogateescape");
        else if (a.kind == TSNAP_ATTR_NUMERIC)
            v = attr_array(&a);
        else
            continue;
        PyObject *k = v ? PyUnicode_DecodeUTF8(a.key, (Py_ssize_t)strlen(a.key),
                                               "surrogateescape") : NULL;
        if (!k || (v != Py_None && PyDict_SetItem(d, k, v) < 0)) {
            Py_XDECREF(k);
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(k);
        Py_DECREF(v);
    }
    return d;
}

static PyMethodDef reader_methods[] = {
    {"close", (PyCFunction)reader_close, METH_NOARGS, "close()"},
    {"names", (PyCFunction)reader_names, METH_NOARGS, "names() -> tuple of full names, sorted"},
    {"describe", (PyCFunction)reader_describe, METH_VARARGS, "describe(name) -> dict"},
    {"enum", (PyCFunction)reader_enum, METH_VARARGS,
     "enum(name) -> {member: value} of an HDF5 enum, or None"},
    {"read", (PyCFunction)reader_read, METH_VARARGS,
     "read(name, dtype, shape, start=None, step=None, device=-1) -> ndarray"},
    {"map", (PyCFunction)reader_map, METH_VARARGS, "map(name) -> read-only ndarray"},
    {"parts", (PyCFunction)reader_parts, METH_VARARGS,
     "parts(name) -> [(file, path, dataset, offset, shape), ...] of a virtual tensor"},
    {"read_many", (PyCFunction)reader_read_many, METH_VARARGS,
     "read_many(names, mode, noview, verify=False) -> [(ndarray or None, dtype code), ...]"},
    {"verify", (PyCFunction)reader_verify, METH_VARARGS, "verify(name=None)"},
    {"attrs", (PyCFunction)reader_attrs, METH_VARARGS, "attrs(name=None) -> dict"},
    {"read_string", (PyCFunction)reader_read_string, METH_VARARGS,
     "read_string(name) -> (bytes, kind): a single string dataset"},
    {"groups", (PyCFunction)reader_groups, METH_NOARGS, "groups() -> tuple of group names"},
    {"string_kind", (PyCFunction)reader_string_kind, METH_VARARGS,
     "string_kind(name) -> 1 text, 2 bytes, 0 not a single string"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef reader_getset[] = {
    {"indexed", (getter)reader_indexed, NULL, "listed from the file's index", NULL},
    {"format_version", (getter)reader_format_version, NULL, "tsnap format version (0: foreign)",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject tsnap_ext_ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tsnap._core.Reader",
    .tp_basicsize = sizeof(ReaderObject),
    .tp_dealloc = (destructor)reader_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Reader(path): an open snapshot (or any HDF5 file)",
    .tp_methods = reader_methods,
    .tp_getset = reader_getset,
    .tp_init = (initproc)reader_init,
    .tp_new = PyType_GenericNew,
};

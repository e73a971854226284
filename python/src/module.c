/*
 * module.c - the tsnap._core module: the library lock, errors, and the
 * mapping between tsnap dtypes and NumPy arrays.
 */
#define TSNAP_EXT_MODULE_C
#include "ext.h"

#include <stdarg.h>

PyThread_type_lock tsnap_ext_lock;

/* The exception classes, defined by the Python package (tsnap/errors.py)
 * and handed over once by set_errors(). */
enum {
    ERR_BASE, ERR_FORMAT, ERR_INTEGRITY, ERR_NOTMAPPABLE, ERR_FILE_NOT_FOUND,
    ERR_KEY, ERR_TYPE, ERR_VALUE, ERR_FILE_EXISTS, ERR_IO, ERR_CUDA, ERR_STATE, ERR_FILTER,
    ERR_COUNT
};
static const char *const error_keys[ERR_COUNT] = {
    "Error", "FormatError", "IntegrityError", "NotMappableError", "FileNotFoundError",
    "KeyError", "TypeError", "ValueError", "FileExistsError", "OSError", "CudaError",
    "StateError", "FilterError",
};
static PyObject *error_classes[ERR_COUNT];

static PyObject *error_class(int code, tsnap_ext_subject subject)
{
    int which;

    switch (code) {
    case TSNAP_EINVAL: which = ERR_VALUE; break;
    case TSNAP_ENOTFOUND: which = subject == TSNAP_EXT_FILE ? ERR_FILE_NOT_FOUND : ERR_KEY; break;
    case TSNAP_EEXISTS: which = subject == TSNAP_EXT_FILE ? ERR_FILE_EXISTS : ERR_VALUE; break;
    case TSNAP_EFORMAT: which = ERR_FORMAT; break;
    case TSNAP_ECHECKSUM: which = ERR_INTEGRITY; break;
    case TSNAP_ENOTMAPPABLE: which = ERR_NOTMAPPABLE; break;
    case TSNAP_ENOCUDA:
    case TSNAP_ECUDA: which = ERR_CUDA; break;
    case TSNAP_EIO: which = ERR_IO; break;
    case TSNAP_ENOMEM: return PyExc_MemoryError;
    case TSNAP_ETYPE: which = ERR_TYPE; break;
    case TSNAP_ESTATE: which = ERR_STATE; break;
    case TSNAP_ENOFILTER: which = ERR_FILTER; break;
    default: which = ERR_BASE; break;
    }
    return error_classes[which] ? error_classes[which] : PyExc_RuntimeError;
}

PyObject *tsnap_ext_dlpack_take(PyObject *obj, PyObject *stream, const char *name,
                                DLManagedTensor **mt)
{
    PyObject *capsule;

    if (stream == Py_None) {
        capsule = PyObject_CallMethod(obj, "__dlpack__", NULL);
    } else {
        PyObject *method = PyObject_GetAttrString(obj, "__dlpack__"), *kw, *none;
        if (!method)
            return NULL;
        none = PyTuple_New(0);
        kw = none ? Py_BuildValue("{sO}", "stream", stream) : NULL;
        capsule = kw ? PyObject_Call(method, none, kw) : NULL;
        Py_XDECREF(kw);
        Py_XDECREF(none);
        Py_DECREF(method);
    }
    if (!capsule)
        return NULL;
    *mt = PyCapsule_IsValid(capsule, "dltensor") ? PyCapsule_GetPointer(capsule, "dltensor")
                                                 : NULL;
    if (!*mt) {
        Py_DECREF(capsule);
        PyErr_Format(PyExc_TypeError,
                     "tsnap: tensor '%s': __dlpack__() did not return a \"dltensor\" capsule",
                     name);
        return NULL;
    }
    if (PyCapsule_SetName(capsule, "used_dltensor") < 0) {
        Py_DECREF(capsule);
        return NULL;
    }
    return capsule;
}

void tsnap_ext_dlpack_done(PyObject *capsule, DLManagedTensor *mt)
{
    if (mt->deleter)
        mt->deleter(mt);
    Py_DECREF(capsule);
}

PyObject *tsnap_ext_int64_tuple(const int64_t *v, int n)
{
    PyObject *t = PyTuple_New(n);

    for (int i = 0; t && i < n; i++) {
        PyObject *x = PyLong_FromLongLong(v[i]);
        if (!x) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, i, x);
    }
    return t;
}

/* Raises cls(text) with the OSError fields errno, strerror and filename
 * set, as the system's failure gives them. */
static void set_os_error(PyObject *cls, PyObject *text, int errnum, const char *path)
{
    PyObject *exc = PyObject_CallOneArg(cls, text), *v;
    int failed = !exc;

    if (!failed && (v = PyLong_FromLong(errnum))) {
        failed |= PyObject_SetAttrString(exc, "errno", v) < 0;
        Py_DECREF(v);
    } else {
        failed = 1;
    }
    if (!failed && (v = PyUnicode_DecodeLocale(strerror(errnum), "surrogateescape"))) {
        failed |= PyObject_SetAttrString(exc, "strerror", v) < 0;
        Py_DECREF(v);
    } else {
        failed = 1;
    }
    if (!failed && *path && (v = PyUnicode_DecodeFSDefault(path))) {
        failed |= PyObject_SetAttrString(exc, "filename", v) < 0;
        Py_DECREF(v);
    } else if (!failed && *path) {
        failed = 1;
    }
    if (!failed)
        PyErr_SetObject(cls, exc);
    Py_XDECREF(exc);
}

PyObject *tsnap_ext_raise(int code, tsnap_ext_subject subject)
{
    const char *msg = tsnap_errmsg();
    PyObject *text;

    if (!*msg)
        msg = tsnap_strerror(code);
    /* The message may quote bytes from a damaged file: never fail on them. */
    text = PyUnicode_DecodeUTF8(msg, (Py_ssize_t)strlen(msg), "backslashreplace");
    if (text) {
        PyObject *cls = error_class(code, subject);
        int errnum = tsnap_errno();
        if (errnum && PyType_Check(cls) &&
            PyType_IsSubtype((PyTypeObject *)cls, (PyTypeObject *)PyExc_OSError))
            set_os_error(cls, text, errnum, tsnap_errpath());
        else
            PyErr_SetObject(cls, text);
        Py_DECREF(text);
    }
    return NULL;
}

PyObject *tsnap_ext_raise_msg(int code, tsnap_ext_subject subject, const char *fmt, ...)
{
    va_list ap;
    PyObject *msg;

    va_start(ap, fmt);
    msg = PyUnicode_FromFormatV(fmt, ap);
    va_end(ap);
    if (msg) {
        PyErr_SetObject(error_class(code, subject), msg);
        Py_DECREF(msg);
    }
    return NULL;
}

int tsnap_ext_storage_type(tsnap_dtype dtype)
{
    switch (dtype) {
    case TSNAP_BOOL: return NPY_BOOL;
    case TSNAP_INT8: return NPY_INT8;
    case TSNAP_INT16: return NPY_INT16;
    case TSNAP_INT32: return NPY_INT32;
    case TSNAP_INT64: return NPY_INT64;
    case TSNAP_UINT8:
    case TSNAP_FLOAT8_E4M3FN:
    case TSNAP_FLOAT8_E5M2: return NPY_UINT8;
    case TSNAP_UINT16:
    case TSNAP_BFLOAT16: return NPY_UINT16;
    case TSNAP_UINT32: return NPY_UINT32;
    case TSNAP_UINT64: return NPY_UINT64;
    case TSNAP_FLOAT16:
    case TSNAP_COMPLEX32: return NPY_HALF;
    case TSNAP_FLOAT32: return NPY_FLOAT32;
    case TSNAP_FLOAT64: return NPY_FLOAT64;
    case TSNAP_COMPLEX64: return NPY_COMPLEX64;
    case TSNAP_COMPLEX128: return NPY_COMPLEX128;
    default: return -1;
    }
}

PyObject *tsnap_ext_new_array(tsnap_dtype dtype, int ndim, const int64_t *shape, void *data)
{
    npy_intp dims[TSNAP_MAX_NDIM + 1];
    int type = tsnap_ext_storage_type(dtype), nd = ndim;
    PyArray_Descr *descr;

    if (type < 0 || ndim < 0 || ndim > TSNAP_MAX_NDIM) {
        PyErr_Format(PyExc_SystemError, "tsnap: no array for dtype %d, ndim %d", (int)dtype, ndim);
        return NULL;
    }
    for (int i = 0; i < ndim; i++)
        dims[i] = (npy_intp)shape[i];
    if (dtype == TSNAP_COMPLEX32)
        dims[nd++] = 2;
    descr = PyArray_DescrFromType(type);
    if (!descr)
        return NULL;
    /* PyArray_NewFromDescr steals the descriptor.  Without the WRITEABLE
     * flag an array over foreign memory is read-only. */
    return PyArray_NewFromDescr(&PyArray_Type, descr, nd, dims, NULL, data,
                                data ? NPY_ARRAY_C_CONTIGUOUS : 0, NULL);
}

int tsnap_ext_dltensor(PyArrayObject *arr, tsnap_dtype dtype, DLTensor *t, int64_t *shape,
                       int64_t *strides)
{
    int ndim = PyArray_NDIM(arr);
    npy_intp itemsize = PyArray_ITEMSIZE(arr);

    memset(t, 0, sizeof *t);
    if ((size_t)itemsize != tsnap_dtype_size(dtype)) {
        PyErr_Format(PyExc_SystemError, "tsnap: array item size %zd is not that of %s",
                     (Py_ssize_t)itemsize, tsnap_dtype_name(dtype));
        return -1;
    }
    if (ndim > TSNAP_MAX_NDIM) {
        PyErr_Format(PyExc_ValueError, "tsnap: %d dimensions (at most %d)", ndim, TSNAP_MAX_NDIM);
        return -1;
    }
    for (int i = 0; i < ndim; i++) {
        npy_intp s = PyArray_STRIDES(arr)[i];
        if (s % itemsize) {
            PyErr_SetString(PyExc_SystemError, "tsnap: array strides are not whole elements");
            return -1;
        }
        shape[i] = PyArray_DIMS(arr)[i];
        strides[i] = s / itemsize;
    }
    t->data = PyArray_DATA(arr);
    t->device.device_type = kDLCPU;
    t->ndim = ndim;
    t->shape = shape;
    t->strides = strides;
    if (tsnap_dtype_to_dlpack(&t->dtype, dtype) < 0) {
        PyErr_Format(PyExc_SystemError, "tsnap: invalid dtype %d", (int)dtype);
        return -1;
    }
    return 0;
}

static PyObject *set_errors(PyObject *mod, PyObject *table)
{
    (void)mod;
    if (!PyDict_Check(table)) {
        PyErr_SetString(PyExc_TypeError, "set_errors() takes a dict");
        return NULL;
    }
    for (int i = 0; i < ERR_COUNT; i++) {
        PyObject *cls = PyDict_GetItemString(table, error_keys[i]);
        if (!cls || !PyType_Check(cls) ||
            !PyType_IsSubtype((PyTypeObject *)cls, (PyTypeObject *)PyExc_Exception)) {
            PyErr_Format(PyExc_TypeError, "set_errors(): '%s' must be an exception class",
                         error_keys[i]);
            return NULL;
        }
    }
    for (int i = 0; i < ERR_COUNT; i++) {
        PyObject *cls = PyDict_GetItemString(table, error_keys[i]);
        Py_INCREF(cls);
        Py_XSETREF(error_classes[i], cls);
    }
    Py_RETURN_NONE;
}

static PyObject *plugin_path_append(PyObject *mod, PyObject *arg)
{
    PyObject *bytes = NULL;
    int err;
    (void)mod;
    if (!PyUnicode_FSConverter(arg, &bytes))
        return NULL;
    err = tsnap_plugin_path_append(PyBytes_AS_STRING(bytes));
    Py_DECREF(bytes);
    if (err < 0)
        return tsnap_ext_raise(err, TSNAP_EXT_FILE);
    Py_RETURN_NONE;
}

static PyObject *filter_name(PyObject *mod, PyObject *arg)
{
    long id = PyLong_AsLong(arg);
    const char *name;
    (void)mod;
    if (id == -1 && PyErr_Occurred())
        return NULL;
    name = id >= INT_MIN && id <= INT_MAX ? tsnap_filter_name((int)id) : NULL;
    if (!name)
        Py_RETURN_NONE;
    return PyUnicode_FromString(name);
}

static PyObject *get_threads(PyObject *mod, PyObject *unused)
{
    (void)mod;
    (void)unused;
    return PyLong_FromLong(tsnap_threads());
}

static PyObject *set_threads(PyObject *mod, PyObject *arg)
{
    long n = PyLong_AsLong(arg);
    int err;
    (void)mod;
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < INT_MIN || n > INT_MAX)
        n = -1;
    if ((err = tsnap_set_threads((int)n)) < 0)
        return tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"threads", get_threads, METH_NOARGS, "threads() -> the number of threads calls use"},
    {"set_threads", set_threads, METH_O, "set_threads(n): 1..256, or 0 for the default"},
    {"filter_name", filter_name, METH_O,
     "filter_name(id) -> the registered name of HDF5 filter id, or None"},
    {"plugin_path_append", plugin_path_append, METH_O,
     "plugin_path_append(dir)\n\nA directory of HDF5 filter plug-ins, used when a dataset first "
     "needs a filter HDF5 has not got."},
    {"set_errors", set_errors, METH_O,
     "set_errors(dict)\n\nThe exception classes to raise, by role (called once by tsnap)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "tsnap._core",
    "The C layer of tsnap: writer, reader and mapping over the tsnap library.",
    -1,
    module_methods,
    NULL, NULL, NULL, NULL,
};

/* Adds name -> int entries to a new dict attribute of the module. */
static int add_table(PyObject *m, const char *attr, const char *const *names, const int *values,
                     int n)
{
    PyObject *d = PyDict_New();
    int err = -1;

    if (!d)
        return -1;
    for (int i = 0; i < n; i++) {
        PyObject *v = PyLong_FromLong(values[i]);
        if (!v || PyDict_SetItemString(d, names[i], v) < 0) {
            Py_XDECREF(v);
            goto done;
        }
        Py_DECREF(v);
    }
    if (PyModule_AddObject(m, attr, d) == 0)
        return 0;
done:
    Py_DECREF(d);
    return err;
}

PyMODINIT_FUNC PyInit__core(void)
{
    static const char *const codec_names[] = {"none", "deflate", "zstd", "lz4", "other"};
    static const int codec_values[] = {TSNAP_CODEC_NONE, TSNAP_CODEC_DEFLATE, TSNAP_CODEC_ZSTD,
                                       TSNAP_CODEC_LZ4, TSNAP_CODEC_OTHER};
    const char *dtype_names[TSNAP_DTYPE_COUNT];
    int dtype_values[TSNAP_DTYPE_COUNT], ndtypes = 0;
    static tsnap_ext_api api = {NULL, tsnap_ext_raise_msg, tsnap_ext_int64_tuple,
                                tsnap_ext_tensor_take, tsnap_ext_tensor_done,
                                tsnap_ext_attr_take, tsnap_ext_save_init,
                                tsnap_ext_save_attrs, tsnap_ext_save_destroy};
    PyObject *m, *capsule;

    import_array();
    if (!tsnap_ext_lock && !(tsnap_ext_lock = PyThread_allocate_lock()))
        return PyErr_NoMemory();
    api.lock = tsnap_ext_lock;
    if (PyType_Ready(&tsnap_ext_WriterType) < 0 || PyType_Ready(&tsnap_ext_ReaderType) < 0 ||
        PyType_Ready(&tsnap_ext_MappingType) < 0 || PyType_Ready(&tsnap_ext_DeviceArrayType) < 0 ||
        PyType_Ready(&tsnap_ext_StoreType) < 0)
        return NULL;
    m = PyModule_Create(&module_def);
    if (!m)
        return NULL;
    for (int d = 1; d < TSNAP_DTYPE_COUNT; d++) {
        dtype_names[ndtypes] = tsnap_dtype_name((tsnap_dtype)d);
        dtype_values[ndtypes++] = d;
    }
    Py_INCREF(&tsnap_ext_WriterType);
    Py_INCREF(&tsnap_ext_ReaderType);
    Py_INCREF(&tsnap_ext_MappingType);
    Py_INCREF(&tsnap_ext_DeviceArrayType);
    Py_INCREF(&tsnap_ext_StoreType);
    if (PyModule_AddObject(m, "Writer", (PyObject *)&tsnap_ext_WriterType) < 0 ||
        PyModule_AddObject(m, "Reader", (PyObject *)&tsnap_ext_ReaderType) < 0 ||
        PyModule_AddObject(m, "Mapping", (PyObject *)&tsnap_ext_MappingType) < 0 ||
        PyModule_AddObject(m, "DeviceArray", (PyObject *)&tsnap_ext_DeviceArrayType) < 0 ||
        PyModule_AddObject(m, "Store", (PyObject *)&tsnap_ext_StoreType) < 0 ||
        PyModule_AddStringConstant(m, "version", tsnap_version()) < 0 ||
        PyModule_AddIntConstant(m, "FORMAT_VERSION", TSNAP_FORMAT_VERSION) < 0 ||
        PyModule_AddIntConstant(m, "DEFAULT_CHUNK_BYTES", (long)TSNAP_DEFAULT_CHUNK_BYTES) < 0 ||
        add_table(m, "DTYPES", dtype_names, dtype_values, ndtypes) < 0 ||
        add_table(m, "CODECS", codec_names, codec_values, 5) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    capsule = PyCapsule_New(&api, TSNAP_EXT_API_CAPSULE, NULL);
    if (!capsule || PyModule_AddObjectRef(m, "_C_API", capsule) < 0) {
        Py_XDECREF(capsule);
        Py_DECREF(m);
        return NULL;
    }
    Py_DECREF(capsule);
    return m;
}

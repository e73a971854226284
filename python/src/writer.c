/*
 * writer.c - tsnap._core.Writer: one snapshot being written.
 *
 * The Python package checks and converts inputs first (tsnap/save.py);
 * this type hands NumPy arrays and DLPack tensors to tsnap_writer_put
 * without a copy.
 */
#include "ext.h"

typedef struct {
    PyObject_HEAD
    tsnap_writer *w;
} WriterObject;

static void writer_release(WriterObject *self)
{
    tsnap_writer *w = self->w;

    self->w = NULL;
    if (w)
        TSNAP_EXT_CALL(tsnap_writer_free(w));
}

static int writer_init(WriterObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"path", "codec", "level", "shuffle", "chunk_bytes", "checksum",
                             "durable", "overwrite", "producer", "threads", NULL};
    tsnap_write_options opts = TSNAP_WRITE_OPTIONS_INIT;
    PyObject *path = NULL;
    int codec = TSNAP_CODEC_NONE, checksum = 1, durable = 1, overwrite = 1, err;
    Py_ssize_t chunk_bytes = 0;
    const char *producer = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&|iiinpppzi", kwlist, PyUnicode_FSConverter,
                                     &path, &codec, &opts.level, &opts.shuffle, &chunk_bytes,
                                     &checksum, &durable, &overwrite, &producer, &opts.threads))
        return -1;
    if (chunk_bytes < 0) {
        Py_DECREF(path);
        PyErr_SetString(PyExc_ValueError, "chunk_bytes must not be negative");
        return -1;
    }
    opts.codec = (tsnap_codec)codec;
    opts.chunk_bytes = (size_t)chunk_bytes;
    opts.checksum = checksum;
    opts.durable = durable;
    opts.overwrite = overwrite;
    opts.producer = producer;
    writer_release(self);
    const char *cpath = PyBytes_AS_STRING(path);
    TSNAP_EXT_CALL(err = tsnap_writer_create(&self->w, cpath, &opts));
    Py_DECREF(path);
    if (err < 0) {
        tsnap_ext_raise(err, TSNAP_EXT_FILE);
        return -1;
    }
    return 0;
}

static void writer_dealloc(WriterObject *self)
{
    writer_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int writer_check(WriterObject *self)
{
    if (self->w)
        return 0;
    PyErr_SetString(PyExc_ValueError, "tsnap: the snapshot is already committed or aborted");
    return -1;
}

/* put(name, array, dtype): array is a native-order, aligned ndarray whose
 * strides are whole elements; dtype is its tsnap dtype code. */
static PyObject *writer_put(WriterObject *self, PyObject *args)
{
    const char *name;
    PyArrayObject *arr;
    int dtype, err;
    int64_t shape[TSNAP_MAX_NDIM], strides[TSNAP_MAX_NDIM];
    DLTensor t;

    if (!PyArg_ParseTuple(args, "yO!i", &name, &PyArray_Type, &arr, &dtype) ||
        writer_check(self) < 0)
        return NULL;
    if (tsnap_ext_dltensor(arr, (tsnap_dtype)dtype, &t, shape, strides) < 0)
        return NULL;
    /* The argument tuple keeps the array alive while the GIL is released. */
    TSNAP_EXT_CALL(err = tsnap_writer_put(self->w, name, &t));
    if (err < 0)
        return tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
    Py_RETURN_NONE;
}

/*
 * put_dlpack(name, obj, stream=None): takes obj.__dlpack__() (see
 * tsnap_ext_dlpack_take) and writes the tensor it describes.
 */
static PyObject *writer_put_dlpack(WriterObject *self, PyObject *args)
{
    const char *name;
    PyObject *obj, *stream = Py_None, *capsule;
    DLManagedTensor *mt;
    int err;

    if (!PyArg_ParseTuple(args, "yO|O", &name, &obj, &stream) || writer_check(self) < 0)
        return NULL;
    if (!(capsule = tsnap_ext_dlpack_take(obj, stream, name, &mt)))
        return NULL;
    TSNAP_EXT_CALL(err = tsnap_writer_put(self->w, name, &mt->dl_tensor));
    tsnap_ext_dlpack_done(capsule, mt);
    if (err < 0)
        return tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
    Py_RETURN_NONE;
}

/* set_attr(tensor, key, value[, dtype]): tensor None or "" is the root;
 * value a str, or an ndarray with its tsnap dtype code. */
static PyObject *writer_set_attr(WriterObject *self, PyObject *args)
{
    const char *tensor = NULL, *key;
    PyObject *value;
    int dtype = 0, err;
    int64_t shape[TSNAP_MAX_NDIM], strides[TSNAP_MAX_NDIM];
    DLTensor t;

    if (!PyArg_ParseTuple(args, "zsO|i", &tensor, &key, &value, &dtype) ||
        writer_check(self) < 0)
        return NULL;
    if (PyUnicode_Check(value)) {
        const char *s = PyUnicode_AsUTF8(value);
        if (!s)
            return NULL;
        TSNAP_EXT_CALL(err = tsnap_writer_set_attr_string(self->w, tensor, key, s));
    } else if (PyArray_Check(value)) {
        if (tsnap_ext_dltensor((PyArrayObject *)value, (tsnap_dtype)dtype, &t, shape, strides) < 0)
            return NULL;
        TSNAP_EXT_CALL(err = tsnap_writer_set_attr(self->w, tensor, key, &t));
    } else {
        PyErr_SetString(PyExc_TypeError, "set_attr() takes a str or an ndarray value");
        return NULL;
    }
    if (err < 0)
        return tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
    Py_RETURN_NONE;
}

/* put_string(name, data, kind): data bytes (UTF-8 text for kind
 * TSNAP_STRING_UTF8). */
static PyObject *writer_put_string(WriterObject *self, PyObject *args)
{
    const char *name, *data;
    Py_ssize_t len;
    int kind, err;

    if (!PyArg_ParseTuple(args, "yy#i", &name, &data, &len, &kind) || writer_check(self) < 0)
        return NULL;
    TSNAP_EXT_CALL(err = tsnap_writer_put_string(self->w, name, data, (size_t)len,
                                                 (tsnap_string_kind)kind));
    if (err < 0)
        return tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
    Py_RETURN_NONE;
}

/* put_group(name) */
static PyObject *writer_put_group(WriterObject *self, PyObject *args)
{
    const char *name;
    int err;

    if (!PyArg_ParseTuple(args, "y", &name) || writer_check(self) < 0)
        return NULL;
    TSNAP_EXT_CALL(err = tsnap_writer_put_group(self->w, name));
    if (err < 0)
        return tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
    Py_RETURN_NONE;
}

/* set_pytype(name, type) */
static PyObject *writer_set_pytype(WriterObject *self, PyObject *args)
{
    const char *name, *type;
    int err;

    if (!PyArg_ParseTuple(args, "ys", &name, &type) || writer_check(self) < 0)
        return NULL;
    TSNAP_EXT_CALL(err = tsnap_writer_set_pytype(self->w, name, type));
    if (err < 0)
        return tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
    Py_RETURN_NONE;
}

static PyObject *writer_commit(WriterObject *self, PyObject *unused)
{
    int err;

    (void)unused;
    if (writer_check(self) < 0)
        return NULL;
    TSNAP_EXT_CALL(err = tsnap_writer_commit(self->w));
    if (err < 0) {
        /* Take the message before freeing: free may run other calls. */
        tsnap_ext_raise(err, TSNAP_EXT_FILE);
        writer_release(self);
        return NULL;
    }
    writer_release(self);
    Py_RETURN_NONE;
}

static PyObject *writer_abort(WriterObject *self, PyObject *unused)
{
    (void)unused;
    writer_release(self);
    Py_RETURN_NONE;
}

static PyMethodDef writer_methods[] = {
    {"put", (PyCFunction)writer_put, METH_VARARGS, "put(name, array, dtype)"},
    {"put_dlpack", (PyCFunction)writer_put_dlpack, METH_VARARGS,
     "put_dlpack(name, obj, stream=None)"},
    {"set_attr", (PyCFunction)writer_set_attr, METH_VARARGS, "set_attr(tensor, key, value[, dtype])"},
    {"put_string", (PyCFunction)writer_put_string, METH_VARARGS,
     "put_string(name, data, kind): a 0-d string dataset"},
    {"put_group", (PyCFunction)writer_put_group, METH_VARARGS, "put_group(name): an empty group"},
    {"set_pytype", (PyCFunction)writer_set_pytype, METH_VARARGS,
     "set_pytype(name, type): the tsnap_pytype attribute"},
    {"commit", (PyCFunction)writer_commit, METH_NOARGS, "commit()"},
    {"abort", (PyCFunction)writer_abort, METH_NOARGS, "abort(): discard the snapshot"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject tsnap_ext_WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tsnap._core.Writer",
    .tp_basicsize = sizeof(WriterObject),
    .tp_dealloc = (destructor)writer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Writer(path, codec=0, level=0, shuffle=-1, chunk_bytes=0, checksum=True, "
              "durable=True, overwrite=True, producer=None, threads=0)",
    .tp_methods = writer_methods,
    .tp_init = (initproc)writer_init,
    .tp_new = PyType_GenericNew,
};

/*
 * store.c - tsnap._core.Store: the C store (tsnap_store_*) for tsnap.Store.
 */
#include "ext.h"

typedef struct {
    PyObject_HEAD
    tsnap_store *s;
} StoreObject;

static void store_release(StoreObject *self)
{
    tsnap_store *s = self->s;
    self->s = NULL;
    if (s)
        TSNAP_EXT_CALL(tsnap_store_free(s)); /* waits for the background saves */
}

/* Store(directory, writable=True, keep_last=0, staging_bytes=0, codec=0,
 *       level=0, chunk_bytes=0, checksum=True, durable=True, threads=0) */
static int store_init(StoreObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"directory", "writable", "keep_last", "staging_bytes", "codec",
                             "level", "chunk_bytes", "checksum", "durable", "threads", NULL};
    tsnap_store_options o = TSNAP_STORE_OPTIONS_INIT;
    PyObject *dir = NULL;
    int codec = TSNAP_CODEC_NONE, err;
    Py_ssize_t staging = 0, chunk_bytes = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&|piniinppi", kwlist, PyUnicode_FSConverter,
                                     &dir, &o.writable, &o.keep_last, &staging, &codec,
                                     &o.write.level, &chunk_bytes, &o.write.checksum,
                                     &o.write.durable, &o.write.threads))
        return -1;
    if (staging < 0 || chunk_bytes < 0) {
        Py_DECREF(dir);
        PyErr_SetString(PyExc_ValueError, "sizes must not be negative");
        return -1;
    }
    o.staging_bytes = (size_t)staging;
    o.write.codec = (tsnap_codec)codec;
    o.write.chunk_bytes = (size_t)chunk_bytes;
    store_release(self);
    TSNAP_EXT_CALL(err = tsnap_store_open(&self->s, PyBytes_AS_STRING(dir), &o));
    Py_DECREF(dir);
    if (err < 0) {
        tsnap_ext_raise(err, TSNAP_EXT_FILE);
        return -1;
    }
    return 0;
}

static void store_dealloc(StoreObject *self)
{
    store_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int store_check(StoreObject *self)
{
    if (self->s)
        return 0;
    PyErr_SetString(PyExc_ValueError, "tsnap: the store is closed");
    return -1;
}

/* steps() -> [int, ...] ascending */
static PyObject *store_steps(StoreObject *self, PyObject *unused)
{
    size_t n = 0, cap = 0;
    int64_t *v = NULL;
    int err;

    (void)unused;
    if (store_check(self) < 0)
        return NULL;
    /* Steps may appear between the two calls: size again until it fits. */
    for (;;) {
        TSNAP_EXT_CALL(err = tsnap_store_steps(self->s, v, cap, &n));
        if (err < 0) {
            PyMem_Free(v);
            return tsnap_ext_raise(err, TSNAP_EXT_FILE);
        }
        if (n <= cap)
            break;
        PyMem_Free(v);
        cap = n + 16;
        if (!(v = PyMem_Malloc(cap * sizeof *v)))
            return PyErr_NoMemory();
    }
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list && i < n; i++) {
        PyObject *x = PyLong_FromLongLong(v[i]);
        if (!x) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, x);
    }
    PyMem_Free(v);
    return list;
}

/* path(step) -> bytes */
static PyObject *store_path(StoreObject *self, PyObject *args)
{
    long long step;
    char buf[4096];
    int err;

    if (!PyArg_ParseTuple(args, "L", &step) || store_check(self) < 0)
        return NULL;
    if ((err = tsnap_store_path(self->s, step, buf, sizeof buf)) < 0)
        return tsnap_ext_raise(err, TSNAP_EXT_FILE);
    return PyBytes_FromString(buf);
}

/* A save's failure: FileExistsError for a step saved already (the library
 * gives it the system's EEXIST), else as a failure about a tensor. */
static PyObject *store_raise(int err)
{
    int step_exists = err == TSNAP_EEXISTS && tsnap_errno() == EEXIST;
    return tsnap_ext_raise(err, step_exists ? TSNAP_EXT_FILE : TSNAP_EXT_TENSOR);
}

/*
 * save(step, items, attrs, wait): items a list of (name bytes, kind,
 * value, code, stream[, pytype]) with kind "array" (value a native ndarray
 * of dtype code), "dlpack" (value an object with __dlpack__, asked with
 * stream), "string" (value bytes, code its tsnap_string_kind) or "group"
 * (value None), and pytype None or the str to record; attrs a list of
 * (key bytes, value, code), value a str or an ndarray.
 */
static PyObject *store_save(StoreObject *self, PyObject *args)
{
    long long step;
    PyObject *items, *attr_items, *ret = NULL;
    int wait, err = 0;
    tsnap_store_item *its = NULL;
    tsnap_ext_save sv = {0};

    if (!PyArg_ParseTuple(args, "LOOp", &step, &items, &attr_items, &wait) ||
        store_check(self) < 0)
        return NULL;
    if (tsnap_ext_save_init(&sv, items, attr_items) < 0)
        goto done;
    if (!(its = PyMem_Calloc((size_t)sv.n + 1, sizeof *its))) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < sv.n; i++) {
        const char *name, *kind, *pytype = NULL;
        PyObject *value, *stream;
        int code;
        Py_ssize_t len;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(sv.tensors, i), "ysOiO|z", &name, &kind,
                              &value, &code, &stream, &pytype))
            goto done;
        its[i] = (tsnap_store_item){.name = name, .tensor = &sv.views[i].t, .pytype = pytype};
        if (strcmp(kind, "string") == 0) {
            its[i].kind = TSNAP_STORE_STRING;
            its[i].string_kind = code;
            if (PyBytes_AsStringAndSize(value, (char **)&its[i].data, &len) < 0)
                goto done;
            its[i].len = (size_t)len;
        } else if (strcmp(kind, "group") == 0) {
            its[i].kind = TSNAP_STORE_GROUP;
        } else if (tsnap_ext_tensor_take(&sv.views[i], name, kind, value, code, stream) < 0) {
            goto done;
        }
    }
    if (tsnap_ext_save_attrs(&sv) < 0)
        goto done;
    /* The argument tuple keeps every array alive while the GIL is released;
     * with wait=False the call returns once they are copied. */
    TSNAP_EXT_CALL(err = tsnap_store_save_items(self->s, step, its, (size_t)sv.n, sv.as,
                                                (size_t)sv.na, wait));
    if (err < 0)
        store_raise(err);
    else
        ret = Py_NewRef(Py_None);
done:
    tsnap_ext_save_destroy(&sv); /* the DLPack tensors taken, each released once */
    PyMem_Free(its);
    return ret;
}

static PyObject *store_wait(StoreObject *self, PyObject *unused)
{
    int err;
    (void)unused;
    if (store_check(self) < 0)
        return NULL;
    TSNAP_EXT_CALL(err = tsnap_store_wait(self->s));
    if (err < 0)
        return store_raise(err);
    Py_RETURN_NONE;
}

static PyObject *store_close(StoreObject *self, PyObject *unused)
{
    (void)unused;
    store_release(self);
    Py_RETURN_NONE;
}

static PyMethodDef store_methods[] = {
    {"steps", (PyCFunction)store_steps, METH_NOARGS, "steps() -> [int, ...], ascending"},
    {"path", (PyCFunction)store_path, METH_VARARGS, "path(step) -> bytes"},
    {"save", (PyCFunction)store_save, METH_VARARGS, "save(step, items, attrs, wait)"},
    {"wait", (PyCFunction)store_wait, METH_NOARGS, "wait(): the background saves"},
    {"close", (PyCFunction)store_close, METH_NOARGS, "close(): waits, then releases the lock"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject tsnap_ext_StoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tsnap._core.Store",
    .tp_basicsize = sizeof(StoreObject),
    .tp_dealloc = (destructor)store_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Store(directory, writable=True, keep_last=0, staging_bytes=0, codec=0, level=0, "
              "chunk_bytes=0, checksum=True, durable=True, threads=0)",
    .tp_methods = store_methods,
    .tp_init = (initproc)store_init,
    .tp_new = PyType_GenericNew,
};

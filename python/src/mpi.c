/*
 * mpi.c - the tsnap._mpi module: distributed snapshots (include/tsnap_mpi.h)
 * for tsnap.save(comm=...) and tsnap.Store(comm=...).
 *
 * A module of its own, linked with MPI, so that `import tsnap` works where
 * MPI is absent.  The helpers that turn arrays and DLPack objects into
 * DLTensors, the exception classes and the one lock are tsnap._core's,
 * taken from its capsule; the library calls are this module's own (it
 * links the library), so their messages are read here.
 *
 * Calls that are collective in the library are collective here: every rank
 * makes them, in the same order.  The GIL is released during each.
 */
#define TSNAP_EXT_MODULE_C /* this module's own NumPy API table */
#include "ext.h"

#include "tsnap_mpi.h"

PyThread_type_lock tsnap_ext_lock; /* tsnap._core's, so TSNAP_EXT_CALL holds it */
static const tsnap_ext_api *api;

static PyObject *raise_err(int code, tsnap_ext_subject subject)
{
    const char *msg = tsnap_errmsg();
    return api->raise_msg(code, subject, "%s", *msg ? msg : tsnap_strerror(code));
}

/* The C communicator of an mpi4py communicator (its py2f()); -1 with the
 * exception set. */
static int comm_of(PyObject *obj, MPI_Comm *comm)
{
    PyObject *f;
    long long h;
    int up = 0, down = 0;

    if (MPI_Initialized(&up) != MPI_SUCCESS || !up || MPI_Finalized(&down) != MPI_SUCCESS ||
        down) {
        api->raise_msg(TSNAP_ESTATE, TSNAP_EXT_FILE, "tsnap: MPI is %s",
                       up ? "finalized" : "not initialized");
        return -1;
    }
    if (!(f = PyObject_CallMethod(obj, "py2f", NULL))) {
        PyErr_Clear();
        api->raise_msg(TSNAP_ETYPE, TSNAP_EXT_FILE,
                       "tsnap: comm must be an mpi4py communicator, not %s",
                       Py_TYPE(obj)->tp_name);
        return -1;
    }
    h = PyLong_AsLongLong(f);
    Py_DECREF(f);
    if (h == -1 && PyErr_Occurred())
        return -1;
    *comm = MPI_Comm_f2c((MPI_Fint)h);
    if (*comm == MPI_COMM_NULL) {
        api->raise_msg(TSNAP_EINVAL, TSNAP_EXT_FILE, "tsnap: comm is MPI.COMM_NULL");
        return -1;
    }
    return 0;
}

/* The write options as the package hands them over: (codec, level,
 * chunk_bytes, checksum, durable, threads), threads never 0 (this module's
 * library copy would not know tsnap.set_threads). */
static int write_options(PyObject *t, tsnap_write_options *o)
{
    int codec;
    Py_ssize_t chunk_bytes;

    if (!PyArg_ParseTuple(t, "iinppi;options must be (codec, level, chunk_bytes, checksum, "
                             "durable, threads)",
                          &codec, &o->level, &chunk_bytes, &o->checksum, &o->durable,
                          &o->threads))
        return -1;
    if (chunk_bytes < 0) {
        PyErr_SetString(PyExc_ValueError, "chunk_bytes must not be negative");
        return -1;
    }
    o->codec = (tsnap_codec)codec;
    o->chunk_bytes = (size_t)chunk_bytes;
    return 0;
}

/* The end of an __init__: drops the path argument, raises a failure. */
static int opened(int err, PyObject *path)
{
    Py_DECREF(path);
    if (err < 0) {
        raise_err(err, TSNAP_EXT_FILE);
        return -1;
    }
    return 0;
}

/* 0 for an open handle, else -1 with `closed` raised. */
static int is_open(const void *handle, const char *closed)
{
    if (handle)
        return 0;
    PyErr_SetString(PyExc_ValueError, closed);
    return -1;
}

/* ------------------------------------------------------------------ */
/* Tensors and attributes                                              */
/* ------------------------------------------------------------------ */

/* One tensor of a save: its name and where its block lies; the tensor
 * itself is a view (tsnap_ext_tensor) beside it. */
typedef struct {
    const char *name;
    int sharded;
    int64_t shape[TSNAP_MAX_NDIM]; /* global */
    int64_t offset[TSNAP_MAX_NDIM];
} item;

static int int64s(PyObject *seq, int n, int64_t *out, const char *name, const char *what)
{
    PyObject *fast = PySequence_Fast(seq, "shape and offset must be tuples");
    int err = -1;

    if (!fast)
        return -1;
    if (PySequence_Fast_GET_SIZE(fast) != n) {
        api->raise_msg(TSNAP_EINVAL, TSNAP_EXT_TENSOR,
                       "tsnap: tensor '%s': a block of %d dimensions, its %s has %zd",
                       name, n, what, PySequence_Fast_GET_SIZE(fast));
        goto done;
    }
    for (int i = 0; i < n; i++) {
        long long v = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(fast, i));
        if (v == -1 && PyErr_Occurred())
            goto done;
        out[i] = v;
    }
    err = 0;
done:
    Py_DECREF(fast);
    return err;
}

/*
 * (name bytes, kind, value, code, stream, shape, offset): the tensor as
 * tsnap_ext_tensor_take reads it (into *x, released by the caller with
 * tensor_done, failure or not); shape and offset the global shape and the
 * block's offset, or None for a replicated tensor.
 */
static int item_take(item *it, tsnap_ext_tensor *x, PyObject *tuple)
{
    const char *kind;
    PyObject *value, *stream, *shape, *offset;
    int code;

    memset(it, 0, sizeof *it);
    memset(x, 0, sizeof *x);
    if (!PyArg_ParseTuple(tuple, "ysOiOOO", &it->name, &kind, &value, &code, &stream, &shape,
                          &offset) ||
        api->tensor_take(x, it->name, kind, value, code, stream) < 0)
        return -1;
    if (shape == Py_None)
        return 0;
    it->sharded = 1;
    if (x->t.ndim < 1 || x->t.ndim > TSNAP_MAX_NDIM) {
        api->raise_msg(TSNAP_EINVAL, TSNAP_EXT_TENSOR,
                       "tsnap: tensor '%s': a block has 1 to %d dimensions, not %d", it->name,
                       TSNAP_MAX_NDIM, (int)x->t.ndim);
        return -1;
    }
    if (int64s(shape, x->t.ndim, it->shape, it->name, "shape") < 0 ||
        int64s(offset, x->t.ndim, it->offset, it->name, "offset") < 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Writer                                                              */
/* ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    tsnap_mpi_writer *w;
} WriterObject;

static void writer_release(WriterObject *self)
{
    tsnap_mpi_writer *w = self->w;
    self->w = NULL;
    if (w)
        TSNAP_EXT_CALL(tsnap_mpi_writer_free(w)); /* local: discards this rank's part */
}

/* Writer(comm, path, options): collective. */
static int writer_init(WriterObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"comm", "path", "options", NULL};
    tsnap_write_options opts = TSNAP_WRITE_OPTIONS_INIT;
    PyObject *comm_obj, *path = NULL, *options;
    MPI_Comm comm;
    int err;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO&O!", kwlist, &comm_obj,
                                     PyUnicode_FSConverter, &path, &PyTuple_Type, &options))
        return -1;
    if (comm_of(comm_obj, &comm) < 0 || write_options(options, &opts) < 0) {
        Py_DECREF(path);
        return -1;
    }
    writer_release(self);
    const char *cpath = PyBytes_AS_STRING(path);
    TSNAP_EXT_CALL(err = tsnap_mpi_writer_create(&self->w, comm, cpath, &opts));
    return opened(err, path);
}

static void writer_dealloc(WriterObject *self)
{
    writer_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int writer_check(WriterObject *self)
{
    return is_open(self->w, "tsnap: the snapshot is already committed or aborted");
}

/* put(item): one tensor, as item_take reads it.  Local. */
static PyObject *writer_put(WriterObject *self, PyObject *tuple)
{
    item it;
    tsnap_ext_tensor x;
    int err;

    if (writer_check(self) < 0)
        return NULL;
    if (item_take(&it, &x, tuple) < 0) {
        api->tensor_done(&x);
        return NULL;
    }
    if (it.sharded)
        TSNAP_EXT_CALL(err = tsnap_mpi_writer_put_block(self->w, it.name, &x.t, it.shape,
                                                        it.offset, NULL));
    else
        TSNAP_EXT_CALL(err = tsnap_mpi_writer_put(self->w, it.name, &x.t, NULL));
    api->tensor_done(&x);
    if (err < 0)
        return raise_err(err, TSNAP_EXT_TENSOR);
    Py_RETURN_NONE;
}

/* set_attr(attr): a root attribute, as tsnap_ext_attr_take reads it.
 * Local. */
static PyObject *writer_set_attr(WriterObject *self, PyObject *tuple)
{
    tsnap_ext_attr at;
    int err;

    if (writer_check(self) < 0 || api->attr_take(&at, tuple) < 0)
        return NULL;
    if (at.a.string)
        TSNAP_EXT_CALL(err = tsnap_mpi_writer_set_attr_string(self->w, NULL, at.a.key,
                                                              at.a.string));
    else
        TSNAP_EXT_CALL(err = tsnap_mpi_writer_set_attr(self->w, NULL, at.a.key, at.a.value));
    if (err < 0)
        return raise_err(err, TSNAP_EXT_TENSOR);
    Py_RETURN_NONE;
}

/* commit(): collective; the writer is finished either way. */
static PyObject *writer_commit(WriterObject *self, PyObject *unused)
{
    tsnap_mpi_writer *w = self->w;
    int err;

    (void)unused;
    if (writer_check(self) < 0)
        return NULL;
    TSNAP_EXT_CALL(err = tsnap_mpi_writer_commit(w));
    if (err < 0)
        raise_err(err, TSNAP_EXT_FILE); /* before the free, which may set another */
    writer_release(self);
    if (err < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* fail(): makes this rank's commit fail (a failed put), so that a failure
 * the ranks agreed on outside the library removes every part.  Local. */
static PyObject *writer_fail(WriterObject *self, PyObject *unused)
{
    (void)unused;
    if (writer_check(self) < 0)
        return NULL;
    TSNAP_EXT_CALL(tsnap_mpi_writer_put_block(self->w, "", NULL, NULL, NULL, NULL));
    Py_RETURN_NONE;
}

static PyObject *writer_abort(WriterObject *self, PyObject *unused)
{
    (void)unused;
    writer_release(self);
    Py_RETURN_NONE;
}

static PyMethodDef writer_methods[] = {
    {"put", (PyCFunction)writer_put, METH_O,
     "put((name, kind, value, code, stream, shape, offset)): a block (shape and offset "
     "given) or a replicated tensor (None, None); local"},
    {"set_attr", (PyCFunction)writer_set_attr, METH_O,
     "set_attr((key, value, code)): a root attribute; local"},
    {"commit", (PyCFunction)writer_commit, METH_NOARGS, "commit(): collective"},
    {"fail", (PyCFunction)writer_fail, METH_NOARGS,
     "fail(): this rank's commit will fail (local)"},
    {"abort", (PyCFunction)writer_abort, METH_NOARGS,
     "abort(): discards this rank's part (local)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tsnap._mpi.Writer",
    .tp_basicsize = sizeof(WriterObject),
    .tp_dealloc = (destructor)writer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Writer(comm, path, options): a distributed snapshot (collective)",
    .tp_methods = writer_methods,
    .tp_init = (initproc)writer_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------ */
/* Store                                                               */
/* ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    tsnap_mpi_store *s;
} StoreObject;

static void store_release(StoreObject *self)
{
    tsnap_mpi_store *s = self->s;
    int down = 1;

    self->s = NULL;
    /* Collective, so every rank must get here.  After MPI_Finalize no
     * collective is possible: the store is left as it is. */
    if (s && MPI_Finalized(&down) == MPI_SUCCESS && !down)
        TSNAP_EXT_CALL(tsnap_mpi_store_free(s));
}

/* Store(comm, directory, writable, keep_last, staging_bytes, options):
 * collective. */
static int store_init(StoreObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"comm", "directory", "writable", "keep_last", "staging_bytes",
                             "options", NULL};
    tsnap_store_options o = TSNAP_STORE_OPTIONS_INIT;
    PyObject *comm_obj, *dir = NULL, *options;
    Py_ssize_t staging;
    MPI_Comm comm;
    int err;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO&pinO!", kwlist, &comm_obj,
                                     PyUnicode_FSConverter, &dir, &o.writable, &o.keep_last,
                                     &staging, &PyTuple_Type, &options))
        return -1;
    if (comm_of(comm_obj, &comm) < 0 || write_options(options, &o.write) < 0) {
        Py_DECREF(dir);
        return -1;
    }
    if (staging < 0) {
        Py_DECREF(dir);
        PyErr_SetString(PyExc_ValueError, "staging_bytes must not be negative");
        return -1;
    }
    o.staging_bytes = (size_t)staging;
    store_release(self);
    const char *cdir = PyBytes_AS_STRING(dir);
    TSNAP_EXT_CALL(err = tsnap_mpi_store_open(&self->s, comm, cdir, &o));
    return opened(err, dir);
}

static void store_dealloc(StoreObject *self)
{
    store_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int store_check(StoreObject *self)
{
    return is_open(self->s, "tsnap: the store is closed");
}

/* steps() -> (int, ...) ascending: collective. */
static PyObject *store_steps(StoreObject *self, PyObject *unused)
{
    size_t n = 0, cap = 64;
    int64_t *v = NULL;
    PyObject *steps = NULL;
    int err;

    (void)unused;
    if (store_check(self) < 0)
        return NULL;
    /* Every rank gets rank 0's count, so every rank loops alike. */
    for (;;) {
        PyMem_Free(v);
        if (!(v = PyMem_Malloc(cap * sizeof *v)))
            return PyErr_NoMemory();
        TSNAP_EXT_CALL(err = tsnap_mpi_store_steps(self->s, v, cap, &n));
        if (err < 0) {
            raise_err(err, TSNAP_EXT_FILE);
            goto done;
        }
        if (n <= cap)
            break;
        cap = n + 64;
    }
    if (n > INT_MAX)
        PyErr_SetString(PyExc_OverflowError, "tsnap: too many steps");
    else
        steps = api->int64_tuple(v, (int)n);
done:
    PyMem_Free(v);
    return steps;
}

/* latest() -> int or None: collective. */
static PyObject *store_latest(StoreObject *self, PyObject *unused)
{
    int64_t step = 0;
    int err;

    (void)unused;
    if (store_check(self) < 0)
        return NULL;
    TSNAP_EXT_CALL(err = tsnap_mpi_store_latest(self->s, &step));
    if (err == TSNAP_ENOTFOUND)
        Py_RETURN_NONE;
    if (err < 0)
        return raise_err(err, TSNAP_EXT_FILE);
    return PyLong_FromLongLong(step);
}

/* path(step) -> bytes: local. */
static PyObject *store_path(StoreObject *self, PyObject *args)
{
    long long step;
    char buf[4096];
    int err;

    if (!PyArg_ParseTuple(args, "L", &step) || store_check(self) < 0)
        return NULL;
    if ((err = tsnap_mpi_store_path(self->s, step, buf, sizeof buf)) < 0)
        return raise_err(err, TSNAP_EXT_FILE);
    return PyBytes_FromString(buf);
}

/* save(step, items, attrs, wait): collective; items as Writer.put takes
 * them, attrs as Writer.set_attr. */
static PyObject *store_save(StoreObject *self, PyObject *args)
{
    long long step;
    PyObject *items, *attr_items, *ret = NULL;
    PyObject *ftype = NULL, *fvalue = NULL, *ftb = NULL; /* this rank's failure */
    int wait, err, failed = 0;
    Py_ssize_t taken = 0;
    size_t count;
    item *its = NULL;
    tsnap_mpi_tensor *ts = NULL;
    tsnap_ext_save sv = {0};

    if (!PyArg_ParseTuple(args, "LOOp", &step, &items, &attr_items, &wait) ||
        store_check(self) < 0)
        return NULL;
    if (api->save_init(&sv, items, attr_items) < 0)
        goto done;
    its = PyMem_Calloc((size_t)sv.n + 1, sizeof *its);
    ts = PyMem_Calloc((size_t)sv.n + 1, sizeof *ts);
    if (!its || !ts) {
        PyErr_NoMemory();
        goto done;
    }
    failed = api->save_attrs(&sv) < 0;
    for (; taken < sv.n && !failed; taken++) {
        item *it = &its[taken];
        tsnap_ext_tensor *x = &sv.views[taken];
        if (item_take(it, x, PySequence_Fast_GET_ITEM(sv.tensors, taken)) < 0) {
            api->tensor_done(x); /* before the collective, as a put's */
            failed = 1;
            break;
        }
        ts[taken].name = it->name;
        ts[taken].tensor = &x->t;
        ts[taken].shape = it->sharded ? it->shape : NULL;
        ts[taken].offset = it->sharded ? it->offset : NULL;
    }
    count = (size_t)taken;
    if (failed) {
        /* The other ranks are on their way into the collective: go with
         * them, with a tensor the library refuses (no name), so that the
         * save fails on every rank; this rank raises its own error. */
        PyErr_Fetch(&ftype, &fvalue, &ftb);
        ts[count++] = (tsnap_mpi_tensor){"", NULL, NULL, NULL};
    }
    /* The argument tuple keeps every array alive while the GIL is released;
     * with wait=False the call returns once they are staged. */
    TSNAP_EXT_CALL(err = tsnap_mpi_store_save(self->s, step, ts, count, failed ? NULL : sv.as,
                                              failed ? 0 : (size_t)sv.na, wait));
    if (failed)
        PyErr_Restore(ftype, fvalue, ftb);
    else if (err < 0)
        raise_err(err, TSNAP_EXT_TENSOR);
    else
        ret = Py_NewRef(Py_None);
done:
    api->save_destroy(&sv); /* the DLPack tensors taken, each released once */
    PyMem_Free(its);
    PyMem_Free(ts);
    return ret;
}

/* wait(): collective. */
static PyObject *store_wait(StoreObject *self, PyObject *unused)
{
    int err;
    (void)unused;
    if (store_check(self) < 0)
        return NULL;
    TSNAP_EXT_CALL(err = tsnap_mpi_store_wait(self->s));
    if (err < 0)
        return raise_err(err, TSNAP_EXT_TENSOR);
    Py_RETURN_NONE;
}

/* close(): collective. */
static PyObject *store_close(StoreObject *self, PyObject *unused)
{
    (void)unused;
    store_release(self);
    Py_RETURN_NONE;
}

static PyMethodDef store_methods[] = {
    {"steps", (PyCFunction)store_steps, METH_NOARGS, "steps() -> (int, ...); collective"},
    {"latest", (PyCFunction)store_latest, METH_NOARGS, "latest() -> int or None; collective"},
    {"path", (PyCFunction)store_path, METH_VARARGS, "path(step) -> bytes; local"},
    {"save", (PyCFunction)store_save, METH_VARARGS,
     "save(step, tensors, attrs, wait); collective"},
    {"wait", (PyCFunction)store_wait, METH_NOARGS, "wait(); collective"},
    {"close", (PyCFunction)store_close, METH_NOARGS, "close(): waits, then closes; collective"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject StoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tsnap._mpi.Store",
    .tp_basicsize = sizeof(StoreObject),
    .tp_dealloc = (destructor)store_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Store(comm, directory, writable, keep_last, staging_bytes, options): a store of "
              "distributed snapshots (collective)",
    .tp_methods = store_methods,
    .tp_init = (initproc)store_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------ */
/* The module                                                          */
/* ------------------------------------------------------------------ */

/* dlpack_ndim(capsule, name) -> the dimensions of an unconsumed DLPack
 * capsule's tensor. */
static PyObject *dlpack_ndim(PyObject *mod, PyObject *args)
{
    PyObject *capsule;
    const char *name;
    DLManagedTensor *mt;

    (void)mod;
    if (!PyArg_ParseTuple(args, "Oy", &capsule, &name))
        return NULL;
    if (!PyCapsule_IsValid(capsule, "dltensor") ||
        !(mt = PyCapsule_GetPointer(capsule, "dltensor")))
        return api->raise_msg(TSNAP_ETYPE, TSNAP_EXT_TENSOR,
                              "tsnap: tensor '%s': __dlpack__() did not return a \"dltensor\" "
                              "capsule",
                              name);
    return PyLong_FromLong(mt->dl_tensor.ndim);
}

static PyMethodDef module_methods[] = {
    {"dlpack_ndim", dlpack_ndim, METH_VARARGS,
     "dlpack_ndim(capsule, name) -> the tensor's dimensions"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "tsnap._mpi",
    "Distributed snapshots over MPI: the collective writer and store of tsnap_mpi.h.",
    -1,
    module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__mpi(void)
{
    PyObject *m;

    import_array();
    if (!(api = PyCapsule_Import(TSNAP_EXT_API_CAPSULE, 0)))
        return NULL;
    tsnap_ext_lock = api->lock;
    if (PyType_Ready(&WriterType) < 0 || PyType_Ready(&StoreType) < 0)
        return NULL;
    if (!(m = PyModule_Create(&module_def)))
        return NULL;
    if (PyModule_AddObjectRef(m, "Writer", (PyObject *)&WriterType) < 0 ||
        PyModule_AddObjectRef(m, "Store", (PyObject *)&StoreType) < 0 ||
        PyModule_AddStringConstant(m, "version", tsnap_version()) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

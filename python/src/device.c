/*
 * device.c - tsnap._core.DeviceArray: a tensor read into CUDA memory.
 *
 * It owns its device buffer (freed with the last reference) and hands it
 * out without a copy through __dlpack__ (torch.from_dlpack, cupy.from_dlpack,
 * jax.dlpack) and __cuda_array_interface__ (cupy.asarray, numba).  The data
 * is complete when the object exists: the read waited for its copies, so a
 * consumer's stream needs no synchronisation.
 */
#include "ext.h"

/* The library's own (src/device.c), linked in with the static library. */
int tsnap__cuda_alloc(int device, size_t n, void **p, const char *file, const char *name);
void tsnap__cuda_free(int device, void *p);
int tsnap__cuda_current_device(void);

typedef struct {
    PyObject_HEAD
    void *ptr; /* device memory */
    int device;
    int ndim;
    int64_t shape[TSNAP_MAX_NDIM + 1];
    tsnap_dtype dtype;
    size_t nbytes;
} DeviceArrayObject;

/* The DLManagedTensor a capsule carries: it holds a reference to its array. */
typedef struct {
    DLManagedTensor mt;
    int64_t shape[TSNAP_MAX_NDIM + 1];
} exported;

static void exported_delete(DLManagedTensor *mt)
{
    PyGILState_STATE g = PyGILState_Ensure();
    Py_XDECREF((PyObject *)mt->manager_ctx);
    PyMem_RawFree(mt);
    PyGILState_Release(g);
}

static void capsule_destructor(PyObject *capsule)
{
    /* Not consumed (still "dltensor"): the capsule owns the tensor. */
    if (PyCapsule_IsValid(capsule, "dltensor")) {
        DLManagedTensor *mt = PyCapsule_GetPointer(capsule, "dltensor");
        if (mt && mt->deleter)
            mt->deleter(mt);
    }
}

static PyObject *device_array_dlpack(DeviceArrayObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kw[] = {"stream", "max_version", "dl_device", "copy", NULL};
    PyObject *stream = Py_None, *max_version = Py_None, *dl_device = Py_None, *copy = Py_None;
    exported *e;
    PyObject *capsule;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$OOOO", kw, &stream, &max_version,
                                     &dl_device, &copy))
        return NULL;
    if (copy != Py_None && PyObject_IsTrue(copy)) {
        PyErr_SetString(PyExc_BufferError, "tsnap.DeviceArray: __dlpack__(copy=True) is not "
                                           "supported; the consumer may copy");
        return NULL;
    }
    if (!(e = PyMem_RawCalloc(1, sizeof *e)))
        return PyErr_NoMemory();
    memcpy(e->shape, self->shape, sizeof e->shape);
    e->mt.dl_tensor.data = self->ptr;
    e->mt.dl_tensor.device.device_type = kDLCUDA;
    e->mt.dl_tensor.device.device_id = self->device;
    e->mt.dl_tensor.ndim = self->ndim;
    e->mt.dl_tensor.shape = e->shape;
    tsnap_dtype_to_dlpack(&e->mt.dl_tensor.dtype, self->dtype);
    e->mt.manager_ctx = Py_NewRef((PyObject *)self);
    e->mt.deleter = exported_delete;
    if (!(capsule = PyCapsule_New(&e->mt, "dltensor", capsule_destructor))) {
        Py_DECREF(self);
        PyMem_RawFree(e);
    }
    return capsule;
}

static PyObject *device_array_dlpack_device(DeviceArrayObject *self, PyObject *unused)
{
    (void)unused;
    return Py_BuildValue("(ii)", (int)kDLCUDA, self->device);
}

/* NumPy's type string of a dtype, or NULL where NumPy has none. */
static const char *typestr(tsnap_dtype d)
{
    switch (d) {
    case TSNAP_BOOL: return "|b1";
    case TSNAP_INT8: return "|i1";
    case TSNAP_UINT8: return "|u1";
    case TSNAP_INT16: return "<i2";
    case TSNAP_UINT16: return "<u2";
    case TSNAP_INT32: return "<i4";
    case TSNAP_UINT32: return "<u4";
    case TSNAP_INT64: return "<i8";
    case TSNAP_UINT64: return "<u8";
    case TSNAP_FLOAT16: return "<f2";
    case TSNAP_FLOAT32: return "<f4";
    case TSNAP_FLOAT64: return "<f8";
    case TSNAP_COMPLEX64: return "<c8";
    case TSNAP_COMPLEX128: return "<c16";
    default: return NULL;
    }
}

static PyObject *shape_tuple(const DeviceArrayObject *self)
{
    return tsnap_ext_int64_tuple(self->shape, self->ndim);
}

static PyObject *device_array_cai(DeviceArrayObject *self, void *closure)
{
    const char *ts = typestr(self->dtype);
    (void)closure;
    if (!ts) {
        PyErr_Format(PyExc_AttributeError,
                     "a %s tensor has no __cuda_array_interface__ type string: use __dlpack__",
                     tsnap_dtype_name(self->dtype));
        return NULL;
    }
    PyObject *shape = shape_tuple(self);
    if (!shape)
        return NULL;
    /* An empty tensor's pointer may be anything; the protocol asks for 0. */
    unsigned long long ptr = self->nbytes ? (unsigned long long)(uintptr_t)self->ptr : 0;
    return Py_BuildValue("{sNsss(KO)sisOsO}", "shape", shape, "typestr", ts, "data", ptr,
                         Py_False, "version", 3, "strides", Py_None, "stream", Py_None);
}

static PyObject *device_array_shape(DeviceArrayObject *self, void *closure)
{
    (void)closure;
    return shape_tuple(self);
}

static PyObject *device_array_device(DeviceArrayObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromLong(self->device);
}

static PyObject *device_array_dtype(DeviceArrayObject *self, void *closure)
{
    (void)closure;
    return PyUnicode_FromString(tsnap_dtype_name(self->dtype));
}

static PyObject *device_array_nbytes(DeviceArrayObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromSize_t(self->nbytes);
}

static PyObject *device_array_repr(DeviceArrayObject *self)
{
    PyObject *shape = shape_tuple(self), *r;
    if (!shape)
        return NULL;
    r = PyUnicode_FromFormat("<tsnap.DeviceArray shape=%R dtype=%s on cuda:%d>", shape,
                             tsnap_dtype_name(self->dtype), self->device);
    Py_DECREF(shape);
    return r;
}

static void device_array_dealloc(DeviceArrayObject *self)
{
    tsnap__cuda_free(self->device, self->ptr);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *device_array_current_device(PyObject *cls, PyObject *noargs)
{
    int device;
    (void)cls, (void)noargs;
    Py_BEGIN_ALLOW_THREADS
    device = tsnap__cuda_current_device();
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(device);
}

static PyMethodDef device_array_methods[] = {
    {"__dlpack__", (PyCFunction)(void (*)(void))device_array_dlpack, METH_VARARGS | METH_KEYWORDS,
     "__dlpack__(*, stream=None, max_version=None, dl_device=None, copy=None): a DLPack capsule "
     "of the device memory, no copy"},
    {"__dlpack_device__", (PyCFunction)device_array_dlpack_device, METH_NOARGS,
     "(kDLCUDA, device)"},
    {"current_device", (PyCFunction)device_array_current_device, METH_NOARGS | METH_STATIC,
     "current_device() -> the CUDA device of the calling thread's current context (what "
     "\"cuda\" without a number means); 0 when it has none or CUDA cannot be used"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef device_array_getset[] = {
    {"__cuda_array_interface__", (getter)device_array_cai, NULL, "version 3", NULL},
    {"shape", (getter)device_array_shape, NULL, "the tensor's shape", NULL},
    {"device", (getter)device_array_device, NULL, "the CUDA device number", NULL},
    {"tsnap_dtype", (getter)device_array_dtype, NULL, "the tsnap dtype's name", NULL},
    {"nbytes", (getter)device_array_nbytes, NULL, "bytes of device memory", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject tsnap_ext_DeviceArrayType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tsnap.DeviceArray",
    .tp_basicsize = sizeof(DeviceArrayObject),
    .tp_dealloc = (destructor)device_array_dealloc,
    .tp_repr = (reprfunc)device_array_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A tensor in CUDA memory, read by tsnap; hand it to a framework with "
              "__dlpack__ or __cuda_array_interface__ (no copy).",
    .tp_methods = device_array_methods,
    .tp_getset = device_array_getset,
};

PyObject *tsnap_ext_device_array(tsnap_dtype dtype, int ndim, const int64_t *shape, int device,
                                 const char *file, const char *name, void **data)
{
    DeviceArrayObject *a;
    size_t n = tsnap_dtype_size(dtype);
    int err;

    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    if (!(a = PyObject_New(DeviceArrayObject, &tsnap_ext_DeviceArrayType)))
        return NULL;
    a->ptr = NULL;
    a->device = device;
    a->ndim = ndim;
    a->dtype = dtype;
    a->nbytes = n;
    memset(a->shape, 0, sizeof a->shape);
    memcpy(a->shape, shape, (size_t)ndim * sizeof *shape);
    TSNAP_EXT_CALL(err = tsnap__cuda_alloc(device, n, &a->ptr, file, name));
    if (err < 0) {
        Py_DECREF(a);
        return tsnap_ext_raise(err, TSNAP_EXT_TENSOR);
    }
    *data = a->ptr;
    return (PyObject *)a;
}

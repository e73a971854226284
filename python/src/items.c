/*
 * items.c - the tensors and root attributes of a save as the package hands
 * them over, turned into C views for the library.
 *
 * Shared by tsnap._core.Store and the writer and store of tsnap._mpi
 * (through the capsule, see ext.h), so that every one reads its items the
 * same way, with the same messages, and releases every DLPack tensor it
 * took exactly once.
 */
#include "ext.h"

int tsnap_ext_tensor_take(tsnap_ext_tensor *x, const char *name, const char *kind,
                          PyObject *value, int code, PyObject *stream)
{
    memset(x, 0, sizeof *x);
    if (strcmp(kind, "array") == 0) {
        if (!PyArray_Check(value)) {
            PyErr_SetString(PyExc_TypeError, "an \"array\" tensor must be an ndarray");
            return -1;
        }
        return tsnap_ext_dltensor((PyArrayObject *)value, (tsnap_dtype)code, &x->t, x->dims[0],
                                  x->dims[1]);
    }
    if (!(x->capsule = tsnap_ext_dlpack_take(value, stream, name, &x->mt)))
        return -1;
    x->t = x->mt->dl_tensor;
    return 0;
}

void tsnap_ext_tensor_done(tsnap_ext_tensor *x)
{
    PyObject *type, *value, *tb;

    if (x->capsule) {
        /* A failed save releases its tensors with its exception set: a
         * deleter that runs Python code must neither see nor lose it. */
        PyErr_Fetch(&type, &value, &tb);
        tsnap_ext_dlpack_done(x->capsule, x->mt);
        PyErr_Restore(type, value, tb);
    }
    x->capsule = NULL;
    x->mt = NULL;
}

int tsnap_ext_attr_take(tsnap_ext_attr *at, PyObject *tuple)
{
    PyObject *value;
    int code;

    memset(at, 0, sizeof *at);
    if (!PyArg_ParseTuple(tuple, "yOi", &at->a.key, &value, &code))
        return -1;
    if (PyUnicode_Check(value))
        return (at->a.string = PyUnicode_AsUTF8(value)) ? 0 : -1;
    if (!PyArray_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "an attribute is a str or an ndarray");
        return -1;
    }
    if (tsnap_ext_dltensor((PyArrayObject *)value, (tsnap_dtype)code, &at->value, at->dims[0],
                           at->dims[1]) < 0)
        return -1;
    at->a.value = &at->value;
    return 0;
}

int tsnap_ext_save_init(tsnap_ext_save *sv, PyObject *tensors, PyObject *attrs)
{
    memset(sv, 0, sizeof *sv);
    if (!(sv->tensors = PySequence_Fast(tensors, "tensors must be a list")) ||
        !(sv->attrs = PySequence_Fast(attrs, "attrs must be a list")))
        return -1;
    sv->n = PySequence_Fast_GET_SIZE(sv->tensors);
    sv->na = PySequence_Fast_GET_SIZE(sv->attrs);
    sv->views = PyMem_Calloc((size_t)sv->n + 1, sizeof *sv->views);
    sv->ats = PyMem_Calloc((size_t)sv->na + 1, sizeof *sv->ats);
    sv->as = PyMem_Calloc((size_t)sv->na + 1, sizeof *sv->as);
    if (!sv->views || !sv->ats || !sv->as) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

int tsnap_ext_save_attrs(tsnap_ext_save *sv)
{
    for (Py_ssize_t i = 0; i < sv->na; i++) {
        if (tsnap_ext_attr_take(&sv->ats[i], PySequence_Fast_GET_ITEM(sv->attrs, i)) < 0)
            return -1;
        sv->as[i] = sv->ats[i].a;
    }
    return 0;
}

void tsnap_ext_save_destroy(tsnap_ext_save *sv)
{
    for (Py_ssize_t i = 0; sv->views && i < sv->n; i++)
        tsnap_ext_tensor_done(&sv->views[i]);
    PyMem_Free(sv->views);
    PyMem_Free(sv->ats);
    PyMem_Free(sv->as);
    Py_XDECREF(sv->tensors);
    Py_XDECREF(sv->attrs);
    memset(sv, 0, sizeof *sv);
}

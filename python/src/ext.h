/*
 * ext.h - shared by the files of the tsnap._core extension module.
 *
 * The module is a thin layer over the C library: it turns Python objects
 * into DLTensors and back, and library errors into exceptions.  Argument
 * shaping lives in the Python package (python/tsnap).
 */
#ifndef TSNAP_EXT_H
#define TSNAP_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define NPY_NO_DEPRECATED_API NPY_1_20_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL tsnap_ext_ARRAY_API
#ifndef TSNAP_EXT_MODULE_C
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

#include "tsnap.h"

/*
 * Every call into the library runs with the GIL released and holding this
 * one lock, so that library and HDF5 calls never run at once from two
 * threads (h5py's "phil").  The lock is taken only after the GIL is given
 * up, never the other way round, so the two cannot deadlock.
 */
extern PyThread_type_lock tsnap_ext_lock;

#define TSNAP_EXT_CALL(stmt)                                  \
    do {                                                      \
        Py_BEGIN_ALLOW_THREADS                                \
        PyThread_acquire_lock(tsnap_ext_lock, WAIT_LOCK);     \
        stmt;                                                 \
        PyThread_release_lock(tsnap_ext_lock);                \
        Py_END_ALLOW_THREADS                                  \
    } while (0)

/* What a failed call was about: it decides which exception a "not found"
 * or "exists" becomes (FileNotFoundError for a file, KeyError for a
 * tensor). */
typedef enum tsnap_ext_subject {
    TSNAP_EXT_FILE,
    TSNAP_EXT_TENSOR
} tsnap_ext_subject;

/* Raises the exception for library code `code` with the thread's message;
 * returns NULL. */
PyObject *tsnap_ext_raise(int code, tsnap_ext_subject subject);

/* obj.__dlpack__() (with stream=stream unless it is None), renamed
 * "used_dltensor" as the protocol asks, its tensor in *mt; NULL with the
 * exception set.  tsnap_ext_dlpack_done calls the deleter, exactly once,
 * and drops the capsule. */
PyObject *tsnap_ext_dlpack_take(PyObject *obj, PyObject *stream, const char *name,
                                DLManagedTensor **mt);
void tsnap_ext_dlpack_done(PyObject *capsule, DLManagedTensor *mt);

/* A tuple of n Python ints. */
PyObject *tsnap_ext_int64_tuple(const int64_t *v, int n);

/* Raises tsnap.Error's subclass for `code` with a message of our own. */
PyObject *tsnap_ext_raise_msg(int code, tsnap_ext_subject subject, const char *fmt, ...);

/* The NumPy type an element of `dtype` is held in (bfloat16 and float8 as
 * their raw unsigned bits, complex32 as float16 pairs), or -1. */
int tsnap_ext_storage_type(tsnap_dtype dtype);

/*
 * A new uninitialised C-contiguous array that holds `ndim` x `shape`
 * elements of `dtype` in its storage type (complex32 gets a trailing axis
 * of 2), or, when `data` is not NULL, a read-only array over `data`.
 */
PyObject *tsnap_ext_new_array(tsnap_dtype dtype, int ndim, const int64_t *shape, void *data);

/* Fills a DLTensor describing `arr` (kept alive by the caller) as a
 * tensor of `dtype`.  `shape` and `strides` hold TSNAP_MAX_NDIM entries. */
int tsnap_ext_dltensor(PyArrayObject *arr, tsnap_dtype dtype, DLTensor *t, int64_t *shape,
                       int64_t *strides);

/*
 * The items of a save (items.c).  A tensor is handed over as (name bytes,
 * kind, value, code, stream): kind "array" (value a native ndarray of
 * tsnap dtype code) or "dlpack" (value an object with __dlpack__, asked
 * with stream).  Its memory is kept alive by the caller's arguments, a
 * DLPack tensor's by its capsule until tsnap_ext_tensor_done.
 */
typedef struct tsnap_ext_tensor {
    DLTensor t;
    int64_t dims[2][TSNAP_MAX_NDIM]; /* t's shape and strides (an ndarray) */
    PyObject *capsule;               /* a DLPack tensor's, until _done */
    DLManagedTensor *mt;
} tsnap_ext_tensor;

/* Fills *x (from scratch) with the tensor `value` of `kind` named `name`;
 * -1 with the exception set, *x still fit for tsnap_ext_tensor_done. */
int tsnap_ext_tensor_take(tsnap_ext_tensor *x, const char *name, const char *kind,
                          PyObject *value, int code, PyObject *stream);
/* Releases a DLPack tensor's capsule (its deleter called exactly once,
 * a pending exception kept aside meanwhile); nothing for an ndarray's or
 * an empty *x.  The GIL is held. */
void tsnap_ext_tensor_done(tsnap_ext_tensor *x);

/* A root attribute handed over as (key bytes, value, code): value a str,
 * or a native ndarray of tsnap dtype code; `a` holds it for the library. */
typedef struct tsnap_ext_attr {
    tsnap_store_attr a;
    DLTensor value;
    int64_t dims[2][TSNAP_MAX_NDIM];
} tsnap_ext_attr;

int tsnap_ext_attr_take(tsnap_ext_attr *at, PyObject *tuple);

/*
 * The two lists of a store's save(step, tensors, attrs, wait): as fast
 * sequences, a zeroed view for each tensor (views[i], for
 * tsnap_ext_tensor_take) and room for the attributes.  _init fails (-1,
 * the exception set) on a list that is not a sequence or on memory;
 * _attrs takes every attribute, stopping at the first bad one (-1);
 * _destroy, after any of them, releases every DLPack tensor taken into
 * views and the rest.
 */
typedef struct tsnap_ext_save {
    PyObject *tensors, *attrs; /* PySequence_Fast of the two lists */
    Py_ssize_t n, na;
    tsnap_ext_tensor *views; /* n + 1 */
    tsnap_ext_attr *ats;     /* na + 1 */
    tsnap_store_attr *as;    /* na + 1: ats[i].a, as the library takes them */
} tsnap_ext_save;

int tsnap_ext_save_init(tsnap_ext_save *sv, PyObject *tensors, PyObject *attrs);
int tsnap_ext_save_attrs(tsnap_ext_save *sv);
void tsnap_ext_save_destroy(tsnap_ext_save *sv);

/*
 * What tsnap._core shares with the other extension modules of the package
 * (tsnap._mpi), as the capsule TSNAP_EXT_API_CAPSULE: the one lock and the
 * helpers above, the items of a save among them.  raise_msg takes the
 * message from the caller, whose library copy holds it.
 */
#define TSNAP_EXT_API_CAPSULE "tsnap._core._C_API"
typedef struct tsnap_ext_api {
    PyThread_type_lock lock;
    PyObject *(*raise_msg)(int code, tsnap_ext_subject subject, const char *fmt, ...);
    PyObject *(*int64_tuple)(const int64_t *v, int n);
    int (*tensor_take)(tsnap_ext_tensor *x, const char *name, const char *kind, PyObject *value,
                       int code, PyObject *stream);
    void (*tensor_done)(tsnap_ext_tensor *x);
    int (*attr_take)(tsnap_ext_attr *at, PyObject *tuple);
    int (*save_init)(tsnap_ext_save *sv, PyObject *tensors, PyObject *attrs);
    int (*save_attrs)(tsnap_ext_save *sv);
    void (*save_destroy)(tsnap_ext_save *sv);
} tsnap_ext_api;

extern PyTypeObject tsnap_ext_WriterType;
extern PyTypeObject tsnap_ext_ReaderType;
extern PyTypeObject tsnap_ext_MappingType;
extern PyTypeObject tsnap_ext_DeviceArrayType;
extern PyTypeObject tsnap_ext_StoreType;

/* A new DeviceArray of `dtype` and `shape` on CUDA `device`, its memory
 * in *data; NULL with the exception set (file and name for messages). */
PyObject *tsnap_ext_device_array(tsnap_dtype dtype, int ndim, const int64_t *shape, int device,
                                 const char *file, const char *name, void **data);

#endif /* TSNAP_EXT_H */

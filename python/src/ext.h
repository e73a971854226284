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
 * What tsnap._core shares with the other extension modules of the package
 * (tsnap._mpi), as the capsule TSNAP_EXT_API_CAPSULE: the one lock and the
 * helpers above.  raise_msg takes the message from the caller, whose
 * library copy holds it.
 */
#define TSNAP_EXT_API_CAPSULE "tsnap._core._C_API"
typedef struct tsnap_ext_api {
    PyThread_type_lock lock;
    PyObject *(*raise_msg)(int code, tsnap_ext_subject subject, const char *fmt, ...);
    int (*dltensor)(PyArrayObject *arr, tsnap_dtype dtype, DLTensor *t, int64_t *shape,
                    int64_t *strides);
    PyObject *(*dlpack_take)(PyObject *obj, PyObject *stream, const char *name,
                             DLManagedTensor **mt);
    void (*dlpack_done)(PyObject *capsule, DLManagedTensor *mt);
    PyObject *(*int64_tuple)(const int64_t *v, int n);
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

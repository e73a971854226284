"""Helpers for the tests of the Python extension (test_py_*.py): random values
of every tsnap dtype, memory layouts, bit-exact comparison, the process's
resident memory, crash-safe subprocesses, and a DLPack producer written with
ctypes so that the tests need no framework to hand tsnap a DLPack tensor.

Nothing here imports tsnap."""
import ctypes
import json
import math
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import ml_dtypes
import numpy as np

import oracle

HERE = Path(__file__).resolve().parent

# Every tsnap dtype that has a NumPy dtype (with ml_dtypes), by tsnap name.
DTYPES = {
    "bool": np.dtype(bool),
    "int8": np.dtype("int8"), "int16": np.dtype("int16"),
    "int32": np.dtype("int32"), "int64": np.dtype("int64"),
    "uint8": np.dtype("uint8"), "uint16": np.dtype("uint16"),
    "uint32": np.dtype("uint32"), "uint64": np.dtype("uint64"),
    "float16": np.dtype("float16"), "float32": np.dtype("float32"),
    "float64": np.dtype("float64"),
    "complex64": np.dtype("complex64"), "complex128": np.dtype("complex128"),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float8_e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
}
ML_DTYPES = ("bfloat16", "float8_e4m3fn", "float8_e5m2")

# The odd shapes every dtype is tried in.
SHAPES = {
    "0d": (),
    "empty": (0,),
    "empty3d": (3, 0, 2),
    "one": (1,),
    "primes": (7, 11, 13),
    "rank5": (2, 3, 1, 4, 3),
}

# Special values each float dtype can hold (inserted into random data).
_SPECIALS = {
    "float16": [np.nan, np.inf, -np.inf, -0.0, 2.0 ** -24, 65504.0],
    "float32": [np.nan, np.inf, -np.inf, -0.0, 2.0 ** -149],
    "float64": [np.nan, np.inf, -np.inf, -0.0, 5e-324],
    "bfloat16": [np.nan, np.inf, -np.inf, -0.0, 2.0 ** -133],
    "float8_e5m2": [np.nan, np.inf, -np.inf, -0.0, 2.0 ** -16, 57344.0],
    "float8_e4m3fn": [np.nan, -0.0, 2.0 ** -9, 448.0, -448.0],
}


# ---------------------------------------------------------------------------
# Values

def tsnap_name(dtype):
    """The tsnap dtype name of a NumPy dtype (any byte order)."""
    dt = np.dtype(dtype)
    for name, d in DTYPES.items():
        if d == dt or (dt.byteorder in "<>" and d == dt.newbyteorder("=")):
            return name
    raise KeyError(dt)


def values(rng, dtype, shape):
    """Fresh random values of a dtype, native order, C order: never all zeros
    (unless empty), full integer ranges, floats with NaN, infinities, -0.0
    and subnormals mixed in."""
    dt = np.dtype(dtype)
    shape = tuple(shape)
    n = math.prod(shape)
    name = tsnap_name(dt)
    if name == "bool":
        a = rng.integers(0, 2, n).astype(bool)
        if n:
            a[0] = True
        if n > 1:
            a[-1] = False
    elif dt.kind in "iu":
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
        if n and not a.any():
            a[0] = 1
    elif name in ML_DTYPES:
        bits = np.uint16 if dt.itemsize == 2 else np.uint8
        a = rng.integers(0, np.iinfo(bits).max, n, dtype=bits, endpoint=True).view(dt)
        a = _mix_specials(rng, a, name)
        if n and not a.view(bits).any():
            a.view(bits)[0] = 1
    elif dt.kind == "f":
        a = (rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3, n)).astype(dt)
        a = _mix_specials(rng, a, name)
    elif dt.kind == "c":
        part = np.dtype(f"f{dt.itemsize // 2}")
        a = np.empty(n, dt)
        a.real = values(rng, part, (n,))
        a.imag = values(rng, part, (n,))
    else:
        raise ValueError(dt)
    return a.reshape(shape)


def _mix_specials(rng, a, name):
    specials = _SPECIALS[name]
    n = a.size
    k = min(len(specials), max(n // 3, 1 if n >= 2 else 0))
    if k:
        where = rng.choice(n, k, replace=False)
        a[where] = np.array(specials[:k], np.float64).astype(a.dtype)
    return a


def _big_shape(shape):
    return tuple(2 * d + 1 for d in shape)


# Memory layouts an input array can come in.  Each builds an array of the
# given shape whose logical values are random; the tests compare against
# logical(array), NumPy's own C-order native copy.
def _layout_c(rng, dt, shape):
    return values(rng, dt, shape)


def _layout_fortran(rng, dt, shape):
    return np.array(values(rng, dt, shape), order="F")


def _layout_transposed(rng, dt, shape):
    return values(rng, dt, shape[::-1]).T


def _layout_reversed(rng, dt, shape):
    return values(rng, dt, shape)[(slice(None, None, -1),) * len(shape)]


def _layout_step(rng, dt, shape):
    return values(rng, dt, _big_shape(shape))[(slice(1, None, 2),) * len(shape)]


def _layout_broadcast(rng, dt, shape):
    if not shape:
        return np.broadcast_to(values(rng, dt, ()), ())
    small = list(shape)
    for i, d in enumerate(small):  # a zero stride on every axis of length > 1 but the last
        if d > 1 and i < len(small) - 1:
            small[i] = 1
    return np.broadcast_to(values(rng, dt, small), shape)


def _layout_bigendian(rng, dt, shape):
    return values(rng, dt, shape).astype(dt.newbyteorder(">"))


LAYOUTS = {
    "c": _layout_c,
    "fortran": _layout_fortran,
    "transposed": _layout_transposed,
    "reversed": _layout_reversed,
    "step": _layout_step,
    "broadcast": _layout_broadcast,
    "bigendian": _layout_bigendian,
}


def layout_applies(layout, dtype_name):
    """Big-endian exists only for NumPy's own multi-byte dtypes."""
    if layout == "bigendian":
        return dtype_name not in ML_DTYPES and DTYPES[dtype_name].itemsize > 1
    return True


def logical(a):
    """The values tsnap must store for an input: C order, native byte order."""
    a = np.asarray(a)
    return np.array(a, dtype=a.dtype.newbyteorder("="), order="C")  # keeps 0-d 0-d


def le_bytes(a):
    """An array's logical bytes as the format stores them (C order, little
    endian), for the checksum and h5py oracles."""
    a = logical(a)
    if sys.byteorder != "little":  # pragma: no cover - the tests run on little-endian
        a = a.byteswap()
    return a.tobytes()


def assert_bits_equal(got, want, what=""):
    """Same dtype, same shape, the very same bytes (NaN payloads and -0.0
    included)."""
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, expected {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    g = np.array(got, order="C").reshape(-1).view(np.uint8)
    w = np.array(want, order="C").reshape(-1).view(np.uint8)
    bad = np.flatnonzero(g != w)
    if bad.size:
        i = bad[0] // got.dtype.itemsize
        raise AssertionError(f"{what}: {bad.size} bytes differ, first in element {i}: "
                             f"{got.reshape(-1)[i]!r} != {want.reshape(-1)[i]!r}")


def assert_same_values(got, want, what=""):
    """oracle.assert_same_values (equal dtype and shape, bit-exact where not
    NaN, NaN in the same places), extended to the ml_dtypes floats, whose
    NumPy kind is not 'f'."""
    got, want = np.asarray(got), np.asarray(want)
    name = tsnap_name(want.dtype) if want.dtype in DTYPES.values() else None
    if name not in ML_DTYPES:
        return oracle.assert_same_values(got, want, what)
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, expected {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    g, w = got.reshape(-1), want.reshape(-1)
    gn, wn = np.isnan(g.astype(np.float32)), np.isnan(w.astype(np.float32))
    assert np.array_equal(gn, wn), f"{what}: NaN at different positions"
    bits = f"u{got.dtype.itemsize}"
    bad = np.flatnonzero(g.view(bits)[~gn] != w.view(bits)[~wn])
    assert bad.size == 0, (f"{what}: {bad.size} values differ, first "
                           f"{g[~gn][bad[0]]!r} != {w[~wn][bad[0]]!r}")


def expected_from_h5py(ds, dtype_name):
    """What tsnap.load must return for an h5py dataset whose tsnap dtype is
    `dtype_name`, built from h5py's own read."""
    a = oracle.h5py_native(ds)
    if dtype_name == "float8_e4m3fn":
        return np.array(a, order="C").view(ml_dtypes.float8_e4m3fn)
    if dtype_name in ("bfloat16", "float8_e5m2"):
        return a.astype(DTYPES[dtype_name])  # exact: h5py widened them exactly
    if dtype_name == "complex32":
        out = np.empty(a.shape[:-1], np.complex64)
        out.real, out.imag = a[..., 0], a[..., 1]
        return out
    return a.astype(DTYPES[dtype_name], copy=False)


# ---------------------------------------------------------------------------
# Mapped arrays

def base_owner(a):
    """The last object of an array's .base chain."""
    obj = a
    while isinstance(obj, np.ndarray) and obj.base is not None:
        obj = obj.base
    return obj


def is_mapped(a):
    """True if the array's memory is a tsnap mapping (its .base chain ends in
    a tsnap._core.Mapping)."""
    owner = base_owner(a)
    t = type(owner)
    return t.__name__ == "Mapping" and t.__module__.startswith("tsnap")


def mapped_files():
    """The files this process has mapped (from /proc/self/maps)."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6:
                out.append(parts[5].strip())
    return out


def rss():
    """Resident memory of this process in bytes (VmRSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


# ---------------------------------------------------------------------------
# Subprocesses that may crash

def run_python(code, *args, timeout=240, env=None):
    """Runs `code` in a fresh interpreter with the same sys.path; a crash
    comes back as a negative return code instead of killing pytest."""
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join([str(HERE)] + [p for p in sys.path if p])
    environ.update(env or {})
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=environ)


def describe_exit(proc):
    """A sentence about how a subprocess ended, naming the signal if any."""
    rc = proc.returncode
    if rc < 0:
        try:
            sig = signal.Signals(-rc).name
        except ValueError:
            sig = f"signal {-rc}"
        how = f"was killed by {sig}"
    else:
        how = f"exited {rc}"
    return f"the subprocess {how}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"


def run_json(code, *args, timeout=240):
    """Runs `code`, which prints one JSON document last, and returns it; a
    crash or a non-zero exit fails the test with the signal and the output."""
    proc = run_python(code, *args, timeout=timeout)
    assert proc.returncode == 0, describe_exit(proc)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# A DLPack producer (dlpack.h, unversioned DLManagedTensor "dltensor")

kDLCPU, kDLCUDA = 1, 2
kDLInt, kDLUInt, kDLFloat, kDLBfloat, kDLComplex, kDLBool = 0, 1, 2, 4, 5, 6
kDLFloat8_e4m3fn, kDLFloat8_e5m2 = 10, 12


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    pass


_DELETER = ctypes.CFUNCTYPE(None, ctypes.POINTER(DLManagedTensor))
DLManagedTensor._fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p),
                            ("deleter", _DELETER)]

_CAPSULE_DESTRUCTOR = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_api = ctypes.pythonapi
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, _CAPSULE_DESTRUCTOR]
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]

_DLTENSOR = b"dltensor"  # a module constant: the capsule keeps this pointer
_live = {}               # address of a DLManagedTensor -> (producer, keep-alive objects)
_live_lock = threading.Lock()


def _deleter(ptr):
    addr = ctypes.cast(ptr, ctypes.c_void_p).value
    with _live_lock:
        entry = _live.pop(addr, None)
    if entry is None:  # a second call: count it, the test fails on it
        DLPackTensor.stray_deletes += 1
        return
    producer, _keep = entry
    producer.deleter_calls += 1
    producer.deleter_threads.append(threading.get_ident())


_deleter_fn = _DELETER(_deleter)


@_CAPSULE_DESTRUCTOR
def _capsule_destructor(capsule):
    # an unconsumed capsule still named "dltensor" owns its tensor
    if _api.PyCapsule_IsValid(capsule, _DLTENSOR):
        ptr = _api.PyCapsule_GetPointer(capsule, _DLTENSOR)
        managed = ctypes.cast(ptr, ctypes.POINTER(DLManagedTensor))
        managed.contents.deleter(managed)


class DLPackTensor:
    """An object exposing only __dlpack__ / __dlpack_device__, over the memory
    of a NumPy array.

    `code`/`bits` are the DLPack dtype; `shape` and `strides` (in elements of
    that dtype; None: C-contiguous, NULL) default to the array's own;
    `byte_offset` moves the data pointer back by that many bytes and records
    the offset (the consumer must add it).  Counts the deleter calls of the
    capsules it hands out."""

    stray_deletes = 0  # deleter calls on a tensor already deleted

    def __init__(self, array, code, bits, shape=None, strides="auto", byte_offset=0,
                 device=(kDLCPU, 0), data_ptr=None):
        self.array = array
        self.data_ptr = data_ptr  # another address than the array's (device memory)
        self.code, self.bits = code, bits
        self.shape = tuple(array.shape if shape is None else shape)
        if strides == "auto":
            esize = bits // 8
            strides = tuple(s // esize for s in array.strides)
            assert all(s * esize == t for s, t in zip(strides, array.strides))
        self.strides = strides
        self.byte_offset = byte_offset
        self.device = device
        self.deleter_calls = 0
        self.deleter_threads = []
        self.exports = 0
        self.streams = []  # the `stream` of each __dlpack__ call

    def __dlpack_device__(self):
        return self.device

    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        self.exports += 1
        self.streams.append(stream)
        m = DLManagedTensor()
        ndim = len(self.shape)
        shape = (ctypes.c_int64 * max(ndim, 1))(*self.shape)
        strides = None
        if self.strides is not None:
            strides = (ctypes.c_int64 * max(ndim, 1))(*self.strides)
        t = m.dl_tensor
        base = self.array.ctypes.data if self.data_ptr is None else self.data_ptr
        t.data = base - self.byte_offset
        t.device = DLDevice(*self.device)
        t.ndim = ndim
        t.dtype = DLDataType(self.code, self.bits, 1)
        t.shape = ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64))
        t.strides = (ctypes.cast(strides, ctypes.POINTER(ctypes.c_int64)) if strides is not None
                     else ctypes.POINTER(ctypes.c_int64)())
        t.byte_offset = self.byte_offset
        m.manager_ctx = None
        m.deleter = _deleter_fn
        addr = ctypes.addressof(m)
        with _live_lock:
            _live[addr] = (self, (m, shape, strides, self.array))
        return _api.PyCapsule_New(addr, _DLTENSOR, _capsule_destructor)


def live_dlpack_tensors():
    """How many exported DLPack tensors have not been deleted."""
    with _live_lock:
        return len(_live)

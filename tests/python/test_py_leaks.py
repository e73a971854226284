"""No leaks: reference counts of inputs and dtypes do not move over 1000
saves and loads, resident memory stays flat over 10,000 mixed calls after a
warm-up, and tracemalloc sees no growth of Python allocations."""
import gc
import sys
import tracemalloc

import ml_dtypes
import numpy as np
import pytest

import tsnap
from pyhelpers import DLPackTensor, kDLFloat, live_dlpack_tensors, rss

MiB = 1 << 20


def _inputs():
    base = np.arange(60.0).reshape(6, 10)
    return {
        "strided": base[:, ::2],
        "contiguous": np.arange(24, dtype=np.int32),
        "bigendian": np.arange(8, dtype=">f4"),
        "bf16": np.linspace(-3, 3, 9).astype(ml_dtypes.bfloat16),
        "scalar": np.array(7, np.uint16),
    }


def test_a_thousand_saves_leave_the_refcounts_of_the_arrays_and_their_dtypes_unchanged(
        tmp_path):
    path = tmp_path / "r.h5"
    arrays = _inputs()
    tensors = dict(arrays)
    attrs = {"step": 1, "note": "n", "vec": np.arange(3.0)}
    for _ in range(10):
        tsnap.save(path, tensors, attrs=attrs, durable=False)
    gc.collect()
    before = {k: (sys.getrefcount(a), sys.getrefcount(a.dtype)) for k, a in arrays.items()}
    others = (sys.getrefcount(tensors), sys.getrefcount(attrs), sys.getrefcount(attrs["vec"]),
              sys.getrefcount(path))
    for i in range(1000):
        tsnap.save(path, tensors, attrs=attrs, durable=False,
                   compression="deflate" if i % 2 else None)
    gc.collect()
    after = {k: (sys.getrefcount(a), sys.getrefcount(a.dtype)) for k, a in arrays.items()}
    assert after == before, "(array, dtype) refcounts moved"
    assert (sys.getrefcount(tensors), sys.getrefcount(attrs), sys.getrefcount(attrs["vec"]),
            sys.getrefcount(path)) == others


def test_a_thousand_failed_saves_leave_the_refcounts_unchanged(tmp_path):
    good = np.arange(10.0)
    bad = np.array(["x"])
    for _ in range(10):
        with pytest.raises(TypeError):
            tsnap.save(tmp_path / "f.h5", {"good": good, "bad": bad})
    gc.collect()
    before = (sys.getrefcount(good), sys.getrefcount(bad), sys.getrefcount(good.dtype))
    for _ in range(1000):
        with pytest.raises(TypeError):
            tsnap.save(tmp_path / "f.h5", {"good": good, "bad": bad})
    gc.collect()
    assert (sys.getrefcount(good), sys.getrefcount(bad), sys.getrefcount(good.dtype)) == before


def test_a_thousand_dlpack_saves_call_every_deleter_and_keep_no_reference(tmp_path):
    data = np.arange(30.0).reshape(5, 6)
    producer = DLPackTensor(data, kDLFloat, 64)
    for _ in range(10):
        tsnap.save(tmp_path / "d.h5", {"x": producer}, durable=False)
    gc.collect()
    before = (sys.getrefcount(producer), sys.getrefcount(data))
    for _ in range(1000):
        tsnap.save(tmp_path / "d.h5", {"x": producer}, durable=False)
    gc.collect()
    assert (sys.getrefcount(producer), sys.getrefcount(data)) == before
    assert producer.deleter_calls == producer.exports == 1010
    assert live_dlpack_tensors() == 0


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "complex64", "bool"])
def test_a_thousand_loads_leave_the_refcount_of_the_dtype_unchanged(tmp_path, dtype):
    dt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    path = tmp_path / "l.h5"
    tsnap.save(path, {"x": np.ones((4, 5), dt), "s": np.ones((), dt)}, durable=False)
    f = tsnap.open(path)
    for _ in range(10):
        tsnap.load(path)
        f["x"][1:3]
    gc.collect()
    before = (sys.getrefcount(dt), sys.getrefcount(path))
    for i in range(250):
        tsnap.load(path, "x")
        tsnap.load(path, "x", mmap=True)
        tsnap.load(path, mmap="auto")
        f["x"][i % 4]
    gc.collect()
    f.close()
    assert (sys.getrefcount(dt), sys.getrefcount(path)) == before


def _mixed_calls(path, arrays, i):
    tsnap.save(path, arrays, attrs={"step": i}, durable=False)
    tsnap.load(path, "strided")
    tsnap.load(path, "bf16", mmap=True)
    with tsnap.open(path) as f:
        f["contiguous"][3:-2:2]
        f.attrs


def test_resident_memory_stays_flat_over_ten_thousand_calls(tmp_path):
    path = tmp_path / "m.h5"
    arrays = _inputs()
    for i in range(150):  # warm-up: HDF5's free lists, NumPy's caches
        _mixed_calls(path, arrays, i)
    gc.collect()
    before = rss()
    for i in range(2500):  # 4 calls each
        _mixed_calls(path, arrays, i)
    gc.collect()
    grew = rss() - before
    assert grew < 4 * MiB, f"VmRSS grew by {grew / MiB:.2f} MiB over 10,000 calls"


def test_tracemalloc_sees_no_growth_of_python_allocations(tmp_path):
    path = tmp_path / "t.h5"
    arrays = _inputs()
    tracemalloc.start(1)
    try:
        for i in range(100):
            _mixed_calls(path, arrays, i)
        gc.collect()
        first = tracemalloc.take_snapshot()
        for i in range(500):
            _mixed_calls(path, arrays, i)
        gc.collect()
        second = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
    diff = second.filter_traces(filters).compare_to(first.filter_traces(filters), "lineno")
    grown = sum(d.size_diff for d in diff if d.size_diff > 0)
    top = "\n".join(str(d) for d in diff[:5])
    assert grown < 8 * 1024, f"Python allocations grew by {grown} bytes:\n{top}"

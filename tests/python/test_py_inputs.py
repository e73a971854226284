"""What tsnap.save accepts: objects with only __array_interface__, only the
buffer protocol, only __dlpack__/__dlpack_device__ (a ctypes producer of every
DLPack dtype tsnap stores, with arbitrary strides, whose deleter must run
exactly once), NumPy scalars, Python scalars and lists, read-only and
unaligned arrays; and a DLPack tensor on a device it cannot read gives a
clear error, not a crash."""
import array
import gc
import types

import h5py
import ml_dtypes
import numpy as np
import pytest

import tsnap
from pyhelpers import (DLPackTensor, assert_bits_equal, kDLBfloat, kDLBool, kDLComplex,
                       kDLCUDA, kDLFloat, kDLFloat8_e4m3fn, kDLFloat8_e5m2, kDLInt, kDLUInt,
                       live_dlpack_tensors, logical, values)


def _roundtrip(tmp_path, value, name="x", **kw):
    path = tmp_path / "in.h5"
    tsnap.save(path, {name: value}, durable=False, **kw)
    return tsnap.load(path, name), path


# ---------------------------------------------------------------------------
# __array_interface__ and the buffer protocol

class OnlyArrayInterface:
    def __init__(self, a):
        self._a = a

    @property
    def __array_interface__(self):
        return self._a.__array_interface__


@pytest.mark.parametrize("layout", ["c", "strided", "bigendian"])
def test_an_object_with_only_array_interface_saves_its_values(tmp_path, seed, layout):
    a = values(np.random.default_rng([seed, 91]), np.dtype("float32"), (5, 8))
    a = {"c": a, "strided": a[::2, ::-3], "bigendian": a.astype(">f4")}[layout]
    got, _ = _roundtrip(tmp_path, OnlyArrayInterface(a))
    assert_bits_equal(got, logical(a))


@pytest.mark.parametrize("make,want", [
    (lambda: bytearray(b"\x00\x01\xfe\xff tsnap"), np.frombuffer(b"\x00\x01\xfe\xff tsnap",
                                                                 np.uint8)),
    (lambda: memoryview(array.array("d", [1.5, -0.0, float("inf")])),
     np.array([1.5, -0.0, np.inf])),
    (lambda: array.array("h", [-32768, 0, 32767]), np.array([-32768, 0, 32767], np.int16)),
    (lambda: memoryview(array.array("i", range(6))).cast("B").cast("i", (2, 3)),
     np.arange(6, dtype=np.intc).reshape(2, 3)),
    (lambda: memoryview(array.array("Q", [2**64 - 1, 3]))[::-1],
     np.array([3, 2**64 - 1], np.uint64)),
], ids=["bytearray", "memoryview-double", "array-short", "memoryview-2d", "memoryview-reversed"])
def test_an_object_with_only_the_buffer_protocol_saves_its_values(tmp_path, make, want):
    got, _ = _roundtrip(tmp_path, make())
    assert_bits_equal(got, want)


# ---------------------------------------------------------------------------
# DLPack

# name -> (code, bits, NumPy dtype of the memory, dtype tsnap loads)
DLPACK = {
    "int8": (kDLInt, 8, "int8", "int8"), "int16": (kDLInt, 16, "int16", "int16"),
    "int32": (kDLInt, 32, "int32", "int32"), "int64": (kDLInt, 64, "int64", "int64"),
    "uint8": (kDLUInt, 8, "uint8", "uint8"), "uint16": (kDLUInt, 16, "uint16", "uint16"),
    "uint32": (kDLUInt, 32, "uint32", "uint32"), "uint64": (kDLUInt, 64, "uint64", "uint64"),
    "float16": (kDLFloat, 16, "float16", "float16"),
    "float32": (kDLFloat, 32, "float32", "float32"),
    "float64": (kDLFloat, 64, "float64", "float64"),
    "bfloat16": (kDLBfloat, 16, ml_dtypes.bfloat16, ml_dtypes.bfloat16),
    "complex32": (kDLComplex, 32, "float16", "complex64"),  # float16 pairs in memory
    "complex64": (kDLComplex, 64, "complex64", "complex64"),
    "complex128": (kDLComplex, 128, "complex128", "complex128"),
    "bool": (kDLBool, 8, "uint8", "bool"),
    "float8_e4m3fn": (kDLFloat8_e4m3fn, 8, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fn),
    "float8_e5m2": (kDLFloat8_e5m2, 8, ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2),
}
DL_LAYOUTS = ["null-strides", "c-strides", "transposed", "reversed", "step", "broadcast",
              "byte-offset", "0d"]


def _dlpack_case(rng, name, layout):
    """(producer, the values tsnap must store) for a DLPack dtype and layout."""
    code, bits, mem, _ = DLPACK[name]
    pair = name == "complex32"
    shape = () if layout == "0d" else (6, 5)
    big = tuple(2 * d + 1 for d in shape) if layout == "step" else shape
    if name == "bool":
        base = rng.integers(0, 2, big).astype(np.uint8)
    else:
        base = values(rng, np.dtype(mem), big + ((2,) if pair else ()))
    lead = {"transposed": lambda a: np.swapaxes(a, 0, 1),
            "reversed": lambda a: a[::-1, ::-1],
            "step": lambda a: a[1::2, 1::2],
            "broadcast": lambda a: np.broadcast_to(a[:1], a.shape)}.get(layout, lambda a: a)
    view = lead(base)  # for complex32 the pair axis stays last and contiguous
    esize = bits // 8
    strides = tuple(s // esize for s in view.strides[:len(shape)])
    if layout == "null-strides":
        strides = None
    producer = DLPackTensor(view, code, bits, shape=view.shape[:len(shape)], strides=strides,
                            byte_offset=24 if layout == "byte-offset" else 0)
    if pair:
        want = np.empty(view.shape[:-1], np.complex64)
        want.real, want.imag = view[..., 0], view[..., 1]
    elif name == "bool":
        want = view.astype(bool)
    else:
        want = logical(view)
    return producer, want


@pytest.mark.parametrize("layout", DL_LAYOUTS)
@pytest.mark.parametrize("name", list(DLPACK))
def test_a_dlpack_tensor_saves_its_values_and_its_deleter_runs_exactly_once(
        tmp_path, seed, name, layout):
    producer, want = _dlpack_case(np.random.default_rng([seed, 92, len(name)]), name, layout)
    path = tmp_path / "dl.h5"
    tsnap.save(path, {"x": producer}, durable=False)
    gc.collect()
    assert producer.exports >= 1
    assert producer.deleter_calls == producer.exports, (
        f"{producer.exports} capsules, {producer.deleter_calls} deleter calls")
    assert DLPackTensor.stray_deletes == 0, "a deleter ran twice"
    assert live_dlpack_tensors() == 0
    got = tsnap.load(path, "x")
    assert got.dtype == np.dtype(DLPACK[name][3])
    assert_bits_equal(got, want, f"{name} {layout}")
    with h5py.File(path, "r") as f:
        assert f["x"].attrs["tsnap_dtype"] == name


def test_complex32_from_dlpack_is_stored_as_float16_pairs_that_h5py_reads(tmp_path, seed):
    producer, want = _dlpack_case(np.random.default_rng([seed, 93]), "complex32", "c-strides")
    path = tmp_path / "c32.h5"
    tsnap.save(path, {"z": producer}, durable=False)
    with h5py.File(path, "r") as f:
        pairs = f["z"][()]
    assert pairs.dtype == np.float16 and pairs.shape == want.shape + (2,)
    assert_bits_equal(pairs[..., 0].astype(np.float32), want.real)
    assert_bits_equal(pairs[..., 1].astype(np.float32), want.imag)
    with pytest.raises(tsnap.NotMappableError):
        tsnap.load(path, "z", mmap=True)
    assert_bits_equal(tsnap.load(path, "z", mmap="auto"), want)


def test_a_dlpack_tensor_that_claims_a_cuda_device_raises_a_clear_error(tmp_path):
    data = np.arange(12, dtype=np.float32)
    producer = DLPackTensor(data, kDLFloat, 32, device=(kDLCUDA, 0))
    with pytest.raises(tsnap.Error) as info:
        tsnap.save(tmp_path / "cuda.h5", {"gpu": producer})
    assert "cuda" in str(info.value).lower(), str(info.value)
    assert "gpu" in str(info.value), "the message names the tensor"
    assert isinstance(info.value, tsnap.CudaError)
    # the DLPack stream protocol: asked for the legacy default stream (1),
    # which tsnap's copies follow; a CPU producer is asked for no stream
    assert producer.streams == [1]
    cpu = DLPackTensor(data, kDLFloat, 32)
    tsnap.save(tmp_path / "cpu.h5", {"cpu": cpu})
    assert cpu.streams == [None]
    (tmp_path / "cpu.h5").unlink()
    gc.collect()
    assert producer.deleter_calls == producer.exports
    assert live_dlpack_tensors() == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("device", [(4, 0), (99, 0)], ids=["opencl", "unknown"])
def test_a_dlpack_tensor_on_another_device_raises_a_tsnap_error(tmp_path, device):
    producer = DLPackTensor(np.arange(4.0), kDLFloat, 64, device=device)
    with pytest.raises(tsnap.Error):
        tsnap.save(tmp_path / "dev.h5", {"x": producer})
    gc.collect()
    assert producer.deleter_calls == producer.exports
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("code,bits", [(kDLFloat, 8), (kDLInt, 128), (kDLBfloat, 32),
                                       (3, 64), (kDLComplex, 16), (kDLBool, 16)],
                         ids=["float8-plain", "int128", "bfloat32", "opaque", "complex16",
                              "bool16"])
def test_a_dlpack_dtype_tsnap_cannot_store_raises_type_error(tmp_path, code, bits):
    mem = np.zeros(16, np.uint8)
    producer = DLPackTensor(mem, code, bits, shape=(16 * 8 // bits,), strides=None)
    with pytest.raises(TypeError) as info:
        tsnap.save(tmp_path / "bad.h5", {"x": producer})
    assert isinstance(info.value, tsnap.Error)
    gc.collect()
    assert producer.deleter_calls == producer.exports
    assert list(tmp_path.iterdir()) == []


def test_a_numpy_array_is_saved_through_numpy_not_its_own_dlpack(tmp_path):
    a = np.arange(10.0)[::-2]  # NumPy's own __dlpack__ refuses nothing here either
    got, _ = _roundtrip(tmp_path, a)
    assert_bits_equal(got, logical(a))


# ---------------------------------------------------------------------------
# Scalars, lists, and other arrays

@pytest.mark.parametrize("value,want", [
    (np.float32(1.5), np.array(1.5, np.float32)),
    (np.int8(-3), np.array(-3, np.int8)),
    (np.uint64(2**64 - 1), np.array(2**64 - 1, np.uint64)),
    (np.complex128(1 - 2j), np.array(1 - 2j)),
    (np.bool_(True), np.array(True)),
    (np.float16(-0.0), np.array(-0.0, np.float16)),
    (ml_dtypes.bfloat16(2.5), np.array(2.5, ml_dtypes.bfloat16)),
    (7, np.array(7)),
    (2.5, np.array(2.5)),
    (1j, np.array(1j)),
    (False, np.array(False)),
    ([[1, 2], [3, 4]], np.array([[1, 2], [3, 4]])),
    ([1.5, -0.0, float("inf"), float("nan")], np.array([1.5, -0.0, np.inf, np.nan])),
    ([True, False, True], np.array([True, False, True])),
    ([], np.array([])),
    ((1, 2, 3), np.array([1, 2, 3])),
], ids=["np-float32", "np-int8", "np-uint64-max", "np-complex128", "np-bool", "np-neg-zero",
        "bfloat16-scalar", "int", "float", "complex", "bool", "nested-list", "float-list",
        "bool-list", "empty-list", "tuple"])
def test_scalars_and_sequences_save_as_numpy_sees_them(tmp_path, value, want):
    got, _ = _roundtrip(tmp_path, value)
    assert_bits_equal(got, want)


# (a list holding a str or None is a nested structure: test_nested.py)
@pytest.mark.parametrize("value", [[[1, 2], [3]], [1, {2}], object(), {1, 2}],
                         ids=["ragged", "mixed", "object", "set"])
def test_a_value_that_is_not_a_numeric_array_is_refused_before_writing(tmp_path, value):
    with pytest.raises((TypeError, ValueError)) as info:
        tsnap.save(tmp_path / "v.h5", {"x": value})
    assert isinstance(info.value, tsnap.Error)
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_and_a_mapped_array_save_again(tmp_path, seed):
    a = values(np.random.default_rng([seed, 94]), np.dtype("float64"), (9, 4))
    a.flags.writeable = False
    got, path = _roundtrip(tmp_path, a)
    assert_bits_equal(got, a)
    mapped = tsnap.load(path, "x", mmap=True)
    tsnap.save(tmp_path / "again.h5", {"x": mapped, "y": mapped[::-1, 1:]}, durable=False)
    again = tsnap.load(tmp_path / "again.h5")
    assert_bits_equal(again["x"], a)
    assert_bits_equal(again["y"], logical(a[::-1, 1:]))


def test_an_unaligned_array_saves_its_values(tmp_path, seed):
    want = values(np.random.default_rng([seed, 95]), np.dtype("float64"), (31,))
    raw = b"\x00" + want.tobytes()
    a = np.frombuffer(raw, np.float64, offset=1)
    assert not a.flags.aligned
    got, _ = _roundtrip(tmp_path, a)
    assert_bits_equal(got, want)


def test_a_large_zero_stride_broadcast_saves_its_logical_values(tmp_path):
    a = np.broadcast_to(np.arange(1000.0), (1000, 1000))
    got, _ = _roundtrip(tmp_path, a, chunk_bytes=1 << 16)
    assert_bits_equal(got, logical(a))


@pytest.mark.parametrize("kind", ["mappingproxy", "custom-mapping"])
def test_any_mapping_of_names_is_accepted(tmp_path, kind):
    import collections.abc

    class M(collections.abc.Mapping):
        def __init__(self, d):
            self._d = d

        def __getitem__(self, k):
            return self._d[k]

        def __iter__(self):
            return iter(self._d)

        def __len__(self):
            return len(self._d)

    d = {"a": np.arange(3), "b/c": np.ones(2)}
    tensors = types.MappingProxyType(d) if kind == "mappingproxy" else M(d)
    tsnap.save(tmp_path / "m.h5", tensors, durable=False)
    got = tsnap.load(tmp_path / "m.h5")
    assert sorted(got) == ["a", "b/c"]

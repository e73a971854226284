"""CUDA tensors from Python: saves of DLPack tensors in device memory,
load(device="cuda") / Tensor.to("cuda") into tsnap.DeviceArray.

Without a CUDA device every CUDA request must fail with tsnap.CudaError
naming the file, the tensor and the reason; those tests run everywhere.
With one, device memory is made and read through the driver (ctypes on
libcuda.so.1, no framework needed) and h5py is the reference."""
import ctypes
import gc

import h5py
import numpy as np
import pytest

import tsnap
from pyhelpers import DLPackTensor, kDLCUDA, kDLFloat, kDLInt, kDLUInt

# ---------------------------------------------------------------------------
# The driver, if there is one with a device


def _driver():
    try:
        cu = ctypes.CDLL("libcuda.so.1")
    except OSError as e:
        return None, f"no NVIDIA driver ({e})"
    n = ctypes.c_int(0)
    if cu.cuInit(0) != 0 or cu.cuDeviceGetCount(ctypes.byref(n)) != 0 or n.value == 0:
        return None, "the NVIDIA driver reports no CUDA device"
    dev, ctx = ctypes.c_int(0), ctypes.c_void_p()
    if cu.cuDeviceGet(ctypes.byref(dev), 0) != 0 or \
            cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) != 0 or \
            cu.cuCtxSetCurrent(ctx) != 0:
        return None, "the primary context of CUDA device 0 cannot be made current"
    return cu, None


CU, NO_GPU = _driver()
gpu = pytest.mark.skipif(CU is None, reason=f"no CUDA device: {NO_GPU}")
no_gpu = pytest.mark.skipif(CU is not None, reason="this machine has a CUDA device")


class DeviceBuffer:
    """cuMemAlloc'ed memory holding a copy of `array`'s bytes."""

    def __init__(self, array):
        self.nbytes = max(array.nbytes, 1)
        self.ptr = ctypes.c_uint64(0)
        assert CU.cuMemAlloc_v2(ctypes.byref(self.ptr), ctypes.c_size_t(self.nbytes)) == 0
        if array.nbytes:
            src = np.ascontiguousarray(array)
            assert CU.cuMemcpyHtoD_v2(self.ptr, src.ctypes.data_as(ctypes.c_void_p),
                                      ctypes.c_size_t(src.nbytes)) == 0

    def __del__(self):
        if CU is not None and self.ptr.value:
            CU.cuMemFree_v2(self.ptr)


def to_host(ptr, nbytes):
    out = np.empty(nbytes, np.uint8)
    if nbytes:
        assert CU.cuMemcpyDtoH_v2(out.ctypes.data_as(ctypes.c_void_p), ctypes.c_uint64(ptr),
                                  ctypes.c_size_t(nbytes)) == 0
    return out


DTYPES = [(np.float32, kDLFloat, 32), (np.float64, kDLFloat, 64), (np.float16, kDLFloat, 16),
          (np.int8, kDLInt, 8), (np.int64, kDLInt, 64), (np.uint16, kDLUInt, 16)]
SHAPES = [(), (0,), (1,), (7, 13), (3, 5, 17), (2, 1031)]


def random_array(rng, dtype, shape):
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


@pytest.fixture
def snap(tmp_path, seed):
    a = np.random.default_rng([seed, 71]).standard_normal((31, 17)).astype(np.float32)
    path = tmp_path / "s.h5"
    tsnap.save(path, {"grid/u": a})
    return path, a


# ---------------------------------------------------------------------------
# Everywhere: the arguments, and the refusal without a device


def test_device_arguments_are_checked_before_anything_is_read(snap):
    path, a = snap
    for bad in ("gpu", "cuda:x", "cuda:-1", -1, 1.5, True):
        with pytest.raises(ValueError, match="device must be"):
            tsnap.load(path, "grid/u", device=bad)
    with pytest.raises(ValueError, match="mmap"):
        tsnap.load(path, "grid/u", device="cuda", mmap=True)
    with pytest.raises(ValueError, match="mmap"):
        tsnap.load(path, device="cuda", mmap="auto")
    # the host spellings change nothing
    for host in (None, "cpu"):
        np.testing.assert_array_equal(tsnap.load(path, "grid/u", device=host), a)
    with tsnap.open(path) as f:
        np.testing.assert_array_equal(f["grid/u"].to("cpu"), a)
        np.testing.assert_array_equal(f["grid/u"].to("cpu", verify=True), a)


@no_gpu
def test_without_a_device_cuda_loads_raise_cuda_error_naming_file_and_tensor(snap):
    path, _ = snap
    calls = [lambda: tsnap.load(path, "grid/u", device="cuda"),
             lambda: tsnap.load(path, device="cuda:0"),
             lambda: tsnap.open(path)["grid/u"].to("cuda")]
    for call in calls:
        with pytest.raises(tsnap.CudaError) as info:
            call()
        msg = str(info.value)
        assert str(path) in msg and "grid/u" in msg and "CUDA" in msg, msg
    gc.collect()


@no_gpu
def test_without_a_device_a_cuda_dlpack_tensor_is_refused_and_nothing_is_written(tmp_path):
    data = np.arange(12, dtype=np.float32)
    producer = DLPackTensor(data, kDLFloat, 32, device=(kDLCUDA, 0))
    path = tmp_path / "gpu.h5"
    with pytest.raises(tsnap.CudaError) as info:
        tsnap.save(path, {"state/x": producer})
    assert "state/x" in str(info.value) and str(path) in str(info.value)
    assert not path.exists() and list(tmp_path.iterdir()) == []
    assert producer.deleter_calls == producer.exports == 1


# ---------------------------------------------------------------------------
# With a device


@gpu
@pytest.mark.parametrize("dtype,code,bits", DTYPES)
def test_gpu_saves_of_device_memory_read_back_equal_in_h5py(tmp_path, seed, dtype, code, bits):
    rng = np.random.default_rng([seed, 72, bits])
    arrays = {f"t{i}": random_array(rng, dtype, s) for i, s in enumerate(SHAPES)}
    buffers = {k: DeviceBuffer(a) for k, a in arrays.items()}
    producers = {k: DLPackTensor(a, code, bits, device=(kDLCUDA, 0),
                                 data_ptr=buffers[k].ptr.value)
                 for k, a in arrays.items()}
    path = tmp_path / "gpu.h5"
    tsnap.save(path, producers)
    with h5py.File(path, "r") as f:
        for k, a in arrays.items():
            got = f[k][()]
            assert got.dtype == a.dtype and got.shape == a.shape, k
            assert np.array_equal(got.view(np.uint8), a.view(np.uint8)), k
    assert all(p.streams == [1] for p in producers.values())


@gpu
def test_gpu_a_transposed_device_tensor_is_packed_on_the_device(tmp_path, seed):
    a = np.random.default_rng([seed, 73]).standard_normal((257, 129)).astype(np.float32)
    buf = DeviceBuffer(a)
    t = DLPackTensor(a.T, kDLFloat, 32, device=(kDLCUDA, 0), data_ptr=buf.ptr.value)
    path = tmp_path / "t.h5"
    tsnap.save(path, {"t": t}, chunk_bytes=4096)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["t"][()], a.T)


@gpu
@pytest.mark.parametrize("dtype,code,bits", DTYPES)
def test_gpu_loads_into_device_memory_equal_h5pys_reads(tmp_path, seed, dtype, code, bits):
    rng = np.random.default_rng([seed, 74, bits])
    arrays = {f"t{i}": random_array(rng, dtype, s) for i, s in enumerate(SHAPES)}
    path = tmp_path / "h.h5"
    tsnap.save(path, arrays, compression="zstd", chunk_bytes=1024)
    loaded = tsnap.load(path, device="cuda")
    with h5py.File(path, "r") as f:
        for k, a in arrays.items():
            d = loaded[k]
            assert isinstance(d, tsnap.DeviceArray) and d.shape == a.shape and d.device == 0
            cai = d.__cuda_array_interface__
            assert cai["shape"] == a.shape and cai["typestr"] == np.dtype(dtype).str
            assert cai["version"] == 3 and cai["strides"] is None
            got = to_host(cai["data"][0], a.nbytes)
            assert np.array_equal(got, np.ascontiguousarray(f[k][()]).view(np.uint8)), k
            assert d.__dlpack_device__() == (kDLCUDA, 0)
            capsule = d.__dlpack__(stream=None)
            assert type(capsule).__name__ == "PyCapsule"
            del capsule  # unconsumed: its destructor frees the export
    del loaded
    gc.collect()


@gpu
def test_gpu_tensor_to_cuda_reads_the_tensor_into_device_memory(tmp_path, seed):
    a = np.random.default_rng([seed, 75]).integers(0, 1 << 30, size=(64, 33), dtype=np.int32)
    path = tmp_path / "x.h5"
    tsnap.save(path, {"x": a})
    with tsnap.open(path) as f:
        d = f["x"].to("cuda:0", verify=True)
        got = to_host(d.__cuda_array_interface__["data"][0], a.nbytes).view(np.int32)
        np.testing.assert_array_equal(got.reshape(a.shape), a)


def _current_context():
    ctx = ctypes.c_void_p()
    assert CU.cuCtxGetCurrent(ctypes.byref(ctx)) == 0
    return ctx.value


def _device_count():
    n = ctypes.c_int(0)
    assert CU.cuDeviceGetCount(ctypes.byref(n)) == 0
    return n.value


@no_gpu
def test_without_a_device_cuda_alone_is_device_0():
    assert tsnap.DeviceArray.current_device() == 0


@gpu
def test_gpu_loads_and_saves_leave_the_callers_context_as_it_was(tmp_path, seed):
    a = np.random.default_rng([seed, 76]).standard_normal((129, 65)).astype(np.float32)
    buf = DeviceBuffer(a)
    path = tmp_path / "ctx.h5"
    before = _current_context()
    assert before  # the module made device 0's primary context current
    assert CU.cuCtxSetCurrent(None) == 0
    try:
        tsnap.save(path, {"t": DLPackTensor(a.T, kDLFloat, 32, device=(kDLCUDA, 0),
                                            data_ptr=buf.ptr.value)})
        assert _current_context() is None
        d = tsnap.load(path, "t", device="cuda:0")
        assert _current_context() is None
        assert tsnap.DeviceArray.current_device() == 0  # none current: device 0
        del d
        gc.collect()
        assert _current_context() is None
    finally:
        assert CU.cuCtxSetCurrent(ctypes.c_void_p(before)) == 0
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["t"][()], a.T)


@gpu
def test_gpu_host_memory_labelled_cuda_is_refused_before_any_copy(tmp_path):
    data = np.arange(1000, dtype=np.float32)
    producer = DLPackTensor(data, kDLFloat, 32, device=(kDLCUDA, 0))
    path = tmp_path / "host.h5"
    with pytest.raises(ValueError, match="host memory"):
        tsnap.save(path, {"x": producer})
    # the context is not faulted: a good save follows
    buf = DeviceBuffer(data)
    tsnap.save(path, {"x": DLPackTensor(data, kDLFloat, 32, device=(kDLCUDA, 0),
                                        data_ptr=buf.ptr.value)})
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["x"][()], data)


@gpu
@pytest.mark.skipif(CU is None or _device_count() < 2, reason="needs two CUDA devices")
def test_gpu_cuda_alone_is_the_threads_current_device(tmp_path, seed):
    a = np.random.default_rng([seed, 77]).standard_normal((40, 3)).astype(np.float32)
    path = tmp_path / "d.h5"
    tsnap.save(path, {"a": a})
    before = _current_context()
    dev, ctx = ctypes.c_int(0), ctypes.c_void_p()
    assert CU.cuDeviceGet(ctypes.byref(dev), 1) == 0
    assert CU.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
    assert CU.cuCtxSetCurrent(ctx) == 0
    try:
        assert tsnap.DeviceArray.current_device() == 1
        d = tsnap.load(path, "a", device="cuda")
        assert d.device == 1 and _current_context() == ctx.value
        with tsnap.open(path) as f:
            assert f["a"].to("cuda").device == 1
        # a save from device 0 leaves device 1 current
        buf0 = None
        assert CU.cuCtxSetCurrent(ctypes.c_void_p(before)) == 0
        buf0 = DeviceBuffer(a)
        assert CU.cuCtxSetCurrent(ctx) == 0
        tsnap.save(tmp_path / "from0.h5", {"a": DLPackTensor(a, kDLFloat, 32,
                                                              device=(kDLCUDA, 0),
                                                              data_ptr=buf0.ptr.value)})
        assert _current_context() == ctx.value
        # memory of device 0 labelled device 1: refused, nothing copied
        with pytest.raises(ValueError, match="memory of CUDA device 0"):
            tsnap.save(tmp_path / "wrong.h5", {"a": DLPackTensor(a, kDLFloat, 32,
                                                                  device=(kDLCUDA, 1),
                                                                  data_ptr=buf0.ptr.value)})
        del d
        gc.collect()
    finally:
        assert CU.cuCtxSetCurrent(ctypes.c_void_p(before)) == 0

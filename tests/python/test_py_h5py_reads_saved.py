"""tsnap.save's files, read with h5py as the oracle: every dtype of SPEC §3 in
odd shapes and memory layouts comes back from h5py with the documented NumPy
dtype, the documented HDF5 type, the same values, its `tsnap_dtype` name and
the xxh3-64 checksum of its logical C-order bytes."""
import h5py
import hdf5plugin  # noqa: F401  (zstd and lz4 for h5py, as a user reads them)
import ml_dtypes
import numpy as np
import pytest

import oracle
from pyhelpers import DTYPES, LAYOUTS, ML_DTYPES, SHAPES, layout_applies, le_bytes, logical

GRID = [(d, s, lay) for d in DTYPES for s in SHAPES for lay in LAYOUTS if layout_applies(lay, d)]
GRID_IDS = ["-".join(p) for p in GRID]
STORED = [(d, s, st) for d in DTYPES for s in SHAPES
          for st in ("plain-small-chunks", "deflate", "deflate9-small-chunks", "zstd-small-chunks",
                     "lz4-small-chunks", "zstd19")]
STORED_IDS = ["-".join(p) for p in STORED]


@pytest.mark.parametrize("dtype,shape,layout", GRID, ids=GRID_IDS)
def test_h5py_reads_every_saved_tensor_with_the_documented_dtype_and_the_same_values(
        py_saved, dtype, shape, layout):
    snap = py_saved(dtype, shape, layout)
    with h5py.File(snap.path, "r") as f:
        ds = f[snap.name]
        assert ds.id.get_type() == oracle.canonical_type(dtype), (
            f"the HDF5 type of {dtype} is SPEC §3's (little-endian, h5py's conventions)")
        got = np.asarray(ds[()])
    assert got.dtype == oracle.DTYPES[dtype][1]
    want = oracle.expected_h5py_array(dtype, le_bytes(snap.array), SHAPES[shape])
    oracle.assert_same_values(got, want, f"{dtype} {shape} {layout}")


@pytest.mark.parametrize("dtype", ML_DTYPES)
@pytest.mark.parametrize("shape", ["primes", "rank5"])
def test_h5py_reads_ml_dtypes_arrays_as_ml_dtypes_widens_them(py_saved, dtype, shape):
    """bfloat16 reads as float32 and float8_e5m2 as float16 with the values
    ml_dtypes' own astype gives; float8_e4m3fn as its raw bits in uint8."""
    snap = py_saved(dtype, shape)
    with h5py.File(snap.path, "r") as f:
        got = f[snap.name][()]
    x = logical(snap.array)
    want = {"bfloat16": lambda: x.astype(np.float32),
            "float8_e5m2": lambda: x.astype(np.float16),
            "float8_e4m3fn": lambda: x.view(np.uint8)}[dtype]()
    oracle.assert_same_values(got, want, dtype)
    if dtype == "float8_e4m3fn":
        assert np.array_equal(got.view(ml_dtypes.float8_e4m3fn).astype(np.float32),
                              x.astype(np.float32), equal_nan=True)


@pytest.mark.parametrize("dtype,shape,layout", GRID, ids=GRID_IDS)
def test_each_saved_dataset_carries_its_dtype_name_and_the_checksum_of_its_c_order_bytes(
        py_saved, dtype, shape, layout):
    snap = py_saved(dtype, shape, layout)
    with h5py.File(snap.path, "r") as f:
        attrs = f[snap.name].attrs
        assert attrs["tsnap_dtype"] == dtype
        assert oracle.is_vlen_utf8_scalar(attrs, "tsnap_dtype")
        assert attrs["tsnap_checksum"] == oracle.checksum(le_bytes(snap.array))


# The filter each storage's codec writes: deflate h5py reads with no
# plug-in, zstd and lz4 with hdf5plugin's.
CODEC_FILTER = {"deflate": 1, "zstd": 32015, "lz4": 32004}


@pytest.mark.parametrize("dtype,shape,storage", STORED, ids=STORED_IDS)
def test_h5py_reads_chunked_and_compressed_tensors(py_saved, dtype, shape, storage):
    snap = py_saved(dtype, shape, "c", storage)
    with h5py.File(snap.path, "r") as f:
        ds = f[snap.name]
        got = np.asarray(ds[()])
        size = ds.size
        chunks, compression, level = ds.chunks, ds.compression, ds.compression_opts
        dcpl = ds.id.get_create_plist()
        filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
        assert ds.attrs["tsnap_checksum"] == oracle.checksum(le_bytes(snap.array))
    want = oracle.expected_h5py_array(dtype, le_bytes(snap.array), SHAPES[shape])
    oracle.assert_same_values(got, want, f"{dtype} {shape} {storage}")
    if size == 0 or SHAPES[shape] == ():
        assert chunks is None and not filters, "0-d and empty tensors are contiguous"
        return
    assert chunks is not None, "a tensor of one or more elements is chunked"
    codec = next((c for c in CODEC_FILTER if storage.startswith(c)), None)
    if codec == "deflate":
        assert compression == "gzip"
        assert level == (9 if storage.startswith("deflate9") else 1)
    if codec is None:
        assert not filters
    else:
        assert filters[-1] == CODEC_FILTER[codec]
    if storage.endswith("small-chunks"):
        target = {"plain": 256, "deflate9": 1000}.get(storage.split("-")[0], 200)
        itemsize = oracle.DTYPES[dtype][0]
        assert int(np.prod(chunks)) * itemsize <= max(target, itemsize), (
            f"chunk {chunks} is within chunk_bytes={target}")


@pytest.mark.parametrize("dtype", [d for d in DTYPES if d not in ML_DTYPES and
                                   DTYPES[d].itemsize > 1])
def test_a_big_endian_array_is_stored_little_endian_with_equal_values(py_saved, dtype):
    snap = py_saved(dtype, "primes", "bigendian")
    assert snap.array.dtype.byteorder == ">"
    with h5py.File(snap.path, "r") as f:
        ds = f[snap.name]
        assert ds.dtype.byteorder in "<|=", "converted, never mislabelled"
        got = ds[()]
    assert np.array_equal(got, snap.array, equal_nan=True)


def test_nested_names_become_groups_that_h5py_walks(tmp_path, seed):
    import tsnap
    rng = np.random.default_rng([seed, 11])
    tensors = {"encoder/layer1/w": rng.standard_normal((3, 4)).astype(np.float32),
               "encoder/layer1/b": np.arange(4, dtype=np.int16),
               "encoder/layer2/w": rng.standard_normal((2,)),
               "top": np.array(True)}
    tsnap.save(tmp_path / "n.h5", tensors, durable=False)
    with h5py.File(tmp_path / "n.h5", "r") as f:
        assert isinstance(f["encoder"], h5py.Group)
        assert isinstance(f["encoder/layer1"], h5py.Group)
        found = []
        f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) else None)
        assert sorted(found) == sorted(tensors)
        for name, value in tensors.items():
            assert np.array_equal(f[name][()], value)

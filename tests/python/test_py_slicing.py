"""Partial reads: Tensor[key] equals NumPy's indexing of the saved values and
h5py's ds[key], for many random keys (ints, negative ints, slices with any
step, Ellipsis, mixes) on chunked compressed and uncompressed tensors, 0-d
and empty tensors; reads only the chunks the key needs; refuses keys NumPy
basic indexing does not have."""
import h5py
import hdf5plugin  # noqa: F401  (zstd and lz4 for h5py, as a user reads them)
import numpy as np
import pytest

import tsnap
from pyhelpers import DTYPES, ML_DTYPES, assert_bits_equal, logical, values

# name -> (dtype, shape, compression, chunk_bytes)
TENSORS = {
    "f64-3d-deflate": ("float64", (13, 17, 5), "deflate", 512),
    "i16-2d-small-chunks": ("int16", (29, 7), None, 64),
    "c64-1d-deflate": ("complex64", (101,), ("deflate", 9), 128),
    "bool-4d": ("bool", (3, 4, 2, 5), None, None),
    "bf16-2d": ("bfloat16", (6, 10), "deflate", 32),
    "u8-rank5": ("uint8", (2, 3, 1, 4, 3), None, 16),
    "f32-0d": ("float32", (), None, None),
    "i8-empty": ("int8", (4, 0, 3), None, None),
    "f32-3d-zstd": ("float32", (11, 9, 7), "zstd", 200),
    "c128-2d-lz4": ("complex128", (19, 6), "lz4", 48),
    "u16-3d-zstd-one-chunk": ("uint16", (5, 4, 3), ("zstd", 5), None),
    "f8-2d-lz4": ("float8_e5m2", (31, 3), "lz4", 16),
}
NKEYS = 24


@pytest.fixture(scope="module")
def saved(tmp_path_factory, seed):
    root = tmp_path_factory.mktemp("py-slicing")
    out = {}
    for i, (name, (dtype, shape, compression, chunk_bytes)) in enumerate(TENSORS.items()):
        data = values(np.random.default_rng([seed, 61, i]), DTYPES[dtype], shape)
        path = root / f"{name}.h5"
        tsnap.save(path, {"t": data}, compression=compression, chunk_bytes=chunk_bytes,
                   durable=False)
        out[name] = (path, logical(data))
    return out


def _random_key(rng, shape):
    """A basic-indexing key for `shape`: ints (negative too), slices with
    starts and stops in and out of range and steps of either sign, and
    sometimes an Ellipsis between the leading and trailing parts."""
    nd = len(shape)

    def part(d):
        if d and rng.random() < 0.35:
            return int(rng.integers(-d, d))
        pick = lambda: None if rng.random() < 0.3 else int(rng.integers(-d - 2, d + 3))  # noqa
        step = [None, 1, 2, 3, -1, -2, -3][int(rng.integers(0, 7))]
        return slice(pick(), pick(), step)

    if rng.random() < 0.35:
        front = int(rng.integers(0, nd + 1))
        back = int(rng.integers(0, nd - front + 1))
        key = ([part(d) for d in shape[:front]] + [Ellipsis] +
               [part(d) for d in shape[nd - back:]])
    else:
        key = [part(d) for d in shape[:int(rng.integers(0, nd + 1))]]
    if len(key) == 1 and rng.random() < 0.5:
        return key[0]
    return tuple(key)


def _assert_result_kind(got, want, what):
    """An ndarray; for an all-int key a 0-d result: a 0-d array or, as NumPy
    itself gives, a NumPy scalar (the API text allows both readings)."""
    if want.ndim == 0:
        assert isinstance(got, (np.ndarray, np.generic)) and got.ndim == 0, (
            f"{what} gives a 0-d result, not {type(got)}")
    else:
        assert isinstance(got, np.ndarray), f"{what} returns an ndarray, not {type(got)}"


def _h5py_can(key):
    parts = key if isinstance(key, tuple) else (key,)
    return all(not isinstance(k, slice) or (k.step or 1) > 0 for k in parts)


@pytest.mark.parametrize("n", range(NKEYS))
@pytest.mark.parametrize("name", [n for n in TENSORS if TENSORS[n][1] != ()])
def test_a_random_key_reads_what_numpy_indexing_and_h5py_give(saved, seed, name, n):
    path, full = saved[name]
    key = _random_key(np.random.default_rng([seed, 62, list(TENSORS).index(name), n]),
                      full.shape)
    what = f"{name}[{key!r}]"
    try:
        want = np.asarray(full[key])
    except IndexError:
        with tsnap.open(path) as f, pytest.raises(IndexError):
            f["t"][key]
        return
    with tsnap.open(path) as f:
        got = f["t"][key]
    _assert_result_kind(got, want, what)
    assert_bits_equal(got, want, what)
    assert_bits_equal(tsnap.load(path, "t")[key], want, what + " of load()")
    dtype = TENSORS[name][0]
    if _h5py_can(key) and dtype not in ML_DTYPES:
        with h5py.File(path, "r") as f:
            try:
                h = np.asarray(f["t"][key])
            except (ValueError, IndexError, TypeError):
                return  # a key h5py does not take; NumPy remains the oracle
        assert_bits_equal(got, h, what + " vs h5py")


def test_all_int_keys_give_a_0d_array(saved):
    path, full = saved["f64-3d-deflate"]
    with tsnap.open(path) as f:
        for key in [(0, 0, 0), (-1, -1, -1), (5, 3, 2), (12, -17, 0)]:
            got = f["t"][key]
            _assert_result_kind(got, np.asarray(full[key]), repr(key))
            assert_bits_equal(got, np.asarray(full[key]), repr(key))


def test_a_0d_tensor_reads_with_an_empty_tuple_and_an_ellipsis(saved):
    path, full = saved["f32-0d"]
    with tsnap.open(path) as f:
        t = f["t"]
        assert t.shape == () and t.ndim == 0 and t.size == 1
        assert_bits_equal(t[()], full)
        assert_bits_equal(t[...], full)
        with pytest.raises(IndexError):
            t[0]
        with pytest.raises(IndexError):
            t[:]
        with pytest.raises(TypeError):
            len(t)


def test_an_empty_tensor_slices_like_numpy(saved):
    path, full = saved["i8-empty"]
    with tsnap.open(path) as f:
        t = f["t"]
        assert len(t) == 4
        for key in [(), Ellipsis, slice(None), 2, (slice(1, 3), slice(None), -1),
                    (Ellipsis, slice(None, None, -1))]:
            assert_bits_equal(t[key], full[key], repr(key))
        with pytest.raises(IndexError):
            t[:, 0]


@pytest.mark.parametrize("key", [4 * 10**9, 29, -30, (0, 7), (0, -8), (0, 0, 0)],
                         ids=["huge", "past-end", "before-start", "axis1-past-end",
                              "axis1-before-start", "too-many"])
def test_an_index_out_of_range_raises_index_error(saved, key):
    path, full = saved["i16-2d-small-chunks"]
    with pytest.raises(IndexError):
        full[key]  # the oracle agrees
    with tsnap.open(path) as f, pytest.raises(IndexError):
        f["t"][key]


@pytest.mark.parametrize("key", [[0, 1], np.array([0, 1]), None, (None, 0), (0, [1]),
                                 np.array([True] * 29), (slice(None), None)],
                         ids=["list", "int-array", "None", "None-in-tuple", "list-in-tuple",
                              "bool-array", "newaxis"])
def test_fancy_and_newaxis_keys_raise_type_error(saved, key):
    path, _ = saved["i16-2d-small-chunks"]
    with tsnap.open(path) as f, pytest.raises(TypeError):
        f["t"][key]


def test_a_slice_reads_only_the_chunks_it_needs(saved, tmp_path):
    """The last chunk of a deflated tensor is wiped: keys inside the first
    chunks still read, while a whole read fails."""
    src, full = saved["c64-1d-deflate"]
    path = tmp_path / "wiped.h5"
    path.write_bytes(src.read_bytes())
    with h5py.File(path, "r") as f:
        dsid = f["t"].id
        chunk = f["t"].chunks[0]
        last = dsid.get_chunk_info(dsid.get_num_chunks() - 1)
        assert dsid.get_num_chunks() > 2
    with open(path, "r+b") as fh:
        fh.seek(last.byte_offset)
        fh.write(b"\xff" * last.size)
    with tsnap.open(path) as f:
        t = f["t"]
        assert_bits_equal(t[:chunk], full[:chunk])
        assert_bits_equal(t[1:2 * chunk:3], full[1:2 * chunk:3])
        assert_bits_equal(t[0], full[0])
        with pytest.raises(tsnap.Error):
            t[-1]
        with pytest.raises(tsnap.Error):
            t.numpy()

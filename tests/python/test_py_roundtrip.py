"""tsnap.save then tsnap.load gives back the very same bytes and dtype, for
every dtype, odd shape and input memory layout, copied (mmap=False), mapped
(mmap=True: every uncompressed tensor tsnap writes maps) and mmap="auto";
compressed tensors load by copy, refuse mmap=True and copy under "auto"."""
import numpy as np
import pytest

import tsnap
from pyhelpers import (DTYPES, LAYOUTS, SHAPES, assert_bits_equal, is_mapped, layout_applies,
                       logical)

MODES = {"copy": False, "mmap": True, "auto": "auto"}
GRID = [(d, s, lay, m) for d in DTYPES for s in SHAPES for lay in LAYOUTS
        if layout_applies(lay, d) for m in MODES]
STORED = [(d, s, st, m) for d in DTYPES for s in SHAPES
          for st in ("plain-small-chunks", "deflate", "deflate9-small-chunks", "zstd-small-chunks",
                     "lz4-small-chunks", "zstd19") for m in MODES]


def _ids(params):
    return ["-".join(p) for p in params]


def _assert_loaded(got, snap, mode, what, filtered=None):
    assert isinstance(got, np.ndarray), f"{what}: load returns an ndarray, not {type(got)}"
    assert_bits_equal(got, snap.expected, what)
    filtered = snap.compressed if filtered is None else filtered
    mapped = mode == "mmap" or (mode == "auto" and not filtered)
    if mapped:
        assert is_mapped(got), f"{what}: the array's .base chain ends in a tsnap Mapping"
        assert not got.flags.writeable, f"{what}: a mapped array is read-only"
    else:
        assert not is_mapped(got), f"{what}: a copy is not a mapping"
        assert got.flags.writeable, f"{what}: a copy is writeable"
        assert got.flags.c_contiguous


@pytest.mark.parametrize("dtype,shape,layout,mode", GRID, ids=_ids(GRID))
def test_load_gives_back_the_saved_bytes_and_dtype(py_saved, dtype, shape, layout, mode):
    snap = py_saved(dtype, shape, layout)
    got = tsnap.load(snap.path, snap.name, mmap=MODES[mode])
    _assert_loaded(got, snap, mode, f"{dtype} {shape} {layout} {mode}")


@pytest.mark.parametrize("dtype,shape,storage,mode", STORED, ids=_ids(STORED))
def test_chunked_and_compressed_tensors_load_bit_exactly_and_only_uncompressed_ones_map(
        py_saved, dtype, shape, storage, mode):
    snap = py_saved(dtype, shape, "c", storage)
    what = f"{dtype} {shape} {storage} {mode}"
    trivially_flat = SHAPES[shape] == () or 0 in SHAPES[shape]  # no filters on 0-d or empty
    if mode == "mmap" and snap.compressed and not trivially_flat:
        with pytest.raises(tsnap.NotMappableError) as info:
            tsnap.load(snap.path, snap.name, mmap=True)
        message = str(info.value)
        assert str(snap.path) in message and snap.name in message, message
        assert "compress" in message.lower(), f"the reason is named: {message}"
        return
    got = tsnap.load(snap.path, snap.name, mmap=MODES[mode])
    _assert_loaded(got, snap, mode, what, filtered=snap.compressed and not trivially_flat)


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_load_with_verify_and_verify_accept_an_intact_snapshot(py_saved, dtype):
    snap = py_saved(dtype, "primes", "c", "deflate")
    assert tsnap.verify(snap.path) == 1
    for mode in (False, "auto"):  # compressed: mmap=True is refused
        got = tsnap.load(snap.path, snap.name, mmap=mode, verify=True)
        assert_bits_equal(got, snap.expected, dtype)


def test_load_without_a_name_returns_every_tensor_by_full_name(tmp_path, seed):
    rng = np.random.default_rng([seed, 21])
    tensors = {"b/x": rng.standard_normal((4, 3)), "a": rng.integers(0, 9, (5,)),
               "b/c/y": np.array(2.5, np.float32), "z": np.zeros((0, 3), np.int8)}
    path = tmp_path / "all.h5"
    tsnap.save(path, tensors, durable=False)
    for mode in MODES.values():
        got = tsnap.load(path, mmap=mode)
        assert isinstance(got, dict)
        assert sorted(got) == sorted(tensors)
        for name, value in tensors.items():
            assert_bits_equal(got[name], logical(value), f"{name} mmap={mode}")


@pytest.mark.parametrize("durable", [True, False])
def test_save_overwrites_an_existing_snapshot_and_leaves_no_temporary_file(
        tmp_path, durable):
    path = tmp_path / "s.h5"
    tsnap.save(path, {"x": np.arange(10)}, durable=durable)
    tsnap.save(path, {"y": np.arange(3.0)}, durable=durable)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]
    got = tsnap.load(path)
    assert list(got) == ["y"]
    assert_bits_equal(got["y"], np.arange(3.0))


def test_save_accepts_a_str_path_and_an_os_pathlike(tmp_path):
    tsnap.save(str(tmp_path / "a.h5"), {"x": np.arange(4)}, durable=False)
    tsnap.save(tmp_path / "b.h5", {"x": np.arange(4)}, durable=False)
    assert_bits_equal(tsnap.load(tmp_path / "a.h5", "x"), tsnap.load(str(tmp_path / "b.h5"), "x"))


def test_save_returns_none(tmp_path):
    assert tsnap.save(tmp_path / "n.h5", {"x": np.arange(2)}, durable=False) is None


def test_a_saved_snapshot_without_checksums_loads_and_verifies_nothing(tmp_path):
    import h5py
    path = tmp_path / "nock.h5"
    tsnap.save(path, {"x": np.arange(6.0)}, checksum=False, durable=False)
    with h5py.File(path, "r") as f:
        assert "tsnap_checksum" not in f["x"].attrs
    assert tsnap.verify(path) == 0
    assert_bits_equal(tsnap.load(path, "x", verify=True), np.arange(6.0))
    with tsnap.open(path) as f:
        assert f["x"].checksum is None

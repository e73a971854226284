"""The index of a file's tensors (the `tsnap_index` root attribute,
docs/FORMAT.md §16): a reader lists and describes the tensors from it while
the file is as tsnap left it, and walks the file as soon as anything else
has written to it.  Every kind of change another HDF5 writer (h5py,
h5repack) can make is tried: what tsnap reads is then what h5py reads."""
import json
import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest

import tsnap
from clihelpers import tsnap as tsnap_cli
from pyhelpers import (DTYPES, SHAPES, assert_bits_equal, assert_same_values,
                       expected_from_h5py, logical, values)

# describe() fields the index must give exactly as the walk does
FIELDS = ("dtype", "shape", "chunks", "codec", "shuffle", "filters", "nbytes", "stored_bytes",
          "big_endian", "map_status", "offset", "length", "checksum")


def indexed(path):
    with tsnap.open(path) as f:
        return f._reader.indexed


def h5py_names(path):
    names = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return sorted(names, key=lambda n: n.encode())


def tensors(rng):
    t = {name: values(rng, dt, shape) for name, dt, shape in [
        ("a", "float32", (1024,)), ("b", "int16", (7, 11, 13)), ("g/c", "float64", ()),
        ("g/h/d", "uint8", (0, 3)), ("e", "bool", (5, 3)), ("w", "bfloat16", (4, 6)),
        ("f8", "float8_e4m3fn", (9,))]}
    t["z"] = (rng.standard_normal((3, 5)) + 1j * rng.standard_normal((3, 5))).astype(np.complex64)
    return t


DTYPE_OF = {"a": "float32", "b": "int16", "g/c": "float64", "g/h/d": "uint8", "e": "bool",
            "w": "bfloat16", "f8": "float8_e4m3fn", "z": "complex64"}


def assert_reads_as_h5py(path, dtype_of):
    """tsnap lists what h5py lists and reads each tensor as h5py does."""
    names = h5py_names(path)
    with tsnap.open(path) as f:
        assert list(f.keys()) == names
        loaded = tsnap.load(path)
    assert list(loaded) == names
    with h5py.File(path, "r") as h:
        for n in names:
            want = expected_from_h5py(h[n], dtype_of.get(n, "float32"))
            assert_same_values(loaded[n], want, n)  # h5py's widening drops NaN payloads
    listed = json.loads(tsnap_cli("ls", "--json", path, expect=0).stdout)
    assert [t["name"] for t in listed["tensors"]] == names


@pytest.fixture
def snap(tmp_path, seed):
    rng = np.random.default_rng([seed, 16])
    path = tmp_path / "s.h5"
    data = tensors(rng)
    tsnap.save(path, data)
    assert indexed(path)
    return path, data


def test_every_dtype_and_odd_shape_is_described_by_the_index_as_by_the_walk(tmp_path, seed,
                                                                          monkeypatch):
    rng = np.random.default_rng([seed, 1])
    data = {f"{d}/{s}": values(rng, dt, shape) for d, dt in DTYPES.items()
            for s, shape in SHAPES.items()}
    big = values(rng, "float32", (64, 4099))
    data["strided"] = big[::3, ::-2]               # non-contiguous input
    data["several_chunks"] = big                   # more than one chunk at chunk_bytes below
    path = tmp_path / "all.h5"
    tsnap.save(path, data, chunk_bytes=1 << 16)
    assert indexed(path)
    with tsnap.open(path) as f:
        by_index = {n: f._reader.describe(n.encode()) for n in f.keys()}
        keys = list(f.keys())
    loaded = tsnap.load(path)
    mapped = tsnap.load(path, mmap="auto")
    with monkeypatch.context() as m:
        m.setenv("TSNAP_NO_INDEX", "1")  # readers then walk every file
        assert not indexed(path)
        with tsnap.open(path) as f:
            assert list(f.keys()) == keys == sorted(data, key=str.encode)
            for n in keys:
                d = f._reader.describe(n.encode())
                assert {k: by_index[n][k] for k in FIELDS} == {k: d[k] for k in FIELDS}, n
    for n, a in data.items():
        assert_bits_equal(loaded[n], logical(a), n)
        assert_bits_equal(mapped[n], logical(a), n)
    tsnap.verify(path)


def test_a_compressed_file_is_listed_from_the_index_and_read_through_hdf5s_chunks(tmp_path,
                                                                                  seed):
    rng = np.random.default_rng([seed, 2])
    data = {f"t{i}": values(rng, "float32", (33, 17)) for i in range(20)}
    path = tmp_path / "z.h5"
    tsnap.save(path, data, compression="zstd")
    assert indexed(path)
    loaded = tsnap.load(path, verify=True)
    for n, a in data.items():
        assert_bits_equal(loaded[n], a, n)
    with tsnap.open(path) as f:
        assert f["t3"].compression == "zstd"


def test_strings_and_groups_leave_no_index(tmp_path, seed):
    path = tmp_path / "n.h5"
    tsnap.save(path, {"x": np.arange(3.0), "note": "text"})
    assert not indexed(path)
    assert sorted(tsnap.load(path)) == ["note", "x"]
    tsnap.save(path, {"x": np.arange(3.0), "empty": {}})
    assert not indexed(path)
    nested = tsnap.load(path, nested=True)
    assert sorted(nested) == ["empty", "x"] and nested["empty"] == {}


def _rewrite(path, rng):
    with h5py.File(path, "r+") as f:
        f["a"][...] = rng.standard_normal(1024).astype(np.float32)


def _delete(path, rng):
    with h5py.File(path, "r+") as f:
        del f["a"]
        del f["g/h/d"]


def _add(path, rng):
    with h5py.File(path, "r+") as f:
        f["added"] = rng.standard_normal((4, 4)).astype(np.float32)
        f["g/h/more"] = rng.standard_normal(3).astype(np.float32)


def _rename(path, rng):
    with h5py.File(path, "r+") as f:
        f.move("a", "b2")  # same length of name: the link changes in place


def _resize(path, rng):
    with h5py.File(path, "r+") as f:  # the dimensions are fixed: h5py re-creates it
        del f["a"]
        f.create_dataset("a", data=rng.standard_normal(2048).astype(np.float32),
                         maxshape=(None,), chunks=(100,))
        f["a"].resize((1500,))


def _dataset_attrs(path, rng):
    with h5py.File(path, "r+") as f:
        f["a"].attrs["unit"] = "m"
        f["b"].attrs.modify("tsnap_checksum", "xxh3-64:0000000000000000")
        del f["e"].attrs["tsnap_checksum"]


def _root_attrs(path, rng):
    with h5py.File(path, "r+") as f:
        f.attrs["step"] = np.int64(5)
        del f.attrs["producer"]


def _index_removed(path, rng):
    with h5py.File(path, "r+") as f:
        del f.attrs["tsnap_index"]


def _repack(path, rng):
    out = path.with_name("packed.h5")
    subprocess.run(["h5repack", "-l", "CONTI", str(path), str(out)], check=True)
    os.replace(out, path)


CHANGES = {"rewrite": _rewrite, "delete": _delete, "add": _add, "rename": _rename,
           "resize": _resize, "dataset_attrs": _dataset_attrs, "root_attrs": _root_attrs,
           "index_removed": _index_removed, "repack": _repack}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_file_another_writer_changed_reads_as_that_writer_left_it(snap, seed, change):
    path, _ = snap
    if change == "repack" and not shutil.which("h5repack"):
        pytest.skip("h5repack is not installed")
    CHANGES[change](path, np.random.default_rng([seed, 3]))
    assert not indexed(path), "the index no longer describes the file"
    assert_reads_as_h5py(path, DTYPE_OF)
    with tsnap.open(path) as f, h5py.File(path, "r") as h:
        assert set(f.attrs) == set(h.attrs) - {"tsnap_index"}
        for n in f.keys():
            assert set(f[n].attrs) == set(h[n].attrs)
    if change in ("rewrite", "dataset_attrs"):
        with pytest.raises(tsnap.IntegrityError):
            tsnap.verify(path)
    else:
        tsnap.verify(path)


def test_values_rewritten_in_place_with_the_time_put_back_still_read_as_written(snap, seed):
    """The hard case: only raw data changed, and the file's modification
    time was restored, so the index still looks current.  Reads read the
    data itself, so they get h5py's values; verify sees the change."""
    path, data = snap
    before = os.stat(path)
    new = np.random.default_rng([seed, 4]).standard_normal(1024).astype(np.float32)
    with h5py.File(path, "r+") as f:
        f["a"][...] = new
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert indexed(path)
    assert_bits_equal(tsnap.load(path, "a"), new, "a")
    assert_bits_equal(tsnap.load(path)["a"], new, "a")
    assert_bits_equal(tsnap.load(path, "a", mmap=True), new, "a")
    with pytest.raises(tsnap.IntegrityError, match="'a'"):
        tsnap.verify(path)


def test_an_index_damaged_with_the_time_put_back_is_not_trusted(snap, seed):
    path, data = snap
    before = os.stat(path)
    with h5py.File(path, "r+") as f:
        blob = f.attrs["tsnap_index"].copy()
        blob[-9] ^= 0x40  # inside the last entry
        f.attrs["tsnap_index"] = blob
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert not indexed(path)
    assert_reads_as_h5py(path, DTYPE_OF)


def test_a_copy_that_keeps_the_time_keeps_the_index_and_one_that_does_not_walks(snap, tmp_path):
    path, data = snap
    kept, plain = tmp_path / "kept.h5", tmp_path / "plain.h5"
    shutil.copy2(path, kept)
    shutil.copyfile(path, plain)
    os.utime(plain, ns=(1, 2))
    assert indexed(kept) and not indexed(plain)
    for p in (kept, plain):
        loaded = tsnap.load(p)
        for n, a in data.items():
            assert_bits_equal(loaded[n], a, n)

"""`tsnap export`: tensors to .npy files, checked against np.load, np.save's
own bytes and ml_dtypes' exact float32 widening, on fresh random data."""
import io
import os

import h5py
import ml_dtypes
import numpy as np
import pytest

import pyhelpers
import tsnap as tsnap_py
from clihelpers import rng_for, save, save_complex32, tsnap
from pyhelpers import DTYPES, ML_DTYPES, SHAPES

RAW_BITS = {"bfloat16": np.uint16, "float8_e4m3fn": np.uint8, "float8_e5m2": np.uint8}


def npy_bytes(a):
    """What np.save writes for `a`: the oracle for header and data."""
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def widened(a):
    """NumPy's own exact widening of an ml_dtypes array."""
    return a.astype(np.float32)


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_every_dtype_and_odd_shape_exports_as_numpy_saves_it(seed, tmp_path, dtype):
    rng = rng_for(seed, "dtype", dtype)
    data = {s: pyhelpers.values(rng, DTYPES[dtype], shape) for s, shape in SHAPES.items()}
    src = save(tmp_path / "src.h5", data, compression="zstd", chunk_bytes=64)
    out = tmp_path / "out"
    proc = tsnap("export", src, "-o", out, expect=0)
    for name, a in data.items():
        path = out / f"{name}.npy"
        got = np.load(path)
        if dtype in ML_DTYPES:
            assert f"'{name}'" in proc.stderr and "float32" in proc.stderr
            pyhelpers.assert_same_values(got, widened(a), name)
            assert path.read_bytes()[:128] == npy_bytes(widened(a))[:128]
        else:
            pyhelpers.assert_bits_equal(got, a, name)
            assert path.read_bytes() == npy_bytes(a), name
    if dtype not in ML_DTYPES:
        assert "widened" not in proc.stderr


@pytest.mark.parametrize("dtype", ML_DTYPES)
def test_raw_keeps_the_bits(seed, tmp_path, dtype):
    rng = rng_for(seed, "raw", dtype)
    a = pyhelpers.values(rng, DTYPES[dtype], (7, 11, 13))
    src = save(tmp_path / "src.h5", {"t": a})
    out = tmp_path / "t.npy"
    proc = tsnap("export", "--raw", src, "t", "-o", out, expect=0)
    assert "widened" not in proc.stderr
    got = np.load(out)
    pyhelpers.assert_bits_equal(got, a.view(RAW_BITS[dtype]), dtype)
    pyhelpers.assert_bits_equal(got.view(DTYPES[dtype]), a, dtype)


def test_complex32_widens_to_complex64_or_stays_float16_pairs(seed, tmp_path):
    rng = rng_for(seed, "complex32")
    pairs = {s: pyhelpers.values(rng, np.float16, shape + (2,)) for s, shape in SHAPES.items()}
    src = save_complex32(tmp_path / "src.h5", pairs)
    wide, raw = tmp_path / "wide", tmp_path / "raw"
    proc = tsnap("export", src, "-o", wide, expect=0)
    assert "complex64" in proc.stderr
    tsnap("export", "--raw", src, "-o", raw, expect=0)
    for name, p in pairs.items():
        want = np.empty(p.shape[:-1], np.complex64)
        want.real, want.imag = p[..., 0].astype(np.float32), p[..., 1].astype(np.float32)
        got = np.load(wide / f"{name}.npy")
        assert got.dtype == np.complex64
        pyhelpers.assert_same_values(got, want, name)
        pyhelpers.assert_bits_equal(np.load(raw / f"{name}.npy"), p, name)


@pytest.mark.parametrize("layout", ["transposed", "fortran", "reversed", "step", "bigendian"])
def test_non_contiguous_sources_export_in_c_order(seed, tmp_path, layout):
    rng = rng_for(seed, "layout", layout)
    a = pyhelpers.LAYOUTS[layout](rng, np.dtype(np.float64), (7, 11, 13))
    src = save(tmp_path / "src.h5", {"t": a})
    tsnap("export", src, "t", "-o", tmp_path / "t.npy", expect=0)
    got = np.load(tmp_path / "t.npy")
    pyhelpers.assert_bits_equal(got, pyhelpers.logical(a), layout)
    assert got.flags.c_contiguous


def test_h5py_written_chunked_gzip_dataset(seed, tmp_path):
    rng = rng_for(seed, "h5py")
    a = pyhelpers.values(rng, np.int32, (29, 31))
    src = tmp_path / "h5py.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("grid/values", data=a.astype(">i4"), chunks=(7, 11), compression="gzip")
    tsnap("export", src, "grid/values", "-o", tmp_path / "v.npy", expect=0)
    assert (tmp_path / "v.npy").read_bytes() == npy_bytes(a)


@pytest.mark.parametrize("dtype", ["float64", "bfloat16", "float8_e4m3fn", "bool"])
def test_a_tensor_larger_than_one_slab(seed, tmp_path, dtype):
    rng = rng_for(seed, "slabs", dtype)
    a = pyhelpers.values(rng, DTYPES[dtype], (7, 11, 13))
    src = save(tmp_path / "src.h5", {"t": a}, chunk_bytes=200)
    out = tmp_path / "t.npy"
    tsnap("export", "--slab-bytes", "100", src, "t", "-o", out, expect=0)
    want = widened(a) if dtype in ML_DTYPES else a
    pyhelpers.assert_same_values(np.load(out), want, dtype)


def test_whole_file_to_a_directory_with_nested_names(seed, tmp_path):
    rng = rng_for(seed, "nested")
    data = {
        "top": pyhelpers.values(rng, np.float32, (3, 4)),
        "fields/u": pyhelpers.values(rng, np.float64, (5,)),
        "fields/deep/w": pyhelpers.values(rng, np.int8, (2, 2, 2)),
        "scalars/n": pyhelpers.values(rng, np.uint64, ()),
    }
    src = save(tmp_path / "src.h5", data)
    out = tmp_path / "exported"
    proc = tsnap("export", src, "-o", out, expect=0)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted(f"{n}.npy" for n in data)
    for name, a in data.items():
        assert (out / f"{name}.npy").read_bytes() == npy_bytes(a), name
        assert f"{name} -> " in proc.stdout
    # a few names to an existing directory, and one name into a directory
    some = tmp_path / "some"
    tsnap("export", src, "top", "fields/u", "-o", some, expect=0)
    assert sorted(p.name for p in some.rglob("*.npy")) == ["top.npy", "u.npy"]
    into = tmp_path / "into"
    into.mkdir()
    tsnap("export", src, "fields/deep/w", "-o", into, expect=0)
    pyhelpers.assert_bits_equal(np.load(into / "fields/deep/w.npy"), data["fields/deep/w"], "w")


def test_missing_name_fails_and_writes_nothing(seed, tmp_path):
    src = save(tmp_path / "src.h5", {"x": np.arange(3.0)})
    out = tmp_path / "nope.npy"
    proc = tsnap("export", src, "nope", "-o", out, expect=1)
    assert "'nope'" in proc.stderr and "src.h5" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.h5"]


def test_missing_or_foreign_file_fails(tmp_path):
    proc = tsnap("export", tmp_path / "absent.h5", "x", "-o", tmp_path / "x.npy", expect=1)
    assert "absent.h5" in proc.stderr
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    proc = tsnap("export", junk, "-o", tmp_path / "out", expect=1)
    assert "junk.h5" in proc.stderr


def test_existing_output_is_refused_without_force(seed, tmp_path):
    rng = rng_for(seed, "force")
    a = pyhelpers.values(rng, np.int16, (9,))
    src = save(tmp_path / "src.h5", {"x": a})
    out = tmp_path / "x.npy"
    out.write_bytes(b"precious")
    proc = tsnap("export", src, "x", "-o", out, expect=1)
    assert "x.npy" in proc.stderr and "--force" in proc.stderr
    assert out.read_bytes() == b"precious"
    tsnap("export", "--force", src, "x", "-o", out, expect=0)
    assert out.read_bytes() == npy_bytes(a)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.h5", "x.npy"]  # no temporaries


def test_unreadable_dataset_is_named_and_the_others_still_written(seed, tmp_path):
    rng = rng_for(seed, "unreadable")
    a = pyhelpers.values(rng, np.float32, (4, 5))
    src = tmp_path / "mixed.h5"
    with h5py.File(src, "w") as f:
        f["a"] = a
        f["labels"] = np.array([b"one", b"two"])
    out = tmp_path / "out"
    proc = tsnap("export", src, "-o", out, expect=1)
    assert "'labels'" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.npy"]
    assert (out / "a.npy").read_bytes() == npy_bytes(a)
    proc = tsnap("export", src, "labels", "-o", tmp_path / "l.npy", expect=1)
    assert "'labels'" in proc.stderr and not (tmp_path / "l.npy").exists()


@pytest.mark.parametrize("args", [[], ["src.h5"], ["src.h5", "x"], ["--bogus", "src.h5", "-o", "o"],
                                  ["src.h5", "-o"], ["--slab-bytes", "0", "src.h5", "-o", "o"],
                                  ["--slab-bytes", "many", "src.h5", "-o", "o"]])
def test_usage_errors_exit_2(tmp_path, args):
    proc = tsnap("export", *args, expect=2, cwd=tmp_path)
    assert proc.stderr.startswith("tsnap export: ") and "--help" in proc.stderr


def test_help_has_usage_and_examples():
    out = tsnap("export", "--help", expect=0).stdout
    assert out.startswith("usage: tsnap export") and "Examples:" in out and "--raw" in out


def test_export_refuses_names_that_leave_the_directory(seed, tmp_path):
    rng = rng_for(seed, "dotdot")
    a = pyhelpers.values(rng, np.float64, (3,))
    src = tmp_path / "hostile.h5"
    with h5py.File(src, "w") as f:
        f.create_group("g")[".."] = a  # HDF5 allows '..' as a link name
        f["fine"] = a
    out = tmp_path / "out"
    proc = tsnap("export", src, "-o", out, expect=1)
    assert "'g/..'" in proc.stderr and "hostile.h5" in proc.stderr
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.npy")) == \
        ["out/fine.npy"]


def test_force_never_replaces_what_is_not_a_regular_file(tmp_path):
    src = save(tmp_path / "src.h5", {"x": np.arange(3.0)})
    fifo = tmp_path / "x.npy"
    os.mkfifo(fifo)
    proc = tsnap("export", "--force", src, "x", "-o", fifo, expect=1)
    assert "not a regular file" in proc.stderr
    assert fifo.is_fifo()

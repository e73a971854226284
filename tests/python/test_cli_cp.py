"""`tsnap cp`: any HDF5 file copied into tsnap form, checked against h5py
(with hdf5plugin for zstd and lz4) and NumPy on fresh random data."""
import json
import os

import h5py
import hdf5plugin  # noqa: F401 - registers the zstd and lz4 filters with h5py
import numpy as np
import pytest

import pyhelpers
import tsnap as tsnap_py
from clihelpers import rng_for, save_complex32, tsnap
from pyhelpers import DTYPES, SHAPES

FILTER_IDS = {"deflate": 1, "zstd": 32015, "lz4": 32004}


def ls_json(path):
    return {t["name"]: t for t in json.loads(tsnap("ls", "--json", path, expect=0).stdout)
            ["tensors"]}


def filters(ds):
    """The HDF5 filter pipeline of an h5py dataset: [(id, cd_values)]."""
    dcpl = ds.id.get_create_plist()
    return [(f[0], tuple(f[2])) for f in (dcpl.get_filter(i) for i in range(dcpl.get_nfilters()))]


@pytest.fixture
def h5py_gzip(seed, tmp_path):
    """An h5py file of gzip'ed (7, 11) chunks, with attributes everywhere."""
    rng = rng_for(seed, "gzip")
    data = {
        "f64": pyhelpers.values(rng, np.float64, (30, 41)),
        "fields/i32": pyhelpers.values(rng, np.int32, (30, 41)),
        "fields/mask": pyhelpers.values(rng, bool, (30, 41)),
        "c128": pyhelpers.values(rng, np.complex128, (30, 41)),
        "c64": pyhelpers.values(rng, np.complex64, (13, 11)),
    }
    path = tmp_path / "h5py-gzip.h5"
    with h5py.File(path, "w") as f:
        for name, a in data.items():
            f.create_dataset(name, data=a, chunks=(7, 11), compression="gzip",
                             compression_opts=6)
        f["f64"].attrs["units"] = "m/s"
        f["f64"].attrs["scale"] = np.float32(0.5)
        f["fields/i32"].attrs["bounds"] = np.array([-3, 3], np.int16)
        f["fields"].attrs["about"] = "a group attribute tsnap has no place for"
        f.attrs["step"] = np.int32(12)
        f.attrs["time"] = 0.25
        f.attrs["title"] = "run 7"
        f.attrs["grid"] = np.arange(4, dtype=np.float64)
    return path, data


def test_h5py_gzip_file_becomes_mappable_with_same_values_and_attributes(h5py_gzip, tmp_path):
    src, data = h5py_gzip
    dst = tmp_path / "mappable.h5"
    proc = tsnap("cp", src, dst, expect=0)
    assert "'fields'" in proc.stderr and "group" in proc.stderr  # the dropped group attribute

    listed = ls_json(dst)
    assert set(listed) == set(data)
    for name, t in listed.items():
        assert t["mappable"] is True, (name, t["why_not"])
        assert t["filters"] == []
    with h5py.File(dst, "r") as f:
        for name, a in data.items():
            assert f[name].dtype == a.dtype
            pyhelpers.assert_bits_equal(f[name][()], a, name)
        assert f.attrs["step"] == 12 and f.attrs["step"].dtype == np.int64
        assert f.attrs["time"] == 0.25
        assert f.attrs["title"] == "run 7"
        np.testing.assert_array_equal(f.attrs["grid"], np.arange(4.0))
        assert f.attrs["tsnap_format"] == "tsnap"
        assert f["f64"].attrs["units"] == "m/s"
        assert f["f64"].attrs["scale"] == np.float32(0.5)
        assert f["f64"].attrs["scale"].dtype == np.float32
        np.testing.assert_array_equal(f["fields/i32"].attrs["bounds"], [-3, 3])
        assert "about" not in f["fields"].attrs
    loaded = tsnap_py.load(dst, mmap=True)
    for name, a in data.items():
        assert pyhelpers.is_mapped(loaded[name])
        pyhelpers.assert_bits_equal(loaded[name], a, name)
    tsnap_py.verify(dst)


@pytest.mark.parametrize("codec,level", [("deflate", None), ("deflate", 9), ("gzip", 3),
                                         ("zstd", None), ("zstd", 7), ("zstd", -3),
                                         ("lz4", None)])
def test_compression_is_what_h5py_reads(h5py_gzip, tmp_path, codec, level):
    src, data = h5py_gzip
    dst = tmp_path / "packed.h5"
    spec = codec if level is None else f"{codec}:{level}"
    tsnap("cp", "--compression", spec, src, dst, expect=0)
    name = "deflate" if codec == "gzip" else codec
    listed = ls_json(dst)
    with h5py.File(dst, "r") as f:
        for t, a in data.items():
            pipeline = filters(f[t])
            ids = [fid for fid, _ in pipeline]
            assert FILTER_IDS[name] in ids, (t, pipeline)
            assert listed[t]["codec"] == name and listed[t]["mappable"] is False
            if name == "deflate":
                assert dict(pipeline)[1] == (level or 1,)
            if name == "zstd" and level is not None:
                assert dict(pipeline)[32015][0] == level % 2**32
            # shuffle by default for elements wider than a byte: bit shuffle
            # (filter 32008) before zstd, byte shuffle (filter 2) otherwise
            assert ((32008 if name == "zstd" else 2) in ids) == (a.dtype.itemsize > 1)
            pyhelpers.assert_bits_equal(f[t][()], a, t)


def test_shuffle_off_and_on(h5py_gzip, tmp_path):
    src, _ = h5py_gzip
    off, on = tmp_path / "off.h5", tmp_path / "on.h5"
    tsnap("cp", "--compression", "zstd", "--shuffle", "off", src, off, expect=0)
    tsnap("cp", "--compression", "zstd", "--shuffle", "on", src, on, expect=0)
    with h5py.File(off, "r") as f, h5py.File(on, "r") as g:
        for name in ("f64", "fields/mask"):
            assert 2 not in [fid for fid, _ in filters(f[name])]
            assert 2 in [fid for fid, _ in filters(g[name])]


def test_chunk_bytes_changes_chunk_shapes(h5py_gzip, tmp_path):
    src, data = h5py_gzip
    whole, small = tmp_path / "whole.h5", tmp_path / "small.h5"
    tsnap("cp", src, whole, expect=0)
    tsnap("cp", "--chunk-bytes", "1K", src, small, expect=0)
    with h5py.File(whole, "r") as f, h5py.File(small, "r") as g:
        for name, a in data.items():
            assert f[name].chunks == a.shape  # small tensors: one chunk
            chunks = g[name].chunks
            assert chunks != a.shape and chunks[1:] == a.shape[1:]  # leading axis split
            assert np.prod(chunks) * a.dtype.itemsize <= 1024
            pyhelpers.assert_bits_equal(g[name][()], a, name)
    assert all(t["mappable"] for t in ls_json(small).values())


@pytest.mark.parametrize("dtype", list(DTYPES) + ["complex32"])
def test_every_dtype_and_odd_shape_copies_bit_exact(seed, tmp_path, dtype):
    rng = rng_for(seed, "dtype", dtype)
    if dtype == "complex32":
        # float16 pairs: the raw form tsnap stores complex32 in
        data = {s: pyhelpers.values(rng, np.float16, shape + (2,)) for s, shape in SHAPES.items()}
        src = save_complex32(tmp_path / "src.h5", data)
    else:
        data = {s: pyhelpers.values(rng, DTYPES[dtype], shape) for s, shape in SHAPES.items()}
        src = tmp_path / "src.h5"
        tsnap_py.save(src, data, durable=False)
    for variant, flags in (("plain", []), ("zstd", ["--compression", "zstd:3",
                                                    "--chunk-bytes", "64"])):
        dst = tmp_path / f"{variant}.h5"
        tsnap("cp", *flags, src, dst, expect=0)
        listed = ls_json(dst)
        with h5py.File(src, "r") as f, h5py.File(dst, "r") as g:
            for name, a in data.items():
                assert listed[name]["dtype"] == dtype
                assert g[name].attrs["tsnap_dtype"] == dtype
                assert g[name].dtype == f[name].dtype, name
                pyhelpers.assert_bits_equal(g[name][()], f[name][()], f"{variant} {name}")
                assert g[name].attrs["tsnap_checksum"] == f[name].attrs["tsnap_checksum"]
                if variant == "plain":
                    assert listed[name]["mappable"], (name, listed[name]["why_not"])
        if dtype != "complex32":
            loaded = tsnap_py.load(dst, mmap="auto")
            for name, a in data.items():
                pyhelpers.assert_bits_equal(loaded[name], a, f"{variant} {name}")


def test_big_endian_and_contiguous_h5py_datasets(seed, tmp_path):
    rng = rng_for(seed, "bigendian")
    a = pyhelpers.values(rng, np.float64, (17, 5))
    b = pyhelpers.values(rng, np.uint16, (23,))
    src, dst = tmp_path / "be.h5", tmp_path / "le.h5"
    with h5py.File(src, "w") as f:
        f["be"] = a.astype(">f8")
        f.create_dataset("contiguous", data=b)
    tsnap("cp", src, dst, expect=0)
    listed = ls_json(dst)
    assert listed["be"]["mappable"] and listed["contiguous"]["mappable"]
    with h5py.File(dst, "r") as f:
        assert f["be"].dtype == np.dtype("<f8")
        pyhelpers.assert_bits_equal(f["be"][()], a, "be")
        pyhelpers.assert_bits_equal(f["contiguous"][()], b, "contiguous")


def test_tensors_beyond_memory_go_through_a_temporary_file(h5py_gzip, tmp_path):
    src, data = h5py_gzip
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "copy.h5"
    tsnap("cp", "--memory", "100", src, dst, expect=0)
    with h5py.File(dst, "r") as f:
        for name, a in data.items():
            pyhelpers.assert_bits_equal(f[name][()], a, name)
    assert sorted(p.name for p in out.iterdir()) == ["copy.h5"]  # nothing left behind


def test_a_directory_as_dst_takes_the_source_name(h5py_gzip, tmp_path):
    src, data = h5py_gzip
    out = tmp_path / "into"
    out.mkdir()
    tsnap("cp", src, out, expect=0)
    assert set(ls_json(out / src.name)) == set(data)


def test_no_checksum(h5py_gzip, tmp_path):
    src, _ = h5py_gzip
    dst = tmp_path / "nosum.h5"
    tsnap("cp", "--no-checksum", src, dst, expect=0)
    assert all(t["checksum"] is None for t in ls_json(dst).values())


def test_a_damaged_source_is_not_copied(seed, tmp_path):
    rng = rng_for(seed, "damaged")
    src, dst = tmp_path / "src.h5", tmp_path / "dst.h5"
    tsnap_py.save(src, {"x": pyhelpers.values(rng, np.int64, (50,))}, durable=False)
    t = ls_json(src)["x"]
    raw = bytearray(src.read_bytes())
    raw[t["offset"] + 17] ^= 0x40
    src.write_bytes(bytes(raw))
    proc = tsnap("cp", src, dst, expect=1)
    assert "'x'" in proc.stderr and "checksum" in proc.stderr
    assert not dst.exists()
    tsnap("cp", "--no-verify", src, dst, expect=0)


def test_string_dataset_fails_the_copy_unless_skipped(seed, tmp_path):
    rng = rng_for(seed, "strings")
    a = pyhelpers.values(rng, np.float32, (6, 4))
    src, dst = tmp_path / "mixed.h5", tmp_path / "dst.h5"
    with h5py.File(src, "w") as f:
        f["a"] = a
        f["labels"] = np.array([b"one", b"two"])
        f.attrs["names"] = ["x", "y"]  # an array of strings: no tsnap attribute
    proc = tsnap("cp", src, dst, expect=1)
    assert "'labels'" in proc.stderr and "--skip-unsupported" in proc.stderr
    assert not dst.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    proc = tsnap("cp", "--skip-unsupported", src, dst, expect=0)
    assert "'labels'" in proc.stderr and "skipped" in proc.stderr
    assert "'names'" in proc.stderr  # the attribute that could not come along
    with h5py.File(dst, "r") as f:
        assert list(f) == ["a"]
        pyhelpers.assert_bits_equal(f["a"][()], a, "a")


def test_existing_dst_is_refused_without_force(h5py_gzip, tmp_path):
    src, data = h5py_gzip
    dst = tmp_path / "taken.h5"
    dst.write_bytes(b"precious")
    proc = tsnap("cp", src, dst, expect=1)
    assert str(dst) in proc.stderr and "--force" in proc.stderr
    assert dst.read_bytes() == b"precious"
    tsnap("cp", "--force", src, dst, expect=0)
    assert set(ls_json(dst)) == set(data)


def test_recompress_in_place_with_force(h5py_gzip, tmp_path):
    src, data = h5py_gzip
    path = tmp_path / "inplace.h5"
    path.write_bytes(src.read_bytes())
    tsnap("cp", "--force", path, path, expect=0)
    with h5py.File(path, "r") as f:
        assert f.attrs["tsnap_format"] == "tsnap"
        for name, a in data.items():
            pyhelpers.assert_bits_equal(f[name][()], a, name)


def test_missing_or_foreign_source_fails(tmp_path):
    proc = tsnap("cp", tmp_path / "absent.h5", tmp_path / "dst.h5", expect=1)
    assert "absent.h5" in proc.stderr
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all" * 10)
    proc = tsnap("cp", junk, tmp_path / "dst.h5", expect=1)
    assert "junk.h5" in proc.stderr
    assert not (tmp_path / "dst.h5").exists()


@pytest.mark.parametrize("args", [
    [], ["only-src.h5"], ["a.h5", "b.h5", "c.h5"], ["--bogus", "a.h5", "b.h5"],
    ["--compression", "brotli", "a.h5", "b.h5"], ["--compression", "zstd:23", "a.h5", "b.h5"],
    ["--compression", "deflate:0", "a.h5", "b.h5"], ["--compression", "lz4:3", "a.h5", "b.h5"],
    ["--compression", "zstd:x", "a.h5", "b.h5"], ["--shuffle", "maybe", "a.h5", "b.h5"],
    ["--chunk-bytes", "0", "a.h5", "b.h5"], ["--chunk-bytes", "3G", "a.h5", "b.h5"],
    ["--chunk-bytes", "lots", "a.h5", "b.h5"], ["--memory", "-1", "a.h5", "b.h5"],
    ["a.h5", "b.h5", "--compression"],
])
def test_usage_errors_exit_2(tmp_path, args):
    proc = tsnap("cp", *args, expect=2, cwd=tmp_path)
    assert proc.stderr.startswith("tsnap cp: ") and "--help" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_help_has_usage_and_examples():
    out = tsnap("cp", "--help", expect=0).stdout
    assert out.startswith("usage: tsnap cp") and "Examples:" in out and "--memory" in out


def test_names_tsnap_refuses_fail_the_copy_unless_skipped(seed, tmp_path):
    rng = rng_for(seed, "names")
    a = pyhelpers.values(rng, np.int8, (4,))
    src, dst = tmp_path / "hostile.h5", tmp_path / "dst.h5"
    with h5py.File(src, "w") as f:
        f.create_group("g")[".."] = a  # HDF5 allows '..' as a link name
        f["ok"] = a
    proc = tsnap("cp", src, dst, expect=1)
    assert "'g/..'" in proc.stderr and not dst.exists()
    proc = tsnap("cp", "--skip-unsupported", src, dst, expect=0)
    assert "'g/..'" in proc.stderr and "skipped" in proc.stderr
    with h5py.File(dst, "r") as f:
        assert list(f) == ["ok"]


def test_force_never_replaces_what_is_not_a_regular_file(h5py_gzip, tmp_path):
    src, _ = h5py_gzip
    fifo = tmp_path / "dst.h5"
    os.mkfifo(fifo)
    proc = tsnap("cp", "--force", src, fifo, expect=1)
    assert "not a regular file" in proc.stderr
    assert fifo.is_fifo()

"""Virtual tensors (the global tensors of distributed snapshots) read from
Python as any tensor: load, open, slicing, verify and mapping, equal to
h5py's read of the same file.  The virtual datasets are made both by tsnap
(tsnap_writer_put_virtual, through tsnap_testio) over parts that tsnap.save
wrote, and by h5py's VirtualLayout over h5py-written parts, with relative
source names; every dtype, uneven blocks along any axis, 2-D
decompositions, blocks of different codecs and chunking, and strided
selections that cross block borders."""
import os
import re
import shutil
import subprocess
import sys

import h5py
import hdf5plugin
import numpy as np
import pytest

import oracle
import tsnap
from pyhelpers import (DTYPES, assert_same_values, expected_from_h5py, is_mapped, tsnap_name,
                       values)

SAVE_ID = "00c0ffee00c0ffee"

# name -> (global shape, blocks as (offset, shape))
LAYOUTS = {
    "rows-uneven": ((7, 5), [((0, 0), (3, 5)), ((3, 0), (1, 5)), ((4, 0), (3, 5))]),
    "columns-3d": ((2, 3, 11), [((0, 0, 0), (2, 3, 4)), ((0, 0, 4), (2, 3, 7))]),
    "grid-2x2": ((6, 9), [((0, 0), (4, 5)), ((0, 5), (4, 4)), ((4, 0), (2, 5)),
                          ((4, 5), (2, 4))]),
    "1d-primes": ((29,), [((0,), (13,)), ((13,), (3,)), ((16,), (13,))]),
}
CODECS = [None, "zstd", "lz4", "deflate"]


def _block(offset, shape):
    return tuple(slice(o, o + n) for o, n in zip(offset, shape))


def _dims(t):
    return ",".join(str(x) for x in t)


def part_file(base, i):
    return f"{base}.parts/{SAVE_ID}/rank-{i:06d}.h5"


def tsnap_vds(testio, folder, name, array, blocks, codecs=(None,), chunk_bytes=None,
              base="snap.h5"):
    """A snapshot folder/base whose tensor `name` is a virtual tensor made by
    tsnap over parts that tsnap.save wrote, block i with codecs[i % len]."""
    (folder / f"{base}.parts" / SAVE_ID).mkdir(parents=True, exist_ok=True)
    specs = []
    for i, (offset, shape) in enumerate(blocks):
        rel = part_file(base, i)
        tsnap.save(folder / rel, {name: array[_block(offset, shape)]},
                   compression=codecs[i % len(codecs)], chunk_bytes=chunk_bytes, durable=False)
        specs.append(f"{rel}:{name}:{_dims(offset)}:{_dims(shape)}")
    path = folder / base
    proc = oracle.run_testio("virtual", path, name, tsnap_name(array.dtype),
                             _dims(array.shape), *specs)
    assert proc.returncode == 0, proc.stderr
    return path


H5PY_FILTERS = {
    None: {},
    "deflate": {"compression": "gzip", "compression_opts": 4},
    "zstd": dict(hdf5plugin.Zstd()),
    "lz4": dict(hdf5plugin.LZ4()),
}


def h5py_vds(folder, name, array, blocks, codecs=(None,), fillvalue=None, base="h5py.h5"):
    """The same made by h5py: parts chunked and filtered as h5py writes
    them, the virtual dataset with relative sources, libver v110."""
    (folder / f"{base}.parts").mkdir(parents=True, exist_ok=True)
    layout = h5py.VirtualLayout(shape=array.shape, dtype=array.dtype)
    for i, (offset, shape) in enumerate(blocks):
        rel = f"{base}.parts/part-{i}.h5"
        block = array[_block(offset, shape)]
        with h5py.File(folder / rel, "w", libver=("v110", "v110")) as f:
            chunks = tuple(max(1, (n + 1) // 2) for n in shape)
            f.create_dataset(name, data=block, chunks=chunks, **H5PY_FILTERS[codecs[i % len(codecs)]])
        layout[_block(offset, shape)] = h5py.VirtualSource(rel, name, shape=shape)
    path = folder / base
    with h5py.File(path, "w", libver=("v110", "v110")) as f:
        f.create_virtual_dataset(name, layout, fillvalue=fillvalue)
    return path


def h5py_read(path, name, dtype_name, key=Ellipsis):
    with h5py.File(path, "r") as f:
        whole = expected_from_h5py(f[name], dtype_name)
    return whole[key]


def random_keys(rng, shape, n=10):
    """Basic indices with steps (negative too) and ints, crossing blocks."""
    keys = [Ellipsis, tuple(slice(None, None, -1) for _ in shape)]
    for _ in range(n):
        key = []
        for size in shape:
            kind = rng.integers(0, 4)
            if kind == 0:
                key.append(int(rng.integers(-size, size)))
            else:
                a, b = sorted(int(x) for x in rng.integers(0, size + 1, 2))
                step = int(rng.integers(1, 4)) * (-1 if kind == 3 else 1)
                key.append(slice(a, b, step) if step > 0 else slice(b, a, step))
        keys.append(tuple(key))
    return keys


# ---------------------------------------------------------------------------
# tsnap's own virtual tensors

@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("dtype_name", sorted(DTYPES))
def test_tsnap_reads_every_dtype_and_layout_as_h5py_does(tmp_path, testio, seed, dtype_name,
                                                        layout):
    rng = np.random.default_rng([seed, 1])
    shape, blocks = LAYOUTS[layout]
    array = values(rng, DTYPES[dtype_name], shape)
    path = tsnap_vds(testio, tmp_path, "fields/u", array, blocks, codecs=CODECS,
                     chunk_bytes=int(rng.integers(8, 64)))
    want = h5py_read(path, "fields/u", dtype_name)
    assert_same_values(want, array, "h5py's read of the virtual dataset")
    assert_same_values(tsnap.load(path, "fields/u"), array, "tsnap.load")
    assert_same_values(tsnap.load(path)["fields/u"], array, "tsnap.load of every tensor")
    assert_same_values(tsnap.load(path, "fields/u", verify=True), array, "verified load")
    with tsnap.open(path) as f:
        t = f["fields/u"]
        assert t.shape == shape and t.dtype == DTYPES[dtype_name]
        assert t.tsnap_dtype == dtype_name
        assert t.map_status == "virtual dataset over other files"
        for key in random_keys(rng, shape):
            assert_same_values(t[key], array[key], f"t[{key}]")
        f.verify()
    assert tsnap.verify(path) == 0  # a virtual tensor records no checksum of its own


def test_complex32_reads_as_h5py_reads_its_float16_pairs(tmp_path, testio, seed):
    """complex32 is stored as float16 pairs on a trailing axis; the virtual
    dataset maps every block with its pair axis whole."""
    rng = np.random.default_rng([seed, 13])
    shape, blocks = LAYOUTS["grid-2x2"]
    pairs = values(rng, np.float16, shape + (2,))
    (tmp_path / f"snap.h5.parts/{SAVE_ID}").mkdir(parents=True)
    specs = []
    for i, (offset, bshape) in enumerate(blocks):
        rel = part_file("snap.h5", i)
        tsnap.save(tmp_path / rel, {"z": pairs[_block(offset, bshape)]}, durable=False)
        with h5py.File(tmp_path / rel, "r+") as f:  # the same bytes, tagged complex32
            f["z"].attrs["tsnap_dtype"] = "complex32"
            del f["z"].attrs["tsnap_checksum"]
        specs.append(f"{rel}:z:{_dims(offset)}:{_dims(bshape)}")
    path = tmp_path / "snap.h5"
    oracle.run_testio("virtual", path, "z", "complex32", _dims(shape), *specs)
    want = h5py_read(path, "z", "complex32")
    assert want.shape == shape and want.dtype == np.complex64
    with tsnap.open(path) as f:
        t = f["z"]
        assert t.tsnap_dtype == "complex32" and t.shape == shape
        assert_same_values(t.numpy(), want)
        for key in random_keys(rng, shape):
            assert_same_values(t[key], want[key], f"t[{key}]")


def test_parts_list_each_block_with_its_file_dataset_offset_and_shape(tmp_path, testio, seed):
    rng = np.random.default_rng([seed, 2])
    shape, blocks = LAYOUTS["grid-2x2"]
    array = values(rng, np.float32, shape)
    path = tsnap_vds(testio, tmp_path, "u", array, blocks)
    with tsnap.open(path) as f:
        parts = f["u"].parts
        assert [(p.offset, p.shape) for p in parts] == blocks
        assert [p.file for p in parts] == [part_file("snap.h5", i) for i in range(4)]
        assert all(p.dataset == "u" for p in parts)
        assert all(os.path.samefile(p.path, tmp_path / p.file) for p in parts)
        for p in parts:
            assert_same_values(tsnap.load(p.path, p.dataset), array[_block(p.offset, p.shape)])
    tsnap.save(tmp_path / "plain.h5", {"u": array}, durable=False)
    with tsnap.open(tmp_path / "plain.h5") as f:
        assert f["u"].parts == []


def test_a_moved_snapshot_reads_from_another_working_directory(tmp_path, testio, seed):
    rng = np.random.default_rng([seed, 3])
    shape, blocks = LAYOUTS["rows-uneven"]
    array = values(rng, np.int64, shape)
    tsnap_vds(testio, tmp_path / "a", "u", array, blocks)
    h5py_vds(tmp_path / "a", "u", array, blocks)
    shutil.move(tmp_path / "a", tmp_path / "b")
    (tmp_path / "elsewhere").mkdir()
    code = ("import sys, numpy as np, tsnap\n"
            "a = tsnap.load(sys.argv[1], 'u'); b = tsnap.load(sys.argv[2], 'u')\n"
            "assert np.array_equal(a, b)\n"
            "np.save(sys.argv[3], a)\n")
    out = tmp_path / "got.npy"
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "b" / "snap.h5"),
                           str(tmp_path / "b" / "h5py.h5"), str(out)],
                          cwd=tmp_path / "elsewhere", capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              os.path.abspath(p) for p in sys.path if p)})
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(np.load(out), array)


def test_a_missing_part_is_an_error_naming_it_where_hdf5_gives_fill_values(tmp_path, testio,
                                                                         seed):
    rng = np.random.default_rng([seed, 4])
    shape, blocks = LAYOUTS["rows-uneven"]
    array = values(rng, np.int32, shape) | 1  # no zeros: a fill value shows
    path = tsnap_vds(testio, tmp_path, "u", array, blocks)
    os.unlink(tmp_path / part_file("snap.h5", 1))
    with h5py.File(path, "r") as f:
        assert (f["u"][3] == 0).all()  # HDF5's silent answer
    with pytest.raises(tsnap.FormatError) as e:
        tsnap.load(path, "u")
    assert "tensor 'u'" in str(e.value) and part_file("snap.h5", 1) in str(e.value)
    assert "is missing" in str(e.value)
    with pytest.raises(tsnap.FormatError, match="is missing"):
        tsnap.verify(path)
    with tsnap.open(path) as f:
        assert np.array_equal(f["u"][4:], array[4:])  # the other blocks still read


def test_a_damaged_part_fails_verify_naming_the_tensor_and_the_part(tmp_path, testio, seed):
    rng = np.random.default_rng([seed, 5])
    shape, blocks = LAYOUTS["grid-2x2"]
    array = values(rng, np.float64, shape)
    path = tsnap_vds(testio, tmp_path, "u", array, blocks)
    victim = tmp_path / part_file("snap.h5", 2)
    with h5py.File(victim, "r") as f:
        offset = oracle.flat_offset(f["u"])
    with open(victim, "r+b") as fh:
        fh.seek(offset + 3)
        byte = fh.read(1)
        fh.seek(offset + 3)
        fh.write(bytes([byte[0] ^ 0x40]))
    with pytest.raises(tsnap.IntegrityError) as e:
        tsnap.verify(path)
    assert "tensor 'u'" in str(e.value) and part_file("snap.h5", 2) in str(e.value)
    with pytest.raises(tsnap.IntegrityError):
        tsnap.load(path, "u", verify=True)


def test_h5dump_reads_tsnaps_virtual_dataset(tmp_path, testio, seed):
    if not shutil.which("h5dump"):
        pytest.skip("h5dump is not installed")
    rng = np.random.default_rng([seed, 6])
    shape, blocks = LAYOUTS["grid-2x2"]
    array = rng.integers(-1000, 1000, shape, dtype=np.int16)
    path = tsnap_vds(testio, tmp_path, "u", array, blocks)
    proc = subprocess.run(["h5dump", "-d", "/u", "-w", "0", str(path)], capture_output=True,
                          text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert "H5T_STD_I16LE" in proc.stdout
    data = proc.stdout.split("DATA {", 1)[1]
    nums = [int(x) for x in re.findall(r"(?<=[:,]) (-?\d+)", data)]
    assert nums == array.reshape(-1).tolist()


# ---------------------------------------------------------------------------
# h5py's virtual datasets

@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("dtype_name", ["bool", "int8", "uint16", "int32", "uint64", "float16",
                                        "float32", "float64", "complex64", "complex128"])
def test_h5py_virtual_datasets_read_as_h5py_reads_them(tmp_path, seed, dtype_name, layout):
    rng = np.random.default_rng([seed, 7])
    shape, blocks = LAYOUTS[layout]
    array = values(rng, DTYPES[dtype_name], shape)
    path = h5py_vds(tmp_path, "g/v", array, blocks, codecs=CODECS)
    want = h5py_read(path, "g/v", dtype_name)
    assert_same_values(want, array, "h5py")
    with tsnap.open(path) as f:
        t = f["g/v"]
        assert t.map_status == "virtual dataset over other files"
        assert [(p.offset, p.shape) for p in t.parts] == blocks
        assert_same_values(t.numpy(), want, "tsnap")
        for key in random_keys(rng, shape):
            assert_same_values(t[key], want[key], f"t[{key}]")


def test_sources_in_the_same_file_or_named_absolutely_read_as_h5py_reads_them(tmp_path, seed):
    rng = np.random.default_rng([seed, 14])
    array = values(rng, np.uint32, (5, 8))
    with h5py.File(tmp_path / "abs.h5", "w", libver=("v110", "v110")) as f:
        f["right"] = array[:, 5:]
    layout = h5py.VirtualLayout(shape=array.shape, dtype=array.dtype)
    layout[:, :5] = h5py.VirtualSource(".", "blocks/left", shape=(5, 5))
    layout[:, 5:] = h5py.VirtualSource(str(tmp_path / "abs.h5"), "right", shape=(5, 3))
    with h5py.File(tmp_path / "same.h5", "w", libver=("v110", "v110")) as f:
        f["blocks/left"] = array[:, :5]
        f.create_virtual_dataset("v", layout)
    with tsnap.open(tmp_path / "same.h5") as f:
        parts = f["v"].parts
        assert [p.file for p in parts] == [".", str(tmp_path / "abs.h5")]
        assert parts[0].path == str(tmp_path / "same.h5")
        assert_same_values(f["v"].numpy(), h5py_read(tmp_path / "same.h5", "v", "uint32"))
        assert_same_values(f["v"][1:4, 3:7], array[1:4, 3:7])
        assert_same_values(f["blocks/left"].numpy(), array[:, :5])


def test_an_uncovered_region_reads_as_the_fill_value(tmp_path, seed):
    rng = np.random.default_rng([seed, 8])
    array = values(rng, np.float32, (6, 4))
    path = h5py_vds(tmp_path, "v", array, [((0, 0), (2, 4)), ((4, 0), (2, 4))], fillvalue=-7.5)
    want = h5py_read(path, "v", "float32")
    assert (want[2:4] == -7.5).all()
    with tsnap.open(path) as f:
        assert_same_values(f["v"].numpy(), want)
        assert_same_values(f["v"][1:5:2, ::-1], want[1:5:2, ::-1])


def test_mappings_tsnap_cannot_follow_are_read_by_hdf5(tmp_path, seed):
    """Sources mapped in part, with a stride: h5py's own path reads them."""
    rng = np.random.default_rng([seed, 9])
    src = values(rng, np.int32, (20,))
    with h5py.File(tmp_path / "src.h5", "w", libver=("v110", "v110")) as f:
        f["s"] = src
    layout = h5py.VirtualLayout(shape=(10,), dtype=np.int32)
    layout[0:5] = h5py.VirtualSource("src.h5", "s", shape=(20,))[0:10:2]
    layout[5:10] = h5py.VirtualSource("src.h5", "s", shape=(20,))[15:20]
    with h5py.File(tmp_path / "odd.h5", "w", libver=("v110", "v110")) as f:
        f.create_virtual_dataset("v", layout, fillvalue=3)
    want = h5py_read(tmp_path / "odd.h5", "v", "int32")
    with tsnap.open(tmp_path / "odd.h5") as f:
        t = f["v"]
        assert t.map_status == "compact, virtual or external storage"
        with pytest.raises(tsnap.FormatError, match="cannot follow"):
            t.parts
        assert_same_values(t.numpy(), want)
        assert_same_values(t[::-3], want[::-3])
    os.unlink(tmp_path / "src.h5")  # HDF5 would now give fill values
    with tsnap.open(tmp_path / "odd.h5") as f:
        with pytest.raises(tsnap.FormatError, match="source file 'src.h5' of mapping 0 is missing"):
            f["v"].numpy()


# ---------------------------------------------------------------------------
# Mapping

def _mapped_from(array, path):
    """Whether the array's first byte lies in a mapping of file `path`."""
    address = array.__array_interface__["data"][0]
    real = os.path.realpath(path)
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if len(fields) == 6 and fields[5].strip() == real and lo <= address < hi:
                return True
    return False


def test_a_tensor_of_several_parts_is_not_mappable_whole_but_its_blocks_are(tmp_path, testio,
                                                                            seed):
    rng = np.random.default_rng([seed, 10])
    shape, blocks = LAYOUTS["grid-2x2"]
    array = values(rng, np.float32, shape)
    path = tsnap_vds(testio, tmp_path, "u", array, blocks)
    with pytest.raises(tsnap.NotMappableError, match="4 part files"):
        tsnap.load(path, "u", mmap=True)
    assert_same_values(tsnap.load(path, "u", mmap="auto"), array)
    with tsnap.open(path) as f:
        t = f["u"]
        with pytest.raises(tsnap.NotMappableError, match="4 part files"):
            t.numpy(mmap=True)
        assert_same_values(t.numpy(mmap="auto"), array)
        # a region inside block 1 ([0:4, 5:9]) maps that block's part file
        key = (slice(1, 4, 2), slice(8, 4, -1))
        got = t.read(key, mmap=True)
        assert is_mapped(got) and not got.flags.writeable
        assert _mapped_from(got, tmp_path / part_file("snap.h5", 1))
        assert_same_values(got, h5py_read(path, "u", "float32", key))
        got = t.read((2, slice(6, 9)), mmap=True)
        assert _mapped_from(got, tmp_path / part_file("snap.h5", 1))
        assert_same_values(got, array[2, 6:9])
        # one across blocks cannot be mapped; "auto" copies it
        with pytest.raises(tsnap.NotMappableError, match=r"\[3:5, 0:9\].*not inside one block"):
            t.read((slice(3, 5), slice(None)), mmap=True)
        got = t.read((slice(3, 5), slice(None)), mmap="auto")
        assert not is_mapped(got)
        assert_same_values(got, array[3:5])
        assert_same_values(t.read((slice(3, 5),)), array[3:5])


def test_a_tensor_of_one_part_maps_it_with_no_copy(tmp_path, testio, seed):
    rng = np.random.default_rng([seed, 11])
    array = values(rng, DTYPES["bfloat16"], (9, 7))
    path = tsnap_vds(testio, tmp_path, "u", array, [((0, 0), (9, 7))])
    part = tmp_path / part_file("snap.h5", 0)
    got = tsnap.load(path, "u", mmap=True)
    assert is_mapped(got) and _mapped_from(got, part)
    assert_same_values(got, array)
    got = tsnap.load(path, mmap="auto")["u"]
    assert is_mapped(got) and _mapped_from(got, part)
    with tsnap.open(path) as f:
        got = f["u"].numpy(mmap=True)
        assert _mapped_from(got, part)
        assert_same_values(got, array)
    # a compressed part cannot be mapped: mmap=True says why, "auto" copies
    path = tsnap_vds(testio, tmp_path, "z", array, [((0, 0), (9, 7))], codecs=["zstd"],
                     base="z.h5")
    with pytest.raises(tsnap.NotMappableError, match="compressed"):
        tsnap.load(path, "z", mmap=True)
    assert_same_values(tsnap.load(path, "z", mmap="auto"), array)


def test_ordinary_tensors_read_regions_mapped_too(tmp_path, seed):
    rng = np.random.default_rng([seed, 12])
    array = values(rng, np.int16, (10, 6))
    tsnap.save(tmp_path / "p.h5", {"a": array, "z": array}, durable=False)
    tsnap.save(tmp_path / "z.h5", {"z": array}, compression="zstd", durable=False)
    with tsnap.open(tmp_path / "p.h5") as f:
        got = f["a"].read((slice(2, 9, 3), -1), mmap=True)
        assert is_mapped(got) and _mapped_from(got, tmp_path / "p.h5")
        assert np.array_equal(got, array[2:9:3, -1])
    with tsnap.open(tmp_path / "z.h5") as f:
        with pytest.raises(tsnap.NotMappableError):
            f["z"].read((slice(2, 4),), mmap=True)
        assert np.array_equal(f["z"].read((slice(2, 4),), mmap="auto"), array[2:4])
        with pytest.raises(ValueError, match="mmap must be"):
            f["z"].read(Ellipsis, mmap="yes")

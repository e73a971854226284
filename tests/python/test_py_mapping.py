"""Zero copy, proven rather than assumed: a mapped load's memory is the file's
pages (bytes written into the file afterwards show in the array), it is
read-only, it outlives every other object, it goes away with the last array,
and a 1 GiB mapped tensor costs no resident memory until it is touched."""
import gc
import os

import h5py
import numpy as np
import pytest
from h5py import h5d, h5p, h5s, h5t

import tsnap
from pyhelpers import assert_bits_equal, is_mapped, mapped_files, rss

MiB = 1 << 20


def _offset(path, name):
    """Where HDF5 says the dataset's first byte lies in the file."""
    with h5py.File(path, "r") as f:
        dsid = f[name].id
        if dsid.get_create_plist().get_layout() == h5d.CHUNKED:
            return dsid.get_chunk_info(0).byte_offset
        return dsid.get_offset()


def _tsnap_chunked(path, rng):
    data = rng.standard_normal((64, 33)).astype(np.float32)
    tsnap.save(path, {"x": data}, chunk_bytes=33 * 4 * 8, durable=False)  # 8 chunks
    with h5py.File(path, "r") as f:
        assert f["x"].chunks == (8, 33) and f["x"].id.get_num_chunks() == 8
    return data


def _tsnap_0d(path, rng):
    data = np.array(rng.standard_normal())
    tsnap.save(path, {"x": data}, durable=False)
    return data


def _h5py_contiguous(path, rng):
    data = rng.integers(-2**31, 2**31, (40, 3), dtype=np.int32)
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=data)
    return data


def _h5py_v110_chunked(path, rng):
    data = rng.standard_normal((12, 5))
    with h5py.File(path, "w", libver=("v110", "v110")) as f:
        dcpl = h5p.create(h5p.DATASET_CREATE)
        dcpl.set_chunk((4, 5))
        dcpl.set_alloc_time(h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5d.FILL_TIME_NEVER)
        h5d.create(f.id, b"x", h5t.IEEE_F64LE, h5s.create_simple((12, 5)), dcpl=dcpl)
        f["x"][...] = data
    return data


MAKERS = {"tsnap-chunked": _tsnap_chunked, "tsnap-0d": _tsnap_0d,
          "h5py-contiguous": _h5py_contiguous, "h5py-v110-chunked": _h5py_v110_chunked}


@pytest.fixture(params=list(MAKERS))
def flat(request, tmp_path, seed):
    """(path, values) of a dataset that lies flat in the file."""
    path = tmp_path / "flat.h5"
    data = MAKERS[request.param](path, np.random.default_rng([seed, 41]))
    return path, data


@pytest.mark.parametrize("how", ["load", "tensor"])
def test_bytes_written_into_the_file_show_in_an_already_mapped_array(flat, seed, how):
    path, data = flat
    if how == "load":
        arr = tsnap.load(path, "x", mmap=True)
    else:
        with tsnap.open(path) as f:
            arr = f["x"].numpy(mmap=True)
    assert is_mapped(arr)
    assert_bits_equal(arr, data)
    new = np.random.default_rng([seed, 42]).integers(0, 256, data.nbytes, dtype=np.uint8)
    with open(path, "r+b") as fh:
        fh.seek(_offset(path, "x"))
        fh.write(new.tobytes())
    assert arr.tobytes() == new.tobytes(), "the array is the file's pages, not a copy"


def test_a_copy_does_not_see_later_writes_to_the_file(flat):
    path, data = flat
    arr = tsnap.load(path, "x")
    with open(path, "r+b") as fh:
        fh.seek(_offset(path, "x"))
        fh.write(bytes(data.nbytes))
    assert_bits_equal(arr, data)


def test_a_mapped_array_and_its_views_are_read_only(flat):
    path, data = flat
    arr = tsnap.load(path, "x", mmap=True)
    assert not arr.flags.writeable
    with pytest.raises(ValueError):
        arr[...] = 0
    with pytest.raises(ValueError):
        np.copyto(arr, np.zeros_like(arr))
    with pytest.raises(ValueError):
        arr.setflags(write=True)  # the pages are PROT_READ: writing would crash
    view = arr.reshape(-1)[::-1]
    assert not view.flags.writeable
    with pytest.raises(ValueError):
        view[0] = 1
    assert_bits_equal(arr, data)


def test_a_mapped_array_outlives_the_file_its_tensor_and_every_other_reference(flat):
    path, data = flat
    f = tsnap.open(path)
    t = f["x"]
    arr = t.numpy(mmap=True)
    f.close()
    del f, t
    gc.collect()
    assert_bits_equal(arr, data)
    arr2 = tsnap.load(path, "x", mmap=True)[...]
    gc.collect()
    assert_bits_equal(arr2, data)
    os.unlink(path)  # the mapping holds the inode
    gc.collect()
    assert_bits_equal(arr, data)
    assert_bits_equal(arr2, data)


def test_the_mapping_goes_away_with_the_last_array_that_uses_it(flat):
    path, data = flat
    if data.ndim == 0:
        pytest.skip("a 0-d view keeps nothing to slice")
    arr = tsnap.load(path, "x", mmap=True)
    assert str(path) in mapped_files()
    view = arr[1:]
    del arr
    gc.collect()
    assert str(path) in mapped_files(), "a view keeps the mapping alive"
    assert_bits_equal(view, data[1:])
    del view
    gc.collect()
    assert str(path) not in mapped_files(), "the mapping was unmapped"


def test_a_file_object_does_not_keep_a_mapping_of_its_own(flat):
    path, _ = flat
    with tsnap.open(path) as f:
        f["x"].numpy(mmap=True)
        gc.collect()
        assert str(path) not in mapped_files()
    assert str(path) not in mapped_files()


def test_saving_over_a_mapped_snapshot_leaves_the_mapped_values_as_they_were(tmp_path, seed):
    rng = np.random.default_rng([seed, 43])
    path = tmp_path / "s.h5"
    old = rng.standard_normal((100, 10))
    tsnap.save(path, {"x": old}, durable=False)
    arr = tsnap.load(path, "x", mmap=True)
    new = rng.standard_normal((100, 10))
    tsnap.save(path, {"x": new}, durable=False)  # a new file renamed over the old one
    assert_bits_equal(arr, old)
    assert_bits_equal(tsnap.load(path, "x", mmap=True), new)


def test_a_1_gib_mapped_tensor_costs_no_resident_memory_until_touched(tmp_path):
    """A sparse 1 GiB contiguous dataset (h5py, early allocation, never
    filled) whose first 64 MiB hold data: mapping it adds far less than 1 GiB
    to VmRSS, and touching those 64 MiB adds about 64 MiB, which shows the
    measure sees mapped pages at all."""
    path = tmp_path / "big.h5"
    n = (1 << 30) // 4
    touched = (64 * MiB) // 4
    try:
        with h5py.File(path, "w") as f:
            dcpl = h5p.create(h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5d.ALLOC_TIME_EARLY)
            dcpl.set_fill_time(h5d.FILL_TIME_NEVER)
            h5d.create(f.id, b"big", h5t.STD_U32LE, h5s.create_simple((n,)), dcpl=dcpl)
            step = 4 * MiB
            for start in range(0, touched, step):
                f["big"][start:start + step] = np.arange(start, start + step, dtype=np.uint32)
        assert path.stat().st_size >= 1 << 30
        gc.collect()
        before = rss()
        arr = tsnap.load(path, "big", mmap=True)
        mapped = rss()
        assert arr.shape == (n,) and arr.dtype == np.uint32 and is_mapped(arr)
        assert mapped - before < 16 * MiB, (
            f"mapping 1 GiB raised VmRSS by {(mapped - before) / MiB:.1f} MiB")
        # one element per 4 KiB page of the first 64 MiB
        sample = np.array(arr[:touched:1024])
        after = rss()
        assert np.array_equal(sample, np.arange(0, touched, 1024, dtype=np.uint32))
        grew = after - mapped
        assert 48 * MiB <= grew <= 96 * MiB, (
            f"touching 64 MiB of the mapping raised VmRSS by {grew / MiB:.1f} MiB")
        assert arr[-1] == 0 and arr[touched] == 0  # never written: a hole, reads as 0
        del arr, sample
        gc.collect()
        assert str(path) not in mapped_files()
    finally:
        path.unlink(missing_ok=True)


def test_a_file_renamed_over_while_open_is_still_read_and_mapped_as_it_was(tmp_path, seed):
    """An open File reads and maps through the descriptor HDF5 opened, so a
    save that replaces the path meanwhile (an atomic rename) changes
    nothing for it."""
    rng = np.random.default_rng([seed, 91])
    old = rng.standard_normal((300, 40))
    new = rng.standard_normal((300, 40))
    path = tmp_path / "s.h5"
    tsnap.save(path, {"x": old}, chunk_bytes=8000, durable=False)
    with tsnap.open(path) as f:
        tsnap.save(path, {"x": new}, chunk_bytes=8000, durable=False)
        assert_bits_equal(f["x"].numpy(), old)
        mapped = f["x"].numpy(mmap=True)
        assert is_mapped(mapped)
        assert_bits_equal(mapped, old)
        assert_bits_equal(f["x"][10:20, ::3], old[10:20, ::3])
    assert_bits_equal(tsnap.load(path, "x"), new)


def test_loading_every_tensor_maps_what_lies_flat_and_names_what_cannot_be_mapped(
        tmp_path, seed):
    rng = np.random.default_rng([seed, 92])
    flat, packed = rng.standard_normal((50, 20)), rng.integers(0, 5, (40, 40))
    plain, zstd = tmp_path / "p.h5", tmp_path / "z.h5"
    tsnap.save(plain, {"a": flat, "b/c": packed}, durable=False)
    tsnap.save(zstd, {"a": flat, "b/c": packed}, compression="zstd", durable=False)
    for mode in (True, "auto"):
        got = tsnap.load(plain, mmap=mode)
        assert sorted(got) == ["a", "b/c"] and all(is_mapped(v) for v in got.values())
        assert_bits_equal(got["a"], flat)
        assert_bits_equal(got["b/c"], packed)
    got = tsnap.load(zstd, mmap="auto")
    assert not any(is_mapped(v) for v in got.values())
    assert_bits_equal(got["b/c"], packed)
    with pytest.raises(tsnap.NotMappableError) as info:
        tsnap.load(zstd, mmap=True)
    assert str(zstd) in str(info.value) and "'a'" in str(info.value)
    assert "compress" in str(info.value)

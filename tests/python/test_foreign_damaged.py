"""Damaged foreign files the fuzz test found, made on purpose.

A flipped bit in a dimension makes a legal dataset of terabytes whose
chunks were never written: verify checks what is stored (the chunks
written), ls and info describe it, load refuses it for want of memory, and
none of them reads fill values for hours.  A subprocess time limit is the
failure, never a timing.

A damaged fill value of a variable-length type crashed HDF5 1.10 when asked
for the dataset's creation properties (it converts the fill value through
the global heap): tsnap looks at the type first and never asks for those
of a dataset it cannot read, so ls, info, verify and opening the file all
survive it."""
import json
import struct

import h5py
import numpy as np
import pytest

import pyhelpers
import tsnap as tsnap_py
from clihelpers import rng_for, save, tsnap

LIMIT = 60  # seconds: a hang fails the test, no timing is asserted


def flip_in_chunk(path, name, coord):
    """Flips one bit in the middle of the stored chunk at `coord`."""
    with h5py.File(path, "r") as f:
        info = f[name].id.get_chunk_info_by_coord(tuple(coord))
    assert info.size > 0
    with open(path, "r+b") as f:
        f.seek(info.byte_offset + info.size // 2)
        byte = f.read(1)[0]
        f.seek(info.byte_offset + info.size // 2)
        f.write(bytes([byte ^ 0x10]))


def damaged_names(proc, path):
    head = f"{path}: DAMAGED: tensor '"
    return [line[len(head):].split("'", 1)[0] for line in proc.stdout.splitlines()
            if line.startswith(head)]


# ---- chunks never written -------------------------------------------

def write_sparse(path, rng):
    """128 GiB and 64 GiB of chunks, two and one of them written, a
    complex 2-D one written in the middle, and 1 TiB never allocated:
    {name: {origin: values}}."""
    written = {}
    with h5py.File(path, "w") as f:
        d = f.create_dataset("big", shape=(2**35,), chunks=(2**20,), dtype="<f4")
        first = rng.standard_normal(2**20).astype("<f4")
        far = rng.standard_normal(7).astype("<f4")
        d[:2**20] = first
        d[2**34 + 3:2**34 + 10] = far
        written["big"] = {(0,): first, (2**34 + 3,): far}
        g = f.create_dataset("cube", shape=(2**16, 2**10, 2**9), chunks=(64, 256, 64),
                             dtype="<i2", compression="gzip", shuffle=True)
        corner = rng.integers(-2**15, 2**15, (64, 256, 64), dtype="<i2")
        g[-64:, -256:, -64:] = corner
        written["cube"] = {(2**16 - 64, 2**10 - 256, 2**9 - 64): corner}
        c = f.create_dataset("field", shape=(2**20, 2**12), chunks=(128, 512), dtype="<c16",
                             compression="gzip")
        part = rng.standard_normal((3, 5)) + 1j * rng.standard_normal((3, 5))
        c[1000:1003, 4000:4005] = part
        written["field"] = {(1000, 4000): part}
        f.create_dataset("never", shape=(2**38,), dtype="<f4")  # contiguous, not allocated
        written["never"] = {}
    return written


def test_sparse_terabytes_verify_list_and_describe_without_reading_fill(seed, tmp_path):
    path = tmp_path / "sparse.h5"
    written = write_sparse(path, rng_for(seed, "sparse"))
    proc = tsnap("verify", path, expect=0, timeout=LIMIT)
    assert proc.stdout.startswith(f"{path}: OK (4 tensors, "), proc.stdout
    (obj,) = json.loads(tsnap("verify", "--json", path, expect=0, timeout=LIMIT).stdout)
    assert (obj["status"], obj["tensors"], obj["no_checksum"], obj["damaged"]) == \
        ("ok", 4, 4, [])
    listed = json.loads(tsnap("ls", "--json", path, expect=0, timeout=LIMIT).stdout)
    rows = {t["name"]: t for t in listed["tensors"]}
    with h5py.File(path, "r") as f:
        for name in written:
            d = f[name]
            row = rows[name]
            assert (row["shape"], row["chunks"]) == \
                (list(d.shape), list(d.chunks) if d.chunks else None)
            assert row["nbytes"] == d.size * d.dtype.itemsize
            assert row["stored_bytes"] == d.id.get_storage_size()
            assert row["mappable"] is False
    info = tsnap("info", path, "big", expect=0, timeout=LIMIT).stdout
    assert "shape:       (34359738368,)" in info and "2 stored" in info, info
    tsnap("info", path, expect=0, timeout=LIMIT)


def test_sparse_terabytes_read_where_written_and_refuse_a_whole_load(seed, tmp_path):
    path = tmp_path / "sparse.h5"
    written = write_sparse(path, rng_for(seed, "sparse-load"))
    boxes = {name: [(list(origin), list(np.shape(v))) for origin, v in parts.items()]
             for name, parts in written.items()}
    out = pyhelpers.run_json(r"""
import json, sys
import numpy as np
import tsnap
path, boxes = sys.argv[1], json.loads(sys.argv[2])
memory = sum(int(line.split()[1]) << 10 for line in open("/proc/meminfo")
             if line.startswith(("MemTotal:", "SwapTotal:")))
got, refused = {}, {}
assert tsnap.verify(path) == 0  # nothing with a checksum
with tsnap.open(path) as f:
    f.verify()
    for name, parts in boxes.items():
        got[name] = [np.asarray(a).view(np.float64).tolist() if np.iscomplexobj(a)
                     else np.asarray(a).tolist()
                     for a in (f[name][tuple(slice(o, o + n) for o, n in zip(origin, shape))]
                               for origin, shape in parts)]
        if f[name].nbytes <= memory:  # legal to load here, and slow
            continue
        refused[name] = []
        for whole in (lambda: tsnap.load(path, name), lambda: f[name][...]):
            try:
                whole()
                refused[name].append(None)
            except MemoryError as e:
                refused[name].append(str(e))
print(json.dumps({"got": got, "refused": refused}))
""", path, json.dumps(boxes), timeout=LIMIT)
    for name, parts in written.items():
        for values, want in zip(out["got"][name], parts.values()):
            want = np.asarray(want)
            if np.iscomplexobj(want):
                want = want.view(np.float64)
            np.testing.assert_array_equal(np.asarray(values, dtype=want.dtype), want)
        for msg in out["refused"].get(name, []):
            assert msg is not None, f"a whole read of {name} did not fail"
            assert f"{path}: tensor '{name}': out of memory" in msg, msg
    assert {"field", "never"} <= out["refused"].keys()  # 64 TiB and 1 TiB


def test_a_damaged_chunk_among_unwritten_ones_is_found(seed, tmp_path):
    """Tensors over the size verify reads whole, written in part: a bit
    flipped in a stored chunk names that tensor, the others pass.  `many`
    has more stored chunks than are listed one by one (its grid is asked
    chunk by chunk instead)."""
    rng = rng_for(seed, "sparse-damage")
    path = tmp_path / "part.h5"
    with h5py.File(path, "w") as f:
        a = f.create_dataset("deflated", shape=(4096, 1024), chunks=(64, 128), dtype="<f8",
                             compression="gzip", fillvalue=np.pi)
        a[128:256, 256:512] = rng.standard_normal((128, 256))
        b = f.create_dataset("many", shape=(8192, 1024), chunks=(8, 64), dtype="<f4",
                             compression="gzip")
        b[:2560] = rng.standard_normal((2560, 1024))
        c = f.create_dataset("intact", shape=(2**30,), chunks=(2**16,), dtype="<u8",
                             compression="gzip")
        c[2**29:2**29 + 5] = rng.integers(0, 2**64, 5, dtype="<u8")
        assert b.id.get_num_chunks() > 4096
    tsnap("verify", path, expect=0, timeout=LIMIT)
    flip_in_chunk(path, "deflated", (192, 384))
    flip_in_chunk(path, "many", (2552, 960))
    proc = tsnap("verify", path, expect=1, timeout=LIMIT)
    assert sorted(damaged_names(proc, path)) == ["deflated", "many"], proc.stdout


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_a_flipped_byte_in_a_snapshot_is_still_found_by_its_checksum(seed, tmp_path,
                                                                     compression):
    rng = rng_for(seed, "sparse-checksum", compression)
    path = tmp_path / "s.h5"
    tensors = {"a": pyhelpers.values(rng, "float32", (1 << 20, 5)),
               "b": pyhelpers.values(rng, "int16", (97, 89))}
    save(path, tensors, compression=compression)
    tsnap("verify", path, expect=0, timeout=LIMIT)
    flip_in_chunk(path, "a", (0, 0))
    proc = tsnap("verify", path, expect=1, timeout=LIMIT)
    assert damaged_names(proc, path) == ["a"], proc.stdout
    with pytest.raises(tsnap_py.IntegrityError, match="'a'"):
        tsnap_py.verify(path)


# ---- a damaged variable-length fill value ---------------------------

def fill_values(data):
    """Offsets of the 16-byte fill values of variable-length datasets in
    a file of version-1 object headers: the new fill value message
    (type 5, version 2, defined) and the old one (type 4)."""
    at = []
    for kind, head, size_at in ((5, 16, 12), (4, 12, 8)):
        tag = struct.pack("<HH", kind, 24)
        i = data.find(tag)
        while i >= 0:
            if (kind == 4 or data[i + 8] == 2) and \
                    struct.unpack_from("<I", data, i + size_at)[0] == 16:
                at.append(i + head)
            i = data.find(tag, i + 1)
    return at


def write_vlen_fills(path, damage):
    """Variable-length datasets with a fill value in the global heap: a
    sequence of int32 (PyTables' VLArray stores these), an array of
    strings and a single string never written; with `damage`, the heap
    object the fill values point at claims 65,520 bytes in a heap of 4,096."""
    with h5py.File(path, "w") as f:
        heap = f.create_dataset("heap", shape=(2,), dtype=h5py.vlen_dtype(np.int32))
        heap[0] = np.array([7, 8, 9], dtype=np.int32)  # the fill values' object
        heap[1] = np.arange(5, dtype=np.int32)
        f["plain"] = np.arange(6.0)
        for name, dt, shape in (("vl", h5py.vlen_dtype(np.int32), (10,)),
                                ("strings", h5py.string_dtype(), (4,)),
                                ("one", h5py.string_dtype(), ())):
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            if shape:
                dcpl.set_chunk((4,))
            fill = np.empty((), dtype=dt)
            fill[()] = np.array([1], dtype=np.int32) if name == "vl" else "x"
            dcpl.set_fill_value(fill)  # h5py stores a pointer: rewritten below
            space = h5py.h5s.create_simple(shape, (h5py.h5s.UNLIMITED,)) if shape else \
                h5py.h5s.create(h5py.h5s.SCALAR)
            h5py.h5d.create(f.id, name.encode(), h5py.h5t.py_create(dt, logical=True), space,
                            dcpl=dcpl)
    data = bytearray(path.read_bytes())
    gcol = data.index(b"GCOL")
    spots = fill_values(data)
    assert len(spots) == 6, spots
    for at in spots:  # three bytes of the heap's first object
        struct.pack_into("<IQI", data, at, 3, gcol, 1)
    if damage:
        struct.pack_into("<Q", data, gcol + 24, 0xfff0)
    path.write_bytes(bytes(data))


def test_vlen_fill_values_recipe_is_what_hdf5_reads(tmp_path):
    path = tmp_path / "fills.h5"
    write_vlen_fills(path, damage=False)
    with h5py.File(path, "r") as f:
        assert [list(v) for v in f["vl"][:2]] == [[7, 8, 9]] * 2


READ_EVERYTHING = r"""
import json, sys
import tsnap
out = {}
with tsnap.open(sys.argv[1]) as f:
    for name in f.keys():
        try:
            out[name] = repr(f[name].shape)
            f.verify(name)
        except tsnap.Error as e:
            out[name] = type(e).__name__
    out["verify"] = tsnap.verify(sys.argv[1])
    out["one"] = tsnap.load(sys.argv[1], "one")
print(json.dumps(out))
"""


def test_damaged_vlen_fill_value_crashes_nothing(tmp_path):
    path = tmp_path / "fills.h5"
    write_vlen_fills(path, damage=True)
    proc = pyhelpers.run_python(READ_EVERYTHING, path, timeout=LIMIT)
    assert proc.returncode == 0, pyhelpers.describe_exit(proc)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["plain"] == "(6,)" and out["verify"] == 0, out
    assert out["vl"] == out["heap"] == out["strings"] == "TypeError", out
    # never written: empty, without the fill value HDF5 would convert
    assert out["one"] == "", out
    for args in (("ls",), ("ls", "--json"), ("info",)):
        proc = tsnap(*args, path, timeout=LIMIT)
        assert proc.returncode == 0, pyhelpers.describe_exit(proc)
    proc = tsnap("verify", path, expect=0, timeout=LIMIT)
    assert proc.stdout.splitlines()[-1] == \
        f"{path}: OK (5 tensors, 48 B; 2 with no checksum, read through; 3 skipped)", proc.stdout
    listed = json.loads(tsnap("ls", "--json", path, timeout=LIMIT).stdout)
    rows = {t["name"]: t for t in listed["tensors"]}
    assert rows["plain"]["shape"] == [6] and "error" in rows["vl"], rows
    for name in ("vl", "heap", "strings"):
        proc = tsnap("info", path, name, timeout=LIMIT)
        assert proc.returncode == 1 and f"tensor '{name}': HDF5 " in proc.stderr, \
            pyhelpers.describe_exit(proc)

#!/usr/bin/env python3
"""Writes the golden HDF5 files that h5py (not tsnap) produces, for the
reverse interop direction: tsnap's C reader must read each of them as h5py
does, or refuse it with TSNAP_ETYPE naming the type.

Run once from the repository root; the outputs are committed:

    .venv/bin/python tests/data/make_golden.py

tests/python/test_h5py_written_in_c.py also calls build() at test time with a
fresh random generator, so the reader sees new data every run as well as the
committed files.  Files are written with h5py's default libver ('earliest')
except h5py_layouts_v110.h5, which is (v110, v110) as tsnap writes; both open
in HDF5 1.10.8 (h5dump from Debian's hdf5-tools).

golden.json records what the reader must report for each dataset:
  {"file": {"dataset": {"tsnap_dtype": NAME, "big_endian": BOOL,
                        "map": "OK" | "SCATTERED" | ... (when it is certain)}
   or {"refuse": "ETYPE", "words": [a word the message must contain, ...]}}}

h5py_lzf.h5 (h5py's LZF filter, id 32000) is not in golden.json: HDF5's own
tools cannot decode LZF without a plug-in, and every file golden.json lists
is dumped whole by h5dump.  Its datasets carry their expected values instead,
as the xxh3-64 of their C-order little-endian bytes in the string attribute
"expected_xxh3" (read by tests/c/test_lzf.c, which has no h5py to ask).
Name files to write only those, e.g. after changing write_lzf:

    .venv/bin/python tests/data/make_golden.py h5py_lzf.h5
"""
import json
import sys
from pathlib import Path

import h5py
import numpy as np
from h5py import h5d, h5p, h5s, h5t

HERE = Path(__file__).resolve().parent
SEED = 20261122

# ---------------------------------------------------------------------------
# Random values (never all zeros; floats include the special values)


def _values(rng, dtype, shape):
    dt = np.dtype(dtype)
    native = dt.newbyteorder("=")
    n = int(np.prod(shape))
    if dt.kind == "b":
        a = rng.integers(0, 2, n).astype(bool)
        if n:
            a[0] = True
    elif dt.kind in "iu":
        info = np.iinfo(native)
        a = rng.integers(info.min, info.max, n, dtype=native, endpoint=True)
        if n and not a.any():
            a[0] = 1
    elif dt.kind == "f":
        a = (rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3, n)).astype(native)
        specials = [np.nan, np.inf, -np.inf, -0.0, np.finfo(native).smallest_subnormal]
        for i, s in zip(rng.choice(n, min(n // 3, len(specials)), replace=False), specials):
            a[i] = s
    elif dt.kind == "c":
        part = native.type(0).real.dtype
        a = np.empty(n, native)
        a.real = _values(rng, part, (n,))
        a.imag = _values(rng, part, (n,))
    else:
        raise ValueError(dt)
    return a.reshape(shape).astype(dt)


def _raw_bits(rng, nbytes_per, shape):
    """Random raw bit patterns of a 1- or 2-byte custom type, never all 0."""
    dt = {1: np.uint8, 2: np.uint16}[nbytes_per]
    a = rng.integers(0, np.iinfo(dt).max, int(np.prod(shape)), dtype=dt, endpoint=True)
    if a.size:
        a[0] |= 1
    return a.reshape(shape)


def _create_lowlevel(parent, name, tid, shape, dcpl=None, maxshape=None):
    if shape == ():
        space = h5s.create(h5s.SCALAR)
    else:
        maxshape = tuple(h5s.UNLIMITED if m is None else m for m in (maxshape or shape))
        space = h5s.create_simple(shape, maxshape)
    if dcpl is None:
        dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_obj_track_times(False)  # no timestamps: the same bytes every run
    return h5d.create(parent.id, name.encode(), tid, space, dcpl=dcpl)


def _write_bits(dsid, bits, tid):
    """Writes raw bits of the file type itself: no conversion happens."""
    dsid.write(h5s.ALL, h5s.ALL, np.ascontiguousarray(bits), mtype=tid)


def _float_type(fields, size, ebias, order=h5t.ORDER_LE):
    t = h5t.IEEE_F32LE.copy()
    t.set_fields(*fields)
    t.set_size(size)
    t.set_ebias(ebias)
    t.set_order(order)
    return t


# ---------------------------------------------------------------------------
# The files

NAMES = {"?": "bool", "i1": "int8", "i2": "int16", "i4": "int32", "i8": "int64",
         "u1": "uint8", "u2": "uint16", "u4": "uint32", "u8": "uint64",
         "f2": "float16", "f4": "float32", "f8": "float64",
         "c8": "complex64", "c16": "complex128"}
SHAPES = [(17,), (3, 4, 5), (2, 3), (1,), (4, 1, 3, 2)]


def write_dtypes(path, rng):
    """Every NumPy dtype tsnap maps, native order, h5py's default layout."""
    exp = {}
    with h5py.File(path, "w") as f:
        for i, (code, name) in enumerate(NAMES.items()):
            shape = SHAPES[i % len(SHAPES)]
            f.create_dataset(name, data=_values(rng, "<" + code if code != "?" else "?", shape))
            exp[name] = {"tsnap_dtype": name, "big_endian": False, "map": "OK"}
    return exp


def write_bigendian(path, rng):
    """Big-endian variants: tsnap reads them as native values, unmapped."""
    exp = {}
    with h5py.File(path, "w") as f:
        for i, code in enumerate(["i2", "i4", "i8", "u2", "u4", "u8", "f2", "f4", "f8",
                                  "c8", "c16"]):
            shape = SHAPES[i % len(SHAPES)]
            f.create_dataset("be_" + code, data=_values(rng, ">" + code, shape))
            exp["be_" + code] = {"tsnap_dtype": NAMES[code], "big_endian": True,
                                 "map": "BYTE_ORDER"}
        # one big-endian dataset with storage compressed too
        f.create_dataset("be_f8_gzip", data=_values(rng, ">f8", (6, 5)), chunks=(2, 5),
                         compression="gzip")
        exp["be_f8_gzip"] = {"tsnap_dtype": "float64", "big_endian": True}
    return exp


def write_layouts(path, rng):
    """Contiguous, compact, chunked, filtered, nested, 0-d, empty, unwritten."""
    exp = {}
    with h5py.File(path, "w") as f:
        f.create_dataset("contiguous", data=_values(rng, "<f4", (6, 5)))
        exp["contiguous"] = {"tsnap_dtype": "float32", "map": "OK"}

        dcpl = h5p.create(h5p.DATASET_CREATE)
        dcpl.set_layout(h5d.COMPACT)
        _create_lowlevel(f, "compact", h5t.STD_I16LE, (4, 3), dcpl)
        f["compact"][...] = _values(rng, "<i2", (4, 3))
        exp["compact"] = {"tsnap_dtype": "int16", "map": "LAYOUT"}

        f.create_dataset("chunked_tiles", data=_values(rng, "<f8", (10, 7)), chunks=(3, 4))
        exp["chunked_tiles"] = {"tsnap_dtype": "float64"}

        f.create_dataset("gzip_shuffle", data=_values(rng, "<i4", (20, 9)), chunks=(5, 9),
                         compression="gzip", compression_opts=4, shuffle=True)
        exp["gzip_shuffle"] = {"tsnap_dtype": "int32", "map": "FILTERED"}

        f.create_dataset("gzip_bool", data=_values(rng, "?", (40,)), chunks=(16,),
                         compression="gzip")
        exp["gzip_bool"] = {"tsnap_dtype": "bool", "map": "FILTERED"}

        f.create_dataset("fletcher32", data=_values(rng, "<u2", (13,)), chunks=(4,),
                         fletcher32=True)
        exp["fletcher32"] = {"tsnap_dtype": "uint16", "map": "FILTERED"}

        f.create_dataset("resizable", data=_values(rng, "<f4", (8, 3)), chunks=(2, 3),
                         maxshape=(None, 3))
        exp["resizable"] = {"tsnap_dtype": "float32"}

        f.create_dataset("g1/g2/g3/deep", data=_values(rng, "<i8", (3,)))
        exp["g1/g2/g3/deep"] = {"tsnap_dtype": "int64", "map": "OK"}
        f.create_dataset("g1/sibling", data=_values(rng, "u1", (2,)))
        exp["g1/sibling"] = {"tsnap_dtype": "uint8", "map": "OK"}

        f.create_dataset("scalar_f8", data=_values(rng, "<f8", ()))
        exp["scalar_f8"] = {"tsnap_dtype": "float64", "map": "OK"}
        f.create_dataset("scalar_bool", data=np.bool_(True))
        exp["scalar_bool"] = {"tsnap_dtype": "bool", "map": "OK"}
        f.create_dataset("scalar_c16", data=_values(rng, "<c16", ()))
        exp["scalar_c16"] = {"tsnap_dtype": "complex128", "map": "OK"}

        f.create_dataset("empty", shape=(0,), dtype="<f4")
        exp["empty"] = {"tsnap_dtype": "float32", "map": "EMPTY"}
        f.create_dataset("empty3d", shape=(2, 0, 3), dtype="<i2")
        exp["empty3d"] = {"tsnap_dtype": "int16", "map": "EMPTY"}
        f.create_dataset("empty_chunked", shape=(0, 4), dtype="<f8", chunks=(2, 4),
                         maxshape=(None, 4))
        exp["empty_chunked"] = {"tsnap_dtype": "float64", "map": "EMPTY"}

        # never written: reads as the fill value, cannot be mapped
        f.create_dataset("unwritten_contiguous", shape=(4,), dtype="<f8")
        exp["unwritten_contiguous"] = {"tsnap_dtype": "float64", "map": "NOT_ALLOCATED"}
        f.create_dataset("unwritten_chunked", shape=(5,), dtype="<i4", chunks=(2,),
                         fillvalue=7)
        exp["unwritten_chunked"] = {"tsnap_dtype": "int32", "map": "NOT_ALLOCATED"}
        ds = f.create_dataset("half_written", shape=(6,), dtype="<u4", chunks=(3,),
                              fillvalue=9)
        ds[:3] = _values(rng, "<u4", (3,))
        exp["half_written"] = {"tsnap_dtype": "uint32", "map": "NOT_ALLOCATED"}
    return exp


def write_layouts_v110(path, rng):
    """Chunked datasets as tsnap lays them out (v110 bounds, fixed maximum
    dimensions, early allocation): the reader must find the flat ones flat
    from the chunk addresses, and the others not."""
    exp = {}
    with h5py.File(path, "w", libver=("v110", "v110")) as f:
        def chunked(name, dtype, shape, chunk, early=True, maxshape=None):
            dcpl = h5p.create(h5p.DATASET_CREATE)
            dcpl.set_chunk(chunk)
            if early:
                dcpl.set_alloc_time(h5d.ALLOC_TIME_EARLY)
                dcpl.set_fill_time(h5d.FILL_TIME_NEVER)
            tid = h5t.py_create(np.dtype(dtype), logical=True)
            _create_lowlevel(f, name, tid, shape, dcpl, maxshape)
            f[name][...] = _values(rng, dtype, shape)

        chunked("slabs", "<f4", (12, 5), (4, 5))
        exp["slabs"] = {"tsnap_dtype": "float32", "map": "OK"}
        chunked("slabs_edge_last", "<i2", (10, 3), (4, 3))
        exp["slabs_edge_last"] = {"tsnap_dtype": "int16", "map": "OK"}
        chunked("slabs_edge_middle", "<f8", (3, 5, 4), (1, 2, 4))
        exp["slabs_edge_middle"] = {"tsnap_dtype": "float64", "map": "SCATTERED"}
        chunked("tiles", "<u2", (6, 6), (3, 3))
        exp["tiles"] = {"tsnap_dtype": "uint16", "map": "SCATTERED"}
        chunked("slabs_incremental", "<f4", (12, 5), (4, 5), early=False)
        exp["slabs_incremental"] = {"tsnap_dtype": "float32"}
        chunked("slabs_unlimited", "<i8", (16, 2), (2, 2), early=True, maxshape=(None, 2))
        exp["slabs_unlimited"] = {"tsnap_dtype": "int64"}
        chunked("bool_slabs", "?", (9, 4), (3, 4))
        exp["bool_slabs"] = {"tsnap_dtype": "bool", "map": "OK"}
        chunked("c8_slabs", "<c8", (6, 2), (2, 2))
        exp["c8_slabs"] = {"tsnap_dtype": "complex64", "map": "OK"}

        dcpl = h5p.create(h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5d.ALLOC_TIME_EARLY)
        _create_lowlevel(f, "contiguous_early", h5t.IEEE_F64LE, (9,), dcpl)
        f["contiguous_early"][...] = _values(rng, "<f8", (9,))
        exp["contiguous_early"] = {"tsnap_dtype": "float64", "map": "OK"}
    return exp


def write_special(path, rng):
    """The non-NumPy types of the format, built with h5py's low-level API:
    bfloat16 and float8_e5m2 custom floats, float16 built as the C library
    builds it, complex32 both as an {r, i} compound and as float16 pairs,
    float8_e4m3fn as uint8 tagged by tsnap_dtype, bool over a uint8 enum."""
    exp = {}
    with h5py.File(path, "w") as f:
        bf16 = _float_type((15, 7, 8, 0, 7), 2, 127)
        d = _create_lowlevel(f, "bfloat16", bf16, (7, 3))
        _write_bits(d, _raw_bits(rng, 2, (7, 3)), bf16)
        exp["bfloat16"] = {"tsnap_dtype": "bfloat16", "map": "OK"}

        bf16be = _float_type((15, 7, 8, 0, 7), 2, 127, h5t.ORDER_BE)
        d = _create_lowlevel(f, "bfloat16_be", bf16be, (5,))
        _write_bits(d, _raw_bits(rng, 2, (5,)).astype(">u2"), bf16be)
        exp["bfloat16_be"] = {"tsnap_dtype": "bfloat16", "big_endian": True,
                              "map": "BYTE_ORDER"}

        e5m2 = _float_type((7, 2, 5, 0, 2), 1, 15)
        d = _create_lowlevel(f, "float8_e5m2", e5m2, (4, 4))
        _write_bits(d, _raw_bits(rng, 1, (4, 4)), e5m2)
        exp["float8_e5m2"] = {"tsnap_dtype": "float8_e5m2", "map": "OK"}

        f16 = _float_type((15, 10, 5, 0, 10), 2, 15)
        d = _create_lowlevel(f, "float16_custom", f16, (6,))
        _write_bits(d, _raw_bits(rng, 2, (6,)), f16)
        exp["float16_custom"] = {"tsnap_dtype": "float16", "map": "OK"}

        c32 = np.empty((5,), [("r", "<f2"), ("i", "<f2")])
        c32["r"] = _values(rng, "<f2", (5,))
        c32["i"] = _values(rng, "<f2", (5,))
        f.create_dataset("complex32_compound", data=c32)
        exp["complex32_compound"] = {"tsnap_dtype": "complex32"}

        ds = f.create_dataset("complex32_pairs", data=_values(rng, "<f2", (3, 4, 2)))
        ds.attrs["tsnap_dtype"] = "complex32"
        exp["complex32_pairs"] = {"tsnap_dtype": "complex32", "map": "OK"}

        ds = f.create_dataset("float8_e4m3fn", data=_raw_bits(rng, 1, (9,)))
        ds.attrs["tsnap_dtype"] = "float8_e4m3fn"
        exp["float8_e4m3fn"] = {"tsnap_dtype": "float8_e4m3fn", "map": "OK"}

        ds = f.create_dataset("uint8_untagged", data=_raw_bits(rng, 1, (9,)))
        exp["uint8_untagged"] = {"tsnap_dtype": "uint8", "map": "OK"}

        ubool = h5t.enum_create(h5t.STD_U8LE)
        ubool.enum_insert(b"FALSE", 0)
        ubool.enum_insert(b"TRUE", 1)
        d = _create_lowlevel(f, "bool_over_uint8", ubool, (6,))
        bits = rng.integers(0, 2, 6).astype(np.uint8)
        bits[0] = 1
        _write_bits(d, bits, ubool)
        exp["bool_over_uint8"] = {"tsnap_dtype": "bool"}

        swapped = np.empty((4,), [("i", "<f4"), ("r", "<f4")])
        swapped["r"] = _values(rng, "<f4", (4,))
        swapped["i"] = _values(rng, "<f4", (4,))
        f.create_dataset("complex64_members_swapped", data=swapped)
        exp["complex64_members_swapped"] = {"tsnap_dtype": "complex64", "map": "TYPE"}

        padded = np.zeros((3,), np.dtype({"names": ["r", "i"], "formats": ["<f4", "<f4"],
                                           "offsets": [0, 8], "itemsize": 16}))
        padded["r"] = _values(rng, "<f4", (3,))
        padded["i"] = _values(rng, "<f4", (3,))
        f.create_dataset("complex64_padded", data=padded)
        exp["complex64_padded"] = {"tsnap_dtype": "complex64", "map": "TYPE"}

        bebool = h5t.enum_create(h5t.STD_I16BE)
        bebool.enum_insert(b"FALSE", 0)
        bebool.enum_insert(b"TRUE", 1)
        d = _create_lowlevel(f, "bool_over_int16_be", bebool, (5,))
        bits = rng.integers(0, 2, 5).astype(">i2")
        bits[0] = 1
        _write_bits(d, bits, bebool)
        exp["bool_over_int16_be"] = {"tsnap_dtype": "bool", "big_endian": True}

        ds = f.create_dataset("tagged_bool", data=_values(rng, "?", (4,)))
        ds.attrs["tsnap_dtype"] = "bool"
        exp["tagged_bool"] = {"tsnap_dtype": "bool", "map": "OK"}
    return exp


def write_refused(path, rng):
    """Datasets whose types tsnap cannot represent, beside some it can."""
    exp = {}
    with h5py.File(path, "w") as f:
        f.create_dataset("ok", data=_values(rng, "<f4", (3,)))
        exp["ok"] = {"tsnap_dtype": "float32"}

        f.create_dataset("string_vlen", data=np.array(["a", "bc"], dtype=h5py.string_dtype()))
        exp["string_vlen"] = {"refuse": "ETYPE", "words": ["string"]}
        f.create_dataset("string_fixed", data=np.array([b"abc", b"de"], dtype="S4"))
        exp["string_fixed"] = {"refuse": "ETYPE", "words": ["string"]}
        ld = np.array([1.0, -2.5], np.longdouble)
        if ld.dtype.itemsize == 16:  # x86-64: 80 bits in 16 bytes; zero the padding
            ld.view(np.uint8).reshape(2, 16)[:, 10:] = 0
        f.create_dataset("longdouble", data=ld)
        exp["longdouble"] = {"refuse": "ETYPE", "words": ["float"]}
        f.create_dataset("struct", data=np.zeros(2, [("a", "<i4"), ("b", "<f8")]))
        exp["struct"] = {"refuse": "ETYPE", "words": ["compound"]}
        f.create_dataset("complex_real_imag",
                         data=np.zeros(2, [("real", "<f8"), ("imag", "<f8")]))
        exp["complex_real_imag"] = {"refuse": "ETYPE", "words": ["compound"]}
        f.create_dataset("complex_mixed", data=np.zeros(2, [("r", "<f4"), ("i", "<f8")]))
        exp["complex_mixed"] = {"refuse": "ETYPE", "words": ["compound"]}
        f.create_dataset("complex_int", data=np.zeros(2, [("r", "<i4"), ("i", "<i4")]))
        exp["complex_int"] = {"refuse": "ETYPE", "words": ["compound"]}
        f.create_dataset("enum_colour", data=np.array([0, 2], np.uint8),
                         dtype=h5py.enum_dtype({"RED": 0, "GREEN": 1, "BLUE": 2}, np.uint8))
        exp["enum_colour"] = {"tsnap_dtype": "uint8"}  # an enum loads as its integer type
        f.create_dataset("enum_lowercase_bool", data=np.array([0, 1], np.int8),
                         dtype=h5py.enum_dtype({"false": 0, "true": 1}, np.int8))
        exp["enum_lowercase_bool"] = {"tsnap_dtype": "int8"}  # not h5py's bool: int8
        f.create_dataset("opaque", data=np.zeros(3, "V2"))
        exp["opaque"] = {"refuse": "ETYPE", "words": ["opaque"]}
        seqs = np.empty(2, object)
        seqs[0], seqs[1] = np.arange(3, dtype=np.int32), np.arange(1, dtype=np.int32)
        f.create_dataset("vlen_ints", data=seqs, dtype=h5py.vlen_dtype(np.int32))
        exp["vlen_ints"] = {"refuse": "ETYPE", "words": ["vlen", "variable", "sequence"]}
        at = h5t.array_create(h5t.STD_I32LE, (3,))
        d = _create_lowlevel(f, "array_type", at, (2,))
        d.write(h5s.ALL, h5s.ALL, np.arange(6, dtype="<i4"), mtype=at)
        exp["array_type"] = {"refuse": "ETYPE", "words": ["array"]}
        odd = _float_type((23, 16, 7, 0, 16), 3, 63)
        d = _create_lowlevel(f, "float24", odd, (2,))
        d.write(h5s.ALL, h5s.ALL, np.array([1, 2, 3, 4, 5, 6], np.uint8), mtype=odd)
        exp["float24"] = {"refuse": "ETYPE", "words": ["float"]}
        e4m3 = _float_type((7, 3, 4, 0, 3), 1, 7)
        d = _create_lowlevel(f, "float8_e4m3_as_hdf5_float", e4m3, (2,))
        _write_bits(d, np.array([0x38, 0x40], np.uint8), e4m3)
        exp["float8_e4m3_as_hdf5_float"] = {"refuse": "ETYPE", "words": ["float"]}
    return exp


def write_userblock(path, rng):
    """A 512-byte userblock before the superblock.  HDF5 before 1.14.4
    (Debian's 1.10.8) reports chunk addresses without it while
    H5Dget_offset includes it; a reader that maps must add it."""
    exp = {}
    with h5py.File(path, "w", libver=("v110", "v110"), userblock_size=512) as f:
        dcpl = h5p.create(h5p.DATASET_CREATE)
        dcpl.set_chunk((3, 4))
        dcpl.set_alloc_time(h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5d.FILL_TIME_NEVER)
        _create_lowlevel(f, "chunked", h5t.IEEE_F32LE, (9, 4), dcpl)
        f["chunked"][...] = _values(rng, "<f4", (9, 4))
        exp["chunked"] = {"tsnap_dtype": "float32", "map": "OK"}
        f.create_dataset("contiguous", data=_values(rng, "<i8", (5,)))
        exp["contiguous"] = {"tsnap_dtype": "int64", "map": "OK"}
    with open(path, "r+b") as fh:
        fh.write(b"a userblock that is not HDF5\n")
    return exp


def write_links(path, rng):
    """Links: a dataset with a second hard link, soft links (one dangling,
    one looping), an external link to a missing file, a hard-link cycle.
    A reader lists each dataset object once, as H5Ovisit (and h5py's
    visititems) finds it, follows no soft or external link, and opens."""
    exp = {}
    with h5py.File(path, "w") as f:
        f["a/x"] = _values(rng, "<i8", (3,))
        exp["a/x"] = {"tsnap_dtype": "int64", "map": "OK"}
        f["alias"] = f["a/x"]
        f["soft"] = h5py.SoftLink("/a/x")
        f["dangling"] = h5py.SoftLink("/nowhere")
        f["ext"] = h5py.ExternalLink("missing.h5", "/y")
        f["g/loop"] = h5py.SoftLink("/g")
        f.create_group("h")
        f["h/up"] = f["h"]
        f["h/y"] = _values(rng, "<f4", (2, 2))
        exp["h/y"] = {"tsnap_dtype": "float32", "map": "OK"}
    return exp


def _lzf_dataset(f, name, data, chunks, shuffle=False, raw=None):
    """An LZF dataset holding `data`, tagged with the xxh3-64 of its bytes.
    raw: whether some chunk must have been stored unfiltered (h5py marks
    LZF optional, so a chunk LZF cannot shrink is kept as is, its filter
    mask bit set), or must not have been; None: either."""
    import xxhash

    ds = f.create_dataset(name, data=data, chunks=chunks, compression="lzf", shuffle=shuffle)
    raw_bytes = np.ascontiguousarray(data).tobytes()
    ds.attrs["expected_xxh3"] = "xxh3-64:%016x" % xxhash.xxh3_64_intdigest(raw_bytes, seed=0)
    masks = [ds.id.get_chunk_info(i).filter_mask for i in range(ds.id.get_num_chunks())]
    lzf_bit = 1 << (1 if shuffle else 0)  # the filter's index in the pipeline
    if raw is not None:
        assert any(m & lzf_bit for m in masks) == raw, (name, masks)
    if not raw:
        assert any(not m & lzf_bit for m in masks), f"{name}: no chunk was compressed"
    return {"tsnap_dtype": NAMES[data.dtype.str.lstrip("<|")], "shape": list(data.shape),
            "chunks": list(chunks), "shuffle": shuffle, "map": "FILTERED"}


def write_lzf(path, rng):
    """h5py's LZF filter: random, shuffled, smooth, incompressible (chunks
    stored raw), edge-chunk (prime) and one-element datasets, and one that
    tests/c/test_lzf.c overwrites with crafted chunks (H5Dwrite_chunk)."""
    exp = {}
    with h5py.File(path, "w") as f:
        # random values on a coarse grid (a byte-level match is likely), with
        # NaN, infinities and -0.0 among them
        a = (np.round(rng.standard_normal((61, 47)) * 4) / 4).astype("<f4")
        a.flat[rng.choice(a.size, 4, replace=False)] = [np.nan, np.inf, -np.inf, -0.0]
        exp["float32_random"] = _lzf_dataset(f, "float32_random", a, (16, 16), raw=False)

        exp["int16_shuffle"] = _lzf_dataset(
            f, "int16_shuffle", rng.integers(-300, 300, (50, 40)).astype("<i2"), (10, 40),
            shuffle=True, raw=False)

        y, x = np.mgrid[0:64, 0:64]
        smooth = np.round(np.sin(x / 9.0 + rng.uniform(0, 6)) * np.cos(y / 7.0) * 64) / 64
        exp["float32_smooth"] = _lzf_dataset(f, "float32_smooth", smooth.astype("<f4"),
                                             (32, 32), raw=False)

        # row 0 compresses, rows 1 and 2 are random bytes: chunks of both kinds
        mixed = rng.integers(0, 256, (3, 2048), dtype=np.uint8)
        mixed[0] = np.frombuffer(b"incompressible? not this row. " * 69, np.uint8)[:2048]
        exp["uint8_incompressible"] = _lzf_dataset(f, "uint8_incompressible", mixed, (1, 2048),
                                                   raw=True)

        exp["int32_primes"] = _lzf_dataset(
            f, "int32_primes", rng.integers(0, 50, (7, 11, 13)).astype("<i4"), (3, 5, 7),
            raw=False)

        exp["uint8"] = _lzf_dataset(f, "uint8", rng.integers(0, 4, 1000, dtype=np.uint8),
                                    (128,), raw=False)

        exp["float64_one"] = _lzf_dataset(f, "float64_one", _values(rng, "<f8", (1,)), (1,),
                                          raw=True)

        text = np.frombuffer(b"tsnap reads lzf. " * 16, np.uint8)[:256].reshape(4, 64)
        exp["crafted"] = _lzf_dataset(f, "crafted", text.copy(), (1, 64), raw=False)
    return exp


LZF_BUILDERS = {"h5py_lzf.h5": write_lzf}
LZF_SEED = [SEED, 32000]


BUILDERS = {
    "h5py_dtypes.h5": write_dtypes,
    "h5py_bigendian.h5": write_bigendian,
    "h5py_layouts.h5": write_layouts,
    "h5py_layouts_v110.h5": write_layouts_v110,
    "h5py_special.h5": write_special,
    "h5py_refused.h5": write_refused,
    "h5py_userblock.h5": write_userblock,
    "h5py_links.h5": write_links,
}


def build(outdir, rng):
    """Writes every golden file into outdir; returns the expectations."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    return {name: fn(outdir / name, rng) for name, fn in BUILDERS.items()}


def main(argv):
    """No arguments: every file.  File names: only those, each written
    exactly as a full run writes it (a golden.json file then rewrites
    golden.json from a full build in a scratch directory)."""
    import tempfile

    wanted = set(argv) or set(BUILDERS) | set(LZF_BUILDERS)
    unknown = wanted - set(BUILDERS) - set(LZF_BUILDERS)
    if unknown:
        print(f"unknown file(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if wanted & set(BUILDERS):
        # the BUILDERS share one generator, so any of them is built with all
        with tempfile.TemporaryDirectory() as tmp:
            exp = build(tmp, np.random.default_rng(SEED))
            for name in sorted(wanted & set(BUILDERS)):
                (HERE / name).write_bytes((Path(tmp) / name).read_bytes())
        (HERE / "golden.json").write_text(json.dumps(exp, indent=1, sort_keys=True) + "\n")
    for name in sorted(wanted & set(LZF_BUILDERS)):
        LZF_BUILDERS[name](HERE / name, np.random.default_rng(LZF_SEED))
    total = 0
    for name in sorted(wanted):
        size = (HERE / name).stat().st_size
        total += size
        print(f"{name}: {size} bytes")
    print(f"total {total} bytes (h5py {h5py.version.version}, HDF5 {h5py.version.hdf5_version})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

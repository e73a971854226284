"""Snapshots written by the C library, read with h5py and NumPy as oracles,
and read back by the C reader (through tsnap_testio)."""
import datetime
import math
import os
import re

import h5py
import hdf5plugin  # noqa: F401  (registers zstd and lz4 with h5py's HDF5, as a user would)
import ml_dtypes
import numpy as np
import pytest
from h5py import h5d, h5s, h5t, h5z

import oracle
from conftest import VARIANTS

TENSOR_VARIANTS = list(VARIANTS)
UNFILTERED = [v for v in TENSOR_VARIANTS if v.startswith("plain")]
# The filter each codec writes, and its one parameter when no level is given
# (zstd's -1 as the unsigned 32-bit value).
CODEC_FILTERS = {"deflate": (h5z.FILTER_DEFLATE, 1), "zstd": (32015, 2**32 - 1), "lz4": (32004, 0)}
# The shuffle each codec gets by default: bit shuffle (the bitshuffle filter)
# before zstd, HDF5's byte shuffle before the others.
BITSHUFFLE = 32008
SHUFFLE_FILTERS = {"deflate": h5z.FILTER_SHUFFLE, "zstd": BITSHUFFLE, "lz4": h5z.FILTER_SHUFFLE}
ALL = [(v, d, c) for v in TENSOR_VARIANTS for d in oracle.DTYPE_NAMES for c in oracle.CASES]


def _ids(p):
    return "-".join(p)


def _chunk_bytes(snap):
    return snap.expected["file"]["chunk_bytes"]


def _rule_chunk(dtype, shape, chunk_bytes, unfiltered):
    """The chunk the format's rule gives, in the dataset's own dimensions."""
    size = oracle.DTYPES[dtype][0]
    chunk = oracle.chunk_rule(tuple(shape), size, chunk_bytes, unfiltered)
    return chunk + ((2,) if dtype == "complex32" else ())


def _chunks_in_logical_order(shape, chunk):
    """True if every chunk of a grid, in index order, starts at chunk index x
    elements per chunk: the case where back-to-back chunks lie flat."""
    grid = [math.ceil(s / c) for s, c in zip(shape, chunk)]
    per = math.prod(chunk)
    for i, coord in enumerate(np.ndindex(*grid)):
        start = [c * k for c, k in zip(coord, chunk)]
        if int(np.ravel_multi_index(start, shape)) != i * per:
            return False
    return True


def test_the_helper_wrote_every_dtype_in_every_shape_case(c_snapshot):
    snap = c_snapshot("plain")
    names = {n for n, r in snap.expected["tensors"].items() if r["case"] != "name"}
    assert names == {f"{d}/{c}" for d in oracle.DTYPE_NAMES for c in oracle.CASES}
    # the data is random and never all zeros
    for name, rec in snap.expected["tensors"].items():
        raw = snap.raw(name)
        if raw:
            assert any(raw), f"{name} is all zeros"


@pytest.mark.parametrize("variant,dtype,case", ALL, ids=[_ids(p) for p in ALL])
def test_h5py_reads_each_tensor_with_the_documented_numpy_dtype_and_the_same_values(
        c_snapshot, h5files, variant, dtype, case):
    snap = c_snapshot(variant)
    rec = snap.expected["tensors"][f"{dtype}/{case}"]
    raw = snap.raw(rec["name"])
    ds = h5files(snap.path)[rec["name"]]
    got = np.asarray(ds[()])
    want = oracle.expected_h5py_array(dtype, raw, rec["shape"])
    assert got.dtype == oracle.DTYPES[dtype][1]
    assert ds.shape == oracle.file_shape(dtype, rec["shape"])
    oracle.assert_same_values(got, want, rec["name"])
    if dtype == "bool":
        assert set(raw) <= {0, 1}, "the test's oracle must hold normalised bools"


@pytest.mark.parametrize("variant,dtype,case", ALL, ids=[_ids(p) for p in ALL])
def test_each_dataset_carries_its_dtype_name_and_the_xxh3_checksum_of_its_logical_bytes(
        c_snapshot, h5files, variant, dtype, case):
    snap = c_snapshot(variant)
    name = f"{dtype}/{case}"
    ds = h5files(snap.path)[name]
    assert oracle.is_vlen_utf8_scalar(ds.attrs, "tsnap_dtype")
    assert ds.attrs["tsnap_dtype"] == dtype
    assert oracle.is_vlen_utf8_scalar(ds.attrs, "tsnap_checksum")
    assert re.fullmatch(r"xxh3-64:[0-9a-f]{16}", ds.attrs["tsnap_checksum"])
    assert ds.attrs["tsnap_checksum"] == oracle.checksum(snap.raw(name))


@pytest.mark.parametrize("dtype", oracle.DTYPE_NAMES)
def test_a_snapshot_written_without_checksums_has_no_checksum_attribute(
        c_snapshot, h5files, dtype):
    snap = c_snapshot("plain-no-checksum")
    f = h5files(snap.path)
    manifest, _ = snap.read
    for case in oracle.CASES:
        ds = f[f"{dtype}/{case}"]
        assert "tsnap_checksum" not in ds.attrs
        assert ds.attrs["tsnap_dtype"] == dtype
        rec = manifest["tensors"][f"{dtype}/{case}"]
        assert rec["checksum"] == ""
        assert "verify_error" not in rec, "a tensor without a checksum passes verify"


@pytest.mark.parametrize("variant,dtype,case", ALL, ids=[_ids(p) for p in ALL])
def test_each_dataset_has_the_exact_hdf5_type_the_format_defines(
        c_snapshot, h5files, variant, dtype, case):
    ds = h5files(c_snapshot(variant).path)[f"{dtype}/{case}"]
    stored = ds.id.get_type()
    want = oracle.canonical_type(dtype)
    assert stored == want, (f"stored class {stored.get_class()} size {stored.get_size()}, "
                            f"expected class {want.get_class()} size {want.get_size()}")
    if stored.get_class() == h5t.FLOAT:
        assert stored.get_order() == h5t.ORDER_LE
        assert stored.get_norm() == h5t.NORM_IMPLIED
        assert stored.get_offset() == 0
        assert stored.get_precision() == 8 * stored.get_size()


@pytest.mark.parametrize("variant,dtype,case", ALL, ids=[_ids(p) for p in ALL])
def test_each_dataset_has_the_layout_of_the_format(c_snapshot, h5files, variant, dtype, case):
    snap = c_snapshot(variant)
    rec = snap.expected["tensors"][f"{dtype}/{case}"]
    ds = h5files(snap.path)[rec["name"]]
    dcpl = ds.id.get_create_plist()
    shape = tuple(rec["shape"])
    filtered = snap.expected["file"]["codec"] != "none"
    if len(shape) == 0 or math.prod(shape) == 0:
        # 0-d and empty tensors: contiguous; 0-d allocated early
        assert dcpl.get_layout() == h5d.CONTIGUOUS
        assert dcpl.get_nfilters() == 0
        if len(shape) == 0:
            if dtype != "complex32":
                assert ds.id.get_space().get_simple_extent_type() == h5s.SCALAR
            assert dcpl.get_alloc_time() == h5d.ALLOC_TIME_EARLY
            assert ds.id.get_offset() is not None
        else:
            assert ds.id.get_space().get_simple_extent_type() == h5s.SIMPLE
        return
    assert dcpl.get_layout() == h5d.CHUNKED
    assert ds.maxshape == ds.shape, "maximum dimensions are fixed"
    assert dcpl.get_chunk() == _rule_chunk(dtype, shape, _chunk_bytes(snap), not filtered)
    if not filtered:
        assert dcpl.get_nfilters() == 0
        assert dcpl.get_alloc_time() == h5d.ALLOC_TIME_EARLY
        assert dcpl.get_fill_time() == h5d.FILL_TIME_NEVER
    else:
        filters = [dcpl.get_filter(i) for i in range(dcpl.get_nfilters())]
        ids = [f[0] for f in filters]
        element = ds.id.get_type().get_size()
        codec_id, default = CODEC_FILTERS[snap.expected["file"]["codec"]]
        shuffle_id = SHUFFLE_FILTERS[snap.expected["file"]["codec"]]
        assert ids == ([shuffle_id, codec_id] if element > 1 else [codec_id])
        level = snap.expected["file"]["level"] or default
        assert filters[-1][2] == (level,), "the level (lz4: the block size) is its one parameter"
        assert dcpl.get_alloc_time() == h5d.ALLOC_TIME_INCR


@pytest.mark.parametrize("variant,dtype,case",
                         [p for p in ALL if p[0] in UNFILTERED],
                         ids=[_ids(p) for p in ALL if p[0] in UNFILTERED])
def test_an_uncompressed_tensor_lies_flat_in_the_file_when_its_chunks_are_in_logical_order(
        c_snapshot, h5files, variant, dtype, case):
    snap = c_snapshot(variant)
    rec = snap.expected["tensors"][f"{dtype}/{case}"]
    ds = h5files(snap.path)[rec["name"]]
    raw = snap.raw(rec["name"])
    offset = oracle.flat_offset(ds)
    if ds.size == 0:
        return
    if ds.chunks is None:
        assert offset is not None, "a 0-d tensor is allocated contiguous storage"
    else:
        assert (offset is not None) == _chunks_in_logical_order(ds.shape, ds.chunks), (
            f"chunks {ds.chunks} of {ds.shape}: back to back with early allocation "
            "they lie flat exactly when they are in logical order")
    if offset is not None:
        with open(snap.path, "rb") as f:
            f.seek(offset)
            assert f.read(len(raw)) == raw


@pytest.mark.parametrize("variant,dtype,case", ALL, ids=[_ids(p) for p in ALL])
def test_the_c_reader_reads_back_the_bytes_that_were_written(
        c_snapshot, h5files, variant, dtype, case):
    snap = c_snapshot(variant)
    name = f"{dtype}/{case}"
    manifest, rdir = snap.read
    rec = manifest["tensors"][name]
    assert "error" not in rec, rec.get("error")
    assert "read_error" not in rec, rec.get("read_error")
    assert rec["dtype"] == dtype
    assert rec["shape"] == snap.expected["tensors"][name]["shape"]
    raw = snap.raw(name)
    assert oracle.tensor_bytes(rdir, rec) == raw
    assert rec["nbytes"] == len(raw)
    assert "verify_error" not in rec, rec.get("verify_error")
    assert rec["checksum"] == oracle.checksum(raw)
    if rec["shape"] and len(raw):
        assert rec.get("slab") == "ok", "a strided hyperslab read equals the whole read"
    assert rec["big_endian"] == 0


@pytest.mark.parametrize("variant,dtype,case", ALL, ids=[_ids(p) for p in ALL])
def test_the_c_reader_says_a_tensor_is_mappable_exactly_when_its_bytes_lie_flat(
        c_snapshot, h5files, variant, dtype, case):
    snap = c_snapshot(variant)
    name = f"{dtype}/{case}"
    manifest, _ = snap.read
    rec = manifest["tensors"][name]
    ds = h5files(snap.path)[name]
    raw = snap.raw(name)
    filtered = ds.id.get_create_plist().get_nfilters() > 0
    offset = oracle.flat_offset(ds)
    if len(raw) == 0:
        assert rec["map_status"] == oracle.MAP_EMPTY, rec["map_status_str"]
        assert rec["length"] == 0
    elif filtered:
        assert rec["map_status"] == oracle.MAP_FILTERED, rec["map_status_str"]
    elif offset is not None:
        assert rec["map_status"] == oracle.MAP_OK, rec["map_status_str"]
        assert (rec["offset"], rec["length"]) == (offset, len(raw))
    else:
        assert rec["map_status"] == oracle.MAP_SCATTERED, rec["map_status_str"]
    if rec["map_status"] in (oracle.MAP_OK, oracle.MAP_EMPTY):
        assert rec.get("map") == "ok", rec.get("map_error")
    else:
        assert rec.get("map_error", {}).get("code") == oracle.ENOTMAPPABLE


@pytest.mark.parametrize("variant,dtype,case", ALL, ids=[_ids(p) for p in ALL])
def test_the_c_reader_describes_the_chunks_and_filters_that_h5py_sees(
        c_snapshot, h5files, variant, dtype, case):
    snap = c_snapshot(variant)
    name = f"{dtype}/{case}"
    rec = snap.read[0]["tensors"][name]
    ds = h5files(snap.path)[name]
    dcpl = ds.id.get_create_plist()
    assert rec["chunked"] == int(ds.chunks is not None)
    if ds.chunks is not None:
        chunk = ds.chunks[:-1] if dtype == "complex32" else ds.chunks
        assert tuple(rec["chunk"]) == tuple(chunk)
    filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
    assert rec["filters"] == filters
    named = {fid: codec for codec, (fid, _) in CODEC_FILTERS.items()}
    assert rec["codec"] == next((named[f] for f in filters if f in named), "none")
    assert rec["shuffle"] == (1 if h5z.FILTER_SHUFFLE in filters else
                              2 if BITSHUFFLE in filters else 0)


# ---------------------------------------------------------------------------
# Attributes

@pytest.mark.parametrize("variant", ["plain", "deflate"])
def test_the_root_carries_the_format_attributes_with_their_exact_types(
        c_snapshot, h5files, variant):
    f = h5files(c_snapshot(variant).path)
    a = f.attrs
    assert oracle.is_vlen_utf8_scalar(a, "tsnap_format") and a["tsnap_format"] == "tsnap"
    vid = a.get_id("tsnap_version")
    assert vid.shape == () and vid.get_type() == h5t.STD_I64LE
    assert isinstance(a["tsnap_version"], np.int64) and a["tsnap_version"] == 1
    assert oracle.is_vlen_utf8_scalar(a, "created")
    created = a["created"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", created), created
    when = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - when).total_seconds()) < 24 * 3600, "created is UTC"
    assert oracle.is_vlen_utf8_scalar(a, "producer") and a["producer"] == "tsnap 0.1.0"


@pytest.mark.parametrize("variant", ["plain", "deflate"])
def test_step_and_time_read_in_h5py_as_int64_and_float64_scalars(c_snapshot, h5files, variant):
    snap = c_snapshot(variant)
    a = h5files(snap.path).attrs
    want = {r["key"]: r for r in snap.expected["attrs"] if r["on"] == ""}
    assert a.get_id("step").get_type() == h5t.STD_I64LE and a.get_id("step").shape == ()
    assert a.get_id("time").get_type() == h5t.IEEE_F64LE and a.get_id("time").shape == ()
    assert isinstance(a["step"], np.int64)
    assert isinstance(a["time"], np.float64)
    assert a["step"] == np.frombuffer(bytes.fromhex(want["step"]["hex"]), "<i8")[0]
    assert a["time"] == np.frombuffer(bytes.fromhex(want["time"]["hex"]), "<f8")[0]


@pytest.mark.parametrize("variant", ["plain", "deflate-small-chunks"])
def test_user_attributes_read_in_h5py_with_their_types_and_values(c_snapshot, h5files, variant):
    snap = c_snapshot(variant)
    f = h5files(snap.path)
    assert snap.expected["attrs"], "the helper sets attributes"
    for r in snap.expected["attrs"]:
        obj = f[r["on"]] if r["on"] else f
        what = f"{r['on'] or '/'}@{r['key']}"
        assert r["key"] in obj.attrs, what
        got = obj.attrs[r["key"]]
        if r["dtype"] == "string":
            assert oracle.is_vlen_utf8_scalar(obj.attrs, r["key"]), what
            assert isinstance(got, str) and got == r["value"], what
            continue
        aid = obj.attrs.get_id(r["key"])
        assert aid.get_type() == oracle.canonical_type(r["dtype"]), what
        want = oracle.expected_h5py_array(r["dtype"], bytes.fromhex(r["hex"]), r["shape"])
        got = np.asarray(got)
        if not r["shape"] and r["dtype"] != "complex32":
            assert aid.shape == (), f"{what} is a scalar"
            assert np.isscalar(obj.attrs[r["key"]]) or got.shape == (), what
        oracle.assert_same_values(got, want, what)


@pytest.mark.parametrize("variant", ["plain", "deflate"])
def test_the_c_reader_lists_the_attributes_that_were_written(c_snapshot, variant):
    snap = c_snapshot(variant)
    manifest, _ = snap.read
    root = manifest["file"]["attrs"]
    assert manifest["file"]["format_version"] == 1
    assert root["tsnap_format"] == {"kind": "string", "value": "tsnap"}
    assert root["tsnap_version"]["kind"] == "numeric"
    assert root["tsnap_version"]["dtype"] == "int64" and root["tsnap_version"]["shape"] == []
    assert bytes.fromhex(root["tsnap_version"]["hex"]) == (1).to_bytes(8, "little")
    assert root["producer"] == {"kind": "string", "value": "tsnap 0.1.0"}
    assert root["created"]["kind"] == "string"
    assert list(root) == sorted(root, key=lambda k: k.encode()), "attributes in name order"
    for r in snap.expected["attrs"]:
        got = (root if r["on"] == "" else manifest["tensors"][r["on"]]["attrs"])[r["key"]]
        if r["dtype"] == "string":
            assert got == {"kind": "string", "value": r["value"]}
        else:
            assert got == {"kind": "numeric", "dtype": r["dtype"], "shape": r["shape"],
                           "hex": r["hex"]}
    for name, rec in manifest["tensors"].items():
        assert rec["attrs"]["tsnap_dtype"] == {"kind": "string", "value": rec["dtype"]}
        assert rec["attrs"]["tsnap_checksum"]["value"] == rec["checksum"]


# ---------------------------------------------------------------------------
# bfloat16 and float8 through ml_dtypes

ML = {"bfloat16": ml_dtypes.bfloat16, "float8_e5m2": ml_dtypes.float8_e5m2,
      "float8_e4m3fn": ml_dtypes.float8_e4m3fn}
ML_CASES = [(d, c) for d in ML for c in oracle.CASES]


@pytest.mark.parametrize("dtype,case", ML_CASES, ids=[_ids(p) for p in ML_CASES])
def test_ml_dtypes_views_of_the_raw_bits_equal_what_h5py_reads(c_snapshot, h5files, dtype, case):
    snap = c_snapshot("plain")
    rec = snap.expected["tensors"][f"{dtype}/{case}"]
    raw = snap.raw(rec["name"])
    ml = np.frombuffer(raw, ML[dtype]).reshape(rec["shape"])
    got = np.asarray(h5files(snap.path)[rec["name"]][()])
    if dtype == "float8_e4m3fn":
        # h5py gives the raw bits; tsnap_dtype says how to view them
        assert got.dtype == np.uint8
        oracle.assert_same_values(got.view(ML[dtype]).astype(np.float32),
                                  ml.astype(np.float32), rec["name"])
    else:
        oracle.assert_same_values(got, ml.astype(got.dtype), rec["name"])


def test_hdf5s_float_model_would_turn_e4m3fn_448_into_nan(tmp_path):
    """Why float8_e4m3fn is stored as raw uint8: described as an HDF5 float
    (sign 7, exponent 3-6, mantissa 0-2, bias 7) its top exponent means
    Inf/NaN, while e4m3fn uses it for 256..448."""
    t = h5t.IEEE_F32LE.copy()
    t.set_fields(7, 3, 4, 0, 3)
    t.set_size(1)
    t.set_ebias(7)
    bits = np.array([0x7E, 0x78, 0x38], np.uint8)  # 448, 256, 1.0 in e4m3fn
    assert list(bits.view(ml_dtypes.float8_e4m3fn).astype(float)) == [448.0, 256.0, 1.0]
    with h5py.File(tmp_path / "e4m3.h5", "w") as f:
        d = h5d.create(f.id, b"x", t, h5s.create_simple((3,)))
        d.write(h5s.ALL, h5s.ALL, bits, mtype=t)
        got = f["x"][()]
    assert np.isnan(got[0]) and np.isinf(got[1]) and got[2] == 1.0


# ---------------------------------------------------------------------------
# The file as a whole

@pytest.mark.parametrize("variant", TENSOR_VARIANTS)
def test_the_file_starts_with_the_hdf5_signature_and_a_v110_superblock(c_snapshot, variant):
    offset, version = oracle.superblock(c_snapshot(variant).path)
    assert offset == 0, "tsnap writes no userblock"
    assert version == 3, "libver bounds (V110, V110) give superblock version 3"
    with h5py.File(c_snapshot(variant).path, "r") as f:
        assert f.id.get_create_plist().get_userblock() == 0


@pytest.mark.parametrize("variant", TENSOR_VARIANTS)
def test_commit_leaves_the_final_file_and_no_temporary_file(c_snapshot, variant):
    snap = c_snapshot(variant)
    entries = os.listdir(snap.dir)
    assert "snap.h5" in entries
    assert not [e for e in entries if e.endswith(".tsnap-tmp") or e.startswith(".snap.h5")]


@pytest.mark.parametrize("variant", TENSOR_VARIANTS)
def test_the_groups_nest_by_dtype_and_hold_only_the_tensors(c_snapshot, h5files, variant):
    f = h5files(c_snapshot(variant).path)
    assert sorted(f.keys()) == sorted(oracle.DTYPE_NAMES + ["names"])
    for d in oracle.DTYPE_NAMES:
        assert isinstance(f[d], h5py.Group)
        assert sorted(f[d].keys()) == sorted(oracle.CASES)
    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    manifest, _ = c_snapshot(variant).read
    assert list(manifest["tensors"]) == sorted(names, key=lambda n: n.encode())


@pytest.mark.parametrize("variant", ["plain", "deflate"])
def test_names_with_spaces_utf8_dots_depth_and_1024_bytes_nest_groups_and_read_back(
        c_snapshot, h5files, variant):
    snap = c_snapshot(variant)
    f = h5files(snap.path)
    extra = [r for r in snap.expected["tensors"].values() if r["case"] == "name"]
    assert len(extra) == 5
    assert max(len(r["name"].encode()) for r in extra) == 1024
    manifest, rdir = snap.read
    for r in extra:
        raw = snap.raw(r["name"])
        parts = r["name"].split("/")
        for depth in range(1, len(parts)):
            assert isinstance(f["/".join(parts[:depth])], h5py.Group)
        ds = f[r["name"]]
        oracle.assert_same_values(np.asarray(ds[()]), np.frombuffer(raw, "<i4"), r["name"])
        assert oracle.tensor_bytes(rdir, manifest["tensors"][r["name"]]) == raw

"""The reverse direction: files written by h5py, read by tsnap's C reader
(through tsnap_testio read) and compared with h5py's own read.

Two sources: the committed golden files in tests/data (made once by
tests/data/make_golden.py), and the same kinds of files written fresh at test
time with this run's random data."""
import h5py
import pytest

import oracle

from conftest import DATA, GOLDEN

CASES = [(f, d) for f in sorted(GOLDEN) for d in sorted(GOLDEN[f])]
ACCEPTED = [(f, d) for f, d in CASES if "refuse" not in GOLDEN[f][d]]
MAP_NAMES = {"OK": oracle.MAP_OK, "EMPTY": oracle.MAP_EMPTY, "FILTERED": oracle.MAP_FILTERED,
             "BYTE_ORDER": oracle.MAP_BYTE_ORDER, "TYPE": oracle.MAP_TYPE,
             "NOT_ALLOCATED": oracle.MAP_NOT_ALLOCATED, "SCATTERED": oracle.MAP_SCATTERED,
             "LAYOUT": oracle.MAP_LAYOUT, "TRUNCATED": oracle.MAP_TRUNCATED}


@pytest.fixture(params=["committed", "fresh"])
def source(request):
    return request.getfixturevalue(request.param)


def _logical_shape(dtype, ds):
    if dtype == "complex32" and ds.dtype.names is None:
        return list(ds.shape[:-1])
    return list(ds.shape)


def _stored_is_canonical(dtype, ds):
    stored = ds.id.get_type()
    if dtype == "complex32" and ds.dtype.names is not None:
        return False  # an {r, i} compound, not tsnap's float16 pairs
    return stored == oracle.canonical_type(dtype)


def test_the_committed_golden_files_are_what_make_golden_builds(fresh):
    assert fresh.expect == GOLDEN, "run tests/data/make_golden.py and commit its output"
    total = sum((DATA / f).stat().st_size for f in GOLDEN)
    assert total < 200 * 1024
    for f in GOLDEN:
        assert (DATA / f).stat().st_size < 64 * 1024, f


@pytest.mark.parametrize("fname,name", ACCEPTED, ids=[f"{f}:{d}" for f, d in ACCEPTED])
def test_the_c_reader_reads_each_h5py_dataset_as_h5py_does(source, fname, name):
    exp = source.expect[fname][name]
    manifest, rdir = source.read(fname)
    rec = manifest["tensors"][name]
    assert "error" not in rec, rec.get("error")
    assert "read_error" not in rec, rec.get("read_error")
    with h5py.File(source.dir / fname, "r") as f:
        ds = f[name]
        assert rec["dtype"] == exp["tsnap_dtype"]
        assert rec["shape"] == _logical_shape(exp["tsnap_dtype"], ds)
        assert rec["big_endian"] == int(exp.get("big_endian", False))
        raw = oracle.tensor_bytes(rdir, rec)
        got = oracle.expected_h5py_array(rec["dtype"], raw, rec["shape"])
        oracle.assert_same_values(got, oracle.h5py_native(ds), name)
    assert rec["checksum"] == "", "h5py files carry no tsnap checksum"
    assert "verify_error" not in rec, rec.get("verify_error")
    if rec["shape"] and rec["nbytes"]:
        assert rec.get("slab") == "ok", "a strided hyperslab read equals the whole read"


@pytest.mark.parametrize("fname,name", ACCEPTED, ids=[f"{f}:{d}" for f, d in ACCEPTED])
def test_the_c_reader_maps_exactly_the_h5py_datasets_that_lie_flat_and_native(
        source, fname, name):
    exp = source.expect[fname][name]
    rec = source.read(fname)[0]["tensors"][name]
    path = source.dir / fname
    if "map" in exp:
        assert rec["map_status"] == MAP_NAMES[exp["map"]], rec["map_status_str"]
    with h5py.File(path, "r") as f:
        ds = f[name]
        offset = oracle.flat_offset(ds)
        native = not exp.get("big_endian", False) or ds.id.get_type().get_size() == 1
        if ds.size == 0 and _stored_is_canonical(exp["tsnap_dtype"], ds):
            assert rec["map_status"] == oracle.MAP_EMPTY, rec["map_status_str"]
        elif offset is not None and native and _stored_is_canonical(exp["tsnap_dtype"], ds):
            assert rec["map_status"] == oracle.MAP_OK, rec["map_status_str"]
            assert rec["offset"] == offset
    if rec["map_status"] == oracle.MAP_OK:
        raw = oracle.tensor_bytes(source.read(fname)[1], rec)
        assert rec["length"] == len(raw)
        with open(path, "rb") as fh:
            fh.seek(rec["offset"])
            assert fh.read(len(raw)) == raw, "the mapped range holds the tensor's bytes"
    if rec["map_status"] in (oracle.MAP_OK, oracle.MAP_EMPTY):
        assert rec.get("map") == "ok", rec.get("map_error")
    else:
        assert rec.get("map_error", {}).get("code") == oracle.ENOTMAPPABLE


REFUSED = [(f, d) for f, d in CASES if "refuse" in GOLDEN[f][d]]


@pytest.mark.parametrize("fname,name", REFUSED, ids=[f"{f}:{d}" for f, d in REFUSED])
def test_a_type_tsnap_cannot_represent_is_refused_with_a_message_naming_it(
        source, fname, name):
    exp = source.expect[fname][name]
    rec = source.read(fname)[0]["tensors"][name]
    assert rec.get("error", {}).get("error") == exp["refuse"], rec
    message = rec["error"]["message"]
    assert name in message, "the message names the tensor"
    assert str(source.dir / fname) in message or fname in message, "and the file"
    assert any(w in message.lower() for w in exp["words"]), (
        f"the message names the type ({' or '.join(exp['words'])}): {message}")
    assert rec["read_refused"], "reading a refused tensor fails too"


@pytest.mark.parametrize("fname", sorted(GOLDEN))
def test_the_c_reader_lists_every_h5py_dataset_in_sorted_order(source, fname):
    manifest = source.read(fname)[0]
    names = []
    with h5py.File(source.dir / fname, "r") as f:
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    assert list(manifest["tensors"]) == sorted(names, key=lambda n: n.encode())
    assert manifest["file"]["count"] == len(names)
    assert manifest["file"]["format_version"] == 0, "h5py's files are not tsnap's"

"""The versioning and integrity rules of docs/FORMAT.md, on files made with
h5py to look like tsnap's (or edited after tsnap wrote them)."""
import shutil

import h5py
import numpy as np
import pytest

import oracle


def _tsnap_like(path, version=1, **root_attrs):
    """An h5py file with tsnap's root attributes and one tagged float32."""
    f = h5py.File(path, "w")
    f.attrs["tsnap_format"] = "tsnap"
    f.attrs["tsnap_version"] = np.int64(version)
    f.attrs["created"] = "2026-11-22T05:10:00.123456Z"
    f.attrs["producer"] = "h5py pretending"
    for k, v in root_attrs.items():
        f.attrs[k] = v
    data = np.arange(1, 7, dtype="<f4")
    ds = f.create_dataset("x", data=data)
    ds.attrs["tsnap_dtype"] = "float32"
    ds.attrs["tsnap_checksum"] = oracle.checksum(data.tobytes())
    return f


def _read(path, out, check=True):
    proc = oracle.run_testio("read", path, out, check=check)
    return proc, oracle.read_manifest(out)


def test_a_reader_refuses_a_file_that_claims_a_newer_tsnap_version(testio, tmp_path):
    _tsnap_like(tmp_path / "v2.h5", version=2).close()
    proc, manifest = _read(tmp_path / "v2.h5", tmp_path / "r", check=False)
    assert proc.returncode == 2
    err = manifest["open_error"]
    assert err["code"] == oracle.EFORMAT
    assert "version" in err["message"].lower() and "2" in err["message"]


def test_a_reader_opens_a_file_of_the_version_it_writes(testio, tmp_path):
    _tsnap_like(tmp_path / "v1.h5").close()
    _, manifest = _read(tmp_path / "v1.h5", tmp_path / "r")
    assert manifest["file"]["format_version"] == 1
    rec = manifest["tensors"]["x"]
    assert rec["dtype"] == "float32" and "verify_error" not in rec


def test_a_reader_ignores_attributes_it_does_not_know(testio, tmp_path):
    with _tsnap_like(tmp_path / "u.h5", tsnap_future="later", flavour=np.int16(3)) as f:
        f.attrs["a_struct"] = np.zeros(2, [("a", "<i4"), ("b", "<f8")])
        f["x"].attrs["tsnap_future_thing"] = 1.5
        f["x"].attrs["comment"] = "kept"
    proc, manifest = _read(tmp_path / "u.h5", tmp_path / "r")
    assert manifest["file"]["format_version"] == 1
    rec = manifest["tensors"]["x"]
    assert "error" not in rec and "verify_error" not in rec
    assert oracle.tensor_bytes(tmp_path / "r", rec) == np.arange(1, 7, dtype="<f4").tobytes()
    root = manifest["file"]["attrs"]
    assert root["tsnap_future"] == {"kind": "string", "value": "later"}
    assert root["a_struct"]["kind"] == "other", "an attribute of a foreign type is listed, not fatal"
    assert rec["attrs"]["comment"] == {"kind": "string", "value": "kept"}


@pytest.mark.parametrize("tag", ["float4_e2m1", "Float32", "float32 ", ""])
def test_an_unknown_tsnap_dtype_name_is_an_error_naming_it(testio, tmp_path, tag):
    with _tsnap_like(tmp_path / "t.h5") as f:
        f["x"].attrs["tsnap_dtype"] = tag
    _, manifest = _read(tmp_path / "t.h5", tmp_path / "r")
    rec = manifest["tensors"]["x"]
    assert rec.get("error", {}).get("code") == oracle.ETYPE, rec
    assert repr(tag)[1:-1] in rec["error"]["message"] or not tag
    assert rec["read_refused"]


CONTRADICTIONS = [
    ("float32_tagged_int32", "<f4", (4,), "int32"),
    ("float16_tagged_bfloat16", "<f2", (4,), "bfloat16"),
    ("uint8_tagged_bool", "u1", (4,), "bool"),
    ("int8_tagged_float8_e4m3fn", "i1", (4,), "float8_e4m3fn"),
    ("float16_without_a_trailing_2_tagged_complex32", "<f2", (5, 3), "complex32"),
    ("complex64_tagged_complex128", "<c8", (3,), "complex128"),
    ("float64_tagged_complex32", "<f8", (3, 2), "complex32"),
]


@pytest.mark.parametrize("name,dtype,shape,tag", CONTRADICTIONS,
                         ids=[c[0] for c in CONTRADICTIONS])
def test_a_tsnap_dtype_that_contradicts_the_stored_type_is_a_format_error(
        testio, tmp_path, name, dtype, shape, tag):
    with h5py.File(tmp_path / "c.h5", "w") as f:
        ds = f.create_dataset(name, data=np.ones(shape, dtype))
        ds.attrs["tsnap_dtype"] = tag
    _, manifest = _read(tmp_path / "c.h5", tmp_path / "r")
    rec = manifest["tensors"][name]
    assert rec.get("error", {}).get("code") == oracle.EFORMAT, rec
    assert name in rec["error"]["message"]


def test_verify_reports_a_tensor_whose_checksum_attribute_is_wrong(c_snapshot, tmp_path):
    path = tmp_path / "s.h5"
    shutil.copy(c_snapshot("plain").path, path)
    with h5py.File(path, "r+") as f:
        f["int32/prime3d"].attrs["tsnap_checksum"] = "xxh3-64:0123456789abcdef"
    _, manifest = _read(path, tmp_path / "r")
    bad = manifest["tensors"]["int32/prime3d"]
    assert bad["verify_error"]["code"] == oracle.ECHECKSUM
    assert "int32/prime3d" in bad["verify_error"]["message"]
    others = [n for n, r in manifest["tensors"].items() if "verify_error" in r]
    assert others == ["int32/prime3d"]


@pytest.mark.parametrize("dtype", ["float64", "bfloat16", "complex32", "bool"])
def test_verify_reports_a_flipped_bit_in_a_tensors_stored_bytes(c_snapshot, tmp_path, dtype):
    snap = c_snapshot("plain")
    rec = snap.read[0]["tensors"][f"{dtype}/prime3d"]
    assert rec["map_status"] == oracle.MAP_OK
    path = tmp_path / "s.h5"
    shutil.copy(snap.path, path)
    with open(path, "r+b") as fh:
        fh.seek(rec["offset"] + rec["length"] // 2)
        b = fh.read(1)[0]
        fh.seek(-1, 1)
        # a bool must stay 0/1 to be a valid value, so flip its low bit
        fh.write(bytes([b ^ 0x01]))
    _, manifest = _read(path, tmp_path / "r")
    got = manifest["tensors"][f"{dtype}/prime3d"]
    assert got["verify_error"]["code"] == oracle.ECHECKSUM
    assert f"{dtype}/prime3d" in got["verify_error"]["message"]


@pytest.mark.parametrize("cut", [0.5, 0.98])
def test_a_truncated_snapshot_is_refused_or_its_tensors_fail_cleanly(c_snapshot, tmp_path, cut):
    src = c_snapshot("plain").path
    data = src.read_bytes()
    path = tmp_path / "cut.h5"
    path.write_bytes(data[:int(len(data) * cut)])
    proc, manifest = _read(path, tmp_path / "r", check=False)
    assert proc.returncode in (0, 2), proc.stderr  # no crash, no inconsistency
    if proc.returncode == 2:
        assert manifest["open_error"]["code"] in (oracle.EFORMAT, oracle.EIO)
    else:
        assert any("read_error" in r or "error" in r or r["map_status"] == oracle.MAP_TRUNCATED
                   for r in manifest["tensors"].values())


def test_a_file_that_is_not_hdf5_is_a_format_error(testio, tmp_path):
    (tmp_path / "n.h5").write_bytes(b"not an HDF5 file at all\n" * 10)
    proc, manifest = _read(tmp_path / "n.h5", tmp_path / "r", check=False)
    assert proc.returncode == 2
    assert manifest["open_error"]["code"] == oracle.EFORMAT


def test_a_missing_file_is_not_found(testio, tmp_path):
    proc, manifest = _read(tmp_path / "missing.h5", tmp_path / "r", check=False)
    assert proc.returncode == 2
    assert manifest["open_error"]["code"] == oracle.ENOTFOUND


def test_a_checksum_of_an_unknown_algorithm_fails_verification(testio, tmp_path):
    with _tsnap_like(tmp_path / "a.h5") as f:
        f["x"].attrs["tsnap_checksum"] = "sha256:" + "0" * 64
    _, manifest = _read(tmp_path / "a.h5", tmp_path / "r")
    rec = manifest["tensors"]["x"]
    assert "error" not in rec and "read_error" not in rec, "the data still reads"
    assert rec["verify_error"]["code"] == oracle.EFORMAT
    assert "sha256" in rec["verify_error"]["message"]


@pytest.mark.parametrize("version", [None, np.int32(1), "1", np.array([1], np.int64)],
                         ids=["missing", "int32", "string", "array"])
def test_a_tsnap_file_without_an_int64_scalar_version_is_a_format_error(
        testio, tmp_path, version):
    with _tsnap_like(tmp_path / "v.h5") as f:
        del f.attrs["tsnap_version"]
        if version is not None:
            f.attrs["tsnap_version"] = version
    proc, manifest = _read(tmp_path / "v.h5", tmp_path / "r", check=False)
    assert proc.returncode == 2
    assert manifest["open_error"]["code"] == oracle.EFORMAT
    assert "tsnap_version" in manifest["open_error"]["message"]


def test_a_file_that_does_not_say_tsnap_is_read_as_a_foreign_hdf5_file(testio, tmp_path):
    with _tsnap_like(tmp_path / "o.h5") as f:
        f.attrs["tsnap_format"] = "other"
        f.attrs["tsnap_version"] = np.int64(99)
    _, manifest = _read(tmp_path / "o.h5", tmp_path / "r")
    assert manifest["file"]["format_version"] == 0
    assert manifest["tensors"]["x"]["dtype"] == "float32"

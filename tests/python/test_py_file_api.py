"""tsnap.open: a File is a read-only Mapping of names to lazy Tensors, with
the root attributes of SPEC §3 (and those save(attrs=...) wrote), Tensor
properties that agree with h5py, a context manager that closes it, and
ValueError on use after close."""
import collections.abc
import datetime
import os

import h5py
import ml_dtypes
import numpy as np
import pytest

import oracle
import tsnap
from pyhelpers import assert_bits_equal, is_mapped, le_bytes, logical

ATTRS = {
    "step": 42,
    "time": 1.25,
    "note": "hello",
    "unicode": "grüße, 世界",
    "empty_str": "",
    "vec": np.arange(3, dtype=np.float32),
    "matrix": np.arange(6, dtype=np.int16).reshape(2, 3),
    "flag": True,
    "count": np.uint8(200),
    "half": np.float16(0.5),
    "big": 2**40,
    "ratio": 0.1,
    "z": 1 + 2j,
}


@pytest.fixture(scope="module")
def snap(tmp_path_factory, seed):
    rng = np.random.default_rng([seed, 71])
    tensors = {
        "b/weights": rng.standard_normal((40, 30)).astype(np.float32),
        "a": rng.integers(0, 100, (7,), dtype=np.int64),
        "b/bias": rng.standard_normal((30,)).astype(ml_dtypes.bfloat16),
        "B": np.array(3.5),
        "c/packed": np.cumsum(rng.standard_normal((100, 8)), axis=0),
        "empty": np.zeros((0, 5), np.uint16),
        "ä/ü": np.arange(4, dtype=np.int8),
    }
    path = tmp_path_factory.mktemp("py-file") / "snap.h5"
    before = datetime.datetime.now(datetime.timezone.utc)
    # everything but c/packed uncompressed: save twice is not possible, so
    # c/packed goes in its own file
    tsnap.save(path, {k: v for k, v in tensors.items() if k != "c/packed"}, attrs=ATTRS,
               chunk_bytes=1024, durable=False)
    packed = path.with_name("packed.h5")
    tsnap.save(packed, {"c/packed": tensors["c/packed"]}, compression="deflate",
               chunk_bytes=1024, durable=False)
    after = datetime.datetime.now(datetime.timezone.utc)
    return path, packed, tensors, (before, after)


def test_keys_are_the_full_names_sorted_as_bytes(snap):
    path, _, tensors, _ = snap
    names = sorted((k for k in tensors if k != "c/packed"), key=lambda n: n.encode())
    with tsnap.open(path) as f:
        assert isinstance(f, collections.abc.Mapping)
        assert list(f.keys()) == names
        assert list(f) == names
        assert len(f) == len(names)
        for name in names:
            assert name in f
        assert "b" not in f and "nope" not in f and "b/weights/x" not in f
        assert [t.name for t in f.values()] == names
        assert [k for k, _ in f.items()] == names


def test_root_attrs_hold_the_format_tags_and_the_user_attrs(snap):
    path, _, _, (before, after) = snap
    with tsnap.open(path) as f:
        attrs = f.attrs
        assert f.format_version == 1
    assert attrs["tsnap_format"] == "tsnap" and isinstance(attrs["tsnap_format"], str)
    assert attrs["tsnap_version"] == 1
    assert isinstance(attrs["tsnap_version"], np.integer)
    created = attrs["created"]
    assert isinstance(created, str) and created.endswith("Z")
    when = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
    assert before - datetime.timedelta(seconds=2) <= when <= after + datetime.timedelta(seconds=2)
    assert isinstance(attrs["producer"], str) and attrs["producer"]
    assert attrs["step"] == 42 and attrs["step"].dtype == np.int64
    assert attrs["time"] == 1.25 and attrs["time"].dtype == np.float64
    for key in ("note", "unicode", "empty_str"):
        assert attrs[key] == ATTRS[key] and isinstance(attrs[key], str)
    for key in ("vec", "matrix"):
        assert isinstance(attrs[key], np.ndarray)
        assert_bits_equal(attrs[key], ATTRS[key], key)
    for key in ("flag", "count", "half", "big", "ratio", "z"):
        value = attrs[key]
        assert isinstance(value, (np.generic, np.ndarray)), f"{key}: a numpy scalar"
        assert value == ATTRS[key], key
    assert attrs["count"].dtype == np.uint8 and attrs["half"].dtype == np.float16
    assert attrs["flag"].dtype == np.bool_


def test_h5py_reads_the_root_attrs_save_wrote(snap):
    path = snap[0]
    with h5py.File(path, "r") as f:
        a = f.attrs
        assert a["tsnap_format"] == "tsnap" and a["tsnap_version"] == 1
        assert a["step"] == 42 and a["step"].dtype == np.int64
        assert oracle.is_vlen_utf8_scalar(a, "note")
        assert a["time"] == 1.25 and a["time"].dtype == np.float64
        assert a["unicode"] == ATTRS["unicode"]
        assert_bits_equal(a["matrix"], ATTRS["matrix"])


@pytest.mark.parametrize("step,time", [(np.int32(5), 3), (np.uint8(7), np.float32(0.5)),
                                       (True, 1.0)], ids=["int32-int", "uint8-float32",
                                                          "bool-float"])
def test_step_is_stored_int64_and_time_float64_whatever_numbers_are_given(tmp_path, step,
                                                                          time):
    path = tmp_path / "s.h5"
    try:
        tsnap.save(path, {"x": np.arange(2)}, attrs={"step": step, "time": time},
                   durable=False)
    except (TypeError, ValueError):
        assert isinstance(step, bool), "only a bool step may be refused"
        return
    with tsnap.open(path) as f:
        assert f.attrs["step"].dtype == np.int64 and f.attrs["step"] == int(step)
        assert f.attrs["time"].dtype == np.float64 and f.attrs["time"] == float(time)


def test_tensor_properties_agree_with_h5py_and_the_saved_values(snap):
    path, packed, tensors, _ = snap
    for p, name in [(path, n) for n in tensors if n != "c/packed"] + [(packed, "c/packed")]:
        value = tensors[name]
        with tsnap.open(p) as f, h5py.File(p, "r") as h:
            t = f[name]
            ds = h[name]
            assert t.name == name
            assert t.shape == value.shape and isinstance(t.shape, tuple)
            assert t.dtype == value.dtype
            assert t.ndim == value.ndim and t.size == value.size
            assert t.nbytes == value.nbytes
            assert t.chunks == ds.chunks, name
            assert t.checksum == oracle.checksum(le_bytes(value))
            assert t.checksum == ds.attrs["tsnap_checksum"]
            if name == "c/packed":
                assert t.compression == "deflate"
                assert t.mappable is False
                assert "compress" in t.map_status.lower()
            else:
                assert t.compression is None
                assert t.mappable is True and t.map_status is None
            assert isinstance(t.attrs, dict)
            if value.ndim:
                assert len(t) == value.shape[0]
            assert name in repr(t)


def test_a_tensor_reads_as_a_copy_a_mapping_and_through_array(snap):
    path, _, tensors, _ = snap
    with tsnap.open(path) as f:
        t = f["b/weights"]
        copy = t.numpy()
        assert copy.flags.writeable and not is_mapped(copy)
        mapped = t.numpy(mmap=True)
        assert is_mapped(mapped) and not mapped.flags.writeable
        auto = t.numpy(mmap="auto")
        assert is_mapped(auto)
        for a in (copy, mapped, auto, np.asarray(t), np.array(t), t.numpy(verify=True)):
            assert_bits_equal(a, tensors["b/weights"])
        assert_bits_equal(f["b/bias"].numpy(), tensors["b/bias"])
        assert f["b/bias"].dtype == np.dtype(ml_dtypes.bfloat16)


def test_dataset_attrs_of_an_h5py_file_are_the_tensors_attrs(tmp_path):
    path = tmp_path / "h.h5"
    with h5py.File(path, "w") as f:
        f.attrs["experiment"] = "e1"
        f.attrs["seed"] = np.int32(7)
        ds = f.create_dataset("x", data=np.arange(4.0))
        ds.attrs["units"] = "m/s"
        ds.attrs["scale"] = 2.5
        ds.attrs["window"] = np.array([1, 2, 3], np.int64)
    with tsnap.open(path) as f:
        assert f.format_version == 0
        assert f.attrs["experiment"] == "e1" and f.attrs["seed"] == 7
        t = f["x"]
        assert t.attrs["units"] == "m/s" and t.attrs["scale"] == 2.5
        assert_bits_equal(t.attrs["window"], np.array([1, 2, 3], np.int64))
        assert t.checksum is None


def test_the_path_property_is_the_path_opened(snap):
    path = snap[0]
    with tsnap.open(path) as f:
        assert os.fspath(f.path) == str(path)
    with tsnap.open(str(path)) as f:
        assert os.fspath(f.path) == str(path)


def test_a_closed_file_and_its_tensors_raise_value_error(snap):
    path, _, tensors, _ = snap
    with tsnap.open(path) as f:
        t = f["b/weights"]
        mapped = t.numpy(mmap=True)
    calls = {"getitem": lambda: f["a"], "keys": lambda: list(f.keys()),
             "len": lambda: len(f), "contains": lambda: "a" in f, "attrs": lambda: f.attrs,
             "numpy": lambda: t.numpy(), "mmap": lambda: t.numpy(mmap=True),
             "slice": lambda: t[0], "array": lambda: np.asarray(t)}
    for what, call in calls.items():
        with pytest.raises(ValueError) as info:
            call()
        assert not isinstance(info.value, KeyError), what
    f.close()  # closing twice is harmless
    assert_bits_equal(mapped, tensors["b/weights"])


def test_close_closes_without_a_with_block(snap):
    f = tsnap.open(snap[0])
    assert len(f) > 0
    f.close()
    with pytest.raises(ValueError):
        f["a"]


def test_many_files_open_at_once_each_read_their_own_tensors(tmp_path, seed):
    rng = np.random.default_rng([seed, 72])
    files = []
    for i in range(20):
        data = rng.standard_normal((5, i + 1))
        tsnap.save(tmp_path / f"{i}.h5", {"x": data}, durable=False)
        files.append((tsnap.open(tmp_path / f"{i}.h5"), data))
    try:
        for f, data in files:
            assert_bits_equal(f["x"].numpy(), logical(data))
    finally:
        for f, _ in files:
            f.close()

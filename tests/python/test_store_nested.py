"""tsnap.Store saves with wait=False of whole checkpoints: nested
mappings, lists and tuples of arrays of every dtype, Python scalars, str,
bytes, None and empty containers are all staged when save() returns, so
the caller may change every input at once; the background thread writes
exactly what a waiting save and tsnap.save write.  h5py reads every step
file as the independent reference."""
import copy
import os

import h5py
import numpy as np
import pytest

import tsnap
from pyhelpers import DTYPES, DLPackTensor, values
from test_nested import _array, _expected, _leaf, _tree, assert_same_tree, check_h5py


def _checkpoint(rng, depth):
    """A structure `depth` containers deep with every leaf kind, plus every
    dtype as an array and a simulation's own scalars and metadata."""
    counter = [int(rng.integers(0, 10))]
    tree = {f"top{i}": _tree(rng, depth, counter) for i in range(2)}
    tree["leaves"] = {f"l{i}": _leaf(rng, i) for i in range(10)}  # every kind
    tree["arrays"] = {name: _array(rng, i) for i, name in enumerate(DTYPES)}
    tree.update({"u": values(rng, np.float64, (7, 11)), "step": int(rng.integers(0, 1 << 40)),
                 "t": float(rng.random()), "done": bool(rng.integers(0, 2)),
                 "z": complex(rng.standard_normal(), rng.standard_normal()),
                 "meta": {"name": "lauf-3 \u00e9\u4e2d\U0001f642", "raw": b"\x00\xff\x01\0",
                          "none": None, "empty": {}, "shape": (7, 11), "hist": [0.5, 1.5],
                          "mixed": [1, "a", None, (2.0, b"b")]}})
    return tree


def _mutate(rng, x):
    """Changes everything `x` holds in place: arrays get fresh values,
    mappings and lists get their items replaced and one added."""
    if isinstance(x, np.ndarray):
        if x.size:
            x[...] = ~x if x.dtype == bool else values(rng, x.dtype, x.shape)
    elif isinstance(x, dict):
        for k in list(x):
            if isinstance(x[k], (dict, list, np.ndarray)):
                _mutate(rng, x[k])
            else:
                x[k] = "changed"
        x["added after save"] = np.ones(3)
    elif isinstance(x, list):
        for i, v in enumerate(x):
            if isinstance(v, (dict, list, np.ndarray)):
                _mutate(rng, v)
            else:
                x[i] = -1
        x.append("added")
    elif isinstance(x, tuple):  # immutable itself: what it holds is not
        for v in x:
            _mutate(rng, v)


def _objects(path):
    """Every object of an HDF5 file as h5py reads it: name -> (kind, dtype,
    shape, bytes, attributes), the attributes' values as bytes."""
    def attrs(obj):
        out = {}
        for k in obj.attrs:
            if k in ("tsnap_index", "created"):  # stamped with the time of writing
                continue
            v = obj.attrs[k]
            out[k] = v if isinstance(v, (str, bytes)) else (np.asarray(v).dtype.str,
                                                            np.asarray(v).tobytes())
        return out

    def visit(name, obj):
        if isinstance(obj, h5py.Group):
            found[name] = ("group", None, None, None, attrs(obj))
        else:
            raw = obj[()]
            data = raw if isinstance(raw, bytes) else np.asarray(raw).tobytes()
            found[name] = ("dataset", obj.dtype.str, obj.shape, data, attrs(obj))
    with h5py.File(path, "r") as f:
        found = {"/": ("group", None, None, None, attrs(f))}
        f.visititems(visit)
    return found


@pytest.mark.parametrize("depth", range(1, 5))
def test_a_background_save_stages_everything_and_writes_what_a_waiting_save_writes(
        tmp_path, seed, depth):
    rng = np.random.default_rng([seed, 19, depth])
    trees = [_checkpoint(rng, depth) for _ in range(3)]
    want = copy.deepcopy(trees)
    with tsnap.Store(tmp_path / "bg") as bg, tsnap.Store(tmp_path / "fg") as fg:
        for step, tree in enumerate(trees):
            fg.save(step, tree, attrs={"note": f"n{step}", "time": step * 0.25})
            bg.save(step, tree, attrs={"note": f"n{step}", "time": step * 0.25}, wait=False)
            _mutate(rng, tree)  # at once: the step holds what save() was given
        bg.wait()
        assert bg.steps() == fg.steps() == [0, 1, 2]
        for step, tree in enumerate(want):
            tsnap.save(tmp_path / f"plain{step}.h5", tree,
                       attrs={"note": f"n{step}", "time": step * 0.25, "step": step})
            with h5py.File(bg.path(step), "r") as f:
                check_h5py(f, tree)
                assert f.attrs["step"] == step and f.attrs["note"] == f"n{step}"
            assert_same_tree(bg.load(step, nested=True), _expected(tree))
            written = _objects(bg.path(step))
            assert written == _objects(fg.path(step))
            assert written == _objects(tmp_path / f"plain{step}.h5")
            assert tsnap.verify(bg.path(step)) > 0


def test_a_simulation_checkpoint_is_staged_and_keep_last_still_applies(tmp_path, seed):
    rng = np.random.default_rng([seed, 19, 10])
    u = values(rng, np.float32, (64, 33))
    ckpt = {"u": u, "step": 10, "t": 0.25, "meta": {"name": "run3"}}
    want = {}
    # A staging budget every step fits in: each save queues and returns.
    with tsnap.Store(tmp_path / "run", keep_last=2, staging_bytes=1 << 20) as s:
        for step in range(5):
            want[step] = copy.deepcopy(ckpt)
            s.save(step, ckpt, wait=False)
            u[...] = values(rng, np.float32, u.shape)
            ckpt["step"], ckpt["t"] = ckpt["step"] + 1, ckpt["t"] + 0.25
            ckpt["meta"]["name"] = f"run3 after {step}"
        s.wait()
        assert s.steps() == [3, 4]  # keep_last deletes older background steps too
        for step in (3, 4):
            got = s.load(step, nested=True)
            assert_same_tree(got, want[step])
            assert type(got["step"]) is int and type(got["t"]) is float
            with h5py.File(s.path(step), "r") as f:
                assert f["step"][()] == 10 + step and f["step"].attrs["tsnap_pytype"] == "int"
                assert f["t"].dtype == np.float64 and f["t"].attrs["tsnap_pytype"] == "float"
                assert f["meta/name"].asstr()[()] == want[step]["meta"]["name"]
                np.testing.assert_array_equal(f["u"][()], want[step]["u"])


def test_a_background_failure_is_raised_by_wait_and_its_step_never_listed(tmp_path, seed):
    rng = np.random.default_rng([seed, 19, 11])
    tree = {"w": values(rng, np.int16, (5,)), "opt": {"lr": 0.5, "tag": "adam", "e": {}}}
    with tsnap.Store(tmp_path / "run") as s:
        s.save(1, tree, wait=False)
        # a step is never replaced: queued (not written) by save(), refused
        # in the background, raised by wait()
        s.save(1, {"again": "x", "n": None}, wait=False)
        with pytest.raises(tsnap.errors.FileExistsError) as info:
            s.wait()
        assert "step-000000000001.h5" in str(info.value)
        s.wait()  # raised once
        # 'a/b' as a path and as a key of 'a': the same name twice
        s.save(2, {"a": {"b": "text"}, "a/b": np.ones(2)}, wait=False)
        with pytest.raises(tsnap.errors.ValueError) as info:
            s.wait()
        assert "step-000000000002.h5" in str(info.value) and "'a/b'" in str(info.value)
        s.save(3, {"later": [1, "x"]}, wait=False)
        s.wait()
        assert s.steps() == [1, 3]
        assert sorted(os.listdir(tmp_path / "run")) == [
            ".tsnap-store.lock", "step-000000000001.h5", "step-000000000003.h5"]
        assert_same_tree(s.load(1, nested=True), _expected(tree))
        s.save(4, {"s": "kept going"}, wait=False)
        s.save(1, {"s": "clash"}, wait=False)
        with pytest.raises(tsnap.errors.FileExistsError):
            s.save(5, {"s": "the next save raises it"})
        assert s.steps() == [1, 3, 4]  # and is not saved itself
    with tsnap.Store(tmp_path / "run", readonly=True) as s:
        with pytest.raises(tsnap.StateError, match="read only"):
            s.save(9, {"n": 1, "s": "x", "g": []}, wait=False)
        assert s.steps() == [1, 3, 4]


def test_dlpack_tensors_in_a_structure_are_staged_and_released_once(tmp_path, seed):
    rng = np.random.default_rng([seed, 19, 12])
    a = values(rng, np.float32, (4, 6))
    b = values(rng, np.float64, (9,))
    want_a, want_b = a.copy(), b.copy()
    da, db = DLPackTensor(a, 2, 32), DLPackTensor(b, 2, 64)  # kDLFloat
    tree = {"x": [{"deep": (da, 1, "s")}], "y": db, "n": None}
    with tsnap.Store(tmp_path / "run") as s:
        s.save(3, tree, wait=False)
        a[...], b[...] = -a, -b
        tree["x"][0]["deep"] = ()
        s.wait()
        got = s.load(3, nested=True)
    assert da.deleter_calls == 1 and db.deleter_calls == 1
    np.testing.assert_array_equal(got["x"][0]["deep"][0], want_a)
    assert got["x"][0]["deep"][1:] == [1, "s"] and got["n"] is None
    np.testing.assert_array_equal(got["y"], want_b)


def test_steps_of_only_strings_groups_and_empty_tensors_stage_too(tmp_path):
    trees = [{"s": ""}, {"g": {}}, {"n": None}, {"b": b""}, {"l": [], "t": ()},
             {"e": np.zeros((0, 3), np.float16), "s": "\u00e9"}]
    with tsnap.Store(tmp_path / "run") as s:
        for step, tree in enumerate(trees):
            s.save(step, tree, wait=False)
        s.wait()
        for step, tree in enumerate(trees):
            assert_same_tree(s.load(step, nested=True), _expected(tree))
            with h5py.File(s.path(step), "r") as f:
                check_h5py(f, tree)

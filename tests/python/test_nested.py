"""Checkpoints as programs hold them: nested mappings, lists and tuples of
tensors, Python scalars, str, bytes and None save in one call and load back
as the same structure (load(nested=True)); h5py reads the file group by
group; names HDF5 cannot hold are refused before anything is written."""
import math
import os
import subprocess

import h5py
import numpy as np
import pytest

import tsnap
from clihelpers import cli_path
from pyhelpers import DTYPES, ML_DTYPES, DLPackTensor, assert_same_values, values

kDLFloat = 2

# 0-d, empty, one element, primes; the last made non-contiguous below.
SHAPES = [(), (0,), (1,), (7, 11), (3, 0, 2), (5, 13)]


def _array(rng, i):
    name = list(DTYPES)[i % len(DTYPES)]
    shape = SHAPES[i % len(SHAPES)]
    if shape == (5, 13):  # a strided view: every other column, reversed rows
        return values(rng, DTYPES[name], (5, 26))[::-1, ::2]
    return values(rng, DTYPES[name], shape)


def _text(rng):
    alphabet = ["a", "Z", " ", "é", "ß", "中", "🙂", "/", "\t", "'", '"']
    return "".join(rng.choice(alphabet) for _ in range(int(rng.integers(0, 12))))


def _leaf(rng, i):
    """One leaf of every kind in turn."""
    kind = i % 10
    if kind == 0:
        return int(rng.integers(-(1 << 63), (1 << 63) - 1, dtype=np.int64, endpoint=True))
    if kind == 1:
        return float(rng.standard_normal() * 10.0 ** rng.integers(-300, 300))
    if kind == 2:
        return bool(rng.integers(0, 2))
    if kind == 3:
        return complex(rng.standard_normal(), rng.standard_normal())
    if kind == 4:
        return _text(rng)
    if kind == 5:  # any bytes, NULs (trailing ones too) included
        return rng.integers(0, 256, int(rng.integers(0, 9)), dtype=np.uint8).tobytes() + \
            (b"\0" if rng.integers(0, 2) else b"")
    if kind == 6:
        return None
    if kind == 7:
        return [] if rng.integers(0, 2) else {}
    return _array(rng, int(rng.integers(0, 1000)))


def _tree(rng, depth, counter):
    """A structure exactly `depth` containers deep, every leaf kind in it."""
    n = int(rng.integers(2, 5))
    if rng.integers(0, 3) == 0:
        node = [None] * n
        keys = range(n)
    else:
        node = {}
        keys = [f"k{j}" + ("" if rng.integers(0, 2) else " é.x") for j in range(n)]
    for j, key in enumerate(keys):
        if depth > 1 and j == 0:
            child = _tree(rng, depth - 1, counter)
        else:
            child = _leaf(rng, counter[0])
            counter[0] += 1
        node[key] = child
    if isinstance(node, list):
        node.append(_text(rng))  # not numbers only: a group (see _numbers)
        if rng.integers(0, 2):
            node = tuple(node)
    return node


def _numbers(x):
    """A list or tuple of Python numbers only (nested or not): saved as one
    tensor, as NumPy sees it, and loaded back as lists."""
    return isinstance(x, (list, tuple)) and all(
        _numbers(v) if isinstance(v, (list, tuple)) else
        isinstance(v, (bool, int, float, complex)) and not isinstance(v, np.generic) for v in x)


def _expected(x):
    """What load(nested=True) gives for a saved value: tuples as lists,
    arrays as their logical (C-order, native) copies."""
    if isinstance(x, dict):
        return {k: _expected(v) for k, v in x.items()}
    if _numbers(x):
        return np.asarray(x).tolist()
    if isinstance(x, (list, tuple)):
        return [_expected(v) for v in x]
    return x


def assert_same_tree(got, want, where="<root>"):
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{where}: {type(got).__name__}, expected dict"
        assert sorted(got) == sorted(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            assert_same_tree(got[k], want[k], f"{where}/{k}")
    elif isinstance(want, list):
        assert isinstance(got, list), f"{where}: {type(got).__name__}, expected list"
        assert len(got) == len(want), f"{where}: {len(got)} items, expected {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same_tree(g, w, f"{where}/{i}")
    elif isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), f"{where}: {type(got).__name__}, expected ndarray"
        assert_same_values(got, np.ascontiguousarray(want) if want.ndim else want, where)
    elif isinstance(want, float) and math.isnan(want):
        assert type(got) is float and math.isnan(got), f"{where}: {got!r}"
    else:
        assert type(got) is type(want), f"{where}: {type(got).__name__} {got!r}, expected" \
                                        f" {type(want).__name__} {want!r}"
        assert got == want, f"{where}: {got!r} != {want!r}"


def check_h5py(group, want, where=""):
    """h5py's view of the file, group by group, against the saved value."""
    if _numbers(want):
        assert isinstance(group, h5py.Dataset), where
        assert group.attrs["tsnap_pytype"] == type(want).__name__, where
        np.testing.assert_array_equal(group[()], np.asarray(want), where)
        assert group.dtype == np.asarray(want).dtype, where
        return
    if isinstance(want, (dict, list, tuple)):
        assert isinstance(group, h5py.Group), where
        items = want.items() if isinstance(want, dict) else enumerate(want)
        assert sorted(group.keys()) == sorted(str(k) for k, _ in items), where
        if not isinstance(want, dict):
            kind = "list" if isinstance(want, list) else "tuple"
            assert group.attrs["tsnap_pytype"] == kind, where
        items = want.items() if isinstance(want, dict) else enumerate(want)
        for k, v in items:
            check_h5py(group[str(k)], v, f"{where}/{k}")
        return
    if want is None:
        assert isinstance(group, h5py.Group) and len(group) == 0, where
        assert group.attrs["tsnap_pytype"] == "none", where
        return
    ds = group
    assert isinstance(ds, h5py.Dataset), where
    if isinstance(want, str):
        info = h5py.check_string_dtype(ds.dtype)
        assert info is not None and info.encoding == "utf-8" and info.length is None, where
        assert ds.shape == ()
        assert ds.asstr()[()] == want, where  # h5py reads a str as bytes, asstr() as str
        assert ds[()] == want.encode(), where
    elif isinstance(want, bytes):
        info = h5py.check_string_dtype(ds.dtype)
        assert info is not None and info.encoding == "ascii", where
        assert ds.shape == ()
        assert bytes(ds[()]) == want.rstrip(b"\0"), where  # NumPy's bytes drop trailing NULs
        if want:
            assert ds.dtype.itemsize == len(want), where  # fixed length: every byte kept
    elif isinstance(want, (bool, int, float, complex)):
        kind = type(want).__name__
        assert ds.shape == () and ds.attrs["tsnap_pytype"] == kind, where
        dtype = {"bool": np.bool_, "int": np.int64, "float": np.float64,
                 "complex": np.complex128}[kind]
        assert ds.dtype == dtype, where
        got = ds[()]
        assert got == want or (isinstance(want, float) and math.isnan(want)
                               and math.isnan(got)), where
    else:
        want = np.asarray(want)
        if want.dtype.name in ML_DTYPES:
            return  # h5py has no such types; tsnap's own read is checked
        assert ds.shape == want.shape and ds.dtype == want.dtype.newbyteorder("<"), where
        assert "tsnap_pytype" not in ds.attrs, where
        assert_same_values(ds[()], want, where)


@pytest.mark.parametrize("depth", range(1, 7))
def test_structures_of_depth_1_to_6_round_trip_and_h5py_reads_them(tmp_path, seed, depth):
    rng = np.random.default_rng([seed, 15, depth])
    counter = [int(rng.integers(0, 10))]
    tree = {f"top{i}": _tree(rng, depth, counter) for i in range(2)}
    tree["leaves"] = {f"l{i}": _leaf(rng, i) for i in range(10)}  # every kind, at depth 2
    path = tmp_path / "ckpt.h5"
    tsnap.save(path, tree, compression="deflate")
    assert_same_tree(tsnap.load(path, nested=True), _expected(tree))
    assert_same_tree(tsnap.load(path, nested=True, mmap="auto"), _expected(tree))
    with h5py.File(path, "r") as f:
        check_h5py(f, tree)
    assert tsnap.verify(path) > 0


def test_a_state_dict_of_every_dtype_round_trips_in_one_call(tmp_path, seed):
    rng = np.random.default_rng([seed, 15, 100])
    weights = {name: values(rng, dt, (3, 5)) for name, dt in DTYPES.items()}
    ckpt = {
        "model": {"layers": [{"weight": weights[n], "bias": values(rng, DTYPES[n], (5,))}
                             for n in DTYPES]},
        "optimizer": {"state": {0: {"step": 10, "exp_avg": weights}, 1: {"step": 10}},
                      "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8,
                                        "amsgrad": False, "foreach": None,
                                        "params": list(range(len(DTYPES)))}]},
        "epoch": 3, "name": "run-7", "rng": b"\x00\x01\xff\x00",
    }
    path = tmp_path / "state.h5"
    tsnap.save(path, ckpt)
    assert_same_tree(tsnap.load(path, nested=True), _expected(ckpt))
    # the flat view: full names, 0-d arrays for the numbers, str and bytes as such
    flat = tsnap.load(path)
    assert flat["optimizer/state/0/step"].shape == () and flat["optimizer/state/0/step"] == 10
    with h5py.File(path, "r") as f:
        assert f["optimizer/state"].attrs["tsnap_pytype"] == "intkeys"
    assert flat["name"] == "run-7" and flat["rng"] == b"\x00\x01\xff\x00"
    assert "model/layers/3/weight" in flat


def test_tensors_through_dlpack_anywhere_in_the_structure(tmp_path, seed):
    rng = np.random.default_rng([seed, 15, 101])
    a = rng.standard_normal((4, 6)).astype(np.float32)
    b = rng.standard_normal(9)
    tree = {"x": [{"deep": (DLPackTensor(a, kDLFloat, 32), 1)}], "y": DLPackTensor(b, kDLFloat, 64)}
    path = tmp_path / "dl.h5"
    tsnap.save(path, tree)
    got = tsnap.load(path, nested=True)
    np.testing.assert_array_equal(got["x"][0]["deep"][0], a)
    assert got["x"][0]["deep"][1] == 1
    np.testing.assert_array_equal(got["y"], b)


def test_zero_d_arrays_stay_arrays_and_python_scalars_come_back_as_python(tmp_path):
    path = tmp_path / "s.h5"
    tsnap.save(path, {"a": {"np0d": np.array(2.5), "npscalar": np.float32(1.5), "py": 2.5,
                            "i": -(1 << 63), "j": (1 << 63) - 1, "t": True, "nan": math.nan}})
    got = tsnap.load(path, nested=True)["a"]
    assert type(got["np0d"]) is np.ndarray and got["np0d"].shape == () and got["np0d"] == 2.5
    assert type(got["npscalar"]) is np.ndarray and got["npscalar"].dtype == np.float32
    assert type(got["py"]) is float and got["py"] == 2.5
    assert got["i"] == -(1 << 63) and type(got["i"]) is int and got["j"] == (1 << 63) - 1
    assert got["t"] is True
    assert math.isnan(got["nan"])


def test_empty_containers_round_trip(tmp_path):
    path = tmp_path / "e.h5"
    tsnap.save(path, {})
    assert tsnap.load(path, nested=True) == {} and tsnap.load(path) == {}
    tree = {"e": {}, "l": [], "t": (), "n": {"e": {"e": {}}}, "none": None, "s": "", "b": b""}
    tsnap.save(path, tree)
    assert tsnap.load(path, nested=True) == {"e": {}, "l": [], "t": [], "n": {"e": {"e": {}}},
                                             "none": None, "s": "", "b": b""}
    with h5py.File(path, "r") as f:
        assert isinstance(f["e"], h5py.Group) and len(f["e"]) == 0
        assert isinstance(f["n/e/e"], h5py.Group) and len(f["n/e/e"]) == 0


@pytest.mark.parametrize("tree,cls,words", [
    ({"a": {"b/c": np.ones(2)}}, tsnap.errors.ValueError, ["'b/c'", "'/'"]),
    ({"a": [{"x/y": 1}]}, tsnap.errors.ValueError, ["'x/y'", "a/0"]),
    ({"a/b": {"c": 1}}, tsnap.errors.ValueError, ["'a/b'", "'/'"]),
    ({"a": {"": np.ones(2)}}, tsnap.errors.ValueError, ["empty", "'a'"]),
    ({"": 1}, tsnap.errors.ValueError, ["empty", "top level"]),
    ({"a": {3: np.ones(2), "x": 1}}, tsnap.errors.TypeError, ["int", "3", "'a'"]),
    ({3: np.ones(2)}, tsnap.errors.TypeError, ["int", "top level"]),
    ({"a": {True: 1}}, tsnap.errors.TypeError, ["bool", "'a'"]),
    ({"a": {("t",): 1}}, tsnap.errors.TypeError, ["tuple", "'a'"]),
    ({"a": {"big": 1 << 63}}, tsnap.errors.ValueError, ["a/big", "int64", str(1 << 63)]),
    ({"a": [-(1 << 63) - 1, "x"]}, tsnap.errors.ValueError, ["a/0", "int64"]),
    ({"a": [1 << 64]}, tsnap.errors.TypeError, ["'a'", "object"]),  # a tensor, as NumPy sees
    ({"a": {"s": "x\0y"}}, tsnap.errors.ValueError, ["a/s", "NUL"]),
    ({"a": {"s": "\udc80"}}, tsnap.errors.ValueError, ["a/s", "Unicode"]),
    ({"a": {"o": object()}}, tsnap.errors.TypeError, ["a/o", "object"]),
    ({"a": {"set": {1, 2}}}, tsnap.errors.TypeError, ["a/set"]),
    ({"a": {".": 1}}, tsnap.errors.ValueError, ["."]),
])
def test_names_and_values_hdf5_cannot_hold_are_refused_before_writing(tmp_path, tree, cls,
                                                                       words):
    path = tmp_path / "bad.h5"
    with pytest.raises(cls) as info:
        tsnap.save(path, tree)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg, msg
    for w in words:
        assert w in msg, msg
    assert os.listdir(tmp_path) == []


def test_a_group_loads_as_its_own_tree(tmp_path):
    path = tmp_path / "g.h5"
    tree = {"opt": {"groups": [{"lr": 0.5, "name": "a"}, {"lr": 0.25, "name": "b"}],
                    "state": {1: {"step": 3}}}, "w": np.arange(3)}
    tsnap.save(path, tree)
    assert tsnap.load(path, "opt/groups", nested=True) == tree["opt"]["groups"]
    assert tsnap.load(path, "opt/state", nested=True) == {1: {"step": 3}}
    assert tsnap.load(path, "opt/groups/1", nested=True) == {"lr": 0.25, "name": "b"}
    assert tsnap.load(path, "opt/groups/1/name") == "b"
    with pytest.raises(tsnap.errors.KeyError):
        tsnap.load(path, "opt/groups")  # a group, not a tensor: nested=True reads it
    with tsnap.open(path) as f, pytest.raises(tsnap.errors.TypeError) as info:
        f["opt/groups/0/name"]
    assert "is a string" in str(info.value) and "tsnap.load" in str(info.value)


def test_a_top_level_path_still_nests_as_before(tmp_path):
    path = tmp_path / "p.h5"
    tsnap.save(path, {"grid/x": np.arange(3), "grid/y": np.arange(4), "u": np.ones(2)})
    got = tsnap.load(path, nested=True)
    assert sorted(got) == ["grid", "u"] and sorted(got["grid"]) == ["x", "y"]
    assert sorted(tsnap.load(path)) == ["grid/x", "grid/y", "u"]


def test_files_h5py_wrote_load_as_their_group_tree(tmp_path, seed):
    rng = np.random.default_rng([seed, 15, 102])
    a, b, c = rng.standard_normal((3, 4)), rng.integers(0, 9, 7), rng.random(())
    path = tmp_path / "h5py.h5"
    with h5py.File(path, "w") as f:
        f["a"] = a
        f.create_group("g/empty")
        f["g/h/b"] = b
        f["g/c"] = c
        f["0"] = np.int32(5)  # names that look like list items: still a dict
        f["text"] = "héllo"
        f["raw"] = np.bytes_(b"ab")
        f["padded"] = np.array(b"ab", dtype="S5")
        f.create_dataset("ascii", data=b"xyz", dtype=h5py.string_dtype("ascii"))
    got = tsnap.load(path, nested=True)
    assert sorted(got) == ["0", "a", "ascii", "g", "padded", "raw", "text"]
    np.testing.assert_array_equal(got["a"], a)
    np.testing.assert_array_equal(got["g"]["h"]["b"], b)
    assert got["g"]["empty"] == {}
    assert isinstance(got["g"]["c"], np.ndarray) and got["g"]["c"].shape == ()
    assert got["g"]["c"] == c
    assert isinstance(got["0"], np.ndarray) and got["0"].dtype == np.int32 and got["0"] == 5
    assert got["text"] == "héllo"
    with h5py.File(path, "r") as f:  # bytes as h5py reads them
        assert got["raw"] == bytes(f["raw"][()]) == b"ab"
        assert got["padded"] == bytes(f["padded"][()]) == b"ab"
        assert got["ascii"] == f["ascii"][()] == b"xyz"


def test_a_store_saves_and_loads_nested_checkpoints(tmp_path, seed):
    rng = np.random.default_rng([seed, 15, 103])
    steps = {}
    with tsnap.Store(tmp_path / "run", keep_last=2) as s:
        for step in range(3):
            tensors_only = {"model": {"w": rng.standard_normal((4, 4)),
                                      "layers": {"0": {"b": rng.random(3)}}}}
            s.save(2 * step, tensors_only, wait=step % 2 == 0)
            full = {"model": {"w": rng.standard_normal(5)}, "opt": {"step": step, "lr": 0.5,
                                                                    "tag": "adam", "e": {}},
                    "hist": [1.0, 2.0]}
            s.save(2 * step + 1, full, wait=step % 2 == 1, attrs={"note": "n"})
            steps[2 * step], steps[2 * step + 1] = tensors_only, full
        s.wait()
        assert s.steps() == [4, 5]
        for step in (4, 5):
            assert_same_tree(s.load(step, nested=True), _expected(steps[step]))
        assert tsnap.open(s.path(5)).attrs["step"] == 5
        assert tsnap.open(s.path(5)).attrs["note"] == "n"
        with pytest.raises(tsnap.errors.FileExistsError):
            s.save(5, {"again": "x"})
    with tsnap.Store(tmp_path / "run", readonly=True) as s:
        for tensors in ({"n": 1}, {"w": np.ones(2)}):
            with pytest.raises(tsnap.StateError) as info:
                s.save(7, tensors)
            assert "read only" in str(info.value)
        assert s.steps() == [4, 5]


def test_the_command_lists_verifies_and_copies_strings_and_the_structure(tmp_path, seed):
    rng = np.random.default_rng([seed, 15, 104])
    tree = {"m": {"w": rng.standard_normal((3, 3))}, "s": "héllo", "b": b"\0x\0",
            "l": [1, 2.5, None, {}], "e": {}}
    src, dst = tmp_path / "src.h5", tmp_path / "dst.h5"
    tsnap.save(src, tree)
    cli = str(cli_path())
    ls = subprocess.run([cli, "ls", str(src)], capture_output=True, text=True)
    assert ls.returncode == 0, ls.stderr
    rows = {line.split()[0]: line.split()[1] for line in ls.stdout.splitlines()[1:-1]}
    assert rows["s"] == "str" and rows["b"] == "bytes" and rows["m/w"] == "float64"
    verify = subprocess.run([cli, "verify", str(src)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    cp = subprocess.run([cli, "cp", "-q", str(src), str(dst)], capture_output=True, text=True)
    assert cp.returncode == 0 and cp.stderr == "", cp.stderr
    assert_same_tree(tsnap.load(dst, nested=True), _expected(tree))
    diff = subprocess.run([cli, "diff", str(src), str(dst)], capture_output=True, text=True)
    assert diff.returncode == 0, diff.stdout + diff.stderr
    other = tmp_path / "other.h5"
    tsnap.save(other, dict(tree, s="hello"))
    diff = subprocess.run([cli, "diff", str(src), str(other)], capture_output=True, text=True)
    assert diff.returncode == 1 and "s: strings differ" in diff.stdout, diff.stdout
    out = tmp_path / "npy"
    export = subprocess.run([cli, "export", "-q", str(src), "-o", str(out)], capture_output=True,
                            text=True)
    assert export.returncode == 0, export.stderr
    assert "'s' is a string (str), not a tensor: not exported" in export.stderr
    np.testing.assert_array_equal(np.load(out / "m" / "w.npy"), tree["m"]["w"])
    info = subprocess.run([cli, "info", str(src)], capture_output=True, text=True)
    assert info.returncode == 0 and "2 single strings" in info.stdout, info.stdout


def test_a_distributed_save_refuses_what_it_cannot_write_clearly(tmp_path):
    from tsnap import _save
    for bad, what in ({"a": {"w": np.ones(2), "tag": "x"}}, "'a/tag'"), \
            ({"a": {"l": [1, None]}}, "'a/l'"), ({"a": {"e": {}}}, "'a/e'"):
        with pytest.raises(tsnap.errors.TypeError) as info:
            _save._flat_tensors(str(tmp_path / "d.h5"), bad)
        assert what in str(info.value) and "comm=" in str(info.value)
    flat = _save._flat_tensors("d.h5", {"a": {"w": np.ones(2), "n": 3, "l": [1, 2]},
                                        "b/c": np.zeros(1)})
    assert sorted(flat) == ["a/l", "a/n", "a/w", "b/c"]


def test_pytorch_state_dicts_when_torch_is_installed(tmp_path):
    try:
        import torch
    except ImportError:
        print("skipped: PyTorch is not installed (it is optional; the same protocols are"
              " tested with DLPack producers above)")
        pytest.skip("PyTorch is not installed")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(11, 7)).square().sum().backward()
    opt.step()
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 1}
    path = tmp_path / "torch.h5"
    tsnap.save(path, ckpt)
    got = tsnap.load(path, nested=True)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(got["model"][k], v.numpy())
    state = opt.state_dict()
    for pid, st in state["state"].items():
        for k, v in st.items():
            want = v.numpy() if torch.is_tensor(v) else v
            np.testing.assert_array_equal(got["optimizer"]["state"][pid][k], want)
    group = got["optimizer"]["param_groups"][0]
    assert group["lr"] == 1e-3 and group["betas"] == [0.9, 0.999]  # a tuple, back as a list
    assert group["params"] == state["param_groups"][0]["params"]
    assert got["epoch"] == 1

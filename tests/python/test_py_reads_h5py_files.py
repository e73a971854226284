"""Files written by h5py, loaded by tsnap and compared with h5py's own read:
contiguous, compact and chunked layouts, gzip+shuffle, fletcher32 and lzf
filters, big-endian types, nested groups, a userblock, the custom float types.
Copies always equal h5py's read; mmap=True maps exactly the datasets that lie
flat and native in the file and otherwise says why; mmap="auto" reads all.

Sources: the committed golden files of tests/data, the same kinds written now
with this run's random data (tests/data/make_golden.py), and a few more."""
import h5py
import numpy as np
import pytest

import tsnap
from conftest import DATA, GOLDEN, _make_golden
from pyhelpers import assert_same_values, expected_from_h5py, is_mapped

CASES = [(f, d) for f in sorted(GOLDEN) for d in sorted(GOLDEN[f])]
ACCEPTED = [(f, d) for f, d in CASES if "refuse" not in GOLDEN[f][d]]
REFUSED = [(f, d) for f, d in CASES if "refuse" in GOLDEN[f][d]]

# Words one of which a NotMappableError (and Tensor.map_status) must contain.
REASON_WORDS = {
    "FILTERED": ("compress", "filter"),
    "BYTE_ORDER": ("byte order", "endian"),
    "TYPE": ("type",),
    "NOT_ALLOCATED": ("allocated", "written"),
    "SCATTERED": ("chunk", "scattered"),
    "LAYOUT": ("compact", "layout"),
    "TRUNCATED": ("truncated", "shorter"),
    # complex32 has no NumPy dtype: it always loads as a complex64 copy
    "COMPLEX32": ("complex32",),
}


def _extras(path, rng):
    """Filters and layouts the golden files lack: lzf (h5py's own filter
    32000, decoded by tsnap's built-in decoder: no plug-in), gzip level 9
    with shuffle and fletcher32, a deep nest, a big-endian 0-d dataset."""
    exp = {}
    with h5py.File(path, "w") as f:
        # compressible data: lzf stores a chunk it cannot shrink unfiltered
        f.create_dataset("lzf", data=rng.integers(0, 4, (40, 7)).astype(np.float64),
                         chunks=(8, 7), compression="lzf")
        exp["lzf"] = {"tsnap_dtype": "float64", "map": "FILTERED"}
        f.create_dataset("lzf_shuffle", data=rng.integers(-9, 9, (33,), dtype=np.int32),
                         chunks=(10,), compression="lzf", shuffle=True)
        exp["lzf_shuffle"] = {"tsnap_dtype": "int32", "map": "FILTERED"}
        smooth = np.cumsum(rng.standard_normal((64, 50)), axis=1).astype(np.float32)
        f.create_dataset("gzip9_shuffle_fletcher", data=smooth, chunks=(16, 25),
                         compression="gzip", compression_opts=9, shuffle=True, fletcher32=True)
        exp["gzip9_shuffle_fletcher"] = {"tsnap_dtype": "float32", "map": "FILTERED"}
        f.create_dataset("a/b/c/d/e/deep", data=rng.integers(0, 2**63, (3, 2), dtype=np.uint64))
        exp["a/b/c/d/e/deep"] = {"tsnap_dtype": "uint64", "map": "OK"}
        f.create_dataset("be_contiguous_0d", data=np.array(rng.standard_normal(), ">f8"))
        exp["be_contiguous_0d"] = {"tsnap_dtype": "float64", "map": "BYTE_ORDER"}
        for name in ("lzf", "lzf_shuffle", "gzip9_shuffle_fletcher"):
            dsid = f[name].id
            masks = {dsid.get_chunk_info(i).filter_mask for i in range(dsid.get_num_chunks())}
            assert masks == {0}, f"every chunk of {name} went through its filters"
    return exp


class Source:
    def __init__(self, directory, expect):
        self.dir = directory
        self.expect = expect

    def path(self, fname):
        return self.dir / fname


@pytest.fixture(scope="module", params=["committed", "fresh"])
def source(request, seed, tmp_path_factory):
    if request.param == "committed":
        return Source(DATA, GOLDEN)
    out = tmp_path_factory.mktemp("py-h5py-fresh")
    return Source(out, _make_golden().build(out, np.random.default_rng([seed, 31])))


@pytest.fixture(scope="module")
def extras(seed, tmp_path_factory):
    out = tmp_path_factory.mktemp("py-h5py-extras")
    exp = _extras(out / "extras.h5", np.random.default_rng([seed, 32]))
    return Source(out, {"extras.h5": exp})


EXTRA_NAMES = ["lzf", "lzf_shuffle", "gzip9_shuffle_fletcher", "a/b/c/d/e/deep",
               "be_contiguous_0d"]


def _check_copy(exp, path, name, mode):
    with h5py.File(path, "r") as f:
        want = expected_from_h5py(f[name], exp["tsnap_dtype"])
    got = tsnap.load(path, name, mmap=mode)
    assert isinstance(got, np.ndarray)
    assert_same_values(got, want, f"{path.name}:{name} mmap={mode}")
    assert got.dtype.byteorder in "=|", "returned native-endian"


def _check_mmap(exp, path, name):
    with h5py.File(path, "r") as f:
        want = expected_from_h5py(f[name], exp["tsnap_dtype"])
    status = exp.get("map")
    if exp["tsnap_dtype"] == "complex32":
        status = "COMPLEX32"
    with tsnap.open(path) as f:
        t = f[name]
        mappable, map_status = t.mappable, t.map_status
    try:
        got = tsnap.load(path, name, mmap=True)
    except tsnap.NotMappableError as e:
        message = str(e)
        assert status not in ("OK", "EMPTY"), f"{name} lies flat and native, yet: {message}"
        assert str(path) in message and name in message, f"names file and tensor: {message}"
        assert not mappable and map_status, "Tensor.mappable/map_status agree with load"
        if status:
            words = REASON_WORDS[status]
            assert any(w in message.lower() for w in words), f"says {words}: {message}"
            if status != "COMPLEX32":  # a compound complex32 has two reasons
                assert any(w in map_status.lower() for w in words), map_status
        return
    assert status in (None, "OK", "EMPTY"), f"{name} ({status}) must not map"
    assert mappable and map_status is None, "Tensor.mappable/map_status agree with load"
    assert is_mapped(got) and not got.flags.writeable
    assert_same_values(got, want, f"{path.name}:{name} mmap=True")


@pytest.mark.parametrize("mode", [False, "auto"], ids=["copy", "auto"])
@pytest.mark.parametrize("fname,name", ACCEPTED, ids=[f"{f}:{d}" for f, d in ACCEPTED])
def test_load_reads_each_h5py_dataset_as_h5py_does(source, fname, name, mode):
    _check_copy(source.expect[fname][name], source.path(fname), name, mode)


@pytest.mark.parametrize("fname,name", ACCEPTED, ids=[f"{f}:{d}" for f, d in ACCEPTED])
def test_mmap_maps_each_h5py_dataset_that_lies_flat_and_says_why_for_the_others(
        source, fname, name):
    _check_mmap(source.expect[fname][name], source.path(fname), name)


@pytest.mark.parametrize("mode", [False, True, "auto"], ids=["copy", "mmap", "auto"])
@pytest.mark.parametrize("name", EXTRA_NAMES)
def test_load_reads_lzf_gzip9_fletcher32_and_deep_datasets_as_h5py_does(extras, name, mode):
    exp = extras.expect["extras.h5"][name]
    path = extras.path("extras.h5")
    if mode is True:
        _check_mmap(exp, path, name)
    else:
        _check_copy(exp, path, name, mode)


@pytest.mark.parametrize("fname", sorted(GOLDEN))
def test_open_lists_the_datasets_of_an_h5py_file_in_sorted_order(source, fname):
    names = []
    with h5py.File(source.path(fname), "r") as f:
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    with tsnap.open(source.path(fname)) as f:
        assert list(f.keys()) == sorted(names, key=lambda n: n.encode())
        assert f.format_version == 0, "h5py's files are not tsnap's"


@pytest.mark.parametrize("fname", [f for f in sorted(GOLDEN)
                                   if not any("refuse" in e for e in GOLDEN[f].values())])
def test_load_without_a_name_reads_a_whole_h5py_file(source, fname):
    path = source.path(fname)
    got = tsnap.load(path, mmap="auto")
    assert sorted(got) == sorted(source.expect[fname])
    with h5py.File(path, "r") as f:
        for name, arr in got.items():
            want = expected_from_h5py(f[name], source.expect[fname][name]["tsnap_dtype"])
            assert_same_values(arr, want, name)


@pytest.mark.parametrize("fname,name", REFUSED, ids=[f"{f}:{d}" for f, d in REFUSED])
def test_a_dataset_of_a_type_tsnap_cannot_represent_raises_type_error_naming_it(
        source, fname, name):
    path = source.path(fname)
    for mode in (False, True, "auto"):
        with pytest.raises(TypeError) as info:
            tsnap.load(path, name, mmap=mode)
        assert isinstance(info.value, tsnap.Error)
        assert name in str(info.value) and str(path) in str(info.value), str(info.value)
    # the rest of the file stays readable
    assert tsnap.load(path, "ok").dtype == np.float32


def test_a_userblock_does_not_shift_what_a_mapped_load_sees(source):
    path = source.path("h5py_userblock.h5")
    with h5py.File(path, "r") as f:
        want = {n: f[n][()] for n in ("chunked", "contiguous")}
    for name, value in want.items():
        got = tsnap.load(path, name, mmap=True)
        assert is_mapped(got)
        assert_same_values(got, value, name)

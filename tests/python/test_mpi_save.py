"""Distributed snapshots from Python: tsnap.save(comm=...) and
tsnap.Store(comm=...) under real mpirun launches of 1 to 4 ranks
(tests/python/mpi/write.py), every global tensor read back by h5py alone
and by tsnap.load without MPI, equal to the array the blocks were cut
from; every refusal raised on every rank with no file left; and a restart
on 1, 2 and 3 ranks reading its own, differently cut blocks of what 4
ranks wrote, from another working directory, after the files moved,
mapping a region that lies inside one block with no copy."""
import shutil
import sys
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - h5py reads the zstd parts as a user would
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "mpi"))
import cases  # noqa: E402
import launch  # noqa: E402
import pyhelpers  # noqa: E402

import tsnap  # noqa: E402

RANKS = [1, 2, 3, 4]
_written = {}


@pytest.fixture(scope="module")
def written(tmp_path_factory, seed):
    """written(n) -> the folder write.py filled on n ranks (once each)."""
    launch.require()

    def get(n):
        if n not in _written:
            out = tmp_path_factory.mktemp(f"mpi-write-{n}")
            launch.mpirun(n, "write.py", out, seed)
            _written[n] = out
        return _written[n]

    return get


def section(out, tag, n):
    got = cases.results(out, tag, n)
    for r, g in enumerate(got):
        assert "crash" not in g, f"rank {r} of {n}: {g.get('crash')}"
    return got


def expected(seed, name):
    dtype, shape, _ = cases.dtype_tensors()[name]
    return dtype, cases.global_array(seed, name, dtype, shape)


@pytest.mark.parametrize("n", RANKS)
def test_every_dtype_and_cut_reads_as_the_global_tensor_in_h5py_and_tsnap(written, seed, n):
    out = written(n)
    section(out, "variants", n)
    for variant in cases.VARIANTS:
        path = out / f"{variant}.h5"
        with h5py.File(path, "r") as f:
            assert f.attrs["time"] == 2.5 and f.attrs["note"] == f"{n} ranks"
            for name in cases.dtype_tensors():
                dtype, want = expected(seed, name)
                ds = f[name]
                assert ds.shape == want.shape, (variant, name)
                got = pyhelpers.expected_from_h5py(ds, dtype)
                pyhelpers.assert_same_values(got, want, f"{variant} {name} (h5py)")
            for name, want in cases.replicated(seed).items():
                np.testing.assert_array_equal(f[name][()], want)
            c32 = pyhelpers.expected_from_h5py(f[cases.COMPLEX32[0]], "complex32")
            pyhelpers.assert_bits_equal(c32, cases.complex32_global(seed), "complex32 (h5py)")
        loaded = tsnap.load(path)
        pyhelpers.assert_bits_equal(loaded[cases.COMPLEX32[0]], cases.complex32_global(seed),
                                    f"{variant} complex32 (tsnap.load)")
        for name in cases.dtype_tensors():
            pyhelpers.assert_same_values(loaded[name], expected(seed, name)[1],
                                         f"{variant} {name} (tsnap.load)")
        for name, want in cases.replicated(seed).items():
            pyhelpers.assert_same_values(loaded[name], want, name)
        tsnap.verify(path)  # every part's checksums (test_a_damaged_part_fails_verify)


@pytest.mark.parametrize("n", RANKS)
def test_a_replaced_snapshot_leaves_only_its_own_parts(written, n):
    out = written(n)
    section(out, "variants", n)
    parts = out / "plain.h5.parts"
    saves = [p for p in parts.iterdir()] if parts.exists() else []
    assert len(saves) <= 1, f"{parts}: {saves}"
    with h5py.File(out / "plain.h5", "r") as f:
        sources = {src.file_name for src in f["long"].virtual_sources()}
    for src in sources:
        assert not Path(src).is_absolute(), src
        assert (out / src).is_file(), src


@pytest.mark.parametrize("n", [2, 3])
def test_dlpack_blocks_are_released_exactly_once_whatever_the_save_does(written, n):
    got = section(written(n), "dlpack", n)
    for r in range(n):
        assert got[r]["equal"] == [True, True], r
        assert got[r]["exports"] == 41 and got[r]["deletes"] == 41, got[r]
        assert got[r]["stray"] == 0 and got[r]["live"] == 0, got[r]


@pytest.mark.parametrize("n", [3])
def test_a_damaged_part_fails_verify_naming_the_tensor(written, tmp_path, n):
    out = written(n)
    section(out, "variants", n)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("*.json", "refused", "store"))
    with h5py.File(copy / "plain.h5", "r") as f:
        sources = sorted({src.file_name for src in f["long"].virtual_sources()})
    part = copy / sources[-1]
    with h5py.File(part, "r") as f:
        ds = f["long"]
        where = ds.id.get_offset() if ds.chunks is None else ds.id.get_chunk_info(0).byte_offset
    with open(part, "r+b") as f:
        f.seek(where + 3)
        byte = f.read(1)
        f.seek(where + 3)
        f.write(bytes([byte[0] ^ 0x40]))
    with pytest.raises(tsnap.IntegrityError, match="long"):
        tsnap.verify(copy / "plain.h5")
    tsnap.verify(out / "plain.h5")


REFUSALS = {
    # what -> (the ranks the message must name, given n), checked for n >= 2
    "overlap": lambda n: [0, 1],
    "gap": lambda n: [],  # no rank holds the rows: the message names them
    "outside": lambda n: [n - 1],
    "dtype": lambda n: [n - 1],
    "shape": lambda n: [n - 1],
    "missing": lambda n: [n - 1],
    "bad-input": lambda n: [n - 1],
    "no-export": lambda n: [n - 1],
    "dlpack-ndim": lambda n: [n - 1],
    "put-fails": lambda n: [n - 1],
}
NAMED = {"bad-input": "w", "no-export": "w", "dlpack-ndim": "w", "missing": "v",
         "put-fails": None}


@pytest.mark.parametrize("n", [2, 3, 4])
def test_every_refusal_raises_the_same_error_on_every_rank_and_leaves_no_file(written, n):
    out = written(n)
    got = section(out, "refusals", n)
    for what, ranks in REFUSALS.items():
        first = got[0][what]
        assert first["class"] is not None, f"{what}: the save was not refused"
        assert first["tsnap"], f"{what}: {first}"
        msg = first["message"]
        for r in range(n):
            assert got[r][what]["class"] == first["class"], (what, r, got[r][what])
            assert got[r][what]["message"] == msg, (what, r, got[r][what])
            assert got[r][what]["left"] == [], (what, r, got[r][what]["left"])
        name = NAMED.get(what, "u")
        assert name is None or f"'{name}'" in msg, (what, msg)
        assert f"{what}.h5" in msg, (what, msg)
        numbers = msg.replace(",", " ").replace("-", " ").replace(")", " ").split()
        for r in ranks(n):
            assert str(r) in numbers or f"{r}-" in msg, (what, r, msg)


@pytest.mark.parametrize("n", RANKS)
def test_the_distributed_store_saves_in_the_background_and_agrees_on_every_rank(written, seed,
                                                                                n):
    out = written(n)
    got = section(out, "store", n)
    for r in range(n):
        assert got[r]["empty"] == [[], None]
        assert got[r]["steps"] == [[0, 1], [1, 2, 3], [3, 4, 5]], r
        assert got[r]["latest"] == [1, 3, 5], r
        assert got[r]["after"][:2] == [[3, 4, 5], 5], r
        assert got[r]["refused"] is not None and got[r]["refused"]["tsnap"], r
        assert got[r]["refused"]["message"] == got[0]["refused"]["message"]
        assert "'fields/u'" in got[r]["refused"]["message"]
        assert got[r]["no-export"] == got[0]["no-export"] and got[r]["no-export"]["tsnap"]
        assert "'w'" in got[r]["no-export"]["message"], got[r]["no-export"]
        assert f"rank {n - 1}" in got[r]["no-export"]["message"], got[r]["no-export"]
        assert got[r]["low-level"] is not None, r  # and no rank hung
        assert all(got[r]["loads"].values()), got[r]["loads"]
        assert got[r]["load_keys"] == ["count", "fields/m", "fields/u"]
    store = out / "store"
    names = sorted(p.name for p in store.iterdir() if not p.name.startswith("."))
    assert [x for x in names if x.endswith(".h5")] == [
        f"step-{s:012d}.h5" for s in (3, 4, 5)], names
    assert all(x.endswith(".h5") or x.endswith(".h5.parts") for x in names), names
    assert sorted(x for x in names if x.endswith(".parts")) == [
        f"step-{s:012d}.h5.parts" for s in (3, 4, 5)], names
    for step in (3, 4, 5):
        path = store / f"step-{step:012d}.h5"
        _, whole = cases.step_tensors(seed, step, n, 0)
        with h5py.File(path, "r") as f:
            assert f.attrs["step"] == step and f.attrs["time"] == step / 4
            for name, want in whole.items():
                np.testing.assert_array_equal(f[name][()], want, err_msg=f"{step} {name}")
        tsnap.verify(path)


@pytest.fixture(scope="module")
def moved_four(written, tmp_path_factory):
    """What 4 ranks wrote, moved to another folder (the snapshots and their
    parts together)."""
    src = written(4)
    dst = tmp_path_factory.mktemp("moved") / "snapshots"
    shutil.copytree(src, dst)
    shutil.rmtree(src)
    _written.pop(4)
    return dst


@pytest.mark.parametrize("n", [1, 2, 3])
def test_a_restart_on_fewer_ranks_reads_its_own_blocks_of_what_four_wrote(moved_four, seed,
                                                                          tmp_path, n):
    store = moved_four / "store"
    before = tsnap.Store(store, readonly=True).steps()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    out = tmp_path / "out"
    launch.mpirun(n, "restart.py", moved_four, out, seed, cwd=elsewhere)
    got = section(out, "restart", n)
    for r in range(n):
        assert got[r]["mismatches"] == [], got[r]["mismatches"]
        assert got[r]["blocks"] > len(cases.dtype_tensors()), got[r]
        assert got[r]["latest"] == before[-1], got[r]
        assert got[r]["readonly"] == [before, before[-1]], got[r]
        assert got[r]["maps"] > 0 and got[r]["mapped"] == got[r]["maps"], got[r]
        assert got[r]["refused"] > 0 and got[r]["wrongly_mapped"] == [], got[r]
    # the store went on from its latest step on n ranks, keeping 3 steps
    after = tsnap.Store(store, readonly=True).steps()
    assert after == before[1:] + [before[-1] + 1]
    _, whole = cases.step_tensors(seed, after[-1], n, 0)
    loaded = tsnap.load(store / f"step-{after[-1]:012d}.h5")
    for name, want in whole.items():
        np.testing.assert_array_equal(loaded[name], want, err_msg=name)
    assert not (store / f"step-{before[0]:012d}.h5.parts").exists()

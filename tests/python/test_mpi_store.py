"""tsnap.Store(comm=...) when things go wrong, under real mpirun launches:
a rank that may not write large files fails the step on every rank and
leaves the earlier steps whole; a rank killed with SIGKILL at random
moments of collective saves leaves every listed step loadable and
verified, no torn step, and the next store on the folder cleans what the
killed saves left.  The files are checked by h5py and tsnap without MPI."""
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "mpi"))
import cases  # noqa: E402
import launch  # noqa: E402

import tsnap  # noqa: E402


def check_step(path, seed, step):
    """The step file and its parts hold exactly the step's tensors."""
    _, whole = cases.step_tensors(seed, step, 1, 0)
    loaded = tsnap.load(path)
    assert sorted(loaded) == sorted(whole), path
    for name, want in whole.items():
        np.testing.assert_array_equal(loaded[name], want, err_msg=f"{path} {name}")
    tsnap.verify(path)
    with h5py.File(path, "r") as f:
        assert f.attrs["step"] == step
        np.testing.assert_array_equal(f["fields/u"][()], whole["fields/u"])


def referenced_parts(path):
    """The part files the snapshot's virtual datasets name."""
    out = set()

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.is_virtual:
            out.update(src.file_name for src in obj.virtual_sources())

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return out


def assert_clean(store):
    """Only committed steps and the parts they refer to: no temporary
    file, no parts of a failed save."""
    steps = {p.name for p in store.glob("step-*.h5")}
    wanted = set()
    for name in steps:
        wanted |= {str(Path(src)) for src in referenced_parts(store / name)}
    for p in store.rglob("*"):
        rel = str(p.relative_to(store))
        if p.is_dir():
            assert any(w.startswith(rel + "/") for w in wanted), f"left over: {rel}"
        elif p.name not in steps and p.name != ".tsnap-store.lock":
            assert rel in wanted, f"left over: {rel}"


def test_a_full_disk_on_one_rank_fails_the_step_on_every_rank(tmp_path, seed):
    launch.require()
    store, out, n = tmp_path / "store", tmp_path / "out", 3
    launch.mpirun(n, "fsize.py", store, seed, out, 1)
    got = cases.results(out, "fsize", n)
    for r in range(n):
        assert got[r]["wait"] is not None, (r, got[r])
        assert got[r]["wait"] == got[0]["wait"], r
        # the background save fails at the save or at the wait, on every rank alike
        assert (got[r]["background"] is None) != (got[r]["background-wait"] is None), got[r]
        assert got[r]["background"] == got[0]["background"]
        assert got[r]["background-wait"] == got[0]["background-wait"]
        assert got[r]["steps"] == [0, 1] and got[r]["latest"] == 1, got[r]
        assert got[r]["after"] is None, got[r]["after"]
        assert got[r]["steps-after"] == [0, 1, 4]
    message = got[0]["wait"]["message"]
    assert "step-000000000002.h5" in message and "rank 1" in message, message
    for step in (0, 1):
        check_step(store / f"step-{step:012d}.h5", seed, step)
    assert not (store / "step-000000000002.h5").exists()
    assert not (store / "step-000000000003.h5").exists()
    assert_clean(store)


def test_a_rank_killed_during_collective_saves_leaves_only_whole_steps(tmp_path, seed):
    launch.require()
    store = tmp_path / "store"
    rng = np.random.default_rng([seed, 4242])
    seen = set()
    for attempt in range(5):
        n = int(rng.integers(2, 4))
        victim = int(rng.integers(0, n))
        delay = float(rng.uniform(0.05, 0.8))
        proc = launch.mpirun(n, "kill.py", store, seed, victim, delay, 400, check=False,
                             timeout=120)
        what = f"attempt {attempt}: {n} ranks, rank {victim} killed at {delay:.2f} s"
        assert proc.returncode != 0 or "not killed" in proc.stdout, what
        steps = tsnap.Store(store, readonly=True).steps()
        assert steps, f"{what}: no step committed\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        for step in steps:
            check_step(store / f"step-{step:012d}.h5", seed, step)
        seen |= set(steps)
        # no step file that is not whole (listed ones were checked above)
        assert sorted(int(p.name[5:17]) for p in store.glob("step-*.h5")) == steps
    # a new store on the folder cleans what the killed saves left
    launch.mpirun(2, "kill.py", store, seed, -1, 0, 1)
    steps = tsnap.Store(store, readonly=True).steps()
    assert len(steps) <= 4 and steps[-1] == max(seen) + 1
    for step in steps:
        check_step(store / f"step-{step:012d}.h5", seed, step)
    assert_clean(store)

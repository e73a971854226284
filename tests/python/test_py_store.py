"""tsnap.Store: steps, latest, load, keep_last, background saves with
their failures, one writer at a time, and what a kill, a file-size limit
or a read-only directory leave behind.  h5py reads every step file as the
independent reference."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import pytest

import tsnap
from pyhelpers import run_python

HERE = os.path.dirname(os.path.abspath(__file__))


def state(rng, step):
    """A snapshot's tensors: several dtypes and layouts, from `rng`."""
    u = rng.standard_normal((37, 11)).astype(np.float32)
    return {
        "fields/u": u,
        "fields/u_t": u.T,  # strided
        "mask": rng.integers(0, 2, size=(5, 3)).astype(bool),
        "z": (rng.standard_normal(13) + 1j * rng.standard_normal(13)),
        "count": np.array(step, dtype=np.int64),
        "rev": rng.integers(-1000, 1000, size=17).astype(np.int16)[::-1],
    }


def check_step_file(path, want, step):
    with h5py.File(path, "r") as f:
        assert f.attrs["step"] == step
        for name, a in want.items():
            got = f[name][()]
            assert got.dtype == a.dtype and got.shape == a.shape, name
            np.testing.assert_array_equal(got, a, err_msg=name)


def test_steps_latest_path_and_load(tmp_path, seed):
    rng = np.random.default_rng([seed, 81])
    saved = {}
    with tsnap.Store(tmp_path / "run") as s:
        assert s.steps() == [] and s.latest() is None
        with pytest.raises(KeyError):
            s.load()
        for step in (3, 0, 12, 7):
            saved[step] = state(rng, step)
            s.save(step, saved[step], attrs={"time": step * 0.5})
        assert s.steps() == [0, 3, 7, 12] and s.latest() == 12
        assert os.path.basename(s.path(7)) == "step-000000000007.h5"
        for step, want in saved.items():
            check_step_file(s.path(step), want, step)
            got = s.load(step)
            assert set(got) == set(want)
            np.testing.assert_array_equal(got["fields/u_t"], want["fields/u_t"])
        np.testing.assert_array_equal(s.load(name="z"), saved[12]["z"])
        with pytest.raises(KeyError):
            s.load(5)
        with pytest.raises(tsnap.Error, match="exists"):
            s.save(3, saved[3])  # a step is never replaced
        for bad in (-1, 1.5, "4", True):
            with pytest.raises(ValueError):
                s.save(bad, saved[3])
        with pytest.raises(ValueError, match="step"):
            s.save(99, saved[3], attrs={"step": 1})
        last = s.path(12)
    assert tsnap.verify(last) == len(saved[12])


def test_keep_last_keeps_the_newest_steps(tmp_path, seed):
    rng = np.random.default_rng([seed, 82])
    with tsnap.Store(tmp_path / "run", keep_last=2) as s:
        for step in range(6):
            s.save(step, state(rng, step), wait=step % 2 == 0)
        s.wait()
        assert s.steps() == [4, 5]
        assert sorted(os.listdir(tmp_path / "run")) == [
            ".tsnap-store.lock", "step-000000000004.h5", "step-000000000005.h5"]
    for bad in (0, -1, 2.0):
        with pytest.raises(ValueError, match="keep_last"):
            tsnap.Store(tmp_path / "other", keep_last=bad)


def test_background_saves_keep_what_the_arrays_held_when_save_returned(tmp_path, seed):
    rng = np.random.default_rng([seed, 83])
    want = {}
    live = {"u": np.empty((64, 33), np.float32), "k": np.empty(100, np.int64)}
    with tsnap.Store(tmp_path / "bg", staging_bytes=64 << 10) as s:  # room for a few steps
        for step in range(10):
            live["u"][...] = rng.standard_normal(live["u"].shape)
            live["k"][...] = rng.integers(-(1 << 40), 1 << 40, size=100)
            tensors = {"u": live["u"], "u_t": live["u"].T, "k": live["k"][::-3]}
            want[step] = {k: np.array(v) for k, v in tensors.items()}
            s.save(step, tensors, attrs={"note": f"step {step}"}, wait=False)
            for a in live.values():  # the caller reuses its memory at once
                a[...] = 0
        s.wait()
        assert s.steps() == list(range(10))
        for step in range(10):
            check_step_file(s.path(step), want[step], step)
            assert tsnap.open(s.path(step)).attrs["note"] == f"step {step}"


def test_a_background_failure_is_raised_by_wait_or_the_next_save(tmp_path, seed):
    rng = np.random.default_rng([seed, 84])
    s = tsnap.Store(tmp_path / "run")
    first = state(rng, 1)
    s.save(1, first)
    s.save(1, state(rng, 1), wait=False)  # accepted now, refused in the background
    with pytest.raises(tsnap.Error) as info:
        s.wait()
    assert "background save failed" in str(info.value) and "step-000000000001" in str(info.value)
    s.wait()  # raised once
    s.save(1, state(rng, 1), wait=False)
    with pytest.raises(tsnap.Error, match="background save failed"):
        s.save(2, state(rng, 2))  # the next save raises it, and writes nothing
    assert s.steps() == [1]
    check_step_file(s.path(1), first, 1)
    s.save(1, state(rng, 1), wait=False)
    with pytest.raises(tsnap.Error, match="background save failed"):
        s.close()  # closing raises it too
    with pytest.raises(ValueError, match="closed"):
        s.steps()


def test_one_writer_at_a_time_and_readers_are_never_blocked(tmp_path, seed):
    rng = np.random.default_rng([seed, 85])
    with tsnap.Store(tmp_path / "run") as s:
        s.save(0, state(rng, 0))
        with pytest.raises(tsnap.StateError, match="another writer"):
            tsnap.Store(tmp_path / "run")
        code = ("import sys, tsnap\n"
                "try:\n    tsnap.Store(sys.argv[1])\nexcept tsnap.StateError as e:\n"
                "    print('refused:', e)\n")
        proc = run_python(code, tmp_path / "run")
        assert proc.returncode == 0 and "refused: " in proc.stdout, proc.stderr
        reader = tsnap.Store(tmp_path / "run", readonly=True)
        assert reader.steps() == [0]
        with pytest.raises(tsnap.StateError, match="read only"):
            reader.save(1, state(rng, 1))
        reader.close()
    with tsnap.Store(tmp_path / "run") as s:  # the lock went with the first
        assert s.latest() == 0
    with pytest.raises(FileNotFoundError):
        tsnap.Store(tmp_path / "absent", readonly=True)


SAVER = """
import sys, numpy as np, tsnap
directory, first, wait = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
s = tsnap.Store(directory, keep_last=3, chunk_bytes=1 << 16)
print("ready", flush=True)
step = first
while True:
    rng = np.random.default_rng(step)
    s.save(step, {"field": rng.standard_normal((256, 1024)).astype(np.float32)}, wait=wait)
    step += 1
"""


def test_a_saver_killed_at_random_moments_leaves_every_committed_step_whole(tmp_path, seed):
    rng = np.random.default_rng([seed, 86])
    directory = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE] + [p for p in sys.path if p]))
    first, committed = 0, 0
    for run in range(12):
        child = subprocess.Popen([sys.executable, "-c", SAVER, str(directory), str(first),
                                  str(run % 2)], stdout=subprocess.PIPE, env=env)
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(float(rng.uniform(0, 0.3)))
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL
        reader = tsnap.Store(directory, readonly=True)
        steps = reader.steps()
        for step in steps:  # every listed step loads, verifies, holds its data
            want = np.random.default_rng(step).standard_normal((256, 1024)).astype(np.float32)
            np.testing.assert_array_equal(reader.load(step, "field", verify=True), want)
        reader.close()
        if steps:
            committed += max(0, steps[-1] + 1 - first)
            first = steps[-1] + 1
    with tsnap.Store(directory):  # the next writer removes the leftovers
        pass
    assert not [n for n in os.listdir(directory) if n.endswith(".tsnap-tmp")]
    assert committed > 0, "no step was committed in 12 runs"


LIMITED = """
import resource, signal, sys, numpy as np, tsnap
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
s = tsnap.Store(sys.argv[1])
try:
    s.save(1, {"big": np.ones((1024, 1024), np.float32)})
except tsnap.Error as e:
    print("refused:", e)
"""


def test_a_file_size_limit_is_a_clear_error_and_earlier_steps_stay(tmp_path, seed):
    rng = np.random.default_rng([seed, 87])
    directory = tmp_path / "limited"
    first = state(rng, 0)
    with tsnap.Store(directory) as s:
        s.save(0, first)
    proc = run_python(LIMITED, directory)
    assert proc.returncode == 0, proc.stderr
    assert "refused: " in proc.stdout and "step-000000000001.h5" in proc.stdout, proc.stdout
    assert "File too large" in proc.stdout, proc.stdout
    with tsnap.Store(directory, readonly=True) as s:
        assert s.steps() == [0]
        check_step_file(s.path(0), first, 0)


READ_ONLY = """
import os, sys, tsnap
if os.geteuid() == 0:  # root writes anywhere: be nobody
    os.setgid(65534)
    os.setuid(65534)
try:
    tsnap.Store(sys.argv[1])
except tsnap.Error as e:
    print("refused:", type(e).__name__, e)
"""


def test_a_read_only_directory_is_a_clear_error():
    parent = tempfile.mkdtemp()  # one that nobody may enter
    directory = os.path.join(parent, "ro")
    try:
        os.chmod(parent, 0o755)
        os.mkdir(directory, 0o555)
        os.chmod(directory, 0o555)
        proc = run_python(READ_ONLY, directory)
    finally:
        os.chmod(directory, 0o755)
        shutil.rmtree(parent)
    assert proc.returncode == 0, proc.stderr
    assert "refused: " in proc.stdout and "cannot be written" in proc.stdout, proc.stdout
    assert directory in proc.stdout

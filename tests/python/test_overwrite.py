"""Saving over an existing file: the replace is atomic whatever happens
(a failure half way, a kill at any moment), the replaced file's teardown
leaks no descriptor, and what held the old file open keeps seeing it."""
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import tsnap
from pyhelpers import (DTYPES, HERE, assert_bits_equal, assert_same_values, describe_exit,
                       expected_from_h5py, run_python, values)


def fd_targets(under=None):
    """What the process's open descriptors name (those under `under`)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor, closed by now
        if under is None or target.startswith(str(under) + os.sep):
            out.append(target)
    return sorted(out)


def open_fds(under=None):
    return len(fd_targets(under))


def leftovers(d):
    """Temporary files a save left in directory d."""
    return [p for p in os.listdir(d) if p.endswith(".tsnap-tmp")]


def settle_fds(want, limit=5.0, under=None):
    """The descriptor count once the closer has closed what it is due to
    (in the background), or after `limit` seconds."""
    end = time.monotonic() + limit
    while open_fds(under) != want and time.monotonic() < end:
        time.sleep(0.01)
    return open_fds(under)


def test_overwrite_every_dtype_reads_as_h5py_reads_it(tmp_path, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / "state.h5"
    for round_ in range(3):
        shapes = [(), (0,), (1,), (7, 13), (3, 5, 2)]
        want = {f"{name}/{i}": values(rng, dt, shape)
                for name, dt in DTYPES.items() for i, shape in enumerate(shapes)}
        want["strided"] = values(rng, np.float64, (31, 17))[::3, ::-2]
        tsnap.save(path, want, durable=bool(round_ % 2))
        got = tsnap.load(path)
        assert sorted(got) == sorted(want)
        with h5py.File(path, "r") as f:
            for name, a in want.items():
                assert_bits_equal(got[name], a, name)
                dtype_name = name.split("/")[0] if "/" in name else "float64"
                assert_same_values(expected_from_h5py(f[name], dtype_name), a, f"h5py {name}")
    assert leftovers(tmp_path) == []


def test_ten_thousand_saves_over_one_name_leak_no_descriptor(tmp_path, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / "state.h5"
    tsnap.save(path, {"x": values(rng, np.float32, (64,))}, durable=False)
    before = settle_fds(open_fds())
    last = None
    for i in range(10_000):
        last = values(rng, np.float32, (64,))
        tsnap.save(path, {"x": last, "i": np.int64(i)}, durable=False)
        if i % 500 == 0:
            # never more than a few old files wait for their close
            assert open_fds() <= before + 4, i
    # the last replaced file is held for the next save under the name (or 30 s)
    assert settle_fds(before + 1) <= before + 1
    got = tsnap.load(path)
    assert_bits_equal(got["x"], last)
    assert got["i"] == 9_999
    assert sorted(os.listdir(tmp_path)) == ["state.h5"]


def test_a_reader_of_the_old_file_keeps_it_after_an_overwrite(tmp_path, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / "state.h5"
    old = values(rng, np.float32, (512, 300))
    tsnap.save(path, {"x": old}, durable=False)
    mapped = tsnap.load(path, "x", mmap=True)
    with tsnap.open(path) as f:
        for durable in (False, True):
            new = values(rng, np.float32, (512, 300))
            tsnap.save(path, {"x": new}, durable=durable)
            assert_bits_equal(tsnap.load(path, "x"), new)
            assert_bits_equal(f["x"][...], old)      # the open file is the old one
            assert_bits_equal(mapped, old)            # and so are its mapped pages
    del mapped


def test_hard_link_keeps_the_old_file_and_a_symlink_is_replaced(tmp_path, seed):
    rng = np.random.default_rng(seed)
    path, other = tmp_path / "state.h5", tmp_path / "other.h5"
    old, new = values(rng, np.int32, (100,)), values(rng, np.int32, (100,))
    tsnap.save(path, {"x": old})
    os.link(path, other)
    tsnap.save(path, {"x": new})
    assert_bits_equal(tsnap.load(other, "x"), old)
    assert_bits_equal(tsnap.load(path, "x"), new)
    assert os.stat(other).st_nlink == 1

    link = tmp_path / "link.h5"
    link.symlink_to(other.name)
    tsnap.save(link, {"x": new})
    assert not link.is_symlink()  # rename semantics: the name, not its target
    assert_bits_equal(tsnap.load(link, "x"), new)
    assert_bits_equal(tsnap.load(other, "x"), old)
    assert leftovers(tmp_path) == []


class FailingDLPack:
    """A tensor whose export fails: the save fails after earlier tensors
    are already written into the temporary file."""

    def __dlpack_device__(self):
        return (1, 0)

    def __dlpack__(self, stream=None, **kw):
        raise RuntimeError("export failed half way")


def test_a_save_that_fails_half_way_leaves_the_old_file_untouched(tmp_path, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / "state.h5"
    old = values(rng, np.float64, (1000, 100))
    tsnap.save(path, {"x": old}, attrs={"step": 1})
    before = path.read_bytes()
    inode = os.stat(path).st_ino
    for durable in (True, False):
        big = values(rng, np.float32, (2048, 1024))
        with pytest.raises(RuntimeError, match="export failed half way"):
            tsnap.save(path, {"a": big, "b": FailingDLPack(), "c": big}, durable=durable)
        assert path.read_bytes() == before
        assert os.stat(path).st_ino == inode
        assert leftovers(tmp_path) == []
        assert_bits_equal(tsnap.load(path, "x"), old)


_FILE_TOO_BIG = r"""
import os, resource, signal, sys
import numpy as np
import tsnap
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
path = sys.argv[1]
resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))
try:
    tsnap.save(path, {"x": np.ones((4096, 1024), np.float32)})
except tsnap.Error as e:
    print(type(e).__name__, e)
    sys.exit(0)
sys.exit("the save succeeded past the file size limit")
"""


def test_a_save_that_runs_out_of_space_leaves_the_old_file_untouched(tmp_path, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / "state.h5"
    tsnap.save(path, {"x": values(rng, np.int16, (333, 7))})
    before = path.read_bytes()
    proc = run_python(_FILE_TOO_BIG, path)
    assert proc.returncode == 0, describe_exit(proc)
    assert str(path) in proc.stdout
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


_FORKED = r"""
import os, sys
import numpy as np
import tsnap
path = sys.argv[1]
a = np.arange(1 << 18, dtype=np.float32)
for i in range(6):
    tsnap.save(path, {"x": a + i}, durable=False)
pid = os.fork()
if pid == 0:
    for i in range(6):
        tsnap.save(path, {"x": a - i}, durable=False)
    os._exit(0 if (tsnap.load(path, "x") == a - 5).all() else 1)
_, status = os.waitpid(pid, 0)
tsnap.save(path, {"x": a * 2}, durable=False)
print("child", os.waitstatus_to_exitcode(status))
"""


def test_saves_over_one_name_on_both_sides_of_a_fork(tmp_path):
    proc = run_python(_FORKED, tmp_path / "state.h5", timeout=120)
    assert proc.returncode == 0, describe_exit(proc)
    assert proc.stdout.split() == ["child", "0"]
    x = tsnap.load(tmp_path / "state.h5", "x")
    assert_bits_equal(x, np.arange(1 << 18, dtype=np.float32) * 2)


# A writer that overwrites one name forever, each generation a different
# fill; the test kills it at random moments.
_OVERWRITER = r"""
import sys
import numpy as np
import tsnap
path, durable, gen = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
shapes = {"a": (1024, 1024), "b": (333, 17), "c/d": (4096, 257)}
print("ready", flush=True)
while True:
    gen += 1
    tsnap.save(path, {n: np.full(s, gen, np.int32) for n, s in shapes.items()},
               attrs={"gen": gen}, durable=durable)
"""


@pytest.mark.parametrize("durable", [False, True])
def test_a_kill_at_any_moment_leaves_a_whole_file_under_the_name(tmp_path, seed, durable):
    rng = np.random.default_rng(seed)
    path = tmp_path / "state.h5"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE)] + [p for p in sys.path if p])
    seen = set()
    for trial in range(12):
        proc = subprocess.Popen([sys.executable, "-c", _OVERWRITER, str(path), str(int(durable)),
                                 str(trial * 100_000)],
                                stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if not path.exists():
            continue  # killed before the first commit
        assert tsnap.verify(path) == 3
        got = tsnap.load(path)
        gen = int(tsnap.open(path).attrs["gen"])
        seen.add(gen)
        for name, shape in {"a": (1024, 1024), "b": (333, 17), "c/d": (4096, 257)}.items():
            assert got[name].shape == shape
            assert (got[name] == gen).all(), (trial, name, gen)
        with h5py.File(path, "r") as f:
            assert (f["c/d"][()] == gen).all()
    assert len(seen) >= 6, f"the writers made too little progress: {sorted(seen)}"


def test_a_replaced_file_is_held_for_the_next_save_under_its_name_only(tmp_path, seed):
    rng = np.random.default_rng(seed)
    path, other = tmp_path / "state.h5", tmp_path / "other.h5"
    d = tmp_path
    tsnap.save(path, {"x": values(rng, np.float32, (1000,))}, durable=False)
    assert open_fds(d) == 0
    tsnap.save(path, {"x": values(rng, np.float32, (1000,))}, durable=False)
    assert settle_fds(1, under=d) == 1  # the replaced file, held
    tsnap.save(other, {"x": values(rng, np.float32, (10,))}, durable=False)
    tsnap.save(other, {"x": values(rng, np.float32, (10,))}, durable=False)
    assert settle_fds(2, under=d) == 2  # one held for each name
    held = fd_targets(d)
    tsnap.save(path, {"x": values(rng, np.float32, (1000,))}, durable=False)
    # the next save under the name let its old one go, and holds the one it replaced
    assert settle_fds(2, under=d) == 2
    now = fd_targets(d)
    assert len(set(held) & set(now)) == 1 and all(p.endswith("(deleted)") for p in now)
    # without another save, they go within 30 s
    assert settle_fds(0, limit=40, under=d) == 0

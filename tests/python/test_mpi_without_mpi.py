"""Where tsnap._mpi was not built, or cannot load because the MPI library
is absent, `import tsnap` and everything without comm= work as ever, and
comm= raises a tsnap error that says why.  tsnap.Shard on its own: its
checks, and a save without comm= of a Shard that is the whole tensor."""
import sys

import pytest

from pyhelpers import run_json

SCRIPT = r"""
import importlib.abc, json, sys

class NoMPI(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "tsnap._mpi":
            if sys.argv[1] == "absent":
                raise ImportError("libmpi.so.40: cannot open shared object file")
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoMPI())
import numpy as np
import tsnap

out = {}
a = np.arange(12, dtype=np.float32).reshape(3, 4)
p = sys.argv[2]
tsnap.save(p, {"a": a, "whole": tsnap.Shard(a, (0, 0), (3, 4))})
out["load"] = tsnap.load(p, "whole").tolist() == a.tolist()
for what, call in [("save", lambda: tsnap.save(p, {"a": a}, comm=object())),
                   ("store", lambda: tsnap.Store(p + ".d", comm=object()))]:
    try:
        call()
        out[what] = None
    except tsnap.Error as e:
        out[what] = [type(e).__name__, str(e)]
print(json.dumps(out))
"""


@pytest.mark.parametrize("why", ["not-built", "absent"])
def test_comm_raises_a_clear_error_where_mpi_support_is_missing(tmp_path, why):
    got = run_json(SCRIPT, why, tmp_path / "x.h5")
    assert got["load"]
    for what in ("save", "store"):
        cls, msg = got[what]
        assert cls == "Error", got[what]
        assert "MPI support" in msg, msg
        if why == "absent":
            assert "libmpi.so.40" in msg, msg
        else:
            assert "not built" in msg, msg
    assert not (tmp_path / "x.h5.d").exists()


# ---------------------------------------------------------------------------
# tsnap.Shard on its own: checked when made, saved without comm= only when it
# is the whole tensor

import numpy as np  # noqa: E402

import tsnap  # noqa: E402
from pyhelpers import DLPackTensor, kDLFloat  # noqa: E402


def test_a_shard_holds_its_block_offset_and_global_shape():
    a = np.arange(12, dtype=np.int16).reshape(3, 4)
    s = tsnap.Shard(a, offset=(np.int64(2), 0), shape=[7, 4])
    assert s.array is a and s.offset == (2, 0) and s.shape == (7, 4)
    assert type(s.offset[0]) is int
    assert s.block_shape == (3, 4) and not s.covers_all()
    assert repr(s) == "tsnap.Shard(int16 block (3, 4), offset=(2, 0), shape=(7, 4))"
    assert tsnap.Shard([1.0, 2.0], 3, 5).offset == (3,)  # np.asarray, an int for 1-D
    p = DLPackTensor(np.ones((2, 2), np.float32), kDLFloat, 32)
    assert tsnap.Shard(p, (0, 0), (2, 2)).array is p  # DLPack objects are kept as they are


@pytest.mark.parametrize("args, cls, words", [
    ((np.ones((3, 4)), (0,), (3, 4)), ValueError, "one entry per dimension"),
    ((np.ones((3, 4)), (0, 0), (3,)), ValueError, "one entry per dimension"),
    ((np.ones((3, 4)), (0, 0, 0), (3, 4, 1)), ValueError, "one entry per dimension"),
    ((np.ones((3, 4)), (0, 1.5), (3, 4)), TypeError, "tuple of ints"),
    ((np.ones((3, 4)), (0, True), (3, 4)), TypeError, "tuple of ints"),
    ((np.ones((3, 4)), "ab", (3, 4)), TypeError, "tuple of ints"),
    ((np.ones((3, 4)), None, (3, 4)), TypeError, "tuple of ints"),
    ((np.ones((3, 4)), (-1, 0), (3, 4)), ValueError, "negative"),
    ((np.ones((3, 4)), (0, 0), (3, -4)), ValueError, "negative"),
    ((np.float32(1), (), ()), ValueError, "0-d"),
    ((object(), (0,), (1,)), ValueError, "one entry per dimension"),
])
def test_a_bad_shard_is_refused_when_made(args, cls, words):
    with pytest.raises(cls, match=words) as e:
        tsnap.Shard(*args)
    assert isinstance(e.value, tsnap.Error)


def test_without_comm_a_shard_is_saved_only_when_it_is_the_whole_tensor(tmp_path):
    a = np.random.default_rng().standard_normal((5, 3)).astype(np.float32)
    path = tmp_path / "x.h5"
    tsnap.save(path, {"u": tsnap.Shard(a.T, (0, 0), (3, 5))})
    np.testing.assert_array_equal(tsnap.load(path, "u"), a.T)
    with tsnap.Store(tmp_path / "run") as s:
        s.save(1, {"u": tsnap.Shard(a, (0, 0), (5, 3))})
        np.testing.assert_array_equal(s.load(1, "u"), a)
        with pytest.raises(ValueError, match=r"'u' is tsnap.Shard\(float32 block \(5, 3\)"
                                             r".*comm="):
            s.save(2, {"u": tsnap.Shard(a, (1, 0), (6, 3))})
        assert s.steps() == [1]
    with pytest.raises(ValueError, match="x.h5: tensor 'u'.*a block of a distributed tensor"):
        tsnap.save(path, {"u": tsnap.Shard(a, (0, 0), (5, 4))})
    np.testing.assert_array_equal(tsnap.load(path, "u"), a.T)  # the earlier file stays


def test_comm_must_be_an_mpi4py_intracommunicator(tmp_path):
    mpi4py = pytest.importorskip("mpi4py")
    if "mpi4py.MPI" not in sys.modules:  # no MPI_Init in the test process
        mpi4py.rc.initialize = mpi4py.rc.finalize = False
    from mpi4py import MPI
    try:
        import tsnap._mpi  # noqa: F401
    except ImportError as e:
        pytest.skip(f"tsnap._mpi is not built or cannot load ({e})")
    for comm, cls in ((object(), TypeError), (3, TypeError), (MPI.COMM_NULL, ValueError)):
        with pytest.raises(cls, match="comm") as e:
            tsnap.save(tmp_path / "x.h5", {"a": np.ones(2)}, comm=comm)
        assert isinstance(e.value, tsnap.Error)
        with pytest.raises(cls, match="comm"):
            tsnap.Store(tmp_path / "run", comm=comm)
    assert not any(tmp_path.iterdir())

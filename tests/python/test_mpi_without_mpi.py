"""Where tsnap._mpi was not built, or cannot load because the MPI library
is absent, `import tsnap` and everything without comm= work as ever, and
comm= raises a tsnap error that says why."""
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

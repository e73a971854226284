"""The first call in a process pays for no import it does not need:
`import tsnap` loads neither ml_dtypes, hdf5plugin, h5py nor the MPI
extension, and saving, loading, opening and mapping tensors of NumPy's own
dtypes never imports ml_dtypes; a bfloat16 or float8 tensor imports it
when its values are asked for, and then loads as without the lazy import.
Each case runs in a fresh interpreter (no timings: what is imported)."""
import json

import numpy as np
import pytest

import tsnap
from pyhelpers import DTYPES, ML_DTYPES, assert_bits_equal, run_json, values

HEAVY = ("ml_dtypes", "hdf5plugin", "h5py", "mpi4py", "tsnap._mpi", "torch", "zarr")

_IMPORT = r"""
import json, sys
import tsnap
print(json.dumps(sorted(m for m in %r if m in sys.modules)))
""" % (HEAVY,)


def test_import_tsnap_loads_nothing_heavy():
    assert run_json(_IMPORT) == []


_NUMPY_DTYPES = r"""
import json, sys
import numpy as np
import tsnap
path, names = sys.argv[1], json.loads(sys.argv[2])
seen = {}
rng = np.random.default_rng(int(sys.argv[3]))
tensors = {n: (rng.standard_normal((5, 3)) * 100).astype(n) for n in names}
tensors["flag"] = rng.integers(0, 2, 7).astype(bool)
tsnap.save(path, tensors, durable=False)
seen["save"] = "ml_dtypes" in sys.modules
got = tsnap.load(path)
seen["load"] = "ml_dtypes" in sys.modules
mapped = tsnap.load(path, mmap=True)
seen["mmap"] = "ml_dtypes" in sys.modules
with tsnap.open(path) as f:
    info = {n: [str(f[n].dtype), f[n].mappable, f[n].shape] for n in f}
    part = f[names[0]][1:3]
seen["open"] = "ml_dtypes" in sys.modules
tsnap.save(path, tensors, durable=True)   # over the same name
seen["overwrite"] = "ml_dtypes" in sys.modules
ok = all(np.array_equal(got[n], t) and np.array_equal(mapped[n], t) for n, t in tensors.items())
print(json.dumps({"seen": seen, "ok": ok, "info": info}))
"""


def test_numpy_dtypes_never_import_ml_dtypes(tmp_path, seed):
    names = [n for n in DTYPES if n not in ML_DTYPES and n != "bool"]
    out = run_json(_NUMPY_DTYPES, tmp_path / "a.h5", json.dumps(names), seed % 2**32)
    assert out["seen"] == dict.fromkeys(("save", "load", "mmap", "open", "overwrite"), False)
    assert out["ok"]
    for n in names:
        assert out["info"][n] == [n, True, [5, 3]]


_ML = r"""
import json, sys
import numpy as np
import tsnap
path, mode = sys.argv[1], sys.argv[2]
out = {}
with tsnap.open(path) as f:
    out["keys"] = sorted(f)
    out["shapes"] = {n: list(f[n].shape) for n in f}
    out["after_describe"] = "ml_dtypes" in sys.modules
if mode == "load":
    got = tsnap.load(path)
elif mode == "mmap":
    got = tsnap.load(path, mmap=True)
else:
    with tsnap.open(path) as f:
        got = {n: f[n][...] for n in f}
out["after_values"] = "ml_dtypes" in sys.modules
out["dtypes"] = {n: str(a.dtype) for n, a in got.items()}
for n, a in got.items():
    np.save(f"{path}.{n}.npy", a.view(f"u{a.dtype.itemsize}"))
print(json.dumps(out))
"""


@pytest.mark.parametrize("mode", ["load", "mmap", "index"])
def test_ml_dtypes_is_imported_when_a_tensor_needs_it(tmp_path, seed, mode):
    rng = np.random.default_rng(seed)
    want = {n: values(rng, DTYPES[n], (4, 9)) for n in ML_DTYPES}
    want["plain"] = values(rng, np.float32, (3,))
    path = tmp_path / "ml.h5"
    tsnap.save(path, want)
    out = run_json(_ML, path, mode)
    assert out["keys"] == sorted(want)
    assert out["shapes"] == {n: list(a.shape) for n, a in want.items()}
    assert out["after_describe"] is False
    assert out["after_values"] is True
    for n, a in want.items():
        assert out["dtypes"][n] == str(a.dtype)
        bits = np.load(f"{path}.{n}.npy")
        assert_bits_equal(bits.view(a.dtype), a, n)

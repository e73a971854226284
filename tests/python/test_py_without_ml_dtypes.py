"""Without ml_dtypes (a subprocess where `import ml_dtypes` fails), bfloat16
and float8 tensors load as an exact float32 upcast, with exactly the values
ml_dtypes' own astype(np.float32) gives (computed here, in the parent, where
ml_dtypes is installed); mmap=True refuses them and mmap="auto" copies."""
import json

import numpy as np
import pytest

import oracle
import tsnap
from pyhelpers import DTYPES, ML_DTYPES, SHAPES, logical, run_json, values

CASE_SHAPES = ["0d", "empty", "primes", "rank5"]
STORAGES = {"plain": None, "deflate": "deflate"}

SCRIPT = r"""
import json, sys
sys.modules["ml_dtypes"] = None  # import ml_dtypes now raises ImportError
import numpy as np
import tsnap

spec = json.load(open(sys.argv[1]))
out = {}

def mapped(a):
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return type(a).__name__ == "Mapping"

def error(fn):
    try:
        fn()
        return None
    except Exception as e:
        return [type(e).__name__, [c.__name__ for c in type(e).__mro__], str(e)]

for key, (path, npy) in spec.items():
    r = {}
    a = tsnap.load(path, "t")
    np.save(npy, a)
    r["type"] = type(a).__name__
    r["dtype"] = str(a.dtype)
    r["writeable"] = bool(a.flags.writeable)
    r["mmap_error"] = error(lambda: tsnap.load(path, "t", mmap=True))
    b = tsnap.load(path, "t", mmap="auto")
    r["auto_equal"] = bool(np.array_equal(a, b, equal_nan=True)) and b.dtype == a.dtype
    r["auto_mapped"] = mapped(b)
    r["all_dtype"] = str(tsnap.load(path)["t"].dtype)
    with tsnap.open(path) as f:
        t = f["t"]
        r["tensor_dtype"] = str(t.dtype)
        r["tensor_mappable"] = t.mappable
        r["tensor_map_status"] = t.map_status
        s = t[...]
        r["slice_dtype"] = str(s.dtype)
        r["slice_equal"] = bool(np.array_equal(np.asarray(s), a, equal_nan=True))
    out[key] = r
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def without(tmp_path_factory, seed):
    """{key: (expected float32 values, the subprocess's record, its array)}."""
    root = tmp_path_factory.mktemp("py-no-ml-dtypes")
    spec, expected = {}, {}
    for i, dtype in enumerate(ML_DTYPES):
        for j, shape in enumerate(CASE_SHAPES):
            for storage, compression in STORAGES.items():
                key = f"{dtype}-{shape}-{storage}"
                data = values(np.random.default_rng([seed, 101, i, j]), DTYPES[dtype],
                              SHAPES[shape])
                path = root / f"{key}.h5"
                tsnap.save(path, {"t": data}, compression=compression, chunk_bytes=256,
                           durable=False)
                spec[key] = (str(path), str(root / f"{key}.npy"))
                expected[key] = logical(data).astype(np.float32)  # ml_dtypes' own widening
    (root / "spec.json").write_text(json.dumps(spec))
    records = run_json(SCRIPT, root / "spec.json")
    return {k: (expected[k], records[k], np.load(spec[k][1])) for k in spec}


KEYS = [f"{d}-{s}-{st}" for d in ML_DTYPES for s in CASE_SHAPES for st in STORAGES]


@pytest.mark.parametrize("key", KEYS)
def test_without_ml_dtypes_a_copy_is_float32_with_ml_dtypes_own_values(without, key):
    want, rec, got = without[key]
    assert rec["type"] == "ndarray", f"load returns an array, not a {rec['type']}"
    assert rec["dtype"] == "float32"
    assert rec["writeable"]
    oracle.assert_same_values(got, want, key)
    assert rec["all_dtype"] == "float32"
    assert rec["tensor_dtype"] == "float32" and rec["slice_dtype"] == "float32"
    assert rec["slice_equal"]


@pytest.mark.parametrize("key", KEYS)
def test_without_ml_dtypes_mmap_true_is_refused_and_auto_copies(without, key):
    _, rec, _ = without[key]
    if "-empty-" in key:
        # nothing to reinterpret: an empty float32 array is as good as a mapping
        assert rec["mmap_error"] is None or "NotMappableError" in rec["mmap_error"][1]
    else:
        assert rec["mmap_error"] is not None, "mmap=True cannot hand out upcast values"
        name, mro, message = rec["mmap_error"]
        assert "NotMappableError" in mro, f"{name}: {message}"
        assert "ml_dtypes" in message or key.split("-")[0] in message, message
    assert rec["auto_equal"] and not rec["auto_mapped"]
    assert rec["tensor_mappable"] is False and rec["tensor_map_status"]

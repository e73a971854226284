"""`tsnap diff`: two snapshots compared tensor by tensor, checked against
NumPy (np.isclose with equal_nan, argmax of |a - b|) and exact integer
arithmetic in Python."""
import re

import h5py
import ml_dtypes
import numpy as np
import pytest

import pyhelpers
import tsnap as tsnap_py
from clihelpers import rng_for, save, save_complex32, tsnap
from pyhelpers import DTYPES

LINE = re.compile(
    r"^(?P<name>\S+): (?:(?P<bad>\d+) of (?P<total>\d+) elements differ \([^)]*\)"
    r"|within tolerance)"
    r"; max abs error (?P<abs>\S+) at (?P<abs_at>\([^)]*\)): (?P<abs_a>.+?) vs (?P<abs_b>.+?)"
    r"; max rel error (?P<rel>\S+) at (?P<rel_at>\([^)]*\)): (?P<rel_a>.+?) vs (?P<rel_b>.+?)$")
SUMMARY = re.compile(r"^(\d+) tensors? compared, (\d+) differ")

SINGLE = ("float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "float32", "complex64",
          "complex32")


def save_complex32_of(path, tensors):
    """Complex arrays saved as tsnap's complex32 (float16 pairs)."""
    return save_complex32(path, {k: np.stack([v.real.astype(np.float16),
                                              v.imag.astype(np.float16)], axis=-1)
                                 for k, v in tensors.items()})


def report(proc):
    """{tensor: match} of the value lines, and the summary's two counts."""
    lines = {}
    summary = None
    for line in proc.stdout.splitlines():
        m = LINE.match(line)
        if m:
            lines[m["name"]] = m
        s = SUMMARY.match(line)
        if s:
            summary = (int(s[1]), int(s[2]))
    return lines, summary


def as_index(text):
    return tuple(int(v) for v in text.strip("()").split(",") if v.strip())


def is_int(dtype):
    return np.dtype(dtype).kind in "biu"


def oracle(a, b, rtol=0.0, atol=0.0):
    """(outside tolerance, |a - b|, |a - b| / |b|), elementwise, as the
    command defines them: integers exactly, floats in double precision with
    equal NaNs and equal infinities an error of 0."""
    if is_int(a.dtype):
        x = a.astype(object).astype(int) if a.dtype == bool else a.astype(object)
        y = b.astype(object).astype(int) if b.dtype == bool else b.astype(object)
        err = np.abs(x - y)
        ok = np.array([e == 0 or (atol or rtol) and e <= atol + rtol * abs(v)
                       for e, v in zip(err.ravel(), y.ravel())], bool).reshape(a.shape)
        rel = np.array([0.0 if e == 0 else np.inf if v == 0 else e / abs(v)
                        for e, v in zip(err.ravel(), y.ravel())]).reshape(a.shape)
        return ~ok, err, rel
    wide = np.complex128 if a.dtype.kind == "c" else np.float64
    with np.errstate(all="ignore"):  # ml_dtypes warns as it widens a signalling NaN
        x, y = a.astype(wide), b.astype(wide)
        err = np.abs(x - y)
        err = np.where((np.isnan(x) & np.isnan(y)) | (x == y), 0.0, err)
        rel = np.where(err == 0, 0.0, err / np.abs(y))
    return ~np.isclose(x, y, rtol=rtol, atol=atol, equal_nan=True), err, rel


def same_value(text, value, dtype_name):
    """The printed value reads back as `value` (NaN as NaN)."""
    if dtype_name == "bool":
        return text == str(bool(value))
    if is_int(DTYPES.get(dtype_name, np.float32)):
        return int(text) == int(value)
    single = dtype_name in SINGLE
    if np.iscomplexobj(value):
        got = complex(text)
        return all(same_value(repr(g), w, "float32" if single else "float64")
                   for g, w in ((got.real, value.real), (got.imag, value.imag)))
    got, want = float(text), float(value)
    if single:
        got, want = np.float32(got), np.float32(want)
    return (np.isnan(got) and np.isnan(want)) or got == want


def check_line(m, a, b, dtype_name, rtol=0.0, atol=0.0):
    """One value line against the oracle: the count, both maxima, where they
    occur and the values there."""
    bad, err, rel = oracle(a, b, rtol, atol)
    assert m is not None, "no line for a tensor that differs"
    assert int(m["bad"] or 0) == int(bad.sum())
    if m["total"]:
        assert int(m["total"]) == a.size
    at = np.unravel_index(int(np.argmax(err)) if err.size else 0, a.shape)
    assert as_index(m["abs_at"]) == tuple(int(v) for v in at)
    if is_int(a.dtype):
        assert int(m["abs"]) == err[at]
    else:
        # complex: C's hypot and NumPy's abs may round the last bit apart
        assert (np.isnan(err[at]) and m["abs"] == "nan") or float(m["abs"]) == (
            pytest.approx(err[at], rel=1e-15) if a.dtype.kind == "c" else err[at])
    assert same_value(m["abs_a"], a[at], dtype_name)
    assert same_value(m["abs_b"], b[at], dtype_name)
    # The relative maximum: at the first index where it occurs, and the
    # largest there (ints: within the rounding of one division).
    rat = as_index(m["rel_at"])
    top = rel.max() if not np.isnan(rel).any() else np.nan
    if np.isnan(top):
        assert m["rel"] == "nan" and np.isnan(rel[rat])
    else:
        assert float(m["rel"]) == pytest.approx(top, rel=1e-15)
        assert rel[rat] == pytest.approx(top, rel=1e-15)
        if a.dtype.kind not in "biuc":
            assert rat == tuple(int(v) for v in np.unravel_index(int(np.argmax(rel)), a.shape))
    assert same_value(m["rel_a"], a[rat], dtype_name)
    assert same_value(m["rel_b"], b[rat], dtype_name)


def perturbed(rng, a, fraction=0.1):
    """A copy of `a` with a random fraction of its elements replaced by fresh
    random values (and the last element always)."""
    b = np.array(a, copy=True)
    if b.size:
        fresh = pyhelpers.values(rng, a.dtype, a.shape)
        where = rng.random(a.shape) < fraction
        where.flat[-1] = True
        b[where] = fresh[where]
    return b


def as_complex32(real, imag):
    """complex64 values whose parts are float16 values, as complex32 holds."""
    z = np.empty(np.shape(real), np.complex64)
    z.real = np.asarray(real).astype(np.float16)
    z.imag = np.asarray(imag).astype(np.float16)
    return z


# ---------------------------------------------------------------------------
# Every dtype

@pytest.fixture(scope="module")
def every_dtype(seed, tmp_path_factory):
    """The same random tensors of every dtype in files of several codecs,
    and a copy with some elements changed."""
    root = tmp_path_factory.mktemp("diff-dtypes")
    rng = rng_for(seed, "every-dtype")
    shape = (7, 11, 13)
    a = {name: pyhelpers.values(rng, dt, shape) for name, dt in DTYPES.items()}
    b = {name: perturbed(rng, v) for name, v in a.items()}
    files = {"plain": save(root / "plain.h5", a),
             "changed": save(root / "changed.h5", b, compression="zstd", chunk_bytes=512)}
    for codec in ("zstd", "lz4", "deflate"):
        files[codec] = save(root / f"{codec}.h5", a, compression=codec, chunk_bytes=1000)
    return a, b, files


@pytest.mark.parametrize("codec", ["zstd", "lz4", "deflate"])
def test_the_same_values_in_other_codecs_are_the_same(every_dtype, codec):
    a, _, files = every_dtype
    proc = tsnap("diff", files["plain"], files[codec], expect=0)
    assert report(proc)[1] == (len(a), 0)
    assert proc.stderr == ""


def test_verbose_names_every_tensor_that_is_the_same(every_dtype):
    a, _, files = every_dtype
    proc = tsnap("diff", "-v", files["plain"], files["lz4"], expect=0)
    for name in a:
        assert f"{name}: same" in proc.stdout.splitlines()


def test_every_dtype_reports_what_numpy_finds(every_dtype):
    a, b, files = every_dtype
    proc = tsnap("diff", files["plain"], files["changed"])
    lines, summary = report(proc)
    differ = [n for n in a if oracle(a[n], b[n])[0].any()]
    assert proc.returncode == (1 if differ else 0)
    assert summary == (len(a), len(differ))
    assert sorted(lines) == sorted(differ)
    for name in differ:
        check_line(lines[name], a[name], b[name], name)


def test_complex32_compares_as_complex(seed, tmp_path):
    rng = rng_for(seed, "complex32")
    shape = (5, 3)
    a = as_complex32(pyhelpers.values(rng, np.float16, shape),
                     pyhelpers.values(rng, np.float16, shape))
    b = a.copy()
    b[2, 1] = as_complex32(1.5, -0.25)
    b[4, 2] = as_complex32(np.nan, 0)
    pa = save_complex32_of(tmp_path / "a.h5", {"z": a, "same": a})
    pb = save_complex32_of(tmp_path / "b.h5", {"z": b, "same": a})
    proc = tsnap("diff", pa, pb, expect=1)
    lines, summary = report(proc)
    assert summary == (2, 1) and list(lines) == ["z"]
    check_line(lines["z"], a, b, "complex32")


# ---------------------------------------------------------------------------
# Tolerances: just inside and just outside

def tolerance_case(seed, tmp_path, key, dtype=np.float64, shape=(31, 17)):
    rng = rng_for(seed, key)
    a = (rng.standard_normal(shape) * 10.0 ** rng.uniform(-2, 2, shape)).astype(dtype)
    b = (a.astype(np.float64) * (1 + 1e-4 * rng.standard_normal(shape))).astype(dtype)
    return a, b, save(tmp_path / "a.h5", {"t": a}), save(tmp_path / "b.h5", {"t": b})


def run_tolerance(pa, pb, a, b, rtol, atol):
    """Runs diff with the tolerances; the exit status is NumPy's verdict."""
    close = np.allclose(a.astype(np.float64), b.astype(np.float64), rtol=rtol, atol=atol,
                        equal_nan=True)
    proc = tsnap("diff", "--rtol", repr(rtol), "--atol", repr(atol), pa, pb,
                 expect=0 if close else 1)
    lines, _ = report(proc)
    if close:
        assert lines == {}
    else:
        check_line(lines["t"], a, b, np.dtype(a.dtype).name, rtol, atol)
    return close


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_atol_at_the_largest_error_is_inside_and_one_ulp_less_outside(seed, tmp_path, dtype):
    a, b, pa, pb = tolerance_case(seed, tmp_path, f"atol-{np.dtype(dtype).name}", dtype)
    worst = np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))
    assert run_tolerance(pa, pb, a, b, 0.0, float(worst)) is True
    assert run_tolerance(pa, pb, a, b, 0.0, float(np.nextafter(worst, 0))) is False


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rtol_just_above_the_largest_ratio_is_inside_just_below_outside(seed, tmp_path, dtype):
    a, b, pa, pb = tolerance_case(seed, tmp_path, f"rtol-{np.dtype(dtype).name}", dtype)
    x, y = a.astype(np.float64), b.astype(np.float64)
    ratio = np.max(np.abs(x - y) / np.abs(y))
    assert run_tolerance(pa, pb, a, b, float(ratio * (1 + 1e-9)), 0.0) is True
    assert run_tolerance(pa, pb, a, b, float(ratio * (1 - 1e-9)), 0.0) is False


def test_rtol_and_atol_add_up(seed, tmp_path):
    a, b, pa, pb = tolerance_case(seed, tmp_path, "both")
    x, y = a.astype(np.float64), b.astype(np.float64)
    # atol alone covers the small elements only; rtol alone the big ones
    atol = float(np.median(np.abs(x - y)))
    rtol = float(np.median(np.abs(x - y) / np.abs(y)))
    assert run_tolerance(pa, pb, a, b, rtol, atol) == np.allclose(x, y, rtol=rtol, atol=atol)
    assert run_tolerance(pa, pb, a, b, 10 * rtol, 10 * atol) == np.allclose(
        x, y, rtol=10 * rtol, atol=10 * atol)


def test_a_perturbation_inside_atol_passes_and_outside_fails(seed, tmp_path):
    rng = rng_for(seed, "perturb")
    a = rng.standard_normal(1000)
    atol = 1e-6
    inside = a + rng.uniform(-1, 1, a.shape) * atol * 0.999
    outside = inside.copy()
    outside[rng.integers(a.size)] += 2 * atol
    pa = save(tmp_path / "a.h5", {"t": a})
    for b, close in ((inside, True), (outside, False)):
        assert np.allclose(a, b, rtol=0, atol=atol) is close
        pb = save(tmp_path / "b.h5", {"t": b})
        assert run_tolerance(pa, pb, a, b, 0.0, atol) is close


def test_tolerance_reports_within_tolerance_when_verbose(seed, tmp_path):
    a, b, pa, pb = tolerance_case(seed, tmp_path, "verbose")
    proc = tsnap("diff", "-v", "--rtol", "1", pa, pb, expect=0)
    lines, summary = report(proc)
    assert summary == (1, 0)
    assert lines["t"]["bad"] is None
    check_line(lines["t"], a, b, "float64", 1.0, 0.0)


# ---------------------------------------------------------------------------
# Integers: exact, whatever their size

def test_int64_near_2_62_differing_by_one_differ(tmp_path):
    a = np.array([2**62, -2**62, 7], np.int64)
    b = np.array([2**62 + 1, -2**62, 7], np.int64)
    assert np.allclose(a.astype(np.float64), b.astype(np.float64))  # what doubles would say
    pa, pb = save(tmp_path / "a.h5", {"i": a}), save(tmp_path / "b.h5", {"i": b})
    lines, _ = report(tsnap("diff", pa, pb, expect=1))
    assert lines["i"]["bad"] == "1" and lines["i"]["abs"] == "1"
    assert lines["i"]["abs_at"] == "(0,)"
    assert lines["i"]["abs_a"] == str(2**62) and lines["i"]["abs_b"] == str(2**62 + 1)
    tsnap("diff", "--atol", "1", pa, pb, expect=0)
    tsnap("diff", "--atol", "0.99", pa, pb, expect=1)


def test_integer_errors_span_the_whole_range(tmp_path):
    a = {"i": np.array([-2**63, 0], np.int64), "u": np.array([2**64 - 1, 0], np.uint64),
         "u_by_one": np.array([2**64 - 2], np.uint64)}
    b = {"i": np.array([2**63 - 1, 0], np.int64), "u": np.array([0, 2**64 - 1], np.uint64),
         "u_by_one": np.array([2**64 - 1], np.uint64)}
    pa, pb = save(tmp_path / "a.h5", a), save(tmp_path / "b.h5", b)
    lines, summary = report(tsnap("diff", pa, pb, expect=1))
    assert summary == (3, 3)
    for name in a:
        check_line(lines[name], a[name], b[name], str(a[name].dtype))
    assert lines["i"]["abs"] == str(2**64 - 1)
    assert lines["u"]["abs_at"] == "(0,)"  # the first of two equal maxima, as np.argmax
    assert lines["u_by_one"]["abs"] == "1"


# ---------------------------------------------------------------------------
# NaN, infinities, signed zeros

@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16", "complex128"])
def test_nan_in_the_same_place_is_the_same_and_against_a_number_differs(tmp_path, dtype):
    dt = DTYPES[dtype]
    a = np.array([1.0, np.nan, np.inf, -np.inf, 0.0, -0.0, 2.0]).astype(dt)
    same = np.array([1.0, np.nan, np.inf, -np.inf, -0.0, 0.0, 2.0]).astype(dt)
    pa, ps = save(tmp_path / "a.h5", {"t": a}), save(tmp_path / "s.h5", {"t": same})
    tsnap("diff", pa, ps, expect=0)
    for i, v in ((0, np.nan), (1, 1.0), (2, -np.inf), (3, 3.0)):
        b = same.copy()
        b[i] = v
        pb = save(tmp_path / "b.h5", {"t": b})
        lines, _ = report(tsnap("diff", "--atol", "1e300", pa, pb, expect=1))
        check_line(lines["t"], a, b, dtype, 0.0, 1e300)


# ---------------------------------------------------------------------------
# Names, dtypes, shapes

def test_a_tensor_on_one_side_only_differs_and_is_named(tmp_path):
    x = np.arange(3.0)
    pa = save(tmp_path / "a.h5", {"x": x, "g/only_a": x})
    pb = save(tmp_path / "b.h5", {"x": x, "only_b": x})
    proc = tsnap("diff", pa, pb, expect=1)
    assert f"g/only_a: only in {pa}" in proc.stdout
    assert f"only_b: only in {pb}" in proc.stdout
    assert report(proc)[1] == (3, 2)


def test_dtypes_that_differ_are_named(tmp_path):
    pa = save(tmp_path / "a.h5", {"t": np.zeros(4, np.float32)})
    pb = save(tmp_path / "b.h5", {"t": np.zeros(4, np.float64)})
    proc = tsnap("diff", pa, pb, expect=1)
    assert f"t: dtypes differ: float32 in {pa}, float64 in {pb}" in proc.stdout


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 3)), ((12,), (3, 4)), ((0,), (0, 3)),
                                   ((), (1,))])
def test_shapes_that_differ_are_named(tmp_path, sa, sb):
    pa = save(tmp_path / "a.h5", {"t": np.zeros(sa, np.int16)})
    pb = save(tmp_path / "b.h5", {"t": np.zeros(sb, np.int16)})
    proc = tsnap("diff", pa, pb, expect=1)
    assert f"t: shapes differ: {sa} in {pa}, {sb} in {pb}" in proc.stdout


@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (1,), (1, 1, 1)])
def test_odd_shapes(seed, tmp_path, shape):
    rng = rng_for(seed, "odd", shape)
    a = pyhelpers.values(rng, np.float32, shape)
    pa, pc = save(tmp_path / "a.h5", {"t": a}), save(tmp_path / "c.h5", {"t": a.copy()})
    tsnap("diff", pa, pc, expect=0)
    if a.size:
        b = a + np.float32(1)
        pb = save(tmp_path / "b.h5", {"t": b})
        lines, _ = report(tsnap("diff", pa, pb, expect=1))
        check_line(lines["t"], a, b, "float32")
        assert lines["t"]["abs_at"] == str(tuple(0 for _ in shape))


# ---------------------------------------------------------------------------
# Big tensors, layouts

def test_a_difference_in_the_last_slab_is_found(seed, tmp_path):
    rng = rng_for(seed, "slabs")
    a = rng.standard_normal((301, 211))  # about 500 KiB
    b = a.copy()
    b[-1, -1] += 1e-9
    b[0, 5] -= 1e-12
    pa = save(tmp_path / "a.h5", {"t": a})
    pb = save(tmp_path / "b.h5", {"t": b}, compression="zstd", chunk_bytes=8192)
    outputs = []
    for slab in ("16K", "1000", "64M"):
        proc = tsnap("diff", "--slab-bytes", slab, pa, pb, expect=1)
        lines, _ = report(proc)
        check_line(lines["t"], a, b, "float64")
        assert as_index(lines["t"]["abs_at"]) == (300, 210)
        outputs.append(proc.stdout)
    assert len(set(outputs)) == 1


def test_rows_wider_than_a_slab(seed, tmp_path):
    rng = rng_for(seed, "wide")
    a = rng.integers(-1000, 1000, (3, 5000), dtype=np.int32)
    b = a.copy()
    b[2, 4999] += 3
    pa, pb = save(tmp_path / "a.h5", {"t": a}), save(tmp_path / "b.h5", {"t": b})
    lines, _ = report(tsnap("diff", "--slab-bytes", "4K", pa, pb, expect=1))
    assert lines["t"]["abs_at"] == "(2, 4999)" and lines["t"]["abs"] == "3"


def test_slabs_of_one_element(seed, tmp_path):
    rng = rng_for(seed, "one-element-slabs")
    a = pyhelpers.values(rng, np.complex64, (5, 7, 3))
    b = perturbed(rng, a, 0.3)
    pa, pb = save(tmp_path / "a.h5", {"t": a}), save(tmp_path / "b.h5", {"t": b})
    lines, _ = report(tsnap("diff", "--slab-bytes", "1", pa, pb, expect=1))
    check_line(lines["t"], a, b, "complex64")
    assert tsnap("diff", pa, pb).stdout == tsnap("diff", "--slab-bytes", "1", pa, pb).stdout


@pytest.mark.parametrize("layout", ["transposed", "reversed", "step", "fortran"])
def test_non_contiguous_writes_compare_by_their_logical_values(seed, tmp_path, layout):
    rng = rng_for(seed, "layout", layout)
    a = pyhelpers.LAYOUTS[layout](rng, np.dtype(np.float64), (7, 11, 13))
    assert not a.flags.c_contiguous
    c = np.ascontiguousarray(a)
    pa, pc = save(tmp_path / "a.h5", {"t": a}), save(tmp_path / "c.h5", {"t": c})
    tsnap("diff", pa, pc, expect=0)
    b = c.copy()
    b[6, 0, 12] += 1.0
    pb = save(tmp_path / "b.h5", {"t": b})
    lines, _ = report(tsnap("diff", pa, pb, expect=1))
    check_line(lines["t"], c, b, "float64")
    assert lines["t"]["abs_at"] == "(6, 0, 12)"


# ---------------------------------------------------------------------------
# --names, stores, --quiet

@pytest.fixture
def three(tmp_path):
    x = np.arange(6.0)
    pa = save(tmp_path / "a.h5", {"x": x, "y": x, "g/z": x, "w": x})
    pb = save(tmp_path / "b.h5", {"x": x, "y": x + 1, "g/z": x, "v": x})
    return pa, pb


def test_names_compare_only_those_tensors(three):
    pa, pb = three
    proc = tsnap("diff", "--names", "x,g/z", pa, pb, expect=0)
    assert report(proc)[1] == (2, 0)
    proc = tsnap("diff", "--names", "x", "--names", "/y,x", pa, pb, expect=1)
    lines, summary = report(proc)
    assert summary == (2, 1) and list(lines) == ["y"]


def test_names_missing_from_either_side_differ(three):
    pa, pb = three
    proc = tsnap("diff", "--names", "x,w,v,nowhere", pa, pb, expect=1)
    assert f"w: only in {pa}" in proc.stdout
    assert f"v: only in {pb}" in proc.stdout
    assert "nowhere: in neither file" in proc.stdout
    assert report(proc)[1] == (4, 3)


def test_quiet_prints_nothing(three):
    pa, pb = three
    for expect, names in ((1, "y"), (0, "x")):
        proc = tsnap("diff", "-q", "--names", names, pa, pb, expect=expect)
        assert proc.stdout == "" and proc.stderr == ""


def test_a_store_stands_for_its_latest_step(tmp_path):
    x = np.arange(5, dtype=np.int32)
    store = tsnap_py.Store(tmp_path / "run")
    store.save(1, {"x": x + 1})
    store.save(2, {"x": x})
    pf = save(tmp_path / "f.h5", {"x": x})
    proc = tsnap("diff", tmp_path / "run", pf, expect=0)
    assert "latest step 2" in proc.stdout and "step-000000000002.h5" in proc.stdout
    tsnap("diff", pf, tmp_path / "run", expect=0)
    (tmp_path / "empty").mkdir()
    proc = tsnap("diff", tmp_path / "empty", pf, expect=2)
    assert "no committed steps" in proc.stderr


# ---------------------------------------------------------------------------
# Trouble and usage: exit 2

def test_a_missing_file_is_trouble(tmp_path):
    pa = save(tmp_path / "a.h5", {"x": np.zeros(2)})
    for args in ((pa, tmp_path / "nope.h5"), (tmp_path / "nope.h5", pa)):
        proc = tsnap("diff", *args, expect=2)
        assert "nope.h5" in proc.stderr and proc.stderr.startswith("tsnap diff: ")


def test_a_file_that_is_not_hdf5_is_trouble(tmp_path):
    pa = save(tmp_path / "a.h5", {"x": np.zeros(2)})
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an HDF5 file" * 100)
    proc = tsnap("diff", pa, junk, expect=2)
    assert "junk.h5" in proc.stderr


def test_an_unreadable_tensor_is_trouble_and_is_named(tmp_path):
    for p in ("a.h5", "b.h5"):
        with h5py.File(tmp_path / p, "w") as f:
            f["words"] = np.array([b"one", b"two"])
            f["x"] = np.arange(3.0)
    proc = tsnap("diff", tmp_path / "a.h5", tmp_path / "b.h5", expect=2)
    assert "words" in proc.stderr and "a.h5" in proc.stderr
    assert "could not be read" in proc.stdout


def test_damaged_chunks_are_trouble(seed, tmp_path):
    a = rng_for(seed, "damaged").standard_normal(20000)
    pa = save(tmp_path / "a.h5", {"t": a})
    pb = save(tmp_path / "b.h5", {"t": a}, compression="deflate", checksum=False)
    with h5py.File(pb, "r") as f:
        offset = f["t"].id.get_chunk_info(0).byte_offset
    raw = bytearray(pb.read_bytes())
    raw[offset + 10:offset + 60] = bytes(50)
    pb.write_bytes(bytes(raw))
    proc = tsnap("diff", pa, pb, expect=2)
    assert "'t'" in proc.stderr and "b.h5" in proc.stderr


@pytest.mark.parametrize("args,message", [
    ((), "which two snapshots"),
    (("a.h5",), "which two snapshots"),
    (("a.h5", "b.h5", "c.h5"), "too many arguments"),
    (("--bogus", "a.h5", "b.h5"), "unknown option '--bogus'"),
    (("--rtol", "-1", "a.h5", "b.h5"), "--rtol wants a non-negative number"),
    (("--atol", "abc", "a.h5", "b.h5"), "--atol wants a non-negative number"),
    (("--rtol",), "needs a value"),
    (("--names", "x,,y", "a.h5", "b.h5"), "--names wants"),
    (("--slab-bytes", "0", "a.h5", "b.h5"), "--slab-bytes"),
    (("--slab-bytes", "lots", "a.h5", "b.h5"), "--slab-bytes"),
    (("-q", "-v", "a.h5", "b.h5"), "contradict"),
])
def test_usage_errors_exit_2(args, message):
    proc = tsnap("diff", *args, expect=2)
    assert message in proc.stderr and "tsnap diff --help" in proc.stderr
    assert proc.stdout == ""


def test_help_shows_usage_rule_and_examples():
    proc = tsnap("diff", "--help", expect=0)
    assert proc.stdout.startswith("usage: tsnap diff")
    assert "|a - b| <= atol + rtol * |b|" in proc.stdout
    assert "Examples:" in proc.stdout

"""Every error is raised where SPEC §5 says, as the class it names, with a
message naming the file and the tensor; damaged files (random bytes, text,
truncated at many lengths, bit flips anywhere) give tsnap errors or a clean
load and never crash the interpreter (those loops run in a subprocess, so
that a segfault fails the test with its signal)."""
import json
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import tsnap
from pyhelpers import assert_bits_equal, describe_exit, logical, run_python


def _snapshot(path, rng):
    """A real snapshot with tensors of several layouts, compressed and not."""
    tensors = {
        "plain/f32": rng.standard_normal((24, 9)).astype(np.float32),
        "plain/i16": rng.integers(-30000, 30000, (50,), dtype=np.int16),
        "packed/f64": np.cumsum(rng.standard_normal((30, 8)), axis=0),
        "scalar": np.array(rng.standard_normal()),
        "flags": rng.integers(0, 2, (17,)).astype(bool),
        "empty": np.zeros((0, 4), np.uint8),
    }
    tsnap.save(path, {k: v for k, v in tensors.items() if not k.startswith("packed")},
               attrs={"step": 7, "time": 0.5, "note": "damaged on purpose"},
               chunk_bytes=128, durable=False)
    # the deflate tensor goes in a second file; the damage tests use both
    tsnap.save(path.with_name("packed.h5"), {"packed/f64": tensors["packed/f64"]},
               compression="deflate", chunk_bytes=512, durable=False)
    return tensors


# ---------------------------------------------------------------------------
# Missing files and names

@pytest.mark.parametrize("call", ["load", "load-name", "load-mmap", "open", "verify"])
def test_a_missing_file_raises_file_not_found_naming_the_path(tmp_path, call):
    path = tmp_path / "no" / "such.h5"
    fn = {"load": lambda: tsnap.load(path), "load-name": lambda: tsnap.load(path, "x"),
          "load-mmap": lambda: tsnap.load(path, "x", mmap=True),
          "open": lambda: tsnap.open(path), "verify": lambda: tsnap.verify(path)}[call]
    with pytest.raises(FileNotFoundError) as info:
        fn()
    assert isinstance(info.value, tsnap.Error)
    assert str(path) in str(info.value)


@pytest.fixture
def one(tmp_path):
    path = tmp_path / "one.h5"
    tsnap.save(path, {"a/x": np.arange(5.0)}, durable=False)
    return path


@pytest.mark.parametrize("call", ["load", "load-mmap", "getitem"])
def test_a_missing_tensor_raises_key_error_naming_the_tensor_and_the_file(one, call):
    def getitem():
        with tsnap.open(one) as f:
            return f["a/nope"]
    fn = {"load": lambda: tsnap.load(one, "a/nope"),
          "load-mmap": lambda: tsnap.load(one, "a/nope", mmap=True), "getitem": getitem}[call]
    with pytest.raises(KeyError) as info:
        fn()
    assert isinstance(info.value, tsnap.Error)
    message = str(info.value)
    assert "a/nope" in message and str(one) in message, message
    assert not message.startswith(("'", '"')), f"str() is the plain message: {message}"


def test_a_group_is_not_a_tensor(one):
    with pytest.raises(KeyError):
        tsnap.load(one, "a")
    with tsnap.open(one) as f:
        assert "a" not in f and f.get("a") is None


# ---------------------------------------------------------------------------
# Types tsnap cannot store

UNSUPPORTED = {
    "object": lambda: np.array([1, "a", None], dtype=object),
    "str": lambda: np.array(["ab", "c"]),
    "bytes": lambda: np.array([b"ab", b"c"]),
    "structured": lambda: np.zeros(3, [("a", "<i4"), ("b", "<f8")]),
    "datetime64": lambda: np.array(["2026-01-01", "2026-01-02"], dtype="datetime64[D]"),
    "timedelta64": lambda: np.array([1, 2], dtype="timedelta64[s]"),
    "longdouble": lambda: np.ones(3, np.longdouble),
    "clongdouble": lambda: np.ones(3, np.clongdouble),
    "void": lambda: np.zeros(3, "V4"),
    "set": lambda: {1, 2},
    "object": lambda: object(),
}


@pytest.mark.parametrize("kind", list(UNSUPPORTED))
def test_an_unsupported_dtype_raises_type_error_and_creates_no_file(tmp_path, kind):
    path = tmp_path / "new.h5"
    with pytest.raises(TypeError) as info:
        tsnap.save(path, {"good": np.arange(3), "bad": UNSUPPORTED[kind]()})
    assert isinstance(info.value, tsnap.Error)
    assert "bad" in str(info.value), f"the message names the tensor: {info.value}"
    assert str(path) in str(info.value), f"and the file: {info.value}"
    assert list(tmp_path.iterdir()) == [], "nothing was written, not even a temporary file"


@pytest.mark.parametrize("kind", list(UNSUPPORTED))
def test_an_unsupported_dtype_leaves_an_existing_snapshot_byte_identical(tmp_path, kind):
    path = tmp_path / "old.h5"
    tsnap.save(path, {"x": np.arange(10)}, durable=False)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        tsnap.save(path, {"x": np.arange(3), "y": UNSUPPORTED[kind]()})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.h5"]


# ---------------------------------------------------------------------------
# Bad arguments

@pytest.mark.parametrize("compression", ["lzma", "gzip", "DEFLATE", "", ("deflate", 10),
                                         ("nope", 1), ("deflate",), ("deflate", 1, 2)])
def test_a_bad_compression_raises_value_error_and_writes_nothing(tmp_path, compression):
    with pytest.raises(ValueError) as info:
        tsnap.save(tmp_path / "c.h5", {"x": np.arange(3)}, compression=compression)
    assert isinstance(info.value, tsnap.Error)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mmap", ["yes", "AUTO", "copy", None, 2, 0.5])
def test_a_bad_mmap_value_raises_value_error(one, mmap):
    with pytest.raises(ValueError) as info:
        tsnap.load(one, "a/x", mmap=mmap)
    assert isinstance(info.value, tsnap.Error)
    with tsnap.open(one) as f:
        with pytest.raises(ValueError):
            f["a/x"].numpy(mmap=mmap)


@pytest.mark.parametrize("tensors", [{"": np.arange(2)}, {"/a": np.arange(2)},
                                     {"a/": np.arange(2)}, {"a//b": np.arange(2)},
                                     {"a/../b": np.arange(2)}, {"a\nb": np.arange(2)},
                                     {"a": np.arange(2), "a/b": np.arange(2)}],
                         ids=["empty", "leading-slash", "trailing-slash", "double-slash",
                              "dot-dot", "control", "tensor-and-group"])
def test_a_bad_tensor_name_raises_value_error_and_writes_nothing(tmp_path, tensors):
    with pytest.raises(ValueError) as info:
        tsnap.save(tmp_path / "n.h5", tensors)
    assert isinstance(info.value, tsnap.Error)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("tensors", [[np.arange(3)], np.arange(3), {1: np.arange(3)}],
                         ids=["list", "array", "int-key"])
def test_tensors_that_are_not_a_mapping_of_names_raise_type_error(tmp_path, tensors):
    with pytest.raises(TypeError):
        tsnap.save(tmp_path / "t.h5", tensors)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("attrs", [{"tsnap_format": "x"}, {"tsnap_anything": 1},
                                   {"created": "now"}, {"producer": "me"},
                                   {"step": 1.5}, {"step": "3"}, {"time": "soon"},
                                   {"time": 1 + 2j}, {"obj": object()}],
                         ids=["tsnap_format", "tsnap_prefix", "created", "producer",
                              "float-step", "str-step", "str-time", "complex-time", "object"])
def test_a_reserved_or_ill_typed_attribute_is_refused_and_writes_nothing(tmp_path, attrs):
    with pytest.raises((TypeError, ValueError)) as info:
        tsnap.save(tmp_path / "a.h5", {"x": np.arange(3)}, attrs=attrs)
    assert isinstance(info.value, tsnap.Error)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# Checksums

def _data_offset(path, name):
    with h5py.File(path, "r") as f:
        dsid = f[name].id
        if f[name].chunks:
            return dsid.get_chunk_info(0).byte_offset
        return dsid.get_offset()


def _flip(path, offset, mask=0x10):
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([b ^ mask]))


def _tensor_numpy(path, name, **kw):
    with tsnap.open(path) as f:
        return f[name].numpy(**kw)


@pytest.mark.parametrize("name", ["plain/f32", "plain/i16", "scalar", "flags"])
def test_a_changed_byte_in_a_tensor_fails_its_checksum_naming_it(tmp_path, seed, name):
    path = tmp_path / "s.h5"
    tensors = _snapshot(path, np.random.default_rng([seed, 51]))
    _flip(path, _data_offset(path, name), 0x01 if name == "flags" else 0x10)
    for call in (lambda: tsnap.verify(path), lambda: tsnap.load(path, verify=True),
                 lambda: tsnap.load(path, name, verify=True),
                 lambda: tsnap.load(path, name, mmap=True, verify=True),
                 lambda: tsnap.load(path, name, mmap="auto", verify=True),
                 lambda: _tensor_numpy(path, name, mmap=False, verify=True),
                 lambda: _tensor_numpy(path, name, mmap=True, verify=True),
                 lambda: _tensor_numpy(path, name, mmap="auto", verify=True)):
        with pytest.raises(tsnap.IntegrityError) as info:
            call()
        assert name in str(info.value) and str(path) in str(info.value), str(info.value)
    # without verify the changed value loads as it now is
    got = tsnap.load(path, name)
    assert not np.array_equal(got, tensors[name])
    # the other tensors verify
    for other in tensors:
        if other != name and other in tsnap.open(path):
            assert_bits_equal(tsnap.load(path, other, verify=True), logical(tensors[other]))


def test_verify_names_the_first_bad_tensor_in_sorted_order(tmp_path, seed):
    path = tmp_path / "s.h5"
    _snapshot(path, np.random.default_rng([seed, 52]))
    _flip(path, _data_offset(path, "plain/i16"))
    _flip(path, _data_offset(path, "plain/f32"))
    for call in (lambda: tsnap.verify(path), lambda: tsnap.load(path, verify=True),
                 lambda: tsnap.load(path, mmap="auto", verify=True)):
        with pytest.raises(tsnap.IntegrityError) as info:
            call()
        assert "plain/f32" in str(info.value) and "plain/i16" not in str(info.value)


def test_a_changed_byte_in_compressed_data_is_a_format_or_integrity_error(tmp_path, seed):
    path = tmp_path / "s.h5"
    _snapshot(path, np.random.default_rng([seed, 53]))
    packed = path.with_name("packed.h5")
    with h5py.File(packed, "r") as f:
        info = f["packed/f64"].id.get_chunk_info(0)
    _flip(packed, info.byte_offset + info.size // 2)
    with pytest.raises((tsnap.IntegrityError, tsnap.FormatError)) as e:
        tsnap.load(packed, "packed/f64", verify=True)
    assert "packed/f64" in str(e.value) and str(packed) in str(e.value)
    with pytest.raises((tsnap.IntegrityError, tsnap.FormatError)):
        tsnap.verify(packed)


# ---------------------------------------------------------------------------
# Files that are not snapshots

@pytest.mark.parametrize("content", ["random", "text", "empty", "hdf5-signature-only"])
def test_a_file_that_is_not_hdf5_raises_format_error_naming_it(tmp_path, seed, content):
    path = tmp_path / "bad.h5"
    path.write_bytes({
        "random": lambda: np.random.default_rng([seed, 54]).bytes(4096),
        "text": lambda: b"step,time\n1,0.5\n2,1.0\n" * 50,
        "empty": lambda: b"",
        "hdf5-signature-only": lambda: b"\x89HDF\r\n\x1a\n",
    }[content]())
    for call in (lambda: tsnap.load(path), lambda: tsnap.load(path, "x", mmap=True),
                 lambda: tsnap.open(path), lambda: tsnap.verify(path)):
        with pytest.raises(tsnap.FormatError) as info:
            call()
        assert str(path) in str(info.value)


def test_a_directory_is_not_a_snapshot(tmp_path):
    with pytest.raises(tsnap.Error) as info:
        tsnap.load(tmp_path)
    assert str(tmp_path) in str(info.value)


# The damage loop, run in a subprocess: argv[1] is a JSON file
# {"work": dir, "cases": [[label, source path, "truncate", length] or
#                         [label, source path, "flip", offset, mask]]},
# argv[2] the first case to run.  For each case it prints one JSON line
# [label, {op: outcome}] where an outcome is "ok" or [class name, [names in
# its MRO], is tsnap.Error, message names the file, message]; before each
# operation it prints "case op" to stderr, so that a crash names its case.
DAMAGE_SCRIPT = r"""
import faulthandler, json, os, sys
import numpy as np
import tsnap

spec = json.load(open(sys.argv[1]))
work = spec["work"]

def touch_all(d):
    for a in d.values():
        a.tobytes()  # reads every page: a mapping past the end would SIGBUS

def browse(path):
    with tsnap.open(path) as f:
        dict(f.attrs)
        for k in f.keys():
            t = f[k]
            (t.shape, t.dtype, t.chunks, t.compression, t.mappable, t.map_status,
             t.checksum, t.nbytes, dict(t.attrs))
            if t.size:
                t[(0,) * t.ndim]
                t[...].tobytes()

OPS = {
    "load_verify": lambda p: tsnap.load(p, verify=True),
    "load_auto": lambda p: touch_all(tsnap.load(p, mmap="auto")),
    "verify": lambda p: tsnap.verify(p),
    "browse": browse,
}

for i in range(int(sys.argv[2]), len(spec["cases"])):
    case = spec["cases"][i]
    label, src, kind = case[:3]
    data = bytearray(open(src, "rb").read())
    if kind == "truncate":
        data = data[:case[3]]
    else:
        data[case[3]] ^= case[4]
    path = os.path.join(work, "d%05d.h5" % i)
    with open(path, "wb") as fh:
        fh.write(data)
    out = {}
    # a case that hangs ends the process (exit 1, "Timeout" on stderr)
    faulthandler.dump_traceback_later(CASE_SECONDS, exit=True)
    for op, fn in OPS.items():
        print(i, op, file=sys.stderr, flush=True)
        try:
            fn(path)
            out[op] = "ok"
        except Exception as e:
            out[op] = [type(e).__name__, [c.__name__ for c in type(e).__mro__],
                       isinstance(e, tsnap.Error), str(path) in str(e), str(e)[:300]]
    faulthandler.cancel_dump_traceback_later()
    os.unlink(path)
    print(json.dumps([label, out]), flush=True)
"""
CASE_SECONDS = 5


def _run_damage(tmp_path, cases, max_crashes=10):
    """{label: {op: outcome}} of every case, and the list of crashes and
    hangs: each is recorded with its case and operation, and the loop goes on
    after it."""
    spec = tmp_path / "spec.json"
    work = tmp_path / "work"
    work.mkdir()
    spec.write_text(json.dumps({"work": str(work), "cases": cases}))
    results, crashes, start = {}, [], 0
    while start < len(cases) and len(crashes) < max_crashes:
        proc = run_python(DAMAGE_SCRIPT.replace("CASE_SECONDS", str(CASE_SECONDS)), spec,
                          start, timeout=600)
        for line in proc.stdout.splitlines():
            label, out = json.loads(line)
            results[label] = out
        if proc.returncode == 0:
            break
        last = [ln for ln in proc.stderr.splitlines() if ln[:1].isdigit()]
        if not last:
            raise AssertionError(describe_exit(proc))
        index, op = last[-1].split()
        case = cases[int(index)]
        if proc.returncode == 1 and "Timeout" in proc.stderr:
            how = f"hung for more than {CASE_SECONDS} s"
        else:
            how = describe_exit(proc).splitlines()[0]
        crashes.append(f"{case[0]} {op}: {how}; stderr tail: "
                       f"{[ln for ln in proc.stderr.splitlines() if not ln[:1].isdigit()][-3:]}")
        start = int(index) + 1
    return results, crashes


def _bad_outcomes(results, allowed, allowed_without_verify):
    """Outcomes that are neither a clean load nor an allowed tsnap error
    whose message names the file.  IntegrityError only where a checksum is
    checked."""
    bad = []
    for label, ops in results.items():
        for op, out in ops.items():
            if out == "ok":
                continue
            name, mro, is_tsnap, names_file, message = out
            ok = allowed if "verify" in op else allowed_without_verify
            if not is_tsnap or not set(mro) & ok:
                bad.append(f"{label} {op}: {name}: {message}")
            elif not names_file:
                bad.append(f"{label} {op}: {name} does not name the file: {message!r}")
    return bad


def _assert_no_damage_failures(seed, cases, results, crashes, bad):
    lines = []
    if crashes:
        lines += [f"{len(crashes)} damaged files crashed or hung the interpreter:"] + crashes
    if len(results) != len(cases) and not crashes:
        lines.append(f"{len(cases) - len(results)} cases gave no result")
    if bad:
        lines += [f"{len(bad)} bad outcomes, e.g.:"] + bad[:25]
    assert not lines, (f"(TSNAP_TEST_SEED={seed} rebuilds the same damaged files; a label "
                       "is file[:length] or file@offset^mask)\n" + "\n".join(lines))


@pytest.fixture
def damaged_sources(tmp_path, seed):
    src = tmp_path / "src"
    src.mkdir()
    _snapshot(src / "plain.h5", np.random.default_rng([seed, 55]))
    return [src / "plain.h5", src / "packed.h5"]


def test_a_snapshot_truncated_at_any_length_raises_format_errors_and_never_crashes(
        tmp_path, seed, damaged_sources):
    rng = np.random.default_rng([seed, 56])
    cases = []
    for src in damaged_sources:
        size = src.stat().st_size
        lengths = set(range(0, 64)) | set(range(64, size, max(1, size // 120)))
        lengths |= set(rng.integers(0, size, 40).tolist()) | {size - 1, size - 8}
        cases += [[f"{src.name}[:{n}]", str(src), "truncate", n] for n in sorted(lengths)]
    results, crashes = _run_damage(tmp_path, cases)
    bad = _bad_outcomes(results, {"FormatError", "IntegrityError"}, {"FormatError"})
    _assert_no_damage_failures(seed, cases, results, crashes, bad)
    for label, ops in results.items():
        if label.endswith("[:0]") or label.endswith("[:1]"):
            assert ops["load_verify"] != "ok", f"{label} cannot load cleanly"


def _flip_cases(rng, damaged_sources, in_global_heap):
    """Bit flips in the sources: densely over the superblock, the start of
    every object header (and continuation chunk), the first bytes of every
    tensor's data, the rest sampled; either outside or only inside the
    global heap collections (which hold the vlen strings: tsnap_dtype,
    tsnap_checksum, created...)."""
    cases = []
    for src in damaged_sources:
        size = src.stat().st_size
        raw = src.read_bytes()
        offsets = set(range(0, min(size, 96))) | set(rng.integers(0, size, 120).tolist())
        for sig, span in ((b"OHDR", 32), (b"OCHK", 24)):
            at = raw.find(sig)
            while at >= 0:
                offsets |= set(range(at, min(size, at + span)))
                at = raw.find(sig, at + 1)
        with h5py.File(src, "r") as f:
            names = []
            f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        for name in names:
            with h5py.File(src, "r") as f:
                if f[name].size == 0:
                    continue
            start = _data_offset(src, name)
            offsets |= {start, start + 1, start + 3}
        heap = set()
        at = raw.find(b"GCOL")
        while at >= 0:
            # the whole collection: its size is the 8 bytes after signature,
            # version and 3 reserved bytes
            span = int.from_bytes(raw[at + 8:at + 16], "little")
            heap |= set(range(at, min(size, at + max(span, 16))))
            at = raw.find(b"GCOL", at + 1)
        offsets = heap if in_global_heap else offsets - heap
        cases += [[f"{src.name}@{o}^{m}", str(src), "flip", o, m] for o in sorted(offsets)
                  for m in [1 << int(rng.integers(0, 8))]]
    return cases


def _check_flips(tmp_path, seed, cases):
    results, crashes = _run_damage(tmp_path, cases, max_crashes=20)
    # a flipped tsnap_dtype or HDF5 type can name a dtype tsnap does not know:
    # that is tsnap's TypeError (FORMAT.md §11), also a tsnap.Error
    bad = _bad_outcomes(results, {"FormatError", "IntegrityError", "TypeError"},
                        {"FormatError", "TypeError"})
    _assert_no_damage_failures(seed, cases, results, crashes, bad)


def test_bit_flips_anywhere_in_a_snapshot_give_tsnap_errors_or_a_clean_load_never_a_crash(
        tmp_path, seed, damaged_sources):
    rng = np.random.default_rng([seed, 57])
    _check_flips(tmp_path, seed, _flip_cases(rng, damaged_sources, in_global_heap=False))


@pytest.mark.xfail(reason="HDF5 1.10.8's H5HG_read copies a global heap object by the size "
                          "stored in the heap, unchecked: a flipped size there crashes or hangs "
                          "any reader of vlen string attributes (h5dump too)", strict=False)
def test_bit_flips_in_the_global_heap_give_tsnap_errors_or_a_clean_load_never_a_crash(
        tmp_path, seed, damaged_sources):
    rng = np.random.default_rng([seed, 58])
    _check_flips(tmp_path, seed, _flip_cases(rng, damaged_sources, in_global_heap=True))


# ---------------------------------------------------------------------------
# Malformed strings (regressions named after their defect)

def _damage_string(path, value, at, mask=0x80):
    """Flips a bit in the one occurrence of `value` (a vlen string in the
    global heap) at byte `at`: the string is no longer valid UTF-8."""
    raw = bytearray(path.read_bytes())
    where = raw.find(value)
    assert where >= 0 and raw.find(value, where + 1) < 0, f"{value!r} is in the file once"
    raw[where + at] ^= mask
    path.write_bytes(bytes(raw))


def _outcome(fn):
    try:
        fn()
        return None
    except Exception as e:  # noqa: BLE001 - classified by the caller
        return e


def test_malformed_checksum_not_utf8_is_a_tsnap_error_naming_the_file_or_loads(tmp_path):
    path = tmp_path / "ck.h5"
    data = np.arange(12.0)
    tsnap.save(path, {"x": data}, durable=False)
    _damage_string(path, b"xxh3-64:", 9)
    for what, fn, allowed in [
            ("load", lambda: tsnap.load(path, "x"), (tsnap.FormatError,)),
            ("load-auto", lambda: tsnap.load(path, mmap="auto"), (tsnap.FormatError,)),
            ("checksum", lambda: tsnap.open(path)["x"].checksum, (tsnap.FormatError,)),
            ("load-verify", lambda: tsnap.load(path, "x", verify=True),
             (tsnap.FormatError, tsnap.IntegrityError)),
            ("verify", lambda: tsnap.verify(path), (tsnap.FormatError, tsnap.IntegrityError))]:
        e = _outcome(fn)
        if e is None:
            assert "verify" not in what, f"{what}: a malformed checksum cannot verify"
            continue
        assert isinstance(e, allowed), f"{what}: {type(e).__name__}: {e}"
        message = str(e)
        assert str(path) in message and "x" in message.replace(str(path), ""), (
            f"{what}: the message names the file and the tensor: {message!r}")


def test_malformed_dtype_name_not_utf8_is_a_tsnap_error_naming_the_tensor(tmp_path):
    path = tmp_path / "dt.h5"
    tsnap.save(path, {"x": np.arange(3.0), "ok": np.arange(2, dtype=np.int8)}, durable=False)
    _damage_string(path, b"float64", 4)
    for what, fn in [("load", lambda: tsnap.load(path, "x")),
                     ("load-all", lambda: tsnap.load(path)),
                     ("getitem", lambda: tsnap.open(path)["x"])]:
        e = _outcome(fn)
        assert isinstance(e, tsnap.Error) and isinstance(e, (TypeError, tsnap.FormatError)), (
            f"{what}: {type(e).__name__}: {e!r}")
        message = str(e)
        assert str(path) in message and "x" in message.replace(str(path), ""), (
            f"{what}: the message names the file and the tensor: {message!r}")
    assert_bits_equal(tsnap.load(path, "ok"), np.arange(2, dtype=np.int8))


def test_a_dataset_name_that_is_not_utf8_is_listed_and_loads_by_that_name(tmp_path):
    from h5py import h5d, h5s, h5t
    path = tmp_path / "nm.h5"
    with h5py.File(path, "w") as f:
        dsid = h5d.create(f.id, b"bad\xffname", h5t.STD_I32LE, h5s.create_simple((3,)))
        dsid.write(h5s.ALL, h5s.ALL, np.array([5, 6, 7], np.int32))
        f.create_dataset("ok", data=np.arange(3))
    with tsnap.open(path) as f:
        names = list(f.keys())
        assert len(names) == 2
        odd = next(n for n in names if n != "ok")
        assert_bits_equal(f[odd].numpy(), np.array([5, 6, 7], np.int32))
    assert_bits_equal(tsnap.load(path, odd), np.array([5, 6, 7], np.int32))
    assert sorted(tsnap.load(path)) == sorted(names)


UNREADABLE = """
import os, sys, tsnap
if os.geteuid() == 0:  # root reads any file: be nobody
    os.setgid(65534)
    os.setuid(65534)
try:
    tsnap.load(sys.argv[1])
except tsnap.Error as e:
    print(type(e).__name__, isinstance(e, OSError), e)
"""


def test_a_file_this_process_may_not_read_is_an_os_error_not_a_damaged_file():
    parent = Path(tempfile.mkdtemp())  # in a directory anyone may enter
    try:
        parent.chmod(0o755)
        path = parent / "locked.h5"
        tsnap.save(path, {"u": np.arange(6.0)})
        path.chmod(0)
        proc = run_python(UNREADABLE, path)
    finally:
        shutil.rmtree(parent)
    assert proc.returncode == 0, proc.stderr
    assert "FormatError" not in proc.stdout and " True " in proc.stdout, proc.stdout
    assert f"{path}: cannot open: Permission denied" in proc.stdout

"""Independent oracles for the interop tests: the tsnap format v1 as the tests
understand it from docs/FORMAT.md, written with NumPy and h5py only.

Nothing here imports tsnap: the C library is reached only through the
`tsnap_testio` helper (tests/tools/), whose output this module parses.
"""
import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import xxhash
from h5py import h5d, h5t

ROOT = Path(__file__).resolve().parents[2]

# tsnap error codes (include/tsnap.h; fixed forever).
EINVAL, ENOTFOUND, EEXISTS, EFORMAT, ECHECKSUM = -1, -2, -3, -4, -5
ENOTMAPPABLE, ENOCUDA, ECUDA, EIO, ENOMEM, ETYPE, ESTATE = -6, -7, -8, -9, -10, -11, -12

# tsnap_map_status values.
MAP_OK, MAP_EMPTY, MAP_FILTERED, MAP_BYTE_ORDER, MAP_TYPE = 0, 1, 2, 3, 4
MAP_NOT_ALLOCATED, MAP_SCATTERED, MAP_LAYOUT, MAP_TRUNCATED = 5, 6, 7, 8

# Every tsnap dtype: name -> (element size, the NumPy dtype h5py returns,
# True if h5py's values are a widening of the raw bits rather than the bits).
DTYPES = {
    "bool": (1, np.dtype(bool)),
    "int8": (1, np.dtype("int8")),
    "int16": (2, np.dtype("int16")),
    "int32": (4, np.dtype("int32")),
    "int64": (8, np.dtype("int64")),
    "uint8": (1, np.dtype("uint8")),
    "uint16": (2, np.dtype("uint16")),
    "uint32": (4, np.dtype("uint32")),
    "uint64": (8, np.dtype("uint64")),
    "float16": (2, np.dtype("float16")),
    "bfloat16": (2, np.dtype("float32")),       # widened exactly by HDF5
    "float32": (4, np.dtype("float32")),
    "float64": (8, np.dtype("float64")),
    "float8_e4m3fn": (1, np.dtype("uint8")),    # raw bits
    "float8_e5m2": (1, np.dtype("float16")),    # widened exactly by HDF5
    "complex32": (4, np.dtype("float16")),      # with a trailing axis of 2
    "complex64": (8, np.dtype("complex64")),
    "complex128": (16, np.dtype("complex128")),
}
DTYPE_NAMES = list(DTYPES)

# The shape cases tsnap_testio writes for every dtype (tests/tools/tsnap_testio.c).
CASES = ["scalar", "empty", "empty3d", "one", "prime3d", "rank5", "rows",
         "transposed", "reversed", "broadcast", "strided"]

DEFAULT_CHUNK_BYTES = 4 << 20


# ---------------------------------------------------------------------------
# The helper program

def testio_path():
    """The tsnap_testio binary: env TSNAP_TESTIO, else the build tree."""
    env = os.environ.get("TSNAP_TESTIO")
    if env:
        return Path(env)
    for build in ("build", "build-asan", "build-debug"):
        p = ROOT / build / "tests" / "tools" / "tsnap_testio"
        if p.exists():
            return p
    return ROOT / "build" / "tests" / "tools" / "tsnap_testio"


def run_testio(*args, check=True):
    proc = subprocess.run([str(testio_path()), *map(str, args)], capture_output=True,
                          text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"tsnap_testio {' '.join(map(str, args))} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def read_manifest(directory):
    """The manifest of a write or read: {'file': {...}, 'tensors': {name: {...}},
    'attrs': [...], 'open_error': {...} or None}."""
    out = {"file": None, "tensors": {}, "attrs": [], "open_error": None}
    with open(Path(directory) / "manifest.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            kind = rec.pop("kind")
            if kind == "file":
                out["file"] = rec
            elif kind == "tensor":
                out["tensors"][rec["name"]] = rec
            elif kind == "attr":
                out["attrs"].append(rec)
            elif kind == "open_error":
                out["open_error"] = rec["error"]
    return out


def tensor_bytes(directory, rec):
    return (Path(directory) / rec["file"]).read_bytes()


# ---------------------------------------------------------------------------
# Values

def file_shape(dtype, shape):
    """The dataset's shape in HDF5 for a tensor of this dtype and shape."""
    return tuple(shape) + ((2,) if dtype == "complex32" else ())


def expected_h5py_array(dtype, raw, shape):
    """What h5py must return for a tensor whose logical little-endian bytes are
    `raw`: built from the bits, never through HDF5."""
    shape = tuple(shape)
    if dtype == "bool":
        a = np.frombuffer(raw, np.uint8).astype(bool)
    elif dtype == "bfloat16":
        a = (np.frombuffer(raw, "<u2").astype("<u4") << 16).view("<f4")
    elif dtype == "float8_e5m2":
        a = (np.frombuffer(raw, "u1").astype("<u2") << 8).view("<f2")
    elif dtype == "float8_e4m3fn":
        a = np.frombuffer(raw, "u1")
    elif dtype == "complex32":
        a = np.frombuffer(raw, "<f2")
    else:
        a = np.frombuffer(raw, DTYPES[dtype][1].newbyteorder("<"))
    return a.astype(a.dtype.newbyteorder("="), copy=True).reshape(file_shape(dtype, shape))


def h5py_native(ds):
    """h5py's read of a dataset, in native byte order; an {r, i} compound of
    float16 as float16 pairs on a trailing axis (tsnap's complex32 form)."""
    a = np.asarray(ds[()])
    if a.dtype.names is not None and set(a.dtype.names) == {"r", "i"}:
        r, i = a["r"].astype(a["r"].dtype.newbyteorder("=")), a["i"]
        if r.dtype.itemsize == 2:
            a = np.stack([r, i.astype(r.dtype)], axis=-1)
        else:
            c = np.empty(a.shape, np.result_type(r.dtype, np.complex64))
            c.real, c.imag = r, i
            a = c
    if a.dtype.byteorder not in ("=", "|"):
        a = a.astype(a.dtype.newbyteorder("="))
    return a


def _float_view(a):
    a = np.ascontiguousarray(a).reshape(-1)
    if a.dtype.kind == "c":
        return a.view(a.real.dtype)
    return a


def assert_same_values(got, want, what=""):
    """Equal dtype and shape; bit-exact where not NaN; NaN in the same places."""
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, expected {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    if got.dtype.kind in "fc":
        g, w = _float_view(got), _float_view(want)
        gn, wn = np.isnan(g), np.isnan(w)
        assert np.array_equal(gn, wn), f"{what}: NaN at different positions"
        bits = f"u{g.dtype.itemsize}"
        gb, wb = g.view(bits)[~gn], w.view(bits)[~wn]
        bad = np.flatnonzero(gb != wb)
        assert bad.size == 0, (f"{what}: {bad.size} values differ, first "
                               f"{g[~gn][bad[0]]!r} != {w[~wn][bad[0]]!r}")
    else:
        bad = np.flatnonzero(got.ravel() != want.ravel())
        assert bad.size == 0, (f"{what}: {bad.size} values differ, first at {bad[0]}: "
                               f"{got.ravel()[bad[0]]!r} != {want.ravel()[bad[0]]!r}")


def checksum(raw):
    """tsnap_checksum of logical bytes: xxh3-64, seed 0, 16 lowercase hex digits."""
    return "xxh3-64:%016x" % xxhash.xxh3_64_intdigest(raw, seed=0)


# ---------------------------------------------------------------------------
# The HDF5 types of the format

def _custom_float(fields, size, ebias, order=h5t.ORDER_LE):
    t = h5t.IEEE_F32LE.copy()
    t.set_fields(*fields)
    t.set_size(size)
    t.set_ebias(ebias)
    t.set_order(order)
    return t


def float16_type(order=h5t.ORDER_LE):
    return _custom_float((15, 10, 5, 0, 10), 2, 15, order)


def bfloat16_type(order=h5t.ORDER_LE):
    return _custom_float((15, 7, 8, 0, 7), 2, 127, order)


def e5m2_type(order=h5t.ORDER_LE):
    return _custom_float((7, 2, 5, 0, 2), 1, 15, order)


def bool_type(base=None):
    t = h5t.enum_create(base if base is not None else h5t.STD_I8LE)
    t.enum_insert(b"FALSE", 0)
    t.enum_insert(b"TRUE", 1)
    return t


def complex_type(part, size):
    t = h5t.create(h5t.COMPOUND, size)
    t.insert(b"r", 0, part)
    t.insert(b"i", size // 2, part)
    return t


def canonical_type(dtype):
    """The HDF5 type tsnap stores for a dtype (complex32: its float16 element)."""
    return {
        "bool": bool_type,
        "int8": lambda: h5t.STD_I8LE, "int16": lambda: h5t.STD_I16LE,
        "int32": lambda: h5t.STD_I32LE, "int64": lambda: h5t.STD_I64LE,
        "uint8": lambda: h5t.STD_U8LE, "uint16": lambda: h5t.STD_U16LE,
        "uint32": lambda: h5t.STD_U32LE, "uint64": lambda: h5t.STD_U64LE,
        "float16": float16_type, "bfloat16": bfloat16_type,
        "float32": lambda: h5t.IEEE_F32LE, "float64": lambda: h5t.IEEE_F64LE,
        "float8_e4m3fn": lambda: h5t.STD_U8LE, "float8_e5m2": e5m2_type,
        "complex32": float16_type,
        "complex64": lambda: complex_type(h5t.IEEE_F32LE, 8),
        "complex128": lambda: complex_type(h5t.IEEE_F64LE, 16),
    }[dtype]()


def is_vlen_utf8_scalar(attrs, key):
    aid = attrs.get_id(key)
    t = aid.get_type()
    return (aid.shape == () and t.get_class() == h5t.STRING and t.is_variable_str()
            and t.get_cset() == h5t.CSET_UTF8)


# ---------------------------------------------------------------------------
# Layout

def chunk_rule(shape, itemsize, chunk_bytes, unfiltered):
    """The chunk shape of the format's chunk rule (logical dims)."""
    chunk = []
    for j, d in enumerate(shape):
        inner = math.prod(shape[j + 1:]) * itemsize
        if inner > chunk_bytes:
            chunk.append(1)
            continue
        k = max(1, min(d, chunk_bytes // inner))
        if unfiltered and math.prod(shape[:j]) > 1:
            # no padding between chunks: k divides d
            k = max(i for i in range(1, k + 1) if d % i == 0)
        chunk.append(k)
        chunk.extend(shape[j + 1:])
        break
    return tuple(chunk)


def flat_offset(ds):
    """Where the dataset's logical C-order bytes start in the file if they lie
    there flat (unfiltered, allocated, every element at first + index *
    itemsize), found from HDF5's own addresses; None otherwise."""
    dsid = ds.id
    dcpl = dsid.get_create_plist()
    if dcpl.get_nfilters():
        return None
    layout = dcpl.get_layout()
    if layout == h5d.CONTIGUOUS:
        if dcpl.get_external_count():
            return None
        return dsid.get_offset()
    if layout != h5d.CHUNKED:
        return None
    shape = ds.shape
    chunk = dcpl.get_chunk()
    itemsize = dsid.get_type().get_size()
    grid = [math.ceil(s / c) for s, c in zip(shape, chunk)]
    if dsid.get_num_chunks() != math.prod(grid):
        return None
    # each chunk is stored as a full block in C order; only a slab-shaped
    # chunk (1, ..., 1, k, full, ...) keeps its valid part a C-order prefix
    j = next((a for a, c in enumerate(chunk) if c != 1), len(chunk))
    if any(chunk[a] != shape[a] for a in range(j + 1, len(shape))):
        return None
    infos = [dsid.get_chunk_info(i) for i in range(dsid.get_num_chunks())]
    first = None
    for info in infos:
        if info.byte_offset is None:
            return None
        if all(o == 0 for o in info.chunk_offset):
            first = info.byte_offset
    if first is None:
        return None
    for info in infos:
        index = int(np.ravel_multi_index(info.chunk_offset, shape)) if shape else 0
        if info.byte_offset != first + index * itemsize:
            return None
    return first


def superblock(path):
    """(offset of the HDF5 signature, superblock version)."""
    with open(path, "rb") as f:
        head = f.read(9)
    assert head[:8] == b"\x89HDF\r\n\x1a\n", f"{path}: no HDF5 signature at offset 0"
    return 0, head[8]

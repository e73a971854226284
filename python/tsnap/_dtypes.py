"""NumPy dtypes and tsnap dtypes, both ways.

The C layer hands arrays over in a *storage* type: bfloat16 and float8 as
their raw unsigned bits, complex32 as float16 pairs on a trailing axis.
Here they become what the user gets: ml_dtypes types when ml_dtypes can be
imported, and otherwise an exact float32 upcast; complex32 always becomes
complex64 (NumPy has no complex32).
"""

import importlib.util
import sys

import numpy as np

from . import _core, errors

CODES = dict(_core.DTYPES)            # "float32" -> code
NAMES = {c: n for n, c in CODES.items()}

# Types that ml_dtypes provides; their storage is raw bits.
ML_DTYPES = ("bfloat16", "float8_e4m3fn", "float8_e5m2")
# Types whose values are not those of their storage array.
CONVERTED = frozenset(CODES[n] for n in ML_DTYPES + ("complex32",))

_NUMPY = {
    ("b", 1): "bool",
    ("i", 1): "int8", ("i", 2): "int16", ("i", 4): "int32", ("i", 8): "int64",
    ("u", 1): "uint8", ("u", 2): "uint16", ("u", 4): "uint32", ("u", 8): "uint64",
    ("f", 2): "float16", ("f", 4): "float32", ("f", 8): "float64",
    ("c", 8): "complex64", ("c", 16): "complex128",
}

_ml_dtypes = None


def ml_dtypes():
    """The ml_dtypes module, or None when it cannot be imported."""
    global _ml_dtypes
    if _ml_dtypes is None:
        try:
            import ml_dtypes as mod
        except ImportError:
            mod = False
        _ml_dtypes = mod
    return _ml_dtypes or None


def code_of(dtype):
    """The tsnap dtype code of a NumPy dtype, or None if tsnap cannot store it.

    Byte order is not looked at: callers convert to native order first."""
    t = dtype.type
    if getattr(t, "__module__", "") == "ml_dtypes" and t.__name__ in ML_DTYPES:
        return CODES[t.__name__]
    if dtype.fields is not None or dtype.subdtype is not None:
        return None
    if dtype.kind in "biufc" and dtype.char not in "gG":  # longdouble is not portable
        name = _NUMPY.get((dtype.kind, dtype.itemsize))
        return CODES[name] if name else None
    return None


def user_dtype(code):
    """The NumPy dtype an array of tsnap dtype `code` loads as."""
    name = NAMES[code]
    if name in ML_DTYPES:
        ml = ml_dtypes()
        return np.dtype(getattr(ml, name)) if ml else np.dtype(np.float32)
    if name == "complex32":
        return np.dtype(np.complex64)
    if name == "bool":
        return np.dtype(np.bool_)
    return np.dtype(name)


def _ml_dtypes_present():
    """Whether ml_dtypes can be imported, without importing it (~0.7 s
    with the GIL held): only a tensor that needs it imports it."""
    if _ml_dtypes is not None:
        return bool(_ml_dtypes)
    if "ml_dtypes" in sys.modules:
        return sys.modules["ml_dtypes"] is not None  # None: imports of it fail
    try:
        return importlib.util.find_spec("ml_dtypes") is not None
    except (ImportError, ValueError):
        return False


def why_not_view(code):
    """Why tensors of `code` cannot be returned as a view of their bytes
    (None when they can)."""
    name = NAMES[code]
    if name == "complex32":
        return "complex32 has no NumPy dtype; it loads as a complex64 copy"
    if name in ML_DTYPES and not ml_dtypes():
        return f"{name} needs ml_dtypes to load without conversion (pip install ml_dtypes)"
    return None


_NO_VIEW = None


def no_view():
    """The dtype codes whose bytes NumPy cannot view as the loaded dtype
    (ml_dtypes is looked for, not imported)."""
    global _NO_VIEW
    if _NO_VIEW is None:
        ml = _ml_dtypes_present()
        _NO_VIEW = frozenset(c for c, n in NAMES.items()
                             if n == "complex32" or (n in ML_DTYPES and not ml))
    return _NO_VIEW


def _e4m3fn_table():
    # Every float8_e4m3fn byte as float32: bias 7, no infinities, only
    # S.1111.111 is NaN.  All 256 values are exact in float32.
    b = np.arange(256)
    sign = np.where(b & 0x80, -1.0, 1.0)
    exp = (b >> 3) & 0xF
    man = b & 0x7
    val = np.where(exp == 0, man / 8.0 * 2.0 ** -6, (1 + man / 8.0) * 2.0 ** (exp - 7.0))
    val = np.where((exp == 15) & (man == 7), np.nan, val)
    return (sign * val).astype(np.float32)


_E4M3FN = None


def to_user(raw, code):
    """The array the user gets from a storage array of dtype `code`: a view
    where the bytes are already right, otherwise a converted copy."""
    if code not in CONVERTED:
        return raw
    out = _convert(raw, code)
    # NumPy's operators turn 0-d results into scalars; keep an array.
    return out if isinstance(out, np.ndarray) else np.asarray(out)


def _convert(raw, code):
    name = NAMES[code]
    if name == "complex32":
        return raw.astype(np.float32).view(np.complex64)[..., 0]
    ml = ml_dtypes()
    if ml:
        return raw.view(getattr(ml, name))
    if name == "bfloat16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    if name == "float8_e5m2":
        return (raw.astype(np.uint16) << 8).view(np.float16).astype(np.float32)
    global _E4M3FN
    if _E4M3FN is None:
        _E4M3FN = _e4m3fn_table()
    return _E4M3FN[raw]


def refuse(path, name, dtype, what="tensor"):
    """Raises tsnap's TypeError for a dtype tsnap cannot store."""
    hint = ""
    if dtype.kind in "OUSV" or dtype.fields is not None:
        hint = " (tsnap stores numeric tensors only)"
    elif dtype.char in "gG":
        hint = " (long double has no portable layout)"
    elif dtype.kind in "mM":
        hint = " (store it as int64 with .view('i8'))"
    raise errors.TypeError(f"{path}: {what} '{name}': dtype {dtype} is not supported{hint}")



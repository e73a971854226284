"""Checkpoints as programs hold them: nested mappings, lists and tuples of
tensors, Python scalars, strings and bytes, saved as HDF5 groups and
datasets and loaded back as the same structure.

A structure becomes a flat list of entries, each one of:

- ("array", ndarray, code) or ("dlpack", obj, None): a tensor, as before;
- ("string", bytes, kind): a 0-d string dataset (kind 1: text, 2: bytes);
- ("group", None, None): a group: a list, a tuple, None, or an empty
  mapping (the groups of other mappings come with what they hold)

with the `tsnap_pytype` to record on it, or None (docs/FORMAT.md).
"""
import collections.abc
import numbers

import numpy as np

from . import _dtypes as dtypes, errors

STRING_UTF8, STRING_BYTES = 1, 2  # tsnap_string_kind

_INT64 = (-(1 << 63), (1 << 63) - 1)

# tsnap_pytype of a 0-d tensor -> the Python type it loads as.
_SCALARS = {"bool": bool, "int": int, "float": float, "complex": complex}


class Entry(collections.namedtuple("Entry", "name kind value code pytype")):
    """One dataset or group of a structure, under its full name."""
    __slots__ = ()


def _scalar(path, name, value):
    """The entry of a Python bool, int, float or complex: a 0-d tensor."""
    if isinstance(value, bool):
        arr, pytype = np.asarray(value, dtype=np.bool_), "bool"
    elif isinstance(value, numbers.Integral):
        v = int(value)
        if not _INT64[0] <= v <= _INT64[1]:
            raise errors.ValueError(f"{path}: '{name}': the int {v} does not fit in int64"
                                    " (store it as a str, or as an array of a wider kind)")
        arr, pytype = np.asarray(v, dtype=np.int64), "int"
    elif isinstance(value, float):
        arr, pytype = np.asarray(value, dtype=np.float64), "float"
    else:
        arr, pytype = np.asarray(value, dtype=np.complex128), "complex"
    return Entry(name, "array", arr, dtypes.code_of(arr.dtype), pytype)


def _is_scalar(value):
    return isinstance(value, (bool, int, float, complex)) and not isinstance(value, np.generic)


def _numeric_sequence(value):
    """Whether a list or tuple holds only Python numbers (and lists and
    tuples of them): a tensor, as NumPy sees it (as a flat save has always
    stored it), recorded as a list or tuple.  Any other list or tuple is a
    group of indexed names."""
    stack = [value]
    while stack:
        for item in stack.pop():
            if isinstance(item, (list, tuple)):
                stack.append(item)
            elif not isinstance(item, (bool, int, float, complex)):
                return False
    return True


def _int_keyed(node):
    """Whether a mapping's keys are all ints (an optimizer's state is keyed
    by parameter number): stored as decimal names, loaded back as ints."""
    return bool(node) and all(isinstance(k, numbers.Integral) and not isinstance(k, bool)
                              for k in node)


def _child_name(path, parent, key, in_list):
    """The full name of `parent`'s child `key`, or a refusal."""
    if not in_list:
        where = f"'{parent}'" if parent else "the top level"
        if not isinstance(key, str):
            raise errors.TypeError(f"{path}: a key of {where} is {type(key).__name__} {key!r}:"
                                   " keys of nested mappings must be str (or all int)")
        if not key:
            raise errors.ValueError(f"{path}: a key of {where} is empty: names must not be"
                                    " empty")
        if "/" in key:
            raise errors.ValueError(f"{path}: the key {key!r} of {where} contains '/', which"
                                    " separates groups in HDF5: rename it")
    return f"{parent}/{key}" if parent else str(key)


def flatten(path, tree, tensor):
    """The entries of `tree` (a mapping), parents before children, each
    checked before anything is written.  `tensor(path, name, value)` makes
    the entry of a tensor (the flat save's own check).  At the top level a
    key holding a tensor may be a path ("grid/x"), as in a flat save; any
    other key is one name."""
    if not isinstance(tree, collections.abc.Mapping):
        raise errors.TypeError(f"{path}: tensors must be a mapping of names to arrays,"
                               f" not {type(tree).__name__}")
    out = []
    stack = [("", tree, 0)]
    while stack:
        parent, node, depth = stack.pop()
        in_list = isinstance(node, (list, tuple)) or (depth > 0 and _int_keyed(node))
        items = enumerate(node) if isinstance(node, (list, tuple)) else node.items()
        children = []
        for key, value in items:
            container = isinstance(value, collections.abc.Mapping) or (
                isinstance(value, (list, tuple)) and not _numeric_sequence(value))
            if depth == 0 and isinstance(key, str) and key and not container \
                    and value is not None and "/" in key:
                name = key  # a flat path, as save() has always taken it
            else:
                name = _child_name(path, parent, key, in_list)
            if container:
                kind = "list" if isinstance(value, list) else \
                    "tuple" if isinstance(value, tuple) else \
                    "intkeys" if _int_keyed(value) else None
                if kind or not value:
                    out.append(Entry(name, "group", None, None, kind))
                children.append((name, value, depth + 1))
            elif value is None:
                out.append(Entry(name, "group", None, None, "none"))
            elif isinstance(value, str):
                try:
                    data = value.encode("utf-8")
                except UnicodeEncodeError as e:
                    raise errors.ValueError(f"{path}: '{name}': the str is not valid"
                                            f" Unicode: {e}") from None
                if "\0" in value:
                    raise errors.ValueError(f"{path}: '{name}': the str holds a NUL character,"
                                            " which an HDF5 string cannot (store it as bytes)")
                out.append(Entry(name, "string", data, STRING_UTF8, None))
            elif isinstance(value, bytes):
                out.append(Entry(name, "string", bytes(value), STRING_BYTES, "bytes"))
            elif _is_scalar(value):
                out.append(_scalar(path, name, value))
            elif isinstance(value, (list, tuple)):  # of numbers only
                out.append(Entry(name, *tensor(path, name, value), type(value).__name__))
            else:
                out.append(Entry(name, *tensor(path, name, value), None))
        if depth == 0:  # the top level's groups before its paths ("a/b") into them
            out.sort(key=lambda e: e.kind != "group")
        stack.extend(reversed(children))
    return out


def put(writer, path, entries, encode, put_tensor):
    """Writes the entries through a _core.Writer; `put_tensor(name, entry)`
    writes a tensor's."""
    for e in entries:
        key = encode(path, e.name)
        if e.kind == "group":
            writer.put_group(key)
        elif e.kind == "string":
            writer.put_string(key, e.value, e.code)
        else:
            put_tensor(key, e)
        if e.pytype:
            writer.set_pytype(key, e.pytype)


# ---- loading ------------------------------------------------------------

def from_string(data, kind, pytype):
    """A string dataset's value: str for text, bytes otherwise.  Bytes
    that tsnap did not write lose their trailing NULs, as h5py's read
    does (NumPy's fixed-length bytes)."""
    if kind == STRING_UTF8:
        return data.decode("utf-8", "surrogateescape")
    return data if pytype == "bytes" else data.rstrip(b"\0")


def _typed(value, pytype):
    """A tensor as the Python value it was saved from, if it was one."""
    cast = _SCALARS.get(pytype)
    if cast is not None and value.ndim == 0:
        return cast(value[()])
    if pytype in ("list", "tuple") and value.ndim > 0:
        return value.tolist()  # nested lists of Python numbers
    return value


def _decimal(key):
    try:
        return str(int(key)) == key
    except ValueError:
        return False


def build(path, values, groups, pytype_of, root_kind=None):
    """The nested structure of a file: `values` maps full dataset names to
    what they load as, `groups` lists every group, `pytype_of(name)` gives
    a dataset's or group's tsnap_pytype (or None).  0-d tensors with a
    recorded Python type become that type, tensors saved from lists of
    numbers lists again; other 0-d tensors stay 0-d arrays.  `root_kind` is
    the top group's own tsnap_pytype."""
    root = {}
    kinds = {"": root_kind}

    def node(name):
        parts = name.split("/")
        d = root
        for i, part in enumerate(parts):
            d = d.setdefault(part, {})
            if not isinstance(d, dict):
                raise errors.FormatError(f"{path}: '{'/'.join(parts[:i + 1])}' is both a"
                                         " dataset and a group")
        return d

    for g in groups:
        node(g)
        kinds[g] = pytype_of(g)
    for name, value in values.items():
        parent, _, leaf = name.rpartition("/")
        if isinstance(value, np.ndarray):
            value = _typed(value, pytype_of(name))
        (node(parent) if parent else root)[leaf] = value

    def finish(name, d):
        for key in list(d):
            if isinstance(d[key], dict):
                d[key] = finish(f"{name}/{key}" if name else key, d[key])
        kind = kinds.get(name)
        if kind == "none" and not d:
            return None
        if kind in ("list", "tuple"):
            n = len(d)
            if set(d) == {str(i) for i in range(n)}:
                return [d[str(i)] for i in range(n)]
        if kind == "intkeys" and all(_decimal(k) for k in d):
            return {int(k): v for k, v in d.items()}
        return d

    return finish("", root)

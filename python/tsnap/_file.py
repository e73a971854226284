"""Reading: tsnap.open -> File -> Tensor, tsnap.load and tsnap.verify."""
import collections.abc
import importlib.util
import math
import numbers
import operator
import os

from . import _core, _dtypes as dtypes, _nested, errors

_CODEC_NAMES = {code: (None if name == "none" else name) for name, code in _core.CODECS.items()}
_MMAP_CHOICES = (False, True, "auto")
_MAP_VIRTUAL = 9  # tsnap_map_status: a virtual dataset over other files
_PLAIN_FILTERS = (2, 3)  # shuffle and fletcher32: not what compresses


def _use_hdf5plugin():
    """Hands hdf5plugin's directory of HDF5 filter plug-ins (blosc, bzip2,
    bitshuffle, ...) to the library, after any of HDF5_PLUGIN_PATH.  Only
    found, not imported (importing it imports h5py); the library gives it
    to HDF5 when a dataset first needs a filter HDF5 has not got."""
    try:
        spec = importlib.util.find_spec("hdf5plugin")
    except (ImportError, ValueError):
        return
    for folder in (spec.submodule_search_locations or []) if spec else []:
        plugins = os.path.join(folder, "plugins")
        if os.path.isdir(plugins):
            _core.plugin_path_append(plugins)
            return


_use_hdf5plugin()


class Part(collections.namedtuple("Part", "file dataset offset shape path")):
    """One block of a virtual tensor: the whole of dataset `dataset` of the
    part file `file` (as the snapshot names it, relative to its folder;
    `path` is where it was found) holds the tensor's elements from
    `offset` on, a block of `shape`."""
    __slots__ = ()


def _check_mmap(path, mmap):
    if not any(mmap is c or (isinstance(mmap, str) and mmap == c) for c in _MMAP_CHOICES):
        raise errors.ValueError(f"{path}: mmap must be False, True or 'auto', not {mmap!r}")


def _cuda_device(path, device):
    """The CUDA device number `device` names ("cuda", "cuda:1", a
    torch.device, an int), or None for the host (None, "cpu").  "cuda"
    alone is the calling thread's current device (what torch.cuda.set_device
    or cupy.cuda.Device.use chose), device 0 when it has none."""
    if device is None:
        return None
    if isinstance(device, int) and not isinstance(device, bool) and device >= 0:
        return device
    text = str(device)
    if text == "cpu":
        return None
    kind, _, index = text.partition(":")
    if kind == "cuda" and (not index or index.isdigit()):
        return int(index) if index else _core.DeviceArray.current_device()
    raise errors.ValueError(f"{path}: device must be None, 'cpu', 'cuda' or 'cuda:N',"
                            f" not {device!r}")


def encode_name(path, name):
    """A tensor name as the C layer takes it: UTF-8 bytes, with the bytes of
    a foreign file's non-UTF-8 name (decoded as surrogates) given back."""
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as e:
        raise errors.ValueError(f"{path}: tensor name {name!r} is not valid Unicode: {e}") from None


def _attr_value(value):
    # 0-d arrays become NumPy scalars, as h5py gives them.
    if hasattr(value, "ndim") and value.ndim == 0:
        return value[()]
    return value


def _selection(key, shape):
    """(start, count, step, post) of a NumPy basic index into `shape`:
    the hyperslab to read (positive steps) and the index that turns it into
    what NumPy would return (dropping int axes, reversing negative steps)."""
    if not isinstance(key, tuple):
        key = (key,)
    for k in key:
        if k is Ellipsis or isinstance(k, slice):
            continue
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise errors.TypeError(
                f"tensors take ints, slices and ... as indices, not {type(k).__name__}"
                " (read with [...] and index the array for anything else)")
    ellipses = sum(1 for k in key if k is Ellipsis)
    if ellipses > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    ndim = len(shape)
    if len(key) - ellipses > ndim:
        raise IndexError(f"too many indices: the tensor has {ndim} dimensions,"
                         f" {len(key) - ellipses} were indexed")
    if ellipses:
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:at] + (slice(None),) * (ndim - len(key) + 1) + key[at + 1:]
    key = key + (slice(None),) * (ndim - len(key))
    start, count, step, post = [], [], [], []
    for axis, (k, n) in enumerate(zip(key, shape)):
        if isinstance(k, slice):
            r = range(*k.indices(n))
            if len(r) == 0:
                start.append(0), count.append(0), step.append(1), post.append(slice(None))
            elif r.step > 0:
                start.append(r.start), count.append(len(r)), step.append(r.step)
                post.append(slice(None))
            else:
                start.append(r[-1]), count.append(len(r)), step.append(-r.step)
                post.append(slice(None, None, -1))
        else:
            i = operator.index(k)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
            start.append(i % n), count.append(1), step.append(1), post.append(0)
    return start, count, step, tuple(post)


class Tensor:
    """One tensor of an open File.  Nothing is read until it is indexed or
    turned into an array; ``t[key]`` reads only the chunks `key` touches."""

    __slots__ = ("_file", "_info", "_key", "name")

    def __init__(self, file, name, key, info):
        self._file = file
        self._info = info
        self._key = key  # the name as bytes
        self.name = name

    # -- description
    @property
    def shape(self):
        return self._info["shape"]

    @property
    def ndim(self):
        return len(self._info["shape"])

    @property
    def size(self):
        return math.prod(self._info["shape"])

    @property
    def dtype(self):
        """The NumPy dtype this tensor loads as."""
        return dtypes.user_dtype(self._info["dtype"])

    @property
    def tsnap_dtype(self):
        """tsnap's name of the stored type ("bfloat16", "complex32", ...)."""
        return dtypes.NAMES[self._info["dtype"]]

    @property
    def nbytes(self):
        """The logical size in bytes (elements x stored element size)."""
        return self._info["nbytes"]

    @property
    def stored_bytes(self):
        """Bytes the tensor takes in the file."""
        return self._info["stored_bytes"]

    @property
    def chunks(self):
        return self._info["chunks"]

    @property
    def compression(self):
        """None, "deflate", "zstd", "lz4", or the registered name of the
        filter that compresses a foreign dataset ("blosc", "bzip2", ...;
        "other" for an unregistered one)."""
        name = _CODEC_NAMES.get(self._info["codec"], "other")
        if name == "other":
            for fid in self._info["filters"]:
                if fid not in _PLAIN_FILTERS:
                    return _core.filter_name(fid) or "other"
        return name

    @property
    def enum(self):
        """The names of an HDF5 enum's values ({name: value}), whose data
        loads as its integer type (as h5py reads it); None for any other
        type, tsnap's bool included."""
        return self._file._r().enum(self._key)

    @property
    def map_status(self):
        """None when the tensor can be memory-mapped, else why not."""
        if self._info["map_status"] in (0, 1):
            return dtypes.why_not_view(self._info["dtype"])
        return self._info["map_reason"]

    @property
    def mappable(self):
        return self.map_status is None

    @property
    def parts(self):
        """The blocks of a virtual tensor (a distributed snapshot's), as
        Part tuples in the order the file lists them; [] for any other."""
        if not self._info["nparts"]:
            return []
        return [Part(file, dataset, offset, shape, path) for file, path, dataset, offset, shape
                in self._file._r().parts(self._key)]

    @property
    def checksum(self):
        """The recorded checksum ("xxh3-64:..."), or None."""
        return self._info["checksum"] or None

    @property
    def attrs(self):
        raw = self._file._r().attrs(self._key)
        return {k: _attr_value(v) for k, v in raw.items()}

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self):
        return (f"<tsnap.Tensor '{self.name}' shape={self.shape} dtype={self.tsnap_dtype}"
                f" compression={self.compression}>")

    # -- data
    def _read(self, shape, start=None, step=None):
        code = self._info["dtype"]
        raw = self._file._r().read(self._key, code, shape, start, step)
        return dtypes.to_user(raw, code)

    def to(self, device, verify=False):
        """The whole tensor on `device`: "cpu" gives numpy(); "cuda" or
        "cuda:N" a tsnap.DeviceArray in that GPU's memory (read through
        pinned buffers, no host array made), which torch.from_dlpack,
        cupy.asarray and the like take without a copy."""
        number = _cuda_device(self._file.path, device)
        if number is None:
            return self.numpy(verify=verify)
        if verify:
            self._file._r().verify(self._key)
        return self._file._r().read(self._key, self._info["dtype"], self.shape, None, None,
                                    number)

    def numpy(self, mmap=False, verify=False):
        """The whole tensor as an array.  mmap=False: a copy.  mmap=True: a
        read-only array over the file's own pages, or NotMappableError.
        mmap="auto": mapped when possible, else a copy.  verify=True
        checks the checksum (IntegrityError if it differs): on the way for a
        copy, before handing out mapped pages."""
        _check_mmap(self._file.path, mmap)
        if verify:
            return self._file._load_whole([self.name], mmap, verify=True)[0]
        reader = self._file._r()
        if mmap is False:
            return self._read(self.shape)
        if self._info["map_status"] == _MAP_VIRTUAL:
            return self._map_virtual(mmap)
        why = self.map_status
        if why is None:
            return dtypes.to_user(reader.map(self._key), self._info["dtype"])
        if mmap == "auto":
            return self._read(self.shape)
        # The library's own wording (tsnap_mapping_create's message).
        raise errors.NotMappableError(f"{self._file.path}: tensor '{self.name}':"
                                      f" cannot map: {why}")

    def _map_virtual(self, mmap):
        # The library maps a virtual tensor whose one block is all of it.
        code = self._info["dtype"]
        why = dtypes.why_not_view(code)
        if why is None:
            try:
                return dtypes.to_user(self._file._r().map(self._key), code)
            except errors.NotMappableError:
                if mmap is True:
                    raise
        elif mmap is True:
            raise errors.NotMappableError(f"{self._file.path}: tensor '{self.name}':"
                                          f" cannot map: {why}")
        return self._read(self.shape)

    def read(self, key=(), *, mmap=False):
        """``t[key]`` with a choice of copy or map, as numpy() has for the
        whole tensor.  mmap=False: a copy (what ``t[key]`` gives).
        mmap=True: a read-only view of the file's own pages, or
        NotMappableError saying why; for a virtual tensor, the region
        must lie inside one block, whose part file is then mapped.
        mmap="auto": mapped when possible, else a copy."""
        _check_mmap(self._file.path, mmap)
        if mmap is False:
            return self[key]
        start, count, step, post = _selection(key, self.shape)
        if 0 in count:
            return self[key]
        if self._info["map_status"] != _MAP_VIRTUAL:
            if self.mappable:
                return self.numpy(mmap=True)[tuple(
                    slice(b, b + (n - 1) * s + 1, s) for b, n, s in zip(start, count, step))][post]
            if mmap == "auto":
                return self[key]
            return self.numpy(mmap=True)  # raises, saying why
        last = [b + (n - 1) * s for b, n, s in zip(start, count, step)]
        for part in self.parts:
            if all(o <= b and e < o + n
                   for b, e, o, n in zip(start, last, part.offset, part.shape)):
                whole = self._file._map_part(part, self.name, mmap)
                if whole is None:  # "auto", and the block does not lie flat
                    return self[key]
                local = tuple(slice(b - o, e - o + 1, s)
                              for b, e, s, o in zip(start, last, step, part.offset))
                return whole[local][post]
        if mmap == "auto":
            return self[key]
        region = ", ".join(f"{b}:{e + 1}" + (f":{s}" if s != 1 else "")
                           for b, e, s in zip(start, last, step))
        raise errors.NotMappableError(
            f"{self._file.path}: tensor '{self.name}': cannot map [{region}]: it is not inside"
            f" one block of the {self._info['nparts']} part files")

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype, copy=False)

    def __getitem__(self, key):
        start, count, step, post = _selection(key, self.shape)
        if tuple(count) == self.shape and all(s == 1 for s in step):
            return self._read(self.shape)[post]  # whole: no hyperslab
        return self._read(count, start, step)[post]


class File(collections.abc.Mapping):
    """An open snapshot (or any HDF5 file of numeric datasets): a read-only
    mapping of full tensor names ("a/b/c") to lazy Tensors."""

    def __init__(self, path):
        self.path = os.fsdecode(os.fspath(path))
        self._reader = _core.Reader(self.path)
        self._names = self._reader.names()
        self._index = frozenset(self._names)
        self._part_maps = {}  # (path, dataset) -> the mapped block

    def _r(self):
        if self._reader is None:
            raise errors.ValueError(f"{self.path}: the file is closed")
        return self._reader

    def _name(self, name):
        if not isinstance(name, str):
            raise errors.TypeError(f"{self.path}: tensor names are str, not {type(name).__name__}")
        return name.lstrip("/")

    def __getitem__(self, name):
        name = self._name(name)
        reader = self._r()
        if name not in self._index:
            raise errors.KeyError(f"{self.path}: no tensor '{name}'")
        key = encode_name(self.path, name)
        try:
            info = reader.describe(key)
        except errors.TypeError:
            if self._is_string(name):
                raise errors.TypeError(f"{self.path}: '{name}' is a string, not a tensor:"
                                       " tsnap.load(path, name) reads it") from None
            raise
        return Tensor(self, name, key, info)

    def __contains__(self, name):
        self._r()
        return isinstance(name, str) and self._name(name) in self._index

    def __iter__(self):
        self._r()
        return iter(self._names)

    def __len__(self):
        self._r()
        return len(self._names)

    def keys(self):
        """The full names, sorted."""
        self._r()
        return list(self._names)

    @property
    def attrs(self):
        """The root attributes (tsnap's own included)."""
        return {k: _attr_value(v) for k, v in self._r().attrs().items()}

    @property
    def format_version(self):
        """1 for a file tsnap wrote, 0 for any other HDF5 file."""
        return self._r().format_version

    def _load_whole(self, names, mmap, verify=False):
        """The arrays of tensors `names`, whole, in one library call: mapped
        (mmap=True), copied (False), or mapped where they lie flat ("auto");
        verify=True checks each checksum (in the same pass as a copy)."""
        mode = 0 if mmap is False else 1 if mmap is True else 2
        keys = [encode_name(self.path, n) for n in names]
        out = []
        arrays = self._r().read_many(keys, mode, dtypes.no_view(), verify)
        for name, (raw, code) in zip(names, arrays):
            if code < 0:  # a single string: (bytes, -kind)
                out.append(self._string(name, raw, -code))
                continue
            if raw is None:  # mapped bytes NumPy cannot view as this dtype
                raise errors.NotMappableError(f"{self.path}: tensor '{name}':"
                                              f" cannot map: {dtypes.why_not_view(code)}")
            out.append(dtypes.to_user(raw, code))
        return out

    def _string(self, name, data, kind):
        """The str or bytes a string dataset loads as."""
        pytype = self._pytype(name) if kind == _nested.STRING_BYTES else None
        return _nested.from_string(data, kind, pytype)

    def _is_string(self, name):
        """Whether dataset `name` is a single string (no tensor, no checksum)."""
        return self._r().string_kind(encode_name(self.path, name)) != 0

    def _checksum(self, name):
        """The checksum recorded for dataset `name`, or None (always for a
        string or a dataset tsnap cannot read: verify skips those)."""
        try:
            return self[name].checksum
        except errors.TypeError:
            return None

    def _pytype(self, name):
        """The tsnap_pytype of a dataset or group, or None."""
        value = self._r().attrs(encode_name(self.path, name)).get("tsnap_pytype")
        return value if isinstance(value, str) else None

    def _load_to(self, names, number, verify):
        """Tensors `names` on CUDA device `number`; strings on the host."""
        out = {}
        for n in names:
            try:
                out[n] = self[n].to(number, verify=verify)
            except errors.TypeError:
                data, kind = self._r().read_string(encode_name(self.path, n))
                out[n] = self._string(n, data, kind)
        return out

    def _values(self, names, mmap, verify, number):
        """Datasets `names` by name: on CUDA device `number`, else as
        load() reads them on the host."""
        if number is not None:
            return self._load_to(names, number, verify)
        return dict(zip(names, self._load_whole(names, mmap, verify)))

    def _nested(self, values):
        """`values` (every dataset's, by full name) as the file's tree."""
        return _nested.build(self.path, values, self._r().groups(), self._pytype)

    def _subtree(self, group, mmap, verify, number):
        """Group `group` as load(nested=True) gives the whole file."""
        prefix = group + "/"
        values = self._values([n for n in self._names if n.startswith(prefix)], mmap, verify,
                              number)
        groups = [g[len(prefix):] for g in self._r().groups() if g.startswith(prefix)]
        return _nested.build(self.path, {n[len(prefix):]: v for n, v in values.items()}, groups,
                             lambda n: self._pytype(prefix + n), self._pytype(group))

    def _map_part(self, part, name, mmap):
        """The whole block `part` of tensor `name`, mapped from its part
        file (kept for the next region of it); None when mmap="auto" and
        the block cannot be mapped."""
        key = (part.path, part.dataset)
        if key not in self._part_maps:
            try:
                with File(part.path) as f:
                    self._part_maps[key] = f[part.dataset].numpy(mmap=True)
            except errors.NotMappableError as e:
                if mmap == "auto":
                    return None
                raise errors.NotMappableError(f"{self.path}: tensor '{name}': its block"
                                              f" ({part.file}): {e}") from None
            except (errors.Error, KeyError) as e:
                raise type(e)(f"{self.path}: tensor '{name}': its block ({part.file}):"
                              f" {e}") from None
        return self._part_maps[key]

    def verify(self, name=None):
        """Recomputes the checksum of tensor `name` (default: every one);
        IntegrityError names the first that differs."""
        if name is None:
            self._r().verify()
        else:
            self._r().verify(encode_name(self.path, self._name(name)))

    def close(self):
        reader, self._reader = self._reader, None
        self._part_maps = {}
        if reader is not None:
            reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = f"{len(self._names)} tensors" if self._reader is not None else "closed"
        return f"<tsnap.File '{self.path}' ({state})>"


def open(path):
    """Opens a snapshot for reading: a File (use it as a context manager)."""
    return File(path)


def _map_one(path, name):
    """load(path, name, mmap=True) of a tensor that maps, in one call into
    the library, without the File's list of names; None for anything
    else: the full path then maps it or says why not."""
    if not isinstance(name, str):
        return None
    try:
        reader = _core.Reader(os.fsdecode(os.fspath(path)))
        try:
            ((raw, code),) = reader.read_many([encode_name(path, name.lstrip("/"))], 1,
                                              dtypes.no_view(), False)
        finally:
            reader.close()
    except Exception:  # noqa: BLE001 - the full path raises the error it should
        return None
    if raw is None or code < 0:
        return None
    return dtypes.to_user(raw, code)


def load(path, name=None, *, mmap=False, verify=False, device=None, nested=False):
    """Loads tensor `name`, or every tensor as a dict keyed by full name.

    nested=True gives the file's tree instead: a dict per group, lists
    and tuples back as lists, Python ints, floats, bools and complex
    numbers back as such (what tsnap.save of a nested structure wrote; see
    docs/PYTHON.md), any other 0-d tensor as a 0-d array; with `name` a
    group, that group's tree.  A single string dataset loads as str (text)
    or bytes, nested or not.

    device="cuda" (or "cuda:N") reads into that GPU's memory instead, as
    tsnap.DeviceArray objects (see Tensor.to); mmap must then be False.

    mmap=False copies; mmap=True returns read-only arrays over the file's
    own pages (no copy) or raises NotMappableError saying why; mmap="auto"
    maps what it can and copies the rest.  verify=True checks checksums
    (IntegrityError naming the first tensor that differs): a copy checks on
    the way, reading the data once; mapped pages are checked before they are
    returned.  Any HDF5 file of numeric datasets loads, not only tsnap's."""
    _check_mmap(path, mmap)
    if mmap is True and name is not None and device is None and not verify:
        mapped = _map_one(path, name)
        if mapped is not None:
            return mapped
    number = _cuda_device(path, device)
    if number is not None and mmap is not False:
        raise errors.ValueError(f"{path}: mmap maps the file into host memory; it cannot be"
                                f" combined with device={device!r}")
    with File(path) as f:
        if name is not None:
            name = f._name(name)
            if nested and name not in f._index and name in f._r().groups():
                return f._subtree(name, mmap, verify, number)
            if name not in f._index:
                raise errors.KeyError(f"{f.path}: no tensor '{name}'")
            if number is not None:
                return f._load_to([name], number, verify)[name]
            return f._load_whole([name], mmap, verify)[0]
        values = f._values(f._names, mmap, verify, number)
        return f._nested(values) if nested else values


def verify(path):
    """Recomputes every checksum in the file; raises IntegrityError naming
    the first tensor that differs.  Returns how many tensors were checked
    (those with a recorded checksum)."""
    with File(path) as f:
        f.verify()
        return sum(1 for n in f._names if f._checksum(n))

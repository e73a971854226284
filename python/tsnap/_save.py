"""tsnap.save: one snapshot file from a mapping of tensors."""
import numbers
import os

import numpy as np

from . import _core, _dtypes as dtypes, _nested, _shard, errors
from ._file import encode_name
from ._shard import Shard

# The codecs a writer can be asked for: the library's, less "none"/"other".
_CODEC_NAMES = tuple(n for n in _core.CODECS if n not in ("none", "other"))


def _compression(path, compression):
    """(codec code, level) of the `compression` argument."""
    if compression is None:
        return _core.CODECS["none"], 0
    name, level = compression, 0
    if isinstance(compression, tuple):
        if len(compression) != 2:
            raise errors.ValueError(f"{path}: compression must be a name or (name, level),"
                                    f" not {compression!r}")
        name, level = compression
        if not isinstance(level, numbers.Integral) or isinstance(level, bool):
            raise errors.ValueError(f"{path}: compression level must be an int, not {level!r}")
    if name not in _CODEC_NAMES:
        raise errors.ValueError(f"{path}: unknown compression {name!r}"
                                f" (None, {', '.join(map(repr, _CODEC_NAMES))} or (name, level))")
    return _core.CODECS[name], int(level)


def _native(arr):
    """`arr` in native byte order, aligned, with strides of whole elements:
    the array itself when it already is (no copy)."""
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if not arr.flags.aligned or any(s % arr.itemsize for s in arr.strides):
        arr = arr.copy(order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
    return arr


# DLPack device types whose memory is CUDA's (kDLCUDA, kDLCUDAManaged).
_CUDA_DEVICES = (2, 13)


def _dlpack_stream(value):
    """The `stream` to hand __dlpack__: 1 (the legacy default stream, which
    tsnap's copies follow) for a CUDA tensor, so that the producer orders
    its pending work before them; None (no synchronisation) otherwise."""
    device = getattr(value, "__dlpack_device__", None)
    try:
        kind = device()[0] if device else None
    except Exception:  # noqa: BLE001 - the capsule's own device is checked in C
        kind = None
    return 1 if kind in _CUDA_DEVICES else None


def _tensor(path, name, value):
    """What Writer.put needs for one tensor: ("array", ndarray, code) or
    ("dlpack", obj, None).  Refuses types tsnap cannot store, before
    anything is written."""
    if not isinstance(name, str):
        raise errors.TypeError(f"{path}: tensor names must be str, not {type(name).__name__}"
                               f" ({name!r})")
    if isinstance(value, Shard):
        # Without a communicator only a block that is the whole tensor.
        if not value.covers_all():
            raise errors.ValueError(f"{path}: tensor '{name}' is {value!r}, a block of a"
                                    " distributed tensor: save it with comm= (an mpi4py"
                                    " communicator), or give the whole tensor")
        value = value.array
    if not isinstance(value, np.ndarray) and hasattr(value, "__dlpack__"):
        return ("dlpack", value, None)
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise errors.TypeError(f"{path}: tensor '{name}': {type(value).__name__}"
                               f" is not an array: {e}") from None
    code = dtypes.code_of(arr.dtype)
    if code is None:
        dtypes.refuse(path, name, arr.dtype)
    return ("array", _native(arr), code)


def _attr(path, key, value):
    """(value, code) for Writer.set_attr: a str, or a native ndarray."""
    if not isinstance(key, str):
        raise errors.TypeError(f"{path}: attribute names must be str, not {key!r}")
    if isinstance(value, str):
        return value, 0
    arr = np.asarray(value)
    code = dtypes.code_of(arr.dtype)
    if code is None:
        dtypes.refuse(path, key, arr.dtype, what="attribute")
    arr = _native(arr)
    return (arr if arr.flags.c_contiguous else arr.copy(order="C")), code


# save(shuffle=...): the library's TSNAP_SHUFFLE_* values.
_SHUFFLES = {"auto": -1, None: 0, "byte": 1, "bit": 2}


def _shuffle(path, shuffle):
    if isinstance(shuffle, str) or shuffle is None:
        if shuffle in _SHUFFLES:
            return _SHUFFLES[shuffle]
    raise errors.ValueError(f"{path}: shuffle must be 'auto', 'byte', 'bit' or None,"
                            f" not {shuffle!r}")


def write_options(path, compression, checksum, chunk_bytes, durable, threads, shuffle="auto"):
    """The keyword arguments of _core.Writer (and _core.Store) for these
    save() options, checked."""
    codec, level = _compression(path, compression)
    shuffle_code = _shuffle(path, shuffle)
    if chunk_bytes is None:
        chunk_bytes = 0
    elif not isinstance(chunk_bytes, numbers.Integral) or chunk_bytes <= 0:
        raise errors.ValueError(f"{path}: chunk_bytes must be a positive int, not {chunk_bytes!r}")
    if threads is None:
        threads = 0
    elif (not isinstance(threads, numbers.Integral) or isinstance(threads, bool)
          or not 1 <= threads <= 256):
        raise errors.ValueError(f"{path}: threads must be an int in 1..256, not {threads!r}")
    options = dict(codec=codec, level=level, chunk_bytes=int(chunk_bytes),
                   checksum=bool(checksum), durable=bool(durable), threads=int(threads))
    if shuffle_code != -1:
        options["shuffle"] = shuffle_code
    return options


def snapshot_items(path, tensors, attrs):
    """The tensors (a nested structure, see _nested) as entries
    (name, kind, value, code, pytype) and the attributes as (key, value,
    code), every one checked before anything is written."""
    items = _nested.flatten(path, tensors, _tensor)
    root = [(key, *_attr(path, key, value)) for key, value in (attrs or {}).items()]
    return items, root


def put_items(writer, path, items):
    """Writes snapshot_items' entries through a _core.Writer."""
    def put_tensor(key, e):
        if e.kind == "array":
            writer.put(key, e.value, e.code)
        else:
            writer.put_dlpack(key, e.value, _dlpack_stream(e.value))
    _nested.put(writer, path, items, encode_name, put_tensor)


def _flat_tensors(path, tensors):
    """A nested structure of tensors as the flat mapping a distributed save
    takes (numbers as 0-d tensors, lists of numbers as tensors: their
    Python types are not recorded); strings and groups are refused."""
    entries = _nested.flatten(path, tensors, lambda p, n, v: ("tensor", v, None))
    for e in entries:
        if e.kind in ("string", "group"):
            what = "a str or bytes" if e.kind == "string" else \
                "an empty mapping, None, or a list or tuple of more than numbers"
            raise errors.TypeError(f"{path}: '{e.name}' is {what}: a distributed save (comm=)"
                                   " takes tensors only (in mappings, nested or not)")
    return {e.name: e.value for e in entries}


def distributed_items(path, tensors, attrs):
    """The tensors and attributes of a distributed save as tsnap._mpi
    takes them: (name, kind, value, code, stream, shape, offset), shape and
    offset None for a replicated tensor; (key, value, code)."""
    items = []
    for name, value in _flat_tensors(path, tensors).items():
        block = value if isinstance(value, Shard) else None
        kind, value, code = _tensor(path, name, block.array if block else value)
        stream = _dlpack_stream(value) if kind == "dlpack" else None
        if kind == "dlpack":
            value = _shard.Exported(path, name, value, stream, block)
        items.append((encode_name(path, name), kind, value, code or 0, stream,
                      block.shape if block else None, block.offset if block else None))
    root = [(encode_name(path, key), *_attr(path, key, value))
            for key, value in (attrs or {}).items()]
    return items, root


def option_tuple(options):
    """write_options() as tsnap._mpi takes them, the default number of
    threads made explicit (tsnap._mpi has a library of its own)."""
    return (*(options[k] for k in ("codec", "level", "chunk_bytes", "checksum", "durable")),
            options["threads"] or _core.threads())


def _save_distributed(path, tensors, comm, attrs, options):
    mpi = _shard.mpi_module()
    comm = _shard.check_comm(path, comm)
    options, (items, root) = _shard.collectively(comm, lambda: (
        option_tuple(options()), distributed_items(path, tensors, attrs)))
    writer = mpi.Writer(comm, path, options)  # collective
    try:
        try:
            # puts are local: a failure on one rank is agreed on, so that
            # every rank raises it and the commit removes every part
            _shard.collectively(comm, _put_all, writer, items, root)
        except errors.Error:
            writer.fail()
            try:
                writer.commit()
            except errors.Error:
                pass
            raise
        writer.commit()
    finally:
        writer.abort()  # no-op after commit


def _put_all(writer, items, root):
    for item in items:
        writer.put(item)
    for item in root:
        writer.set_attr(item)


def save(path, tensors, *, attrs=None, compression=None, checksum=True, chunk_bytes=None,
         durable=True, threads=None, comm=None, shuffle="auto"):
    """Writes `tensors` (a mapping of names to arrays) as one snapshot file.

    Values may be NumPy arrays (any strides and byte order), anything
    ``np.asarray`` takes, or objects with ``__dlpack__``.  A name with '/'
    nests groups.  A checkpoint as a program holds it saves too: values may
    be mappings, lists and tuples (groups; list items are named "0", "1",
    ...), Python ints, floats, bools and complex numbers (0-d tensors that
    load(nested=True) gives back as those types), str and bytes (string
    datasets, as h5py writes them) and None; inside them a key is one name
    (str, not empty, without '/').  `attrs` become root attributes (numbers, strings, small
    arrays; "step" an integer, "time" a real).  `compression` is None,
    "deflate" (h5py reads it as is), "zstd" or "lz4" (h5py reads them with
    hdf5plugin), or (name, level): deflate 1..9, zstd -7..22; the default
    levels are deflate 1, zstd -1.  `shuffle` reorders each chunk before the codec: "byte"
    (HDF5's shuffle filter), "bit" (the bitshuffle filter, which h5py reads
    with hdf5plugin), None (neither) or "auto" (the default: bit shuffle
    with zstd, byte shuffle with deflate and lz4, none for one-byte
    dtypes).  Chunks are compressed by `threads` threads (default
    tsnap.get_threads()) while the file is written.  The file appears under
    `path` only once complete (written under a temporary name, then
    renamed); with durable=True (the default) it is also fsync'ed, and so
    is its directory.  An existing file under `path` is replaced.

    With `comm` (an mpi4py communicator) the save is collective: every rank
    calls it with the same path, names and options.  A tsnap.Shard value is
    that rank's block of a global tensor (the blocks of all ranks must tile
    it exactly); any other value is replicated, and rank 0's is written.
    Each rank writes its blocks into a part file of its own, in the folder
    `path` + ".parts"; once every part is durable rank 0 writes `path`,
    whose tensors are virtual datasets over the blocks, readable by
    tsnap.load and h5py without MPI.  A failure or a refusal on any rank
    (blocks that overlap, leave a gap or lie outside the shape; a dtype,
    shape or name that differs between ranks) raises the same error on
    every rank, naming the tensor and the ranks, and leaves no file.
    Without `comm`, a Shard is accepted only when it is the whole tensor.
    """
    path = os.fsdecode(os.fspath(path))
    if comm is not None:
        if shuffle != "auto":
            raise errors.ValueError(f"{path}: shuffle= is not available with comm="
                                    " (distributed saves use the automatic choice)")
        _save_distributed(path, tensors, comm, attrs, lambda: write_options(
            path, compression, checksum, chunk_bytes, durable, threads))
        return
    options = write_options(path, compression, checksum, chunk_bytes, durable, threads,
                            shuffle)
    items, root = snapshot_items(path, tensors, attrs)
    writer = _core.Writer(path, **options)
    try:
        put_items(writer, path, items)
        for key, value, code in root:
            writer.set_attr(None, key, value, code)
        writer.commit()
    finally:
        writer.abort()  # no-op after commit

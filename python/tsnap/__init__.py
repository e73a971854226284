"""tsnap: tensor snapshots in HDF5 files.

    tsnap.save("state.h5", {"u": u, "grid/x": x}, compression="deflate")
    arrays = tsnap.load("state.h5", mmap="auto")   # {"u": ..., "grid/x": ...}
    with tsnap.open("state.h5") as f:
        part = f["u"][10:20, ::2]                   # reads only those chunks

Files are ordinary HDF5: h5py, h5dump and HDFView read them without tsnap.
MPI jobs save one snapshot of their distributed tensors with tsnap.Shard
and comm= (tsnap.save, tsnap.Store).
"""
from . import _core, errors
from .errors import (CudaError, Error, FilterError, FormatError, IntegrityError,
                     NotMappableError, StateError)
from ._file import File, Part, Tensor, load, open, verify
from ._save import save
from ._shard import Shard
from ._store import Store

DeviceArray = _core.DeviceArray

_core.set_errors(errors.classes())

__version__ = _core.version


def get_threads():
    """The number of threads that compress, decompress and checksum chunks
    (the last set_threads(), else env TSNAP_NUM_THREADS, else the cores)."""
    return _core.threads()


def set_threads(n):
    """Sets the number of threads tsnap uses from now on (1..256); 0 or None
    restores the default."""
    if n is None:
        n = 0
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 256:
        raise errors.ValueError(f"threads must be an int in 0..256, not {n!r}")
    _core.set_threads(n)

__all__ = [
    "save", "load", "open", "verify", "File", "Tensor", "Part", "DeviceArray", "Store", "Shard",
    "get_threads", "set_threads",
    "Error", "FormatError", "IntegrityError", "NotMappableError", "CudaError", "StateError",
    "FilterError", "errors",
]

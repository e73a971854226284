"""tsnap: tensor snapshots in HDF5 files.

    tsnap.save("state.h5", {"u": u, "grid/x": x}, compression="deflate")
    arrays = tsnap.load("state.h5", mmap="auto")   # {"u": ..., "grid/x": ...}
    with tsnap.open("state.h5") as f:
        part = f["u"][10:20, ::2]                   # reads only those chunks

Files are ordinary HDF5: h5py, h5dump and HDFView read them without tsnap.
"""
from . import _core, errors
from .errors import CudaError, Error, FormatError, IntegrityError, NotMappableError
from ._file import File, Tensor, load, open, verify
from ._save import save

_core.set_errors(errors.classes())

__version__ = _core.version

__all__ = [
    "save", "load", "open", "verify", "File", "Tensor",
    "Error", "FormatError", "IntegrityError", "NotMappableError", "CudaError", "errors",
]

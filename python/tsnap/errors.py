"""The exceptions tsnap raises.

Every one is a `tsnap.Error`.  Those that correspond to a built-in
exception are also that exception, so that ``except FileNotFoundError`` and
``except KeyError`` work as with h5py and NumPy.  Each message names the file
and, where there is one, the tensor.
"""
import builtins

__all__ = [
    "Error", "FormatError", "IntegrityError", "NotMappableError", "FileNotFoundError",
    "KeyError", "TypeError", "ValueError", "FileExistsError", "OSError", "CudaError",
    "StateError", "FilterError",
]


class Error(Exception):
    """The base of every tsnap error."""

    def __str__(self):
        # The message alone, also where an OSError carries errno, strerror
        # and filename (which would otherwise replace it).
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class FormatError(Error):
    """The file is not a readable HDF5 file: damaged, truncated, foreign or
    of a newer tsnap format."""


class IntegrityError(Error):
    """A tensor's data does not match its recorded checksum."""


class NotMappableError(Error):
    """The tensor cannot be memory-mapped; the message says why (compressed,
    byte order, layout, type, ...).  ``mmap="auto"`` copies it instead."""


class FilterError(Error, builtins.OSError):
    """A dataset's HDF5 filter (a compression plug-in such as blosc, bzip2 or
    bitshuffle) is not available to tsnap's HDF5.  The message names the
    filter by id and name and how to get it: ``pip install hdf5plugin``
    (tsnap then uses its plug-ins) or HDF5_PLUGIN_PATH.  The file is not
    damaged; that is `FormatError`."""


class CudaError(Error, RuntimeError):
    """A CUDA tensor this build or machine cannot handle, or a failed CUDA call."""


class StateError(Error, RuntimeError):
    """An object used in a state that does not allow the call."""


class FileNotFoundError(Error, builtins.FileNotFoundError):
    """No such file (or directory to write into)."""


class FileExistsError(Error, builtins.FileExistsError):
    """A file of that name exists and may not be replaced."""


class OSError(Error, builtins.OSError):
    """The operating system or HDF5 failed to read or write.  When the
    system failed (a full disk, a quota, permissions, a read-only file
    system, an I/O error, a file-size limit), `errno`, `strerror` and
    `filename` (the file being saved, never its temporary name) are set,
    as the built-in OSError has them, and the message ends in the system's
    words; otherwise they are None."""


class KeyError(Error, builtins.KeyError):
    """No tensor of that name."""

    def __str__(self):
        # KeyError quotes its argument; a message reads better as is.
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class TypeError(Error, builtins.TypeError):
    """A data type tsnap cannot store or read."""


class ValueError(Error, builtins.ValueError):
    """A bad argument: a bad name, shape, option or selection."""


def classes():
    """The classes by role, as tsnap._core.set_errors takes them."""
    return {name: globals()[name] for name in __all__}

"""tsnap.Shard and what save(comm=...) and Store(comm=...) share: the MPI
module, loaded only when a communicator is given, and the agreement that
makes a rank's bad input fail the call on every rank."""
import importlib
import numbers

import numpy as np

from . import errors

_mpi = None


class Shard:
    """A block of a global tensor, for tsnap.save(..., comm=...) and
    tsnap.Store(..., comm=...): `array` (a NumPy array, anything np.asarray
    takes, or an object with ``__dlpack__``) holds the elements
    ``[offset[i], offset[i] + array.shape[i])`` of a tensor of shape
    `shape`.  The blocks that the ranks give under one name must tile the
    tensor exactly; a rank that holds none of it gives an empty block (a
    zero in its shape).  A 0-d tensor cannot be sharded: give it without
    Shard, and it is saved once (rank 0's)."""

    __slots__ = ("array", "offset", "shape")

    def __init__(self, array, offset, shape):
        offset = _ints("offset", offset)
        shape = _ints("shape", shape)
        ndim = _ndim(array)
        if len(offset) != len(shape) or (ndim is not None and ndim != len(shape)):
            raise errors.ValueError(f"tsnap.Shard: a block of {ndim} dimensions with offset"
                                    f" {offset} and shape {shape}: each needs one entry per"
                                    " dimension")
        if not shape:
            raise errors.ValueError("tsnap.Shard: a 0-d tensor cannot be sharded; give it"
                                    " without Shard (it is saved once)")
        if not isinstance(array, np.ndarray) and not hasattr(array, "__dlpack__"):
            try:
                array = np.asarray(array)
            except (TypeError, ValueError) as e:
                raise errors.TypeError(f"tsnap.Shard: {type(array).__name__} is not an array:"
                                       f" {e}") from None
        self.array = array
        self.offset = offset
        self.shape = shape

    @property
    def block_shape(self):
        """The shape of the block itself (None where a DLPack object does
        not say)."""
        shape = getattr(self.array, "shape", None)
        return None if shape is None else tuple(int(n) for n in shape)

    def covers_all(self):
        """Whether the block is the whole tensor."""
        return not any(self.offset) and self.block_shape == self.shape

    def __repr__(self):
        dtype = getattr(self.array, "dtype", None)
        what = " ".join(str(x) for x in (dtype, "block", self.block_shape) if x is not None)
        return f"tsnap.Shard({what}, offset={self.offset}, shape={self.shape})"


def _ints(what, seq):
    if isinstance(seq, numbers.Integral) and not isinstance(seq, bool):
        seq = (seq,)
    try:
        out = tuple(seq)
    except TypeError:
        raise errors.TypeError(f"tsnap.Shard: {what} must be a tuple of ints, not"
                               f" {type(seq).__name__}") from None
    for v in out:
        if not isinstance(v, numbers.Integral) or isinstance(v, bool):
            raise errors.TypeError(f"tsnap.Shard: {what} must be a tuple of ints, not {seq!r}")
        if v < 0:
            raise errors.ValueError(f"tsnap.Shard: {what} {seq!r} has a negative entry")
    return tuple(int(v) for v in out)


def _ndim(array):
    ndim = getattr(array, "ndim", None)
    if ndim is None and not hasattr(array, "__dlpack__"):
        ndim = np.ndim(array)
    return None if ndim is None else int(ndim)


# ---------------------------------------------------------------------------
# MPI

def mpi_module():
    """tsnap._mpi, imported on first use; a tsnap.Error where it was not
    built or cannot load (no MPI library)."""
    global _mpi
    if _mpi is None:
        try:
            mod = importlib.import_module(f"{__package__}._mpi")
        except ModuleNotFoundError:
            raise errors.Error("tsnap: MPI support is not built into this installation (no"
                               " tsnap._mpi): build tsnap where MPI is found") from None
        except ImportError as e:
            raise errors.Error(f"tsnap: MPI support cannot be loaded: {e}") from None
        _mpi = mod
    return _mpi


def check_comm(where, comm):
    """`comm`, an mpi4py intracommunicator, or a tsnap.TypeError."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise errors.TypeError(f"{where}: comm must be an mpi4py communicator, and mpi4py"
                               f" cannot be imported ({e})") from None
    if not isinstance(comm, MPI.Comm):
        raise errors.TypeError(f"{where}: comm must be an mpi4py communicator"
                               f" (e.g. MPI.COMM_WORLD), not {type(comm).__name__}")
    if comm == MPI.COMM_NULL or comm.Is_inter():
        raise errors.ValueError(f"{where}: comm must be an intracommunicator, not"
                                f" {'MPI.COMM_NULL' if comm == MPI.COMM_NULL else 'an intercommunicator'}")
    return comm


class Exported:
    """A DLPack tensor of a distributed save, exported already: what can
    fail (the producer's __dlpack__, a block of the wrong rank) fails while
    the ranks can still agree on it, before the collective call."""

    __slots__ = ("capsule",)

    def __init__(self, path, name, value, stream, block):
        try:
            self.capsule = (value.__dlpack__() if stream is None
                            else value.__dlpack__(stream=stream))
        except Exception as e:  # noqa: BLE001 - the producer's, named for every rank
            raise errors.Error(f"{path}: tensor '{name}': {type(value).__name__}.__dlpack__()"
                               f" failed: {type(e).__name__}: {e}") from e
        ndim = mpi_module().dlpack_ndim(self.capsule, name.encode("utf-8", "surrogateescape"))
        if block is not None and ndim != len(block.shape):
            raise errors.ValueError(f"{path}: tensor '{name}': a block of {ndim} dimensions"
                                    f" in a tensor of shape {block.shape}")

    def __dlpack__(self, stream=None, **unused):
        return self.capsule


def _ranks(ranks):
    """"rank 3", "ranks 0, 2, 5" or "ranks 0-3"."""
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    if ranks == list(range(ranks[0], ranks[-1] + 1)) and len(ranks) > 2:
        return f"ranks {ranks[0]}-{ranks[-1]}"
    return "ranks " + ", ".join(map(str, ranks))


def collectively(comm, fn, *args):
    """fn(*args) on every rank of `comm`, then one agreement: if it raised
    on any rank, every rank raises the same tsnap error (the first failing
    rank's class and message, naming the ranks).  Nothing is written before
    this, so a bad input on one rank never leaves the others waiting."""
    failure = None
    try:
        result = fn(*args)
    except Exception as e:  # noqa: BLE001 - handed to every rank below
        failure = e
    from mpi4py import MPI
    flags = np.array([failure is not None], np.int32)
    comm.Allreduce(MPI.IN_PLACE, flags, op=MPI.MAX)  # the common case: one small reduce
    if not flags[0]:
        return result
    mine = None
    if failure is not None:
        name = type(failure).__name__
        if not isinstance(failure, errors.Error):
            name = name if name in ("TypeError", "ValueError") else "Error"
        mine = (name, str(failure))
    every = comm.allgather(mine)
    failed = [r for r, f in enumerate(every) if f is not None]
    name, msg = every[failed[0]]
    same = [r for r in failed if every[r][1] == msg]
    where = _ranks(same)
    if len(same) < len(failed):
        where += f"; {_ranks([r for r in failed if r not in same])} failed too"
    cls = errors.classes().get(name, errors.Error)
    err = cls(f"{msg} (on {where})")
    if failure is not None:
        raise err from failure
    raise err

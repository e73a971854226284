"""tsnap.Store: a directory of step-numbered snapshots (the C store)."""
import numbers
import os

from . import _core, _shard, errors
from ._file import encode_name, load
from ._save import _dlpack_stream, distributed_items, option_tuple, snapshot_items, write_options


def _step(directory, step):
    if not isinstance(step, numbers.Integral) or isinstance(step, bool) or step < 0:
        raise errors.ValueError(f"{directory}: a step is an int >= 0, not {step!r}")
    return int(step)


class Store:
    """A directory with one snapshot file per step, step-000000000042.h5.

    Store(directory) opens it for writing: it makes the directory if it is
    missing, holds the directory's lock (a second writer, in this process
    or another, gets tsnap.StateError; readers are never blocked) and
    removes the temporary files a killed writer left.  readonly=True opens
    it for reading only.  keep_last=N keeps only the newest N steps, an
    older one deleted once the newer is durable.  The save() options
    (compression, checksum, chunk_bytes, durable, threads) apply to every
    step; staging_bytes bounds the host memory that saves with wait=False
    may hold (default 4 GiB).  Use it as a context manager, or close() it:
    closing waits for the background saves.

    With `comm` (an mpi4py communicator) every step is a distributed
    snapshot, as tsnap.save(..., comm=comm) writes one, and the store is
    collective: every rank opens it with the same arguments and makes the
    same calls in the same order: save(), wait(), steps(), latest(), load()
    and close() (path() is local).  Rank 0 holds the directory's lock.  A
    save with wait=False returns once this rank's tensors are staged; each
    rank writes its part and the ranks commit the step on background
    threads.  A failure on any rank is raised on every rank, by that call
    or the next save(), wait() or close(), and the failed step is never
    listed.  Close it on every rank (or use it as a context manager)."""

    def __init__(self, directory, keep_last=None, *, readonly=False, staging_bytes=None,
                 compression=None, checksum=True, chunk_bytes=None, durable=True, threads=None,
                 comm=None):
        self.directory = os.fsdecode(os.fspath(directory))
        self._comm = None
        if comm is not None:
            mpi = _shard.mpi_module()
            self._comm = _shard.check_comm(self.directory, comm)
            args = _shard.collectively(comm, self._options, keep_last, staging_bytes,
                                       compression, checksum, chunk_bytes, durable, threads)
            self._store = mpi.Store(comm, self.directory, not readonly, *args[:2],
                                    option_tuple(args[2]))  # collective
            return
        keep_last, staging_bytes, options = self._options(
            keep_last, staging_bytes, compression, checksum, chunk_bytes, durable, threads)
        self._store = _core.Store(self.directory, writable=not readonly, keep_last=keep_last,
                                  staging_bytes=staging_bytes, **options)

    def _options(self, keep_last, staging_bytes, compression, checksum, chunk_bytes, durable,
                 threads):
        """(keep_last, staging_bytes, write options), checked."""
        if keep_last is not None and (not isinstance(keep_last, numbers.Integral)
                                      or isinstance(keep_last, bool) or keep_last < 1):
            raise errors.ValueError(f"{self.directory}: keep_last must be None or an int >= 1,"
                                    f" not {keep_last!r}")
        if staging_bytes is not None and (not isinstance(staging_bytes, numbers.Integral)
                                          or staging_bytes < 1):
            raise errors.ValueError(f"{self.directory}: staging_bytes must be None or a"
                                    f" positive int, not {staging_bytes!r}")
        options = write_options(self.directory, compression, checksum, chunk_bytes, durable,
                                threads)
        return int(keep_last or 0), int(staging_bytes or 0), options

    def _s(self):
        if self._store is None:
            raise errors.ValueError(f"{self.directory}: the store is closed")
        return self._store

    # -- writing
    def save(self, step, tensors, *, attrs=None, wait=True):
        """Saves `tensors` (names to arrays, as tsnap.save takes them, CUDA
        tensors, nested structures, Python scalars and strings included)
        and `attrs` as step `step`.  wait=False returns once all of it is
        copied into host staging memory (from the device for CUDA
        tensors): the caller may change it at once, and a background
        thread writes the step.  A failure there is raised by the next
        save() or by wait(), and the failed step is never listed."""
        if self._comm is not None:
            store = self._s()
            step, items, root = _shard.collectively(self._comm, self._distributed, step,
                                                    tensors, attrs)
            store.save(step, items, root, bool(wait))  # collective
            return
        step, path = self._step_path(step, attrs)
        items, root = snapshot_items(path, tensors, attrs)
        items_arg = [(encode_name(path, e.name), e.kind, e.value,
                      e.code if e.code is not None else 0,
                      _dlpack_stream(e.value) if e.kind == "dlpack" else None, e.pytype)
                     for e in items]
        attrs_arg = [(encode_name(path, key), value, code) for key, value, code in root]
        self._s().save(step, items_arg, attrs_arg, bool(wait))

    def _step_path(self, step, attrs):
        """(step, its file) for a save, checked."""
        step = _step(self.directory, step)
        path = os.fsdecode(self._s().path(step))
        if attrs and "step" in attrs:
            raise errors.ValueError(f"{path}: the attribute 'step' is the store's own")
        return step, path

    def _distributed(self, step, tensors, attrs):
        step, path = self._step_path(step, attrs)
        return (step, *distributed_items(path, tensors, attrs))

    def wait(self):
        """Waits for every background save; raises the first failure among
        them not raised yet."""
        self._s().wait()

    # -- reading
    def steps(self):
        """The committed steps, ascending."""
        return list(self._s().steps())

    def latest(self):
        """The newest committed step, or None."""
        if self._comm is not None:
            return self._s().latest()
        steps = self.steps()
        return steps[-1] if steps else None

    def path(self, step):
        """The file of `step`."""
        return os.fsdecode(self._s().path(_step(self.directory, step)))

    def load(self, step=None, name=None, *, mmap=False, verify=False, device=None,
             nested=False):
        """tsnap.load of step `step` (default: the latest)."""
        if step is None:
            step = self.latest()
            if step is None:
                raise errors.KeyError(f"{self.directory}: the store has no steps yet")
        path = self.path(step)
        if step not in self.steps():
            raise errors.KeyError(f"{self.directory}: no step {step}")
        return load(path, name, mmap=mmap, verify=verify, device=device, nested=nested)

    # -- life
    def close(self):
        """Waits for the background saves, then releases the directory;
        raises a background failure not raised yet."""
        store, self._store = self._store, None
        if store is not None:
            try:
                store.wait()
            finally:
                store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        store = getattr(self, "_store", None)
        if store is not None:  # the extension's own close still waits
            store.close()

    def __repr__(self):
        if self._store is None:
            state = "closed"
        elif self._comm is not None:  # steps() is collective
            state = f"distributed over {self._comm.Get_size()} ranks"
        else:
            state = f"{len(self.steps())} steps"
        return f"<tsnap.Store {self.directory!r} ({state})>"

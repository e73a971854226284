"""Run under mpirun: python write.py OUT SEED.

Every rank saves its blocks of the tensors of cases.py into distributed
snapshots (every dtype, every cut, each write variant), tries every
refusal, and runs a distributed store; what each rank saw goes to
OUT/<section>-rank<r>.json for the test to check against h5py and NumPy."""
import os
import sys
import traceback
from pathlib import Path

import numpy as np
from mpi4py import MPI

import cases
import tsnap

comm = MPI.COMM_WORLD
rank, nranks = comm.Get_rank(), comm.Get_size()
out, seed = Path(sys.argv[1]), int(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)


class Exported:
    """Only __dlpack__: tsnap takes it through DLPack, not as an ndarray."""

    def __init__(self, a):
        self.a = a
        self.shape = a.shape

    def __dlpack__(self, stream=None, **kw):
        return self.a.__dlpack__()

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


class Refusing:
    """A DLPack producer that fails to export (as a framework does for a
    tensor it cannot share)."""

    shape = (2, 3)

    def __dlpack__(self, stream=None, **kw):
        raise BufferError("this tensor cannot be exported")

    def __dlpack_device__(self):
        return (1, 0)


def layout(i, dtype, block):
    """The block in one of several memory layouts: C order, Fortran order,
    a strided view, big-endian, or a DLPack-only object."""
    way = i % 5
    if way == 1:
        return np.asfortranarray(block)
    if way == 2 and block.ndim:
        wide = np.repeat(block, 2, axis=-1)
        return wide[..., ::2]  # non-contiguous, same values
    if way == 3 and dtype not in cases.pyhelpers.ML_DTYPES and block.dtype.itemsize > 1:
        return block.astype(block.dtype.newbyteorder(">"))
    if way == 4 and dtype in ("float32", "int32", "uint16", "float64", "int64"):
        return Exported(np.ascontiguousarray(block))
    return np.ascontiguousarray(block)


def my_tensors(data_seed):
    tensors = {}
    for i, (name, (dtype, shape, kind)) in enumerate(cases.dtype_tensors().items()):
        a = cases.global_array(data_seed, name, dtype, shape)
        b = cases.blocks(data_seed, name, shape, kind, nranks)[rank]
        tensors[name] = tsnap.Shard(layout(i, dtype, a[b]), cases.offset_of(b), shape)
    name, shape, kind = cases.COMPLEX32
    b = cases.blocks(data_seed, name, shape, kind, nranks)[rank]
    pairs = np.ascontiguousarray(cases.complex32_pairs(data_seed)[b])
    producer = cases.pyhelpers.DLPackTensor(pairs, cases.pyhelpers.kDLComplex, 32,
                                            shape=pairs.shape[:2],
                                            strides=(pairs.shape[1], 1))
    tensors[name] = tsnap.Shard(producer, cases.offset_of(b), shape)
    tensors.update(cases.replicated(data_seed))
    return tensors


def failure(e):
    return {"class": type(e).__name__, "message": str(e),
            "tsnap": isinstance(e, tsnap.Error)}


def section(tag, fn):
    try:
        result = fn()
    except Exception as e:  # noqa: BLE001 - reported to the test
        result = {"crash": traceback.format_exc(), **failure(e)}
    cases.dump(out, tag, rank, result)


# -- every dtype and cut, each variant
def write_variants():
    for variant, (compression, chunk_bytes) in cases.VARIANTS.items():
        path = out / f"{variant}.h5"
        if variant == "plain":  # an earlier snapshot under the same name is replaced
            tsnap.save(path, my_tensors(seed + 1), comm=comm)
        tsnap.save(path, my_tensors(seed), comm=comm, compression=compression,
                   chunk_bytes=chunk_bytes, attrs={"time": 2.5, "note": f"{nranks} ranks"})
    return {"ok": True}


# -- refusals: each raises on every rank, naming the tensor and ranks
def refusals():
    got = {}
    last, n = nranks - 1, 2 * nranks
    ones = np.ones((n + 2, 4), np.float32) * (rank + 1)

    def block(a, b, shape=(n, 3), dtype=np.float32):
        return tsnap.Shard(ones[a:b, :3].astype(dtype), (a, 0), shape)

    a, b = 2 * rank, 2 * rank + 2  # each rank's rows when all is well
    refused = {
        "overlap": lambda: {"u": block(a - (rank == 1), b)},
        "gap": lambda: {"u": block(a, b - (rank == 0))},
        "outside": lambda: {"u": block(a, b + (rank == last))},
        "dtype": lambda: {"u": block(a, b, dtype=np.float64 if rank == last else np.float32)},
        "shape": lambda: {"u": block(a, b, shape=(n, 3 + (rank == last)))},
        "missing": lambda: {"u": block(a, b), **({"v": block(a, b)} if rank != last else {})},
        "bad-input": lambda: {"u": block(a, b),
                              "w": np.array([object()]) if rank == last else np.ones(2)},
        "no-export": lambda: {"u": block(a, b),
                              "w": Refusing() if rank == last else np.ones((2, 3))},
        "dlpack-ndim": lambda: {"u": block(a, b), "w": tsnap.Shard(
            Exported(np.ones((2, 3, 1) if rank == last else (2, 3))), (a, 0), (n, 3))},
        "put-fails": lambda: {"u": block(a, b), ("" if rank == last else "x"): np.ones(2)},
    }
    folder = out / "refused"
    folder.mkdir(exist_ok=True)
    for what, make in refused.items():
        comm.Barrier()
        try:
            tsnap.save(folder / f"{what}.h5", make(), comm=comm)
            got[what] = {"class": None}
        except Exception as e:  # noqa: BLE001
            got[what] = failure(e)
        comm.Barrier()
        got[what]["left"] = sorted(str(p.relative_to(out)) for p in folder.rglob("*"))
    return got


# -- a distributed store: background saves, keep_last, steps and latest
def store():
    got = {"steps": [], "latest": [], "loads": []}
    with tsnap.Store(out / "store", keep_last=3, comm=comm, compression="lz4") as s:
        got["empty"] = [s.steps(), s.latest()]
        for step in range(6):
            mine, _ = cases.step_tensors(seed, step, nranks, rank)
            tensors = {name: tsnap.Shard(*args) for name, args in mine.items()}
            tensors["count"] = np.array(step, np.int64)
            s.save(step, tensors, attrs={"time": step / 4}, wait=step % 3 == 2)
            if step % 2:
                s.wait()
                got["steps"].append(s.steps())
                got["latest"].append(s.latest())
        try:
            bad = {"fields/u": tsnap.Shard(np.ones((2, 2), np.float32), (0, 0), (4, 4))}
            s.save(9, bad)  # leaves a gap (or overlaps, on one rank)
            got["refused"] = None
        except tsnap.Error as e:
            got["refused"] = failure(e)
        s.wait()
        try:
            s.save(10, {"w": Refusing() if rank == nranks - 1 else np.ones((2, 3))})
            got["no-export"] = None
        except tsnap.Error as e:
            got["no-export"] = failure(e)
        # an item the extension itself cannot take, on one rank: the others
        # are not left waiting in the collective call
        f64 = tsnap._core.DTYPES["float64"]
        item = ((b"w", "dlpack", object(), 0, None, None, None) if rank == nranks - 1 else
                (b"w", "array", np.ones(2), f64, None, None, None))
        try:
            s._store.save(11, [item], [], True)
            got["low-level"] = None
        except Exception as e:  # noqa: BLE001
            got["low-level"] = failure(e)
        got["after"] = [s.steps(), s.latest(), repr(s)]
        step = s.latest()
        _, whole = cases.step_tensors(seed, step, nranks, rank)
        loaded = s.load()
        got["loads"] = {name: bool(np.array_equal(loaded[name], a, equal_nan=a.dtype.kind == "f"))
                        for name, a in whole.items()}
        got["load_keys"] = sorted(loaded)
        got["path"] = os.path.relpath(s.path(step), out)
    return got


# -- DLPack blocks: each exported tensor's deleter runs exactly once, whether
# the save succeeds, is refused, or stages in the background
def dlpack():
    import gc

    from pyhelpers import DLPackTensor, kDLFloat, live_dlpack_tensors
    got = {"equal": []}
    rows = np.arange(7 * nranks * 5, dtype=np.float32).reshape(7 * nranks, 5)
    mine = rows[7 * rank:7 * rank + 7]
    producers = []

    def block(shift=0):
        p = DLPackTensor(np.ascontiguousarray(mine[:, ::-1]), kDLFloat, 32)
        producers.append(p)
        return tsnap.Shard(p, (7 * rank + shift, 0), rows.shape)

    for i in range(20):
        tsnap.save(out / "dlpack.h5", {"u": block()}, comm=comm)
    try:
        tsnap.save(out / "dlpack-refused.h5", {"u": block(shift=rank == 1)}, comm=comm)
    except tsnap.Error:
        pass
    with tsnap.Store(out / "dlpack-store", comm=comm) as s:
        for step in range(20):
            s.save(step, {"u": block()}, wait=step % 2 == 0)
        s.wait()
        got["equal"].append(bool(np.array_equal(s.load(19, "u"), rows[:, ::-1])))
    got["equal"].append(bool(np.array_equal(tsnap.load(out / "dlpack.h5", "u"), rows[:, ::-1])))
    gc.collect()
    got["exports"] = sum(p.exports for p in producers)
    got["deletes"] = sum(p.deleter_calls for p in producers)
    got["stray"] = DLPackTensor.stray_deletes
    got["live"] = live_dlpack_tensors()
    return got


section("variants", write_variants)
section("dlpack", dlpack)
section("refusals", refusals)
section("store", store)

"""Run under mpirun: python fsize.py STORE SEED OUT VICTIM.

A distributed store where rank VICTIM may write only small files
(RLIMIT_FSIZE, SIGXFSZ ignored) for two steps: both fail on every rank,
the earlier steps stay whole, and once the limit is lifted saving goes
on.  What each rank saw goes to OUT/fsize-rank<r>.json."""
import resource
import signal
import sys

import numpy as np
from mpi4py import MPI

import cases
import tsnap

comm = MPI.COMM_WORLD
rank, nranks = comm.Get_rank(), comm.Get_size()
store, seed, out, victim = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
got = {}


def tensors(step, big=False):
    mine, _ = cases.step_tensors(seed, step, nranks, rank)
    t = {name: tsnap.Shard(*args) for name, args in mine.items()}
    t["count"] = np.array(step, np.int64)
    if big:  # 512 KiB a rank, far past the limit
        t["big"] = tsnap.Shard(np.full((1, 1 << 17), rank, np.float32), (rank, 0),
                               (nranks, 1 << 17))
    return t


def attempt(what, fn):
    try:
        fn()
        got[what] = None
    except tsnap.Error as e:
        got[what] = {"class": type(e).__name__, "message": str(e)}


with tsnap.Store(store, comm=comm) as s:
    s.save(0, tensors(0))
    s.save(1, tensors(1), wait=False)
    s.wait()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if rank == victim:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, hard))
    attempt("wait", lambda: s.save(2, tensors(2, big=True)))
    attempt("background", lambda: s.save(3, tensors(3, big=True), wait=False))
    attempt("background-wait", s.wait)
    got["steps"] = s.steps()
    got["latest"] = s.latest()
    if rank == victim:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    attempt("after", lambda: s.save(4, tensors(4, big=True)))
    got["steps-after"] = s.steps()

cases.dump(out, "fsize", rank, got)

"""Run under mpirun: python kill.py STORE SEED VICTIM DELAY_S MAX_STEPS.

Collective saves into a distributed store, one step after another, from
its latest step on; rank VICTIM (none if negative) kills itself with
SIGKILL DELAY_S seconds in, wherever the saves then are."""
import os
import signal
import sys
import threading

import numpy as np
from mpi4py import MPI

import cases
import tsnap

comm = MPI.COMM_WORLD
rank, nranks = comm.Get_rank(), comm.Get_size()
store, seed, victim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
delay, max_steps = float(sys.argv[4]), int(sys.argv[5])

with tsnap.Store(store, keep_last=4, comm=comm) as s:
    latest = s.latest()
    step = 0 if latest is None else latest + 1
    if rank == victim:
        timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGKILL))
        timer.daemon = True
        timer.start()
    for step in range(step, step + max_steps):
        mine, _ = cases.step_tensors(seed, step, nranks, rank)
        tensors = {name: tsnap.Shard(*args) for name, args in mine.items()}
        tensors["count"] = np.array(step, np.int64)
        s.save(step, tensors, attrs={"time": step / 4}, wait=step % 2 == 0)
    print(f"rank {rank}: saved up to step {step}, not killed", flush=True)

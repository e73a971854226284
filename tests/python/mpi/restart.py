"""Run under mpirun: python restart.py SNAPSHOTS OUT SEED.

A restart on another number of ranks than wrote SNAPSHOTS (write.py's
folder): every rank reads only its own block of every tensor, cut its own
way, from every snapshot, and compares it with the global array; then the
store goes on from its latest step, cut this job's way.  What each rank saw
goes to OUT/restart-rank<r>.json."""
import sys
from pathlib import Path

import numpy as np
from mpi4py import MPI

import cases
import pyhelpers
import tsnap

comm = MPI.COMM_WORLD
rank, nranks = comm.Get_rank(), comm.Get_size()
snapshots, out, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
result = {"mismatches": [], "blocks": 0}


def check(what, got, want):
    try:
        pyhelpers.assert_same_values(got, want, what)
    except AssertionError as e:
        result["mismatches"].append(str(e))
    result["blocks"] += 1


for variant in cases.VARIANTS:
    path = snapshots / f"{variant}.h5"
    with tsnap.open(path) as f:
        for i, (name, (dtype, shape, _)) in enumerate(cases.dtype_tensors().items()):
            want = cases.global_array(seed, name, dtype, shape)
            kind = ("grid", "axis0", "last")[i % 3]
            b = cases.blocks(seed + 99, name, shape, kind, nranks)[rank]
            check(f"{variant} {name} {b}", f[name][b], want[b])
        # the whole tensor and strided hyperslabs, too
        want = cases.global_array(seed, "long", "float64", (1000,))
        check(f"{variant} long[::7]", f["long"][rank::7], want[rank::7])
        check(f"{variant} long", f["long"].numpy(), want)

# A region inside one writer's block maps that block's part with no copy,
# where it lies flat (uncompressed); compressed, mmap=True refuses and
# mmap="auto" copies.
result.update(mapped=0, maps=0, refused=0, wrongly_mapped=[])
for variant in ("plain", "zstd-small-chunks"):
    with tsnap.open(snapshots / f"{variant}.h5") as f:
        for i, (name, (dtype, shape, kind)) in enumerate(cases.dtype_tensors().items()):
            b = cases.blocks(seed, name, shape, kind, 4)[(rank + i) % 4]
            if any(s.stop == s.start for s in b):
                continue
            inner = (slice(b[0].start + (b[0].stop - b[0].start > 1), b[0].stop), *b[1:])
            want = cases.global_array(seed, name, dtype, shape)[inner]
            if variant == "plain":
                got = f[name].read(inner, mmap=True)
                result["maps"] += 1
                result["mapped"] += pyhelpers.is_mapped(got)
                check(f"{variant} {name} {inner} mapped", got, want)
                continue
            try:
                f[name].read(inner, mmap=True)
                result["wrongly_mapped"].append(name)
            except tsnap.NotMappableError:
                result["refused"] += 1
            check(f"{variant} {name} {inner} auto", f[name].read(inner, mmap="auto"), want)

with tsnap.Store(snapshots / "store", readonly=True, comm=comm) as ro:
    result["readonly"] = [ro.steps(), ro.latest()]

with tsnap.Store(snapshots / "store", keep_last=3, comm=comm) as s:
    step = s.latest()
    result["latest"] = step
    mine, whole = cases.step_tensors(seed, step, nranks, rank)
    with tsnap.open(s.path(step)) as f:
        for name, (block, offset, shape) in mine.items():
            sl = tuple(slice(o, o + k) for o, k in zip(offset, block.shape))
            check(f"step {step} {name}", f[name][sl], whole[name][sl])
    mine, _ = cases.step_tensors(seed, step + 1, nranks, rank)
    tensors = {name: tsnap.Shard(*args) for name, args in mine.items()}
    s.save(step + 1, {**tensors, "count": np.array(step + 1, np.int64)},
           attrs={"time": (step + 1) / 4}, wait=False)

cases.dump(out, "restart", rank, result)

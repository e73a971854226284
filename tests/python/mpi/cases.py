"""What the distributed-snapshot scripts (run under mpirun) and the tests
that check their files share: the global tensors, drawn from a seed, and
the ways they are cut into blocks.  Every rank, and the checking test,
draws the same global arrays and the same decomposition; a rank saves
only its block.

Nothing here imports tsnap or mpi4py."""
import json
import math
import os
import sys
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pyhelpers  # noqa: E402

DTYPE_NAMES = sorted(pyhelpers.DTYPES)

# How a tensor is cut: along one axis, in a grid of two axes, or held by
# one rank only (the others give empty blocks).
KINDS = ("axis0", "last", "middle", "grid", "one", "ends")

# The write variants: (compression, chunk_bytes).
VARIANTS = {
    "plain": (None, None),
    "plain-small-chunks": (None, 64),
    "zstd-small-chunks": (("zstd", 3), 96),
    "deflate": ("deflate", None),
}


def rng_for(seed, *names):
    return np.random.default_rng([seed, zlib.crc32("/".join(map(str, names)).encode())])


def global_array(seed, name, dtype, shape):
    """The global tensor `name`: fresh random values of every dtype."""
    return pyhelpers.values(rng_for(seed, "values", name), pyhelpers.DTYPES[dtype], shape)


def cuts(rng, n, parts):
    """`parts` consecutive (start, stop) covering range(n): uneven, some
    possibly empty."""
    points = sorted(int(x) for x in rng.integers(0, n + 1, parts - 1))
    edges = [0, *points, n]
    return [(edges[i], edges[i + 1]) for i in range(parts)]


def grid(nranks):
    """(rows, cols) of a 2-D process grid of nranks."""
    rows = max(d for d in range(1, int(math.isqrt(nranks)) + 1) if nranks % d == 0)
    return rows, nranks // rows


def blocks(seed, name, shape, kind, nranks):
    """The block of every rank: a list of nranks tuples of slices."""
    rng = rng_for(seed, "cut", name, kind, nranks)
    whole = tuple(slice(0, n) for n in shape)
    out = []
    if kind == "grid" and len(shape) >= 2:
        rows, cols = grid(nranks)
        ra, ca = cuts(rng, shape[0], rows), cuts(rng, shape[-1], cols)
        for r in range(nranks):
            (a, b), (c, d) = ra[r // cols], ca[r % cols]
            out.append((slice(a, b), *whole[1:-1], slice(c, d)))
        return out
    if kind in ("one", "ends"):
        holders = [nranks - 1] if kind == "one" else sorted({0, nranks - 1})
        pieces = cuts(rng, shape[0], len(holders))
        for r in range(nranks):
            if r in holders:
                a, b = pieces[holders.index(r)]
            else:
                a = b = int(rng.integers(0, shape[0] + 1))
            out.append((slice(a, b), *whole[1:]))
        return out
    axis = {"axis0": 0, "last": len(shape) - 1, "middle": len(shape) // 2}.get(kind, 0)
    for a, b in cuts(rng, shape[axis], nranks):
        out.append(whole[:axis] + (slice(a, b),) + whole[axis + 1:])
    return out


def offset_of(block):
    return tuple(s.start for s in block)


# Shapes the dtypes take in turn (primes, a 1-element axis, 3-D, 4-D).
SHAPES = [(7, 11), (13,), (5, 1, 9), (3, 4, 2, 5), (17, 3), (1, 6), (6, 7, 2)]


def dtype_tensors():
    """{name: (dtype, shape, kind)}: every dtype, each cut its own way."""
    out = {}
    for i, dtype in enumerate(DTYPE_NAMES):
        shape = SHAPES[i % len(SHAPES)]
        kind = KINDS[i % len(KINDS)]
        if kind == "grid" and len(shape) < 2:
            kind = "axis0"
        out[f"dtypes/{dtype}"] = (dtype, shape, kind)
    # more cuts of one dtype, an empty global tensor, a long 1-D one
    for kind in KINDS:
        out[f"cuts/{kind}"] = ("float32", (11, 8, 3), kind)
    out["empty/global"] = ("int16", (4, 0), "axis0")
    out["long"] = ("float64", (1000,), "axis0")
    return out


# complex32 has no NumPy dtype: its blocks go in as DLPack tensors over
# float16 pairs, and it loads as complex64.
COMPLEX32 = ("dtypes/complex32", (9, 7), "grid")


def complex32_pairs(seed):
    """The global complex32 tensor as float16 pairs (a trailing axis of 2)."""
    name, shape, _ = COMPLEX32
    return global_array(seed, name, "float16", shape + (2,))


def complex32_global(seed):
    pairs = complex32_pairs(seed)
    out = np.empty(pairs.shape[:-1], np.complex64)
    out.real, out.imag = pairs[..., 0], pairs[..., 1]
    return out


def replicated(seed):
    """The replicated tensors (rank 0's are written)."""
    rng = rng_for(seed, "replicated")
    return {"params/lr": np.array(rng.standard_normal(), np.float64),
            "params/table": rng.integers(-9, 9, (3, 4)).astype(np.int32)}


def dump(directory, tag, rank, result):
    Path(directory).mkdir(parents=True, exist_ok=True)
    (Path(directory) / f"{tag}-rank{rank}.json").write_text(json.dumps(result))


def results(directory, tag, nranks):
    """The results of every rank, in rank order."""
    return [json.loads((Path(directory) / f"{tag}-rank{r}.json").read_text())
            for r in range(nranks)]


def step_tensors(seed, step, nranks, rank):
    """A store step's tensors as `rank` gives them (Shard arguments as
    (array, offset, shape)) and the global arrays they tile."""
    u = global_array(seed, f"step{step}/u", "float32", (40, 33))
    m = global_array(seed, f"step{step}/m", "int8", (9, 5, 4))
    bu = blocks(seed, f"step{step}/u", u.shape, "grid", nranks)[rank]
    bm = blocks(seed, f"step{step}/m", m.shape, "last", nranks)[rank]
    mine = {"fields/u": (u[bu], offset_of(bu), u.shape),
            "fields/m": (m[bm], offset_of(bm), m.shape)}
    whole = {"fields/u": u, "fields/m": m, "count": np.array(step, np.int64)}
    return mine, whole


def env_flag(name):
    return os.environ.get(name, "") not in ("", "0")

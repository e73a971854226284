#!/usr/bin/env python3
"""tsnap against its peers: one process, the same data, side by side.

Run it from anywhere with the repository's virtual environment:

    .venv/bin/python bench/run.py                 # everything (several minutes)
    .venv/bin/python bench/run.py --only small    # one workload
    .venv/bin/python bench/run.py --quick         # tiny sizes, a few seconds (smoke test)
    .venv/bin/python bench/run.py --json out.json # also write every median and ratio
    .venv/bin/python bench/run.py --plain         # as a user's script runs (see below)

tsnap is imported from PYTHONPATH when that is set (e.g.
PYTHONPATH=build/python .venv/bin/python bench/run.py), otherwise from
build/python next to the repository root (what tools/setup.sh builds).
Files go to a fresh temporary directory under build/ (or /tmp), or under
--dir; every file is deleted as soon as its measurement is done.  Repeats:
--repeat (default 5), --repeat-large for the 1 GiB tensor (default 5),
--map-repeat for the mapped opens (default 200); zarr's 10,000-array group
runs twice and the rows of `mapopen` that copy 1 GiB ten times.

Workloads (each system runs in turn within every repeat, the order rotating
from repeat to repeat; the table gives the median):

  big      one 256 MiB (8192 x 8192) and one 1 GiB (16384 x 16384) float32
           tensor of fresh random values (rng.standard_normal, generated once):
           save into the page cache, save durable (fsync), copy load, mapped
           open, and mapped open + reading every byte (np.copyto into a
           pre-faulted buffer).
  smooth   a 256 MiB (8192 x 8192) smooth float32 field, compressible:
               f(y, x) = sin(2pi x) + 0.5 sin(2pi (2y) + 0.3)
                       + 0.25 sin(2pi (3x + y) + 1.1) + 0.125 sin(2pi (2x + 5y) + 2.0)
                       + 1e-3 sin(2pi 37x) sin(2pi 29y)
           with x = j / 8192 (column j) and y = i / 8192 (row i), computed in
           float64 and rounded to float32.  Compressed save (page cache) and
           load for tsnap deflate/zstd/lz4 (library default levels) and h5py
           gzip-1+shuffle, lz4, zstd and blosc-lz4 (hdf5plugin), with the
           compression ratio (logical bytes / bytes on disk); uncompressed
           peers as references.
  noisy    the smooth field plus Gaussian noise of sigma 2e-3 (fixed seed): noise
           in its low bits, so that byte shuffling leaves them mixed with the
           compressible high bits (gzip-1+shuffle ratio ~1.5).  tsnap zstd and
           lz4 with their default shuffle (bit before zstd, byte before lz4)
           and with the other one, against h5py gzip-1+shuffle, blosc-lz4 and
           hdf5plugin's Bitshuffle(lz4).
  small    10,000 tensors of 4 KiB (float32, 1024 elements, fresh random):
           save all into one file (page cache), load all, and open the file
           and list its names (tsnap.open().keys(), `tsnap ls`, h5py, npz).
  store    a 1 GiB float32 state saved into a tsnap.Store every repeat: how long
           save(wait=False) keeps the caller waiting (until it may change its
           arrays; the background write is then waited for, untimed), against
           a memcpy of the same bytes, and a waiting save (page cache).
  mapopen  latency of a mapped open of a 1 MiB and a 1 GiB tensor: the time
           from the call to having the array, opening the file included
           (200 repeats, median in microseconds).  It must not grow with size.

Plain mode (--plain) measures as a user's script runs: no malloc settings
(no re-execution), no os.sync() or page-cache recycling before a save, no
pre-faulted buffers where the call makes its own:

  overwrite  a 1 GiB float32 state saved every repeat over the previous
             repeat's file (same name) and under a new name, page cache and
             durable, by tsnap and np.save alone (a script calling both in a
             loop); then over the same name by tsnap, np.save, h5py,
             safetensors and zarr (3 repeats).
  weights    a state dict with the shapes of a 6-layer, 384-wide BERT
             (30,522 tokens; 103 float32 tensors, 1.5 KB to 47 MB, 91 MB):
             save (same name), load, and tsnap's mapped load of every
             tensor, against safetensors, np.savez, h5py and zarr.
  mapopen    as above, without the malloc settings.
  small      as above (10,000 tensors of 4 KiB), without the malloc settings
             and with no sync or page-cache recycling before a save.
  noisy      as above, likewise.
  firstcall  a fresh interpreter per sample: its first save, load, open and
             mapped open (float64, 2 MiB) less its second, and the import.

Peers: memcpy (np.copyto into a pre-faulted buffer: the memory limit); raw
bytes (os.write of the array's memoryview, + os.fsync; readv into a pre-faulted
array; mmap + np.frombuffer); np.save / np.load / np.load(mmap_mode="r"), and
np.savez / np.load(.npz) for many tensors; h5py contiguous and chunked like
tsnap, gzip-1+shuffle, hdf5plugin LZ4, Zstd and Blosc(lz4, shuffle), read
with ds[...] and ds.read_direct(out), mapped through ds.id.get_offset() +
np.memmap; safetensors save_file / safe_open(np).get_tensor / load_file; zarr 3
with its defaults (save_array / open_array(...)[...], a local directory store).
A peer or codec that cannot run here (not installed, not built into this tsnap)
is a row "n/a (why)", never a crash.

Rules: compare only within one run, as ratios (shared machines are noisy);
glibc's malloc is fixed for every system the same way (the script re-executes
itself once with MALLOC_TRIM_THRESHOLD_ and MALLOC_MMAP_THRESHOLD_ at 4 GiB,
so that freed memory stays in the heap and big arrays reuse it);
result buffers are np.empty, pre-faulted and reused where the peer lets the
caller pass one, and the table says how each result is allocated; each output
is deleted before each save; `os.sync()` runs (untimed) before each save so
that no earlier write-back competes with it, then a scratch file as large as
the data is written and deleted (untimed): on these VMs, free memory idle for
~2 s goes back to the host and writing the page cache into it is ~7x slower,
so without it a save's speed would depend on the order of the systems (see
recycle_page_cache); loads read warm files (just
written, in the page cache); Python's garbage collector is off during each
timed call; what every system loads is compared with what was saved
(np.array_equal), once, so that a fast wrong answer cannot win.

"tsnap / peer" is tsnap's throughput divided by the peer's (the peer's median
time over tsnap's): above 1, tsnap is faster.  GB/s are logical bytes per
second, 1 GB = 1e9 bytes.  Exit status: 0 when every check passed, 1 when a
round trip failed or a system raised, 2 for a usage or set-up problem.
"""
import os
import sys

# ---------------------------------------------------------------------------
# Fixed malloc settings: re-execute once, before anything allocates.

MALLOC_SETTING = str(4 << 30)  # > the largest array, so that it too comes from the heap
MALLOC_VARS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
_REEXEC_MARK = "TSNAP_BENCH_REEXECUTED"

if (__name__ == "__main__" and "--plain" not in sys.argv
        and not all(v in os.environ for v in MALLOC_VARS)):
    for var in MALLOC_VARS:
        os.environ.setdefault(var, MALLOC_SETTING)
    os.environ[_REEXEC_MARK] = "1"
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])

import argparse  # noqa: E402
import ctypes  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import mmap  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Optional  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FAMILIES = ("tsnap", "numpy", "h5py", "safetensors", "zarr", "memcpy", "raw")
WORKLOADS = ("big", "smooth", "noisy", "small", "mapopen", "store")
MiB = 1 << 20
GiB = 1 << 30


def die(msg):
    print(f"bench/run.py: {msg}", file=sys.stderr)
    sys.exit(2)


def import_tsnap():
    """tsnap from PYTHONPATH if set, else from build/python of this repository."""
    build = REPO / "build" / "python"
    if not os.environ.get("PYTHONPATH") and (build / "tsnap").is_dir():
        sys.path.insert(0, str(build))
    try:
        return importlib.import_module("tsnap")
    except ImportError as e:
        where = (f"PYTHONPATH={os.environ['PYTHONPATH']}" if os.environ.get("PYTHONPATH")
                 else f"{build} (not built?)")
        die(f"cannot import tsnap from {where}: {e}\n"
            "  build it first (bash tools/setup.sh test, or cmake -S . -B build && cmake --build"
            " build), or point PYTHONPATH at the directory that holds the tsnap package")


def optional(name):
    """(module, None) or (None, why it is missing)."""
    try:
        return importlib.import_module(name), None
    except Exception as e:  # noqa: BLE001 - any import failure makes the peer n/a
        return None, f"{name} not importable: {e}"


tsnap = None  # imported in main(), after the argument parsing
h5py, H5PY_MISSING = None, None
hdf5plugin, HDF5PLUGIN_MISSING = None, None
safetensors, SAFETENSORS_MISSING = None, None
zarr, ZARR_MISSING = None, None


# ---------------------------------------------------------------------------
# File helpers

def remove(path):
    if path is None:
        return
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path):
    """fsync every file and directory under `path` (a zarr store)."""
    for root, _dirs, files in os.walk(path, topdown=False):
        for name in files:
            fsync_path(os.path.join(root, name))
        fsync_path(root)


def disk_bytes(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(r, n)) for r, _, fs in os.walk(path) for n in fs)
    return os.path.getsize(path)


_SCRATCH = None  # a 4 MiB buffer that recycle_page_cache writes from


def recycle_page_cache(nbytes):
    """Writes and deletes (untimed) a scratch file of `nbytes` + 16 MiB, so that the kernel
    has just freed that many page-cache pages when a timed save starts.  On these VMs free
    memory left idle ~2 s goes back to the host (virtio-balloon free page reporting) and a
    write into it runs ~7x slower: without this, a save's speed would depend on how long
    ago the system before it freed its pages, i.e. on the order of the systems."""
    global _SCRATCH
    if _SCRATCH is None:
        _SCRATCH = np.zeros(4 * MiB, np.uint8)
    path = os.path.join(WORKDIR, "page-cache-scratch")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        left = nbytes + 16 * MiB
        while left > 0:
            left -= os.write(fd, _SCRATCH[:min(left, _SCRATCH.size)])
    finally:
        os.close(fd)
        os.unlink(path)  # its dirty pages are dropped, never written back


def write_all(fd, buf):
    view = memoryview(buf).cast("B")
    while view:
        view = view[os.write(fd, view):]


def read_into(fd, buf):
    view = memoryview(buf).cast("B")
    while view:
        n = os.readv(fd, [view])
        if n == 0:
            raise EOFError("file shorter than the array")
        view = view[n:]


def same(x, y):
    return (isinstance(x, np.ndarray) and x.shape == y.shape and x.dtype == y.dtype
            and np.array_equal(x, y))


def same_dict(got, want):
    return (isinstance(got, dict) and set(got) == set(want)
            and all(same(np.asarray(got[k]), v) for k, v in want.items()))


def prefaulted(shape_or_count, dtype=np.float32):
    out = np.empty(shape_or_count, dtype)
    out.fill(0)
    return out


def fmt_bytes(n):
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


# ---------------------------------------------------------------------------
# One function per system x operation.  Single tensors are stored as "t".

# -- memcpy: the memory limit
def memcpy_copy(a, out):
    np.copyto(out, a)
    return out


# -- raw bytes: the page-cache limit
def raw_write(path, a, durable=False):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, a)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def raw_read(path, out):
    fd = os.open(path, os.O_RDONLY)
    try:
        read_into(fd, out)
    finally:
        os.close(fd)
    return out


def raw_mmap(path, dtype, shape):
    fd = os.open(path, os.O_RDONLY)
    try:
        m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    return np.frombuffer(m, dtype).reshape(shape)


# -- tsnap
def tsnap_save(path, a, durable=False, **kw):
    tsnap.save(path, {"t": a}, durable=durable, **kw)


def tsnap_load(path):
    return tsnap.load(path, "t")


def tsnap_mmap(path):
    return tsnap.load(path, "t", mmap=True)


# -- numpy
def numpy_save(path, a, durable=False):
    if not durable:
        np.save(path, a)
        return
    with open(path, "wb") as f:
        np.save(f, a)
        f.flush()
        os.fsync(f.fileno())


def numpy_load(path):
    return np.load(path)


def numpy_mmap(path):
    return np.load(path, mmap_mode="r")


# -- h5py
def h5py_save(path, a, durable=False, **dataset_kw):
    with h5py.File(path, "w") as f:
        f.create_dataset("t", data=a, **dataset_kw)
    if durable:
        fsync_path(path)


def h5py_load(path):
    with h5py.File(path, "r") as f:
        return f["t"][...]


def h5py_read_direct(path, out):
    with h5py.File(path, "r") as f:
        f["t"].read_direct(out)
    return out


def h5py_mmap(path):
    """The usual trick for a contiguous dataset: its offset, then np.memmap."""
    with h5py.File(path, "r") as f:
        ds = f["t"]
        offset, dtype, shape = ds.id.get_offset(), ds.dtype, ds.shape
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


# -- safetensors
def safetensors_save(path, a, durable=False):
    safetensors.numpy.save_file({"t": a}, path)
    if durable:
        fsync_path(path)


def safetensors_get(path):
    with safetensors.safe_open(path, framework="np") as f:
        return f.get_tensor("t")


def safetensors_load_file(path):
    return safetensors.numpy.load_file(path)["t"]


# -- zarr 3 (local directory store, default codec: zstd level 0, auto chunks)
def zarr_save(path, a, durable=False, **kw):
    zarr.save_array(str(path), a, **kw)
    if durable:
        fsync_tree(path)


def zarr_load(path):
    return zarr.open_array(str(path), mode="r")[...]


def zarr_open(path):
    return zarr.open_array(str(path), mode="r")


# -- many small tensors (a dict of arrays)
def many_tsnap_save(path, tensors):
    tsnap.save(path, tensors, durable=False)


def many_tsnap_load(path):
    return tsnap.load(path)


def many_numpy_savez(path, tensors):
    np.savez(path, **tensors)


def many_numpy_loadz(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def many_h5py_save(path, tensors):
    with h5py.File(path, "w") as f:
        for name, a in tensors.items():
            f.create_dataset(name, data=a)


def many_h5py_load(path):
    with h5py.File(path, "r") as f:
        return {name: f[name][()] for name in f}


def many_safetensors_save(path, tensors):
    safetensors.numpy.save_file(tensors, path)


def many_safetensors_load(path):
    return safetensors.numpy.load_file(path)


def many_zarr_save(path, tensors):
    zarr.save_group(str(path), **tensors)


def many_zarr_load(path):
    g = zarr.open_group(str(path), mode="r")
    return {name: g[name][...] for name in g.array_keys()}


def many_memcpy(tensors, outs):
    for a, o in zip(tensors.values(), outs):
        np.copyto(o, a)
    return outs


def many_raw_write(path, tensors):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for a in tensors.values():
            write_all(fd, a)
    finally:
        os.close(fd)


def many_raw_read(path, outs):
    fd = os.open(path, os.O_RDONLY)
    try:
        for o in outs:
            read_into(fd, o)
    finally:
        os.close(fd)
    return outs


# ---------------------------------------------------------------------------
# The registry: subjects (one system's file) and their timed operations.

SAVE_OPS = ("save", "save durable")
OP_ORDER = ("import", "first call", "save", "save durable", "store save", "memcpy", "load",
            "open", "mmap open", "mmap + copy")


@dataclass
class Op:
    op: str                          # one of OP_ORDER ("store save": into an open tsnap.Store)
    call: str                        # what is called, as the table shows it
    fn: Callable[[], Any]            # the timed call: returns what it loaded, or None
    check: Callable[[Any], bool]     # untimed, on the first result: did it round-trip?
    memory: str = ""                 # how the result's memory is allocated
    poison: Optional[Callable[[], None]] = None  # untimed, before each call: spoil `out`
    max_repeats: Optional[int] = None
    cmp_op: Optional[str] = None     # the tsnap op this row's ratio is against (default: op)

    @property
    def reads_data(self):
        """False for a mapped open that hands back file pages (or a lazy handle):
        its time is a latency, no GB/s."""
        if self.op in ("import", "first call"):
            return False
        return not (self.op == "mmap open" and self.memory.startswith(("file pages", "none")))


@dataclass
class Subject:
    system: str                      # one of FAMILIES
    variant: str
    ops: list
    path: Optional[Path] = None      # its file or directory
    setup: Optional[Callable[[], None]] = None  # writes `path` once, before the repeats
    unavailable: Optional[str] = None  # why it cannot run here
    vs: str = "default"              # the tsnap variant its ratios are against
    keep: bool = False               # its file stays from repeat to repeat (saved over)


@dataclass
class Section:
    workload: str
    title: str
    nbytes: int                      # logical bytes per operation
    repeats: int
    subjects: list
    unit: str = "s"                  # "s" or "us"
    items: int = 1                   # tensors per operation (small: per-tensor time)
    key_ratios: list = field(default_factory=list)  # (description, tsnap row id, peer row id)
    rows: list = field(default_factory=list)
    plain: bool = False              # as a user's script runs: no sync, no page-cache recycling
    runner: Optional[Callable] = None  # fills `rows` itself (measures in other processes)


def row_id(op, system, variant, call=None):
    return f"{op}|{system}|{variant}" + (f"|{call}" if call else "")


def tsnap_codec_problem(compression):
    """None when tsnap can save (and load) with `compression`, else why not."""
    with tempfile.TemporaryDirectory(dir=WORKDIR) as d:
        path = os.path.join(d, "probe.h5")
        a = np.arange(256, dtype=np.float32)
        try:
            tsnap.save(path, {"t": a}, compression=compression, durable=False)
            if not same(tsnap.load(path, "t"), a):
                return "round trip differs on a probe"
        except Exception as e:  # noqa: BLE001 - reported as n/a, never a crash
            msg = str(e)
            return msg.split(": ", 1)[1] if msg.startswith(path) else msg
    return None


def h5py_filter_problem(filter_kw):
    """None when h5py can write and read with these dataset options."""
    with tempfile.TemporaryDirectory(dir=WORKDIR) as d:
        path = os.path.join(d, "probe.h5")
        a = np.arange(4096, dtype=np.float32).reshape(64, 64)
        try:
            h5py_save(path, a, chunks=(16, 64), **filter_kw())
            if not same(h5py_load(path), a):
                return "round trip differs on a probe"
        except Exception as e:  # noqa: BLE001
            return f"h5py cannot use it: {e}"
    return None


WORKDIR = None  # the benchmark's own directory (set by main)


# ---------------------------------------------------------------------------
# Workloads: what each system does on them.

FRESH = "new array (np.empty-like)"
INTO_OUT = "into pre-faulted np.empty (reused)"


@dataclass
class OneTensor:
    """What the builders of one-tensor subjects share: the tensor, the
    pre-faulted result buffer, the directory and which operations to run."""
    d: Path
    a: np.ndarray
    out: np.ndarray
    chunks: tuple
    durable: bool = True   # also the fsync'ed saves
    mapped: bool = True    # also the mapped opens

    def poison(self):
        self.out.fill(np.nan)

    def is_a(self, r):
        return same(r, self.a)

    def verify(self, load):
        """A save's check: `load()` (untimed) gives back `a`."""
        return lambda _: same(load(), self.a)

    def into_out(self, op, call, fn, **kw):
        """An op that fills the shared buffer (spoiled before each call)."""
        return Op(op, call, fn, self.is_a, INTO_OUT, self.poison, **kw)

    def map_ops(self, call, mapper):
        if not self.mapped:
            return []
        return [Op("mmap open", call, mapper, self.is_a, "file pages"),
                self.into_out("mmap + copy", f"{call}, np.copyto(out, m)",
                              lambda: memcpy_copy(mapper(), self.out))]


def memcpy_subject(t):
    return Subject("memcpy", "default", [
        t.into_out("memcpy", "np.copyto(out, a)", lambda: memcpy_copy(t.a, t.out),
                   cmp_op="load")])


def raw_subject(t):
    p, a = t.d / "raw.bin", t.a
    verify = t.verify(lambda: raw_read(p, np.empty_like(a)))
    ops = [Op("save", "os.write(memoryview)", lambda: raw_write(p, a), verify)]
    if t.durable:
        ops.append(Op("save durable", "os.write + os.fsync", lambda: raw_write(p, a, True),
                      verify))
    ops.append(t.into_out("load", "readinto(out)", lambda: raw_read(p, t.out)))
    ops += t.map_ops("mmap.mmap + np.frombuffer", lambda: raw_mmap(p, a.dtype, a.shape))
    return Subject("raw", "default", ops, p)


def tsnap_subject(t):
    p, a = t.d / "tsnap.h5", t.a
    verify = t.verify(lambda: tsnap_load(p))
    ops = [Op("save", "save(durable=False)", lambda: tsnap_save(p, a), verify),
           Op("save", "save(durable=False, checksum=False)",
              lambda: tsnap_save(p, a, checksum=False), verify)]
    if t.durable:
        ops.append(Op("save durable", "save() (fsync, rename, dir fsync)",
                      lambda: tsnap_save(p, a, durable=True), verify))
    ops.append(Op("load", "load(p, 't')", lambda: tsnap_load(p), t.is_a, FRESH))
    ops += t.map_ops("load(p, 't', mmap=True)", lambda: tsnap_mmap(p))
    return Subject("tsnap", "default", ops, p)


def numpy_subject(t):
    p, a = t.d / "numpy.npy", t.a
    verify = t.verify(lambda: numpy_load(p))
    ops = [Op("save", "np.save", lambda: numpy_save(p, a), verify)]
    if t.durable:
        ops.append(Op("save durable", "np.save(f) + os.fsync", lambda: numpy_save(p, a, True),
                      verify))
    ops.append(Op("load", "np.load", lambda: numpy_load(p), t.is_a, "new array (np.fromfile)"))
    ops += t.map_ops("np.load(mmap_mode='r')", lambda: numpy_mmap(p))
    return Subject("numpy", "default", ops, p)


def h5py_subject(t, chunked):
    """h5py, contiguous or chunked like tsnap (leading axis, ~4 MiB)."""
    variant = f"chunked {t.chunks}" if chunked else "contiguous"
    kw = {"chunks": t.chunks} if chunked else {}
    p, a = t.d / f"h5py-{variant.split()[0]}.h5", t.a
    verify = t.verify(lambda: h5py_read_direct(p, np.empty_like(a)))
    ops = [Op("save", "create_dataset", lambda: h5py_save(p, a, **kw), verify)]
    if t.durable:
        ops.append(Op("save durable", "create_dataset, close, os.fsync",
                      lambda: h5py_save(p, a, True, **kw), verify))
    ops += [Op("load", "ds[...]", lambda: h5py_load(p), t.is_a, "new array (h5py: numpy.zeros)"),
            t.into_out("load", "ds.read_direct(out)", lambda: h5py_read_direct(p, t.out))]
    if t.mapped and not chunked:
        ops.append(Op("mmap open", "ds.id.get_offset() + np.memmap", lambda: h5py_mmap(p),
                      t.is_a, "file pages"))
    return Subject("h5py", variant, ops, p, unavailable=H5PY_MISSING)


def safetensors_subject(t, load_file=True):
    p, a = t.d / "st.safetensors", t.a
    verify = t.verify(lambda: safetensors_get(p))
    copied = "new array (copied out of its mmap)"
    ops = [Op("save", "save_file", lambda: safetensors_save(p, a), verify)]
    if t.durable:
        ops.append(Op("save durable", "save_file + os.fsync",
                      lambda: safetensors_save(p, a, True), verify))
    ops.append(Op("load", "safe_open(np).get_tensor", lambda: safetensors_get(p), t.is_a, copied))
    if load_file:
        ops.append(Op("load", "load_file", lambda: safetensors_load_file(p), t.is_a, copied))
    return Subject("safetensors", "default", ops, p, unavailable=SAFETENSORS_MISSING)


def zarr_subject(t, vs="default"):
    p, a = t.d / "z.zarr", t.a
    verify = t.verify(lambda: zarr_load(p))
    ops = [Op("save", "save_array (zstd-0, auto chunks)", lambda: zarr_save(p, a), verify)]
    if t.durable:
        ops.append(Op("save durable", "save_array + fsync every file",
                      lambda: zarr_save(p, a, True), verify))
    ops.append(Op("load", "open_array(...)[...]", lambda: zarr_load(p), t.is_a,
                  "new array (zarr)"))
    return Subject("zarr", "default", ops, p, unavailable=ZARR_MISSING, vs=vs)


def tsnap_chunks(d, a):
    """The chunk shape tsnap gives `a` by default (h5py's chunked rows use it)."""
    p = d / "chunks-probe.h5"
    tsnap.save(p, {"t": a}, durable=False)
    with tsnap.open(p) as f:
        chunks = tuple(f["t"].chunks)
    remove(p)
    return chunks


def big_sections(d, args, rng):
    sizes = [((512, 512), 1), ((1024, 1024), 1)] if args.quick else \
        [((8192, 8192), args.repeat), ((16384, 16384), args.repeat_large)]
    for shape, repeats in sizes:
        a = rng.standard_normal(shape, dtype=np.float32)
        t = OneTensor(d, a, prefaulted(shape), tsnap_chunks(d, a))
        chunks = t.chunks
        subjects = [memcpy_subject(t), raw_subject(t), tsnap_subject(t), numpy_subject(t),
                    h5py_subject(t, chunked=False), h5py_subject(t, chunked=True),
                    safetensors_subject(t), zarr_subject(t)]
        sec = Section("big", f"{fmt_bytes(a.nbytes)} float32 {shape}, fresh random values",
                      a.nbytes, repeats, subjects)
        sec.key_ratios = [
            ("save (page cache) vs np.save", row_id("save", "tsnap", "default"),
             row_id("save", "numpy", "default")),
            ("save durable vs np.save + fsync", row_id("save durable", "tsnap", "default"),
             row_id("save durable", "numpy", "default")),
            ("load vs np.load", row_id("load", "tsnap", "default"),
             row_id("load", "numpy", "default")),
            ("mmap open latency vs np.load(mmap_mode='r')", row_id("mmap open", "tsnap", "default"),
             row_id("mmap open", "numpy", "default")),
            ("load vs h5py chunked read_direct", row_id("load", "tsnap", "default"),
             row_id("load", "h5py", f"chunked {chunks}", "ds.read_direct(out)")),
            ("load vs safetensors get_tensor", row_id("load", "tsnap", "default"),
             row_id("load", "safetensors", "default", "safe_open(np).get_tensor")),
            ("save vs raw write (share of the page-cache limit)",
             row_id("save", "tsnap", "default"), row_id("save", "raw", "default")),
            ("load vs raw readinto (share of the limit)", row_id("load", "tsnap", "default"),
             row_id("load", "raw", "default")),
        ]
        yield sec
        del a, t, subjects, sec


def smooth_field(shape):
    """The compressible field of the `smooth` workload (see the docstring)."""
    ny, nx = shape
    f = np.empty(shape, np.float32)
    x = np.arange(nx) / nx
    tau = 2 * np.pi
    for i0 in range(0, ny, 256):
        y = (np.arange(i0, min(i0 + 256, ny)) / ny)[:, None]
        f[i0:i0 + 256] = (np.sin(tau * x) + 0.5 * np.sin(tau * 2 * y + 0.3)
                          + 0.25 * np.sin(tau * (3 * x + y) + 1.1)
                          + 0.125 * np.sin(tau * (2 * x + 5 * y) + 2.0)
                          + 1e-3 * np.sin(tau * 37 * x) * np.sin(tau * 29 * y))
    return f


def tsnap_codec_subject(t, codec, shuffle=None):
    """tsnap with `codec`; `shuffle` ("byte", "bit") instead of the codec's default."""
    p, a = t.d / f"tsnap-{codec}-{shuffle}.h5", t.a
    kw = {"shuffle": shuffle} if shuffle else {}
    call = ", ".join([f"compression={codec!r}"] + [f"{k}={v!r}" for k, v in kw.items()])
    return Subject("tsnap", f"{codec}+{shuffle}shuffle" if shuffle else codec or "default", [
        Op("save", f"save({call}, durable=False)",
           lambda: tsnap_save(p, a, compression=codec, **kw), t.verify(lambda: tsnap_load(p))),
        Op("load", "load(p, 't')", lambda: tsnap_load(p), t.is_a, FRESH)],
        p, unavailable=tsnap_codec_problem(codec) if codec else None)


# h5py's compressed variants: (name, dataset keywords, the tsnap codec it is compared with)
H5PY_CODECS = [
    ("gzip-1+shuffle", lambda: {"compression": "gzip", "compression_opts": 1, "shuffle": True},
     "zstd"),
    ("lz4 (hdf5plugin.LZ4())", lambda: dict(hdf5plugin.LZ4()), "lz4"),
    ("zstd (hdf5plugin.Zstd())", lambda: dict(hdf5plugin.Zstd()), "zstd"),
    ("blosc-lz4+shuffle", lambda: dict(hdf5plugin.Blosc(cname="lz4",
                                                         shuffle=hdf5plugin.Blosc.SHUFFLE)),
     "lz4"),
]
# the noisy field's peers: gzip (the ratio to match), blosc-lz4 (the speed
# to beat) and hdf5plugin's own bit shuffle with LZ4
H5PY_NOISY = [v for v in H5PY_CODECS if v[0] in ("gzip-1+shuffle", "blosc-lz4+shuffle")] + [
    ("bitshuffle-lz4 (hdf5plugin.Bitshuffle())", lambda: dict(hdf5plugin.Bitshuffle(cname="lz4")),
     "lz4")]


def h5py_codec_subject(t, variant, filter_kw, vs):
    p, a = t.d / f"h5py-{variant.split()[0]}.h5", t.a
    missing = H5PY_MISSING or (HDF5PLUGIN_MISSING if "gzip" not in variant else None)
    return Subject("h5py", variant, [
        Op("save", f"create_dataset(chunks={t.chunks}, ...)",
           lambda: h5py_save(p, a, chunks=t.chunks, **filter_kw()),
           t.verify(lambda: h5py_read_direct(p, np.empty_like(a)))),
        Op("load", "ds[...]", lambda: h5py_load(p), t.is_a, "new array (h5py: numpy.zeros)"),
        t.into_out("load", "ds.read_direct(out)", lambda: h5py_read_direct(p, t.out))],
        p, unavailable=missing or h5py_filter_problem(filter_kw), vs=vs)


def smooth_sections(d, args, rng):
    shape = (512, 512) if args.quick else (8192, 8192)
    a = smooth_field(shape)
    t = OneTensor(d, a, prefaulted(shape), tsnap_chunks(d, a), durable=False, mapped=False)
    chunks = t.chunks
    # the limits and the uncompressed peers as references; zarr compresses by default
    subjects = [memcpy_subject(t), raw_subject(t)]
    subjects += [tsnap_codec_subject(t, codec) for codec in (None, "deflate", "zstd", "lz4")]
    subjects += [numpy_subject(t), safetensors_subject(t, load_file=False),
                 zarr_subject(t, vs="zstd")]
    subjects += [h5py_codec_subject(t, *v) for v in H5PY_CODECS]
    sec = Section("smooth", f"{fmt_bytes(a.nbytes)} smooth float32 field {shape}, chunks {chunks}",
                  a.nbytes, args.repeat, subjects)
    gz = "gzip-1+shuffle"
    sec.key_ratios = [
        ("zstd save vs h5py gzip-1+shuffle", row_id("save", "tsnap", "zstd"),
         row_id("save", "h5py", gz)),
        ("lz4 save vs h5py blosc-lz4+shuffle", row_id("save", "tsnap", "lz4"),
         row_id("save", "h5py", "blosc-lz4+shuffle")),
        ("zstd load vs h5py gzip-1+shuffle read_direct", row_id("load", "tsnap", "zstd"),
         row_id("load", "h5py", gz, "ds.read_direct(out)")),
        ("lz4 load vs h5py blosc-lz4+shuffle read_direct", row_id("load", "tsnap", "lz4"),
         row_id("load", "h5py", "blosc-lz4+shuffle", "ds.read_direct(out)")),
        ("deflate save vs h5py gzip-1+shuffle (same codec)", row_id("save", "tsnap", "deflate"),
         row_id("save", "h5py", gz)),
        ("deflate load vs h5py gzip-1+shuffle read_direct (same codec)",
         row_id("load", "tsnap", "deflate"), row_id("load", "h5py", gz, "ds.read_direct(out)")),
        ("zstd save vs zarr default (zstd-0)", row_id("save", "tsnap", "zstd"),
         row_id("save", "zarr", "default")),
    ]
    yield sec


def noisy_sections(d, args, rng):
    shape = (512, 512) if args.quick else (8192, 8192)
    a = smooth_field(shape)
    a += np.random.default_rng(2026).standard_normal(shape, dtype=np.float32) * np.float32(2e-3)
    t = OneTensor(d, a, prefaulted(shape), tsnap_chunks(d, a), durable=False, mapped=False)
    subjects = [memcpy_subject(t), raw_subject(t)]
    subjects += [tsnap_codec_subject(t, "zstd"), tsnap_codec_subject(t, "zstd", "byte"),
                 tsnap_codec_subject(t, "lz4"), tsnap_codec_subject(t, "lz4", "bit")]
    subjects += [h5py_codec_subject(t, *v) for v in H5PY_NOISY]
    sec = Section("noisy", f"{fmt_bytes(a.nbytes)} smooth float32 field with noise in its low"
                  f" bits {shape}, chunks {t.chunks}", a.nbytes, args.repeat, subjects)
    gz, blosc = "gzip-1+shuffle", "blosc-lz4+shuffle"
    sec.key_ratios = [
        ("zstd (bit shuffle) save vs h5py gzip-1+shuffle (target >= 10, ratio >= gzip's)",
         row_id("save", "tsnap", "zstd"), row_id("save", "h5py", gz)),
        ("zstd+byteshuffle save vs h5py gzip-1+shuffle", row_id("save", "tsnap", "zstd+byteshuffle"),
         row_id("save", "h5py", gz)),
        ("lz4 (byte shuffle) save vs h5py blosc-lz4+shuffle (target >= 1.5)",
         row_id("save", "tsnap", "lz4"), row_id("save", "h5py", blosc)),
        ("lz4+bitshuffle save vs h5py blosc-lz4+shuffle", row_id("save", "tsnap", "lz4+bitshuffle"),
         row_id("save", "h5py", blosc)),
        ("zstd load vs h5py gzip-1+shuffle read_direct", row_id("load", "tsnap", "zstd"),
         row_id("load", "h5py", gz, "ds.read_direct(out)")),
        ("lz4 load vs h5py blosc-lz4+shuffle read_direct", row_id("load", "tsnap", "lz4"),
         row_id("load", "h5py", blosc, "ds.read_direct(out)")),
    ]
    yield sec


@dataclass
class Many:
    """What the builders of the many-small-tensors subjects share."""
    d: Path
    tensors: dict
    outs: list             # one pre-faulted array per tensor, for the peers that take one

    def poison(self):
        for o in self.outs:
            o.fill(np.nan)

    def outs_hold_tensors(self, r):
        return r is self.outs and all(same(o, a) for o, a in zip(self.outs, self.tensors.values()))

    def is_tensors(self, r):
        return same_dict(r, self.tensors)


def many_subject(m, system, name, save_call, save, load_call, load, unavailable=None,
                 memory="new arrays", max_repeats=None, open_call=None, names=None):
    """A peer that saves the dict into `name` and loads it back as a dict;
    with `names`, also opens the file and lists the names (`open_call`)."""
    p = m.d / name
    ops = [Op("save", save_call, lambda: save(p, m.tensors), lambda _: m.is_tensors(load(p)),
              max_repeats=max_repeats),
           Op("load", load_call, lambda: load(p), m.is_tensors, memory, max_repeats=max_repeats)]
    if names:
        ops.append(Op("open", open_call, lambda: names(p), lambda r: sorted(r) == sorted(m.tensors),
                      "names only", max_repeats=max_repeats))
    return Subject(system, "default", ops, p, unavailable=unavailable)


def many_tsnap_names(path):
    with tsnap.open(path) as f:
        return f.keys()


def many_h5py_names(path):
    with h5py.File(path, "r") as f:
        return list(f)


def many_numpy_names(path):
    with np.load(path) as z:
        return list(z.files)


def tsnap_cli():
    """The `tsnap` command next to the tsnap package that is measured."""
    env = os.environ.get("TSNAP_CLI")
    if env:
        return Path(env)
    return Path(tsnap.__file__).resolve().parent.parent.parent / "tools" / "tsnap"


def many_cli_subject(m):
    """`tsnap ls` of a file of the tensors (a process: its start included)."""
    p, cli = m.d / "tsnap-ls.h5", tsnap_cli()

    def ls():
        out = subprocess.run([str(cli), "ls", str(p)], capture_output=True, text=True, check=True)
        rows = out.stdout.splitlines()[1:-1]  # less the header and the total
        return [line.split()[0] for line in rows if line.strip()]
    return Subject("tsnap", "command", [
        Op("open", "tsnap ls p (the command, process start included)", ls,
           lambda r: sorted(r) == sorted(m.tensors), "names only")],
        p, setup=lambda: many_tsnap_save(p, m.tensors),
        unavailable=None if cli.exists() else f"no tsnap command at {cli}")


def many_raw_subject(m):
    p = m.d / "raw.bin"
    return Subject("raw", "default", [
        Op("save", "one file, os.write per tensor", lambda: many_raw_write(p, m.tensors),
           lambda _: m.outs_hold_tensors(many_raw_read(p, m.outs)), poison=m.poison),
        Op("load", "one file, readinto per tensor", lambda: many_raw_read(p, m.outs),
           m.outs_hold_tensors, "into pre-faulted arrays (reused)", m.poison)], p)


def many_memcpy_subject(m):
    return Subject("memcpy", "default", [
        Op("memcpy", "np.copyto per tensor", lambda: many_memcpy(m.tensors, m.outs),
           m.outs_hold_tensors, "into pre-faulted arrays (reused)", m.poison, cmp_op="load")])


def small_sections(d, args, rng):
    count = 200 if args.quick else 10_000
    tensors = {f"t{i:05d}": rng.standard_normal(1024, dtype=np.float32) for i in range(count)}
    m = Many(d, tensors, [prefaulted(1024) for _ in range(count)])
    nbytes = sum(a.nbytes for a in tensors.values())
    subjects = [
        many_memcpy_subject(m),
        many_raw_subject(m),
        many_subject(m, "tsnap", "tsnap.h5", "save(dict, durable=False)", many_tsnap_save,
                     "load(p) (dict)", many_tsnap_load, open_call="open(p).keys()",
                     names=many_tsnap_names),
        many_cli_subject(m),
        many_subject(m, "numpy", "numpy.npz", "np.savez", many_numpy_savez,
                     "np.load(.npz)[k] for every k", many_numpy_loadz,
                     open_call="np.load(p).files", names=many_numpy_names),
        many_subject(m, "h5py", "h5py.h5", "create_dataset per tensor", many_h5py_save,
                     "ds[()] per dataset", many_h5py_load, H5PY_MISSING,
                     "new arrays (h5py: numpy.zeros)", open_call="list(File(p))",
                     names=many_h5py_names),
        many_subject(m, "safetensors", "st.safetensors", "save_file", many_safetensors_save,
                     "load_file", many_safetensors_load, SAFETENSORS_MISSING),
        # ~2 ms per array each way: two repeats keep the run short
        many_subject(m, "zarr", "z.zarr", "save_group (an array per tensor)", many_zarr_save,
                     "open_group, g[k][...] per array", many_zarr_load, ZARR_MISSING,
                     max_repeats=2),
    ]
    sec = Section("small", f"{count:,} float32 tensors of 4 KiB (1024 elements), fresh random",
                  nbytes, args.repeat, subjects, items=count)
    sec.key_ratios = [
        ("save vs h5py dataset per tensor (target >= 3)", row_id("save", "tsnap", "default"),
         row_id("save", "h5py", "default")),
        ("load vs h5py ds[()] per dataset (target >= 5)", row_id("load", "tsnap", "default"),
         row_id("load", "h5py", "default")),
        ("save vs np.savez", row_id("save", "tsnap", "default"),
         row_id("save", "numpy", "default")),
        ("load vs np.load(.npz) (target >= 10)", row_id("load", "tsnap", "default"),
         row_id("load", "numpy", "default")),
        ("open + names vs h5py list(File(p))", row_id("open", "tsnap", "default"),
         row_id("open", "h5py", "default")),
        ("open + names vs np.load(p).files", row_id("open", "tsnap", "default"),
         row_id("open", "numpy", "default")),
        ("save vs safetensors save_file", row_id("save", "tsnap", "default"),
         row_id("save", "safetensors", "default")),
        ("load vs safetensors load_file", row_id("load", "tsnap", "default"),
         row_id("load", "safetensors", "default")),
    ]
    yield sec


def mapopen_section(d, nbytes, repeats, rng):
    shape = (nbytes // 4 // 1024, 1024)
    a = rng.standard_normal(shape, dtype=np.float32)
    t = OneTensor(d, a, prefaulted(shape), chunks=None)
    few = min(repeats, 10) if nbytes >= 256 * MiB else None  # for the rows that copy it all

    def check(r):
        return same(np.asarray(r[...]), a)

    def subject(system, name, write, call, fn, memory="file pages", unavailable=None, **kw):
        """A peer whose file is written once (untimed); the timed call opens it."""
        p = d / name
        return Subject(system, "default", [Op("mmap open", call, lambda: fn(p), check, memory,
                                              **kw)],
                       p, setup=lambda: write(p, a), unavailable=unavailable)

    subjects = [
        subject("tsnap", "tsnap.h5", tsnap_save, "load(p, 't', mmap=True)", tsnap_mmap),
        subject("numpy", "numpy.npy", numpy_save, "np.load(mmap_mode='r')", numpy_mmap),
        subject("raw", "raw.bin", raw_write, "os.open, mmap.mmap, np.frombuffer",
                lambda p: raw_mmap(p, a.dtype, a.shape)),
        subject("h5py", "h5py.h5", h5py_save, "File, ds.id.get_offset(), np.memmap",
                h5py_mmap, unavailable=H5PY_MISSING),
        subject("zarr", "z.zarr", zarr_save, "open_array (a lazy handle, no data read)",
                zarr_open, "none (reads on indexing)", ZARR_MISSING),
        subject("safetensors", "st.safetensors", safetensors_save,
                "safe_open(np).get_tensor (no mapped API: copies)", safetensors_get,
                "new array (copied out of its mmap)", SAFETENSORS_MISSING, max_repeats=few),
        Subject("memcpy", "default", [
            t.into_out("mmap open", "np.copyto(out, a): what any copying load pays",
                       lambda: memcpy_copy(a, t.out), max_repeats=few)]),
    ]
    sec = Section("mapopen", f"mapped open of a {fmt_bytes(nbytes)} float32 tensor {shape}",
                  nbytes, repeats, subjects, unit="us")
    sec.key_ratios = [
        ("mmap open vs np.load(mmap_mode='r')", row_id("mmap open", "tsnap", "default"),
         row_id("mmap open", "numpy", "default")),
        ("mmap open vs h5py offset + np.memmap", row_id("mmap open", "tsnap", "default"),
         row_id("mmap open", "h5py", "default")),
        ("mmap open vs raw mmap", row_id("mmap open", "tsnap", "default"),
         row_id("mmap open", "raw", "default")),
    ]
    return sec


def mapopen_sections(d, args, rng):
    for nbytes in ((1 * MiB, 16 * MiB) if args.quick else (1 * MiB, 1 * GiB)):
        yield mapopen_section(d, nbytes, args.map_repeat, rng)


def store_sections(d, args, rng):
    shape = (1024, 1024) if args.quick else (16384, 16384)
    a = rng.standard_normal(shape, dtype=np.float32)
    t = OneTensor(d, a, prefaulted(shape), chunks=None, durable=False, mapped=False)
    store = tsnap.Store(d / "store", keep_last=2, durable=False)
    step = [0]

    def save(wait):
        step[0] += 1
        store.save(step[0], {"state": a}, wait=wait)

    def settle():  # untimed: the background write of the previous save
        store.wait()

    def check(_):
        store.wait()
        return same(store.load(name="state"), a)

    blocked = "Store.save(wait=False): blocked until the arrays may change"
    heat = REPO / "build" / "examples" / "heat"
    size, steps = (128, 200) if args.quick else (1024, 1000)

    def demo(every):
        """The simulation of examples/heat.c, checkpointing every `every` steps."""
        run_dir = d / f"heat-{every}"
        remove(run_dir)
        subprocess.run([str(heat), str(run_dir), "--size", str(size), "--steps", str(steps),
                        "--every", str(every)], check=True, capture_output=True)
        remove(run_dir)

    subjects = [
        memcpy_subject(t),
        Subject("tsnap", "store", [
            Op("store save", blocked, lambda: save(False), check, poison=settle),
            Op("store save", "Store.save(wait=True) (durable=False)", lambda: save(True), check,
               poison=settle)]),
        Subject("tsnap", "demo", [
            Op("store save", f"examples/heat {size}x{size}, {steps} steps, a checkpoint every 50",
               lambda: demo(50), lambda _: True),
            Op("store save", f"examples/heat {size}x{size}, {steps} steps, no checkpoints",
               lambda: demo(0), lambda _: True)],
            unavailable=None if heat.exists() else f"{heat} is not built"),
    ]
    sec = Section("store", f"{fmt_bytes(a.nbytes)} float32 state {shape} into a tsnap.Store",
                  a.nbytes, args.repeat, subjects)
    sec.key_ratios = [
        ("save(wait=False) blocked time vs memcpy (target >= 0.83, i.e. <= 1.2x)",
         row_id("store save", "tsnap", "store", blocked), row_id("memcpy", "memcpy", "default")),
        ("the demo with checkpoints vs without (1 / slowdown)",
         row_id("store save", "tsnap", "demo", f"examples/heat {size}x{size}, {steps} steps, a c"),
         row_id("store save", "tsnap", "demo", f"examples/heat {size}x{size}, {steps} steps, no")),
    ]
    try:
        yield sec
    finally:
        store.close()


# ---------------------------------------------------------------------------
# Plain mode (--plain): as a user's script runs.  No malloc settings, no
# pre-faulted buffers, no sync or page-cache recycling before a save; a
# save goes over the file of the previous repeat (same name), or to a new
# name each repeat.  A workload here is a builder of sections, as above,
# whose sections set plain=True; PLAIN_SECTIONS lists them.

def plain_saves(system, variant, path, call, save, load, a):
    """A subject that saves `a` with save(path, a, durable) every repeat,
    page cache and durable: over the same file ("same name"), or ("new
    names") under a new name in directory `path` each time, the previous
    one deleted first (untimed)."""
    state = {"n": 0, "last": path}

    def new_name():  # untimed, before each call
        remove(state["last"])
        state["n"] += 1
        path.mkdir(exist_ok=True)
        state["last"] = path / f"{state['n']}{path.suffix}"

    poison = new_name if variant == "new names" else None
    ops = [Op(op, f"{call}{suffix}", lambda d=durable: save(state["last"], a, d),
              lambda _: same(np.asarray(load(state["last"])[...]), a), poison=poison)
           for op, durable, suffix in (("save", False, ""), ("save durable", True, " + fsync"))]
    return Subject(system, variant, ops, path, keep=True, vs=variant)


def plain_zarr_save(path, a, durable=False):
    remove(path)  # a fresh store over the old one, as zarr's users save
    zarr_save(path, a, durable)


def overwrite_sections(d, args, rng):
    """Item: a 1 GiB float32 state saved over the same name every repeat
    (and under new names), page cache and durable.  First tsnap and np.save
    alone, as a script that calls both in a loop; then every peer over its
    own file."""
    shape = (512, 512) if args.quick else (16384, 16384)
    a = rng.standard_normal(shape, dtype=np.float32)
    title = f"{fmt_bytes(a.nbytes)} float32 {shape} saved every repeat, plain"

    def rid(op, system, variant):
        return row_id(op, system, variant)
    subjects = [
        plain_saves("tsnap", "same name", d / "tsnap.h5", "save", tsnap_save, tsnap_load, a),
        plain_saves("numpy", "same name", d / "numpy.npy", "np.save", numpy_save, numpy_load, a),
        plain_saves("tsnap", "new names", d / "tsnap-new.h5", "save", tsnap_save, tsnap_load, a),
        plain_saves("numpy", "new names", d / "numpy-new.npy", "np.save", numpy_save,
                    numpy_load, a),
    ]
    sec = Section("overwrite", f"{title}: tsnap and np.save", a.nbytes, args.repeat_large,
                  subjects, plain=True)
    sec.key_ratios = [
        ("overwrite vs np.save over its own file (target >= 0.9)",
         rid("save", "tsnap", "same name"), rid("save", "numpy", "same name")),
        ("durable overwrite vs np.save + fsync over its own file (target >= 0.9)",
         rid("save durable", "tsnap", "same name"), rid("save durable", "numpy", "same name")),
        ("new names vs np.save (target >= 0.9)",
         rid("save", "tsnap", "new names"), rid("save", "numpy", "new names")),
        ("durable, new names vs np.save + fsync",
         rid("save durable", "tsnap", "new names"), rid("save durable", "numpy", "new names")),
    ]
    yield sec
    subjects = [
        plain_saves("tsnap", "same name", d / "tsnap.h5", "save", tsnap_save, tsnap_load, a),
        plain_saves("numpy", "same name", d / "numpy.npy", "np.save", numpy_save, numpy_load, a),
    ]
    if not H5PY_MISSING:
        subjects.append(plain_saves("h5py", "same name", d / "h5py.h5",
                                    "File('w').create_dataset", h5py_save, h5py_load, a))
    if not SAFETENSORS_MISSING:
        subjects.append(plain_saves("safetensors", "same name", d / "st.safetensors",
                                    "save_file", safetensors_save, safetensors_get, a))
    if not ZARR_MISSING:
        subjects.append(plain_saves("zarr", "same name", d / "z.zarr", "save_array",
                                    plain_zarr_save, zarr_load, a))
    sec = Section("overwrite", f"{title}: every peer over its own file", a.nbytes,
                  max(1, min(3, args.repeat_large)), subjects, plain=True)
    sec.key_ratios = [
        (f"overwrite vs {system}", rid("save", "tsnap", "same name"),
         rid("save", system, "same name")) for system in ("numpy", "h5py", "safetensors")]
    yield sec


def bert_mini_state(rng, layers=6, width=384, vocab=30522, ffn=1536, positions=512):
    """Random float32 weights with the shapes of a 6-layer, 384-wide BERT
    (30,522 tokens): 103 tensors from 1.5 KB to 47 MB, 91 MB in all."""
    sd = {}

    def w(name, *shape):
        sd[name] = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
    w("embeddings.word_embeddings.weight", vocab, width)
    w("embeddings.position_embeddings.weight", positions, width)
    w("embeddings.token_type_embeddings.weight", 2, width)
    w("embeddings.LayerNorm.weight", width)
    w("embeddings.LayerNorm.bias", width)
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for m in ("query", "key", "value"):
            w(p + f"attention.self.{m}.weight", width, width)
            w(p + f"attention.self.{m}.bias", width)
        w(p + "attention.output.dense.weight", width, width)
        w(p + "attention.output.dense.bias", width)
        w(p + "attention.output.LayerNorm.weight", width)
        w(p + "attention.output.LayerNorm.bias", width)
        w(p + "intermediate.dense.weight", ffn, width)
        w(p + "intermediate.dense.bias", ffn)
        w(p + "output.dense.weight", width, ffn)
        w(p + "output.dense.bias", width)
        w(p + "output.LayerNorm.weight", width)
        w(p + "output.LayerNorm.bias", width)
    w("pooler.dense.weight", width, width)
    w("pooler.dense.bias", width)
    return sd


def weights_sections(d, args, rng):
    """Item: a model's state dict saved (same name every repeat), loaded,
    and loaded mapped, against safetensors, np.savez, h5py and zarr."""
    sd = bert_mini_state(rng, **({"layers": 1, "vocab": 1000} if args.quick else {}))
    nbytes = sum(a.nbytes for a in sd.values())

    def subject(system, name, save, load, extra=(), unavailable=None):
        p = d / name
        ops = [Op("save", save.__name__, lambda: save(p, sd), lambda _: same_dict(load(p), sd)),
               Op("load", load.__name__, lambda: load(p), lambda r: same_dict(r, sd), FRESH)]
        return Subject(system, "default", ops + [o(p) for o in extra], p, keep=True,
                       unavailable=unavailable)

    def tsnap_mapped(p):
        return Op("mmap open", "load(p, mmap=True): every tensor", lambda: tsnap.load(p, mmap=True),
                  lambda r: same_dict(r, sd), "file pages")

    def st_load_file(p):  # the mapped load's peer: safetensors has no mapped load
        return Op("load", "load_file (vs mapped)", lambda: many_safetensors_load(p),
                  lambda r: same_dict(r, sd), FRESH, cmp_op="mmap open")
    subjects = [
        subject("tsnap", "w.h5", many_tsnap_save, many_tsnap_load, [tsnap_mapped]),
        subject("safetensors", "w.safetensors", many_safetensors_save, many_safetensors_load,
                [st_load_file], SAFETENSORS_MISSING),
        subject("numpy", "w.npz", many_numpy_savez, many_numpy_loadz),
        subject("h5py", "w-h5py.h5", many_h5py_save, many_h5py_load, unavailable=H5PY_MISSING),
        subject("zarr", "w.zarr", plain_zarr_group_save, many_zarr_load,
                unavailable=ZARR_MISSING),
    ]
    sec = Section("weights", f"state dict: {len(sd)} float32 tensors, {fmt_bytes(nbytes)}"
                  f" ({nbytes / 1e6:.0f} MB), BERT-mini shapes, plain", nbytes, args.repeat,
                  subjects, plain=True)
    sec.key_ratios = [
        ("save vs safetensors save_file (target >= 1.2)", row_id("save", "tsnap", "default"),
         row_id("save", "safetensors", "default", "many_safetensors_save")),
        ("load vs safetensors load_file (target >= 1.2)", row_id("load", "tsnap", "default"),
         row_id("load", "safetensors", "default", "many_safetensors_load")),
        ("mapped load vs safetensors load_file (target >= 4, i.e. <= 0.25x its time)",
         row_id("mmap open", "tsnap", "default"),
         row_id("load", "safetensors", "default", "load_file (vs mapped)")),
        ("save vs np.savez", row_id("save", "tsnap", "default"),
         row_id("save", "numpy", "default")),
        ("load vs h5py", row_id("load", "tsnap", "default"), row_id("load", "h5py", "default")),
    ]
    yield sec


def plain_zarr_group_save(path, tensors):
    remove(path)
    many_zarr_save(path, tensors)


def plain_mapopen_sections(d, args, rng):
    for sec in mapopen_sections(d, args, rng):
        sec.plain = True
        yield sec


# What a fresh interpreter does once (first) and again (next): the timings
# come back as JSON.  Loads and opens read a file written by the parent.
_FIRST_CALL = r"""
import json, os, sys, time
t0 = time.perf_counter()
import numpy as np
t1 = time.perf_counter()
system, path, new = sys.argv[1], sys.argv[2], sys.argv[3]
if system == "tsnap":
    import tsnap
    calls = {
        "save": lambda a: tsnap.save(new, {"t": a}, durable=False),
        "load": lambda a: tsnap.load(path, "t"),
        "open": lambda a: tsnap.open(path)["t"][...],
        "mmap open": lambda a: tsnap.load(path, "t", mmap=True),
    }
elif system == "numpy":
    calls = {
        "save": lambda a: np.save(new, a),
        "load": lambda a: np.load(path),
        "mmap open": lambda a: np.load(path, mmap_mode="r"),
    }
elif system == "h5py":
    import h5py
    def h5save(a):
        with h5py.File(new, "w") as f:
            f.create_dataset("t", data=a)
    def h5load(a):
        with h5py.File(path, "r") as f:
            return f["t"][()]
    calls = {"save": h5save, "load": h5load}
else:
    from safetensors.numpy import save_file, load_file
    calls = {"save": lambda a: save_file({"t": a}, new), "load": lambda a: load_file(path)}
t2 = time.perf_counter()
a = np.arange(1 << 18, dtype=np.float64)
out = {"import": t2 - t1}
for name, fn in calls.items():
    times = []
    for i in range(2):
        s = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - s)
    out[name] = times
print(json.dumps(out))
"""


def firstcall_sections(d, args, rng):
    """Item: what the first save, load, open and mapped open cost in a fresh
    interpreter over the second (float64, 2 MiB), each sample a new process."""
    samples = 3 if args.quick else max(args.repeat, 10)
    a = np.arange(1 << 18, dtype=np.float64)
    files = {"tsnap": d / "first.h5", "numpy": d / "first.npy", "h5py": d / "first-h5py.h5",
             "safetensors": d / "first.safetensors"}
    missing = {"h5py": H5PY_MISSING, "safetensors": SAFETENSORS_MISSING}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(Path(tsnap.__file__).parent.parent),
                                                    env.get("PYTHONPATH", "")] if p)
    for var in MALLOC_VARS:
        env.pop(var, None)

    def runner(log):
        tsnap_save(files["tsnap"], a)
        numpy_save(files["numpy"], a)
        if not H5PY_MISSING:
            h5py_save(files["h5py"], a)
        if not SAFETENSORS_MISSING:
            safetensors_save(files["safetensors"], a)
        rows = {}
        try:
            for r in range(samples):
                systems = [s for s in files if not missing.get(s)]
                for system in systems[r % len(systems):] + systems[:r % len(systems)]:
                    new = d / f"first-new-{system}"
                    proc = subprocess.run([sys.executable, "-c", _FIRST_CALL, system,
                                           str(files[system]), str(new)],
                                          capture_output=True, text=True, env=env)
                    remove(new)
                    remove(str(new) + ".npy")
                    if proc.returncode != 0:
                        raise RuntimeError(f"{system}: {proc.stderr.strip()[-300:]}")
                    got = json.loads(proc.stdout.strip().splitlines()[-1])
                    for call, times in got.items():
                        if call == "import":
                            key = ("import", system, f"import {system} (after numpy)")
                            value = times
                        else:
                            key = ("first call", system, f"{call}: first - next")
                            value = max(times[0] - times[1], 0.0)
                        if key not in rows:
                            rows[key] = Row(system, "default", Op(key[0], key[2], None,
                                                                   lambda _: True), "none")
                            rows[key].check = True
                        rows[key].times.append(value)
        finally:
            for p in files.values():
                remove(p)
        return list(rows.values())

    sec = Section("firstcall", "the first call in a fresh interpreter over the next one"
                  " (float64, 2 MiB; one process per sample)", a.nbytes, samples, [],
                  plain=True, runner=runner)
    sec.key_ratios = []
    yield sec


def plain_small_sections(d, args, rng):
    for sec in small_sections(d, args, rng):
        sec.plain = True
        yield sec


def plain_noisy_sections(d, args, rng):
    for sec in noisy_sections(d, args, rng):
        sec.plain = True
        yield sec


PLAIN_SECTIONS = {"overwrite": overwrite_sections, "weights": weights_sections,
                  "mapopen": plain_mapopen_sections, "firstcall": firstcall_sections,
                  "small": plain_small_sections, "noisy": plain_noisy_sections}
PLAIN_WORKLOADS = tuple(PLAIN_SECTIONS)


SECTIONS = {"big": big_sections, "smooth": smooth_sections, "noisy": noisy_sections,
            "small": small_sections,
            "mapopen": mapopen_sections, "store": store_sections}


# ---------------------------------------------------------------------------
# Running

@dataclass
class Row:
    system: str
    variant: str
    op: Op
    vs: str
    times: list = field(default_factory=list)
    check: Optional[bool] = None
    status: str = "ok"
    file_bytes: Optional[int] = None

    @property
    def id(self):
        return row_id(self.op.op, self.system, self.variant, self.op.call)


def run_section(sec, log):
    if sec.runner:
        sec.rows = sec.runner(log)
        return
    rows = {}
    for s in sec.subjects:
        for o in s.ops:
            rows[id(o)] = Row(s.system, s.variant, o, s.vs)
            if s.unavailable:
                rows[id(o)].status = f"n/a ({s.unavailable})"
    active = [s for s in sec.subjects if not s.unavailable]
    broken = set()
    try:
        for s in active:
            if s.setup:
                try:
                    remove(s.path)
                    s.setup()
                except Exception as e:  # noqa: BLE001
                    fail(s, rows, broken, e)
        if not sec.plain:
            os.sync()  # nothing the set-up wrote is still being written back while we measure
        for r in range(sec.repeats):
            if r and r % max(1, sec.repeats // 4) == 0:
                log(f"    repeat {r + 1}/{sec.repeats}")
            k = r % len(active)
            for s in active[k:] + active[:k]:
                if id(s) not in broken:
                    run_subject_turn(sec, s, r, rows, broken)
    finally:
        for s in sec.subjects:
            remove(s.path)
    sec.rows = [rows[id(o)] for s in sec.subjects for o in s.ops]


def fail(s, rows, broken, e):
    """Subject `s` raised: its rows say so and it is not run again."""
    broken.add(id(s))
    for o in s.ops:
        if rows[id(o)].status == "ok":
            rows[id(o)].status = f"error: {type(e).__name__}: {e}"[:300]


def run_subject_turn(sec, s, r, rows, broken):
    """One repeat of every operation of `s`; a subject without set-up deletes its file after."""
    try:
        for o in s.ops:
            if o.max_repeats is not None and r >= o.max_repeats:
                continue
            row = rows[id(o)]
            if o.op in SAVE_OPS and not sec.plain:
                remove(s.path)
                os.sync()
                recycle_page_cache(sec.nbytes)
            if o.poison:
                o.poison()
            gc.collect()
            gc.disable()
            try:
                t0 = time.perf_counter()
                result = o.fn()
                row.times.append(time.perf_counter() - t0)
            finally:
                gc.enable()
            if row.check is None:
                row.check = bool(o.check(result))
                if o.op in SAVE_OPS:
                    row.file_bytes = disk_bytes(s.path)
            del result
    except Exception as e:  # noqa: BLE001 - recorded, the run goes on, the exit status says it
        fail(s, rows, broken, e)
    finally:
        if not s.setup and not s.keep:
            remove(s.path)


# ---------------------------------------------------------------------------
# Reporting

def median(row):
    return statistics.median(row.times) if row.times and row.status == "ok" else None


def tsnap_ref(sec, row):
    """The tsnap row a peer row is compared with: same op (or cmp_op), variant row.vs,
    its first call."""
    op = row.op.cmp_op or row.op.op
    for t in sec.rows:
        if t.system == "tsnap" and t.op.op == op and t.variant == row.vs:
            return t
    return None


def ratio(tsnap_row, peer_row):
    """tsnap's throughput / the peer's (peer time / tsnap time); None if either is missing."""
    if tsnap_row is None or peer_row is None or False in (tsnap_row.check, peer_row.check):
        return None
    t, p = median(tsnap_row), median(peer_row)
    return p / t if t and p else None


def key_ratios(sec):
    """[(description, tsnap row, peer row, ratio or None)] of the section's key ratios."""
    def find(prefix):
        return next((r for r in sec.rows if r.id.startswith(prefix)), None)
    out = []
    for desc, tid, pid in sec.key_ratios:
        t, p = find(tid), find(pid)
        out.append((desc, t, p, ratio(t, p)))
    return out


def growth(row, smaller):
    """A latency row's median over the same row's in the smaller section."""
    twin = next((t for t in smaller.rows if t.id == row.id), None) if smaller else None
    m, m0 = median(row), median(twin) if twin else None
    return m / m0 if m and m0 else None


def fmt_time(sec, seconds):
    if seconds is None:
        return "-"
    if sec.unit == "us":
        return f"{seconds * 1e6:,.1f}"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    return f"{seconds:.4f} s" if seconds < 10 else f"{seconds:.2f} s"


def table(headers, lines, right):
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]

    def fmt(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([fmt(headers), fmt(["-" * w for w in widths])] + [fmt(c) for c in lines])


def section_report(sec, smaller=None):
    """The table of one section (smaller: the same workload's smaller section, for growth)."""
    headers = ["op", "system", "variant / call", "result memory", "n",
               "median µs" if sec.unit == "us" else "median"]
    headers += [f"÷ {fmt_bytes(smaller.nbytes)}"] if smaller else []
    headers += ["µs/tensor"] if sec.items > 1 else []
    headers += ["GB/s", "spread", "compr.", "tsnap/peer", "check"]
    lines = []
    order = sorted(sec.rows, key=lambda r: OP_ORDER.index(r.op.op))
    for row in order:
        m = median(row)
        variant = row.op.call if row.variant == "default" else f"{row.variant}: {row.op.call}"
        cells = [row.op.op, row.system, variant, row.op.memory, str(len(row.times)),
                 fmt_time(sec, m)]
        if smaller:
            g = growth(row, smaller)
            cells.append(f"{g:.2f}x" if g else "-")
        if sec.items > 1:
            cells.append(f"{m / sec.items * 1e6:.1f}" if m else "-")
        cells.append(f"{sec.nbytes / m / 1e9:.2f}" if m and row.op.reads_data else "-")
        spread = (max(row.times) - min(row.times)) / m * 100 if m and len(row.times) > 1 else None
        cells.append(f"{spread:.0f}%" if spread is not None else "-")
        cells.append(f"{sec.nbytes / row.file_bytes:.2f}" if row.file_bytes else "")
        if row.system == "tsnap":
            cells.append("")
        else:
            ref = tsnap_ref(sec, row)
            rt = ratio(ref, row)
            label = "" if row.vs == "default" else f" ({row.vs})"
            cells.append(f"{rt:.2f}{label}" if rt else ("n/a" if ref is not None else ""))
        cells.append(row.status if row.status != "ok" else
                     ("ok" if row.check else "WRONG" if row.check is False else "-"))
        lines.append(cells)
    right = set(range(4, len(headers) - 1))
    text = table(headers, lines, right)
    keys = []
    for desc, t, p, rt in key_ratios(sec):
        if rt:
            keys.append(f"  tsnap / peer  {desc:<62} {rt:6.2f}")
        else:
            bad = next((r for r in (t, p) if r is not None and r.status != "ok"), None)
            keys.append(f"  tsnap / peer  {desc:<62}    n/a  ({bad.status if bad else 'no data'})")
    if smaller:
        for row in sec.rows:
            g = growth(row, smaller)
            if g and row.system in ("tsnap", "numpy") and not row.op.reads_data:
                verdict = "flat" if g < 1.5 else "GROWS with size"
                keys.append(f"  {row.system} mapped open, {fmt_bytes(sec.nbytes)} over"
                            f" {fmt_bytes(smaller.nbytes)}: {g:.2f}x ({verdict})")
    return text + ("\n" + "\n".join(keys) if keys else "")


def row_json(sec, row, smaller=None):
    m = median(row)
    ref = None if row.system == "tsnap" else tsnap_ref(sec, row)
    return {
        "id": row.id, "op": row.op.op, "system": row.system, "variant": row.variant,
        "call": row.op.call, "memory": row.op.memory, "status": row.status, "check": row.check,
        "n": len(row.times), "times_s": row.times, "median_s": m,
        "gbps": sec.nbytes / m / 1e9 if m and row.op.reads_data else None,
        "bytes": sec.nbytes,
        "file_bytes": row.file_bytes,
        "compression_ratio": sec.nbytes / row.file_bytes if row.file_bytes else None,
        "tsnap_over_peer": ratio(ref, row), "tsnap_row": ref.id if ref else None,
        "over_smaller_size": growth(row, smaller),
    }


def section_json(sec, smaller=None):
    keys = [{"what": desc, "tsnap_row": t.id if t else None, "peer_row": p.id if p else None,
             "tsnap_over_peer": rt} for desc, t, p, rt in key_ratios(sec)]
    return {"workload": sec.workload, "title": sec.title, "bytes": sec.nbytes,
            "repeats": sec.repeats, "unit": sec.unit, "items": sec.items,
            "rows": [row_json(sec, r, smaller) for r in sec.rows], "key_ratios": keys}


# ---------------------------------------------------------------------------
# Machine and versions

def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_total():
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def read_text(path):
    try:
        return Path(path).read_text().strip()
    except OSError:
        return "?"


def fs_type(path):
    best, kind = "", "?"
    try:
        for line in open("/proc/mounts"):
            dev, mnt, typ = line.split()[:3]
            if str(path).startswith(mnt) and len(mnt) > len(best):
                best, kind = mnt, f"{typ} on {dev}"
    except OSError:
        pass
    return kind


def tsnap_hdf5_version():
    """The libhdf5 tsnap runs with: its own report, or the loaded library's H5get_libversion."""
    for attr in ("hdf5_version", "HDF5_VERSION"):
        v = getattr(tsnap._core, attr, None) or getattr(tsnap, attr, None)
        if v:
            return str(v)
    try:
        libs = {line.split()[-1] for line in open("/proc/self/maps") if "/libhdf5" in line}
    except OSError:
        return "?"
    for lib in sorted(libs):
        name = os.path.basename(lib)
        if "h5py" in lib or "_hl" in name or "hdf5plugin" in lib:
            continue
        try:
            v = [ctypes.c_uint() for _ in range(3)]
            ctypes.CDLL(lib).H5get_libversion(*map(ctypes.byref, v))
            return f"{'.'.join(str(x.value) for x in v)} ({lib})"
        except (OSError, AttributeError):
            continue
    return "?"


def environment(tmp):
    mem = mem_total()
    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "h5py": f"{h5py.__version__} (HDF5 {h5py.version.hdf5_version})" if h5py else H5PY_MISSING,
        "hdf5plugin": hdf5plugin.version if hdf5plugin else HDF5PLUGIN_MISSING,
        "safetensors": safetensors.__version__ if safetensors else SAFETENSORS_MISSING,
        "zarr": zarr.__version__ if zarr else ZARR_MISSING,
        "tsnap": f"{tsnap.__version__} ({Path(tsnap.__file__).parent})",
        "tsnap libhdf5": tsnap_hdf5_version(),
    }
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_bytes": mem,
        "kernel": platform.release(),
        "transparent_hugepages": read_text("/sys/kernel/mm/transparent_hugepage/enabled"),
        "dir": str(tmp),
        "dir_fs": fs_type(tmp),
        "malloc": {v: os.environ.get(v) for v in MALLOC_VARS},
        "reexecuted_for_malloc": os.environ.get(_REEXEC_MARK) == "1",
        "versions": versions,
    }


def print_environment(env, args):
    mem = env["memory_bytes"]
    print("tsnap benchmark — every system in this one process, on the same data")
    print(f"date     {env['date']}    host {env['host']}")
    print(f"machine  {env['cpu']}, {env['cores']} cores ({env['cores_usable']} usable), "
          f"{mem / GiB:.1f} GiB memory, Linux {env['kernel']}, THP {env['transparent_hugepages']}")
    print(f"files    {env['dir']} ({env['dir_fs']}); deleted as the run goes")
    for k, v in env["versions"].items():
        print(f"  {k:<14} {v}")
    m = " ".join(f"{k}={v}" for k, v in env["malloc"].items())
    if args.plain:
        print(f"malloc   {m} (--plain: as the caller's environment has it)")
    elif env["reexecuted_for_malloc"]:
        print(f"malloc   re-executed with {m} for every system (freed memory stays in the heap)")
    else:
        print(f"malloc   {m} (already set by the caller: not re-executed)")
    print(f"seed     {args.seed}" + ("    --quick: tiny sizes, timings meaningless" if args.quick
                                     else ""))
    if args.plain:
        print("\n".join([
            "--plain: as a user's script runs: no os.sync(), no page-cache recycling, no"
            " pre-faulted buffers;",
            "'same name' saves go over the previous repeat's file, 'new names' to a fresh name"
            " (the previous deleted, untimed);",
            f"load average before the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())};",
            "'tsnap/peer' = tsnap throughput / peer throughput (>1: tsnap faster);"
            " 'spread' = (max - min) / median."]))
        sys.stdout.flush()
        return
    print("\n".join([
        "loads read warm files (just written, in the page cache); before each save: os.sync() and"
        " a scratch file",
        "of the data's size written and deleted (page-cache pages freshly freed, see"
        " recycle_page_cache); gc off while timing;",
        "'tsnap/peer' = tsnap throughput / peer throughput (>1: tsnap faster); 'compr.' = logical"
        " bytes / bytes on disk;",
        "'spread' = (max - min) / median over the repeats; 'n' = repeats measured."]))
    sys.stdout.flush()


# ---------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, help="where the files go (a fresh directory is made in it;"
                   " default: under the repository's build/, else /tmp)")
    p.add_argument("--only", choices=sorted(set(WORKLOADS) | set(PLAIN_WORKLOADS)),
                   action="append", help="run this workload only (repeatable; with --plain:"
                   f" {', '.join(PLAIN_WORKLOADS)})")
    p.add_argument("--plain", action="store_true",
                   help="measure as a user's script runs (see 'Plain mode' in the source):"
                   f" workloads {', '.join(PLAIN_WORKLOADS)}")
    p.add_argument("--repeat", type=int, default=5, help="repeats of each measurement (default 5)")
    p.add_argument("--repeat-large", type=int, default=5,
                   help="repeats for the 1 GiB tensor of 'big' (default 5)")
    p.add_argument("--map-repeat", type=int, default=200,
                   help="repeats of each mapped open in 'mapopen' (default 200)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes, 1 repeat: a smoke test of a few seconds")
    p.add_argument("--json", type=Path, help="also write every median and ratio to this file")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: fresh)")
    args = p.parse_args(argv)
    if args.quick:
        args.repeat, args.repeat_large, args.map_repeat = 1, 1, 10
    workloads = PLAIN_WORKLOADS if args.plain else WORKLOADS
    bad = [w for w in args.only or () if w not in workloads]
    if bad:
        p.error(f"{', '.join(bad)}: not a workload{' of --plain' if args.plain else ''}"
                f" (choose from {', '.join(workloads)})")
    if min(args.repeat, args.repeat_large, args.map_repeat) < 1:
        p.error("repeats must be at least 1")
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "little")
    return args


def main(argv=None):
    global tsnap, h5py, H5PY_MISSING, hdf5plugin, HDF5PLUGIN_MISSING, safetensors
    global SAFETENSORS_MISSING, zarr, ZARR_MISSING, WORKDIR
    args = parse_args(argv)
    tsnap = import_tsnap()
    h5py, H5PY_MISSING = optional("h5py")
    hdf5plugin, HDF5PLUGIN_MISSING = optional("hdf5plugin")
    safetensors, SAFETENSORS_MISSING = optional("safetensors")
    if safetensors:
        safetensors_numpy, missing = optional("safetensors.numpy")
        safetensors, SAFETENSORS_MISSING = (safetensors, None) if safetensors_numpy else \
            (None, missing)
    zarr, ZARR_MISSING = optional("zarr")
    # What the imports made is never garbage: keep it out of the collections the runner
    # makes before each timed call (a full one costs ~16 ms with these modules loaded).
    gc.collect()
    gc.freeze()

    base = args.dir if args.dir else (REPO / "build" if (REPO / "build").is_dir()
                                      else Path(tempfile.gettempdir()))
    try:
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="tsnap-bench-", dir=base))
    except OSError as e:
        die(f"cannot make a directory under {base}: {e}")
    WORKDIR = tmp
    env = environment(tmp)
    print_environment(env, args)
    need = (1 if args.quick else 8) * GiB  # mapopen holds six 1 GiB files at once
    if shutil.disk_usage(tmp).free < need:
        print(f"warning: less than {fmt_bytes(need)} free under {tmp}: the run may fail")
    rng = np.random.default_rng(args.seed)
    report = {"environment": env, "args": {k: (str(v) if isinstance(v, Path) else v)
                                           for k, v in vars(args).items()},
              "workloads": {}}
    failed = []
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        registry = PLAIN_SECTIONS if args.plain else SECTIONS
        for name in (args.only or tuple(registry)):
            sections, smallers = [], []
            for sec in registry[name](tmp, args, rng):
                t0 = time.perf_counter()
                log(f"[{name}] {sec.title}: {sec.repeats} repeats ...")
                run_section(sec, log)
                log(f"[{name}]   done in {time.perf_counter() - t0:.1f} s")
                smaller = sections[-1] if sections and sec.unit == "us" else None
                smallers.append(smaller)
                print(f"\n== {name}: {sec.title}; median of {sec.repeats}"
                      f"{' (warm loads)' if name != 'mapopen' else ''} ==")
                print(section_report(sec, smaller))
                sys.stdout.flush()
                failed += [f"{name}/{sec.title}: {r.id}: "
                           f"{r.status if r.status != 'ok' else 'loaded != saved'}"
                           for r in sec.rows if r.status.startswith("error") or r.check is False]
                sections.append(sec)
            report["workloads"][name] = [section_json(s, m) for s, m in zip(sections, smallers)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["all_checks_passed"] = not failed
    report["failures"] = failed
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        print(f"\nwrote {args.json}")
    if failed:
        print("\nFAILED:\n  " + "\n  ".join(failed))
        return 1
    print("\nevery round trip checked: loaded == saved (np.array_equal) for every system")
    return 0


if __name__ == "__main__":
    sys.exit(main())

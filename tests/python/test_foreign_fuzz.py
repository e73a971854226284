"""1,000 random truncations and bit flips of foreign files (h5py's partly
written, enum, bitfield and plug-in filtered datasets, PyTables', netCDF-4's)
read in subprocesses, many per subprocess: every read either succeeds or
raises a tsnap.Error; nothing crashes.  A batch that dies is read again one
file at a time, to name the input that crashes.  The command's ls and
verify on a share of them exit 0, 1 or 2, never on a signal.

An input on which HDF5's own tool, h5dump -H (the same libhdf5, opening
each dataset and decoding its type), dies too crashes inside HDF5's decoding
of the damaged object header, before tsnap sees the dataset: HDF5 1.10 does
not check every field it decodes.  Those are listed, not failed.  The
plug-in filters fuzzed are blosc and bitshuffle: the bzip2 plug-in (PyTables'
filter, which hdf5plugin and netCDF4 ship) loops forever on some damaged
chunks, inside HDF5's pipeline, where no reader can stop it."""
import json
import os
import shutil
import subprocess
import sys

import h5py
import hdf5plugin
import numpy as np
import pytest

import pyhelpers
from clihelpers import SANITIZER_MARKS, cli_path, rng_for
from test_foreign_h5py import write_enums, write_plugin_filters

MUTANTS = 1000
BATCH = 100
# The corpus is fixed, so that every run checks the same 1,000 inputs (a
# regression corpus, as fuzzers keep in CI); TSNAP_FUZZ_SEED=<int> draws
# another one to explore.
FUZZ_SEED = int(os.environ.get("TSNAP_FUZZ_SEED", "20261207"), 0)

READ_ALL = r"""
import json, sys
import numpy as np
import tsnap
bad = []
for path in sys.argv[1:]:
    try:
        with tsnap.open(path) as f:
            for name in list(f.keys()):
                try:
                    t = f[name]
                    t.enum, t.compression, t.map_status
                    if t.nbytes > 64 << 20:  # a flipped bit in a dimension: legal, slow
                        t[(0,) * t.ndim] if t.size else None
                        f.verify(name)
                        continue
                    a = t[...]
                    if t.ndim and t.shape[0] > 1:
                        t[1::2]
                    t.numpy(mmap="auto")
                    f.verify(name)
                except tsnap.Error:
                    pass
    except tsnap.Error:
        pass
    except Exception as e:  # anything but a tsnap error is a bug too
        bad.append([path, f"{type(e).__name__}: {e}"])
print(json.dumps(bad))
"""


def write_mini(path, seed):
    """A small file of the kinds the reading half covers: chunks never
    written (gzip, lzf, unfiltered), big-endian, contiguous never written."""
    rng = rng_for(seed, "fuzz-mini")
    with h5py.File(path, "w") as f:
        for comp in ("gzip", "lzf", None):
            d = f.create_dataset(f"grown_{comp}", shape=(10, 6), maxshape=(None, 6),
                                 chunks=(4, 3), dtype="<f4", compression=comp, fillvalue=2.5)
            d[1:3] = rng.standard_normal((2, 6))
            d.resize((30, 6))
            d[25:27] = rng.standard_normal((2, 6))
        d = f.create_dataset("be", shape=(40,), chunks=(8,), dtype=">i8", compression="gzip",
                             fillvalue=-3)
        d[10:20] = np.arange(10)
        f.create_dataset("contiguous", shape=(5, 5), dtype="<u2", fillvalue=9)
        f.create_dataset("c16", data=rng.standard_normal(9) + 1j, chunks=(4,),
                         compression="gzip")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    seed = FUZZ_SEED
    d = tmp_path_factory.mktemp("fuzz-src")
    paths = [d / "mini.h5", d / "enums.h5", d / "plugins.h5"]
    write_mini(paths[0], seed)
    write_enums(paths[1], seed)
    write_plugin_filters(paths[2], seed, codecs=("blosc", "bitshuffle"))
    try:
        import tables
        p = d / "pytables.h5"
        with tables.open_file(str(p), "w") as f:
            ca = f.create_carray("/", "ca", tables.Float64Atom(dflt=1.0), (50, 4),
                                 filters=tables.Filters(5, "zlib", shuffle=True),
                                 chunkshape=(8, 4))
            ca[8:20] = np.arange(48.0).reshape(12, 4)
            ea = f.create_earray("/", "ea", tables.Int32Atom(), (0,))
            ea.append(np.arange(100, dtype=np.int32))
            f.create_vlarray("/", "vl", tables.Int32Atom()).append([1, 2])
        paths.append(p)
    except ImportError:
        pass
    try:
        import netCDF4
        p = d / "small.nc"
        with netCDF4.Dataset(str(p), "w") as ds:
            ds.createDimension("t", None)
            ds.createDimension("x", 6)
            v = ds.createVariable("v", "f4", ("t", "x"), zlib=True, fill_value=-1.0)
            v[0:3] = np.ones((3, 6))
            ds.createVariable("x", "i2", ("x",))[:] = np.arange(6)
        paths.append(p)
    except ImportError:
        pass
    return paths


def mutate(data, rng):
    """A truncation (a third of the time) or 1 to 8 flipped bits."""
    if rng.random() < 1 / 3:
        return data[:int(rng.integers(0, len(data)))]
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        i = int(rng.integers(0, len(out)))
        out[i] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def run_reader(paths, timeout):
    """READ_ALL over `paths` in a fresh interpreter; None if it hangs."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(pyhelpers.HERE)] + [p for p in sys.path if p])
    # hdf5plugin's plug-ins only (netCDF4, once imported, points here at its own)
    env["HDF5_PLUGIN_PATH"] = hdf5plugin.PLUGIN_PATH
    try:
        return subprocess.run([sys.executable, "-c", READ_ALL, *map(str, paths)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None


@pytest.fixture(scope="module")
def mutants(sources, tmp_path_factory):
    rng = rng_for(FUZZ_SEED, "fuzz")
    d = tmp_path_factory.mktemp("fuzz")
    originals = [p.read_bytes() for p in sources]
    out = []
    for i in range(MUTANTS):
        k = int(rng.integers(0, len(sources)))
        p = d / f"m{i:04d}_{sources[k].name}"
        p.write_bytes(mutate(originals[k], rng))
        out.append(p)
    return out


def test_a_thousand_damaged_foreign_files_never_crash_a_reader(mutants):
    crashed, errors = [], []
    for b in range(0, len(mutants), BATCH):
        batch = mutants[b:b + BATCH]
        proc = run_reader(batch, 400)
        if proc is not None and proc.returncode == 0:
            errors += json.loads(proc.stdout.strip().splitlines()[-1])
            continue
        for path in batch:  # name the input
            one = run_reader([path], 120)
            if one is None:
                crashed.append(f"{path}: the read hangs")
            elif one.returncode != 0 and not hdf5_dies_on(path):
                crashed.append(f"{path}: {pyhelpers.describe_exit(one)}")
    assert not crashed, "\n".join(crashed[:5])
    assert not errors, errors[:5]


def hdf5_dies_on(path):
    """Whether h5dump -H dies by a signal on the file: HDF5's own crash."""
    h5dump = shutil.which("h5dump")
    if not h5dump:
        return False
    proc = subprocess.run([h5dump, "-H", str(path)], capture_output=True, timeout=120)
    if proc.returncode < 0 or proc.returncode > 128:
        print(f"HDF5 itself crashes on {path} (h5dump -H exits {proc.returncode})")
        return True
    return False


def test_ls_and_verify_on_damaged_foreign_files_exit_cleanly(mutants):
    for path in mutants[::10]:
        for args in (("ls", path), ("verify", path)):
            # names and messages of a damaged file need not be UTF-8
            proc = subprocess.run([str(cli_path()), *map(str, args)], capture_output=True,
                                  text=True, errors="replace", timeout=300,
                                  env=dict(os.environ, TSNAP_NO_PROGRESS=""))
            for mark in SANITIZER_MARKS:
                assert mark not in proc.stderr, proc.stderr
            assert proc.returncode in (0, 1, 2) or hdf5_dies_on(path), (
                args, pyhelpers.describe_exit(proc))

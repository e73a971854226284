#!/usr/bin/env python3
"""The `tsnap` command against what a user would otherwise run, in one
process, on the same files:

    PYTHONPATH=build/python .venv/bin/python bench/cli.py [--mib 1024] [--repeat 5]

Each row times one command line (a child process, as a job script runs it)
or one Python call, with the files in the page cache (each is read once
before the repeats); the order of the rows rotates from repeat to repeat
and the table gives the median.  The peers:

  verify   `cat FILE > /dev/null`: reading the bytes once, the floor of any
           check; and tsnap.verify() in Python (the same library call).
  diff     two files of the same values (one plain, one zstd): NumPy's
           np.array_equal of the two, loaded with tsnap.load (the plain one
           memory-mapped), as a script would.
  export   h5py reading the dataset and np.save writing it, then an fsync
           (tsnap export makes its files durable before renaming them).
  cp       an h5py file of gzip-1 (256, 256)-chunked float32: h5py reading
           it and writing it back uncompressed (the mappable copy cp makes),
           then an fsync, as tsnap cp's commit does.

The tensor is float32 of fresh random values (rng.standard_normal); `cp`
and its peer read a smooth field instead, which gzip compresses.
"""
import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import fsync_path  # noqa: E402
MiB = 1 << 20


def cli():
    env = os.environ.get("TSNAP_CLI")
    return Path(env) if env else REPO / "build" / "tools" / "tsnap"


def run(*args):
    subprocess.run([str(a) for a in args], check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, TSNAP_NO_PROGRESS="1"))


def cat(path):
    with open(path, "rb") as f:
        while f.readinto(BUF):
            pass


def numpy_diff(a, b):
    import tsnap
    x = tsnap.load(a, "u", mmap=True)
    y = tsnap.load(b, "u")
    assert np.array_equal(x, y)


def h5py_export(src, out):
    with h5py.File(src, "r") as f:
        np.save(out, f["u"][()])
    fsync_path(out)


def h5py_cp(src, dst):
    with h5py.File(src, "r") as f, h5py.File(dst, "w", libver=("v110", "latest")) as g:
        g.create_dataset("u", data=f["u"][()])
    fsync_path(dst)


def main():
    global BUF
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mib", type=int, default=1024, help="tensor size in MiB (default 1024)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--dir", type=Path, default=REPO / "build")
    args = p.parse_args()
    import tsnap

    BUF = bytearray(16 * MiB)
    n = args.mib * MiB // 4
    rows = int(np.sqrt(n))
    shape = (rows, n // rows)
    rng = np.random.default_rng(1)
    a = rng.standard_normal(shape, dtype=np.float32)
    y, x = np.meshgrid(np.linspace(0, 1, shape[0], dtype=np.float32),
                       np.linspace(0, 1, shape[1], dtype=np.float32), indexing="ij")
    smooth = (np.sin(2 * np.pi * x) + 0.5 * np.sin(2 * np.pi * 2 * y + 0.3)).astype(np.float32)
    del x, y

    args.dir.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix="tsnap-cli-bench-", dir=args.dir))
    try:
        plain, packed = d / "plain.h5", d / "zstd.h5"
        tsnap.save(plain, {"u": a}, durable=False)
        tsnap.save(packed, {"u": a}, compression="zstd", durable=False)
        gz = d / "gzip.h5"
        with h5py.File(gz, "w") as f:
            f.create_dataset("u", data=smooth, chunks=(256, 256), compression="gzip",
                             compression_opts=1)
        for path in (plain, packed, gz):
            cat(path)
        out = d / "out"
        out.mkdir()

        def fresh(*paths):
            for q in paths:
                if q.exists():
                    q.unlink()

        cases = {
            "verify": [
                ("tsnap verify FILE", lambda: run(cli(), "verify", "-j", "1", plain)),
                ("tsnap.verify(FILE)", lambda: tsnap.verify(plain)),
                ("cat FILE > /dev/null", lambda: cat(plain)),
            ],
            "verify zstd": [
                ("tsnap verify ZSTD", lambda: run(cli(), "verify", "-j", "1", packed)),
                ("tsnap.verify(ZSTD)", lambda: tsnap.verify(packed)),
            ],
            "diff": [
                ("tsnap diff PLAIN ZSTD", lambda: run(cli(), "diff", plain, packed)),
                ("np.array_equal(load(PLAIN, mmap), load(ZSTD))",
                 lambda: numpy_diff(plain, packed)),
            ],
            "export": [
                ("tsnap export PLAIN u -o u.npy",
                 lambda: (fresh(out / "u.npy"), run(cli(), "export", plain, "u", "-o", out / "u.npy"))),
                ("np.save(u.npy, h5py f['u'][()]) + fsync",
                 lambda: (fresh(out / "h.npy"), h5py_export(plain, out / "h.npy"))),
            ],
            "cp": [
                ("tsnap cp GZIP out.h5",
                 lambda: (fresh(out / "t.h5"), run(cli(), "cp", gz, out / "t.h5"))),
                ("h5py read GZIP, write plain + fsync",
                 lambda: (fresh(out / "h.h5"), h5py_cp(gz, out / "h.h5"))),
            ],
        }
        print(f"tsnap command benchmark, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}, "
              f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"Linux {platform.release()}")
        print(f"tsnap {tsnap.__version__}, numpy {np.__version__}, h5py {h5py.__version__} "
              f"(HDF5 {h5py.version.hdf5_version}); {a.nbytes / MiB:.0f} MiB float32 {shape}, "
              f"median of {args.repeat}, files in the page cache")
        for case, entries in cases.items():
            times = {name: [] for name, _ in entries}
            for r in range(args.repeat):
                order = entries[r % len(entries):] + entries[:r % len(entries)]
                for name, fn in order:
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
            med = {name: statistics.median(ts) for name, ts in times.items()}
            first = entries[0][0]
            print(f"\n{case}")
            for name, _ in entries:
                ratio = med[name] / med[first]
                print(f"  {name:<48} {med[name]:8.3f} s  {a.nbytes / med[name] / 1e9:6.2f} GB/s"
                      f"  {'' if name == first else f'{ratio:5.2f}x the time of tsnap'}")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

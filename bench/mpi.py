#!/usr/bin/env python3
"""tsnap's distributed snapshots against parallel HDF5 and per-rank np.save,
at 1, 2 and 4 ranks, on one global float32 array split in row blocks.

    .venv/bin/python bench/mpi.py                  # 1 GiB global, 1, 2 and 4 ranks, 3 repeats
    .venv/bin/python bench/mpi.py --quick          # a small array on 2 ranks: a smoke test
    .venv/bin/python bench/mpi.py --ranks 4 --gib 0.25 --repeat 5 --json out.json
    .venv/bin/python bench/mpi.py --threads 1      # tsnap's pool at 1 thread in each rank

This script is the driver: it starts every measurement as an MPI job of its
own (`mpirun --oversubscribe --bind-to none -n P`), because parallel HDF5
(Debian's libhdf5-openmpi) and tsnap's serial HDF5 cannot share a process.
Within each repeat, for each rank count, it runs in turn, the order rotating
from repeat to repeat:

  python  this script as an MPI worker (mpi4py), every rank holding its row
          block: tsnap.save(path, {"u": tsnap.Shard(block, (first, 0),
          shape)}, comm=comm) into the page cache (durable=False) and durable
          (fsync of every part, the snapshot file and their folders); np.save
          of each rank's block into a file of its own, and the same + fsync;
          os.write of each block's bytes, and + fsync (the machine's limits).
          Each save is followed by the restart read of every rank's block:
          tsnap.open(path)["u"][first:first + rows] (reads only the part that
          holds it), np.load, and readinto a new array for the raw files.
  phdf5   bench/mpi_phdf5.c (tsnap_mpi_phdf5, built next to tsnap): the same
          global array written collectively (H5FD_MPIO, H5FD_MPIO_COLLECTIVE)
          into one chunked dataset (chunks of whole rows, about 4 MiB, as
          tsnap's) and into one contiguous dataset, each rank's block then
          read back collectively; once into the page cache, once with an
          fsync of the file after the close.

Every system writes the same global array: element (i, j) is
splitmix64(seed + i * cols + j) >> 40, times 2^-24, a fresh seed each repeat.
A time is rank 0's, from a barrier before the call to a barrier after it on
every rank.  Measured the plain way: the blocks are written from arrays
already filled (as a simulation's are), reads go into new arrays (as a
restart's do), nothing is prefaulted and no cache is dropped; an os.sync()
(untimed) before each save keeps earlier write-back out of it; each output is
deleted before the next save.  Every read is compared with what was written
(np.array_equal, untimed), so that a fast wrong answer cannot win.

"tsnap / peer" is tsnap's throughput over the peer's (the peer's median time
over tsnap's): above 1, tsnap is faster.  GB/s are global bytes per second,
1 GB = 1e9 bytes.  Exit status: 0 when every row ran and round-tripped, 1
otherwise, 2 when MPI or a peer cannot start (the reason printed).
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as single  # noqa: E402 - bench/run.py: the single-process systems, reused

REPO = Path(__file__).resolve().parent.parent
GOLDEN = 0x9E3779B97F4A7C15
MASK = (1 << 64) - 1
# (system, what the row measures), in the table's order
PY_SYSTEMS = ("tsnap", "tsnap durable", "np.save", "np.save + fsync", "raw write",
              "raw write + fsync")
PHDF5_SYSTEMS = ("phdf5 chunked", "phdf5 contiguous", "phdf5 chunked + fsync",
                 "phdf5 contiguous + fsync")


def die(msg, status=2):
    print(f"bench/mpi.py: {msg}", file=sys.stderr)
    sys.exit(status)


# ---------------------------------------------------------------------------
# The data, the same in every system (bench/mpi_phdf5.c computes it alike)

def row_block(rows, rank, size):
    """Rank `rank`'s rows: (first, count); the first rows % size ranks get one more."""
    base, extra = divmod(rows, size)
    return rank * base + min(rank, extra), base + (rank < extra)


def fill(first, count, cols, seed):
    out = np.empty((count, cols), np.float32)
    per = max(1, (1 << 22) // cols)  # rows per slab: temporaries of ~32 MiB
    c1, c2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
    for r in range(0, count, per):
        stop = min(count, r + per)
        z = np.arange((first + r) * cols, (first + stop) * cols, dtype=np.uint64)
        z += np.uint64((seed + GOLDEN) & MASK)
        z ^= z >> np.uint64(30)
        z *= c1
        z ^= z >> np.uint64(27)
        z *= c2
        z ^= z >> np.uint64(31)
        out[r:stop] = ((z >> np.uint64(40)).astype(np.float32)
                       * np.float32(2.0 ** -24)).reshape(stop - r, cols)
    return out


# ---------------------------------------------------------------------------
# The worker: one MPI job, every Python system once

def worker(args):
    from mpi4py import MPI

    import tsnap

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    if args.threads is not None:
        tsnap.set_threads(args.threads)
    first, count = row_block(args.rows, rank, size)
    shape = (args.rows, args.cols)
    block = fill(first, count, args.cols, args.seed)
    snaps = {False: os.path.join(args.dir, "tsnap.h5"),
             True: os.path.join(args.dir, "tsnap-durable.h5")}
    own = os.path.join(args.dir, f"rank-{rank:06d}")

    def tsnap_save(durable):
        tsnap.save(snaps[durable], {"u": tsnap.Shard(block, (first, 0), shape)}, comm=comm,
                   durable=durable)

    def tsnap_read(durable):
        with tsnap.open(snaps[durable]) as f:
            return f["u"][first:first + count]

    def clean(system):
        if system.startswith("tsnap"):
            snap = snaps[system == "tsnap durable"]
            if rank == 0:
                for p in (snap, snap + ".parts"):
                    if os.path.isdir(p):
                        shutil.rmtree(p)
                    elif os.path.exists(p):
                        os.unlink(p)
        else:
            for p in (own + ".npy", own + ".raw"):
                if os.path.exists(p):
                    os.unlink(p)

    calls = {
        "tsnap": (lambda: tsnap_save(False), lambda: tsnap_read(False)),
        "tsnap durable": (lambda: tsnap_save(True), lambda: tsnap_read(True)),
        "np.save": (lambda: single.numpy_save(own + ".npy", block),
                    lambda: single.numpy_load(own + ".npy")),
        "np.save + fsync": (lambda: single.numpy_save(own + ".npy", block, durable=True),
                            lambda: single.numpy_load(own + ".npy")),
        # a new array for each read, as np.load and tsnap make
        "raw write": (lambda: single.raw_write(own + ".raw", block),
                      lambda: single.raw_read(own + ".raw", np.empty_like(block))),
        "raw write + fsync": (lambda: single.raw_write(own + ".raw", block, durable=True),
                              lambda: single.raw_read(own + ".raw", np.empty_like(block))),
    }

    def timed(fn):
        comm.Barrier()
        t0 = time.perf_counter()
        err, out = None, None
        try:
            out = fn()
        except Exception as e:  # noqa: BLE001 - reported as the row's status
            err = f"rank {rank}: {type(e).__name__}: {e}"
        errs = [e for e in comm.allgather(err) if e]
        return time.perf_counter() - t0, out, errs

    for system in args.systems.split(","):
        save, read = calls[system]
        clean(system)
        comm.Barrier()
        if rank == 0:
            os.sync()
        t_save, _, errs = timed(save)
        t_read, back, read_errs = timed(read) if not errs else (None, None, [])
        errs += read_errs
        same = comm.allreduce(int(back is not None and np.array_equal(back, block)), MPI.MIN)
        if args.keep and system == "tsnap" and rank == 0 and not errs:
            # the driver's check: the global array read whole, by tsnap here and by h5py there
            whole = tsnap.load(snaps[False], "u")
            same = int(same and np.array_equal(whole, fill(0, args.rows, args.cols, args.seed)))
        if rank == 0:
            print(json.dumps({"system": system, "ranks": size, "save_s": t_save,
                              "read_s": t_read, "ok": not errs and bool(same),
                              "error": "; ".join(errs) or (None if same else
                                                           "the block read back differs")}),
                  flush=True)
        del back
        if not (args.keep and system == "tsnap"):
            comm.Barrier()
            clean(system)
    comm.Barrier()


# ---------------------------------------------------------------------------
# The driver

def mpirun_command(ranks):
    cmd = [shutil.which("mpirun") or "mpirun", "--oversubscribe", "--bind-to", "none",
           "-n", str(ranks)]
    return cmd


def mpi_env(pythonpath):
    env = dict(os.environ)
    if os.geteuid() == 0:  # Open MPI refuses root without both
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH")) if p)
    return env


def run_job(cmd, env, timeout):
    """Runs one MPI job; returns its JSON lines, or raises RuntimeError saying why not."""
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{' '.join(cmd)}: no answer in {timeout} s") from None
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 and not lines:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}: "
                           f"{proc.stderr.strip()[-2000:]}")
    for line in lines:
        if not line["ok"] and not line.get("error"):
            line["error"] = proc.stderr.strip()[-2000:] or f"exit {proc.returncode}"
    return lines


def find_tsnap():
    """(the directory that holds the tsnap package, the build directory it came from)."""
    build = REPO / "build" / "python"
    if not os.environ.get("PYTHONPATH") and (build / "tsnap").is_dir():
        sys.path.insert(0, str(build))
    try:
        import tsnap
    except ImportError as e:
        die(f"cannot import tsnap ({e}): build it, or point PYTHONPATH at its directory")
    if not hasattr(tsnap, "Shard"):
        die("this tsnap has no distributed snapshots (tsnap.Shard): built without MPI?")
    pkg = Path(tsnap.__file__).resolve().parent.parent
    return pkg, pkg.parent


def check_kept(directory, rows, cols, seed):
    """--quick: what the jobs left, read by h5py: tsnap's snapshot (its virtual
    dataset) and parallel HDF5's file hold the same global array."""
    import h5py
    want, bad = fill(0, rows, cols, seed), []
    for name in ("tsnap.h5", "phdf5-chunked.h5", "phdf5-contiguous.h5"):
        try:
            with h5py.File(os.path.join(directory, name), "r") as f:
                if not (f["u"].dtype == np.float32 and np.array_equal(f["u"][()], want)):
                    bad.append(f"{name}: h5py reads another array")
        except OSError as e:
            bad.append(f"{name}: h5py cannot read it: {e}")
    return bad


def fmt_s(s):
    return "-" if s is None else f"{s:.4f} s" if s < 10 else f"{s:.2f} s"


def report(results, nbytes, ranks_list):
    """The table: a line per rank count and system, save and read medians and ratios."""
    lines = []
    for ranks in ranks_list:
        rows = results[ranks]
        med = {s: {op: statistics.median(r[op]) if r[op] else None for op in ("save", "read")}
               for s, r in rows.items()}

        def vs(system, op):
            if system.startswith("tsnap"):
                return ""
            durable = "fsync" in system
            ref = med["tsnap durable" if durable and op == "save" else "tsnap"][op]
            peer = med[system][op]
            return f"{peer / ref:.2f}" if ref and peer else "-"

        for system in PY_SYSTEMS + PHDF5_SYSTEMS:
            r = rows[system]
            cells = [str(ranks), system]
            for op in ("save", "read"):
                m = med[system][op]
                cells += [fmt_s(m), f"{nbytes / m / 1e9:.2f}" if m else "-", vs(system, op)]
            cells += [str(len(r["save"])), "ok" if not r["errors"] else r["errors"][0][:60]]
            lines.append(cells)
    headers = ["ranks", "system", "save", "GB/s", "tsnap/peer", "read", "GB/s", "tsnap/peer",
               "n", "check"]
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(headers)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [fmt(headers), fmt(["-" * w for w in widths])] + [fmt(c) for c in lines]
    return "\n".join(out)


def targets(results, ranks_list):
    """The targets of docs/PERFORMANCE.md, per rank count: (name, ratio)."""
    out = []
    for ranks in ranks_list:
        med = {s: {op: statistics.median(v) if v else None for op, v in r.items()
                   if op in ("save", "read")} for s, r in results[ranks].items()}

        def ratio(a, b, op):
            x, y = med[a][op], med[b][op]
            return y / x if x and y else None
        out += [(ranks, "save ≥ 2× parallel HDF5 chunked", ratio("tsnap", "phdf5 chunked", "save")),
                (ranks, "durable save ≥ 2× parallel HDF5 chunked + fsync",
                 ratio("tsnap durable", "phdf5 chunked + fsync", "save")),
                (ranks, "save ≥ 0.9× per-rank np.save", ratio("tsnap", "np.save", "save")),
                (ranks, "durable save ≥ 0.9× np.save + fsync",
                 ratio("tsnap durable", "np.save + fsync", "save")),
                (ranks, "restart read ≥ 2× parallel HDF5 chunked",
                 ratio("tsnap", "phdf5 chunked", "read"))]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", default="1,2,4", help="rank counts (default 1,2,4)")
    ap.add_argument("--gib", type=float, default=1.0, help="global array size (default 1 GiB)")
    ap.add_argument("--cols", type=int, default=16384, help="columns (default 16384)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats (default 3)")
    ap.add_argument("--quick", action="store_true",
                    help="2 ranks, a 301 x 257 array, one repeat, the files checked with h5py")
    ap.add_argument("--dir", help="where the files go (default: a fresh folder under build/)")
    ap.add_argument("--json", help="also write every time and median here")
    ap.add_argument("--phdf5", help="the tsnap_mpi_phdf5 program (default: next to tsnap)")
    ap.add_argument("--timeout", type=float, default=600, help="per MPI job (default 600 s)")
    ap.add_argument("--threads", type=int,
                    help="tsnap's thread pool in each rank (default: tsnap's, the cores)")
    # the worker's own options
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--systems", help=argparse.SUPPRESS)
    ap.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    if args.quick:
        args.ranks, args.repeat, rows, args.cols = "2", 1, 301, 257
    else:
        rows = int(args.gib * (1 << 30)) // (4 * args.cols)
    ranks_list = [int(r) for r in args.ranks.split(",")]
    nbytes = rows * args.cols * 4
    pkg, build = find_tsnap()
    phdf5 = Path(args.phdf5) if args.phdf5 else build / "bench" / "tsnap_mpi_phdf5"
    if not phdf5.exists():
        phdf5 = REPO / "build" / "bench" / "tsnap_mpi_phdf5"
    if not phdf5.exists():
        die(f"{phdf5} is not built (it needs MPI and pkg-config hdf5-openmpi)")
    if not shutil.which("mpirun"):
        die("mpirun not found (Debian: openmpi-bin)")
    env = mpi_env(str(pkg))
    base = Path(args.dir) if args.dir else (REPO / "build" if (REPO / "build").is_dir()
                                            else Path(tempfile.gettempdir()))
    workdir = Path(tempfile.mkdtemp(prefix="tsnap-mpi-bench-", dir=base))
    try:
        probe = subprocess.run(mpirun_command(1) + ["true"], env=env, capture_output=True,
                               text=True, timeout=60)
    except subprocess.TimeoutExpired:
        probe = None
    if probe is None or probe.returncode != 0:
        shutil.rmtree(workdir)
        die("mpirun cannot start a job here: " + (probe.stderr.strip() if probe else "timeout"))

    import tsnap
    print(f"bench/mpi.py: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{platform.node()}, {os.cpu_count()} cores; numpy {np.__version__}, "
          f"tsnap {getattr(tsnap, '__version__', '?')} from {pkg}; {phdf5.name}")
    print(f"global float32 ({rows}, {args.cols}) = {nbytes / 2**20:.1f} MiB in row blocks; "
          f"ranks {ranks_list}; {args.repeat} repeat(s); files in {workdir}", flush=True)

    results = {r: {s: {"save": [], "read": [], "errors": []} for s in PY_SYSTEMS + PHDF5_SYSTEMS}
               for r in ranks_list}
    jobs = [("python", None), ("phdf5", False), ("phdf5", True)]
    failures = []
    try:
        for rep in range(args.repeat):
            for ranks in ranks_list:
                seed = 1 + rep * 7919 + ranks
                k = (rep + ranks) % len(jobs)  # the order rotates
                for kind, durable in jobs[k:] + jobs[:k]:
                    if kind == "python":
                        order = PY_SYSTEMS[rep % 6:] + PY_SYSTEMS[:rep % 6]
                        cmd = mpirun_command(ranks) + [
                            sys.executable, str(Path(__file__).resolve()), "--worker",
                            "--rows", str(rows), "--cols", str(args.cols), "--seed", str(seed),
                            "--dir", str(workdir), "--systems", ",".join(order)]
                        cmd += ["--keep"] if args.quick else []
                        cmd += ["--threads", str(args.threads)] if args.threads is not None else []
                    else:
                        layouts = ["chunked", "contiguous"][::(-1) ** rep]
                        cmd = mpirun_command(ranks) + [str(phdf5), str(workdir), str(rows),
                                                       str(args.cols), str(seed), *layouts]
                        cmd += (["--fsync"] if durable else []) + (["--keep"] if args.quick
                                                                   else [])
                    try:
                        lines = run_job(cmd, env, args.timeout)
                    except RuntimeError as e:
                        failures.append(str(e))
                        continue
                    for line in lines:
                        system = line.get("system") or (
                            f"phdf5 {line['layout']}" + (" + fsync" if line["durable"] else ""))
                        row = results[ranks][system]
                        if line["ok"]:
                            row["save"].append(line["save_s"])
                            row["read"].append(line["read_s"])
                        else:
                            row["errors"].append(line.get("error") or "failed")
                            failures.append(f"{ranks} ranks, {system}: {line.get('error')}")
            print(f"  repeat {rep + 1} of {args.repeat} done", flush=True)
        if args.quick:
            failures += check_kept(workdir, rows, args.cols, 1 + ranks_list[0])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    for ranks in ranks_list:
        for system, row in results[ranks].items():
            if not row["save"] and not row["errors"]:
                row["errors"].append("did not run")
                failures.append(f"{ranks} ranks, {system}: did not run")
    print()
    print(report(results, nbytes, ranks_list))
    print("\ntargets (tsnap / peer, medians):")
    tg = targets(results, ranks_list)
    for ranks, name, value in tg:
        print(f"  {ranks} rank(s): {name}: " + ("-" if value is None else f"{value:.2f}×"))
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "cols": args.cols, "nbytes": nbytes, "ranks": ranks_list,
                       "repeat": args.repeat, "results": {str(k): v for k, v in results.items()},
                       "targets": [{"ranks": r, "target": n, "ratio": v} for r, n, v in tg],
                       "failures": failures, "all_checks_passed": not failures}, f, indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

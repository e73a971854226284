"""bench/mpi.py --quick runs on 2 ranks: every row (tsnap, per-rank np.save,
raw writes, parallel HDF5 chunked and contiguous, each into the page cache
and durable) ran and gave back what it saved, and h5py reads the same
global array from tsnap's distributed snapshot and from parallel HDF5's
file.  No timing is asserted: timings live in the benchmark."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tsnap

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "mpi.py"
# the build that this tsnap package comes from holds the parallel HDF5 peer
PHDF5 = Path(tsnap.__file__).resolve().parents[2] / "bench" / "tsnap_mpi_phdf5"
SYSTEMS = {"tsnap", "tsnap durable", "np.save", "np.save + fsync", "raw write",
           "raw write + fsync", "phdf5 chunked", "phdf5 contiguous", "phdf5 chunked + fsync",
           "phdf5 contiguous + fsync"}


def _why_not():
    if not hasattr(tsnap, "Shard"):
        return "this tsnap has no distributed snapshots"
    if not PHDF5.exists():
        return f"{PHDF5} is not built (it needs MPI and pkg-config hdf5-openmpi)"
    if not shutil.which("mpirun"):
        return "mpirun not found (Debian: openmpi-bin)"
    try:
        import mpi4py  # noqa: F401
    except ImportError as e:
        return f"mpi4py is not installed: {e}"
    return None


@pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))
def test_bench_mpi_quick(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=str(Path(tsnap.__file__).resolve().parents[1]))
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out), "--dir", str(tmp_path),
         "--phdf5", str(PHDF5)], env=env, capture_output=True, text=True, timeout=300)
    log = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    if proc.returncode == 2 and "mpirun cannot start" in proc.stderr:
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 0, log

    report = json.loads(out.read_text())
    assert report["all_checks_passed"], report["failures"]
    assert report["ranks"] == [2] and (report["rows"], report["cols"]) == (301, 257)
    rows = report["results"]["2"]
    assert set(rows) == SYSTEMS
    for system, row in rows.items():
        # every row ran once and round-tripped (a failed check is an error, not a time)
        assert len(row["save"]) == len(row["read"]) == 1 and not row["errors"], (system, row)
    assert {t["target"].split(" ≥")[0] for t in report["targets"]} >= {
        "save", "durable save", "restart read"}
    assert all(t["ratio"] is not None for t in report["targets"]), report["targets"]
    # what it wrote, it deleted
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]

"""bench/run.py --quick runs, covers every peer family in every workload, and
every system gives back what it saved.  No timing is asserted: timings live in
the benchmark, never in tests."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "run.py"
WORKLOADS = ("big", "smooth", "small", "mapopen", "store")
# the store's section measures tsnap against memcpy alone
SYSTEMS = {"store": {"tsnap", "memcpy"}}
FAMILIES = ("tsnap", "numpy", "h5py", "safetensors", "zarr", "memcpy", "raw")

_missing = [m for m in ("h5py", "hdf5plugin", "safetensors", "zarr")
            if importlib.util.find_spec(m) is None]


@pytest.mark.skipif(bool(_missing), reason="the benchmark's peers are not installed: "
                    + ", ".join(_missing) + " (pip install them to run this test)")
def test_bench_quick(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out), "--dir", str(tmp_path)],
        env=dict(os.environ), capture_output=True, text=True, timeout=120)
    log = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, log

    report = json.loads(out.read_text())
    assert report["all_checks_passed"], report["failures"]
    assert set(report["workloads"]) == set(WORKLOADS)
    for workload, sections in report["workloads"].items():
        assert sections, workload
        for sec in sections:
            rows = sec["rows"]
            for row in rows:
                where = f"{workload} / {sec['title']} / {row['id']}"
                # with every peer installed, every row runs and round-trips: a
                # tsnap codec or peer that is "n/a" here is a regression
                assert row["status"] == "ok", f"{where}: {row['status']}"
                assert row["check"] is True, f"{where}: loaded != saved"
                assert row["n"] >= 1 and row["median_s"] is not None, where
            ran = {row["system"] for row in rows if row["status"] == "ok"}
            want = SYSTEMS.get(workload, set(FAMILIES))
            assert want <= ran, f"{workload} / {sec['title']}: no row ran for {want - ran}"
    # what it wrote, it deleted
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]

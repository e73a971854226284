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
WORKLOADS = ("big", "smooth", "noisy", "small", "mapopen", "store")
# the store's section measures tsnap against memcpy alone; the noisy field
# against h5py's compressed peers
SYSTEMS = {"store": {"tsnap", "memcpy"}, "noisy": {"tsnap", "h5py", "memcpy", "raw"}}
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


PLAIN_SYSTEMS = {
    "overwrite": {"tsnap", "numpy", "h5py", "safetensors", "zarr"},
    "weights": {"tsnap", "numpy", "h5py", "safetensors", "zarr"},
    "mapopen": set(FAMILIES),
    "firstcall": {"tsnap", "numpy", "h5py", "safetensors"},
    "small": set(FAMILIES),
    "noisy": {"tsnap", "h5py", "memcpy", "raw"},
}


@pytest.mark.skipif(bool(_missing), reason="the benchmark's peers are not installed: "
                    + ", ".join(_missing) + " (pip install them to run this test)")
def test_bench_plain_quick(tmp_path):
    """--plain --quick: every plain workload runs without the malloc re-exec,
    every peer in it runs and round-trips, same-name and new-name saves are
    both there, and what it wrote, it deleted."""
    out = tmp_path / "plain.json"
    env = {k: v for k, v in os.environ.items()
           if k not in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")}
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--plain", "--quick", "--json", str(out),
         "--dir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=240)
    log = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, log
    report = json.loads(out.read_text())
    assert report["all_checks_passed"], report["failures"]
    assert report["environment"]["reexecuted_for_malloc"] is False
    assert report["args"]["plain"] is True
    assert set(PLAIN_SYSTEMS) <= set(report["workloads"])
    for workload, sections in report["workloads"].items():
        assert sections, workload
        ran = set()
        for sec in sections:
            for row in sec["rows"]:
                where = f"{workload} / {sec['title']} / {row['id']}"
                assert row["status"] == "ok", f"{where}: {row['status']}"
                assert row["check"] is True, f"{where}: loaded != saved"
                assert row["n"] >= 1 and row["median_s"] is not None, where
                ran.add(row["system"])
            for key in sec["key_ratios"]:
                assert key["tsnap_over_peer"] is not None, f"{workload}: {key['what']}"
        want = PLAIN_SYSTEMS.get(workload, set())
        assert want <= ran, f"{workload}: no row ran for {want - ran}"
    overwrite = {row["id"] for sec in report["workloads"]["overwrite"] for row in sec["rows"]}
    for op in ("save", "save durable"):
        for variant in ("same name", "new names"):
            assert any(i.startswith(f"{op}|tsnap|{variant}|") for i in overwrite), (op, variant)
            assert any(i.startswith(f"{op}|numpy|{variant}|") for i in overwrite), (op, variant)
    first = {row["call"] for sec in report["workloads"]["firstcall"] for row in sec["rows"]
             if row["system"] == "tsnap"}
    assert {"save: first - next", "load: first - next", "open: first - next",
            "mmap open: first - next"} <= first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.json"]

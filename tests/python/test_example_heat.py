"""The main job: examples/heat.c checkpoints into a store, is killed part
way, restarts from its latest checkpoint and ends with exactly the field
of a run that was never killed; examples/analyse_heat.py then loads the
series memory-mapped and writes the plot.  h5py reads the fields."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAT = ROOT / "build" / "examples" / "heat"
ARGS = ["--size", "384", "--steps", "1500", "--every", "100"]

pytestmark = pytest.mark.skipif(not HEAT.exists(), reason=f"{HEAT} is not built")


def run(directory, *extra):
    return subprocess.run([str(HEAT), str(directory), *ARGS, *extra], capture_output=True,
                          text=True, timeout=300)


def field(directory, step):
    with h5py.File(Path(directory) / f"step-{step:012d}.h5", "r") as f:
        assert f.attrs["step"] == step
        return f["u"][()], float(f.attrs["time"])


def test_a_killed_and_restarted_run_ends_where_an_uninterrupted_one_does(tmp_path, seed):
    rng = np.random.default_rng([seed, 91])
    whole = run(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    killed_dir = tmp_path / "killed"
    interrupted, outputs = 0, []
    for attempt in range(3):  # kill it part way, a few times (a whole run takes ~0.5 s)
        child = subprocess.Popen([str(HEAT), str(killed_dir), *ARGS], stdout=subprocess.PIPE,
                                 text=True)
        time.sleep(float(rng.uniform(0.05, 0.3)))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        outputs.append(out)
        interrupted += child.returncode == -signal.SIGKILL and "done" not in out
    final = run(killed_dir)
    assert final.returncode == 0, final.stderr
    outputs.append(final.stdout)
    assert interrupted >= 1, "no run was killed part way"
    assert any("resuming from step" in out for out in outputs[1:]), outputs
    assert final.stdout.splitlines()[-1] == whole.stdout.splitlines()[-1]  # "total heat ..."
    a, ta = field(tmp_path / "whole", 1500)
    b, tb = field(killed_dir, 1500)
    assert ta == tb and a.dtype == np.float64 and a.shape == (384, 384)
    assert np.array_equal(a.view(np.uint64), b.view(np.uint64)), "bit for bit"
    # every checkpoint of the killed run is the uninterrupted run's
    names = sorted(n for n in os.listdir(killed_dir) if n.endswith(".h5"))
    assert names == sorted(n for n in os.listdir(tmp_path / "whole") if n.endswith(".h5"))
    for n in names:
        step = int(n[5:17])
        assert np.array_equal(field(killed_dir, step)[0], field(tmp_path / "whole", step)[0]), n
    assert not [n for n in os.listdir(killed_dir) if n.endswith(".tsnap-tmp")]


def test_the_analysis_loads_the_series_and_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    assert run(tmp_path / "run").returncode == 0
    out = tmp_path / "heat.png"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "analyse_heat.py"),
                           str(tmp_path / "run"), str(out)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "16 checkpoints" in proc.stdout, proc.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    # the totals it prints are the fields' own sums, read independently
    totals = [float(line.split("total heat")[1].split()[0])
              for line in proc.stdout.splitlines() if "total heat" in line]
    want = [float(field(tmp_path / "run", s)[0].sum()) for s in range(0, 1501, 100)]
    np.testing.assert_allclose(totals, want, rtol=1e-12)

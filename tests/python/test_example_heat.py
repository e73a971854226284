"""The main job: examples/heat.c checkpoints into a store, is killed part
way, restarts from its latest checkpoint and ends with exactly the field
of a run that was never killed; examples/analyse_heat.py then loads the
series memory-mapped and writes the plot.  h5py reads the fields."""
import numpy as np
import pytest

from heathelpers import analyse, assert_same_checkpoints, example, field, kill_and_restart, run

HEAT = example("heat")
ARGS = ["--size", "384", "--steps", "1500", "--every", "100"]

pytestmark = pytest.mark.skipif(not HEAT.exists(), reason=f"{HEAT} is not built")


def test_a_killed_and_restarted_run_ends_where_an_uninterrupted_one_does(tmp_path, seed):
    whole = run(HEAT, tmp_path / "whole", *ARGS)
    assert whole.returncode == 0, whole.stderr
    final = kill_and_restart(HEAT, tmp_path / "killed", ARGS, np.random.default_rng([seed, 91]))
    assert final.stdout.splitlines()[-1] == whole.stdout.splitlines()[-1]  # "total heat ..."
    a, ta = field(tmp_path / "whole", 1500)
    assert a.shape == (384, 384) and ta == 1500 * 0.24
    # every checkpoint of the killed run is the uninterrupted run's, bit for bit
    assert_same_checkpoints(tmp_path / "killed", tmp_path / "whole")


def test_the_probe_says_it_can_run_here():
    proc = run(HEAT, "--probe")
    assert proc.returncode == 0 and "can run here" in proc.stdout, proc


def test_the_analysis_loads_the_series_and_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    assert run(HEAT, tmp_path / "run", *ARGS).returncode == 0
    out = tmp_path / "heat.png"
    printed = analyse(tmp_path / "run", out, range(0, 1501, 100))
    assert "(16 mapped, 0 copied)" in printed, printed
    assert out.stat().st_size > 10_000

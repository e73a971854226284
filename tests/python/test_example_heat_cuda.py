"""examples/heat.c built as heat_cuda: the field in GPU memory, stepped by
a CUDA kernel, checkpointed from the device and read back into it on a
restart.  With the same options it writes exactly the checkpoints of the
CPU build, `heat`, which is the reference here (h5py reads both).  With
no CUDA device it exits 77 saying why."""
import numpy as np
import pytest

from heathelpers import (NO_DEVICE, assert_same_checkpoints, cuda_devices, example,
                         kill_and_restart, last_line, run, steps)

HEAT, HEAT_CUDA = example("heat"), example("heat_cuda")
# 61 checkpoints: enough that a kill lands part way even on a fast GPU
ARGS = ["--size", "384", "--steps", "6000", "--every", "100"]

pytestmark = pytest.mark.skipif(not HEAT_CUDA.exists(),
                                reason=f"{HEAT_CUDA} is not built (no usable CUDA toolkit)")


@pytest.fixture(scope="module")
def gpu():
    """Skips unless heat_cuda finds a device it can run on."""
    if not cuda_devices():
        pytest.skip("no CUDA device: the NVIDIA driver reports none, or there is no driver")
    probe = run(HEAT_CUDA, "--probe")
    if probe.returncode == NO_DEVICE:
        pytest.skip(f"heat_cuda cannot run here: {probe.stderr.strip()}")
    assert probe.returncode == 0 and "CUDA device 0" in probe.stdout, probe


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """The CPU build's uninterrupted run: (its directory, its process)."""
    assert HEAT.exists(), f"{HEAT} is not built"
    directory = tmp_path_factory.mktemp("heat-cpu") / "run"
    proc = run(HEAT, directory, *ARGS)
    assert proc.returncode == 0, proc.stderr
    return directory, proc


def test_with_no_device_it_exits_77_saying_why_and_writes_nothing(tmp_path):
    if cuda_devices():
        pytest.skip("this machine has a CUDA device")
    for args in ([tmp_path / "run", *ARGS], ["--probe"]):
        proc = run(HEAT_CUDA, *args)
        assert proc.returncode == NO_DEVICE, proc
        assert proc.stderr.startswith("heat_cuda: no CUDA device to run on"), proc.stderr
        assert proc.stdout == ""
    assert not (tmp_path / "run").exists()


def test_its_checkpoints_are_the_cpu_runs_bit_for_bit(gpu, cpu_run, tmp_path):
    proc = run(HEAT_CUDA, tmp_path / "run", *ARGS)
    assert proc.returncode == 0, proc.stderr
    assert "the memory of CUDA device 0" in proc.stdout, proc.stdout
    assert len(steps(tmp_path / "run")) == 61
    assert_same_checkpoints(tmp_path / "run", cpu_run[0])
    assert last_line(proc) == last_line(cpu_run[1])  # "step 6000 done, total heat ..."


def test_a_killed_run_resumes_from_its_latest_checkpoint(gpu, cpu_run, tmp_path, seed):
    final = kill_and_restart(HEAT_CUDA, tmp_path / "killed", ARGS,
                             np.random.default_rng([seed, 92]))
    assert last_line(final) == last_line(cpu_run[1])
    assert_same_checkpoints(tmp_path / "killed", cpu_run[0])

"""Running the heat-diffusion examples (examples/heat.c, built as `heat`
and, with CUDA, `heat_cuda`) from tests: where they are, a run, a run
killed part way and restarted, and their checkpoints read with h5py."""
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
NO_DEVICE = 77  # the exit status of heat_cuda with no CUDA device (examples/heat.c)


def example(name):
    """A program of examples/: in env TSNAP_EXAMPLES (a build's examples
    directory), else in build/examples."""
    env = os.environ.get("TSNAP_EXAMPLES")
    return (Path(env) if env else ROOT / "build" / "examples") / name


def run(program, *args):
    return subprocess.run([str(program), *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def cuda_devices():
    """How many CUDA devices the NVIDIA driver reports, asked directly
    (ctypes on libcuda.so.1), not through the program under test."""
    try:
        cu = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    n = ctypes.c_int(0)
    if cu.cuInit(0) != 0 or cu.cuDeviceGetCount(ctypes.byref(n)) != 0:
        return 0
    return n.value


def steps(directory):
    """The steps committed in a store directory, in order."""
    if not Path(directory).is_dir():
        return []
    return sorted(int(n[5:17]) for n in os.listdir(directory)
                  if n.startswith("step-") and n.endswith(".h5"))


def field(directory, step):
    """Checkpoint `step`: (u, its root attribute time)."""
    with h5py.File(Path(directory) / f"step-{step:012d}.h5", "r") as f:
        assert f.attrs["step"] == step
        return f["u"][()], float(f.attrs["time"])


def assert_same_checkpoints(a, b):
    """Both store directories hold the same steps with the same u and
    time, bit for bit."""
    assert steps(a) and steps(a) == steps(b), (steps(a), steps(b))
    for step in steps(a):
        (ua, ta), (ub, tb) = field(a, step), field(b, step)
        assert ua.dtype == np.float64 and ua.shape == ub.shape, step
        assert ta == tb and np.array_equal(ua.view(np.uint64), ub.view(np.uint64)), step


def analyse(directory, out, steps):
    """Runs examples/analyse_heat.py on store `directory`; asserts that it
    wrote the PNG `out` and printed, for each of `steps`, the total heat of
    that step's field as h5py reads it.  Returns what it printed."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "analyse_heat.py"),
                           str(directory), str(out)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(steps)} checkpoints" in proc.stdout, proc.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the totals it prints are the fields' own sums, read independently
    totals = [float(line.split("total heat")[1].split()[0])
              for line in proc.stdout.splitlines() if "total heat" in line]
    want = [float(field(directory, s)[0].sum()) for s in steps]
    np.testing.assert_allclose(totals, want, rtol=1e-12, atol=5e-7)  # printed to 6 decimals
    return proc.stdout


def last_line(proc):
    """The run's last line without the program's name: "step N done, total heat X"."""
    return proc.stdout.splitlines()[-1].split(": ", 1)[1]


def kill_and_restart(program, directory, args, rng, attempts=3):
    """Runs `program directory args...` `attempts` times, each killed with
    SIGKILL after it has committed 1 to 5 more checkpoints (and up to 20 ms
    more, mid-step or mid-save), then once to the end; asserts that one run
    at least was killed part way and that a later one resumed.  Returns the
    last run's CompletedProcess."""
    interrupted, outputs = 0, []
    for _ in range(attempts):
        want = len(steps(directory)) + int(rng.integers(1, 6))
        child = subprocess.Popen([str(program), str(directory), *map(str, args)],
                                 stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while child.poll() is None and len(steps(directory)) < want and \
                time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(float(rng.uniform(0, 0.02)))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        outputs.append(out)
        interrupted += child.returncode == -signal.SIGKILL and "done" not in out
    final = run(program, directory, *args)
    assert final.returncode == 0, final.stderr
    outputs.append(final.stdout)
    assert interrupted >= 1, "no run was killed part way"
    assert any("resuming from step" in out for out in outputs[1:]), outputs
    assert not [n for n in os.listdir(directory) if n.endswith(".tsnap-tmp")]
    return final

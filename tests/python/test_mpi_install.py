"""`pip install .` where MPI is found builds tsnap._mpi into the package:
the installed package alone (no build tree) saves a distributed snapshot
under mpirun, which it then loads without MPI."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "mpi"))
import launch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
import numpy as np
from mpi4py import MPI
import tsnap

comm = MPI.COMM_WORLD
assert tsnap.__file__.startswith(sys.argv[1]), tsnap.__file__
a = np.arange(6, dtype=np.float32).reshape(2, 3) + 10 * comm.rank
tsnap.save(sys.argv[2], {"u": tsnap.Shard(a, (2 * comm.rank, 0), (2 * comm.size, 3))},
           comm=comm)
"""


def test_the_wheel_carries_mpi_support_where_mpi_is_found(tmp_path):
    launch.require()  # MPI is here: the wheel must have it
    out = tmp_path / "wheel"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(out), str(ROOT)],
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (wheel,) = out.glob("tsnap-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("tsnap/_mpi.") and n.endswith(".so") for n in names), names
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                    "--disable-pip-version-check", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    script = tmp_path / "save.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(launch.MPI_ENV, PYTHONPATH=str(site))
    snap = tmp_path / "x.h5"
    proc = subprocess.run(["mpirun", "--oversubscribe", "-n", "2", sys.executable, str(script),
                           str(site), str(snap)], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    check = ("import sys, tsnap; u = tsnap.load(sys.argv[1], 'u');"
             "print(u.shape, u[:, 0].tolist())")
    proc = subprocess.run([sys.executable, "-c", check, str(snap)], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == "(4, 3) [0.0, 3.0, 10.0, 13.0]"

"""Starting the scripts of this folder under mpirun, from the tests."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           # a single machine: shared memory only, no network probing
           "OMPI_MCA_btl": "self,vader", "OMPI_MCA_btl_vader_single_copy_mechanism": "none"}


def unavailable():
    """Why distributed snapshots cannot be tested here, or None."""
    if not shutil.which("mpirun"):
        return "mpirun is not on PATH (install openmpi-bin)"
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed"
    try:
        import tsnap._mpi  # noqa: F401
    except ImportError as e:
        return f"tsnap._mpi is not built or cannot load ({e})"
    return None


def require():
    why = unavailable()
    if why:
        print(f"\nskipping the MPI tests: {why}", file=sys.stderr)
        pytest.skip(why)


def environment(extra=None):
    import tsnap
    env = dict(os.environ)
    package_root = str(Path(tsnap.__file__).resolve().parents[1])
    paths = [str(HERE), str(HERE.parent), package_root] + [p for p in sys.path if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(MPI_ENV)
    env.update(extra or {})
    return env


def mpirun(n, script, *args, cwd=None, timeout=180, env=None, check=True):
    """Runs tests/python/mpi/`script` on n ranks; with check, a failure
    fails the test with the output of every rank."""
    cmd = ["mpirun", "--oversubscribe", "-n", str(n), sys.executable, str(HERE / script),
           *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=environment(env), cwd=cwd)
    if check and proc.returncode != 0:
        pytest.fail(f"mpirun -n {n} {script} exited {proc.returncode}\n"
                    f"stdout:\n{proc.stdout[-6000:]}\nstderr:\n{proc.stderr[-6000:]}")
    return proc

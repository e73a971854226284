"""The main job as an MPI job: examples/heat_mpi.c splits the field of
examples/heat.c into row blocks, checkpoints into a distributed store, is
killed on 4 ranks part way, and resumes on 2 and on 3 ranks; both end with
the field of the serial program `heat` run uninterrupted with the same
options, bit for bit, and every checkpoint of every run reads with h5py as
the serial program's global field.  examples/analyse_heat.py then loads
the distributed series."""
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from heathelpers import analyse, assert_same_checkpoints, example, field, last_line, run, steps

HEAT, HEAT_MPI = example("heat"), example("heat_mpi")
# 301 rows: uneven blocks on 2, 3 and 4 ranks (76, 75, 75, 75 on 4)
ARGS = ["--size", "301", "--steps", "1500", "--every", "100"]


def mpi_env():
    env = dict(os.environ)
    if os.geteuid() == 0:  # Open MPI refuses root without both
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


def mpirun(ranks):
    return [shutil.which("mpirun") or "mpirun", "--oversubscribe", "-n", str(ranks)]


def why_mpi_cannot_start():
    """None when mpirun starts a 2-rank job here, else why not."""
    if not shutil.which("mpirun"):
        return "mpirun not found (Debian: openmpi-bin)"
    try:
        proc = subprocess.run(mpirun(2) + ["true"], env=mpi_env(), capture_output=True,
                              text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "mpirun -n 2 true did not finish in 60 s"
    return None if proc.returncode == 0 else f"mpirun -n 2 true: {proc.stderr.strip()[-500:]}"


_why = (f"{HEAT_MPI} is not built (no MPI)" if not HEAT_MPI.exists()
        else f"{HEAT} is not built" if not HEAT.exists() else why_mpi_cannot_start())
pytestmark = pytest.mark.skipif(_why is not None, reason=str(_why))


def heat_mpi(ranks, directory, *args):
    return subprocess.run(mpirun(ranks) + [str(HEAT_MPI), str(directory), *map(str, args)],
                          env=mpi_env(), capture_output=True, text=True, timeout=600)


def kill_part_way(ranks, directory, args, rng):
    """Starts heat_mpi on `ranks` ranks in a session of its own and SIGKILLs
    mpirun and every rank once 2 to 5 checkpoints are committed, up to 20 ms
    later (mid-step or mid-save).  Returns its exit status and output."""
    want = len(steps(directory)) + int(rng.integers(2, 6))
    job = subprocess.Popen(mpirun(ranks) + [str(HEAT_MPI), str(directory), *map(str, args)],
                           env=mpi_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while job.poll() is None and len(steps(directory)) < want and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(float(rng.uniform(0, 0.02)))
    kill_session(job.pid)
    out, _ = job.communicate()
    return job.returncode, out


def session_members(sid):
    """The live processes of session `sid` (mpirun puts each rank into a
    process group of its own, but they stay in its session)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":  # session, state
                pids.append(int(entry))
    return pids


def kill_session(sid):
    """SIGKILL to mpirun and every rank at once, as a node failure would;
    returns once none of them runs."""
    deadline = time.monotonic() + 30
    while (pids := session_members(sid)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    assert not session_members(sid), "the killed job's processes live on"


def assert_no_torn_step(directory):
    """Every parts folder belongs to a committed step and holds one save;
    no temporary file is left."""
    names = os.listdir(directory)
    assert not [n for n in names if "tmp" in n], names
    for n in names:
        if n.endswith(".parts"):
            assert n[:-len(".parts")] in names, f"{n}: parts of no committed step"
            assert len(os.listdir(os.path.join(directory, n))) == 1, n


def test_killed_on_4_ranks_then_resumed_on_2_and_on_3_ends_as_the_serial_run(tmp_path, seed):
    rng = np.random.default_rng([seed, 14])
    serial = run(HEAT, tmp_path / "serial", *ARGS)
    assert serial.returncode == 0, serial.stderr
    killed = tmp_path / "on2"
    for _ in range(3):  # the job may finish before the kill on a fast machine: try again
        rc, out = kill_part_way(4, killed, ARGS, rng)
        if rc != 0 and "done" not in out:
            break
        shutil.rmtree(killed)
    assert rc != 0 and "done" not in out, f"the 4-rank job was never killed part way: {out}"
    committed = steps(killed)
    assert committed and committed[-1] < 1500, committed
    # what the kill left: every step listed is whole, the serial one, as h5py reads it
    # (a save it cut short may leave its parts folder: the next writer removes it)
    for step in committed:
        (u, t), (want, want_t) = field(killed, step), field(tmp_path / "serial", step)
        assert t == want_t and np.array_equal(u.view(np.uint64), want.view(np.uint64)), step
    shutil.copytree(killed, tmp_path / "on3")  # a moved copy reads alike: relative parts

    for ranks, directory in ((2, killed), (3, tmp_path / "on3")):
        proc = heat_mpi(ranks, directory, *ARGS)
        assert proc.returncode == 0, proc.stderr
        assert f"resuming from step {committed[-1]} on {ranks} ranks" in proc.stdout, proc.stdout
        assert last_line(proc) == last_line(serial)  # "step 1500 done, total heat ..."
        # every checkpoint, written on 4 ranks or on 2 or 3, is the serial one, bit for bit,
        # read by h5py as one global dataset
        assert_same_checkpoints(directory, tmp_path / "serial")
        assert_no_torn_step(directory)  # the store removed what the kill left
    u, t = field(killed, 1500)
    assert u.shape == (301, 301) and t == 1500 * 0.24


def test_each_rank_writes_its_rows_into_a_part_of_the_snapshot(tmp_path):
    import h5py

    proc = heat_mpi(3, tmp_path / "run", "--size", "31", "--steps", "200", "--every", "100")
    assert proc.returncode == 0, proc.stderr
    assert f"starting a 31x31 run in {tmp_path / 'run'} on 3 ranks" in proc.stdout
    assert steps(tmp_path / "run") == [0, 100, 200]
    snap = tmp_path / "run" / f"step-{200:012d}.h5"
    (save,) = os.listdir(f"{snap}.parts")
    with h5py.File(snap, "r") as f:
        assert f["u"].is_virtual and f.attrs["step"] == 200 and f.attrs["time"] == 200 * 0.24
        sources = sorted((m.file_name, m.dset_name, m.vspace.get_select_bounds())
                         for m in f["u"].virtual_sources())
        whole = f["u"][()]
    # rows 0-10, 11-20, 21-30, each the whole dataset of its rank's part, named relative
    want = [(f"{snap.name}.parts/{save}/rank-{r:06d}.h5", (a, 0), (b, 30))
            for r, (a, b) in enumerate(((0, 10), (11, 20), (21, 30)))]
    assert [(name, lo, hi) for name, _, (lo, hi) in sources] == want
    for (name, dataset, (lo, hi)) in sources:
        with h5py.File(snap.parent / name, "r") as part:
            assert np.array_equal(part[dataset][()], whole[lo[0]:hi[0] + 1]), name


def test_the_analysis_loads_a_distributed_series(tmp_path):
    pytest.importorskip("matplotlib")
    proc = heat_mpi(3, tmp_path / "run", *ARGS)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "heat.png"
    printed = analyse(tmp_path / "run", out, range(0, 1501, 100))
    # a field over 3 parts is copied from them; over one part it would be mapped
    assert "(0 mapped, 16 copied)" in printed, printed
    proc = heat_mpi(1, tmp_path / "one", "--size", "31", "--steps", "200")
    assert proc.returncode == 0, proc.stderr
    assert "(3 mapped, 0 copied)" in analyse(tmp_path / "one", out, [0, 100, 200])

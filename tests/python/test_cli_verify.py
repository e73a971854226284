"""`tsnap verify`: intact files and stores pass, and damage made by hand
(a flipped byte found with h5py's own chunk addresses, a truncation) is
found and named, tensor by tensor, file by file."""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - lets h5py read tsnap's zstd and lz4 chunks
import numpy as np
import pytest

import pyhelpers
import tsnap as tsnap_py
from clihelpers import as_nobody, cli_path, rng_for, save, save_complex32, tsnap
from pyhelpers import DTYPES

ODD_SHAPES = {"0d": (), "empty": (0,), "one": (1,), "primes": (7, 11, 13)}
SIZE = r"[0-9.]+ (?:B|KiB|MiB)"
COMPRESSIONS = {"none": None, "deflate": "deflate", "zstd": "zstd", "lz4": "lz4"}


def random_tensors(rng, names=("a", "b", "c"), shape=(7, 11, 13), dtype=np.float64):
    return {n: pyhelpers.values(rng, dtype, shape) for n in names}


def chunk_extent(path, name, index=0):
    """(offset, size) in the file of chunk `index` of a dataset, as h5py
    (HDF5 itself) reports it."""
    with h5py.File(path, "r") as f:
        info = f[name].id.get_chunk_info(index)
        return info.byte_offset, info.size


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x01]))


def flip_in_chunk(path, name, index=0):
    """Flips one bit in the middle of a chunk of a dataset."""
    offset, size = chunk_extent(path, name, index)
    assert size > 0
    flip(path, offset + size // 2)


def damaged_lines(proc, path):
    return [line for line in proc.stdout.splitlines() if line.startswith(f"{path}: DAMAGED: ")]


def named(proc, path):
    """The tensors a run calls damaged in file `path`."""
    names = []
    for line in damaged_lines(proc, path):
        rest = line.split(": DAMAGED: ", 1)[1]
        if rest.startswith("tensor '"):
            names.append(rest[len("tensor '"):].split("'", 1)[0])
    return names


def report(*args, expect):
    """`tsnap verify --json ARGS` as {path: its object}, in order."""
    proc = tsnap("verify", "--json", *args, expect=expect)
    return {o["path"]: o for o in json.loads(proc.stdout)}


# ---- intact ----------------------------------------------------------

@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_intact_file_of_every_dtype_and_odd_shape_passes(seed, tmp_path, compression):
    rng = rng_for(seed, "intact", compression)
    tensors = {}
    for dname, dt in DTYPES.items():
        for sname, shape in ODD_SHAPES.items():
            tensors[f"{dname}/{sname}"] = pyhelpers.values(rng, dt, shape)
        # a strided view: tsnap stores its logical values
        tensors[f"{dname}/strided"] = pyhelpers.LAYOUTS["step"](rng, dt, (5, 3))
    path = save(tmp_path / "all.h5", tensors, compression=COMPRESSIONS[compression],
                chunk_bytes=64)
    nbytes = sum(np.asarray(a).nbytes for a in tensors.values())

    proc = tsnap("verify", path, expect=0)
    assert re.fullmatch(rf"{re.escape(str(path))}: OK \({len(tensors)} tensors, {SIZE}\)\n",
                        proc.stdout)
    assert proc.stderr == ""
    obj = report(path, expect=0)[str(path)]
    assert obj["status"] == "ok"
    assert (obj["tensors"], obj["checked"], obj["no_checksum"]) == (len(tensors), len(tensors), 0)
    assert obj["bytes"] == nbytes
    assert obj["damaged"] == [] and obj["errors"] == []


def test_intact_complex32_passes(seed, tmp_path):
    rng = rng_for(seed, "complex32")
    pairs = {"z": pyhelpers.values(rng, np.float16, (7, 5, 2)),
             "z0": pyhelpers.values(rng, np.float16, (2,))}
    path = save_complex32(tmp_path / "c32.h5", pairs)
    obj = report(path, expect=0)[str(path)]
    assert (obj["tensors"], obj["checked"]) == (2, 2)
    assert obj["bytes"] == sum(a.nbytes for a in pairs.values())


def test_intact_store_passes_step_by_step_in_order(seed, tmp_path):
    rng = rng_for(seed, "store")
    with tsnap_py.Store(tmp_path / "run", durable=False, compression="zstd") as store:
        for step in (0, 10, 200):
            store.save(step, random_tensors(rng))
        paths = [store.path(s) for s in store.steps()]
    proc = tsnap("verify", tmp_path / "run", expect=0)
    lines = proc.stdout.splitlines()
    assert [line.split(": ", 1)[0] for line in lines[:-1]] == paths
    assert all(": OK (3 tensors, " in line for line in lines[:-1])
    assert lines[-1].startswith("3 files: 3 OK, 0 damaged, 0 with errors (9 tensors, ")


def test_empty_store_passes(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = tsnap("verify", tmp_path / "empty", expect=0)
    assert proc.stdout == f"{tmp_path / 'empty'}: no committed steps\n"


# ---- damage ----------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_flipped_byte_names_that_tensor_only(seed, tmp_path, dtype):
    rng = rng_for(seed, "flip", dtype)
    path = save(tmp_path / "x.h5", random_tensors(rng, ("a", "b", "c"), dtype=DTYPES[dtype]))
    flip_in_chunk(path, "b")
    proc = tsnap("verify", path, expect=1)
    assert named(proc, path) == ["b"]
    assert "checksum mismatch" in damaged_lines(proc, path)[0]
    assert "'a'" not in proc.stdout and "'c'" not in proc.stdout
    # the library agrees on which tensor is damaged
    with pytest.raises(tsnap_py.IntegrityError, match="'b'"):
        tsnap_py.verify(path)


def test_flipped_byte_in_complex32_is_found(seed, tmp_path):
    rng = rng_for(seed, "flip-c32")
    path = save_complex32(tmp_path / "c32.h5",
                          {"u": pyhelpers.values(rng, np.float16, (9, 4, 2)),
                           "v": pyhelpers.values(rng, np.float16, (3, 2))})
    flip_in_chunk(path, "v")
    assert named(tsnap("verify", path, expect=1), path) == ["v"]


def test_two_damaged_tensors_are_both_named(seed, tmp_path):
    rng = rng_for(seed, "two")
    path = save(tmp_path / "x.h5", random_tensors(rng, ("a", "b", "c", "d", "e")))
    flip_in_chunk(path, "b")
    flip_in_chunk(path, "d")
    proc = tsnap("verify", path, expect=1)
    assert named(proc, path) == ["b", "d"]
    obj = report(path, expect=1)[str(path)]
    assert obj["status"] == "damaged"
    assert [d["tensor"] for d in obj["damaged"]] == ["b", "d"]
    assert obj["checked"] == 5


@pytest.mark.parametrize("compression", ["zstd", "deflate", "lz4"])
def test_damaged_chunk_of_compressed_tensor_is_found(seed, tmp_path, compression):
    rng = rng_for(seed, "compressed", compression)
    # smooth values compress, so that a chunk holds a real compressed stream
    tensors = {"u": np.cumsum(rng.standard_normal((64, 50)), axis=1).round(2),
               "w": pyhelpers.values(rng, np.int32, (40, 30))}
    path = save(tmp_path / "z.h5", tensors, compression=compression, chunk_bytes=4096)
    with h5py.File(path, "r") as f:
        nchunks = f["u"].id.get_num_chunks()
    assert nchunks > 2
    flip_in_chunk(path, "u", nchunks // 2)
    proc = tsnap("verify", path, expect=1)
    assert named(proc, path) == ["u"]


def test_truncated_files_are_damaged(seed, tmp_path):
    rng = rng_for(seed, "truncated")
    whole = save(tmp_path / "whole.h5", random_tensors(rng)).read_bytes()
    cuts = {"header": 100, "half": len(whole) // 2, "last-byte": len(whole) - 1}
    paths = []
    for what, n in cuts.items():
        p = tmp_path / f"cut-{what}.h5"
        p.write_bytes(whole[:n])
        paths.append(p)
    proc = tsnap("verify", *paths, expect=1)
    for p in paths:
        (line,) = damaged_lines(proc, p)
        assert "truncated" in line
    assert proc.stdout.splitlines()[-1].startswith("3 files: 0 OK, 3 damaged, 0 with errors")


def test_not_hdf5_is_damaged(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("not an HDF5 file\n")
    proc = tsnap("verify", path, expect=1)
    assert damaged_lines(proc, path)


def test_store_with_one_damaged_step_names_that_step_only(seed, tmp_path):
    rng = rng_for(seed, "store-damaged")
    with tsnap_py.Store(tmp_path / "run", durable=False) as store:
        for step in range(4):
            store.save(step, random_tensors(rng, ("p", "q")))
        paths = [store.path(s) for s in store.steps()]
    flip_in_chunk(paths[2], "q")
    proc = tsnap("verify", tmp_path / "run", expect=1)
    for i, p in enumerate(paths):
        if i == 2:
            assert named(proc, p) == ["q"]
        else:
            assert damaged_lines(proc, p) == []
            assert f"{p}: OK (2 tensors, " in proc.stdout
    assert "4 files: 3 OK, 1 damaged, 0 with errors" in proc.stdout


# ---- files without checksums ----------------------------------------------

@pytest.fixture
def h5py_file(seed, tmp_path):
    """An h5py file of numeric datasets (some gzip'ed), a string dataset and
    a string attribute: nothing tsnap recorded."""
    rng = rng_for(seed, "h5py")
    data = {"f32": pyhelpers.values(rng, np.float32, (31, 17)),
            "grid/i16": pyhelpers.values(rng, np.int16, (5,)),
            "grid/mask": pyhelpers.values(rng, bool, (3, 4)),
            "scalar": pyhelpers.values(rng, np.float64, ()),
            "c128": pyhelpers.values(rng, np.complex128, (6,)),
            "gz": np.cumsum(rng.standard_normal((60, 40)), axis=0).round(3)}
    path = tmp_path / "h5py.h5"
    with h5py.File(path, "w") as f:
        for name, a in data.items():
            if name == "gz":
                f.create_dataset(name, data=a, chunks=(10, 40), compression="gzip")
            else:
                f[name] = a
        f["names"] = np.array([b"alpha", b"beta"])
        f.attrs["title"] = "written by h5py"
    return path, data


def test_h5py_file_without_checksums_passes_with_a_note(h5py_file):
    path, data = h5py_file
    proc = tsnap("verify", path, expect=0)
    assert re.search(rf"^{re.escape(str(path))}: OK \({len(data) + 1} tensors, {SIZE}; "
                     rf"{len(data)} with no checksum, read through; 1 skipped\)$",
                     proc.stdout, re.M)
    assert f"{path}: skipped: tensor 'names': " in proc.stdout
    obj = report(path, expect=0)[str(path)]
    assert (obj["checked"], obj["no_checksum"], obj["skipped"]) == (0, len(data), 1)
    assert [n["tensor"] for n in obj["notes"]] == ["names"]
    assert obj["bytes"] == sum(a.nbytes for a in data.values())


def test_h5py_file_with_a_damaged_gzip_chunk_is_damaged(h5py_file):
    # No checksum to compare: reading it through is what finds the damage.
    path, _ = h5py_file
    flip_in_chunk(path, "gz", 3)
    with h5py.File(path, "r") as f, pytest.raises(OSError):
        f["gz"][...]
    proc = tsnap("verify", path, expect=1)
    assert named(proc, path) == ["gz"]


def test_snapshot_saved_without_checksums_passes_as_no_checksum(seed, tmp_path):
    rng = rng_for(seed, "nochecksum")
    path = save(tmp_path / "n.h5", random_tensors(rng), checksum=False, compression="deflate")
    proc = tsnap("verify", path, expect=0)
    assert "3 with no checksum, read through" in proc.stdout


def test_flip_in_a_snapshot_without_checksums_goes_unseen_when_it_decodes(seed, tmp_path):
    # Without a checksum, a flipped bit in raw data is beyond reach: the
    # command says so rather than claiming a check it did not make.
    rng = rng_for(seed, "unseen")
    path = save(tmp_path / "n.h5", random_tensors(rng), checksum=False)
    flip_in_chunk(path, "a")
    proc = tsnap("verify", path, expect=0)
    assert "3 with no checksum" in proc.stdout


# ---- trouble, usage --------------------------------------------------

def test_missing_path_is_trouble_and_others_are_still_checked(seed, tmp_path):
    good = save(tmp_path / "good.h5", random_tensors(rng_for(seed, "good")))
    missing = tmp_path / "missing.h5"
    proc = tsnap("verify", missing, good, expect=2)
    assert f"tsnap verify: {missing}: No such file or directory" in proc.stderr
    assert f"{good}: OK (3 tensors, " in proc.stdout
    assert "2 files: 1 OK, 0 damaged, 1 with errors" in proc.stdout


def test_trouble_wins_over_damage(seed, tmp_path):
    bad = save(tmp_path / "bad.h5", random_tensors(rng_for(seed, "bad")))
    flip_in_chunk(bad, "a")
    tsnap("verify", bad, tmp_path / "missing.h5", expect=2)


def test_unreadable_file_is_trouble(seed):
    # a directory nobody may enter, as the files of another user would be
    parent = Path(tempfile.mkdtemp())
    try:
        parent.chmod(0o755)
        path = save(parent / "locked.h5", random_tensors(rng_for(seed, "locked")))
        path.chmod(0)
        proc = tsnap("verify", path, expect=2, preexec_fn=as_nobody)
    finally:
        shutil.rmtree(parent)
    assert f"{path}: " in proc.stderr and "ermission denied" in proc.stderr, proc.stderr


def test_fifo_is_trouble_not_a_hang(tmp_path):
    fifo = tmp_path / "fifo.h5"
    os.mkfifo(fifo)
    proc = tsnap("verify", fifo, expect=2, timeout=30)
    assert "not a regular file" in proc.stderr


@pytest.mark.parametrize("args", [[], ["-x", "f.h5"], ["--nope", "f.h5"], ["-j", "0", "f.h5"],
                                  ["-j", "many", "f.h5"], ["--jobs"], ["-q"]])
def test_usage_errors(args):
    proc = tsnap("verify", *args, expect=2)
    assert proc.stdout == ""
    assert proc.stderr.startswith("tsnap verify: ")
    assert "Try 'tsnap verify --help'." in proc.stderr


def test_help():
    proc = tsnap("verify", "--help", expect=0)
    assert proc.stdout.startswith("usage: tsnap verify ")
    assert "Examples:" in proc.stdout and "Exit status:" in proc.stdout
    assert tsnap("help", "verify", expect=0).stdout == proc.stdout


# ---- output ----------------------------------------------------------

@pytest.fixture
def mixed(seed, tmp_path):
    """Several intact, damaged, truncated and missing files, in a shuffled
    order."""
    rng = rng_for(seed, "mixed")
    paths = []
    for i in range(9):
        p = save(tmp_path / f"f{i}.h5", random_tensors(rng, ("a", "b")))
        if i % 3 == 1:
            flip_in_chunk(p, "b")
        paths.append(p)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(paths[0].read_bytes()[:300])
    paths += [cut, tmp_path / "missing.h5"]
    return [paths[i] for i in rng.permutation(len(paths))]


def test_output_follows_argument_order_and_jobs_agree(mixed):
    runs = {j: tsnap("verify", "-j", j, *mixed, expect=2) for j in (1, 4)}
    assert runs[1].stdout == runs[4].stdout
    assert runs[1].stderr == runs[4].stderr
    files = [line.split(": ", 1)[0] for line in runs[4].stdout.splitlines()[:-1]]
    shown = [p for p in map(str, mixed) if p in files]
    assert list(dict.fromkeys(files)) == shown
    assert len(shown) == len(mixed) - 1  # the missing file is on stderr
    assert runs[4].stdout.splitlines()[-1].startswith(
        f"{len(mixed)} files: 6 OK, 4 damaged, 1 with errors")
    # the same in JSON, where each path has one object
    assert list(report("-j", "3", *mixed, expect=2)) == list(map(str, mixed))


def test_quiet_prints_only_damage(seed, tmp_path):
    rng = rng_for(seed, "quiet")
    good = save(tmp_path / "good.h5", random_tensors(rng))
    bad = save(tmp_path / "bad.h5", random_tensors(rng))
    flip_in_chunk(bad, "c")
    assert tsnap("verify", "-q", good, expect=0).stdout == ""
    proc = tsnap("verify", "--quiet", good, bad, expect=1)
    assert proc.stdout.splitlines() == damaged_lines(proc, bad)
    assert named(proc, bad) == ["c"]


def test_plain_lines_without_a_terminal(seed, tmp_path):
    # The tests' pipes are no terminal: no progress bar, nothing on stderr.
    path = save(tmp_path / "p.h5", random_tensors(rng_for(seed, "plain")))
    proc = tsnap("verify", path, path, expect=0)
    assert proc.stderr == ""
    assert "\r" not in proc.stdout and "\033" not in proc.stdout


def worker_of(pid):
    """A child process of `pid`, or None."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                return int(entry.name)
    return None


def test_a_killed_worker_is_reported_not_waited_for(seed, tmp_path):
    """Each file is checked by a child process; one killed by a signal is
    an error naming its file, and the others are still answered."""
    rng = rng_for(seed, "killed")
    # a file that takes its worker a while: 8 MiB to inflate and hash
    path = save(tmp_path / "big.h5", {"u": np.cumsum(rng.standard_normal(1 << 20)).round(1)},
                compression="deflate")
    n = 8
    for _ in range(5):
        proc = subprocess.Popen([str(cli_path()), "verify", "-j", "1", *[str(path)] * n],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, TSNAP_NUM_THREADS="1"))
        while proc.poll() is None:
            worker = worker_of(proc.pid)
            if worker is not None:
                try:
                    os.kill(worker, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                break
        out, err = proc.communicate(timeout=120)
        if proc.returncode == 2:
            break
        assert proc.returncode == 0  # the worker had answered before it was killed
    else:
        pytest.skip("every worker answered before the signal reached it")
    (line,) = [line for line in err.splitlines()]
    assert line == (f"tsnap verify: {path}: the process checking it was killed by signal 9 "
                    f"({signal.strsignal(signal.SIGKILL)})")
    assert out.count(f"{path}: OK (1 tensor, 8.00 MiB)\n") == n - 1
    assert out.splitlines()[-1].startswith(f"{n} files: {n - 1} OK, 0 damaged, 1 with errors")

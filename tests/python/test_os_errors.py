"""A save the operating system refuses (a full file system, a file-size
limit, a folder without write permission, a read-only mount) raises
tsnap.OSError with errno, strerror and filename set and a one-line message
in the system's words, on every save path: tsnap.save, Store.save with and
without waiting, and the command's cp and export.  Nothing is left behind:
no temporary file, and the file saved before is untouched."""
import errno
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import tempfile

import numpy as np
import pytest

import tsnap
from clihelpers import cli_path
from pyhelpers import run_python

PATHS = ("save", "store_wait", "store_nowait", "cp", "export")
BIG = 1 << 18  # float64 elements: 2 MiB, more than the tmpfs or the size limit holds
FSIZE_LIMIT = 256 << 10

# The child: one save path, with the failure's conditions already made;
# prints what it raised as JSON.
CHILD = """
import json, os, resource, signal, sys
import numpy as np
import tsnap
how, where, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
if limit:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
if os.geteuid() == 0 and sys.argv[4] == "nobody":
    os.setgid(65534)
    os.setuid(65534)
big = np.random.default_rng(int(sys.argv[5])).random(%d)
try:
    if how == "save":
        tsnap.save(where, {"model": {"w": big, "b": big[:7]}, "step": 3, "name": "run"})
    else:
        with tsnap.Store(where) as s:
            s.save(1, {"model": {"w": big}}, wait=how == "store_wait")
            s.wait()
    print(json.dumps({"raised": None}))
except Exception as e:
    print(json.dumps({"raised": type(e).__name__, "tsnap": isinstance(e, tsnap.errors.OSError),
                      "builtin": isinstance(e, OSError), "errno": getattr(e, "errno", None),
                      "strerror": getattr(e, "strerror", None),
                      "filename": getattr(e, "filename", None), "message": str(e)}))
""" % BIG


def _mount(*args):
    return subprocess.run(["mount", *args], capture_output=True, text=True).returncode == 0


class Place:
    """A folder where saves fail for one reason, made and undone."""

    def __init__(self, reason, base):
        self.reason = reason
        self.dir = os.path.join(base, reason)
        os.mkdir(self.dir)
        os.chmod(self.dir, 0o755)
        self.mounted = False
        if reason in ("enospc", "erofs"):
            if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", self.dir):
                pytest.skip(f"{reason}: cannot mount a tmpfs here (not root, or not permitted)")
            self.mounted = True
        self.user = "nobody" if reason == "eacces" else "self"
        self.limit = FSIZE_LIMIT if reason == "efbig" else 0
        self.errno = {"enospc": errno.ENOSPC, "efbig": errno.EFBIG, "eacces": errno.EACCES,
                      "erofs": errno.EROFS}[reason]

    def fail(self):
        """Makes the folder refuse writes (after the earlier files are in it)."""
        if self.reason == "eacces":
            for root, dirs, files in os.walk(self.dir):
                for f in files:  # the store's lock stays usable by the writer
                    os.chmod(os.path.join(root, f), 0o666)
                for d in dirs + [root]:
                    os.chmod(os.path.join(root, d) if d != root else root, 0o555)
            if os.geteuid() != 0:
                self.user = "self"
        elif self.reason == "erofs":
            assert _mount("-o", "remount,ro", self.dir), "cannot remount the tmpfs read-only"

    def undo(self):
        """Makes the folder writable again, its files still there."""
        if self.reason == "eacces":
            for root, dirs, _ in os.walk(self.dir):
                os.chmod(root, 0o755)
                for d in dirs:
                    os.chmod(os.path.join(root, d), 0o755)
        elif self.reason == "erofs":
            _mount("-o", "remount,rw", self.dir)

    def remove(self):
        self.undo()
        if self.mounted:
            subprocess.run(["umount", self.dir], capture_output=True)
            self.mounted = False

    def preexec(self):
        """For the command: the same conditions as the Python child's."""
        limit, user = self.limit, self.user

        def run():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            if limit:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            if user == "nobody" and os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
        return run


@pytest.fixture
def base():
    # A folder nobody may enter (pytest's own are root's only).
    d = tempfile.mkdtemp()
    os.chmod(d, 0o755)
    yield d
    for root, dirs, _ in os.walk(d):
        for x in dirs:
            os.chmod(os.path.join(root, x), 0o755)
    shutil.rmtree(d, ignore_errors=True)


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _files(d):
    return sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs)


def _check_message(msg, final, strerror):
    assert "\n" not in msg.strip(), msg
    assert final in msg, msg
    # the system's words end the cause (cp adds "; nothing written to DST")
    assert msg.rstrip().endswith(strerror) or f": {strerror}; " in msg, msg
    for internal in ("errno =", "time =", "file descriptor", "buf =", "HDF5:", ".tsnap-tmp"):
        assert internal not in msg, msg


@pytest.mark.parametrize("how", PATHS)
@pytest.mark.parametrize("reason", ("enospc", "efbig", "eacces", "erofs"))
def test_an_os_failure_is_an_os_error_with_errno_and_leaves_nothing(reason, how, base, seed):
    rng = np.random.default_rng([seed, 15, PATHS.index(how)])
    place = Place(reason, base)
    try:
        _run_case(place, how, base, rng, seed)
    finally:
        place.remove()


def _run_case(place, how, base, rng, seed):
    small = {"x": rng.standard_normal(5), "y": rng.integers(0, 9, 3)}
    source = os.path.join(base, "source.h5")
    tsnap.save(source, {"big": rng.random(BIG), "n": {"k": 3}, "s": "text"})
    os.chmod(source, 0o644)
    if how.startswith("store"):
        where = os.path.join(place.dir, "store")
        with tsnap.Store(where) as s:
            s.save(0, small)
            earlier = s.path(0)
        final = os.path.join(where, "step-000000000001.h5")
    elif how == "export":
        final = earlier = os.path.join(place.dir, "big.npy")
        np.save(earlier, small["x"])
        where = final
    else:
        final = earlier = where = os.path.join(place.dir, "snap.h5")
        tsnap.save(earlier, small)
    before, listing = _digest(earlier), _files(place.dir)
    place.fail()
    strerror = os.strerror(place.errno)

    if how in ("cp", "export"):
        args = (["cp", "-f", "-q", source, final] if how == "cp"
                else ["export", "-q", "--force", source, "big", "-o", final])
        proc = subprocess.run([str(cli_path()), *args], capture_output=True, text=True,
                              preexec_fn=place.preexec(), timeout=120)
        assert proc.returncode == 1, (proc.returncode, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        _check_message(lines[0], final, strerror)
    else:
        proc = run_python(CHILD, how, where, place.limit, place.user, seed)
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        assert got["raised"] == "OSError" and got["tsnap"] and got["builtin"], got
        assert got["errno"] == place.errno, got
        assert got["strerror"] == strerror, got
        if how.startswith("store") and place.reason == "erofs":
            # the store cannot even take its lock: the folder is named
            assert got["filename"] == where, got
            _check_message(got["message"], where, strerror)
        else:
            assert got["filename"] == final, got
            _check_message(got["message"], final, strerror)

    place.undo()
    assert _files(place.dir) == listing  # no temporary file, no partial step
    assert _digest(earlier) == before
    if how == "export":
        np.testing.assert_array_equal(np.load(earlier), small["x"])
    else:
        loaded = tsnap.load(earlier)
        for k, v in small.items():
            np.testing.assert_array_equal(loaded[k], v)


READ_AS_NOBODY = """
import json, os, sys, tsnap
if os.geteuid() == 0:
    os.setgid(65534)
    os.setuid(65534)
try:
    tsnap.load(sys.argv[1])
except tsnap.Error as e:
    print(json.dumps([type(e).__name__, isinstance(e, OSError), e.errno, e.strerror,
                      e.filename, str(e)]))
"""


def test_a_file_that_cannot_be_opened_is_an_os_error_with_errno(base):
    missing = os.path.join(base, "missing.h5")
    with pytest.raises(tsnap.errors.FileNotFoundError) as info:
        tsnap.load(missing)
    e = info.value
    assert (e.errno, e.strerror, e.filename) == (errno.ENOENT, os.strerror(errno.ENOENT), missing)
    assert str(e) == f"{missing}: cannot open: {os.strerror(errno.ENOENT)}"
    private = os.path.join(base, "private.h5")
    tsnap.save(private, {"x": np.arange(3)})
    os.chmod(private, 0o000)
    proc = run_python(READ_AS_NOBODY, private)
    assert proc.returncode == 0, proc.stderr
    if os.geteuid() != 0 and not proc.stdout.strip():
        pytest.skip("this user reads files of mode 000")
    name, is_os, code, words, filename, msg = json.loads(proc.stdout)
    assert name == "OSError" and is_os and code == errno.EACCES, proc.stdout
    assert words == os.strerror(errno.EACCES) and filename == private
    _check_message(msg, private, words)


def test_errno_is_none_for_failures_that_are_not_the_systems(tmp_path):
    path = tmp_path / "x.h5"
    path.write_bytes(b"not an HDF5 file at all" * 100)
    with pytest.raises(tsnap.FormatError) as info:
        tsnap.load(path)
    assert "\n" not in str(info.value)
    with pytest.raises(tsnap.errors.FileNotFoundError) as info:
        tsnap.save(tmp_path / "missing" / "x.h5", {"a": np.ones(3)})
    assert str(tmp_path / "missing") in str(info.value)


def test_the_message_is_the_one_line_even_with_os_fields_set():
    e = tsnap.errors.OSError("f.h5: tensor 'w': writing chunk 0 failed: No space left on device")
    e.errno, e.strerror, e.filename = errno.ENOSPC, os.strerror(errno.ENOSPC), "f.h5"
    assert str(e) == "f.h5: tensor 'w': writing chunk 0 failed: No space left on device"
    assert isinstance(e, OSError) and isinstance(e, tsnap.Error)

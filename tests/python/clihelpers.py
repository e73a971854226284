"""Running the `tsnap` command from tests: where it is, a call that returns
its exit code and output, and the small fixtures-makers its tests share."""
import os
import subprocess
import zlib
from pathlib import Path

import h5py
import numpy as np

import tsnap as tsnap_py

ROOT = Path(__file__).resolve().parents[2]
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error: ")


def cli_path():
    """The `tsnap` binary: env TSNAP_CLI, else the first build tree with it."""
    env = os.environ.get("TSNAP_CLI")
    if env:
        return Path(env).resolve()
    for build in ("build", "build-asan", "build-debug"):
        p = ROOT / build / "tools" / "tsnap"
        if p.exists():
            return p
    return ROOT / "build" / "tools" / "tsnap"


def as_nobody():
    """For preexec_fn: root reads any file whatever its mode, nobody does not."""
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)


def tsnap(*args, expect=None, env=None, cwd=None, timeout=300, preexec_fn=None):
    """Runs `tsnap ARGS...` and returns the CompletedProcess (text output).
    With `expect`, asserts the exit code and shows both streams if it differs."""
    full_env = dict(os.environ, TSNAP_NO_PROGRESS="")
    if env:
        full_env.update(env)
    proc = subprocess.run([str(cli_path()), *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout, preexec_fn=preexec_fn)
    # Under a sanitizer build a report fails the call whatever its exit code.
    for mark in SANITIZER_MARKS:
        if mark in proc.stderr:
            raise AssertionError(f"tsnap {' '.join(map(str, args))}: sanitizer report\n"
                                 f"{proc.stderr}")
    if expect is not None and proc.returncode != expect:
        raise AssertionError(
            f"tsnap {' '.join(map(str, args))} exited {proc.returncode}, expected {expect}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def rng_for(seed, *key):
    """A generator of its own for each (seed, key...): tests stay independent
    of each other's draws."""
    return np.random.default_rng([seed, zlib.crc32("/".join(map(str, key)).encode())])


def save(path, tensors, **kw):
    tsnap_py.save(path, tensors, durable=False, **kw)
    return path


def save_complex32(path, pairs):
    """tsnap's complex32 form, which NumPy cannot hand over: float16 pairs on
    a trailing axis, tagged complex32 (the same logical bytes, so the same
    checksum)."""
    save(path, pairs)
    with h5py.File(path, "r+") as f:
        for k in pairs:
            f[k].attrs["tsnap_dtype"] = "complex32"
    return path

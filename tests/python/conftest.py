"""Fixtures for the interop tests: a fresh seed per run, the tsnap_testio
helper, and snapshots written by the C library once per session."""
import importlib.util
import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import oracle  # noqa: E402


def _import_netcdf4_keeping_the_plugin_path():
    """netCDF4, when first imported, points HDF5_PLUGIN_PATH at the
    plug-ins it ships, built for its own HDF5.  Imported here once, with
    the variable put back, so that the programs the tests start (h5py with
    hdf5plugin, the command) see the environment the run was given."""
    before = os.environ.get("HDF5_PLUGIN_PATH")
    try:
        import netCDF4  # noqa: F401
    except ImportError:
        return
    finally:
        if before is None:
            os.environ.pop("HDF5_PLUGIN_PATH", None)
        else:
            os.environ["HDF5_PLUGIN_PATH"] = before


_import_netcdf4_keeping_the_plugin_path()


def pytest_configure(config):
    env = os.environ.get("TSNAP_TEST_SEED")
    config.tsnap_seed = int(env, 0) if env else random.SystemRandom().randrange(1, 2**63)


def pytest_report_header(config):
    return (f"tsnap: seed {config.tsnap_seed} (TSNAP_TEST_SEED={config.tsnap_seed} repeats it); "
            f"tsnap_testio: {oracle.testio_path()}")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # also under -q, where the header is not shown
    terminalreporter.write_line(f"tsnap: seed {config.tsnap_seed} "
                                f"(TSNAP_TEST_SEED={config.tsnap_seed} repeats this run)")


@pytest.fixture(scope="session")
def seed(pytestconfig):
    return pytestconfig.tsnap_seed


@pytest.fixture(scope="session")
def testio():
    path = oracle.testio_path()
    if not path.exists():
        pytest.fail(f"{path} is missing: build it with `cmake -S . -B build && cmake --build build`"
                    " or point env TSNAP_TESTIO at it")
    return path


# Write variants of the C snapshot: (codec flags, chunk bytes or None).
VARIANTS = {
    "plain": [],
    "plain-small-chunks": ["--chunk-bytes", "256"],
    "deflate": ["--deflate"],
    "deflate-small-chunks": ["--deflate", "--chunk-bytes", "256"],
    "deflate-level9": ["--deflate", "--level", "9", "--chunk-bytes", "1000"],
    "zstd": ["--codec", "zstd"],
    "zstd-small-chunks": ["--codec", "zstd", "--level", "7", "--chunk-bytes", "256"],
    "lz4": ["--codec", "lz4"],
    "lz4-small-chunks": ["--codec", "lz4", "--chunk-bytes", "256"],
}
# Variants used by one test only (not in the dtype x shape x variant grid).
EXTRA_VARIANTS = {
    "plain-no-checksum": ["--no-checksum"],
}


class CSnapshot:
    """A snapshot written by tsnap_testio write, and the same file read back
    by tsnap_testio read."""

    def __init__(self, root, variant, flags, seed):
        self.variant = variant
        self.dir = root / variant
        self.dir.mkdir()
        self.path = self.dir / "snap.h5"
        self.expected_dir = self.dir / "expected"
        self.write_proc = oracle.run_testio("write", self.path, self.expected_dir, *flags,
                                            "--seed", seed)
        self.expected = oracle.read_manifest(self.expected_dir)
        self._read = None

    @property
    def read(self):
        """(manifest, directory) of tsnap_testio read on the file."""
        if self._read is None:
            rdir = self.dir / "read"
            self.read_proc = oracle.run_testio("read", self.path, rdir)
            self._read = (oracle.read_manifest(rdir), rdir)
        return self._read

    def raw(self, name):
        return oracle.tensor_bytes(self.expected_dir, self.expected["tensors"][name])


@pytest.fixture(scope="session")
def c_snapshot(testio, seed, tmp_path_factory):
    """c_snapshot(variant) -> CSnapshot, written once per session."""
    cache = {}
    root = tmp_path_factory.mktemp("c-written")

    def get(variant):
        if variant not in cache:
            # each variant its own seed, all derived from the run's
            every = {**VARIANTS, **EXTRA_VARIANTS}
            vseed = (seed + 0x9E3779B97F4A7C15 * (1 + list(every).index(variant))) % 2**64
            cache[variant] = CSnapshot(root, variant, every[variant], vseed)
        return cache[variant]

    return get


@pytest.fixture(scope="session")
def h5files():
    """An h5py.File cache so that many parametrised tests share one open."""
    import h5py
    opened = {}

    def get(path):
        key = str(path)
        if key not in opened:
            opened[key] = h5py.File(key, "r")
        return opened[key]

    yield get
    for f in opened.values():
        f.close()


# ---------------------------------------------------------------------------
# Files written by h5py (tests/data/make_golden.py)

DATA = oracle.ROOT / "tests" / "data"
GOLDEN = json.loads((DATA / "golden.json").read_text())


def _make_golden():
    spec = importlib.util.spec_from_file_location("make_golden", DATA / "make_golden.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class H5pySource:
    """A directory of h5py-written files, each read once by tsnap_testio."""

    def __init__(self, directory, expectations, workdir):
        self.dir = directory
        self.expect = expectations
        self.workdir = workdir
        self.reads = {}

    def read(self, fname):
        """(manifest, directory) of tsnap_testio read on one file."""
        if fname not in self.reads:
            rdir = self.workdir / fname
            oracle.run_testio("read", self.dir / fname, rdir)
            self.reads[fname] = (oracle.read_manifest(rdir), rdir)
        return self.reads[fname]


@pytest.fixture(scope="session")
def committed(testio, tmp_path_factory):
    """The golden files committed in tests/data."""
    return H5pySource(DATA, GOLDEN, tmp_path_factory.mktemp("golden-read"))


@pytest.fixture(scope="session")
def fresh(testio, seed, tmp_path_factory):
    """The same kinds of files, written now with this run's random data."""
    out = tmp_path_factory.mktemp("h5py-fresh")
    exp = _make_golden().build(out, np.random.default_rng([seed, 7]))
    return H5pySource(out, json.loads(json.dumps(exp)), tmp_path_factory.mktemp("fresh-read"))


# ---------------------------------------------------------------------------
# The Python extension (tests/python/test_py_*.py)

def _add_build_tree_to_path():
    """Makes `import tsnap` find build/python/tsnap when PYTHONPATH does not
    already provide a tsnap package."""
    build = oracle.ROOT / "build" / "python"
    if build.is_dir() and importlib.util.find_spec("tsnap") is None:
        sys.path.insert(0, str(build))


_add_build_tree_to_path()


@pytest.fixture(autouse=True)
def _py_watchdog(request):
    """A hung extension test (a deadlock between the GIL and the library's
    lock, a corrupt file that loops) dumps every thread's stack and ends the
    run instead of hanging it."""
    if not request.node.path.name.startswith("test_py_"):
        yield
        return
    import faulthandler
    faulthandler.dump_traceback_later(int(os.environ.get("TSNAP_TEST_WATCHDOG", "300")),
                                      exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


# Storage settings of the extension tests: (compression, chunk_bytes).
PY_STORAGES = {
    "plain": (None, None),
    "plain-small-chunks": (None, 256),
    "deflate": ("deflate", None),
    "deflate9-small-chunks": (("deflate", 9), 1000),
    "zstd-small-chunks": ("zstd", 200),
    "lz4-small-chunks": ("lz4", 200),
    "zstd19": (("zstd", 19), None),
}


class PySaved:
    """One tensor saved by tsnap.save: the file, the input and the values
    every reader must see."""

    def __init__(self, path, name, array, storage):
        self.path = path
        self.name = name
        self.array = array
        self.storage = storage
        self.compressed = PY_STORAGES[storage][0] is not None

    @property
    def expected(self):
        import pyhelpers
        return pyhelpers.logical(self.array)


@pytest.fixture(scope="session")
def py_saved(seed, tmp_path_factory):
    """py_saved(dtype, shape_name, layout="c", storage="plain") -> PySaved: a
    tensor of fresh random values saved once per session by tsnap.save."""
    import zlib

    import pyhelpers
    import tsnap

    root = tmp_path_factory.mktemp("py-saved")
    cache = {}

    def get(dtype, shape_name, layout="c", storage="plain"):
        key = (dtype, shape_name, layout, storage)
        if key not in cache:
            rng = np.random.default_rng([seed, zlib.crc32("/".join(key).encode())])
            array = pyhelpers.LAYOUTS[layout](rng, pyhelpers.DTYPES[dtype],
                                              pyhelpers.SHAPES[shape_name])
            path = root / ("-".join(key) + ".h5")
            compression, chunk_bytes = PY_STORAGES[storage]
            tsnap.save(path, {"t": array}, compression=compression, chunk_bytes=chunk_bytes,
                       durable=False)
            cache[key] = PySaved(path, "t", array, storage)
        return cache[key]

    return get

"""The command on files other libraries wrote (h5py's partly written,
enum, bitfield and plug-in filtered datasets, PyTables', netCDF4's): `tsnap
ls/info/verify/export/cp` exit 0, 1 or 2, never on a signal; ls names
codecs and enum members; what export and cp write equals h5py's read."""
import json

import h5py
import hdf5plugin
import numpy as np
import pytest

import oracle
import pyhelpers
import tsnap as tsnap_py
from clihelpers import cli_path, tsnap
from test_foreign_h5py import write_enums, write_plugin_filters, write_unwritten

OK_EXITS = (0, 1, 2)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory, seed):
    """{kind: path} of one file of each kind."""
    d = tmp_path_factory.mktemp("foreign_cli")
    files = {"unwritten": d / "unwritten.h5", "enums": d / "enums.h5",
             "plugins": d / "plugins.h5"}
    write_unwritten(files["unwritten"], seed)
    write_enums(files["enums"], seed)
    write_plugin_filters(files["plugins"], seed)
    try:
        from test_foreign_tables import write_tables_file
        files["tables"] = d / "pytables.h5"
        write_tables_file(files["tables"], seed)
    except (ImportError, pytest.skip.Exception):  # no PyTables
        pass
    try:
        from test_foreign_netcdf import write_netcdf_file
        files["netcdf"] = d / "data.nc"
        write_netcdf_file(files["netcdf"], seed)
    except (ImportError, pytest.skip.Exception):  # no netCDF4
        pass
    return files


@pytest.fixture(scope="module")
def no_plugins(tmp_path_factory):
    """An empty plug-in directory: the command's runs see no plug-ins but
    those a test names (netCDF4, once imported, points HDF5_PLUGIN_PATH at
    its own, and every child process would inherit them)."""
    return tmp_path_factory.mktemp("no-plugins")


def run(*args, plugins=None):
    proc = tsnap(*args, env={"HDF5_PLUGIN_PATH": str(plugins or NO_PLUGINS[0])})
    assert proc.returncode in OK_EXITS, (args, pyhelpers.describe_exit(proc))
    return proc


NO_PLUGINS = []


@pytest.fixture(autouse=True)
def _isolated_plugins(no_plugins):
    NO_PLUGINS[:] = [no_plugins]


def sanitized():
    """Whether the command is a sanitizer build: plug-ins (blosc's global
    context) leak what they allocate, which is not the command's."""
    return b"__asan_init" in cli_path().read_bytes()


@pytest.mark.parametrize("kind", ["unwritten", "enums", "plugins", "tables", "netcdf"])
def test_every_command_on_every_foreign_file_exits_cleanly(foreign, kind, tmp_path):
    if kind not in foreign:
        pytest.skip(f"no {kind} file (its package is not installed)")
    path = foreign[kind]
    run("ls", path)
    listing = json.loads(run("ls", "--json", path).stdout)
    names = [t["name"] for t in listing["tensors"]]
    for name in names[:40]:
        run("info", path, name)
        run("info", "--json", path, name)
    run("verify", path)
    run("export", path, "-o", tmp_path / "npy")
    run("cp", path, tmp_path / "copy.h5")
    run("diff", path, path)


def test_ls_names_plugin_codecs_and_enum_members(foreign):
    out = run("ls", foreign["plugins"]).stdout
    for codec in ("blosc", "bzip2"):
        assert codec in out, out
    out = run("ls", foreign["enums"]).stdout
    assert "enum enum_le_i2: M0=" in out, out
    listing = json.loads(run("ls", "--json", foreign["enums"]).stdout)
    with h5py.File(foreign["enums"], "r") as f:
        for t in listing["tensors"]:
            assert t["enum"] == h5py.check_enum_dtype(f[t["name"]].dtype), t["name"]
    info = json.loads(run("info", "--json", foreign["enums"], "enum_be_u4").stdout)
    assert info["enum"] and info["dtype"] == "uint32"


def test_a_missing_plugin_fails_the_command_naming_the_filter(foreign):
    proc = run("verify", foreign["plugins"])
    assert proc.returncode != 0
    assert "32001 (blosc)" in proc.stderr and "HDF5_PLUGIN_PATH" in proc.stderr, proc.stderr


@pytest.mark.parametrize("kind", ["unwritten", "enums", "plugins"])
def test_export_and_cp_of_h5py_files_equal_h5py_reads(foreign, kind, tmp_path):
    path = foreign[kind]
    plugins = None
    if kind == "plugins":
        if sanitized():
            pytest.skip("plug-ins leak in a sanitizer build")
        plugins = hdf5plugin.PLUGIN_PATH  # the C library honours HDF5_PLUGIN_PATH
    run("export", path, "-o", tmp_path / "npy", plugins=plugins)
    proc = run("cp", path, tmp_path / "copy.h5", plugins=plugins)
    copied = tsnap_py.load(tmp_path / "copy.h5") if proc.returncode == 0 else {}
    with h5py.File(path, "r") as f:
        names = []
        f.visit(lambda n: names.append(n) if isinstance(f[n], h5py.Dataset) else None)
        for name in names:
            if "tsnap_dtype" in f[name].attrs:
                continue  # complex32 pairs: checked by test_foreign_h5py
            try:
                want = oracle.h5py_native(f[name])
            except OSError:  # h5py reads no big-endian bitfield of one byte
                continue
            npy = tmp_path / "npy" / (name + ".npy")
            if npy.exists():
                pyhelpers.assert_same_values(np.load(npy), want, f"export {name}")
            if name in copied:
                pyhelpers.assert_same_values(copied[name], want, f"cp {name}")
    if kind != "unwritten":  # names there hold '<', '>' and '?'
        assert proc.returncode == 0, proc.stderr

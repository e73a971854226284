"""HDF5 1.10.8's own h5dump (Debian's hdf5-tools) opens every file tsnap
writes and every golden file h5py writes, and sees the types of the format."""
import os
import re
import shutil
import subprocess

import pytest

import oracle
from conftest import VARIANTS
from conftest import DATA, GOLDEN

H5DUMP = shutil.which("h5dump")
pytestmark = pytest.mark.skipif(H5DUMP is None, reason="h5dump (Debian hdf5-tools) is not installed")

# What h5dump 1.10.8 prints as the DATATYPE of each dtype, whitespace collapsed.
DATATYPES = {
    "bool": 'H5T_ENUM { H5T_STD_I8LE; "FALSE" 0; "TRUE" 1; }',
    "int8": "H5T_STD_I8LE", "int16": "H5T_STD_I16LE",
    "int32": "H5T_STD_I32LE", "int64": "H5T_STD_I64LE",
    "uint8": "H5T_STD_U8LE", "uint16": "H5T_STD_U16LE",
    "uint32": "H5T_STD_U32LE", "uint64": "H5T_STD_U64LE",
    "float16": "16-bit little-endian floating-point 16-bit precision",
    "bfloat16": "16-bit little-endian floating-point 16-bit precision",
    "float32": "H5T_IEEE_F32LE", "float64": "H5T_IEEE_F64LE",
    "float8_e4m3fn": "H5T_STD_U8LE",
    "float8_e5m2": "8-bit floating-point 8-bit precision",
    "complex32": "16-bit little-endian floating-point 16-bit precision",
    "complex64": 'H5T_COMPOUND { H5T_IEEE_F32LE "r"; H5T_IEEE_F32LE "i"; }',
    "complex128": 'H5T_COMPOUND { H5T_IEEE_F64LE "r"; H5T_IEEE_F64LE "i"; }',
}


def h5dump(*args, plugins=False):
    """h5dump's output; plugins=True gives it hdf5plugin's filters (zstd, lz4)
    through HDF5_PLUGIN_PATH, as a user without tsnap would."""
    env = None
    if plugins:
        import hdf5plugin
        env = {**os.environ, "HDF5_PLUGIN_PATH": hdf5plugin.PLUGIN_PATH}
    proc = subprocess.run([H5DUMP, *map(str, args)], capture_output=True, text=True,
                          errors="replace", timeout=300, env=env)
    assert proc.returncode == 0, f"h5dump {' '.join(map(str, args))}: {proc.stderr[-2000:]}"
    assert "h5dump error" not in proc.stdout + proc.stderr
    return proc.stdout


def _datatype(dump):
    """The first DATATYPE of a dump, whitespace collapsed."""
    m = re.search(r"DATATYPE\s+(H5T_(?:ENUM|COMPOUND)\s*\{.*?\n\s*\}|[^\n]+)", dump, re.S)
    return re.sub(r"\s+", " ", m.group(1)).strip()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_h5dump_opens_and_dumps_every_file_the_c_library_writes(c_snapshot, variant):
    path = c_snapshot(variant).path
    header = h5dump("-H", path)  # the metadata needs no filter
    for dtype in oracle.DTYPE_NAMES:
        for case in oracle.CASES:
            assert f'DATASET "{case}"' in header
    # zstd and lz4 data need the plug-ins, which Debian's HDF5 does not ship
    full = h5dump(path, plugins=variant.startswith(("zstd", "lz4")))
    assert "DATA {" in full


@pytest.mark.parametrize("variant", ["plain", "deflate"])
@pytest.mark.parametrize("dtype", oracle.DTYPE_NAMES)
def test_h5dump_shows_each_dtype_as_the_hdf5_type_of_the_format(c_snapshot, variant, dtype):
    snap = c_snapshot(variant)
    dump = h5dump("-H", "-d", f"/{dtype}/prime3d", snap.path)
    assert _datatype(dump) == DATATYPES[dtype]
    dims = "7, 11, 13, 2" if dtype == "complex32" else "7, 11, 13"
    assert f"SIMPLE {{ ( {dims} ) / ( {dims} ) }}" in dump


@pytest.mark.parametrize("dtype", oracle.DTYPE_NAMES)
def test_h5dump_sees_shuffle_before_deflate_for_elements_wider_than_a_byte(c_snapshot, dtype):
    dump = h5dump("-p", "-H", "-d", f"/{dtype}/rows", c_snapshot("deflate").path)
    filters = re.sub(r"\s+", " ", re.search(r"FILTERS \{(.*?)\n   \}", dump, re.S).group(1))
    wide = oracle.DTYPES[dtype][0] > 1  # complex32's element is float16
    want = "COMPRESSION DEFLATE { LEVEL 1 }"
    if wide:
        want = "PREPROCESSING SHUFFLE " + want
    assert filters.strip() == want


@pytest.mark.parametrize("fname", sorted(GOLDEN))
def test_h5dump_opens_every_committed_golden_file(fname):
    h5dump("-H", DATA / fname)
    h5dump(DATA / fname)


def test_h5dump_opens_every_golden_file_written_at_test_time(fresh):
    for fname in fresh.expect:
        h5dump("-H", fresh.dir / fname)
        h5dump(fresh.dir / fname)

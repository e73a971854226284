"""netCDF-4 files, written by the netCDF4 package (the netCDF-C library over
HDF5): dimension scales, _FillValue, unlimited dimensions, groups,
compression, enums, big-endian variables, variables never written and
netCDF's dimensions without a variable.  Every numeric variable loads equal
to h5py's read of the same dataset (HDF5's view: an unlimited variable keeps
its own written length), copied, with mmap="auto" and in hyperslabs;
strings are refused with a tsnap.TypeError naming the file and variable."""
import h5py
import numpy as np
import pytest

import oracle
import pyhelpers
import tsnap
from clihelpers import rng_for

netCDF4 = pytest.importorskip("netCDF4")


def write_netcdf_file(path, seed):
    """-> (numeric dataset names, {refused name: word})."""
    rng = rng_for(seed, "netcdf")
    with netCDF4.Dataset(str(path), "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("lat", 5)
        ds.createDimension("lon", 7)
        ds.createDimension("level", 3)  # no variable: a dimension scale without data
        t = ds.createVariable("time", "f8", ("time",))
        t[:] = np.arange(4) * 0.5
        lat = ds.createVariable("lat", "f4", ("lat",))
        lat[:] = np.linspace(-10, 10, 5)
        temp = ds.createVariable("temp", "f4", ("time", "lat", "lon"), zlib=True, complevel=4,
                                 shuffle=True, fill_value=-999.0, chunksizes=(1, 3, 4))
        temp[0:2] = rng.standard_normal((2, 5, 7))
        temp[3, 1:3] = rng.standard_normal((2, 7))
        counts = ds.createVariable("counts", "i2", ("time",), fill_value=-1)
        counts[0:7] = rng.integers(0, 100, 7)  # longer than time's own variable
        ds.createVariable("nofill", "i8", ("lat",), fill_value=False)
        ds.createVariable("unwritten", "f8", ("lat", "lon"))
        ds.createVariable("unwritten_fill", "u4", ("lat", "lon"), fill_value=123456)
        chk = ds.createVariable("checked", "f8", ("level", "lon"), fletcher32=True, zlib=True)
        chk[:] = rng.standard_normal((3, 7))
        big = ds.createVariable("big", "i4", ("lon",), endian="big")
        big[:] = rng.integers(-10**6, 10**6, 7)
        scalar = ds.createVariable("scalar", "f8", ())
        scalar.assignValue(3.25)
        cloud_t = ds.createEnumType(np.uint8, "cloud_t", {"clear": 0, "cumulus": 1, "stratus": 2})
        cloud = ds.createVariable("cloud", cloud_t, ("lat",), fill_value=0)
        cloud[0:2] = [1, 2]
        sub = ds.createGroup("sub")
        sub.createDimension("n", None)
        v = sub.createVariable("v", "u1", ("n", "lon"), zlib=True)
        v[0:3, 2:4] = 9
        deeper = sub.createGroup("deeper")
        w = deeper.createVariable("w", "f4", ("lat", "lon"), zlib=True,
                                  least_significant_digit=2)
        w[:] = rng.standard_normal((5, 7))
        names = ds.createVariable("names", str, ("lat",))
        names[0] = "abc"
    with h5py.File(path, "r") as f:
        all_names = []
        f.visit(lambda n: all_names.append(n) if isinstance(f[n], h5py.Dataset) else None)
    refused = {"names": "string"}
    return [n for n in all_names if n not in refused], refused


@pytest.fixture(scope="module")
def ncfile(tmp_path_factory, seed):
    path = tmp_path_factory.mktemp("netcdf") / "data.nc"
    numeric, refused = write_netcdf_file(path, seed)
    return path, numeric, refused


def h5py_read(path, name, sel=()):
    with h5py.File(path, "r") as f:
        a = oracle.h5py_native(f[name])
    return np.asarray(a[sel])


def test_every_numeric_variable_loads_as_h5py_reads_it(ncfile):
    path, numeric, _ = ncfile
    assert {"time", "temp", "counts", "level", "sub/v", "sub/deeper/w", "cloud"} <= set(numeric)
    for name in numeric:
        want = h5py_read(path, name)
        pyhelpers.assert_same_values(tsnap.load(path, name), want, name)
        pyhelpers.assert_same_values(tsnap.load(path, name, mmap="auto"), want, name)


def test_an_unlimited_variable_keeps_its_own_written_length(ncfile):
    path, _, _ = ncfile
    with tsnap.open(path) as f, netCDF4.Dataset(str(path)) as ds:
        assert f["time"].shape == (4,)  # HDF5's view ...
        assert ds["time"].shape == (7,)  # ... where netCDF pads to the longest variable
        assert f["counts"].shape == (7,)
        np.testing.assert_array_equal(f["counts"][...], ds["counts"][:].data)
        np.testing.assert_array_equal(f["time"][...], ds["time"][:4].data)
        # netCDF's own view of a variable never written: its _FillValue
        np.testing.assert_array_equal(f["unwritten_fill"][...], ds["unwritten_fill"][:].data)
        np.testing.assert_array_equal(f["temp"][2], np.full((5, 7), -999.0, np.float32))


def test_hyperslabs_across_written_and_unwritten_chunks(ncfile):
    path, numeric, _ = ncfile
    with tsnap.open(path) as f:
        for sel in (np.s_[1:4, 2:5, ::2], np.s_[::2, 4], np.s_[3, 1:3], np.s_[2]):
            pyhelpers.assert_same_values(f["temp"][sel], h5py_read(path, "temp", sel), sel)
        for name in numeric:
            if f[name].ndim and f[name].size:
                pyhelpers.assert_same_values(f[name][1::2], h5py_read(path, name, np.s_[1::2]),
                                             name)


def test_enum_names_and_dimension_scales(ncfile):
    path, _, _ = ncfile
    with tsnap.open(path) as f:
        assert f["cloud"].enum == {"clear": 0, "cumulus": 1, "stratus": 2}
        assert f["level"].shape == (3,)  # a dimension without a variable
        assert f["time"].enum is None
        f.verify()


def test_strings_are_refused_naming_the_file_and_variable(ncfile):
    path, _, refused = ncfile
    for name, word in refused.items():
        with pytest.raises(tsnap.Error) as info:
            tsnap.load(path, name)
        assert isinstance(info.value, tsnap.errors.TypeError)
        msg = str(info.value)
        assert str(path) in msg and f"'{name}'" in msg and word in msg, msg

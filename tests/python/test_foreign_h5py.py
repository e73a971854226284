"""HDF5 files other libraries write, as h5py writes them: chunks never
written (a resizable dataset grown and partly filled, a fill value and a
partial write, allocation late, incremental and early), contiguous data
never written, enums and bitfields of every size and byte order, and
filters tsnap does not decode (blosc, bitshuffle, bzip2 through
hdf5plugin, with it and without it).  Every dataset loads equal to h5py's
read, whole, copied, with mmap="auto" and in hyperslabs that cross written
and unwritten chunks; the files also serve the command's and the fuzz
tests (write_* below)."""
import json
import os
import re
import subprocess
import sys

import h5py
import hdf5plugin
import numpy as np
import pytest
from h5py import h5d, h5p, h5s, h5t

import oracle
import pyhelpers
import tsnap
from clihelpers import rng_for

# NumPy dtypes h5py writes, with fill values (both byte orders where it matters).
FILL_DTYPES = ["i1", "i2", "<i4", ">i4", "i8", "u1", "u2", "u4", ">u8", "<f2", ">f2", "<f4",
               "<f8", ">f8", "<c8", "<c16", ">c16", "?"]
COMPRESSIONS = [None, "gzip", "lzf"]
ALLOC = {"late": h5d.ALLOC_TIME_LATE, "incr": h5d.ALLOC_TIME_INCR,
         "early": h5d.ALLOC_TIME_EARLY}
# Hyperslabs of a (23, 7) dataset in chunks of (4, 3): across written and
# unwritten chunks, with steps, single rows, empty ones.
SLICES = [np.s_[2:20, 1:6], np.s_[15:23], np.s_[::3, ::2], np.s_[5], np.s_[7:8, 4:5],
          np.s_[3:3], np.s_[1:22:5, 6], np.s_[...]]
ENUM_BASES = ["i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8"]
BITFIELDS = {1: (h5t.STD_B8LE, h5t.STD_B8BE), 2: (h5t.STD_B16LE, h5t.STD_B16BE),
             4: (h5t.STD_B32LE, h5t.STD_B32BE), 8: (h5t.STD_B64LE, h5t.STD_B64BE)}
PLUGIN_FILTERS = {"blosc": (32001, hdf5plugin.Blosc), "bitshuffle": (32008, hdf5plugin.Bitshuffle),
                  "bzip2": (307, hdf5plugin.BZip2)}


def random_values(rng, dtype, shape):
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.random(shape) < 0.5
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, size=shape, dtype=dt.newbyteorder("="),
                            endpoint=True).astype(dt)
    if dt.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dt)
    return (rng.standard_normal(shape) * 100).astype(dt)


def one_value(rng, dtype):
    return random_values(rng, dtype, ())[()]


def _dcpl(alloc):
    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_alloc_time(ALLOC[alloc])
    return dcpl


# ---- the files ----------------------------------------------------------

def write_unwritten(path, seed):
    """Chunked datasets with chunks never written, of every dtype, codec and
    allocation time; contiguous ones never written.  -> {name: dtype}."""
    names = {}
    with h5py.File(path, "w") as f:
        for dtype in FILL_DTYPES:
            rng = rng_for(seed, "unwritten", dtype)
            for comp in COMPRESSIONS:
                for alloc in ALLOC:
                    if alloc != "incr" and comp is not None:
                        # filtered data: HDF5 allocates early or incrementally
                        if alloc == "late":
                            continue
                    for with_fill in (True, False):
                        name = f"{dtype}/{comp}/{alloc}/{'fill' if with_fill else 'nofill'}"
                        kw = {"fillvalue": one_value(rng, dtype)} if with_fill else {}
                        d = f.create_dataset(name, shape=(9, 7), maxshape=(None, 7),
                                             chunks=(4, 3), dtype=dtype, compression=comp,
                                             dcpl=_dcpl(alloc), **kw)
                        d[1:3, 2:6] = random_values(rng, dtype, (2, 4))
                        d.resize((23, 7))  # grown, then partly filled
                        d[17:20] = random_values(rng, dtype, (3, 7))
                        names[name] = dtype
            name = f"{dtype}/contiguous"
            f.create_dataset(name, shape=(23, 7), dtype=dtype, fillvalue=one_value(rng, dtype))
            names[name] = dtype
        # complex32 as tsnap stores it (float16 pairs), partly written
        rng = rng_for(seed, "unwritten", "complex32")
        d = f.create_dataset("complex32/gzip", shape=(23, 7, 2), chunks=(4, 3, 2), dtype="<f2",
                             compression="gzip", fillvalue=np.float16(1.5))
        d.attrs["tsnap_dtype"] = "complex32"
        d[4:9] = random_values(rng, "<f2", (5, 7, 2))
        names["complex32/gzip"] = "complex32"
        # a 1-d dataset appended to in steps, the last one short
        d = f.create_dataset("log", shape=(0,), maxshape=(None,), chunks=(1000,), dtype="<f8",
                             compression="gzip", fillvalue=-1.0)
        for k in range(3):
            d.resize((d.shape[0] + 1500,))
            d[-700:] = random_values(rng, "<f8", (700,))
        names["log"] = "<f8"
        f.create_dataset("empty_chunked", shape=(0, 5), maxshape=(None, 5), chunks=(4, 5),
                         dtype="<i4", compression="gzip")
        names["empty_chunked"] = "<i4"
        d = f.create_dataset("scalar_never_written", shape=(), dtype="<i2", fillvalue=-7)
        names["scalar_never_written"] = "<i2"
    return names


def write_enums(path, seed):
    """Enums over every integer type and both byte orders, chunked with a
    fill value and partly written, and bitfields of every size and order.
    -> {name: (tsnap dtype, the values as written or None, enum members)}."""
    out = {}
    with h5py.File(path, "w") as f:
        for base in ENUM_BASES:
            for order in "<>":
                rng = rng_for(seed, "enum", base, order)
                dt = np.dtype(order + base)
                # (h5py takes members up to the int64 maximum)
                raw = random_values(rng, base, (6,)).tolist()
                members = {f"M{k}": int(v) for k, v in
                           enumerate(sorted(set(min(v, 2**63 - 1) for v in raw)))}
                vals = np.array(list(members.values()), dt)
                name = f"enum_{order == '<' and 'le' or 'be'}_{base}"
                d = f.create_dataset(name, shape=(30,), chunks=(8,), compression="gzip",
                                     dtype=h5py.enum_dtype(members, basetype=dt),
                                     fillvalue=vals[0])
                d[3:11] = vals[rng.integers(0, len(vals), 8)]
                out[name] = (np.dtype(base).name, None, members)
                plain = name + "_contiguous"
                f.create_dataset(plain, data=vals[rng.integers(0, len(vals), (3, 5))],
                                 dtype=h5py.enum_dtype(members, basetype=dt))
                out[plain] = (np.dtype(base).name, None, members)
        for size, types in BITFIELDS.items():
            for order, ftype in zip(("le", "be"), types):
                rng = rng_for(seed, "bitfield", size, order)
                want = random_values(rng, f"u{size}", (5, 3))
                name = f"bitfield_{order}_{size * 8}"
                space = h5s.create_simple(want.shape)
                dset = h5d.create(f.id, name.encode(), ftype, space)
                raw = want.astype(want.dtype.newbyteorder(">" if order == "be" else "<"))
                dset.write(h5s.ALL, h5s.ALL, raw, mtype=ftype)
                out[name] = (f"uint{size * 8}", want, None)
                # chunked, compressed and written in part: zeros elsewhere
                dcpl = h5p.create(h5p.DATASET_CREATE)
                dcpl.set_chunk((4,))
                dcpl.set_deflate(3)
                space = h5s.create_simple((18,))
                dset = h5d.create(f.id, (name + "_partial").encode(), ftype, space, dcpl=dcpl)
                part = random_values(rng, f"u{size}", (6,))
                space.select_hyperslab((5,), (6,))
                dset.write(h5s.create_simple((6,)), space,
                           part.astype(part.dtype.newbyteorder(">" if order == "be" else "<")),
                           mtype=ftype)
                full = np.zeros(18, f"u{size}")
                full[5:11] = part
                out[name + "_partial"] = (f"uint{size * 8}", full, None)
    return out


def write_plugin_filters(path, seed, codecs=tuple(PLUGIN_FILTERS)):
    """Datasets through blosc, bitshuffle and bzip2 (hdf5plugin's), or those
    of `codecs`.  -> {name: values}."""
    out = {}
    with h5py.File(path, "w") as f:
        for name, (fid, make) in PLUGIN_FILTERS.items():
            if name not in codecs:
                continue
            rng = rng_for(seed, "plugin", name)
            a = random_values(rng, "<f4", (40, 30))
            f.create_dataset(name, data=a, chunks=(16, 30), **make())
            out[name] = a
        # partly written through a plug-in: the fill value without it
        d = f.create_dataset("blosc_partial", shape=(40,), chunks=(8,), dtype="<i4",
                             fillvalue=5, **hdf5plugin.Blosc())
        d[9:14] = np.arange(5)
        out["blosc_partial"] = np.array([5] * 9 + list(range(5)) + [5] * 26, np.int32)
    return out


@pytest.fixture(scope="module")
def unwritten(tmp_path_factory, seed):
    path = tmp_path_factory.mktemp("foreign") / "unwritten.h5"
    return path, write_unwritten(path, seed)


@pytest.fixture(scope="module")
def enums(tmp_path_factory, seed):
    path = tmp_path_factory.mktemp("foreign") / "enums.h5"
    return path, write_enums(path, seed)


@pytest.fixture(scope="module")
def plugins(tmp_path_factory, seed):
    path = tmp_path_factory.mktemp("foreign") / "plugins.h5"
    return path, write_plugin_filters(path, seed)


def h5py_read(path, name, sel=()):
    with h5py.File(path, "r") as f:
        ds = f[name]
        if "tsnap_dtype" in ds.attrs:  # complex32 pairs
            a = ds[sel]
            out = np.empty(a.shape[:-1], np.complex64)
            out.real, out.imag = a[..., 0], a[..., 1]
            return out
        return oracle.h5py_native(ds) if sel == () else np.asarray(
            oracle.h5py_native(ds)[sel])


# ---- chunks never written -------------------------------------------------

def test_every_unwritten_dataset_loads_as_h5py_reads_it(unwritten):
    path, names = unwritten
    whole = tsnap.load(path)
    auto = tsnap.load(path, mmap="auto")
    for name in names:
        want = h5py_read(path, name)
        pyhelpers.assert_same_values(whole[name], want, f"load {name}")
        pyhelpers.assert_same_values(auto[name], want, f"mmap=auto {name}")


def test_hyperslabs_across_written_and_unwritten_chunks(unwritten):
    path, names = unwritten
    with tsnap.open(path) as f:
        for name in names:
            if f[name].shape != (23, 7):
                continue
            full = h5py_read(path, name)
            for sel in SLICES:
                pyhelpers.assert_same_values(f[name][sel], np.asarray(full[sel]),
                                             f"{name}[{sel}]")


def test_unwritten_data_is_not_mappable_and_says_so(unwritten):
    path, names = unwritten
    with tsnap.open(path) as f:
        for name in names:
            t = f[name]
            if t.size == 0:
                continue
            assert not t.mappable, name
            if name.endswith("contiguous") and not name.startswith(">"):
                assert "not (fully) allocated" in t.map_status, (name, t.map_status)
            with pytest.raises(tsnap.NotMappableError):
                t.numpy(mmap=True)


def test_verify_reads_unwritten_chunks_as_the_fill_value(unwritten):
    path, names = unwritten
    tsnap.verify(path)
    with tsnap.open(path) as f:
        for name in names:
            f.verify(name)


def test_a_tsnap_copy_of_partly_written_data_reads_back_equal(unwritten, tmp_path):
    path, names = unwritten
    data = tsnap.load(path)
    out = tmp_path / "copy.h5"
    plain = {k: f"t{i}_" + re.sub("[^a-z0-9]", "_", k.lower()) for i, k in enumerate(data)}
    tsnap.save(out, {plain[k]: v for k, v in data.items()}, compression="zstd")
    back = tsnap.load(out, verify=True)
    for k, v in data.items():
        pyhelpers.assert_same_values(back[plain[k]], v, k)


# ---- enums and bitfields --------------------------------------------------

def test_enums_load_as_their_integer_type_with_their_names(enums):
    path, info = enums
    loaded = tsnap.load(path)
    with tsnap.open(path) as f, h5py.File(path, "r") as g:
        for name, (dtype, want, members) in info.items():
            got = loaded[name]
            assert got.dtype == np.dtype(dtype), name
            if want is None:
                want = oracle.h5py_native(g[name])
            pyhelpers.assert_same_values(got, want.astype(dtype), name)
            assert f[name].enum == members, name
            if members:
                assert h5py.check_enum_dtype(g[name].dtype) == members
            pyhelpers.assert_same_values(f[name][2:12:3], np.asarray(want.astype(dtype)[2:12:3]),
                                         f"{name}[2:12:3]")


def test_little_endian_enums_and_bitfields_of_full_width_map(enums):
    path, info = enums
    with tsnap.open(path) as f:
        for name in info:
            if "_le_" in name and ("contiguous" in name or name.startswith("bitfield")) \
                    and not name.endswith("_partial"):
                assert f[name].mappable, (name, f[name].map_status)
                m = f[name].numpy(mmap=True)
                assert pyhelpers.is_mapped(m)
                pyhelpers.assert_same_values(m, f[name].numpy(), name)


def test_tsnap_bool_stays_bool_and_has_no_enum_names(tmp_path):
    path = tmp_path / "b.h5"
    a = np.array([True, False, True])
    tsnap.save(path, {"b": a})
    with tsnap.open(path) as f:
        assert f["b"].dtype == np.bool_ and f["b"].enum is None
        np.testing.assert_array_equal(f["b"][...], a)
    with h5py.File(path, "w") as g:
        g["h"] = a
    with tsnap.open(path) as f:
        assert f["h"].dtype == np.bool_ and f["h"].enum is None


# ---- filters tsnap does not decode ----------------------------------------

def test_plugin_filters_load_through_hdf5plugin(plugins):
    path, values = plugins
    loaded = tsnap.load(path, mmap="auto")
    with tsnap.open(path) as f:
        for name, want in values.items():
            pyhelpers.assert_same_values(loaded[name], want, name)
            pyhelpers.assert_same_values(f[name][3:30:4], want[3:30:4], name)
            if not name.startswith("bitshuffle"):  # tsnap decodes that one itself
                assert f[name].compression == name.split("_")[0], name
            f.verify(name)
    with h5py.File(path, "r") as g:
        for name in values:
            pyhelpers.assert_same_values(loaded[name], g[name][()], name)


WITHOUT_HDF5PLUGIN = r"""
import importlib.abc, json, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "hdf5plugin":
            raise ImportError("hidden")
sys.meta_path.insert(0, Hide())
import tsnap
out = {}
for name in sys.argv[2:]:
    try:
        tsnap.load(sys.argv[1], name)
        out[name] = ["loaded", ""]
    except tsnap.Error as e:
        assert type(e) is not tsnap.FilterError or issubclass(tsnap.FilterError, tsnap.Error)
        out[name] = [type(e).__name__, str(e),
                     isinstance(e, tsnap.FormatError), isinstance(e, OSError)]
print(json.dumps(out))
"""


def run_without_hdf5plugin(path, names, plugin_path=None):
    """tsnap.load of each name in a fresh interpreter that cannot import
    hdf5plugin, with HDF5_PLUGIN_PATH unset or set to `plugin_path`."""
    env = {k: v for k, v in os.environ.items() if k != "HDF5_PLUGIN_PATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(pyhelpers.HERE)] + [p for p in sys.path if p])
    if plugin_path:
        env["HDF5_PLUGIN_PATH"] = plugin_path
    proc = subprocess.run([sys.executable, "-c", WITHOUT_HDF5PLUGIN, str(path), *names],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, pyhelpers.describe_exit(proc)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_without_hdf5plugin_a_missing_filter_is_a_filter_error_naming_it(plugins):
    path, values = plugins
    got = run_without_hdf5plugin(path, values)
    for name in values:
        kind, msg = got[name][:2]
        codec = name.split("_")[0]
        if codec == "bitshuffle" and kind == "loaded":
            continue  # tsnap decodes bitshuffle itself
        assert kind == "FilterError", (name, got[name])  # tsnap.FilterError
        assert not got[name][2] and got[name][3], name  # not FormatError; an OSError
        for word in (str(path), f"'{name}'", str(PLUGIN_FILTERS[codec][0]), codec,
                     "hdf5plugin", "HDF5_PLUGIN_PATH"):
            assert word in msg, (word, msg)


def test_hdf5_plugin_path_is_honoured_without_hdf5plugin(plugins):
    path, values = plugins
    got = run_without_hdf5plugin(path, values, hdf5plugin.PLUGIN_PATH)
    assert all(v[0] == "loaded" for v in got.values()), got


def test_import_does_not_import_hdf5plugin_or_h5py():
    proc = pyhelpers.run_python("import sys, tsnap; "
                                "print(sorted(m for m in ('h5py', 'hdf5plugin') "
                                "if m in sys.modules))")
    assert proc.returncode == 0, pyhelpers.describe_exit(proc)
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_filter_names_are_the_registered_ones():
    from tsnap import _core
    for fid, name in {1: "deflate", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit",
                      6: "scaleoffset", 307: "bzip2", 32000: "lzf", 32001: "blosc",
                      32004: "lz4", 32008: "bitshuffle", 32013: "zfp", 32015: "zstd",
                      32017: "sz", 32026: "blosc2"}.items():
        assert _core.filter_name(fid) == name
    assert _core.filter_name(31999) is None


# ---- into CUDA memory -------------------------------------------------------

def test_gpu_unwritten_chunks_and_enums_read_into_device_memory(unwritten, enums):
    """The host path then the copy: equal to h5py's read, byte for byte."""
    from test_py_cuda import CU, NO_GPU, to_host
    if CU is None:
        pytest.skip(f"no CUDA device: {NO_GPU}")
    for path, names in ((unwritten[0], list(unwritten[1])), (enums[0], list(enums[1]))):
        with tsnap.open(path) as f:
            for name in names:
                if f[name].tsnap_dtype == "complex32":  # 4 bytes on the device, 8 on the host
                    continue
                want = np.ascontiguousarray(f[name][...])  # h5py's read: the tests above
                for d in (f[name].to("cuda"), tsnap.load(path, name, device="cuda")):
                    got = to_host(d.__cuda_array_interface__["data"][0], want.nbytes)
                    assert np.array_equal(got, want.reshape(-1).view(np.uint8)), name

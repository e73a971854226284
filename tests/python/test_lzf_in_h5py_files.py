"""h5py's LZF filter (compression="lzf", HDF5 filter 32000) lives inside h5py,
not in a plug-in libhdf5 could load: tsnap's C reader decodes it itself.

Files h5py writes now, with this run's random data (every dtype h5py maps,
shapes with edge chunks and of one element, with and without shuffle, values
that compress and bytes that do not), read through tsnap_testio as h5py reads
them and as they were given to h5py; so does the committed golden file
tests/data/h5py_lzf.h5.  A damaged LZF chunk fails the read, naming LZF."""
import h5py
import numpy as np
import pytest
import xxhash

import oracle
from conftest import DATA, _make_golden

DTYPES = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
          "float16", "float32", "float64", "complex64", "complex128"]
# name -> (shape, chunk shape)
SHAPES = {
    "one": ((1,), (1,)),
    "primes": ((7, 11, 13), (3, 5, 7)),      # edge chunks on every axis
    "rows": ((97, 31), (16, 31)),
    "vector": ((1009,), (128,)),
}
# small: few distinct values, so LZF finds matches; smooth: a quantised
# field; noise: random bytes, which LZF cannot shrink, so h5py stores those
# chunks as they are, their filter mask bit set.
KINDS = ["small", "smooth", "noise"]
CASES = [(d, s, k, sh) for d in DTYPES for s in SHAPES for k in KINDS for sh in (False, True)]


def _name(dtype, shape, kind, shuffle):
    return f"{dtype}/{shape}/{kind}/{'shuffle' if shuffle else 'plain'}"


def _values(rng, dtype, shape, kind):
    dt = np.dtype(dtype).newbyteorder("<") if dtype != "bool" else np.dtype(bool)
    n = int(np.prod(shape))
    if dtype == "bool":
        bits = rng.integers(0, 2, n) if kind == "noise" else np.arange(n) // 7 % 2
        return bits.astype(bool).reshape(shape)
    if kind == "noise":
        return np.frombuffer(rng.bytes(n * dt.itemsize), dt).reshape(shape).copy()
    if kind == "small":
        v = rng.integers(-6, 7, n)
    else:
        v = np.round(40 * np.sin(np.arange(n) / 17.0 + rng.uniform(0, 6)))
    if dt.kind == "u":
        v = np.abs(v)
    if dt.kind == "f":
        v = v / 4
    if dt.kind == "c":
        return (v / 4 + 1j * v[::-1] / 8).astype(dt).reshape(shape)
    return v.astype(dt).reshape(shape)


class LzfFile:
    """A file of LZF datasets h5py wrote, read once by tsnap_testio."""

    def __init__(self, path, values, workdir):
        self.path = path
        self.values = values
        self.manifest, self.rdir = None, workdir / "read"
        oracle.run_testio("read", path, self.rdir)
        self.manifest = oracle.read_manifest(self.rdir)


@pytest.fixture(scope="module")
def fresh_lzf(testio, seed, tmp_path_factory):
    rng = np.random.default_rng([seed, 32000])
    out = tmp_path_factory.mktemp("lzf-fresh")
    values = {}
    with h5py.File(out / "lzf.h5", "w") as f:
        for dtype, shape, kind, shuffle in CASES:
            name = _name(dtype, shape, kind, shuffle)
            values[name] = _values(rng, dtype, SHAPES[shape][0], kind)
            f.create_dataset(name, data=values[name], chunks=SHAPES[shape][1],
                             compression="lzf", shuffle=shuffle)
    return LzfFile(out / "lzf.h5", values, out)


def _check_read_as_h5py_reads(source, path, name, given=None):
    rec = source.manifest["tensors"][name]
    assert "error" not in rec, rec.get("error")
    assert "read_error" not in rec, rec.get("read_error")
    with h5py.File(path, "r") as f:
        ds = f[name]
        assert rec["shape"] == list(ds.shape)
        raw = oracle.tensor_bytes(source.rdir, rec)
        got = oracle.expected_h5py_array(rec["dtype"], raw, rec["shape"])
        oracle.assert_same_values(got, oracle.h5py_native(ds), f"{name} (h5py's read)")
        if given is not None:
            oracle.assert_same_values(got, given.astype(given.dtype.newbyteorder("=")),
                                      f"{name} (the values given to h5py)")
        plist = ds.id.get_create_plist()
        filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    assert rec["filters"] == filters and filters[-1] == 32000
    assert rec["map_status"] == oracle.MAP_FILTERED, rec["map_status_str"]
    if rec["nbytes"] and rec["shape"]:
        assert rec.get("slab") == "ok", "a strided hyperslab read equals the whole read"
    return raw


@pytest.mark.parametrize("dtype,shape,kind,shuffle", CASES,
                         ids=[_name(*c).replace("/", "-") for c in CASES])
def test_the_c_reader_reads_an_lzf_dataset_h5py_wrote_as_h5py_does(fresh_lzf, dtype, shape,
                                                                  kind, shuffle):
    name = _name(dtype, shape, kind, shuffle)
    assert fresh_lzf.manifest["tensors"][name]["dtype"] == dtype
    _check_read_as_h5py_reads(fresh_lzf, fresh_lzf.path, name, fresh_lzf.values[name])


def test_the_fresh_file_holds_both_raw_and_compressed_lzf_chunks(fresh_lzf):
    """Without both kinds the tests above would not cover HDF5 skipping the
    filter for a chunk h5py stored raw."""
    raw = compressed = 0
    with h5py.File(fresh_lzf.path, "r") as f:
        for dtype, shape, kind, shuffle in CASES:
            ds = f[_name(dtype, shape, kind, shuffle)]
            bit = 1 << (1 if shuffle else 0)
            for i in range(ds.id.get_num_chunks()):
                if ds.id.get_chunk_info(i).filter_mask & bit:
                    raw += 1
                else:
                    compressed += 1
    assert raw > 20 and compressed > 20, (raw, compressed)


# ---------------------------------------------------------------------------
# The golden file (tests/data/make_golden.py, write_lzf)

GOLDEN_LZF = "h5py_lzf.h5"


@pytest.fixture(scope="module")
def golden_lzf(testio, tmp_path_factory):
    return LzfFile(DATA / GOLDEN_LZF, None, tmp_path_factory.mktemp("lzf-golden"))


def _golden_names():
    with h5py.File(DATA / GOLDEN_LZF, "r") as f:
        return sorted(f)


@pytest.mark.parametrize("name", _golden_names())
def test_the_c_reader_reads_the_committed_lzf_golden_file_as_h5py_does(golden_lzf, name):
    raw = _check_read_as_h5py_reads(golden_lzf, DATA / GOLDEN_LZF, name)
    with h5py.File(DATA / GOLDEN_LZF, "r") as f:
        want = f[name].attrs["expected_xxh3"]
    assert "xxh3-64:%016x" % xxhash.xxh3_64_intdigest(raw, seed=0) == want


def test_the_committed_lzf_golden_file_is_what_make_golden_builds(seed, tmp_path):
    """The same datasets, types, shapes and filters (the values differ: the
    file here comes from this run's random data)."""
    path = tmp_path / GOLDEN_LZF
    exp = _make_golden().write_lzf(path, np.random.default_rng([seed, 7]))
    with h5py.File(DATA / GOLDEN_LZF, "r") as committed, h5py.File(path, "r") as fresh:
        assert sorted(committed) == sorted(fresh) == sorted(exp)
        for name in exp:
            a, b = committed[name], fresh[name]
            pa, pb = a.id.get_create_plist(), b.id.get_create_plist()
            assert (a.dtype, a.shape, a.chunks) == (b.dtype, b.shape, b.chunks), name
            assert [pa.get_filter(i) for i in range(pa.get_nfilters())] == \
                [pb.get_filter(i) for i in range(pb.get_nfilters())], name
    assert (DATA / GOLDEN_LZF).stat().st_size < 64 * 1024


# ---------------------------------------------------------------------------
# Damage

def test_a_damaged_lzf_chunk_fails_the_read_naming_lzf_and_other_chunks_still_read(
        testio, tmp_path):
    path = tmp_path / "damaged.h5"
    data = np.arange(4 * 64, dtype="<i4").reshape(4, 64) // 3
    with h5py.File(path, "w") as f:
        f.create_dataset("cut", data=data, chunks=(1, 64), compression="lzf")
        f.create_dataset("whole", data=data, chunks=(1, 64), compression="lzf")
        mask, chunk = f["cut"].id.read_direct_chunk((2, 0))
        assert mask == 0, "the chunk is compressed"
        f["cut"].id.write_direct_chunk((2, 0), chunk[:-3])
    oracle.run_testio("read", path, tmp_path / "read")
    manifest = oracle.read_manifest(tmp_path / "read")
    err = manifest["tensors"]["cut"]["read_error"]
    assert err["code"] == oracle.EFORMAT
    assert "LZF" in err["message"] and "cut" in err["message"], err["message"]
    rec = manifest["tensors"]["whole"]
    assert "read_error" not in rec
    raw = oracle.tensor_bytes(tmp_path / "read", rec)
    assert np.array_equal(np.frombuffer(raw, "<i4").reshape(4, 64), data)

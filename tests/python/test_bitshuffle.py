"""Bit shuffle (save(shuffle="bit"), the default before zstd): chunks in
exactly the byte format of the bitshuffle filter (32008) that hdf5plugin
writes and reads.  h5py + hdf5plugin read tsnap's chunks and tsnap reads
hdf5plugin's, in each of the filter's forms (no compression, LZ4, zstd),
for every element size."""
import json

import h5py
import numpy as np
import pytest

import tsnap
from clihelpers import tsnap as tsnap_cli
from pyhelpers import DTYPES, assert_bits_equal, assert_same_values, expected_from_h5py, values

hdf5plugin = pytest.importorskip("hdf5plugin")
numcodecs = pytest.importorskip("numcodecs")


def reference_bitshuffle(raw, elem):
    """The filter's layout, from its definition: blocks of 8 KiB of
    elements (a multiple of 8, at least 128); in each block of n elements,
    bit k of byte j of element i goes to bit i % 8 of byte (8j + k) n / 8 +
    i / 8; the last block is cut to a multiple of 8 and the rest copied."""
    block = max(128, 8192 // elem // 8 * 8)
    a = np.frombuffer(raw, np.uint8).reshape(-1, elem)
    out, i = [], 0
    while len(a) - i >= 8:
        n = min(block, len(a) - i)
        n -= n % 8
        bits = np.unpackbits(a[i:i + n], axis=1, bitorder="little")  # (n, 8 elem)
        out.append(np.packbits(bits.T, axis=1, bitorder="little").tobytes())
        i += n
    out.append(a[i:].tobytes())
    return b"".join(out)


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_h5py_with_hdf5plugin_reads_every_dtype_tsnap_bit_shuffled(tmp_path, seed, codec, dtype):
    rng = np.random.default_rng([seed, 5, len(dtype)])
    data = {"odd": values(rng, dtype, (37, 11)), "rows": values(rng, dtype, (3000,)),
            "one": values(rng, dtype, (1,)), "scalar": values(rng, dtype, ())}
    path = tmp_path / "b.h5"
    tsnap.save(path, data, compression=codec, shuffle="bit", chunk_bytes=4096)
    loaded = tsnap.load(path, verify=True)
    with h5py.File(path, "r") as f:
        for name, a in data.items():
            assert_bits_equal(loaded[name], a, name)
            ds = f[name]
            if a.ndim:
                ids = [ds.id.get_create_plist().get_filter(i)[0]
                       for i in range(ds.id.get_create_plist().get_nfilters())]
                assert ids == [32008, 32015 if codec == "zstd" else 32004], ids
            assert_same_values(expected_from_h5py(ds, dtype), a, name)  # h5py drops NaN payloads


def test_complex32_bit_shuffled_reads_in_h5py_as_float16_pairs(tmp_path, seed):
    rng = np.random.default_rng([seed, 6])
    pairs = rng.standard_normal((9, 5, 2)).astype(np.float16)
    path = tmp_path / "c.h5"
    w = tsnap._core.Writer(str(path), codec=tsnap._core.CODECS["zstd"], shuffle=2)
    w.put(b"c", pairs.view(np.uint32)[..., 0], 16)  # complex32: float16 pairs, 4 bytes each
    w.commit()
    with h5py.File(path, "r") as f:
        assert_bits_equal(f["c"][()], pairs, "c")
        assert f["c"].id.get_create_plist().get_filter(0)[2][2] == 2  # the float16 element


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32", "float64", "complex128"])
def test_the_stored_chunk_is_the_filters_transpose_then_one_zstd_frame(tmp_path, seed, dtype):
    rng = np.random.default_rng([seed, 7])
    a = values(rng, dtype, (20001,))
    path = tmp_path / "r.h5"
    tsnap.save(path, {"x": a}, compression="zstd", shuffle="bit")
    with h5py.File(path, "r") as f:
        dcpl = f["x"].id.get_create_plist()
        assert dcpl.get_filter(0)[2] == (0, 5, a.dtype.itemsize, 0, 0)
        mask, raw = f["x"].id.read_direct_chunk((0,))
    assert mask == 0
    assert numcodecs.Zstd().decode(raw) == reference_bitshuffle(a.tobytes(), a.dtype.itemsize)


@pytest.mark.parametrize("cname", ["none", "lz4", "zstd"])
@pytest.mark.parametrize("dtype,shape,chunks", [
    ("uint8", (4099,), (4099,)), ("int16", (33, 70), (8, 70)), ("float32", (10007,), (3001,)),
    ("float64", (7, 11, 13), (2, 11, 13)), ("complex128", (1500,), (700,)),
    ("float32", (5,), (5,))])
def test_tsnap_reads_hdf5plugins_bitshuffle_in_every_form(tmp_path, seed, cname, dtype, shape,
                                                          chunks):
    rng = np.random.default_rng([seed, 8])
    a = values(rng, dtype, shape)
    path = tmp_path / "h.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=a, chunks=chunks, **hdf5plugin.Bitshuffle(cname=cname))
        if cname == "none" and shape == chunks:
            raw = f["x"].id.read_direct_chunk((0,) * len(shape))[1]
            assert raw == reference_bitshuffle(a.tobytes(), a.dtype.itemsize)
    assert_bits_equal(tsnap.load(path, "x"), a, "x")
    with tsnap.open(path) as f:
        sel = tuple(slice(1, None, 2) for _ in shape)
        assert_bits_equal(f["x"][sel], a[sel], "x[1::2]")


def test_shuffle_takes_only_its_values(tmp_path):
    a = np.arange(10.0)
    for bad in ("bits", True, 2, ""):
        with pytest.raises(ValueError, match="shuffle"):
            tsnap.save(tmp_path / "x.h5", {"a": a}, compression="zstd", shuffle=bad)
    for ok, ids in (("byte", [2, 32015]), (None, [32015]), ("auto", [32008, 32015])):
        tsnap.save(tmp_path / "x.h5", {"a": a}, compression="zstd", shuffle=ok)
        with h5py.File(tmp_path / "x.h5", "r") as f:
            dcpl = f["a"].id.get_create_plist()
            assert [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())] == ids
        with tsnap.open(tmp_path / "x.h5") as f:
            assert f["a"].compression == "zstd"
    tsnap.save(tmp_path / "y.h5", {"a": a}, compression="lz4")  # auto: byte shuffle for lz4
    with h5py.File(tmp_path / "y.h5", "r") as f:
        assert f["a"].id.get_create_plist().get_filter(0)[0] == 2


def test_the_command_copies_with_bit_shuffle_and_lists_it(tmp_path, seed):
    rng = np.random.default_rng([seed, 9])
    a = values(rng, "float32", (300, 70))
    src, dst = tmp_path / "src.h5", tmp_path / "dst.h5"
    tsnap.save(src, {"a": a})
    tsnap_cli("cp", "--compression", "lz4", "--shuffle", "bit", src, dst, expect=0)
    with h5py.File(dst, "r") as f:
        dcpl = f["a"].id.get_create_plist()
        assert [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())] == [32008, 32004]
        assert_bits_equal(f["a"][()], a, "a")
    (t,) = json.loads(tsnap_cli("ls", "--json", dst, expect=0).stdout)["tensors"]
    assert t["bitshuffle"] is True and t["shuffle"] is False and t["codec"] == "lz4"
    assert "lz4+bitshuffle" in tsnap_cli("ls", dst, expect=0).stdout
    assert "wants on, off, auto or bit" in tsnap_cli("cp", "--shuffle", "bits", src,
                                                     tmp_path / "x.h5", expect=2).stderr

"""The codecs: tsnap writes deflate, zstd and lz4 chunks as exactly the bytes
HDF5's filters store (h5py reads them, with hdf5plugin for zstd and lz4), and
decodes compressed chunks itself, on several threads, for files h5py wrote
with any chunk shape, filter order or mask; damaged chunks are a FormatError
naming the file, the tensor and the codec."""
import struct
import zlib

import h5py
import hdf5plugin
import numpy as np
import pytest

import oracle
import tsnap
from pyhelpers import assert_bits_equal

CODECS = ["deflate", "zstd", "lz4"]
FILTER_IDS = {"deflate": 1, "zstd": 32015, "lz4": 32004}


def smooth(rng, shape, dtype=np.float32):
    """A compressible field: low-frequency modes plus a little noise."""
    grids = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    field = sum(np.sin((3 + i) * g + rng.random()) for i, g in enumerate(grids))
    return (field + 1e-3 * rng.standard_normal(shape)).astype(dtype)


@pytest.fixture(params=[1, 3], ids=["1-thread", "3-threads"])
def threads(request):
    tsnap.set_threads(request.param)
    yield request.param
    tsnap.set_threads(0)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int16", "uint8", "complex128", "bool"])
def test_a_many_chunk_tensor_round_trips_and_h5py_reads_the_same_values(
        tmp_path, seed, codec, dtype, threads):
    rng = np.random.default_rng([seed, 71, CODECS.index(codec)])
    base = smooth(rng, (97, 61))
    data = {"bool": base > 0, "uint8": (base * 40).astype(np.uint8),
            "int16": (base * 1000).astype(np.int16),
            "complex128": base.astype(np.complex128) * (1 - 2j)}.get(dtype, base.astype(dtype))
    path = tmp_path / "m.h5"
    tsnap.save(path, {"x": data, "t": data.T}, compression=codec, chunk_bytes=1500,
               durable=False, threads=threads)
    with h5py.File(path, "r") as f:
        assert f["x"].chunks[0] < data.shape[0], "several chunks"
        assert_bits_equal(f["x"][()], data, "h5py")
        assert_bits_equal(f["t"][()], data.T, "h5py, transposed input")
        assert f["x"].attrs["tsnap_checksum"] == oracle.checksum(np.ascontiguousarray(data).tobytes())
    assert_bits_equal(tsnap.load(path, "x"), data)
    assert_bits_equal(tsnap.load(path, "t", verify=True), data.T)
    assert tsnap.verify(path) == 2


def _stored_chunk(path, name, offset):
    with h5py.File(path, "r") as f:
        ds = f[name]
        dcpl = ds.id.get_create_plist()
        filters = [dcpl.get_filter(i) for i in range(dcpl.get_nfilters())]
        mask, raw = ds.id.read_direct_chunk(offset)
        return filters, mask, raw, ds.chunks, ds.dtype.itemsize


def _unshuffle(raw, itemsize):
    return np.frombuffer(raw, np.uint8).reshape(itemsize, -1).T.tobytes()


def test_a_deflate_chunk_is_one_zlib_stream_of_the_shuffled_chunk(tmp_path, seed):
    data = smooth(np.random.default_rng([seed, 72]), (64, 50))
    path = tmp_path / "d.h5"
    tsnap.save(path, {"x": data}, compression=("deflate", 6), durable=False)
    filters, mask, raw, chunks, size = _stored_chunk(path, "x", (0, 0))
    assert [f[0] for f in filters] == [2, 1] and filters[1][2] == (6,)
    assert mask == 0, "every filter applied"
    assert raw[:1] == b"\x78", "a zlib header"
    assert _unshuffle(zlib.decompress(raw), size) == data.tobytes()


def test_a_zstd_chunk_is_one_frame_that_records_its_content_size(tmp_path, seed):
    import numcodecs
    data = smooth(np.random.default_rng([seed, 73]), (64, 50))
    path = tmp_path / "z.h5"
    tsnap.save(path, {"x": data}, compression=("zstd", 4), shuffle="byte", durable=False)
    filters, mask, raw, chunks, size = _stored_chunk(path, "x", (0, 0))
    assert [f[0] for f in filters] == [2, 32015] and filters[1][2] == (4,)
    assert mask == 0
    assert raw[:4] == b"\x28\xb5\x2f\xfd", "the zstd frame magic"
    descriptor = raw[4]
    assert descriptor >> 6 or descriptor & 0x20, "the frame header records the content size"
    decoded = numcodecs.Zstd().decode(raw)
    assert _unshuffle(decoded, size) == data.tobytes()


def test_an_lz4_chunk_has_the_plugins_header_and_size_prefixed_blocks(tmp_path, seed):
    data = smooth(np.random.default_rng([seed, 74]), (64, 50))
    path = tmp_path / "l.h5"
    tsnap.save(path, {"x": data}, compression="lz4", durable=False)
    filters, mask, raw, chunks, size = _stored_chunk(path, "x", (0, 0))
    assert [f[0] for f in filters] == [2, 32004] and filters[1][2] == (0,)
    assert mask == 0
    total, block = struct.unpack(">QI", raw[:12])
    assert total == data.nbytes and block == data.nbytes, "one block: the chunk is under 1 GiB"
    (clen,) = struct.unpack(">I", raw[12:16])
    assert 16 + clen == len(raw) and clen < data.nbytes


def test_an_incompressible_lz4_block_is_stored_raw_as_the_plugin_does(tmp_path, seed):
    data = np.random.default_rng([seed, 75]).integers(0, 256, 4000, dtype=np.uint8)
    path = tmp_path / "r.h5"
    tsnap.save(path, {"x": data}, compression="lz4", durable=False)
    _, _, raw, _, _ = _stored_chunk(path, "x", (0,))
    assert struct.unpack(">QII", raw[:16]) == (4000, 4000, 4000)
    assert raw[16:] == data.tobytes()
    with h5py.File(path, "r") as f:
        assert_bits_equal(f["x"][()], data)
    assert_bits_equal(tsnap.load(path, "x"), data)


# Files h5py writes: any chunk shape, filters in h5py's order.
H5PY_FILTERS = {
    "gzip-shuffle": dict(compression="gzip", compression_opts=4, shuffle=True),
    "gzip": dict(compression="gzip"),
    "lzf-shuffle": dict(compression="lzf", shuffle=True),
    "zstd": dict(**hdf5plugin.Zstd(clevel=5)),
    "zstd-shuffle": dict(**hdf5plugin.Zstd(), shuffle=True),
    "lz4-shuffle": dict(**hdf5plugin.LZ4(), shuffle=True),
    "lz4-small-blocks": dict(**hdf5plugin.LZ4(nbytes=100)),
    "shuffle-only": dict(shuffle=True),
}


@pytest.mark.parametrize("filters", list(H5PY_FILTERS))
@pytest.mark.parametrize("chunks", [(4, 5, 6), (1, 11, 13), (7, 1, 3), (10, 11, 13)],
                         ids=lambda c: "x".join(map(str, c)))
def test_h5py_compressed_files_with_any_chunk_shape_load_as_h5py_reads_them(
        tmp_path, seed, filters, chunks, threads):
    rng = np.random.default_rng([seed, 76, list(H5PY_FILTERS).index(filters)])
    data = smooth(rng, (10, 11, 13), np.float64)
    path = tmp_path / "h.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=data, chunks=chunks, **H5PY_FILTERS[filters])
        f.create_dataset("i", data=(data * 100).astype(">i4"), chunks=chunks,
                         **H5PY_FILTERS[filters])  # big-endian: converted, not decoded raw
    assert_bits_equal(tsnap.load(path, "x"), data)
    assert_bits_equal(tsnap.load(path, "i"), (data * 100).astype("<i4"))
    keys = [np.s_[3:9, ::2, 5], np.s_[-1, 2:, ::-3], np.s_[..., 1:12:5], np.s_[2:3, 4:5, 6:7]]
    with tsnap.open(path) as f, h5py.File(path, "r") as h:
        for key in keys:
            assert_bits_equal(f["x"][key], data[key], repr(key))
        assert_bits_equal(f["x"][1:10:4, 0:11:3, 2:13:6], h["x"][1:10:4, 0:11:3, 2:13:6])


def test_a_chunk_whose_mask_skips_a_filter_is_decoded_as_its_mask_says(tmp_path, seed):
    """HDF5 stores, per chunk, which filters it skipped; such a chunk must
    not be run through them."""
    data = smooth(np.random.default_rng([seed, 77]), (8, 100))
    path = tmp_path / "mask.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("x", shape=data.shape, dtype=data.dtype, chunks=(4, 100),
                              compression="gzip", shuffle=True)
        row0 = data[:4].tobytes()
        # chunk 0: shuffle skipped (bit 0), only deflated
        ds.id.write_direct_chunk((0, 0), zlib.compress(row0), filter_mask=0b01)
        # chunk 1: both applied
        shuffled = np.frombuffer(data[4:].tobytes(), np.uint8).reshape(-1, 4).T.tobytes()
        ds.id.write_direct_chunk((4, 0), zlib.compress(shuffled), filter_mask=0)
    with h5py.File(path, "r") as f:
        assert_bits_equal(f["x"][()], data, "h5py honours the masks")
    assert_bits_equal(tsnap.load(path, "x"), data)


@pytest.mark.parametrize("codec", CODECS + ["lzf"])
def test_a_damaged_compressed_chunk_is_a_format_error_naming_file_tensor_and_codec(
        tmp_path, seed, codec):
    rng = np.random.default_rng([seed, 78, (CODECS + ["lzf"]).index(codec)])
    data = smooth(rng, (40, 64))
    path = tmp_path / "bad.h5"
    opts = dict(compression="lzf", shuffle=True) if codec == "lzf" else {}
    if codec == "lzf":
        with h5py.File(path, "w") as f:
            f.create_dataset("x", data=data, chunks=(10, 64), **opts)
    else:
        tsnap.save(path, {"x": data}, compression=codec, chunk_bytes=2560, durable=False)
    with h5py.File(path, "r+") as f:
        ds = f["x"]
        mask, raw = ds.id.read_direct_chunk((10, 0))
        # a truncated chunk: no codec can decode it to a whole chunk
        ds.id.write_direct_chunk((10, 0), raw[:len(raw) // 2], filter_mask=mask)
        # a chunk with flipped bytes: some decode, to the wrong values
        mask, raw = ds.id.read_direct_chunk((20, 0))
        broken = bytearray(raw)
        for i in rng.choice(len(broken), size=max(1, len(broken) // 8), replace=False):
            broken[i] ^= 0xFF
        ds.id.write_direct_chunk((20, 0), bytes(broken), filter_mask=mask)
    with tsnap.open(path) as f:
        assert_bits_equal(f["x"][:10], data[:10], "an undamaged chunk reads")
        with pytest.raises(tsnap.FormatError) as info:
            f["x"][10:20]
        try:
            flipped = f["x"][20:30]
        except tsnap.FormatError:
            flipped = None
    message = str(info.value)
    assert str(path) in message and "'x'" in message, message
    assert codec in message.lower(), f"the codec is named: {message}"
    assert "(10, 0)" in message, f"the chunk is named by where it starts: {message}"
    if codec != "lzf":  # tsnap's own files carry checksums
        with pytest.raises(tsnap.IntegrityError):
            tsnap.verify(path)
    if flipped is not None:
        assert flipped.shape == (10, 64)


@pytest.mark.parametrize("compression,why", [
    (("zstd", 23), "zstd level 23"), (("deflate", 10), "deflate level 10"),
    (("lz4", 1), "lz4 takes no level"), ("brotli", "unknown compression"),
])
def test_a_bad_codec_or_level_is_refused_before_anything_is_written(tmp_path, compression, why):
    path = tmp_path / "n.h5"
    with pytest.raises(ValueError) as info:
        tsnap.save(path, {"x": np.arange(3)}, compression=compression)
    assert why in str(info.value) and str(path) in str(info.value)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_threads_are_settable_and_checked(tmp_path):
    default = tsnap.get_threads()
    assert default >= 1
    try:
        tsnap.set_threads(5)
        assert tsnap.get_threads() == 5
    finally:
        tsnap.set_threads(None)
    assert tsnap.get_threads() == default
    for bad in (-1, 257, 2.0, True):
        with pytest.raises(ValueError):
            tsnap.set_threads(bad)
        with pytest.raises(ValueError):
            tsnap.save(tmp_path / "t.h5", {"x": np.arange(3)}, threads=bad)
    tsnap.save(tmp_path / "t.h5", {"x": np.arange(3)}, threads=7, compression="zstd")
    assert_bits_equal(tsnap.load(tmp_path / "t.h5", "x"), np.arange(3))

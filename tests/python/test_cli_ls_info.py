"""`tsnap ls` and `tsnap info` (and the top of the `tsnap` command) against
what h5py and the filesystem say of the same files."""
import json
import os

import h5py
import hdf5plugin  # noqa: F401  (h5py reads zstd and lz4)
import numpy as np
import pytest

import tsnap as tsnap_py
from clihelpers import tsnap
from oracle import flat_offset
from pyhelpers import DTYPES, SHAPES, values

CODEC_OF_FILTER = {1: "deflate", 32015: "zstd", 32004: "lz4"}


@pytest.fixture
def rng(seed):
    return np.random.default_rng(seed)


def ls_json(path):
    return json.loads(tsnap("ls", "--json", path, expect=0).stdout)


def h5py_view(path, name):
    """What h5py says of a dataset, in the terms of `tsnap ls --json`."""
    with h5py.File(path, "r") as f:
        d = f[name]
        dcpl = d.id.get_create_plist()
        filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
        codecs = [CODEC_OF_FILTER[i] for i in filters if i in CODEC_OF_FILTER]
        return {
            "shape": list(d.shape),
            "chunks": list(d.chunks) if d.chunks else None,
            "filters": filters,
            "codec": codecs[0] if codecs else "none",
            "shuffle": 2 in filters,
            "stored_bytes": d.id.get_storage_size(),
            "nbytes": d.size * d.id.get_type().get_size(),
            "offset": flat_offset(d),
            "checksum": d.attrs.get("tsnap_checksum"),
        }


def test_ls_json_matches_h5py_for_every_dtype_and_odd_shape(tmp_path, rng):
    tensors = {f"{dt}/{shape}": values(rng, np_dt, SHAPES[shape])
               for dt, np_dt in DTYPES.items() for shape in ("0d", "empty", "one", "primes")}
    tensors["complex32"] = rng.standard_normal((5, 2)).astype(np.float16)
    path = tmp_path / "all.h5"
    tsnap_py.save(path, tensors)
    listing = ls_json(path)
    assert listing["kind"] == "file" and listing["format_version"] == 1
    got = {t["name"]: t for t in listing["tensors"]}
    assert sorted(got) == sorted(tensors)
    for name, a in tensors.items():
        t, want = got[name], h5py_view(path, name)
        if name != "complex32":
            assert t["dtype"] == name.split("/")[0], name
        assert t["shape"] == list(a.shape) == want["shape"], name
        assert t["chunks"] == want["chunks"], name
        assert t["nbytes"] == a.nbytes == want["nbytes"], name
        assert t["stored_bytes"] == want["stored_bytes"], name
        assert t["codec"] == "none" and t["filters"] == [] and not t["shuffle"], name
        assert t["checksum"] == want["checksum"], name
        # uncompressed tsnap tensors always map, where h5py finds the bytes
        assert t["mappable"] is True and t["why_not"] is None, name
        if a.size:
            assert t["offset"] == want["offset"], name
            assert t["ratio"] == pytest.approx(1.0), name


@pytest.mark.parametrize("compression", ["deflate", "zstd", "lz4"])
def test_ls_names_the_codec_ratio_and_why_a_compressed_tensor_does_not_map(tmp_path, compression):
    smooth = np.cumsum(np.ones((300, 200), np.float32), axis=1)
    path = tmp_path / "c.h5"
    tsnap_py.save(path, {"smooth": smooth}, compression=compression)
    (t,) = ls_json(path)["tensors"]
    want = h5py_view(path, "smooth")
    assert t["codec"] == compression == want["codec"]
    assert t["filters"] == want["filters"] and t["shuffle"] == want["shuffle"]
    assert t["ratio"] == pytest.approx(smooth.nbytes / want["stored_bytes"], rel=1e-3)
    assert t["ratio"] > 2
    assert t["mappable"] is False and t["why_not"] == "compressed or filtered"
    with pytest.raises(tsnap_py.NotMappableError):
        tsnap_py.load(path, "smooth", mmap=True)
    text = tsnap("ls", path, expect=0).stdout
    assert "no: compressed or filtered" in text and compression in text


def test_ls_of_an_h5py_file_lists_what_it_cannot_read_and_says_why(tmp_path, rng):
    path = tmp_path / "h.h5"
    with h5py.File(path, "w") as f:
        f["grid"] = rng.standard_normal((64, 48))
        f.create_dataset("tiles", data=rng.integers(0, 99, (30, 40)), chunks=(7, 11),
                         compression="gzip")
        f["label"] = "not a tensor"
        f["pairs"] = np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")])
    got = {t["name"]: t for t in ls_json(path)["tensors"]}
    assert list(got) == ["grid", "label", "pairs", "tiles"]
    assert got["grid"]["mappable"] and got["grid"]["chunks"] is None
    assert got["grid"]["offset"] == h5py_view(path, "grid")["offset"]
    assert got["tiles"]["chunks"] == [7, 11] and got["tiles"]["codec"] == "deflate"
    assert got["tiles"]["checksum"] is None
    assert got["label"]["dtype"] == "str" and got["label"]["string"] is True
    assert "compound" in got["pairs"]["error"] and "dtype" not in got["pairs"]
    text = tsnap("ls", path, expect=0).stdout
    assert "label" in text and "pairs" in text and "unreadable" in text
    assert tsnap("ls", path, expect=0).stderr == ""


def test_ls_of_a_store_lists_its_committed_steps_with_sizes_and_times(tmp_path, rng):
    d = tmp_path / "run"
    store = tsnap_py.Store(d)
    for step in (0, 7, 12):
        store.save(step, {"u": values(rng, np.float32, (17, 5)), "n": np.int64(step)},
                   attrs={"time": step * 0.5})
    store.close()
    (d / ".step-000000000099.h5.123.tsnap-tmp").write_bytes(b"partial")
    listing = ls_json(d)
    assert listing["kind"] == "store" and listing["latest"] == 12
    assert [s["step"] for s in listing["steps"]] == [0, 7, 12]
    for s in listing["steps"]:
        assert s["size"] == os.path.getsize(s["path"])
        assert s["time"] == s["step"] * 0.5 and s["tensors"] == 2
        with h5py.File(s["path"], "r") as f:
            assert s["created"] == f.attrs["created"]
    text = tsnap("ls", d, expect=0).stdout.splitlines()
    assert text[0].split() == ["STEP", "SIZE", "CREATED", "TIME", "TENSORS"]
    assert [line.split()[0] for line in text[1:4]] == ["0", "7", "12"]
    assert text[-1].startswith("3 steps") and text[-1].endswith("latest 12")


def test_ls_of_several_paths_gives_one_json_array(tmp_path, rng):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    tsnap_py.save(a, {"x": values(rng, np.int16, (3,))})
    tsnap_py.save(b, {"y": values(rng, np.uint8, (2, 2)), "z": values(rng, bool, ())})
    both = json.loads(tsnap("ls", "--json", a, b, expect=0).stdout)
    assert [[t["name"] for t in f["tensors"]] for f in both] == [["x"], ["y", "z"]]
    text = tsnap("ls", a, b, expect=0).stdout
    assert f"{a}:" in text and f"{b}:" in text


def test_info_shows_the_root_attributes_as_h5py_reads_them(tmp_path, rng):
    path = tmp_path / "s.h5"
    attrs = {"step": 42, "time": 0.1 + 0.2, "run": "heat 'A'", "dims": np.arange(4, dtype=np.int32),
             "scale": np.float32(1.5), "flag": np.bool_(True)}
    tsnap_py.save(path, {"u": values(rng, np.float64, (9, 4))}, attrs=attrs)
    info = json.loads(tsnap("info", "--json", path, expect=0).stdout)
    with h5py.File(path, "r") as f:
        want = dict(f.attrs)
    del want["tsnap_index"]  # the index of the tensors (FORMAT.md §16) is no attribute to tsnap
    assert set(info["attrs"]) == set(want)
    for key, value in want.items():
        got = info["attrs"][key]
        if isinstance(value, (bytes, str)):
            assert got == (value.decode() if isinstance(value, bytes) else value), key
        else:
            np.testing.assert_array_equal(np.asarray(got), np.asarray(value), err_msg=key)
    assert info["attrs"]["time"] == 0.1 + 0.2  # every digit, not a rounded print
    assert info["format_version"] == 1 and info["producer"].startswith("tsnap ")
    assert info["file_size"] == os.path.getsize(path)
    assert info["tensors"] == 1 and info["mappable"] == 1 and info["nbytes"] == 9 * 4 * 8
    text = tsnap("info", path, expect=0).stdout
    assert "step = 42" in text and "time = 0.30000000000000004" in text
    assert "run = 'heat 'A''" in text and "dims = [0, 1, 2, 3]" in text
    assert "flag = True" in text and "format:      tsnap 1" in text


def test_info_of_a_tensor_gives_its_hdf5_type_layout_and_checksum(tmp_path, rng):
    path = tmp_path / "t.h5"
    u = values(rng, np.complex64, (40, 3))
    tsnap_py.save(path, {"f/u": u, "b": values(rng, bool, (5,))}, chunk_bytes=256)
    info = json.loads(tsnap("info", "--json", path, "f/u", "b", expect=0).stdout)
    with h5py.File(path, "r") as f:
        d = f["f/u"]
        assert info[0]["chunks"] == list(d.chunks)
        assert info[0]["chunks_stored"] == d.id.get_num_chunks() > 1
        assert info[0]["checksum"] == d.attrs["tsnap_checksum"]
        assert info[0]["offset"] == flat_offset(d)
    assert info[0]["dtype"] == "complex64" and info[0]["layout"] == "chunked"
    assert info[0]["hdf5_type"].startswith("H5T_COMPOUND") and '"r"' in info[0]["hdf5_type"]
    assert info[0]["attrs"]["tsnap_dtype"] == "complex64"
    assert info[1]["dtype"] == "bool" and "H5T_ENUM" in info[1]["hdf5_type"]
    text = tsnap("info", path, "f/u", expect=0).stdout
    assert "mappable:    yes" in text and info[0]["checksum"] in text


def test_info_of_a_store_counts_steps_and_leftover_temporaries(tmp_path, rng):
    d = tmp_path / "run"
    store = tsnap_py.Store(d)
    for step in (3, 4):
        store.save(step, {"u": values(rng, np.float32, (8,))})
    store.close()
    (d / ".step-000000000005.h5.1.tsnap-tmp").write_bytes(b"x")
    info = json.loads(tsnap("info", "--json", d, expect=0).stdout)
    assert (info["steps"], info["first"], info["latest"]) == (2, 3, 4)
    assert info["temporary_files"] == 1
    assert info["size"] == sum(os.path.getsize(d / f"step-{s:012d}.h5") for s in (3, 4))
    assert info["latest_step"]["attrs"]["step"] == 4
    assert "1 left by an interrupted writer" in tsnap("info", d, expect=0).stdout


def test_bad_input_gives_exit_codes_and_messages_naming_the_cause(tmp_path, rng):
    path = tmp_path / "s.h5"
    tsnap_py.save(path, {"u": values(rng, np.float32, (3,))})
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(os.urandom(4096))
    for cmd in ("ls", "info"):
        missing = tsnap(cmd, tmp_path / "nope.h5", expect=1)
        assert "nope.h5" in missing.stderr and "No such file" in missing.stderr
        bad = tsnap(cmd, garbage, expect=1)
        assert str(garbage) in bad.stderr and missing.stdout == ""
        assert tsnap(cmd, expect=2).stderr.startswith(f"tsnap {cmd}: ")
        assert "unknown option '--bogus'" in tsnap(cmd, "--bogus", path, expect=2).stderr
        assert "takes no value" in tsnap(cmd, "--json=1", path, expect=2).stderr
        help_text = tsnap(cmd, "--help", expect=0).stdout
        assert help_text.startswith(f"usage: tsnap {cmd}") and "Examples:" in help_text
    no_tensor = tsnap("info", path, "v", expect=1)
    assert "tensor 'v'" in no_tensor.stderr and str(path) in no_tensor.stderr


def test_the_command_lists_its_commands_and_refuses_unknown_ones():
    top = tsnap("--help", expect=0).stdout
    for cmd in ("ls", "info", "verify", "diff", "export", "cp"):
        assert f"\n  {cmd} " in top
        assert tsnap("help", cmd, expect=0).stdout.startswith(f"usage: tsnap {cmd}")
    assert tsnap("--version", expect=0).stdout.startswith(f"tsnap {tsnap_py.__version__}")
    assert "no command 'frobnicate'" in tsnap("frobnicate", expect=2).stderr
    assert "usage: tsnap COMMAND" in tsnap(expect=2).stderr

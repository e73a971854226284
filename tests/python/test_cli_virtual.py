"""The `tsnap` command on distributed snapshots: ls and info show each
virtual tensor as its global tensor and list its blocks, verify checks the
part file of every block (and names the tensor and the part when one is
damaged or missing), cp turns the snapshot into one ordinary file and
export writes the global arrays; on snapshots made by tsnap
(tsnap_writer_put_virtual) and by h5py (VirtualLayout)."""
import json
import os

import h5py
import numpy as np
import pytest

import oracle
import tsnap as tsnap_py
from clihelpers import rng_for, tsnap
from pyhelpers import assert_same_values, values
from test_virtual_read import LAYOUTS, h5py_vds, part_file, tsnap_vds

MAKERS = ["tsnap", "h5py"]


def damage(path, name):
    """Flips a bit of the (flat) data of dataset `name` in file `path`."""
    with h5py.File(path, "r") as f:
        offset = oracle.flat_offset(f[name])
    with open(path, "r+b") as fh:
        fh.seek(offset + 5)
        byte = fh.read(1)
        fh.seek(offset + 5)
        fh.write(bytes([byte[0] ^ 1]))


def snapshot(maker, testio, folder, name, array, blocks):
    if maker == "tsnap":
        return tsnap_vds(testio, folder, name, array, blocks, codecs=[None, "zstd"])
    return h5py_vds(folder, name, array, blocks, codecs=[None, "deflate"])


@pytest.mark.parametrize("maker", MAKERS)
def test_ls_shows_the_global_tensor_and_its_number_of_parts(tmp_path, testio, seed, maker):
    shape, blocks = LAYOUTS["grid-2x2"]
    array = values(rng_for(seed, "ls", maker), np.float32, shape)
    path = snapshot(maker, testio, tmp_path, "fields/u", array, blocks)
    out = tsnap("ls", path, expect=0).stdout
    row = next(line for line in out.splitlines() if line.startswith("fields/u"))
    assert row.split()[1:4] == ["float32", "(6,", "9)"]
    assert "virtual, 4 parts" in row and "no: virtual dataset over other files" in row
    assert "1 virtual, stored in part files" in out
    (t,) = json.loads(tsnap("ls", "--json", path, expect=0).stdout)["tensors"]
    assert t["virtual"] is True and t["parts"] == 4
    assert t["shape"] == [6, 9] and t["dtype"] == "float32" and t["mappable"] is False


@pytest.mark.parametrize("maker", MAKERS)
def test_info_lists_every_block_with_its_part_file(tmp_path, testio, seed, maker):
    shape, blocks = LAYOUTS["rows-uneven"]
    array = values(rng_for(seed, "info", maker), np.int16, shape)
    path = snapshot(maker, testio, tmp_path, "u", array, blocks)
    with tsnap_py.open(path) as f:
        parts = f["u"].parts
    out = tsnap("info", path, "u", expect=0).stdout
    assert "layout:      virtual, 3 parts" in out
    for p in parts:
        block = ", ".join(f"{o}:{o + n}" for o, n in zip(p.offset, p.shape))
        assert f"[{block}]  {p.file}:{p.dataset}" in out
    info = json.loads(tsnap("info", "--json", path, "u", expect=0).stdout)
    assert info["layout"] == "virtual" and info["shape"] == list(shape)
    assert [(tuple(p["offset"]), tuple(p["shape"])) for p in info["parts"]] == blocks
    assert [p["file"] for p in info["parts"]] == [p.file for p in parts]
    stored = 0
    for p in parts:
        with tsnap_py.open(p.path) as f:
            stored += f[p.dataset].stored_bytes
    assert info["stored_bytes"] == stored
    whole = json.loads(tsnap("info", "--json", path, expect=0).stdout)
    assert whole["virtual"] == 1
    size = os.path.getsize(path) + sum(os.path.getsize(p.path) for p in parts)
    assert whole["size_with_parts"] == size


def test_verify_checks_every_part_and_names_a_damaged_or_missing_one(tmp_path, testio, seed):
    shape, blocks = LAYOUTS["grid-2x2"]
    array = values(rng_for(seed, "verify"), np.float64, shape)
    path = tsnap_vds(testio, tmp_path, "u", array, blocks)
    tsnap("verify", path, expect=0)
    victim = tmp_path / part_file("snap.h5", 3)
    damage(victim, "u")
    proc = tsnap("verify", path, expect=1)
    out = proc.stdout + proc.stderr
    assert "u" in out and part_file("snap.h5", 3) in out and "checksum" in out
    os.unlink(victim)
    proc = tsnap("verify", path, expect=1)
    out = proc.stdout + proc.stderr
    assert part_file("snap.h5", 3) in out and "is missing" in out


@pytest.mark.parametrize("maker", MAKERS)
def test_cp_makes_one_ordinary_snapshot_of_the_global_tensors(tmp_path, testio, seed, maker):
    shape, blocks = LAYOUTS["columns-3d"]
    array = values(rng_for(seed, "cp", maker), np.int32, shape)
    path = snapshot(maker, testio, tmp_path / "dist", "g/u", array, blocks)
    out = tmp_path / "single.h5"
    tsnap("cp", path, out, expect=0)
    with h5py.File(out, "r") as f:
        assert not f["g/u"].is_virtual
        assert np.array_equal(f["g/u"][...], array)
    tsnap("verify", out, expect=0)


def test_cp_refuses_a_damaged_part_unless_told_not_to_verify(tmp_path, testio, seed):
    shape, blocks = LAYOUTS["rows-uneven"]
    array = values(rng_for(seed, "cp-damaged"), np.int64, shape)
    path = tsnap_vds(testio, tmp_path, "u", array, blocks)
    damage(tmp_path / part_file("snap.h5", 1), "u")
    proc = tsnap("cp", path, tmp_path / "out.h5", expect=1)
    assert part_file("snap.h5", 1) in proc.stderr and "checksum" in proc.stderr
    assert not (tmp_path / "out.h5").exists()
    tsnap("cp", "--no-verify", path, tmp_path / "out.h5", expect=0)
    got = tsnap_py.load(tmp_path / "out.h5", "u")
    assert np.array_equal(got[[0, 1, 2, 4, 5, 6]], array[[0, 1, 2, 4, 5, 6]])
    assert not np.array_equal(got[3], array[3])


@pytest.mark.parametrize("maker", MAKERS)
def test_export_writes_the_global_array(tmp_path, testio, seed, maker):
    shape, blocks = LAYOUTS["1d-primes"]
    array = values(rng_for(seed, "export", maker), np.complex64, shape)
    path = snapshot(maker, testio, tmp_path, "z", array, blocks)
    tsnap("export", path, "z", "-o", tmp_path / "z.npy", expect=0)
    assert_same_values(np.load(tmp_path / "z.npy"), array)

"""Files PyTables writes: arrays, carrays (zlib, blosc, bzip2) written in
part, earrays appended to, the indexes of a table's columns: every numeric
node loads equal to PyTables' own read, copied, with mmap="auto" and in
hyperslabs; vlarrays, tables (compounds) and string arrays are refused with
a tsnap.errors.TypeError naming the file, the node and the type."""
import h5py
import numpy as np
import pytest

import pyhelpers
import tsnap
from clihelpers import rng_for

tables = pytest.importorskip("tables")


class Row(tables.IsDescription):
    x = tables.Float64Col()
    y = tables.Int32Col()
    z = tables.UInt16Col()


def write_tables_file(path, seed):
    """-> ({node: None} for numeric nodes, {node: words of its refusal})."""
    rng = rng_for(seed, "tables")
    with tables.open_file(str(path), "w") as f:
        f.create_array("/", "array_f8", rng.standard_normal((5, 4)))
        f.create_array("/", "array_i2", rng.integers(-999, 999, (3, 7)).astype(np.int16))
        f.create_array("/", "array_bool", rng.random(11) < 0.5)
        f.create_array("/", "array_scalar", np.float32(2.5))
        grp = f.create_group("/", "grp")
        f.create_array(grp, "array_c16", rng.standard_normal(6) + 1j * rng.standard_normal(6))
        for comp in ("zlib", "blosc:lz4", "blosc:zstd", "bzip2"):
            name = "carray_" + comp.replace(":", "_")
            ca = f.create_carray("/", name, tables.Float32Atom(dflt=-1.0), (60, 7),
                                 filters=tables.Filters(5, comp, shuffle=True), chunkshape=(8, 7))
            ca[10:30] = rng.standard_normal((20, 7))
            ca[51:53] = rng.standard_normal((2, 7))
        ca = f.create_carray("/", "carray_plain_i8", tables.Int64Atom(dflt=7), (40, 3),
                             chunkshape=(6, 3))
        ca[4:9] = rng.integers(-10**12, 10**12, (5, 3))
        ea = f.create_earray("/", "earray_i4", tables.Int32Atom(), (0, 3), expectedrows=1000)
        for k in range(3):
            ea.append(rng.integers(-100, 100, (7 + k, 3)).astype(np.int32))
        ea = f.create_earray(grp, "earray_c16", tables.ComplexAtom(16), (0,),
                             filters=tables.Filters(1, "zlib", shuffle=True))
        ea.append(rng.standard_normal(13) + 1j)
        ea = f.create_earray("/", "earray_u2_blosc", tables.UInt16Atom(), (4, 0),
                             filters=tables.Filters(3, "blosc"))
        ea.append(rng.integers(0, 60000, (4, 25)).astype(np.uint16))
        table = f.create_table("/", "table", Row)
        row = table.row
        for _ in range(2000):
            row["x"], row["y"], row["z"] = rng.standard_normal(), rng.integers(0, 500), 3
            row.append()
        table.flush()
        table.cols.y.create_index()
        table.cols.x.create_csindex()
        table.cols.z.create_index(optlevel=2, kind="light")
        vl = f.create_vlarray("/", "vlarray", tables.Int32Atom())
        vl.append([1, 2, 3])
        vl.append([4])
        f.create_array("/", "array_str", np.array([b"ab", b"cde"]))
    refused = {"table": "compound", "vlarray": "variable-length", "array_str": "string"}
    with h5py.File(path, "r") as f:
        names = []
        f.visit(lambda n: names.append(n) if isinstance(f[n], h5py.Dataset) else None)
    numeric = [n for n in names if n not in refused]
    assert any(n.startswith("_i_table/y/") for n in numeric)  # the indexes are there
    return numeric, refused


@pytest.fixture(scope="module")
def ptfile(tmp_path_factory, seed):
    path = tmp_path_factory.mktemp("tables") / "pytables.h5"
    numeric, refused = write_tables_file(path, seed)
    return path, numeric, refused


def refused_names(path):
    return ("table", "vlarray", "array_str")


def tables_read(path, name):
    """PyTables' own read of a node, as tsnap gives it: a boolean array
    (stored as an HDF5 bitfield of 8 bits) as uint8."""
    with tables.open_file(str(path), "r") as f:
        want = np.asarray(f.get_node("/" + name).read())
    if want.dtype == np.bool_:
        want = want.astype(np.uint8)
    return want.astype(want.dtype.newbyteorder("="))


def test_every_numeric_node_loads_as_pytables_reads_it(ptfile):
    path, numeric, _ = ptfile
    with tsnap.open(path) as f:
        assert sorted(f.keys()) == sorted(numeric + list(refused_names(path)))
    for name in numeric:
        want = tables_read(path, name)
        pyhelpers.assert_same_values(tsnap.load(path, name), want, name)
        pyhelpers.assert_same_values(tsnap.load(path, name, mmap="auto"), want,
                                     f"mmap=auto {name}")


def test_hyperslabs_of_partly_written_carrays_and_indexes(ptfile):
    path, numeric, _ = ptfile
    with tsnap.open(path) as f:
        for name in numeric:
            t = f[name]
            if t.ndim == 0 or t.size == 0:
                continue
            want = tables_read(path, name)
            for sel in (np.s_[3:], np.s_[1::3], np.s_[-5:-1], np.s_[7:31:4]):
                pyhelpers.assert_same_values(t[sel], np.asarray(want[sel]), f"{name}[{sel}]")


def test_verify_and_a_copy_of_every_numeric_node(ptfile, tmp_path):
    path, numeric, _ = ptfile
    with tsnap.open(path) as f:
        for name in numeric:
            f.verify(name)
        data = {name: f[name][...] for name in numeric}
    out = tmp_path / "copy.h5"
    plain = {name: f"n{i}" for i, name in enumerate(numeric)}
    tsnap.save(out, {plain[k]: v for k, v in data.items()})
    back = tsnap.load(out, verify=True)
    for name in numeric:
        pyhelpers.assert_same_values(back[plain[name]], data[name], name)


def test_tables_vlarrays_and_strings_are_refused_naming_file_node_and_type(ptfile):
    path, _, refused = ptfile
    with pytest.raises(tsnap.errors.TypeError):
        tsnap.load(path)  # the whole file: the first refusal
    for name, word in refused.items():
        with pytest.raises(tsnap.errors.TypeError) as info:
            tsnap.load(path, name)
        msg = str(info.value)
        assert isinstance(info.value, tsnap.Error)
        assert str(path) in msg and f"'{name}'" in msg and word in msg, msg

"""The distributed example of docs/PYTHON.md runs as written on 3 ranks,
and what it saved reads back without MPI as the blocks it was cut from."""
import re
import sys
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "mpi"))
import launch  # noqa: E402

import tsnap  # noqa: E402

DOC = Path(__file__).resolve().parents[2] / "docs" / "PYTHON.md"


def example():
    text = DOC.read_text()
    section = text[text.index("## Distributed snapshots"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_documented_example_runs_on_three_ranks(tmp_path):
    launch.require()
    (tmp_path / "example.py").write_text(example())
    launch.mpirun(3, tmp_path / "example.py", cwd=tmp_path)  # an absolute path
    rows = np.array_split(np.arange(1000), 3)
    want = np.concatenate([np.random.default_rng(r).standard_normal((len(rows[r]), 64))
                           .astype(np.float32) for r in range(3)])
    with h5py.File(tmp_path / "field.h5", "r") as f:
        np.testing.assert_array_equal(f["u"][()], want)
        assert f["dt"][()] == 0.01
    store = tsnap.Store(tmp_path / "run", readonly=True)
    assert store.steps() == [200, 300, 400]
    for _ in range(5):  # as the example steps, in float32
        want += 1
    np.testing.assert_array_equal(store.load(400, "u"), want)

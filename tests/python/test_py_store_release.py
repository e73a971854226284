"""tsnap.Store.save hands every DLPack tensor it took back exactly once, on
every path: a committed step (waited for or in the background), a later
tensor that cannot be exported, a bad one, a step the library refuses.  The
saved values are read back with h5py; the producers count the deleter
calls."""
import gc
import sys

import h5py
import numpy as np
import pytest

import tsnap
from pyhelpers import DLPackTensor, kDLFloat, kDLInt, live_dlpack_tensors


class Unexportable(DLPackTensor):
    """__dlpack__ fails after the tensors before it were taken."""

    def __dlpack__(self, stream=None, **kw):
        self.exports += 1
        raise RuntimeError("cannot export this tensor")


def producers(rng):
    f = rng.standard_normal((7, 3))
    i = rng.integers(-2**31, 2**31 - 1, size=11, dtype=np.int32)
    g = rng.standard_normal((5, 13)).astype(np.float32)[:, ::2]
    return {"f": DLPackTensor(f, kDLFloat, 64), "i": DLPackTensor(i, kDLInt, 32),
            "g": DLPackTensor(g, kDLFloat, 32)}, {"f": f, "i": i, "g": g}


def settled(ps):
    for p in ps:
        assert p.deleter_calls == p.exports, p
    assert live_dlpack_tensors() == 0
    assert DLPackTensor.stray_deletes == 0


@pytest.mark.parametrize("wait", [True, False])
def test_saved_steps_hold_the_values_and_release_every_tensor_once(tmp_path, wait):
    rng = np.random.default_rng()
    ps, arrays = producers(rng)
    plain = rng.integers(0, 255, size=(2, 3), dtype=np.uint8)
    with tsnap.Store(tmp_path / "s") as s:
        for step in range(3):
            s.save(step, {**ps, "plain": plain}, attrs={"note": "n", "v": np.arange(3.0)},
                   wait=wait)
        s.wait()
        paths = [s.path(step) for step in range(3)]
    settled(ps.values())
    assert all(p.exports == 3 for p in ps.values())
    for path in paths:
        with h5py.File(path, "r") as f:
            for name, a in arrays.items():
                np.testing.assert_array_equal(f[name][()], a)
            np.testing.assert_array_equal(f["plain"][()], plain)
            assert f.attrs["note"] == "n"


def test_a_tensor_that_cannot_be_exported_releases_the_ones_before_it(tmp_path):
    rng = np.random.default_rng()
    ps, _ = producers(rng)
    broken = Unexportable(np.zeros(2), kDLFloat, 64)
    with tsnap.Store(tmp_path / "s") as s:
        for _ in range(3):
            with pytest.raises(RuntimeError, match="cannot export"):
                s.save(1, {**ps, "zz_broken": broken})
        assert s.steps() == []
    settled(ps.values())
    assert broken.exports == 3 and broken.deleter_calls == 0


def test_a_tensor_that_is_not_a_capsule_is_named_and_the_others_released(tmp_path):
    rng = np.random.default_rng()
    ps, _ = producers(rng)

    class NotACapsule(DLPackTensor):
        def __dlpack__(self, stream=None, **kw):
            return object()

    with tsnap.Store(tmp_path / "s") as s:
        with pytest.raises(TypeError, match="tensor 'zz': __dlpack__\\(\\) did not return"):
            s.save(1, {**ps, "zz": NotACapsule(np.zeros(2), kDLFloat, 64)})
    settled(ps.values())


def test_a_step_the_library_refuses_releases_every_tensor(tmp_path):
    rng = np.random.default_rng()
    ps, arrays = producers(rng)
    with tsnap.Store(tmp_path / "s") as s:
        s.save(4, ps)
        with pytest.raises(tsnap.Error):
            s.save(4, ps)
        assert s.steps() == [4]
        with h5py.File(s.path(4), "r") as f:
            np.testing.assert_array_equal(f["f"][()], arrays["f"])
    settled(ps.values())


def test_many_failed_and_committed_saves_keep_no_reference(tmp_path):
    rng = np.random.default_rng()
    ps, _ = producers(rng)
    broken = Unexportable(np.zeros(2), kDLFloat, 64)
    plain = rng.standard_normal(4)
    with tsnap.Store(tmp_path / "s", keep_last=1, durable=False) as s:
        def once(step):
            s.save(step, {**ps, "plain": plain})
            with pytest.raises(RuntimeError):
                s.save(step + 1, {**ps, "zz_broken": broken})
        once(0)
        gc.collect()
        before = [sys.getrefcount(p) for p in ps.values()] + [sys.getrefcount(plain)]
        for step in range(2, 202, 2):
            once(step)
        gc.collect()
        after = [sys.getrefcount(p) for p in ps.values()] + [sys.getrefcount(plain)]
    assert after == before
    settled(ps.values())

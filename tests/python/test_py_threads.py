"""Threads: a pure-Python thread keeps running while a large load (and save)
runs, because the I/O runs with the GIL released; threads loading and saving
different files at the same time all get the right values (one lock
serialises the library)."""
import threading
import time

import numpy as np
import pytest

import tsnap
from pyhelpers import DTYPES, assert_bits_equal, logical, values

MiB = 1 << 20
BUCKET = 0.010  # seconds


class Spinner(threading.Thread):
    """Records every 10 ms bucket of time.perf_counter() in which it ran."""

    def __init__(self):
        super().__init__(daemon=True)
        self.buckets = set()
        self.halt = False

    def run(self):
        seen, clock = self.buckets, time.perf_counter
        while not self.halt:
            seen.add(int(clock() / BUCKET))

    def __enter__(self):
        self.start()
        time.sleep(0.05)  # running before the measured call starts
        return self

    def __exit__(self, *exc):
        self.halt = True
        self.join()


def _timed(fn):
    with Spinner() as spinner:
        t0 = time.perf_counter()
        result = fn()
        t1 = time.perf_counter()
    inside = range(int(t0 / BUCKET) + 1, int(t1 / BUCKET))  # strictly inside the call
    filled = sum(1 for b in inside if b in spinner.buckets)
    return result, filled, len(inside), t1 - t0


def _free_share(seconds):
    """The share of 10 ms buckets the spinner runs in while this thread
    waits without the GIL for `seconds`: what this machine, as loaded as it
    is now, lets a thread have."""
    _, filled, inside, _ = _timed(lambda: time.sleep(seconds))
    return filled / inside if inside else 1.0


def assert_spinner_ran(filled, inside, took, what):
    """A call that held the GIL throughout would leave the spinner no bucket
    at all; one that releases it leaves the spinner a good part of the share
    it gets beside a GIL-free wait (less than all of it: the call's own
    threads compete with it for the cores).  A quarter of that share, then,
    which holds on a busy machine too."""
    share = _free_share(min(took, 1.0))
    assert filled >= 0.25 * share * inside and filled > 0, (
        f"the spinner ran in {filled} of the {inside} 10 ms buckets inside the "
        f"{took:.3f} s {what}, against {share:.0%} of them beside a GIL-free wait: "
        f"the {what} holds the GIL")


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """64 MiB of smooth float64 data, deflated: slow to inflate. Its save is
    measured with a spinner running."""
    path = tmp_path_factory.mktemp("py-threads") / "big.h5"
    data = np.sin(np.arange(64 * MiB // 8) * 1e-4) * 1e3
    _, filled, inside, took = _timed(
        lambda: tsnap.save(path, {"x": data}, compression="deflate", durable=False))
    return path, data, (filled, inside, took)


def test_a_python_thread_keeps_running_while_a_large_compressed_load_runs(big):
    path, data, _ = big
    got, filled, inside, took = _timed(lambda: tsnap.load(path, "x"))
    assert inside >= 8, f"the load took {took:.3f} s: too short to measure, use more data"
    assert_spinner_ran(filled, inside, took, "load")
    assert_bits_equal(got, data)


def test_a_python_thread_keeps_running_while_a_large_compressed_save_runs(big):
    _, _, (filled, inside, took) = big
    assert inside >= 8, f"the save took {took:.3f} s: too short to measure"
    assert_spinner_ran(filled, inside, took, "save")


def test_a_python_thread_keeps_running_while_a_tensor_is_sliced_and_verified(big):
    path, data, _ = big
    # Repeated: decoding runs on several threads and is quick; the spinner
    # needs a few 10 ms buckets to look at.
    with tsnap.open(path) as f:
        t = f["x"]
        got, filled, inside, took = _timed(lambda: [t[: len(t) // 2] for _ in range(6)][-1])
        assert inside >= 4, (filled, inside, took)
        assert_spinner_ran(filled, inside, took, "slicing")
        assert_bits_equal(got, data[: len(data) // 2])
    _, filled, inside, took = _timed(lambda: [tsnap.verify(path) for _ in range(6)])
    assert inside >= 4, (filled, inside, took)
    assert_spinner_ran(filled, inside, took, "verify")


def _run_threads(n, work):
    """Runs work(i) in n threads started together; re-raises the first error."""
    barrier = threading.Barrier(n)
    errors = [None] * n

    def body(i):
        try:
            barrier.wait()
            work(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors[i] = e

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive(), "a thread hung"
    for e in errors:
        if e is not None:
            raise e


def test_threads_loading_different_files_at_once_all_get_their_own_values(tmp_path, seed):
    specs = [("float64", (300, 257), "deflate"), ("int16", (1000, 301), None),
             ("complex64", (123, 457), ("deflate", 6)), ("bfloat16", (511, 513), None),
             ("uint8", (2**20,), "deflate"), ("bool", (77, 1001), None)]
    files = []
    for i, (dtype, shape, comp) in enumerate(specs):
        data = values(np.random.default_rng([seed, 81, i]), DTYPES[dtype], shape)
        path = tmp_path / f"{i}.h5"
        tsnap.save(path, {"x": data}, compression=comp, chunk_bytes=64 * 1024, durable=False)
        files.append((path, logical(data)))

    def work(i):
        path, want = files[i]
        for round_ in range(6):
            mode = (False, "auto", True if i % 2 else "auto")[round_ % 3]
            assert_bits_equal(tsnap.load(path, "x", mmap=mode), want, f"{path.name} {mode}")
            with tsnap.open(path) as f:
                assert_bits_equal(f["x"][round_::7], want[round_::7], path.name)

    _run_threads(len(files), work)


def test_threads_saving_different_files_at_once_all_write_their_own_values(tmp_path, seed):
    rng = np.random.default_rng([seed, 82])
    datas = [rng.standard_normal((200, 100 + i)) for i in range(6)]

    def work(i):
        for round_ in range(3):
            path = tmp_path / f"{i}-{round_}.h5"
            tsnap.save(path, {"x": datas[i], "i": np.int64(i)},
                       compression="deflate" if i % 2 else None, durable=False)
            assert_bits_equal(tsnap.load(path, "x"), datas[i])
            assert tsnap.load(path, "i") == i

    _run_threads(len(datas), work)

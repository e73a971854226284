"""The `tsnap` command draws progress bars only on a terminal: under a
pseudo-terminal its long commands draw one on stderr, and with pipes (job
scripts, these tests) or TSNAP_NO_PROGRESS set they print plain lines only."""
import os
import pty
import re
import subprocess

import numpy as np
import pytest

import tsnap as tsnap_py
from clihelpers import cli_path, tsnap


def has_bar(text):
    """A bar redraws its line: a carriage return not ending a line (a
    terminal shows each newline as \r\n), and erase-to-end-of-line."""
    return bool(re.search(r"\r(?!\n)", text)) and "\x1b[K" in text


def run_on_a_terminal(args, env=None):
    """Runs `tsnap ARGS` with stdout and stderr on a pseudo-terminal and
    returns (exit code, everything it wrote there)."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([str(cli_path()), *map(str, args)], stdin=subprocess.DEVNULL,
                            stdout=terminal, stderr=terminal, env=dict(os.environ, **(env or {})))
    os.close(terminal)
    chunks = []
    while True:
        try:
            data = os.read(controller, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(controller)
    return proc.wait(timeout=120), b"".join(chunks).decode(errors="replace")


@pytest.fixture
def snapshot(tmp_path, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / "s.h5"
    tsnap_py.save(path, {"u": rng.standard_normal((512, 1024)), "v": rng.integers(0, 9, 1000)})
    return path


def commands(snapshot, tmp_path):
    return {
        "verify": ["verify", snapshot],
        "diff": ["diff", snapshot, snapshot],
        "cp": ["cp", "--compression", "zstd", snapshot, tmp_path / "copy.h5"],
        "export": ["export", snapshot, "-o", tmp_path / "npy"],
    }


@pytest.mark.parametrize("command", ["verify", "diff", "cp", "export"])
def test_a_terminal_gets_a_progress_bar_and_a_pipe_does_not(snapshot, tmp_path, command):
    args = commands(snapshot, tmp_path)[command]
    code, shown = run_on_a_terminal(args, env={"TSNAP_NO_PROGRESS": ""})
    assert code == 0, shown
    assert has_bar(shown) and "%" in shown, repr(shown)
    for p in (tmp_path / "copy.h5", tmp_path / "npy"):
        subprocess.run(["rm", "-rf", str(p)], check=True)

    piped = tsnap(*args, expect=0)
    assert not any(mark in piped.stdout + piped.stderr for mark in ("\r", "\x1b["))
    for p in (tmp_path / "copy.h5", tmp_path / "npy"):
        subprocess.run(["rm", "-rf", str(p)], check=True)

    code, shown = run_on_a_terminal(args, env={"TSNAP_NO_PROGRESS": "1"})
    assert code == 0, shown
    assert not has_bar(shown) and "\x1b[" not in shown, repr(shown)

"""`pip install .` gives a user the tsnap package alone: it builds the
extension with CMake through scikit-build-core, installs only the package,
and that package imports and round-trips a tensor on its own."""
import os
import subprocess
import re
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def header_version():
    """TSNAP_VERSION_STRING of the public header: the one version."""
    header = (ROOT / "include" / "tsnap.h").read_text()
    return re.search(r'TSNAP_VERSION_STRING "([^"]+)"', header)[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: the venv already has scikit-build-core and NumPy,
    # and the test must not need the network.
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(out), str(ROOT)],
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    wheels = list(out.glob("tsnap-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_wheel_holds_the_package_and_nothing_else(wheel):
    assert wheel.name.startswith(f"tsnap-{header_version()}-"), wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    package = sorted(n for n in names if not n.startswith("tsnap-"))
    assert all(n.startswith("tsnap/") for n in package), package
    assert "tsnap/__init__.py" in package
    assert any(n.startswith("tsnap/_core.") and n.endswith(".so") for n in package), package


def test_the_installed_package_imports_and_round_trips_without_the_build_tree(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                    "--disable-pip-version-check", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    script = (
        "import numpy as np, tsnap, sys\n"
        "assert tsnap.__file__.startswith(sys.argv[1]), tsnap.__file__\n"
        "a = np.random.default_rng().standard_normal((17, 5)).astype(np.float32)\n"
        "p = sys.argv[2]\n"
        "tsnap.save(p, {'x': a})\n"
        "b = tsnap.load(p, 'x', mmap=True)\n"
        "assert not b.flags.writeable and (b == a).all()\n"
        "print(tsnap.__version__)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run([sys.executable, "-c", script, str(site), str(tmp_path / "x.h5")],
                          env=env, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # The package's version is the public header's, as is the library's.
    assert proc.stdout.strip() == header_version()

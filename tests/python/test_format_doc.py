"""The h5py snippets of docs/FORMAT.md run as written on a snapshot the C
library wrote, so the documentation cannot drift from the files."""
import re

import pytest

import oracle

DOC = (oracle.ROOT / "docs" / "FORMAT.md").read_text(encoding="utf-8")
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC, re.S)


def test_the_format_document_starts_with_its_version():
    assert DOC.splitlines()[0] == "Format version: 1"


def test_the_format_document_has_h5py_snippets():
    assert len(SNIPPETS) >= 3


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_each_h5py_snippet_in_the_format_document_runs_on_a_c_written_snapshot(
        c_snapshot, index):
    code = SNIPPETS[index]
    assert 'path = "snapshot.h5"' in code, "snippets name their file `path`"
    path = c_snapshot("plain").path
    code = code.replace('path = "snapshot.h5"', f"path = {str(path)!r}")
    exec(compile(code, f"FORMAT.md snippet {index}", "exec"), {"__name__": "snippet"})

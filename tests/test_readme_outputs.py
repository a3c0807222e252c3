"""The README's example outputs are the current ones: every fenced block that starts with ``$ harness ...``
is run again on the real SciFact data (indexes and embeddings come from the cache the other real-data tests
fill) and its standard output must equal the block, line for line."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from harness.cli import main
from tests.conftest import MINILM, SHARED

pytestmark = [pytest.mark.realdata, pytest.mark.slow, pytest.mark.java]

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"```\n\$ (?P<cmd>[^\n]+)\n(?P<out>.*?)```", re.DOTALL)


def blocks() -> list[tuple[str, str]]:
    return [(m["cmd"], m["out"]) for m in BLOCK.finditer(README.read_text(encoding="utf-8"))]


def test_the_readme_has_example_outputs():
    assert len(blocks()) >= 3


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """One folder for every example (results made by one are reused by the next, as in a user's shell)."""
    root = tmp_path_factory.mktemp("readme")
    (root / "work").mkdir()
    (root / "shared").symlink_to(SHARED)  # the examples name ../shared, as from the repository root
    return root / "work"


@pytest.mark.parametrize("command,expected", blocks(), ids=[c.split()[1] if "=" in c.split()[0] else c.split()[0]
                                                             for c, _ in blocks()])
def test_a_readme_example_prints_what_the_readme_shows(command, expected, shared_data, workdir, monkeypatch,
                                                        capsys):
    if not MINILM.is_dir():
        pytest.skip("../shared/models is not present")
    monkeypatch.chdir(workdir)
    words = shlex.split(command)
    while "=" in words[0]:  # VAR=value prefixes: the shared_data fixture sets HARNESS_DATA
        words.pop(0)
    assert words[0] == "harness"
    needs = {"diff": [["run", "-r", "bm25", "-r", "bm25-multifield", "-d", "beir/scifact"]]}
    for argv in needs.get(words[1], []):
        assert main(argv) == 0
    capsys.readouterr()
    main(words[1:])
    assert capsys.readouterr().out.rstrip("\n").splitlines() == expected.rstrip("\n").splitlines()

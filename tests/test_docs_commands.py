"""Every `harness ...` command the README and docs/ show is one the command line takes as written: each
fenced command line (continuations joined, `VAR=value` prefixes and `# comments` left out, placeholders such
as `...` or `<id>` skipped) parses with the harness's own parser. tests/test_readme_outputs.py runs the
README's example outputs for real."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from harness.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "benchmarks" / "README.md"]
FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.DOTALL)
#: a line written for a reader to fill in: `...`, `<id>`, `[--optional]`, `a|b` alternatives, `$VAR`, or a
#: placeholder word
PLACEHOLDER = re.compile(r"\.\.\.|<[^>]*>|\[-|\w\|\w|\$\w+|\b(NAME|FILE|PATH|DEST|MODEL|FOLDER|HOST|ID|DATASET|"
                         r"METRIC|DIR|PART|PARTS|ARGS|MODULE|PYVER|N|K|S|TEXT|SOURCE|SYSTEM)\b")


def commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8").split("<!-- results:begin -->")[0]  # printed results: not commands
        for block in FENCE.findall(text):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.strip().removeprefix("$ ")
                if "harness " not in line or line.startswith("#"):
                    continue
                words = shlex.split(line.split(" #", 1)[0], posix=True)
                while words and "=" in words[0] and not words[0].startswith("-"):
                    words.pop(0)
                if not words or words[0] != "harness" or PLACEHOLDER.search(line):
                    continue
                found.append((f"{doc.relative_to(REPO)}", " ".join(words)))
    return found


def test_the_docs_show_commands():
    assert len(commands()) >= 20


@pytest.mark.parametrize("where,command", commands(), ids=[f"{w}:{c[:60]}" for w, c in commands()])
def test_a_documented_command_parses_as_written(where, command, capsys):
    words = shlex.split(command)
    try:
        build_parser().parse_args(words[1:])
    except SystemExit as e:
        if e.code:  # --help and --version exit 0
            pytest.fail(f"{where}: `{command}` is not a command line the harness takes: "
                        f"{capsys.readouterr().err.strip().splitlines()[-1]}")

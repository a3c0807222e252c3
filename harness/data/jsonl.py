"""JSON Lines: one JSON object per line, read with the file and line of anything malformed
(``harness.lines`` reads the lines: a byte-order mark, CRLF and blank lines tolerated)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import DataError
from harness.lines import iter_lines


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each JSON line (a JSON object: free-form, each reader checks its fields)."""
    for lineno, text in iter_lines(path):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            truncated = (not str(path).endswith(".gz") and not _ends_with_newline(path)
                         and _is_last_line(path, lineno))
            problem = ("truncated last line (no closing brace / newline): " if truncated else "invalid JSON: ") + e.msg
            raise DataError(path, problem, line=lineno,
                            fix="re-download or repair the file; each line must be one JSON object") from None
        if not isinstance(obj, dict):
            raise DataError(path, f"expected a JSON object, got {type(obj).__name__}", line=lineno)
        yield lineno, obj


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _is_last_line(path: Path, lineno: int) -> bool:
    with open(path, "rb") as f:
        return sum(1 for _ in f) == lineno

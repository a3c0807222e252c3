"""Errors a user can act on. The CLI prints them as one short message, never a traceback."""

from __future__ import annotations

from pathlib import Path


class HarnessError(Exception):
    """A problem the user can fix (bad input, missing data, offline). Printed without a traceback."""


class DataError(HarnessError):
    """A malformed input file: names the file, the line (1-based) when known, what is wrong, and the fix."""

    def __init__(self, path: str | Path, problem: str, *, line: int | None = None, fix: str | None = None):
        self.path = str(path)
        self.line = line
        self.problem = problem
        self.fix = fix
        where = f"{self.path}:{line}" if line is not None else self.path
        message = f"{where}: {problem}"
        if fix:
            message += f" (fix: {fix})"
        super().__init__(message)


class OfflineError(HarnessError):
    """Something had to be downloaded, but the network is off or unreachable."""

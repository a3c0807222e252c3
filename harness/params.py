"""Parameters declared once: type, default, allowed range or choices, help. The same declaration parses a value
written as text (a command line, a composition such as ``fuse:rrf(a,b;k=60)``), checks a typed value (YAML, the
Python API), and refuses what it cannot represent: a non-finite number, a number outside its range (Java's
int for a Lucene depth), a string where a number belongs, a bool where an int belongs. A new option cannot
forget its validation, because declaring it is validating it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError
from harness.lines import plain_float, plain_int

JAVA_INT_MAX = 2**31 - 1  # a depth or hit count handed to Lucene


@dataclass(frozen=True)
class Param:
    """One parameter: ``kind`` is int, float, bool or str; ``many`` makes it a list (``1:0.5`` as text)."""

    name: str
    kind: type
    default: Any = None
    help: str = ""
    low: float | None = None  # inclusive unless low_open
    high: float | None = None  # inclusive
    low_open: bool = False
    choices: tuple[str, ...] | None = None
    many: bool = False
    optional: bool = False  # None is allowed (an unset value)

    def parse(self, text: str, where: str) -> Any:
        """The value written as ``text``, checked; a problem is one line naming ``where`` and the parameter."""
        text = text.strip()
        if self.many:
            return self.check([self._scalar(t, where) for t in text.split(":")], where)
        return self.check(self._scalar(text, where), where)

    def _scalar(self, text: str, where: str) -> Any:
        try:
            if self.kind is bool:
                low = text.lower()
                if low not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(text)
                return low in {"true", "1", "yes"}
            if self.kind is int:
                return plain_int(text)
            if self.kind is float:
                return plain_float(text)
            return text
        except ValueError:
            raise self.refuse(text, where) from None

    def check(self, value: Any, where: str) -> Any:
        """``value`` if it is of the declared type, finite and in range; else a HarnessError."""
        if value is None and (self.optional or self.default is None):
            return None
        if self.many:
            if not isinstance(value, list | tuple) or not value:
                raise self.refuse(value, where)
            return [self._check_one(v, where) for v in value]
        return self._check_one(value, where)

    def _check_one(self, value: Any, where: str) -> Any:
        ok_type = {bool: isinstance(value, bool),
                   int: isinstance(value, int) and not isinstance(value, bool),
                   float: isinstance(value, int | float) and not isinstance(value, bool),
                   str: isinstance(value, str)}[self.kind]
        if not ok_type:
            raise self.refuse(value, where)
        if self.kind is float:
            value = float(value)
            if not math.isfinite(value):
                raise self.refuse(value, where)
        if self.kind in (int, float):
            too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
            too_high = self.high is not None and value > self.high
            if too_low or too_high:
                raise self.refuse(value, where)
        if self.choices is not None and value not in self.choices:
            raise self.refuse(value, where)
        return value

    def refuse(self, value: Any, where: str) -> HarnessError:
        return HarnessError(f"{where}: {self.name}={value!r} is not a valid value; expected {self.expects()}")

    def expects(self) -> str:
        """What the parameter takes, in words: ``an integer >= 1``, ``a finite number in (0, 1]``."""
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        what = {bool: "true or false", int: "an integer", float: "a finite number", str: "a text"}[self.kind]
        if self.many:
            what = f"a ':'-separated list of {what.removeprefix('an ').removeprefix('a ')}s"
        if self.low is not None and self.high is not None:
            what += f" in {'(' if self.low_open else '['}{_num(self.low)}, {_num(self.high)}]"
        elif self.low is not None:
            what += f" {'>' if self.low_open else '>='} {_num(self.low)}"
        elif self.high is not None:
            what += f" <= {_num(self.high)}"
        return what


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


def parse_params(declared: Sequence[Param], given: dict[str, str], where: str) -> dict[str, Any]:
    """Every declared parameter's value (the default, or ``given`` parsed); an unknown name is refused."""
    by_name = {p.name: p for p in declared}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        raise HarnessError(f"{where}: unknown parameter {unknown[0]!r}; known: {', '.join(by_name)}")
    return {p.name: p.parse(given[p.name], where) if p.name in given else p.default for p in declared}

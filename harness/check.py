"""``harness check``: compare fresh or reused results with regression baselines (expected ± tolerance).

Each baseline row names a retriever, a dataset and split, a metric, the expected value and a tolerance.
The check runs what is missing through ``harness.runner.run`` (which reuses finished, unchanged runs from
the output directory), then marks each row OK when |got - expected| <= tolerance, FAIL otherwise, and
ERROR when no score could be produced. A score above the band also fails unless improvements are allowed:
a baseline that no longer describes the system should be updated on purpose.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

from harness.errors import HarnessError
from harness.io import atomic_write
from harness.results.baselines import Expected
from harness.settings import DEFAULT_EXECUTION, REFERENCE, EncodeSettings, Execution

#: slack added to every tolerance, so a value printed at 4 decimals equal to the band's edge passes
EPS = 1e-9


@dataclass
class CheckResult:
    """The outcome of one baseline row."""

    baseline: Expected
    got: float | None
    status: str  # "OK", "FAIL" or "ERROR"
    message: str = ""
    dataset_run: str = ""  # the dataset actually run, when overridden (a folder)

    @property
    def delta(self) -> float | None:
        return None if self.got is None else self.got - self.baseline.expected

    @property
    def ok(self) -> bool:
        return self.status == "OK"


def judge(row: Expected, got: float, *, allow_improvement: bool = False) -> tuple[str, str]:
    """(status, message) of one score against its baseline row."""
    delta = got - row.expected
    if abs(delta) <= row.tolerance + EPS:
        return "OK", ""
    if delta > 0:
        if allow_improvement:
            return "OK", "above the expected band (allowed)"
        return "FAIL", "above the expected band: update the baseline if the change is intended"
    return "FAIL", "regression: below the expected band"


def check(baselines: Sequence[Expected], output_dir: Path = Path("results"), *,
          overrides: dict[str, str] | None = None, allow_improvement: bool = False, force: bool = False,
          settings: EncodeSettings = REFERENCE, execution: Execution = DEFAULT_EXECUTION,
          log: Callable[[str], None] | None = None) -> list[CheckResult]:
    """Run or reuse every (retriever, dataset) the rows need, and judge each row, in the rows' order.

    ``overrides`` maps a dataset id of the baselines to another dataset (id or BEIR folder) to run in its
    place, e.g. a degraded copy, so that the same baseline rows are checked against it. ``settings`` apply
    to every dense row; a row computed otherwise than the reference says so in its note (baselines and
    published numbers describe the reference computation).
    """
    from harness.runner import run

    overrides = dict(overrides or {})
    log = log or _stderr
    results: dict[int, CheckResult] = {}
    groups: dict[tuple[str, str], list[int]] = {}
    for i, row in enumerate(baselines):
        groups.setdefault((row.dataset, row.retriever), []).append(i)
    for (dataset, retriever), idx in groups.items():
        target = overrides.get(dataset, dataset)
        metrics = list(dict.fromkeys(baselines[i].metric for i in idx))
        try:
            (record,) = run([retriever], [target], metrics, output_dir, force=force, settings=settings,
                            execution=execution, log=log)
        except HarnessError as e:
            for i in idx:
                results[i] = CheckResult(baselines[i], None, "ERROR", f"could not run: {e}", _shown(dataset, target))
            continue
        note = f"computed with {record.settings_label}, not the reference" if record.settings else ""
        for i in idx:
            row = baselines[i]
            got = record.metrics.get(row.metric)
            if record.split != row.split:
                results[i] = CheckResult(row, None, "ERROR", f"{target} is evaluated on split {record.split!r}, "
                                         f"the baseline names {row.split!r}", _shown(dataset, target))
            elif got is None:
                results[i] = CheckResult(row, None, "ERROR", f"the record has no {row.metric}", _shown(dataset, target))
            else:
                status, message = judge(row, float(got), allow_improvement=allow_improvement)
                message = "; ".join(m for m in (message, note) if m)
                results[i] = CheckResult(row, float(got), status, message, _shown(dataset, target))
    return [results[i] for i in range(len(baselines))]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _shown(dataset: str, target: str) -> str:
    return "" if target == dataset else target


def render(results: Sequence[CheckResult], fmt: str = "text") -> str:
    """The per-row table, then one summary line."""
    from tabulate import tabulate

    rows = []
    for r in results:
        b = r.baseline
        dataset = b.dataset if not r.dataset_run else f"{b.dataset} (ran {r.dataset_run})"
        rows.append([b.retriever, dataset, b.split, b.metric, f"{b.expected:.4f}",
                     "—" if r.got is None else f"{r.got:.4f}", "—" if r.delta is None else _signed(r.delta),
                     f"{b.tolerance:.4f}", r.status, r.message])
    table_fmt = {"text": "simple", "markdown": "github"}[fmt]
    body = tabulate(rows, headers=["retriever", "dataset", "split", "metric", "expected", "got", "delta",
                                   "tolerance", "status", "note"], tablefmt=table_fmt, disable_numparse=True)
    bad = [r for r in results if not r.ok]
    if not bad:
        summary = f"OK: all {len(results)} rows within tolerance"
    else:
        counts = ", ".join(f"{n} {s}" for s in ("FAIL", "ERROR") if (n := sum(r.status == s for r in bad)))
        lines: dict[str, list[str]] = {}
        for r in bad:
            lines.setdefault(r.baseline.path, []).append(str(r.baseline.line))
        where = "; ".join(f"{_short(p)} line(s) {', '.join(ls)}" for p, ls in lines.items())
        summary = f"NOT OK: {len(bad)} of {len(results)} rows ({counts}); baseline rows: {where}"
    return f"{body}\n{summary}"


def _short(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def _signed(x: float) -> str:
    text = f"{x:+.4f}"
    return "+0.0000" if text == "-0.0000" else text


def junit_xml(results: Sequence[CheckResult], suite: str = "harness check") -> str:
    """A JUnit XML report: one test case per baseline row; FAIL is a failure, ERROR an error."""
    failures = sum(r.status == "FAIL" for r in results)
    errors = sum(r.status == "ERROR" for r in results)
    root = ET.Element("testsuites", name=suite, tests=str(len(results)), failures=str(failures), errors=str(errors))
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(results)), failures=str(failures),
                       errors=str(errors), skipped="0")
    for r in results:
        b = r.baseline
        case = ET.SubElement(ts, "testcase", classname=f"{b.dataset}.{b.split}".replace("/", "."),
                             name=f"{b.retriever} {b.metric}", file=b.path, line=str(b.line))
        got = "none" if r.got is None else f"{r.got:.4f}"
        detail = (f"{b.retriever} {b.metric} on {b.dataset}/{b.split}"
                  + (f" (ran {r.dataset_run})" if r.dataset_run else "")
                  + f": expected {b.expected:.4f} ± {b.tolerance:.4f}, got {got}"
                  + (f", delta {_signed(r.delta)}" if r.delta is not None else "")
                  + (f"; {r.message}" if r.message else "") + f" [{b.where}]")
        if r.status == "FAIL":
            ET.SubElement(case, "failure", message=detail, type="regression").text = detail
        elif r.status == "ERROR":
            ET.SubElement(case, "error", message=detail, type="error").text = detail
        else:
            ET.SubElement(case, "system-out").text = detail
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(results: Sequence[CheckResult], path: Path) -> None:
    atomic_write(Path(path), junit_xml(results))


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """``ID=PATH`` strings -> {ID: PATH}."""
    out = {}
    for item in items:
        name, sep, target = item.partition("=")
        if not sep or not name or not target:
            raise HarnessError(f"--dataset-override expects ID=PATH (e.g. beir/scifact=/tmp/scifact-cut), got {item!r}")
        out[name] = target
    return out

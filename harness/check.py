"""``harness check``: compare fresh or reused results with regression baselines (expected ± tolerance).

Each baseline row names a retriever, a dataset and split, a metric, the expected value and a tolerance.
The check runs what is missing through ``harness.runner.run`` (which reuses finished, unchanged runs from
the output directory), then marks each row OK when |got - expected| <= tolerance, FAIL otherwise, and
ERROR when no score could be produced. A score above the band also fails unless improvements are allowed:
a baseline that no longer describes the system should be updated on purpose.

``paired`` adds a second rule for rows that have a baseline record (``records/<dataset>/<split>/<retriever
slug>.json`` beside the CSV, written by ``--save-baseline``): a seeded paired randomization test of this
run's per-query scores against the baseline's, at ``alpha``. A hand-set band cannot tell a real regression
on a small dataset from noise; the paired test can, and it sees a change the band's width hides. A row fails
when either rule fails, and says which.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from xml.etree import ElementTree as ET

from harness.errors import HarnessError
from harness.io import atomic_write, inside
from harness.results.baselines import Expected
from harness.settings import DEFAULT_EXECUTION, REFERENCE, RESAMPLES, SEED, EncodeSettings, Execution

if TYPE_CHECKING:
    from harness.results.records import ResultRecord

#: slack added to every tolerance, so a value printed at 4 decimals equal to the band's edge passes
EPS = 1e-9


BASELINE_RECORD_FORMAT = "harness-baseline-record/1"


@dataclass(frozen=True)
class Paired:
    """The paired rule: a seeded, two-sided randomization test over queries at ``alpha``."""

    alpha: float = 0.05
    resamples: int = RESAMPLES
    seed: int = SEED


@dataclass
class CheckResult:
    """The outcome of one baseline row."""

    baseline: Expected
    got: float | None
    status: str  # "OK", "FAIL" or "ERROR"
    message: str = ""
    dataset_run: str = ""  # the dataset actually run, when overridden (a folder)
    paired_p: float | None = None  # the paired rule's p-value, when it applied

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


def baseline_record_path(row: Expected) -> Path:
    """Where the per-query scores of a baseline row live: ``records/`` beside its CSV file."""
    from harness.retrievers.registry import slug_of

    slug = slug_of(row.retriever)  # by the row's text: a model whose content changed still finds its baseline
    root = Path(row.path).parent / "records"
    return inside(root, root / row.dataset / row.split / f"{slug}.json", f"{row.where}: dataset and split")


def judge_paired(row: Expected, per_query: dict[str, float], rule: Paired, *,
                 allow_improvement: bool = False) -> tuple[str, str, float | None]:
    """(status, message, p) of the paired rule; OK with a note when the row has no baseline record."""
    from harness.io import read_json
    from harness.results.stats import randomization_test

    path = baseline_record_path(row)
    if not path.is_file():
        return "OK", "no baseline record for the paired test (write one with --save-baseline)", None
    saved = read_json(path, fix="write it again with harness check --save-baseline")
    per_query_saved = saved.get("per_query") if isinstance(saved, dict) else None
    base = per_query_saved.get(row.metric) if isinstance(per_query_saved, dict) else None
    if not isinstance(base, dict):
        return "ERROR", f"{path} holds no per-query {row.metric}; write it again with --save-baseline", None
    bad = next((q for q, v in base.items() if not _finite_number(v)), None)
    if bad is not None:
        return "ERROR", (f"{path}: per-query {row.metric} of {bad!r} is {base[bad]!r}, not a finite number; "
                         "write it again with --save-baseline"), None
    if set(base) != set(per_query):
        return "ERROR", (f"{path}: the baseline was scored on other queries ({len(set(base) ^ set(per_query))} "
                         "differ); write it again with --save-baseline"), None
    qids = sorted(base)
    a, b = [float(base[q]) for q in qids], [float(per_query[q]) for q in qids]
    p = randomization_test(a, b, resamples=rule.resamples, seed=rule.seed).pvalue
    diff = sum(b) / len(b) - sum(a) / len(a)
    if p > rule.alpha or diff == 0:
        return "OK", "", p
    if diff > 0 and allow_improvement:
        return "OK", f"paired: significantly above the baseline record (p={p:.2g}, allowed)", p
    word = "above" if diff > 0 else "below"
    return "FAIL", f"paired: per-query scores significantly {word} the baseline record (p={p:.2g} <= {rule.alpha})", p


def _finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def save_baseline_record(row: Expected, record: ResultRecord) -> Path:
    """Write (or extend) the baseline record of ``row`` from a result record: its per-query scores."""
    from harness.io import atomic_write_json, read_json
    from harness.version import __version__

    path = baseline_record_path(row)
    old = read_json(path, fix="delete it") if path.is_file() else {}
    kept = old.get("per_query") if isinstance(old, dict) else None
    per_query = dict(kept) if isinstance(kept, dict) else {}
    per_query[row.metric] = record.per_query[row.metric]
    atomic_write_json(path, {"format": BASELINE_RECORD_FORMAT, "retriever": row.retriever, "dataset": row.dataset,
                             "split": row.split, "fingerprint": record.fingerprint, "harness_version": __version__,
                             "per_query": per_query})
    return path


def check(baselines: Sequence[Expected], output_dir: Path = Path("results"), *,
          overrides: dict[str, str] | None = None, allow_improvement: bool = False, force: bool = False,
          settings: EncodeSettings = REFERENCE, execution: Execution = DEFAULT_EXECUTION,
          paired: Paired | None = None, save_baseline: bool = False,
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
    groups: dict[tuple[str, str, str], list[int]] = {}
    for i, row in enumerate(baselines):
        groups.setdefault((row.dataset, row.retriever, row.split), []).append(i)
    for (dataset, retriever, split), idx in groups.items():
        target = overrides.get(dataset, dataset)
        metrics = list(dict.fromkeys(baselines[i].metric for i in idx))
        try:
            (record,) = run([retriever], [target], metrics, output_dir, force=force, settings=settings,
                            execution=execution, log=log, split=split)
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
                message, p = (f"band: {message}" if message and paired else message), None
                if save_baseline:
                    save_baseline_record(row, record)
                if paired is not None:
                    p_status, p_message, p = judge_paired(row, record.per_query[row.metric], paired,
                                                          allow_improvement=allow_improvement)
                    status = "ERROR" if "ERROR" in (status, p_status) else "FAIL" if "FAIL" in (status, p_status) \
                        else "OK"
                    message = "; ".join(m for m in (message, p_message) if m)
                message = "; ".join(m for m in (message, note) if m)
                results[i] = CheckResult(row, float(got), status, message, _shown(dataset, target), p)
    return [results[i] for i in range(len(baselines))]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _shown(dataset: str, target: str) -> str:
    return "" if target == dataset else target


def render(results: Sequence[CheckResult], fmt: str = "text") -> str:
    """The per-row table, then one summary line."""
    from tabulate import tabulate

    rows = []
    show_p = any(r.paired_p is not None for r in results)
    show_source = any(r.baseline.source for r in results)  # published rows (harness reproduce)
    for r in results:
        b = r.baseline
        dataset = b.dataset if not r.dataset_run else f"{b.dataset} (ran {r.dataset_run})"
        published = [b.source, b.system] if show_source else []
        rows.append([*published, b.retriever, dataset, b.split, b.metric, f"{b.expected:.4f}",
                     "—" if r.got is None else f"{r.got:.4f}", "—" if r.delta is None else _signed(r.delta),
                     f"{b.tolerance:.4g}", *([_p(r.paired_p)] if show_p else []), r.status, r.message])
    table_fmt = {"text": "simple", "markdown": "github"}[fmt]
    headers = [*(["source", "published system"] if show_source else []), "retriever", "dataset", "split", "metric",
               "expected", "got", "delta", "tolerance", *(["paired p"] if show_p else []), "status", "note"]
    body = tabulate(rows, headers=headers, tablefmt=table_fmt, disable_numparse=True)
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


def _p(p: float | None) -> str:
    return "—" if p is None else f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


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
                  + f": expected {b.expected:.4f} ± {b.tolerance:.4g}, got {got}"
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

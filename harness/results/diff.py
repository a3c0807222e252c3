"""Why two numbers differ: every setting that differs between two result records (or a record and the
published scores of its system), the metric deltas, and the queries whose scores moved most.

The records already hold everything needed (settings, the retriever's fingerprint, protocol, dataset
checksums, model digests and revisions, package versions, per-query scores); this module only lines them
up and names the known causes ("A was computed in bf16, B in fp32").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.results.records import ResultRecord

#: the fields compared, as (label, path into the record's JSON); dicts are compared key by key
FIELDS = (("settings", ("settings",)), ("retriever", ("retriever_fingerprint",)), ("protocol", ("protocol",)),
          ("split", ("split",)), ("dataset files", ("dataset_provenance", "sha256")),
          ("model revision", ("retriever_provenance", "revision")),
          ("compute", ("retriever_provenance", "compute")), ("device", ("device",)),
          ("documents", ("corpus", "documents")), ("harness", ("harness_version",)),
          ("git commit", ("environment", "git_commit")), ("packages", ("environment", "packages")))


@dataclass
class Difference:
    field: str
    a: object
    b: object


@dataclass
class Moved:
    qid: str
    a: float
    b: float
    text: str = ""

    @property
    def delta(self) -> float:
        return self.b - self.a


@dataclass
class Diff:
    a: str
    b: str
    differences: list[Difference] = field(default_factory=list)
    metrics: list[tuple[str, float | None, float | None]] = field(default_factory=list)
    moved: list[Moved] = field(default_factory=list)
    moved_metric: str = ""
    causes: list[str] = field(default_factory=list)


def _get(obj: object, path: Sequence[str]) -> object:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _flatten(prefix: str, value: object) -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for k in sorted(value):
            out.update(_flatten(f"{prefix}.{k}" if prefix else str(k), value[k]))
        return out
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):  # a composition's stages
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(f"{prefix}.{i}", v))
        return out
    return {prefix: value}


def differences(a: ResultRecord, b: ResultRecord) -> list[Difference]:
    ja, jb = a.to_json(), b.to_json()
    out = []
    for label, path in FIELDS:
        fa, fb = _flatten(label, _get(ja, path)), _flatten(label, _get(jb, path))
        for key in sorted(set(fa) | set(fb)):
            if fa.get(key) != fb.get(key):
                out.append(Difference(key, fa.get(key), fb.get(key)))
    return out


def causes(diffs: Sequence[Difference], a: str, b: str) -> list[str]:
    """Plain words for the differences that are known to move numbers."""
    by = {d.field: d for d in diffs}
    out = []
    kind = by.get("retriever.kind")
    if kind is not None:  # a BM25 run has no precision, no encoder recipe: the retrievers simply differ
        return [f"{a} is a {kind.a} retriever, {b} a {kind.b} one: they compute different things"]
    for key in sorted(by, key=len):
        if key == "compute.precision" or (key.startswith("retriever.") and key.endswith("compute.precision")):
            d = by[key]
            if d.a is None or d.b is None:  # one side has no precision to compare
                continue
            out.append(f"{a} was computed in {d.a}, {b} in {d.b}: a precision other than fp32 moves scores "
                       "(bf16 moved SciFact nDCG@10 by 0.0025)")
            break
    params = sorted(k.split(".", 2)[-1] for k in by if k.startswith("retriever.params."))
    if params or "retriever.method" in by:
        out.append("the composition differs: " + ", ".join((["method"] if "retriever.method" in by else []) + params))
    stages = sorted({int(k.split(".")[2]) for k in by if k.startswith("retriever.stages.")
                     and k.split(".")[2].isdigit()})
    for i in stages:
        fields_ = [k.split(".", 3)[-1] for k in by if k.startswith(f"retriever.stages.{i}.")]
        out.append(f"stage {i + 1} of the composition differs: " + ", ".join(fields_[:6])
                   + (" ..." if len(fields_) > 6 else ""))
    recipe = sorted(k.split(".", 2)[-1] for k in by if k.startswith("retriever.encoder."))
    if recipe:
        out.append("the encoder recipe differs: " + ", ".join(recipe))
    if any(k.startswith("dataset files") for k in by):
        out.append("the dataset files differ (their sha256): not the same queries, documents or judgements")
    if "retriever.model_files" in by or "retriever.query_model_files" in by:
        out.append("the model files differ (weights, config, tokenizer or modules)")
    if any(k.startswith("protocol") for k in by):
        out.append("the evaluation protocol differs: " + ", ".join(k.split(".", 1)[-1] for k in by
                                                                    if k.startswith("protocol")))
    if "documents" in by:
        out.append("the corpora have different sizes")
    packages = [k.split(".", 1)[-1] for k in by if k.startswith("packages.")]
    if packages:
        out.append("package versions differ (" + ", ".join(packages) + "): float32 rounding may move the last digits")
    if not out and any(k.startswith(("device", "compute.")) for k in by):
        out.append("only the device or the forward implementation differs: float32 rounding (~1e-7 relative)")
    return out


def moved_queries(a: ResultRecord, b: ResultRecord, metric: str, top: int, texts: dict[str, str] | None = None
                  ) -> list[Moved]:
    pa, pb = a.per_query.get(metric, {}), b.per_query.get(metric, {})
    rows = [Moved(q, pa[q], pb[q], (texts or {}).get(q, "")) for q in set(pa) & set(pb) if pa[q] != pb[q]]
    rows.sort(key=lambda m: (-abs(m.delta), m.qid))
    return rows[:top]


def diff(a: ResultRecord, b: ResultRecord, *, metric: str | None = None, top: int = 10,
         texts: dict[str, str] | None = None) -> Diff:
    """Everything that differs between two records of one dataset."""
    diffs = differences(a, b)
    names = list(dict.fromkeys([*a.metrics, *b.metrics]))
    metric = metric or next((m for m in a.metrics if m in b.metrics), names[0] if names else "")
    return Diff(a.label, b.label, diffs, [(m, a.metrics.get(m), b.metrics.get(m)) for m in names],
                moved_queries(a, b, metric, top, texts), metric, causes(diffs, "A", "B"))


def against_published(a: ResultRecord, published: Sequence[Any], systems: dict[str, list[str]]) -> Diff:
    """A record beside every published score of its system on its dataset, with the known causes."""
    from harness.results.baselines import mapped_names, same_retriever

    rows = [p for p in published if p.dataset == a.dataset and p.split == a.split
            and any(same_retriever(a.retriever, n) for n in mapped_names(systems, p.system, p.dataset))]
    out = Diff(a.label, "published")
    for p in rows:
        out.metrics.append((f"{p.metric} ({p.system}, {p.source})", a.metrics.get(p.metric), p.value))
    if not rows:
        out.causes.append(f"no published score of {a.retriever} on {a.dataset}/{a.split} in baselines/published/")
    precision = (a.settings or {}).get("precision")
    if precision:
        out.causes.append(f"the published runs used fp32; this one {precision}")
    changed = {k: v for k, v in (a.settings or {}).items() if k != "precision"}
    if changed:
        out.causes.append("this run's settings are not the model's reference recipe: "
                          + ", ".join(f"{k}={v}" for k, v in changed.items()))
    for p in rows:
        got = a.metrics.get(p.metric)
        if got is not None and round(got, 4) != round(p.value, 4):
            out.causes.append(f"{p.metric}: {got:.4f} here, {p.value:.4f} in {p.source}")
    return out


def render(d: Diff, fmt: str = "text") -> str:
    from tabulate import tabulate

    table_fmt = {"text": "simple", "markdown": "github"}[fmt]
    lines = [f"A = {d.a}", f"B = {d.b}", ""]
    if d.differences:
        lines += ["what differs:", tabulate([[x.field, _short(x.a), _short(x.b)] for x in d.differences],
                                            headers=["field", "A", "B"], tablefmt=table_fmt, disable_numparse=True), ""]
    elif d.b != "published":
        lines += ["what differs: nothing recorded (the same computation)", ""]
    if d.metrics:
        rows = [[m, _num(x), _num(y), "—" if x is None or y is None else f"{round(y - x, 4) + 0.0:+.4f}"]
                for m, x, y in d.metrics]
        lines += [tabulate(rows, headers=["metric", "A", "B", "B - A"], tablefmt=table_fmt, disable_numparse=True),
                  ""]
    if d.moved:
        rows = [[m.qid, f"{m.a:.4f}", f"{m.b:.4f}", f"{round(m.delta, 4) + 0.0:+.4f}", m.text[:70]] for m in d.moved]
        lines += [f"queries that moved most ({d.moved_metric}):",
                  tabulate(rows, headers=["query", "A", "B", "B - A", "text"], tablefmt=table_fmt,
                           disable_numparse=True), ""]
    if d.causes:
        lines += ["known causes:"] + [f"- {c}" for c in d.causes]
    return "\n".join(lines).rstrip()


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}"


def _short(value: object) -> str:
    text = "—" if value is None else str(value)
    return text if len(text) <= 48 else text[:45] + "..."

"""The measure language: measure families that declare their parameters and register themselves, and the one
parser that reads their names, compatible with ir_measures' names.

Written as ir_measures writes them (``nDCG@10``, ``R@100``, ``R(rel=2)@1000``, ``AP(rel=2)``, ``RR@10``,
``P@10``, ``Success@5``, ``Judged@10``, ``Accuracy@20``, ``nDCG(judged_only=True)@10``,
``nDCG(dcg='exp-log2')@10``), as trec_eval writes them (``ndcg_cut.10`` as its ``-m`` takes it, ``ndcg_cut_10``
as it prints it, ``P.10``, ``recall.1000``, ``map``, ``map_cut.100``, ``recip_rank``, ``success.5``; a family's
``trec_eval`` name with a cut-off) or as the harness always has (``ndcg@10``, ``recall@100``, ``map@100``,
``mrr@10``, ``p@10``, ``accuracy@20``, ``top-20 accuracy``); case does not matter. Records, tables and
baselines spell a measure one way, :meth:`Measure.__str__` (``ndcg@10``, ``recall(rel=2)@1000``,
``ndcg(dcg=exp-log2)@10``), so a name written any of these ways finds the same numbers.

A name may also stand for several measures (:func:`expand_measures`): a measure set (``beir``: BEIR's NDCG, MAP,
Recall and P at 1, 3, 5, 10, 100 and 1000, named as BEIR names them) or trec_eval's list of cut-offs
(``P.5,10,20``, named as trec_eval prints them: ``P_5``, ``P_10``, ``P_20``). trec_eval's ``-l N`` is a default
relevance level (``rel``) for the measures that take one and do not write their own.

A :class:`Family` is one kind of measure: its names, its per-query function (``harness.metrics.functions``,
where the definitions are), the parameters it takes (``harness.params.Param``: name, type, default, range or
choices, help), what judges it and the range of its values. :func:`register_measure` adds one, from inside
the package or outside it; the parser, the ``--metric`` help (:func:`measure_help`) and the listing
(:func:`measure_rows`) read the registry, so a family registered before the command line is built is
offered everywhere. A parameter left at its default is not written in the measure's name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

from harness.errors import HarnessError
from harness.metrics.functions import (
    Ranking,
    Rels,
    average_precision,
    judged,
    ndcg,
    precision,
    recall,
    reciprocal_rank,
    success,
)
from harness.params import Param
from harness.registry import Registry

__all__ = ["ANSWERS", "FAMILIES", "JUDGED_ONLY", "MEASURE_SETS", "QRELS", "REL", "Family", "Measure", "MeasureRow",
           "ParamValue", "Ranking", "Rels", "expand_measures", "measure_help", "measure_rows", "parse_measure",
           "register_measure", "register_measure_set"]

#: what a measure parameter holds (``Param.kind``: int, float, bool or str)
ParamValue = int | float | bool | str
#: a per-query function: ``fn(rels, ranking, k, **parameters) -> value`` (``harness.metrics.functions``)
MeasureFn = Callable[..., float]

#: trec_eval's relevance level (``-l``): the smallest grade that counts as relevant
REL = Param("rel", int, 1, "the smallest grade that counts as relevant (trec_eval's -l)", low=1)
#: trec_eval's -J: unjudged documents are taken out of the ranking first
JUDGED_ONLY = Param("judged_only", bool, False, "unjudged documents are taken out of the ranking first "
                    "(trec_eval -J)")
DCG = Param("dcg", str, "log2", "the gain of grade g: g (log2, trec_eval's) or 2^g - 1 (exp-log2)",
            choices=("log2", "exp-log2"))
#: what judges a measure (``Family.judgement``, a ``Judgements``' ``kind``): graded qrels, or answers (open-domain QA)
QRELS = "qrels"
ANSWERS = "answers"
#: the characters a measure's name and aliases are made of (the parser reads nothing else as a name)
NAME = re.compile(r"[a-z_][a-z0-9_ -]*")


@dataclass(frozen=True)
class Family:
    """One kind of measure: its names (the harness's ``name``, ir_measures' ``ir_name``, ``aliases``),
    trec_eval's name, its per-query function (None: judged by answers elsewhere, ``harness.odqa``), whether it
    needs a cut-off, its parameters, what judges it (``qrels``: graded judgements; ``answers``: open-domain
    QA), the range its per-query values and means lie in (an imported number outside it is refused), and the
    parameters it refuses with the reason (nDCG's relevance level)."""

    name: str
    ir_name: str
    fn: MeasureFn | None
    summary: str
    needs_k: bool = True
    params: tuple[Param, ...] = ()
    judgement: str = QRELS
    trec_eval: str | None = None
    aliases: tuple[str, ...] = ()
    bounds: tuple[float, float] = (0.0, 1.0)
    refused: Mapping[str, str] = field(default_factory=dict)

    @property
    def takes_rel(self) -> bool:
        """Whether trec_eval's relevance level (``rel``) is one of its parameters."""
        return self.param("rel") is not None

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def spellings(self) -> tuple[str, ...]:
        """Every name the parser reads as this family (lower case)."""
        return tuple(dict.fromkeys((self.name.lower(), self.ir_name.lower(), *self.aliases)))

    def syntax(self) -> str:
        """How its name is written, ir_measures' way: ``nDCG@k``, ``AP[@k]``."""
        return self.ir_name + ("@k" if self.needs_k else "[@k]")


#: every measure family by name (the harness's spelling), in registration order
FAMILIES: Registry[Family] = Registry("measure")


def register_measure(family: Family) -> Family:
    """Add a measure family: from then on its names parse (with its parameters), and ``--metric``'s help and
    the listing show it. A name or alias another family has is refused, as is one the parser cannot read."""
    for spelling in family.spellings():
        if not NAME.fullmatch(spelling):
            raise ValueError(f"measure {family.name!r}: {spelling!r} is not a name the parser reads "
                             "(letters, digits, '_', '-' and spaces, starting with a letter)")
        owner = _owner(spelling)
        if owner is not None:
            raise ValueError(f"measure {family.name!r}: the name {spelling!r} is {owner.name}'s already")
    names = [p.name for p in family.params]
    if len(set(names)) != len(names):
        raise ValueError(f"measure {family.name!r} declares a parameter twice")
    return FAMILIES.register(family.name, family)


def _owner(spelling: str) -> Family | None:
    return next((f for _, f in FAMILIES.items() if spelling in f.spellings()), None)


for _family in (
    Family("ndcg", "nDCG", ndcg, "normalised discounted cumulative gain of the graded judgements",
           params=(DCG, JUDGED_ONLY), trec_eval="ndcg_cut",
           refused={"rel": "nDCG uses the grades themselves as gains; trec_eval's relevance level does not "
                           "change it"}),
    Family("recall", "R", recall, "relevant documents retrieved in the top k / all relevant",
           params=(REL, JUDGED_ONLY), trec_eval="recall", aliases=("r",)),
    Family("p", "P", precision, "relevant documents in the top k / k", params=(REL, JUDGED_ONLY), trec_eval="P",
           aliases=("precision",)),
    Family("map", "AP", average_precision, "average precision (mean: MAP)", needs_k=False,
           params=(REL, JUDGED_ONLY), trec_eval="map_cut"),
    Family("mrr", "RR", reciprocal_rank, "reciprocal rank of the first relevant document (mean: MRR)",
           needs_k=False, params=(REL, JUDGED_ONLY), trec_eval="recip_rank", aliases=("recip_rank",)),
    Family("success", "Success", success, "1 when a relevant document is in the top k",
           params=(REL, JUDGED_ONLY), trec_eval="success"),
    Family("judged", "Judged", judged, "judged documents in the top k / k (any grade, 0 included)"),
    Family("accuracy", "Accuracy", None, "open-domain QA: 1 when a passage in the top k holds an answer (DPR)",
           judgement=ANSWERS, aliases=("acc", "top", "top-k accuracy", "topk accuracy", "top-k acc")),
):
    register_measure(_family)


class MeasureRow(NamedTuple):
    """One family as a listing shows it."""

    name: str
    syntax: str
    trec_eval: str
    parameters: str
    judged_by: str
    summary: str


def _param_syntax(p: Param) -> str:
    if p.choices is not None:
        return f"{p.name}={'|'.join(p.choices)}"
    return f"{p.name}=" + {bool: "true", int: "N", float: "X"}.get(p.kind, "TEXT")


def measure_rows() -> list[MeasureRow]:
    """Every registered family, for a listing (``harness list``, the docs)."""
    return [MeasureRow(f.name, f.syntax(), f.trec_eval or "", ", ".join(_param_syntax(p) for p in f.params),
                       f.judgement, f.summary) for _, f in FAMILIES.items()]


def measure_help() -> str:
    """``--metric``'s help, read from the registry: the names, and each family's parameters."""
    qrels = [f for _, f in FAMILIES.items() if f.judgement == QRELS]
    others = [f for _, f in FAMILIES.items() if f.judgement != QRELS]
    by_params: dict[str, list[str]] = {}
    for f in qrels + others:
        if f.params:
            by_params.setdefault(", ".join(_param_syntax(p) for p in f.params), []).append(f.ir_name)
    params = "; ".join(f"{'/'.join(names)}({spelled})" for spelled, names in by_params.items())
    text = ", ".join(f.syntax() for f in qrels)
    if params:
        text += f", with parameters {params}, e.g. R(rel=2)@1000, nDCG(judged_only=true)@10"
    text += "".join(f"; {f.syntax()} (judged by {f.judgement})" for f in others)
    sets = ", ".join(f"{name} ({summary})" for name, (summary, _) in MEASURE_SETS.items())
    return (text + "; the harness's ndcg@10, recall@100 ... and trec_eval's ndcg_cut.10, P.5,10, recall.1000, map, "
            f"recip_rank ... too; a set: {sets}; repeatable")


_PATTERN = re.compile(r"^(?P<name>[a-z_][a-z0-9_ -]*?)\s*(?:\((?P<params>[^)]*)\))?\s*(?:@\s*(?P<k>[0-9]+))?$")
#: the deepest cut-off or retrieval depth: what Lucene's and faiss's searches take (a Java int)
MAX_DEPTH = 2**31 - 1

def _check_cutoff(text: str, k: int) -> None:
    if k < 1:
        raise HarnessError(f"metric {text!r}: the cut-off must be at least 1")
    if k > MAX_DEPTH:
        raise HarnessError(f"metric {text!r}: the cut-off must be at most {MAX_DEPTH:,} (what a search takes)")


#: trec_eval's cut-offs: ``ndcg_cut.10`` (its -m), ``ndcg_cut_10`` (its output), ``P.5,10`` (its lists, -m only)
_TREC_EVAL = re.compile(r"^(?P<name>[a-z_]+?)(?P<sep>[._])(?P<ks>[0-9]+(?:,[0-9]+)*)$")
_GLUED_ACCURACY = re.compile(r"^(?:top-?(\d+)\s+(?:accuracy|acc)|(?:accuracy|acc|top)-?(\d+))$")


@dataclass(frozen=True)
class Measure:
    """A parsed measure such as ``nDCG@10`` or ``R(rel=2)@1000``: its family's name, ``k`` (None: the whole
    ranking), ``rel`` (trec_eval's relevance level, the smallest grade that counts as relevant; kept as a
    field of its own because trec_eval's -l sets it from outside a name) and ``options``, its family's other
    parameters that differ from their defaults, in declared order."""

    name: str
    k: int | None
    rel: int = 1
    options: tuple[tuple[str, ParamValue], ...] = ()

    @property
    def family(self) -> Family:
        return FAMILIES.get(self.name)

    @property
    def judgement(self) -> str:
        return self.family.judgement

    @cached_property
    def arguments(self) -> dict[str, ParamValue]:
        """Every declared parameter's value (the defaults included), as the family's function takes them."""
        given = dict(self.options)
        out: dict[str, ParamValue] = {}
        for p in self.family.params:
            out[p.name] = self.rel if p.name == "rel" else given.get(p.name, p.default)
        return out

    def _params(self, spell: Callable[[ParamValue], str]) -> str:
        written = ([("rel", spell(self.rel))] if self.rel != 1 else []) + [(n, spell(v)) for n, v in self.options]
        return "(" + ",".join(f"{n}={v}" for n, v in written) + ")" if written else ""

    def __str__(self) -> str:
        """The harness's spelling, used by records and tables (``ndcg@10``, ``recall(rel=2)@1000``)."""
        return f"{self.name}{self._params(_harness_value)}" + (f"@{self.k}" if self.k is not None else "")

    @property
    def ir_measures(self) -> str:
        """ir_measures' spelling (``nDCG@10``, ``R(rel=2)@1000``, ``nDCG(dcg='exp-log2')@10``)."""
        return f"{self.family.ir_name}{self._params(repr)}" + (f"@{self.k}" if self.k is not None else "")

    def out_of_range(self, value: float) -> str | None:
        """Why ``value`` cannot be a value of this measure (outside its family's range), or None."""
        lo, hi = self.family.bounds
        return None if lo <= value <= hi else f"{self} = {value!r} is outside the measure's range [{lo:g}, {hi:g}]"

    def __call__(self, rels: Rels, ranking: Ranking) -> float:
        fn = self.family.fn
        if fn is None:
            raise HarnessError(f"{self} is judged by answers (open-domain QA), not by relevance judgements")
        return fn(rels, ranking, self.k, **self.arguments)


def _harness_value(value: ParamValue) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def parse_measure(text: str, rel: int | None = None) -> Measure:
    """The measure ``text`` names, in any spelling (see the module docstring); one line naming the problem
    otherwise. ``rel`` is a relevance level (trec_eval's ``-l``) for a measure that takes one and whose name does
    not give its own; the others ignore it, as trec_eval's nDCG does."""
    clean = " ".join(str(text).strip().lower().split())
    glued = _GLUED_ACCURACY.match(clean)
    if glued:
        clean = f"accuracy@{glued.group(1) or glued.group(2)}"
    m = _PATTERN.match(clean)
    family = _owner(m.group("name").strip()) if m else None
    trec = _TREC_EVAL.match(clean) if family is None else None
    if trec is not None and _trec_eval_owner(trec.group("name")) is not None:
        return _trec_eval_measure(text, trec, rel)
    if not m or family is None:
        raise HarnessError(_unknown(text, clean))
    k = int(m.group("k")) if m.group("k") else None
    if k is not None:
        _check_cutoff(text, k)
    if family.needs_k and k is None:
        raise HarnessError(f"metric {text!r} needs a cut-off, e.g. {family.ir_name}@10")
    return _measure(text, family, m.group("params") or "", k, rel)


def _measure(text: str, family: Family, written: str, k: int | None, rel: int | None) -> Measure:
    values = _parameters(text, family, written, k)
    level = values.pop("rel", rel if rel is not None and family.takes_rel and "rel" not in _written(written) else 1)
    if level != 1:
        checked = REL.parse(str(level), f"metric {text!r}")
        assert isinstance(checked, int)
        level = checked
    assert isinstance(level, int)
    options = tuple((p.name, values[p.name]) for p in family.params if p.name in values)
    return Measure(family.name, k, level, options)


def _written(params: str) -> set[str]:
    """The parameter names a name writes (``rel=1`` too, which is the default and so not kept)."""
    return {item.partition("=")[0].strip() for item in params.split(",") if item.strip()}


def _trec_eval_owner(name: str) -> Family | None:
    """The family whose trec_eval name is ``name`` (``ndcg_cut``, ``p``, ``recall``, ``map_cut``, ``success``)."""
    return next((f for _, f in FAMILIES.items() if f.trec_eval and f.trec_eval.lower() == name), None)


def _trec_eval_measure(text: str, trec: re.Match[str], rel: int | None) -> Measure:
    family = _trec_eval_owner(trec.group("name"))
    assert family is not None
    if "," in trec.group("ks"):
        name = str(text).strip()[:len(trec.group("name"))]
        raise HarnessError(f"metric {text!r} names {len(trec.group('ks').split(','))} measures (trec_eval's list of "
                           "cut-offs): give it to --metric or harness.evaluate, which take lists, or one cut-off "
                           f"each, e.g. {name}.{trec.group('ks').split(',')[0]}")
    k = int(trec.group("ks"))
    _check_cutoff(text, k)
    return _measure(text, family, "", k, rel)


def _unknown(text: str, clean: str) -> str:
    if clean in MEASURE_SETS:
        return (f"metric {text!r} is a set of measures ({MEASURE_SETS[clean][0]}): give it to --metric or "
                "harness.evaluate, or expand it with harness.metrics.expand_measures")
    known = ", ".join(f"{f.ir_name}@k" for _, f in FAMILIES.items())
    return (f"unknown metric {text!r}; known: {known}, with (rel=N) where it applies (e.g. nDCG@10, R@100, "
            "R(rel=2)@1000, AP(rel=2)); the names ndcg@10, recall@100, map, mrr@10, p@10, accuracy@20 and trec_eval's "
            "ndcg_cut.10, P.10, recall.1000, map_cut.100, recip_rank, success.5 work too")


def _parameters(text: str, family: Family, written: str, k: int | None) -> dict[str, ParamValue]:
    """The parameters written in a name that differ from their defaults, checked by their declarations."""
    where = f"metric {text!r}"
    values: dict[str, ParamValue] = {}
    seen: set[str] = set()
    for item in filter(None, (p.strip() for p in written.split(","))):
        key, _, value = (s.strip() for s in item.partition("="))
        declared = family.param(key)
        if declared is None:
            if key in family.refused:
                raise HarnessError(f"{where}: {family.refused[key]}; write {family.ir_name}@{k or 10}")
            if key == "rel":
                raise HarnessError(f"{where}: {family.ir_name} takes no relevance level; write "
                                   f"{family.ir_name}@{k or 10}")
            takes = ", ".join(_param_syntax(p) for p in family.params) or "no parameters"
            raise HarnessError(f"{where}: unknown parameter {item!r} ({family.ir_name} takes {takes})")
        if key in seen:
            raise HarnessError(f"{where}: the parameter {key} is given twice; give it once")
        seen.add(key)
        parsed = declared.parse(_unquoted(value), where)
        if parsed != declared.default:
            values[key] = parsed
    return values


def _unquoted(value: str) -> str:
    """A value as ir_measures writes strings (``'exp-log2'``) or bare."""
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" else value


#: named sets of measures (:func:`expand_measures`): name -> (what it is, its members as they are keyed)
MEASURE_SETS: dict[str, tuple[str, tuple[str, ...]]] = {}


def register_measure_set(name: str, summary: str, members: tuple[str, ...]) -> None:
    """Add a named set of measures: ``--metric NAME`` and ``harness.evaluate(..., [NAME])`` compute each member,
    keyed as written here. Every member must parse; a name a set or a measure has already is refused."""
    key = name.lower()
    if key in MEASURE_SETS or _owner(key) is not None:
        raise ValueError(f"measure set {name!r}: the name is taken")
    for member in members:
        parse_measure(member)
    MEASURE_SETS[key] = (summary, members)


register_measure_set("beir", "BEIR's nDCG, MAP, Recall and P at 1, 3, 5, 10, 100, 1000",
                     tuple(f"{n}@{k}" for n in ("NDCG", "MAP", "Recall", "P") for k in (1, 3, 5, 10, 100, 1000)))


def expand_measures(names: Iterable[str | Measure], rel: int | None = None) -> list[tuple[str, Measure]]:
    """Each name with the measure it is, a name that stands for several expanded: a measure set to its members
    (keyed as the set names them: ``beir`` -> ``NDCG@10``, ``MAP@10``, ...) and trec_eval's list of cut-offs to
    one measure each (keyed as trec_eval prints them: ``P.5,10`` -> ``P_5``, ``P_10``). Every other name is keyed
    as given (surrounding space aside); ``rel`` is trec_eval's ``-l`` (:func:`parse_measure`)."""
    out: list[tuple[str, Measure]] = []
    for name in names:
        if isinstance(name, Measure):
            out.append((str(name), name))
            continue
        text = str(name).strip()
        clean = " ".join(text.lower().split())
        trec = _TREC_EVAL.match(clean)
        if clean in MEASURE_SETS:
            out += [(member, parse_measure(member, rel)) for member in MEASURE_SETS[clean][1]]
        elif trec is not None and "," in trec.group("ks") and _trec_eval_owner(trec.group("name")) is not None:
            base = text[:len(trec.group("name"))]
            out += [(f"{base}_{k}", parse_measure(f"{base}_{k}", rel)) for k in trec.group("ks").split(",")]
        else:
            out.append((text, parse_measure(text, rel)))
    return out

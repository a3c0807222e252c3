"""Every public BEIR dataset, with its download address, checksum and evaluation protocol, as data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from harness.errors import HarnessError
from harness.registry import Registry

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"


@dataclass(frozen=True)
class EvalProtocol:
    """How a dataset is evaluated. Recorded with every result."""

    split: str = "test"
    #: BEIR's identical-id rule: a hit whose doc id equals the query id is dropped (Pyserini --remove-query).
    #: Only where the dataset's own protocol has it (the registered BEIR datasets) or ``--drop-self-hits``.
    drop_self_hits: bool = False
    text_rule: str = "title + ' ' + text"
    aggregate: str = "none"  # "mean-of-subsets": the leaderboard reports a collection as its parts' mean
    depth: int = 1000  # hits retrieved per query

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OdqaProtocol(EvalProtocol):
    """Open-domain QA (DPR convention): a question is answered by a passage whose text matches an answer."""

    split: str = "test"
    drop_self_hits: bool = False
    text_rule: str = "title + ' ' + text (retrieval); text only (answer matching)"
    depth: int = 100
    match: str = "string"  # DPR has_answer mode: "string" (tokens) or "regex" (CuratedTREC)


@dataclass(frozen=True)
class RemoteFile:
    """One file to download: address, md5 when the publisher (or ir_datasets) lists one, where it goes."""

    url: str
    target: str  # path relative to the data root
    md5: str | None = None
    unpack: str = "none"  # "none", "gunzip", or "unzip" (the archive's folder lands at ``target``)


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """A registered dataset: its id, the source that reads it (``kind``, a ``DatasetSource``'s name in
    ``harness.datasets``), its protocol, the parts averaged into it (a collection), its official measures
    (relevance levels included; empty: its source's defaults). Each source's own fields are in its own spec
    (:class:`BeirSpec`, :class:`OdqaSpec`, :class:`IrdsSpec`); a source of a plug-in subclasses this."""

    id: str
    kind: str
    protocol: EvalProtocol = field(default_factory=EvalProtocol)
    subsets: tuple[str, ...] = ()  # ids of the parts averaged into this dataset
    description: str = ""
    metrics: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        """Its folder relative to a data root."""
        return self.id

    @property
    def is_collection(self) -> bool:
        return bool(self.subsets)


@dataclass(frozen=True, kw_only=True)
class BeirSpec(DatasetSpec):
    """A BEIR dataset: the archive it comes in (``url``, the publisher's ``md5``, the folder it unpacks to)."""

    kind: str = "beir"
    url: str | None = None
    md5: str | None = None
    archive_root: str | None = None  # folder the archive unpacks to, relative to the download root


@dataclass(frozen=True, kw_only=True)
class OdqaSpec(DatasetSpec):
    """An open-domain QA dataset in DPR's files: passages and questions relative to a data root, and the
    files fetched when they are missing."""

    kind: str = "odqa"
    protocol: OdqaProtocol = field(default_factory=OdqaProtocol)
    passages: str = ""
    questions: str = ""
    downloads: tuple[RemoteFile, ...] = ()


@dataclass(frozen=True, kw_only=True)
class IrdsSpec(DatasetSpec):
    """A dataset read through ir_datasets: the ir_datasets id."""

    kind: str = "irds"
    irds_id: str = ""


DATASETS: Registry[DatasetSpec] = Registry("dataset")

# (name, md5 as listed in the BEIR README, evaluation split, description)
_BEIR = [
    ("msmarco", "444067daf65d982533ea17ebd59501e4", "dev", "MS MARCO passage (8.8M passages)"),
    ("trec-covid", "ce62140cb23feb9becf6270d0d1fe6d1", "test", "TREC-COVID (171K CORD-19 abstracts)"),
    ("nfcorpus", "a89dba18a62ef92f7d323ec890a0d38d", "test", "NFCorpus (3.6K medical documents)"),
    ("nq", "d4d3d2e48787a744b6f6e691ff534307", "test", "Natural Questions (2.68M Wikipedia passages)"),
    ("hotpotqa", "f412724f78b0d91183a0e86805e16114", "test", "HotpotQA (5.23M Wikipedia passages)"),
    ("fiqa", "17918ed23cd04fb15047f73e6c3bd9d9", "test", "FiQA-2018 (57K financial posts)"),
    ("arguana", "8ad3e3c2a5867cdced806d6503f29b99", "test", "ArguAna (8.67K arguments)"),
    ("webis-touche2020", "46f650ba5a527fc69e0a6521c5a23563", "test", "Touche-2020 (382K arguments)"),
    ("quora", "18fb154900ba42a600f84b839c173167", "test", "Quora duplicate questions (523K)"),
    ("dbpedia-entity", "c2a39eb420a3164af735795df012ac2c", "test", "DBpedia-Entity (4.63M entities)"),
    ("scidocs", "38121350fc3a4d2f48850f6aff52e4a9", "test", "SCIDOCS (25K papers)"),
    ("fever", "5a818580227bfb4b35bb6fa46d9b6c03", "test", "FEVER (5.42M Wikipedia abstracts)"),
    ("climate-fever", "8b66f0a9126c521bae2bde127b4dc99d", "test", "Climate-FEVER (5.42M Wikipedia abstracts)"),
    ("scifact", "5f7d1de60b170fc8027bb7898e2efca1", "test", "SciFact (5.2K abstracts)"),
]
CQADUPSTACK_MD5 = "4e41456d7df8ee7760a7f866133bda78"
CQADUPSTACK_FORUMS = ("android", "english", "gaming", "gis", "mathematica", "physics", "programmers",
                      "stats", "tex", "unix", "webmasters", "wordpress")

BEIR_SUITE: list[str] = []
for _name, _md5, _split, _desc in _BEIR:
    DATASETS.register(f"beir/{_name}", BeirSpec(
        id=f"beir/{_name}", url=BEIR_URL.format(name=_name), md5=_md5,
        archive_root=_name, protocol=EvalProtocol(split=_split, drop_self_hits=True), description=_desc))
    BEIR_SUITE.append(f"beir/{_name}")

for _forum in CQADUPSTACK_FORUMS:
    DATASETS.register(f"beir/cqadupstack/{_forum}", BeirSpec(
        id=f"beir/cqadupstack/{_forum}", url=BEIR_URL.format(name="cqadupstack"),
        md5=CQADUPSTACK_MD5, archive_root="cqadupstack", protocol=EvalProtocol(drop_self_hits=True),
        description=f"CQADupStack {_forum} forum"))
DATASETS.register("beir/cqadupstack", BeirSpec(
    id="beir/cqadupstack", url=BEIR_URL.format(name="cqadupstack"), md5=CQADUPSTACK_MD5,
    archive_root="cqadupstack", protocol=EvalProtocol(aggregate="mean-of-subsets", drop_self_hits=True),
    subsets=tuple(f"beir/cqadupstack/{f}" for f in CQADUPSTACK_FORUMS),
    description="CQADupStack: mean over its 12 StackExchange forums"))
BEIR_SUITE.insert(BEIR_SUITE.index("beir/quora"), "beir/cqadupstack")

# Open-domain QA over DPR's Wikipedia (psgs_w100.tsv, 21,015,324 passages). Addresses from DPR's
# dpr/data/download_data.py and EntityQuestions' README; DPR lists no checksums: the md5 of psgs_w100.tsv.gz
# is the one ir_datasets pins (dpr-w100/docs). Question files without a published md5 are recorded by
# sha256 in every result's dataset_provenance.
DPR_URL = "https://dl.fbaipublicfiles.com/dpr/data/retriever/{file}"
WIKI_PASSAGES = RemoteFile("https://dl.fbaipublicfiles.com/dpr/wikipedia_split/psgs_w100.tsv.gz",
                           "odqa/wikipedia-dpr/psgs_w100.tsv", md5="612fe66e0b6b41ee28f806140226c563", unpack="gunzip")
ENTITYQS = RemoteFile("https://nlp.cs.princeton.edu/projects/entity-questions/dataset.zip", "odqa/entityqs/dataset",
                      unpack="unzip")
# (id, DPR file, compressed, match mode, questions, description)
_ODQA = [
    ("nq", "nq-test.qa.csv", False, "string", 3610, "Natural Questions open (test)"),
    ("trivia", "trivia-test.qa.csv.gz", True, "string", 11313, "TriviaQA open (test)"),
    ("webq", "webquestions-test.qa.csv", False, "string", 2032, "WebQuestions (test)"),
    ("curatedtrec", "curatedtrec-test.qa.csv", False, "regex", 694, "CuratedTREC (test; answers are regexes)"),
    ("squad", "squad1-test.qa.csv", False, "string", 10570, "SQuAD v1.1 open (dev as test)"),
]
ENTITYQS_RELATIONS = ("P17", "P19", "P20", "P26", "P36", "P40", "P50", "P69", "P106", "P112", "P127", "P131",
                      "P136", "P159", "P170", "P175", "P176", "P264", "P276", "P407", "P413", "P495", "P740", "P800")

ODQA_SUITE: list[str] = []
for _name, _file, _gz, _match, _n, _desc in _ODQA:
    _local = f"odqa/{_name}/{_file.removesuffix('.gz')}"
    DATASETS.register(f"odqa/{_name}", OdqaSpec(
        id=f"odqa/{_name}", protocol=OdqaProtocol(match=_match),
        description=f"{_desc}, {_n} questions over DPR Wikipedia", passages=WIKI_PASSAGES.target, questions=_local,
        downloads=(RemoteFile(DPR_URL.format(file=_file), _local, unpack="gunzip" if _gz else "none"), WIKI_PASSAGES)))
    ODQA_SUITE.append(f"odqa/{_name}")
for _rel in ENTITYQS_RELATIONS:
    DATASETS.register(f"odqa/entityqs/{_rel}", OdqaSpec(
        id=f"odqa/entityqs/{_rel}", protocol=OdqaProtocol(),
        description=f"EntityQuestions relation {_rel} (test)", passages=WIKI_PASSAGES.target,
        questions=f"{ENTITYQS.target}/test/{_rel}.test.json", downloads=(ENTITYQS, WIKI_PASSAGES)))
DATASETS.register("odqa/entityqs", OdqaSpec(
    id="odqa/entityqs", protocol=OdqaProtocol(aggregate="mean-of-subsets"),
    subsets=tuple(f"odqa/entityqs/{r}" for r in ENTITYQS_RELATIONS),
    description="EntityQuestions (Sciavolino et al. 2021): mean over its 24 test relations"))
ODQA_SUITE.append("odqa/entityqs")

# What dense-retrieval papers report beyond BEIR, read through ir_datasets (harness.data.irds), each with the
# measures and relevance levels of its official evaluation: MS MARCO passage dev (small, 6,980 queries) as
# MS MARCO's RR@10 and trec_eval's recall.1000; TREC DL 2019/2020 passage (the judged queries) as Pyserini's
# 2CR evaluates them: map -l 2, ndcg_cut.10, recall.1000 -l 2 (pyserini/2cr/msmarco-v1-passage.yaml); LoTTE
# (Santhanam et al. 2022) as Success@5, its search and forum queries of each test domain.
_IRDS = [
    ("msmarco-passage/dev/small", "dev", ("mrr@10", "recall@1000"),
     "MS MARCO passage dev small (6,980 queries, 8.8M passages)"),
    ("msmarco-passage/trec-dl-2019/judged", "test", ("map(rel=2)", "ndcg@10", "recall(rel=2)@1000"),
     "TREC DL 2019 passage, the 43 judged queries (graded 0-3; binary measures at relevance 2)"),
    ("msmarco-passage/trec-dl-2020/judged", "test", ("map(rel=2)", "ndcg@10", "recall(rel=2)@1000"),
     "TREC DL 2020 passage, the 54 judged queries (graded 0-3; binary measures at relevance 2)"),
]
for _domain in ("lifestyle", "recreation", "science", "technology", "writing", "pooled"):
    for _kind in ("search", "forum"):
        _IRDS.append((f"lotte/{_domain}/test/{_kind}", "test", ("success@5", "recall@100"),
                      f"LoTTE {_domain} test, {_kind} queries (Success@5)"))
IRDS_IDS: list[str] = []
for _id, _split, _metrics, _desc in _IRDS:
    DATASETS.register(_id, IrdsSpec(id=_id, irds_id=_id, protocol=EvalProtocol(split=_split), metrics=_metrics,
                                    description=_desc + " [ir_datasets]"))
    IRDS_IDS.append(_id)

SUITES: dict[str, list[str]] = {"beir": BEIR_SUITE, "odqa": ODQA_SUITE}


def expand(ids: list[str]) -> list[str]:
    """Expand collections (cqadupstack) into the ids that are actually run, keeping order, no repeats."""
    out: list[str] = []
    for i in ids:
        spec = DATASETS.get(i) if i in DATASETS else None
        for part in (spec.subsets if spec and spec.subsets else (i,)):
            if part not in out:
                out.append(part)
    return out


def check_split(split: str, what: str = "--split") -> None:
    """A split names a qrels file and a folder of the results: letters, digits, ``.``, ``_``, ``-`` (not
    ``.`` or ``..``), so that it can never reach outside either. ``what``: how the user gave it."""
    import re

    if not isinstance(split, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", split) or split.strip(".") == "":
        raise HarnessError(f"{what} {split!r}: a split is a name of letters, digits, '.', '_' and '-' "
                           "(e.g. test, dev, train)")

"""Every public BEIR dataset, with its download address, checksum and evaluation protocol, as data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from harness.registry import Registry

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"


@dataclass(frozen=True)
class Protocol:
    """How a dataset is evaluated. Recorded with every result."""

    split: str = "test"
    drop_self_hits: bool = True  # a hit whose doc id equals the query id is dropped (Pyserini --remove-query)
    text_rule: str = "title + ' ' + text"
    aggregate: str = "none"  # "mean-of-subsets" for collections such as cqadupstack
    depth: int = 1000  # hits retrieved per query

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset. ``path`` is its folder relative to a data root."""

    id: str
    kind: str  # "beir" or "odqa"
    url: str | None = None
    md5: str | None = None  # md5 of the archive at ``url``, as the publisher lists it
    archive_root: str | None = None  # folder the archive unpacks to, relative to the download root
    protocol: Protocol = field(default_factory=Protocol)
    subsets: tuple[str, ...] = ()  # ids of the parts averaged into this dataset
    description: str = ""

    @property
    def path(self) -> str:
        return self.id

    @property
    def is_collection(self) -> bool:
        return bool(self.subsets)


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
    DATASETS.register(f"beir/{_name}", DatasetSpec(
        id=f"beir/{_name}", kind="beir", url=BEIR_URL.format(name=_name), md5=_md5,
        archive_root=_name, protocol=Protocol(split=_split), description=_desc))
    BEIR_SUITE.append(f"beir/{_name}")

for _forum in CQADUPSTACK_FORUMS:
    DATASETS.register(f"beir/cqadupstack/{_forum}", DatasetSpec(
        id=f"beir/cqadupstack/{_forum}", kind="beir", url=BEIR_URL.format(name="cqadupstack"),
        md5=CQADUPSTACK_MD5, archive_root="cqadupstack", description=f"CQADupStack {_forum} forum"))
DATASETS.register("beir/cqadupstack", DatasetSpec(
    id="beir/cqadupstack", kind="beir", url=BEIR_URL.format(name="cqadupstack"), md5=CQADUPSTACK_MD5,
    archive_root="cqadupstack", protocol=Protocol(aggregate="mean-of-subsets"),
    subsets=tuple(f"beir/cqadupstack/{f}" for f in CQADUPSTACK_FORUMS),
    description="CQADupStack: mean over its 12 StackExchange forums"))
BEIR_SUITE.insert(BEIR_SUITE.index("beir/quora"), "beir/cqadupstack")

SUITES: dict[str, list[str]] = {"beir": BEIR_SUITE}


def expand(ids: list[str]) -> list[str]:
    """Expand collections (cqadupstack) into the ids that are actually run, keeping order, no repeats."""
    out: list[str] = []
    for i in ids:
        spec = DATASETS.get(i) if i in DATASETS else None
        for part in (spec.subsets if spec and spec.subsets else (i,)):
            if part not in out:
                out.append(part)
    return out

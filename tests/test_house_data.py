"""The data and measure extension points, used as a newcomer would (docs/ARCHITECTURE.md, "How to add"): a
dataset source with its own id prefix made of existing parts, a measure with a parameter of its own, and a
dataset made of Python objects, each added from this test module alone through the public API, each run end
to end. The same documents, topics and judgements in three forms (a BEIR folder, MS MARCO-style TSV files read
by the toy source, Python dicts) give the same numbers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.cli import main
from harness.data.beir import iter_corpus, read_queries
from harness.data.dataset import Dataset
from harness.data.formats import TrecQrels, TsvCorpus, TsvTopics
from harness.data.parts import PartsDataset
from harness.data.registry import DATASETS, DatasetSpec, EvalProtocol
from harness.datasets import SOURCES, DatasetSource, register_source
from harness.errors import HarnessError
from harness.metrics import Family, parse_measure, register_measure
from harness.metrics.measures import FAMILIES
from harness.params import Param
from harness.results.records import ResultRecord, load_records
from harness.trec import Qrels, read_qrels
from tests.conftest import make_tiny_beir

# --- the same data in three forms ---------------------------------------------------------------------------


@dataclass
class Tiny:
    folder: Path  # BEIR layout
    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: Qrels


@pytest.fixture()
def tiny(tmp_path: Path) -> Tiny:
    folder = make_tiny_beir(tmp_path / "beir")
    corpus = {d.doc_id: {"title": d.title, "text": d.text} for d in iter_corpus(folder / "corpus.jsonl")}
    return Tiny(folder, corpus, read_queries(folder / "queries.jsonl"), read_qrels(folder / "qrels" / "test.tsv"))


def write_msmarco_style(tiny: Tiny, folder: Path) -> Path:
    """collection.tsv (id, text, title), queries.dev.tsv, qrels.dev.txt (TREC): MS MARCO's layout."""
    folder.mkdir(parents=True)
    (folder / "collection.tsv").write_text("".join(f"{i}\t{d['text']}\t{d['title']}\n" for i, d in tiny.corpus.items()))
    (folder / "queries.dev.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in tiny.queries.items()))
    (folder / "qrels.dev.txt").write_text("".join(f"{q} 0 {d} {g}\n" for q, docs in tiny.qrels.items()
                                                  for d, g in docs.items()))
    return folder


def records(out: Path) -> dict[str, ResultRecord]:
    found, problems = load_records(out)
    assert not problems
    return {r.dataset: r for _, r in found}


# --- (a) a dataset source with its own prefix, made of existing parts ----------------------------------------

@dataclass(frozen=True, kw_only=True)
class ToySpec(DatasetSpec):
    """A registered toy dataset: the folder of its MS MARCO-style files."""

    kind: str = "toy"
    folder: str = ""


class ToySource(DatasetSource[ToySpec]):
    """MS MARCO-style folders: ``toy:<folder>`` names one, and registered ``ToySpec`` ids too. The parts are the
    package's own TSV corpus, TSV topics and TREC qrels readers; the protocol is data: the dev split, no
    identical-id rule, MRR@10 and R@100 by default."""

    name = "toy"
    prefix = "toy:"
    spec_type = ToySpec

    def open_name(self, name: str, split: str | None) -> Dataset:
        return self.parts(name, Path(name.removeprefix(self.prefix)), split)

    def open(self, spec: ToySpec, split: str | None, allow_fetch: bool) -> Dataset:
        return self.parts(spec.id, Path(spec.folder), split)

    def find_local(self, spec: ToySpec) -> Path | None:
        return Path(spec.folder) if Path(spec.folder).is_dir() else None

    def parts(self, dataset_id: str, folder: Path, split: str | None) -> Dataset:
        split = split or "dev"
        ds = PartsDataset(dataset_id, EvalProtocol(split=split), TsvCorpus(folder / "collection.tsv",
                                                                         ("doc_id", "text", "title")),
                          TsvTopics(folder / f"queries.{split}.tsv"), TrecQrels(folder / f"qrels.{split}.txt"),
                          folder, ("mrr@10", "recall@100"), "an MS MARCO-style folder: collection.tsv, "
                                                            "queries.<split>.tsv, qrels.<split>.txt")
        ds.check_layout()
        return ds


@pytest.fixture()
def toy_source() -> Iterator[None]:
    register_source(ToySource())
    yield
    SOURCES.remove("toy")


def test_a_dataset_source_with_its_own_prefix_runs_through_the_cli(toy_source, tiny, tiny_bert_dir, tmp_path):
    msmarco = write_msmarco_style(tiny, tmp_path / "msmarco-style")
    out = tmp_path / "out"
    model = f"hf:{tiny_bert_dir}"
    common = ["--retriever", model, "--output-dir", str(out), "--device", "cpu", "--metric", "nDCG@10",
              "--metric", "RR@10"]
    assert main(["run", "--dataset", f"toy:{msmarco}", *common]) == 0
    assert main(["run", "--dataset", str(tiny.folder), "--split", "test", *common]) == 0
    got = records(out)
    toy, beir = got[f"toy:{msmarco}"], got["local/beir"]
    assert toy.split == "dev" and toy.num_queries == 8 and toy.documents_searched == 40
    assert toy.metrics == beir.metrics  # the same data read by other parts: the same numbers
    assert set(toy.dataset_provenance["sha256"]) == {"collection.tsv", "queries.dev.tsv", "qrels.dev.txt"}

    # a registered id of the source reads its own typed spec; a spec of another type is refused in one line
    DATASETS.register("toy/registered", ToySpec(id="toy/registered", folder=str(msmarco)))
    DATASETS.register("toy/untyped", DatasetSpec(id="toy/untyped", kind="toy"))
    try:
        assert main(["run", "--dataset", "toy/registered", "--retriever", model, "--output-dir", str(out),
                     "--device", "cpu"]) == 0
        assert set(records(out)["toy/registered"].metrics) == {"mrr@10", "recall@100"}  # the protocol's defaults
        from harness.datasets import resolve_dataset

        with pytest.raises(HarnessError, match="the toy source reads a ToySpec, and this one is a DatasetSpec"):
            resolve_dataset("toy/untyped")
    finally:
        DATASETS.remove("toy/registered")
        DATASETS.remove("toy/untyped")


def test_a_prefix_is_owned_by_one_source(toy_source):
    class Another(ToySource):
        name = "another"

    with pytest.raises(ValueError, match="the prefix 'toy:' is another source's"):
        register_source(Another())
    assert "another" not in SOURCES


# --- (b) a measure with a parameter of its own ---------------------------------------------------------------

def gained_precision(rels: dict[str, int], ranking: list[str], k: int | None, *, gain: int = 1) -> float:
    """``gain`` times P@k: a toy measure whose one parameter is new to the language."""
    cut = ranking if k is None else ranking[:k]
    return gain * sum(1 for d in cut if rels.get(d, 0) > 0) / (k or max(len(cut), 1))


@pytest.fixture()
def gained() -> Iterator[None]:
    register_measure(Family("mymeasure", "MyMeasure", gained_precision, "gain x P@k (a test's measure)",
                            params=(Param("gain", int, 1, "what a relevant document is worth", low=1, high=10),),
                            bounds=(0.0, 10.0)))
    yield
    FAMILIES.remove("mymeasure")


def test_a_measure_with_a_new_parameter_parses_shows_and_runs(gained, tiny, tiny_bert_dir, tmp_path, capsys):
    m = parse_measure("MyMeasure(gain=2)@10")
    assert (str(m), m.ir_measures, m.options, m.k) == ("mymeasure(gain=2)@10", "MyMeasure(gain=2)@10",
                                                        (("gain", 2),), 10)
    assert str(parse_measure("mymeasure(gain=1)@10")) == "mymeasure@10"  # the default is not written
    with pytest.raises(HarnessError, match=r"gain=11 is not a valid value; expected an integer in \[1, 10\]"):
        parse_measure("MyMeasure(gain=11)@10")
    with pytest.raises(HarnessError, match=r"unknown parameter 'rel=2'|takes no relevance level"):
        parse_measure("MyMeasure(rel=2)@10")

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "MyMeasure@k" in shown and "MyMeasure(gain=N)" in shown

    out = tmp_path / "out"
    assert main(["run", "--retriever", f"hf:{tiny_bert_dir}", "--dataset", str(tiny.folder), "--output-dir",
                 str(out), "--device", "cpu", "--metric", "MyMeasure(gain=2)@10", "--metric", "P@10"]) == 0
    (rec,) = records(out).values()
    assert rec.metrics["mymeasure(gain=2)@10"] == pytest.approx(2 * rec.metrics["p@10"], abs=1e-12)
    assert rec.metrics["p@10"] > 0


# --- (c) a dataset made of Python objects, through the Python API -------------------------------------------

def test_a_dataset_made_in_python_runs_and_evaluates_through_the_api(tiny, tiny_bert_dir, tmp_path):
    import harness.api as api
    from harness.datasets import resolve_dataset
    from harness.settings import Execution

    cpu = Execution(device="cpu", progress=False)
    ds = api.dataset("tiny", tiny.corpus, tiny.queries, tiny.qrels)
    assert ds.id == "memory:tiny" and ds.queries() == tiny.queries and len(list(ds.corpus())) == 40
    (mem,) = api.run([f"hf:{tiny_bert_dir}"], [ds], ["nDCG@10", "R@10"], tmp_path / "a", execution=cpu)
    (beir,) = api.run([f"hf:{tiny_bert_dir}"], [tiny.folder], ["nDCG@10", "R@10"], tmp_path / "b", execution=cpu)
    assert mem.dataset == "memory:tiny" and mem.metrics == beir.metrics and mem.num_queries == 8
    assert mem.dataset_provenance["sha256"] == beir.dataset_provenance["sha256"]  # the copy is BEIR's files
    run_file = tmp_path / "a" / mem.dataset / "test" / mem.run_file
    assert api.evaluate(ds, run_file, ["nDCG@10", "R@10"]) == mem.metrics  # a run scored by its judgements
    again = resolve_dataset("memory:tiny")  # another process finds the copy by the id
    assert again.queries() == tiny.queries and again.corpus_digest == ds.corpus_digest


@pytest.mark.parametrize("change,problem", [
    (lambda c, q, r: c.update({"bad id": {"text": "x"}}), "document id 'bad id' contains space"),
    (lambda c, q, r: r.update({"q-missing": {"d1": 1}}), "query 'q-missing' is judged but not among the queries"),
    (lambda c, q, r: r["q0"].update({"d1": True}), "the grade True is not an integer"),
    (lambda c, q, r: c.clear(), "the corpus is empty"),
    (lambda c, q, r: q.update({"q9": 3}), "query 'q9' has no text string")])
def test_a_dataset_made_in_python_is_checked_when_made(tiny, change, problem):
    import harness.api as api

    corpus, queries, qrels = dict(tiny.corpus), dict(tiny.queries), {q: dict(d) for q, d in tiny.qrels.items()}
    change(corpus, queries, qrels)
    with pytest.raises(HarnessError, match="memory:tiny: .*" + problem) as caught:
        api.dataset("tiny", corpus, queries, qrels)
    assert len(str(caught.value).splitlines()) == 1

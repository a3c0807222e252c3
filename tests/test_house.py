"""The house's extension points, used as a newcomer would (docs/ARCHITECTURE.md, "How to add"): a retriever
kind and a training objective added from this test module alone through the public registration API, the
approximate searcher as a setting of its own, and no kind string compared outside the class that owns it."""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from harness.data.dataset import Dataset
from harness.datasets import SOURCES
from harness.errors import HarnessError
from harness.params import Param
from harness.retrievers.base import Indexed, JsonObject, Retriever, SearchContext, Searched
from harness.retrievers.registry import RETRIEVER_KINDS, RetrieverKind, RetrieverSpec, register_kind
from harness.retrievers.spec import LoadOptions
from harness.runner import run
from harness.settings import EncodeSettings, Execution
from harness.train.objectives import OBJECTIVES, QueueObjective, register_objective
from harness.trec import FLOAT32_SCORE_FORMAT, read_run
from tests.conftest import make_tiny_beir, make_tiny_bert

REPO = Path(__file__).resolve().parents[1]
CPU = Execution(device="cpu", progress=False)


# --- a retriever kind from a test module ----------------------------------------------------------------------

class OverlapRetriever:
    """Scores a document by the number of query words it contains, times a weight (the kind's parameter)."""

    score_format = FLOAT32_SCORE_FORMAT

    def __init__(self, spec: RetrieverSpec):
        self.weight = float(spec.params["weight"])
        self.docs: dict[str, list[tuple[str, set[str]]]] = {}  # each dataset's index, by dataset id

    def fingerprint(self) -> JsonObject:
        return {"kind": "overlap", "weight": self.weight}

    def changed_settings(self) -> dict[str, Any]:
        return {}

    def index(self, dataset: Dataset) -> Indexed:
        self.docs[dataset.id] = [(d.doc_id, set(f"{d.title} {d.text}".split())) for d in dataset.corpus()]
        return Indexed("in memory", len(self.docs[dataset.id]))

    def search(self, queries: Mapping[str, str], k: int, context: SearchContext) -> Searched:
        docs = self.docs[context.dataset_id]  # the call says which dataset: nothing is left from index()
        out = {}
        for qid, text in queries.items():
            words = set(text.split())
            scored = sorted(((self.weight * len(words & w), -i, d) for i, (d, w) in enumerate(docs)), reverse=True)[:k]
            out[qid] = {d: float(s) for s, _, d in scored}
        return Searched(out, documents=len(docs))

    def provenance(self, context: SearchContext) -> JsonObject:
        return {"weight": self.weight}


class OverlapKind(RetrieverKind):
    name = "overlap"
    prefix = "overlap:"

    def load(self, spec: RetrieverSpec, options: LoadOptions, stages: Sequence[Retriever]) -> Retriever:
        return OverlapRetriever(spec)

    def parse(self, name: str, resolve: Any) -> RetrieverSpec:
        weight = name[len("overlap:"):]
        try:
            value = float(weight)
        except ValueError:
            raise HarnessError(f"{name!r}: overlap:WEIGHT takes a number") from None
        if not math.isfinite(value) or value <= 0:
            raise HarnessError(f"{name!r}: the weight must be a positive finite number")
        return RetrieverSpec(f"overlap:{value!r}", self.name, "query-word overlap", params={"weight": value})

    def recipe(self, spec: RetrieverSpec) -> str:
        return f"overlap x {spec.params['weight']}"


@pytest.fixture()
def overlap_kind() -> Iterator[None]:
    register_kind(OverlapKind())
    yield
    RETRIEVER_KINDS.remove("overlap")


def test_a_toy_retriever_kind_added_from_a_test_module_runs_end_to_end(overlap_kind, tmp_path):
    folder = make_tiny_beir(tmp_path / "tiny")
    (rec,) = run(["overlap:2"], [str(folder)], ["ndcg@10", "recall@10"], tmp_path / "out", execution=CPU,
                 log=lambda m: None)
    assert rec.retriever == "overlap:2.0" and rec.retriever_spec["kind"] == "overlap"
    assert rec.documents_searched == 40 and rec.num_queries == 8
    assert 0 < rec.metrics["ndcg@10"] <= 1  # each query's words come from its relevant document
    written = read_run(tmp_path / "out" / rec.dataset / "test" / rec.run_file)
    assert set(written) == {f"q{j}" for j in range(8)} and all(len(h) == 10 or len(h) == 40 for h in written.values())
    assert all(s % 2 == 0 for hits in written.values() for s in hits.values())  # weight 2 x integer overlaps
    with pytest.raises(HarnessError, match="positive finite"):
        run(["overlap:nan"], [str(folder)], None, tmp_path / "out", execution=CPU, log=lambda m: None)
    assert "overlap" in RETRIEVER_KINDS


def test_harness_list_shows_a_registered_spec_through_its_kind(overlap_kind, capsys):
    from harness.cli import main
    from harness.retrievers.registry import RETRIEVERS

    RETRIEVERS.register("overlap-3", RetrieverSpec("overlap-3", "overlap", "toy", params={"weight": 3.0}))
    try:
        assert main(["list", "retrievers"]) == 0
    finally:
        RETRIEVERS.remove("overlap-3")
    assert "overlap x 3.0" in capsys.readouterr().out


# --- a training objective from a test module ------------------------------------------------------------------

class TwoKeyMoco(QueueObjective):
    """MoCo's InfoNCE over two key crops per window, the second pair's term weighted by an option of its own."""

    name = "two-key-moco"
    summary = "moco over two key crops"
    params = (Param("--second-key-weight", float, 1.0, "weight of the second key crop's term", low=0, high=10),)

    def pairs_per_window(self, cfg: Any) -> int:
        return 2

    def pair_loss(self, cfg: Any, q: torch.Tensor, keys: torch.Tensor, negatives: torch.Tensor | None) -> Any:
        from harness.train.losses import moco_loss

        first, second = moco_loss(q, keys[:, 0], negatives, cfg.temperature), \
            moco_loss(q, keys[:, 1], negatives, cfg.temperature)
        first.loss = (first.loss + cfg.option("second_key_weight") * second.loss) / 2
        return first


@pytest.fixture()
def two_key_moco() -> Iterator[None]:
    register_objective(TwoKeyMoco())
    yield
    OBJECTIVES.remove("two-key-moco")


def test_a_toy_objective_added_from_a_test_module_trains_through_the_cli(two_key_moco, tmp_path):
    from safetensors.torch import load_file

    from harness.cli import main
    from harness.train.checkpoint import list_checkpoints
    from tests.train.conftest import make_tiny_bert as make_train_bert
    from tests.train.conftest import write_tiny_corpus

    init = make_train_bert(tmp_path / "init")
    corpus = write_tiny_corpus(tmp_path / "corpus")
    out = tmp_path / "run"
    assert main(["train", "--init", str(init), "--corpus", str(corpus), "--output", str(out), "--objective",
                 "two-key-moco", "--steps", "4", "--warmup-steps", "1", "--batch-size", "3", "--chunk-length", "24",
                 "--queue-size", "12", "--save-every", "2", "--num-workers", "0", "--no-progress", "--no-plot",
                 "--device", "cpu", "--second-key-weight", "0.5"]) == 0
    (step, folder), = list_checkpoints(out)[-1:]
    meta = json.loads((folder / "harness_checkpoint.json").read_text())
    assert step == 4 and meta["objective"] == "two-key-moco" and meta["hyperparameters"]["m"] == 2
    assert meta["hyperparameters"]["second_key_weight"] == 0.5  # its own option, recorded like every other
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(math.isfinite(r["loss"]) for r in rows)
    before, after = load_file(str(init / "model.safetensors")), load_file(str(folder / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before if k in after)


def test_an_objectives_own_option_is_shown_under_its_name_and_checked(two_key_moco, tmp_path, capsys):
    from harness.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = capsys.readouterr().out
    assert "objective two-key-moco:" in shown and "--second-key-weight" in shown
    assert main(["train", "--init", "x", "--corpus", "y", "--output", str(tmp_path), "--objective", "two-key-moco",
                 "--second-key-weight", "-1"]) == 2  # out of its declared range: one line, nothing started
    assert "--second-key-weight=-1.0 is not a valid value; expected a finite number in [0, 10]" in \
        capsys.readouterr().err
    # an option of another objective does nothing there: refused in one line naming whose it is
    assert main(["train", "--init", "x", "--corpus", "y", "--output", str(tmp_path), "--objective", "moco",
                 "--second-key-weight", "0.5"]) == 2
    assert "--second-key-weight is an option of two-key-moco, not of --objective moco" in capsys.readouterr().err


# --- the approximate searcher is a setting of its own ------------------------------------------------------------

def test_index_hnsw_is_stored_apart_with_its_recall_against_exact(tmp_path):
    model = make_tiny_bert(tmp_path / "bert", hidden=16)
    folder = make_tiny_beir(tmp_path / "tiny")
    out = tmp_path / "out"
    (exact,) = run([f"hf:{model}"], [str(folder)], None, out, execution=CPU, log=lambda m: None)
    exact_path = out / exact.dataset / "test" / exact.run_file.replace(".trec", ".json")
    before = exact_path.read_bytes()
    (approx,) = run([f"hf:{model}"], [str(folder)], None, out, settings=EncodeSettings(index="hnsw"),
                    execution=CPU, log=lambda m: None)
    assert exact_path.read_bytes() == before  # the exact record is untouched
    assert approx.settings == {"index": "hnsw"} and approx.label.endswith("[index=hnsw]")
    assert approx.run_file != exact.run_file and approx.fingerprint != exact.fingerprint
    search = approx.retriever_provenance["search"]
    assert search["approximate"] is True and search["index"]["kind"] == "hnsw"
    assert search["recall@100_vs_exact"] == 1.0  # 40 documents, searched 1000 wide: the graph finds them all
    assert approx.metrics == exact.metrics and approx.documents_searched == 40
    assert exact.retriever_provenance["search"] == "exact inner product (faiss)"


def test_index_is_refused_where_it_does_not_apply(tmp_path):
    folder = make_tiny_beir(tmp_path / "tiny")
    with pytest.raises(HarnessError, match="--index hnsw applies to dense"):
        run(["bm25"], [str(folder)], None, tmp_path / "out", settings=EncodeSettings(index="hnsw"),
            execution=CPU, log=lambda m: None)
    with pytest.raises(HarnessError, match="--index must be one of"):
        EncodeSettings(index="annoy")


# --- no kind string compared outside its class ---------------------------------------------------------------------

OWNERS = {"harness/retrievers/kinds.py", "harness/datasets.py", "harness/train/objectives.py"}


def _kind_names() -> set[str]:
    from harness.retrievers.registry import RETRIEVER_KINDS as KINDS

    return set(KINDS.names()) | set(SOURCES.names()) | set(OBJECTIVES.names())


def _strings(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return set()


def test_no_kind_string_is_compared_outside_the_class_that_owns_it():
    names = _kind_names()
    found = []
    for path in sorted((REPO / "harness").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel in OWNERS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                hit = set().union(*(_strings(o) for o in operands)) & names
                if hit and any(isinstance(o, ast.Attribute | ast.Name) for o in operands):
                    found.append(f"{rel}:{node.lineno} compares {sorted(hit)}")
    assert not found, "kind strings compared outside their class:\n" + "\n".join(found)


def test_ivfpq_on_too_few_vectors_is_one_line(tmp_path):
    model = make_tiny_bert(tmp_path / "bert", hidden=16)
    folder = make_tiny_beir(tmp_path / "tiny")
    with pytest.raises(HarnessError, match="ivfpq: 40 vectors are too few"):
        run([f"hf:{model}"], [str(folder)], None, tmp_path / "out", settings=EncodeSettings(index="ivfpq"),
            execution=CPU, log=lambda m: None)


def test_an_unreadable_index_file_is_built_again_and_a_readonly_one_is_one_line(tmp_path, monkeypatch):
    import faiss

    model = make_tiny_bert(tmp_path / "bert", hidden=16)
    folder = make_tiny_beir(tmp_path / "tiny")
    hnsw = EncodeSettings(index="hnsw")
    (first,) = run([f"hf:{model}"], [str(folder)], None, tmp_path / "a", settings=hnsw, execution=CPU,
                   log=lambda m: None)
    index_file = Path(first.retriever_provenance["search"]["index_file"])
    index_file.write_bytes(index_file.read_bytes()[:100])  # truncated
    (again,) = run([f"hf:{model}"], [str(folder)], None, tmp_path / "b", settings=hnsw, execution=CPU,
                   log=lambda m: None)
    assert "unreadable" in again.retriever_provenance["search"]["rebuilt"] and again.metrics == first.metrics
    index_file.unlink()

    def no_space(index, path):
        raise RuntimeError("Error in write: No space left on device")

    monkeypatch.setattr(faiss, "write_index", no_space)
    with pytest.raises(HarnessError, match="the index cannot be written.*No space left"):
        run([f"hf:{model}"], [str(folder)], None, tmp_path / "c", settings=hnsw, execution=CPU, log=lambda m: None)


def test_an_index_is_tied_to_the_vectors_it_was_built_from(tmp_path, monkeypatch):
    """A store encoded again with other vectors of the same count (here: each shard's rows reversed, seals
    rewritten to match) gets an index of its own: once, the older index was used because its count fitted.
    The forged store lives in a cache of this test's own (the session's cache is shared by later tests)."""
    import hashlib

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))

    model = make_tiny_bert(tmp_path / "bert", hidden=16)
    folder = make_tiny_beir(tmp_path / "tiny")
    hnsw = EncodeSettings(index="hnsw")
    (first,) = run([f"hf:{model}"], [str(folder)], None, tmp_path / "a", settings=hnsw, execution=CPU,
                   log=lambda m: None)
    index_file = Path(first.retriever_provenance["search"]["index_file"])
    for npy in sorted(index_file.parent.glob("shard-*.npy")):
        np.save(npy, np.load(npy)[::-1].copy(), allow_pickle=False)
        seal = npy.with_suffix(".json")
        meta = json.loads(seal.read_text())
        meta["npy_sha256"] = hashlib.sha256(npy.read_bytes()).hexdigest()
        meta["npy_bytes"] = npy.stat().st_size
        seal.write_text(json.dumps(meta))
    (again,) = run([f"hf:{model}"], [str(folder)], None, tmp_path / "b", settings=hnsw, execution=CPU,
                   log=lambda m: None)
    search = again.retriever_provenance["search"]
    assert search["built"] is True and "built from other vectors" in search["rebuilt"]
    assert Path(search["index_file"]) != index_file and not index_file.exists()
    assert search["recall@100_vs_exact"] == 1.0  # the new index answers for the vectors the store holds now


# --- kinds are classes: retriever kinds load their own retriever, index kinds make their own index ------------------

def test_a_retriever_kind_is_registered_by_class_and_imports_its_retriever_in_load():
    class NoLoad(RetrieverKind):
        name = "no-load"

    with pytest.raises(ValueError, match="needs a name and a load"):
        register_kind(NoLoad())
    tree = ast.parse((REPO / "harness/retrievers/kinds.py").read_text(encoding="utf-8"))
    kinds = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("Kind")]
    assert len(kinds) == 8
    for cls in kinds:  # the retriever's module is imported inside load(): the import graph shows it, lazily
        load = next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "load")
        assert any(isinstance(n, ast.ImportFrom) and (n.module or "").startswith("harness.retrievers.")
                   for n in ast.walk(load)), cls.name
    for module in ("spec.py", "kinds.py", "registry.py"):
        assert "importlib" not in (REPO / "harness/retrievers" / module).read_text(encoding="utf-8")


def test_an_index_kind_added_from_a_test_module_builds_and_searches_its_own_index():
    from harness.ann import INDEX_KINDS, IndexConfig, IndexKind, build
    from harness.ann import search as ann_search

    class FlatL2(IndexKind):
        """Exact search by Euclidean distance (a ranking of its own: nearest first)."""

        name = "flat-l2"
        approximate = False

        def make(self, faiss: Any, dim: int, n: int, config: IndexConfig, shards: Any) -> Any:
            return faiss.IndexFlatL2(dim)

    INDEX_KINDS.register(FlatL2.name, FlatL2())
    try:
        rng = np.random.default_rng(0)
        shards = [([f"d{i}" for i in range(j, j + 10)], rng.normal(size=(10, 4)).astype(np.float32)) for j in (0, 10)]
        queries = rng.normal(size=(3, 4)).astype(np.float32)
        config = IndexConfig(kind="flat-l2")
        index, ids, _ = build(shards, 4, 20, config)
        _, docs = ann_search(index, ids, queries, 5, config)
        vectors = np.concatenate([v for _, v in shards])
        nearest = [[f"d{j}" for j in np.argsort(((vectors - q) ** 2).sum(axis=1), kind="stable")[:5]] for q in queries]
        assert docs == nearest
    finally:
        INDEX_KINDS.remove(FlatL2.name)
    with pytest.raises(HarnessError, match="unknown index kind 'flat-l2'"):
        build([], 4, 0, IndexConfig(kind="flat-l2"))

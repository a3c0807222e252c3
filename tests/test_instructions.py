"""Per-dataset query instructions (issue 30): a recipe may give a dataset its own instruction (or none), as
Pyserini's 2CR conditions and MTEB's task prompts do; the instruction used is in the fingerprint and the
record."""

from __future__ import annotations

import pytest

from harness.data.registry import BEIR_SUITE, CQADUPSTACK_FORUMS
from harness.retrievers.config import EncoderConfig
from harness.retrievers.registry import RETRIEVERS, RetrieverSpec
from harness.runner import run
from harness.settings import EncodeSettings, Execution
from harness.trec import as_dict

CPU = Execution(device="cpu", progress=False)
INSTRUCTION = "Represent this sentence for searching relevant passages: "


@pytest.mark.parametrize("dataset", BEIR_SUITE + [f"beir/cqadupstack/{f}" for f in CQADUPSTACK_FORUMS])
def test_bge_instruction_per_dataset_equals_2cr(dataset):
    """pyserini/2cr/beir.py: the bge-base-en-v1.5 condition passes the instruction on every BEIR dataset
    but ArguAna and Quora, where its query prefix is empty."""
    expected = "" if dataset.removeprefix("beir/") in {"arguana", "quora"} else INSTRUCTION
    assert RETRIEVERS.get("bge-base-en-v1.5").encoder.query_prefix_for(dataset) == expected


def test_the_instruction_used_is_recorded_and_changes_the_run(tiny_beir, tiny_bert_dir, tmp_path):
    name = "tiny-instructed"
    recipe = EncoderConfig(query_prefix="find: ", query_prefix_by_dataset=(("local/tiny", ""),))
    RETRIEVERS.register(name, RetrieverSpec(name, "dense", "toy", model=str(tiny_bert_dir), encoder=recipe))
    try:
        (off,) = run([name], [str(tiny_beir)], ["ndcg@10"], tmp_path / "a", execution=CPU, log=lambda m: None)
        everywhere = EncodeSettings(query_prefix="find: ")  # the command line's prefix applies to every dataset
        (on,) = run([name], [str(tiny_beir)], ["ndcg@10"], tmp_path / "b", execution=CPU, settings=everywhere,
                    log=lambda m: None)
    finally:
        RETRIEVERS.remove(name)
    assert off.dataset == "local/tiny"
    assert off.retriever_provenance["query_instruction"] == ""
    assert on.retriever_provenance["query_instruction"] == "find: "
    assert off.fingerprint != on.fingerprint and off.per_query != on.per_query
    assert [list(p) for p in off.retriever_provenance["encoder"]["query_prefix_by_dataset"]] == [["local/tiny", ""]]


def test_recipes_without_per_dataset_instructions_keep_their_fingerprints():
    from harness.retrievers.registry import CONTRIEVER

    assert "query_prefix_by_dataset" not in CONTRIEVER.recipe()
    assert "query_prefix_by_dataset" in RETRIEVERS.get("bge-base-en-v1.5").encoder.recipe()


def test_search_is_told_its_dataset_and_does_not_read_what_index_left(tiny_bert_dir, tmp_path):
    """Once, index() stored the dataset's query instruction and search() read it, so a search was right only
    after the right index call. Now the context of each call says which dataset it is for."""
    from harness.datasets import resolve_dataset
    from harness.retrievers.base import SearchContext
    from tests.conftest import make_tiny_beir

    recipe = EncoderConfig(query_prefix="find: ", query_prefix_by_dataset=(("local/tiny", ""),))
    spec = RetrieverSpec("tiny-instructed", "dense", "toy", model=str(tiny_bert_dir), encoder=recipe)
    bare = resolve_dataset(str(make_tiny_beir(tmp_path / "tiny")))  # local/tiny: no instruction
    instructed = resolve_dataset(str(make_tiny_beir(tmp_path / "other")))  # the recipe's own "find: "
    assert (bare.id, instructed.id) == ("local/tiny", "local/other")
    retriever = spec.load(execution=CPU)
    retriever.index(bare)
    right_after = retriever.search(bare.queries(), 10, SearchContext(bare))
    retriever.index(instructed)  # the last index call is another dataset's
    later = retriever.search(bare.queries(), 10, SearchContext(bare))
    assert as_dict(later.run) == as_dict(right_after.run) and later.documents == 40
    assert retriever.provenance(SearchContext(bare))["query_instruction"] == ""
    assert retriever.provenance(SearchContext(instructed))["query_instruction"] == "find: "
    other = retriever.search(bare.queries(), 10, SearchContext(instructed))  # same corpus, its own instruction
    assert as_dict(other.run) != as_dict(right_after.run)

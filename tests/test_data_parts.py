"""The readers a dataset is made of (harness/data/formats.py), each on an inline file, and the dataset they
make (harness/data/parts.py): which files it reads, which topics it evaluates, what it says when a file is
missing; the id prefixes through the source registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.data.corpus import Doc
from harness.data.formats import (
    BeirQrels,
    DprCorpus,
    JsonlTopics,
    QrelsFile,
    TaggedTopics,
    TrecQrels,
    TsvCorpus,
    TsvTopics,
    topics_file,
)
from harness.data.parts import PartsDataset
from harness.data.registry import EvalProtocol
from harness.errors import DataError, HarnessError


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_tsv_corpus_reads_ms_marco_lines_with_the_columns_it_is_told(tmp_path):
    path = _write(tmp_path / "collection.tsv", '0\tThe "quoted" passage\n1\tanother, text\n')
    assert list(TsvCorpus(path).docs()) == [Doc("0", "", 'The "quoted" passage'), Doc("1", "", "another, text")]
    titled = _write(tmp_path / "titled.tsv", "d1\tskip\tbody\tTitle\n")
    assert list(TsvCorpus(titled, ("doc_id", "", "text", "title")).docs()) == [Doc("d1", "Title", "body")]
    with pytest.raises(DataError, match=r"collection.tsv:2: expected 2 tab-separated columns"):
        list(TsvCorpus(_write(path, "0\ta\n1\tb\tc\n")).docs())
    with pytest.raises(DataError, match=r":2: duplicate document id '0'"):
        list(TsvCorpus(_write(path, "0\ta\n0\tb\n")).docs())
    with pytest.raises(ValueError, match="name doc_id and text once each"):
        TsvCorpus(path, ("doc_id", "title"))


def test_a_corpus_reader_carries_its_files_digest(tmp_path):
    import hashlib

    path = _write(tmp_path / "psgs.tsv", 'id\ttext\ttitle\n1\t"a, ""b"""\tT\n')
    corpus = DprCorpus(path)
    assert list(corpus.docs()) == [Doc("1", "T", 'a, "b"')]  # CSV quoting, as DPR reads it
    assert corpus.digest == hashlib.sha256(path.read_bytes()).hexdigest() and corpus.files() == [path]


def test_topics_readers_read_their_own_format_and_topics_file_tells_them_apart(tmp_path):
    tsv = _write(tmp_path / "topics.tsv", "301\tinternational crime\n302\tpolio\n")
    tagged = _write(tmp_path / "topics.txt", "<top>\n<num> Number: 301\n<title> international crime\n"
                                             "<desc> Description: ...\n</top>\n")
    assert TsvTopics(tsv).topics() == {"301": "international crime", "302": "polio"}
    assert TaggedTopics(tagged).topics() == {"301": "international crime"}
    assert TaggedTopics(tagged, "desc").topics() == {"301": "..."}
    with pytest.raises(DataError, match="expected 'qid<TAB>text'"):
        TsvTopics(tagged).topics()
    assert isinstance(topics_file(tsv), TsvTopics) and isinstance(topics_file(tagged), TaggedTopics)
    assert isinstance(topics_file(tmp_path / "queries.jsonl"), JsonlTopics)


def test_qrels_readers_hold_a_file_to_its_format_or_read_either(tmp_path):
    beir = _write(tmp_path / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t2\n")
    trec = _write(tmp_path / "qrels.txt", "q1 0 d1 2\n")
    protocol = EvalProtocol()
    for reader in (QrelsFile(beir), QrelsFile(trec), BeirQrels(beir), TrecQrels(trec)):
        assert reader.judgements("x", DprCorpus(beir), protocol).qrels() == {"q1": {"d1": 2}}
    with pytest.raises(DataError, match=r"qrels.txt:1: expected 3 columns \(BEIR's 'query-id corpus-id score'\)"):
        BeirQrels(trec).judgements("x", DprCorpus(beir), protocol).qrels()
    with pytest.raises(DataError, match=r"test.tsv:1: expected 4 columns \(TREC's 'qid 0 docid rel'\)"):
        TrecQrels(beir).judgements("x", DprCorpus(beir), protocol).qrels()


def _dataset(tmp_path: Path, topics: str, qrels: str) -> PartsDataset:
    corpus = _write(tmp_path / "collection.tsv", "d1\tone\nd2\ttwo\n")
    return PartsDataset("toy", EvalProtocol(split="dev"), TsvCorpus(corpus),
                        TsvTopics(_write(tmp_path / "queries.tsv", topics)),
                        TrecQrels(_write(tmp_path / "qrels.txt", qrels)), tmp_path, layout="a toy layout")


def test_a_dataset_of_parts_evaluates_the_judged_topics_and_names_its_files(tmp_path):
    ds = _dataset(tmp_path, "q1\tone\nq2\tunjudged\n", "q1 0 d1 1\n")
    assert ds.queries() == {"q1": "one"} and ds.split == "dev" and ds.corpus_path == tmp_path / "collection.tsv"
    assert [p.name for p in ds.files()] == ["collection.tsv", "queries.tsv", "qrels.txt"]
    assert ds.judgements().judged_documents() == {"d1"} and ds.judgements() is ds.judgements()
    ds.check_layout()
    (tmp_path / "qrels.txt").unlink()
    with pytest.raises(HarnessError, match=r"toy: missing .*qrels.txt \(a toy layout\)"):
        ds.check_layout()
    missing = _dataset(tmp_path, "q1\tone\n", "q1 0 d1 1\nq9 0 d2 1\n")
    with pytest.raises(DataError, match=r"qrels.txt: 1 judged queries are missing from queries.tsv \(first: 'q9'\)"):
        missing.queries()


def test_an_answer_file_is_both_topics_and_judgements(tmp_path):
    from harness.data.registry import OdqaProtocol
    from harness.odqa.dataset import OdqaDataset

    passages = _write(tmp_path / "passages.tsv", "id\ttext\ttitle\n1\tParis is the capital\tFrance\n")
    questions = _write(tmp_path / "questions.qa.csv", "capital of France?\t['Paris']\n")
    ds = OdqaDataset.files_at("qa", passages, questions, OdqaProtocol())
    assert ds.files() == [passages, questions] and ds.queries() == {"0": "capital of France?"}
    per_query, extras = ds.judgements().evaluate({"0": {"1": 1.0}}, ["accuracy@1"])
    assert per_query == {"accuracy@1": {"0": 1.0}} and extras == {"first_hit_rank": {"0": 1}}


def test_id_prefixes_are_found_through_the_source_registry():
    from harness.datasets import SOURCES, source_for_name

    assert source_for_name("irds:cranfield") is SOURCES.get("irds")
    assert source_for_name("memory:toy") is SOURCES.get("memory")
    assert source_for_name("beir/scifact") is None and source_for_name("local/x") is None


def test_a_copy_of_a_dataset_made_in_python_keeps_its_one_split(tmp_path):
    from harness.data.memory import from_memory
    from harness.datasets import resolve_dataset

    ds = from_memory("one-split", {"d1": "text"}, {"q1": "text"}, {"q1": {"d1": 1}}, split="dev")
    again = resolve_dataset(str(ds.folder))
    assert (again.id, again.split, again.queries()) == ("memory:one-split", "dev", {"q1": "text"})
    with pytest.raises(HarnessError, match="memory:one-split has the one split dev; drop --split test"):
        resolve_dataset(str(ds.folder), split="test")
    with pytest.raises(HarnessError, match="a dataset name is letters"):
        from_memory("../up", {"d1": "text"}, {"q1": "text"}, {"q1": {"d1": 1}})

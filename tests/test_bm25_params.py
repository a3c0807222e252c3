"""BM25's parameters in its name (issue 36): ``bm25(k1=1.2;b=0.75)``, declared once, checked, canonical (the
registered name at Pyserini's k1=0.9 b=0.4), and part of the fingerprint so that results are never reused
across values."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.retrievers.kinds import BM25_PARAMS
from harness.retrievers.registry import RETRIEVERS, resolve_retriever


@pytest.mark.parametrize(("name", "canonical"), [
    ("bm25(k1=1.2;b=0.75)", "bm25(k1=1.2;b=0.75)"),
    ("bm25(b=0.75;k1=1.2)", "bm25(k1=1.2;b=0.75)"),  # one row for two spellings
    ("bm25(k1=1.2)", "bm25(k1=1.2;b=0.4)"),  # the other one at its default, written out
    ("bm25(b=0.75)", "bm25(k1=0.9;b=0.75)"),
    ("bm25(k1=1;b=0)", "bm25(k1=1.0;b=0.0)"),
    ("bm25(k1=2;b=-0.0)", "bm25(k1=2.0;b=0.0)"),
    ("bm25-multifield(k1=1.2;b=0.75)", "bm25-multifield(k1=1.2;b=0.75)"),
])
def test_parameters_parse_to_a_canonical_name(name, canonical):
    spec = resolve_retriever(name)
    assert spec.name == canonical and spec.kind == "bm25"
    assert resolve_retriever(canonical) == spec  # the printed name reads back as the same spec
    base = RETRIEVERS.get(name.partition("(")[0])
    assert {k: v for k, v in spec.params.items() if k not in ("k1", "b")} == \
        {k: v for k, v in base.params.items() if k not in ("k1", "b")}  # collection and fields: the registered
    assert f"k1={spec.params['k1']} b={spec.params['b']}" in spec.description


@pytest.mark.parametrize("name", ["bm25(k1=0.9;b=0.4)", "bm25(k1=0.90)", "bm25(b=0.4)", "bm25(b=4e-1;k1=9e-1)",
                                  "bm25-multifield(k1=0.9;b=0.4)"])
def test_the_defaults_collapse_to_the_registered_name(name):
    spec = resolve_retriever(name)
    assert spec is RETRIEVERS.get(name.partition("(")[0])  # a published reproduction keeps its row name
    assert {p.name: p.default for p in BM25_PARAMS} == {"k1": 0.9, "b": 0.4} == \
        {k: spec.params[k] for k in ("k1", "b")}


@pytest.mark.parametrize(("name", "says"), [
    ("bm25(k1=-1)", "k1=-1.0 is not a valid value; expected a finite number in [0, "),
    ("bm25(b=2)", "b=2.0 is not a valid value; expected a finite number in [0, 1]"),
    ("bm25(b=-0.1)", "b=-0.1 is not a valid value"),
    ("bm25(k1=nan)", "k1=nan is not a valid value"),
    ("bm25(k1=inf)", "k1=inf is not a valid value"),
    ("bm25(k1=high)", "k1='high' is not a valid value"),
    ("bm25(foo=1)", "unknown parameter 'foo'; known: k1, b"),
    ("bm25(k1=)", "k1='' is not a valid value"),
    ("bm25()", "expected bm25(key=value;...)"),
    ("bm25(1.2)", "'1.2' is not key=value"),
    ("bm25(k1=1;k1=2)", "k1 is given twice"),
    ("bm25(k1=1.2", "expected bm25(key=value;...)"),
    ("bm25(k1=1.2)x", "expected bm25(key=value;...)"),
    ("bm25-multifield(b=7)", "b=7.0 is not a valid value"),
])
def test_bad_parameters_are_refused_in_one_line(name, says):
    with pytest.raises(HarnessError) as e:
        resolve_retriever(name)
    text = str(e.value)
    assert says in text and "\n" not in text
    assert "e.g. " + name.partition("(")[0] + "(k1=1.2;b=0.75)" in text  # the fix


def test_a_name_without_parameters_refuses_them():
    with pytest.raises(HarnessError, match="contriever takes no parameters in its name"):
        resolve_retriever("contriever(k1=1)")


@pytest.mark.parametrize("name", ["bm25(k1=-1)", "bm25(b=2)", "bm25(foo=1)", "bm25(k1=)"])
def test_the_command_line_exits_2_with_one_line(name, tmp_path, capsys):
    code = main(["run", "-r", name, "-d", str(tmp_path), "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and name in err[0], err
    assert not (tmp_path / "out").exists()


def test_fingerprints_differ_and_the_index_is_shared():
    from harness.retrievers.lucene import BM25Retriever

    default, other, only_b = (BM25Retriever(resolve_retriever(n))
                              for n in ("bm25", "bm25(k1=1.2;b=0.75)", "bm25(b=0.75)"))
    prints = [r.fingerprint() for r in (default, other, only_b)]
    assert len({repr(sorted(p.items())) for p in prints}) == 3  # never reused across values
    assert (prints[1]["k1"], prints[1]["b"]) == (1.2, 0.75) and (prints[2]["k1"], prints[2]["b"]) == (0.9, 0.75)

    class Data:  # what index_dir reads: the index depends on the corpus, not on k1 and b
        corpus_digest = "0" * 64

    assert default.index_dir(Data()) == other.index_dir(Data()) == only_b.index_dir(Data())  # type: ignore[arg-type]


def test_compositions_and_file_names_take_the_parameterised_name():
    from harness.retrievers.spec import slug_of

    fused = resolve_retriever("fuse:rrf(bm25(b=0.75;k1=1.2),bm25)")
    assert fused.name == "fuse:rrf(bm25(k1=1.2;b=0.75),bm25;k=60)"
    assert fused.stages[0].params["k1"] == 1.2 and fused.stages[1].name == "bm25"
    slug = slug_of("bm25(k1=1.2;b=0.75)")
    assert slug != slug_of("bm25") and all(c.isalnum() or c in "._-" for c in slug)


def test_harness_list_retrievers_shows_the_parameters(capsys):
    assert main(["list", "retrievers"]) == 0
    out = capsys.readouterr().out
    assert "bm25(k1=1.2;b=0.75)" in out and "[0, 1]" in out


@pytest.mark.java
def test_bm25_with_other_parameters_runs_as_its_own_row(tmp_path):
    from harness.runner import run
    from harness.trec import read_run
    from tests.conftest import make_tiny_beir

    tiny = make_tiny_beir(tmp_path / "own", seed=136)  # a corpus of its own: the cache may be shared
    out = tmp_path / "r"
    default, other = run(["bm25", "bm25(b=0.75;k1=1.2)"], [str(tiny)], ["ndcg@10"], out, log=lambda m: None)
    assert default.retriever == "bm25" and other.retriever == "bm25(k1=1.2;b=0.75)"
    assert other.retriever_spec["name"] == "bm25(k1=1.2;b=0.75)"
    assert (other.retriever_provenance["k1"], other.retriever_provenance["b"]) == (1.2, 0.75)
    assert (default.retriever_provenance["k1"], default.retriever_provenance["b"]) == (0.9, 0.4)
    assert (other.retriever_fingerprint["k1"], other.retriever_fingerprint["b"]) == (1.2, 0.75)
    assert other.retriever_fingerprint != default.retriever_fingerprint
    assert other.retriever_provenance["index"] == default.retriever_provenance["index"]  # one index, k1/b apart
    assert other.run_file != default.run_file
    runs = [read_run(out / r.dataset / "test" / r.run_file) for r in (default, other)]
    assert set(runs[0]) == set(runs[1])
    assert any(runs[0][q] != runs[1][q] for q in runs[0])  # other scores, not the default's reused
    # the canonical name reads back: a second run reuses its own record, not bm25's
    (again,) = run(["bm25(k1=1.2;b=0.75)"], [str(tiny)], ["ndcg@10"], out, log=lambda m: None)
    assert again.retriever == other.retriever and again.metrics == other.metrics
    assert read_run(out / again.dataset / "test" / again.run_file) == runs[1]


def test_a_baseline_row_may_spell_the_parameters_in_any_order():
    """Baseline files and --baseline name a row as the user writes it: matched through the canonical name."""
    from harness.results.baselines import canonical_name

    assert canonical_name("bm25(b=0.75;k1=1.2)") == "bm25(k1=1.2;b=0.75)"
    assert canonical_name("bm25(k1=0.9;b=0.4)") == "bm25"
    assert canonical_name("bm25(k1=-1)") is None  # not a name: the row is reported as unmatched, not guessed

"""Token-stream cache, sources, windows, crops and augmentations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.errors import DataError, HarnessError
from harness.train.crops import ContrastiveBatches, SpecialIds, augment, random_crop
from harness.train.data import build_token_stream, make_windows, resolve_source

IDS = SpecialIds(cls=2, sep=3, pad=0, mask=4, vocab_size=100, first_regular=5)


def test_sources_jsonl_tsv_txt_and_folder(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"title": "T", "text": "one two"}) + "\n"
                                      + json.dumps({"contents": "three"}) + "\n")
    (tmp_path / "b.tsv").write_text("id\ttext\ttitle\n1\tfour five\tsix\n")
    (tmp_path / "c.txt").write_text("seven eight\n\nnine\n")
    assert list(resolve_source(str(tmp_path / "a.jsonl")).texts()) == ["T one two", "three"]
    assert list(resolve_source(str(tmp_path / "b.tsv")).texts()) == ["six four five"]
    (tmp_path / "dpr.tsv").write_text("1\tpassage text\tTitle\n")
    assert list(resolve_source(str(tmp_path / "dpr.tsv")).texts()) == ["Title passage text"]
    assert list(resolve_source(str(tmp_path / "c.txt")).texts()) == ["seven eight", "nine"]
    folder = resolve_source(str(tmp_path))
    assert len(folder.files) == 4 and len(list(folder.texts())) == 6
    (tmp_path / "bad.jsonl").write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(DataError, match="bad.jsonl:1"):
        list(resolve_source(str(tmp_path / "bad.jsonl")).texts())
    with pytest.raises(HarnessError):
        resolve_source(str(tmp_path / "missing"))


def test_beir_folder_uses_title_plus_text(tiny_corpus):
    texts = list(resolve_source(str(tiny_corpus.parent)).texts())
    assert texts[0].startswith("doc 0 ")


def test_token_cache_is_built_once_and_keyed_by_source(tiny_bert, tiny_corpus, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    src = resolve_source(str(tiny_corpus))
    s1 = build_token_stream(src, tok, tmp_path / "cache")
    s2 = build_token_stream(src, tok, tmp_path / "cache")
    assert s1.folder == s2.folder and s1.meta["n_docs"] == 30
    first = tok(next(src.texts()), add_special_tokens=False)["input_ids"]
    assert s1.tokens[s1.offsets[0]:s1.offsets[1]].tolist() == first
    with open(tiny_corpus, "a") as f:
        f.write(json.dumps({"_id": "new", "title": "", "text": "protein"}) + "\n")
    s3 = build_token_stream(resolve_source(str(tiny_corpus)), tok, tmp_path / "cache")
    assert s3.folder != s1.folder and s3.meta["n_docs"] == 31


def test_token_ids_are_stored_in_the_narrowest_type_that_holds_the_vocabulary(tiny_bert, tiny_corpus, tmp_path):
    """BERT-sized vocabularies fit uint16 (half the disk and page cache of int32 at psgs_w100 scale); a larger
    one is uint32; the ids read back are the tokenizer's either way."""
    import numpy as np
    from transformers import AutoTokenizer

    from harness.train.data import token_dtype

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    src = resolve_source(str(tiny_corpus))
    stream = build_token_stream(src, tok, tmp_path / "cache")
    assert stream.tokens.dtype == np.uint16 and stream.meta["dtype"] == "uint16"
    assert (stream.folder / "tokens.bin").stat().st_size == 2 * stream.meta["n_tokens"]
    assert stream.tokens[:stream.offsets[1]].tolist() == tok(next(src.texts()), add_special_tokens=False)["input_ids"]

    class Big:
        def __len__(self) -> int:
            return 250_002  # XLM-R's vocabulary

    assert token_dtype(Big()) == np.uint32 and token_dtype(tok) == np.uint16


def test_windows_stream_and_document():
    offsets = np.array([0, 10, 35])
    assert make_windows(offsets, 8, "stream", min_length=1).tolist() == [[0, 8], [8, 16], [16, 24], [24, 32], [32, 35]]
    assert make_windows(offsets, 8, "stream", min_length=4).tolist()[-1] == [24, 32]
    assert make_windows(offsets, 8, "document", min_length=1).tolist() == [[0, 8], [8, 10], [10, 18], [18, 26],
                                                                         [26, 34], [34, 35]]


def test_crop_lengths_follow_the_ratio():
    rng = np.random.default_rng(0)
    x = np.arange(200)
    for _ in range(200):
        c = random_crop(x, rng, 0.05, 0.5)
        assert 10 <= len(c) <= 100
        assert np.array_equal(c, np.arange(c[0], c[0] + len(c)))  # contiguous


def test_augmentations():
    rng = np.random.default_rng(0)
    x = np.arange(10, 1010)
    d = augment(x, "delete", 0.1, rng, IDS)
    assert 850 < len(d) < 950 and set(d) <= set(x)
    mk = augment(x, "mask", 0.1, rng, IDS)
    assert len(mk) == len(x) and 50 < (mk == IDS.mask).sum() < 150
    rp = augment(x, "replace", 0.1, rng, IDS)
    assert len(rp) == len(x) and ((rp >= 5) & (rp < 100)).sum() > 50
    sh = augment(x, "shuffle", 0.1, rng, IDS)
    assert sorted(sh) == sorted(x) and 0 < (sh != x).sum() < 200
    assert augment(x, "none", 0.5, rng, IDS) is x


def test_batches_are_a_pure_function_of_index_and_rank(tiny_bert, tiny_corpus, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    stream = build_token_stream(resolve_source(str(tiny_corpus)), tok, tmp_path / "cache")
    windows = make_windows(stream.offsets, 24)
    kw = dict(batch_size=2, m=4, seed=1, ratio_min=0.1, ratio_max=0.5, augmentation="delete", prob=0.1,
              max_length=512, ids=SpecialIds.from_tokenizer(tok))
    one = ContrastiveBatches(str(stream.folder), windows, **kw)
    b = one[3]
    assert b["anchor_ids"].shape[0] == 2 and b["key_ids"].shape[0] == 8
    assert (b["anchor_ids"][:, 0] == tok.cls_token_id).all()
    again = ContrastiveBatches(str(stream.folder), windows, **kw)[3]
    assert all((b[k] == again[k]).all() for k in b)
    # two ranks with batch 1 see the samples one rank with batch 2 sees
    kw1 = {**kw, "batch_size": 1}
    r0 = ContrastiveBatches(str(stream.folder), windows, rank=0, world_size=2, **kw1)[3]
    r1 = ContrastiveBatches(str(stream.folder), windows, rank=1, world_size=2, **kw1)[3]
    s0, s1 = one.sample(6), one.sample(7)
    assert r0["anchor_ids"][0, :len(s0[0])].tolist() == s0[0].tolist()
    assert r1["anchor_ids"][0, :len(s1[0])].tolist() == s1[0].tolist()


def test_stream_windows_move_to_a_random_offset_every_epoch(tiny_bert, tiny_corpus, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    stream = build_token_stream(resolve_source(str(tiny_corpus)), tok, tmp_path / "cache")
    chunk = 24
    data = ContrastiveBatches(str(stream.folder), make_windows(stream.offsets, chunk), batch_size=1, m=1, seed=5,
                              ratio_min=0.1, ratio_max=0.5, augmentation="none", prob=0.0, max_length=512,
                              ids=SpecialIds.from_tokenizer(tok), offset_chunk=chunk)
    tokens = np.asarray(stream.tokens)
    offsets = []
    for epoch in range(3):
        size = (len(tokens) - data._offset(epoch)) // chunk  # whole windows only, as Contriever
        first = data._epoch_starts[epoch] if epoch < len(data._epoch_starts) else sum(
            (len(tokens) - data._offset(e)) // chunk for e in range(epoch))
        seen = set()
        for g in range(first, first + size):
            w = data._window(g)
            assert len(w) == chunk
            start = next(s for s in range(len(tokens)) if np.array_equal(tokens[s:s + chunk], w))
            assert (start - data._offset(epoch)) % chunk == 0
            seen.add(start)
        assert len(seen) == size  # each window of the epoch exactly once
        offsets.append(data._offset(epoch))
    assert len(set(offsets)) > 1  # the cut moves between epochs


def test_a_registered_open_domain_qa_id_is_a_training_corpus(tmp_path, monkeypatch):
    """`harness train --corpus odqa/nq` reads DPR's passages through the dataset (title + " " + text per
    passage); it used to read the TSV as BEIR JSON and ask the user to repair a file that is fine."""
    from harness.data.registry import DATASETS
    from harness.train.data import resolve_source
    from tests.odqa.conftest import PASSAGES, write_odqa

    spec = DATASETS.get("odqa/nq")
    write_odqa(tmp_path / "odqa-files")
    (tmp_path / spec.passages).parent.mkdir(parents=True)
    (tmp_path / spec.questions).parent.mkdir(parents=True)
    (tmp_path / "odqa-files" / "passages.tsv").rename(tmp_path / spec.passages)
    (tmp_path / "odqa-files" / "questions.qa.csv").rename(tmp_path / spec.questions)
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    source = resolve_source("odqa/nq")
    assert list(source.texts()) == [f"{title} {text}" for _, text, title in PASSAGES]
    assert len(source.checksum()) == 64

"""Training text: sources (dataset ids, BEIR folders, JSONL/TSV/text files, folders of them) and the
memory-mapped token-stream cache, keyed by tokenizer and source checksum.

The cache holds every document's tokens (no special tokens) concatenated in ``tokens.bin`` (uint16 where the
vocabulary fits, else uint32) with document boundaries in ``offsets.npy``; it is built once in a temporary
folder and moved into place.
No torch import here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from harness.errors import DataError, HarnessError
from harness.io import shareable

TEXT_SUFFIXES = (".jsonl", ".tsv", ".txt")
CACHE_FORMAT = "harness-token-stream/2"  # 2: ids as uint16 where the vocabulary fits, else uint32


@dataclass(frozen=True)
class TextSource:
    """Where the training text comes from: a name for messages, its files, and how to read them."""

    name: str
    files: tuple[Path, ...]
    reader: Callable[[Path], Iterator[str]]

    def texts(self) -> Iterator[str]:
        for f in self.files:
            yield from self.reader(f)

    def checksum(self) -> str:
        from harness.io import cached_sha256

        h = hashlib.sha256()
        for f in self.files:
            h.update(f.name.encode() + b"\0" + cached_sha256(f).encode() + b"\n")
        return h.hexdigest()


def _beir_corpus_texts(path: Path) -> Iterator[str]:
    from harness.data.beir import iter_corpus
    from harness.data.corpus import doc_text

    for doc in iter_corpus(path):
        yield doc_text(doc)


def _jsonl_texts(path: Path) -> Iterator[str]:
    from harness.data.jsonl import iter_jsonl

    for lineno, obj in iter_jsonl(path):
        if isinstance(obj.get("text"), str):
            title = obj.get("title") or ""
            yield f"{title} {obj['text']}".strip() if isinstance(title, str) and title else obj["text"]
        elif isinstance(obj.get("contents"), str):
            yield obj["contents"]
        else:
            raise DataError(path, "record has no 'text' (or 'contents') string", line=lineno,
                            fix="each line needs a 'text' field; 'title' is optional")


def _tsv_texts(path: Path) -> Iterator[str]:
    """A header naming a ``text`` column (and ``title``) is used; otherwise DPR's ``id, text, title``,
    ``id, text`` or one text per line."""
    from harness.lines import iter_lines

    text_col, title_col = None, None
    for lineno, line in iter_lines(path):
        cols = line.split("\t")
        if lineno == 1 and "text" in cols:
            text_col, title_col = cols.index("text"), (cols.index("title") if "title" in cols else None)
            continue
        if text_col is None:
            text_col = 1 if len(cols) >= 2 else 0
            title_col = 2 if len(cols) >= 3 else None
        if text_col >= len(cols):
            raise DataError(path, f"expected at least {text_col + 1} tab-separated columns", line=lineno)
        text = cols[text_col].strip().strip('"')
        title = cols[title_col].strip().strip('"') if title_col is not None and title_col < len(cols) else ""
        yield f"{title} {text}".strip()


def _txt_texts(path: Path) -> Iterator[str]:
    """One document per non-blank line."""
    from harness.lines import iter_lines

    for _, line in iter_lines(path):
        yield line.strip()


READERS = {".jsonl": _jsonl_texts, ".tsv": _tsv_texts, ".txt": _txt_texts}


def _file_source(path: Path) -> TextSource:
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise HarnessError(f"{path}: unsupported training text file; use {', '.join(TEXT_SUFFIXES)}")
    return TextSource(str(path), (path,), reader)


def resolve_source(name: str) -> TextSource:
    """A dataset id (its corpus text, title + " " + text), a BEIR folder, a file, or a folder of files."""
    from harness.data.load import is_registered
    from harness.datasets import resolve_dataset

    if is_registered(name):  # any source (BEIR, DPR's passages): its documents as the Dataset reads them
        from harness.data.corpus import doc_text

        ds = resolve_dataset(name)
        return TextSource(name, (ds.corpus_path,), lambda _file: (doc_text(d) for d in ds.corpus()))
    path = Path(name).expanduser()
    if path.is_file():
        return _file_source(path)
    if path.is_dir():
        if (path / "corpus.jsonl").is_file():
            return TextSource(str(path), (path / "corpus.jsonl",), _beir_corpus_texts)
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise HarnessError(f"{path} holds no training text ({', '.join(TEXT_SUFFIXES)} files)")
        readers = {f: READERS[f.suffix.lower()] for f in files}
        return TextSource(str(path), tuple(files), lambda f: readers[f](f))
    raise HarnessError(f"training corpus {name!r} is neither a dataset id, a file nor a folder "
                       "(`harness list datasets` shows the ids)")


def tokenizer_fingerprint(tokenizer: Any) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    h.update(json.dumps(vocab, ensure_ascii=False).encode())
    h.update(json.dumps(getattr(tokenizer, "init_kwargs", {}).get("do_lower_case")).encode())
    return h.hexdigest()


@dataclass
class TokenStream:
    """The memory-mapped tokens of a source: ``tokens[offsets[i]:offsets[i+1]]`` is document i."""

    folder: Path
    tokens: np.ndarray
    offsets: np.ndarray
    meta: dict[str, Any]

    @classmethod
    def open(cls, folder: Path) -> TokenStream:
        meta = json.loads((folder / "meta.json").read_text())
        dtype = np.dtype(meta.get("dtype", "int32"))
        tokens = np.memmap(folder / "tokens.bin", dtype=dtype, mode="r", shape=(meta["n_tokens"],)) \
            if meta["n_tokens"] else np.zeros(0, dtype=dtype)
        return cls(folder, tokens, np.load(folder / "offsets.npy"), meta)

    @property
    def checksum(self) -> str:
        return str(self.meta["source_checksum"])


def build_token_stream(source: TextSource, tokenizer: Any, cache_dir: Path, batch: int = 1000,
                       progress: bool = False) -> TokenStream:
    """Tokenise ``source`` once; later calls with the same tokenizer and source reuse the cache."""
    checksum = source.checksum()
    key = hashlib.sha256(f"{CACHE_FORMAT}|{tokenizer_fingerprint(tokenizer)}|{checksum}".encode()).hexdigest()[:24]
    folder = cache_dir / key
    if (folder / "meta.json").is_file():
        return TokenStream.open(folder)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cache_dir))
    dtype = token_dtype(tokenizer)
    try:
        offsets = [0]
        with open(tmp / "tokens.bin", "wb") as out:
            buf: list[str] = []
            texts = source.texts()
            if progress:
                from harness.progress import progress_bar

                texts = progress_bar(desc="tokenising", unit="doc", iterable=texts, leave=True)
            for text in texts:
                buf.append(text)
                if len(buf) >= batch:
                    _write_batch(tokenizer, buf, out, offsets, dtype)
                    buf = []
            if buf:
                _write_batch(tokenizer, buf, out, offsets, dtype)
        np.save(tmp / "offsets.npy", np.asarray(offsets, dtype=np.int64))
        meta = {"format": CACHE_FORMAT, "source": source.name, "source_checksum": checksum,
                "n_docs": len(offsets) - 1, "n_tokens": int(offsets[-1]), "dtype": dtype.name}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        shareable(tmp)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process built it first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    stream = TokenStream.open(folder)
    if stream.meta["n_tokens"] == 0:
        raise HarnessError(f"{source.name}: the training corpus has no text")
    return stream


def token_dtype(tokenizer: Any) -> np.dtype[Any]:
    """The narrowest unsigned integer that holds every id of ``tokenizer``: uint16 for vocabularies of up to
    65,536 entries (BERT's 30,522: half the disk and page cache of int32 for a psgs_w100-size corpus), else
    uint32."""
    return np.dtype(np.uint16) if len(tokenizer) <= 1 << 16 else np.dtype(np.uint32)


def _write_batch(tokenizer: Any, texts: list[str], out: BinaryIO, offsets: list[int], dtype: np.dtype[Any]) -> None:
    ids = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    for seq in ids:
        arr = np.asarray(seq, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(dtype).max):  # the tokenizer said otherwise
            raise HarnessError(f"the tokenizer gave id {int(arr.max())} beyond its vocabulary of {len(tokenizer)}; "
                               "the token cache cannot hold it")
        out.write(arr.astype(dtype).tobytes())
        offsets.append(offsets[-1] + len(arr))


def make_windows(offsets: np.ndarray, chunk_length: int, mode: str = "stream",
                 min_length: int = 8) -> np.ndarray:
    """[n, 2] (start, end) token spans of ``chunk_length`` tokens: over the concatenated stream
    (Contriever) or inside each document. Spans shorter than ``min_length`` are dropped."""
    if mode == "stream":
        total = int(offsets[-1])
        starts = np.arange(0, total, chunk_length, dtype=np.int64)
        ends = np.minimum(starts + chunk_length, total)
    elif mode == "document":
        spans = []
        for s, e in zip(offsets[:-1], offsets[1:], strict=True):
            st = np.arange(s, e, chunk_length, dtype=np.int64)
            spans.append(np.stack([st, np.minimum(st + chunk_length, e)], axis=1))
        both = np.concatenate(spans) if spans else np.zeros((0, 2), dtype=np.int64)
        starts, ends = both[:, 0], both[:, 1]
    else:
        raise ValueError(f"unknown window mode {mode!r}")
    keep = (ends - starts) >= min_length
    windows = np.stack([starts[keep], ends[keep]], axis=1)
    if len(windows) == 0:
        raise HarnessError(f"the training corpus has no window of at least {min_length} tokens")
    return windows

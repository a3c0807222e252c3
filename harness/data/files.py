"""A dataset of three files named one by one (``harness run --corpus C --topics T --qrels Q``, or the id
``files:corpus=C;topics=T;qrels=Q``), as trec_eval and Pyserini users hold their data: each file read by
the reader of its format (``harness.data.formats``), under the plain protocol (no identical-id rule; the
qrels given are the split's, ``test`` unless ``--split`` names it).

The dataset's id is ``files/<corpus file stem>-<8 hex of the three resolved paths>``: the same files keep
their leaderboard column from run to run, and other files never share it. Reuse of a result is decided by
the files' content, as for every dataset.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from harness.data.formats import DprCorpus, JsonlCorpus, QrelsFile, TsvCorpus, topics_file
from harness.data.parts import PartsDataset
from harness.data.registry import EvalProtocol
from harness.errors import HarnessError

__all__ = ["PREFIX", "files_dataset", "files_name"]

PREFIX = "files:"
PARTS = ("corpus", "topics", "qrels")
FORMATS = ("corpus: BEIR's corpus.jsonl, a TSV with an id/text/title header (DPR's psgs_w100.tsv) or a headerless "
           "id<TAB>text TSV (MS MARCO's collection.tsv); topics: queries.jsonl, qid<TAB>text TSV or TREC's <top> "
           "file; qrels: TREC's (qid 0 docid rel) or BEIR's TSV")


def files_name(corpus: Path | str, topics: Path | str, qrels: Path | str) -> str:
    """The id ``harness run --corpus --topics --qrels`` stands for (paths made absolute)."""
    parts = {"corpus": corpus, "topics": topics, "qrels": qrels}
    for key, value in parts.items():
        if ";" in str(value):
            raise HarnessError(f"--{key} {value}: a path with ';' cannot be named here; rename or link the file")
    return PREFIX + ";".join(f"{k}={Path(v).expanduser().resolve()}" for k, v in parts.items())


def _parse(name: str) -> dict[str, Path]:
    fix = f"write {PREFIX}corpus=FILE;topics=FILE;qrels=FILE (or harness run --corpus FILE --topics FILE --qrels FILE)"
    given: dict[str, Path] = {}
    for item in name.removeprefix(PREFIX).split(";"):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not value.strip():
            raise HarnessError(f"{name}: {item!r} is not PART=FILE; {fix}")
        if key not in PARTS:
            raise HarnessError(f"{name}: unknown part {key!r} (the parts are {', '.join(PARTS)}); {fix}")
        if key in given:
            raise HarnessError(f"{name}: {key} is given twice; {fix}")
        given[key] = Path(value.strip()).expanduser()
    for key in ("topics", "qrels"):
        if key in given and given[key].name.endswith(".gz"):
            raise HarnessError(f"--{key} {given[key]}: a gzipped {key} file is not read here; gunzip it first "
                               f"(gunzip -k {given[key]})")
    missing = [p for p in PARTS if p not in given]
    if missing:
        raise HarnessError(f"{name}: no {' and no '.join(missing)} file; {fix}")
    for key, path in given.items():
        if not path.is_file():
            raise HarnessError(f"--{key} {path}: no such file" + (" (it is a folder: name the file in it)"
                                                                   if path.is_dir() else ""))
    return {k: given[k].resolve() for k in PARTS}


def _corpus_reader(path: Path) -> JsonlCorpus | DprCorpus | TsvCorpus:
    """BEIR's jsonl by its suffix; a TSV whose first line is a header naming ``id`` first is DPR's, else a
    headerless ``id<TAB>text`` TSV."""
    name = path.name.removesuffix(".gz")
    if name.endswith(".jsonl") and name != path.name:
        raise HarnessError(f"--corpus {path}: a gzipped corpus.jsonl is not read here; gunzip it first "
                           f"(gunzip -k {path}); a gzipped TSV with an id/text/title header is")
    if name.endswith(".jsonl"):
        return JsonlCorpus(path)
    if path.name.endswith(".gz"):
        import gzip

        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
            first = f.readline()
    else:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline()
    header = [c.strip().strip('"').lower() for c in first.rstrip("\r\n").split("\t")]
    if header[:1] == ["id"] and "text" in header:
        return DprCorpus(path)
    if not name.endswith((".tsv", ".txt")):
        raise HarnessError(f"--corpus {path}: not a format the harness reads by its name ({FORMATS})")
    if name != path.name:
        raise HarnessError(f"--corpus {path}: a gzipped headerless TSV is not read here; gunzip it first "
                           f"(gunzip -k {path}), or give it DPR's id/text/title header")
    return TsvCorpus(path)


def files_dataset(name: str, split: str | None) -> PartsDataset:
    """The dataset of a ``files:`` id, its files checked to exist (their content is read when used)."""
    paths = _parse(name)
    digest = hashlib.sha256("\0".join(str(paths[k]) for k in PARTS).encode()).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", paths["corpus"].name.split(".")[0]).strip("-.") or "corpus"
    protocol = EvalProtocol(split=split or "test")
    return PartsDataset(f"files/{stem}-{digest}", protocol, _corpus_reader(paths["corpus"]),
                        topics_file(paths["topics"]), QrelsFile(paths["qrels"]), paths["corpus"].parent,
                        layout=FORMATS, opened_as=files_name(paths["corpus"], paths["topics"], paths["qrels"]))

"""Output paths (`--run-file`, `report -o`, `compare --json`, `check --junit`) never overwrite what the harness
reads: a dataset's own files, a result record or a record's run file, a folder or a device. Each is refused in
one line before any work, and the file is left as it was; a write that fails names the file it was writing,
never its temporary."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.io import atomic_write, check_output_file
from tests.conftest import make_tiny_beir


@pytest.fixture()
def beir(tmp_path: Path) -> Path:
    return make_tiny_beir(tmp_path / "tiny", n_docs=30, n_queries=4)


def _bm25(beir: Path, out: Path, *extra: str) -> int:
    return main(["run", "-r", "bm25", "-d", str(beir), "--output-dir", str(out), "--metric", "ndcg@10", *extra])


@pytest.mark.parametrize("target", ["qrels/test.tsv", "corpus.jsonl", "queries.jsonl"])
def test_run_file_onto_a_dataset_file_is_refused_and_the_file_kept(beir, tmp_path, capsys, target):
    victim = beir / target
    before = victim.read_bytes()
    assert _bm25(beir, tmp_path / "out", "--run-file", str(victim)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "an input of this run" in err and str(victim) in err
    assert victim.read_bytes() == before


def test_run_file_over_a_records_run_file_is_refused_and_elsewhere_in_the_output_folder_written(beir, tmp_path,
                                                                                                  capsys):
    out = tmp_path / "out"
    assert _bm25(beir, out) == 0
    (run_file,) = out.rglob("*.trec")
    before = run_file.read_bytes()
    assert main(["run", "-r", "bm25(k1=1.2;b=0.75)", "-d", str(beir), "--output-dir", str(out),
                 "--run-file", str(run_file)]) == 2
    assert "the run file of the result record" in capsys.readouterr().err
    assert run_file.read_bytes() == before
    assert _bm25(beir, out, "--run-file", str(out / "submission.trec")) == 0  # `--output-dir .` and a file there
    assert (out / "submission.trec").read_bytes() == before


def test_report_compare_and_check_outputs_keep_records_and_inputs(beir, tmp_path, capsys):
    out = tmp_path / "out"
    assert _bm25(beir, out) == 0
    (record,) = out.rglob("*.json")
    corpus = beir / "corpus.jsonl"
    kept = {p: p.read_bytes() for p in (record, corpus)}
    assert main(["report", "--output-dir", str(out), "-o", str(corpus)]) == 2
    assert "FILE.html" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "none.csv"), "--output-dir", str(out), "--junit", str(record)]) == 2
    assert "FILE.xml" in capsys.readouterr().err
    with pytest.raises(HarnessError, match="a result record"):
        check_output_file(record, "--json", suffixes=(".json",))
    with pytest.raises(HarnessError, match="not a regular file"):
        check_output_file(tmp_path, "--json")
    assert {p: p.read_bytes() for p in kept} == kept


def test_a_failed_atomic_write_names_the_file_not_its_temporary(tmp_path):
    target = tmp_path / "report.html"
    target.mkdir()  # the rename onto a folder fails
    with pytest.raises(OSError) as info:
        atomic_write(target, "x")
    assert info.value.filename == str(target)
    shutil.rmtree(target)
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    try:
        with pytest.raises(OSError) as info:
            atomic_write(tmp_path / "ro" / "a.json", "x")
        if info.value.errno in (errno.EACCES, errno.EPERM):
            assert info.value.filename == str(tmp_path / "ro" / "a.json")
    except pytest.fail.Exception:
        pass  # root ignores the folder's mode: nothing fails to name
    finally:
        (tmp_path / "ro").chmod(0o700)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_full_disk_under_the_bm25_staging_file_names_it(beir):
    """ENOSPC surfaced at the staging file's flush or close, with no file named ("No space left on device")."""
    from harness.datasets import resolve_dataset
    from harness.retrievers.lucene import write_collection

    with pytest.raises(OSError) as info:
        write_collection(resolve_dataset(str(beir)), Path("/dev/full"), progress=False)
    assert info.value.errno == errno.ENOSPC and info.value.filename == "/dev/full"

"""A rerun with nothing to do: `harness run` of a dense retriever and of BM25 whose records are all reusable,
each a fresh process as a user runs it (wall time, the process's peak memory from its rusage), rounds
alternated, and whether torch was imported. The dense retriever is
all-MiniLM-L6-v2 on the first 1,000 SciFact documents (encoded once before the timed rounds); the plan of
its computation is read from the cache (``harness/retrievers/compute/plan.py``), so a rerun never imports
torch. ``--no-memo`` times the reruns with ``HARNESS_PLAN_MEMO=0`` too (torch imported to plan).

    python -m benchmarks.scale.noop_rerun [--rounds 5] [--docs 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import FIGURES, ROOT, machine, require, stamp

SCIFACT = ROOT.parent / "shared" / "data" / "beir" / "scifact"
MINILM = ROOT.parent / "shared" / "models" / "all-MiniLM-L6-v2"

#: run inside the child: whether torch was imported, printed last on stderr
PROBE = "import sys, runpy; sys.argv = ['harness', *sys.argv[1:]]\n" \
        "try:\n    runpy.run_module('harness', run_name='__main__')\n" \
        "finally:\n    print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\n"


def subset(folder: Path, docs: int) -> Path:
    """SciFact's first ``docs`` documents, its test queries judged within them, as a BEIR folder."""
    out = folder / "scifact-subset"
    (out / "qrels").mkdir(parents=True)
    kept = []
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            kept.append(line)
            if len(kept) == docs:
                break
    (out / "corpus.jsonl").write_text("".join(kept), encoding="utf-8")
    ids = {json.loads(line)["_id"] for line in kept}
    lines = (SCIFACT / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    judged = [ln for ln in lines[1:] if ln.split("\t")[1] in ids]
    (out / "qrels" / "test.tsv").write_text("\n".join([lines[0], *judged]) + "\n", encoding="utf-8")
    queries = {ln.split("\t")[0] for ln in judged}
    (out / "queries.jsonl").write_text("".join(ln for ln in open(SCIFACT / "queries.jsonl", encoding="utf-8")
                                               if json.loads(ln)["_id"] in queries), encoding="utf-8")
    return out


def child(args: list[str], env: dict[str, str]) -> tuple[float, float, bool]:
    """(seconds, peak RSS in MB, torch imported) of one harness process (its own rusage, from wait4)."""
    with tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", PROBE, *args], stdout=subprocess.DEVNULL, stderr=err,
                                env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        said = err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"harness {' '.join(args[:4])} failed:\n{said[-2000:]}")
    if "reused record" not in said:
        raise RuntimeError(f"not a rerun: {said[-1000:]}")
    return seconds, usage.ru_maxrss / 1024, said.strip().endswith("torch imported: True")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--no-memo", action="store_true", help="time reruns with HARNESS_PLAN_MEMO=0 too")
    args = parser.parse_args()
    require(SCIFACT / "corpus.jsonl", "SciFact")
    require(MINILM / "config.json", "all-MiniLM-L6-v2")
    print(f"# {stamp()}, {machine()}, load average {os.getloadavg()[0]:.1f}")
    figures: dict = {"rounds": args.rounds, "docs": args.docs, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data = subset(Path(tmp), args.docs)
        out = Path(tmp) / "results"
        env = {**os.environ, "HARNESS_CACHE": str(Path(tmp) / "cache"), "HARNESS_OFFLINE": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        runs = {"dense (all-MiniLM-L6-v2)": ["run", "-r", f"hf:{MINILM}", "-d", str(data), "--output-dir", str(out)],
                "bm25": ["run", "-r", "bm25", "-d", str(data), "--output-dir", str(out)]}
        for argv in runs.values():  # the first run computes; its time is not the question
            subprocess.run([sys.executable, "-m", "harness", *argv], check=True, env=env, cwd=ROOT,
                           capture_output=True)
        sides = dict(runs)
        if args.no_memo:
            sides["dense, HARNESS_PLAN_MEMO=0"] = runs["dense (all-MiniLM-L6-v2)"]
        seconds: dict[str, list[float]] = {s: [] for s in sides}
        peaks: dict[str, float] = {}
        torch_seen: dict[str, bool] = {}
        for r in range(args.rounds):  # alternated
            order = list(sides)[r % len(sides):] + list(sides)[:r % len(sides)]
            for side in order:
                side_env = {**env, "HARNESS_PLAN_MEMO": "0"} if "MEMO=0" in side else env
                s, peak, imported = child(sides[side], side_env)
                seconds[side].append(s)
                peaks[side] = max(peaks.get(side, 0.0), peak)
                torch_seen[side] = torch_seen.get(side, False) or imported
        for side, values in seconds.items():
            row = {"min_s": round(min(values), 2), "median_s": round(statistics.median(values), 2),
                   "seconds": [round(v, 2) for v in values], "torch_imported": torch_seen[side]}
            figures["runs"][side] = row
            print(f"{side:28s} min {row['min_s']:5.2f} s  median {row['median_s']:5.2f} s  "
                  f"torch imported: {'yes' if row['torch_imported'] else 'no'}")
            row["peak_rss_mb"] = round(peaks[side], 1)
            print(f"{'':28s} peak RSS {row['peak_rss_mb']:.0f} MB")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    FIGURES.update(figures)
    return 0


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)

"""The fused BERT forward of this checkout against the one at an earlier git revision (and transformers'
own), encoding SciFact documents with all-MiniLM-L6-v2 through HFEncoder. The three are interleaved in
parts of 250 documents, rotating which goes first, so drift in the machine's speed falls on all alike.
Prints the wall time of each and the largest difference between the embeddings of the two fused forwards.
``--co-runners N`` times them beside N single-threaded busy loops (a known load), ``--rounds R`` repeats the
rotation R times (min and median of each's total over the rounds).

    python -m benchmarks.compute.forward_against_rev --rev 87277f6 [--docs 1500] [--co-runners 1] [--rounds 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks._common import FIGURES, MINILM, ROOT, SCIFACT, co_runners, machine, require, stamp

# where the module lives now, and where it lived before the compute sub-package (commit 2026-12-02)
MODULES = ("harness/retrievers/compute/fused_bert.py", "harness/retrievers/fused_bert.py")


def fused_at(rev: str, folder: Path):
    """The fused_bert module as it was at ``rev``, imported under another name."""
    for module_path in MODULES:
        proc = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{module_path}"], capture_output=True,
                              text=True)
        if proc.returncode == 0:
            source = proc.stdout
            break
    else:
        raise SystemExit(f"no fused BERT forward at {rev} (looked for {', '.join(MODULES)})")
    path = folder / "fused_bert_at_rev.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("fused_bert_at_rev", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    require(SCIFACT, "SciFact")
    require(MINILM, "all-MiniLM-L6-v2")
    parser = argparse.ArgumentParser()
    parser.add_argument("--rev", default="87277f6",
                        help="git revision whose fused forward to compare against (default: 87277f6, the forward "
                             "before oneDNN's weights were reordered once; `nox -s benchmarks` runs it so)")
    parser.add_argument("--docs", type=int, default=1500)
    parser.add_argument("--co-runners", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    import numpy as np

    from harness.data.beir import doc_text, iter_corpus
    from harness.retrievers.config import read_encoder_config
    from harness.retrievers.encoder import HFEncoder

    texts = [doc_text(d) for _, d in zip(range(args.docs), iter_corpus(SCIFACT / "corpus.jsonl"), strict=False)]
    print(f"# forward_against_rev  {stamp()}  {machine()}")
    config = read_encoder_config(MINILM)
    with tempfile.TemporaryDirectory() as tmp:
        old_module = fused_at(args.rev, Path(tmp))
        encoders = {name: HFEncoder(str(MINILM), config, device="cpu", forward=forward, progress=False)
                    for name, forward in (("this checkout", "auto"), (f"at {args.rev}", "auto"),
                                          ("transformers", "transformers"))}
        old = encoders[f"at {args.rev}"]
        old._fused = old_module.FusedBertForward(old.model)
        new_vecs, old_vecs = encoders["this checkout"].encode(texts[:300]), old.encode(texts[:300])
        order = list(encoders.items())
        totals: dict[str, list[float]] = {name: [] for name in encoders}
        loads = []
        with co_runners(args.co_runners):
            for _ in range(args.rounds):
                loads.append(os.getloadavg()[0])
                walls = dict.fromkeys(encoders, 0.0)
                for part, start in enumerate(range(0, len(texts), 250)):
                    for name, enc in order[part % 3:] + order[:part % 3]:
                        t = time.perf_counter()
                        enc.encode(texts[start:start + 250])
                        walls[name] += time.perf_counter() - t
                for name, wall in walls.items():
                    totals[name].append(wall)
    largest = float(np.abs(new_vecs - old_vecs).max())
    print(f"{len(texts)} documents; embeddings of the first 300 by the two fused forwards: largest difference "
          f"{largest:.3g}")
    print(f"{args.rounds} round(s), {args.co_runners} co-runner(s); load average (1 min) at each round: "
          + ", ".join(f"{x:.2f}" for x in loads))
    base = min(totals["this checkout"]), statistics.median(totals["this checkout"])
    for name, walls_of in totals.items():
        low, mid = min(walls_of), statistics.median(walls_of)
        print(f"  {name:16} {low:6.1f} s min, {mid:6.1f} s median  ({low / base[0]:.3f}x / {mid / base[1]:.3f}x "
              "this checkout)")
    FIGURES.update(rev=args.rev, docs=len(texts), rounds=args.rounds, co_runners=args.co_runners,
                   load_average_1m=loads, largest_difference=largest, wall_s=totals)

if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)

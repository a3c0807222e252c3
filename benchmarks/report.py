"""The results section of benchmarks/README.md, rendered from the JSON files the scripts wrote.

The README quotes nothing by hand: between its ``<!-- results:begin -->`` and ``<!-- results:end -->``
markers stands what this module renders from ``<topic>/results/*.json`` (newest run first, each with its
date, machine, commit and command), and a test checks that the two agree. After a benchmark run:

    python -m benchmarks.report --write     # rewrite the section in benchmarks/README.md
    python -m benchmarks.report --check     # exit 1 if the README is out of date (what the test runs)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

#: (question, script as topic/name, command); the order of the README
QUESTIONS = [
    ("SciFact end to end against beir 2.2.0: time, memory, the same numbers?", "end_to_end/encode_vs_beir",
     "python -m benchmarks.end_to_end.encode_vs_beir [--bf16x3] (--bf16x3 on a CPU with AMX)"),
    ("BM25 on SciFact against pyserini's own command-line tools", "end_to_end/bm25_vs_pyserini",
     "python -m benchmarks.end_to_end.bm25_vs_pyserini"),
    ("Achieved FLOP/s of encoding against the matmul peak", "compute/encode_flops",
     "python -m benchmarks.compute.encode_flops"),
    ("The bf16x3 kernel alone: speed by shape, first-use cost, effect on the vectors", "compute/amx_kernel",
     "python -m benchmarks.compute.amx_kernel"),
    ("The forward pass alone, by implementation and batch size", "compute/forward_variants",
     "python -m benchmarks.compute.forward_variants"),
    ("The fused forward against an earlier revision", "compute/forward_against_rev",
     "python -m benchmarks.compute.forward_against_rev --rev 87277f6"),
    ("Where a dense run spends its time, idle and beside a busy co-runner", "compute/forward_under_load",
     "python -m benchmarks.compute.forward_under_load"),
    ("How much of an encoding pass is padding (what unpadded attention could save)?", "compute/padding_share",
     "python -m benchmarks.compute.padding_share"),
    ("BERT-base docs/s on a GPU against beir", "compute/gpu_encode",
     "bash benchmarks/gpu/device.sh run benchmarks.compute.gpu_encode"),
    ("The prepared GPU check: encoding, harness run, torchrun training, rerank and SPLADE, OOM back-off",
     "gpu/device_check", "bash benchmarks/gpu/device.sh run"),
    ("Peak memory against corpus size (dense)", "scale/memory_scaling", "python -m benchmarks.scale.memory_scaling"),
    ("Peak memory of BM25, per process", "scale/bm25_memory", "python -m benchmarks.scale.bm25_memory"),
    ("Open-domain QA at 2M passages: sharded encoding, merge, ANN", "scale/odqa_scale",
     "python -m benchmarks.scale.odqa_scale --passages 2000000"),
    ("Exact search at 1M x 768: scoring against top-k and merge, FAISS and the torch (GPU) path", "scale/search_merge",
     "python -m benchmarks.scale.search_merge"),
    ("Tables over 200 records: leaderboard with and without --baseline", "scale/leaderboard_tables",
     "python -m benchmarks.scale.leaderboard_tables"),
    ("harness evaluate against pytrec_eval: 5,000 and 6,980 queries x 1,000 hits, the same values?",
     "scale/evaluate_vs_pytrec", "python -m benchmarks.scale.evaluate_vs_pytrec"),
    ("300,000 hits from search to metrics: where the time goes", "scale/hits_pipeline",
     "python -m benchmarks.scale.hits_pipeline"),
    ("Fusing two runs of 300,000 hits: runs as arrays against per-query dicts, the same fused runs?",
     "scale/fusion_runs", "python -m benchmarks.scale.fusion_runs"),
    ("HNSW build on one thread against every thread: the same graph?", "scale/hnsw_threads",
     "python -m benchmarks.scale.hnsw_threads"),
    ("A rerun with nothing to do: dense and BM25, time, memory, torch imported?", "scale/noop_rerun",
     "python -m benchmarks.scale.noop_rerun --no-memo"),
    ("Training throughput: tokens/s and share of the matmul peak", "training/train_throughput",
     "python -m benchmarks.training.train_throughput"),
    ("Does relevance-aware weighting help, everything else equal?", "training/trainer_experiment",
     "python -m benchmarks.training.trainer_experiment"),
]


class ReportError(Exception):
    """A result file or the README this report cannot read: one line naming the file and the fix."""


def results_of(script: str) -> list[Path]:
    """The JSON results of one script, newest first (by the date in the name, then the same-day counter)."""
    topic, name = script.split("/")
    folder = HERE / topic / "results"

    def order(p: Path) -> tuple:  # <name>[-<label>]-YYYY-MM-DD[-N]: by date, then the same-day counter
        m = re.search(r"(\d{4}-\d{2}-\d{2})(?:-(\d+))?$", p.stem)
        return (m.group(1), int(m.group(2) or 1)) if m else ("", 0)

    found = [p for p in folder.glob(f"{name}*.json") if p.stem == name or p.stem.startswith(name + "-")]
    return sorted(found, key=order, reverse=True)


def _f(x, digits: int = 1) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _encode_vs_beir(fig: dict) -> list[str]:
    rows = fig["pipelines"]
    beir = next((v for k, v in rows.items() if k.startswith("beir")), None)
    out = ["| pipeline | wall s (min / median) | ratio to beir (min / median) | peak RSS MB | nDCG@10 | Recall@100 "
           "| compute |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        res = r.get("result") or {}
        c = res.get("compute")
        compute = f"{c['precision']}, {c['forward']}" if c else "fp32, transformers" if name.startswith("beir") else ""
        median = r.get("median_wall_s")
        ratio = f"{r['wall_s'] / beir['wall_s']:.2f}" if beir and not name.startswith("beir") else ""
        if ratio and median and beir.get("median_wall_s"):
            ratio += f" / {median / beir['median_wall_s']:.2f}"
        wall = _f(r["wall_s"]) + (f" / {_f(median)}" if median else "")
        out.append(f"| {name} | {wall} | {ratio} | {_f(r['peak_rss_mb'], 0)} | {_f(res.get('ndcg@10'), 4)} "
                   f"| {_f(res.get('recall@100'), 4)} | {compute} |")
    load = fig.get("load_1min_before_runs")
    if load:
        out += ["", f"Load average (1 min) before the runs: min {load['min']:.2f}, median {load['median']:.2f}, max "
                    f"{load['max']:.2f}; co-runners (busy loops beside every run): {fig.get('co_runners', 0)}; "
                    f"rounds: {fig.get('rounds')}; beir's batch searched: "
                    f"{'no (given)' if fig.get('batch_search') is None else 'yes'}."]
    return out


def _bm25_vs_pyserini(fig: dict) -> list[str]:
    p, h, h2 = fig["pyserini"], fig["harness"], fig.get("harness_second_run")
    out = ["| pipeline | wall s | peak RSS MB (largest process) | nDCG@10 |", "|---|---|---|---|",
           f"| pyserini CLI: index | {_f(p['index']['wall_s'])} | {_f(p['index']['peak_rss_mb'], 0)} | |",
           f"| pyserini CLI: search | {_f(p['search']['wall_s'])} | {_f(p['search']['peak_rss_mb'], 0)} "
           f"| {_f(p['ndcg@10'], 4)} |"]
    for label, r in (("harness run (index + search)", h), ("harness run, index cached", h2)):
        if r:
            res = r["result"]
            peak = max(x for x in (r["peak_rss_mb"], res.get("index_worker_peak_rss_mb"),
                                   res.get("search_worker_peak_rss_mb")) if x is not None)
            out.append(f"| {label}: index {_f(res['index_s'])} s, search {_f(res['search_s'])} s inside | "
                       f"{_f(r['wall_s'])} | {_f(peak, 0)} | {_f(res['ndcg@10'], 4)} |")
    if "identical_queries" in fig:
        out += ["", f"Identical ranked lists (docids and six-decimal scores): {fig['identical_queries']} of "
                    f"{fig['queries']} queries; search inside the harness against pyserini's search process: "
                    f"{h['result']['search_s'] / p['search']['wall_s']:.2f}; load average (1 min) before: "
                    f"{fig['load_average_1m_before']:.2f}."]
    return out


def _memory_scaling(fig: dict) -> list[str]:
    out = ["| documents | vectors MiB (N x 384 float32) | peak RSS MiB | wall s |", "|---|---|---|---|"]
    for r in fig["sizes"]:
        out.append(f"| {r['documents']:,} | {r['documents'] * 384 * 4 / 2**20:.0f} | {_f(r['peak_rss_mb'], 0)} "
                   f"| {_f(r['wall_s'])} |")
    return out


def _bm25_memory(rows: list[dict]) -> list[str]:
    out = ["| corpus | documents | queries | harness MB | index worker MB | search worker MB | heap MB | wall s |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['corpus']} | {r['documents']:,} | {r['queries']:,} | {_f(r['harness_peak_rss_mb'], 0)} | "
                   f"{_f(r['index_worker_peak_rss_mb'], 0)} | {_f(r['search_worker_peak_rss_mb'], 0)} | "
                   f"{_f(r['heap_mb'], 0)} | {_f(r['wall_s'])} |")
    return out


def _odqa_scale(data: dict) -> list[str]:
    s = data["settings"]
    out = [f"{s['passages']:,} synthetic passages of {s['words']} words, {s['queries']:,} questions, a random "
           f"{s['layers']}-layer encoder {s['hidden']} wide, {s['jobs']} encode jobs:", "",
           "| stage | seconds | peak RSS MiB |", "|---|---|---|"]
    for st in data["stages"]:
        out.append(f"| {st['stage']} | {_f(st.get('seconds'))} | {_f(st.get('peak_rss_mib'), 0)} |")
    return out


def _printed(lines: list[str]) -> list[str]:
    body = [x for x in lines if not x.startswith("# ") and not x.startswith("results: ")]
    return ["```", *body, "```"] if body else []


def render_run(script: str, path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text())
        return _render(script, path, data)
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); restore it from git or rerun its "
                          "script") from None
    except (KeyError, TypeError) as e:
        raise ReportError(f"{path}: not a result this report knows (missing or odd field {e}); restore it from git "
                         "or rerun its script") from None


def _render(script: str, path: Path, data: dict) -> list[str]:
    rel = path.relative_to(HERE).as_posix()
    name = script.split("/")[1]
    if "printed" in data:  # benchmarks/_common.py:run_and_record
        head = (f"[{rel}]({rel}): {data.get('date')}, {data.get('machine')}, commit {data.get('commit')}; "
                f"`{_command(data)}`")
        fig = data.get("figures") or {}
        table = {"encode_vs_beir": _encode_vs_beir, "bm25_vs_pyserini": _bm25_vs_pyserini,
                 "memory_scaling": _memory_scaling}.get(name)
        body = table(fig) if table and fig else _printed(data["printed"])
        return [head, "", *body]
    if name == "bm25_memory":
        return [f"[{rel}]({rel}): {data.get('stamp')}, {data.get('machine')} (written before the suite's "
                "common format: no commit recorded)", "", *_bm25_memory(data["rows"])]
    if name == "odqa_scale":
        return [f"[{rel}]({rel}) (written before the suite's common format: no date, machine or commit inside; "
                "the date is in the name)", "", *_odqa_scale(data)]
    if name == "trainer_experiment":
        return [f"[{rel}]({rel}): one resumable file that grows unit by unit; "
                f"`{data['header']['command']}`. The tables (`--summary-only` prints them) are in "
                "[docs/TRAINING.md](../docs/TRAINING.md)."]
    return [f"[{rel}]({rel})"]


def _command(data: dict) -> str:
    """The command as run, with the interpreter's absolute script path put back as a module invocation."""
    argv = data.get("command", "").split()
    if argv and argv[0].endswith(".py") and "benchmarks/" in argv[0]:
        mod = argv[0][argv[0].index("benchmarks/"):-3].replace("/", ".")
        argv = ["python", "-m", mod, *argv[1:]]
    return " ".join(argv)


def render() -> str:
    lines = ["## Results", "",
             "Rendered from the JSON files by `python -m benchmarks.report --write`; newest run first. Each run "
             "names its machine: compare ratios within a run, not seconds across machines.", ""]
    for question, script, command in QUESTIONS:
        runs = results_of(script)
        lines += [f"### {question}", "", f"`{command}` (`benchmarks/{script}.py`)", ""]
        if not runs:
            lines += ["No result yet." + (" It needs a CUDA device, and none has been lent to this project's "
                                          "sessions." if script == "compute/gpu_encode" else ""), ""]
            continue
        for path in runs:
            lines += [*render_run(script, path), ""]
    return "\n".join(lines).rstrip() + "\n"


def splice(readme: str, section: str) -> str:
    if BEGIN not in readme or END not in readme:
        raise ReportError(f"{README}: the markers {BEGIN} and {END} are missing; put them where the results go")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{section}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help="rewrite the results section of benchmarks/README.md")
    g.add_argument("--check", action="store_true", help="exit 1 when benchmarks/README.md differs from the JSON")
    args = p.parse_args(argv)
    try:
        return _main(args)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    section = render()
    if args.write:
        README.write_text(splice(README.read_text(), section))
        print(f"wrote the results section of {README.relative_to(HERE.parent)}")
        return 0
    if args.check:
        if splice(README.read_text(), section) != README.read_text():
            print(f"{README.relative_to(HERE.parent)} does not show what the JSON results say: "
                  "run `python -m benchmarks.report --write`", file=sys.stderr)
            return 1
        return 0
    print(section, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""harness train / harness finetune: the built-in trainer (ReContriever, MoCo, in-batch) and few-shot
fine-tuning. Options can also come from a YAML file (``--config``, read with ``yaml.safe_load``; keys are
option names, command-line options win)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.common import add_device, add_metrics
from harness.errors import HarnessError
from harness.settings import PRECISIONS


def _bool(text: str) -> bool:
    low = str(text).strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="YAML file of options (keys = option names)")
    p.add_argument("--init", help="Hugging Face id or folder to start from (one of our checkpoints included)")
    p.add_argument("--output", help="folder for checkpoints, logs and the training-curve PNG")
    p.add_argument("--eval", dest="eval", action="append", default=None, metavar="DATASET",
                   help="evaluate every saved checkpoint on this dataset with `harness run`; repeatable")
    add_metrics(p, ["ndcg@10"], help_extra=" for --eval")
    p.add_argument("--eval-output", default="results", help="results folder of --eval (default: results/)")
    p.add_argument("--eval-baselines", action="store_true", help="with --eval, also run the init model and BM25")
    p.add_argument("--eval-precision", choices=list(PRECISIONS), default="fp32",
                   help="precision of --eval (default fp32, the reference; see `harness run --help`)")
    add_device(p)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-last", type=int, default=2, help="checkpoints kept (default 2)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="no training-curve PNG")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow model repositories to run their own Python code (off by default)")
    p.add_argument("--pooling", choices=["mean", "cls", "max"], default=None,
                   help="override the pooling inherited from the init model")
    p.add_argument("--normalize", type=_bool, default=None, metavar="BOOL",
                   help="override L2 normalisation inherited from the init model")


def add_parser(sub) -> None:
    """Register ``train`` and ``finetune``."""
    from harness.train.config import AUGMENTATIONS, OBJECTIVES, PRECISIONS, WEIGHT_GUARDS, WINDOW_MODES

    p = sub.add_parser("train", help="contrastive pre-training: relevance-aware (ReContriever), moco, inbatch",
                       description="Pre-train or further pre-train a dense encoder on unlabeled text (METHOD.md).")
    _common(p)
    p.add_argument("--corpus", help="dataset id (its corpus text), BEIR folder, JSONL/TSV/text file, or a folder")
    p.add_argument("--objective", choices=OBJECTIVES, default="relevance-aware")
    g = p.add_argument_group("pairs and crops")
    g.add_argument("--pairs", type=int, default=4, help="key crops per window m (relevance-aware; default 4)")
    g.add_argument("--chunk-length", type=int, default=256, help="window length in tokens (default 256)")
    g.add_argument("--window-mode", choices=WINDOW_MODES, default="stream",
                   help="stream: windows over the concatenated token stream (Contriever); document: per document")
    g.add_argument("--window-offset", type=_bool, default=True, metavar="BOOL",
                   help="stream windows cut anew every epoch at a random offset, as Contriever (default true)")
    g.add_argument("--ratio-min", type=float, default=0.05)
    g.add_argument("--ratio-max", type=float, default=0.5)
    g.add_argument("--augmentation", choices=AUGMENTATIONS, default="delete")
    g.add_argument("--prob-augmentation", type=float, default=0.1)
    g = p.add_argument_group("objective")
    g.add_argument("--temperature", type=float, default=0.05)
    g.add_argument("--momentum", type=float, default=0.9995)
    g.add_argument("--queue-size", type=int, default=131072)
    g.add_argument("--weight-guard", choices=list(WEIGHT_GUARDS), default="clamp",
                   help="guard of the relevance normalisation against non-positive sums; uniform: equal weights, "
                        "the control arm (docs/TRAINING.md; default clamp)")
    g.add_argument("--weight-eps", type=float, default=1e-6)
    g.add_argument("--weight-temperature", type=float, default=1.0, help="for --weight-guard softmax")
    g.add_argument("--max-length", type=int, default=None, help="override the init model's max length")
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=500_000)
    g.add_argument("--warmup-steps", type=int, default=20_000)
    g.add_argument("--lr", type=float, default=5e-5)
    g.add_argument("--beta1", type=float, default=0.9)
    g.add_argument("--beta2", type=float, default=0.98)
    g.add_argument("--adam-eps", type=float, default=1e-6)
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--batch-size", type=int, default=128, help="windows per process per micro-batch")
    g.add_argument("--grad-accum", type=int, default=1)
    g.add_argument("--max-grad-norm", type=float, default=0.0, help="0: no clipping")
    g.add_argument("--precision", choices=PRECISIONS, default="auto", help="auto: fp32 on CPU, bf16/fp16 on GPU")
    g = p.add_argument_group("run control")
    g.add_argument("--num-workers", type=int, default=1, help="data-loading processes")
    g.add_argument("--log-every", type=int, default=10)
    g.add_argument("--save-every", type=int, default=1000)
    g.add_argument("--no-state", dest="save_state", action="store_false",
                   help="do not write training_state.pt (smaller checkpoints, no --resume)")
    g.add_argument("--resume", action="store_true", help="continue exactly from the newest checkpoint in --output")
    p.set_defaults(func=cmd_train)

    f = sub.add_parser("finetune", help="few-shot fine-tuning on labelled pairs (in-batch, optional BM25 negatives)",
                       description="Fine-tune an encoder on a few labelled (query, document) pairs of a dataset.")
    _common(f)
    f.add_argument("--dataset", help="dataset id or BEIR folder with qrels/<split>.tsv")
    f.add_argument("--split", default="train")
    f.add_argument("--shots", type=int, default=16, help="labelled pairs drawn (0: all)")
    f.add_argument("--steps", type=int, default=100)
    f.add_argument("--batch-size", type=int, default=8)
    f.add_argument("--lr", type=float, default=2e-5)
    f.add_argument("--warmup-steps", type=int, default=0)
    f.add_argument("--weight-decay", type=float, default=0.01)
    f.add_argument("--temperature", type=float, default=0.05)
    f.add_argument("--hard-negatives", type=int, default=0, help="BM25-mined hard negatives per pair (needs Java)")
    f.add_argument("--hard-negative-depth", type=int, default=30)
    f.add_argument("--query-max-length", type=int, default=64)
    f.add_argument("--doc-max-length", type=int, default=256)
    f.add_argument("--save-every", type=int, default=0, help="0: save only at the end")
    f.set_defaults(func=cmd_finetune)


def _merge_config(args: argparse.Namespace, given: set[str]) -> dict:
    """Options given on the command line, then the YAML file's, then the defaults. ``given`` names the
    options the command line set (even to their default value)."""
    values = vars(args).copy()
    values.pop("argv", None)
    if args.config is None:
        return values
    import yaml

    try:
        loaded = yaml.safe_load(args.config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise HarnessError(f"cannot read config {args.config}: {e}") from None
    if not isinstance(loaded, dict):
        raise HarnessError(f"{args.config}: expected a mapping of option names to values")
    for key, value in loaded.items():
        name = str(key).replace("-", "_")
        if name not in values or name in {"func", "config"}:
            raise HarnessError(f"{args.config}: unknown option {key!r}")
        if name not in given:  # the command line wins
            values[name] = list(value) if name == "eval" and isinstance(value, list | tuple) else value
    if isinstance(values.get("eval"), str):
        values["eval"] = [values["eval"]]
    return values


def _build(cls, values: dict, required: tuple[str, ...]):
    from dataclasses import fields

    missing = [f"--{r}" for r in required if not values.get(r)]
    if missing:
        raise HarnessError(f"missing {', '.join(missing)} (on the command line or in --config)")
    names = {f.name for f in fields(cls)}
    kw = {k: v for k, v in values.items() if k in names}
    kw["eval"] = list(values.get("eval") or [])
    kw["eval_metrics"] = list(values.get("metrics") or ["ndcg@10"])
    kw["output"] = str(values["output"])
    return cls(**kw)


def cmd_train(args: argparse.Namespace) -> int:
    from harness.train.config import TrainConfig
    from harness.train.trainer import train

    values = _merge_config(args, _given("train", args))
    cfg = _build(TrainConfig, values, ("init", "corpus", "output"))
    result = train(cfg, resume=bool(values.get("resume")))
    _report(result)
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from harness.train.finetune import FinetuneConfig, finetune

    values = _merge_config(args, _given("finetune", args))
    cfg = _build(FinetuneConfig, values, ("init", "dataset", "output"))
    _report(finetune(cfg))
    return 0


def _given(command: str, args: argparse.Namespace) -> set[str]:
    """The options of ``command`` that its command line (``args.argv``, set by ``harness.cli.main``) gives,
    found by parsing it again with every default suppressed."""
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    for action in sub.choices[command]._actions:
        action.default = argparse.SUPPRESS
    argv = getattr(args, "argv", None)
    if argv is None:
        return set()
    return set(vars(parser.parse_args(argv))) - {"command", "func"}


def _report(result) -> None:
    if result.checkpoints:
        print(f"checkpoints: {', '.join(str(c) for c in result.checkpoints)}")
    for r in result.evaluations:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in r.metrics.items())
        print(f"{r.label} on {r.dataset}: {scores}")

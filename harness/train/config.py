"""Every option of the trainer and of few-shot fine-tuning, in one place: each dataclass field carries its
default, help text and group, and ``harness.cli.train`` makes the command line from them (so an option is
declared once). ``hyperparameters()`` is what a checkpoint records and what ``--resume`` must match: every
field not marked as run control."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from harness.errors import HarnessError
from harness.settings import PRECISIONS as EVAL_PRECISIONS
from harness.train.guards import WEIGHT_GUARDS
from harness.train.objectives import get_objective, objective_names

AUGMENTATIONS = ("none", "delete", "mask", "replace", "shuffle")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
WINDOW_MODES = ("stream", "document")
LOG_FILE = "train_log.jsonl"  # one JSON line per optimiser step, in the output folder

_PRECISION_HELP = "auto: fp32 on CPU, bf16 (or fp16 where bf16 is missing) on GPU"


def option(default: Any = MISSING, help: str = "", *, group: str = "run control", control: bool = False,
           choices: Sequence[str] | Callable[[], Sequence[str]] | None = None, flag: str | None = None,
           metavar: str | None = None, negate: str | None = None, factory: Callable[[], Any] | None = None,
           cli: bool = True) -> Any:
    """A trainer option: a dataclass field whose metadata makes its command-line option
    (``harness.cli.train.add_options``): ``help`` (the default is appended), its ``group`` in ``--help``,
    ``choices``, ``flag`` (default ``--<name>``), ``negate`` (a boolean defaulting to true shown as this
    ``--no-...`` flag), ``cli=False`` (YAML and Python only). ``control``: run control, not part of the
    method (changing it does not change what is learned; left out of ``hyperparameters()``)."""
    md = {"help": help, "group": group, "control": control, "choices": choices, "flag": flag,
          "metavar": metavar, "negate": negate, "cli": cli}
    if factory is not None:
        return field(default_factory=factory, metadata=md)
    return field(default=default, metadata=md)


def _control(default: Any = MISSING, help: str = "", **kw: Any) -> Any:
    return option(default, help, control=True, **kw)


@dataclass(kw_only=True)
class RunOptions:
    """What ``harness train`` and ``harness finetune`` share: the model, the output, the encoder overrides,
    the device, and the evaluation of saved checkpoints."""

    init: str = _control(help="Hugging Face id or folder to start from (one of our checkpoints included)",
                         group="model and output")
    output: str = _control(help="folder for checkpoints, logs and the training-curve PNG", group="model and output")
    pooling: str | None = option(None, "override the pooling inherited from the init model",
                                 group="model and output", choices=("mean", "cls", "max"))
    normalize: bool | None = option(None, "override L2 normalisation inherited from the init model",
                                    group="model and output", metavar="BOOL")
    seed: int = option(0, "seed of crops, sampling, dropout and initialisation", group="model and output")
    device: str = _control("auto", "auto (CUDA when available, else CPU), cpu, cuda, cuda:N")
    threads: int = _control(0, "torch CPU threads (0: torch's choice)")
    keep_last: int = _control(2, "checkpoints kept")
    progress: bool = _control(True, "progress bar", negate="--no-progress")
    plot: bool = _control(True, "training-curve PNG", negate="--no-plot")
    trust_remote_code: bool = _control(False, "allow model repositories to run their own Python code")
    eval: list[str] = _control(help="evaluate every saved checkpoint on this dataset with `harness run`; repeatable",
                               factory=list, metavar="DATASET", group="evaluation")
    eval_metrics: list[str] = _control(help="metric of --eval; repeatable", factory=lambda: ["ndcg@10"],
                                       flag="--metric", metavar="METRIC", group="evaluation")
    eval_output: str = _control("results", "results folder of --eval", group="evaluation")
    eval_baselines: bool = _control(False, "with --eval, also run the init model and BM25", group="evaluation")
    eval_precision: str = _control("fp32", "precision of --eval (fp32 is the reference; see `harness run --help`)",
                                   choices=EVAL_PRECISIONS, group="evaluation")


@dataclass(kw_only=True)
class TrainConfig(RunOptions):
    """Every hyper-parameter of contrastive pre-training, with the paper's values as defaults where they make
    sense; the command line of ``harness train`` is made from these fields."""

    corpus: str = _control(help="dataset id (its corpus text), BEIR folder, JSONL/TSV/text file, or a folder",
                           group="model and output")
    objective: str = option("relevance-aware", "relevance-aware (ReContriever), moco or inbatch (Contriever's), "
                                               "or a registered objective (harness.train.objectives)",
                            group="objective", choices=objective_names)
    # pairs and crops
    pairs: int = option(4, "key crops per window m (relevance-aware; moco and inbatch use 1)", group="pairs and crops")
    chunk_length: int = option(256, "window length in tokens", group="pairs and crops")
    window_mode: str = option("stream", "stream: windows over the concatenated token stream (Contriever); "
                                        "document: per document", group="pairs and crops", choices=WINDOW_MODES)
    window_offset: bool = option(True, "stream windows cut anew every epoch at a random offset, as Contriever",
                                 group="pairs and crops", metavar="BOOL")
    ratio_min: float = option(0.05, "smallest crop, as a fraction of the window", group="pairs and crops")
    ratio_max: float = option(0.5, "largest crop, as a fraction of the window", group="pairs and crops")
    augmentation: str = option("delete", "token-level augmentation of each crop", group="pairs and crops",
                               choices=AUGMENTATIONS)
    prob_augmentation: float = option(0.1, "probability of augmenting each token", group="pairs and crops")
    # objective
    temperature: float = option(0.05, "softmax temperature of the contrastive loss", group="objective")
    momentum: float = option(0.9995, "momentum of the key encoder (relevance-aware, moco)", group="objective")
    queue_size: int = option(131072, "negative keys kept in the queue (relevance-aware, moco)", group="objective")
    weight_guard: str = option("clamp", "guard of the relevance normalisation against non-positive sums; "
                                        "uniform: equal weights, the control arm (docs/TRAINING.md)",
                               group="objective", choices=WEIGHT_GUARDS)
    weight_eps: float = option(1e-6, "epsilon of the relevance normalisation", group="objective")
    weight_temperature: float = option(1.0, "temperature of --weight-guard softmax", group="objective")
    # encoder (None: inherit from the init model, e.g. its sentence-transformers files)
    max_length: int | None = option(None, "override the init model's max length", group="objective")
    # optimisation
    steps: int = option(500_000, "optimiser steps", group="optimisation")
    warmup_steps: int = option(20_000, "linear warm-up steps of the learning rate", group="optimisation")
    lr: float = option(5e-5, "peak learning rate (AdamW, linear decay after warm-up)", group="optimisation")
    beta1: float = option(0.9, "AdamW beta1", group="optimisation")
    beta2: float = option(0.98, "AdamW beta2", group="optimisation")
    adam_eps: float = option(1e-6, "AdamW epsilon", group="optimisation")
    weight_decay: float = option(0.01, "AdamW weight decay", group="optimisation")
    batch_size: int = option(128, "windows per process per micro-batch", group="optimisation")
    grad_accum: int = option(1, "micro-batches per optimiser step", group="optimisation")
    max_grad_norm: float = option(0.0, "gradient clipping norm (0: no clipping)", group="optimisation")
    precision: str = option("auto", _PRECISION_HELP, group="optimisation", choices=PRECISIONS)
    # run control
    num_workers: int = _control(1, "data-loading processes")
    log_every: int = _control(10, "steps between log lines")
    save_every: int = _control(1000, "steps between checkpoints")
    save_state: bool = _control(True, "write training_state.pt (optimiser, queue, RNG) for --resume",
                                negate="--no-state")
    stop_at_step: int | None = _control(None, "stop (as if killed) after this step (tests of --resume)", cli=False)

    @property
    def m(self) -> int:
        return get_objective(self.objective).pairs_per_window(self)

    def validate(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise HarnessError(message)
        need(self.objective in objective_names(),
             f"unknown objective {self.objective!r}; choose one of {', '.join(objective_names())}")
        need(self.augmentation in AUGMENTATIONS,
             f"unknown augmentation {self.augmentation!r}; choose one of {', '.join(AUGMENTATIONS)}")
        need(self.precision in PRECISIONS,
             f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        need(self.window_mode in WINDOW_MODES, f"unknown window mode {self.window_mode!r}")
        need(self.weight_guard in WEIGHT_GUARDS, f"unknown weight guard {self.weight_guard!r}; "
             f"choose one of {', '.join(WEIGHT_GUARDS)}")
        need(self.pairs >= 1, "--pairs must be >= 1")
        need(0 < self.ratio_min <= self.ratio_max <= 1, "need 0 < --ratio-min <= --ratio-max <= 1")
        need(0 <= self.prob_augmentation <= 1, "--prob-augmentation must be in [0, 1]")
        need(self.chunk_length >= 4, "--chunk-length must be >= 4")
        need(self.temperature > 0, "--temperature must be > 0")
        need(0 <= self.momentum <= 1, "--momentum must be in [0, 1]")
        need(self.queue_size >= 0, "--queue-size must be >= 0")
        need(self.steps >= 1 and self.batch_size >= 1 and self.grad_accum >= 1,
             "--steps, --batch-size and --grad-accum must be >= 1")
        need(0 <= self.warmup_steps <= self.steps,
             f"--warmup-steps ({self.warmup_steps}) exceeds --steps ({self.steps}); pass a smaller --warmup-steps")
        need(self.save_every >= 1 and self.keep_last >= 1, "--save-every and --keep-last must be >= 1")
        smallest = get_objective(self.objective).min_batch_size
        need(self.batch_size >= smallest, f"{self.objective} needs --batch-size >= {smallest}")

    def hyperparameters(self) -> dict:
        return method_fields(self) | {"m": self.m}


def method_fields(cfg: Any) -> dict:
    """The options of a config that are part of the method (what a checkpoint records and ``--resume``
    must match): every field not marked as run control."""
    control = run_control(type(cfg))
    return {k: v for k, v in asdict(cfg).items() if k not in control}


def run_control(cls: type) -> set[str]:
    return {f.name for f in fields(cls) if f.metadata.get("control")}


@dataclass(kw_only=True)
class FinetuneConfig(RunOptions):
    """Few-shot fine-tuning on labelled pairs (``harness finetune``)."""

    dataset: str = _control(help="dataset id or BEIR folder with qrels/<split>.tsv", group="model and output")
    split: str = option("train", "qrels split the labelled pairs come from", group="data")
    shots: int = option(16, "labelled pairs drawn (seeded; 0: every pair of the split)", group="data")
    hard_negatives: int = option(0, "BM25-mined hard negatives per pair (0: in-batch negatives only; needs Java)",
                                 group="data")
    hard_negative_depth: int = option(30, "BM25 depth the hard negatives are drawn from", group="data")
    query_max_length: int = option(64, "max tokens of a query", group="data")
    doc_max_length: int = option(256, "max tokens of a document", group="data")
    steps: int = option(100, "optimiser steps", group="optimisation")
    batch_size: int = option(8, "pairs per step", group="optimisation")
    lr: float = option(2e-5, "peak learning rate (AdamW)", group="optimisation")
    warmup_steps: int = option(0, "linear warm-up steps", group="optimisation")
    weight_decay: float = option(0.01, "AdamW weight decay", group="optimisation")
    temperature: float = option(0.05, "softmax temperature of the in-batch loss", group="optimisation")
    save_every: int = _control(0, "steps between checkpoints (0: only at the end)")

    def hyperparameters(self) -> dict:
        return method_fields(self)

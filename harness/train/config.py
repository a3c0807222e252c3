"""Every option of the trainer and of few-shot fine-tuning, in one place: each dataclass field carries its
default, help text and group, and ``harness.cli.train`` makes the command line from them (so an option is
declared once). ``hyperparameters()`` is what a checkpoint records and what ``--resume`` must match: every
field not marked as run control."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from harness.errors import HarnessError
from harness.params import Param
from harness.settings import PRECISIONS as EVAL_PRECISIONS
from harness.train.objectives import get_objective, objective_names

AUGMENTATIONS = ("none", "delete", "mask", "replace", "shuffle")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
WINDOW_MODES = ("stream", "document")
LOG_FILE = "train_log.jsonl"  # one JSON line per optimiser step, in the output folder

_PRECISION_HELP = ("auto: fp32 on CPU, bf16 on a GPU of compute capability 8.0+ (fp16 with loss scaling below); "
                   "a resumed run keeps the dtype it started in")


def option(default: Any = MISSING, help: str = "", *, group: str = "run control", control: bool = False,
           choices: Sequence[str] | Callable[[], Sequence[str]] | None = None, flag: str | None = None,
           metavar: str | None = None, negate: str | None = None, factory: Callable[[], Any] | None = None,
           cli: bool = True, low: float | None = None, high: float | None = None, low_open: bool = False) -> Any:
    """A trainer option: a dataclass field whose metadata makes its command-line option
    (``harness.cli.train.add_options``): ``help`` (the default is appended), its ``group`` in ``--help``,
    ``choices``, ``flag`` (default ``--<name>``), ``negate`` (a boolean defaulting to true shown as this
    ``--no-...`` flag), ``cli=False`` (YAML and Python only). ``control``: run control, not part of the
    method (changing it does not change what is learned; left out of ``hyperparameters()``). ``low``,
    ``high`` (inclusive; ``low_open`` makes low exclusive) and ``choices`` are the allowed values: every
    value, from the command line, YAML or Python, is checked against them (:func:`check_options`)."""
    md = {"help": help, "group": group, "control": control, "choices": choices, "flag": flag,
          "metavar": metavar, "negate": negate, "cli": cli, "low": low, "high": high, "low_open": low_open}
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
    seed: int = option(0, "seed of sampling, dropout and initialisation (and of train's crops)",
                       group="model and output",
                       low=0, high=2**32 - 1)
    device: str = _control("auto", "auto (CUDA when available, else CPU), cpu, cuda, cuda:N")
    threads: int = _control(0, "torch CPU threads (0: torch's choice)", low=0)
    keep_last: int = _control(2, "checkpoints kept", low=1)
    overwrite: bool = _control(False, "clear --output first when it holds an earlier run (without it such a folder "
                                      "is refused; harness train --resume continues a training run)")
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
    chunk_length: int = option(256, "window length in tokens", group="pairs and crops", low=4)
    window_mode: str = option("stream", "stream: windows over the concatenated token stream (Contriever); "
                                        "document: per document", group="pairs and crops", choices=WINDOW_MODES)
    window_offset: bool = option(True, "stream windows cut anew every epoch at a random offset, as Contriever",
                                 group="pairs and crops", metavar="BOOL")
    ratio_min: float = option(0.05, "smallest crop, as a fraction of the window", group="pairs and crops",
                              low=0, high=1, low_open=True)
    ratio_max: float = option(0.5, "largest crop, as a fraction of the window", group="pairs and crops",
                              low=0, high=1, low_open=True)
    augmentation: str = option("delete", "token-level augmentation of each crop", group="pairs and crops",
                               choices=AUGMENTATIONS)
    prob_augmentation: float = option(0.1, "probability of augmenting each token", group="pairs and crops",
                                      low=0, high=1)
    # objective
    temperature: float = option(0.05, "softmax temperature of the contrastive loss", group="objective",
                                low=0, high=100, low_open=True)
    # encoder (None: inherit from the init model, e.g. its sentence-transformers files)
    max_length: int | None = option(None, "override the init model's max length", group="objective", low=1)
    # optimisation
    steps: int = option(500_000, "optimiser steps", group="optimisation", low=1)
    warmup_steps: int = option(20_000, "linear warm-up steps of the learning rate", group="optimisation", low=0)
    lr: float = option(5e-5, "peak learning rate (AdamW, linear decay after warm-up)", group="optimisation",
                       low=0, high=1, low_open=True)
    beta1: float = option(0.9, "AdamW beta1", group="optimisation", low=0, high=0.999999)
    beta2: float = option(0.98, "AdamW beta2", group="optimisation", low=0, high=0.999999)
    adam_eps: float = option(1e-6, "AdamW epsilon", group="optimisation", low=0, high=1, low_open=True)
    weight_decay: float = option(0.01, "AdamW weight decay", group="optimisation", low=0, high=1000)
    batch_size: int = option(128, "windows per process per micro-batch", group="optimisation", low=1)
    grad_accum: int = option(1, "micro-batches per optimiser step", group="optimisation", low=1)
    max_grad_norm: float = option(0.0, "gradient clipping norm (0: no clipping)", group="optimisation", low=0)
    precision: str = option("auto", _PRECISION_HELP, group="optimisation", choices=PRECISIONS)
    # run control
    num_workers: int = _control(1, "data-loading processes", low=0)
    log_every: int = _control(10, "steps between log lines", low=1)
    save_every: int = _control(1000, "steps between checkpoints", low=1)
    save_state: bool = _control(True, "training_state.pt (optimiser, queue, RNG) for --resume",
                                negate="--no-state")
    dist_timeout: int = _control(7200, "seconds a rank waits for the others at a barrier around work one rank does "
                                       "alone (the token cache, a checkpoint, an evaluation), under torchrun or srun",
                                 low=1, high=7 * 24 * 3600)
    step_timeout: int = _control(600, "seconds a rank waits for the others in a training step's collectives "
                                      "(gradients, gathered keys): a stalled or lost rank ends the job after this",
                                 low=1, high=7 * 24 * 3600)
    dist_backend: str = _control("auto", "torch.distributed backend under torchrun or srun: auto (NCCL on CUDA, gloo "
                                         "on the CPU), nccl, or gloo (e.g. several ranks sharing one GPU)",
                                 choices=("auto", "nccl", "gloo"))
    prepare: bool = _control(False, "tokenise --corpus into the token cache (HARNESS_CACHE) and stop: run it once "
                                    "before torchrun, so no rank waits for rank 0 to tokenise; on several nodes "
                                    "the cache must be on a file system they all see")
    stop_at_step: int | None = _control(None, "stop (as if killed) after this step (tests of --resume)", cli=False,
                                        low=1)
    #: the options the objective declares (``Objective.params``), by name; what is not given takes the
    #: declared default. ``TrainConfig(pairs=2)`` and ``--pairs 2`` land here too.
    objective_options: dict[str, Any] = field(default_factory=dict)

    def option(self, name: str) -> Any:
        """The value of the objective's own option ``name`` (given, or the declared default)."""
        declared = get_objective(self.objective).declared()
        if name not in declared:
            raise HarnessError(f"--objective {self.objective} has no option --{name.replace('_', '-')}")
        return self.objective_options.get(name, declared[name].default)

    def __getattr__(self, name: str) -> Any:  # cfg.pairs: the objective's option (only called when not found)
        if name.startswith("__") or name in {"objective", "objective_options"}:
            raise AttributeError(name)
        try:
            return self.option(name)
        except HarnessError:
            raise AttributeError(f"TrainConfig has no option {name!r} for --objective {self.objective}") from None

    @property
    def m(self) -> int:
        return get_objective(self.objective).pairs_per_window(self)

    def validate(self) -> None:
        """Every option against its declaration, then what ties options together."""
        check_options(self)

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise HarnessError(message)
        need(self.ratio_min <= self.ratio_max, "need --ratio-min <= --ratio-max")
        need(self.warmup_steps <= self.steps,
             f"--warmup-steps ({self.warmup_steps}) exceeds --steps ({self.steps}); pass a smaller --warmup-steps")
        smallest = get_objective(self.objective).min_batch_size
        need(self.batch_size >= smallest, f"{self.objective} needs --batch-size >= {smallest}")
        self._check_objective_options()

    def _check_objective_options(self) -> None:
        """Each given objective option: one the chosen objective declares (an option of another objective does
        nothing here, so it is refused naming whose it is), of its declared type and range."""
        from harness.train.objectives import all_options

        declared = get_objective(self.objective).declared()
        owners = all_options()
        for name, value in self.objective_options.items():
            if name not in declared:
                flag = "--" + name.replace("_", "-")
                whose = owners.get(name, (None, []))[1]
                raise HarnessError(f"harness train: {flag} is an option of {', '.join(whose) or 'no objective'}, "
                                   f"not of --objective {self.objective}; leave it out" +
                                   (f" (options of {self.objective}: "
                                    f"{', '.join(p.name for p in declared.values())})" if declared else ""))
            declared[name].check(value, f"harness train --objective {self.objective}")

    def hyperparameters(self) -> dict[str, Any]:
        """The method's options, the objective's own among them (filled with their defaults), and m."""
        options = {k: self.option(k) for k in get_objective(self.objective).declared()}
        fixed = {k: v for k, v in method_fields(self).items() if k != "objective_options"}
        return fixed | options | {"m": self.m}


def declared(cls: type) -> dict[str, Param]:
    """Each option of a config class as a :class:`~harness.params.Param`: its type from the annotation, its
    range and choices from :func:`option`."""
    out = {}
    for f in fields(cls):
        if not f.metadata:
            continue
        kind = str(f.type).replace(" | None", "")
        many = kind.startswith("list[")
        base = {"int": int, "float": float, "bool": bool, "str": str}[kind[5:-1] if many else kind]
        choices = f.metadata.get("choices")
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        out[f.name] = Param(flag, base, None, f.metadata["help"], low=f.metadata.get("low"),
                            high=f.metadata.get("high"), low_open=bool(f.metadata.get("low_open")),
                            choices=tuple(choices() if callable(choices) else choices) if choices else None,
                            many=many, optional="None" in str(f.type))
    return out


def check_options(cfg: Any) -> None:
    """Refuse any option whose value is not of its declared type, finite and in range (one line naming the
    option and what it takes); a list option may be empty."""
    where = f"harness {'train' if isinstance(cfg, TrainConfig) else 'finetune'}"
    for name, param in declared(type(cfg)).items():
        value = getattr(cfg, name)
        if param.many and value == []:
            continue
        if value is None and not param.optional:
            raise HarnessError(f"{where}: {param.name} is required")
        param.check(value, where)


def method_fields(cfg: Any) -> dict[str, Any]:
    """The options of a config that are part of the method (what a checkpoint records and ``--resume``
    must match): every field not marked as run control."""
    control = run_control(type(cfg))
    return {k: v for k, v in asdict(cfg).items() if k not in control}


def run_control(cls: type) -> set[str]:
    return {f.name for f in fields(cls) if f.metadata.get("control")}


_dataclass_init = TrainConfig.__init__


def _init_with_objective_options(self: TrainConfig, **values: Any) -> None:
    """The dataclass's ``__init__``, taking the objective's own options as keywords too (``pairs=2``): every
    keyword that is not a field goes to ``objective_options`` (checked by ``validate``)."""
    own = {f.name for f in fields(TrainConfig)}
    extra = {k: values.pop(k) for k in list(values) if k not in own}
    _dataclass_init(self, **values)
    self.objective_options = {**self.objective_options, **extra}


TrainConfig.__init__ = _init_with_objective_options  # type: ignore[method-assign]


@dataclass(kw_only=True)
class FinetuneConfig(RunOptions):
    """Few-shot fine-tuning on labelled pairs (``harness finetune``)."""

    dataset: str = _control(help="dataset id or BEIR folder with qrels/<split>.tsv", group="model and output")
    split: str = option("train", "qrels split the labelled pairs come from", group="data")
    shots: int = option(16, "labelled pairs drawn (seeded; 0: every pair of the split)", group="data", low=0)
    hard_negatives: int = option(0, "BM25-mined hard negatives per pair (0: in-batch negatives only; needs Java)",
                                 group="data", low=0)
    hard_negative_depth: int = option(30, "BM25 depth the hard negatives are drawn from", group="data",
                                      low=1, high=2**31 - 1)
    query_max_length: int = option(64, "max tokens of a query", group="data", low=1)
    doc_max_length: int = option(256, "max tokens of a document", group="data", low=1)
    steps: int = option(100, "optimiser steps", group="optimisation", low=1)
    batch_size: int = option(8, "pairs per step", group="optimisation", low=2)
    lr: float = option(2e-5, "peak learning rate (AdamW)", group="optimisation", low=0, high=1, low_open=True)
    warmup_steps: int = option(0, "linear warm-up steps", group="optimisation", low=0)
    weight_decay: float = option(0.01, "AdamW weight decay", group="optimisation", low=0, high=1000)
    temperature: float = option(0.05, "softmax temperature of the in-batch loss", group="optimisation",
                                low=0, high=100, low_open=True)
    save_every: int = _control(0, "steps between checkpoints (0: only at the end)", low=0)

    def validate(self) -> None:
        check_options(self)

    def option(self, name: str) -> Any:
        """Fine-tuning's objective declares no options of its own."""
        raise HarnessError(f"harness finetune has no option --{name.replace('_', '-')}")

    def hyperparameters(self) -> dict[str, Any]:
        return method_fields(self)

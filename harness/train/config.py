"""Every hyper-parameter of the trainer (METHOD.md), with the paper's values as defaults where they make
sense. ``hyperparameters()`` is what a checkpoint records and what ``--resume`` must match."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from harness.errors import HarnessError

OBJECTIVES = ("relevance-aware", "moco", "inbatch")
AUGMENTATIONS = ("none", "delete", "mask", "replace", "shuffle")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
WINDOW_MODES = ("stream", "document")
WEIGHT_GUARDS = ("clamp", "softmax", "raw", "uniform")  # harness.train.losses.relevance_weights
LOG_FILE = "train_log.jsonl"  # one JSON line per optimiser step, in the output folder

# Run control, not part of the method: changing these does not change what is learned.
RUN_CONTROL = {"init", "corpus", "output", "device", "num_workers", "log_every", "save_every", "keep_last",
               "eval", "eval_metrics", "eval_output", "eval_baselines", "eval_precision", "stop_at_step",
               "trust_remote_code",
               "progress", "save_state", "threads", "plot"}


@dataclass
class TrainConfig:
    init: str
    corpus: str
    output: str
    objective: str = "relevance-aware"
    # pairs and crops
    pairs: int = 4  # m key crops per window (relevance-aware); moco and inbatch use 1
    chunk_length: int = 256
    window_mode: str = "stream"  # "stream": Contriever's concatenated token stream; "document": per document
    window_offset: bool = True  # stream windows cut anew each epoch at a random offset, as Contriever
    ratio_min: float = 0.05
    ratio_max: float = 0.5
    augmentation: str = "delete"
    prob_augmentation: float = 0.1
    # objective
    temperature: float = 0.05
    momentum: float = 0.9995
    queue_size: int = 131072
    weight_guard: str = "clamp"
    weight_eps: float = 1e-6
    weight_temperature: float = 1.0
    # encoder (None: inherit from the init model, e.g. its sentence-transformers files)
    pooling: str | None = None
    normalize: bool | None = None
    max_length: int | None = None
    # optimisation
    steps: int = 500_000
    warmup_steps: int = 20_000
    lr: float = 5e-5
    beta1: float = 0.9
    beta2: float = 0.98
    adam_eps: float = 1e-6
    weight_decay: float = 0.01
    batch_size: int = 128  # windows per process per micro-batch
    grad_accum: int = 1
    max_grad_norm: float = 0.0  # 0: no clipping
    seed: int = 0
    precision: str = "auto"
    # run control
    device: str = "auto"
    num_workers: int = 1
    threads: int = 0  # torch threads; 0: leave torch's default
    log_every: int = 10
    save_every: int = 1000
    keep_last: int = 2
    save_state: bool = True
    eval: list[str] = field(default_factory=list)
    eval_metrics: list[str] = field(default_factory=lambda: ["ndcg@10"])
    eval_output: str = "results"
    eval_baselines: bool = False
    eval_precision: str = "fp32"  # harness.settings.PRECISIONS; --eval runs in the reference fp32 by default
    stop_at_step: int | None = None
    trust_remote_code: bool = False
    progress: bool = True
    plot: bool = True

    @property
    def m(self) -> int:
        return self.pairs if self.objective == "relevance-aware" else 1

    def validate(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise HarnessError(message)
        need(self.objective in OBJECTIVES,
             f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
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
        need(self.objective != "inbatch" or self.batch_size >= 2, "inbatch needs --batch-size >= 2")

    def hyperparameters(self) -> dict:
        d = asdict(self)
        return {k: v for k, v in d.items() if k not in RUN_CONTROL} | {"m": self.m}

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

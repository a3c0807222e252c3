"""The training loop: one entry point, ``train(config)``, for the objectives of METHOD.md (and any registered
one).

fp32 on CPU; on GPU the encoder's forward under bf16 (or fp16 with loss scaling) autocast, the logits and
loss in fp32 (``harness.train.loop``); gradient accumulation; data parallel under ``torchrun`` or ``srun``
(gloo on CPU, nccl on GPU) with gradients averaged over ranks and the keys of every rank gathered into the
queue, as Contriever does. For a model without dropout, N processes with batch B, and batch B with N
accumulation steps, compute what one process with batch N*B computes (``tests/train/test_equivalence.py``);
with dropout each rank and micro-batch draws its own masks (the same method, another sample):

- keys reach the queue once per optimiser step, after every micro-batch was computed, so no micro-batch
  sees an earlier one's keys as negatives;
- in-batch negatives are gathered with gradient (every rank's queries reach this rank's keys), and under
  accumulation they span the whole step's batch through gradient caching;
- logged statistics are folded over ranks (the mean; the weights' min and max as min and max).
A resume with another world size, another encoder recipe or another init model is refused.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness import distributed
from harness.devices import exact_float32
from harness.errors import HarnessError
from harness.paths import cache_root
from harness.retrievers.config import EncoderConfig
from harness.train.checkpoint import (
    check_finite_weights,
    checkpoint_metadata,
    claim_output,
    encoder_block,
    latest_resumable,
    list_checkpoints,
    load_state,
    read_metadata,
    require_resumable,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from harness.train.config import LOG_FILE, TrainConfig
from harness.train.crops import ContrastiveBatches, SpecialIds
from harness.train.data import build_token_stream, make_windows, resolve_source
from harness.train.encoder import init_encoder_config, init_identity
from harness.train.loop import fold_stats, objective_step, optimise
from harness.train.moco import KeyQueue, average_gradients, momentum_update
from harness.train.objectives import get_objective
from harness.train.setup import optimiser, start_model
from harness.train.state import RunState


@dataclass
class TrainResult:
    output: Path
    checkpoints: list[Path] = field(default_factory=list)
    last_step: int = 0
    evaluations: list[Any] = field(default_factory=list)  # harness.results.records.ResultRecord
    encoder: object = None  # the trained query encoder and the MoCo queue, for tests and notebooks
    queue: object = None


#: the autocast dtype a checkpoint's training state names (--precision auto resolves by device: a resumed run
#: keeps the one it started with, wherever it resumes)
_AUTOCAST_NAMES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "auto":
        if device.type != "cuda":
            return None
        # bf16 where this device's tensor cores run it (compute capability 8.0+, Ampere on); older GPUs
        # (V100, T4) only emulate it, slowly: fp16 with loss scaling there (is_bf16_supported() says True for
        # emulation, and of the current device, not necessarily this one)
        return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _check_resume(folder: Path, cfg: TrainConfig, checksum: str) -> None:
    meta = _check_hyperparameters(folder, cfg)
    if meta.get("data_checksum") != checksum:
        raise HarnessError(f"--resume from {folder}: the training corpus changed since that checkpoint")


def _check_hyperparameters(folder: Path, cfg: TrainConfig) -> dict[str, Any]:
    """The checkpoint's metadata, when its hyper-parameters are this run's (else why not, in one line)."""
    meta = read_metadata(folder)
    stored, now = meta["hyperparameters"], cfg.hyperparameters()
    diff = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
    if diff == ["steps"]:
        raise HarnessError(f"--resume from {folder} with --steps {now['steps']} (the run was started with "
                           f"{stored['steps']}): the learning rate decays to 0 at --steps, so the steps already "
                           "taken followed another schedule and the result would be neither run. Continue with "
                           f"--steps {stored['steps']}, or start a new --output with --init {folder}")
    if diff:
        shown = ", ".join(f"{k}: {stored.get(k)!r} -> {now.get(k)!r}" for k in diff)
        raise HarnessError(f"--resume from {folder} with different hyper-parameters ({shown}); "
                           "pass the original options or start a new --output")
    return meta


def _check_recipe(folder: Path, enc_cfg: EncoderConfig, init_digest: str | None, init: str) -> None:
    """Refuse a resume whose recipe (pooling, normalisation, similarity, max length: what ``harness run`` of
    the checkpoints will encode with) or init model differs from the run's: the weights were trained under
    the checkpoint's recipe, so checkpoints claiming another would be evaluated as they were never trained."""
    meta = read_metadata(folder)
    stored, now = meta.get("encoder", {}), encoder_block(enc_cfg)
    changed = [k for k in now if k in stored and stored[k] != now[k]]
    if changed:
        shown = ", ".join(f"{k}: {stored[k]!r} (the checkpoint) -> {now[k]!r} (now)" for k in changed)
        flags = " ".join(f"--{k.replace('_', '-')} {str(stored[k]).lower()}" for k in changed
                         if k in {"pooling", "normalize", "max_length"})
        raise HarnessError(f"--resume from {folder}: the encoder recipe of --init {init} is not the run's ({shown}); "
                           "its weights were trained under the checkpoint's recipe. Resume with the --init the run "
                           f"started from{f', or pass {flags}' if flags else ''}")
    before = meta.get("init_digest")
    if before and init_digest and before != init_digest:
        raise HarnessError(f"--resume from {folder}: --init {init} is not the model the run started from (its "
                           f"files' digest {init_digest[7:19]}... differs from the run's {before[7:19]}...: other "
                           "weights, config or tokenizer); resume with that model (a copy at any path will do) or "
                           "start a new --output")


def _finished(output: Path, cfg: TrainConfig) -> TrainResult | None:
    """The run in ``output`` when --resume finds it already at --steps (it says so; nothing is trained)."""
    folder = latest_resumable(output)
    if folder is None:
        return None
    step = int(read_metadata(folder)["step"])
    if step < cfg.steps:
        return None
    _check_hyperparameters(folder, cfg)
    print(f"harness train: {output} already finished at step {step} (--steps {cfg.steps}); nothing to resume",
          file=sys.stderr)
    return TrainResult(output, checkpoints=[f for _, f in list_checkpoints(output)], last_step=step)


def _prepare(cfg: TrainConfig) -> TrainResult:
    """Build (or find) the token cache of ``cfg.corpus`` under ``cfg.init``'s tokenizer, then stop."""
    from transformers import AutoTokenizer

    source = resolve_source(cfg.corpus)
    tokenizer = AutoTokenizer.from_pretrained(cfg.init, trust_remote_code=cfg.trust_remote_code)
    stream = build_token_stream(source, tokenizer, cache_root() / "train-tokens", progress=cfg.progress)
    print(f"harness train --prepare: {stream.meta['n_docs']:,} documents, {stream.meta['n_tokens']:,} tokens "
          f"in {stream.folder} (sha256 of the corpus {stream.checksum[:16]}...); `harness train` with the same "
          "--init and --corpus now starts without tokenising", file=sys.stderr)
    return TrainResult(Path(cfg.output))


def train(cfg: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Train per ``cfg``; with ``resume`` continue exactly from the newest resumable checkpoint."""
    cfg.validate()
    if cfg.prepare:
        return _prepare(cfg)
    output = Path(cfg.output)
    finished = _finished(output, cfg) if resume else None
    if finished is not None:
        return finished
    cuda = distributed.on_cuda(cfg.device)
    rank, world, created_group = distributed.start(cuda, cfg.dist_timeout, cfg.step_timeout, cfg.dist_backend)
    try:
        # every rank refuses alike; rank 0 clears
        distributed.together("the start (rank 0 clears --output)",
                             lambda: claim_output(output, resume=resume, overwrite=cfg.overwrite, clear=rank == 0))
        return _train(cfg, resume, rank, world)
    finally:
        if created_group:
            distributed.stop()


def _train(cfg: TrainConfig, resume: bool, rank: int, world: int) -> TrainResult:
    """Setup, then the one loop (``harness.train.loop.optimise``): a :func:`_step` per step, a
    :func:`_checkpoint` every ``save_every`` steps and at the end."""
    run = _setup(cfg, resume, rank, world)
    result = TrainResult(run.output, encoder=run.encoder, queue=run.queue)
    if rank == 0:
        run.output.mkdir(parents=True, exist_ok=True)
    bar = None
    if rank == 0 and cfg.progress:
        from harness.progress import progress_bar

        bar = progress_bar(run.end, f"train {cfg.objective}", "step", initial=run.start, leave=True)
    if rank == 0 and run.start == 0 and get_objective(cfg.objective).uses_queue:
        print("harness train: step 1 has no negatives yet (the queue fills with each step's keys), so its loss "
              "is 0 and its accuracy 1; the log's 'negatives' column counts them", file=sys.stderr)
    result.last_step = optimise(run.start, run.end, lambda step: _step(cfg, run, step, world),
                                due=lambda done: done % cfg.save_every == 0,
                                checkpoint=lambda done: _checkpoint(cfg, run, done, rank, result),
                                log_path=run.output / LOG_FILE if rank == 0 else None, bar=bar,
                                log_every=cfg.log_every)
    def baselines() -> None:
        if rank == 0 and cfg.eval and cfg.eval_baselines and result.last_step == cfg.steps:
            from harness.train.evaluate import evaluate_baselines

            with distributed.solo():  # rank 0 alone; the others wait for it (and hear if it fails)
                result.evaluations += evaluate_baselines(cfg)

    distributed.together("the end (rank 0 evaluates the baselines)", baselines)
    if rank == 0 and cfg.plot:
        from harness.train.plot import plot_training

        plot_training(run.output)
    return result


def _setup(cfg: TrainConfig, resume: bool, rank: int, world: int) -> RunState:
    """Device, seeds, model, token stream, batches, optimizer and schedule, restored from a checkpoint's
    training state when resuming."""
    output = Path(cfg.output)
    resume_from = require_resumable(output) if resume else None
    enc_cfg = init_encoder_config(cfg.init, cfg.pooling, cfg.normalize, cfg.max_length)
    init_digest = init_identity(cfg.init)
    if resume_from:
        _check_recipe(resume_from, enc_cfg, init_digest, cfg.init)
    model = start_model(cfg, enc_cfg, rank=rank, weights=str(resume_from) if resume_from else None)
    device, tokenizer, encoder = model.device, model.tokenizer, model.encoder
    source = resolve_source(cfg.corpus)
    cache = cache_root() / "train-tokens"
    # the long wait (--dist-timeout); a failure on rank 0 (a bad corpus line) reaches every rank
    built = distributed.together("the token cache (rank 0 tokenises --corpus)",
                                 lambda: build_token_stream(source, tokenizer, cache, progress=cfg.progress)
                                 if rank == 0 else None)
    stream = built if built is not None else build_token_stream(source, tokenizer, cache)
    if resume_from:
        _check_resume(resume_from, cfg, stream.checksum)
    windows = make_windows(stream.offsets, cfg.chunk_length, cfg.window_mode)
    if len(windows) < cfg.batch_size * world:  # a batch would hold one window twice: a positive as its own negative
        raise HarnessError(f"{cfg.corpus}: {int(stream.offsets[-1])} tokens make {len(windows)} window(s) of "
                           f"--chunk-length {cfg.chunk_length}, fewer than one step's batch ({cfg.batch_size} x "
                           f"{world} process(es)); use a shorter --chunk-length, a smaller --batch-size or more text")
    m, B = cfg.m, cfg.batch_size
    dataset = ContrastiveBatches(str(stream.folder), windows, batch_size=B, m=m, seed=cfg.seed,
                                 ratio_min=cfg.ratio_min, ratio_max=cfg.ratio_max, augmentation=cfg.augmentation,
                                 prob=cfg.prob_augmentation, max_length=enc_cfg.max_length,
                                 ids=SpecialIds.from_tokenizer(tokenizer), rank=rank, world_size=world,
                                 offset_chunk=cfg.chunk_length if cfg.window_offset and cfg.window_mode == "stream"
                                 else 0)

    key_encoder, queue = None, None
    if get_objective(cfg.objective).uses_queue:
        key_encoder = encoder.frozen_copy()
        queue = KeyQueue(cfg.option("queue_size"), _hidden_size(encoder.model), device)
    opt, sched = optimiser(encoder, lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps,
                           steps=cfg.steps, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps)
    start = 0
    state: dict[str, Any] = {}
    if resume_from:
        state = load_state(resume_from)
        saved_world = len(state["rng"])
        if saved_world != world:
            raise HarnessError(f"--resume from {resume_from}: it was trained by {saved_world} process(es), this "
                               f"run has {world}; the data position and random states are per process, so "
                               f"resume with {saved_world} (torchrun --nproc_per_node {saved_world})")
        try:
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            if key_encoder is not None and queue is not None:
                key_encoder.load_state_dict(state["key_encoder"])
                queue.load_state_dict(state["queue"])
            set_rng_state(state["rng"][rank], device)
            start = int(state["step"])
        except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as e:
            raise HarnessError(f"{resume_from}: its training state does not fit this model and objective "
                               f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); resume "
                               "from an earlier checkpoint or start a new --output") from None

    amp = _autocast_dtype(cfg.precision, device)
    if resume_from and "autocast" in state:  # a resumed run continues in the dtype it started in
        if state["autocast"] not in _AUTOCAST_NAMES:
            raise HarnessError(f"{resume_from}: its training state names autocast {state['autocast']!r}, not one "
                               f"of {', '.join(_AUTOCAST_NAMES)}; resume from an earlier checkpoint")
        amp = _AUTOCAST_NAMES[state["autocast"]]
    if amp is None:
        exact_float32(device)
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    if resume_from and scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    end = min(cfg.steps, cfg.stop_at_step or cfg.steps)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=range(start * cfg.grad_accum, end * cfg.grad_accum),
        num_workers=cfg.num_workers, generator=torch.Generator(), pin_memory=device.type == "cuda",
        prefetch_factor=4 if cfg.num_workers else None)
    return RunState(device, output, tokenizer, encoder, enc_cfg, stream.checksum, key_encoder, queue, opt, sched,
                    scaler, amp, start, end, iter(loader), init_digest)


def _step(cfg: TrainConfig, run: RunState, step: int, world: int) -> dict[str, Any]:
    """One optimizer step over ``grad_accum`` micro-batches: the objective's forward and backward, gradients
    averaged over ranks, the optimiser and the momentum update; returns the step's log record. Nothing is
    read back from the device before the backward passes (the statistics are, after them)."""
    try:
        return _step_on_ranks(cfg, run, step, world)
    except distributed.CollectiveError as e:
        raise distributed.CollectiveError(f"step {step + 1}: {e}") from None


def _step_on_ranks(cfg: TrainConfig, run: RunState, step: int, world: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    assert run.batches is not None
    cpu_batches = [next(run.batches) for _ in range(cfg.grad_accum)]
    tokens = sum(int(b["anchor_mask"].sum() + b["key_mask"].sum()) for b in cpu_batches)  # on the host: no sync
    micro = [{k: v.to(run.device, non_blocking=True) for k, v in b.items()} for b in cpu_batches]
    outs = objective_step(get_objective(cfg.objective), cfg, run, micro)
    encoder, opt, scaler = run.encoder, run.opt, run.scaler
    average_gradients(encoder)
    if scaler:
        scaler.unscale_(opt)
    if cfg.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(encoder.parameters(), cfg.max_grad_norm)
    lr = run.sched.get_last_lr()[0]
    if scaler:
        scaler.step(opt)  # skipped where the scaled gradients overflowed (fp16): the schedule still advances
        scaler.update()
    else:
        opt.step()
    with warnings.catch_warnings():  # torch's "lr_scheduler.step() before optimizer.step()" after a skipped step
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
        run.sched.step()
    opt.zero_grad(set_to_none=True)
    if run.key_encoder is not None:
        momentum_update(run.key_encoder, encoder, cfg.option("momentum"))
    stats = fold_stats(outs)
    return {"step": step + 1, **stats, "lr": lr,
            "tokens_per_s": tokens * world / max(time.perf_counter() - t0, 1e-9)}


def _checkpoint(cfg: TrainConfig, run: RunState, done: int, rank: int, result: TrainResult) -> None:
    """Save a checkpoint (weights, recipe, training state), then evaluate it on rank 0 when asked."""
    state = _training_state(cfg, run, done)  # every rank (collectives)

    def write() -> None:
        if rank != 0:
            return
        folder = _write(cfg, run, done, state)
        result.checkpoints.append(folder)
        if cfg.eval:
            from harness.train.evaluate import evaluate_checkpoint

            with distributed.solo():  # `harness run` on rank 0 alone: its barriers must not wait for the others
                result.evaluations += evaluate_checkpoint(folder, done, cfg)

    # the others wait here, with the long timeout (--dist-timeout), until the checkpoint and evaluation are
    # done, and stop with rank 0 if it fails (a full disk, a bad --eval dataset)
    distributed.together(f"the checkpoint of step {done} (rank 0 writes{' and evaluates' if cfg.eval else ''} it)",
                         write)


def _hidden_size(model: Any) -> int:
    """The width of a Hugging Face model (its config says; torch types it as a plain Module)."""
    return int(model.config.hidden_size)


def _training_state(cfg: TrainConfig, run: RunState, step: int) -> dict[str, Any] | None:
    """What a checkpoint keeps to resume (None without ``--save-state``), on every rank: the weights checked
    finite first, then every rank's random state gathered (a collective)."""
    key_encoder, queue, scaler = run.key_encoder, run.queue, run.scaler
    check_finite_weights(run.encoder.model, step, run.output)  # on every rank, before any collective
    state = None
    if cfg.save_state:
        rngs = distributed.all_gather_object(rng_state(run.device))
        state = {"step": step, "data_position": step * cfg.grad_accum, "optimizer": run.opt.state_dict(),
                 "scheduler": run.sched.state_dict(), "rng": rngs,
                 "key_encoder": {k: v.cpu() for k, v in key_encoder.state_dict().items()} if key_encoder else None,
                 "queue": queue.state_dict() if queue is not None else None,
                 "scaler": scaler.state_dict() if scaler is not None else None,
                 "autocast": next(k for k, v in _AUTOCAST_NAMES.items() if v == run.amp)}
    return state


def _write(cfg: TrainConfig, run: RunState, step: int, state: dict[str, Any] | None) -> Path:
    """Write checkpoint ``step`` with its training state (rank 0)."""
    meta = checkpoint_metadata(encoder=run.enc_cfg, objective=cfg.objective,
                               hyperparameters=cfg.hyperparameters(), data_checksum=run.checksum, step=step,
                               init=cfg.init, extra={"corpus": cfg.corpus, "init_digest": run.init_digest,
                                                     "world_size": distributed.rank_and_size()[1]})
    return save_checkpoint(run.output, step, run.encoder.model, run.tokenizer, meta, state, cfg.keep_last)

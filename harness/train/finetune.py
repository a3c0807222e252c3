"""Few-shot fine-tuning (METHOD.md): a handful of labelled (query, relevant document) pairs from a
collection's qrels, in-batch negatives, optionally BM25-mined hard negatives; same checkpoint format."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from harness.errors import HarnessError
from harness.train.config import FinetuneConfig
from harness.trec import as_dict

if TYPE_CHECKING:
    from harness.data.dataset import Dataset
    from harness.train.trainer import TrainResult
    from harness.trec import Qrels


def labelled_pairs(ds: Dataset, qrels: Qrels, shots: int, seed: int) -> list[tuple[str, str]]:
    """(query id, relevant doc id) pairs with positive grade, a seeded sample of ``shots`` of them."""
    pairs = sorted((q, d) for q, docs in qrels.items() for d, rel in docs.items() if rel > 0)
    if not pairs:
        raise HarnessError(f"{ds.id}: no positive judgements in the {ds.split} split")
    random.Random(seed).shuffle(pairs)
    return pairs[:shots] if shots else pairs


def _mine_hard_negatives(ds: Dataset, qrels: Qrels, queries: dict[str, str], pairs: list[tuple[str, str]],
                         per_pair: int, depth: int) -> dict[str, list[str]]:
    from harness.retrievers.base import SearchContext
    from harness.retrievers.registry import RETRIEVERS

    bm25 = RETRIEVERS.get("bm25").load()
    bm25.index(ds)
    run = as_dict(bm25.search({q: queries[q] for q, _ in pairs}, depth, SearchContext(ds)).run)
    positives: dict[str, set[str]] = {}
    for q, docs in qrels.items():
        positives[q] = {d for d, r in docs.items() if r > 0}
    return {q: [d for d, _ in sorted(run.get(q, {}).items(), key=lambda x: -x[1])
                if d not in positives.get(q, set()) and d != q][:per_pair] for q in {q for q, _ in pairs}}


def finetune(cfg: FinetuneConfig) -> TrainResult:
    """Fine-tune ``cfg.init`` on few-shot pairs; returns the trainer's ``TrainResult``. The setup
    (``harness.train.setup``) and the step (``harness.train.loop.objective_step`` with the
    :class:`~harness.train.objectives.SupervisedPairs` objective) are the trainer's own."""
    from harness.data.corpus import doc_text
    from harness.data.judgements import GradedJudgements
    from harness.datasets import resolve_dataset
    from harness.devices import exact_float32
    from harness.io import cached_sha256
    from harness.train.checkpoint import checkpoint_metadata, claim_output, save_checkpoint
    from harness.train.config import LOG_FILE
    from harness.train.encoder import init_encoder_config
    from harness.train.loop import fold_stats, objective_step, optimise
    from harness.train.objectives import SupervisedPairs
    from harness.train.setup import optimiser, seed_everything, start_model
    from harness.train.state import RunState
    from harness.train.trainer import TrainResult

    cfg.validate()  # every option against its declaration (--batch-size >= 2: in-batch negatives)
    from harness.launch import launch

    if launch().world_size > 1:  # every rank would train the same model and write the same folder
        raise HarnessError(f"harness finetune runs in one process (a few-shot run is small); it was started as "
                           f"{launch().world_size} ranks (torchrun or srun): start it once, without them")
    claim_output(Path(cfg.output), resume=False, overwrite=cfg.overwrite, resumable=False)
    seed_everything(cfg.seed)  # the sample of pairs and the mined negatives; start_model seeds again
    ds = resolve_dataset(cfg.dataset, split=cfg.split)
    judgements = ds.judgements()
    if not isinstance(judgements, GradedJudgements):  # the judgement type decides, not the dataset's class
        raise HarnessError(f"{cfg.dataset}: few-shot fine-tuning reads labelled (query, document) pairs from "
                           f"qrels; {ds.id} is judged by answers (open-domain QA): use a dataset with "
                           "qrels/<split>.tsv (a BEIR-format folder or id)")
    qrels = judgements.qrels()
    if cfg.eval:  # before any step: an --eval split fine-tuned on would be refused at the first checkpoint
        from harness.runner import refuse_trained_on

        trained = cached_sha256(judgements.path)
        for name in cfg.eval:
            refuse_trained_on(trained, resolve_dataset(name), f"--eval {name}: this run")
    pairs = labelled_pairs(ds, qrels, cfg.shots, cfg.seed)
    queries = ds.queries()
    hard = _mine_hard_negatives(ds, qrels, queries, pairs, cfg.hard_negatives, cfg.hard_negative_depth) \
        if cfg.hard_negatives else {}
    needed = {d for _, d in pairs} | {d for ds_ in hard.values() for d in ds_}
    docs = {doc.doc_id: doc_text(doc) for doc in ds.corpus() if doc.doc_id in needed}
    pairs = [(q, d) for q, d in pairs if d in docs and q in queries]
    if len(pairs) < 2:
        raise HarnessError(f"{cfg.dataset}: fewer than 2 usable labelled pairs in the {cfg.split} split")

    enc_cfg = init_encoder_config(cfg.init, cfg.pooling, cfg.normalize, None)
    model = start_model(cfg, enc_cfg)
    device, tok, encoder = model.device, model.tokenizer, model.encoder
    exact_float32(device)  # few-shot fine-tuning runs in fp32
    opt, sched = optimiser(encoder, lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps,
                           steps=cfg.steps)
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    run = RunState(device, output, tok, encoder, enc_cfg, "", None, None, opt, sched, None, None, 0, cfg.steps,
                   None)
    rng = np.random.default_rng(cfg.seed)

    def tokens(texts: list[str], max_length: int, name: str) -> dict[str, torch.Tensor]:
        b = tok(texts, padding=True, truncation=True, max_length=min(max_length, enc_cfg.max_length),
                return_tensors="pt")
        return {f"{name}_ids": b["input_ids"].to(device), f"{name}_mask": b["attention_mask"].to(device)}

    bar = None
    if cfg.progress:
        from harness.progress import progress_bar

        bar = progress_bar(cfg.steps, "finetune", "step", leave=True)
    result = TrainResult(output)
    objective = SupervisedPairs()
    order: list[int] = []
    bs = min(cfg.batch_size, len(pairs))

    def step(i: int) -> dict[str, Any]:
        nonlocal order
        t0 = time.perf_counter()
        if len(order) < bs:
            order += rng.permutation(len(pairs)).tolist()
        batch, order = [pairs[j] for j in order[:bs]], order[bs:]
        micro = {**tokens([queries[qid] for qid, _ in batch], cfg.query_max_length, "query"),
                 **tokens([docs[did] for _, did in batch], cfg.doc_max_length, "doc")}
        negs = [n for qid, _ in batch for n in hard.get(qid, []) if n in docs]
        if negs:
            micro.update(tokens([docs[n] for n in negs], cfg.doc_max_length, "hard"))
        outs = objective_step(objective, cfg, run, [micro])
        lr = sched.get_last_lr()[0]
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        return {"step": i + 1, **fold_stats(outs), "lr": lr, "pairs_per_s": len(batch) / (time.perf_counter() - t0)}

    def checkpoint(step: int) -> None:
        meta = checkpoint_metadata(encoder=enc_cfg, objective=objective.name, hyperparameters=cfg.hyperparameters(),
                                   data_checksum=cached_sha256(judgements.path), step=step, init=cfg.init,
                                   extra={"dataset": ds.id, "split": ds.split, "n_pairs": len(pairs)})
        folder = save_checkpoint(output, step, encoder.model, tok, meta, None, cfg.keep_last)
        result.checkpoints.append(folder)
        if cfg.eval:
            from harness.train.evaluate import evaluate_checkpoint

            result.evaluations += evaluate_checkpoint(folder, step, cfg)

    result.last_step = optimise(0, cfg.steps, step,
                                due=lambda done: bool(cfg.save_every) and done % cfg.save_every == 0,
                                checkpoint=checkpoint, log_path=output / LOG_FILE, bar=bar, log_every=10,
                                what="finetune")
    if cfg.eval and cfg.eval_baselines:
        from harness.train.evaluate import evaluate_baselines

        result.evaluations += evaluate_baselines(cfg)
    if cfg.plot:
        from harness.train.plot import plot_training

        plot_training(output)
    return result

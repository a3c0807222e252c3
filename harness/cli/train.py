"""harness train / harness finetune: the built-in trainer (ReContriever, MoCo, in-batch) and few-shot
fine-tuning. Options can also come from a YAML file (``--config``, read with ``yaml.safe_load``; keys are
option names, command-line options win). The options are made from the fields of ``TrainConfig`` and
``FinetuneConfig`` (``harness.train.config``), where each is declared once with its default and help."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


def _bool(text: str) -> bool:
    low = str(text).strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


GROUP_ORDER = ("model and output", "data", "pairs and crops", "objective", "optimisation", "evaluation",
               "run control")


def add_options(p: argparse.ArgumentParser, cls: type) -> None:
    """The command-line options of a config dataclass, made from its fields (``harness.train.config.option``):
    flag, type, choices, default and help come from the one declaration. A field left None on the command
    line keeps its dataclass default (or the YAML value) in ``_build``."""
    from dataclasses import MISSING, fields

    groups = {}
    for name in GROUP_ORDER:
        groups[name] = p.add_argument_group(name)
        if name == "objective" and _objective_options(cls):  # TrainConfig: each objective's own options
            _add_objective_options(p)
    for f in fields(cls):
        md = f.metadata
        if not md or not md.get("cli", True):
            continue
        g = groups[md["group"]]
        flag = md.get("flag") or "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else (f.default_factory() if f.default_factory
                                                                is not MISSING else None)
        shown = "" if default is None or default == [] else \
            f" (default: {' '.join(default) if isinstance(default, list) else _shown(default)})"
        help_text = md["help"] + shown
        kw: dict[str, Any] = {"dest": f.name, "help": help_text}
        kind = str(f.type)
        if kind == "bool" and md.get("negate"):
            g.add_argument(md["negate"], action="store_false", dest=f.name, default=argparse.SUPPRESS,
                           help=f"no {md['help'][0].lower() + md['help'][1:]}")
            continue
        if kind == "bool" and default is False:
            g.add_argument(flag, action="store_true", default=argparse.SUPPRESS, dest=f.name, help=md["help"])
            continue
        if kind.startswith("list["):
            kw.update(action="append", metavar=md.get("metavar"))
        elif kind.startswith("bool"):
            kw.update(type=_bool, metavar=md.get("metavar") or "BOOL")
        else:
            kw.update(type={"int": int, "float": float}.get(kind.split(" |")[0], str), metavar=md.get("metavar"))
        if md.get("choices"):  # a callable: read when the parser is made (registries filled by then)
            choices = md["choices"]() if callable(md["choices"]) else md["choices"]
            kw.update(choices=list(choices), metavar=None)
        g.add_argument(flag, default=argparse.SUPPRESS, **kw)


def _objective_options(cls: type) -> bool:
    """Whether a config class takes the objectives' own options (TrainConfig does; FinetuneConfig does not)."""
    from dataclasses import fields

    return any(f.name == "objective_options" for f in fields(cls))


def _add_objective_options(p: argparse.ArgumentParser) -> None:
    """Every registered objective's options (``Objective.params``), in a group named after the objectives that
    declare them, placed after the general "objective" group; parsed and checked by their declaration."""
    from harness.train.objectives import all_options

    by_owner: dict[str, list[Any]] = {}
    for name, (param, owners) in all_options().items():
        by_owner.setdefault(", ".join(owners), []).append((name, param))
    for whose, options in by_owner.items():
        g = p.add_argument_group(f"objective {whose}" if "," not in whose else f"objectives {whose}")
        for name, param in options:
            shown = "" if param.default is None else f" (default: {_shown(param.default)})"
            kw: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": param.help + shown,
                                  "type": _parser_of(param)}
            if param.choices:
                kw.update(choices=list(param.choices), type=str)
            g.add_argument(param.name, **kw)


def _parser_of(param: Any) -> Any:
    """The option's type from its text (its range is checked with every other option's, by validate)."""
    def parse(text: str) -> Any:
        try:
            return param._scalar(text.strip(), "harness train")
        except HarnessError as e:
            raise argparse.ArgumentTypeError(str(e).split(": ", 1)[-1]) from None
    parse.__name__ = param.kind.__name__
    return parse


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) and value >= 10_000:
        return f"{value:_}"
    return str(value)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``train`` and ``finetune``: their options come from ``TrainConfig`` and ``FinetuneConfig``."""
    from harness.train.config import FinetuneConfig, TrainConfig

    p = sub.add_parser("train", help="contrastive pre-training: relevance-aware (ReContriever), moco, inbatch",
                       description="Pre-train or further pre-train a dense encoder on unlabeled text "
                                   "(relevance-aware contrastive learning, Contriever's MoCo and in-batch "
                                   "baselines; docs/TRAINING.md). Every option can also come from --config.")
    p.add_argument("--config", type=Path, default=None,
                   help="YAML file of options (keys = option names; the command line wins)")
    add_options(p, TrainConfig)
    p.add_argument("--resume", action="store_true", help="continue exactly from the newest checkpoint in --output")
    p.set_defaults(func=cmd_train)

    f = sub.add_parser("finetune", help="few-shot fine-tuning on labelled pairs (in-batch, optional BM25 negatives)",
                       description="Fine-tune an encoder on a few labelled (query, document) pairs of a dataset.")
    f.add_argument("--config", type=Path, default=None,
                   help="YAML file of options (keys = option names; the command line wins)")
    add_options(f, FinetuneConfig)
    f.set_defaults(func=cmd_finetune)


def _merge_config(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """Options given on the command line, then the YAML file's; what neither gives keeps the dataclass
    default. The parser suppresses every default, so a command-line value equal to the default still wins
    over the YAML file."""
    from dataclasses import fields

    values = {k: v for k, v in vars(args).items() if k not in ("argv", "func", "command")}
    if args.config is None:
        return values
    import yaml

    try:
        loaded = yaml.safe_load(args.config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise HarnessError(f"cannot read config {args.config}: {e}") from None
    if not isinstance(loaded, dict):
        raise HarnessError(f"{args.config}: expected a mapping of option names to values")
    names = {f.name for f in fields(cls)} | {"resume"}
    if _objective_options(cls):  # TrainConfig: the objectives' own options
        from harness.train.objectives import all_options

        names |= set(all_options())
    aliases = {(f.metadata.get("flag") or "").lstrip("-").replace("-", "_"): f.name for f in fields(cls)}
    for key, value in loaded.items():
        name = str(key).replace("-", "_")
        name = aliases.get(name, name)
        if name not in names:
            raise HarnessError(f"{args.config}: unknown option {key!r}")
        if name not in values:  # the command line wins
            values[name] = value
    for name in ("eval", "eval_metrics"):
        if isinstance(values.get(name), str):
            values[name] = [values[name]]
    return values


def _build(cls: type[Any], values: dict[str, Any], required: tuple[str, ...]) -> Any:
    from dataclasses import fields

    missing = [f"--{r}" for r in required if not values.get(r)]
    if missing:
        raise HarnessError(f"missing {', '.join(missing)} (on the command line or in --config)")
    kw = {f.name: values[f.name] for f in fields(cls) if f.name in values}
    if _objective_options(cls):  # TrainConfig: the objectives' own options, as keywords
        from harness.train.objectives import all_options

        kw.update({k: values[k] for k in all_options() if k in values})
    for name in ("eval", "eval_metrics"):
        if name in kw:
            kw[name] = list(kw[name] or [])
    kw["output"] = str(values["output"])
    return cls(**kw)


def _check_before_torch(cfg: Any, resume: bool) -> None:
    """What refuses a run without a model or a GPU, checked before torch is imported (a second, not 25): every
    option, the training text, and the output folder (held by another run, or nothing to --resume)."""
    from harness.train.data import resolve_source
    from harness.train.folders import claim_output, latest_resumable, read_metadata, require_resumable

    cfg.validate()
    if cfg.prepare:
        return
    resolve_source(cfg.corpus)
    output = Path(cfg.output)
    claim_output(output, resume=resume, overwrite=cfg.overwrite, clear=False)  # refuses alike; clears nothing
    if resume:
        newest = latest_resumable(output)
        if newest is None or int(read_metadata(newest)["step"]) < cfg.steps:  # a finished run says so later
            require_resumable(output)


def cmd_train(args: argparse.Namespace) -> int:
    from harness.train.config import TrainConfig

    values = _merge_config(args, TrainConfig)
    cfg = _build(TrainConfig, values, ("init", "corpus", "output"))
    resume = bool(values.get("resume"))
    _check_before_torch(cfg, resume)
    from harness.train.trainer import train

    result = train(cfg, resume=resume)
    _report(result)
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from harness.train.config import FinetuneConfig
    from harness.train.finetune import finetune

    values = _merge_config(args, FinetuneConfig)
    cfg = _build(FinetuneConfig, values, ("init", "dataset", "output"))
    _report(finetune(cfg))
    return 0


def _report(result: Any) -> None:
    if result.checkpoints:
        print(f"checkpoints: {', '.join(str(c) for c in result.checkpoints)}")
    for r in result.evaluations:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in r.metrics.items())
        print(f"{r.label} on {r.dataset}: {scores}")

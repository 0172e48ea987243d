"""``fairgen train``: train a contrastive encoder on a stream card, from a run config and flags.

A run is every ``TrainConfig`` field plus the run's own keys (``spec`` or an inline ``stream``,
``batch_size``, ``knn_every``, ``knn_n``), read from ``--config run.yaml|json`` and then from
the flags (a flag beats the file, the file beats the default). The resolved run goes to
``OUT/run.json``; checkpoints, ``metrics.jsonl``, ``encoder.safetensors`` and ``stream.json`` go
next to it. ``--resume`` continues to ``--steps``; any other changed setting is an error unless
``--override``. Under ``torchrun`` every process joins the process group, takes its shard of the
stream, and rank 0 alone writes files.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, fields
from pathlib import Path

from .common import (
    add_command,
    add_confirming_labelers,
    add_device,
    add_entry_point_trust,
    allowed_entry_points,
    confirming_labelers,
    non_negative_int,
    out_folder,
    positive_int,
    progress_enabled,
)

HIDDEN = {"checkpoint_dir", "progress"}  # always --out; --quiet
# settings a resumed run may change freely (everything else needs --override)
RESUMABLE = {
    "total_steps",
    "progress",
    "log_every",
    "checkpoint_every",
    "knn_every",
    "knn_n",
    "compile",
    "spec",
}


def add_parser(sub) -> None:
    p = add_command(
        sub,
        "train",
        "train a contrastive encoder on a stream card",
        description=__doc__.split("\n", 1)[1].strip(),
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="run config (YAML or JSON): TrainConfig fields and run keys",
    )
    p.add_argument(
        "--spec",
        default=argparse.SUPPRESS,
        metavar="CARD",
        help="stream card (JSON) from `fairgen stream --new` "
        "(default: the one --config names; one is required)",
    )
    p.add_argument(
        "--out",
        default="run",
        metavar="DIR",
        help="run folder: run.json, checkpoint.pt, metrics.jsonl, encoder.safetensors, stream.json",
    )
    _add_config_flags(p)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoint.pt (an error when it is missing)",
    )
    p.add_argument(
        "--override",
        action="store_true",
        help="with --resume: accept changed settings; "
        "without: start over in an OUT that has a checkpoint",
    )
    add_confirming_labelers(p)
    add_device(p)
    add_entry_point_trust(p)
    p.set_defaults(func=run)


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per training field, its help from the field's metadata, its default shown once."""
    from ..run_config import ALIASES, TrainSettings, field_help

    flag_of = {name: flag for flag, name in ALIASES.items()}  # total_steps -> --steps
    positive = {"total_steps", "batch_size", "knn_n", "crop_size"}
    for name, (text, default) in field_help(TrainSettings).items():
        if name in HIDDEN:
            continue
        flag = "--" + flag_of.get(name, name).replace("_", "-")
        help_text = text if "default" in text else f"{text} (default: {default})"
        options = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
        elif name in positive:
            p.add_argument(flag, type=positive_int, **options)
        elif isinstance(default, int):
            p.add_argument(flag, type=non_negative_int, **options)
        elif isinstance(default, float):
            p.add_argument(flag, type=float, **options)
        else:
            p.add_argument(flag, **options)


# ---------------------------------------------------------------- resolving the run


def resolve(args, base: dict | None = None) -> dict:
    """Defaults (or a resumed run's ``base``) <- config file <- explicit flags, as one flat dict
    (``fairgen.run_config.load_run_config`` does the layering and the checks)."""
    from ..run_config import TrainSettings, load_run_config, read_run_file, sectioned

    train_names = {f.name for f in fields(TrainSettings)}
    flags = {name: getattr(args, name) for name in train_names if hasattr(args, name)}
    overrides = {"train": flags}
    if hasattr(args, "spec"):
        overrides["stream"] = {"spec": args.spec}
    if base:  # a resumed run's own copy of its stream beats the card path it started from
        base = {k: v for k, v in base.items() if k in train_names | {"spec", "stream"}}
        if base.get("stream") is not None:
            base["spec"] = None
    given = sectioned(read_run_file(args.config), f"--config {args.config}") if args.config else {}
    if "checkpoint_dir" in given.get("train", {}):
        raise ValueError(f"--config {args.config}: checkpoint_dir is always the --out folder")
    try:
        run = load_run_config(args.config, overrides, base=base)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"--config: {error}") from None
    if (run.stream.spec is None) == (run.stream.card is None):
        raise ValueError(
            "give the stream: --spec CARD (or `spec:` / an inline `stream:` in --config), one of "
            "them"
        )
    settings = {**asdict(run.train), "spec": run.stream.spec, "stream": run.stream.card}
    settings["progress"] = progress_enabled(args) and settings["progress"]
    return settings


def load_stream_spec(settings: dict, folder: Path, allow_entry_points=()):
    """The run's stream: an inline ``stream`` (from --config or a resumed checkpoint) names its
    files relative to ``folder`` (the config's folder, or the run folder); a ``spec`` file relative
    to its own."""
    from ..spec import StreamSpec

    if settings["stream"] is not None:
        return StreamSpec.from_dict(
            settings["stream"], folder=folder, allow_entry_points=allow_entry_points
        )
    return StreamSpec.load(settings["spec"], allow_entry_points=allow_entry_points)


def _names_inline_card(path) -> bool:
    """Whether the config file holds the stream card inline (its files resolve beside it)."""
    from ..run_config import read_run_file, sectioned

    return sectioned(read_run_file(path), f"--config {path}")["stream"].get("card") is not None


def differences(stored: dict, requested: dict) -> list[str]:
    """Settings of a resumed run that differ from the checkpoint's and may not change freely."""
    keys = sorted((set(stored) | set(requested)) - RESUMABLE)
    return [
        f"{k}: {stored.get(k)!r} -> {requested.get(k)!r}"
        for k in keys
        if stored.get(k) != requested.get(k)
    ]


# ---------------------------------------------------------------- the command


def run(args) -> None:
    """One writer per run folder: a second ``fairgen train`` into the same ``--out`` is refused,
    naming the first (``steering.outputs.output_lock``; under torchrun, rank 0 holds it)."""
    import os
    from contextlib import nullcontext

    from plumbing.outputs import output_lock

    out = out_folder(args)
    with output_lock(out) if os.environ.get("RANK", "0") == "0" else nullcontext():
        _run(args)


def _run(args) -> None:
    import torch.distributed as dist

    from ..contrastive.distributed import init_from_env
    from ..contrastive.trainer import (
        CHECKPOINT_NAME,
        TrainConfig,
        Trainer,
        clean_leftovers,
        read_checkpoint,
    )
    from ..stream import Stream

    out = out_folder(args)
    checkpoint = out / CHECKPOINT_NAME
    if args.resume and not checkpoint.is_file():
        raise FileNotFoundError(
            f"--resume: no checkpoint at {checkpoint}; run without --resume to start"
        )
    if not args.resume and checkpoint.is_file() and not args.override:
        raise ValueError(
            f"{out} already holds a run ({checkpoint}); pass --resume to continue it, "
            "--override to start over, or choose another --out"
        )
    state = read_checkpoint(checkpoint) if args.resume else None
    if state is not None and getattr(args, "total_steps", state["step"]) < state["step"]:
        _below(args.total_steps, state["step"])  # before the run's other settings are checked
    settings = resolve(args, base=state["run_dict"] if state else None)
    if state is not None and settings["total_steps"] < state["step"]:
        _below(settings["total_steps"], state["step"])
    inline_from_config = bool(args.config) and _names_inline_card(args.config)
    spec = load_stream_spec(
        settings,
        Path(args.config).parent if inline_from_config else out,
        allowed_entry_points(args),
    )
    train_fields = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(
        **{k: v for k, v in settings.items() if k in train_fields} | {"checkpoint_dir": str(out)}
    )

    rank, world, device = init_from_env(args.device)
    try:
        if settings["batch_size"] % world:
            raise ValueError(
                f"--batch-size {settings['batch_size']} must be divisible by the {world} processes"
            )
        # the checkpoint names the stream's files relative to OUT, where stream.json and its files
        # are placed
        record = {
            **config.to_dict(),
            **settings,
            "checkpoint_dir": None,
            "stream": spec.portable_dict(out),
            "world_size": world,
        }
        record.pop("progress")
        if rank == 0:
            clean_leftovers(out)
        if state is not None:
            stored = state["run_dict"] or {**state["config_dict"], "checkpoint_dir": None}
            stored.pop("progress", None)
            changed = differences(
                stored, {k: v for k, v in record.items() if state["run_dict"] or k in stored}
            )
            if changed and not args.override:
                raise ValueError(
                    "--resume with changed settings (pass --override to accept them): "
                    + "; ".join(changed)
                )
            trainer = Trainer.from_checkpoint(checkpoint, device, config=config)
        else:
            trainer = Trainer(config, device)
        trainer.run_info = record
        start = trainer.step
        if rank == 0:
            from plumbing.files import atomic_write_text

            spec.save(
                out / "stream.json"
            )  # before training, so that a resumed run finds the stream's files in OUT
            atomic_write_text(out / "run.json", json.dumps(record, indent=2) + "\n")
        stream = Stream.from_spec(
            spec,
            settings["batch_size"],
            device,
            rank=rank,
            world_size=world,
            start_step=trainer.step,
            labeler=confirming_labelers(args),
        )
        if (
            config.supervised
            and stream.generator.num_classes == 0
            and getattr(stream.steerer, "keep_", None) is None
        ):
            raise ValueError(
                "--supervised needs labels: this stream's generator is unconditional (every "
                "label 0); "
                "train SimCLR (--no-supervised), or steer with --method confirmed --keep-labeler "
                "so that "
                "the keep-labels are the stream's labels"
            )
        monitor = (
            _knn_monitor(spec, settings, device, confirming_labelers(args))
            if settings["knn_every"]
            else None
        )
        trainer.fit(stream, monitor=monitor, monitor_every=settings["knn_every"])
        trainer.save_encoder(out / "encoder.safetensors")
        if rank == 0:
            losses = [r["loss"] for r in trainer.history if "loss" in r]
            chance = trainer.chance_loss(settings["batch_size"] * spec.view_recipe.num_views)
            resumed = f"resumed at step {start}, " if state is not None else ""
            last = (
                f"; last loss {losses[-1]:.4f} (chance ln(2B-1) = {chance:.4f})" if losses else ""
            )
            print(
                f"{resumed}trained {trainer.step - start} steps, now at step {trainer.step} of "
                f"{config.total_steps}"
                f" on {world} process(es){last}; wrote {out / 'encoder.safetensors'} and "
                f"{checkpoint}"
            )
    finally:
        if world > 1 and dist.is_initialized():
            dist.barrier()  # no rank tears the group down while another still talks to it
            dist.destroy_process_group()


def _below(steps: int, trained: int) -> None:
    raise ValueError(f"--steps {steps} is below the {trained} steps this run already trained")


def _knn_monitor(spec, settings: dict, device, labeler=None):
    """kNN accuracy on held-out anchors of the same generator (labels: its classes), unaugmented."""
    from dataclasses import replace

    from ..contrastive import KnnMonitor
    from ..stream import Stream

    n = settings["knn_n"]
    held_out = Stream.from_spec(
        replace(spec, seed=spec.seed + 1_000_003, augment="none", refresh=1.0, buffer_size=None),
        2 * n,
        device,
        labeler=labeler,
    )
    if held_out.generator.num_classes == 0 and getattr(held_out.steerer, "keep_", None) is None:
        raise ValueError(
            "--knn-every needs a class-conditional generator (its classes are the kNN labels), "
            "or a "
            "confirmed card with a keep labeler (its keep-labels are)"
        )
    batch = held_out.next_batch()
    images, labels = batch["views"][:, 0], batch["labels"]
    return KnnMonitor(images[:n], labels[:n], images[n:], labels[n:])

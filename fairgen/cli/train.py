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
from dataclasses import MISSING, fields
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

# What each TrainConfig field means on the command line (help text with units); the default is
# appended from TrainConfig itself, so help and behaviour cannot drift apart.
FIELD_HELP = {
    "encoder": "backbone: small_cnn, resnet18, resnet50, any torchvision classification model "
    "(torchvision:NAME or NAME) or timm:NAME, trained from scratch",
    "small_images": "ResNet stem for 32-64 px images (3x3 stride-1 conv, no max-pool)",
    "projection_hidden_dim": "width of the projection head's hidden layer (units)",
    "projection_dim": "width of the contrastive space (units)",
    "supervised": "SupCon with the stream's class labels; --no-supervised is SimCLR (every sample its own class)",
    "temperature": "softmax temperature of the contrastive loss (> 0)",
    "optimizer": "sgd, lars or adamw",
    "lr": "peak learning rate (per step, after warm-up)",
    "weight_decay": "decoupled/L2 weight decay of weights with >= 2 dims (biases and norms get none)",
    "momentum": "SGD/LARS momentum (ignored by adamw)",
    "total_steps": "optimiser steps of the whole run (with --resume: continue up to this many)",
    "warmup_steps": "linear warm-up steps before the cosine decay",
    "augment": "augmentation the trainer adds on top of the stream card's: a preset (simclr, light, none) "
    "or a JSON recipe (a file or inline)",
    "crop_size": "side of the trainer's random crops in pixels (default: the stream's resolution)",
    "seed": "seed of the model initialisation and the trainer's augmentation",
    "bf16": "bf16 autocast on CUDA",
    "channels_last": "channels-last memory format on CUDA",
    "compile": "torch.compile the model",
    "sync_bn": "under torchrun, BatchNorm statistics over the global batch (every backend)",
    "checkpoint_dir": None,  # always --out
    "checkpoint_every": "steps between checkpoints (0: only at the end)",
    "log_every": "steps between lines of OUT/metrics.jsonl (0: none)",
    "progress": None,  # --quiet
}
ALIASES = {"total_steps": "steps"}  # field -> its flag (--steps)
FIELD_OF = {flag: name for name, flag in ALIASES.items()}  # a config file may use either name
RUN_DEFAULTS = {"spec": None, "stream": None, "batch_size": 256, "knn_every": 0, "knn_n": 1000}
RUN_KEYS = set(RUN_DEFAULTS)
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
        help="stream card (JSON) from `fairgen stream --new` (default: the one --config names; one is required)",
    )
    p.add_argument(
        "--out",
        default="run",
        metavar="DIR",
        help="run folder: run.json, checkpoint.pt, metrics.jsonl, encoder.safetensors, stream.json",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=argparse.SUPPRESS,
        help=f"global batch: anchors per step over all processes (default: {RUN_DEFAULTS['batch_size']})",
    )
    p.add_argument(
        "--knn-every",
        type=non_negative_int,
        default=argparse.SUPPRESS,
        help="steps between kNN accuracies of the encoder on held-out generated images, logged to "
        "metrics.jsonl (default: 0, never)",
    )
    p.add_argument(
        "--knn-n",
        type=positive_int,
        default=argparse.SUPPRESS,
        help=f"held-out images of each kNN split (default: {RUN_DEFAULTS['knn_n']})",
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
        help="with --resume: accept changed settings; without: start over in an OUT that has a checkpoint",
    )
    add_confirming_labelers(p)
    add_device(p)
    add_entry_point_trust(p)
    p.set_defaults(func=run)


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    from ..contrastive.config import TrainConfig  # plain data: no torch import

    for f in fields(TrainConfig):
        text = FIELD_HELP[f.name]
        if text is None:
            continue
        default = f.default if f.default is not MISSING else f.default_factory()
        flag = "--" + ALIASES.get(f.name, f.name).replace("_", "-")
        kind = type(default)
        help_text = f"{text} (default: {default})"
        if kind is bool:
            p.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        elif f.name in ("total_steps",):
            p.add_argument(
                flag, dest=f.name, type=positive_int, default=argparse.SUPPRESS, help=help_text
            )
        elif kind is int or f.name == "crop_size":
            p.add_argument(
                flag,
                dest=f.name,
                type=non_negative_int if f.name != "crop_size" else positive_int,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        elif kind is float:
            p.add_argument(flag, dest=f.name, type=float, default=argparse.SUPPRESS, help=help_text)
        else:
            p.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, help=help_text)


# ---------------------------------------------------------------- resolving the run


def read_config_file(path: str) -> dict:
    """A run config from YAML or JSON; unknown keys are an error naming the file."""
    from ..contrastive.config import TrainConfig

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as error:  # json and yaml raise their own error types
        raise ValueError(
            f"--config {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {error}"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(
            f"--config {path} must hold a mapping of settings, got {type(data).__name__}"
        )
    data = {FIELD_OF.get(k, k): v for k, v in data.items()}
    known = {f.name for f in fields(TrainConfig)} | RUN_KEYS
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"--config {path}: unknown keys {unknown}; allowed: {sorted(known)}")
    if "checkpoint_dir" in data:
        raise ValueError(
            f"--config {path}: checkpoint_dir is always the --out folder; leave it out"
        )
    return data


def resolve(args, base: dict | None = None) -> dict:
    """Defaults (or a resumed run's ``base``) <- config file <- explicit flags, as one flat dict."""
    from ..contrastive.config import TrainConfig

    settings = {**TrainConfig().to_dict(), **RUN_DEFAULTS}
    if base:
        settings.update({k: v for k, v in base.items() if k in settings})
    given = read_config_file(args.config) if args.config else {}
    given |= {name: getattr(args, name) for name in settings if hasattr(args, name)}
    if (
        "spec" in given and "stream" not in given
    ):  # a card named anew beats the resumed run's stream
        given["stream"] = None
    settings.update(given)
    if base and settings["stream"] is not None:  # the resumed run's own copy of its stream
        settings["spec"] = None
    if (
        "warmup_steps" not in given and not base
    ):  # the default warm-up, but never longer than the run
        settings["warmup_steps"] = min(settings["warmup_steps"], settings["total_steps"])
    settings["augment"] = _augment_recipe(settings["augment"])
    if (settings["spec"] is None) == (settings["stream"] is None):
        raise ValueError(
            "give the stream: --spec CARD (or `spec:` / an inline `stream:` in --config), one of them"
        )
    batch = settings["batch_size"]
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 2:
        raise ValueError(
            f"batch_size must be an integer >= 2 (a contrastive batch needs negatives), got {batch!r}"
        )
    for name in ("knn_every", "knn_n"):
        value = settings[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < (0 if name == "knn_every" else 1)
        ):
            raise ValueError(
                f"{name} must be an integer >= {0 if name == 'knn_every' else 1}, got {value!r}"
            )
    settings["progress"] = progress_enabled(args) and settings["progress"]
    return settings


def _augment_recipe(value):
    """A preset name stays a name; inline JSON or a .json file becomes the recipe dict."""
    if not isinstance(value, str) or not (
        value.lstrip().startswith("{") or value.endswith(".json")
    ):
        return value
    try:
        return json.loads(value if value.lstrip().startswith("{") else Path(value).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(
            f"--augment {value!r}: expected a preset name, inline JSON or a JSON file ({error})"
        ) from None


def load_stream_spec(settings: dict, folder: Path, allow_entry_points=()):
    """The run's stream: an inline ``stream`` (from --config or a resumed checkpoint) names its files
    relative to ``folder`` (the config's folder, or the run folder); a ``spec`` file relative to its own."""
    from ..spec import StreamSpec

    if settings["stream"] is not None:
        return StreamSpec.from_dict(
            settings["stream"], folder=folder, allow_entry_points=allow_entry_points
        )
    return StreamSpec.load(settings["spec"], allow_entry_points=allow_entry_points)


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
    """One writer per run folder: a second ``fairgen train`` into the same ``--out`` is refused, naming
    the first (``steering.outputs.output_lock``; under torchrun, rank 0 holds it)."""
    import os
    from contextlib import nullcontext

    from steering.outputs import output_lock

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
    settings = resolve(args, base=state["run_dict"] if state else None)
    if state is not None and settings["total_steps"] < state["step"]:
        raise ValueError(
            f"--steps {settings['total_steps']} is below the {state['step']} steps this run already trained"
        )
    inline_from_config = (
        bool(args.config) and read_config_file(args.config).get("stream") is not None
    )
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
        # the checkpoint names the stream's files relative to OUT, where stream.json and its files are placed
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
            from steering.files import atomic_write_text

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
                "--supervised needs labels: this stream's generator is unconditional (every label 0); "
                "train SimCLR (--no-supervised), or steer with --method confirmed --keep-labeler so that "
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
                f"{resumed}trained {trainer.step - start} steps, now at step {trainer.step} of {config.total_steps}"
                f" on {world} process(es){last}; wrote {out / 'encoder.safetensors'} and {checkpoint}"
            )
    finally:
        if world > 1 and dist.is_initialized():
            dist.barrier()  # no rank tears the group down while another still talks to it
            dist.destroy_process_group()


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
            "--knn-every needs a class-conditional generator (its classes are the kNN labels), or a "
            "confirmed card with a keep labeler (its keep-labels are)"
        )
    batch = held_out.next_batch()
    images, labels = batch["views"][:, 0], batch["labels"]
    return KnnMonitor(images[:n], labels[:n], images[n:], labels[n:])

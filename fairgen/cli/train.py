"""``fairgen train``: train a contrastive encoder on a stream card."""

from __future__ import annotations

from pathlib import Path

from .common import add_command, add_device, add_seed


def add_parser(sub) -> None:
    p = add_command(sub, "train", "train a contrastive encoder on a stream card")
    p.add_argument("--spec", required=True, help="stream card (JSON)")
    p.add_argument("--out", default="run", help="folder for checkpoint.pt and encoder.safetensors")
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=256, help="global batch (anchors per step)")
    p.add_argument("--encoder", default="small_cnn", help="small_cnn, resnet18, resnet50")
    p.add_argument("--supervised", action="store_true", help="SupCon with the stream's class labels (default SimCLR)")
    p.add_argument("--lr", type=float, default=0.05, help="peak learning rate")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    add_seed(p)
    add_device(p)
    p.set_defaults(func=run)


def run(args) -> None:
    from ..contrastive import TrainConfig, Trainer
    from ..stream import Stream, StreamSpec

    spec = StreamSpec.load(args.spec)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(
        encoder=args.encoder, supervised=args.supervised, total_steps=args.steps, lr=args.lr,
        augment=None, checkpoint_dir=str(out), checkpoint_every=args.checkpoint_every, seed=args.seed,
        warmup_steps=min(10, args.steps),
    )
    checkpoint = out / "checkpoint.pt"
    trainer = Trainer.from_checkpoint(checkpoint, args.device) if args.resume and checkpoint.exists() else Trainer(config, args.device)
    stream = Stream(spec, args.batch_size, args.device, start_step=trainer.step)
    trainer.fit(stream)
    trainer.save_encoder(out / "encoder.safetensors")
    spec.save(out / "stream.json")  # with the files it names beside it, so the run folder is portable
    print(f"trained {trainer.step} steps; wrote {out / 'encoder.safetensors'} and {checkpoint}")

"""The recipe that trains the embedded generator from scratch (``fairgen zoo train``).

Resumable: every ``checkpoint_every`` steps the model, the Adam state and the step are written
(safetensors, atomically); calling again with the same output continues from there.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .generator import NAME, SpriteWorldGenerator
from .render import World


@dataclass
class RecipeConfig:
    """Everything that defines a training run (saved beside the weights)."""

    n_train: int = 20_000
    bias: float = 0.9
    target: str = "shape"
    protected: str = "texture"
    steps: int = 400
    batch_size: int = 128
    lr: float = 0.05
    seed: int = 0
    checkpoint_every: int = 50


def training_split(config: RecipeConfig):
    """The biased world split the embedded generator learns from (also used by audits)."""
    world = World(32, config.target, config.protected)
    return world.sample(config.n_train, seed=config.seed + 1, bias=config.bias)


def train_embedded(
    out: str | Path, config: RecipeConfig | None = None, progress: bool = True, max_steps: int | None = None
):
    """Train (or resume) the embedded generator; writes ``out`` (safetensors) and returns the model.

    ``max_steps`` stops this call early (after a checkpoint) so a long run can go in time-boxed
    pieces; ``out`` is written only once all ``config.steps`` are done.
    """
    config = config or RecipeConfig()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = out.with_suffix(".ckpt.safetensors")
    torch.manual_seed(config.seed)
    split = training_split(config)
    model = SpriteWorldGenerator(seed=config.seed)
    model.fit_prior(split.factors)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    start = _resume(checkpoint, model, optimizer, config) if checkpoint.exists() else 0
    rng = torch.Generator().manual_seed(config.seed + 2)
    for _ in range(start):  # replay the batch sampler so a resumed run sees the same batches
        torch.randint(len(split), (config.batch_size,), generator=rng)
    stop = config.steps if max_steps is None else min(config.steps, start + max_steps)
    bar = tqdm(range(start, stop), desc=f"training {NAME}", disable=not progress)
    for step in bar:
        index = torch.randint(len(split), (config.batch_size,), generator=rng)
        factors = {k: v[index] for k, v in split.factors.items()}
        loss = F.mse_loss(model.decode(factors), split.images[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix(mse=f"{loss.item():.2e}")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == stop:
            _checkpoint(checkpoint, model, optimizer, step + 1, config)
    model.eval().requires_grad_(False)
    if stop < config.steps:
        return model
    model.save(out, metadata={"recipe": asdict(config), "train_split_cramers_v": split.cramers_v()})
    return model


def _checkpoint(path: Path, model, optimizer, step: int, config: RecipeConfig) -> None:
    tensors = {f"model.{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    for i, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"adam.{i}.{key}"] = torch.as_tensor(value).clone()
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"step": str(step), "config": json.dumps(asdict(config))})
    os.replace(tmp, path)


def _resume(path: Path, model, optimizer, config: RecipeConfig) -> int:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata()
    if json.loads(meta["config"]) != asdict(config):
        raise ValueError(f"checkpoint {path} was written with another recipe; delete it or match the config")
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state = optimizer.state_dict()
    for i, _ in enumerate(state["param_groups"][0]["params"]):
        state["state"][i] = {
            key.split(".", 2)[2]: value for key, value in tensors.items() if key.startswith(f"adam.{i}.")
        }
    optimizer.load_state_dict(state)
    return int(meta["step"])

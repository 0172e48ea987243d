"""The recipe that trains the embedded generator from scratch (``fairgen zoo train``).

The prior is fitted from a biased training split in which each ``protected`` factor follows the
class (shape) with strength ``bias``; the decoder learns the split's images by MSE. Only the
categorical factors the prior reads from a code (texture, colour) can be protected; anything else
is refused before any work starts.

Resumable: every ``checkpoint_every`` steps the model, the Adam state and the step are written
(``save_safetensors``: atomic, so an interrupted write leaves the last good checkpoint and no
temporary file); calling again with the same output continues from there.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from plumbing.files import load_safetensors, read_safetensors_metadata, save_safetensors
from plumbing.tables import cramers_v
from plumbing.validation import check_int

from .generator import MODELLED, NAME, MappedSpriteGenerator
from .render import CATEGORICAL, CONTINUOUS, World, WorldSample

CLASS_FACTOR = "shape"  # the decoder has one sprite per shape: the class input is the shape


@dataclass
class RecipeConfig:
    """Everything that defines a training run (saved beside the weights)."""

    n_train: int = 20_000
    bias: float = 0.9
    target: str = CLASS_FACTOR
    protected: str | tuple[str, ...] = "texture"
    steps: int = 400
    batch_size: int = 128
    lr: float = 0.05
    seed: int = 0
    checkpoint_every: int = 50

    def __post_init__(self):
        protected = (self.protected,) if isinstance(self.protected, str) else tuple(self.protected)
        if self.target != CLASS_FACTOR:
            raise ValueError(
                f"target must be {CLASS_FACTOR!r}: the embedded generator's class input is the "
                "shape "
                f"(one learned sprite per shape), got {self.target!r}"
            )
        if not protected or len(set(protected)) != len(protected):
            raise ValueError(
                f"protected must name one or more distinct factors, got {self.protected!r}"
            )
        for name in protected:
            if name == CLASS_FACTOR:
                raise ValueError(f"protected {name!r} is the class itself; pick among {MODELLED}")
            if name in CONTINUOUS:
                raise ValueError(
                    f"protected {name!r} is a continuous factor; the recipe can tie only the "
                    "categorical factors "
                    f"{MODELLED} to the class (it models their class-conditional distribution)"
                )
            if name not in MODELLED:
                raise ValueError(f"protected must be among {MODELLED}, got {name!r}")
        if not 0.0 <= float(self.bias) <= 1.0:
            raise ValueError(f"bias must lie in [0, 1], got {self.bias!r}")
        for name in ("n_train", "steps", "batch_size", "checkpoint_every"):
            check_int(getattr(self, name), name, 1)
        self.protected = protected

    def to_dict(self) -> dict:
        return {**asdict(self), "protected": list(self.protected)}


def training_split(config: RecipeConfig) -> WorldSample:
    """The biased world split the embedded generator learns from (also used by audits and the demo).

    The first protected factor is tied by the world itself; each further one is tied to the class
    the same way (its own value with probability ``bias``, else uniform), independently.
    """
    first, *others = config.protected
    world = World(32, config.target, first)
    factors = world.sample_factors(config.n_train, seed=config.seed + 1, bias=config.bias)
    rng = torch.Generator().manual_seed(config.seed + 3)
    for name in others:
        factors = _tie(factors, config.target, name, config.bias, rng)
    return WorldSample(world.render(factors), factors, config.target, first, config.bias)


def split_cramers_v(split: WorldSample, protected: tuple[str, ...]) -> dict[str, float]:
    """V(class, protected) of a split, per protected factor."""
    return {
        name: cramers_v(split.factors[split.target].numpy(), split.factors[name].numpy())
        for name in protected
    }


def _tie(factors: dict, target: str, name: str, bias: float, rng: torch.Generator) -> dict:
    """Tie factor ``name`` to ``target``: its own value with probability ``bias``, else as drawn."""
    factors = dict(factors)
    n, k = len(factors[target]), len(CATEGORICAL[name])
    tied = torch.rand(n, generator=rng, dtype=torch.float64) < bias
    value = torch.where(tied, factors[target] % k, factors[name])
    if name == "colour":  # the hue keeps its offset inside the colour bin
        offset = factors["hue"] * k - factors["colour"]
        factors["hue"] = ((value + offset) / k).float()
    factors[name] = value
    return factors


def train_embedded(
    out: str | Path,
    config: RecipeConfig | None = None,
    progress: bool = True,
    max_steps: int | None = None,
) -> MappedSpriteGenerator:
    """Train (or resume) the embedded generator; writes ``out`` (safetensors) and returns the model.

    ``max_steps`` stops this call early (after a checkpoint) so a long run can go in time-boxed
    pieces; ``out`` is written only once all ``config.steps`` are done.
    """
    config = config or RecipeConfig()
    out = Path(out)
    checkpoint = out.with_suffix(".ckpt.safetensors")
    torch.manual_seed(config.seed)
    split = training_split(config)
    model = MappedSpriteGenerator(seed=config.seed)
    model.mapping.calibrate(seed=config.seed + 4)
    model.fit_prior(split.factors, config.protected)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
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
    model.save(
        out,
        metadata={
            "recipe": config.to_dict(),
            "train_split_cramers_v": split_cramers_v(split, config.protected),
        },
    )
    checkpoint.unlink(missing_ok=True)
    return model


def _checkpoint(path: Path, model, optimizer, step: int, config: RecipeConfig) -> None:
    tensors = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    for i, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"adam.{i}.{key}"] = torch.as_tensor(value).clone()
    save_safetensors(tensors, path, {"step": step, "config": config.to_dict()})


def _resume(path: Path, model, optimizer, config: RecipeConfig) -> int:
    meta = read_safetensors_metadata(path, "training checkpoint")
    if json.loads(json.dumps(meta.get("config"))) != config.to_dict():
        raise ValueError(
            f"checkpoint {path} was written with another recipe; delete it or match the config"
        )
    tensors = load_safetensors(path, "training checkpoint")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state = optimizer.state_dict()
    for i, _ in enumerate(state["param_groups"][0]["params"]):
        state["state"][i] = {
            key.split(".", 2)[2]: value
            for key, value in tensors.items()
            if key.startswith(f"adam.{i}.")
        }
    optimizer.load_state_dict(state)
    return int(meta["step"])

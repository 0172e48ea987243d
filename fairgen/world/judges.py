"""Judges: small CNN classifiers, one per categorical world factor, used as independent referees.

Later code labels generated images with them (``labeler("texture")``) to show that a generator
inherits a bias and that steering removes it. They are trained on balanced world images at 32 px
with label-preserving jitter (noise, blur, brightness, contrast, flips), so slightly blurry or
noisy generator output is still judged correctly; any other resolution is resized to 32 px inside.
The shipped weights live in ``fairgen/world/weights/judges.safetensors``; their JSON metadata
(values,
architecture, training recipe, measured held-out accuracy) sits in the safetensors header.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from safetensors import safe_open
from torch import nn

from plumbing.validation import check_images

from .render import CATEGORICAL, World, render, sample_factors

JUDGE_RESOLUTION = 32
WEIGHTS = Path(__file__).parent / "weights" / "judges.safetensors"
FORMAT = "fairgen-judges/1"
DEFAULT_FACTORS = ("shape", "texture", "colour")
DEFAULT_STEPS = 500
DEFAULT_BATCH_SIZE = 128
DEFAULT_WIDTHS = {"shape": 16, "texture": 8, "colour": 4}  # shape is the hardest to see
EVAL_CHUNK = 1024
EVAL_SEED = 20_240_601  # held out: training draws its factors from a generator seeded with `seed`


def _check_factor(factor: str, argument: str = "factor") -> None:
    if factor not in CATEGORICAL:
        raise ValueError(f"{argument} must be one of {sorted(CATEGORICAL)}, got {factor!r}")


def _check_images(images, argument: str = "images") -> None:
    check_images(images, argument)
    if min(images.shape[2:]) < 8:
        raise ValueError(f"{argument} must be at least 8x8 pixels, got {tuple(images.shape[2:])}")


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.ReLU())


class Judge(nn.Module):
    """A small CNN: images ``[N, 3, H, W]`` in [0, 1] -> logits ``[N, len(values)]``.

    ``predict`` is the labeler other code calls. Images that are not 32x32 are resized to 32x32
    (bilinear, antialiased) first, so one judge labels 32, 64 and 128 px images alike.
    """

    def __init__(self, factor: str, width: int | None = None):
        super().__init__()
        _check_factor(factor)
        width = DEFAULT_WIDTHS[factor] if width is None else width
        if not isinstance(width, int) or width <= 0:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        self.factor = factor
        self.values = tuple(CATEGORICAL[factor])
        self.width = width
        w = width
        self.features = nn.Sequential(
            _block(3, w),  # 32 px
            _block(w, 2 * w, stride=2), _block(2 * w, 2 * w),  # 16 px
            _block(2 * w, 4 * w, stride=2), _block(4 * w, 4 * w),  # 8 px
        )  # fmt: skip
        self.head = nn.Linear(4 * w, len(self.values))

    @property
    def config(self) -> dict:
        """What it takes to rebuild this judge (architecture parameters)."""
        return {"factor": self.factor, "values": list(self.values), "width": self.width}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images)
        x = to_judge_resolution(images.float())
        x = self.features(x * 2 - 1)
        return self.head(reduce(x, "n c h w -> n c", "mean"))

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Integer labels ``[N]`` (int64) on the images' device; the judge moves there if needed."""
        _check_images(images)
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        was_training = self.training
        self.eval().to(images.device)
        labels = [self(chunk).argmax(dim=1) for chunk in images.split(batch_size)]
        self.train(was_training)
        if not labels:
            return torch.empty(0, dtype=torch.int64, device=images.device)
        return torch.cat(labels)

    def __repr__(self) -> str:
        return f"Judge(factor={self.factor!r}, values={self.values}, width={self.width})"


def to_judge_resolution(images: torch.Tensor) -> torch.Tensor:
    """Resize ``[N, 3, H, W]`` images to the judges' 32x32 (antialiased); 32 px passes through."""
    if tuple(images.shape[2:]) == (JUDGE_RESOLUTION, JUDGE_RESOLUTION):
        return images
    size = (JUDGE_RESOLUTION, JUDGE_RESOLUTION)
    return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)


# ---------------------------------------------------------------- training


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Label-preserving jitter of a batch: flips, blur, brightness, contrast, pixel noise.

    Every change keeps shape, texture and hue bin: flips mirror the object and its background,
    a blend with a 3x3 blur softens edges as a generator would, and brightness/contrast act on
    all channels alike, so hue is unchanged. One draw per image, all on the images' device.
    """
    n, device = len(images), images.device

    def draw(*shape):
        return torch.rand(n, *shape, generator=generator, device="cpu").to(device)

    flip_x, flip_y = draw(1, 1, 1) < 0.5, draw(1, 1, 1) < 0.5
    x = torch.where(flip_x, images.flip(3), images)
    x = torch.where(flip_y, x.flip(2), x)
    kernel = torch.tensor([1.0, 2.0, 1.0], device=device) / 4
    kernel = rearrange(torch.outer(kernel, kernel), "h w -> 1 1 h w").expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    x = torch.lerp(x, blurred, draw(1, 1, 1))
    mean = reduce(x, "n c h w -> n 1 1 1", "mean")
    x = (x - mean) * (0.85 + 0.3 * draw(1, 1, 1)) + mean + 0.16 * (draw(1, 1, 1) - 0.5)
    noise = torch.randn(x.shape, generator=generator, device="cpu").to(device)
    x = x + 0.05 * draw(1, 1, 1) * noise
    return x.clamp(0, 1)


def train_judges(
    factors: Iterable[str] = DEFAULT_FACTORS,
    steps: int = DEFAULT_STEPS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    widths: dict[str, int] | None = None,
    lr: float = 3e-3,
) -> dict[str, Judge]:
    """Train one judge per factor from scratch on fresh balanced 32 px world images each step.

    All judges see the same rendered (and augmented) batch, so rendering is paid once. The run is
    reproducible for a given seed, device and thread count. Returns judges in eval mode.
    """
    from tqdm.auto import tqdm

    factors = tuple(factors)
    if not factors:
        raise ValueError("factors must name at least one categorical factor")
    for factor in factors:
        _check_factor(factor, "factors")
    if len(set(factors)) != len(factors):
        raise ValueError(f"factors must not repeat, got {factors}")
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    device = torch.device(device)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        judges = {
            factor: Judge(factor, (widths or {}).get(factor)).to(device) for factor in factors
        }
    params = [p for judge in judges.values() for p in judge.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=0.15
    )
    world_rng = torch.Generator().manual_seed(seed)
    augment_rng = torch.Generator().manual_seed(seed + 1)

    bar = tqdm(range(steps), desc="training judges", disable=not progress)
    for _ in bar:
        batch = sample_factors(batch_size, world_rng)
        images = augment(render(batch, JUDGE_RESOLUTION, device), augment_rng)
        losses = {f: F.cross_entropy(judges[f](images), batch[f].to(device)) for f in factors}
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
        schedule.step()
        bar.set_postfix({f: f"{loss.item():.3f}" for f, loss in losses.items()})

    for judge in judges.values():
        judge.eval()
        judge.training_recipe = {
            "seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device),
            "optimizer": "AdamW + one-cycle", "resolution": JUDGE_RESOLUTION,
            "data": "fresh balanced world images (bias=0) every step",
            "augment": "flips, 3x3 blur blend, contrast 0.85-1.15, brightness +-0.08, noise sd <= "
                       "0.05",
        }  # fmt: skip
    return judges


# ---------------------------------------------------------------- evaluation


def evaluate_judges(
    judges: dict[str, Judge],
    n: int = 10_000,
    seed: int = EVAL_SEED,
    resolution: int = JUDGE_RESOLUTION,
    device: str | torch.device = "cpu",
):
    """Accuracy and balanced accuracy of each judge on a fresh balanced world sample (a
    DataFrame)."""
    import pandas as pd

    if not isinstance(judges, dict) or not judges:
        raise ValueError("judges must be a non-empty dict factor -> Judge")
    if not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    for factor in judges:
        _check_factor(factor, "judges")
    world = World(resolution)
    factors = world.sample_factors(n, seed=seed, bias=0.0)
    predicted = {factor: [] for factor in judges}
    for start in range(0, n, EVAL_CHUNK):  # render in chunks: bounds memory at 128 px
        images = world.render(
            {k: v[start : start + EVAL_CHUNK] for k, v in factors.items()}, device
        )
        for factor, judge in judges.items():
            predicted[factor].append(judge.predict(images).cpu())
    rows = []
    for factor in judges:
        truth, guess = factors[factor], torch.cat(predicted[factor])
        recalls = [(guess[truth == k] == k).float().mean().item() for k in truth.unique()]
        rows.append({
            "factor": factor,
            "accuracy": (guess == truth).float().mean().item(),
            "balanced_accuracy": sum(recalls) / len(recalls),
            "n": n,
            "resolution": resolution,
        })  # fmt: skip
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- saving and loading


def save_judges(
    judges: dict[str, Judge], path: str | os.PathLike = WEIGHTS, evaluation=None
) -> Path:
    """Write judges to one safetensors file; metadata (JSON) goes in its header.

    ``evaluation`` (a DataFrame from ``evaluate_judges``, or several concatenated) is recorded
    as the measured held-out accuracy.
    """
    if not isinstance(judges, dict) or not judges:
        raise ValueError("judges must be a non-empty dict factor -> Judge")
    tensors, meta = {}, {}
    for factor, judge in judges.items():
        if not isinstance(judge, Judge) or judge.factor != factor:
            raise ValueError(f"judges[{factor!r}] must be a Judge for factor {factor!r}")
        for key, value in judge.state_dict().items():
            tensors[f"{factor}.{key}"] = value.detach().cpu().contiguous()
        meta[factor] = {**judge.config, "training": getattr(judge, "training_recipe", None)}
    header = {"format": FORMAT, "resolution": JUDGE_RESOLUTION, "judges": meta}
    if evaluation is not None:
        header["evaluation"] = evaluation.to_dict(orient="records")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save

    from plumbing.files import atomic_write_bytes

    atomic_write_bytes(
        path, save(tensors, metadata={"fairgen": json.dumps(header)})
    )  # new file, renamed into place
    return path


def judges_metadata(path: str | os.PathLike = WEIGHTS) -> dict:
    """The JSON metadata stored in a judges file (factors, values, recipe, measured accuracy)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no judges file at {path}; train one with `fairgen judges train`")
    with safe_open(str(path), framework="pt") as handle:
        raw = (handle.metadata() or {}).get("fairgen")
    if raw is None:
        raise ValueError(f"path {path} is not a fairgen judges file (no 'fairgen' metadata)")
    header = json.loads(raw)
    if header.get("format") != FORMAT:
        raise ValueError(f"path {path} has format {header.get('format')!r}, expected {FORMAT!r}")
    return header


def load_judges(
    device: str | torch.device = "cpu", path: str | os.PathLike = WEIGHTS
) -> dict[str, Judge]:
    """Load every judge in a judges file (the shipped one by default), in eval mode on
    ``device``."""
    header = judges_metadata(path)
    judges = {}
    with safe_open(str(path), framework="pt") as handle:
        for factor, meta in header["judges"].items():
            judge = Judge(factor, int(meta["width"]))
            if list(judge.values) != meta["values"]:
                raise ValueError(
                    f"judge {factor!r} in {path} has values {meta['values']}, expected "
                    f"{list(judge.values)}"
                )
            prefix = f"{factor}."
            state = {
                k[len(prefix) :]: handle.get_tensor(k)
                for k in handle.keys()
                if k.startswith(prefix)
            }
            judge.load_state_dict(state)
            judge.training_recipe = meta.get("training")
            judges[factor] = judge.to(device).eval()
    return judges


def load_judge(
    factor: str, device: str | torch.device = "cpu", path: str | os.PathLike = WEIGHTS
) -> Judge:
    """Load the judge for one factor."""
    _check_factor(factor)
    judges = load_judges(device, path)
    if factor not in judges:
        raise ValueError(f"factor {factor!r} has no judge in {path}; it holds {sorted(judges)}")
    return judges[factor]


def labeler(
    factor: str, device: str | torch.device = "cpu", path: str | os.PathLike = WEIGHTS
) -> Callable:
    """A plain callable ``images -> int64 labels [N]`` backed by the shipped judge for
    ``factor``."""
    judge = load_judge(factor, device, path)

    def label(images: torch.Tensor) -> torch.Tensor:
        return judge.predict(images)

    label.__doc__ = f"Judge labels for world factor {factor!r}: {', '.join(judge.values)}."
    return label


# ---------------------------------------------------------------- command-line entry points


def train_main(
    steps: int = DEFAULT_STEPS, seed: int = 0, out: str | os.PathLike = WEIGHTS, device="cpu"
):
    """`fairgen judges train`: train from scratch, print held-out accuracy at 32/64/128 px, save."""
    judges = train_judges(steps=steps, seed=seed, device=device)
    table = _evaluate_resolutions(judges, n=10_000, seed=EVAL_SEED, device=device)
    print(table.to_string(index=False))
    path = save_judges(judges, out, evaluation=table)
    print(f"saved judges to {path}")
    return table


def eval_main(
    n: int = 10_000, seed: int = EVAL_SEED, device="cpu", path: str | os.PathLike = WEIGHTS
):
    """`fairgen judges eval`: held-out accuracy of the shipped judges at 32, 64 and 128 px."""
    judges = load_judges(device, path)
    table = _evaluate_resolutions(judges, n=n, seed=seed, device=device)
    print(table.to_string(index=False))
    return table


def _evaluate_resolutions(judges, n, seed, device, resolutions=(32, 64, 128)):
    import pandas as pd

    tables = [evaluate_judges(judges, n, seed, resolution, device) for resolution in resolutions]
    return pd.concat(tables, ignore_index=True)


__all__ = [
    "Judge",
    "augment",
    "eval_main",
    "evaluate_judges",
    "judges_metadata",
    "labeler",
    "load_judge",
    "load_judges",
    "save_judges",
    "to_judge_resolution",
    "train_judges",
    "train_main",
]

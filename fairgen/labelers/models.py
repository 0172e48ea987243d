"""Labelers built from image models with local weights, described by a small JSON file.

Classifier (torchvision or timm), its classes mapped to protected values::

    {"kind": "classifier", "library": "torchvision", "arch": "resnet18", "weights": "resnet18.pth",
     "num_classes": 1000, "image_size": 224, "values": ["dog", "cat"],
     "classes": {"dog": [151, 152], "cat": [281, 282]}}

An image gets the value whose classes hold the most probability. CLIP zero-shot (open_clip), one
prompt per value::

    {"kind": "clip", "arch": "ViT-B-32", "weights": "clip.safetensors",
     "values": ["man", "woman"], "prompts": ["a photo of a man", "a photo of a woman"]}

File names inside are relative to the JSON and must stay inside its folder; the labeler's
provenance records the JSON's SHA-256. Every key is documented in docs/plugin-files.md with a JSON
Schema (docs/schemas/labeler.schema.json); an unknown key is refused with the closest known one.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from plumbing.validation import check_int

from .base import Labeler

COMMON_KEYS = ("$schema", "kind", "values", "weights")
KEYS = {  # every key a labeler.json of each kind may hold
    "classifier": (*COMMON_KEYS, "library", "arch", "num_classes", "image_size", "classes"),
    "clip": (*COMMON_KEYS, "arch", "prompts", "model_config"),
}


def load_model_labeler(path: Path, device="cpu") -> Labeler:
    from plumbing.files import read_card, resolve_inside, sha256_file

    config, _ = read_card(
        path, "labeler config", ("classifier", "clip"), kind_key="kind", tensors=False
    )
    values = config.get("values")
    if not isinstance(values, list) or len(values) < 2:
        raise ValueError(f"labeler config {path}: 'values' must list at least two protected values")
    from ..keys import refuse_unknown_keys

    refuse_unknown_keys(config, KEYS[config["kind"]], f"{config['kind']} labeler", str(path))

    def local(key, required=True):
        name = config.get(key)
        if name is None and not required:
            return None
        return resolve_inside(path.parent, name, f"labeler config {path.name}: {key!r}")

    if config["kind"] == "classifier":
        fn = _classifier_fn(config, values, local("weights"), path, device)
    else:
        fn = _clip_fn(
            config, values, local("weights"), local("model_config", required=False), path, device
        )
    return Labeler(fn, str(path), values=values, sha256=sha256_file(path))


def _classifier_fn(config, values, weights, path, device):
    from ..models import load_image_model

    mapping = config.get("classes")
    if not isinstance(mapping, dict) or sorted(mapping) != sorted(map(str, values)):
        raise ValueError(
            f"labeler config {path}: 'classes' must map every value in 'values' to a list of class "
            "indices"
        )
    for key, high in (("num_classes", 100_000), ("image_size", 4096)):
        if config.get(key) is not None:
            check_int(config[key], f"labeler config {path}: {key!r}", 1, high)
    model = load_image_model(
        config.get("library", "torchvision"),
        config.get("arch", ""),
        weights,
        num_classes=config.get("num_classes"),
        image_size=config.get("image_size", 224),
        device=device,
    )
    groups = [torch.as_tensor(mapping[str(v)], dtype=torch.int64) for v in values]

    def label(images: torch.Tensor) -> torch.Tensor:
        probs = model(images.to(next(model.parameters()).device)).softmax(dim=1)
        if any(int(g.max()) >= probs.shape[1] for g in groups):
            raise ValueError(
                f"labeler config {path}: a class index in 'classes' exceeds the model's "
                f"{probs.shape[1]} classes"
            )
        return torch.stack([probs[:, g.to(probs.device)].sum(dim=1) for g in groups], dim=1).argmax(
            dim=1
        )

    return label


def _clip_fn(config, values, weights, model_config, path, device):
    from ..models import load_clip

    prompts = config.get("prompts")
    if not isinstance(prompts, list) or len(prompts) != len(values):
        raise ValueError(
            f"labeler config {path}: 'prompts' must give one prompt per value ({len(values)})"
        )
    model, tokenizer = load_clip(config.get("arch", ""), weights, model_config, device)
    with torch.no_grad():
        text = F.normalize(model.encode_text(tokenizer(prompts).to(device)), dim=-1)
    visual = model.visual
    size = visual.image_size if isinstance(visual.image_size, int) else visual.image_size[0]
    mean = torch.tensor(
        getattr(visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
    ).view(1, 3, 1, 1)
    std = torch.tensor(
        getattr(visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)
    ).view(1, 3, 1, 1)

    def label(images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(
            images.to(device),
            size=(size, size),
            mode="bicubic",
            antialias=True,
            align_corners=False,
        )
        x = (x.clamp(0, 1) - mean.to(device)) / std.to(device)
        features = F.normalize(model.encode_image(x), dim=-1)
        return (features @ text.T).argmax(dim=1)

    return label

"""Image models from LOCAL weights: torchvision / timm classifiers and encoders, open_clip CLIP.

Nothing is downloaded: the architecture is built with random weights and a file the user has is
loaded into it strictly (safetensors, or a state dict read with ``torch.load(weights_only=True)``).
``ImageModel`` takes fairgen images (``[N, 3, H, W]`` in [0, 1]) and does the model's own
resizing and normalisation, so labelers and audit encoders share one input contract.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

LIBRARIES = ("torchvision", "timm")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_state_file(path, what: str) -> dict:
    """A state dict from safetensors or a weights-only torch file, with a clear error naming it."""
    from plumbing.files import load_safetensors

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if path.suffix == ".safetensors":
        return load_safetensors(path, what)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors come in several types
        raise ValueError(
            f"{what} {path} is not a state dict loadable with weights_only=True ({error})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{what} {path} must hold a state dict, got {type(state).__name__}")
    return state


def load_into(
    model: nn.Module, state: dict, path, what: str, dropped_head: str | None = None
) -> nn.Module:
    """Load ``state`` strictly (only the keys of a ``dropped_head`` may be left over); a mismatch
    is a
    ValueError naming the file and the keys."""
    if dropped_head:
        state = {k: v for k, v in state.items() if not k.startswith(dropped_head + ".")}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise ValueError(
            f"{what} {path} does not fit the model: {str(error).splitlines()[0]}"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{what} {path} does not fit the model: missing keys {result.missing_keys[:5]}, "
            f"unexpected keys {result.unexpected_keys[:5]}"
        )
    return model


def build_classifier(library: str, arch: str, num_classes: int | None = None) -> nn.Module:
    """An untrained ``arch`` from ``library`` (a clear error for an unknown library or name)."""
    if library == "torchvision":
        import torchvision

        known = torchvision.models.list_models()
        _check_name(arch, known, library)
        return torchvision.models.get_model(
            arch, weights=None, **({"num_classes": num_classes} if num_classes else {})
        )
    if library == "timm":
        try:
            import timm
        except ImportError:
            raise ValueError(
                "timm models need the optional package timm: pip install 'fairgen[models]'"
            ) from None
        _check_name(arch, timm.list_models(), library)
        return timm.create_model(
            arch, pretrained=False, **({"num_classes": num_classes} if num_classes else {})
        )
    raise ValueError(f"library must be one of {LIBRARIES}, got {library!r}")


def _check_name(arch: str, known: list[str], library: str) -> None:
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=5)
        hint = f"; close names: {', '.join(close)}" if close else ""
        raise ValueError(f"unknown {library} model {arch!r}{hint}")


def strip_head(model: nn.Module) -> str:
    """Replace the final classification layer with Identity (the model then returns features);
    returns the removed layer's state-dict prefix."""
    if hasattr(model, "reset_classifier"):  # timm
        name = (
            model.pretrained_cfg.get("classifier", "fc")
            if hasattr(model, "pretrained_cfg")
            else "fc"
        )
        model.reset_classifier(0)
        return name
    for attribute in ("fc", "head", "heads", "classifier"):
        layer = getattr(model, attribute, None)
        if isinstance(layer, nn.Linear):
            setattr(model, attribute, nn.Identity())
            return attribute
        if isinstance(layer, nn.Sequential):
            last = [i for i, m in enumerate(layer) if isinstance(m, nn.Linear)]
            if last:
                layer[last[-1]] = nn.Identity()
                return f"{attribute}.{last[-1]}"
    raise ValueError(
        f"cannot find the classification layer of {type(model).__name__} to turn it into an encoder"
    )


class ImageModel(nn.Module):
    """``net`` behind the fairgen image contract: resize to ``image_size``, normalise, forward."""

    def __init__(self, net: nn.Module, image_size: int = 224, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.net, self.image_size = net, int(image_size)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            images = F.interpolate(
                images,
                size=(self.image_size, self.image_size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
        return self.net((images - self.mean) / self.std)


def load_image_model(
    library: str,
    arch: str,
    weights,
    *,
    num_classes: int | None = None,
    features: bool = False,
    image_size: int = 224,
    device="cpu",
) -> ImageModel:
    """``arch`` from ``library`` with the local ``weights`` file; ``features=True`` drops its
    head."""
    net = build_classifier(library, arch, num_classes)
    head = (
        strip_head(net) if features else None
    )  # an encoder keeps the backbone: any head size fits
    if weights is not None:
        load_into(
            net, load_state_file(weights, f"{library} weights"), weights, f"{library} weights", head
        )
    return ImageModel(net, image_size).to(device).eval()


def load_encoder_by_name(spec: str, weights=None, image_size: int = 224, device="cpu") -> nn.Module:
    """An audit encoder: ``torchvision:ARCH`` or ``timm:ARCH`` with local ``weights`` (features
    out)."""
    library, _, arch = spec.partition(":")
    if library not in LIBRARIES or not arch:
        raise ValueError(
            "encoder: expected a fairgen encoder file or torchvision:ARCH / timm:ARCH, got "
            f"{spec!r}"
        )
    return load_image_model(
        library, arch, weights, features=True, image_size=image_size, device=device
    )


def load_clip(arch: str, weights, model_config=None, device="cpu"):
    """An open_clip model and its tokenizer from local files; ``model_config`` registers a custom
    JSON config."""
    try:
        import open_clip
    except ImportError:
        raise ValueError(
            "CLIP labelers need the optional package open_clip_torch: pip install 'fairgen[models]'"
        ) from None
    if model_config is not None:
        open_clip.add_model_config(str(model_config))
    if open_clip.get_model_config(arch) is None:
        close = difflib.get_close_matches(arch, open_clip.list_models(), n=5)
        raise ValueError(
            f"unknown open_clip model {arch!r}"
            + (f"; close names: {', '.join(close)}" if close else "")
        )
    model = open_clip.create_model(arch, pretrained=None, device="cpu")
    if weights is not None:
        load_into(model, load_state_file(weights, "CLIP weights"), weights, "CLIP weights")
    return model.to(device).eval(), open_clip.get_tokenizer(arch)

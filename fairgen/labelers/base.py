"""The labeler contract, checked at our boundary: images in [0, 1] -> int64 labels [N]."""

from __future__ import annotations

import torch


def check_labels(out, n: int, name: str) -> torch.Tensor:
    """``out`` as int64 labels [n]; scores [n, k] become their argmax; anything else is a ValueError."""
    try:
        labels = torch.as_tensor(out)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"labeler {name!r} returned {type(out).__name__}, expected a tensor of {n} integer labels"
        ) from None
    if (
        labels.ndim == 2
        and labels.shape[0] == n
        and labels.shape[1] > 1
        and labels.is_floating_point()
    ):
        labels = labels.argmax(dim=1)
    if labels.shape != (n,):
        raise ValueError(
            f"labeler {name!r} returned shape {list(labels.shape)} for {n} images; "
            f"expected [{n}] integer labels (or [{n}, k] scores)"
        )
    if labels.is_floating_point():
        if not torch.isfinite(labels).all() or not torch.equal(labels, labels.round()):
            raise ValueError(
                f"labeler {name!r} returned non-integer values; expected integer labels"
            )
    elif labels.dtype == torch.bool or labels.is_complex():
        raise ValueError(f"labeler {name!r} returned dtype {labels.dtype}; expected integer labels")
    labels = labels.to(torch.int64)
    if n and int(labels.min()) < 0:
        raise ValueError(f"labeler {name!r} returned negative labels; expected values 0..k-1")
    return labels


class Labeler:
    """A named labeling function with the contract enforced on every call.

    ``name`` is what provenance records (``world:texture``, ``pkg.mod:fn``, ``labeler.json``);
    ``values`` optionally names the labels 0..k-1; ``sha256`` pins a config/weights file.
    """

    def __init__(self, fn, name: str, values: list | None = None, sha256: str | None = None):
        if not callable(fn):
            raise ValueError(f"labeler {name!r} is a {type(fn).__name__}, not a callable")
        self.fn, self.name, self.values, self.sha256 = fn, name, values, sha256

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return check_labels(self.fn(images), len(images), self.name).to(images.device)

    __call__ = predict

    def provenance(self) -> dict:
        out = {"name": self.name}
        if self.values is not None:
            out["values"] = list(self.values)
        if self.sha256:
            out["sha256"] = self.sha256
        return out

    def __repr__(self) -> str:
        return f"Labeler({self.name!r})"

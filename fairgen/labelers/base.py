"""The labeler contract, checked at our boundary: images in [0, 1] -> int64 labels [N]."""

from __future__ import annotations

import torch

from plumbing.validation import check_labeler_output


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
        return check_labeler_output(self.fn(images), len(images), self.name).to(images.device)

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

"""World labelers that err by a known amount, so that error correction is measured against truth.

Named ``world:<factor>~<kind>`` (the ``world:`` scheme, ``labeler.py``):

* ``~sym<NN>`` (e.g. ``world:texture~sym85``): the exact judge's value, kept with probability
  NN% and otherwise replaced by one of the other values, uniformly (a symmetric confusion).
* ``~asym<NN>`` (e.g. ``world:texture~asym85``): right with probability NN% too, but a wrong
  answer about a value that is not the one the world's bias ties to the image's shape (shape index
  mod the number of values) is always that tied value: minority images are read as the class's
  majority, the stereotype error of a labeler trained on biased data. The tied value's own errors
  spread uniformly. Every row of the confusion has accuracy NN%, so its accuracy is NN% on any mix.
* ``~weak``: a judge trained from scratch on 480 world images (30 steps of 16; the judges'
  training code), its accuracy measured on 2,000 balanced world images when it is built
  (``labeler.accuracy``), not assumed.

The confusion labelers draw their error per image from a hash of the image itself (32 px, 8-bit):
the same image always gets the same label, on any call. Their ``scores(images)`` are the posterior
of the true value given the label under a uniform prior (the column of the confusion, normalised):
calibrated on balanced world images, and their argmax is the label.
"""

from __future__ import annotations

import re

import torch

from ..labelers import Labeler
from .render import CATEGORICAL

WEAK_RECIPE = {"steps": 30, "batch_size": 16, "lr": 1e-3, "seed": 3, "width": 4}
WEAK_EVAL_N = 2000
HASH_PRIME = (1 << 31) - 1
KINDS = re.compile(r"^(sym|asym)(\d{2})$")

_weak_cache: dict = {}


def confusion(kind: str, accuracy: float, k: int, tied: int | None = None) -> torch.Tensor:
    """Rows: true value, columns: labeler output. ``tied``: the value asymmetric errors go to."""
    if not 1.0 / k < accuracy <= 1.0:
        raise ValueError(f"accuracy must lie in ({1 / k:.3f}, 1], got {accuracy!r}")
    wrong = (1.0 - accuracy) / (k - 1)
    table = torch.full((k, k), wrong, dtype=torch.float64)
    table.fill_diagonal_(accuracy)
    if kind == "asym":
        if tied is None:
            raise ValueError("an asymmetric confusion needs the tied value")
        for t in range(k):
            if t != tied:
                table[t] = 0.0
                table[t, t], table[t, tied] = accuracy, 1.0 - accuracy
    return table


def image_uniforms(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """One number in [0, 1) per image, a fixed function of its 32 px 8-bit pixels (and ``seed``)."""
    from .judges import to_judge_resolution

    pixels = (to_judge_resolution(images.float()).clamp(0, 1) * 255).round().long().flatten(1)
    rng = torch.Generator().manual_seed(0x5EED + seed)
    weights = torch.randint(1, HASH_PRIME, (pixels.shape[1],), generator=rng)
    h = (pixels.cpu() * weights).sum(1) % HASH_PRIME  # < 2^51 before the modulus: no overflow
    h = (h * 48271) % HASH_PRIME  # one Lehmer step spreads nearby sums
    return h.double() / HASH_PRIME


class ConfusedJudge:
    """The exact judge of ``factor`` seen through a set confusion (``kind``: sym / asym)."""

    def __init__(self, factor: str, kind: str, accuracy: float, device="cpu", seed: int = 0):
        from .judges import load_judges

        judges = load_judges(device=device)
        self.judge, self.shape_judge = judges[factor], judges.get("shape")
        self.factor, self.kind, self.accuracy, self.seed = factor, kind, accuracy, seed
        self.k = len(CATEGORICAL[factor])

    def confusions(self, images: torch.Tensor) -> torch.Tensor:
        """The confusion that applies to each image ``[N, k, k]`` (asym: it depends on the
        shape)."""
        n = len(images)
        if self.kind == "sym":
            return confusion("sym", self.accuracy, self.k).expand(n, self.k, self.k)
        shapes = self.shape_judge.predict(images).cpu()
        tables = torch.stack([
            confusion("asym", self.accuracy, self.k, tied=t % self.k) for t in range(self.k)
        ])  # fmt: skip
        return tables[shapes % self.k]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        truth = self.judge.predict(images).cpu()
        rows = self.confusions(images)[torch.arange(len(images)), truth]
        u = image_uniforms(images, self.seed)
        out = (
            torch.searchsorted(rows.cumsum(1), u[:, None], right=True)
            .squeeze(1)
            .clamp(max=self.k - 1)
        )
        return out.to(images.device)

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """Posterior of the true value given the label, uniform prior: ``[N, k]`` float32."""
        labels = self(images).cpu()
        columns = self.confusions(images)[torch.arange(len(images)), :, labels]
        return (columns / columns.sum(1, keepdim=True)).float().to(images.device)


def weak_judge(factor: str, device="cpu"):
    """A judge trained on 480 images (``WEAK_RECIPE``) and its accuracy on balanced world images."""
    from .judges import evaluate_judges, train_judges

    key = (factor, str(device))
    if key not in _weak_cache:
        r = WEAK_RECIPE
        judges = train_judges(
            (factor,), steps=r["steps"], batch_size=r["batch_size"], seed=r["seed"],
            device=device, progress=False, widths={factor: r["width"]}, lr=r["lr"],
        )  # fmt: skip
        accuracy = float(evaluate_judges(judges, n=WEAK_EVAL_N, device=device).accuracy[0])
        _weak_cache[key] = (judges[factor], accuracy)
    return _weak_cache[key]


def noisy_labeler(factor: str, kind: str, device="cpu") -> Labeler:
    """The labeler ``world:<factor>~<kind>``, with ``accuracy`` (nominal or measured) attached."""
    values = list(CATEGORICAL[factor])
    name = f"world:{factor}~{kind}"
    if kind == "weak":
        judge, accuracy = weak_judge(factor, device)
        labeler = Labeler(judge.predict, name, values=values)

        @torch.no_grad()
        def scores(images):
            return torch.softmax(judge.eval()(images), dim=1)

        labeler.scores = scores
        labeler.accuracy = accuracy
        return labeler
    match = KINDS.match(kind)
    if match is None:
        raise ValueError(
            f"labeler: world:{factor}~{kind} names no world labeler; the kinds are sym<NN> and "
            "asym<NN> (NN: accuracy in percent, e.g. sym85) and weak"
        )
    accuracy = int(match.group(2)) / 100
    if accuracy <= 1 / len(values):
        raise ValueError(
            f"labeler: world:{factor}~{kind} has accuracy {accuracy:.2f}, not above chance "
            f"({1 / len(values):.2f} for {len(values)} values)"
        )
    judge = ConfusedJudge(factor, match.group(1), accuracy, device)
    labeler = Labeler(judge, name, values=values)
    labeler.scores, labeler.accuracy = judge.scores, accuracy
    return labeler


__all__ = ["ConfusedJudge", "confusion", "image_uniforms", "noisy_labeler", "weak_judge"]

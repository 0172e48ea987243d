"""Walk fidelity on the embedded world: does a walk change the factor it should, by the alpha asked?

The world draws one saturated object on a grey background, so the object is readable from any
world generator's pixels: a soft mask from the saturation (max - min channel) gives its area,
centroid and mean chroma angle (the angle about RGB's grey axis, the one the ``hue`` edit rotates).
For each walk, over ``n`` anchors with a uniform alpha in the walk's range, the achieved change is
regressed on alpha (slope, R^2), in the edit's own units:

* ``zoom``: log2 of the change of sqrt(object area); ``shift_x`` / ``shift_y``: centroid change in
  image sides; ``hue``: chroma-angle change in turns; ``brightness``: mean pixel change;
* ``rotate``: image moments cannot see the rotation of these near-symmetric shapes, so only the
  generator's own factors (``factors_from_latents``, where it exposes them) measure it.

The same measurement on the target edit itself (``edit_slope``, ``edit_r2``) calibrates it (ideal
1 and 1, less where the edit clips). Where the generator exposes its factors, ``factor_slope`` /
``factor_r2`` repeat the regression on them. The judges say how often a walk keeps the class and
the texture (``class_kept``, ``texture_kept``), and ``fairgen.walks.fidelity`` adds the image error.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from ..walks.edits import apply_edit
from ..walks.fidelity import draw_walk_batch, image_fidelity
from .judges import load_judges

MEASURED = {
    "zoom": "log2 object scale",
    "shift_x": "object x (image sides)",
    "shift_y": "object y (image sides)",
    "hue": "object chroma angle (turns)",
    "brightness": "mean pixel value",
    "rotate": "object rotation (rad)",
}
_FACTOR = {"zoom": "size", "shift_x": "x", "shift_y": "y", "rotate": "rotation", "hue": "hue"}


def is_world_generator(generator) -> bool:
    """Does ``generator`` draw the embedded world (so that its objects can be measured)? Named
    ``world-...``."""
    return str(getattr(generator, "name", "")).startswith("world-")


def object_moments(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image: sqrt of the object's area share, centroid (x right, y down, image sides), chroma
    angle, mean."""
    n, _, h, w = images.shape
    sat = images.amax(dim=1) - images.amin(dim=1)
    mask = ((sat - 0.2) / 0.3).clamp(0, 1)  # background grey ~0, objects ~0.8
    area = mask.sum(dim=(1, 2))
    rows = (torch.arange(h, dtype=images.dtype, device=images.device) + 0.5) / h
    cols = (torch.arange(w, dtype=images.dtype, device=images.device) + 0.5) / w
    x = (mask * cols).sum(dim=(1, 2)) / area
    y = (mask * rows[:, None]).sum(dim=(1, 2)) / area
    r, g, b = images.unbind(dim=1)
    chroma_a, chroma_b = (
        ((2 * r - g - b) * mask).sum(dim=(1, 2)),
        (math.sqrt(3) * (g - b) * mask).sum(dim=(1, 2)),
    )
    return {
        "scale": torch.sqrt(area / (h * w)),
        "x": x,
        "y": y,
        "angle": torch.atan2(chroma_b, chroma_a),
        "mean": images.mean(dim=(1, 2, 3)),
    }


def _wrap(delta: torch.Tensor, period: float) -> torch.Tensor:
    return torch.remainder(delta + period / 2, period) - period / 2


def _achieved(transformation: str, before: dict, after: dict) -> torch.Tensor:
    if transformation == "zoom":
        return torch.log2(after["scale"] / before["scale"])
    if transformation == "shift_x":
        return after["x"] - before["x"]
    if transformation == "shift_y":
        return after["y"] - before["y"]
    if transformation == "hue":
        return _wrap(after["angle"] - before["angle"], 2 * math.pi) / (2 * math.pi)
    if transformation == "brightness":
        return after["mean"] - before["mean"]
    return torch.full_like(before["x"], float("nan"))  # rotate: not visible in moments


def _factor_change(transformation, before, after):
    name = _FACTOR.get(transformation)
    if name is None:
        return None
    if transformation == "zoom":
        return torch.log2(after[name] / before[name])
    if transformation == "rotate":
        return _wrap(after[name] - before[name], 2 * math.pi)
    if transformation == "hue":
        return _wrap(after[name] - before[name], 1.0)
    return after[name] - before[name]


def fit_line(alpha, achieved) -> tuple[float, float, float]:
    """``(slope, intercept, R^2)`` of achieved on alpha, over the finite pairs (NaN if under 3)."""
    alpha, achieved = np.asarray(alpha, dtype=np.float64), np.asarray(achieved, dtype=np.float64)
    keep = np.isfinite(alpha) & np.isfinite(achieved)
    if keep.sum() < 3 or np.ptp(alpha[keep]) == 0:
        return math.nan, math.nan, math.nan
    slope, intercept = np.polyfit(alpha[keep], achieved[keep], 1)
    residual = achieved[keep] - (slope * alpha[keep] + intercept)
    total = ((achieved[keep] - achieved[keep].mean()) ** 2).sum()
    return (
        float(slope),
        float(intercept),
        float(1 - (residual**2).sum() / total) if total > 0 else math.nan,
    )


@torch.no_grad()
def walk_fidelity(
    generator, walks, n: int = 1000, seed: int = 0, batch_size: int = 250
) -> pd.DataFrame:
    """One row per walk: what was measured, slope / intercept / R^2 of achieved on requested alpha,
    the same on the target edit and on the generator's factors, judged class / texture kept, image
    error."""
    judges = load_judges(device=generator.device)
    has_factors = callable(getattr(generator, "factors_from_latents", None))
    errors = image_fidelity(generator, walks, n=n, seed=seed, batch_size=batch_size)
    rows = []
    for t in walks.transformations:
        z, y, alpha, walked = draw_walk_batch(generator, walks, t, n, seed)
        achieved, edit_achieved, factor, class_kept, texture_kept = [], [], [], [], []
        for start in range(0, n, batch_size):
            part = slice(start, start + batch_size)
            yp = y[part] if y is not None else None
            anchors, moved = (
                generator.synthesize(z[part], yp),
                generator.synthesize(walked[part], yp),
            )
            before = object_moments(anchors)
            achieved.append(_achieved(t, before, object_moments(moved)))
            edit_achieved.append(
                _achieved(t, before, object_moments(apply_edit(t, anchors, alpha[part])[0]))
            )
            if has_factors:
                change = _factor_change(
                    t,
                    generator.factors_from_latents(z[part], yp),
                    generator.factors_from_latents(walked[part], yp),
                )
                if change is not None:
                    factor.append(change.float())
            for name, kept in (("shape", class_kept), ("texture", texture_kept)):
                kept.append(judges[name].predict(moved) == judges[name].predict(anchors))
        a = alpha.cpu().numpy()
        slope, intercept, r2 = fit_line(a, torch.cat(achieved).cpu().numpy())
        edit_slope, _, edit_r2 = fit_line(a, torch.cat(edit_achieved).cpu().numpy())
        factor_slope, _, factor_r2 = (
            fit_line(a, torch.cat(factor).cpu().numpy()) if factor else (math.nan,) * 3
        )
        rows.append(
            {
                "transformation": t,
                "measured": MEASURED[t],
                "alpha_low": walks.alpha_ranges[t][0],
                "alpha_high": walks.alpha_ranges[t][1],
                "slope": slope,
                "intercept": intercept,
                "r2": r2,
                "edit_slope": edit_slope,
                "edit_r2": edit_r2,
                "factor_slope": factor_slope,
                "factor_r2": factor_r2,
                "class_kept": float(torch.cat(class_kept).float().mean()),
                "texture_kept": float(torch.cat(texture_kept).float().mean()),
                **errors[t],
            }
        )
    return pd.DataFrame(rows).set_index("transformation")

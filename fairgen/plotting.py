"""PNG figures people would rather look at: image grids, optionally captioned, and the demo's
arms side by side. Figures are drawn on bare ``matplotlib.figure.Figure`` objects (no pyplot, so
no window and no change to a notebook's backend) and laid out by matplotlib's constrained layout,
so titles, captions and legends never overlap."""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

import torch
from einops import rearrange

from plumbing.outputs import replace_file


def _png(fig, path: Path, dpi: int = 110) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    return replace_file(path, buffer.getvalue())  # renamed into place; a full disk is one error


def save_grid(
    images: torch.Tensor, path: str | Path, nrow: int | None = None, captions=None, title=None
) -> Path:
    """Save ``[N, 3, H, W]`` images in [0, 1] as a PNG grid, with a small caption under each."""
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(images)
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    lines = max((str(c).count("\n") + 1 for c in captions), default=0) if captions else 0
    width = max(nrow * 1.2, 4.0 if title else 0)
    fig = Figure(figsize=(width, rows * (1.2 + 0.14 * lines) + (0.4 if title else 0)))
    fig.set_layout_engine("constrained", h_pad=0.02, w_pad=0.02)
    axes = fig.subplots(rows, nrow, squeeze=False)
    pictures = rearrange(images.detach().float().cpu().clamp(0, 1), "n c h w -> n h w c").numpy()
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(pictures[i], interpolation="nearest")
            if captions is not None:
                ax.set_title(str(captions[i]), fontsize=6.5, pad=2)
    if title:
        fig.suptitle(textwrap.fill(title, max(30, int(width * 11))), fontsize=9)
    return _png(fig, path)


# the demo's table: column -> panel title, and the interval around it (None: no interval)
ARM_PANELS = (
    ("target_acc", "target accuracy\n(linear probe, balanced test)", None),
    ("leakage_bacc", "protected leakage\n(balanced accuracy of a probe)", "leakage"),
    ("eo_diff", "equalized odds difference\n(largest TPR/FPR gap)", "eo"),
)
ARM_INTERVALS = {
    "leakage": "95% CI (cross-validation, corrected resampled t)",
    "eo": "95% simultaneous bootstrap band (max-t over group pairs)",
}


def plot_arms(table, path: str | Path, arm_names: dict, protected: str = "protected") -> Path:
    """The demo's arms side by side: target accuracy, leakage of ``protected`` and the
    equalized odds difference, each for the features as trained and after the feature eraser.
    ``table`` is indexed by arm, ``arm_names`` maps an arm to what a reader calls it."""
    from matplotlib.figure import Figure

    labels = [textwrap.fill(arm_names.get(arm, arm), 14) for arm in table.index]
    x, width = torch.arange(len(labels)).numpy(), 0.38
    fig = Figure(figsize=(max(10.0, 3.4 * len(ARM_PANELS) * max(1, len(labels)) / 3), 4.4))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(1, len(ARM_PANELS))
    for ax, (column, title, interval) in zip(axes, ARM_PANELS, strict=True):
        for shift, prefix, colour, name in (
            (-width / 2, "", "tab:blue", "features as trained"),
            (width / 2, "erased_", "tab:orange", f"{protected} erased from the features"),
        ):
            ax.bar(
                x + shift,
                table[prefix + column],
                width,
                yerr=_error_bars(table, prefix, column, interval),
                capsize=3,
                color=colour,
                label=name if column == "target_acc" else None,
            )
        if column == "leakage_bacc" and "chance" in table:
            ax.axhline(table["chance"].iloc[0], color="grey", ls="--", lw=1, label="chance")
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(title.replace("protected", protected), fontsize=9)
        if interval:
            ax.set_xlabel(textwrap.fill(f"bars: {ARM_INTERVALS[interval]}", 48), fontsize=7)
    fig.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return _png(fig, Path(path))


def _error_bars(table, prefix: str, column: str, interval: str | None):
    """``[below, above]`` distances to the interval for ``ax.bar(yerr=...)``; None without one."""
    if interval is None or f"{prefix}{interval}_ci_low" not in table:
        return None
    value = table[prefix + column]
    below = (value - table[f"{prefix}{interval}_ci_low"]).clip(lower=0).fillna(0)
    above = (table[f"{prefix}{interval}_ci_high"] - value).clip(lower=0).fillna(0)
    return [below.to_numpy(), above.to_numpy()]

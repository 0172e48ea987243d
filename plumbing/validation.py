"""Input checks and their messages, in one place (like fairlearn's ``utils/_input_validation``).

Every check turns bad input into a ValueError that names the argument and says what was expected,
at our boundary, instead of a stack trace from deep inside numpy or torch. Scalars (``is_int``,
``check_int``, ``is_number``, ``check_probabilities``), arrays for statistics (``as_features``,
``as_labels``, ``encode``), latents (``check_latents``, ``check_classes``), class labels for
fitting (``check_labels``), what a labeler returned (``check_labeler_output``) and images
(``check_images``: finite float tensors ``[N, 3, H, W]`` in ``[0, 1]``). torch is imported by
the checks that need it, so that scalar checks stay cheap (``fairgen --help`` does not load torch).
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# ---------------------------------------------------------------------------------- scalars


def is_int(value) -> bool:
    """An integer (Python or numpy), but not a bool (``True`` is an ``int`` to Python)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A finite real number (Python or numpy), but not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_int(value, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an ``int``, or a ValueError naming ``name`` and the range expected.

    Messages: "n must be a positive integer, got 0" (``minimum=1``), "... a non-negative integer"
    (``minimum=0``), "... an integer >= 2", "... an integer in [1, 1000]", "... an integer".
    """
    low_ok = minimum is None or (is_int(value) and value >= minimum)
    high_ok = maximum is None or (is_int(value) and value <= maximum)
    if is_int(value) and low_ok and high_ok:
        return int(value)
    if maximum is not None:
        expected = f"an integer in [{minimum}, {maximum}]"
    elif minimum == 1:
        expected = "a positive integer"
    elif minimum == 0:
        expected = "a non-negative integer"
    elif minimum is not None:
        expected = f"an integer >= {minimum}"
    else:
        expected = "an integer"
    raise ValueError(f"{name} must be {expected}, got {value!r}")


def check_probabilities(p, name: str, k: int) -> None:
    """A ValueError naming ``name`` unless ``p`` holds ``k`` non-negative numbers summing to 1."""
    if len(p) != k or min(p) < 0 or not np.isclose(sum(p), 1.0):
        raise ValueError(f"{name} must be {k} non-negative probabilities summing to 1, got {p}")


# ---------------------------------------------------------------------------------- arrays


def as_features(x, name: str) -> np.ndarray:
    """A finite float64 matrix [N, d]; a 1-d array is read as d = 1."""
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array [N, d]: {err}") from None
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array [N, d], got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must not be empty, got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        raise ValueError(f"{name} contains NaN or infinite values (in {bad} rows)")
    return x


def as_labels(y, name: str, n: int | None = None) -> np.ndarray:
    """A 1-d label array (any hashable values, no missing ones), optionally of length n."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array of labels, got shape {y.shape}")
    if y.size == 0:
        raise ValueError(f"{name} must not be empty")
    if n is not None and y.shape[0] != n:
        raise ValueError(f"{name} must have one label per row ({n}), got {y.shape[0]}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError(f"{name} contains NaN or infinite labels")
    if y.dtype.kind == "O" and any(v is None for v in y):
        raise ValueError(f"{name} contains missing (None) labels")
    return y


def encode(y, name: str, min_count: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Map labels to codes 0..k-1 (sorted values); require k >= 2 and min_count rows per value."""
    values, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    if values.size < 2:
        raise ValueError(f"{name} is constant (only value {values[0]!r}); need at least 2 values")
    small = values[counts < min_count]
    if small.size:
        counted = dict(zip(values.tolist(), counts.tolist(), strict=True))
        raise ValueError(
            f"{name} value(s) {small.tolist()} have fewer than {min_count} rows "
            f"(counts {counted}); each needs at least {min_count}"
        )
    return values, codes.astype(np.int64)


# ---------------------------------------------------------------------------------- latents


def check_latents(
    z, name: str = "X", d: int | None = None, *, tensor: bool = False, allow_empty: bool = False
) -> torch.Tensor:
    """Latents ``[n, d]`` (numpy or torch) as a finite floating torch tensor on their device.

    Integer arrays become float64 and float16/bfloat16 stay as given. ``tensor`` (a generator's
    boundary) asks for a floating torch tensor as it is, converting nothing. ``allow_empty``
    accepts ``n = 0``. Refused: another rank or width, no rows or columns, NaN or inf.
    """
    import torch

    if isinstance(z, torch.Tensor):
        t = z
    elif tensor:
        raise ValueError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    else:
        try:
            t = torch.from_numpy(np.ascontiguousarray(np.asarray(z)))
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{name} must be a numeric array or tensor [N, d]; got {type(z).__name__}"
            ) from err
    if tensor and not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be real-valued, got dtype {t.dtype}")
    if not t.is_floating_point():
        t = t.to(torch.float64)
    if t.ndim != 2 or (d is not None and t.shape[1] != d):
        width = "d" if d is None else d
        fitted = "" if d is None else f", latents of d={d}"
        raise ValueError(
            f"{name} must have shape [n, {width}] (2-D, one latent per row{fitted}), "
            f"got {list(t.shape)}"
        )
    if (t.shape[0] == 0 and not allow_empty) or t.shape[1] == 0:
        raise ValueError(
            f"{name} must have at least one row and one column, got shape {tuple(t.shape)}"
        )
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def check_classes(y, n: int, num_classes: int, name: str = "y") -> None:
    """A ValueError naming ``name`` unless ``y`` holds ``n`` class indices in [0, num_classes)
    (nothing to check when ``num_classes`` is 0: unconditional)."""
    import torch

    if num_classes == 0:
        return
    if y is None:
        raise ValueError(f"{name} is required: this generator is class-conditional")
    if not isinstance(y, torch.Tensor) or y.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must be an int64 tensor of class indices")
    if y.shape != (n,):
        raise ValueError(f"{name} must have shape [{n}], got {list(y.shape)}")
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"{name} holds class indices outside [0, {num_classes}): "
            f"min {int(y.min())}, max {int(y.max())}"
        )


# ---------------------------------------------------------------------------------- labels


def check_labels(y, n: int, name: str = "y", min_classes: int = 2) -> np.ndarray:
    """Integer class labels ``[n]`` to fit on (numpy, torch or list), as int64 numpy.

    Float labels are accepted when every value is a whole number (some labelers emit floats).
    Refused: a wrong shape or length, non-integral values, fewer than ``min_classes`` classes.
    """
    import torch

    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D integer class labels [N], got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"X has {n} rows but {name} has {y.shape[0]} labels; they must match")
    if y.dtype == bool:
        y = y.astype(np.int64)
    elif np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError(f"{name} must hold integer class labels, got non-integral values")
        y = y.astype(np.int64)
    elif not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    n_classes = np.unique(y).size
    if n_classes < min_classes:
        raise ValueError(
            f"{name} has {n_classes} distinct class(es); at least {min_classes} are needed to fit"
        )
    return y


def check_labeler_output(out, n: int, name: str) -> torch.Tensor:
    """What labeler ``name`` returned for ``n`` images as int64 labels ``[n]`` (on its device).

    Accepted: class indices ``[n]``, whole-number floats ``[n]``, or scores ``[n, k]`` (k > 1:
    their argmax). Refused, naming the labeler: another shape, bool or complex values, non-integer
    values, negative labels.
    """
    import torch

    try:
        labels = torch.as_tensor(out).detach()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"labeler {name!r} returned {type(out).__name__}; "
            f"it must return a tensor of {n} integer labels"
        ) from None
    if labels.ndim == 2 and labels.shape[0] == n and labels.shape[1] > 1:
        if labels.is_floating_point():
            labels = labels.argmax(dim=1)
    if labels.shape != (n,):
        raise ValueError(
            f"labeler {name!r} returned shape {list(labels.shape)} for {n} images; "
            f"expected [{n}] integer labels (or [{n}, k] scores)"
        )
    if labels.dtype == torch.bool or labels.is_complex():
        raise ValueError(f"labeler {name!r} returned dtype {labels.dtype}; expected integer labels")
    if labels.is_floating_point():
        if not bool(torch.isfinite(labels).all()) or not torch.equal(labels, labels.round()):
            raise ValueError(
                f"labeler {name!r} returned non-integer values; "
                "expected class indices 0..k-1 (or [N, k] scores)"
            )
    labels = labels.to(torch.int64)
    if n and int(labels.min()) < 0:
        raise ValueError(
            f"labeler {name!r} returned a negative label ({int(labels.min())}); "
            "expected class indices 0..k-1"
        )
    return labels


# ---------------------------------------------------------------------------------- images


def check_images(images, name: str = "images") -> None:
    """A ValueError naming ``name`` unless it is a floating [N, 3, H, W] tensor in [0, 1]."""
    import torch

    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{name} must have shape [N, 3, H, W], got {list(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be floating point in [0, 1], got dtype {images.dtype}")
    if images.numel() and not bool(((images >= 0) & (images <= 1)).all()):  # NaN fails both
        finite = images[torch.isfinite(images)]
        if finite.numel() < images.numel():
            raise ValueError(f"{name} contains NaN or infinite values")
        raise ValueError(
            f"{name} must lie in [0, 1], got values in "
            f"[{float(finite.min()):.3g}, {float(finite.max()):.3g}] "
            "(convert [-1, 1] images with (x + 1) / 2 and [0, 255] images with x / 255)"
        )

"""Evaluate a frozen encoder: feature extraction, a linear probe and a cosine kNN classifier.

The linear probe chooses its regularisation on a validation split carved out of the training
features (stratified, seeded), refits on all training features with the chosen value, and only
then looks at the test set once. Its budget (the grid of C values, the iteration cap) is fixed
up front, so two encoders are compared on equal terms.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["extract_features", "knn_accuracy", "linear_probe"]


@torch.no_grad()
def extract_features(
    encoder: nn.Module, images: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """Encoder outputs ``[N, d]`` for ``images [N, 3, H, W]``, in eval mode, on the encoder's
    device."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(
            f"images must be a tensor [N, 3, H, W], got {getattr(images, 'shape', type(images))}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    try:
        chunks = [encoder(chunk.to(device)) for chunk in images.split(batch_size)]
    finally:
        encoder.train(was_training)
    return torch.cat(chunks).float() if chunks else images.new_empty(0, 0)


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check_pair(x, y, name: str) -> None:
    if x.ndim != 2:
        raise ValueError(f"{name}_x must be 2-d [N, d], got shape {list(x.shape)}")
    if y.shape != (x.shape[0],):
        raise ValueError(
            f"{name}_y must have shape [{x.shape[0]}] (one label per row of {name}_x), got "
            f"{list(y.shape)}"
        )


def linear_probe(
    train_x,
    train_y,
    test_x,
    test_y,
    val_fraction: float = 0.2,
    Cs: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0),
    max_iter: int = 300,
    seed: int = 0,
) -> dict[str, float]:
    """Logistic regression on standardised frozen features; C chosen on a split of train only.

    Returns ``{"test_accuracy", "val_accuracy", "train_accuracy", "C"}``.
    """
    from sklearn.linear_model import LogisticRegression  # heavy import, only where it is used
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    train_x, train_y = _as_numpy(train_x).astype(np.float64), _as_numpy(train_y)
    test_x, test_y = _as_numpy(test_x).astype(np.float64), _as_numpy(test_y)
    _check_pair(train_x, train_y, "train")
    _check_pair(test_x, test_y, "test")
    if test_x.shape[1] != train_x.shape[1]:
        raise ValueError(f"test_x has {test_x.shape[1]} features, train_x has {train_x.shape[1]}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if not Cs:
        raise ValueError("Cs must name at least one regularisation strength")

    _, counts = np.unique(train_y, return_counts=True)
    stratify = train_y if counts.min() >= 2 else None
    fit_x, val_x, fit_y, val_y = train_test_split(
        train_x, train_y, test_size=val_fraction, random_state=seed, stratify=stratify
    )

    def fit(x, y, c):
        scaler = StandardScaler().fit(x)
        model = LogisticRegression(C=c, max_iter=max_iter, random_state=seed).fit(
            scaler.transform(x), y
        )
        return lambda z: model.predict(scaler.transform(z))

    val_scores = [float((fit(fit_x, fit_y, c)(val_x) == val_y).mean()) for c in Cs]
    best = int(np.argmax(val_scores))
    predict = fit(train_x, train_y, Cs[best])
    return {
        "test_accuracy": float((predict(test_x) == test_y).mean()),
        "val_accuracy": val_scores[best],
        "train_accuracy": float((predict(train_x) == train_y).mean()),
        "C": float(Cs[best]),
    }


@torch.no_grad()
def knn_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 1024,
) -> float:
    """Accuracy of a cosine-similarity kNN: each of the ``k`` neighbours votes ``exp(sim / t)``."""
    train_x, train_y, test_x, test_y = (
        torch.as_tensor(t) for t in (train_x, train_y, test_x, test_y)
    )
    _check_pair(train_x, train_y, "train")
    _check_pair(test_x, test_y, "test")
    if not 1 <= k <= train_x.shape[0]:
        raise ValueError(
            f"k must be in [1, {train_x.shape[0]}] (the number of training rows), got {k}"
        )
    device = train_x.device
    bank = F.normalize(train_x.float(), dim=1)
    train_y = train_y.to(device).long()
    num_classes = int(torch.cat((train_y, test_y.to(device).long())).max()) + 1
    correct = torch.zeros((), device=device)
    for query, truth in zip(test_x.split(chunk_size), test_y.split(chunk_size), strict=True):
        sims = F.normalize(query.to(device).float(), dim=1) @ bank.T
        top_sims, top_idx = sims.topk(k, dim=1)
        votes = torch.zeros(query.shape[0], num_classes, device=device)
        votes.scatter_add_(1, train_y[top_idx], torch.exp(top_sims / temperature))
        correct += (votes.argmax(dim=1) == truth.to(device).long()).sum()
    return float(correct) / max(1, test_x.shape[0])

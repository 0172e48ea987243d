"""Contrastive representation learning on generated multiview batches: SimCLR / SupCon.

One loss (``supcon_loss``), encoders, optimisers and schedule, a resumable ``Trainer``, and
frozen-feature evaluation (linear probe, kNN). Names are imported on first use, so that reading
``TrainConfig``'s fields (``fairgen train --help``) does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "all_gather_no_grad": "distributed",
    "all_gather_with_grad": "distributed",
    "init_from_env": "distributed",
    "rank_and_world_size": "distributed",
    "sync_batchnorm": "distributed",
    "ProjectionHead": "encoders",
    "build_encoder": "encoders",
    "list_encoders": "encoders",
    "extract_features": "evaluate",
    "knn_accuracy": "evaluate",
    "linear_probe": "evaluate",
    "supcon_loss": "loss",
    "LARS": "optim",
    "build_optimizer": "optim",
    "warmup_cosine": "optim",
    "TrainConfig": "config",
    "ContrastiveModel": "trainer",
    "KnnMonitor": "trainer",
    "LossAtChanceWarning": "trainer",
    "ScheduleChangedWarning": "trainer",
    "NonFiniteError": "trainer",
    "Trainer": "trainer",
    "load_encoder": "trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fairgen.contrastive' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

"""Contrastive representation learning on generated multiview batches: SimCLR / SupCon.

One loss (``supcon_loss``), encoders, optimisers and schedule, a resumable ``Trainer``, and
frozen-feature evaluation (linear probe, kNN).
"""

from .distributed import all_gather_no_grad, all_gather_with_grad, rank_and_world_size
from .encoders import ProjectionHead, build_encoder, list_encoders
from .evaluate import extract_features, knn_accuracy, linear_probe
from .loss import supcon_loss
from .optim import LARS, build_optimizer, warmup_cosine
from .trainer import ContrastiveModel, KnnMonitor, TrainConfig, Trainer, load_encoder

__all__ = [
    "LARS",
    "ContrastiveModel",
    "KnnMonitor",
    "ProjectionHead",
    "TrainConfig",
    "Trainer",
    "all_gather_no_grad",
    "all_gather_with_grad",
    "build_encoder",
    "build_optimizer",
    "extract_features",
    "knn_accuracy",
    "linear_probe",
    "list_encoders",
    "load_encoder",
    "rank_and_world_size",
    "supcon_loss",
    "warmup_cosine",
]

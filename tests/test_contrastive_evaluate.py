"""Linear probe and kNN: right on separable features, at chance on noise, never tuned on test."""

import numpy as np
import pytest
import torch
from torch import nn

from fairgen.contrastive import extract_features, knn_accuracy, linear_probe


def blobs(n, d=8, classes=3, spread=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=torch.Generator().manual_seed(99)) * 3
    y = torch.randint(0, classes, (n,), generator=g)
    return centres[y] + spread * torch.randn(n, d, generator=g), y


def test_linear_probe_on_separable_features_is_near_perfect():
    (train_x, train_y), (test_x, test_y) = blobs(300), blobs(200, seed=1)
    result = linear_probe(train_x, train_y, test_x, test_y)
    assert result["test_accuracy"] > 0.97 and result["val_accuracy"] > 0.95


def test_linear_probe_on_random_labels_is_near_chance():
    g = torch.Generator().manual_seed(0)
    train_x, test_x = torch.randn(300, 16, generator=g), torch.randn(400, 16, generator=g)
    train_y, test_y = (
        torch.randint(0, 2, (300,), generator=g),
        torch.randint(0, 2, (400,), generator=g),
    )
    assert abs(linear_probe(train_x, train_y, test_x, test_y)["test_accuracy"] - 0.5) < 0.1


def test_linear_probe_choice_of_C_never_depends_on_test_labels():
    (train_x, train_y), (test_x, test_y) = blobs(200, spread=3.0), blobs(100, spread=3.0, seed=1)
    honest = linear_probe(train_x, train_y, test_x, test_y)
    shuffled = linear_probe(train_x, train_y, test_x, test_y[torch.randperm(100)])
    assert honest["C"] == shuffled["C"] and honest["val_accuracy"] == shuffled["val_accuracy"]


def test_knn_on_separable_features_is_perfect_and_on_noise_near_chance():
    (train_x, train_y), (test_x, test_y) = blobs(200), blobs(100, seed=1)
    assert knn_accuracy(train_x, train_y, test_x, test_y, k=5) == 1.0
    g = torch.Generator().manual_seed(0)
    noise = knn_accuracy(
        torch.randn(300, 8, generator=g),
        torch.randint(0, 2, (300,), generator=g),
        torch.randn(400, 8, generator=g),
        torch.randint(0, 2, (400,), generator=g),
        k=20,
    )
    assert abs(noise - 0.5) < 0.1


def test_extract_features_is_batch_size_independent_and_restores_train_mode():
    encoder = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten())
    images = torch.rand(7, 3, 6, 6)
    one, many = (
        extract_features(encoder, images, batch_size=1),
        extract_features(encoder, images, batch_size=5),
    )
    assert one.shape == (7, 4 * 4 * 4) and torch.allclose(one, many, atol=1e-6)
    assert encoder.training


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train_y": np.zeros(5)}, "train_y"),
        ({"test_x": np.zeros((10, 3))}, "features"),
        ({"val_fraction": 1.0}, "val_fraction"),
    ],
)
def test_linear_probe_rejects_bad_inputs(kwargs, match):
    args = dict(
        train_x=np.zeros((20, 4)),
        train_y=np.arange(20) % 2,
        test_x=np.zeros((10, 4)),
        test_y=np.zeros(10),
    )
    with pytest.raises(ValueError, match=match):
        linear_probe(**{**args, **kwargs})


def test_knn_rejects_k_larger_than_the_training_set():
    with pytest.raises(ValueError, match="k must be"):
        knn_accuracy(torch.randn(5, 2), torch.zeros(5), torch.randn(3, 2), torch.zeros(3), k=6)

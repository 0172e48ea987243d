"""The SupCon / SimCLR loss equals the paper's formula, stays finite, and rejects bad input."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from fairgen.contrastive import supcon_loss


def reference_supcon(features, labels, temperature):
    """SupCon L_out written out anchor by anchor, in float64 (SimCLR when labels is None)."""
    b, v, d = features.shape
    z = features.double()
    z = z / z.norm(dim=-1, keepdim=True)
    views = [z[i, j] for i in range(b) for j in range(v)]
    owner = [i for i in range(b) for _ in range(v)]
    ident = [int(labels[i]) if labels is not None else i for i in owner]
    losses = []
    for i, anchor in enumerate(views):
        others = [a for a in range(len(views)) if a != i]
        denominator = sum(torch.exp(anchor @ views[a] / temperature) for a in others)
        positives = [p for p in others if ident[p] == ident[i]]
        if not positives:
            continue
        log_probs = [
            torch.log(torch.exp(anchor @ views[p] / temperature) / denominator) for p in positives
        ]
        losses.append(-sum(log_probs) / len(positives))
    if not losses:
        return torch.zeros((), dtype=torch.float64)
    return sum(losses) / len(losses)


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 5),
    v=st.integers(2, 3),
    d=st.integers(2, 6),
    num_classes=st.one_of(st.none(), st.integers(1, 3)),
    temperature=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**16),
)
def test_loss_and_gradient_equal_the_reference_formula(b, v, d, num_classes, temperature, seed):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(b, v, d, generator=g, dtype=torch.float64).float().requires_grad_()
    labels = None if num_classes is None else torch.randint(0, num_classes, (b,), generator=g)
    ours = supcon_loss(features, labels, temperature)
    (grad,) = torch.autograd.grad(ours, features)
    features_ref = features.detach().clone().requires_grad_()
    expected = reference_supcon(features_ref, labels, temperature)
    (grad_ref,) = torch.autograd.grad(expected, features_ref)
    assert ours.dtype == torch.float32
    assert torch.allclose(ours.double(), expected, rtol=1e-4, atol=1e-5)
    assert torch.allclose(grad, grad_ref, rtol=1e-3, atol=1e-5)


def test_simclr_equals_nt_xent_cross_entropy():
    b, temperature = 6, 0.2
    features = torch.randn(b, 2, 8, generator=torch.Generator().manual_seed(0))
    z = F.normalize(torch.cat([features[:, 0], features[:, 1]]), dim=1)
    logits = (z @ z.T / temperature).fill_diagonal_(-math.inf)
    partner = torch.cat([torch.arange(b) + b, torch.arange(b)])
    expected = F.cross_entropy(logits, partner)
    assert torch.allclose(supcon_loss(features, None, temperature), expected, atol=1e-5)


def test_bf16_autocast_still_computes_the_loss_in_float32():
    g = torch.Generator().manual_seed(1)
    x, labels = torch.randn(4, 3, 16, generator=g), torch.tensor([0, 1, 0, 2])
    projector = torch.nn.Linear(16, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = projector(x)
        assert features.dtype == torch.bfloat16
        loss = supcon_loss(features, labels, temperature=0.07)
    assert loss.dtype == torch.float32
    expected = reference_supcon(features.detach().float(), labels, 0.07)
    assert torch.allclose(loss.double(), expected, rtol=1e-4)


def test_anchors_without_positives_are_left_out_not_nan():
    features = torch.randn(4, 1, 5, generator=torch.Generator().manual_seed(2), requires_grad=True)
    labels = torch.tensor([0, 1, 2, 2])  # only the two samples of class 2 have positives
    loss = supcon_loss(features, labels, 0.1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(features.grad).all()
    assert torch.allclose(
        loss.double(), reference_supcon(features.detach(), labels, 0.1), rtol=1e-4
    )


def test_batch_where_no_anchor_has_a_positive_gives_zero_loss_and_zero_gradient():
    features = torch.randn(3, 1, 5, requires_grad=True)
    loss = supcon_loss(features, torch.tensor([0, 1, 2]), 0.1)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(features.grad, torch.zeros_like(features))


def test_loss_ignores_feature_scale_and_survives_tiny_temperatures():
    features = torch.randn(5, 2, 4, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(supcon_loss(features * 50, None, 0.3), supcon_loss(features, None, 0.3))
    assert torch.isfinite(supcon_loss(features * 1e4, torch.tensor([0, 0, 1, 1, 2]), 1e-3))


@pytest.mark.parametrize(
    ("features", "labels", "temperature", "match"),
    [
        (torch.randn(4, 1, 8), None, 0.1, "V >= 2"),
        (torch.randn(4, 2, 8), torch.tensor([0, 1, 2]), 0.1, "labels"),
        (torch.randn(4, 2, 8), torch.rand(4), 0.1, "labels"),
        (torch.randn(8, 8), None, 0.1, "features"),
        (torch.randn(4, 2, 8), None, 0.0, "temperature"),
    ],
)
def test_bad_inputs_raise_clear_errors(features, labels, temperature, match):
    with pytest.raises(ValueError, match=match):
        supcon_loss(features, labels, temperature)

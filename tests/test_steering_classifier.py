"""Classifier steering (rejection-sampling balance, gradient flips, several attributes) on
synthetic latents.

In the synthetic world the protected value of class c is a bucket of a curved code
``s(z) = z.r + 0.5 tanh(z.a + b)`` with class-specific thresholds (each class mostly shows its own
value, as a biased split would teach); a second attribute uses another code.
"""

import numpy as np
import pytest
import torch
from scipy.stats import chi2, chisquare

from plumbing.tables import cramers_v
from steering import ClassifierSteerer, checked_flips, fit_steerer, load_card, save_card
from steering.resample import corrected_acceptance, rejection_sample

C, K, D = 4, 4, 8
_g = torch.Generator().manual_seed(99)
_R = torch.linalg.qr(torch.randn(D, D, generator=_g))[0][:2]
_A = torch.nn.functional.normalize(torch.randn(2, D, generator=_g), dim=1)


def _cdf(own: float = 0.85):
    probs = torch.full((C, K), (1 - own) / (K - 1))
    probs[torch.arange(C), torch.arange(C) % K] = own
    return probs.cumsum(1)


def _code(z, i):
    s = z @ _R[i] + 0.5 * torch.tanh(z @ _A[i] + 0.3)
    return (s - 0.0) / 1.1


def protected(z, y, i=0, own=0.85):
    u = torch.special.ndtr(_code(z, i))
    return (u[:, None] > _cdf(own)[y][:, :-1]).sum(1)


def _data(n, seed):
    rng = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=rng), torch.randint(C, (n,), generator=rng)


@pytest.fixture(scope="module")
def steerer():
    z, y = _data(12_000, 0)
    return ClassifierSteerer().fit(z, y, {"a": protected(z, y)}, num_classes=C)


def test_resampler_matches_the_target_with_a_known_classifier():
    """With the exact posterior, accepted latents follow the target in every class (chi-square)."""
    big = torch.randn(
        400_000, D, generator=torch.Generator().manual_seed(8)
    )  # the value shares, by Monte Carlo
    probs = torch.stack(
        [torch.bincount(protected(big, torch.full((len(big),), c)), minlength=K) for c in range(C)]
    ).double() / len(big)
    target = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    weights = target / probs
    accept = weights / weights.max(1, keepdim=True).values

    def acceptance(z, y):
        return accept[y, protected(z, y)]

    z, y = _data(8000, 3)
    out, stats = rejection_sample(
        z,
        y,
        acceptance,
        (probs * accept).sum(1),
        lambda n, generator: torch.randn(n, D, generator=generator),
        torch.Generator().manual_seed(4),
    )
    values = protected(out, y)
    for c in range(C):
        counts = np.bincount(values[y == c].numpy(), minlength=K)
        expected = counts.sum() * target.numpy()
        assert chisquare(counts, expected * counts.sum() / expected.sum()).pvalue > 1e-3
    expected = float((1 / (probs * accept).sum(1)).mean())
    assert stats["draws"] / stats["kept"] == pytest.approx(expected, rel=0.1)


def test_balance_makes_a_curved_attribute_independent_of_the_class(steerer):
    z, y = _data(10_000, 7)
    raw_v = cramers_v(y.numpy(), protected(z, y).numpy())
    result = steerer.balance(z, y, torch.Generator().manual_seed(0))
    balanced = result.latents
    assert raw_v > 0.6
    assert cramers_v(y.numpy(), protected(balanced, y).numpy()) < 0.06
    assert result.stats["draws"] / result.stats["kept"] == pytest.approx(
        steerer.expected_draws(), rel=0.15
    )


def test_flips_land_on_the_requested_value(steerer):
    z, y = _data(3000, 5)
    flipped = steerer.flip(z, y, torch.Generator().manual_seed(1))
    twins, values = flipped.latents, flipped.values
    assert (values != protected(z, y)).float().mean() > 0.9
    assert (protected(twins, y) == values).float().mean() >= 0.9
    # twins stay mostly typical under the N(0, I) prior (the penalty pulls them back): 93% inside
    # the ball that holds 99.9% of prior draws
    inside = (twins.norm(dim=1) ** 2 < chi2.ppf(0.999, D)).float().mean()
    assert float(inside) >= 0.9


def test_same_seed_same_steered_batch(steerer):
    z, y = _data(500, 9)
    a = steerer(z, y, torch.Generator().manual_seed(5))
    b = steerer(z, y, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert torch.equal(
        steerer.flip(z, y, torch.Generator().manual_seed(2)).latents,
        steerer.flip(z, y, torch.Generator().manual_seed(2)).latents,
    )


def test_two_attributes_are_balanced_jointly():
    z, y = _data(16_000, 11)
    # the second attribute is milder (60% own value), so every joint value of every class shows in
    # at least ~0.1% of its latents and a uniform joint target costs tens of draws, not thousands
    labels = {"a": protected(z, y, 0), "b": protected(z, y, 1, own=0.6)}
    steerer = ClassifierSteerer(target_distribution={"a": [0.25] * 4, "b": [0.25] * 4}).fit(
        z, y, labels, num_classes=C
    )
    z2, y2 = _data(12_000, 12)
    out = steerer(z2, y2, torch.Generator().manual_seed(0))
    a, b = protected(out, y2, 0).numpy(), protected(out, y2, 1, own=0.6).numpy()
    assert cramers_v(y2.numpy(), protected(z2, y2, 0).numpy()) > 0.6
    assert cramers_v(y2.numpy(), a) < 0.06
    assert cramers_v(y2.numpy(), b) < 0.06
    assert cramers_v(y2.numpy(), a * K + b) < 0.06


def test_classifier_card_round_trip(tmp_path, steerer):
    generator = type(
        "G",
        (),
        {
            "name": "toy",
            "checksum": "abc",
            "sample_latents": lambda self, n, generator=None: torch.randn(
                n, D, generator=generator
            ),
        },
    )()
    path = save_card(steerer, tmp_path / "card", {"generator": {"name": "toy", "sha256": "abc"}})
    loaded, card = load_card(path, generator=generator)
    assert card["method"] == "resample" and card["attributes"] == ["a"]
    z, y = _data(300, 2)
    assert torch.allclose(
        steerer(z, y, torch.Generator().manual_seed(3)),
        loaded(z, y, torch.Generator().manual_seed(3)),
    )


class _Toy:
    """A "generator" whose images are the latents themselves (labelers read the protected value off
    them)."""

    name, checksum, num_classes, latent_dim, device = "toy", "abc", C, D, torch.device("cpu")

    def sample_latents(self, n, generator=None):
        return torch.randn(n, D, generator=generator)

    def synthesize(self, z, y):
        return torch.cat([z, y[:, None].float()], 1)


def _labeler(images):
    return protected(images[:, :D], images[:, D].long())


def test_fit_steerer_with_active_labelling_and_the_labeler_check():
    steerer, samples = fit_steerer(_Toy(), _labeler, n=6000, progress=False)
    assert len(samples) == 6000
    z, y = _data(1000, 21)
    twins, values, kept, cost = checked_flips(
        _Toy(), _labeler, steerer, z, y, torch.Generator().manual_seed(0)
    )
    assert bool((_labeler(_Toy().synthesize(twins[kept], y[kept])) == values[kept]).all())
    assert cost["kept_share"] > 0.9 and cost["syntheses_per_kept"] >= 1


@pytest.mark.parametrize(
    "labeler, match",
    [
        (lambda images: _labeler(images)[:-1], "returned shape"),
        (lambda images: _labeler(images).float() + 0.5, "non-integer"),
        (lambda images: _labeler(images) - 1, "negative"),
        (lambda images: torch.zeros(len(images), dtype=torch.long), "single value"),
        (lambda images: "texture", "must return"),
    ],
)
def test_bad_labelers_are_refused(labeler, match):
    with pytest.raises(ValueError, match=match):
        fit_steerer(_Toy(), labeler, n=500, progress=False)


def test_a_class_that_never_shows_a_requested_value_is_named():
    z, y = _data(4000, 1)
    a = protected(z, y)
    a[(y == 2) & (a == 1)] = 0  # class 2 never shows value 1
    with pytest.raises(ValueError, match="class 2 never shows a value 1"):
        ClassifierSteerer().fit(z, y, {"a": a}, num_classes=C)
    ClassifierSteerer(target_distribution=[0.5, 0.0, 0.25, 0.25]).fit(
        z, y, {"a": a}, num_classes=C
    )  # the remedy works


@pytest.mark.parametrize(
    "target, match",
    [
        ([0.5, 0.6, 0.0, 0.0], "summing to 1"),
        ([0.5, 0.5], r"shape \[4\]"),
        ([-0.5, 0.5, 0.5, 0.5], "non-negative"),
        ({"b": [0.25] * 4}, "not protected attributes"),
    ],
)
def test_targets_that_are_not_distributions_are_refused(target, match):
    z, y = _data(3000, 1)
    with pytest.raises(ValueError, match=match):
        ClassifierSteerer(target_distribution=target).fit(
            z, y, {"a": protected(z, y)}, num_classes=C
        )


def test_a_target_value_the_generator_never_produces_is_refused():
    z, y = _data(3000, 1)
    with pytest.raises(ValueError, match="never produced"):
        ClassifierSteerer(target_distribution=[0.2] * 5).fit(
            z, y, {"a": protected(z, y)}, num_classes=C, num_values={"a": 5}
        )


def test_erase_is_not_a_classifier_mode():
    with pytest.raises(ValueError, match="latent-only"):
        ClassifierSteerer(mode="erase")


def _blurred_world(n, seed, p=(0.85, 0.05, 0.05, 0.05)):
    """True values and a classifier that is blurred (a tenth of its mass spread) on 40% of the
    latents."""
    rng = torch.Generator().manual_seed(seed)
    values = torch.multinomial(torch.tensor(p), n, replacement=True, generator=rng)
    q = torch.nn.functional.one_hot(values, len(p)).float()
    blurred = torch.rand(n, generator=rng) < 0.4
    q[blurred] = 0.9 * q[blurred] + 0.1 / len(p)
    return values, q


def _accepted_shares(values, q, w):
    mass = torch.zeros(len(w)).index_add_(0, values, q @ w)
    return mass / mass.sum()


def test_labelled_prior_draws_correct_a_blurred_classifier():
    target = torch.full((4,), 0.25)
    values, q = _blurred_world(400_000, 0)  # the population the corrected sampler is judged on
    share = q.mean(0)
    naive = target / share
    naive = naive / naive.max()
    assert (
        float(_accepted_shares(values, q, naive)[0]) > 0.33
    )  # blur lets the majority leak back in
    prior_values, q_prior = _blurred_world(50_000, 1)
    labelled_values, q_labelled = _blurred_world(5_000, 2)
    w = corrected_acceptance(q_prior, q_labelled, labelled_values, target)
    assert float(w.max()) == pytest.approx(1.0)
    assert torch.allclose(_accepted_shares(values, q, w), target, atol=0.015)


_FIT_IN_A_FRESH_PROCESS = """
import hashlib, sys, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(2)
from test_steering_classifier import C, _data, protected
from steering import ClassifierSteerer
z, y = _data(3000, 3)
steerer = ClassifierSteerer().fit(z, y, {{"a": protected(z, y)}}, num_classes=C)
print(hashlib.sha256(b"".join(t.numpy().tobytes() for t in steerer.tensors().values())).hexdigest())
"""


def test_same_seed_same_steerer_in_another_process():
    import subprocess
    import sys
    from pathlib import Path

    script = _FIT_IN_A_FRESH_PROCESS.format(tests=str(Path(__file__).parent))
    digests = {
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(digests) == 1

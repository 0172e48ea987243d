"""Confirmed flips: every kept twin reads as the requested value, stays inside the prior (also a
truncated one), misses are reported, same seed same twins; and the prior's own helpers."""

import pytest
import torch
from scipy.stats import ks_2samp
from test_steering_classifier import C, D, _data, _labeler, _Toy, protected

from fairgen.views import ViewRecipe, make_views
from steering import (
    ClassifierSteerer,
    ConfirmedFlipper,
    ConfirmedSteerer,
    LatentPrior,
    confirmed_flips,
    in_prior_support,
    prior_support,
)
from steering.prior import prior_mix

TRUNCATED = LatentPrior(scale=0.5, bound=1.5)
UNIT = 0.5 * 0.7371  # the truncated prior's standard deviation: the toy labeler reads z / UNIT


class _Truncated(_Toy):
    """The toy generator with a declared truncated prior (0.5 times a normal cut at +-1.5)."""

    latent_prior = TRUNCATED

    def sample_latents(self, n, generator=None):
        return prior_mix(TRUNCATED, torch.zeros(n, D), torch.zeros(n), generator)


def _fit(gen, n=6000):
    z = gen.sample_latents(n, torch.Generator().manual_seed(0))
    y = torch.randint(C, (n,), generator=torch.Generator().manual_seed(1))
    return ClassifierSteerer().fit(
        z,
        y,
        {"a": protected(z / UNIT if hasattr(gen, "latent_prior") else z, y)},
        num_classes=C,
        sample_latents=gen.sample_latents,
    )


@pytest.fixture(scope="module")
def proposal():
    return _fit(_Toy())


def _anchors(gen, n=600, seed=5):
    return gen.sample_latents(n, torch.Generator().manual_seed(seed)), torch.randint(
        C, (n,), generator=torch.Generator().manual_seed(seed + 1)
    )


def test_every_confirmed_twin_reads_as_the_requested_value_and_stays_in_the_prior(proposal):
    gen = _Toy()
    z, y = _anchors(gen)
    result = confirmed_flips(
        gen, {"a": _labeler}, proposal, z, y, rng=torch.Generator().manual_seed(0)
    )
    kept = result.confirmed
    assert kept.float().mean() >= 0.95 and result.cost["missed"] == result.missed == int(
        (~kept).sum()
    )
    assert bool(
        (_labeler(gen.synthesize(result.twins[kept], y[kept])) == result.values[kept]).all()
    )
    assert bool((result.values != result.anchor_values).all())  # a twin differs from its anchor
    assert bool((result.anchor_values == _labeler(gen.synthesize(z, y))).all())
    assert bool(in_prior_support(gen, result.twins).all())
    assert (
        result.cost["syntheses_per_kept"] >= 1
        and result.cost["labeler_calls"] == result.cost["syntheses"]
    )


def test_twins_of_a_truncated_prior_stay_inside_its_box():
    gen = _Truncated()

    def labeler(images):
        return protected(images[:, :D] / UNIT, images[:, D].long())

    z, y = _anchors(gen)
    result = confirmed_flips(
        gen, {"a": labeler}, _fit(gen), z, y, rng=torch.Generator().manual_seed(0)
    )
    assert result.confirmed.float().mean() >= 0.95
    assert float(result.twins.abs().max()) <= TRUNCATED.box
    assert bool(in_prior_support(gen, result.twins).all())
    assert bool((labeler(gen.synthesize(result.twins, y)) == result.values)[result.confirmed].all())


def test_prior_mix_keeps_a_truncated_prior_exactly():
    gen = _Truncated()
    anchors = gen.sample_latents(20_000, torch.Generator().manual_seed(3))
    mixed = prior_mix(
        TRUNCATED, anchors, torch.full((len(anchors),), 0.9), torch.Generator().manual_seed(4)
    )
    fresh = gen.sample_latents(20_000, torch.Generator().manual_seed(5))
    assert float(mixed.abs().max()) <= TRUNCATED.box
    for j in range(3):
        assert ks_2samp(mixed[:, j].numpy(), fresh[:, j].numpy()).pvalue > 1e-3
    basis = torch.linalg.qr(torch.randn(D, 2, generator=torch.Generator().manual_seed(6)))[0]
    within = prior_mix(
        TRUNCATED,
        anchors,
        torch.zeros(len(anchors)),
        torch.Generator().manual_seed(4),
        basis,
        torch.ones(len(anchors), dtype=torch.bool),
    )
    for j in range(3):
        assert ks_2samp(within[:, j].numpy(), fresh[:, j].numpy()).pvalue > 1e-3
    g, g_within = TRUNCATED.to_gaussian(anchors), TRUNCATED.to_gaussian(within)
    rest = torch.eye(D, dtype=torch.float64) - basis.double() @ basis.double().T
    assert torch.allclose(
        g @ rest, g_within @ rest, atol=1e-3
    )  # outside the basis' span nothing moved
    close = prior_mix(TRUNCATED, anchors[:10], torch.ones(10), torch.Generator().manual_seed(4))
    assert torch.allclose(close, anchors[:10], atol=1e-5)  # rho 1 is the anchor itself


def test_in_prior_support_refuses_latents_off_the_shell_or_outside_the_box():
    support = prior_support(_Truncated())
    inside = _Truncated().sample_latents(1000, torch.Generator().manual_seed(9))
    assert support.contains(inside).float().mean() > 0.999
    far = inside.clone()
    far[:, 0] = 1.5 * TRUNCATED.box  # one coordinate outside the box, norm barely changed
    assert not support.contains(far).any()
    assert not in_prior_support(
        _Toy(), torch.full((1, D), 3.0)
    ).any()  # norm 8.5: far off the 8-d shell (2.8 +- 0.7)
    wide = _Toy()
    wide.sample_latents = lambda n, generator=None: torch.randn(n, 128, generator=generator)
    assert not in_prior_support(
        wide, torch.zeros(1, 128)
    ).any()  # in 128-d the mode is far from the typical shell


def test_anchors_without_a_twin_are_reported_not_dropped(proposal):
    gen = _Toy()
    z, y = _anchors(gen, 300)

    def stubborn(images):  # class 3 never reads as anything but value 3
        labels = _labeler(images)
        return torch.where(images[:, D].long() == 3, 3, labels)

    result = confirmed_flips(gen, stubborn, proposal, z, y, rng=torch.Generator().manual_seed(0))
    missed = ~result.confirmed
    assert result.missed == int(missed.sum()) > 0 and len(result.twins) == len(z)
    assert bool(missed[y == 3].all()) and missed[y != 3].float().mean() < 0.05
    assert torch.equal(result.twins[missed], z[missed])  # the anchor stands in, flagged
    assert result.cost["confirmed"] + result.cost["missed"] == len(z)


def test_same_seed_same_twins(proposal):
    gen = _Toy()
    z, y = _anchors(gen, 200)
    a = confirmed_flips(gen, _labeler, proposal, z, y, rng=torch.Generator().manual_seed(7))
    b = confirmed_flips(gen, _labeler, proposal, z, y, rng=torch.Generator().manual_seed(7))
    assert (
        torch.equal(a.twins, b.twins)
        and torch.equal(a.confirmed, b.confirmed)
        and torch.equal(a.values, b.values)
    )


def test_flip_views_report_their_misses(proposal):
    gen = _Toy()
    z, y = _data(64, 11)
    flipper = ConfirmedFlipper(gen, _labeler, proposal)
    views = make_views(
        z,
        y,
        ViewRecipe(kinds=("anchor", "flip")),
        torch.Generator().manual_seed(0),
        flipper=flipper,
    )
    assert views.latents.shape == (64, 2, D) and views.flip_confirmed.shape == (64,)
    assert views.flip_missed == int((~views.flip_confirmed).sum())
    kept = views.flip_confirmed
    assert bool(
        (
            _labeler(gen.synthesize(views.latents[kept, 1], y[kept]))
            != _labeler(gen.synthesize(z[kept], y[kept]))
        ).all()
    )


def test_a_labeler_that_does_not_name_the_attributes_is_refused(proposal):
    with pytest.raises(ValueError, match="labeler must name the proposal's attributes"):
        ConfirmedFlipper(_Toy(), {"colour": _labeler}, proposal)
    with pytest.raises(ValueError, match="latent_prior bound"):
        LatentPrior(bound=-1.0)


def test_a_labeler_confirmed_balance_steerer_proposes_flips_too():
    gen = _Toy()
    z, y = _data(6000, 0)
    steerer = ConfirmedSteerer().fit(
        z, y, {"a": protected(z, y)}, num_classes=C, sample_latents=gen.sample_latents
    )
    anchors, classes = _anchors(gen, 300)
    result = ConfirmedFlipper(gen, {"a": _labeler}, steerer)(
        anchors, classes, torch.Generator().manual_seed(0)
    )
    assert result.confirmed.float().mean() >= 0.95
    kept = result.confirmed
    assert bool(
        (_labeler(gen.synthesize(result.twins[kept], classes[kept])) == result.values[kept]).all()
    )


def _second(images):  # a second attribute the twin should keep (the toy's other code)
    return protected(images[:, :D], images[:, D].long(), i=1)


def test_twins_keep_the_attributes_they_are_asked_to_keep(proposal):
    gen = _Toy()
    z, y = _anchors(gen, 300)
    anchor_b = _second(gen.synthesize(z, y))
    kept = confirmed_flips(
        gen, _labeler, proposal, z, y, rng=torch.Generator().manual_seed(0), keep={"b": _second}
    )
    by_default = confirmed_flips(
        gen, {"a": _labeler, "b": _second}, proposal, z, y, rng=torch.Generator().manual_seed(0)
    )
    for result in (kept, by_default):
        ok = result.confirmed
        assert ok.float().mean() >= 0.9
        images = gen.synthesize(result.twins[ok], y[ok])
        assert bool((_second(images) == anchor_b[ok]).all()) and bool(
            (_labeler(images) == result.values[ok]).all()
        )
        assert result.cost["labeler_calls"] == 2 * result.cost["syntheses"]
    assert torch.equal(kept.twins, by_default.twins)


def test_keep_must_name_other_attributes_than_the_flipped_ones(proposal):
    with pytest.raises(ValueError, match="keep must name attributes other than the flipped ones"):
        confirmed_flips(_Toy(), _labeler, proposal, *_anchors(_Toy(), 8), keep={"a": _labeler})
    with pytest.raises(ValueError, match="keep_classifiers must name kept attributes"):
        confirmed_flips(
            _Toy(),
            _labeler,
            proposal,
            *_anchors(_Toy(), 8),
            keep={"b": _second},
            keep_classifiers={"c": None},
        )

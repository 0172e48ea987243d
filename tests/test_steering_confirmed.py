"""Labeler-confirmed balance: exact per-cell quotas in the labeler's terms, the generator's own
distribution inside each cell, honest cost accounting, determinism, shards, cards, clear errors.

The generators are tiny random-weight ``nn.Module``s (unconditional or class-conditional) and the
labelers read pixels, as a user's own would; nothing here knows the embedded world.
"""

import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp
from torch import nn

from steering import ConfirmedSteerer, fit_steerer, load_card, save_card

README = Path(__file__).resolve().parents[1] / "docs" / "steering.md"  # its confirmed-lines block


class TinyGenerator(nn.Module):
    """A random-weight MLP from a 16-d latent (and a class, if any) to 8x8 RGB images in [0, 1]."""

    def __init__(self, num_classes: int = 0, latent_dim: int = 16):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Linear(latent_dim + num_classes, 64), nn.LeakyReLU(0.2), nn.Linear(64, 3 * 8 * 8)
        )
        self.latent_dim, self.num_classes, self.resolution = latent_dim, num_classes, 8
        self.synthesized = 0

    def sample_latents(self, n, generator=None):
        return torch.randn(n, self.latent_dim, generator=generator)

    @torch.no_grad()
    def synthesize(self, z, y=None):
        self.synthesized += len(z)
        x = (
            z
            if not self.num_classes
            else torch.cat([z, 2 * nn.functional.one_hot(y, self.num_classes).float()], 1)
        )
        return torch.sigmoid(self.net(x)).view(-1, 3, 8, 8)


def brightness(images):
    return images[:, :, 2:6, 2:6].mean((1, 2, 3))


def bright(images):
    """A pixel labeler: is the centre patch bright? (about 26% yes on the unconditional
    generator)."""
    return (brightness(images) > 0.505).long()


def reddish(images):
    return (images[:, 0].mean((1, 2)) > images[:, 1].mean((1, 2))).long()


def greenish(images):
    return (images[:, 1].mean((1, 2)) > images[:, 2].mean((1, 2))).long()


@pytest.fixture(scope="module")
def unconditional():
    gen = TinyGenerator()
    steerer, _ = fit_steerer(gen, bright, n=2000, method="confirmed", active=False, progress=False)
    return gen, steerer


def test_the_readme_lines_work_verbatim_on_a_random_unconditional_module(capsys):
    """docs/steering.md's lines (fit on any generator and labeler, draw n samples that meet the
    target), run
    as written on a random-weight unconditional module and a pixel labeler; only n is cut to 2,000
    labels to keep the suite fast (20,000 take about a minute and a half here)."""
    block = (
        README.read_text()
        .split("<!-- confirmed-lines -->")[1]
        .split("```python")[1]
        .split("```")[0]
    )
    assert "n=20_000" in block
    gen, labeler = TinyGenerator(), bright
    scope = {"gen": gen, "labeler": labeler}
    exec(block.replace("n=20_000", "n=2_000"), scope)
    draw, samples = scope["draw"], scope["samples"]
    assert (
        draw.latents.shape == (1000, 16)
        and draw.classes.shape == (1000,)
        and draw.images.shape == (1000, 3, 8, 8)
    )
    assert torch.equal(
        draw.labels["protected"], labeler(draw.images)
    )  # the labels are the labeler's own
    assert torch.bincount(draw.labels["protected"]).tolist() == [
        500,
        500,
    ]  # exact, where the prior gives ~26% bright
    assert 0.2 < samples.labels["protected"][:800].float().mean() < 0.32
    assert draw.syntheses >= 1000 and draw.labeler_calls == draw.syntheses
    assert draw.syntheses_per_kept == draw.syntheses / 1000
    assert scope["steerer"].guarantee == "confirmed"
    assert f"{draw.syntheses_per_kept} {draw.labeler_calls_per_kept}" in capsys.readouterr().out


def test_a_given_marginal_is_met_exactly_in_every_draw(unconditional):
    gen = unconditional[0]
    steerer, _ = fit_steerer(
        gen,
        bright,
        n=2000,
        method="confirmed",
        target_distribution=[0.3, 0.7],
        active=False,
        progress=False,
    )
    for seed, n in ((0, 100), (1, 257)):
        counts = torch.bincount(
            steerer.draw(gen, bright, n=n, seed=seed).labels["protected"], minlength=2
        )
        assert counts.tolist() == [round(0.3 * n), n - round(0.3 * n)]


def test_two_and_three_attributes_jointly_exact_in_every_class():
    gen = TinyGenerator(num_classes=3)
    labelers = {"green": greenish, "red": reddish}
    steerer, _ = fit_steerer(
        gen, labelers, n=1500, method="confirmed", active=False, progress=False
    )
    draw = steerer.draw(gen, labelers, n=600, seed=0)
    cells = Counter(
        zip(
            draw.classes.tolist(),
            draw.labels["green"].tolist(),
            draw.labels["red"].tolist(),
            strict=True,
        )
    )
    assert len(cells) == 12 and set(cells.values()) == {50}  # 3 classes x 4 joint values, 50 each
    three = {**labelers, "bright": bright}
    steerer3, _ = fit_steerer(
        TinyGenerator(), three, n=1500, method="confirmed", active=False, progress=False
    )
    draw3 = steerer3.draw(gen := TinyGenerator(), three, n=400, seed=0)
    assert all(torch.equal(draw3.labels[k], f(draw3.images)) for k, f in three.items())
    cells3 = Counter(zip(*(draw3.labels[k].tolist() for k in three), strict=True))
    assert len(cells3) == 8 and set(cells3.values()) == {50}
    assert gen.synthesized == draw3.syntheses


def test_keep_labeler_balances_within_each_keep_value_and_keeps_its_marginal():
    """gan-debiasing's setting: the protected attribute balanced inside each keep-label, whose own
    marginal stays the generator's; classes are the keep-labels (SupCon can train on them)."""
    gen = TinyGenerator()
    steerer, samples = fit_steerer(
        gen, bright, n=2000, method="confirmed", keep_labeler=reddish, active=False, progress=False
    )
    keep_share = samples.labels["keep"].float().mean().item()
    draw = steerer.draw(gen, bright, n=1000, seed=0, keep_labeler=reddish)
    assert torch.equal(draw.classes, reddish(draw.images))
    n_keep = int(draw.classes.sum())
    assert abs(n_keep - 1000 * keep_share) <= 1
    for k in (0, 1):
        inside = draw.labels["protected"][draw.classes == k]
        assert abs(int(inside.sum()) - len(inside) / 2) <= 1
    with pytest.raises(ValueError, match="keep_labeler for 'keep'"):
        steerer.draw(gen, bright, n=10)


def test_a_rare_minority_is_reached_and_its_cost_reported():
    """A 3% value of the prior: every draw holds half of it, at a reported price below plain
    rejection's."""
    gen = TinyGenerator()
    z = gen.sample_latents(20_000, torch.Generator().manual_seed(5))
    cut = float(brightness(gen.synthesize(z)).quantile(0.97))

    def rare(images):
        return (brightness(images) > cut).long()

    steerer, samples = fit_steerer(gen, rare, n=2500, method="confirmed", progress=False)
    assert 0.015 < samples.labels["protected"][:1000].float().mean() < 0.05
    draw = steerer.draw(gen, rare, n=400, seed=0)
    assert torch.bincount(draw.labels["protected"]).tolist() == [200, 200]
    plain = steerer.draw(gen, rare, n=400, seed=0, proposal="prior")
    assert torch.bincount(plain.labels["protected"]).tolist() == [200, 200]
    assert plain.syntheses_per_kept > 10  # the limit: ~ 0.5 / 0.03 syntheses per kept sample
    assert draw.syntheses_per_kept < 0.5 * plain.syntheses_per_kept
    assert steerer.costs_["rejection_syntheses_per_kept"] > 10


def test_cost_accounting_counts_every_synthesis_and_labeler_call(unconditional):
    gen, steerer = unconditional
    calls = []

    def counting(images):
        calls.append(len(images))
        return bright(images)

    before = gen.synthesized
    draw = steerer.draw(gen, counting, n=300, seed=3)
    assert draw.syntheses == gen.synthesized - before == sum(calls) == draw.labeler_calls
    assert draw.latent_draws >= draw.syntheses
    cost = draw.cost()
    assert cost["kept"] == 300 and cost["syntheses_per_kept"] == pytest.approx(draw.syntheses / 300)


def test_within_cell_samples_follow_the_prior(unconditional):
    """Inside each cell, the kept samples' brightness (the very score the cells cut, so the most
    sensitive statistic) is distributed as the prior's: two-sample KS against labelled prior draws.
    Tolerance: the test's own false-alarm rate, 1e-3 per comparison. The exact sampler (cap=None),
    plain rejection and the default cap pass; the raw proposal (the latent classifier's tilt, before
    the acceptance correction) fails it, so the test has the power to see a distortion."""
    gen, steerer = unconditional
    z = gen.sample_latents(20_000, torch.Generator().manual_seed(11))
    prior = brightness(gen.synthesize(z))
    prior_cell = (prior > 0.505).long()
    exact = ConfirmedSteerer.from_state({**steerer.config(), "cap": None}, steerer.tensors())
    for name, s, proposal in (
        ("exact", exact, "classifier"),
        ("prior", steerer, "prior"),
        ("default", steerer, "classifier"),
    ):
        draw = s.draw(gen, bright, n=3000, seed=7, proposal=proposal)
        kept = brightness(draw.images)
        for cell in (0, 1):
            result = ks_2samp(
                kept[draw.labels["protected"] == cell].numpy(), prior[prior_cell == cell].numpy()
            )
            assert result.pvalue > 1e-3, (name, cell, result)
    z, *_ = steerer._propose(
        gen, 6000, steerer.quotas(3000), torch.Generator().manual_seed(0), prior_only=False
    )
    proposed = gen.synthesize(z)
    for cell in (0, 1):
        raw = brightness(proposed)[bright(proposed) == cell]
        assert ks_2samp(raw.numpy(), prior[prior_cell == cell].numpy()).pvalue < 1e-3
    assert (
        steerer.costs_["within_cell_tv"] < 0.02
    )  # the fit's own estimate of the default cap's distortion


def test_same_seed_same_draw_and_ranks_get_disjoint_shards(unconditional):
    gen, steerer = unconditional
    a, b = steerer.draw(gen, bright, n=200, seed=4), steerer.draw(gen, bright, n=200, seed=4)
    assert (
        torch.equal(a.latents, b.latents)
        and torch.equal(a.images, b.images)
        and torch.equal(a.classes, b.classes)
    )
    assert not torch.equal(a.latents, steerer.draw(gen, bright, n=200, seed=5).latents)
    shards = [steerer.draw(gen, bright, n=201, seed=4, rank=r, world_size=3) for r in range(3)]
    assert sum(len(s) for s in shards) == 201
    rows = torch.cat([s.latents for s in shards])
    assert len(torch.unique(rows, dim=0)) == 201  # disjoint
    for r, shard in enumerate(shards):  # each rank fills its own share of the quotas exactly
        assert (
            torch.bincount(shard.labels["protected"], minlength=2).tolist()
            == steerer.quotas(201, rank=r, world_size=3)[0].tolist()
        )
    assert torch.equal(
        shards[1].latents, steerer.draw(gen, bright, n=201, seed=4, rank=1, world_size=3).latents
    )


def test_quotas_of_all_ranks_add_up_to_the_target(unconditional):
    steerer = unconditional[1]
    total = sum(steerer.quotas(1001, rank=r, world_size=4) for r in range(4))
    assert torch.equal(total, steerer.quotas(1001))
    assert total.sum() == 1001


def test_card_and_pickle_round_trip_give_the_same_draw(unconditional, tmp_path):
    gen, steerer = unconditional
    path = save_card(
        steerer,
        tmp_path / "card",
        {"generator": {"name": "tiny", "sha256": "x"}, "labeler": {"name": "bright"}},
    )
    loaded, card = load_card(path)
    assert card["method"] == "confirmed" and card["guarantee"] == "confirmed"
    assert card["steerer"]["costs"]["syntheses_per_kept"] > 0
    again = pickle.loads(pickle.dumps(steerer))
    for other in (loaded, again):
        assert torch.equal(
            other.draw(gen, bright, n=100, seed=2).latents,
            steerer.draw(gen, bright, n=100, seed=2).latents,
        )
    assert not any(
        callable(v) for v in vars(steerer).values() if not isinstance(v, (nn.Module, dict))
    )


def test_a_cell_the_labeler_never_produces_fails_clearly_within_the_budget(unconditional):
    gen, steerer = unconditional

    def never_bright(images):
        return torch.zeros(len(images), dtype=torch.int64)

    with pytest.raises(
        ValueError,
        match=r"max_syntheses=2000\).*protected=1 \(50 of 50 missing; labelled in 0 of 2000",
    ):
        steerer.draw(gen, never_bright, n=100, seed=0, max_syntheses=2000)


def test_clear_errors_at_fit():
    gen = TinyGenerator()
    with pytest.raises(ValueError, match="keep_labeler needs method='confirmed'"):
        fit_steerer(gen, bright, n=200, keep_labeler=reddish, progress=False)
    with pytest.raises(ValueError, match="this generator has 3 classes"):
        fit_steerer(
            TinyGenerator(num_classes=3),
            bright,
            n=200,
            method="confirmed",
            keep_labeler=reddish,
            progress=False,
        )
    with pytest.raises(ValueError, match="never shows protected=1 in its 300 labelled samples"):
        fit_steerer(
            gen,
            lambda images: 2 * bright(images),
            n=300,
            method="confirmed",
            active=False,
            progress=False,
        )
    with pytest.raises(ValueError, match="lacks \\['num_classes'"):
        fit_steerer(nn.Linear(3, 3), bright, n=200, method="confirmed", progress=False)
    with pytest.raises(ValueError, match="mode='balance'"):
        fit_steerer(gen, bright, n=200, method="confirmed", mode="erase", progress=False)


def test_unconditional_generators_fit_with_the_latent_methods_too():
    """No class input: the resampler balances the marginal (one 'class')."""
    gen = TinyGenerator()
    steerer, _ = fit_steerer(gen, bright, n=2000, active=False, progress=False)
    z = gen.sample_latents(4000, torch.Generator().manual_seed(1))
    steered = steerer(z, torch.zeros(4000, dtype=torch.int64), torch.Generator().manual_seed(2))
    share = bright(gen.synthesize(steered)).float().mean().item()
    assert abs(share - 0.5) < 0.06
    assert np.isfinite(steerer.expected_draws())


def test_draw_batches_fills_k_exact_draws_as_one_block(unconditional):
    """A block of k draws: each meets the per-draw quotas exactly, no sample appears twice, the
    block
    repeats for the same seed, and its cost is shared evenly (every synthesis counted once)."""
    gen, steerer = unconditional
    before = gen.synthesized
    parts = steerer.draw_batches(gen, bright, batch=20, k=5, seed=3)
    assert len(parts) == 5 and sum(p.syntheses for p in parts) == pytest.approx(
        gen.synthesized - before
    )
    for part in parts:
        assert (
            torch.bincount(part.labels["protected"], minlength=2).tolist()
            == steerer.quotas(20)[0].tolist()
            == [10, 10]
        )
        assert (
            torch.equal(part.labels["protected"], bright(part.images)) and part.stats["block"] == 5
        )
    rows = torch.cat([p.latents for p in parts])
    assert len(torch.unique(rows, dim=0)) == 100
    again = steerer.draw_batches(gen, bright, batch=20, k=5, seed=3)
    assert all(torch.equal(a.latents, b.latents) for a, b in zip(parts, again, strict=True))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        steerer.draw_batches(gen, bright, batch=20, k=0)


class Signs:
    """A 'generator' whose images are its 2-d latents; the labelers read the latents' signs."""

    latent_dim, num_classes, resolution = 2, 0, 1

    def sample_latents(self, n, generator=None):
        return torch.randn(n, 2, generator=generator)

    def synthesize(self, z, y=None):
        return z.clone()


def test_a_joint_cell_never_labelled_at_fit_is_found_through_the_classifiers():
    """Both values of both attributes were labelled, but never together: the classifiers' product
    still gives the joint cell a mass, so the fit accepts it and a draw fills it exactly. A value
    never labelled at all is still refused."""
    z = torch.randn(1200, 2, generator=torch.Generator().manual_seed(0))
    z = z[~((z[:, 0] > 0.3) & (z[:, 1] > 0.3))][:800]  # the quadrant (1, 1) is never labelled
    labels = {"a": (z[:, 0] > 0.3).long(), "b": (z[:, 1] > 0.3).long()}
    labelers = {"a": lambda x: (x[:, 0] > 0.3).long(), "b": lambda x: (x[:, 1] > 0.3).long()}
    steerer = ConfirmedSteerer().fit(
        z,
        torch.zeros(len(z), dtype=torch.int64),
        labels,
        num_classes=0,
        sample_latents=Signs().sample_latents,
    )
    assert int(steerer.counts[0, 3]) == 0 and float(steerer.mass[0, 3]) > 0.01
    draw = steerer.draw(Signs(), labelers, n=80, seed=0)
    assert Counter(zip(draw.labels["a"].tolist(), draw.labels["b"].tolist(), strict=True)) == {
        (0, 0): 20,
        (0, 1): 20,
        (1, 0): 20,
        (1, 1): 20,
    }
    with pytest.raises(
        ValueError, match="the generator never shows b=2 in its 800 labelled samples"
    ):
        ConfirmedSteerer().fit(
            z,
            torch.zeros(len(z), dtype=torch.int64),
            labels,
            num_classes=0,
            num_values={"b": 3},
            sample_latents=Signs().sample_latents,
        )

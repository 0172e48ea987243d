"""Per-class steering (erase / balance / flip) and steering cards, on a synthetic latent world.

The synthetic world mimics a class-conditional generator: within class c the protected value is
a step function of the latent along a class-specific direction, with class-specific thresholds
(each class mostly shows its "own" value, as a biased training split would teach).
"""

import json

import numpy as np
import pytest
import torch

from plumbing.tables import cramers_v
from steering import LatentSteerer, latent_probe_accuracy, load_card, save_card

C, K, D = 4, 4, 6


def _world(n, seed):
    rng = torch.Generator().manual_seed(seed)
    directions = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(99)))[0][
        :C
    ]
    z = torch.randn(n, D, generator=rng)
    y = torch.randint(C, (n,), generator=rng)
    return z, y, _attribute(directions)


def _attribute(directions):
    # class c: P(own value) = 0.85, other values 0.05 each, as intervals of the CDF along direction
    # c
    probs = torch.full((C, K), 0.05)
    probs[torch.arange(C), torch.arange(C) % K] = 0.85
    cdf = probs.cumsum(1)

    def protected(z, y):
        u = torch.special.ndtr((z * directions[y]).sum(1))
        return (u[:, None] > cdf[y][:, :-1]).sum(1)

    return protected


def _fit(mode, method="quantile", n=12_000, seed=0):
    z, y, protected = _world(n, seed)
    return LatentSteerer(mode, method).fit(z, y, protected(z, y)), protected


def test_raw_synthetic_world_is_biased():
    z, y, protected = _world(8000, 1)
    assert cramers_v(y.numpy(), protected(z, y).numpy()) > 0.6


@pytest.mark.parametrize("method", ["quantile", "gaussian"])
def test_balance_makes_the_attribute_independent_of_the_class(method):
    steerer, protected = _fit("balance", method)
    z, y, _ = _world(12_000, 7)
    steered = steerer(z, y, torch.Generator().manual_seed(0))
    v = cramers_v(y.numpy(), protected(steered, y).numpy())
    limit = 0.05 if method == "quantile" else 0.15
    assert v < limit


def test_balance_follows_a_named_target_distribution():
    z, y, protected = _world(12_000, 0)
    wanted = [0.4, 0.3, 0.2, 0.1]
    steerer = LatentSteerer("balance", target_distribution=wanted).fit(z, y, protected(z, y))
    z2, y2, _ = _world(12_000, 3)
    shares = np.bincount(
        protected(steerer(z2, y2, torch.Generator().manual_seed(1)), y2).numpy(), minlength=K
    ) / len(z2)
    assert np.abs(shares - wanted).max() < 0.03


def test_flip_changes_the_attribute_and_moves_only_along_the_class_direction():
    steerer, protected = _fit("flip")
    z, y, _ = _world(4000, 5)
    flipped = steerer.flip(z, y, torch.Generator().manual_seed(0))
    twins, values = flipped.latents, flipped.values
    before, after = protected(z, y), protected(twins, y)
    assert (after != before).float().mean() > 0.95
    assert (after == values).float().mean() > 0.95
    # the edit is one-dimensional per class: the remaining coordinates are untouched
    for c in range(C):
        mask = y == c
        delta = twins[mask] - z[mask]
        residual = delta - (delta @ steerer.direction[c])[:, None] * steerer.direction[c]
        assert residual.abs().max() < 1e-4


def test_erase_leaves_a_fresh_within_class_probe_at_the_majority_rate():
    steerer, protected = _fit("erase")
    z, y, _ = _world(12_000, 11)
    labels = protected(z, y)
    before = latent_probe_accuracy(z, y, labels)
    after = latent_probe_accuracy(steerer(z, y), y, labels)
    assert before["accuracy"] > before["majority"] + 0.05
    assert after["accuracy"] <= after["majority"] + 0.01


def test_card_round_trip_gives_identical_steering(tmp_path):
    for mode in LatentSteerer.modes:
        steerer, _ = _fit(mode, n=4000)
        generator = type("G", (), {"name": "toy", "checksum": "abc"})()
        path = save_card(steerer, tmp_path / mode, {"generator": {"name": "toy", "sha256": "abc"}})
        loaded, card = load_card(path, generator=generator)
        z, y, _ = _world(500, 2)
        a = steerer(z, y, torch.Generator().manual_seed(3))
        b = loaded(z, y, torch.Generator().manual_seed(3))
        assert torch.allclose(a, b, atol=1e-6)
        assert card["mode"] == mode
        assert (
            path.stat().st_mode == path.with_suffix(".safetensors").stat().st_mode
        )  # one usual mode per card


def test_card_refuses_another_generator(tmp_path):
    steerer, _ = _fit("balance", n=3000)
    path = save_card(steerer, tmp_path / "card", {"generator": {"name": "toy", "sha256": "abc"}})
    other = type("G", (), {"name": "other", "checksum": "def"})()
    with pytest.raises(ValueError, match="fitted on generator"):
        load_card(path, generator=other)


def test_card_refuses_edited_tensors(tmp_path):
    steerer, _ = _fit("balance", n=3000)
    path = save_card(steerer, tmp_path / "card", {"generator": {"name": "toy", "sha256": "abc"}})
    tensors = tmp_path / "card.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ValueError, match="SHA-256"):
        load_card(path)


def test_card_that_is_not_json_is_refused(tmp_path):
    (tmp_path / "bad.json").write_text("not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_card(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a fairgen steering card"):
        load_card(tmp_path / "other.json")


@pytest.mark.parametrize(
    "kwargs, match",
    [({"mode": "scrub"}, "mode"), ({"method": "magic"}, "method")],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LatentSteerer(**kwargs)


def test_bad_fit_inputs_are_refused():
    z, y, protected = _world(100, 0)
    with pytest.raises(ValueError, match="must agree"):
        LatentSteerer().fit(z, y[:50], protected(z, y))
    bad = z.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        LatentSteerer().fit(bad, y, protected(z, y))
    with pytest.raises(ValueError, match="target_distribution"):
        LatentSteerer(target_distribution=[0.5, 0.6, 0, 0]).fit(z, y, protected(z, y))
    with pytest.raises(ValueError, match="not fitted"):
        LatentSteerer()(z, y)

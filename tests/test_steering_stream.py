"""Classifier cards in a stream: same seed, same steered batch; several attributes; erase
refused."""

import pytest
import torch

from audits import stream_balance_joint
from fairgen.generators import load_generator
from fairgen.stream import Stream, make_spec
from steering import ClassifierSteerer, LatentSteerer, save_card


@pytest.fixture(scope="module")
def generator():
    return load_generator("world-sprites-z128")


def _card(generator, folder, names=("texture",), mode="balance"):
    """A card fitted on the prior's own factors (what a perfect labeler would say), fast."""
    rng = torch.Generator().manual_seed(0)
    z = generator.sample_latents(8000, rng)
    y = generator.sample_classes(8000, rng)
    factors = generator.factors_from_latents(z, y)
    if mode == "erase":
        steerer = LatentSteerer("erase").fit(z, y, factors["texture"], num_classes=4)
    else:
        steerer = ClassifierSteerer(mode).fit(
            z,
            y,
            {k: factors[k] for k in names},
            num_classes=4,
            sample_latents=generator.sample_latents,
        )
    provenance = {
        "generator": {"name": generator.name, "sha256": generator.checksum},
        "protected": list(names),
    }
    return save_card(steerer, folder / "card", provenance)


def test_same_seed_same_steered_batch(generator, tmp_path):
    card = _card(generator, tmp_path)
    spec = make_spec(
        generator, eraser=card, views={"kinds": ["anchor", "flip"]}, augment="none", seed=3
    )
    a = Stream.from_spec(spec, 32, generator=generator).next_batch()
    b = Stream.from_spec(spec, 32, generator=generator).next_batch()
    assert torch.equal(a["views"], b["views"]) and torch.equal(a["latents"], b["latents"])
    other = Stream.from_spec(
        make_spec(
            generator, eraser=card, views={"kinds": ["anchor", "flip"]}, augment="none", seed=4
        ),
        32,
        generator=generator,
    ).next_batch()
    assert not torch.equal(a["latents"], other["latents"])


class _Toy:
    """An 8-d "generator" whose two protected attributes are curved functions of the latent (see
    test_steering_classifier); its images are blank, the test reads the attributes off the
    latents."""

    name, checksum, num_classes, resolution, latent_dim, device = (
        "toy",
        "toy-sha",
        4,
        32,
        8,
        torch.device("cpu"),
    )

    def sample_latents(self, n, generator=None):
        return torch.randn(n, self.latent_dim, generator=generator)

    def synthesize(self, z, y):
        return torch.zeros(len(z), 3, 32, 32)


def test_a_stream_balances_two_attributes_jointly(tmp_path):
    from test_steering_classifier import protected

    toy = _Toy()
    rng = torch.Generator().manual_seed(0)
    z, y = toy.sample_latents(16_000, rng), torch.randint(4, (16_000,), generator=rng)
    steerer = ClassifierSteerer().fit(
        z,
        y,
        {"a": protected(z, y, 0), "b": protected(z, y, 1, own=0.6)},
        num_classes=4,
        sample_latents=toy.sample_latents,
    )  # b milder: every joint value shows
    card = save_card(
        steerer,
        tmp_path / "card",
        {"generator": {"name": "toy", "sha256": "toy-sha"}, "protected": ["a", "b"]},
    )
    stream = Stream.from_spec(
        make_spec(toy, eraser=card, views={"kinds": ["anchor", "neighbour"]}, augment="none"),
        500,
        generator=toy,
    )
    batches = [stream.next_batch() for _ in range(16)]
    latents, classes = (
        torch.cat([b["latents"] for b in batches]),
        torch.cat([b["labels"] for b in batches]),
    )
    raw = stream_balance_joint(
        y.numpy(),
        {"a": protected(z, y, 0).numpy(), "b": protected(z, y, 1, own=0.6).numpy()},
        n_bootstrap=20,
    )
    result = stream_balance_joint(
        classes.numpy(),
        {
            "a": protected(latents, classes, 0).numpy(),
            "b": protected(latents, classes, 1, own=0.6).numpy(),
        },
        n_bootstrap=20,
    )
    assert set(result) == {"a", "b", "joint"}
    for key in result:  # the joint value has 16 cells, each rarer: its classifier error adds up
        assert raw[key].cramers_v_corrected > 0.5
        assert result[key].cramers_v_corrected < (0.1 if key == "joint" else 0.06)


def test_a_stream_refuses_an_erase_card(generator, tmp_path):
    card = _card(generator, tmp_path, mode="erase")
    with pytest.raises(ValueError, match="latent-only"):
        Stream.from_spec(make_spec(generator, eraser=card), 8, generator=generator)

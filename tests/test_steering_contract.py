"""The steerer contract, for every registered method: a fit hands out a frozen, picklable steerer
that carries no generator, returns its draw statistics instead of storing them, and round-trips
through a steering card (and old eraser cards still load)."""

import hashlib
import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

import steering.classifier
from steering import (
    Steered,
    Steerer,
    fit_steerer,
    load_card,
    save_card,
    steerer_class,
    steering_methods,
)
from steering.base import GUARANTEES

C, D = 2, 4


class ToyGenerator:
    """A conditional "generator" whose images are its latents and class (labelers read them off)."""

    name, checksum, num_classes, latent_dim, device = "toy", "abc", C, D, torch.device("cpu")

    def sample_latents(self, n, generator=None):
        return torch.randn(n, D, generator=generator)

    def synthesize(self, z, y):
        return torch.cat([z, y[:, None].float()], 1)


def labeler(images):
    """The protected value: biased by the class (each class mostly shows its own value)."""
    return (images[:, 0] + 1.2 * (2 * images[:, D] - 1) > 0).long()


@pytest.fixture(scope="module")
def fitted():
    """One steerer per registered method, each fitted on 600 labelled toy samples."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(steering.classifier, "STEPS", 60)  # a short classifier fit: a smoke test
        return {
            method: fit_steerer(ToyGenerator(), labeler, n=600, method=method, progress=False)[0]
            for method in steering_methods()
        }


def _output(steerer) -> torch.Tensor:
    """The steerer's output for fixed inputs and seeds: latents (proposed) or a draw (confirmed)."""
    if steerer.guarantee == "confirmed":
        return steerer.draw(ToyGenerator(), labeler, n=40, seed=2).latents
    rng = torch.Generator().manual_seed(5)
    z, y = torch.randn(200, D, generator=rng), torch.randint(C, (200,), generator=rng)
    return steerer(z, y, torch.Generator().manual_seed(3), ToyGenerator().sample_latents)


def test_every_registered_method_names_its_class_modes_and_guarantee():
    assert {"quantile", "gaussian", "resample", "confirmed"} <= set(steering_methods())
    for method in steering_methods():
        cls = steerer_class(method)
        assert issubclass(cls, Steerer) and method in cls.methods
        assert cls.modes and cls.guarantee in GUARANTEES


@pytest.mark.parametrize("method", ["quantile", "gaussian", "resample", "confirmed"])
def test_fit_hands_out_a_frozen_steerer_of_its_method(fitted, method):
    steerer = fitted[method]
    assert type(steerer) is steerer_class(method) and steerer.method == method
    with pytest.raises(AttributeError, match="frozen"):
        steerer.mode = "flip"
    with pytest.raises(AttributeError, match="frozen"):
        steerer.anything_new = 1
    with pytest.raises(ValueError, match="fitted"):
        steerer._check_unfitted()


@pytest.mark.parametrize("method", ["quantile", "gaussian", "resample", "confirmed"])
def test_pickle_keeps_no_generator_and_gives_the_same_output(fitted, method):
    steerer = fitted[method]
    payload = pickle.dumps(steerer)
    assert b"ToyGenerator" not in payload and b"sample_latents" not in payload
    again = pickle.loads(payload)
    assert torch.equal(_output(steerer), _output(again))
    with pytest.raises(AttributeError, match="frozen"):
        again.mode = "flip"


@pytest.mark.parametrize("method", ["quantile", "gaussian", "resample", "confirmed"])
def test_card_round_trips_through_the_registry(fitted, method, tmp_path):
    steerer = fitted[method]
    path = save_card(steerer, tmp_path / method, {"generator": {"name": "toy", "sha256": "abc"}})
    card = json.loads(path.read_text())
    assert card["fairgen_card"] == "steering" and card["method"] == method
    assert card["guarantee"] == steerer.guarantee
    loaded, _ = load_card(path, generator=ToyGenerator())
    assert type(loaded) is steerer_class(method)
    assert torch.equal(_output(steerer), _output(loaded))
    with pytest.raises(AttributeError, match="frozen"):
        loaded.mode = "flip"


@pytest.mark.parametrize("method", ["quantile", "resample"])
def test_draw_statistics_come_back_from_the_call_and_leave_the_steerer_as_it_was(fitted, method):
    steerer = fitted[method]
    before = pickle.dumps(steerer)
    rng = torch.Generator().manual_seed(1)
    z, y = torch.randn(300, D, generator=rng), torch.randint(C, (300,), generator=rng)
    balanced = steerer.balance(z, y, torch.Generator().manual_seed(2))
    flipped = steerer.flip(z, y, torch.Generator().manual_seed(2))
    assert isinstance(balanced, Steered) and isinstance(flipped, Steered)
    assert balanced.latents.shape == z.shape and flipped.values.shape == y.shape
    assert balanced.stats and flipped.stats["n"] == len(z)
    if method == "resample":
        assert balanced.stats["kept"] == len(z) and balanced.stats["draws"] >= len(z)
        assert 0 <= flipped.stats["reached"] <= len(z)
    assert pickle.dumps(steerer) == before


def test_an_unknown_method_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown steering method 'magic'") as error:
        steerer_class("magic")
    for method in steering_methods():
        assert method in str(error.value)
    with pytest.raises(ValueError, match="known methods: confirmed, gaussian, quantile, resample"):
        fit_steerer(ToyGenerator(), labeler, n=600, method="magic", progress=False)


def test_a_mode_the_method_does_not_offer_is_refused():
    with pytest.raises(ValueError, match="mode must be one of"):
        fit_steerer(ToyGenerator(), labeler, n=600, mode="erase", method="resample")
    with pytest.raises(ValueError, match="balances"):
        fit_steerer(ToyGenerator(), labeler, n=600, mode="flip", method="confirmed")


def test_an_unfitted_steerer_says_so():
    with pytest.raises(ValueError, match="not fitted"):
        steerer_class("resample")()(torch.zeros(2, D), torch.zeros(2, dtype=torch.int64))


def _old_eraser_card(steerer, folder, name: str) -> tuple:
    """A card in the layout written before steering cards (``"fairgen_card": "eraser"``, version 1):
    linear steerers' config at the top level; classifier and confirmed ones under their ``kind``."""
    tensors = {k: v.detach().contiguous() for k, v in steerer.tensors().items()}
    save_file(tensors, str(folder / f"{name}.safetensors"))
    sha = hashlib.sha256((folder / f"{name}.safetensors").read_bytes()).hexdigest()
    config = steerer.config()
    card = {
        "fairgen_card": "eraser",
        "version": 1,
        "tensors": {"file": f"{name}.safetensors", "sha256": sha},
        "generator": {"name": "toy", "sha256": "abc"},
    }
    if steerer.method in ("quantile", "gaussian"):
        card.update(config)  # mode, method, target_distribution, num_classes, ..., erasers
    else:
        kind = "classifier" if steerer.method == "resample" else "confirmed"
        card.update(
            {
                "kind": kind,
                "guarantee": steerer.guarantee,
                "mode": steerer.mode,
                "method": steerer.method,
                "num_classes": steerer.num_classes_,
                "num_values": steerer.num_values_,
                "attributes": steerer.names_,
                "latent_dim": steerer.dim_,
                kind: {"kind": kind, **config},
            }
        )
    path = folder / f"{name}.json"
    path.write_text(json.dumps(card))
    return path


@pytest.mark.parametrize("method", ["quantile", "resample", "confirmed"])
def test_old_eraser_cards_still_load(fitted, method, tmp_path):
    steerer = fitted[method]
    path = _old_eraser_card(steerer, tmp_path, f"old-{method}")
    loaded, card = load_card(path, generator=ToyGenerator())
    assert card["fairgen_card"] == "eraser" and type(loaded) is type(steerer)
    assert torch.equal(_output(steerer), _output(loaded))


def test_a_card_of_an_unknown_method_is_refused(fitted, tmp_path):
    path = save_card(fitted["quantile"], tmp_path / "card", {})
    card = json.loads(path.read_text())
    path.write_text(json.dumps({**card, "method": "magic"}))
    with pytest.raises(ValueError, match="unknown steering method 'magic'; known methods"):
        load_card(path)


@pytest.mark.parametrize("method", ["quantile", "gaussian", "resample"])
def test_latent_steerers_follow_sklearns_params_and_transform(fitted, method):
    """get_params gives the constructor's arguments (so sklearn's clone makes an unfitted twin),
    set_params works before fit only, and transform is the seeded call."""
    from sklearn.base import clone

    steerer = fitted[method]
    params = steerer.get_params()
    assert params["mode"] == steerer.mode
    twin = clone(steerer)
    assert type(twin) is type(steerer) and twin.get_params() == params and not twin.fitted
    twin.set_params(mode="flip")
    assert twin.mode == "flip"
    with pytest.raises(ValueError, match="unknown parameter 'magic'"):
        twin.set_params(magic=1)
    with pytest.raises(AttributeError, match="frozen"):
        steerer.set_params(mode="flip")
    rng = torch.Generator().manual_seed(5)
    z, y = torch.randn(50, D, generator=rng), torch.randint(C, (50,), generator=rng)
    expected = steerer(z, y, torch.Generator().manual_seed(3))
    assert torch.equal(steerer.transform(z.numpy(), y.numpy(), seed=3), expected)

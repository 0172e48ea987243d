"""Feature erasure fitted on labelled images: the learned features stop leaking the attribute."""

import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fairgen.contrastive import TrainConfig, Trainer, extract_features
from fairgen.contrastive.erase import (
    ErasedEncoder,
    fit_feature_eraser,
    load_feature_eraser,
    save_feature_eraser,
)
from fairgen.world.demo import RealViews
from fairgen.world.judges import load_judges
from fairgen.world.render import World


def _texture_probe(train_x, train_y, test_x, test_y) -> float:
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(train_x, train_y)
    return balanced_accuracy_score(test_y, clf.predict(test_x))


@pytest.fixture(scope="module")
def setting():
    # A briefly trained encoder: a fresh one's features are so ill-conditioned (BatchNorm's
    # initial running statistics) that a linear edit fitted on one sample does not carry over.
    world = World(32)
    config = TrainConfig(
        supervised=True,
        optimizer="adamw",
        lr=2e-3,
        total_steps=30,
        warmup_steps=0,
        progress=False,
        log_every=0,
    )
    trainer = Trainer(config, "cpu")
    trainer.fit(RealViews(world.sample(2000, seed=9), 64), steps=30)
    encoder = trainer.encoder.eval()
    fit_images = world.sample(2048, seed=1, bias=0.0).images
    return encoder, world, fit_images, load_judges()["texture"].predict


def test_erased_features_leave_a_fresh_probe_near_chance(setting):
    encoder, world, fit_images, labeler = setting
    eraser = fit_feature_eraser(
        encoder, fit_images.split(256), labeler, num_classes=4, n=2048, progress=False
    )
    train, test = world.sample(1500, seed=2, bias=0.0), world.sample(1500, seed=3, bias=0.0)
    y_train, y_test = train.labels("texture").numpy(), test.labels("texture").numpy()
    raw = [extract_features(encoder, s.images).numpy() for s in (train, test)]
    erased = [
        extract_features(ErasedEncoder(encoder, eraser), s.images).numpy() for s in (train, test)
    ]
    # a conv net's features give texture away almost perfectly; after erasure, near chance (0.25)
    assert _texture_probe(raw[0], y_train, raw[1], y_test) > 0.9
    assert _texture_probe(erased[0], y_train, erased[1], y_test) < 0.5
    # the edit is small: shape information survives (a shape probe keeps most of its accuracy)
    y_shape = train.labels("shape").numpy(), test.labels("shape").numpy()
    before = _texture_probe(raw[0], y_shape[0], raw[1], y_shape[1])
    after = _texture_probe(erased[0], y_shape[0], erased[1], y_shape[1])
    assert after > before - 0.1


def test_on_the_fitting_samples_the_class_means_coincide(setting):
    """LEACE's guarantee: zero cross-covariance, i.e. every attribute class has the same mean
    feature."""
    encoder, _, fit_images, labeler = setting
    eraser = fit_feature_eraser(
        encoder, fit_images.split(512), labeler, num_classes=4, n=2048, progress=False
    )
    features = ErasedEncoder(encoder, eraser).eval()(fit_images).detach().double()
    labels = labeler(fit_images)
    means = torch.stack([features[labels == c].mean(0) for c in range(4)])
    assert torch.allclose(means, means.mean(0, keepdim=True).expand_as(means), atol=1e-4)


def test_stream_batches_use_the_first_view(setting):
    encoder, _, fit_images, labeler = setting
    views = torch.stack([fit_images[:512], torch.rand(512, 3, 32, 32)], 1)
    from_stream = fit_feature_eraser(
        encoder, [{"views": views, "labels": torch.zeros(512)}], labeler, 4, n=512, progress=False
    )
    from_images = fit_feature_eraser(encoder, [fit_images[:512]], labeler, 4, n=512, progress=False)
    assert torch.allclose(from_stream.edit_matrix(), from_images.edit_matrix())


def test_bad_inputs_are_clear_errors(setting):
    encoder, _, fit_images, labeler = setting
    with pytest.raises(ValueError, match="ran out"):
        fit_feature_eraser(encoder, [fit_images[:64]], labeler, 4, n=128, progress=False)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        fit_feature_eraser(encoder, [fit_images[:256]], labeler, 3, n=256, progress=False)
    with pytest.raises(ValueError, match="views"):
        fit_feature_eraser(encoder, [{"images": fit_images[:8]}], labeler, 4, n=8, progress=False)
    with pytest.raises(ValueError, match="n must be"):
        fit_feature_eraser(encoder, [fit_images[:8]], labeler, 4, n=1, progress=False)
    with pytest.raises(ValueError, match="labeler returned"):
        fit_feature_eraser(
            encoder, [fit_images[:8]], lambda x: torch.zeros(3), 4, n=8, progress=False
        )


def test_saved_eraser_loads_back_identical(setting, tmp_path):
    encoder, _, fit_images, labeler = setting
    eraser = fit_feature_eraser(encoder, [fit_images[:512]], labeler, 4, n=512, progress=False)
    path = save_feature_eraser(
        eraser, tmp_path / "sub" / "eraser.safetensors", {"protected": "texture"}
    )
    loaded, provenance = load_feature_eraser(path)
    assert provenance == {"protected": "texture"}
    x = torch.randn(16, eraser.dim_, dtype=torch.float64)
    assert torch.equal(loaded(x), eraser(x))
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="not a feature eraser"):
        load_feature_eraser(tmp_path / "other.safetensors")

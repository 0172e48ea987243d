"""Learned latent walks: edits, learning through the generator, walk cards, walk views, fidelity,
CLI."""

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import steering
from fairgen import load_generator
from fairgen.cli import main
from fairgen.stream import Stream, StreamSpec, make_spec
from fairgen.views import ViewRecipe, make_view_latents
from fairgen.walks import (
    DEFAULT_ALPHAS,
    TRANSFORMATIONS,
    LatentWalks,
    WalkLearner,
    apply_edit,
    check_differentiable,
    image_fidelity,
    load_walks,
    save_walks,
)
from fairgen.world import World, load_judges
from fairgen.world.walk_fidelity import fit_line, object_moments, walk_fidelity

FEW = settings(max_examples=15, deadline=None)
TINY_BIGGAN = dict(
    z_dim=16,
    channel_width=4,
    num_classes=10,
    attention_layer_position=2,
    layers=[[False, 16, 16], [True, 16, 8], [True, 8, 4], [True, 4, 2], [False, 2, 1]],
)


@pytest.fixture(scope="module")
def generator():
    return load_generator("world-sprites-32")


@pytest.fixture(scope="module")
def images():
    return World(32).sample(8, seed=3).images


@pytest.fixture(scope="module")
def learned(generator):
    """Walks for three edits after a short run (enough to show the direction and the fit)."""
    return WalkLearner(["shift_x", "hue", "zoom"], steps=60, batch_size=16, progress=False).fit(
        generator
    )


@pytest.fixture(scope="module")
def card(generator, learned, tmp_path_factory):
    return save_walks(
        learned.walks_,
        tmp_path_factory.mktemp("walks") / "walks",
        generator,
        {"training": {"final_loss": learned.final_loss_}},
    )


@pytest.fixture(scope="module")
def tiny_biggan():
    biggan = pytest.importorskip("pytorch_pretrained_biggan")
    from fairgen.generators.biggan import BigGANGenerator

    torch.manual_seed(0)
    model = biggan.BigGAN(biggan.BigGANConfig(**TINY_BIGGAN))
    with (
        torch.no_grad()
    ):  # as tests/test_biggan.py: valid statistics, initialised norms, converged sigma
        for name, buffer in model.named_buffers():
            if name.endswith("running_means"):
                buffer.normal_(0.0, 0.5)
            elif name.endswith("running_vars"):
                buffer.uniform_(0.5, 2.0)
        model.generator.bn.weight.fill_(1.0)
        model.generator.bn.bias.zero_()
        for module in model.modules():
            if hasattr(module, "weight_orig"):
                u, _, vh = torch.linalg.svd(module.weight_orig.flatten(1))
                module.weight_u.copy_(u[:, 0])
                module.weight_v.copy_(vh[0])
    return BigGANGenerator(model.eval(), name="tiny-biggan", truncation=0.5)


def random_walks(latent_dim=6, classes=1, names=("zoom", "shift_x", "hue"), seed=0):
    directions = torch.randn(
        len(names), classes, latent_dim, generator=torch.Generator().manual_seed(seed)
    )
    return LatentWalks(directions, names, {t: DEFAULT_ALPHAS[t] for t in names})


class NoGradGenerator:
    """A generator whose images carry no gradient (it runs under torch.no_grad)."""

    def __init__(self, inner):
        self.inner = inner
        for name in (
            "name",
            "latent_dim",
            "num_classes",
            "resolution",
            "latent_space",
            "checksum",
            "device",
        ):
            setattr(self, name, getattr(inner, name))

    def sample_latents(self, n, generator=None):
        return self.inner.sample_latents(n, generator)

    def synthesize(self, z, y=None):
        with torch.no_grad():
            return self.inner.synthesize(z, y)


class Interrupting(NoGradGenerator):
    """The same generator, differentiable, but 'killed' after ``calls`` syntheses."""

    def __init__(self, inner, calls):
        super().__init__(inner)
        self.calls = calls

    def synthesize(self, z, y=None):
        self.calls -= 1
        if self.calls < 0:
            raise KeyboardInterrupt
        return self.inner.synthesize(z, y)


# ---------------------------------------------------------------- edits


@pytest.mark.parametrize("name", TRANSFORMATIONS)
def test_an_edit_with_alpha_zero_is_the_identity(name, images):
    edited, mask = apply_edit(name, images, torch.zeros(len(images)))
    torch.testing.assert_close(edited, images, atol=1e-5, rtol=0)
    assert bool((mask == 1).all())


def test_a_shift_by_whole_pixels_moves_the_image_and_masks_what_left_the_frame(images):
    edited, mask = apply_edit("shift_x", images, torch.full((len(images),), 3 / 32))
    torch.testing.assert_close(edited[..., 3:], images[..., :-3], atol=1e-5, rtol=0)
    assert bool((mask[..., :3] == 0).all()) and bool((mask[..., 3:] == 1).all())
    edited, mask = apply_edit("shift_y", images, torch.full((len(images),), -2 / 32))  # up
    torch.testing.assert_close(edited[..., :-2, :], images[..., 2:, :], atol=1e-5, rtol=0)
    assert bool((mask[..., -2:, :] == 0).all())


@FEW
@given(name=st.sampled_from(TRANSFORMATIONS), scale=st.floats(-1.0, 1.0))
def test_edits_keep_the_image_contract_and_a_binary_mask(name, scale, images):
    low, high = DEFAULT_ALPHAS[name]
    edited, mask = apply_edit(
        name, images, torch.full((len(images),), (low + high) / 2 + scale * (high - low) / 2)
    )
    assert edited.shape == images.shape and mask.shape == (len(images), 1, 32, 32)
    assert float(edited.min()) >= 0 and float(edited.max()) <= 1
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


# ---------------------------------------------------------------- the measurement, calibrated on
# known answers


def test_object_moments_read_known_factor_changes_of_rendered_world_images():
    """Render the same scenes with x, y, size and hue changed by known amounts; the moments recover
    them."""
    from fairgen.world.render import render, sample_factors

    factors = sample_factors(400, torch.Generator().manual_seed(0))
    delta = torch.linspace(-0.08, 0.08, 400)
    before = object_moments(render(factors, 64))
    moved = object_moments(
        render({**factors, "x": factors["x"] + delta, "y": factors["y"] - delta}, 64)
    )
    grown = object_moments(render({**factors, "size": factors["size"] * torch.exp2(delta)}, 64))
    for achieved, want in (
        (moved["x"] - before["x"], 1.0),
        (moved["y"] - before["y"], -1.0),
        (torch.log2(grown["scale"] / before["scale"]), 1.0),
    ):
        slope, _, r2 = fit_line(delta.numpy(), achieved.numpy())
        assert slope == pytest.approx(want, abs=0.03) and r2 > 0.99
    images = render(factors, 32)
    turned = object_moments(apply_edit("hue", images, delta)[0])
    turns = (
        torch.remainder(turned["angle"] - object_moments(images)["angle"] + math.pi, 2 * math.pi)
        - math.pi
    )
    slope, _, r2 = fit_line(delta.numpy(), (turns / (2 * math.pi)).numpy())
    assert slope == pytest.approx(1.0, abs=0.02) and r2 > 0.99


# ---------------------------------------------------------------- learning


def test_a_learned_walk_does_its_edit_on_the_embedded_generator(generator, learned):
    table = walk_fidelity(generator, learned.walks_, n=200)
    assert (table["edit_slope"] - 1).abs().max() < 0.05  # the measurement itself is calibrated
    for t in (
        "shift_x",
        "hue",
        "zoom",
    ):  # 60 steps: direction right and near the linear ceiling (~0.87)
        assert table.loc[t, "slope"] > 0.3 and table.loc[t, "r2"] > 0.65, table
    assert (table["texture_kept"] == 1).all() and (table["class_kept"] == 1).all()
    assert (table["relative_error"] < 1).all()


def test_walks_with_alpha_zero_are_the_identity(learned):
    z = torch.randn(5, 6)
    for t in learned.walks_.transformations:
        assert torch.equal(learned.walks_.move(z, None, t, torch.zeros(5)), z)


def test_walks_are_deterministic_by_seed(generator):
    def fit(seed):
        return WalkLearner(
            ["shift_y", "rotate"], steps=3, batch_size=4, seed=seed, progress=False
        ).fit(generator)

    first, again, other = fit(0), fit(0), fit(1)
    assert torch.equal(first.walks_.directions, again.walks_.directions)
    assert not torch.equal(first.walks_.directions, other.walks_.directions)


def test_an_interrupted_run_resumes_from_its_checkpoint_bit_identically(generator, tmp_path):
    settings = dict(
        transformations=["zoom", "brightness"],
        steps=6,
        batch_size=4,
        checkpoint_every=3,
        progress=False,
    )
    whole = WalkLearner(**settings).fit(generator)
    path = tmp_path / "walks.ckpt.safetensors"
    with pytest.raises(KeyboardInterrupt):  # 1 check + 2 syntheses per step: dies during step 5
        WalkLearner(**settings, checkpoint=path).fit(Interrupting(generator, 1 + 2 * 4 + 1))
    resumed = WalkLearner(**settings, checkpoint=path).fit(generator)
    assert resumed.resumed_from_ == 3
    assert torch.equal(resumed.walks_.directions, whole.walks_.directions)
    assert torch.equal(resumed.loss_history_, whole.loss_history_)
    with pytest.raises(ValueError, match="other settings"):
        WalkLearner(**{**settings, "steps": 9}, checkpoint=path).fit(generator)


def test_per_class_walks_have_one_direction_per_class(generator):
    learner = WalkLearner(["shift_x"], per_class=True, steps=2, batch_size=8, progress=False).fit(
        generator
    )
    assert learner.walks_.directions.shape == (1, generator.num_classes, generator.latent_dim)
    with pytest.raises(ValueError, match="per class"):
        learner.walks_.move(torch.zeros(2, 6), None, "shift_x", torch.ones(2))


def test_walks_learn_through_a_tiny_biggan_and_report_image_error(tiny_biggan):
    learner = WalkLearner(["zoom", "hue"], steps=2, batch_size=4, progress=False).fit(tiny_biggan)
    assert (
        learner.walks_.directions.shape == (2, 1, 16) and learner.walks_.directions.abs().sum() > 0
    )
    errors = image_fidelity(tiny_biggan, learner.walks_, n=8)
    assert all(
        math.isfinite(e["error"]) and math.isfinite(e["no_walk_error"]) for e in errors.values()
    )


# ---------------------------------------------------------------- cards


def test_a_walk_card_round_trips(generator, learned, card):
    walks, data = load_walks(card, generator=generator)
    assert torch.equal(walks.directions, learned.walks_.directions)
    assert walks.transformations == learned.walks_.transformations
    assert walks.alpha_ranges == learned.walks_.alpha_ranges
    assert data["generator"] == {"name": generator.name, "sha256": generator.checksum}
    assert set(data["training"]["final_loss"]) == {"shift_x", "hue", "zoom"}


def test_a_walk_card_is_refused_on_another_generator(card, tiny_biggan):
    with pytest.raises(ValueError, match="was learned on generator"):
        load_walks(card, generator=tiny_biggan)


def test_a_walk_card_whose_sha_does_not_match_is_refused(generator, card, tmp_path):
    with pytest.raises(ValueError, match="does not match the SHA-256 pinned"):
        load_walks(card, generator=generator, sha256="0" * 64)
    spec = make_spec(generator, walks=card, views={"kinds": ["anchor", "walk"]})
    spec.walks_sha256 = "f" * 64
    with pytest.raises(ValueError, match="does not match the SHA-256 pinned"):
        Stream.from_spec(spec, 4, generator=generator)
    copy = tmp_path / "walks.json"  # tensors altered behind the card's back
    copy.write_text(card.read_text())
    (tmp_path / "walks.safetensors").write_bytes(
        card.with_suffix(".safetensors").read_bytes()[:-4] + b"\0\0\0\0"
    )
    with pytest.raises(ValueError, match="does not match the SHA-256 recorded"):
        load_walks(copy, generator=generator)


def test_a_walk_card_cannot_point_outside_its_folder(generator, card, tmp_path):
    data = json.loads(card.read_text())
    data["tensors"]["file"] = "../../etc/passwd"
    (tmp_path / "evil.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="inside the card's folder"):
        load_walks(tmp_path / "evil.json", generator=generator)


# ---------------------------------------------------------------- views and streams


@FEW
@given(compose=st.integers(1, 3), seed=st.integers(0, 2**31))
def test_a_walk_view_moves_along_distinct_walks_with_alphas_in_range(compose, seed):
    walks = random_walks()
    z = torch.randn(16, 6, generator=torch.Generator().manual_seed(seed))
    moved = walks.random_walk(z, None, torch.Generator().manual_seed(seed), compose)
    basis = walks.directions[:, 0].T  # [d, T]
    alpha = torch.linalg.lstsq(basis, (moved - z).T).solution.T  # [16, T]
    assert torch.allclose(basis @ alpha.T, (moved - z).T, atol=1e-4)  # in the span of the walks
    used = alpha.abs() > 1e-5
    assert bool((used.sum(1) <= compose).all())
    # a walk whose random alpha lands within 1e-5 of 0 is invisible here, so most rows, not all
    assert int((used.sum(1) == compose).sum()) >= 14
    for i, t in enumerate(walks.transformations):
        low, high = walks.alpha_ranges[t]
        a = alpha[used[:, i], i]
        assert bool(((a >= low - 1e-4) & (a <= high + 1e-4)).all())


def test_a_recipe_mixing_walk_neighbour_and_flip_views_has_the_expected_shape_and_labels(
    generator, card, tmp_path
):
    judges = load_judges()
    steerer, _ = steering.fit_steerer(
        generator, judges["texture"].predict, 3000, mode="balance", progress=False
    )
    eraser = steering.save_card(
        steerer,
        tmp_path / "texture",
        {"generator": {"name": generator.name, "sha256": generator.checksum}},
    )
    views = {
        "kinds": ["anchor", "walk", "neighbour", "flip"],
        "sigma": 0.5,
        "truncate": 2.0,
        "walk_compose": 2,
    }
    spec = StreamSpec.load(
        make_spec(generator, eraser=eraser, walks=card, views=views, augment="none").save(
            tmp_path / "s.json"
        )
    )
    batch = Stream.from_spec(spec, 12, generator=generator).next_batch()
    assert batch["views"].shape == (12, 4, 3, 32, 32) and batch["labels"].shape == (12,)
    assert (
        batch["labels"].dtype == torch.int64 and int(batch["labels"].max()) < generator.num_classes
    )
    again = Stream.from_spec(spec, 12, generator=generator).next_batch()
    assert torch.equal(batch["views"], again["views"])  # same spec, same batch
    anchor = generator.synthesize(batch["latents"], batch["labels"])
    assert torch.allclose(
        batch["views"][:, 0], anchor, atol=1e-5
    )  # the steered anchor (batched with the other views)
    walked = judges["shape"].predict(batch["views"][:, 1])  # walks keep the class
    assert torch.equal(walked, batch["labels"])


def test_walk_view_latents_start_from_the_anchor(card, generator):
    walks, _ = load_walks(card, generator=generator)
    z, y = torch.randn(10, 6), torch.arange(10) % 4
    recipe = ViewRecipe(kinds=("anchor", "walk"), walk_transformations=("shift_x",))
    latents = make_view_latents(z, y, recipe, torch.Generator().manual_seed(0), walks=walks)
    assert latents.shape == (10, 2, 6) and torch.equal(latents[:, 0], z)
    step = latents[:, 1] - z
    direction = walks.directions[walks.index("shift_x"), 0]
    assert torch.allclose(
        step, (step @ direction / direction.dot(direction))[:, None] * direction, atol=1e-5
    )


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"transformations": ["zoom", "blur"]}, "must be one of"),
        ({"transformations": "zoom"}, "non-empty list"),
        ({"transformations": []}, "non-empty list"),
        ({"alpha_ranges": {"zoom": (0.2, 0.2)}}, "is empty"),
        ({"alpha_ranges": {"zoom": (0.3, -0.3)}}, "is empty"),
        ({"alpha_ranges": {"zoom": (0.0, math.nan)}}, "must be finite"),
        ({"alpha_ranges": {"zoom": (-math.inf, 0.0)}}, "must be finite"),
        ({"alpha_ranges": {"zoom": "wide"}}, "pair"),
        ({"alpha_ranges": {"hue": (-0.1, 0.1)}}, "not learned"),
        ({"steps": 0}, "steps must be"),
        ({"lr": math.nan}, "lr must be"),
    ],
)
def test_bad_learner_settings_are_clear_errors(generator, options, match):
    settings = {
        "transformations": ["zoom"],
        "steps": 1,
        "batch_size": 2,
        "progress": False,
        **options,
    }
    with pytest.raises(ValueError, match=match):
        WalkLearner(**settings).fit(generator)


def test_a_generator_that_is_not_differentiable_is_a_clear_error(generator):
    with pytest.raises(ValueError, match="not differentiable"):
        check_differentiable(NoGradGenerator(generator))
    with pytest.raises(ValueError, match="not differentiable"):
        WalkLearner(["zoom"], steps=1, progress=False).fit(NoGradGenerator(generator))


def test_bad_edit_and_view_inputs_are_clear_errors(images, generator):
    with pytest.raises(ValueError, match="must be one of"):
        apply_edit("blur", images, torch.zeros(len(images)))
    with pytest.raises(ValueError, match="one step per image"):
        apply_edit("zoom", images, torch.zeros(3))
    with pytest.raises(ValueError, match="need a walk card"):
        make_view_latents(
            torch.zeros(2, 6),
            torch.zeros(2, dtype=torch.long),
            ViewRecipe(kinds=("anchor", "walk")),
            torch.Generator(),
        )
    with pytest.raises(ValueError, match="walk_compose"):
        ViewRecipe(kinds=("anchor", "walk"), walk_compose=0)
    with pytest.raises(ValueError, match="exceeds"):
        ViewRecipe(kinds=("anchor", "walk"), walk_compose=2, walk_transformations=("zoom",))
    with pytest.raises(ValueError, match="need a walk card"):
        StreamSpec(views={"kinds": ["anchor", "walk"]})
    with pytest.raises(ValueError, match="compose must lie"):
        random_walks().random_walk(torch.zeros(2, 6), None, torch.Generator(), compose=4)


def test_views_asking_for_walks_the_card_lacks_are_refused(generator, card):
    spec = make_spec(
        generator,
        walks=card,
        views={"kinds": ["anchor", "walk"], "walk_transformations": ["rotate"]},
    )
    with pytest.raises(ValueError, match="lacks"):
        Stream.from_spec(spec, 4, generator=generator)


# ---------------------------------------------------------------- command line


def test_the_walks_command_learns_measures_and_draws(tmp_path, capsys):
    stem = tmp_path / "card" / "walks"
    common = ["--card", str(stem), "--quiet"]
    assert (
        main(
            [
                "walks",
                "learn",
                *common,
                "--transformations",
                "shift_x",
                "hue",
                "--alpha",
                "hue=-0.05:0.05",
                "--steps",
                "3",
                "--batch-size",
                "4",
                "--fidelity-n",
                "40",
                "--checkpoint",
                str(tmp_path / "ck.safetensors"),
            ]
        )
        == 0
    )
    data = json.loads(stem.with_suffix(".json").read_text())
    assert data["alpha_ranges"]["hue"] == [-0.05, 0.05] and len(data["fidelity"]["table"]) == 2
    assert main(["walks", "fidelity", *common, "--fidelity-n", "40"]) == 0
    assert "shift_x" in capsys.readouterr().out
    assert main(["walks", "show", *common, "--out", str(tmp_path / "grids")]) == 0
    assert (tmp_path / "grids" / "walks.png").stat().st_size > 0  # --out is a folder
    assert f"wrote {tmp_path / 'grids' / 'walks.png'}" in capsys.readouterr().out
    assert main(["walks", "learn", *common, "--alpha", "zoom=0.3"]) == 2
    assert main(["walks", "learn", *common, "--alpha", "zoom=0.3:0.1", "--steps", "1"]) == 2


def test_a_spec_with_a_walk_card_travels_with_its_folder(generator, card, tmp_path):
    import shutil

    views = {"kinds": ["anchor", "walk"], "sigma": 0.5, "truncate": 2.0}
    spec_path = make_spec(generator, walks=card, views=views, augment="none").save(
        tmp_path / "here" / "s.json"
    )
    stored = json.loads(spec_path.read_text())
    assert not Path(stored["walks"]).is_absolute()  # named relative to the spec, copied beside it
    moved = tmp_path / "elsewhere"
    shutil.copytree(spec_path.parent, moved)
    shutil.rmtree(spec_path.parent)
    batch = Stream.from_spec(StreamSpec.load(moved / "s.json"), 4, generator=generator).next_batch()
    assert batch["views"].shape == (4, 2, 3, 32, 32)

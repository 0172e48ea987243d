"""StreamSpec (the shareable card) and Stream (seeded, sharded, resumable multiview batches)."""

import json
import shutil
from itertools import pairwise
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import steering
from fairgen import cramers_v, load_generator
from fairgen.stream import Stream, StreamSpec, make_spec
from fairgen.world.judges import load_judges

BATCH = 8
FEW = settings(max_examples=12, deadline=None)


@pytest.fixture(scope="module")
def generator():
    return load_generator("world-sprites-32")


@pytest.fixture(scope="module")
def judges():
    return load_judges()


@pytest.fixture(scope="module")
def balance_card(generator, judges, tmp_path_factory):
    """A balance eraser card for texture, fitted on a small sample (quick, and enough to steer)."""
    steerer, _ = steering.fit_steerer(
        generator, judges["texture"].predict, 3000, mode="balance", progress=False
    )
    provenance = {"generator": {"name": generator.name, "sha256": generator.checksum}}
    return steering.save_card(steerer, tmp_path_factory.mktemp("card") / "texture", provenance)


def run(spec, steps, batch_size=BATCH, **options):
    stream = Stream.from_spec(spec, batch_size, **options)
    return [stream.next_batch() for _ in range(steps)]


def same_batches(a, b):
    return all(
        x["step"] == y["step"]
        and all(torch.equal(x[k], y[k]) for k in ("views", "labels", "latents"))
        for x, y in zip(a, b, strict=True)
    )


def rows(batches):
    """Every anchor latent of the batches, as hashable tuples (one per sample)."""
    return [tuple(z.tolist()) for batch in batches for z in batch["latents"]]


# ---------------------------------------------------------------- the spec (card)

specs = st.builds(
    StreamSpec,
    seed=st.integers(0, 2**31),
    classes=st.sampled_from([None, [0, 2], [3]]),
    views=st.fixed_dictionaries(
        {
            "kinds": st.lists(st.sampled_from(["anchor", "neighbour"]), min_size=2, max_size=4),
            "sigma": st.floats(0.01, 2.0),
            "truncate": st.floats(0.1, 4.0),
        }
    ),
    augment=st.sampled_from(["light", "none", {"crop": False, "flip_p": 0.25}]),
    resolution=st.sampled_from([16, 32]),
    refresh=st.floats(0.01, 1.0),
    buffer_size=st.sampled_from([None, 64]),
)


@FEW
@given(spec=specs)
def test_spec_equals_itself_after_a_save_load_round_trip(spec, tmp_path_factory):
    path = spec.save(tmp_path_factory.mktemp("spec") / "stream.json")
    loaded = StreamSpec.load(path)
    assert loaded == spec
    assert loaded.to_dict() == spec.to_dict()


def test_spec_round_trip_accepts_view_and_augment_recipe_objects(tmp_path):
    from fairgen.augment import PRESETS
    from fairgen.views import ViewRecipe

    spec = StreamSpec(
        views=ViewRecipe(("anchor", "neighbour"), sigma=0.3), augment=PRESETS["light"]
    )
    assert StreamSpec.load(spec.save(tmp_path / "s.json")) == spec
    assert spec.view_recipe == ViewRecipe(("anchor", "neighbour"), sigma=0.3)


def test_spec_with_numpy_integers_is_still_plain_json(tmp_path):
    import numpy as np

    spec = StreamSpec(
        classes=list(np.arange(3)), seed=np.int64(4), buffer_size=np.int32(64), refresh=0.5
    )
    assert StreamSpec.load(spec.save(tmp_path / "s.json")) == spec


def test_unknown_spec_keys_are_rejected(tmp_path):
    data = {**StreamSpec().to_dict(), "temperature": 0.5}
    with pytest.raises(ValueError, match="temperature"):
        StreamSpec.from_dict(data)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="temperature"):
        StreamSpec.load(path)
    with pytest.raises(ValueError, match="unknown view recipe keys"):
        StreamSpec(views={"kinds": ["anchor", "anchor"], "blur": 1})


def test_missing_or_malformed_spec_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        StreamSpec.load(tmp_path / "nowhere.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        StreamSpec.load(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        StreamSpec.load(tmp_path / "list.json")


@pytest.mark.parametrize(
    "bad",
    [
        {"views": {"kinds": ["anchor"]}},  # V < 2
        {"views": {"kinds": "anchor"}},
        {"views": {"kinds": ["anchor", "flip"]}},  # flip views need an eraser card
        {"refresh": 0.0},
        {"refresh": 1.5},
        {"classes": []},
        {"classes": [0, 1], "class_weights": [1.0]},
        {"class_weights": [1.0, 1.0, 1.0, 1.0]},  # weights without classes
        {"classes": [0, 1], "class_weights": [-1.0, 2.0]},
        {"buffer_size": 0},
        {"resolution": 0},
        {"seed": -1},
        {"eraser": "card.json"},  # without its SHA-256
        {"augment": "heavy"},
        {"views": ["anchor", "neighbour"]},  # a list, not a recipe
        {"version": 2},  # written by a newer fairgen
    ],
)
def test_invalid_spec_fields_raise_value_error(bad):
    with pytest.raises(ValueError):
        StreamSpec(**bad)


# ---------------------------------------------------------------- what the stream refuses


def test_stream_refuses_a_generator_whose_checksum_differs_from_the_spec(generator):
    spec = StreamSpec(generator_sha256="0" * 64)
    with pytest.raises(ValueError, match="SHA-256"):
        Stream.from_spec(spec, BATCH)
    with pytest.raises(ValueError, match="SHA-256"):
        Stream.from_spec(spec, BATCH, generator=generator)


def test_stream_refuses_an_eraser_card_that_no_longer_matches_the_spec(
    generator, balance_card, tmp_path
):
    card = tmp_path / "card.json"
    shutil.copy(balance_card, card)
    shutil.copy(balance_card.with_suffix(".safetensors"), tmp_path / "card.safetensors")
    spec = make_spec(generator, eraser=card)
    Stream.from_spec(spec, BATCH, generator=generator)  # as pinned: accepted
    with pytest.raises(ValueError, match="SHA-256"):
        Stream.from_spec(
            StreamSpec.from_dict({**spec.to_dict(), "eraser_sha256": "f" * 64}),
            BATCH,
            generator=generator,
        )
    card.write_text(card.read_text().replace('"balance"', '"erase"'))  # edited after pinning
    with pytest.raises(ValueError, match="SHA-256"):
        Stream.from_spec(spec, BATCH, generator=generator)


def test_stream_refuses_an_eraser_card_fitted_on_another_generator(
    generator, balance_card, tmp_path
):
    card = json.loads(balance_card.read_text())
    card["generator"]["sha256"] = "1" * 64
    (tmp_path / "other.json").write_text(json.dumps(card))
    shutil.copy(balance_card.with_suffix(".safetensors"), tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="fitted on a generator with SHA-256 1111"):
        make_spec(generator, eraser=tmp_path / "other.json")  # refused when the card is made
    from plumbing.files import sha256_file

    spec = StreamSpec(
        generator_sha256=generator.checksum,
        eraser=str(tmp_path / "other.json"),
        eraser_sha256=sha256_file(tmp_path / "other.json"),
    )  # pinned by hand, fitted elsewhere
    with pytest.raises(ValueError, match="fitted on generator"):
        Stream.from_spec(spec, BATCH, generator=generator)


def test_missing_or_unreadable_eraser_card_gives_a_clear_error(generator, balance_card, tmp_path):
    from plumbing.files import sha256_file

    def spec_for(path):
        pin = sha256_file(path) if path.is_file() else "0" * 64
        return StreamSpec(generator_sha256=generator.checksum, eraser=str(path), eraser_sha256=pin)

    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        Stream.from_spec(spec_for(tmp_path / "nowhere.json"), BATCH, generator=generator)
    with pytest.raises(FileNotFoundError, match="eraser card"):
        Stream.from_spec(
            spec_for(tmp_path), BATCH, generator=generator
        )  # a directory is not a card
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\x00\xff not a card")
    with pytest.raises(ValueError, match="not valid JSON"):
        Stream.from_spec(spec_for(garbage), BATCH, generator=generator)
    lonely = tmp_path / "lonely.json"
    shutil.copy(balance_card, lonely)  # the JSON without its tensors file
    with pytest.raises(FileNotFoundError, match="lonely.safetensors"):
        Stream.from_spec(spec_for(lonely), BATCH, generator=generator)


@pytest.mark.parametrize(
    "batch_size, options",
    [
        (9, {"world_size": 2}),  # not divisible by world_size
        (8, {"world_size": 3}),
        (0, {}),
        (8, {"rank": 2, "world_size": 2}),
        (8, {"start_step": -1}),
        (8.0, {}),
    ],
)
def test_stream_refuses_bad_batch_and_rank_settings(generator, batch_size, options):
    with pytest.raises(ValueError):
        Stream.from_spec(StreamSpec(), batch_size, generator=generator, **options)


def test_stream_refuses_a_buffer_smaller_than_the_batch_and_classes_out_of_range(generator):
    with pytest.raises(ValueError, match="buffer_size"):
        Stream.from_spec(StreamSpec(buffer_size=4, refresh=0.5), BATCH, generator=generator)
    with pytest.raises(ValueError, match="classes"):
        Stream.from_spec(StreamSpec(classes=[0, 7]), BATCH, generator=generator)


# ---------------------------------------------------------------- batches


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_batches_have_the_documented_structure(generator, dtype):
    spec = StreamSpec(
        views={"kinds": ["anchor", "neighbour", "neighbour"]},
        resolution=16,
        classes=[1, 3],
        class_weights=[1.0, 0.0],
    )
    batches = run(spec, 2, generator=generator, dtype=dtype)
    for step, batch in enumerate(batches):
        views, labels, latents = batch["views"], batch["labels"], batch["latents"]
        assert views.shape == (BATCH, 3, 3, 16, 16) and views.dtype == dtype
        assert 0 <= float(views.min()) and float(views.max()) <= 1
        assert labels.shape == (BATCH,) and labels.dtype == torch.int64
        assert (labels == 1).all()  # class 3 has weight 0
        assert latents.shape == (BATCH, generator.latent_dim) and latents.dtype == torch.float32
        assert batch["step"] == step
        assert {t.device.type for t in (views, labels, latents)} == {"cpu"}


def test_same_spec_gives_identical_batches_in_two_streams(generator, balance_card, tmp_path):
    spec = make_spec(
        generator,
        eraser=balance_card,
        views={"kinds": ["neighbour", "flip"]},
        augment="light",
        seed=3,
    )
    loaded = StreamSpec.load(spec.save(tmp_path / "stream.json"))
    assert same_batches(run(spec, 3), run(loaded, 3))  # each stream loads the generator itself


def test_different_seeds_give_different_batches(generator):
    a = run(StreamSpec(seed=0), 1, generator=generator)[0]
    b = run(StreamSpec(seed=1), 1, generator=generator)[0]
    assert not torch.equal(a["latents"], b["latents"])
    assert not torch.equal(a["views"], b["views"])


REPLAY = [(1.0, None), (1.0, 3 * BATCH), (0.25, 4 * BATCH), (0.3, 2 * BATCH + 3), (0.05, BATCH)]
_reference = {}


def reference_run(generator, refresh, buffer_size, steps=16):
    key = (refresh, buffer_size)
    if key not in _reference:
        spec = StreamSpec(refresh=refresh, buffer_size=buffer_size, augment="none", resolution=16)
        _reference[key] = run(spec, steps, generator=generator)
    return _reference[key]


@FEW
@given(replay=st.sampled_from(REPLAY), k=st.integers(0, 13))
def test_resuming_at_step_k_equals_the_uninterrupted_run(generator, replay, k):
    refresh, buffer_size = replay
    uninterrupted = reference_run(generator, refresh, buffer_size)
    spec = StreamSpec(refresh=refresh, buffer_size=buffer_size, augment="none", resolution=16)
    resumed = run(spec, 3, generator=generator, start_step=k)
    assert same_batches(resumed, uninterrupted[k : k + 3])


@pytest.mark.parametrize("refresh, buffer_size", [(1.0, None), (0.25, 4 * BATCH)])
def test_ranks_get_different_deterministic_halves_of_the_batch(generator, refresh, buffer_size):
    spec = StreamSpec(refresh=refresh, buffer_size=buffer_size, augment="none", resolution=16)
    shards = [run(spec, 3, 2 * BATCH, generator=generator, rank=r, world_size=2) for r in (0, 1)]
    for shard in shards:
        assert all(batch["views"].shape[0] == BATCH for batch in shard)  # half of 2 * BATCH
    assert not set(rows(shards[0])) & set(rows(shards[1]))
    again = run(spec, 3, 2 * BATCH, generator=generator, rank=1, world_size=2)
    assert same_batches(again, shards[1])


def test_refresh_below_one_reuses_samples_and_refresh_one_never_repeats(generator):
    steps = 6
    fresh = run(StreamSpec(augment="none", resolution=16), steps, generator=generator)
    assert len(set(rows(fresh))) == steps * BATCH

    refresh, buffer_size = 0.25, 4 * BATCH
    replayed = run(
        StreamSpec(refresh=refresh, buffer_size=buffer_size, augment="none", resolution=16),
        steps,
        generator=generator,
    )
    repeats_next_step = [len(set(rows([a])) & set(rows([b]))) for a, b in pairwise(replayed)]
    assert sum(repeats_next_step) > 0
    new_per_step = int(
        refresh * BATCH
    )  # a step brings at most this many new samples into the buffer
    assert len(set(rows(replayed))) <= buffer_size + steps * new_per_step < steps * BATCH


def test_unconditional_generators_stream_with_label_zero():
    class Blobs:
        """A tiny unconditional generator: colour from the first three latent coordinates."""

        name, latent_dim, num_classes, resolution, latent_space = "blobs", 4, 0, 8, "z"
        checksum, device = "c0ffee", torch.device("cpu")

        def sample_latents(self, n, generator=None):
            return torch.randn(n, 4, generator=generator)

        def synthesize(self, z, y=None):
            return torch.sigmoid(z[:, :3, None, None]).expand(-1, -1, 8, 8)

    spec = StreamSpec(generator="blobs", generator_sha256="c0ffee", augment="none", resolution=8)
    batch = run(spec, 1, generator=Blobs())[0]
    assert batch["views"].shape == (BATCH, 2, 3, 8, 8)
    assert (batch["labels"] == 0).all()
    with pytest.raises(ValueError, match="unconditional"):
        Stream.from_spec(StreamSpec(generator="blobs", classes=[1]), BATCH, generator=Blobs())


# ---------------------------------------------------------------- steering in the stream


def judged_texture_association(spec, judges, n=1000):
    batch = run(spec, 1, batch_size=n)[0]
    texture = judges["texture"].predict(batch["views"][:, 0])
    return cramers_v(batch["labels"].numpy(), texture.numpy())


def test_balance_card_unties_judged_texture_from_class(generator, judges, balance_card):
    anchors = {"kinds": ["anchor", "anchor"]}
    raw = judged_texture_association(
        make_spec(generator, views=anchors, augment="none", seed=1), judges
    )
    steered = judged_texture_association(
        make_spec(generator, eraser=balance_card, views=anchors, augment="none", seed=1), judges
    )
    assert raw > 0.6  # the generator inherited its training split's bias
    assert steered < 0.25 and steered < raw / 3


def test_flip_views_change_judged_texture_and_keep_the_class(generator, judges, balance_card):
    spec = make_spec(
        generator, eraser=balance_card, views={"kinds": ["anchor", "flip"]}, augment="none", seed=2
    )
    batch = run(spec, 1, batch_size=500)[0]
    anchor, flipped = batch["views"][:, 0], batch["views"][:, 1]
    texture_changed = judges["texture"].predict(anchor) != judges["texture"].predict(flipped)
    class_kept = judges["shape"].predict(flipped) == batch["labels"]
    assert texture_changed.float().mean() > 0.8
    assert class_kept.float().mean() > 0.95


def test_a_spec_finds_its_eraser_card_beside_it(tmp_path, monkeypatch):
    """A spec and its card shared together in one folder load from any working directory."""
    folder = tmp_path / "shared"
    folder.mkdir()
    generator = load_generator("world-sprites-32")
    steerer, _ = steering.fit_steerer(
        generator, load_judges()["texture"].predict, n=2000, progress=False
    )
    steering.save_card(
        steerer,
        folder / "card",
        {"generator": {"name": generator.name, "sha256": generator.checksum}},
    )
    monkeypatch.chdir(folder)
    make_spec(generator, eraser="card.json").save("stream.json")
    monkeypatch.chdir(tmp_path)
    shutil.move(str(folder), str(tmp_path / "moved"))
    spec = StreamSpec.load(tmp_path / "moved" / "stream.json")
    assert Path(spec.eraser).is_file()


def test_flip_views_with_a_labeler_are_confirmed_twins_and_misses_are_reported(
    generator, judges, balance_card
):
    spec = make_spec(
        generator, eraser=balance_card, views={"kinds": ["anchor", "flip"]}, augment="none", seed=2
    )
    texture = judges["texture"].predict
    batches = run(spec, 2, batch_size=64, labeler=texture)
    for batch in batches:
        kept = batch["flip_confirmed"]
        assert (
            kept.shape == (64,)
            and batch["flip_missed"] == int((~kept).sum())
            and kept.float().mean() >= 0.9
        )
        anchor, flipped = batch["views"][:, 0], batch["views"][:, 1]
        assert bool(
            (texture(flipped) != texture(anchor))[kept].all()
        )  # every confirmed twin shows another texture
    again = run(spec, 2, batch_size=64, labeler=texture)
    assert same_batches(batches, again) and all(
        torch.equal(a["flip_confirmed"], b["flip_confirmed"])
        for a, b in zip(batches, again, strict=True)
    )

    def stubborn(
        images,
    ):  # images that read as plain never read otherwise: their anchors cannot be flipped
        return torch.zeros(len(images), dtype=torch.int64)

    buffered = make_spec(
        generator,
        eraser=balance_card,
        views={"kinds": ["anchor", "flip"]},
        augment="none",
        seed=2,
        buffer_size=96,
        refresh=0.5,
    )
    batch = run(buffered, 2, batch_size=32, labeler=stubborn)[-1]
    assert (
        len(batch["labels"]) == 32
        and batch["flip_missed"] == 32
        and not batch["flip_confirmed"].any()
    )
    assert torch.allclose(
        batch["views"][:, 0], batch["views"][:, 1], atol=1e-5
    )  # a missed anchor's flip view is the anchor, flagged


def test_confirmed_flip_views_need_a_classifier_card(generator, tmp_path):
    steerer, _ = steering.fit_steerer(
        generator, load_judges()["texture"].predict, 1200, method="quantile", progress=False
    )
    card = steering.save_card(
        steerer,
        tmp_path / "quantile",
        {"generator": {"name": generator.name, "sha256": generator.checksum}},
    )
    spec = make_spec(generator, eraser=card, views={"kinds": ["anchor", "flip"]}, augment="none")
    with pytest.raises(ValueError, match="confirmed 'flip' views need a classifier eraser card"):
        Stream.from_spec(spec, 8, labeler=load_judges()["texture"].predict)


# ---------------------------------------------------------------- from_spec and the constructor


def test_from_spec_reads_the_file_and_the_constructor_takes_loaded_objects(
    generator, balance_card, tmp_path
):
    from steering.card import load_card

    spec = make_spec(generator, eraser=balance_card, seed=3)
    path = spec.save(tmp_path / "card" / "stream.json")
    from_file = Stream.from_spec(path, BATCH, generator=generator).next_batch()
    steerer, _ = load_card(balance_card, generator=generator)
    by_hand = Stream(spec, BATCH, generator=generator, steerer=steerer).next_batch()
    assert torch.equal(from_file["views"], by_hand["views"])
    assert torch.equal(from_file["latents"], by_hand["latents"])


def test_the_constructor_refuses_a_spec_whose_named_objects_are_missing(generator, balance_card):
    spec = make_spec(generator, eraser=balance_card)
    with pytest.raises(ValueError, match="steerer must be given.*Stream.from_spec"):
        Stream(spec, BATCH, generator=generator)
    with pytest.raises(ValueError, match="generator must be given"):
        Stream(StreamSpec(), BATCH)
    with pytest.raises(ValueError, match="spec must be a StreamSpec"):
        Stream("stream.json", BATCH, generator=generator)

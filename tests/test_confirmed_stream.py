"""A stream whose card is labeler-confirmed: exact batches, same spec and seed -> same batches, a
rank's own shard, the labeler taken from the caller (never run from the card), and training on an
unconditional generator's stream (SimCLR, or SupCon on the keep-labels)."""

import pytest
import torch
from test_steering_confirmed import TinyGenerator, bright, reddish

from fairgen.contrastive import TrainConfig, Trainer
from fairgen.stream import Stream, StreamSpec, make_spec
from steering import fit_steerer, save_card


class NamedTiny(TinyGenerator):
    name, checksum = "tiny", "tiny-sha"

    @property
    def device(self):
        return torch.device("cpu")


@pytest.fixture(scope="module")
def keep_card(tmp_path_factory):
    gen = NamedTiny()
    steerer, _ = fit_steerer(
        gen, bright, n=2000, method="confirmed", keep_labeler=reddish, active=False, progress=False
    )
    folder = tmp_path_factory.mktemp("card")
    provenance = {
        "generator": {"name": gen.name, "sha256": gen.checksum},
        "labelers": {"protected": "mypkg.labels:bright", "keep": "mypkg.labels:reddish"},
    }
    return gen, save_card(steerer, folder / "card", provenance)


def _spec(gen, card, tmp_path, **settings):
    spec = make_spec(
        gen,
        eraser=card,
        views={"kinds": ["anchor", "neighbour"], "sigma": 0.3},
        augment="none",
        resolution=8,
        **settings,
    )
    return StreamSpec.load(spec.save(tmp_path / "stream.json"))


def test_the_spec_names_the_labelers_and_a_stream_never_runs_them_by_itself(keep_card, tmp_path):
    gen, card = keep_card
    spec = _spec(gen, card, tmp_path)
    assert spec.labelers == {"protected": "mypkg.labels:bright", "keep": "mypkg.labels:reddish"}
    with pytest.raises(
        ValueError, match="labeler-confirmed: it needs its labelers.*never runs code"
    ):
        Stream.from_spec(spec, 8, generator=gen)
    with pytest.raises(ValueError, match=r"each of the card's attributes \['keep', 'protected'\]"):
        Stream.from_spec(spec, 8, generator=gen, labeler={"protected": bright})
    assert (
        "labelers" not in make_spec(gen).to_dict()
    )  # specs without a confirmed card read as before


def test_every_batch_is_exact_and_labelled_by_the_keep_labeler(keep_card, tmp_path):
    gen, card = keep_card
    stream = Stream.from_spec(
        _spec(gen, card, tmp_path),
        64,
        generator=gen,
        labeler={"protected": bright, "keep": reddish},
    )
    steerer = stream.steerer
    for _ in range(2):
        batch = stream.next_batch()
        anchors = batch["views"][:, 0]
        assert torch.equal(
            batch["labels"], reddish(anchors)
        )  # the labels are the keep-labels (SupCon's)
        quota = steerer.quotas(64)[0].view(2, 2)  # keep x protected
        seen = torch.zeros(2, 2, dtype=torch.int64).index_put_(
            (batch["labels"], bright(anchors)), torch.ones(64, dtype=torch.int64), accumulate=True
        )
        assert torch.equal(seen, quota)
        assert not torch.equal(
            batch["views"][:, 0], batch["views"][:, 1]
        )  # the neighbour view is synthesized afresh
    assert stream.last_draw_cost_["syntheses_per_kept"] >= 1


def test_same_spec_same_batches_and_ranks_get_their_own_shards(keep_card, tmp_path):
    gen, card = keep_card
    spec = _spec(gen, card, tmp_path, seed=5)
    labeler = {"protected": bright, "keep": reddish}
    a = Stream.from_spec(spec, 32, generator=gen, labeler=labeler).next_batch()
    b = Stream.from_spec(spec, 32, generator=gen, labeler=labeler).next_batch()
    assert torch.equal(a["views"], b["views"]) and torch.equal(a["latents"], b["latents"])
    shards = [
        Stream.from_spec(
            spec, 32, generator=gen, labeler=labeler, rank=r, world_size=2
        ).next_batch()
        for r in (0, 1)
    ]
    assert all(len(s["latents"]) == 16 for s in shards)
    rows = torch.cat([s["latents"] for s in shards])
    assert len(torch.unique(rows, dim=0)) == 32
    for s in shards:  # each rank's batch meets the target by itself
        assert abs(int(bright(s["views"][:, 0]).sum()) - 8) <= 1


@pytest.mark.parametrize("supervised", [False, True])
def test_an_unconditional_stream_trains_simclr_or_supcon_on_keep_labels(
    keep_card, tmp_path, supervised
):
    gen, card = keep_card
    stream = Stream.from_spec(
        _spec(gen, card, tmp_path),
        16,
        generator=gen,
        labeler={"protected": bright, "keep": reddish},
    )
    config = TrainConfig(
        encoder="small_cnn",
        projection_hidden_dim=16,
        projection_dim=8,
        total_steps=2,
        warmup_steps=1,
        augment="none",
        progress=False,
        supervised=supervised,
    )
    trainer = Trainer(config).fit(stream)
    assert trainer.step == 2 and all(
        torch.isfinite(torch.tensor(r["loss"])) for r in trainer.history if "loss" in r
    )


def test_flip_views_and_latent_edits_are_refused_clearly(keep_card, tmp_path):
    gen, card = keep_card
    spec = make_spec(
        gen, eraser=card, views={"kinds": ["anchor", "flip"]}, augment="none", resolution=8
    )
    with pytest.raises(ValueError, match="labeler-confirmed balance card"):
        Stream.from_spec(spec, 8, generator=gen, labeler={"protected": bright, "keep": reddish})
    stream = Stream.from_spec(
        _spec(gen, card, tmp_path), 8, generator=gen, labeler={"protected": bright, "keep": reddish}
    )
    with pytest.raises(ValueError, match="does not edit latents"):
        stream.steerer(torch.zeros(2, 16), torch.zeros(2, dtype=torch.int64))


def make_tiny(device="cpu", **options):
    """An entry point for the command line: ``--generator test_confirmed_stream:make_tiny``."""
    return NamedTiny()


def test_fairgen_steer_fits_an_unconditional_generator_with_a_keep_labeler(tmp_path, capsys):
    import json

    from fairgen.cli import main

    assert (
        main(
            [
                "steer",
                "--generator",
                "test_confirmed_stream:make_tiny",
                "--labeler",
                "test_steering_confirmed:bright",
                "--keep-labeler",
                "test_steering_confirmed:reddish",
                "--method",
                "confirmed",
                "--n",
                "1000",
                "--eval-n",
                "300",
                "--out",
                str(tmp_path / "card"),
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "Cramér V(keep, " in printed and "0.50/0.50" in printed
    card = json.loads((tmp_path / "card" / "eraser_card.json").read_text())
    assert card["method"] == "confirmed" and card["steerer"]["keep"] == "keep"
    assert card["labelers"] == {
        "protected": "test_steering_confirmed:bright",
        "keep": "test_steering_confirmed:reddish",
    }
    assert card["report"]["steered"]["cramers_v_by"]["protected"] < 0.02


def test_blocked_batches_are_exact_repeat_on_resume_and_ranks_stay_disjoint(
    keep_card, tmp_path, monkeypatch
):
    """Batches are parts of blocks filled at once (here 4 batches of 16 a block): every batch meets
    its
    quotas exactly, a stream started at step s gives the uninterrupted stream's batch s (also
    inside a
    block), and two ranks never share a sample."""
    import fairgen.stream

    monkeypatch.setattr(fairgen.stream, "CONFIRMED_BLOCK", 64)
    gen, card = keep_card
    spec, labeler = _spec(gen, card, tmp_path, seed=2), {"protected": bright, "keep": reddish}
    stream = Stream.from_spec(spec, 16, generator=gen, labeler=labeler)
    assert stream.confirmed_block(16) == 4
    batches = [stream.next_batch() for _ in range(6)]
    quota = stream.steerer.quotas(16)[0].view(2, 2)
    for batch in batches:
        anchors = batch["views"][:, 0]
        seen = torch.zeros(2, 2, dtype=torch.int64).index_put_(
            (reddish(anchors), bright(anchors)), torch.ones(16, dtype=torch.int64), accumulate=True
        )
        assert torch.equal(seen, quota)
    assert stream.last_draw_cost_["syntheses_per_kept"] >= 1
    assert len(torch.unique(torch.cat([b["latents"] for b in batches]), dim=0)) == 96
    for s in (2, 5):
        resumed = Stream.from_spec(
            spec, 16, generator=gen, labeler=labeler, start_step=s
        ).next_batch()
        assert torch.equal(resumed["views"], batches[s]["views"]) and torch.equal(
            resumed["latents"], batches[s]["latents"]
        )
    ranks = [
        Stream.from_spec(spec, 32, generator=gen, labeler=labeler, rank=r, world_size=2)
        for r in (0, 1)
    ]
    rows = torch.cat([r.next_batch()["latents"] for r in ranks for _ in range(2)])
    assert len(torch.unique(rows, dim=0)) == 64

"""The trainer learns, resumes exactly, writes checkpoints that are data only, and checks
batches."""

import json
import os
import stat

import pytest
import torch

from fairgen.contrastive import (
    KnnMonitor,
    LossAtChanceWarning,
    NonFiniteError,
    ScheduleChangedWarning,
    TrainConfig,
    Trainer,
    load_encoder,
)


def tiny_config(**overrides) -> TrainConfig:
    base = dict(
        encoder="small_cnn",
        projection_hidden_dim=32,
        projection_dim=16,
        total_steps=6,
        warmup_steps=2,
        augment="light",
        progress=False,
        log_every=1,
    )
    return TrainConfig(**{**base, **overrides})


def batches(n, b=6, v=2, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "views": torch.rand(b, v, 3, size, size, generator=g),
            "labels": torch.randint(0, 3, (b,), generator=g),
            "latents": torch.randn(b, 4, generator=g),
        }
        for _ in range(n)
    ]


def parameters(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


@pytest.mark.parametrize("optimizer", ["sgd", "lars", "adamw"])
def test_resuming_from_a_checkpoint_reproduces_the_uninterrupted_run(tmp_path, optimizer):
    config = tiny_config(optimizer=optimizer, supervised=optimizer == "lars")
    data = batches(6)
    straight = Trainer(config).fit(data, steps=6)

    first = Trainer(config).fit(data[:3], steps=3)
    first.save(tmp_path / "ckpt.pt")
    resumed = Trainer.from_checkpoint(tmp_path / "ckpt.pt")
    assert resumed.step == 3
    resumed.fit(data[3:])  # default: up to total_steps

    assert resumed.step == straight.step == 6
    expected, got = parameters(straight), parameters(resumed)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert not torch.equal(
        parameters(first)["backbone.0.0.weight"], expected["backbone.0.0.weight"]
    )


def test_training_lowers_the_loss_on_a_repeated_batch():
    config = tiny_config(total_steps=15, warmup_steps=0, optimizer="sgd", lr=0.05, augment=None)
    trainer = Trainer(config).fit(batches(1) * 15)
    losses = [record["loss"] for record in trainer.history]
    assert len(losses) == 15 and all(map(torch.isfinite, torch.tensor(losses)))
    assert losses[-1] < losses[0]


def test_checkpoint_is_written_atomically_and_loads_as_plain_data(tmp_path):
    config = tiny_config(checkpoint_dir=str(tmp_path), checkpoint_every=2, total_steps=4)
    (tmp_path / ".checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")  # a killed write
    (tmp_path / "checkpoint.ptxyz.tmp").write_bytes(b"an older killed write")
    Trainer(config).fit(batches(4))
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "checkpoint.pt",
        "metrics.jsonl",
    ]
    mask = os.umask(0)
    os.umask(mask)
    assert (
        stat.S_IMODE((tmp_path / "checkpoint.pt").stat().st_mode) == 0o666 & ~mask
    )  # not mkstemp's 0600
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4 and TrainConfig.from_dict(json.loads(state["config"])) == config


def test_metrics_file_has_one_line_per_logged_step_and_drops_lines_of_a_killed_run(tmp_path):
    config = tiny_config(
        checkpoint_dir=str(tmp_path), checkpoint_every=2, total_steps=6, log_every=1
    )
    data = batches(6)
    Trainer(config).fit(data[:4], steps=4)  # a checkpoint at step 4
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4]
    assert all({"loss", "lr", "images_per_s"} <= r.keys() and r["images_per_s"] > 0 for r in lines)
    with open(tmp_path / "metrics.jsonl", "a") as handle:  # a killed run logged past its checkpoint
        handle.write(json.dumps({"step": 5, "loss": 9.0}) + "\n" + '{"step": 6, "lo')
    Trainer.from_checkpoint(tmp_path / "checkpoint.pt").fit(data[4:])
    steps = [
        json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_tensorboard_events_are_written_when_tensorboard_is_installed(tmp_path):
    pytest.importorskip("tensorboard")  # installed by make setup (fairgen[tensorboard])
    Trainer(tiny_config(checkpoint_dir=str(tmp_path), total_steps=2)).fit(batches(2))
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_a_diverging_run_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    config = tiny_config(
        checkpoint_dir=str(tmp_path), checkpoint_every=2, total_steps=6, log_every=1, augment=None
    )
    trainer = Trainer(config).fit(batches(2), steps=2)
    good = {
        k: v.clone()
        for k, v in torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"].items()
    }
    poisoned = batches(4, seed=1)
    poisoned[1]["views"][0, 0, 0, 0, 0] = float(
        "nan"
    )  # step 4 sees a NaN pixel (augmentation would refuse it)
    with pytest.raises(NonFiniteError, match="at step 4.*last good checkpoint"):
        trainer.fit(poisoned, monitor=None)
    kept = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert kept["step"] == 2 and all(torch.equal(kept["model"][k], good[k]) for k in good)


def test_a_huge_learning_rate_is_caught_as_divergence(tmp_path):
    config = tiny_config(
        optimizer="sgd", lr=1e30, total_steps=6, warmup_steps=0, augment=None, log_every=1
    )
    with pytest.raises(NonFiniteError, match="at step"):
        Trainer(config).fit(batches(6))


def test_a_loss_stuck_at_chance_after_warm_up_warns():
    config = tiny_config(
        optimizer="sgd", lr=1e-9, total_steps=13, warmup_steps=2, augment=None, log_every=1
    )
    with pytest.warns(LossAtChanceWarning, match=r"ln\(2B - 1\) = 2.3979 for 12 views"):
        Trainer(config).fit(batches(13))  # 6 samples x 2 views: chance is ln(11) = 2.398


def test_a_learning_run_does_not_warn(recwarn):
    config = tiny_config(
        optimizer="sgd", lr=0.05, total_steps=13, warmup_steps=2, augment=None, log_every=1
    )
    Trainer(config).fit(batches(1) * 13)
    assert not [w for w in recwarn if issubclass(w.category, LossAtChanceWarning)]


def test_resuming_to_more_steps_continues_the_schedule_on_the_new_horizon(tmp_path):
    first = Trainer(tiny_config(total_steps=4)).fit(batches(4))
    first.save(tmp_path / "ckpt.pt")
    # the run ended at lr 0 (step 4 of 4); on the 8-step horizon step 4 is 3/4 of the peak 2e-3
    with pytest.warns(ScheduleChangedWarning, match=r"at step 4 is 0.0015 instead of .* 0;"):
        longer = Trainer.from_checkpoint(tmp_path / "ckpt.pt", config=tiny_config(total_steps=8))
    assert longer.step == 4
    longer.fit(batches(4, seed=1))
    assert longer.step == 8
    straight = Trainer(tiny_config(total_steps=8))
    factor = straight.scheduler.lr_lambdas[0]
    assert longer.history[-1]["lr"] == pytest.approx(tiny_config().lr * factor(7))


def test_resuming_with_the_same_steps_keeps_the_schedule_without_a_warning(tmp_path, recwarn):
    first = Trainer(tiny_config(total_steps=4)).fit(batches(2), steps=2)
    first.save(tmp_path / "ckpt.pt")
    Trainer.from_checkpoint(tmp_path / "ckpt.pt", config=tiny_config(total_steps=4))
    assert not [w for w in recwarn if issubclass(w.category, ScheduleChangedWarning)]


def test_saved_encoder_reloads_with_identical_features(tmp_path):
    trainer = Trainer(tiny_config()).fit(batches(2), steps=2)
    trainer.save_encoder(tmp_path / "encoder.safetensors")
    reloaded = load_encoder(tmp_path / "encoder.safetensors")
    x = torch.rand(4, 3, 12, 12)
    trainer.encoder.eval()
    assert torch.allclose(reloaded(x), trainer.encoder(x))


def test_knn_monitor_reports_into_history():
    images, labels = torch.rand(10, 3, 12, 12), torch.arange(10) % 2
    monitor = KnnMonitor(images, labels, images, labels, k=3)
    trainer = Trainer(tiny_config()).fit(batches(4), steps=4, monitor=monitor, monitor_every=2)
    reports = [r for r in trainer.history if "knn_accuracy" in r]
    assert [r["step"] for r in reports] == [2, 4]
    assert all(0 <= r["knn_accuracy"] <= 1 for r in reports)


def test_config_round_trips_through_json_and_rejects_unknown_keys():
    config = tiny_config(augment={"flip_p": 0.3})
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        TrainConfig.from_dict({**config.to_dict(), "epochs": 3})


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"encoder": "vit_h"}, "encoder"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"augment": "autoaugment"}, "recipe"),
        ({"warmup_steps": 10, "total_steps": 5}, "warmup_steps"),
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"total_steps": 2.5}, "total_steps must be an integer"),
        ({"supervised": "yes"}, "supervised must be true or false"),
        ({"projection_dim": 0}, "projection_dim"),
    ],
)
def test_bad_config_values_are_rejected(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**overrides)


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        (
            {"views": torch.rand(4, 1, 3, 8, 8), "labels": torch.zeros(4, dtype=torch.long)},
            "V >= 2",
        ),
        (
            {"views": torch.rand(4, 2, 3, 8, 8), "labels": torch.zeros(3, dtype=torch.long)},
            "labels",
        ),
        ({"views": torch.rand(4, 2, 3, 8, 8), "labels": torch.rand(4)}, "labels"),
        ({"views": torch.rand(4, 3, 8, 8)}, "views"),
        ({"images": torch.rand(4, 2, 3, 8, 8)}, "views"),
    ],
)
def test_malformed_batches_are_rejected(batch, match):
    with pytest.raises(ValueError, match=match):
        Trainer(tiny_config(supervised=True)).train_step(batch)

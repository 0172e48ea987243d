"""RunConfig and load_run_config: layered files and overrides, strict keys, the demo's presets."""

import inspect
import json
import warnings
from pathlib import Path

import pytest

import steering
from fairgen.run_config import RunConfig, load_run_config
from fairgen.world.demo import ARMS, GENERATOR_ARMS, PRESET_ARMS, demo_run_config, stream_settings

RECORDED = json.loads((Path(__file__).parent / "data" / "demo_arms.json").read_text())


# ---------------------------------------------------------------- the demo's presets


@pytest.mark.parametrize("preset", sorted(RECORDED))
def test_demo_presets_resolve_to_the_configs_the_demo_built_before_them(preset):
    """tests/data/demo_arms.json was recorded from the demo's hand-built configs (before the
    presets existed); every arm's preset files must resolve to exactly those values."""
    recorded, old = RECORDED[preset], RECORDED[preset]["demo_config"]
    for arm in ARMS:
        run = demo_run_config(preset, arm)
        assert run.train.train_config(progress=True).to_dict() == recorded["train"], arm
        assert {"n": run.steer.n, "seed": run.steer.seed} == recorded["steer"]
        assert run.stream.n == old["n_real"]
        assert {
            "n_probe": run.audit.n_probe,
            "n_test": run.audit.n_test,
            "stream_audit_n": run.audit.stream_n,
            "n_permutations": run.audit.n_permutations,
            "n_bootstrap": run.audit.n_bootstrap,
            "leakage_pca": run.audit.leakage_pca,
            "leakage_max_iter": run.audit.leakage_max_iter,
            "eraser_n": run.audit.eraser_n,
            "erased_permutations": run.audit.erased_permutations,
        } == {k: old[k] for k in (
            "n_probe", "n_test", "stream_audit_n", "n_permutations", "n_bootstrap",
            "leakage_pca", "leakage_max_iter", "eraser_n", "erased_permutations",
        )}  # fmt: skip
        seeds = {run.stream.seed, run.train.seed, run.steer.seed, run.audit.seed}
        assert seeds == {old["seed"]}
    for arm in GENERATOR_ARMS:
        run = demo_run_config(preset, arm)
        assert stream_settings(run) == recorded["streams"][arm]["spec"], arm
        assert run.train.batch_size == recorded["streams"][arm]["batch_size"]
    assert list(PRESET_ARMS[preset] or []) == list(old["arms"] or [])
    fit = inspect.signature(steering.fit_steerer).parameters  # the demo passed only n and seed
    run = demo_run_config(preset)
    assert (run.steer.mode, run.steer.method) == (fit["mode"].default, fit["method"].default)


def test_a_short_demo_run_shortens_the_warm_up_as_the_demo_did_and_says_so():
    with pytest.warns(UserWarning, match=r"warm-up \(10 steps\) covers the whole run of 3 steps"):
        run = demo_run_config("quick", "d_generator_steered", {"train": {"steps": 3}})
    assert run.train.warmup_steps == 3  # the demo's old min(10, steps)


# ---------------------------------------------------------------- load_run_config


def test_flags_beat_files_and_later_files_beat_earlier_ones(tmp_path):
    (tmp_path / "a.yaml").write_text("train: {lr: 0.01, steps: 50}\nsteer: {n: 500}\n")
    (tmp_path / "b.json").write_text(json.dumps({"train": {"lr": 0.02}}))
    run = load_run_config(
        [tmp_path / "a.yaml", tmp_path / "b.json"], overrides={"train": {"steps": 70}}
    )
    assert isinstance(run, RunConfig)
    assert (run.train.lr, run.train.total_steps, run.steer.n) == (0.02, 70, 500)
    assert run.audit.n_permutations == RunConfig().audit.n_permutations  # untouched: default


def test_a_flat_file_reads_as_fairgen_train_always_read_it(tmp_path):
    (tmp_path / "run.yaml").write_text("spec: card.json\nsteps: 20\nbatch_size: 32\n")
    run = load_run_config(tmp_path / "run.yaml")
    assert (run.stream.spec, run.train.total_steps, run.train.batch_size) == ("card.json", 20, 32)
    inline = load_run_config(overrides={"stream": {"generator": "g", "seed": 1}})
    assert inline.stream.card == {"generator": "g", "seed": 1}


def test_a_card_named_later_replaces_the_one_named_earlier(tmp_path):
    (tmp_path / "run.yaml").write_text("stream: {card: {generator: g}}\n")
    run = load_run_config(tmp_path / "run.yaml", overrides={"stream": {"spec": "other.json"}})
    assert (run.stream.spec, run.stream.card) == ("other.json", None)


@pytest.mark.parametrize(
    "text, match",
    [
        (
            "train: {warmup_step: 1}\n",
            r"unknown keys \['warmup_step'\]; did you mean 'warmup_steps'",
        ),
        ("trian: {lr: 0.1}\n", r"unknown keys \['trian'\]; did you mean 'train'"),
        ("stpes: 3\n", r"did you mean 'steps'"),
        ("steer: {n: 0}\n", r"steer n must be an integer >= 1"),
        ("train: {batch_size: 1}\n", r"batch_size must be an integer >= 2"),
        ("train: [1, 2]\n", r"section 'train' must be a mapping"),
        ("- 1\n", r"must hold a mapping"),
        ("train: {lr: [unclosed\n", r"not valid YAML"),
    ],
)
def test_bad_run_configs_are_refused_naming_the_key(tmp_path, text, match):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_run_config(path)


def test_json_run_configs_go_through_the_strict_reader_and_yaml_is_size_capped(tmp_path):
    (tmp_path / "dup.json").write_text('{"train": {"lr": 0.1, "lr": 0.2}}')
    with pytest.raises(ValueError, match="run config"):
        load_run_config(tmp_path / "dup.json")
    (tmp_path / "big.yaml").write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ValueError, match="larger than"):
        load_run_config(tmp_path / "big.yaml")
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        load_run_config(tmp_path / "nowhere.yaml")


# ---------------------------------------------------------------- the warm-up (issue 20)


def test_a_warm_up_asked_for_that_outlasts_the_run_is_refused_with_the_numbers():
    with pytest.raises(ValueError, match="warmup_steps 10 is longer than the run's 6 steps"):
        load_run_config(overrides={"train": {"steps": 6, "warmup_steps": 10}})


def test_a_warm_up_filling_the_whole_run_warns_and_a_shorter_one_does_not():
    with pytest.warns(UserWarning, match=r"warm-up \(6 steps\) covers the whole run of 6 steps"):
        load_run_config(overrides={"train": {"steps": 6, "warmup_steps": 6}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_run_config(overrides={"train": {"steps": 6, "warmup_steps": 2}})

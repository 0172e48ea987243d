"""The end-to-end demo runs on a tiny configuration and writes its table and reports."""

import math

import pytest

from fairgen.world.demo import ARMS, run_demo

TINY = {  # overrides of the quick preset, in load_run_config's form
    "stream": {"n": 400},
    "train": {"steps": 3},
    "steer": {"n": 3000},
    "audit": {
        "n_probe": 300,
        "n_test": 300,
        "stream_n": 128,
        "eraser_n": 600,
        "n_permutations": 9,
        "n_bootstrap": 20,
    },
}


def test_tiny_demo_writes_table_and_reports(tmp_path):
    table = run_demo(
        "quick",
        tmp_path,
        arms=["a_real_biased", "d_generator_steered"],
        progress=False,
        overrides=TINY,
    )
    assert list(table.index) == ["a_real_biased", "d_generator_steered"]
    # the steered stream is measurably less biased than the real biased split it replaces
    assert (
        table.loc["d_generator_steered", "stream_cramers_v"]
        < table.loc["a_real_biased", "stream_cramers_v"] - 0.3
    )
    assert 0 <= table.loc["a_real_biased", "target_acc"] <= 1
    assert math.isnan(
        table.loc["a_real_biased", "erased_leakage_p"]
    )  # no permutations there in quick
    assert 0 <= table.loc["a_real_biased", "erased_leakage_bacc"] <= 1
    for name in (
        "a_real_biased.feature_eraser.safetensors",
        "table.md",
        "table.csv",
        "table.png",
        "config.json",
        "eraser_card.json",
    ):
        assert (tmp_path / name).exists()
    assert (tmp_path / "a_real_biased" / "backbone" / "report.json").exists()
    assert "texture leakage" in (tmp_path / "table.md").read_text()
    assert "Memorisation" in (tmp_path / "table.md").read_text()
    assert (tmp_path / "memorisation" / "report.json").exists()


def test_demo_refuses_unknown_presets_and_arms(tmp_path):
    with pytest.raises(ValueError, match="preset"):
        run_demo("medium", tmp_path)
    with pytest.raises(ValueError, match="arms"):
        run_demo("quick", tmp_path, arms=["z_magic"], overrides=TINY)
    assert set(ARMS) == {
        "a_real_biased",
        "b_real_balanced",
        "c_generator_raw",
        "d_generator_steered",
        "e_steered_counterfactual",
    }

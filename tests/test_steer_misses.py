"""A steer says when it missed its target (the gap and what would help), and calls out a labeler
that carries no signal by name."""

from __future__ import annotations

import sys

import pytest

from fairgen.cli import main
from steering.misses import steer_misses


def report(raw_v, steered_v, shares=(0.5, 0.5), probe=(0.9, 0.6)):
    def side(v, s):
        return {
            "cramers_v_by": {"protected": v},
            "cramers_v_corrected_by": {"protected": v},
            "shares_by": {"protected": list(s)},
        }

    return {
        "raw": side(raw_v, (0.5, 0.5)),
        "steered": side(steered_v, shares),
        "probe_before": {"accuracy": probe[0], "majority": probe[1]},
    }


def test_a_balance_that_misses_says_the_gap_and_what_would_help():
    lines = steer_misses(report(0.9, 0.454), mode="balance", names=["hair"], n=2000)
    assert any("V(class, hair) is 0.454" in line and "missed by 0.454" in line for line in lines)
    assert any("--n 8000" in line and "--method confirmed" in line for line in lines)


def test_a_balance_that_meets_its_target_says_nothing():
    assert steer_misses(report(0.9, 0.01), mode="balance", names=["hair"], n=2000) == []


def test_shares_off_their_target_are_a_miss():
    lines = steer_misses(
        report(0.9, 0.01, shares=(0.5, 0.5)), mode="balance", names=["hair"], target=[0.3, 0.7]
    )
    assert any("shares of hair are 0.50/0.50" in line and "0.30/0.70" in line for line in lines)


def test_a_labeler_independent_of_class_and_latent_is_called_out_by_name():
    quiet = report(0.0, 0.0, probe=(0.49, 0.5))
    lines = steer_misses(quiet, mode="balance", names=["coin"], labeler_names={"coin": "pkg:coin"})
    assert len(lines) == 1 and "labeler pkg:coin carries no signal" in lines[0]
    # a labeler that follows the class (the probe within class may sit at majority) is fine
    assert steer_misses(report(0.9, 0.01, probe=(0.91, 0.91)), mode="balance", names=["x"]) == []


RANDOM = """
import torch

def coin(images):
    seed = int(images.double().sum() * 1e4) % 2**31
    return torch.randint(2, (len(images),), generator=torch.Generator().manual_seed(seed))
"""


def test_steer_with_a_random_labeler_calls_it_out(tmp_path, monkeypatch, capsys):
    (tmp_path / "randlab.py").write_text(RANDOM)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "randlab", raising=False)
    args = ["steer", "--labeler", "randlab:coin", "--protected", "coin", "--quiet"]
    small = ["--n", "600", "--eval-n", "600", "--out", str(tmp_path / "card")]
    assert main([*args, *small]) == 0
    out = capsys.readouterr().out
    assert "WARNING: labeler randlab:coin carries no signal" in out


@pytest.mark.parametrize("mode", ["erase", "flip"])
def test_modes_without_a_share_target_check_only_the_signal(mode):
    assert steer_misses(report(0.9, 0.5), mode=mode, names=["hair"]) == []

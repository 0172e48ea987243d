"""World labelers with a known error: their measured accuracy is their nominal one."""

import math

import pytest
import torch

from fairgen.labelers import load_labeler
from fairgen.world import World

N = 2000


@pytest.fixture(scope="module")
def sample():
    return World(32).sample(N, seed=11, bias=0.0)


def within_binomial(measured: float, nominal: float, n: int, sigmas: float = 4.0) -> bool:
    return abs(measured - nominal) <= sigmas * math.sqrt(nominal * (1 - nominal) / n)


@pytest.mark.parametrize("kind", ["sym95", "sym85", "sym75", "asym85"])
def test_confused_judge_accuracy_is_nominal(sample, kind):
    labeler = load_labeler(f"world:texture~{kind}")
    truth = sample.labels("texture")
    measured = float((labeler(sample.images) == truth).float().mean())
    assert within_binomial(measured, labeler.accuracy, N)


def test_same_image_same_label_and_scores_agree(sample):
    labeler = load_labeler("world:texture~sym75")
    first, again = labeler(sample.images), labeler(sample.images[:500])
    assert torch.equal(first[:500], again)
    scores = labeler.scores(sample.images[:500])
    assert torch.equal(scores.argmax(1), again)
    assert torch.allclose(scores.sum(1), torch.ones(500))


def test_asymmetric_errors_go_to_the_tied_value(sample):
    labeler = load_labeler("world:texture~asym75")
    truth, tied = sample.labels("texture"), sample.labels("shape") % 4
    out = labeler(sample.images)
    wrong_minority = (truth != tied) & (out != truth)
    assert int(wrong_minority.sum()) > 50
    assert torch.equal(out[wrong_minority], tied[wrong_minority])


def test_weak_judge_accuracy_is_measured(sample):
    labeler = load_labeler("world:texture~weak")
    measured = float((labeler(sample.images) == sample.labels("texture")).float().mean())
    assert 0.25 < labeler.accuracy < 0.99  # weak, but better than chance
    assert within_binomial(measured, labeler.accuracy, N, sigmas=5.0)


@pytest.mark.parametrize("kind", ["sym20", "bogus", "sym5"])
def test_unknown_kinds_are_refused(kind):
    with pytest.raises(ValueError, match="world:texture~"):
        load_labeler(f"world:texture~{kind}")

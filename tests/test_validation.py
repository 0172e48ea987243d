"""plumbing.validation: one home for input checks, each refusal a ValueError naming the argument."""

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from plumbing.validation import (
    check_images,
    check_int,
    check_labeler_output,
    check_latents,
    check_probabilities,
    is_int,
    is_number,
)


def test_integers_are_ints_of_any_kind_but_never_bools():
    assert is_int(3) and is_int(np.int64(3)) and not is_int(True) and not is_int(3.0)
    assert is_number(0.5) and is_number(np.float32(2)) and not is_number(False)
    assert not is_number(float("nan")) and not is_number(float("inf")) and not is_number("1")
    assert check_int(np.int32(4), "n", 1) == 4 and type(check_int(np.int32(4), "n", 1)) is int


@pytest.mark.parametrize(
    "value, bounds, message",
    [
        (0, (1, None), "n must be a positive integer, got 0"),
        (True, (0, None), "n must be a non-negative integer, got True"),
        (1, (2, None), "n must be an integer >= 2, got 1"),
        (9, (1, 8), r"n must be an integer in \[1, 8\], got 9"),
        ("3", (None, None), "n must be an integer, got '3'"),
    ],
)
def test_integer_messages_say_what_was_expected(value, bounds, message):
    with pytest.raises(ValueError, match=message):
        check_int(value, "n", *bounds)


def test_probabilities_are_k_non_negative_numbers_summing_to_one():
    check_probabilities([0.25, 0.75], "p", 2)
    for bad in ([0.5, 0.6], [1.5, -0.5], [1.0]):
        with pytest.raises(ValueError, match="p must be 2 non-negative probabilities"):
            check_probabilities(bad, "p", 2)


def test_latents_from_arrays_are_converted_and_a_generator_gets_them_as_given():
    assert check_latents(np.arange(6).reshape(3, 2)).dtype == torch.float64
    z = torch.zeros(0, 4)
    assert check_latents(z, "z", 4, tensor=True, allow_empty=True) is z
    with pytest.raises(ValueError, match="at least one row"):
        check_latents(z, "z", 4)
    with pytest.raises(ValueError, match="z must be a torch.Tensor"):
        check_latents(np.zeros((2, 4)), "z", 4, tensor=True)
    with pytest.raises(ValueError, match="z must be a floating-point tensor"):
        check_latents(torch.zeros(2, 4, dtype=torch.int64), "z", 4, tensor=True)
    with pytest.raises(ValueError, match=r"z must have shape \[n, 4\] \(2-D.*d=4\), got \[2, 3\]"):
        check_latents(torch.zeros(2, 3), "z", 4, tensor=True)


def test_labeler_output_becomes_int64_labels_where_the_labeler_left_them():
    scores = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
    assert check_labeler_output(scores, 2, "x").tolist() == [1, 0]
    assert check_labeler_output(np.array([1.0, 0.0]), 2, "x").dtype == torch.int64
    with pytest.raises(ValueError, match=r"labeler 'x' returned shape \[2, 1\] for 2 images"):
        check_labeler_output(torch.tensor([[0.3], [0.7]]), 2, "x")  # one score is not a class
    with pytest.raises(ValueError, match="returned dtype torch.bool"):
        check_labeler_output(torch.tensor([True, False]), 2, "x")
    with pytest.raises(ValueError, match=r"returned a negative label \(-1\)"):
        check_labeler_output([0, -1], 2, "x")


def test_images_must_be_float_in_the_unit_range():
    check_images(torch.rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"pics must lie in \[0, 1\]"):
        check_images(torch.rand(2, 3, 4, 4) * 2 - 1, "pics")
    with pytest.raises(ValueError, match="contains NaN"):
        check_images(torch.full((1, 3, 2, 2), float("nan")))


def test_every_unfitted_steerer_says_so_with_one_error_type(tmp_path):
    from steering import ClassifierSteerer, ConfirmedSteerer, LatentSteerer, save_card

    for steerer in (LatentSteerer(), ClassifierSteerer(), ConfirmedSteerer()):
        with pytest.raises(NotFittedError, match="is not fitted yet"):
            save_card(steerer, tmp_path / "card", {})

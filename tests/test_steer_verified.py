"""`fairgen steer --verified FILE`: --target becomes true shares (or a refusal says why not)."""

import numpy as np
import pytest
import torch

from fairgen.cli import main
from fairgen.verified import VerifiedSet, write_verified


@pytest.fixture(scope="module")
def verified_file(tmp_path_factory):
    """A verified set of world:texture~sym85 on the embedded generator, the exact judge as the
    person: 20 items per (class, labeler output) cell where the cell has them."""
    from fairgen.generators import load_generator
    from fairgen.labelers import load_labeler
    from fairgen.world.judges import load_judges

    generator = load_generator("world-sprites-z128")
    labeler, judge = load_labeler("world:texture~sym85"), load_judges()["texture"]
    rng = torch.Generator().manual_seed(3)
    z, y = generator.sample_latents(1500, generator=rng), torch.randint(4, (1500,), generator=rng)
    images = generator.synthesize(z, y)
    outputs, truth = labeler(images).numpy(), judge.predict(images).numpy()
    cells = [
        np.flatnonzero((y.numpy() == g) & (outputs == o))[:20] for g in range(4) for o in range(4)
    ]
    pick = np.concatenate(cells)
    verified = VerifiedSet(
        attribute="texture",
        values=["plain", "stripes", "dots", "checker"],
        card_sha256="0" * 64,
        ids=[f"{i:04d}" for i in range(len(pick))],
        classes=y.numpy()[pick],
        outputs=outputs[pick],
        truths=truth[pick],
    )
    return write_verified(verified, tmp_path_factory.mktemp("verified") / "verified.json")


def steer(*flags):
    return ["steer", "--labeler", "world:texture~sym85", "--protected", "texture", *flags]


def test_a_uniform_true_target_out_of_reach_is_refused_with_the_reachable_range(
    verified_file, tmp_path, capsys
):
    argv = steer("--method", "confirmed", "--verified", str(verified_file), "--n", "600")
    assert main([*argv, "--eval-n", "200", "--out", str(tmp_path), "-q"]) == 2
    error = capsys.readouterr().err
    assert "out of reach in truth" in error and "reachable" in error
    assert not (tmp_path / "eraser_card.json").exists()  # nothing written


def test_verified_needs_the_confirmed_method_and_the_same_attribute(
    verified_file, tmp_path, capsys
):
    assert main([*steer("--verified", str(verified_file)), "--out", str(tmp_path), "-q"]) == 2
    assert "--verified needs --method confirmed" in capsys.readouterr().err
    other = ["steer", "--labeler", "world:colour", "--protected", "colour", "--method", "confirmed"]
    assert main([*other, "--verified", str(verified_file), "--out", str(tmp_path), "-q"]) == 2
    assert "verifies 'texture', not the steered attribute 'colour'" in capsys.readouterr().err

"""`fairgen audit --verified`: a protected column a labeler filled in gets corrected sections, and
the report says which columns are estimates."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fairgen.cli import main
from fairgen.verified import VerifiedSet, write_verified


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """200 small images whose colour carries the target and the true tone; the 'tone' column is
    a labeler's output, right 85% of the time; 120 verified pairs; a random-weight resnet18."""
    from safetensors.torch import save_file

    from fairgen.models import build_classifier

    folder = tmp_path_factory.mktemp("verified_audit")
    rng = np.random.default_rng(0)
    n = 200
    kind, tone = rng.integers(0, 2, n), rng.integers(0, 2, n)
    said = np.where(rng.random(n) < 0.85, tone, 1 - tone)
    for i in range(n):
        pixel = [60 + 120 * kind[i], 60 + 120 * tone[i], rng.integers(0, 255)]
        Image.new("RGB", (8, 8), tuple(int(v) for v in pixel)).save(folder / f"{i}.png")
    names = np.array(["light", "dark"])
    pd.DataFrame(
        {
            "path": [f"{i}.png" for i in range(n)],
            "kind": names[kind],
            "tone": names[said],
            "mood": rng.choice(["calm", "busy"], n),
        }
    ).to_csv(folder / "manifest.csv", index=False)
    truth = rng.integers(0, 2, 120)
    verified = VerifiedSet(
        "tone",
        ["light", "dark"],
        "0" * 64,
        [f"{i:04d}" for i in range(120)],
        np.zeros(120, dtype=int),
        np.where(rng.random(120) < 0.85, truth, 1 - truth),
        truth,
    )
    write_verified(verified, folder / "verified.json")
    net = build_classifier("torchvision", "resnet18", num_classes=10)
    weights = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(weights, str(folder / "r18.safetensors"))
    return folder


def _audit(folder, out, protected, verified="verified.json"):
    return main(
        [
            "audit",
            "--encoder",
            "torchvision:resnet18",
            "--encoder-weights",
            str(folder / "r18.safetensors"),
            "--image-size",
            "32",
            "--data",
            str(folder / "manifest.csv"),
            "--target",
            "kind",
            "--protected",
            *protected,
            "--verified",
            str(folder / verified),
            "--permutations",
            "4",
            "--bootstrap",
            "50",
            "--quiet",
            "--out",
            str(out),
        ]
    )


def test_audit_adds_corrected_sections_and_names_the_estimated_column(labelled, tmp_path):
    assert _audit(labelled, tmp_path / "a", ["tone"]) == 0
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    fairness = report["sections"]["target fairness by tone (labeler-estimated, corrected)"]
    assert "estimated truth (corrected)" in json.dumps(fairness)
    assert "tone leakage (labeler-estimated, corrected)" in report["sections"]
    estimated = report["provenance"]["estimated_columns"]["tone"]
    assert estimated["n_verified"] == 120 and "independent" in estimated["assumption"]
    markdown = (tmp_path / "a" / "report.md").read_text()
    assert "labeler-estimated, corrected" in markdown and "estimated_columns" in markdown


def test_a_verified_set_of_another_attribute_is_refused(labelled, tmp_path, capsys):
    assert _audit(labelled, tmp_path / "b", ["mood"]) == 2
    assert "verifies 'tone', which is not among the --protected columns" in capsys.readouterr().err

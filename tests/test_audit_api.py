"""An audit from Python returns objects, writes nothing, and keys results by attribute name; its
fairness frames behave like fairlearn's MetricFrame; steerers follow sklearn's get_params /
transform conventions through a mixin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone

import audits
from steering.modes import LatentSteerer

SMALL = {"n_permutations": 19, "n_bootstrap": 20, "n_repeats": 1}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 240
    hair, gender = rng.integers(0, 2, n), rng.integers(0, 2, n)
    target = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 6)) + np.stack([2 * target, 6 * hair], 1) @ np.ones((2, 6)) / 2
    return x, target, {"hair": hair, "gender": gender}


def test_an_audit_returns_results_keyed_by_names_and_writes_nothing(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x, y, protected = data
    result = audits.audit(
        x[:120], y[:120], x[120:], y[120:], {k: v[120:] for k, v in protected.items()}, **SMALL
    )
    assert list(result.leakage) == ["hair", "gender", ("hair", "gender")]
    assert result.leakage["hair&gender"] is result.leakage[("hair", "gender")]
    assert result.leakage["hair"].leaks and not result.leakage["gender"].leaks
    assert list(result.summary().index) == ["hair", "gender", "hair & gender"]
    assert list(tmp_path.iterdir()) == []


def test_fairness_frames_have_overall_difference_and_ratio_like_metricframe(data):
    x, y, protected = data
    frame = audits.audit(x[:120], y[:120], x[120:], y[120:], protected["hair"][120:], **SMALL)
    fair = frame.fairness["protected"]
    rates = fair.by_group[["accuracy", "selection_rate[1]", "tpr[1]", "fpr[1]"]]
    pd.testing.assert_series_equal(fair.difference(), rates.max() - rates.min())
    pd.testing.assert_series_equal(fair.ratio(), rates.min() / rates.max())
    assert fair.overall["accuracy"] == pytest.approx(fair.summary["accuracy"])
    assert fair.difference()["selection_rate[1]"] == pytest.approx(
        fair.summary["demographic_parity_difference"]
    )


def test_the_report_is_a_thin_layer_with_the_same_section_names(data):
    x, y, protected = data
    report = audits.audit_representation(
        x[:120], y[:120], x[120:], y[120:], {k: v[120:] for k, v in protected.items()}, **SMALL
    )
    assert list(report.sections) == [
        "hair leakage",
        "gender leakage",
        "hair & gender leakage",
        "target fairness by hair",
        "target fairness by gender",
        "target fairness by hair & gender",
    ]


def test_an_attribute_name_holding_the_join_is_refused(data):
    x, y, protected = data
    with pytest.raises(ValueError, match="attribute names must be strings without '&'"):
        audits.audit(x, y, x, y, {"a&b": protected["hair"]}, **SMALL)


def test_fairgen_audits_an_encoder_on_data_without_writing(tmp_path, monkeypatch):
    from safetensors.torch import save_file
    from torchvision.io import encode_png

    import fairgen
    from fairgen.models import build_classifier

    rows = []
    for i in range(24):
        (tmp_path / f"{i}.png").write_bytes(
            encode_png(torch.full((3, 8, 8), 10 * i, dtype=torch.uint8)).numpy().tobytes()
        )
        rows.append({"path": f"{i}.png", "kind": "ab"[i % 2], "tone": "xy"[i // 12]})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    net = build_classifier("torchvision", "resnet18", num_classes=10)
    weights = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    before = sorted(tmp_path.iterdir())
    monkeypatch.chdir(tmp_path)
    result = fairgen.audit_encoder(
        "torchvision:resnet18",
        str(tmp_path / "m.csv"),
        "kind",
        ["tone"],
        encoder_weights=weights,
        image_size=32,
        **SMALL,
    )
    assert set(result.leakage) == {"tone"} and set(result.fairness) == {"tone"}
    assert result.provenance["target"] == "kind"
    assert sorted(tmp_path.iterdir()) == before


def fitted(**params):
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(400, 4, generator=g), torch.randint(2, (400,), generator=g)
    a = (z[:, 0] > 0).long()
    return LatentSteerer(**params).fit(z, y, a), z, y


def test_a_steerer_gives_its_params_clones_and_transforms_seeded():
    steerer, z, y = fitted(mode="balance", method="quantile")
    assert steerer.get_params() == {
        "mode": "balance",
        "method": "quantile",
        "target_distribution": None,
    }
    assert clone(steerer).get_params() == steerer.get_params()
    assert clone(steerer).set_params(method="gaussian").method == "gaussian"
    with pytest.raises(ValueError, match="unknown parameter 'methd'"):
        steerer.set_params(methd="gaussian")
    out = steerer.transform(z.numpy(), y.numpy(), seed=3)
    assert torch.equal(out, steerer.transform(z, y, seed=3))
    assert torch.equal(out, steerer(z, y, torch.Generator().manual_seed(3)))
    assert not torch.equal(out, z)
    with pytest.raises(ValueError, match="classes must hold one class per latent"):
        steerer.transform(z, y[:3])

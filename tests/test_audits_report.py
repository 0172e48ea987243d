"""Guarantees of audits.report: one bundle of strict JSON, Markdown and real PNGs per audit."""

import json

import numpy as np
import pandas as pd
import pytest

from audits import (
    AuditReport,
    audit_representation,
    compare_streams,
    group_fairness,
    leakage,
    memorisation,
    stream_balance,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report():
    rng = np.random.default_rng(0)
    n = 120
    classes, attr = rng.integers(0, 2, n), rng.integers(0, 3, n)
    x = rng.normal(size=(n, 4))
    x[:, 0] += attr
    train, held = rng.normal(size=(100, 3)), rng.normal(size=(60, 3))
    # group "b" has no positives: its TPR is NaN and must come out of the JSON as null
    y_true = np.array([1, 0, 1, 0, 0, 0, 0])
    y_pred = np.array([1, 0, 0, 1, 1, 0, 0])
    train_x = np.array([-2.0, -1.0, 1.0, 2.0] * 3)[:, None]
    fairness = group_fairness(
        train_x,
        (train_x[:, 0] > 0).astype(int),
        np.where(y_pred == 1, 2.0, -2.0)[:, None],
        y_true,
        np.array(list("aaaabbb")),
        n_bootstrap=20,
    )
    return (
        AuditReport("test audit")
        .add("attr leakage", leakage(x, attr, n_repeats=1, n_permutations=4))
        .add("fairness | odd name", fairness)
        .add("stream", stream_balance(classes, attr, n_bootstrap=20))
        .add(
            "streams", compare_streams({"a": (classes, attr), "b": (attr, classes)}, n_bootstrap=10)
        )
        .add("memo", memorisation(rng.normal(size=(50, 3)), train, held))
    )


def test_save_writes_json_markdown_and_one_png_per_plotted_section(report, tmp_path):
    written = report.save(tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(
        [
            "report.json",
            "report.md",
            "leakage.png",
            "fairness_odd_name.png",
            "stream.png",
            "memorisation_memo.png",
        ]
    )
    assert set(written) == set(names)
    for name in names:
        if name.endswith(".png"):
            assert (tmp_path / "out" / name).read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(
    "kind, section, expected",
    [
        ("fairness", "target fairness by hair", "fairness_by_hair.png"),
        ("fairness", "target fairness", "fairness.png"),
        ("memorisation", "memorisation", "memorisation.png"),
        ("stream", "world stream", "world_stream.png"),
        ("memorisation", "memo", "memorisation_memo.png"),
    ],
)
def test_plot_file_names_say_each_word_once(kind, section, expected):
    from audits.report import _file_name

    assert _file_name(kind, section, {}) == expected
    assert _file_name(kind, section, {expected: None}) == expected.replace(".png", "_2.png")


def test_json_is_strict_and_keeps_every_section(report, tmp_path):
    path = tmp_path / "r.json"
    report.to_json(path)
    # a strict parser: NaN/Infinity tokens would raise here
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard {c}"))
    assert data["title"] == "test audit"
    kinds = {name: s["kind"] for name, s in data["sections"].items()}
    assert kinds == {
        "attr leakage": "leakage",
        "fairness | odd name": "fairness",
        "stream": "stream_balance",
        "streams": "table",
        "memo": "memorisation",
    }
    rows = data["sections"]["fairness | odd name"]["by_group"]
    assert rows[1]["group"] == "b" and rows[1]["tpr[1]"] is None
    assert data["sections"]["attr leakage"]["n_classes"] == 3
    assert [row["stream"] for row in data["sections"]["streams"]["rows"]] == ["a", "b"]


def test_markdown_has_a_heading_verdict_and_table_per_section(report, tmp_path):
    md = report.to_markdown()
    for name in report.sections:
        assert f"## {name}" in md
    assert "permutation p =" in md
    assert "tpr[1] undefined (no positives)" in md
    assert "| stream | n_samples |" in md  # the compare_streams table keeps its index
    report.save(tmp_path)
    saved = (tmp_path / "report.md").read_text()
    assert "![attr leakage](leakage.png)" in saved
    assert "![memo](memorisation_memo.png)" in saved


def test_add_rejects_duplicates_unknown_results_and_empty_names():
    rep = AuditReport().add("t", pd.DataFrame({"a": [1]}))
    with pytest.raises(ValueError, match="already a section"):
        rep.add("t", pd.DataFrame({"a": [2]}))
    with pytest.raises(ValueError, match="result for 'x' must be one of"):
        rep.add("x", {"not": "a result"})
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        rep.add(" ", pd.DataFrame())


def test_audit_representation_runs_leakage_and_fairness_into_one_report(tmp_path):
    rng = np.random.default_rng(1)
    n = 160
    target, protected = rng.integers(0, 2, n), rng.integers(0, 2, n)
    feats = rng.normal(size=(n, 4))
    feats[:, 0] += 2 * target
    feats[:, 1] += 2 * protected
    rep = audit_representation(
        feats[:80],
        target[:80],
        feats[80:],
        target[80:],
        protected[80:],
        n_permutations=19,
        n_bootstrap=50,
    )
    assert list(rep.sections) == ["protected leakage", "target fairness"]
    assert rep["protected leakage"].leaks
    assert rep["target fairness"].summary["accuracy"] > 0.7
    assert (tmp_path / "report.json").exists() is False
    rep.save(tmp_path)
    assert (tmp_path / "report.json").exists()

"""``fairgen audit --verified FILE``: the sections for a protected column a labeler filled in.

The verified set (``fairgen review``) names the attribute; the audited column of that name holds
the labeler's outputs (value names, or codes 0..k-1). Its group fairness and leakage are
recomputed with the labeler's error corrected (``audits.estimated``), beside the uncorrected
values, and the report's provenance lists the column under ``estimated_columns``.
"""

from __future__ import annotations

import warnings

import numpy as np


def column_codes(column: np.ndarray, values: list[str], name: str) -> np.ndarray:
    """The labeler's outputs in ``column`` as codes of ``values`` (names, or codes 0..k-1)."""
    index = {v: i for i, v in enumerate(values)}
    text = [str(v) for v in column]
    if all(t in index for t in text):
        return np.array([index[t] for t in text], dtype=np.int64)
    if all(t.isdigit() and int(t) < len(values) for t in text):
        return np.array([int(t) for t in text], dtype=np.int64)
    bad = sorted({t for t in text if t not in index})[:5]
    raise ValueError(
        f"--verified: column {name!r} holds {bad}, which are not the verified set's values "
        f"{values} (nor codes 0..{len(values) - 1})"
    )


def target_predictions(x_train, y_train, x_test) -> np.ndarray:
    """The target probe's test predictions, fitted as ``audits.group_fairness`` fits it."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        return probe.fit(x_train, y_train).predict(x_test)


def add_estimated_sections(
    report,
    verified,
    verified_path,
    x_train,
    y_train,
    x_test,
    y_test,
    column,
    *,
    probe,
    seed,
    n_bootstrap,
):
    """Add the corrected fairness and leakage sections of the verified set's attribute to
    ``report``."""
    from audits.estimated import estimated_fairness, estimated_leakage, out_of_fold_predictions

    name, k = verified.attribute, len(verified.values)
    observed = column_codes(column, verified.values, name)
    strata = verified.classes * k + verified.outputs  # review drew each (class, output) cell apart
    common = dict(
        n_values=k,
        verified_weights=verified.weights(),
        verified_strata=strata,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    pred = target_predictions(x_train, y_train, x_test)
    fairness = estimated_fairness(
        y_test, pred, observed, verified.truths, verified.outputs, **common
    )
    leak_probe = probe if probe in ("lda", "linear", "mlp") else "lda"
    probe_pred = out_of_fold_predictions(x_test, observed, leak_probe, seed=seed)
    leakage = estimated_leakage(probe_pred, observed, verified.truths, verified.outputs, **common)
    report.add(f"target fairness by {name} (labeler-estimated, corrected)", fairness.to_frame())
    report.add(f"{name} leakage (labeler-estimated, corrected)", leakage.to_frame())
    report.provenance.setdefault("estimated_columns", {})[name] = {
        "source": "labeler outputs, corrected with a verified set",
        "verified": str(verified_path),
        "verified_card_sha256": verified.card_sha256,
        "n_verified": len(verified),
        "labeler_accuracy_verified": fairness.summary["labeler_accuracy_verified"],
        "misclassification_matrix": fairness.matrix.tolist(),
        "assumption": fairness.summary["assumption"],
        "uncorrected sections": f"'{name} leakage' and 'target fairness by {name}' take the "
        "labeler's outputs as exact",
    }
    return fairness, leakage

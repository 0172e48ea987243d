"""One call that audits a learned representation: protected leakage plus target-probe fairness."""

from __future__ import annotations

import numpy as np

from plumbing.validation import as_labels

from .fairness import group_fairness
from .leakage import leakage
from .report import AuditReport


def audit_representation(
    train_features,
    train_target,
    test_features,
    test_target,
    test_protected,
    *,
    probe: str = "linear",
    n_permutations: int = 99,
    n_bootstrap: int = 500,
    seed: int = 0,
    title: str = "representation audit",
    pca: int | None = None,
    n_repeats: int = 3,
    max_iter: int = 1000,
    n_jobs: int = 1,
    progress: bool = False,
    provenance: dict | None = None,
) -> AuditReport:
    """Audit encoder features: does the test split leak the protected attribute, and does a
    linear probe for the target, trained on train features, treat protected groups alike?

    ``test_protected`` is one label array, or a dict ``{attribute name: labels}``: then each
    attribute gets its own leakage and fairness sections, and with two or more their
    intersection (values joined with " & ") gets them too. Leakage is measured on the test
    features (use a balanced test split, so leakage is not just the target showing through a
    biased attribute). With one unnamed array the sections are "protected leakage" and "target
    fairness". ``pca``, ``n_repeats``, ``max_iter`` and ``n_jobs`` go to ``leakage``.
    """
    report = AuditReport(title, provenance)
    if isinstance(test_protected, dict):
        attributes = {
            name: as_labels(v, f"test_protected[{name!r}]") for name, v in test_protected.items()
        }
        if not attributes:
            raise ValueError("test_protected must name at least one attribute")
        if len(attributes) > 1:
            joined = np.array(
                [" & ".join(map(str, row)) for row in zip(*attributes.values(), strict=True)]
            )
            attributes[" & ".join(attributes)] = joined
        named = True
    else:
        attributes, named = {"protected": test_protected}, False
    for name, labels in attributes.items():
        report.add(
            f"{name} leakage",
            leakage(
                test_features,
                labels,
                probe,
                n_permutations=n_permutations,
                seed=seed,
                pca=pca,
                n_repeats=n_repeats,
                max_iter=max_iter,
                n_jobs=n_jobs,
                progress=progress,
            ),
        )
    for name, labels in attributes.items():
        report.add(
            f"target fairness by {name}" if named else "target fairness",
            group_fairness(
                train_features,
                train_target,
                test_features,
                test_target,
                labels,
                n_bootstrap=n_bootstrap,
                seed=seed,
            ),
        )
    return report

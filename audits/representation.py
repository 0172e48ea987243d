"""One call that audits a learned representation: protected leakage plus target-probe fairness."""

from __future__ import annotations

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
) -> AuditReport:
    """Audit encoder features: does the test split leak the protected attribute, and does a
    linear probe for the target, trained on train features, treat protected groups alike?

    Leakage is measured on the test features (use a balanced test split, so leakage is not
    just the target showing through a biased attribute). Sections: "protected leakage" and
    "target fairness". ``pca``, ``n_repeats`` and ``max_iter`` go to ``leakage`` (PCA fitted inside each fold).
    """
    report = AuditReport(title)
    report.add(
        "protected leakage",
        leakage(
            test_features,
            test_protected,
            probe,
            n_permutations=n_permutations,
            n_bootstrap=n_bootstrap,
            seed=seed,
            pca=pca,
            n_repeats=n_repeats,
            max_iter=max_iter,
        ),
    )
    report.add(
        "target fairness",
        group_fairness(
            train_features,
            train_target,
            test_features,
            test_target,
            test_protected,
            n_bootstrap=n_bootstrap,
            seed=seed,
        ),
    )
    return report

"""One call that audits a learned representation into a report: ``audits.audit``'s results in
their file form (see ``audits.results``)."""

from __future__ import annotations

from .report import AuditReport
from .results import audit


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
    For the results as objects, without a report, call ``audits.audit``.
    """
    return audit(
        train_features,
        train_target,
        test_features,
        test_target,
        test_protected,
        probe=probe,
        n_permutations=n_permutations,
        n_bootstrap=n_bootstrap,
        seed=seed,
        pca=pca,
        n_repeats=n_repeats,
        max_iter=max_iter,
        n_jobs=n_jobs,
        progress=progress,
    ).to_report(title, provenance)

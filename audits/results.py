"""An audit as Python objects, nothing written to disk: leakage and group-fairness results keyed by
attribute name (an intersection by the tuple of its names), and their file form on request.

    result = audits.audit(x_train, y_train, x_test, y_test, {"hair": h, "gender": g})
    result.fairness["hair"].difference()        # per-metric gap between groups, like fairlearn
    result.leakage[("hair", "gender")].leaks    # or result.leakage["hair&gender"]
    result.to_report("my audit").save("out/")   # report.json, report.md and the plots
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from plumbing.validation import as_labels

from .fairness import FairnessResult, group_fairness
from .leakage import LeakageResult, leakage
from .report import AuditReport

JOIN = "&"  # "hair&gender" names the intersection ("hair", "gender")


class ByAttribute(Mapping):
    """Results keyed by attribute: ``"hair"``, or an intersection as ``("hair", "gender")`` or
    ``"hair&gender"`` (both find the same entry)."""

    def __init__(self, items: dict):
        self._items = dict(items)

    def __getitem__(self, key):
        return self._items[_key(key)]

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"ByAttribute({list(self._items)})"


def _key(key):
    """A plain name stays a string; an intersection becomes the tuple of its names."""
    if isinstance(key, str) and JOIN in key:
        key = tuple(part.strip() for part in key.split(JOIN))
    if isinstance(key, list | tuple):
        return key[0] if len(key) == 1 else tuple(key)
    return key


def section_name(key) -> str:
    """How the file form (report.json / report.md) names an attribute: "hair & gender"."""
    return " & ".join(key) if isinstance(key, tuple) else str(key)


@dataclass(frozen=True, eq=False)
class AuditResult:
    """Leakage and target-probe fairness per protected attribute (and their intersection)."""

    leakage: ByAttribute
    fairness: ByAttribute
    provenance: dict = field(default_factory=dict)
    named: bool = True  # False: one unnamed attribute, keyed "protected"

    def summary(self):
        """One row per attribute: leakage verdict and balanced accuracy, the two fairness gaps."""
        import pandas as pd

        rows = []
        for key in self.leakage:
            leak, fair = self.leakage[key], self.fairness[key].summary
            rows.append(
                {
                    "attribute": section_name(key),
                    "leakage": leak.verdict,
                    "balanced_accuracy": leak.balanced_accuracy,
                    "chance": leak.chance,
                    "p_value": leak.p_value,
                    "demographic_parity_difference": fair["demographic_parity_difference"],
                    "equalized_odds_difference": fair["equalized_odds_difference"],
                }
            )
        return pd.DataFrame(rows).set_index("attribute")

    def to_report(self, title: str = "representation audit", provenance=None) -> AuditReport:
        """The file form: sections "<attribute> leakage" then "target fairness by <attribute>"
        ("protected leakage" / "target fairness" for one unnamed attribute)."""
        report = AuditReport(title, {**self.provenance, **(provenance or {})})
        for key, result in self.leakage.items():
            report.add(f"{section_name(key)} leakage", result)
        for key, result in self.fairness.items():
            name = f"target fairness by {section_name(key)}" if self.named else "target fairness"
            report.add(name, result)
        return report


def audit(
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
    pca: int | None = None,
    n_repeats: int = 3,
    max_iter: int = 1000,
    n_jobs: int = 1,
    progress: bool = False,
    provenance: dict | None = None,
) -> AuditResult:
    """Does the test split leak each protected attribute, and does a linear probe for the target,
    trained on train features, treat its groups alike? Nothing is written.

    ``test_protected`` is one label array (keyed "protected") or ``{name: labels}``; with two or
    more names their intersection is audited too, keyed by the tuple of names. Leakage is
    measured on the test features (use a balanced test split, so leakage is not just the target
    showing through a biased attribute). ``pca``, ``n_repeats``, ``max_iter`` and ``n_jobs``
    go to ``leakage``."""
    if isinstance(test_protected, dict):
        attributes = {
            name: as_labels(v, f"test_protected[{name!r}]") for name, v in test_protected.items()
        }
        if not attributes:
            raise ValueError("test_protected must name at least one attribute")
        for name in attributes:
            if not isinstance(name, str) or JOIN in name:
                raise ValueError(
                    f"test_protected: attribute names must be strings without {JOIN!r}, "
                    f"got {name!r}"
                )
        if len(attributes) > 1:
            joined = np.array(
                [" & ".join(map(str, row)) for row in zip(*attributes.values(), strict=True)]
            )
            attributes[tuple(attributes)] = joined
        named = True
    else:
        attributes, named = {"protected": test_protected}, False
    leaks = {
        key: leakage(
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
        )
        for key, labels in attributes.items()
    }
    fairness = {
        key: group_fairness(
            train_features,
            train_target,
            test_features,
            test_target,
            labels,
            n_bootstrap=n_bootstrap,
            seed=seed,
        )
        for key, labels in attributes.items()
    }
    return AuditResult(ByAttribute(leaks), ByAttribute(fairness), dict(provenance or {}), named)


__all__ = ["AuditResult", "ByAttribute", "FairnessResult", "LeakageResult", "audit"]

"""Stream balance: does the attribute of what a stream emits depend on its class?

For labelled samples from a stream (class, attribute) we tabulate the attribute per class and
summarise the dependence with Cramér's V (0 = attribute independent of class, 1 = class fixes
it), with a bootstrap 95% CI. Plain V is biased upwards on finite samples (an independent
stream of n samples scores about sqrt((r-1)(c-1)/(n min(r-1, c-1))), not 0), so compare
streams at similar sizes, e.g. raw vs steered with `compare_streams`. The CI is a basic
bootstrap interval, which corrects that bias to first order (a percentile interval of plain V
never covers 0 and undercovers small V); in simulation it covered the population V in about
95% of streams at V = 0.3 and reached down to 0 for about 80% of independent streams. Its ends are
clipped to [0, 1] and to hold the estimate (reflection can push them past it when V is near 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from plumbing.tables import contingency_table, cramers_v, cramers_v_corrected
from plumbing.validation import as_labels, check_int, encode

from .intervals import percentile_ci


@dataclass(frozen=True, eq=False)  # holds frames/arrays, which have no single ==
class StreamBalance:
    """Counts of each attribute value per class, and Cramér's V with its bootstrap CI."""

    counts: pd.DataFrame  # rows: class, columns: attribute value
    cramers_v: float
    ci_low: float
    ci_high: float
    n_samples: int
    n_bootstrap: int
    cramers_v_corrected: float = float("nan")  # Bergsma's bias-corrected V (small samples)

    @property
    def shares(self) -> pd.DataFrame:
        """Each class's attribute histogram as proportions (rows sum to 1)."""
        return self.counts.div(self.counts.sum(axis=1), axis=0)

    def to_dict(self) -> dict:
        counts = {
            str(_plain(cls)): {str(_plain(a)): int(v) for a, v in row.items()}
            for cls, row in self.counts.iterrows()
        }
        return {**self._headline(), "counts": counts}

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([self._headline()])

    def _headline(self) -> dict:
        return {
            "n_samples": self.n_samples,
            "n_classes": int(self.counts.shape[0]),
            "n_attribute_values": int(self.counts.shape[1]),
            "cramers_v": self.cramers_v,
            "cramers_v_corrected": self.cramers_v_corrected,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n_bootstrap": self.n_bootstrap,
        }


def stream_balance(classes, attribute, *, n_bootstrap: int = 200, seed: int = 0) -> StreamBalance:
    """Per-class attribute histograms of a stream sample and Cramér's V between class and
    attribute."""
    cls_raw = as_labels(classes, "classes")
    attr_raw = as_labels(attribute, "attribute", n=cls_raw.shape[0])
    n_bootstrap = check_int(n_bootstrap, "n_bootstrap", 1)
    cls_values, cls = encode(cls_raw, "classes")
    attr_values, attr = encode(attr_raw, "attribute")

    table = contingency_table(cls, attr, len(cls_values), len(attr_values))
    counts = pd.DataFrame(
        table,
        index=pd.Index(cls_values, name="class"),
        columns=pd.Index(attr_values, name="attribute"),
    )
    rng = np.random.default_rng(seed)
    n = cls.shape[0]
    boot = np.empty(n_bootstrap)
    for i in range(n_bootstrap):
        idx = rng.integers(0, n, size=n)
        boot[i] = cramers_v(cls[idx], attr[idx])
    v = cramers_v(cls, attr)
    # Basic (reverse-percentile) interval: resampled V overshoots the sample V about as much as
    # the sample V overshoots the population's, so reflecting the percentiles undoes that bias.
    low, high = percentile_ci(boot)
    return StreamBalance(
        counts=counts,
        cramers_v=v,
        # reflected ends can cross the estimate (all resamples above a V near 0): clip to [0, 1] and
        # to hold V
        ci_low=float(np.clip(2 * v - high, 0.0, v)),
        ci_high=float(np.clip(2 * v - low, v, 1.0)),
        n_samples=int(n),
        n_bootstrap=n_bootstrap,
        cramers_v_corrected=cramers_v_corrected(cls, attr),
    )


def stream_balance_joint(
    classes, attributes: Mapping[str, object], *, n_bootstrap: int = 200, seed: int = 0
) -> dict:
    """``stream_balance`` for each of several attributes and for their joint value ("joint": value
    tuples)."""
    if not isinstance(attributes, Mapping) or not attributes:
        raise ValueError("attributes must be a non-empty mapping {name: labels}")
    out = {
        name: stream_balance(classes, values, n_bootstrap=n_bootstrap, seed=seed)
        for name, values in attributes.items()
    }
    if len(attributes) > 1:
        columns = [as_labels(v, name) for name, v in attributes.items()]
        joint = np.array(["/".join(map(str, row)) for row in zip(*columns, strict=True)])
        out["joint"] = stream_balance(classes, joint, n_bootstrap=n_bootstrap, seed=seed)
    return out


def compare_streams(
    streams: Mapping[str, tuple], *, n_bootstrap: int = 200, seed: int = 0
) -> pd.DataFrame:
    """One row per named stream, {"raw": (classes, attribute), "steered": (...)}: V with its CI."""
    if not isinstance(streams, Mapping) or not streams:
        raise ValueError("streams must be a non-empty mapping {name: (classes, attribute)}")
    rows = []
    for name, pair in streams.items():
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise ValueError(f"streams[{name!r}] must be a (classes, attribute) pair")
        result = stream_balance(pair[0], pair[1], n_bootstrap=n_bootstrap, seed=seed)
        rows.append(result.to_frame().assign(stream=name))
    return pd.concat(rows, ignore_index=True).set_index("stream")


def _plain(v):
    return v.item() if hasattr(v, "item") else v

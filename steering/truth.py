"""Balance in truth: a labeler's error model from a verified set, and the mix of labeler cells whose
*true* values meet the target.

A labeler-confirmed draw with ``proposal="prior"`` keeps, in each (class g, labeler output o) cell,
prior samples that the labeler put there, so their true values follow ``P(true | o, g)``: a draw
whose labeler cells are mixed as ``q_g`` holds true values ``P_g q_g`` (``P_g[t, o]``). Given a
verified set (items with their class, the labeler's output and the person's true value) this module
estimates ``P`` (``fit_error_model``), solves ``P_g q_g = t_g`` over the simplex for each class
(``solve_mix``), hands ``q`` to the steerer as its cell target (``aim_at_truth``), and reports the
draw's true shares and Cramér's V with intervals from the error model's Dirichlet posterior and the
draw's own sampling (``truth_report``).

The error model, per class where the counts allow, pooled otherwise: each (class, output) cell's
true values get a Dirichlet posterior ``Dir(counts[g, o] + b + max(0, m - n[g, o]) pooled[o])``:
a sparse base prior ``b = 0.01`` per value, plus, for a cell with fewer than ``m`` (5) verified
items, as many pseudo-counts of the estimate pooled over classes (``pooled[o]``: counts + 1/2) as
it lacks. A cell with ``m`` items or more stands on its own: the classes' true priors differ (that
is the bias being corrected), so the pooled estimate is a poor guess for any one class. The base is
sparse because most cells hold a few values and almost none of the others: Jeffreys' 1/2 (or 1/T)
put a floor of ~2.5% under every value of an 18-item cell, which steered the mix wrong, and the
true-V interval covered the judged V in 0-44% of repetitions, against 94-95% with 0.01
(``benchmarks/labeler_error.py``, 85% labeler, 300 verified). Scores: a labeler's
probabilities are calibrated (at best) for its training prior, not for this generator's
class-conditional prior, so they would bring back the very prior shift being corrected; the
steerer accepts by the label anyway, so the model is per label cell (scores ``[N, k]`` count as
their argmax) and the verified counts estimate each cell's posterior directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

STRENGTH = 5.0  # m: a class cell with fewer verified items borrows the pooled estimate
BASE = 0.01  # b: the sparse base prior per value (see the module docstring)
DRAWS = 2000  # posterior draws behind an interval
LEVEL = 0.95  # intervals are central LEVEL intervals
TOLERANCE = 1e-6  # a target is met when the L1 distance of the best mix is below this


@dataclass(frozen=True)
class ErrorModel:
    """``P(true | labeler output, class)``: Dirichlet posteriors ``alpha [G, K, T]`` per cell."""

    counts: np.ndarray  # [G, K, T] verified items by class, labeler output, true value
    pooled: np.ndarray  # [K, T] the estimate pooled over classes (each row sums to 1)
    strength: float = STRENGTH
    base: float = BASE

    @property
    def alpha(self) -> np.ndarray:
        base = self.base
        lacking = np.clip(self.strength - self.counts.sum(-1, keepdims=True), 0, None)
        return self.counts + base + lacking * self.pooled[None]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.counts.shape)

    def mean(self) -> np.ndarray:
        """Posterior mean ``[G, K, T]``: each (class, output) row a distribution of true values."""
        alpha = self.alpha
        return alpha / alpha.sum(-1, keepdims=True)

    def draws(self, k: int = DRAWS, seed: int = 0) -> np.ndarray:
        """``k`` posterior draws ``[k, G, K, T]`` (independent Dirichlet per cell)."""
        gamma = np.random.default_rng(seed).gamma(self.alpha, size=(k, *self.shape))
        return gamma / np.maximum(gamma.sum(-1, keepdims=True), 1e-300)

    def config(self) -> dict:
        return {
            "counts": self.counts.astype(int).tolist(),
            "pooled": self.pooled.tolist(),
            "strength": self.strength,
            "base": self.base,
            "rule": "Dir(counts[g, o] + base + max(0, strength - n[g, o]) * pooled[o]); "
            "pooled[o] = sum_g counts[g, o] + 1/2, normalised",
        }

    @classmethod
    def from_config(cls, config: dict) -> ErrorModel:
        counts, pooled = np.asarray(config["counts"], float), np.asarray(config["pooled"], float)
        if counts.ndim != 3 or pooled.shape != counts.shape[1:]:
            raise ValueError("error model: counts must be [G, K, T] and pooled [K, T]")
        return cls(counts, pooled, float(config["strength"]), float(config["base"]))


def fit_error_model(
    classes, outputs, truth, num_classes: int, num_values: int, strength: float = STRENGTH
) -> ErrorModel:
    """The error model of a verified set: ``classes [N]``, the labeler's ``outputs [N]`` (or
    scores ``[N, k]``, taken as their argmax) and the person's ``truth [N]``."""
    classes, outputs, truth = (np.asarray(a) for a in (classes, outputs, truth))
    if outputs.ndim == 2:
        outputs = outputs.argmax(1)
    G, K = max(1, int(num_classes)), int(num_values)
    if not (classes.ndim == truth.ndim == outputs.ndim == 1) or not (
        len(classes) == len(outputs) == len(truth)
    ):
        raise ValueError(
            "verified: classes, outputs and truth must be 1-d and of one length, got shapes "
            f"{list(classes.shape)}, {list(outputs.shape)}, {list(truth.shape)}"
        )
    if len(truth) == 0:
        raise ValueError("verified: the verified set is empty")
    for name, a, high in (("classes", classes, G), ("outputs", outputs, K), ("truth", truth, K)):
        if not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= high:
            raise ValueError(f"verified: {name} must be integers in [0, {high}), got {a.dtype}")
    if not np.isfinite(strength) or strength <= 0:
        raise ValueError(f"strength must be a positive number, got {strength!r}")
    counts = np.zeros((G, K, K))
    np.add.at(counts, (classes, outputs, truth), 1.0)
    pooled = counts.sum(0) + 0.5
    return ErrorModel(counts, pooled / pooled.sum(-1, keepdims=True), float(strength))


def as_error_model(verified, num_classes: int, num_values: int) -> ErrorModel:
    """An ``ErrorModel`` as is, or a verified set ``{"classes", "outputs", "truth"}`` fitted."""
    if isinstance(verified, ErrorModel):
        model = verified
    elif isinstance(verified, dict) and {"classes", "outputs", "truth"} <= set(verified):
        model = fit_error_model(
            verified["classes"], verified["outputs"], verified["truth"], num_classes, num_values
        )
    else:
        raise ValueError(
            "verified must be an ErrorModel or a dict with 'classes', 'outputs' and 'truth' arrays"
        )
    if model.shape != (max(1, num_classes), num_values, num_values):
        raise ValueError(
            f"verified: the error model is {list(model.shape)} (classes, outputs, values), the "
            f"steerer needs {[max(1, num_classes), num_values, num_values]}"
        )
    return model


# ---------------------------------------------------------------- the mix of labeler cells


def true_target(target, num_classes: int, num_values: int) -> np.ndarray:
    """The true target ``[G, T]``: uniform (None), one distribution ``[T]`` or one per class."""
    G, T = num_classes, num_values
    t = np.full((G, T), 1.0 / T) if target is None else np.asarray(target, dtype=float)
    if t.shape == (T,):
        t = np.broadcast_to(t, (G, T)).copy()
    if t.shape != (G, T) or not np.isfinite(t).all() or t.min() < 0:
        raise ValueError(
            f"target_distribution must be {T} non-negative shares (or [{G}, {T}], one row per "
            f"class), got shape {list(t.shape)}"
        )
    if np.any(t.sum(1) <= 0):
        raise ValueError("target_distribution: every row must have a positive sum")
    return t / t.sum(1, keepdims=True)


def best_mix(P: np.ndarray, t: np.ndarray, available=None) -> tuple[np.ndarray, float]:
    """The mix ``q`` on the simplex (zero where not ``available``) whose true shares ``P q`` are
    closest to ``t`` in L1, and that distance (a small linear program)."""
    from scipy.optimize import linprog

    T, K = P.shape
    available = np.ones(K, bool) if available is None else np.asarray(available, bool)
    # variables: q [K], over [T], under [T]; minimise sum(over + under)
    cost = np.concatenate([np.zeros(K), np.ones(2 * T)])
    equal = np.block([[P, -np.eye(T), np.eye(T)], [np.ones((1, K)), np.zeros((1, 2 * T))]])
    bounds = [(0, None if a else 0) for a in available] + [(0, None)] * (2 * T)
    result = linprog(cost, A_eq=equal, b_eq=np.append(t, 1.0), bounds=bounds, method="highs")
    if result.status != 0:
        raise ValueError(f"the mix of labeler cells could not be solved: {result.message}")
    q = np.clip(result.x[:K], 0, None)
    return q / q.sum(), float(result.fun)


def solve_mix(
    model: ErrorModel, target, available=None, values=None, output_shares=None
) -> np.ndarray:
    """Per class, the labeler-cell mix ``q [G, K]`` whose true shares meet ``target`` exactly
    (posterior mean model); a ValueError saying what is reachable (and what would help) if none.

    ``available [G, K]``: the cells a draw can fill; ``output_shares [G, K]``: how often the
    labeler gives each output in each class on the generator's samples (for the message's
    estimate of the labeler accuracy that would do)."""
    G, K, T = model.shape
    t = true_target(target, G, T)
    mean = model.mean()
    available = np.ones((G, K), bool) if available is None else np.asarray(available, bool)
    mixes, misses = [], []
    for g in range(G):
        q, gap = best_mix(mean[g].T, t[g], available[g])
        mixes.append(q)
        if gap > TOLERANCE:
            misses.append((g, gap))
    if misses:
        raise ValueError(unreachable_message(model, t, available, misses, values, output_shares))
    return np.stack(mixes)


def reachable_range(model: ErrorModel, available=None) -> tuple[np.ndarray, np.ndarray]:
    """The lowest and highest true share ``[G, T]`` of each value any mix can reach."""
    mean = model.mean()  # [G, K, T]
    if available is not None:
        mask = np.asarray(available, bool)[:, :, None]
        return np.where(mask, mean, np.inf).min(1), np.where(mask, mean, -np.inf).max(1)
    return mean.min(1), mean.max(1)


def unreachable_message(model, t, available, misses, values=None, output_shares=None) -> str:
    """What is out of reach (class, value, target, reachable range) and what would help."""
    low, high = reachable_range(model, available)
    draws = np.where(available[None, :, :, None], model.draws(DRAWS, seed=1), -np.inf)
    upper = np.quantile(draws.max(2), 0.5 + LEVEL / 2, axis=0)  # [G, T]: best share, upper bound
    name = (lambda v: f"value {v}") if values is None else (lambda v: f"{values}={v}")
    parts, more = [], {}
    for g, gap in misses:
        out = [v for v in range(t.shape[1]) if not low[g, v] - 1e-9 <= t[g, v] <= high[g, v] + 1e-9]
        for v in out or range(t.shape[1]):
            parts.append(
                f"class {g}: {name(v)} target {t[g, v]:.3f}, reachable "
                f"{low[g, v]:.3f}..{high[g, v]:.3f}"
            )
            if t[g, v] > high[g, v] and t[g, v] <= upper[g, v]:
                n = int(model.counts[g].sum())
                factor = ((upper[g, v] - high[g, v]) / (t[g, v] - high[g, v])) ** 2
                more[g] = max(more.get(g, 0), int(np.ceil(n * max(factor, 1.0))))
        if not out:
            parts[-1] += f" (each value is reachable alone, not all together: L1 gap {gap:.3f})"
    accuracy = needed_accuracy(model, t, output_shares)
    help_ = (
        "more verified labels could settle whether it is (verified labels in the class's cells: "
        + "; ".join(
            f"class {g}: about {m}, now {int(model.counts[g].sum())}" for g, m in more.items()
        )
        + ")"
        if more
        else "more verified labels will not help (the target lies beyond the "
        f"{LEVEL:.0%} upper bound of what this labeler's cells hold)"
    )
    better = (
        f"a labeler with accuracy >= {accuracy:.3f} (symmetric errors) would reach it"
        if accuracy is not None
        else "no labeler accuracy below 1 reaches it"
    )
    return (
        "target_distribution is out of reach in truth with this labeler: among the samples it "
        "puts in a cell the true values are mixed, and no mix of its cells meets the target. "
        + "; ".join(parts[:8])
        + (f"; and {len(parts) - 8} more" if len(parts) > 8 else "")
        + f". What would help: {help_}; or {better}; or a target inside the reachable range"
    )


def needed_accuracy(model: ErrorModel, t: np.ndarray, output_shares=None) -> float | None:
    """The lowest accuracy at which a labeler with symmetric errors reaches ``t`` in every class,
    given each class's true shares as this model and the labeler's ``output_shares [G, K]``
    estimate them (uniform outputs if not given); bisection, None if even 0.999 does not."""
    G, K, T = model.shape
    shares = np.ones((G, K)) if output_shares is None else np.asarray(output_shares, float)
    shares = shares / np.maximum(shares.sum(1, keepdims=True), 1e-300)
    prior = np.einsum("go,got->gt", shares, model.mean())  # true shares per class

    def reaches(a: float) -> bool:
        confusion = np.full((T, T), (1 - a) / (T - 1))
        np.fill_diagonal(confusion, a)
        for g in range(G):
            joint = prior[g][:, None] * confusion  # [t, o]
            P = joint / np.maximum(joint.sum(0, keepdims=True), 1e-300)
            if best_mix(P, t[g])[1] > TOLERANCE:
                return False
        return True

    if not reaches(0.999):
        return None
    lo, hi = 1.0 / T, 0.999
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return hi


# ---------------------------------------------------------------- the steerer


def aim_at_truth(steerer, verified, target_distribution=None):
    """A copy of a fitted ``ConfirmedSteerer`` (one protected attribute) aimed at a target of true
    values.

    Its cell target becomes the solved mix ``q [G, K]``, its proposal plain rejection (kept samples
    follow the prior inside each cell, the error model's premise), and ``truth_`` records the
    error model, the true target and ``q`` (so its card carries them). Steerers are frozen after
    fit, so the aimed one is rebuilt from the fitted one's config and tensors.
    """
    if getattr(steerer, "guarantee", None) != "confirmed" or not getattr(steerer, "fitted", False):
        raise ValueError("steerer must be a fitted ConfirmedSteerer to aim at the truth")
    if len(steerer.attrs_) != 1:
        raise ValueError(
            "balance in truth needs one protected attribute and no keep labeler; the steerer has "
            f"{steerer.attrs_}"
        )
    G, K = steerer.num_classes_, steerer.num_values_[0]
    model = as_error_model(verified, G, K)
    available = (steerer.counts > 0).numpy()  # a labeler cell never labelled cannot be filled
    shares = steerer.prior_counts.double().numpy()  # the labeler's outputs on prior draws
    q = solve_mix(model, target_distribution, available, steerer.attrs_[0], shares)
    t = true_target(target_distribution, G, K)
    config, tensors = steerer.config(), dict(steerer.tensors())
    tensors["cell_target"] = torch.as_tensor(q, dtype=torch.float32)
    config["proposal"] = "prior"
    config["truth"] = {
        "error_model": model.config(),
        "target": t.tolist(),
        "labeler_mix": q.tolist(),
    }
    aimed = type(steerer).from_state(config, tensors)
    rejection = aimed.rejection_cost()
    costs = dict(
        proposal="prior", rejection_syntheses_per_kept=rejection, syntheses_per_kept=rejection
    )
    return aimed.with_costs(costs)


def cramers_v_table(table: np.ndarray) -> np.ndarray:
    """Plain Cramér's V of contingency tables ``[..., G, T]`` (rows/columns never seen dropped
    by giving them no weight; as ``plumbing.tables.cramers_v``)."""
    table = np.asarray(table, float)
    n = table.sum((-1, -2), keepdims=True)
    rows, cols = table.sum(-1, keepdims=True), table.sum(-2, keepdims=True)
    expected = rows * cols / np.maximum(n, 1e-300)
    chi2 = np.where(expected > 0, (table - expected) ** 2 / np.maximum(expected, 1e-300), 0)
    k = np.minimum((rows > 0).sum((-1, -2)), (cols > 0).sum((-1, -2))) - 1
    return np.sqrt(chi2.sum((-1, -2)) / (n[..., 0, 0] * np.maximum(k, 1))) * (k > 0)


def truth_report(model, quota, draws: int = DRAWS, seed: int = 0, level: float = LEVEL) -> dict:
    """Estimated true shares ``[G, T]`` and Cramér's V (class x true value) of a draw with labeler
    cell quotas ``quota [G, K]`` (``steerer.quotas(n)``), each with a central ``level`` interval
    over posterior draws of the error model times the draw's own multinomial sampling.
    ``model``: an ``ErrorModel``, or a steerer aimed at the truth (its recorded error model)."""
    if not isinstance(model, ErrorModel):
        truth = getattr(model, "truth_", None)
        if not truth:
            raise ValueError("model must be an ErrorModel or a steerer aimed at the truth")
        model = ErrorModel.from_config(truth["error_model"])
    quota = np.asarray(quota, dtype=np.int64)
    G, K, T = model.shape
    if quota.shape != (G, K):
        raise ValueError(f"quota must be [{G}, {K}], got {list(quota.shape)}")
    rng = np.random.default_rng(seed)
    posterior = model.draws(draws, seed)  # [k, G, K, T]
    tables = np.zeros((draws, G, T))
    for g in range(G):
        for o in range(K):
            if quota[g, o]:
                tables[:, g] += rng.multinomial(quota[g, o], posterior[:, g, o])
    expected = np.einsum("go,got->gt", quota, model.mean())
    shares = tables / np.maximum(tables.sum(-1, keepdims=True), 1)
    tail = (1 - level) / 2
    v = cramers_v_table(tables)
    return {
        "shares": expected / np.maximum(expected.sum(-1, keepdims=True), 1e-300),
        "shares_interval": np.quantile(shares, [tail, 1 - tail], axis=0),
        "v": float(cramers_v_table(expected)),
        "v_interval": tuple(float(x) for x in np.quantile(v, [tail, 1 - tail])),
        "level": level,
        "n": int(quota.sum()),
    }


__all__ = [
    "ErrorModel",
    "aim_at_truth",
    "as_error_model",
    "best_mix",
    "cramers_v_table",
    "fit_error_model",
    "needed_accuracy",
    "reachable_range",
    "solve_mix",
    "true_target",
    "truth_report",
]

"""Say it when a steer misses what was asked: the gap to the target, what would help, and a
labeler that carries no signal, called out by name.

A balance steer aims at protected labels independent of the class (Cramér's V = 0) with the
target shares. Its report (``steering_report`` / ``confirmed_report``) measures both on fresh
samples; ``steer_misses`` turns the report into plain sentences, an empty list when all is well.
"""

from __future__ import annotations

import math

V_TOLERANCE = 0.05  # bias-corrected V above this misses "independent of the class"
SHARE_TOLERANCE = 0.05  # a steered share this far from its target misses it
NO_SIGNAL_V = 0.05  # raw V (class, labels) below this: the labels do not follow the class...
NO_SIGNAL_MARGIN = 0.02  # ...and a latent probe within at most this above majority: nor the latent


def steer_misses(
    report: dict,
    *,
    mode: str,
    names: list[str],
    labeler_names: dict[str, str] | None = None,
    target=None,
    n: int | None = None,
    method: str | None = None,
) -> list[str]:
    """Sentences naming each miss of a steer's ``report`` (empty when it met its target).

    ``names`` are the protected attributes; ``labeler_names`` maps each to the labeler that
    labelled it (for the no-signal call-out); ``target`` is the target shares (a list for one
    attribute, ``{name: list}`` for several, None for uniform); ``n`` and ``method`` are the
    fit's, for the advice."""
    labeler_names = labeler_names or {}
    out = [_no_signal(report, names, labeler_names)] if _carries_no_signal(report) else []
    if mode != "balance":
        return out
    raw, steered = report.get("raw", {}), report.get("steered", {})
    gaps = []
    for key, value in steered.get("cramers_v_corrected_by", {}).items():
        if _finite(value) and value > V_TOLERANCE:
            name = _name(key, names)
            gaps.append(
                f"Cramér's V(class, {name}) is {value:.3f} after steering "
                f"(raw {raw.get('cramers_v_corrected_by', {}).get(key, math.nan):.3f}); "
                f"the target is 0 (independent of the class), missed by {value:.3f} "
                f"(tolerance {V_TOLERANCE})"
            )
    for key, shares in steered.get("shares_by", {}).items():
        wanted = _wanted(target, key, names, len(shares))
        if wanted is None:
            continue
        gap = max(abs(a - b) for a, b in zip(shares, wanted, strict=False))
        if gap > SHARE_TOLERANCE:
            gaps.append(
                f"shares of {_name(key, names)} are {_shares(shares)} after steering, "
                f"target {_shares(wanted)}: missed by {gap:.3f} (tolerance {SHARE_TOLERANCE})"
            )
    if gaps:
        out += [f"target missed: {gap}" for gap in gaps]
        out.append(_advice(n, method))
    return out


def _carries_no_signal(report: dict) -> bool:
    """Labels independent of the class and of the latent: a probe does no better than majority."""
    probe = report.get("probe_before")
    raw_v = report.get("raw", {}).get("cramers_v_corrected_by", {})
    if probe is None or not raw_v:
        return False
    class_free = all(_finite(v) and v < NO_SIGNAL_V for v in raw_v.values())
    return class_free and probe["accuracy"] <= probe["majority"] + NO_SIGNAL_MARGIN


def _no_signal(report: dict, names: list[str], labeler_names: dict[str, str]) -> str:
    probe = report["probe_before"]
    who = ", ".join(labeler_names.get(name, name) for name in names)
    return (
        f"labeler {who} carries no signal: its labels are independent of the class (raw V "
        f"{max(report['raw']['cramers_v_corrected_by'].values()):.3f}) and a latent probe reads "
        f"them no better than guessing the majority ({probe['accuracy']:.3f} vs "
        f"{probe['majority']:.3f}); steering on it changes nothing real. Check that the labeler "
        "sees the attribute (try it on a few images with known labels)"
    )


def _advice(n: int | None, method: str | None) -> str:
    more = f"--n {4 * n}" if n else "a larger --n"
    if method == "confirmed":
        return (
            f"what would help: more labelled samples ({more}) so the proposal covers every "
            "(class, value) cell, or a larger --eval-n if the gap is within sampling noise"
        )
    return (
        f"what would help: more labelled samples ({more}), or --method confirmed (every kept "
        "sample labelled: exact target shares per batch in the labeler's terms)"
    )


def _wanted(target, key, names, k):
    """The target shares of ``key`` (uniform by default, as balance does); None for the joint."""
    if isinstance(target, dict):
        shares = target.get(key)
    elif target is not None and key in ("protected", *names[:1]):
        shares = target
    else:
        shares = None if key == "joint" else [1 / k] * k
    if shares is None:
        return None
    total = sum(shares)
    return [s / total for s in shares] if total > 0 else None


def _name(key: str, names: list[str]) -> str:
    return names[0] if key == "protected" else key


def _shares(values) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def _finite(v) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)

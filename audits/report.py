"""AuditReport: named audit results gathered into one JSON + Markdown + PNG bundle.

Add any result from this package (leakage, group fairness, stream balance, memorisation) or a
plain DataFrame (e.g. from `compare_streams`) under a name; `save(dir)` writes report.json,
report.md and one plot per section kind. JSON is strict: NaN and infinity become null. Plots are
drawn on bare `matplotlib.figure.Figure`
objects and saved through the Agg canvas, so no window opens and pyplot's global state (and
the backend of a user's notebook) is left alone.
"""

from __future__ import annotations

import io
import json
import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from plumbing.outputs import replace_file, staged_folder, write_new

from .fairness import FairnessResult
from .leakage import LeakageResult
from .memorisation import MemorisationResult
from .stream import StreamBalance

REPLACEABLE = (
    "report.json",
    "report.md",
    "*.png",
    "erased",
    "feature_eraser.safetensors",
)  # an older report
KINDS = {
    LeakageResult: "leakage",
    FairnessResult: "fairness",
    StreamBalance: "stream_balance",
    MemorisationResult: "memorisation",
    pd.DataFrame: "table",
}


class AuditReport:
    """An ordered collection of named audit results that renders to JSON, Markdown and PNGs."""

    def __init__(self, title: str = "fairgen audit", provenance: dict | None = None):
        self.title = title
        self.sections: dict[str, object] = {}
        self.provenance = dict(
            provenance or {}
        )  # what was audited: files and hashes, seeds, sizes, versions

    def add(self, name: str, result) -> AuditReport:
        """Add a result under a new name; returns the report so calls can be chained."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if name in self.sections:
            raise ValueError(f"name {name!r} is already a section of this report")
        if _kind(result) is None:
            allowed = ", ".join(t.__name__ for t in KINDS)
            raise ValueError(
                f"result for {name!r} must be one of {allowed}, got {type(result).__name__}"
            )
        self.sections[name] = result
        return self

    def __getitem__(self, name: str):
        return self.sections[name]

    def to_dict(self) -> dict:
        sections = {}
        for name, result in self.sections.items():
            kind = _kind(result)
            if kind == "table":
                body = {"rows": _with_index(result).to_dict(orient="records")}
            else:
                body = result.to_dict()
            sections[name] = {"kind": kind, **body}
        return _jsonable({"title": self.title, "provenance": self.provenance, "sections": sections})

    def to_json(self, path=None) -> str:
        """Strict JSON text (NaN/inf as null); also written to `path` when given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            replace_file(path, (text + "\n").encode())
        return text

    def to_markdown(self, images: dict[str, str] | None = None) -> str:
        """Markdown with a verdict line and tables per section; `images` maps section -> PNG
        path."""
        images = images or {}
        lines = [f"# {self.title}", ""]
        for name, result in self.sections.items():
            lines += [f"## {name}", ""]
            lines += _section_markdown(result)
            if name in images:
                lines += [f"![{name}]({images[name]})", ""]
        if self.provenance:
            lines += ["## provenance", "", *_key_value(_flatten(self.provenance)), ""]
        return "\n".join(lines)

    def save(self, directory) -> dict[str, Path]:
        """Write report.json, report.md and the plots into `directory`, all or nothing: they are
        written in a temporary folder that then replaces `directory` whole (``plumbing.outputs``;
        a `directory` holding other files is refused). Returns what was written, by final path."""
        directory = Path(directory)
        with staged_folder(directory, REPLACEABLE) as stage:
            written = self.write_into(stage)
        return {name: directory / path.relative_to(stage) for name, path in written.items()}

    def write_into(self, out: Path) -> dict[str, Path]:
        """Write the report's files into ``out``, a fresh folder (a staging folder of a larger
        output)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        images: dict[str, str] = {}
        leak = {n: r for n, r in self.sections.items() if isinstance(r, LeakageResult)}
        if leak:
            path = out / "leakage.png"
            _save(_plot_leakage(leak), path)
            written["leakage.png"] = path
            images.update({n: path.name for n in leak})
        plotters = {
            FairnessResult: ("fairness", _plot_fairness),
            StreamBalance: ("stream", _plot_stream),
            MemorisationResult: ("memorisation", _plot_memorisation),
        }
        for name, result in self.sections.items():
            if type(result) in plotters:
                prefix, plot = plotters[type(result)]
                path = out / _file_name(prefix, name, written)
                _save(plot(name, result), path)
                written[path.name] = path
                images[name] = path.name
        written["report.json"] = write_new(out / "report.json", (self.to_json() + "\n").encode())
        written["report.md"] = write_new(
            out / "report.md", (self.to_markdown(images) + "\n").encode()
        )
        return written


def _kind(result) -> str | None:
    for cls, kind in KINDS.items():
        if isinstance(result, cls):
            return kind
    return None


# ---------------------------------------------------------------- markdown


def _section_markdown(result) -> list[str]:
    if isinstance(result, LeakageResult):
        verdict = result.verdict
        head = (
            f"**{verdict}**: balanced accuracy {_fmt(result.balanced_accuracy)} "
            f"(95% CI {_fmt(result.ci_low)} to {_fmt(result.ci_high)}) vs chance "
            f"{_fmt(result.chance)}; "
            f"permutation p = {_fmt(result.p_value)} ({result.n_permutations} permutations)."
        )
        return [head, "", *_key_value(result.to_frame().iloc[0].to_dict()), ""]
    if isinstance(result, FairnessResult):
        s = result.summary
        head = (
            f"Demographic-parity difference {_fmt(s['demographic_parity_difference'])} "
            f"(95% CI {_fmt(s['demographic_parity_ci_low'])} to "
            f"{_fmt(s['demographic_parity_ci_high'])}); "
            f"equalized-odds difference {_fmt(s['equalized_odds_difference'])} "
            f"(95% CI {_fmt(s['equalized_odds_ci_low'])} to {_fmt(s['equalized_odds_ci_high'])}). "
            f"{s['aggregation'].capitalize()}."
        )
        lines = [head, ""]
        if s.get("small_groups"):
            lines += [
                f"**Warning: rates from few rows** (fewer than {s['min_count']} positives or "
                "negatives; "
                "the gaps above may rest on them): " + "; ".join(s["small_groups"]),
                "",
            ]
        if s["undefined_rates"]:
            lines += [
                "Undefined rates (NaN, left out of the gaps): " + "; ".join(s["undefined_rates"]),
                "",
            ]
        groups = result.by_group[["n", "accuracy", "note"]].reset_index()
        return lines + [*_table(groups), "", *_table(result.long_table()), ""]
    if isinstance(result, StreamBalance):
        head = (
            f"Cramér's V between class and attribute {_fmt(result.cramers_v)} "
            f"(95% CI {_fmt(result.ci_low)} to {_fmt(result.ci_high)}) over {result.n_samples} "
            "samples."
        )
        return [head, "", *_table(result.counts.reset_index()), ""]
    if isinstance(result, MemorisationResult):
        verdict = (
            "generated samples sit closer to training than held-out data"
            if result.memorised
            else "no memorisation detected"
        )
        head = (
            f"**{verdict}**: near-copy share {_fmt(result.near_copy_share)} vs held-out "
            f"{_fmt(result.heldout_near_copy_share)} (threshold {_fmt(result.threshold)}, "
            f"{result.threshold_rule}); "
            f"Mann-Whitney p = {_fmt(result.mann_whitney_p)}, Fisher p = {_fmt(result.fisher_p)}."
        )
        return [head, "", *_key_value(result.to_frame().iloc[0].to_dict()), ""]
    return [*_table(_with_index(result)), ""]


def _flatten(d: dict, prefix: str = "") -> dict:
    """Nested provenance as dotted keys, for a two-column Markdown table."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = (
                ", ".join(map(str, value)) if isinstance(value, list | tuple) else value
            )
    return out


def _with_index(df: pd.DataFrame) -> pd.DataFrame:
    """A named index (e.g. compare_streams' "stream") becomes a column; an anonymous one is
    dropped."""
    return df.reset_index() if any(n is not None for n in df.index.names) else df


def _key_value(d: dict) -> list[str]:
    return ["| field | value |", "|---|---|", *(f"| {k} | {_fmt(v)} |" for k, v in d.items())]


def _table(df: pd.DataFrame) -> list[str]:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return lines


def _fmt(v) -> str:
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        return "NaN" if math.isnan(v) else f"{v:.4g}"
    return str(v).replace("|", "\\|")


# ---------------------------------------------------------------- json


def _jsonable(obj):
    """Plain Python containers and scalars only; non-finite floats become None."""
    if isinstance(obj, dict):
        return {str(_jsonable(k)): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ---------------------------------------------------------------- plots

# what the interval around each plotted statistic is, said once on the plot
LEAKAGE_CI = "95% CI (cross-validation, corrected resampled t)"
GAP_CI = "95% simultaneous bootstrap bands (max-t over every pair of groups)"
RATES = (  # by_group column -> axis label, spelled out once
    ("selection_rate", "selection rate\n(share predicted as the class)"),
    ("tpr", "true positive rate (TPR)"),
    ("fpr", "false positive rate (FPR)"),
)
GAPS = (
    ("demographic_parity", "demographic parity\ndifference"),
    ("equalized_odds", "equalized odds\ndifference"),
)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "section"


def _file_name(kind: str, name: str, taken) -> str:
    """``<kind>_<section>.png`` without saying a word twice: "target fairness by hair" ->
    fairness_by_hair.png, "memorisation" -> memorisation.png, "world stream" -> world_stream.png;
    numbered if already taken."""
    words = [w for w in _slug(name).split("_") if w]
    if kind in words:
        words = words[1:] if words[:2] == ["target", kind] else words
    else:
        words = [kind, *words]
    stem = "_".join(words)
    name, i = f"{stem}.png", 2
    while name in taken:
        name, i = f"{stem}_{i}.png", i + 1
    return name


def _save(fig: Figure, path: Path) -> None:
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format="png")
    write_new(path, buffer.getvalue())


def _ticks(ax, labels, width_per_label: float) -> None:
    """Category labels that never overlap: turned when they would not fit side by side."""
    longest = max((len(str(label)) for label in labels), default=0)
    turn = longest * 0.075 > width_per_label  # inches per character at the default size
    ax.set_xticks(
        range(len(labels)),
        [str(label) for label in labels],
        rotation=30 if turn else 0,
        ha="right" if turn else "center",
        rotation_mode="anchor",
    )


def _wrap(text: str, inches: float) -> str:
    """``text`` broken into lines that fit ``inches`` at the default title size."""
    return textwrap.fill(text, max(20, int(inches * 10)))


def _attribute(name: str) -> str:
    """A leakage section's attribute: "hair leakage" -> "hair"."""
    return name[: -len(" leakage")] if name.endswith(" leakage") else name


def _plot_leakage(results: dict[str, LeakageResult]):
    """Balanced accuracy per attribute as points with CI bars (visible even at 1.0), chance
    dashed."""
    width = max(5.0, 1.6 + 1.4 * len(results))
    fig = Figure(figsize=(width, 4.2), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(results))
    acc = np.array([r.balanced_accuracy for r in results.values()])
    low = np.array([r.ci_low for r in results.values()])
    high = np.array([r.ci_high for r in results.values()])
    err = np.nan_to_num(np.stack([acc - low, high - acc]).clip(min=0))
    ax.bar(x, acc, width=0.5, color="tab:blue", alpha=0.35)
    ax.errorbar(
        x,
        acc,
        yerr=err,
        fmt="o",
        color="black",
        ecolor="tab:red",
        elinewidth=2.5,
        capsize=8,
        capthick=2.5,
        label=f"balanced accuracy of a probe, {LEAKAGE_CI}",
    )
    for i, r in enumerate(results.values()):
        ax.hlines(
            r.chance,
            i - 0.35,
            i + 0.35,
            colors="black",
            linestyles="--",
            label="chance (1 / number of values)" if i == 0 else None,
        )
        ax.annotate(
            f"{r.balanced_accuracy:.2f}\n[{r.ci_low:.2f}, {r.ci_high:.2f}]",
            (i, min(r.ci_high, 1.0)),
            xytext=(0, 6),
            textcoords="offset points",
            ha="center",
            fontsize="small",
        )
    _ticks(ax, [_attribute(name) for name in results], (width - 1.2) / len(results))
    ax.set_xlim(-0.6, len(results) - 0.4)
    ax.set_ylim(0, 1.25)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_xlabel("protected attribute")
    ax.set_ylabel("balanced accuracy")
    ax.set_title(
        _wrap("leakage: how well a probe reads each protected attribute from the features", width)
    )
    fig.legend(loc="outside lower center", fontsize="small", frameon=False)
    return fig


def _plot_fairness(name: str, result: FairnessResult):
    """Per-group rates per target class, and the two gaps with their simultaneous bands; the
    legend below the panels, every rate spelled out once."""
    table, s = result.long_table(), result.summary
    groups = list(dict.fromkeys(table["group"]))
    classes = list(dict.fromkeys(table["class"]))
    panel = max(3.6, 0.35 + 0.16 * len(groups) * len(classes))  # inches per rate panel
    fig = Figure(figsize=(2 * panel + 1.2, 7.6), layout="constrained")
    axes = fig.subplots(2, 2).flat  # selection rate, TPR / FPR, the two gaps
    width = 0.8 / max(1, len(groups))
    x = np.arange(len(classes))
    for ax, (rate, label) in zip(axes[:3], RATES, strict=True):
        for j, group in enumerate(groups):
            rows = table[table["group"] == group].set_index("class").loc[classes]
            ax.bar(
                x - 0.4 + width * (j + 0.5),
                rows[rate].to_numpy(float),
                width,
                label=f"{group} (n={rows['n'].iloc[0]})" if rate == "tpr" else None,
            )
        _ticks(ax, classes, panel / len(classes))
        ax.set_xlabel("target class (one-vs-rest)")
        ax.set_ylabel(label)
        ax.set_ylim(0, 1.05)
    gap = axes[3]
    values = np.array([s[f"{key}_difference"] for key, _ in GAPS], dtype=float)
    err = np.nan_to_num(
        np.array(
            [
                [v - s[f"{key}_ci_low"], s[f"{key}_ci_high"] - v]
                for v, (key, _) in zip(values, GAPS, strict=True)
            ],
            dtype=float,
        ).T.clip(min=0)
    )
    gap.bar(range(2), values, width=0.5, color="tab:gray", alpha=0.5)
    gap.errorbar(
        range(2),
        values,
        yerr=err,
        fmt="o",
        color="black",
        ecolor="tab:red",
        elinewidth=2.5,
        capsize=8,
    )
    gap.set_xticks(range(2), [label for _, label in GAPS])
    gap.set_xlim(-0.8, 1.8)
    gap.set_ylim(0, 1.05)
    gap.set_ylabel("largest gap between groups")
    gap.set_title(_wrap(f"largest gaps, with {GAP_CI}", panel), fontsize="medium")
    fig.legend(
        title=f"protected group ({len(groups)}); n = test rows",
        loc="outside lower center",
        ncol=min(len(groups), 4),
        fontsize="small",
    )
    fig.suptitle(f"{name}: rates of the target probe per protected group")
    return fig


def _plot_stream(name: str, result: StreamBalance):
    shares = result.shares
    width = max(4.5, 2.5 + 0.6 * len(shares))
    fig = Figure(figsize=(width, 4.0), layout="constrained")
    ax = fig.subplots()
    bottom = np.zeros(len(shares))
    x = np.arange(len(shares))
    for value in shares.columns:
        ax.bar(x, shares[value].to_numpy(), bottom=bottom, label=str(value))
        bottom += shares[value].to_numpy()
    _ticks(ax, list(shares.index), (width - 2.5) / len(shares))
    ax.set_xlabel("class")
    ax.set_ylabel("share of each protected value")
    ax.set_ylim(0, 1)
    ax.legend(title="protected value", fontsize="small", bbox_to_anchor=(1.01, 1), loc="upper left")
    ax.set_title(
        f"{name}: Cramér's V(class, protected) = {result.cramers_v:.3f}\n"
        f"95% bootstrap CI [{result.ci_low:.3f}, {result.ci_high:.3f}]; 0 = independent",
        fontsize="medium",
    )
    return fig


def _plot_memorisation(name: str, result: MemorisationResult):
    fig = Figure(figsize=(6.5, 4.0), layout="constrained")
    ax = fig.subplots()
    both = np.concatenate([result.generated_distances, result.heldout_distances])
    bins = np.linspace(0, both.max() if both.max() > 0 else 1.0, 40)
    ax.hist(result.heldout_distances, bins=bins, alpha=0.6, density=True, label="held-out real")
    ax.hist(result.generated_distances, bins=bins, alpha=0.6, density=True, label="generated")
    ax.axvline(result.threshold, color="black", linestyle="--", label="near-copy threshold")
    ax.set_xlabel("distance to the nearest training image")
    ax.set_ylabel("density")
    fig.legend(loc="outside lower center", ncol=3, fontsize="small", frameon=False)
    ax.set_title(
        f"{name}: near copies {result.near_copy_share:.1%} of generated vs "
        f"{result.heldout_near_copy_share:.1%} of held-out",
        fontsize="medium",
    )
    return fig

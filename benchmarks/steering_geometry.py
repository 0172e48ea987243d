"""Steering across latent geometries: does balance / flip hold when attributes are not half-spaces?

Run by hand (CPU, about an hour on a busy 2-core machine; ``--quick`` for a smaller run):

    python benchmarks/steering_geometry.py [--fit-n 20000] [--eval-n 10000] [--flip-n 2000] [--out geometry_out]
    python benchmarks/steering_geometry.py --classifiers     # compare latent classifiers on one geometry

Every generator here is built around the embedded decoder (``world-sprites-z128``), so the world's
judges referee every image:

* ``world-sprites-32``: the first embedded model, a 6-d latent, texture a threshold on one rotated axis;
* ``linear-64`` / ``linear-128``: Gaussian scene codes ``h = R z`` (R with orthonormal rows);
* ``entangled-64 a=...``: ``h = R z + a tanh(A z + b)``, standardised (A with unit rows), growing a;
* ``world-sprites-z128``: the default's own mapping network;
* ``colour``: the default with its prior refitted on a split where colour (not texture) follows the class;
* ``texture+colour``: both follow the class; steered jointly.

Per geometry and method: judged V(class, protected) before and after balance (bootstrap 95% CI,
and Bergsma's bias-corrected V), class fidelity, the share of flipped samples whose judged value is
the requested one, labelled samples, fit seconds, and latent draws per kept sample; plus the share
of each protected factor's scene code that a linear regression on ``z`` explains (R^2). Writes ``table.md`` and ``table.csv``.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import steering
from audits import stream_balance
from audits.stats import cramers_v_corrected
from fairgen.generators import load_generator
from fairgen.world.generator import CODE_NAMES
from fairgen.world.judges import load_judges
from fairgen.world.recipe import RecipeConfig, training_split


class CodeGeometry:
    """A generator whose latent reaches the embedded decoder's Gaussian codes through ``h = f(z)``."""

    num_classes, resolution, latent_space = 4, 32, "z"

    def __init__(self, base, name: str, dim: int, a: float = 0.0, seed: int = 0):
        self.base, self.name, self.latent_dim, self.a = base, name, dim, a
        g = torch.Generator().manual_seed(1000 + seed)
        k = len(CODE_NAMES)
        self.R = torch.linalg.qr(torch.randn(dim, dim, generator=g))[0][:k].contiguous()
        self.A = torch.nn.functional.normalize(torch.randn(k, dim, generator=g), dim=1)
        self.b = torch.randn(k, generator=g)
        h = self._raw(torch.randn(100_000, dim, generator=g))
        self.mean, self.std = h.mean(0), h.std(0)
        self.checksum = f"benchmark:{name}"
        self.device = base.device

    def _raw(self, z):
        return z.float() @ self.R.T + self.a * torch.tanh(z.float() @ self.A.T + self.b)

    def codes(self, z):
        return (self._raw(z) - self.mean) / self.std

    def sample_latents(self, n, generator=None):
        return torch.randn(n, self.latent_dim, generator=generator)

    def synthesize(self, z, y):
        return self.base.decode_codes(self.codes(z.cpu()), y)


def refit(base, protected: tuple[str, ...]):
    """The default generator with its prior refitted on a split whose ``protected`` factors follow the class."""
    model = copy.deepcopy(base)
    model.fit_prior(training_split(RecipeConfig(protected=protected)).factors, protected)
    model.checksum = f"benchmark:{'+'.join(protected)}"
    return model


def linear_share(generator, name: str = "texture", n: int = 20_000) -> float:
    """R^2 of a linear regression of the ``name`` factor's scene code on z (1 = the code is linear in the latent)."""
    from sklearn.linear_model import LinearRegression

    index = CODE_NAMES.index(name)
    z = generator.sample_latents(n, torch.Generator().manual_seed(77)).cpu()
    if isinstance(generator, CodeGeometry):
        code = generator.codes(z)[:, index]
    elif hasattr(generator, "mapping"):
        code = torch.special.ndtri(generator.codes(z)[:, index].clamp(1e-6, 1 - 1e-6))
    else:  # world-sprites-32: each code is one rotated coordinate
        code = (z @ generator.mixing.T)[:, index]
    return float(LinearRegression().fit(z.numpy(), code.numpy()).score(z.numpy(), code.numpy()))


def geometries(base, quick: bool):
    out = [("world-sprites-32", load_generator("world-sprites-32"), ("texture",))]
    out += [(f"linear-{d}", CodeGeometry(base, f"linear-{d}", d), ("texture",)) for d in (64, 128)]
    strengths = (0.7, 1.5) if quick else (0.3, 0.7, 1.5, 3.0)
    out += [(f"entangled-64 a={a}", CodeGeometry(base, f"entangled-64-a{a}", 64, a, seed=5), ("texture",)) for a in strengths]
    out += [("world-sprites-z128", base, ("texture",)), ("colour", refit(base, ("colour",)), ("colour",)),
            ("texture+colour", refit(base, ("texture", "colour")), ("texture", "colour"))]
    return out


def judged(generator, judges, names, n, seed, transform=None):
    labelers = {"class": judges["shape"].predict, **{k: judges[k].predict for k in names}}
    samples = steering.sample_and_label(generator, labelers, n, seed, transform=transform, progress=False)
    return samples


def measure(name, generator, names, method, judges, args) -> dict:
    labelers = {k: judges[k].predict for k in names} if len(names) > 1 else judges[names[0]].predict
    tic = time.time()
    balance, _ = steering.fit_steerer(generator, labelers, n=args.fit_n, method=method, seed=args.seed, progress=False)
    fit_seconds = time.time() - tic
    row = {"geometry": name, "method": method, "protected": "+".join(names), "labelled": args.fit_n,
           "fit_s": fit_seconds}
    raw = judged(generator, judges, names, args.eval_n, args.seed + 1)
    steered = judged(generator, judges, names, args.eval_n, args.seed + 1, transform=balance.as_transform(args.seed))
    classes = steered.classes.numpy()
    columns = {k: steered.numpy(k) for k in names}
    if len(names) > 1:
        columns["joint"] = np.ravel_multi_index(tuple(columns[k] for k in names), tuple(int(steered.numpy(k).max()) + 1 for k in names))
    for key, values in columns.items():
        result = stream_balance(classes, values, n_bootstrap=200, seed=0)
        raw_values = raw.numpy(key) if key != "joint" else np.ravel_multi_index(tuple(raw.numpy(k) for k in names), tuple(int(raw.numpy(k).max()) + 1 for k in names))
        row[f"V raw ({key})"] = stream_balance(raw.classes.numpy(), raw_values, n_bootstrap=1).cramers_v
        row[f"V ({key})"] = result.cramers_v
        row[f"V CI ({key})"] = f"[{result.ci_low:.3f}, {result.ci_high:.3f}]"
        row[f"V corrected ({key})"] = cramers_v_corrected(classes, values)
    row["fidelity"] = float(np.mean(steered.numpy("class") == classes))
    row["draws/kept"] = balance.expected_draws() if hasattr(balance, "expected_draws") else 1.0
    # flips: the same fitted classifier/directions, asked for another value
    flipper = balance
    if method != "resample":
        flipper = steering.LatentSteerer("flip", method).fit(
            *_fit_data(generator, judges[names[0]].predict, args), num_classes=generator.num_classes)
    rng = torch.Generator().manual_seed(args.seed + 3)
    z = generator.sample_latents(args.flip_n, rng).cpu()
    y = torch.randint(generator.num_classes, (args.flip_n,), generator=rng)
    twins, values = flipper.flip(z, y, rng)
    images = generator.synthesize(twins.to(generator.device), y.to(generator.device))
    wanted = flipper.decode_joint(values) if hasattr(flipper, "decode_joint") else {names[0]: values}
    wanted = {names[0] if k == "protected" else k: v for k, v in wanted.items()}
    landed = torch.ones(len(z), dtype=torch.bool)
    for k in names:
        landed &= judges[k].predict(images).cpu() == wanted[k].cpu()
    row["flip landed"] = float(landed.float().mean())
    row["flip fidelity"] = float((judges["shape"].predict(images).cpu() == y).float().mean())
    return row


def _fit_data(generator, labeler, args):
    samples = steering.sample_and_label(generator, {"p": labeler}, args.fit_n, args.seed, progress=False)
    return samples.latents, samples.classes, samples.labels["p"]


def compare_classifiers(base, judges, args) -> pd.DataFrame:
    """Held-out accuracy (all / minority values) and log-loss of latent classifiers on one geometry."""
    import warnings

    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.neural_network import MLPClassifier

    warnings.filterwarnings("ignore")
    generator = CodeGeometry(base, "entangled-64-a0.7", 64, 0.7, seed=5)
    fit = steering.sample_and_label(generator, {"t": judges["texture"].predict}, args.fit_n, args.seed, progress=False)
    test = steering.sample_and_label(generator, {"t": judges["texture"].predict}, args.eval_n, args.seed + 9, progress=False)
    rows = []

    def score(name, proba, seconds):
        t, c = test.numpy("t"), test.classes.numpy()
        pred = proba.argmax(1)
        rows.append({"classifier": name, "accuracy": float(np.mean(pred == t)), "minority accuracy": float(np.mean((pred == t)[t != c % 4])),
                     "log-loss": float(log_loss(t, proba, labels=[0, 1, 2, 3])), "fit_s": seconds})
        print(rows[-1], flush=True)

    per_class = {"logistic (per class)": lambda: LogisticRegression(C=10, max_iter=3000),
                 "MLP 64 (per class, sklearn)": lambda: MLPClassifier((64,), alpha=1e-3, max_iter=500, early_stopping=True, random_state=0),
                 "gradient-boosted trees (per class)": lambda: HistGradientBoostingClassifier(max_iter=300)}
    for name, make in per_class.items():
        tic, proba = time.time(), np.zeros((len(test), 4))
        for c in range(4):
            model = make().fit(fit.latents[fit.classes == c].numpy(), fit.numpy("t")[fit.classes.numpy() == c])
            mask = test.classes.numpy() == c
            proba[np.ix_(mask, model.classes_)] = model.predict_proba(test.latents[mask].numpy())
        score(name, np.clip(proba, 1e-9, 1), time.time() - tic)
    tic = time.time()
    clf = steering.LatentClassifier().fit(fit.latents, fit.classes, fit.labels["t"], 4, 4)
    with torch.no_grad():
        score("LatentClassifier (shared features, per-class heads)", clf.log_proba(test.latents, test.classes).exp().numpy(), time.time() - tic)
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """A pipe table (floats with 3 decimals)."""
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit-n", type=int, default=20_000)
    parser.add_argument("--eval-n", type=int, default=10_000)
    parser.add_argument("--flip-n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="fewer entangled strengths")
    parser.add_argument("--only", default=None, help="comma-separated geometry names to run")
    parser.add_argument("--methods", default="quantile,resample", help="comma-separated steering methods to compare")
    parser.add_argument("--classifiers", action="store_true", help="only compare latent classifiers")
    parser.add_argument("--out", default="geometry_out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = load_generator("world-sprites-z128")
    judges = load_judges()
    if args.classifiers:
        table = compare_classifiers(base, judges, args)
        table.to_csv(out / "classifiers.csv", index=False)
        print(markdown(table))
        return
    rows = []
    for name, generator, names in geometries(base, args.quick):
        if args.only and name not in args.only.split(","):
            continue
        share = " / ".join(f"{linear_share(generator, k):.3f}" for k in names)
        methods = [m for m in args.methods.split(",") if len(names) == 1 or m == "resample"]
        for method in methods:
            row = {**measure(name, generator, names, method, judges, args), "linear R2": share}
            rows.append(row)
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
            pd.DataFrame(rows).to_csv(out / "table.csv", index=False)
    table = pd.DataFrame(rows)
    (out / "table.md").write_text(markdown(table))
    print(markdown(table))


if __name__ == "__main__":
    main()

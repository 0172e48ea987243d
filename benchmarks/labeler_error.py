"""Balance in truth with a labeler that errs: true V and true minority share, corrected vs not.

    python benchmarks/labeler_error.py                 # pool 60,000, 200 coverage repetitions
    python benchmarks/labeler_error.py --quick         # pool 16,000, 40 repetitions

On the embedded default (``world-sprites-z128``, texture per shape class) with the world's
symmetric labelers ``world:texture~sym95/85/75``. One pool of prior draws is synthesized once and
labelled by the exact texture judge (the truth) and by each labeler. A labeler-confirmed draw with
``proposal="prior"`` keeps, in each (class, labeler output) cell, prior samples the labeler put
there, so a draw is simulated by sampling each cell's quota from the pool's members of that cell.
The verified set is drawn from the pool, stratified over (class, labeler output) cells as
``fairgen review`` draws it, with the exact judge's value as the person's.

Per (labeler accuracy, verified labels): the uncorrected draw (the target handed to the labeler as
its own target) and the corrected one (``steering.truth``: the labeler-cell mix whose true shares
meet the target), each with the true V (class x judged texture) of the population limit and of a
draw of ``--draw-n``, and the true minority share (mean share of a class's three non-tied
textures). Then the coverage of the true-V interval (``steering.truth.truth_report``) over
repetitions, and the refusal for the uniform target.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fairgen.generators import load_generator
from fairgen.labelers import load_labeler
from fairgen.world.judges import load_judges
from steering.truth import cramers_v_table, fit_error_model, solve_mix, true_target, truth_report

K = 4  # textures
G = 4  # shapes (classes)


def pool(n: int, accuracies, seed: int = 0, chunk: int = 4096) -> dict:
    """Classes, judged (true) texture and each labeler's output for ``n`` prior draws."""
    generator = load_generator("world-sprites-z128")
    judge = load_judges()["texture"]
    labelers = {a: load_labeler(f"world:texture~sym{a}") for a in accuracies}
    rng = torch.Generator().manual_seed(seed)
    out = {"classes": [], "truth": [], **{a: [] for a in accuracies}}
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        z, y = generator.sample_latents(m, generator=rng), torch.randint(G, (m,), generator=rng)
        with torch.no_grad():
            images = generator.synthesize(z, y)
        out["classes"].append(y)
        out["truth"].append(judge.predict(images))
        for a, labeler in labelers.items():
            out[a].append(labeler(images))
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def quotas(n: int, mix: np.ndarray) -> np.ndarray:
    """Largest-remainder integer quotas ``[G, K]`` of a draw of ``n`` (classes equal)."""
    exact = (n * mix / len(mix)).flatten()
    quota = np.floor(exact).astype(int)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: n - quota.sum()]] += 1
    return quota.reshape(mix.shape)


def draw_truth(data: dict, outputs: np.ndarray, quota: np.ndarray, rng) -> np.ndarray:
    """The true-value table ``[G, K]`` of a prior-proposal draw with these cell quotas."""
    table = np.zeros((G, K), dtype=int)
    for g in range(G):
        for o in range(K):
            if quota[g, o]:
                members = np.flatnonzero((data["classes"] == g) & (outputs == o))
                pick = rng.choice(members, quota[g, o], replace=True)
                table[g] += np.bincount(data["truth"][pick], minlength=K)
    return table


def population(data: dict, outputs: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """The large-draw limit of the true table ``[G, K]`` (class weights equal)."""
    table = np.zeros((G, K))
    for g in range(G):
        for o in range(K):
            members = (data["classes"] == g) & (outputs == o)
            if mix[g, o] and members.any():
                table[g] += (
                    mix[g, o] * np.bincount(data["truth"][members], minlength=K) / members.sum()
                )
    return table / G


def v_of(table: np.ndarray) -> float:
    """Cramér's V of a (possibly fractional) class x value table
    (``plumbing.tables.cramers_v``'s)."""
    return float(cramers_v_table(table))


def minority_share(table: np.ndarray) -> float:
    """Mean share of a class's non-tied textures (the world ties texture g to shape g)."""
    shares = table / table.sum(1, keepdims=True)
    return float(np.mean([shares[g, o] for g in range(G) for o in range(K) if o != g]))


def verified_set(data: dict, outputs: np.ndarray, n: int, rng) -> dict:
    """``n`` items stratified over (class, labeler output) cells; the judge's value is the truth."""
    per_cell, picks = n // (G * K), []
    for g in range(G):
        for o in range(K):
            members = np.flatnonzero((data["classes"] == g) & (outputs == o))
            picks.append(rng.choice(members, min(per_cell, len(members)), replace=False))
    pick = np.concatenate(picks)
    return {
        "classes": data["classes"][pick],
        "outputs": outputs[pick],
        "truth": data["truth"][pick],
    }


def target_table(minority: float) -> np.ndarray:
    """Per class: ``minority`` for each non-tied texture, the rest for the tied one."""
    t = np.full((G, K), minority)
    np.fill_diagonal(t, 1 - (K - 1) * minority)
    return t


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pool", type=int, default=60_000)
    parser.add_argument("--reps", type=int, default=200, help="coverage repetitions")
    parser.add_argument("--draw-n", type=int, default=10_000, help="kept samples per draw")
    parser.add_argument("--minority", type=float, default=0.06, help="target minority share")
    parser.add_argument("--sizes", default="50,100,300,1000")
    parser.add_argument("--accuracies", default="95,85,75")
    parser.add_argument("--quick", action="store_true", help="pool 16,000, 40 repetitions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--default-draw", type=int, default=20_000, metavar="N",
        help="also fit the uncorrected default confirmed steerer on N labels and judge its draw "
        "(0: skip; --quick skips it)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.pool, args.reps, args.default_draw = 16_000, 40, 0
    torch.set_num_threads(1)
    accuracies = [int(a) for a in args.accuracies.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    tic = time.time()
    data = pool(args.pool, accuracies, args.seed)
    truth, classes = data["truth"], data["classes"]
    raw = np.stack([np.bincount(truth[classes == g], minlength=K) for g in range(G)]).astype(float)
    print(
        f"pool: {args.pool} prior draws labelled in {time.time() - tic:.0f} s; raw true "
        f"minority share {minority_share(raw):.3f}"
    )
    target = target_table(args.minority)
    print(f"target: minority share {args.minority:.3f} per non-tied texture (V of the target "
          f"{v_of(target):.3f})\n")  # fmt: skip
    rng = np.random.default_rng(args.seed + 1)
    rows = []
    header = (
        f"{'acc':>4} {'verified':>8} | {'uncorrected V':>13} {'minority':>8} | "
        f"{'corrected V':>11} {'draw V':>6} {'minority':>8} {'interval V':>14}"
    )
    print(header)
    for a in accuracies:
        outputs = data[a]
        plain = population(data, outputs, target)
        for n in sizes:
            model = fit_error_model(
                **verified_set(data, outputs, n, rng), num_classes=G, num_values=K
            )
            row = {"accuracy": a, "verified": n, "uncorrected_v": v_of(plain),
                   "uncorrected_minority": minority_share(plain)}  # fmt: skip
            try:
                mix = solve_mix(model, target)
            except ValueError as error:
                row["refused"] = str(error)
                print(
                    f"{a:>4} {n:>8} | {row['uncorrected_v']:13.3f} "
                    f"{row['uncorrected_minority']:8.3f} | refused: {str(error)[:70]}..."
                )
                rows.append(row)
                continue
            quota = quotas(args.draw_n, mix)
            truth = population(data, outputs, mix)
            drawn = draw_truth(data, outputs, quota, rng)
            report = truth_report(model, quota, seed=int(rng.integers(1 << 30)))
            row.update(
                corrected_v=v_of(truth),
                draw_v=v_of(drawn.astype(float)),
                corrected_minority=minority_share(truth),
                interval=report["v_interval"],
            )
            rows.append(row)
            lo, hi = report["v_interval"]
            print(f"{a:>4} {n:>8} | {row['uncorrected_v']:13.3f} "
                  f"{row['uncorrected_minority']:8.3f} "
                  f"| {row['corrected_v']:11.3f} {row['draw_v']:6.3f} "
                  f"{row['corrected_minority']:8.3f} {lo:6.3f}..{hi:.3f}")  # fmt: skip
    coverage = measure_coverage(data, 85, 300, target, args.draw_n, args.reps, rng)
    print(f"\ncoverage of the 95% true-V interval, 85% labeler, 300 verified, draws of "
          f"{args.draw_n}: {coverage['covered']}/{coverage['reps']} = {coverage['coverage']:.3f} "
          f"({coverage['refused']} refused)")  # fmt: skip
    model = fit_error_model(**verified_set(data, data[85], 300, rng), num_classes=G, num_values=K)
    try:
        solve_mix(model, true_target(None, G, K), output_shares=shares(data, 85))
        refusal = None
    except ValueError as error:
        refusal = str(error)
    print(f"\nuniform target, 85% labeler, 300 verified: {refusal or 'reachable'}")
    default = None
    if args.default_draw:
        default = default_draw(85, args.default_draw, args.draw_n, args.minority, args.seed)
        print(f"\nuncorrected default confirmed steerer (fit_steerer, {args.default_draw} labels, "
              f"proposal {default['proposal']}), 85% labeler, draw of {args.draw_n} judged: true V "
              f"{default['v']:.3f}, minority share {default['minority']:.3f} "
              f"({default['syntheses_per_kept']:.2f} syntheses per kept)")  # fmt: skip
    print(f"\n{time.time() - tic:.0f} s in all")
    return {"rows": rows, "coverage": coverage, "refusal": refusal, "default": default}


def default_draw(accuracy: int, n_fit: int, n_draw: int, minority: float, seed: int = 0) -> dict:
    """The uncorrected confirmed steerer as a user runs it (``fit_steerer``'s defaults: classifier
    proposal, cap 1.25), fitted and drawn with the labeler, its draw judged by the exact judge."""
    from steering import fit_steerer

    generator = load_generator("world-sprites-z128")
    labeler, judge = load_labeler(f"world:texture~sym{accuracy}"), load_judges()["texture"]
    steerer, _ = fit_steerer(generator, labeler, n_fit, method="confirmed", seed=seed,
                             progress=False)  # fmt: skip
    steerer.cell_target = torch.as_tensor(target_table(minority), dtype=torch.float32)
    draw = steerer.draw(generator, labeler, n_draw, seed=seed + 1)
    truth, classes = judge.predict(draw.images).numpy(), draw.classes.numpy()
    table = np.stack([np.bincount(truth[classes == g], minlength=K) for g in range(G)])
    return {"v": v_of(table.astype(float)), "minority": minority_share(table.astype(float)),
            "proposal": draw.proposal, "syntheses_per_kept": draw.syntheses_per_kept}  # fmt: skip


def shares(data: dict, a: int) -> np.ndarray:
    """How often the labeler gives each output in each class ``[G, K]``."""
    return np.stack([np.bincount(data[a][data["classes"] == g], minlength=K) for g in range(G)])


def measure_coverage(data, a, n, target, draw_n, reps, rng) -> dict:
    """How often the true-V interval of a fresh verified set holds a fresh draw's judged V."""
    covered = refused = 0
    for _ in range(reps):
        model = fit_error_model(**verified_set(data, data[a], n, rng), num_classes=G, num_values=K)
        try:
            mix = solve_mix(model, target)
        except ValueError:
            refused += 1
            continue
        quota = quotas(draw_n, mix)
        lo, hi = truth_report(model, quota, seed=int(rng.integers(1 << 30)))["v_interval"]
        v = v_of(draw_truth(data, data[a], quota, rng).astype(float))
        covered += lo <= v <= hi
    done = reps - refused
    return {"reps": done, "covered": covered, "refused": refused,
            "coverage": covered / max(done, 1)}  # fmt: skip


if __name__ == "__main__":
    main()

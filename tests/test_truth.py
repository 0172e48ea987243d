"""Balance in truth: the error model recovers a known confusion, the solved labeler-cell mix meets
the true target exactly when the model is exact, an unreachable target is refused with what is
reachable, and on the embedded world an 85% labeler corrected lands closer to the true target."""

import numpy as np
import pytest
import torch

from steering.truth import (
    ErrorModel,
    cramers_v_table,
    fit_error_model,
    solve_mix,
    truth_report,
)

PRIORS = np.array([[0.8, 0.1, 0.1], [0.2, 0.6, 0.2]])  # true shares per class
CONFUSION = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]])  # rows: true value


def exact_posterior(priors=PRIORS, confusion=CONFUSION) -> np.ndarray:
    """P(true | output, class) ``[G, O, T]`` from the true shares and the confusion."""
    joint = priors[:, :, None] * confusion[None]  # [g, t, o]
    return np.transpose(joint / joint.sum(1, keepdims=True), (0, 2, 1))


def simulate(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    classes = rng.integers(len(PRIORS), size=n)
    truth = np.array([rng.choice(3, p=PRIORS[g]) for g in classes])
    outputs = np.array([rng.choice(3, p=CONFUSION[t]) for t in truth])
    return classes, outputs, truth


def exact_model(posterior: np.ndarray) -> ErrorModel:
    """An error model whose posterior mean is ``posterior`` (to 1e-9)."""
    T = posterior.shape[2]
    return ErrorModel(posterior * 1e10, np.full((T, T), 1.0 / T))


def test_error_model_recovers_a_known_confusion():
    classes, outputs, truth = simulate(40_000)
    model = fit_error_model(classes, outputs, truth, num_classes=2, num_values=3)
    assert np.abs(model.mean() - exact_posterior()).max() < 0.03
    draws = model.draws(500)  # the posterior's spread covers the truth, cell by cell
    low, high = np.quantile(draws, [0.001, 0.999], axis=0)
    assert ((low <= exact_posterior()) & (exact_posterior() <= high)).mean() > 0.95


def test_scores_count_as_their_argmax():
    classes, outputs, truth = simulate(500)
    scores = np.eye(3)[outputs] * 0.6 + 0.1
    a = fit_error_model(classes, outputs, truth, 2, 3)
    b = fit_error_model(classes, scores, truth, 2, 3)
    assert np.array_equal(a.counts, b.counts)


def test_a_cell_with_few_items_borrows_the_pooled_estimate():
    classes, outputs, truth = simulate(2000)
    keep = ~((classes == 1) & (outputs == 2))  # class 1 never verified with output 2
    model = fit_error_model(classes[keep], outputs[keep], truth[keep], 2, 3)
    assert np.allclose(model.mean()[1, 2], model.pooled[2], atol=0.01)


def test_solved_mix_meets_the_true_target_exactly_when_the_model_is_exact():
    posterior = exact_posterior()
    target = [0.4, 0.35, 0.25]
    mix = solve_mix(exact_model(posterior), target)
    for g in range(2):
        assert np.allclose(posterior[g].T @ mix[g], target, atol=1e-6)
        assert mix[g].min() >= 0 and np.isclose(mix[g].sum(), 1)


def test_an_unreachable_target_is_refused_with_the_reachable_range():
    posterior = exact_posterior()  # class 0: no labeler cell holds more than ~68% value 1
    with pytest.raises(
        ValueError, match=r"class 0: value 1 target 0\.900, reachable 0\.\d+\.\.0\.6"
    ):
        solve_mix(exact_model(posterior), [0.05, 0.9, 0.05])
    with pytest.raises(ValueError, match=r"labeler with accuracy >= 0\.9\d+"):
        solve_mix(exact_model(posterior), [0.05, 0.9, 0.05])


def test_truth_report_interval_holds_the_model_and_v_matches_audits():
    from plumbing.tables import cramers_v

    model = exact_model(exact_posterior())
    quota = np.array([[300, 100, 100], [100, 300, 100]])
    report = truth_report(model, quota, draws=400)
    low, high = report["v_interval"]
    assert low <= report["v"] <= high and report["shares"].shape == (2, 3)
    table = np.array([[30, 5, 2], [4, 20, 9]])
    rows, cols = np.nonzero(table)
    a, b = np.repeat(rows, table[rows, cols]), np.repeat(cols, table[rows, cols])
    assert np.isclose(cramers_v_table(table), cramers_v(a, b))


@pytest.mark.parametrize("bad", [{"classes": [0], "outputs": [0, 1], "truth": [0]}, [1, 2]])
def test_bad_verified_sets_are_refused(bad):
    from steering.truth import as_error_model

    with pytest.raises(ValueError, match="verified"):
        as_error_model(bad, 2, 3)


def test_world_85_labeler_corrected_lands_closer_to_the_true_target(tmp_path):
    """End to end on the embedded default: fit with world:texture~sym85, aim at true shares with
    a simulated verified set (the exact judge's value as the person's), draw, judge exactly."""
    from fairgen.generators import load_generator
    from fairgen.labelers import load_labeler
    from fairgen.world.judges import load_judges
    from steering import fit_steerer, load_card, save_card

    torch.manual_seed(0)
    generator = load_generator("world-sprites-z128")
    labeler, judge = load_labeler("world:texture~sym85"), load_judges()["texture"]
    rng = torch.Generator().manual_seed(5)
    z, y = generator.sample_latents(3000, generator=rng), torch.randint(4, (3000,), generator=rng)
    images = generator.synthesize(z, y)
    outputs, truth = labeler(images).numpy(), judge.predict(images).numpy()
    pick = np.concatenate([
        np.flatnonzero((y.numpy() == g) & (outputs == o))[:40] for g in range(4) for o in range(4)
    ])  # fmt: skip
    verified = {"classes": y.numpy()[pick], "outputs": outputs[pick], "truth": truth[pick]}
    target = np.full((4, 4), 0.06)
    np.fill_diagonal(target, 0.82)  # halve what the raw generator's minority textures lack

    corrected, _ = fit_steerer(
        generator, labeler, n=400, method="confirmed", target_distribution=target,
        progress=False, active=False, verified=verified,
    )  # fmt: skip

    # the same fit, the target handed to the labeler as is (steerers are frozen: rebuilt)
    config, tensors = corrected.config(), dict(corrected.tensors())
    config.pop("truth")
    tensors["cell_target"] = torch.as_tensor(target, dtype=torch.float32)
    plain = type(corrected).from_state(config, tensors)

    def minority_share(steerer):
        draw = steerer.draw(generator, labeler, n=400, seed=3)
        true = judge.predict(draw.images).numpy()
        classes = draw.classes.numpy()
        return np.mean([np.mean(true[classes == g] != g) for g in range(4)]) / 3

    assert corrected.truth_["labeler_mix"] and corrected.cell_target.shape == (4, 4)
    report = truth_report(corrected, corrected.quotas(400), draws=200)
    low, high = report["shares_interval"]
    assert np.all(low <= target + 1e-9) and np.all(target - 1e-9 <= high)  # the model meets it
    got, uncorrected = minority_share(corrected), minority_share(plain)
    print(f"true minority share: corrected {got:.3f}, uncorrected {uncorrected:.3f}, target 0.06")
    assert abs(got - 0.06) < abs(uncorrected - 0.06)
    assert abs(got - 0.06) < 0.03

    path = save_card(corrected, tmp_path / "card", {"generator": {"name": generator.name}})
    loaded, card = load_card(path)
    assert card["steerer"]["truth"]["labeler_mix"] == corrected.truth_["labeler_mix"]
    assert torch.equal(loaded.quotas(100), corrected.quotas(100))
    with pytest.raises(ValueError, match="proposal='prior'"):
        loaded.draw(generator, labeler, n=10, proposal="classifier")

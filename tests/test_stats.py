import math

import numpy as np
import pytest
import xarray as xr

from b2m_neuro.stats import (
    detect_divergence,
    final_metric,
    linear_cka,
    mann_whitney_greater,
    rsa_similarity,
    sweep_statistics,
    trajectory_auc,
)
from b2m_neuro.sweeps import SweepResult


def history(accuracy, loss=None):
    accuracy = np.asarray(accuracy, dtype=float)
    loss = np.linspace(1.0, 0.5, accuracy.size) if loss is None else np.asarray(loss, dtype=float)
    epochs = np.arange(1, accuracy.size + 1)
    return xr.Dataset(
        {"test_accuracy": ("epoch", accuracy), "task_loss": ("epoch", loss),
         "transfer_loss": ("epoch", np.zeros(accuracy.size)), "wall_time": ("epoch", epochs * 0.1)},
        coords={"epoch": epochs},
    )


def test_trajectory_auc_is_the_time_averaged_metric():
    assert trajectory_auc([0.0, 1.0, 1.0]) == pytest.approx(0.75)
    # trapezoids (1+3)/2*2 + (3+3)/2*1 = 7 over a span of 3 epochs
    assert trajectory_auc([1.0, 3.0, 3.0], epochs=[0, 2, 3]) == pytest.approx(7 / 3)
    assert trajectory_auc([[0.5, 0.5], [0.0, 1.0]]).tolist() == pytest.approx([0.5, 0.5])
    assert trajectory_auc([0.4]) == pytest.approx(0.4)
    assert math.isnan(trajectory_auc([0.4, np.nan, 0.6]))


def test_final_metric_averages_the_last_epochs():
    values = np.array([[0.1, 0.2, 0.6, 0.8], [0.0, 0.0, 0.0, 1.0]])
    assert final_metric(values, last=2).tolist() == pytest.approx([0.7, 0.5])
    assert final_metric(values, last=1).tolist() == pytest.approx([0.8, 1.0])
    assert final_metric(values, last=10).tolist() == pytest.approx([0.425, 0.25])


def test_divergence_is_leaving_the_range_without_recovering():
    trajectories = [
        [1.0, 0.9, 0.8],  # well behaved
        [1.0, 50.0, 0.5],  # spike, recovers
        [1.0, 5.0, 11.0],  # above 10 x initial at the end
        [1.0, np.nan, np.nan],  # stopped by the trainer, NaN padded
        [1.0, 0.5, np.inf],
        [np.nan, 1.0, 1.0],  # no valid start
    ]
    assert detect_divergence(trajectories).tolist() == [False, False, True, True, True, True]
    assert detect_divergence(trajectories, factor=20.0).tolist() == [False, False, False, True, True, True]


def test_mann_whitney_one_sided_against_hand_computed_values():
    # all 6 pairs favour the sample; exact p = 1 / C(5, 2)
    assert mann_whitney_greater([3, 4, 5], [1, 2]) == pytest.approx((6.0, 0.1))
    assert mann_whitney_greater([1, 2], [3, 4, 5]) == pytest.approx((0.0, 1.0))
    # NaNs are dropped: 4 x 4 pairs all favour the sample, p = 1 / C(8, 4)
    u, p = mann_whitney_greater([5, 6, 7, 8, np.nan], [1, 2, 3, 4])
    assert (u, p) == pytest.approx((16.0, 1 / 70))
    assert all(math.isnan(v) for v in mann_whitney_greater([1.0, 2.0], [np.nan]))


def fabricated_sweep(n_seeds=5):
    """b2m at alpha 0.1 clearly best; L2 1e-3 is the best lambda; seed 0 of b2m 0.1 diverges."""
    runs = []
    levels = {("b2m", 0.0): 0.50, ("b2m", 0.1): 0.80, ("b2m", 0.5): 0.55, ("no_info", 0.1): 0.51,
              ("no_info", 0.5): 0.56, ("shuffled", 0.1): 0.60, ("shuffled", 0.5): 0.58, ("l2", 1e-4): 0.65,
              ("l2", 1e-3): 0.70}
    for (condition, strength), level in levels.items():
        for seed in range(n_seeds):
            accuracy = np.full(4, level + 0.01 * seed)
            loss = [1.0, 0.9, 0.8, 0.7]
            if (condition, strength, seed) == ("b2m", 0.1, 0):
                loss = [1.0, 2.0, np.inf, np.nan]
            runs.append(({"condition": condition, "strength": strength, "seed": seed, "diverged": False},
                         history(accuracy, loss)))
    runs.append(({"condition": "l2", "strength": 1e-5, "seed": 0, "diverged": True}, history(np.full(4, 0.99))))
    return SweepResult.from_runs(runs)


def rotation(n, seed):
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))[0]


def test_linear_cka_against_hand_computed_values():
    x = np.random.default_rng(0).normal(size=(200, 4))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.5 * x @ rotation(4, 1) + 2.0) == pytest.approx(1.0)  # rotation, isotropic scale, shift
    # centred orthogonal columns of norm 2 against the first one: 4^2 / (4 * ||4 I||_F) = 1 / sqrt(2)
    corners = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert linear_cka(corners[:, :1], corners) == pytest.approx(1 / math.sqrt(2))
    # one feature each: CKA is the squared correlation; centred [-1, 0, 1] and [-1, 1, 0]: 1^2 / (2 * 2)
    assert linear_cka([[1.0], [2.0], [3.0]], [[1.0], [3.0], [2.0]]) == pytest.approx(0.25)
    independent = np.random.default_rng(2).normal(size=(2000, 3))
    assert linear_cka(x[:, :3].repeat(10, axis=0), independent) < 0.02
    assert math.isnan(linear_cka(np.ones((5, 2)), x[:5]))


def test_rsa_similarity_against_hand_computed_values():
    x = np.random.default_rng(0).normal(size=(400, 3))
    assert rsa_similarity(x, 2.0 * x @ rotation(3, 1) - 1.0) == pytest.approx(1.0)
    # distances [1, 3, 2] and [2, 3, 1]: ranks differ by [-1, 0, 1], rho = 1 - 6 * 2 / (3 * (9 - 1))
    assert rsa_similarity([[0.0], [1.0], [3.0]], [[0.0], [2.0], [3.0]]) == pytest.approx(0.5)
    noisy = x + np.random.default_rng(2).normal(size=x.shape)
    subsampled = rsa_similarity(x, noisy, max_samples=50, seed=3)
    assert subsampled == rsa_similarity(x, noisy, max_samples=50, seed=3) != rsa_similarity(x, noisy, max_samples=50, seed=4)
    keep = np.sort(np.random.default_rng(3).choice(400, 50, replace=False))
    assert subsampled == pytest.approx(rsa_similarity(x[keep], noisy[keep]))
    assert math.isnan(rsa_similarity(np.ones((5, 2)), x[:5]))


def test_sweep_statistics_against_hand_computed_numbers():
    table = sweep_statistics(fabricated_sweep())
    auc = table[table.measure == "auc"].set_index(["condition", "strength"])
    assert auc.loc[("b2m", 0.0), "mean"] == pytest.approx(0.52)  # 0.50 + mean(0, .01, .02, .03, .04)
    assert auc.loc[("b2m", 0.1), ["n_runs", "n_diverged", "n_used"]].tolist() == [5, 1, 4]
    assert auc.loc[("b2m", 0.1), "mean"] == pytest.approx(0.825)  # seeds 1-4 only
    assert auc.loc[("b2m", 0.1), "sem"] == pytest.approx(np.std([0.81, 0.82, 0.83, 0.84], ddof=1) / 2)
    # the trainer's diverged flag also excludes; the only 1e-5 run is excluded so 1e-5 cannot be best
    assert auc.loc[("l2", 1e-5), ["n_runs", "n_diverged", "n_used"]].tolist() == [1, 1, 0]
    assert auc["best_l2"].sum() == 1 and auc.loc[("l2", 1e-3), "best_l2"]
    # 4 B2M runs all above 5 L2 / shuffled runs: U = 20, exact p = 1 / C(9, 4)
    b2m = auc.loc[("b2m", 0.1)]
    assert (b2m.u_vs_l2, b2m.p_vs_l2) == pytest.approx((20.0, 1 / 126))
    assert (b2m.u_vs_shuffled, b2m.p_vs_shuffled) == pytest.approx((20.0, 1 / 126))
    assert (b2m.u_vs_baseline, b2m.p_vs_baseline) == pytest.approx((20.0, 1 / 126))
    assert (b2m.u_vs_no_info, b2m.p_vs_no_info) == pytest.approx((20.0, 1 / 126)) and b2m.brain_effect
    # alpha 0.5: 5 runs at 0.55-0.59 vs best L2 at 0.70-0.74 -> U = 0, p = 1; vs no_info 0.56-0.60: U = 10
    weak = auc.loc[("b2m", 0.5)]
    assert (weak.u_vs_l2, weak.p_vs_l2) == pytest.approx((0.0, 1.0))
    assert weak.u_vs_no_info == pytest.approx(8.0) and weak.p_vs_no_info > 0.5 and not weak.brain_effect
    # controls are compared with the baseline only: no_info 0.51-0.55 vs 0.50-0.54 (ties at 0.51-0.54)
    no_info = auc.loc[("no_info", 0.1)]
    assert no_info.u_vs_baseline == pytest.approx(17.0) and no_info.p_vs_baseline > 0.05
    assert math.isnan(no_info.p_vs_shuffled) and math.isnan(no_info.brain_effect)
    assert math.isnan(auc.loc[("shuffled", 0.1), "p_vs_l2"]) and not math.isnan(auc.loc[("shuffled", 0.1), "p_vs_baseline"])
    assert math.isnan(auc.loc[("l2", 1e-3), "p_vs_baseline"])
    final = table[table.measure == "final"].set_index(["condition", "strength"])
    assert final.loc[("l2", 1e-3), "mean"] == pytest.approx(0.72)
    assert len(table) == 2 * 10


def test_statistics_method_and_options():
    result = fabricated_sweep()
    assert result.statistics().equals(sweep_statistics(result))
    # p = 1 / 126 is not below a level of 0.001
    strict = result.statistics(level=1e-3).set_index(["measure", "condition", "strength"])
    assert not strict.loc[("auc", "b2m", 0.1), "brain_effect"]

"""Statistics of a B2M study: trajectory area, final metric, one-sided tests, divergence,
and the similarity of two representations (linear CKA, RSA).

Everything here is plain numpy / scipy on arrays whose last axis is the epoch, so it can be checked
against numbers computed by hand. :func:`sweep_statistics` applies it to a sweep's results (an
``xarray.Dataset`` over ``(condition, strength, seed, epoch)``, see :class:`b2m_neuro.sweeps.SweepResult`).

Conventions
-----------
- The primary measure is the **area under the test trajectory**, normalized by the epoch span
  (:func:`trajectory_auc`): a mean of the test metric over training, in the metric's own units
  (an accuracy AUC of 0.7 means "70 % correct on average over training"), comparable across
  sweeps with different numbers of epochs.
- The **final metric** is the mean of the last ``last`` epochs (:func:`final_metric`).
- B2M is compared with each control by a **one-sided Mann-Whitney U** test (B2M greater),
  :func:`mann_whitney_greater`, over seeds.
- A run **diverged** when its loss leaves its range (not finite, or above ``factor`` times its
  first value) and is still out of range at the last epoch; the trainer's own ``diverged`` flag
  counts too. Diverged runs are excluded from every statistic and counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr


__all__ = [
    "trajectory_auc",
    "final_metric",
    "detect_divergence",
    "mann_whitney_greater",
    "linear_cka",
    "rsa_similarity",
    "excluded_runs",
    "sweep_statistics",
    "COMPARISONS",
]

#: What a brain-guided row is compared with (one-sided Mann-Whitney U, B2M greater): the
#: no-information teacher at the same alpha (the primary contrast), the no-B2M baseline (alpha 0),
#: the shuffled control at the same alpha and the best L2.
COMPARISONS = ("no_info", "baseline", "shuffled", "l2")


def trajectory_auc(values: np.ndarray, epochs: np.ndarray | None = None) -> np.ndarray:
    """Area under the trajectory along the last axis, divided by the epoch span.

    The trapezoid rule over ``epochs`` (default ``1, 2, ...``), normalized by
    ``epochs[-1] - epochs[0]``, so the result is the time-averaged metric, in the metric's units.
    A single epoch gives its value.

    Parameters
    ----------
    values
        Metric per epoch, epoch on the last axis.
    epochs
        Epoch numbers (increasing), same length as the last axis.

    Returns
    -------
    numpy.ndarray
        One value per trajectory (the last axis removed); NaN where a trajectory has a NaN.

    Examples
    --------
    >>> float(trajectory_auc([0.0, 1.0, 1.0]))
    0.75
    """
    values = np.asarray(values, dtype=float)
    if values.shape[-1] == 1:
        return values[..., 0]
    epochs = np.arange(1, values.shape[-1] + 1, dtype=float) if epochs is None else np.asarray(epochs, dtype=float)
    return np.trapezoid(values, epochs, axis=-1) / (epochs[-1] - epochs[0])


def final_metric(values: np.ndarray, *, last: int = 10) -> np.ndarray:
    """Mean of the last ``last`` epochs (all epochs if there are fewer), epoch on the last axis.

    Examples
    --------
    >>> float(final_metric([0.1, 0.5, 0.7, 0.9], last=2))
    0.8
    """
    values = np.asarray(values, dtype=float)
    return values[..., -max(1, last) :].mean(axis=-1)


def detect_divergence(loss: np.ndarray, *, factor: float = 10.0) -> np.ndarray:
    """True for each loss trajectory (epoch on the last axis) that leaves its range and does not recover.

    Out of range means not finite, or above ``factor`` times the first epoch's value. A trajectory
    diverged when it is out of range at its last epoch (a trainer that stops a diverged run pads
    the rest with NaN, which counts as out of range); one that leaves its range and comes back is
    kept.

    Examples
    --------
    >>> detect_divergence([[1.0, 50.0, 0.5], [1.0, 0.8, np.inf], [1.0, 2.0, 20.0]]).tolist()
    [False, True, True]
    """
    loss = np.asarray(loss, dtype=float)
    initial = loss[..., :1]
    with np.errstate(invalid="ignore"):
        out_of_range = ~np.isfinite(loss) | ~np.isfinite(initial) | (loss > factor * np.abs(initial))
    return out_of_range[..., -1]


def mann_whitney_greater(sample: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """One-sided Mann-Whitney U test that ``sample`` tends to be greater than ``reference``.

    NaNs are dropped; with an empty side the result is ``(nan, nan)``. Uses
    ``scipy.stats.mannwhitneyu(..., alternative="greater")`` (exact p for small samples without
    ties). Returns ``(U of sample, p)``.

    Examples
    --------
    >>> u, p = mann_whitney_greater([3, 4, 5], [1, 2])
    >>> float(u), round(float(p), 3)
    (6.0, 0.1)
    """
    from scipy.stats import mannwhitneyu

    sample = np.asarray(sample, dtype=float)
    reference = np.asarray(reference, dtype=float)
    sample, reference = sample[np.isfinite(sample)], reference[np.isfinite(reference)]
    if sample.size == 0 or reference.size == 0:
        return float("nan"), float("nan")
    result = mannwhitneyu(sample, reference, alternative="greater")
    return float(result.statistic), float(result.pvalue)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear centred kernel alignment of two representations of the same samples (Kornblith et al. 2019).

    With the columns of ``x`` and ``y`` centred, ``||y^T x||_F^2 / (||x^T x||_F ||y^T y||_F)``: 1 when
    one representation is a rotation and isotropic scaling of the other (after centring), near 0 for
    unrelated ones, invariant to rotations and isotropic scalings of either. NaN if a side is constant.

    Parameters
    ----------
    x, y
        ``(samples, features)`` arrays with the same number of samples; the widths may differ.

    Returns
    -------
    float
        The CKA, in [0, 1].

    Examples
    --------
    >>> x = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
    >>> round(linear_cka(x, 3.0 * x[:, ::-1]), 6)
    1.0
    """
    x, y = (np.asarray(a, dtype=float) for a in (x, y))
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    scale = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(np.linalg.norm(y.T @ x) ** 2 / scale) if scale > 0 else float("nan")


def rsa_similarity(x: np.ndarray, y: np.ndarray, *, max_samples: int = 300, seed: int = 0) -> float:
    """Representational similarity: Spearman correlation of the two representational dissimilarity matrices.

    Each RDM holds the Euclidean distances between the samples of one representation; the result is
    the Spearman correlation of their upper triangles, so it is 1 when one representation is a
    rotation, scaling or translation of the other. Above ``max_samples`` samples, a subsample of
    ``max_samples`` drawn with ``seed`` (the same one for the same number of samples) keeps the cost
    fixed. NaN if a representation has no spread.

    Parameters
    ----------
    x, y
        ``(samples, features)`` arrays with the same number of samples; the widths may differ.
    max_samples
        Most samples used.
    seed
        Seed of the subsample.

    Returns
    -------
    float
        The correlation, in [-1, 1].

    Examples
    --------
    >>> x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [4.0, 4.0]])
    >>> round(rsa_similarity(x, 2.0 * x[:, ::-1] + 1.0), 6)
    1.0
    """
    from scipy.spatial.distance import pdist

    x, y = (np.asarray(a, dtype=float) for a in (x, y))
    if len(x) > max_samples:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_samples, replace=False))
        x, y = x[keep], y[keep]
    distances = [pdist(x), pdist(y)]
    if any(d.size < 2 or np.ptp(d) == 0 for d in distances):
        return float("nan")
    return _spearman(*distances)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman correlation of two 1-D arrays without constant ones: the Pearson correlation of their
    average ranks, as ``scipy.stats.spearmanr`` computes it (on an RDM's 44,850 distances its ranking
    took 8.0 ms, this one 3.6 ms, and the engine ranks two every epoch per run)."""
    ranks = [_average_ranks(values) for values in (x, y)]
    x_ranks, y_ranks = (r - r.mean() for r in ranks)
    return float(x_ranks @ y_ranks / np.sqrt((x_ranks @ x_ranks) * (y_ranks @ y_ranks)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values``, tied values sharing the mean of their ranks (``scipy.stats.rankdata``'s default)."""
    order = np.argsort(values)
    ordered = values[order]
    first = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # where each run of equal values starts
    size = np.diff(np.r_[first, len(values)])
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(first + (size + 1) / 2, size)
    return ranks


def _sem(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")


def excluded_runs(result: xr.Dataset, *, loss: str | None = None, divergence_factor: float = 10.0) -> xr.DataArray:
    """The runs of a sweep left out of the statistics: trained runs that diverged.

    A run is excluded when the trainer flagged it (``diverged``) or its ``loss`` (default
    ``test_loss`` when present, else ``task_loss``) diverged by :func:`detect_divergence`.
    Returns a boolean ``DataArray`` over ``(condition, strength, seed)``.
    """
    loss = loss or ("test_loss" if "test_loss" in result else "task_loss")
    trajectories = result[loss].transpose(..., "epoch")
    by_loss = xr.DataArray(detect_divergence(trajectories.values, factor=divergence_factor),
                           dims=trajectories.dims[:-1], coords={d: result[d] for d in trajectories.dims[:-1]})
    return result["trained"].astype(bool) & (result["diverged"].astype(bool) | by_loss)


def sweep_statistics(
    result: xr.Dataset,
    *,
    metric: str = "test_accuracy",
    loss: str | None = None,
    last: int = 10,
    divergence_factor: float = 10.0,
    level: float = 0.05,
) -> pd.DataFrame:
    """Every statistic of a sweep, as a tidy table (one row per measure, condition and strength).

    Parameters
    ----------
    result
        Dataset over ``(condition, strength, seed, epoch)`` with ``metric``, the loss, a boolean
        ``trained`` (run present) and ``diverged`` (the trainer's flag) over ``(condition,
        strength, seed)``; a :class:`~b2m_neuro.sweeps.SweepResult`.
    metric
        The test metric whose trajectory is summarized (higher is better).
    loss
        The loss that decides divergence; default ``test_loss`` when present, else ``task_loss``.
    last
        Epochs averaged for the final metric.
    divergence_factor
        A loss above this many times its first value is out of range (see :func:`detect_divergence`).
    level
        Significance level of ``brain_effect``.

    Returns
    -------
    pandas.DataFrame
        Columns: ``measure`` (``"auc"`` or ``"final"``), ``condition``, ``strength``, ``n_runs``
        (trained), ``n_diverged`` (excluded), ``n_used``, ``mean``, ``sem``, ``best_l2`` (the L2
        lambda with the highest mean AUC, also used for the final metric); ``u_vs_X`` and ``p_vs_X``
        (one-sided, this row greater) for X in :data:`COMPARISONS`: on every ``b2m``, ``no_info``
        and ``shuffled`` row with alpha > 0 against ``baseline`` (alpha 0), and on ``b2m`` rows
        also against ``no_info`` and ``shuffled`` at the same alpha and the best ``l2``; and
        ``brain_effect`` on ``b2m`` rows: p < ``level`` against both the no-information teacher
        and the baseline, the contrast that isolates brain information. Missing comparisons are NaN.
    """
    result = result.transpose("condition", "strength", "seed", "epoch")
    epochs = result["epoch"].values
    trained = result["trained"].values.astype(bool)
    excluded = excluded_runs(result, loss=loss, divergence_factor=divergence_factor).values
    used = trained & ~excluded
    metric_values = result[metric].values
    per_run = {"auc": trajectory_auc(metric_values, epochs), "final": final_metric(metric_values, last=last)}
    conditions = list(result["condition"].values)
    strengths = result["strength"].values

    def samples(measure: str, condition: str, strength: float) -> np.ndarray:
        if condition not in conditions or strength not in strengths:
            return np.array([])
        c, s = conditions.index(condition), int(np.flatnonzero(strengths == strength)[0])
        return per_run[measure][c, s][used[c, s]]

    l2_means = {s: samples("auc", "l2", s).mean() for s in strengths if samples("auc", "l2", s).size}
    best_l2 = max(l2_means, key=l2_means.get) if l2_means else None

    rows = []
    for measure in per_run:
        for c, condition in enumerate(conditions):
            for s, strength in enumerate(strengths):
                if not trained[c, s].any():
                    continue
                values = samples(measure, condition, strength)
                row = {
                    "measure": measure,
                    "condition": condition,
                    "strength": float(strength),
                    "n_runs": int(trained[c, s].sum()),
                    "n_diverged": int(excluded[c, s].sum()),
                    "n_used": int(values.size),
                    "mean": float(values.mean()) if values.size else float("nan"),
                    "sem": _sem(values),
                    "best_l2": bool(condition == "l2" and strength == best_l2),
                }
                if condition != "l2" and strength > 0:
                    references = {"baseline": samples(measure, "b2m", 0.0)}
                    if condition == "b2m":
                        references.update(
                            no_info=samples(measure, "no_info", strength),
                            shuffled=samples(measure, "shuffled", strength),
                            l2=samples(measure, "l2", best_l2) if best_l2 is not None else np.array([]),
                        )
                    for name, reference in references.items():
                        row[f"u_vs_{name}"], row[f"p_vs_{name}"] = mann_whitney_greater(values, reference)
                    if condition == "b2m":
                        row["brain_effect"] = bool(row["p_vs_no_info"] < level and row["p_vs_baseline"] < level)
                rows.append(row)
    columns = ["measure", "condition", "strength", "n_runs", "n_diverged", "n_used", "mean", "sem", "best_l2"]
    columns += [f"{k}_vs_{name}" for name in COMPARISONS for k in ("u", "p")]
    return pd.DataFrame(rows).reindex(columns=columns + ["brain_effect"])

"""Can this teacher help? Task decoding with permutation tests, the hidden goal, consistency.

Before spending GPU hours on students, :func:`teacher_quality` tells how well each task variable
the student must learn decodes from a brain embedding (cross-validated, with a permutation
p-value against chance and a 95 % confidence interval), how well the hidden goal of the memory
task decodes before and after the stimulus and at each time point, how similar the embeddings of
different sessions are (CEBRA's between-datasets consistency score), and draws it all.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from threadpoolctl import threadpool_limits

from b2m_neuro._util.significance import significance_stars
from b2m_neuro._util.time_axis import pre_stimulus
from b2m_neuro.errors import EmbeddingError

__all__ = ["teacher_quality", "TeacherQuality"]

MAX_CLASSES = 10  # numeric variables with more distinct values are decoded by regression (R^2)
TIME_CHUNKS = 4  # trial features: the embedding averaged over this many equal parts of the trial
SHRINKAGE = 0.1  # ridge added to the (z-scored) feature covariance of every decoder
BOOTSTRAPS = 1000  # resamples of the out-of-fold predictions for the confidence interval
ALPHA = 0.05  # significance level of the summary and the figure
GOAL = "goal"  # derived variable: 1 while the current target is the first candidate, 0 the second
GOAL_COLUMNS = ("current_target", "first_target", "second_target")
MAX_ELEMENTS = 20_000_000  # bound on the decoder's score arrays (time points are decoded in chunks)
DECODING_COLUMNS = ["session", "variable", "window", "metric", "score", "chance", "ci_low", "ci_high", "p_value",
                    "n_samples", "n_classes"]  # fmt: skip
GOAL_BY_TIME_COLUMNS = ["session", "time", "score", "chance", "ci_low", "ci_high", "p_value"]


@dataclass
class TeacherQuality:
    """The teacher quality report.

    Attributes
    ----------
    decoding
        One row per session, task variable and window: ``session``, ``variable``, ``window``
        (``"trial"``: the embedding averaged over 4 equal parts of the trial; ``"pre"`` / ``"post"``:
        averaged over the pre- / post-stimulus time points, for the goal; ``"frame"`` for frame
        embeddings), ``metric`` (``"balanced_accuracy"`` for categorical variables, ``"r2"`` for
        continuous ones), ``score`` (cross-validated), ``chance`` (1 / n_classes, or 0 for R^2),
        ``ci_low`` / ``ci_high`` (95 % bootstrap interval), ``p_value`` (permutation test against
        chance; NaN with ``permutations=0``), ``n_samples``, ``n_classes`` (0 for R^2).
    consistency
        One row per pair of sessions: ``session_a``, ``session_b``, ``score`` (R^2 of a linear
        map between their label-aligned embeddings). Empty with a single session, or when a session
        has at most ``latent + 1`` time points (or frames): a linear map then fits them exactly.
    goal_by_time
        The memory task's goal decoded at each time point (one decoder per time index): one row
        per session and time point, ``session``, ``time``, ``score`` (balanced accuracy),
        ``chance``, ``ci_low``, ``ci_high``, ``p_value`` (uncorrected for the many time points);
        empty when no session has the goal.
    permutations
        Label permutations behind each p-value.
    figure
        The PNG of decoding, goal curve and embeddings, when one was asked for.
    """

    decoding: pd.DataFrame
    consistency: pd.DataFrame
    goal_by_time: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=GOAL_BY_TIME_COLUMNS))
    permutations: int = 0
    figure: Path | None = None

    @property
    def mean_consistency(self) -> float:
        """Mean pairwise consistency, NaN with a single session."""
        return float(self.consistency["score"].mean()) if len(self.consistency) else float("nan")

    def table(self) -> pd.DataFrame:
        """Per variable and window: mean score and chance over sessions, sessions with p < 0.05.

        Columns ``variable``, ``window``, ``metric``, ``score``, ``chance``, ``n_significant``,
        ``n_sessions``; per-session intervals and p-values are in :attr:`decoding`.
        """
        decoding = self.decoding.assign(significant=self.decoding["p_value"] < ALPHA)
        grouped = decoding.groupby(["variable", "window", "metric"], sort=False)
        table = grouped.agg(score=("score", "mean"), chance=("chance", "mean"), n_significant=("significant", "sum"),
                            n_sessions=("session", "size"))  # fmt: skip
        return table.reset_index()

    def summary(self) -> str:
        """A few lines for the terminal: consistency, every decoded variable, the goal over time."""
        lines = [f"Teacher quality ({self.permutations} label permutations per p-value)"]
        if len(self.consistency):
            pairs = len(self.consistency)
            lines.append(f"  cross-session consistency (mean R^2 over {pairs} pairs): {self.mean_consistency:.3f}")
        else:
            lines.append("  cross-session consistency: needs at least 2 sessions, each with more time points "
                         "(or frames) than latent dimensions + 1")  # fmt: skip
        lines.append("  decoding from the embedding (cross-validated, mean over sessions):")
        lines.append(f"    {'variable':<18} {'window':<6} {'metric':<17} {'score':>6}  {'chance':>6}  p < {ALPHA}")
        for row in self.table().itertuples():
            lines.append(f"    {row.variable:<18} {row.window:<6} {row.metric:<17} {row.score:6.3f}  {row.chance:6.3f}"
                         f"  {row.n_significant}/{row.n_sessions} sessions")  # fmt: skip
        for session, curve in self.goal_by_time.groupby("session", sort=False):
            best = curve.loc[curve["score"].idxmax()] if curve["score"].notna().any() else None
            peak = f", best {best['score']:.3f} at time {best['time']:.3g}" if best is not None else ""
            lines.append(f"  goal by time point, {session}: p < {ALPHA} at "
                         f"{int((curve['p_value'] < ALPHA).sum())}/{len(curve)} time points{peak}")  # fmt: skip
        if self.figure is not None:
            lines.append(f"  figure: {self.figure}")
        return "\n".join(lines)


def teacher_quality(
    embeddings: Sequence[xr.Dataset],
    *,
    variables: Sequence[str] | None = None,
    folds: int = 5,
    permutations: int = 200,
    seed: int = 0,
    figure: str | os.PathLike | None = None,
) -> TeacherQuality:
    """Measure how well task variables decode from brain embeddings, and their consistency.

    Parameters
    ----------
    embeddings
        Datasets from :func:`b2m_neuro.embed` or ``Derivative.datasets()``: ``embedding`` with dims
        ``(trial, time, latent)`` or ``(frame, latent)`` plus task variables.
    variables
        Task variables to decode; by default every variable along ``trial`` / ``frame`` with
        numbers, booleans, or at most 10 distinct strings, plus ``"goal"`` where it can be derived
        (see Notes). ``"goal"`` may be named explicitly too.
    folds
        Cross-validation folds (fewer when a class has fewer members), at least 2.
    permutations
        Label permutations per p-value (0: no test, p-values NaN). The smallest possible p-value
        is ``1 / (1 + permutations)``.
    seed
        Seed of the folds, the permutations and the bootstrap.
    figure
        Where to save a PNG (score vs chance with intervals and significance for every variable and
        session, the goal by time point, embeddings coloured by a few variables); None for none.

    Returns
    -------
    TeacherQuality
        Decoding, goal-by-time and consistency tables, figure path; ``.summary()`` prints them.

    Raises
    ------
    EmbeddingError
        No embeddings, a dataset without an embedding, an unknown variable, bad folds or
        permutations.

    Notes
    -----
    Decoder. Features are z-scored over the session (which uses no labels). Categorical variables
    (booleans, strings, numbers with at most 10 values) are decoded by linear discriminant analysis
    with equal class priors and the shrunk covariance ``S + 0.1 I`` of the training features (for
    two classes the direction of Fisher's LDA), scored by balanced accuracy (chance
    ``1 / n_classes`` whatever the class sizes); continuous variables by ridge regression with the
    same covariance, scored by the R^2 of the pooled out-of-fold predictions (chance 0). Folds are
    stratified by class. Trials are decoded from the embedding averaged over four equal parts of
    the trial (``4 x latent`` features), frames from their embedding.

    Statistics. The p-value is ``(1 + #{permuted scores >= observed}) / (1 + permutations)``, the
    labels being permuted within the session, within each cross-validation fold (each fold keeps
    its class counts and the folds stay fixed, which keeps the test exact under exchangeable
    trials and lets all permutations share one fit per fold). The 95 % interval is the percentile
    bootstrap (1000 resamples of the trials) of the score of the pooled out-of-fold predictions; it
    reflects the test trials' sampling, not the variability of the training sets.

    The goal. Where a dataset has ``current_target``, ``first_target`` and ``second_target`` (the
    memory task) and no ``goal`` of its own, ``goal`` is 1 while the current target is the first
    candidate and 0 while it is the second: the hidden state the student must track. Besides the
    trial features it is decoded from the embedding averaged over the pre-stimulus time points
    (``time < 0``; the first half of the time axis when no time is negative) and over the others,
    and at each time point (:attr:`TeacherQuality.goal_by_time`).

    Consistency aligns each session's embedding on time-within-trial (or frame position) and
    scores linear maps between sessions, as in CEBRA's ``consistency_score(between="datasets")``.

    Examples
    --------
    >>> report = teacher_quality(derivative.datasets(), permutations=200, figure="quality.png")  # doctest: +SKIP
    >>> report.decoding.query("variable == 'goal'")[["window", "score", "p_value"]]  # doctest: +SKIP
    """
    embeddings = list(embeddings)
    if not embeddings:
        raise EmbeddingError("no embeddings to assess", field="embeddings", fix="pass the output of b2m_neuro.embed")
    _check_count(folds, "folds", minimum=2, example=5)
    _check_count(permutations, "permutations", minimum=0, example=200)
    names = _names(embeddings)
    decoding, goal_by_time = [], []
    if _consistency_defined(embeddings):
        import cebra.integrations.sklearn.metrics  # noqa: F401  (load the libraries before limiting their threads)

    with threadpool_limits(1):  # many small products: thread pools only add contention
        for name, ds in zip(names, embeddings):
            options = {"folds": folds, "permutations": permutations, "seed": seed}
            for variable in variables if variables is not None else _default_variables(ds):
                labels = _labels(ds, variable, name)
                for window, features in _feature_sets(ds, goal=variable == GOAL).items():
                    (scores,) = _decode(features[None], labels, **options)
                    decoding.append({"session": name, "variable": variable, "window": window, **scores})
                if variable == GOAL and _rows_dim(ds) == "trial":
                    goal_by_time.append(_goal_by_time(ds, labels, name, **options))
        consistency = _consistency(embeddings, names)
    report = TeacherQuality(
        decoding=pd.DataFrame(decoding, columns=DECODING_COLUMNS),
        consistency=consistency,
        goal_by_time=pd.concat(goal_by_time, ignore_index=True) if goal_by_time else
        pd.DataFrame(columns=GOAL_BY_TIME_COLUMNS),
        permutations=permutations,
    )  # fmt: skip
    if figure is not None:
        report.figure = _plot(embeddings, names, report, Path(figure))
    return report


def _check_count(value: int, name: str, *, minimum: int, example: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise EmbeddingError(f"{name} must be an integer >= {minimum}, got {value!r}", field=name,
                             fix=f"pass e.g. {name}={example}")  # fmt: skip


def _names(embeddings: list[xr.Dataset]) -> list[str]:
    """``sub-X_ses-Y`` per session (or ``session i``), made unique with ``#i`` when labels repeat."""
    names = []
    for index, ds in enumerate(embeddings):
        subject, session = ds.attrs.get("subject"), ds.attrs.get("session")
        names.append(f"sub-{subject}" + (f"_ses-{session}" if session else "") if subject else f"session {index}")
    return [name if names.count(name) == 1 else f"{name}#{index}" for index, name in enumerate(names)]


def _rows_dim(ds: xr.Dataset) -> str:
    if "embedding" not in ds or ds["embedding"].dims not in {("trial", "time", "latent"), ("frame", "latent")}:
        raise EmbeddingError(
            "the dataset has no 'embedding' with dims (trial, time, latent) or (frame, latent)",
            field="embeddings",
            fix="pass the output of b2m_neuro.embed or Derivative.datasets()",
        )
    return ds["embedding"].dims[0]


def _feature_sets(ds: xr.Dataset, *, goal: bool) -> dict[str, np.ndarray]:
    """``(samples, features)`` matrices by window: the trial (or frame) features; for the goal also pre / post."""
    values = np.asarray(ds["embedding"].values, dtype=np.float64)
    if _rows_dim(ds) == "frame":
        return {"frame": values}
    chunks = np.array_split(values, min(TIME_CHUNKS, values.shape[1]), axis=1)
    sets = {"trial": np.concatenate([chunk.mean(axis=1) for chunk in chunks], axis=1)}
    if goal:
        pre = pre_stimulus(ds["time"].values if "time" in ds.coords else None, ds.sizes["time"])
        sets.update({window: values[:, mask].mean(axis=1) for window, mask in (("pre", pre), ("post", ~pre))
                     if mask.any()})  # fmt: skip
    return sets


def _goal_by_time(ds: xr.Dataset, labels: np.ndarray, name: str, **options: int) -> pd.DataFrame:
    """One goal decoder per time index: the rows of ``TeacherQuality.goal_by_time`` for a session."""
    per_time = np.asarray(ds["embedding"].values, dtype=np.float64).transpose(1, 0, 2)  # (time, trial, latent)
    time = ds["time"].values if "time" in ds.coords else np.arange(per_time.shape[0])
    rows = [{"session": name, "time": t, **scores} for t, scores in zip(time, _decode(per_time, labels, **options))]
    return pd.DataFrame(rows)[GOAL_BY_TIME_COLUMNS]


def _default_variables(ds: xr.Dataset) -> list[str]:
    rows = _rows_dim(ds)
    chosen = []
    for name, var in ds.data_vars.items():
        if name == "embedding" or var.dims != (rows,):
            continue
        few_strings = var.dtype.kind in "OUS" and len(np.unique(var.values.astype(str))) <= MAX_CLASSES
        if var.dtype.kind in "biuf" or few_strings:
            chosen.append(str(name))
    return chosen + [GOAL] if _derives_goal(ds) else chosen


def _derives_goal(ds: xr.Dataset) -> bool:
    """Whether ``goal`` comes from the memory-task columns (present, and no ``goal`` of the dataset's own)."""
    rows = _rows_dim(ds)
    return GOAL not in ds and all(column in ds and ds[column].dims == (rows,) for column in GOAL_COLUMNS)


def _labels(ds: xr.Dataset, variable: str, name: str) -> np.ndarray:
    rows = _rows_dim(ds)
    if variable == GOAL and _derives_goal(ds):
        current, first, second = (np.asarray(ds[column].values) for column in GOAL_COLUMNS)
        return np.where(current == first, 1.0, np.where(current == second, 0.0, np.nan))
    if variable not in ds or ds[variable].dims != (rows,):
        along = [str(v) for v in ds.data_vars if ds[v].dims == (rows,) and v != "embedding"]
        raise EmbeddingError(
            f"{name} has no task variable {variable!r} along '{rows}'",
            field="variables",
            fix=f"choose among {along} ('{GOAL}' needs {', '.join(GOAL_COLUMNS)})",
        )
    return np.asarray(ds[variable].values)


@dataclass(frozen=True)
class _Design:
    """One variable's labels coded for decoding, with their folds, permutations and bootstrap weights."""

    truth: np.ndarray  # (n,) class codes, or values of a continuous variable
    n_classes: int  # 0 for a continuous variable
    fold: np.ndarray  # (n,) fold index of each sample
    index: np.ndarray  # (1 + permutations, n): row 0 the samples in order, then the permuted labels
    weights: np.ndarray  # (BOOTSTRAPS, n): how often each sample is drawn in each resample

    @property
    def targets(self) -> np.ndarray:
        """``(1 + permutations, n, k)`` decoder targets: one-hot classes, or the values."""
        coded = np.eye(self.n_classes)[self.truth.astype(int)] if self.n_classes else self.truth[:, None]
        return coded[self.index]


def _decode(features: np.ndarray, labels: np.ndarray, *, folds: int, permutations: int, seed: int) -> list[dict]:
    """Score, chance, 95 % interval and permutation p-value of one variable, per decoder.

    ``features`` is ``(decoders, samples, features)``: one decoder per leading index (e.g. per time
    point), all sharing the folds, permutations and resamples.
    """
    keep = ~pd.isna(labels)
    features, labels = features[:, keep], labels[keep]
    labels = labels.astype(int) if labels.dtype.kind == "b" else labels
    classes, codes = np.unique(labels.astype(str) if labels.dtype.kind in "OUS" else labels, return_inverse=True)
    categorical = labels.dtype.kind in "OUS" or len(classes) <= MAX_CLASSES
    n, n_classes = len(labels), len(classes) if categorical else 0
    result = {"metric": "balanced_accuracy" if categorical else "r2", "chance": 1 / n_classes if categorical else 0.0,
              "n_samples": n, "n_classes": n_classes}  # fmt: skip
    splits = min(folds, int(np.bincount(codes).min()) if categorical else n)
    if splits < 2 or (categorical and n_classes < 2):
        return [{**result, **dict.fromkeys(("score", "ci_low", "ci_high", "p_value"), float("nan"))} for _ in features]
    rng = np.random.default_rng(seed)
    fold = _fold_ids(codes if categorical else np.zeros(n, int), splits, rng)
    design = _Design(truth=codes.astype(float) if categorical else labels.astype(float), n_classes=n_classes,
                     fold=fold, index=_within_fold_permutations(fold, permutations, rng),
                     weights=_bootstrap_weights(n, rng))  # fmt: skip
    spread = features.std(axis=1, keepdims=True)
    z = (features - features.mean(axis=1, keepdims=True)) / np.where(spread > 0, spread, 1.0)
    per_chunk = max(1, MAX_ELEMENTS // (n * design.index.shape[0] * max(1, n_classes)))
    stats = np.concatenate([_statistics(chunk, design) for chunk in np.array_split(z, -(-len(z) // per_chunk))])
    return [{**result, "score": score, "ci_low": low, "ci_high": high, "p_value": p} for score, low, high, p in stats]


def _fold_ids(strata: np.ndarray, splits: int, rng: np.random.Generator) -> np.ndarray:
    """Stratified folds: each stratum's samples, shuffled, dealt round-robin (continuing between strata)."""
    fold = np.empty(len(strata), dtype=int)
    dealt = 0
    for stratum in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == stratum))
        fold[members] = (dealt + np.arange(len(members))) % splits
        dealt += len(members)
    return fold


def _bootstrap_weights(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(BOOTSTRAPS, n)``: how often each of ``n`` samples is drawn in each resample with replacement."""
    draws = rng.integers(0, n, size=(BOOTSTRAPS, n)) + n * np.arange(BOOTSTRAPS)[:, None]
    return np.bincount(draws.ravel(), minlength=BOOTSTRAPS * n).reshape(BOOTSTRAPS, n).astype(float)


def _within_fold_permutations(fold: np.ndarray, permutations: int, rng: np.random.Generator) -> np.ndarray:
    """``(1 + permutations, n)`` sample indices: the identity, then random permutations within each fold."""
    grouped = np.argsort(fold, kind="stable")  # samples by fold
    shuffled = np.argsort(fold + rng.random((permutations, len(fold))), axis=1)  # by fold, random within a fold
    index = np.empty_like(shuffled)
    index[:, grouped] = shuffled
    return np.concatenate([np.arange(len(fold))[None], index])


def _statistics(z: np.ndarray, design: _Design) -> np.ndarray:
    """``(decoders, 4)``: score, 95 % interval and p-value of each decoder of ``z`` (decoders, n, features)."""
    predicted = _out_of_fold(z, design)
    scores = _score(predicted, design.truth[design.index], n_classes=design.n_classes)  # (decoders, 1 + permutations)
    resampled = _score(predicted[:, 0], design.truth, n_classes=design.n_classes, weights=design.weights)
    low, high = np.nanpercentile(resampled, [2.5, 97.5], axis=1)
    observed, null = scores[:, 0], scores[:, 1:]
    p_value = np.full(len(z), np.nan)
    if null.size:
        p_value = (1 + (null >= observed[:, None] - 1e-12).sum(axis=1)) / (1 + null.shape[1])
    return np.stack([observed, low, high, p_value], axis=1)


def _out_of_fold(z: np.ndarray, design: _Design) -> np.ndarray:
    """``(decoders, 1 + permutations, n)`` out-of-fold predictions: class codes, or values.

    Per fold, one fit serves every permutation: the class means (LDA) or the covariances with the
    target (ridge) are linear in the targets, the shrunk feature covariance does not use them.
    """
    targets = design.targets  # (runs, n, k)
    runs, n, k = targets.shape
    predicted = np.empty((len(z), runs, n))
    for held_out in np.unique(design.fold):
        test, train = design.fold == held_out, design.fold != held_out
        mean = z[:, train].mean(axis=1, keepdims=True)
        centred, tested = z[:, train] - mean, z[:, test] - mean
        covariance = centred.transpose(0, 2, 1) @ centred / train.sum() + SHRINKAGE * np.eye(z.shape[-1])
        fitted = targets[:, train]
        if design.n_classes:  # class means: weights 1 / class count
            fitted = fitted / fitted.sum(axis=1, keepdims=True)
        else:
            fitted = (fitted - fitted.mean(axis=1, keepdims=True)) / train.sum()
        moments = centred.transpose(0, 2, 1) @ fitted.transpose(1, 0, 2).reshape(train.sum(), runs * k)
        weights = np.linalg.solve(covariance, moments)  # (decoders, features, runs * k)
        output = (tested @ weights).reshape(len(z), test.sum(), runs, k)
        if design.n_classes:  # LDA with equal priors: x' S^-1 m_c - m_c' S^-1 m_c / 2
            output = output - 0.5 * (moments * weights).sum(axis=1).reshape(len(z), 1, runs, k)
            predicted[:, :, test] = output.argmax(axis=-1).transpose(0, 2, 1)
        else:
            predicted[:, :, test] = (output[..., 0] + targets[:, train, 0].mean(axis=1)).transpose(0, 2, 1)
    return predicted


def _score(
    predicted: np.ndarray, truth: np.ndarray, *, n_classes: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """Balanced accuracy (``n_classes > 0``) or R^2 over the last axis, or per resample of ``weights``.

    ``predicted`` and ``truth`` broadcast against each other; ``weights`` ``(resamples, n)`` counts
    each sample's draws, giving one score per resample in a new last axis.
    """
    def total(x: np.ndarray) -> np.ndarray:
        x = np.broadcast_to(x, np.broadcast_shapes(predicted.shape, truth.shape)).astype(float)
        return x.sum(axis=-1) if weights is None else x @ weights.T

    with np.errstate(invalid="ignore", divide="ignore"):
        if n_classes:
            correct = predicted == truth
            recalls = [total(correct & (truth == c)) / total(truth == c) for c in range(n_classes)]
            return np.nanmean(recalls, axis=0)  # classes a resample misses do not count
        squares = total(truth**2) - total(truth) ** 2 / total(np.ones_like(truth))
        return 1 - total((truth - predicted) ** 2) / squares


def _aligned_points(ds: xr.Dataset) -> int:
    """Points each session's embedding is averaged into for consistency: time points, or 100 frame bins."""
    return ds.sizes["time"] if _rows_dim(ds) == "trial" else min(100, ds.sizes["frame"])


def _consistency_defined(embeddings: list[xr.Dataset]) -> bool:
    """At least 2 sessions, and more aligned points than a linear map between them has parameters per output."""
    if len(embeddings) < 2:
        return False
    points = min(_aligned_points(ds) for ds in embeddings)
    return points > max(ds.sizes["latent"] for ds in embeddings) + 1


def _consistency(embeddings: list[xr.Dataset], names: list[str]) -> pd.DataFrame:
    columns = ["session_a", "session_b", "score"]
    if not _consistency_defined(embeddings):
        return pd.DataFrame(columns=columns)
    from cebra.integrations.sklearn.metrics import consistency_score

    samples, labels = [], []
    for ds in embeddings:
        values = np.asarray(ds["embedding"].values, dtype=np.float64)
        if _rows_dim(ds) == "trial":
            time = ds["time"].values if "time" in ds.coords else np.arange(values.shape[1])
            labels.append(np.tile(np.asarray(time, dtype=np.float64), values.shape[0]))
        else:
            labels.append(np.linspace(0.0, 1.0, values.shape[0]))
        samples.append(values.reshape(-1, values.shape[-1]))
    bins = min(_aligned_points(ds) for ds in embeddings)
    scores, pairs, _ = consistency_score(
        samples, between="datasets", labels=labels, dataset_ids=names, num_discretization_bins=bins
    )
    scores, pairs = np.atleast_1d(scores), np.asarray(pairs).reshape(-1, 2)
    return pd.DataFrame(
        [(str(a), str(b), float(s)) for (a, b), s in zip(pairs, scores)], columns=columns
    )


def _plot(embeddings: list[xr.Dataset], names: list[str], report: TeacherQuality, path: Path) -> Path:
    """Top: score vs chance of every variable and session, the goal by time point; below: embeddings."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bars = len(report.decoding[["variable", "window"]].drop_duplicates())
    panels = _panel_variables(report.decoding)
    shown = list(zip(names, embeddings))[:4]
    width, height = min(30.0, max(10.0, 3.4 * len(shown), 4.0 + 0.3 * bars * len(names))), 6.5 + 3.2 * len(panels)
    figure = Figure(figsize=(width, height))  # a fixed layout, in inches: constrained layout takes seconds
    FigureCanvasAgg(figure)
    gap = 1.9  # inches for the rotated variable names and the panel titles
    top, bottom = figure.add_gridspec(2, 1, height_ratios=[1.6, len(panels)], left=0.7 / width, right=1 - 0.2 / width,
                                      top=1 - 0.9 / height, bottom=0.5 / height,
                                      hspace=gap / ((height - 1.4 - gap) / 2))  # fmt: skip
    if report.goal_by_time.empty:
        _draw_scores(figure.add_subplot(top), report.decoding, names)
    else:
        scores, curve = top.subgridspec(1, 4, wspace=0.3)[0, :3], top.subgridspec(1, 4, wspace=0.3)[0, 3]
        _draw_scores(figure.add_subplot(scores), report.decoding, names)
        _draw_goal_by_time(figure.add_subplot(curve), report.goal_by_time, names)
    cells = bottom.subgridspec(len(panels), len(shown), hspace=0.5, wspace=0.3)
    grid = [[figure.add_subplot(cells[row, col]) for col in range(len(shown))] for row in range(len(panels))]
    for (row, variable), (col, (name, ds)) in itertools.product(enumerate(panels), enumerate(shown)):
        decoded = report.decoding[(report.decoding["session"] == name) & (report.decoding["variable"] == variable)
                                  & report.decoding["window"].isin(["trial", "frame"])]  # fmt: skip
        labels = _labels(ds, variable, name) if len(decoded) else None
        _draw_panel(grid[row][col], ds, variable if len(decoded) else None, labels)
        detail = "" if decoded.empty else (f"\n{variable}: {decoded['score'].iloc[0]:.2f} (chance "
                                           f"{decoded['chance'].iloc[0]:.2f}, p {decoded['p_value'].iloc[0]:.3g})")
        grid[row][col].set_title(name + detail, fontsize=8)
    figure.suptitle("Teacher quality: task decoding from the brain embedding", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def _panel_variables(decoding: pd.DataFrame) -> list[str | None]:
    """Up to 3 categorical variables to colour the embedding by, the goal first; ``[None]`` if none."""
    whole = decoding[(decoding["metric"] == "balanced_accuracy") & decoding["window"].isin(["trial", "frame"])]
    variables = sorted(whole["variable"].unique().tolist(), key=lambda variable: variable != GOAL)
    return variables[:3] or [None]


def _draw_scores(ax, decoding: pd.DataFrame, names: list[str]) -> None:
    """One group of bars per variable and window, one bar per session: score, 95 % CI, chance, stars."""
    groups = decoding[["variable", "window", "metric"]].drop_duplicates().reset_index(drop=True)
    width = 0.8 / len(names)
    for number, name in enumerate(names):
        rows = groups.merge(decoding[decoding["session"] == name], how="left", on=["variable", "window", "metric"])
        x = np.arange(len(groups)) + (number - (len(names) - 1) / 2) * width
        score = rows["score"].to_numpy(float)
        error = np.clip([score - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - score], 0, None)
        ax.bar(x, score, 0.9 * width, yerr=error, color=f"C{number % 10}", label=name, error_kw={"lw": 0.8})
        ax.hlines(rows["chance"], x - width / 2, x + width / 2, colors="k", lw=1.2)
        for position, high, p_value in zip(x, rows["ci_high"], rows["p_value"]):
            if significance_stars(p_value):
                ax.text(position, high + 0.02, significance_stars(p_value), ha="center", fontsize=7)
    labels = [variable + ("" if window in ("trial", "frame") else f" ({window})") + (" R²" if metric == "r2" else "")
              for variable, window, metric in groups.itertuples(index=False)]  # fmt: skip
    ax.set_xticks(np.arange(len(groups)), labels, rotation=40, ha="right", fontsize=8)
    lowest = np.nanmin(decoding["ci_low"].to_numpy(float), initial=0.0)
    ax.set_ylim(max(-0.5, min(0.0, lowest)) - 0.05, 1.12)
    ax.set_ylabel("balanced accuracy, or R²", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=7, ncol=min(4, len(names)), loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_title("cross-validated score (bars, 95 % CI) vs chance (black);\npermutation test * p < 0.05, "
                 "** p < 0.01, *** p < 0.001", fontsize=8, loc="left")  # fmt: skip


def _draw_goal_by_time(ax, curve: pd.DataFrame, names: list[str]) -> None:
    """Goal balanced accuracy per time point and session, 95 % band, dots where p < 0.05, chance dashed."""
    for name, rows in curve.groupby("session", sort=False):
        color = f"C{names.index(name) % 10}"
        time, score = rows["time"].to_numpy(float), rows["score"].to_numpy(float)
        ax.plot(time, score, color=color, lw=1.2, marker="." if len(rows) < 10 else None)
        low, high = rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float)
        ax.fill_between(time, low, high, color=color, alpha=0.2, lw=0)
        significant = rows["p_value"].to_numpy(float) < ALPHA
        ax.plot(time[significant], score[significant], "o", color=color, ms=4)
    ax.axhline(float(curve["chance"].iloc[0]), color="k", ls="--", lw=0.8)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("time", fontsize=8)
    ax.set_ylabel("goal balanced accuracy", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(f"goal by time point\n(dots: p < {ALPHA}, uncorrected)", fontsize=8, loc="left")


def _draw_panel(ax, ds: xr.Dataset, variable: str | None, labels: np.ndarray | None) -> None:
    values = np.asarray(ds["embedding"].values, dtype=np.float64)
    second = 1 if values.shape[-1] > 1 else 0
    labels = np.full(values.shape[0], "all") if labels is None else np.asarray(labels).astype(str)
    colors = dict(zip(np.unique(labels), itertools.cycle([f"C{i}" for i in range(10)])))
    for label, color in colors.items():
        members = values[labels == label]
        if ds["embedding"].dims[0] == "trial":  # mean trajectory over the trial, start marked
            mean = members.mean(axis=0)
            ax.plot(mean[:, 0], mean[:, second], color=color, label=label, lw=1.2)
            ax.plot(mean[0, 0], mean[0, second], "o", color=color, ms=3)
        else:
            ax.scatter(members[:, 0], members[:, second], s=4, color=color, label=label)
    ax.set_xlabel("latent 0", fontsize=8)
    ax.set_ylabel(f"latent {second}", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, title=variable, title_fontsize=6, loc="best")

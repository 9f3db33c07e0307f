"""Is a teacher worth training with? Cross-session consistency and task decoding of embeddings.

Before spending GPU hours on students, :func:`teacher_quality` tells how similar the embeddings of
different sessions are (CEBRA's between-datasets consistency score) and how well each task
variable decodes from the embedding (cross-validated, with its chance level), and draws the
embedding coloured by task variables.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from threadpoolctl import threadpool_limits

from b2m_neuro.errors import EmbeddingError

__all__ = ["teacher_quality", "TeacherQuality"]

MAX_CLASSES = 10  # numeric variables with more distinct values are decoded by regression (R^2)
TIME_CHUNKS = 4  # trial features: the embedding averaged over this many equal parts of the trial


@dataclass
class TeacherQuality:
    """The teacher quality report.

    Attributes
    ----------
    decoding
        One row per session and task variable: ``session``, ``variable``, ``metric``
        (``"accuracy"`` for categorical variables, ``"r2"`` for continuous ones), ``score``
        (cross-validated), ``chance`` (majority-class accuracy, or 0 for R^2), ``n_samples``,
        ``n_classes``.
    consistency
        One row per pair of sessions: ``session_a``, ``session_b``, ``score`` (R^2 of a linear
        map between their label-aligned embeddings; empty with a single session).
    figure
        The PNG of the embeddings coloured by task variables, when one was asked for.
    """

    decoding: pd.DataFrame
    consistency: pd.DataFrame
    figure: Path | None = None

    @property
    def mean_consistency(self) -> float:
        """Mean pairwise consistency, NaN with a single session."""
        return float(self.consistency["score"].mean()) if len(self.consistency) else float("nan")

    def table(self) -> pd.DataFrame:
        """Decoding score and chance per variable, averaged over sessions."""
        return self.decoding.groupby(["variable", "metric"], sort=False)[["score", "chance"]].mean().reset_index()

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = ["Teacher quality"]
        if len(self.consistency):
            pairs = len(self.consistency)
            lines.append(f"  cross-session consistency (mean R^2 over {pairs} pairs): {self.mean_consistency:.3f}")
        else:
            lines.append("  cross-session consistency: needs at least 2 sessions")
        lines.append("  decoding from the embedding (cross-validated, mean over sessions):")
        for row in self.table().itertuples():
            lines.append(f"    {row.variable:<18} {row.metric:<8} {row.score:6.3f}   (chance {row.chance:.3f})")
        if self.figure is not None:
            lines.append(f"  figure: {self.figure}")
        return "\n".join(lines)


def teacher_quality(
    embeddings: Sequence[xr.Dataset],
    *,
    variables: Sequence[str] | None = None,
    folds: int = 5,
    seed: int = 0,
    figure: str | os.PathLike | None = None,
) -> TeacherQuality:
    """Measure cross-session consistency and task decoding of brain embeddings.

    Parameters
    ----------
    embeddings
        Datasets from :func:`b2m_neuro.embed` or ``Derivative.datasets()``: ``embedding`` with dims
        ``(trial, time, latent)`` or ``(frame, latent)`` plus task variables.
    variables
        Task variables to decode; by default every variable along ``trial`` / ``frame`` with
        numbers, booleans, or at most 10 distinct strings.
    folds
        Cross-validation folds (fewer when a class has fewer members).
    seed
        Seed of the fold assignment.
    figure
        Where to save a PNG of the embeddings coloured by task variables; None for no figure.

    Returns
    -------
    TeacherQuality
        Decoding table, consistency table, figure path; ``.summary()`` prints them.

    Notes
    -----
    Trials are decoded from the embedding averaged over four equal parts of the trial (so
    ``4 x latent`` features), frames from their embedding, with a standardized logistic regression
    (accuracy vs. majority-class chance) or ridge regression (R^2 vs. 0) for variables with more
    than 10 distinct values. Consistency aligns each session's embedding on time-within-trial (or
    frame position) and scores linear maps between sessions, as in CEBRA's
    ``consistency_score(between="datasets")``.
    """
    embeddings = list(embeddings)
    if not embeddings:
        raise EmbeddingError("no embeddings to assess", field="embeddings", fix="pass the output of b2m_neuro.embed")
    names = _names(embeddings)
    rows = []
    import sklearn.linear_model  # noqa: F401  (load the libraries before limiting their threads)

    if len(embeddings) > 1:
        import cebra.integrations.sklearn.metrics  # noqa: F401

    with threadpool_limits(1):  # many tiny fits: thread pools only add contention
        for name, ds in zip(names, embeddings):
            features = _features(ds)
            for variable in variables if variables is not None else _default_variables(ds):
                labels = _labels(ds, variable, name)
                scores = _decode(features, labels, folds=folds, seed=seed)
                rows.append({"session": name, "variable": variable, **scores})
        consistency = _consistency(embeddings, names)
    columns = ["session", "variable", "metric", "score", "chance", "n_samples", "n_classes"]
    decoding = pd.DataFrame(rows, columns=columns)
    figure_path = None if figure is None else _plot(embeddings, names, decoding, Path(figure))
    return TeacherQuality(decoding=decoding, consistency=consistency, figure=figure_path)


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


def _features(ds: xr.Dataset) -> np.ndarray:
    rows = _rows_dim(ds)
    values = np.asarray(ds["embedding"].values, dtype=np.float64)
    if rows == "frame":
        return values
    chunks = np.array_split(values, min(TIME_CHUNKS, values.shape[1]), axis=1)
    return np.concatenate([chunk.mean(axis=1) for chunk in chunks], axis=1)


def _default_variables(ds: xr.Dataset) -> list[str]:
    rows = _rows_dim(ds)
    chosen = []
    for name, var in ds.data_vars.items():
        if name == "embedding" or var.dims != (rows,):
            continue
        few_strings = var.dtype.kind in "OUS" and len(np.unique(var.values.astype(str))) <= MAX_CLASSES
        if var.dtype.kind in "biuf" or few_strings:
            chosen.append(str(name))
    return chosen


def _labels(ds: xr.Dataset, variable: str, name: str) -> np.ndarray:
    rows = _rows_dim(ds)
    if variable not in ds or ds[variable].dims != (rows,):
        along = [str(v) for v in ds.data_vars if ds[v].dims == (rows,) and v != "embedding"]
        raise EmbeddingError(
            f"{name} has no task variable {variable!r} along '{rows}'",
            field="variables",
            fix=f"choose among {along}",
        )
    return np.asarray(ds[variable].values)


def _decode(features: np.ndarray, labels: np.ndarray, *, folds: int, seed: int) -> dict[str, float | int | str]:
    """Cross-validated decoding score and chance level of one variable."""
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    keep = ~pd.isna(labels)
    features, labels = features[keep], labels[keep]
    if labels.dtype.kind == "b":
        labels = labels.astype(int)
    classes, counts = np.unique(labels.astype(str) if labels.dtype.kind in "OUS" else labels, return_counts=True)
    categorical = labels.dtype.kind in "OUSb" or len(classes) <= MAX_CLASSES
    result = {"n_samples": int(len(labels)), "n_classes": int(len(classes)) if categorical else 0}
    if categorical:
        result.update(metric="accuracy", chance=float(counts.max() / counts.sum()))
        splits = min(folds, int(counts.min()))
        if len(classes) < 2 or splits < 2:
            return {**result, "score": float("nan")}
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        cv = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
        scores = cross_val_score(model, features, labels.astype(str), cv=cv, scoring="accuracy")
        return {**result, "score": float(scores.mean())}
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    cv = KFold(n_splits=min(folds, len(labels)), shuffle=True, random_state=seed)
    scores = cross_val_score(model, features, labels.astype(float), cv=cv, scoring="r2")
    return {**result, "metric": "r2", "score": float(scores.mean()), "chance": 0.0}


def _consistency(embeddings: list[xr.Dataset], names: list[str]) -> pd.DataFrame:
    columns = ["session_a", "session_b", "score"]
    if len(embeddings) < 2:
        return pd.DataFrame(columns=columns)
    from cebra.integrations.sklearn.metrics import consistency_score

    samples, labels, bins = [], [], []
    for ds in embeddings:
        values = np.asarray(ds["embedding"].values, dtype=np.float64)
        if _rows_dim(ds) == "trial":
            time = ds["time"].values if "time" in ds.coords else np.arange(values.shape[1])
            labels.append(np.tile(np.asarray(time, dtype=np.float64), values.shape[0]))
            bins.append(values.shape[1])
        else:
            labels.append(np.linspace(0.0, 1.0, values.shape[0]))
            bins.append(min(100, values.shape[0]))
        samples.append(values.reshape(-1, values.shape[-1]))
    scores, pairs, _ = consistency_score(
        samples, between="datasets", labels=labels, dataset_ids=names, num_discretization_bins=min(bins)
    )
    scores, pairs = np.atleast_1d(scores), np.asarray(pairs).reshape(-1, 2)
    return pd.DataFrame(
        [(str(a), str(b), float(s)) for (a, b), s in zip(pairs, scores)], columns=columns
    )


def _plot(embeddings: list[xr.Dataset], names: list[str], decoding: pd.DataFrame, path: Path) -> Path:
    """Rows: categorical task variables (up to 3); columns: sessions (up to 4); latent 0 vs 1."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    categorical = decoding[decoding["metric"] == "accuracy"]["variable"].unique().tolist()[:3] or [None]
    shown = list(zip(names, embeddings))[:4]
    figure = Figure(figsize=(3.2 * len(shown), 3.0 * len(categorical)), constrained_layout=True)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(categorical), len(shown), squeeze=False)
    for (row, variable), (col, (name, ds)) in itertools.product(enumerate(categorical), enumerate(shown)):
        _draw_panel(axes[row][col], ds, variable)
        score = decoding[(decoding["session"] == name) & (decoding["variable"] == variable)]
        detail = ""
        if len(score):
            detail = f"\n{variable}: acc {score['score'].iloc[0]:.2f} (chance {score['chance'].iloc[0]:.2f})"
        axes[row][col].set_title(name + detail, fontsize=8)
    figure.suptitle("Brain embeddings coloured by task variables", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def _draw_panel(ax, ds: xr.Dataset, variable: str | None) -> None:
    values = np.asarray(ds["embedding"].values, dtype=np.float64)
    second = 1 if values.shape[-1] > 1 else 0
    labels = np.asarray(ds[variable].values).astype(str) if variable else np.full(values.shape[0], "all")
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

"""Figures and tables of a sweep (``b2m-neuro report RUNS --out REPORT``).

:func:`write_report` writes, as PNG and SVG:

- ``trajectories``: the mean test metric over epochs per alpha, brain-guided (solid) and with the
  no-information teacher (dotted), the no-B2M baseline (alpha 0) dashed and the best L2 as a
  shaded mean +- s.e.m.;
- ``auc``: the area under the test trajectory per alpha for brain-guided students against the
  no-information teacher and the shuffled control, seeds as dots, mean +- s.e.m., stars for the
  one-sided Mann-Whitney U tests (B2M greater than the no-information teacher, alpha 0 and the
  shuffled control; * p < 0.05, ** p < 0.01, *** p < 0.001);
- ``final``: the same for the final metric;
- ``alignment``: the mean linear CKA between the students' aligned layer and the brain embedding
  over epochs per alpha (history variable ``alignment_cka``), brain-guided against the
  no-information and shuffled controls, with the no-B2M baseline: what was transferred;

plus ``statistics.md`` (the main test first: the alphas where B2M beats both the no-information
teacher and alpha 0, and whether the no-information teacher by itself beats alpha 0; then every
statistic as a markdown table, the diverged runs excluded and counted) and
``statistics.csv`` (the same table, full precision). Diverged runs are left out of every figure.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from b2m_neuro._util.files import atomic_path, check_writable_target
from b2m_neuro._util.progress import track
from b2m_neuro._util.significance import significance_stars
from b2m_neuro.errors import SweepError
from b2m_neuro.stats import excluded_runs, final_metric, sweep_statistics, trajectory_auc

__all__ = ["write_report", "markdown_table", "significance_stars", "reconstruction_grid"]

FIGURES = ("trajectories", "auc", "final", "alignment")
_COLORS = {"b2m": "#1f77b4", "no_info": "#9467bd", "shuffled": "#d62728", "l2": "#7f7f7f", "baseline": "k"}
_LABELS = {"b2m": "brain (B2M)", "no_info": "no-information teacher", "shuffled": "shuffled brain", "l2": "L2"}
_LINESTYLES = {"b2m": "-", "no_info": ":", "shuffled": "--"}
_CONTROLS = ("no_info", "shuffled")  # drawn beside B2M at each alpha
_STARRED = ("no_info", "baseline", "shuffled")  # B2M's comparisons marked with stars


def write_report(
    result: xr.Dataset | str | os.PathLike,
    out: str | os.PathLike,
    *,
    metric: str = "test_accuracy",
    last: int = 10,
    level: float = 0.05,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write the figures and the statistics table of a sweep into the folder ``out``, atomically.

    Parameters
    ----------
    result
        A :class:`~b2m_neuro.sweeps.SweepResult` or the folder of a sweep store.
    out
        The report folder to write (replaced only with ``overwrite``); missing parents are created.
    metric
        The test metric to show (higher is better).
    last
        Epochs averaged for the final metric.
    level
        Significance level for marking the alphas where B2M beats both controls.
    overwrite
        Replace an existing report folder.
    progress
        Show a progress bar over the figures.

    Returns
    -------
    pathlib.Path
        The report folder.

    Examples
    --------
    >>> write_report("runs/", "report/")  # doctest: +SKIP
    PosixPath('report')
    """
    from b2m_neuro.sweeps import SweepResult

    if not isinstance(result, xr.Dataset):
        result = SweepResult.from_store(result)
    if metric not in result:
        raise SweepError(f"the sweep has no variable {metric!r}", field="metric",
                         fix=f"choose one of {', '.join(v for v in result.data_vars if 'epoch' in result[v].dims)}")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    out = check_writable_target(out, overwrite=overwrite, error=SweepError)
    table = sweep_statistics(result, metric=metric, last=last, level=level)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for name in track(FIGURES, description="report figures", total=len(FIGURES), progress=progress):
            _save_figure(_FIGURE_MAKERS[name](result, table, metric=metric, last=last), tmp / name)
        table.to_csv(tmp / "statistics.csv", index=False)
        (tmp / "statistics.md").write_text(_summary_markdown(result, table, metric=metric, last=last, level=level))
    return out


def markdown_table(table: pd.DataFrame) -> str:
    """A DataFrame as a markdown table: numbers to 4 significant digits, NaN as an empty cell."""

    def cell(value: Any) -> str:
        if isinstance(value, (bool, np.bool_)):
            return "yes" if value else "no"
        if isinstance(value, (int, np.integer)):
            return str(value)
        if isinstance(value, (float, np.floating)):
            return "" if math.isnan(value) else f"{value:.4g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ text


def _summary_markdown(result: xr.Dataset, table: pd.DataFrame, *, metric: str, last: int, level: float) -> str:
    excluded = excluded_runs(result)
    by_condition = excluded.sum(["strength", "seed"]).to_pandas()
    best = table[table.best_l2 & (table.measure == "auc")]
    auc = table[table.measure == "auc"]
    winners = auc[auc.brain_effect == True]  # noqa: E712 (NaN on other rows)
    no_info = auc[(auc.condition == "no_info")]
    lines = [
        "# B2M sweep report",
        "",
        f"- Store: `{result.attrs.get('store', '(in memory)')}`",
        f"- Runs: {int(result['trained'].sum())}; diverged and excluded: {int(excluded.sum())} "
        f"({', '.join(f'{c} {int(n)}' for c, n in by_condition.items())})",
        f"- Metric: `{metric}`. AUC: area under the test trajectory divided by the epoch span (the mean "
        f"over training); final: mean of the last {last} epochs.",
        "- Tests: one-sided Mann-Whitney U over seeds (this row greater): B2M against the "
        "no-information teacher at the same alpha (`no_info`, the main test), the no-B2M baseline at "
        "alpha 0 (`baseline`), the shuffled control at the same alpha (`shuffled`)"
        + (" and the best L2 (`l2`)" if len(best) else "") + "; the no-information and shuffled controls "
        "against the baseline too.",
        f"- **Main test.** Alphas where B2M beats both the no-information teacher and alpha 0 (AUC, p < {level}): "
        + (", ".join(f"{a:.4g}" for a in winners.strength) or "none"),
        "- No-information teacher against alpha 0 (AUC, one-sided p): "
        + (", ".join(f"alpha {row.strength:.4g}: p = {row.p_vs_baseline:.3g}" for row in no_info.itertuples())
           or "no no-information runs"),
        *([f"- Best L2 (highest mean AUC): lambda = {best.strength.iloc[0]:.4g}"] if len(best) else []),
        "",
        "## Statistics",
        "",
        markdown_table(table),
    ]
    return "\n".join(lines)


def reconstruction_grid(model: Any, images: np.ndarray, out: str | os.PathLike, *, title: str | None = None) -> Path:
    """Original scenes (top row) against the VAE's reconstructions (bottom row), as ``out`` .png and .svg.

    ``model`` is a trained :class:`~b2m_neuro.models.vae.ReferenceVAE` (or a
    :class:`~b2m_neuro.train_result.TrainResult` holding one), reconstructing in eval mode (``z = mu``);
    ``images`` are ``uint8 (n, 3, height, width)`` (as :func:`b2m_neuro.tasks.scenes.read_images`
    reads them). Returns the PNG's path.
    """
    import torch

    model = getattr(model, "model", model)
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8 or images.shape[1] != 3 or len(images) == 0:
        raise SweepError(f"images must be uint8 (n, 3, height, width), got {images.dtype} {images.shape}",
                         field="images", fix="read them with b2m_neuro.tasks.scenes.read_images")
    model.eval()
    with torch.no_grad():
        tensor = torch.as_tensor(images, dtype=torch.float32, device=next(model.parameters()).device) / 255
        reconstruction = model(tensor)[0].clamp(0, 1).cpu().numpy()
    figure, axes = _new_axes(title or "")
    figure.clear()
    grid = figure.subplots(2, len(images), squeeze=False)
    for column in range(len(images)):
        for row, picture in enumerate((images[column] / 255, reconstruction[column])):
            grid[row, column].imshow(picture.transpose(1, 2, 0))
            grid[row, column].set_axis_off()
    grid[0, 0].set_title("original", loc="left", fontsize=9)
    grid[1, 0].set_title("reconstructed", loc="left", fontsize=9)
    if title:
        figure.suptitle(title)
    figure.set_size_inches(1.6 * len(images), 2.2)
    stem = Path(out).with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    _save_figure(figure, stem)
    return stem.with_suffix(".png")


# --------------------------------------------------------------------------------- figures


def _save_figure(figure: Any, stem: Path) -> None:
    import matplotlib.pyplot as plt

    figure.savefig(stem.with_suffix(".png"), dpi=150, bbox_inches="tight")
    figure.savefig(stem.with_suffix(".svg"), bbox_inches="tight")
    plt.close(figure)


def _new_axes(title: str) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.set_title(title)
    axes.spines[["top", "right"]].set_visible(False)
    return figure, axes


def _used_values(result: xr.Dataset, variable: xr.DataArray, condition: str, strength: float) -> np.ndarray:
    """Values of the trained, not excluded runs of one cell (seed first)."""
    used = result["trained"] & ~excluded_runs(result)
    cell = dict(condition=condition, strength=strength)
    return variable.sel(cell).values[used.sel(cell).values]


def _mean_sem(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = values.mean(axis=0)
    sem = values.std(axis=0, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else np.zeros_like(mean)
    return mean, sem


def _alphas(table: pd.DataFrame) -> list[float]:
    return sorted(table[(table.condition == "b2m") & (table.strength > 0)].strength.unique())


def _alpha_color(index: int, n_alphas: int) -> Any:
    from matplotlib import colormaps

    return colormaps["viridis"](0.15 + 0.7 * index / max(1, n_alphas - 1))


def _plot_baseline(axes: Any, result: xr.Dataset, variable: str) -> None:
    """The mean of ``variable`` over epochs of the no-B2M baseline (alpha 0), dashed black, if there is one."""
    if "b2m" in result["condition"].values and 0.0 in result["strength"].values:
        baseline = _used_values(result, result[variable], "b2m", 0.0)
        if len(baseline):
            axes.plot(result["epoch"].values, baseline.mean(axis=0), "k--", label="no B2M (alpha 0)")


def _finish_epoch_axes(axes: Any, ylabel: str) -> None:
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.legend(frameon=False, fontsize="small", loc="best")


def _plot_trajectories(result: xr.Dataset, table: pd.DataFrame, *, metric: str, last: int) -> Any:
    figure, axes = _new_axes(f"{metric.replace('_', ' ')} over training (mean over seeds)")
    epochs = result["epoch"].values
    best = table[table.best_l2 & (table.measure == "auc")]
    if len(best):
        values = _used_values(result, result[metric], "l2", best.strength.iloc[0])
        if len(values):
            mean, sem = _mean_sem(values)
            axes.fill_between(epochs, mean - sem, mean + sem, color=_COLORS["l2"], alpha=0.3, linewidth=0)
            axes.plot(epochs, mean, color=_COLORS["l2"], label=f"best L2 (λ {best.strength.iloc[0]:.3g}) ± s.e.m.")
    _plot_baseline(axes, result, metric)
    alphas = _alphas(table)
    for condition in ("b2m", "no_info"):
        if condition not in result["condition"].values:
            continue
        for i, alpha in enumerate(alphas):
            values = _used_values(result, result[metric], condition, alpha)
            if len(values):
                axes.plot(epochs, values.mean(axis=0), _LINESTYLES[condition], color=_alpha_color(i, len(alphas)),
                          label=f"{_LABELS[condition]}, alpha {alpha:.3g}")
    _finish_epoch_axes(axes, metric.replace("_", " "))
    return figure


def _plot_alignment(result: xr.Dataset, table: pd.DataFrame, *, metric: str, last: int) -> Any:
    """Mean ``alignment_cka`` over epochs: a colour per alpha, a line style per condition."""
    figure, axes = _new_axes("alignment of the aligned layer with the brain embedding (mean over seeds)")
    if "alignment_cka" not in result:
        axes.text(0.5, 0.5, "these runs have no alignment_cka\n(trained before it was recorded)",
                  transform=axes.transAxes, ha="center", va="center")
        return figure
    _plot_baseline(axes, result, "alignment_cka")
    alphas = _alphas(table)
    for condition in (c for c in _LINESTYLES if c in result["condition"].values):
        for i, alpha in enumerate(alphas):
            values = _used_values(result, result["alignment_cka"], condition, alpha)
            if len(values):
                axes.plot(result["epoch"].values, values.mean(axis=0), _LINESTYLES[condition],
                          color=_alpha_color(i, len(alphas)), label=f"{_LABELS[condition]}, alpha {alpha:.3g}")
    _finish_epoch_axes(axes, "linear CKA (aligned layer vs brain embedding)")
    return figure


def _plot_measure(result: xr.Dataset, table: pd.DataFrame, *, metric: str, last: int, measure: str) -> Any:
    titles = {"auc": f"area under the {metric.replace('_', ' ')} trajectory (per-epoch mean)",
              "final": f"final {metric.replace('_', ' ')} (mean of the last {last} epochs)"}
    figure, axes = _new_axes(titles[measure])
    per_run = xr.DataArray(
        trajectory_auc(result[metric].values, result["epoch"].values) if measure == "auc"
        else final_metric(result[metric].values, last=last),
        dims=result[metric].dims[:-1], coords={d: result[d] for d in result[metric].dims[:-1]},
    )
    rows = table[table.measure == measure].set_index(["condition", "strength"])
    alphas = _alphas(table)
    controls = [c for c in _CONTROLS if c in rows.index.get_level_values(0)]
    conditions = ["b2m", *controls]
    width = 0.7 / len(conditions)
    rng = np.random.default_rng(0)
    for j, condition in enumerate(conditions):
        offset = (j - (len(conditions) - 1) / 2) * width
        for i, alpha in enumerate(alphas):
            if (condition, alpha) not in rows.index:
                continue
            values = _used_values(result, per_run, condition, alpha)
            x = i + offset
            axes.scatter(x + rng.uniform(-width / 6, width / 6, len(values)), values, s=10, color=_COLORS[condition], alpha=0.4)
            row = rows.loc[(condition, alpha)]
            axes.errorbar(x, row["mean"], yerr=0 if math.isnan(row["sem"]) else row["sem"], fmt="o", color=_COLORS[condition],
                          capsize=3, label=_LABELS[condition] if i == 0 else None)
    _reference_lines(axes, rows)
    _stars(axes, rows, alphas)
    axes.set_xticks(range(len(alphas)), [f"{a:.3g}" for a in alphas])
    axes.set_xlim(-0.6, len(alphas) - 0.4)
    axes.set_xlabel("alpha (B2M strength)")
    axes.set_ylabel(f"{measure.upper() if measure == 'auc' else 'final'} {metric.replace('_', ' ')}")
    axes.legend(frameon=False, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes.text(1.0, -0.16, "mean ± s.e.m. over seeds; stars in the colour of what B2M is compared with (black: "
              "alpha 0): one-sided Mann-Whitney U, B2M greater; * p<.05  ** p<.01  *** p<.001",
              transform=axes.transAxes, ha="right", fontsize="x-small", color="0.35")
    return figure


def _reference_lines(axes: Any, rows: pd.DataFrame) -> None:
    if ("b2m", 0.0) in rows.index:
        axes.axhline(rows.loc[("b2m", 0.0), "mean"], color="k", linestyle="--", linewidth=1, label="no B2M (alpha 0)")
    best = rows[rows.best_l2]
    if len(best):
        mean, sem = best["mean"].iloc[0], best["sem"].iloc[0]
        axes.axhspan(mean - (0 if math.isnan(sem) else sem), mean + (0 if math.isnan(sem) else sem),
                     color=_COLORS["l2"], alpha=0.2, linewidth=0)
        axes.axhline(mean, color=_COLORS["l2"], linewidth=1, label=f"best L2 (λ {best.index[0][1]:.3g}) ± s.e.m.")


def _stars(axes: Any, rows: pd.DataFrame, alphas: list[float]) -> None:
    """Above each alpha, one line of stars per comparison of B2M (in the colour of what it is compared with)."""
    low, high = axes.get_ylim()
    axes.set_ylim(low, high + 0.06 * len(_STARRED) * (high - low))
    for i, alpha in enumerate(alphas):
        for j, reference in enumerate(_STARRED):
            stars = significance_stars(rows.loc[("b2m", alpha), f"p_vs_{reference}"])
            if stars:
                axes.text(i, high + 0.06 * (j + 0.5) * (high - low), stars, ha="center", va="center",
                          color=_COLORS[reference])


_FIGURE_MAKERS = {
    "trajectories": _plot_trajectories,
    "auc": lambda result, table, **kw: _plot_measure(result, table, measure="auc", **kw),
    "final": lambda result, table, **kw: _plot_measure(result, table, measure="final", **kw),
    "alignment": _plot_alignment,
}

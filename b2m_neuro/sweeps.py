"""Sweeps: alpha x seed grids with no-information, shuffled and L2 controls, in a resumable store.

A sweep trains one student per (condition, strength, seed) with :func:`b2m_neuro.train` and keeps
each run in its own file, so an interrupted sweep (even ``kill -9``) is resumed by calling it again:
only the runs whose file is missing are trained.

Store layout (``out/``)::

    runs/<run id>.nc       one run: its history (xarray over ``epoch``), the run's config (JSON in
                           the ``b2m_run`` attribute) and the trainer's config and ``diverged`` flag;
                           the run id is a hash of the config, written atomically
    index.csv              one line per run file, rebuilt from the run files

Conditions and strengths (see :data:`b2m_neuro.controls.CONDITIONS`): ``b2m`` at strength alpha
(alpha 0 is the no-B2M baseline, trained with weight decay 0 and always included), ``no_info`` and
``shuffled`` at the same alphas (alpha > 0 only: at alpha 0 they would repeat the baseline), and
``l2`` at strength lambda: alpha 0 with weight decay lambda. What each control keeps and removes is
in :mod:`b2m_neuro.controls`. The ``no_info`` teacher is the derivative you pass as ``no_info=``
(a teacher rebuilt without the task information and embedded the same way), or else the
phase-randomized surrogate of the derivative, rebuilt in memory for each seed whenever it is
needed (:func:`b2m_neuro.controls.surrogate_sessions`; it is deterministic), so a store holds
nothing but runs and the index.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from b2m_neuro._util.arrays import content_key
from b2m_neuro._util.files import atomic_path
from b2m_neuro._util.progress import track
from b2m_neuro.errors import SweepError
from b2m_neuro.controls import CONDITIONS, surrogate_sessions
from b2m_neuro.stats import sweep_statistics

__all__ = ["sweep", "SweepResult", "rebuild_index", "DEFAULT_L2"]

#: Weight-decay grid of the L2 control when none is given.
DEFAULT_L2 = (1e-5, 1e-4, 1e-3)
STORE_VERSION = 1
_RUNS = "runs"
_INDEX = "index.csv"
_INDEX_COLUMNS = ["run_id", "condition", "strength", "seed", "alpha", "weight_decay", "control", "diverged", "n_epochs"]


class SweepResult(xr.Dataset):
    """A sweep's results: an ``xarray.Dataset`` over ``(condition, strength, seed, epoch)``.

    Data variables: every per-epoch variable of the runs' histories (``task_loss``,
    ``transfer_loss``, ``test_accuracy``, ``alignment_cka``, ``wall_time``, ...), NaN where a run is missing, and per
    run ``trained`` (a run exists), ``diverged`` (the trainer's flag) and ``run_id``. ``strength``
    is alpha for ``b2m``, ``no_info`` and ``shuffled`` and the weight-decay lambda for ``l2``;
    the no-B2M baseline is ``condition="b2m", strength=0``. ``attrs["study"]`` holds (as JSON) what
    all runs share: the derivative's fingerprint, the model and the training options.
    """

    __slots__ = ()

    @classmethod
    def from_runs(cls, runs: Iterable[tuple[Mapping[str, Any], xr.Dataset]], *, attrs: Mapping[str, Any] | None = None) -> SweepResult:
        """Assemble runs, each a ``(record, history)`` pair.

        ``record`` holds ``condition``, ``strength``, ``seed``, ``diverged`` and optionally
        ``run_id``; ``history`` is a Dataset over ``epoch``. Raises :class:`SweepError` for an
        unknown condition or two runs in the same cell.
        """
        runs = list(runs)
        if not runs:
            raise SweepError("there are no runs to assemble", field="runs", fix="run a sweep first")
        for record, _ in runs:
            if record["condition"] not in CONDITIONS:
                raise SweepError(f"unknown condition {record['condition']!r}", field="condition",
                                 fix=f"use one of {', '.join(CONDITIONS)}")
        conditions = [c for c in CONDITIONS if any(r["condition"] == c for r, _ in runs)]
        strengths = sorted({float(r["strength"]) for r, _ in runs})
        seeds = sorted({int(r["seed"]) for r, _ in runs})
        epochs = np.unique(np.concatenate([_epochs(h) for _, h in runs]))
        names = list(dict.fromkeys(n for _, h in runs for n, v in h.data_vars.items()
                                   if v.dims == ("epoch",) and np.issubdtype(v.dtype, np.number)))
        cell_shape = (len(conditions), len(strengths), len(seeds))
        values = {name: np.full(cell_shape + (len(epochs),), np.nan) for name in names}
        trained, diverged = np.zeros(cell_shape, bool), np.zeros(cell_shape, bool)
        run_ids = np.full(cell_shape, "", dtype=object)
        for record, history in runs:
            cell = (conditions.index(record["condition"]), strengths.index(float(record["strength"])), seeds.index(int(record["seed"])))
            if trained[cell]:
                raise SweepError("two runs share one condition, strength and seed", field=str(dict(record)),
                                 fix="keep one run per cell (one sweep study per store)")
            at = np.searchsorted(epochs, _epochs(history))
            for name in names:
                if name in history:
                    values[name][cell + (at,)] = history[name].values
            trained[cell], diverged[cell] = True, bool(record["diverged"])
            run_ids[cell] = str(record.get("run_id", ""))
        cell_dims = ("condition", "strength", "seed")
        data = {name: (cell_dims + ("epoch",), array) for name, array in values.items()}
        data.update(trained=(cell_dims, trained), diverged=(cell_dims, diverged), run_id=(cell_dims, run_ids.astype(str)))
        coords = {"condition": conditions, "strength": strengths, "seed": seeds, "epoch": epochs}
        return cls(data, coords=coords, attrs=dict(attrs or {}))

    @classmethod
    def from_store(cls, out: str | os.PathLike) -> SweepResult:
        """Read every run of the store ``out`` (rewriting its index if it disagrees with the runs)."""
        store = Path(out)
        if not (store / _RUNS).is_dir():
            raise SweepError("this is not a sweep store (no runs/ folder)", file=store, fix="pass the out= folder of a sweep")
        runs = [_read_run(path) for path in sorted((store / _RUNS).glob("*.nc"))]
        study = _check_one_study(store, [config for config, _, _ in runs])
        _write_index_if_changed(store, _index_rows(runs))
        records = [(config | {"diverged": diverged}, history) for config, diverged, history in runs]
        return cls.from_runs(records, attrs={"store": str(store.resolve()), "study": json.dumps(study, sort_keys=True)})

    def statistics(self, **options: Any) -> pd.DataFrame:
        """Every statistic of the sweep as a tidy table; options as :func:`b2m_neuro.stats.sweep_statistics`."""
        return sweep_statistics(self, **options)


def sweep(
    derivative: Any,
    model: str = "gru",
    *,
    alphas: Sequence[float],
    seeds: int | Sequence[int] = 10,
    controls: Sequence[str] = ("no_info", "shuffled", "l2"),
    l2: Sequence[float] = DEFAULT_L2,
    no_info: Any = None,
    out: str | os.PathLike = "runs/",
    engine: str = "sequential",
    scheduler: Any = None,
    progress: bool = True,
    **train_options: Any,
) -> SweepResult:
    """Train a grid of students (alpha x seed, plus controls) into a resumable store.

    Parameters
    ----------
    derivative
        A :class:`~b2m_neuro.derivative.Derivative` or the path of one.
    model
        A registered model name (see :func:`b2m_neuro.models.known_models`); ``"vae"`` trains the
        VAE student on the scenes of ``scenes=`` (in ``train_options``) with a frame derivative
        (:mod:`b2m_neuro.scene_training`; its statistics metric is ``test_psnr``).
    alphas
        B2M strengths in (0, 1]; alpha 0 (the no-B2M baseline) is always added.
    seeds
        Number of seeds (``0 .. seeds-1``) or the seeds themselves. A seed fixes the initial weights
        and the data order, and is shared by all conditions (paired design).
    controls
        Any of ``"no_info"`` (a matched teacher without task information, the primary contrast),
        ``"shuffled"`` (brain embeddings shuffled over trials) and ``"l2"`` (weight decay from
        ``l2`` with alpha 0); see :mod:`b2m_neuro.controls`.
    l2
        Weight-decay lambdas of the L2 control, each > 0.
    no_info
        The no-information teacher: a :class:`~b2m_neuro.derivative.Derivative` (or its path) with
        the same sessions, trials and embedding recipe but without the task information (e.g. the
        simulator's ``goal_information=False``). ``None``: the phase-randomized surrogate of
        ``derivative`` (:func:`b2m_neuro.controls.surrogate_sessions`).
    out
        The store folder (created if needed). Calling again with the same arguments trains only the
        runs that are missing.
    engine
        ``"sequential"``: one run after another, each stored as soon as it is trained. ``"batched"``:
        the missing runs (of the sweep, or of a Dask task's seed) are trained together by
        :func:`b2m_neuro.engine.fit_runs`, many runs at once in one process, and stored when done.
        Both give the same results (up to float rounding); see :mod:`b2m_neuro.engine` for speed.
    scheduler
        ``None`` runs in this process; ``"local"`` starts a ``dask.distributed.LocalCluster`` (worker
        processes on 127.0.0.1); a scheduler address (``"tcp://host:8786"``) or a
        ``dask.distributed.Client`` uses an existing cluster. Each task trains one seed's runs
        and writes them into the store, so the store must be on a file system the workers share;
        a killed worker's runs are simply trained again. Workers that declare a ``GPU`` resource
        run one task per GPU.
    progress
        Show a progress bar over runs (or run groups with Dask).
    **train_options
        Passed to every :func:`b2m_neuro.train` call (``epochs``, ``lr``, ``transfer``, ...);
        they must be JSON values (they are part of each run's identity).

    Returns
    -------
    SweepResult
        All runs of the store (:meth:`SweepResult.from_store`).

    Raises
    ------
    SweepError
        For an invalid grid, an unknown engine or scheduler, or a store holding another study.

    Examples
    --------
    >>> result = sweep("derivatives/b2m-cebra", alphas=[0.01, 0.05], seeds=3,
    ...                epochs=20, out="runs/")                            # doctest: +SKIP
    >>> result.statistics().query("measure == 'auc' and condition == 'b2m'")  # doctest: +SKIP
    """
    seeds = _check_grid(model, alphas, seeds, controls, l2, engine, scheduler, train_options)
    store = Path(out).resolve()
    (store / _RUNS).mkdir(parents=True, exist_ok=True)
    _remove_partial_files(store)
    derivative_root, fingerprint = _derivative_identity(derivative)
    no_info_root, no_info_fingerprint = _derivative_identity(no_info) if no_info is not None else (None, "surrogate")
    teachers = {"derivative": str(derivative_root), "no_info": None if no_info_root is None else str(no_info_root)}
    study = {"store_version": STORE_VERSION, "derivative": fingerprint, "no_info_teacher": no_info_fingerprint,
             "model": model, "train_options": train_options}
    _check_one_study(store, [_read_run(path)[0] for path in (store / _RUNS).glob("*.nc")] + [study])
    runs = [_run_config(study, *cell) for cell in _cells(alphas, seeds, controls, l2)]
    missing = [run for run in runs if not (store / _RUNS / f"{run['run_id']}.nc").exists()]
    groups = [[run for run in missing if run["seed"] == seed] for seed in seeds]
    groups = [group for group in groups if group]
    if progress:
        print(f"sweep: {len(runs)} runs, {len(runs) - len(missing)} already in {store}, training {len(missing)}")
    if scheduler is None:
        _train_group(teachers, str(store), missing, engine=engine, progress=progress)
    else:
        _run_on_dask(scheduler, teachers, str(store), groups, engine=engine, progress=progress)
    return SweepResult.from_store(store)  # also rewrites the index from the run files


def rebuild_index(out: str | os.PathLike) -> pd.DataFrame:
    """Rewrite ``out/index.csv`` from the run files and return it."""
    store = Path(out)
    return _write_index(store, _index_rows([_read_run(path) for path in sorted((store / _RUNS).glob("*.nc"))]))


# ----------------------------------------------------------------------------------- the grid


def _check_grid(model: Any, alphas: Sequence[float], seeds: int | Sequence[int], controls: Sequence[str],
                l2: Sequence[float], engine: str, scheduler: Any, train_options: Mapping[str, Any]) -> list[int]:
    if engine not in ("sequential", "batched"):
        raise SweepError(f"unknown engine {engine!r}", field="engine", fix='use engine="sequential" or "batched"')
    if not isinstance(model, str):
        raise SweepError("a sweep needs a registered model name", field="model",
                         fix="pass a name such as 'gru' (a module cannot identify runs in a store)")
    if not alphas or any(not 0 < float(a) <= 1 for a in alphas):
        raise SweepError(f"alphas must be a non-empty list of values in (0, 1], got {list(alphas)}", field="alphas",
                         fix="give B2M strengths such as [0.01, 0.05]; the alpha 0 baseline is added automatically")
    unknown = set(controls) - set(CONDITIONS[1:])
    if unknown:
        raise SweepError(f"unknown controls {sorted(unknown)}", field="controls",
                         fix=f"use any of: {', '.join(CONDITIONS[1:])}")
    if "l2" in controls and (not l2 or any(float(lam) <= 0 for lam in l2)):
        raise SweepError(f"l2 must be a non-empty list of weight decays > 0, got {list(l2)}", field="l2",
                         fix="weight decay 0 is the baseline (b2m at alpha 0), which every sweep runs")
    if not (scheduler is None or isinstance(scheduler, str) or hasattr(scheduler, "submit")):
        raise SweepError(f"unknown scheduler {scheduler!r}", field="scheduler",
                         fix="pass None, 'local', a scheduler address or a dask.distributed.Client")
    reserved = {"alpha", "weight_decay", "control", "seed", "progress"} & set(train_options)
    if reserved:
        raise SweepError(f"{sorted(reserved)} are set by the sweep grid", field=", ".join(sorted(reserved)),
                         fix="use alphas=, l2=, controls= and seeds= instead")
    try:
        json.dumps(dict(train_options), sort_keys=True)
    except TypeError as error:
        raise SweepError(f"training options must be JSON values ({error})", field="train_options",
                         fix="pass numbers, strings, booleans or lists") from None
    seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise SweepError(f"seeds must be a positive count or distinct integers, got {seeds}", field="seeds",
                         fix="pass seeds=10 or seeds=[0, 1, 2]")
    return seeds


def _cells(alphas: Sequence[float], seeds: list[int], controls: Sequence[str], l2: Sequence[float]) -> list[tuple[str, float, int]]:
    strengths = {"b2m": [0.0, *alphas], "no_info": alphas, "shuffled": alphas, "l2": l2}
    conditions = ["b2m", *[c for c in CONDITIONS[1:] if c in controls]]
    return [(c, float(s), seed) for seed in seeds for c in conditions for s in strengths[c]]


def _run_config(study: Mapping[str, Any], condition: str, strength: float, seed: int) -> dict[str, Any]:
    is_l2 = condition == "l2"
    config = {
        **study,
        "condition": condition,
        "strength": strength,
        "seed": seed,
        "alpha": 0.0 if is_l2 else strength,
        "weight_decay": strength if is_l2 else 0.0,
        "control": "shuffled" if condition == "shuffled" else None,
        "teacher": "no_info" if condition == "no_info" else "derivative",
    }
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:24]
    return config | {"run_id": digest}


# ---------------------------------------------------------------------------------- the runs


def _train_group(teachers: Mapping[str, str | None], store: str, runs: list[Mapping[str, Any]], *,
                 engine: str = "sequential", progress: bool = False) -> list[str]:
    """Train the runs of a group whose file is missing, each written atomically; return their ids.

    One Dask task (or the whole sweep in-process). ``teachers`` holds the roots of the derivative
    and of the no-information teacher (``None``: the surrogate); each is read once per group. With
    ``engine="sequential"`` the runs are trained one after another, each written as soon as it is
    done; with ``"batched"`` all missing runs are prepared, trained together by
    :func:`b2m_neuro.engine.fit_runs` (which batches the runs whose shapes agree) and then written.
    Either way each run is exactly the :func:`b2m_neuro.train` call it stands for.
    """
    from b2m_neuro.derivative import Derivative
    from b2m_neuro.engine import fit_runs
    from b2m_neuro.scene_training import fit_scene_runs

    missing = [run for run in runs if not (Path(store) / _RUNS / f"{run['run_id']}.nc").exists()]
    needed = {run["teacher"] for run in missing}  # the no-information teacher is read only when a run needs it
    sessions = {name: Derivative.open(root).datasets() if root and (name == "derivative" or name in needed) and missing
                else None for name, root in teachers.items()}
    batches = [missing] if engine == "batched" else [[run] for run in missing]
    shared: dict = {}
    for batch in track(batches, description="sweep runs", total=len(batches), progress=progress and engine != "batched"):
        prepared = [_prepare_run(_teacher(sessions, run), run, shared) for run in batch]
        fit = fit_scene_runs if batch[0]["model"] == "vae" else fit_runs
        outcomes = fit([p.run for p in prepared], device=prepared[0].device, progress=progress and engine == "batched")
        for run, ready, (history, diverged) in zip(batch, prepared, outcomes):
            _write_run(Path(store) / _RUNS / f"{run['run_id']}.nc", run, ready.result(history, diverged),
                       derivative_root=teachers["derivative"])
    return [run["run_id"] for run in runs]


def _teacher(sessions: Mapping[str, list[xr.Dataset] | None], run: Mapping[str, Any]) -> list[xr.Dataset]:
    """The sessions a run learns from: the derivative's, or the no-information teacher's."""
    if run["teacher"] != "no_info":
        return sessions["derivative"]
    if sessions["no_info"] is not None:
        return sessions["no_info"]
    return surrogate_sessions(sessions["derivative"], seed=run["seed"])


def _prepare_run(teacher: list[xr.Dataset], run: Mapping[str, Any], shared: dict) -> Any:
    """The run's :func:`b2m_neuro.training.prepare_run`, its task arrays shared with equal ones in ``shared``."""
    from b2m_neuro.scene_training import prepare_scene_run
    from b2m_neuro.training import prepare_run

    prepare = prepare_scene_run if run["model"] == "vae" else prepare_run
    ready = prepare(teacher, run["model"], alpha=run["alpha"], weight_decay=run["weight_decay"],
                    control=run["control"], seed=run["seed"], **run["train_options"])
    data = ready.run.data
    for name, value in vars(data).items():
        if isinstance(value, np.ndarray):
            setattr(data, name, shared.setdefault((name, *content_key(value)), value))
    return ready


def _write_run(path: Path, run: Mapping[str, Any], result: Any, *, derivative_root: str) -> None:
    """Write one run's file atomically: its history with the run and trainer configs in attrs."""
    history = _plain_attrs(result.history)
    history.attrs = {"b2m_run": json.dumps(dict(run), sort_keys=True), "derivative_root": derivative_root,
                     "train_config": json.dumps(result.config, sort_keys=True, default=str),
                     "diverged": int(bool(result.diverged))}
    with atomic_path(path) as tmp:
        history.to_netcdf(tmp, engine="h5netcdf")


def _run_on_dask(scheduler: Any, teachers: Mapping[str, str | None], store: str, groups: list[list[dict]], *,
                 engine: str, progress: bool) -> None:
    from dask.distributed import as_completed

    with _dask_client(scheduler) as client:
        workers = client.scheduler_info().get("workers", {}).values()
        resources = {"GPU": 1} if any("GPU" in w.get("resources", {}) for w in workers) else None
        futures = [client.submit(_train_group, teachers, store, group, engine=engine, pure=False,
                                 resources=resources) for group in groups]
        for future in track(as_completed(futures), description="sweep run groups", total=len(futures), progress=progress):
            future.result()


@contextlib.contextmanager
def _dask_client(scheduler: Any):
    from dask.distributed import Client, LocalCluster

    if not isinstance(scheduler, str):  # a Client (checked by _check_grid)
        yield scheduler
    elif scheduler == "local":
        with LocalCluster(processes=True, host="127.0.0.1", threads_per_worker=1, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            yield client
    else:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as error:
            raise SweepError(f"cannot reach the Dask scheduler ({error})", field="scheduler",
                             fix="start the cluster first, or pass scheduler='local' or None") from None
        with client:
            yield client


# --------------------------------------------------------------------------------- the store


def _read_run(path: Path) -> tuple[dict[str, Any], bool, xr.Dataset]:
    try:
        history = xr.load_dataset(path, engine="h5netcdf")
        config = json.loads(history.attrs["b2m_run"])
    except (OSError, ValueError, KeyError) as error:
        raise SweepError(f"not a readable sweep run ({error})", file=path, fix="delete this file and re-run the sweep") from None
    if config.get("run_id") != path.stem:
        raise SweepError("the file name does not match the run it holds", file=path, fix="delete this file and re-run the sweep")
    return config, bool(history.attrs.get("diverged", 0)), history


def _check_one_study(store: Path, configs: list[Mapping[str, Any]]) -> dict[str, Any]:
    keys = ("store_version", "derivative", "no_info_teacher", "model", "train_options")
    studies = {json.dumps({k: c.get(k) for k in keys}, sort_keys=True) for c in configs}
    if len(studies) > 1:
        raise SweepError("the store holds runs of another study (other derivative, no-information teacher, model "
                         "or training options)",
                         file=store, fix="use a new out= folder for each study")
    return json.loads(studies.pop()) if studies else {}


def _index_rows(runs: list[tuple[dict[str, Any], bool, xr.Dataset]]) -> list[dict[str, Any]]:
    return [config | {"diverged": diverged, "n_epochs": history.sizes.get("epoch", 0)} for config, diverged, history in runs]


def _write_index(store: Path, rows: list[Mapping[str, Any]]) -> pd.DataFrame:
    index = pd.DataFrame(rows).reindex(columns=_INDEX_COLUMNS)
    index = index.sort_values(["condition", "strength", "seed"], ignore_index=True)
    with atomic_path(store / _INDEX) as tmp:
        index.to_csv(tmp, index=False)
    return index


def _write_index_if_changed(store: Path, rows: list[Mapping[str, Any]]) -> None:
    path = store / _INDEX
    listed = set(pd.read_csv(path)["run_id"]) if path.exists() and path.stat().st_size else None
    if listed != {row["run_id"] for row in rows} and os.access(store, os.W_OK):
        _write_index(store, rows)


def _remove_partial_files(store: Path) -> None:
    """Remove temporary files left by a killed sweep (atomic writes never leave anything else)."""
    for path in [*store.glob(".*.partial"), *(store / _RUNS).glob(".*.partial")]:
        path.unlink(missing_ok=True)


def _plain_attrs(history: xr.Dataset) -> xr.Dataset:
    """A copy whose variable attributes are netCDF values (strings and numbers)."""
    history = history.copy()
    for variable in history.variables.values():
        variable.attrs = {k: v for k, v in variable.attrs.items() if isinstance(v, (str, int, float))}
    return history


def _epochs(history: xr.Dataset) -> np.ndarray:
    return history["epoch"].values if "epoch" in history.coords else np.arange(1, history.sizes["epoch"] + 1)


def _derivative_identity(derivative: Any) -> tuple[Path, str]:
    """The derivative's folder (opened, so checked) and a hash of its embedding files' SHA-256."""
    from b2m_neuro.derivative import Derivative

    opened = derivative if isinstance(derivative, Derivative) else Derivative.open(derivative)
    embeddings = {name: digest for name, digest in opened.manifest["Files"].items() if name.endswith(".nc")}
    fingerprint = hashlib.sha256(json.dumps(embeddings, sort_keys=True).encode()).hexdigest()[:24]
    return Path(opened.root).resolve(), fingerprint

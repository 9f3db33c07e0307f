"""Brain embeddings from labelled recordings: multi-session CEBRA, PCA, or the raw activity.

Input: the adapters' ``xarray.DataArray`` per session, either spikes with dims
``(trial, time, unit)`` or EEG with dims ``(frame, channel)``. Output: one ``xarray.Dataset`` per
session, ready for :meth:`b2m_neuro.Derivative.create`, holding ``embedding`` with dims
``(trial, time, latent)`` or ``(frame, latent)`` and every task coordinate of the input as a data
variable along ``trial`` / ``frame``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits

from b2m_neuro._util.progress import progress_bar
from b2m_neuro.errors import EmbeddingError

__all__ = ["embed", "METHODS", "INPUT_DIMS", "LABEL_SEARCHES"]

METHODS = ("cebra", "pca", "identity")
#: Steps at the end of CEBRA's training whose mean loss is recorded (``attrs["embedding_loss"]``).
LOSS_STEPS = 100
#: ``label_search=`` values: "distinct" (the distinct label values only; the same positives) or "cebra" (every sample).
LABEL_SEARCHES = ("distinct", "cebra")
# input dims -> (kind of derivative, name of the feature dim)
INPUT_DIMS = {("trial", "time", "unit"): ("trials", "unit"), ("frame", "channel"): ("frames", "channel")}


def embed(
    sessions: Sequence[xr.DataArray],
    *,
    method: str = "cebra",
    output_dimension: int = 7,
    zscore: bool = False,
    max_iterations: int = 15000,
    batch_size: int = 512,
    learning_rate: float = 3e-4,
    model_architecture: str = "offset10-model",
    temperature_mode: str = "auto",
    min_temperature: float = 0.1,
    distance: str = "cosine",
    conditional: str = "time_delta",
    cebra_options: Mapping[str, Any] | None = None,
    task: str | None = None,
    device: str = "auto",
    threads: int | None = None,
    seed: int = 0,
    progress: bool = True,
    label_search: str = "distinct",
) -> list[xr.Dataset]:
    """Embed each session's activity in a low-dimensional space.

    Parameters
    ----------
    sessions
        One DataArray per session from :func:`b2m_neuro.load_spikes` (dims ``trial, time, unit``)
        or :func:`b2m_neuro.load_eeg` (dims ``frame, channel``); all of the same kind.
    method
        ``"cebra"``: one CEBRA model for all sessions (multi-session CEBRA when there are two or
        more, each session reshaped to ``(trial * time, unit)`` with time-within-trial, or frame
        position for EEG, as the continuous auxiliary variable). ``"pca"``: principal components,
        fitted per session (sessions may have different units, so there is no common basis).
        ``"identity"``: the activity itself (latent = units or channels; all sessions must have
        the same count).
    output_dimension
        Embedding size for ``cebra`` and ``pca``; at most the smallest session's unit count.
    zscore
        Standardize each unit (channel), i.e. each column of a session's ``(trial * time, unit)``
        matrix, to mean 0 and SD 1 before ``pca`` or ``cebra``, so that high-rate units do not
        dominate the embedding; constant units become 0. Recorded in ``embedding_params``. Not
        for ``identity``, whose latents are the activity itself in its units.
    max_iterations, batch_size, learning_rate, model_architecture, temperature_mode, \
min_temperature, distance, conditional
        CEBRA hyperparameters; the defaults are the reference teacher's.
    cebra_options
        Further keyword arguments for ``cebra.CEBRA`` (e.g. ``{"num_hidden_units": 64}``).
    task
        Task label of the derivative files; default: each session's ``task`` attribute, else
        ``"memory"`` for spikes and ``"driving"`` for EEG.
    device
        ``"auto"`` (GPU when available), ``"cpu"`` or ``"cuda"``; CEBRA only.
    threads
        CPU threads for CEBRA and PCA (torch, BLAS, OpenMP) during this call; None keeps the
        libraries' settings. Small sessions train fastest with ``threads=1``, and on a busy
        machine a thread pool as large as the core count can be ten times slower.
    seed
        Seeds the numpy and torch global generators (CEBRA samples from both) and PCA.
    progress
        Show a progress bar over CEBRA's training steps (the package's bar; CEBRA's own is off).
    label_search
        How CEBRA finds each positive sample, the sample whose label is nearest to a query label
        (``time_delta`` conditioning): ``"distinct"`` (default) compares the query with each
        distinct label value once and takes the first sample holding the nearest one, which is the
        sample CEBRA's own search over every sample returns (``"cebra"``): the training is the
        same, step for step, and with labels that repeat (time within trial: 200 values for
        48,000 samples) the search stops being most of the training time. One-column labels only
        (ours); others use CEBRA's search. Not recorded in ``embedding_params``: it does not
        change the result. (With labels that repeat in every trial, that first sample is always
        in the session's first trial, with either search.)

    Returns
    -------
    list of xarray.Dataset
        Per session: ``embedding`` (float32), the input's task coordinates as data variables,
        attrs ``subject``, ``session``, ``task``, ``source_file``, ``source_sha256``, ``method``
        and ``embedding_params`` (a dict of every parameter, for ``Derivative.create``); for
        CEBRA also ``embedding_loss``, its training loss at the end (mean over the last
        :data:`LOSS_STEPS` steps), to compare step counts and settings.

    Raises
    ------
    EmbeddingError
        No sessions, mixed kinds, NaN activity, an unknown method, an output dimension larger
        than a session's unit count, ``zscore=True`` with ``identity``, or an unknown
        ``label_search``.

    Examples
    --------
    >>> embedded = embed(rates, method="pca", output_dimension=3)  # doctest: +SKIP
    >>> Derivative.create("derivatives/b2m-pca", embedded, method="pca",
    ...                   params=embedded[0].attrs["embedding_params"], source_datasets=files)  # doctest: +SKIP
    """
    kind, feature_dim = _check_sessions(sessions)
    if label_search not in LABEL_SEARCHES:
        raise EmbeddingError(f"unknown label_search {label_search!r}", field="label_search",
                             fix=f"use one of {', '.join(LABEL_SEARCHES)}")
    if method not in METHODS:
        raise EmbeddingError(
            f"unknown embedding method {method!r}", field="method", fix=f"use one of {', '.join(METHODS)}"
        )
    matrices = [_as_samples(session, feature_dim) for session in sessions]
    loss = None  # CEBRA's final training loss
    if method == "identity":
        _check_equal_features(sessions, feature_dim)
        if zscore:
            raise EmbeddingError(
                "zscore=True applies to methods 'pca' and 'cebra'; 'identity' keeps the activity in its units",
                field="zscore",
                fix="use method='pca' or 'cebra' with zscore=True, or leave zscore=False for 'identity'",
            )
        params: dict[str, Any] = {}
        latents = matrices
    else:
        _check_output_dimension(sessions, feature_dim, output_dimension)
        matrices = [_zscore(matrix) for matrix in matrices] if zscore else matrices
        if method == "pca":
            params = {"output_dimension": output_dimension, "fit": "per-session", "zscore": bool(zscore), "seed": seed}
            latents = _pca(matrices, output_dimension=output_dimension, seed=seed, threads=threads)
        else:
            params = {
                "model_architecture": model_architecture,
                "batch_size": batch_size,
                "learning_rate": learning_rate,
                "temperature_mode": temperature_mode,
                "min_temperature": min_temperature,
                "output_dimension": output_dimension,
                "zscore": bool(zscore),
                "max_iterations": max_iterations,
                "distance": distance,
                "conditional": conditional,
                **dict(cebra_options or {}),
                "auxiliary_variable": "time within trial" if kind == "trials" else "frame position",
                "multi_session": len(sessions) > 1,
                "device": device,
                "seed": seed,
            }
            labels = [_auxiliary_label(session, kind) for session in sessions]
            latents, loss = _cebra(matrices, labels, params=params, threads=threads, progress=progress,
                                   label_search=label_search)
    return [
        _as_dataset(session, latent, kind=kind, feature_dim=feature_dim, method=method, params=params, task=task,
                    loss=loss)
        for session, latent in zip(sessions, latents)
    ]


def session_name(session: xr.DataArray, index: int) -> str:
    """A readable name for messages: ``sub-X ses-Y (file)`` or the session's position."""
    attrs = session.attrs
    name = " ".join(
        part for part in (f"sub-{attrs['subject']}" if attrs.get("subject") else "",
                          f"ses-{attrs['session']}" if attrs.get("session") else "") if part
    )  # fmt: skip
    name = name or f"session {index}"
    return f"{name} ({attrs['source_file']})" if attrs.get("source_file") else name


def _check_sessions(sessions: Sequence[xr.DataArray]) -> tuple[str, str]:
    if len(sessions) == 0:
        raise EmbeddingError("no sessions to embed", field="sessions", fix="pass at least one session from load_spikes")
    kinds = []
    for index, session in enumerate(sessions):
        if not isinstance(session, xr.DataArray) or tuple(session.dims) not in INPUT_DIMS:
            what = tuple(session.dims) if isinstance(session, xr.DataArray) else type(session).__name__
            raise EmbeddingError(
                f"{session_name(session, index) if isinstance(session, xr.DataArray) else f'session {index}'} "
                f"is {what}; expected a DataArray with dims {' or '.join(map(str, INPUT_DIMS))}",
                field=f"sessions[{index}]",
                fix="pass the output of b2m_neuro.load_spikes or b2m_neuro.load_eeg",
            )
        kinds.append(INPUT_DIMS[tuple(session.dims)])
        if not np.isfinite(session.values).all():
            raise EmbeddingError(
                f"{session_name(session, index)} has NaN or infinite activity values",
                field=f"sessions[{index}]",
                fix="drop or fill the missing samples before embedding",
            )
    if len(set(kinds)) > 1:
        raise EmbeddingError(
            f"sessions mix kinds {sorted({k for k, _ in kinds})}: spikes (trial, time, unit) and EEG (frame, channel)",
            field="sessions",
            fix="embed spike sessions and EEG sessions separately",
        )
    return kinds[0]


def _check_output_dimension(sessions: Sequence[xr.DataArray], feature_dim: str, output_dimension: int) -> None:
    if not isinstance(output_dimension, (int, np.integer)) or output_dimension < 1:
        raise EmbeddingError(
            f"output_dimension must be a positive integer, got {output_dimension!r}",
            field="output_dimension",
            fix="pass e.g. output_dimension=7",
        )
    counts = [session.sizes[feature_dim] for session in sessions]
    smallest = int(np.argmin(counts))
    if output_dimension > counts[smallest]:
        raise EmbeddingError(
            f"output_dimension {output_dimension} exceeds the {counts[smallest]} {feature_dim}s of "
            f"{session_name(sessions[smallest], smallest)}",
            file=sessions[smallest].attrs.get("source_file"),
            field="output_dimension",
            fix=f"use output_dimension <= {counts[smallest]} (the smallest session's {feature_dim} count), "
            "or leave that session out",
        )


def _check_equal_features(sessions: Sequence[xr.DataArray], feature_dim: str) -> None:
    counts = [session.sizes[feature_dim] for session in sessions]
    if len(set(counts)) > 1:
        raise EmbeddingError(
            f"method 'identity' needs the same {feature_dim} count in every session, got {counts}",
            field="method",
            fix="use method='pca' or 'cebra' with a common output_dimension, or embed the sessions one by one",
        )


def _as_samples(session: xr.DataArray, feature_dim: str) -> np.ndarray:
    """(samples, features) float32: trials and time bins stacked in order, or frames."""
    values = np.asarray(session.values, dtype=np.float32)
    return values.reshape(-1, session.sizes[feature_dim])


def _zscore(matrix: np.ndarray) -> np.ndarray:
    """Each column to mean 0 and SD 1 (float32); constant columns to 0."""
    constant = matrix.min(axis=0) == matrix.max(axis=0)
    scale = np.where(constant, 1.0, matrix.std(axis=0, dtype=np.float64))
    return np.where(constant, 0.0, (matrix - matrix.mean(axis=0, dtype=np.float64)) / scale).astype(np.float32)


def _auxiliary_label(session: xr.DataArray, kind: str) -> np.ndarray:
    """Continuous label per sample: time within trial (spikes) or frame position (EEG), as (n, 1)."""
    if kind == "trials":
        time = np.asarray(session["time"].values, dtype=np.float32)
        label = np.broadcast_to(time, (session.sizes["trial"], time.size))
    else:
        label = np.arange(session.sizes["frame"], dtype=np.float32)
    return np.ascontiguousarray(label.reshape(-1, 1))


def _pca(matrices: list[np.ndarray], *, output_dimension: int, seed: int, threads: int | None) -> list[np.ndarray]:
    from sklearn.decomposition import PCA

    with threadpool_limits(threads):  # after the import: only loaded libraries are limited
        return [PCA(n_components=output_dimension, random_state=seed).fit_transform(x) for x in matrices]


def _cebra(
    matrices: list[np.ndarray], labels: list[np.ndarray], *, params: dict[str, Any], threads: int | None,
    progress: bool, label_search: str = "distinct",
) -> tuple[list[np.ndarray], float]:
    """Per session, CEBRA's embedding of its samples; and the final training loss (:func:`_recent_loss`)."""
    import cebra
    import torch

    ours = {"auxiliary_variable", "multi_session", "zscore", "device", "seed"}  # not CEBRA's options
    options = {k: v for k, v in params.items() if k not in ours}
    device = {"auto": "cuda_if_available"}.get(params["device"], params["device"])
    np.random.seed(params["seed"])
    torch.manual_seed(params["seed"])
    model = cebra.CEBRA(**options, device=device, verbose=False)  # its own tqdm bar floods logs: ours instead
    multi = len(matrices) > 1
    steps = int(params["max_iterations"])
    with threadpool_limits(threads), _label_search(label_search), \
            progress_bar(description="training CEBRA", total=steps, progress=progress) as update:
        try:
            model.fit(matrices if multi else matrices[0], labels if multi else labels[0],
                      callback=lambda done, solver: update(done, _loss_status(solver)),
                      callback_frequency=max(1, steps // 100))
        except (ValueError, RuntimeError, TypeError) as error:
            raise EmbeddingError(
                f"CEBRA could not be trained ({error})",
                field="method='cebra'",
                fix="check the CEBRA options; each session needs at least as many samples as the model's "
                "receptive field",
            ) from error
        latents = [model.transform(x, session_id=i if multi else None) for i, x in enumerate(matrices)]
    return latents, _recent_loss(model.state_dict_["loss"].numpy())


def _loss_status(solver: Any) -> str:
    """The progress bar's status during CEBRA's training: the loss of its recent steps."""
    return f"loss {_recent_loss(solver.history):.3f}" if solver.history else ""


def _recent_loss(losses: Sequence[float]) -> float:
    """The mean of CEBRA's last :data:`LOSS_STEPS` per-step training losses (all, if it trained fewer)."""
    return float(np.mean(np.asarray(losses)[-LOSS_STEPS:]))


@contextmanager
def _label_search(kind: str) -> Iterator[None]:
    """While active, CEBRA's nearest-label index is :func:`_distinct_value_index`'s (``kind="distinct"``).

    CEBRA builds its index (``cebra.distributions.ContinuousIndex``) when ``fit`` makes its data
    loader; the class is swapped for that time only and put back afterwards.
    """
    if kind == "cebra":
        yield
        return
    import cebra.distributions

    original = cebra.distributions.ContinuousIndex
    cebra.distributions.ContinuousIndex = _distinct_value_index(original)
    try:
        yield
    finally:
        cebra.distributions.ContinuousIndex = original


def _distinct_value_index(index_class: type) -> type:
    """A subclass of CEBRA's ``ContinuousIndex`` that searches the distinct values of a one-column index.

    CEBRA's search computes ``|x|^2 + |q|^2 - 2 x q`` for every sample x and query q and takes the
    ``argmin`` over samples, that is the first sample of the smallest value. Every sample with
    the same label gets the same number, so the same answer comes from the distinct labels alone,
    ordered by their first sample (which keeps the tie-breaking between different labels),
    mapped back to that first sample. With one column the numbers are the same float operations
    on the same values, so the answer is identical, not only close.
    """
    import torch

    class DistinctValueIndex(index_class):
        def __init__(self, index: torch.Tensor) -> None:
            first = None
            if index.ndim == 2 and index.shape[1] == 1:
                values, inverse = torch.unique(index[:, 0], return_inverse=True)  # sorted; dim=0 is 100x slower
                values = values[:, None]
                positions = torch.arange(len(index), device=index.device)
                first = torch.full((len(values),), len(index), device=index.device).scatter_reduce(
                    0, inverse, positions, reduce="amin")
                order = torch.argsort(first)
                index, first = values[order], first[order]
            super().__init__(index)
            self.first = first

        def search(self, query: torch.Tensor) -> torch.Tensor:
            found = super().search(query)
            return found if self.first is None else self.first[found]

    return DistinctValueIndex


def _as_dataset(
    session: xr.DataArray,
    latent: np.ndarray,
    *,
    kind: str,
    feature_dim: str,
    method: str,
    params: dict[str, Any],
    task: str | None,
    loss: float | None = None,
) -> xr.Dataset:
    row_dims = session.dims[:-1]
    shape = tuple(session.sizes[d] for d in row_dims) + (latent.shape[-1],)
    embedding = xr.DataArray(np.asarray(latent, dtype=np.float32).reshape(shape), dims=(*row_dims, "latent"))
    rows = row_dims[0]
    along = {dim: {str(name): (dim, c.values, dict(c.attrs)) for name, c in session.coords.items() if c.dims == (dim,)}
             for dim in session.dims}  # fmt: skip
    variables = {name: value for name, value in along[rows].items() if name != rows}  # task columns
    coords: dict[str, Any] = {name: value for dim in row_dims[1:] for name, value in along[dim].items()}  # time, phase
    if rows in session.coords:
        coords[rows] = along[rows][rows]
    coords["latent"] = np.arange(shape[-1])
    if method == "identity":  # latent i is unit / channel i: keep its id and per-unit coords
        coords.update({name: ("latent", *value[1:]) for name, value in along[feature_dim].items()})
    attrs = {key: value for key, value in session.attrs.items() if key not in {"units", "long_name"}}
    attrs["task"] = task or attrs.get("task") or ("memory" if kind == "trials" else "driving")
    attrs.setdefault("session", "")
    attrs.update(method=method, embedding_params=params)
    if loss is not None:
        attrs["embedding_loss"] = loss
    dataset = xr.Dataset({"embedding": embedding, **variables}, coords=coords, attrs=attrs)
    dataset["embedding"].attrs = {
        "long_name": f"{method} brain embedding",
        "units": session.attrs.get("units", "1") if method == "identity" else "1",
        "description": f"{method} embedding of the {feature_dim} activity"
        + (f" ({feature_dim}s as latent dimensions)" if method == "identity" else ""),
    }
    return dataset


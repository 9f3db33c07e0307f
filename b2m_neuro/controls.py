"""Teachers that isolate brain information: every control of a B2M study, in one module.

A brain-guided student can learn faster for reasons that have nothing to do with what the brain
knows about the task: an extra loss term regularizes, and a teacher with any temporal structure
shapes the aligned layer. Each control keeps some of the teacher and removes the rest:

============  ==============================================  ==============================================
control       keeps                                           removes
============  ==============================================  ==============================================
shuffled      every trial's embedding, the within-trial       which trial an embedding belongs to (trials
              time course, the session's statistics           permuted within each session)
surrogate     each latent's power spectrum and the latent     the correspondence between a time point and
              covariance (phase randomization of the          its embedding, so all task information (goal,
              session flattened to one series)                stimulus, trial timing)
no-info       whatever the recipe that made it keeps: a       the task information the simulator (or the
teacher       teacher rebuilt with the information switched   experimenter) removed, e.g.
              off and embedded the same way                   ``memory_session(goal_information=False)``
L2            nothing of the brain (alpha 0)                  the brain; adds weight decay instead
============  ==============================================  ==============================================

The primary contrast of a study is the informative teacher against a matched **no-information**
teacher (:func:`b2m_neuro.sweep` condition ``"no_info"``): the surrogate of the same derivative by
default (:func:`surrogate_sessions`), or a teacher you rebuilt without the information
(``sweep(..., no_info=derivative)``), which matches the informative one more closely. The shuffled
control is *not* neutral: it keeps the within-trial time course and by itself can cost accuracy,
so "beats shuffled" alone is weak evidence.

:func:`apply_control` is what :func:`b2m_neuro.train` calls for ``control=``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from typing import TYPE_CHECKING

import numpy as np

from b2m_neuro.errors import TrainingError

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["CONDITIONS", "CONTROLS", "apply_control", "check_control", "shuffle_trials", "surrogate_sessions",
           "phase_randomized"]

#: ``train(control=...)`` values besides ``None``.
CONTROLS = ("shuffled", "surrogate")
#: The conditions of a sweep: brain-guided (``b2m``, strength = alpha; alpha 0 is the no-B2M
#: baseline), a matched teacher without task information (``no_info``, strength = alpha), brain
#: embeddings shuffled over trials (strength = alpha) and L2 weight decay without brain guidance
#: (strength = lambda); all but ``b2m`` are the sweep's ``controls=``.
CONDITIONS = ("b2m", "no_info", "shuffled", "l2")


def check_control(control: str | None) -> None:
    """Raise a :class:`TrainingError` unless ``control`` is ``None`` or one of :data:`CONTROLS`."""
    if control is not None and control not in CONTROLS:
        raise TrainingError(f"unknown control {control!r}", field="control",
                            fix=f"pass None or one of: {', '.join(CONTROLS)}")


def apply_control(sessions: Sequence[xr.Dataset], control: str | None, *, seed: int) -> list[xr.Dataset]:
    """The teacher a run with ``control`` trains on: the sessions themselves for ``None``."""
    check_control(control)
    if control is None:
        return list(sessions)
    return (shuffle_trials if control == "shuffled" else surrogate_sessions)(sessions, seed=seed)


def shuffle_trials(sessions: Sequence[xr.Dataset], *, seed: int) -> list[xr.Dataset]:
    """The shuffled control: each session's embedding permuted along ``trial`` (along ``frame`` for a
    frame embedding), seeded."""
    rng = np.random.default_rng([seed, 1])
    shuffled = []
    for session in sessions:
        embedding = session["embedding"]
        dim = "trial" if "trial" in embedding.dims else "frame"
        order = rng.permutation(embedding.sizes[dim])
        values = np.take(embedding.to_numpy(), order, axis=embedding.dims.index(dim))
        shuffled.append(session.assign(embedding=embedding.copy(data=values)))
    return shuffled


def surrogate_sessions(derivative: Any, *, seed: int) -> list[xr.Dataset]:
    """The matched-noise surrogate teacher of a derivative, in memory (a list of session Datasets).

    ``derivative`` is a :class:`~b2m_neuro.derivative.Derivative`, the path to one, or its
    sessions (``Derivative.datasets()``).

    Each session's embedding is flattened to one series (``(trial, time, latent)`` ->
    ``(trial * time, latent)``), phase-randomized with the same random phases for all latent
    dimensions (:func:`phase_randomized`, seeded by ``seed`` and the session's position) and
    reshaped back. Each latent dimension keeps its power spectrum and the latent covariance is
    kept; the task variables are untouched. What is lost is the correspondence between a time point
    and its brain embedding, hence all task information. :func:`b2m_neuro.train` accepts the list
    directly (or ``control="surrogate"``).
    """
    from b2m_neuro.derivative import Derivative

    if isinstance(derivative, (str, os.PathLike)):
        derivative = Derivative.open(derivative)
    datasets = derivative.datasets() if isinstance(derivative, Derivative) else list(derivative)
    sessions = []
    for index, dataset in enumerate(datasets):
        embedding = dataset["embedding"]
        flat = embedding.values.reshape(-1, embedding.shape[-1])
        surrogate = phase_randomized(flat, seed=[seed, index], axis=0).reshape(embedding.shape)
        sessions.append(dataset.assign(embedding=embedding.copy(data=surrogate)))
    return sessions


def phase_randomized(values: np.ndarray, *, seed: int | Sequence[int], axis: int = 0) -> np.ndarray:
    """Matched-noise surrogate: the same spectra and covariance, no correspondence to the samples.

    Multivariate phase randomization (Prichard & Theiler 1994) along ``axis``: the Fourier
    transform of every channel (every index of the other axes) gets the *same* random phase added
    at each frequency, so each channel keeps its power spectrum exactly and every pair of channels
    keeps its cross-spectrum, hence its covariance; the mean (zero frequency) is kept. What is
    destroyed is the alignment with the original samples: the surrogate is uncorrelated with the
    original in expectation.

    For a brain embedding ``(trial, time, latent)`` flatten trials and time into one series first
    (as :func:`surrogate_sessions` does).

    Parameters
    ----------
    values
        Real array; ``axis`` is the time (or trial) axis.
    seed
        Seed of the random phases (an int or a sequence of ints, as ``numpy.random.default_rng``).
    axis
        The axis to randomize along.

    Returns
    -------
    numpy.ndarray
        Surrogate of the same shape and dtype.
    """
    values = np.asarray(values)
    moved = np.moveaxis(values.astype(float), axis, 0)
    n = moved.shape[0]
    spectrum = np.fft.rfft(moved, axis=0)
    phases = np.random.default_rng(seed).uniform(0.0, 2.0 * np.pi, size=spectrum.shape[0])
    phases[0] = 0.0  # keep the mean
    if n % 2 == 0:
        phases[-1] = 0.0  # the Nyquist component of a real series must stay real
    rotation = np.exp(1j * phases).reshape((-1,) + (1,) * (moved.ndim - 1))
    surrogate = np.fft.irfft(spectrum * rotation, n=n, axis=0)
    return np.moveaxis(surrogate, 0, axis).astype(values.dtype)

"""One Brain2Model training run: ``train(derivative, model="gru", alpha=...) -> TrainResult``.

The student learns a task from the derivative's task variables (``L_task``) while its aligned layer
is pulled toward the brain embedding of the same time points (``L_transfer``), with the total loss
``(1 - alpha) * L_task + alpha * L_transfer`` (see :mod:`b2m_neuro.transfer`).

The task loss is the mean squared error between the output (in [-1.5, 1.5]) and the target
(+1 accept, -1 reject) at each trial's response point; accuracy is the sign of the output against
the target. The loop itself is :func:`b2m_neuro.engine.fit_runs` (task data + model + config ->
history, for one run or many at once), and the optimisation settings and their defaults are
:class:`b2m_neuro.engine.TrainConfig`; :func:`prepare_run` is everything before the loop.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import xarray as xr

from b2m_neuro.controls import apply_control, check_control
from b2m_neuro.engine import Run, TrainConfig, fit_runs
from b2m_neuro.errors import TrainingError
from b2m_neuro.tasks import TaskData, TrialSequenceTask, get_task
from b2m_neuro.train_result import TrainResult, run_versions, torch_device

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["train", "TrainResult", "prepare_run", "PreparedRun"]


def train(
    derivative: Any,
    model: str | nn.Module = "gru",
    *,
    alpha: float,
    control: str | None = None,
    device: str = "auto",
    task: str | TrialSequenceTask = "memory",
    align_layer: str | None = None,
    progress: bool = True,
    **options: Any,
) -> TrainResult:
    """Train a student on a derivative's task, guided by its brain embedding.

    Parameters
    ----------
    derivative
        A :class:`b2m_neuro.Derivative`, the path to one, or a list of session ``xarray.Dataset``
        in the derivative's layout (``embedding (trial, time, latent)`` plus task variables).
    model
        A registered model name (``"gru"``, the reference student) or any ``torch.nn.Module``
        mapping ``(batch, time, n_inputs)`` to ``(batch, time)`` outputs, with ``align_layer``.
        ``"vae"`` (or ``scenes=`` in the options): the VAE student reconstructing the scenes of the
        image folder ``scenes=`` guided by a frame derivative (:func:`b2m_neuro.scene_training.train_scenes`,
        whose options and defaults apply).
    alpha
        Weight of the transfer loss in ``(1 - alpha) * L_task + alpha * L_transfer``, in [0, 1].
    control
        ``None``, or a control teacher (:data:`b2m_neuro.controls.CONTROLS`): ``"shuffled"`` (brain
        embeddings shuffled along the trial axis within each session) or ``"surrogate"``
        (phase-randomized embeddings, no task information), seeded by ``seed``.
    device
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"mps"``.
    task
        ``"memory"`` (the goal-switching task), ``"study_test"`` (study-test recognition memory),
        ``"sternberg"`` (Sternberg working memory), ``"trials"`` (generic trial sequences) or a task
        object from :mod:`b2m_neuro.tasks`.
    align_layer
        For a user ``nn.Module``: the name of the layer aligned to the brain (a forward hook).
    progress
        Show a progress bar over epochs.
    **options
        Optimisation settings, the fields of :class:`b2m_neuro.engine.TrainConfig` (its defaults,
        the reference settings, apply to those not given):

        - ``transfer`` (``"contrastive"``): ``"contrastive"`` (InfoNCE, same inputs as the brain),
          ``"contrastive-cosine"`` (InfoNCE on cosine similarity) or ``"latent"`` (MSE to the brain
          embedding);
        - ``temperature`` (0.1): InfoNCE temperature ``tau``;
        - ``reduction`` (``"mean"``): ``"mean"`` (alpha's scale then does not depend on sequence
          length) or ``"sum"`` (the paper's equation) over the InfoNCE anchors;
        - ``epochs`` (150), ``lr`` (1e-4), ``batch_size`` (1 episode), ``weight_decay`` (0): Adam;
        - ``seed`` (0): fixes initial weights, dropout, episode order, the control teacher and the
          negatives;
        - ``negatives`` (0): InfoNCE negatives drawn from other training episodes each step (see
          :class:`~b2m_neuro.engine.TrainConfig`);
        - ``divergence_factor`` (100): stop when an epoch's mean loss exceeds this many times the
          first batch's loss.

        Task options (memory: ``time_stride``, ``pair``, ``n_test``, ``test_seed``; study_test:
        ``phase``, ``phases``, ``stimulus``, ``episode``, ``target``; sternberg: ``encoding``,
        ``probe``, ``target``; trials: ``stimulus``, ``target``, ``episode``, ``test_fraction``, ...;
        see :mod:`b2m_neuro.tasks`)
        and model options (gru: ``hidden_size``, ``dropout``, ``output_range``).

    Returns
    -------
    TrainResult

    Raises
    ------
    TrainingError
        Bad options, a derivative lacking the task's variables, or an aligned layer whose width
        differs from the brain embedding's.

    Examples
    --------
    >>> result = b2m_neuro.train("derivatives/b2m-cebra", alpha=0.012, epochs=150)  # doctest: +SKIP
    >>> result.history.test_accuracy.plot()  # doctest: +SKIP
    """
    if _scene_student(model, options):  # the VAE student on scene reconstruction
        from b2m_neuro.scene_training import train_scenes

        if task != "memory" or align_layer is not None:
            raise TrainingError("the VAE student learns scene reconstruction: task= and align_layer= do not apply",
                                field="task" if task != "memory" else "align_layer",
                                fix="drop task= and align_layer= (the VAE's latent mean is aligned), or train a GRU")

        return train_scenes(derivative, model, alpha=alpha, control=control, device=device, progress=progress, **options)
    prepared = prepare_run(derivative, model, alpha=alpha, control=control, device=device, task=task,
                           align_layer=align_layer, **options)
    [(history, diverged)] = fit_runs([prepared.run], device=prepared.device, progress=progress)
    return prepared.result(history, diverged)


def _scene_student(model: str | nn.Module, options: dict) -> bool:
    """Whether the run is the VAE student's (by name, by ``scenes=``, or a VAE passed as a module)."""
    if model == "vae" or "scenes" in options:
        return True
    if isinstance(model, str):
        return False
    from b2m_neuro.models.vae import ReferenceVAE

    return isinstance(model, ReferenceVAE)


@dataclass
class PreparedRun:
    """One run ready for the engine (:func:`prepare_run`): ``run`` (task data, student, settings),
    the torch ``device`` and the ``run_config`` recorded with the result."""

    run: Any
    device: Any
    run_config: dict

    def result(self, history: xr.Dataset, diverged: bool) -> TrainResult:
        """The :class:`TrainResult` once the engine has trained ``run`` into ``history``."""
        history.attrs["config"] = json.dumps(self.run_config)
        return TrainResult(history=history, model=self.run.student.model.cpu(), config=self.run_config,
                           versions=run_versions(), diverged=diverged)


def prepare_run(derivative: Any, model: str | nn.Module = "gru", *, alpha: float, control: str | None = None,
                device: str = "auto", task: str | TrialSequenceTask = "memory", align_layer: str | None = None,
                **options: Any) -> PreparedRun:
    """Everything :func:`train` does before the training loop (same arguments, no ``progress``).

    Checks the options, reads the derivative, applies the control, prepares the task data and builds
    the student (initial weights under ``torch.manual_seed(seed)``). :func:`b2m_neuro.sweeps.sweep`
    prepares many runs this way and trains them together with :func:`b2m_neuro.engine.fit_runs`.
    """
    import torch

    config_options, task, model_options = _split_options(task, options)
    config = TrainConfig(alpha=alpha, **config_options)
    check_control(control)  # before any reading
    sessions, source = _sessions(derivative)
    sessions = apply_control(sessions, control, seed=config.seed)
    data = task.prepare(sessions)
    on = torch_device(device)
    torch.manual_seed(config.seed)
    student, model_name, model_options = _student(model, data, align_layer, model_options)
    student = student.to(on)
    run_config = {
        "model": model_name, "model_options": model_options, "align_layer": student.align_layer,
        "task": task.name, "task_options": task.options(), "control": control, "device": str(on),
        "derivative": source, "n_train_sequences": len(data.train_lengths),
        "n_test_sequences": len(data.test_lengths), "stimuli": [_plain(value) for value in data.stimuli],
        **asdict(config),
    }
    return PreparedRun(run=Run(data, student, config), device=on, run_config=run_config)


# --- input handling ----------------------------------------------------------------------------


def _sessions(derivative: Any) -> tuple[list[xr.Dataset], str | None]:
    if isinstance(derivative, (str, os.PathLike)):
        from b2m_neuro.derivative import Derivative

        derivative = Derivative.open(derivative)
    if hasattr(derivative, "datasets") and hasattr(derivative, "root"):
        if derivative.kind != "trials":
            raise TrainingError(f"the derivative holds {derivative.kind!r} embeddings; the trial-sequence tasks need 'trials'",
                                file=derivative.root, field="kind", fix="embed trial-aligned spike data (load_spikes)")
        return derivative.datasets(), str(derivative.root)
    if isinstance(derivative, Sequence) and derivative and all(isinstance(s, xr.Dataset) for s in derivative):
        return list(derivative), None
    raise TrainingError(f"cannot train on a {type(derivative).__name__}", field="derivative",
                        fix="pass a b2m_neuro.Derivative, the path to one, or a list of session xarray Datasets")


def _split_options(task: str | TrialSequenceTask, options: dict) -> tuple[dict, TrialSequenceTask, dict]:
    """Route ``**options``: to :class:`TrainConfig` (its fields), the task (the names its constructor
    takes) and the model (the rest). Returns ``(config options, task, model options)``."""
    config_fields = {field.name for field in dataclasses.fields(TrainConfig)}
    config_options = {key: value for key, value in options.items() if key in config_fields}
    options = {key: value for key, value in options.items() if key not in config_fields}
    if isinstance(task, TrialSequenceTask):
        return config_options, task, options
    from b2m_neuro.tasks import _TASKS

    accepted = {name: set(inspect.signature(task_class).parameters) for name, task_class in _TASKS.items()}
    mine = accepted.get(task, set())
    misplaced = sorted(set(options) & set().union(*accepted.values()) - mine)
    if task in accepted and misplaced:
        raise TrainingError(f"option(s) {', '.join(misplaced)} do not apply to task {task!r}", field=", ".join(misplaced),
                            fix=f"task {task!r} takes: {', '.join(sorted(mine))}")
    task_options = {key: value for key, value in options.items() if key in mine}
    model_options = {key: value for key, value in options.items() if key not in mine}
    return config_options, get_task(task, **task_options), model_options


def _student(model: str | Any, data: TaskData, align_layer: str | None, options: dict) -> tuple[Any, str, dict]:
    import torch

    from b2m_neuro.models import get_model
    from b2m_neuro.models.aligned import AlignedModel

    if isinstance(model, str):
        network = get_model(model, n_inputs=data.n_inputs, latent_dim=data.latent_dim, **options)
        name, options = model, {"n_inputs": data.n_inputs, "latent_dim": data.latent_dim, **options}
        align_layer = align_layer or network.align_layer
    elif isinstance(model, torch.nn.Module):
        if options:
            raise TrainingError(f"options {sorted(options)} are neither task options nor usable with your own model",
                                field=", ".join(sorted(options)), fix="set them on your model before passing it")
        if align_layer is None:
            raise TrainingError("a user model needs the name of the layer to align to the brain", field="align_layer",
                                fix="pass align_layer='<name>' (one of the names in model.named_modules())")
        network, name = model, f"{type(model).__module__}.{type(model).__qualname__}"
    else:
        raise TrainingError(f"model must be a registered name or a torch.nn.Module, got {type(model).__name__}",
                            field="model", fix="pass 'gru' or an nn.Module")
    student = AlignedModel(network, align_layer)
    _check_width(student, data)
    return student, name, options


def _check_width(student: Any, data: TaskData) -> None:
    import torch

    with torch.no_grad():
        width = student(torch.zeros(1, 1, data.n_inputs))[1].shape[-1]
    if width != data.latent_dim:
        raise TrainingError(
            f"the aligned layer {student.align_layer!r} has width {width} but the brain embedding has {data.latent_dim} dimensions",
            field="align_layer", fix=f"give the aligned layer {data.latent_dim} outputs, or embed with {width} dimensions",
        )


# --- provenance --------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value

"""Scene training: the VAE student, for R >= 1 runs at once (:func:`fit_scene_runs`), and one run
(:func:`train_scenes`, what ``train(derivative, model="vae", scenes=..., alpha=...)`` calls).

Each step of a run takes a batch of ``batch_size`` (32) images from set A for the task loss and, in
tandem, up to ``pair_batch`` (256) frame/EEG pairs from set H for the brain latent transfer loss
(:mod:`b2m_neuro.tasks.scenes`):

- task loss: summed squared error + KL per pixel value (:func:`b2m_neuro.models.vae.vae_loss`);
- transfer loss: :func:`b2m_neuro.transfer.latent_loss` (paper eq. 3) between the latent mean of
  the H frames (encoder dropout on) and their EEG embedding rows;
- total loss (paper eq. 1): ``(1 - alpha) * task + alpha * transfer``.

The training contract is the engine's (:mod:`b2m_neuro.engine`): :class:`~b2m_neuro.engine.TrainConfig`
holds the settings, with the scene defaults of :data:`SCENE_DEFAULTS` (the original VAE's batch of
32, 100 epochs as in the reference study, the latent transfer) for those not given; Adam is
:class:`~b2m_neuro.engine.StackedAdam`; the image order of an epoch comes from
``numpy.random.default_rng(seed)``, the H pairs of each step from ``default_rng([seed, 4])``, the
dropout masks and reparameterization noise from the run's own ``torch.Generator``. A run stops,
marked diverged, when a batch's total loss is not finite, its weights stop being finite, or an
epoch's mean total loss exceeds ``divergence_factor`` times the first batch's. After each epoch
(dropout off, ``z = mu``): the test loss (reconstruction MSE on A's test images) and its PSNR
(``test_psnr``, higher is better: the metric to give :func:`b2m_neuro.sweeps.SweepResult.statistics`
and the report), the latent MSE between the latent mean of every H frame and its EEG row, and their
linear CKA and RSA.

Runs of one architecture on the same images (they may differ in alpha, seed, control teacher,
learning rate, weight decay, dropout) can be trained as one group with stacked weights
(:class:`b2m_neuro.models.stacked_vae.StackedVAEs`), each on its own batches; a run's history does
not depend on its group (up to float rounding). How many share a group:
:func:`auto_scene_group_size` (one on a CPU, where stacking does not pay; as many as fit on a GPU).
On CUDA the forward passes run under bf16 autocast (``bf16="auto"``).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from b2m_neuro._util.arrays import content_key
from b2m_neuro._util.progress import track
from b2m_neuro.controls import apply_control, check_control
from b2m_neuro.engine import RunStatus, StackedAdam, TrainConfig, history_dataset, seeded_generator
from b2m_neuro.errors import TrainingError
from b2m_neuro.tasks.scenes import SceneData, SceneTask
from b2m_neuro.train_result import TrainResult, run_versions, torch_device

if TYPE_CHECKING:
    import torch

__all__ = ["train_scenes", "prepare_scene_run", "fit_scene_runs", "auto_scene_group_size", "SceneRun",
           "SCENE_DEFAULTS", "SCENE_HISTORY_VARIABLES"]

#: The scene training's own defaults for :class:`~b2m_neuro.engine.TrainConfig` fields (the others keep TrainConfig's).
SCENE_DEFAULTS = {"transfer": "latent", "batch_size": 32, "epochs": 100}
EVAL_CHUNK = 256  # images per evaluation pass

#: The per-epoch variables of a scene run's history, with their descriptions.
SCENE_HISTORY_VARIABLES = {
    "task_loss": "mean VAE loss ((summed squared error + KL) per pixel value) over the epoch's image batches",
    "reconstruction_loss": "mean reconstruction MSE over the epoch's image batches (dropout and sampling on)",
    "transfer_loss": "mean latent MSE between the H frames' latent mean (dropout on) and their EEG rows over the "
                     "epoch's steps (computed even when alpha = 0)",
    "total_loss": "mean (1 - alpha) * task_loss + alpha * transfer_loss over the epoch's steps",
    "test_loss": "reconstruction MSE on the test scenes after the epoch (dropout off, z = mu)",
    "test_psnr": "10 log10(1 / test_loss) in dB: reconstruction quality on the test scenes (pixels in [0, 1]), "
                 "higher is better (the metric of the sweep statistics and report for the VAE)",
    "latent_mse": "MSE between the latent mean of every H frame (dropout off) and its EEG embedding row after the epoch",
    "alignment_cka": "linear CKA between the latent mean of the H frames (dropout off) and their EEG rows after the epoch",
    "alignment_rsa": "Spearman correlation of the Euclidean-distance RDMs of the latent mean of at most 300 H frames "
                     "and their EEG rows after the epoch",
    "wall_time": "seconds since training started, at the end of the epoch",
}


@dataclass
class SceneRun:
    """One scene training run: the task arrays, the student (trained in place), its settings and
    the frame/EEG pairs per step."""

    data: SceneData
    network: Any
    config: TrainConfig
    pair_batch: int


@dataclass
class PreparedSceneRun:
    """A run ready for :func:`fit_scene_runs` (:func:`prepare_scene_run`), its device and the config
    recorded with the result."""

    run: SceneRun
    device: Any
    run_config: dict

    def result(self, history: xr.Dataset, diverged: bool) -> TrainResult:
        """The :class:`~b2m_neuro.train_result.TrainResult` once :func:`fit_scene_runs` trained ``run``."""
        history.attrs["config"] = json.dumps(self.run_config)
        return TrainResult(history=history, model=self.run.network.cpu(), config=self.run_config,
                           versions=run_versions(), diverged=diverged)


def train_scenes(derivative: Any, model: Any = "vae", *, alpha: float, scenes: str | os.PathLike | None = None,
                 control: str | None = None, device: str = "auto", progress: bool = True, **options: Any) -> TrainResult:
    """Train the VAE student on ``scenes`` guided by the frame EEG embedding of ``derivative``.

    The arguments are :func:`b2m_neuro.train`'s: ``derivative`` a frame derivative (an EEG
    embedding per frame with ``stim_file``), ``model`` ``"vae"`` or a
    :class:`~b2m_neuro.models.vae.ReferenceVAE`, ``control`` ``None``, ``"shuffled"`` (EEG rows
    permuted over frames) or ``"surrogate"`` (phase-randomized over frames, no scene information).
    ``**options``: :class:`~b2m_neuro.engine.TrainConfig` fields (defaults :data:`SCENE_DEFAULTS`,
    then TrainConfig's), :class:`~b2m_neuro.tasks.scenes.SceneTask` options (``stimuli``,
    ``n_train``, ``n_test``, ``test_fraction``, ``pair_batch``) and model options (``channels``,
    ``hidden``, ``dropout``).

    Examples
    --------
    >>> result = b2m_neuro.train("derivatives/b2m-identity", model="vae", scenes="carla_scenes",
    ...                          alpha=0.5, epochs=100)  # doctest: +SKIP
    >>> result.history.test_loss.plot()  # doctest: +SKIP
    """
    prepared = prepare_scene_run(derivative, model, alpha=alpha, scenes=scenes, control=control, device=device,
                                 progress=progress, **options)
    [(history, diverged)] = fit_scene_runs([prepared.run], device=prepared.device, progress=progress)
    return prepared.result(history, diverged)


def prepare_scene_run(derivative: Any, model: Any = "vae", *, alpha: float, scenes: str | os.PathLike | None = None,
                      control: str | None = None, device: str = "auto", progress: bool = False,
                      **options: Any) -> PreparedSceneRun:
    """Everything :func:`train_scenes` does before the loop: check the options, read the derivative
    and both image sets, apply the control, build the student (weights under ``torch.manual_seed(seed)``)."""
    import torch

    if scenes is None:
        raise TrainingError("the VAE student needs the folder of its training scenes", field="scenes",
                            fix="pass scenes='<image folder>' (e.g. the CARLA scenes: train/class1/*.png, test/class1/*.png)")
    config_fields = {field.name for field in dataclasses.fields(TrainConfig)}
    task_fields = set(inspect.signature(SceneTask).parameters) - {"scenes"}
    config = TrainConfig(alpha=alpha, **(SCENE_DEFAULTS | {k: v for k, v in options.items() if k in config_fields}))
    if config.transfer != "latent":
        raise TrainingError(f"the scene task trains with the latent transfer loss, not {config.transfer!r}",
                            field="transfer", fix="pass transfer='latent' (or leave it out): the model's scenes and "
                                                  "the participants' frames are not the same images")
    check_control(control)
    task = SceneTask(scenes, **{k: v for k, v in options.items() if k in task_fields})
    model_options = {k: v for k, v in options.items() if k not in config_fields | task_fields}
    sessions, source = _frame_sessions(derivative)
    data = task.prepare(apply_control(sessions, control, seed=config.seed), progress=progress)
    on = torch_device(device)
    torch.manual_seed(config.seed)
    network, name, model_options = _student(model, data, model_options)
    run_config = {
        "model": name, "model_options": model_options, "align_layer": network.align_layer, "task": task.name,
        "task_options": task.options(), "control": control, "device": str(on), "derivative": source,
        "n_train_images": len(data.train_images), "n_test_images": len(data.test_images),
        "n_frames": len(data.frames), **asdict(config),
    }
    return PreparedSceneRun(SceneRun(data, network.to(on), config, task.pair_batch), on, run_config)


def fit_scene_runs(runs: Sequence[SceneRun], *, device: Any = "cpu", group_size: int | None = None,
                   bf16: bool | str = "auto", progress: bool = True) -> list[tuple[xr.Dataset, bool]]:
    """Train several scene runs, those of one architecture on the same images as groups.

    Parameters
    ----------
    runs
        The runs; each network is trained in place.
    device
        The torch device the networks are on.
    group_size
        Most runs per group; ``None``: :func:`auto_scene_group_size`.
    bf16
        Forward passes under bf16 autocast: ``"auto"`` on CUDA only, or ``True`` / ``False``.
    progress
        A progress bar over each group's epochs.

    Returns
    -------
    list of (history, diverged)
        Per run, in the order of ``runs``: its history (:data:`SCENE_HISTORY_VARIABLES` over ``epoch``,
        NaN after a divergence) and whether it diverged.
    """
    import torch

    if group_size is not None and (int(group_size) != group_size or group_size < 1):
        raise TrainingError(f"group_size must be a positive integer, got {group_size}", field="group_size",
                            fix="pass None (all compatible runs together) or 1 or more")
    device = torch.device(device)
    autocast = device.type == "cuda" if bf16 == "auto" else bool(bf16)
    buckets: dict[tuple, list[int]] = {}
    keys: dict[int, tuple] = {}  # content keys by array id: runs of a sweep share their arrays
    for index, run in enumerate(runs):
        buckets.setdefault(_group_key(run, keys), []).append(index)
    outcomes: list = [None] * len(runs)
    for members in buckets.values():
        size = group_size or auto_scene_group_size(runs[members[0]], device=device, n_runs=len(members))
        for start in range(0, len(members), size):
            chosen = members[start:start + size]
            for index, outcome in zip(chosen, _train_group([runs[i] for i in chosen], device, autocast, progress)):
                outcomes[index] = outcome
    return outcomes


def auto_scene_group_size(run: SceneRun, *, device: Any = "cpu", n_runs: int = 1) -> int:
    """How many scene runs like ``run`` to train together.

    CPU: 1 (the convolutions are compute bound; ``benchmarks/bench_vae.py`` measured stacked runs
    at 0.7-1.0x the speed of one at a time on 2 cores). CUDA: as many of the ``n_runs`` as fit
    their training activations (about ``4 bytes * 5 * activation values per image * (batch +
    pair batch)`` per run, 2.1 GB at reference size) into half of the free GPU memory. Other
    devices: all ``n_runs``.
    """
    import torch

    device = torch.device(device)
    if device.type == "cpu":
        return 1
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        per_run = 4 * 5 * run.network.activation_values * (run.config.batch_size + run.pair_batch)
        return max(1, min(n_runs, (free // 2) // per_run))
    return max(1, n_runs)


# --- the loop ----------------------------------------------------------------------------------


def _group_key(run: SceneRun, keys: dict[int, tuple]) -> tuple:
    key = run.network.stacking_key() if hasattr(run.network, "stacking_key") else None
    if key is None:
        raise TrainingError(f"{type(run.network).__name__} cannot be trained by the scene loop", field="model",
                            fix="pass model='vae' or a b2m_neuro.models.vae.ReferenceVAE")
    for array in (run.data.train_images, run.data.test_images, run.data.frames):
        if id(array) not in keys:
            keys[id(array)] = content_key(array)
    images = tuple(keys[id(array)] for array in (run.data.train_images, run.data.test_images, run.data.frames))
    # equal epochs too: the batch-norm statistics of every run in a group move with every batch, so a
    # run that stopped early would have its saved statistics changed by the others' later epochs
    return key, images, int(run.config.batch_size), int(run.pair_batch), int(run.config.epochs)


def _train_group(runs: Sequence[SceneRun], device: Any, autocast: bool, progress: bool) -> list[tuple[xr.Dataset, bool]]:
    import torch

    from b2m_neuro.models.stacked_vae import StackedVAEs

    configs = [run.config for run in runs]
    model = StackedVAEs([run.network for run in runs], generators=[seeded_generator(c.seed, device) for c in configs],
                        device=device)
    data = runs[0].data
    images = {name: torch.as_tensor(getattr(data, name), device=device) for name in ("train_images", "test_images", "frames")}
    brain = [torch.as_tensor(run.data.brain, device=device) for run in runs]
    optimizer = StackedAdam(model.parameters, lr=[c.lr for c in configs], weight_decay=[c.weight_decay for c in configs])
    order_rngs = [np.random.default_rng(c.seed) for c in configs]
    pair_rngs = [np.random.default_rng([c.seed, 4]) for c in configs]
    alpha = torch.tensor([c.alpha for c in configs], device=device)
    epochs = np.array([c.epochs for c in configs])
    history = [{name: np.full(c.epochs, np.nan) for name in SCENE_HISTORY_VARIABLES} for c in configs]
    status = RunStatus(len(runs))
    start = time.perf_counter()
    n_train, n_frames = len(data.train_images), len(data.frames)
    n_batches = int(np.ceil(n_train / configs[0].batch_size))
    n_pairs = min(runs[0].pair_batch, n_frames)
    for epoch in track(range(int(epochs.max())), description=f"training {len(runs)} VAE runs" if len(runs) > 1
                       else "training", total=int(epochs.max()), progress=progress):
        status.active &= epoch < epochs
        if not status.active.any():
            break
        orders = [np.array_split(rng.permutation(n_train), n_batches) for rng in order_rngs]
        sums = np.zeros((len(runs), 4))
        for b in range(n_batches):
            rows = np.stack([order[b] for order in orders])
            pairs = np.stack([rng.choice(n_frames, n_pairs, replace=False) for rng in pair_rngs])
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                batch = _as_float(images["train_images"][torch.as_tensor(rows, device=device)])
                reconstruction, mu, log_sigma = model.forward(batch)
                frame_mu = model.encode(_as_float(images["frames"][torch.as_tensor(pairs, device=device)]))
            task, reconstruction_loss, transfer = _losses(batch, reconstruction, mu, log_sigma, frame_mu,
                                                          torch.stack([b_[p] for b_, p in zip(brain, pairs)]))
            total = (1.0 - alpha) * task + alpha * transfer  # paper eq. 1
            values = torch.stack([task, reconstruction_loss, transfer, total]).detach().cpu().numpy().T  # (R, 4)
            status.stop(status.active & ~np.isfinite(values[:, 3]))
            status.start_loss = np.where(np.isnan(status.start_loss) & status.active, values[:, 3], status.start_loss)
            if not status.active.any():
                break
            model.zero_grad()
            total[torch.as_tensor(np.flatnonzero(status.active), device=device)].sum().backward()
            optimizer.step(model.gradients(), torch.as_tensor(status.active, device=device))
            sums[status.active] += values[status.active]
        status.stop(status.active & ~model.finite())
        done = np.flatnonzero(status.active)
        if not done.size:
            continue
        evaluation = _evaluate(model, images, brain, done, autocast)
        for r in done:
            record = history[r]
            for column, name in enumerate(("task_loss", "reconstruction_loss", "transfer_loss", "total_loss")):
                record[name][epoch] = sums[r, column] / n_batches
            for name, value in evaluation[r].items():
                record[name][epoch] = value
            record["wall_time"][epoch] = time.perf_counter() - start
            if record["total_loss"][epoch] > configs[r].divergence_factor * max(status.start_loss[r], 1e-12):
                status.stop(np.arange(len(runs)) == r)
    model.write_back()
    return [(history_dataset(history[r], bool(status.diverged[r]), descriptions=SCENE_HISTORY_VARIABLES),
             bool(status.diverged[r])) for r in range(len(runs))]


def _losses(images, reconstruction, mu, log_sigma, frame_mu, frame_brain):
    """Per run ``(R,)``: task loss, reconstruction MSE and latent transfer loss."""
    from torch.func import vmap

    from b2m_neuro.models.vae import vae_loss
    from b2m_neuro.transfer import latent_loss

    task, reconstruction_loss = vmap(vae_loss)(images, reconstruction.float(), mu.float(), log_sigma.float())
    return task, reconstruction_loss, vmap(latent_loss)(frame_brain, frame_mu.float())


def _evaluate(model, images: dict, brain: Sequence, runs: np.ndarray, autocast: bool) -> dict[int, dict[str, float]]:
    """Test loss, latent MSE, CKA and RSA of ``runs`` (dropout off)."""
    import torch

    from b2m_neuro.stats import linear_cka, rsa_similarity

    squared = np.zeros(len(runs))
    test = images["test_images"]
    with torch.autocast(test.device.type, dtype=torch.bfloat16, enabled=autocast):
        for chunk in torch.split(test, EVAL_CHUNK):
            chunk = _as_float(chunk)
            reconstruction, _ = model.predict(chunk, runs)
            squared += ((reconstruction.float() - chunk) ** 2).flatten(1).sum(1).cpu().numpy()
        frame_mu = torch.cat([model.predict(_as_float(chunk), runs)[1].float()
                              for chunk in torch.split(images["frames"], EVAL_CHUNK)], dim=1).cpu().numpy()
    test_loss = squared / test[0].numel() / len(test)
    evaluation = {}
    for column, r in enumerate(runs):
        rows, target = frame_mu[column], brain[r].cpu().numpy()
        evaluation[int(r)] = {"test_loss": test_loss[column], "test_psnr": 10 * np.log10(1 / test_loss[column]),
                              "latent_mse": float(((rows - target) ** 2).mean()),
                              "alignment_cka": linear_cka(rows, target), "alignment_rsa": rsa_similarity(rows, target)}
    return evaluation


def _as_float(images):
    """``uint8`` pixels -> float32 in [0, 1]."""
    import torch

    return images.to(torch.float32) / 255.0


# --- input handling ----------------------------------------------------------------------------


def _frame_sessions(derivative: Any) -> tuple[list[xr.Dataset], str | None]:
    """The sessions of a frame derivative (a :class:`~b2m_neuro.derivative.Derivative`, its path, or
    a list of session Datasets) and its root."""
    from b2m_neuro.derivative import Derivative

    if isinstance(derivative, (str, os.PathLike)):
        derivative = Derivative.open(derivative)
    if isinstance(derivative, Derivative):
        if derivative.kind != "frames":
            raise TrainingError(f"the derivative holds {derivative.kind!r} embeddings; the scene task needs 'frames'",
                                file=derivative.root, field="kind",
                                fix="embed per-frame EEG (load_eeg on a recording converted with its frames)")
        return derivative.datasets(), str(derivative.root)
    if isinstance(derivative, Sequence) and derivative and all(isinstance(s, xr.Dataset) for s in derivative):
        return list(derivative), None
    raise TrainingError(f"cannot train on a {type(derivative).__name__}", field="derivative",
                        fix="pass a b2m_neuro.Derivative of frame embeddings, its path, or a list of session Datasets")


def _student(model: Any, data: SceneData, options: dict) -> tuple[Any, str, dict]:
    """The VAE to train: built from the registry for ``"vae"``, or checked against the data."""
    import torch

    from b2m_neuro.models import get_model
    from b2m_neuro.models.vae import ReferenceVAE

    if isinstance(model, str):
        if model != "vae":
            raise TrainingError(f"the scene task trains the VAE student, not {model!r}", field="model",
                                fix="pass model='vae' (or a b2m_neuro.models.vae.ReferenceVAE)")
        if "image_size" in options and tuple(options["image_size"]) != data.image_size:
            raise TrainingError(f"image_size={tuple(options['image_size'])} but the scenes are "
                                f"{data.image_size[0]} x {data.image_size[1]} pixels", field="image_size",
                                fix="leave image_size out: it is taken from the scenes")
        options = {"image_size": list(data.image_size), **{k: list(v) if isinstance(v, tuple) else v
                                                            for k, v in options.items() if k != "image_size"}}
        network = get_model("vae", n_inputs=data.n_inputs, latent_dim=data.latent_dim, **options)
        return network, "vae", {"n_inputs": data.n_inputs, "latent_dim": data.latent_dim, **options}
    if not isinstance(model, ReferenceVAE) or not isinstance(model, torch.nn.Module):
        raise TrainingError(f"the scene task trains a ReferenceVAE, got {type(model).__name__}", field="model",
                            fix="pass model='vae' or a b2m_neuro.models.vae.ReferenceVAE")
    if options:
        raise TrainingError(f"options {sorted(options)} are neither training nor task options", field=", ".join(sorted(options)),
                            fix="set model options on your model before passing it")
    if model.latent_dim != data.latent_dim:
        raise TrainingError(f"the model's latent has {model.latent_dim} dimensions but the EEG embedding has "
                            f"{data.latent_dim}", field="latent_dim",
                            fix=f"build the VAE with latent_dim={data.latent_dim}, or embed with {model.latent_dim} dimensions")
    if model.image_size != data.image_size:
        raise TrainingError(f"the model takes {model.image_size[0]} x {model.image_size[1]} images but the scenes are "
                            f"{data.image_size[0]} x {data.image_size[1]}", field="image_size",
                            fix=f"build the VAE with image_size={data.image_size}")
    options = {"n_inputs": model.encoder[0][0].in_channels, "latent_dim": model.latent_dim, "image_size": list(model.image_size),
               "channels": list(model.channels), "hidden": model.encoder_linear[0].out_features, "dropout": model.dropout}
    return model, "vae", options

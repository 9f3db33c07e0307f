"""What one training run leaves: :class:`TrainResult` (history, trained model, config, versions), saved
and loaded atomically; shared by the trial-task training (:mod:`b2m_neuro.training`) and the scene
training (:mod:`b2m_neuro.scene_training`)."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from b2m_neuro._util.files import atomic_path, check_writable_target
from b2m_neuro._version import __version__
from b2m_neuro.errors import TrainingError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["TrainResult", "registered_model", "run_versions", "torch_device"]


@dataclass
class TrainResult:
    """The outcome of :func:`b2m_neuro.train` (GRU or VAE student).

    Attributes
    ----------
    history
        ``xarray.Dataset`` over ``epoch`` (1..epochs): task_loss, transfer_loss, total_loss,
        train_accuracy, test_loss, test_accuracy, alignment_cka, alignment_rsa (how similar the
        aligned layer is to the brain embedding), wall_time. Epochs after a divergence are NaN.
    model
        The trained ``torch.nn.Module`` (on the CPU after :meth:`load`).
    config
        Every setting needed to rerun: model name and options, task and options, optimiser, seed.
    versions
        Versions of b2m_neuro, torch, numpy, xarray and Python used.
    diverged
        True if the loss became NaN/inf or an epoch's mean loss exceeded ``divergence_factor``
        times the loss of the first batch before any update; training stopped there.
    """

    history: xr.Dataset
    model: Any
    config: dict
    versions: dict
    diverged: bool

    @property
    def final_test_accuracy(self) -> float:
        """Test accuracy after the last epoch that ran (NaN for a student without one, the VAE)."""
        if "test_accuracy" not in self.history:
            return float("nan")
        accuracy = self.history["test_accuracy"].dropna("epoch")
        return float(accuracy[-1]) if accuracy.size else float("nan")

    def summary(self) -> str:
        """One line: model, alpha, epochs, final test accuracy (test loss for the VAE) and losses, divergence."""
        metric = "test_accuracy" if "test_accuracy" in self.history else "test_loss"
        last = self.history.dropna("epoch", subset=[metric])
        if last.sizes["epoch"] == 0:
            return f"{self.config['model']} alpha={self.config['alpha']}: diverged in the first epoch"
        end = last.isel(epoch=-1)
        text = (f"{self.config['model']} alpha={self.config['alpha']} transfer={self.config['transfer']} "
                f"control={self.config['control']}: {int(end.epoch)} epochs, {metric.replace('_', ' ')} "
                f"{float(end[metric]):.{3 if metric == 'test_accuracy' else 5}f}, task loss {float(end.task_loss):.4f}, "
                f"transfer loss {float(end.transfer_loss):.4f}, {float(end.wall_time):.1f} s")
        return text + (" (DIVERGED, stopped)" if self.diverged else "")

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write ``path/`` with ``weights.pt``, ``config.json`` and ``history.nc``, atomically.

        Missing parent folders are created; an existing ``path`` is replaced only with ``overwrite``.
        """
        import torch

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        path = check_writable_target(path, overwrite=overwrite, error=TrainingError)
        with atomic_path(path) as tmp:
            tmp.mkdir()
            torch.save(self.model.state_dict(), tmp / "weights.pt")
            meta = {"config": self.config, "versions": self.versions, "diverged": self.diverged}
            (tmp / "config.json").write_text(json.dumps(meta, indent=2))
            self.history.to_netcdf(tmp / "history.nc", engine="h5netcdf")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, model: nn.Module | None = None) -> TrainResult:
        """Read a saved run; weights are loaded safely (``torch.load(weights_only=True)``).

        A registered model is rebuilt from the config; for your own ``nn.Module`` pass a fresh
        instance of it as ``model``.
        """
        import torch

        path = Path(path)
        files = {name: path / name for name in ("weights.pt", "config.json", "history.nc")}
        missing = [name for name, file in files.items() if not file.is_file()]
        if missing:
            raise TrainingError(f"not a saved training run: {', '.join(missing)} missing", file=path,
                                fix="pass a folder written by TrainResult.save or b2m-neuro train --out")
        meta = json.loads(files["config.json"].read_text())
        config = meta["config"]
        if model is None:
            model = registered_model(config)
        try:
            model.load_state_dict(torch.load(files["weights.pt"], map_location="cpu", weights_only=True))
        except (RuntimeError, KeyError) as error:
            raise TrainingError(f"the weights do not fit the model: {str(error).splitlines()[0]}",
                                file=files["weights.pt"], fix="pass a model built like the one that was trained") from None
        history = xr.load_dataset(files["history.nc"], engine="h5netcdf")
        return cls(history=history, model=model, config=config, versions=meta["versions"],
                   diverged=bool(meta["diverged"]))


def registered_model(config: dict) -> Any:
    """A fresh instance of the registered model a run's ``config`` names (TrainingError for a user's own)."""
    from b2m_neuro.models import get_model, known_models

    if config["model"] not in known_models():
        raise TrainingError(f"the run used your own model {config['model']!r}", field="model",
                            fix="pass a fresh instance of it: TrainResult.load(path, model=MyModel(...))")
    options = dict(config["model_options"])
    return get_model(config["model"], n_inputs=options.pop("n_inputs"), latent_dim=options.pop("latent_dim"), **options)


def torch_device(device: str) -> Any:
    """The ``torch.device`` for ``"auto"`` (CUDA, then MPS, then CPU) or a named device that is present."""
    import torch

    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if device == "auto":
        return torch.device(next(name for name in ("cuda", "mps", "cpu") if available[name]))
    if available.get(str(device).split(":")[0]):
        return torch.device(device)
    raise TrainingError(f"device {device!r} is not available here", field="device",
                        fix="use device='auto' or one of: " + ", ".join(name for name, ok in available.items() if ok))


def run_versions() -> dict:
    """Versions of b2m_neuro, torch, numpy, xarray and Python, recorded with each run."""
    import torch

    return {"b2m_neuro": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "xarray": xr.__version__, "python": platform.python_version()}

"""Capture the brain-aligned layer of any ``torch.nn.Module`` with a forward hook."""

from __future__ import annotations

import torch
from torch import nn

from b2m_neuro.errors import TrainingError


class AlignedModel(nn.Module):
    """Wrap a student so that one call returns its output and its aligned layer's output.

    Parameters
    ----------
    model
        Any module mapping ``(batch, time, inputs)`` to ``(batch, time)`` or ``(batch, time, 1)``
        outputs.
    align_layer
        Name of the submodule (as in ``model.named_modules()``) whose output, of shape
        ``(batch, time, latent)``, is aligned to the brain embedding.
    """

    def __init__(self, model: nn.Module, align_layer: str) -> None:
        super().__init__()
        layers = dict(model.named_modules())
        if not align_layer or align_layer not in layers:
            named = ", ".join(name for name in layers if name) or "(none)"
            raise TrainingError(f"the model has no layer named {align_layer!r}", field="align_layer",
                                fix=f"pass the name of the layer to align to the brain, one of: {named}")
        self.model = model
        self.align_layer = align_layer
        self._captured: torch.Tensor | None = None
        layers[align_layer].register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self._captured = output

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(outputs (batch, time), embedding (batch, time, latent))``."""
        self._captured = None
        outputs = self.model(inputs)
        embedding, self._captured = self._captured, None
        if outputs.ndim == 3 and outputs.shape[-1] == 1:
            outputs = outputs.squeeze(-1)
        if embedding is None or not isinstance(embedding, torch.Tensor) or embedding.ndim != 3:
            raise TrainingError(
                f"layer {self.align_layer!r} did not produce a (batch, time, latent) tensor in the forward pass",
                field="align_layer", fix="name a layer that runs on every time step, such as a linear layer after the RNN",
            )
        if outputs.shape != inputs.shape[:2]:
            raise TrainingError(
                f"the model returned outputs of shape {tuple(outputs.shape)} for inputs {tuple(inputs.shape)}",
                field="model", fix="return one value per time step: (batch, time) or (batch, time, 1)",
            )
        return outputs, embedding

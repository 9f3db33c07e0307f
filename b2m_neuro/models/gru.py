"""The reference student of the memory task: a one-layer GRU with a brain-aligned embedding layer.

torch is imported at the top of this file: it is only imported by :func:`b2m_neuro.models.get_model`,
never by ``import b2m_neuro``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from b2m_neuro.models.stacked_gru import StackedReferenceGRUs


class ReferenceGRU(nn.Module):
    """GRU -> dropout -> linear embedding (aligned to the brain) -> linear output -> scaled sigmoid.

    Parameters
    ----------
    n_inputs
        Input width: one-hot stimuli plus one "no stimulus on screen" element (4 for 3 stimuli).
    latent_dim
        Width of the embedding layer, the brain embedding's width (7 in the reference).
    hidden_size
        GRU hidden units (512 in the reference).
    dropout
        Dropout on the GRU outputs, before the embedding layer (0.3 in the reference).
    output_range
        The output is ``output_range * (2 * sigmoid(z) - 1)``, in ``[-output_range, output_range]``
        (1.5 in the reference, so the targets -1 (reject) and +1 (accept) lie inside the range).

    The layer aligned to the brain is ``embedding`` (:attr:`align_layer`). Runs of equal shapes are
    trained as one group (:meth:`stacking_key`, :meth:`recurrent_size` and :meth:`stack`, the
    engine's model protocol, see :mod:`b2m_neuro.engine`).
    """

    align_layer = "embedding"

    def __init__(self, n_inputs: int, latent_dim: int, *, hidden_size: int = 512, dropout: float = 0.3,
                 output_range: float = 1.5) -> None:
        super().__init__()
        self.gru = nn.GRU(n_inputs, hidden_size, num_layers=1, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.embedding = nn.Linear(hidden_size, latent_dim)
        self.output = nn.Linear(latent_dim, 1)
        self.output_range = output_range

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, time, n_inputs)`` inputs to ``(batch, time)`` outputs."""
        hidden, _ = self.gru(inputs)
        embedding = self.embedding(self.dropout(hidden))
        return self.output_range * (2.0 * torch.sigmoid(self.output(embedding)) - 1.0).squeeze(-1)

    def stacking_key(self) -> tuple[int, int, int] | None:
        """Hidden, input and embedding widths: networks with equal keys are trained as one group.

        ``None`` for a subclass, which may compute something else than the group would (it is
        trained alone through its own forward pass).
        """
        if type(self) is not ReferenceGRU:
            return None
        return (self.gru.hidden_size, self.gru.input_size, self.embedding.out_features)

    def recurrent_size(self) -> tuple[int, int]:
        """``(hidden_size, n_inputs)`` of the GRU: they set how many runs a group holds."""
        return self.gru.hidden_size, self.gru.input_size

    @classmethod
    def stack(cls, networks: Sequence[ReferenceGRU], *, generators: Sequence[torch.Generator], device: torch.device,
              backend: str) -> StackedReferenceGRUs:
        """The group of ``networks`` (equal :meth:`stacking_key`), trained with stacked weights."""
        return StackedReferenceGRUs(networks, generators=generators, device=device, backend=backend)

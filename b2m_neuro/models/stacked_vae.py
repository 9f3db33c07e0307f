"""R reference VAEs in one pass: :class:`StackedVAEs`.

The scene training loop (:mod:`b2m_neuro.scene_training`) trains runs of the reference VAE
(:class:`b2m_neuro.models.vae.ReferenceVAE`) of one architecture as one *group*: their parameters
and buffers are stacked along a leading run dimension (``torch.func.stack_module_state``) and one
``torch.func.vmap`` of ``torch.func.functional_call`` computes all runs, each on its own batch.
This is PyTorch's supported ensembling path for convolutional networks.

Each run keeps its own randomness: its dropout masks and reparameterization noise are drawn from
its own ``torch.Generator`` (:meth:`ReferenceVAE.draws`) outside the vmap and passed in, so a run
computes exactly what it computes alone. Batch normalization keeps per-run running statistics
(stacked buffers, updated in place by the vmapped training pass).

torch is imported at the top of this file; ``import b2m_neuro`` never imports it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap

from b2m_neuro.models.vae import ReferenceVAE

__all__ = ["StackedVAEs"]


class StackedVAEs:
    """R reference VAEs of one architecture with stacked weights.

    Parameters
    ----------
    networks
        The R networks (equal :meth:`ReferenceVAE.stacking_key`); :meth:`write_back` copies the
        trained weights and batch-norm statistics into them.
    generators
        Per run, the ``torch.Generator`` (on ``device``) its dropout masks and noise come from.
    device
        The ``torch.device`` the group trains on.
    """

    def __init__(self, networks: Sequence[ReferenceVAE], *, generators: Sequence[torch.Generator],
                 device: torch.device) -> None:
        self.networks = list(networks)
        self.generators = list(generators)
        self.device = torch.device(device)
        params, buffers = stack_module_state([network.to(self.device) for network in self.networks])
        self.params = {name: value.detach().requires_grad_() for name, value in params.items()}
        self.buffers = buffers
        self.base = copy.deepcopy(self.networks[0]).to("meta")

    @property
    def parameters(self) -> list[torch.Tensor]:
        """The stacked parameters ``(R, ...)``, updated in place by the optimiser."""
        return list(self.params.values())

    def gradients(self) -> list[torch.Tensor | None]:
        return [value.grad for value in self.params.values()]

    def zero_grad(self) -> None:
        for value in self.params.values():
            value.grad = None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass of run r on ``images[r]`` (``(R, B, C, H, W)`` in [0, 1]), with dropout and
        sampling: ``(reconstruction (R, B, C, H, W), mu (R, B, L), log_sigma (R, B, L))``."""
        draws = self._draws(images.shape[1], encoder_only=False)
        self.base.train()
        return vmap(self._call)(self.params, self.buffers, images, draws)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Training-mode latent mean (encoder dropout on, batch statistics) of run r for ``images[r]``:
        ``(R, B, L)``. Like :meth:`forward` it updates the running batch-norm statistics: the network
        sees both image sets in training, so its running statistics estimate both."""
        draws = self._draws(images.shape[1], encoder_only=True)
        self.base.train()
        return vmap(self._encode)(self.params, self.buffers, images, draws)

    def predict(self, images: torch.Tensor, runs: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluation pass (no dropout, ``z = mu``, running batch-norm statistics, no gradient) of the
        runs ``runs`` on shared ``images (B, C, H, W)``: ``(reconstruction (R', B, ...), mu (R', B, L))``."""
        params = {name: value.detach() for name, value in self.params.items()}
        buffers = dict(self.buffers)
        if list(runs) != list(range(len(self.networks))):  # a subset: select its weights (a copy)
            index = torch.as_tensor(list(runs), device=self.device)
            params = {name: value[index] for name, value in params.items()}
            buffers = {name: value[index] for name, value in buffers.items()}
        self.base.eval()
        with torch.no_grad():
            reconstruction, mu, _ = vmap(self._call, in_dims=(0, 0, None, None))(params, buffers, images, ())
        return reconstruction, mu

    def finite(self) -> np.ndarray:
        """Boolean ``(R,)``: which runs' parameters are all finite."""
        with torch.no_grad():
            ok = torch.stack([torch.isfinite(value).flatten(1).all(1) for value in self.params.values()]).all(0)
        return ok.cpu().numpy()

    def write_back(self) -> None:
        """Copy each run's trained parameters and buffers into its network."""
        with torch.no_grad():
            for r, network in enumerate(self.networks):
                state = {name: value[r].detach() for name, value in (self.params | self.buffers).items()}
                network.load_state_dict(state)

    def _draws(self, batch: int, *, encoder_only: bool) -> tuple[torch.Tensor, ...]:
        per_run = [network.draws(batch, generator=generator, encoder_only=encoder_only, device=self.device)
                   for network, generator in zip(self.networks, self.generators)]
        return tuple(torch.stack(parts) for parts in zip(*per_run))

    def _call(self, params, buffers, images, draws):
        return functional_call(self.base, (params, buffers), (images, list(draws) or None))

    def _encode(self, params, buffers, images, draws):
        return functional_call(self.base, (params, buffers), (images, list(draws)), {"encode_only": True})[0]

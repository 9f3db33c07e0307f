"""The reference convolutional VAE student for driving-scene reconstruction: :class:`ReferenceVAE`.

The reference study's VAE adapts an earlier implementation (the repository the CARLA scenes come
from, ``autoencoder/encoder.py``, ``decoder.py``, ``vae.py``). The two descriptions agree on the
channel ladder and differ in details; this model takes:

=============================  =========================================================  ==========
part                           choice                                                     from
=============================  =========================================================  ==========
encoder channels               3 -> 32 -> 64 -> 128 -> 256, decoder the mirror            both
kernels, strides, padding      32: k4 s2; 64: k3 s2 p1; 128: k4 s2; 256: k3 s2            original
                               (80 x 160 -> 39 x 79 -> 20 x 40 -> 9 x 19 -> 4 x 9)
activation                     LeakyReLU after every convolution and hidden linear layer  original
batch normalization            after the 64- and 256-channel convolutions (the latter is  original
                               the seed's "last encoder convolution"); these two          (+ seed)
                               convolutions have no bias (batch normalization removes it)
fully connected                one hidden layer of 1024 each way                          both
                               (9 * 4 * 256 -> 1024 -> mu, log sigma; latent -> 1024 ->
                               9 * 4 * 256)
dropout                        0.1 after every convolution and hidden linear layer        seed
                               (not after the outputs: mu, log sigma, the image)
latent width                   the brain embedding's (64 EEG channels in the reference)   seed
decoder                        transposed convolutions, sigmoid output in [0, 1]          original
loss                           summed squared error + KL (:func:`vae_loss`)               original
optimiser                      Adam, lr 1e-4, batches of 32 (the scene training's         original
                               defaults)
=============================  =========================================================  ==========

Two small departures, both documented where they live: the KL term is the analytic
``KL(N(mu, sigma) || N(0, 1))`` (the original's ``sigma^2 + mu^2 - log sigma - 1/2`` has its
minimum at ``sigma = 1/sqrt(2)``), and the task loss is divided by the number of pixel values so
that alpha means the same as for the GRU (Adam is invariant to that scale, so at alpha 0 the
optimisation is the original's). The image size is free: each transposed convolution gets the
output padding that gives back its encoder layer's input size.

**The aligned layer is the latent mean** ``mu`` (``align_layer = "mu"``): the brain latent transfer
loss pulls ``mu`` of a participant's frame toward that frame's EEG embedding.

Randomness is explicit, so that R runs trained at once (:mod:`b2m_neuro.models.stacked_vae`) draw
exactly what each would draw alone: :meth:`ReferenceVAE.draws` makes the dropout masks and the
reparameterization noise of one batch from a ``torch.Generator``, and :meth:`ReferenceVAE.forward`
takes them. Without draws, a training-mode forward draws them from torch's global generator (an
ordinary ``nn.Module``); in eval mode there is no dropout and ``z = mu``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from b2m_neuro.errors import TrainingError

__all__ = ["ReferenceVAE", "vae_loss", "REFERENCE_IMAGE_SIZE"]

#: Height and width of the reference scenes (CARLA, 160 x 80 pixels).
REFERENCE_IMAGE_SIZE = (80, 160)
# per encoder convolution: (kernel, stride, padding, batch normalization)
_CONVS = ((4, 2, 0, False), (3, 2, 1, True), (4, 2, 0, False), (3, 2, 0, True))


class ReferenceVAE(nn.Module):
    """The reference convolutional VAE (see the module docstring for which choice is whose).

    Parameters
    ----------
    n_inputs
        Image channels (3: RGB); the registry's input width.
    latent_dim
        Width of the latent (and of the brain embedding it is aligned to).
    image_size
        ``(height, width)`` of the images.
    channels
        Channels of the four encoder convolutions (the decoder mirrors them); smaller ones make a
        fast model for tests.
    hidden
        Width of the hidden fully connected layer.
    dropout
        Dropout probability after every convolution and hidden linear layer.

    Examples
    --------
    >>> vae = ReferenceVAE(3, 64).eval()
    >>> reconstruction, mu, log_sigma = vae(torch.rand(2, 3, 80, 160))
    >>> tuple(reconstruction.shape), tuple(mu.shape)
    ((2, 3, 80, 160), (2, 64))
    """

    align_layer = "mu"

    def __init__(self, n_inputs: int = 3, latent_dim: int = 64, *, image_size: Sequence[int] = REFERENCE_IMAGE_SIZE,
                 channels: Sequence[int] = (32, 64, 128, 256), hidden: int = 1024, dropout: float = 0.1) -> None:
        super().__init__()
        self.image_size = tuple(int(n) for n in image_size)
        self.channels = tuple(int(c) for c in channels)
        self.dropout = float(dropout)
        if len(self.image_size) != 2 or len(self.channels) != len(_CONVS) or not 0 <= self.dropout < 1:
            raise TrainingError(f"image_size must be (height, width), channels {len(_CONVS)} widths and dropout in [0, 1); "
                                f"got {image_size}, {channels}, {dropout}", field="model options",
                                fix="e.g. image_size=(80, 160), channels=(32, 64, 128, 256), dropout=0.1")
        sizes = [self.image_size]
        for kernel, stride, padding, _ in _CONVS:
            sizes.append(tuple((n + 2 * padding - kernel) // stride + 1 for n in sizes[-1]))
        if min(sizes[-1]) < 1:
            raise TrainingError(f"images of {self.image_size[0]} x {self.image_size[1]} pixels are too small for "
                                f"four stride-2 convolutions", field="image_size", fix="use images of at least 32 x 32 pixels")
        self.code_shape = (self.channels[-1], *sizes[-1])
        flat = self.channels[-1] * sizes[-1][0] * sizes[-1][1]
        widths = (int(n_inputs), *self.channels)
        self.encoder = nn.ModuleList()
        for (kernel, stride, padding, norm), c_in, c_out in zip(_CONVS, widths[:-1], widths[1:]):
            convolution = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=not norm)
            normalization = [nn.BatchNorm2d(c_out)] if norm else []
            self.encoder.append(nn.Sequential(convolution, *normalization, nn.LeakyReLU()))
        self.encoder_linear = nn.Sequential(nn.Linear(flat, hidden), nn.LeakyReLU())
        self.mu = nn.Linear(hidden, latent_dim)
        self.log_sigma = nn.Linear(hidden, latent_dim)
        self.decoder_linear = nn.ModuleList([nn.Sequential(nn.Linear(latent_dim, hidden), nn.LeakyReLU()),
                                             nn.Sequential(nn.Linear(hidden, flat), nn.LeakyReLU())])
        self.decoder = nn.ModuleList()
        steps = list(zip(_CONVS, widths[1:], widths[:-1], sizes[:-1], sizes[1:]))[::-1]
        for (kernel, stride, padding, _), c_in, c_out, size_in, size_out in steps:
            output_padding = tuple(big - ((small - 1) * stride - 2 * padding + kernel) for big, small in zip(size_in, size_out))
            convolution = nn.ConvTranspose2d(c_in, c_out, kernel, stride=stride, padding=padding,
                                             output_padding=output_padding)
            self.decoder.append(nn.Sequential(convolution, nn.LeakyReLU()))
        self.decoder[-1][-1] = nn.Sigmoid()
        # the output shape of every layer followed by dropout: encoder convolutions, encoder hidden
        # layer, the two decoder linear layers, the decoder's transposed convolutions but the last
        self._dropout_shapes = ([(c, *s) for c, s in zip(self.channels, sizes[1:])] + [(hidden,)]
                                + [(hidden,), (flat,)] + [(c, *s) for c, s in zip(self.channels[-2::-1], sizes[-2:0:-1])])

    @property
    def latent_dim(self) -> int:
        return self.mu.out_features

    @property
    def activation_values(self) -> int:
        """Values of the hidden layers' outputs per image (what sets the memory a training pass needs)."""
        return sum(math.prod(shape) for shape in self._dropout_shapes)

    def stacking_key(self) -> tuple | None:
        """The architecture (channels in, latent, image size, channels, hidden): networks with equal
        keys are trained as one group (:class:`~b2m_neuro.models.stacked_vae.StackedVAEs`); ``None``
        for a subclass, which may compute something else."""
        if type(self) is not ReferenceVAE:
            return None
        return (self.encoder[0][0].in_channels, self.latent_dim, self.image_size, self.channels,
                self.encoder_linear[0].out_features)

    def draws(self, batch: int, *, generator: torch.Generator | None = None, encoder_only: bool = False,
              device: torch.device | str | None = None) -> list[torch.Tensor]:
        """The random draws of one training batch: the dropout masks (scaled keep masks, in the order
        of the layers) and, unless ``encoder_only``, the reparameterization noise ``(batch, latent)``."""
        device = device or self.mu.weight.device
        shapes = self._dropout_shapes[: len(self.channels) + 1] if encoder_only else self._dropout_shapes
        keep = 1.0 - self.dropout
        masks = [(torch.rand((batch, *shape), generator=generator, device=device) < keep).float() / keep
                 for shape in shapes]
        return masks if encoder_only else [*masks, torch.randn(batch, self.latent_dim, generator=generator, device=device)]

    def encode(self, images: torch.Tensor, draws: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``images (batch, channels, height, width)`` in [0, 1] -> ``mu, log_sigma (batch, latent)``.

        ``draws``: the encoder's dropout masks (:meth:`draws` with ``encoder_only=True``, or the full
        draws); ``None``: from the global generator when training, none in eval mode.
        """
        if draws is None and self.training and self.dropout:
            draws = self.draws(images.shape[0], encoder_only=True, device=images.device)
        masks = iter(draws or ())
        x = images
        for layer in self.encoder:
            x = _masked(layer(x), masks)
        x = _masked(self.encoder_linear(x.flatten(1)), masks)
        return self.mu(x), self.log_sigma(x)

    def decode(self, z: torch.Tensor, draws: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        """``z (batch, latent)`` -> images ``(batch, channels, height, width)`` in [0, 1]; ``draws``:
        the decoder's dropout masks (none: no dropout)."""
        masks = iter(draws)
        x = z
        for layer in self.decoder_linear:
            x = _masked(layer(x), masks)
        x = x.view(-1, *self.code_shape)
        for layer in self.decoder[:-1]:
            x = _masked(layer(x), masks)
        return self.decoder[-1](x)

    def forward(self, images: torch.Tensor, draws: Sequence[torch.Tensor] | None = None, *, encode_only: bool = False
                ) -> tuple[torch.Tensor, ...]:
        """Reconstruct ``images``: returns ``(reconstruction, mu, log_sigma)``.

        Training mode samples ``z = mu + sigma * noise``, eval mode uses ``z = mu`` without dropout.
        ``encode_only``: return :meth:`encode`'s ``(mu, log_sigma)`` (``draws``: the encoder's).
        """
        if encode_only:
            return self.encode(images, draws)
        if draws is None and self.training:
            draws = self.draws(images.shape[0], device=images.device)
        n_encoder = len(self.channels) + 1
        mu, log_sigma = self.encode(images, draws[:n_encoder] if draws else ())
        if draws:
            z = mu + log_sigma.exp() * draws[-1]
            return self.decode(z, draws[n_encoder:-1]), mu, log_sigma
        return self.decode(mu), mu, log_sigma


def _masked(x: torch.Tensor, masks) -> torch.Tensor:
    mask = next(masks, None)
    return x if mask is None else x * mask


def vae_loss(images: torch.Tensor, reconstruction: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The VAE task loss per pixel value: ``(summed squared error + KL) / (batch * pixel values)``.

    Returns ``(task loss, reconstruction MSE)``; the KL is the analytic
    ``0.5 * sum(sigma^2 + mu^2 - 1 - 2 log sigma)`` over the batch and the latent.

    Examples
    --------
    >>> images = torch.full((1, 3, 2, 2), 0.5)
    >>> task, mse = vae_loss(images, images, torch.zeros(1, 4), torch.zeros(1, 4))
    >>> float(task), float(mse)
    (0.0, 0.0)
    """
    values = images.numel()
    squared = ((reconstruction - images) ** 2).sum()
    kl = 0.5 * ((2 * log_sigma).exp() + mu ** 2 - 1 - 2 * log_sigma).sum()
    return (squared + kl) / values, squared.detach() / values

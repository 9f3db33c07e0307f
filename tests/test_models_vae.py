"""The reference conv VAE: shapes and a forward/backward pass at reference size, explicit randomness, registry."""

import pytest
import torch

from b2m_neuro.errors import TrainingError
from b2m_neuro.models import get_model
from b2m_neuro.models.vae import REFERENCE_IMAGE_SIZE, ReferenceVAE, vae_loss

SMALL = dict(channels=(4, 8, 8, 16), hidden=32)


def test_reference_size_shapes_and_backward():
    torch.manual_seed(0)
    vae = get_model("vae", n_inputs=3, latent_dim=64)
    assert isinstance(vae, ReferenceVAE) and vae.align_layer == "mu"
    assert vae.code_shape == (256, 4, 9)  # the original's 9 * 4 * 256 code
    assert vae.encoder_linear[0].in_features == 9 * 4 * 256 and vae.encoder_linear[0].out_features == 1024
    assert [layer[0].out_channels for layer in vae.encoder] == [32, 64, 128, 256]
    assert [layer[0].out_channels for layer in vae.decoder] == [128, 64, 32, 3]
    assert [isinstance(layer[1], torch.nn.BatchNorm2d) for layer in vae.encoder] == [False, True, False, True]
    images = torch.rand(2, 3, *REFERENCE_IMAGE_SIZE)
    reconstruction, mu, log_sigma = vae(images)
    assert reconstruction.shape == images.shape and mu.shape == log_sigma.shape == (2, 64)
    assert 0 <= float(reconstruction.detach().min()) and float(reconstruction.detach().max()) <= 1
    task, mse = vae_loss(images, reconstruction, mu, log_sigma)
    task.backward()
    task = task.detach()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in vae.parameters())
    assert task.item() > mse.item() > 0  # the KL is positive for a random encoder


def test_other_image_sizes_reconstruct_to_their_own_size():
    vae = ReferenceVAE(1, 5, image_size=(37, 50), **SMALL).eval()
    reconstruction, mu, _ = vae(torch.rand(3, 1, 37, 50))
    assert reconstruction.shape == (3, 1, 37, 50) and mu.shape == (3, 5)


def test_explicit_draws_reproduce_a_training_pass_and_eval_is_deterministic():
    vae = ReferenceVAE(3, 6, image_size=(40, 60), **SMALL)
    images = torch.rand(4, 3, 40, 60)
    draws = vae.draws(4, generator=torch.Generator().manual_seed(1))
    again = vae.draws(4, generator=torch.Generator().manual_seed(1))
    first, second = vae(images, draws), vae(images, again)
    assert torch.equal(first[0], second[0])
    other = vae(images, vae.draws(4, generator=torch.Generator().manual_seed(2)))
    assert not torch.allclose(first[0], other[0])
    vae.eval()
    assert torch.equal(vae(images)[1], vae.encode(images)[0])  # eval: z = mu, no dropout


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    images = torch.rand(2, 3, 4, 4)
    zero = torch.zeros(2, 3)
    assert float(vae_loss(images, images, zero, zero)[0]) == 0.0
    assert float(vae_loss(images, images, zero + 1, zero)[0]) == pytest.approx(0.5 * 6 / images.numel())


def test_bad_options_are_training_errors():
    with pytest.raises(TrainingError, match="too small"):
        ReferenceVAE(3, 4, image_size=(10, 10))
    with pytest.raises(TrainingError, match="channels"):
        ReferenceVAE(3, 4, channels=(8, 16))

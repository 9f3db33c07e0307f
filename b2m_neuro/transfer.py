"""The Brain2Model losses: brain contrastive transfer, brain latent transfer, and their mix.

With ``B_brain`` and ``B_model`` two ``(b, d)`` tensors whose row ``i`` is the same time point seen by
the brain and by the student's aligned layer:

- total loss (paper eq. 1): ``L = (1 - alpha) * L_task + alpha * L_transfer``;
- contrastive transfer (InfoNCE, paper eq. 2), for when brain and model saw exactly the same input:
  ``S = B_brain @ B_model.T / tau`` and ``L_i = -log(exp(S_ii) / sum_j exp(S_ij))``;
- latent transfer (paper eq. 3), for similar but not identical inputs: the mean squared error
  between the model embedding and the brain embedding.

**Default reduction: the mean over the b anchors.** The paper sums ``L_i`` (``reduction="sum"``,
kept for reproduction). A sum grows with the number of paired rows, so with one episode per batch
the weight that a given ``alpha`` gives the brain would change with episode length and with
``time_stride``; the mean keeps ``alpha``'s meaning independent of sequence length (chance level is
``log(b)`` per anchor), which is what makes alphas comparable across derivatives and strides.
The default similarity is the paper's raw dot product; ``normalize=True`` uses cosine similarity
(rows scaled to unit length), which bounds ``S`` to ``[-1/tau, 1/tau]``.

torch is imported inside the functions so that ``import b2m_neuro`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from b2m_neuro.errors import TrainingError

if TYPE_CHECKING:
    import torch

__all__ = ["contrastive_loss", "latent_loss", "total_loss", "transfer_loss", "check_alpha", "TRANSFER_LOSSES",
           "CONTRASTIVE_LOSSES"]

Reduction = Literal["mean", "sum"]


def contrastive_loss(
    brain: torch.Tensor,
    model: torch.Tensor,
    *,
    temperature: float = 0.1,
    reduction: Reduction = "mean",
    normalize: bool = False,
    negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Brain contrastive transfer loss (InfoNCE, paper eq. 2).

    Parameters
    ----------
    brain, model
        ``(b, d)`` tensors; row ``i`` of each is the same paired example (the positive pair),
        every other row of ``model`` is a negative for anchor ``brain[i]``.
    temperature
        ``tau`` in ``S = brain @ model.T / tau``.
    reduction
        ``"mean"`` (default, see the module docstring) or ``"sum"`` (the paper's equation).
    normalize
        Scale rows to unit length first (cosine similarity) instead of the raw dot product.
    negatives
        Optional ``(n, d)`` brain rows of other examples (other episodes). Then the anchors are the
        model rows: ``S = model @ [brain; negatives].T / tau`` and ``L_i`` asks ``model[i]`` to
        pick ``brain[i]`` among the ``b`` brain rows and the ``n`` negatives.

    Returns
    -------
    torch.Tensor
        A scalar.

    Examples
    --------
    >>> import torch
    >>> brain = torch.eye(2)
    >>> round(float(contrastive_loss(brain, brain, temperature=1.0)), 4)  # -log(e / (e + 1))
    0.3133
    """
    import torch

    _check_pair(brain, model)
    if temperature <= 0:
        raise TrainingError(f"the temperature must be positive, got {temperature}", field="temperature",
                            fix="pass a temperature > 0 (the reference uses 0.1)")
    anchors, candidates = brain, model
    if negatives is not None:
        if negatives.ndim != 2 or negatives.shape[1] != brain.shape[1]:
            raise TrainingError(f"negatives must be (rows, {brain.shape[1]}), got {tuple(negatives.shape)}",
                                field="negatives", fix="pass brain rows of the embedding's width")
        anchors, candidates = model, torch.cat([brain, negatives])
    if normalize:
        anchors = torch.nn.functional.normalize(anchors, dim=1)
        candidates = torch.nn.functional.normalize(candidates, dim=1)
    similarity = anchors @ candidates.T / temperature
    per_anchor = -torch.diagonal(torch.log_softmax(similarity, dim=1))
    return _reduce(per_anchor, reduction)


def latent_loss(brain: torch.Tensor, model: torch.Tensor) -> torch.Tensor:
    """Brain latent transfer loss (paper eq. 3): mean squared error over rows and dimensions.

    Examples
    --------
    >>> import torch
    >>> float(latent_loss(torch.zeros(2, 2), torch.ones(2, 2)))
    1.0
    """
    _check_pair(brain, model)
    return ((model - brain) ** 2).mean()


def total_loss(task: torch.Tensor, transfer: torch.Tensor, *, alpha: float) -> torch.Tensor:
    """The B2M objective (paper eq. 1): ``(1 - alpha) * task + alpha * transfer``."""
    check_alpha(alpha)
    return (1.0 - alpha) * task + alpha * transfer


def check_alpha(alpha: float) -> None:
    """Raise a :class:`TrainingError` unless ``0 <= alpha <= 1``."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise TrainingError(f"alpha must lie in [0, 1], got {alpha}", field="alpha",
                            fix="pass 0 for no brain guidance, 1 for brain only, e.g. 0.012 or 0.05")


# the names ``train(transfer=...)`` accepts; the contrastive ones take ``negatives``
CONTRASTIVE_LOSSES = ("contrastive", "contrastive-cosine")
TRANSFER_LOSSES = (*CONTRASTIVE_LOSSES, "latent")


def transfer_loss(name: str, brain: torch.Tensor, model: torch.Tensor, *, temperature: float,
                  reduction: Reduction, negatives: torch.Tensor | None = None) -> torch.Tensor:
    """Dispatch to the transfer loss called ``name`` (one of :data:`TRANSFER_LOSSES`); ``negatives``
    (contrastive losses only) as in :func:`contrastive_loss`."""
    if name in CONTRASTIVE_LOSSES:
        return contrastive_loss(brain, model, temperature=temperature, reduction=reduction,
                                normalize=name == "contrastive-cosine", negatives=negatives)
    if name == "latent":
        if negatives is not None:
            raise TrainingError("the latent transfer loss takes no negatives", field="negatives",
                                fix="pass negatives only with a contrastive transfer")
        return latent_loss(brain, model)
    raise TrainingError(f"unknown transfer loss {name!r}", field="transfer",
                        fix=f"choose one of {', '.join(TRANSFER_LOSSES)}")


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    raise TrainingError(f"unknown reduction {reduction!r}", field="reduction", fix="choose 'mean' or 'sum'")


def _check_pair(brain: torch.Tensor, model: torch.Tensor) -> None:
    if brain.ndim != 2 or brain.shape != model.shape:
        raise TrainingError(
            f"brain and model embeddings must be (rows, dims) tensors of one shape, got "
            f"{tuple(brain.shape)} and {tuple(model.shape)}",
            field="embedding", fix="pair each brain row with the model's aligned-layer output for the same input",
        )

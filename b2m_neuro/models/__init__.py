"""Student networks, by name: ``get_model("gru", n_inputs=4, latent_dim=7)``.

The registry maps a name to the module and class that build it; the class is imported on first
use, so this package imports no torch. Any ``torch.nn.Module`` can also be trained directly by
passing it to :func:`b2m_neuro.train` with the name of the layer to align (``align_layer=``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from b2m_neuro.errors import TrainingError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["get_model", "known_models"]

# name -> (module, class); each class takes (n_inputs, latent_dim, **options) and names its
# brain-aligned layer in the class attribute ``align_layer``.
_REGISTRY: dict[str, tuple[str, str]] = {
    "gru": ("b2m_neuro.models.gru", "ReferenceGRU"),
    "vae": ("b2m_neuro.models.vae", "ReferenceVAE"),  # n_inputs: image channels
}


def known_models() -> list[str]:
    """Names accepted by :func:`get_model`."""
    return sorted(_REGISTRY)


def get_model(name: str, *, n_inputs: int, latent_dim: int, **options: Any) -> nn.Module:
    """Build the student registered as ``name``.

    Parameters
    ----------
    name
        A registered model name (see :func:`known_models`).
    n_inputs
        Input width per time step.
    latent_dim
        Width of the brain-aligned layer (the brain embedding's width).
    **options
        Passed to the model class (for ``"gru"``: ``hidden_size``, ``dropout``, ``output_range``;
        for ``"vae"``: ``image_size``, ``channels``, ``hidden``, ``dropout``).

    Raises
    ------
    TrainingError
        If ``name`` is unknown or an option is not accepted by the model.

    Examples
    --------
    >>> model = get_model("gru", n_inputs=4, latent_dim=7, hidden_size=16)
    >>> model.align_layer
    'embedding'
    """
    if name not in _REGISTRY:
        raise TrainingError(f"unknown model {name!r}", field="model",
                            fix=f"choose one of: {', '.join(known_models())}, or pass a torch.nn.Module with align_layer=")
    module_name, class_name = _REGISTRY[name]
    model_class = getattr(importlib.import_module(module_name), class_name)
    try:
        return model_class(n_inputs, latent_dim, **options)
    except TypeError as error:
        raise TrainingError(f"model {name!r} does not accept these options: {error}", field="model options",
                            fix=f"see help({model_class.__module__}.{class_name})") from None

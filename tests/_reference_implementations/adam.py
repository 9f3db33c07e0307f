"""Adam (Kingma & Ba 2015, Algorithm 1) with L2 weight decay added to the gradient, as ``torch.optim.Adam``.

For parameters ``p``, gradient ``g`` and step ``t = 1, 2, ...``::

    g = g + weight_decay * p
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g ** 2
    p = p - lr * (m / (1 - beta1 ** t)) / (sqrt(v / (1 - beta2 ** t)) + eps)
"""

from __future__ import annotations

import torch


class ReferenceAdam:
    """Adam over a list of tensors, updated in place by :meth:`step`."""

    def __init__(self, params: list[torch.Tensor], *, lr: float, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = params
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.t = 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def step(self, grads: list[torch.Tensor]) -> None:
        beta1, beta2 = self.betas
        self.t += 1
        for i, (p, g) in enumerate(zip(self.params, grads)):
            g = g + self.weight_decay * p
            self.m[i] = beta1 * self.m[i] + (1 - beta1) * g
            self.v[i] = beta2 * self.v[i] + (1 - beta2) * g * g
            m_hat = self.m[i] / (1 - beta1 ** self.t)
            v_hat = self.v[i] / (1 - beta2 ** self.t)
            p -= self.lr * m_hat / (torch.sqrt(v_hat) + self.eps)

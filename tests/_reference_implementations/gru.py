"""One GRU layer, written from the equations in the ``torch.nn.GRU`` documentation.

For each time step t, with input ``x_t`` and previous hidden state ``h_(t-1)`` (zero at t = 0)::

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_(t-1) + b_hr)
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_(t-1) + b_hz)
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_(t-1) + b_hn))
    h_t = (1 - z_t) * n_t + z_t * h_(t-1)

``weight_ih_l0`` stacks ``(W_ir | W_iz | W_in)`` by rows, ``weight_hh_l0`` stacks
``(W_hr | W_hz | W_hn)``, and the biases likewise.
"""

from __future__ import annotations

import torch


def reference_gru(inputs: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor, bias_ih: torch.Tensor,
                  bias_hh: torch.Tensor) -> torch.Tensor:
    """The output sequence ``(batch, time, hidden)`` of a GRU on ``inputs (batch, time, inputs)``."""
    w_ir, w_iz, w_in = weight_ih.chunk(3)
    w_hr, w_hz, w_hn = weight_hh.chunk(3)
    b_ir, b_iz, b_in = bias_ih.chunk(3)
    b_hr, b_hz, b_hn = bias_hh.chunk(3)
    h = inputs.new_zeros(inputs.shape[0], weight_hh.shape[1])
    outputs = []
    for t in range(inputs.shape[1]):
        x = inputs[:, t]
        r = torch.sigmoid(x @ w_ir.T + b_ir + h @ w_hr.T + b_hr)
        z = torch.sigmoid(x @ w_iz.T + b_iz + h @ w_hz.T + b_hz)
        n = torch.tanh(x @ w_in.T + b_in + r * (h @ w_hn.T + b_hn))
        h = (1 - z) * n + z * h
        outputs.append(h)
    return torch.stack(outputs, dim=1)

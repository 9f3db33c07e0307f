"""Plain, obviously correct implementations that the fast code of b2m_neuro is tested against.

Each one is written from its published equations in the simplest form (a loop over time steps,
no fused operations, gradients left to autograd), so that it can be checked by reading it. Only
tests import them.
"""

"""Which points of a trial-aligned time axis come before the stimulus."""

from __future__ import annotations

import numpy as np


def pre_stimulus(time: np.ndarray | None, n_time: int) -> np.ndarray:
    """Boolean ``(n_time,)``: ``time < 0`` (the adapters align time to stimulus onset), or the first
    half of the axis when no time is negative or there is no numeric time (the reference layout: 100
    pre-stimulus then 100 post-stimulus points).

    Examples
    --------
    >>> pre_stimulus(np.array([-0.5, 0.5]), 2).tolist(), pre_stimulus(None, 4).tolist()
    ([True, False], [True, True, False, False])
    """
    time = np.zeros(0) if time is None else np.asarray(time)
    if np.issubdtype(time.dtype, np.number) and (time < 0).any():
        return time < 0
    return np.arange(n_time) < n_time // 2

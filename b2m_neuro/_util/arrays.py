"""Content keys of numpy arrays, to share equal task arrays between runs without comparing them."""

from __future__ import annotations

import hashlib

import numpy as np


def content_key(array: np.ndarray) -> tuple:
    """``(shape, dtype, 128-bit BLAKE2b digest of the bytes)``: equal for arrays with equal contents."""
    contiguous = np.ascontiguousarray(array)
    return contiguous.shape, contiguous.dtype.str, hashlib.blake2b(contiguous.data, digest_size=16).digest()

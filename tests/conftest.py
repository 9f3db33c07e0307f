"""Shared fixtures. Caches of pynwb, dandi, deno, mne and matplotlib go to a temporary HOME."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="b2m-test-home-"))
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
os.environ.update(
    HOME=str(_HOME),
    XDG_CACHE_HOME=str(_HOME / ".cache"),
    XDG_CONFIG_HOME=str(_HOME / ".config"),
    XDG_DATA_HOME=str(_HOME / ".local" / "share"),
    MPLCONFIGDIR=str(_HOME / ".matplotlib"),
    MPLBACKEND="Agg",
    DANDI_NO_ET="1",
    # the dandi client reads downloads in blocks of this size (default 8 MB): test files are small,
    # so a smaller block lets a connection cut mid-file leave a partial download to resume
    DANDI_MAX_CHUNK_SIZE="65536",
    MNE_DONTWRITE_HOME="true",
    DENO_DIR=str(_HOME / ".deno"),
    # one BLAS/torch thread per test process: pytest runs two processes on CI's two cores, and tiny
    # models were 10-20x slower with two threads competing per process
    OMP_NUM_THREADS="1",
    MKL_NUM_THREADS="1",
)

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Real recordings copied from the shared data folder (see tests/data/README.md)."""
    return DATA

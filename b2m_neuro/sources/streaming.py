"""Open an NWB file in place: local, or remote over HTTP range requests (fsspec + h5py + pynwb).

Only the parts of the file that are read travel, so the units and trials tables of a many-GB raw
recording can be read without downloading it.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from b2m_neuro.errors import SourceError

# bytes per range request; h5py reads small metadata blocks scattered through the file, and a block
# of this size holds many of them while keeping the overshoot on large datasets small
BLOCK_SIZE = 1 << 18


@contextlib.contextmanager
def open_nwb(location: str | os.PathLike, *, label: str | None = None) -> Iterator[Any]:
    """Yield the ``pynwb.NWBFile`` at ``location`` (a path or an http(s) URL); closed on exit.

    Raises
    ------
    SourceError
        If the URL cannot be reached or the content is not an NWB (HDF5) file.
    """
    import h5py
    import pynwb

    label = label or str(location)
    with contextlib.ExitStack() as stack:
        try:
            if str(location).startswith(("http://", "https://")):
                import fsspec

                handle = stack.enter_context(
                    fsspec.filesystem("http").open(str(location), "rb", block_size=BLOCK_SIZE, cache_type="blockcache"))
                h5file = stack.enter_context(h5py.File(handle, "r"))
            else:
                h5file = stack.enter_context(h5py.File(Path(location), "r"))
            io = stack.enter_context(pynwb.NWBHDF5IO(file=h5file, mode="r", load_namespaces=True))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                nwbfile = io.read()
        except (OSError, ValueError, KeyError) as error:
            raise SourceError(f"cannot open as NWB ({type(error).__name__}: {error})", file=label, field="url",
                              fix="check the URL or path; fetch the file without stream=True to check it") from None
        yield nwbfile

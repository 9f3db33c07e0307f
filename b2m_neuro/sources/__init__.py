"""Public archives and local folders as teacher sources: ``fetch("dandi:000004@0.220126.1852")``.

``dandi:<id>[@<version>]`` goes through the real dandi client, ``openneuro:<id>[@<snapshot>]``
through OpenNeuro's public S3 bucket (latest snapshot) or its API (a pinned snapshot), and a local
folder is taken in place. Downloads land in a cache with a manifest, so a second fetch of the same
files transfers nothing; ``stream=True`` leaves DANDI files on the archive and reads them over HTTP
range requests.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from b2m_neuro.errors import SourceError
from b2m_neuro.sources._cache import cache_root, provenance
from b2m_neuro.sources._files import Fetched, SourceFile

__all__ = ["fetch", "Fetched", "SourceFile", "provenance"]

_ARCHIVE = re.compile(r"(?P<archive>dandi|openneuro):(?P<dataset>[^@]+)(?:@(?P<version>.+))?")


def fetch(
    source: str | os.PathLike,
    *,
    include: str | Sequence[str] | None = None,
    subject: str | None = None,
    session: str | None = None,
    task: str | None = None,
    cache: str | os.PathLike | None = None,
    stream: bool = False,
    server: str | None = None,
    s3_endpoint: str | None = None,
    retries: int = 3,
    progress: bool = True,
) -> Fetched:
    """Fetch the files of a dataset version (or, with ``stream``, locate them) as a teacher source.

    Parameters
    ----------
    source
        ``"dandi:<six-digit id>[@<version>]"`` (no version: the most recent published one, else the
        draft), ``"openneuro:<ds id>[@<snapshot tag>]"`` (no tag: the latest snapshot), or a local
        folder.
    include
        Glob pattern(s) over paths inside the dataset (``"sub-P4*/*.nwb"``); ``*`` also matches
        ``/``. Default: every file.
    subject, session, task
        Keep only files of that BIDS subject / session / task (files without the entity, such as
        ``dataset_description.json``, are kept).
    cache
        Cache folder (default ``$B2M_NEURO_CACHE``, else ``$XDG_CACHE_HOME/b2m_neuro``, else
        ``~/.cache/b2m_neuro``). Files land in ``<cache>/<archive>/[<server>/]<id>/<version>/``, with
        ``<version>.manifest.json`` beside that folder (source, version, and per file its path,
        sha256, size, URL and the archive's identity of its content).
    stream
        DANDI only: download nothing; each file's ``url`` is read over HTTP range requests by
        :meth:`SourceFile.open_nwb` or :func:`b2m_neuro.load_spikes`.
    server
        DANDI: an instance name (``"dandi"``, ``"dandi-sandbox"``...) or an API URL. OpenNeuro: the
        GraphQL API URL (default ``https://openneuro.org/crn/graphql``).
    s3_endpoint
        OpenNeuro: the S3 endpoint holding the ``openneuro.org`` bucket (default AWS).
    retries
        Attempts to reach the server before giving up, at least 1 (the clients retry transfers themselves).
    progress
        Show a progress bar while downloading.

    Returns
    -------
    Fetched
        The resolved source and version, the local root folder and the selected files.

    Raises
    ------
    SourceError
        For a malformed source, an unknown dataset or version, a selection that matches nothing, a
        server that cannot be reached after ``retries`` attempts, a failed download, or a file whose
        digest does not match the archive's (the file is removed).

    Examples
    --------
    >>> fetched = b2m_neuro.fetch("dandi:000004@0.220126.1852", include="sub-P42*/*.nwb")  # doctest: +SKIP
    >>> rates = b2m_neuro.load_spikes(fetched.files[0], "coarse")  # doctest: +SKIP
    """
    from b2m_neuro.sources._select import as_patterns

    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 1:
        raise SourceError(f"retries must be a whole number >= 1, got {retries!r}", field="retries",
                          fix="pass retries=1 to try the server once, or more to try again after failures")
    patterns = as_patterns(include)
    entities = {"subject": subject, "session": session, "task": task}
    match = _ARCHIVE.fullmatch(str(source))
    if match is None:
        if stream:
            raise SourceError("stream=True needs a DANDI source", field="stream", fix="pass dandi:<id>[@<version>]")
        from b2m_neuro.sources.local import fetch_local

        return fetch_local(Path(source), patterns=patterns, entities=entities)
    archive, dataset, version = match["archive"], match["dataset"], match["version"]
    if archive == "dandi":
        from b2m_neuro.sources.dandi import fetch_dandi

        if not re.fullmatch(r"\d{6}", dataset):
            raise SourceError(f"{dataset!r} is not a dandiset identifier", field="source",
                              fix="DANDI identifiers have six digits: dandi:000004")
        return fetch_dandi(dataset, version, patterns=patterns, entities=entities, cache=cache_root(cache),
                           stream=stream, server=server, retries=retries, progress=progress)
    if stream:
        raise SourceError("stream=True reads NWB files from DANDI; OpenNeuro datasets are downloaded",
                          field="stream", fix="drop stream=True")
    from b2m_neuro.sources.openneuro import fetch_openneuro

    if not re.fullmatch(r"ds\d{6}", dataset):
        raise SourceError(f"{dataset!r} is not an OpenNeuro accession number", field="source",
                          fix="OpenNeuro datasets are named ds + six digits: openneuro:ds000117")
    return fetch_openneuro(dataset, version, patterns=patterns, entities=entities, cache=cache_root(cache),
                           server=server, s3_endpoint=s3_endpoint, retries=retries, progress=progress)

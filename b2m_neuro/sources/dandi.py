"""DANDI dandisets through the real dandi client: list assets by glob, download with digest checks.

``dandi.download.download`` verifies each file's ``dandi:dandi-etag`` while it streams and resumes
an interrupted file from its ``.dandidownload/`` folder with a Range request; files already in the
cache with the archive's digest are not asked for again.
"""

from __future__ import annotations

import ast
import dataclasses
import contextlib
import io
import logging
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlparse

from b2m_neuro._util.progress import progress_bar
from b2m_neuro.errors import SourceError
from b2m_neuro.sources._cache import Manifest
from b2m_neuro.sources._files import Fetched, SourceFile
from b2m_neuro.sources._http import check_reachable
from b2m_neuro.sources._select import selected

DEFAULT_SERVER = "dandi"


def fetch_dandi(dandiset_id: str, version: str | None, *, patterns: Sequence[str], entities: dict, cache: Path,
                stream: bool, server: str | None, retries: int, progress: bool) -> Fetched:
    """Fetch (or, with ``stream``, locate) the assets of one dandiset version; see :func:`b2m_neuro.fetch`."""
    from dandi.dandiapi import DandiAPIClient

    api_url = _api_url(server or DEFAULT_SERVER)
    check_reachable(f"{api_url}/info/", what="DANDI server", retries=retries)
    with DandiAPIClient(api_url) as client, _dandi_errors():
        dandiset = _dandiset(client, dandiset_id, version, api_url)
        version = dandiset.version_id
        source = f"dandi:{dandiset_id}@{version}"
        every = list(dandiset.get_assets())
        assets = [a for a in every if selected(a.path, patterns, **entities)]
        if not assets:
            some = ", ".join(a.path for a in every[:5]) or "(the version has no assets)"
            raise SourceError(f"no asset of {source} matches the selection", file=api_url, field="include",
                              fix=f"choose other include globs or filters; some paths: {some}")
        files = [_source_file(asset, source, api_url) for asset in assets]
    if stream:
        return Fetched(source, version, None, files)
    root = cache / "dandi" / _server_folder(api_url) / dandiset_id / version
    manifest = Manifest(root, source=source, version=version, server=api_url)
    missing = [(file, asset) for file, asset in zip(files, assets) if not manifest.cached(file.path, file.size, file.sha256)]
    with progress_bar(description=f"fetch {source}", total=sum(f.size for f, _ in missing) or 1,
                      progress=progress and bool(missing)) as update:
        done = 0
        for file, asset in missing:
            _download(asset, root / file.path)
            manifest.add(file, identity=file.sha256)
            done += file.size
            update(done)
    return Fetched(source, version, root, [dataclasses.replace(f, local=root / f.path) for f in files])


def _api_url(server: str) -> str:
    from dandi.consts import known_instances

    if server in known_instances:
        return known_instances[server].api.rstrip("/")
    if server.startswith(("http://", "https://")):
        return server.rstrip("/")
    raise SourceError(f"unknown DANDI instance {server!r}", field="server",
                      fix=f"give an instance name ({', '.join(sorted(known_instances))}) or an API URL")


def _server_folder(api_url: str) -> str:
    from dandi.consts import known_instances

    for name, instance in known_instances.items():
        if instance.api.rstrip("/") == api_url:
            return name
    return urlparse(api_url).netloc.replace(":", "_")


def _dandiset(client, dandiset_id: str, version: str | None, api_url: str):
    from dandi.exceptions import NotFoundError

    try:
        found = client.get_dandiset(dandiset_id)
        versions = [v.identifier for v in found.get_versions()]
    except NotFoundError:
        raise SourceError(f"dandiset {dandiset_id} does not exist on this server", file=api_url, field="dandiset",
                          fix="check the six-digit identifier (https://dandiarchive.org/dandiset/<id>)") from None
    if version is None:
        published = found.most_recent_published_version
        version = published.identifier if published is not None else "draft"
    if version not in versions:
        raise SourceError(f"dandiset {dandiset_id} has no version {version!r}", file=api_url, field="version",
                          fix=f"choose one of: {', '.join(versions)}")
    return found.for_version(version)


def _source_file(asset, source: str, api_url: str) -> SourceFile:
    """The asset as a SourceFile, from its metadata alone (one request): the archive's sha256 and the
    blob URL the archive's download link redirects to (the download link if none is listed)."""
    metadata = asset.get_raw_metadata()
    sha = metadata.get("digest", {}).get("dandi:sha2-256", "")
    blobs = [url for url in metadata.get("contentUrl", []) if not url.startswith(api_url)]
    return SourceFile(asset.path, asset.size, sha, None, blobs[0] if blobs else asset.download_url, source)


def _download(asset, target: Path) -> None:
    """Download one asset to ``target`` with the dandi client; SourceError (and no file) if it fails."""
    from dandi.download import DownloadExisting, DownloadFormat, download

    target.parent.mkdir(parents=True, exist_ok=True)
    with _dandi_errors() as errors:
        try:
            download(asset.download_url, target.parent, existing=DownloadExisting.OVERWRITE, format=DownloadFormat.DEBUG,
                     get_metadata=False)
        except RuntimeError:
            pass
    if errors or not target.is_file():
        target.unlink(missing_ok=True)
        first = errors[0] if errors else "the file did not arrive"
        if "downloaded" in first and "!=" in first:
            shutil.rmtree(target.with_name(target.name + ".dandidownload"), ignore_errors=True)
            raise SourceError(f"the downloaded file does not match the archive's digest ({first}); it was removed",
                              file=asset.path, field="digest",
                              fix="fetch again; if it happens again, the archive's copy may be damaged: tell its maintainers")
        raise SourceError(f"download failed after the dandi client's retries ({first})", file=asset.path,
                          field="download", fix="check the network connection and fetch again: it resumes where it stopped")


@contextlib.contextmanager
def _dandi_errors() -> Iterator[list[str]]:
    """Collect the errors the dandi client reports: the messages of its error records (printed to
    stdout in its debug format, which is kept out of the user's output), then its logged errors."""
    records: list[str] = []
    logged: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                logged.append(record.getMessage())

    handler = Collect()
    logger = logging.getLogger("dandi")
    logger.addHandler(handler)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            yield records
    finally:
        logger.removeHandler(handler)
        for line in out.getvalue().splitlines():
            if "'status': 'error'" in line:
                records.append(str(ast.literal_eval(line).get("message", line)))
        records.extend(logged)

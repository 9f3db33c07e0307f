"""OpenNeuro datasets: the latest snapshot from the public S3 bucket, a pinned one through the API.

The ``openneuro.org`` bucket holds each dataset's latest snapshot under ``<ds id>/`` (listed
anonymously with s3fs); an older snapshot's files are named, with their S3 version ids, by the
OpenNeuro GraphQL API (``snapshot(datasetId, tag) { files(tree) { ... urls } }``). Either way only the
selected files are downloaded, over plain HTTPS with requests. openneuro-py is not used: it pulls
urllib3-future, which replaces the urllib3 that requests and the dandi client rely on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from b2m_neuro._util.files import atomic_path, digests
from b2m_neuro._util.progress import progress_bar
from b2m_neuro.errors import SourceError
from b2m_neuro.sources._cache import Manifest
from b2m_neuro.sources._files import Fetched, SourceFile
from b2m_neuro.sources._http import check_reachable
from b2m_neuro.sources._select import selected

DEFAULT_API = "https://openneuro.org/crn/graphql"
DEFAULT_S3 = "https://s3.amazonaws.com"
BUCKET = "openneuro.org"

_SNAPSHOT_FILES = """
query snapshotFiles($datasetId: ID!, $tag: String!, $tree: String) {
  snapshot(datasetId: $datasetId, tag: $tag) {
    id
    files(tree: $tree) { id filename size directory urls }
  }
}
"""


@dataclass(frozen=True)
class _Remote:
    path: str
    size: int
    identity: str  # what changes when the content does: the S3 version id or ETag
    url: str
    md5: str = ""  # an S3 ETag of a single-part upload is the content's MD5


def fetch_openneuro(dataset: str, tag: str | None, *, patterns: Sequence[str], entities: dict, cache: Path,
                    server: str | None, s3_endpoint: str | None, retries: int, progress: bool) -> Fetched:
    """Download the selected files of one OpenNeuro snapshot; see :func:`b2m_neuro.fetch`."""
    s3_endpoint = (s3_endpoint or DEFAULT_S3).rstrip("/")
    if tag is None:
        check_reachable(f"{s3_endpoint}/{BUCKET}", what="OpenNeuro S3 bucket", retries=retries)
        remote = _latest_files(dataset, s3_endpoint)
    else:
        api = server or DEFAULT_API
        check_reachable(api, what="OpenNeuro API", retries=retries)
        remote = _snapshot_files(dataset, tag, api)
    version = tag or "latest"
    source = f"openneuro:{dataset}@{version}"
    chosen = [r for r in remote if selected(r.path, patterns, **entities)]
    if not chosen:
        some = ", ".join(r.path for r in remote[:5])
        raise SourceError(f"no file of {source} matches the selection", field="include",
                          fix=f"choose other include globs or filters; some paths: {some}")
    folder = "" if s3_endpoint == DEFAULT_S3 else urlparse(s3_endpoint).netloc.replace(":", "_")
    root = cache / "openneuro" / folder / dataset / version
    manifest = Manifest(root, source=source, version=version, server=s3_endpoint)
    missing = [r for r in chosen if not manifest.cached(r.path, r.size, r.identity)]
    with progress_bar(description=f"fetch {source}", total=sum(r.size for r in missing) or 1,
                      progress=progress and bool(missing)) as update:
        done = 0
        for item in missing:
            sha = _download(item, root / item.path, retries=retries)
            manifest.add(SourceFile(item.path, item.size, sha, root / item.path, item.url, source), identity=item.identity)
            done += item.size
            update(done)
    files = [SourceFile(r.path, r.size, manifest.files[r.path]["sha256"], root / r.path, r.url, source) for r in chosen]
    return Fetched(source, version, root, files)


def _latest_files(dataset: str, s3_endpoint: str) -> list[_Remote]:
    import s3fs

    fs = s3fs.S3FileSystem(anon=True, endpoint_url=s3_endpoint, version_aware=True)
    prefix = f"{BUCKET}/{dataset}/"
    try:
        listing = fs.find(prefix, detail=True)
    except OSError as error:
        raise SourceError(f"cannot list the bucket ({error})", file=f"s3://{prefix}", field="s3_endpoint",
                          fix="check the network connection and the endpoint, then fetch again") from None
    if not listing:
        raise SourceError(f"OpenNeuro has no dataset {dataset}", file=f"s3://{prefix}", field="source",
                          fix="check the accession number at https://openneuro.org/datasets/<id>")
    remote = []
    for key, info in sorted(listing.items()):
        path = key.removeprefix(prefix)
        version_id = info.get("VersionId")
        query = f"?versionId={version_id}" if version_id and version_id != "null" else ""
        etag = info.get("ETag", "").strip('"')
        remote.append(_Remote(path, int(info["size"]), version_id or etag, f"{s3_endpoint}/{key}{query}",
                              "" if "-" in etag else etag))
    return remote


def _snapshot_files(dataset: str, tag: str, api: str) -> list[_Remote]:
    remote: list[_Remote] = []
    trees: list[tuple[str | None, str]] = [(None, "")]
    while trees:
        tree, folder = trees.pop()
        for entry in _snapshot_listing(dataset, tag, api, tree):
            path = f"{folder}{entry['filename']}"
            if entry.get("directory"):
                trees.append((entry["id"], f"{path}/"))
            else:
                url = entry["urls"][0]
                remote.append(_Remote(path, int(entry["size"]), url, url))
    return sorted(remote, key=lambda r: r.path)


def _snapshot_listing(dataset: str, tag: str, api: str, tree: str | None) -> list[dict]:
    import requests

    try:
        response = requests.post(api, json={"query": _SNAPSHOT_FILES,
                                            "variables": {"datasetId": dataset, "tag": tag, "tree": tree}}, timeout=60)
        response.raise_for_status()
        answer = response.json()
    except (requests.RequestException, ValueError) as error:
        raise SourceError(f"the OpenNeuro API did not answer ({error})", file=api, field="server",
                          fix="check the network connection and the API address, then fetch again") from None
    snapshot = (answer.get("data") or {}).get("snapshot")
    if snapshot is None:
        reason = "; ".join(e.get("message", "") for e in answer.get("errors", [])) or "not found"
        raise SourceError(f"OpenNeuro has no snapshot {tag!r} of {dataset} ({reason})", file=api, field="version",
                          fix=f"see the snapshots listed at https://openneuro.org/datasets/{dataset}, or drop "
                              "@<tag> for the latest")
    return snapshot["files"]


def _download(item: _Remote, target: Path, *, retries: int) -> str:
    """GET ``item`` into ``target`` (atomically), resuming with Range after a cut, and return its
    sha256; SourceError if the size is still wrong after ``retries`` attempts."""
    import requests

    target.parent.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    with atomic_path(target) as partial:
        for _ in range(retries):
            have = partial.stat().st_size if partial.exists() else 0
            try:
                with requests.get(item.url, stream=True, timeout=60,
                                  headers={"Range": f"bytes={have}-"} if have else None) as response:
                    response.raise_for_status()
                    with partial.open("ab" if response.status_code == 206 else "wb") as out:
                        for block in response.iter_content(1 << 16):
                            out.write(block)
            except requests.RequestException as error:
                last = error
            if partial.exists() and partial.stat().st_size == item.size:
                return _checked_sha256(partial, item)
        raise SourceError(f"download failed after {retries} attempts ({last or 'the size differs from the listing'})",
                          file=item.path, field="download", fix="check the network connection and fetch again")


def _checked_sha256(path: Path, item: _Remote) -> str:
    """The file's sha256, after checking its MD5 against the bucket's (when the bucket has one), in one read."""
    found = digests(path, ("md5", "sha256"))
    if item.md5 and found["md5"] != item.md5:
        raise SourceError(f"the downloaded file does not match the bucket's MD5 ({found['md5']} != {item.md5}); "
                          "it was removed", file=item.path, field="digest",
                          fix="fetch again; if it happens again, tell the OpenNeuro maintainers")
    return found["sha256"]

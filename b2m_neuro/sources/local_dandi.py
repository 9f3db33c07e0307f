"""A DANDI archive on 127.0.0.1, to try :func:`b2m_neuro.fetch` offline (tutorials) and to test it.

It serves the part of the DANDI REST API the real dandi client uses.

It answers what ``dandi.download.download`` and ``dandi.dandiapi.DandiAPIClient`` ask when they list
and download assets: ``/server-info``, ``/api/info/``, dandisets, versions (with ``info/``), asset
listings filtered by ``glob`` or ``path`` (paginated), asset metadata with the ``dandi:dandi-etag``
and ``dandi:sha2-256`` digests, download redirects (302) to blobs, and blobs served with HTTP Range
(206). It counts the bytes each blob sends, so tests can tell what was transferred, and can inject
faults: a connection cut mid-file, a corrupted blob.

Shaped after the responses of api.dandiarchive.org (see the dandi-archive OpenAPI description);
only the fields the client reads are filled.

Examples
--------
>>> with LocalDandiArchive() as archive:  # doctest: +SKIP
...     archive.add("000999", "draft", {"sub-01/sub-01_ecephys.nwb": Path("session.nwb")})
...     fetched = b2m_neuro.fetch("dandi:000999", server=archive.api_url)
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

_WHEN = "2024-01-02T03:04:05.000000Z"


@dataclass
class Asset:
    path: str
    content: bytes
    asset_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    blob_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def listing(self) -> dict:
        return {"asset_id": self.asset_id, "blob": self.blob_id, "zarr": None, "path": self.path,
                "size": len(self.content), "created": _WHEN, "modified": _WHEN}

    def metadata(self, server_url: str) -> dict:
        from dandischema.digests.dandietag import DandiETag

        etag = DandiETag(len(self.content))
        for part in etag.get_parts():
            etag.update(self.content[part.offset:part.offset + part.size], part)
        return {
            "id": f"dandiasset:{self.asset_id}", "identifier": self.asset_id, "path": self.path,
            "contentSize": len(self.content), "encodingFormat": "application/x-nwb",
            "digest": {"dandi:dandi-etag": etag.as_str(),
                       "dandi:sha2-256": hashlib.sha256(self.content).hexdigest()},
            "blobDateModified": _WHEN, "dateModified": _WHEN,
            "contentUrl": [f"{server_url}/api/assets/{self.asset_id}/download/", f"{server_url}/blobs/{self.blob_id}"],
        }


@dataclass
class Dandiset:
    identifier: str
    versions: dict[str, list[Asset]]  # version id ("draft" or "0.YYMMDD.HHMM") -> assets

    def version(self, version_id: str) -> dict:
        assets = self.versions[version_id]
        return {"version": version_id, "name": f"Test dandiset {self.identifier}", "asset_count": len(assets),
                "size": sum(len(a.content) for a in assets), "created": _WHEN, "modified": _WHEN,
                "status": "Valid" if version_id == "draft" else "Published"}

    def record(self) -> dict:
        published = sorted(v for v in self.versions if v != "draft")
        return {"identifier": self.identifier, "created": _WHEN, "modified": _WHEN,
                "contact_person": "Test, Person", "embargo_status": "OPEN",
                "draft_version": self.version("draft") if "draft" in self.versions else self.version(published[-1]),
                "most_recent_published_version": self.version(published[-1]) if published else None}


class LocalDandiArchive:
    """A DANDI archive served on 127.0.0.1 from a thread; a context manager that stops it on exit.

    ``add(dandiset_id, version, {path: file})`` publishes files; ``api_url`` is what a client is
    pointed at. ``blob_bytes_sent`` counts the bytes of blob content sent so far; ``ranges`` lists the
    Range headers blob requests carried. ``cut_next_blob_after(n)`` makes the next blob response stop
    after n bytes (the connection is closed); ``corrupt(path)`` serves that asset's blob with one
    byte changed, while its metadata keeps the true digests.
    """

    def __init__(self) -> None:
        self.dandisets: dict[str, Dandiset] = {}
        self.blob_bytes_sent = 0
        self.ranges: list[str | None] = []
        self.requests: list[str] = []
        self._cut_after: int | None = None
        self._corrupt: set[str] = set()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def add(self, dandiset_id: str, version: str, files: dict[str, Path | bytes]) -> None:
        assets = [Asset(path, data if isinstance(data, bytes) else Path(data).read_bytes())
                  for path, data in files.items()]
        dandiset = self.dandisets.setdefault(dandiset_id, Dandiset(dandiset_id, {}))
        dandiset.versions[version] = assets

    def cut_next_blob_after(self, n_bytes: int) -> None:
        self._cut_after = n_bytes

    def corrupt(self, path: str) -> None:
        self._corrupt.add(path)

    def start(self) -> LocalDandiArchive:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalDandiArchive:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- lookups used by the handler -------------------------------------------------------------
    def asset(self, asset_id: str) -> Asset | None:
        for dandiset in self.dandisets.values():
            for assets in dandiset.versions.values():
                for asset in assets:
                    if asset_id in (asset.asset_id, asset.blob_id):
                        return asset
        return None

    def blob(self, asset: Asset) -> bytes:
        if asset.path not in self._corrupt:
            return asset.content
        return bytes([asset.content[0] ^ 0xFF]) + asset.content[1:]

    def take_cut(self) -> int | None:
        with self._lock:
            cut, self._cut_after = self._cut_after, None
        return cut

    def count(self, n_bytes: int) -> None:
        with self._lock:
            self.blob_bytes_sent += n_bytes


def _page(results: list[dict]) -> dict:
    return {"count": len(results), "next": None, "previous": None, "results": results}


def _handler(archive: LocalDandiArchive) -> type[BaseHTTPRequestHandler]:
    version_re = r"/api/dandisets/(?P<d>\d{6})/versions/(?P<v>[^/]+)"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._route(head=True)

        def do_GET(self) -> None:
            self._route(head=False)

        def _route(self, *, head: bool) -> None:
            url = urlparse(self.path)
            path, query = unquote(url.path), parse_qs(url.query)
            archive.requests.append(path)
            if path in ("/server-info", "/api/info/", "/api/info"):
                return self._json(self._server_info())
            if match := re.fullmatch(r"/blobs/(?P<b>[^/]+)", path):
                return self._blob(match["b"], head=head)
            if match := re.fullmatch(r"/api/(?:dandisets/\d{6}/versions/[^/]+/)?assets/(?P<a>[^/]+)/download/?", path):
                return self._redirect(match["a"])
            if match := re.fullmatch(r"/api/dandisets/(?P<d>\d{6})/?", path):
                dandiset = archive.dandisets.get(match["d"])
                return self._json(dandiset.record()) if dandiset else self._missing("Not found.")
            if match := re.fullmatch(r"/api/dandisets/(?P<d>\d{6})/versions/?", path):
                dandiset = archive.dandisets.get(match["d"])
                if dandiset is None:
                    return self._missing("Not found.")
                return self._json(_page([dandiset.version(v) for v in sorted(dandiset.versions)]))
            if match := re.fullmatch(version_re + r"/(?P<rest>.*)", path):
                return self._version(match["d"], match["v"], match["rest"].strip("/"), query)
            return self._missing("Not found.")

        def _server_info(self) -> dict:
            return {"version": "0.0.0-test", "cli-minimal-version": "0.60.0", "cli-bad-versions": [],
                    "services": {"api": {"url": archive.api_url}, "webui": {"url": archive.url}}}

        def _version(self, dandiset_id: str, version: str, rest: str, query: dict) -> None:
            dandiset = archive.dandisets.get(dandiset_id)
            if dandiset is None or version not in dandiset.versions:
                return self._missing("Not found.")
            assets = dandiset.versions[version]
            if rest == "":
                return self._json({"identifier": f"DANDI:{dandiset_id}", "name": dandiset.version(version)["name"],
                                   "version": version, "schemaVersion": "0.6.4"})
            if rest == "info":
                return self._json({**dandiset.version(version), "dandiset": dandiset.record(),
                                   "asset_validation_errors": [], "version_validation_errors": [],
                                   "metadata": {}, "contact_person": "Test, Person"})
            if rest == "assets":
                chosen = sorted(assets, key=lambda a: a.path)
                if "glob" in query:
                    chosen = [a for a in chosen if fnmatch.fnmatchcase(a.path, query["glob"][0])]
                if "path" in query:
                    chosen = [a for a in chosen if a.path.startswith(query["path"][0])]
                return self._json(_page([a.listing() for a in chosen]))
            if match := re.fullmatch(r"assets/(?P<a>[^/]+)(?:/info)?", rest):
                asset = next((a for a in assets if a.asset_id == match["a"]), None)
                if asset is None:
                    return self._missing("Not found.")
                metadata = asset.metadata(archive.url)
                if rest.endswith("/info"):
                    return self._json({**asset.listing(), "metadata": metadata})
                return self._json(metadata)
            return self._missing("Not found.")

        def _redirect(self, asset_id: str) -> None:
            asset = archive.asset(asset_id)
            if asset is None:
                return self._missing("Not found.")
            self.send_response(302)
            self.send_header("Location", f"{archive.url}/blobs/{asset.blob_id}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _blob(self, blob_id: str, *, head: bool) -> None:
            asset = archive.asset(blob_id)
            if asset is None:
                return self._missing("NoSuchKey")
            content = archive.blob(asset)
            header = self.headers.get("Range")
            if not head:
                archive.ranges.append(header)
            start, end = 0, len(content) - 1
            if header and (match := re.fullmatch(r"bytes=(\d+)-(\d*)", header.strip())):
                start = int(match[1])
                end = min(int(match[2]), end) if match[2] else end
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(content)}")
            else:
                self.send_response(200)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("ETag", f'"{hashlib.md5(content).hexdigest()}"')
            self.end_headers()
            if head:
                return
            body = content[start:end + 1]
            cut = archive.take_cut()
            if cut is not None:
                body = body[:cut]
            self.wfile.write(body)
            self.wfile.flush()
            archive.count(len(body))
            if cut is not None:
                self.close_connection = True

        def _json(self, value: dict) -> None:
            body = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _missing(self, detail: str) -> None:
            body = json.dumps({"detail": detail}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler

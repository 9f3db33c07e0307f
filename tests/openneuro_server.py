"""OpenNeuro on 127.0.0.1 for the tests: moto's S3 server holding an ``openneuro.org`` bucket laid out
like OpenNeuro's, and a stand-in for the GraphQL query that names a snapshot's files.

As on OpenNeuro, the bucket is versioned and public-read and holds each dataset's latest snapshot
under ``<ds id>/``; an older snapshot's files are reached through the URLs (with S3 ``versionId``)
that the API lists, one folder (``tree``) at a time.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BUCKET = "openneuro.org"


def bids_files(folder: Path) -> dict[str, bytes]:
    """Every file of a dataset folder by its relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class LocalOpenNeuro:
    """moto S3 + a GraphQL stand-in; ``publish(ds, tag, files)`` makes a snapshot the latest one."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._api = ThreadingHTTPServer(("127.0.0.1", 0), _api_handler(self))
        self._api.daemon_threads = True
        self.snapshots: dict[tuple[str, str], dict[str, tuple[int, str]]] = {}  # -> path: (size, url)
        self.queries = 0

    @property
    def s3_endpoint(self) -> str:
        host, port = self._s3.get_host_and_port()
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        host, port = self._api.server_address[:2]
        return f"http://{host}:{port}/crn/graphql"

    def __enter__(self) -> LocalOpenNeuro:
        self._s3.start()
        threading.Thread(target=self._api.serve_forever, daemon=True).start()
        self._client().create_bucket(Bucket=BUCKET)
        self._client().put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        return self

    def __exit__(self, *exc) -> None:
        self._api.shutdown()
        self._api.server_close()
        self._s3.stop()

    def _client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def publish(self, dataset: str, tag: str, files: dict[str, bytes]) -> None:
        client = self._client()
        listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{dataset}/").get("Contents", [])
        for stale in {o["Key"] for o in listed} - {f"{dataset}/{p}" for p in files}:
            client.delete_object(Bucket=BUCKET, Key=stale)  # the bucket holds only the latest snapshot
        snapshot = {}
        for path, content in files.items():
            key = f"{dataset}/{path}"
            put = client.put_object(Bucket=BUCKET, Key=key, Body=content, ACL="public-read")
            snapshot[path] = (len(content), f"{self.s3_endpoint}/{BUCKET}/{key}?versionId={put['VersionId']}")
        self.snapshots[(dataset, tag)] = snapshot

    def listing(self, dataset: str, tag: str, tree: str | None) -> list[dict] | None:
        """The entries of one folder of a snapshot, as the API's ``files(tree:)`` gives them."""
        snapshot = self.snapshots.get((dataset, tag))
        if snapshot is None:
            return None
        folder = "" if tree is None else next(
            (d for d in _folders(snapshot) if _tree_id(d) == tree), None)
        if folder is None:
            return []
        entries, seen = [], set()
        for path, (size, url) in sorted(snapshot.items()):
            if not path.startswith(folder):
                continue
            head, _, rest = path[len(folder):].partition("/")
            if rest:
                if head not in seen:
                    seen.add(head)
                    entries.append({"id": _tree_id(folder + head + "/"), "filename": head, "size": 0,
                                    "directory": True, "urls": []})
            else:
                entries.append({"id": hashlib.sha1(url.encode()).hexdigest(), "filename": head, "size": size,
                                "directory": False, "urls": [url]})
        return entries


def _folders(snapshot: dict) -> set[str]:
    folders = set()
    for path in snapshot:
        parts = path.split("/")[:-1]
        folders.update("/".join(parts[:i]) + "/" for i in range(1, len(parts) + 1))
    return folders


def _tree_id(folder: str) -> str:
    return hashlib.sha1(folder.encode()).hexdigest()


def _api_handler(server: LocalOpenNeuro) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # the API answers a plain GET (its playground page)
            self._send(200, b"<html>GraphQL</html>")

        def do_POST(self) -> None:
            server.queries += 1
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            variables = request.get("variables", {})
            files = server.listing(variables["datasetId"], variables["tag"], variables.get("tree"))
            if files is None:
                answer = {"errors": [{"message": f"snapshot {variables['tag']} not found"}], "data": {"snapshot": None}}
            else:
                answer = {"data": {"snapshot": {"id": f"{variables['datasetId']}:{variables['tag']}", "files": files}}}
            self._send(200, json.dumps(answer).encode())

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler

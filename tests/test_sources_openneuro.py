"""fetch from OpenNeuro (moto's S3 server + a GraphQL stand-in on 127.0.0.1), local folders, and the
HTTP stack the clients share."""

from __future__ import annotations

import importlib.metadata

import pytest

from b2m_neuro import SourceError, fetch
from b2m_neuro.derivative import bids_validator_issues
from openneuro_server import LocalOpenNeuro, bids_files

DATASET = "ds000001"


def _second_subject(files: dict[str, bytes]) -> dict[str, bytes]:
    """tiny_bids with its subject also present as sub-02 (names and the references inside text files)."""
    copies = {}
    for path, content in files.items():
        if path.startswith("sub-01/"):
            is_text = not path.endswith(".eeg")
            copies[path.replace("sub-01", "sub-02")] = content.replace(b"sub-01", b"sub-02") if is_text else content
    participants = files["participants.tsv"]
    row = participants.splitlines()[1].replace(b"sub-01", b"sub-02")
    return {**files, **copies, "participants.tsv": participants.rstrip(b"\n") + b"\n" + row + b"\n"}


@pytest.fixture(scope="module")
def openneuro(data_dir):
    first = bids_files(data_dir / "tiny_bids")
    with LocalOpenNeuro() as server:
        server.publish(DATASET, "1.0.0", first)
        server.publish(DATASET, "1.0.1", {**_second_subject(first), "README": b"Snapshot 1.0.1: a second subject.\n"})
        yield server, first


def _fetch(server, source, tmp_path, **options):
    return fetch(source, s3_endpoint=server.s3_endpoint, server=server.api_url, cache=tmp_path, progress=False,
                 **options)


def test_latest_snapshot_from_the_bucket_only_the_files_needed(openneuro, tmp_path):
    server, _ = openneuro
    fetched = _fetch(server, f"openneuro:{DATASET}", tmp_path, subject="02")
    assert fetched.source == f"openneuro:{DATASET}@latest"
    paths = [f.path for f in fetched]
    assert not any(p.startswith("sub-01") for p in paths) and "sub-02/sub-02_sessions.tsv" in paths
    assert {"dataset_description.json", "participants.tsv", "README"} <= set(paths)
    assert (fetched.root / "README").read_text().startswith("Snapshot 1.0.1")
    assert [i for i in bids_validator_issues(fetched.root) if i["severity"] == "error"] == []


def test_a_pinned_snapshot_through_the_api(openneuro, tmp_path):
    server, first = openneuro
    fetched = _fetch(server, f"openneuro:{DATASET}@1.0.0", tmp_path, task="rest")
    assert fetched.version == "1.0.0"
    assert sorted(f.path for f in fetched) == sorted(first)  # every file of 1.0.0 carries task-rest or none
    assert all((fetched.root / p).read_bytes() == content for p, content in first.items())


def test_a_second_fetch_transfers_nothing(openneuro, tmp_path, monkeypatch):
    server, _ = openneuro
    fetched = _fetch(server, f"openneuro:{DATASET}@1.0.0", tmp_path, include="sub-01/*/eeg/*.vhdr")
    stamp = fetched.files[0].local.stat().st_mtime_ns

    def no_download(*args, **kwargs):
        raise AssertionError("a cached file was downloaded again")

    monkeypatch.setattr("b2m_neuro.sources.openneuro._download", no_download)
    again = _fetch(server, f"openneuro:{DATASET}@1.0.0", tmp_path, include="sub-01/*/eeg/*.vhdr")
    assert again.files == fetched.files and again.files[0].local.stat().st_mtime_ns == stamp


@pytest.mark.parametrize(("source", "field", "message"), [
    ("openneuro:ds999999", "source", "no dataset ds999999"),
    (f"openneuro:{DATASET}@9.9.9", "version", "no snapshot '9.9.9'"),
    ("openneuro:117", "source", "accession number"),
])
def test_unknown_dataset_or_snapshot_is_a_clear_error(openneuro, tmp_path, source, field, message):
    server, _ = openneuro
    with pytest.raises(SourceError, match=message) as error:
        _fetch(server, source, tmp_path)
    assert error.value.field == field


def test_streaming_is_refused_for_openneuro(openneuro, tmp_path):
    server, _ = openneuro
    with pytest.raises(SourceError, match="DANDI"):
        _fetch(server, f"openneuro:{DATASET}", tmp_path, stream=True)


def test_a_local_folder_through_the_same_interface(data_dir):
    fetched = fetch(data_dir / "tiny_bids", include="*.vhdr")
    assert fetched.version == "local" and [f.name for f in fetched] == ["sub-01_ses-eeg_task-rest_eeg.vhdr"]
    assert fetched.files[0].local.parent.name == "eeg" and len(fetched.files[0].sha256) == 64
    with pytest.raises(SourceError, match="does not exist"):
        fetch(data_dir / "no_such_folder")


def test_no_client_replaced_urllib3():
    """openneuro-py pulls urllib3-future, which installs itself as ``urllib3``; requests and the dandi
    client need the real one. Nothing in this environment may bring it in."""
    installed = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
    assert "urllib3-future" not in installed and "urllib3" in installed
    import urllib3

    assert importlib.metadata.version("urllib3") == urllib3.__version__

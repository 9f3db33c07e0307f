"""fetch from DANDI through the real dandi client, against a DANDI archive on 127.0.0.1 (b2m_neuro/sources/local_dandi.py)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import xarray as xr

from b2m_neuro import SourceError, fetch, load_spikes
from b2m_neuro._util.files import sha256
from b2m_neuro.cli import main
from b2m_neuro.convert import spikes_to_nwb
from b2m_neuro.simulate import memory_session
from b2m_neuro.sources import SourceFile, provenance
from b2m_neuro.sources._cache import manifest_path
from b2m_neuro.sources.local_dandi import LocalDandiArchive

VERSION = "0.220126.1852"
LARGE_PATH = "sub-P1/sub-P1_ses-1_ecephys.nwb"
SMALL_PATH = "sub-P2/sub-P2_ses-1_ecephys.nwb"


def _with_raw_voltage(path, n_samples: int) -> None:
    """Add a raw voltage series to an NWB file, as acquisition files on DANDI carry (most of their bytes)."""
    from pynwb import NWBHDF5IO, TimeSeries

    with NWBHDF5IO(str(path), "a") as io:
        nwbfile = io.read()
        voltage = np.random.default_rng(0).standard_normal((n_samples, 4)).astype(np.float32)
        nwbfile.add_acquisition(TimeSeries(name="raw_voltage", data=voltage, unit="volts", rate=32_000.0))
        io.write(nwbfile)


@pytest.fixture(scope="module")
def nwb_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dandi_files")
    large = spikes_to_nwb(memory_session(seed=1, n_units=5, n_trials=24), folder / "large.nwb")
    _with_raw_voltage(large, 1_000_000)  # 16 MB of samples the teacher never reads
    small = spikes_to_nwb(memory_session(seed=2, n_units=4, n_trials=20), folder / "small.nwb")
    return {LARGE_PATH: large, SMALL_PATH: small}


@pytest.fixture()
def archive(nwb_files):
    with LocalDandiArchive() as server:
        server.add("000004", VERSION, nwb_files)
        server.add("000004", "draft", nwb_files)
        yield server


def test_fetch_downloads_checks_and_records_then_transfers_nothing_again(archive, nwb_files, tmp_path):
    fetched = fetch("dandi:000004", include="sub-P2/*.nwb", server=archive.api_url, cache=tmp_path, progress=False)
    assert fetched.source == f"dandi:000004@{VERSION}"  # no version: the most recent published one
    assert [f.path for f in fetched] == [SMALL_PATH]
    local = fetched.files[0].local
    assert local.read_bytes() == nwb_files[SMALL_PATH].read_bytes()
    assert fetched.files[0].sha256 == sha256(local)
    manifest = json.loads(manifest_path(fetched.root).read_text())
    assert manifest["source"] == fetched.source and manifest["version"] == VERSION
    assert manifest["files"][SMALL_PATH]["sha256"] == sha256(local)
    sent = archive.blob_bytes_sent
    assert sent == local.stat().st_size

    asked = len(archive.requests)
    again = fetch("dandi:000004", include="sub-P2/*.nwb", server=archive.api_url, cache=tmp_path, progress=False)
    assert again.files == fetched.files and archive.blob_bytes_sent == sent  # nothing transferred
    per_asset = [path for path in archive.requests[asked:] if "/assets/" in path and not path.endswith("/assets/")]
    assert len(per_asset) == 1 and not per_asset[0].endswith("/download/")  # its metadata, once
    assert fetched.files[0].url.startswith(f"{archive.url}/blobs/")  # the blob, as the archive lists it

    both = fetch(f"dandi:000004@{VERSION}", server=archive.api_url, cache=tmp_path, progress=False)
    assert [f.path for f in both] == [LARGE_PATH, SMALL_PATH]
    assert archive.blob_bytes_sent == sent + nwb_files[LARGE_PATH].stat().st_size  # only the new file


def test_a_download_cut_mid_file_resumes_with_a_range_request(archive, nwb_files, tmp_path, monkeypatch):
    monkeypatch.setattr("dandi.download.random.random", lambda: 0.0)  # the client's retry wait: none
    size = nwb_files[LARGE_PATH].stat().st_size
    archive.cut_next_blob_after(3 * size // 4)
    fetched = fetch("dandi:000004", include=LARGE_PATH, server=archive.api_url, cache=tmp_path, progress=False)
    assert fetched.files[0].local.read_bytes() == nwb_files[LARGE_PATH].read_bytes()
    resumed_at = [int(r.split("=")[1].rstrip("-")) for r in archive.ranges if r]
    assert len(resumed_at) == 1 and 0 < resumed_at[0] <= 3 * size // 4
    assert archive.blob_bytes_sent < 2 * size  # the second request took up where the first stopped


def test_a_wrong_digest_is_rejected_and_the_file_removed(archive, tmp_path):
    archive.corrupt(SMALL_PATH)
    with pytest.raises(SourceError, match="does not match the archive's digest") as error:
        fetch("dandi:000004", include="sub-P2/*", server=archive.api_url, cache=tmp_path, progress=False)
    assert error.value.file == SMALL_PATH
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no file, no manifest entry


@pytest.mark.parametrize(("source", "field", "message"), [
    ("dandi:999999", "dandiset", "does not exist"),
    ("dandi:000004@0.999999.9999", "version", f"choose one of: {VERSION}, draft"),
    ("dandi:4", "source", "six digits"),
])
def test_unknown_dandiset_or_version_is_a_clear_error(archive, tmp_path, source, field, message):
    with pytest.raises(SourceError, match=message) as error:
        fetch(source, server=archive.api_url, cache=tmp_path, progress=False)
    assert error.value.field == field


def test_a_selection_matching_nothing_names_some_paths(archive, tmp_path):
    with pytest.raises(SourceError, match="sub-P1/sub-P1_ses-1_ecephys.nwb") as error:
        fetch("dandi:000004", include="sub-P9*", server=archive.api_url, cache=tmp_path, progress=False)
    assert error.value.field == "include"


@pytest.mark.parametrize("retries", [0, -1, 1.5])
def test_retries_below_one_are_refused_before_any_request(archive, tmp_path, retries):
    asked = len(archive.requests)
    with pytest.raises(SourceError, match="retries must be") as error:
        fetch("dandi:000004", server=archive.api_url, cache=tmp_path, retries=retries, progress=False)
    assert error.value.field == "retries" and len(archive.requests) == asked


def test_a_server_that_went_away_is_a_clear_error_after_retries(archive, tmp_path):
    url = archive.api_url
    archive.stop()
    start = time.perf_counter()
    with pytest.raises(SourceError, match="after 2 attempts") as error:
        fetch("dandi:000004", server=url, cache=tmp_path, retries=2, progress=False)
    assert error.value.field == "server" and time.perf_counter() - start < 10


def test_streaming_reads_the_teacher_without_the_file(archive, nwb_files, tmp_path):
    remote = fetch("dandi:000004", include=LARGE_PATH, stream=True, server=archive.api_url, cache=tmp_path)
    assert remote.root is None and remote.files[0].local is None and not list(tmp_path.iterdir())
    streamed = load_spikes(remote.files[0], "coarse", progress=False)
    size = nwb_files[LARGE_PATH].stat().st_size
    assert archive.blob_bytes_sent < size / 4  # units and trials only, not the raw voltage
    downloaded = load_spikes(nwb_files[LARGE_PATH], "coarse", progress=False)
    xr.testing.assert_identical(streamed.drop_attrs(), downloaded.drop_attrs())
    assert streamed.attrs["source_file"] == remote.files[0].url
    assert streamed.attrs["source_sha256"] == downloaded.attrs["source_sha256"]


def test_a_fetched_file_goes_straight_to_the_adapter(archive, nwb_files, tmp_path):
    fetched = fetch("dandi:000004", include=SMALL_PATH, server=archive.api_url, cache=tmp_path, progress=False)
    assert isinstance(fetched.files[0], SourceFile)
    rates = load_spikes(fetched.files[0], "coarse", progress=False)
    xr.testing.assert_identical(rates.drop_attrs(), load_spikes(nwb_files[SMALL_PATH], "coarse", progress=False).drop_attrs())


def test_a_fetched_file_keeps_its_archive_provenance(archive, nwb_files, tmp_path):
    fetched = fetch("dandi:000004", include=SMALL_PATH, server=archive.api_url, cache=tmp_path, progress=False)
    record = {"URL": fetched.files[0].url, "Version": f"dandi:000004@{VERSION}", "sha256": fetched.files[0].sha256}
    assert fetched.files[0].record() == record
    assert provenance(fetched.files[0].local) == record  # found through the manifest beside the folder
    assert provenance(nwb_files[SMALL_PATH]) is None


def test_cli_fetch_prints_the_files_and_errors_without_traceback(archive, tmp_path, capsys):
    assert main(["fetch", "dandi:000004", "--include", "sub-P2/*", "--server", archive.api_url,
                 "--cache", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"dandi:000004@{VERSION}" in out and SMALL_PATH in out
    assert main(["fetch", "dandi:999999", "--server", archive.api_url, "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "dandiset 999999 does not exist" in err and "Traceback" not in err

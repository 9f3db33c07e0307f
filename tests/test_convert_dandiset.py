"""write_dandiset: DANDI layout, checked by the real ``dandi validate`` with the network switched off."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
from spike_data import make_recording

from b2m_neuro.convert import dandi_path, write_dandiset
from b2m_neuro.errors import ConversionError

NO_NETWORK = """\
import socket

def _refuse(*args, **kwargs):
    raise OSError("network access is switched off in the b2m_neuro tests")

socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
"""


def dandi_validate(roots, tmp_path) -> list[dict]:
    """Run the ``dandi validate`` command offline (sockets refuse to connect); return its JSON results."""
    offline = tmp_path / "offline"
    offline.mkdir(exist_ok=True)
    (offline / "sitecustomize.py").write_text(NO_NETWORK)
    env = {**os.environ, "PYTHONPATH": str(offline), "DANDI_NO_ET": "1"}
    done = subprocess.run(
        [sys.executable, "-c", "from dandi.cli.command import main; main()", "validate", "--format", "json",
         *map(str, roots)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert "network access is switched off" not in done.stderr
    return json.loads(done.stdout)


def write_broken_dandiset(root):
    """A dandiset whose file has no subject, to show that the validator really looks at the files."""
    from pynwb import NWBHDF5IO, NWBFile

    (root / "sub-X").mkdir(parents=True)
    (root / "dandiset.yaml").write_text('name: "broken"\n')
    nwbfile = NWBFile(session_description="no subject", identifier="x",
                      session_start_time=make_recording().session_start_time)
    with NWBHDF5IO(str(root / "sub-X" / "sub-X_ecephys.nwb"), "w") as io:
        io.write(nwbfile)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """Two simulated sessions written by write_dandiset, and a broken dandiset, validated in one dandi run."""
    from b2m_neuro.simulate import memory_sessions

    folder = tmp_path_factory.mktemp("dandisets")
    root, broken = folder / "simulated", folder / "broken"
    paths = write_dandiset(memory_sessions(2, seed=5, n_trials=40, progress=False), root, progress=False)
    write_broken_dandiset(broken)
    return root, paths, broken, dandi_validate([root, broken], folder)


def test_dandi_layout(simulated):
    root, paths, _, _ = simulated
    assert [p.relative_to(root).as_posix() for p in paths] == [
        "sub-S01/sub-S01_ses-01_ecephys.nwb", "sub-S02/sub-S02_ses-02_ecephys.nwb"]
    assert (root / "dandiset.yaml").read_text().startswith('name: "b2m_neuro sessions"')
    assert sorted(os.listdir(root)) == ["dandiset.yaml", "sub-S01", "sub-S02"]


def test_dandi_validate_finds_no_errors_offline(simulated):
    root, _, broken, results = simulated
    ours = [r for r in results if r["path"] is None or r["path"].startswith(str(root))]
    assert [r for r in ours if r["severity"] in ("ERROR", "CRITICAL")] == []
    # ... while the same run does flag the broken dandiset: the validator really looked.
    flagged = [r for r in results if r["severity"] == "ERROR" and str(r["path"]).startswith(str(broken))]
    assert [r["id"] for r in flagged] == ["NWBI.check_subject_exists"]


def test_dandi_path_sanitizes_labels():
    recording = dataclasses.replace(make_recording(subject_id="P_01"), session_id="2024-05-01")
    assert dandi_path(recording).as_posix() == "sub-P01/sub-P01_ses-20240501_ecephys.nwb"


def test_duplicate_sessions_are_refused_before_writing(tmp_path):
    root = tmp_path / "ds"
    with pytest.raises(ConversionError, match="several sessions would be written"):
        write_dandiset([make_recording(), make_recording()], root, progress=False)
    assert not root.exists()


def test_one_bad_session_writes_nothing(tmp_path):
    bad = dataclasses.replace(make_recording(session_id="2"), brain_area=["hippocampus", "", "a", "b"])
    root = tmp_path / "ds"
    with pytest.raises(ConversionError, match="no brain region") as caught:
        write_dandiset([make_recording(), bad], root, progress=False)
    assert caught.value.file.endswith("sub-P01_ses-2_ecephys.nwb")
    assert not root.exists()


def test_existing_session_needs_overwrite(tmp_path):
    root = tmp_path / "ds"
    first = write_dandiset([make_recording()], root, progress=False)[0]
    before = first.stat().st_mtime_ns
    with pytest.raises(ConversionError, match="already exists"):
        write_dandiset([make_recording(session_id="2"), make_recording()], root, progress=False)
    assert sorted(os.listdir(root / "sub-P01")) == ["sub-P01_ses-1_ecephys.nwb"]  # ses-2 not written either
    write_dandiset([make_recording()], root, overwrite=True, progress=False)
    assert first.stat().st_mtime_ns != before

"""EEG + frames -> BIDS with mne-bids, checked by bids-validator-deno; de-identification; bad input."""

import datetime as dt
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import mne
import mne_bids
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from b2m_neuro.convert import eeg_to_bids
from b2m_neuro.convert.eeg import read_frame_file, write_frame_file
from b2m_neuro.errors import ConversionError
from b2m_neuro.simulate import driving_session

VALIDATOR = Path(sys.executable).parent / "bids-validator-deno"


def validate(root: Path) -> list[dict]:
    """Run bids-validator-deno on ``root``; return its issues of severity 'error'."""
    result = subprocess.run([str(VALIDATOR), "--json", str(root)], capture_output=True, text=True, timeout=120)
    issues = json.loads(result.stdout)["issues"]["issues"]
    return [issue for issue in issues if issue["severity"] == "error"]


@pytest.fixture(scope="module")
def session():
    return driving_session(seed=5, duration_s=12, sfreq=128)


@pytest.fixture(scope="module")
def converted(session, tmp_path_factory):
    root = tmp_path_factory.mktemp("bids") / "driving"
    path = eeg_to_bids(
        session.raw,
        frame_times=session.frame_times,
        frames=session.frames,
        behaviour=session.behaviour,
        bids_root=root,
        subject="01",
        session="a",
        progress=False,
    )
    return root, path


def _bids_path(root, **entities):
    return mne_bids.BIDSPath(root=root, datatype="eeg", suffix="eeg", extension=".vhdr", task="driving", **entities)


def test_layout_and_validator_reports_no_errors(converted):
    root, path = converted
    assert path == root / "sub-01/ses-a/eeg/sub-01_ses-a_task-driving_eeg.vhdr" and path.is_file()
    for name in ("channels.tsv", "events.tsv", "events.json", "eeg.json", "recording-behaviour_physio.tsv.gz"):
        assert (path.parent / f"sub-01_ses-a_task-driving_{name}").is_file(), name
    assert (path.parent / "sub-01_ses-a_space-CapTrak_electrodes.tsv").is_file()
    description = json.loads((root / "dataset_description.json").read_text())
    assert description["DatasetType"] == "raw" and description["GeneratedBy"][0]["Name"] == "b2m_neuro"
    assert "stim_file" in (root / "README").read_text()
    assert validate(root) == []


def test_eeg_samples_round_trip(converted, session):
    root, _ = converted
    raw = mne_bids.read_raw_bids(_bids_path(root, subject="01", session="a"), verbose="error")
    assert raw.ch_names == session.raw.ch_names and raw.info["sfreq"] == session.raw.info["sfreq"]
    np.testing.assert_allclose(raw.get_data(), session.raw.get_data(), rtol=1e-6, atol=1e-12)
    electrodes = pd.read_csv(root / "sub-01/ses-a/eeg/sub-01_ses-a_space-CapTrak_electrodes.tsv", sep="\t")
    assert len(electrodes) == 64 and electrodes[["x", "y", "z"]].notna().all().all()


def test_one_event_per_frame_pointing_at_its_png(converted, session):
    root, path = converted
    events = pd.read_csv(path.parent / "sub-01_ses-a_task-driving_events.tsv", sep="\t")
    frames = events[events["trial_type"] == "frame"]
    assert len(frames) == len(session.frame_times)
    np.testing.assert_allclose(frames["onset"], session.frame_times, atol=1 / 128)
    for i in (0, 17, len(frames) - 1):
        image = np.asarray(Image.open(root / "stimuli" / frames["stim_file"].iloc[i]))
        assert np.array_equal(image, session.frames[i])
    sidecar = json.loads((path.parent / "sub-01_ses-a_task-driving_events.json").read_text())
    assert "stim_file" in sidecar and "frame" in sidecar["trial_type"]["Levels"]


def test_behaviour_is_physio(converted, session):
    _, path = converted
    stem = path.parent / "sub-01_ses-a_task-driving_recording-behaviour_physio"
    sidecar = json.loads(stem.with_suffix(".json").read_text())
    assert sidecar["Columns"] == ["steering", "throttle", "brake"]
    assert sidecar["SamplingFrequency"] == pytest.approx(8.0) and sidecar["StartTime"] == pytest.approx(session.frame_times[0])
    with gzip.open(stem.with_suffix(".tsv.gz"), "rt") as handle:
        table = pd.read_csv(handle, sep="\t", header=None)
    np.testing.assert_allclose(table.to_numpy(), session.behaviour[["steering", "throttle", "brake"]].to_numpy(), atol=1e-5)


def test_deidentified_by_default(converted, session):
    root, path = converted
    for file in root.rglob("*"):
        if file.is_file() and file.suffix in (".tsv", ".json", ".vhdr", ".vmrk", "") :
            text = file.read_text(errors="ignore")
            assert "Driver" not in text and "SIMDRIVER" not in text and "1990" not in text, file
    assert json.loads(path.with_suffix(".json").read_text())["DateShiftDays"] == -728
    raw = mne_bids.read_raw_bids(_bids_path(root, subject="01", session="a"), verbose="error")
    assert raw.info["meas_date"].date() == session.raw.info["meas_date"].date() - dt.timedelta(days=728)
    assert not (raw.info.get("subject_info") or {}).get("last_name")


def test_deidentify_false_keeps_the_date(session, tmp_path):
    path = eeg_to_bids(session.raw, frame_times=session.frame_times, bids_root=tmp_path / "b", subject="02",
                       deidentify=False, progress=False)
    raw = mne_bids.read_raw_bids(_bids_path(tmp_path / "b", subject="02"), verbose="error")
    assert raw.info["meas_date"].date() == session.raw.info["meas_date"].date()
    assert "DateShiftDays" not in json.loads(path.with_suffix(".json").read_text())


def test_real_brainvision_recording_validates(data_dir, tmp_path):
    root = tmp_path / "bv"
    frame_times = np.arange(0.5, 7.5, 0.125)
    frames = np.random.default_rng(0).integers(0, 255, (frame_times.size, 8, 16, 3), dtype=np.uint8)
    path = eeg_to_bids(data_dir / "brainvision_test/test.vhdr", frame_times=frame_times, frames=frames,
                       bids_root=root, subject="bv", task="test", progress=False)
    events = pd.read_csv(path.parent / "sub-bv_task-test_events.tsv", sep="\t", keep_default_na=False)
    assert (events["trial_type"] == "frame").sum() == frame_times.size
    assert events["trial_type"].str.startswith("Stimulus/").sum() > 0  # the recording's own markers are kept
    assert (events.loc[events["trial_type"] != "frame", "stim_file"] == "n/a").all()
    original = mne.io.read_raw(data_dir / "brainvision_test/test.vhdr", preload=True, verbose="error")
    converted = mne.io.read_raw(path, preload=True, verbose="error")
    np.testing.assert_allclose(converted.get_data(), original.get_data(), rtol=1e-6, atol=1e-12)
    assert validate(root) == []


def test_fif_file_and_second_subject_merge(session, converted, tmp_path):
    fif = tmp_path / "rec_raw.fif"
    session.raw.save(fif, verbose="error")
    root = tmp_path / "bids"
    shutil.copytree(converted[0], root)
    eeg_to_bids(fif, frame_times=session.frame_times, bids_root=root, subject="03", progress=False)
    participants = pd.read_csv(root / "participants.tsv", sep="\t")
    assert list(participants["participant_id"]) == ["sub-01", "sub-03"]
    assert (root / "sub-03/eeg/sub-03_task-driving_eeg.vhdr").is_file()
    assert not list(tmp_path.glob(".*partial*"))


def test_existing_recording_needs_overwrite(session, converted):
    root, path = converted
    with pytest.raises(ConversionError) as error:
        eeg_to_bids(session.raw, frame_times=session.frame_times, bids_root=root, subject="01", session="a", progress=False)
    assert error.value.field == "overwrite"
    before = path.stat().st_mtime_ns
    eeg_to_bids(session.raw, frame_times=session.frame_times, frames=session.frames, bids_root=root, subject="01",
                session="a", overwrite=True, progress=False)
    assert path.stat().st_mtime_ns != before


@pytest.mark.parametrize(
    ("frame_times", "n_frames", "field", "words"),
    [
        (np.array([1.0, 2.0, 20.0]), None, "frame_times", "outside the recording"),
        (np.array([-0.5, 1.0]), None, "frame_times", "outside the recording"),
        (np.array([2.0, 1.0]), None, "frame_times", "not strictly increasing"),
        (np.array([1.0, 2.0, 3.0]), 2, "frames", "3 frame times"),
    ],
)
def test_bad_frames_raise_and_write_nothing(session, tmp_path, frame_times, n_frames, field, words):
    frames = None if n_frames is None else session.frames[:n_frames]
    with pytest.raises(ConversionError) as error:
        eeg_to_bids(session.raw, frame_times=frame_times, frames=frames, bids_root=tmp_path / "out", subject="01",
                    progress=False)
    assert error.value.field == field and words in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_recording_raises(tmp_path):
    corrupt = tmp_path / "broken.vhdr"
    corrupt.write_text("this is not a BrainVision header\n")
    with pytest.raises(ConversionError) as error:
        eeg_to_bids(corrupt, frame_times=[0.1], bids_root=tmp_path / "out", subject="01", progress=False)
    assert error.value.file == str(corrupt) and "mne cannot read" in str(error.value)
    truncated = tmp_path / "short_raw.fif"
    truncated.write_bytes(b"\x00" * 100)
    with pytest.raises(ConversionError):
        eeg_to_bids(truncated, frame_times=[0.1], bids_root=tmp_path / "out", subject="01", progress=False)
    assert not (tmp_path / "out").exists()


def test_failure_inside_the_writer_leaves_nothing(session, tmp_path, monkeypatch):
    import b2m_neuro.convert.eeg as module

    def explode(*args, **kwargs):
        raise ConversionError("disk full", field="frames")

    monkeypatch.setattr(module, "_save_frames", explode)
    with pytest.raises(ConversionError, match="disk full"):
        eeg_to_bids(session.raw, frame_times=session.frame_times, frames=session.frames, bids_root=tmp_path / "out",
                    subject="01", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_frame_file_round_trip(session, tmp_path):
    path = write_frame_file(tmp_path / "f.npz", session.frame_times, frames=session.frames, behaviour=session.behaviour)
    found = read_frame_file(path)
    assert np.array_equal(found["frames"], session.frames)
    pd.testing.assert_frame_equal(found["behaviour"], session.behaviour.reset_index(drop=True))
    table = tmp_path / "f.tsv"
    pd.DataFrame({"onset": [0.5, 1.0]}).to_csv(table, sep="\t", index=False)
    assert list(read_frame_file(table)["frame_times"]) == [0.5, 1.0]
    np.savez(tmp_path / "bad.npz", times=np.ones(2))
    with pytest.raises(ConversionError) as error:
        read_frame_file(tmp_path / "bad.npz")
    assert error.value.field == "frame_times"


def test_bad_labels_and_frame_types_raise(session, tmp_path):
    with pytest.raises(ConversionError) as error:
        eeg_to_bids(session.raw, frame_times=session.frame_times, bids_root=tmp_path / "out", subject="Jane Doe",
                    progress=False)
    assert error.value.field == "subject"
    with pytest.raises(ConversionError) as error:
        eeg_to_bids(session.raw, frame_times=session.frame_times, frames=session.frames.astype(float),
                    bids_root=tmp_path / "out", subject="01", progress=False)
    assert error.value.field == "frames" and "uint8" in str(error.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "sfreq", "n_channels", "codes"),
    [("test.bdf", 2048.0, 73, {"128": 1}), ("test_bdf_stim_channel.bdf", 500.0, 4, {"1": 7, "2": 1, "4": 1})],
)
def test_real_biosemi_files_convert_without_frames_from_the_status_channel(data_dir, tmp_path, name, sfreq, n_channels,
                                                                           codes):
    source = data_dir / "biosemi" / name
    path = eeg_to_bids(source, stim_channel="Status", bids_root=tmp_path / "bids", subject="01", task="triggers",
                       progress=False)
    original = mne.io.read_raw(source, preload=True, verbose="error")
    expected = mne.find_events(original, stim_channel="Status", shortest_event=1, verbose="error")
    events = pd.read_csv(path.parent / "sub-01_task-triggers_events.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert events["trial_type"].value_counts().to_dict() == codes
    assert list(events["value"].astype(int)) == list(expected[:, 2]) == list(events["trial_type"].astype(int))
    np.testing.assert_allclose(events["onset"].astype(float), expected[:, 0] / sfreq, atol=1e-9)
    assert list(events["sample"].astype(int)) == list(expected[:, 0])
    assert json.loads(path.with_suffix(".json").read_text())["SamplingFrequency"] == sfreq
    channels = pd.read_csv(path.parent / "sub-01_task-triggers_channels.tsv", sep="\t")
    assert len(channels) == n_channels and channels.set_index("name").loc["Status", "type"] == "TRIG"
    levels = json.loads((path.parent / "sub-01_task-triggers_events.json").read_text())["trial_type"]["Levels"]
    assert levels == {code: f"trigger code {code} on channel Status" for code in codes}
    converted = mne.io.read_raw(path, preload=True, verbose="error")
    eeg = [original.ch_names.index(c) for c in original.ch_names if c != "Status"]
    np.testing.assert_allclose(converted.get_data()[eeg], original.get_data()[eeg], rtol=1e-6, atol=1e-12)
    assert validate(tmp_path / "bids") == []


def test_real_brainvision_markers_become_events_without_frames(data_dir, tmp_path):
    source = data_dir / "brainvision_test/test.vhdr"
    path = eeg_to_bids(source, bids_root=tmp_path / "bids", subject="bv", task="markers", progress=False)
    original = mne.io.read_raw(source, verbose="error").annotations
    events = pd.read_csv(path.parent / "sub-bv_task-markers_events.tsv", sep="\t", keep_default_na=False)
    kept = [i for i, d in enumerate(original.description) if d != "New Segment/"]  # mne-bids drops the segment start
    assert list(events["trial_type"]) == [original.description[i] for i in kept] and len(events) == 13
    np.testing.assert_allclose(events["onset"], original.onset[kept], atol=1e-3)
    assert "stim_file" not in events and not (tmp_path / "bids/stimuli").exists()
    assert validate(tmp_path / "bids") == []


def test_events_table_rows_values_and_extra_columns(data_dir, tmp_path):
    table = tmp_path / "events.tsv"
    pd.DataFrame({"onset": [0.5, 1.5, 2.5], "duration": [0.1, "n/a", 0], "trial_type": ["go", "nogo", "go"],
                  "value": [11, 12, 11], "response_time": [0.31, "n/a", 0.42]}).to_csv(table, sep="\t", index=False)
    path = eeg_to_bids(data_dir / "brainvision_test/test.vhdr", events=table, bids_root=tmp_path / "bids",
                       subject="bv", task="table", progress=False)
    events = pd.read_csv(path.parent / "sub-bv_task-table_events.tsv", sep="\t", keep_default_na=False)
    mine = events[events["trial_type"].isin(["go", "nogo"])]
    assert list(mine["onset"]) == [0.5, 1.5, 2.5] and list(mine["value"]) == [11, 12, 11]
    assert list(mine["duration"]) == [0.1, 0.0, 0.0] and list(mine["response_time"].astype(str)) == ["0.31", "n/a", "0.42"]
    assert (events.loc[~events.index.isin(mine.index), "response_time"] == "n/a").all()
    assert len(set(events["value"])) == len(set(events["trial_type"]))  # one code per trial type
    sidecar = json.loads((path.parent / "sub-bv_task-table_events.json").read_text())
    assert sidecar["trial_type"]["Levels"]["go"] == "event from events.tsv" and "response_time" in sidecar
    assert validate(tmp_path / "bids") == []
    frame = pd.DataFrame({"onset": [0.5, 1.5, 2.5], "duration": [0.1, np.nan, 0], "trial_type": ["go", "nogo", "go"],
                          "value": [11, 12, 11], "response_time": [0.31, None, 0.42]})  # missing as pandas has it
    same = eeg_to_bids(data_dir / "brainvision_test/test.vhdr", events=frame, bids_root=tmp_path / "bids-frame",
                       subject="bv", task="table", progress=False)
    assert (same.parent / "sub-bv_task-table_events.tsv").read_text() == \
        (path.parent / "sub-bv_task-table_events.tsv").read_text()


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({"stim_channel": "STI 014"}, "stim_channel", "no channel 'STI 014'"),
        ({"stim_channel": "Cz"}, "stim_channel", "no trigger codes"),
        ({"events": {"time": [1.0]}}, "onset", "'onset' column"),
        ({"events": {"onset": [1.0, 99.0]}}, "onset", "outside the recording"),
        ({"events": {"onset": [1.0, "soon"]}}, "onset", "not a number"),
        ({"events": {"onset": [1.0, 2.0], "duration": [0.1, -1]}}, "duration", "negative"),
        ({"events": {"onset": [1.0, 2.0], "trial_type": ["a", "b"], "value": [1, 1]}}, "value", "one to one"),
        ({"events": {"onset": [1.0], "trial_type": ["1"]}, "stim_channel": "Status"}, "events", "both use"),
        ({"events": "missing.tsv"}, "events", "does not exist"),
    ],
)
def test_bad_events_raise_and_write_nothing(data_dir, tmp_path, options, field, words):
    options = dict(options)
    if isinstance(options.get("events"), dict):
        table = tmp_path / "in" / "events.tsv"
        table.parent.mkdir()
        pd.DataFrame(options["events"]).to_csv(table, sep="\t", index=False)
        options["events"] = table
    elif "events" in options:
        options["events"] = tmp_path / options["events"]
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConversionError) as error:
        eeg_to_bids(data_dir / "biosemi/test_bdf_stim_channel.bdf", bids_root=out / "bids", subject="01", progress=False,
                    **options)
    assert error.value.field == field and words in str(error.value)
    assert list(out.iterdir()) == []


def test_frames_without_frame_times_raise(session, tmp_path):
    with pytest.raises(ConversionError) as error:
        eeg_to_bids(session.raw, frames=session.frames, bids_root=tmp_path / "out", subject="01", progress=False)
    assert error.value.field == "frame_times" and "without frame_times" in str(error.value)
    assert list(tmp_path.iterdir()) == []

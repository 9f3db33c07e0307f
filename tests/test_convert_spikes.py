"""spikes_to_nwb: round trip, de-identification, the nwbinspector verdict, and every bad input."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os

import numpy as np
import pandas as pd
import pytest
from spike_data import SAMPLING_RATE, SESSION_START, make_recording

from b2m_neuro.convert import spikes_to_nwb
from b2m_neuro.convert.deidentify import DEFAULT_DATE_SHIFT_DAYS, read_date_shift
from b2m_neuro.errors import B2MError, ConversionError
from b2m_neuro.recording import MEMORY_TRIAL_COLUMNS


def read_nwb(path):
    """Return (nwbfile, io); close io after use."""
    from pynwb import NWBHDF5IO

    io = NWBHDF5IO(str(path), "r")
    return io.read(), io


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    recording = make_recording()
    path = spikes_to_nwb(recording, tmp_path_factory.mktemp("nwb") / "sub-P01_ses-1_ecephys.nwb")
    nwbfile, io = read_nwb(path)
    yield recording, path, nwbfile
    io.close()


def test_units_round_trip(written):
    recording, _, nwbfile = written
    units = nwbfile.units
    assert units.resolution == pytest.approx(1 / SAMPLING_RATE)
    assert list(units["unit_name"][:]) == recording.unit_ids
    assert list(units["brain_area"][:]) == recording.brain_area
    for index, expected in enumerate(recording.spike_times):
        got = units.get_unit_spike_times(index)
        assert len(got) == len(expected)
        np.testing.assert_allclose(got, expected, rtol=0, atol=units.resolution)
        electrode_rows = units["electrodes"][index]
        assert list(electrode_rows["location"]) == [recording.electrode_location[recording.electrode[index]]]


def test_electrodes_devices_and_file_metadata(written):
    recording, _, nwbfile = written
    assert list(nwbfile.electrodes["location"][:]) == recording.electrode_location
    groups = [group.name for group in nwbfile.electrodes["group"][:]]
    assert groups == recording.electrode_location  # one group per location
    assert list(nwbfile.devices) == ["microwire bundles"]
    assert nwbfile.devices["microwire bundles"].model.manufacturer == "Ad-Tech"
    assert {group.device.name for group in nwbfile.electrode_groups.values()} == {"microwire bundles"}
    assert list(nwbfile.keywords[:]) == ["memory", "goal switching"]
    assert nwbfile.session_id == "1" and nwbfile.institution == "Test hospital"
    assert nwbfile.experimenter == ("Doe, John",)
    assert len(nwbfile.identifier) == 36  # a UUID


def test_trials_round_trip_every_column(written):
    recording, _, nwbfile = written
    trials = nwbfile.trials.to_dataframe()
    assert list(trials.columns) == list(recording.trials.columns)
    for column in recording.trials.columns:
        np.testing.assert_array_equal(trials[column].to_numpy(), recording.trials[column].to_numpy(), err_msg=column)
        assert nwbfile.trials[column].description == MEMORY_TRIAL_COLUMNS[column]
    assert trials["correct"].dtype == bool


def test_default_deidentification(written):
    recording, _, nwbfile = written
    subject = nwbfile.subject
    assert subject.date_of_birth is None
    assert "Jane" not in subject.description and "Doe" not in str(subject.fields)
    assert subject.age == "P34Y" and subject.sex == "F" and subject.subject_id == "P01"
    shift = dt.timedelta(days=DEFAULT_DATE_SHIFT_DAYS)
    assert nwbfile.session_start_time == recording.session_start_time + shift
    assert nwbfile.timestamps_reference_time == recording.session_start_time + shift
    assert read_date_shift(nwbfile.notes) == DEFAULT_DATE_SHIFT_DAYS
    assert nwbfile.session_start_time.weekday() == recording.session_start_time.weekday()


def test_configurable_shift_and_age_forms(tmp_path):
    recording = make_recording()
    recording.subject["age"] = "p2y6m"
    path = spikes_to_nwb(recording, tmp_path / "a.nwb", date_shift_days=-7)
    nwbfile, io = read_nwb(path)
    with io:
        assert nwbfile.session_start_time == SESSION_START - dt.timedelta(days=7)
        assert read_date_shift(nwbfile.notes) == -7
        assert nwbfile.subject.age == "P2Y6M"


@pytest.mark.parametrize("deidentify, age", [(True, "P90Y/"), (False, "P93Y")])
def test_ages_of_90_and_over_are_an_open_range_when_deidentifying(tmp_path, deidentify, age):
    from nwbinspector import inspect_nwbfile

    recording = make_recording()
    recording.subject["age"] = 93
    path = spikes_to_nwb(recording, tmp_path / "a.nwb", deidentify=deidentify)
    nwbfile, io = read_nwb(path)
    with io:
        assert nwbfile.subject.age == age
    assert [m for m in inspect_nwbfile(nwbfile_path=str(path)) if "age" in m.check_function_name] == []


def test_age_from_birth_date_when_no_age_given(tmp_path):
    recording = make_recording()
    del recording.subject["age"]  # born 1990-01-02, recorded 2024-05-01
    nwbfile, io = read_nwb(spikes_to_nwb(recording, tmp_path / "a.nwb"))
    with io:
        assert nwbfile.subject.age == "P34Y" and nwbfile.subject.date_of_birth is None


def test_deidentify_false_keeps_what_was_given(tmp_path):
    recording = make_recording()
    nwbfile, io = read_nwb(spikes_to_nwb(recording, tmp_path / "a.nwb", deidentify=False))
    with io:
        assert nwbfile.session_start_time == SESSION_START
        assert nwbfile.subject.date_of_birth.date() == dt.date(1990, 1, 2)
        assert "name: Jane Doe" in nwbfile.subject.description
        assert read_date_shift(nwbfile.notes) is None


def test_nwbinspector_finds_no_critical_or_violation(written):
    from nwbinspector import Importance, inspect_nwbfile

    messages = list(inspect_nwbfile(nwbfile_path=str(written[1])))
    serious = [m for m in messages if m.importance in (Importance.CRITICAL, Importance.BEST_PRACTICE_VIOLATION)]
    assert serious == []
    # What remains are suggestions about the task's 0/1 columns, whose names the memory task fixes.
    assert {m.check_function_name for m in messages} <= {"check_column_binary_capability"}


def test_overwrite_replaces_an_existing_file(tmp_path):
    target = tmp_path / "a.nwb"
    target.write_text("old")
    spikes_to_nwb(make_recording(), target, overwrite=True)
    nwbfile, io = read_nwb(target)
    with io:
        assert len(nwbfile.units) == 4
    assert sorted(os.listdir(tmp_path)) == ["a.nwb"]


# --------------------------------------------------------------------------------------------
# bad input: a ConversionError naming what and where, and no file left behind


def _replace(**changes):
    return lambda rec: dataclasses.replace(rec, **changes)


def _edit_spikes(index, values):
    def edit(rec):
        spike_times = list(rec.spike_times)
        spike_times[index] = np.asarray(values, dtype=float)
        return dataclasses.replace(rec, spike_times=spike_times)
    return edit


def _edit_trials(row, column, value):
    def edit(rec):
        trials = rec.trials.copy()
        trials.loc[row, column] = value
        return dataclasses.replace(rec, trials=trials)
    return edit


def _edit_subject(**fields):
    return lambda rec: dataclasses.replace(rec, subject={**rec.subject, **fields})


BAD_INPUTS = {
    "unsorted": (_edit_spikes(2, [0.5, 0.2, 0.9]), "spike_times[2]", "CSC9_cluster1"),
    "negative": (_edit_spikes(1, [-0.1, 0.2]), "spike_times[1]", "negative"),
    "nan": (_edit_spikes(0, [0.1, np.nan]), "spike_times[0]", "NaN"),
    "empty area": (_replace(brain_area=["hippocampus", "", "amygdala", "orbitofrontal cortex"]), "brain_area[1]",
                   "no brain region"),
    "no area": (_replace(brain_area=["hippocampus", "hippocampus", None, "orbitofrontal cortex"]), "brain_area[2]",
                "no brain region"),
    "stop before start": (_edit_trials(5, "stop_time", 0.0), "trials.stop_time[5]", "row 5"),
    "missing stop_time": (lambda rec: dataclasses.replace(rec, trials=rec.trials.drop(columns="stop_time")),
                          "trials.stop_time", "no 'stop_time'"),
    "short unit_ids": (_replace(unit_ids=["a", "b", "c"]), "units", "unit_ids has 3"),
    "short brain_area": (_replace(brain_area=["hippocampus"]), "units", "brain_area has 1"),
    "short electrode": (_replace(electrode=[0, 0]), "units", "electrode has 2"),
    "extra spike train": (lambda rec: dataclasses.replace(rec, spike_times=[*rec.spike_times, np.array([1.0])]),
                          "units", "spike_times has 5"),
    "electrode out of range": (_replace(electrode=[0, 0, 1, 3]), "electrode[3]", "3 electrodes"),
    "negative electrode": (_replace(electrode=[0, -1, 1, 2]), "electrode[1]", "electrode -1"),
    "duplicate unit": (_replace(unit_ids=["a", "b", "a", "d"]), "unit_ids", "twice"),
    "naive start time": (_replace(session_start_time=dt.datetime(2024, 5, 1, 9)), "session_start_time", "timezone"),
    "zero sampling rate": (_replace(sampling_rate=0.0), "sampling_rate", "positive"),
    "malformed age": (_edit_subject(age="thirty-four"), "subject.age", "ISO 8601"),
    "negative age": (_edit_subject(age=-3), "subject.age", "ISO 8601"),
    "empty duration": (_edit_subject(age="P"), "subject.age", "ISO 8601"),
    "bad range": (_edit_subject(age="/P40Y"), "subject.age", "ISO 8601"),
    "bad sex": (_edit_subject(sex="female"), "subject.sex", "'female'"),
    "unknown subject field": (_edit_subject(address="Main St 1"), "subject", "address"),
    "no subject id": (_edit_subject(subject_id=""), "subject.subject_id", "no subject_id"),
    "no units": (_replace(spike_times=[], unit_ids=[], brain_area=[], electrode=[]), "spike_times", "no units"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_a_conversion_error_and_leaves_no_file(tmp_path, case):
    edit, field, words = BAD_INPUTS[case]
    target = tmp_path / "out.nwb"
    with pytest.raises(ConversionError) as caught:
        spikes_to_nwb(edit(make_recording()), target)
    error = caught.value
    assert isinstance(error, B2MError)
    assert error.field == field and words in error.problem
    assert error.file == str(target) and error.fix
    assert os.listdir(tmp_path) == []


def test_metadata_pynwb_rejects_is_a_conversion_error(tmp_path):
    recording = make_recording()
    recording.metadata["device"] = {"name": "wires", "description": "microwires", "colour": "red"}
    with pytest.raises(ConversionError, match="pynwb rejected the session metadata") as caught:
        spikes_to_nwb(recording, tmp_path / "out.nwb")
    assert "colour" in caught.value.problem and caught.value.field == "metadata"
    assert os.listdir(tmp_path) == []


def test_missing_output_folder(tmp_path):
    with pytest.raises(ConversionError, match="output folder does not exist") as caught:
        spikes_to_nwb(make_recording(), tmp_path / "nowhere" / "out.nwb")
    assert caught.value.fix.startswith("create it first")
    assert os.listdir(tmp_path) == []


def test_existing_file_without_overwrite_is_kept(tmp_path):
    target = tmp_path / "out.nwb"
    target.write_text("keep me")
    with pytest.raises(ConversionError, match="already exists") as caught:
        spikes_to_nwb(make_recording(), target)
    assert caught.value.field == "overwrite"
    assert os.listdir(tmp_path) == ["out.nwb"] and target.read_text() == "keep me"


def test_bad_date_shift(tmp_path):
    with pytest.raises(ConversionError, match="whole number of days"):
        spikes_to_nwb(make_recording(), tmp_path / "out.nwb", date_shift_days=1.5)
    assert os.listdir(tmp_path) == []


def test_failure_while_writing_leaves_no_file(tmp_path, monkeypatch):
    from pynwb import NWBHDF5IO

    def broken_write(self, container, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(NWBHDF5IO, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        spikes_to_nwb(make_recording(), tmp_path / "out.nwb")
    assert os.listdir(tmp_path) == []


def test_trials_may_be_empty(tmp_path):
    recording = dataclasses.replace(make_recording(), trials=pd.DataFrame())
    nwbfile, io = read_nwb(spikes_to_nwb(recording, tmp_path / "a.nwb"))
    with io:
        assert nwbfile.trials is None and len(nwbfile.units) == 4

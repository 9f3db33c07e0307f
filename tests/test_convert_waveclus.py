"""waveclus_to_nwb: WaveClus times_<channel>.mat files (MATLAB v5 and v7.3) + events -> NWB."""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pandas as pd
import pytest
from spike_data import (
    SAMPLING_RATE,
    make_cluster_class,
    memory_trials,
    waveclus_variables,
    write_times_v5,
    write_times_v73,
)

from b2m_neuro.convert import read_waveclus, waveclus_to_nwb
from b2m_neuro.convert.waveclus import read_events, read_times_file
from b2m_neuro.errors import ConversionError

START = dt.datetime(2021, 3, 4, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
SUBJECT = {"subject_id": "P07", "species": "Homo sapiens", "sex": "M", "age": 41}
AREAS = {"CSC2": "hippocampus", "CSC10": "amygdala", "CSC3": "entorhinal cortex"}
CLUSTERS = {"CSC2": {0: 40, 1: 60, 2: 35}, "CSC10": {0: 25, 1: 50}, "CSC3": {0: 30}}


def events_table() -> pd.DataFrame:
    """The lab's events export: onsets and response times instead of start/stop times."""
    trials = memory_trials(10, seed=3)
    events = trials.drop(columns=["start_time", "stop_time", "reaction_time", "correct"])
    events["response_time"] = trials["stop_time"]
    return events


@pytest.fixture
def sorting(tmp_path):
    """A WaveClus output folder: CSC2 as v7.3 (HDF5), the others as v5; CSC3 has only unassigned spikes."""
    folder = tmp_path / "sorting"
    folder.mkdir()
    for seed, (channel, clusters) in enumerate(CLUSTERS.items()):
        writer = write_times_v73 if channel == "CSC2" else write_times_v5
        writer(folder / f"times_{channel}.mat", waveclus_variables(make_cluster_class(clusters, seed=seed), seed=seed))
    events_table().to_csv(tmp_path / "events.tsv", sep="\t", index=False)
    pd.DataFrame({"channel": list(AREAS), "brain_area": list(AREAS.values())}).to_csv(
        tmp_path / "channels.tsv", sep="\t", index=False)
    return folder


def convert(sorting, target, **changes):
    options = dict(channel_areas=AREAS, subject=SUBJECT, session_id="2", session_start_time=START, progress=False)
    options.update(changes)
    return waveclus_to_nwb(sorting, sorting.parent / "events.tsv", target, **options)


@pytest.mark.parametrize("writer", [write_times_v5, write_times_v73], ids=["v5", "v7.3"])
def test_times_file_reader(tmp_path, writer):
    cluster_class = make_cluster_class({0: 10, 1: 20, 3: 5})
    path = writer(tmp_path / "times_CSC4.mat", waveclus_variables(cluster_class, sr=32_000.0))
    got, rate = read_times_file(path)
    np.testing.assert_array_equal(got, cluster_class)
    assert rate == 32_000.0


def test_v73_files_are_real_hdf5_mat_files(sorting):
    import h5py
    import scipy.io

    path = sorting / "times_CSC2.mat"
    assert h5py.is_hdf5(path) and path.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    with pytest.raises(NotImplementedError):  # scipy refuses v7.3, so the h5py branch is what reads it
        scipy.io.loadmat(path)
    with h5py.File(path) as handle:
        assert handle["cluster_class"].shape == (2, 135) and handle["spikes"].shape == (64, 135)


def test_units_from_clusters_and_channels(sorting):
    recording = read_waveclus(sorting, sorting.parent / "events.tsv", channel_areas=AREAS, subject=SUBJECT,
                              session_id="2", session_start_time=START, progress=False)
    # channels in natural order (CSC2, CSC3, CSC10); cluster 0 dropped; CSC3 is an electrode without units
    assert recording.unit_ids == ["CSC2_cluster1", "CSC2_cluster2", "CSC10_cluster1"]
    assert recording.brain_area == ["hippocampus", "hippocampus", "amygdala"]
    assert recording.electrode == [0, 0, 2]
    assert recording.electrode_location == ["hippocampus", "entorhinal cortex", "amygdala"]
    assert [len(t) for t in recording.spike_times] == [60, 35, 50]
    assert recording.sampling_rate == SAMPLING_RATE  # from par.sr
    cluster_class = make_cluster_class(CLUSTERS["CSC10"], seed=1)
    np.testing.assert_array_equal(recording.spike_times[2], cluster_class[cluster_class[:, 0] == 1, 1] / 1000)


def test_nwb_round_trip(sorting, tmp_path):
    from nwbinspector import Importance, inspect_nwbfile
    from pynwb import NWBHDF5IO

    path = convert(sorting, tmp_path / "sub-P07_ses-2_ecephys.nwb", channel_areas=tmp_path / "channels.tsv")
    events = events_table()
    with NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        assert list(nwbfile.units["unit_name"][:]) == ["CSC2_cluster1", "CSC2_cluster2", "CSC10_cluster1"]
        assert list(nwbfile.units["brain_area"][:]) == ["hippocampus", "hippocampus", "amygdala"]
        assert list(nwbfile.electrodes["location"][:]) == ["hippocampus", "entorhinal cortex", "amygdala"]
        cluster_class = make_cluster_class(CLUSTERS["CSC2"], seed=0)
        np.testing.assert_allclose(nwbfile.units.get_unit_spike_times(1),
                                   cluster_class[cluster_class[:, 0] == 2, 1] / 1000,
                                   rtol=0, atol=nwbfile.units.resolution)
        trials = nwbfile.trials.to_dataframe()
        np.testing.assert_allclose(trials["start_time"], events["stimulus_onset"] - 1.0)
        np.testing.assert_allclose(trials["stop_time"], events["response_time"])
        np.testing.assert_allclose(trials["reaction_time"], events["response_time"] - events["stimulus_onset"])
        np.testing.assert_array_equal(trials["correct"], events["response"] == events["correct_response"])
        np.testing.assert_array_equal(trials["current_target"], events["current_target"])
        assert nwbfile.subject.age == "P41Y"
        assert nwbfile.session_start_time.date() == dt.date(2019, 3, 7)  # shifted 728 days back
    serious = [m for m in inspect_nwbfile(nwbfile_path=str(path))
               if m.importance in (Importance.CRITICAL, Importance.BEST_PRACTICE_VIOLATION)]
    assert serious == []


def test_events_as_csv_with_explicit_times_and_extra_columns(tmp_path):
    events = pd.DataFrame({"stimulus_onset": [1.0, 4.0], "start_time": [0.5, 3.5], "stop_time": [2.0, 5.5],
                           "block": ["a", "b"]})
    events.to_csv(tmp_path / "events.csv", index=False)
    trials = read_events(tmp_path / "events.csv")
    assert list(trials.columns) == ["start_time", "stop_time", "stimulus_onset", "block"]
    assert trials["block"].tolist() == ["a", "b"] and trials["start_time"].tolist() == [0.5, 3.5]


# --------------------------------------------------------------------------------------------
# bad input: ConversionError and no file


def test_missing_cluster_class(sorting, tmp_path):
    variables = waveclus_variables(make_cluster_class({1: 5}))
    del variables["cluster_class"]
    write_times_v5(sorting / "times_CSC10.mat", variables)
    with pytest.raises(ConversionError, match="no cluster_class") as caught:
        convert(sorting, tmp_path / "out.nwb")
    assert caught.value.file.endswith("times_CSC10.mat") and "Do_clustering" in caught.value.fix
    assert not (tmp_path / "out.nwb").exists()


def test_missing_cluster_class_v73(tmp_path):
    variables = waveclus_variables(make_cluster_class({1: 5}))
    del variables["cluster_class"]
    with pytest.raises(ConversionError, match="no cluster_class"):
        read_times_file(write_times_v73(tmp_path / "times_CSC1.mat", variables))


def test_channel_without_area(sorting, tmp_path):
    areas = {"CSC2": "hippocampus", "CSC3": "entorhinal cortex"}
    with pytest.raises(ConversionError, match="'CSC10' \\(from times_CSC10.mat\\) has no brain area") as caught:
        convert(sorting, tmp_path / "out.nwb", channel_areas=areas)
    assert caught.value.field == "channel_areas"
    assert sorted(os.listdir(tmp_path)) == ["channels.tsv", "events.tsv", "sorting"]


@pytest.mark.parametrize("bad, words", [
    (lambda e: e.drop(columns="stimulus_onset"), "needs stimulus_onset and response_time"),
    (lambda e: e.drop(columns="response_time"), "needs stimulus_onset and response_time"),
    (lambda e: e.assign(response_time=["late"] * len(e)), "row 0 has a missing or non-numeric response_time"),
])
def test_bad_events_table(sorting, tmp_path, bad, words):
    bad(events_table()).to_csv(tmp_path / "events.tsv", sep="\t", index=False)
    with pytest.raises(ConversionError, match=words) as caught:
        convert(sorting, tmp_path / "out.nwb")
    assert caught.value.file.endswith("events.tsv")
    assert not (tmp_path / "out.nwb").exists()


def test_channel_table_without_brain_area_column(sorting, tmp_path):
    pd.DataFrame({"channel": ["CSC2"], "region": ["hippocampus"]}).to_csv(tmp_path / "channels.tsv", sep="\t")
    with pytest.raises(ConversionError, match="lacks the columns \\['brain_area'\\]"):
        convert(sorting, tmp_path / "out.nwb", channel_areas=tmp_path / "channels.tsv")


def test_empty_folder_and_non_mat_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match="no WaveClus"):
        read_waveclus(tmp_path / "empty", pd.DataFrame(), channel_areas={}, subject=SUBJECT, session_id="1",
                      session_start_time=START)
    (tmp_path / "times_CSC1.mat").write_bytes(b"not a MATLAB file at all" * 10)
    with pytest.raises(ConversionError, match="cannot read this MATLAB file"):
        read_times_file(tmp_path / "times_CSC1.mat")


def test_bad_cluster_class_shape(tmp_path):
    variables = waveclus_variables(make_cluster_class({1: 5}))
    variables["cluster_class"] = variables["cluster_class"][:, :1]
    with pytest.raises(ConversionError, match="not N x 2"):
        read_times_file(write_times_v5(tmp_path / "times_CSC1.mat", variables))


def test_sampling_rate_missing_or_conflicting(sorting, tmp_path):
    variables = waveclus_variables(make_cluster_class({1: 5}), sr=40_000.0)
    write_times_v5(sorting / "times_CSC3.mat", variables)
    with pytest.raises(ConversionError, match="disagree on the sampling rate") as caught:
        convert(sorting, tmp_path / "out.nwb")
    assert caught.value.field == "sampling_rate"
    path = convert(sorting, tmp_path / "out.nwb", sampling_rate=30_000.0)  # an explicit rate settles it
    assert path.exists()


def corrupt(path, how):
    """Damage a times file the ways a disk or a copy does: empty, cut short, scrambled."""
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "header only":
        path.write_bytes(data[:100])
    elif how == "scrambled":
        path.write_bytes(data[:140] + bytes(255 - b for b in data[140:200]) + data[200:])
    else:  # "truncated": half the file
        path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(("channel", "how"), [("CSC10", "empty"), ("CSC10", "header only"), ("CSC10", "scrambled"),
                                              ("CSC2", "truncated")])  # fmt: skip
def test_corrupt_times_file_is_a_conversion_error_and_writes_nothing(sorting, tmp_path, capsys, channel, how):
    from b2m_neuro.cli import main

    path = corrupt(sorting / f"times_{channel}.mat", how)  # CSC10 is MATLAB v5, CSC2 v7.3 (HDF5)
    with pytest.raises(ConversionError, match="cannot read this MATLAB file") as caught:
        read_times_file(path)
    assert caught.value.file == str(path) and caught.value.field == "source" and "copy it again" in caught.value.fix
    target = tmp_path / "out.nwb"
    with pytest.raises(ConversionError, match="cannot read this MATLAB file"):
        convert(sorting, target)
    code = main(["convert", "spikes", str(sorting), "--events", str(tmp_path / "events.tsv"), "--areas",
                 str(tmp_path / "channels.tsv"), "--out", str(target), "--subject-id", "P07", "--session-id", "2",
                 "--session-start", START.isoformat(), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and str(path) in err and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["channels.tsv", "events.tsv", "sorting"]  # no half-written NWB

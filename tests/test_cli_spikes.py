"""``b2m-neuro simulate memory`` and ``b2m-neuro convert spikes``, run in-process."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from spike_data import make_cluster_class, memory_trials, waveclus_variables, write_times_v5, write_times_v73

from b2m_neuro.cli import main


def read_nwb(path):
    from pynwb import NWBHDF5IO

    io = NWBHDF5IO(str(path), "r")
    return io.read(), io


def test_simulate_memory_writes_a_dandiset(tmp_path, capsys):
    out = tmp_path / "dandiset"
    assert main(["simulate", "memory", "--sessions", "2", "--out", str(out), "--seed", "4", "--trials", "30",
                 "--quiet"]) == 0
    names = ["sub-S01/sub-S01_ses-01_ecephys.nwb", "sub-S02/sub-S02_ses-02_ecephys.nwb"]
    assert capsys.readouterr().out.split() == [str(out / name) for name in names]
    assert (out / "dandiset.yaml").is_file()
    from b2m_neuro.simulate import memory_sessions

    expected = memory_sessions(2, seed=4, n_trials=30, progress=False)
    for name, recording in zip(names, expected, strict=True):
        nwbfile, io = read_nwb(out / name)
        with io:
            assert len(nwbfile.trials) == 30
            assert list(nwbfile.units["unit_name"][:]) == [str(u) for u in recording.unit_ids]
            np.testing.assert_allclose(nwbfile.units.get_unit_spike_times(0), recording.spike_times[0],
                                       rtol=0, atol=nwbfile.units.resolution)
            assert nwbfile.trials["current_target"][:].tolist() == recording.trials["current_target"].tolist()


def test_simulate_memory_without_goal_information_and_overwrite(tmp_path, capsys):
    out = tmp_path / "control"
    args = ["simulate", "memory", "--sessions", "1", "--out", str(out), "--trials", "20", "--no-goal-information",
            "--quiet"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2  # the file exists
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err
    assert main([*args, "--overwrite"]) == 0
    assert "goal information off" in (out / "dandiset.yaml").read_text()


def test_simulate_memory_refuses_zero_sessions(tmp_path, capsys):
    assert main(["simulate", "memory", "--sessions", "0", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "n_sessions" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


@pytest.fixture
def lab_files(tmp_path):
    folder = tmp_path / "sorting"
    folder.mkdir()
    write_times_v5(folder / "times_CSC1.mat", waveclus_variables(make_cluster_class({0: 20, 1: 30, 2: 25})))
    write_times_v73(folder / "times_CSC2.mat", waveclus_variables(make_cluster_class({0: 10, 1: 40}, seed=1)))
    pd.DataFrame({"channel": ["CSC1", "CSC2"], "brain_area": ["hippocampus", "amygdala"]}).to_csv(
        tmp_path / "channels.tsv", sep="\t", index=False)
    trials = memory_trials(8)
    events = trials.drop(columns=["start_time", "stop_time"]).assign(response_time=trials["stop_time"])
    events.to_csv(tmp_path / "events.csv", index=False)
    return tmp_path


def convert_args(lab_files, *extra):
    return ["convert", "spikes", str(lab_files / "sorting"), "--events", str(lab_files / "events.csv"),
            "--areas", str(lab_files / "channels.tsv"), "--out", str(lab_files / "out.nwb"),
            "--subject-id", "P03", "--sex", "F", "--age", "52", "--session-id", "4",
            "--session-start", "2022-06-01T14:00:00+02:00", "--quiet", *extra]


def test_convert_spikes(lab_files, capsys):
    assert main(convert_args(lab_files, "--date-shift-days", "-14")) == 0
    assert capsys.readouterr().out.strip() == str(lab_files / "out.nwb")
    nwbfile, io = read_nwb(lab_files / "out.nwb")
    with io:
        assert list(nwbfile.units["unit_name"][:]) == ["CSC1_cluster1", "CSC1_cluster2", "CSC2_cluster1"]
        assert list(nwbfile.units["brain_area"][:]) == ["hippocampus", "hippocampus", "amygdala"]
        assert nwbfile.subject.age == "P52Y" and nwbfile.subject.species == "Homo sapiens"
        assert nwbfile.session_start_time.isoformat() == "2022-05-18T14:00:00+02:00"
        assert len(nwbfile.trials) == 8


def test_convert_spikes_no_deidentify(lab_files):
    assert main(convert_args(lab_files, "--no-deidentify")) == 0
    nwbfile, io = read_nwb(lab_files / "out.nwb")
    with io:
        assert nwbfile.session_start_time.isoformat() == "2022-06-01T14:00:00+02:00"


def test_convert_spikes_errors_are_clean(lab_files, capsys):
    pd.DataFrame({"channel": ["CSC1"], "brain_area": ["hippocampus"]}).to_csv(
        lab_files / "channels.tsv", sep="\t", index=False)
    assert main(convert_args(lab_files)) == 2
    err = capsys.readouterr().err
    assert err.startswith("b2m-neuro convert: error:") and "'CSC2'" in err and "Traceback" not in err
    assert not (lab_files / "out.nwb").exists()


def test_convert_spikes_needs_a_time_zone(lab_files, capsys):
    args = convert_args(lab_files)
    args[args.index("--session-start") + 1] = "2022-06-01T14:00:00"
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2 and "has no time zone" in capsys.readouterr().err


@pytest.mark.parametrize(("design", "task"), [("study-test", "study_test"), ("sternberg", "sternberg")])
def test_simulate_recognition_designs_write_sessions_their_task_trains_on(design, task, tmp_path, capsys):
    out = tmp_path / "dandiset"
    assert main(["simulate", design, "--sessions", "2", "--out", str(out), "--quiet"]) == 0
    paths = capsys.readouterr().out.split()
    assert [Path(p).name for p in paths] == ["sub-S01_ses-01_ecephys.nwb", "sub-S02_ses-02_ecephys.nwb"]
    from b2m_neuro.adapters import load_spikes

    rates = load_spikes(paths[0], "recognition" if task == "study_test" else "sternberg", progress=False)
    assert rates.sizes["time"] == 2 and "target" in rates.coords
    from b2m_neuro import embed, train

    options = {"episode": "episode"} if task == "study_test" else {}
    result = train(embed([rates], method="pca", output_dimension=3, progress=False), task=task, alpha=0.1,
                   hidden_size=8, epochs=1, n_test=20, progress=False, **options)
    assert result.history.sizes["epoch"] == 1 and not result.diverged

import numpy as np
import pandas as pd
import pytest

from b2m_neuro.errors import SimulationError
from b2m_neuro.simulate import sternberg_session, study_test_session

def counts(rec, onset, start, stop):
    """Spike counts per event and unit in [onset + start, onset + stop)."""
    return np.stack([np.searchsorted(t, onset + stop) - np.searchsorted(t, onset + start) for t in rec.spike_times], 1)


def decoding_accuracy(features, labels, groups):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    decoder = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return float(cross_val_score(decoder, np.log1p(features), labels, groups=groups, cv=GroupKFold(5),
                                 scoring="balanced_accuracy").mean())


def test_study_test_blocks_follow_the_design():
    rec = study_test_session(seed=2, n_blocks=10, study_items=4, test_items=4, n_items=16, n_units=6)
    trials = rec.trials
    assert list(trials.columns) == ["start_time", "stop_time", "stimulus_onset", "stimulus_duration", "stimulus",
                                    "task_phase", "episode", "target", "response"]
    for _, block in trials.groupby("episode"):
        study = block[block.task_phase == "study"]
        test = block[block.task_phase == "test"]
        assert len(study) == 4 and len(test) == 4 and study.index.max() < test.index.min()
        assert study.stimulus.is_unique and (study.target == 0).all() and (study.response == -1).all()
        assert test.target.tolist() == [int(item in set(study.stimulus)) for item in test.stimulus]
        assert test.target.sum() == 2 and test.stimulus.is_unique and test.response.isin((0, 1)).all()
    assert set(trials.stimulus) <= {f"img{i:02d}" for i in range(16)}
    # one item at a time: each trial starts after the previous one stopped, 1 s of fixation before onset
    assert (trials.start_time.to_numpy()[1:] >= trials.stop_time.to_numpy()[:-1]).all()
    np.testing.assert_allclose(trials.stimulus_onset - trials.start_time, 1.0)
    np.testing.assert_allclose(trials.stop_time - trials.stimulus_onset, trials.stimulus_duration)
    assert (trials.stimulus_duration[trials.task_phase == "study"] == 1.0).all()


def test_sternberg_trials_follow_the_design():
    rec = sternberg_session(seed=3, n_trials=60, loads=(1, 2, 3), n_items=12, n_units=6)
    trials = rec.trials
    assert list(trials.columns) == ["start_time", "stop_time", "probe_onset", "reaction_time", "load", "encoding_1",
                                    "encoding_2", "encoding_3", "probe", "target", "response"]
    assert len(trials) == 60 and set(trials.load) == {1, 2, 3} and 0.3 < trials.target.mean() < 0.7
    for trial in trials.to_dict("records"):
        load, encoded = trial["load"], [trial[f"encoding_{k}"] for k in (1, 2, 3)]
        assert all(1 <= picture <= 12 for picture in encoded[:load]) and encoded[load:] == [0] * (3 - load)
        assert len(set(encoded[:load])) == load and 1 <= trial["probe"] <= 12
        assert trial["target"] == int(trial["probe"] in encoded[:load])
    np.testing.assert_allclose(trials.stop_time - trials.probe_onset, trials.reaction_time)
    events = rec.metadata["ground_truth"]["events"]
    last_encoding = events[events.task_phase == "encoding"].groupby("episode").stop_time.max().to_numpy()
    np.testing.assert_allclose(trials.probe_onset - last_encoding, 2.0)  # the maintenance period


def test_same_seed_same_session_and_information_switch_changes_only_the_spikes():
    a, b = study_test_session(seed=5, n_blocks=4), study_test_session(seed=5, n_blocks=4)
    off = study_test_session(seed=5, n_blocks=4, memory_information=False)
    pd.testing.assert_frame_equal(a.trials, b.trials)
    pd.testing.assert_frame_equal(a.trials, off.trials)
    assert all(np.array_equal(x, y) for x, y in zip(a.spike_times, b.spike_times))
    assert a.brain_area == off.brain_area
    truth, truth_off = a.metadata["ground_truth"]["tuning"], off.metadata["ground_truth"]["tuning"]
    np.testing.assert_array_equal(truth["stimulus"], truth_off["stimulus"])
    assert np.any(truth["memory"] != 0) and np.all(truth_off["memory"] == 0) and np.all(truth_off["persistent"] == 0)


@pytest.fixture(scope="module")
def recognition_pair():
    options = dict(seed=11, n_blocks=60, n_units=30)
    return study_test_session(**options), study_test_session(**options, memory_information=False)


def test_memory_selective_neurons_carry_old_versus_new(recognition_pair):
    accuracies = []
    for rec in recognition_pair:
        test = rec.trials[rec.trials.task_phase == "test"]
        features = counts(rec, test.stimulus_onset.to_numpy(), 0.0, 0.5)
        accuracies.append(decoding_accuracy(features, test.target.to_numpy(), test.episode.to_numpy()))
    informative, uninformative = accuracies
    print(f"old/new decoded 0-0.5 s after onset: {informative:.3f}; without memory information {uninformative:.3f}")
    assert informative > 0.75 and uninformative < 0.62


def test_held_items_raise_their_concept_cells_before_the_probe():
    """Persistent activity: in the second before a probe, units fire more when a preferred item is held."""
    ratios = []
    for information in (True, False):
        rec = sternberg_session(seed=4, n_trials=150, n_units=30, memory_information=information)
        trials = rec.trials
        held = np.zeros((len(trials), 12 + 1), bool)  # picture ids 1-12, 0 = empty slot
        for k in (1, 2, 3):
            held[np.arange(len(trials)), trials[f"encoding_{k}"]] = True
        preferred = rec.metadata["ground_truth"]["tuning"]["stimulus"] > 0  # (unit, item index = picture id - 1)
        holds_preferred = (held[:, 1:].astype(float) @ preferred.T.astype(float)) > 0  # (trial, unit)
        before = counts(rec, trials.probe_onset.to_numpy(), -1.0, 0.0)
        ratios.append(before[holds_preferred].mean() / before[~holds_preferred].mean())
    print(f"pre-probe rate, preferred item held / not: {ratios[0]:.2f}; without memory information {ratios[1]:.2f}")
    assert ratios[0] > 1.3 and 0.85 < ratios[1] < 1.15


def test_written_as_nwb_and_read_back_by_the_spike_adapter(tmp_path):
    from nwbinspector import Importance, inspect_nwbfile

    from b2m_neuro.adapters import load_spikes
    from b2m_neuro.adapters.spec import FixedWindow, ReactionTimeWindow, TeacherSpec
    from b2m_neuro.convert import spikes_to_nwb

    rec = sternberg_session(seed=1, n_trials=8, n_units=5)
    path = spikes_to_nwb(rec, tmp_path / "sternberg.nwb")
    serious = [m for m in inspect_nwbfile(nwbfile_path=str(path))
               if m.importance in (Importance.CRITICAL, Importance.BEST_PRACTICE_VIOLATION)]
    assert serious == []
    spec = TeacherSpec(align="probe_onset", pre=FixedWindow(-2.0, 0.0, 0.5),
                       post=ReactionTimeWindow(column="reaction_time", n_bins=2),
                       task_columns=("encoding_1", "encoding_2", "encoding_3", "probe", "target"))
    rates = load_spikes(path, spec, progress=False)
    assert rates.sizes == {"trial": 8, "time": 6, "unit": 5}
    for column in spec.task_columns:
        assert rates[column].values.tolist() == rec.trials[column].tolist()


@pytest.mark.parametrize("make, field", [
    (lambda: study_test_session(study_items=4, test_items=4, n_items=5), "n_items"),
    (lambda: study_test_session(study_items=1, test_items=4), "n_items"),
    (lambda: study_test_session(n_blocks=0), "n_blocks"),
    (lambda: sternberg_session(loads=(0, 2)), "loads"),
    (lambda: sternberg_session(loads=(2,), n_items=2), "loads"),
    (lambda: study_test_session(memory_gain=9.0), "memory_gain"),
    (lambda: sternberg_session(memory_information="yes"), "memory_information"),
    (lambda: study_test_session(subject_id="S 1"), "subject_id"),
])
def test_bad_parameters_are_simulation_errors(make, field):
    with pytest.raises(SimulationError) as error:
        make()
    assert field in str(error.value)

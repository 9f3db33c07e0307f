import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

from b2m_neuro.errors import SimulationError
from b2m_neuro.recording import MEMORY_TRIAL_COLUMNS, SpikeRecording
from b2m_neuro.simulate import memory_session, memory_sessions
from b2m_neuro.simulate.memory import REGIONS


@pytest.fixture(scope="module")
def session() -> SpikeRecording:
    return memory_session(seed=7)


def window_counts(rec: SpikeRecording, start: float, stop: float) -> np.ndarray:
    """Spike counts per trial and unit in [onset + start, onset + stop)."""
    onset = rec.trials["stimulus_onset"].to_numpy()
    return np.stack(
        [np.searchsorted(t, onset + stop) - np.searchsorted(t, onset + start) for t in rec.spike_times], axis=1
    )


def goal_decoding_accuracy(rec: SpikeRecording, windows=((-1.0, 0.0), (0.0, 0.5))) -> float:
    """Cross-validated (folds by episode) balanced accuracy of decoding first vs second candidate."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.log1p(np.hstack([window_counts(rec, *window) for window in windows]))
    trials = rec.trials
    goal_is_first = (trials["current_target"] == trials["first_target"]).to_numpy()
    decoder = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    scores = cross_val_score(
        decoder, features, goal_is_first, groups=trials["episode"], cv=GroupKFold(5), scoring="balanced_accuracy"
    )
    return float(scores.mean())


# --- reproducibility ---------------------------------------------------------------------------


def test_same_seed_same_session_other_seed_differs():
    a, b = memory_session(seed=3, n_trials=80), memory_session(seed=3, n_trials=80)
    c = memory_session(seed=4, n_trials=80)
    pd.testing.assert_frame_equal(a.trials, b.trials)
    assert a.n_units == b.n_units
    assert all(np.array_equal(x, y) for x, y in zip(a.spike_times, b.spike_times))
    assert (a.subject, a.session_start_time) == (b.subject, b.session_start_time)
    assert not a.trials["stimulus"].equals(c.trials["stimulus"])
    assert a.n_units != c.n_units or not np.array_equal(a.spike_times[0], c.spike_times[0])


def test_switching_information_off_keeps_behaviour_and_layout():
    on = memory_session(seed=5, n_trials=60)
    off = memory_session(seed=5, n_trials=60, goal_information=False)
    pd.testing.assert_frame_equal(on.trials, off.trials)
    assert on.brain_area == off.brain_area
    np.testing.assert_array_equal(on.metadata["ground_truth"]["tuning"]["stimulus"],
                                  off.metadata["ground_truth"]["tuning"]["stimulus"])
    for term in ("goal", "goal_phase", "match", "response"):
        assert np.any(on.metadata["ground_truth"]["tuning"][term] != 0)
        assert np.all(off.metadata["ground_truth"]["tuning"][term] == 0)


# --- the task rules on the trials table --------------------------------------------------------


def test_trials_table_columns_and_types(session):
    trials = session.trials
    assert list(trials.columns) == list(MEMORY_TRIAL_COLUMNS)
    assert len(trials) == 400
    assert trials["correct"].dtype == bool
    for column in ("stimulus", "first_target", "second_target", "current_target", "correct_response", "response"):
        assert set(trials[column].unique()) <= {0, 1, 2}, column
    assert set(trials["stimulus"]) == {0, 1, 2}


def test_target_switches_exactly_after_correct_accepts(session):
    trials = session.trials
    for _, episode in trials.groupby("episode"):
        first, second = episode["first_target"].iloc[0], episode["second_target"].iloc[0]
        assert first != second
        assert episode["current_target"].iloc[0] == first
        accepted = ((episode["stimulus"] == episode["current_target"]) & (episode["response"] == 1)).to_numpy()
        goal = episode["current_target"].to_numpy()
        expected_next = np.where(accepted[:-1], first + second - goal[:-1], goal[:-1])
        np.testing.assert_array_equal(goal[1:], expected_next)
        assert set(goal) <= {first, second}
    switches = (trials["current_target"].diff() != 0) & (trials["episode"].diff() == 0)
    assert switches.sum() >= 2 * trials["episode"].nunique()  # several switches per episode on average


def test_responses_follow_the_rules(session):
    trials = session.trials
    rule = (trials["stimulus"] == trials["current_target"]).astype(int)
    np.testing.assert_array_equal(trials["correct_response"], rule)
    np.testing.assert_array_equal(trials["correct"], trials["response"] == trials["correct_response"])
    assert 0.8 <= trials["correct"].mean() <= 0.97
    assert 0.3 <= trials["correct_response"].mean() <= 0.5


def test_episodes_are_contiguous_with_a_constant_cue(session):
    trials = session.trials
    episode = trials["episode"].to_numpy()
    assert episode[0] == 0 and set(np.diff(episode)) <= {0, 1}
    for column in ("first_target", "second_target"):
        assert (trials.groupby("episode")[column].nunique() == 1).all(), column
    lengths = trials.groupby("episode").size().to_numpy()
    assert lengths[:-1].min() >= 4 and lengths.max() <= 20 and len(set(lengths)) > 3


def test_timing_is_consistent_and_trials_do_not_overlap(session):
    trials = session.trials
    np.testing.assert_allclose(trials["start_time"], trials["stimulus_onset"] - 1.0)
    np.testing.assert_allclose(trials["stop_time"], trials["stimulus_onset"] + trials["reaction_time"])
    assert trials["reaction_time"].between(0.4, 2.0).all()
    assert trials["reaction_time"].skew() > 0
    gaps = trials["start_time"].to_numpy()[1:] - trials["stop_time"].to_numpy()[:-1]
    assert gaps.min() >= 1.0
    assert trials["start_time"].iloc[0] > 0


# --- neurons ------------------------------------------------------------------------------------


def test_spike_times_sorted_within_session_and_quantized(session):
    end = session.metadata["ground_truth"]["duration_s"]
    assert end > session.trials["stop_time"].max()
    for times in session.spike_times:
        assert times.dtype == np.float64 and times.size > 0
        assert np.all(np.diff(times) >= 0.0015)  # sorted, with a refractory period
        assert times[0] >= 0 and times[-1] <= end
        samples = times * session.sampling_rate
        np.testing.assert_allclose(samples, np.round(samples), atol=1e-6)


def test_firing_rates_are_heterogeneous_and_plausible(session):
    rates = np.array([t.size for t in session.spike_times]) / session.metadata["ground_truth"]["duration_s"]
    assert rates.min() > 0.2 and rates.max() < 60
    assert rates.max() / rates.min() > 4


def test_units_electrodes_and_regions(session):
    n = session.n_units
    assert 10 <= n <= 40
    assert len(session.unit_ids) == len(set(session.unit_ids)) == n
    assert len(session.brain_area) == len(session.electrode) == n
    assert set(session.brain_area) == set(REGIONS)
    for area, electrode in zip(session.brain_area, session.electrode):
        assert session.electrode_location[electrode] == area
    per_electrode = np.bincount(session.electrode)
    assert per_electrode.min() >= 1 and per_electrode.max() <= 4
    assert len(session.electrode_location) == per_electrode.size


def test_units_per_region_sets_the_counts():
    rec = memory_session(seed=1, n_trials=20, units_per_region={"hippocampus": 3, "amygdala": 2})
    assert rec.brain_area == ["hippocampus"] * 3 + ["amygdala"] * 2


def test_subject_session_and_metadata(session):
    assert session.subject["subject_id"] == "S01" and session.session_id == "01"
    assert session.subject["species"] == "Homo sapiens"
    assert session.subject["sex"] in {"F", "M"}
    assert re.fullmatch(r"P\d+Y", session.subject["age"])
    assert isinstance(session.session_start_time, dt.datetime) and session.session_start_time.tzinfo is not None
    assert session.sampling_rate == 32_000.0
    for key in ("institution", "lab", "keywords", "device"):
        assert session.metadata[key], key
    truth = session.metadata["ground_truth"]
    np.testing.assert_array_equal(truth["goal"], session.trials["current_target"])
    assert (truth["goal_information"], truth["goal_gain"], truth["match_gain"]) == (True, 1.0, 1.0)
    assert truth["tuning"]["stimulus"].shape == (session.n_units, 3)
    assert truth["tuning"]["baseline_hz"].min() >= 0.5 and truth["tuning"]["baseline_hz"].max() <= 20


def test_memory_sessions_have_distinct_ids_and_unit_counts():
    recs = memory_sessions(4, seed=2, n_trials=30, progress=False)
    assert [r.subject["subject_id"] for r in recs] == ["S01", "S02", "S03", "S04"]
    assert [r.session_id for r in recs] == ["01", "02", "03", "04"]
    counts = [r.n_units for r in recs]
    assert len(set(counts)) == 4 and all(10 <= c <= 40 for c in counts)
    assert recs[0].trials["stimulus"].tolist() != recs[1].trials["stimulus"].tolist()
    again = memory_sessions(2, seed=2, n_trials=30, progress=False)  # session i does not depend on n_sessions
    assert [r.n_units for r in again] == counts[:2]
    assert all(np.array_equal(a, b) for a, b in zip(again[1].spike_times, recs[1].spike_times))


def test_memory_sessions_of_one_subject():
    recs = memory_sessions(2, seed=0, n_units=12, n_trials=20, subject_id="P7", progress=False)
    assert [(r.subject["subject_id"], r.session_id, r.n_units) for r in recs] == [("P7", "01", 12), ("P7", "02", 12)]


# --- the known answer ----------------------------------------------------------------------------


def test_population_carries_the_goal_and_not_without_information():
    with_goal = goal_decoding_accuracy(memory_session(seed=0, n_units=20))
    without = goal_decoding_accuracy(memory_session(seed=0, n_units=20, goal_information=False))
    assert with_goal > 0.8
    assert without < 0.6


def test_goal_is_held_before_the_stimulus_and_scales_with_gain():
    pre_stimulus = ((-1.0, 0.0),)
    strong = goal_decoding_accuracy(memory_session(seed=1, n_units=20), pre_stimulus)
    weak = goal_decoding_accuracy(memory_session(seed=1, n_units=20, goal_gain=0.4), pre_stimulus)
    none = goal_decoding_accuracy(memory_session(seed=1, n_units=20, goal_gain=0.0), pre_stimulus)
    assert strong > 0.75
    assert strong > weak > none
    assert none < 0.6


# --- bad parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_trials": 0}, "n_trials"),
        ({"n_trials": 2.5}, "n_trials"),
        ({"n_units": 0}, "n_units"),
        ({"seed": -1}, "seed"),
        ({"goal_gain": -0.1}, "goal_gain"),
        ({"match_gain": float("nan")}, "match_gain"),
        ({"goal_gain": 50}, "goal_gain"),
        ({"goal_information": "yes"}, "goal_information"),
        ({"accuracy": 1.2}, "accuracy"),
        ({"sampling_rate": 0}, "sampling_rate"),
        ({"subject_id": "sub-01"}, "subject_id"),
        ({"session_id": ""}, "session_id"),
        ({"units_per_region": {"hippocampus": -1}}, "units_per_region"),
        ({"units_per_region": {"hippocampus": 0}}, "units_per_region"),
        ({"n_units": 5, "units_per_region": {"hippocampus": 3}}, "n_units"),
    ],
)
def test_bad_parameters_raise_simulation_error(kwargs, field):
    with pytest.raises(SimulationError) as info:
        memory_session(**kwargs)
    assert info.value.field == field
    assert field in str(info.value)


def test_memory_sessions_bad_parameters():
    with pytest.raises(SimulationError, match="n_sessions"):
        memory_sessions(0)
    with pytest.raises(SimulationError, match="session_id"):
        memory_sessions(2, session_id="01")

"""The controls: what each keeps of the teacher and what it removes."""

import numpy as np
import pytest
import xarray as xr
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from test_tasks import memory_derivative, memory_sessions

from b2m_neuro.controls import CONTROLS, apply_control, phase_randomized, shuffle_trials, surrogate_sessions
from b2m_neuro.errors import TrainingError


def goal_decoding(session):
    """Cross-validated accuracy of the hidden goal (first or second candidate) from the pre-stimulus mean."""
    pre = session["embedding"].values[:, session["time"].values < 0].mean(axis=1)
    goal = (session["current_target"] == session["first_target"]).values
    return cross_val_score(LogisticRegression(), pre, goal, cv=5).mean(), max(goal.mean(), 1 - goal.mean())


def test_phase_randomized_keeps_spectra_and_covariance_but_not_the_samples():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(8192, 3))
    series = np.empty_like(noise)
    series[0] = noise[0]
    for t in range(1, len(noise)):  # correlated AR(1) channels with a nonzero mean
        series[t] = 0.5 * series[t - 1] + noise[t] @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 1.0]])
    series += [1.0, -2.0, 0.5]
    surrogate = phase_randomized(series, seed=1)
    assert surrogate.shape == series.shape and surrogate.dtype == series.dtype
    np.testing.assert_allclose(np.abs(np.fft.rfft(surrogate, axis=0)), np.abs(np.fft.rfft(series, axis=0)), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(np.cov(surrogate.T), np.cov(series.T), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(surrogate.mean(axis=0), series.mean(axis=0), atol=1e-10)
    for channel in range(3):
        assert abs(np.corrcoef(surrogate[:, channel], series[:, channel])[0, 1]) < 0.06
    np.testing.assert_array_equal(phase_randomized(series, seed=1), surrogate)
    assert not np.allclose(phase_randomized(series, seed=2), surrogate)
    # along another axis, float32 in and out, odd length
    trials = series[:4095].T.astype(np.float32)
    along_time = phase_randomized(trials, seed=3, axis=1)
    assert along_time.dtype == np.float32
    np.testing.assert_allclose(np.abs(np.fft.rfft(along_time, axis=1)), np.abs(np.fft.rfft(trials, axis=1)), rtol=1e-3, atol=1e-2)


def test_surrogate_keeps_spectra_and_task_variables(tmp_path):
    derivative = memory_derivative(tmp_path / "b2m-identity", 1, 8)
    original = derivative.datasets()[0]
    surrogate = surrogate_sessions(str(derivative.root), seed=4)[0]
    flat = original["embedding"].values.reshape(-1, 3)
    flat_surrogate = surrogate["embedding"].values.reshape(-1, 3)
    assert surrogate["embedding"].dtype == np.float32 and surrogate["embedding"].dims == original["embedding"].dims
    np.testing.assert_allclose(np.abs(np.fft.rfft(flat_surrogate, axis=0)), np.abs(np.fft.rfft(flat, axis=0)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.cov(flat_surrogate.T), np.cov(flat.T), rtol=1e-4, atol=1e-5)
    assert not np.allclose(flat_surrogate, flat)
    xr.testing.assert_identical(surrogate.drop_vars("embedding"), original.drop_vars("embedding"))
    np.testing.assert_array_equal(surrogate_sessions(derivative, seed=4)[0]["embedding"], surrogate["embedding"])
    np.testing.assert_array_equal(surrogate_sessions([original], seed=4)[0]["embedding"], surrogate["embedding"])


def test_the_no_information_surrogate_carries_no_goal_but_keeps_the_statistics():
    sessions = memory_sessions(1, 40, n_time=10, seed=3)
    informed, chance = goal_decoding(sessions[0])
    assert informed > 0.95 and chance < 0.7
    decoded = [goal_decoding(surrogate_sessions(sessions, seed=seed)[0])[0] for seed in range(10)]
    assert np.mean(decoded) < chance + 0.05 and max(decoded) < chance + 0.15
    surrogate = surrogate_sessions(sessions, seed=0)[0]["embedding"].values
    original = sessions[0]["embedding"].values
    np.testing.assert_allclose(surrogate.reshape(-1, 3).std(axis=0), original.reshape(-1, 3).std(axis=0), rtol=1e-4)
    np.testing.assert_allclose(surrogate.mean(axis=(0, 1)), original.mean(axis=(0, 1)), atol=1e-5)


def test_shuffled_control_permutes_trials_within_each_session():
    sessions = memory_sessions(2, 3)
    shuffled = shuffle_trials(sessions, seed=0)
    for original, control in zip(sessions, shuffled):
        before, after = original.embedding.values, control.embedding.values
        assert not np.array_equal(before, after)
        order = [int(np.flatnonzero((before == row).all(axis=(1, 2)))[0]) for row in after]
        assert sorted(order) == list(range(len(before)))  # a permutation of the same trials
        xr.testing.assert_identical(original.drop_vars("embedding"), control.drop_vars("embedding"))
    assert np.array_equal(shuffle_trials(sessions, seed=0)[0].embedding, shuffled[0].embedding)


def test_shuffled_keeps_each_trials_embedding_but_not_its_goal():
    sessions = memory_sessions(1, 40, n_time=10, seed=3)
    assert goal_decoding(shuffle_trials(sessions, seed=0)[0])[0] < goal_decoding(sessions[0])[1] + 0.15


def test_apply_control_names_every_control():
    sessions = memory_sessions(1, 3)
    assert apply_control(sessions, None, seed=0)[0] is sessions[0]
    for control in CONTROLS:
        changed = apply_control(sessions, control, seed=0)[0]
        assert not np.array_equal(changed["embedding"].values, sessions[0]["embedding"].values)
    with pytest.raises(TrainingError, match="unknown control 'noise'.*shuffled, surrogate"):
        apply_control(sessions, "noise", seed=0)

import numpy as np
import pytest
import xarray as xr

from b2m_neuro.derivative import Derivative
from b2m_neuro.errors import TrainingError
from b2m_neuro.tasks import MemoryTask, TrialSequenceTask, correct_responses, get_task


def memory_sessions(n_sessions=2, n_episodes=6, *, latent=3, n_time=20, goal_signal=1.0, seed=0):
    """Fabricated derivative sessions of the memory task whose embedding carries the hidden goal.

    Latent 0 is +-goal_signal for the goal being the first / second candidate (plus noise), latent 1
    the stimulus index while it is on screen, the rest noise. Time: n_time // 2 pre-stimulus points
    (negative times) then n_time // 2 post-stimulus points.
    """
    rng = np.random.default_rng(seed)
    sessions = []
    for index in range(n_sessions):
        columns = {name: [] for name in ("stimulus", "first_target", "second_target", "current_target",
                                         "correct_response", "response", "correct", "reaction_time", "episode")}
        for episode in range(n_episodes):
            first, second, _ = rng.permutation(3)
            stimuli = rng.integers(0, 3, rng.integers(3, 8))
            answers = correct_responses(stimuli, first, second)
            goals = np.where(np.cumsum(np.r_[0, answers[:-1]]) % 2 == 0, first, second)
            for stimulus, answer, goal in zip(stimuli, answers, goals):
                for name, value in zip(columns, (stimulus, first, second, goal, answer, answer, True,
                                                  rng.uniform(0.4, 2.0), episode)):
                    columns[name].append(value)
        n_trials = len(columns["stimulus"])
        time = np.r_[np.linspace(-1, -1 / (n_time // 2), n_time // 2), np.linspace(0, 1, n_time - n_time // 2)]
        embedding = rng.normal(0, 0.3, (n_trials, n_time, latent)).astype(np.float32)
        goal_is_first = np.array(columns["current_target"]) == np.array(columns["first_target"])
        embedding[:, :, 0] += goal_signal * np.where(goal_is_first, 1.0, -1.0)[:, None]
        embedding[:, time >= 0, 1] += np.array(columns["stimulus"])[:, None]
        sessions.append(xr.Dataset(
            {"embedding": (("trial", "time", "latent"), embedding),
             **{name: ("trial", np.asarray(values)) for name, values in columns.items()}},
            coords={"time": time},
            attrs={"subject": f"S{index:02d}", "session": "", "task": "memory"},
        ))
    return sessions


def memory_derivative(root, n_sessions=2, n_episodes=6, **options):
    """The fabricated sessions written as a real derivative (identity method)."""
    return Derivative.create(root, memory_sessions(n_sessions, n_episodes, **options), method="identity",
                             params={}, source_datasets=[], progress=False)


def test_correct_responses_follow_the_goal_switching_rules():
    # goal starts at the first target (0); accepting it switches to the second (1) and back
    assert correct_responses([0, 0, 1, 1, 0, 2], 0, 1).tolist() == [1, 0, 1, 0, 1, 0]
    assert correct_responses([2, 1, 2], 1, 0).tolist() == [0, 1, 0]


def test_memory_task_layout_of_one_episode():
    sessions = memory_sessions(1, 2, n_time=8)
    data = MemoryTask(n_test=5).prepare(sessions)
    session = sessions[0]
    first_episode = session.episode.to_numpy() == 0
    n_trials = int(first_episode.sum())
    assert data.n_inputs == 4 and data.latent_dim == 3 and data.stimuli == [0, 1, 2]
    assert data.train_lengths[0] == 2 + n_trials * 8
    inputs = data.train_inputs[0]
    # cue: first target, then second target, as one-hot stimuli
    assert inputs[0].tolist() == np.eye(4)[int(session.first_target[0])].tolist()
    assert inputs[1].tolist() == np.eye(4)[int(session.second_target[0])].tolist()
    trial_inputs = inputs[2 : 2 + n_trials * 8].reshape(n_trials, 8, 4)
    assert (trial_inputs[:, :4, 3] == 1).all() and (trial_inputs[:, :4, :3] == 0).all()  # nothing on screen
    assert (trial_inputs[:, 4:].argmax(-1) == session.stimulus.to_numpy()[first_episode, None]).all()
    # task loss only at each trial's last point; +1 accept / -1 reject
    scored = data.train_scored[0, : data.train_lengths[0]]
    assert scored.sum() == n_trials and scored[2 + 7] and not scored[:2].any()
    expected = np.where(session.correct_response.to_numpy()[first_episode] == 1, 1.0, -1.0)
    assert data.train_targets[0, : data.train_lengths[0]][scored].tolist() == expected.tolist()
    # brain pairing (default "pre"): the pre-stimulus points of every trial, none on the cue
    paired = data.train_paired[0, : data.train_lengths[0]]
    assert not paired[:2].any() and paired[2:].tolist() == ([True] * 4 + [False] * 4) * n_trials
    np.testing.assert_array_equal(data.train_brain[0, 2:10], session.embedding.to_numpy()[0])


def test_time_stride_keeps_the_response_point():
    data = MemoryTask(n_test=5, time_stride=3).prepare(memory_sessions(1, 2, n_time=20))
    # points 1, 4, ..., 19: 7 per trial, of which 3 pre-stimulus (1, 4, 7) and 4 on screen
    trial = data.train_inputs[0, 2:9]
    assert trial[:3, 3].tolist() == [1, 1, 1] and trial[3:, 3].tolist() == [0, 0, 0, 0]
    assert data.train_scored[0, 2:9].tolist() == [False] * 6 + [True]


def test_memory_test_set_is_simulated_from_the_rules_and_unseen():
    sessions = memory_sessions(2, 6)
    data = MemoryTask(n_test=200, time_stride=10).prepare(sessions)
    assert len(data.test_lengths) == 200
    seen = set()
    for session in sessions:
        for episode in np.unique(session.episode):
            trials = session.isel(trial=session.episode.values == episode)
            seen.add((int(trials.first_target[0]), int(trials.second_target[0]), tuple(trials.stimulus.values.tolist())))
    for i in range(200):
        steps = data.test_inputs[i, : data.test_lengths[i]]
        first, second = steps[0].argmax(), steps[1].argmax()
        stimuli = steps[2:].reshape(-1, 2, 4)[:, 1].argmax(-1)
        assert first != second and (first, second, tuple(stimuli)) not in seen
        targets = data.test_targets[i][data.test_scored[i]]
        assert (targets == np.where(correct_responses(stimuli, first, second) == 1, 1, -1)).all()
    again = MemoryTask(n_test=200, time_stride=10).prepare(sessions)
    np.testing.assert_array_equal(again.test_inputs, data.test_inputs)


def test_generic_task_holds_out_whole_episodes():
    sessions = memory_sessions(2, 5)
    task = get_task("trials", stimulus="stimulus", target="correct_response", episode="episode", test_fraction=0.2)
    data = task.prepare(sessions)
    assert len(data.train_lengths) == 8 and len(data.test_lengths) == 2
    n_trials = sum(s.sizes["trial"] for s in sessions)
    assert data.train_scored.sum() + data.test_scored.sum() == n_trials
    assert data.train_paired.sum() == data.train_scored.sum() * 10  # no cue; the 10 pre-stimulus points


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda s: s.drop_vars("current_target"), "current_target"),
        (lambda s: s.rename({"embedding": "rates"}), "embedding"),
        (lambda s: s.assign(first_target=("trial", np.full(s.sizes["trial"], np.nan))), "first_target"),
    ],
)
def test_sessions_without_what_the_task_needs_are_refused(change, field):
    sessions = memory_sessions(1, 2)
    with pytest.raises(TrainingError) as error:
        MemoryTask(n_test=5).prepare([change(sessions[0])])
    assert field in str(error.value) and "S00" in str(error.value)


def test_non_binary_target_and_bad_options_are_refused():
    sessions = memory_sessions(1, 3)
    with pytest.raises(TrainingError, match="binary"):
        TrialSequenceTask(target="stimulus").prepare(sessions)
    with pytest.raises(TrainingError, match="unknown task"):
        get_task("driving")
    with pytest.raises(TrainingError, match="time_stride"):
        MemoryTask(time_stride=0)


def test_sessions_read_back_from_a_derivative_give_the_same_task_data(tmp_path):
    derivative = memory_derivative(tmp_path / "b2m-identity", 2, 4)
    from_disk = MemoryTask(n_test=20, time_stride=4).prepare(derivative.datasets())
    in_memory = MemoryTask(n_test=20, time_stride=4).prepare(memory_sessions(2, 4))
    for name in ("train_inputs", "train_targets", "train_brain", "train_paired", "test_inputs", "test_targets"):
        np.testing.assert_array_equal(getattr(from_disk, name), getattr(in_memory, name), err_msg=name)


def test_missing_variable_in_a_derivative_names_the_file(tmp_path):
    sessions = [session.drop_vars("first_target") for session in memory_sessions(1, 3)]
    derivative = Derivative.create(tmp_path / "d", sessions, method="identity", params={}, source_datasets=[],
                                   progress=False)
    with pytest.raises(TrainingError, match=r"_embedding\.nc: first_target"):
        MemoryTask(n_test=5).prepare(derivative.datasets())


def test_plain_index_time_axis_is_split_in_halves():
    session = memory_sessions(1, 2, n_time=6)[0]
    session = session.assign_coords(time=np.arange(6))
    data = MemoryTask(n_test=5).prepare([session])
    assert data.train_inputs[0, 2:8, 3].tolist() == [1, 1, 1, 0, 0, 0]


@pytest.mark.parametrize("pair, per_trial", [
    ("pre", [True] * 4 + [False] * 4),
    ("unscored", [True] * 7 + [False]),
    ("all", [True] * 8),
    ([False, True, False, False, False, False, True, True], [False, True, False, False, False, False, True, True]),
])
def test_pairing_selects_the_trial_points_of_the_transfer_loss(pair, per_trial):
    sessions = memory_sessions(1, 3, n_time=8)
    for task in (MemoryTask(n_test=5, pair=pair), TrialSequenceTask(pair=pair, test_fraction=0.3)):
        data = task.prepare(sessions)
        cue = 2 if isinstance(task, MemoryTask) else 0
        for row, length in enumerate(data.train_lengths):
            paired = data.train_paired[row, cue:length].reshape(-1, 8)
            assert (paired == per_trial).all()
            assert not data.train_paired[row, :cue].any() and not data.train_paired[row, length:].any()
        assert task.options()["pair"] == (pair if isinstance(pair, str) else list(pair))


def test_pairing_mask_follows_the_stride():
    # 20 points, stride 3 keeps 1, 4, ..., 19; a mask over the derivative's time pairs points 4 and 19
    mask = np.zeros(20, bool)
    mask[[4, 5, 19]] = True
    data = MemoryTask(n_test=5, time_stride=3, pair=mask).prepare(memory_sessions(1, 2, n_time=20))
    assert data.train_paired[0, 2:9].tolist() == [False, True, False, False, False, False, True]


@pytest.mark.parametrize("pair, message", [
    ("post", "unknown pairing"),
    ([1, 0, 1], "booleans"),
    ([True] * 5, "5 values but the derivative has 8"),
    ([False] * 8, "selects none"),
])
def test_bad_pairings_are_refused(pair, message):
    with pytest.raises(TrainingError, match=message) as error:
        MemoryTask(n_test=5, pair=pair).prepare(memory_sessions(1, 2, n_time=8))
    assert "pair" in str(error.value)


def test_no_training_label_contradicts_what_the_inputs_determine():
    """Participants err (their goal then lags the rule); the student's targets follow the rule."""
    from b2m_neuro.simulate import memory_session

    trials = memory_session(seed=3, n_units=4, n_trials=300).trials
    participant = trials["correct_response"].to_numpy()
    rule = np.concatenate([correct_responses(e.stimulus.to_numpy(), e.first_target.iloc[0], e.second_target.iloc[0])
                           for _, e in trials.groupby("episode", sort=False)])
    assert (participant != rule).sum() > 0  # the simulated participant's errors make the recorded labels differ
    session = xr.Dataset({"embedding": (("trial", "time", "latent"), np.zeros((len(trials), 2, 3), np.float32)),
                          **{name: ("trial", trials[name].to_numpy()) for name in trials.columns
                             if name in ("stimulus", "first_target", "second_target", "current_target", "episode")}},
                         coords={"time": [-0.5, 0.5]})
    data = MemoryTask(n_test=5).prepare([session])
    for row, length in enumerate(data.train_lengths):
        steps = data.train_inputs[row, :length]
        first, second = steps[0].argmax(), steps[1].argmax()
        stimuli = steps[2:].reshape(-1, 2, 4)[:, 1].argmax(-1)
        targets = data.train_targets[row, :length][data.train_scored[row, :length]]
        assert targets.tolist() == np.where(correct_responses(stimuli, first, second) == 1, 1.0, -1.0).tolist()


def test_points_left_out_of_the_pairing_do_not_influence_training():
    """Zero transfer gradient where not paired: changing the brain there changes nothing."""
    import torch

    from b2m_neuro.training import train

    sessions = memory_sessions(1, 4, n_time=6)
    post = sessions[0]["time"].values >= 0
    scrambled = sessions[0].copy(deep=True)
    scrambled["embedding"][:, post] = np.random.default_rng(1).normal(0, 5, scrambled["embedding"][:, post].shape)
    options = dict(alpha=1.0, epochs=2, lr=1e-2, hidden_size=8, n_test=5, pair="pre", progress=False)
    torch.set_num_threads(1)
    first, second = train(sessions, **options), train([scrambled], **options)
    np.testing.assert_array_equal(first.history.task_loss.values, second.history.task_loss.values)
    for a, b in zip(first.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)
    changed = train([scrambled], **{**options, "pair": "all"})
    assert not np.array_equal(changed.history.task_loss.values, first.history.task_loss.values)

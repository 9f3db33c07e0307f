import numpy as np
import pytest
import xarray as xr

from b2m_neuro.derivative import Derivative
from b2m_neuro.errors import TrainingError
from b2m_neuro.tasks import StudyTestTask, get_task, known_tasks


def episode_sessions(n_sessions=1, n_episodes=20, *, n_study=(2, 3), n_test=(2, 4), pool=12, n_time=4, latent=3,
                     phases=("study", "test"), label="old", seed=0):
    """Fabricated derivative sessions of a study-then-test design with image names as stimuli.

    Per episode: ``n_study`` items (drawn from the range) without repetition, then ``n_test`` test
    items, each old (a studied item) or new with probability 0.5. ``label`` holds 1 old / 0 new on
    test trials and NaN on study trials. Latent 0 carries old (+1) / new (-1) on test trials.
    """
    rng = np.random.default_rng(seed)
    sessions = []
    for index in range(n_sessions):
        columns = {"stimulus": [], "task_phase": [], "episode": [], label: []}
        for episode in range(n_episodes):
            study = rng.choice(pool, rng.integers(n_study[0], n_study[1] + 1), replace=False)
            new = rng.permutation(np.setdiff1d(np.arange(pool), study))
            n_tested = rng.integers(n_test[0], n_test[1] + 1)
            test = [rng.choice(study) if rng.random() < 0.5 else new[i] for i in range(n_tested)]
            for items, phase in ((study, phases[0]), (test, phases[1])):
                for item in items:
                    columns["stimulus"].append(f"img{item:02d}")
                    columns["task_phase"].append(phase)
                    columns["episode"].append(episode)
                    columns[label].append(np.nan if phase == phases[0] else float(item in study))
        n_trials = len(columns["stimulus"])
        time = np.r_[np.linspace(-1, -0.1, n_time // 2), np.linspace(0.1, 1, n_time - n_time // 2)]
        embedding = rng.normal(0, 0.3, (n_trials, n_time, latent)).astype(np.float32)
        embedding[:, :, 0] += np.nan_to_num(2 * np.array(columns[label]) - 1)[:, None]
        sessions.append(xr.Dataset(
            {"embedding": (("trial", "time", "latent"), embedding),
             **{name: ("trial", np.asarray(values)) for name, values in columns.items()}},
            coords={"time": time}, attrs={"subject": f"S{index:02d}", "session": "", "task": "studytest"}))
    return sessions


def decoded_episodes(data, prefix, n_time):
    """Each sequence of ``data`` as (study items, test items, scored targets), read back from its inputs."""
    marker = len(data.stimuli) + 1
    inputs, targets, scored, lengths = (getattr(data, f"{prefix}_{name}")
                                        for name in ("inputs", "targets", "scored", "lengths"))
    episodes = []
    for row, length in enumerate(lengths):
        steps = inputs[row, :length]
        [at] = np.flatnonzero(steps[:, marker] == 1)
        items = [tuple(data.stimuli[i] for i in part.reshape(-1, n_time, steps.shape[1])[:, -1].argmax(-1))
                 for part in (steps[:at], steps[at + 1:])]
        episodes.append((*items, targets[row, :length][scored[row, :length]]))
    return episodes


def training_keys(sessions, phases=("study", "test")):
    keys = set()
    for session in sessions:
        for episode in np.unique(session.episode):
            trials = session.isel(trial=session.episode.values == episode)
            phase = trials.task_phase.values
            stimuli = trials.stimulus.values
            keys.add((tuple(stimuli[phase == phases[0]]), tuple(stimuli[phase == phases[1]])))
    return keys


def test_registered_under_its_name():
    assert {"study_test", "sternberg"} <= set(known_tasks())
    assert isinstance(get_task("study_test", phase="stim_phase"), StudyTestTask)


def test_without_an_episode_variable_each_session_is_one_episode():
    one_block = [session.drop_vars("episode") for session in episode_sessions(2, 1)]
    data = StudyTestTask(n_test=5).prepare(one_block)
    assert len(data.train_lengths) == 2  # one sequence per session
    with pytest.raises(TrainingError, match="'study' trial after a 'test' trial") as error:
        StudyTestTask(n_test=5).prepare(episode_sessions(1, 3))  # three blocks, but no episode named
    assert "episode=" in str(error.value)


def test_layout_of_one_episode():
    sessions = episode_sessions(1, 2, n_time=4)
    session = sessions[0]
    data = StudyTestTask(episode="episode", n_test=5).prepare(sessions)
    first = session.episode.values == 0
    phase = session.task_phase.values[first]
    n_study, n_test = int((phase == "study").sum()), int((phase == "test").sum())
    assert data.n_inputs == len(data.stimuli) + 2 and data.latent_dim == 3
    assert data.train_lengths[0] == 4 * n_study + 1 + 4 * n_test
    steps = data.train_inputs[0, : data.train_lengths[0]]
    blank, marker = len(data.stimuli), len(data.stimuli) + 1
    at = 4 * n_study
    assert steps[at].tolist() == np.eye(data.n_inputs)[marker].tolist()  # the test phase begins
    trials = np.concatenate([steps[:at], steps[at + 1:]]).reshape(-1, 4, data.n_inputs)
    assert (trials[:, :2, blank] == 1).all() and (trials[:, :2, :blank] == 0).all()
    shown = [data.stimuli[i] for i in trials[:, 2:].argmax(-1)[:, 0]]
    assert shown == session.stimulus.values[first].tolist()
    # only test trials are scored, at their last point, old +1 / new -1 as the label says
    scored = data.train_scored[0, : data.train_lengths[0]]
    assert scored.sum() == n_test and not scored[: at + 1].any() and scored[at + 4]
    expected = 2 * session.old.values[first][phase == "test"] - 1
    assert data.train_targets[0, : data.train_lengths[0]][scored].tolist() == expected.tolist()
    # pre-stimulus points of study and test trials are paired, the marker is not
    paired = data.train_paired[0, : data.train_lengths[0]]
    assert not paired[at] and np.delete(paired, at).tolist() == [True, True, False, False] * (n_study + n_test)
    np.testing.assert_array_equal(data.train_brain[0, :4], session.embedding.values[0])
    assert not data.train_brain[0, at].any()


def test_test_set_follows_the_rule_and_holds_no_training_episode():
    sessions = episode_sessions(2, 25)
    task = StudyTestTask(episode="episode", n_test=300)
    data = task.prepare(sessions)
    assert len(data.train_lengths) == 50 and len(data.test_lengths) == 300
    train = decoded_episodes(data, "train", 4)
    test = decoded_episodes(data, "test", 4)
    seen = training_keys(sessions)
    assert {(study, tested) for study, tested, _ in train} == seen
    shapes = {(len(study), tuple(np.isin(tested, study))) for study, tested, _ in train}
    keys = set()
    for study, tested, targets in test:
        assert len(set(study)) == len(study)  # a study list has no repeats
        assert targets.tolist() == [1.0 if item in study else -1.0 for item in tested]  # old iff studied
        assert (len(study), tuple(np.isin(tested, study))) in shapes  # the shape of a participant's episode
        keys.add((study, tested))
    assert len(keys) > 250 and not keys & seen  # none a training episode (independent draws: few repeats)
    assert len({item for study, tested, _ in test for item in study + tested}) == 12  # the whole pool is used
    np.testing.assert_array_equal(task.prepare(sessions).test_inputs, data.test_inputs)
    other = StudyTestTask(episode="episode", n_test=300, test_seed=1).prepare(sessions)
    assert not np.array_equal(other.test_inputs, data.test_inputs)


def test_recorded_label_is_checked_against_the_rule():
    sessions = episode_sessions(1, 6)
    assert StudyTestTask(episode="episode", target="old", n_test=5).prepare(sessions).test_lengths.size == 5
    # stimuli as categories (the first letter) no longer identify the items: the labels disagree
    categories = sessions[0].assign(stimulus=("trial", np.array([s[:4] for s in sessions[0].stimulus.values])))
    with pytest.raises(TrainingError, match="disagrees with the rule") as error:
        StudyTestTask(episode="episode", target="old", n_test=5).prepare([categories])
    assert "old, stimulus" in str(error.value) and "S00" in str(error.value)
    coded = sessions[0].assign(old=("trial", np.nan_to_num(sessions[0].old.values, nan=0) + 1))  # 2 old / 1 new
    with pytest.raises(TrainingError, match=r"1 \(old, in\) or 0 \(new, out\)"):
        StudyTestTask(episode="episode", target="old", n_test=5).prepare([coded])
    with pytest.raises(TrainingError, match="no trial variable 'answer'"):
        StudyTestTask(episode="episode", target="answer", n_test=5).prepare(sessions)


def edit_phases(session, rows, values):
    phase = session.task_phase.values.astype(object)
    phase[rows] = values
    return session.assign(task_phase=("trial", phase))


@pytest.mark.parametrize("change, message", [
    (lambda s: edit_phases(s, [0], "fixation"), r"holds \['fixation'\]"),
    (lambda s: edit_phases(s, np.flatnonzero(s.episode.values == 0), "study"), "episode 0 has no 'test' trials"),
    (lambda s: edit_phases(s, [int(np.flatnonzero(s.episode.values == 0)[-1])], "study"),
     "'study' trial after a 'test'"),
    (lambda s: s.drop_vars("task_phase"), "lacks the task variable"),
])
def test_sessions_the_rule_cannot_read_are_refused(change, message):
    session = episode_sessions(1, 3, n_test=(2, 2))[0]
    with pytest.raises(TrainingError, match=message) as error:
        StudyTestTask(episode="episode", n_test=5).prepare([change(session)])
    assert "S00" in str(error.value)


def test_column_names_and_phase_values_are_options():
    session = episode_sessions(1, 4, phases=("learn", "recog"), label="new_old")[0]
    session = session.rename({"task_phase": "stim_phase", "stimulus": "image", "episode": "block"})
    task = get_task("study_test", phase="stim_phase", phases="learn,recog", stimulus="image", episode="block",
                    target="new_old", n_test=5)
    assert task.options()["phases"] == ["learn", "recog"]
    assert task.prepare([session]).train_scored.sum() == (session.stim_phase.values == "recog").sum()


@pytest.mark.parametrize("options, field", [
    (dict(phases=("study",)), "phases"),
    (dict(encoding="probe"), "task options"),
    (dict(phases=("test", "test")), "phases"),
    (dict(n_test=0), "n_test"),
    (dict(pair="post"), "pair"),
    (dict(test_fraction=0.2), "task options"),
])
def test_bad_options_are_refused(options, field):
    with pytest.raises(TrainingError) as error:
        get_task("study_test", **options)
    assert field in str(error.value)


def test_options_of_another_task_are_refused_by_train():
    from b2m_neuro.training import train

    with pytest.raises(TrainingError, match="do not apply to task 'study_test'"):
        train(episode_sessions(1, 3), task="study_test", alpha=0.0, test_fraction=0.2)


def test_a_pool_whose_every_episode_was_trained_on_is_refused():
    # 2 items, one studied and one tested: 4 possible episodes, all among the 30 training episodes
    sessions = episode_sessions(1, 30, n_study=(1, 1), n_test=(1, 1), pool=2)
    assert len(training_keys(sessions)) == 4
    with pytest.raises(TrainingError, match="no unseen test episode can be drawn from 2 stimuli") as error:
        StudyTestTask(episode="episode", n_test=10).prepare(sessions)
    assert "more distinct stimuli" in str(error.value)


def test_image_names_survive_the_derivative(tmp_path):
    sessions = episode_sessions(2, 4)
    derivative = Derivative.create(tmp_path / "b2m-identity", sessions, method="identity", params={},
                                   source_datasets=[], progress=False)
    from_disk = StudyTestTask(episode="episode", n_test=20, target="old").prepare(derivative.datasets())
    in_memory = StudyTestTask(episode="episode", n_test=20, target="old").prepare(sessions)
    assert from_disk.stimuli == in_memory.stimuli
    assert all(isinstance(item, str) and item.startswith("img") for item in from_disk.stimuli)
    for name in ("train_inputs", "train_targets", "train_brain", "train_paired", "test_inputs", "test_targets"):
        np.testing.assert_array_equal(getattr(from_disk, name), getattr(in_memory, name), err_msg=name)


def test_a_small_student_learns_recognition_above_chance():
    import torch

    from b2m_neuro.training import train

    torch.set_num_threads(1)
    sessions = episode_sessions(1, 120, n_study=(2, 2), n_test=(2, 2), pool=8)
    result = train(sessions, task="study_test", episode="episode", alpha=0.0, epochs=30, lr=3e-2, batch_size=8,
                   hidden_size=32,
                   dropout=0.0, n_test=200, progress=False)
    data = StudyTestTask(episode="episode", n_test=200).prepare(sessions)
    old_share = (data.test_targets[data.test_scored] == 1).mean()
    chance = max(old_share, 1 - old_share)
    print(f"study_test: test accuracy {result.final_test_accuracy:.3f}, majority-class chance {chance:.3f}")
    # 400 scored test items: chance plus 0.08 is over three standard errors away (measured: 0.750 vs 0.565)
    assert result.final_test_accuracy > chance + 0.08


def preset_session(tmp_path, writer, preset):
    """A test-written file of a DANDI dataset's layout, read with its preset, identity embedding."""
    from b2m_neuro.adapters import load_spikes
    from b2m_neuro.embedding import embed

    path = tmp_path / f"{preset}.nwb"
    writer(path)
    [session] = embed([load_spikes(path, preset, progress=False)], method="identity", progress=False)
    return session


def test_the_dandi_000004_preset_poses_the_task_with_the_default_names(tmp_path):
    from spike_data import write_dandi_000004

    session = preset_session(tmp_path, write_dandi_000004, "dandi000004")
    data = StudyTestTask(target="target", n_test=20).prepare([session])  # each session one episode
    test = session.task_phase.values == "test"
    assert len(data.train_lengths) == 1 and data.train_scored.sum() == test.sum()  # the unanswered trial dropped
    assert data.train_targets[data.train_scored].tolist() == (2 * session.target.values[test] - 1).tolist()
    assert all("\\" in item for item in data.stimuli)  # image file names, as the dataset gives them


def test_dandi_000207_test_frames_are_not_the_studied_clips(tmp_path):
    """Its test items are frames of the studied clips, not the clips: the rule cannot read them."""
    from spike_data import write_dandi_000207

    session = preset_session(tmp_path, write_dandi_000207, "dandi000207")
    with pytest.raises(TrainingError, match="disagrees with the rule"):
        StudyTestTask(target="target", n_test=20).prepare([session])


def test_the_train_command_takes_the_task_and_its_names(tmp_path, capsys):
    import json

    from b2m_neuro.cli import main

    session = episode_sessions(1, 6, phases=("learn", "recog"))[0].rename({"task_phase": "stim_phase"})
    derivative = Derivative.create(tmp_path / "b2m-identity", [session], method="identity", params={},
                                   source_datasets=[], progress=False)
    out = tmp_path / "runs" / "x"
    common = ["train", str(derivative.root), "--task", "study_test", "--alpha", "0.1", "--epochs", "1",
              "--hidden-size", "4", "--n-test", "10", "--quiet"]
    assert main([*common, "--phase", "stim_phase", "--phases", "learn,recog", "--episode", "episode",
                 "--target", "old", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["task"] == "study_test" and config["task_options"]["phases"] == ["learn", "recog"]
    assert config["n_test_sequences"] == 10
    capsys.readouterr()
    assert main([*common, "--phase", "stim_phase", "--out", str(tmp_path / "y")]) == 2  # phases not named
    err = capsys.readouterr().err
    assert "stim_phase: the phase variable holds ['learn', 'recog']" in err and "Traceback" not in err
    assert not (tmp_path / "y").exists()

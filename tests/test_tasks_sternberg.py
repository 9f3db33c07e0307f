import numpy as np
import pytest
from test_tasks_recognition import decoded_episodes, episode_sessions, training_keys

from b2m_neuro.errors import TrainingError
from b2m_neuro.tasks import SternbergTask, get_task

PHASES = ("encoding", "probe")


def sternberg_sessions(n_sessions=1, n_episodes=40, *, loads=(1, 3), pool=12, seed=0):
    """Fabricated Sternberg sessions: 1-3 encoding items, one probe, in the set with probability 0.5."""
    return episode_sessions(n_sessions, n_episodes, n_study=loads, n_test=(1, 1), pool=pool, phases=PHASES,
                            label="probe_in", seed=seed)


def test_defaults_name_the_sternberg_phases():
    task = get_task("sternberg")
    assert isinstance(task, SternbergTask) and task.name == "sternberg"
    assert task.phases == PHASES and task.options()["n_test"] == 1000


def test_probe_is_in_iff_it_was_encoded_and_test_trials_are_unseen():
    sessions = sternberg_sessions(2, 40)
    data = SternbergTask(n_test=400, target="probe_in").prepare(sessions)
    train, test = decoded_episodes(data, "train", 4), decoded_episodes(data, "test", 4)
    seen = training_keys(sessions, PHASES)
    assert {(encoded, probe) for encoded, probe, _ in train} == seen
    keys = set()
    for encoded, probe, targets in test:
        assert len(probe) == 1 and targets.tolist() == [1.0 if probe[0] in encoded else -1.0]
        keys.add((encoded, probe))
    assert not keys & seen  # no probe trial of the test set is a participant's trial
    # the loads and the share of in-probes are those of the participants' trials
    loads = sorted({len(encoded) for encoded, _, _ in train})
    assert sorted({len(encoded) for encoded, _, _ in test}) == loads == [1, 2, 3]
    train_in = np.mean([targets[0] == 1 for _, _, targets in train])
    test_in = np.mean([targets[0] == 1 for _, _, targets in test])
    assert abs(test_in - train_in) < 0.1


def test_a_probe_before_the_encoding_items_is_refused():
    session = sternberg_sessions(1, 3)[0]
    phase = session.task_phase.values.astype(object)
    phase[0], phase[np.flatnonzero(session.episode.values == 0)[-1]] = "probe", "encoding"
    with pytest.raises(TrainingError, match="'encoding' trial after a 'probe' trial"):
        SternbergTask(n_test=5).prepare([session.assign(task_phase=("trial", phase))])


def test_a_small_student_learns_sternberg_above_chance():
    import torch

    from b2m_neuro.training import train

    torch.set_num_threads(1)
    sessions = sternberg_sessions(1, 200, loads=(1, 2))
    result = train(sessions, task="sternberg", alpha=0.0, epochs=20, lr=1e-2, batch_size=4, hidden_size=32,
                   dropout=0.0, n_test=300, progress=False)
    data = SternbergTask(n_test=300).prepare(sessions)
    in_share = (data.test_targets[data.test_scored] == 1).mean()
    chance = max(in_share, 1 - in_share)
    print(f"sternberg: test accuracy {result.final_test_accuracy:.3f}, majority-class chance {chance:.3f}")
    # 300 probes: chance plus 0.08 is over three standard errors away (measured: 0.680 vs 0.503)
    assert result.final_test_accuracy > chance + 0.08

"""The memory-based goal-switching task the reference B2M study trained its GRU on.

Rules: an episode has two target candidates (cued first target first) and distractors. The current
target starts as the first candidate; each step shows one stimulus, and the correct response is
accept (1) if it is the current target, else reject (0). Each accepted target switches the current
target to the other candidate. The hidden goal is what the student must learn to track.

Context: both candidates are shown as two input steps at the start of each episode (the first
target, then the second, each as its one-hot stimulus), as the participants were told before each
episode. These cue steps carry neither task loss nor a brain pairing.

Training sequences are the participants' episodes, one-to-one. Their targets follow the task's
rule (:func:`correct_responses` of the episode's cue and stimuli), like the test set's, not the
participant's recorded ``correct_response``: the participant's goal switches only after a *correct*
accept, and the student never sees the participant's answers, so after a participant's error the
recorded targets contradict what the inputs determine (3.4 % of the training labels, in a third of
the episodes, of the simulated demo sessions). With rule targets every training label is what the
inputs say; the brain embedding still reflects the participant, so for a few trials after an error
the teacher's goal and the rule's differ. The test set is
``n_test`` (1,000) sequences generated from the rules and never seen by a participant: candidates
drawn at random, episode lengths drawn from the participants' episodes, and each step's stimulus
role (current target, other candidate, distractor) drawn with the frequencies the participants saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from b2m_neuro.errors import TrainingError
from b2m_neuro.tasks.sequences import (
    DEFAULT_PAIRING,
    EpisodeSequence,
    SequenceLayout,
    TaskData,
    TrialSequenceTask,
    check_positive_int,
    task_data,
    trial_table,
)

MEMORY_VARIABLES = ("stimulus", "first_target", "second_target", "current_target", "episode")


def correct_responses(stimuli: Sequence[int], first_target: int, second_target: int) -> np.ndarray:
    """The rules' answer (1 accept / 0 reject) to each stimulus of one episode.

    Examples
    --------
    >>> correct_responses([2, 0, 0, 1, 0], first_target=0, second_target=1).tolist()
    [0, 1, 0, 1, 1]
    """
    goal, other = first_target, second_target
    answers = np.zeros(len(stimuli), np.int64)
    for step, stimulus in enumerate(stimuli):
        if stimulus == goal:
            answers[step] = 1
            goal, other = other, goal
    return answers


class MemoryTask(TrialSequenceTask):
    """The memory goal-switching task (see the module docstring for the rules and the layout).

    Parameters
    ----------
    n_test
        Number of simulated test sequences (1,000 in the reference).
    time_stride
        Keep every ``time_stride``-th time point of each trial (1 = all 200, the reference).
    pair
        Which trial points enter the transfer loss: ``"pre"`` (default), ``"unscored"``, ``"all"``
        or a boolean mask over the derivative's ``time`` (:mod:`b2m_neuro.tasks.sequences`).
    test_seed
        Seed of the simulated test set; fixed across runs so every run is tested on the same set.
    """

    name = "memory"

    def __init__(self, *, n_test: int = 1000, time_stride: int = 1, pair: str | Sequence[bool] = DEFAULT_PAIRING,
                 test_seed: int = 0) -> None:
        check_positive_int(n_test, "n_test")
        super().__init__(time_stride=time_stride, pair=pair, test_seed=test_seed)
        self.n_test = n_test

    @property
    def required_variables(self) -> tuple[str, ...]:
        return MEMORY_VARIABLES

    def options(self) -> dict:
        return {"n_test": self.n_test, "time_stride": self.time_stride, "pair": self.pair, "test_seed": self.test_seed}

    def prepare(self, sessions: Sequence[xr.Dataset]) -> TaskData:
        """Training sequences from the participants' episodes; a simulated, unseen test set."""
        layout = self._check(sessions)
        tables = [_trial_table_of(session) for session in sessions]
        train = [episode for session, table in zip(sessions, tables) for episode in self._episodes(session, layout)]
        episodes = [episode for table in tables for _, episode in table.groupby("episode", sort=False)]
        test = self._simulated_test_set(episodes, layout)
        return task_data(layout, train, test)

    def _stimulus_values(self, session: xr.Dataset) -> set:
        table = _trial_table_of(session)
        return set(np.unique(table[["stimulus", "first_target", "second_target"]].to_numpy()).tolist())

    def _targets(self, episode: pd.DataFrame, session: xr.Dataset) -> np.ndarray:
        """The rule's answers to the episode's stimuli (see the module docstring)."""
        return correct_responses(episode["stimulus"].to_numpy(), episode["first_target"].iloc[0],
                                 episode["second_target"].iloc[0])

    def _cue(self, trials: pd.DataFrame, layout: SequenceLayout) -> np.ndarray:
        return layout.one_hot(np.array([trials["first_target"].iloc[0], trials["second_target"].iloc[0]]))

    def _simulated_test_set(self, episodes: list[pd.DataFrame], layout: SequenceLayout) -> list[EpisodeSequence]:
        rng = np.random.default_rng(self.test_seed)
        lengths = np.array([len(episode) for episode in episodes])
        roles = _role_frequencies(pd.concat(episodes))
        seen = {_episode_key(episode) for episode in episodes}
        stimuli = np.array(layout.stimuli)
        test = []
        for _ in range(100 * self.n_test):
            first, second = rng.choice(stimuli, size=2, replace=False).tolist()
            shown = _draw_episode(rng, int(rng.choice(lengths)), first, second, stimuli, roles)
            key = (first, second, tuple(shown))
            if key in seen:
                continue
            seen.add(key)
            cue = layout.one_hot(np.array([first, second]))
            test.append(layout.sequence(cue, shown, correct_responses(shown, first, second)))
            if len(test) == self.n_test:
                return test
        raise TrainingError(f"could not draw {self.n_test} distinct unseen test episodes", field="n_test",
                            fix="ask for fewer test sequences")


def _trial_table_of(session: xr.Dataset) -> pd.DataFrame:
    return trial_table(session, MEMORY_VARIABLES)


def _episode_key(episode: pd.DataFrame) -> tuple:
    return (episode["first_target"].iloc[0], episode["second_target"].iloc[0], tuple(episode["stimulus"]))


def _role_frequencies(trials: pd.DataFrame) -> np.ndarray:
    """How often the stimulus was the current target, the other candidate, or a distractor."""
    is_target = trials["stimulus"] == trials["current_target"]
    is_candidate = (trials["stimulus"] == trials["first_target"]) | (trials["stimulus"] == trials["second_target"])
    counts = np.array([is_target.sum(), (is_candidate & ~is_target).sum(), (~is_candidate).sum()], float)
    return counts / counts.sum()


def _draw_episode(rng: np.random.Generator, length: int, first, second, stimuli: np.ndarray,
                  roles: np.ndarray) -> np.ndarray:
    """One episode's stimuli: each step's role drawn from ``roles``, the goal following the rules."""
    distractors = stimuli[(stimuli != first) & (stimuli != second)]
    if len(distractors) == 0:
        roles = np.array([roles[0], roles[1] + roles[2], 0.0])
        distractors = np.array([second])
    step_roles = rng.choice(3, size=length, p=roles).tolist()
    step_distractors = distractors[rng.integers(0, len(distractors), size=length)].tolist()
    goal, other = first, second
    shown = []
    for role, distractor in zip(step_roles, step_distractors):
        stimulus = (goal, other, distractor)[role]
        shown.append(stimulus)
        if stimulus == goal:
            goal, other = other, goal
    return np.array(shown)

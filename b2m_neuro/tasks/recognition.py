"""Study-test recognition memory: study a list of items, then answer old or new to test items.

Rules. An episode (a block) has a study phase, then a test phase. Each trial shows one item, a
stimulus identity as the dataset gives it (an image file name, a number ...). A test item is
*old* (accept, +1) if it was shown in the episode's study phase, else *new* (reject, -1); study
items are not answered. What the student must learn is to hold the studied items until the test.

Layout of an episode: the study trials (their time points, no task loss), one step showing the
"test phase begins" marker (an input element of its own; no task loss, no brain pairing), then the
test trials, each scored at its response point. Input coding, ``time_stride`` and the brain pairing
(``pair``, the same points of study and test trials) are those of :mod:`b2m_neuro.tasks.sequences`.

Variables along ``trial`` (their names are options): the phase (``phase``, whose two values are
``phases``, study first), the stimulus identity (``stimulus``) and, when a session holds several
blocks, the episode (``episode``; ``None``, the default, makes each session one episode, as in the
DANDI recognition datasets 000004 and 000207 and their presets). A recorded old/new label
(``target``: 1 old, 0 new; any value on study trials) is optional: the training targets follow
the rule, and a label given is checked against the rule on every test trial, so that a stimulus
variable which does not identify the items (a category, say) is refused instead of teaching the
student a wrong rule.

Training sequences are the participants' episodes, one-to-one. The test set is ``n_test`` episodes
drawn from the rule, none seen by a participant: each takes the shape of a participant's episode
picked at random (study-list length, the order of old and new test items), so the test set keeps
the participants' loads and share of old items; its study items are drawn without repetition from
the stimulus pool (every stimulus in the derivative), its old test items from those and its new
ones from the rest of the pool. No test episode equals a training episode (such a draw is drawn
again in the same shape; a shape whose every variant was trained on is left out, with a warning).
Test episodes are independent draws, so with a small pool two of them can be the same (a pool of
12 pictures has only 12 load-1 Sternberg trials whose probe is in).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

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
    join_sequences,
    session_label,
    task_data,
    trial_table,
    variable_values,
)

#: Default name of the trial variable holding the phase ("phase" itself is the spike adapter's
#: coordinate along ``time``, pre- or post-stimulus).
DEFAULT_PHASE_VARIABLE = "task_phase"
# Draws of one test episode's shape before its unseen variants count as none left.
_TRIES_PER_EPISODE = 1000


@dataclass
class StudyTestEpisode:
    """One episode's items in order, and the brain embedding of its study and test trials."""

    study: np.ndarray
    test: np.ndarray
    brain: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def old(self) -> np.ndarray:
        """The rule: a test item is old iff it was studied in this episode."""
        studied = set(self.study.tolist())
        return np.array([item in studied for item in self.test.tolist()], bool)

    @property
    def key(self) -> tuple:
        return tuple(self.study.tolist()), tuple(self.test.tolist())

    @property
    def shape(self) -> tuple:
        """What a drawn test episode copies: the study-list length and the old/new order of the test."""
        return len(self.study), tuple(self.old.tolist())


class StudyTestTask(TrialSequenceTask):
    """Study-test recognition memory (see the module docstring for the rules and the layout).

    Parameters
    ----------
    stimulus, phase
        Names of the trial variables holding the item shown and the phase.
    episode
        Name of the trial variable numbering the blocks (episodes), or ``None``: each session is one.
    phases
        The phase variable's values for the study and the test phase, in that order (also given
        as one string ``"study,test"``); other values are refused.
    target
        Optional name of a recorded old/new label (1 old / 0 new on test trials), checked against
        the rule; ``None`` (default): the rule alone.
    n_test
        Number of test episodes drawn from the rule.
    time_stride
        Keep every ``time_stride``-th time point of each trial (1 = all).
    pair
        Which trial points enter the transfer loss: ``"pre"`` (default), ``"unscored"``, ``"all"``
        or a boolean mask over the derivative's ``time`` (:mod:`b2m_neuro.tasks.sequences`).
    test_seed
        Seed of the drawn test set; fixed across runs so every run is tested on the same set.

    Examples
    --------
    >>> task = StudyTestTask(phase="stim_phase", phases=("learn", "recog"), stimulus="image")
    >>> task.options()["phases"]
    ['learn', 'recog']
    """

    name = "study_test"
    n_markers = 1

    def __init__(self, *, stimulus: str = "stimulus", phase: str = DEFAULT_PHASE_VARIABLE,
                 phases: Sequence[str] | str = ("study", "test"), episode: str | None = None, target: str | None = None,
                 n_test: int = 200, time_stride: int = 1, pair: str | Sequence[bool] = DEFAULT_PAIRING,
                 test_seed: int = 0) -> None:
        check_positive_int(n_test, "n_test")
        super().__init__(stimulus=stimulus, target=target, episode=episode, time_stride=time_stride, pair=pair,
                         test_seed=test_seed)
        self.phase = phase
        self.phases = _check_phases(phases)
        self.n_test = n_test

    @property
    def required_variables(self) -> tuple[str, ...]:
        return (self.stimulus, self.phase) + (() if self.episode is None else (self.episode,))

    def options(self) -> dict:
        return {"stimulus": self.stimulus, "phase": self.phase, "phases": list(self.phases), "episode": self.episode,
                "target": self.target, "n_test": self.n_test, "time_stride": self.time_stride, "pair": self.pair,
                "test_seed": self.test_seed}

    def prepare(self, sessions: Sequence[xr.Dataset]) -> TaskData:
        """Training sequences from the participants' episodes; a test set drawn from the rule."""
        layout = self._check(sessions)
        episodes = [episode for session in sessions for episode in self._study_test_episodes(session, layout)]
        train = [_sequence(layout, episode) for episode in episodes]
        test = draw_unseen(episodes, layout.stimuli, self.n_test, seed=self.test_seed, field=self.stimulus)
        return task_data(layout, train, [_sequence(layout, episode) for episode in test])

    def _study_test_episodes(self, session: xr.Dataset, layout: SequenceLayout) -> list[StudyTestEpisode]:
        where = session_label(session)
        table = trial_table(session, self.required_variables)
        is_test = self._is_test(table[self.phase].to_numpy(), where)
        stimuli = table[self.stimulus].to_numpy()
        recorded = recorded_targets(session, self.target, "old/new")
        embedding = session["embedding"].transpose("trial", "time", "latent").to_numpy()[:, layout.time_index]
        embedding = embedding.astype(np.float32)
        episodes = []
        for label, rows in self._blocks(table):
            study, test = rows[~is_test[rows]], rows[is_test[rows]]
            self._check_phase_order(label, is_test[rows], where)
            episode = StudyTestEpisode(stimuli[study], stimuli[test], (embedding[study], embedding[test]))
            if recorded is not None:
                check_recorded(recorded[test], episode, label, file=where,
                               fields=(self.target, self.stimulus))
            episodes.append(episode)
        return episodes

    def _blocks(self, table: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
        """``(label, trial rows)`` per episode; the whole session when no episode variable is named."""
        if self.episode is None:
            return [("the session (one episode: no episode variable named)", table.index.to_numpy())]
        groups = table.groupby(self.episode, sort=False)
        return [(f"episode {label!r}", rows.index.to_numpy()) for label, rows in groups]

    def _is_test(self, phase: np.ndarray, where: str) -> np.ndarray:
        phase = phase.astype(str)
        unknown = sorted(set(phase.tolist()) - set(self.phases))
        if unknown:
            raise TrainingError(f"the phase variable holds {unknown}, neither the study nor the test phase "
                                f"{list(self.phases)}", file=where, field=self.phase,
                                fix="drop those trials in the teacher spec, or name the study and test values "
                                    "with phases=(study, test)")
        return phase == self.phases[1]

    def _check_phase_order(self, label: str, is_test: np.ndarray, where: str) -> None:
        study_name, test_name = self.phases
        field = self.episode or self.phase
        if is_test.all() or not is_test.any():
            missing = study_name if is_test.all() else test_name
            raise TrainingError(f"{label} has no {missing!r} trials", file=where, field=field,
                                fix=f"give every episode {study_name!r} trials, then {test_name!r} trials")
        if (np.diff(is_test.astype(int)) < 0).any():
            raise TrainingError(f"{label} has a {study_name!r} trial after a {test_name!r} trial",
                                file=where, field=field,
                                fix="one study phase then one test phase per episode: name the variable that "
                                    "numbers the blocks as episode=...")



def recorded_targets(session: xr.Dataset, target: str | None, kind: str) -> np.ndarray | None:
    """The session's recorded ``kind`` label per trial (variable ``target``), None without a target;
    TrainingError naming the variable when the session lacks it."""
    if target is None:
        return None
    if target not in session.variables or session[target].dims != ("trial",):
        raise TrainingError(f"the session has no trial variable {target!r} (the recorded {kind} label)",
                            file=session_label(session), field=target,
                            fix="embed with a teacher spec that keeps it, or leave target out to use the rule")
    return variable_values(session, target)


def check_recorded(recorded: np.ndarray, episode: StudyTestEpisode, label: str, *, file: str, fields: tuple[str, str]) -> None:
    """Refuse a recorded label (1 old or in / 0 new or out) that is not binary or disagrees with the rule."""
    target, stimulus = fields
    if not np.isin(recorded, (0, 1)).all():
        raise TrainingError(f"the recorded label must be 1 (old, in) or 0 (new, out), found "
                            f"{sorted(set(recorded.tolist()), key=str)} in {label}", file=file, field=target,
                            fix="map the codes to 1/0 in the teacher spec, or leave target out")
    wrong = np.flatnonzero(recorded != episode.old)
    if wrong.size:
        raise TrainingError(
            f"the recorded label disagrees with the rule (old iff studied in the episode) at {wrong.size} of "
            f"{len(recorded)} tested items of {label}, e.g. item {episode.test[wrong[0]]!r} labelled "
            f"{'old' if recorded[wrong[0]] else 'new'}", file=file, field=f"{target}, {stimulus}",
            fix="name the variable that identifies the items (each image, not its category) as the stimulus")


def draw_unseen(episodes: list[StudyTestEpisode], stimuli: list, n_test: int, *, seed: int, field: str) -> list[StudyTestEpisode]:
    """``n_test`` episodes drawn from the rule in the shapes of ``episodes``, none equal to one of them.

    A shape whose every variant is a training episode (with a small pool, e.g. the load-1 Sternberg
    trials whose probe is in: one per picture) is left out of the test set, with a warning; if no
    shape is left, a :class:`TrainingError`.
    """
    rng = np.random.default_rng(seed)
    pool = np.array(stimuli, dtype=object)
    seen = {episode.key for episode in episodes}
    templates, exhausted = list(episodes), []
    drawn = []
    while len(drawn) < n_test:
        if not templates:
            raise TrainingError(f"no unseen test episode can be drawn from {len(pool)} stimuli: the training "
                                "episodes hold (nearly) every episode of each shape", field=field,
                                fix="use a derivative with more distinct stimuli")
        template = templates[rng.integers(len(templates))]
        episode = _draw_unseen_like(rng, template, pool, seen, field=field)
        if episode is None:
            exhausted.append(template.shape)
            templates = [other for other in templates if other.shape != template.shape]
            continue
        drawn.append(episode)
    if exhausted:
        shapes = "; ".join(f"{n_study} studied, old pattern {''.join('o' if old else 'n' for old in pattern)}"
                           for n_study, pattern in exhausted)
        warnings.warn(f"{field}: the test set leaves out episodes of these shapes, whose every variant is a training "
                      f"episode: {shapes}. Fix: use a derivative with more distinct stimuli to test them too",
                      UserWarning, stacklevel=3)
    return drawn


def _draw_unseen_like(rng: np.random.Generator, template: StudyTestEpisode, pool: np.ndarray, seen: set, *,
                      field: str) -> StudyTestEpisode | None:
    for _ in range(_TRIES_PER_EPISODE):
        episode = _draw_like(rng, template, pool, field=field)
        if episode.key not in seen:
            return episode
    return None


def _check_phases(phases: Sequence[str] | str) -> tuple[str, str]:
    values = phases.split(",") if isinstance(phases, str) else list(phases)
    values = [str(value).strip() for value in values]
    if len(values) != 2 or values[0] == values[1]:
        raise TrainingError(f"phases must name two different values (study, then test), got {phases!r}",
                            field="phases", fix="pass e.g. phases=('study', 'test')")
    return values[0], values[1]


def _sequence(layout: SequenceLayout, episode: StudyTestEpisode) -> EpisodeSequence:
    """Study trials (unscored), the test-phase marker, then the test trials scored old/new."""
    brain_study, brain_test = episode.brain or (None, None)
    no_cue = np.zeros((0, layout.n_inputs), np.float32)
    study = layout.sequence(no_cue, episode.study, np.zeros(len(episode.study)), brain=brain_study, scored=False)
    test = layout.sequence(layout.marker(), episode.test, episode.old.astype(int), brain=brain_test)
    return join_sequences(study, test)


def _draw_like(rng: np.random.Generator, template: StudyTestEpisode, pool: np.ndarray, *, field: str) -> StudyTestEpisode:
    """A new episode of the template's shape: its study-list length and its old/new test order."""
    old = template.old
    study = _choose(rng, pool, len(template.study))
    studied = set(study.tolist())
    rest = np.array([item for item in pool.tolist() if item not in studied], dtype=object)
    if not old.all() and len(rest) == 0:
        raise TrainingError(f"all {len(pool)} stimuli are needed for a study list, none is left to test as new",
                            field=field, fix="use a derivative with more distinct stimuli than items per study list")
    test = np.empty(len(old), dtype=object)
    test[old] = _choose(rng, study, int(old.sum()))
    test[~old] = _choose(rng, rest, int((~old).sum()))
    return StudyTestEpisode(study, test)


def _choose(rng: np.random.Generator, items: np.ndarray, n: int) -> np.ndarray:
    """``n`` of ``items`` in random order, without repetition while there are enough."""
    return items[rng.choice(len(items), size=n, replace=n > len(items))] if n else items[:0]

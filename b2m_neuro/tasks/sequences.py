"""Trial-sequence tasks: the student sees one stimulus per trial and answers accept or reject.

A derivative session holds ``embedding (trial, time, latent)``: per trial, pre-stimulus points
(nothing on screen) then post-stimulus points (the stimulus on screen), plus task variables along
``trial``. A task turns the sessions into padded training and test arrays (:class:`TaskData`):

- one sequence per episode (block), trials in order; per time point the input is the one-hot
  stimulus while it is on screen, else the "no stimulus" element (the last input);
- the task loss is scored at the last time point of each trial (the response, as the
  post-stimulus window ends at the reaction time), against +1 (accept) or -1 (reject);
- the transfer loss pairs the student's aligned layer with the brain embedding of the same time
  point at the points ``pair`` selects (:data:`PAIRINGS`).

Pairing (``pair=``): ``"pre"`` (default) pairs only the pre-stimulus points; ``"unscored"`` every
point but the scored response points; ``"all"`` every trial point (the paper's reading, kept for
reproduction); or a boolean mask over the derivative's ``time`` coordinate (one value per time
point, before ``time_stride``). Why ``"pre"`` by default: in the reference GRU the aligned layer is
also the only input of the readout, so pulling it toward the brain exactly where the task is
scored competes with the task. On the known-answer benchmark (a teacher carrying the hidden goal),
pairing every point gave no benefit over alpha 0, pairing pre-stimulus points a clear one (see the
README's "Which time points are paired" for the numbers).

Which points are pre-stimulus: those whose ``time`` coordinate is negative (the spike adapter
aligns time to stimulus onset); when no time is negative (e.g. a plain index), the first half of
the time axis, as in the reference layout (100 pre-stimulus then 100 post-stimulus points).
``time_stride`` keeps every ``time_stride``-th point, counted back from the last one so the
response point is always kept (1 = every point, the reference).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from b2m_neuro._util.time_axis import pre_stimulus
from b2m_neuro.errors import TrainingError

#: ``pair=`` names: which trial time points enter the transfer loss (or pass a boolean mask over ``time``).
PAIRINGS = ("pre", "unscored", "all")
DEFAULT_PAIRING = "pre"


@dataclass
class TaskData:
    """Padded arrays the training loop consumes (numpy; sequences padded at the end).

    ``inputs (n, time, n_inputs)`` float32, ``targets (n, time)`` float32 (+1 accept / -1 reject,
    0 where not scored), ``scored (n, time)`` bool (task loss and accuracy here), ``lengths (n,)``.
    Training sequences also carry ``brain (n, time, latent)`` float32 and ``paired (n, time)`` bool
    (transfer loss here).
    """

    n_inputs: int
    latent_dim: int
    train_inputs: np.ndarray
    train_targets: np.ndarray
    train_scored: np.ndarray
    train_lengths: np.ndarray
    train_brain: np.ndarray
    train_paired: np.ndarray
    test_inputs: np.ndarray
    test_targets: np.ndarray
    test_scored: np.ndarray
    test_lengths: np.ndarray
    stimuli: list


@dataclass
class EpisodeSequence:
    inputs: np.ndarray
    targets: np.ndarray
    scored: np.ndarray
    brain: np.ndarray | None = None
    paired: np.ndarray | None = None


class TrialSequenceTask:
    """Generic trial-sequence task, for teachers whose task cannot be simulated.

    Parameters
    ----------
    stimulus, target, episode
        Names of the task variables (along ``trial``) holding the stimulus shown, the binary target
        (1 accept / 0 reject) and the episode or block the trial belongs to.
    test_fraction
        Fraction of the episodes (over all sessions) held out for evaluation.
    time_stride
        Keep every ``time_stride``-th time point of each trial (1 = all, the reference).
    pair
        Which trial points enter the transfer loss: ``"pre"`` (default), ``"unscored"``, ``"all"``,
        or a boolean mask over the derivative's ``time`` (see the module docstring).
    test_seed
        Seed of the held-out split; fixed across runs so every run is tested on the same episodes.
    """

    name = "trials"
    #: Marker input elements after the "no stimulus" element (e.g. a phase change), none here.
    n_markers = 0

    def __init__(self, *, stimulus: str = "stimulus", target: str = "correct_response", episode: str = "episode",
                 test_fraction: float = 0.2, time_stride: int = 1, pair: str | Sequence[bool] = DEFAULT_PAIRING,
                 test_seed: int = 0) -> None:
        if not 0.0 < test_fraction < 1.0:
            raise TrainingError(f"test_fraction must lie in (0, 1), got {test_fraction}", field="test_fraction",
                                fix="hold out a fraction of the episodes such as 0.2")
        check_positive_int(time_stride, "time_stride")
        self.stimulus, self.target, self.episode = stimulus, target, episode
        self.test_fraction = test_fraction
        self.time_stride = time_stride
        self.pair = _check_pairing(pair)
        self.test_seed = test_seed

    @property
    def required_variables(self) -> tuple[str, ...]:
        return (self.stimulus, self.target, self.episode)

    def options(self) -> dict:
        """The options that rebuild this task (stored in a run's config)."""
        return {"stimulus": self.stimulus, "target": self.target, "episode": self.episode,
                "test_fraction": self.test_fraction, "time_stride": self.time_stride, "pair": self.pair,
                "test_seed": self.test_seed}

    def prepare(self, sessions: Sequence[xr.Dataset]) -> TaskData:
        """Build training and held-out test sequences from derivative sessions."""
        layout = self._check(sessions)
        episodes = [episode for session in sessions for episode in self._episodes(session, layout)]
        if len(episodes) < 2:
            raise TrainingError(f"found {len(episodes)} episode(s); a held-out split needs at least 2",
                                field=self.episode, fix="use more sessions or an episode column with several values")
        order = np.random.default_rng(self.test_seed).permutation(len(episodes))
        n_test = min(max(1, round(self.test_fraction * len(episodes))), len(episodes) - 1)
        train = [episodes[i] for i in sorted(order[n_test:])]
        test = [episodes[i] for i in sorted(order[:n_test])]
        return task_data(layout, train, test)

    # --- shared by the memory task -----------------------------------------------------------

    def _cue(self, trials: pd.DataFrame, layout: SequenceLayout) -> np.ndarray:
        """Input steps shown before an episode's first trial (none for the generic task)."""
        return np.zeros((0, layout.n_inputs), np.float32)

    def _check(self, sessions: Sequence[xr.Dataset]) -> SequenceLayout:
        if len(sessions) == 0:
            raise TrainingError("the derivative has no sessions", field="sessions", fix="embed at least one session")
        for session in sessions:
            _check_session(session, self.required_variables)
        time_sizes = {session.sizes["time"] for session in sessions}
        if len(time_sizes) != 1:
            raise TrainingError(f"sessions have different numbers of time points per trial: {sorted(time_sizes)}",
                                field="time", fix="embed all sessions with one teacher spec")
        latent_sizes = {session.sizes["latent"] for session in sessions}
        if len(latent_sizes) != 1:
            raise TrainingError(f"sessions have different embedding widths: {sorted(latent_sizes)}", field="latent",
                                fix="embed all sessions together (one multi-session embedding)")
        stimuli = sorted(set().union(*(self._stimulus_values(session) for session in sessions)))
        return SequenceLayout.build(sessions[0], stimuli, self.time_stride, self.pair, n_markers=self.n_markers)

    def _stimulus_values(self, session: xr.Dataset) -> set:
        return set(variable_values(session, self.stimulus).tolist())

    def _targets(self, episode: pd.DataFrame, session: xr.Dataset) -> np.ndarray:
        """An episode's training targets (1 accept / 0 reject): the target variable as recorded."""
        targets = episode[self.target].to_numpy()
        if not np.isin(targets, (0, 1)).all():
            raise TrainingError(f"the target must be 0 (reject) or 1 (accept), found {sorted(set(targets.tolist()))}",
                                file=session_label(session), field=self.target, fix="choose a binary target variable")
        return targets

    def _episodes(self, session: xr.Dataset, layout: SequenceLayout) -> list[EpisodeSequence]:
        trials = trial_table(session, self.required_variables)
        embedding = session["embedding"].transpose("trial", "time", "latent").to_numpy()[:, layout.time_index]
        sequences = []
        for _, episode in trials.groupby(self.episode, sort=False):
            rows = episode.index.to_numpy()
            sequences.append(layout.sequence(
                self._cue(episode, layout), episode[self.stimulus].to_numpy(), self._targets(episode, session),
                brain=embedding[rows].astype(np.float32)))
        return sequences


class SequenceLayout:
    """Time points kept per trial, which of them show the stimulus and which are paired with the
    brain, and the input coding: one element per stimulus, then "no stimulus", then the markers."""

    def __init__(self, time_index: np.ndarray, on_screen: np.ndarray, paired: np.ndarray, stimuli: list, *,
                 n_markers: int = 0) -> None:
        self.time_index = time_index
        self.on_screen = on_screen
        self.paired = paired
        self.stimuli = stimuli
        self.blank = len(stimuli)
        self.n_inputs = len(stimuli) + 1 + n_markers
        self._code = {value: i for i, value in enumerate(stimuli)}

    @classmethod
    def build(cls, session: xr.Dataset, stimuli: list, stride: int, pair: str | list[bool], *,
              n_markers: int = 0) -> SequenceLayout:
        n_time = session.sizes["time"]
        time_index = np.arange(n_time - 1, -1, -stride)[::-1]
        on_screen = ~pre_stimulus(session["time"].to_numpy() if "time" in session.coords else None, n_time)
        paired = _pairing_mask(pair, on_screen, where=session_label(session))[time_index]
        if not paired.any():
            raise TrainingError(f"pair={pair!r} selects none of the {len(time_index)} time points kept per trial",
                                file=session_label(session), field="pair",
                                fix="pair more time points, or keep more of them (a smaller time_stride)")
        return cls(time_index, on_screen[time_index], paired, stimuli, n_markers=n_markers)

    def one_hot(self, values: np.ndarray) -> np.ndarray:
        """``(n, n_inputs)`` one-hot rows of stimulus values."""
        rows = np.zeros((len(values), self.n_inputs), np.float32)
        rows[np.arange(len(values)), [self._code[value] for value in values]] = 1.0
        return rows

    def marker(self, index: int = 0) -> np.ndarray:
        """One input step showing marker ``index`` (nothing else)."""
        step = np.zeros((1, self.n_inputs), np.float32)
        step[0, self.blank + 1 + index] = 1.0
        return step

    def sequence(self, cue: np.ndarray, stimuli: np.ndarray, targets: np.ndarray, *,
                 brain: np.ndarray | None = None, scored: bool = True) -> EpisodeSequence:
        """Lay out one episode: cue steps, then per trial its time points; each trial's response
        point is scored unless ``scored=False``."""
        n_trials, n_points = len(stimuli), len(self.time_index)
        trial_inputs = np.zeros((n_trials, n_points, self.n_inputs), np.float32)
        trial_inputs[:, ~self.on_screen, self.blank] = 1.0
        trial_inputs[:, self.on_screen] = self.one_hot(stimuli)[:, None, :]
        response = np.zeros((n_trials, n_points), bool)
        response[:, -1] = scored
        trial_targets = np.where(response, np.where(np.asarray(targets) == 1, 1.0, -1.0)[:, None], 0.0)
        n_cue = len(cue)
        sequence = EpisodeSequence(
            inputs=np.concatenate([cue, trial_inputs.reshape(-1, self.n_inputs)]),
            targets=np.concatenate([np.zeros(n_cue), trial_targets.ravel()]).astype(np.float32),
            scored=np.concatenate([np.zeros(n_cue, bool), response.ravel()]),
        )
        if brain is not None:
            sequence.brain = np.concatenate([np.zeros((n_cue, brain.shape[-1]), np.float32),
                                             brain.reshape(-1, brain.shape[-1])])
            sequence.paired = np.concatenate([np.zeros(n_cue, bool), np.tile(self.paired, n_trials)])
        return sequence


def join_sequences(first: EpisodeSequence, second: EpisodeSequence) -> EpisodeSequence:
    """One sequence: ``first``'s steps, then ``second``'s (brain and pairing kept if both have them)."""
    joined = EpisodeSequence(*(np.concatenate([getattr(first, name), getattr(second, name)])
                         for name in ("inputs", "targets", "scored")))
    if first.brain is not None and second.brain is not None:
        joined.brain = np.concatenate([first.brain, second.brain])
        joined.paired = np.concatenate([first.paired, second.paired])
    return joined


def task_data(layout: SequenceLayout, train: list[EpisodeSequence], test: list[EpisodeSequence]) -> TaskData:
    latent_dim = train[0].brain.shape[-1]
    train_arrays = _pad(train, ("inputs", "targets", "scored", "brain", "paired"))
    test_arrays = _pad(test, ("inputs", "targets", "scored"))
    return TaskData(
        n_inputs=layout.n_inputs, latent_dim=latent_dim,
        train_inputs=train_arrays["inputs"], train_targets=train_arrays["targets"],
        train_scored=train_arrays["scored"], train_lengths=train_arrays["lengths"],
        train_brain=train_arrays["brain"], train_paired=train_arrays["paired"],
        test_inputs=test_arrays["inputs"], test_targets=test_arrays["targets"],
        test_scored=test_arrays["scored"], test_lengths=test_arrays["lengths"],
        stimuli=list(layout.stimuli),
    )


def _pad(sequences: list[EpisodeSequence], fields: tuple[str, ...]) -> dict[str, np.ndarray]:
    lengths = np.array([len(sequence.inputs) for sequence in sequences])
    arrays = {"lengths": lengths}
    for field in fields:
        first = getattr(sequences[0], field)
        padded = np.zeros((len(sequences), lengths.max(), *first.shape[1:]), first.dtype)
        for i, sequence in enumerate(sequences):
            padded[i, : lengths[i]] = getattr(sequence, field)
        arrays[field] = padded
    return arrays


def _check_session(session: xr.Dataset, variables: tuple[str, ...]) -> None:
    where = session_label(session)
    if not isinstance(session, xr.Dataset) or "embedding" not in session:
        raise TrainingError("the session has no 'embedding' variable", file=where, field="embedding",
                            fix="pass a derivative made by b2m_neuro.embed / Derivative.create")
    dims = set(session["embedding"].dims)
    if dims != {"trial", "time", "latent"}:
        raise TrainingError(f"trial-sequence tasks need an embedding over (trial, time, latent), got {tuple(session['embedding'].dims)}",
                            file=where, field="embedding", fix="use a derivative of trial-aligned spike data (kind 'trials')")
    missing = [name for name in variables if name not in session.variables]
    if missing:
        raise TrainingError(f"the session lacks the task variable(s) {', '.join(missing)}", file=where,
                            field=", ".join(missing),
                            fix="embed with a teacher spec that keeps these trial columns, or name the right columns in the task options")
    for name in variables:
        if session[name].dims != ("trial",):
            raise TrainingError(f"task variable {name!r} must lie along 'trial', got dims {session[name].dims}",
                                file=where, field=name, fix="store one value per trial")
        if session[name].dtype.kind == "f" and np.isnan(session[name].to_numpy()).any():
            raise TrainingError(f"task variable {name!r} has missing (NaN) values", file=where, field=name,
                                fix="drop trials with missing task variables before embedding")


def variable_values(session: xr.Dataset, name: str) -> np.ndarray:
    values = session[name].to_numpy()
    if values.dtype.kind == "f" and np.all(values == np.round(values)):
        values = values.astype(np.int64)
    if values.dtype.kind == "b":
        values = values.astype(np.int64)
    return values


def trial_table(session: xr.Dataset, variables: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame({name: variable_values(session, name) for name in dict.fromkeys(variables)})


def session_label(session: xr.Dataset) -> str:
    source = getattr(session, "encoding", {}).get("source")
    if source:
        return str(source)
    attrs = getattr(session, "attrs", {})
    label = "_".join(f"{key}-{attrs[key]}" for key in ("subject", "session") if attrs.get(key))
    return f"session {label}" if label else "session"


def _check_pairing(pair: str | Sequence[bool]) -> str | list[bool]:
    """``pair`` as given (a name of :data:`PAIRINGS`) or as a plain list of booleans (a mask)."""
    if isinstance(pair, str):
        if pair not in PAIRINGS:
            raise TrainingError(f"unknown pairing {pair!r}", field="pair",
                                fix=f"choose one of: {', '.join(PAIRINGS)}, or pass a boolean mask over the derivative's time")
        return pair
    mask = np.asarray(pair)
    if mask.ndim != 1 or mask.dtype.kind != "b":
        raise TrainingError(f"a pairing mask must be a 1-d sequence of booleans, got {mask.dtype} of shape {mask.shape}",
                            field="pair", fix="pass one True/False per time point of the derivative, or a name such as 'pre'")
    return mask.tolist()


def _pairing_mask(pair: str | list[bool], on_screen: np.ndarray, *, where: str) -> np.ndarray:
    """Which of the derivative's time points (before the stride) are paired with the brain."""
    n_time = len(on_screen)
    if pair == "pre":
        return ~on_screen
    if pair == "unscored":
        return np.arange(n_time) < n_time - 1
    if pair == "all":
        return np.ones(n_time, bool)
    if len(pair) != n_time:
        raise TrainingError(f"the pairing mask has {len(pair)} values but the derivative has {n_time} time points",
                            file=where, field="pair", fix="pass one True/False per time point of the derivative")
    return np.asarray(pair, bool)


def check_positive_int(value: int, field: str) -> None:
    if int(value) != value or value < 1:
        raise TrainingError(f"{field} must be a positive integer, got {value}", field=field, fix=f"pass {field}=1 or more")

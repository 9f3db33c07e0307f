"""Sternberg working memory: encoding items, a maintenance period, a probe; answer in or out.

Rules. A trial shows its encoding items one after the other (the load: 1 to 3 in the public
datasets, or as the data give it), then, after a maintenance period with nothing on screen, a
probe. The probe is *in* (accept, +1) if it was one of the trial's encoding items, else *out*
(reject, -1). This is the study-test rule over a short list (:mod:`b2m_neuro.tasks.recognition`).

Layout, as the public datasets store a Sternberg trial (DANDI 000469 and 000673 and their presets):
one derivative trial per Sternberg trial, its time points around the probe (the end of the
maintenance period before probe onset, the probe after it), and the trial's items as variables:
``encoding`` (one variable per encoding slot, ``no_item`` where a trial of lower load has none)
and ``probe``. Each trial is one sequence: one input step per encoding item (its one-hot picture;
no task loss, no brain pairing), then the trial's time points (nothing on screen before probe
onset: the maintenance period; the probe after), scored at the last one. With the default pairing
``"pre"`` the brain is paired over the maintenance period. (Data with one trial per item shown and
a phase variable fit :class:`~b2m_neuro.tasks.recognition.StudyTestTask` with
``phases=("encoding", "probe")``.)

Training sequences are the participants' trials. The test set is ``n_test`` trials drawn from the
rule, each in the shape of a participant's trial picked at random (its load, probe in or out): the
encoding items drawn without repetition from the pictures of the derivative, the probe one of them
or another picture; none equals a participant's trial (:func:`~b2m_neuro.tasks.recognition.draw_unseen`).
A recorded in/out label (``target``, 1 in / 0 out) is optional and checked against the rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from b2m_neuro.errors import TrainingError
from b2m_neuro.tasks.recognition import StudyTestEpisode, check_recorded, draw_unseen, recorded_targets
from b2m_neuro.tasks.sequences import (
    DEFAULT_PAIRING,
    EpisodeSequence,
    SequenceLayout,
    TaskData,
    TrialSequenceTask,
    check_positive_int,
    session_label,
    task_data,
    trial_table,
)


class SternbergTask(TrialSequenceTask):
    """Sternberg working memory (see the module docstring for the rules and the layout).

    Parameters
    ----------
    encoding
        Names of the trial variables holding the encoding items, in order (also as one string
        ``"encoding_1,encoding_2,encoding_3"``).
    probe
        Name of the trial variable holding the probe.
    no_item
        The value of an empty encoding slot (0 in the DANDI datasets' picture ids).
    target
        Optional name of a recorded in/out label (1 in / 0 out), checked against the rule;
        ``None`` (default): the rule alone.
    n_test
        Number of test trials drawn from the rule.
    time_stride, pair, test_seed
        As for :class:`~b2m_neuro.tasks.recognition.StudyTestTask`.

    Examples
    --------
    >>> SternbergTask(encoding="PicIDs_Encoding1,PicIDs_Encoding2", probe="PicIDs_Probe").options()["encoding"]
    ['PicIDs_Encoding1', 'PicIDs_Encoding2']
    """

    name = "sternberg"

    def __init__(self, *, encoding: Sequence[str] | str = ("encoding_1", "encoding_2", "encoding_3"),
                 probe: str = "probe", no_item: int | str = 0, target: str | None = None, n_test: int = 1000,
                 time_stride: int = 1, pair: str | Sequence[bool] = DEFAULT_PAIRING, test_seed: int = 0) -> None:
        check_positive_int(n_test, "n_test")
        super().__init__(stimulus=probe, target=target, time_stride=time_stride, pair=pair, test_seed=test_seed)
        self.encoding = _names(encoding)
        self.probe = probe
        self.no_item = no_item
        self.n_test = n_test

    @property
    def required_variables(self) -> tuple[str, ...]:
        return (*self.encoding, self.probe)

    def options(self) -> dict:
        return {"encoding": list(self.encoding), "probe": self.probe, "no_item": self.no_item, "target": self.target,
                "n_test": self.n_test, "time_stride": self.time_stride, "pair": self.pair, "test_seed": self.test_seed}

    def prepare(self, sessions: Sequence[xr.Dataset]) -> TaskData:
        """Training sequences from the participants' trials; a test set drawn from the rule."""
        layout = self._check(sessions)
        trials = [trial for session in sessions for trial in self._trials(session, layout)]
        test = draw_unseen(trials, layout.stimuli, self.n_test, seed=self.test_seed, field=self.probe)
        return task_data(layout, [_sequence(layout, trial) for trial in trials],
                          [_sequence(layout, trial) for trial in test])

    def _stimulus_values(self, session: xr.Dataset) -> set:
        items = trial_table(session, self.required_variables).to_numpy().ravel()
        return {item for item in items.tolist() if str(item) != str(self.no_item)}

    def _trials(self, session: xr.Dataset, layout: SequenceLayout) -> list[StudyTestEpisode]:
        where = session_label(session)
        table = trial_table(session, self.required_variables)
        encoded = table[list(self.encoding)]
        filled = encoded.astype(str) != str(self.no_item)
        probes = table[self.probe].to_numpy()
        self._check_slots(filled, probes, where)
        embedding = session["embedding"].transpose("trial", "time", "latent").to_numpy()[:, layout.time_index]
        embedding = embedding.astype(np.float32)
        items, keep = encoded.to_numpy(), filled.to_numpy()
        trials = [StudyTestEpisode(items[i][keep[i]], probes[[i]], (embedding[[]], embedding[[i]])) for i in range(len(items))]
        recorded = recorded_targets(session, self.target, "in/out")
        if recorded is not None:
            for i, trial in enumerate(trials):
                check_recorded(recorded[[i]], trial, f"trial {i}", file=where, fields=(self.target, self.probe))
        return trials

    def _check_slots(self, filled: pd.DataFrame, probes: np.ndarray, where: str) -> None:
        empty = np.flatnonzero(~filled.to_numpy().any(axis=1))
        if empty.size:
            raise TrainingError(f"{empty.size} trial(s) have no encoding item (first: trial {empty[0]})", file=where,
                                field=", ".join(self.encoding),
                                fix=f"drop them in the teacher spec, or set no_item (now {self.no_item!r}) right")
        no_probe = np.flatnonzero(probes.astype(str) == str(self.no_item))
        if no_probe.size:
            raise TrainingError(f"{no_probe.size} trial(s) have no probe (first: trial {no_probe[0]})", file=where,
                                field=self.probe, fix="drop trials without a probe in the teacher spec")


def _names(names: Sequence[str] | str) -> tuple[str, ...]:
    values = tuple(name.strip() for name in (names.split(",") if isinstance(names, str) else names))
    if not values or len(set(values)) != len(values) or not all(values):
        raise TrainingError(f"encoding must name one or more different variables, got {names!r}", field="encoding",
                            fix="pass e.g. encoding=('encoding_1', 'encoding_2', 'encoding_3')")
    return values


def _sequence(layout: SequenceLayout, trial: StudyTestEpisode) -> EpisodeSequence:
    """The encoding items as one input step each, then the trial's points, scored in/out at the last."""
    brain = None if trial.brain is None else trial.brain[1]
    return layout.sequence(layout.one_hot(trial.study), trial.test, trial.old.astype(int), brain=brain)

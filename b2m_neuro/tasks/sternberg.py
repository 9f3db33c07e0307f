"""Sternberg working memory: encoding items, a maintenance period, a probe; answer in or out.

Rules. An episode (one Sternberg trial) shows its encoding items one after the other (the load: 1
to 3 in the public datasets, or as the data give it), then, after a maintenance period with nothing
on screen, one probe (or several). The probe is *in* (accept, +1) if it was one of the episode's
encoding items, else *out* (reject, -1).

This is the study-test rule over a short list, and the task is :class:`StudyTestTask` with the
phases named ``("encoding", "probe")`` (see :mod:`b2m_neuro.tasks.recognition` for the layout, the
variables and the test set): each derivative trial is one stimulus shown (an encoding item or the
probe), the encoding items are followed by the phase marker, which starts the maintenance period,
and the maintenance period goes on over the probe trial's pre-stimulus points (as long as the
teacher spec's window before probe onset; default pairing ``"pre"`` pairs exactly these points
with the brain). Test episodes are drawn from the rule with the participants' loads and the order
of in and out probes of a participant's episode; none equals a participant's episode.
"""

from __future__ import annotations

from collections.abc import Sequence

from b2m_neuro.tasks.recognition import DEFAULT_PHASE_VARIABLE, StudyTestTask
from b2m_neuro.tasks.sequences import DEFAULT_PAIRING


class SternbergTask(StudyTestTask):
    """Sternberg working memory (module docstring): in iff the probe was an encoding item.

    Parameters
    ----------
    stimulus, phase, episode
        Names of the trial variables holding the item shown, the phase and the episode (one
        Sternberg trial: its encoding items and its probe).
    phases
        The phase variable's values for the encoding items and the probe, in that order.
    target
        Optional name of a recorded in/out label (1 in / 0 out on probe trials), checked against
        the rule; ``None`` (default): the rule alone.
    n_test, time_stride, pair, test_seed
        As for :class:`~b2m_neuro.tasks.recognition.StudyTestTask`.
    """

    name = "sternberg"

    def __init__(self, *, stimulus: str = "stimulus", phase: str = DEFAULT_PHASE_VARIABLE,
                 phases: Sequence[str] | str = ("encoding", "probe"), episode: str = "episode",
                 target: str | None = None, n_test: int = 1000, time_stride: int = 1,
                 pair: str | Sequence[bool] = DEFAULT_PAIRING, test_seed: int = 0) -> None:
        super().__init__(stimulus=stimulus, phase=phase, phases=phases, episode=episode, target=target,
                         n_test=n_test, time_stride=time_stride, pair=pair, test_seed=test_seed)

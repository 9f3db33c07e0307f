"""Simulated intracranial sessions of the memory-based goal-switching task, with a known answer.

Task. Each episode uses 3 stimuli (0, 1, 2): two target candidates, cued in order at the episode
start (``first_target``, ``second_target``), and one distractor. The current target starts as the
first candidate and switches to the other candidate each time the participant correctly accepts
it. Each step shows one stimulus; the correct response is accept (1) if it is the current target,
else reject (0). A simulated participant answers correctly with probability ``accuracy`` and
responds after a shifted-lognormal reaction time.

Neurons. Units in four regions fire as inhomogeneous Poisson processes (with a 1.5 ms refractory
period) whose log rate is the sum of terms given in ``RATE_MODEL``: baseline, trial noise, the
current goal (its identity and whether it is the first or second candidate) over the whole trial,
including the second before the stimulus, because the goal is a persistent hidden state; then,
while the stimulus is shown, an onset transient, stimulus identity and match/non-match; and the
response just before it is given. ``goal_gain`` scales the goal terms, ``match_gain`` the match
term; ``goal_information=False`` zeroes goal, match and response terms (the response reveals the
match, which with the stimulus reveals the goal), leaving a teacher without task information.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from b2m_neuro._util.progress import track
from b2m_neuro.errors import SimulationError
from b2m_neuro.recording import MEMORY_TRIAL_COLUMNS, SpikeRecording

__all__ = ["memory_session", "memory_sessions", "REGIONS"]

REGIONS = ("hippocampus", "orbitofrontal cortex", "anterior cingulate", "entorhinal cortex")

# Spread (SD, log-rate units) of each tuning term per region, before the gains. Medial temporal
# units lean to stimulus and goal, frontal units to match and response: a simulation choice.
REGION_TUNING = {
    "hippocampus": {"stimulus": 0.5, "goal": 0.35, "match": 0.3, "response": 0.2},
    "entorhinal cortex": {"stimulus": 0.4, "goal": 0.35, "match": 0.25, "response": 0.15},
    "orbitofrontal cortex": {"stimulus": 0.3, "goal": 0.3, "match": 0.4, "response": 0.3},
    "anterior cingulate": {"stimulus": 0.2, "goal": 0.25, "match": 0.35, "response": 0.4},
}
OTHER_REGION_TUNING = {"stimulus": 0.3, "goal": 0.3, "match": 0.3, "response": 0.3}
SELECTIVE_FRACTION = 0.6  # share of units tuned to any one term (mixed selectivity)

N_STIMULI = 3
DEFAULT_UNITS = (10, 40)  # inclusive range drawn when n_units is None
UNITS_PER_ELECTRODE = (1, 4)
EPISODE_STEPS = (4, 20)
# Probability of showing the current target, the other candidate, the distractor.
STIMULUS_PROBABILITY = (0.4, 0.3, 0.3)
ACCURACY_RANGE = (0.85, 0.95)
REACTION_TIME = {"shift": 0.3, "median": 0.45, "sigma": 0.45, "error_delay": 0.1, "min": 0.4, "max": 2.0}

LEAD_IN_S = 2.0  # recording before the first episode cue
CUE_S = 2.5  # episode cue (both candidates, first first) before an episode's first trial
PRE_STIMULUS_S = 1.0  # trial start_time = stimulus onset - 1 s
GAP_S = (1.0, 1.5)  # from one response to the next trial's start_time
TAIL_S = 2.0  # recording after the last response

BASELINE_HZ = {"median": 3.0, "sigma": 0.8, "min": 0.5, "max": 20.0}
ONSET_MEAN, ONSET_SD = 0.3, 0.4  # transient at stimulus onset (log-rate units)
TRANSIENT_PEAK_S = 0.15
SUSTAINED_FRACTION = 0.5
RESPONSE_WINDOW_S = 0.3
NOISE_SHARED_SD, NOISE_PRIVATE_SD = 0.1, 0.2  # per-trial gain noise, shared and per unit
REFRACTORY_S = 0.0015
MAX_RATE_HZ = 200.0  # rates saturate here, whatever the gains
MAX_GAIN = 5.0

RATE_MODEL = """\
log rate(t) = log baseline_hz + trial noise
            + goal[current target] + goal_phase * (+1 first candidate, -1 second)      (whole trial)
            + onset * a(t - onset)                                                    (stimulus shown)
            + (stimulus[shown] + match * (+1 match, -1 non-match)) * (0.5 + 0.5 a(t - onset))
            + response * (+1 accept, -1 reject)                    (last 0.3 s before the response)
a: alpha-function transient peaking at 1, 0.15 s after onset; coefficients in natural-log units.
The stimulus is shown from onset to the response; a trial's goal holds from the previous response.
Rates saturate at MAX_RATE_HZ."""

_LABEL = re.compile(r"[A-Za-z0-9]+")


def memory_session(
    *,
    seed: int = 0,
    n_units: int | None = None,
    n_trials: int = 400,
    goal_information: bool = True,
    goal_gain: float = 1.0,
    match_gain: float = 1.0,
    subject_id: str | None = None,
    session_id: str | None = None,
    units_per_region: Mapping[str, int] | None = None,
    accuracy: float | None = None,
    sampling_rate: float = 32_000.0,
) -> SpikeRecording:
    """Simulate one spike-sorted session of the memory-based goal-switching task.

    Parameters
    ----------
    seed
        Seed of everything random; the same seed gives the same session. Behaviour, unit layout,
        tuning and spikes use separate streams, so changing a gain or ``goal_information`` keeps
        the trials and the stimulus tuning of a seed.
    n_units
        Number of units, spread over ``REGIONS`` (each region gets one if there are at least four).
        ``None`` draws 10-40 from the seed.
    n_trials
        Number of task steps (trials), over episodes of 4-20 steps.
    goal_information
        ``False`` removes goal, match and response tuning: a teacher with no task information,
        for negative controls. Stimulus and onset tuning remain.
    goal_gain, match_gain
        Scale of the goal (current target and first/second phase) and match tuning, 0-5.
    subject_id, session_id
        Alphanumeric labels (BIDS/DANDI safe); default ``"S01"`` and ``"01"``.
    units_per_region
        Units per region name, instead of ``n_units``.
    accuracy
        The participant's probability of a correct response; ``None`` draws 0.85-0.95.
    sampling_rate
        Acquisition rate (Hz); spike times are multiples of ``1 / sampling_rate``.

    Returns
    -------
    SpikeRecording
        Trials with the columns of ``MEMORY_TRIAL_COLUMNS``; ``metadata["ground_truth"]`` holds the
        per-trial goal, the per-unit tuning coefficients and the parameters.

    Raises
    ------
    SimulationError
        For an invalid parameter, naming it.

    Examples
    --------
    >>> rec = memory_session(seed=1, n_units=12, n_trials=50)
    >>> rec.n_units, len(rec.trials)
    (12, 50)
    """
    check_seed(seed)
    check_count(n_trials, "n_trials")
    if n_units is not None:
        check_count(n_units, "n_units")
    if not isinstance(goal_information, (bool, np.bool_)):
        raise SimulationError(
            f"goal_information must be True or False, not {goal_information!r}", field="goal_information"
        )
    for name, gain in (("goal_gain", goal_gain), ("match_gain", match_gain)):
        check_number(gain, name, low=0.0, high=MAX_GAIN)
    if accuracy is not None:
        check_number(accuracy, "accuracy", low=0.0, high=1.0)
    check_number(sampling_rate, "sampling_rate", low=1_000.0, high=1e6)
    subject_id = check_label("S01" if subject_id is None else subject_id, "subject_id")
    session_id = check_label("01" if session_id is None else session_id, "session_id")

    behaviour_rng, layout_rng, tuning_rng, spike_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(4)
    )
    if accuracy is None:
        accuracy = float(behaviour_rng.uniform(*ACCURACY_RANGE))
    trials = _simulate_trials(behaviour_rng, int(n_trials), float(accuracy))
    session_end = float(trials["stop_time"].iloc[-1]) + TAIL_S

    counts = _region_counts(layout_rng, n_units, units_per_region)
    brain_area, electrode, electrode_location = draw_electrode_layout(layout_rng, counts)
    tuning = _draw_tuning(tuning_rng, brain_area)
    tuning = _apply_task_information(tuning, bool(goal_information), float(goal_gain), float(match_gain))
    spike_times = _spike_trains(spike_rng, trials, tuning, session_end, float(sampling_rate))

    ground_truth = {
        "seed": int(seed),
        "goal_information": bool(goal_information),
        "goal_gain": float(goal_gain),
        "match_gain": float(match_gain),
        "accuracy": float(accuracy),
        "goal": trials["current_target"].to_numpy(),
        "goal_is_first": (trials["current_target"] == trials["first_target"]).to_numpy(),
        "tuning": tuning,
        "rate_model": RATE_MODEL,
        "refractory_s": REFRACTORY_S,
        "duration_s": session_end,
    }
    return SpikeRecording(
        spike_times=spike_times,
        unit_ids=[f"unit{index:03d}" for index in range(len(brain_area))],
        brain_area=brain_area,
        electrode=electrode,
        electrode_location=electrode_location,
        trials=trials,
        subject=simulated_subject(layout_rng, subject_id),
        session_id=session_id,
        session_start_time=simulated_session_start(layout_rng),
        session_description=(
            "Simulated single-unit recording during a memory-based goal-switching task "
            f"(b2m_neuro.simulate.memory_session, seed={seed})"
        ),
        sampling_rate=float(sampling_rate),
        metadata={
            "institution": "b2m_neuro simulation",
            "lab": "b2m_neuro synthetic lab",
            "experimenter": ["Simulator, B2M"],
            "experiment_description": (
                "Synthetic memory-based goal-switching task: two target candidates per episode, the "
                "target switches after each correct accept; neurons carry the hidden goal"
            ),
            "keywords": ["simulation", "memory", "goal switching", "single units", "human intracranial"],
            "device": {
                "name": "simulated microwire array",
                "description": "simulated Behnke-Fried style depth electrodes with microwires",
                "manufacturer": "none (simulation)",
            },
            "ground_truth": ground_truth,
        },
    )


def memory_sessions(
    n_sessions: int, *, seed: int = 0, progress: bool = True, **kwargs: Any
) -> list[SpikeRecording]:
    """Simulate several sessions, one per subject, with different numbers of units.

    Parameters
    ----------
    n_sessions
        Number of sessions.
    seed
        Seed of the whole set; each session gets its own seed derived from it.
    progress
        Show a progress bar.
    **kwargs
        Passed to :func:`memory_session` (not ``seed`` or ``session_id``). Without ``n_units`` or
        ``units_per_region``, unit counts are drawn from 10-40, all different up to 31 sessions.
        With ``subject_id``, all sessions belong to that subject.

    Returns
    -------
    list of SpikeRecording
        Subjects ``"S01"``, ``"S02"``, ... (or the given ``subject_id``), sessions ``"01"``, ``"02"``, ...

    Examples
    --------
    >>> recs = memory_sessions(2, seed=3, n_trials=30, progress=False)
    >>> [(r.subject["subject_id"], r.session_id) for r in recs]
    [('S01', '01'), ('S02', '02')]
    """
    check_count(n_sessions, "n_sessions")
    check_seed(seed)
    if "session_id" in kwargs:
        raise SimulationError(
            "memory_sessions numbers the sessions itself", field="session_id", fix="leave session_id out"
        )
    # session i gets the same seed and unit count whatever n_sessions is
    counts_seed, sessions_seed = np.random.SeedSequence(seed).spawn(2)
    session_seeds = [int(child.generate_state(1)[0]) for child in sessions_seed.spawn(n_sessions)]
    n_units = kwargs.pop("n_units", None)
    if n_units is None and kwargs.get("units_per_region") is None:
        low, high = DEFAULT_UNITS
        shuffled = np.random.default_rng(counts_seed).permutation(np.arange(low, high + 1))
        unit_counts = [int(count) for count in np.resize(shuffled, n_sessions)]
    else:
        unit_counts = [n_units] * n_sessions
    subject_id = kwargs.pop("subject_id", None)
    return [
        memory_session(
            seed=session_seeds[index],
            n_units=unit_counts[index],
            subject_id=subject_id or f"S{index + 1:02d}",
            session_id=f"{index + 1:02d}",
            **kwargs,
        )
        for index in track(range(n_sessions), description="simulating sessions", total=n_sessions, progress=progress)
    ]


# --- parameter checks -------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_seed(seed: Any) -> None:
    if not _is_int(seed) or seed < 0:
        raise SimulationError(f"seed must be a non-negative integer, not {seed!r}", field="seed")


def check_count(value: Any, name: str) -> None:
    if not _is_int(value) or value < 1:
        raise SimulationError(
            f"{name} must be an integer >= 1, not {value!r}", field=name, fix=f"pass {name}=1 or more"
        )


def check_number(value: Any, name: str, *, low: float, high: float) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise SimulationError(f"{name} must be a finite number, not {value!r}", field=name)
    if not low <= value <= high:
        raise SimulationError(
            f"{name} is {value}, outside {low:g}-{high:g}", field=name, fix=f"use a value in {low:g}-{high:g}"
        )


def check_label(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _LABEL.fullmatch(value):
        raise SimulationError(
            f"{name} must be letters and digits only (a BIDS/DANDI label), not {value!r}",
            field=name,
            fix=f"use e.g. {name}={'S01' if name == 'subject_id' else '01'!r}",
        )
    return value


# --- behaviour --------------------------------------------------------------------------------


def _episode_lengths(rng: np.random.Generator, n_trials: int) -> list[int]:
    lengths: list[int] = []
    while sum(lengths) < n_trials:
        lengths.append(int(rng.integers(EPISODE_STEPS[0], EPISODE_STEPS[1] + 1)))
    lengths[-1] -= sum(lengths) - n_trials
    return lengths


def _simulate_trials(rng: np.random.Generator, n_trials: int, accuracy: float) -> pd.DataFrame:
    """Episodes of steps played by the simulated participant, with their timing."""
    rows = []
    for episode, length in enumerate(_episode_lengths(rng, n_trials)):
        first, second, distractor = (int(value) for value in rng.permutation(N_STIMULI))
        target, other = first, second
        for _ in range(length):
            stimulus = int(rng.choice([target, other, distractor], p=STIMULUS_PROBABILITY))
            correct_response = int(stimulus == target)
            response = correct_response if rng.random() < accuracy else 1 - correct_response
            rows.append({
                "stimulus": stimulus, "first_target": first, "second_target": second, "current_target": target,
                "correct_response": correct_response, "response": response, "episode": episode,
            })
            if correct_response and response:
                target, other = other, target
    trials = pd.DataFrame(rows, dtype=np.int64)

    trials["correct"] = trials["response"] == trials["correct_response"]
    trials["reaction_time"] = draw_reaction_times(rng, trials["correct"].to_numpy())
    gaps = rng.uniform(*GAP_S, size=n_trials)
    new_episode = np.r_[True, np.diff(trials["episode"]) != 0]
    # start of trial k = lead-in + cues so far + everything before it (trial + gap after each)
    before = np.r_[0.0, np.cumsum(PRE_STIMULUS_S + trials["reaction_time"] + gaps)[:-1]]
    trials["start_time"] = LEAD_IN_S + CUE_S * np.cumsum(new_episode) + before
    trials["stimulus_onset"] = trials["start_time"] + PRE_STIMULUS_S
    trials["stop_time"] = trials["stimulus_onset"] + trials["reaction_time"]
    return trials[list(MEMORY_TRIAL_COLUMNS)]


def draw_reaction_times(rng: np.random.Generator, correct: np.ndarray) -> np.ndarray:
    """Shifted lognormal, errors a little slower, clipped to the plausible range."""
    rt = REACTION_TIME
    times = rt["shift"] + rng.lognormal(math.log(rt["median"]), rt["sigma"], size=correct.size)
    times = times + rt["error_delay"] * ~correct
    return np.clip(times, rt["min"], rt["max"])


# --- units ------------------------------------------------------------------------------------


def _region_counts(
    rng: np.random.Generator, n_units: int | None, units_per_region: Mapping[str, int] | None
) -> dict[str, int]:
    if units_per_region is not None:
        return _check_units_per_region(units_per_region, n_units)
    if n_units is None:
        n_units = int(rng.integers(DEFAULT_UNITS[0], DEFAULT_UNITS[1] + 1))
    guaranteed = min(n_units, len(REGIONS))
    counts = np.zeros(len(REGIONS), dtype=int)
    counts[rng.permutation(len(REGIONS))[:guaranteed]] = 1
    counts += rng.multinomial(n_units - guaranteed, np.full(len(REGIONS), 1 / len(REGIONS)))
    return {region: int(count) for region, count in zip(REGIONS, counts)}


def _check_units_per_region(units_per_region: Mapping[str, int], n_units: int | None) -> dict[str, int]:
    field = "units_per_region"
    if not isinstance(units_per_region, Mapping):
        raise SimulationError("units_per_region must map region names to unit counts", field=field)
    for region, count in units_per_region.items():
        if not isinstance(region, str) or not region.strip():
            raise SimulationError(f"region name {region!r} is not a non-empty string", field=field)
        if not _is_int(count) or count < 0:
            raise SimulationError(f"the count for {region!r} must be an integer >= 0, not {count!r}", field=field)
    total = sum(units_per_region.values())
    if total < 1:
        raise SimulationError("units_per_region has no units", field=field, fix="give at least one region a unit")
    if n_units is not None and n_units != total:
        raise SimulationError(
            f"n_units={n_units} disagrees with units_per_region (total {total})",
            field="n_units",
            fix="pass only one of n_units and units_per_region",
        )
    return {region: int(count) for region, count in units_per_region.items()}


def draw_electrode_layout(rng: np.random.Generator, counts: Mapping[str, int]) -> tuple[list[str], list[int], list[str]]:
    """Per region, electrodes of 1-4 units each: (brain_area, electrode per unit, electrode_location)."""
    brain_area: list[str] = []
    electrode: list[int] = []
    electrode_location: list[str] = []
    for region, count in counts.items():
        left = count
        while left > 0:
            on_this = min(left, int(rng.integers(UNITS_PER_ELECTRODE[0], UNITS_PER_ELECTRODE[1] + 1)))
            brain_area += [region] * on_this
            electrode += [len(electrode_location)] * on_this
            electrode_location.append(region)
            left -= on_this
    return brain_area, electrode, electrode_location


def _draw_tuning(rng: np.random.Generator, brain_area: list[str]) -> dict[str, np.ndarray]:
    """Per-unit baselines (Hz) and log-rate tuning coefficients, sparse and heterogeneous."""
    n_units = len(brain_area)
    spread = {
        term: np.array([REGION_TUNING.get(area, OTHER_REGION_TUNING)[term] for area in brain_area])
        for term in OTHER_REGION_TUNING
    }

    def coefficients(term: str, *shape: int) -> np.ndarray:
        """Units by ``shape`` coefficients; a unit is tuned to the term or not at all."""
        scale = spread[term] * (rng.random(n_units) < SELECTIVE_FRACTION)
        return (rng.standard_normal((*shape, n_units)) * scale).T

    base = BASELINE_HZ
    baseline_hz = rng.lognormal(math.log(base["median"]), base["sigma"], n_units)
    return {
        "baseline_hz": np.clip(baseline_hz, base["min"], base["max"]),
        "onset": rng.normal(ONSET_MEAN, ONSET_SD, n_units),
        "stimulus": coefficients("stimulus", N_STIMULI),
        "goal": coefficients("goal", N_STIMULI),
        "goal_phase": coefficients("goal"),
        "match": coefficients("match"),
        "response": coefficients("response"),
    }


def _apply_task_information(
    tuning: dict[str, np.ndarray], goal_information: bool, goal_gain: float, match_gain: float
) -> dict[str, np.ndarray]:
    task_scale = 1.0 if goal_information else 0.0
    scale = {"goal": goal_gain, "goal_phase": goal_gain, "match": match_gain, "response": 1.0}
    return {
        term: values * (task_scale * scale[term]) if term in scale else values
        for term, values in tuning.items()
    }


# --- spikes -----------------------------------------------------------------------------------


def _segments(trials: pd.DataFrame, session_end: float) -> dict[str, np.ndarray]:
    """The session cut at each response: trial k owns (response k-1, response k], then a tail.

    The goal of the tail is the one after the last response (switched after a correct accept).
    """
    stop = trials["stop_time"].to_numpy()
    goal = trials["current_target"].to_numpy()
    first, second = trials["first_target"].to_numpy(), trials["second_target"].to_numpy()
    switched = (trials["correct_response"].to_numpy() == 1) & (trials["response"].to_numpy() == 1)
    last_goal = np.where(switched[-1], first[-1] + second[-1] - goal[-1], goal[-1])
    goal = np.r_[goal, last_goal]
    stimulus = trials["stimulus"].to_numpy()
    return {
        "start": np.r_[0.0, stop],
        "end": np.r_[stop, session_end],
        "onset": np.r_[trials["stimulus_onset"].to_numpy(), np.inf],
        "stop": np.r_[stop, np.inf],
        "goal": goal,
        "phase_sign": np.where(goal == np.r_[first, first[-1]], 1.0, -1.0),
        "stimulus": np.r_[stimulus, 0],
        "match_sign": np.where(np.r_[stimulus, -1] == goal, 1.0, -1.0),
        "response_sign": np.r_[2.0 * trials["response"].to_numpy() - 1.0, 0.0],
    }


def _spike_trains(
    rng: np.random.Generator,
    trials: pd.DataFrame,
    tuning: dict[str, np.ndarray],
    session_end: float,
    sampling_rate: float,
) -> list[np.ndarray]:
    """Inhomogeneous Poisson spikes by thinning, one (segment, unit) pair at a time, vectorized."""
    seg = _segments(trials, session_end)
    n_segments, n_units = seg["start"].size, tuning["baseline_hz"].size
    noise = NOISE_SHARED_SD * rng.standard_normal((n_segments, 1)) + NOISE_PRIVATE_SD * rng.standard_normal(
        (n_segments, n_units)
    )
    static = (
        np.log(tuning["baseline_hz"])
        + noise
        + tuning["goal"][:, seg["goal"]].T
        + seg["phase_sign"][:, None] * tuning["goal_phase"]
    )
    shown_term = tuning["stimulus"][:, seg["stimulus"]].T + seg["match_sign"][:, None] * tuning["match"]
    response_term = seg["response_sign"][:, None] * tuning["response"]
    onset_term = np.broadcast_to(tuning["onset"], (n_segments, n_units))
    # every time-varying factor lies in [0, 1], so this bounds the log rate within a segment
    bound = static + np.maximum(onset_term, 0) + np.maximum(shown_term, 0) + np.maximum(response_term, 0)
    bound = np.minimum(bound, math.log(MAX_RATE_HZ))

    duration = seg["end"] - seg["start"]
    counts = rng.poisson(np.exp(bound) * duration[:, None]).ravel()
    pair = np.repeat(np.arange(counts.size), counts)
    k, unit = np.divmod(pair, n_units)
    t = seg["start"][k] + rng.random(pair.size) * duration[k]

    since_onset = t - seg["onset"][k]
    shown = (since_onset >= 0) & (t < seg["stop"][k])
    x = np.clip(since_onset, 0, None) / TRANSIENT_PEAK_S
    transient = np.where(shown, x * np.exp(1 - x), 0.0)
    responding = (t >= seg["stop"][k] - RESPONSE_WINDOW_S) & (t < seg["stop"][k])
    log_rate = (
        static.ravel()[pair]
        + transient * onset_term.ravel()[pair]
        + shown * (SUSTAINED_FRACTION + (1 - SUSTAINED_FRACTION) * transient) * shown_term.ravel()[pair]
        + responding * response_term.ravel()[pair]
    )
    log_rate = np.minimum(log_rate, math.log(MAX_RATE_HZ))
    keep = rng.random(pair.size) < np.exp(log_rate - bound.ravel()[pair])
    unit, t = unit[keep], t[keep]
    order = np.lexsort((t, unit))
    t = np.round(t[order] * sampling_rate) / sampling_rate
    per_unit = np.split(t, np.cumsum(np.bincount(unit, minlength=n_units))[:-1])
    return [drop_refractory_violations(times) for times in per_unit]


def drop_refractory_violations(times: np.ndarray) -> np.ndarray:
    """Drop spikes closer than the refractory period to the previous one (one pass suffices)."""
    return times[np.diff(times, prepend=-np.inf) >= REFRACTORY_S]


# --- subject and session ----------------------------------------------------------------------


def simulated_subject(rng: np.random.Generator, subject_id: str) -> dict[str, Any]:
    return {
        "subject_id": subject_id,
        "species": "Homo sapiens",
        "sex": str(rng.choice(["F", "M"])),
        "age": f"P{int(rng.integers(19, 66))}Y",
        "description": "simulated participant (no real person); epilepsy-monitoring style depth electrodes",
    }


def simulated_session_start(rng: np.random.Generator) -> dt.datetime:
    day = dt.datetime(2024, 1, 1, 9, 0, tzinfo=dt.timezone.utc)
    return day + dt.timedelta(days=int(rng.integers(0, 365)), minutes=int(rng.integers(0, 8 * 60)))

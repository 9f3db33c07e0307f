"""Simulated intracranial sessions of study-test recognition and Sternberg working memory.

Designs, with their trials tables laid out as the public datasets' presets read them
(``dandi000004`` and ``dandi000469`` in ``b2m_neuro/adapters/presets``):

- ``study_test_session``: blocks of ``study_items`` images shown one after the other, a short
  delay, then ``test_items`` images, half of them old (from the block's study list) and half new,
  in random order; the participant answers old or new. One row per image shown:
  ``start_time`` (1 s before onset), ``stimulus_onset``, ``stop_time`` (offset: 1 s after onset for
  study items, the response for test items), ``stimulus_duration`` (onset to stop), ``stimulus``
  (the image name, ``"img07"``), ``task_phase`` (``"study"``/``"test"``), ``episode`` (the block),
  ``target`` (1 old / 0 new; 0 for study items, new when shown) and ``response`` (the
  participant's answer, 1 old / 0 new, correct with probability ``accuracy``; -1 on study items).
- ``sternberg_session``: trials of 1-3 encoding images (the load drawn from ``loads``), a 2 s
  maintenance period with nothing on screen, then a probe, one of the encoded images with
  probability 0.5; the participant answers in or out. One row per Sternberg trial: ``start_time``
  (1 s before the first encoding image), ``stop_time`` (the response), ``probe_onset``,
  ``reaction_time`` (probe onset to response), ``load``, ``encoding_1`` ... (picture ids 1 ...
  ``n_items``, 0 where the load leaves a slot empty), ``probe``, ``target`` (1 in / 0 out) and
  ``response`` (1 in / 0 out).

Neurons (as in the human medial temporal lobe recordings of such tasks, e.g. Rutishauser et al.,
Kaminski et al. 2017): units fire as Poisson processes whose log rate is constant within each
interval between events and sums the terms of ``RATE_MODEL``: sparse *concept cells* tuned to item
identities while an item is shown; *memory-selective* cells whose rate goes up or down with
whether the item shown was seen before in the episode (familiar, i.e. old or in, vs novel: every
study item and every new test item); and *persistent activity* of the concept cells of the items
held in memory, from their study offset to the episode's end, so that the pre-stimulus period
(the maintenance period before a probe) carries what is held. ``memory_information=False`` zeroes
the memory and persistent terms: a teacher that carries the stimuli but not the answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from b2m_neuro.errors import SimulationError
from b2m_neuro.recording import SpikeRecording
from b2m_neuro.simulate.memory import (
    DEFAULT_UNITS,
    check_count,
    check_label,
    check_number,
    check_seed,
    draw_electrode_layout,
    draw_reaction_times,
    drop_refractory_violations,
    simulated_session_start,
    simulated_subject,
)

__all__ = ["study_test_session", "sternberg_session", "REGIONS", "RATE_MODEL"]

REGIONS = ("hippocampus", "amygdala", "dorsal anterior cingulate cortex", "pre-supplementary motor area")

PRE_STIMULUS_S = 1.0  # start_time = onset - 1 s (fixation)
DISPLAY_S = 1.0  # study and encoding items stay on screen this long
GAP_S = (0.2, 0.5)  # from a study item's offset to the next item's start_time
TEST_DELAY_S = 3.0  # from the last study offset to the first test item's start_time
MAINTENANCE_S = 2.0  # from the last encoding offset to the probe onset
EPISODE_GAP_S = (1.0, 1.5)  # between episodes
LEAD_IN_S, TAIL_S = 2.0, 2.0
ACCURACY_RANGE = (0.8, 0.9)

BASELINE_HZ = {"median": 3.0, "sigma": 0.8, "min": 0.5, "max": 20.0}
ONSET_MEAN, ONSET_SD = 0.3, 0.3
CONCEPT_PROBABILITY = 0.15  # chance that a unit responds to a given item
CONCEPT_STRENGTH = {"median": 1.0, "sigma": 0.3}  # log-rate increase to a preferred item
PERSISTENT_FRACTION = 0.5  # persistent activity while held, relative to the response when shown
MEMORY_FRACTION, MEMORY_SD = 0.5, 0.6  # share of memory-selective units, spread of their term
NOISE_SD = 0.2  # per-interval gain noise per unit
MAX_RATE_HZ = 200.0
MAX_GAIN = 5.0

RATE_MODEL = """\
log rate = log baseline_hz + noise
         + hold_gain * persistent[items held] summed               (from each study offset to the episode end)
         + onset + stimulus[item] + memory_gain * memory * (+1 seen before in the episode, -1 novel)   (item shown)
stimulus: sparse positive concept-cell tuning; persistent = PERSISTENT_FRACTION * stimulus; log rates in
natural-log units, constant between events, saturating at MAX_RATE_HZ."""


def study_test_session(*, seed: int = 0, n_blocks: int = 40, study_items: int = 4, test_items: int = 4,
                       n_items: int = 16, **options: Any) -> SpikeRecording:
    """Simulate one session of study-test recognition memory (module docstring).

    Parameters
    ----------
    seed
        Seed of everything random; behaviour, unit layout, tuning and spikes use separate streams,
        so ``memory_information`` or a gain changes only the spikes.
    n_blocks
        Episodes (study list, then test list).
    study_items, test_items
        Items per study list and per test list (``test_items // 2`` old, the rest new).
    n_items
        Size of the image pool the items are drawn from.
    **options
        ``n_units`` (None: 10-40 from the seed), ``memory_information`` (True), ``memory_gain``
        and ``hold_gain`` (1.0, 0-5), ``accuracy`` (None: 0.8-0.9), ``subject_id`` ("S01"),
        ``session_id`` ("01"), ``sampling_rate`` (32 kHz).

    Returns
    -------
    SpikeRecording
        ``metadata["ground_truth"]`` holds the tuning, the parameters and ``events``: one row per
        image shown (onset, offset, item index, phase, episode, ``familiar``: seen before in the
        episode), the intervals the rates are constant between.

    Examples
    --------
    >>> rec = study_test_session(seed=1, n_blocks=3, n_units=8)
    >>> rec.trials.groupby("task_phase").size().to_dict(), int(rec.trials["target"].sum())
    ({'study': 12, 'test': 12}, 6)
    """
    for name, value in (("n_blocks", n_blocks), ("study_items", study_items), ("test_items", test_items),
                        ("n_items", n_items)):
        check_count(value, name)
    n_old = test_items // 2
    if n_old > study_items or n_items < study_items + test_items - n_old:
        raise SimulationError(f"{n_items} items cannot fill study lists of {study_items} and test lists of "
                              f"{test_items} ({n_old} old)", field="n_items",
                              fix=f"use n_items >= {study_items + test_items - n_old} and "
                                  "test_items <= 2 * study_items")

    def block(rng: np.random.Generator) -> tuple[list[int], list[int]]:
        study = rng.choice(n_items, study_items, replace=False)
        new = rng.choice(np.setdiff1d(np.arange(n_items), study), test_items - n_old, replace=False)
        return study.tolist(), rng.permutation(np.r_[rng.choice(study, n_old, replace=False), new]).tolist()

    return _session("study_test", seed, n_blocks, n_items, block, _study_test_table, options)


def sternberg_session(*, seed: int = 0, n_trials: int = 100, loads: Sequence[int] = (1, 2, 3), n_items: int = 12,
                      **options: Any) -> SpikeRecording:
    """Simulate one session of the Sternberg working-memory task (module docstring).

    Parameters
    ----------
    seed
        As for :func:`study_test_session`.
    n_trials
        Sternberg trials (episodes): encoding items, maintenance, one probe.
    loads
        Loads (encoding items per trial) drawn uniformly.
    n_items
        Size of the image pool.
    **options
        As for :func:`study_test_session`.

    Examples
    --------
    >>> rec = sternberg_session(seed=1, n_trials=4, n_units=8)
    >>> rec.trials[["load", "encoding_1", "encoding_2", "encoding_3", "probe", "target"]].to_numpy().tolist()
    [[3, 8, 2, 10, 2, 1], [3, 2, 8, 3, 8, 1], [2, 9, 4, 0, 1, 0], [1, 12, 0, 0, 12, 1]]
    """
    check_count(n_trials, "n_trials")
    check_count(n_items, "n_items")
    loads = list(loads)
    if not loads or not all(isinstance(load, int) and 1 <= load < n_items for load in loads):
        raise SimulationError(f"loads must be whole numbers from 1 to {n_items - 1}, got {loads}", field="loads",
                              fix="pass e.g. loads=(1, 2, 3)")

    def trial(rng: np.random.Generator) -> tuple[list[int], list[int]]:
        encoded = rng.choice(n_items, int(rng.choice(loads)), replace=False)
        outside = np.setdiff1d(np.arange(n_items), encoded)
        probe = rng.choice(encoded) if rng.random() < 0.5 else rng.choice(outside)
        return encoded.tolist(), [int(probe)]

    return _session("sternberg", seed, n_trials, n_items, trial, lambda trials: _sternberg_table(trials, max(loads)),
                    options)


# --- shared by both designs ---------------------------------------------------------------------

_PHASES = {"study_test": ("study", "test"), "sternberg": ("encoding", "probe")}


def _session(design: str, seed: int, n_episodes: int, n_items: int, draw_episode: Callable, table: Callable,
             options: dict) -> SpikeRecording:
    """Behaviour, units, tuning and spikes of one session; ``table`` lays out its trials table."""
    check_seed(seed)
    settings = _settings(**options)
    behaviour_rng, layout_rng, tuning_rng, spike_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(4))
    accuracy = settings["accuracy"]
    if accuracy is None:
        accuracy = float(behaviour_rng.uniform(*ACCURACY_RANGE))
    trials = _trials(design, behaviour_rng, [draw_episode(behaviour_rng) for _ in range(n_episodes)], accuracy)
    n_units = settings["n_units"]
    if n_units is None:
        n_units = int(layout_rng.integers(DEFAULT_UNITS[0], DEFAULT_UNITS[1] + 1))
    counts = dict(zip(REGIONS, layout_rng.multinomial(n_units, np.full(len(REGIONS), 1 / len(REGIONS))).tolist()))
    brain_area, electrode, electrode_location = draw_electrode_layout(layout_rng, counts)
    tuning = _tuning(tuning_rng, n_units, n_items, settings)
    session_end = float(trials["stop_time"].iloc[-1]) + TAIL_S
    spike_times = _spike_trains(spike_rng, trials, tuning, session_end, settings["sampling_rate"])
    subject_id, session_id = settings["subject_id"], settings["session_id"]
    title = {"study_test": "study-test recognition memory", "sternberg": "Sternberg working memory"}[design]
    return SpikeRecording(
        spike_times=spike_times,
        unit_ids=[f"unit{index:03d}" for index in range(n_units)],
        brain_area=brain_area, electrode=electrode, electrode_location=electrode_location,
        trials=table(trials),
        subject=simulated_subject(layout_rng, subject_id), session_id=session_id,
        session_start_time=simulated_session_start(layout_rng),
        session_description=f"Simulated single-unit recording during {title} (b2m_neuro.simulate, seed={seed})",
        sampling_rate=settings["sampling_rate"],
        metadata={
            "institution": "b2m_neuro simulation", "lab": "b2m_neuro synthetic lab",
            "experimenter": ["Simulator, B2M"],
            "experiment_description": f"Synthetic {title}; memory-selective neurons carry old/new and the held items",
            "keywords": ["simulation", "recognition memory" if design == "study_test" else "working memory",
                         "single units", "human intracranial"],
            "device": {"name": "simulated microwire array", "manufacturer": "none (simulation)",
                       "description": "simulated Behnke-Fried style depth electrodes with microwires"},
            "ground_truth": {"design": design, "seed": int(seed), "accuracy": accuracy,
                             "events": trials[["stimulus_onset", "stop_time", "item", "task_phase", "episode",
                                               "familiar"]],
                             "tuning": tuning, "rate_model": RATE_MODEL,
                             **{key: settings[key] for key in ("memory_information", "memory_gain", "hold_gain")}},
        },
    )


def _settings(*, n_units: int | None = None, memory_information: bool = True, memory_gain: float = 1.0,
              hold_gain: float = 1.0, accuracy: float | None = None, subject_id: str | None = None,
              session_id: str | None = None, sampling_rate: float = 32_000.0) -> dict:
    if n_units is not None:
        check_count(n_units, "n_units")
    if not isinstance(memory_information, (bool, np.bool_)):
        raise SimulationError(f"memory_information must be True or False, not {memory_information!r}",
                              field="memory_information")
    for name, gain in (("memory_gain", memory_gain), ("hold_gain", hold_gain)):
        check_number(gain, name, low=0.0, high=MAX_GAIN)
    if accuracy is not None:
        check_number(accuracy, "accuracy", low=0.0, high=1.0)
    check_number(sampling_rate, "sampling_rate", low=1_000.0, high=1e6)
    return {"n_units": n_units, "memory_information": bool(memory_information), "memory_gain": float(memory_gain),
            "hold_gain": float(hold_gain), "accuracy": accuracy, "sampling_rate": float(sampling_rate),
            "subject_id": check_label("S01" if subject_id is None else subject_id, "subject_id"),
            "session_id": check_label("01" if session_id is None else session_id, "session_id")}


def _trials(design: str, rng: np.random.Generator, episodes: list[tuple[list[int], list[int]]],
            accuracy: float) -> pd.DataFrame:
    """One row per item shown, with the rule's answer, the participant's and the timing."""
    first_phase, second_phase = _PHASES[design]
    rows = []
    for episode, (first, second) in enumerate(episodes):
        rows += [{"item": item, "task_phase": first_phase, "episode": episode, "familiar": False, "answered": False}
                 for item in first]
        rows += [{"item": item, "task_phase": second_phase, "episode": episode, "familiar": item in first,
                  "answered": True} for item in second]
    trials = pd.DataFrame(rows)
    answered, familiar = trials["answered"].to_numpy(), trials["familiar"].to_numpy()
    correct = rng.random(len(trials)) < accuracy
    trials["target"] = familiar.astype(int)
    trials["response"] = np.where(answered, np.where(correct, familiar, ~familiar).astype(int), -1)
    duration = np.where(answered, draw_reaction_times(rng, correct), DISPLAY_S)
    trials["stimulus_duration"] = duration
    new_episode = np.r_[True, np.diff(trials["episode"].to_numpy()) != 0]
    first_answer = answered & ~np.r_[False, answered[:-1]]
    gaps = rng.uniform(*GAP_S, len(trials))
    if design == "study_test":
        gaps = np.where(first_answer, TEST_DELAY_S, gaps)
    else:  # encoding items follow each other after their fixation; the probe after the maintenance period
        gaps = np.where(first_answer, MAINTENANCE_S - PRE_STIMULUS_S, 0.0)
    gaps = np.where(new_episode, rng.uniform(*EPISODE_GAP_S, len(trials)), gaps)
    gaps[0] = LEAD_IN_S
    trials["start_time"] = np.cumsum(gaps) + np.r_[0.0, np.cumsum(PRE_STIMULUS_S + duration)[:-1]]
    trials["stimulus_onset"] = trials["start_time"] + PRE_STIMULUS_S
    trials["stop_time"] = trials["stimulus_onset"] + duration
    return trials


def _study_test_table(trials: pd.DataFrame) -> pd.DataFrame:
    table = trials[["start_time", "stop_time", "stimulus_onset", "stimulus_duration"]].copy()
    table["stimulus"] = [f"img{item:02d}" for item in trials["item"]]
    return table.join(trials[["task_phase", "episode", "target", "response"]])


def _sternberg_table(trials: pd.DataFrame, n_slots: int) -> pd.DataFrame:
    """One row per Sternberg trial; picture ids count from 1, 0 marks an empty encoding slot."""
    rows = []
    for _, trial in trials.groupby("episode", sort=False):
        encoding, probe = trial.iloc[:-1], trial.iloc[-1]
        pictures = (encoding["item"].to_numpy() + 1).tolist() + [0] * (n_slots - len(encoding))
        rows.append({"start_time": encoding["start_time"].iloc[0], "stop_time": probe["stop_time"],
                     "probe_onset": probe["stimulus_onset"], "reaction_time": probe["stimulus_duration"],
                     "load": len(encoding), **{f"encoding_{k + 1}": picture for k, picture in enumerate(pictures)},
                     "probe": int(probe["item"]) + 1, "target": int(probe["target"]),
                     "response": int(probe["response"])})
    return pd.DataFrame(rows)


def _tuning(rng: np.random.Generator, n_units: int, n_items: int, settings: dict) -> dict[str, np.ndarray]:
    """Per-unit baselines (Hz) and log-rate coefficients."""
    base, strength = BASELINE_HZ, CONCEPT_STRENGTH
    baseline = np.clip(rng.lognormal(math.log(base["median"]), base["sigma"], n_units), base["min"], base["max"])
    preferred = rng.random((n_units, n_items)) < CONCEPT_PROBABILITY
    stimulus = preferred * rng.lognormal(math.log(strength["median"]), strength["sigma"], (n_units, n_items))
    memory = rng.normal(0.0, MEMORY_SD, n_units) * (rng.random(n_units) < MEMORY_FRACTION)
    information = 1.0 if settings["memory_information"] else 0.0
    return {"baseline_hz": baseline, "onset": rng.normal(ONSET_MEAN, ONSET_SD, n_units), "stimulus": stimulus,
            "persistent": information * settings["hold_gain"] * PERSISTENT_FRACTION * stimulus,
            "memory": information * settings["memory_gain"] * memory}


def _spike_trains(rng: np.random.Generator, trials: pd.DataFrame, tuning: dict[str, np.ndarray],
                  session_end: float, sampling_rate: float) -> list[np.ndarray]:
    """Poisson spikes in intervals of constant rate: per trial, (previous stop, onset) then (onset, stop)."""
    n_trials, n_units = len(trials), len(tuning["baseline_hz"])
    onset, stop = trials["stimulus_onset"].to_numpy(), trials["stop_time"].to_numpy()
    bounds = np.r_[0.0, np.column_stack([onset, stop]).ravel(), session_end]
    held = _held_items(trials, tuning["stimulus"].shape[1])  # (trial, item), also during the pre interval
    log_rate = np.log(tuning["baseline_hz"]) + NOISE_SD * rng.standard_normal((2 * n_trials + 1, n_units))
    persistent = held @ tuning["persistent"].T
    log_rate[0:-1:2] += persistent
    log_rate[1::2] += persistent + tuning["onset"] + tuning["stimulus"][:, trials["item"].to_numpy()].T
    log_rate[1::2] += np.where(trials["familiar"].to_numpy(), 1.0, -1.0)[:, None] * tuning["memory"]
    rate = np.exp(np.minimum(log_rate, math.log(MAX_RATE_HZ)))
    duration = np.diff(bounds)
    counts = rng.poisson(rate * duration[:, None]).ravel()
    pair = np.repeat(np.arange(counts.size), counts)
    interval, unit = np.divmod(pair, n_units)
    times = bounds[interval] + rng.random(pair.size) * duration[interval]
    order = np.lexsort((times, unit))
    times = np.round(times[order] * sampling_rate) / sampling_rate
    per_unit = np.split(times, np.cumsum(np.bincount(unit, minlength=n_units))[:-1])
    return [drop_refractory_violations(unit_times) for unit_times in per_unit]


def _held_items(trials: pd.DataFrame, n_items: int) -> np.ndarray:
    """Per trial, which items of its episode were studied (encoded) before it: ``(trial, item)`` 0/1."""
    studied = np.zeros((len(trials), n_items))
    studied[np.arange(len(trials)), trials["item"].to_numpy()] = ~trials["answered"].to_numpy()
    before = pd.DataFrame(studied).groupby(trials["episode"].to_numpy()).cumsum().to_numpy() - studied
    return (before > 0).astype(float)

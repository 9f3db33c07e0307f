"""Simulated driving sessions: procedural road scenes at 8 Hz and 64-channel EEG with known ground truth.

A simulated driver follows a winding road. Each trial (``trial_s`` seconds) has its own fog
opacity, set by a 1-up/1-down staircase on near-crashes: a trial without a near-crash makes the
next one foggier, a trial with one makes it clearer. The frames (160 x 80 RGB) show sky,
roadside buildings, grass, the road with its edge and dashed centre lines, and the fog.

The EEG comes from a forward model on mne's standard ``biosemi64`` montage. Scene sources send a
frame-locked evoked response at every frame onset whose amplitude follows a scene feature:

===============  ========  ==========================================================
source           near      amplitude at each frame
===============  ========  ==========================================================
``visual``       Oz        visual change from the previous frame (fog, speed, curves)
``steer_left``   C3        rate of steering to the right
``steer_right``  C4        rate of steering to the left
``speed``        CPz       speed relative to its session mean
``alert``        FCz       a P300-like wave after each near-crash (not frame-locked)
===============  ========  ==========================================================

The evoked response peaks 60 ms after the frame onset.

Each source reaches the electrodes through a Gaussian fall-off of the angle between the source
and the electrode on the head sphere. Background activity is 1/f noise from sources spread over
the head, an occipital alpha rhythm, line noise, eye blinks on the frontal electrodes and sensor
noise. ``scene_information=False`` silences the scene sources (for negative controls); the
background is identical for the same seed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from b2m_neuro.errors import SimulationError

if TYPE_CHECKING:
    import mne

__all__ = ["DrivingSession", "driving_session", "FRAME_HEIGHT", "FRAME_WIDTH", "SCENE_SOURCES"]

FRAME_HEIGHT, FRAME_WIDTH = 80, 160
_HORIZON = 30  # first ground row of a frame
MONTAGE = "biosemi64"
# scene source -> (electrode it sits under, scene feature that sets its amplitude)
SCENE_SOURCES = {
    "visual": ("Oz", "visual_change"),
    "steer_left": ("C3", "steering_rate_right"),
    "steer_right": ("C4", "steering_rate_left"),
    "speed": ("CPz", "speed"),
}
_EVOKED_UV = 12.0  # peak of a frame-locked evoked response at unit amplitude (microvolts)
_SPREAD_RAD = 0.45  # Gaussian fall-off of a source's field with angle on the head sphere


@dataclass
class DrivingSession:
    """One simulated driving session.

    Attributes
    ----------
    frames
        uint8 array ``(n_frames, 80, 160, 3)``: the scene shown at each frame.
    frame_times
        Frame onsets (s from the start of the EEG recording).
    scene
        One row per frame: ``time``, ``trial``, ``fog``, ``curvature``, ``speed``, ``lane_offset``,
        ``near_crash`` (bool), ``steering``, ``throttle``, ``brake``.
    trials
        One row per trial: ``trial``, ``start_time``, ``stop_time``, ``fog``, ``near_crashes``.
    raw
        The 64-channel EEG (volts) as an ``mne.io.RawArray`` with the biosemi64 montage.
    ground_truth
        ``sources`` (DataFrame: name, electrode, feature, x, y, z), ``mixing`` (channels x
        sources), ``amplitude`` (DataFrame: per frame, the amplitude of each scene source),
        ``near_crash_times`` (s), ``scene_information`` (bool), ``seed``.
    subject_id, session_id
        Identifiers used when the session is converted to BIDS.
    """

    frames: np.ndarray
    frame_times: np.ndarray
    scene: pd.DataFrame
    trials: pd.DataFrame
    raw: mne.io.RawArray
    ground_truth: dict[str, Any] = field(repr=False)
    subject_id: str = "01"
    session_id: str = "01"

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return float(1.0 / np.median(np.diff(self.frame_times)))

    @property
    def behaviour(self) -> pd.DataFrame:
        """Steering and pedal traces, one row per frame: ``time``, ``steering``, ``throttle``, ``brake``."""
        return self.scene[["time", "steering", "throttle", "brake"]].copy()


def driving_session(
    *,
    seed: int = 0,
    duration_s: float = 60.0,
    frame_rate: float = 8.0,
    sfreq: float = 256.0,
    scene_information: bool = True,
    scene_gain: float = 1.0,
    trial_s: float = 10.0,
    line_freq: float = 50.0,
    lead_s: float = 1.0,
    subject_id: str = "01",
    session_id: str = "01",
) -> DrivingSession:
    """Simulate one driving session: frames, behaviour, and 64-channel EEG from a forward model.

    Parameters
    ----------
    seed
        Seed of every random draw; the same seed gives the same session.
    duration_s
        Length of the EEG recording (s).
    frame_rate
        Frames per second (8 Hz in the reference setting).
    sfreq
        EEG sampling rate (Hz); 2048 is realistic, tests use much less.
    scene_information
        If False, the scene sources are silent, so the EEG carries no information about the
        scenes (negative control); everything else is unchanged.
    scene_gain
        Multiplies the amplitude of every scene source.
    trial_s
        Length of one fog level (s).
    line_freq
        Power-line frequency (Hz); its noise is added when below the Nyquist frequency.
    lead_s
        EEG recorded before the first frame and after the last one (s).
    subject_id, session_id
        Identifiers carried to the BIDS conversion.

    Returns
    -------
    DrivingSession

    Examples
    --------
    >>> s = driving_session(seed=1, duration_s=12, sfreq=128)
    >>> s.frames.shape[1:], s.raw.info["nchan"]
    ((80, 160, 3), 64)
    """
    _check_parameters(duration_s=duration_s, frame_rate=frame_rate, sfreq=sfreq, trial_s=trial_s, lead_s=lead_s)
    rng = np.random.default_rng(seed)
    frame_times = lead_s + np.arange(int((duration_s - 2 * lead_s) * frame_rate)) / frame_rate
    scene, trials = _drive(rng, frame_times, frame_rate=frame_rate, trial_s=trial_s, lead_s=lead_s)
    frames = _draw_frames(rng, scene, frame_rate=frame_rate)
    raw, ground_truth = _record_eeg(
        rng,
        scene,
        scene_amplitudes(scene, frames),
        duration_s=duration_s,
        sfreq=sfreq,
        line_freq=line_freq,
        scene_gain=scene_gain if scene_information else 0.0,
        seed=seed,
    )
    ground_truth["scene_information"] = scene_information
    return DrivingSession(frames, frame_times, scene, trials, raw, ground_truth, str(subject_id), str(session_id))


def _check_parameters(**values: float) -> None:
    for name, value in values.items():
        if not np.isfinite(value) or value < 0 or (value == 0 and name != "lead_s"):
            raise SimulationError(f"{name} must be a positive number, got {value!r}", field=name, fix=f"pass {name} > 0")
    if values["duration_s"] - 2 * values["lead_s"] < 2 / values["frame_rate"]:
        raise SimulationError(
            f"duration_s={values['duration_s']} leaves no room for frames after the {values['lead_s']} s lead at both ends",
            field="duration_s",
            fix="pass a longer duration_s or a shorter lead_s",
        )


def _smooth_noise(rng: np.random.Generator, times: np.ndarray, *, low_hz: float, high_hz: float, n: int = 6) -> np.ndarray:
    """A smooth random signal in [-1, 1]: a sum of ``n`` sinusoids with random frequencies and phases."""
    freqs = rng.uniform(low_hz, high_hz, n)
    phases = rng.uniform(0, 2 * np.pi, n)
    signal = np.sin(2 * np.pi * freqs[None, :] * times[:, None] + phases).sum(axis=1)
    return signal / np.sqrt(n / 2) / 2.5


def _drive(
    rng: np.random.Generator, frame_times: np.ndarray, *, frame_rate: float, trial_s: float, lead_s: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The road, the fog staircase and the simulated driver, one row per frame."""
    n = frame_times.size
    trial = ((frame_times - lead_s) // trial_s).astype(int)
    curvature = np.clip(_smooth_noise(rng, frame_times, low_hz=0.02, high_hz=0.12), -1, 1)
    cruise = 22 + 5 * _smooth_noise(rng, frame_times, low_hz=0.01, high_hz=0.05)
    steering_noise = rng.normal(0, 1, n)
    fog_levels = np.zeros(trial.max() + 1)
    lane_offset, near_crash = np.zeros(n), np.zeros(n, bool)
    fog, level, offset, since_crash = np.zeros(n), 2, 0.0, 10.0
    for i in range(n):
        if i == 0 or trial[i] != trial[i - 1]:
            if i > 0:  # staircase on the trial that just ended
                level = level - 1 if near_crash[trial == trial[i - 1]].any() else level + 1
                level = int(np.clip(level, 0, 6))
            fog_levels[trial[i]] = 0.15 * level
        fog[i] = fog_levels[trial[i]]
        # tracking error grows with curvature changes and with fog; the driver corrects it
        drift = 0.35 * (curvature[i] - curvature[i - 1]) * frame_rate if i else 0.0
        offset = 0.93 * offset + 0.02 * drift + 0.06 * (1 + 2.5 * fog[i]) * steering_noise[i]
        since_crash += 1 / frame_rate
        if abs(offset) > 0.6 and since_crash > 2.0:
            near_crash[i], since_crash = True, 0.0
            offset *= 0.3  # a sharp corrective swerve
        lane_offset[i] = offset
    speed = cruise * (1 - 0.35 * fog)
    steering = np.clip(0.6 * curvature - 0.8 * lane_offset, -1, 1)
    acceleration = np.gradient(speed) * frame_rate
    braking = np.convolve(near_crash.astype(float), np.exp(-np.arange(int(2 * frame_rate)) / frame_rate), mode="full")[:n]
    throttle = np.clip(0.35 + 0.4 * acceleration - 0.5 * braking, 0, 1)
    brake = np.clip(-0.4 * acceleration + 0.8 * braking, 0, 1)
    scene = pd.DataFrame(
        {
            "time": frame_times,
            "trial": trial,
            "fog": fog,
            "curvature": curvature,
            "speed": speed,
            "lane_offset": lane_offset,
            "near_crash": near_crash,
            "steering": steering,
            "throttle": throttle,
            "brake": brake,
        }
    )
    trials = scene.groupby("trial").agg(
        start_time=("time", "min"), stop_time=("time", "max"), fog=("fog", "first"), near_crashes=("near_crash", "sum")
    )
    trials["stop_time"] += 1 / frame_rate
    return scene, trials.reset_index()


def _draw_frames(rng: np.random.Generator, scene: pd.DataFrame, *, frame_rate: float, batch: int = 128) -> np.ndarray:
    """Draw every frame with array operations, ``batch`` frames at a time."""
    n = len(scene)
    distance = np.cumsum(scene["speed"].to_numpy()) / frame_rate  # metres driven
    heading = np.cumsum(scene["curvature"].to_numpy()) / frame_rate  # turns the skyline
    skyline = rng.integers(4, 22, 97), rng.integers(70, 170, 97)  # building heights and greys
    frames = np.empty((n, FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
    for start in range(0, n, batch):
        part = slice(start, min(start + batch, n))
        frames[part] = _draw_batch(scene.iloc[part], distance[part], heading[part], skyline)
    return frames


def _draw_batch(scene: pd.DataFrame, distance: np.ndarray, heading: np.ndarray, skyline: tuple) -> np.ndarray:
    n = len(scene)
    rows = np.arange(FRAME_HEIGHT, dtype=np.float32)[None, :, None]
    cols = np.arange(FRAME_WIDTH, dtype=np.float32)[None, None, :]
    per_frame = lambda values: np.asarray(values, np.float32)[:, None, None]  # noqa: E731
    image = np.empty((n, FRAME_HEIGHT, FRAME_WIDTH, 3), np.float32)
    # sky: a vertical gradient
    sky_mix = np.clip(rows / _HORIZON, 0, 1)[..., None]
    image[:] = (1 - sky_mix) * np.array([90, 140, 225], np.float32) + sky_mix * np.array([190, 210, 240], np.float32)
    # buildings standing on the horizon; the skyline slides sideways as the car turns
    block = ((cols + 60 * per_frame(heading)) // 11).astype(int) % skyline[0].size
    height, grey = skyline[0][block], skyline[1][block]
    building = (rows >= _HORIZON - height) & (rows < _HORIZON)
    shade = np.broadcast_to(grey, building.shape)[building].astype(np.float32)
    image[building] = shade[:, None] * np.array([1.0, 0.95, 0.9], np.float32)
    # ground: grass, then the road in perspective (depth 1 at the horizon, near 0 at the bottom)
    ground = np.broadcast_to(rows >= _HORIZON, image.shape[:3])
    image[ground] = np.array([70, 130, 60], np.float32)
    near = np.clip((rows - _HORIZON + 1) / (FRAME_HEIGHT - _HORIZON), 1e-3, 1)
    centre = FRAME_WIDTH / 2 + 55 * per_frame(scene["curvature"]) * (1 - near) ** 2 - 45 * per_frame(scene["lane_offset"]) * near
    half_width = 3 + 70 * near
    across = np.abs(cols - centre)
    on_ground = rows >= _HORIZON
    road = on_ground & (across <= half_width)
    image[road] = np.array([95, 95, 100], np.float32)
    edge = road & (across >= half_width - (0.6 + 2.5 * near))
    dash = on_ground & (across <= 0.4 + 1.6 * near) & (((1 / near + per_frame(distance) / 4) % 2) < 1)
    image[edge | dash] = np.array([235, 235, 225], np.float32)
    # fog: blends towards grey, more so far away
    depth_weight = np.where(on_ground, (1 - near) ** 0.7, 1.0)
    fog = (per_frame(scene["fog"]) * depth_weight)[..., None]
    image = (1 - fog) * image + fog * np.array([200, 200, 205], np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _electrode_directions(montage: mne.channels.DigMontage) -> tuple[list[str], np.ndarray]:
    positions = montage.get_positions()["ch_pos"]
    names = list(positions)
    xyz = np.array([positions[name] for name in names])
    return names, xyz / np.linalg.norm(xyz, axis=1, keepdims=True)


def _falloff(directions: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Gain (electrodes x sources): a Gaussian of the angle between electrode and source."""
    angle = np.arccos(np.clip(directions @ sources.T, -1, 1))
    return np.exp(-(angle**2) / (2 * _SPREAD_RAD**2))


def _pink_noise(rng: np.random.Generator, n_signals: int, n_times: int, sfreq: float) -> np.ndarray:
    """Unit-variance noise with a 1/f power spectrum."""
    spectrum = rng.normal(size=(n_signals, n_times // 2 + 1)) + 1j * rng.normal(size=(n_signals, n_times // 2 + 1))
    freqs = np.fft.rfftfreq(n_times, 1 / sfreq)
    spectrum /= np.sqrt(np.maximum(freqs, 0.5))
    noise = np.fft.irfft(spectrum, n=n_times)
    return noise / noise.std(axis=1, keepdims=True)


def _kernel(sfreq: float, *, peak_s: float, width_s: float, length_s: float) -> np.ndarray:
    times = np.arange(int(length_s * sfreq)) / sfreq
    return np.exp(-((times - peak_s) ** 2) / (2 * width_s**2))


def _impulses(times: np.ndarray, amplitudes: np.ndarray, n_times: int, sfreq: float) -> np.ndarray:
    train = np.zeros(n_times)
    np.add.at(train, np.round(times * sfreq).astype(int), amplitudes)
    return train


def scene_amplitudes(scene: pd.DataFrame, frames: np.ndarray) -> pd.DataFrame:
    """Per frame, the amplitude (about 0 to 2) of each scene source's evoked response.

    ``visual``: the visual change from the previous frame (mean absolute pixel difference, which
    fog, speed and curves set), ``steer_left`` / ``steer_right``: the rate of steering to the
    right / left, ``speed``: the speed, each scaled by its session mean (or spread).
    """
    change = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    change = np.concatenate([change[:1], change])
    steering_rate = np.gradient(scene["steering"].to_numpy())
    spread = steering_rate.std() + 1e-12
    speed = scene["speed"].to_numpy()
    return pd.DataFrame(
        {
            "visual": change / (change.mean() + 1e-12),
            "steer_left": np.maximum(steering_rate, 0) / spread,
            "steer_right": np.maximum(-steering_rate, 0) / spread,
            "speed": speed / speed.mean(),
        }
    )


def _record_eeg(
    rng: np.random.Generator,
    scene: pd.DataFrame,
    amplitude: pd.DataFrame,
    *,
    duration_s: float,
    sfreq: float,
    line_freq: float,
    scene_gain: float,
    seed: int,
) -> tuple[mne.io.RawArray, dict[str, Any]]:
    """The EEG: scene sources mixed to the scalp, plus background; and the model's ground truth."""
    import mne

    montage = mne.channels.make_standard_montage(MONTAGE)
    names, directions = _electrode_directions(montage)
    n_times = int(round(duration_s * sfreq))
    sources, signals = _scene_sources(scene, amplitude, names, directions, n_times=n_times, sfreq=sfreq)
    mixing = _falloff(directions, sources[["x", "y", "z"]].to_numpy())
    data = scene_gain * _EVOKED_UV * (mixing @ signals)
    data += _background(rng, names, directions, n_times=n_times, sfreq=sfreq, line_freq=line_freq)
    raw = mne.io.RawArray(data * 1e-6, mne.create_info(names, sfreq, ch_types="eeg"), verbose="error")
    raw.set_montage(montage, verbose="error")
    raw.info["line_freq"] = line_freq
    raw.set_meas_date(dt.datetime(2024, 3, 4, 9, 30, tzinfo=dt.timezone.utc) + dt.timedelta(days=seed % 365))
    # fake identifying fields, so that the converters' de-identification has something to remove
    with raw.info._unlock():
        raw.info["subject_info"] = {
            "his_id": "SIMDRIVER", "first_name": "Sim", "last_name": "Driver", "birthday": dt.date(1990, 6, 15), "sex": 1
        }
    near_crash_times = scene.loc[scene["near_crash"], "time"].to_numpy()
    ground_truth = {"sources": sources, "mixing": mixing, "amplitude": amplitude, "near_crash_times": near_crash_times, "seed": seed}
    return raw, ground_truth


def _scene_sources(
    scene: pd.DataFrame, amplitude: pd.DataFrame, names: list[str], directions: np.ndarray, *, n_times: int, sfreq: float
) -> tuple[pd.DataFrame, np.ndarray]:
    """The scene sources (name, electrode, feature, x, y, z) and their signals (sources x times, unit peak)."""
    evoked = _kernel(sfreq, peak_s=0.06, width_s=0.018, length_s=0.2)
    frame_times = scene["time"].to_numpy()
    signals = [np.convolve(_impulses(frame_times, amplitude[name].to_numpy(), n_times, sfreq), evoked)[:n_times]
               for name in SCENE_SOURCES]
    # the alert source: a P300-like wave after each near-crash
    crash_times = scene.loc[scene["near_crash"], "time"].to_numpy() + 0.05
    p300 = 2.5 * _kernel(sfreq, peak_s=0.35, width_s=0.08, length_s=0.8)
    signals.append(np.convolve(_impulses(crash_times, np.ones(crash_times.size), n_times, sfreq), p300)[:n_times])
    electrodes = [electrode for electrode, _ in SCENE_SOURCES.values()] + ["FCz"]
    sources = pd.DataFrame(
        {"name": [*SCENE_SOURCES, "alert"], "electrode": electrodes,
         "feature": [feature for _, feature in SCENE_SOURCES.values()] + ["near_crash"]}
    )
    sources[["x", "y", "z"]] = directions[[names.index(electrode) for electrode in electrodes]]
    return sources, np.array(signals)


def _background(
    rng: np.random.Generator, names: list[str], directions: np.ndarray, *, n_times: int, sfreq: float, line_freq: float
) -> np.ndarray:
    """Microvolts of 1/f sources, occipital alpha, blinks, line noise and sensor noise."""
    times = np.arange(n_times) / sfreq
    spread = rng.normal(size=(12, 3))
    spread[:, 2] = np.abs(spread[:, 2])  # on the upper half of the head
    spread /= np.linalg.norm(spread, axis=1, keepdims=True)
    data = 6.0 * _falloff(directions, spread) @ _pink_noise(rng, 12, n_times, sfreq)
    alpha_envelope = 1 + 0.6 * _smooth_noise(rng, times, low_hz=0.05, high_hz=0.4)
    alpha = 5.0 * alpha_envelope * np.sin(2 * np.pi * rng.uniform(9.5, 11) * times)
    occipital = directions[[names.index("O1"), names.index("Oz"), names.index("O2")]].mean(axis=0)
    data += _falloff(directions, occipital[None] / np.linalg.norm(occipital)) @ alpha[None]
    duration_s = n_times / sfreq
    blink_times = np.sort(rng.uniform(0, duration_s - 0.5, rng.poisson(0.25 * duration_s)))
    blink_wave = _kernel(sfreq, peak_s=0.15, width_s=0.05, length_s=0.4)
    blinks = np.convolve(_impulses(blink_times, np.ones(blink_times.size), n_times, sfreq), blink_wave)[:n_times]
    frontal_gain = np.clip(directions[:, 1], 0, None) ** 3  # +y points to the nose
    data += 150.0 * frontal_gain[:, None] * blinks[None]
    if line_freq < sfreq / 2:
        data += rng.uniform(0.5, 2.0, (len(names), 1)) * np.sin(2 * np.pi * line_freq * times)[None]
    return data + rng.normal(0, 1.0, data.shape)

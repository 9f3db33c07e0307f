"""Simulated driving sessions: frames, fog staircase, behaviour and the EEG forward model."""

import numpy as np
import pytest
from scipy import signal

from b2m_neuro.errors import SimulationError
from b2m_neuro.simulate import DrivingSession, driving_session
from b2m_neuro.simulate.driving import SCENE_SOURCES

SFREQ = 256.0


@pytest.fixture(scope="module")
def session() -> DrivingSession:
    return driving_session(seed=3, duration_s=40, sfreq=SFREQ)


@pytest.fixture(scope="module")
def control() -> DrivingSession:
    return driving_session(seed=3, duration_s=40, sfreq=SFREQ, scene_information=False)


@pytest.fixture(scope="module")
def long_session() -> DrivingSession:
    return driving_session(seed=0, duration_s=120, sfreq=64)


def _window_means(session: DrivingSession, channel: str, window=(0.03, 0.09)) -> np.ndarray:
    """Mean of the 1-40 Hz, average-referenced EEG of ``channel`` in a window after each frame."""
    data = session.raw.get_data() * 1e6
    data = data - data.mean(axis=0)
    sos = signal.butter(4, [1, 40], btype="bandpass", fs=SFREQ, output="sos")
    trace = signal.sosfiltfilt(sos, data[session.raw.ch_names.index(channel)])
    onsets = np.round(session.frame_times * SFREQ).astype(int)
    start, stop = (int(round(w * SFREQ)) for w in window)
    return np.array([trace[o + start : o + stop].mean() for o in onsets])


def test_shapes_and_types(session):
    n = session.frame_times.size
    assert session.frames.shape == (n, 80, 160, 3) and session.frames.dtype == np.uint8
    assert n == int((40 - 2) * 8)
    assert np.allclose(np.diff(session.frame_times), 1 / 8) and session.frame_rate == pytest.approx(8.0)
    assert session.raw.info["sfreq"] == SFREQ and session.raw.n_times == 40 * SFREQ
    assert len(session.scene) == n and list(session.behaviour.columns) == ["time", "steering", "throttle", "brake"]
    assert session.behaviour[["steering"]].abs().max().item() <= 1
    assert ((session.behaviour[["throttle", "brake"]] >= 0) & (session.behaviour[["throttle", "brake"]] <= 1)).all().all()


def test_montage_is_biosemi64(session):
    import mne

    assert session.raw.ch_names == mne.channels.make_standard_montage("biosemi64").ch_names
    positions = np.array([ch["loc"][:3] for ch in session.raw.info["chs"]])
    assert np.isfinite(positions).all() and (np.linalg.norm(positions, axis=1) > 0.05).all()


def test_same_seed_same_session_other_seed_differs(session):
    again = driving_session(seed=3, duration_s=40, sfreq=SFREQ)
    other = driving_session(seed=4, duration_s=40, sfreq=SFREQ)
    assert np.array_equal(again.frames, session.frames)
    assert np.array_equal(again.raw.get_data(), session.raw.get_data())
    assert not np.array_equal(other.frames, session.frames)


def test_fog_is_a_staircase_on_near_crashes(long_session):
    s = long_session
    assert (s.scene.groupby("trial")["fog"].nunique() == 1).all()
    trials = s.trials
    for previous, following in zip(trials.itertuples(), trials.iloc[1:].itertuples()):
        step = round((following.fog - previous.fog) / 0.15)
        if previous.near_crashes:
            assert step == -1 or (step == 0 and previous.fog == 0)
        else:
            assert step == 1 or (step == 0 and previous.fog == pytest.approx(0.9))
    assert trials["fog"].nunique() >= 3


def test_fog_lowers_the_contrast_of_the_frames(long_session):
    s = long_session
    contrast = s.frames[:, 20:50].reshape(len(s.frames), -1).std(axis=1)  # the horizon band
    assert np.corrcoef(contrast, s.scene["fog"])[0, 1] < -0.7


def test_frames_show_sky_road_and_grass(session):
    frame = session.frames[0].astype(int)
    sky, road, grass = frame[2, 80], frame[75, 80], frame[75, 2]
    assert sky[2] > sky[0] + 40  # blue
    assert abs(road[0] - road[2]) < 20 and 60 < road[0] < 140  # grey asphalt or a white line
    assert grass[1] > grass[0] + 30  # green


def test_scene_sources_drive_the_eeg_and_the_control_has_none(session, control):
    amplitude = session.ground_truth["amplitude"]
    for source, (electrode, _) in SCENE_SOURCES.items():
        if source == "speed":
            continue  # the speed changes too slowly to survive a 1 Hz high-pass
        with_scene = np.corrcoef(_window_means(session, electrode), amplitude[source])[0, 1]
        without = np.corrcoef(_window_means(control, electrode), amplitude[source])[0, 1]
        assert with_scene > 0.35, (source, with_scene)
        assert abs(without) < 0.2, (source, without)


def test_the_control_differs_only_by_the_scene_sources(session, control):
    difference = session.raw.get_data() - control.raw.get_data()
    truth = session.ground_truth
    assert truth["scene_information"] and not control.ground_truth["scene_information"]
    assert truth["mixing"].shape == (64, len(truth["sources"]))
    # the scene field is strongest under the sources' electrodes, weakest far from them
    power = (difference**2).mean(axis=1)
    names = session.raw.ch_names
    assert power[names.index("Oz")] > 10 * power[names.index("Fp1")]


def test_background_spectrum_has_alpha_line_noise_and_one_over_f(control):
    freqs, psd = signal.welch(control.raw.get_data(), fs=SFREQ, nperseg=int(4 * SFREQ))
    oz = psd[control.raw.ch_names.index("Oz")]

    def at(hz):
        return oz[np.argmin(np.abs(freqs - hz))]

    alpha = max(at(hz) for hz in np.arange(9.5, 11.25, 0.25))
    assert alpha > 3 * at(7) and alpha > 3 * at(14)
    assert at(50) > 5 * at(45)
    assert at(2) > 4 * at(25)


def test_blinks_dominate_the_frontal_electrodes(control):
    data = control.raw.get_data()
    names = control.raw.ch_names
    assert np.ptp(data[names.index("Fp1")]) > 3 * np.ptp(data[names.index("Oz")])


def test_fake_identity_fields_exist_for_deidentification_tests(session):
    info = session.raw.info["subject_info"]
    assert info["last_name"] == "Driver" and info["birthday"].year == 1990


@pytest.mark.parametrize(
    ("options", "field"),
    [({"duration_s": 0}, "duration_s"), ({"sfreq": -1}, "sfreq"), ({"frame_rate": float("nan")}, "frame_rate"),
     ({"duration_s": 2.1}, "duration_s")],
)
def test_bad_parameters_raise_simulation_error(options, field):
    with pytest.raises(SimulationError) as error:
        driving_session(**options)
    assert error.value.field == field

"""load_eeg: per-frame EEG features from BIDS, lazily; frame pairing; real tiny_bids; bad input."""

import shutil

import dask.array as da
import mne
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from b2m_neuro.adapters import EEGSpec, load_eeg
from b2m_neuro.convert import eeg_to_bids
from b2m_neuro.errors import AdapterError
from b2m_neuro.simulate import driving_session

RAW_SPEC = EEGSpec(reference=None, l_freq=None, h_freq=None, window=(0.0, 0.05), chunk_s=1.0, pad_s=0.2)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A recording that is zero except a known value on one channel in each frame's first 50 ms."""
    sfreq, names = 200.0, ["Fz", "Cz", "Pz", "Oz", "C3", "C4", "T7", "T8"]
    rng = np.random.default_rng(1)
    frame_times = np.sort(rng.choice(np.arange(0.5, 19.0, 0.1), 60, replace=False))
    data = np.zeros((len(names), int(20 * sfreq)))
    for i, onset in enumerate(frame_times):
        start = int(round(onset * sfreq))
        data[i % len(names), start : start + 10] = (i + 1) * 1e-6
    raw = mne.io.RawArray(data, mne.create_info(names, sfreq, "eeg"), verbose="error")
    raw.set_montage("standard_1020", verbose="error")
    frames = np.repeat(np.arange(60, dtype=np.uint8)[:, None, None, None], 4, axis=1).repeat(6, axis=2).repeat(3, axis=3)
    root = tmp_path_factory.mktemp("planted") / "bids"
    eeg_to_bids(raw, frame_times=frame_times, frames=frames, bids_root=root, subject="p", task="plant", progress=False)
    return root, frame_times, names


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    roots = {}
    for scene in (True, False):
        s = driving_session(seed=7, duration_s=40, sfreq=256, scene_information=scene)
        root = tmp_path_factory.mktemp("sim") / "bids"
        eeg_to_bids(s.raw, frame_times=s.frame_times, frames=s.frames, bids_root=root, subject="01", progress=False)
        roots[scene] = root
    return roots, s.ground_truth["amplitude"]


def test_frame_i_gets_the_eeg_at_frame_i(planted):
    root, frame_times, names = planted
    eeg = load_eeg(root, subject="p", task="plant", spec=RAW_SPEC)
    assert isinstance(eeg.data, da.Array) and len(eeg.data.chunks[0]) > 5  # lazy, many chunks
    values = eeg.values
    expected = np.zeros((60, len(names)), np.float32)
    expected[np.arange(60), np.arange(60) % len(names)] = np.arange(1, 61)
    np.testing.assert_allclose(values, expected, atol=1e-4)
    np.testing.assert_allclose(eeg["onset"], frame_times, atol=1 / 200)
    for i in (0, 31, 59):
        assert np.asarray(Image.open(root / "stimuli" / str(eeg["stim_file"].values[i])))[0, 0, 0] == i
    assert list(eeg["channel"].values) == names and eeg.attrs["units"] == "uV"


def test_power_feature_and_average_reference(planted):
    root, _, names = planted
    power = load_eeg(root, subject="p", task="plant", spec=EEGSpec(reference=None, l_freq=None, h_freq=None,
                                                                     window=(0.0, 0.05), feature="power")).values
    assert power[5, 5 % len(names)] == pytest.approx(36.0, rel=1e-4) and power[5, 0] == pytest.approx(0.0, abs=1e-6)
    referenced = load_eeg(root, subject="p", task="plant", spec=EEGSpec(l_freq=None, h_freq=None, window=(0.0, 0.05))).values
    np.testing.assert_allclose(referenced.sum(axis=1), 0, atol=1e-3)
    assert referenced[7, 7] == pytest.approx(8 * 7 / 8, rel=1e-4)


def test_chunking_does_not_change_filtered_features(simulated):
    roots, _ = simulated
    small = load_eeg(roots[True], subject="01", task="driving", spec=EEGSpec(chunk_s=3.0, pad_s=3.0))
    whole = load_eeg(roots[True], subject="01", task="driving", spec=EEGSpec(chunk_s=100.0))
    assert len(small.data.chunks[0]) > len(whole.data.chunks[0]) == 1
    np.testing.assert_allclose(small.values, whole.values, atol=0.05 * np.abs(whole.values).std())


def test_scene_information_reaches_the_features_and_the_control_has_none(simulated):
    roots, amplitude = simulated
    spec = EEGSpec(window=(0.03, 0.09))
    for scene, low, high in ((True, 0.35, 1.0), (False, -0.2, 0.2)):
        eeg = load_eeg(roots[scene], subject="01", task="driving", spec=spec)
        for source, channel in (("visual", "Oz"), ("steer_left", "C3"), ("steer_right", "C4")):
            r = np.corrcoef(eeg.sel(channel=channel).values, amplitude[source])[0, 1]
            assert low < r < high, (scene, source, r)


def test_output_contract_on_our_own_output(simulated):
    roots, _ = simulated
    eeg = load_eeg(roots[True], subject="01", task="driving")
    assert eeg.dims == ("frame", "channel") and eeg.dtype == np.float32 and eeg.sizes["channel"] == 64
    assert np.isfinite(eeg[["x", "y", "z"][0]]).all() and eeg.attrs["coordinate_system"] == "CapTrak"
    assert eeg["stim_file"].values[0] == "sub-01_task-driving/frame-000000.png"
    assert EEGSpec.from_json(eeg.attrs["spec"]) == EEGSpec()
    assert len(eeg.attrs["source_sha256"]) == 64 and eeg.attrs["subject"] == "01" and eeg.attrs["session"] == ""


def test_real_tiny_bids_picks_eeg_channels_only(data_dir):
    eeg = load_eeg(data_dir / "tiny_bids", subject="01", session="eeg", task="rest", spec=EEGSpec())
    assert eeg.sizes == {"frame": 2, "channel": 64}  # of 69: ECG, 2 EOG, GSR, temperature left out
    assert set(eeg["channel_type"].values) == {"eeg"} and "GSR" not in eeg["channel"]
    assert list(eeg["trial_type"].values) == ["start_experiment", "show_stimulus"]
    np.testing.assert_allclose(eeg["onset"], [0.0, 0.2])
    assert eeg.sel(channel="PO10")["bad"] and np.isfinite(eeg.values).all()
    assert np.isfinite(eeg["x"]).all() and eeg.attrs["coordinate_system"] == "CapTrak"
    one = load_eeg(data_dir / "tiny_bids", subject="01", session="eeg", task="rest",
                   spec=EEGSpec(event_values="show_stimulus", channels=("Cz", "GSR", "Temperature"), reference=None))
    assert one.sizes == {"frame": 1, "channel": 3} and list(one["channel_type"].values)[1:] == ["gsr", "temperature"]
    assert np.isfinite(one.values).all()


def test_missing_channels_are_listed(data_dir):
    with pytest.raises(AdapterError) as error:
        load_eeg(data_dir / "tiny_bids", subject="01", session="eeg", task="rest",
                 spec=EEGSpec(channels=("Cz", "XX1", "Oz", "XX2")))
    assert "['XX1', 'XX2']" in str(error.value) and error.value.field == "spec.channels"


def test_dataset_without_events_raises(data_dir, tmp_path):
    root = tmp_path / "tiny"
    shutil.copytree(data_dir / "tiny_bids", root)
    for events in root.rglob("*_events.*"):
        events.unlink()
    with pytest.raises(AdapterError) as error:
        load_eeg(root, subject="01", session="eeg", task="rest", spec=EEGSpec())
    assert error.value.field == "events" and "events.tsv" in str(error.value)


def test_a_selection_that_matches_no_event_lists_the_values(data_dir):
    with pytest.raises(AdapterError) as error:
        load_eeg(data_dir / "tiny_bids", subject="01", session="eeg", task="rest", spec=EEGSpec(event_values="frame"))
    assert "show_stimulus" in str(error.value) and error.value.field == "trial_type"
    assert error.value.file.endswith("_events.tsv") and "event_values" in error.value.fix
    with pytest.raises(AdapterError) as error:
        load_eeg(data_dir / "tiny_bids", subject="01", session="eeg", task="rest",
                 spec=EEGSpec(event_column="condition", event_values="a"))
    assert error.value.field == "spec.event_column" and "'trial_type'" in str(error.value)


def test_corrupt_file_raises(data_dir, tmp_path):
    root = tmp_path / "tiny"
    shutil.copytree(data_dir / "tiny_bids", root)
    header = next(root.rglob("*_eeg.vhdr"))
    header.write_text("garbage\n")
    with pytest.raises(AdapterError) as error:
        load_eeg(root, subject="01", session="eeg", task="rest", spec=EEGSpec())
    assert error.value.file == str(header) and "cannot be read" in str(error.value)


def test_window_outside_the_recording_and_missing_recording(data_dir, tmp_path):
    with pytest.raises(AdapterError) as error:
        load_eeg(data_dir / "tiny_bids", subject="01", session="eeg", task="rest",
                 spec=EEGSpec(window=(-0.1, 0.1)))
    assert "outside the recording" in str(error.value)
    with pytest.raises(AdapterError, match="no EEG recording"):
        load_eeg(data_dir / "tiny_bids", subject="99", session="eeg", task="rest")
    with pytest.raises(AdapterError, match="not a BIDS dataset"):
        load_eeg(tmp_path, subject="01", task="rest")


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [("{ not json", "file", "not valid JSON"), ("[1, 2]", "file", "does not hold a JSON object"),
     ('{"BIDSVersion": "1.7.0"}', "Name", "'Name' is missing"), ('{"Name": "x", "BIDSVersion": 1.7}', "BIDSVersion", "not a text")],
)
def test_malformed_dataset_description_raises(data_dir, tmp_path, text, field, message):
    root = tmp_path / "tiny"
    shutil.copytree(data_dir / "tiny_bids", root)
    (root / "dataset_description.json").write_text(text)
    with pytest.raises(AdapterError, match=message) as error:
        load_eeg(root, subject="01", session="eeg", task="rest", spec=EEGSpec())
    assert error.value.file == str(root / "dataset_description.json") and error.value.field == field
    assert '"Name" and "BIDSVersion"' in error.value.fix


@pytest.mark.parametrize(
    ("options", "field"),
    [({"window": (0.1, 0.0)}, "spec.window"), ({"feature": "median"}, "spec.feature"),
     ({"reference": "mastoids"}, "spec.reference"), ({"l_freq": 40.0, "h_freq": 1.0}, "spec.h_freq")],
)
def test_bad_spec_raises(options, field):
    with pytest.raises(AdapterError) as error:
        EEGSpec(**options)
    assert error.value.field == field


def test_spec_json_round_trip_and_unknown_fields():
    spec = EEGSpec(channels=["Cz", "Pz"], reference=["Cz"], window=[0.0, 0.2], feature="power")
    assert spec.channels == ("Cz", "Pz") and EEGSpec.from_json(spec.to_json()) == spec
    with pytest.raises(AdapterError, match="unknown EEG spec fields"):
        EEGSpec.from_json('{"bandwidth": 3}')


def test_features_become_a_frame_derivative_with_the_pairing_kept(planted, tmp_path):
    from b2m_neuro.derivative import Derivative
    from b2m_neuro.embedding import embed

    root, frame_times, names = planted
    eeg = load_eeg(root, subject="p", task="plant", spec=RAW_SPEC)
    for method, latent in (("identity", len(names)), ("pca", 3)):
        embedded = embed([eeg], method=method, output_dimension=3, progress=False)
        derivative = Derivative.create(tmp_path / f"b2m-{method}", embedded, method=method,
                                       params=embedded[0].attrs["embedding_params"],
                                       source_datasets=[eeg.attrs["source_file"]], progress=False)
        assert derivative.kind == "frames" and derivative.latent_dim == latent
        stored = Derivative.open(tmp_path / f"b2m-{method}").datasets()[0]
        assert stored["embedding"].dims == ("frame", "latent")
        np.testing.assert_allclose(stored["onset"], frame_times, atol=1 / 200)
        assert list(stored["stim_file"].values) == list(eeg["stim_file"].values)
    np.testing.assert_allclose(stored["embedding"].shape, (60, 3))
    identity = Derivative.open(tmp_path / "b2m-identity").datasets()[0]["embedding"].values
    np.testing.assert_allclose(identity, eeg.values, atol=1e-4)  # frame i's EEG stays at frame i


def test_a_rewritten_recording_is_read_afresh(tmp_path):
    info = mne.create_info(["Cz", "Pz"], 100.0, "eeg")
    frame_times = np.array([1.0, 2.0])
    values = []
    for level in (1.0, 5.0):
        raw = mne.io.RawArray(np.full((2, 400), level * 1e-6), info, verbose="error")
        eeg_to_bids(raw, frame_times=frame_times, bids_root=tmp_path / "bids", subject="r", task="t", overwrite=True,
                    progress=False)
        values.append(load_eeg(tmp_path / "bids", subject="r", task="t", spec=RAW_SPEC).values)
    np.testing.assert_allclose(values[0], 1.0, rtol=1e-5)
    np.testing.assert_allclose(values[1], 5.0, rtol=1e-5)



@pytest.fixture(scope="module")
def real_bids(data_dir, tmp_path_factory):
    """The real BioSemi (Status triggers) and BrainVision (markers) recordings converted without frames."""
    root = tmp_path_factory.mktemp("real") / "bids"
    eeg_to_bids(data_dir / "biosemi/test.bdf", stim_channel="Status", bids_root=root, subject="bs", task="biosemi",
                progress=False)
    eeg_to_bids(data_dir / "biosemi/test_bdf_stim_channel.bdf", stim_channel="Status", bids_root=root, subject="st",
                task="triggers", progress=False)
    eeg_to_bids(data_dir / "brainvision_test/test.vhdr", bids_root=root, subject="bv", task="markers", progress=False)
    return root


def _direct(raw: mne.io.BaseRaw, onset_s: float, start_s: float, stop_s: float, picks: list[str]) -> np.ndarray:
    """Mean per channel (uV) of the samples from onset + start to onset + stop, straight from the file."""
    sfreq = raw.info["sfreq"]
    first, last = round((onset_s + start_s) * sfreq), round((onset_s + stop_s) * sfreq)
    return raw.get_data(picks=picks, start=first, stop=last).mean(axis=1) * 1e6


def test_real_biosemi_windows_are_the_recordings_own_samples(real_bids):
    """2048 Hz BioSemi: one window per Status trigger; bins and baseline recomputed from the samples.

    The samples are the converted file's (float32; their match with the BDF is test_convert_eeg's job).
    """
    original = mne.io.read_raw(real_bids / "sub-bs/eeg/sub-bs_task-biosemi_eeg.vhdr", verbose="error")
    onset = 589 / 2048
    spec = EEGSpec(reference=None, l_freq=None, h_freq=None, window=(-0.1, 0.2), baseline=(-0.1, 0.0), bin_width=0.1)
    eeg = load_eeg(real_bids, subject="bs", task="biosemi", spec=spec)
    assert eeg.dims == ("frame", "time", "channel") and eeg.sizes == {"frame": 1, "time": 3, "channel": 72}
    np.testing.assert_allclose(eeg["time"], [-0.05, 0.05, 0.15], atol=1e-3)
    assert list(eeg["trial_type"].values) == ["128"] and eeg["value"].values.tolist() == [128]
    np.testing.assert_allclose(eeg["onset"], [onset])
    picks = list(eeg["channel"].values)
    assert "Status" not in picks
    baseline = _direct(original, onset, -0.1, 0.0, picks)
    for b, (start, stop) in enumerate([(-0.1, 0.0), (0.0, 0.1), (0.1, 0.2)]):
        np.testing.assert_allclose(eeg.values[0, b], _direct(original, onset, start, stop, picks) - baseline, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(eeg.values[0, 0], 0.0, atol=1e-3)  # the baseline bin minus itself
    power = load_eeg(real_bids, subject="bs", task="biosemi", spec=EEGSpec(
        reference=None, l_freq=None, h_freq=None, window=(0.0, 0.05), baseline=(-0.1, 0.0), feature="power"))
    samples = original.get_data(picks=picks, start=589, stop=589 + round(0.05 * 2048)) * 1e6
    expected = ((samples - baseline[:, None]) ** 2).mean(axis=1)
    np.testing.assert_allclose(power.values[0], expected, rtol=1e-5, atol=1e-4)
    assert power.dims == ("frame", "channel") and power.attrs["units"] == "uV^2"


def test_real_trigger_and_marker_selection(real_bids, data_dir):
    triggers = load_eeg(real_bids, subject="st", task="triggers", spec=EEGSpec(event_values="1", window=(0.0, 0.2)))
    assert triggers.sizes == {"frame": 7, "channel": 3} and set(triggers["trial_type"].values) == {"1"}
    by_value = load_eeg(real_bids, subject="st", task="triggers",
                        spec=EEGSpec(event_column="value", event_values=[2, 4], window=(0.0, 0.2)))
    assert list(by_value["trial_type"].values) == ["4", "2"] and np.isfinite(by_value.values).all()
    markers = mne.io.read_raw(data_dir / "brainvision_test/test.vhdr", verbose="error").annotations
    s253 = load_eeg(real_bids, subject="bv", task="markers", spec=EEGSpec(event_values="Stimulus/S253"))
    assert s253.sizes["frame"] == list(markers.description).count("Stimulus/S253") == 2
    np.testing.assert_allclose(s253["onset"], markers.onset[markers.description == "Stimulus/S253"], atol=1e-3)
    every = load_eeg(real_bids, subject="bv", task="markers")
    assert every.sizes == {"frame": 13, "channel": 26} and np.all(np.diff(every["onset"]) >= 0)


def test_real_brainvision_events_embed_to_a_frame_derivative(real_bids, tmp_path):
    from b2m_neuro.derivative import Derivative, bids_validator_issues
    from b2m_neuro.embedding import embed

    eeg = load_eeg(real_bids, subject="bv", task="markers", spec=EEGSpec(window=(0.0, 0.2)))
    embedded = embed([eeg], method="pca", output_dimension=4, progress=False)
    derivative = Derivative.create(tmp_path / "b2m-pca", embedded, method="pca", params=embedded[0].attrs["embedding_params"],
                                   source_datasets=[eeg.attrs["source_file"]], progress=False)
    stored = Derivative.open(derivative.root).datasets()[0]
    assert derivative.kind == "frames" and stored["embedding"].shape == (13, 4) and stored.attrs["task"] == "markers"
    assert list(stored["trial_type"].values) == list(eeg["trial_type"].values)
    np.testing.assert_allclose(stored["onset"], eeg["onset"])
    assert [issue for issue in bids_validator_issues(derivative.root) if issue["severity"] == "error"] == []


def _edit_copy(root, tmp_path, pattern, edit):
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (path,) = copy.rglob(pattern)
    edit(path)
    return copy


def test_sidecars_that_disagree_with_the_recording_raise(real_bids, tmp_path):
    def drop_a_channel(path):
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        table.iloc[:-1].to_csv(path, sep="\t", index=False)

    copy = _edit_copy(real_bids, tmp_path / "a", "sub-st_*_channels.tsv", drop_a_channel)
    with pytest.raises(AdapterError) as error:
        load_eeg(copy, subject="st", task="triggers")
    assert error.value.field == "channels.tsv rows" and "lists 3 channels" in str(error.value) and "holds 4" in str(error.value)

    def wrong_rate(path):
        path.write_text(path.read_text().replace('"SamplingFrequency": 2048.0', '"SamplingFrequency": 2000'))

    copy = _edit_copy(real_bids, tmp_path / "b", "sub-bs_*_eeg.json", wrong_rate)
    with pytest.raises(AdapterError) as error:
        load_eeg(copy, subject="bs", task="biosemi")
    assert error.value.field == "SamplingFrequency" and "2048" in error.value.fix and error.value.file.endswith("_eeg.json")


def test_spec_from_toml_like_python_and_unknown_keys_refused(real_bids, tmp_path):
    toml = tmp_path / "spec.toml"
    toml.write_text('event_values = ["1"]\nreference = "none"\nl_freq = "none"\nwindow = [-0.1, 0.3]\n'
                    'baseline = [-0.1, 0.0]\nbin_width = 0.1\n')
    python = EEGSpec(event_values="1", reference=None, l_freq=None, window=(-0.1, 0.3), baseline=(-0.1, 0.0), bin_width=0.1)
    assert EEGSpec.from_toml(toml) == python and python.n_bins == 4
    from_file = load_eeg(real_bids, subject="st", task="triggers", spec=toml)
    np.testing.assert_array_equal(from_file.values, load_eeg(real_bids, subject="st", task="triggers", spec=python).values)
    toml.write_text('event_type = "frame"\n')
    with pytest.raises(AdapterError, match="unknown EEG spec fields") as error:
        EEGSpec.from_toml(toml)
    assert error.value.file == str(toml) and error.value.field == "spec.event_type"
    toml.write_text("window = 3\n")
    with pytest.raises(AdapterError, match="wrong type"):
        EEGSpec.from_toml(toml)


@pytest.mark.parametrize(
    ("options", "field"),
    [({"bin_width": 0.03}, "spec.bin_width"), ({"bin_width": -0.1}, "spec.bin_width"),
     ({"baseline": (0.0, -0.1)}, "spec.baseline"), ({"event_values": ()}, "spec.event_values")],
)
def test_bad_window_options_raise(options, field):
    with pytest.raises(AdapterError) as error:
        EEGSpec(**options)
    assert error.value.field == field


def test_bins_shorter_than_a_sample_and_baseline_outside_raise(real_bids):
    with pytest.raises(AdapterError, match="shorter than one sample") as error:
        load_eeg(real_bids, subject="st", task="triggers", spec=EEGSpec(window=(0.0, 0.01), bin_width=0.001))
    assert error.value.field == "spec.bin_width"
    with pytest.raises(AdapterError, match="outside the recording"):
        load_eeg(real_bids, subject="bs", task="biosemi", spec=EEGSpec(baseline=(-0.5, 0.0)))


def test_two_acquisitions_of_one_run_are_refused_unless_one_is_named(data_dir, tmp_path):
    from mne_bids.copyfiles import copyfile_brainvision

    root = tmp_path / "tiny_bids"
    shutil.copytree(data_dir / "tiny_bids", root)
    folder = root / "sub-01/ses-eeg/eeg"
    copyfile_brainvision(folder / "sub-01_ses-eeg_task-rest_eeg.vhdr", folder / "sub-01_ses-eeg_task-rest_acq-b_eeg.vhdr")
    for sidecar in ("channels.tsv", "eeg.json", "events.tsv", "events.json"):
        shutil.copy(folder / f"sub-01_ses-eeg_task-rest_{sidecar}", folder / f"sub-01_ses-eeg_task-rest_acq-b_{sidecar}")
    with pytest.raises(AdapterError, match="2 EEG recordings match") as error:
        load_eeg(root, subject="01", session="eeg", task="rest")
    assert error.value.field == "run/acquisition" and "acq-b" in str(error.value)
    named = load_eeg(root, subject="01", session="eeg", task="rest", acquisition="b")
    assert named.attrs["source_file"].endswith("sub-01_ses-eeg_task-rest_acq-b_eeg.vhdr")

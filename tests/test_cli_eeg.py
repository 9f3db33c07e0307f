"""``b2m-neuro simulate driving`` and ``b2m-neuro convert eeg``, run in-process."""

import numpy as np
import pandas as pd

from b2m_neuro.adapters import EEGSpec, load_eeg
from b2m_neuro.cli import main
from b2m_neuro.convert.eeg import read_frame_file
from b2m_neuro.derivative import Derivative


def test_simulate_driving_writes_raw_files_and_bids(tmp_path, capsys):
    code = main(["simulate", "driving", "--out", str(tmp_path / "raw"), "--sessions", "2", "--duration", "8",
                 "--sfreq", "128", "--bids-root", str(tmp_path / "bids"), "--quiet"])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == [
        "sub-01_driving_frames.npz", "sub-01_driving_raw.fif", "sub-02_driving_frames.npz", "sub-02_driving_raw.fif"]
    participants = pd.read_csv(tmp_path / "bids/participants.tsv", sep="\t")
    assert list(participants["participant_id"]) == ["sub-01", "sub-02"]
    eeg = load_eeg(tmp_path / "bids", subject="02", task="driving")
    assert eeg.sizes["frame"] == len(read_frame_file(tmp_path / "raw/sub-02_driving_frames.npz")["frame_times"])
    assert "sub-02_task-driving_eeg.vhdr" in capsys.readouterr().out
    assert main(["simulate", "driving", "--out", str(tmp_path / "raw"), "--duration", "8", "--sfreq", "128"]) == 2


def test_convert_eeg_from_a_brainvision_file(data_dir, tmp_path, capsys):
    frames = tmp_path / "frames.npz"
    times = np.arange(1.0, 7.0, 0.5)
    np.savez(frames, frame_times=times, frames=np.zeros((times.size, 4, 4, 3), np.uint8))
    code = main(["convert", "eeg", str(data_dir / "brainvision_test/test.vhdr"), "--frames", str(frames),
                 "--bids-root", str(tmp_path / "bids"), "--subject", "07", "--session", "1", "--task", "bv", "--quiet"])
    assert code == 0
    eeg = load_eeg(tmp_path / "bids", subject="07", session="1", task="bv", spec=EEGSpec(event_values="frame"))
    np.testing.assert_allclose(eeg["onset"], times)
    assert eeg["stim_file"].values[1] == "sub-07_ses-1_task-bv/frame-000001.png"
    assert (tmp_path / "bids/stimuli" / str(eeg["stim_file"].values[1])).is_file()
    assert "sub-07_ses-1_task-bv_eeg.vhdr" in capsys.readouterr().out


def test_convert_eeg_bad_input_exits_2_with_a_message(data_dir, tmp_path, capsys):
    frames = tmp_path / "frames.tsv"
    pd.DataFrame({"onset": [1.0, 99.0]}).to_csv(frames, sep="\t", index=False)
    code = main(["convert", "eeg", str(data_dir / "brainvision_test/test.vhdr"), "--frames", str(frames),
                 "--bids-root", str(tmp_path / "bids"), "--subject", "07", "--quiet"])
    assert code == 2
    message = capsys.readouterr().err
    assert "frame_times" in message and "outside the recording" in message and "Traceback" not in message
    assert not (tmp_path / "bids").exists()


def test_convert_eeg_biosemi_status_without_frames(data_dir, tmp_path, capsys):
    code = main(["convert", "eeg", str(data_dir / "biosemi/test_bdf_stim_channel.bdf"), "--stim-channel", "Status",
                 "--trigger-mask", "65535", "--bids-root", str(tmp_path / "bids"), "--subject", "01", "--task",
                 "triggers", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "sub-01_task-triggers_eeg.vhdr" in out and "events: 9 (1 x7, 2 x1, 4 x1)" in out
    eeg = load_eeg(tmp_path / "bids", subject="01", task="triggers", spec=EEGSpec(event_values="1", window=(0.0, 0.2)))
    assert eeg.sizes == {"frame": 7, "channel": 3} and np.isfinite(eeg.values).all()


def test_convert_eeg_with_an_events_table(data_dir, tmp_path, capsys):
    table = tmp_path / "events.csv"
    pd.DataFrame({"onset": [1.0, 2.0], "trial_type": ["cue", "probe"], "load": [2, 4]}).to_csv(table, index=False)
    code = main(["convert", "eeg", str(data_dir / "brainvision_test/test.vhdr"), "--events", str(table),
                 "--bids-root", str(tmp_path / "bids"), "--subject", "02", "--task", "table", "--quiet"])
    assert code == 0 and "cue x1" in capsys.readouterr().out
    eeg = load_eeg(tmp_path / "bids", subject="02", task="table", spec=EEGSpec(event_values=["cue", "probe"]))
    assert list(eeg["load"].values) == [2, 4] and list(eeg["onset"].values) == [1.0, 2.0]


def test_convert_eeg_bad_trigger_channel_exits_2(data_dir, tmp_path, capsys):
    code = main(["convert", "eeg", str(data_dir / "biosemi/test.bdf"), "--stim-channel", "Trigger",
                 "--bids-root", str(tmp_path / "bids"), "--subject", "01", "--quiet"])
    assert code == 2
    message = capsys.readouterr().err
    assert "stim_channel" in message and "Status" in message and "Traceback" not in message
    assert not (tmp_path / "bids").exists()


def test_embed_takes_a_bids_eeg_dataset(data_dir, tmp_path, capsys):
    """A BIDS EEG dataset without frames (the real BrainVision file, converted) -> a frames derivative."""
    bids_root = tmp_path / "bids"
    assert main(["convert", "eeg", str(data_dir / "brainvision_test" / "test.vhdr"), "--bids-root", str(bids_root),
                 "--subject", "01", "--task", "markers"]) == 0
    out = tmp_path / "derivatives" / "b2m-pca"
    assert main(["embed", str(bids_root), "--method", "pca", "--dim", "3", "--out", str(out), "--permutations", "0",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "Loading 1 EEG recording(s) with spec 'default'" in printed
    derivative = Derivative.open(out)
    (dataset,) = derivative.datasets()
    assert dataset["embedding"].dims == ("frame", "latent") and dataset.sizes["latent"] == 3
    assert dataset.sizes["frame"] == 13  # one row per marker of the recording

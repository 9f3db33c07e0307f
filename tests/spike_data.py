"""Test inputs for the spike converters: a hand-made SpikeRecording and WaveClus ``times_*.mat`` files.

The WaveClus files hold what ``Do_clustering.m`` of WaveClus 3 saves: ``cluster_class`` (N x 2
double: cluster, time in ms), ``spikes`` (N x 64 waveforms), ``par`` (struct of detection and
clustering parameters, with ``sr``), ``inspk`` (N x 10 wavelet features), ``forced`` (1 x N
logical), ``Temp`` (1 x clusters), ``gui_status`` (struct) and ``ipermut`` (1 x N). MATLAB's
default ``save`` writes format v5 (v7, compressed); when a variable is too large WaveClus retries
with ``-v7.3``, an HDF5 file with a 512-byte MATLAB header, arrays stored column-major and each
variable tagged with a ``MATLAB_class`` attribute.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from b2m_neuro.recording import SpikeRecording

SESSION_START = dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.timezone.utc)
SAMPLING_RATE = 30_000.0


def memory_trials(n_trials: int = 12, *, seed: int = 0) -> pd.DataFrame:
    """A memory-task trials table with every column of MEMORY_TRIAL_COLUMNS."""
    rng = np.random.default_rng(seed)
    onset = 2.0 + 3.0 * np.arange(n_trials)
    reaction = rng.uniform(0.4, 2.0, n_trials)
    current = rng.integers(0, 2, n_trials)
    stimulus = rng.integers(0, 3, n_trials)
    correct_response = (stimulus == current).astype(int)
    response = np.where(rng.random(n_trials) < 0.85, correct_response, 1 - correct_response)
    return pd.DataFrame({
        "start_time": onset - 1.0,
        "stop_time": onset + reaction,
        "stimulus_onset": onset,
        "stimulus": stimulus,
        "first_target": np.zeros(n_trials, dtype=int),
        "second_target": np.ones(n_trials, dtype=int),
        "current_target": current,
        "correct_response": correct_response,
        "response": response,
        "correct": response == correct_response,
        "reaction_time": reaction,
        "episode": np.arange(n_trials) // 4,
    })


def make_recording(*, seed: int = 0, subject_id: str = "P01", session_id: str = "1") -> SpikeRecording:
    """Four units on three electrodes in three regions, 12 trials, a subject with name and birth date."""
    rng = np.random.default_rng(seed)
    trials = memory_trials(seed=seed)
    duration = float(trials["stop_time"].max()) + 1.0
    spike_times = [np.sort(np.round(rng.uniform(0, duration, n) * SAMPLING_RATE) / SAMPLING_RATE)
                   for n in (150, 90, 200, 40)]
    return SpikeRecording(
        spike_times=spike_times,
        unit_ids=["CSC1_cluster1", "CSC1_cluster2", "CSC9_cluster1", "CSC17_cluster1"],
        brain_area=["hippocampus", "hippocampus", "amygdala", "orbitofrontal cortex"],
        electrode=[0, 0, 1, 2],
        electrode_location=["hippocampus", "amygdala", "orbitofrontal cortex"],
        trials=trials,
        subject={"subject_id": subject_id, "species": "Homo sapiens", "sex": "F", "age": 34,
                 "name": "Jane Doe", "date_of_birth": dt.date(1990, 1, 2),
                 "description": "epilepsy patient with depth electrodes"},
        session_id=session_id,
        session_start_time=SESSION_START,
        session_description="memory goal-switching task, spike-sorted microwire recording",
        sampling_rate=SAMPLING_RATE,
        metadata={"institution": "Test hospital", "lab": "Test lab", "experimenter": "Doe, John",
                  "experiment_description": "memory-based goal-switching task",
                  "keywords": ["memory", "goal switching"],
                  "device": {"name": "microwire bundles", "description": "depth electrodes with 8 microwires each",
                             "manufacturer": "Ad-Tech"}},
    )


# --------------------------------------------------------------------------------------------
# WaveClus times_<channel>.mat files


def waveclus_variables(cluster_class: np.ndarray, *, sr: float = SAMPLING_RATE, seed: int = 0) -> dict:
    """Every variable WaveClus's Do_clustering saves in times_<channel>.mat, for this cluster_class."""
    rng = np.random.default_rng(seed)
    n = len(cluster_class)
    classes = cluster_class[:, 0]
    n_clusters = int(classes.max()) if n else 0
    par = {
        "channels": 1.0, "segments_length": 5.0, "sr": float(sr), "tmax": "all", "tmin": 0.0, "w_pre": 20.0,
        "w_post": 44.0, "alignment_window": 10.0, "stdmin": 5.0, "stdmax": 50.0, "detect_fmin": 300.0,
        "detect_fmax": 3000.0, "sort_fmin": 300.0, "sort_fmax": 3000.0, "ref_ms": 1.5, "detection": "pos",
        "int_factor": 5.0, "interpolation": "y", "inputs": 10.0, "scales": 4.0, "features": "wav",
        "template_sdnum": 3.0, "template_k": 10.0, "template_k_min": 10.0, "template_type": "center",
        "force_feature": "spk", "match": "y", "max_spk": 40000.0, "permut": "y", "mintemp": 0.0,
        "maxtemp": 0.251, "tempstep": 0.01, "SWCycles": 100.0, "KNearNeighb": 11.0, "num_temp": 25.0,
        "min_clus": 20.0, "max_clus": 200.0, "randomseed": 0.0, "sorting_date": "01-May-2024 12:00:00",
    }
    return {
        "cluster_class": np.asarray(cluster_class, dtype=float),
        "spikes": rng.normal(0, 20, (n, 64)),
        "par": par,
        "inspk": rng.normal(0, 1, (n, 10)),
        "forced": np.zeros((1, n), dtype=bool),
        "Temp": np.full((1, n_clusters), 0.11),
        "gui_status": {"current_temp": 11.0, "auto_sort_info": np.zeros((0, 0)),
                       "original_classes": classes.reshape(1, -1).astype(float)},
        "ipermut": (rng.permutation(n) + 1.0).reshape(1, -1),
    }


def make_cluster_class(n_per_cluster: dict[int, int], *, duration_ms: float = 40_000.0, seed: int = 0) -> np.ndarray:
    """A cluster_class matrix: spikes of each cluster at random times, in detection (time) order."""
    rng = np.random.default_rng(seed)
    clusters = np.concatenate([np.full(n, cluster, dtype=float) for cluster, n in n_per_cluster.items()])
    times = np.round(rng.uniform(0, duration_ms, clusters.size) * SAMPLING_RATE / 1000) * 1000 / SAMPLING_RATE
    order = np.argsort(times, kind="stable")
    return np.column_stack([clusters[order], times[order]])


def write_times_v5(path: Path, variables: dict) -> Path:
    """Save like MATLAB's default ``save`` (v7 = format 5, compressed)."""
    import scipy.io

    scipy.io.savemat(path, variables, format="5", do_compression=True, oned_as="row")
    return path


def write_times_v73(path: Path, variables: dict) -> Path:
    """Save like MATLAB's ``save(..., '-v7.3')``: HDF5 with a 512-byte MATLAB header."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as handle:
        for name, value in variables.items():
            _write_matlab(handle, name, value)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Wed May  1 12:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as handle:
        handle.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")
    return path


def _write_matlab(group, name: str, value) -> None:
    import h5py

    if isinstance(value, dict):
        sub = group.create_group(name)
        sub.attrs["MATLAB_class"] = np.bytes_("struct")
        fields = np.empty(len(value), dtype=object)
        fields[:] = [np.frombuffer(key.encode(), dtype="S1") for key in value]
        sub.attrs.create("MATLAB_fields", fields, dtype=h5py.vlen_dtype(np.dtype("S1")))
        for key, item in value.items():
            _write_matlab(sub, key, item)
        return
    if isinstance(value, str):
        data = np.frombuffer(value.encode("utf-16-le"), dtype=np.uint16).reshape(-1, 1)
        dataset = group.create_dataset(name, data=data)
        dataset.attrs["MATLAB_class"] = np.bytes_("char")
        dataset.attrs["MATLAB_int_decode"] = np.int32(2)
        return
    array = np.atleast_2d(np.asarray(value))
    if array.size == 0:  # MATLAB stores an empty array as its dimensions
        dataset = group.create_dataset(name, data=np.array(array.shape[::-1], dtype=np.uint64))
        dataset.attrs["MATLAB_empty"] = np.uint8(1)
    elif array.dtype == bool:
        dataset = group.create_dataset(name, data=array.T.astype(np.uint8))
        dataset.attrs["MATLAB_int_decode"] = np.int32(1)
    else:
        dataset = group.create_dataset(name, data=array.T.astype(np.float64))
    dataset.attrs["MATLAB_class"] = np.bytes_("logical" if array.dtype == bool else "double")


# --------------------------------------------------------------------------------------------
# NWB files in the layouts of public DANDI human single-neuron memory datasets (column names as
# the datasets' own NWB files hold them; see each preset's header in b2m_neuro/adapters/presets/)

DANDI_AREAS = ["Left Hippocampus", "Right Amygdala", "Left Hippocampus"]


def dandi_units_file(*, duration: float, seed: int, subject: bool = True, **file_options):
    """An NWBFile with 3 units on 3 microwires (areas in the electrodes' location only, as in the
    Rutishauser-lab releases), Poisson spike trains over ``duration`` s; returns (file, trains)."""
    from pynwb import NWBFile
    from pynwb.file import Subject

    rng = np.random.default_rng(seed)
    nwbfile = NWBFile("DANDI layout test", f"layout-{seed}", SESSION_START, session_id="2",
                      subject=Subject(subject_id="P7", species="Homo sapiens") if subject else None, **file_options)
    device = nwbfile.create_device("Neuralynx-cheetah")
    for channel, area in enumerate(DANDI_AREAS):
        group = nwbfile.create_electrode_group(f"microwires-{channel}", "Behnke-Fried bundle", location=area, device=device)
        nwbfile.add_electrode(location=area, group=group, x=0.0, y=0.0, z=0.0, imp=np.nan, filtering="300-3000Hz")
    trains = [np.sort(rng.uniform(0.0, duration, rng.poisson(rate * duration))) for rate in (8.0, 3.0, 15.0)]
    for unit, spikes in enumerate(trains):
        nwbfile.add_unit(spike_times=spikes, electrodes=[unit])
    return nwbfile, trains


def add_trials(nwbfile, table: pd.DataFrame, *, layout: str) -> None:
    """The rows of ``table`` (``start_time``, ``stop_time``, then its own columns) as the file's trials."""
    for column in table.columns[2:]:
        nwbfile.add_trial_column(column, f"{column} ({layout} layout)")
    for row in table.to_dict("records"):
        nwbfile.add_trial(**row)


def write_nwb(nwbfile, path: Path) -> Path:
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


def write_dandi_000004(path: Path, *, n_study: int = 6, n_test: int = 8, seed: int = 0) -> tuple[pd.DataFrame, list]:
    """A DANDI:000004 recognition session: learn trials, then recog trials (half old, one unanswered)."""
    rng = np.random.default_rng(seed)
    n = n_study + n_test
    onsets = 3.0 + 4.0 * np.arange(n)
    images = [f"newolddelay\\animals\\{i}.jpg" for i in range(n_study)]
    old = rng.permutation(np.arange(n_test) < n_test // 2)
    test_images = [images[i % n_study] if is_old else f"newolddelay\\cars\\{i}.jpg" for i, is_old in enumerate(old)]
    confident = rng.integers(1, 4, n_test)
    answers = np.where(old, 33 + confident, 34 - confident)  # mostly right: old -> 34-36, new -> 31-33
    answers[1] = 0  # no answer
    table = pd.DataFrame({
        "start_time": onsets, "stop_time": onsets + 3.0, "stim_on_time": onsets, "stim_off_time": onsets + 1.0,
        "delay1_time": onsets + 1.5, "delay2_time": onsets + 3.0,
        "stim_phase": ["learn"] * n_study + ["recog"] * n_test,
        "stimCategory": rng.integers(1, 6, n).astype(np.uint8),
        "category_name": [image.split("\\")[1] for image in images + test_images],
        "external_image_file": images + test_images,
        "new_old_labels_recog": ["NA"] * n_study + ["0" if is_old else "1" for is_old in old],
        "response_value": np.concatenate([rng.integers(0, 2, n_study), answers]).astype(float),
        "response_time": onsets + 1.5 + rng.uniform(0.3, 1.2, n),
    })
    nwbfile, trains = dandi_units_file(duration=onsets[-1] + 5.0, seed=seed)
    add_trials(nwbfile, table, layout="DANDI:000004")
    write_nwb(nwbfile, path)
    return table, trains


def write_dandi_000207(path: Path, *, n_clips: int = 5, n_frames: int = 8, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """A DANDI:000207 session: an encoding_table of video clips and a recognition_table of frames
    (targets and foils, one unanswered); units.electrodes stored without an index, as in the release."""
    from pynwb.epoch import TimeIntervals

    rng = np.random.default_rng(seed)
    clip_starts = 2.0 + 10.0 * np.arange(n_clips)
    encoding = pd.DataFrame({
        "start_time": clip_starts, "stop_time": clip_starts + 8.0, "fixcross_time": clip_starts - 1.0,
        "Clip_name": [f"clip{i:02d}.mp4" for i in range(n_clips)],
        "stimCategory": rng.integers(1, 4, n_clips).astype(np.uint8),
        "ExperimentID": np.full(n_clips, 70.0),
    })
    frame_starts = clip_starts[-1] + 12.0 + 4.0 * np.arange(n_frames)
    target = rng.permutation(np.arange(n_frames) < n_frames // 2).astype(np.uint8)
    old_new = np.where(rng.random(n_frames) < 0.8, 2 - (1 - target), 1 + (1 - target)).astype(np.uint8)  # 2 old, 1 new
    old_new[2] = 0  # no response
    accuracy = np.where(old_new == 0, 0, np.where((old_new == 2) == (target == 1), 2, 1)).astype(np.uint8)
    recognition = pd.DataFrame({
        "start_time": frame_starts, "stop_time": frame_starts + 2.5, "fixcross_time": frame_starts - 0.5,
        "frameName": [f"frame{i:02d}.jpg" for i in range(n_frames)],
        "stimuli_type": target, "old_new": old_new, "accuracy": accuracy,
        "confidence": rng.integers(1, 4, n_frames).astype(np.uint8),
        "RT": rng.uniform(0.5, 2.0, n_frames),
        "ExperimentID": np.full(n_frames, 71.0),
    })
    nwbfile, trains = dandi_units_file(duration=frame_starts[-1] + 4.0, seed=seed)
    for name, frame in (("encoding_table", encoding), ("recognition_table", recognition)):
        table = TimeIntervals(name=name, description=f"intervals for the {name.split('_')[0]} task")
        for column in frame.columns[2:]:
            table.add_column(column, f"{column} (DANDI:000207 layout)")
        for row in frame.to_dict("records"):
            table.add_row(**row)
        nwbfile.add_time_intervals(table)
    write_nwb(nwbfile, path)
    drop_units_electrodes_index(path)
    return encoding, recognition, trains


def drop_units_electrodes_index(path: Path) -> None:
    """Store units.electrodes as one electrode per unit without electrodes_index (pynwb always
    writes the index; MatNWB and the NWB schema allow it without)."""
    import h5py

    with h5py.File(path, "r+") as handle:
        units = handle["units"]
        attrs, data = dict(units["electrodes"].attrs), units["electrodes"][()]
        del units["electrodes"], units["electrodes_index"]
        units.create_dataset("electrodes", data=data).attrs.update(attrs)


STERNBERG_COLUMNS = {  # dataset -> (encoding picture id columns, probe picture id column)
    "000469": (("loadsEnc1_PicIDs", "loadsEnc2_PicIDs", "loadsEnc3_PicIDs"), "loadsProbe_PicIDs"),
    "000673": (("PicIDs_Encoding1", "PicIDs_Encoding2", "PicIDs_Encoding3"), "PicIDs_Probe"),
}


def write_sternberg(path: Path, dataset: str, *, n_trials: int = 9, seed: int = 0) -> tuple[pd.DataFrame, list]:
    """A Sternberg working-memory session in the layout of DANDI:000469 or 000673: loads 1-3,
    encoding/maintenance/probe/response times, picture ids (0 = no picture), probe in/out."""
    rng = np.random.default_rng(seed)
    encoding_columns, probe_column = STERNBERG_COLUMNS[dataset]
    loads = np.resize([1, 2, 3], n_trials)
    start = 2.0 + 9.0 * np.arange(n_trials)
    pictures = np.array([rng.choice(np.arange(1, 6), 3, replace=False) for _ in range(n_trials)])
    pictures[np.arange(3)[None, :] >= loads[:, None]] = 0
    probe_in = rng.permutation(np.arange(n_trials) % 2 == 0)
    probe = np.where(probe_in, pictures[:, 0], 6 + rng.integers(0, 3, n_trials))
    encoding_on = start[:, None] + 1.0 + 1.2 * np.arange(3)[None, :]
    encoding_on[pictures == 0] = np.nan
    maintenance = start + 1.0 + 1.2 * loads
    probe_time = maintenance + 2.5
    response = probe_time + rng.uniform(0.4, 1.5, n_trials)
    table = pd.DataFrame({
        "start_time": start, "stop_time": response + 0.5, "loads": loads,
        **{column: pictures[:, i] for i, column in enumerate(encoding_columns)}, probe_column: probe,
        "probe_in_out": probe_in.astype(int), "response_accuracy": (rng.random(n_trials) < 0.9).astype(int),
        "timestamps_FixationCross": start + 0.2,
        **{f"timestamps_Encoding{i + 1}": encoding_on[:, i] for i in range(3)},
        **{f"timestamps_Encoding{i + 1}_end": encoding_on[:, i] + 1.0 for i in range(3)},
        "timestamps_Maintenance": maintenance, "timestamps_Probe": probe_time, "timestamps_Response": response,
    })
    nwbfile, trains = dandi_units_file(duration=table["stop_time"].max() + 2.0, seed=seed)
    add_trials(nwbfile, table, layout=f"DANDI:{dataset}")
    write_nwb(nwbfile, path)
    return table, trains

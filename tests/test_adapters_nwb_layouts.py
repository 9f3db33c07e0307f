"""NWB layouts as archives hold them: each loads through ``load_spikes`` and ``b2m-neuro embed``, or
gets a clear error (exit status 2, no traceback).

Every file is written with pynwb. pynwb always indexes the units table's ``electrodes`` column, so
the single-electrode layout (no ``electrodes_index``, as MatNWB and other writers store it and the
NWB schema allows) is made by rewriting that column with h5py after pynwb wrote the file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import warnings

import numpy as np
import pytest

from b2m_neuro.adapters import TeacherSpec, UnitSelection, load_spikes
from b2m_neuro.cli import main
from b2m_neuro.errors import AdapterError

ONSETS = 2.0 + 2.0 * np.arange(6)
CONDITIONS = ["face", "house", "face", "tool", "house", "tool"]
AREAS = ["hippocampus", "amygdala", "hippocampus"]
TRAINS = [np.sort(np.random.default_rng(unit).uniform(0.0, 15.0, n)) for unit, n in enumerate((300, 120, 40))]
SPEC = """
align = "stimulus_onset"
time_unit = "{time_unit}"
intervals = "{intervals}"
task_columns = {task_columns}
[post]
kind = "fixed"
start = 0.0
stop = 1.0
bin_width = 0.25
"""


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a file stores its units, areas, text and trials."""

    area: str = "brain_area"  # brain_area | units_location | electrode_location | group_location | none
    electrodes: str = "indexed"  # indexed | single | several | none
    text: type = str  # str or bytes, for text columns
    time_unit: str = "s"
    intervals: str = "trials"  # the table holding the task rows; other tables are added around it
    task_columns: tuple[str, ...] = ("condition",)
    subject: bool = True  # a Subject with subject_id; False: no Subject group at all


LAYOUTS = {
    "brain_area column": Layout(),
    "bytes text columns": Layout(text=bytes),
    "units location column": Layout(area="units_location"),
    "single electrode per unit, areas from electrodes": Layout(area="electrode_location", electrodes="single"),
    "electrode location unknown, areas from groups": Layout(area="group_location", electrodes="single"),
    "several electrodes per unit": Layout(area="electrode_location", electrodes="several"),
    "spike times in ms": Layout(time_unit="ms"),
    "several intervals tables": Layout(intervals="recognition"),
    "no memory-task columns": Layout(task_columns=()),
    "no Subject": Layout(subject=False),
}


def write_layout(path, layout: Layout, *, trains=TRAINS, starts=None, electrode_rows=None):
    """A 3-unit, 6-trial NWB file of this layout (trials 1 s before to 1 s after each onset)."""
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.epoch import TimeIntervals
    from pynwb.file import Subject

    nwbfile = NWBFile("layout test", "layout", dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), session_id="s1",
                      subject=Subject(subject_id="P1", species="Homo sapiens") if layout.subject else None)  # fmt: skip
    if layout.electrodes != "none":
        add_electrodes(nwbfile, layout)
    columns = {"brain_area": "brain_area", "units_location": "location"}
    if layout.area in columns:
        nwbfile.add_unit_column(columns[layout.area], "brain area")
    scale = 1000.0 if layout.time_unit == "ms" else 1.0
    for unit, spikes in enumerate(trains):
        extra = {columns[layout.area]: text(layout, AREAS[unit])} if layout.area in columns else {}
        if layout.electrodes != "none":
            extra["electrodes"] = [unit, unit + 3] if layout.electrodes == "several" else [unit]
        nwbfile.add_unit(spike_times=np.asarray(spikes) * scale, **extra)
    table = TimeIntervals(name=layout.intervals, description="task rows")
    table.add_column("stimulus_onset", "stimulus onset (s)")
    table.add_column("condition", "stimulus category")
    for row, onset in enumerate(ONSETS):
        start = onset - 1.0 if starts is None else starts[row]
        table.add_row(start_time=start, stop_time=onset + 1.0, stimulus_onset=onset, condition=text(layout, CONDITIONS[row]))
    if layout.intervals == "trials":
        nwbfile.trials = table
    else:
        nwbfile.add_time_intervals(table)
        nwbfile.add_trial(start_time=0.0, stop_time=15.0)  # a trials table that is not the task's
    blocks = TimeIntervals(name="blocks", description="task blocks")
    blocks.add_row(start_time=0.0, stop_time=8.0)
    nwbfile.add_time_intervals(blocks)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    if layout.electrodes == "single":
        drop_electrodes_index(path)
    if electrode_rows is not None:
        set_electrode_rows(path, electrode_rows)
    return path


def text(layout: Layout, value: str) -> str | bytes:
    return value.encode() if layout.text is bytes else value


def add_electrodes(nwbfile, layout: Layout) -> None:
    """Six electrodes: 0-2 the units' first ones, 3-5 their second ones (in "cortex"); only the layout's
    area source holds the right areas.
    """
    device = nwbfile.create_device("probe")
    groups = {area: nwbfile.create_electrode_group(area, "bundle", device=device,
                                                   location=area if layout.area == "group_location" else "elsewhere")
              for area in dict.fromkeys(AREAS)}  # fmt: skip
    for area, location in zip(AREAS + AREAS, AREAS + ["cortex"] * 3, strict=True):
        nwbfile.add_electrode(location=location if layout.area == "electrode_location" else "unknown", group=groups[area])


def drop_electrodes_index(path):
    """Store units.electrodes as one electrode per unit, without electrodes_index."""
    import h5py

    with h5py.File(path, "r+") as handle:
        units = handle["units"]
        attrs, data = dict(units["electrodes"].attrs), units["electrodes"][()]
        del units["electrodes"], units["electrodes_index"]
        column = units.create_dataset("electrodes", data=data)
        column.attrs.update(attrs)


def set_electrode_rows(path, rows):
    """Overwrite the units' electrode row numbers (e.g. with rows the electrodes table lacks)."""
    import h5py

    with h5py.File(path, "r+") as handle:
        handle["units/electrodes"][:] = rows


def spec_file(tmp_path, layout: Layout, task_columns=None):
    path = tmp_path / "spec.toml"
    columns = layout.task_columns if task_columns is None else task_columns
    path.write_text(SPEC.format(time_unit=layout.time_unit, intervals=layout.intervals,
                                task_columns=list(columns)).replace("'", '"'))  # fmt: skip
    return path


def embed(nwb, spec, out):
    return main(["embed", str(nwb), "--spec", str(spec), "--method", "pca", "--dim", "2", "--permutations", "5",
                 "--out", str(out), "--quiet"])  # fmt: skip


def expected_rates(trains=TRAINS):
    """Spike counts per 0.25 s bin from each onset to 1 s after, over the bin width: (trial, time, unit)."""
    return np.stack([[np.histogram(spikes, onset + np.linspace(0, 1, 5))[0] / 0.25 for spikes in trains]
                     for onset in ONSETS]).transpose(0, 2, 1)  # fmt: skip


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_layout_loads_through_api_and_cli(layout, tmp_path, capsys):
    path = write_layout(tmp_path / "session.nwb", layout)
    spec = spec_file(tmp_path, layout)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rates = load_spikes(path, spec, progress=False)
    assert rates["subject"].item() == ("P1" if layout.subject else "unknown")
    assert any("no subject_id" in str(w.message) for w in caught) != layout.subject
    assert rates.dims == ("trial", "time", "unit") and rates.shape == (6, 4, 3)
    np.testing.assert_allclose(rates, expected_rates(), rtol=1e-5)
    assert list(rates["brain_area"].to_numpy()) == AREAS
    assert list(rates["trial"].to_numpy()) == list(range(6))
    if layout.task_columns:
        assert list(rates["condition"].to_numpy()) == CONDITIONS
    assert embed(path, spec, tmp_path / "derivatives" / "b2m-pca") == 0
    assert "Traceback" not in capsys.readouterr().err


def test_no_area_anywhere_is_unknown(tmp_path):
    layout = Layout(area="none", electrodes="none")
    path = write_layout(tmp_path / "session.nwb", layout)
    rates = load_spikes(path, spec_file(tmp_path, layout), progress=False)
    assert list(rates["brain_area"].to_numpy()) == ["unknown"] * 3


def assert_clean_cli_error(path, spec, tmp_path, capsys, *pieces):
    out = tmp_path / "derivatives" / "b2m-pca"
    assert embed(path, spec, out) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(path) in err and all(piece in err for piece in pieces), err
    assert not out.exists()


def test_memory_task_columns_missing_are_named_with_the_spec_field(tmp_path, capsys):
    layout = LAYOUTS["no memory-task columns"]
    path = write_layout(tmp_path / "session.nwb", layout)
    spec = spec_file(tmp_path, layout, task_columns=("condition", "stimulus", "correct"))
    with pytest.raises(AdapterError, match=r"lacks the task columns \['stimulus', 'correct'\]") as info:
        load_spikes(path, spec, progress=False)
    assert info.value.field == "task_columns" and info.value.file == str(path)
    assert_clean_cli_error(path, spec, tmp_path, capsys, "task_columns", "'stimulus', 'correct'")


def test_wrong_intervals_table_lists_the_tables(tmp_path, capsys):
    layout = LAYOUTS["several intervals tables"]
    path = write_layout(tmp_path / "session.nwb", layout)
    spec = spec_file(tmp_path, dataclasses.replace(layout, intervals="study"))
    with pytest.raises(AdapterError, match="no intervals table named 'study'.*blocks, recognition, trials") as info:
        load_spikes(path, spec, progress=False)
    assert info.value.field == "intervals"
    assert_clean_cli_error(path, spec, tmp_path, capsys, "intervals", "recognition")


# ---------------------------------------------------------------- bad input
def test_truncated_file(tmp_path, capsys):
    path = write_layout(tmp_path / "session.nwb", Layout())
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(AdapterError, match="cannot be read as NWB.*truncated") as info:
        load_spikes(path, spec_file(tmp_path, Layout()), progress=False)
    assert info.value.field == "nwb" and info.value.file == str(path) and "download" in info.value.fix
    assert_clean_cli_error(path, spec_file(tmp_path, Layout()), tmp_path, capsys, "cannot be read as NWB")


def test_interval_stopping_before_its_start(tmp_path, capsys):
    starts = ONSETS - 1.0
    starts[[1, 4]] = ONSETS[[1, 4]] + 5.0  # after their stop (onset + 1)
    path = write_layout(tmp_path / "session.nwb", Layout(), starts=starts)
    spec = spec_file(tmp_path, Layout())
    with pytest.raises(AdapterError, match=r"2 interval\(s\) stop before they start \(rows 1, 4\)") as info:
        load_spikes(path, spec, progress=False)
    assert info.value.field == "trials.stop_time" and info.value.file == str(path)
    assert_clean_cli_error(path, spec, tmp_path, capsys, "trials.stop_time", "rows 1, 4")


def test_nan_spike_times_are_dropped_with_a_warning_naming_file_and_unit(tmp_path):
    trains = [TRAINS[0], np.concatenate([TRAINS[1], [np.nan, np.nan]]), np.concatenate([[np.inf], TRAINS[2]])]
    path = write_layout(tmp_path / "session.nwb", Layout(), trains=trains)
    with pytest.warns(UserWarning, match=r"3 NaN or infinite spike times are dropped: units\[1\] \(2\), units\[2\] \(1\)") as record:
        rates = load_spikes(path, spec_file(tmp_path, Layout()), progress=False)
    assert str(path) in str(record[0].message)
    np.testing.assert_allclose(rates, expected_rates(), rtol=1e-5)


def test_no_subject_takes_the_label_of_a_dandi_file_name(tmp_path, capsys):
    layout = Layout(subject=False)
    path = write_layout(tmp_path / "sub-P9_ses-2_ecephys.nwb", layout)
    with pytest.warns(UserWarning, match=r"no subject_id; the subject is labelled 'P9' \(from the file name\)"):
        rates = load_spikes(path, spec_file(tmp_path, layout), progress=False)
    assert rates["subject"].item() == rates.attrs["subject"] == "P9"
    out = tmp_path / "derivatives" / "b2m-pca"
    assert embed(path, spec_file(tmp_path, layout), out) == 0
    assert (out / "sub-P9" / "ses-s1").is_dir(), capsys.readouterr().err


def test_electrode_out_of_range_is_a_clear_error(tmp_path, capsys):
    layout = Layout(area="electrode_location", electrodes="indexed")
    path = write_layout(tmp_path / "session.nwb", layout, electrode_rows=[0, 9, 2])
    with pytest.raises(AdapterError, match=r"1 unit\(s\) refer to electrodes that do not exist \(units\[1\] -> 9\)") as info:
        load_spikes(path, spec_file(tmp_path, layout), progress=False)
    assert info.value.field == "units.electrodes" and info.value.file == str(path) and "0 to 5" in info.value.fix
    assert_clean_cli_error(path, spec_file(tmp_path, layout), tmp_path, capsys, "units.electrodes")


def test_min_rate_does_not_count_nan_spike_times(tmp_path):
    # unit 1: 120 real spikes + 600 NaN; over the 13 s trials span its rate is 9.2 Hz, not 55 Hz
    trains = [TRAINS[0], np.concatenate([TRAINS[1], np.full(600, np.nan)]), TRAINS[2]]
    path = write_layout(tmp_path / "session.nwb", Layout(), trains=trains)
    spec = TeacherSpec.from_toml(spec_file(tmp_path, Layout())).replace(units=UnitSelection(min_rate=12.0))
    rates = load_spikes(path, spec, progress=False)
    span = (ONSETS[-1] + 1.0) - (ONSETS[0] - 1.0)
    assert len(TRAINS[0]) / span >= 12.0 > len(TRAINS[1]) / span and len(TRAINS[2]) / span < 12.0
    assert list(rates["unit"].to_numpy()) == [0]


# ---------------------------------------------------------------- DANDI presets on files of their layouts
def recognition_expectations(table):
    """The variables dandi000004 should give, computed from its trials table (rows kept: study, answered test)."""
    answered = table["response_value"].between(31, 36)
    kept = table[(table["stim_phase"] == "learn") | answered]
    test = kept["stim_phase"] == "recog"
    response = np.where(test, (kept["response_value"] >= 34).astype(int), -1)
    return kept, {
        "task_phase": np.where(test, "test", "study"),
        "stimulus": kept["external_image_file"].to_numpy(),
        "category": kept["category_name"].to_numpy(),
        "target": (kept["new_old_labels_recog"] == "0").astype(int).to_numpy(),
        "response": response,
        "correct": ((kept["new_old_labels_recog"] == "0").astype(int).to_numpy() == response).astype(int),
        "reaction_time": (kept["response_time"] - kept["stim_on_time"]).to_numpy(),
    }


def test_dandi000004_preset_poses_study_and_test_trials(tmp_path, capsys):
    from spike_data import write_dandi_000004

    path = tmp_path / "sub-P7_ses-1_ecephys+image.nwb"
    table, trains = write_dandi_000004(path)
    rates = load_spikes(path, "dandi000004", progress=False)
    kept, expected = recognition_expectations(table)
    assert len(kept) == len(table) - 1  # the one unanswered test trial is dropped
    np.testing.assert_array_equal(rates["trial"], kept.index.to_numpy())
    for name, values in expected.items():
        np.testing.assert_allclose(rates[name], values) if name == "reaction_time" else \
            np.testing.assert_array_equal(rates[name], values, err_msg=name)
    assert list(rates["brain_area"].to_numpy()) == ["Left Hippocampus", "Right Amygdala", "Left Hippocampus"]
    assert rates.sizes == {"trial": len(kept), "time": 20, "unit": 3}
    # rates: 100 ms bins from 1.5 s before onset (0.5 s history), exp(-t / 0.1 s) filter, history dropped
    spec = TeacherSpec.preset("dandi000004")
    onset = kept["stim_on_time"].iloc[7]
    counts = np.histogram(trains[2], onset + np.linspace(-1.5, 1.0, 26))[0] / 0.1
    np.testing.assert_allclose(rates[7, :, 2], np.convolve(counts, spec.kernel())[:25][5:], rtol=1e-5, atol=1e-4)
    assert embed(path, spec_file_for("dandi000004", tmp_path), tmp_path / "derivatives" / "b2m-pca") == 0
    assert "Traceback" not in capsys.readouterr().err


def spec_file_for(preset, tmp_path):
    from b2m_neuro.adapters.spec import preset_text

    path = tmp_path / f"{preset}.toml"
    path.write_text(preset_text(preset))
    return path


def test_dandi000207_preset_stacks_encoding_and_recognition_tables(tmp_path, capsys):
    from spike_data import write_dandi_000207

    path = tmp_path / "sub-P60CS_ses-1_ecephys.nwb"
    encoding, recognition, trains = write_dandi_000207(path)
    rates = load_spikes(path, "dandi000207", progress=False)
    answered = recognition[recognition["old_new"] > 0]
    assert len(answered) == len(recognition) - 1
    np.testing.assert_array_equal(rates["trial"], np.concatenate([encoding.index, len(encoding) + answered.index]))
    np.testing.assert_array_equal(rates["task_phase"], ["study"] * len(encoding) + ["test"] * len(answered))
    np.testing.assert_array_equal(rates["stimulus"], [*encoding["Clip_name"], *answered["frameName"]])
    np.testing.assert_array_equal(rates["target"], [0] * len(encoding) + list(answered["stimuli_type"]))
    np.testing.assert_array_equal(rates["response"], [-1] * len(encoding) + list((answered["old_new"] == 2).astype(int)))
    np.testing.assert_array_equal(rates["correct"], [0] * len(encoding) + list((answered["accuracy"] == 2).astype(int)))
    np.testing.assert_allclose(rates["reaction_time"][len(encoding):], answered["RT"])
    assert np.isnan(rates["reaction_time"][: len(encoding)]).all()
    assert list(rates["brain_area"].to_numpy()) == ["Left Hippocampus", "Right Amygdala", "Left Hippocampus"]
    onset = answered["start_time"].iloc[2]  # a test trial, aligned to its frame onset
    counts = np.histogram(trains[0], onset + np.linspace(-1.5, 1.0, 26))[0] / 0.1
    kernel = TeacherSpec.preset("dandi000207").kernel()
    np.testing.assert_allclose(rates[len(encoding) + 2, :, 0], np.convolve(counts, kernel)[:25][5:], rtol=1e-5, atol=1e-4)
    assert embed(path, spec_file_for("dandi000207", tmp_path), tmp_path / "derivatives" / "b2m-pca") == 0
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("dataset", ["000469", "000673"])
def test_sternberg_presets_give_loads_items_probe_and_in_out(dataset, tmp_path, capsys):
    from spike_data import STERNBERG_COLUMNS, write_sternberg

    path = tmp_path / "sub-3_ses-2_ecephys+image.nwb"
    table, trains = write_sternberg(path, dataset)
    rates = load_spikes(path, f"dandi{dataset}", progress=False)
    encoding_columns, probe_column = STERNBERG_COLUMNS[dataset]
    np.testing.assert_array_equal(rates["load"], table["loads"])
    for i, column in enumerate(encoding_columns):
        np.testing.assert_array_equal(rates[f"encoding_{i + 1}"], table[column])
    np.testing.assert_array_equal(rates["probe"], table[probe_column])
    np.testing.assert_array_equal(rates["target"], table["probe_in_out"])
    np.testing.assert_array_equal(rates["correct"], table["response_accuracy"])
    np.testing.assert_allclose(rates["reaction_time"], table["timestamps_Response"] - table["timestamps_Probe"])
    assert set(rates["target"].to_numpy()) == {0, 1} and set(rates["load"].to_numpy()) == {1, 2, 3}
    probe = table["timestamps_Probe"].iloc[4]  # 250 ms bins from 3 s before the probe (1 s history) to 1 s after
    counts = np.histogram(trains[1], probe + np.linspace(-3.0, 1.0, 17))[0] / 0.25
    kernel = TeacherSpec.preset(f"dandi{dataset}").kernel()
    np.testing.assert_allclose(rates[4, :, 1], np.convolve(counts, kernel)[:16][4:], rtol=1e-5, atol=1e-4)
    assert embed(path, spec_file_for(f"dandi{dataset}", tmp_path), tmp_path / "derivatives" / "b2m-pca") == 0
    assert "Traceback" not in capsys.readouterr().err


def test_sternberg_preset_on_a_screening_session_names_the_missing_column(tmp_path, capsys):
    layout = Layout(intervals="trials")
    path = write_layout(tmp_path / "session.nwb", layout)  # a trials table without the Sternberg columns
    with pytest.raises(AdapterError, match="the trials table has no column 'loads'; its columns are: start_time") as info:
        load_spikes(path, "dandi000469", progress=False)
    assert info.value.field == "trials.loads"
    assert_clean_cli_error(path, spec_file_for("dandi000469", tmp_path), tmp_path, capsys, "trials.loads")

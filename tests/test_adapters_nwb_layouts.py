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

import numpy as np
import pytest

from b2m_neuro.adapters import load_spikes
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
}


def write_layout(path, layout: Layout, *, trains=TRAINS, starts=None):
    """A 3-unit, 6-trial NWB file of this layout (trials 1 s before to 1 s after each onset)."""
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.epoch import TimeIntervals
    from pynwb.file import Subject

    nwbfile = NWBFile("layout test", "layout", dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), session_id="s1",
                      subject=Subject(subject_id="P1", species="Homo sapiens"))  # fmt: skip
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
    rates = load_spikes(path, spec, progress=False)
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

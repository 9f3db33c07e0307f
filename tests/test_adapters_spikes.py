"""load_spikes and its vectorized core: hand-computed bins, the paper filter, NWB round trips, bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from b2m_neuro._util.files import sha256
from b2m_neuro.adapters import FilterSpec, FixedWindow, ReactionTimeWindow, TeacherSpec, UnitSelection, load_spikes
from b2m_neuro.adapters.spec import CodeMap, ColumnExpression, ColumnSum, TrialBlocks, TrialSelection
from b2m_neuro.adapters.spikes import EdgeSearch, TrialBins, bin_layout, causal_filter, spike_rates, trial_edges
from b2m_neuro.convert import spikes_to_nwb
from b2m_neuro.errors import AdapterError
from b2m_neuro.simulate import memory_session

PHY = "nwb/pynapple_phy_A8604-211122.nwb"
PAPER = TeacherSpec.preset("paper")
UNFILTERED = PAPER.replace(filter=FilterSpec(kind="none"))


def rates_of(trains, spec, align, reaction_times=None, **kwargs):
    """Run the core on a list of spike trains (one per unit)."""
    bins = TrialBins.build(trial_edges(spec, np.asarray(align), reaction_times), bin_layout(spec))
    data = np.concatenate([np.asarray(t, dtype=float) for t in trains])
    index = np.cumsum([len(t) for t in trains])
    return spike_rates(data, index, np.arange(len(trains)), bins, spec.kernel(), skip=spec.n_history, **kwargs)


def histogram_rates(spikes, edges):
    """Reference: np.histogram per window, divided by the bin widths."""
    return np.histogram(spikes, edges)[0] / np.diff(edges)


# ---------------------------------------------------------------- core, hand-computed
def test_known_spikes_give_known_rates_with_reaction_time_bins():
    spec = TeacherSpec(align="onset", pre=FixedWindow(-1.0, 0.0, 0.5), post=ReactionTimeWindow(n_bins=4))
    # trial 0: onset 10, rt 2 -> pre bins [9, 9.5), [9.5, 10); post bins of 0.5 s from 10 to 12
    # trial 1: onset 20, rt 0.4 -> post bins of 0.1 s from 20 to 20.4
    unit_a = [9.1, 9.2, 9.6, 10.0, 10.7, 11.99, 12.0, 19.5, 20.05, 20.15, 20.16, 20.39]
    unit_b = [8.0, 30.0]  # outside every window
    rates = rates_of([unit_a, unit_b], spec, [10.0, 20.0], [2.0, 0.4])
    assert rates.shape == (2, 6, 2) and rates.dtype == np.float32
    # counts trial 0: pre [2, 1]; post [1 (10.0), 1 (10.7), 0, 1 (11.99)]; 12.0 is the window end
    np.testing.assert_allclose(rates[0, :, 0], np.array([2, 1, 1, 1, 0, 1]) / 0.5)
    # trial 1: pre [0, 1 (19.5)]; post [1, 2, 0, 1] in 0.1 s bins
    np.testing.assert_allclose(rates[1, :, 0], [0, 2, 10, 20, 0, 10], rtol=1e-6)
    assert not rates[:, :, 1].any()


def test_reaction_time_normalization_keeps_100_bins_whatever_the_reaction_time():
    spikes = np.sort(np.random.default_rng(3).uniform(0, 100, 4000))
    onsets, rts = np.array([10.0, 40.0, 70.0]), np.array([0.3, 1.0, 2.5])
    rates = rates_of([spikes], UNFILTERED, onsets, rts)
    assert rates.shape == (3, 200, 1)
    for trial, (onset, rt) in enumerate(zip(onsets, rts)):
        pre_edges = onset + np.linspace(-1, 0, 101)
        post_edges = onset + rt * np.linspace(0, 1, 101)
        np.testing.assert_allclose(rates[trial, :100, 0], histogram_rates(spikes, pre_edges), rtol=1e-6)
        np.testing.assert_allclose(rates[trial, 100:, 0], histogram_rates(spikes, post_edges), rtol=1e-6)
        # bin widths differ (rt / 100) but the spike count is preserved
        assert np.isclose(rates[trial, 100:, 0].sum() * rt / 100, np.sum((spikes >= onset) & (spikes < onset + rt)))


def test_overlapping_windows_are_binned_like_each_trial_alone():
    rng = np.random.default_rng(7)
    trains = [np.sort(rng.uniform(0, 60, n)) for n in (500, 80, 0, 1200)]
    onsets = np.sort(rng.uniform(2, 55, 40))  # 3 s windows every ~1.3 s: deep overlaps, unsorted rows below
    onsets = rng.permutation(onsets)
    spec = TeacherSpec(align="onset", pre=FixedWindow(-1.0, -0.2, 0.2), post=FixedWindow(0.0, 2.0, 0.25))
    bins = TrialBins.build(trial_edges(spec, onsets), bin_layout(spec))
    assert len(bins.groups) > 2 and sorted(np.concatenate([rows for rows, _ in bins.groups])) == list(range(40))
    rates = rates_of(trains, spec, onsets)
    for trial, onset in enumerate(onsets):
        for unit, spikes in enumerate(trains):
            expected = np.concatenate(
                [histogram_rates(spikes, onset + np.linspace(-1, -0.2, 5)), histogram_rates(spikes, onset + np.linspace(0, 2, 9))]
            )
            np.testing.assert_allclose(rates[trial, :, unit], expected, rtol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_edge_search_equals_searchsorted(seed):
    rng = np.random.default_rng(seed)
    repeated = np.sort(rng.uniform(0, 100, 5))
    edges = np.sort(np.concatenate([rng.uniform(0, 100, rng.integers(2, 400)), rng.choice(repeated, 4), repeated]))
    times = np.concatenate([rng.uniform(-5, 105, 3000), edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf),
                            [np.nan, np.inf, -np.inf]])  # fmt: skip
    for max_buckets in (1, 7, 1 << 22):  # coarse buckets need many steps; fine ones few
        search = EdgeSearch(edges, max_buckets=max_buckets)
        for order in (times, np.sort(times)):
            np.testing.assert_array_equal(search.positions(order), np.searchsorted(edges, order, side="right") - 1)


def test_chunking_and_unit_choice_do_not_change_rates():
    rng = np.random.default_rng(11)
    trains = [np.sort(rng.uniform(0, 200, rng.integers(100, 2000))) for _ in range(7)]
    onsets, rts = np.arange(5, 190, 4.0), rng.uniform(0.3, 2.0, 47)
    whole = rates_of(trains, PAPER, onsets, rts)
    tiny = rates_of(trains, PAPER, onsets, rts, chunk_bytes=1)  # one unit per chunk
    np.testing.assert_allclose(whole, tiny, rtol=1e-6, atol=1e-6)  # float32 matrix products differ by an ulp
    bins = TrialBins.build(trial_edges(PAPER, onsets, rts), bin_layout(PAPER))
    data, index = np.concatenate(trains), np.cumsum([len(t) for t in trains])
    some = spike_rates(data, index, [1, 4, 6], bins, PAPER.filter.kernel())
    np.testing.assert_allclose(some, whole[:, :, [1, 4, 6]], rtol=1e-6, atol=1e-6)


def test_causal_filter_is_the_papers_centred_kernel_with_20_zeros():
    rates = np.random.default_rng(0).gamma(2.0, 5.0, size=(6, 200)).astype(np.float32)
    weights = np.exp(-0.5 * np.arange(0, 10.001, 0.5))
    paper_kernel = np.concatenate([np.zeros(20), weights])
    kernel = PAPER.filter.kernel()
    filtered = causal_filter(rates, kernel)
    for row in range(6):
        centred = np.convolve(rates[row].astype(float), paper_kernel, mode="same") / weights.sum()
        np.testing.assert_allclose(filtered[row], centred, rtol=1e-5, atol=1e-5)
    impulse = np.zeros((1, 200), np.float32)
    impulse[0, 150] = 1.0
    response = causal_filter(impulse, kernel)[0]
    assert not response[:150].any()  # causal: nothing before the spike
    np.testing.assert_allclose(response[150:171], kernel, rtol=1e-6)
    assert not response[171:].any()
    constant = causal_filter(np.full((1, 200), 7.0, np.float32), kernel)[0]
    np.testing.assert_allclose(constant[20:], 7.0, rtol=1e-6)  # rates stay in Hz once the kernel is full


# ---------------------------------------------------------------- simulated session -> NWB -> rates
@pytest.fixture(scope="module")
def session(tmp_path_factory):
    recording = memory_session(seed=5, n_units=6, n_trials=30)
    path = spikes_to_nwb(recording, tmp_path_factory.mktemp("adapter") / "sub-01_ses-01_ecephys.nwb")
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        trains = [np.asarray(nwbfile.units.get_unit_spike_times(i)) for i in range(len(nwbfile.units))]
        trials = nwbfile.trials.to_dataframe()
        ids = (nwbfile.session_id, nwbfile.subject.subject_id)
    return recording, path, trains, trials, ids


def test_round_trip_shape_coords_and_attrs(session):
    recording, path, _, trials, (session_id, subject_id) = session
    rates = load_spikes(path, progress=False)
    assert rates.dims == ("trial", "time", "unit") and rates.shape == (30, 200, 6)
    assert rates.dtype == np.float32 and rates.attrs["units"] == "Hz"
    np.testing.assert_array_equal(rates["trial"], trials.index.to_numpy())
    for column in PAPER.task_columns:
        np.testing.assert_array_equal(rates[column].to_numpy(), trials[column].to_numpy(), err_msg=column)
    assert list(rates["brain_area"].to_numpy()) == recording.brain_area
    assert rates["time"].attrs["time_kind"] == "pre_seconds_then_rt_phase"
    assert list(rates["phase"].to_numpy()) == ["pre"] * 100 + ["post"] * 100
    assert rates["session"].item() == rates.attrs["session"] == session_id
    assert rates["subject"].item() == rates.attrs["subject"] == subject_id
    assert TeacherSpec.from_dict(json.loads(rates.attrs["spec"])) == PAPER
    np.testing.assert_allclose(json.loads(rates.attrs["filter_weights"]), PAPER.filter.kernel())
    assert rates.attrs["source_file"] == str(path.resolve()) and rates.attrs["source_sha256"] == sha256(path)
    assert float(rates.mean()) > 0.1


def test_round_trip_rates_equal_hand_binned_spikes(session):
    _, path, trains, trials, _ = session
    raw = load_spikes(path, UNFILTERED, progress=False)
    smooth = load_spikes(path, PAPER, progress=False)
    weights = np.exp(-0.5 * np.arange(0, 10.001, 0.5))
    for trial, unit in ((0, 0), (7, 3), (29, 5)):
        onset, rt = trials["stimulus_onset"].iloc[trial], trials["reaction_time"].iloc[trial]
        spikes = trains[unit]
        expected = np.concatenate(
            [histogram_rates(spikes, onset + np.linspace(-1, 0, 101)), histogram_rates(spikes, onset + rt * np.linspace(0, 1, 101))]
        )
        np.testing.assert_allclose(raw[trial, :, unit], expected, rtol=1e-5)
        paper = np.convolve(expected, np.concatenate([np.zeros(20), weights]), mode="same") / weights.sum()
        np.testing.assert_allclose(smooth[trial, :, unit], paper, rtol=1e-4, atol=1e-4)


def test_unit_selection_by_region_and_rate(session):
    recording, path, trains, trials, _ = session
    area = recording.brain_area[0]
    by_region = load_spikes(path, PAPER.replace(units=UnitSelection(regions=(area.upper(),))), progress=False)
    assert list(by_region["unit"].to_numpy()) == [i for i, a in enumerate(recording.brain_area) if a == area]
    span = trials["stop_time"].max() - trials["start_time"].min()
    mean_rates = np.array([len(t) for t in trains]) / span
    threshold = float(np.median(mean_rates))
    by_rate = load_spikes(path, PAPER.replace(units=UnitSelection(min_rate=threshold)), progress=False)
    assert list(by_rate["unit"].to_numpy()) == list(np.flatnonzero(mean_rates >= threshold))
    with pytest.raises(AdapterError) as info:
        load_spikes(path, PAPER.replace(units=UnitSelection(regions=("cerebellum",))), progress=False)
    assert info.value.field == "units.regions" and info.value.file == str(path) and area in str(info.value)
    with pytest.raises(AdapterError, match="no unit passes") as info:
        load_spikes(path, PAPER.replace(units=UnitSelection(min_rate=1e6)), progress=False)
    assert info.value.field == "units.min_rate"


def test_spike_times_in_milliseconds_are_caught_and_accepted(session, tmp_path):
    recording, path, _, _, _ = session
    in_ms = dataclasses.replace(recording, spike_times=[np.asarray(t) * 1000.0 for t in recording.spike_times])
    ms_path = spikes_to_nwb(in_ms, tmp_path / "ms.nwb")
    with pytest.raises(AdapterError, match=r"almost surely in milliseconds.*time_unit = \"ms\"") as info:
        load_spikes(ms_path, progress=False)
    assert info.value.file == str(ms_path) and info.value.field == "units.spike_times"
    as_ms = load_spikes(ms_path, PAPER.replace(time_unit="ms"), progress=False)
    np.testing.assert_allclose(as_ms, load_spikes(path, progress=False), rtol=1e-4, atol=1e-3)


def test_loads_from_an_open_nwbfile(session):
    from pynwb import NWBHDF5IO

    _, path, _, _, _ = session
    with NWBHDF5IO(str(path), "r") as io:
        rates = load_spikes(io.read(), progress=False)
    np.testing.assert_array_equal(rates, load_spikes(path, progress=False))
    assert rates.attrs["source_sha256"] == sha256(path)


# ---------------------------------------------------------------- the real Phy-sorted file
def test_real_file_without_trials_says_which_tables_it_has(data_dir):
    with pytest.raises(AdapterError) as info:
        load_spikes(data_dir / PHY, progress=False)
    message = str(info.value)
    assert "no trials table" in message and "epochs" in message
    assert info.value.field == "intervals" and info.value.file == str(data_dir / PHY)


@pytest.mark.filterwarnings("ignore:The .manufacturer. field is deprecated:DeprecationWarning")
def test_real_file_loads_its_units_from_the_epochs_table(data_dir):
    from pynwb import NWBHDF5IO

    spec = TeacherSpec(align="start_time", intervals="epochs", post=FixedWindow(0.0, 60.0, 0.5))
    rates = load_spikes(data_dir / PHY, spec, progress=False)
    assert rates.shape == (1, 120, 3) and list(rates["unit"].to_numpy()) == [6, 191, 206]
    assert rates["time"].attrs["time_kind"] == "seconds" and rates.attrs["session"] == "A8604-211122"
    with NWBHDF5IO(str(data_dir / PHY), "r") as io:
        units = io.read().units
        for position in range(3):
            spikes = units.get_unit_spike_times(position)
            np.testing.assert_allclose(rates[0, :, position], histogram_rates(spikes, np.linspace(0, 60, 121)))
    assert float(rates.sum()) * 0.5 > 1000  # over a thousand spikes in the first minute


def test_ragged_task_column_is_refused(data_dir):
    spec = TeacherSpec(align="start_time", intervals="epochs", post=FixedWindow(0.0, 1.0, 0.5), task_columns=("tags",))
    with pytest.raises(AdapterError, match="ragged") as info:
        load_spikes(data_dir / PHY, spec, progress=False)
    assert info.value.field == "epochs.tags"


# ---------------------------------------------------------------- bad input
def write_nwb(path, *, units=True, trials=None):
    """A small NWB file written with pynwb directly (for files our converter would refuse)."""
    import datetime as dt

    from pynwb import NWBHDF5IO, NWBFile

    nwbfile = NWBFile("test", "test", dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
    if units:
        nwbfile.add_unit(spike_times=[1.0, 2.0, 3.0])
    if trials is not None:
        for column in trials.columns.drop(["start_time", "stop_time"]):
            nwbfile.add_trial_column(column, column)
        for row in trials.to_dict("records"):
            nwbfile.add_trial(**row)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


def test_file_without_units(session, tmp_path):
    _, _, _, trials, _ = session
    path = write_nwb(tmp_path / "no_units.nwb", units=False, trials=trials[["start_time", "stop_time", "stimulus_onset", "reaction_time"]])
    with pytest.raises(AdapterError, match="no units table") as info:
        load_spikes(path, PAPER.replace(task_columns=()), progress=False)
    assert info.value.file == str(path) and info.value.field == "units"


@pytest.mark.parametrize("bad", [np.nan, 0.0, -0.2])
def test_bad_reaction_times_name_the_rows(session, tmp_path, bad):
    _, _, _, trials, _ = session
    table = trials[["start_time", "stop_time", "stimulus_onset", "reaction_time"]].copy()
    table.loc[table.index[[3, 17]], "reaction_time"] = bad
    path = write_nwb(tmp_path / "bad_rt.nwb", trials=table)
    with pytest.raises(AdapterError, match=r"2 trial\(s\) have missing, NaN or <= 0.*rows 3, 17") as info:
        load_spikes(path, PAPER.replace(task_columns=()), progress=False)
    assert info.value.file == str(path) and info.value.field == "trials.reaction_time"


def test_missing_table_and_columns_are_named(session):
    _, path, _, _, _ = session
    with pytest.raises(AdapterError, match=r"no intervals table named 'blocks'.*trials") as info:
        load_spikes(path, PAPER.replace(intervals="blocks"), progress=False)
    assert info.value.field == "intervals"
    for spec, field in (
        (PAPER.replace(align="cue_onset"), "trials.cue_onset"),
        (PAPER.replace(post=ReactionTimeWindow(column="rt")), "trials.rt"),
    ):
        with pytest.raises(AdapterError, match="has no column") as info:
            load_spikes(path, spec, progress=False)
        assert info.value.field == field and info.value.file == str(path)
    with pytest.raises(AdapterError, match=r"lacks the task columns \['block', 'trial_type'\]") as info:
        load_spikes(path, PAPER.replace(task_columns=("stimulus", "block", "trial_type")), progress=False)
    assert info.value.field == "task_columns" and "task_columns = []" in info.value.fix
    with pytest.raises(AdapterError, match="clashes"):
        load_spikes(path, PAPER.replace(task_columns=("unit",)), progress=False)


def test_missing_and_non_nwb_files(tmp_path):
    import h5py

    with pytest.raises(AdapterError, match="not found") as info:
        load_spikes(tmp_path / "absent.nwb", progress=False)
    assert info.value.field == "nwb"
    text = tmp_path / "notes.nwb"
    text.write_text("not a recording")
    with pytest.raises(AdapterError, match="not HDF5"):
        load_spikes(text, progress=False)
    plain = tmp_path / "plain.nwb"
    with h5py.File(plain, "w") as handle:
        handle["x"] = np.arange(3)
    with pytest.raises(AdapterError, match="cannot be read as NWB") as info:
        load_spikes(plain, progress=False)
    assert info.value.file == str(plain)


def test_missing_alignment_times_name_the_rows(session, tmp_path):
    _, _, _, trials, _ = session
    table = trials[["start_time", "stop_time", "stimulus_onset", "reaction_time"]].copy()
    table.loc[table.index[2], "stimulus_onset"] = np.nan
    path = write_nwb(tmp_path / "bad_onset.nwb", trials=table)
    with pytest.raises(AdapterError, match=r"missing or NaN values in column 'stimulus_onset' \(rows 2\)") as info:
        load_spikes(path, PAPER.replace(task_columns=()), progress=False)
    assert info.value.field == "trials.stimulus_onset"


def test_text_task_columns_become_string_coords(session, tmp_path):
    _, _, _, trials, _ = session
    table = trials[["start_time", "stop_time", "stimulus_onset"]].head(4).copy()
    table["condition"] = ["face", "house", "face", "tool"]
    path = write_nwb(tmp_path / "text.nwb", trials=table)
    spec = TeacherSpec(align="stimulus_onset", post=FixedWindow(0.0, 0.5, 0.1), task_columns=("condition",))
    rates = load_spikes(path, spec, progress=False)
    assert list(rates["condition"].to_numpy()) == ["face", "house", "face", "tool"]
    assert rates.shape == (4, 5, 1) and rates.dtype == np.float32


# ---------------------------------------------------------------- history, filter in seconds
def test_history_is_binned_filtered_and_dropped():
    rng = np.random.default_rng(4)
    trains = [np.sort(rng.uniform(0, 80, n)) for n in (900, 300, 1500)]
    onsets = np.arange(4.0, 76.0, 3.0)
    seconds = FilterSpec(kind="exponential", time_constant=0.1, duration=0.4)
    with_history = TeacherSpec(align="t", pre=FixedWindow(-0.5, 0.0, 0.05), post=FixedWindow(0.0, 1.0, 0.05),
                               filter=dataclasses.replace(seconds, history=0.3))  # fmt: skip
    longer_window = with_history.replace(pre=FixedWindow(-0.8, 0.0, 0.05), filter=seconds)  # history as real bins
    assert with_history.n_history == 6 and with_history.n_time == 30
    kept = rates_of(trains, with_history, onsets)
    np.testing.assert_allclose(kept, rates_of(trains, longer_window, onsets)[:, 6:], rtol=1e-5, atol=1e-5)
    # by hand: histogram from 0.8 s before onset, causal filter exp(-t / 0.1), drop the 6 history bins
    kernel = with_history.kernel()
    for trial in (0, 9):
        edges = onsets[trial] + np.linspace(-0.8, 1.0, 37)
        expected = np.convolve(histogram_rates(trains[2], edges), kernel)[:36][6:]
        np.testing.assert_allclose(kept[trial, :, 2], expected, rtol=1e-5, atol=1e-4)


def test_history_removes_the_warm_up_ramp():
    regular = [np.arange(0.0, 60.0, 0.01)]  # 100 Hz, one spike per 10 ms bin
    spec = TeacherSpec(align="t", pre=FixedWindow(-0.2, 0.0, 0.01), post=FixedWindow(0.0, 0.2, 0.01),
                       filter=FilterSpec(kind="exponential", time_constant=0.05, duration=0.2))  # fmt: skip
    onsets = np.array([10.005, 30.005])
    cold = rates_of(regular, spec, onsets)
    warm = rates_of(regular, spec.replace(filter=dataclasses.replace(spec.filter, history=0.2)), onsets)
    np.testing.assert_allclose(warm, 100.0, rtol=1e-4)  # a constant rate passes unchanged from the first bin
    assert cold[0, 0, 0] < 40.0 and np.all(np.diff(cold[0, :20, 0]) >= -1e-3)  # without history: a ramp from ~0


def test_load_spikes_applies_the_kernel_in_seconds_and_history(session):
    _, path, trains, trials, _ = session
    spec = TeacherSpec(align="stimulus_onset", pre=FixedWindow(-0.5, 0.0, 0.1), post=FixedWindow(0.0, 0.5, 0.1),
                       filter=FilterSpec(kind="exponential", time_constant=0.2, duration=0.5, history=0.4))  # fmt: skip
    rates = load_spikes(path, spec, progress=False)
    raw = np.exp(-np.arange(6) * 0.1 / 0.2)
    np.testing.assert_allclose(json.loads(rates.attrs["filter_weights"]), raw / raw.sum())
    onset = trials["stimulus_onset"].iloc[5]
    expected = np.convolve(histogram_rates(trains[1], onset + np.linspace(-0.9, 0.5, 15)), raw / raw.sum())[:14][4:]
    np.testing.assert_allclose(rates[5, :, 1], expected, rtol=1e-5, atol=1e-4)
    assert TeacherSpec.from_dict(json.loads(rates.attrs["spec"])) == spec


# ---------------------------------------------------------------- selection and derived columns
def test_selection_and_derived_columns_follow_the_trials_table(session):
    _, path, trains, trials, _ = session
    spec = TeacherSpec(
        align="response_onset",
        post=FixedWindow(-0.2, 0.2, 0.1),
        select=TrialSelection(where="reaction_time < 1.2 and decision != 'x'", drop={"stimulus": [2]}),
        derive={
            "decision": CodeMap("response", {1: "accept", 0: "reject"}),
            "response_onset": ColumnSum(("stimulus_onset", "reaction_time")),
            "agrees": ColumnExpression("response == correct_response"),
            "episode": TrialBlocks(4),
        },
        task_columns=("decision", "agrees", "episode", "stimulus"),
    )
    rates = load_spikes(path, spec, progress=False)
    kept = trials[(trials["reaction_time"] < 1.2) & (trials["stimulus"] != 2)]
    assert 0 < len(kept) < len(trials)
    np.testing.assert_array_equal(rates["trial"], kept.index.to_numpy())
    assert list(rates["decision"].to_numpy()) == ["accept" if r == 1 else "reject" for r in kept["response"]]
    np.testing.assert_array_equal(rates["agrees"], (kept["response"] == kept["correct_response"]).astype(int))
    np.testing.assert_array_equal(rates["episode"], np.arange(len(kept)) // 4)  # blocks of the kept trials
    onset = (kept["stimulus_onset"] + kept["reaction_time"]).iloc[3]
    np.testing.assert_allclose(rates[3, :, 0], histogram_rates(trains[0], onset + np.linspace(-0.2, 0.2, 5)), rtol=1e-5)


def test_a_code_map_refuses_unmapped_values_only_in_kept_trials(session):
    _, path, _, trials, _ = session
    partial = {"stimulus_name": CodeMap("stimulus", {0: "A", 1: "B"})}
    spec = PAPER.replace(derive=partial, task_columns=("stimulus_name",))
    with pytest.raises(AdapterError, match=r"derive.stimulus_name: the values \['2'\] of column 'stimulus'") as info:
        load_spikes(path, spec, progress=False)
    assert info.value.field == "derive.stimulus_name.values" and "rows " in str(info.value) and "default" in info.value.fix
    kept = load_spikes(path, spec.replace(select=TrialSelection(keep={"stimulus": [0, 1]})), progress=False)
    assert set(kept["stimulus_name"].to_numpy()) == {"A", "B"} and len(kept["trial"]) == trials["stimulus"].isin([0, 1]).sum()


@pytest.mark.parametrize(
    ("select", "field", "words"),
    [
        (TrialSelection(where="stimulus > 99"), "select", "no trial passes the selection"),
        (TrialSelection(where="block == 1"), "trials.block", "has no column 'block'"),
        (TrialSelection(where="stimulus == 'face' or stimulus > 'a'"), "select.where", "cannot order text against numbers"),
        (TrialSelection(drop={"stimulus": ["face"]}), "select.drop.stimulus", "not a number"),
    ],
)
def test_bad_selections_name_the_field(session, select, field, words):
    _, path, _, _, _ = session
    with pytest.raises(AdapterError, match=words) as info:
        load_spikes(path, PAPER.replace(select=select), progress=False)
    assert info.value.field == field and info.value.file == str(path)


def test_selection_drops_trials_with_missing_times(session, tmp_path):
    _, _, _, trials, _ = session
    table = trials[["start_time", "stop_time", "stimulus_onset", "reaction_time"]].copy()
    table.loc[table.index[[3, 17]], "reaction_time"] = np.nan
    path = write_nwb(tmp_path / "missing_rt.nwb", trials=table)
    rates = load_spikes(path, PAPER.replace(task_columns=(), select=TrialSelection(where="not isnan(reaction_time)")),
                        progress=False)  # fmt: skip
    assert list(rates["trial"].to_numpy()) == [t for t in range(30) if t not in (3, 17)]

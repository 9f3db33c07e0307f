"""Teacher specs: the paper preset, TOML files, validation, and the ``presets`` CLI."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest

from b2m_neuro.adapters import FilterSpec, FixedWindow, ReactionTimeWindow, TeacherSpec, UnitSelection, list_presets
from b2m_neuro.adapters.spec import CodeMap, ColumnExpression, ColumnSum, TrialBlocks, TrialSelection, preset_text
from b2m_neuro.cli import main
from b2m_neuro.errors import AdapterError

PAPER_COLUMNS = (
    "stimulus", "first_target", "second_target", "current_target", "correct_response", "response", "correct",
    "reaction_time", "episode",
)

FIXED_TOML = """
name = "epochs-fixed"
description = "fixed 2 s window after each epoch start"
intervals = "epochs"
align = "start_time"
time_unit = "ms"
task_columns = ["block"]

[pre]
start = -0.5
stop = 0
bin_width = 0.25

[post]
kind = "fixed"
start = 0.0
stop = 2.0
bin_width = 0.1

[filter]
kind = "custom"
weights = [2.0, 1.0, 1.0]

[units]
regions = ["hippocampus", "amygdala"]
min_rate = 0.5
"""


def write(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_refused(path, field, words):
    """Reading the spec at ``path`` fails with an AdapterError naming ``field``, the file and ``words``."""
    with pytest.raises(AdapterError) as info:
        TeacherSpec.from_toml(path)
    assert info.value.field == field, str(info.value)
    assert words in str(info.value) and str(path) in str(info.value)


def test_paper_preset_is_the_reference_preprocessing():
    spec = TeacherSpec.preset("paper")
    assert (spec.intervals, spec.align, spec.time_unit) == ("trials", "stimulus_onset", "s")
    assert (spec.pre.start, spec.pre.stop, spec.pre.bin_width, spec.pre.n_bins) == (-1.0, 0.0, 0.01, 100)
    assert isinstance(spec.post, ReactionTimeWindow)
    assert (spec.post.column, spec.post.n_bins) == ("reaction_time", 100)
    assert spec.n_time == 200 and spec.task_columns == PAPER_COLUMNS
    kernel = spec.filter.kernel()
    raw = np.exp(-0.5 * np.arange(0, 10.001, 0.5))
    assert len(kernel) == 21 and np.allclose(kernel, raw / raw.sum()) and np.isclose(kernel.sum(), 1.0)
    assert spec.units == UnitSelection()


def test_coarse_preset_keeps_one_pre_stimulus_and_one_stimulus_point():
    spec = TeacherSpec.preset("coarse")
    paper = TeacherSpec.preset("paper")
    assert (spec.pre.start, spec.pre.stop, spec.pre.n_bins, spec.post.n_bins) == (-1.0, 0.0, 1, 1)
    assert spec.filter.kind == "none" and spec.task_columns == paper.task_columns and spec.align == paper.align
    time, phase = spec.time_coordinate()
    assert np.allclose(time, [-0.5, 0.5]) and list(phase) == ["pre", "post"]


def test_paper_time_coordinate_is_pre_seconds_then_reaction_time_phase():
    spec = TeacherSpec.preset("paper")
    time, phase = spec.time_coordinate()
    assert spec.time_kind == "pre_seconds_then_rt_phase"
    assert len(time) == 200 and np.all(np.diff(time) > 0)
    assert np.allclose(time[:100], np.arange(-1, 0, 0.01) + 0.005)
    assert np.allclose(time[100:], np.arange(0, 1, 0.01) + 0.005)
    assert list(phase) == ["pre"] * 100 + ["post"] * 100


def test_reaction_time_window_alone_is_a_phase_axis():
    spec = TeacherSpec(align="onset", post=ReactionTimeWindow(n_bins=4))
    time, phase = spec.time_coordinate()
    assert spec.time_kind == "rt_phase" and spec.n_time == 4
    assert np.allclose(time, [0.125, 0.375, 0.625, 0.875]) and list(phase) == ["post"] * 4


def test_none_and_names_and_paths_resolve(tmp_path):
    paper = TeacherSpec.preset("paper")
    assert TeacherSpec.resolve(None) == paper == TeacherSpec.resolve("paper")
    assert TeacherSpec.resolve(paper) is paper
    path = write(tmp_path, FIXED_TOML)
    assert TeacherSpec.resolve(path) == TeacherSpec.resolve(str(path)) == TeacherSpec.from_toml(path)


def test_toml_file_with_fixed_window_and_custom_filter(tmp_path):
    spec = TeacherSpec.from_toml(write(tmp_path, FIXED_TOML))
    assert spec.post == FixedWindow(0.0, 2.0, 0.1) and spec.post.n_bins == 20
    assert spec.pre == FixedWindow(-0.5, 0.0, 0.25)
    assert spec.n_time == 22 and spec.time_kind == "seconds"
    assert np.allclose(spec.time_coordinate()[0][:3], [-0.375, -0.125, 0.05])
    assert np.allclose(spec.filter.kernel(), [0.5, 0.25, 0.25])
    assert spec.units == UnitSelection(regions=("hippocampus", "amygdala"), min_rate=0.5)
    assert (spec.time_unit, spec.task_columns, spec.intervals) == ("ms", ("block",), "epochs")


def test_dict_and_json_round_trip(tmp_path):
    for spec in (TeacherSpec.preset("paper"), TeacherSpec.from_toml(write(tmp_path, FIXED_TOML))):
        assert TeacherSpec.from_dict(spec.to_dict()) == spec
        assert TeacherSpec.from_dict(json.loads(spec.to_json())) == spec


def test_python_spec_with_replace():
    spec = TeacherSpec.preset("paper").replace(intervals="epochs", filter=FilterSpec(kind="none"))
    assert spec.intervals == "epochs" and np.array_equal(spec.filter.kernel(), [1.0])
    assert spec.align == "stimulus_onset"
    raw = FilterSpec(kind="exponential", normalize="none").kernel()
    assert np.isclose(raw[0], 1.0) and np.isclose(raw[-1], np.exp(-5.0))


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('align = "a"\nalingment = "b"\n[post]\nkind = "reaction_time"\n', "alingment"),
        ('align = "a"\n[post]\nkind = "reaction_time"\nbins = 100\n', "post.bins"),
        ('align = "a"\n[post]\nstart = 0\nstop = 1\nbin_width = 0.1\n[filter]\nkernel = "exp"\n', "filter.kernel"),
        ('align = "a"\n[post]\nkind = "reaction_time"\n[units]\nregion = ["x"]\n', "units.region"),
    ],
)
def test_unknown_keys_are_named(tmp_path, text, field):
    path = write(tmp_path, text)
    with pytest.raises(AdapterError) as info:
        TeacherSpec.from_toml(path)
    assert info.value.field == field and info.value.file == str(path)
    assert repr(field.split(".")[-1]) in str(info.value)


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ('[post]\nkind = "reaction_time"\n', "align", "no alignment column"),
        ('align = "a"\n', "post", "no post-event window"),
        ('align = "a"\n[post]\nkind = "sliding"\n', "post.kind", "unknown post window kind"),
        ('align = "a"\n[post]\nstart = 0\nstop = 1\nbin_width = 0.3\n', "post.bin_width", "whole number"),
        ('align = "a"\n[post]\nstart = 0\nstop = 1\n', "post.bin_width", "no bin_width"),
        ('align = "a"\n[post]\nstart = 1\nstop = 0\nbin_width = 0.1\n', "post.stop", "must be after"),
        ('align = "a"\n[post]\nkind = "reaction_time"\nn_bins = 0\n', "post.n_bins", "positive integer"),
        ('align = "a"\n[post]\nkind = "reaction_time"\nn_bins = "100"\n', "post.n_bins", "integer"),
        ('align = 3\n[post]\nkind = "reaction_time"\n', "align", "must be a string"),
        ('align = "a"\ntime_unit = "us"\n[post]\nkind = "reaction_time"\n', "time_unit", "unknown time unit"),
        ('align = "a"\ntask_columns = "stimulus"\n[post]\nkind = "reaction_time"\n', "task_columns", "list"),
        (
            'align = "a"\n[pre]\nstart = -1\nstop = 0.5\nbin_width = 0.5\n[post]\nkind = "reaction_time"\n',
            "pre.stop",
            "after the post window starts",
        ),
        ('align = "a"\n[post]\nkind = "reaction_time"\n[filter]\nkind = "gauss"\n', "filter.kind", "unknown filter"),
        ('align = "a"\n[post]\nkind = "reaction_time"\n[filter]\nkind = "custom"\n', "filter.weights", "weights"),
        ('align = "a"\n[post]\nkind = "reaction_time"\n[units]\nmin_rate = -1\n', "units.min_rate", ">= 0"),
        ('align = "a"\npost = 3\n', "post", "must be a table"),
    ],
)
def test_invalid_values_name_the_field(tmp_path, text, field, words):
    assert_refused(write(tmp_path, text), field, words)


def test_missing_or_broken_toml_and_unknown_preset(tmp_path):
    with pytest.raises(AdapterError, match="not found"):
        TeacherSpec.from_toml(tmp_path / "nope.toml")
    with pytest.raises(AdapterError, match="not a valid TOML"):
        TeacherSpec.from_toml(write(tmp_path, "align = \n"))
    with pytest.raises(AdapterError, match=r"no preset named 'nature'.*paper"):
        TeacherSpec.preset("nature")


def test_presets_are_listed_with_descriptions():
    presets = list_presets()
    assert "paper" in presets and "reaction time" in presets["paper"]


def test_cli_lists_and_shows_presets(capsys):
    assert main(["presets"]) == 0
    listing = capsys.readouterr().out
    assert "paper" in listing and list_presets()["paper"] in listing
    assert main(["presets", "paper"]) == 0
    shown = capsys.readouterr().out
    assert TeacherSpec.from_dict(tomllib.loads(shown)) == TeacherSpec.preset("paper")
    assert main(["presets", "nature"]) == 2
    assert "no preset named 'nature'" in capsys.readouterr().err


# ---------------------------------------------------------------- specs for real experiments
EXPERIMENT_TOML = """
align = "response_onset"
intervals = ["encoding_table", "recognition_table"]
task_columns = ["task_phase", "target", "episode"]

[select]
where = "task_phase == 'study' or response >= 0"
keep = { block = [1, 2] }
drop = { stimulus = ["catch"] }

[derive.task_phase]
map = "interval_table"
values = { encoding_table = "study", recognition_table = "test" }

[derive.target]
map = "old_new"
values = { "2" = "old", "1" = "new" }
default = "none"

[derive.response_onset]
sum = ["start_time", "RT"]

[derive.rt]
sum = ["timestamps_Response"]
minus = ["timestamps_Probe"]

[derive.correct]
expression = "target == 'old'"

[derive.episode]
blocks = 20

[pre]
start = -0.5
stop = 0.0
bin_width = 0.05

[post]
start = 0.0
stop = 1.0
bin_width = 0.05

[filter]
kind = "exponential"
time_constant = 0.1
duration = 0.3
history = 0.52
"""


def test_experiment_spec_reads_selection_derivations_and_a_filter_in_seconds(tmp_path):
    spec = TeacherSpec.from_toml(write(tmp_path, EXPERIMENT_TOML))
    assert spec.interval_tables == ("encoding_table", "recognition_table")
    assert spec.select == TrialSelection(where="task_phase == 'study' or response >= 0", keep={"block": [1, 2]},
                                         drop={"stimulus": ["catch"]})  # fmt: skip
    assert [name for name, _ in spec.derive] == ["task_phase", "target", "response_onset", "rt", "correct", "episode"]
    derive = dict(spec.derive)
    assert derive["target"] == CodeMap("old_new", {"2": "old", "1": "new"}, default="none")
    assert derive["rt"] == ColumnSum(("timestamps_Response",), minus=("timestamps_Probe",))
    assert derive["correct"] == ColumnExpression("target == 'old'") and derive["episode"] == TrialBlocks(20)
    # the filter in seconds: exp(-t / 0.1) at t = 0, 0.05, ..., 0.3 s; history 0.52 s = 11 bins (rounded up)
    raw = np.exp(-np.arange(0, 0.30001, 0.05) / 0.1)
    assert np.allclose(spec.kernel(), raw / raw.sum()) and spec.bin_width == 0.05 and spec.n_history == 11


def test_a_filter_in_seconds_is_the_same_filter_whatever_the_bin_width():
    seconds = FilterSpec(kind="exponential", time_constant=0.1, duration=0.4, normalize="none")
    fine = TeacherSpec(align="t", post=FixedWindow(0.0, 1.0, 0.02), filter=seconds).kernel()
    coarse = TeacherSpec(align="t", post=FixedWindow(0.0, 1.0, 0.1), filter=seconds).kernel()
    assert len(fine) == 21 and len(coarse) == 5
    np.testing.assert_allclose(fine[::5], coarse)  # same weights at the same lags in seconds
    in_bins = FilterSpec(kind="exponential", decay=0.5, step=0.5, stop=10.0)  # an old spec: one weight per bin
    assert len(TeacherSpec(align="t", post=FixedWindow(0.0, 1.0, 0.02), filter=in_bins).kernel()) == 21
    assert len(TeacherSpec(align="t", post=FixedWindow(0.0, 1.0, 0.1), filter=in_bins).kernel()) == 21


def test_experiment_spec_round_trips_in_order(tmp_path):
    spec = TeacherSpec.from_toml(write(tmp_path, EXPERIMENT_TOML))
    assert TeacherSpec.from_dict(spec.to_dict()) == spec
    again = TeacherSpec.from_dict(json.loads(spec.to_json()))  # JSON sorts keys: derivations keep their order
    assert again == spec and [name for name, _ in again.derive][:2] == ["task_phase", "target"]
    for name in ("paper", "coarse"):  # presets without the new keys export exactly the keys they had
        exported = TeacherSpec.preset(name).to_dict()
        assert set(exported) == {"name", "description", "intervals", "align", "time_unit", "task_columns", "pre",
                                 "post", "filter", "units"}  # fmt: skip
        assert set(exported["filter"]) == {"kind", "decay", "step", "stop", "weights", "normalize"}


def test_python_spec_with_selection_and_derivations_equals_the_toml(tmp_path):
    spec = TeacherSpec(
        align="stim_on_time", post=FixedWindow(0.0, 1.0, 0.1), pre=FixedWindow(-1.0, 0.0, 0.1),
        select=TrialSelection(where="response >= 0"),
        derive={"response": CodeMap("response_value", {34: 1, 35: 1, 36: 1, 31: 0, 32: 0, 33: 0}, default=-1),
                "episode": TrialBlocks(10)},
        filter=FilterSpec(kind="exponential", time_constant=0.1, duration=0.3, history=0.5),
    )  # fmt: skip
    text = """
align = "stim_on_time"
[select]
where = "response >= 0"
[derive.response]
map = "response_value"
values = { "34" = 1, "35" = 1, "36" = 1, "31" = 0, "32" = 0, "33" = 0 }
default = -1
[derive.episode]
blocks = 10
[pre]
start = -1.0
stop = 0.0
bin_width = 0.1
[post]
start = 0.0
stop = 1.0
bin_width = 0.1
[filter]
kind = "exponential"
time_constant = 0.1
duration = 0.3
history = 0.5
"""
    from_toml = TeacherSpec.from_toml(write(tmp_path, text))
    assert from_toml.kernel().tolist() == spec.kernel().tolist() and from_toml.n_history == spec.n_history == 5
    assert [name for name, _ in from_toml.derive] == ["response", "episode"]
    assert TeacherSpec.from_dict(spec.to_dict()) == spec


BASE = 'align = "a"\n[post]\nstart = 0\nstop = 1\nbin_width = 0.1\n'


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        (BASE + "[select]\nwher = 'a > 1'\n", "select.wher", "unknown key 'wher'"),
        (BASE + "[select]\nwhere = \"__import__('os').system('ls')\"\n", "select.where", "only the functions"),
        (BASE + "[select]\nwhere = 'a.real > 1'\n", "select.where", "Attribute is not allowed"),
        (BASE + "[select]\nwhere = 'a >'\n", "select.where", "invalid syntax"),
        (BASE + "[select]\nwhere = '[x for x in a]'\n", "select.where", "ListComp is not allowed"),
        (BASE + "[select]\nkeep = 'stim_phase'\n", "select.keep", "must be a table"),
        (BASE + "[select]\ndrop = { x = [[1]] }\n", "select.drop.x", "list of values"),
        (BASE + "[derive.t]\nmapp = 'x'\n", "derive.t", "exactly one of"),
        (BASE + "[derive.t]\nmap = 'x'\nsum = ['y']\nvalues = {}\n", "derive.t", "exactly one of"),
        (BASE + "[derive.t]\nmap = 'x'\n", "derive.t.values", "needs its values"),
        (BASE + "[derive.t]\nmap = 'x'\nvalues = { a = 1, b = 'two' }\n", "derive.t.values", "all numbers or all text"),
        (BASE + "[derive.t]\nmap = 'x'\nvalues = { a = 1 }\nfallback = 0\n", "derive.t.fallback", "unknown key"),
        (BASE + "[derive.t]\nblocks = 0\n", "derive.t.blocks", "positive integer"),
        (BASE + "[derive.t]\nsum = []\n", "derive.t.sum", "at least one column"),
        (BASE + "[derive.t]\nexpression = 'lambda: 1'\n", "derive.t.expression", "Lambda is not allowed"),
        (BASE + "[derive.phase]\nblocks = 5\n", "derive.phase", "clashes with an output coordinate"),
        ('align = "a"\nderive = 3\n' + BASE.removeprefix('align = "a"\n'), "derive", "must be a table"),
        (BASE + "[filter]\nkind = 'exponential'\ntau = 0.1\n", "filter.tau", "unknown key 'tau'"),
        (BASE + "[filter]\nkind = 'exponential'\ntime_constant = 0.1\n", "filter.duration", "duration > 0"),
        (BASE + "[filter]\nkind = 'exponential'\ntime_constant = 0.1\nduration = 0.3\ndecay = 0.5\n",
         "filter.time_constant", "both in bins"),
        (BASE + "[filter]\nkind = 'none'\ntime_constant = 0.1\nduration = 0.3\n", "filter.time_constant",
         "exponential filter"),
        (BASE + "[filter]\nduration = 0.3\n", "filter.duration", "needs a time_constant"),
        (BASE + "[filter]\nhistory = -1\n", "filter.history", ">= 0"),
        ('align = "a"\n[post]\nkind = "reaction_time"\n[filter]\nkind = "exponential"\ntime_constant = 0.1\n'
         'duration = 0.3\n', "filter.time_constant", "fixed pre and post windows"),
        ('align = "a"\n[post]\nkind = "reaction_time"\n[filter]\nhistory = 0.5\n', "filter.history",
         "reaction-time window"),
        ('align = "a"\nintervals = ["a", "a"]\n[post]\nkind = "reaction_time"\n', "intervals", "distinct tables"),
    ],
)
def test_invalid_experiment_keys_name_the_field(tmp_path, text, field, words):
    assert_refused(write(tmp_path, text), field, words)


DANDI_PRESETS = ("dandi000004", "dandi000207", "dandi000469", "dandi000673")


@pytest.mark.parametrize("name", DANDI_PRESETS)
def test_dandi_presets_say_their_source_and_what_they_assume(name, capsys):
    assert name in list_presets()
    text = preset_text(name)
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert f"DANDI:{name.removeprefix('dandi')}" in header and "Assumed" in header and "Output variables" in header
    spec = TeacherSpec.preset(name)
    for variable in spec.task_columns:  # every output variable is explained in the header
        assert variable in header, variable
    assert main(["presets", name]) == 0 and TeacherSpec.from_dict(tomllib.loads(capsys.readouterr().out)) == spec

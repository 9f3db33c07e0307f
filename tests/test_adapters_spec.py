"""Teacher specs: the paper preset, TOML files, validation, and the ``presets`` CLI."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest

from b2m_neuro.adapters import FilterSpec, FixedWindow, ReactionTimeWindow, TeacherSpec, UnitSelection, list_presets
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
    path = write(tmp_path, text)
    with pytest.raises(AdapterError) as info:
        TeacherSpec.from_toml(path)
    assert info.value.field == field, str(info.value)
    assert words in str(info.value) and str(path) in str(info.value)


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

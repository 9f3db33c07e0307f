# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 — Any EEG recording as a teacher: no video, events from the recording
#
# Most EEG experiments have no video frames: their events are trigger codes on a channel (the
# BioSemi `Status` channel), markers stored with the recording (BrainVision `.vmrk`), or a table
# the lab keeps. This tutorial takes two real recordings made by real amplifiers (copied into
# `tests/data/`, BSD-3 from MNE-Python) the whole way:
#
# 1. **Convert** them to BIDS with `eeg_to_bids`: the BioSemi BDF with its `Status` triggers, the
#    BrainVision file with its markers; check both with the BIDS validator.
# 2. **Load** event-locked windows with `load_eeg`: events selected by `trial_type` (or any
#    column), a window reaching before and after the event, a baseline, time bins.
# 3. **Embed** one per-event feature per channel and write the **derivative**.

# %%
import json
import subprocess
import sys
from pathlib import Path

from b2m_neuro.adapters import EEGSpec, load_eeg
from b2m_neuro.convert import eeg_to_bids
from b2m_neuro.derivative import Derivative
from b2m_neuro.embedding import embed

here = Path(globals().get("__file__", "tutorials/04_any_eeg_to_teacher.py")).resolve()
data = here.parents[1] / "tests" / "data"  # the real recordings shipped with the tests
bids_root = Path("bids").resolve()

# %% [markdown]
# ## 1. Convert without frames
#
# `stim_channel="Status"` turns each trigger code into an event (`trial_type` and `value` = the
# code); `trigger_mask=65535` keeps the trigger bits of BioSemi's Status word. The BrainVision
# markers need nothing: a recording's own annotations always become events. (An events table of
# your own goes in with `events="my_events.tsv"`; on the command line: `b2m-neuro convert eeg
# rec.bdf --stim-channel Status --bids-root bids --subject 01`.)

# %%
biosemi = eeg_to_bids(data / "biosemi" / "test_bdf_stim_channel.bdf", stim_channel="Status", trigger_mask=65535,
                      bids_root=bids_root, subject="01", task="triggers", progress=False)
brainvision = eeg_to_bids(data / "brainvision_test" / "test.vhdr", bids_root=bids_root, subject="02", task="markers",
                          progress=False)
print(biosemi.relative_to(bids_root), brainvision.relative_to(bids_root), sep="\n")
print(biosemi.with_name("sub-01_task-triggers_events.tsv").read_text())

# %% [markdown]
# The official BIDS validator (offline) finds no errors:

# %%
validator = Path(sys.executable).parent / "bids-validator-deno"
report = json.loads(subprocess.run([str(validator), "--json", str(bids_root)], capture_output=True, text=True).stdout)
errors = [issue for issue in report["issues"]["issues"] if issue["severity"] == "error"]
print(f"validator errors: {len(errors)}")
assert errors == []

# %% [markdown]
# ## 2. Event-locked windows
#
# The seven events with code 1, from 100 ms before to 300 ms after each, minus the mean of the
# 100 ms before, in 50 ms bins: dims `(frame, time, channel)`, one row per event.

# %%
spec = EEGSpec(event_values="1", window=(-0.1, 0.3), baseline=(-0.1, 0.0), bin_width=0.05)
windows = load_eeg(bids_root, subject="01", task="triggers", spec=spec)
print(windows.dims, dict(windows.sizes))
print("bin centres (s):", windows["time"].values.round(3))
print("onsets (s):", windows["onset"].values)
assert windows.sizes == {"frame": 7, "time": 8, "channel": 3}

# %% [markdown]
# The BrainVision markers: every `Stimulus/...` marker, selected by value of `trial_type`; one
# mean per channel over 0-200 ms after each (dims `(frame, channel)`, the form `embed` takes).

# %%
stimuli = ["Stimulus/S253", "Stimulus/S255"]
features = load_eeg(bids_root, subject="02", task="markers", spec=EEGSpec(event_values=stimuli, window=(0.0, 0.2)))
print(features.dims, dict(features.sizes), sorted(set(features["trial_type"].values.tolist())))

# %% [markdown]
# ## 3. Embed and write the derivative
#
# PCA to 4 dimensions; the events' columns (`trial_type`, `value`, `onset`, ...) travel into the
# derivative as variables along `frame`.

# %%
embedded = embed([features], method="pca", output_dimension=4, progress=False)
derivative = Derivative.create("derivatives/b2m-pca", embedded, method="pca",
                               params=embedded[0].attrs["embedding_params"],
                               source_datasets=[features.attrs["source_file"]], progress=False)
print(derivative.summary())
stored = Derivative.open("derivatives/b2m-pca").datasets()[0]
print(stored["embedding"].dims, stored["embedding"].shape, stored["trial_type"].values[:3].tolist())
assert stored["embedding"].shape == (features.sizes["frame"], 4)

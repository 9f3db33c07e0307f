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
# # 03 — From a raw EEG recording to an EEG derivative
#
# An EEG teacher pairs every video frame a participant saw with the EEG at that moment. This
# tutorial goes the whole way at a small size:
#
# 1. **Simulate** a driving session: 160x80 road scenes at 8 Hz, steering and pedals, and
#    64-channel BioSemi EEG from a forward model whose sources follow the scene.
# 2. **Save** it the way a lab would have it: an EEG file (FIF here; BDF, EDF, BrainVision and
#    EEGLAB work the same) plus the frame times and frames.
# 3. **Convert** it to BIDS with `eeg_to_bids` (de-identified, frames under `stimuli/`, one
#    `events.tsv` row per frame) and check it with the BIDS validator.
# 4. **Load** per-frame EEG features lazily with `load_eeg`.
# 5. **Embed** them and write the standardized **derivative** a student model trains from.

# %%
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from b2m_neuro.adapters import EEGSpec, load_eeg
from b2m_neuro.convert import eeg_to_bids
from b2m_neuro.convert.eeg import read_frame_file, write_frame_file
from b2m_neuro.derivative import Derivative
from b2m_neuro.embedding import embed
from b2m_neuro.simulate import driving_session

work = Path("eeg_tutorial")
(work / "lab").mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. Two simulated driving sessions
# Real sessions last hours at 2048 Hz; here 30 s at 256 Hz. Session 2 is a negative control:
# the same kind of driving, but no scene-driven sources in the EEG.

# %%
sessions = [
    driving_session(seed=1, duration_s=30, sfreq=256, subject_id="01"),
    driving_session(seed=2, duration_s=30, sfreq=256, subject_id="02", scene_information=False),
]
first = sessions[0]
print(first.raw)
print(first.trials)  # the fog staircase: foggier after a trial without a near-crash

# %% [markdown]
# ## 2. What a lab hands over: an EEG file plus frames and their times

# %%
for s in sessions:
    s.raw.save(work / "lab" / f"sub-{s.subject_id}_raw.fif", overwrite=True, verbose="error")
    write_frame_file(work / "lab" / f"sub-{s.subject_id}_frames.npz", s.frame_times, frames=s.frames, behaviour=s.behaviour)
sorted(p.name for p in (work / "lab").iterdir())

# %% [markdown]
# ## 3. Convert to BIDS
# The same as `b2m-neuro convert eeg lab/sub-01_raw.fif --frames lab/sub-01_frames.npz
# --bids-root bids --subject 01`.

# %%
bids_root = work / "bids"
for s in sessions:
    found = read_frame_file(work / "lab" / f"sub-{s.subject_id}_frames.npz")
    path = eeg_to_bids(
        work / "lab" / f"sub-{s.subject_id}_raw.fif",
        frame_times=found["frame_times"],
        frames=found["frames"],
        behaviour=found["behaviour"],
        bids_root=bids_root,
        subject=s.subject_id,
        overwrite=True,
        progress=False,
    )
    print(path.relative_to(work))
print((path.parent / "sub-02_task-driving_events.tsv").read_text().splitlines()[:3])

# %% [markdown]
# The official BIDS validator (offline) finds no errors:

# %%
validator = Path(sys.executable).parent / "bids-validator-deno"
report = json.loads(subprocess.run([str(validator), "--json", str(bids_root)], capture_output=True, text=True).stdout)
errors = [issue for issue in report["issues"]["issues"] if issue["severity"] == "error"]
print(f"validator errors: {len(errors)}")
assert not errors

# %% [markdown]
# ## 4. Per-frame EEG features
# For each frame: the 1-40 Hz, average-referenced EEG averaged 30-90 ms after the frame onset.
# `event_values="frame"` keeps the frame rows of `events.tsv` (a recording's own markers, if it
# had any, would be rows too). The result is lazy (dask) — nothing is read until `.compute()` —
# so a 3-hour recording never sits whole in memory.

# %%
spec = EEGSpec(event_values="frame", window=(0.03, 0.09))
eeg = [load_eeg(bids_root, subject=s.subject_id, task="driving", spec=spec) for s in sessions]
print(eeg[0])

# %% [markdown]
# The visual source sits under Oz and follows how much the picture changes from frame to frame.
# The features carry it in session 1 and not in the control:

# %%
for s, features in zip(sessions, eeg):
    r = np.corrcoef(features.sel(channel="Oz").values, s.ground_truth["amplitude"]["visual"])[0, 1]
    print(f"sub-{s.subject_id} (scene information: {s.ground_truth['scene_information']}): r(Oz, visual change) = {r:.2f}")

# %% [markdown]
# ## 5. Embed and write the derivative
# `identity` keeps the 64 channels (as in the reference setting); `pca` and `cebra` compress them.

# %%
embedded = embed(eeg, method="pca", output_dimension=8, progress=False)
derivative = Derivative.create(
    work / "derivatives" / "b2m-pca",
    embedded,
    method="pca",
    params=embedded[0].attrs["embedding_params"],
    source_datasets=[features.attrs["source_file"] for features in eeg],
    overwrite=True,
    progress=False,
)
print(derivative)
stored = derivative.load(derivative.session_keys[0])
print(stored["embedding"].dims, stored["stim_file"].values[:2])

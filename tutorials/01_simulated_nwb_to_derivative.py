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
# # 01 — From simulated NWB sessions to a brain-embedding derivative
#
# A spiking teacher for Brain2Model learning goes through four stages:
#
# 1. **Simulate** sessions of the memory goal-switching task (single neurons in human medial
#    temporal lobe, with a known hidden goal per trial) and write them as **NWB** files in
#    DANDI layout, exactly as a lab (or the DANDI archive) would provide them.
# 2. **Load** each session as firing rates `(trial, time, unit)` with the reference teacher spec
#    (`"paper"`: 1 s before stimulus onset at 10 ms, then 100 bins up to the response, causal
#    exponential filter).
# 3. **Embed** all sessions with multi-session **CEBRA** (reference hyperparameters; time within
#    trial as the auxiliary variable) into one shared low-dimensional space.
# 4. Write the standardized **derivative** (a BIDS-derivatives folder that the student trainer
#    reads), re-open it with its checks, and look at the **teacher quality report**.
#
# Everything runs at a small size here (2 sessions, 60 trials, 60 CEBRA steps instead of
# 15,000) so that it finishes in well under a minute on a laptop CPU.
#
# The same, from the command line:
#
# ```
# b2m-neuro simulate memory --sessions 2 --trials 60 --out dandiset   # NWB files, DANDI layout
# b2m-neuro embed dandiset --spec paper --method cebra --out derivatives/b2m-cebra --dim 3 --iterations 60
# b2m-neuro validate derivatives/b2m-cebra --bids
# ```

# %%
from pathlib import Path

import xarray as xr

from b2m_neuro.adapters import load_spikes
from b2m_neuro.convert import write_dandiset
from b2m_neuro.derivative import Derivative, bids_validator_issues
from b2m_neuro.embedding import embed, teacher_quality
from b2m_neuro.simulate import memory_sessions

# %% [markdown]
# ## 1. Two simulated sessions, written as NWB
# Each session has its own subject and its own number of units; the hidden goal
# (`current_target`) modulates some neurons, as in the recordings the method was built on.

# %%
recordings = memory_sessions(2, seed=0, n_trials=60, progress=False)
for recording in recordings:
    print(recording.subject["subject_id"], recording.session_id, recording.n_units, "units", len(recording.trials), "trials")
nwb_files = write_dandiset(recordings, "dandiset", progress=False)
[str(path) for path in nwb_files]

# %% [markdown]
# ## 2. Firing rates with the reference teacher spec

# %%
rates = [load_spikes(path, "paper", progress=False) for path in nwb_files]
rates[0]

# %% [markdown]
# ## 3. Multi-session CEBRA
# One model, one input layer per session (the unit sets differ), a shared embedding space.
# `max_iterations=60` keeps this quick; the reference teacher trains 15,000 steps (on a GPU:
# `device="cuda"`). `threads=1` is fastest for sessions this small on a CPU.

# %%
embedded = embed(rates, method="cebra", output_dimension=3, max_iterations=60, batch_size=256, threads=1, progress=False)
embedded[0]

# %% [markdown]
# ## 4. The derivative
# `Derivative.create` writes the whole folder atomically: `dataset_description.json` (with
# every CEBRA parameter and the SHA-256 of each source NWB file), `descriptions.tsv`, a README,
# and per session a NetCDF file plus JSON sidecar.

# %%
root = Path("derivatives") / "b2m-cebra"
Derivative.create(
    root,
    embedded,
    method="cebra",
    params=embedded[0].attrs["embedding_params"],
    source_datasets=nwb_files,
    overwrite=True,
    progress=False,
)
sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())

# %% [markdown]
# Re-opening checks the layout and every file's SHA-256; the trainer uses the same call.

# %%
derivative = Derivative.open(root)
print(derivative.summary())
session = derivative.load(derivative.session_keys[0])
session

# %% [markdown]
# The `.nc` files do not need b2m_neuro: any NetCDF reader works, and every variable documents
# itself.

# %%
with xr.open_dataset(derivative.path(derivative.session_keys[1])) as plain:
    print(plain["embedding"].attrs["long_name"], dict(plain.sizes))
    print(plain["current_target"].attrs["description"])

# %% [markdown]
# The folder is a valid BIDS derivative (the NetCDF files are listed in `.bidsignore`, as BIDS
# has no embedding data type yet). The only message left is a warning that no authors are named.

# %%
issues = bids_validator_issues(root)
print([(issue["severity"], issue["code"]) for issue in issues])
assert not [issue for issue in issues if issue["severity"] == "error"]

# %% [markdown]
# ## 5. Is this teacher worth training with?
# Cross-session consistency (CEBRA's score between datasets) and cross-validated decoding of
# task variables from the embedding, next to chance, with permutation p-values and bootstrap
# intervals. `goal` is the hidden state the student must track (is the current target the first
# candidate?), decoded per window and per time point. With 60 training steps the embedding is
# still rough: train the reference 15,000 steps (GPU) and check this report before spending
# GPU hours on students. The figure shows every variable's score against chance.

# %%
report = teacher_quality(
    derivative.datasets(),
    variables=["stimulus", "current_target", "response", "goal"],
    permutations=50,
    figure="teacher_quality.png",
)
print(report.summary())
report.decoding

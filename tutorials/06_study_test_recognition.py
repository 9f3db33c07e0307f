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
# # 06 — A study-test recognition memory teacher, end to end
#
# The public human single-neuron datasets on DANDI pose their own memory experiments: in
# study-test recognition (e.g. DANDI 000004, Faraut et al. 2018) a participant studies a list of
# images, later sees test images and answers *old* (seen in the study list) or *new*; in the
# Sternberg task (DANDI 000469 / 000673) a few images are encoded, held over a maintenance period,
# and a probe is answered *in* or *out*. b2m_neuro poses both to a student: tasks `"study_test"`
# and `"sternberg"`, whose test sets are new episodes drawn from the rule, none seen in training.
#
# Here, at a small size:
#
# 1. **Simulate** a recognition session with a known answer: concept cells tuned to images,
#    memory-selective cells that fire differently to familiar and novel images, persistent activity
#    of the studied images; and its twin without the memory information. Write both as **NWB**.
# 2. A **teacher spec** in TOML: one pre-stimulus bin, one bin from onset to the response, the
#    trial columns the task needs; `load_spikes` reads the NWB files with it.
# 3. **Embed** (PCA, for speed) and write the **derivatives**.
# 4. **Train** a small GRU on `task="study_test"` with and without the brain, and with the
#    no-information teacher; then a tiny **sweep** and its **report**.
#
# For a DANDI dataset the spec is a preset (`--spec dandi000004`), and the rest is the same.
# From the command line:
#
# ```
# b2m-neuro embed nwb/recognition.nwb --spec recognition --method pca --dim 7 --task recognition --out derivatives/b2m-pca
# b2m-neuro train derivatives/b2m-pca --task study_test --episode episode --target target --alpha 0.1 --out runs/b2m
# ```

# %%
from pathlib import Path

import torch

import b2m_neuro
from b2m_neuro.adapters import load_spikes
from b2m_neuro.convert import spikes_to_nwb
from b2m_neuro.derivative import Derivative
from b2m_neuro.embedding import embed
from b2m_neuro.report import write_report
from b2m_neuro.simulate import study_test_session

torch.set_num_threads(1)  # tiny networks train fastest on one CPU thread

# %% [markdown]
# ## 1. A simulated session, written as NWB
# 120 blocks; each studies 2 images from a pool of 8, then tests 2 (one old, one new, in random
# order). One row per image shown: its name, the phase (`task_phase`: study or test), the block
# (`episode`), the rule's answer (`target`: 1 old, 0 new) and the participant's response.

# %%
Path("nwb").mkdir(exist_ok=True)
design = dict(seed=0, n_blocks=120, study_items=2, test_items=2, n_items=8, n_units=30)
recording = study_test_session(**design)
no_memory = study_test_session(**design, memory_information=False)
nwb_files = {name: spikes_to_nwb(rec, f"nwb/{name}.nwb", overwrite=True)
             for name, rec in (("recognition", recording), ("recognition-noinfo", no_memory))}
recording.trials.head(6)

# %% [markdown]
# ## 2. The teacher spec
# Every study and test image is one trial, aligned to its onset: the second before it (one bin)
# and onset to offset (one bin: 1 s for study images, up to the response for test images). The
# same spec ships as the preset `recognition` (`load_spikes(path, "recognition")`); written out
# here, it shows what a spec for your own experiment looks like.

# %%
Path("recognition.toml").write_text('''
name = "recognition"
description = "study-test recognition: 1 s pre-stimulus mean + onset-to-offset mean"
intervals = "trials"
align = "stimulus_onset"
task_columns = ["stimulus", "task_phase", "episode", "target", "response"]

[pre]
start = -1.0
stop = 0.0
bin_width = 1.0

[post]
kind = "reaction_time"
column = "stimulus_duration"
n_bins = 1

[filter]
kind = "none"
''')
rates = {name: load_spikes(path, "recognition.toml", progress=False) for name, path in nwb_files.items()}
rates["recognition"]

# %% [markdown]
# ## 3. Embedding and derivatives

# %%
def pca_derivative(name):
    embedded = embed([rates[name]], method="pca", output_dimension=7, task="recognition", progress=False)
    return Derivative.create(f"derivatives/b2m-{name}", embedded, method="pca",
                             params=embedded[0].attrs["embedding_params"], source_datasets=[nwb_files[name]],
                             overwrite=True, progress=False)


derivative, no_information = pca_derivative("recognition"), pca_derivative("recognition-noinfo")
print(derivative.summary())

# %% [markdown]
# ## 4. Train on the study-test task
# The task options name the block variable (`episode`; without it each session is one block, as in
# DANDI 000004) and the recorded label (`target`), which is checked against the rule (old iff
# studied in the block). The test set is 200 blocks drawn from the rule, none of them a block the
# participant saw. Small student: a 32-unit GRU, 30 epochs of 8 blocks per batch.

# %%
task = dict(task="study_test", episode="episode", target="target", n_test=200)
small = dict(hidden_size=32, dropout=0.0, lr=3e-2, batch_size=8, epochs=30, seed=0, progress=False,
             transfer="contrastive-cosine", **task)
runs = {
    "no brain (alpha = 0)": b2m_neuro.train(derivative, alpha=0.0, **small),
    "B2M (alpha = 0.1)": b2m_neuro.train(derivative, alpha=0.1, **small),
    "no-information teacher (alpha = 0.1)": b2m_neuro.train(no_information, alpha=0.1, **small),
}
for name, result in runs.items():
    print(f"{name:>38}: {result.summary()}")
print(runs["B2M (alpha = 0.1)"].config["task_options"])

# %% [markdown]
# Chance is the share of the larger class among the scored test items (one old and one new per
# block: 0.5).

# %%
for name, result in runs.items():
    assert result.final_test_accuracy > 0.6, (name, result.final_test_accuracy)

# %% [markdown]
# ## 5. A tiny sweep and its report
# Two seeds of 10 epochs, alpha 0.1 against alpha 0 and the no-information teacher. A real study
# uses many more seeds (the report's tests need them) and longer training; this shows the calls.

# %%
sweep_options = {**small, "epochs": 10}
del sweep_options["seed"]
result = b2m_neuro.sweep(derivative, alphas=[0.1], seeds=2, controls=("no_info",), no_info=no_information,
                         out="runs/study_test", **sweep_options)
report = write_report(result, "report/study_test", overwrite=True, progress=False)
print((report / "statistics.md").read_text().split("## Statistics")[0])
sorted(path.name for path in report.iterdir())

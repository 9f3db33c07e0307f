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
# # 02 — Train a student with and without brain guidance
#
# Brain2Model (B2M) learning trains a network on a task while one of its layers is pulled toward
# the brain embedding recorded while a person did the same task:
#
# `L = (1 - alpha) * L_task + alpha * L_transfer`
#
# Here the student is the reference GRU (input: one-hot stimulus or "no stimulus"; the episode cue
# as two input steps; a 7-wide embedding layer aligned to the brain; an output in [-1.5, 1.5]),
# the task is the memory goal-switching task, and the transfer loss is InfoNCE between the GRU's
# embedding layer and the brain embedding of the same time point, at the pre-stimulus points of
# each trial (`pair="pre"`, the default: the hidden goal is held there, and the scored response
# point is left to the task).
#
# We build two small derivatives from one simulated participant (as in tutorial 01, with the
# coarse teacher spec and PCA for speed): the real teacher, whose neurons carry the hidden goal,
# and the same participant with the task information switched off, the **no-information
# teacher**. We train the same student with `alpha = 0` (no brain), with the informative teacher
# and with the no-information teacher, and compare their learning curves on simulated test
# sequences that no participant saw. The informative-vs-no-information contrast is the one that
# isolates what the brain knows; the shuffled control (`control="shuffled"`) keeps the
# within-trial time course and is not neutral on its own.
#
# The same from the command line:
#
# ```
# b2m-neuro train derivatives/b2m-pca --alpha 0.1 --epochs 40 --out runs/b2m
# b2m-neuro train derivatives/b2m-pca --alpha 0 --epochs 40 --out runs/no-brain
# ```

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import b2m_neuro
from b2m_neuro.adapters import load_spikes
from b2m_neuro.convert import spikes_to_nwb
from b2m_neuro.derivative import Derivative
from b2m_neuro.embedding import embed
from b2m_neuro.simulate import memory_session

# Networks this small train fastest on one CPU thread (more threads only wait on each other,
# badly so on a shared or busy machine); leave this out for the reference GRU or on a GPU.
torch.set_num_threads(1)

# %% [markdown]
# ## Two derivatives from one simulated participant
# 120 trials (about 10 episodes); the coarse spec keeps two time points per trial (the mean of the
# second before the stimulus, and of the stimulus period); PCA to 7 dimensions, the reference
# embedding width. `goal_information=False` keeps the same trials, units and stimulus tuning.

# %%
Path("nwb").mkdir(exist_ok=True)


def pca_derivative(name, **simulation):
    recording = memory_session(seed=0, n_trials=120, **simulation)
    nwb_file = spikes_to_nwb(recording, f"nwb/{name}.nwb", overwrite=True)
    embedded = embed([load_spikes(nwb_file, "coarse", progress=False)], method="pca", output_dimension=7,
                     progress=False)
    return Derivative.create(f"derivatives/b2m-{name}", embedded, method="pca",
                             params=embedded[0].attrs["embedding_params"], source_datasets=[nwb_file],
                             overwrite=True, progress=False)


derivative = pca_derivative("pca")
no_information = pca_derivative("pca-noinfo", goal_information=False)
print(derivative.summary())

# %% [markdown]
# ## Train with and without the brain
# The reference settings are `hidden_size=512, lr=1e-4, epochs=150` and take a GPU. Here: a
# 32-unit GRU, 8 epochs, 200 test sequences. The seed fixes the initial weights and the episode
# order, so the runs differ only in their teacher. PCA embeddings are in arbitrary units, so we
# use the cosine variant of InfoNCE.

# %%
small = dict(hidden_size=32, lr=3e-3, epochs=8, n_test=200, seed=0, progress=False, transfer="contrastive-cosine")
runs = {
    "no brain (alpha = 0)": b2m_neuro.train(derivative, alpha=0.0, **small),
    "B2M (alpha = 0.1)": b2m_neuro.train(derivative, alpha=0.1, **small),
    "no-information teacher (alpha = 0.1)": b2m_neuro.train(no_information, alpha=0.1, **small),
}
for name, result in runs.items():
    print(f"{name:>38}: {result.summary()}")

# %% [markdown]
# The history is an `xarray.Dataset` over epochs: task and transfer losses, test accuracy, the
# alignment of the aligned layer with the brain, wall time. The run's config records the pairing.

# %%
print(runs["B2M (alpha = 0.1)"].config["task_options"])
runs["B2M (alpha = 0.1)"].history.to_dataframe().round(3)

# %%
fig, (accuracy_ax, transfer_ax) = plt.subplots(1, 2, figsize=(10, 3.5))
for name, result in runs.items():
    result.history.test_accuracy.plot(ax=accuracy_ax, label=name)
    result.history.transfer_loss.plot(ax=transfer_ax, label=name)
accuracy_ax.set(title="test accuracy (unseen sequences)", ylabel="accuracy")
transfer_ax.set(title="InfoNCE to the brain embedding", ylabel="transfer loss")
accuracy_ax.legend()
fig.tight_layout()
fig.savefig("learning_curves.png", dpi=100)

# %% [markdown]
# ## Save and reload a run
# `save` writes the weights (loaded back with `torch.load(weights_only=True)`), the config with
# the versions used, and the history as netCDF, atomically.

# %%
saved = runs["B2M (alpha = 0.1)"].save("runs/b2m", overwrite=True)
reloaded = b2m_neuro.TrainResult.load(saved)
print(sorted(p.name for p in saved.iterdir()), reloaded.config["alpha"], reloaded.final_test_accuracy)

# %% [markdown]
# One run says little: the effect of brain guidance is a distribution over seeds. `b2m_neuro.sweep`
# trains the grid with the no-information, shuffled and L2 controls (`sweep(derivative, ...,
# no_info=no_information)`), `b2m-neuro demo` shows the whole study, and
# `benchmarks/known_answer.py` measures the effect over paired simulated participants.

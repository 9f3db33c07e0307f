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
# # 05 — A VAE that reconstructs driving scenes, guided by EEG (brain latent transfer)
#
# The second student of the reference study is a convolutional VAE trained on CARLA driving scenes.
# Participants watched *other* driving frames while their EEG was recorded, so the model's scenes
# and the brain's frames do not match one to one. Instead of a contrastive loss (which needs the
# same inputs), the **latent transfer** loss pulls the VAE's latent mean of a participant's frame
# toward that frame's EEG embedding (mean squared error, paper eq. 3):
#
# - **set A** (the model's own scenes): reconstruction + KL, batches of 32;
# - **set H** (the participants' frames, from the EEG derivative's `stim_file`): latent MSE,
#   up to 256 frame/EEG pairs per step;
# - total loss `(1 - alpha) * task + alpha * latent MSE` (paper eq. 1).
#
# Here, at a small size: a simulated driving session -> BIDS with its frames -> an EEG derivative
# -> two VAEs (alpha 0 and alpha 0.9) on a handful of the real CARLA scenes -> the reconstruction grid.

# %%
from pathlib import Path

import b2m_neuro
from b2m_neuro.adapters import EEGSpec, load_eeg
from b2m_neuro.convert import eeg_to_bids
from b2m_neuro.derivative import Derivative
from b2m_neuro.embedding import embed
from b2m_neuro.report import reconstruction_grid
from b2m_neuro.simulate import driving_session
from b2m_neuro.tasks.scenes import SceneTask, read_images

work = Path("vae_tutorial")
work.mkdir(exist_ok=True)

# %% [markdown]
# ## 1. The EEG derivative of a simulated driving session
# As in tutorial 03: 8 s of driving at 8 frames per second (48 frames), the frames saved under the
# BIDS `stimuli/` folder, the 64-channel EEG averaged 30-90 ms after each frame onset. The
# reference keeps all 64 channels (`identity`), so the VAE's latent has 64 dimensions.

# %%
session = driving_session(seed=1, duration_s=8, sfreq=128, subject_id="01")
eeg_to_bids(session.raw, frame_times=session.frame_times, frames=session.frames, bids_root=work / "bids",
            subject="01", overwrite=True, progress=False)
eeg = load_eeg(work / "bids", subject="01", task="driving", spec=EEGSpec(window=(0.03, 0.09)))
embedded = embed([eeg], method="identity", progress=False)
derivative = Derivative.create(work / "derivative", embedded, method="identity", params={},
                               source_datasets=[eeg.attrs["source_file"]], overwrite=True, progress=False)
print(derivative)
print(derivative.datasets()[0]["stim_file"].values[:2])

# %% [markdown]
# ## 2. The model's own scenes
# The reference VAE was trained on 12,000 CARLA scenes (tested on 2,000): 160 x 80 PNG,
# semantic-segmentation renderings, ImageFolder layout (`train/class1/*.png`, `test/class1/*.png`).
# Point `scenes` at the full set for a real study; here, the 16 + 8 copied into the package's tests.

# %%
scenes = Path(b2m_neuro.__file__).resolve().parents[1] / "tests" / "data" / "carla_scenes"
train_files, test_files = SceneTask(scenes).split()
print(f"{len(train_files)} training and {len(test_files)} test scenes")

# %% [markdown]
# ## 3. Two students: without (alpha 0) and with brain guidance
# `train(..., model="vae", scenes=...)` runs the scene training. The reference settings (the full
# conv VAE, Adam 1e-4, batches of 32, 256 pairs, 100 epochs) are the defaults; a tutorial-sized
# VAE (fewer channels) and a few epochs keep this fast. The seed is shared, so both start from the
# same weights and see the scenes in the same order.

# %%
small = dict(channels=(4, 8, 8, 16), hidden=32, epochs=4, lr=3e-3, batch_size=2, pair_batch=48, progress=False)
results = {alpha: b2m_neuro.train(derivative.root, "vae", scenes=scenes, alpha=alpha, **small) for alpha in (0.0, 0.9)}
for alpha, result in results.items():
    print(result.summary())

# %% [markdown]
# The test loss is the reconstruction MSE on the held-out CARLA scenes; `latent_mse` measures how
# close the latent mean of each participant frame is to its EEG embedding (dropout off). Brain
# guidance brings the latents closer to the EEG:

# %%
for alpha, result in results.items():
    history = result.history
    print(f"alpha {alpha}: test loss {float(history.test_loss[0]):.4f} -> {float(history.test_loss[-1]):.4f}, "
          f"latent MSE to the EEG {float(history.latent_mse[-1]):.2f}")
assert float(results[0.9].history.latent_mse[-1]) < float(results[0.0].history.latent_mse[-1])

# %% [markdown]
# ## 4. Original vs reconstructed test scenes
# After 4 epochs on 16 scenes with a tiny VAE the reconstructions are still a grey blur near the
# mean scene; the reference study trains the full VAE for 100 epochs on 12,000 scenes.

# %%
figure = reconstruction_grid(results[0.9], read_images(test_files[:6]), work / "reconstructions",
                             title="brain-guided VAE (alpha 0.9): test scenes")
print(figure)

# %% [markdown]
# ## Next
# - A study: `b2m_neuro.sweep(derivative.root, model="vae", scenes=scenes, alphas=[...], seeds=10)`
#   trains alpha x seed grids with the no-information (surrogate EEG) and shuffled-EEG controls;
#   `write_report(..., metric="test_psnr")` draws the curves (PSNR: higher is better).
# - Many runs at once: runs of one architecture are stacked (`torch.func.stack_module_state` +
#   `vmap`), see `benchmarks/bench_vae.py`.

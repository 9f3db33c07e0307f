"""Test inputs for the VAE student: a simulated driving session's EEG derivative and its BIDS frames.

:func:`driving_derivative` goes the way a lab would (as in tutorial 03): simulate a driving
session, convert it to BIDS with its frames under ``stimuli/``, load per-frame EEG features and
embed them into a frame derivative whose ``stim_file`` names each frame.
"""

from __future__ import annotations

from pathlib import Path

CARLA_SCENES = Path(__file__).parent / "data" / "carla_scenes"
SMALL_VAE = dict(channels=(4, 8, 8, 16), hidden=32)  # a fast student for the learning tests


def driving_derivative(root: Path, *, latent_dim: int = 8, duration_s: float = 8.0, seed: int = 1) -> Path:
    """Write ``root/bids`` (the session, frames under ``stimuli/``) and ``root/derivative`` (a PCA
    embedding of ``latent_dim`` dimensions per frame, z-scored); return the derivative's folder."""
    from b2m_neuro.adapters import EEGSpec, load_eeg
    from b2m_neuro.convert import eeg_to_bids
    from b2m_neuro.derivative import Derivative
    from b2m_neuro.embedding import embed
    from b2m_neuro.simulate import driving_session

    root.mkdir(parents=True, exist_ok=True)
    session = driving_session(seed=seed, duration_s=duration_s, sfreq=128, subject_id="01")
    eeg_to_bids(session.raw, frame_times=session.frame_times, frames=session.frames, bids_root=root / "bids",
                subject="01", overwrite=True, progress=False)
    eeg = [load_eeg(root / "bids", subject="01", task="driving", spec=EEGSpec(window=(0.03, 0.09)))]
    embedded = embed(eeg, method="pca", output_dimension=latent_dim, zscore=True, progress=False)
    Derivative.create(root / "derivative", embedded, method="pca", params=embedded[0].attrs["embedding_params"],
                      source_datasets=[eeg[0].attrs["source_file"]], overwrite=True, progress=False)
    return root / "derivative"

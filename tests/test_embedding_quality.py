import numpy as np
import pytest
import xarray as xr

from b2m_neuro.embedding import teacher_quality
from b2m_neuro.errors import EmbeddingError

N_TRIALS, N_TIME, LATENT = 90, 40, 4


def planted(subject, *, seed, rotation=None, noise=0.3):
    """Embeddings whose post-onset trajectory depends on the stimulus; reaction time scales latent 2."""
    rng = np.random.default_rng(seed)
    stimulus = np.repeat([0, 1, 2], N_TRIALS // 3)
    rng.shuffle(stimulus)
    reaction_time = rng.uniform(0.4, 1.4, N_TRIALS)
    time = np.linspace(-1, 1, N_TIME)
    centres = np.array([[2, 0, 0, 0], [0, 2, 0, 0], [-2, -2, 0, 0]], dtype=float)
    trajectory = np.stack([np.sin(np.pi * time), np.cos(np.pi * time), 0 * time, time], axis=-1)  # shared over sessions
    embedding = trajectory[None] + (time > 0)[None, :, None] * centres[stimulus][:, None, :]
    embedding[:, :, 2] += 3 * reaction_time[:, None]
    embedding = embedding + noise * rng.normal(size=embedding.shape)
    if rotation is not None:
        embedding = embedding @ rotation
    return xr.Dataset(
        {
            "embedding": (("trial", "time", "latent"), embedding.astype(np.float32)),
            "stimulus": ("trial", stimulus),
            "reaction_time": ("trial", reaction_time),
        },
        coords={"time": time},
        attrs={"subject": subject, "session": "1", "task": "memory"},
    )


def shuffled(ds, seed):
    rng = np.random.default_rng(seed)
    return ds.assign(stimulus=("trial", rng.permutation(ds["stimulus"].values)),
                     reaction_time=("trial", rng.permutation(ds["reaction_time"].values)))  # fmt: skip


def score(report, session, variable):
    row = report.decoding[(report.decoding["session"] == session) & (report.decoding["variable"] == variable)]
    return float(row["score"].iloc[0]), float(row["chance"].iloc[0])


def test_planted_signal_decodes_well_above_chance_and_shuffled_labels_do_not(tmp_path):
    rotation = np.linalg.qr(np.random.default_rng(9).normal(size=(LATENT, LATENT)))[0]
    sessions = [planted("A", seed=0), planted("B", seed=1, rotation=rotation), shuffled(planted("C", seed=2), seed=5)]
    report = teacher_quality(sessions, figure=tmp_path / "quality.png")
    accuracy, chance = score(report, "sub-A_ses-1", "stimulus")
    assert chance == pytest.approx(1 / 3) and accuracy >= 0.95
    assert score(report, "sub-B_ses-1", "stimulus")[0] >= 0.95  # a rotation keeps the information
    assert score(report, "sub-A_ses-1", "reaction_time")[0] >= 0.8  # R^2 of the planted linear code
    shuffled_accuracy, _ = score(report, "sub-C_ses-1", "stimulus")
    assert abs(shuffled_accuracy - 1 / 3) <= 0.15
    assert score(report, "sub-C_ses-1", "reaction_time")[0] <= 0.1
    assert set(report.decoding["metric"]) == {"accuracy", "r2"}
    assert report.decoding["n_samples"].eq(N_TRIALS).all()


def test_consistency_is_high_for_shared_dynamics_and_low_for_noise():
    rotation = np.linalg.qr(np.random.default_rng(9).normal(size=(LATENT, LATENT)))[0]
    rng = np.random.default_rng(4)
    noise = planted("N", seed=3).copy()
    noise["embedding"] = (("trial", "time", "latent"), rng.normal(size=(N_TRIALS, N_TIME, LATENT)).astype(np.float32))
    report = teacher_quality([planted("A", seed=0), planted("B", seed=1, rotation=rotation), noise],
                             variables=["stimulus"])  # fmt: skip
    pairs = {(a, b): s for a, b, s in report.consistency.itertuples(index=False)}
    assert len(pairs) == 6
    assert pairs[("sub-A_ses-1", "sub-B_ses-1")] >= 0.9 and pairs[("sub-B_ses-1", "sub-A_ses-1")] >= 0.9
    assert pairs[("sub-N_ses-1", "sub-A_ses-1")] <= 0.3
    assert "cross-session consistency" in report.summary() and "stimulus" in report.summary()


def test_single_session_report_and_figure(tmp_path):
    report = teacher_quality([planted("A", seed=0)], figure=tmp_path / "figs" / "one.png")
    assert report.consistency.empty and np.isnan(report.mean_consistency)
    assert report.figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and report.figure.stat().st_size > 10_000
    assert "needs at least 2 sessions" in report.summary()
    assert list(report.table()["variable"]) == ["stimulus", "reaction_time"]


def test_frames_decode_per_frame():
    rng = np.random.default_rng(0)
    condition = np.tile(["left", "right"], 50)
    embedding = rng.normal(size=(100, 3)) + np.where(condition == "left", 2.0, -2.0)[:, None]
    ds = xr.Dataset(
        {"embedding": (("frame", "latent"), embedding.astype(np.float32)), "condition": ("frame", condition),
         "stim_file": ("frame", [f"f{i}.png" for i in range(100)])},
        attrs={"subject": "01", "session": "", "task": "driving"},
    )  # fmt: skip
    report = teacher_quality([ds, ds.copy()])
    assert list(report.decoding["variable"].unique()) == ["condition"]  # 100 distinct files are not a class label
    assert report.decoding["score"].min() >= 0.95
    assert report.mean_consistency >= 0.99


def test_unknown_variable_or_missing_embedding():
    with pytest.raises(EmbeddingError, match="no task variable 'goal'") as info:
        teacher_quality([planted("A", seed=0)], variables=["goal"])
    assert "stimulus" in info.value.fix
    with pytest.raises(EmbeddingError, match="no 'embedding'"):
        teacher_quality([planted("A", seed=0).drop_vars("embedding")])
    with pytest.raises(EmbeddingError, match="no embeddings"):
        teacher_quality([])

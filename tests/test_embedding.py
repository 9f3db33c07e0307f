import re

import numpy as np
import pytest
import xarray as xr

from b2m_neuro import Derivative, embed
from b2m_neuro.errors import EmbeddingError


def spike_session(subject, n_units, *, n_trials=40, n_time=20, seed=0):
    """Rates with a planted stimulus signal after time 0, dims (trial, time, unit) as load_spikes gives."""
    rng = np.random.default_rng(seed)
    stimulus = rng.integers(0, 3, n_trials)
    time = np.linspace(-1, 1, n_time)
    tuning = rng.normal(size=(3, n_units))
    signal = 5 * (time > 0)[None, :, None] * tuning[stimulus][:, None]
    rates = rng.poisson(2.0, size=(n_trials, n_time, n_units)) + signal
    return xr.DataArray(
        rates.astype(np.float32),
        dims=("trial", "time", "unit"),
        coords={
            "time": ("time", time, {"time_kind": "seconds from stimulus onset"}),
            "unit": [f"u{i}" for i in range(n_units)],
            "brain_area": ("unit", ["hippocampus"] * n_units),
            "session": "1",
            "stimulus": ("trial", stimulus),
            "correct": ("trial", rng.random(n_trials) > 0.3),
            "reaction_time": ("trial", rng.uniform(0.4, 1.2, n_trials)),
        },
        attrs={"subject": subject, "session": "1", "units": "Hz", "spec": '{"bin_ms": 10}',
               "source_file": f"/data/sub-{subject}.nwb", "source_sha256": "0" * 64},
    )  # fmt: skip


def eeg_session(subject, n_channels=6, n_frames=80):
    rng = np.random.default_rng(3)
    return xr.DataArray(
        rng.normal(size=(n_frames, n_channels)).astype(np.float32),
        dims=("frame", "channel"),
        coords={
            "channel": [f"E{i}" for i in range(n_channels)],
            "stim_file": ("frame", [f"frame_{i:04d}.png" for i in range(n_frames)]),
            "onset": ("frame", np.arange(n_frames) * 0.1),
        },
        attrs={"subject": subject, "session": "", "task": "driving", "units": "V"},
    )


def test_pca_keeps_task_variables_and_metadata():
    sessions = [spike_session("A", 8), spike_session("B", 11, seed=1)]
    out = embed(sessions, method="pca", output_dimension=3, progress=False)
    assert [ds["embedding"].shape for ds in out] == [(40, 20, 3), (40, 20, 3)]
    first = out[0]
    assert first["embedding"].dtype == np.float32 and first["embedding"].dims == ("trial", "time", "latent")
    np.testing.assert_array_equal(first["stimulus"].values, sessions[0]["stimulus"].values)
    assert set(first.data_vars) == {"embedding", "stimulus", "correct", "reaction_time"}
    assert first["time"].attrs["time_kind"] == "seconds from stimulus onset"
    assert (first.attrs["subject"], first.attrs["task"], first.attrs["method"]) == ("A", "memory", "pca")
    assert first.attrs["embedding_params"] == {"output_dimension": 3, "fit": "per-session", "zscore": False, "seed": 0}
    # principal components: uncorrelated, decreasing variance
    flat = first["embedding"].values.reshape(-1, 3)
    variances = flat.var(axis=0)
    assert np.all(np.diff(variances) < 0)
    assert abs(np.corrcoef(flat.T)[0, 1]) < 1e-3


def test_zscore_standardizes_each_unit_before_pca():
    session = spike_session("A", 6)
    session[:, :, 0] *= 1000.0  # one loud unit
    session[:, :, 5] = 4.0  # one constant unit
    (raw,) = embed([session], method="pca", output_dimension=2, progress=False)
    (scaled,) = embed([session], method="pca", output_dimension=2, zscore=True, progress=False)
    units = session.values.reshape(-1, 6)
    loud = abs(np.corrcoef(raw["embedding"].values.reshape(-1, 2)[:, 0], units[:, 0])[0, 1])
    assert loud > 0.999  # without z-scoring the loud unit is the first component
    standardized = (units[:, :5] - units[:, :5].mean(axis=0)) / units[:, :5].std(axis=0)
    expected = np.linalg.svd(standardized, full_matrices=False)
    components = scaled["embedding"].values.reshape(-1, 2)
    np.testing.assert_allclose(components.var(axis=0), expected.S[:2] ** 2 / len(units), rtol=1e-3)
    assert scaled.attrs["embedding_params"]["zscore"] is True and np.isfinite(components).all()
    with pytest.raises(EmbeddingError, match="zscore=True applies to methods 'pca' and 'cebra'") as info:
        embed([session], method="identity", zscore=True, progress=False)
    assert info.value.field == "zscore"


def test_identity_is_the_activity_with_unit_ids():
    session = spike_session("A", 5)
    (out,) = embed([session], method="identity", progress=False)
    np.testing.assert_array_equal(out["embedding"].values, session.values)
    assert list(out["unit"].values) == list(session["unit"].values) and out["unit"].dims == ("latent",)
    assert out["embedding"].attrs["units"] == "Hz"
    with pytest.raises(EmbeddingError, match=r"same unit count in every session, got \[5, 6\]"):
        embed([session, spike_session("B", 6)], method="identity", progress=False)


def test_multi_session_cebra_round_trips_through_a_derivative(tmp_path):
    sessions = [spike_session("A", 8), spike_session("B", 11, seed=1)]
    out = embed(sessions, method="cebra", output_dimension=3, max_iterations=20, batch_size=128, device="cpu",
                threads=1, progress=False)  # fmt: skip
    assert [ds["embedding"].shape for ds in out] == [(40, 20, 3), (40, 20, 3)]
    norms = np.linalg.norm(out[1]["embedding"].values, axis=-1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-4)  # cosine distance: embeddings on the unit sphere
    params = out[0].attrs["embedding_params"]
    assert params["model_architecture"] == "offset10-model" and params["conditional"] == "time_delta"
    assert params["multi_session"] is True and params["max_iterations"] == 20
    derivative = Derivative.create(tmp_path / "b2m-cebra", out, method="cebra", params=params, source_datasets=[],
                                   progress=False)  # fmt: skip
    assert derivative.session_keys == ["sub-A_ses-1_task-memory", "sub-B_ses-1_task-memory"]
    np.testing.assert_allclose(derivative.load(derivative.session_keys[1])["embedding"].values,
                               out[1]["embedding"].values)  # fmt: skip
    assert derivative.load(derivative.session_keys[0]).attrs["embedding_loss"] == out[0].attrs["embedding_loss"]


def test_cebra_records_its_final_training_loss():
    sessions = [spike_session("A", 8), spike_session("B", 11, seed=1)]
    options = dict(method="cebra", output_dimension=3, batch_size=64, device="cpu", threads=1, progress=False)
    short, long = (embed(sessions, max_iterations=steps, **options) for steps in (3, 150))
    losses = [ds.attrs["embedding_loss"] for ds in short + long]
    assert len(set(losses[:2])) == 1 and len(set(losses[2:])) == 1  # one loss for the sessions trained together
    assert np.isfinite(losses).all() and losses[2] < losses[0] - 0.05  # the mean over the last 100 of 150 steps
    assert "embedding_loss" not in embed(sessions, method="pca", output_dimension=3)[0].attrs


def test_distinct_label_search_finds_the_sample_cebras_own_search_finds():
    import cebra.distributions
    import torch

    from b2m_neuro.embedding.methods import _auxiliary_label, _distinct_value_index

    labels = torch.as_tensor(_auxiliary_label(spike_session("A", 3, n_trials=30), "trials"))  # 20 values x 30 trials
    slow = cebra.distributions.ContinuousIndex(labels)
    fast = _distinct_value_index(cebra.distributions.ContinuousIndex)(labels)
    values = labels[:20, 0]
    queries = torch.cat([values, (values[1:] + values[:-1]) / 2,  # on a label, and midway between two (ties)
                         values + 0.013, torch.tensor([-5.0, 5.0]), torch.rand(200) * 3 - 1.5])[:, None]
    found = fast.search(queries)
    assert torch.equal(found, slow.search(queries))
    assert int(found.max()) < 20  # the first sample of the nearest label: always the first trial's
    assert len(fast.first) == 20


def test_cebra_trains_the_same_with_the_distinct_label_search():
    sessions = [spike_session("A", 8), spike_session("B", 11, seed=1)]
    options = dict(method="cebra", output_dimension=3, max_iterations=15, batch_size=64, device="cpu", threads=1,
                   progress=False)
    fast, slow = (embed(sessions, **options, label_search=search) for search in ("distinct", "cebra"))
    for ours, theirs in zip(fast, slow):
        np.testing.assert_array_equal(ours["embedding"].values, theirs["embedding"].values)
        assert ours.attrs["embedding_params"] == theirs.attrs["embedding_params"]
        assert ours.attrs["embedding_loss"] == theirs.attrs["embedding_loss"]
    with pytest.raises(EmbeddingError, match="unknown label_search") as info:
        embed(sessions, **options, label_search="faiss")
    assert info.value.field == "label_search"


def test_cebra_progress_is_one_bar_of_the_package_not_cebras_per_step_lines(capfd):
    embed([eeg_session("01")], method="cebra", output_dimension=2, max_iterations=30, batch_size=64, device="cpu",
          threads=1, progress=True)
    err = capfd.readouterr().err
    assert "training CEBRA" in err and "100%" in err and err.count("training CEBRA") == 1
    assert re.search(r"training CEBRA \(loss \d+\.\d{3}\)", err)  # the loss so far, after the description
    assert "it/s" not in err and err.count("\r") < 5  # no tqdm updates (CEBRA's bar is off)
    embed([eeg_session("01")], method="cebra", output_dimension=2, max_iterations=5, batch_size=64, device="cpu",
          threads=1, progress=False)
    assert capfd.readouterr().err == ""


def test_cebra_single_session_and_eeg_frames():
    (out,) = embed([eeg_session("01")], method="cebra", output_dimension=2, max_iterations=10, batch_size=64,
                   device="cpu", threads=1, task="drive2", zscore=True, progress=False)  # fmt: skip
    assert out["embedding"].dims == ("frame", "latent") and out["embedding"].shape == (80, 2)
    assert out.attrs["embedding_params"]["multi_session"] is False
    assert out.attrs["embedding_params"]["zscore"] is True  # ours, not passed to cebra.CEBRA
    assert list(out["stim_file"].values[:2]) == ["frame_0000.png", "frame_0001.png"]
    assert out.attrs["task"] == "drive2"  # the task option overrides the recording's attribute
    assert np.isfinite(out["embedding"].values).all()


@pytest.mark.parametrize(
    ("sessions", "options", "message"),
    [
        ([], {}, "no sessions"),
        ([spike_session("A", 8), eeg_session("01")], {}, "mix kinds"),
        ([spike_session("A", 8), spike_session("B", 4)], {"output_dimension": 5},
         r"output_dimension 5 exceeds the 4 units of sub-B ses-1 \(/data/sub-B.nwb\)"),
        ([spike_session("A", 8)], {"method": "umap"}, "unknown embedding method"),
        ([spike_session("A", 8).transpose("unit", "trial", "time")], {}, "expected a DataArray with dims"),
        ([spike_session("A", 8).where(lambda x: x < 6)], {}, "NaN"),
        ([spike_session("A", 8)], {"method": "pca", "output_dimension": 0}, "positive integer"),
        ([spike_session("A", 8, n_trials=1, n_time=5)],
         {"method": "cebra", "max_iterations": 2, "batch_size": 4, "device": "cpu", "threads": 1},
         r"CEBRA could not be trained \(Found array with 5 sample"),
    ],
)  # fmt: skip
def test_bad_input_raises_embedding_error(sessions, options, message):
    with pytest.raises(EmbeddingError, match=message):
        embed(sessions, **{"method": "pca", "output_dimension": 3, **options}, progress=False)


def test_too_small_session_names_file_and_fix():
    with pytest.raises(EmbeddingError) as info:
        embed([spike_session("A", 8), spike_session("B", 4)], method="cebra", output_dimension=7, progress=False)
    assert info.value.file == "/data/sub-B.nwb" and info.value.field == "output_dimension"
    assert "output_dimension <= 4" in info.value.fix

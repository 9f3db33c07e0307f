import numpy as np
import pytest
import torch
import xarray as xr
from test_models import UserNet, one_torch_thread  # noqa: F401 (autouse fixture)
from test_tasks import memory_derivative, memory_sessions

from b2m_neuro import TrainResult, train
from b2m_neuro.engine import TrainConfig
from b2m_neuro.errors import TrainingError

# tiny runs: GRU 8, 10 time points per trial, 40 test sequences
SMALL = dict(hidden_size=8, time_stride=2, n_test=40, lr=3e-3, progress=False)


@pytest.fixture(scope="module")
def derivative(tmp_path_factory):
    return memory_derivative(tmp_path_factory.mktemp("deriv") / "b2m-identity", 2, 5)


@pytest.fixture(scope="module")
def run(derivative):
    return train(derivative, alpha=0.1, epochs=3, seed=1, **SMALL)


def test_train_returns_a_history_per_epoch(run):
    history = run.history
    assert list(history.epoch.values) == [1, 2, 3]
    assert set(history.data_vars) >= {"task_loss", "transfer_loss", "total_loss", "test_accuracy", "test_loss", "wall_time",
                                      "alignment_cka", "alignment_rsa"}
    assert np.isfinite(history.to_array()).all()
    assert ((history.test_accuracy >= 0) & (history.test_accuracy <= 1)).all()
    assert (np.diff(history.wall_time) > 0).all()
    np.testing.assert_allclose(history.total_loss, 0.9 * history.task_loss + 0.1 * history.transfer_loss, rtol=1e-5)
    assert not run.diverged and isinstance(run.model, torch.nn.Module)
    assert run.config["alpha"] == 0.1 and run.config["model_options"]["n_inputs"] == 4
    assert run.config["model_options"]["latent_dim"] == 3 and run.config["device"] == "cpu"
    assert run.config["n_train_sequences"] == 10 and run.config["n_test_sequences"] == 40
    assert run.versions["torch"] == torch.__version__
    # the settings not given are TrainConfig's defaults, written there only
    defaults = TrainConfig(alpha=0.1)
    for name in ("transfer", "temperature", "reduction", "batch_size", "weight_decay", "divergence_factor"):
        assert run.config[name] == getattr(defaults, name), name


def test_same_seed_gives_the_identical_history_and_another_seed_does_not(derivative, run):
    again = train(derivative.root, alpha=0.1, epochs=3, seed=1, **SMALL)
    other = train(derivative, alpha=0.1, epochs=3, seed=2, **SMALL)
    values = ["task_loss", "transfer_loss", "total_loss", "train_accuracy", "test_loss", "test_accuracy"]
    xr.testing.assert_identical(again.history[values], run.history[values])
    assert not np.array_equal(other.history.task_loss, run.history.task_loss)


def test_task_learning_lowers_the_task_loss(derivative):
    result = train(derivative, alpha=0.0, epochs=6, seed=0, **{**SMALL, "lr": 1e-2})
    assert result.history.task_loss[-1] < result.history.task_loss[0]


def test_brain_guidance_lowers_the_transfer_loss_and_raises_the_alignment(derivative):
    # every trial point paired, so the alignment (measured over the paired points) sees the whole trial
    result = train(derivative, alpha=1.0, epochs=4, seed=0, pair="all", **{**SMALL, "lr": 1e-2})
    assert result.history.transfer_loss[-1] < 0.8 * result.history.transfer_loss[0]
    # seen: CKA 0.16 -> 0.40 with transfer only, 0.11 -> 0.02 with the task only
    guided = result.history.alignment_cka.values
    unguided = train(derivative, alpha=0.0, epochs=4, seed=0, pair="all", **{**SMALL, "lr": 1e-2}).history.alignment_cka.values
    assert guided[-1] > guided[0] + 0.15
    assert guided[-1] - guided[0] > unguided[-1] - unguided[0] + 0.15 and guided[-1] > unguided[-1] + 0.2
    assert 0 <= unguided.min() and guided.max() <= 1


def test_shuffled_control_changes_only_the_pairing(derivative, run):
    control = train(derivative, alpha=0.1, epochs=3, seed=1, control="shuffled", **SMALL)
    assert control.config["control"] == "shuffled"
    assert not np.array_equal(control.history.transfer_loss, run.history.transfer_loss)


@pytest.mark.parametrize("transfer", ["latent", "contrastive-cosine"])
def test_other_transfer_losses_train(derivative, transfer):
    result = train(derivative, alpha=0.5, epochs=2, transfer=transfer, **SMALL)
    assert np.isfinite(result.history.transfer_loss).all() and not result.diverged


def test_batches_of_several_episodes_train(derivative):
    result = train(derivative, alpha=0.1, epochs=2, batch_size=4, **SMALL)
    assert np.isfinite(result.history.task_loss).all() and result.config["batch_size"] == 4


def test_sum_reduction_scales_the_transfer_loss_with_sequence_length(derivative):
    mean = train(derivative, alpha=0.0, epochs=1, seed=3, pair="all", **SMALL)
    total = train(derivative, alpha=0.0, epochs=1, seed=3, pair="all", reduction="sum", **SMALL)
    # with alpha = 0 both runs are the same; the sum is the mean times the paired rows per episode
    # (every one of the 10 points kept per trial)
    rows_per_episode = 10 * np.array([(s.episode == e).sum() for s in derivative.datasets() for e in np.unique(s.episode)])
    ratio = float(total.history.transfer_loss[0] / mean.history.transfer_loss[0])
    assert rows_per_episode.min() < ratio < rows_per_episode.max()


def test_a_huge_learning_rate_diverges_without_crashing(derivative):
    result = train(derivative, alpha=0.5, epochs=4, **{**SMALL, "lr": 1e6})
    assert result.diverged and result.history.attrs["diverged"] == 1
    assert np.isnan(result.history.test_accuracy[-1])
    assert "DIVERGED" in result.summary()


def test_a_user_module_is_trained_through_its_named_layer(derivative):
    net = UserNet(width=3)
    before = net.bottleneck.weight.detach().clone()
    result = train(derivative, net, alpha=0.2, epochs=1, align_layer="bottleneck", time_stride=2, n_test=40, progress=False)
    assert result.model is net and not torch.equal(before, net.bottleneck.weight)
    assert result.config["align_layer"] == "bottleneck" and result.config["model"].endswith("UserNet")


def test_save_and_load_round_trip(run, tmp_path):
    path = run.save(tmp_path / "run")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "history.nc", "weights.pt"]
    loaded = TrainResult.load(path)
    xr.testing.assert_identical(loaded.history, run.history)
    assert loaded.config == run.config and loaded.versions == run.versions and loaded.diverged is False
    for (name, saved), (_, original) in zip(loaded.model.state_dict().items(), run.model.state_dict().items()):
        assert torch.equal(saved, original), name
    with pytest.raises(TrainingError, match="already exists"):
        run.save(path)
    run.save(path, overwrite=True)
    assert not list(tmp_path.glob(".*partial"))


def test_loading_a_user_model_needs_an_instance(derivative, tmp_path):
    result = train(derivative, UserNet(), alpha=0.2, epochs=1, align_layer="bottleneck", time_stride=2, n_test=40,
                   progress=False)
    result.save(tmp_path / "user")
    with pytest.raises(TrainingError, match="model=MyModel"):
        TrainResult.load(tmp_path / "user")
    loaded = TrainResult.load(tmp_path / "user", model=UserNet())
    assert torch.equal(loaded.model.bottleneck.weight, result.model.bottleneck.weight)
    with pytest.raises(TrainingError, match="not a saved training run"):
        TrainResult.load(tmp_path)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(alpha=1.5), "alpha must lie in"),
        (dict(alpha=-0.1), "alpha must lie in"),
        (dict(alpha=0.1, model="transformer"), "unknown model 'transformer'.*gru"),
        (dict(alpha=0.1, transfer="cka"), "unknown transfer"),
        (dict(alpha=0.1, control="random"), "unknown control"),
        (dict(alpha=0.1, epochs=0), "epochs must be a positive integer"),
        (dict(alpha=0.1, model=UserNet(width=5), align_layer="bottleneck"), "width 5 but the brain embedding has 3"),
        (dict(alpha=0.1, model=UserNet()), "align_layer"),
        (dict(alpha=0.1, task="driving"), "unknown task"),
        (dict(alpha=0.1, task="trials", episode="block"), "n_test do not apply to task 'trials'"),
        (dict(alpha=0.1, epoch=3), "does not accept these options.*epoch"),
        (dict(alpha=0.1, model=UserNet(), align_layer="bottleneck", hidden_size=8), "neither task options"),
    ],
)
def test_bad_options_are_refused(derivative, options, message):
    model = options.pop("model", "gru")
    with pytest.raises(TrainingError, match=message):
        train(derivative, model, progress=False, **{"time_stride": 2, "n_test": 5, **options})


def test_generic_trial_sequence_task_trains_on_held_out_episodes(derivative):
    result = train(derivative, alpha=0.1, epochs=1, task="trials", target="correct_response", test_fraction=0.3,
                   hidden_size=8, time_stride=2, progress=False)
    assert result.config["task"] == "trials" and result.config["task_options"]["test_fraction"] == 0.3
    assert (result.config["n_train_sequences"], result.config["n_test_sequences"]) == (7, 3)
    assert 0 <= result.final_test_accuracy <= 1


def test_a_derivative_without_the_task_variables_is_refused(tmp_path):
    from b2m_neuro.derivative import Derivative

    sessions = [s.drop_vars(["current_target", "episode"]) for s in memory_sessions(1, 3)]
    derivative = Derivative.create(tmp_path / "d", sessions, method="identity", params={}, source_datasets=[],
                                   progress=False)
    with pytest.raises(TrainingError, match="current_target, episode"):
        train(derivative, alpha=0.1, progress=False)


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="needs a machine without GPU")
def test_an_unavailable_device_is_refused_and_auto_picks_the_cpu(derivative, run):
    assert run.config["device"] == "cpu"
    with pytest.raises(TrainingError, match="device 'cuda' is not available"):
        train(derivative, alpha=0.1, device="cuda", progress=False)

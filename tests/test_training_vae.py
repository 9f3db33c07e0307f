"""Training the VAE student on CARLA scenes with EEG latent transfer: learning, transfer, batching, bad input."""

import numpy as np
import pytest
import torch

import b2m_neuro
from b2m_neuro.derivative import Derivative
from b2m_neuro.errors import SweepError, TrainingError
from b2m_neuro.models.vae import ReferenceVAE
from b2m_neuro.report import reconstruction_grid
from b2m_neuro.scene_training import SCENE_HISTORY_VARIABLES, fit_scene_runs, prepare_scene_run
from b2m_neuro.tasks.scenes import SceneTask, read_images
from b2m_neuro.training import TrainResult
from scene_data import CARLA_SCENES, SMALL_VAE, driving_derivative

FAST = dict(scenes=CARLA_SCENES, lr=3e-3, batch_size=2, pair_batch=48, device="cpu", progress=False, **SMALL_VAE)


@pytest.fixture(scope="module")
def derivative(tmp_path_factory):
    return driving_derivative(tmp_path_factory.mktemp("driving"))


@pytest.fixture(scope="module")
def baseline(derivative):
    return b2m_neuro.train(derivative, "vae", alpha=0.0, epochs=4, **FAST)


def _untrained_test_loss(result: TrainResult) -> float:
    torch.manual_seed(result.config["seed"])
    options = dict(result.config["model_options"])
    network = ReferenceVAE(options.pop("n_inputs"), options.pop("latent_dim"), **options).eval()
    images = torch.as_tensor(read_images(SceneTask(CARLA_SCENES).split()[1])).float() / 255
    with torch.no_grad():
        return float(((network(images)[0] - images) ** 2).mean())


def test_a_short_training_lowers_the_test_loss(baseline):
    history = baseline.history
    assert set(SCENE_HISTORY_VARIABLES) <= set(history.data_vars) and history.sizes["epoch"] == 4
    assert not baseline.diverged and np.isfinite(history.test_loss).all()
    before = _untrained_test_loss(baseline)
    print(f"test loss: untrained {before:.5f}, after 4 epochs {float(history.test_loss[-1]):.5f}")
    assert float(history.test_loss[-1]) < 0.8 * before
    assert float(history.test_loss[-1]) < float(history.test_loss[0])
    assert baseline.config["model"] == "vae" and baseline.config["transfer"] == "latent"
    assert baseline.config["n_train_images"] == 16 and baseline.config["n_frames"] == 48
    assert "test loss" in baseline.summary() and np.isnan(baseline.final_test_accuracy)  # no accuracy to report


@pytest.mark.parametrize(("options", "field"), [(dict(task="sternberg"), "task"), (dict(align_layer="gru"), "align_layer")])
def test_options_of_the_sequence_tasks_are_refused_for_the_vae(derivative, options, field):
    with pytest.raises(TrainingError, match="task= and align_layer= do not apply") as error:
        b2m_neuro.train(derivative, "vae", alpha=0.1, **options, **FAST)
    assert error.value.field == field


def test_latent_transfer_lowers_the_latent_mse_against_alpha_0(derivative, baseline):
    guided = b2m_neuro.train(derivative, "vae", alpha=0.9, epochs=4, **FAST)
    mse0, mse = float(baseline.history.latent_mse[-1]), float(guided.history.latent_mse[-1])
    print(f"latent MSE on H: alpha 0 {mse0:.3f}, alpha 0.9 {mse:.3f}")
    assert mse < 0.97 * mse0
    assert float(guided.history.transfer_loss[-1]) < 0.8 * float(baseline.history.transfer_loss[-1])
    # the same seed: the same initial weights and image order, so the first epoch's task losses are close
    assert float(guided.history.task_loss[0]) == pytest.approx(float(baseline.history.task_loss[0]), rel=0.05)


def test_batched_runs_equal_one_at_a_time_runs(derivative):
    settings = [dict(alpha=0.0, seed=0), dict(alpha=0.5, seed=1), dict(alpha=0.2, seed=0, control="shuffled",
                                                                        weight_decay=1e-3),
                dict(alpha=0.1, seed=2, epochs=1)]  # stops early: its batch-norm statistics must stop with it
    options = {k: v for k, v in FAST.items() if k != "progress"} | {"epochs": 2, "n_train": 6, "pair_batch": 16}
    alone = []
    for setting in settings:
        prepared = prepare_scene_run(derivative, "vae", **(options | setting))
        [(history, diverged)] = fit_scene_runs([prepared.run], progress=False)
        alone.append((history, prepared.run.network.state_dict()))
    together = [prepare_scene_run(derivative, "vae", **(options | setting)) for setting in settings]
    outcomes = fit_scene_runs([p.run for p in together], group_size=4, progress=False)
    assert len({id(p.run.data) for p in together}) == 4  # separate data objects, equal images: one group per epochs
    for (history, weights), (batched, diverged), prepared in zip(alone, outcomes, together):
        assert not diverged
        for name in ("task_loss", "transfer_loss", "test_loss", "latent_mse"):
            np.testing.assert_allclose(batched[name].values, history[name].values, rtol=1e-3, err_msg=name)
        for name, value in prepared.run.network.state_dict().items():
            torch.testing.assert_close(value, weights[name], rtol=1e-3, atol=1e-4, msg=name)
    assert not np.allclose(alone[0][0].test_loss, alone[1][0].test_loss)  # the runs do differ


def test_the_group_size_is_one_on_a_cpu_and_what_fits_elsewhere(derivative):
    from b2m_neuro.scene_training import auto_scene_group_size

    prepared = prepare_scene_run(derivative, "vae", alpha=0.1, **{k: v for k, v in FAST.items() if k != "progress"})
    assert auto_scene_group_size(prepared.run, device="cpu", n_runs=16) == 1
    assert auto_scene_group_size(prepared.run, device="meta", n_runs=16) == 16
    reference = ReferenceVAE(3, 64)
    assert 4 * 5 * reference.activation_values * (32 + 256) == pytest.approx(2.1e9, rel=0.05)  # the docstring's figure


def test_a_saved_run_loads_back(baseline, tmp_path):
    path = baseline.save(tmp_path / "run")
    loaded = TrainResult.load(path)
    assert isinstance(loaded.model, ReferenceVAE) and loaded.model.image_size == (80, 160)
    for name, value in baseline.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], value)
    np.testing.assert_allclose(loaded.history.test_loss, baseline.history.test_loss)


def test_a_model_whose_latent_differs_from_the_derivative_is_an_error(derivative):
    with pytest.raises(TrainingError, match="latent has 5 dimensions but the EEG embedding has 8"):
        b2m_neuro.train(derivative, ReferenceVAE(3, 5, **SMALL_VAE), alpha=0.1, scenes=CARLA_SCENES, progress=False)
    with pytest.raises(TrainingError, match="takes 40 x 80 images"):
        b2m_neuro.train(derivative, ReferenceVAE(3, 8, image_size=(40, 80), **SMALL_VAE), alpha=0.1,
                        scenes=CARLA_SCENES, progress=False)
    with pytest.raises(TrainingError, match="image_size"):
        b2m_neuro.train(derivative, "vae", alpha=0.1, scenes=CARLA_SCENES, image_size=(40, 80), progress=False)


def test_other_bad_input_is_a_clear_error(derivative, tmp_path):
    with pytest.raises(TrainingError, match="needs the folder of its training scenes"):
        b2m_neuro.train(derivative, "vae", alpha=0.1)
    with pytest.raises(TrainingError, match="needs the folder of its training scenes"):  # a VAE module too
        b2m_neuro.train(derivative, ReferenceVAE(3, 8, **SMALL_VAE), alpha=0.1)
    with pytest.raises(TrainingError, match="latent transfer"):
        b2m_neuro.train(derivative, "vae", alpha=0.1, scenes=CARLA_SCENES, transfer="contrastive")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingError, match="no train images"):
        b2m_neuro.train(derivative, "vae", alpha=0.1, scenes=tmp_path / "empty", progress=False)
    trials = Derivative.open(derivative).datasets()[0].rename(frame="trial")
    with pytest.raises(TrainingError, match="not a frame embedding"):
        b2m_neuro.train([trials], "vae", alpha=0.1, scenes=CARLA_SCENES)


def test_the_reconstruction_grid_shows_originals_over_reconstructions(baseline, tmp_path):
    from PIL import Image

    images = read_images(SceneTask(CARLA_SCENES).split()[1][:3])
    png = reconstruction_grid(baseline, images, tmp_path / "grid", title="alpha 0")
    assert png == tmp_path / "grid.png" and (tmp_path / "grid.svg").is_file()
    with Image.open(png) as figure:
        assert figure.width > 1.5 * figure.height  # three columns of two rows of 2:1 scenes
    assert np.isfinite(baseline.history.test_psnr).all()
    np.testing.assert_allclose(baseline.history.test_psnr, 10 * np.log10(1 / baseline.history.test_loss))
    with pytest.raises(SweepError, match="uint8"):
        reconstruction_grid(baseline, images.astype(np.float32), tmp_path / "bad")


def test_a_vae_sweep_stores_every_condition_and_batched_equals_sequential(derivative, tmp_path):
    options = dict(scenes=str(CARLA_SCENES), epochs=1, lr=3e-3, batch_size=2, n_train=4, n_test=2, pair_batch=16,
                   device="cpu", channels=[4, 8, 8, 16], hidden=32)
    grid = dict(alphas=[0.5], seeds=2, controls=("no_info", "shuffled", "l2"), l2=[1e-3], progress=False)
    sequential = b2m_neuro.sweep(derivative, "vae", out=tmp_path / "sequential", **grid, **options)
    batched = b2m_neuro.sweep(derivative, "vae", out=tmp_path / "batched", engine="batched", **grid, **options)
    assert list(sequential.condition.values) == ["b2m", "no_info", "shuffled", "l2"]
    assert int(sequential.trained.sum()) == 10 and not sequential.diverged.any()
    for name in ("test_psnr", "latent_mse", "transfer_loss"):
        np.testing.assert_allclose(batched[name].values, sequential[name].values, rtol=1e-3, equal_nan=True, err_msg=name)
    no_info = sequential.sel(condition="no_info", strength=0.5)
    brain = sequential.sel(condition="b2m", strength=0.5)
    assert not np.allclose(no_info.latent_mse, brain.latent_mse)  # a different teacher
    table = sequential.statistics(metric="test_psnr", last=1)
    assert {"auc", "final"} == set(table.measure) and table["n_used"].min() == 2
    from b2m_neuro.report import write_report

    report = write_report(sequential, tmp_path / "report", metric="test_psnr", last=1, progress=False)
    assert {"trajectories.png", "auc.png", "alignment.png", "statistics.md"} <= {p.name for p in report.iterdir()}


CLI_SMALL = ["--scenes", str(CARLA_SCENES), "--channels", "4", "8", "8", "16", "--hidden", "32", "--batch-size", "2",
             "--n-train", "4", "--n-test", "2", "--pair-batch", "16", "--device", "cpu", "--quiet"]


def test_the_train_and_sweep_commands_take_the_vae(derivative, tmp_path, capsys):
    from b2m_neuro.cli import main

    out = tmp_path / "run"
    assert main(["train", str(derivative), "--model", "vae", "--alpha", "0.5", "--epochs", "1", "--out", str(out),
                 *CLI_SMALL]) == 0
    summary = capsys.readouterr().out
    assert "vae alpha=0.5 transfer=latent" in summary and "1 epochs, test loss" in summary
    loaded = TrainResult.load(out)
    assert loaded.model.channels == (4, 8, 8, 16) and loaded.config["n_train_images"] == 4
    assert main(["sweep", str(derivative), "--model", "vae", "--alphas", "0.5", "--seeds", "1", "--controls",
                 "--epochs", "1", "--out", str(tmp_path / "runs"), *CLI_SMALL]) == 0
    assert "sweep: 2 runs" in capsys.readouterr().out


def test_the_train_command_reports_bad_vae_input_without_a_traceback(derivative, tmp_path, capsys):
    from b2m_neuro.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", str(derivative), "--model", "vae", "--alpha", "0.5", "--out", str(tmp_path / "r"),
                 "--scenes", str(empty), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no train images" in err and "Traceback" not in err
    assert main(["train", str(derivative), "--model", "vae", "--alpha", "0.5", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "needs the folder of its training scenes" in capsys.readouterr().err


def test_a_run_whose_loss_leaves_its_range_is_stopped_and_flagged(derivative):
    result = b2m_neuro.train(derivative, "vae", alpha=0.5, epochs=3, divergence_factor=1e-6,
                             **(FAST | {"n_train": 4, "pair_batch": 8}))
    assert result.diverged and "DIVERGED" in result.summary()
    assert np.isfinite(result.history.test_loss[0]) and np.isnan(result.history.test_loss[1:]).all()


def test_bf16_autocast_trains_close_to_float32(derivative):
    options = {k: v for k, v in FAST.items() if k != "progress"} | {"epochs": 1, "n_train": 4, "pair_batch": 8}
    histories = []
    for bf16 in (False, True):
        prepared = prepare_scene_run(derivative, "vae", alpha=0.5, **options)
        [(history, diverged)] = fit_scene_runs([prepared.run], bf16=bf16, progress=False)
        histories.append(history)
    for name in ("task_loss", "test_loss", "latent_mse"):
        np.testing.assert_allclose(histories[1][name], histories[0][name], rtol=0.05, err_msg=name)

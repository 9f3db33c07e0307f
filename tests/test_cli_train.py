import json
import re

import pytest
from test_models import one_torch_thread  # noqa: F401 (autouse fixture)
from test_tasks import memory_derivative

from b2m_neuro import TrainResult
from b2m_neuro.cli import main
from b2m_neuro.controls import CONTROLS
from b2m_neuro.engine import TrainConfig

SMALL = ["--hidden-size", "8", "--time-stride", "4", "--n-test", "20", "--lr", "0.003", "--quiet"]


def test_train_command_writes_a_run_and_prints_a_summary(tmp_path, capsys):
    derivative = memory_derivative(tmp_path / "b2m-identity", 2, 3)
    out = tmp_path / "runs" / "x"
    code = main(["train", str(derivative.root), "--model", "gru", "--alpha", "0.05", "--epochs", "2",
                 "--control", "shuffled", "--pair", "unscored", "--out", str(out), *SMALL])
    assert code == 0
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and "gru alpha=0.05" in summary[0] and "2 epochs, test accuracy" in summary[0]
    assert summary[0].endswith(f"-> {out}")
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["control"] == "shuffled" and config["model_options"]["hidden_size"] == 8
    assert config["task_options"]["time_stride"] == 4 and config["derivative"] == str(derivative.root)
    assert config["task_options"]["pair"] == "unscored"
    assert TrainResult.load(out).history.sizes["epoch"] == 2
    # a second run to the same folder needs --overwrite, and is refused before training
    assert main(["train", str(derivative.root), "--alpha", "0.05", "--epochs", "1", "--out", str(out), *SMALL]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_train_command_reports_bad_input_cleanly(tmp_path, capsys):
    derivative = memory_derivative(tmp_path / "b2m-identity", 1, 3)
    assert main(["train", str(derivative.root), "--alpha", "2", "--out", str(tmp_path / "r"), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "alpha must lie in [0, 1]" in err and "Traceback" not in err
    assert main(["train", str(derivative.root), "--alpha", "0.1", "--model", "lstm", "--out", str(tmp_path / "r"), *SMALL]) == 2
    assert "unknown model 'lstm'" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing"), "--alpha", "0.1", "--out", str(tmp_path / "r"), *SMALL]) == 2
    assert not (tmp_path / "r").exists()


def test_train_command_passes_only_the_options_given(tmp_path):
    from b2m_neuro.engine import TrainConfig

    derivative = memory_derivative(tmp_path / "b2m-identity", 1, 3)
    out = tmp_path / "r"
    assert main(["train", str(derivative.root), "--alpha", "0.1", "--epochs", "1", "--negatives", "4", "--pair", "pre",
                 "--out", str(out), *SMALL]) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["epochs"], config["negatives"], config["task_options"]["pair"]) == (1, 4, "pre")
    # the options not given keep TrainConfig's defaults
    assert (config["temperature"], config["reduction"], config["batch_size"], config["seed"]) == (
        TrainConfig.temperature, TrainConfig.reduction, TrainConfig.batch_size, TrainConfig.seed)


def test_train_help_shows_the_train_config_defaults_and_controls(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option, value in [("--lr", f"{TrainConfig.lr:g}"), ("--epochs", TrainConfig.epochs),
                          ("--temperature", f"{TrainConfig.temperature:g}"), ("--seed", TrainConfig.seed)]:
        assert re.search(rf"{option} [A-Z_]+ [^(]*\(default {value}\)", text), option
    assert "--control {" + ",".join(CONTROLS) + "}" in text

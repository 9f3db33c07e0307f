import json

import pandas as pd
import pytest
import xarray as xr
from test_sweeps import tiny_session

from b2m_neuro.cli import main
from b2m_neuro.derivative import Derivative

TINY_ARGS = ["--epochs", "2", "--hidden-size", "8", "--n-test", "16", "--lr", "0.003", "--quiet"]


@pytest.fixture(scope="module")
def derivative_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("derivative") / "b2m-identity"
    Derivative.create(root, [tiny_session()], method="identity", params={}, source_datasets=[], progress=False)
    return str(root)


def test_sweep_then_report(derivative_root, tmp_path, capsys):
    runs, report = tmp_path / "runs", tmp_path / "reports" / "first"  # report --out creates its parents
    assert main(["sweep", derivative_root, "--alphas", "0.2", "--seeds", "1", "--controls", "shuffled",
                 "--out", str(runs), *TINY_ARGS]) == 0
    assert "sweep: 3 runs in" in capsys.readouterr().out
    index = pd.read_csv(runs / "index.csv")
    assert sorted(zip(index.condition, index.strength)) == [("b2m", 0.0), ("b2m", 0.2), ("shuffled", 0.2)]
    run_file = runs / "runs" / f"{index.run_id[0]}.nc"
    config = json.loads(xr.open_dataset(run_file, engine="h5netcdf").attrs["train_config"])
    assert (config["epochs"], config["lr"], config["model_options"]["hidden_size"], config["task_options"]["n_test"]) == (2, 0.003, 8, 16)

    assert main(["report", str(runs), "--out", str(report), "--last", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "# B2M sweep report" in printed and str(report) in printed
    assert {"trajectories.png", "auc.svg", "final.png", "statistics.md"} <= {p.name for p in report.iterdir()}
    assert "L2" not in printed.split("## Statistics")[0]  # no L2 runs: the summary does not mention it
    # a second report into the same folder needs --overwrite
    assert main(["report", str(runs), "--out", str(report), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--alphas", "1.5"], "alphas must be"), (["--alphas", "0.1", "--l2", "-1"], "l2 must be")],
)
def test_bad_sweep_is_a_clean_error(derivative_root, tmp_path, capsys, extra, message):
    assert main(["sweep", derivative_root, "--out", str(tmp_path / "runs"), *extra, *TINY_ARGS]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_report_of_a_folder_that_is_not_a_store(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "report")]) == 2
    assert "not a sweep store" in capsys.readouterr().err


def test_sweep_command_passes_only_the_training_options_given(derivative_root, tmp_path, capsys):
    blind_session = tiny_session()
    blind_session["embedding"][:] = 0.5
    blind = Derivative.create(tmp_path / "b2m-blind", [blind_session], method="identity", params={},
                              source_datasets=[], progress=False)
    runs = tmp_path / "runs"
    assert main(["sweep", derivative_root, "--alphas", "0.2", "--seeds", "1", "--controls", "no_info", "--no-info",
                 str(blind.root), "--pair", "all", "--negatives", "4", "--out", str(runs), *TINY_ARGS]) == 0
    assert "sweep: 3 runs in" in capsys.readouterr().out
    configs = [json.loads(xr.open_dataset(path, engine="h5netcdf").attrs["b2m_run"]) for path in (runs / "runs").glob("*.nc")]
    given = {"epochs": 2, "hidden_size": 8, "n_test": 16, "lr": 0.003, "pair": "all", "negatives": 4}
    assert all(config["train_options"] == given for config in configs)  # nothing else: the defaults stay train()'s
    assert {config["condition"] for config in configs} == {"b2m", "no_info"}
    assert all(config["no_info_teacher"] != "surrogate" for config in configs)
    trainer = json.loads(xr.open_dataset(next((runs / "runs").glob("*.nc")), engine="h5netcdf").attrs["train_config"])
    assert (trainer["negatives"], trainer["temperature"], trainer["task_options"]["pair"]) == (4, 0.1, "all")

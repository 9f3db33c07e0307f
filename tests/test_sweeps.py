import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from b2m_neuro.derivative import Derivative
from b2m_neuro.errors import SweepError
from b2m_neuro.simulate import memory_session
from b2m_neuro.sweeps import SweepResult, rebuild_index, sweep
from b2m_neuro.training import train

TINY = {"epochs": 2, "hidden_size": 8, "n_test": 16, "lr": 3e-3}
GRID = {"alphas": [0.2], "seeds": 2, "controls": ("no_info", "shuffled", "l2"), "l2": (1e-3,)}


def tiny_session():
    trials = memory_session(seed=0, n_trials=24, n_units=4).trials
    embedding = np.random.default_rng(0).normal(size=(len(trials), 3, 3)).astype(np.float32)
    dataset = xr.Dataset({"embedding": (("trial", "time", "latent"), embedding)}, coords={"time": [-0.5, 0.25, 0.5]})
    for column in ("stimulus", "first_target", "second_target", "current_target", "correct_response", "response",
                   "correct", "reaction_time", "episode"):
        dataset[column] = ("trial", trials[column].to_numpy())
    dataset.attrs.update(subject="S01", session="01", task="memory")
    return dataset


@pytest.fixture(scope="module")
def derivative(tmp_path_factory):
    root = tmp_path_factory.mktemp("derivative") / "b2m-identity"
    return Derivative.create(root, [tiny_session()], method="identity", params={}, source_datasets=[], progress=False)


@pytest.fixture(scope="module")
def store(derivative, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "runs"
    return out, sweep(derivative, out=out, progress=False, **GRID, **TINY)


def run_files(out):
    return sorted((out / "runs").glob("*.nc"))


def without_wall_time(result):
    return result.drop_vars("wall_time").drop_attrs()


def test_store_holds_one_file_per_run_and_an_index(store):
    out, result = store
    assert isinstance(result, SweepResult)
    assert result["test_accuracy"].dims == ("condition", "strength", "seed", "epoch")
    assert list(result.condition.values) == ["b2m", "no_info", "shuffled", "l2"]
    assert result.strength.values.tolist() == [0.0, 1e-3, 0.2]
    assert result.seed.values.tolist() == [0, 1] and result.epoch.values.tolist() == [1, 2]
    trained = result["trained"].any("seed").to_pandas()
    assert trained.loc["b2m"].tolist() == [True, False, True]  # baseline alpha 0 and alpha 0.2
    assert trained.loc["shuffled"].tolist() == [False, False, True]
    assert trained.loc["no_info"].tolist() == [False, False, True]
    assert trained.loc["l2"].tolist() == [False, True, False]
    assert len(run_files(out)) == 10 == int(result["trained"].sum())
    index = pd.read_csv(out / "index.csv")
    assert sorted(index.run_id) == [p.stem for p in run_files(out)]
    assert sorted(result["run_id"].values[result["trained"].values]) == sorted(index.run_id)
    l2 = index.set_index(["condition", "seed"]).loc[("l2", 1)]
    assert (l2.alpha, l2.weight_decay, l2.strength) == (0.0, 1e-3, 1e-3)
    for name in ("test_accuracy", "alignment_cka", "alignment_rsa"):
        assert not np.isnan(result[name].values[result["trained"].values]).any()


def test_the_batched_engine_fills_the_same_store(store, derivative, tmp_path):
    out, sequential = store
    batched = sweep(derivative, out=tmp_path / "batched", engine="batched", progress=False, **GRID, **TINY)
    assert sorted(p.name for p in run_files(tmp_path / "batched")) == sorted(p.name for p in run_files(out))
    for name in ("task_loss", "transfer_loss", "test_loss", "test_accuracy", "alignment_cka", "alignment_rsa"):
        np.testing.assert_allclose(batched[name].values, sequential[name].values, rtol=1e-4, atol=1e-6)


def test_each_run_is_the_train_call_it_stands_for(store, derivative):
    out, result = store
    direct = train(derivative, alpha=0.2, control="shuffled", seed=1, progress=False, **TINY)
    stored = result.sel(condition="shuffled", strength=0.2, seed=1)
    for name in ("test_accuracy", "task_loss", "transfer_loss", "test_loss"):
        np.testing.assert_array_equal(stored[name].values, direct.history[name].values)
    l2_file = out / "runs" / f"{result.sel(condition='l2', strength=1e-3, seed=0)['run_id'].item()}.nc"
    train_config = json.loads(xr.open_dataset(l2_file, engine="h5netcdf").attrs["train_config"])
    assert (train_config["alpha"], train_config["weight_decay"], train_config["seed"]) == (0.0, 1e-3, 0)
    assert train_config["model_options"]["hidden_size"] == 8


def test_statistics_of_a_real_sweep(store):
    table = store[1].statistics()
    b2m = table.set_index(["measure", "condition", "strength"]).loc[("auc", "b2m", 0.2)]
    assert b2m.n_runs == 2 and not np.isnan(b2m.p_vs_l2) and not np.isnan(b2m.p_vs_no_info)
    assert set(table.condition) == {"b2m", "no_info", "shuffled", "l2"}


def test_the_no_information_teacher_is_the_surrogate_or_the_one_given(store, derivative, tmp_path):
    out, result = store
    surrogate = train(derivative, alpha=0.2, control="surrogate", seed=1, progress=False, **TINY)
    np.testing.assert_array_equal(result.sel(condition="no_info", strength=0.2, seed=1)["test_accuracy"].values,
                                  surrogate.history["test_accuracy"].values)
    blind_session = tiny_session()
    blind_session["embedding"][:] = np.random.default_rng(9).normal(size=blind_session["embedding"].shape)
    blind = Derivative.create(tmp_path / "b2m-blind", [blind_session], method="identity", params={},
                              source_datasets=[], progress=False)
    given = sweep(derivative, out=tmp_path / "given", no_info=blind, progress=False,
                  **{**GRID, "controls": ("no_info",), "seeds": [1]}, **TINY)
    direct = train(blind, alpha=0.2, seed=1, progress=False, **TINY)
    np.testing.assert_array_equal(given.sel(condition="no_info", strength=0.2, seed=1)["test_accuracy"].values,
                                  direct.history["test_accuracy"].values)
    np.testing.assert_array_equal(given.sel(condition="b2m", strength=0.2, seed=1)["test_accuracy"].values,
                                  result.sel(condition="b2m", strength=0.2, seed=1)["test_accuracy"].values)
    with pytest.raises(SweepError, match="another study"):  # the same store with the surrogate instead
        sweep(derivative, out=tmp_path / "given", progress=False, **{**GRID, "controls": ("no_info",), "seeds": [1]},
              **TINY)


def test_rerun_after_interruption_trains_only_the_missing_run(store, derivative, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(store[0], out)
    files = run_files(out)
    removed = files[3]
    removed.unlink()
    stray = out / "runs" / f".{files[5].name}.x1y2z3.partial"
    stray.write_bytes(b"half a netCDF file")
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in run_files(out)}
    result = sweep(derivative, out=out, progress=False, **GRID, **TINY)
    after = run_files(out)
    assert len(after) == 10 and removed in after and not stray.exists()
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in after if p != removed} == before
    assert sorted(pd.read_csv(out / "index.csv").run_id) == [p.stem for p in after]
    xr.testing.assert_identical(without_wall_time(result), without_wall_time(store[1]))


def test_sigkill_mid_sweep_then_resume(derivative, tmp_path):
    out = tmp_path / "runs"
    grid = {"alphas": [0.2, 0.5], "seeds": 1, "controls": ()}
    code = (f"from b2m_neuro.sweeps import sweep; sweep({str(derivative.root)!r}, out={str(out)!r}, "
            f"progress=False, **{grid!r}, **{TINY!r})")
    process = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    while not (out / "runs").is_dir() or not run_files(out):
        assert process.poll() is None and time.monotonic() < deadline, "the sweep ended before writing a run"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    survivors = {p: p.stat().st_mtime_ns for p in run_files(out)}
    assert 1 <= len(survivors) < 3
    result = sweep(derivative, out=out, progress=False, **grid, **TINY)
    assert len(run_files(out)) == 3 == int(result["trained"].sum())
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in survivors.items())
    assert not list(out.rglob("*.partial"))
    assert sorted(pd.read_csv(out / "index.csv").run_id) == [p.stem for p in run_files(out)]


def test_dask_local_cluster_equals_in_process(store, derivative, tmp_path):
    from dask.distributed import LocalCluster

    out = tmp_path / "runs"
    grid = {"alphas": [0.2], "seeds": 2, "controls": ()}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        result = sweep(derivative, out=out, scheduler=cluster.scheduler_address, progress=False, **grid, **TINY)
    assert len(run_files(out)) == 4
    # the same runs have the same ids (hash of their config) and the same histories
    in_process = store[1].sel(condition=["b2m"], strength=[0.0, 0.2])
    xr.testing.assert_identical(without_wall_time(result), without_wall_time(in_process))
    assert {p.name for p in run_files(out)} <= {p.name for p in run_files(store[0])}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"engine": "fast"}, "unknown engine"),
        ({"alphas": [0.0]}, "alphas must be"),
        ({"alphas": [1.5]}, "alphas must be"),
        ({"l2": (0.0,)}, "weight decays > 0"),
        ({"controls": ("noise",)}, "unknown controls"),
        ({"seeds": 0}, "seeds must be"),
        ({"weight_decay": 0.1}, "set by the sweep grid"),
        ({"epochs": object()}, "JSON values"),
        ({"scheduler": 3}, "unknown scheduler"),
    ],
)
def test_bad_sweeps_are_refused(derivative, tmp_path, options, message):
    arguments = {"alphas": [0.1], "seeds": 1, "out": tmp_path / "runs", "progress": False, **TINY} | options
    with pytest.raises(SweepError, match=message):
        sweep(derivative, **arguments)
    assert not (tmp_path / "runs").exists()


def test_a_store_holds_one_study(store, derivative, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(store[0], out)
    with pytest.raises(SweepError, match="another study"):
        sweep(derivative, out=out, progress=False, **GRID, **(TINY | {"epochs": 3}))
    assert len(run_files(out)) == 10


def test_from_store_refuses_what_is_not_a_store(store, tmp_path):
    with pytest.raises(SweepError, match="not a sweep store"):
        SweepResult.from_store(tmp_path)
    out = tmp_path / "runs"
    shutil.copytree(store[0], out)
    first = run_files(out)[0]
    first.rename(first.with_name("renamed.nc"))
    with pytest.raises(SweepError, match="does not match"):
        SweepResult.from_store(out)


def test_index_is_rebuilt_from_the_run_files(store, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(store[0], out)
    (out / "index.csv").write_text("run_id\nbogus\n")
    SweepResult.from_store(out)
    assert sorted(pd.read_csv(out / "index.csv").run_id) == [p.stem for p in run_files(out)]
    run_files(out)[0].unlink()
    assert len(rebuild_index(out)) == 9

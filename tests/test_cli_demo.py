"""The demo runs every stage end to end (at a tiny size here) and leaves every output it announces."""

import pandas as pd
import xarray as xr

from b2m_neuro.cli import main
from b2m_neuro.derivative import Derivative


def test_demo_runs_the_whole_pipeline(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--sessions", "2", "--trials", "40", "--iterations", "5",
            "--seeds", "2", "--epochs", "2", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Demo finished" in printed and "| measure | condition |" in printed

    assert len(list((out / "dandiset").glob("sub-*/sub-*_ses-*_ecephys.nwb"))) == 2
    derivative = Derivative.open(out / "derivatives" / "b2m-cebra")
    assert (len(derivative), derivative.method, derivative.latent_dim) == (2, "cebra", 7)
    index = pd.read_csv(out / "runs" / "index.csv")
    # alpha 0 + 2 alphas brain + 2 alphas shuffled + 2 L2 lambdas, 2 seeds each
    assert len(index) == 7 * 2
    history = xr.open_dataset(next((out / "runs" / "runs").glob("*.nc")))
    assert history.sizes["epoch"] == 2
    for figure in ("trajectories", "auc", "final"):
        assert (out / "report" / f"{figure}.png").stat().st_size > 0
        assert (out / "report" / f"{figure}.svg").stat().st_size > 0

    # running it again replaces the previous outputs instead of refusing or mixing studies
    assert main(argv) == 0
    assert len(pd.read_csv(out / "runs" / "index.csv")) == 7 * 2

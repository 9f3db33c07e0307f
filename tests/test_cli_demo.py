"""The demo runs every stage end to end (at a tiny size here) and leaves every output it announces."""

import pandas as pd
import xarray as xr

from b2m_neuro.cli import main
from b2m_neuro.derivative import Derivative


def test_demo_runs_the_whole_pipeline(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--trials", "60", "--seeds", "2", "--epochs", "2", "--in-process", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Demo finished" in printed and "| measure | condition |" in printed and "**Main test.**" in printed

    for dandiset in ("dandiset", "dandiset-no-info"):
        assert len(list((out / dandiset).glob("sub-*/sub-*_ses-*_ecephys.nwb"))) == 1
    informed = Derivative.open(out / "derivatives" / "b2m-pca")
    blind = Derivative.open(out / "derivatives" / "b2m-pca-no-info")
    assert (len(informed), informed.method, informed.latent_dim) == (1, "pca", 7)
    assert blind.datasets()[0].sizes == informed.datasets()[0].sizes  # the same trials, two time points each
    assert informed.datasets()[0].sizes["time"] == 2
    index = pd.read_csv(out / "runs" / "index.csv")
    # alpha 0, and at alpha 0.1: B2M, the no-information teacher, shuffled; one L2 lambda; 2 seeds each
    assert len(index) == 5 * 2 and set(index.condition) == {"b2m", "no_info", "shuffled", "l2"}
    history = xr.open_dataset(next((out / "runs" / "runs").glob("*.nc")))
    assert history.sizes["epoch"] == 2
    for figure in ("trajectories", "auc", "final", "alignment"):
        assert (out / "report" / f"{figure}.png").stat().st_size > 0
        assert (out / "report" / f"{figure}.svg").stat().st_size > 0

    # running it again replaces the previous outputs instead of refusing or mixing studies
    assert main(argv) == 0
    assert len(pd.read_csv(out / "runs" / "index.csv")) == 5 * 2

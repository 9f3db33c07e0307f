import numpy as np
import pandas as pd
import pytest
import xarray as xr

from b2m_neuro.errors import SweepError
from b2m_neuro.report import FIGURES, markdown_table, significance_stars, write_report
from b2m_neuro.stats import sweep_statistics
from b2m_neuro.sweeps import SweepResult

EPOCHS = np.arange(1, 21)
LEVELS = {("b2m", 0.0): 0.70, ("b2m", 0.01): 0.76, ("b2m", 0.1): 0.66, ("shuffled", 0.01): 0.70,
          ("shuffled", 0.1): 0.65, ("no_info", 0.01): 0.70, ("no_info", 0.1): 0.66,
          ("l2", 1e-4): 0.72, ("l2", 1e-3): 0.69}


def learning_curve(plateau, rng, *, diverge=False):
    accuracy = 0.5 + (plateau - 0.5) * (1 - np.exp(-EPOCHS / 5)) + rng.normal(0, 0.01, EPOCHS.size)
    loss = 1.0 - (accuracy - 0.5)
    cka = 0.1 + accuracy - 0.5
    if diverge:
        accuracy[-4:], loss[-4:], cka[-4:] = np.nan, np.nan, np.nan
    return xr.Dataset({"test_accuracy": ("epoch", accuracy), "test_loss": ("epoch", loss), "task_loss": ("epoch", loss),
                       "transfer_loss": ("epoch", 3 * loss), "alignment_cka": ("epoch", cka),
                       "wall_time": ("epoch", 0.1 * EPOCHS)}, coords={"epoch": EPOCHS})


@pytest.fixture(scope="module")
def result():
    rng = np.random.default_rng(1)
    runs = [({"condition": c, "strength": s, "seed": seed, "diverged": False},
             learning_curve(level + rng.normal(0, 0.01), rng, diverge=(c, s, seed) == ("b2m", 0.1, 2)))
            for (c, s), level in LEVELS.items() for seed in range(6)]
    return SweepResult.from_runs(runs)


def parse_markdown_table(text):
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    return pd.DataFrame(rows, columns=header)


@pytest.fixture(scope="module")
def report(result, tmp_path_factory):
    return write_report(result, tmp_path_factory.mktemp("report") / "report", last=5, progress=False)


def test_report_writes_every_figure_and_the_tables(report):
    for name in FIGURES:
        png, svg = report / f"{name}.png", report / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
        assert "<svg" in svg.read_text()[:1000]
    assert sorted(p.name for p in report.iterdir()) == sorted(
        [f"{n}.{ext}" for n in FIGURES for ext in ("png", "svg")] + ["statistics.csv", "statistics.md"])
    assert not list(report.parent.glob(".*.partial"))


def test_markdown_numbers_equal_the_statistics(result, report):
    text = (report / "statistics.md").read_text()
    expected = sweep_statistics(result, last=5)
    shown = parse_markdown_table(text)
    assert list(shown.columns) == list(expected.columns) and len(shown) == len(expected) == 18
    for column in ("strength", "n_runs", "n_diverged", "n_used", "mean", "sem", "u_vs_l2", "p_vs_l2",
                   "p_vs_shuffled", "p_vs_no_info", "u_vs_no_info", "p_vs_baseline"):
        numbers = pd.to_numeric(shown[column].replace("", np.nan))
        np.testing.assert_allclose(numbers, expected[column].astype(float), rtol=5e-4, equal_nan=True)
    assert (shown.brain_effect == expected.brain_effect.map({True: "yes", False: "no"}).fillna("")).all()
    assert "diverged and excluded: 1 (b2m 1, no_info 0, shuffled 0, l2 0)" in text
    assert "lambda = 0.0001" in text
    winners = expected[(expected.measure == "auc") & (expected.brain_effect == True)].strength  # noqa: E712
    assert winners.tolist() == [0.01]
    assert "no-information teacher and alpha 0 (AUC, p < 0.05): 0.01\n" in text
    no_info = expected[(expected.measure == "auc") & (expected.condition == "no_info")]
    assert no_info.p_vs_baseline.gt(0.05).all()  # the no-information teacher (0.70, 0.66) does not beat alpha 0 (0.70)
    assert f"alpha 0.01: p = {no_info.p_vs_baseline.iloc[0]:.3g}, alpha 0.1: p = {no_info.p_vs_baseline.iloc[1]:.3g}" in text
    pd.testing.assert_frame_equal(pd.read_csv(report / "statistics.csv"), expected, check_dtype=False)


def test_overwrite_rules_and_bad_input(result, report, tmp_path):
    with pytest.raises(SweepError, match="already exists"):
        write_report(result, report, progress=False)
    with pytest.raises(SweepError, match="no variable 'accuracy'"):
        write_report(result, tmp_path / "other", metric="accuracy", progress=False)
    with pytest.raises(SweepError, match="not a sweep store"):
        write_report(tmp_path, tmp_path / "other", progress=False)
    assert not (tmp_path / "other").exists()
    before = (report / "statistics.md").read_text()
    write_report(result, report, overwrite=True, progress=False)  # last=10 now: other final means
    assert (report / "statistics.md").read_text() != before


def test_a_report_without_l2_runs_does_not_mention_l2_and_creates_its_parents(result, tmp_path):
    report = write_report(result.sel(condition=["b2m", "no_info", "shuffled"]), tmp_path / "a" / "b" / "report",
                          progress=False)
    text = (report / "statistics.md").read_text()
    assert "L2" not in text.split("## Statistics")[0] and "Main test" in text


def test_runs_without_alignment_still_get_every_figure(result, tmp_path):
    report = write_report(result.drop_vars("alignment_cka"), tmp_path / "old", progress=False)
    assert all((report / f"{name}.{ext}").is_file() for name in FIGURES for ext in ("png", "svg"))
    assert "no alignment_cka" in (report / "alignment.svg").read_text()


def test_stars_and_markdown_cells():
    assert [significance_stars(p) for p in (0.0009, 0.001, 0.0099, 0.049, 0.05, np.nan)] == ["***", "**", "**", "*", "", ""]
    table = pd.DataFrame({"name": ["a", "b"], "n": [3, 4], "p": [0.012345, np.nan], "ok": [True, False]})
    assert markdown_table(table) == "| name | n | p | ok |\n|---|---|---|---|\n| a | 3 | 0.01235 | yes |\n| b | 4 |  | no |\n"

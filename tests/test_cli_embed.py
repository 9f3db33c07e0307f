import inspect
import json

import pytest

from b2m_neuro import Derivative
from b2m_neuro._util.files import sha256
from b2m_neuro.cli import main
from b2m_neuro.convert import write_dandiset
from b2m_neuro.simulate import memory_sessions


@pytest.fixture(scope="module")
def dandiset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "dandiset"
    files = write_dandiset(memory_sessions(2, seed=1, n_trials=30, progress=False), root, progress=False)
    return root, files


@pytest.fixture(scope="module")
def embedded(dandiset):
    """`b2m-neuro embed` run once (CEBRA, a few steps) on a folder of two NWB sessions."""
    root, _ = dandiset
    out = root.parent / "derivatives" / "b2m-cebra"
    code = main(["embed", str(root), "--spec", "paper", "--method", "cebra", "--out", str(out), "--dim", "3",
                 "--iterations", "10", "--batch-size", "64", "--learning-rate", "1e-3", "--device", "cpu",
                 "--threads", "1", "--quiet"])  # fmt: skip
    return code, out


def test_embed_writes_a_checked_derivative_and_quality_report(embedded, dandiset, capsys):
    code, out = embedded
    _, files = dandiset
    assert code == 0
    derivative = Derivative.open(out)
    assert (derivative.method, derivative.kind, derivative.latent_dim, len(derivative)) == ("cebra", "trials", 3, 2)
    assert derivative.load(derivative.session_keys[0])["embedding"].shape == (30, 200, 3)
    assert derivative.params["spec"] == "paper" and derivative.params["max_iterations"] == 10
    assert (derivative.params["batch_size"], derivative.params["learning_rate"]) == (64, 1e-3)
    sources = derivative.description["SourceDatasets"]
    assert [s["sha256"] for s in sources] == [sha256(path) for path in files]
    figure = out.with_name("b2m-cebra_quality.png")
    assert figure.read_bytes()[:4] == b"\x89PNG"


def test_embed_pca_with_zscore_prints_tested_quality_for_every_variable(dandiset, tmp_path, capsys):
    root, _ = dandiset
    out = tmp_path / "b2m-pca"
    assert main(["embed", str(root), "--method", "pca", "--dim", "3", "--zscore", "--permutations", "20",
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    assert Derivative.open(out).params["zscore"] is True
    printed = capsys.readouterr().out
    assert "Teacher quality (20 label permutations per p-value)" in printed
    for variable in ("stimulus", "current_target", "reaction_time", "goal"):
        assert f"    {variable} " in printed
    assert "goal by time point, sub-S01_ses-01: p < 0.05 at" in printed and "/200 time points" in printed
    assert out.with_name("b2m-pca_quality.png").read_bytes()[:4] == b"\x89PNG"


def test_validate_prints_summary_and_bids_result(embedded, capsys):
    _, out = embedded
    capsys.readouterr()
    assert main(["validate", str(out), "--bids"]) == 0
    printed = capsys.readouterr().out
    assert "method cebra, kind trials, latent dimension 3, 2 session(s), all SHA-256 verified" in printed
    assert "bids-validator-deno: no errors" in printed


def test_existing_output_is_refused_before_any_work(embedded, dandiset, capsys):
    root, _ = dandiset
    _, out = embedded
    before = json.loads((out / "dataset_description.json").read_text())
    assert main(["embed", str(root), "--out", str(out), "--method", "pca", "--dim", "3", "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert json.loads((out / "dataset_description.json").read_text()) == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dim", "500"], "output_dimension 500 exceeds the"),
        (["--spec", "no_such_preset"], "teacher spec file not found"),
    ],
)
def test_bad_options_exit_2_and_write_nothing(dandiset, tmp_path, capsys, extra, message):
    root, _ = dandiset
    out = tmp_path / "b2m-pca"
    assert main(["embed", str(root), "--out", str(out), "--method", "pca", "--dim", "3", "--quiet", *extra]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_missing_inputs_exit_2(tmp_path, capsys):
    assert main(["embed", str(tmp_path / "nothing.nwb"), "--out", str(tmp_path / "d")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["embed", str(tmp_path / "empty"), "--out", str(tmp_path / "d")]) == 2
    assert "holds no .nwb files" in capsys.readouterr().err


def test_validate_refuses_a_tampered_derivative(embedded, tmp_path, capsys):
    import shutil

    _, out = embedded
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    nc = next(copy.rglob("*_embedding.nc"))
    nc.write_bytes(nc.read_bytes()[:-10])
    assert main(["validate", str(copy)]) == 2
    err = capsys.readouterr().err
    assert str(nc) in err and "SHA-256 mismatch" in err and "re-create the derivative with b2m-neuro embed" in err


def test_embed_command_defaults_are_those_of_embed():
    from b2m_neuro import embed
    from b2m_neuro.cli import build_parser

    defaults = vars(build_parser().parse_args(["embed", "x", "--out", "y"]))
    signature = inspect.signature(embed).parameters
    for option, parameter in [("iterations", "max_iterations"), ("batch_size", "batch_size"),
                              ("learning_rate", "learning_rate"), ("dim", "output_dimension"), ("seed", "seed")]:
        assert defaults[option] == signature[parameter].default, option

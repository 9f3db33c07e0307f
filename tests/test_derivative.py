import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from b2m_neuro._util.files import sha256
from b2m_neuro.derivative import Derivative, bids_label, bids_validator_issues
from b2m_neuro.errors import DerivativeError


def trial_session(subject="P01", session="1", *, n_trials=12, n_time=5, latent=3, seed=0, source=None):
    rng = np.random.default_rng(seed)
    attrs = {"subject": subject, "session": session, "task": "memory", "spec": json.dumps({"bin_ms": 10})}
    if source is not None:
        attrs.update(source_file=str(source), source_sha256=sha256(source))
    return xr.Dataset(
        {
            "embedding": (("trial", "time", "latent"), rng.normal(size=(n_trials, n_time, latent)).astype("float32")),
            "stimulus": ("trial", rng.integers(0, 3, n_trials)),
            "correct": ("trial", rng.random(n_trials) > 0.5),
            "reaction_time": ("trial", rng.uniform(0.3, 1.5, n_trials)),
        },
        coords={"time": ("time", np.linspace(-1, 1, n_time), {"time_kind": "seconds"})},
        attrs=attrs,
    )


def frame_session(subject="01", *, n_frames=20, latent=4):
    rng = np.random.default_rng(1)
    return xr.Dataset(
        {
            "embedding": (("frame", "latent"), rng.normal(size=(n_frames, latent)).astype("float32")),
            "stim_file": ("frame", [f"scene_{i:03d}.png" for i in range(n_frames)]),
            "onset": ("frame", np.arange(n_frames) * 0.5),
        },
        attrs={"subject": subject, "session": "", "task": "driving"},
    )


@pytest.fixture()
def source(tmp_path):
    path = tmp_path / "sub-P01_ses-1_ecephys.nwb"
    path.write_bytes(b"not really an NWB file, but it has a hash")
    return path


@pytest.fixture()
def written(tmp_path, source):
    sessions = [trial_session("P01", "1", source=source), trial_session("sub-P_02", "", seed=1)]
    return Derivative.create(
        tmp_path / "derivatives" / "b2m-cebra",
        sessions,
        method="cebra",
        params={"output_dimension": 3, "model_architecture": "offset10-model", "max_iterations": 20},
        source_datasets=[source],
        progress=False,
    )


def test_create_and_open_round_trip(written, source):
    reopened = Derivative.open(written.root)
    assert len(reopened) == 2
    assert reopened.session_keys == ["sub-P01_ses-1_task-memory", "sub-P02_task-memory"]
    assert (reopened.kind, reopened.latent_dim, reopened.method) == ("trials", 3, "cebra")
    assert reopened.params["model_architecture"] == "offset10-model"
    original = trial_session("P01", "1", source=source)
    loaded = reopened.load("sub-P01_ses-1_task-memory")
    np.testing.assert_array_equal(loaded["embedding"].values, original["embedding"].values)
    np.testing.assert_array_equal(loaded["stimulus"].values, original["stimulus"].values)
    assert loaded["correct"].dtype == bool and loaded["embedding"].dtype == np.float32
    assert loaded["time"].attrs["time_kind"] == "seconds"
    assert [ds.attrs["subject"] for ds in reopened.datasets()] == ["P01", "P02"]


def test_files_follow_bids_derivative_layout(written, source):
    root = written.root
    nc = root / "sub-P01/ses-1/sub-P01_ses-1_task-memory_desc-cebra_embedding.nc"
    assert nc.is_file() and (root / "sub-P02/sub-P02_task-memory_desc-cebra_embedding.nc").is_file()
    description = json.loads((root / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    generated = {entry["Name"]: entry for entry in description["GeneratedBy"]}
    assert set(generated) == {"b2m_neuro", "cebra"}
    assert "max_iterations=20" in generated["b2m_neuro"]["Description"]
    assert description["SourceDatasets"] == [{"URL": source.resolve().as_uri(), "sha256": sha256(source)}]
    assert (root / "descriptions.tsv").read_text().splitlines()[1].startswith("desc-cebra\t")
    sidecar = json.loads(nc.with_suffix(".json").read_text())
    assert sidecar["EmbeddingSHA256"] == sha256(nc)
    assert sidecar["Sources"] == [source.resolve().as_uri()] and sidecar["SourcesSHA256"] == [sha256(source)]
    assert sidecar["Dimensions"] == {"trial": 12, "time": 5, "latent": 3} and sidecar["LatentDimension"] == 3
    assert not list(root.parent.glob(".*partial"))


def test_netcdf_is_self_describing_without_b2m_neuro(written):
    code = (
        "import sys, xarray as xr; ds = xr.open_dataset(sys.argv[1]);"
        "print(ds['embedding'].dims, ds.attrs['method'], ds.attrs['Conventions']);"
        "print(all({'long_name', 'units', 'description'} <= set(ds[v].attrs) for v in ds.variables))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(written.path(written.session_keys[0]))],
                         capture_output=True, text=True, check=True).stdout.splitlines()  # fmt: skip
    assert out == ["('trial', 'time', 'latent') cebra CF-1.10", "True"]


def test_frames_kind_with_string_variables(tmp_path):
    d = Derivative.create(tmp_path / "eeg", [frame_session("01"), frame_session("02")], method="pca",
                          params={"output_dimension": 4}, progress=False,
                          source_datasets=[{"URL": "https://openneuro.org/ds0", "Version": "1.0.0"}])  # fmt: skip
    assert (d.kind, d.latent_dim, d.session_keys) == ("frames", 4, ["sub-01_task-driving", "sub-02_task-driving"])
    loaded = d.load("sub-02_task-driving")
    assert list(loaded["stim_file"].values[:2]) == ["scene_000.png", "scene_001.png"]
    assert [g["Name"] for g in d.description["GeneratedBy"]] == ["b2m_neuro"]


def test_bids_validator_reports_no_errors(written):
    issues = bids_validator_issues(written.root)
    errors = [issue for issue in issues if issue["severity"] == "error"]
    assert errors == []
    # the only warning: we cannot know the authors of a user's derivative
    assert {issue["code"] for issue in issues} <= {"TOO_FEW_AUTHORS"}
    (written.root / ".bidsignore").unlink()  # without it, the NetCDF files are not BIDS
    codes = {issue["code"] for issue in bids_validator_issues(written.root) if issue["severity"] == "error"}
    assert codes == {"NOT_INCLUDED"}


def flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "target", "message"),
    [
        (flip_last_byte, "nc", "SHA-256 mismatch"),
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "nc", "SHA-256 mismatch"),
        (Path.unlink, "nc", "missing"),
        (lambda p: p.write_text(p.read_text().replace('"Kind": "trials"', '"Kind": "frames"')), "sidecar", "SHA-256"),
    ],
)
def test_open_refuses_tampered_truncated_or_missing_files(written, damage, target, message):
    path = written.path(written.session_keys[0])
    path = path if target == "nc" else path.with_suffix(".json")
    damage(path)
    with pytest.raises(DerivativeError, match=message) as info:
        Derivative.open(written.root)
    assert info.value.file == str(path) and "b2m-neuro embed" in info.value.fix


def test_open_refuses_bad_description(written):
    description_path = written.root / "dataset_description.json"
    description = json.loads(description_path.read_text())
    description_path.write_text(json.dumps({**description, "DatasetType": "raw"}))
    with pytest.raises(DerivativeError, match="DatasetType") as info:
        Derivative.open(written.root)
    assert info.value.field == "DatasetType"
    del description["B2MNeuro"]["Files"]
    description_path.write_text(json.dumps(description))
    with pytest.raises(DerivativeError, match="Files"):
        Derivative.open(written.root)
    description_path.write_text("{ not json")
    with pytest.raises(DerivativeError, match="not valid JSON"):
        Derivative.open(written.root)
    description_path.unlink()
    with pytest.raises(DerivativeError, match="dataset_description.json is missing"):
        Derivative.open(written.root)


@pytest.mark.parametrize(
    ("damage", "field", "message"),
    [(lambda d: d.pop("Name"), "Name", "'Name' is missing or not a str"),
     (lambda d: d.update(BIDSVersion=1.9), "BIDSVersion", "'BIDSVersion' is missing"),
     (lambda d: d.update(GeneratedBy="b2m_neuro"), "GeneratedBy", "not a list"),
     (lambda d: d.update(SourceDatasets={"URL": "x"}), "SourceDatasets", "not a list"),
     (lambda d: d["B2MNeuro"]["Sessions"].__setitem__(1, 5), "B2MNeuro.Sessions[1]", "is not a JSON object"),
     (lambda d: d["B2MNeuro"]["Sessions"][0].update(Shape="12 x 5"), "B2MNeuro.Sessions[0]", "Shape that is not")],
)
def test_open_refuses_malformed_description_fields(written, damage, field, message):
    description_path = written.root / "dataset_description.json"
    description = json.loads(description_path.read_text())
    damage(description)
    description_path.write_text(json.dumps(description))
    with pytest.raises(DerivativeError, match=message) as info:
        Derivative.open(written.root)
    assert info.value.field == field and info.value.file == str(description_path) and "b2m-neuro embed" in info.value.fix


def test_open_refuses_stray_embedding_and_missing_folder(written, tmp_path):
    stray = written.root / "sub-P02" / "sub-P02_task-other_desc-cebra_embedding.nc"
    stray.write_bytes(written.path(written.session_keys[1]).read_bytes())
    with pytest.raises(DerivativeError, match="not listed in the manifest"):
        Derivative.open(written.root)
    with pytest.raises(DerivativeError, match="does not exist"):
        Derivative.open(tmp_path / "nowhere")
    with pytest.raises(DerivativeError, match="no session 'sub-X'"):
        written.load("sub-X")


def test_overwrite_rules(written, tmp_path):
    sessions = [trial_session("P09", latent=2)]
    kwargs = dict(method="pca", params={}, source_datasets=[], progress=False)
    with pytest.raises(DerivativeError, match="already exists"):
        Derivative.create(written.root, sessions, **kwargs)
    replaced = Derivative.create(written.root, sessions, overwrite=True, **kwargs)
    assert (replaced.session_keys, replaced.latent_dim) == (["sub-P09_ses-1_task-memory"], 2)
    assert not (written.root / "sub-P01").exists()
    not_ours = tmp_path / "my_data"
    not_ours.mkdir()
    (not_ours / "precious.txt").write_text("keep me")
    with pytest.raises(DerivativeError, match="not a b2m_neuro derivative"):
        Derivative.create(not_ours, sessions, overwrite=True, **kwargs)
    assert (not_ours / "precious.txt").read_text() == "keep me"


def test_labels_are_sanitized_or_refused():
    assert bids_label("sub-P07_a", field="subject") == "P07a"
    assert bids_label("", field="session", allow_empty=True) == ""
    with pytest.raises(DerivativeError, match="no letters or digits") as info:
        bids_label("__", field="subject")
    assert info.value.field == "attrs['subject']"


@pytest.mark.parametrize(
    ("sessions", "message"),
    [
        ([], "no sessions"),
        ([trial_session("P01"), trial_session("P-01")], "both map to sub-P01_ses-1_task-memory"),
        ([trial_session("P01", latent=3), trial_session("P02", latent=2)], "latent size 2"),
        ([trial_session("P01").transpose("time", "trial", "latent")], "expected"),
        ([trial_session("P01").drop_vars("embedding")], "no 'embedding'"),
        ([trial_session("!!")], "no letters or digits"),
        ([trial_session("P01").assign_attrs(task="")], "no 'task' attribute"),
        ([trial_session("P01").assign(bad=("trial", [{"a": 1}] * 12))], "cannot be written as NetCDF"),
    ],
)
def test_bad_sessions_leave_nothing_written(tmp_path, sessions, message):
    root = tmp_path / "b2m-pca"
    with pytest.raises(DerivativeError, match=message):
        Derivative.create(root, sessions, method="pca", params={}, source_datasets=[], progress=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_sources_and_params(tmp_path):
    kwargs = dict(method="pca", progress=False)
    with pytest.raises(DerivativeError, match="source file does not exist"):
        Derivative.create(tmp_path / "d", [trial_session()], params={}, source_datasets=[tmp_path / "x.nwb"], **kwargs)
    with pytest.raises(DerivativeError, match="neither 'URL' nor 'DOI'"):
        Derivative.create(tmp_path / "d", [trial_session()], params={}, source_datasets=[{"Version": "1"}], **kwargs)
    with pytest.raises(DerivativeError, match="cannot be stored in JSON") as info:
        Derivative.create(tmp_path / "d", [trial_session()], params={"f": object()}, source_datasets=[], **kwargs)
    assert info.value.field == "params.f"

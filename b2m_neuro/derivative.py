"""Write, open and check the b2m_neuro derivative: a BIDS-derivatives folder of brain embeddings.

The derivative is the seam between embedding and training. On disk::

    <root>/
      dataset_description.json   DatasetType "derivative", GeneratedBy, SourceDatasets, and a
                                 "B2MNeuro" manifest (method, parameters, sessions, file hashes)
      descriptions.tsv (+ .json) meaning of the desc-<label> entity
      README.md, .bidsignore
      sub-<s>/[ses-<x>/]sub-<s>[_ses-<x>]_task-<t>_desc-<d>_embedding.nc   (+ .json sidecar)

Each ``.nc`` file holds ``embedding`` (``trial, time, latent`` or ``frame, latent``) and the task
variables, documented by CF-like attributes, and opens with plain ``xarray.open_dataset``.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from b2m_neuro._util.files import atomic_path, read_json_object, sha256
from b2m_neuro._util.progress import track
from b2m_neuro._version import __version__
from b2m_neuro.bids_templates import read_template
from b2m_neuro.errors import DerivativeError

__all__ = ["Derivative", "KIND_DIMS", "bids_label", "bids_validator_issues", "check_derivative_target"]

# dims of the ``embedding`` variable for each kind of derivative
KIND_DIMS = {"trials": ("trial", "time", "latent"), "frames": ("frame", "latent")}
MANIFEST_KEY = "B2MNeuro"
FORMAT_VERSION = 1
RECREATE = "re-create the derivative with b2m-neuro embed (or Derivative.create)"
BIDSIGNORE = "*_embedding.nc\n*_embedding.json\n"
_LABEL_PREFIXES = {"subject": "sub-", "session": "ses-", "task": "task-", "desc": "desc-"}


def _json_template(name: str) -> dict[str, Any]:
    return json.loads(read_template(name))


def bids_label(value: Any, *, field: str, allow_empty: bool = False) -> str:
    """Return ``value`` as a BIDS label: only letters and digits, without a ``sub-``-style prefix.

    Examples
    --------
    >>> bids_label("sub-P07_a", field="subject")
    'P07a'
    """
    text = str(value).strip()
    prefix = _LABEL_PREFIXES.get(field, "")
    if prefix and text.lower().startswith(prefix):
        text = text[len(prefix):]
    label = re.sub(r"[^A-Za-z0-9]", "", text)
    if not label and not (allow_empty and not text):
        raise DerivativeError(
            f"the {field} label {value!r} has no letters or digits, so it cannot be a BIDS label",
            field=f"attrs['{field}']",
            fix=f"set the dataset's '{field}' attribute to a label made of letters and digits",
        )
    return label


def _json_ready(value: Any, *, field: str) -> Any:
    """Convert numpy scalars/arrays, tuples and paths to plain JSON values; refuse the rest."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v, field=f"{field}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_ready(v, field=f"{field}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return str(value)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise DerivativeError(
        f"the value {value!r} of type {type(value).__name__} cannot be stored in JSON",
        field=field,
        fix="pass plain numbers, strings, lists or dicts",
    )


def _netcdf_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes NetCDF can store: strings and numbers; dicts become JSON, bools ints, None dropped."""
    clean = {}
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, (bool, np.bool_)):
            value = int(value)
        elif isinstance(value, (Mapping, list, tuple)) and not _is_number_list(value):
            value = json.dumps(_json_ready(value, field=f"attrs['{key}']"))
        elif isinstance(value, os.PathLike):
            value = str(value)
        clean[str(key)] = value
    return clean


def _is_number_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in value
    )


def _source_entry(source: Any, index: int) -> dict[str, Any]:
    """One ``SourceDatasets`` item: a fetched file (its archive URL, version and sha256), a local file
    (URL + sha256; the archive's record if a fetch put it there), or a dict with a URL or DOI."""
    from b2m_neuro.sources import SourceFile, provenance

    if isinstance(source, SourceFile):
        return source.record()
    if isinstance(source, Mapping):
        entry = _json_ready(dict(source), field=f"source_datasets[{index}]")
        if not ("URL" in entry or "DOI" in entry):
            raise DerivativeError(
                "a source dataset has neither 'URL' nor 'DOI'",
                field=f"source_datasets[{index}]",
                fix="give each source as a local file path or a dict with 'URL' (or 'DOI') and 'Version'",
            )
        return entry
    path = Path(source)
    if not path.is_file():
        raise DerivativeError(
            "the source file does not exist",
            file=path,
            field=f"source_datasets[{index}]",
            fix="pass the NWB/BIDS files the embeddings were computed from",
        )
    return provenance(path) or {"URL": path.resolve().as_uri(), "sha256": sha256(path)}


class _Session:
    """A session prepared for writing: labels, relative file names, the dataset to store."""

    def __init__(self, dataset: xr.Dataset, index: int, desc: str) -> None:
        self.index = index
        for name in ("subject", "task"):
            if not str(dataset.attrs.get(name, "")).strip():
                raise DerivativeError(
                    f"session {index} has no '{name}' attribute",
                    field=f"sessions[{index}].attrs['{name}']",
                    fix=f"set dataset.attrs['{name}'] (b2m_neuro.embed does this from the recording)",
                )
        self.subject = bids_label(dataset.attrs["subject"], field="subject")
        self.session = bids_label(dataset.attrs.get("session", ""), field="session", allow_empty=True)
        self.task = bids_label(dataset.attrs["task"], field="task")
        entities = f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")
        folder = f"sub-{self.subject}" + (f"/ses-{self.session}" if self.session else "")
        self.key = f"{entities}_task-{self.task}"
        self.file = f"{folder}/{self.key}_desc-{desc}_embedding.nc"
        self.sidecar = self.file[: -len(".nc")] + ".json"
        self.kind = _kind_of(dataset.get("embedding"), where=f"sessions[{index}]")
        self.latent_dim = int(dataset.sizes["latent"])
        self.dataset = dataset

    def sources(self) -> list[dict[str, str]]:
        source_file = self.dataset.attrs.get("source_file")
        if not source_file:
            return []
        entry = {"URL": Path(source_file).resolve().as_uri() if "://" not in str(source_file) else str(source_file)}
        if self.dataset.attrs.get("source_sha256"):
            entry["sha256"] = str(self.dataset.attrs["source_sha256"])
        return [entry]


def _kind_of(embedding: xr.DataArray | None, *, where: str, file: Path | None = None) -> str:
    if embedding is None:
        raise DerivativeError(
            "there is no 'embedding' variable",
            file=file,
            field=f"{where}['embedding']",
            fix=RECREATE if file else "pass the datasets returned by b2m_neuro.embed",
        )
    for kind, dims in KIND_DIMS.items():
        if embedding.dims == dims:
            return kind
    raise DerivativeError(
        f"'embedding' has dims {embedding.dims}; expected {KIND_DIMS['trials']} or {KIND_DIMS['frames']}",
        file=file,
        field=f"{where}['embedding'].dims",
        fix=RECREATE if file else "transpose or rename the dimensions of the embedding",
    )


def _netcdf_dataset(session: _Session, *, method: str, desc: str, history: str) -> xr.Dataset:
    """The dataset as written: float32 embedding, index coords, CF-like attrs on every variable."""
    ds = session.dataset.copy()
    ds["embedding"] = ds["embedding"].astype(np.float32)
    for dim in ds["embedding"].dims:
        if dim not in ds.coords:
            ds = ds.assign_coords({dim: np.arange(ds.sizes[dim])})
    variable_docs = _json_template("derivative_variables.json")
    for name in list(ds.variables):
        doc = variable_docs.get(str(name), {"long_name": str(name).replace("_", " "), "units": "1"})
        attrs = {**doc, **ds[name].attrs}
        attrs.setdefault("description", doc.get("description", f"task variable '{name}' from the source recording"))
        ds[name].attrs = _netcdf_attrs(attrs)
    ds.attrs = _netcdf_attrs(
        {
            **ds.attrs,
            "Conventions": "CF-1.10",
            "title": f"b2m_neuro {method} brain embedding, {session.key}",
            "source": ds.attrs.get("source_file", "unknown"),
            "history": history,
            "references": "CEBRA: Schneider, Lee & Mathis (2023), Nature 617, 360-368"
            if method == "cebra"
            else "b2m_neuro (Brain2Model learning)",
            "comment": "Open with xarray.open_dataset(path). 'embedding' holds one latent vector per "
            + ("time bin of each trial." if session.kind == "trials" else "stimulus frame."),
            "subject": session.subject,
            "session": session.session,
            "task": session.task,
            "desc": desc,
            "method": method,
            "kind": session.kind,
            "latent_dim": session.latent_dim,
            "b2m_neuro_version": __version__,
        }
    )
    return ds


class Derivative:
    """A b2m_neuro derivative dataset: per-session brain embeddings in a BIDS-derivatives folder.

    Create one with :meth:`create` (or ``b2m-neuro embed``), read one with :meth:`open`.

    Examples
    --------
    >>> d = Derivative.open("derivatives/b2m-cebra")  # doctest: +SKIP
    >>> d.kind, d.latent_dim, d.session_keys  # doctest: +SKIP
    ('trials', 7, ['sub-01_ses-1_task-memory', 'sub-02_ses-1_task-memory'])
    >>> ds = d.load(d.session_keys[0])  # doctest: +SKIP
    """

    def __init__(self, root: Path, description: dict[str, Any]) -> None:
        self.root = root
        self.description = description
        manifest = description[MANIFEST_KEY]
        self._sessions = {entry["key"]: entry for entry in manifest["Sessions"]}

    # ------------------------------------------------------------------ reading
    @classmethod
    def open(cls, root: str | os.PathLike) -> Derivative:
        """Open a derivative folder, checking its schema and the SHA-256 of every file.

        Raises
        ------
        DerivativeError
            When a required file or key is missing, a file was changed or truncated, or an
            embedding file does not hold the expected variables.
        """
        root = Path(root)
        if not root.is_dir():
            raise DerivativeError(
                "the derivative folder does not exist",
                file=root,
                field="root",
                fix="check the path, or " + RECREATE,
            )
        description = _read_description(root)
        _check_files(root, description[MANIFEST_KEY])
        derivative = cls(root, description)
        derivative._check_embeddings()
        return derivative

    def __len__(self) -> int:
        return len(self._sessions)

    def __repr__(self) -> str:
        return (
            f"Derivative({str(self.root)!r}, method={self.method!r}, kind={self.kind!r}, "
            f"latent_dim={self.latent_dim}, sessions={len(self)})"
        )

    @property
    def session_keys(self) -> list[str]:
        """Session keys such as ``'sub-01_ses-1_task-memory'``, in the order they were written."""
        return list(self._sessions)

    @property
    def manifest(self) -> dict[str, Any]:
        """The b2m_neuro part of ``dataset_description.json``."""
        return self.description[MANIFEST_KEY]

    @property
    def method(self) -> str:
        return self.manifest["Method"]

    @property
    def params(self) -> dict[str, Any]:
        """Every parameter of the embedding method."""
        return self.manifest["Parameters"]

    @property
    def kind(self) -> str:
        """``"trials"`` (embedding dims trial, time, latent) or ``"frames"`` (frame, latent)."""
        return self.manifest["Kind"]

    @property
    def latent_dim(self) -> int:
        return int(self.manifest["LatentDimension"])

    def path(self, key: str) -> Path:
        """Path of the ``.nc`` file of session ``key``."""
        return self.root / self._entry(key)["File"]

    def load(self, key: str) -> xr.Dataset:
        """Load the embedding and task variables of session ``key`` into memory."""
        with xr.open_dataset(self.path(key), engine="h5netcdf") as ds:
            return ds.load()

    def datasets(self) -> list[xr.Dataset]:
        """Every session, loaded, in :attr:`session_keys` order."""
        return [self.load(key) for key in self.session_keys]

    def summary(self) -> str:
        """A few lines describing the derivative, for the command line."""
        lines = [
            f"{self.root}: b2m_neuro derivative, method {self.method}, kind {self.kind}, "
            f"latent dimension {self.latent_dim}, {len(self)} session(s), all SHA-256 verified",
        ]
        for key in self.session_keys:
            entry = self._entry(key)
            shape = " x ".join(f"{dim} {size}" for dim, size in entry["Shape"].items())
            lines.append(f"  {key}: {shape}")
        return "\n".join(lines)

    def _entry(self, key: str) -> dict[str, Any]:
        if key not in self._sessions:
            raise DerivativeError(
                f"there is no session {key!r}",
                file=self.root,
                field="key",
                fix=f"use one of {self.session_keys}",
            )
        return self._sessions[key]

    def _check_embeddings(self) -> None:
        for key in self.session_keys:
            path = self.path(key)
            try:
                with xr.open_dataset(path, engine="h5netcdf") as ds:
                    kind = _kind_of(ds.get("embedding"), where=key, file=path)
                    latent = ds.sizes["latent"]
                    dtype = ds["embedding"].dtype
            except DerivativeError:
                raise
            except Exception as error:  # an unreadable file whose hash still matches the manifest
                raise DerivativeError(
                    f"the embedding file cannot be read ({error})", file=path, field="File", fix=RECREATE
                ) from error
            expected = (self.kind, self.latent_dim, np.dtype(np.float32))
            if (kind, latent, dtype) != expected:
                raise DerivativeError(
                    f"'embedding' is {kind} with latent size {latent} and dtype {dtype}; the manifest "
                    f"says {self.kind} with latent size {self.latent_dim} and float32",
                    file=path,
                    field="embedding",
                    fix=RECREATE,
                )

    # ------------------------------------------------------------------ writing
    @classmethod
    def create(
        cls,
        root: str | os.PathLike,
        sessions: Sequence[xr.Dataset],
        *,
        method: str,
        params: Mapping[str, Any],
        source_datasets: Sequence[str | os.PathLike | Mapping[str, Any]],
        desc: str | None = None,
        overwrite: bool = False,
        progress: bool = True,
    ) -> Derivative:
        """Write sessions of embeddings as a BIDS-derivatives dataset, atomically, and open it.

        Parameters
        ----------
        root
            The derivative folder to write, e.g. ``derivatives/b2m-cebra``. Missing parent folders
            are created.
        sessions
            One ``xarray.Dataset`` per session, as returned by :func:`b2m_neuro.embed`: float
            ``embedding`` with dims ``(trial, time, latent)`` or ``(frame, latent)``, task variables
            along ``trial``/``frame``, attrs ``subject``, ``session`` (may be empty) and ``task``;
            optional attrs ``source_file`` and ``source_sha256`` become the sidecar's ``Sources``.
        method
            Name of the embedding method (``"cebra"``, ``"pca"``, ``"identity"``).
        params
            Every parameter of the method; stored in ``GeneratedBy`` and in the manifest.
        source_datasets
            Where the recordings came from: local file paths (stored as file URL + SHA-256) or
            dicts with ``URL`` (or ``DOI``) and ``Version`` (DANDI / OpenNeuro).
        desc
            The ``desc-<label>`` entity of the file names; defaults to ``method``.
        overwrite
            Replace an existing b2m_neuro derivative (or empty folder) at ``root``; any other
            existing folder is refused.
        progress
            Show a progress bar while writing.

        Returns
        -------
        Derivative
            The written derivative, opened (and so checked) from disk.

        Raises
        ------
        DerivativeError
            No sessions; a session without ``embedding`` of the expected dims, or without
            ``subject``/``task``; labels without letters or digits, or two sessions with the same
            labels; sessions of different kinds or latent sizes; missing source files; parameters
            that are not JSON; an existing ``root`` without ``overwrite``. Nothing is written then.

        Examples
        --------
        >>> embedded = b2m_neuro.embed(rates, method="pca", output_dimension=7)  # doctest: +SKIP
        >>> d = Derivative.create("derivatives/b2m-pca", embedded, method="pca",
        ...                       params=embedded[0].attrs["embedding_params"],
        ...                       source_datasets=["sub-01/sub-01_ses-1_ecephys.nwb"])  # doctest: +SKIP
        """
        root = Path(root)
        desc = bids_label(desc if desc is not None else method, field="desc")
        prepared = _prepare_sessions(sessions, desc)
        params = _json_ready(dict(params), field="params")
        sources = [_source_entry(source, i) for i, source in enumerate(source_datasets)]
        check_derivative_target(root, overwrite=overwrite)
        root.parent.mkdir(parents=True, exist_ok=True)
        history = f"created by b2m_neuro {__version__} ({method})"
        with atomic_path(root) as tmp:
            tmp.mkdir()
            for session in track(prepared, description="Writing embeddings", total=len(prepared), progress=progress):
                _write_session(tmp, session, method=method, desc=desc, history=history)
            _write_dataset_files(tmp, prepared, method=method, params=params, sources=sources, desc=desc)
        return cls.open(root)


def _prepare_sessions(sessions: Sequence[xr.Dataset], desc: str) -> list[_Session]:
    if len(sessions) == 0:
        raise DerivativeError(
            "no sessions to write", field="sessions", fix="pass at least one dataset from b2m_neuro.embed"
        )
    prepared = []
    for index, dataset in enumerate(sessions):
        if not isinstance(dataset, xr.Dataset):
            raise DerivativeError(
                f"session {index} is a {type(dataset).__name__}, not an xarray.Dataset",
                field=f"sessions[{index}]",
                fix="pass the datasets returned by b2m_neuro.embed",
            )
        prepared.append(_Session(dataset, index, desc))
    first = prepared[0]
    seen: dict[str, int] = {}
    for session in prepared:
        if session.key in seen:
            raise DerivativeError(
                f"sessions {seen[session.key]} and {session.index} both map to {session.key}",
                field=f"sessions[{session.index}].attrs",
                fix="give each session a distinct subject/session label (labels keep only letters and digits)",
            )
        seen[session.key] = session.index
        if (session.kind, session.latent_dim) != (first.kind, first.latent_dim):
            raise DerivativeError(
                f"session {session.index} is {session.kind} with latent size {session.latent_dim}, but "
                f"session 0 is {first.kind} with latent size {first.latent_dim}",
                field=f"sessions[{session.index}]['embedding']",
                fix="embed all sessions with the same method and output dimension, or write one derivative each",
            )
    return prepared


def check_derivative_target(root: str | os.PathLike, *, overwrite: bool) -> None:
    """Raise DerivativeError unless ``root`` is new, or ``overwrite`` is set and it is a b2m_neuro derivative.

    Called by :meth:`Derivative.create`; call it before long work whose result goes to ``root``.
    """
    root = Path(root)
    if not root.exists():
        return
    if not overwrite:
        raise DerivativeError(
            "the derivative folder already exists",
            file=root,
            field="overwrite",
            fix="pass overwrite=True (--overwrite on the command line) or choose another folder",
        )
    is_ours = (root / "dataset_description.json").is_file() and MANIFEST_KEY in (
        root / "dataset_description.json"
    ).read_text(encoding="utf-8", errors="replace")
    if not root.is_dir() or not (is_ours or not any(root.iterdir())):
        raise DerivativeError(
            "refusing to overwrite a path that is not a b2m_neuro derivative",
            file=root,
            field="overwrite",
            fix="choose another output folder; only b2m_neuro derivatives (or empty folders) are replaced",
        )


def _write_session(tmp: Path, session: _Session, *, method: str, desc: str, history: str) -> None:
    path = tmp / session.file
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset = _netcdf_dataset(session, method=method, desc=desc, history=history)
    try:
        dataset.to_netcdf(path, engine="h5netcdf")
    except (TypeError, ValueError) as error:
        raise DerivativeError(
            f"session {session.index} cannot be written as NetCDF ({error})",
            field=f"sessions[{session.index}]",
            fix="keep task variables numeric, boolean or string, with no missing objects",
        ) from error
    sidecar = {
        **_json_template("derivative_embedding_sidecar.json"),
        "Sources": [entry["URL"] for entry in session.sources()],
        "SourcesSHA256": [entry.get("sha256", "") for entry in session.sources()],
        "Method": method,
        "Kind": session.kind,
        "LatentDimension": session.latent_dim,
        "Dimensions": {str(dim): int(size) for dim, size in dataset["embedding"].sizes.items()},
        "TaskVariables": [str(name) for name in dataset.data_vars if name != "embedding"],
        "EmbeddingSHA256": sha256(path),
    }
    (tmp / session.sidecar).write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")


def _write_dataset_files(
    tmp: Path,
    sessions: list[_Session],
    *,
    method: str,
    params: dict[str, Any],
    sources: list[dict[str, Any]],
    desc: str,
) -> None:
    first = sessions[0]
    kind, latent_dim = first.kind, first.latent_dim
    method_text = f"{method} embedding, output dimension {latent_dim}"
    (tmp / "descriptions.tsv").write_text(f"desc_id\tdescription\ndesc-{desc}\t{method_text}\n", encoding="utf-8")
    (tmp / "descriptions.json").write_text(read_template("derivative_descriptions.json"), encoding="utf-8")
    (tmp / ".bidsignore").write_text(BIDSIGNORE, encoding="utf-8")
    (tmp / "README.md").write_text(_readme(sessions, method=method, params=params), encoding="utf-8")

    description = _json_template("derivative_dataset_description.json")
    description["Name"] = f"{description['Name']} ({method}, desc-{desc})"
    parameter_text = "; ".join(f"{name}={json.dumps(value)}" for name, value in sorted(params.items()))
    description["GeneratedBy"] = [
        {
            "Name": "b2m_neuro",
            "Version": __version__,
            "Description": f"{method_text} (kind {kind}). Parameters: {parameter_text}",
        }
    ]
    if method == "cebra":
        description["GeneratedBy"].append({"Name": "cebra", "Version": _package_version("cebra")})
    description["SourceDatasets"] = sources
    files = sorted(
        path.relative_to(tmp).as_posix()
        for path in tmp.rglob("*")
        if path.is_file() and path.name != "dataset_description.json"
    )
    description[MANIFEST_KEY] = {
        "FormatVersion": FORMAT_VERSION,
        "Method": method,
        "Parameters": params,
        "Kind": kind,
        "LatentDimension": latent_dim,
        "Sessions": [
            {
                "key": s.key,
                "subject": s.subject,
                "session": s.session,
                "task": s.task,
                "File": s.file,
                "Sidecar": s.sidecar,
                "Shape": {str(dim): int(size) for dim, size in s.dataset["embedding"].sizes.items()},
            }
            for s in sessions
        ],
        "Files": {name: sha256(tmp / name) for name in files},
    }
    (tmp / "dataset_description.json").write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")


def _readme(sessions: list[_Session], *, method: str, params: dict[str, Any]) -> str:
    first = sessions[0]
    session_lines = "\n".join(
        f"- `{s.key}`: " + ", ".join(f"{dim} {size}" for dim, size in s.dataset["embedding"].sizes.items())
        for s in sessions
    )
    parameter_lines = "\n".join(f"- `{name}`: `{json.dumps(value)}`" for name, value in sorted(params.items()))
    return string.Template(read_template("derivative_README.md")).substitute(
        name=f"b2m_neuro {method} brain embeddings",
        version=__version__,
        method=method,
        latent_dim=first.latent_dim,
        n_sessions=len(sessions),
        dims="`(" + ", ".join(KIND_DIMS[first.kind]) + ")`",
        row="trial" if first.kind == "trials" else "frame",
        sessions=session_lines,
        example=first.file,
        parameters=parameter_lines or "(none)",
    )


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def _read_description(root: Path) -> dict[str, Any]:
    path = root / "dataset_description.json"
    if not path.is_file():
        raise DerivativeError(
            "dataset_description.json is missing, so this is not a BIDS derivative",
            file=path,
            field="file",
            fix=RECREATE,
        )
    description = read_json_object(path, error=DerivativeError, fix=RECREATE)
    for key, kind in {"Name": str, "BIDSVersion": str, "GeneratedBy": list, "SourceDatasets": list}.items():
        if not isinstance(description.get(key), kind):
            raise DerivativeError(
                f"the field '{key}' is missing or not a {kind.__name__}", file=path, field=key, fix=RECREATE
            )
    if description.get("DatasetType") != "derivative":
        raise DerivativeError(
            f"DatasetType is {description.get('DatasetType')!r}, not 'derivative'",
            file=path,
            field="DatasetType",
            fix=RECREATE,
        )
    manifest = description.get(MANIFEST_KEY)
    if not isinstance(manifest, dict):
        raise DerivativeError(
            f"there is no '{MANIFEST_KEY}' manifest, so b2m_neuro did not write this derivative",
            file=path,
            field=MANIFEST_KEY,
            fix=RECREATE,
        )
    required = {"FormatVersion": int, "Method": str, "Parameters": dict, "Kind": str, "LatentDimension": int,
                "Sessions": list, "Files": dict}  # fmt: skip
    for key, kind in required.items():
        if not isinstance(manifest.get(key), kind):
            raise DerivativeError(
                f"the manifest lacks '{key}' (a {kind.__name__})",
                file=path,
                field=f"{MANIFEST_KEY}.{key}",
                fix=RECREATE,
            )
    if manifest["Kind"] not in KIND_DIMS:
        raise DerivativeError(
            f"unknown kind {manifest['Kind']!r}", file=path, field=f"{MANIFEST_KEY}.Kind", fix=RECREATE
        )
    for index, entry in enumerate(manifest["Sessions"]):
        problem = _session_entry_problem(entry, manifest["Files"])
        if problem:
            raise DerivativeError(
                f"session entry {index} {problem}", file=path, field=f"{MANIFEST_KEY}.Sessions[{index}]", fix=RECREATE
            )
    return description


def _session_entry_problem(entry: Any, files: dict[str, Any]) -> str | None:
    """What is wrong with one manifest session entry, or None."""
    if not isinstance(entry, dict):
        return "is not a JSON object"
    missing = [key for key in ("key", "File", "Sidecar", "Shape") if key not in entry]
    if missing:
        return f"is incomplete (missing {missing})"
    if entry["File"] not in files:
        return "names a file that has no hash in the manifest's Files"
    if not isinstance(entry["Shape"], dict):
        return "has a Shape that is not a JSON object"
    return None


def _check_files(root: Path, manifest: dict[str, Any]) -> None:
    description = root / "dataset_description.json"
    for name, expected in manifest["Files"].items():
        path = root / name
        if not path.is_file():
            raise DerivativeError(
                "a file listed in the manifest is missing", file=path, field=f"{MANIFEST_KEY}.Files", fix=RECREATE
            )
        if sha256(path) != expected:
            raise DerivativeError(
                "the file was changed or truncated after it was written (SHA-256 mismatch)",
                file=path,
                field=f"{MANIFEST_KEY}.Files['{name}'] (sha256)",
                fix=RECREATE,
            )
    listed = set(manifest["Files"])
    for path in root.rglob("*_embedding.nc"):
        if path.relative_to(root).as_posix() not in listed:
            raise DerivativeError(
                "an embedding file is not listed in the manifest",
                file=path,
                field=f"{description.name}: {MANIFEST_KEY}.Files",
                fix="remove the stray file, or " + RECREATE,
            )



def bids_validator_issues(root: str | os.PathLike) -> list[dict[str, Any]]:
    """Run ``bids-validator-deno`` (offline) on a dataset; return its issues (``severity``, ``code`` ...).

    The validator is looked up on PATH and beside the running Python (a virtual environment's
    ``bin``).
    """
    import shutil
    import subprocess
    import sys

    executable = shutil.which("bids-validator-deno") or shutil.which(
        "bids-validator-deno", path=str(Path(sys.executable).parent)
    )
    if executable is None:
        raise DerivativeError(
            "bids-validator-deno is not installed",
            field="bids-validator-deno",
            fix="pip install bids-validator-deno",
        )
    result = subprocess.run(
        [executable, "--format", "json", str(root)], capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"}
    )
    try:
        return json.loads(result.stdout)["issues"]["issues"]
    except (json.JSONDecodeError, KeyError) as error:
        raise DerivativeError(
            f"bids-validator-deno gave no report (exit {result.returncode}): {result.stderr.strip()[:300]}",
            file=root,
            field="bids-validator-deno",
            fix="run bids-validator-deno on the folder by hand to see what fails",
        ) from error

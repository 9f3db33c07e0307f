"""``b2m-neuro embed`` (NWB sessions -> derivative + teacher quality) and ``b2m-neuro validate``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(cli) -> None:
    embed = cli.command("embed", help="Embed NWB sessions (files or folders) or the EEG recordings of BIDS datasets "
                                      "into a BIDS-derivatives folder")
    embed.add_argument("inputs", nargs="+", type=Path,
                       help="NWB files, folders searched for *.nwb, or BIDS dataset roots with EEG recordings")
    embed.add_argument("--out", type=Path, required=True, help="derivative folder, e.g. derivatives/b2m-cebra")
    embed.add_argument("--spec", default=None,
                       help="NWB: teacher-spec preset name or TOML file (default: paper); "
                            "BIDS EEG: EEG spec TOML file (default: every event, 1-40 Hz, mean over 0-100 ms)")
    embed.add_argument("--method", choices=("cebra", "pca", "identity"), default="cebra")
    embed.add_argument("--dim", type=int, default=7, help="output dimension (default 7)")
    embed.add_argument("--zscore", action="store_true",
                       help="standardize each unit before PCA / CEBRA (constant units become 0)")  # fmt: skip
    embed.add_argument("--iterations", type=int, default=15000, help="CEBRA training steps (default 15000)")
    embed.add_argument("--batch-size", type=int, default=512, help="CEBRA batch size (default 512)")
    embed.add_argument("--learning-rate", type=float, default=3e-4, help="CEBRA learning rate (default 3e-4)")
    embed.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    embed.add_argument("--threads", type=int, default=None,
                       help="CPU threads while embedding (default: the libraries' own; 1 is fastest for small data)")
    embed.add_argument("--seed", type=int, default=0)
    embed.add_argument("--task", default=None, help="BIDS task label (default: memory for spikes)")
    embed.add_argument("--desc", default=None, help="desc-<label> of the file names (default: the method)")
    embed.add_argument("--figure", type=Path, default=None,
                       help="teacher-quality PNG (default: <out>_quality.png beside the derivative)")  # fmt: skip
    embed.add_argument("--permutations", type=int, default=200,
                       help="label permutations per teacher-quality p-value (default 200; 0: no test)")  # fmt: skip
    embed.add_argument("--overwrite", action="store_true", help="replace an existing derivative at --out")
    embed.add_argument("--quiet", action="store_true", help="no progress bars")
    embed.set_defaults(run=_embed)

    validate = cli.command("validate",
                           help="Check a derivative folder (schema, SHA-256 of every file) and summarize it")
    validate.add_argument("derivative", type=Path)
    validate.add_argument("--bids", action="store_true", help="also run bids-validator-deno (offline)")
    validate.set_defaults(run=_validate)


def nwb_files(inputs: list[Path]) -> list[Path]:
    """The NWB files named, and those found (recursively, sorted) in the folders named."""
    from b2m_neuro.errors import EmbeddingError

    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(item.rglob("*.nwb"))
            if not found:
                raise EmbeddingError("the folder holds no .nwb files", file=item, field="inputs",
                                     fix="name NWB files or a folder that contains them")  # fmt: skip
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise EmbeddingError("no such file or folder", file=item, field="inputs", fix="check the path")
    return files


def _embed(args: argparse.Namespace) -> None:
    from b2m_neuro.adapters import TeacherSpec, load_spikes
    from b2m_neuro.derivative import Derivative, check_derivative_target
    from b2m_neuro.embedding import embed, teacher_quality

    check_derivative_target(args.out, overwrite=args.overwrite)  # fail now, not after training
    if all(_is_bids_eeg(item) for item in args.inputs):
        from b2m_neuro.adapters import EEGSpec, load_eeg

        recordings = [(root, path) for root in args.inputs for path in _eeg_recordings(root)]
        spec, label = EEGSpec.resolve(args.spec), args.spec or "default"
        print(f"Loading {len(recordings)} EEG recording(s) with spec {label!r}")
        teachers = [load_eeg(root, subject=p.subject, session=p.session, task=p.task, run=p.run,
                             acquisition=p.acquisition, spec=spec) for root, p in recordings]
        files = [p.fpath for _, p in recordings]
    else:
        files = nwb_files(args.inputs)
        label = args.spec or "paper"
        spec = TeacherSpec.resolve(label)
        print(f"Loading {len(files)} session(s) with spec {label!r}")
        teachers = [load_spikes(path, spec, progress=not args.quiet) for path in files]
    embedded = embed(
        teachers,
        method=args.method,
        output_dimension=args.dim,
        zscore=args.zscore,
        max_iterations=args.iterations,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        device=args.device,
        threads=args.threads,
        seed=args.seed,
        task=args.task,
        progress=not args.quiet,
    )
    params = {**embedded[0].attrs["embedding_params"], "spec": label, "teacher_spec": json.loads(spec.to_json())}
    derivative = Derivative.create(args.out, embedded, method=args.method, params=params, source_datasets=files,
                                   desc=args.desc, overwrite=args.overwrite, progress=not args.quiet)  # fmt: skip
    print(derivative.summary())
    figure = args.figure or args.out.with_name(f"{args.out.name}_quality.png")
    print(teacher_quality(derivative.datasets(), permutations=args.permutations, figure=figure).summary())


def _is_bids_eeg(folder: Path) -> bool:
    """Whether ``folder`` is the root of a BIDS dataset holding EEG recordings."""
    return (folder / "dataset_description.json").is_file() and any(folder.glob("sub-*/**/eeg/*_eeg.*"))


def _eeg_recordings(root: Path) -> list:
    """The EEG recordings of a BIDS dataset, as ``mne_bids.BIDSPath``s."""
    import mne_bids

    return mne_bids.find_matching_paths(root, datatypes="eeg", suffixes="eeg",
                                        extensions=[".vhdr", ".edf", ".bdf", ".set", ".fif"])


def _validate(args: argparse.Namespace) -> None:
    from b2m_neuro.derivative import Derivative, bids_validator_issues
    from b2m_neuro.errors import DerivativeError

    derivative = Derivative.open(args.derivative)
    print(derivative.summary())
    if not args.bids:
        return
    issues = bids_validator_issues(derivative.root)
    for issue in issues:
        print(f"  bids-validator {issue['severity']}: {issue['code']} {issue.get('location', '')}")
    errors = [issue for issue in issues if issue["severity"] == "error"]
    if errors:
        raise DerivativeError(f"bids-validator-deno found {len(errors)} error(s)", file=derivative.root,
                              field="BIDS", fix="re-create the derivative with b2m-neuro embed")  # fmt: skip
    print(f"  bids-validator-deno: no errors, {len(issues)} warning(s)")

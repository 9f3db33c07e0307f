"""``b2m-neuro simulate driving`` and ``b2m-neuro convert eeg``: the EEG teachers' commands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(cli) -> None:
    simulate = cli.command(
        "driving", group="simulate",
        help="Simulate driving sessions: EEG (FIF) + frames and behaviour (.npz), optionally as BIDS",
    )
    simulate.add_argument("--out", required=True, help="folder for the raw recordings (created if missing)")
    simulate.add_argument("--sessions", type=int, default=1, help="number of sessions, one subject each (default 1)")
    simulate.add_argument("--duration", type=float, default=60.0, help="seconds per session (default 60)")
    simulate.add_argument("--sfreq", type=float, default=256.0,
                          help="EEG sampling rate in Hz (default 256; 2048 is realistic)")
    simulate.add_argument("--frame-rate", type=float, default=8.0, help="frames per second (default 8)")
    simulate.add_argument("--seed", type=int, default=0, help="random seed of the first session (default 0)")
    simulate.add_argument("--no-scene-information", action="store_true",
                          help="EEG without scene sources (negative control)")
    simulate.add_argument("--bids-root", default=None, help="also convert every session into this BIDS dataset")
    simulate.add_argument("--overwrite", action="store_true", help="replace existing files")
    simulate.add_argument("--quiet", action="store_true", help="no progress bar")
    simulate.set_defaults(run=_simulate_driving)

    convert = cli.command("eeg", group="convert",
                          help="Convert an EEG recording and its events (annotations, triggers, a table; video frames) to BIDS")
    convert.add_argument("raw", help="EEG recording mne reads (.bdf, .edf, .vhdr, .fif, .set)")
    convert.add_argument("--stim-channel", default=None,
                         help="trigger channel whose codes become events (e.g. Status for BioSemi)")
    convert.add_argument("--trigger-mask", type=int, default=None,
                         help="keep only these bits of the trigger channel (BioSemi: 65535)")
    convert.add_argument("--events", default=None,
                         help="events table (.tsv/.csv): onset [s], duration, trial_type, value, further columns")
    convert.add_argument("--frames", default=None,
                         help="video frames: .npz with frame_times [, frames, behaviour_time, behaviour_<signal>] "
                              "or .tsv with an onset column")
    convert.add_argument("--bids-root", required=True, help="BIDS dataset to write or add to")
    convert.add_argument("--subject", required=True, help="coded subject label (never a name)")
    convert.add_argument("--session", default=None)
    convert.add_argument("--task", default="driving")
    convert.add_argument("--run", dest="bids_run", type=int, default=None, help="BIDS run index")
    convert.add_argument("--date-shift-days", type=int, default=None,
                         help="days added to the recording date (default -728)")
    convert.add_argument("--no-deidentify", action="store_true", help="keep names, birth dates and the true date")
    convert.add_argument("--overwrite", action="store_true", help="replace this recording if it is in the dataset")
    convert.add_argument("--quiet", action="store_true", help="no progress bar")
    convert.set_defaults(run=_convert_eeg)


def _simulate_driving(args: argparse.Namespace) -> None:
    from b2m_neuro._util.files import check_writable_target
    from b2m_neuro.convert.eeg import eeg_to_bids, write_frame_file
    from b2m_neuro.errors import SimulationError
    from b2m_neuro.simulate.driving import driving_session

    if args.sessions < 1:
        raise SimulationError("--sessions must be at least 1", field="--sessions")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for index in range(args.sessions):
        subject = f"{index + 1:02d}"
        session = driving_session(
            seed=args.seed + index,
            duration_s=args.duration,
            frame_rate=args.frame_rate,
            sfreq=args.sfreq,
            scene_information=not args.no_scene_information,
            subject_id=subject,
        )
        eeg_file = check_writable_target(out / f"sub-{subject}_driving_raw.fif", overwrite=args.overwrite,
                                         error=SimulationError)
        _save_fif(session.raw, eeg_file)
        frame_file = write_frame_file(out / f"sub-{subject}_driving_frames.npz", session.frame_times,
                                      frames=session.frames, behaviour=session.behaviour)
        print(f"wrote {eeg_file} and {frame_file}")
        if args.bids_root:
            path = eeg_to_bids(
                eeg_file,
                frame_times=session.frame_times,
                frames=session.frames,
                behaviour=session.behaviour,
                bids_root=args.bids_root,
                subject=subject,
                overwrite=args.overwrite,
                progress=not args.quiet,
            )
            print(f"wrote {path}")


def _save_fif(raw, path: Path) -> None:
    """Save ``raw`` under a temporary ``..._raw.fif`` name (mne insists on the ending), then rename it."""
    tmp = path.with_name(f".{path.stem}.partial_raw.fif")
    try:
        raw.save(tmp, overwrite=True, verbose="error")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _convert_eeg(args: argparse.Namespace) -> None:
    from b2m_neuro.convert.deidentify import DEFAULT_DATE_SHIFT_DAYS
    from b2m_neuro.convert.eeg import eeg_to_bids, read_frame_file

    found = read_frame_file(args.frames) if args.frames else {}
    path = eeg_to_bids(
        args.raw,
        frame_times=found.get("frame_times"),
        frames=found.get("frames"),
        behaviour=found.get("behaviour"),
        stim_channel=args.stim_channel,
        trigger_mask=args.trigger_mask,
        events=args.events,
        bids_root=args.bids_root,
        subject=args.subject,
        session=args.session,
        task=args.task,
        run=args.bids_run,
        overwrite=args.overwrite,
        deidentify=not args.no_deidentify,
        date_shift_days=DEFAULT_DATE_SHIFT_DAYS if args.date_shift_days is None else args.date_shift_days,
        progress=not args.quiet,
    )
    print(f"wrote {path}")
    print(_event_summary(path))


def _event_summary(eeg_file: Path) -> str:
    """``events: 9 (1 x4, 2 x1, ...)`` from the events.tsv beside ``eeg_file``."""
    import pandas as pd

    events_tsv = eeg_file.with_name(eeg_file.name.replace("_eeg.vhdr", "_events.tsv"))
    if not events_tsv.is_file():
        return "events: none (no annotations in the recording; see --stim-channel, --events, --frames)"
    counts = pd.read_csv(events_tsv, sep="\t", dtype=str, keep_default_na=False)["trial_type"].value_counts(sort=False)
    return f"events: {counts.sum()} ({', '.join(f'{name} x{n}' for name, n in sorted(counts.items()))})"

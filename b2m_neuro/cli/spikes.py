"""``b2m-neuro simulate memory | study-test | sternberg`` and ``b2m-neuro convert spikes``."""

from __future__ import annotations

import argparse
import datetime as dt

# `b2m-neuro simulate <design>` -> what its sessions are (simulate/recognition.py)
_MEMORY_DESIGNS = {"study-test": "study-test recognition memory", "sternberg": "Sternberg working memory"}


def register(cli) -> None:
    simulate = cli.command("memory", group="simulate",
                           help="Simulate memory-task sessions as NWB files in DANDI layout")
    simulate.add_argument("--sessions", type=int, default=3, help="number of sessions (default 3)")
    simulate.add_argument("--out", required=True, help="dandiset folder to write (created if missing)")
    simulate.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    simulate.add_argument("--trials", type=int, default=None, help="trials per session (default: the simulator's)")
    simulate.add_argument("--no-goal-information", action="store_true",
                          help="neurons carry no task information (negative control)")
    simulate.add_argument("--overwrite", action="store_true", help="replace existing NWB files")
    simulate.add_argument("--quiet", action="store_true", help="no progress bar")
    simulate.set_defaults(run=_simulate_memory)

    for design, what in _MEMORY_DESIGNS.items():
        recognition = cli.command(design, group="simulate",
                                  help=f"Simulate {what} sessions as NWB files in DANDI layout (one subject each)")
        recognition.add_argument("--sessions", type=int, default=2, help="number of sessions (default 2)")
        recognition.add_argument("--out", required=True, help="dandiset folder to write (created if missing)")
        recognition.add_argument("--seed", type=int, default=0, help="random seed of the first session (default 0)")
        recognition.add_argument("--no-memory-information", action="store_true",
                                 help="neurons carry no memory signal (the no-information teacher)")
        recognition.add_argument("--overwrite", action="store_true", help="replace existing NWB files")
        recognition.add_argument("--quiet", action="store_true", help="no progress bar")
        recognition.set_defaults(run=_simulate_recognition, design=design)

    convert = cli.command("spikes", group="convert",
                          help="Convert WaveClus times_<channel>.mat files and an events table to NWB")
    convert.add_argument("source", help="folder of WaveClus times_<channel>.mat files")
    convert.add_argument("--events", required=True,
                         help="events table (.tsv/.csv): stimulus_onset, response_time (s), task columns")
    convert.add_argument("--areas", required=True, help="channel table (.tsv): channel, brain_area")
    convert.add_argument("--out", required=True, help="NWB file to write")
    convert.add_argument("--subject-id", required=True, help="coded subject id (never a name)")
    convert.add_argument("--species", default="Homo sapiens")
    convert.add_argument("--sex", default="U", choices=["M", "F", "U", "O"])
    convert.add_argument("--age", default=None, help='age in years (34) or as ISO 8601 duration ("P34Y")')
    convert.add_argument("--session-id", required=True)
    convert.add_argument("--session-start", required=True, type=_aware_datetime,
                         help="session start with time zone, e.g. 2021-03-04T10:00:00+01:00")
    convert.add_argument("--sampling-rate", type=float, default=None, help="Hz (default: par.sr of the files)")
    convert.add_argument("--date-shift-days", type=int, default=None,
                         help="days added to the session date when de-identifying (default: 104 weeks earlier)")
    convert.add_argument("--no-deidentify", action="store_true", help="write the subject and date as given")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    convert.add_argument("--quiet", action="store_true", help="no progress bar")
    convert.set_defaults(run=_convert_spikes)


def _aware_datetime(text: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date and time") from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add one, e.g. {text}+00:00")
    return when


def _simulate_memory(args: argparse.Namespace) -> None:
    from b2m_neuro.convert import write_dandiset
    from b2m_neuro.simulate import memory_sessions

    options = {"goal_information": not args.no_goal_information}
    if args.trials is not None:
        options["n_trials"] = args.trials
    recordings = memory_sessions(args.sessions, seed=args.seed, progress=not args.quiet, **options)
    paths = write_dandiset(
        recordings, args.out, name="b2m_neuro simulated memory-task sessions",
        description=(f"{args.sessions} simulated sessions of the memory goal-switching task (seed {args.seed}, "
                     f"goal information {'off' if args.no_goal_information else 'on'})"),
        overwrite=args.overwrite, progress=not args.quiet,
    )
    for path in paths:
        print(path)


def _simulate_recognition(args: argparse.Namespace) -> None:
    from b2m_neuro import simulate
    from b2m_neuro.convert import write_dandiset

    session = getattr(simulate, f"{args.design.replace('-', '_')}_session")
    recordings = [session(seed=args.seed + i, subject_id=f"S{i + 1:02d}", session_id=f"{i + 1:02d}",
                          memory_information=not args.no_memory_information) for i in range(args.sessions)]
    paths = write_dandiset(
        recordings, args.out, name=f"b2m_neuro simulated {_MEMORY_DESIGNS[args.design]} sessions",
        description=(f"{args.sessions} simulated {_MEMORY_DESIGNS[args.design]} sessions (seeds {args.seed}.., "
                     f"memory information {'off' if args.no_memory_information else 'on'})"),
        overwrite=args.overwrite, progress=not args.quiet,
    )
    for path in paths:
        print(path)


def _convert_spikes(args: argparse.Namespace) -> None:
    from b2m_neuro.convert import waveclus_to_nwb
    from b2m_neuro.convert.deidentify import DEFAULT_DATE_SHIFT_DAYS

    subject = {"subject_id": args.subject_id, "species": args.species, "sex": args.sex, "age": args.age}
    path = waveclus_to_nwb(
        args.source, args.events, args.out,
        channel_areas=args.areas, subject=subject, session_id=args.session_id,
        session_start_time=args.session_start, sampling_rate=args.sampling_rate,
        overwrite=args.overwrite, deidentify=not args.no_deidentify,
        date_shift_days=DEFAULT_DATE_SHIFT_DAYS if args.date_shift_days is None else args.date_shift_days,
        progress=not args.quiet,
    )
    print(path)

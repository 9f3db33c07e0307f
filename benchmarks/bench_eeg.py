"""Lazy, chunked ``load_eeg`` against loading the whole recording, on a long 64-channel session.

Writes a BIDS EEG session (64 channels, 2048 Hz, one frame event every 1/8 s) without ever
holding it whole: the samples go to a BrainVision file block by block, and ``eeg_to_bids``
copies them in chunks. Then, each in a fresh subprocess (so peak memory is its own):

- **lazy**: ``load_eeg(...).compute()`` with the default spec (60 s chunks, dask threads);
- **whole**: the same features with one chunk spanning the recording, i.e. everything in memory
  at once (the baseline; run on a shorter recording by default because it needs ~24 bytes per
  sample).

Prints peak resident memory and throughput in x real time (recording seconds per wall second),
and the ratios lazy / whole. Aims: lazy peak < 1.5 GB and >= 100x real time on 2 cores.

Usage::

    python benchmarks/bench_eeg.py                      # 3 hours (needs ~12 GB of disk)
    python benchmarks/bench_eeg.py --minutes 30 --baseline-minutes 10 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHANNELS = 64
FRAME_RATE = 8.0


def write_session(root: Path, *, minutes: float, sfreq: float, subject: str) -> None:
    """Write a synthetic session into the BIDS dataset ``root``, one 30-second block at a time."""
    import mne

    from b2m_neuro.convert import eeg_to_bids
    from b2m_neuro.convert.eeg import write_brainvision_blocks

    names = mne.channels.make_standard_montage("biosemi64").ch_names
    n_times = int(minutes * 60 * sfreq)
    block = int(30 * sfreq)
    rng = np.random.default_rng(0)

    def blocks():
        for start in range(0, n_times, block):
            stop = min(start + block, n_times)
            times = np.arange(start, stop) / sfreq
            alpha = 8e-6 * np.sin(2 * np.pi * 10 * times)
            yield rng.standard_normal((CHANNELS, stop - start), dtype=np.float32) * 10e-6 + alpha

    with tempfile.TemporaryDirectory() as scratch:
        vhdr = Path(scratch) / "recording.vhdr"
        write_brainvision_blocks(vhdr, ch_names=names, sfreq=sfreq, blocks=blocks())
        frame_times = np.arange(1.0, n_times / sfreq - 1.0, 1 / FRAME_RATE)
        eeg_to_bids(vhdr, frame_times=frame_times, bids_root=root, subject=subject, progress=False)


def measure(root: str, subject: str, mode: str, workers: int) -> dict:
    """Run in a subprocess: compute the features and report wall time and peak memory."""
    import dask
    import mne_bids  # noqa: F401  (imports are not part of the measured time)
    import scipy.signal  # noqa: F401

    from b2m_neuro.adapters import EEGSpec, load_eeg

    spec = EEGSpec() if mode == "lazy" else EEGSpec(chunk_s=1e9)
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = before.ru_utime + before.ru_stime
    start = time.perf_counter()
    eeg = load_eeg(root, subject=subject, task="driving", spec=spec)
    with dask.config.set(scheduler="threads", num_workers=workers):
        values = eeg.compute().values
    wall = time.perf_counter() - start
    n_frames = values.shape[0]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu_s": usage.ru_utime + usage.ru_stime - cpu_before,
        "mode": mode,
        "wall_s": wall,
        "recording_s": n_frames / FRAME_RATE + 2.0,
        "frames": n_frames,
        "chunks": len(eeg.data.chunks[0]),
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "finite": bool(np.isfinite(values).all()),
    }


def run_measure(root: Path, subject: str, mode: str, workers: int) -> dict:
    command = [sys.executable, __file__, "--measure", str(root), subject, mode, "--workers", str(workers)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=180.0, help="length of the lazy session (default 180)")
    parser.add_argument("--baseline-minutes", type=float, default=10.0,
                        help="length of the session loaded whole (default 10; it needs ~24 bytes per sample)")
    parser.add_argument("--sfreq", type=float, default=2048.0)
    parser.add_argument("--workers", type=int, default=2, help="dask threads (default 2)")
    parser.add_argument("--measure", nargs=3, metavar=("ROOT", "SUBJECT", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure, workers=args.workers)))
        return

    with tempfile.TemporaryDirectory(prefix="bench-eeg-") as folder:
        root = Path(folder) / "bids"
        start = time.perf_counter()
        write_session(root, minutes=args.minutes, sfreq=args.sfreq, subject="long")
        write_session(root, minutes=args.baseline_minutes, sfreq=args.sfreq, subject="short")
        print(f"wrote {args.minutes:g} + {args.baseline_minutes:g} min, {CHANNELS} ch, {args.sfreq:g} Hz "
              f"in {time.perf_counter() - start:.0f} s")
        results = [
            run_measure(root, "long", "lazy", args.workers),
            run_measure(root, "short", "lazy", args.workers),
            run_measure(root, "short", "whole", args.workers),
        ]
    print(f"machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'session':>8} {'mode':>6} {'frames':>7} {'chunks':>6} {'wall s':>7} {'CPU s':>7} {'x real time':>11} "
          f"{'x real time per CPU s':>21} {'peak MB':>8}")
    for name, result in zip(("long", "short", "short"), results):
        speed = result["recording_s"] / result["wall_s"]
        per_cpu = result["recording_s"] / result["cpu_s"]
        print(f"{name:>8} {result['mode']:>6} {result['frames']:>7} {result['chunks']:>6} {result['wall_s']:>7.1f} "
              f"{result['cpu_s']:>7.1f} {speed:>11.0f} {per_cpu:>21.0f} {result['peak_rss_mb']:>8.0f}")
    long_lazy, short_lazy, short_whole = results
    whole_per_minute = (short_whole["peak_rss_mb"] - short_lazy["peak_rss_mb"]) / args.baseline_minutes
    print(f"same {args.baseline_minutes:g} min session: lazy / whole peak memory = "
          f"{short_lazy['peak_rss_mb'] / short_whole['peak_rss_mb']:.2f}, "
          f"speed ratio = {short_whole['wall_s'] / short_lazy['wall_s']:.2f}")
    print(f"loading the {args.minutes:g} min session whole would need about "
          f"{(short_lazy['peak_rss_mb'] + whole_per_minute * args.minutes) / 1024:.1f} GB "
          f"(lazy: {long_lazy['peak_rss_mb'] / 1024:.2f} GB)")
    lazy_speed = long_lazy["recording_s"] / long_lazy["wall_s"]
    print(f"aims: peak < 1.5 GB: {long_lazy['peak_rss_mb'] < 1536}; >= 100x real time: {lazy_speed >= 100}")


if __name__ == "__main__":
    main()

"""Spike adapter throughput: the vectorized core of ``load_spikes`` vs a per-trial loop, same run.

Builds an in-memory session of reference scale (371 units, 6,800 trials of the memory task,
log-normal firing rates around 3 Hz), bins it with the paper spec (1 s pre-stimulus at 10 ms,
reaction time in 100 bins, causal exponential filter) using ``b2m_neuro.adapters.spikes.spike_rates``
(the function ``load_spikes`` calls), and with a straightforward loop over trials and units
(``np.histogram`` + ``np.convolve``) on the first ``--baseline-trials`` trials. Prints trials/s for
both (wall-clock and process CPU time), their ratio, the largest difference between the two on the
shared trials, peak memory, and the machine's load average (on a shared machine, compare the
ratios, not the times).

The vectorized core runs twice, both timed: the first run also pays for the first touch of its
1.9 GB output, and on a virtual machine whose memory the host backs lazily a first touch can cost
~4 s/GiB (measured here) instead of ~0.2 s/GiB; the second run, in memory the process has used
before, measures the code. Both ratios are printed.

    .venv/bin/python benchmarks/bench_adapter.py                 # reference scale
    .venv/bin/python benchmarks/bench_adapter.py --units 40 --trials 800 --baseline-trials 100
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc

import numpy as np

from b2m_neuro.adapters import TeacherSpec
from b2m_neuro.adapters.spikes import TrialBins, bin_layout, spike_rates, trial_edges


def make_session(n_units: int, n_trials: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Spike data + index (NWB ragged layout), stimulus onsets and reaction times."""
    rng = np.random.default_rng(seed)
    reaction_times = np.clip(rng.lognormal(np.log(0.9), 0.4, n_trials), 0.25, 4.0)
    gaps = 1.0 + reaction_times + rng.uniform(0.4, 1.5, n_trials)  # pre window + response + pause
    onsets = 2.0 + np.concatenate([[0.0], np.cumsum(gaps[:-1])])
    duration = onsets[-1] + reaction_times[-1] + 2.0
    rates = np.clip(rng.lognormal(np.log(3.0), 0.9, n_units), 0.05, 60.0)
    trains = []
    for rate in rates:
        n = rng.poisson(rate * duration)
        trains.append(np.sort(rng.uniform(0.0, duration, n)))
    return np.concatenate(trains), np.cumsum([len(t) for t in trains]), onsets, reaction_times


def per_trial_loop(spike_data, spike_index, onsets, reaction_times, spec: TeacherSpec) -> np.ndarray:
    """The baseline: for each trial, for each unit, histogram the window and convolve."""
    kernel = spec.kernel()
    starts = np.concatenate([[0], spike_index[:-1]])
    out = np.empty((len(onsets), spec.n_time, len(spike_index)), dtype=np.float32)
    for trial, (onset, rt) in enumerate(zip(onsets, reaction_times)):
        pre_edges = onset + spec.pre.offsets()
        post_edges = onset + rt * spec.post.phases()
        for unit in range(len(spike_index)):
            spikes = spike_data[starts[unit] : spike_index[unit]]
            lo, hi = np.searchsorted(spikes, [pre_edges[0], post_edges[-1]])
            window = spikes[lo:hi]
            rate = np.concatenate(
                [np.histogram(window, pre_edges)[0] / np.diff(pre_edges), np.histogram(window, post_edges)[0] / np.diff(post_edges)]
            )
            out[trial, :, unit] = np.convolve(rate, kernel)[: spec.n_time]
    return out


class _Clock:
    """Wall-clock and process CPU time (the CPU time is robust to other jobs on a shared machine)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=371)
    parser.add_argument("--trials", type=int, default=6800)
    parser.add_argument("--baseline-trials", type=int, default=150, help="trials timed with the per-trial loop")
    parser.add_argument("--chunk-mb", type=int, default=16, help="working memory per chunk of units")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    spec = TeacherSpec.preset("paper")
    spike_data, spike_index, onsets, reaction_times = make_session(args.units, args.trials, args.seed)
    print(f"session: {args.units} units, {args.trials} trials, {len(spike_data) / 1e6:.1f} M spikes, "
          f"{onsets[-1] / 3600:.2f} h; spec 'paper' ({spec.n_time} time points per trial)")

    def vectorized_core() -> np.ndarray:
        bins = TrialBins.build(trial_edges(spec, onsets, reaction_times), bin_layout(spec))
        units = np.arange(args.units)
        return spike_rates(spike_data, spike_index, units, bins, spec.kernel(), chunk_bytes=args.chunk_mb << 20)

    print(f"load average at start: {_load()}")
    timings = []
    for _ in range(2):  # first run, then again in memory the process has touched before
        clock = _Clock()
        rates = vectorized_core()
        timings.append(clock.stop())
        del rates

    n_base = min(args.baseline_trials, args.trials)
    clock = _Clock()
    baseline = per_trial_loop(spike_data, spike_index, onsets[:n_base], reaction_times[:n_base], spec)
    base = clock.stop()

    tracemalloc.start()  # a third, traced run: tracing slows allocation, so it is not timed
    rates = vectorized_core()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    difference = float(np.max(np.abs(baseline - rates[:n_base])))
    output_mb = rates.nbytes / 2**20
    for run, vectorized in zip(("first run", "second run"), timings):
        for kind, index in (("wall", 0), ("cpu", 1)):
            fast, slow = args.trials / vectorized[index], n_base / base[index]
            print(f"[{run}, {kind:>4} time] vectorized core: {args.trials} trials in {vectorized[index]:.2f} s = "
                  f"{fast:,.0f} trials/s; per-trial loop: {n_base} trials in {base[index]:.2f} s = {slow:,.1f} trials/s; "
                  f"speed-up {fast / slow:.1f}x")
    print(f"max |vectorized - loop| on the shared trials: {difference:.2g} Hz")
    print(f"peak memory: {peak / 2**20:,.0f} MiB traced during a vectorized run = output {output_mb:,.0f} MiB "
          f"+ working {(peak - rates.nbytes) / 2**20:,.0f} MiB; process max RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    print(f"load average at end: {_load()} ({os.cpu_count()} CPUs)")


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()

"""Run-epochs per second: sequential ``nn.GRU`` runs vs the batched engine (``b2m_neuro.engine``).

Both sides train the reference GRU student on the same memory-task-shaped data (built directly:
``--episodes`` training episodes of 4-20 trials, ``--points`` time points per trial, a 2-step cue,
one scored response per trial, every trial point paired with a 7-dimensional brain embedding;
``--test`` test sequences evaluated after each epoch), with batch size 1, dropout 0.3 and the
contrastive transfer loss at alpha 0.05.

- baseline: the single-run loop the package ran before the engine existed (``nn.GRU`` with
  autograd, ``torch.optim.Adam``), one run after another, measured in this process; after each
  epoch it records what the engine records: test loss and accuracy, and the linear CKA and RSA of
  the aligned layer vs the brain embedding over the training sequences;
- engine: :func:`b2m_neuro.engine.fit_runs` on R runs at once (automatic group size, backend
  "auto"), for R = 1, 4, 16, 64 (``--quick``: 1, 4, 16).

Prints run-epochs per second (wall clock, and per CPU second of this process) and the ratio
engine / baseline, for hidden 512 and 128. The baseline is measured again just before each engine
row: a shared machine's speed drifts by tens of percent within minutes, so only a ratio of two
measurements taken together means anything; with ``--repeat N`` the median of the N paired ratios
closes the output.
Aim on a 2-core CPU at R = 16: 3x or more at hidden 512, 6x or more at hidden 128.

    .venv/bin/python benchmarks/bench_engine.py --quick --threads 1

On a CPU shared with other work, pass ``--threads 1``: two busy cores make multi-threaded
small matrix products many times slower, which hides what is measured here.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from b2m_neuro.engine import Run, TrainConfig, auto_group_size, fit_runs
from b2m_neuro.models import get_model
from b2m_neuro.models.aligned import AlignedModel
from b2m_neuro.stats import linear_cka, rsa_similarity
from b2m_neuro.tasks import TaskData
from b2m_neuro.transfer import transfer_loss

LATENT, N_INPUTS, CUE = 7, 4, 2


def memory_like_data(*, episodes: int, points: int, n_test: int, seed: int = 0) -> TaskData:
    """Padded arrays shaped like the memory task's (see the module docstring)."""
    rng = np.random.default_rng(seed)

    def sequences(count: int, with_brain: bool) -> dict:
        trials = rng.integers(4, 21, count)
        lengths = CUE + trials * points
        width = lengths.max()
        arrays = {"inputs": np.zeros((count, width, N_INPUTS), np.float32),
                  "targets": np.zeros((count, width), np.float32), "scored": np.zeros((count, width), bool),
                  "brain": rng.normal(size=(count, width, LATENT)).astype(np.float32) if with_brain else None,
                  "paired": np.zeros((count, width), bool), "lengths": lengths}
        for i, n_trials in enumerate(trials):
            arrays["inputs"][i, np.arange(CUE), rng.choice(3, CUE, replace=False)] = 1.0
            stimuli = rng.integers(0, 3, n_trials)
            for trial, stimulus in enumerate(stimuli):
                start = CUE + trial * points
                arrays["inputs"][i, start:start + points // 2, 3] = 1.0
                arrays["inputs"][i, start + points // 2:start + points, stimulus] = 1.0
                arrays["scored"][i, start + points - 1] = True
                arrays["targets"][i, start + points - 1] = rng.choice([-1.0, 1.0])
            arrays["paired"][i, CUE:lengths[i]] = True
        return arrays

    train, test = sequences(episodes, True), sequences(n_test, False)
    return TaskData(n_inputs=N_INPUTS, latent_dim=LATENT, train_inputs=train["inputs"], train_targets=train["targets"],
                    train_scored=train["scored"], train_lengths=train["lengths"], train_brain=train["brain"],
                    train_paired=train["paired"], test_inputs=test["inputs"], test_targets=test["targets"],
                    test_scored=test["scored"], test_lengths=test["lengths"], stimuli=[0, 1, 2])


def student(hidden: int, seed: int, device: str = "cpu") -> AlignedModel:
    torch.manual_seed(seed)
    return AlignedModel(get_model("gru", n_inputs=N_INPUTS, latent_dim=LATENT, hidden_size=hidden), "embedding").to(device)


def config(seed: int) -> TrainConfig:
    return TrainConfig(alpha=0.05, epochs=1, lr=1e-4, seed=seed)


def baseline_epoch(data: TaskData, model: AlignedModel, cfg: TrainConfig, device: str = "cpu") -> None:
    """One epoch of the pre-engine single-run loop: nn.GRU (cuDNN on CUDA) + autograd + torch.optim.Adam,
    then the engine's per-epoch measurements (test loss and accuracy, alignment), on ``device`` (where
    ``model`` is)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    arrays = {name: torch.as_tensor(getattr(data, f"train_{name}"), device=device)
              for name in ("inputs", "targets", "scored", "brain", "paired")}
    model.train()
    for row in np.random.default_rng(cfg.seed).permutation(len(data.train_lengths)):
        steps = int(data.train_lengths[row])
        inputs, targets, scored, brain, paired = (arrays[name][row:row + 1, :steps] for name in arrays)
        outputs, embedding = model(inputs)
        task = ((outputs[scored] - targets[scored]) ** 2).mean()
        total = (1 - cfg.alpha) * task + cfg.alpha * transfer_loss(
            cfg.transfer, brain[paired], embedding[paired], temperature=cfg.temperature, reduction=cfg.reduction)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        total.item()
    model.eval()
    with torch.no_grad():
        for start in range(0, len(data.test_lengths), 256):
            rows = slice(start, start + 256)
            steps = int(data.test_lengths[rows].max())
            outputs = model(torch.as_tensor(data.test_inputs[rows, :steps], device=device))[0]
            scored = torch.as_tensor(data.test_scored[rows, :steps], device=device)
            targets = torch.as_tensor(data.test_targets[rows, :steps], device=device)
            float(((outputs[scored] - targets[scored]) ** 2).sum())
        layer, brain = [], []
        for start in range(0, len(data.train_lengths), 256):
            rows = slice(start, start + 256)
            steps = int(data.train_lengths[rows].max())
            embedding = model(arrays["inputs"][rows, :steps])[1]
            paired = arrays["paired"][rows, :steps]
            layer.append(embedding[paired].cpu().numpy())
            brain.append(arrays["brain"][rows, :steps][paired].cpu().numpy())
        layer, brain = np.concatenate(layer), np.concatenate(brain)
        linear_cka(layer, brain), rsa_similarity(layer, brain)


def rates(work, n_runs: int, device: str = "cpu") -> tuple[float, float]:
    """Run-epochs per wall-clock second and per CPU second of this process (CUDA work synchronized)."""
    synchronize = torch.cuda.synchronize if str(device).startswith("cuda") else lambda: None
    synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    synchronize()
    return n_runs / (time.perf_counter() - wall), n_runs / (time.process_time() - cpu)


def baseline_rate(data: TaskData, hidden: int, n_runs: int, device: str = "cpu") -> tuple[float, float]:
    def work():
        for seed in range(n_runs):
            baseline_epoch(data, student(hidden, seed, device), config(seed), device)

    return rates(work, n_runs, device)


def engine_rate(data: TaskData, hidden: int, n_runs: int, device: str = "cpu") -> tuple[float, float]:
    runs = [Run(data, student(hidden, seed, device), config(seed)) for seed in range(n_runs)]
    return rates(lambda: fit_runs(runs, device=device, progress=False), n_runs, device)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="R = 1, 4, 16 only")
    parser.add_argument("--runs", type=int, nargs="+", default=None, help="the values of R (default 1 4 16 64)")
    parser.add_argument("--episodes", type=int, default=40, help="training episodes (sequences) per epoch")
    parser.add_argument("--points", type=int, default=10, help="time points per trial (200 at time_stride 1)")
    parser.add_argument("--test", type=int, default=100, help="test sequences evaluated after each epoch")
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 128])
    parser.add_argument("--baseline-runs", type=int, default=2, help="sequential run-epochs timed for the baseline")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeat", type=int, default=1, help="measure the whole table this many times")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = memory_like_data(episodes=args.episodes, points=args.points, n_test=args.test)
    print(f"data: {args.episodes} training episodes, mean length {data.train_lengths.mean():.0f} steps; "
          f"{args.test} test sequences; torch {torch.__version__}, {torch.get_num_threads()} threads")
    counts = args.runs or ([1, 4, 16] if args.quick else [1, 4, 16, 64])
    small = memory_like_data(episodes=2, points=2, n_test=2)
    baseline_rate(small, 8, 1), engine_rate(small, 8, 2)  # warm-up: imports and first-call costs stay out of the timings
    ratios: dict[tuple[int, int], list[float]] = {}
    for _ in range(args.repeat):
        print(f"load average {' '.join(f'{load:.2f}' for load in os.getloadavg())} (1, 5, 15 min)")
        print(f"{'hidden':>6} {'R':>4} {'group':>5} | {'run-epochs per second':^33} | {'per CPU second':^31}")
        print(f"{'':>6} {'':>4} {'':>5} | {'baseline':>10} {'engine':>10} {'ratio':>9} | "
              f"{'baseline':>10} {'engine':>10} {'ratio':>7}")
        for hidden in args.hidden:
            for n_runs in counts:  # the baseline measured just before each engine row: a shared machine's speed drifts
                baseline = baseline_rate(data, hidden, args.baseline_runs)
                group = auto_group_size(hidden, N_INPUTS, n_runs=n_runs)
                engine = engine_rate(data, hidden, n_runs)
                ratios.setdefault((hidden, n_runs), []).append(engine[0] / baseline[0])
                print(f"{hidden:>6} {n_runs:>4} {group:>5} | {baseline[0]:>10.3f} {engine[0]:>10.3f} "
                      f"{engine[0] / baseline[0]:>8.2f}x | {baseline[1]:>10.3f} {engine[1]:>10.3f} "
                      f"{engine[1] / baseline[1]:>6.2f}x", flush=True)
    if args.repeat > 1:
        print(f"median ratio (wall clock) over {args.repeat} paired measurements:")
        for (hidden, n_runs), values in ratios.items():
            print(f"{hidden:>6} {n_runs:>4}   {np.median(values):.2f}x  (" + ", ".join(f"{v:.2f}" for v in values) + ")")


if __name__ == "__main__":
    main()

"""Images per second of the VAE student: one run at a time vs R runs at once (``b2m_neuro.scene_training``).

Both sides train the reference VAE (:class:`b2m_neuro.models.vae.ReferenceVAE`) for one epoch of
``--steps`` steps with :func:`b2m_neuro.scene_training.fit_scene_runs`: each step a batch of
``--batch`` scenes (reconstruction + KL) and ``--pair-batch`` frame/EEG pairs (latent MSE) per run,
alpha 0.5, then the epoch's evaluation on ``--batch`` test scenes and the ``--pair-batch`` frames.
Images are random ``uint8`` scenes of the reference size (3 x 80 x 160) and a 64-d embedding, so
the speed is the model's, not the disk's.

- baseline: R runs trained one after another (a group of one run each);
- stacked: the same R runs at once (one group, ``torch.func.stack_module_state`` + ``vmap``);

for R = 1, 4, 16 (``--runs``). Prints training scenes per second (all runs together; each scene
step also encodes ``pair-batch / batch`` frames), wall clock and per CPU second of this process,
and the ratio stacked / baseline. On CUDA the forward passes run under bf16 autocast (``--no-bf16``
to compare) and a projection of the 220-run reference study (100 epochs of 12,000 scenes per run)
is printed.

    .venv/bin/python benchmarks/bench_vae.py --device cpu --runs 1 4 --steps 2 --threads 1
    .venv/bin/python benchmarks/bench_vae.py --device cuda          # on a GPU
    .venv/bin/python benchmarks/bench_vae.py --small --runs 1 2 --steps 1   # seconds, for the tests
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bench_engine import rates
from b2m_neuro.engine import TrainConfig
from b2m_neuro.models.vae import REFERENCE_IMAGE_SIZE, ReferenceVAE
from b2m_neuro.scene_training import SceneRun, fit_scene_runs
from b2m_neuro.tasks.scenes import SceneData

LATENT = 64
REFERENCE_STUDY = dict(runs=220, epochs=100, scenes=12_000)
SMALL = dict(image_size=(40, 60), channels=(4, 8, 8, 16), hidden=32)


def scene_data(*, steps: int, batch: int, pair_batch: int, image_size: tuple[int, int], seed: int = 0) -> SceneData:
    """Random scenes and frames of ``image_size`` with a random ``LATENT``-d embedding per frame."""
    rng = np.random.default_rng(seed)

    def images(count: int) -> np.ndarray:
        return rng.integers(0, 256, size=(count, 3, *image_size), dtype=np.uint8)

    frames = images(pair_batch)
    return SceneData(images(steps * batch), images(batch), frames, rng.normal(size=(pair_batch, LATENT)).astype(np.float32),
                     [f"frame-{i}" for i in range(pair_batch)])


def make_runs(data: SceneData, n_runs: int, *, batch: int, pair_batch: int, model: dict, device: str) -> list[SceneRun]:
    runs = []
    for seed in range(n_runs):
        torch.manual_seed(seed)
        network = ReferenceVAE(3, LATENT, **model).to(device)
        runs.append(SceneRun(data, network, TrainConfig(alpha=0.5, transfer="latent", epochs=1, batch_size=batch, seed=seed),
                             pair_batch))
    return runs


def measure(data: SceneData, n_runs: int, *, batch: int, pair_batch: int, model: dict, device: str,
            bf16: bool) -> tuple[tuple[float, float], tuple[float, float]]:
    """(baseline, stacked) training scenes per (wall, CPU) second for ``n_runs`` runs."""
    scenes = n_runs * len(data.train_images)
    options = dict(device=device, bf16=bf16, progress=False)
    alone = make_runs(data, n_runs, batch=batch, pair_batch=pair_batch, model=model, device=device)
    baseline = rates(lambda: [fit_scene_runs([run], **options) for run in alone], scenes, device)
    together = make_runs(data, n_runs, batch=batch, pair_batch=pair_batch, model=model, device=device)
    stacked = rates(lambda: fit_scene_runs(together, group_size=n_runs, **options), scenes, device)
    return baseline, stacked


def projected_hours(scenes_per_second: float) -> float:
    """Hours for the reference study (:data:`REFERENCE_STUDY`) at this many training scenes per second."""
    return REFERENCE_STUDY["runs"] * REFERENCE_STUDY["epochs"] * REFERENCE_STUDY["scenes"] / scenes_per_second / 3600


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 4, 16], help="R values (default 1 4 16)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per run (default 3)")
    parser.add_argument("--batch", type=int, default=32, help="scenes per step (default 32)")
    parser.add_argument("--pair-batch", type=int, default=256, help="frame/EEG pairs per step (default 256)")
    parser.add_argument("--small", action="store_true", help=f"a small VAE on small images ({SMALL})")
    parser.add_argument("--no-bf16", action="store_true", help="no bf16 autocast on CUDA")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = SMALL if args.small else dict(image_size=REFERENCE_IMAGE_SIZE)
    bf16 = args.device.startswith("cuda") and not args.no_bf16
    data = scene_data(steps=args.steps, batch=args.batch, pair_batch=args.pair_batch, image_size=model["image_size"])
    warm = scene_data(steps=1, batch=args.batch, pair_batch=args.pair_batch, image_size=model["image_size"])
    fit_scene_runs(make_runs(warm, 1, batch=args.batch, pair_batch=args.pair_batch, model=model, device=args.device),
                   device=args.device, bf16=bf16, progress=False)  # warm-up (kernels, allocator)
    print(f"VAE {model}, device {args.device}, bf16 {bf16}, {args.steps} steps of {args.batch} scenes + "
          f"{args.pair_batch} frame/EEG pairs per run")
    print(f"{'R':>4} {'one at a time':>16} {'R at once':>12} {'ratio':>7} {'(per CPU s)':>12}")
    best = 0.0
    for n_runs in args.runs:
        (base_wall, base_cpu), (wall, cpu) = measure(data, n_runs, batch=args.batch, pair_batch=args.pair_batch,
                                                     model=model, device=args.device, bf16=bf16)
        best = max(best, wall)
        print(f"{n_runs:>4} {base_wall:>12.1f} im/s {wall:>8.1f} im/s {wall / base_wall:>6.2f}x {cpu / base_cpu:>11.2f}x")
    if not args.small:
        print(f"projected reference study ({REFERENCE_STUDY['runs']} runs x {REFERENCE_STUDY['epochs']} epochs x "
              f"{REFERENCE_STUDY['scenes']} scenes) at the best rate: {projected_hours(best):.1f} h")


if __name__ == "__main__":
    main()

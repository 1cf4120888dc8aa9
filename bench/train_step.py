"""Training-step cost of the M²VAE objective relative to a plain joint VAE, for N = 2…5.

Both use the same M2VAE networks and batch; the joint VAE trains only the full-subset
head and every decoder (one ELBO), the M²VAE objective every subset head, 2^N − 1 ELBOs
and N·(2^(N−1) − 1) KL terms. A step is forward + backward + Adam. Repetitions are
interleaved (M²VAE, joint, M²VAE, …) so machine noise hits both alike, and the table
reports the median of the per-repetition ratios.

    .venv/bin/python bench/train_step.py [--reps 8] [--batch 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

import torch
from m2vae_training.config import load_train_config

from m2vae_ros.cli_args import positive_int
from m2vae_ros.model import M2VAE
from m2vae_ros.objectives import kl_standard_normal, loss
from m2vae_ros.spec import ModalitySpec, VectorPreprocess

# The shipped config's sensors (64×64×3 camera, 360-beam scan), then small vector sensors.
SHIPPED = load_train_config().spec
POOL = (
    *SHIPPED.modalities,
    ModalitySpec("imu", "vector", VectorPreprocess(16)),
    ModalitySpec("odom", "vector", VectorPreprocess(8)),
    ModalitySpec("wheel", "vector", VectorPreprocess(4)),
)


def joint_vae_loss(model: M2VAE, x: dict[str, torch.Tensor]) -> torch.Tensor:
    """Negative ELBO of q(z | all modalities) only: the plain multi-modal VAE baseline."""
    full = (1 << len(model.names)) - 1
    mean, logvar = model.encode(x, full)
    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
    rec = sum(model.log_likelihood(name, z, x[name]) for name in model.names)
    return -(rec - model.spec.beta * kl_standard_normal(mean, logvar)).mean()


def step_seconds(optimizer: torch.optim.Optimizer, compute: Callable[[], torch.Tensor]) -> float:
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    compute().backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=positive_int, default=8)
    parser.add_argument("--batch", type=positive_int, default=64)  # config/train.yaml's batch_size
    parser.add_argument("--threads", type=positive_int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    setups = {}
    for n in range(2, 6):
        spec = dataclasses.replace(SHIPPED, modalities=POOL[:n])
        model = M2VAE(spec)
        x = {m.name: torch.rand(args.batch, *m.shape) for m in spec.modalities}
        available = torch.ones(args.batch, n, dtype=torch.bool)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        setups[n] = (
            model,
            optimizer,
            lambda model=model, x=x, available=available: loss(model, x, available).total,
            lambda model=model, x=x: joint_vae_loss(model, x),
        )

    times: dict[int, tuple[list[float], list[float]]] = {n: ([], []) for n in setups}
    for rep in range(args.reps + 1):  # repetition 0 warms up and is discarded
        for n, (_, optimizer, m2vae, joint) in setups.items():
            # Alternating which goes first: the second step finds the model's weights in cache.
            if rep % 2:
                a, b = step_seconds(optimizer, m2vae), step_seconds(optimizer, joint)
            else:
                b, a = step_seconds(optimizer, joint), step_seconds(optimizer, m2vae)
            if rep:
                times[n][0].append(a)
                times[n][1].append(b)

    print(f"batch {args.batch}, {args.threads} thread(s), median of {args.reps} interleaved repetitions\n")
    print("| N | modalities | subset heads | M²VAE step (ms) | joint VAE step (ms) | ratio |")
    print("|---|---|---|---|---|---|")
    ratios = {}
    for n, (m2vae_times, joint_times) in times.items():
        ratios[n] = statistics.median(a / b for a, b in zip(m2vae_times, joint_times, strict=True))
        names = "+".join(setups[n][0].names)
        print(
            f"| {n} | {names} | {2**n - 1} | {statistics.median(m2vae_times) * 1e3:.1f} "
            f"| {statistics.median(joint_times) * 1e3:.1f} | {ratios[n]:.2f}× |"
        )
    first, last = min(ratios), max(ratios)
    heads = (2**last - 1) / (2**first - 1)
    print(f"\nFrom N = {first} to {last} the ratio grows {ratios[last] / ratios[first]:.1f}× against "
          f"{heads:.1f}× for the subset heads (target: slower than the heads)")


if __name__ == "__main__":
    main()

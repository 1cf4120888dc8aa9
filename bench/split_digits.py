"""Split-digits comparison of M²VAE, JMVAE-kl and MVAE through the in-memory API.

scikit-learn's bundled 8×8 digits (offline): modality a is the left 8×4 half, b the
right half, both Bernoulli vectors of intensity / 16. Each objective trains identical
MLPs with the same latent size and epoch budget on a fixed stratified 80/20 split, over
three seeds. Following the seed paper's protocol, ONE Gaussian naive Bayes classifier is
fitted on the joint (a+b) posterior means of the training set and then tested on each
subset's test latents (a, b, a+b): a latent space in which a lone half lands where the
joint would put it scores well on all three. Cross-modal reconstruction MSE (b from a,
a from b) is measured on the test set in intensity / 16 units.

    .venv/bin/python bench/split_digits.py [--epochs 60] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB

from m2vae_ros.api import MultimodalVAE
from m2vae_ros.cli_args import positive_int
from m2vae_ros.spec import ModalitySpec, VectorPreprocess

OBJECTIVES = ("m2vae", "jmvae", "mvae")
SUBSETS = ("a", "b", "a+b")
LATENT_DIM = 8


def halves() -> tuple[dict[str, np.ndarray], np.ndarray]:
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    data = {"a": images[:, :, :4].reshape(len(images), -1), "b": images[:, :, 4:].reshape(len(images), -1)}
    return data, digits.target


def build(objective: str, seed: int) -> MultimodalVAE:
    modalities = {
        name: ModalitySpec(name, "vector", VectorPreprocess(32), likelihood="bernoulli", hidden=(128,))
        for name in ("a", "b")
    }
    return MultimodalVAE.from_modalities(
        modalities, latent_dim=LATENT_DIM, objective=objective, feature_dim=64, head_hidden=64, seed=seed
    )


def run(objective: str, seed: int, split: dict, epochs: int) -> dict[str, float]:
    train, test, y_train, y_test = split["train"], split["test"], split["y_train"], split["y_test"]
    vae = build(objective, seed)
    start = time.perf_counter()
    vae.fit(train, epochs=epochs, batch_size=64, lr=1e-3, seed=seed)
    result = {"train time (s)": time.perf_counter() - start}
    classifier = GaussianNB().fit(vae.encode(train, "a+b")[0], y_train)
    for subset in SUBSETS:
        result[f"acc {subset}"] = classifier.score(vae.encode(test, subset)[0], y_test)
    for target, source in (("b", "a"), ("a", "b")):
        prediction = vae.decode(vae.encode(test, source)[0], target)
        result[f"MSE {target}←{source}"] = float(((prediction - test[target]) ** 2).mean())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=positive_int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=positive_int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data, labels = halves()
    rows_train, rows_test = train_test_split(
        np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=0
    )
    split = {
        "train": {k: v[rows_train] for k, v in data.items()},
        "test": {k: v[rows_test] for k, v in data.items()},
        "y_train": labels[rows_train],
        "y_test": labels[rows_test],
    }
    results = {o: [run(o, seed, split, args.epochs) for seed in args.seeds] for o in OBJECTIVES}

    columns = list(results[OBJECTIVES[0]][0])
    print(
        f"digits split in halves, {len(rows_train)} train / {len(rows_test)} test, latent {LATENT_DIM}, "
        f"{args.epochs} epochs, seeds {args.seeds}; mean ± std\n"
    )
    print("| objective | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for objective, runs in results.items():
        cells = []
        for column in columns:
            values = [r[column] for r in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            digits = 1 if column.startswith("train") else 3
            cells.append(f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}")
        print(f"| {objective} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

"""Is the class in the latent but unreadable by naive Bayes, or not in the latent at all?

`m2vae-eval`'s `nb_accuracy` follows the seed's protocol: one Gaussian naive Bayes fitted
on the joint subset's latent means of the training data, scored on every subset's means of
the test data. A low score has two readings: the latent does not hold the class, or holds
it in a form naive Bayes (one axis-aligned Gaussian per class) cannot read. This fits
probes of growing power the same way (naive Bayes, logistic regression, k nearest
neighbours, a two-layer perceptron, on standardised means) and, for each single sensor,
the same probes on that sensor's own training latents: the most any readout of that
encoder gets. Departs from the protocol on purpose; a diagnostic only.

    .venv/bin/python bench/latent_probes.py --model RUN/model --train-dataset DIR --test-dataset DIR
                                            [--batch-size 256] [--seed 0]

`m2vae-train` leaves the training dataset in RUN/dataset (or its --dataset-dir), and
`m2vae-eval` the test one in OUT/test_dataset.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from m2vae_training.dataset import common_class_names, load_dataset
from m2vae_training.evaluation import latent_means
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from m2vae_ros.artifact import load_model
from m2vae_ros.cli_args import positive_int
from m2vae_ros.subsets import all_subsets, subset_name


def probes(seed: int) -> dict[str, object]:
    """Name → an unfitted classifier on standardised latent means, weakest first."""
    return {
        "naive Bayes (the protocol's)": make_pipeline(StandardScaler(), GaussianNB()),
        "logistic regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "15 nearest neighbours": make_pipeline(StandardScaler(), KNeighborsClassifier(15)),
        "perceptron 256×256": make_pipeline(StandardScaler(), MLPClassifier(
            (256, 256), max_iter=300, early_stopping=True, random_state=seed)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--train-dataset", type=Path, required=True, help="prepared, with ground truth")
    parser.add_argument("--test-dataset", type=Path, required=True, help="prepared, with ground truth")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--seed", type=int, default=0, help="the perceptron's initialisation")
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = load_model(args.model).model
    train, test = load_dataset(args.train_dataset), load_dataset(args.test_dataset)
    common_class_names(train.class_names, test.class_names)  # the same id must mean the same object
    subsets = all_subsets(len(model.spec.names))
    names = {s: subset_name(s, model.spec.names) for s in subsets}

    def labelled(dataset, subset: int) -> tuple[np.ndarray, np.ndarray]:
        means, present = latent_means(model, dataset, subset, batch_size=args.batch_size)
        rows = present & (dataset.labels >= 0)
        return means[rows], dataset.labels[rows]

    joint = subsets[-1]
    tests = {s: labelled(test, s) for s in subsets}
    fitted_on = {joint: labelled(train, joint)}
    if not (len(fitted_on[joint][1]) and len(tests[joint][1])):
        sys.exit("latent_probes: the training or test dataset has no labelled sample with every sensor")
    fitted_on.update({s: labelled(train, s) for s in subsets if s.bit_count() == 1})

    print(f"{args.model}: {len(fitted_on[joint][1])} labelled training rows, test rows per subset: "
          + ", ".join(f"{names[s]} {len(tests[s][1])}" for s in subsets) + "\n")
    tested = " | ".join(f"test {names[s]}" for s in subsets)
    print(f"| probe | fitted on | training accuracy | {tested} |")
    print("|---|---|---:|" + "---:|" * len(subsets))
    for fit_subset, (x, y) in fitted_on.items():
        scored = subsets if fit_subset == joint else [fit_subset]  # a sensor's own probe: its own test
        for name, probe in probes(args.seed).items():
            probe.fit(x, y)
            cells = [f"{np.mean(probe.predict(tests[s][0]) == tests[s][1]):.3f}" if s in scored else "–"
                     for s in subsets]
            print(f"| {name} | {names[fit_subset]} | {np.mean(probe.predict(x) == y):.3f} | "
                  + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

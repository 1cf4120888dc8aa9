"""report.md of `m2vae-eval`: the metrics as one table row per subset, what each column
means (unit, which way is better, the constant guess a probe must beat), and the
figures with captions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

COLUMNS = (
    ("samples", "samples"),
    ("elbo", "ELBO"),
    ("kl_to_joint", "KL(joint ‖ subset)"),
    ("nb_accuracy", "NB accuracy"),
    ("shape_accuracy", "shape accuracy"),
    ("position_rmse", "position RMSE (m)"),
)
ERRORS_EXPLAINED = (
    "Errors are decoded from each subset's latent mean, in sensor units (images: mean absolute pixel "
    "error 0–255; LiDAR and depth images: RMSE in metres over valid returns). A modality outside the subset "
    "is imputed."
)
CAPTIONS = {
    "recon_grid.png": (
        "Each sensor of a few test samples with every sensor (column “real”; a row names the "
        "sample's test_dataset row and its time into the recording) beside its reconstruction "
        "from each subset's latent mean (“from …”); a cell marked “imputed” is decoded from a "
        "subset without that sensor. Range and depth images are coloured by metres, blank where "
        "there is no return."),
    "latent_scatter.png": (
        "The latent means of the test samples that have every sensor, one panel per subset, on "
        "the first two principal components of the joint latents (shared axes), coloured by class."),
}


def report_markdown(metrics: dict[str, Any], figures: Sequence[str]) -> str:
    """Markdown for `metrics` (the metrics.json dict) and the PNG file names in `figures`."""
    subsets: dict[str, dict[str, Any]] = metrics["subsets"]
    modalities = list(next(iter(subsets.values()))["recon_error"])
    columns = [(key, title) for key, title in COLUMNS if any(key in entry for entry in subsets.values())]
    bags = ", ".join(f"`{bag['path']}`" for bag in metrics["bags"])
    header = ["subset", *(title for _, title in columns), *(f"{m} error" for m in modalities)]
    weights = metrics.get("weights_sha256") or ""
    lines = [
        "# M²VAE evaluation",
        "",
        f"- model: `{metrics['model']}` (objective {metrics.get('objective')}, latent size "
        f"{metrics.get('latent_dim')}, weights sha256 {weights[:12]}…)",
        f"- test recordings: {bags}",
        *(f"- **warning**: {warning}" for warning in metrics.get("warnings", [])),
        f"- samples: {metrics['samples']}; classes: {', '.join(metrics['classes']) or 'none'}",
        f"- probes fitted on: {_probe_data(metrics['probes'])}",
        "",
        "One row per subset of the sensors: the model encodes only that subset's sensors.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name, entry in subsets.items():
        cells = [name, *(_cell(entry.get(key)) + _no_better(entry, key) for key, _ in columns)]
        cells += [_cell(entry["recon_error"][m]) for m in modalities]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *_legend(metrics, {key for key, _ in columns}), ""]
    for figure in figures:
        lines += [f"![{figure}]({figure})", ""]
        if figure in CAPTIONS:
            lines += [f"*{CAPTIONS[figure]}*", ""]
    return "\n".join(lines)


def _legend(metrics: dict[str, Any], shown: set[str]) -> list[str]:
    """One bullet per column shown: its unit, which way is better, and its baseline."""
    subsets, probes = metrics["subsets"], metrics["probes"]
    counts = {name: entry["samples"] for name, entry in subsets.items()}
    legend = [f"- **samples**: the test samples that have every sensor of the subset.{_uneven(counts)}",
              "- **ELBO** (nats per sample, higher is better): the subset's plain ELBO over its own "
              "sensors, with one z per sample (drawn with a fixed seed, the same at any --batch-size) and "
              "the model's modality weights and β. Compare a row between models trained with the same "
              "weights, not rows with each other: each scores different sensors.",
              "- **KL(joint ‖ subset)** (nats, lower is closer): how far the subset's posterior lies from "
              "the posterior given every sensor, on the samples with every sensor; 0 on the joint row."]
    if "nb_accuracy" in shown:
        labelled = _labelled(probes, metrics["samples"])
        legend.append(
            "- **NB accuracy** (higher is better), the seed's protocol: one Gaussian naive-Bayes "
            "classifier, fitted on the joint latents of the training data, applied to each subset's "
            f"latents, scored on the test samples with a class label ({labelled})."
            f"{_baseline(subsets, 'nb_accuracy', 'the most common class')}")
    if "shape_accuracy" in shown:
        legend.append("- **shape accuracy** (higher is better): the same predictions with the classes of one "
                      "shape merged (a LiDAR sees shape, not colour)."
                      f"{_baseline(subsets, 'shape_accuracy', 'the most common shape')}")
    if "position_rmse" in shown:
        legend.append("- **position RMSE** (metres, lower is better): the object's x, y in the robot frame "
                      "from one linear probe, fitted like the classifier."
                      f"{_baseline(subsets, 'position_rmse', 'the mean position', ' m')}")
    if any(_no_better(entry, key) for entry in subsets.values() for key in HIGHER_IS_BETTER):
        legend.append(f"- {NO_BETTER.strip()} marks a probe score no better than its row's constant guess: "
                      "that subset's latent gives the probe nothing it can use.")
    return [*legend, f"- **<sensor> error** (lower is better): {ERRORS_EXPLAINED}"]


# Probe columns whose constant guess a row may fail to beat: whether higher is better.
HIGHER_IS_BETTER = {"nb_accuracy": True, "shape_accuracy": True, "position_rmse": False}
NO_BETTER = " ✗"


def _no_better(entry: dict[str, Any], key: str) -> str:
    """NO_BETTER after a probe's score that does not beat its row's constant guess (an undertrained
    model's position RMSE above that of always guessing the mean), else ''."""
    value, guess = entry.get(key), entry.get("constant_guess", {}).get(key)
    if key not in HIGHER_IS_BETTER or value is None or guess is None:
        return ""
    beats = value > guess if HIGHER_IS_BETTER[key] else value < guess
    return "" if beats else NO_BETTER


def _uneven(counts: dict[str, int]) -> str:
    """A warning sentence when the rows score different samples, which their scores do not show."""
    if len(set(counts.values())) <= 1:
        return ""
    listed = ", ".join(f"{name} {n}" for name, n in counts.items())
    return (f" The rows cover different samples ({listed}): a sensor was missing from some, so a "
            "subset without it holds samples the others lack, and its row is not a like-for-like comparison.")


def _labelled(probes: dict[str, Any], samples: int) -> str:
    """How many of the test samples carry a class label, for the NB column's legend."""
    labelled = probes.get("test_labelled")
    return "count unknown" if labelled is None else f"{labelled} of {samples} have one"


def _baseline(subsets: dict[str, dict[str, Any]], key: str, what: str, unit: str = "") -> str:
    """What a constant guess scores on each row's samples (`constant_guess`): one figure when
    the rows agree, else one per row."""
    guesses = {name: entry["constant_guess"][key] for name, entry in subsets.items()
               if key in entry.get("constant_guess", {})}
    if not guesses:
        return ""
    figures = {f"{value:.3g}{unit}" for value in guesses.values()}
    if len(figures) == 1:
        return f" Always guessing {what} scores {figures.pop()} on the same samples."
    listed = ", ".join(f"{name} {value:.3g}{unit}" for name, value in guesses.items())
    return f" Always guessing {what} scores, on each row's samples: {listed}."


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _probe_data(probes: dict[str, Any]) -> str:
    """Where the probes' training latents came from, and how many each probe was fitted on."""
    if not probes["fitted_on"]:
        return "none (no ground truth in the test data)"
    return (f"{probes['fitted_on']} ({probes['train_samples']} samples; classifier on "
            f"{probes['classifier_samples']} labelled, position probe on {probes['regressor_samples']} "
            "located samples with every sensor)")

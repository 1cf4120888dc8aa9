"""report.md of `m2vae-eval`: the metrics as one table per subset, with the figures embedded."""

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
    "error 0–255; LiDAR: RMSE in metres over valid returns). A modality outside the subset is imputed."
)


def report_markdown(metrics: dict[str, Any], figures: Sequence[str]) -> str:
    """Markdown for `metrics` (the metrics.json dict) and the PNG file names in `figures`."""
    subsets: dict[str, dict[str, Any]] = metrics["subsets"]
    modalities = list(next(iter(subsets.values()))["recon_error"])
    columns = [(key, title) for key, title in COLUMNS if any(key in entry for entry in subsets.values())]
    bags = ", ".join(f"`{bag['path']}`" for bag in metrics["bags"])
    header = ["subset", *(title for _, title in columns), *(f"{m} error" for m in modalities)]
    lines = [
        "# M²VAE evaluation",
        "",
        f"- model: `{metrics['model']}`",
        f"- test recordings: {bags}",
        *(f"- **warning**: {warning}" for warning in metrics.get("warnings", [])),
        f"- samples: {metrics['samples']}; classes: {', '.join(metrics['classes']) or 'none'}",
        f"- probes fitted on: {_probe_data(metrics['probes'])}",
        "",
        ERRORS_EXPLAINED,
        "The naive-Bayes classifier and the position probe are fitted once, on the joint",
        "latents of the training data, and applied to every subset's latents. The ELBO is the",
        "subset's plain ELBO per sample, estimated with one sample of z per sample (a fixed seed),",
        "with the model's modality weights and β: it compares models trained with the same weights.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name, entry in subsets.items():
        cells = [name, *(_cell(entry.get(key)) for key, _ in columns)]
        cells += [_cell(entry["recon_error"][m]) for m in modalities]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for figure in figures:
        lines += [f"![{figure}]({figure})", ""]
    return "\n".join(lines)


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

"""Figures for TensorBoard and the evaluation report, drawn with matplotlib's Agg canvas.

`matplotlib.figure.Figure` is used directly instead of pyplot: no global figure state,
no GUI backend, safe in a training process and in headless CI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from m2vae_ros.codec.binning import bin_width
from m2vae_ros.codec.scan import NO_RETURN_THRESHOLD
from m2vae_ros.spec import ModalitySpec, ModelSpec, unsupported_kind
from m2vae_ros.subsets import parse_subset


def recon_figure(
    spec: ModelSpec,
    real: Mapping[str, np.ndarray],
    recons: Mapping[str, Mapping[str, np.ndarray]],
    masks: Mapping[str, np.ndarray] | None = None,
    sample_names: Sequence[str] | None = None,
) -> Figure:
    """Real sensors beside their reconstructions from each subset.

    `real[name]` is [K, *shape] for K samples; `recons[subset_name][name]` the same from
    that subset's latent mean; `sample_names` label the K samples (default `#k`), so a
    reader can find them in the data. One row per (sample, modality); column 0 is the real data,
    then one column per subset, so imputation of a missing sensor is read along a row;
    a cell decoded from a subset without its sensor is marked "imputed".
    """
    subsets = list(recons)
    names = spec.names
    n_samples = len(next(iter(real.values())))
    rows = [(k, m) for k in range(n_samples) for m in spec.modalities]
    fig = Figure(figsize=(2.2 * (1 + len(subsets)), 2.0 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), 1 + len(subsets), squeeze=False)
    for r, (k, modality) in enumerate(rows):
        mask = masks[modality.name][k] if masks and modality.name in masks else None
        _draw(axes[r][0], modality, real[modality.name][k], mask)
        sample = sample_names[k] if sample_names else f"#{k}"
        axes[r][0].set_ylabel(f"{sample}\n{modality.name}{_y_unit(modality)}", fontsize=8)
        for c, subset in enumerate(subsets, start=1):
            _draw(axes[r][c], modality, recons[subset][modality.name][k], None)
            if not parse_subset(subset, names) >> names.index(modality.name) & 1:
                axes[r][c].text(0.03, 0.97, "imputed", transform=axes[r][c].transAxes, fontsize=7,
                                va="top", color="white", backgroundcolor="tab:red")
    for c, title in enumerate(["real", *(f"from {subset}" for subset in subsets)]):
        axes[0][c].set_title(title, fontsize=9)
    return fig


def latent_scatter_figure(
    latents: Mapping[str, np.ndarray], labels: np.ndarray, class_names: Sequence[str], joint: str
) -> Figure:
    """2-D PCA of each subset's latent means, coloured by class.

    One projection (fitted on the `joint` subset's latents) is shared by all panels, so
    a subset whose clusters sit where the joint ones do is visibly well aligned.
    """
    ref = latents[joint]
    centre = ref.mean(axis=0)
    _, _, vt = np.linalg.svd(ref - centre, full_matrices=False)
    basis = vt[:2].T if vt.shape[0] >= 2 else np.pad(vt.T, ((0, 0), (0, 1)))
    fig = Figure(figsize=(3.2 * len(latents), 3.2), layout="constrained")
    # Shared axes: a subset whose clusters sit away from the joint ones must look it.
    axes = fig.subplots(1, len(latents), squeeze=False, sharex=True, sharey=True)[0]
    # Only the classes present, one colour each: ids need not be dense (a marker id of 50
    # lists 49 placeholder names before it), and the default cycle repeats after ten.
    present = [int(c) for c in np.unique(labels) if c >= 0]
    colours = (matplotlib.colormaps["tab10"].colors if len(present) <= 10
               else matplotlib.colormaps["turbo"](np.linspace(0.0, 1.0, len(present))))
    for ax, (subset, z) in zip(axes, latents.items(), strict=True):
        xy = (z - centre) @ basis
        for i, c in enumerate(present):
            rows = labels == c
            ax.scatter(xy[rows, 0], xy[rows, 1], s=4, color=colours[i], label=class_names[c])
        unlabelled = labels < 0
        if unlabelled.any():
            ax.scatter(xy[unlabelled, 0], xy[unlabelled, 1], s=4, c="lightgrey", label="no label")
        ax.set_title(subset, fontsize=9)
        ax.set_xlabel(f"PC1 of the {joint} latent means", fontsize=8)
    axes[0].set_ylabel("PC2", fontsize=8)
    axes[-1].legend(fontsize=7, markerscale=2, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig


def _y_unit(modality: ModalitySpec) -> str:
    """What a row's y axis (and a range image's colour) measures, for the row's label."""
    if modality.kind == "scan":
        return "\nrange (m)"
    if modality.kind == "range_image":
        return f"\nelevation (°)\ncolour: 0–{modality.preprocess.range_max:g} m"
    if modality.kind == "depth":
        return f"\ncolour: 0–{modality.preprocess.range_max:g} m"
    if modality.kind in ("image", "vector"):
        return ""
    raise unsupported_kind(modality, "figure")


def _draw(ax, modality: ModalitySpec, value: np.ndarray, mask: np.ndarray | None) -> None:
    """One sample of one modality: images as images, depth images in metres, scans as range-vs-bearing
    curves, range images as range over bearing and elevation."""
    if modality.kind == "image":
        img = np.clip(np.moveaxis(value, 0, -1), 0.0, 1.0)
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_xticks([])
        ax.set_yticks([])
    elif modality.kind == "depth":  # metres; pixels without a return blank, as in the 32FC1 reconstruction
        p = modality.preprocess
        returns = mask[0] if mask is not None else value[0] < NO_RETURN_THRESHOLD
        depths = np.where(returns, value[0] * p.range_max, np.nan)
        ax.imshow(depths, cmap="viridis", vmin=0.0, vmax=p.range_max, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
    elif modality.kind == "scan":
        p = modality.preprocess
        ranges = value[0] * p.range_max
        if mask is not None:
            ranges = np.where(mask.reshape(ranges.shape), ranges, np.nan)
        step = bin_width(p.angle_min, p.angle_max, len(ranges))
        bearings = np.degrees(p.angle_min + step * np.arange(len(ranges)))
        ax.plot(bearings, ranges, lw=0.8)
        ax.set_ylim(0.0, p.range_max)
        ax.set_xlabel("bearing (°)", fontsize=7)
        ax.tick_params(labelsize=7)
    elif modality.kind == "range_image":
        # Metres over bearing × elevation as the sensor sees them (row 0 is the top ring, the
        # bearing runs from −180° as the bins do); cells without a return stay blank, as in the
        # reconstructed cloud, which has no point there.
        p = modality.preprocess
        returns = mask[0] if mask is not None else value[0] < NO_RETURN_THRESHOLD
        ranges = np.where(returns, value[0] * p.range_max, np.nan)
        # The outer rings' centres lie on fov_up_deg and fov_down_deg (codec.pointcloud.ring_elevations).
        half_ring = (p.fov_up_deg - p.fov_down_deg) / (p.rings - 1) / 2 if p.rings > 1 else 0.0
        ax.imshow(ranges, cmap="viridis", vmin=0.0, vmax=p.range_max, aspect="auto", interpolation="nearest",
                  extent=(-180.0, 180.0, p.fov_down_deg - half_ring, p.fov_up_deg + half_ring))
        ax.set_xticks([-180, -90, 0, 90, 180])
        ax.set_xlabel("bearing (°)", fontsize=7)
        ax.tick_params(labelsize=7)
    elif modality.kind == "vector":
        ax.plot(value, lw=0.8)
        ax.tick_params(labelsize=6)
    else:
        raise unsupported_kind(modality, "figure")

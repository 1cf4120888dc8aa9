"""Score a trained model on a prepared dataset, subset by subset (the `m2vae-eval` metrics).

One pass over the data in batches encodes every subset, decodes every modality from
each subset's latent mean (so a sensor outside the subset is scored on its imputation),
and accumulates the errors; only latent means and per-sample scalars are kept, so
memory does not grow with image size. A second pass, in chunks of a fixed size, samples
the ELBO, so that its draws do not depend on the batch size the caller chose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from m2vae_training.metrics import Probes, ReconstructionError, constant_guess, fit_probes, located

from m2vae_ros.model import M2VAE
from m2vae_ros.objectives import evaluation_generator, kl_normal, subset_loss
from m2vae_ros.subsets import all_subsets, members, subset_name
from m2vae_ros.trainer import ArrayDataset

if TYPE_CHECKING:
    from m2vae_training.dataset import PreparedDataset

# Rows per chunk of the ELBO's pass. The draws of z follow the chunks (one generator, chunk after
# chunk), so a fixed size gives the same ELBO at any --batch-size; 128 was the batch size it
# was first scored with.
ELBO_CHUNK_ROWS = 128


@dataclass
class SubsetScores:
    """Everything one subset produced over the dataset (rows = dataset samples)."""

    present: np.ndarray  # bool [N]: every member of the subset was recorded
    means: np.ndarray  # float32 [N, latent_dim]; rows outside `present` are meaningless
    # KL(q(z|joint) ‖ q(z|S)), the direction of M²VAE's α terms; float64 [N], meaningful where
    # the joint subset is present
    kl_to_joint: np.ndarray
    errors: dict[str, ReconstructionError]
    elbo_sum: float = 0.0  # Σ over present rows of the plain ELBO of q(z|subset)


def subset_present(available: np.ndarray, subset: int) -> np.ndarray:
    """Rows of an availability matrix [N, n_modalities] in which all of `subset` was recorded."""
    return np.asarray(available)[:, members(subset)].all(axis=1)


def _batch(data: ArrayDataset, rows: slice, device: torch.device) -> dict[str, torch.Tensor]:
    """Tensors of consecutive dataset rows, read (and checked) by the Trainer's ArrayDataset."""
    arrays, _ = data.batch(np.arange(rows.start, rows.stop))
    return {name: torch.from_numpy(values).to(device) for name, values in arrays.items()}


@torch.inference_mode()
def score_subsets(
    model: M2VAE, dataset: PreparedDataset, *, batch_size: int = 128
) -> dict[int, SubsetScores]:
    """Latent means, ELBO, KL(q(z|joint) ‖ q(z|subset)) and reconstruction errors of every subset."""
    device = next(model.parameters()).device
    model.eval()
    spec = model.spec
    subsets = all_subsets(len(spec.names))
    joint = subsets[-1]
    n = len(dataset.available)
    scores = {
        s: SubsetScores(
            present=subset_present(dataset.available, s),
            means=np.zeros((n, spec.latent_dim), np.float32),
            kl_to_joint=np.full(n, np.nan),
            errors={m.name: ReconstructionError(m) for m in spec.modalities},
        )
        for s in subsets
    }
    data = ArrayDataset(dataset.arrays, dataset.available)
    for start in range(0, n, batch_size):
        rows = slice(start, min(start + batch_size, n))
        x = _batch(data, rows, device)
        posteriors = model.encode_subsets(x, subsets)
        joint_mean, joint_logvar = posteriors[joint]
        for s, (mean, logvar) in posteriors.items():
            score = scores[s]
            score.means[rows] = mean.float().cpu().numpy()
            score.kl_to_joint[rows] = kl_normal(joint_mean, joint_logvar, mean, logvar).double().cpu().numpy()
            for i, m in enumerate(spec.modalities):
                target = score.present[rows] & dataset.available[rows, i]
                if not target.any():
                    continue
                pred = model.decode(mean, m.name).float().cpu().numpy()[target]
                real = x[m.name].cpu().numpy()[target]
                mask = dataset.masks[m.name][rows][target] if m.has_mask else None
                score.errors[m.name].add(pred, real, mask)
    noise = evaluation_generator(device)
    for start in range(0, n, ELBO_CHUNK_ROWS):
        rows = slice(start, min(start + ELBO_CHUNK_ROWS, n))
        x = _batch(data, rows, device)
        for s, score in scores.items():
            score.elbo_sum += _elbo_sum(model, x, s, score.present[rows], noise)
    return scores


@torch.no_grad()
def reconstruct_from_each_subset(
    model: M2VAE, samples: dict[str, np.ndarray]
) -> dict[str, dict[str, np.ndarray]]:
    """{subset name: {modality: decoded from q(z|subset)'s mean}} for samples with every modality."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = {name: torch.from_numpy(np.asarray(a, np.float32)).to(device) for name, a in samples.items()}
    subsets = all_subsets(len(model.names))
    posteriors = model.encode_subsets(x, subsets)
    out = {
        subset_name(s, model.names): {name: model.decode(mean, name).cpu().numpy() for name in model.names}
        for s, (mean, _) in posteriors.items()
    }
    model.train(was_training)
    return out


def _elbo_sum(
    model: M2VAE, x: dict[str, torch.Tensor], subset: int, present: np.ndarray, noise: torch.Generator
) -> float:
    """Σ over the `present` rows of the plain ELBO of q(z|subset), the objectives' `elbo/<S>` term.

    The plain ELBO (not the training objective, which differs between m2vae, jmvae and
    mvae) is what makes subsets and objectives comparable; one sample of z per row, drawn
    from `noise` (`evaluation_generator`), makes it an estimate of the ELBO. Its
    log-likelihoods carry the spec's modality weights and its KL the spec's β, as in
    training: it compares models that share those settings, not models that differ in them.
    `subset_loss` computes the whole objective of `subset` (and of its sub-subsets for m2vae)
    and only this one term is kept: evaluation runs once, and one code path for the ELBO
    keeps it identical to what training logs. The term draws first from `noise`.
    """
    count = int(present.sum())
    if count == 0:
        return 0.0
    rows = torch.from_numpy(np.flatnonzero(present)).to(next(iter(x.values())).device)
    terms = subset_loss(model, {name: values[rows] for name, values in x.items()}, subset,
                        generator=noise).terms
    return float(terms[f"elbo/{subset_name(subset, model.names)}"]) * count


def joint_probes(
    model: M2VAE, train: PreparedDataset, class_names: Sequence[str], *, batch_size: int = 128
) -> Probes:
    """The one classifier + position regressor of the protocol, fitted on training joint latents.

    `class_names` names every label index of both the training and the test data (the
    test recording may hold a class the training data never showed).
    """
    joint = (1 << len(model.spec.names)) - 1
    means, present = latent_means(model, train, joint, batch_size=batch_size)
    labels, positions = train.labels[present], train.positions[present]
    return fit_probes(means[present], labels, positions, tuple(class_names))


@torch.inference_mode()
def latent_means(
    model: M2VAE, dataset: PreparedDataset, subset: int, *, batch_size: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """q(z|subset)'s mean for every row [N, latent_dim] and the rows that hold the subset [N];
    the other rows' means are meaningless (encoded from zeros)."""
    device = next(model.parameters()).device
    present = subset_present(dataset.available, subset)
    means = np.zeros((len(present), model.spec.latent_dim), np.float32)
    data = ArrayDataset(dataset.arrays, dataset.available)
    model.eval()
    for start in range(0, len(present), batch_size):
        rows = slice(start, min(start + batch_size, len(present)))
        means[rows] = model.encode(_batch(data, rows, device), subset)[0].float().cpu().numpy()
    return means, present


def scorable(data: PreparedDataset) -> dict[str, bool]:
    """Which probe metrics `data` can score: `nb_accuracy` (some sample has a class label) and
    `position_rmse` (some sample has an object position)."""
    return {"nb_accuracy": bool((data.labels >= 0).any()),
            "position_rmse": bool(located(data.positions).any())}


def has_ground_truth(data: PreparedDataset) -> bool:
    """Whether any sample carries a class label or an object position (what the probes score)."""
    return any(scorable(data).values())


def subset_metrics(
    model: M2VAE, scores: dict[int, SubsetScores], test: PreparedDataset, probes: Probes | None
) -> dict[str, dict[str, Any]]:
    """The `subsets` section of metrics.json: one entry per subset, named as in subsets.py.

    Probe metrics (nb_accuracy, shape_accuracy, position_rmse) appear only when `probes`
    are given and the test data has the matching ground truth, and with them under
    `constant_guess` what a constant guess scores on the same rows (their baseline).
    """
    names = model.spec.names
    joint = (1 << len(names)) - 1
    truth = scorable(test)
    has_labels = probes is not None and truth["nb_accuracy"]
    has_positions = probes is not None and truth["position_rmse"]
    out: dict[str, dict[str, Any]] = {}
    for s, score in scores.items():
        rows = score.present
        both = rows & scores[joint].present
        entry: dict[str, Any] = {
            "samples": int(rows.sum()),
            "elbo": finite_or_none(score.elbo_sum / rows.sum()) if rows.any() else None,
            "recon_error": {name: finite_or_none(err.value()) for name, err in score.errors.items()},
            "kl_to_joint": _mean(score.kl_to_joint[both]),
        }
        z, labels, positions = score.means[rows], test.labels[rows], test.positions[rows]
        if has_labels:
            entry["nb_accuracy"] = finite_or_none(probes.accuracy(z, labels))
            entry["shape_accuracy"] = finite_or_none(probes.shape_accuracy(z, labels))
        if has_positions:
            entry["position_rmse"] = finite_or_none(probes.position_rmse(z, positions))
        if probes is not None:
            guess = constant_guess(labels, positions, probes.class_names)
            entry["constant_guess"] = {key: guess[key] for key in guess if entry.get(key) is not None}
        out[subset_name(s, names)] = entry
    return out


def _mean(values: np.ndarray) -> float | None:
    return finite_or_none(float(values.mean())) if len(values) else None


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: a metric that could not be computed is null, never a made-up number."""
    return value if np.isfinite(value) else None

"""`m2vae-eval`: score a trained model on test recordings, subset by subset.

    m2vae-eval --model RUN_DIR/model --bag BAG [BAG ...] --out DIR [--topic MODALITY=TOPIC ...]
               [--train-bag BAG ...] [--device auto|cpu|cuda[:i]] [--batch-size B]

The test bags are prepared with the model's own spec (topics, preprocessing and sync
settings from the artifact; --topic overrides topics in the bags named on the command
line, --bag and --train-bag) into DIR/test_dataset. The seed's
probes (one naive-Bayes classifier, one linear position regressor) are fitted on the
joint latents of the TRAINING data: the dataset named in the artifact's provenance when
it is still there and unchanged (sha256 of its manifest), else rebuilt from the
provenance's bags when they still have their recorded size and mtime, else from
--train-bag (which, when given, always wins). Writes DIR/metrics.json, DIR/report.md,
and DIR/recon_grid.png and DIR/latent_scatter.png when some test sample has every
sensor. Test bags the model or the probes were trained on are scored, with a warning on
stderr and under ``warnings`` in metrics.json and report.md, as is a probe that the
training data cannot fit. The outputs of an earlier evaluation in DIR are removed first,
so a failed run leaves none that describe other recordings; files of those names without
the test_dataset an evaluation builds first are someone else's, and DIR is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import reprlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
from m2vae_training.bags import BagError, fingerprint, storage_identity
from m2vae_training.config import ConfigError, TrainConfig, parse_timeout, parse_topic_overrides, with_topics
from m2vae_training.dataset import (
    LABEL_WINDOW_NS,
    MANIFEST,
    DatasetError,
    PreparedDataset,
    build_dataset,
    common_class_names,
    is_prepared_dataset,
    load_dataset,
)
from m2vae_training.dataset_notes import no_samples_error, topic_hints
from m2vae_training.error_line import print_error
from m2vae_training.evaluation import (
    SubsetScores,
    has_ground_truth,
    joint_probes,
    reconstruct_from_each_subset,
    scorable,
    score_subsets,
    subset_metrics,
)
from m2vae_training.figures import latent_scatter_figure, recon_figure
from m2vae_training.interrupts import interrupted_exit_status, sigterm_as_sigint
from m2vae_training.metrics import Probes, located
from m2vae_training.report import report_markdown

from m2vae_ros.artifact import METADATA_FILE, ArtifactError, load_model
from m2vae_ros.atomic import write_atomic
from m2vae_ros.cli_args import positive_int
from m2vae_ros.devices import resolve_device
from m2vae_ros.model import M2VAE
from m2vae_ros.spec import ModelSpec, SpecError, parse_number
from m2vae_ros.subsets import all_subsets, subset_name

PROG = "m2vae-eval"
MARKER_TYPE = "visualization_msgs/msg/Marker"  # the ground truth's message type
FIGURE_SAMPLES = 4
FIGURES = ("recon_grid.png", "latent_scatter.png")
OUTPUTS = ("metrics.json", "report.md", *FIGURES)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="Evaluate an M²VAE artifact on test recordings.")
    parser.add_argument("--model", required=True, type=Path, help="artifact directory (RUN_DIR/model)")
    parser.add_argument("--bag", nargs="+", required=True, help="test recordings")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--topic", action="append", default=[], metavar="MODALITY=TOPIC",
                        help="read a modality from another topic in the --bag and --train-bag recordings "
                             "(repeatable)")
    parser.add_argument("--labels-topic", default=None, metavar="TOPIC",
                        help="ground-truth visualization_msgs/Marker topic in the --bag and --train-bag "
                             "recordings (default: the one training read)")
    parser.add_argument("--train-bag", nargs="+", default=None,
                        help="training recordings for the probes (default: the artifact's provenance)")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:<index> (default: cpu)")
    parser.add_argument("--batch-size", type=positive_int, default=128,
                        help="samples per forward pass: memory and speed depend on it, the ELBO does "
                             "not (default: 128)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sigterm_as_sigint()  # `kill` and `timeout` end it as Ctrl-C does: one line, no traceback
    try:
        evaluate(args)
    # RuntimeError: torch's, such as running out of memory on the device.
    except (ArtifactError, ConfigError, DatasetError, BagError, ValueError, OSError, RuntimeError) as exc:
        print_error(PROG, exc)
        return 2
    except KeyboardInterrupt:  # the outputs of an earlier evaluation were removed first: none is stale
        built = [str(args.out / name) for name in ("test_dataset", "train_dataset")
                 if is_prepared_dataset(args.out / name)]
        reused = f" ({' and '.join(built)} will be reused)" if built else ""
        print(f"{PROG}: interrupted; run it again to finish{reused}", file=sys.stderr)
        return interrupted_exit_status()  # 130 for Ctrl-C, 143 for a SIGTERM
    return 0


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a directory")
    # An earlier m2vae-eval's outputs stand beside the test dataset it built first; files of these
    # names without one are someone else's (notes in a report.md), which are not overwritten.
    foreign = [name for name in OUTPUTS if (out / name).exists()]
    if foreign and not is_prepared_dataset(out / "test_dataset"):
        raise ValueError(f"--out {out} holds {', '.join(foreign)}, which no m2vae-eval wrote (there is no "
                         "test_dataset beside them); give a new or empty directory")
    out.mkdir(parents=True, exist_ok=True)
    for stale in OUTPUTS:  # first: whatever fails below must not leave them beside a new attempt
        (out / stale).unlink(missing_ok=True)
    device, warning = resolve_device(args.device)
    if warning:
        print(f"{PROG}: {warning}", file=sys.stderr)
    loaded = load_model(args.model, device=device)
    model, spec = loaded.model, loaded.spec
    metadata_path = Path(args.model) / METADATA_FILE
    provenance = _provenance(loaded.metadata, metadata_path)

    config = _config_from_artifact(spec, provenance, metadata_path)
    if args.labels_topic:  # for the probes' training data too, which holds the markers on the same topic
        config = dataclasses.replace(config, labels_topic=args.labels_topic)
    given_config = with_topics(config, parse_topic_overrides(args.topic))
    test = build_dataset(args.bag, given_config, out / "test_dataset")
    if len(test) == 0:
        raise no_samples_error(test.spec.modalities, test.manifest, "the test bags")
    warnings = (_overlap_warnings(test.manifest["bags"], provenance.get("bags") or [])
                + _silent_sensors(test) + _ground_truth_warnings(test))
    for warning in warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    scores = score_subsets(model, test, batch_size=args.batch_size)
    probes, probe_info, class_names = None, {"fitted_on": None}, list(test.class_names)
    if has_ground_truth(test):
        train, fitted_on = _training_data(args.train_bag, config, given_config, provenance, out)
        class_names = common_class_names(train.class_names, test.class_names)
        probes = joint_probes(model, train, class_names, batch_size=args.batch_size)
        probe_info = {"fitted_on": fitted_on, "train_samples": len(train),
                      "classifier_samples": probes.labelled, "regressor_samples": probes.located,
                      "test_labelled": int((test.labels >= 0).sum()),
                      "test_located": int(located(test.positions).sum())}
        later = _probe_warnings(test, train, probes, provenance)
        for warning in later:
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
        warnings += later
    figures = _figures(model, test, scores, class_names, out)
    if not figures:
        warnings.append("no test sample has every sensor, so there are no figures (they show each "
                        "sensor beside its reconstruction from every subset)")
        print(f"{PROG}: warning: {warnings[-1]}", file=sys.stderr)
    metrics = {
        "model": str(Path(args.model).resolve()),
        # What identifies the model when its directory has been trained into again.
        "objective": spec.objective,
        "latent_dim": spec.latent_dim,
        "weights_sha256": (loaded.metadata.get("weights") or {}).get("sha256"),
        "bags": test.manifest["bags"],
        "samples": len(test),
        "warnings": warnings,
        "classes": class_names,
        "probes": probe_info,
        "subsets": subset_metrics(model, scores, test, probes),
    }
    write_atomic(out / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
    write_atomic(out / "report.md", report_markdown(metrics, figures).encode())
    print(_summary(metrics, out))
    return metrics


def _provenance(metadata: dict[str, Any], path: Path) -> dict[str, Any]:
    """model.yaml's `provenance`, the shape of each part read here checked.

    It is plain YAML a user may edit; a wrong shape must be one line naming the field, not a
    traceback from deep in the evaluation. Bags and dataset only pick the probes' default
    training data, but the bags also say whether the test recordings are held out: a bad
    entry is an error, not silently skipped.
    """
    provenance = metadata.get("provenance") or {}
    _require(isinstance(provenance, dict), path, "provenance", "a mapping", provenance)
    for key in ("sync", "dataset"):
        _require(isinstance(provenance.get(key) or {}, dict), path, f"provenance.{key}", "a mapping",
                 provenance.get(key))
    directory = (provenance.get("dataset") or {}).get("directory", "")
    _require(isinstance(directory, str), path, "provenance.dataset.directory", "a path", directory)
    bags = provenance.get("bags") or []
    _require(isinstance(bags, list), path, "provenance.bags", "a list of recordings", bags)
    for i, bag in enumerate(bags):
        _require(isinstance(bag, dict) and isinstance(bag.get("path"), str), path, f"provenance.bags[{i}]",
                 "a mapping with a path", bag)
    labels_topic = provenance.get("labels_topic", TrainConfig.labels_topic)
    _require(isinstance(labels_topic, str) and bool(labels_topic), path, "provenance.labels_topic",
             "a topic name", labels_topic)
    return provenance


def _require(holds: bool, path: Path, field: str, expected: str, value: Any) -> None:
    if not holds:
        raise ArtifactError(f"{path}: {field} must be {expected}, got {reprlib.repr(value)}")


def _config_from_artifact(spec: ModelSpec, provenance: dict[str, Any], path: Path) -> TrainConfig:
    """The dataset settings training used: the artifact's spec plus its recorded labels/sync settings.

    The message types are left to the recordings, as the node's `msg_type` parameter leaves
    them: a camera trained on Image is scored on a recording of CompressedImage too.
    """
    sync = provenance.get("sync") or {}
    untyped = tuple(dataclasses.replace(m, msg_type="") for m in spec.modalities)
    where = f"{path}: provenance.sync"
    try:
        slop = parse_number(sync.get("slop", TrainConfig.slop), "float", f"{where}.slop")
    except SpecError as exc:
        raise ArtifactError(str(exc)) from None
    timeout = parse_timeout(sync.get("timeout", TrainConfig.timeout), spec.names, f"{where}.timeout")
    try:
        return TrainConfig(
            spec=dataclasses.replace(spec, modalities=untyped),
            labels_topic=provenance.get("labels_topic", TrainConfig.labels_topic),
            slop=slop,
            timeout=timeout,
        )
    except ConfigError as exc:  # the slop's range, whose message names only the key
        raise ArtifactError(f"{where}.{exc}") from None


def _training_data(
    train_bags: list[str] | None,
    config: TrainConfig,
    given_config: TrainConfig,
    provenance: dict[str, Any],
    out: Path,
) -> tuple[PreparedDataset, str]:
    """The training recordings' dataset for the probes, and a line saying where it came from.

    `--train-bag` recordings are read like the test bags (`given_config`: with --topic); the
    recorded training bags like training read them (`config`: the artifact's topics).
    """
    if train_bags:
        dataset = build_dataset(train_bags, given_config, out / "train_dataset")
        return dataset, "--train-bag " + " ".join(str(Path(bag).resolve()) for bag in train_bags)
    if not provenance.get("dataset") and not provenance.get("bags"):
        raise ValueError("the artifact names no training data (a model saved from Python has none); pass "
                         "the training recordings with --train-bag")
    if dataset := _recorded_dataset(provenance.get("dataset") or {}, config.labels_topic):
        return dataset, f"training dataset {dataset.directory}"
    recorded_bags = provenance.get("bags") or []
    if recorded_bags and all(_unchanged(b) for b in recorded_bags):
        bags = [b["path"] for b in recorded_bags]
        return build_dataset(bags, config, out / "train_dataset"), "training bags " + " ".join(bags)
    raise ValueError(
        "the training data named in the artifact's provenance is gone or changed; "
        "pass the training recordings with --train-bag"
    )


def _recorded_dataset(recorded: dict[str, Any], labels_topic: str) -> PreparedDataset | None:
    """The training dataset the artifact names, while it is the one training read (its
    manifest's sha256) and labelled from `labels_topic`; else None (the bags are reread)."""
    manifest = Path(recorded.get("directory", "")) / MANIFEST
    if not recorded or not manifest.is_file():
        return None
    if hashlib.sha256(manifest.read_bytes()).hexdigest() != recorded.get("manifest_sha256"):
        return None
    dataset = load_dataset(manifest.parent)
    return dataset if dataset.manifest["labels"]["topic"] == labels_topic else None


def _probe_warnings(
    test: PreparedDataset, train: PreparedDataset, probes: Probes, provenance: dict[str, Any]
) -> list[str]:
    """Why the probes' training data could not fit a probe the test data could score (it has no
    ground truth at all, or too few labels or positions); test bags the probes saw."""
    test_has = scorable(test)
    warnings = (_ground_truth_warnings(train, "the probes' training recordings", "so no probe can be fitted")
                or [reason for metric, reason in probes.unfitted().items() if test_has[metric]])
    model_bags = {identity for b in provenance.get("bags") or [] for identity in _identities(b)}
    probe_bags = [b for b in train.manifest["bags"] if not model_bags & set(_identities(b))]
    return warnings + _overlap_warnings(test.manifest["bags"], probe_bags, "the probes' training recordings")


def _unchanged(recorded: dict[str, Any]) -> bool:
    """Whether a training bag still is what the model was trained on: same size and newest mtime.

    A bag re-recorded under the same name must not become the probes' training data.
    """
    if not Path(recorded["path"]).exists():
        return False
    return _contents(fingerprint(recorded["path"])) == _contents(recorded)


def _contents(bag: dict[str, Any]) -> tuple[Any, Any]:
    """A recording's fingerprint without its path: what identifies the same data under another name."""
    return bag.get("bytes"), bag.get("mtime_ns")


def _identities(bag: dict[str, Any]) -> list[tuple[Any, Any]]:
    """What identifies a recording: its fingerprint's contents and, while the files on disk are
    still the ones fingerprinted, their message files' size and mtime.

    The second makes a bag directory and the .mcap inside it one recording (their
    fingerprints differ by metadata.yaml), whichever of the two training or test named. A
    bag re-recorded at a training bag's path since is new data, so it gets only the first.
    """
    found = storage_identity(bag["path"]) if _unchanged(bag) else None
    return [_contents(bag)] + ([found] if found else [])


def _overlap_warnings(
    test_bags: list[dict[str, Any]],
    training_bags: list[dict[str, Any]],
    what: str = "training recordings of this model",
) -> list[str]:
    """One warning when test recordings are ones the model was trained on, else none.

    Scores on training data overstate what the model does on new data. Recordings match
    by size and newest file mtime (`_identities`: the fingerprint without the path, or the
    message files alone), so a copy made with its timestamps (cp -a, rsync -a) and a bag
    directory's .mcap are recognised too. Only a warning: scoring on the training data can
    be deliberate.
    """
    trained = {identity: b.get("path") for b in training_bags for identity in _identities(b)}
    same = [(b["path"], trained[known[0]]) for b in test_bags
            if (known := [identity for identity in _identities(b) if identity in trained])]
    if not same:
        return []
    pairs = ", ".join(test if test == train else f"{test} (= {train})" for test, train in same)
    return [f"test recordings {pairs} are {what} (same size and mtime): these scores are not held-out"]


def _figures(
    model: M2VAE, test: PreparedDataset, scores: dict[int, SubsetScores], class_names: list[str], out: Path
) -> list[str]:
    """recon_grid.png and latent_scatter.png from samples that have every sensor; names written."""
    joint = all_subsets(len(model.names))[-1]
    complete = np.flatnonzero(scores[joint].present)
    if not len(complete):
        return []
    rows = np.unique(complete[np.linspace(0, len(complete) - 1, FIGURE_SAMPLES).astype(int)])
    real = {name: np.asarray(test.arrays[name][rows], np.float32) for name in model.names}
    masks = {name: np.asarray(m[rows]) for name, m in test.masks.items()}
    names = [_sample_name(test, row) for row in rows]
    recon = recon_figure(model.spec, real, reconstruct_from_each_subset(model, real), masks, names)
    latents = {subset_name(s, model.names): score.means[complete] for s, score in scores.items()}
    scatter = latent_scatter_figure(
        latents, np.asarray(test.labels[complete]), class_names, subset_name(joint, model.names)
    )
    for name, figure in zip(FIGURES, (recon, scatter), strict=True):
        png = io.BytesIO()
        figure.savefig(png, format="png", dpi=80)
        write_atomic(out / name, png.getvalue())
    return list(FIGURES)


def _sample_name(test: PreparedDataset, row: int) -> str:
    """Where a figure's sample is: its test_dataset row, and its time into its recording."""
    bag = test.bag_index[row]
    seconds = (test.stamps[row] - test.stamps[test.bag_index == bag].min()) / 1e9
    recording = f"bag {bag}, " if len(test.manifest["bags"]) > 1 else ""
    return f"row {row} ({recording}{seconds:.1f} s)"


def _silent_sensors(test: PreparedDataset) -> list[str]:
    """A warning per modality that no test sample has: its subsets have nothing to score.

    Decided per sensor, not per topic: a sensor that shares its topic with another (one point
    cloud read as a scan and as a range image, or a --topic naming another sensor's topic)
    gets nothing while the topic itself decodes fine for the other.
    """
    warnings = []
    for m in test.silent_modalities():
        stats = test.manifest["topics"].get(m.topic, {})
        failures = test.manifest.get("shared_topic_failures", {}).get(m.name) or stats.get("failures") or {}
        hint = topic_hints(m, test.manifest)
        warnings.append(f"modality {m.name}: topic {m.topic} gave it no usable message "
                        f"({stats.get('messages', 0)} messages, failures {failures}); every subset "
                        "with it has 0 samples and no metrics" + (f"; {hint} (--topic {m.name}=TOPIC)"
                                                                 if hint else ""))
    return warnings


def _ground_truth_warnings(
    data: PreparedDataset, what: str = "the test recordings",
    consequence: str = "so there are no class or position probes",
) -> list[str]:
    """A warning when `data` has no ground truth, saying why: the labels topic is not
    recorded, none of its messages reads as a ground-truth Marker, or none lies near a
    sample. Without it there are no class or position probes, which on a recording with
    markers on another topic means a wrong topic."""
    if has_ground_truth(data):
        return []
    labels = data.manifest.get("labels", {})
    topic, recorded = labels.get("topic"), data.manifest.get("recorded_topics", {})
    if topic not in recorded:
        why = f"labels topic {topic} is not in {what}"
    elif labels.get("failures"):
        why = (f"labels topic {topic}: no message could be read as a ground-truth {MARKER_TYPE} "
               f"(failures {labels['failures']})")
    else:
        why = (f"labels topic {topic}: its {labels.get('markers', 0)} object markers label no sample (DELETE "
               f"markers and negative ids are no objects; a marker labels samples within "
               f"{LABEL_WINDOW_NS / 1e9:g} s of its stamp)")
    others = sorted(t for t, msgtype in recorded.items() if msgtype == MARKER_TYPE and t != topic)
    elsewhere = f"; the recordings have Marker topics {', '.join(others)} (--labels-topic TOPIC)"
    return [f"{why}, {consequence}{elsewhere if others else ''}"]


def _summary(metrics: dict[str, Any], out: Path) -> str:
    parts = []
    for name, entry in metrics["subsets"].items():
        shown = {"ELBO": entry["elbo"], "NB": entry.get("nb_accuracy")}
        scores = ", ".join(f"{k} {v:.4g}" for k, v in shown.items() if v is not None)
        parts.append(f"{name}: {scores if entry['samples'] else 'no samples'}")
    return f"{metrics['samples']} samples; " + "; ".join(parts) + f"; report {out / 'report.md'}"


if __name__ == "__main__":
    sys.exit(main())

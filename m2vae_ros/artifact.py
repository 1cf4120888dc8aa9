"""The model artifact: `model.safetensors` (weights) + `model.yaml` (everything else).

Training writes it, the live node and the in-memory API read it. Weights are stored with
safetensors (no pickle, so loading a file from someone else cannot run code); the YAML
holds the full ModelSpec, so the node rebuilds the exact preprocessing and networks,
plus the sha256 of the weights so a corrupted or half-written weights file is refused
instead of silently producing garbage latents. The weights' own metadata keeps the spec
they were trained with (less the topics and message types, which a user may edit), so
a hand edit that changes what they compute (a likelihood, a range limit) is refused
too. Both files are replaced atomically, weights first: a crash leaves either the old
artifact or weights whose hash the old YAML rejects, never a YAML that vouches for the
wrong weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

import m2vae_ros
from m2vae_ros.atomic import write_atomic
from m2vae_ros.differences import differences, first
from m2vae_ros.model import M2VAE
from m2vae_ros.spec import ModelSpec, SpecError

FORMAT = "m2vae_ros/model"
# 2: image decoders halve their widths per upsampling (networks.decoder_widths); 1 mirrored the encoder.
FORMAT_VERSION = 2
# In the weights' safetensors metadata. Artifacts saved before SPEC_KEY existed have only
# LAYOUT_KEY (now only read), and the oldest neither: they are checked as far as their keys go.
SPEC_KEY = "m2vae_spec"
LAYOUT_KEY = "m2vae_modalities"
# A modality's fields a model.yaml may change: where its data comes from. The spec's `extra`
# (free-form notes) is not compared either.
EDITABLE = ("topic", "msg_type")
WEIGHTS_FILE = "model.safetensors"
INCOMING_SUFFIX = ".incoming"  # the weights of a save in progress, beside WEIGHTS_FILE
METADATA_FILE = "model.yaml"


class ArtifactError(ValueError):
    """A model directory is missing, malformed, corrupted or does not match its spec."""


@dataclass
class LoadedModel:
    """A loaded artifact: the model (eval mode), its spec and the whole model.yaml."""

    model: M2VAE
    spec: ModelSpec
    metadata: dict[str, Any]


def save_model(
    model: M2VAE,
    directory: str | Path,
    *,
    provenance: dict | None = None,
    metrics: dict | None = None,
) -> Path:
    """Write `model.safetensors` and `model.yaml` into `directory`; returns the directory."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ArtifactError(f"{directory}: is a file; an artifact is a directory of {WEIGHTS_FILE} and "
                            f"{METADATA_FILE}")
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    broken = _non_finite(tensors)
    if broken:
        raise ArtifactError(f"{directory}: not saving a model with NaN or infinite weights in {_few(broken)}")
    # One key: safetensors writes several in a per-process random order, and the same weights
    # would hash differently from run to run. The spec holds the layout.
    weights = save_safetensors(tensors, metadata={SPEC_KEY: json.dumps(_fixed_spec(model.spec))})
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": m2vae_ros.__version__,
        "spec": _yaml_safe(model.spec.to_dict()),
        "weights": {"file": WEIGHTS_FILE, "sha256": hashlib.sha256(weights).hexdigest()},
        "provenance": _yaml_safe(provenance or {}),
        "metrics": _yaml_safe(metrics or {}),
    }
    text = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    # Two files cannot be replaced in one step. model.yaml is the commit: until it is written
    # the old pair stands; after it, `_read_weights` finds the new weights under their incoming
    # name should a kill come before the last rename. A save killed that way is finished first,
    # so that this one's incoming weights never overwrite the only copy of the committed ones.
    incoming = directory / (WEIGHTS_FILE + INCOMING_SUFFIX)
    if incoming.is_file() and _committed(directory, incoming):
        os.replace(incoming, directory / WEIGHTS_FILE)
    write_atomic(incoming, weights)
    write_atomic(directory / METADATA_FILE, text.encode())
    os.replace(incoming, directory / WEIGHTS_FILE)
    return directory


def _committed(directory: Path, incoming: Path) -> bool:
    """Whether `incoming` holds the weights the directory's model.yaml names (a killed save's)."""
    path = directory / METADATA_FILE
    try:
        named = _weights_sha256(_read_metadata(path), path)
    except (ArtifactError, OSError):
        return False
    return hashlib.sha256(incoming.read_bytes()).hexdigest() == named


def _yaml_safe(value: Any) -> Any:
    """`value` with numpy scalars and arrays as Python numbers and lists, which safe_dump can write."""
    if isinstance(value, dict):
        return {key: _yaml_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_yaml_safe(item) for item in value]
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return value


def load_model(directory: str | Path, device: str = "cpu") -> LoadedModel:
    """Read and validate an artifact; raises ArtifactError naming the file and the problem."""
    directory = Path(directory)
    if directory.is_file():
        raise ArtifactError(f"{directory}: is a file; give the model directory that holds it, "
                            f"{directory.parent}")
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: no such model directory")
    inner = directory / "model"
    if not (directory / METADATA_FILE).exists() and (inner / METADATA_FILE).is_file():
        raise ArtifactError(f"{directory}: no {METADATA_FILE} here, but in {inner}: a training run keeps its "
                            "model in RUN_DIR/model")
    metadata = _read_metadata(directory / METADATA_FILE)
    meta_path = directory / METADATA_FILE
    try:
        spec = ModelSpec.from_dict(metadata["spec"])
    except (SpecError, TypeError, ValueError, AttributeError) as exc:  # ValueError: dict() of a non-mapping
        raise ArtifactError(f"{meta_path}: invalid model spec: {exc}") from None
    weights_path = directory / WEIGHTS_FILE
    tensors, stored = _read_weights(weights_path, _weights_sha256(metadata, meta_path))
    if SPEC_KEY in stored:
        _check_fixed_spec(stored[SPEC_KEY], spec, meta_path)
    elif LAYOUT_KEY in stored and stored[LAYOUT_KEY] != _layout(spec):
        raise ArtifactError(f"{meta_path}: its modalities {_layout(spec)} are not the ones the weights "
                            f"were trained for, {stored[LAYOUT_KEY]} (renamed or reordered by hand?)")
    model = _build_model(spec, meta_path)
    _check_tensors(model.state_dict(), tensors, weights_path)
    model.load_state_dict(tensors)
    return LoadedModel(model=model.to(device).eval(), spec=spec, metadata=metadata)


def _build_model(spec: ModelSpec, path: Path) -> M2VAE:
    """M2VAE(spec), or ArtifactError naming `path`.

    The spec checks types and sizes; a hand-edited combination it lets through (an image
    too small for its layers, an absurdly large width) fails inside torch instead.
    """
    try:
        with torch.random.fork_rng(devices=[]):  # the weights are overwritten: leave the caller's RNG alone
            return M2VAE(spec)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ArtifactError(f"{path}: the model spec does not build a model: {exc}") from None


def _read_metadata(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ArtifactError(f"{path}: missing")
    try:
        metadata = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ArtifactError(f"{path}: invalid YAML ({problem})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not an m2vae_ros model description (format != {FORMAT!r})")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format_version {version!r}, but this m2vae_ros reads version {FORMAT_VERSION} "
            "(a model from another release: retrain it with m2vae-train)"
        )
    if not isinstance(metadata.get("spec"), dict):
        raise ArtifactError(f"{path}: no 'spec' mapping")
    return metadata


def _weights_sha256(metadata: dict[str, Any], path: Path) -> str:
    """model.yaml's `weights` entry: the sha256 the weights must have, once its `file` is checked."""
    weights = metadata.get("weights")
    digest = weights.get("sha256") if isinstance(weights, dict) else None
    if not isinstance(digest, str):
        raise ArtifactError(f"{path}: no weights.sha256")
    if weights.get("file") != WEIGHTS_FILE:  # the weights always live in WEIGHTS_FILE: say so, not ignore it
        raise ArtifactError(f"{path}: weights.file is {weights.get('file')!r}; an artifact's weights are "
                            f"{WEIGHTS_FILE!r}, beside it")
    return digest


def _fixed_spec(spec: ModelSpec) -> dict[str, Any]:
    """The spec as plain JSON data, less `extra` and each modality's `EDITABLE` fields."""
    fixed = {k: v for k, v in _yaml_safe(spec.to_dict()).items() if k != "extra"}
    fixed["modalities"] = [{k: v for k, v in m.items() if k not in EDITABLE} for m in fixed["modalities"]]
    return json.loads(json.dumps(fixed))  # tuples → lists, as the stored copy reads back


def _check_fixed_spec(stored: str, spec: ModelSpec, path: Path) -> None:
    """Refuse a model.yaml whose spec differs from the weights' own copy beyond `EDITABLE` fields.

    The copy is read back as a spec first, so a field a later release adds with a default
    compares equal to an artifact saved without it.
    """
    try:
        saved = _fixed_spec(ModelSpec.from_dict(json.loads(stored)))
    except (json.JSONDecodeError, SpecError, TypeError, ValueError, AttributeError) as exc:
        raise ArtifactError(f"{path}: the weights' copy of the spec is unreadable ({exc})") from None
    changed = differences("spec", saved, _fixed_spec(spec), labels=("in the weights", "in model.yaml"))
    if changed:
        raise ArtifactError(f"{path}: the spec is not the one the weights were trained with: "
                            f"{first(changed, 3)} (only a modality's {' and '.join(EDITABLE)} may be edited)")


def _layout(spec: ModelSpec) -> str:
    """The modalities' names, kinds and shapes in order: what the weights' module indices mean.

    Artifacts saved before the spec copy (SPEC_KEY) keep it in the weights' own metadata,
    which model.yaml's sha256 covers: two same-shaped sensors swapped in their hand-edited
    model.yaml would otherwise load, each encoded by the other's network.
    """
    return json.dumps([[m.name, m.kind, [int(n) for n in m.shape]] for m in spec.modalities])


def _read_weights(path: Path, sha256: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the safetensors metadata of a weights file whose sha256 is `sha256`.

    The weights of a save killed between model.yaml and its last rename are still under their
    incoming name (`save_model`): they are the ones model.yaml names.
    """
    incoming = path.with_name(path.name + INCOMING_SUFFIX)
    if incoming.is_file() and hashlib.sha256(incoming_data := incoming.read_bytes()).hexdigest() == sha256:
        data, actual = incoming_data, sha256
    elif not path.is_file():
        raise ArtifactError(f"{path}: missing")
    else:
        data = path.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ArtifactError(
            f"{path}: sha256 {actual[:12]}… does not match model.yaml's {sha256[:12]}… "
            "(corrupted or partially written)"
        )
    try:
        tensors = load_safetensors(data)
    except SafetensorError as exc:
        raise ArtifactError(f"{path}: not a readable safetensors file ({exc})") from None
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])  # readable: load parsed it
    return tensors, header.get("__metadata__") or {}


def _check_tensors(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], path: Path) -> None:
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    common = set(expected) & set(found)
    wrong = sorted(k for k in common if expected[k].shape != found[k].shape)
    retyped = sorted(k for k in common if expected[k].dtype != found[k].dtype)
    broken = _non_finite({k: found[k] for k in common if k not in retyped})
    problems = []
    if missing:
        problems.append(f"missing tensors {_few(missing)}")
    if extra:
        problems.append(f"unexpected tensors {_few(extra)}")
    if wrong:
        shapes = [f"{k} {list(found[k].shape)} != {list(expected[k].shape)}" for k in wrong]
        problems.append(f"mis-shaped tensors {_few(shapes)}")
    if retyped:
        types = [f"{k} {found[k].dtype} != {expected[k].dtype}" for k in retyped]
        problems.append(f"tensors of the wrong type {_few(types)}")
    if broken:
        problems.append(f"NaN or infinite values in {_few(broken)}")
    if problems:
        raise ArtifactError(f"{path}: does not match the spec in model.yaml: {'; '.join(problems)}")


def _non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or inf, sorted."""
    return sorted(k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all())


def _few(names: list[str]) -> str:
    return first(names, 3, ", ")

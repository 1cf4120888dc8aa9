"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is the nested state of a training run (trainer weights, optimiser moments,
RNG states, callback counters): dicts, lists and tuples of tensors, numpy arrays and
JSON scalars. Tensors go to ``epoch-NNNN.safetensors``; the tree with references to them
goes to ``checkpoint.json``, which is written last and names its tensor file together with
that file's sha256. Both writes are temp-file + rename, so a crash at any moment leaves
the previous complete checkpoint in place, and a loaded checkpoint is never a mix of two.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from m2vae_ros.atomic import write_atomic

INDEX = "checkpoint.json"
FORMAT = "m2vae-checkpoint/2"  # a checkpoint of another format is refused, not converted
# What a refused checkpoint leaves the user: the run's model (the best epoch's) is not in it.
NO_RESUME = ": the run cannot continue from it; start a new run with another --out (its model stays usable)"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or not one of ours."""


def save_checkpoint(directory: str | os.PathLike, state: dict[str, Any], *, epoch: int) -> Path:
    """Write `state` as the checkpoint of `epoch` and drop older tensor files; returns the index path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    tree = _flatten(state, tensors)
    blob = save_tensors(tensors)
    tensor_file = f"epoch-{epoch:04d}.safetensors"
    write_atomic(directory / tensor_file, blob)
    index = {
        "format": FORMAT,
        "epoch": epoch,
        "tensors": tensor_file,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "state": tree,
    }
    write_atomic(directory / INDEX, json.dumps(index, indent=1).encode())
    for old in directory.glob("epoch-*.safetensors"):
        if old.name != tensor_file:
            old.unlink(missing_ok=True)
    return directory / INDEX


def has_checkpoint(directory: str | os.PathLike) -> bool:
    return (Path(directory) / INDEX).is_file()


def load_checkpoint(directory: str | os.PathLike) -> tuple[int, dict[str, Any]]:
    """Return (epoch, state) of the last complete checkpoint in `directory`."""
    directory = Path(directory)
    index = _read_index(directory)
    try:
        tensor_path = directory / str(index["tensors"])
        blob = tensor_path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != index["sha256"]:
            raise CheckpointError(f"{tensor_path} does not match the sha256 recorded in {INDEX}{NO_RESUME}")
        return int(index["epoch"]), _unflatten(index["state"], load_tensors(blob))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint tensors {tensor_path} are missing{NO_RESUME}") from None
    except (KeyError, TypeError, ValueError, OSError, SafetensorError) as exc:  # a hand-edited index
        raise _damaged(directory, exc) from None


def checkpoint_epoch(directory: str | os.PathLike) -> int:
    """The epoch of the last complete checkpoint in `directory`, from its index alone."""
    directory = Path(directory)
    try:
        return int(_read_index(directory)["epoch"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _damaged(directory, exc) from None


def _read_index(directory: Path) -> dict[str, Any]:
    try:
        index = json.loads((directory / INDEX).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint in {directory} (missing {INDEX})") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{directory / INDEX} is not valid JSON: {exc}{NO_RESUME}") from None
    found = index.get("format") if isinstance(index, dict) else None
    if isinstance(found, str) and found.startswith("m2vae-checkpoint/") and found != FORMAT:
        raise CheckpointError(f"{directory / INDEX} is a {found} checkpoint, written by another m2vae-train; "
                              f"this one resumes only {FORMAT}{NO_RESUME}")
    if found != FORMAT:
        raise CheckpointError(f"{directory / INDEX} is not a {FORMAT} checkpoint{NO_RESUME}")
    return index


def _damaged(directory: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(f"{directory / INDEX} is damaged: {type(exc).__name__} {exc}{NO_RESUME}")


def _flatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON tree for `value`; tensors and arrays are moved into `tensors` under numbered keys."""
    if isinstance(value, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        # Stored as raw bytes: safetensors lacks some numpy dtypes (e.g. the uint32 RNG key).
        key = str(len(tensors))
        raw = np.frombuffer(np.ascontiguousarray(value).tobytes(), dtype=np.uint8)
        tensors[key] = torch.from_numpy(raw.copy())
        return {"__ndarray__": key, "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        if not all(isinstance(k, (str, int)) for k in value):
            raise CheckpointError(f"checkpoint dict keys must be str or int, got {list(value)}")
        return {"__dict__": [[k, _flatten(v, tensors)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_flatten(v, tensors) for v in value]}
    if isinstance(value, list):
        return [_flatten(v, tensors) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(f"cannot store a {type(value).__name__} in a checkpoint")


def _unflatten(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, list):
        return [_unflatten(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    if "__tensor__" in node:
        return tensors[node["__tensor__"]]
    if "__ndarray__" in node:
        raw = tensors[node["__ndarray__"]].numpy().tobytes()
        return np.frombuffer(raw, dtype=np.dtype(node["dtype"])).reshape(node["shape"]).copy()
    if "__tuple__" in node:
        return tuple(_unflatten(v, tensors) for v in node["__tuple__"])
    # Keys keep their type (int keys in optimizer state), which plain JSON objects would not.
    return {k: _unflatten(v, tensors) for k, v in node["__dict__"]}

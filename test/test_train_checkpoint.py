"""Checkpoints round-trip real optimiser and RNG state without pickle, and refuse torn files."""

import json
import random

import numpy as np
import pytest
import torch
from m2vae_training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def _state() -> dict:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        "best": float("inf"),
    }


def test_round_trip_restores_every_value_and_type(tmp_path):
    state = _state()
    save_checkpoint(tmp_path, state, epoch=3)
    epoch, loaded = load_checkpoint(tmp_path)
    assert epoch == 3
    for k, v in state["model"].items():
        assert torch.equal(loaded["model"][k], v)
    assert set(loaded["optimizer"]["state"]) == {0, 1}
    assert torch.equal(loaded["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    random.setstate(loaded["rng"]["python"])
    np.random.set_state(loaded["rng"]["numpy"])
    a = (random.random(), np.random.rand())
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    assert a == (random.random(), np.random.rand())
    assert loaded["best"] == float("inf")


def test_newer_checkpoint_replaces_older_and_a_torn_tensor_file_is_refused(tmp_path):
    save_checkpoint(tmp_path, _state(), epoch=1)
    save_checkpoint(tmp_path, _state(), epoch=2)
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == ["epoch-0002.safetensors"]
    (tmp_path / "epoch-0002.safetensors").write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(tmp_path)


def test_missing_checkpoint_names_the_directory(tmp_path):
    with pytest.raises(CheckpointError, match=str(tmp_path)):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("edit", [
    lambda index: index.pop("sha256"),
    lambda index: index.pop("state"),
    lambda index: index.update(tensors="."),  # a directory, not a file
    lambda index: index.update(epoch="three"),
])
def test_a_hand_edited_index_is_a_checkpoint_error(tmp_path, edit):
    save_checkpoint(tmp_path, _state(), epoch=1)
    index = json.loads((tmp_path / "checkpoint.json").read_text())
    edit(index)
    (tmp_path / "checkpoint.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"checkpoint\.json is damaged: .*: the run cannot continue "
                                              r"from it; start a new run with another --out"):
        load_checkpoint(tmp_path)


def test_a_checkpoint_of_another_format_is_refused_with_what_to_do(tmp_path):
    save_checkpoint(tmp_path, _state(), epoch=1)
    index = json.loads((tmp_path / "checkpoint.json").read_text())
    (tmp_path / "checkpoint.json").write_text(json.dumps({**index, "format": "m2vae-checkpoint/1"}))
    with pytest.raises(CheckpointError, match=r"is a m2vae-checkpoint/1 checkpoint, written by another "
                                              r"m2vae-train; .* start a new run with another --out"):
        load_checkpoint(tmp_path)

"""RUN_DIR/run.yaml read once into a typed RunFile: written as it is read, damage refused in one line."""

import dataclasses

import pytest
import yaml
from m2vae_training.checkpoint import CheckpointError
from m2vae_training.config import TrainingSettings, load_train_config
from m2vae_training.run_file import RUN_FILE, RunFile, arithmetic_drift

CONFIG = load_train_config()  # config/train.yaml


def _run(**changes) -> RunFile:
    run = RunFile(
        flags=("epochs",), bags=("/bags/a",), dataset_dir=None, dataset=CONFIG.dataset_key(),
        bag_fingerprints=({"path": "/bags/a", "bytes": 10, "mtime_ns": 1},), processes=1, device_type="cpu",
        spec=CONFIG.spec.to_dict(), epochs=2, batch_size=16, lr=1, seed=0, val_fraction=0.25,
        block_seconds=2.0, guard_seconds=0.5, patience=3, command=("m2vae-train", "--epochs", "2"),
        cwd="/work", split_sha256="0" * 64,
    )
    return dataclasses.replace(run, **changes)


def test_a_run_file_reads_back_as_written_and_resumes_come_last(tmp_path):
    run = _run()
    run.write(tmp_path)
    written = yaml.safe_load((tmp_path / RUN_FILE).read_text())
    assert list(written)[:3] == ["format", "flags", "bags"] and "resumes" not in written
    assert written["lr"] == 1  # a number stays as the config gave it
    assert RunFile.read(tmp_path) == run
    resumed = dataclasses.replace(run, resumes=({"command": ["m2vae-train", "--resume"], "cwd": "/"},))
    resumed.write(tmp_path)
    assert list(yaml.safe_load((tmp_path / RUN_FILE).read_text()))[-1] == "resumes"
    assert RunFile.read(tmp_path) == resumed


@pytest.mark.parametrize("key, value", [("epochs", "three"), ("bags", "/bags/a"), ("patience", True),
                                        ("command", ["m2vae-train", 2])])
def test_a_value_of_another_type_is_damage_named_once_it_is_read(tmp_path, key, value):
    run = _run().to_dict()
    (tmp_path / RUN_FILE).write_text(yaml.safe_dump({**run, key: value}))
    with pytest.raises(CheckpointError, match=rf"run\.yaml is damaged: {key} not as m2vae-train writes them"):
        RunFile.read(tmp_path)


@pytest.mark.parametrize("dataset", [
    {"labels_topic": "/ground_truth/object", "slop": 0.05},  # no timeouts_ns: a KeyError in config()
    {**CONFIG.dataset_key(), "timeouts_ns": 5},
    {**CONFIG.dataset_key(), "slop": "x"},
    {**CONFIG.dataset_key(), "modalities": []},  # readable, but not what this spec's config wrote
])
def test_a_hand_edited_dataset_entry_is_damage_named_once_it_is_read(tmp_path, dataset):
    (tmp_path / RUN_FILE).write_text(yaml.safe_dump({**_run().to_dict(), "dataset": dataset}))
    with pytest.raises(CheckpointError, match=r"run\.yaml is damaged: its spec and dataset entries are not"):
        RunFile.read(tmp_path)


def test_the_run_file_holds_every_training_setting():
    # run_settings copies TrainingSettings into RunFile field by field: a new setting needs a field.
    fields = {f.name for f in dataclasses.fields(RunFile)}
    assert {f.name for f in dataclasses.fields(TrainingSettings)} <= fields


def test_arithmetic_drift_names_what_changed_the_sums():
    def part(threads, version):
        return {"command": ["m2vae-train", "--resume"], "cwd": "/", "torch_threads": threads,
                "torch_version": version}

    start = _run(torch_threads=1, torch_version="2.13.0+cpu")
    assert arithmetic_drift(start) is None  # not resumed
    assert arithmetic_drift(dataclasses.replace(start, resumes=(part(1, "2.13.0+cpu"),))) is None
    assert arithmetic_drift(dataclasses.replace(start, resumes=(part(4, "2.14.0+cpu"),))) == (
        "4 torch threads where the run trained with 1 before (OMP_NUM_THREADS sets them); "
        "torch 2.14.0+cpu where the run trained with torch 2.13.0+cpu before")
    # Back at the start's count after a part with another: the weights have drifted already.
    back = dataclasses.replace(start, resumes=(part(2, "2.13.0+cpu"), part(1, "2.13.0+cpu")))
    assert arithmetic_drift(back).startswith("1 torch threads where the run trained with 2 before")
    # A CUDA run is not bit-for-bit anyway.
    assert arithmetic_drift(dataclasses.replace(start, device_type="cuda", resumes=(part(4, "x"),))) is None
    # A run.yaml from before the fields existed records nothing to compare with.
    assert arithmetic_drift(_run(resumes=({"command": ["m2vae-train"], "cwd": "/"}, part(4, "x")))) is None

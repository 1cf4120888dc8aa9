"""m2vae-train end to end on real simulated bags: artifact, TensorBoard, resume, Ctrl-C, torchrun."""

import dataclasses
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from m2vae_training.callbacks import EarlyStopping, TensorBoardLogger
from m2vae_training.checkpoint import has_checkpoint, load_checkpoint
from m2vae_training.dataset import load_dataset
from m2vae_training.run_lock import LOCK_FILE
from m2vae_training.split import time_block_split
from m2vae_training.train_cli import main
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from trainutils import TINY_CONFIG, signal_when, tiny_bag, tiny_config

from m2vae_ros.api import MultimodalVAE
from m2vae_ros.artifact import load_model, save_model
from m2vae_ros.differences import differences, first
from m2vae_ros.drop_window import DropWindow
from m2vae_ros.trainer import Trainer

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    return {
        "bag": tiny_bag(root / "bag", seed=1),
        "config": tiny_config(root / "train.yaml"),
        "dataset": root / "dataset",  # shared by the runs: built once, then reused
        "root": root,
    }


def _args(inputs, out: Path, *extra: str) -> list[str]:
    return ["--bag", str(inputs["bag"]), "--out", str(out), "--config", str(inputs["config"]),
            "--device", "cpu", "--dataset-dir", str(inputs["dataset"]), *extra]


def test_training_writes_a_loadable_artifact_tensorboard_and_checkpoint(inputs, capsys):
    out = inputs["root"] / "run"
    stale = out / "tb" / "events.out.tfevents.1.an-attempt-that-died-in-epoch-1"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    assert main(_args(inputs, out, "--latent-dim", "6")) == 0
    assert not stale.exists()  # its curves would have mixed with this run's
    loaded = load_model(out / "model")
    assert loaded.spec.latent_dim == 6
    msg_types = [m.msg_type for m in loaded.spec.modalities]
    assert msg_types == ["sensor_msgs/msg/Image", "sensor_msgs/msg/LaserScan"]
    provenance = loaded.metadata["provenance"]
    assert provenance["bags"][0]["path"] == str(inputs["bag"].resolve())
    # m2vae-sim's frames: the node draws a sensor it has not heard yet in the frame it was recorded in
    assert {name: t["frame_id"] for name, t in provenance["topics"].items()} == {
        "camera": "camera_optical_frame", "lidar": "laser"}
    counts = provenance["dataset"]
    assert counts["train_samples"] + counts["val_samples"] + counts["guarded_samples"] == 80
    assert counts["guarded_samples"] > 0 and provenance["split"]["guard_seconds"] == 0.5
    assert (provenance["processes"], provenance["device_type"]) == (1, "cpu")
    assert math.isfinite(loaded.metadata["metrics"]["val"]["elbo/camera+lidar"])
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for split in ("train", "val"):  # every ELBO term of every subset
        assert {f"{split}/elbo/camera", f"{split}/elbo/lidar", f"{split}/elbo/camera+lidar",
                f"{split}/kl/camera+lidar|camera", f"{split}/kl/camera+lidar|lidar"} <= scalars
    assert "reconstruction" in events.Tags()["images"]
    assert load_checkpoint(out / "checkpoints")[0] == 2
    printed = capsys.readouterr()
    assert "done: 2 epochs, best val ELBO" in printed.out
    # One line per epoch stays on screen after its cleared bar, the best epoch marked.
    best = loaded.metadata["metrics"]["epoch"]
    epoch_lines = [line for line in printed.err.splitlines() if line.startswith("m2vae-train: epoch ")]
    assert [line.split(":")[1].strip() for line in epoch_lines] == ["epoch 1/2", "epoch 2/2"]
    assert "(best: the artifact)" in epoch_lines[best - 1] and "val ELBO" in epoch_lines[0]
    assert (f"{counts['train_samples']} training and {counts['val_samples']} validation samples; "
            f"{counts['guarded_samples']} left out") in printed.err
    # The run directory is not overwritten by accident.
    assert main(_args(inputs, out)) == 2
    assert "--resume" in capsys.readouterr().err


def test_resume_continues_bit_for_bit(inputs):
    straight, resumed = inputs["root"] / "straight", inputs["root"] / "resumed"
    assert main(_args(inputs, straight, "--epochs", "4")) == 0
    assert main(_args(inputs, resumed, "--epochs", "2")) == 0
    assert main(_args(inputs, resumed, "--epochs", "4", "--resume")) == 0
    epoch_a, a = load_checkpoint(straight / "checkpoints")
    epoch_b, b = load_checkpoint(resumed / "checkpoints")
    assert epoch_a == epoch_b == 4
    for key, value in a["trainer"]["model"].items():
        assert torch.equal(value, b["trainer"]["model"][key]), key
    assert a["early_stopping"] == b["early_stopping"]


def test_a_run_of_an_earlier_format_is_refused_on_resume_and_left_as_it_was(inputs, capsys):
    """A run.yaml without `format: m2vae-run/2` (one written before 2026-11-29) is not continued."""
    out = inputs["root"] / "earlier_format"
    assert main(_args(inputs, out, "--epochs", "1")) == 0
    run_file = out / "run.yaml"
    run = yaml.safe_load(run_file.read_text())
    del run["format"]
    run_file.write_text(yaml.safe_dump(run, sort_keys=False))

    def files() -> dict:
        return {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in out.rglob("*")
                if path.is_file()}

    before = files()
    capsys.readouterr()
    refused = (f"m2vae-train: error: {run_file} was written by an earlier m2vae-train (no format); this one "
               f"resumes only m2vae-run/2 runs: start a new run with another --out (the model in "
               f"{out / 'model'} is left as it is)\n")
    for resume in (_args(inputs, out, "--epochs", "2", "--resume"), ["--out", str(out), "--resume"]):
        assert main(resume) == 2
        assert capsys.readouterr().err == refused
    assert files() == before


def test_flags_left_out_on_resume_keep_the_runs_values(inputs, capsys):
    """`--resume` alone continues the run as it was started, not with the config file's defaults."""
    out = inputs["root"] / "flags_kept"
    started = _args(inputs, out, "--epochs", "1", "--batch-size", "16", "--seed", "3", "--latent-dim", "5")
    assert main(started) == 0
    assert main(_args(inputs, out, "--resume", "--epochs", "3")) == 0  # the tiny config says 2 epochs
    assert load_checkpoint(out / "checkpoints")[0] == 3
    resumed = _args(inputs, out, "--resume")
    at = resumed.index("--dataset-dir")
    del resumed[at:at + 2]  # left out too: the run's own, not RUN_DIR/dataset
    assert main(resumed) == 0
    run = yaml.safe_load((out / "run.yaml").read_text())
    assert run["processes"] == 1 and run["dataset_dir"] == str(inputs["dataset"].resolve())
    assert (run["epochs"], run["batch_size"], run["seed"], run["spec"]["latent_dim"]) == (3, 16, 3, 5)
    assert capsys.readouterr().out.splitlines()[-1].startswith("done: 3 epochs")


def test_resume_refuses_a_run_that_would_now_split_differently(inputs, capsys):
    """Another version of the split would send to validation frames the run has trained on."""
    out = inputs["root"] / "split_changed"
    assert main(_args(inputs, out, "--epochs", "1")) == 0
    run_file = out / "run.yaml"
    run = yaml.safe_load(run_file.read_text())
    dataset = load_dataset(inputs["dataset"])
    training = TINY_CONFIG["training"]
    split = time_block_split(dataset.stamps, dataset.bag_index, block_seconds=training["block_seconds"],
                             val_fraction=training["val_fraction"], seed=training["seed"],
                             guard_seconds=training["guard_seconds"])
    assert run["split_sha256"] == split.digest()
    resume = _args(inputs, out, "--epochs", "2", "--resume")

    run_file.write_text(yaml.safe_dump({**run, "split_sha256": "0" * 64}))  # as another version split it
    capsys.readouterr()
    assert main(resume) == 2
    assert (f"the split now differs from the one recorded for {out} (a newer m2vae-train or NumPy; "
            f"training and validation samples: {len(split.train)} and {len(split.val)} now)"
            ) in capsys.readouterr().err


def test_provenance_keeps_the_starting_command_and_lists_each_resume(inputs, monkeypatch, tmp_path):
    """Relative paths are read against the directory each command ran in; a resume does not
    replace the command that made the run."""
    out = inputs["root"] / "provenance"
    started = _args(inputs, out, "--epochs", "1")
    started_in = os.getcwd()
    assert main(started) == 0
    monkeypatch.chdir(tmp_path)
    resumed = _args(inputs, out, "--epochs", "2", "--resume")
    assert main(resumed) == 0
    provenance = load_model(out / "model").metadata["provenance"]
    assert provenance["command"] == ["m2vae-train", *started]
    assert provenance["cwd"] == started_in != str(tmp_path)
    assert provenance["resumes"] == [{"command": ["m2vae-train", *resumed], "cwd": str(tmp_path),
                                      "torch_threads": torch.get_num_threads(),
                                      "torch_version": torch.__version__}]


def test_a_run_early_stopping_ended_is_finished_on_resume(inputs, capsys):
    out = inputs["root"] / "stopped"
    diverging = tiny_config(inputs["root"] / "diverging.yaml", lr=0.5, patience=1)  # val ELBO soon worsens
    args = [*_args(inputs, out, "--epochs", "6"), "--config", str(diverging)]
    capsys.readouterr()
    assert main(args) == 0
    epoch, state = load_checkpoint(out / "checkpoints")
    assert epoch < 6 and state["early_stopping"]["stopped"] is True
    best = state["early_stopping"]["best_epoch"]
    done = f"done: {epoch} epochs (stopped early: the val ELBO last improved at epoch {best}, patience 1)"
    assert capsys.readouterr().out.startswith(done)
    checkpoint = (out / "checkpoints" / "checkpoint.json").read_bytes()
    capsys.readouterr()
    assert main([*args, "--resume", "--epochs", "8"]) == 0
    printed = capsys.readouterr()
    assert f"the run already finished: early stopping ended it after epoch {epoch}" in printed.err
    assert printed.out.startswith(done) and "samples/s" not in printed.out  # none trained: was "0 samples/s"
    assert (out / "checkpoints" / "checkpoint.json").read_bytes() == checkpoint


def test_cli_and_api_train_the_same_model_on_the_same_data_and_seed(inputs):
    out = inputs["root"] / "api_twin"
    assert main(_args(inputs, out, "--epochs", "2")) == 0
    artifact = load_model(out / "model")
    epochs = artifact.metadata["metrics"]["epoch"]  # the artifact holds the best validation epoch
    dataset = load_dataset(inputs["dataset"])
    training = TINY_CONFIG["training"]
    split = time_block_split(dataset.stamps, dataset.bag_index, block_seconds=training["block_seconds"],
                             val_fraction=training["val_fraction"], seed=training["seed"],
                             guard_seconds=training["guard_seconds"])

    def rows(indices):
        return {name: array[indices] for name, array in dataset.arrays.items()}, dataset.available[indices]

    (train, train_available), (val, val_available) = rows(split.train), rows(split.val)
    vae = MultimodalVAE(artifact.spec, seed=training["seed"])
    vae.fit(train, train_available, epochs=epochs, batch_size=training["batch_size"], lr=training["lr"],
            seed=training["seed"], val=val, val_available=val_available)
    cli_weights = artifact.model.state_dict()
    for key, value in vae.model.state_dict().items():
        assert torch.equal(value, cli_weights[key]), key


def test_new_model_settings_reuse_the_dataset_and_reach_the_artifact(inputs):
    main(_args(inputs, inputs["root"] / "first", "--epochs", "1"))  # the shared dataset exists
    manifest = (inputs["dataset"] / "manifest.json").stat().st_mtime_ns
    config = yaml.safe_load(inputs["config"].read_text())
    config["model"]["beta"] = 3.0
    config["modalities"][0]["weight"] = 0.7
    (inputs["root"] / "retuned.yaml").write_text(yaml.safe_dump(config))
    out = inputs["root"] / "retuned"
    assert main([*_args(inputs, out, "--epochs", "1"), "--config", str(inputs["root"] / "retuned.yaml")]) == 0
    artifact = load_model(out / "model")
    assert artifact.metadata["provenance"]["dataset"]["directory"] == str(inputs["dataset"].resolve())
    assert (inputs["dataset"] / "manifest.json").stat().st_mtime_ns == manifest
    spec = artifact.spec
    assert spec.beta == 3.0 and spec.modalities[0].weight == 0.7
    assert spec.modalities[0].msg_type == "sensor_msgs/msg/Image"


def test_resume_refuses_changed_settings(inputs, capsys):
    out = inputs["root"] / "changed"
    assert main(_args(inputs, out, "--epochs", "1")) == 0
    assert main(_args(inputs, out, "--epochs", "2", "--resume", "--latent-dim", "5")) == 2
    latent_dim = yaml.safe_load((out / "run.yaml").read_text())["spec"]["latent_dim"]
    assert f"spec.latent_dim: {latent_dim} in the run, 5 now" in capsys.readouterr().err
    # Synchronisation and early stopping are the run's too: a resumed run must not rebuild its data.
    config = yaml.safe_load(inputs["config"].read_text())
    config["dataset"]["slop"] *= 2
    config["training"]["patience"] = 9
    (inputs["root"] / "resynced.yaml").write_text(yaml.safe_dump(config))
    assert main([*_args(inputs, out, "--epochs", "2", "--resume"), "--config",
                 str(inputs["root"] / "resynced.yaml")]) == 2
    err = capsys.readouterr().err
    assert "the settings differ from the run in" in err and "dataset.slop: " in err
    patience = yaml.safe_load(inputs["config"].read_text())["training"]["patience"]
    assert f"patience: {patience} in the run, 9 now" in err
    # A config given on --resume is compared whole: its batch size and seed too, not the run's.
    config = yaml.safe_load(inputs["config"].read_text())
    config["training"].update(batch_size=config["training"]["batch_size"] * 2, seed=7)
    (inputs["root"] / "rebatched.yaml").write_text(yaml.safe_dump(config))
    assert main([*_args(inputs, out, "--epochs", "2", "--resume"), "--config",
                 str(inputs["root"] / "rebatched.yaml")]) == 2
    err = capsys.readouterr().err
    assert "batch_size: " in err and "seed: " in err and "7 now" in err
    # Fewer epochs than it has trained, and a damaged run.yaml, are said as such.
    assert main(_args(inputs, out, "--epochs", "2", "--resume")) == 0
    assert main(_args(inputs, out, "--epochs", "1", "--resume")) == 2
    assert "has trained 2 epochs already, more than --epochs 1" in capsys.readouterr().err
    (out / "run.yaml").write_text("")
    assert main(_args(inputs, out, "--epochs", "3", "--resume")) == 2
    assert "run.yaml is damaged" in capsys.readouterr().err


def test_a_refused_resume_lists_short_differences():
    bag = {"path": "/bags/a", "bytes": 10, "mtime_ns": 1}
    assert differences("bag_fingerprints", [bag], [{**bag, "bytes": 11}]) == [
        "bag_fingerprints[/bags/a].bytes: 10 in the run, 11 now"]
    assert differences("bags", ["/bags/a"], ["/bags/a", "/bags/b"]) == ["bags: 1 items in the run, 2 now"]
    (line,) = differences("spec.x", "a" * 500, "b")
    assert len(line) < 200 and line.endswith("in the run, 'b' now")
    lines = differences("spec", {f"k{i}": i for i in range(7)}, {f"k{i}": -i for i in range(7)})
    assert first(lines, 5) == "; ".join(lines[:5]) + " and 1 more"  # k0 is equal: 6 differ
    assert first(lines[:2], 5) == "; ".join(lines[:2])


def test_resume_without_config_or_bags_continues_with_the_runs_own_settings(inputs, capsys):
    # The tiny config differs from config/train.yaml in every section: a resume that read
    # the default file would be refused as changed settings. --bag used to be required.
    out = inputs["root"] / "own_config"
    assert main(_args(inputs, out, "--epochs", "1")) == 0
    without_config = _args(inputs, out, "--epochs", "2", "--resume")
    for flag in ("--config", "--bag"):
        at = without_config.index(flag)
        del without_config[at : at + 2]
    capsys.readouterr()
    assert main(without_config) == 0
    assert "resuming after epoch 1" in capsys.readouterr().err
    epoch, resumed = load_checkpoint(out / "checkpoints")
    assert main(_args(inputs, inputs["root"] / "own_config_straight", "--epochs", "2")) == 0
    _, straight = load_checkpoint(inputs["root"] / "own_config_straight" / "checkpoints")
    assert epoch == 2 and yaml.safe_load((out / "run.yaml").read_text())["epochs"] == 2
    for key, value in straight["trainer"]["model"].items():
        assert torch.equal(value, resumed["trainer"]["model"][key]), key
    # --topic still has to match the run's topics.
    assert main([*without_config, "--topic", "lidar=/other_scan"]) == 2
    err = capsys.readouterr().err
    assert ".topic: " in err and "'/other_scan' now" in err
    with pytest.raises(SystemExit):  # a new run still needs its recordings
        main(["--out", str(inputs["root"] / "no_bags")])
    assert "the following arguments are required: --bag" in capsys.readouterr().err
    assert main(["--out", str(inputs["root"] / "no_run"), "--resume"]) == 2  # nothing to take the bags from
    assert "no_run/checkpoints holds no checkpoint to continue from" in capsys.readouterr().err
    run_file = yaml.safe_load((out / "run.yaml").read_text())
    del run_file["bags"]
    (out / "run.yaml").write_text(yaml.safe_dump(run_file))
    assert main(["--out", str(out), "--resume"]) == 2  # was a KeyError traceback
    assert "run.yaml is damaged: it lacks bags" in capsys.readouterr().err
    (out / "run.yaml").write_text(yaml.safe_dump({**run_file, "bags": []}))
    assert main(["--out", str(out), "--resume"]) == 2
    assert "run.yaml names no bags: give them with --bag" in capsys.readouterr().err


def test_resume_refuses_a_bag_rerecorded_at_the_same_path(inputs, capsys):
    """Same path, other data: continuing would mix two datasets in one model."""
    bag = inputs["root"] / "rerecorded_bag"
    shutil.copytree(inputs["bag"], bag)
    out = inputs["root"] / "rerecorded"
    args = [*_args(inputs, out, "--epochs", "1"), "--bag", str(bag), "--dataset-dir", str(out / "dataset")]
    assert main(args) == 0
    run = yaml.safe_load((out / "run.yaml").read_text())
    assert (run["processes"], run["device_type"], len(run["bag_fingerprints"])) == (1, "cpu", 1)
    for file in bag.iterdir():
        os.utime(file, ns=(time.time_ns(), time.time_ns()))
    capsys.readouterr()
    assert main([*args, "--resume", "--epochs", "2"]) == 2
    assert f"bag_fingerprints[{bag.resolve()}].mtime_ns: " in capsys.readouterr().err


def test_bags_without_the_configured_topics_are_refused_before_training(inputs, capsys):
    out = inputs["root"] / "no_topics"
    args = _args(inputs, out, "--topic", "camera=/front/image_raw", "--topic", "lidar=/velodyne/scan")
    args[args.index("--dataset-dir") + 1] = str(inputs["root"] / "empty_dataset")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no sample of the bags holds camera=/front/image_raw, lidar=/velodyne/scan" in err
    assert not (out / "model").exists()
    # One topic right and one misspelt: a model that never saw the LiDAR is no model of it.
    args = _args(inputs, inputs["root"] / "one_topic", "--topic", "lidar=/scna")
    args[args.index("--dataset-dir") + 1] = str(inputs["root"] / "one_topic_dataset")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no sample of the bags holds lidar=/scna" in err
    assert "the bags record for lidar: /scan (sensor_msgs/msg/LaserScan)" in err
    # A recorded topic of a type the kind cannot read used to be blamed on its name only.
    args = _args(inputs, inputs["root"] / "wrong_type", "--topic", "lidar=/ground_truth/object")
    args[args.index("--dataset-dir") + 1] = str(inputs["root"] / "wrong_type_dataset")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert ("/ground_truth/object is visualization_msgs/msg/Marker, which lidar (a scan) cannot read: it "
            "takes sensor_msgs/msg/LaserScan, sensor_msgs/msg/PointCloud2; the bags record for lidar: "
            "/scan") in err


def test_sensors_in_separate_bags_train_with_the_datasets_note_and_an_unpaired_warning(inputs, capsys):
    """m2vae-train used to train on them with no word: the joint encoder saw no sample."""
    root = inputs["root"]
    cameras = tiny_bag(root / "cameras_only", seed=2, seconds=8.0, drops=[DropWindow("scan", 0.0, 9.0)])
    scans = tiny_bag(root / "scans_only", seed=2, seconds=8.0, drops=[DropWindow("camera", 0.0, 9.0)])
    args = _args(inputs, root / "separate", "--epochs", "1")
    args[1:2] = [str(cameras), str(scans)]
    args[args.index("--dataset-dir") + 1] = str(root / "separate_dataset")
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "are synchronised separately" in err
    assert ("warning: no training sample holds all of ['camera+lidar']: their encoders stay at their initial "
            "weights") in err


def test_a_sensor_seen_only_in_validation_is_refused_before_training(inputs, capsys):
    """Its networks would get no gradient and ship at their initial weights in a model that loads."""
    root = inputs["root"]
    bag = tiny_bag(root / "scan_in_val_bag", seed=1, seconds=12.0,
                   drops=[DropWindow("scan", 0.0, 4.6), DropWindow("scan", 7.4, 12.0)])
    out, dataset_dir = root / "scan_in_val", root / "scan_in_val_dataset"
    args = ["--bag", str(bag), "--out", str(out), "--config", str(inputs["config"]), "--device", "cpu",
            "--dataset-dir", str(dataset_dir)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no training sample holds lidar: every sample with it lies in the validation blocks" in err, err
    assert not (out / "model").exists()
    # The premise: the tiny config's split (seed 0) sends every scan of the bag to validation or the guard.
    dataset, training = load_dataset(dataset_dir), yaml.safe_load(inputs["config"].read_text())["training"]
    split = time_block_split(dataset.stamps, dataset.bag_index, block_seconds=training["block_seconds"],
                             val_fraction=training["val_fraction"], seed=training["seed"],
                             guard_seconds=training["guard_seconds"])
    assert dataset.available[:, 1].any() and not dataset.available[split.train, 1].any()


def test_resume_from_a_checkpoint_whose_state_does_not_fit_is_one_error_line(inputs, capsys):
    out = inputs["root"] / "edited_checkpoint"
    assert main(_args(inputs, out, "--epochs", "1")) == 0
    index_path = out / "checkpoints" / "checkpoint.json"
    index = json.loads(index_path.read_text())
    # The tensors' hash still matches: only the state's shape is off.
    index["state"]["__dict__"] = [item for item in index["state"]["__dict__"] if item[0] != "early_stopping"]
    index_path.write_text(json.dumps(index))
    capsys.readouterr()
    assert main(_args(inputs, out, "--epochs", "2", "--resume")) == 2
    err = capsys.readouterr().err
    assert "the checkpoint does not fit this run (damaged, or another model's): KeyError" in err, err


def test_inputs_that_would_mislead_training_are_refused(inputs, capsys):
    root = inputs["root"]
    twice = _args(inputs, root / "twice")
    twice[twice.index("--bag") + 1 : twice.index("--bag") + 1] = [str(inputs["bag"])]
    assert main(twice) == 2  # the copies' time blocks would sit on both sides of the split
    assert "are one recording (bag.mcap); give it once" in capsys.readouterr().err
    (root / "a_file").write_text("")
    assert main(_args(inputs, root / "a_file")) == 2
    assert f"--out {root / 'a_file'} is a file" in capsys.readouterr().err


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    improvements = []
    stopper = EarlyStopping(2, on_improvement=lambda trainer, epoch, metrics: improvements.append(epoch))
    elbos = [-9.0, -5.0, -6.0, -5.5]
    decisions = [stopper.on_epoch_end(None, e, {}, {"elbo": v}) for e, v in enumerate(elbos, start=1)]
    assert decisions == [False, False, False, True]
    assert improvements == [1, 2]
    assert (stopper.best, stopper.best_epoch, stopper.stopped) == (-5.0, 2, True)
    restored = EarlyStopping(2)
    restored.load_state_dict(stopper.state_dict())
    assert restored.stopped is True
    assert restored.on_epoch_end(None, 5, {}, {"elbo": float("nan")}) is True


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a shell script's `&` does to its job


@pytest.mark.parametrize("stop, background", [(signal.SIGINT, False), (signal.SIGTERM, True)],
                         ids=["ctrl_c", "kill_of_a_background_job"])
def test_ctrl_c_leaves_a_loadable_checkpoint_and_artifact(inputs, stop, background):
    out = inputs["root"] / f"interrupted_{stop.name}"
    returncode, stdout, stderr = signal_when(
        [str(VENV_BIN / "m2vae-train"), *_args(inputs, out, "--epochs", "200")],
        (out / "checkpoints" / "checkpoint.json").exists, stop,
        preexec_fn=_ignore_sigint if background else None,
    )
    assert returncode == 128 + stop, stderr  # 130 for Ctrl-C, 143 for `kill`
    assert stdout.startswith("interrupted:")
    epoch, state = load_checkpoint(out / "checkpoints")
    assert 1 <= epoch < 200 and state["trainer"]["epoch"] == epoch
    assert load_model(out / "model").spec.names == ("camera", "lidar")


def test_a_second_training_into_a_run_directory_in_use_is_refused(inputs):
    out = inputs["root"] / "in_use"
    lock = out / LOCK_FILE
    second: list[subprocess.CompletedProcess] = []

    def train_again_once_locked() -> bool:
        if not lock.exists():
            return False
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        for extra in (("--seed", "1"), ("--resume",)):  # a resume too, before the first checkpoint
            command = [str(VENV_BIN / "m2vae-train"), *_args(inputs, out, *extra)]
            second.append(subprocess.run(command, env=env, capture_output=True, text=True))
        return True

    returncode, _, _ = signal_when([str(VENV_BIN / "m2vae-train"), *_args(inputs, out, "--epochs", "200")],
                                   train_again_once_locked, signal.SIGINT)
    for refused in second:
        assert refused.returncode == 2, refused.stderr
        assert "is being trained by another m2vae-train (process" in refused.stderr, refused.stderr
    assert returncode == 130 and not lock.exists()  # the first run went on, and let go of the lock at its end


def test_a_lock_left_by_a_process_that_is_gone_is_taken_over(inputs, capsys):
    out = inputs["root"] / "abandoned"
    out.mkdir()
    gone = subprocess.Popen(["true"])  # a process id that no process holds once it has ended
    gone.wait()
    (out / LOCK_FILE).write_text(f"{socket.gethostname()} {gone.pid}\n")
    assert main(_args(inputs, out, "--epochs", "1")) == 0, capsys.readouterr().err
    assert load_model(out / "model") and not (out / LOCK_FILE).exists()


def _torchrun(inputs, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return _two_ranks(_args(inputs, out, *extra))


def _two_ranks(args: list[str], *, succeeds: bool = True) -> subprocess.CompletedProcess:
    """Two CPU ranks of m2vae-train, started as README says (`--no-python m2vae-train`)."""
    result = subprocess.run(
        [str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "--no-python",
         str(VENV_BIN / "m2vae-train"), *args],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300,
    )
    assert (result.returncode == 0) == succeeds, result.stderr[-3000:]
    return result


def test_torchrun_with_two_cpu_processes_trains_a_loadable_model_and_resumes_bit_for_bit(inputs):
    root = inputs["root"]
    # Partial samples (LiDAR dead for 2 s) make the ranks' noise draws differ in size, so a rank
    # whose generator state were lost in the checkpoint would continue differently.
    dropped = tiny_bag(root / "dropped_bag", seed=1, drops=[DropWindow("scan", 2.0, 4.0)])
    inputs = {**inputs, "bag": dropped, "dataset": root / "dropped_dataset"}
    out, resumed = root / "ddp", root / "ddp_resumed"
    result = _torchrun(inputs, out, "--epochs", "2")
    assert result.stdout.count("done: 2 epochs") == 1  # only rank 0 reports (and writes)
    loaded = load_model(out / "model")
    samples = load_dataset(inputs["dataset"]).manifest["samples"]
    assert loaded.metadata["provenance"]["dataset"]["samples"] == samples["total"] > samples["partial"] > 0
    epoch, straight = load_checkpoint(out / "checkpoints")
    assert epoch == 2
    _torchrun(inputs, resumed, "--epochs", "1")
    _torchrun(inputs, resumed, "--epochs", "2", "--resume")
    state = load_checkpoint(resumed / "checkpoints")[1]
    for key, value in straight["trainer"]["model"].items():
        assert torch.equal(value, state["trainer"]["model"][key]), key


def test_a_rank_waiting_for_a_dataset_rank_0_could_not_build_says_so_in_one_line(inputs):
    """Rank 0 builds while the others wait at a barrier; a bag it cannot open used to leave rank 1
    with a gloo traceback ("Connection closed by peer") under rank 0's one line."""
    bad = inputs["root"] / "not_sqlite"
    bad.mkdir()
    (bad / "not_sqlite_0.db3").write_text("not a database")
    (bad / "metadata.yaml").write_text((inputs["bag"] / "metadata.yaml").read_text())
    args = _args(inputs, inputs["root"] / "ddp_bad_bag", "--epochs", "1")
    args[args.index("--bag") + 1], args[args.index("--dataset-dir") + 1] = str(bad), str(bad / "dataset")
    result = _two_ranks(args, succeeds=False)
    # Both ranks write to one stderr: their lines may interleave, so each is looked for whole, in any order.
    assert result.stderr.count("m2vae-train: error") == 2, result.stderr
    assert "m2vae-train: error (rank 0 of 2): cannot open bag" in result.stderr
    assert ("m2vae-train: error (rank 1 of 2): rank 0 stopped before the dataset was ready (its line says "
            "why), or its build outlasted the wait (build it with m2vae-dataset first)\n") in result.stderr
    assert "[rank1]: Traceback" not in result.stderr


def test_under_torchrun_an_error_line_names_its_rank(inputs, capsys, monkeypatch, tmp_path):
    """Every rank checks the data and stops on its own; each line says which rank it comes from."""
    taken = tmp_path / "a_file"
    taken.write_text("")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(_args(inputs, taken, "--epochs", "1")) == 2
    assert capsys.readouterr().err == (f"m2vae-train: error (rank 1 of 2): --out {taken} is a file; it names "
                                       "the run directory\n")


def test_torchrun_variables_that_are_not_numbers_are_one_error_line(inputs, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "two")
    assert main(_args(inputs, tmp_path / "run", "--epochs", "1")) == 2
    assert capsys.readouterr().err == ("m2vae-train: error: RANK='1', WORLD_SIZE='two', LOCAL_RANK='0': "
                                       "torchrun's variables must be whole numbers\n")


def test_torchrun_variables_without_torchrun_are_one_error_line(inputs, capsys, monkeypatch, tmp_path):
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert main(_args(inputs, tmp_path / "run", "--epochs", "1", "--device", "cpu")) == 2
    err = capsys.readouterr().err
    assert err.startswith("m2vae-train: error (rank 0 of 2): RANK and WORLD_SIZE are set, but the process "
                          "group cannot start (") and err.endswith("launch with torchrun, or unset them\n")
    assert err.count("\n") == 1 and "raised in" not in err  # the package's own line, not torch's


def test_a_flag_passes_the_same_checks_as_the_config_file(inputs, capsys):
    out = inputs["root"] / "negative_seed"
    assert main(_args(inputs, out, "--seed", "-1")) == 2
    assert "training.seed must be ≥ 0 and below 2**63, got -1" in capsys.readouterr().err
    assert not out.exists()  # refused before any dataset or run file is written


def _interrupt_in_epoch(monkeypatch, epoch: int) -> None:
    """Ctrl-C arrives inside epoch `epoch` (from 1), at its second step: one step of it is done."""
    compute_loss, steps = Trainer.compute_loss, []

    def interrupting(self, x, available):
        if self.epoch == epoch - 1:
            steps.append(self.step)
            if len(steps) == 2:
                raise KeyboardInterrupt
        return compute_loss(self, x, available)

    monkeypatch.setattr(Trainer, "compute_loss", interrupting)


def test_ctrl_c_in_the_first_epoch_saves_nothing_and_says_so(inputs, capsys, monkeypatch):
    out = inputs["root"] / "cut_first"
    _interrupt_in_epoch(monkeypatch, 1)
    assert main(_args(inputs, out, "--epochs", "3")) == 130
    assert "nothing was saved; start again without --resume" in capsys.readouterr().err
    assert not (out / "model").exists() and not has_checkpoint(out / "checkpoints")


def test_ctrl_c_without_validation_keeps_the_last_whole_epochs_weights(inputs, monkeypatch, tmp_path):
    config = yaml.safe_load(inputs["config"].read_text())
    config["training"]["val_fraction"] = 0.0
    (tmp_path / "no_val.yaml").write_text(yaml.safe_dump(config))
    out = inputs["root"] / "cut_no_val"
    args = _args(inputs, out, "--epochs", "4")
    args[args.index("--config") + 1] = str(tmp_path / "no_val.yaml")
    args[args.index("--dataset-dir") + 1] = str(tmp_path / "dataset")
    _interrupt_in_epoch(monkeypatch, 3)
    assert main(args) == 130
    epoch, state = load_checkpoint(out / "checkpoints")
    model = load_model(out / "model")
    assert epoch == 2 and model.metadata["metrics"]["epoch"] == 2
    for key, value in model.model.state_dict().items():
        assert torch.equal(value, state["trainer"]["model"][key]), key


def test_ctrl_c_between_an_epochs_model_and_its_checkpoint_keeps_them_alike(inputs, monkeypatch, capsys):
    """The signal lands right after epoch 2's model is written, before its checkpoint."""
    saved = _ctrl_c_after_saving_the_model_of_epoch(monkeypatch, 2)
    out = inputs["root"] / "cut_between"
    capsys.readouterr()
    assert main(_args(inputs, out, "--epochs", "4")) == 130
    epoch, _ = load_checkpoint(out / "checkpoints")
    model_epoch = load_model(out / "model").metadata["metrics"]["epoch"]
    assert saved[-1] == 2 and epoch == model_epoch == 2
    assert capsys.readouterr().out.startswith("interrupted: 2 epochs")


def _ctrl_c_after_saving_the_model_of_epoch(monkeypatch, epoch: int) -> list[int]:
    """A SIGINT right after the model of `epoch` is written; returns the epochs whose model was saved."""
    saved = []

    def save_then_ctrl_c(model, directory, **kwargs):
        path = save_model(model, directory, **kwargs)
        saved.append(kwargs["metrics"]["epoch"])
        if saved[-1] == epoch:
            os.kill(os.getpid(), signal.SIGINT)
        return path

    monkeypatch.setattr("m2vae_training.train_cli.save_model", save_then_ctrl_c)
    return saved


def test_a_moved_run_directory_resumes_with_the_dataset_it_carries(inputs):
    before, after = inputs["root"] / "before_move", inputs["root"] / "after_move"
    args = _args(inputs, before, "--epochs", "1")
    at = args.index("--dataset-dir")
    del args[at : at + 2]  # the default: RUN_DIR/dataset
    assert main(args) == 0
    shutil.move(before, after)
    resumed = _args(inputs, after, "--epochs", "2", "--resume")
    at = resumed.index("--dataset-dir")
    del resumed[at : at + 2]
    assert main(resumed) == 0
    assert load_checkpoint(after / "checkpoints")[0] == 2 and not before.exists()


@pytest.mark.parametrize("val_fraction", [0.0, 0.25])
def test_a_run_that_diverges_keeps_a_model_of_its_last_good_epoch(inputs, monkeypatch, capsys, val_fraction):
    # Without validation the model used to be written only after a normal end: a diverged run
    # left none, while the error promised one.
    compute_loss = Trainer.compute_loss

    def nan_in_epoch_3(trainer, x, available):
        result = compute_loss(trainer, x, available)
        return dataclasses.replace(result, total=result.total * math.nan) if trainer.epoch == 2 else result

    monkeypatch.setattr(Trainer, "compute_loss", nan_in_epoch_3)
    config = tiny_config(inputs["root"] / f"diverge{val_fraction}.yaml", val_fraction=val_fraction, epochs=4)
    out = inputs["root"] / f"diverged{val_fraction}"
    assert main(["--bag", str(inputs["bag"]), "--out", str(out), "--config", str(config), "--device", "cpu",
                 "--dataset-dir", str(inputs["dataset"])]) == 2
    err = capsys.readouterr().err
    assert "epoch 3: the training loss is nan" in err
    kept = "2" if val_fraction == 0 else "[12]"  # with validation: the better of the two epochs
    assert re.search(rf"{re.escape(str(out / 'model'))} holds the model of epoch {kept}\.", err)
    assert load_model(out / "model").spec.latent_dim > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_a_gpu_asked_for_and_absent_or_a_seed_beyond_64_bits_is_one_error_line(inputs, capsys):
    # Training on the CPU instead would take hours without anyone having asked for it.
    out = inputs["root"] / "no_gpu"
    assert main(_args(inputs, out, "--device", "cuda")) == 2
    assert "device 'cuda' requested but CUDA is unavailable: pass --device cpu" in capsys.readouterr().err
    assert not out.exists()
    assert main(_args(inputs, inputs["root"] / "big_seed", "--seed", str(2**64))) == 2
    assert "training.seed must be ≥ 0 and below 2**63, got 18446744073709551616" in capsys.readouterr().err


def test_a_resumed_run_drops_the_steps_its_interrupted_epoch_logged(inputs, monkeypatch):
    # Without purging, TensorBoard showed the interrupted epoch's first step twice.
    monkeypatch.setattr(TensorBoardLogger, "on_step_end", lambda self, trainer, step, loss: (
        self.writer.add_scalar("step/loss", loss.total.item(), step)))
    out = inputs["root"] / "tb_resumed"
    with monkeypatch.context() as interrupted:
        _interrupt_in_epoch(interrupted, 3)
        assert main(_args(inputs, out, "--epochs", "4")) == 130
    assert main(_args(inputs, out, "--epochs", "4", "--resume")) == 0
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    steps = [event.step for event in events.Scalars("step/loss")]
    assert len(steps) == len(set(steps)) and steps == sorted(steps)
    assert steps[-1] == load_checkpoint(out / "checkpoints")[1]["trainer"]["step"]


def test_a_config_given_on_resume_says_its_epochs_count_only_with_the_flag(inputs, capsys):
    # Every other changed setting is refused; the epochs are kept, and that used to go unsaid.
    out = inputs["root"] / "config_epochs"
    assert main(_args(inputs, out, "--epochs", "1")) == 0
    longer = tiny_config(inputs["root"] / "four_epochs.yaml", epochs=4)
    args = _args(inputs, out, "--resume")
    args[args.index("--config") + 1] = str(longer)
    capsys.readouterr()
    assert main(args) == 0
    assert ("--resume keeps the run's 1 epochs; the --config's training.epochs 4 counts only with --epochs 4"
            in capsys.readouterr().err)
    assert load_checkpoint(out / "checkpoints")[0] == 1


def test_a_resume_with_another_thread_count_says_it_is_not_bit_for_bit(inputs, capsys):
    """The sums of a CPU run follow its thread count: a resume with another one (another machine,
    OMP_NUM_THREADS unset) continues, and says that the weights will differ from an uninterrupted run;
    so does every later resume, since the weights already do."""
    out = inputs["root"] / "threads"
    threads = torch.get_num_threads()

    def resume(threads: int, epochs: int) -> str:
        torch.set_num_threads(threads)
        capsys.readouterr()
        assert main(_args(inputs, out, "--epochs", str(epochs), "--resume")) == 0
        return capsys.readouterr().err

    try:
        torch.set_num_threads(1)
        assert main(_args(inputs, out, "--epochs", "1")) == 0
        run = yaml.safe_load((out / "run.yaml").read_text())
        assert (run["torch_threads"], run["torch_version"]) == (1, torch.__version__)
        assert "resuming after epoch 1\n" in resume(1, 2)
        assert ("m2vae-train: resuming after epoch 2 with 2 torch threads where the run trained with 1 "
                "before (OMP_NUM_THREADS sets them): the weights will not be bit-for-bit those of an "
                "uninterrupted run\n") in resume(2, 3)
        assert "after epoch 3 with 1 torch threads where the run trained with 2 before" in resume(1, 4)
        assert "bit-for-bit" not in resume(2, 4)  # nothing left to train: no continuation to warn about
    finally:
        torch.set_num_threads(threads)
    run = yaml.safe_load((out / "run.yaml").read_text())
    assert run["torch_threads"] == 1 and [r["torch_threads"] for r in run["resumes"]] == [1, 2, 1, 2]


def test_resume_without_device_continues_on_the_runs_device_type(inputs, monkeypatch):
    # On a GPU machine, a run started with --device cpu was refused on --resume alone
    # (auto chose cuda: "device_type: 'cpu' in the run, 'cuda' now").
    out = inputs["root"] / "cpu_run_on_a_gpu_machine"
    assert main(_args(inputs, out, "--epochs", "1")) == 0  # _args passes --device cpu
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    args = _args(inputs, out, "--epochs", "2", "--resume")
    at = args.index("--device")
    del args[at : at + 2]
    assert main(args) == 0
    assert load_checkpoint(out / "checkpoints")[0] == 2


def test_ctrl_c_during_the_last_epochs_writes_ends_a_finished_run_as_done(inputs, monkeypatch, capsys):
    # The signal waits for the writes and lands after the last epoch: nothing is left to resume.
    saved = _ctrl_c_after_saving_the_model_of_epoch(monkeypatch, 2)
    out = inputs["root"] / "cut_at_the_end"
    capsys.readouterr()
    assert main(_args(inputs, out, "--epochs", "2")) == 0
    assert saved[-1] == 2 and load_checkpoint(out / "checkpoints")[0] == 2
    assert capsys.readouterr().out.startswith("done: 2 epochs")


@pytest.mark.parametrize(("text", "message"), [
    # A stray `-` line under modalities: YAML reads an entry of None.
    (lambda config: config.replace("modalities:", "modalities:\n-", 1).encode(),
     "modalities[0] must be a mapping"),
    (lambda config: config.replace("topic: /scan", "topic: -1").encode(),
     "modality 'lidar': topic must be a ROS topic name"),
    (lambda config: config.replace("block_seconds: 2.0", "block_seconds: 1.0e+12").encode(),
     "training.block_seconds must be at most 1e+09 s"),
    # A comment saved in Latin-1.
    (lambda config: b"# Gr\xf6\xdfe\n" + config.encode(), "is not UTF-8 text: byte 0xf6 at offset 4"),
])
def test_a_config_of_wrong_types_or_encoding_is_one_error_line_naming_it(inputs, capsys, tmp_path, text,
                                                                          message):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(text(inputs["config"].read_text()))
    assert bad.read_bytes() != inputs["config"].read_bytes()  # the edit applied
    args = _args(inputs, tmp_path / "run")
    args[args.index("--config") + 1] = str(bad)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"m2vae-train: error: config {bad}") and err.count("\n") == 1, err
    assert message in err, err
    assert not (tmp_path / "run").exists()


def test_an_error_mid_epoch_starts_its_own_line_after_the_progress_bar(inputs):
    """The epoch's bar stayed drawn and the error continued it: 'epoch 1/2:   0%|…]m2vae-train: error: …'."""
    disk_full = ("import sys\n"
                 "from m2vae_training import callbacks, train_cli\n"
                 "def full(self, trainer, step, loss):\n"
                 "    raise OSError(28, 'No space left on device')\n"
                 "callbacks.TensorBoardLogger.on_step_end = full\n"
                 "sys.exit(train_cli.main(sys.argv[1:]))\n")
    result = subprocess.run([sys.executable, "-c", disk_full, *_args(inputs, inputs["root"] / "disk_full")],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, timeout=300)
    err = result.stderr.decode()  # as written: a bar's \r is what a terminal starts the line over at
    error = "m2vae-train: error: [Errno 28] No space left on device"
    assert result.returncode == 2 and "epoch 1/2:" in err, err  # a bar was drawn
    assert error in err.splitlines() and err.endswith(f"{error}\n"), err  # no bar text before or after it

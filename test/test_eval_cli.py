"""m2vae-eval on a held-out simulated bag: metrics.json per subset, report, figures, probe data."""

import dataclasses
import importlib.util
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from bagutils import image, marker, scan, write_bag
from m2vae_training import eval_cli
from m2vae_training.bags import fingerprint
from m2vae_training.config import load_train_config
from m2vae_training.dataset import build_dataset, common_class_names, load_dataset
from m2vae_training.eval_cli import _overlap_warnings
from m2vae_training.eval_cli import main as evaluate
from m2vae_training.evaluation import score_subsets
from m2vae_training.train_cli import main as train
from trainutils import tiny_bag, tiny_config
from visualization_msgs.msg import MarkerArray

from m2vae_ros.api import MultimodalVAE
from m2vae_ros.artifact import load_model
from m2vae_ros.drop_window import DropWindow
from m2vae_ros.sim.recorder import simulate
from m2vae_ros.subsets import subset_name

SUBSETS = ("camera", "lidar", "camera+lidar")
CLASSES = ["red_cylinder", "red_box", "green_cylinder"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    bag = tiny_bag(root / "train_bag", seed=1)
    run = root / "run"
    assert train(["--bag", str(bag), "--out", str(run), "--config", str(tiny_config(root / "train.yaml")),
                  "--device", "cpu"]) == 0
    test_bag = tiny_bag(root / "test_bag", seed=7, seconds=6.0)
    return {"root": root, "train_bag": bag, "run": run, "test_bag": test_bag}


def _evaluate(trained, out, *extra: str) -> dict:
    model, bag = trained["run"] / "model", trained["test_bag"]
    assert evaluate(["--model", str(model), "--bag", str(bag), "--out", str(out), *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_metrics_cover_every_subset_with_plausible_values(trained):
    out = trained["root"] / "eval"
    metrics = _evaluate(trained, out)
    assert metrics["samples"] == 60 and metrics["warnings"] == []
    assert metrics["classes"] == ["red_cylinder", "red_box", "green_cylinder"]
    assert metrics["bags"][0]["path"] == str(trained["test_bag"].resolve())
    assert metrics["probes"]["fitted_on"].startswith("training dataset")
    assert tuple(metrics["subsets"]) == SUBSETS
    for name, entry in metrics["subsets"].items():
        assert entry["samples"] == 60
        assert math.isfinite(entry["elbo"]) and entry["elbo"] < 0
        assert set(entry["recon_error"]) == {"camera", "lidar"}
        assert 0.0 <= entry["recon_error"]["camera"] <= 255.0
        assert 0.0 <= entry["recon_error"]["lidar"] <= 8.0
        assert entry["kl_to_joint"] >= 0.0
        for key in ("nb_accuracy", "shape_accuracy"):
            assert 0.0 <= entry[key] <= 1.0, (name, key)
        assert entry["shape_accuracy"] >= entry["nb_accuracy"]  # merging classes can only help
        assert math.isfinite(entry["position_rmse"]) and entry["position_rmse"] >= 0.0
    assert metrics["subsets"]["camera+lidar"]["kl_to_joint"] == 0.0
    for figure in ("recon_grid.png", "latent_scatter.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # What identifies the model.
    spec_yaml = load_model(trained["run"] / "model").metadata
    assert (metrics["objective"], metrics["latent_dim"]) == ("m2vae", 8)
    assert metrics["weights_sha256"] == spec_yaml["weights"]["sha256"]
    # The constant guesses a probe must beat, from the test labels and positions.
    labels = load_dataset(out / "test_dataset").labels
    names = [CLASSES[i] for i in labels if i >= 0]
    guess = metrics["subsets"]["camera+lidar"]["constant_guess"]  # every subset has all 60 samples here
    assert all(entry["constant_guess"] == guess for entry in metrics["subsets"].values())
    assert metrics["probes"]["test_labelled"] == len(names) > 0
    assert guess["nb_accuracy"] == pytest.approx(max(map(names.count, CLASSES)) / len(names))
    cylinders = sum(name.endswith("cylinder") for name in names)
    assert guess["shape_accuracy"] == pytest.approx(max(cylinders, len(names) - cylinders) / len(names))
    assert guess["position_rmse"] > 0
    report = (out / "report.md").read_text()
    assert all(f"| {name} |" in report for name in SUBSETS)
    assert "![recon_grid.png](recon_grid.png)" in report
    assert f"Always guessing the most common class scores {guess['nb_accuracy']:.3g} on the same" in report
    assert "*Each sensor of a few test samples" in report and "The rows cover different samples" not in report


def test_probe_data_falls_back_to_the_training_bags_then_needs_train_bag(trained):
    shutil.move(trained["run"] / "dataset", trained["root"] / "moved_dataset")
    try:
        rebuilt = _evaluate(trained, trained["root"] / "eval_rebuilt")
        assert rebuilt["probes"]["fitted_on"].startswith("training bags")
        # A bag re-recorded under the training bag's name is not the training data any more.
        metadata = trained["train_bag"] / "metadata.yaml"
        stat = metadata.stat()
        os.utime(metadata, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        try:
            assert evaluate(["--model", str(trained["run"] / "model"), "--bag", str(trained["test_bag"]),
                             "--out", str(trained["root"] / "eval_changed")]) == 2
        finally:
            os.utime(metadata, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        shutil.move(trained["train_bag"], trained["root"] / "moved_bag")
        assert evaluate(["--model", str(trained["run"] / "model"), "--bag", str(trained["test_bag"]),
                         "--out", str(trained["root"] / "eval_none")]) == 2
        explicit = _evaluate(trained, trained["root"] / "eval_explicit",
                             "--train-bag", str(trained["root"] / "moved_bag"))
        assert explicit["probes"]["fitted_on"].startswith("--train-bag")
        assert explicit["subsets"] == rebuilt["subsets"]
    finally:
        if (trained["root"] / "moved_bag").exists():
            shutil.move(trained["root"] / "moved_bag", trained["train_bag"])
        shutil.move(trained["root"] / "moved_dataset", trained["run"] / "dataset")


def test_training_recordings_as_test_data_are_scored_with_a_warning(trained, capsys):
    copy = shutil.copytree(trained["train_bag"], trained["root"] / "copied_train_bag")  # keeps mtimes
    original = str(trained["train_bag"].resolve())
    storage_file = next(f for f in trained["train_bag"].iterdir() if f.suffix in (".mcap", ".db3"))
    # The storage file inside the training bag directory used to pass as new data: its
    # fingerprint lacks metadata.yaml's bytes.
    for test_bag in (trained["train_bag"], copy, storage_file):
        out = trained["root"] / f"eval_on_{test_bag.name}"
        assert evaluate(["--model", str(trained["run"] / "model"), "--bag", str(test_bag),
                         "--out", str(out)]) == 0
        named = original if test_bag == trained["train_bag"] else f"{test_bag.resolve()} (= {original})"
        expected = (f"test recordings {named} are training recordings of this model (same size and mtime): "
                    "these scores are not held-out")
        assert f"m2vae-eval: warning: {expected}\n" in capsys.readouterr().err
        assert json.loads((out / "metrics.json").read_text())["warnings"] == [expected]
        assert f"- **warning**: {expected}\n" in (out / "report.md").read_text()


def test_a_bag_rerecorded_at_a_training_bags_path_is_new_data(tmp_path):
    """Its message files' size and mtime on disk are not what training read: no overlap warning."""
    bag = tmp_path / "run1"
    bag.mkdir()
    (bag / "run1.mcap").write_bytes(b"x" * 100)
    trained = fingerprint(bag)
    assert _overlap_warnings([fingerprint(bag)], [trained])  # the same recording
    (bag / "run1.mcap").write_bytes(b"y" * 101)
    os.utime(bag / "run1.mcap", ns=(trained["mtime_ns"] + 10**9,) * 2)
    assert _overlap_warnings([fingerprint(bag)], [trained]) == []


def test_a_labels_topic_whose_markers_label_no_sample_is_warned_about_as_such(trained, tmp_path):
    """Not as absent: the topic is recorded, its markers are DELETE markers (no objects)."""
    records = []
    for i in range(10):
        stamp = 1_000_000_000 + i * 100_000_000
        deleted = marker(stamp, 0, CLASSES[0], (1, 0, 0))
        deleted.action = 2
        records += [("/camera/image_raw", image(np.full((32, 32, 3), 90, np.uint8), "rgb8", stamp), stamp),
                    ("/scan", scan([2.0] * 36, stamp), stamp), ("/ground_truth/object", deleted, stamp)]
    out, bag = tmp_path / "eval", str(write_bag(tmp_path / "bag", records))
    assert evaluate(["--model", str(trained["run"] / "model"), "--bag", bag, "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["warnings"] == [
        "labels topic /ground_truth/object: its 0 object markers label no sample (DELETE markers and "
        "negative ids are no objects; a marker labels samples within 0.1 s of its stamp), so there are no "
        "class or position probes"]


def test_a_class_one_recording_never_showed_does_not_conflict_with_its_name_elsewhere(tmp_path):
    markers = [("/ground_truth/object", marker(t, c, CLASSES[c], (1, 0, 0)), t) for t, c in ((1, 0), (9, 2))]
    bag = write_bag(tmp_path / "bag", markers)
    test = build_dataset([bag], load_train_config(tiny_config(tmp_path / "t.yaml")), tmp_path / "o",
                         progress=False)
    assert test.class_names == ["red_cylinder", "class_1", "green_cylinder"]
    assert common_class_names(CLASSES, test.class_names) == CLASSES
    assert common_class_names(test.class_names, CLASSES[:2]) == CLASSES
    assert common_class_names(["class_0"], ["class_0", "class_1"]) == ["class_0", "class_1"]
    with pytest.raises(ValueError, match="class 2 is 'green_cylinder' in the training data but 'blue_box'"):
        common_class_names(CLASSES, ["red_cylinder", "class_1", "blue_box"])
    # One object under another id: its test samples would carry an id never trained on.
    with pytest.raises(ValueError, match="class 'red_box' is id 1 in the training data but 3 in the test"):
        common_class_names(CLASSES, ["red_cylinder", "class_1", "green_cylinder", "red_box"])
    # Ids sharing a name (markers with an empty `ns`) are no conflict on either side.
    assert common_class_names(["box", "ball", "box"], ["box", "ball", "box"]) == ["box", "ball", "box"]
    assert common_class_names(["", ""], ["", ""]) == ["", ""]


def test_a_test_recording_without_complete_samples_is_scored_and_says_why_it_has_no_figures(trained, capsys):
    scanless = tiny_bag(trained["root"] / "scanless_bag", seed=7, seconds=4.0,
                        drops=[DropWindow("scan", 0.0, 5.0)])
    out = trained["root"] / "eval_scanless"
    model = str(trained["run"] / "model")
    assert evaluate(["--model", model, "--bag", str(scanless), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["subsets"]["camera"]["samples"] > 0 and metrics["subsets"]["lidar"]["samples"] == 0
    assert 0.0 <= metrics["subsets"]["camera"]["nb_accuracy"] <= 1.0
    assert [w for w in metrics["warnings"] if w.startswith("no test sample has every sensor")]
    silent = "modality lidar: topic /scan gave it no usable message"
    assert [w for w in metrics["warnings"] if w.startswith(silent)]
    assert "no test sample has every sensor" in capsys.readouterr().err
    assert not list(out.glob("*.png"))


def test_a_sensor_that_gets_nothing_from_a_topic_another_sensor_reads_is_warned_about(trained, capsys):
    """The topic decodes fine (for the scan), so a per-topic count would see nothing wrong."""
    out = trained["root"] / "eval_shared_topic"
    metrics = _evaluate(trained, out, "--topic", "camera=/scan")
    assert metrics["subsets"]["camera"]["samples"] == 0 and metrics["subsets"]["lidar"]["samples"] == 60
    silent = [w for w in metrics["warnings"] if w.startswith("modality camera: topic /scan gave it no")]
    assert silent and "unsupported_type" in silent[0], metrics["warnings"]
    # The topics that could have fed it, as m2vae-dataset and m2vae-train name them.
    assert "the bags record for camera: /camera/image_raw (sensor_msgs/msg/Image)" in silent[0], silent
    assert "camera: no samples;" in capsys.readouterr().out


def test_a_labels_topic_no_message_of_which_reads_as_a_marker_is_warned_about(trained, tmp_path):
    """Else the report says "no ground truth", as if the recording had none."""
    records = []
    for i in range(10):
        stamp = 1_000_000_000 + i * 100_000_000
        label = MarkerArray(markers=[marker(stamp, 0, CLASSES[0], (1, 0, 0))])
        records += [("/camera/image_raw", image(np.full((8, 8, 3), 90, np.uint8), "rgb8", stamp), stamp),
                    ("/scan", scan([2.0] * 36, stamp), stamp), ("/ground_truth/object", label, stamp)]
    bag = write_bag(tmp_path / "bag", records)
    out = tmp_path / "eval"
    assert evaluate(["--model", str(trained["run"] / "model"), "--bag", str(bag), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    unread = [w for w in metrics["warnings"] if w.startswith("labels topic /ground_truth/object: no message")]
    assert unread and "'missing_field': 10" in unread[0], metrics["warnings"]
    assert "nb_accuracy" not in metrics["subsets"]["camera"]


def test_ground_truth_on_another_topic_is_named_and_read_with_labels_topic(trained, tmp_path, capsys):
    """It used to be "no ground truth in the test data", with no warning and no way to name it."""
    def recording(path: Path, grey: int) -> str:
        records = []
        for i in range(12):
            stamp = 1_000_000_000 + i * 100_000_000
            frame = image(np.full((32, 32, 3), grey + i, np.uint8), "rgb8", stamp)
            ranges = scan([2.0 + i / 10] * 36, stamp)
            records += [("/camera/image_raw", frame, stamp), ("/scan", ranges, stamp),
                        ("/gt/object", marker(stamp, i % 3, CLASSES[i % 3], (1, 0, 0)), stamp)]
        return str(write_bag(path, records))

    bag, model = recording(tmp_path / "bag", 90), str(trained["run"] / "model")
    assert evaluate(["--model", model, "--bag", bag, "--out", str(tmp_path / "eval")]) == 0
    expected = ("labels topic /ground_truth/object is not in the test recordings, so there are no class or "
                "position probes; the recordings have Marker topics /gt/object (--labels-topic TOPIC)")
    assert f"m2vae-eval: warning: {expected}\n" in capsys.readouterr().err
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["warnings"] == [expected]
    # The probes' training recordings are read with it too: the model's own hold no /gt/object.
    assert evaluate(["--model", model, "--bag", bag, "--out", str(tmp_path / "named"),
                     "--labels-topic", "/gt/object"]) == 0
    metrics = json.loads((tmp_path / "named" / "metrics.json").read_text())
    assert metrics["probes"]["fitted_on"].startswith("training bags ")
    # It said "no class probe: ... 0 labels of 0 classes", not why.
    assert metrics["warnings"] == [
        "labels topic /gt/object is not in the probes' training recordings, so no probe can be fitted; the "
        "recordings have Marker topics /ground_truth/object (--labels-topic TOPIC)"]
    train_bag = recording(tmp_path / "train_bag", 40)
    assert evaluate(["--model", model, "--bag", bag, "--out", str(tmp_path / "both"), "--labels-topic",
                     "/gt/object", "--train-bag", train_bag]) == 0
    metrics = json.loads((tmp_path / "both" / "metrics.json").read_text())
    assert metrics["warnings"] == [] and metrics["subsets"]["camera"]["nb_accuracy"] is not None


def test_figures_of_an_earlier_evaluation_into_the_same_out_are_removed(trained):
    out = trained["root"] / "eval_reused"
    _evaluate(trained, out)
    assert (out / "recon_grid.png").is_file()
    scanless = tiny_bag(trained["root"] / "scanless_bag2", seed=7, seconds=4.0,
                        drops=[DropWindow("scan", 0.0, 5.0)])
    model = str(trained["run"] / "model")
    assert evaluate(["--model", model, "--bag", str(scanless), "--out", str(out)]) == 0
    assert not list(out.glob("*.png"))  # they showed the other recording


def test_topics_that_give_no_sample_are_an_error_naming_them(trained, capsys):
    out = trained["root"] / "eval_wrong_topics"
    model, bag = str(trained["run"] / "model"), str(trained["test_bag"])
    assert evaluate(["--model", model, "--bag", bag, "--out", str(out), "--topic", "lidar=/scann",
                     "--topic", "camera=/cam"]) == 2
    err = capsys.readouterr().err
    assert "no sample of the test bags holds camera=/cam, lidar=/scann" in err
    assert "the bags record for camera: /camera/image_raw (sensor_msgs/msg/Image)" in err


def test_a_batch_size_below_one_is_a_usage_error(trained, capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate(["--model", str(trained["run"] / "model"), "--bag", str(trained["test_bag"]),
                  "--out", str(trained["root"] / "eval_batch"), "--batch-size", "0"])
    assert exit_info.value.code == 2 and "--batch-size: must be ≥ 1" in capsys.readouterr().err


def test_the_elbo_does_not_depend_on_the_batch_size(trained):
    # Its z are drawn in chunks of a fixed size; before, batch by batch (15.93 at 128, 16.83 at 32).
    metrics = _evaluate(trained, trained["root"] / "eval_batch_7", "--batch-size", "7")
    model = load_model(trained["run"] / "model").model
    scores = score_subsets(model, load_dataset(trained["root"] / "eval_batch_7" / "test_dataset"),
                           batch_size=60)
    for subset, score in scores.items():
        entry = metrics["subsets"][subset_name(subset, model.names)]
        assert entry["elbo"] == pytest.approx(score.elbo_sum / score.present.sum(), rel=1e-6)
        assert entry["elbo"] < 0


def test_files_of_the_outputs_names_that_no_evaluation_wrote_are_not_overwritten(trained, capsys):
    out = trained["root"] / "notes"
    out.mkdir()
    (out / "report.md").write_text("my notes\n")
    assert evaluate(["--model", str(trained["run"] / "model"), "--bag", str(trained["test_bag"]),
                     "--out", str(out)]) == 2
    assert "holds report.md, which no m2vae-eval wrote" in capsys.readouterr().err
    assert (out / "report.md").read_text() == "my notes\n" and sorted(p.name for p in out.iterdir()) == [
        "report.md"]


def test_a_failed_rerun_leaves_no_outputs_of_the_earlier_one(trained):
    out = trained["root"] / "eval_failed_rerun"
    _evaluate(trained, out)
    assert evaluate(["--model", str(trained["run"] / "model"), "--bag", str(trained["test_bag"]),
                     "--out", str(out), "--train-bag", str(trained["root"] / "no_such_bag")]) == 2
    assert [p.name for p in out.iterdir() if p.is_file()] == []  # they described the first run
    _evaluate(trained, out)
    assert evaluate(["--model", str(trained["root"] / "no_model"), "--bag", str(trained["test_bag"]),
                     "--out", str(out)]) == 2
    assert [p.name for p in out.iterdir() if p.is_file()] == []


def test_probes_the_training_data_cannot_fit_and_probes_trained_on_the_test_bag_are_warned_about(trained):
    scanless = tiny_bag(trained["root"] / "scanless_train_bag", seed=3, seconds=4.0,
                        drops=[DropWindow("scan", 0.0, 5.0)])
    unfit = _evaluate(trained, trained["root"] / "eval_unfit", "--train-bag", str(scanless))
    assert unfit["probes"]["classifier_samples"] == unfit["probes"]["regressor_samples"] == 0
    assert unfit["probes"]["train_samples"] > 0
    assert unfit["warnings"] == [
        "no class probe: the training samples with every sensor hold 0 labels of 0 classes, and naive Bayes "
        "needs two classes",
        "no position probe: 0 training samples with every sensor have an object position, and the regressor "
        "needs two"]
    assert all(entry["nb_accuracy"] is None for entry in unfit["subsets"].values())

    seen = _evaluate(trained, trained["root"] / "eval_seen", "--train-bag", str(trained["test_bag"]))
    (warning,) = seen["warnings"]
    assert warning.endswith("are the probes' training recordings (same size and mtime): these scores are "
                            "not held-out")
    # A sample captured while the object changed has no label.
    assert 50 < seen["probes"]["classifier_samples"] <= seen["samples"] == 60


def test_a_model_saved_from_python_is_scored_with_train_bag_and_topics_for_both(trained, capsys):
    loaded = load_model(trained["run"] / "model")
    blank = dataclasses.replace(loaded.spec, modalities=tuple(
        dataclasses.replace(m, topic="") for m in loaded.spec.modalities))
    model_dir = MultimodalVAE(blank, model=loaded.model).save(trained["root"] / "api_model")
    topics = ["--topic", "camera=/camera/image_raw", "--topic", "lidar=/scan"]
    base = ["--model", str(model_dir), "--bag", str(trained["test_bag"]), *topics]
    assert evaluate([*base, "--out", str(trained["root"] / "eval_api_none")]) == 2
    assert "the artifact names no training data (a model saved from Python" in capsys.readouterr().err
    out = trained["root"] / "eval_api"
    assert evaluate([*base, "--out", str(out), "--train-bag", str(trained["train_bag"])]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["probes"]["classifier_samples"] > 0
    assert all(0.0 <= entry["nb_accuracy"] <= 1.0 for entry in metrics["subsets"].values())


def test_a_run_directory_given_as_the_model_says_where_its_model_is(trained, capsys):
    assert evaluate(["--model", str(trained["run"]), "--bag", str(trained["test_bag"]),
                     "--out", str(trained["root"] / "eval_run_dir")]) == 2
    assert "a training run keeps its model in RUN_DIR/model" in capsys.readouterr().err


def test_a_model_trained_on_raw_images_is_scored_on_a_compressed_recording(trained):
    # The node reads either type (its msg_type parameter); so does the evaluation.
    bag = trained["root"] / "compressed_bag"
    simulate(bag, 4.0, 7, image_size=(32, 32), points=False, episode_seconds=2.5, compressed=True)
    out = trained["root"] / "eval_compressed"
    assert evaluate(["--model", str(trained["run"] / "model"), "--bag", str(bag), "--out", str(out),
                     "--topic", "camera=/camera/image_raw/compressed"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["subsets"]["camera"]["samples"] > 30
    assert 0.0 <= metrics["subsets"]["camera"]["recon_error"]["camera"] <= 255.0


def _bench_module(name: str):
    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_the_in_view_bench_splits_the_lidar_error_that_m2vae_eval_reports(trained):
    """bench/imputation_in_view.py: its whole-scan column is m2vae-eval's LiDAR recon_error (each
    subset on the samples that hold it), and the camera's 60° of a 360° scan are the 61 beams
    around angle 0."""
    in_view = _bench_module("imputation_in_view")
    beams = in_view.beams_in_view(-math.pi, math.pi, 360, math.radians(60.0))
    assert beams.sum() == 61 and beams[180] and beams[150] and beams[210] and not beams[149]
    partial = in_view.beams_in_view(-math.radians(135), math.radians(135), 1081, math.radians(60.0))
    assert partial.sum() == 241 and partial[540]  # a 270° scan at 0.25°: beam 540 looks ahead
    # The camera off for 2 s: the lidar subset is scored on more samples than the others.
    gap = tiny_bag(trained["root"] / "camera_gap_bag", seed=7, seconds=6.0,
                   drops=[DropWindow("camera", 2.0, 4.0)])
    out = trained["root"] / "eval_in_view"
    assert evaluate(["--model", str(trained["run"] / "model"), "--bag", str(gap), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["subsets"]["lidar"]["samples"] > metrics["subsets"]["camera+lidar"]["samples"] > 0
    rmse = in_view.lidar_rmse_by_view(trained["run"] / "model", out / "test_dataset")
    assert tuple(rmse) == SUBSETS
    for subset, parts in rmse.items():
        assert parts["all"] == pytest.approx(metrics["subsets"][subset]["recon_error"]["lidar"], rel=1e-6)
        assert min(parts["in"], parts["out"]) <= parts["all"] <= max(parts["in"], parts["out"])


@pytest.mark.parametrize(("provenance", "field", "problem"), [
    ("x", "provenance", "must be a mapping, got 'x'"),
    ({"dataset": "x"}, "provenance.dataset", "must be a mapping, got 'x'"),
    ({"dataset": {"directory": 5}}, "provenance.dataset.directory", "must be a path, got 5"),
    ({"bags": "x"}, "provenance.bags", "must be a list of recordings, got 'x'"),
    ({"bags": ["x"]}, "provenance.bags[0]", "must be a mapping with a path, got 'x'"),
    ({"sync": "x"}, "provenance.sync", "must be a mapping, got 'x'"),
    ({"sync": {"slop": "x"}}, "provenance.sync.slop", "must be a number, got 'x'"),
    ({"sync": {"slop": -1}}, "provenance.sync.slop", "must be a finite number of seconds ≥ 0, got -1.0"),
    ({"sync": {"timeout": {"lidar": "x"}}}, "provenance.sync.timeout.lidar",
     "'x' is not a positive, finite number of seconds"),
    ({"labels_topic": ["/truth"]}, "provenance.labels_topic", "must be a topic name, got ['/truth']"),
])
def test_a_hand_edited_provenance_of_the_wrong_shape_is_one_error_line_naming_the_field(
    trained, tmp_path, capsys, provenance, field, problem
):
    model = shutil.copytree(trained["run"] / "model", tmp_path / "model")
    metadata = yaml.safe_load((model / "model.yaml").read_text())
    if isinstance(provenance, dict):  # one part edited, the others as training wrote them
        provenance = {**metadata["provenance"], **provenance}
    metadata["provenance"] = provenance
    (model / "model.yaml").write_text(yaml.safe_dump(metadata, sort_keys=False))
    out = tmp_path / "eval"
    assert evaluate(["--model", str(model), "--bag", str(trained["test_bag"]), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"m2vae-eval: error: {model / 'model.yaml'}: {field} {problem}\n"
    assert list(out.iterdir()) == []  # refused before the test recordings were read


def test_an_interrupted_evaluation_says_how_to_finish_and_a_rerun_does(trained, capsys, monkeypatch):
    out = trained["root"] / "eval_interrupted"
    model, bag = trained["run"] / "model", trained["test_bag"]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(eval_cli, "score_subsets", interrupted)
        assert evaluate(["--model", str(model), "--bag", str(bag), "--out", str(out)]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"m2vae-eval: interrupted; run it again to finish ({out / 'test_dataset'} will be reused)")
    assert not (out / "metrics.json").exists()
    assert _evaluate(trained, out)["samples"] > 0
    with monkeypatch.context() as patched:  # before any dataset: nothing said to be reused
        patched.setattr(eval_cli, "load_model", interrupted)
        assert evaluate(["--model", str(model), "--bag", str(bag), "--out", str(out / "new")]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == "m2vae-eval: interrupted; run it again to finish"

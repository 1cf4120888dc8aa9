"""report.md's explanations and the reconstruction grid's labels, from hand-made inputs."""

import numpy as np
from m2vae_training.figures import recon_figure
from m2vae_training.report import report_markdown

from m2vae_ros.spec import (
    DepthPreprocess,
    ImagePreprocess,
    ModalitySpec,
    ModelSpec,
    RangeImagePreprocess,
    ScanPreprocess,
)


def _metrics(camera_samples: int, lidar_samples: int, joint_samples: int) -> dict:
    def entry(samples: int) -> dict:
        return {"samples": samples, "elbo": -10.0, "kl_to_joint": 1.0, "nb_accuracy": 0.8,
                "recon_error": {"camera": 20.0, "lidar": 0.5},
                "constant_guess": {"nb_accuracy": 0.5123 if samples == 349 else 0.4}}

    return {"model": "/m", "objective": "m2vae", "latent_dim": 8, "weights_sha256": "ab" * 32,
            "bags": [{"path": "/b"}], "samples": 1090, "warnings": [],
            "classes": ["red_box", "green_cylinder"],
            "probes": {"fitted_on": "training dataset /d", "train_samples": 10, "classifier_samples": 10,
                       "regressor_samples": 10, "test_labelled": 1082},
            "subsets": {"camera": entry(camera_samples), "lidar": entry(lidar_samples),
                        "camera+lidar": entry(joint_samples)}}


def test_rows_over_different_samples_are_said_to_be_so() -> None:
    """A LiDAR missing for 25 s of 60 left the camera row with 1090 samples and the others 349."""
    report = report_markdown(_metrics(1090, 349, 349), [])
    assert "The rows cover different samples (camera 1090, lidar 349, camera+lidar 349)" in report
    assert ("Always guessing the most common class scores, on each row's samples: camera 0.4, lidar 0.512, "
            "camera+lidar 0.512.") in report
    assert "The rows cover different samples" not in report_markdown(_metrics(349, 349, 349), [])


def test_a_probe_score_no_better_than_its_constant_guess_is_marked() -> None:
    metrics = _metrics(349, 349, 349)
    metrics["subsets"]["lidar"]["nb_accuracy"] = 0.5  # the guess scores 0.5123 on these samples
    metrics["subsets"]["lidar"]["position_rmse"] = 2.0
    metrics["subsets"]["lidar"]["constant_guess"]["position_rmse"] = 1.5  # lower is better: 2.0 is worse
    report = report_markdown(metrics, [])
    lidar_row = next(line for line in report.splitlines() if line.startswith("| lidar |"))
    assert lidar_row.count(" ✗") == 2 and "| 0.5 ✗ |" in lidar_row and "| 2 ✗ |" in lidar_row
    assert "✗" not in next(line for line in report.splitlines() if line.startswith("| camera |"))
    assert "- ✗ marks a probe score no better than its row's constant guess" in report
    assert "✗" not in report_markdown(_metrics(349, 349, 349), [])


def test_each_column_says_its_unit_direction_and_baseline() -> None:
    report = report_markdown(_metrics(349, 349, 349), ["latent_scatter.png"])
    assert "- **ELBO** (nats per sample, higher is better)" in report
    assert "the same at any --batch-size" in report
    assert "(1082 of 1090 have one). Always guessing the most common class scores 0.512 on the same" in report
    assert "objective m2vae, latent size 8, weights sha256 abababababab…" in report
    assert "![latent_scatter.png](latent_scatter.png)\n\n*The latent means of the test samples" in report


def test_the_reconstruction_grid_marks_imputed_cells() -> None:
    spec = ModelSpec(modalities=(ModalitySpec("camera", "image", ImagePreprocess(width=8, height=8)),
                                 ModalitySpec("lidar", "scan", ScanPreprocess(beams=16))))
    real = {"camera": np.zeros((2, 3, 8, 8), np.float32), "lidar": np.zeros((2, 1, 16), np.float32)}
    recons = {subset: real for subset in ("camera", "lidar", "camera+lidar")}
    figure = recon_figure(spec, real, recons, sample_names=["row 3 (1.5 s)", "row 9 (4.5 s)"])
    assert [ax.get_ylabel() for ax in figure.axes[::4]] == [
        "row 3 (1.5 s)\ncamera", "row 3 (1.5 s)\nlidar\nrange (m)", "row 9 (4.5 s)\ncamera",
        "row 9 (4.5 s)\nlidar\nrange (m)"]
    titles = [ax.get_title() for ax in figure.axes[:4]]
    assert titles == ["real", "from camera", "from lidar", "from camera+lidar"]
    marked = [(i // 4, i % 4) for i, ax in enumerate(figure.axes)
              if [text.get_text() for text in ax.texts] == ["imputed"]]
    # Rows: sample 0 camera, sample 0 lidar, sample 1 camera, sample 1 lidar; the lidar column
    # imputes the camera and the camera column the LiDAR.
    assert marked == [(0, 2), (1, 1), (2, 2), (3, 1)]


def test_a_range_image_is_drawn_in_metres_over_bearing_and_elevation() -> None:
    pre = RangeImagePreprocess(rings=4, bins=8, fov_up_deg=10.0, fov_down_deg=-20.0, range_max=30.0)
    spec = ModelSpec(modalities=(ModalitySpec("lidar3d", "range_image", pre),))
    real = np.full((1, 1, 4, 8), 0.5, np.float32)
    recon = real.copy()
    recon[0, 0, 0, :3] = 1.0  # no return, as the codec reads it: no point in the cloud, no colour here
    mask = np.ones_like(real, dtype=bool)
    mask[0, 0, 3, 7] = False
    figure = recon_figure(spec, {"lidar3d": real}, {"lidar3d": {"lidar3d": recon}}, {"lidar3d": mask})
    real_ax, recon_ax = figure.axes
    assert real_ax.get_ylabel() == "#0\nlidar3d\nelevation (°)\ncolour: 0–30 m"
    # Rings 10° apart whose centres lie on the field of view's ends: each cell spans ±5° around its ring.
    assert real_ax.get_xlabel() == "bearing (°)" and real_ax.images[0].get_extent() == [-180, 180, -25, 15]
    shown = real_ax.images[0].get_array()
    assert shown[0, 0] == 15.0 and np.ma.is_masked(shown[3, 7]) and shown.mask.sum() == 1  # metres
    assert recon_ax.images[0].get_array().mask[0, :3].all() and recon_ax.images[0].get_clim() == (0.0, 30.0)


def test_a_depth_image_is_drawn_in_metres_with_its_holes_blank() -> None:
    depth = ModalitySpec("depth", "depth", DepthPreprocess(width=8, height=6, range_max=5.0))
    spec = ModelSpec(modalities=(depth,))
    real = np.full((1, 1, 6, 8), 0.4, np.float32)
    recon = real.copy()
    recon[0, 0, 0, :2] = 1.0  # no return: NaN in the 32FC1 reconstruction, blank here
    mask = np.ones_like(real, dtype=bool)
    mask[0, 0, 5, 7] = False
    figure = recon_figure(spec, {"depth": real}, {"depth": {"depth": recon}}, {"depth": mask})
    real_ax, recon_ax = figure.axes
    assert real_ax.get_ylabel() == "#0\ndepth\ncolour: 0–5 m"
    shown = real_ax.images[0].get_array()
    assert shown[0, 0] == 2.0 and np.ma.is_masked(shown[5, 7]) and shown.mask.sum() == 1  # metres
    assert recon_ax.images[0].get_array().mask[0, :2].all() and recon_ax.images[0].get_clim() == (0.0, 5.0)

"""Metric helpers: sensor units, masked returns and the train-once probes."""

import numpy as np
import pytest
from m2vae_training.metrics import ReconstructionError, constant_guess, fit_probes, shape_of

from m2vae_ros.spec import (
    DepthPreprocess,
    ImagePreprocess,
    ModalitySpec,
    RangeImagePreprocess,
    ScanPreprocess,
)


def _modality(kind: str) -> ModalitySpec:
    if kind == "image":
        return ModalitySpec(name=kind, kind=kind, preprocess=ImagePreprocess(width=2, height=2))
    return ModalitySpec(name=kind, kind=kind, preprocess=ScanPreprocess(beams=3, range_max=8.0))


def test_range_error_is_rmse_in_metres_over_valid_returns_only():
    error = ReconstructionError(_modality("scan"))
    assert np.isnan(error.value())
    real = np.array([[[0.5, 1.0, 0.25]]])
    pred = np.array([[[0.5 + 0.1 / 8.0, 0.0, 0.25]]])
    error.add(pred, real, np.array([[[True, False, True]]]))
    error.add(real, real, np.array([[[False, False, False]]]))
    assert np.isclose(error.value(), np.sqrt(0.1**2 / 2))


def test_range_image_with_intensity_is_scored_on_its_range_channel():
    modality = ModalitySpec("points", "range_image", RangeImagePreprocess(rings=1, bins=2, range_max=10.0,
                                                                          intensity=True))
    error = ReconstructionError(modality)
    real = np.array([[[[0.5, 0.2]], [[0.9, 0.1]]]])  # [B, (range, intensity), rings, bins]
    pred = np.array([[[[0.52, 0.9]], [[0.0, 0.0]]]])  # intensity errors must not count
    error.add(pred, real, np.array([[[[True, False]], [[True, False]]]]))
    assert np.isclose(error.value(), 0.2)


def test_depth_error_is_rmse_in_metres_over_pixels_with_a_depth():
    modality = ModalitySpec("depth", "depth", DepthPreprocess(width=2, height=1, range_max=4.0))
    error = ReconstructionError(modality)
    real = np.array([[[[0.5, 1.0]]]])  # [B, 1, height, width]; the second pixel a hole
    pred = np.array([[[[0.55, 0.0]]]])  # its error must not count
    error.add(pred, real, np.array([[[[True, False]]]]))
    assert np.isclose(error.value(), 0.2)


def test_image_error_is_mean_absolute_on_the_255_scale():
    error = ReconstructionError(_modality("image"))
    real = np.zeros((1, 3, 2, 2))
    error.add(real + 0.5, real)
    error.add(real, real)
    assert np.isclose(error.value(), 127.5 / 2)


def test_probes_trained_on_joint_latents_score_other_latents():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 50)
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    z = centres[labels] + rng.normal(scale=0.3, size=(150, 2))
    positions = np.column_stack([z, np.zeros(150)]).astype(np.float32)
    probes = fit_probes(z, labels, positions, ("red_cylinder", "green_cylinder", "blue_box"))
    assert probes.accuracy(z, labels) > 0.95
    confused = z.copy()
    confused[labels == 1] = centres[0]
    assert probes.accuracy(confused, labels) < 0.7
    assert probes.shape_accuracy(confused, labels) > 0.95
    assert probes.position_rmse(z, positions) < 1e-3
    unlabelled = fit_probes(z, -np.ones(150, dtype=np.int64), positions, ())
    assert np.isnan(unlabelled.accuracy(z, labels))
    assert shape_of("green_cylinder") == "cylinder"


def test_a_class_only_the_test_data_holds_counts_as_a_miss():
    # Trained on classes 0 and 1; the test recording also shows class 2, which the classifier
    # can never predict. Naming all three classes, its rows are scored, not an IndexError.
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 50)
    z = np.array([[0.0, 0.0], [5.0, 0.0]])[labels] + rng.normal(scale=0.3, size=(100, 2))
    names = ("red_cylinder", "green_cylinder", "red_box")
    probes = fit_probes(z, labels, np.zeros((100, 3), np.float32), names)
    test_z, test_labels = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 0.0]]), np.array([0, 1, 2])
    assert np.isclose(probes.accuracy(test_z, test_labels), 2 / 3)
    assert np.isclose(probes.shape_accuracy(test_z, test_labels), 2 / 3)


@pytest.mark.filterwarnings("ignore:overflow encountered in square:RuntimeWarning")  # the point of the test
def test_latents_beyond_every_class_likelihood_score_nothing_rather_than_class_zero():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 50)
    z = (np.array([[0.0, 0.0], [5.0, 0.0]])[labels] + rng.normal(scale=0.3, size=(100, 2))).astype(np.float32)
    probes = fit_probes(z, labels, np.zeros((100, 3), np.float32), ("red_cylinder", "red_box"))
    wild = np.full((4, 2), 1e200)  # an overflowing encoder: every class's log-likelihood is -inf
    assert np.isnan(probes.accuracy(wild, np.array([0, 0, 0, 1])))
    assert np.isnan(probes.shape_accuracy(wild, np.array([0, 0, 0, 1])))
    assert probes.accuracy(z, labels) > 0.95


def test_shape_accuracy_is_missing_where_the_class_names_hold_one_shape():
    # Markers with an empty `ns` (or names without a shape part) merge into one "shape":
    # every guess would count as right.
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 50)
    z = np.array([[0.0, 0.0], [5.0, 0.0]])[labels] + rng.normal(scale=0.3, size=(100, 2))
    for names in (("", ""), ("red_box", "green_box")):
        probes = fit_probes(z, labels, np.zeros((100, 3), np.float32), names)
        assert probes.accuracy(z, labels) > 0.95 and np.isnan(probes.shape_accuracy(z, labels))
    # Ids 0 and 2 trained, 1 never seen: its placeholder name is no shape of its own.
    probes = fit_probes(z, labels * 2, np.zeros((100, 3), np.float32), ("red_box", "class_1", "green_box"))
    assert np.isnan(probes.shape_accuracy(z, labels * 2))


def test_a_constant_guess_scores_the_majority_and_the_mean_position():
    names = ("red_cylinder", "red_box", "green_cylinder")
    labels = np.array([0, 0, 1, 2, -1])  # one unlabelled row
    positions = np.array([[0, 0, 0], [2, 0, 0], [np.nan, np.nan, 0], [1, 1, 0], [1, -1, 0]], float)
    guess = constant_guess(labels, positions, names)
    assert guess == pytest.approx({"nb_accuracy": 2 / 4, "shape_accuracy": 3 / 4, "position_rmse": 1.0})


def test_a_constant_guess_has_no_shape_score_with_one_real_shape_at_stake():
    """A placeholder name (an id no marker named) is no shape, as in Probes.shape_accuracy."""
    labels = np.array([0, 0, 3])
    assert "shape_accuracy" not in constant_guess(labels, np.full((3, 3), np.nan),
                                                  ("red_box", "b", "c", "class_3"))
    assert constant_guess(np.array([-1]), np.full((1, 3), np.nan), ("red_box",)) == {}

"""Metric helpers: sensor units, masked returns, KL, and the train-once probes."""

import numpy as np
from m2vae_training.metrics import (
    fit_probes,
    gaussian_kl,
    image_abs_error_255,
    range_rmse_m,
    shape_of,
)


def test_range_rmse_is_in_metres_and_ignores_no_return_cells():
    real = np.array([[0.5, 1.0, 0.25]])
    pred = np.array([[0.5 + 0.1 / 8.0, 0.0, 0.25]])
    mask = np.array([[True, False, True]])
    assert np.isclose(range_rmse_m(pred, real, mask, range_max=8.0), np.sqrt(0.1**2 / 2))
    assert np.isnan(range_rmse_m(pred, real, np.zeros_like(mask), range_max=8.0))


def test_image_error_is_on_the_255_scale():
    real = np.zeros((1, 3, 2, 2))
    assert np.isclose(image_abs_error_255(real + 0.5, real), 127.5)


def test_gaussian_kl_is_zero_for_equal_and_known_for_shifted():
    m = np.zeros((2, 4))
    lv = np.zeros((2, 4))
    assert np.allclose(gaussian_kl(m, lv, m, lv), 0.0)
    assert np.allclose(gaussian_kl(m + 1.0, lv, m, lv), 2.0)


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

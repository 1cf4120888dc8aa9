"""The command lines' error line: one line for a user's mistake, a traceback for a defect."""

from __future__ import annotations

import numpy as np
import pytest
from m2vae_training.error_line import print_error

from m2vae_ros.subsets import parse_subset


def _raised(call) -> Exception:
    try:
        call()
    except ValueError as exc:
        return exc
    raise AssertionError("no ValueError")


def test_a_check_of_the_package_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    print_error("m2vae-eval", _raised(lambda: parse_subset("radar", ["camera", "lidar"])))
    assert capsys.readouterr().err == (
        "m2vae-eval: error: unknown modality 'radar' in subset 'radar'; known: ['camera', 'lidar']\n")


def test_a_value_error_from_another_library_comes_with_its_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_error("m2vae-train", _raised(lambda: np.linspace(0.0, 1.0, -1)), " (rank 1 of 2)")
    err = capsys.readouterr().err
    first, second = err.splitlines()[:2]
    assert first.startswith("m2vae-train: error (rank 1 of 2): Number of samples, -1, must be non-negative")
    assert "numpy" in second and "a defect; please report it with this traceback" in second
    assert "Traceback (most recent call last)" in err and "test_error_line.py" in err

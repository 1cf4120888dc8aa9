"""The command lines' error line: one line, naming the file when another library raised it."""

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


def test_a_value_error_from_another_library_names_its_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    error = _raised(lambda: np.linspace(0.0, 1.0, -1))  # raised in numpy's Python code
    print_error("m2vae-train", error, " (rank 1 of 2)")
    line = capsys.readouterr().err
    assert line.startswith("m2vae-train: error (rank 1 of 2): Number of samples, -1, must be non-negative")
    assert "(raised in numpy/" in line and "M2VAE_TRACEBACK=1 prints the traceback)" in line
    assert line.count("\n") == 1

    monkeypatch.setenv("M2VAE_TRACEBACK", "1")
    print_error("m2vae-train", error)
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "test_error_line.py" in err

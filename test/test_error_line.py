"""The command lines' error line: one line, naming where an error no check of the package raised came from."""

from __future__ import annotations

import numpy as np
import pytest
from m2vae_training.error_line import print_error

from m2vae_ros.api import _as_batch
from m2vae_ros.spec import ModalitySpec, VectorPreprocess
from m2vae_ros.subsets import parse_subset


def _raised(call) -> Exception:
    try:
        call()
    except (ValueError, RuntimeError) as exc:
        return exc
    raise AssertionError("nothing raised")


def _reshaped() -> None:
    np.zeros(3).reshape(2, 2)  # numpy's C code raises: the last frame is this line


def test_a_check_of_the_package_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    print_error("m2vae-eval", _raised(lambda: parse_subset("radar", ["camera", "lidar"])))
    assert capsys.readouterr().err == (
        "m2vae-eval: error: unknown modality 'radar' in subset 'radar'; known: ['camera', 'lidar']\n")


def test_an_error_no_check_raised_names_where_it_came_from(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    in_numpy = _raised(lambda: np.linspace(0.0, 1.0, -1))  # raised in numpy's Python code
    print_error("m2vae-train", in_numpy, " (rank 1 of 2)")
    line = capsys.readouterr().err
    assert line.startswith("m2vae-train: error (rank 1 of 2): Number of samples, -1, must be non-negative")
    assert "(raised in numpy/" in line and line.endswith("; M2VAE_TRACEBACK=1 prints the traceback)\n")

    print_error("m2vae-eval", _raised(_reshaped))  # a call on a line outside the package
    assert "(raised in " in capsys.readouterr().err

    # numpy's C code raising for a call on a line of the package: that line is named.
    imu = ModalitySpec("imu", "vector", VectorPreprocess(2))
    print_error("m2vae-eval", _raised(lambda: _as_batch(np.array([["a", "b"]]), imu)))
    assert "(raised at m2vae_ros/api.py:" in capsys.readouterr().err

    monkeypatch.setenv("M2VAE_TRACEBACK", "0")
    print_error("m2vae-train", in_numpy)
    assert capsys.readouterr().err.count("\n") == 1
    monkeypatch.setenv("M2VAE_TRACEBACK", "1")
    print_error("m2vae-train", in_numpy)
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "test_error_line.py" in err

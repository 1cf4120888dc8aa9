"""The argparse number types every command line and bench script shares (m2vae_ros/cli_args.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from m2vae_training import demo

from m2vae_ros.play import parse_args as play_args


def test_play_takes_an_infinite_rate_and_refuses_zero_nan_and_words(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert math.isinf(play_args(["bag", "--rate", "inf"]).rate)  # as fast as it can
    assert play_args(["bag", "--rate", "0.5"]).rate == 0.5
    for rate, said in (("0", "got 0.0"), ("nan", "got nan"), ("fast", "got 'fast'")):
        with pytest.raises(SystemExit) as exit_info:
            play_args(["bag", "--rate", rate])
        assert exit_info.value.code == 2
        assert f"argument --rate: must be a number > 0 or inf, {said}" in capsys.readouterr().err


def test_the_demo_refuses_a_bad_number_before_it_simulates_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo_out"
    for flag, value, said in (("--epochs", "0", "must be ≥ 1, got 0"),
                              ("--train-seconds", "inf", "must be a finite number > 0, got inf"),
                              ("--live-seconds", "-60", "must be a finite number > 0, got -60.0")):
        with pytest.raises(SystemExit) as exit_info:
            demo.main(["--out", str(out), flag, value])
        assert exit_info.value.code == 2 and f"argument {flag}: {said}" in capsys.readouterr().err
    assert not out.exists()

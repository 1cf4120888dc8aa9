"""Progress bars redraw in place on a terminal and seldom in a log file."""

from __future__ import annotations

import os
import sys
import time

import pytest

from m2vae_ros.progress import LOG_INTERVAL, TERMINAL_INTERVAL, progress_bar


def test_a_log_file_gets_the_first_and_last_state_of_a_short_job(capfd) -> None:
    # 40 updates over 0.4 s redrew 4 to 5 times at tqdm's default 0.1 s interval.
    with progress_bar(enabled=True, total=40, unit="sample") as bar:
        for _ in range(40):
            time.sleep(0.01)
            bar.update(1)
    renders = capfd.readouterr().err.split("\r")
    drawn = [r for r in renders if "sample" in r]
    assert len(drawn) == 2, drawn
    assert "0/40" in drawn[0] and "40/40" in drawn[-1]


def test_a_terminal_gets_tqdms_interval() -> None:
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as terminal, pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stderr", terminal)
        with progress_bar(enabled=True, total=1) as bar:
            assert bar.mininterval == TERMINAL_INTERVAL
    os.close(leader)
    with progress_bar(enabled=True, total=1) as bar:  # pytest's capture is not a terminal
        # Adaptive miniters let tqdm's monitor thread redraw every 10 s despite mininterval.
        assert (bar.mininterval, bar.dynamic_miniters) == (LOG_INTERVAL, False)


def test_a_disabled_bar_writes_nothing(capfd) -> None:
    with progress_bar(enabled=False, total=3) as bar:
        bar.update(3)
    assert capfd.readouterr().err == ""

"""prompt_thread_switching shortens the GIL switch interval only inside its block."""

from __future__ import annotations

import sys

import pytest

from m2vae_ros.gil import PROMPT_SWITCH_INTERVAL_S, prompt_thread_switching


def test_the_interval_is_short_inside_and_restored_after_an_error() -> None:
    before = sys.getswitchinterval()
    assert before > PROMPT_SWITCH_INTERVAL_S  # CPython's default 5 ms
    with pytest.raises(RuntimeError), prompt_thread_switching():
        assert sys.getswitchinterval() == pytest.approx(PROMPT_SWITCH_INTERVAL_S, rel=0.05)
        raise RuntimeError("boom")
    assert sys.getswitchinterval() == before


def test_a_shorter_interval_already_set_is_kept() -> None:
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.0001)
    try:
        with prompt_thread_switching():
            assert sys.getswitchinterval() == pytest.approx(0.0001, rel=0.05)
        assert sys.getswitchinterval() == pytest.approx(0.0001, rel=0.05)
    finally:
        sys.setswitchinterval(before)
